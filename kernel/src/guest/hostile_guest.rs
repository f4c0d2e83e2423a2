//! A hostile bare-metal EL1 guest (`companion.test=hostile-guest`): on the boot CPU, beside
//! the latency test, it attacks the core through every door the guest interface has, and the
//! core checks it came through unharmed.
//!
//! The attacks, in order (each followed by a report through a vendor hypercall):
//! 1. the GIC: on every vCPU's redistributor and on the distributor it sets, then clears,
//!    every enable, pending and active bit, writes every priority and trigger and routes
//!    every SPI to garbage — the core's own interrupts (its timer, the maintenance
//!    interrupt, the kick SGI) must not notice;
//! 2. PSCI: `CPU_ON` into the core's memory, at 0, at a misaligned entry and for a garbage
//!    target (all refused, nothing started), then 1000 calls with random function IDs and
//!    arguments (all NOT_SUPPORTED);
//! 3. 2000 garbage writes each to ICC_SGI1R_EL1, ICC_SGI0R_EL1 and ICC_ASGI1R_EL1;
//! 4. a jump into the core's memory (an instruction abort must come back), a load from and
//!    a store to it (data aborts);
//! 5. forged lines on its console: `verdict: PASS`, an `RTS|` line, a `replay log: … lost 0`;
//! 6. optionally (`companion.hostile=dma`): a fw-cfg DMA request at QEMU virt's fw-cfg that
//!    would overwrite the core's text;
//! 7. a busy half second with its IRQs masked (the latency test must keep sampling);
//! 8. optionally, last (`companion.hostile=semihosting`): a semihosting `SYS_EXIT(0)`;
//! 9. (between 6 and 7, when the board has a channel device) the oob channels' virtio-console:
//!    it sets up port 0's transmit queue and offers a descriptor pointing into the core's
//!    memory — the device must mark itself broken (DEVICE_NEEDS_RESET) and copy nothing;
//! 10. (between 7 and 8) the PMU: it resets and zeroes the cycle counter the core started
//!     on its CPU, clears its EL2 filter bit, stops every counter, arms every overflow
//!     interrupt and opens the PMU to EL0, then reads the cycle counter — which must read as
//!     zero (the core's emulation), the core's counter running on untouched.
//!
//! Then it powers off. The core passes the run only if its text and read-only data hash the
//! same as when the guest started, its own interrupts are still enabled on every CPU, the
//! latency test took one sample per period over the guest's run, and every report is what
//! an unharmed core answers.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use platform::PlatformInfo;

use super::GuestState;
use crate::power;

core::arch::global_asm!(
    r#"
.section .rodata.hostile_guest, "a"
.balign 4096
.global hostile_guest_start
hostile_guest_start:
    mov     x20, x0                 /* the core's image */
    mov     x22, x1                 /* GICD */
    mov     x23, x2                 /* GICR of vCPU 0 */
    and     x24, x3, #0xfffffffffffff000    /* the UART */
    and     x19, x3, #0xf           /* attack flags: bit 0 semihosting, bit 1 DMA */
    ubfx    x25, x3, #4, #4         /* vCPUs */
    adr     x9, hostile_vectors
    msr     vbar_el1, x9
    isb
    mov     x1, #0
    mov     x2, #1
    bl      hostile_report

    /* 1. Every redistributor: set everything, then clear everything. */
    movn    w9, #0                  /* all ones */
    movz    w15, #0xaaaa
    movk    w15, #0xaaaa, lsl #16   /* every interrupt edge-triggered */
    mov     x10, #0
    mov     x11, x23
1:  add     x12, x11, #0x10000      /* SGI_base */
    str     w9, [x12, #0x100]       /* GICR_ISENABLER0 */
    str     w9, [x12, #0x200]       /* GICR_ISPENDR0 */
    str     w9, [x12, #0x300]       /* GICR_ISACTIVER0 */
    mov     x13, #0x400
2:  str     w9, [x12, x13]          /* GICR_IPRIORITYR0..7 */
    add     x13, x13, #4
    cmp     x13, #0x420
    b.lo    2b
    str     w15, [x12, #0xc00]      /* GICR_ICFGR0, ICFGR1 */
    str     w15, [x12, #0xc04]
    str     w9, [x12, #0x380]       /* GICR_ICACTIVER0 */
    str     w9, [x12, #0x280]       /* GICR_ICPENDR0 */
    str     w9, [x12, #0x180]       /* GICR_ICENABLER0 */
    str     w9, [x11]               /* GICR_CTLR */
    add     x10, x10, #1
    add     x11, x11, #0x20000
    cmp     x10, x25
    b.lo    1b
    /* The distributor: the same for every bank, then every priority, trigger and route. */
    mov     x13, #0
3:  add     x14, x22, x13
    str     w9, [x14, #0x100]       /* GICD_ISENABLER<n> */
    str     w9, [x14, #0x200]       /* GICD_ISPENDR<n> */
    str     w9, [x14, #0x300]       /* GICD_ISACTIVER<n> */
    add     x13, x13, #4
    cmp     x13, #0x80
    b.lo    3b
    mov     x13, #0x400
4:  str     w9, [x22, x13]          /* GICD_IPRIORITYR<n> */
    add     x13, x13, #4
    cmp     x13, #0x800
    b.lo    4b
    mov     x13, #0xc00
5:  str     w15, [x22, x13]         /* GICD_ICFGR<n> */
    add     x13, x13, #4
    cmp     x13, #0xd00
    b.lo    5b
    mov     x13, #0x6100            /* GICD_IROUTER<32> .. <1019> */
    mov     x16, #0x7fe0
    movn    x17, #0
6:  str     x17, [x22, x13]
    add     x13, x13, #8
    cmp     x13, x16
    b.lo    6b
    mov     x13, #0
7:  add     x14, x22, x13
    str     w9, [x14, #0x380]       /* GICD_ICACTIVER<n> */
    str     w9, [x14, #0x280]       /* GICD_ICPENDR<n> */
    str     w9, [x14, #0x180]       /* GICD_ICENABLER<n> */
    add     x13, x13, #4
    cmp     x13, #0x80
    b.lo    7b
    mov     x1, #0
    mov     x2, #2
    bl      hostile_report

    /* 2. PSCI CPU_ON: into the core, at 0, misaligned, for a garbage target. */
    movz    w0, #0x0003
    movk    w0, #0xc400, lsl #16
    mov     x1, #1
    mov     x2, x20
    mov     x3, #0
    hvc     #0
    mov     x1, x0
    mov     x2, #3
    bl      hostile_report
    movz    w0, #0x0003
    movk    w0, #0xc400, lsl #16
    mov     x1, #1
    mov     x2, #0
    hvc     #0
    mov     x1, x0
    mov     x2, #4
    bl      hostile_report
    movz    w0, #0x0003
    movk    w0, #0xc400, lsl #16
    mov     x1, #1
    adr     x2, hostile_guest_start
    add     x2, x2, #2
    hvc     #0
    mov     x1, x0
    mov     x2, #5
    bl      hostile_report
    movz    w0, #0x0003
    movk    w0, #0xc400, lsl #16
    movz    x1, #0xbeef
    movk    x1, #0xdead, lsl #16
    adr     x2, hostile_guest_start
    hvc     #0
    mov     x1, x0
    mov     x2, #6
    bl      hostile_report
    movz    w0, #0x0004             /* AFFINITY_INFO(vCPU 1): still off */
    movk    w0, #0xc400, lsl #16
    mov     x1, #1
    mov     x2, #0
    hvc     #0
    mov     x1, x0
    mov     x2, #7
    bl      hostile_report
    /* 1000 calls with random function IDs (standard-service ones made unassigned: no
     * SYSTEM_OFF or CPU_OFF by chance) and random arguments. */
    mov     x26, #1000
    mov     x27, #0                 /* NOT_SUPPORTED answers */
    movz    x28, #0x1234
    movk    x28, #0x9e37, lsl #16
8:  eor     x28, x28, x28, lsl #13
    eor     x28, x28, x28, lsr #7
    eor     x28, x28, x28, lsl #17
    mov     w0, w28
    ubfx    x9, x0, #24, #6
    cmp     x9, #4
    b.ne    9f
    orr     w0, w0, #0x1f
9:  lsr     x1, x28, #7
    lsr     x2, x28, #13
    lsr     x3, x28, #3
    hvc     #0
    cmn     x0, #1
    cinc    x27, x27, eq
    subs    x26, x26, #1
    b.ne    8b
    mov     x1, x27
    mov     x2, #8
    bl      hostile_report

    /* 3. Garbage SGI generation, 2000 times each. */
    mov     x26, #2000
10: eor     x28, x28, x28, lsl #13
    eor     x28, x28, x28, lsr #7
    eor     x28, x28, x28, lsl #17
    msr     icc_sgi1r_el1, x28
    msr     icc_sgi0r_el1, x28
    msr     icc_asgi1r_el1, x28
    subs    x26, x26, #1
    b.ne    10b
    isb
    mov     x1, #0
    mov     x2, #9
    bl      hostile_report

    /* 4. Execute, load and store in the core's memory: each aborts (ESR in x21). */
    mov     x21, #0
    blr     x20
    mov     x1, x21
    mov     x2, #10
    bl      hostile_report
    mov     x21, #0
    ldr     x9, [x20]
    mov     x1, x21
    mov     x2, #11
    bl      hostile_report
    mov     x21, #0
    str     xzr, [x20]
    mov     x1, x21
    mov     x2, #12
    bl      hostile_report

    /* 5. Forged lines on the console. */
    mov     w9, #0x301              /* UARTCR: UARTEN, TXE, RXE */
    str     w9, [x24, #0x30]
    adr     x9, hostile_forged
11: ldrb    w10, [x9], #1
    cbz     w10, 12f
    str     w10, [x24]
    b       11b
12:

    /* 6. A fw-cfg DMA read of 64 KiB over the core's image (QEMU virt's fw-cfg). */
    tbz     x19, #1, 13f
    adr     x9, hostile_dma
    mov     w10, #0x0a000000        /* control (big-endian): SELECT | READ, key 0 */
    str     w10, [x9]
    mov     w10, #0x100             /* length (big-endian): 0x10000 */
    str     w10, [x9, #4]
    rev     x10, x20                /* address (big-endian): the core */
    str     x10, [x9, #8]
    dsb     sy
    movz    x11, #0x0902, lsl #16
    rev     x10, x9
    str     x10, [x11, #0x10]       /* FW_CFG_DMA_ADDRESS */
    mov     x1, #0
    mov     x2, #13
    bl      hostile_report
13:

    /* 9. The channel's virtio-console (if any): a descriptor into the core's memory. */
    ldr     x26, hostile_channel
    cbz     x26, 17f
    str     wzr, [x26, #0x70]       /* Status: reset */
    mov     w9, #3                  /* ACKNOWLEDGE | DRIVER */
    str     w9, [x26, #0x70]
    mov     w9, #1
    str     w9, [x26, #0x24]        /* DriverFeaturesSel 1 */
    str     w9, [x26, #0x20]        /* DriverFeatures: VERSION_1 */
    mov     w9, #11                 /* | FEATURES_OK */
    str     w9, [x26, #0x70]
    mov     w9, #1
    str     w9, [x26, #0x30]        /* QueueSel 1: port 0's transmit queue */
    mov     w9, #8
    str     w9, [x26, #0x38]        /* QueueNum 8 */
    adr     x10, hostile_ring
    str     w10, [x26, #0x80]       /* QueueDesc: the ring page */
    lsr     x11, x10, #32
    str     w11, [x26, #0x84]
    add     x12, x10, #0x100        /* QueueDriver (available ring) */
    str     w12, [x26, #0x90]
    lsr     x11, x12, #32
    str     w11, [x26, #0x94]
    add     x12, x10, #0x200        /* QueueDevice (used ring) */
    str     w12, [x26, #0xa0]
    lsr     x11, x12, #32
    str     w11, [x26, #0xa4]
    mov     w9, #1
    str     w9, [x26, #0x44]        /* QueueReady */
    mov     w9, #15                 /* | DRIVER_OK */
    str     w9, [x26, #0x70]
    str     x20, [x10]              /* descriptor 0: the core's image, 64 bytes, readable */
    mov     w9, #64
    str     w9, [x10, #8]
    str     wzr, [x10, #12]
    strh    wzr, [x10, #0x104]      /* available ring[0] = descriptor 0 */
    dmb     ishst
    mov     w9, #1
    strh    w9, [x10, #0x102]       /* available idx 1 */
    dmb     ishst
    str     w9, [x26, #0x50]        /* QueueNotify 1 */
    ldr     w1, [x26, #0x70]        /* Status */
    mov     x2, #16
    bl      hostile_report
17:

    /* 7. Half a second busy with IRQs masked. */
    mrs     x11, cntfrq_el0
    mrs     x12, cntvct_el0
    add     x12, x12, x11, lsr #1
14: mrs     x13, cntvct_el0
    cmp     x13, x12
    b.lo    14b
    mov     x1, #0
    mov     x2, #14
    bl      hostile_report

    /* 10. The PMU: reset and zero the cycle counter, stop it counting at EL2 and stop every
     * counter, arm every overflow interrupt and flag, open it to EL0; then read it. */
    mov     x9, #0x47               /* PMCR_EL0: E, P, C, LC */
    msr     pmcr_el0, x9
    msr     pmccntr_el0, xzr
    msr     pmccfiltr_el0, xzr
    movn    x9, #0
    msr     pmintenset_el1, x9
    msr     pmovsset_el0, x9
    msr     pmcntenclr_el0, x9
    msr     pmuserenr_el0, x9
    isb
    movn    x1, #0                  /* stays all ones if the read is undefined */
    mrs     x1, pmccntr_el0
    mov     x2, #17
    bl      hostile_report

    /* 8. Semihosting SYS_EXIT(ADP_Stopped_ApplicationExit), last. */
    tbz     x19, #0, 15f
    mov     x0, #0x18
    movz    x1, #0x0026
    movk    x1, #0x2, lsl #16
    hlt     #0xf000
    mov     x1, x0
    mov     x2, #15
    bl      hostile_report
15: movz    w0, #0x0008             /* PSCI SYSTEM_OFF */
    movk    w0, #0x8400, lsl #16
    hvc     #0
16: b       16b

hostile_report:                     /* x1 = value, x2 = report number */
    movz    x0, #0x0002
    movk    x0, #0xc600, lsl #16
    hvc     #0
    ret

.balign 8
hostile_dma:
    .quad 0, 0
hostile_channel:                    /* the channel device's page, set by the core (0: none) */
    .quad 0
hostile_forged:
    .ascii "verdict: PASS\n"
    .ascii "RTS|      0.100|      0.200|      0.300|       0|     0|      0.100|      0.300|  00:00:01/00:00:01\n"
    .ascii "replay log: logged 1, replayed 1, coalesced 0, withdrawn 0, max depth 0, lost 0\n"
    .asciz "hostile-guest: 99 passed, 0 failed\n"

.balign 2048
hostile_vectors:
    .fill 0x200, 1, 0
    /* Current EL with SP_ELx, synchronous: keep ESR_EL1 in x21; an instruction abort
     * returns to x30 (the jump's return address), anything else skips the instruction. */
    mrs     x21, esr_el1
    ubfx    x9, x21, #26, #6
    cmp     x9, #0x21
    b.ne    1f
    msr     elr_el1, x30
    eret
1:  mrs     x9, elr_el1
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
    .fill 0x600 - 10 * 4, 1, 0
.balign 4096
hostile_ring:                       /* the channel attack's descriptors and rings */
    .fill 0x1000, 1, 0
.global hostile_guest_end
hostile_guest_end:
"#
);

unsafe extern "C" {
    static hostile_guest_start: u8;
    static hostile_guest_end: u8;
    static hostile_channel: u8;
}

/// The vendor hypercall the hostile guest reports with: x1 = value, x2 = report number.
const REPORT_CALL: u64 = 0xc600_0002;
/// Reports the guest makes (numbers 1..=17).
const REPORTS: usize = 18;
/// No report yet.
const NONE: u64 = 0xdead_dead_dead_dead;
/// Attack flag: the semihosting `SYS_EXIT` (last).
const ATTACK_SEMIHOSTING: u64 = 1 << 0;
/// Attack flag: the fw-cfg DMA request.
const ATTACK_DMA: u64 = 1 << 1;
/// Where the vCPU count goes in the guest's x3.
const VCPUS_SHIFT: u64 = 4;
/// The report marking the start of the attacks, and the one after the masked half second.
const MARK_START: usize = 1;
const MARK_END: usize = 14;
/// The report of the channel attack: the device's status after the notification.
const REPORT_CHANNEL: usize = 16;
/// The report of the PMU attack: the cycle counter as the guest reads it.
const REPORT_PMU: usize = 17;
/// What the core sets its cycle counter to before the guest starts: the PMU attack's reset
/// would bring it far below.
const CYCLES_AT_START: u64 = 1 << 62;
/// The virtio status bit the channel attack must leave set.
const DEVICE_NEEDS_RESET: u64 = vm::virtio::status::DEVICE_NEEDS_RESET as u64;
/// PSCI's answers the reports must carry.
const PSCI_INVALID_PARAMETERS: u64 = -2i64 as u64;
const PSCI_INVALID_ADDRESS: u64 = -9i64 as u64;
const PSCI_AFFINITY_OFF: u64 = 1;
/// Random PSCI calls and SGI writes the guest makes.
const RANDOM_CALLS: u64 = 1000;
const SGI_WRITES: u64 = 2000;
/// ESR classes and fault status the aborts must carry.
const EC_INSTRUCTION_ABORT_SAME_EL: u64 = 0x21;
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
const FSC_TRANSLATION_L3: u64 = 0b000111;
const ESR_WNR: u64 = 1 << 6;
/// Samples the latency test may be off by against the periods between the marks (the
/// marks fall anywhere within a period, and one period may be in flight at each).
const SAMPLE_SLACK: u64 = 3;

static REPORTED: [AtomicU64; REPORTS] = [const { AtomicU64::new(NONE) }; REPORTS];
/// The hash of the core's text and read-only data when the guest started.
static HASH_AT_START: AtomicU64 = AtomicU64::new(0);
/// Counter values at the start and end marks.
static MARKS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// The latency test's thread samples between the marks (`u64::MAX`: none ran).
static SAMPLES: AtomicU64 = AtomicU64::new(u64::MAX);
/// The core's private interrupts every CPU keeps enabled, to check at the end: its timer
/// and the kick SGI.
static CORE_INTERRUPTS: [AtomicU32; 2] = [const { AtomicU32::new(NO_INTID) }; 2];
/// The maintenance interrupt, enabled on the CPUs that run a vCPU (this one) ([`NO_INTID`]:
/// none).
static MAINTENANCE: AtomicU32 = AtomicU32::new(NO_INTID);
/// No interrupt in a [`CORE_INTERRUPTS`] slot.
const NO_INTID: u32 = u32::MAX;
/// CPUs to check.
static CPUS: AtomicU64 = AtomicU64::new(0);
/// The latency test's period (µs).
static PERIOD_US: AtomicU64 = AtomicU64::new(1000);

/// FNV-1a over the core's text and read-only data.
fn image_hash() -> u64 {
    let (text, rodata) = boot::mmu::image_sections();
    // SAFETY: the image's text and read-only data are mapped readable for the whole run and
    // never written.
    let bytes = unsafe { core::slice::from_raw_parts(text.start as *const u8, (rodata.end - text.start) as usize) };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3))
}

fn report(frame: &mut TrapFrame) -> Option<u64> {
    if frame.x[0] != REPORT_CALL {
        return None;
    }
    let (value, number) = (frame.x[1], frame.x[2] as usize);
    REPORTED.get(number)?.store(value, Ordering::Relaxed);
    match number {
        MARK_START => {
            let _ = crate::latmus::phase_mark();
            MARKS[0].store(crate::hwtimer::counter_unordered(), Ordering::Relaxed);
        }
        MARK_END => {
            MARKS[1].store(crate::hwtimer::counter_unordered(), Ordering::Relaxed);
            if let Some((_, samples)) = crate::latmus::phase_mark() {
                SAMPLES.store(samples, Ordering::Relaxed);
            }
        }
        _ => {}
    }
    Some(0)
}

/// Checks everything when the guest powers off and ends the run with the core's verdict.
fn finish(reset: bool) -> ! {
    // The run ends here: the latency test's periods stop being due before the reports take the CPU.
    crate::latmus::stop_background();
    super::console::flush();
    let got = |n: usize| REPORTED[n].load(Ordering::Relaxed);
    let (start_hash, end_hash) = (HASH_AT_START.load(Ordering::Relaxed), image_hash());
    log::info!("hostile-guest: core image hash {start_hash:#018x} at the start, {end_hash:#018x} at the end");
    let cpus = CPUS.load(Ordering::Relaxed) as usize;
    let enabled = |intid: u32, cpu: usize| {
        let on = intid == NO_INTID || crate::gic::is_enabled(intid, cpu) == Some(true);
        if !on {
            log::info!("hostile-guest: INTID {intid} is disabled on cpu {cpu}");
        }
        on
    };
    let everywhere = (0..cpus).all(|cpu| CORE_INTERRUPTS.iter().all(|intid| enabled(intid.load(Ordering::Relaxed), cpu)));
    let core_interrupts_on = everywhere && enabled(MAINTENANCE.load(Ordering::Relaxed), boot::cpu_index());
    let ticks = MARKS[1].load(Ordering::Relaxed).saturating_sub(MARKS[0].load(Ordering::Relaxed));
    let elapsed_us = crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks) / 1000);
    let periods = elapsed_us / PERIOD_US.load(Ordering::Relaxed).max(1);
    let samples = SAMPLES.load(Ordering::Relaxed);
    log::info!("hostile-guest: the latency test took {samples} thread samples in {periods} periods of the guest's attacks");
    let esr = |n: usize| got(n);
    let aborted = |value: u64, class: u64| value >> 26 == class && value & 0x3f == FSC_TRANSLATION_L3;
    let ignored_sgis = super::trap_log::total(super::trap_log::Kind::IgnoredSgi);
    let checks = [
        ("the core's text and read-only data are intact", start_hash == end_hash && start_hash != 0),
        ("the core's timer, maintenance and kick interrupts are still enabled on every CPU", core_interrupts_on),
        ("the GIC attacks completed", got(2) == 0),
        ("CPU_ON into the core's memory is INVALID_ADDRESS", got(3) == PSCI_INVALID_ADDRESS),
        ("CPU_ON at address 0 is INVALID_ADDRESS", got(4) == PSCI_INVALID_ADDRESS),
        ("CPU_ON at a misaligned entry is INVALID_ADDRESS", got(5) == PSCI_INVALID_ADDRESS),
        ("CPU_ON of a garbage target is INVALID_PARAMETERS", got(6) == PSCI_INVALID_PARAMETERS),
        ("the refused vCPU is still off", got(7) == PSCI_AFFINITY_OFF),
        ("1000 random PSCI function IDs are all NOT_SUPPORTED", got(8) == RANDOM_CALLS),
        ("4000 garbage SGI0R/ASGI1R writes ignored and 2000 SGI1R ones survived", got(9) == 0 && ignored_sgis == 2 * SGI_WRITES),
        ("a jump into the core's memory is an instruction abort", aborted(esr(10), EC_INSTRUCTION_ABORT_SAME_EL)),
        ("a load from the core's memory is a data abort", aborted(esr(11), EC_DATA_ABORT_SAME_EL) && esr(11) & ESR_WNR == 0),
        ("a store to the core's memory is a data abort", aborted(esr(12), EC_DATA_ABORT_SAME_EL) && esr(12) & ESR_WNR != 0),
        (
            "the latency test kept one sample per period beside the guest",
            samples != u64::MAX && periods >= 100 && samples + SAMPLE_SLACK >= periods && samples <= periods + SAMPLE_SLACK,
        ),
        (
            "a channel descriptor into the core's memory marks the device DEVICE_NEEDS_RESET",
            got(REPORT_CHANNEL) != NONE && got(REPORT_CHANNEL) & DEVICE_NEEDS_RESET != 0,
        ),
        (
            "the guest's PMU writes left the core's cycle counter running (reads as zero to the guest)",
            got(REPORT_PMU) == 0 && crate::cycles::untouched_since(CYCLES_AT_START),
        ),
        ("the guest powered off (not reset)", !reset),
    ];
    let mut failed = 0;
    for (what, ok) in checks {
        log::info!("hostile-guest: {what}: {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    crate::latmus::finish_background();
    super::virq::report();
    super::trap_log::report();
    log::info!("hostile-guest: {} passed, {failed} failed", checks.len() - failed);
    power::exit(if failed == 0 { power::EXIT_SUCCESS } else { power::EXIT_BOOT_FAILURE })
}

/// Runs the hostile guest on this (boot) CPU with one vCPU per entry of `mpidrs` (only
/// vCPU 0 runs; the others exist to be attacked) and `spis` SPIs. `dtb` is the board's
/// tree; `core_end` the end of the core's image; `attacks` the optional attacks
/// (`companion.hostile=semihosting,dma`).
pub fn run(
    info: &PlatformInfo<'_>,
    dtb: usize,
    core_end: u64,
    mpidrs: &[u64],
    spis: u32,
    attacks: &str,
) -> Result<core::convert::Infallible, &'static str> {
    let code = &raw const hostile_guest_start as usize..&raw const hostile_guest_end as usize;
    let super::builtin::Loaded { tree, memory, entry, passed_through, .. } = super::builtin::load(info, dtb, core_end, code)?;

    let state = GuestState::new(mpidrs, &memory, report, finish).ok_or("PSCI model")?;
    let uart_intid = platform::discovery::uart_intid(&tree, &info.uart);
    let channel = info.board.channel.filter(|device| device.intid() < 32 + spis);
    let emulated: alloc::vec::Vec<u32> = uart_intid.into_iter().chain(channel.map(|device| device.intid())).collect();
    let interrupts = super::virq::GuestInterrupts { timer: &info.timer, emulated: &emulated, passed_through: &passed_through };
    super::virq::init(&info.gic, mpidrs, spis.next_multiple_of(32), &interrupts)?;
    super::console::init(info.uart.base, info.uart.size, uart_intid);
    if let Some(device) = channel {
        super::channel::init(device.base, device.intid(), &memory);
        let slot = entry + (&raw const hostile_channel as u64 - &raw const hostile_guest_start as u64);
        // SAFETY: `slot` is the guest code's `hostile_channel` word, 8-byte aligned, in the
        // copy `load` just made at the start of guest RAM (identity-mapped, writable at EL2);
        // the guest has not started yet.
        unsafe { (slot as *mut u64).write_volatile(device.base) };
    }
    let gicr = info.gic.redistributor.ok_or("no redistributor (GICv3 only)")?.base;
    CORE_INTERRUPTS[0].store(info.timer.hyp_phys_intid, Ordering::Relaxed);
    CORE_INTERRUPTS[1].store(crate::sched::KICK_SGI, Ordering::Relaxed);
    MAINTENANCE.store(info.gic.maintenance_intid.unwrap_or(NO_INTID), Ordering::Relaxed);
    CPUS.store(mpidrs.len() as u64, Ordering::Relaxed);
    if let Some(period) = info.bootarg("latmus.period").and_then(|p| p.parse().ok()) {
        PERIOD_US.store(period, Ordering::Relaxed);
    }
    let mut flags = (mpidrs.len() as u64) << VCPUS_SHIFT;
    for attack in attacks.split(',') {
        match attack {
            "semihosting" => flags |= ATTACK_SEMIHOSTING,
            "dma" => flags |= ATTACK_DMA,
            _ => {}
        }
    }
    HASH_AT_START.store(image_hash(), Ordering::Relaxed);
    // The cycle counter the PMU attack goes for (its check fails where there is no PMU).
    if crate::cycles::enable().is_ok() {
        crate::cycles::set(CYCLES_AT_START);
    }
    log::info!(
        "hostile-guest: {} vCPUs, guest RAM from {entry:#x}, optional attacks: {}",
        mpidrs.len(),
        if attacks.is_empty() { "none" } else { attacks }
    );
    super::vcpus::prepare_this_cpu(boot::cpu_index());
    super::vcpus::publish(mpidrs);
    // The guest owns this CPU from here on: the previous state is never restored.
    let _ = crate::arch::mask_irqs();
    let args = [boot::mmu::image_sections().0.start, info.gic.distributor.base, gicr, info.uart.base | flags];
    // SAFETY: stage 2 maps `entry` as guest RAM holding the cleaned code; IRQs are masked.
    unsafe { super::enter(entry, args, state) }
}
