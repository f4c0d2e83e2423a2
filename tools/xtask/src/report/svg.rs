//! `latency.svg`: the latency histograms on one chart, samples on a log scale against
//! latency in µs, drawn as step outlines (hand-written SVG, viewable in a browser).

use std::fmt::Write as _;

use super::Report;
use super::model::Histogram;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
/// How far below one sample (in decades) the baseline, where empty buckets are, lies.
const FLOOR: f64 = 0.3;

/// One series: its label, colour, dash pattern and histogram.
struct Series<'a> {
    label: String,
    color: &'static str,
    dash: &'static str,
    histogram: &'a Histogram,
}

/// Escapes text for SVG content and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The histogram as plain per-µs counts, the open range added at its limit.
fn dense(histogram: &Histogram) -> Vec<u64> {
    let limit = usize::try_from(histogram.limit_us).unwrap_or(usize::MAX).min(1 << 20);
    let mut counts = histogram.counts.clone();
    if histogram.above > 0 {
        if counts.len() <= limit {
            counts.resize(limit + 1, 0);
        }
        counts[limit] = counts[limit].saturating_add(histogram.above);
    }
    counts
}

/// The smallest of 10, 20, 50, 100, … at or above `value`.
fn nice_ceiling(value: usize) -> usize {
    let mut decade = 10;
    loop {
        for step in [1, 2, 5] {
            if step * decade >= value {
                return step * decade;
            }
        }
        decade = decade.saturating_mul(10);
    }
}

/// Tick labels for counts: 1, 10, 100, 1k, 10k, …
fn count_label(decade: u32) -> String {
    match decade {
        0..=2 => 10u64.pow(decade).to_string(),
        3..=5 => format!("{}k", 10u64.pow(decade - 3)),
        _ => format!("{}M", 10u64.pow(decade.saturating_sub(6).min(12))),
    }
}

/// Renders the chart; series without a histogram are left out and named in a note.
pub fn render(report: &Report) -> String {
    let m = &report.measurements;
    let inband = m.inband();
    let mut series = Vec::new();
    let mut absent = Vec::new();
    let mut candidates = vec![
        ("oob thread", "#d62728", "", m.oob_thread.as_ref()),
        ("oob timer IRQ", "#ff7f0e", "6 3", m.oob_irq.as_ref()),
    ];
    // The sirq series only when measured (its absence is already in `missing`).
    if let Some(sirq) = m.oob_sirq.as_ref() {
        candidates.push(("guest sirq", "#2ca02c", "2 2", Some(sirq)));
    }
    candidates.push(("in-band cyclictest (all vCPUs)", "#1f77b4", "", inband.as_ref()));
    for (name, color, dash, latency) in candidates {
        match latency.and_then(|l| l.histogram.as_ref().map(|h| (l, h))) {
            Some((latency, histogram)) => series.push(Series {
                label: format!(
                    "{name}: {} samples{}",
                    latency.samples.unwrap_or_else(|| histogram.total()),
                    if histogram.above > 0 {
                        format!(", {} at >= {} us", histogram.above, histogram.limit_us)
                    } else {
                        String::new()
                    }
                ),
                color,
                dash,
                histogram,
            }),
            None => absent.push(name),
        }
    }
    // The scale follows the highest populated 1 µs bucket, so a few samples in an open range
    // (counted in the legend) do not squeeze every distribution into the first pixels; only
    // when no histogram has a sample below its limit is the open range drawn, at its limit.
    let in_range = series.iter().filter_map(|s| s.histogram.counts.iter().rposition(|&count| count > 0)).max();
    let (x_max, dense): (usize, Vec<Vec<u64>>) = match in_range {
        Some(last) => {
            let x_max = nice_ceiling(last + 1);
            (x_max, series.iter().map(|s| s.histogram.counts.iter().copied().take(x_max).collect()).collect())
        }
        None => {
            let dense: Vec<Vec<u64>> = series.iter().map(|s| dense(s.histogram)).collect();
            // The open range's bucket may poke out by one and is clamped to the frame.
            (nice_ceiling(dense.iter().map(Vec::len).max().unwrap_or(0).max(2) - 1), dense)
        }
    };
    let max_count = dense.iter().flatten().copied().max().unwrap_or(1).max(1);
    let decades = (max_count as f64).log10().ceil().max(1.0) as u32;

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |us: f64| LEFT + (us / x_max as f64).min(1.0) * plot_w;
    let y = |count: u64| {
        let level = if count == 0 { -FLOOR } else { (count as f64).log10() };
        TOP + plot_h - (level + FLOOR) / (f64::from(decades) + FLOOR) * plot_h
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let run = &report.run;
    let title = format!(
        "Latency histograms, run {} ({}, {} CPUs{}, {}s, {})",
        run.id,
        run.board,
        run.cpus,
        run.gic.as_deref().map(|gic| format!(", GIC{gic}")).unwrap_or_default(),
        run.duration_s,
        run.qemu
    );
    let _ = writeln!(svg, r#"<title>{}</title>"#, escape(&title));
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#, WIDTH / 2.0, escape(&title));
    // Grid and axes: one line per decade of samples, ten divisions of latency.
    let _ = writeln!(svg, r##"<g class="axis-y" stroke="#ddd">"##);
    for decade in 0..=decades {
        let level = y(10u64.saturating_pow(decade));
        let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{level:.1}" x2="{:.1}" y2="{level:.1}"/>"#, LEFT + plot_w);
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r#"<g class="axis-y-labels" text-anchor="end">"#);
    for decade in 0..=decades {
        let level = y(10u64.saturating_pow(decade));
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, LEFT - 6.0, level + 4.0, count_label(decade));
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r#"<g class="axis-x-labels" text-anchor="middle">"#);
    for tick in 0..=10 {
        let us = x_max * tick / 10;
        let at = x(us as f64);
        let _ = writeln!(svg, r##"<line x1="{at:.1}" y1="{:.1}" x2="{at:.1}" y2="{:.1}" stroke="#999"/>"##, TOP + plot_h, TOP + plot_h + 5.0);
        let _ = writeln!(svg, r#"<text x="{at:.1}" y="{:.1}">{us}</text>"#, TOP + plot_h + 18.0);
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency (us, 1 us buckets; samples beyond the axis are counted in the legend)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 30.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">samples per bucket (log scale)</text>"#,
        TOP + plot_h / 2.0
    );
    // The series, as step outlines from the baseline.
    for (series, counts) in series.iter().zip(&dense) {
        let base = y(0);
        let mut path = format!("M{:.2},{base:.2}", x(0.0));
        let mut previous = base;
        for (bucket, &count) in counts.iter().enumerate() {
            let level = y(count);
            if level != previous {
                let _ = write!(path, " L{:.2},{previous:.2} L{:.2},{level:.2}", x(bucket as f64), x(bucket as f64));
                previous = level;
            }
        }
        let end = x(counts.len() as f64);
        let _ = write!(path, " L{end:.2},{previous:.2} L{end:.2},{base:.2}");
        let dash = if series.dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{}""#, series.dash) };
        let _ = writeln!(
            svg,
            r#"<path class="series" data-series="{}" d="{path}" fill="none" stroke="{}" stroke-width="1.5"{dash}/>"#,
            escape(&series.label),
            series.color
        );
    }
    // Legend, top right, and what is absent.
    let mut row = TOP + 18.0;
    let legend_x = LEFT + plot_w - 440.0;
    for series in &series {
        let dash = if series.dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{}""#, series.dash) };
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{row:.1}">{}</text>"#,
            row - 4.0,
            legend_x + 24.0,
            row - 4.0,
            series.color,
            legend_x + 30.0,
            escape(&series.label)
        );
        row += 18.0;
    }
    for name in absent {
        let _ = writeln!(svg, r##"<text x="{legend_x:.1}" y="{row:.1}" fill="#777">{}: no histogram in this run</text>"##, escape(name));
        row += 18.0;
    }
    svg.push_str("</svg>\n");
    svg
}
