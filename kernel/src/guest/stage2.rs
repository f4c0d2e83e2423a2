//! Stage-2 translation for the in-band guest, built from [`platform::guest_map`]'s plan with
//! `aarch64-paging`'s stage-2 regime.
//!
//! The IPA space is 39 bits (512 GiB: `VTCR_EL2.T0SZ` = 25) walked from level 1, so the
//! root is one 4 KiB table like the core's own map. Regions whose IPA differs from their
//! PA (GICv2's virtual CPU interface) need a non-identity mapping and are not mapped yet.

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable, VTCR_EL2, Writeable};
use aarch64_paging::idmap::IdMap;
use aarch64_paging::descriptor::Stage2Attributes;
use aarch64_paging::paging::{MemoryRegion, Stage2};
use alloc::boxed::Box;
use platform::guest_map::{GuestRegion, GuestRegionKind};

/// IPA bits: 64 - T0SZ.
const IPA_T0SZ: u64 = 25;
/// Root table level for a 39-bit IPA space with 4 KiB granules.
const ROOT_LEVEL: usize = 1;

/// Guest RAM: normal write-back, inner shareable, read/write, executable.
const RAM: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB);
/// A passed-through device: Device-nGnRE, read/write, never executable.
const DEVICE: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::XN);

/// `VTCR_EL2` and `VTTBR_EL2` as installed, for the other CPUs (0: not installed).
static VTCR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static VTTBR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Gives this CPU the stage-2 translation [`install`] built on the boot CPU.
pub fn activate_on_this_cpu() {
    use core::sync::atomic::Ordering;
    let (vtcr, vttbr) = (VTCR.load(Ordering::Acquire), VTTBR.load(Ordering::Acquire));
    if vttbr == 0 {
        return;
    }
    VTCR_EL2.set(vtcr);
    // SAFETY: the same complete, leaked tables the boot CPU uses; no guest runs on this CPU
    // yet. The TLB maintenance drops stale stage-2 entries of VMID 0.
    unsafe {
        core::arch::asm!("msr vttbr_el2, {0}", "isb", "tlbi vmalls12e1", "dsb nsh", "isb", in(reg) vttbr, options(nostack));
    }
}

/// Why the stage-2 tables could not be built.
#[derive(Debug)]
pub enum Stage2Error {
    /// `aarch64-paging` refused a region.
    Map(aarch64_paging::MapError),
}

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "cannot map a guest region: {e}"),
        }
    }
}

/// Builds the guest's stage-2 tables from `regions`, programs `VTCR_EL2` and `VTTBR_EL2`
/// (VMID 0) on this CPU, and returns how many regions were left out (non-identity ones).
///
/// # Safety
/// No guest may be running on this CPU; the tables live for the rest of the run.
pub unsafe fn install(regions: &[GuestRegion]) -> Result<usize, Stage2Error> {
    let map = Box::leak(Box::new(IdMap::new(ROOT_LEVEL, Stage2)));
    let mut skipped = 0;
    for region in regions {
        if region.ipa != region.pa {
            skipped += 1;
            continue;
        }
        let attributes = match region.kind {
            GuestRegionKind::Ram => RAM,
            GuestRegionKind::Device | GuestRegionKind::VirtualCpuInterface => DEVICE,
        };
        let range = MemoryRegion::new(region.ipa as usize, (region.ipa + region.size) as usize);
        map.map_range(&range, attributes).map_err(Stage2Error::Map)?;
    }
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    VTCR_EL2.write(
        VTCR_EL2::PS.val(pa_range)
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::SL0::Granule4KBLevel1
            + VTCR_EL2::T0SZ.val(IPA_T0SZ),
    );
    // SAFETY: the tables are complete and leaked (they live forever); no guest runs yet, so
    // switching VTTBR_EL2 affects no translation in use. The TLB maintenance drops stale
    // stage-2 entries of VMID 0.
    unsafe {
        map.activate();
        core::arch::asm!("tlbi vmalls12e1is", "dsb ish", "isb", options(nostack));
    }
    VTCR.store(VTCR_EL2.get(), core::sync::atomic::Ordering::Release);
    VTTBR.store(map.root_address().0 as u64, core::sync::atomic::Ordering::Release);
    Ok(skipped)
}
