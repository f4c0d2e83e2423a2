//! The report of a `cargo xtask run`: the console is captured while it is shown live, then
//! parsed ([`parse`]) into the core's oob latencies, the guest's in-band (cyclictest)
//! latencies and the replay log's accounting ([`model`]), printed as a side-by-side table
//! ([`table`]) and written to `target/report/<run>/` (`<run>` a UTC timestamp such as
//! `20261125-184900`; `target/report/latest` links to the newest):
//!
//! - `console.log`: the raw console (QEMU's stdout and stderr), written as it arrives, so
//!   it survives an interrupted run;
//! - `report.json`: the numbers (keys in [`json`]);
//! - `histogram.txt`: the oob histograms in `rtla timerlat hist`'s layout ([`histogram_txt`]);
//! - `cyclictest.json`: cyclictest's own `--json` output, when the guest printed it;
//! - `latency.svg`: the histograms on one log-scale chart ([`svg`]).
//!
//! Percentiles (p99, p99.9) come from the histograms, so they are exact only to a bucket
//! (100 ns for the core's oob contexts, 1 µs otherwise; the bucket's lower bound). A section the console lacks (e.g.
//! no latency test with `--duration 0`) is reported missing, never an error.

pub mod channel;
pub mod histogram_txt;
pub mod json;
pub mod model;
pub mod parse;
pub mod progress;
pub mod provenance;
pub mod restart;
pub mod svg;
pub mod symbols;
pub mod table;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::paths::target_dir;
use crate::process;
use model::{Measurements, RunInfo};

/// One run's report: its settings and what its console showed.
#[derive(Debug, Clone)]
pub struct Report {
    /// How the run was set up.
    pub run: RunInfo,
    /// Whether a guest ran (in-band rows expected).
    pub guest: bool,
    /// QEMU's exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// What the console showed.
    pub measurements: Measurements,
    /// Whether Ctrl-C cut the run short (its figures are partial).
    pub interrupted: bool,
    /// Whether the core ran (false for `cargo xtask guest`'s baseline: no oob rows).
    pub core: bool,
    /// cyclictest's own `--json` output, as the guest printed it.
    pub cyclictest_json: Option<String>,
}

impl Report {
    /// Builds the report of a run from its console text.
    pub fn new(run: RunInfo, guest: bool, exit_code: Option<i32>, console: &str) -> Self {
        let cyclictest_json = parse::cyclictest_json(console);
        Self { run, guest, exit_code, measurements: parse::parse(console), interrupted: false, core: true, cyclictest_json }
    }

    /// The report of a baseline run, the guest without the core: every console line is the
    /// guest's; `exit_code` is QEMU's.
    pub fn baseline(run: RunInfo, exit_code: Option<i32>, console: &str) -> Self {
        let measurements = parse::parse_bare_guest(console);
        let cyclictest_json = parse::cyclictest_json(console);
        Self { run, guest: true, exit_code, measurements, interrupted: false, core: false, cyclictest_json }
    }

    /// Names the irqs-off hunter's PCs with the guest kernel's System.map at `path`; a map
    /// that cannot be read or has no text symbols (Debian's stub) leaves them as addresses,
    /// with a warning.
    pub fn symbolize(&mut self, path: &Path) {
        match symbols::SystemMap::load(path) {
            Ok(map) if map.is_empty() => eprintln!(
                "xtask: warning: irqs-off locations stay unnamed: {} has no text symbols (Debian's is a stub; \
                 the real one is in linux-image-<version>-dbg): pass --system-map FILE",
                path.display()
            ),
            Ok(map) => self.measurements.symbolize(&map),
            Err(err) => eprintln!("xtask: warning: irqs-off locations stay unnamed: {err:#}"),
        }
    }

    /// The sections the console lacked, with why (see [`Measurements::missing`]); the
    /// replay log is only expected with a guest.
    pub fn missing(&self) -> Vec<String> {
        if !self.core {
            // The baseline: only cyclictest is expected.
            let mut missing = self.measurements.missing(true, false);
            missing.retain(|line| line.starts_with("inband"));
            return missing;
        }
        let mut missing = self.measurements.missing(self.guest, self.guest);
        if self.run.duration_s == 0 {
            missing.iter_mut().filter(|line| line.starts_with("oob.thread") || line.starts_with("oob.irq")).for_each(
                |line| line.push_str(" (--duration 0: no latency test)"),
            );
        }
        missing
    }

    /// Writes `report.json`, `histogram.txt` (when the run has oob histograms),
    /// `cyclictest.json` (when the guest printed it) and `latency.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(&json::to_json(self)).context("cannot serialize the report")?;
        write_file(&dir.join("report.json"), format!("{json}\n").as_bytes())?;
        if let Some(text) = histogram_txt::render(self) {
            write_file(&dir.join("histogram.txt"), text.as_bytes())?;
        }
        if let Some(json) = &self.cyclictest_json {
            write_file(&dir.join("cyclictest.json"), json.as_bytes())?;
        }
        write_file(&dir.join("latency.svg"), svg::render(self).as_bytes())
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Where the reports go: `target/report`.
pub fn reports_dir() -> PathBuf {
    target_dir().join("report")
}

/// `YYYYMMDD-HHMMSS` (UTC) for `seconds` since the Unix epoch.
pub fn timestamp(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Where a run's report goes: a fresh folder under `target/report/` named by the time and
/// the tag, or the folder the user named.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// `--tag NAME`: appended to the run's name (`<timestamp>-NAME`) and kept in `run.tag`.
    pub tag: Option<String>,
    /// `--out DIR`: the report goes there (created if need be) instead.
    pub out: Option<PathBuf>,
}

/// Whether `tag` can name a folder: letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn valid_tag(tag: &str) -> Result<String, String> {
    let fine = !tag.is_empty()
        && tag.len() <= 64
        && !tag.starts_with('.')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine { Ok(tag.to_owned()) } else { Err(format!("`{tag}`: a tag is up to 64 letters, digits, -, _ or . (not leading)")) }
}

/// Creates the run's report folder: `--out DIR` as given, else `target/report/<timestamp>`
/// (`-<tag>` appended, a `-N` suffix should that exist); returns the run's name and path.
pub fn create_run_dir(destination: &Destination) -> Result<(String, PathBuf)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let stamp = match &destination.tag {
        Some(tag) => format!("{}-{tag}", timestamp(now)),
        None => timestamp(now),
    };
    if let Some(out) = &destination.out {
        fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        return Ok((stamp, out.clone()));
    }
    let base = reports_dir();
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    for attempt in 1..100 {
        let id = if attempt == 1 { stamp.clone() } else { format!("{stamp}-{attempt}") };
        let dir = base.join(&id);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    anyhow::bail!("cannot find a free run directory for {stamp} in {}", base.display())
}

/// Points `target/report/latest` at run `id` (replacing the link atomically).
pub fn link_latest(id: &str) -> Result<()> {
    link_named("latest", id)
}

/// Points `target/report/<name>` at run `id` (replacing the link atomically).
pub fn link_named(name: &str, id: &str) -> Result<()> {
    let base = reports_dir();
    let latest = base.join(name);
    let staging = base.join(format!(".latest-{id}"));
    let _ = fs::remove_file(&staging);
    std::os::unix::fs::symlink(id, &staging)
        .with_context(|| format!("cannot create the link {}", staging.display()))?;
    fs::rename(&staging, &latest).with_context(|| format!("cannot replace {}", latest.display()))
}

/// Set by [`on_interrupt`] when Ctrl-C (SIGINT) reached this process during a watched run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Whether Ctrl-C interrupted the last watched run ([`run_captured`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// While alive, SIGINT only records that the run was interrupted (restored on drop): Ctrl-C
/// at the terminal then stops only the child (QEMU, whose `exec` reset the handler to the
/// default), and the run still ends with its table and report of what the console showed so
/// far, marked interrupted.
struct CatchInterrupts {
    previous: libc::sighandler_t,
}

impl CatchInterrupts {
    fn new() -> Self {
        INTERRUPTED.store(false, Ordering::Relaxed);
        let handler = on_interrupt as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the previous
        // disposition is kept to restore it.
        let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
        Self { previous }
    }
}

impl Drop for CatchInterrupts {
    fn drop(&mut self) {
        if self.previous != libc::SIG_ERR {
            // SAFETY: restores the disposition `signal` returned, which was valid before.
            unsafe { libc::signal(libc::SIGINT, self.previous) };
        }
    }
}

/// How a watched run ends besides exiting: the watchdog's limit (`None`: none, for an
/// interactive guest), and the marker after which the run may be stopped (the core's verdict
/// line, see [`crate::verdict::Nonce::end_marker`]).
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Kill the run after this long.
    pub watchdog: Option<std::time::Duration>,
    /// Stop the run shortly after this text appeared.
    pub end_marker: Option<String>,
    /// What the terminal shows meanwhile.
    pub view: progress::View,
}

/// Runs `cmd` (stdin inherited), copying its stdout and stderr to ours as they arrive and
/// into `log` and the returned text (lossy UTF-8, `\r` removed), ending it as `watch` says.
/// Ctrl-C stops the child only (see [`CatchInterrupts`], and [`interrupted`] says so
/// afterwards); what it printed until then is returned.
pub fn run_captured(cmd: &mut Command, log: &Path, watch: &Watch) -> Result<(process::Ending, String)> {
    run_timed(cmd, log, watch).map(|(ending, text, _)| (ending, text))
}

/// [`run_captured`], also returning when each of the core's `RTD|` lines arrived, since
/// the run started (see [`model::host_dominated`]).
pub fn run_timed(cmd: &mut Command, log: &Path, watch: &Watch) -> Result<(process::Ending, String, Vec<std::time::Duration>)> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let sink = Arc::new(Mutex::new((file, Vec::<u8>::new())));
    let seen = Arc::new(AtomicBool::new(false));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{}`", process::describe(cmd)))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let terminal = Arc::new(progress::Terminal::new(watch.view));
    let copy = |mut from: Box<dyn Read + Send>, to_stderr: bool, sink: Arc<Mutex<(File, Vec<u8>)>>| {
        let mut marker = process::MarkerWatch::new(watch.end_marker.as_deref(), Arc::clone(&seen));
        let terminal = Arc::clone(&terminal);
        thread::spawn(move || -> io::Result<()> {
            let mut chunk = [0u8; 8192];
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                let bytes = &chunk[..n];
                marker.feed(bytes);
                terminal.show(bytes, to_stderr);
                let mut guard = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let (file, buffer) = &mut *guard;
                buffer.extend_from_slice(bytes);
                file.write_all(bytes)?;
            }
        })
    };
    let _interrupts = CatchInterrupts::new();
    let out = copy(Box::new(stdout), false, Arc::clone(&sink));
    let err = copy(Box::new(stderr), true, Arc::clone(&sink));
    // A day stands in for "no watchdog" (an interactive guest).
    let limit = watch.watchdog.unwrap_or(std::time::Duration::from_secs(24 * 3600));
    let ending = process::wait_watched(&mut child, limit, &seen)?;
    for (name, copier) in [("stdout", out), ("stderr", err)] {
        match copier.join() {
            Ok(result) => result.with_context(|| format!("cannot copy QEMU's {name} to {}", log.display()))?,
            Err(_) => anyhow::bail!("the thread copying QEMU's {name} panicked"),
        }
    }
    terminal.finish();
    let guard = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let text = String::from_utf8_lossy(&guard.1).replace('\r', "");
    Ok((ending, text, terminal.rtd_arrivals()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parse::tests::{CYCLICTEST, OOB, SIRQ};
    use serde_json::Value;

    fn run_info() -> RunInfo {
        RunInfo {
            id: "20261125-184900".into(),
            profile: "virt-gicv3-4".into(),
            board: "qemu-virt".into(),
            gic: Some("v3".into()),
            cpus: 4,
            load: "grinder".into(),
            duration_s: 5,
            qemu: "qemu-system-aarch64 10.0.2".into(),
            guest_kernel: Some("vmlinuz-6.12.117+deb12-rt-arm64".into()),
            icount: false,
            period_us: 1000,
            irqsoff_period_us: None,
            tag: Some("t1".into()),
            rtd_arrivals_ms: Vec::new(),
            provenance: provenance::Provenance { revision: Some("0123456789ab".into()), host: "box, 2 CPUs".into() },
        }
    }

    fn full() -> Report {
        Report::new(run_info(), true, Some(0), &format!("{OOB}{CYCLICTEST}"))
    }

    #[test]
    fn json_has_every_documented_key() {
        let json = json::to_json(&full());
        let latency_keys = ["min_ns", "avg_ns", "p99_ns", "p999_ns", "max_ns", "samples"];
        for path in ["/oob/thread", "/oob/irq", "/inband", "/inband_per_cpu/0", "/inband_per_cpu/1"] {
            for key in latency_keys {
                let value = json.pointer(&format!("{path}/{key}"));
                assert!(value.is_some_and(Value::is_number), "{path}/{key}: {value:?}");
            }
        }
        assert_eq!(json.pointer("/inband_per_cpu/1/cpu"), Some(&Value::from(1)));
        assert_eq!(json.pointer("/oob/thread/p99_ns"), Some(&Value::from(60_000)));
        assert_eq!(json.pointer("/inband_per_cpu/0/p999_lower_bound"), Some(&Value::Bool(true)));
        assert_eq!(json.pointer("/oob/irq/min_ns"), Some(&Value::from(1_250)));
        assert_eq!(json.pointer("/inband/samples"), Some(&Value::from(1994)));
        for key in ["logged", "replayed", "coalesced", "max_depth", "lost"] {
            assert!(json.pointer(&format!("/replay_log/{key}")).is_some_and(Value::is_number), "{key}");
        }
        assert_eq!(json.pointer("/replay_log/logged"), Some(&Value::from(7143)));
        for key in ["board", "gic", "cpus", "load", "duration_s", "qemu", "guest_kernel", "icount"] {
            assert!(json.pointer(&format!("/run/{key}")).is_some_and(|v| !v.is_null()), "run.{key}");
        }
        assert_eq!(json.pointer("/run/icount"), Some(&Value::Bool(false)));
        assert!(json.pointer("/oob/sirq").is_none());
        let missing = json["missing"].as_array().unwrap();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].as_str().unwrap().starts_with("oob.sirq"));
    }

    #[test]
    fn json_carries_the_load_and_sirq_when_measured() {
        let report = Report::new(run_info(), true, Some(0), &format!("{OOB}{SIRQ}{CYCLICTEST}"));
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/run/load"), Some(&Value::from("grinder")));
        for key in ["min_ns", "avg_ns", "p99_ns", "p999_ns", "max_ns", "samples", "histogram_limit_ns", "histogram_above"] {
            let value = json.pointer(&format!("/oob/sirq/{key}"));
            assert!(value.is_some_and(Value::is_number), "oob.sirq.{key}: {value:?}");
        }
        for key in ["p99_lower_bound", "p999_lower_bound"] {
            assert!(json.pointer(&format!("/oob/sirq/{key}")).is_some_and(Value::is_boolean), "oob.sirq.{key}");
        }
        // The same keys as oob.thread.
        let keys = |path: &str| json.pointer(path).unwrap().as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys("/oob/sirq"), keys("/oob/thread"));
        assert_eq!(json.pointer("/oob/sirq/overruns"), Some(&Value::Null));
        assert_eq!(json.pointer("/oob/sirq/samples"), Some(&Value::from(512)));
        assert_eq!(json.pointer("/oob/sirq/p99_ns"), Some(&Value::from(120_000)));
        assert_eq!(json.pointer("/oob/sirq/p999_lower_bound"), Some(&Value::Bool(true)));
        assert_eq!(json["missing"], Value::Array(Vec::new()));
        let text = table::render(&report);
        let row = text.lines().find(|line| line.starts_with("  sirq ")).unwrap_or_else(|| panic!("no sirq row:\n{text}"));
        for cell in ["12.000", "35.000", "120.000", ">=1000.000", "950.000", "512"] {
            assert!(row.contains(cell), "{cell} not in {row:?}");
        }
        assert!(svg::render(&report).contains("guest sirq: 512 samples, 2 at &gt;= 1000 us"));
    }

    #[test]
    fn irqsoff_is_symbolized_in_json_and_table() {
        let console = "[ 9.0 core cpu0 INFO ] irqsoff: 263 samples with IRQs masked and an in-band IRQ waiting, at 3 PCs (7 dropped: table full)\nIRQSOFF| pc 0xffff800081234024 samples 12 longest_ns 400000\nIRQSOFF| pc 0xffff800081200010 samples 250 longest_ns 900000\nIRQSOFF| pc 0x1000 samples 1 longest_ns 100000\n";
        let mut info = run_info();
        info.irqsoff_period_us = Some(100);
        let mut report = Report::new(info, true, Some(0), console);
        assert!(full().measurements.irqsoff.is_empty());
        assert!(json::to_json(&full()).get("irqsoff").is_none());
        assert!(!table::render(&full()).contains("irqs-off hunter"));
        report.measurements.symbolize(&symbols::SystemMap::parse(
            "ffff800081200000 t default_idle_call\nffff800081234000 T _raw_spin_lock_irqsave\n",
        ));
        let json = json::to_json(&report);
        let top = json.pointer("/irqsoff/top").and_then(Value::as_array).expect("irqsoff.top");
        assert_eq!(top.len(), 3);
        for entry in top {
            let keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 6, "{keys:?}");
            for key in ["pc", "symbol", "samples", "longest_ns", "longest_periods", "idle"] {
                assert!(keys.contains(&key), "{key} in {keys:?}");
            }
        }
        assert_eq!(top[0]["pc"], "0xffff800081200010");
        assert_eq!(top[0]["symbol"], "default_idle_call+0x10");
        assert_eq!(top[0]["samples"], 250);
        assert_eq!(top[0]["longest_ns"], 900_000);
        assert_eq!(top[1]["symbol"], "_raw_spin_lock_irqsave+0x24");
        assert_eq!(top[2]["symbol"], Value::Null);
        assert_eq!((top[0]["longest_periods"].clone(), top[0]["idle"].clone()), (Value::from(9), Value::Bool(true)));
        assert_eq!((top[1]["longest_periods"].clone(), top[1]["idle"].clone()), (Value::from(4), Value::Bool(false)));
        assert_eq!(json.pointer("/irqsoff/totals/dropped"), Some(&Value::from(7)));
        let text = table::render(&report);
        assert!(text.contains("irqs-off hunter: top locations"), "{text}");
        assert!(text.contains("263 samples at 3 PCs, 7 dropped (table full)"), "{text}");
        let row = text.lines().find(|line| line.contains("default_idle_call+0x10")).unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains("250") && row.contains("9 x 100 us") && row.contains("idle"), "{row}");
        assert!(text.lines().any(|line| line.trim_start().starts_with("0x1000")), "{text}");
    }

    #[test]
    fn table_has_every_row() {
        let text = table::render(&full());
        for row in ["oob-irq", "oob-thread", "in-band ", "in-band cpu0", "in-band cpu1"] {
            assert!(text.contains(&format!("  {row}")), "no row {row}:\n{text}");
        }
        assert!(!text.contains("  sirq"), "{text}");
        assert!(text.contains("67.028"), "{text}");
        assert!(text.contains("5681.136"), "{text}");
        assert!(text.contains("replay log: logged 7143"), "{text}");
    }

    #[test]
    fn the_channel_figures_reach_the_table_and_json_only_when_the_core_backs_them() {
        let ping = "guest| guest: ping: 200 round trips of 64 bytes over companion.echo: min 49.9 us, avg 84.6 us, p99 378.9 us, max 3618.3 us\n";
        let echo = "[ 7.1 core cpu0 INFO ] channel: companion.echo: 200 wake-ups, 12800 bytes echoed, 352400 ns of CPU time, 0 bytes dropped\n";
        let report = Report::new(run_info(), true, Some(0), &format!("{OOB}{CYCLICTEST}\n{ping}{echo}"));
        let text = table::render(&report);
        assert!(text.contains("min 49.900, avg 84.600, p99 378.900, max 3618.300 us; echo thread 1762 ns"), "{text}");
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/channel/round_trip/p99_ns"), Some(&Value::from(378_900)));
        assert_eq!(json.pointer("/channel/echo/cpu_ns_per_wakeup"), Some(&Value::from(1762)));
        // Without the core's count: neither in the table nor in the JSON, said under missing.
        let unbacked = Report::new(run_info(), true, Some(0), &format!("{OOB}{CYCLICTEST}\n{ping}"));
        assert!(!table::render(&unbacked).contains("channel round trip ("));
        assert!(json::to_json(&unbacked).pointer("/channel").is_none());
        assert!(unbacked.missing().iter().any(|m| m.starts_with("channel.round_trip: ignored")));
    }

    #[test]
    fn the_channel_flood_line_states_the_ratios_and_the_balance() {
        let rts = |max: &str| format!("RTS|      0.000|      0.050|{max:>11}|       0|     0|    00:00:03/00:00:03\n");
        let console = format!(
            "{}{}{}{}[ 11.5 core cpu0 INFO ] channel: companion.echo: 9 wake-ups, 4096 bytes echoed, 1 ns of CPU time, \
             1024 bytes dropped\nguest| guest: channel flood: written 4096 bytes, read back 3072 bytes\n",
            rts("0.064"),
            rts("0.096"),
            rts("2.224"),
            rts("0.096")
        );
        let report = Report::new(run_info(), true, Some(0), &console);
        let text = table::render(&report);
        assert!(text.contains("oob-thread max quiet 0.064, flooded 2.224 us (x34.75)"), "{text}");
        assert!(text.contains("target x1.1 MISSED; written 4096 bytes = read back 3072 + dropped by the core 1024: exact"), "{text}");
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/channel/flood/flooded_max_ns/0"), Some(&Value::from(2224)));
        assert_eq!(json.pointer("/channel/flood/exact"), Some(&Value::Bool(true)));
    }

    #[test]
    fn the_boot_windows_of_a_restarted_guest_reach_the_table_and_json() {
        let console = "[ 3.1 core cpu0 INFO ] guest: restart 1: the boot before it: oob thread max 368 ns, oob irq max 320 ns, \
                       3100 samples\n[ 9.9 core cpu0 INFO ] latmus: last phase: oob thread max 432 ns, oob irq max 304 ns, \
                       6800 samples\n";
        let report = Report::new(run_info(), true, Some(0), console);
        let text = table::render(&report);
        assert!(
            text.contains("oob max per boot (thread/irq us): boot 1 0.368/0.320, boot 2 0.432/0.304; after a restart 0.432/0.304 us = x1.17/x0.95 the first boot, target x1.1 MISSED"),
            "{text}"
        );
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/guest/boot_windows/boots/1/max_ns/0"), Some(&Value::from(432)));
        assert_eq!(json.pointer("/guest/boot_windows/after_restarts_max_ns/1"), Some(&Value::from(304)));
        assert_eq!(json::to_json(&full()).pointer("/guest/boot_windows"), Some(&Value::Null));
    }

    #[test]
    fn a_baseline_reports_cyclictest_alone() {
        // Without the core, the guest's lines carry no mark.
        let bare: String = CYCLICTEST.lines().map(|line| format!("{}\n", line.strip_prefix("guest| ").unwrap_or(line))).collect();
        let report = Report::baseline(run_info(), Some(0), &bare);
        let text = table::render(&report);
        assert!(!text.lines().any(|line| line.starts_with("  oob-")) && !text.contains("replay log"), "{text}");
        assert!(text.contains("baseline: Linux alone") && text.contains("  in-band cpu1"), "{text}");
        assert_eq!(report.missing(), Vec::<String>::new());
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/run/core"), Some(&Value::Bool(false)));
        assert_eq!(json.pointer("/inband/samples"), full().measurements.inband().unwrap().samples.map(Value::from).as_ref());
    }

    #[test]
    fn an_interrupted_run_keeps_its_per_second_figures() {
        // The run ended after two seconds: RTT and RTD lines, no summary, no histogram.
        let console: String = OOB.lines().take_while(|line| !line.starts_with("RTS|")).map(|line| format!("{line}\n")).collect();
        let mut report = Report::new(run_info(), true, None, &console);
        report.interrupted = true;
        let thread = report.measurements.oob_thread.clone().expect("partial oob thread figures");
        assert_eq!((thread.min_ns, thread.avg_ns, thread.max_ns), (Some(-4_000), Some(65_050), Some(5_681_136)));
        assert_eq!(thread.overruns, Some(45));
        assert!(report.measurements.oob_thread_partial);
        let json = json::to_json(&report);
        assert_eq!(json.pointer("/run/interrupted"), Some(&Value::Bool(true)));
        assert_eq!(json.pointer("/oob/thread/max_ns"), Some(&Value::from(5_681_136)));
        assert_eq!(json.pointer("/series/oob_thread_per_second/1/avg_ns"), Some(&Value::from(70_000)));
        assert!(report.missing().iter().any(|m| m.starts_with("oob.thread: partial, from 2 per-second")), "{:?}", report.missing());
        // A complete run is not partial, and still carries its series.
        assert!(!full().measurements.oob_thread_partial);
        assert_eq!(full().measurements.oob_thread_per_second.len(), 2);
        let series = json::to_json(&full());
        assert_eq!(series.pointer("/series/inband_per_second/2/cpu"), Some(&Value::from(1)));
        assert_eq!(series.pointer("/series/inband_per_second/2/max_ns"), Some(&Value::from(1_200_000)));
    }

    #[test]
    fn the_table_and_json_state_the_mode_and_flag_host_dominated_figures() {
        // The fixture's oob thread: 45 overruns and a worst case of 5.7 ms at a 1 ms period.
        let text = table::render(&full());
        assert!(text.lines().next().unwrap().contains("mode tcg, 4 CPUs, load grinder, period 1000 us"), "{text}");
        let flagged: Vec<&str> = text.lines().filter(|line| line.starts_with("NOT A RESULT")).collect();
        assert_eq!(flagged.len(), 1, "{text}");
        assert!(flagged[0].contains("45 overruns") && flagged[0].contains("beyond the 1000 us period"), "{}", flagged[0]);
        assert_eq!(json::to_json(&full()).pointer("/run/mode"), Some(&Value::from("tcg")));

        let mut info = run_info();
        info.icount = true;
        let icount = Report::new(info, true, Some(0), &format!("{OOB}{CYCLICTEST}"));
        let text = table::render(&icount);
        assert!(text.contains("mode icount") && !text.contains("NOT A RESULT"), "{text}");
        assert_eq!(json::to_json(&icount).pointer("/run/mode"), Some(&Value::from("icount")));
        assert_eq!(json::to_json(&icount).pointer("/run/period_us"), Some(&Value::from(1000)));
        assert_eq!(json::to_json(&icount).pointer("/run/revision"), Some(&Value::from("0123456789ab")));
        assert_eq!(json::to_json(&icount).pointer("/run/host"), Some(&Value::from("box, 2 CPUs")));

        // Under TCG, calm figures with every sample stand as results.
        let calm = "RTT|  00:00:01  (oob thread context, 1000 us period)\nRTS|      1.000|      2.000|      3.000|       0|     0|    00:00:05/00:00:05\nlatmus: 5000 thread samples, 5000 irq samples, 0 + 0 overruns\n";
        assert!(model::host_dominated(&run_info(), &parse::parse(calm)).is_none());
        let short = calm.replace("5000 thread", "4000 thread");
        let why = model::host_dominated(&run_info(), &parse::parse(&short)).expect("samples missing");
        assert!(why.contains("4000 of 5000 samples"), "{why}");

        // Calm figures whose seconds reached the host far apart: host time fell behind.
        let mut late = run_info();
        late.rtd_arrivals_ms = vec![10_000, 11_000, 17_500, 18_000, 19_000, 20_000];
        let why = model::host_dominated(&late, &parse::parse(calm)).expect("host time behind");
        assert!(why.starts_with("NOT A RESULT") && why.contains("5 virtual s took 10.0 s of host time, up to 6.5 s"), "{why}");
        let table = table::render(&Report::new(late.clone(), true, Some(0), &format!("{calm}{CYCLICTEST}")));
        assert_eq!(table.lines().filter(|line| line.starts_with("NOT A RESULT")).count(), 1, "{table}");
        // The same arrivals under -icount say nothing: virtual time is the instruction count.
        late.icount = true;
        assert!(model::host_dominated(&late, &parse::parse(calm)).is_none());
        let mut steady = run_info();
        steady.rtd_arrivals_ms = (0..6).map(|second| 10_000 + second * 1_050).collect();
        assert!(model::host_dominated(&steady, &parse::parse(calm)).is_none());
    }

    #[test]
    fn svg_is_well_formed_with_both_series_on_a_log_axis() {
        let svg = svg::render(&full());
        assert!(svg.starts_with("<svg ") && svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("oob thread: 4956 samples"), "{svg}");
        assert!(svg.contains("in-band cyclictest (all vCPUs): 1994 samples, 3 at &gt;= 1000 us, p99 400 us, max 5965.0 us"), "{svg}");
        assert!(svg.contains("(log scale)") && svg.contains("p99 dashed, max solid"));
        assert!(svg.contains("load grinder") && svg.contains("plain TCG") && svg.contains("period 1000 us"), "the title names load, mode and period: {svg}");
        // The per-second panel: both lines in the legend, one dot per second of each.
        assert!(svg.contains("oob thread, max per second") && svg.contains("in-band cyclictest, max per second (all vCPUs)"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2 + 2, "{svg}");
        assert!(!svg.contains("no per-second figures"));
        let mut bare = full();
        bare.measurements.oob_thread_per_second.clear();
        bare.measurements.inband_per_second.clear();
        assert!(svg::render(&bare).contains("no per-second figures in this run"));
        // Two series outlines, their legend marks and the dashed p99 markers.
        assert!(svg.matches("stroke=\"#D62728\"").count() >= 3, "{svg}");
        assert!(svg.matches("stroke=\"#1F77B4\"").count() >= 3, "{svg}");
        for label in [">\n1\n<", ">\n10\n<", ">\n100\n<"] {
            assert!(svg.contains(label), "no axis label {label:?}");
        }
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn svg_scale_follows_the_populated_buckets_not_a_stray_open_range() {
        let console = "HSD|    thread|           3|       100\nHSD|    thread|          37|         1\nHSD|    thread|        1000|         1\n";
        let report = Report::new(run_info(), false, Some(0), console);
        let svg = svg::render(&report);
        // The x axis's tick labels (the y axis's are anchored at their end).
        let x_ticks = |svg: &str| -> Vec<String> {
            let tick = regex::Regex::new(r#"text-anchor="middle"[^>]*>\n(\d+)\n</text>"#).unwrap();
            tick.captures_iter(svg).map(|caps| caps[1].to_owned()).collect()
        };
        assert_eq!(x_ticks(&svg), ["1", "10"], "axis to 50 us: {svg}");
        assert!(svg.contains("1 at &gt;= 1000 us"), "the open range is counted in the legend: {svg}");
        let only_beyond = svg::render(&Report::new(run_info(), false, Some(0), "HSD|    thread|        1000|         7\n"));
        assert!(x_ticks(&only_beyond).contains(&"100".to_owned()), "all beyond: the axis reaches the limit: {only_beyond}");
    }

    #[test]
    fn missing_sections_are_reported_not_fatal() {
        let mut info = run_info();
        info.duration_s = 0;
        let report = Report::new(info, true, Some(0), "guest| guest: uname: Linux\nguest| guest: done\n");
        let json = json::to_json(&report);
        assert!(json["oob"]["thread"].is_null() && json["oob"]["irq"].is_null());
        assert!(json["inband"].is_null() && json["replay_log"].is_null());
        assert_eq!(json["inband_per_cpu"], Value::Array(Vec::new()));
        let missing: Vec<&str> = json["missing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(missing.iter().any(|m| m.starts_with("oob.thread") && m.contains("--duration 0")), "{missing:?}");
        assert!(missing.iter().any(|m| m.starts_with("inband:")), "{missing:?}");
        assert!(missing.iter().any(|m| m.starts_with("replay_log")), "{missing:?}");
        let text = table::render(&report);
        assert!(text.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["oob-thread", "missing"]), "{text}");
        let svg = svg::render(&report);
        assert!(svg.starts_with("<svg") && svg.contains("no histogram in this run"));

        // Without a guest: only the oob rows, no in-band or replay complaints beyond the note.
        let report = Report::new(run_info(), false, Some(0), OOB);
        let text = table::render(&report);
        assert!(!text.contains("in-band"), "{text}");
        assert!(report.missing().iter().any(|m| m.contains("--no-guest")));
    }

    #[test]
    fn writes_the_files() {
        let dir = std::env::temp_dir().join(format!("xtask-report-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        full().write(&dir).unwrap();
        let json: Value = serde_json::from_str(&fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["run"]["board"], "qemu-virt");
        assert!(fs::read_to_string(dir.join("latency.svg")).unwrap().starts_with("<svg"));
        let hist = fs::read_to_string(dir.join("histogram.txt")).unwrap();
        assert!(hist.starts_with("# RTLA timerlat histogram\n# Time unit is nanoseconds (ns)\n"), "{hist}");
        let lines: Vec<&str> = hist.lines().collect();
        assert!(lines.contains(&"Index   IRQ-003   Thr-003"), "{hist}");
        // The fixture: thread bucket 3 µs holds 120 samples, none of the IRQ's.
        assert!(lines.iter().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["3000", "0", "120"]), "{hist}");
        assert!(lines.iter().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["max:", "900000", "5681136"]), "{hist}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(951_782_400), "20000229-000000");
        assert_eq!(timestamp(1_795_632_540), "20261125-184900");
    }

    #[test]
    fn captures_while_copying() {
        let dir = std::env::temp_dir().join(format!("xtask-capture-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("console.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'RTS|      1.000|      2.000|      3.000|       0|     0|    00:00:01/00:00:01'; echo err >&2; exit 3"]);
        let (ending, text) = run_captured(&mut cmd, &log, &Watch::default()).unwrap();
        assert_eq!(ending, process::Ending::Exited(3));
        assert!(text.contains("RTS|") && text.contains("err\n"));
        assert_eq!(fs::read_to_string(&log).unwrap().len(), text.len());
        fs::remove_dir_all(&dir).unwrap();
    }
}
