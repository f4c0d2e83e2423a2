//! Virtual interrupts for the guest: the emulated distributor and redistributors
//! ([`vm::vgic::Vgic`]), physical in-band interrupts forwarded to the guest, and the
//! list-register flush on the way back into the guest.
//!
//! A forwarded physical interrupt (a PPI or SPI the core does not own) is *hardware-linked*:
//! the core drops its priority (its CPU interface runs with EOImode 1) but leaves it active,
//! marks it pending in the vGIC, whose entry then owns that activation
//! ([`vm::vgic::Vgic::forward`]), and injects it in a list register with `HW = 1` and
//! `pINTID` = its INTID. The guest's deactivation of the virtual interrupt deactivates the
//! physical one in hardware: no masking, no unmasking, no maintenance interrupt, no second
//! trip to EL2. While it is active it cannot fire again; a level still high after the
//! guest's deactivation fires anew. The guest's masking of its own IRQs only delays the
//! virtual copy: the physical interrupt's priority was dropped at once, so it never holds
//! back another interrupt at EL2.
//!
//! SGIs, the core's posted SGIs (sirq) and the emulated devices' interrupts have no
//! physical interrupt to link: they are injected as software interrupts with an EOI
//! maintenance request, which brings the CPU back to take the completion.
//!
//! What the guest can do to a linked interrupt, and where its physical activation goes
//! (every activation stays owned until deactivated; see the vGIC's "Hardware-linked
//! interrupts"):
//!
//! - it deactivates the virtual copy: the hardware deactivates the physical interrupt; the
//!   core sees the list register invalid at its next read-back;
//! - it disables the interrupt, clears its pending state or changes its trigger while the
//!   entry waits for a list register: the entry gives the activation up, and the core masks
//!   the line (if disabled) and deactivates the physical interrupt (a level is sampled again
//!   when the guest enables it);
//! - it disables it, clears its pending state or changes its priority while the interrupt
//!   sits in a list register still pending (not yet acknowledged): the CPU listing it is
//!   flagged ([`RECHECK`]) and its next flush takes the list register back
//!   ([`Vgic::listed_copy_outdated`], [`ReplayAccount::requeue`]) — withdrawn (its activation
//!   released and the physical interrupt deactivated, after the mask) or injected again with
//!   the new priority;
//! - it does any of that once the guest acknowledged it: the list register keeps it (the
//!   physical interrupt is deactivated when the guest deactivates the virtual copy);
//! - its vCPU stops (PSCI `CPU_OFF`): [`take_back`] empties that CPU's list registers; a
//!   linked interrupt still pending goes back to its vGIC entry with its activation (to be
//!   delivered to whichever vCPU it targets), one the guest left active is deactivated.
//!
//! An interrupt that fires while the guest has it disabled (a race with the guest's disable)
//! is masked and deactivated at once; an edge is remembered as pending.
//!
//! vCPU *i* runs on CPU *i*; each CPU manages its own list registers. What does not fit in
//! them stays pending in the vGIC (one entry per INTID, offered by priority) until the
//! underflow maintenance interrupt asks for a refill. An interrupt for a vCPU on another CPU
//! (an SPI routed there, an SGI) kicks that CPU, which refills on its way back to the guest.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use boot::exceptions::TrapFrame;
use platform::{GicInfo, TimerInfo};
use vm::ownership::Owner;
use vm::mmio::MmioAccess;
use vm::vgic::physical::{self, PhysicalGic};
use vm::replay::{ReplayAccount, ReplaySnapshot};
use vm::vgic::{Access, ChangeKind, DecodedAccess, Forwarded, ListedUpdate, Target, Vgic};

use super::list_registers::{self, LrState, MAX_LIST_REGISTERS};
use crate::arch::irq_lock::IrqSpinLock;
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
    /// Per CPU, its MPIDR (to kick it).
    mpidrs: [u64; boot::MAX_CPUS],
}

/// The vGIC model and the physical masking state, shared by all CPUs. Held only for model
/// updates (memory only): list-register accesses, physical GIC writes and kicks are done
/// after releasing it where they can be. A ticket lock, so CPUs get it in arrival order: it
/// is taken from interrupt context ([`forward`]) and by every CPU's exits, and every hold is
/// bounded — one INTID of a guest GIC access ([`finish_exit`]), one unit of a list-register
/// refill ([`flush`]), one forward, one vCPU of a kick scan — so a CPU waits at most one
/// such hold per other CPU, never for another vCPU's whole exit. (The price, under QEMU's
/// multi-threaded TCG with more vCPUs than host cores: a waiter whose host thread is
/// descheduled holds up those queued behind it; the [`crate::arch::irq_lock::YieldRelax`]
/// wait lets the holder run under single-threaded TCG.)
static VIRQ: IrqSpinLock<VirqSlot> = IrqSpinLock::new(VirqSlot {
    configured: false,
    virq: Virq { vgic: Vgic::unconfigured(), distributor: 0, redistributor: 0, vcpus: 0, mpidrs: [0; boot::MAX_CPUS] },
});

/// [`VIRQ`]'s content: the glue's state, built in place by [`init`] (the vGIC model is
/// about 20 KiB, more than a boot stack should hold in copies), and seen as an `Option`.
struct VirqSlot {
    /// Whether [`init`] set up a guest.
    configured: bool,
    virq: Virq,
}

impl VirqSlot {
    /// The glue's state, if there is a guest.
    fn as_ref(&self) -> Option<&Virq> {
        self.configured.then_some(&self.virq)
    }

    /// The glue's state, if there is a guest.
    fn as_mut(&mut self) -> Option<&mut Virq> {
        self.configured.then_some(&mut self.virq)
    }

    /// Whether there is no guest.
    fn is_none(&self) -> bool {
        !self.configured
    }
}

/// One CPU's list registers as the core filled them.
struct CpuLanes {
    /// The number of list registers (0 until [`init_this_cpu`]).
    count: usize,
    /// The INTID in each list register.
    in_lr: [Option<u32>; MAX_LIST_REGISTERS],
    /// The priority each list register was filled with.
    priority: [u8; MAX_LIST_REGISTERS],
    /// A bit per list register holding something (`in_lr[i]` is `Some`): [`flush`] reads
    /// back only these.
    occupied: u32,
    /// A bit per list register holding a hardware-linked interrupt (a subset of `occupied`).
    linked: u32,
    /// The list register holding an outstanding sirq post, whose acknowledge is timed.
    sirq_lr: Option<usize>,
    /// Whether the underflow maintenance interrupt is requested (ICH_HCR_EL2.UIE as last
    /// written), so [`flush`] writes it only when that changes.
    underflow: bool,
    /// A refill is under way (its holds not all done) or the maintenance interrupt asked for
    /// one: entries may wait in the model for these list registers, so [`inject_now`] leaves
    /// a new interrupt to [`flush`], which keeps the priority order.
    refilling: bool,
    /// A completion or an injection [`flush`] has begun, finished by its next holds.
    staged: Staged,
    /// [`flush`]'s scratch list of what the list registers hold when they are full, for the
    /// eviction choice: kept here so that no flush spends instructions clearing one on its
    /// stack.
    listed: [vm::replay::Listed; MAX_LIST_REGISTERS],
}

impl CpuLanes {
    /// The list register of this CPU the core put `intid` in, if any. Always inline: the
    /// guest timer's fast path ([`relist_now`]) calls it on every tick.
    #[inline(always)]
    fn index_of(&self, intid: u32) -> Option<usize> {
        let mut occupied = self.occupied;
        while occupied != 0 {
            let index = occupied.trailing_zeros() as usize;
            occupied &= occupied - 1;
            if self.in_lr.get(index).copied().flatten() == Some(intid) {
                return Some(index);
            }
        }
        None
    }

    /// No list registers filled, `count` of them.
    const fn empty(count: usize) -> Self {
        Self {
            count,
            in_lr: [None; MAX_LIST_REGISTERS],
            priority: [0; MAX_LIST_REGISTERS],
            occupied: 0,
            linked: 0,
            sirq_lr: None,
            underflow: false,
            refilling: false,
            staged: Staged::Nothing,
            listed: [vm::replay::Listed { index: 0, pending: false, priority: 0, since: 0 }; MAX_LIST_REGISTERS],
        }
    }
}

/// A unit of list-register work that [`flush`] splits over several holds so that each stays
/// short. An injection of an entry of the model: one hold chooses the most urgent entry (the
/// scan of the ready interrupts), the next takes it from the model (if it is still
/// deliverable), the last writes the list register. A completion: one hold reads the list
/// register back and empties it, the next tells the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staged {
    /// No work under way.
    Nothing,
    /// `intid`'s list register was read back empty and cleared (hardware-linked or not):
    /// the model is to be told of the completion.
    Completed { intid: u32, linked: bool },
    /// `intid` is the most urgent entry for a free list register: to be taken from the model.
    Chosen(u32),
    /// Taken from the model (listed there, counted injected): to be written to a free list
    /// register.
    Taken { intid: u32, priority: u8, linked: bool },
}

/// What one hold of [`flush`] leaves for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldOutcome {
    /// Nothing: the list registers are up to date.
    Done,
    /// More work (completions, comparisons, an eviction, the next injection).
    More,
    /// A completion or an injection under way ([`Staged`]): the flush must do its next hold
    /// before it stops.
    Staged,
}

/// Per CPU, its list-register bookkeeping. Only that CPU takes its lock (IRQs masked), so it
/// is never contended; it is separate from [`VIRQ`] so the hardware accesses stay outside it.
static LANES: [IrqSpinLock<CpuLanes>; boot::MAX_CPUS] = [const { IrqSpinLock::new(CpuLanes::empty(0)) }; boot::MAX_CPUS];
/// The number of vCPUs (0: no guest); set once by [`init`].
static VCPU_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The maintenance interrupt's INTID (0: none).
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(0);
/// Every in-band interrupt counter of the core: the replay log's accounting, forwarded and
/// unclaimed physical interrupts per INTID, list-register injections and completions. The
/// model changes only through it, so its balance is exact ([`vm::replay`]).
pub static ACCOUNT: ReplayAccount = ReplayAccount::new();

/// Logs, for every physical interrupt forwarded to the guest, how many times.
pub fn report_forwarded() {
    use core::fmt::Write;
    let mut line = alloc::string::String::new();
    for intid in 0..vm::replay::COUNTED_INTIDS as u32 {
        let count = ACCOUNT.forwarded_count(intid);
        if count > 0 {
            let _ = write!(line, " {intid}: {count};");
        }
    }
    log::info!("guest: physical interrupts forwarded by INTID:{line}");
}

/// How many times physical interrupt `intid` was forwarded to the guest.
pub fn forwarded(intid: u32) -> u64 {
    ACCOUNT.forwarded_count(intid)
}

/// Per INTID, when the oldest uninjected forward arrived (counter; 0: none waiting).
static WAITING_SINCE: [AtomicU64; MAX_INTIDS] = [const { AtomicU64::new(0) }; MAX_INTIDS];
/// Per CPU and list register, when its entry was injected (counter).
static INJECTED_AT: [[AtomicU64; MAX_LIST_REGISTERS]; boot::MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_LIST_REGISTERS] }; boot::MAX_CPUS];

/// The replay log's counters now, with the entries still waiting in the model.
pub fn replay_snapshot() -> ReplaySnapshot {
    // Still in the log: waiting in the model, deliverable now or not (the guest may have
    // it disabled).
    let waiting = VIRQ.lock().as_ref().map_or(0, |virq| virq.vgic.waiting() as u64);
    ACCOUNT.snapshot(waiting)
}

/// Logs the replay log's counters and timing, after taking back this CPU's completions (so
/// that a hardware-linked interrupt the guest completed since the last read-back counts).
pub fn report() {
    sync_completions();
    let counters = replay_snapshot();
    let ns = |ticks: u64| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    log::info!(
        "replay log: logged {}, replayed {}, coalesced {}, withdrawn {}, max depth {}, lost {}",
        counters.logged,
        counters.replayed(),
        counters.coalesced,
        counters.withdrawn,
        counters.max_depth,
        counters.lost()
    );
    log::info!(
        "replay log: waiting {}, in flight {}, requeued {}, overcounted {}, discarded {} (left by restarted guests)",
        counters.waiting,
        counters.in_flight(),
        counters.requeued,
        counters.overcounted(),
        counters.discarded
    );
    crate::irq::report_deferral();
    log::info!(
        "replay log: physical IRQ to injection avg {} ns, max {} ns; injection to guest completion avg {} ns, max {} ns (software interrupts, {} timed)",
        ns(ACCOUNT.to_injection.average()),
        ns(ACCOUNT.to_injection.max()),
        ns(ACCOUNT.to_completion.average()),
        ns(ACCOUNT.to_completion.max()),
        ACCOUNT.to_completion.count()
    );
    log::info!(
        "replay log: hardware-linked: {} injected, {} completed (seen at the next list-register read-back, untimed), {} given back by list registers",
        counters.injected_linked,
        counters.completed_linked,
        counters.requeued
    );
}

/// Per vCPU: something may be pending for it or sits in its list registers. [`flush`] skips
/// the lock (and the vGIC scan) when not, which is most guest exits.
static WORK: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// Per CPU: a guest write changed the enable, pending state or priority of an interrupt
/// listed there; its next [`flush`] compares its pending list registers with the model
/// ([`Vgic::listed_copy_outdated`]).
static RECHECK: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// Per CPU: its vCPU runs (from [`init_this_cpu`] or [`vcpu_started`] to [`take_back`]).
/// Nothing is injected into a stopped vCPU's list registers: what arrives for it waits in the
/// model until it starts again.
static RUNNING: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// Whether this CPU's vCPU runs (see [`RUNNING`]).
fn running(cpu: usize) -> bool {
    RUNNING.get(cpu).is_some_and(|flag| flag.load(Ordering::Acquire))
}

/// This CPU's vCPU starts again (PSCI `CPU_ON` after `CPU_OFF`): what waited for it is
/// injected on its way into the guest.
pub fn vcpu_started(cpu: usize) {
    if let Some(flag) = RUNNING.get(cpu) {
        flag.store(true, Ordering::Release);
    }
    note_work(cpu);
}

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

/// The interrupts a guest gets besides its SGIs (always its own, virtual).
pub struct GuestInterrupts<'a> {
    /// The generic timer: its EL1 virtual and physical timer PPIs are passed through.
    pub timer: &'a TimerInfo,
    /// The emulated devices' interrupts (virtual only: the physical GIC never sees the
    /// guest's configuration of them).
    pub emulated: &'a [u32],
    /// The passed-through devices' interrupts (`platform::passthrough::passed_intids`):
    /// the only SPIs that reach the physical GIC. Every other SPI stays unassigned, hidden
    /// from the guest.
    pub passed_through: &'a [u32],
}

/// Sets up the vGIC for one vCPU per entry of `mpidrs` (vCPU i on CPU i) with `spis` SPIs,
/// and gives the guest its interrupts in the ownership table ([`crate::irq::OWNERSHIP`]):
/// its timer PPIs and `interrupts.passed_through` (below `32 + spis`, unless the core owns
/// them) are passed through, `interrupts.emulated` are virtual; everything else (the core's timer, the maintenance
/// interrupt, other PPIs) stays hidden from it. Call once, before any CPU runs
/// [`init_this_cpu`].
pub fn init(gic_info: &GicInfo, mpidrs: &[u64], spis: u32, interrupts: &GuestInterrupts<'_>) -> Result<(), &'static str> {
    let redistributor = gic_info.redistributor.ok_or("no redistributor region (GICv3 only for now)")?.base;
    if !gic::splits_priority_drop() {
        return Err("the GIC CPU interface does not split priority drop and deactivation");
    }
    if let Some(maintenance) = gic_info.maintenance_intid {
        MAINTENANCE_INTID.store(maintenance, Ordering::Relaxed);
        crate::irq::claim_inband(maintenance, on_maintenance).map_err(|_| "maintenance interrupt")?;
    }
    let table = &crate::irq::OWNERSHIP;
    let ownership = "interrupt ownership";
    for ppi in [interrupts.timer.virt_intid, interrupts.timer.phys_intid] {
        table.assign_unless_core(ppi, Owner::PassThrough).map_err(|_| ownership)?;
    }
    for spi in FIRST_SPI..(FIRST_SPI + spis).min(vm::ownership::INTID_LIMIT) {
        let owner = if interrupts.emulated.contains(&spi) {
            Owner::Virtual
        } else if interrupts.passed_through.contains(&spi) {
            Owner::PassThrough
        } else {
            continue;
        };
        table.assign_unless_core(spi, owner).map_err(|_| ownership)?;
    }
    {
        // In place: the model is too big to build on this stack and move.
        let mut guard = VIRQ.lock();
        let slot = &mut *guard;
        slot.virq.vgic.configure(mpidrs, spis).map_err(|_| "vGIC model")?;
        slot.virq.vgic.apply_ownership(table);
        slot.virq.distributor = gic_info.distributor.base;
        slot.virq.redistributor = redistributor;
        slot.virq.vcpus = mpidrs.len().min(boot::MAX_CPUS);
        for (slot, &mpidr) in slot.virq.mpidrs.iter_mut().zip(mpidrs) {
            *slot = mpidr;
        }
        for (slot, &mpidr) in CPU_MPIDR.iter().zip(mpidrs) {
            slot.store(mpidr, Ordering::Relaxed);
        }
        slot.configured = true;
    }
    VCPU_COUNT.store(mpidrs.len().min(boot::MAX_CPUS), Ordering::Release);
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
        // In-band priority: the list registers are in-band work, held in the GIC while an
        // oob context runs.
        let _ = gic::enable_private(maintenance, cpu, gic::INBAND_PRIORITY, arm_gic::Trigger::Level);
    }
    vcpu_started(cpu);
}

/// How [`forward`] took a physical interrupt, whose priority the IRQ entry already dropped:
/// what is left to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Hardware-linked for the guest: leave it active; the guest's deactivation of its
    /// virtual copy deactivates it.
    Linked,
    /// Taken without a link (the guest has it disabled; its line is now masked, an edge
    /// remembered as pending): deactivate it.
    Taken,
    /// No guest takes it: deactivate it (and count it as unclaimed).
    Unclaimed,
}

/// Takes a physical PPI or SPI nobody in the core claimed for the guest, acknowledged on
/// this CPU and priority dropped ([`gic::drop_priority`]); see [`Forward`] for what the
/// caller does next.
///
/// For this CPU's own vCPU, a PPI whose entry has nothing waiting goes straight into its
/// copy's emptied list register or a free one ([`relist_now`], the guest timer's path), any
/// other linked interrupt into a free list register ([`inject_now`]), under the locks this
/// already holds; otherwise (another vCPU's, or no
/// list register free, or interrupts already waiting for one) [`flush`] injects it on that
/// CPU's way back into the guest, in priority order.
///
/// The PPI fast path ([`forward_ppi_fast`]) is a function of its own, so the guest timer's
/// tick does not pay the general path's frame; when it declines, having changed nothing,
/// the general path ([`forward_general`]) takes the locks again and handles the interrupt
/// in whatever state it then is.
#[inline(always)]
pub fn forward(intid: u32) -> Forward {
    if (16..FIRST_SPI).contains(&intid) && forward_ppi_fast(intid) {
        return Forward::Linked;
    }
    forward_general(intid)
}

/// [`forward`] of PPI `intid` by [`relist_now`], under this CPU's list-register lock and the
/// vGIC's: whether it was written into a list register (else nothing changed).
#[inline(never)]
fn forward_ppi_fast(intid: u32) -> bool {
    let cpu = boot::cpu_index();
    if cpu >= VCPU_COUNT.load(Ordering::Acquire) {
        return false;
    }
    // The lock order of `flush`, as in `forward_general`.
    let Some(lanes) = LANES.get(cpu) else { return false };
    let mut lanes = lanes.lock_irqs_masked();
    let mut guard = VIRQ.lock_irqs_masked();
    guard.as_mut().is_some_and(|virq| relist_now(cpu, &mut lanes, &mut virq.vgic, intid))
}

/// [`forward`]'s general path: every interrupt [`forward_ppi_fast`] did not take.
#[inline(never)]
fn forward_general(intid: u32) -> Forward {
    let cpu = boot::cpu_index();
    if intid < 16 || intid as usize >= MAX_INTIDS || cpu >= VCPU_COUNT.load(Ordering::Acquire) {
        return Forward::Unclaimed;
    }
    // This CPU's list registers first (the lock order of `flush`); only this CPU takes them.
    let Some(lanes) = LANES.get(cpu) else { return Forward::Unclaimed };
    let mut lanes = lanes.lock_irqs_masked();
    let mut guard = VIRQ.lock_irqs_masked();
    let Some(virq) = guard.as_mut() else { return Forward::Unclaimed };
    let target = if intid < FIRST_SPI {
        cpu
    } else {
        match virq.vgic.target(intid, cpu) {
            Ok(Target::Vcpu(target)) => target,
            _ => cpu,
        }
    };
    // Enabled: pending (an edge, or the line high) and owning the physical activation.
    let (coalesced, linked) = match ACCOUNT.forward(&mut virq.vgic, intid, target) {
        Ok(Forwarded::Linked { coalesced }) => (coalesced, true),
        Ok(Forwarded::Latched { coalesced }) => (coalesced, false),
        Ok(Forwarded::Refused) => (false, false),
        // An SPI beyond the guest's: nothing the guest could have enabled.
        Err(_) => return Forward::Unclaimed,
    };
    if !linked {
        // The guest has it disabled (its disable raced with this interrupt): masked now,
        // under the lock, so that the guest's enable, which takes the lock to update the
        // model before it enables the line, cannot be overtaken by this write.
        let _ = gic::set_enabled(intid, cpu, false);
        if !virq.vgic.state(intid, target).is_ok_and(|s| s.pending()) {
            // A level line: nothing recorded; the GIC samples it again once enabled.
            return Forward::Taken;
        }
    }
    let now = crate::hwtimer::counter_unordered();
    if !coalesced {
        if linked && target == cpu && inject_now(cpu, &mut lanes, &mut virq.vgic, intid, now) {
            publish_occupied(cpu, lanes.occupied);
            return Forward::Linked;
        }
        let _ = WAITING_SINCE[intid as usize].compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
    note_work(target);
    let kick = (target != cpu).then(|| virq.mpidrs[target]);
    // A copy listed on a third CPU (the SPI was rerouted) holds the entry back until that
    // CPU reads it back: make it exit.
    let lister = LISTED_ON.get(intid as usize).map_or(0, |on| on.load(Ordering::Relaxed)).wrapping_sub(1);
    let kick_lister = (lister != target && lister != cpu && lister < virq.vcpus).then(|| virq.mpidrs[lister]);
    drop(guard);
    drop(lanes);
    if let Some(mpidr) = kick {
        kick_cpu(target, mpidr);
    }
    if let Some(mpidr) = kick_lister {
        kick_cpu(lister, mpidr);
    }
    if linked { Forward::Linked } else { Forward::Taken }
}

/// [`forward`]'s fast path for a PPI of this CPU's own vCPU (the guest's timer, on every
/// tick): when the list register of its copy reads back empty (the guest deactivated it,
/// and with it the physical interrupt, which is why it could fire again), or it has no copy
/// listed and a list register is free, and the model's entry has nothing waiting
/// ([`Vgic::relist`]), the new copy is written hardware-linked into that list register and
/// counted ([`ReplayAccount::relist`]: the arrival, the forward, the injection and the
/// copy's completion), in one step of the model. Declines, changing nothing, under the
/// conditions [`inject_now`] declines under, and wherever the model's entry is in another
/// state (the general path then handles it).
#[inline(always)]
fn relist_now(cpu: usize, lanes: &mut CpuLanes, vgic: &mut Vgic, intid: u32) -> bool {
    let count = lanes.count;
    if count == 0 || lanes.underflow || lanes.refilling || !running(cpu) {
        return false;
    }
    let (index, copy_emptied) = match lanes.index_of(intid) {
        Some(index) => {
            if lanes.linked & (1 << index) == 0 || list_registers::read(index).0 != LrState::Invalid {
                return false;
            }
            (index, true)
        }
        None => {
            let empty = !lanes.occupied & ((1u32 << count) - 1);
            if empty == 0 {
                return false;
            }
            (empty.trailing_zeros() as usize, false)
        }
    };
    let arrived = crate::hwtimer::counter_unordered();
    let Some(priority) = ACCOUNT.relist(vgic, cpu, intid, copy_emptied) else { return false };
    let now = if copy_emptied {
        // The copy's list register, occupied and linked, takes the new copy: only its
        // content, its priority and its fill time change (the eviction order).
        list_registers::inject_linked(index, intid, priority);
        if let Some(slot) = lanes.priority.get_mut(index) {
            *slot = priority;
        }
        let now = crate::hwtimer::counter_unordered();
        if let Some(at) = INJECTED_AT.get(cpu).and_then(|lrs| lrs.get(index)) {
            at.store(now, Ordering::Relaxed);
        }
        now
    } else {
        let now = place(cpu, lanes, index, intid, priority, true);
        publish_occupied(cpu, lanes.occupied);
        now
    };
    ACCOUNT.to_injection.record(now.saturating_sub(arrived));
    true
}

/// [`forward`]'s general injection: puts linked interrupt `intid`, just forwarded to this CPU's
/// vCPU, into a free list register of this CPU at once. The copy of `intid` the model still
/// has listed here, if any, is complete — the physical interrupt could not have fired again
/// unless the guest deactivated it — and is taken back first (its list register checked).
/// Declines, leaving the injection to [`flush`], when interrupts already wait for list
/// registers (the flush keeps them in priority order), none is free, the listed copy is
/// another CPU's or not read back empty, or the interrupt is not deliverable (the guest's
/// distributor is off; a listed copy is still taken back then).
fn inject_now(cpu: usize, lanes: &mut CpuLanes, vgic: &mut Vgic, intid: u32, arrived: u64) -> bool {
    let count = lanes.count;
    if count == 0 || lanes.underflow || lanes.refilling || !running(cpu) {
        return false;
    }
    // A listed copy must be in a list register of this CPU read back empty (else it is all
    // left to the flush); it is then retired, and its list register is the free one.
    let mut copy_linked = false;
    match lanes.index_of(intid) {
        Some(index) => {
            if list_registers::read(index).0 != LrState::Invalid {
                return false;
            }
            copy_linked = retire(cpu, lanes, index);
        }
        None => {
            if vgic.is_listed(intid, cpu) || lanes.occupied == (1u32 << count) - 1 {
                return false;
            }
        }
    }
    let empty = !lanes.occupied & ((1u32 << count) - 1);
    // The listed copy's completion, then the new copy taken, in one step of the model.
    let Some((priority, linked)) = ACCOUNT.retake(vgic, cpu, intid, copy_linked) else { return false };
    let now = place(cpu, lanes, empty.trailing_zeros() as usize, intid, priority, linked);
    ACCOUNT.to_injection.record(now.saturating_sub(arrived));
    true
}

/// Drives the line of a virtual-only interrupt (an emulated device's, never a physical one)
/// to `level` for `vcpu` (for an SPI: the vCPU raising it; the vGIC's routing picks the
/// target). The physical GIC is not touched. What became pending is injected on the target's
/// next way back into the guest. Counted in the replay log ([`ReplayAccount::set_level`]),
/// not as forwarded.
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
    // A rising line raises an entry; a line falling before its entry was replayed withdraws
    // it (nothing was lost: the device no longer asks).
    if ACCOUNT.set_level(&mut virq.vgic, intid, target, level).is_err() {
        return;
    }
    note_work(target);
    let kick = (level && target != boot::cpu_index()).then(|| virq.mpidrs[target]);
    drop(guard);
    if let Some(mpidr) = kick {
        kick_cpu(target, mpidr);
    }
}

/// Most units of list-register work one hold of [`flush`] does (an IRQ-masked section with
/// this CPU's list registers and the vGIC locked): a unit is a completion taken back, a
/// listed copy compared with the model after a guest write (withdrawn if outdated), an
/// eviction, or an injection. One: a hold costs about 190 instructions of its own (locks,
/// flags, the scan for the most urgent entry) plus 50-300 for its unit (measured under
/// `-icount` on the uname boot); with two, every hold that took a completion back was ~570.
const LR_WORK_PER_HOLD: usize = 1;

/// Most holds of one [`flush`]: enough for every list register to be taken back, compared,
/// evicted ([`LR_WORK_PER_HOLD`] units each) and filled (three holds, [`Staged`]) once, so
/// that a flood of interrupts arriving between the holds cannot keep this CPU out of its
/// guest; what is left then stays noted ([`WORK`]) for the next flush. An injection under
/// way is always finished first.
const MAX_HOLDS: usize = (3 + 3 * LR_WORK_PER_HOLD) * MAX_LIST_REGISTERS / LR_WORK_PER_HOLD + 2;

/// Brings this CPU's list registers up to date before its vCPU runs again: completions are
/// taken back and the best pending interrupts injected (hardware-linked for forwarded
/// physical interrupts).
///
/// The work is done in holds of at most [`LR_WORK_PER_HOLD`] units each, every hold an
/// IRQ-masked section timed in the exit histogram
/// ([`super::exits::ExitKind::ListRegisterRefill`]), with IRQs unmasked between two holds:
/// an oob interrupt waits for one hold at most, never for a whole refill. A hold leaves the
/// list registers and the model consistent; what changed between two holds (an interrupt
/// forwarded, a maintenance interrupt) is seen by the next one, and until the last hold
/// [`inject_now`] leaves new interrupts to it, so the most urgent waiting entries are still
/// the ones injected. The last check for work is made with IRQs masked and the caller's
/// interrupt state restored after it: what arrived before it is in the list registers. Call
/// only where IRQs may be unmasked (in-band context at EL2, no lock held, not from an
/// interrupt handler).
///
/// Inline, a flush with nothing to do (most guest exits, and the second flush of every way
/// back into the guest) is its check alone: a load of this vCPU's [`WORK`] flag — set by
/// whatever gave it something since the last flush (a forward left to the flush, a guest
/// write, a maintenance interrupt, a post) — and one `ICH_ELRSR_EL2` read against the list
/// registers the core filled. The work is out of line.
#[inline(always)]
pub fn flush() {
    let cpu = boot::cpu_index();
    if !flush_may_be_due(cpu) {
        return;
    }
    flush_work(cpu);
}

/// [`flush_due`] without consuming [`WORK`]: whether [`flush`] has anything to look at.
#[inline(always)]
fn flush_may_be_due(cpu: usize) -> bool {
    WORK.get(cpu).is_some_and(|flag| flag.load(Ordering::Acquire)) || guest_emptied_one(cpu)
}

/// Whether the guest emptied one of the list registers the core filled on this CPU.
#[inline(always)]
fn guest_emptied_one(cpu: usize) -> bool {
    let occupied = LR_OCCUPIED.get(cpu).map_or(0, |bits| bits.load(Ordering::Relaxed));
    occupied != 0 && list_registers::empty_mask() & occupied != 0
}

/// [`flush`]'s work, when its check found some.
#[inline(never)]
fn flush_work(cpu: usize) {
    if !running(cpu) {
        return;
    }
    let saved = crate::arch::mask_irqs();
    let mut holds = 0;
    let mut staged = false;
    while staged || flush_due(cpu) {
        if holds >= MAX_HOLDS && !staged {
            note_work(cpu);
            break;
        }
        holds += 1;
        let start = crate::hwtimer::counter_unordered();
        let outcome = refill_hold(cpu);
        super::exits::record(super::exits::ExitKind::ListRegisterRefill, crate::hwtimer::counter_unordered().wrapping_sub(start));
        staged = outcome == HoldOutcome::Staged;
        if outcome != HoldOutcome::Done {
            note_work(cpu);
        }
        // Between two holds: oob interrupts, and what arrives for this vCPU, are taken here.
        crate::arch::unmask_irqs();
        let _ = crate::arch::mask_irqs();
    }
    crate::arch::restore_irqs(saved);
}

/// Whether this CPU's list registers need [`flush`]'s work: something may be pending for its
/// vCPU ([`WORK`], consumed here), or the guest emptied one of them. Every exit: a list
/// register the guest emptied is taken back now (one system register read), so a copy
/// another CPU waits for (a rerouted SPI fired again) is never stale for longer than this
/// CPU's next exit.
fn flush_due(cpu: usize) -> bool {
    let work = WORK.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Acquire));
    work || guest_emptied_one(cpu)
}

/// The sirq post's acknowledge: its list register no longer pending.
fn check_sirq_acknowledge(lanes: &mut CpuLanes) {
    if let Some(index) = lanes.sirq_lr
        && list_registers::read(index).0 != LrState::Pending
    {
        lanes.sirq_lr = None;
        list_registers::request_no_pending(false);
        super::sirq::acknowledged();
    }
}

/// One hold of [`flush`] (the caller masked IRQs and times it): the next step of an injection
/// under way ([`Staged`]), or at most [`LR_WORK_PER_HOLD`] units of work, in three steps, so
/// that the shared [`VIRQ`] lock covers only the model: read the list registers, update the
/// vGIC under the lock (choosing the entry to inject next, if a list register is free), then
/// empty the list registers given back.
fn refill_hold(cpu: usize) -> HoldOutcome {
    let Some(lanes) = LANES.get(cpu) else { return HoldOutcome::Done };
    let mut guard = lanes.lock_irqs_masked();
    let lanes = &mut *guard;
    let count = lanes.count;
    if count == 0 {
        return HoldOutcome::Done;
    }
    match lanes.staged {
        Staged::Nothing => {}
        Staged::Completed { intid, linked } => return complete_hold(cpu, lanes, intid, linked),
        Staged::Chosen(intid) => return take_hold(cpu, lanes, intid),
        Staged::Taken { intid, priority, linked } => return place_hold(cpu, lanes, intid, priority, linked),
    }
    let mut budget = LR_WORK_PER_HOLD;

    // 0. The sirq post's acknowledge.
    check_sirq_acknowledge(lanes);

    // 1. Completions: list registers the guest emptied (only those the core filled are read).
    // One at a time, told to the model in the next hold.
    let mut completed = [(0u32, false)];
    if read_back(cpu, lanes, &mut completed).0 == 1 {
        let [(intid, linked)] = completed;
        lanes.staged = Staged::Completed { intid, linked };
        lanes.refilling = true;
        publish_occupied(cpu, lanes.occupied);
        return HoldOutcome::Staged;
    }
    // Only bits below `count` are ever set.
    let mut free = count - lanes.occupied.count_ones() as usize;
    // A guest write touched an interrupt listed here: a bit per list register still pending
    // or acknowledged (active), to compare with the model (as many as the budget allows; the
    // flag stays set for the rest). Bit masks and the scratch in `lanes`, not arrays on this
    // stack: every exit with work runs this, and clearing arrays costs instructions.
    let mut pending_copies = 0u32;
    let mut acknowledged = 0u32;
    if budget > 0 && RECHECK.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Acquire)) {
        let mut occupied = lanes.occupied;
        while occupied != 0 {
            let index = occupied.trailing_zeros() as usize;
            occupied &= occupied - 1;
            if lanes.sirq_lr == Some(index) {
                continue;
            }
            match list_registers::read(index).0 {
                LrState::Pending => pending_copies |= 1 << index,
                LrState::Active | LrState::PendingActive => {
                    pending_copies |= 1 << index;
                    acknowledged |= 1 << index;
                }
                LrState::Invalid => {}
            }
        }
        let compared = lowest_bits(pending_copies, budget as u32);
        if compared != pending_copies {
            RECHECK[cpu].store(true, Ordering::Release);
        }
        pending_copies = compared;
        budget -= pending_copies.count_ones() as usize;
    }
    // Work skipped for the budget (completions left, copies to compare, list registers to
    // fill) makes another hold.
    let mut more = RECHECK.get(cpu).is_some_and(|flag| flag.load(Ordering::Relaxed));
    // The copies taken back, and those of them whose physical activation was released.
    let (mut withdrawn, mut released_lrs) = (0u32, 0u32);
    // Full: the list register a more urgent waiting entry may take (the least urgent one
    // still pending, the most recently filled among equals, never the sirq post's, whose
    // acknowledge is being timed).
    let mut listed_count = 0;
    let eviction_skipped = free == 0 && (pending_copies != 0 || budget == 0);
    if free == 0 && !eviction_skipped {
        let mut occupied = lanes.occupied;
        while occupied != 0 {
            let index = occupied.trailing_zeros() as usize;
            occupied &= occupied - 1;
            if lanes.sirq_lr != Some(index) {
                let (state, priority) = list_registers::state_and_priority(index);
                let since = INJECTED_AT.get(cpu).and_then(|lrs| lrs.get(index)).map_or(0, |at| at.load(Ordering::Relaxed));
                if let Some(slot) = lanes.listed.get_mut(listed_count) {
                    *slot = vm::replay::Listed { index, pending: state == LrState::Pending, priority, since };
                    listed_count += 1;
                }
            }
        }
    }
    let mut evicted = None;

    // 2. The model, under the shared lock: completions, then the choice of the most urgent
    // pending one.
    let mut staged = Staged::Nothing;
    let mut waiting = false;
    let mut routes = DueRoutes::<1>::new();
    {
        let mut guard = VIRQ.lock_irqs_masked();
        let Some(virq) = guard.as_mut() else { return HoldOutcome::Done };
        if cpu >= virq.vcpus {
            return HoldOutcome::Done;
        }
        // One post of the core's is a unit of its own.
        if budget > 0 && take_post(&mut virq.vgic, cpu) {
            budget = 0;
        }
        // Copies the guest disabled, cleared, re-prioritised, set pending or cleared active
        // since they were listed (`Vgic::listed_copy_update`): back to the log (withdrawn,
        // or injected again below), completed, or the new pending state merged into them.
        let mut copies = pending_copies;
        while copies != 0 {
            let index = copies.trailing_zeros() as usize;
            copies &= copies - 1;
            let Some(intid) = lanes.in_lr[index] else { continue };
            let bit = 1u32 << index;
            match virq.vgic.listed_copy_update(intid, cpu, lanes.priority[index], acknowledged & bit != 0) {
                ListedUpdate::Keep => {}
                ListedUpdate::Merge => ACCOUNT.merge(&mut virq.vgic, cpu, intid),
                ListedUpdate::Requeue => {
                    withdrawn |= bit;
                    if ACCOUNT.requeue(&mut virq.vgic, cpu, intid).unwrap_or(false) {
                        released_lrs |= bit;
                    }
                }
                ListedUpdate::Complete => {
                    // The list register will not deactivate a linked one's physical
                    // interrupt now: the core does, after the hold.
                    withdrawn |= bit;
                    let linked = lanes.linked & bit != 0;
                    ACCOUNT.complete(&mut virq.vgic, cpu, intid, linked);
                    routes.check(&virq.vgic, intid);
                    if linked {
                        released_lrs |= bit;
                    }
                }
            }
        }
        free += withdrawn.count_ones() as usize;
        if budget == 0 {
            // Spent on completions or comparisons: the injections are the next hold's.
            more = true;
        } else {
            if free == 0 && listed_count > 0 {
                let best = virq.vgic.highest_pending(cpu).map(|(_, priority)| priority);
                if let Some(index) = vm::replay::evict_for(lanes.listed[..listed_count].iter().copied(), best)
                    && let Some(intid) = lanes.in_lr[index]
                {
                    // Back to the log (its link too), and its list register for the urgent one.
                    let released = ACCOUNT.requeue(&mut virq.vgic, cpu, intid).unwrap_or(false);
                    evicted = Some((index, released));
                    free = 1;
                    budget -= 1;
                }
            }
            let mut best = [(0u32, 0u8)];
            if budget == 0 {
                // Spent on the eviction: the injection is the next hold's.
                more = true;
            } else if free > 0 {
                // Only chosen here: the next two holds take it and write its list register.
                if virq.vgic.most_urgent(cpu, &mut best) == 1 {
                    staged = Staged::Chosen(best[0].0);
                }
            } else {
                // Full: what is left waits for the underflow maintenance interrupt (or, if
                // this hold had no budget left for an eviction, for the next hold).
                let left = virq.vgic.ready_count(cpu) as u64;
                waiting = left > 0;
                more |= waiting && eviction_skipped;
                if waiting {
                    ACCOUNT.depth(left);
                }
            }
        }
    }
    routes.perform();
    if let Some((index, released)) = evicted {
        withdrawn |= 1 << index;
        if released {
            released_lrs |= 1 << index;
        }
    }
    while withdrawn != 0 {
        let index = withdrawn.trailing_zeros() as usize;
        withdrawn &= withdrawn - 1;
        let intid = lanes.in_lr[index];
        vacate(cpu, lanes, index);
        if let Some(intid) = intid
            && released_lrs & (1 << index) != 0
        {
            gic::deactivate_physical(intid, cpu);
        }
    }

    if staged != Staged::Nothing {
        lanes.staged = staged;
        lanes.refilling = true;
        publish_occupied(cpu, lanes.occupied);
        return HoldOutcome::Staged;
    }
    // The last hold: more than fits waits for the underflow maintenance interrupt; a
    // software interrupt asks for an EOI maintenance interrupt, and a linked one's
    // completion is taken when it fires again (`inject_now`) or at the next exit (its list
    // register read back empty in `ICH_ELRSR_EL2`): no need to keep WORK set.
    lanes.refilling = more;
    if !more && lanes.underflow != waiting {
        list_registers::request_underflow(waiting);
        lanes.underflow = waiting;
    }
    publish_occupied(cpu, lanes.occupied);
    if more { HoldOutcome::More } else { HoldOutcome::Done }
}

/// The hold after the one that read `intid`'s list register back empty
/// ([`Staged::Completed`]): the model is told of the completion (a linked one was deactivated
/// with it: a level line is sampled again), and a route that waited for it is moved.
fn complete_hold(cpu: usize, lanes: &mut CpuLanes, intid: u32, linked: bool) -> HoldOutcome {
    lanes.staged = Staged::Nothing;
    lanes.refilling = true;
    let mut routes = DueRoutes::<1>::new();
    if let Some(virq) = VIRQ.lock_irqs_masked().as_mut() {
        ACCOUNT.complete(&mut virq.vgic, cpu, intid, linked);
        routes.check(&virq.vgic, intid);
    }
    routes.perform();
    HoldOutcome::More
}

/// The hold after the one that chose `intid` ([`Staged::Chosen`]): takes it from the model
/// if it is still deliverable to this CPU's vCPU (something more urgent that arrived since
/// is injected next, or evicts it if the list registers are full), counted as an injection.
fn take_hold(cpu: usize, lanes: &mut CpuLanes, intid: u32) -> HoldOutcome {
    let taken = VIRQ.lock_irqs_masked().as_mut().and_then(|virq| ACCOUNT.take(&mut virq.vgic, cpu, intid));
    lanes.refilling = true;
    match taken {
        Some((priority, linked)) => {
            // Listed here from now on, for another CPU's guest write to flag this one.
            if let Some(on) = LISTED_ON.get(intid as usize) {
                on.store(cpu + 1, Ordering::Relaxed);
            }
            lanes.staged = Staged::Taken { intid, priority, linked };
            HoldOutcome::Staged
        }
        None => {
            // No longer deliverable here: the next hold chooses again.
            lanes.staged = Staged::Nothing;
            HoldOutcome::More
        }
    }
}

/// The hold after [`take_hold`]: writes `intid`, taken from the model, into a free list
/// register. One is free: since the hold that chose it, nothing but this flush filled this
/// CPU's list registers ([`inject_now`] waits while [`CpuLanes::refilling`]); were none free,
/// the entry would go back to the model.
fn place_hold(cpu: usize, lanes: &mut CpuLanes, intid: u32, priority: u8, linked: bool) -> HoldOutcome {
    lanes.staged = Staged::Nothing;
    lanes.refilling = true;
    let empty = !lanes.occupied & ((1u32 << lanes.count) - 1);
    if empty == 0 {
        let released = VIRQ.lock_irqs_masked().as_mut().is_some_and(|virq| ACCOUNT.requeue(&mut virq.vgic, cpu, intid).unwrap_or(false));
        if released {
            gic::deactivate_physical(intid, cpu);
        }
        return HoldOutcome::More;
    }
    let index = empty.trailing_zeros() as usize;
    let now = place(cpu, lanes, index, intid, priority, linked);
    if super::sirq::is_outstanding(cpu, intid) {
        lanes.sirq_lr = Some(index);
        list_registers::request_no_pending(true);
    }
    let since = WAITING_SINCE.get(intid as usize).map_or(0, |w| w.swap(0, Ordering::Relaxed));
    if since != 0 {
        ACCOUNT.to_injection.record(now.saturating_sub(since));
    }
    publish_occupied(cpu, lanes.occupied);
    HoldOutcome::More
}

/// Empties list register `index` of this CPU, whose entry went back to the log (evicted
/// for a more urgent one).
fn vacate(cpu: usize, lanes: &mut CpuLanes, index: usize) {
    list_registers::clear(index);
    if let Some(intid) = lanes.in_lr[index].take()
        && let Some(on) = LISTED_ON.get(intid as usize)
    {
        let _ = on.compare_exchange(cpu + 1, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    lanes.occupied &= !(1 << index);
    lanes.linked &= !(1 << index);
}

/// For [`has_pending`]: which of `cpu`'s list registers hold something.
fn publish_occupied(cpu: usize, occupied: u32) {
    if let Some(bits) = LR_OCCUPIED.get(cpu) {
        bits.store(occupied, Ordering::Relaxed);
    }
}

/// Puts `intid` (at `priority`, hardware-linked or not) into this CPU's empty list register
/// `index` and into `lanes` (the caller counts the injection); returns its time (counter).
fn place(cpu: usize, lanes: &mut CpuLanes, index: usize, intid: u32, priority: u8, linked: bool) -> u64 {
    if linked {
        list_registers::inject_linked(index, intid, priority);
        lanes.linked |= 1 << index;
    } else {
        list_registers::inject(index, intid, priority);
    }
    lanes.in_lr[index] = Some(intid);
    if let Some(slot) = lanes.priority.get_mut(index) {
        *slot = priority;
    }
    lanes.occupied |= 1 << index;
    if let Some(on) = LISTED_ON.get(intid as usize) {
        on.store(cpu + 1, Ordering::Relaxed);
    }
    let now = crate::hwtimer::counter_unordered();
    if let Some(at) = INJECTED_AT.get(cpu).and_then(|lrs| lrs.get(index)) {
        at.store(now, Ordering::Relaxed);
    }
    now
}

/// List register `index` of this CPU, read back invalid (the guest deactivated what it
/// held), leaves `lanes` (timed and cleared for a software interrupt, whose EOI maintenance
/// request would otherwise keep the maintenance interrupt asserted); returns whether it was
/// hardware-linked. The caller tells the vGIC and counts the completion ([`ACCOUNT`]).
fn retire(cpu: usize, lanes: &mut CpuLanes, index: usize) -> bool {
    if let Some(intid) = lanes.in_lr[index].take()
        && let Some(on) = LISTED_ON.get(intid as usize)
    {
        let _ = on.compare_exchange(cpu + 1, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    lanes.occupied &= !(1 << index);
    if lanes.linked & (1 << index) != 0 {
        // No maintenance request, nothing to clear; the completion is only seen now.
        lanes.linked &= !(1 << index);
        true
    } else {
        list_registers::clear(index);
        let injected_at = INJECTED_AT.get(cpu).and_then(|lrs| lrs.get(index)).map_or(0, |at| at.load(Ordering::Relaxed));
        let ticks = crate::hwtimer::counter_unordered().saturating_sub(injected_at);
        ACCOUNT.to_completion.record(ticks);
        false
    }
}

/// Takes at most `completed.len()` of the list registers the guest emptied out of `lanes`
/// (software ones timed), writing their INTIDs and whether each was hardware-linked to
/// `completed`; returns how many, and whether more were left. The emptied ones are found in
/// two system register reads, whatever the number of list registers: a hardware-linked one
/// read back invalid is empty (`ICH_ELRSR_EL2`); a software one keeps its EOI maintenance
/// request (`ICH_EISR_EL2`) until the core clears it ([`on_maintenance`] may have, which
/// makes it empty). The caller tells the vGIC and counts them ([`ReplayAccount::complete`]).
fn read_back(cpu: usize, lanes: &mut CpuLanes, completed: &mut [(u32, bool)]) -> (usize, bool) {
    let mut emptied = (list_registers::empty_mask() | list_registers::eoi_mask()) & lanes.occupied;
    let mut completions = 0;
    while emptied != 0 {
        let index = emptied.trailing_zeros() as usize;
        emptied &= emptied - 1;
        let Some(intid) = lanes.in_lr.get(index).copied().flatten() else {
            // Not the core's (never: the bit and the entry are set together): forget it.
            lanes.occupied &= !(1 << index);
            continue;
        };
        let Some(slot) = completed.get_mut(completions) else { return (completions, true) };
        *slot = (intid, retire(cpu, lanes, index));
        completions += 1;
    }
    (completions, false)
}

/// Takes back the completions in this CPU's list registers without injecting anything (for
/// an accurate account: a hardware-linked completion is otherwise seen at the next flush
/// that injects).
pub fn sync_completions() {
    let cpu = boot::cpu_index();
    let Some(lanes) = LANES.get(cpu) else { return };
    let mut guard = lanes.lock();
    if guard.count == 0 {
        return;
    }
    let mut completed = [(0u32, false); MAX_LIST_REGISTERS];
    let (completions, _) = read_back(cpu, &mut guard, &mut completed);
    let mut routes = DueRoutes::<MAX_LIST_REGISTERS>::new();
    if let Some(virq) = VIRQ.lock().as_mut() {
        for &(intid, linked) in &completed[..completions] {
            ACCOUNT.complete(&mut virq.vgic, cpu, intid, linked);
            routes.check(&virq.vgic, intid);
        }
    }
    routes.perform();
    publish_occupied(cpu, guard.occupied);
}

/// This CPU's vCPU stops (PSCI `CPU_OFF`): empties its list registers, since nobody will
/// handle what they hold until it starts again. What the guest emptied is a completion;
/// what it never acknowledged goes back to its vGIC entry (pending again, with its physical
/// activation if linked, for whichever vCPU it targets now — the guest moves its SPIs away
/// from a CPU it takes offline); what it acknowledged but left active is deactivated
/// (physically too, if linked): the guest will not deactivate it. No physical interrupt
/// stays active for a list register nobody runs.
///
/// One list register at a time, in two short IRQ-masked holds (the list register emptied,
/// then the model told), IRQs unmasked between holds; then one hold per other vCPU to kick
/// those with something to take. Each hold's time goes to [`longest_teardown_hold_ns`].
/// Call where [`flush`] may be called (in-band context at EL2, no lock held); the caller's
/// interrupt state is restored at the end.
pub fn take_back() {
    let cpu = boot::cpu_index();
    if let Some(flag) = RUNNING.get(cpu) {
        flag.store(false, Ordering::Release);
    }
    forget_left_access(cpu);
    let Some(lanes) = LANES.get(cpu) else { return };
    let saved = crate::arch::mask_irqs();
    if lanes.lock_irqs_masked().count != 0 {
        while let Some((intid, linked, kind)) = teardown_hold(|| take_back_one(cpu, &mut lanes.lock_irqs_masked())) {
            let mut routes = DueRoutes::<1>::new();
            let deactivate = teardown_hold(|| {
                let mut guard = VIRQ.lock_irqs_masked();
                let virq = guard.as_mut()?;
                let release = match kind {
                    TakenBack::Completed => {
                        ACCOUNT.complete(&mut virq.vgic, cpu, intid, linked);
                        false
                    }
                    TakenBack::Active => {
                        ACCOUNT.complete(&mut virq.vgic, cpu, intid, linked);
                        linked
                    }
                    TakenBack::Pending => ACCOUNT.requeue(&mut virq.vgic, cpu, intid).unwrap_or(false),
                };
                routes.check(&virq.vgic, intid);
                Some(release)
            });
            routes.perform();
            if deactivate == Some(true) {
                gic::deactivate_physical(intid, cpu);
            }
            // Between two holds: oob interrupts are taken here.
            crate::arch::unmask_irqs();
            let _ = crate::arch::mask_irqs();
        }
        teardown_hold(|| {
            let mut lanes = lanes.lock_irqs_masked();
            if lanes.sirq_lr.take().is_some() {
                list_registers::request_no_pending(false);
            }
            if lanes.underflow {
                list_registers::request_underflow(false);
                lanes.underflow = false;
            }
            lanes.refilling = false;
            // What the guest acknowledged and left active is gone from the list registers:
            // so is its active priority (the vCPU starts again as a PE that powers up).
            list_registers::clear_active_priorities();
            publish_occupied(cpu, 0);
        });
        crate::arch::unmask_irqs();
        kick_those_with_work(|ticks| {
            TEARDOWN_HOLD_MAX.fetch_max(ticks, Ordering::Relaxed);
        });
    }
    crate::arch::restore_irqs(saved);
}

/// What [`take_back_one`] found in a list register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TakenBack {
    /// The guest completed it (or a flush had read it back so).
    Completed,
    /// The guest acknowledged it and left it active: ended now.
    Active,
    /// Never acknowledged (or an injection a flush left half done): back to the model.
    Pending,
}

/// Empties the next list register of this CPU the core filled (a completion first, as the
/// read-back finds them), or finishes the work a flush left half done (it never does: it
/// finishes it): its INTID, whether it was hardware-linked, and what it held. `None` when
/// nothing is left.
fn take_back_one(cpu: usize, lanes: &mut CpuLanes) -> Option<(u32, bool, TakenBack)> {
    match core::mem::replace(&mut lanes.staged, Staged::Nothing) {
        Staged::Completed { intid, linked } => return Some((intid, linked, TakenBack::Completed)),
        Staged::Taken { intid, linked, .. } => return Some((intid, linked, TakenBack::Pending)),
        Staged::Chosen(_) | Staged::Nothing => {}
    }
    let mut completed = [(0u32, false)];
    if read_back(cpu, lanes, &mut completed).0 == 1 {
        let [(intid, linked)] = completed;
        publish_occupied(cpu, lanes.occupied);
        return Some((intid, linked, TakenBack::Completed));
    }
    while lanes.occupied != 0 {
        let index = lanes.occupied.trailing_zeros() as usize;
        let (state, _) = list_registers::read(index);
        let linked = lanes.linked & (1 << index) != 0;
        let intid = lanes.in_lr[index];
        vacate(cpu, lanes, index);
        publish_occupied(cpu, lanes.occupied);
        if let Some(intid) = intid {
            let kind = if state == LrState::Pending { TakenBack::Pending } else { TakenBack::Active };
            return Some((intid, linked, kind));
        }
    }
    None
}

/// The maintenance interrupt: the guest completed a software interrupt, acknowledged the
/// sirq post, or the list registers ran low. In interrupt context, so only what makes the
/// (level) maintenance interrupt fall, in a few instructions per list register and without
/// the vGIC lock: the software interrupts the guest completed leave their list registers
/// (`ICH_EISR_EL2`; the entries stay in `lanes`, and the next [`flush`] reads them back
/// invalid and takes them back), the underflow request is dropped, and the sirq post's
/// acknowledge is timed now. The refill is [`flush`]'s, on the way back into the guest, in
/// bounded holds.
fn on_maintenance(_intid: u32) {
    let cpu = boot::cpu_index();
    if let Some(lanes) = LANES.get(cpu) {
        let mut lanes = lanes.lock();
        let mut completed = list_registers::eoi_mask() & lanes.occupied & !lanes.linked;
        while completed != 0 {
            let index = completed.trailing_zeros() as usize;
            completed &= completed - 1;
            list_registers::clear(index);
        }
        if lanes.underflow {
            list_registers::request_underflow(false);
            lanes.underflow = false;
            // Entries wait in the model: the flush injects them in order.
            lanes.refilling = true;
        }
        check_sirq_acknowledge(&mut lanes);
    }
    note_work(cpu);
}

/// Makes CPU `cpu` (affinity `mpidr`) refill its list registers: any interrupt does, on its
/// way back into the guest; the oob kick is one every CPU accepts. Call without [`VIRQ`]
/// held.
fn kick_cpu(cpu: usize, mpidr: u64) {
    gic::send_sgi(crate::sched::KICK_SGI, mpidr, cpu);
}

/// The physical GIC as [`vm::vgic::physical`] drives it: the thin hardware end of the plan
/// the host-tested glue makes of a guest's GIC write (only passed-through INTIDs ever get
/// here).
struct HardwareGic;

impl PhysicalGic for HardwareGic {
    fn enable(&mut self, intid: u32, cpu: usize, edge: bool) {
        let trigger = if edge { arm_gic::Trigger::Edge } else { arm_gic::Trigger::Level };
        let _ = gic::enable_inband(intid, cpu, trigger);
    }

    fn disable(&mut self, intid: u32, cpu: usize) {
        let _ = gic::set_enabled(intid, cpu, false);
    }

    fn deactivate(&mut self, intid: u32, cpu: usize) {
        gic::deactivate_physical(intid, cpu);
    }

    fn route(&mut self, intid: u32, route: u64) {
        gic::set_route(intid, route);
    }
}

/// Per SPI: the guest moved it while its physical activation was in flight; the physical
/// route follows at its completion ([`physical::route_after_completion`]).
static DEFERRED_ROUTE: [AtomicBool; MAX_INTIDS] = [const { AtomicBool::new(false) }; MAX_INTIDS];

/// Per INTID: the CPU whose list registers hold a copy of it, plus one (0: none). Another
/// CPU that wants to inject it (a rerouted SPI fired again) kicks that CPU, whose next exit
/// reads the copy back ([`flush`] looks at `ICH_ELRSR_EL2` on every exit).
static LISTED_ON: [AtomicUsize; MAX_INTIDS] = [const { AtomicUsize::new(0) }; MAX_INTIDS];

/// Routes that became due with completions (SPIs of [`DEFERRED_ROUTE`]), performed after the
/// vGIC lock is released: at most `N`, the completions of one batch. Small: every flush hold
/// with a completion builds one.
struct DueRoutes<const N: usize> {
    /// `(SPI, GICD_IROUTER value)`, the first `count`.
    routes: [(u32, u64); N],
    count: usize,
}

impl<const N: usize> DueRoutes<N> {
    const fn new() -> Self {
        Self { routes: [(0, 0); N], count: 0 }
    }

    /// Under the vGIC lock, after the completion of `intid` (one of at most `N` in this
    /// batch).
    fn check(&mut self, vgic: &Vgic, intid: u32) {
        let Some(deferred) = DEFERRED_ROUTE.get(intid as usize) else { return };
        if !deferred.load(Ordering::Relaxed) {
            return;
        }
        if let Some(physical::LineOp::Route { intid, route }) = physical::route_after_completion(vgic, &crate::irq::OWNERSHIP, intid)
            && let Some(slot) = self.routes.get_mut(self.count)
        {
            deferred.store(false, Ordering::Relaxed);
            *slot = (intid, route);
            self.count += 1;
        }
    }

    /// Without the lock: moves the routes.
    fn perform(&self) {
        for &(intid, route) in &self.routes[..self.count] {
            gic::set_route(intid, route);
        }
    }
}

/// Most parts (INTIDs, see [`DecodedAccess::parts`]) of a guest GIC access done in one hold
/// of the vGIC lock: a bit-array register covers 32 INTIDs, and the model's work for all of
/// them in one IRQ-masked section would be several times the 300-instruction bound. One
/// INTID's update, its accounting and its physical plan take about 100-400 instructions
/// (measured under `-icount`); two already reach 600.
const PARTS_PER_HOLD: u32 = 1;

/// A guest access to the GIC frames, checked by its exit ([`mmio`]) and performed after it by
/// [`finish_exit`], in parts.
#[derive(Clone, Copy)]
struct GicAccess {
    /// The register and frame.
    decoded: DecodedAccess,
    /// The access (size, load or store, register).
    access: MmioAccess,
    /// A store's value.
    value: u64,
    /// The parts it covers ([`DecodedAccess::parts`]).
    parts: u32,
}

/// Per CPU, the GIC access its vCPU's exit left for [`finish_exit`] (only that CPU touches it).
static LEFT_ACCESS: [IrqSpinLock<Option<GicAccess>>; boot::MAX_CPUS] = [const { IrqSpinLock::new(None) }; boot::MAX_CPUS];
/// Per CPU, whether [`LEFT_ACCESS`] holds an access: [`finish_exit`]'s fast path.
static HAS_LEFT_ACCESS: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// The exit of a guest access to the GIC distributor or redistributors at `ipa`: checks it
/// (under the vGIC lock, a few instructions) and leaves it to [`finish_exit`], which runs
/// after the exit with IRQs unmasked and holds the lock for one INTID at a time. `None`
/// if `ipa` is not theirs, `Some(Err)` if the model refuses the access (the caller injects an
/// abort): a refused access changes nothing.
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<(), ()>> {
    let guard = VIRQ.lock_irqs_masked();
    let virq = guard.as_ref()?;
    let (in_dist, in_redist) = (
        ipa.wrapping_sub(virq.distributor) < DIST_SIZE,
        ipa.wrapping_sub(virq.redistributor) < REDIST_STRIDE * virq.vcpus as u64,
    );
    if !in_dist && !in_redist {
        return None;
    }
    let offset = if in_dist { ipa - virq.distributor } else { ipa - virq.redistributor };
    let store = if access.write {
        match access.store_value(&frame.x) {
            Ok(value) => Some(value),
            Err(_) => return Some(Err(())),
        }
    } else {
        None
    };
    let decoded = if in_dist { virq.vgic.decode_dist(offset, access.size) } else { virq.vgic.decode_redist(offset, access.size) };
    drop(guard);
    let Ok(decoded) = decoded else { return Some(Err(())) };
    let parts = decoded.parts(store);
    let cpu = boot::cpu_index();
    if let Some(slot) = LEFT_ACCESS.get(cpu) {
        *slot.lock() = Some(GicAccess { decoded, access, value: store.unwrap_or(0), parts });
        HAS_LEFT_ACCESS[cpu].store(true, Ordering::Relaxed);
    }
    Some(Ok(()))
}

/// After a GIC access's exit ([`mmio`]) or an SGI write's ([`send_sgi`]), on the way back
/// into the guest: performs it with
/// IRQs unmasked, holding the vGIC lock (IRQs masked) for at most [`PARTS_PER_HOLD`] INTIDs
/// at a time, so oob interrupts wait for one short section, never for the whole access. The
/// physical GIC is programmed and other CPUs kicked outside the lock. A load's value goes
/// to the guest's register in `frame`. Each section is counted in the exit histogram
/// ([`super::exits::ExitKind::GicMmioPart`]). Returns whether the access may have made an
/// interrupt deliverable (the caller refreshes the list registers). Nothing (a few
/// instructions) after any other exit.
pub fn finish_exit(frame: &mut TrapFrame) -> bool {
    let cpu = boot::cpu_index();
    if HAS_LEFT_SGI.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Relaxed)) {
        let value = LEFT_SGI[cpu].load(Ordering::Relaxed);
        return crate::arch::with_irqs_unmasked(|| finish_sgi(value));
    }
    if !HAS_LEFT_ACCESS.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Relaxed)) {
        return false;
    }
    let Some(left) = LEFT_ACCESS.get(cpu).and_then(|slot| slot.lock().take()) else { return false };
    crate::arch::with_irqs_unmasked(|| if left.access.write { finish_store(&left) } else { finish_load(frame, &left) })
}

/// The lowest `count` set bits of `bits`.
fn lowest_bits(bits: u32, count: u32) -> u32 {
    let mut rest = bits;
    for _ in 0..count {
        rest &= rest.wrapping_sub(1);
    }
    bits & !rest
}

/// Runs `step` on the model for each group of at most [`PARTS_PER_HOLD`] of `parts`, each
/// in one hold of the vGIC lock (an IRQ-masked section, counted in the exit histogram), and
/// `after` on its result once the lock is released. False (nothing done) without a guest.
fn in_parts<T>(parts: u32, mut step: impl FnMut(&mut Vgic, u32) -> T, mut after: impl FnMut(T)) -> bool {
    let mut rest = parts;
    while rest != 0 {
        let part = lowest_bits(rest, PARTS_PER_HOLD);
        rest &= !part;
        let Some(result) = gic_hold(|vgic| step(vgic, part)) else { return false };
        after(result);
    }
    true
}

/// Runs `step` on the model in one hold of the vGIC lock, an IRQ-masked section counted in
/// the exit histogram ([`super::exits::ExitKind::GicMmioPart`]). `None` without a guest.
fn gic_hold<T>(step: impl FnOnce(&mut Vgic) -> T) -> Option<T> {
    // Masked first, so that the time counted is exactly the IRQ-masked section.
    let irqs = crate::arch::mask_irqs();
    let start = crate::hwtimer::counter_unordered();
    let result = VIRQ.lock_irqs_masked().as_mut().map(|virq| step(&mut virq.vgic));
    super::exits::record(super::exits::ExitKind::GicMmioPart, crate::hwtimer::counter_unordered().wrapping_sub(start));
    crate::arch::restore_irqs(irqs);
    result
}

/// [`finish_exit`] of a store; returns whether it may have made an interrupt deliverable.
/// Each part takes two holds of the vGIC lock: the model's write with its accounting, then,
/// if it changed something, the CPUs whose listed copies it may have made outdated and the
/// physical plan (from the model as it is then: a later write's plan follows its own).
#[cold]
#[inline(never)]
fn finish_store(left: &GicAccess) -> bool {
    let (mut delivers, mut unknown) = (false, false);
    // The CPUs listing an interrupt whose copy the write may have made outdated.
    let mut recheck = 0u32;
    let mut rest = left.parts;
    while rest != 0 {
        let part = lowest_bits(rest, PARTS_PER_HOLD);
        rest &= !part;
        let write = |vgic: &mut Vgic| {
            let changes = vgic.write_part(&left.decoded, left.value, part);
            if let Some(change) = &changes.change {
                ACCOUNT.guest_write(change);
            }
            changes
        };
        let Some(changes) = gic_hold(write) else { return false };
        unknown |= changes.access == Access::Unknown;
        let Some(change) = changes.change else { continue };
        // A write that changed what may be delivered (enable, pending, routing, the
        // distributor enable) lets every vCPU look again, and kicks those on other CPUs that
        // now have something to take (below). Any other write (priority, trigger, active)
        // leaves every vCPU's work as it was: no kick.
        delivers |= matches!(
            change.kind,
            ChangeKind::Enabled | ChangeKind::PendingSet | ChangeKind::Route | ChangeKind::DistributorEnable(true)
        );
        let outdating = matches!(
            change.kind,
            ChangeKind::Disabled | ChangeKind::PendingCleared | ChangeKind::Priority | ChangeKind::PendingSet | ChangeKind::ActiveCleared
        );
        let plan = |vgic: &mut Vgic| {
            let listing = if outdating { listing_cpus(vgic, &change) } else { 0 };
            (listing, physical::plan(vgic, &crate::irq::OWNERSHIP, &changes))
        };
        let Some((listing, plan)) = gic_hold(plan) else { return false };
        recheck |= listing;
        if let Some(intid) = plan.deferred_route
            && let Some(deferred) = DEFERRED_ROUTE.get(intid as usize)
        {
            deferred.store(true, Ordering::Relaxed);
        }
        plan.perform(&mut HardwareGic);
    }
    if unknown {
        crate::guest::trap_log::count(crate::guest::trap_log::Kind::UnknownGicRegister);
    }
    if delivers {
        kick_those_with_work(|ticks| super::exits::record(super::exits::ExitKind::GicMmioPart, ticks));
    }
    let this_cpu = boot::cpu_index();
    let mut cpus = recheck;
    while cpus != 0 {
        let cpu = cpus.trailing_zeros() as usize;
        cpus &= cpus - 1;
        if let Some(flag) = RECHECK.get(cpu) {
            flag.store(true, Ordering::Release);
        }
        note_work(cpu);
        if cpu != this_cpu {
            kick_cpu(cpu, CPU_MPIDR[cpu].load(Ordering::Relaxed));
        }
    }
    delivers || recheck & (1 << this_cpu) != 0
}

/// A bit per CPU whose list registers hold one of the interrupts `change` names (a private
/// one: its vCPU's CPU; an SPI: the CPU [`LISTED_ON`] records).
fn listing_cpus(vgic: &Vgic, change: &vm::vgic::Change) -> u32 {
    let mut cpus = 0u32;
    let mut bits = change.mask;
    while bits != 0 {
        let intid = change.base + bits.trailing_zeros();
        bits &= bits - 1;
        let bank = change.vcpu.unwrap_or(0);
        if !vgic.is_listed(intid, bank) {
            continue;
        }
        let cpu = match change.vcpu {
            Some(vcpu) => vcpu,
            None => LISTED_ON.get(intid as usize).map_or(0, |on| on.load(Ordering::Relaxed)).wrapping_sub(1),
        };
        if cpu < boot::MAX_CPUS {
            cpus |= 1 << cpu;
        }
    }
    cpus
}

/// Lets every vCPU look for work again, and kicks the other CPUs whose vCPU has an
/// interrupt to take: one hold of the vGIC lock per vCPU looked at (each hold's time, in
/// counter ticks, given to `record`), each kick sent after its hold. Call with IRQs
/// unmasked.
fn kick_those_with_work(record: impl Fn(u64)) {
    let this_cpu = boot::cpu_index();
    for vcpu in 0..VCPU_COUNT.load(Ordering::Acquire) {
        note_work(vcpu);
        if vcpu == this_cpu {
            continue;
        }
        let irqs = crate::arch::mask_irqs();
        let start = crate::hwtimer::counter_unordered();
        let kick = VIRQ.lock_irqs_masked().as_ref().and_then(|virq| virq.vgic.highest_pending(vcpu).map(|_| virq.mpidrs[vcpu]));
        record(crate::hwtimer::counter_unordered().wrapping_sub(start));
        crate::arch::restore_irqs(irqs);
        if let Some(mpidr) = kick {
            kick_cpu(vcpu, mpidr);
        }
    }
}

/// [`finish_exit`] of a load: its parts read one hold at a time and combined, then the bits
/// of hardware-linked interrupts taken from the physical GIC.
#[cold]
#[inline(never)]
fn finish_load(frame: &mut TrapFrame, left: &GicAccess) -> bool {
    let (mut value, mut linked, mut unknown) = (0u64, None::<vm::vgic::Linked>, false);
    let step = |vgic: &mut Vgic, part| vgic.read_part(&left.decoded, part);
    let combine = |read: vm::vgic::MmioRead| {
        value |= read.value;
        unknown |= read.access == Access::Unknown;
        if let Some(part_linked) = read.linked {
            linked = Some(vm::vgic::Linked { mask: linked.map_or(0, |l| l.mask) | part_linked.mask, ..part_linked });
        }
    };
    if !in_parts(left.parts, step, combine) {
        return false;
    }
    if unknown {
        crate::guest::trap_log::count(crate::guest::trap_log::Kind::UnknownGicRegister);
    }
    // Interrupts sitting hardware-linked in a list register: the physical GIC knows whether
    // the guest deactivated them (the model learns it at the next read-back), and whether
    // their line is high again. Pending and active registers are word-sized: the bits are
    // the INTIDs `base..base + 32` (vINTID = pINTID).
    if let Some(linked) = linked
        && let Some(physical) = gic::bank_state(linked.base, linked.vcpu.unwrap_or(boot::cpu_index()), linked.active)
    {
        value = (value & !u64::from(linked.mask)) | u64::from(physical & linked.mask);
    }
    let _ = left.access.complete_load(&mut frame.x, value);
    false
}

/// Per vCPU, the SGIs the core posted to it ([`post_sgi`]) and [`flush`] has not yet put in
/// the model.
static POSTED: [AtomicU32; boot::MAX_CPUS] = [const { AtomicU32::new(0) }; boot::MAX_CPUS];
/// Per CPU, its MPIDR (to kick it without the vGIC lock).
static CPU_MPIDR: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];

/// Posts virtual SGI `sgi` to `vcpu` from the core (the sirq measurement, from an oob timer
/// callback under the scheduler lock): lock-free — the vGIC lock is never taken under the
/// scheduler's. The post is recorded per vCPU and put in the model by `vcpu`'s next
/// [`flush`] (the one on the way back into the guest after the callback, on `vcpu`'s own
/// CPU), if the guest has the SGI enabled and not already pending (otherwise it is refused
/// there: [`super::sirq::refused`]). Returns whether it was recorded.
pub fn post_sgi(vcpu: usize, sgi: u32) -> bool {
    if vcpu >= VCPU_COUNT.load(Ordering::Acquire) || sgi >= 16 {
        return false;
    }
    let Some(posted) = POSTED.get(vcpu) else { return false };
    posted.fetch_or(1 << sgi, Ordering::Release);
    note_work(vcpu);
    if vcpu != boot::cpu_index() {
        kick_cpu(vcpu, CPU_MPIDR[vcpu].load(Ordering::Relaxed));
    }
    true
}

/// Under the vGIC lock, in `cpu`'s flush: one of the core's posts to `cpu`'s vCPU (the
/// lowest SGI; the others stay posted for the next holds) enters the model (counted like any
/// entry), or is refused if the guest has the SGI disabled or pending. Returns whether there
/// was one.
fn take_post(vgic: &mut Vgic, cpu: usize) -> bool {
    let Some(posted) = POSTED.get(cpu) else { return false };
    if posted.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let sgis = posted.swap(0, Ordering::Acquire);
    if sgis == 0 {
        return false;
    }
    let sgi = sgis.trailing_zeros();
    let rest = sgis & (sgis - 1);
    if rest != 0 {
        posted.fetch_or(rest, Ordering::Release);
        note_work(cpu);
    }
    if !(vgic.state(sgi, cpu).is_ok_and(|s| s.enabled && !s.pending()) && ACCOUNT.set_pending(vgic, sgi, cpu).is_ok()) {
        super::sirq::refused(sgi);
    }
    true
}

/// Per CPU, the `ICC_SGI1R_EL1` value its vCPU's exit left for [`finish_exit`] (only that CPU
/// touches it), and whether there is one.
static LEFT_SGI: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
/// See [`LEFT_SGI`].
static HAS_LEFT_SGI: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

/// A trapped `ICC_SGI1R_EL1` write from this CPU's vCPU: only recorded (a few instructions in
/// the exit); [`finish_exit`] marks the SGI pending for its targets after the exit, in one
/// hold of the vGIC lock, and kicks the other CPUs among them with IRQs unmasked. The guest
/// does not run in between, so it sees the same order as if the exit had done it.
pub fn send_sgi(value: u64) {
    let cpu = boot::cpu_index();
    if let (Some(slot), Some(flag)) = (LEFT_SGI.get(cpu), HAS_LEFT_SGI.get(cpu)) {
        slot.store(value, Ordering::Relaxed);
        flag.store(true, Ordering::Relaxed);
    }
}

/// [`finish_exit`] of an SGI write (IRQs unmasked): the model's update in one hold (counted in
/// the exit histogram as [`super::exits::ExitKind::SgiWritePart`]), then the kicks. Returns
/// whether this CPU's own vCPU is a target.
#[cold]
#[inline(never)]
fn finish_sgi(value: u64) -> bool {
    let cpu = boot::cpu_index();
    let mut kicks = [None; boot::MAX_CPUS];
    let mut own = false;
    let irqs = crate::arch::mask_irqs();
    let start = crate::hwtimer::counter_unordered();
    if let Some(virq) = VIRQ.lock_irqs_masked().as_mut()
        && let Ok(targets) = ACCOUNT.sgi1r(&mut virq.vgic, cpu, value)
    {
        for target in targets.iter().filter(|&t| t < virq.vcpus) {
            note_work(target);
            if target == cpu {
                own = true;
            } else {
                kicks[target] = Some(virq.mpidrs[target]);
            }
        }
    }
    super::exits::record(super::exits::ExitKind::SgiWritePart, crate::hwtimer::counter_unordered().wrapping_sub(start));
    crate::arch::restore_irqs(irqs);
    for (target, mpidr) in kicks.into_iter().enumerate() {
        if let Some(mpidr) = mpidr {
            kick_cpu(target, mpidr);
        }
    }
    own
}

/// Entries of the model one hold of [`teardown`] resets ([`Vgic::teardown_part`]): holds of
/// four reached 304 ns in the guest-restart case (`-icount`, 62.5 MHz counter), of two 192.
const TEARDOWN_ENTRIES_PER_HOLD: usize = 2;

/// The longest IRQ-masked hold (counter ticks) of [`take_back`] and [`teardown`] since the
/// last [`longest_teardown_hold_ns`].
static TEARDOWN_HOLD_MAX: AtomicU64 = AtomicU64::new(0);

/// The longest IRQ-masked hold of the list-register take-back ([`take_back`], PSCI `CPU_OFF`
/// or a restart) and of the model's [`teardown`] since the last call, in ns ([`teardown`]
/// logs it).
fn longest_teardown_hold_ns() -> u64 {
    let ticks = TEARDOWN_HOLD_MAX.swap(0, Ordering::Relaxed);
    crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks))
}

/// Runs `hold` with IRQs masked, its time kept in [`TEARDOWN_HOLD_MAX`]; the caller's
/// interrupt state is restored after it.
fn teardown_hold<T>(hold: impl FnOnce() -> T) -> T {
    let irqs = crate::arch::mask_irqs();
    let start = crate::hwtimer::counter_unordered();
    let result = hold();
    TEARDOWN_HOLD_MAX.fetch_max(crate::hwtimer::counter_unordered().wrapping_sub(start), Ordering::Relaxed);
    crate::arch::restore_irqs(irqs);
    result
}

/// The guest is gone (a restart), every CPU out of guest context with its list registers
/// taken back ([`take_back`]): every passed-through line is masked in the physical GIC (the
/// new guest enables what it uses), then the model is torn down through [`ACCOUNT`] (what it
/// held for the dead guest is counted discarded) in holds of
/// [`TEARDOWN_ENTRIES_PER_HOLD`] entries, IRQs unmasked between two, each physical
/// activation it still owned deactivated after its hold; then the glue's per-INTID and
/// per-CPU bookkeeping is cleared. Call with IRQs unmasked, from the CPU doing the restart.
pub fn teardown() -> vm::vgic::Teardown {
    let vcpus = VCPU_COUNT.load(Ordering::Acquire);
    if VIRQ.lock().is_none() {
        return vm::vgic::Teardown::default();
    }
    // Masked first: no new forward reaches the model while it is torn down.
    let table = &crate::irq::OWNERSHIP;
    for intid in 16..(MAX_INTIDS as u32).min(vm::ownership::INTID_LIMIT) {
        let banks = if intid < FIRST_SPI { vcpus } else { 1 };
        for cpu in 0..banks {
            if table.owner(cpu, intid) == Owner::PassThrough {
                let _ = gic::set_enabled(intid, cpu, false);
            }
        }
    }
    let mut outcome = vm::vgic::Teardown::default();
    let mut start = 0;
    loop {
        let mut released = [(0u32, 0usize); TEARDOWN_ENTRIES_PER_HOLD];
        let mut count = 0;
        let part = teardown_hold(|| {
            let mut guard = VIRQ.lock_irqs_masked();
            let virq = guard.as_mut()?;
            let end = virq.vgic.teardown_entries();
            let range = start..(start + TEARDOWN_ENTRIES_PER_HOLD).min(end);
            let done = range.end == end;
            let part = ACCOUNT.teardown_part(&mut virq.vgic, range, |intid, vcpu| {
                if let Some(slot) = released.get_mut(count) {
                    *slot = (intid, vcpu);
                    count += 1;
                }
            });
            if done {
                virq.vgic.teardown_finish();
            }
            Some((part, done))
        });
        let Some((part, done)) = part else { break };
        for &(intid, vcpu) in &released[..count] {
            gic::deactivate_physical(intid, vcpu);
        }
        outcome += part;
        if done {
            break;
        }
        start += TEARDOWN_ENTRIES_PER_HOLD;
    }
    log::info!(
        "guest: vGIC teardown in {} holds of {TEARDOWN_ENTRIES_PER_HOLD} entries; longest IRQ-masked hold of the list-register take-back and the teardown {} ns",
        start / TEARDOWN_ENTRIES_PER_HOLD + 1,
        longest_teardown_hold_ns()
    );
    for flag in DEFERRED_ROUTE.iter() {
        flag.store(false, Ordering::Relaxed);
    }
    for on in LISTED_ON.iter() {
        on.store(0, Ordering::Relaxed);
    }
    for since in WAITING_SINCE.iter() {
        since.store(0, Ordering::Relaxed);
    }
    for cpu in 0..vcpus {
        POSTED[cpu].store(0, Ordering::Relaxed);
        WORK[cpu].store(false, Ordering::Relaxed);
        RECHECK[cpu].store(false, Ordering::Relaxed);
        forget_left_access(cpu);
    }
    outcome
}

/// Drops the GIC access or SGI write `cpu`'s vCPU left for [`finish_exit`], if any (its guest
/// is gone or it leaves guest context for good before finishing it).
fn forget_left_access(cpu: usize) {
    if let (Some(flag), Some(slot)) = (HAS_LEFT_ACCESS.get(cpu), LEFT_ACCESS.get(cpu)) {
        flag.store(false, Ordering::Relaxed);
        *slot.lock() = None;
    }
    if let Some(flag) = HAS_LEFT_SGI.get(cpu) {
        flag.store(false, Ordering::Relaxed);
    }
}
