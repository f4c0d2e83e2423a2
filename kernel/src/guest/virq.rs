//! Virtual interrupts for the guest: the emulated distributor and redistributors
//! ([`vm::vgic::Vgic`]), physical in-band interrupts forwarded to the guest, and the
//! list-register flush on the way back into the guest.
//!
//! A forwarded physical interrupt is *masked and reinjected*: the core disables it at the
//! physical GIC, marks it pending in the vGIC and ends it at once; its virtual copy goes into
//! a list register with an EOI maintenance request; when the guest deactivates it, the core
//! re-enables the physical line (a level still high fires again). The guest's masking of its
//! own IRQs therefore never holds a physical interrupt active at EL2.
//!
//! vCPU *i* runs on CPU *i*; each CPU manages its own list registers. What does not fit in
//! them stays pending in the vGIC (one entry per INTID, offered by priority) until the
//! underflow maintenance interrupt asks for a refill. An interrupt for a vCPU on another CPU
//! (an SPI routed there, an SGI) kicks that CPU, which refills on its way back to the guest.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use boot::exceptions::TrapFrame;
use platform::GicInfo;
use vm::mmio::MmioAccess;
use vm::vgic::{Access, ChangeKind, Changes, Target, Vgic};

use super::list_registers::{self, LrState, MAX_LIST_REGISTERS};
use crate::arch::irq_lock::{IrqSpinLock, IrqTasLock};
use crate::gic;

/// Size of the distributor frame.
const DIST_SIZE: u64 = 0x1_0000;
/// Size of one vCPU's redistributor (RD_base + SGI_base frames).
const REDIST_STRIDE: u64 = 0x2_0000;
/// First shared peripheral interrupt.
const FIRST_SPI: u32 = 32;
/// INTIDs the glue tracks (SGIs, PPIs, SPIs).
const MAX_INTIDS: usize = 1024;

/// The glue's state for one guest.
struct Virq {
    vgic: Vgic,
    distributor: u64,
    redistributor: u64,
    vcpus: usize,
    /// SPIs masked at the physical GIC while the guest handles their virtual copy.
    masked_spis: [u32; MAX_INTIDS / 32],
    /// Per CPU, its private interrupts masked the same way.
    masked_private: [u32; boot::MAX_CPUS],
    /// Per CPU, its MPIDR (to kick it).
    mpidrs: [u64; boot::MAX_CPUS],
}

/// The vGIC model and the physical masking state, shared by all CPUs. Held only for model
/// updates (memory only): list-register accesses, physical GIC writes and kicks are done
/// after releasing it. Under QEMU those trap into the emulator (which takes its own global
/// lock), and a holder that stalls there, or whose host thread is descheduled, keeps every
/// other vCPU spinning on this lock. It is a test-and-set lock, not a ticket lock, for the
/// same reason: a ticket would be handed to a waiter whose host thread is descheduled
/// ([`IrqTasLock`]).
static VIRQ: IrqTasLock<Option<Virq>> = IrqTasLock::new(None);

/// One CPU's list registers as the core filled them.
struct CpuLanes {
    /// The number of list registers (0 until [`init_this_cpu`]).
    count: usize,
    /// The INTID in each list register.
    in_lr: [Option<u32>; MAX_LIST_REGISTERS],
    /// A bit per list register holding something (`in_lr[i]` is `Some`): [`flush`] reads
    /// back only these.
    occupied: u32,
    /// The list register holding an outstanding sirq post, whose acknowledge is timed.
    sirq_lr: Option<usize>,
    /// Whether the underflow maintenance interrupt is requested (ICH_HCR_EL2.UIE as last
    /// written), so [`flush`] writes it only when that changes.
    underflow: bool,
    /// [`flush`]'s scratch list of the interrupts it takes, `(INTID, priority)`: kept here so
    /// that no flush spends instructions clearing one on its stack.
    chosen: [(u32, u8); MAX_LIST_REGISTERS],
}

impl CpuLanes {
    /// No list registers filled, `count` of them.
    const fn empty(count: usize) -> Self {
        Self {
            count,
            in_lr: [None; MAX_LIST_REGISTERS],
            occupied: 0,
            sirq_lr: None,
            underflow: false,
            chosen: [(0, 0); MAX_LIST_REGISTERS],
        }
    }
}

/// Per CPU, its list-register bookkeeping. Only that CPU takes its lock (IRQs masked), so it
/// is never contended; it is separate from [`VIRQ`] so the hardware accesses stay outside it.
static LANES: [IrqSpinLock<CpuLanes>; boot::MAX_CPUS] = [const { IrqSpinLock::new(CpuLanes::empty(0)) }; boot::MAX_CPUS];
/// The number of vCPUs (0: no guest); set once by [`init`].
static VCPU_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The maintenance interrupt's INTID (0: none).
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(0);
/// Physical interrupts forwarded to the guest.
pub static FORWARDED: AtomicU64 = AtomicU64::new(0);
/// Per INTID, physical interrupts forwarded to the guest.
static FORWARDED_BY_INTID: [AtomicU64; MAX_INTIDS] = [const { AtomicU64::new(0) }; MAX_INTIDS];

/// Logs, for every physical interrupt forwarded to the guest, how many times.
pub fn report_forwarded() {
    use core::fmt::Write;
    let mut line = alloc::string::String::new();
    for (intid, count) in FORWARDED_BY_INTID.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if count > 0 {
            let _ = write!(line, " {intid}: {count};");
        }
    }
    log::info!("guest: physical interrupts forwarded by INTID:{line}");
}

/// How many times physical interrupt `intid` was forwarded to the guest.
pub fn forwarded(intid: u32) -> u64 {
    FORWARDED_BY_INTID.get(intid as usize).map_or(0, |count| count.load(Ordering::Relaxed))
}

/// The replay log's accounting: what waited in the vGIC (the log: one pending entry per
/// INTID and vCPU, replayed into the list registers by priority) and for how long.
struct ReplayStats {
    /// Entries raised (forwarded physical interrupts and virtual SGIs).
    logged: AtomicU64,
    /// Raises that found their INTID already pending (coalesced into one entry).
    coalesced: AtomicU64,
    /// Most entries left waiting after a refill (the list registers were full).
    max_depth: AtomicU64,
    /// Entries of emulated level interrupts whose line fell before they were replayed.
    withdrawn: AtomicU64,
    /// Physical interrupt to injection: worst and total counter ticks, and how many.
    to_injection_max: AtomicU64,
    to_injection_sum: AtomicU64,
    to_injection_count: AtomicU64,
    /// Injection to the guest's deactivation: worst and total counter ticks, and how many.
    to_completion_max: AtomicU64,
    to_completion_sum: AtomicU64,
    to_completion_count: AtomicU64,
}

static REPLAY: ReplayStats = ReplayStats {
    logged: AtomicU64::new(0),
    coalesced: AtomicU64::new(0),
    max_depth: AtomicU64::new(0),
    withdrawn: AtomicU64::new(0),
    to_injection_max: AtomicU64::new(0),
    to_injection_sum: AtomicU64::new(0),
    to_injection_count: AtomicU64::new(0),
    to_completion_max: AtomicU64::new(0),
    to_completion_sum: AtomicU64::new(0),
    to_completion_count: AtomicU64::new(0),
};

/// Per INTID, when the oldest uninjected forward arrived (counter; 0: none waiting).
static WAITING_SINCE: [AtomicU64; MAX_INTIDS] = [const { AtomicU64::new(0) }; MAX_INTIDS];
/// Per CPU and list register, when its entry was injected (counter).
static INJECTED_AT: [[AtomicU64; MAX_LIST_REGISTERS]; boot::MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_LIST_REGISTERS] }; boot::MAX_CPUS];

fn record(max: &AtomicU64, sum: &AtomicU64, count: &AtomicU64, ticks: u64) {
    max.fetch_max(ticks, Ordering::Relaxed);
    sum.fetch_add(ticks, Ordering::Relaxed);
    count.fetch_add(1, Ordering::Relaxed);
}

/// The replay log's counters, as the report prints them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayCounters {
    /// Entries raised.
    pub logged: u64,
    /// Entries replayed into list registers.
    pub replayed: u64,
    /// Raises merged into an entry already pending.
    pub coalesced: u64,
    /// Most entries waiting behind full list registers.
    pub max_depth: u64,
    /// Entries of emulated level interrupts withdrawn by their device before replay.
    pub withdrawn: u64,
    /// Entries neither replayed, coalesced, withdrawn nor still pending: must be 0.
    pub lost: u64,
}

/// The replay log's counters now.
pub fn replay_counters() -> ReplayCounters {
    let logged = REPLAY.logged.load(Ordering::Relaxed);
    let replayed = INJECTED.load(Ordering::Relaxed);
    let coalesced = REPLAY.coalesced.load(Ordering::Relaxed);
    let withdrawn = REPLAY.withdrawn.load(Ordering::Relaxed);
    let pending = VIRQ.lock().as_ref().map_or(0, |virq| {
        (0..virq.vcpus).map(|vcpu| virq.vgic.pending_for(vcpu).count() as u64).sum::<u64>()
    });
    ReplayCounters {
        logged,
        replayed,
        coalesced,
        max_depth: REPLAY.max_depth.load(Ordering::Relaxed),
        withdrawn,
        lost: logged.saturating_sub(replayed + coalesced + withdrawn + pending),
    }
}

/// Logs the replay log's counters and timing.
pub fn report() {
    let counters = replay_counters();
    let ns = |ticks: u64| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    let avg = |sum: &AtomicU64, count: &AtomicU64| {
        ns(sum.load(Ordering::Relaxed) / count.load(Ordering::Relaxed).max(1))
    };
    log::info!(
        "replay log: logged {}, replayed {}, coalesced {}, withdrawn {}, max depth {}, lost {}",
        counters.logged,
        counters.replayed,
        counters.coalesced,
        counters.withdrawn,
        counters.max_depth,
        counters.lost
    );
    log::info!(
        "replay log: physical IRQ to injection avg {} ns, max {} ns; injection to guest completion avg {} ns, max {} ns",
        avg(&REPLAY.to_injection_sum, &REPLAY.to_injection_count),
        ns(REPLAY.to_injection_max.load(Ordering::Relaxed)),
        avg(&REPLAY.to_completion_sum, &REPLAY.to_completion_count),
        ns(REPLAY.to_completion_max.load(Ordering::Relaxed))
    );
}

/// Virtual interrupts put into list registers.
pub static INJECTED: AtomicU64 = AtomicU64::new(0);
/// Virtual interrupts the guest deactivated.
pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
static UNKNOWN_LOGGED: AtomicBool = AtomicBool::new(false);
/// Per vCPU: something may be pending for it or sits in its list registers. [`flush`] skips
/// the lock (and the vGIC scan) when not, which is most guest exits.
static WORK: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// Per CPU, a bit per list register the core filled (cleared when taken back); only that
/// CPU writes it. [`has_pending`] reads the hardware state of just these.
static LR_OCCUPIED: [AtomicU32; boot::MAX_CPUS] = [const { AtomicU32::new(0) }; boot::MAX_CPUS];

/// Whether an in-band interrupt waits for `vcpu`: one not yet injected (its WORK flag; may
/// be a false positive for at most one guest exit after an MMIO write), or one pending in
/// a list register. Cheap (no lock); the list registers are only read when called on
/// `vcpu`'s own CPU, as the irqs-off hunter's timer callback is.
pub fn has_pending(vcpu: usize) -> bool {
    if WORK.get(vcpu).is_some_and(|flag| flag.load(Ordering::Relaxed)) {
        return true;
    }
    if vcpu != boot::cpu_index() {
        return false;
    }
    let mut occupied = LR_OCCUPIED.get(vcpu).map_or(0, |bits| bits.load(Ordering::Relaxed));
    while occupied != 0 {
        let index = occupied.trailing_zeros() as usize;
        occupied &= occupied - 1;
        if matches!(list_registers::read(index).0, LrState::Pending | LrState::PendingActive) {
            return true;
        }
    }
    false
}

/// [`has_pending`] for this CPU's vCPU: whether the guest has an interrupt to take (what
/// in-band work on the way back into the guest, such as the console drain, gives way to).
pub fn pending_here() -> bool {
    has_pending(boot::cpu_index())
}

/// Notes that vCPU `vcpu` may have something to inject.
fn note_work(vcpu: usize) {
    if let Some(flag) = WORK.get(vcpu) {
        flag.store(true, Ordering::Release);
    }
}

/// Sets up the vGIC for one vCPU per entry of `mpidrs` (vCPU i on CPU i) with `spis` SPIs.
/// Call once, before any CPU runs [`init_this_cpu`].
pub fn init(gic_info: &GicInfo, mpidrs: &[u64], spis: u32) -> Result<(), &'static str> {
    let vgic = Vgic::new(mpidrs, spis).map_err(|_| "vGIC model")?;
    let redistributor = gic_info.redistributor.ok_or("no redistributor region (GICv3 only for now)")?.base;
    let mut cpu_mpidrs = [0; boot::MAX_CPUS];
    for (slot, &mpidr) in cpu_mpidrs.iter_mut().zip(mpidrs) {
        *slot = mpidr;
    }
    *VIRQ.lock() = Some(Virq {
        vgic,
        distributor: gic_info.distributor.base,
        redistributor,
        vcpus: mpidrs.len().min(boot::MAX_CPUS),
        masked_spis: [0; MAX_INTIDS / 32],
        masked_private: [0; boot::MAX_CPUS],
        mpidrs: cpu_mpidrs,
    });
    VCPU_COUNT.store(mpidrs.len().min(boot::MAX_CPUS), Ordering::Release);
    if let Some(maintenance) = gic_info.maintenance_intid {
        MAINTENANCE_INTID.store(maintenance, Ordering::Relaxed);
        crate::irq::claim(maintenance, on_maintenance).map_err(|_| "maintenance interrupt")?;
    }
    Ok(())
}

/// Turns on this CPU's virtual interface, empties its list registers and enables its
/// maintenance interrupt. Call on each CPU before it enters its vCPU.
pub fn init_this_cpu(cpu: usize) {
    // Without a vGIC (GICv2 for now) there are no ICH_* registers to touch.
    if VIRQ.lock().is_none() {
        return;
    }
    let lrs = list_registers::count();
    for index in 0..lrs {
        list_registers::clear(index);
    }
    // All maintenance requests off, as `CpuLanes::empty` records.
    list_registers::enable_interface();
    if let Some(lanes) = LANES.get(cpu) {
        *lanes.lock() = CpuLanes::empty(lrs);
    }
    let maintenance = MAINTENANCE_INTID.load(Ordering::Relaxed);
    if maintenance != 0 {
        let _ = gic::enable_private(maintenance, cpu, gic::OOB_PRIORITY, arm_gic::Trigger::Level);
    }
}

/// Takes a physical interrupt nobody in the core claimed for the guest; false if there is
/// no guest (the caller counts it as unclaimed).
#[inline(never)]
pub fn forward(intid: u32) -> bool {
    let cpu = boot::cpu_index();
    if intid < 16 || intid as usize >= MAX_INTIDS || cpu >= VCPU_COUNT.load(Ordering::Acquire) {
        return false;
    }
    // Masked at the physical GIC first (outside the lock: a GIC write is slow under
    // emulation), so it cannot fire again until `flush` re-enables it after the guest
    // completed this copy; that re-enabling cannot overtake this write.
    let _ = gic::set_enabled(intid, cpu, false);
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return false };
    let (vcpu, bit) = (cpu, 1u32 << (intid % 32));
    let target = if intid < FIRST_SPI {
        virq.masked_private[cpu] |= bit;
        vcpu
    } else {
        virq.masked_spis[intid as usize / 32] |= bit;
        match virq.vgic.target(intid, vcpu) {
            Ok(Target::Vcpu(target)) => target,
            _ => vcpu,
        }
    };
    // An edge for an edge-triggered interrupt, the line high for a level-sensitive one.
    let was_pending = virq.vgic.signal(intid, target).unwrap_or(false);
    REPLAY.logged.fetch_add(1, Ordering::Relaxed);
    if was_pending {
        REPLAY.coalesced.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = WAITING_SINCE[intid as usize].compare_exchange(
            0,
            crate::hwtimer::counter_unordered(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    FORWARDED.fetch_add(1, Ordering::Relaxed);
    FORWARDED_BY_INTID[intid as usize].fetch_add(1, Ordering::Relaxed);
    note_work(target);
    let kick = (target != cpu).then(|| virq.mpidrs[target]);
    drop(guard);
    if let Some(mpidr) = kick {
        kick_cpu(target, mpidr);
    }
    true
}

/// Drives the line of a virtual-only interrupt (an emulated device's, never a physical one)
/// to `level` for `vcpu` (for an SPI: the vCPU raising it; the vGIC's routing picks the
/// target). The physical GIC is not touched. What became pending is injected on the target's
/// next way back into the guest. Not counted as forwarded nor in the replay log's `logged`
/// (its injections do count in `INJECTED`).
pub fn set_virtual_level(intid: u32, vcpu: usize, level: bool) {
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return };
    if intid < 16 || intid as usize >= MAX_INTIDS || vcpu >= virq.vcpus {
        return;
    }
    let target = match virq.vgic.target(intid, vcpu) {
        Ok(Target::Vcpu(target)) => target,
        _ => vcpu,
    };
    let state = virq.vgic.state(intid, target).ok();
    let was_pending = state.is_some_and(|s| s.pending());
    let in_flight = state.is_some_and(|s| s.active);
    if virq.vgic.set_level(intid, target, level).is_err() {
        return;
    }
    // The replay log's accounting: a rising line raises an entry; a line falling before its
    // entry was replayed withdraws it (nothing was lost: the device no longer asks).
    let is_pending = virq.vgic.state(intid, target).is_ok_and(|s| s.pending());
    if !was_pending && is_pending {
        REPLAY.logged.fetch_add(1, Ordering::Relaxed);
    } else if was_pending && !is_pending && !in_flight {
        REPLAY.withdrawn.fetch_add(1, Ordering::Relaxed);
    }
    note_work(target);
    let kick = (level && target != boot::cpu_index()).then(|| virq.mpidrs[target]);
    drop(guard);
    if let Some(mpidr) = kick {
        kick_cpu(target, mpidr);
    }
}

/// Brings this CPU's list registers up to date before its vCPU runs again: completions are
/// taken back, masked physical lines re-enabled, and the best pending interrupts injected.
///
/// Three steps, so that the shared [`VIRQ`] lock covers only the model: read the list
/// registers, update the vGIC under the lock, then write the list registers and the physical
/// GIC.
pub fn flush() {
    let cpu = boot::cpu_index();
    if !WORK.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Acquire)) {
        return;
    }
    let Some(lanes) = LANES.get(cpu) else { return };
    let mut guard = lanes.lock();
    let lanes = &mut *guard;
    let count = lanes.count;
    if count == 0 {
        return;
    }

    // 0. The sirq post's acknowledge: its list register no longer pending.
    if let Some(index) = lanes.sirq_lr
        && list_registers::read(index).0 != LrState::Pending
    {
        lanes.sirq_lr = None;
        list_registers::request_no_pending(false);
        super::sirq::acknowledged();
    }

    // 1. Completions: list registers the guest emptied (only those the core filled are read).
    let mut completed = [0u32; MAX_LIST_REGISTERS];
    let mut completions = 0;
    let mut occupied = lanes.occupied;
    let mut filled = occupied;
    while filled != 0 {
        let index = filled.trailing_zeros() as usize;
        filled &= filled - 1;
        let Some(intid) = lanes.in_lr.get(index).copied().flatten() else {
            // Not the core's (never: the bit and the entry are set together): forget it.
            occupied &= !(1 << index);
            continue;
        };
        let (state, _) = list_registers::read(index);
        if state != LrState::Invalid {
            continue;
        }
        // An empty LR with its EOI request still set keeps the maintenance interrupt
        // asserted (ICH_EISR_EL2): clear it.
        list_registers::clear(index);
        lanes.in_lr[index] = None;
        occupied &= !(1 << index);
        completed[completions] = intid;
        completions += 1;
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        let injected_at = INJECTED_AT[cpu][index].load(Ordering::Relaxed);
        let ticks = crate::hwtimer::counter_unordered().saturating_sub(injected_at);
        record(&REPLAY.to_completion_max, &REPLAY.to_completion_sum, &REPLAY.to_completion_count, ticks);
    }
    lanes.occupied = occupied;
    // Only bits below `count` are ever set.
    let free = count - occupied.count_ones() as usize;

    // 2. The model, under the shared lock: completions, then the most urgent pending ones.
    let mut unmask = [0u32; MAX_LIST_REGISTERS];
    let mut unmasks = 0;
    let chosen = &mut lanes.chosen;
    let chosen_count;
    let mut waiting = false;
    {
        let mut guard = VIRQ.lock();
        let Some(virq) = guard.as_mut() else { return };
        if cpu >= virq.vcpus {
            return;
        }
        for &intid in &completed[..completions] {
            let _ = virq.vgic.deactivate(cpu, intid);
            if virq.unmask(intid, cpu) {
                unmask[unmasks] = intid;
                unmasks += 1;
            }
        }
        // Found and acknowledged at once: each is now active in the model, not offered again.
        chosen_count = virq.vgic.take_most_urgent(cpu, &mut chosen[..free]);
        if chosen_count == free {
            let left = virq.vgic.pending_for(cpu).count() as u64;
            waiting = left > 0;
            if waiting {
                REPLAY.max_depth.fetch_max(left, Ordering::Relaxed);
            }
        }
    }

    // 3. The hardware: re-enable completed physical lines, fill the free list registers.
    for &intid in &unmask[..unmasks] {
        // The line is sampled again once enabled: a level still high fires anew.
        let _ = gic::set_enabled(intid, cpu, true);
    }
    // The empty list registers (`count` is at most 16).
    let mut empty = !occupied & ((1u32 << count) - 1);
    for &(intid, priority) in &lanes.chosen[..chosen_count] {
        if empty == 0 {
            break;
        }
        let free = empty.trailing_zeros() as usize;
        empty &= empty - 1;
        list_registers::inject(free, intid, priority);
        lanes.in_lr[free] = Some(intid);
        occupied |= 1 << free;
        if super::sirq::is_outstanding(cpu, intid) {
            lanes.sirq_lr = Some(free);
            list_registers::request_no_pending(true);
        }
        INJECTED.fetch_add(1, Ordering::Relaxed);
        let now = crate::hwtimer::counter_unordered();
        INJECTED_AT[cpu][free].store(now, Ordering::Relaxed);
        let since = WAITING_SINCE.get(intid as usize).map_or(0, |w| w.swap(0, Ordering::Relaxed));
        if since != 0 {
            record(&REPLAY.to_injection_max, &REPLAY.to_injection_sum, &REPLAY.to_injection_count, now.saturating_sub(since));
        }
    }
    // More than fits waits for the underflow maintenance interrupt; each injected one asks
    // for an EOI maintenance interrupt. Either brings this CPU back here: no need to keep
    // WORK set (which would take the shared lock on every exit).
    if lanes.underflow != waiting {
        list_registers::request_underflow(waiting);
        lanes.underflow = waiting;
    }
    lanes.occupied = occupied;
    // For `has_pending`: which list registers hold something.
    if let Some(bits) = LR_OCCUPIED.get(cpu) {
        bits.store(occupied, Ordering::Relaxed);
    }
}

/// The maintenance interrupt: the guest completed an interrupt, or the list registers ran
/// low.
fn on_maintenance(_intid: u32) {
    note_work(boot::cpu_index());
    flush();
}

/// Makes CPU `cpu` (affinity `mpidr`) refill its list registers: any interrupt does, on its
/// way back into the guest; the oob kick is one every CPU accepts. Call without [`VIRQ`]
/// held.
fn kick_cpu(cpu: usize, mpidr: u64) {
    gic::send_sgi(crate::sched::KICK_SGI, mpidr, cpu);
}

/// A physical line to configure after a guest MMIO write (done outside [`VIRQ`]).
#[derive(Clone, Copy)]
enum LineUpdate {
    /// Enable it for the in-band stage, edge-triggered or not.
    Enable { intid: u32, cpu: usize, edge: bool },
    /// Disable it.
    Disable { intid: u32, cpu: usize },
}

impl Virq {
    /// A completion of `intid` on `cpu`: if the core masked its physical line, forgets the
    /// mask and the line's forwarded level and returns true (the caller re-enables the line).
    fn unmask(&mut self, intid: u32, cpu: usize) -> bool {
        let bit = 1u32 << (intid % 32);
        let masked = if intid < FIRST_SPI {
            self.masked_private.get_mut(cpu)
        } else {
            self.masked_spis.get_mut(intid as usize / 32)
        };
        let Some(masked) = masked else { return false };
        if *masked & bit == 0 {
            return false;
        }
        *masked &= !bit;
        let _ = self.vgic.set_level(intid, cpu, false);
        true
    }

    /// The physical side of a guest MMIO write, as a list of line updates for after the lock.
    fn apply(&mut self, changes: Changes, updates: &mut [Option<LineUpdate>; 32]) {
        if changes.access == Access::Unknown && !UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
            log::warn!("guest touched a GIC register the model does not know (RAZ/WI; logged once)");
        }
        let Some(change) = changes.change else { return };
        let cpu = change.vcpu.unwrap_or(0);
        for (bit, update) in updates.iter_mut().enumerate() {
            if change.mask & (1 << bit) == 0 {
                continue;
            }
            let intid = change.base + bit as u32;
            *update = match change.kind {
                ChangeKind::Enabled if intid >= 16 => {
                    let edge = self.vgic.state(intid, cpu).map(|s| s.edge).unwrap_or(false);
                    Some(LineUpdate::Enable { intid, cpu, edge })
                }
                ChangeKind::Disabled if intid >= 16 => Some(LineUpdate::Disable { intid, cpu }),
                _ => None,
            };
        }
    }
}

/// Emulates a guest access to the GIC distributor or redistributors at `ipa`; `None` if
/// `ipa` is not theirs, `Some(Err)` if the model refuses the access (the caller injects an
/// abort).
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<(), ()>> {
    let this_cpu = boot::cpu_index();
    let mut updates = [None; 32];
    let mut kicks = [None; boot::MAX_CPUS];
    let mut guard = VIRQ.lock();
    let virq = guard.as_mut()?;
    let (in_dist, in_redist) = (
        ipa.wrapping_sub(virq.distributor) < DIST_SIZE,
        ipa.wrapping_sub(virq.redistributor) < REDIST_STRIDE * virq.vcpus as u64,
    );
    if !in_dist && !in_redist {
        return None;
    }
    let offset = if in_dist { ipa - virq.distributor } else { ipa - virq.redistributor };
    let result = if access.write {
        let Ok(value) = access.store_value(&frame.x) else { return Some(Err(())) };
        let changes =
            if in_dist { virq.vgic.dist_write(offset, access.size, value) } else { virq.vgic.redist_write(offset, access.size, value) };
        // A write may make anything deliverable anywhere (enable, pending, routing): let every
        // vCPU look again, and kick those on other CPUs that now have something to take (a
        // vCPU idling in WFI would otherwise wait for an unrelated interrupt).
        for (vcpu, kick) in kicks.iter_mut().enumerate().take(virq.vcpus) {
            note_work(vcpu);
            if vcpu != this_cpu && virq.vgic.highest_pending(vcpu).is_some() {
                *kick = Some(virq.mpidrs[vcpu]);
            }
        }
        changes.map(|changes| virq.apply(changes, &mut updates))
    } else {
        let read = if in_dist { virq.vgic.dist_read(offset, access.size) } else { virq.vgic.redist_read(offset, access.size) };
        read.map(|read| {
            if read.access == Access::Unknown && !UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
                log::warn!("guest read a GIC register the model does not know at {ipa:#x} (RAZ; logged once)");
            }
            let _ = access.complete_load(&mut frame.x, read.value);
        })
    };
    drop(guard);
    for update in updates.into_iter().flatten() {
        let _ = match update {
            LineUpdate::Enable { intid, cpu, edge } => {
                let trigger = if edge { arm_gic::Trigger::Edge } else { arm_gic::Trigger::Level };
                gic::enable_inband(intid, cpu, trigger)
            }
            LineUpdate::Disable { intid, cpu } => gic::set_enabled(intid, cpu, false),
        };
    }
    for (cpu, mpidr) in kicks.into_iter().enumerate() {
        if let Some(mpidr) = mpidr {
            kick_cpu(cpu, mpidr);
        }
    }
    Some(result.map_err(|_| ()))
}

/// Posts virtual SGI `sgi` to `vcpu` from the core (the sirq measurement), if the guest has
/// it enabled; returns whether it was posted. Counted in the replay log like any entry.
pub fn post_sgi(vcpu: usize, sgi: u32) -> bool {
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return false };
    if vcpu >= virq.vcpus || !virq.vgic.state(sgi, vcpu).is_ok_and(|s| s.enabled && !s.pending()) {
        return false;
    }
    if virq.vgic.set_pending(sgi, vcpu).is_err() {
        return false;
    }
    REPLAY.logged.fetch_add(1, Ordering::Relaxed);
    let mpidr = virq.mpidrs[vcpu];
    drop(guard);
    note_work(vcpu);
    if vcpu != boot::cpu_index() {
        kick_cpu(vcpu, mpidr);
    }
    true
}

/// A trapped `ICC_SGI1R_EL1` write from this CPU's vCPU: marks the SGI pending for its
/// targets and kicks the other CPUs among them.
pub fn send_sgi(value: u64) {
    let cpu = boot::cpu_index();
    let mut kicks = [None; boot::MAX_CPUS];
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return };
    /// ICC_SGI1R_EL1.INTID, bits 27:24.
    const SGI_INTID_SHIFT: u64 = 24;
    let sgi = ((value >> SGI_INTID_SHIFT) & 0xf) as u32;
    let already: [bool; boot::MAX_CPUS] =
        core::array::from_fn(|vcpu| vcpu < virq.vcpus && virq.vgic.state(sgi, vcpu).is_ok_and(|s| s.pending()));
    if let Ok(targets) = virq.vgic.sgi1r(cpu, value) {
        for target in targets.iter().filter(|&t| t < virq.vcpus) {
            REPLAY.logged.fetch_add(1, Ordering::Relaxed);
            if already[target] {
                REPLAY.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            note_work(target);
            if target != cpu {
                kicks[target] = Some(virq.mpidrs[target]);
            }
        }
    }
    drop(guard);
    for (target, mpidr) in kicks.into_iter().enumerate() {
        if let Some(mpidr) = mpidr {
            kick_cpu(target, mpidr);
        }
    }
}
