//! `cargo xtask irqsoff --compare KERNEL_A KERNEL_B` (or `--compare-release 6.1`): the
//! irqs-off hunter run on two guest kernels with the same profile, load, duration, period
//! and initramfs, then compared per function: which functions held in-band IRQs off while
//! one waited on one kernel only (appeared, disappeared) and which did so longer or shorter
//! on the second (grew, shrank: by at least one sampling period, the hunter's resolution).
//!
//! Each kernel's locations are named with its own `System.map`, built once from its own
//! `/proc/kallsyms` (see `guest::kallsyms`). The initramfs is the one built from Debian
//! packages, the same for both: it holds no kernel modules today; should it ever carry
//! some, each kernel needs its own (see [`Side::initramfs`]).
//!
//! The comparison goes to `target/report/irqsoff-compare-<id>/`: `compare.json` (keys in
//! [`to_json`]), `compare.svg` (the longest window per function on both kernels) and
//! `compare.txt` (the table also printed); each run keeps its own report directory,
//! named in `compare.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::guest::{self, Guest};
use crate::linux_package::LinuxPackage;
use crate::report;

/// How many functions the plot shows (the longest windows on either kernel).
const PLOT_FUNCTIONS: usize = 20;

/// The comparison flags of `cargo xtask irqsoff`.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// Compare two guest kernels (raw arm64 `Image`s, A then B): the hunter runs on each with
    /// the same load, duration, period and initramfs, then reports per function what
    /// appeared, disappeared or grew from A to B (target/report/irqsoff-compare-<id>/).
    #[arg(long, num_args = 2, value_names = ["KERNEL_A", "KERNEL_B"], conflicts_with_all = ["compare_release", "system_map"])]
    pub compare: Option<Vec<PathBuf>>,
    /// Compare Debian's newest PREEMPT_RT arm64 kernel of this upstream release (e.g. 6.1, from
    /// bookworm and its security updates) as A with the default guest kernel (the newest of
    /// all, from bookworm-backports) as B.
    #[arg(long, value_name = "RELEASE", conflicts_with = "system_map")]
    pub compare_release: Option<String>,
}

impl Flags {
    /// Whether a comparison was asked for.
    pub fn is_set(&self) -> bool {
        self.compare.is_some() || self.compare_release.is_some()
    }
}

/// One of the two kernels compared, with the files its run boots.
#[derive(Debug, Clone)]
pub struct Side {
    /// Its name in tables: the kernel file's name without `vmlinuz-`.
    pub label: String,
    /// The raw arm64 kernel `Image`.
    pub kernel: PathBuf,
    /// Its `System.map`, from its own `/proc/kallsyms`.
    pub system_map: PathBuf,
    /// The initramfs it boots: today the same for both kernels (it carries no modules).
    pub initramfs: PathBuf,
}

/// The two kernels `flags` name, with their maps (built first if need be) and initramfs.
pub fn sides(flags: &Flags) -> Result<[Side; 2]> {
    let default = Guest::prepare()?;
    let kernels = match (&flags.compare, &flags.compare_release) {
        (Some(pair), _) => {
            for kernel in pair {
                ensure!(kernel.is_file(), "--compare {}: no such file", kernel.display());
            }
            [pair[0].clone(), pair[1].clone()]
        }
        (None, Some(release)) => {
            let older = LinuxPackage::fetch_release(release)
                .with_context(|| format!("cannot fetch Debian's PREEMPT_RT arm64 kernel {release}"))?;
            [older.image()?, default.kernel.clone()]
        }
        (None, None) => bail!("no comparison asked for (--compare or --compare-release)"),
    };
    ensure!(
        kernels[0] != kernels[1],
        "both sides are {}: compare two different kernels",
        kernels[0].display()
    );
    let side = |kernel: &PathBuf| -> Result<Side> {
        let system_map = guest::system_map(kernel, &default.initramfs)
            .with_context(|| format!("cannot build the System.map of {}", kernel.display()))?;
        Ok(Side { label: label_of(kernel), kernel: kernel.clone(), system_map, initramfs: default.initramfs.clone() })
    };
    Ok([side(&kernels[0])?, side(&kernels[1])?])
}

/// A kernel file's name in tables: `vmlinuz-6.1.0-41-rt-arm64` → `6.1.0-41-rt-arm64`.
fn label_of(kernel: &Path) -> String {
    let name = kernel.file_name().map_or_else(|| kernel.display().to_string(), |n| n.to_string_lossy().into_owned());
    name.strip_prefix("vmlinuz-").map(str::to_owned).unwrap_or(name)
}

/// What the comparison needs of a run besides the kernels.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The hunter's sampling period, in µs (the windows' resolution).
    pub period_us: u64,
}

/// Runs the hunter on both `sides` with `run_one` (a `cargo xtask irqsoff` run of that
/// side's files, writing its report under `target/report/`), compares their reports,
/// prints the table and writes the comparison into the directory returned. Fails if a run
/// leaves no report or no named irqs-off location.
pub fn run(sides: &[Side; 2], settings: &Settings, run_one: &mut dyn FnMut(&Side) -> Result<ExitCode>) -> Result<PathBuf> {
    let mut runs = Vec::new();
    for side in sides {
        eprintln!("xtask: irqs-off hunt on {} ({})", side.label, side.kernel.display());
        let mut code = None;
        let dir = only_new_dir(DirKind::Run, || {
            code = Some(run_one(side)?);
            Ok(())
        })
        .with_context(|| format!("the run on {} (exit {code:?})", side.label))?;
        runs.push(RunResult::load(&dir, &side.label)?);
    }
    let [a, b]: [RunResult; 2] = runs.try_into().map_err(|_| anyhow::anyhow!("two runs expected"))?;
    let comparison = Comparison::new(a, b, settings.period_us);
    for side in [&comparison.a, &comparison.b] {
        ensure!(
            !side.functions.is_empty(),
            "the run on {} ({}) caught no irqs-off window: sample more often (--irqsoff-period, e.g. 100 µs) or longer",
            side.label,
            side.dir.display()
        );
        ensure!(
            side.functions.keys().any(|name| !name.starts_with("0x")),
            "the run on {} ({}) named no irqs-off location: see its report",
            side.label,
            side.dir.display()
        );
    }
    let dir = create_compare_dir()?;
    let table = comparison.table();
    print!("{table}");
    fs::write(dir.join("compare.txt"), &table).with_context(|| format!("cannot write in {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&to_json(&comparison)).context("cannot serialize the comparison")?;
    fs::write(dir.join("compare.json"), format!("{json}\n")).with_context(|| format!("cannot write in {}", dir.display()))?;
    fs::write(dir.join("compare.svg"), plot(&comparison)?).with_context(|| format!("cannot write in {}", dir.display()))?;
    eprintln!("xtask: comparison in {} (compare.txt, compare.json, compare.svg)", dir.display());
    Ok(dir)
}

/// Which directories of `target/report/` [`only_new_dir`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirKind {
    /// A run's (`<timestamp>`).
    Run,
    /// A comparison's (`irqsoff-compare-<timestamp>`).
    Comparison,
}

/// The one directory of `kind` that `action` adds under `target/report/`; an error if it
/// adds none or several.
fn only_new_dir(kind: DirKind, action: impl FnOnce() -> Result<()>) -> Result<PathBuf> {
    let before = report_dirs(kind)?;
    action()?;
    let after = report_dirs(kind)?;
    let mut new: Vec<&PathBuf> = after.difference(&before).collect();
    match new.len() {
        1 => Ok(new.remove(0).clone()),
        n => bail!("{n} new report directories under {}, expected one", report::reports_dir().display()),
    }
}

/// The directories of `kind` under `target/report/` now (none if it does not exist yet).
fn report_dirs(kind: DirKind) -> Result<BTreeSet<PathBuf>> {
    let base = report::reports_dir();
    let Ok(entries) = fs::read_dir(&base) else {
        return Ok(BTreeSet::new());
    };
    let mut dirs = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", base.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let comparison = name.starts_with("irqsoff-compare-");
        let wanted = match kind {
            DirKind::Run => !comparison,
            DirKind::Comparison => comparison,
        };
        if wanted && entry.file_type().is_ok_and(|kind| kind.is_dir()) && !name.starts_with('.') {
            dirs.insert(entry.path());
        }
    }
    Ok(dirs)
}

/// The QEMU test comparing Debian's 6.1 and 6.12 PREEMPT_RT kernels in small.
pub const CASE_NAME: &str = "irqsoff-compare-6.1-6.12";

/// [`CASE_NAME`]: `cargo xtask irqsoff --compare-release 6.1 --profile virt-gicv3-1 --mode icount
/// --duration 3 --irqsoff-period 10` (one CPU; the hunter every 10 µs, since under `-icount` Linux's
/// windows are short and 100 µs caught none on 6.1 in 3 s), then `compare.json` must exist,
/// name both kernels and hold functions (named, not bare PCs) on both sides.
pub fn check_case() -> Result<()> {
    let args = ["xtask", "irqsoff", "--compare-release", "6.1", "--profile", "virt-gicv3-1", "--mode", "icount", "--duration", "3", "--irqsoff-period", "10"];
    let command = <crate::Cli as clap::Parser>::try_parse_from(args)?.command;
    let dir = only_new_dir(DirKind::Comparison, || crate::dispatch(command).map(drop))?;
    let path = dir.join("compare.json");
    let text = fs::read_to_string(&path).with_context(|| format!("no comparison report {}", path.display()))?;
    let problems = case_problems(&serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?);
    ensure!(problems.is_empty(), "{}: {}", path.display(), problems.join("; "));
    ensure!(dir.join("compare.svg").is_file(), "no compare.svg in {}", dir.display());
    Ok(())
}

/// What [`CASE_NAME`]'s `compare.json` lacks, one line per problem.
fn case_problems(json: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, release) in [("a", "6.1."), ("b", "6.12.")] {
        let label = json[key]["label"].as_str().unwrap_or_default();
        if !label.starts_with(release) {
            problems.push(format!("side {key} is {label:?}, not a {release}x kernel"));
        }
        let named = json["functions"]
            .as_array()
            .map_or(0, |rows| rows.iter().filter(|row| !row[key].is_null() && !row["function"].as_str().unwrap_or("0x").starts_with("0x")).count());
        if named == 0 {
            problems.push(format!("no named function on side {key} ({label})"));
        }
    }
    problems
}

/// A new `target/report/irqsoff-compare-<timestamp>` directory.
fn create_compare_dir() -> Result<PathBuf> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let stamp = report::timestamp(now);
    let base = report::reports_dir();
    for attempt in 1..100 {
        let name =
            if attempt == 1 { format!("irqsoff-compare-{stamp}") } else { format!("irqsoff-compare-{stamp}-{attempt}") };
        let dir = base.join(name);
        if fs::create_dir_all(&base).and_then(|()| fs::create_dir(&dir)).is_ok() {
            return Ok(dir);
        }
    }
    bail!("cannot create an irqsoff-compare-{stamp} directory in {}", base.display())
}

/// The part of a `report.json` the comparison reads.
#[derive(Debug, Deserialize)]
struct ReportJson {
    run: RunJson,
    irqsoff: Option<IrqsOffJson>,
}

/// `report.json`'s `run`.
#[derive(Debug, Deserialize)]
struct RunJson {
    id: String,
    profile: String,
    cpus: u32,
    load: String,
    duration_s: u64,
    icount: bool,
    exit_code: Option<i32>,
}

/// `report.json`'s `irqsoff`.
#[derive(Debug, Deserialize)]
struct IrqsOffJson {
    top: Vec<LocationJson>,
}

/// One hunter location of `report.json`.
#[derive(Debug, Deserialize)]
struct LocationJson {
    pc: String,
    symbol: Option<String>,
    samples: u64,
    longest_ns: u64,
}

/// One function's irqs-off windows on one kernel: its locations merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The longest window at any of its locations, in ns.
    pub longest_ns: u64,
    /// The samples at all its locations.
    pub samples: u64,
    /// How many of its locations (PCs) the hunter reported.
    pub locations: u32,
}

/// One kernel's run, read back from its report directory.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The kernel's label.
    pub label: String,
    /// The report directory.
    pub dir: PathBuf,
    /// The run's id, profile, CPUs, load, duration, mode and exit code, as one line.
    pub conditions: String,
    /// QEMU's exit code.
    pub exit_code: Option<i32>,
    /// The hunter's totals, from the console's summary line (the top list holds only the
    /// longest windows).
    pub totals: Option<Totals>,
    /// Per function (the symbol without its offset; `0x…` for an unnamed PC).
    pub functions: BTreeMap<String, Windows>,
}

impl RunResult {
    /// Reads `dir/report.json` of the run on kernel `label`.
    fn load(dir: &Path, label: &str) -> Result<Self> {
        let path = dir.join("report.json");
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut run = Self::parse(&text, dir, label).with_context(|| format!("cannot read {}", path.display()))?;
        // The console is the only place the totals are; without it they are unknown.
        run.totals = fs::read_to_string(dir.join("console.log")).ok().as_deref().and_then(Totals::of_console);
        Ok(run)
    }

    /// [`RunResult::load`] of the text of a `report.json`.
    fn parse(text: &str, dir: &Path, label: &str) -> Result<Self> {
        let report: ReportJson = serde_json::from_str(text)?;
        let run = &report.run;
        let conditions = format!(
            "run {}, profile {}, {} CPU(s), {}, load {}, {} s",
            run.id,
            run.profile,
            run.cpus,
            if run.icount { "-icount" } else { "plain TCG" },
            run.load,
            run.duration_s
        );
        let top = report.irqsoff.map(|irqsoff| irqsoff.top).unwrap_or_default();
        Ok(Self {
            label: label.to_owned(),
            dir: dir.to_owned(),
            conditions,
            exit_code: run.exit_code,
            totals: None,
            functions: by_function(&top),
        })
    }
}

/// The hunter's summary of a run: `irqsoff: N samples with IRQs masked and an in-band IRQ
/// waiting, at P PCs (D dropped: table full)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Samples taken with IRQs masked while an in-band IRQ waited.
    pub samples: u64,
    /// Distinct PCs among them.
    pub pcs: u64,
    /// Samples not recorded because the core's table was full.
    pub dropped: u64,
}

impl Totals {
    /// The last summary line on `console`, if any.
    fn of_console(console: &str) -> Option<Self> {
        let line = regex::Regex::new(r"irqsoff: (\d+) samples with IRQs masked .*, at (\d+) PCs \((\d+) dropped")
            .expect("valid regex");
        let caps = line.captures_iter(console).last()?;
        let number = |i: usize| caps[i].parse::<u64>().ok();
        Some(Self { samples: number(1)?, pcs: number(2)?, dropped: number(3)? })
    }

    /// `422 samples at 283 PCs (1175 dropped: table full)`.
    fn describe(totals: Option<Self>) -> String {
        match totals {
            Some(t) => format!("{} samples at {} PCs ({} dropped: table full)", t.samples, t.pcs, t.dropped),
            None => "hunter totals unknown (no summary line on the console)".to_owned(),
        }
    }
}

/// The function a hunter location is in: its symbol without `+0xoff`, else its PC.
fn function_of(location: &LocationJson) -> String {
    match &location.symbol {
        Some(symbol) => symbol.split_once('+').map_or(symbol.as_str(), |(name, _)| name).to_owned(),
        None => location.pc.clone(),
    }
}

/// The locations merged per function: the longest window of any, the samples of all.
fn by_function(top: &[LocationJson]) -> BTreeMap<String, Windows> {
    let mut functions: BTreeMap<String, Windows> = BTreeMap::new();
    for location in top {
        let entry = functions.entry(function_of(location)).or_insert(Windows { longest_ns: 0, samples: 0, locations: 0 });
        entry.longest_ns = entry.longest_ns.max(location.longest_ns);
        entry.samples = entry.samples.saturating_add(location.samples);
        entry.locations += 1;
    }
    functions
}

/// How a function's windows changed from kernel A to kernel B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only on B.
    Appeared,
    /// On both, B's longest window at least one sampling period longer.
    Grew,
    /// Only on A.
    Disappeared,
    /// On both, B's longest window at least one sampling period shorter.
    Shrank,
    /// On both, within one sampling period.
    Same,
}

impl Change {
    /// Its name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Change::Appeared => "appeared",
            Change::Grew => "grew",
            Change::Disappeared => "disappeared",
            Change::Shrank => "shrank",
            Change::Same => "same",
        }
    }
}

/// One function of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The function (or `0x…` PC).
    pub function: String,
    /// Its windows on A, if any.
    pub a: Option<Windows>,
    /// Its windows on B, if any.
    pub b: Option<Windows>,
    /// What changed.
    pub change: Change,
}

impl Row {
    /// The longer of its two longest windows.
    fn longest_ns(&self) -> u64 {
        self.a.map_or(0, |w| w.longest_ns).max(self.b.map_or(0, |w| w.longest_ns))
    }
}

/// Two runs compared per function.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Kernel A's run.
    pub a: RunResult,
    /// Kernel B's run.
    pub b: RunResult,
    /// The sampling period, in ns: smaller differences count as the same.
    pub period_ns: u64,
    /// Every function of either run: appeared, grew, disappeared, shrank, same; each group
    /// by longest window first.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Compares `a` with `b`, sampled every `period_us` µs.
    pub fn new(a: RunResult, b: RunResult, period_us: u64) -> Self {
        let period_ns = period_us.saturating_mul(1000);
        let names: BTreeSet<&String> = a.functions.keys().chain(b.functions.keys()).collect();
        let mut rows: Vec<Row> = names
            .into_iter()
            .map(|name| {
                let (wa, wb) = (a.functions.get(name).copied(), b.functions.get(name).copied());
                let change = match (wa, wb) {
                    (None, _) => Change::Appeared,
                    (_, None) => Change::Disappeared,
                    (Some(wa), Some(wb)) if wb.longest_ns >= wa.longest_ns.saturating_add(period_ns) => Change::Grew,
                    (Some(wa), Some(wb)) if wa.longest_ns >= wb.longest_ns.saturating_add(period_ns) => Change::Shrank,
                    _ => Change::Same,
                };
                Row { function: name.clone(), a: wa, b: wb, change }
            })
            .collect();
        rows.sort_by(|x, y| x.change.cmp(&y.change).then(y.longest_ns().cmp(&x.longest_ns())).then(x.function.cmp(&y.function)));
        Self { a, b, period_ns, rows }
    }

    /// The rows with change `change`.
    fn count(&self, change: Change) -> usize {
        self.rows.iter().filter(|row| row.change == change).count()
    }

    /// The table printed on stdout and saved as `compare.txt`.
    pub fn table(&self) -> String {
        let cell = |w: Option<Windows>| match w {
            Some(w) => (format!("{:.0}", w.longest_ns as f64 / 1000.0), w.samples.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let width = self.rows.iter().map(|row| row.function.len()).max().unwrap_or(8).max(8);
        let mut text = format!(
            "irqs-off windows per function, A = {} vs B = {} (sampling period {} µs)\n  A: {}; {}\n  B: {}; {}\n",
            self.a.label,
            self.b.label,
            self.period_ns / 1000,
            self.a.conditions,
            Totals::describe(self.a.totals),
            self.b.conditions,
            Totals::describe(self.b.totals)
        );
        text.push_str(&format!(
            "{:<width$}  {:>12} {:>9}  {:>12} {:>9}  {}\n",
            "function", "A longest µs", "A samples", "B longest µs", "B samples", "change"
        ));
        for row in &self.rows {
            let (al, asamples) = cell(row.a);
            let (bl, bsamples) = cell(row.b);
            text.push_str(&format!(
                "{:<width$}  {al:>12} {asamples:>9}  {bl:>12} {bsamples:>9}  {}\n",
                row.function,
                row.change.name()
            ));
        }
        text.push_str(&format!(
            "{} functions: {} appeared, {} grew, {} disappeared, {} shrank, {} same\n",
            self.rows.len(),
            self.count(Change::Appeared),
            self.count(Change::Grew),
            self.count(Change::Disappeared),
            self.count(Change::Shrank),
            self.count(Change::Same)
        ));
        text
    }
}

/// `compare.json`: `version` (1); `period_ns`; `a` and `b`, each `{label, report_dir,
/// conditions, exit_code, totals}` (`totals`: the hunter's `{samples, pcs, dropped}` over
/// the whole run, or `null`); `functions`, an array of `{function, change, a, b}` in the
/// table's order, `a`/`b` being `{longest_ns, samples, locations}` or `null` where the
/// function was not seen; `counts`: the number of functions per change.
pub fn to_json(comparison: &Comparison) -> Value {
    let side = |run: &RunResult| {
        json!({
            "label": run.label,
            "report_dir": run.dir.display().to_string(),
            "conditions": run.conditions,
            "exit_code": run.exit_code,
            "totals": run.totals.map(|t| json!({ "samples": t.samples, "pcs": t.pcs, "dropped": t.dropped })),
        })
    };
    let windows = |w: Option<Windows>| {
        w.map(|w| json!({ "longest_ns": w.longest_ns, "samples": w.samples, "locations": w.locations }))
    };
    let functions: Vec<Value> = comparison
        .rows
        .iter()
        .map(|row| json!({ "function": row.function, "change": row.change.name(), "a": windows(row.a), "b": windows(row.b) }))
        .collect();
    let counts: serde_json::Map<String, Value> =
        [Change::Appeared, Change::Grew, Change::Disappeared, Change::Shrank, Change::Same]
            .iter()
            .map(|&change| (change.name().to_owned(), json!(comparison.count(change))))
            .collect();
    json!({
        "version": 1,
        "period_ns": comparison.period_ns,
        "a": side(&comparison.a),
        "b": side(&comparison.b),
        "functions": functions,
        "counts": counts,
    })
}

/// `compare.svg`: for the [`PLOT_FUNCTIONS`] functions with the longest windows, a bar per
/// kernel (A above B) of the longest window in µs, the change beside the name.
pub fn plot(comparison: &Comparison) -> Result<String> {
    use plotters::prelude::*;

    let mut rows: Vec<&Row> = comparison.rows.iter().collect();
    rows.sort_by(|x, y| y.longest_ns().cmp(&x.longest_ns()).then(x.function.cmp(&y.function)));
    rows.truncate(PLOT_FUNCTIONS);
    let max_us = rows.iter().map(|row| row.longest_ns()).max().unwrap_or(0) as f64 / 1000.0;
    let slots = rows.len().max(1) * 2;
    let height = 140 + 26 * u32::try_from(slots).unwrap_or(u32::MAX / 64);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!("irqs-off: longest window per function, A {} vs B {}", comparison.a.label, comparison.b.label);
        let labels: Vec<String> = rows.iter().map(|row| format!("{} ({})", row.function, row.change.name())).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(340)
            .build_cartesian_2d(0.0..(max_us * 1.1).max(1.0), (0..slots).into_segmented())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(slots)
            .y_label_formatter(&|slot| match slot {
                SegmentValue::CenterOf(index) if index % 2 == 0 => {
                    labels.get(slots.saturating_sub(index + 2) / 2).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_desc(format!(
                "longest window, µs (sampling period {} µs; {})",
                comparison.period_ns / 1000,
                comparison.a.conditions.split_once(", ").map_or("", |(_, rest)| rest)
            ))
            .draw()
            .map_err(plot_error)?;
        // Function k takes the two slots from the top: A's above B's.
        for (which, color, label) in [(0usize, RED, &comparison.a.label), (1, BLUE, &comparison.b.label)] {
            let bars = rows.iter().enumerate().filter_map(|(k, row)| {
                let windows = if which == 0 { row.a } else { row.b }?;
                let slot = slots - 1 - (2 * k + which);
                Some(Rectangle::new(
                    [(0.0, SegmentValue::Exact(slot)), (windows.longest_ns as f64 / 1000.0, SegmentValue::Exact(slot + 1))],
                    color.mix(0.7).filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(plot_error)?
                .label(format!("{} {label}", if which == 0 { "A" } else { "B" }))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.7).filled()));
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A plotters error as an `anyhow` one.
fn plot_error(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `report.json` with these `(pc, symbol, samples, longest_ns)` hunter locations.
    fn report(id: &str, top: &[(&str, Option<&str>, u64, u64)]) -> String {
        let top: Vec<Value> = top
            .iter()
            .map(|(pc, symbol, samples, longest)| json!({"pc": pc, "symbol": symbol, "samples": samples, "longest_ns": longest}))
            .collect();
        json!({
            "version": 1,
            "run": {"id": id, "profile": "virt-gicv3-1", "board": "qemu-virt", "gic": "v3", "cpus": 1, "load": "grinder",
                    "duration_s": 3, "qemu": "qemu 10", "guest_kernel": "vmlinuz-x", "icount": true, "exit_code": 0},
            "irqsoff": {"top": top},
            "missing": [],
        })
        .to_string()
    }

    fn comparison() -> Comparison {
        let a = RunResult::parse(
            &report(
                "a",
                &[
                    ("0xffff800080001000", Some("__schedule+0x100"), 10, 3_000_000),
                    ("0xffff800080001040", Some("__schedule+0x140"), 5, 4_000_000),
                    ("0xffff800080002000", Some("rt_spin_lock+0x20"), 7, 2_000_000),
                    ("0xffff800080003000", Some("gone_in_b+0x8"), 1, 1_000_000),
                    ("0xffff800080004000", Some("steady+0x8"), 3, 2_000_000),
                    ("0x1234", None, 2, 1_000_000),
                ],
            ),
            Path::new("/r/a"),
            "6.1.0-41-rt-arm64",
        )
        .unwrap();
        let b = RunResult::parse(
            &report(
                "b",
                &[
                    ("0xffff800080001000", Some("__schedule+0x100"), 30, 9_000_000),
                    ("0xffff800080002000", Some("rt_spin_lock+0x20"), 2, 1_000_000),
                    ("0xffff800080005000", Some("new_in_b+0x10"), 4, 5_000_000),
                    ("0xffff800080004000", Some("steady+0x8"), 3, 2_500_000),
                ],
            ),
            Path::new("/r/b"),
            "6.12.118+deb12-rt-arm64",
        )
        .unwrap();
        Comparison::new(a, b, 1000)
    }

    #[test]
    fn locations_merge_per_function() {
        let c = comparison();
        let schedule = c.a.functions["__schedule"];
        assert_eq!(schedule, Windows { longest_ns: 4_000_000, samples: 15, locations: 2 });
        assert!(c.a.functions.contains_key("0x1234"), "an unnamed PC keeps its address");
        assert!(c.a.conditions.contains("-icount") && c.a.conditions.contains("load grinder"), "{}", c.a.conditions);
    }

    #[test]
    fn changes_are_classified_and_ordered() {
        let c = comparison();
        let changes: Vec<(&str, Change)> = c.rows.iter().map(|row| (row.function.as_str(), row.change)).collect();
        assert_eq!(
            changes,
            [
                ("new_in_b", Change::Appeared),
                ("__schedule", Change::Grew),
                ("0x1234", Change::Disappeared),
                ("gone_in_b", Change::Disappeared),
                ("rt_spin_lock", Change::Shrank),
                ("steady", Change::Same),
            ]
        );
        let table = c.table();
        assert!(table.contains("A = 6.1.0-41-rt-arm64 vs B = 6.12.118+deb12-rt-arm64"), "{table}");
        let line = table.lines().find(|line| line.starts_with("__schedule")).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words, ["__schedule", "4000", "15", "9000", "30", "grew"]);
        assert!(table.ends_with("6 functions: 1 appeared, 1 grew, 2 disappeared, 1 shrank, 1 same\n"), "{table}");
    }

    #[test]
    fn json_and_plot_carry_both_sides() {
        let c = comparison();
        let json = to_json(&c);
        assert_eq!(json["a"]["label"], "6.1.0-41-rt-arm64");
        assert_eq!(json["functions"][0]["function"], "new_in_b");
        assert_eq!(json["functions"][0]["a"], Value::Null);
        assert_eq!(json["functions"][0]["b"]["longest_ns"], 5_000_000);
        assert_eq!(json["counts"]["disappeared"], 2);
        let svg = plot(&c).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in ["__schedule (grew)", "new_in_b (appeared)", "A 6.1.0-41-rt-arm64", "B 6.12.118+deb12-rt-arm64"] {
            assert!(svg.contains(text), "the plot lacks {text}");
        }
    }

    #[test]
    fn totals_come_from_the_last_summary_line() {
        let console = "[ 1.0 core cpu0 INFO ] irqsoff: sampling the guest on 1 CPU(s) every 10 us\n\
            [ 14.7 core cpu0 INFO ] irqsoff: 422 samples with IRQs masked and an in-band IRQ waiting, at 283 PCs (1175 dropped: table full)\r\n";
        let totals = Totals::of_console(console).unwrap();
        assert_eq!(totals, Totals { samples: 422, pcs: 283, dropped: 1175 });
        assert_eq!(Totals::describe(Some(totals)), "422 samples at 283 PCs (1175 dropped: table full)");
        assert_eq!(Totals::of_console("irqsoff: sampling the guest on 1 CPU(s) every 10 us\n"), None);
        let mut c = comparison();
        c.a.totals = Some(totals);
        assert!(c.table().contains("load grinder, 3 s; 422 samples at 283 PCs (1175 dropped: table full)"), "{}", c.table());
        assert!(c.table().contains("hunter totals unknown"));
        assert_eq!(to_json(&c)["a"]["totals"]["dropped"], 1175);
        assert_eq!(to_json(&c)["b"]["totals"], Value::Null);
    }

    #[test]
    fn a_report_without_the_hunter_has_no_functions() {
        let mut text: Value = serde_json::from_str(&report("x", &[])).unwrap();
        text.as_object_mut().unwrap().remove("irqsoff");
        let run = RunResult::parse(&text.to_string(), Path::new("/r"), "k").unwrap();
        assert!(run.functions.is_empty());
        assert!(RunResult::parse("{}", Path::new("/r"), "k").is_err());
    }

    #[test]
    fn the_case_needs_named_functions_on_both_releases() {
        let mut c = comparison();
        assert_eq!(case_problems(&to_json(&c)), Vec::<String>::new());
        c.b.label = "6.1.0-41-rt-arm64".into();
        c.rows.retain(|row| row.b.is_none());
        let problems = case_problems(&to_json(&c));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("not a 6.12.x kernel") && problems[1].contains("no named function on side b"), "{problems:?}");
    }

    #[test]
    fn the_flags_take_two_kernels_or_a_release_and_no_map() {
        let parse = |args: &[&str]| {
            <crate::Cli as clap::Parser>::try_parse_from(["xtask", "irqsoff"].iter().chain(args)).map(|cli| match cli.command {
                crate::Command::Irqsoff { compare, .. } => compare,
                other => panic!("not irqsoff: {other:?}"),
            })
        };
        let pair = parse(&["--compare", "a", "b"]).unwrap();
        assert_eq!(pair.compare, Some(vec![PathBuf::from("a"), PathBuf::from("b")]));
        assert!(pair.is_set());
        assert_eq!(parse(&["--compare-release", "6.1"]).unwrap().compare_release.as_deref(), Some("6.1"));
        assert!(!parse(&[]).unwrap().is_set());
        assert!(parse(&["--compare", "a"]).is_err());
        assert!(parse(&["--compare", "a", "b", "--compare-release", "6.1"]).is_err());
        assert!(parse(&["--compare-release", "6.1", "--system-map", "m"]).is_err());
    }

    #[test]
    fn labels_drop_the_vmlinuz_prefix() {
        assert_eq!(label_of(Path::new("/c/boot/vmlinuz-6.1.0-41-rt-arm64")), "6.1.0-41-rt-arm64");
        assert_eq!(label_of(Path::new("/tmp/Image")), "Image");
    }
}
