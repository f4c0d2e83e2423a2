//! SCHED_RR: FIFO with a per-thread time slice (EVL's per-thread quantum).
//!
//! Round-robin threads live in the FIFO queues at their priority. While one runs, the CPU time
//! charged to it is taken from its slice; the core arms a slice timer for the remainder when it
//! is switched in. When the slice is used up the thread moves to the tail of its level (a no-op
//! when it is alone there) and gets a full slice again. A preempted thread keeps what is left
//! of its slice; a thread that blocks gets a full slice when it wakes up (unless woken before it
//! was even switched out: then it just continues its turn). The slice applies only
//! while the thread runs at its own scheduling parameters, not while boosted by a mutex.

use crate::time::Duration;

/// The quantum of a round-robin thread and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeSlice {
    quantum: Duration,
    left: Duration,
}

impl TimeSlice {
    /// A full slice of `quantum` (non-zero).
    pub(crate) const fn new(quantum: Duration) -> Self {
        Self { quantum, left: quantum }
    }

    /// Takes `elapsed` CPU time from the slice; returns whether it is now used up.
    pub(crate) fn charge(&mut self, elapsed: Duration) -> bool {
        self.left -= elapsed;
        self.left.is_zero()
    }

    /// What is left of the slice.
    pub(crate) const fn left(&self) -> Duration {
        self.left
    }

    /// Starts a full slice.
    pub(crate) fn refill(&mut self) {
        self.left = self.quantum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_runs_out_after_exactly_the_quantum() {
        let mut slice = TimeSlice::new(Duration::from_micros(100));
        assert!(!slice.charge(Duration::from_micros(40)));
        assert_eq!(slice.left(), Duration::from_micros(60));
        assert!(slice.charge(Duration::from_micros(60)));
        slice.refill();
        assert_eq!(slice.left(), Duration::from_micros(100));
        assert!(slice.charge(Duration::from_micros(500)), "overcharge saturates at empty");
    }
}
