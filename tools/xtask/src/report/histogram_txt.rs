//! `histogram.txt`: the core's oob histograms in the layout of `rtla timerlat hist` (an
//! `Index` column, then an IRQ and a thread column for the CPU the latency test ran on, the
//! `over:`, `count:`, `min:`, `avg:` and `max:` lines), in nanoseconds as `rtla timerlat
//! hist --nano` prints them, with the bucket size (`-b`) of the core's histograms. Only
//! non-empty buckets are listed, as rtla does without `--with-zeros`.

use std::fmt::Write as _;

use super::Report;
use super::model::{Histogram, Latency};

/// The file's text, or `None` when the run has no oob histogram.
pub fn render(report: &Report) -> Option<String> {
    let m = &report.measurements;
    let irq = m.oob_irq.as_ref().filter(|l| l.percentile_histogram().is_some());
    let thread = m.oob_thread.as_ref().filter(|l| l.percentile_histogram().is_some());
    let bucket_ns = irq.or(thread)?.percentile_histogram()?.bucket_ns;
    // The latency test runs on the last CPU.
    let cpu = report.run.cpus.saturating_sub(1);
    let mut out = String::new();
    let _ = writeln!(out, "# RTLA timerlat histogram");
    let _ = writeln!(out, "# Time unit is nanoseconds (ns)");
    let _ = writeln!(out, "# Bucket size is {bucket_ns} ns (companion core latency test, run {}, mode {})", report.run.id, report.run.mode());
    let (h, mins, secs) = (report.run.duration_s / 3600, report.run.duration_s / 60 % 60, report.run.duration_s % 60);
    let _ = writeln!(out, "# Duration:   0 {h:02}:{mins:02}:{secs:02}");
    let _ = writeln!(out, "Index   IRQ-{cpu:03}   Thr-{cpu:03}");
    let counts = |latency: Option<&Latency>| -> Vec<u64> {
        latency.and_then(Latency::percentile_histogram).map_or_else(Vec::new, |h: &Histogram| h.counts.clone())
    };
    let (irq_counts, thread_counts) = (counts(irq), counts(thread));
    for bucket in 0..irq_counts.len().max(thread_counts.len()) {
        let (a, b) = (irq_counts.get(bucket).copied().unwrap_or(0), thread_counts.get(bucket).copied().unwrap_or(0));
        if a + b > 0 {
            let _ = writeln!(out, "{:<6} {a:>9} {b:>9}", bucket as u64 * bucket_ns);
        }
    }
    let over = |l: Option<&Latency>| l.and_then(Latency::percentile_histogram).map_or(0, |h| h.above);
    let number = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let _ = writeln!(out, "over:  {:>9} {:>9}", over(irq), over(thread));
    let _ = writeln!(out, "count: {:>9} {:>9}", number(irq.and_then(|l| l.samples).map(|n| n as i64)), number(thread.and_then(|l| l.samples).map(|n| n as i64)));
    let _ = writeln!(out, "min:   {:>9} {:>9}", number(irq.and_then(|l| l.min_ns)), number(thread.and_then(|l| l.min_ns)));
    let _ = writeln!(out, "avg:   {:>9} {:>9}", number(irq.and_then(|l| l.avg_ns)), number(thread.and_then(|l| l.avg_ns)));
    let _ = writeln!(out, "max:   {:>9} {:>9}", number(irq.and_then(|l| l.max_ns)), number(thread.and_then(|l| l.max_ns)));
    Some(out)
}
