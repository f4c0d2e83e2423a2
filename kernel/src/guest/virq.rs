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
//! This first version serves one vCPU on the boot CPU. What does not fit in the list
//! registers stays pending in the vGIC (one entry per INTID, offered by priority) until the
//! underflow maintenance interrupt asks for a refill.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use platform::GicInfo;
use vm::mmio::MmioAccess;
use vm::vgic::{Access, ChangeKind, Changes, Vgic};

use super::list_registers::{self, LrState, MAX_LIST_REGISTERS};
use crate::arch::irq_lock::IrqSpinLock;
use crate::gic;

/// Size of the distributor frame.
const DIST_SIZE: u64 = 0x1_0000;
/// Size of one vCPU's redistributor (RD_base + SGI_base frames).
const REDIST_STRIDE: u64 = 0x2_0000;

/// The glue's state for one guest.
struct Virq {
    vgic: Vgic,
    distributor: u64,
    redistributor: u64,
    vcpus: u64,
    /// The INTID in each list register of the boot CPU, if any.
    in_lr: [Option<u32>; MAX_LIST_REGISTERS],
    lrs: usize,
    /// Physical INTIDs masked while the guest handles their virtual copy.
    masked: [u32; 32],
    /// The physical CPU running vCPU 0.
    cpu: usize,
}

static VIRQ: IrqSpinLock<Option<Virq>> = IrqSpinLock::new(None);
/// Physical interrupts forwarded to the guest.
pub static FORWARDED: AtomicU64 = AtomicU64::new(0);
/// Virtual interrupts put into list registers.
pub static INJECTED: AtomicU64 = AtomicU64::new(0);
/// Virtual interrupts the guest deactivated.
pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
static UNKNOWN_LOGGED: AtomicBool = AtomicBool::new(false);

/// Sets up the vGIC for one vCPU of affinity `mpidr` on `cpu`, with `spis` SPIs, and turns on
/// this CPU's virtual interface. Call before entering the guest.
pub fn init(gic_info: &GicInfo, mpidr: u64, spis: u32, cpu: usize) -> Result<(), &'static str> {
    let vgic = Vgic::new(&[mpidr], spis).map_err(|_| "vGIC model")?;
    let redistributor = gic_info.redistributor.ok_or("no redistributor region (GICv3 only for now)")?.base;
    let lrs = list_registers::count();
    for index in 0..lrs {
        list_registers::clear(index);
    }
    list_registers::enable_interface();
    *VIRQ.lock() = Some(Virq {
        vgic,
        distributor: gic_info.distributor.base,
        redistributor,
        vcpus: 1,
        in_lr: [None; MAX_LIST_REGISTERS],
        lrs,
        masked: [0; 32],
        cpu,
    });
    if let Some(maintenance) = gic_info.maintenance_intid {
        crate::irq::claim(maintenance, on_maintenance).map_err(|_| "maintenance interrupt")?;
        gic::enable_private(maintenance, cpu, gic::OOB_PRIORITY, arm_gic::Trigger::Level)
            .map_err(|_| "maintenance interrupt")?;
    }
    Ok(())
}

/// Takes a physical interrupt nobody in the core claimed for the guest; false if there is
/// no guest (the caller counts it as unclaimed).
pub fn forward(intid: u32) -> bool {
    let mut guard = VIRQ.lock();
    let Some(virq) = guard.as_mut() else { return false };
    if intid < 16 || intid as usize >= 32 * virq.masked.len() {
        return false;
    }
    let _ = gic::set_enabled(intid, virq.cpu, false);
    virq.masked[intid as usize / 32] |= 1 << (intid % 32);
    let edge = virq.vgic.state(intid, 0).map(|s| s.edge).unwrap_or(false);
    let _ = if edge { virq.vgic.set_pending(intid, 0) } else { virq.vgic.set_level(intid, 0, true) };
    FORWARDED.fetch_add(1, Ordering::Relaxed);
    true
}

/// Brings the list registers up to date before the guest runs again: completions are
/// taken back, masked physical lines re-enabled, and the best pending interrupts injected.
pub fn flush() {
    let mut guard = VIRQ.lock();
    if let Some(virq) = guard.as_mut() {
        virq.sync_and_fill();
    }
}

/// The maintenance interrupt: the guest completed an interrupt, or the list registers ran
/// low.
fn on_maintenance(_intid: u32) {
    flush();
}

impl Virq {
    fn sync_and_fill(&mut self) {
        for index in 0..self.lrs {
            let Some(intid) = self.in_lr[index] else { continue };
            let (state, _) = list_registers::read(index);
            if state != LrState::Invalid {
                continue;
            }
            // An empty LR with its EOI request still set keeps the maintenance interrupt
            // asserted (ICH_EISR_EL2): clear it.
            list_registers::clear(index);
            self.in_lr[index] = None;
            let _ = self.vgic.deactivate(0, intid);
            COMPLETED.fetch_add(1, Ordering::Relaxed);
            let (word, bit) = (intid as usize / 32, 1u32 << (intid % 32));
            if self.masked.get(word).is_some_and(|w| w & bit != 0) {
                self.masked[word] &= !bit;
                // The line is sampled again once enabled: a level still high fires anew.
                let _ = self.vgic.set_level(intid, 0, false);
                let _ = gic::set_enabled(intid, self.cpu, true);
            }
        }
        let mut waiting = false;
        loop {
            let Some(free) = (0..self.lrs).find(|&i| self.in_lr[i].is_none()) else {
                waiting = self.vgic.highest_pending(0).is_some();
                break;
            };
            let Some((intid, priority)) = self.vgic.highest_pending(0) else { break };
            if self.vgic.acknowledge(0, intid).is_err() {
                break;
            }
            list_registers::inject(free, intid, priority);
            self.in_lr[free] = Some(intid);
            INJECTED.fetch_add(1, Ordering::Relaxed);
        }
        list_registers::request_underflow(waiting);
    }

    fn apply(&mut self, changes: Changes) {
        if changes.access == Access::Unknown && !UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
            log::warn!("guest touched a GIC register the model does not know (RAZ/WI; logged once)");
        }
        let Some(change) = changes.change else { return };
        for bit in 0..32 {
            if change.mask & (1 << bit) == 0 {
                continue;
            }
            let intid = change.base + bit;
            match change.kind {
                ChangeKind::Enabled if intid >= 16 => {
                    let edge = self.vgic.state(intid, 0).map(|s| s.edge).unwrap_or(false);
                    let trigger = if edge { arm_gic::Trigger::Edge } else { arm_gic::Trigger::Level };
                    let _ = gic::enable_inband(intid, self.cpu, trigger);
                }
                ChangeKind::Disabled if intid >= 16 => {
                    let _ = gic::set_enabled(intid, self.cpu, false);
                }
                _ => {}
            }
        }
    }
}

/// Emulates a guest access to the GIC distributor or redistributors at `ipa`; false if
/// `ipa` is not theirs. An access the model refuses gets an abort injected by the caller.
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<(), ()>> {
    let mut guard = VIRQ.lock();
    let virq = guard.as_mut()?;
    let (in_dist, in_redist) = (
        ipa.wrapping_sub(virq.distributor) < DIST_SIZE,
        ipa.wrapping_sub(virq.redistributor) < REDIST_STRIDE * virq.vcpus,
    );
    if !in_dist && !in_redist {
        return None;
    }
    let offset = if in_dist { ipa - virq.distributor } else { ipa - virq.redistributor };
    let result = if access.write {
        let Ok(value) = access.store_value(&frame.x) else { return Some(Err(())) };
        let changes =
            if in_dist { virq.vgic.dist_write(offset, access.size, value) } else { virq.vgic.redist_write(offset, access.size, value) };
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

/// A trapped `ICC_SGI1R_EL1` write: marks the SGI pending for its targets.
pub fn send_sgi(value: u64) {
    let mut guard = VIRQ.lock();
    if let Some(virq) = guard.as_mut() {
        let _ = virq.vgic.sgi1r(0, value);
    }
}
