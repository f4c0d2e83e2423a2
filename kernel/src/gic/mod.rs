//! The physical GIC, owned by the core: set up through the `arm-gic` driver (distributor,
//! redistributors), with the per-CPU acknowledge/end-of-interrupt path kept lock-free.
//! GICv3 and GICv2 sit behind the same functions.
//!
//! On GICv3 the core's CPU interface splits priority drop and deactivation
//! (`ICC_CTLR_EL1.EOImode = 1` at EL2): [`end_of_interrupt`] is an EOI (priority drop)
//! followed by a deactivation (`ICC_DIR_EL1`), while an interrupt forwarded to the guest
//! only has its priority dropped ([`drop_priority`]) and stays active until the guest
//! deactivates its hardware-linked virtual copy (see `guest::virq`). GICv2, which hosts no
//! guest, keeps EOImode 0: there the EOI does both.

mod v2_cpu_interface;

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aarch64_cpu::registers::{ICC_CTLR_EL1, ICC_SRE_EL2, ICH_VTR_EL2, Readable, Writeable};
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};
use platform::{GicInfo, GicVersion};
use spin::Once;

use crate::arch::irq_lock::IrqTasLock;
use tock_registers::LocalRegisterCopy;
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::ReadOnly;

use v2_cpu_interface::GicV2CpuInterface;

register_bitfields![u32,
    /// GICH_VTR: VGIC type register (GICv2 architecture spec, 5.3.2).
    GICH_VTR [
        /// Number of list registers minus one.
        LIST_REGS OFFSET(0) NUMBITS(6) []
    ]
];

register_bitfields![u64,
    /// ICC_CTLR_EL1, the fields the core sets (`aarch64-cpu` describes it read-only).
    ICC_CTLR [
        /// EOImode: 0, an EOI drops the priority and deactivates; 1, it only drops the
        /// priority, and ICC_DIR_EL1 deactivates.
        EOIMODE OFFSET(1) NUMBITS(1) []
    ]
];

register_structs! {
    /// The start of the GICv2 virtual interface control frame.
    GichRegisters {
        (0x00 => _hcr),
        (0x04 => vtr: ReadOnly<u32, GICH_VTR::Register>),
        (0x08 => @END),
    }
}

/// Priority of the core's own interrupts (timer, IPIs): the highest non-secure level.
pub const OOB_PRIORITY: u8 = 0x80;
/// Priority mask that lets every non-secure priority through.
const PRIORITY_MASK_ALL: u8 = 0xff;

/// What the probe found.
#[derive(Debug, Clone, Copy)]
pub struct GicSummary {
    /// Architecture version.
    pub version: GicVersion,
    /// Shared peripheral interrupts the distributor implements.
    pub spis: u32,
    /// List registers of the virtual CPU interface (0 when it is missing).
    pub list_registers: u32,
}

impl fmt::Display for GicSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} SPIs, {} list registers)", self.version, self.spis, self.list_registers)
    }
}

/// Why the GIC is unusable.
#[derive(Debug, Clone, Copy)]
pub enum GicError {
    /// The tree lacks a frame this version needs.
    MissingFrame(&'static str),
    /// The redistributors did not answer.
    Redistributor,
    /// An interrupt number the GIC rejects.
    BadIntId(u32),
    /// The GICv3 CPU interface kept EOImode 0 (no split priority drop and deactivation).
    NoSplitEoi,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFrame(which) => write!(f, "the device tree gives no {which} frame"),
            Self::Redistributor => write!(f, "the GICv3 redistributors could not be read"),
            Self::BadIntId(intid) => write!(f, "interrupt {intid} is not valid for this GIC"),
            Self::NoSplitEoi => write!(f, "the GICv3 CPU interface refused EOImode 1"),
        }
    }
}

/// The distributor-side driver, used under a lock for configuration only.
enum Distributor {
    V3(GicV3<'static>),
    V2(GicV2<'static>),
}

// SAFETY: the driver only holds MMIO pointers; every use goes through the DISTRIBUTOR lock.
unsafe impl Send for Distributor {}

/// Test-and-set rather than ticket: guest exits on every CPU may take it (guest writes to the
/// emulated distributor; on GICv2, masking and unmasking forwarded interrupts, which GICv3
/// does without it, see [`EnableRegisters`]), and a ticket lock handed to a waiter whose vCPU
/// thread the host descheduled stalls every CPU behind it (see `IrqTasLock`).
static DISTRIBUTOR: Once<IrqTasLock<Distributor>> = Once::new();
/// GICv2 CPU interface base (banked per CPU, so one address serves all); 0 on GICv3.
static GICC_BASE: AtomicUsize = AtomicUsize::new(0);
/// GICv2 distributor base (for [`set_priority_v2`]); 0 on GICv3.
static GICD_V2_BASE: AtomicUsize = AtomicUsize::new(0);
/// GICD_IPRIORITYR<n> offset: one byte per INTID.
const IPRIORITYR: usize = 0x400;

/// Sets the priority of `intid` on a GICv2 (for a private one, the calling CPU's copy) with a
/// byte store to its GICD_IPRIORITYR byte, which GICv2 allows. (`arm-gic` 0.10's GICv2
/// `set_interrupt_priority` writes the whole word, zeroing — making most urgent — the three
/// other interrupts that share it.)
fn set_priority_v2(intid: u32, priority: u8) {
    let gicd = GICD_V2_BASE.load(Ordering::Relaxed);
    if gicd == 0 || intid >= SPECIAL_INTIDS {
        return;
    }
    // SAFETY: the byte of `intid` in GICD_IPRIORITYR, inside the distributor frame `init`
    // found mapped as device memory (for ever); a byte write changes only that priority.
    unsafe { ((gicd + IPRIORITYR + intid as usize) as *mut u8).write_volatile(priority) };
}

/// GICv3: where [`set_enabled`], [`deactivate_physical`] and [`bank_state`] reach the
/// enable, active and pending bits of an interrupt without the [`DISTRIBUTOR`] lock (all 0
/// until [`init`] found a GICv3).
///
/// GICD_ISENABLER / GICD_ICENABLER, GICD_ICACTIVER and their redistributor copies are
/// write-one-to-set / write-one-to-clear: one store changes one interrupt's bit and leaves
/// the others alone, so unlike the driver's read-modify-write configuration registers they
/// need no lock; ISPENDR and ISACTIVER are only read.
struct EnableRegisters {
    /// The distributor frame.
    gicd: AtomicUsize,
    /// Per CPU (logical index), its redistributor's RD_base frame, found by affinity
    /// ([`find_redistributors`]); 0 if none matched.
    gicr: [AtomicUsize; boot::MAX_CPUS],
    /// Per CPU, the index of its redistributor in the region (the `arm-gic` driver's CPU
    /// index, which counts frames).
    driver_index: [AtomicUsize; boot::MAX_CPUS],
}

static ENABLE_REGISTERS: EnableRegisters = EnableRegisters {
    gicd: AtomicUsize::new(0),
    gicr: [const { AtomicUsize::new(0) }; boot::MAX_CPUS],
    driver_index: [const { AtomicUsize::new(0) }; boot::MAX_CPUS],
};

/// GICD_CTLR / GICR_CTLR offset (from GICD / RD_base).
const CTLR: usize = 0x0;
/// GICD_CTLR.RWP: a write to GICD_CTLR or GICD_ICENABLER<n> is still in progress.
const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICR_CTLR.RWP: a write to GICR_ICENABLER0 (or GICR_CTLR) is still in progress.
const GICR_CTLR_RWP: u32 = 1 << 3;
/// Most polls of an RWP bit before giving up (a GIC that never clears it must not hang the
/// core; the architecture bounds the wait to the time the disable takes to propagate).
const RWP_POLLS: u32 = 100_000;
/// GICD_ISENABLER<n> / GICR_ISENABLER0 offset (from GICD / SGI_base).
const ISENABLER: usize = 0x100;
/// GICD_ICENABLER<n> / GICR_ICENABLER0 offset (from GICD / SGI_base).
const ICENABLER: usize = 0x180;
/// GICD_ISPENDR<n> / GICR_ISPENDR0 offset (from GICD / SGI_base).
const ISPENDR: usize = 0x200;
/// GICD_ISACTIVER<n> / GICR_ISACTIVER0 offset (from GICD / SGI_base).
const ISACTIVER: usize = 0x300;
/// GICD_ICACTIVER<n> / GICR_ICACTIVER0 offset (from GICD / SGI_base).
const ICACTIVER: usize = 0x380;
/// Offset of a redistributor's SGI_base frame from its RD_base.
const GICR_SGI_BASE: usize = 0x1_0000;
/// GICR_TYPER offset (from RD_base).
const GICR_TYPER: usize = 0x8;
/// GICR_TYPER.VLPIS: the redistributor has the two extra GICv4 frames (VLPI_base and a
/// reserved one).
const GICR_TYPER_VLPIS: u64 = 1 << 1;
/// GICR_TYPER.Last: the last redistributor of its region.
const GICR_TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER.Affinity_Value: bits 63:32, Aff3.Aff2.Aff1.Aff0.
const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;
/// MPIDR_EL1.Aff3, bits 39:32 (Aff2..Aff0 are bits 23:0).
const MPIDR_AFF3_SHIFT: u32 = 32;
/// MPIDR_EL1.Aff2..Aff0.
const MPIDR_AFF0_2: u64 = 0xff_ffff;
/// Redistributor stride of GICv3: RD_base and SGI_base.
const GICR_STRIDE_V3: usize = 0x2_0000;
/// Redistributor stride with the GICv4 frames.
const GICR_STRIDE_V4: usize = 0x4_0000;

/// Walks the redistributor region at `base` (`size` bytes), frame by frame (each frame's
/// GICR_TYPER gives its size and whether it is the last), and records for every CPU of
/// `mpidrs` (logical order) the redistributor whose GICR_TYPER affinity is that CPU's.
/// Returns how many frames the region holds.
///
/// # Safety
/// The region must be mapped as device memory.
unsafe fn find_redistributors(base: usize, size: usize, mpidrs: &[u64]) -> usize {
    let mut offset = 0;
    let mut index = 0;
    while offset + GICR_STRIDE_V3 <= size {
        // SAFETY: inside the mapped region (the caller's contract); GICR_TYPER is read-only.
        let typer = unsafe { ((base + offset + GICR_TYPER) as *const u64).read_volatile() };
        let affinity = typer >> GICR_TYPER_AFFINITY_SHIFT;
        for (cpu, &mpidr) in mpidrs.iter().enumerate().take(boot::MAX_CPUS) {
            let packed = ((mpidr >> MPIDR_AFF3_SHIFT) & 0xff) << 24 | (mpidr & MPIDR_AFF0_2);
            if packed == affinity {
                ENABLE_REGISTERS.gicr[cpu].store(base + offset, Ordering::Relaxed);
                ENABLE_REGISTERS.driver_index[cpu].store(index, Ordering::Relaxed);
            }
        }
        index += 1;
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        offset += if typer & GICR_TYPER_VLPIS != 0 { GICR_STRIDE_V4 } else { GICR_STRIDE_V3 };
    }
    index
}

/// The `arm-gic` driver's index of `cpu`'s redistributor (it counts frames from the
/// region's start; the core's logical CPU order may differ).
fn driver_cpu(cpu: usize) -> usize {
    ENABLE_REGISTERS.driver_index.get(cpu).map_or(cpu, |index| index.load(Ordering::Relaxed))
}

/// Takes ownership of the GIC: default configuration (every SPI group 1, disabled, level),
/// the boot CPU's interface enabled. `mpidrs` are the CPUs' affinities in logical order
/// (the boot CPU first); each CPU's redistributor is the one whose GICR_TYPER names its
/// affinity. Returns what the hardware implements.
///
/// # Safety
/// The frames in `info` must be mapped as device memory; call once, on the boot CPU.
pub unsafe fn init(info: &GicInfo, mpidrs: &[u64]) -> Result<GicSummary, GicError> {
    let (distributor, summary) = match info.version {
        GicVersion::V3 => {
            let gicd = NonNull::new(info.distributor.base as *mut _).ok_or(GicError::MissingFrame("distributor"))?;
            let region = info.redistributor.ok_or(GicError::MissingFrame("redistributor"))?;
            let gicr = NonNull::new(region.base as *mut _).ok_or(GicError::MissingFrame("redistributor"))?;
            // SAFETY: the caller guarantees the region is mapped as device memory.
            let frames = unsafe { find_redistributors(region.base as usize, region.size as usize, mpidrs) };
            // SAFETY: the caller guarantees the frames are mapped and unaliased; the driver
            // gets every frame of the region (it indexes them in order, see `driver_cpu`).
            let mut gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, frames.max(1)) }
                .map_err(|_| GicError::Redistributor)?;
            // Last, with release: a non-zero GICD address publishes the others.
            ENABLE_REGISTERS.gicd.store(info.distributor.base as usize, Ordering::Release);
            enable_el2_system_registers();
            gic.setup(driver_cpu(0));
            if !split_priority_drop() {
                return Err(GicError::NoSplitEoi);
            }
            SPLIT_EOI.store(true, Ordering::Release);
            GicCpuInterface::set_priority_mask(PRIORITY_MASK_ALL);
            let list_registers = ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as u32 + 1;
            let summary = GicSummary { version: info.version, spis: gic.typer().num_spis(), list_registers };
            (Distributor::V3(gic), summary)
        }
        GicVersion::V2 => {
            let gicc = info.cpu_interface.ok_or(GicError::MissingFrame("CPU interface"))?;
            // SAFETY: the caller guarantees the frames are mapped and unaliased.
            let mut gic = unsafe { GicV2::new(info.distributor.base as *mut _, gicc.base as *mut _) };
            gic.setup();
            gic.set_priority_mask(PRIORITY_MASK_ALL);
            GICD_V2_BASE.store(info.distributor.base as usize, Ordering::Relaxed);
            GICC_BASE.store(gicc.base as usize, Ordering::Release);
            let list_registers = info.hyp_interface.map_or(0, |gich| {
                // SAFETY: GICH is mapped as device memory per the caller's contract.
                let gich = unsafe { &*(gich.base as *const GichRegisters) };
                gich.vtr.read(GICH_VTR::LIST_REGS) + 1
            });
            let spis = gic.typer().num_irqs().saturating_sub(32);
            (Distributor::V2(gic), GicSummary { version: info.version, spis, list_registers })
        }
    };
    DISTRIBUTOR.call_once(|| IrqTasLock::new(distributor));
    Ok(summary)
}

/// Sets this CPU's GICv3 interface to EOImode 1 (after the driver's `init_cpu`, which writes
/// ICC_CTLR_EL1 with EOImode 0) and returns whether it took: an EOI then only drops the
/// priority, and [`end_of_interrupt`] deactivates with ICC_DIR_EL1.
fn split_priority_drop() -> bool {
    let mut ctlr = LocalRegisterCopy::<u64, ICC_CTLR::Register>::new(ICC_CTLR_EL1.get());
    ctlr.modify(ICC_CTLR::EOIMODE::SET);
    // SAFETY: ICC_CTLR_EL1 at EL2 configures this CPU's physical CPU interface; only
    // EOImode changes (the other fields are written back as read), which every path that
    // ends an interrupt follows (`end_of_interrupt`, `drop_priority`, `deactivate`). No
    // interrupt is active on this CPU yet (called while it brings its interface up, IRQs
    // masked). Not `nomem`: the change must not move across the memory accesses around it.
    unsafe {
        core::arch::asm!("msr icc_ctlr_el1, {}", "isb", in(reg) ctlr.get(), options(nostack, preserves_flags));
    }
    LocalRegisterCopy::<u64, ICC_CTLR::Register>::new(ICC_CTLR_EL1.get()).is_set(ICC_CTLR::EOIMODE)
}

/// Turns on this CPU's GICv3 system-register interface at EL2; it must be on before any
/// `ICC_*`/`ICH_*` register is touched.
fn enable_el2_system_registers() {
    ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Enables this (secondary) CPU's interface and redistributor.
pub fn init_cpu(cpu: usize) {
    let Some(distributor) = DISTRIBUTOR.get() else { return };
    match &mut *distributor.lock() {
        Distributor::V3(gic) => {
            enable_el2_system_registers();
            gic.init_cpu(driver_cpu(cpu));
            if !split_priority_drop() {
                // The boot CPU's interface took EOImode 1 (`init` checked it), and they are
                // all the same GIC: this is not expected. Interrupts would be deactivated at
                // their EOI already, and the ICC_DIR_EL1 after it is ignored or, at worst,
                // UNPREDICTABLE; say so.
                log::error!("cpu {cpu}: the GICv3 CPU interface refused EOImode 1");
            }
            if let Ok(mut redistributor) = gic.redistributor(driver_cpu(cpu)) {
                redistributor.configure_default_settings();
            }
            GicCpuInterface::enable_group1(true);
            GicCpuInterface::set_priority_mask(PRIORITY_MASK_ALL);
        }
        Distributor::V2(_) => cpu_interface_v2().enable(PRIORITY_MASK_ALL),
    }
}

fn cpu_interface_v2() -> GicV2CpuInterface {
    // SAFETY: GICC_BASE is set by `init` to the mapped, per-CPU banked GICC frame.
    unsafe { GicV2CpuInterface::new(GICC_BASE.load(Ordering::Acquire)) }
}

fn is_v3() -> bool {
    GICC_BASE.load(Ordering::Relaxed) == 0
}

/// An acknowledged interrupt, to be handed back to [`end_of_interrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    /// The interrupt ID.
    pub intid: u32,
    /// What the GIC needs back to end it.
    token: EndToken,
}

/// What [`end_of_interrupt`] hands back to the GIC: the GICv3 interrupt ID as acknowledged
/// (already validated, so ending it needs no second check), or the raw GICv2 acknowledge
/// value (which keeps the SGI source CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndToken {
    /// The INTID (below the special range) read from ICC_IAR1_EL1.
    V3(u32),
    /// The raw GICC_IAR value, and the GICC frame it was read from (kept so the end of the
    /// interrupt needs no second look at `GICC_BASE`).
    V2 { raw: u32, gicc: usize },
}

/// First special INTID (1020..=1023: spurious or reserved), never acknowledged as an interrupt.
const SPECIAL_INTIDS: u32 = 1020;

/// The INTID field (bits [23:0]) of `ICC_IAR1_EL1` / `ICC_HPPIR1_EL1`, unless it is one of
/// the special INTIDs (1020..=1023; 1023: nothing pending), which are never handled.
#[inline]
fn icc_intid(register: u64) -> Option<u32> {
    const INTID_FIELD: u64 = 0xff_ffff;
    let intid = (register & INTID_FIELD) as u32;
    (intid < SPECIAL_INTIDS).then_some(intid)
}

/// Acknowledges the highest-priority pending interrupt of this CPU, if any.
#[inline]
pub fn acknowledge() -> Option<Acknowledged> {
    // One look at the GICC frame's address decides the version (0: GICv3) and serves GICv2.
    // Relaxed: `init` stores it before any CPU takes an interrupt (secondaries start later).
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc == 0 {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges this CPU's highest-priority pending Group 1
        // interrupt (the system register interface is enabled at EL2 by `init`, which only
        // then leaves `GICC_BASE` at 0), as arm-gic's `get_and_acknowledge_interrupt` does.
        // Not `nomem`: what the handler then reads of the interrupting device's state must
        // not be hoisted above the acknowledge.
        unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack, preserves_flags)) };
        icc_intid(iar).map(|intid| Acknowledged { intid, token: EndToken::V3(intid) })
    } else {
        // SAFETY: a non-zero GICC_BASE is the mapped, per-CPU banked GICC frame set by `init`.
        let interface = unsafe { GicV2CpuInterface::new(gicc) };
        interface.acknowledge().map(|raw| Acknowledged { intid: raw & 0x3ff, token: EndToken::V2 { raw, gicc } })
    }
}

/// Ends an acknowledged interrupt: priority drop and deactivation (GICv3: EOI, then
/// ICC_DIR_EL1, as EOImode 1 asks; GICv2: the EOI does both).
#[inline]
pub fn end_of_interrupt(ack: Acknowledged) {
    match ack.token {
        // SAFETY: writing ICC_EOIR1_EL1 the INTID its acknowledge returned drops the priority
        // of that interrupt of this CPU, as arm-gic's `end_interrupt` does; with EOImode 1
        // (set by `init`/`init_cpu`) ICC_DIR_EL1 with the same INTID then deactivates it;
        // the ISB makes both take effect before what follows (the CPU interface may
        // otherwise still see the interrupt active when IRQs are unmasked). Not `nomem`:
        // the handler's stores must not sink below the end of its interrupt.
        EndToken::V3(intid) => unsafe {
            core::arch::asm!(
                "msr icc_eoir1_el1, {0}",
                "msr icc_dir_el1, {0}",
                "isb",
                in(reg) u64::from(intid),
                options(nostack, preserves_flags)
            );
        },
        // SAFETY: the GICC frame the acknowledge was read from (see `acknowledge`).
        EndToken::V2 { raw, gicc } => unsafe { GicV2CpuInterface::new(gicc) }.end_of_interrupt(raw),
    }
}

/// Drops the priority of an acknowledged interrupt but leaves it active (GICv3, EOImode 1):
/// other interrupts of its priority and below can be taken again, while it cannot fire
/// again until [`deactivate`] — or, hardware-linked in a list register, the guest's
/// deactivation of its virtual copy. On GICv2 (EOImode 0) the EOI deactivates it too.
#[inline]
pub fn drop_priority(ack: Acknowledged) {
    match ack.token {
        // SAFETY: ICC_EOIR1_EL1 with the INTID its acknowledge returned, as in
        // `end_of_interrupt`, then an ISB so that the priority drop is in effect before the
        // interrupt is handed on (another CPU may see it forwarded and the guest deactivate
        // it). Not `nomem`: ordered against the forwarding's memory accesses.
        EndToken::V3(intid) => unsafe {
            core::arch::asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nostack, preserves_flags));
        },
        // SAFETY: the GICC frame the acknowledge was read from (see `acknowledge`).
        EndToken::V2 { raw, gicc } => unsafe { GicV2CpuInterface::new(gicc) }.end_of_interrupt(raw),
    }
}

/// Deactivates an interrupt whose priority [`drop_priority`] dropped (GICv3: ICC_DIR_EL1;
/// GICv2: nothing left to do).
#[inline]
pub fn deactivate(ack: Acknowledged) {
    if let EndToken::V3(intid) = ack.token {
        // SAFETY: ICC_DIR_EL1 with the INTID of an interrupt this CPU acknowledged and
        // priority-dropped deactivates it (EOImode 1, set by `init`/`init_cpu`); the ISB
        // puts the deactivation in effect before what follows. Not `nomem`: ordered
        // against the memory accesses of whoever handled it.
        unsafe {
            core::arch::asm!("msr icc_dir_el1, {}", "isb", in(reg) u64::from(intid), options(nostack, preserves_flags));
        }
    }
}

/// Whether physical interrupt `intid` (for a private one: `cpu`'s copy) is enabled at the
/// GIC; `None` without a GICv3 frame for it.
pub fn is_enabled(intid: u32, cpu: usize) -> Option<bool> {
    let register = bank_register(intid, cpu, ISENABLER)?;
    // SAFETY: `bank_register` returns the address of a GICD_ISENABLER<n> or GICR_ISENABLER0
    // register inside the frames `init` found mapped as device memory (for ever); reading it
    // has no side effect.
    let bits = unsafe { (register as *const u32).read_volatile() };
    Some(bits & (1 << (intid % 32)) != 0)
}

/// A physical FIQ reached EL2: the core uses no group 0 interrupt, so whatever signalled it
/// is acknowledged, ended and masked (GICv3: through ICC_IAR0_EL1, ICC_EOIR0_EL1 and
/// ICC_DIR_EL1), so that it cannot come back. On GICv2 nothing is done (FIQs are not
/// routed to the core there).
pub fn quiesce_fiq() {
    if GICC_BASE.load(Ordering::Relaxed) != 0 {
        return;
    }
    let iar: u64;
    // SAFETY: reading ICC_IAR0_EL1 acknowledges this CPU's highest-priority pending group 0
    // interrupt (the system register interface is enabled at EL2 by `init`).
    unsafe { core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) iar, options(nostack, preserves_flags)) };
    let intid = (iar & 0xff_ffff) as u32;
    if intid >= SPECIAL_INTIDS {
        return;
    }
    let _ = set_enabled(intid, boot::cpu_index(), false);
    // SAFETY: ICC_EOIR0_EL1 then ICC_DIR_EL1 with the INTID ICC_IAR0_EL1 returned end that
    // group 0 interrupt (EOImode 1), after the mask took effect (`set_enabled` waits for
    // RWP); the ISB puts the deactivation in effect before IRQs or FIQs are unmasked.
    unsafe {
        core::arch::asm!(
            "msr icc_eoir0_el1, {0}",
            "msr icc_dir_el1, {0}",
            "isb",
            in(reg) u64::from(intid),
            options(nostack, preserves_flags)
        );
    }
}

/// Whether the core's CPU interfaces split priority drop and deactivation (GICv3 after
/// [`init`]), which hardware-linked forwarding needs.
pub fn splits_priority_drop() -> bool {
    SPLIT_EOI.load(Ordering::Acquire)
}

/// Set by [`init`] once the boot CPU's GICv3 interface took EOImode 1.
static SPLIT_EOI: AtomicBool = AtomicBool::new(false);

/// Deactivates physical interrupt `intid` (for a PPI: `cpu`'s copy) from any CPU, through
/// GICD_ICACTIVER / GICR_ICACTIVER0: for a forwarded interrupt whose hardware link the vGIC
/// released (the guest will not deactivate it). GICv3 only (false otherwise, or for an
/// INTID or CPU the GIC does not have).
pub fn deactivate_physical(intid: u32, cpu: usize) -> bool {
    let Some(register) = bank_register(intid, cpu, ICACTIVER) else { return false };
    // SAFETY: `bank_register` returns the address of a GICD_ICACTIVER<n> or GICR_ICACTIVER0
    // register inside the frames `init` found mapped as device memory (for ever); a
    // write-one-to-clear register changes only the bit written (see `EnableRegisters`).
    unsafe { (register as *mut u32).write_volatile(1 << (intid % 32)) };
    true
}

/// The physical pending (`active` false) or active bits of the 32 interrupts from `base` (a
/// multiple of 32; for PPIs, `cpu`'s), from GICD_ISPENDR/ISACTIVER<n> or
/// GICR_ISPENDR0/ISACTIVER0. GICv3 only.
pub fn bank_state(base: u32, cpu: usize, active: bool) -> Option<u32> {
    let register = bank_register(base, cpu, if active { ISACTIVER } else { ISPENDR })?;
    // SAFETY: a GICD_ISPENDR/ISACTIVER<n> or GICR_ISPENDR0/ISACTIVER0 register inside the
    // mapped frames (see `bank_register`); reading it has no side effect.
    Some(unsafe { (register as *const u32).read_volatile() })
}

/// Enables a private interrupt (SGI/PPI) of `cpu` at `priority`.
pub fn enable_private(intid: u32, cpu: usize, priority: u8, trigger: Trigger) -> Result<(), GicError> {
    let Some(distributor) = DISTRIBUTOR.get() else { return Err(GicError::MissingFrame("distributor")) };
    let id = IntId::try_from(intid).map_err(|_| GicError::BadIntId(intid))?;
    if !id.is_private() {
        return Err(GicError::BadIntId(intid));
    }
    match &mut *distributor.lock() {
        Distributor::V3(gic) => {
            let bad = |_| GicError::BadIntId(intid);
            let cpu = Some(driver_cpu(cpu));
            gic.set_interrupt_priority(id, cpu, priority).map_err(bad)?;
            if !id.is_sgi() {
                gic.set_trigger(id, cpu, trigger).map_err(bad)?;
            }
            gic.enable_interrupt(id, cpu, true).map_err(bad)?;
        }
        // GICv2 banks private interrupts per CPU: the calling CPU must be `cpu`.
        Distributor::V2(gic) => {
            set_priority_v2(intid, priority);
            if !id.is_sgi() {
                gic.set_trigger(id, trigger);
            }
            gic.enable_interrupt(id, true).map_err(|_| GicError::BadIntId(intid))?;
        }
    }
    Ok(())
}

/// Sends software-generated interrupt `sgi` to the CPU with affinity `mpidr`
/// (GICv2: CPU interface number `cpu`).
pub fn send_sgi(sgi: u32, mpidr: u64, cpu: usize) {
    if is_v3() {
        let target = SgiTarget::List {
            affinity3: (mpidr >> 32) as u8,
            affinity2: (mpidr >> 16) as u8,
            affinity1: (mpidr >> 8) as u8,
            target_list: 1 << (mpidr & 0xf),
        };
        let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
    } else if let Some(distributor) = DISTRIBUTOR.get()
        && let Distributor::V2(gic) = &mut *distributor.lock()
    {
        gic.send_sgi(
            IntId::sgi(sgi),
            arm_gic::gicv2::SgiTarget::List {
                target_list_filter: arm_gic::gicv2::SgiTargetListFilter::CPUTargetList,
                target_list: 1 << cpu,
            },
        );
    }
}

/// Priority of interrupts forwarded to the in-band stage: below every oob interrupt, so oob
/// handlers preempt their handling.
pub const INBAND_PRIORITY: u8 = 0xa0;

/// The priority mask while an oob context runs on a CPU: oob priorities ([`OOB_PRIORITY`])
/// are signalled, in-band ones ([`INBAND_PRIORITY`] and below) wait in the GIC.
const PRIORITY_MASK_OOB: u8 = INBAND_PRIORITY;

/// An oob context takes this CPU: from now on in-band interrupts wait pending in the GIC
/// (ICC_PMR_EL1 / GICC_PMR at [`PRIORITY_MASK_OOB`]); oob ones still preempt. A PMR write is
/// self-synchronizing on GICv3: no in-band interrupt is taken after it.
#[inline]
pub fn hold_inband() {
    set_priority_mask(PRIORITY_MASK_OOB);
}

/// The in-band stage gets this CPU back: what waited in the GIC is signalled again, most
/// urgent first (the GIC's own order).
#[inline]
pub fn release_inband() {
    set_priority_mask(PRIORITY_MASK_ALL);
}

/// Sets this CPU's priority mask.
#[inline]
fn set_priority_mask(mask: u8) {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc == 0 {
        // SAFETY: ICC_PMR_EL1 is this CPU's priority mask (system register interface enabled
        // at EL2 by `init`); writing it only changes which priorities are signalled. Not
        // `nomem`: it must not move across the scheduler's memory accesses around a switch.
        unsafe { core::arch::asm!("msr icc_pmr_el1, {}", in(reg) u64::from(mask), options(nostack, preserves_flags)) };
    } else {
        // SAFETY: a non-zero GICC_BASE is the mapped, per-CPU banked GICC frame set by `init`.
        unsafe { GicV2CpuInterface::new(gicc) }.set_priority_mask(mask);
    }
}

/// The INTID of this CPU's highest-priority pending interrupt (ICC_HPPIR1_EL1 /
/// GICC_HPPIR), if any. Read it with the priority mask open: QEMU's GICv2 reports only
/// what its mask lets through.
pub fn highest_pending() -> Option<u32> {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc == 0 {
        let hppir: u64;
        // SAFETY: reading ICC_HPPIR1_EL1 has no side effect (unlike the IAR, it acknowledges
        // nothing).
        unsafe { core::arch::asm!("mrs {}, icc_hppir1_el1", out(reg) hppir, options(nostack, preserves_flags)) };
        icc_intid(hppir)
    } else {
        // SAFETY: a non-zero GICC_BASE is the mapped, per-CPU banked GICC frame set by `init`.
        unsafe { GicV2CpuInterface::new(gicc) }.highest_pending()
    }
}

/// Enables or disables interrupt `intid` at the physical GIC (for SGIs and PPIs: `cpu`'s
/// copy, which on GICv2 must be the calling CPU). Used when the guest disables a forwarded
/// interrupt, and to mask one that fired while the guest had it disabled. A GICv3 disable
/// returns once it took effect (GICD_CTLR.RWP / GICR_CTLR.RWP clear), so that a
/// deactivation after it cannot let the interrupt fire again.
pub fn set_enabled(intid: u32, cpu: usize, enabled: bool) -> Result<(), GicError> {
    if let Some(register) = bank_register(intid, cpu, if enabled { ISENABLER } else { ICENABLER }) {
        // SAFETY: `bank_register` returns the address of a GICD_ISENABLER/ICENABLER or
        // GICR_ISENABLER0/ICENABLER0 register inside the frames `init` found mapped as device
        // memory (for ever); a write-one register changes only the bit written (see
        // `EnableRegisters`), so no lock is needed and no other state is touched.
        unsafe { (register as *mut u32).write_volatile(1 << (intid % 32)) };
        if !enabled {
            wait_for_disable(intid, cpu);
        }
        return Ok(());
    }
    let Some(distributor) = DISTRIBUTOR.get() else { return Err(GicError::MissingFrame("distributor")) };
    let id = IntId::try_from(intid).map_err(|_| GicError::BadIntId(intid))?;
    match &mut *distributor.lock() {
        Distributor::V3(gic) => {
            let cpu = id.is_private().then(|| driver_cpu(cpu));
            gic.enable_interrupt(id, cpu, enabled).map_err(|_| GicError::BadIntId(intid))
        }
        Distributor::V2(gic) => gic.enable_interrupt(id, enabled).map_err(|_| GicError::BadIntId(intid)),
    }
}

/// The GICv3 register of the one-bit-per-INTID array at `offset` (ISENABLER, ICENABLER,
/// ISPENDR, ISACTIVER, ICACTIVER) that holds bit `intid % 32` of `intid` (for a private one,
/// `cpu`'s); `None` without a GICv3, for a CPU without a redistributor, or for an INTID
/// outside SGIs, PPIs and SPIs (the driver's path handles or refuses those).
#[inline]
fn bank_register(intid: u32, cpu: usize, offset: usize) -> Option<usize> {
    let gicd = ENABLE_REGISTERS.gicd.load(Ordering::Acquire);
    if gicd == 0 {
        return None;
    }
    if intid < 32 {
        Some(redistributor_of(cpu)? + GICR_SGI_BASE + offset)
    } else if intid < SPECIAL_INTIDS {
        Some(gicd + offset + 4 * (intid as usize / 32))
    } else {
        None
    }
}

/// Waits until a GICv3 disable of `intid` (for a private one, `cpu`'s) took effect: polls
/// GICD_CTLR.RWP for an SPI, `cpu`'s GICR_CTLR.RWP for an SGI or PPI (at most [`RWP_POLLS`]
/// times).
fn wait_for_disable(intid: u32, cpu: usize) {
    let gicd = ENABLE_REGISTERS.gicd.load(Ordering::Acquire);
    if gicd == 0 {
        return;
    }
    let (register, rwp) = if intid < 32 {
        let Some(rd_base) = redistributor_of(cpu) else { return };
        (rd_base + CTLR, GICR_CTLR_RWP)
    } else {
        (gicd + CTLR, GICD_CTLR_RWP)
    };
    for _ in 0..RWP_POLLS {
        // SAFETY: GICD_CTLR or a GICR_CTLR inside the frames `init` found mapped as device
        // memory (for ever); reading it has no side effect.
        if unsafe { (register as *const u32).read_volatile() } & rwp == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// `cpu`'s redistributor (its RD_base frame), if one has its affinity.
fn redistributor_of(cpu: usize) -> Option<usize> {
    let rd_base = ENABLE_REGISTERS.gicr.get(cpu)?.load(Ordering::Relaxed);
    (rd_base != 0).then_some(rd_base)
}

/// GICD_IROUTER<n> offset (from GICD): one doubleword per INTID.
const IROUTER: usize = 0x6000;
/// The writable fields of GICD_IROUTER: Aff3 (39:32), Interrupt_Routing_Mode (31), Aff2..Aff0.
const IROUTER_MASK: u64 = 0xff_80ff_ffff;

/// Routes SPI `intid` as GICD_IROUTER value `route` says (affinity, or 1-of-N), from any CPU
/// (GICv3 only; nothing otherwise, or for a non-SPI). One doubleword store to a register of
/// that SPI alone: no lock.
pub fn set_route(intid: u32, route: u64) {
    let gicd = ENABLE_REGISTERS.gicd.load(Ordering::Acquire);
    if gicd == 0 || !(32..SPECIAL_INTIDS).contains(&intid) {
        return;
    }
    // SAFETY: GICD_IROUTER<intid>, inside the distributor frame `init` found mapped as device
    // memory (for ever); it only routes that SPI.
    unsafe { ((gicd + IROUTER + 8 * intid as usize) as *mut u64).write_volatile(route & IROUTER_MASK) };
}

/// Configures interrupt `intid` for the in-band stage ([`INBAND_PRIORITY`], `trigger`) and
/// enables it (private interrupts: on `cpu`).
pub fn enable_inband(intid: u32, cpu: usize, trigger: Trigger) -> Result<(), GicError> {
    let Some(distributor) = DISTRIBUTOR.get() else { return Err(GicError::MissingFrame("distributor")) };
    let id = IntId::try_from(intid).map_err(|_| GicError::BadIntId(intid))?;
    let bad = |_| GicError::BadIntId(intid);
    match &mut *distributor.lock() {
        Distributor::V3(gic) => {
            let cpu = id.is_private().then(|| driver_cpu(cpu));
            gic.set_interrupt_priority(id, cpu, INBAND_PRIORITY).map_err(bad)?;
            if !id.is_sgi() {
                gic.set_trigger(id, cpu, trigger).map_err(bad)?;
            }
            gic.enable_interrupt(id, cpu, true).map_err(bad)?;
        }
        Distributor::V2(gic) => {
            set_priority_v2(intid, INBAND_PRIORITY);
            if !id.is_sgi() {
                gic.set_trigger(id, trigger);
            }
            gic.enable_interrupt(id, true).map_err(|_| GicError::BadIntId(intid))?;
        }
    }
    Ok(())
}
