//! Latency statistics as EVL's `latmus` reports them: per-interval min/avg/max with
//! overruns, a run summary, and a histogram, plus the `RTH|`/`RTD|`/`RTS|` line formats.

use core::fmt;

/// Histogram buckets: 1000 of the stats' bucket width, then one counting everything from
/// 1000 widths on (so the open range starts at a whole number of µs for any width in ns).
pub const HISTOGRAM_BUCKETS: usize = 1001;

/// The default bucket width: 1 µs.
pub const MICROSECOND_BUCKETS_NS: u32 = 1000;

/// Running statistics over latency samples (nanoseconds; negative = early).
#[derive(Clone)]
pub struct LatencyStats {
    min: i64,
    max: i64,
    sum: i128,
    samples: u64,
    overruns: u64,
    /// The histogram's bucket width, in ns.
    bucket_ns: u32,
    histogram: [u32; HISTOGRAM_BUCKETS],
}

impl Default for LatencyStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyStats {
    /// No samples yet; 1 µs histogram buckets.
    pub const fn new() -> Self {
        Self::with_bucket_ns(MICROSECOND_BUCKETS_NS)
    }

    /// No samples yet; histogram buckets `bucket_ns` wide (at least 1 ns).
    pub const fn with_bucket_ns(bucket_ns: u32) -> Self {
        let bucket_ns = if bucket_ns == 0 { 1 } else { bucket_ns };
        Self { min: i64::MAX, max: i64::MIN, sum: 0, samples: 0, overruns: 0, bucket_ns, histogram: [0; HISTOGRAM_BUCKETS] }
    }

    /// The histogram's bucket width, in ns.
    pub fn bucket_ns(&self) -> u32 {
        self.bucket_ns
    }

    /// The bucket of a latency (negative ones in the first, the open last one beyond).
    fn bucket_of(&self, latency_ns: i64) -> usize {
        let bucket = latency_ns.max(0).unsigned_abs() / u64::from(self.bucket_ns);
        usize::try_from(bucket).unwrap_or(usize::MAX).min(HISTOGRAM_BUCKETS - 1)
    }

    /// Forgets every sample, in place (no 4 KiB temporary).
    pub fn reset(&mut self) {
        self.histogram.fill(0);
        (self.min, self.max, self.sum, self.samples, self.overruns) = (i64::MAX, i64::MIN, 0, 0, 0);
    }

    /// Records one latency sample.
    pub fn record(&mut self, latency_ns: i64) {
        self.min = self.min.min(latency_ns);
        self.max = self.max.max(latency_ns);
        self.sum += i128::from(latency_ns);
        self.samples += 1;
        let bucket = self.bucket_of(latency_ns);
        self.histogram[bucket] += 1;
    }

    /// Counts periods that were missed entirely.
    pub fn record_overruns(&mut self, missed: u64) {
        self.overruns += missed;
    }

    /// Folds another interval into this one.
    pub fn merge(&mut self, other: &Self) {
        if other.samples == 0 {
            self.overruns += other.overruns;
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.samples += other.samples;
        self.overruns += other.overruns;
        if other.bucket_ns == self.bucket_ns {
            for (mine, theirs) in self.histogram.iter_mut().zip(other.histogram.iter()) {
                *mine += theirs;
            }
        } else {
            // Rebinned by each bucket's lower edge.
            for (index, &count) in other.histogram.iter().enumerate().filter(|(_, count)| **count > 0) {
                let lower_ns = i64::try_from(index).unwrap_or(i64::MAX).saturating_mul(i64::from(other.bucket_ns));
                let bucket = self.bucket_of(lower_ns);
                self.histogram[bucket] += count;
            }
        }
    }

    /// Number of samples.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Smallest sample, if any.
    pub fn min(&self) -> Option<i64> {
        (self.samples > 0).then_some(self.min)
    }

    /// Largest sample, if any.
    pub fn max(&self) -> Option<i64> {
        (self.samples > 0).then_some(self.max)
    }

    /// Mean, rounded toward zero, if any.
    pub fn avg(&self) -> Option<i64> {
        (self.samples > 0).then(|| (self.sum / i128::from(self.samples)) as i64)
    }

    /// Missed periods.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// The histogram: bucket `i` counts samples in `[i, i+1)` bucket widths (the last:
    /// `>= i` widths; see [`Self::bucket_ns`]).
    pub fn histogram(&self) -> &[u32; HISTOGRAM_BUCKETS] {
        &self.histogram
    }

    /// Smallest latency (bucket upper bound, in ns) below which `per_mille`/1000 of the
    /// samples fall (990 = p99, 999 = p99.9).
    pub fn percentile_ns(&self, per_mille: u64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let wanted = (per_mille * self.samples).div_ceil(1000);
        let mut seen = 0u64;
        for (i, &count) in self.histogram.iter().enumerate() {
            seen += u64::from(count);
            if seen >= wanted {
                return Some((i as u64 + 1) * u64::from(self.bucket_ns));
            }
        }
        Some(HISTOGRAM_BUCKETS as u64 * u64::from(self.bucket_ns))
    }
}

/// Microseconds with three decimals, as latmus prints them.
struct Micros(i64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let text_len = sign.len() + (abs / 1000).max(1).ilog10() as usize + 1 + 4;
        let pad = f.width().unwrap_or(0).saturating_sub(text_len);
        write!(f, "{:pad$}{sign}{}.{:03}", "", abs / 1000, abs % 1000)
    }
}

/// The header line printed before the `RTD|` lines.
pub const RTH: &str = "RTH|----lat min|----lat avg|----lat max|-overrun|---msw|---lat best|--lat worst";

/// One `RTD|` line: this interval, plus the best/worst seen so far in the run.
pub struct RtdLine<'a> {
    /// The interval just finished.
    pub interval: &'a LatencyStats,
    /// Everything so far, this interval included.
    pub run: &'a LatencyStats,
}

impl fmt::Display for RtdLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.interval;
        write!(
            f,
            "RTD|{:11}|{:11}|{:11}|{:8}|{:6}|{:11}|{:11}",
            Micros(i.min().unwrap_or(0)),
            Micros(i.avg().unwrap_or(0)),
            Micros(i.max().unwrap_or(0)),
            self.run.overruns(),
            0,
            Micros(self.run.min().unwrap_or(0)),
            Micros(self.run.max().unwrap_or(0)),
        )
    }
}

/// The `RTS|` summary line for a whole run of `elapsed_s` out of `planned_s` seconds.
pub struct RtsLine<'a> {
    /// The whole run.
    pub run: &'a LatencyStats,
    /// Seconds actually run.
    pub elapsed_s: u64,
    /// Seconds requested.
    pub planned_s: u64,
}

fn hms(s: u64) -> (u64, u64, u64) {
    (s / 3600, (s / 60) % 60, s % 60)
}

impl fmt::Display for RtsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.run;
        let (eh, em, es) = hms(self.elapsed_s);
        let (ph, pm, ps) = hms(self.planned_s);
        write!(
            f,
            "RTS|{:11}|{:11}|{:11}|{:8}|{:6}|    {eh:02}:{em:02}:{es:02}/{ph:02}:{pm:02}:{ps:02}",
            Micros(r.min().unwrap_or(0)),
            Micros(r.avg().unwrap_or(0)),
            Micros(r.max().unwrap_or(0)),
            r.overruns(),
            0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_avg_max_and_overruns_accumulate() {
        let mut s = LatencyStats::new();
        assert_eq!(s.avg(), None);
        for ns in [1500, 2500, -500, 9000] {
            s.record(ns);
        }
        s.record_overruns(2);
        assert_eq!((s.min(), s.avg(), s.max(), s.samples(), s.overruns()), (Some(-500), Some(3125), Some(9000), 4, 2));
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (LatencyStats::new(), LatencyStats::new(), LatencyStats::new());
        for i in 0..100i64 {
            let ns = (i * 7919) % 20_000 - 1000;
            if i % 3 == 0 { a.record(ns) } else { b.record(ns) }
            all.record(ns);
        }
        a.merge(&b);
        assert_eq!((a.min(), a.avg(), a.max(), a.samples()), (all.min(), all.avg(), all.max(), all.samples()));
        assert_eq!(a.histogram(), all.histogram());
    }

    #[test]
    fn histogram_buckets_are_microseconds_with_an_overflow_bucket() {
        let mut s = LatencyStats::new();
        s.record(999);
        s.record(1000);
        s.record(5_000_000);
        assert_eq!((s.histogram()[0], s.histogram()[1], s.histogram()[HISTOGRAM_BUCKETS - 1]), (1, 1, 1));
        assert_eq!(s.percentile_ns(500), Some(2000));
    }

    #[test]
    fn finer_buckets_split_a_microsecond_and_merge_across_widths() {
        let mut fine = LatencyStats::with_bucket_ns(100);
        for ns in [50, 150, 950, 99_999, 100_000, 7_000_000] {
            fine.record(ns);
        }
        let h = fine.histogram();
        assert_eq!((h[0], h[1], h[9], h[999], h[HISTOGRAM_BUCKETS - 1]), (1, 1, 1, 1, 2));
        assert_eq!(fine.percentile_ns(500), Some(1000));
        let mut coarse = LatencyStats::new();
        coarse.merge(&fine);
        let h = coarse.histogram();
        // The fine open range (>= 100 µs) lands at its lower edge: its samples' values are unknown.
        assert_eq!((h[0], h[99], h[100], h[HISTOGRAM_BUCKETS - 1]), (3, 1, 2, 0));
    }

    #[test]
    fn lines_use_latmus_microsecond_format() {
        let mut s = LatencyStats::new();
        s.record(1234);
        s.record(-56);
        let line = format!("{}", RtdLine { interval: &s, run: &s });
        assert_eq!(line, "RTD|     -0.056|      0.589|      1.234|       0|     0|     -0.056|      1.234");
        let rts = format!("{}", RtsLine { run: &s, elapsed_s: 61, planned_s: 3600 });
        assert!(rts.ends_with("00:01:01/01:00:00"), "{rts}");
        assert_eq!(RTH.len(), line.len());
    }
}
