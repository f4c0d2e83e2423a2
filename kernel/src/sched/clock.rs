//! The monotonic clock of the oob core: the generic counter converted exactly to
//! nanoseconds (see [`crate::clock::CounterFrequency`]).

use core::sync::atomic::{AtomicU64, Ordering};

use oob::Instant;

use crate::clock::CounterFrequency;
use crate::hwtimer;

static HZ: AtomicU64 = AtomicU64::new(0);

/// Sets the counter frequency. Called once by [`super::init`].
pub(crate) fn init(frequency: CounterFrequency) {
    HZ.store(frequency.hz(), Ordering::Relaxed);
}

fn frequency() -> Option<CounterFrequency> {
    CounterFrequency::new(HZ.load(Ordering::Relaxed))
}

/// Now, in nanoseconds of the generic counter since it started.
pub fn now() -> Instant {
    ticks_to_instant(hwtimer::counter())
}

/// The instant a counter value stands for.
pub fn ticks_to_instant(ticks: u64) -> Instant {
    Instant::from_nanos(frequency().map_or(0, |f| f.ticks_to_ns(ticks)))
}

/// The first counter value at or after `instant` (a timer never fires early).
pub fn to_ticks(instant: Instant) -> u64 {
    frequency().map_or(u64::MAX, |f| f.ns_to_ticks(instant.as_nanos()))
}
