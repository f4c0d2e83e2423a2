//! The side-by-side table printed at the end of `cargo xtask run`.

use std::fmt::Write as _;

use super::Report;
use super::model::{Latency, Percentile};

/// Formats ns as µs with 3 decimals (`67028` → `67.028`).
pub fn micros(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// [`micros`] of an unsigned count of ns.
fn micros_u(ns: u64) -> String {
    micros(i64::try_from(ns).unwrap_or(i64::MAX))
}

fn cell(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), micros)
}

fn percentile_cell(value: Option<Percentile>) -> String {
    match value {
        None => "-".to_owned(),
        Some(Percentile::Within(ns)) => micros(ns),
        Some(Percentile::AtLeast(ns)) => format!(">={}", micros(ns)),
    }
}

fn count_cell(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The rows: name and statistics (`None`: the section is missing); `sirq` only when the
/// console showed it.
pub fn rows(report: &Report) -> Vec<(String, Option<Latency>)> {
    let m = &report.measurements;
    let mut rows = Vec::new();
    if report.core {
        rows.push(("oob-irq".to_owned(), m.oob_irq.clone()));
        rows.push(("oob-thread".to_owned(), m.oob_thread.clone()));
    }
    // Only when measured: its absence is listed under `missing`.
    if let Some(sirq) = &m.oob_sirq {
        rows.push(("sirq".to_owned(), Some(sirq.clone())));
    }
    if report.guest {
        rows.push(("in-band (guest-reported)".to_owned(), m.inband()));
        for cpu in &m.inband_per_cpu {
            rows.push((format!("in-band cpu{} (guest)", cpu.cpu), Some(cpu.latency.clone())));
        }
    }
    rows
}

/// Renders the table (µs; percentiles at their histogram's bucket resolution, `>=` when in the
/// histogram's open range), followed by the replay log and what is missing.
pub fn render(report: &Report) -> String {
    let header = ["", "min", "avg", "p99", "p99.9", "max", "samples", "overruns"];
    let mut lines: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for (name, latency) in rows(report) {
        let row = match latency {
            Some(l) => [
                name,
                cell(l.min_ns),
                cell(l.avg_ns),
                percentile_cell(l.percentile(990)),
                percentile_cell(l.percentile(999)),
                cell(l.max_ns),
                count_cell(l.samples),
                count_cell(l.overruns),
            ],
            None => [name, "missing".to_owned(), "".into(), "".into(), "".into(), "".into(), "".into(), "".into()],
        };
        lines.push(row);
    }
    let mut widths = [0usize; 8];
    for line in &lines {
        for (width, text) in widths.iter_mut().zip(line) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let run = &report.run;
    let _ = writeln!(
        out,
        "latency (us; p99/p99.9 at bucket resolution, 0.1 us for oob-irq/oob-thread and 1 us otherwise, >= when \
         beyond the histogram), run {}, mode {}, \
         {} CPU{}, load {}, period {} us:",
        run.id,
        run.mode(),
        run.cpus,
        if run.cpus == 1 { "" } else { "s" },
        run.load,
        run.period_us
    );
    if let Some(why) = super::model::host_dominated(run, &report.measurements) {
        let _ = writeln!(out, "{why}");
    }
    for line in &lines {
        let mut text = format!("  {:<w$}", line[0], w = widths[0]);
        for (value, width) in line.iter().zip(widths).skip(1) {
            let _ = write!(text, "  {value:>width$}");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
    if !report.core {
        let _ = writeln!(out, "baseline: Linux alone on QEMU, without the core (no oob figures)");
    }
    match &report.measurements.replay_log {
        _ if !report.core => {}
        Some(r) => {
            let _ = writeln!(
                out,
                "replay log: logged {}, replayed {}, coalesced {}, withdrawn {}, max depth {}, lost {}",
                r.logged, r.replayed, r.coalesced, r.withdrawn, r.max_depth, r.lost
            );
        }
        None => {
            let _ = writeln!(out, "replay log: -");
        }
    }
    match &report.measurements.channel_round_trip {
        Some(Ok(trip)) => {
            let _ = writeln!(
                out,
                "channel round trip (Linux -> oob echo thread -> Linux, {} x {} bytes, guest-measured, backed by the \
                 core's count): min {}, avg {}, p99 {}, max {} us; echo thread {} ns of CPU per wake-up (core)",
                trip.count,
                trip.message_bytes,
                micros_u(trip.min_ns),
                micros_u(trip.avg_ns),
                micros_u(trip.p99_ns),
                micros_u(trip.max_ns),
                trip.echo_cpu_ns_per_wakeup()
            );
        }
        // Said under `missing`.
        Some(Err(_)) | None => {}
    }
    if let Some(Ok(flood)) = &report.measurements.channel_flood {
        let ratios = flood.ratios();
        let maxima: Vec<String> = super::channel::Flood::CONTEXTS
            .iter()
            .enumerate()
            .map(|(i, context)| {
                format!(
                    "{context} max quiet {}, flooded {} us (x{:.2})",
                    micros(flood.quiet_max_ns[i]),
                    micros(flood.flooded_max_ns[i]),
                    ratios[i]
                )
            })
            .collect();
        let target = super::channel::FLOOD_TARGET;
        let verdict = if flood.above(target).is_empty() { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "channel flood (Linux floods companion.echo during the second of two latency tests): {}, target x{target} \
             {verdict}; written {} bytes = read back {} + dropped by the core {}: {}",
            maxima.join(", "),
            flood.written,
            flood.read_back,
            flood.dropped,
            if flood.exact() { "exact" } else { "NOT exact" }
        );
    }
    for r in &report.measurements.guest_restarts {
        let first_output = r.first_output_ms.map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms later"));
        let _ = writeln!(
            out,
            "guest restart {} ({}): reloaded in {} ms, first console output {first_output}, {} interrupts discarded",
            r.number, r.cause, r.reloaded_ms, r.discarded
        );
    }
    if let Some(Ok(windows)) = &report.measurements.restart_windows {
        let per_boot: Vec<String> = windows
            .windows
            .iter()
            .map(|w| format!("boot {} {}/{}", w.boot, micros(w.max_ns[0]), micros(w.max_ns[1])))
            .collect();
        let (after, ratios, target) = (windows.after_restarts_max_ns(), windows.ratios(), super::restart::RESTART_TARGET);
        let verdict = if windows.above(target).is_empty() { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "oob max per boot (thread/irq us): {}; after a restart {}/{} us = x{:.2}/x{:.2} the first boot, target x{target} \
             {verdict}",
            per_boot.join(", "),
            micros(after[0]),
            micros(after[1]),
            ratios[0],
            ratios[1]
        );
    }
    out.push_str(&irqsoff(report));
    for missing in report.missing() {
        let _ = writeln!(out, "missing: {missing}");
    }
    out
}

/// The irqs-off hunter's section (empty when it did not run): where Linux held in-band IRQs
/// off while one waited, longest window first, in whole sampling periods; the idle path
/// marked; what the hunter's full table dropped said.
pub fn irqsoff(report: &Report) -> String {
    let top = &report.measurements.irqsoff;
    if top.is_empty() {
        return String::new();
    }
    let names: Vec<String> =
        top.iter().map(|entry| entry.symbol.clone().unwrap_or_else(|| format!("{:#x}", entry.pc))).collect();
    let width = names.iter().map(|name| name.chars().count()).max().unwrap_or(0).max("location".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "irqs-off hunter: top locations (in-band IRQ waiting while Linux had IRQs masked; a window is \
         its consecutive samples plus one sampling period, so one sample reads as one period):"
    );
    if let Some(totals) = report.measurements.irqsoff_totals {
        let _ = writeln!(
            out,
            "  {} samples at {} PCs, {} dropped (table full){}",
            totals.samples,
            totals.pcs,
            totals.dropped,
            if totals.dropped > 0 { ": those samples are in no location below" } else { "" }
        );
    }
    let _ = writeln!(out, "  {:<width$}  {:>18}  {:>8}  {:>16}", "location", "pc", "samples", "longest");
    for (entry, name) in top.iter().zip(&names) {
        let longest = match report.run.irqsoff_period_us {
            Some(us) => format!("{} x {us} us", entry.longest_ns / us.max(1).saturating_mul(1000)),
            None => format!("{} us", micros(i64::try_from(entry.longest_ns).unwrap_or(i64::MAX))),
        };
        let idle = if entry.symbol.as_deref().is_some_and(super::model::is_idle_path) { "  (idle)" } else { "" };
        let _ = writeln!(out, "  {name:<width$}  {:>18}  {:>8}  {longest:>16}{idle}", format!("{:#x}", entry.pc), entry.samples);
    }
    out
}
