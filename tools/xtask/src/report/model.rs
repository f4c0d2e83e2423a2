//! What a run measured: latency distributions (histograms of 1 µs buckets, 100 ns for the
//! core's oob contexts), the replay log's accounting and the run's settings.

/// A latency histogram with buckets `bucket_ns` wide (1 µs unless made with
/// [`Histogram::with_bucket_ns`]): bucket `i` holds the samples in `[i, i+1)` widths
/// (negative latencies count in bucket 0), `above` those at or beyond `limit_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Samples per bucket, below `limit_us`.
    pub counts: Vec<u64>,
    /// Samples at or above `limit_us` (the open last bucket, or cyclictest's overflows).
    pub above: u64,
    /// Where the open-ended range starts, in µs.
    pub limit_us: u64,
    /// The bucket width, in ns.
    pub bucket_ns: u64,
}

/// A percentile read from a [`Histogram`], at bucket resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// In the bucket starting at this many ns.
    Within(i64),
    /// In the open range: at least this many ns, no upper bound known.
    AtLeast(i64),
}

impl Percentile {
    /// The value in ns (the lower bound of its bucket or range).
    pub fn ns(self) -> i64 {
        match self {
            Percentile::Within(ns) | Percentile::AtLeast(ns) => ns,
        }
    }

    /// Whether the value is only a lower bound (the percentile is in the open range).
    pub fn is_lower_bound(self) -> bool {
        matches!(self, Percentile::AtLeast(_))
    }
}

impl Histogram {
    /// An empty histogram with 1 µs buckets up to `limit_us`.
    pub fn new(limit_us: u64) -> Self {
        Self::with_bucket_ns(limit_us, 1000)
    }

    /// An empty histogram with buckets `bucket_ns` wide (at least 1) up to `limit_us`.
    pub fn with_bucket_ns(limit_us: u64, bucket_ns: u64) -> Self {
        Self { counts: Vec::new(), above: 0, limit_us, bucket_ns: bucket_ns.max(1) }
    }

    /// Adds `count` samples to bucket `bucket` (starting at `bucket` × the width; the open
    /// range from `limit_us` on).
    pub fn add(&mut self, bucket: u64, count: u64) {
        if bucket.saturating_mul(self.bucket_ns) >= self.limit_us.saturating_mul(1000) {
            self.above = self.above.saturating_add(count);
            return;
        }
        let index = usize::try_from(bucket).unwrap_or(usize::MAX);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] = self.counts[index].saturating_add(count);
    }

    /// All samples, the open range included.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(self.above, |sum, &count| sum.saturating_add(count))
    }

    /// The `per_mille`/1000 quantile (e.g. 990 for p99, 999 for p99.9) as the lower bound of
    /// the bucket holding it; `None` for an empty histogram.
    pub fn percentile(&self, per_mille: u32) -> Option<Percentile> {
        let total = u128::from(self.total());
        if total == 0 {
            return None;
        }
        // The smallest rank r with r >= total * q (nearest-rank method), at least 1.
        let rank = (total * u128::from(per_mille.min(1000))).div_ceil(1000).max(1);
        let mut seen = 0u128;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += u128::from(count);
            if seen >= rank {
                return Some(Percentile::Within(self.bucket_start_ns(bucket as u64)));
            }
        }
        Some(Percentile::AtLeast(us_to_ns(self.limit_us)))
    }

    /// Where bucket `bucket` starts, in ns.
    fn bucket_start_ns(&self, bucket: u64) -> i64 {
        i64::try_from(bucket.saturating_mul(self.bucket_ns)).unwrap_or(i64::MAX)
    }

    /// Adds `other`'s samples to these (the open range starts at the lower of both limits;
    /// buckets of another width are rebinned by their lower edge).
    pub fn merge(&mut self, other: &Histogram) {
        let limit = self.limit_us.min(other.limit_us);
        if limit < self.limit_us {
            let mine = std::mem::replace(self, Histogram::with_bucket_ns(limit, self.bucket_ns));
            self.absorb(&mine);
        }
        self.absorb(other);
    }

    fn absorb(&mut self, other: &Histogram) {
        for (bucket, &count) in other.counts.iter().enumerate() {
            if count > 0 {
                let start_ns = (bucket as u64).saturating_mul(other.bucket_ns);
                self.add(start_ns / self.bucket_ns, count);
            }
        }
        self.above = self.above.saturating_add(other.above);
    }
}

fn us_to_ns(us: u64) -> i64 {
    i64::try_from(us).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}

/// One latency distribution's statistics; anything the console did not show is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// The smallest latency, in ns.
    pub min_ns: Option<i64>,
    /// The mean latency, in ns.
    pub avg_ns: Option<i64>,
    /// The largest latency, in ns.
    pub max_ns: Option<i64>,
    /// How many samples were taken.
    pub samples: Option<u64>,
    /// Missed periods (oob only; cyclictest has no such count).
    pub overruns: Option<u64>,
    /// The 1 µs histogram (for the plot, and percentiles when there is no finer one).
    pub histogram: Option<Histogram>,
    /// A finer histogram of the same samples, when the console gave one (the core's oob
    /// contexts: 100 ns buckets); percentiles come from it.
    pub fine_histogram: Option<Histogram>,
}

impl Latency {
    /// The histogram percentiles come from: the finest there is.
    pub fn percentile_histogram(&self) -> Option<&Histogram> {
        self.fine_histogram.as_ref().or(self.histogram.as_ref())
    }

    /// The `per_mille`/1000 percentile from the finest histogram, if there is one.
    pub fn percentile(&self, per_mille: u32) -> Option<Percentile> {
        self.percentile_histogram()?.percentile(per_mille)
    }

    /// Merges several distributions (e.g. one per vCPU): min of the minima, max of the
    /// maxima, mean weighted by samples, histograms added. `None` if `parts` is empty.
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a Latency>) -> Option<Latency> {
        let parts: Vec<&Latency> = parts.into_iter().collect();
        if parts.is_empty() {
            return None;
        }
        let all = |f: fn(&Latency) -> Option<i64>| parts.iter().map(|part| f(part)).collect::<Option<Vec<i64>>>();
        let min_ns = all(|l| l.min_ns).and_then(|v| v.into_iter().min());
        let max_ns = all(|l| l.max_ns).and_then(|v| v.into_iter().max());
        let samples = parts
            .iter()
            .map(|part| part.samples)
            .try_fold(0u64, |sum, n| Some(sum.saturating_add(n?)));
        let avg_ns = match samples {
            Some(total) if total > 0 => parts
                .iter()
                .map(|part| Some(i128::from(part.avg_ns?) * i128::from(part.samples?)))
                .sum::<Option<i128>>()
                .and_then(|sum| i64::try_from(sum / i128::from(total)).ok()),
            _ => None,
        };
        let overruns = parts
            .iter()
            .map(|part| part.overruns)
            .try_fold(0u64, |sum, n| Some(sum.saturating_add(n?)));
        let histogram = merged_histograms(parts.iter().map(|part| part.histogram.as_ref()));
        let fine_histogram = merged_histograms(parts.iter().map(|part| part.fine_histogram.as_ref()));
        Some(Latency { min_ns, avg_ns, max_ns, samples, overruns, histogram, fine_histogram })
    }
}

/// All of `histograms` added up; `None` if any is missing (or there are none).
fn merged_histograms<'a>(histograms: impl Iterator<Item = Option<&'a Histogram>>) -> Option<Histogram> {
    let histograms = histograms.collect::<Option<Vec<_>>>()?;
    let mut merged = (*histograms.first()?).clone();
    histograms[1..].iter().for_each(|histogram| merged.merge(histogram));
    Some(merged)
}

/// One vCPU's in-band latency (cyclictest's thread `cpu`, pinned to that vCPU by `-S`).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuLatency {
    /// The vCPU (cyclictest's thread number).
    pub cpu: u32,
    /// Its statistics.
    pub latency: Latency,
}

/// The core's replay-log accounting, printed at power-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayLog {
    /// Interrupts entered in the log.
    pub logged: u64,
    /// Interrupts replayed into the list registers.
    pub replayed: u64,
    /// Interrupts merged into one already pending.
    pub coalesced: u64,
    /// Interrupts withdrawn before replay.
    pub withdrawn: u64,
    /// The deepest the log got.
    pub max_depth: u64,
    /// Interrupts unaccounted for (should be 0).
    pub lost: u64,
}

/// One restart of the guest, from the core's `guest: restart N …` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRestart {
    /// The restart's number (1 for the first).
    pub number: u64,
    /// Why: `reset` (the guest's PSCI reset, which a Linux panic also ends in) or `watchdog`.
    pub cause: String,
    /// When the guest asked (or the watchdog decided), ms of the core's clock.
    pub at_ms: Option<u64>,
    /// From the request until every vCPU had left the guest, µs.
    pub vcpus_out_us: u64,
    /// Interrupts pending for the dead guest, counted as discarded.
    pub discarded: u64,
    /// Physical activations given back.
    pub released: u64,
    /// From every vCPU out until the guest was reloaded (scrubbed and copied), ms.
    pub reloaded_ms: u64,
    /// From the request until the new guest's first console output, ms (`None` if it never
    /// wrote).
    pub first_output_ms: Option<u64>,
    /// The core's heap in use after the reload, bytes (`None` from a core that did not say):
    /// flat across restarts unless a restart leaks.
    pub core_heap_bytes: Option<u64>,
}

/// One guest code location from the irqs-off hunter (`IRQSOFF|` lines): where Linux held
/// in-band IRQs off while one waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqsOffEntry {
    /// The guest PC.
    pub pc: u64,
    /// `name+0xoff` from the guest's System.map, once symbolized.
    pub symbol: Option<String>,
    /// Samples taken there (IRQs masked, an in-band IRQ waiting).
    pub samples: u64,
    /// The longest window (consecutive such samples) that started there, in ns.
    pub longest_ns: u64,
}

/// One second of the oob thread context, from the core's `RTD|` line (latmus's per-second
/// report): the second's min, avg and max, and the overruns counted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Second {
    /// The second's smallest latency, in ns.
    pub min_ns: i64,
    /// The second's mean latency, in ns.
    pub avg_ns: i64,
    /// The second's largest latency, in ns.
    pub max_ns: i64,
    /// Overruns since the test started (cumulative, as latmus prints them).
    pub overruns: u64,
}

/// One second of one vCPU's cyclictest: its worst latency, from the guest's
/// `CTD|cpu|second|max_us` lines (the guest script folds cyclictest's `-v` samples into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSecond {
    /// The vCPU (cyclictest's thread number).
    pub cpu: u32,
    /// The second since cyclictest started (its cycle number over the cycles per second).
    pub second: u64,
    /// The second's largest latency, in ns.
    pub max_ns: i64,
}

/// The irqs-off hunter's totals, from its summary line (`irqsoff: N samples with IRQs masked
/// and an in-band IRQ waiting, at P PCs (D dropped: table full)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqsOffTotals {
    /// Samples taken with IRQs masked and an in-band IRQ waiting.
    pub samples: u64,
    /// Distinct PCs in the hunter's table.
    pub pcs: u64,
    /// Samples at new PCs that found the table full, so are in no location.
    pub dropped: u64,
}

/// Whether a symbol is Linux's idle path (`cpu_do_idle`, `default_idle_call`,
/// `arch_cpu_idle`, `do_idle`): IRQs masked there wait for the next interrupt, not work.
pub fn is_idle_path(symbol: &str) -> bool {
    let name = symbol.split_once('+').map_or(symbol, |(name, _)| name);
    matches!(name, "cpu_do_idle" | "default_idle_call" | "arch_cpu_idle" | "do_idle" | "cpuidle_idle_call")
}

/// Everything parsed from one run's console.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    /// The core's latency test, oob thread context.
    pub oob_thread: Option<Latency>,
    /// The core's latency test, oob timer-IRQ context.
    pub oob_irq: Option<Latency>,
    /// The guest's synthetic interrupts (sirq), measured by the core: its `sirq:` summary
    /// line and `HSD|      sirq|` histogram, printed at the end of a run with a guest.
    pub oob_sirq: Option<Latency>,
    /// The guest's cyclictest, one entry per vCPU, by vCPU.
    pub inband_per_cpu: Vec<CpuLatency>,
    /// The replay log's accounting.
    pub replay_log: Option<ReplayLog>,
    /// The irqs-off hunter's top locations, longest window first (empty when it did not run).
    pub irqsoff: Vec<IrqsOffEntry>,
    /// The irqs-off hunter's totals (`None` when it did not run or said nothing).
    pub irqsoff_totals: Option<IrqsOffTotals>,
    /// The oob thread context second by second (`RTD|` lines), in order.
    pub oob_thread_per_second: Vec<Second>,
    /// The guest's cyclictest second by second, per vCPU, in the order printed (the guest's word).
    pub inband_per_second: Vec<CpuSecond>,
    /// Whether `oob_thread` was built from the per-second lines alone because the run ended
    /// before the latency test's summary (an interrupted run): no histogram, no sample count.
    pub oob_thread_partial: bool,
    /// The guest's restarts, in order (empty when it never restarted).
    pub guest_restarts: Vec<GuestRestart>,
    /// The channel's round trip (`companion ping`, the guest's figures backed by the core's
    /// echo count; `Err`: why they were not taken); `None` when the guest did not ping.
    pub channel_round_trip: Option<Result<super::channel::RoundTrip, String>>,
    /// The oob latency with the channel quiet and flooded and the flood's losses (the
    /// `channel-flood` script; `Err`: why not read); `None` when the guest did not flood.
    pub channel_flood: Option<Result<super::channel::Flood, String>>,
    /// The background latency test over each boot of a restarted guest, the first boot
    /// first (`Err`: why not read); `None` without restarts or without the test.
    pub restart_windows: Option<Result<super::restart::BootWindows, String>>,
}

impl Measurements {
    /// Names the irqs-off hunter's PCs with `map`.
    pub fn symbolize(&mut self, map: &super::symbols::SystemMap) {
        for entry in &mut self.irqsoff {
            entry.symbol = map.symbolize(entry.pc);
        }
    }

    /// The guest's cyclictest over all vCPUs.
    pub fn inband(&self) -> Option<Latency> {
        Latency::merged(self.inband_per_cpu.iter().map(|cpu| &cpu.latency))
    }

    /// The guest's cyclictest per second, worst over its vCPUs: `(second, max_ns)` by second.
    pub fn inband_max_per_second(&self) -> Vec<(u64, i64)> {
        let mut worst: std::collections::BTreeMap<u64, i64> = std::collections::BTreeMap::new();
        for second in &self.inband_per_second {
            let max = worst.entry(second.second).or_insert(second.max_ns);
            *max = (*max).max(second.max_ns);
        }
        worst.into_iter().collect()
    }

    /// What the console did not show, one line per missing section, for the report.
    pub fn missing(&self, guest: bool, replay_expected: bool) -> Vec<String> {
        let mut missing = Vec::new();
        for (name, latency) in [("oob.thread", &self.oob_thread), ("oob.irq", &self.oob_irq)] {
            match latency {
                Some(_) if name == "oob.thread" && self.oob_thread_partial => missing.push(format!(
                    "oob.thread: partial, from {} per-second RTD| lines (the run ended before the summary: \
                     no histogram, so no percentiles)",
                    self.oob_thread_per_second.len()
                )),
                None => missing.push(format!("{name}: no latency test output (RTS|/HSD| lines)")),
                Some(latency) if latency.histogram.is_none() => {
                    missing.push(format!("{name}: no histogram (HSD| lines), so no percentiles"))
                }
                Some(_) => {}
            }
        }
        if guest {
            if self.inband_per_cpu.is_empty() {
                missing.push("inband: no cyclictest output in the guest".to_owned());
            } else if self.inband_per_cpu.iter().any(|cpu| cpu.latency.histogram.is_none()) {
                missing.push("inband: no cyclictest histogram (-h), so no percentiles".to_owned());
            }
        } else {
            missing.push("inband: no guest (--no-guest)".to_owned());
        }
        if self.replay_log.is_none() && replay_expected {
            missing.push("replay_log: no `replay log:` line (the guest did not power off?)".to_owned());
        }
        match &self.oob_sirq {
            None => missing.push("oob.sirq: not measured yet (key omitted)".to_owned()),
            Some(sirq) if sirq.histogram.is_none() => {
                missing.push("oob.sirq: no histogram (HSD|      sirq| lines), so no percentiles".to_owned())
            }
            Some(_) => {}
        }
        if let Some(Err(why)) = &self.channel_round_trip {
            missing.push(format!("channel.round_trip: ignored: {why}"));
        }
        if let Some(Err(why)) = &self.channel_flood {
            missing.push(format!("channel.flood: {why}"));
        }
        if let Some(Err(why)) = &self.restart_windows {
            missing.push(format!("guest.boot_windows: {why}"));
        }
        missing
    }
}

/// How the run was set up.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run's name (its directory under `target/report/`).
    pub id: String,
    /// The QEMU profile.
    pub profile: String,
    /// The board the core was built for.
    pub board: String,
    /// The GIC version from the profile's machine (`v2`, `v3`), if it says.
    pub gic: Option<String>,
    /// The machine's CPUs.
    pub cpus: u32,
    /// The load next to the guest's cyclictest: `idle`, `grinder` or `neighbour` (`idle`
    /// without a guest; with `--guest-append`, its `guest.load=`, else `idle`).
    pub load: String,
    /// The latency test's planned duration, in seconds.
    pub duration_s: u64,
    /// QEMU's name and version.
    pub qemu: String,
    /// The guest kernel's file name (`None` for `--no-guest`).
    pub guest_kernel: Option<String>,
    /// Whether QEMU ran with `-icount`.
    pub icount: bool,
    /// The latency test's period, in µs.
    pub period_us: u64,
    /// The irqs-off hunter's sampling period, in µs (`None`: the hunter was off).
    pub irqsoff_period_us: Option<u64>,
    /// The user's label for the run (`--tag`).
    pub tag: Option<String>,
    /// When each of the core's per-second `RTD|` lines reached the host, in ms since QEMU
    /// started (empty when not timed): the host time the latency test's virtual seconds took.
    pub rtd_arrivals_ms: Vec<u64>,
    /// The core's git revision and the host that ran QEMU.
    pub provenance: super::provenance::Provenance,
}

impl RunInfo {
    /// How QEMU kept time: `icount` (`-icount`, virtual time counts instructions) or `tcg`
    /// (plain TCG, virtual time follows the host's clock).
    pub fn mode(&self) -> &'static str {
        if self.icount { "icount" } else { "tcg" }
    }

    /// The samples each oob context should take over the planned duration.
    pub fn expected_samples(&self) -> u64 {
        self.duration_s.saturating_mul(1_000_000) / self.period_us.max(1)
    }
}

/// How far host time fell behind the latency test's virtual time, from the arrival times of
/// its per-second `RTD|` lines: `None` when they kept pace (the seconds between the first and
/// the last line took at most 25 % more host time, and no two lines came 2 s or more apart),
/// else what they show. Under plain TCG virtual time follows the host's clock, so a second
/// that takes longer to report means the vCPU printing it was not running.
pub fn wall_clock_behind(arrivals_ms: &[u64]) -> Option<String> {
    let (&first, &last) = (arrivals_ms.first()?, arrivals_ms.last()?);
    let virtual_ms = u64::try_from(arrivals_ms.len() - 1).unwrap_or(u64::MAX).saturating_mul(1000);
    if virtual_ms == 0 {
        return None;
    }
    let wall_ms = last.saturating_sub(first);
    let longest_gap_ms = arrivals_ms.windows(2).map(|pair| pair[1].saturating_sub(pair[0])).max().unwrap_or(0);
    let behind = wall_ms.saturating_mul(4) > virtual_ms.saturating_mul(5) || longest_gap_ms >= 2000;
    behind.then(|| {
        format!(
            "{} virtual s took {:.1} s of host time, up to {:.1} s between per-second reports",
            virtual_ms / 1000,
            wall_ms as f64 / 1000.0,
            longest_gap_ms as f64 / 1000.0
        )
    })
}

/// Why a run's oob figures measure the host rather than the core, if they do: under plain
/// TCG the host's scheduler decides when QEMU's vCPU threads run, and a starved vCPU shows
/// as overruns (periods missed), samples missing against the planned count, a worst case
/// beyond a whole period, or host time falling behind the test's virtual seconds
/// ([`wall_clock_behind`]). Under `-icount` virtual time only advances as instructions run,
/// so none of this applies. `None` when the figures can stand as results.
pub fn host_dominated(run: &RunInfo, measurements: &Measurements) -> Option<String> {
    if run.icount {
        return None;
    }
    let thread = measurements.oob_thread.as_ref()?;
    let samples = thread.samples.unwrap_or(0);
    let expected = run.expected_samples();
    let overruns = thread.overruns.unwrap_or(0);
    let period_ns = i64::try_from(run.period_us.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut signs = Vec::new();
    // More than 0.1 % of the periods missed.
    if overruns.saturating_mul(1000) > samples.max(1) {
        signs.push(format!("{overruns} overruns"));
    }
    // Fewer than 99 % of the planned samples.
    if expected > 0 && samples.saturating_mul(100) < expected.saturating_mul(99) {
        signs.push(format!("{samples} of {expected} samples"));
    }
    if thread.max_ns.is_some_and(|max| max >= period_ns) {
        signs.push(format!("a worst case beyond the {} us period", run.period_us));
    }
    signs.extend(wall_clock_behind(&run.rtd_arrivals_ms));
    (!signs.is_empty()).then(|| {
        format!(
            "NOT A RESULT: under plain TCG these figures measure the host's scheduling ({}); \
             rerun with --mode icount for the core's",
            signs.join(", ")
        )
    })
}

/// The GIC version named in a QEMU `-machine` value (`gic-version=3` → `v3`).
pub fn gic_of_machine(machine: &str) -> Option<String> {
    machine
        .split(',')
        .find_map(|option| option.strip_prefix("gic-version="))
        .map(|version| format!("v{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(limit_us: u64, buckets: &[(u64, u64)]) -> Histogram {
        let mut histogram = Histogram::new(limit_us);
        buckets.iter().for_each(|&(bucket, count)| histogram.add(bucket, count));
        histogram
    }

    #[test]
    fn percentiles_from_a_histogram() {
        // 1000 samples: 989 at 3 µs, 10 at 40 µs, 1 at 700 µs.
        let h = histogram(999, &[(3, 989), (40, 10), (700, 1)]);
        assert_eq!(h.total(), 1000);
        assert_eq!(h.percentile(500), Some(Percentile::Within(3_000)));
        assert_eq!(h.percentile(990), Some(Percentile::Within(40_000)));
        assert_eq!(h.percentile(999), Some(Percentile::Within(40_000)));
        assert_eq!(h.percentile(1000), Some(Percentile::Within(700_000)));
        assert_eq!(Histogram::new(999).percentile(990), None);
    }

    #[test]
    fn percentile_in_the_open_range_is_a_lower_bound() {
        let h = histogram(1000, &[(5, 90), (1000, 10)]);
        assert_eq!(h.above, 10);
        let p99 = h.percentile(990).unwrap();
        assert_eq!(p99, Percentile::AtLeast(1_000_000));
        assert!(p99.is_lower_bound());
        assert_eq!(h.percentile(900), Some(Percentile::Within(5_000)));
    }

    #[test]
    fn merging_histograms_adds_and_keeps_the_lower_limit() {
        let mut a = histogram(1000, &[(1, 2), (999, 1), (1200, 3)]);
        a.merge(&histogram(999, &[(1, 1), (999, 4)]));
        assert_eq!(a.limit_us, 999);
        assert_eq!(a.counts[1], 3);
        assert_eq!(a.above, 3 + 1 + 4);
        assert_eq!(a.total(), 11);
    }

    #[test]
    fn merging_latencies_weights_the_mean() {
        let cpu = |min, avg, max, samples, buckets: &[(u64, u64)]| Latency {
            min_ns: Some(min),
            avg_ns: Some(avg),
            max_ns: Some(max),
            samples: Some(samples),
            overruns: None,
            histogram: Some(histogram(1000, buckets)),
            fine_histogram: None,
        };
        let a = cpu(10_000, 20_000, 90_000, 100, &[(20, 100)]);
        let b = cpu(5_000, 50_000, 60_000, 300, &[(50, 300)]);
        let merged = Latency::merged([&a, &b]).unwrap();
        assert_eq!(merged.min_ns, Some(5_000));
        assert_eq!(merged.max_ns, Some(90_000));
        assert_eq!(merged.avg_ns, Some(42_500));
        assert_eq!(merged.samples, Some(400));
        assert_eq!(merged.overruns, None);
        assert_eq!(merged.histogram.as_ref().unwrap().total(), 400);
        assert_eq!(merged.percentile(990), Some(Percentile::Within(50_000)));
        assert_eq!(Latency::merged([]), None);
    }

    #[test]
    fn host_time_behind_virtual_time() {
        // One line a second: in pace.
        assert_eq!(wall_clock_behind(&[0, 1_000, 2_000, 3_000]), None);
        // 3 virtual seconds in 3.7 s of host time: within 25 %, no gap of 2 s.
        assert_eq!(wall_clock_behind(&[0, 1_900, 2_500, 3_700]), None);
        // 3 s in 4 s: too slow.
        let slow = wall_clock_behind(&[0, 1_300, 2_600, 4_000]).expect("behind");
        assert_eq!(slow, "3 virtual s took 4.0 s of host time, up to 1.4 s between per-second reports");
        // A 2 s gap, even when the total keeps pace (the next lines arriving in a burst).
        let gap = wall_clock_behind(&[0, 100, 200, 2_600, 2_700, 2_800, 6_000]).expect("a gap");
        assert!(gap.contains("6 virtual s took 6.0 s") && gap.contains("up to 3.2 s"), "{gap}");
        assert!(wall_clock_behind(&[0, 1_000, 1_900, 3_000]).is_none());
        // Fewer than two lines: nothing to compare.
        assert_eq!(wall_clock_behind(&[]), None);
        assert_eq!(wall_clock_behind(&[5_000]), None);
    }

    #[test]
    fn gic_version_from_the_machine() {
        assert_eq!(gic_of_machine("virt,virtualization=on,gic-version=3").as_deref(), Some("v3"));
        assert_eq!(gic_of_machine("raspi4b"), None);
    }
}
