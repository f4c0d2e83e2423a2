//! The benchmark's first group: the core's own paths, repeatable under QEMU `-icount`.
//!
//! Method: QEMU runs with `-icount shift=0,sleep=off` (one instruction advances the virtual
//! clock by one nanosecond) and a 1 GHz generic counter (`cntfrq`), so one counter tick is
//! one instruction while only the measured CPU executes; the other CPUs are halted. The core
//! (`companion.bench=1`) prints `BENCH|name|samples|min|avg|max` lines in ticks and a
//! `BENCH-MEM|` footprint line; [`measure`] collects them for each GIC and prints a table
//! with the targets.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::assets::Assets;
use crate::process;
use crate::verdict::{self, Nonce};
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};

/// The profiles measured, one per GIC version.
const PROFILES: &[&str] = &["virt-gicv3-4", "virt-gicv2-4"];

/// QEMU arguments that make the figures instruction counts.
const DETERMINISTIC: &[&str] = &["-icount", "shift=0,sleep=off", "-cpu", "cortex-a72,cntfrq=1000000000"];

/// A figure and its target (in instructions), if the issue sets one.
const TARGETS: &[(&str, Option<u64>, &str)] = &[
    ("timer-to-switch", Some(450), "timer exception entry to the woken thread's first instruction"),
    ("timer-to-return", None, "timer exception entry to the thread's return from sleep_until"),
    ("switch", Some(200), "thread-to-thread context switch"),
    ("post-to-wake", None, "semaphore post to the higher-priority waiter's return from wait"),
];

/// Footprint target for the core alone, in bytes.
const FOOTPRINT_TARGET: u64 = 4 << 20;

/// One figure: min/avg/max over its samples, in instructions (= virtual ns).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Figure {
    samples: u64,
    min: u64,
    avg: u64,
    max: u64,
}

/// What one profile measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProfileFigures {
    figures: BTreeMap<String, Figure>,
    /// The first (warm-up) sample of a figure, measured and shown but not in its statistics.
    warmup: BTreeMap<String, u64>,
    memory: BTreeMap<String, u64>,
}

/// Parses the core's `BENCH|`, `BENCH-WARMUP|` and `BENCH-MEM|` lines.
pub fn parse(output: &str) -> Result<ProfileFigures> {
    let mut result = ProfileFigures::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("BENCH|") {
            let fields: Vec<&str> = rest.split('|').collect();
            let [name, samples, min, avg, max] = fields[..] else { bail!("malformed bench line: {line}") };
            let number = |text: &str| text.trim().parse::<u64>().with_context(|| format!("in bench line: {line}"));
            let figure = Figure { samples: number(samples)?, min: number(min)?, avg: number(avg)?, max: number(max)? };
            result.figures.insert(name.to_string(), figure);
        } else if let Some(rest) = line.strip_prefix("BENCH-WARMUP|") {
            let (name, value) = rest.split_once('|').with_context(|| format!("malformed warm-up line: {line}"))?;
            result.warmup.insert(name.to_string(), value.trim().parse().with_context(|| format!("in: {line}"))?);
        } else if let Some(rest) = line.strip_prefix("BENCH-MEM|") {
            for item in rest.split('|') {
                let (key, value) = item.rsplit_once(' ').with_context(|| format!("malformed memory item `{item}`"))?;
                result.memory.insert(key.to_string(), value.parse().with_context(|| format!("in `{item}`"))?);
            }
        }
    }
    if result.figures.is_empty() {
        bail!("the core printed no BENCH| lines");
    }
    Ok(result)
}

/// The core's RAM footprint: image with BSS and boot stacks, plus the heap in use (which
/// holds the thread stacks).
fn footprint(memory: &BTreeMap<String, u64>) -> u64 {
    memory.get("image").copied().unwrap_or(0) + memory.get("heap-in-use").copied().unwrap_or(0)
}

/// Measures the core's paths on each GIC, prints the table and returns the group's JSON
/// (conditions, targets, figures per profile); fails only if a run fails, not if a target is
/// missed.
pub fn measure(qemu: &Qemu, assets: &mut Assets) -> Result<serde_json::Value> {
    let mut all = BTreeMap::new();
    for name in PROFILES {
        let profile = Profile::load(name)?;
        let files = assets.for_profile(&profile)?;
        let extra: Vec<String> = DETERMINISTIC.iter().map(|s| s.to_string()).collect();
        let nonce = Nonce::generate()?;
        let bootargs = nonce.add_to("companion.bench=1");
        let boot = Boot {
            profile: &profile,
            kernel: &files.image.raw,
            dtb: files.dtb.as_deref(),
            bootargs: &bootargs,
            extra_args: &extra,
        };
        let cmd = qemu.command(&boot);
        let captured = process::capture_watched(cmd, Duration::from_secs(120), Some(&nonce.end_marker()))?;
        match verdict::judge(captured.ending, &captured.output, &nonce) {
            Ok(0) => {}
            Ok(code) => bail!("the benchmark run on {name} failed (exit code {code}):\n{}", captured.output),
            Err(why) => bail!("the benchmark run on {name}: {why}:\n{}", captured.output),
        }
        all.insert(name.to_string(), parse(&captured.output)?);
    }
    print_table(&all);
    Ok(serde_json::json!({
        "conditions": {
            "machine": "virt, cortex-a72, 4 CPUs",
            "qemu_args": DETERMINISTIC.join(" "),
            "unit": "instructions (virtual ns at 1 instruction/ns, 1 GHz counter)",
        },
        "targets": TARGETS.iter().filter_map(|(name, target, _)| target.map(|t| (name.to_string(), t))).collect::<BTreeMap<_, _>>(),
        "footprint_target_bytes": FOOTPRINT_TARGET,
        "profiles": all,
    }))
}

fn print_table(all: &BTreeMap<String, ProfileFigures>) {
    println!("figure            profile        samples      min      avg      max   target  verdict");
    for (figure, target, what) in TARGETS {
        for (profile, figures) in all {
            let Some(f) = figures.figures.get(*figure) else { continue };
            let verdict = match target {
                Some(t) if f.max <= *t => format!("ok ({:.2}x of target)", f.max as f64 / *t as f64),
                Some(t) => format!("MISSED by {} ({:.2}x)", f.max - t, f.max as f64 / *t as f64),
                None => String::from("-"),
            };
            let target = target.map_or(String::from("-"), |t| t.to_string());
            println!(
                "{figure:<17} {profile:<13} {:>8} {:>8} {:>8} {:>8} {target:>8}  {verdict}",
                f.samples, f.min, f.avg, f.max
            );
            if let Some(warmup) = figures.warmup.get(*figure) {
                println!("{:<31} warm-up sample (first wake-up, not in the statistics): {warmup}", "");
            }
        }
        println!("  ({what})");
    }
    for (profile, figures) in all {
        let total = footprint(&figures.memory);
        let verdict = if total <= FOOTPRINT_TARGET { "ok" } else { "MISSED" };
        let item = |key: &str| figures.memory.get(key).copied().unwrap_or(0) >> 10;
        println!(
            "footprint {profile}: image {} KiB (boot stacks {} KiB) + heap in use {} KiB (thread stacks {} KiB) = {} KiB, target {} KiB: {verdict}",
            item("image"),
            item("boot-stacks"),
            item("heap-in-use"),
            item("thread-stacks-in-heap"),
            total >> 10,
            FOOTPRINT_TARGET >> 10
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cores_lines_and_refuses_garbage() {
        let output = "noise\nBENCH-WARMUP|switch|52\nBENCH|switch|200|40|41|45\nBENCH-MEM|image 2887680|heap-in-use 70112\nverdict: PASS\n";
        let parsed = parse(output).unwrap();
        assert_eq!(parsed.warmup["switch"], 52);
        assert!(parse("BENCH-WARMUP|switch|x\nBENCH|switch|1|1|1|1\n").is_err());
        assert_eq!(parsed.figures["switch"], Figure { samples: 200, min: 40, avg: 41, max: 45 });
        assert_eq!(footprint(&parsed.memory), 2887680 + 70112);
        assert!(parse("BENCH|switch|200|x|1|2\n").is_err());
        assert!(parse("BENCH|switch|200\n").is_err());
        assert!(parse("no figures at all\n").is_err());
    }
}
