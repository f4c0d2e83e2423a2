//! A small bare-metal EL1 test guest (`companion.test=el1-guest`): it runs on the boot CPU
//! under stage 2 and checks the core's side of the guest interface from the guest's point of
//! view — PSCI over HVC (VERSION, FEATURES, an unsupported function), an access to the core's
//! memory (which must come back as an abort injected into the guest, after which it goes on)
//! and SYSTEM_OFF. It reports each result with a vendor hypercall; the core checks them when
//! the guest powers off.

use core::sync::atomic::{AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use platform::fdt::DeviceTree;
use platform::guest_map::{ConsoleAccess, device_ranges, plan_guest_map};
use platform::guest_tree::guest_memory;
use platform::{MemoryRange, PlatformInfo};

use super::{GuestState, stage2};
use crate::power;

core::arch::global_asm!(
    r#"
.section .rodata.test_guest, "a"
.balign 4096
.global test_guest_start
test_guest_start:
    mov     x20, x1                 /* an address inside the core's memory */
    adr     x9, test_guest_vectors
    msr     vbar_el1, x9
    isb
    movz    w0, #0x0000             /* PSCI_VERSION */
    movk    w0, #0x8400, lsl #16
    hvc     #0
    mov     x1, x0
    mov     x2, #1
    bl      test_guest_report
    movz    w0, #0x000a             /* PSCI_FEATURES(CPU_ON, SMC64) */
    movk    w0, #0x8400, lsl #16
    movz    w1, #0x0003
    movk    w1, #0xc400, lsl #16
    hvc     #0
    mov     x1, x0
    mov     x2, #2
    bl      test_guest_report
    movz    w0, #0x00ff             /* an unassigned PSCI function */
    movk    w0, #0x8400, lsl #16
    hvc     #0
    mov     x1, x0
    mov     x2, #3
    bl      test_guest_report
    ldr     x3, [x20]               /* the core's memory: must abort (report 4) */
    mov     x1, #0x600d
    mov     x2, #5
    bl      test_guest_report
    movz    w0, #0x0008             /* PSCI SYSTEM_OFF */
    movk    w0, #0x8400, lsl #16
    hvc     #0
1:  b       1b

test_guest_report:                  /* x1 = value, x2 = report number */
    movz    x0, #0x0001
    movk    x0, #0xc600, lsl #16
    hvc     #0
    ret

.balign 0x800
test_guest_vectors:
    .fill 0x200, 1, 0
    /* Current EL with SP_ELx, synchronous: report ESR_EL1, skip the instruction. */
    mrs     x1, esr_el1
    mov     x2, #4
    movz    x0, #0x0001
    movk    x0, #0xc600, lsl #16
    hvc     #0
    mrs     x9, elr_el1
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
    .fill 0x580, 1, 0
.global test_guest_end
test_guest_end:
"#
);

unsafe extern "C" {
    static test_guest_start: u8;
    static test_guest_end: u8;
}

/// The vendor hypercall the test guest reports with: x1 = value, x2 = report number.
const REPORT_CALL: u64 = 0xc600_0001;
/// Reports the guest makes (numbers 1..=5).
const REPORTS: usize = 6;
/// No report yet.
const NONE: u64 = 0xdead_dead_dead_dead;

static REPORTED: [AtomicU64; REPORTS] = [const { AtomicU64::new(NONE) }; REPORTS];

fn report(frame: &mut TrapFrame) -> Option<u64> {
    if frame.x[0] != REPORT_CALL {
        return None;
    }
    let (value, number) = (frame.x[1], frame.x[2] as usize);
    log::info!("el1-guest: report {number}: {value:#x}");
    REPORTED.get(number)?.store(value, Ordering::Relaxed);
    Some(0)
}

/// Checks the reports when the guest powers off and ends the run with the verdict.
fn finish(reset: bool) -> ! {
    let got = |n: usize| REPORTED[n].load(Ordering::Relaxed);
    let abort = got(4);
    let checks = [
        ("PSCI_VERSION is 1.1", got(1) == 0x1_0001),
        ("PSCI_FEATURES(CPU_ON) is supported", got(2) == 0),
        ("an unassigned PSCI function is NOT_SUPPORTED", got(3) == u64::MAX),
        ("reading the core's memory aborts in the guest", abort >> 26 == 0x25 && abort & 0x3f == 0b000111),
        ("the guest went on after the abort", got(5) == 0x600d),
        ("the guest powered off (not reset)", !reset),
    ];
    let mut failed = 0;
    for (what, ok) in checks {
        log::info!("el1-guest: {what}: {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    log::info!("el1-guest: {} passed, {failed} failed", checks.len() - failed);
    power::exit(if failed == 0 { power::EXIT_SUCCESS } else { power::EXIT_BOOT_FAILURE })
}

/// Runs the test guest on this (boot) CPU. `dtb` is the board's tree; `core_end` is the
/// end of the core's image (everything from the start of RAM to there stays the core's).
pub fn run(info: &PlatformInfo<'_>, dtb: usize, core_end: u64, mpidr: u64) -> Result<core::convert::Infallible, &'static str> {
    // SAFETY: the loader's DTB, still intact in RAM.
    let tree = unsafe { DeviceTree::from_ptr(dtb as *const u8) }.map_err(|_| "no device tree")?;
    let ram_start = info.memory.first().ok_or("no memory")?.base;
    let core_size = (core_end - ram_start).next_multiple_of(2 << 20);
    let core = MemoryRange::new(ram_start, core_size);
    let memory = guest_memory(&tree, &[core]).map_err(|_| "no guest memory")?;
    let plan = plan_guest_map(&memory, &device_ranges(&tree), &info.gic, &info.uart, ConsoleAccess::Shared);
    // SAFETY: no guest runs yet; the tables are leaked.
    let skipped = unsafe { stage2::install(&plan) }.map_err(|_| "stage-2 tables")?;
    log::info!(
        "el1-guest: stage 2 with {} regions ({skipped} left out), guest RAM from {:#x}",
        plan.len(),
        memory[0].base
    );
    // Linker symbols: only their addresses are used.
    let (start, end) = (&raw const test_guest_start as usize, &raw const test_guest_end as usize);
    let entry = memory[0].base;
    // SAFETY: guest RAM is mapped, outside the core, and nothing else uses it yet; the blob
    // is part of the image.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, entry as *mut u8, end - start) };
    boot::mmu::clean_to_poc(entry as usize..entry as usize + (end - start));
    // SAFETY: invalidating the instruction cache has no effect on program state.
    unsafe { core::arch::asm!("ic iallu", "dsb nsh", "isb", options(nostack)) };
    let state = GuestState::new(&[mpidr], report, finish).ok_or("PSCI model")?;
    // The guest owns this CPU from here on: the previous state is never restored.
    let _ = crate::arch::mask_irqs();
    // SAFETY: stage 2 maps `entry` as guest RAM holding the cleaned code; IRQs are masked.
    unsafe { super::enter(entry, [0, ram_start, 0, 0], state) }
}
