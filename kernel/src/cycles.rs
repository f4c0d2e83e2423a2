//! The PMU's cycle counter (`PMCCNTR_EL0`), counting at EL2: the benchmark's clock; and
//! the PMU kept from the guest ([`trap_guest_pmu`]).
//!
//! Under QEMU's TCG the cycle counter follows the virtual clock at a fixed 1 GHz, whatever
//! frequency the board gives its generic counter (8 MHz on the i.MX 8M Plus, 54 MHz on the
//! Raspberry Pi 4), so under `-icount shift=0` one cycle is one virtual ns is one
//! instruction on every board. On hardware it counts the CPU's clock cycles (and stops in
//! WFI), so [`Calibration`]'s exactness is a property of QEMU's model only.
//!
//! The guest cannot disturb it: `MDCR_EL2.TPM`/`TPMCR` trap every PMU access from EL1/EL0
//! to the core ([`trap_guest_pmu`], on every vCPU entry), which emulates them as
//! reads-as-zero/writes-ignored (`guest::handle_trap`).

use aarch64_cpu::registers::{ID_AA64DFR0_EL1, MDCR_EL2, Readable, Writeable};
use tock_registers::LocalRegisterCopy;
use tock_registers::register_bitfields;

register_bitfields![u64,
    /// PMCR_EL0, the fields the core sets.
    PMCR [
        /// Enables the counters.
        E OFFSET(0) NUMBITS(1) [],
        /// Writing 1 resets the cycle counter to zero.
        C OFFSET(2) NUMBITS(1) [],
        /// The cycle counter overflows at 64 bits rather than 32.
        LC OFFSET(6) NUMBITS(1) [],
        /// The number of event counters (read-only).
        N OFFSET(11) NUMBITS(5) []
    ],
    /// PMCCFILTR_EL0: the exception levels the cycle counter counts in.
    PMCCFILTR [
        /// Non-secure EL2: 1 counts there (EL1 and EL0 count with their bits at 0).
        NSH OFFSET(27) NUMBITS(1) []
    ],
    /// PMCNTENSET_EL0: which counters run.
    PMCNTENSET [
        /// The cycle counter.
        C OFFSET(31) NUMBITS(1) []
    ]
];

/// `ID_AA64DFR0_EL1.PMUVer` for "no PMU".
const PMU_NOT_IMPLEMENTED: u64 = 0;
/// `ID_AA64DFR0_EL1.PMUVer` for "an IMPLEMENTATION DEFINED PMU, not the architected one".
const PMU_IMPLEMENTATION_DEFINED: u64 = 0xf;

/// The CPU has no architected PMU, so no cycle counter.
#[derive(Debug, Clone, Copy)]
pub struct NoPmu;

/// Whether the calling CPU has the architected PMU (so the PMU registers exist).
fn pmu_present() -> bool {
    let version = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    version != PMU_NOT_IMPLEMENTED && version != PMU_IMPLEMENTATION_DEFINED
}

/// Reads `PMCR_EL0` (the PMU must be present).
fn control() -> LocalRegisterCopy<u64, PMCR::Register> {
    let value: u64;
    // SAFETY: reading PMCR_EL0 at EL2 has no side effect; the callers checked the PMU exists.
    unsafe { core::arch::asm!("mrs {0}, pmcr_el0", out(reg) value, options(nomem, nostack)) };
    LocalRegisterCopy::new(value)
}

/// Traps every PMU access of EL1 and EL0 to EL2 on the calling CPU, before it enters a
/// vCPU: `MDCR_EL2.TPM` (all PMU registers) and `TPMCR` (`PMCR_EL0`), so a guest can neither
/// read nor reset, stop, retarget (`PMCCFILTR_EL0.NSH`) or arm the overflow interrupt of the
/// core's cycle counter, nor count with event counters; the trap handler emulates a PMU
/// with no event counters whose registers read as zero. `HPMN` keeps every event counter in
/// the EL1 range (`PMCR_EL0.N`; nothing is reserved to EL2, where the core uses only the
/// cycle counter) and `HPMD`, `TDA`, `TDOSA`, `TDRA` stay 0 (see docs/isolation-kernel.md).
pub fn trap_guest_pmu() {
    let counters = if pmu_present() { control().read(PMCR::N) } else { 0 };
    MDCR_EL2.write(MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET + MDCR_EL2::HPMN.val(counters));
}

/// Starts the calling CPU's cycle counter from zero, counting at EL2, EL1 and EL0.
pub fn enable() -> Result<(), NoPmu> {
    if !pmu_present() {
        return Err(NoPmu);
    }
    let filter = u64::from(PMCCFILTR::NSH::SET);
    let control = u64::from(PMCR::E::SET + PMCR::C::SET + PMCR::LC::SET);
    let enable = u64::from(PMCNTENSET::C::SET);
    // SAFETY: the cycle counter's filter, the PMU's control register and its counter-enable
    // set only change what the performance counters count; EL2 may write them (the architected
    // PMU is present, checked above). The core keeps no other PMU state.
    unsafe {
        core::arch::asm!(
            "msr pmccfiltr_el0, {filter}",
            "msr pmcr_el0, {control}",
            "msr pmcntenset_el0, {enable}",
            "isb",
            filter = in(reg) filter,
            control = in(reg) control,
            enable = in(reg) enable,
            options(nostack, preserves_flags)
        );
    }
    Ok(())
}

/// The cycle counter now, without a barrier (like `hwtimer::counter_unordered`); 0 or a
/// stale value on a CPU whose counter [`enable`] did not start.
#[inline]
pub fn now() -> u64 {
    let cycles: u64;
    // SAFETY: reading PMCCNTR_EL0 at EL2 has no side effect (EL3, where present, leaves PMU
    // accesses untrapped on the boards the core runs on).
    unsafe { core::arch::asm!("mrs {0}, pmccntr_el0", out(reg) cycles, options(nomem, nostack)) };
    cycles
}

/// Sets the calling CPU's cycle counter (started by [`enable`]) to `value`.
pub fn set(value: u64) {
    // SAFETY: writing PMCCNTR_EL0 at EL2 only changes the count this CPU's cycle counter
    // continues from; the callers started the counter (so the PMU exists).
    unsafe { core::arch::asm!("msr pmccntr_el0, {0}", "isb", in(reg) value, options(nostack)) };
}

/// Whether the calling CPU's cycle counter is as [`enable`] then [`set`]`(floor)` left it:
/// enabled, 64-bit, counting at EL2, no overflow interrupt, and not reset below `floor`.
/// False where there is no PMU.
pub fn untouched_since(floor: u64) -> bool {
    if !pmu_present() {
        return false;
    }
    let (filter, enabled, interrupts): (u64, u64, u64);
    // SAFETY: reading the cycle counter's filter and the counter-enable and interrupt-enable
    // sets at EL2 has no side effect (the PMU exists, checked above).
    unsafe {
        core::arch::asm!(
            "mrs {f}, pmccfiltr_el0",
            "mrs {e}, pmcntenset_el0",
            "mrs {i}, pmintenset_el1",
            f = out(reg) filter,
            e = out(reg) enabled,
            i = out(reg) interrupts,
            options(nomem, nostack)
        );
    }
    let control = control();
    control.is_set(PMCR::E)
        && control.is_set(PMCR::LC)
        && LocalRegisterCopy::<u64, PMCCFILTR::Register>::new(filter).is_set(PMCCFILTR::NSH)
        && LocalRegisterCopy::<u64, PMCNTENSET::Register>::new(enabled).is_set(PMCNTENSET::C)
        && interrupts == 0
        && now() >= floor
}

/// Where the cycle counter stands against the generic counter: a deadline in counter ticks
/// converted to the cycle count at which the counter reaches it.
///
/// Measured from two counter edges, each located to the instruction (see [`edge`]): the
/// cycle count when the counter became `first.0`, and the one when it became `second.0`. Under
/// QEMU (`-icount shift=0`) a counter value `t` starts at virtual ns `t * P` (P = QEMU's whole
/// ns per tick) and the cycle counter is virtual ns plus a constant, so the conversion is
/// exact; on any board, whatever its counter frequency.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    first: (u64, u64),
    second: (u64, u64),
}

impl Calibration {
    /// Measures on the calling CPU (whose counter [`enable`] started) from two edges at least
    /// `span` counter ticks apart; `None` if no edge could be located (the counter or the
    /// cycle counter does not move).
    pub fn measure(span: u64) -> Option<Self> {
        let first = edge()?;
        let mut second = edge()?;
        while second.0 < first.0.saturating_add(span) {
            second = edge()?;
        }
        (second.1 > first.1).then_some(Self { first, second })
    }

    /// The cycle count at which the generic counter reaches `ticks` (at or after the second
    /// calibration edge); saturates rather than wrapping.
    pub fn cycles_at(&self, ticks: u64) -> u64 {
        convert(self.first, self.second, ticks)
    }
}

/// [`Calibration::cycles_at`]'s arithmetic: the line through two (ticks, cycles) points.
fn convert(first: (u64, u64), second: (u64, u64), ticks: u64) -> u64 {
    let (ticks_span, cycles_span) = (second.0.saturating_sub(first.0), second.1.saturating_sub(first.1));
    if ticks_span == 0 {
        return second.1;
    }
    let ahead = u128::from(ticks.saturating_sub(second.0)) * u128::from(cycles_span) / u128::from(ticks_span);
    u64::try_from(u128::from(second.1) + ahead).unwrap_or(u64::MAX)
}

/// Tries this many times to catch an edge between two adjacent counter reads.
const EDGE_TRIES: usize = 64;

/// The next generic-counter edge located to the instruction: (the counter's new value, the
/// cycle count at the read that first saw it).
///
/// Each loop pass reads the cycle counter and then the generic counter four times in a row,
/// one instruction apart; when the value changes between two of those adjacent reads, the
/// counter started its new value exactly at the later read's instruction (under `-icount
/// shift=0` instructions are 1 ns apart, and with a counter slower than 1 GHz no edge falls
/// between them otherwise; at 1 GHz every read is an edge). An edge that falls in the loop's
/// compare and branch is not located exactly and is skipped. IRQs are masked meanwhile.
fn edge() -> Option<(u64, u64)> {
    for _ in 0..EDGE_TRIES {
        let cycles: u64;
        let (r0, r1, r2, r3): (u64, u64, u64, u64);
        let irqs = crate::arch::mask_irqs();
        // SAFETY: reads the cycle counter and the generic counter, nothing else; the loop
        // ends when the counter moves, which it does (at the latest after its wrap, decades
        // away), and IRQs are masked for that short time only.
        unsafe {
            core::arch::asm!(
                "mrs {old}, cntpct_el0",
                "2:",
                "mrs {c}, pmccntr_el0",
                "mrs {r0}, cntpct_el0",
                "mrs {r1}, cntpct_el0",
                "mrs {r2}, cntpct_el0",
                "mrs {r3}, cntpct_el0",
                "cmp {r3}, {old}",
                "b.eq 2b",
                old = out(reg) _,
                c = out(reg) cycles,
                r0 = out(reg) r0,
                r1 = out(reg) r1,
                r2 = out(reg) r2,
                r3 = out(reg) r3,
                options(nomem, nostack)
            );
        }
        crate::arch::restore_irqs(irqs);
        if let Some(found) = locate(cycles, [r0, r1, r2, r3]) {
            return Some(found);
        }
    }
    None
}

/// Finds the edge in one pass's reads (`reads[i]` one instruction after `reads[i - 1]`, the
/// first one instruction after the cycle counter read `cycles`): the first adjacent pair
/// that differs gives (new value, cycles at its read).
fn locate(cycles: u64, reads: [u64; 4]) -> Option<(u64, u64)> {
    (1..reads.len()).find(|&i| reads[i] != reads[i - 1]).map(|i| (reads[i], cycles + 1 + i as u64))
}
