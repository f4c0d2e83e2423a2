//! SCHED_TP: temporal partitioning, per CPU, as in EVL.
//!
//! A CPU's schedule is a list of windows (minor frames), each giving the CPU to one partition
//! (or to none: a time hole) for a fixed duration; the sum of the durations is the major frame,
//! which repeats from the instant the schedule was started. TP threads run only while the window
//! of their partition is active, FIFO by priority among themselves. Boundaries are computed from
//! the start instant and the window offsets, never from the time a window switch was handled, so
//! a late timer interrupt cannot make the schedule drift. Non-TP threads are unaffected: FIFO/RR
//! threads outrank TP threads at any time, and quota threads run when no TP thread can.
//! Installing a schedule leaves it stopped; a stopped CPU runs no TP thread.

use alloc::vec::Vec;

use super::fifo::PrioQueue;
use crate::error::Error;
use crate::time::{Duration, Instant};

/// Number of partitions per CPU (partition ids 0..TP_PARTITIONS).
pub const TP_PARTITIONS: usize = 8;

/// One window of a time-partitioning schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpWindow {
    /// The partition allowed to run, or `None` for a hole where no TP thread runs.
    pub partition: Option<u8>,
    /// How long the window lasts (non-zero).
    pub duration: Duration,
}

/// The TP class of one CPU: per-partition run queues and the window schedule.
pub(crate) struct TpClass {
    queues: [PrioQueue; TP_PARTITIONS],
    windows: Vec<TpWindow>,
    major_frame: Duration,
    running: Option<Running>,
}

#[derive(Clone, Copy)]
struct Running {
    origin: Instant,
    window: usize,
}

impl TpClass {
    /// No schedule, stopped.
    pub(crate) const fn new() -> Self {
        Self {
            queues: [const { PrioQueue::new() }; TP_PARTITIONS],
            windows: Vec::new(),
            major_frame: Duration::ZERO,
            running: None,
        }
    }

    /// Replaces the schedule (stopped until [`TpClass::start`]).
    pub(crate) fn install(&mut self, windows: &[TpWindow]) -> Result<(), Error> {
        let mut major_frame = 0u64;
        for window in windows {
            if window.partition.is_some_and(|p| usize::from(p) >= TP_PARTITIONS) {
                return Err(Error::InvalidPartition);
            }
            if window.duration.is_zero() {
                return Err(Error::InvalidSchedule);
            }
            major_frame = major_frame.checked_add(window.duration.as_nanos()).ok_or(Error::InvalidSchedule)?;
        }
        if windows.is_empty() {
            return Err(Error::InvalidSchedule);
        }
        self.windows.clear();
        self.windows.extend_from_slice(windows);
        self.major_frame = Duration::from_nanos(major_frame);
        self.running = None;
        Ok(())
    }

    /// Starts the schedule with its first window at `now`; returns the end of that window.
    pub(crate) fn start(&mut self, now: Instant) -> Result<Instant, Error> {
        let first = self.windows.first().ok_or(Error::InvalidSchedule)?;
        self.running = Some(Running { origin: now, window: 0 });
        Ok(now + first.duration)
    }

    /// Stops the schedule: no TP thread runs.
    pub(crate) fn stop(&mut self) {
        self.running = None;
    }

    /// Activates the window containing `position` (a running schedule); returns its end.
    pub(crate) fn advance(&mut self, position: Instant) -> Option<Instant> {
        let running = self.running.as_mut()?;
        let elapsed = position.saturating_duration_since(running.origin).as_nanos();
        let frame_start = running.origin + Duration::from_nanos(elapsed - elapsed % self.major_frame.as_nanos());
        let offset = elapsed % self.major_frame.as_nanos();
        let mut end = Duration::ZERO;
        for (index, window) in self.windows.iter().enumerate() {
            end += window.duration;
            if end.as_nanos() > offset {
                running.window = index;
                return Some(frame_start + end);
            }
        }
        unreachable!("offset is below the major frame, the sum of all windows");
    }

    /// The partition whose window is active, if the schedule runs and the window is no hole.
    pub(crate) fn active_partition(&self) -> Option<u8> {
        self.windows[self.running?.window].partition
    }

    /// The run queue of `partition`.
    pub(crate) fn queue(&mut self, partition: u8) -> &mut PrioQueue {
        &mut self.queues[usize::from(partition)]
    }

    /// The best thread of the active partition.
    pub(crate) fn pick(&self) -> Option<u32> {
        self.queues[usize::from(self.active_partition()?)].first()
    }

    /// Every queued thread with its partition (tests only).
    #[cfg(test)]
    pub(crate) fn queued<'a>(&'a self, links: &'a [crate::list::Link]) -> impl Iterator<Item = (u8, u32)> + 'a {
        self.queues.iter().enumerate().flat_map(move |(p, q)| q.iter(links).map(move |t| (p as u8, t)))
    }

    /// Whether every partition queue is consistent (tests only).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self, links: &[crate::list::Link]) -> bool {
        self.queues.iter().all(|q| q.is_consistent(links))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(partition: Option<u8>, us: u64) -> TpWindow {
        TpWindow { partition, duration: Duration::from_micros(us) }
    }

    fn at_us(us: u64) -> Instant {
        Instant::from_nanos(us * 1_000)
    }

    #[test]
    fn windows_follow_the_major_frame_from_the_start_instant() {
        let mut tp = TpClass::new();
        tp.install(&[window(Some(0), 200), window(None, 100), window(Some(1), 700)]).unwrap();
        assert_eq!(tp.active_partition(), None, "installed but stopped");
        assert_eq!(tp.start(at_us(10)), Ok(at_us(210)));
        assert_eq!(tp.active_partition(), Some(0));
        assert_eq!(tp.advance(at_us(210)), Some(at_us(310)));
        assert_eq!(tp.active_partition(), None);
        assert_eq!(tp.advance(at_us(310)), Some(at_us(1_010)));
        assert_eq!(tp.active_partition(), Some(1));
        // A very late switch lands in the window that contains the instant, on the grid.
        assert_eq!(tp.advance(at_us(3_250)), Some(at_us(3_310)));
        assert_eq!(tp.active_partition(), None);
        tp.stop();
        assert_eq!(tp.active_partition(), None);
        assert_eq!(tp.advance(at_us(4_000)), None);
    }

    #[test]
    fn invalid_schedules_are_refused() {
        let mut tp = TpClass::new();
        assert_eq!(tp.install(&[]), Err(Error::InvalidSchedule));
        assert_eq!(tp.install(&[window(Some(0), 0)]), Err(Error::InvalidSchedule));
        assert_eq!(tp.install(&[window(Some(TP_PARTITIONS as u8), 10)]), Err(Error::InvalidPartition));
        assert_eq!(tp.start(at_us(0)), Err(Error::InvalidSchedule));
    }
}
