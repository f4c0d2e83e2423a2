//! The EL2 physical timer (CNTHP): the core's own one-shot timer, programmed with absolute
//! compare values of the generic counter.

use aarch64_cpu::registers::{CNTHP_CTL_EL2, CNTPCT_EL0, Readable, Writeable};

/// The generic counter now.
#[inline]
pub fn counter() -> u64 {
    // An ISB keeps the read from being hoisted before earlier instructions.
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// The generic counter now, without a barrier: may be read a few instructions early or
/// late, which is fine for timestamps and cheap on the scheduling path.
#[inline]
pub fn counter_unordered() -> u64 {
    CNTPCT_EL0.get()
}

/// Arms the timer to fire when the counter reaches `deadline` (at once if already past).
#[inline]
pub fn arm(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is the EL2 timer's compare register; writing it only changes
    // when this CPU's timer interrupt fires.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {0}", in(reg) deadline, options(nostack, preserves_flags)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Stops the timer (no interrupt until armed again).
#[inline]
pub fn disarm() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::SET);
}
