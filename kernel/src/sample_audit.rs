//! The sampling audit of a periodic latency context: one sample (or one counted overrun) per
//! period since its first deadline, checked each time its samples are drained, so a context
//! that silently stopped sampling is caught rather than reported over fewer samples.

/// How far a context's count (samples plus overruns) may stray from the periods due before
/// the audit calls it a gap: one expiry may be in flight when the count is taken, and a
/// timer firing early by its gravity may be counted before its deadline.
pub const AUDIT_SLACK: u64 = 2;

/// Checks that one periodic context took one sample per period for as long as it ran.
#[derive(Debug, Clone, Copy)]
pub struct SampleAudit {
    /// Its first deadline, in ns of [`rt::now`].
    first_ns: u64,
    period_ns: u64,
    /// Samples plus overruns counted so far.
    counted: u64,
    /// The first disagreement found, `(counted, due)`: reported once per context.
    gap: Option<(u64, u64)>,
}

impl SampleAudit {
    /// An audit of a context whose first deadline is at `first_ns` and whose period is
    /// `period_ns`.
    pub const fn new(first_ns: u64, period_ns: u64) -> Self {
        Self { first_ns, period_ns, counted: 0, gap: None }
    }

    /// Periods whose deadline passed by `now_ns`.
    pub fn due(&self, now_ns: u64) -> u64 {
        match now_ns.checked_sub(self.first_ns) {
            Some(since) => since / self.period_ns.max(1) + 1,
            None => 0,
        }
    }

    /// Adds `taken` (samples plus overruns since the last call) and checks the total against
    /// the periods due by `now_ns`; `Some((counted, due))` the first time they disagree.
    pub fn check(&mut self, taken: u64, now_ns: u64) -> Option<(u64, u64)> {
        self.counted = self.counted.saturating_add(taken);
        let due = self.due(now_ns);
        let off = self.counted.abs_diff(due) > AUDIT_SLACK;
        if off && self.gap.is_none() {
            self.gap = Some((self.counted, due));
            return self.gap;
        }
        None
    }

    /// The first gap found, `(counted, due)`, if any.
    pub const fn gap(&self) -> Option<(u64, u64)> {
        self.gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_accepts_one_sample_per_period_and_the_edges() {
        // First deadline at 2 ms, 1 ms period: by 1.0025 s, 1001 periods were due.
        let mut audit = SampleAudit::new(2_000_000, 1_000_000);
        assert_eq!(audit.due(1_000_000), 0);
        assert_eq!(audit.due(2_000_000), 1);
        assert_eq!(audit.check(999, 1_002_500_000), None);
        assert_eq!(audit.check(1000, 2_002_500_000), None);
        // One in flight, or one counted early by gravity: still fine.
        assert_eq!(audit.check(1002, 3_002_500_000), None);
    }

    #[test]
    fn audit_catches_a_silent_gap_once() {
        let mut audit = SampleAudit::new(0, 1_000_000);
        assert_eq!(audit.check(1000, 999_999_999), None);
        // The next second took only 500 samples: a gap of 500 periods.
        assert_eq!(audit.check(500, 1_999_999_999), Some((1500, 2000)));
        assert_eq!(audit.gap(), Some((1500, 2000)));
        // Reported once; a later second does not report again.
        assert_eq!(audit.check(0, 2_999_999_999), None);
        // Overruns count as periods: a late thread is not a gap.
        let mut late = SampleAudit::new(0, 1_000_000);
        assert_eq!(late.check(900 + 100, 999_999_999), None);
        // More than one per period is as wrong as fewer.
        assert_eq!(SampleAudit::new(0, 1_000_000).check(1010, 999_999_999), Some((1010, 1000)));
    }
}
