//! What the built-in EL1 guests (`companion.test=el1-guest`, `companion.test=hostile-guest`)
//! share: the stage 2 of a real guest, their code copied into guest RAM, and their interrupts.

use alloc::vec::Vec;
use core::ops::Range;

use platform::fdt::DeviceTree;
use platform::guest_map::{ConsoleAccess, device_ranges, plan_guest_map};
use platform::guest_tree::guest_memory;
use platform::passthrough::{DevicePolicy, devices, passed_intids};
use platform::{MemoryRange, PlatformInfo};

use super::stage2;

/// A built-in guest, ready to be entered.
pub struct Loaded<'t> {
    /// The board's tree.
    pub tree: DeviceTree<'t>,
    /// The guest's RAM (the board's, without the core and the loader's tree).
    pub memory: Vec<MemoryRange>,
    /// Where its code now starts: the beginning of guest RAM.
    pub entry: u64,
    /// The stage-2 regions installed, and how many of them were left out.
    pub regions: (usize, usize),
    /// The passed-through devices' interrupts (`passed_intids`), for `virq::init`.
    pub passed_through: Vec<u32>,
}

/// Builds and installs the stage 2 a Linux guest would get from the board's tree at `dtb`
/// (the core's image ends at `core_end`), and copies `code` (a blob in the core's image) to
/// the start of guest RAM, cleaned for execution. Runs with IRQs unmasked: the device walks
/// take a while, and the latency test may run beside it.
pub fn load(info: &PlatformInfo<'_>, dtb: usize, core_end: u64, code: Range<usize>) -> Result<Loaded<'static>, &'static str> {
    // SAFETY: the loader's DTB, still intact in RAM.
    let tree = unsafe { DeviceTree::from_ptr(dtb as *const u8) }.map_err(|_| "no device tree")?;
    let ram_start = info.memory.first().ok_or("no memory")?.base;
    let core = MemoryRange::new(ram_start, (core_end - ram_start).next_multiple_of(2 << 20));
    let memory = guest_memory(&tree, &[core]).map_err(|_| "no guest memory")?;
    let policy = DevicePolicy::new(info);
    let plan = plan_guest_map(&memory, &device_ranges(&tree, &policy), &info.gic, &info.uart, ConsoleAccess::Shared);
    // SAFETY: no guest runs yet; the tables are leaked.
    let skipped = unsafe { stage2::install(&plan) }.map_err(|_| "stage-2 tables")?;
    let entry = memory.first().ok_or("no guest memory")?.base;
    // SAFETY: guest RAM is mapped, outside the core, and nothing else uses it yet; the blob
    // is part of the image.
    unsafe { core::ptr::copy_nonoverlapping(code.start as *const u8, entry as *mut u8, code.len()) };
    boot::mmu::clean_to_poc(entry as usize..entry as usize + code.len());
    // SAFETY: invalidating the instruction cache has no effect on program state.
    unsafe { core::arch::asm!("ic iallu", "dsb nsh", "isb", options(nostack)) };
    let passed_through = passed_intids(&devices(&tree, &policy));
    Ok(Loaded { tree, memory, entry, regions: (plan.len(), skipped), passed_through })
}
