//! Probing the physical GIC through the `arm-gic` driver, and the virtualization interface
//! the in-band stage will need (GICv3 `ICH_*` registers, GICv2 `GICH` frame).

use core::fmt;
use core::ptr::NonNull;

use aarch64_cpu::registers::{ICC_SRE_EL2, ICH_VTR_EL2, Readable, Writeable};
use arm_gic::UniqueMmioPointer;
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::GicV3;
use platform::{GicInfo, GicVersion};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::ReadOnly;

register_bitfields![u32,
    /// GICH_VTR: VGIC type register (GICv2 architecture spec, 5.3.2).
    GICH_VTR [
        /// Number of list registers minus one.
        LIST_REGS OFFSET(0) NUMBITS(6) []
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
pub enum GicProbeError {
    /// The tree lacks a frame this version needs.
    MissingFrame(&'static str),
    /// The redistributors did not answer.
    Redistributor,
}

impl fmt::Display for GicProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFrame(which) => write!(f, "the device tree gives no {which} frame"),
            Self::Redistributor => write!(f, "the GICv3 redistributors could not be read"),
        }
    }
}

/// Reads the GIC's implemented size and virtualization support.
///
/// # Safety
/// The frames in `info` must be mapped as device memory; call once, on the boot CPU, before
/// another driver instance exists.
pub unsafe fn probe(info: &GicInfo, cpus: usize) -> Result<GicSummary, GicProbeError> {
    match info.version {
        GicVersion::V3 => {
            let gicd = NonNull::new(info.distributor.base as *mut _).ok_or(GicProbeError::MissingFrame("distributor"))?;
            let gicr = info.redistributor.ok_or(GicProbeError::MissingFrame("redistributor"))?;
            let gicr = NonNull::new(gicr.base as *mut _).ok_or(GicProbeError::MissingFrame("redistributor"))?;
            // SAFETY: the caller guarantees the frames are mapped and unaliased.
            let gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, cpus) }
                .map_err(|_| GicProbeError::Redistributor)?;
            // The EL2 system-register interface must be on before ICH_* are touched.
            ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            let list_registers = ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as u32 + 1;
            Ok(GicSummary { version: info.version, spis: gic.typer().num_spis(), list_registers })
        }
        GicVersion::V2 => {
            let gicc = info.cpu_interface.ok_or(GicProbeError::MissingFrame("CPU interface"))?;
            // SAFETY: the caller guarantees the frames are mapped and unaliased.
            let gic = unsafe { GicV2::new(info.distributor.base as *mut _, gicc.base as *mut _) };
            let list_registers = info.hyp_interface.map_or(0, |gich| {
                // SAFETY: GICH is mapped as device memory per the caller's contract.
                let gich = unsafe { &*(gich.base as *const GichRegisters) };
                gich.vtr.read(GICH_VTR::LIST_REGS) + 1
            });
            Ok(GicSummary { version: info.version, spis: gic.typer().num_irqs().saturating_sub(32), list_registers })
        }
    }
}
