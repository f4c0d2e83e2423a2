//! Parsing a run's console: the core's latency test (`RTT|`, `RTS|`, `HSD|`, the `latmus:`
//! totals), the core's synthetic-interrupt latency (the `sirq:` summary and `HSD|` lines of
//! context `sirq`), the guest's cyclictest (`T:` summaries and its `-h` histogram) and the replay
//! log's accounting. Lines may carry the core's log prefix or `\r`; anything unrecognised
//! is skipped, and malformed numbers make a line count as absent, never a panic.

use std::sync::LazyLock;

use regex::Regex;

use crate::verdict::{self, Source};

use super::model::{CpuLatency, CpuSecond, Histogram, IrqsOffEntry, IrqsOffTotals, Latency, Measurements, ReplayLog, Second, GuestRestart};

/// The bucket of the core's histograms that counts everything from there on (the core's
/// `HISTOGRAM_BUCKETS - 1`): the open range starts at 1000 bucket widths.
pub const OPEN_BUCKET: u64 = 1000;

/// The bucket width an `HSH|` header names: `bucket(us)` (latmus's own) or `bucket(100ns)`.
fn bucket_width_ns(header: &str) -> Option<u64> {
    let (_, rest) = header.split_once("bucket(")?;
    let (unit, _) = rest.split_once(')')?;
    if unit == "us" {
        return Some(1000);
    }
    unit.strip_suffix("ns")?.parse().ok().filter(|&ns| ns > 0)
}

static LATMUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"latmus: (\d+) thread samples, (\d+) irq samples, (\d+) \+ (\d+) overruns").expect("valid regex")
});
static SIRQ: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"sirq: (\d+) samples, min (-?\d+) ns, avg (-?\d+) ns, max (-?\d+) ns").expect("valid regex")
});
static REPLAY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"replay log: logged (\d+), replayed (\d+), coalesced (\d+), withdrawn (\d+), max depth (\d+), lost (\d+)",
    )
    .expect("valid regex")
});
static RESTART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"guest: restart (\d+) \((\w+)\): vCPUs out in (\d+) us, (\d+) interrupts discarded, (\d+) physical activations given back, guest reloaded in (\d+) ms(?:, core heap (\d+) bytes in use)?",
    )
    .expect("valid regex")
});
static RESTART_OUTPUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"guest: restart (\d+): cause \w+, at (\d+) ms, first guest console output (\d+) ms later").expect("valid regex")
});
static IRQSOFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^IRQSOFF\|\s*pc 0x([0-9a-fA-F]{1,16}) samples (\d+) longest_ns (\d+)").expect("valid regex")
});
static IRQSOFF_TOTALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"irqsoff: (\d+) samples with IRQs masked .*, at (\d+) PCs \((\d+) dropped").expect("valid regex")
});
static CYCLIC_T: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"T:\s*(\d+)\s+\(\s*\d+\)\s+P:\s*\d+\s+I:\s*\d+\s+C:\s*(\d+)\s+Min:\s*(-?\d+)\s+Act:\s*-?\d+\s+Avg:\s*(-?\d+)\s+Max:\s*(-?\d+)",
    )
    .expect("valid regex")
});

/// The `RTS|` summary: min, avg, max (ns) and overruns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rts {
    min_ns: i64,
    avg_ns: i64,
    max_ns: i64,
    overruns: u64,
}

/// One oob context while parsing.
#[derive(Debug, Default)]
struct OobPart {
    rts: Option<Rts>,
    histogram: Option<Histogram>,
    /// The histogram at the console's own bucket width, when finer than 1 µs.
    fine_histogram: Option<Histogram>,
    samples: Option<u64>,
    overruns: Option<u64>,
}

impl OobPart {
    fn finish(self) -> Option<Latency> {
        if self.rts.is_none() && self.histogram.is_none() && self.samples.is_none() {
            return None;
        }
        let samples = self.samples.or_else(|| self.histogram.as_ref().map(Histogram::total));
        Some(Latency {
            min_ns: self.rts.map(|rts| rts.min_ns),
            avg_ns: self.rts.map(|rts| rts.avg_ns),
            max_ns: self.rts.map(|rts| rts.max_ns),
            samples,
            overruns: self.overruns.or(self.rts.map(|rts| rts.overruns)),
            histogram: self.histogram,
            fine_histogram: self.fine_histogram,
        })
    }
}

/// cyclictest's per-thread data while parsing.
#[derive(Debug, Default, Clone)]
struct Thread {
    /// From the `T:` line: cycles, min, avg, max (µs).
    summary: Option<(u64, i64, i64, i64)>,
    histogram: Option<Histogram>,
    total: Option<u64>,
    min: Option<i64>,
    avg: Option<i64>,
    max: Option<i64>,
    overflows: Option<u64>,
}

impl Thread {
    fn finish(self) -> Latency {
        let summary = self.summary;
        let from_histogram = match (self.total, self.overflows) {
            (Some(total), Some(overflows)) => Some(total.saturating_add(overflows)),
            _ => self.histogram.as_ref().map(Histogram::total),
        };
        let mut histogram = self.histogram;
        if let (Some(histogram), Some(overflows)) = (histogram.as_mut(), self.overflows) {
            histogram.above = overflows;
        }
        let us = |value: i64| value.saturating_mul(1000);
        Latency {
            min_ns: self.min.or(summary.map(|s| s.1)).map(us),
            avg_ns: self.avg.or(summary.map(|s| s.2)).map(us),
            max_ns: self.max.or(summary.map(|s| s.3)).map(us),
            samples: from_histogram.or(summary.map(|s| s.0)),
            overruns: None,
            histogram,
            fine_histogram: None,
        }
    }
}

/// Parses a decimal µs value with up to 3 decimals (`-4.000`, `5681.136`) into ns.
fn micros_to_ns(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
    let ns = whole.checked_mul(1000)?.checked_add(fraction)?;
    Some(if negative { -ns } else { ns })
}

/// `RTS|     -4.000|     67.028|   5681.136|      45|     0|    00:00:05/00:00:05`.
fn parse_rts(rest: &str) -> Option<Rts> {
    let fields: Vec<&str> = rest.split('|').collect();
    if fields.len() < 4 {
        return None;
    }
    Some(Rts {
        min_ns: micros_to_ns(fields[0])?,
        avg_ns: micros_to_ns(fields[1])?,
        max_ns: micros_to_ns(fields[2])?,
        overruns: fields[3].trim().parse().ok()?,
    })
}

/// `CTD|0|3|29`: one vCPU's cyclictest, one second, its max in µs (the guest script's
/// fold of cyclictest's `-v` samples).
fn parse_ctd(rest: &str) -> Option<CpuSecond> {
    let mut fields = rest.split('|').map(str::trim);
    let cpu = fields.next()?.parse().ok()?;
    let second = fields.next()?.parse().ok()?;
    let max_us: i64 = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(CpuSecond { cpu, second, max_ns: max_us.checked_mul(1000)? })
}

/// `HSD|    thread|           3|       120`: context, bucket (µs), samples.
fn parse_hsd(rest: &str) -> Option<(&str, u64, u64)> {
    let mut fields = rest.split('|').map(str::trim);
    let context = fields.next()?;
    let bucket = fields.next()?.parse().ok()?;
    let count = fields.next()?.parse().ok()?;
    Some((context, bucket, count))
}

/// The numbers after a cyclictest footer label (`# Max Latencies: 19344 19725`).
fn footer_numbers<T: std::str::FromStr>(rest: &str) -> Vec<Option<T>> {
    rest.split_whitespace().map(|word| word.parse().ok()).collect()
}

/// The marker lines around cyclictest's `--json` output in the guest's console.
pub const CYCLICTEST_JSON_BEGIN: &str = "guest: cyclictest json begin";
/// See [`CYCLICTEST_JSON_BEGIN`].
pub const CYCLICTEST_JSON_END: &str = "guest: cyclictest json end";

/// cyclictest's own `--json` output as the guest printed it between its markers (the guest's
/// word, as every in-band figure), or `None` when the console has none or it is cut short.
pub fn cyclictest_json(console: &str) -> Option<String> {
    let mut lines = console.lines().map(|line| verdict::classify(line.trim_end_matches('\r')).1);
    lines.by_ref().find(|line| *line == CYCLICTEST_JSON_BEGIN)?;
    let mut json = String::new();
    for line in lines {
        if line == CYCLICTEST_JSON_END {
            return Some(json);
        }
        json.push_str(line);
        json.push('\n');
    }
    None
}

/// Parses the console of a run under the core: the core's figures from its own lines only,
/// the guest's (cyclictest) from the lines the core marked as the guest's only, so nothing
/// the guest prints can stand in for the core's figures (see [`crate::verdict`]).
pub fn parse(console: &str) -> Measurements {
    Measurements {
        channel_round_trip: super::channel::round_trip(console),
        channel_flood: super::channel::flood(console),
        restart_windows: super::restart::boot_windows(console),
        ..parse_lines(console.lines().map(verdict::classify))
    }
}

/// Parses the console of a guest booted without the core (the baseline): every line is the
/// guest's.
pub fn parse_bare_guest(console: &str) -> Measurements {
    parse_lines(console.lines().map(|line| (Source::Guest, line)))
}

fn parse_lines<'a>(lines: impl Iterator<Item = (Source, &'a str)>) -> Measurements {
    let mut thread = OobPart::default();
    let mut irq = OobPart::default();
    let mut sirq = OobPart::default();
    let mut in_irq_context = false;
    let mut threads: Vec<Thread> = Vec::new();
    let mut in_cyclic_histogram = false;
    let mut replay: Option<ReplayLog> = None;
    let mut irqsoff: Vec<IrqsOffEntry> = Vec::new();
    let mut seconds: Vec<Second> = Vec::new();
    let mut inband_seconds: Vec<CpuSecond> = Vec::new();
    let mut irqsoff_totals: Option<IrqsOffTotals> = None;
    let mut guest_restarts: Vec<GuestRestart> = Vec::new();
    // The width the last `HSH|` header named (latmus's own 1 µs before any).
    let mut bucket_ns = 1000u64;

    for (source, raw) in lines {
        let line = raw.trim_end_matches('\r');
        if source == Source::Guest {
            if let Some(second) = line.strip_prefix("CTD|").and_then(parse_ctd) {
                inband_seconds.push(second);
                continue;
            }
            parse_guest_line(line, &mut threads, &mut in_cyclic_histogram);
            continue;
        }
        if let Some(rest) = line.strip_prefix("RTT|") {
            in_irq_context = rest.contains("timer-IRQ context");
            continue;
        }
        if let Some(rest) = line.strip_prefix("RTD|") {
            // latmus prints the per-second lines for the thread context only.
            if let Some(rts) = parse_rts(rest).filter(|_| !in_irq_context) {
                seconds.push(Second { min_ns: rts.min_ns, avg_ns: rts.avg_ns, max_ns: rts.max_ns, overruns: rts.overruns });
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("RTS|") {
            if let Some(rts) = parse_rts(rest) {
                let part = if in_irq_context { &mut irq } else { &mut thread };
                part.rts = Some(rts);
            }
            continue;
        }
        if line.starts_with("HSH|") {
            bucket_ns = bucket_width_ns(line).unwrap_or(1000);
            continue;
        }
        if let Some(rest) = line.strip_prefix("HSD|") {
            if let Some((context, bucket, count)) = parse_hsd(rest) {
                let part = match context {
                    "thread" => &mut thread,
                    "irq" => &mut irq,
                    "sirq" => &mut sirq,
                    _ => continue,
                };
                // The open range starts at OPEN_BUCKET widths; a 1 µs view for the plot, the
                // console's own buckets for the percentiles when finer.
                let limit_us = OPEN_BUCKET * bucket_ns / 1000;
                let start_ns = bucket.saturating_mul(bucket_ns);
                part.histogram.get_or_insert_with(|| Histogram::new(limit_us)).add(start_ns / 1000, count);
                if bucket_ns < 1000 {
                    part.fine_histogram
                        .get_or_insert_with(|| Histogram::with_bucket_ns(limit_us, bucket_ns))
                        .add(bucket, count);
                }
            }
            continue;
        }
        if let Some(caps) = RESTART.captures(line) {
            let number = |i: usize| caps[i].parse::<u64>().ok();
            if let (Some(n), Some(out), Some(discarded), Some(released), Some(reloaded)) =
                (number(1), number(3), number(4), number(5), number(6))
            {
                guest_restarts.push(GuestRestart {
                    number: n,
                    cause: caps[2].to_owned(),
                    at_ms: None,
                    vcpus_out_us: out,
                    discarded,
                    released,
                    reloaded_ms: reloaded,
                    first_output_ms: None,
                    core_heap_bytes: caps.get(7).and_then(|heap| heap.as_str().parse().ok()),
                });
            }
            continue;
        }
        if let Some(caps) = RESTART_OUTPUT.captures(line) {
            let number = |i: usize| caps[i].parse::<u64>().ok();
            if let Some(restart) = guest_restarts.iter_mut().rev().find(|r| Some(r.number) == number(1)) {
                restart.at_ms = number(2);
                restart.first_output_ms = number(3);
            }
            continue;
        }
        if let Some(caps) = LATMUS.captures(line) {
            let number = |i: usize| caps[i].parse::<u64>().ok();
            thread.samples = number(1);
            irq.samples = number(2);
            thread.overruns = number(3);
            irq.overruns = number(4);
            continue;
        }
        if let Some(caps) = SIRQ.captures(line) {
            // `sirq: 512 samples, min 12000 ns, avg 35000 ns, max 950000 ns`: no overruns.
            let parsed = (|| {
                Some((
                    caps[1].parse::<u64>().ok()?,
                    Rts {
                        min_ns: caps[2].parse().ok()?,
                        avg_ns: caps[3].parse().ok()?,
                        max_ns: caps[4].parse().ok()?,
                        overruns: 0,
                    },
                ))
            })();
            if let Some((samples, summary)) = parsed {
                sirq.samples = Some(samples);
                sirq.rts = Some(summary);
            }
            continue;
        }
        if let Some(caps) = IRQSOFF_TOTALS.captures(line) {
            let number = |i: usize| caps[i].parse::<u64>().ok();
            if let (Some(samples), Some(pcs), Some(dropped)) = (number(1), number(2), number(3)) {
                irqsoff_totals = Some(IrqsOffTotals { samples, pcs, dropped });
            }
            continue;
        }
        if let Some(caps) = IRQSOFF.captures(line) {
            let parsed = (|| {
                Some(IrqsOffEntry {
                    pc: u64::from_str_radix(&caps[1], 16).ok()?,
                    symbol: None,
                    samples: caps[2].parse().ok()?,
                    longest_ns: caps[3].parse().ok()?,
                })
            })();
            irqsoff.extend(parsed);
            continue;
        }
        if let Some(caps) = REPLAY.captures(line) {
            let number = |i: usize| caps[i].parse::<u64>().unwrap_or(0);
            let this = ReplayLog {
                logged: number(1),
                replayed: number(2),
                coalesced: number(3),
                withdrawn: number(4),
                max_depth: number(5),
                lost: number(6),
            };
            // Several lines (one per CPU, should the core print so) add up.
            replay = Some(match replay {
                None => this,
                Some(sum) => ReplayLog {
                    logged: sum.logged + this.logged,
                    replayed: sum.replayed + this.replayed,
                    coalesced: sum.coalesced + this.coalesced,
                    withdrawn: sum.withdrawn + this.withdrawn,
                    max_depth: sum.max_depth.max(this.max_depth),
                    lost: sum.lost + this.lost,
                },
            });
            continue;
        }
    }

    let inband_per_cpu = threads
        .into_iter()
        .enumerate()
        .filter(|(_, thread)| thread.summary.is_some() || thread.histogram.is_some() || thread.total.is_some())
        .map(|(index, thread)| CpuLatency { cpu: u32::try_from(index).unwrap_or(u32::MAX), latency: thread.finish() })
        .collect();
    // The sirq summary has no overrun count: a missed synthetic interrupt is not a period.
    let oob_sirq = sirq.finish().map(|latency| Latency { overruns: None, ..latency });
    // Longest window first, then most samples.
    irqsoff.sort_by(|a, b| b.longest_ns.cmp(&a.longest_ns).then(b.samples.cmp(&a.samples)).then(a.pc.cmp(&b.pc)));
    // Interrupted before the summary: the per-second lines still say min, avg and max.
    let oob_thread_partial = thread.rts.is_none() && !seconds.is_empty();
    if oob_thread_partial {
        thread.rts = summary_of(&seconds);
    }
    Measurements {
        irqsoff_totals,
        oob_thread_per_second: seconds,
        inband_per_second: inband_seconds,
        oob_thread_partial,
        oob_thread: thread.finish(),
        oob_irq: irq.finish(),
        oob_sirq,
        inband_per_cpu,
        replay_log: replay,
        irqsoff,
        guest_restarts,
        channel_round_trip: None,
        channel_flood: None,
        restart_windows: None,
    }
}

/// The thread context's summary from its per-second lines: the extremes, the mean of the
/// seconds' means (each second has the same number of periods) and the last overrun count.
fn summary_of(seconds: &[Second]) -> Option<Rts> {
    let count = i64::try_from(seconds.len()).ok().filter(|&n| n > 0)?;
    Some(Rts {
        min_ns: seconds.iter().map(|s| s.min_ns).min()?,
        avg_ns: seconds.iter().map(|s| s.avg_ns).sum::<i64>() / count,
        max_ns: seconds.iter().map(|s| s.max_ns).max()?,
        overruns: seconds.last()?.overruns,
    })
}

/// The slot of cyclictest thread `index` in `threads` (grown to hold it); `None` for absurd
/// indices from garbled lines (cyclictest runs one thread per CPU).
fn thread_slot(threads: &mut Vec<Thread>, index: usize) -> Option<usize> {
    if index >= 1024 {
        return None;
    }
    if threads.len() <= index {
        threads.resize(index + 1, Thread::default());
    }
    Some(index)
}

/// One guest line: cyclictest's `T:` summaries, its `-h` histogram and footer.
fn parse_guest_line(line: &str, threads: &mut Vec<Thread>, in_cyclic_histogram: &mut bool) {
    if let Some(caps) = CYCLIC_T.captures(line) {
        let parsed = (|| {
            Some((
                caps[1].parse::<usize>().ok()?,
                (caps[2].parse().ok()?, caps[3].parse().ok()?, caps[4].parse().ok()?, caps[5].parse().ok()?),
            ))
        })();
        if let Some((index, summary)) = parsed
            && let Some(slot) = thread_slot(threads, index)
        {
            threads[slot].summary = Some(summary);
        }
        return;
    }
    let trimmed = line.trim();
    if trimmed == "# Histogram" {
        *in_cyclic_histogram = true;
        return;
    }
    if let Some(rest) = trimmed.strip_prefix('#') {
        let rest = rest.trim_start();
        let footer = |label: &str| rest.strip_prefix(label);
        if let Some(values) = footer("Total:") {
            *in_cyclic_histogram = false;
            for (index, value) in footer_numbers::<u64>(values).into_iter().enumerate() {
                if let Some(slot) = thread_slot(threads, index) {
                    threads[slot].total = value;
                }
            }
        } else if let Some(values) = footer("Min Latencies:") {
            for (index, value) in footer_numbers::<i64>(values).into_iter().enumerate() {
                if let Some(slot) = thread_slot(threads, index) {
                    threads[slot].min = value;
                }
            }
        } else if let Some(values) = footer("Avg Latencies:") {
            for (index, value) in footer_numbers::<i64>(values).into_iter().enumerate() {
                if let Some(slot) = thread_slot(threads, index) {
                    threads[slot].avg = value;
                }
            }
        } else if let Some(values) = footer("Max Latencies:") {
            for (index, value) in footer_numbers::<i64>(values).into_iter().enumerate() {
                if let Some(slot) = thread_slot(threads, index) {
                    threads[slot].max = value;
                }
            }
        } else if let Some(values) = footer("Histogram Overflows:") {
            for (index, value) in footer_numbers::<u64>(values).into_iter().enumerate() {
                if let Some(slot) = thread_slot(threads, index) {
                    threads[slot].overflows = value;
                }
            }
        }
        return;
    }
    if *in_cyclic_histogram {
        // `000042 000003	000000	000001	000000`: bucket (µs), then one count per thread.
        let mut words = trimmed.split_whitespace();
        let Some(bucket) = words.next().and_then(|word| word.parse::<u64>().ok()) else { return };
        let counts: Option<Vec<u64>> = words.map(|word| word.parse().ok()).collect();
        let Some(counts) = counts.filter(|counts| !counts.is_empty()) else { return };
        for (index, count) in counts.into_iter().enumerate() {
            if let Some(slot) = thread_slot(threads, index) {
                // cyclictest's -h 1000: buckets 0..=999, overflows counted apart.
                let histogram = threads[slot].histogram.get_or_insert_with(|| Histogram::new(1000));
                if count > 0 {
                    histogram.add(bucket, count);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::Percentile;

    /// The core's latency test as `cargo xtask run` shows it (shortened).
    pub const OOB: &str = "\
[    2.10 core cpu3 INFO ] latmus: gravity calibrated over 100 periods: irq 1200 ns, thread 3400 ns
RTT|  00:00:01  (oob thread context, 1000 us period, priority 99, cpu 3, gravity 3400 ns)
RTH|----lat min|----lat avg|----lat max|-overrun|---msw|---lat best|--lat worst
RTD|     -2.500|     60.100|   5681.136|      20|     0|     -2.500|   5681.136
RTD|     -4.000|     70.000|    300.000|      45|     0|     -4.000|   5681.136
RTS|     -4.000|     67.028|   5681.136|      45|     0|    00:00:05/00:00:05
RTT|  00:00:01  (oob timer-IRQ context, same run, offset by half a period, gravity 1200 ns)
RTH|----lat min|----lat avg|----lat max|-overrun|---msw|---lat best|--lat worst
RTS|      1.250|     20.500|    900.000|      42|     0|    00:00:05/00:00:05
HSH|--context-|--bucket(us)-|---samples
HSD|    thread|           0|         4
HSD|    thread|           3|       120
HSD|    thread|          60|      4800
HSD|    thread|         300|        30
HSD|    thread|        1000|         2
HSD|       irq|           1|      4000
HSD|       irq|          20|       950
HSD|       irq|         900|         8
[    7.20 core cpu3 INFO ] latmus: 4956 thread samples, 4958 irq samples, 45 + 42 overruns
[   11.78 core cpu0 INFO ] replay log: logged 7143, replayed 7177, coalesced 0, withdrawn 6, max depth 1, lost 0
";

    /// cyclictest 2.5 (Debian bookworm) with `-h 1000 -q` on two vCPUs: the histogram (all
    /// 1000 rows in reality, zero rows mostly left out here) and its footer, `\r\n` endings.
    pub const CYCLICTEST: &str = "guest| guest: cyclictest -m -S -p 90 -i 1000 -h 1000 -D 5s -q\r
guest| # /dev/cpu_dma_latency set to 0us\r
guest| # Histogram\r
guest| 000000 000000\t000000\r
guest| 000104 000010\t000000\r
guest| 000150 000980\t000005\r
guest| 000151 000000\t000900\r
[    9.10 core cpu0 INFO ] a core line in between\r
guest| 000400 000005\t000090\r
guest| 000999 000000\t000001\r
guest| # Total: 000000995 000000996\r
guest| # Min Latencies: 00104 00150\r
guest| # Avg Latencies: 00152 00175\r
guest| # Max Latencies: 05965 01200\r
guest| # Histogram Overflows: 00001 00002\r
guest| # Histogram Overflow at cycle number:\r
guest| # Thread 0: 00016\r
guest| # Thread 1: 00000 00014\r
guest| CTD|0|0|5965\r
guest| CTD|0|1|300\r
guest| CTD|1|0|1200\r
guest| CTD|1|1|900\r
CTD|0|2|1\r
guest| CTD|1|x|7\r
guest| guest: cyclictest exited with status 0\r
guest| ";

    #[test]
    fn cyclictest_per_second_maxima_come_from_the_guest_only() {
        let m = parse(CYCLICTEST);
        let seconds: Vec<(u32, u64, i64)> = m.inband_per_second.iter().map(|s| (s.cpu, s.second, s.max_ns)).collect();
        // The core-side `CTD|` line and the malformed one are not the guest's figures.
        assert_eq!(seconds, [(0, 0, 5_965_000), (0, 1, 300_000), (1, 0, 1_200_000), (1, 1, 900_000)]);
        assert_eq!(m.inband_max_per_second(), [(0, 5_965_000), (1, 900_000)]);
        // The summaries still come from the histogram's footer.
        assert_eq!(m.inband_per_cpu[0].latency.max_ns, Some(5_965_000));
        assert_eq!(parse_ctd("0|3|29|4"), None);
    }

    #[test]
    fn parses_the_oob_latency_test() {
        let m = parse(OOB);
        let thread = m.oob_thread.unwrap();
        assert_eq!(thread.min_ns, Some(-4_000));
        assert_eq!(thread.avg_ns, Some(67_028));
        assert_eq!(thread.max_ns, Some(5_681_136));
        assert_eq!(thread.samples, Some(4956));
        assert_eq!(thread.overruns, Some(45));
        let histogram = thread.histogram.as_ref().unwrap();
        assert_eq!(histogram.limit_us, 1000);
        assert_eq!(histogram.above, 2);
        assert_eq!(histogram.total(), 4956);
        assert_eq!(thread.percentile(990), Some(Percentile::Within(60_000)));
        assert_eq!(thread.percentile(999), Some(Percentile::Within(300_000)));
        assert_eq!(thread.percentile(1000), Some(Percentile::AtLeast(1_000_000)));
        let irq = m.oob_irq.unwrap();
        assert_eq!(irq.min_ns, Some(1_250));
        assert_eq!(irq.max_ns, Some(900_000));
        assert_eq!(irq.samples, Some(4958));
        assert_eq!(irq.overruns, Some(42));
        assert_eq!(irq.percentile(999), Some(Percentile::Within(900_000)));
        assert_eq!(
            m.replay_log,
            Some(ReplayLog { logged: 7143, replayed: 7177, coalesced: 0, withdrawn: 6, max_depth: 1, lost: 0 })
        );
        assert!(m.inband_per_cpu.is_empty());
    }

    /// The core's synthetic-interrupt latency, printed at the end of a run with a guest.
    pub const SIRQ: &str = "\
[   11.99 core cpu0 INFO ] sirq: 512 samples, min 12000 ns, avg 35000 ns, max 950000 ns\r
HSD|      sirq|          12|       400\r
HSD|      sirq|          35|       100\r
HSD|      sirq|         120|        10\r
HSD|      sirq|        1000|         2\r
";

    #[test]
    fn parses_the_sirq_latency() {
        let m = parse(&format!("{OOB}{SIRQ}"));
        let sirq = m.oob_sirq.as_ref().unwrap();
        assert_eq!(sirq.min_ns, Some(12_000));
        assert_eq!(sirq.avg_ns, Some(35_000));
        assert_eq!(sirq.max_ns, Some(950_000));
        assert_eq!(sirq.samples, Some(512));
        assert_eq!(sirq.overruns, None);
        let histogram = sirq.histogram.as_ref().unwrap();
        assert_eq!((histogram.limit_us, histogram.above, histogram.total()), (1000, 2, 512));
        assert_eq!(sirq.percentile(990), Some(Percentile::Within(120_000)));
        assert_eq!(sirq.percentile(999), Some(Percentile::AtLeast(1_000_000)));
        // The sirq lines leave the latency test's contexts alone.
        assert_eq!(m.oob_thread.as_ref().unwrap().samples, Some(4956));
        assert_eq!(m.oob_irq.as_ref().unwrap().histogram.as_ref().unwrap().total(), 4958);
        assert!(!m.missing(true, true).iter().any(|line| line.starts_with("oob.sirq")));

        // A summary alone: no percentiles, and the histogram is reported missing.
        let m = parse("[   11.99 core cpu0 INFO ] sirq: 7 samples, min 1000 ns, avg 2000 ns, max 3000 ns\n");
        let sirq = m.oob_sirq.as_ref().unwrap();
        assert_eq!((sirq.samples, sirq.percentile(990)), (Some(7), None));
        assert!(m.missing(true, true).iter().any(|line| line.starts_with("oob.sirq: no histogram")));
        // Absent: as before.
        let m = parse(OOB);
        assert!(m.oob_sirq.is_none());
        assert!(m.missing(true, true).iter().any(|line| line == "oob.sirq: not measured yet (key omitted)"));
        // Garbled numbers: absent, not a panic.
        assert!(parse("sirq: 99999999999999999999 samples, min 1 ns, avg 1 ns, max 1 ns\n").oob_sirq.is_none());
    }

    #[test]
    fn parses_cyclictest_histograms_per_vcpu_and_merges_them() {
        let m = parse(CYCLICTEST);
        assert_eq!(m.inband_per_cpu.len(), 2);
        let cpu0 = &m.inband_per_cpu[0];
        assert_eq!(cpu0.cpu, 0);
        assert_eq!(cpu0.latency.min_ns, Some(104_000));
        assert_eq!(cpu0.latency.avg_ns, Some(152_000));
        assert_eq!(cpu0.latency.max_ns, Some(5_965_000));
        assert_eq!(cpu0.latency.samples, Some(996));
        assert_eq!(cpu0.latency.overruns, None);
        assert_eq!(cpu0.latency.percentile(990), Some(Percentile::Within(150_000)));
        // 996 samples, one beyond the histogram: the p99.9 rank (996) is that one.
        assert_eq!(cpu0.latency.percentile(999), Some(Percentile::AtLeast(1_000_000)));
        assert_eq!(cpu0.latency.percentile(995), Some(Percentile::Within(400_000)));
        let cpu1 = &m.inband_per_cpu[1];
        assert_eq!(cpu1.latency.samples, Some(998));
        assert_eq!(cpu1.latency.histogram.as_ref().unwrap().total(), 998);
        let all = m.inband().unwrap();
        assert_eq!(all.samples, Some(1994));
        assert_eq!(all.min_ns, Some(104_000));
        assert_eq!(all.max_ns, Some(5_965_000));
        assert_eq!(all.avg_ns, Some((152_000 * 996 + 175_000 * 998) / 1994));
        assert_eq!(all.histogram.as_ref().unwrap().total(), 1994);
        assert_eq!(all.percentile(990), Some(Percentile::Within(400_000)));
        assert!(m.oob_thread.is_none() && m.replay_log.is_none());
    }

    #[test]
    fn parses_cyclictest_summaries_without_a_histogram() {
        let console = "guest| T: 0 (  149) P:90 I:1000 C:   4976 Min:    104 Act:  181 Avg:  206 Max:    5965\n\
                       guest| T: 1 (  150) P:90 I:1000 C:   4970 Min:     98 Act:  120 Avg:  190 Max:    3000\n";
        let m = parse(console);
        assert_eq!(m.inband_per_cpu.len(), 2);
        let cpu0 = &m.inband_per_cpu[0].latency;
        assert_eq!((cpu0.min_ns, cpu0.avg_ns, cpu0.max_ns), (Some(104_000), Some(206_000), Some(5_965_000)));
        assert_eq!(cpu0.samples, Some(4976));
        assert_eq!(cpu0.percentile(990), None);
        assert_eq!(m.inband().unwrap().samples, Some(9946));
    }

    #[test]
    fn parses_the_irqsoff_top_list_longest_first() {
        let console = "\
[   12.00 core cpu0 INFO ] irqsoff: 300 samples with IRQs masked and an in-band IRQ waiting, at 3 PCs (0 dropped: table full)\r
IRQSOFF| pc 0xffff800081234024 samples 12 longest_ns 400000\r
IRQSOFF| pc 0xffff800081200010 samples 250 longest_ns 900000
IRQSOFF| pc 0xffff800080001000 samples 38 longest_ns 400000
IRQSOFF| pc 0xzz samples 1 longest_ns 1
IRQSOFF| pc 0xffff800080001000 samples 99999999999999999999999 longest_ns 1
";
        let m = parse(console);
        let top: Vec<(u64, u64, u64)> = m.irqsoff.iter().map(|e| (e.pc, e.samples, e.longest_ns)).collect();
        assert_eq!(
            top,
            [
                (0xffff_8000_8120_0010, 250, 900_000),
                (0xffff_8000_8000_1000, 38, 400_000),
                (0xffff_8000_8123_4024, 12, 400_000),
            ]
        );
        assert!(m.irqsoff.iter().all(|e| e.symbol.is_none()));
        assert!(parse(OOB).irqsoff.is_empty());
    }

    #[test]
    fn odd_input_is_skipped_not_fatal() {
        let console = "RTS|  garbage|\nHSD|thread|x|1\nHSD|    thread|  5|\nguest| # Total: 1 2\nguest| # Histogram\nguest| 999999999999999999999 1\nguest| T: 99999 (1) P:1 I:1 C: 1 Min: 1 Act: 1 Avg: 1 Max: 1\n\u{0}\u{fffd}\n";
        let m = parse(console);
        assert!(m.oob_thread.is_none() && m.oob_irq.is_none());
        assert_eq!(m.inband_per_cpu.len(), 2); // From `# Total: 1 2` only.
        assert_eq!(micros_to_ns("-0.056"), Some(-56));
        assert_eq!(micros_to_ns("12"), Some(12_000));
        assert_eq!(micros_to_ns("1.2345"), None);
        assert_eq!(micros_to_ns("-"), None);
    }

    #[test]
    fn guest_lines_never_count_as_the_cores_figures() {
        // A guest printing the core's whole latency test and replay log: nothing measured.
        let forged: String = OOB.lines().map(|line| format!("guest| {line}\n")).collect();
        let m = parse(&forged);
        assert!(m.oob_thread.is_none() && m.oob_irq.is_none() && m.replay_log.is_none());
        assert!(parse(&format!("guest| IRQSOFF| pc 0xffff800080001000 samples 1 longest_ns 1\n{OOB}")).irqsoff.is_empty());
        // Nor can it change the core's figures by adding its own after them.
        let m = parse(&format!("{OOB}{forged}guest| RTS|      0.000|      0.000|      0.000|       0|     0|    00:00:05/00:00:05\n"));
        assert_eq!(m.oob_thread.unwrap().max_ns, Some(5_681_136));
        // And cyclictest's lines count only from the guest.
        let unmarked = CYCLICTEST.replace("guest| ", "");
        assert!(parse(&unmarked).inband_per_cpu.is_empty());
        assert_eq!(parse_bare_guest(&unmarked).inband_per_cpu.len(), 2);
    }

    #[test]
    fn oob_histograms_in_100_ns_buckets_give_fine_percentiles() {
        let console = "\
RTT|  00:00:01  (oob thread context, 1000 us period, priority 99, cpu 0, gravity 1456 ns)
RTS|      0.000|      0.111|    150.000|       0|     0|    00:00:01/00:00:01
HSH|--context-|-bucket(100ns)|---samples
HSD|    thread|            0|       900
HSD|    thread|            7|        95
HSD|    thread|           15|         4
HSD|    thread|         1000|         1
HSH|--context-|--bucket(us)-|---samples
HSD|      sirq|            3|        10
";
        let m = parse(console);
        let thread = m.oob_thread.unwrap();
        let fine = thread.fine_histogram.as_ref().expect("a fine histogram");
        assert_eq!((fine.bucket_ns, fine.limit_us, fine.above, fine.total()), (100, 100, 1, 1000));
        assert_eq!(thread.percentile(990), Some(Percentile::Within(700)));
        assert_eq!(thread.percentile(999), Some(Percentile::Within(1_500)));
        assert_eq!(thread.percentile(900), Some(Percentile::Within(0)));
        assert_eq!(thread.percentile(1000), Some(Percentile::AtLeast(100_000)));
        // The 1 µs view (for the plot) keeps every sample.
        let coarse = thread.histogram.as_ref().unwrap();
        assert_eq!((coarse.counts[0], coarse.counts[1], coarse.above, coarse.limit_us), (995, 4, 1, 100));
        // The sirq lines after their own header are µs again.
        let sirq = m.oob_sirq.unwrap();
        assert!(sirq.fine_histogram.is_none());
        assert_eq!(sirq.percentile(500), Some(Percentile::Within(3_000)));
        assert_eq!(bucket_width_ns("HSH|--context-|--bucket(us)-|"), Some(1000));
        assert_eq!(bucket_width_ns("HSH|-bucket(0ns)|"), None);
    }

    #[test]
    fn cyclictests_json_is_taken_as_printed() {
        let console = "guest| guest: cyclictest json begin\r\nguest| {\nguest|   \"num_threads\": 1\nguest| }\nguest| \nguest| guest: cyclictest json end\n";
        assert_eq!(cyclictest_json(console).as_deref(), Some("{\n  \"num_threads\": 1\n}\n\n"));
        assert_eq!(cyclictest_json("guest| guest: cyclictest json begin\nguest| {\n"), None, "cut short");
        assert_eq!(cyclictest_json("nothing\n"), None);
    }

    #[test]
    fn guest_restarts_come_from_the_cores_lines_only() {
        let console = "\
[    3.10 core cpu0 WARN ] guest: restarting (restart 1, cause reset, at 3100 ms)
[    3.81 core cpu0 INFO ] guest: restart 1 (reset): vCPUs out in 3 us, 2 interrupts discarded, 1 physical activations given back, guest reloaded in 708 ms, core heap 196544 bytes in use
guest| guest: restart 9 (hang): vCPUs out in 1 us, 0 interrupts discarded, 0 physical activations given back, guest reloaded in 1 ms
[    3.93 core cpu0 INFO ] guest: restart 1: cause reset, at 3100 ms, first guest console output 831 ms later
";
        let restarts = parse(console).guest_restarts;
        assert_eq!(restarts.len(), 1, "{restarts:?}");
        let r = &restarts[0];
        assert_eq!((r.number, r.cause.as_str(), r.vcpus_out_us, r.discarded, r.released, r.reloaded_ms), (1, "reset", 3, 2, 1, 708));
        assert_eq!((r.at_ms, r.first_output_ms, r.core_heap_bytes), (Some(3100), Some(831), Some(196544)));
        assert!(parse("guest| guest: restart 1: cause reset, at 1 ms, first guest console output 1 ms later\n").guest_restarts.is_empty());
    }
}
