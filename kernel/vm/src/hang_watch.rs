//! The guest hang watchdog's rule over the replay log's counters ([`ReplaySnapshot`]).
//!
//! Two ways a guest can stop answering, each with its own limit:
//! - **hung while running**: interrupts are in flight (injected, neither completed nor given
//!   back) and none completes for `limit_ns` — it masked them forever, or it is stuck with
//!   them masked. A guest with nothing in flight (idle in WFI with no timer due) is never
//!   called hung however long it sleeps.
//! - **hung before its first interrupt**: since the guest was (re)entered it has completed
//!   no interrupt at all for `boot_limit_ns`. Linux takes its first timer interrupt early in
//!   `start_kernel`, long before its console or init; a guest that masks interrupts and
//!   spins before that point (or never enables its timer and GIC) has nothing in flight, so
//!   the first rule alone would wait for it forever.

use crate::replay::ReplaySnapshot;

/// What [`HangWatch::tick`] concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The guest completed an interrupt since the last look, or had none to complete.
    Healthy,
    /// Injections are in flight and none completed since the last look: the caller makes
    /// the vCPUs exit (a completion of a hardware-linked interrupt is only seen at a
    /// list-register read-back).
    Stalled,
    /// Injections stayed in flight, none completed, for the watch's whole limit: the guest
    /// no longer takes interrupts (it masked them forever, or it is stuck with them masked).
    Hung,
    /// Since the guest was entered it has not completed a single interrupt for the boot
    /// limit: it hung (or never got as far as taking interrupts) early in its boot.
    SilentSinceBoot,
}

/// The watch over one guest's life: created (or [`reset`](HangWatch::reset)) when the guest
/// is entered, then [`tick`](HangWatch::tick)ed periodically.
#[derive(Clone, Copy, Debug)]
pub struct HangWatch {
    limit_ns: u64,
    boot_limit_ns: u64,
    completed: u64,
    /// Since when nothing was completed while something was in flight (`None`: progress).
    stalled_since: Option<u64>,
    /// When this guest was first looked at and its completion count then (`None`: not yet
    /// looked at since the last reset). The count only grows, so the guest has taken an
    /// interrupt since its entry exactly when the count differs from this one.
    entered: Option<(u64, u64)>,
}

impl HangWatch {
    /// A watch that calls a guest hung after `limit_ns` without a completion while
    /// something is in flight, or after `boot_limit_ns` from its entry without any.
    pub const fn new(limit_ns: u64, boot_limit_ns: u64) -> Self {
        Self { limit_ns, boot_limit_ns, completed: 0, stalled_since: None, entered: None }
    }

    /// Looks at `snapshot` taken at `now_ns`. The first look after [`new`](Self::new) or
    /// [`reset`](Self::reset) is the guest's entry for the boot limit.
    pub fn tick(&mut self, snapshot: &ReplaySnapshot, now_ns: u64) -> Progress {
        let (entered_at, completed_at_entry) = *self.entered.get_or_insert((now_ns, snapshot.completed));
        if snapshot.completed == completed_at_entry && now_ns.saturating_sub(entered_at) >= self.boot_limit_ns {
            return Progress::SilentSinceBoot;
        }
        let progressed = snapshot.completed != self.completed;
        self.completed = snapshot.completed;
        if progressed || snapshot.in_flight() <= 0 {
            self.stalled_since = None;
            return Progress::Healthy;
        }
        let since = *self.stalled_since.get_or_insert(now_ns);
        if now_ns.saturating_sub(since) >= self.limit_ns { Progress::Hung } else { Progress::Stalled }
    }

    /// Forgets the past: a new guest is being entered (the next look is its entry).
    pub fn reset(&mut self) {
        self.stalled_since = None;
        self.entered = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn fires_only_after_its_limit_without_a_completion_while_something_is_in_flight() {
        let mut watch = HangWatch::new(5000 * MS, 20_000 * MS);
        let mut s = ReplaySnapshot { injected: 10, completed: 10, ..ReplaySnapshot::default() };
        // Entered, then the guest's first completion.
        assert_eq!(watch.tick(&s, 0), Progress::Healthy);
        s.injected = 11;
        s.completed = 11;
        assert_eq!(watch.tick(&s, 100 * MS), Progress::Healthy);
        // Idle: nothing in flight, however long.
        assert_eq!(watch.tick(&s, 60_000 * MS), Progress::Healthy);
        // One injection never completed: stalled, then hung at the limit, not before.
        s.injected = 12;
        assert_eq!(watch.tick(&s, 60_000 * MS), Progress::Stalled);
        assert_eq!(watch.tick(&s, 64_999 * MS), Progress::Stalled);
        assert_eq!(watch.tick(&s, 65_000 * MS), Progress::Hung);
        // A completion is progress: the clock starts again.
        s.completed = 12;
        s.injected = 13;
        assert_eq!(watch.tick(&s, 65_100 * MS), Progress::Healthy);
        assert_eq!(watch.tick(&s, 65_200 * MS), Progress::Stalled);
        assert_eq!(watch.tick(&s, 70_199 * MS), Progress::Stalled);
        assert_eq!(watch.tick(&s, 70_200 * MS), Progress::Hung);
        // Given back (requeued) is no longer in flight.
        s.requeued = 1;
        assert_eq!(watch.tick(&s, 70_300 * MS), Progress::Healthy);
    }

    #[test]
    fn a_guest_that_never_completes_an_interrupt_is_silent_after_the_boot_limit() {
        let mut watch = HangWatch::new(5000 * MS, 20_000 * MS);
        // Counters carried over from an earlier guest: the entry is the first look.
        let s = ReplaySnapshot { injected: 500, completed: 500, ..ReplaySnapshot::default() };
        assert_eq!(watch.tick(&s, 3_000 * MS), Progress::Healthy);
        assert_eq!(watch.tick(&s, 22_999 * MS), Progress::Healthy);
        assert_eq!(watch.tick(&s, 23_000 * MS), Progress::SilentSinceBoot);
        // The restart: a new entry, a new boot limit.
        watch.reset();
        assert_eq!(watch.tick(&s, 30_000 * MS), Progress::Healthy);
        assert_eq!(watch.tick(&s, 49_999 * MS), Progress::Healthy);
        assert_eq!(watch.tick(&s, 50_000 * MS), Progress::SilentSinceBoot);
    }

    #[test]
    fn one_completion_after_entry_ends_the_boot_limit_for_good() {
        let mut watch = HangWatch::new(5000 * MS, 20_000 * MS);
        let mut s = ReplaySnapshot { injected: 7, completed: 7, ..ReplaySnapshot::default() };
        assert_eq!(watch.tick(&s, 0), Progress::Healthy);
        s.injected = 8;
        s.completed = 8;
        assert_eq!(watch.tick(&s, 19_000 * MS), Progress::Healthy);
        // Idle (nothing in flight) well past the boot limit: healthy.
        assert_eq!(watch.tick(&s, 600_000 * MS), Progress::Healthy);
        // An interrupt in flight before the first completion is still bounded by the boot
        // limit on a fresh entry.
        watch.reset();
        s.injected = 9;
        assert_eq!(watch.tick(&s, 700_000 * MS), Progress::Stalled);
        assert_eq!(watch.tick(&s, 705_000 * MS), Progress::Hung);
    }
}
