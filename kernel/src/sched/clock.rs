//! The monotonic clock of the oob core: the generic counter converted exactly to
//! nanoseconds (see [`crate::clock::CounterFrequency`]).
//!
//! When the frequency divides 10^9 (1 GHz, 500 MHz, 62.5 MHz...), a tick is a whole number of
//! nanoseconds and both conversions are one multiplication or division by that number, which
//! [`init`] precomputes: the timer paths read the clock and program deadlines on every
//! wake-up. Other frequencies take the exact general conversion.

use core::sync::atomic::{AtomicU64, Ordering};

use oob::Instant;

use crate::clock::{CounterFrequency, NS_PER_SEC};
use crate::hwtimer;

static HZ: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds per tick when the frequency divides 10^9 exactly, else 0 (general conversion).
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);

/// Sets the counter frequency. Called once by [`super::init`].
pub(crate) fn init(frequency: CounterFrequency) {
    let hz = frequency.hz();
    HZ.store(hz, Ordering::Relaxed);
    let whole = if NS_PER_SEC.is_multiple_of(hz) { NS_PER_SEC / hz } else { 0 };
    NS_PER_TICK.store(whole, Ordering::Relaxed);
}

fn frequency() -> Option<CounterFrequency> {
    CounterFrequency::new(HZ.load(Ordering::Relaxed))
}

/// Now, in nanoseconds of the generic counter since it started.
#[inline]
pub fn now() -> Instant {
    ticks_to_instant(hwtimer::counter())
}

/// [`now`] without the barrier that keeps the counter read after earlier instructions: for
/// the start of an interrupt handler, where the exception entry already synchronized.
#[inline]
pub fn now_unordered() -> Instant {
    ticks_to_instant(hwtimer::counter_unordered())
}

/// The instant a counter value stands for.
#[inline]
pub fn ticks_to_instant(ticks: u64) -> Instant {
    match NS_PER_TICK.load(Ordering::Relaxed) {
        // 1 GHz: ticks are nanoseconds.
        1 => Instant::from_nanos(ticks),
        // Whole nanoseconds per tick: exact, saturating like the general conversion.
        0 => ticks_to_instant_general(ticks),
        ns_per_tick => Instant::from_nanos(ticks.saturating_mul(ns_per_tick)),
    }
}

/// [`ticks_to_instant`] for any frequency (out of line: not the common case).
#[inline(never)]
fn ticks_to_instant_general(ticks: u64) -> Instant {
    Instant::from_nanos(frequency().map_or(0, |f| f.ticks_to_ns(ticks)))
}

/// The first counter value at or after `instant` (a timer never fires early).
#[inline]
pub fn to_ticks(instant: Instant) -> u64 {
    match NS_PER_TICK.load(Ordering::Relaxed) {
        1 => instant.as_nanos(),
        0 => to_ticks_general(instant),
        ns_per_tick => instant.as_nanos().div_ceil(ns_per_tick),
    }
}

/// [`to_ticks`] for any frequency (out of line: not the common case).
#[inline(never)]
fn to_ticks_general(instant: Instant) -> u64 {
    frequency().map_or(u64::MAX, |f| f.ns_to_ticks(instant.as_nanos()))
}
