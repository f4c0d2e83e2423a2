//! `cargo xtask bench`: repeatable figures in three groups, printed and written to
//! `target/bench/bench.json` (each boot's console under `target/bench/logs/`):
//!
//! 1. [`core_paths`]: the core's timer-IRQ-to-oob-thread path, context switch and
//!    footprint, in instructions under `-icount` with the other CPUs halted;
//! 2. [`linux_cost`]: what the core costs Linux, the same guest with and without the core;
//! 3. [`loads`]: oob latency under each guest load against an idle guest.
//!
//! Groups 2 and 3 boot several times and report medians and spread; every target is a
//! ratio measured in the same invocation, and a missed target is reported with its margin,
//! never turned into a failure (a failed boot is one).

mod core_paths;
mod linux_cost;
mod loads;
mod runner;
mod stats;

use std::fs;

use anyhow::{Context, Result};

use crate::assets::Assets;
use crate::image::BuildProfile;
use crate::paths;
use crate::qemu::Qemu;

/// One of the benchmark's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// (1) the core's paths and footprint.
    Core,
    /// (2) what the core costs Linux.
    Linux,
    /// (3) oob latency under each guest load.
    Loads,
}

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The groups to run (all when empty).
    pub groups: Vec<Group>,
    /// Boots per configuration in groups 2 and 3.
    pub runs: u32,
    /// How long cyclictest and the latency test run per boot, in (virtual) seconds.
    pub duration_s: u64,
    /// Boots of groups 2 and 3 run at once, at most.
    pub jobs: usize,
}

impl Options {
    fn wants(&self, group: Group) -> bool {
        self.groups.is_empty() || self.groups.contains(&group)
    }
}

/// Runs the chosen groups and writes `target/bench/bench.json`.
pub fn run(options: &Options) -> Result<()> {
    let qemu = Qemu::ensure_installed()?;
    let mut assets = Assets::new(BuildProfile::Release);
    let mut json = serde_json::Map::new();
    json.insert(
        "conditions".into(),
        serde_json::json!({
            "qemu": qemu.describe(),
            "runs": options.runs,
            "duration_s": options.duration_s,
            "jobs": options.jobs,
            "guest_runs_qemu_args": runner::ICOUNT.join(" "),
            "host_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        }),
    );
    if options.wants(Group::Core) {
        println!("(1) the core's paths, in instructions (= virtual ns), other CPUs halted");
        json.insert("core_paths".into(), core_paths::measure(&qemu, &mut assets)?);
    }
    let mut checks = Vec::new();
    if options.wants(Group::Linux) {
        let cost = linux_cost::measure(&qemu, &mut assets, options)?;
        checks.extend(cost.checks.iter().cloned());
        json.insert("linux_cost".into(), serde_json::to_value(cost)?);
    }
    if options.wants(Group::Loads) {
        let loads = loads::measure(&qemu, &mut assets, options)?;
        checks.extend(loads.checks.iter().cloned());
        json.insert("loads".into(), serde_json::to_value(loads)?);
    }
    if !checks.is_empty() {
        let missed: Vec<&stats::RatioCheck> = checks.iter().filter(|check| !check.met()).collect();
        println!("\nratio targets: {} of {} met", checks.len() - missed.len(), checks.len());
        for check in &missed {
            println!("  not met: {}: {}", check.name, check.verdict);
        }
        json.insert("ratio_targets_met".into(), serde_json::json!({ "met": checks.len() - missed.len(), "of": checks.len() }));
    }
    let dir = paths::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("bench.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(json))? + "\n";
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("\nwritten: {} (consoles in {})", path.display(), runner::logs_dir().display());
    Ok(())
}
