//! `report.json`.
//!
//! Keys (latencies in ns; a value the console did not show is `null`, a missing section
//! is `null` as a whole, and `missing` says why):
//!
//! - `version`: 1.
//! - `oob.thread`, `oob.irq`, `oob.sirq` (the guest's synthetic interrupts, measured by
//!   the core), `inband` (cyclictest, all vCPUs merged): objects with
//!   `min_ns`, `avg_ns`, `p99_ns`, `p999_ns`, `max_ns`, `samples`, `overruns` (`null` for
//!   sirq and cyclictest), `p99_lower_bound` / `p999_lower_bound` (true when the percentile lies in
//!   the histogram's open range, so the value is only a lower bound), `histogram_limit_ns`
//!   (where that open range starts), `histogram_above` (samples in it) and `histogram`:
//!   `{bucket_ns, limit_ns, above, buckets}`, `buckets` the non-empty buckets as
//!   `[start_ns, samples]` pairs. Percentiles come from that histogram — 100 ns buckets for
//!   the core's oob thread and IRQ contexts, 1 µs for sirq and cyclictest: each is the lower
//!   bound of its bucket (< 1 bucket resolution).
//! - `inband_per_cpu`: an array, one such object per vCPU with `cpu` added (empty without
//!   a guest or cyclictest output).
//! - `sources`: who measured each section: `oob` and `replay_log` are `core` (read from the
//!   core's own console lines only), `inband` is `guest-reported` (cyclictest's output, read
//!   from the lines the core marked as the guest's: a hostile guest could print anything
//!   there, so these figures are the guest's word, not the core's).
//! - `replay_log`: `logged`, `replayed`, `coalesced`, `withdrawn`, `max_depth`, `lost`.
//! - `guest.restarts`: one object per restart of the guest, from the core's lines: `number`,
//!   `cause` (`reset` or `watchdog`), `at_ms` (the request, core clock), `vcpus_out_us`,
//!   `discarded` (interrupts pending for the dead guest), `released` (physical activations
//!   given back), `reloaded_ms`, `first_output_ms` (request to the new guest's first console
//!   output, `null` if it never wrote), `core_heap_bytes` (the core's heap in use after the
//!   reload); empty without restarts. `guest.boot_windows` (a restarted guest beside the
//!   core's background latency test, else `null`): `boots`, one `{boot, max_ns, samples}`
//!   per boot (`max_ns` `[thread, irq]`, the first boot first, each later one holding the
//!   restart that brought it), `after_restarts_max_ns` (the worst of the boots after a
//!   restart) and `ratios` (that over the first boot's), each `[thread, irq]`.
//! - `run`: `id`, `profile`, `board`, `gic` (`v2`/`v3`, `null` if the machine does not
//!   say), `cpus`, `load` (`idle`, `grinder` or `neighbour`), `duration_s`, `qemu`, `guest_kernel` (`null` for
//!   `--no-guest`), `icount`, `mode` (`icount` or `tcg`, see
//!   `cargo xtask run --mode`), `tag` (`--tag`, or `null`), `period_us` (the latency test's period), `revision` (the core's `git rev-parse --short=12 HEAD`,
//!   `-dirty` with changes; `null` outside git), `host` (name, CPUs, kernel), `rtd_arrivals_ms` (when each per-second
//!   `RTD|` line reached the host, ms since QEMU started: the host time of the virtual seconds), `irqsoff_period_us`
//!   (the irqs-off hunter's, `null` when it was off), `exit_code` (the core's verdict's exit code, `null` when the run
//!   has no verdict the harness trusts: see `crate::verdict`).
//!   `core`: false for `cargo xtask guest`'s baseline (Linux alone, no oob figures);
//!   `interrupted`: true when Ctrl-C cut the run short (then `oob.thread` may come from the
//!   per-second lines alone, and `missing` says so).
//! - `series.oob_thread_per_second`: the oob thread context second by second (the core's
//!   `RTD|` lines): `{min_ns, avg_ns, max_ns, overruns}`, `overruns` counted since the start.
//!   `series.inband_per_second`: cyclictest second by second per vCPU (the guest's `CTD|`
//!   lines, folded from cyclictest's `-v` samples): `{cpu, second, max_ns}`.
//! - `irqsoff` (only when the irqs-off hunter ran, `companion.irqsoff`): `top`, an array
//!   of `{pc, symbol, samples, longest_ns}` by longest window first (`pc` a `0x…` string,
//!   `symbol` `name+0xoff` from the guest's System.map or `null`), where Linux held in-band
//!   IRQs off while one waited; each entry also has `longest_periods` (the window in whole
//!   sampling periods, `irqsoff_period_us`) and `idle` (true on Linux's idle path, e.g.
//!   `cpu_do_idle`: IRQs masked waiting for the next interrupt, not work). `totals`:
//!   `{samples, pcs, dropped}` from the hunter's summary line, `dropped` counting samples
//!   at new PCs that found its table full (so in no entry); `null` if the console lacks it.
//! - `channel` (only when the guest ran `companion ping`, the main job): `round_trip`,
//!   Linux thread → the core's oob echo thread → Linux thread over `companion.echo`, as the
//!   guest measured it: `{count, message_bytes, min_ns, avg_ns, p99_ns, max_ns}` (0.1 µs
//!   resolution); `echo`, the core's count over the run: `{wakeups, bytes, cpu_ns,
//!   cpu_ns_per_wakeup}` (the oob side's cost of one message). Present only when the core's
//!   count backs the guest's (its echo thread took at least `count × message_bytes`);
//!   otherwise `missing` says why. `flood` (only for the `channel-flood` script): the core's
//!   oob maxima with the channel quiet and flooded, `{quiet_max_ns, flooded_max_ns, ratios}`
//!   each `[thread, irq]`, and the losses `{written, read_back}` (the guest's) against
//!   `{taken, dropped}` (the core's echo count), `exact` when they add up.
//! - `missing`: strings naming each absent section and why. `oob.sirq`, when the console
//!   has no `sirq:` line (no guest, or a core not measuring it yet), is omitted from `oob`
//!   and listed here.

use serde_json::{Map, Value, json};

use super::Report;
use super::model::{Histogram, Latency};

fn latency(latency: &Latency) -> Map<String, Value> {
    let p99 = latency.percentile(990);
    let p999 = latency.percentile(999);
    let histogram = latency.histogram.as_ref();
    let mut object = Map::new();
    object.insert("min_ns".into(), json!(latency.min_ns));
    object.insert("avg_ns".into(), json!(latency.avg_ns));
    object.insert("p99_ns".into(), json!(p99.map(|p| p.ns())));
    object.insert("p999_ns".into(), json!(p999.map(|p| p.ns())));
    object.insert("max_ns".into(), json!(latency.max_ns));
    object.insert("samples".into(), json!(latency.samples));
    object.insert("overruns".into(), json!(latency.overruns));
    object.insert("p99_lower_bound".into(), json!(p99.map(|p| p.is_lower_bound())));
    object.insert("p999_lower_bound".into(), json!(p999.map(|p| p.is_lower_bound())));
    object.insert(
        "histogram_limit_ns".into(),
        json!(histogram.map(|h| h.limit_us.saturating_mul(1000))),
    );
    object.insert("histogram_above".into(), json!(histogram.map(|h| h.above)));
    object.insert("histogram".into(), latency.percentile_histogram().map_or(Value::Null, buckets));
    object
}

/// The histogram percentiles come from, as `{bucket_ns, limit_ns, above, buckets}` with
/// `buckets` the non-empty ones as `[start_ns, samples]` pairs.
fn buckets(histogram: &Histogram) -> Value {
    let buckets: Vec<[u64; 2]> = histogram
        .counts
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(bucket, &count)| [(bucket as u64).saturating_mul(histogram.bucket_ns), count])
        .collect();
    json!({
        "bucket_ns": histogram.bucket_ns,
        "limit_ns": histogram.limit_us.saturating_mul(1000),
        "above": histogram.above,
        "buckets": buckets,
    })
}

fn optional(value: Option<&Latency>) -> Value {
    value.map_or(Value::Null, |l| Value::Object(latency(l)))
}

/// The report as JSON (see the module documentation for the keys).
pub fn to_json(report: &Report) -> Value {
    let m = &report.measurements;
    let run = &report.run;
    let per_cpu: Vec<Value> = m
        .inband_per_cpu
        .iter()
        .map(|cpu| {
            let mut object = Map::new();
            object.insert("cpu".into(), json!(cpu.cpu));
            object.extend(latency(&cpu.latency));
            Value::Object(object)
        })
        .collect();
    let mut oob = Map::new();
    oob.insert("thread".into(), optional(m.oob_thread.as_ref()));
    oob.insert("irq".into(), optional(m.oob_irq.as_ref()));
    if let Some(sirq) = &m.oob_sirq {
        oob.insert("sirq".into(), Value::Object(latency(sirq)));
    }
    let mut report_json = json!({
        "version": 1,
        "oob": oob,
        "inband": optional(m.inband().as_ref()),
        "inband_per_cpu": per_cpu,
        "replay_log": m.replay_log.map(|r| json!({
            "logged": r.logged,
            "replayed": r.replayed,
            "coalesced": r.coalesced,
            "withdrawn": r.withdrawn,
            "max_depth": r.max_depth,
            "lost": r.lost,
        })),
        "guest": {
            "restarts": m.guest_restarts.iter().map(|r| json!({
                "number": r.number,
                "cause": r.cause,
                "at_ms": r.at_ms,
                "vcpus_out_us": r.vcpus_out_us,
                "discarded": r.discarded,
                "released": r.released,
                "reloaded_ms": r.reloaded_ms,
                "first_output_ms": r.first_output_ms,
                "core_heap_bytes": r.core_heap_bytes,
            })).collect::<Vec<_>>(),
            "boot_windows": match &m.restart_windows {
                Some(Ok(windows)) => json!({
                    "boots": windows.windows.iter().map(|w| json!({
                        "boot": w.boot,
                        "max_ns": w.max_ns,
                        "samples": w.samples,
                    })).collect::<Vec<_>>(),
                    "after_restarts_max_ns": windows.after_restarts_max_ns(),
                    "ratios": windows.ratios(),
                }),
                _ => Value::Null,
            },
        },
        "run": {
            "id": run.id,
            "profile": run.profile,
            "board": run.board,
            "gic": run.gic,
            "cpus": run.cpus,
            "load": run.load,
            "duration_s": run.duration_s,
            "qemu": run.qemu,
            "guest_kernel": run.guest_kernel,
            "icount": run.icount,
            "mode": run.mode(),
            "tag": run.tag,
            "period_us": run.period_us,
            "rtd_arrivals_ms": run.rtd_arrivals_ms,
            "revision": run.provenance.revision,
            "host": run.provenance.host,
            "irqsoff_period_us": run.irqsoff_period_us,
            "exit_code": report.exit_code,
            "interrupted": report.interrupted,
            "core": report.core,
        },
        "series": {
            "oob_thread_per_second": m.oob_thread_per_second.iter().map(|second| json!({
                "min_ns": second.min_ns,
                "avg_ns": second.avg_ns,
                "max_ns": second.max_ns,
                "overruns": second.overruns,
            })).collect::<Vec<_>>(),
            "inband_per_second": m.inband_per_second.iter().map(|second| json!({
                "cpu": second.cpu,
                "second": second.second,
                "max_ns": second.max_ns,
            })).collect::<Vec<_>>(),
        },
        "missing": report.missing(),
        "sources": { "oob": "core", "replay_log": "core", "inband": "guest-reported" },
    });
    if let Some(Ok(trip)) = &m.channel_round_trip
        && let Some(object) = report_json.as_object_mut()
    {
        object.insert(
            "channel".into(),
            json!({
                "round_trip": {
                    "count": trip.count,
                    "message_bytes": trip.message_bytes,
                    "min_ns": trip.min_ns,
                    "avg_ns": trip.avg_ns,
                    "p99_ns": trip.p99_ns,
                    "max_ns": trip.max_ns,
                },
                "echo": {
                    "wakeups": trip.echo_wakeups,
                    "bytes": trip.echo_bytes,
                    "cpu_ns": trip.echo_cpu_ns,
                    "cpu_ns_per_wakeup": trip.echo_cpu_ns_per_wakeup(),
                },
            }),
        );
        if let Some(sources) = object.get_mut("sources").and_then(Value::as_object_mut) {
            sources.insert("channel".into(), json!("guest-reported, backed by the core's echo count"));
        }
    }
    if let Some(Ok(flood)) = &m.channel_flood
        && let Some(object) = report_json.as_object_mut()
    {
        let channel = object.entry("channel").or_insert_with(|| json!({}));
        if let Some(channel) = channel.as_object_mut() {
            channel.insert(
                "flood".into(),
                json!({
                    "quiet_max_ns": flood.quiet_max_ns,
                    "flooded_max_ns": flood.flooded_max_ns,
                    "ratios": flood.ratios(),
                    "written": flood.written,
                    "read_back": flood.read_back,
                    "taken": flood.taken,
                    "dropped": flood.dropped,
                    "exact": flood.exact(),
                }),
            );
        }
    }
    if !m.irqsoff.is_empty()
        && let Some(object) = report_json.as_object_mut()
    {
        let top: Vec<Value> = m
            .irqsoff
            .iter()
            .map(|entry| {
                json!({
                    "pc": format!("{:#x}", entry.pc),
                    "symbol": entry.symbol,
                    "samples": entry.samples,
                    "longest_ns": entry.longest_ns,
                    "longest_periods": run.irqsoff_period_us.map(|us| entry.longest_ns / us.max(1).saturating_mul(1000)),
                    "idle": entry.symbol.as_deref().is_some_and(super::model::is_idle_path),
                })
            })
            .collect();
        let totals = m.irqsoff_totals.map(|t| json!({ "samples": t.samples, "pcs": t.pcs, "dropped": t.dropped }));
        object.insert("irqsoff".into(), json!({ "top": top, "totals": totals }));
    }
    report_json
}
