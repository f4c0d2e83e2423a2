//! The in-band guest's physical address map, as the stage-2 tables will describe it.
//!
//! Guest RAM sits at IPA = PA and excludes the core's own region. Only the devices
//! [`crate::passthrough`] allows (register-only blocks on the board's allow-list, never a bus
//! master, never a range touching RAM) are mapped, at IPA = PA; of those, these stay out:
//!
//! - the GIC distributor and redistributors, left unmapped so every access traps to the
//!   core, which emulates them;
//! - the GIC hypervisor frames (GICv2 GICH, and the virtual CPU interface's own address),
//!   which the guest never sees;
//! - the GICv2 CPU interface, whose guest address is backed by the virtual CPU interface
//!   (GICV), the one region that is not identity mapped;
//! - the console UART, left unmapped so the core can share it, unless the caller passes it
//!   through (then guest and core lines may interleave on it).
//!
//! Anything not in the plan is unmapped: a guest access there gets an abort injected.

use alloc::vec::Vec;

use crate::discovery::{GicInfo, GicVersion};
use crate::fdt::DeviceTree;
use crate::passthrough::{DeviceClass, DevicePolicy, devices, overlaps, page_range};
use crate::{MemoryRange, UartInfo};

/// What backs a region of the guest's physical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRegionKind {
    /// Normal write-back memory, readable, writable and executable.
    Ram,
    /// A device passed through (Device-nGnRE, never executable).
    Device,
    /// The virtual GIC CPU interface standing in for the GICv2 CPU interface.
    VirtualCpuInterface,
}

/// One mapped region: `size` bytes at guest address `ipa`, backed by `pa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRegion {
    /// Guest physical (intermediate physical) address.
    pub ipa: u64,
    /// Host physical address.
    pub pa: u64,
    /// Length in bytes (whole pages).
    pub size: u64,
    /// What it is.
    pub kind: GuestRegionKind,
}

/// Page granule of the stage-2 tables.
pub const GUEST_PAGE: u64 = 4096;

/// The GIC frames: the guest may not touch them directly.
fn gic_frames(gic: &GicInfo) -> Vec<MemoryRange> {
    let mut regions = Vec::from([gic.distributor]);
    regions.extend([gic.redistributor, gic.cpu_interface, gic.hyp_interface, gic.virtual_cpu_interface].into_iter().flatten());
    regions
}

/// The ranges of every device `policy` passes through (see [`crate::passthrough`]): an
/// allow-listed, register-only device, outside RAM and reserved memory. Everything else
/// the tree describes stays unmapped.
pub fn device_ranges(tree: &DeviceTree<'_>, policy: &DevicePolicy<'_>) -> Vec<MemoryRange> {
    let mut ranges: Vec<MemoryRange> = devices(tree, policy)
        .into_iter()
        .filter(|device| device.class == DeviceClass::PassThrough)
        .flat_map(|device| device.regs)
        .collect();
    ranges.sort_by_key(|range| range.base);
    ranges.dedup();
    ranges
}

/// How the guest reaches the board's console UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAccess {
    /// Withheld: the core emulates it and shares the line.
    Shared,
    /// Passed through: the guest drives the UART itself.
    PassThrough,
}

/// The guest's map: `memory` as RAM, `devices` (from [`device_ranges`]) passed through
/// except what the core keeps (see the [module docs](self)), the console if `console` says
/// so, and for GICv2 the virtual CPU interface at the CPU
/// interface's address. Regions are page aligned and sorted by IPA.
pub fn plan_guest_map(
    memory: &[MemoryRange],
    devices: &[MemoryRange],
    gic: &GicInfo,
    uart: &UartInfo,
    console: ConsoleAccess,
) -> Vec<GuestRegion> {
    let mut withheld = gic_frames(gic);
    let console_range = MemoryRange::new(uart.base, uart.size);
    let mut devices = devices.to_vec();
    match console {
        ConsoleAccess::Shared => withheld.push(console_range),
        ConsoleAccess::PassThrough => devices.push(console_range),
    }
    let mut regions: Vec<GuestRegion> = memory
        .iter()
        .map(|range| GuestRegion { ipa: range.base, pa: range.base, size: range.size, kind: GuestRegionKind::Ram })
        .collect();
    for device in devices.iter().map(|range| page_range(*range)) {
        let shadowed = withheld.iter().map(|r| page_range(*r)).any(|r| overlaps(&r, &device))
            || memory.iter().any(|r| overlaps(r, &device))
            || regions.iter().any(|r| overlaps(&MemoryRange::new(r.ipa, r.size), &device));
        if !shadowed {
            regions.push(GuestRegion { ipa: device.base, pa: device.base, size: device.size, kind: GuestRegionKind::Device });
        }
    }
    if gic.version == GicVersion::V2
        && let (Some(cpu_interface), Some(virtual_interface)) = (gic.cpu_interface, gic.virtual_cpu_interface)
    {
        regions.push(GuestRegion {
            ipa: cpu_interface.base,
            pa: virtual_interface.base,
            size: page_range(cpu_interface).size.min(page_range(virtual_interface).size),
            kind: GuestRegionKind::VirtualCpuInterface,
        });
    }
    regions.sort_by_key(|region| region.ipa);
    regions
}
