//! `latency.svg`, drawn with `plotters` (SVG backend) in two panels under one title naming
//! the run's load, CPUs, mode (`-icount` or plain TCG), period and duration:
//! - the latency histograms, samples per bucket against latency, both on log scales so the
//!   µs-range oob distributions and the in-band tail show side by side; each series with
//!   dashed p99 and solid max markers in its colour;
//! - the worst latency of each second: the oob thread context (the core's `RTD|` lines) and
//!   cyclictest (worst over its vCPUs, the guest's `CTD|` lines), on a log axis. The oob
//!   timer-IRQ context has no per-second lines on the console, so it is not in this panel.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Report;
use super::model::{Histogram, Latency};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 820;
/// The histogram panel's height; the per-second panel takes the rest.
const HISTOGRAM_HEIGHT: u32 = 520;
/// Where empty buckets are drawn: below one sample, on the log axis.
const FLOOR: f64 = 0.5;

/// One series: its name, colour and distribution.
struct Series<'a> {
    name: &'static str,
    color: RGBColor,
    latency: &'a Latency,
    histogram: &'a Histogram,
}

impl Series<'_> {
    /// The legend line: samples, the open range if used, p99 and max.
    fn label(&self) -> String {
        let histogram = self.histogram;
        let mut label = format!("{}: {} samples", self.name, self.latency.samples.unwrap_or_else(|| histogram.total()));
        if histogram.above > 0 {
            label.push_str(&format!(", {} at >= {} us", histogram.above, histogram.limit_us));
        }
        // p99 is known to its bucket: `<1 us` for the first, `N us` (lower bound) otherwise.
        match self.latency.percentile(990) {
            Some(p99) if p99.is_lower_bound() => label.push_str(&format!(", p99 >={} us", p99.ns() / 1000)),
            Some(p99) if p99.ns() < 1000 => label.push_str(", p99 <1 us"),
            Some(p99) => label.push_str(&format!(", p99 {} us", p99.ns() / 1000)),
            None => {}
        }
        if let Some(max) = self.latency.max_ns {
            label.push_str(&format!(", max {:.1} us", max as f64 / 1000.0));
        }
        label
    }
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

/// The chart's title: the run and the conditions its figures depend on.
fn title(report: &Report) -> String {
    let run = &report.run;
    format!(
        "Latency, run {}: load {}, {} CPU(s){}, {}, period {} us, {} s",
        run.id,
        run.load,
        run.cpus,
        run.gic.as_deref().map(|gic| format!(", GIC{gic}")).unwrap_or_default(),
        if run.icount { "-icount" } else { "plain TCG" },
        run.period_us,
        run.duration_s
    )
}

/// Renders the chart; series without a histogram are left out and named under the legend.
pub fn render(report: &Report) -> String {
    let m = &report.measurements;
    let inband = m.inband();
    let mut candidates = vec![
        ("oob thread", RGBColor(0xd6, 0x27, 0x28), m.oob_thread.as_ref()),
        ("oob timer IRQ", RGBColor(0xff, 0x7f, 0x0e), m.oob_irq.as_ref()),
    ];
    // The sirq series only when measured (its absence is already in `missing`).
    if let Some(sirq) = m.oob_sirq.as_ref() {
        candidates.push(("guest sirq", RGBColor(0x2c, 0xa0, 0x2c), Some(sirq)));
    }
    candidates.push(("in-band cyclictest (all vCPUs)", RGBColor(0x1f, 0x77, 0xb4), inband.as_ref()));
    let mut series = Vec::new();
    let mut absent = Vec::new();
    for (name, color, latency) in candidates {
        match latency.and_then(|latency| Some((latency, latency.histogram.as_ref()?))) {
            Some((latency, histogram)) => series.push(Series { name, color, latency, histogram }),
            None => absent.push(name),
        }
    }
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let panels = (|| {
            root.fill(&WHITE).map_err(|err| err.to_string())?;
            let body = root.titled(&title(report), ("sans-serif", 17)).map_err(|err| err.to_string())?;
            let (top, bottom) = body.split_vertically(HISTOGRAM_HEIGHT);
            draw(&top, &series, &absent)?;
            draw_seconds(&bottom, &per_second(report))
        })();
        panels.and_then(|()| root.present().map_err(|err| err.to_string()))
    };
    match drawn {
        Ok(()) => svg,
        // Drawing into a string cannot fail short of a plotters bug: say so in the file.
        Err(err) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"40\"><text x=\"10\" y=\"25\">cannot draw the chart: {}</text></svg>\n",
            err.replace('&', "&amp;").replace('<', "&lt;")
        ),
    }
}

/// The per-bucket step outline of `histogram` up to `x_max` µs: `(µs, samples)` points,
/// empty buckets at [`FLOOR`]; the open range, when nothing lies below it, at its limit.
fn outline(histogram: &Histogram, x_max: usize) -> Vec<(f64, f64)> {
    let mut counts: Vec<u64> = histogram.counts.iter().copied().take(x_max).collect();
    let limit = usize::try_from(histogram.limit_us).unwrap_or(usize::MAX);
    if histogram.above > 0 && limit < x_max {
        counts.resize(limit + 1, 0);
        counts[limit] = counts[limit].saturating_add(histogram.above);
    }
    let level = |count: u64| if count == 0 { FLOOR } else { count as f64 };
    let mut points = Vec::with_capacity(counts.len() * 2 + 1);
    for (bucket, &count) in counts.iter().enumerate() {
        points.push(((bucket as f64).max(FLOOR), level(count)));
        points.push(((bucket + 1) as f64, level(count)));
    }
    points.push((counts.len() as f64, FLOOR));
    points
}

/// One per-second line: its name, colour and `(second, max µs)` points.
struct SecondSeries {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The per-second worst cases the console gave: the oob thread context's (its `RTD|` lines,
/// the first being second 1) and cyclictest's over its vCPUs.
fn per_second(report: &Report) -> Vec<SecondSeries> {
    let m = &report.measurements;
    let us = |ns: i64| ns as f64 / 1000.0;
    let mut lines = Vec::new();
    if !m.oob_thread_per_second.is_empty() {
        let points = m.oob_thread_per_second.iter().enumerate().map(|(i, second)| ((i + 1) as f64, us(second.max_ns))).collect();
        lines.push(SecondSeries { name: "oob thread, max per second", color: RGBColor(0xd6, 0x27, 0x28), points });
    }
    let inband = m.inband_max_per_second();
    if !inband.is_empty() {
        let points = inband.iter().map(|&(second, max_ns)| ((second + 1) as f64, us(max_ns))).collect();
        lines.push(SecondSeries { name: "in-band cyclictest, max per second (all vCPUs)", color: RGBColor(0x1f, 0x77, 0xb4), points });
    }
    lines
}

/// The per-second panel: each second's worst latency (µs, log scale) against the second.
fn draw_seconds(area: &DrawingArea<SVGBackend<'_>, Shift>, lines: &[SecondSeries]) -> Result<(), String> {
    let error = |err: DrawingAreaErrorKind<_>| err.to_string();
    if lines.is_empty() {
        return area
            .draw(&Text::new("no per-second figures in this run (RTD|/CTD| lines)", (80, 40), ("sans-serif", 13).into_font()))
            .map_err(error);
    }
    let last = lines.iter().flat_map(|line| &line.points).map(|&(second, _)| second).fold(1.0, f64::max);
    // Zero or negative maxima sit on the axis floor of 0.01 µs.
    let floor = 0.01;
    let top = lines.iter().flat_map(|line| &line.points).map(|&(_, us)| us).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5..last + 0.5, (floor..top).log_scale())
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("worst latency in the second (us, log)")
        .y_label_formatter(&|us| format!("{us}"))
        .draw()
        .map_err(error)?;
    for line in lines {
        let color = line.color;
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(second, us)| (second, us.max(floor))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(error)?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|point| Circle::new(point, 3, color.filled()))).map_err(error)?;
    }
    draw_legend(&mut chart)
}

/// The chart's legend, top right, over a white background.
fn draw_legend<'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'a>, CT>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|err| err.to_string())
}

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series<'_>], absent: &[&str]) -> Result<(), String> {
    let error = |err: DrawingAreaErrorKind<_>| err.to_string();
    // The scale follows the highest populated 1 µs bucket, so a few samples in an open range
    // (counted in the legend) do not squeeze every distribution into the first pixels; only
    // when no histogram has a sample below its limit is the open range drawn, at its limit.
    let in_range = series.iter().filter_map(|s| s.histogram.counts.iter().rposition(|&count| count > 0)).max();
    let x_max = match in_range {
        Some(last) => nice_ceiling(last + 1),
        None => nice_ceiling(series.iter().map(|s| s.histogram.limit_us as usize + 1).max().unwrap_or(1).max(2)),
    };
    let outlines: Vec<Vec<(f64, f64)>> = series.iter().map(|s| outline(s.histogram, x_max)).collect();
    let max_count = outlines.iter().flatten().map(|&(_, count)| count).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((FLOOR..x_max as f64).log_scale(), (FLOOR..max_count * 2.0).log_scale())
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("latency (us, 1 us buckets, log scale; samples beyond the axis are counted in the legend)")
        .y_desc("samples per bucket (log scale)")
        .x_label_formatter(&|us| format!("{us}"))
        .y_label_formatter(&|count| if *count < 1.0 { String::new() } else { format!("{count}") })
        .draw()
        .map_err(error)?;
    for (series, points) in series.iter().zip(outlines) {
        let color = series.color;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(error)?
            .label(series.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        // p99 dashed, max solid: vertical markers within the axis.
        let top = max_count * 2.0;
        let p99 = series.latency.percentile(990).map(|p| p.ns() as f64 / 1000.0 + 0.5);
        let max = series.latency.max_ns.map(|ns| ns as f64 / 1000.0);
        for (at, dashed) in [(p99, true), (max, false)] {
            let Some(at) = at.filter(|&us| (FLOOR..=x_max as f64).contains(&us)) else {
                continue;
            };
            let style = color.mix(0.8).stroke_width(1);
            if dashed {
                chart.draw_series(DashedLineSeries::new([(at, FLOOR), (at, top)], 6, 4, style)).map_err(error)?;
            } else {
                chart.draw_series(LineSeries::new([(at, FLOOR), (at, top)], style)).map_err(error)?;
            }
        }
    }
    draw_legend(&mut chart)?;
    for (row, name) in absent.iter().enumerate() {
        let y = i32::try_from(HISTOGRAM_HEIGHT).unwrap_or(i32::MAX) - 60 - 16 * i32::try_from(row).unwrap_or(0);
        root.draw(&Text::new(format!("{name}: no histogram in this run"), (80, y), ("sans-serif", 12).into_font().color(&RGBColor(0x77, 0x77, 0x77))))
            .map_err(error)?;
    }
    root.draw(&Text::new("markers: p99 dashed, max solid", (80, 8), ("sans-serif", 12).into_font())).map_err(error)?;
    Ok(())
}
