//! Quiescing the passed-through devices at a guest restart ([`platform::quiesce`]): the plan
//! is worked out from the board's tree at boot, the devices' register pages are mapped into
//! the core's own translation with the rest of its MMIO, and CPU 0 carries the plan out
//! while no vCPU runs, before the new guest is loaded.

use alloc::vec::Vec;
use core::ops::Range;

use platform::PlatformInfo;
use platform::fdt::DeviceTree;
use platform::passthrough::{DevicePolicy, devices};
use platform::quiesce::{DeviceQuiesce, Unquiesced, Width};

/// The plan, set once at boot.
static PLAN: spin::Once<Vec<DeviceQuiesce>> = spin::Once::new();

/// Works out the plan from the board's `tree` (boot CPU, before the MMU is on), names the
/// passed-through devices it cannot cover, and returns the register ranges the core must map
/// to carry it out.
pub fn prepare(tree: &DeviceTree<'_>, info: &PlatformInfo<'_>) -> Vec<Range<u64>> {
    let (planned, left_out) = platform::quiesce::plan(&devices(tree, &DevicePolicy::new(info)));
    for device in left_out {
        match device {
            Unquiesced::NoSequence { base } => {
                log::warn!("guest: passed-through device at {base:#x} has no quiesce sequence: a restart leaves it as it is")
            }
            Unquiesced::OutsideRegisters { base, offset } => log::warn!(
                "guest: passed-through device at {base:#x}: its quiesce write at +{offset:#x} is outside its registers: a restart leaves it as it is"
            ),
        }
    }
    let ranges = planned.iter().flat_map(|d| d.writes.iter().map(|&(at, width, _)| at..at + width.bytes())).collect();
    PLAN.call_once(|| planned);
    ranges
}

/// Carries the plan out (CPU 0, during a restart, no vCPU running) and returns the devices
/// quiesced (no allocation: this runs on a path that never returns to drop one).
pub fn passed_devices() -> &'static [DeviceQuiesce] {
    let Some(plan) = PLAN.get() else { return &[] };
    for device in plan {
        for &(at, width, value) in &device.writes {
            // SAFETY: `at` lies inside a passed-through device's first register range
            // (`platform::quiesce::plan` checked each write against it), which `prepare`
            // had the core map as Device memory; the write is aligned to its width. No vCPU
            // runs, so no guest access races it, and these devices hold nothing of the core.
            unsafe {
                match width {
                    Width::Byte => core::ptr::write_volatile(at as *mut u8, value as u8),
                    Width::Word => core::ptr::write_volatile(at as *mut u32, value),
                }
            }
        }
    }
    plan
}

/// Devices as `compatible@base, …` for the log.
pub struct Names<'a>(pub &'a [DeviceQuiesce]);

impl core::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, device) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{}@{:#x}", device.compatible, device.base)?;
        }
        Ok(())
    }
}
