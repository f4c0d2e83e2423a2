//! Min/avg/max accumulators for the pipeline's delays (nanoseconds).

/// Running min/avg/max of a delay in nanoseconds. Constant size, no allocation, saturating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayStats {
    count: u64,
    min: u64,
    max: u64,
    sum: u64,
}

impl Default for DelayStats {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayStats {
    /// No samples yet.
    pub const fn new() -> Self {
        Self {
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, ns: u64) {
        self.count = self.count.saturating_add(1);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum = self.sum.saturating_add(ns);
    }

    /// Adds the delay from `from` to `to`; a clock that went backwards counts as 0.
    pub fn record_between(&mut self, from: u64, to: u64) {
        self.record(to.saturating_sub(from));
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Number of samples.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Smallest sample, if any.
    pub const fn min(&self) -> Option<u64> {
        if self.count == 0 {
            None
        } else {
            Some(self.min)
        }
    }

    /// Largest sample, if any.
    pub const fn max(&self) -> Option<u64> {
        if self.count == 0 {
            None
        } else {
            Some(self.max)
        }
    }

    /// Mean sample (rounded down), if any.
    pub const fn avg(&self) -> Option<u64> {
        self.sum.checked_div(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_avg_max() {
        let mut s = DelayStats::new();
        assert_eq!((s.min(), s.avg(), s.max()), (None, None, None));
        s.record(10);
        s.record(30);
        s.record_between(100, 120);
        s.record_between(100, 50);
        assert_eq!(
            (s.min(), s.avg(), s.max(), s.count()),
            (Some(0), Some(15), Some(30), 4)
        );
        let mut t = DelayStats::new();
        t.record(1000);
        t.merge(&s);
        assert_eq!((t.min(), t.max(), t.count()), (Some(0), Some(1000), 5));
    }
}
