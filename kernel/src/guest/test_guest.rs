//! A small bare-metal EL1 test guest (`companion.test=el1-guest`): it runs on the boot CPU
//! under stage 2 and checks the core's side of the guest interface from the guest's point of
//! view — PSCI over HVC (VERSION, FEATURES, an unsupported function), an access to the core's
//! memory (which must come back as an abort injected into the guest, after which it goes on)
//! and SYSTEM_OFF. It reports each result with a vendor hypercall; the core checks them when
//! the guest powers off.

use core::sync::atomic::{AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use platform::PlatformInfo;

use super::GuestState;
use crate::power;

core::arch::global_asm!(
    r#"
.section .rodata.test_guest, "a"
.balign 4096
.global test_guest_start
test_guest_start:
    mov     x20, x1                 /* an address inside the core's memory */
    mov     x22, x2                 /* GICD base */
    mov     x23, x3                 /* GICR base (vCPU 0) */
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

    /* The virtual GIC (GICv3 only; x23 = 0 without one): distributor on (ARE, Group 1),
     * redistributor awake, SGIs 0-15 enabled at priority 0xa0, CPU interface on. */
    cbz     x23, 8f
    mov     w9, #0x12
    str     w9, [x22]               /* GICD_CTLR */
    str     wzr, [x23, #0x14]       /* GICR_WAKER: ProcessorSleep = 0 */
2:  ldr     w9, [x23, #0x14]
    tbnz    w9, #2, 2b              /* until ChildrenAsleep clears */
    add     x24, x23, #0x10000      /* SGI_base */
    movz    w9, #0xa0a0
    movk    w9, #0xa0a0, lsl #16
    str     w9, [x24, #0x400]       /* GICR_IPRIORITYR0..3 */
    str     w9, [x24, #0x404]
    str     w9, [x24, #0x408]
    str     w9, [x24, #0x40c]
    mov     w9, #0xffff
    str     w9, [x24, #0x100]       /* GICR_ISENABLER0: SGIs 0-15 */
    mov     x9, #7
    msr     icc_sre_el1, x9
    isb
    mov     x9, #0xff
    msr     icc_pmr_el1, x9
    mov     x9, #1
    msr     icc_igrpen1_el1, x9
    isb
    /* Sixteen SGIs to ourselves with IRQs masked: more than the list registers hold. */
    mov     x21, #0                 /* IRQs taken (the IRQ vector counts) */
    mov     x10, #0
3:  lsl     x9, x10, #24
    orr     x9, x9, #1              /* TargetList: Aff0 = 0 (this vCPU) */
    msr     icc_sgi1r_el1, x9
    add     x10, x10, #1
    cmp     x10, #16
    b.lt    3b
    isb
    msr     daifclr, #2             /* take them */
    movz    x10, #0x4240
    movk    x10, #0xf, lsl #16      /* give up after a million turns */
4:  cmp     x21, #16
    b.ge    5f
    subs    x10, x10, #1
    b.ne    4b
5:  msr     daifset, #2
    mov     x1, x21
    mov     x2, #6
    bl      test_guest_report

    /* Its own virtual timer (PPI 27, a physical interrupt the core forwards) for 100
     * expirations of 1 ms: the IRQ vector counts them in x25 and re-arms the timer. */
    mov     w9, #0x08000000
    str     w9, [x24, #0x100]       /* GICR_ISENABLER0: PPI 27 */
    mov     x25, #0
    mrs     x26, cntfrq_el0
    mov     x9, #1000
    udiv    x26, x26, x9            /* ticks per millisecond */
    msr     cntv_tval_el0, x26
    mov     x9, #1
    msr     cntv_ctl_el0, x9        /* enabled, not masked */
    isb
    mrs     x10, cntvct_el0
    mrs     x9, cntfrq_el0
    add     x10, x10, x9            /* give up after a second */
    msr     daifclr, #2
9:  cmp     x25, #100
    b.ge    10f
    mrs     x9, cntvct_el0
    cmp     x9, x10
    b.lo    9b
10: msr     daifset, #2
    msr     cntv_ctl_el0, xzr
    mov     x1, x25
    mov     x2, #8
    bl      test_guest_report
8:

    /* One second busy with IRQs on (the baseline), then one with IRQs off: oob work on
     * this CPU must not notice the difference. Reports 9, 10 and 11 mark the phases. */
    mov     x2, #9
    bl      test_guest_report
    msr     daifclr, #2
    mrs     x11, cntfrq_el0
    mrs     x12, cntvct_el0
    add     x12, x12, x11
13: mrs     x13, cntvct_el0
    cmp     x13, x12
    b.lo    13b
    msr     daifset, #2
    mov     x2, #10
    bl      test_guest_report
    mrs     x11, cntfrq_el0
    mrs     x12, cntvct_el0
    add     x12, x12, x11
6:  mrs     x13, cntvct_el0
    cmp     x13, x12
    b.lo    6b
    mov     x2, #11
    bl      test_guest_report
    mov     x1, x11
    mov     x2, #7
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
    .fill 0x80 - 9 * 4, 1, 0
    /* Current EL with SP_ELx, IRQ: acknowledge, count (the timer in x25, re-armed, the
     * rest in x21), end. */
    mrs     x9, icc_iar1_el1
    cmp     x9, #1020
    b.hs    7f
    cmp     x9, #27
    b.ne    11f
    add     x25, x25, #1
    msr     cntv_tval_el0, x26
    cmp     x25, #100
    b.lt    12f
    msr     cntv_ctl_el0, xzr       /* the hundredth: stop */
    b       12f
11: add     x21, x21, #1
12: msr     icc_eoir1_el1, x9
7:  eret
    .fill 0x500 - 15 * 4, 1, 0
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
/// Reports the guest makes (numbers 1..=11; 9..=11 mark the IRQs-on and IRQs-off phases).
const REPORTS: usize = 12;

/// The core's latency during the guest's busy second with IRQs on, then with IRQs off:
/// (worst ns, samples), recorded at the phase marks.
static PHASES: spin::Mutex<[Option<(i64, u64)>; 2]> = spin::Mutex::new([None, None]);
/// No report yet.
const NONE: u64 = 0xdead_dead_dead_dead;

static REPORTED: [AtomicU64; REPORTS] = [const { AtomicU64::new(NONE) }; REPORTS];
/// Whether the guest has a virtual GIC (GICv3 for now).
static VGIC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn report(frame: &mut TrapFrame) -> Option<u64> {
    if frame.x[0] != REPORT_CALL {
        return None;
    }
    let (value, number) = (frame.x[1], frame.x[2] as usize);
    log::info!("el1-guest: report {number}: {value:#x}");
    REPORTED.get(number)?.store(value, Ordering::Relaxed);
    match number {
        9 => {
            let _ = crate::latmus::phase_mark();
        }
        10 => PHASES.lock()[0] = crate::latmus::phase_mark(),
        11 => PHASES.lock()[1] = crate::latmus::phase_mark(),
        _ => {}
    }
    Some(0)
}

/// Checks the reports when the guest powers off and ends the run with the verdict.
fn finish(reset: bool) -> ! {
    // The run ends here: the latency test's periods stop being due before the reports take the CPU.
    crate::latmus::stop_background();
    let got = |n: usize| REPORTED[n].load(Ordering::Relaxed);
    let abort = got(4);
    let timer_forwarded = super::virq::forwarded(27);
    let sgi_check = if VGIC.load(Ordering::Relaxed) { Some(got(6) == 16) } else { None };
    let timer_check = VGIC.load(Ordering::Relaxed).then(|| {
        log::info!("el1-guest: virtual timer: the core forwarded {timer_forwarded}, the guest counted {}", got(8));
        got(8) == 100 && timer_forwarded == 100
    });
    let checks = [
        ("PSCI_VERSION is 1.1", got(1) == 0x1_0001),
        ("PSCI_FEATURES(CPU_ON) is supported", got(2) == 0),
        ("an unassigned PSCI function is NOT_SUPPORTED", got(3) == u64::MAX),
        ("reading the core's memory aborts in the guest", abort >> 26 == 0x25 && abort & 0x3f == 0b000111),
        ("the guest went on after the abort", got(5) == 0x600d),
        ("the guest kept IRQs masked for a second", got(7) != NONE && got(7) > 0),
        ("the guest powered off (not reset)", !reset),
    ];
    let mut failed = 0;
    for (what, ok) in checks {
        log::info!("el1-guest: {what}: {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    let mut passed = checks.len() - failed;
    let sgi_what = "16 self-SGIs all arrived through the list registers";
    match sgi_check {
        Some(ok) => {
            log::info!("el1-guest: {sgi_what}: {}", if ok { "ok" } else { "FAILED" });
            failed += usize::from(!ok);
            passed += usize::from(ok);
        }
        None => log::info!("el1-guest: {sgi_what}: not run (no GICv2 virtual GIC yet)"),
    }
    let timer_what = "100 virtual timer interrupts: as many forwarded by the core as counted by the guest";
    match timer_check {
        Some(ok) => {
            log::info!("el1-guest: {timer_what}: {}", if ok { "ok" } else { "FAILED" });
            failed += usize::from(!ok);
            passed += usize::from(ok);
        }
        None => log::info!("el1-guest: {timer_what}: not run (no GICv2 virtual GIC yet)"),
    }
    let irqs_off_what = "oob latency with the guest's IRQs off stays as with them on";
    match *PHASES.lock() {
        [Some((on_max, on_samples)), Some((off_max, off_samples))] => {
            log::info!(
                "el1-guest: oob thread latency: IRQs on worst {on_max} ns over {on_samples} samples, IRQs off worst {off_max} ns over {off_samples} samples"
            );
            // The same within 20 % and one 1 µs of slack, with a full second of samples each.
            let ok = off_samples >= 900 && on_samples >= 900 && off_max <= on_max + on_max.max(0) / 5 + 1000;
            log::info!("el1-guest: {irqs_off_what}: {}", if ok { "ok" } else { "FAILED" });
            failed += usize::from(!ok);
            passed += usize::from(ok);
        }
        _ => log::info!("el1-guest: {irqs_off_what}: not run (no latency test beside the guest)"),
    }
    crate::latmus::finish_background();
    super::virq::report();
    log::info!("el1-guest: {passed} passed, {failed} failed");
    power::exit(if failed == 0 { power::EXIT_SUCCESS } else { power::EXIT_BOOT_FAILURE })
}

/// Runs the test guest on this (boot) CPU. `dtb` is the board's tree; `core_end` is the
/// end of the core's image (everything from the start of RAM to there stays the core's).
pub fn run(info: &PlatformInfo<'_>, dtb: usize, core_end: u64, mpidr: u64) -> Result<core::convert::Infallible, &'static str> {
    // Linker symbols: only their addresses are used.
    let code = &raw const test_guest_start as usize..&raw const test_guest_end as usize;
    let super::builtin::Loaded { memory, entry, regions: (regions, skipped), passed_through, .. } =
        super::builtin::load(info, dtb, core_end, code)?;
    log::info!("el1-guest: stage 2 with {regions} regions ({skipped} left out), guest RAM from {entry:#x}");
    let state = GuestState::new(&[mpidr], &memory, report, finish).ok_or("PSCI model")?;
    // The guest owns this CPU from here on: the previous state is never restored.
    let _ = crate::arch::mask_irqs();
    let interrupts = super::virq::GuestInterrupts { timer: &info.timer, emulated: &[], passed_through: &passed_through };
    let gicr = match super::virq::init(&info.gic, &[mpidr], 32, &interrupts) {
        Ok(()) => {
            VGIC.store(true, Ordering::Relaxed);
            info.gic.redistributor.map_or(0, |r| r.base)
        }
        Err(e) => {
            log::info!("el1-guest: no virtual GIC ({e}): the SGI test is skipped");
            0
        }
    };
    super::vcpus::prepare_this_cpu(boot::cpu_index());
    // SAFETY: stage 2 maps `entry` as guest RAM holding the cleaned code; IRQs are masked.
    unsafe { super::enter(entry, [0, info.memory.first().ok_or("no memory")?.base, info.gic.distributor.base, gicr], state) }
}
