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

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use platform::GicInfo;
use vm::mmio::MmioAccess;
use vm::vgic::{Access, ChangeKind, Changes, Target, Vgic};

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
    /// Per vCPU (= CPU), the INTID in each of its list registers.
    in_lr: [[Option<u32>; MAX_LIST_REGISTERS]; boot::MAX_CPUS],
    /// Per CPU, its number of list registers.
    lrs: [usize; boot::MAX_CPUS],
    /// SPIs masked at the physical GIC while the guest handles their virtual copy.
    masked_spis: [u32; MAX_INTIDS / 32],
    /// Per CPU, its private interrupts masked the same way.
    masked_private: [u32; boot::MAX_CPUS],
    /// Per CPU, its MPIDR (to kick it).
    mpidrs: [u64; boot::MAX_CPUS],
}

static VIRQ: IrqSpinLock<Option<Virq>> = IrqSpinLock::new(None);
/// The maintenance interrupt's INTID (0: none).
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(0);
/// Physical interrupts forwarded to the guest.
pub static FORWARDED: AtomicU64 = AtomicU64::new(0);
/// Per INTID, physical interrupts forwarded to the guest.
static FORWARDED_BY_INTID: [AtomicU64; MAX_INTIDS] = [const { AtomicU64::new(0) }; MAX_INTIDS];

/// How many times physical interrupt `intid` was forwarded to the guest.
pub fn forwarded(intid: u32) -> u64 {
    FORWARDED_BY_INTID.get(intid as usize).map_or(0, |count| count.load(Ordering::Relaxed))
}

/// Virtual interrupts put into list registers.
pub static INJECTED: AtomicU64 = AtomicU64::new(0);
/// Virtual interrupts the guest deactivated.
pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
static UNKNOWN_LOGGED: AtomicBool = AtomicBool::new(false);
/// Per vCPU: something may be pending for it or sits in its list registers. [`flush`] skips
/// the lock (and the vGIC scan) when not, which is most guest exits.
static WORK: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];

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
        in_lr: [[None; MAX_LIST_REGISTERS]; boot::MAX_CPUS],
        lrs: [0; boot::MAX_CPUS],
        masked_spis: [0; MAX_INTIDS / 32],
        masked_private: [0; boot::MAX_CPUS],
        mpidrs: cpu_mpidrs,
    });
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
    list_registers::enable_interface();
    if let Some(virq) = VIRQ.lock().as_mut()
        && let Some(slot) = virq.lrs.get_mut(cpu)
    {
        *slot = lrs;
        virq.in_lr[cpu] = [None; MAX_LIST_REGISTERS];
    }
    let maintenance = MAINTENANCE_INTID.load(Ordering::Relaxed);
    if maintenance != 0 {
        let _ = gic::enable_private(maintenance, cpu, gic::OOB_PRIORITY, arm_gic::Trigger::Level);
    }
}

/// Takes a physical interrupt nobody in the core claimed for the guest; false if there is
/// no guest (the caller counts it as unclaimed).
pub fn forward(intid: u32) -> bool {
    let cpu = boot::cpu_index();
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return false };
    if intid < 16 || intid as usize >= MAX_INTIDS || cpu >= virq.vcpus {
        return false;
    }
    let _ = gic::set_enabled(intid, cpu, false);
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
    let edge = virq.vgic.state(intid, target).map(|s| s.edge).unwrap_or(false);
    let _ = if edge { virq.vgic.set_pending(intid, target) } else { virq.vgic.set_level(intid, target, true) };
    FORWARDED.fetch_add(1, Ordering::Relaxed);
    FORWARDED_BY_INTID[intid as usize].fetch_add(1, Ordering::Relaxed);
    note_work(target);
    if target != cpu {
        virq.kick(target);
    }
    true
}

/// Drives the line of a virtual-only interrupt (an emulated device's, never a physical one)
/// to `level` for `vcpu` (for an SPI: the vCPU raising it; the vGIC's routing picks the
/// target). The physical GIC is not touched. What became pending is injected on the target's
/// next way back into the guest.
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
    if virq.vgic.set_level(intid, target, level).is_err() {
        return;
    }
    note_work(target);
    if level && target != boot::cpu_index() {
        virq.kick(target);
    }
}

/// Brings this CPU's list registers up to date before its vCPU runs again: completions are
/// taken back, masked physical lines re-enabled, and the best pending interrupts injected.
pub fn flush() {
    let cpu = boot::cpu_index();
    if !WORK.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::Acquire)) {
        return;
    }
    let mut guard = VIRQ.lock();
    if let Some(virq) = guard.as_mut()
        && cpu < virq.vcpus
    {
        virq.sync_and_fill(cpu);
    }
}

/// The maintenance interrupt: the guest completed an interrupt, or the list registers ran
/// low.
fn on_maintenance(_intid: u32) {
    note_work(boot::cpu_index());
    flush();
}

impl Virq {
    /// Makes CPU `target` refill its list registers (any interrupt does, on its way back into
    /// the guest; the oob kick is one every CPU accepts).
    fn kick(&self, target: usize) {
        if let Some(&mpidr) = self.mpidrs.get(target) {
            gic::send_sgi(crate::sched::KICK_SGI, mpidr, target);
        }
    }

    fn sync_and_fill(&mut self, cpu: usize) {
        let lrs = self.lrs[cpu];
        for index in 0..lrs {
            let Some(intid) = self.in_lr[cpu][index] else { continue };
            let (state, _) = list_registers::read(index);
            if state != LrState::Invalid {
                continue;
            }
            // An empty LR with its EOI request still set keeps the maintenance interrupt
            // asserted (ICH_EISR_EL2): clear it.
            list_registers::clear(index);
            self.in_lr[cpu][index] = None;
            let _ = self.vgic.deactivate(cpu, intid);
            COMPLETED.fetch_add(1, Ordering::Relaxed);
            let bit = 1u32 << (intid % 32);
            let masked = if intid < FIRST_SPI {
                &mut self.masked_private[cpu]
            } else {
                &mut self.masked_spis[intid as usize / 32]
            };
            if *masked & bit != 0 {
                *masked &= !bit;
                // The line is sampled again once enabled: a level still high fires anew.
                let _ = self.vgic.set_level(intid, cpu, false);
                let _ = gic::set_enabled(intid, cpu, true);
            }
        }
        let mut waiting = false;
        loop {
            let Some(free) = (0..lrs).find(|&i| self.in_lr[cpu][i].is_none()) else {
                waiting = self.vgic.highest_pending(cpu).is_some();
                break;
            };
            let Some((intid, priority)) = self.vgic.highest_pending(cpu) else { break };
            if self.vgic.acknowledge(cpu, intid).is_err() {
                break;
            }
            list_registers::inject(free, intid, priority);
            self.in_lr[cpu][free] = Some(intid);
            INJECTED.fetch_add(1, Ordering::Relaxed);
        }
        list_registers::request_underflow(waiting);
        if waiting || self.in_lr[cpu][..lrs].iter().any(Option::is_some) {
            note_work(cpu);
        }
    }

    fn apply(&mut self, changes: Changes) {
        if changes.access == Access::Unknown && !UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
            log::warn!("guest touched a GIC register the model does not know (RAZ/WI; logged once)");
        }
        let Some(change) = changes.change else { return };
        let cpu = change.vcpu.unwrap_or(0);
        for bit in 0..32 {
            if change.mask & (1 << bit) == 0 {
                continue;
            }
            let intid = change.base + bit;
            match change.kind {
                ChangeKind::Enabled if intid >= 16 => {
                    let edge = self.vgic.state(intid, cpu).map(|s| s.edge).unwrap_or(false);
                    let trigger = if edge { arm_gic::Trigger::Edge } else { arm_gic::Trigger::Level };
                    let _ = gic::enable_inband(intid, cpu, trigger);
                }
                ChangeKind::Disabled if intid >= 16 => {
                    let _ = gic::set_enabled(intid, cpu, false);
                }
                _ => {}
            }
        }
    }
}

/// Emulates a guest access to the GIC distributor or redistributors at `ipa`; `None` if
/// `ipa` is not theirs, `Some(Err)` if the model refuses the access (the caller injects an
/// abort).
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<(), ()>> {
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
        // vCPU look again.
        for vcpu in 0..virq.vcpus {
            note_work(vcpu);
        }
        changes.map(|changes| virq.apply(changes))
    } else {
        let read = if in_dist { virq.vgic.dist_read(offset, access.size) } else { virq.vgic.redist_read(offset, access.size) };
        read.map(|read| {
            if read.access == Access::Unknown && !UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
                log::warn!("guest read a GIC register the model does not know at {ipa:#x} (RAZ; logged once)");
            }
            let _ = access.complete_load(&mut frame.x, read.value);
        })
    };
    Some(result.map_err(|_| ()))
}

/// A trapped `ICC_SGI1R_EL1` write from this CPU's vCPU: marks the SGI pending for its
/// targets and kicks the other CPUs among them.
pub fn send_sgi(value: u64) {
    let cpu = boot::cpu_index();
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return };
    if let Ok(targets) = virq.vgic.sgi1r(cpu, value) {
        for target in targets.iter().filter(|&t| t < virq.vcpus) {
            note_work(target);
            if target != cpu {
                virq.kick(target);
            }
        }
    }
}
