//! The benchmark's first group: the core's own paths, repeatable under QEMU `-icount`, on
//! every board.
//!
//! Method: QEMU runs with `-icount shift=0,sleep=off` (one instruction advances the virtual
//! clock by one nanosecond) and the core times its paths with the PMU cycle counter, which
//! under TCG follows the virtual clock at 1 GHz whatever the board's generic counter (62.5
//! MHz on virt, 54 MHz on the Raspberry Pi 4, 8 MHz on the i.MX 8M Plus: too coarse for
//! instructions), so one cycle is one instruction while only the measured CPU executes; the
//! other CPUs are halted. The core (`companion.bench=1`) prints
//! `BENCH|name|samples|min|avg|max` lines in cycles and a `BENCH-MEM|` footprint line, or
//! `BENCH-NA|reason` where it cannot measure; [`measure`] collects them for each board and
//! prints a table per board with the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::assets::Assets;
use crate::process;
use crate::verdict::{self, Nonce};
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};

/// QEMU's deterministic mode: one instruction per virtual ns.
const ICOUNT: &[&str] = &["-icount", "shift=0,sleep=off"];

/// The profiles measured with their further QEMU arguments: virt with each GIC version
/// (with a 1 GHz generic counter as before the cycle counter, so the figures compare with
/// the earlier counter-based ones), then the boards, whose SoC models fix CPU and counter.
const PROFILES: &[(&str, &[&str])] = &[
    ("virt-gicv3-4", &["-cpu", "cortex-a72,cntfrq=1000000000"]),
    ("virt-gicv2-4", &["-cpu", "cortex-a72,cntfrq=1000000000"]),
    ("raspi4b", &[]),
    ("imx8mp-evk", &[]),
];

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
    /// Why the core measured no paths on this board (`BENCH-NA|`), if it did not.
    unavailable: Option<String>,
}

/// Parses the core's `BENCH|`, `BENCH-WARMUP|`, `BENCH-MEM|` and `BENCH-NA|` lines.
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
        } else if let Some(reason) = line.strip_prefix("BENCH-NA|") {
            result.unavailable = Some(reason.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("BENCH-MEM|") {
            for item in rest.split('|') {
                let (key, value) = item.rsplit_once(' ').with_context(|| format!("malformed memory item `{item}`"))?;
                result.memory.insert(key.to_string(), value.parse().with_context(|| format!("in `{item}`"))?);
            }
        }
    }
    if result.figures.is_empty() && result.unavailable.is_none() {
        bail!("the core printed neither BENCH| nor BENCH-NA| lines");
    }
    if !result.figures.is_empty() && result.unavailable.is_some() {
        bail!("the core printed figures and said it could not measure");
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
    let mut conditions = BTreeMap::new();
    for (name, args) in PROFILES {
        let profile = Profile::load(name)?;
        let files = assets.for_profile(&profile)?;
        let extra: Vec<String> = ICOUNT.iter().chain(args.iter()).map(|s| s.to_string()).collect();
        conditions.insert(name.to_string(), format!("{}; QEMU args {}", profile.description, extra.join(" ")));
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
    for (name, figures) in &all {
        print!("{}", table(name, &conditions[name], figures));
    }
    Ok(serde_json::json!({
        "conditions": {
            "profiles": conditions,
            "unit": "instructions (PMU cycles = virtual ns under -icount shift=0)",
        },
        "targets": TARGETS.iter().filter_map(|(name, target, _)| target.map(|t| (name.to_string(), t))).collect::<BTreeMap<_, _>>(),
        "footprint_target_bytes": FOOTPRINT_TARGET,
        "profiles": all,
    }))
}

/// One board's table: each figure with its target and verdict, the warm-up samples, the
/// footprint; or why the board has no figures.
fn table(profile: &str, conditions: &str, figures: &ProfileFigures) -> String {
    let mut out = format!("\n{profile} ({conditions})\n");
    if let Some(reason) = &figures.unavailable {
        let _ = writeln!(out, "  paths not measured on this board: {reason}");
    } else {
        let _ = writeln!(out, "  {:<17} {:>7} {:>6} {:>6} {:>6} {:>7}  verdict", "figure", "samples", "min", "avg", "max", "target");
    }
    for (figure, target, what) in TARGETS {
        let Some(f) = figures.figures.get(*figure) else { continue };
        let verdict = match target {
            Some(t) if f.max <= *t => format!("ok ({:.2}x of target)", f.max as f64 / *t as f64),
            Some(t) => format!("MISSED by {} ({:.2}x)", f.max - t, f.max as f64 / *t as f64),
            None => String::from("-"),
        };
        let target = target.map_or(String::from("-"), |t| t.to_string());
        let _ = writeln!(out, "  {figure:<17} {:>7} {:>6} {:>6} {:>6} {target:>7}  {verdict}", f.samples, f.min, f.avg, f.max);
        let warmup = figures.warmup.get(*figure).map_or(String::new(), |w| format!("; warm-up (first wake-up, not in the statistics) {w}"));
        let _ = writeln!(out, "      ({what}{warmup})");
    }
    let total = footprint(&figures.memory);
    let verdict = if total <= FOOTPRINT_TARGET { "ok" } else { "MISSED" };
    let item = |key: &str| figures.memory.get(key).copied().unwrap_or(0) >> 10;
    let _ = writeln!(
        out,
        "  footprint: image {} KiB (boot stacks {} KiB) + heap in use {} KiB (thread stacks {} KiB) = {} KiB, target {} KiB: {verdict}",
        item("image"),
        item("boot-stacks"),
        item("heap-in-use"),
        item("thread-stacks-in-heap"),
        total >> 10,
        FOOTPRINT_TARGET >> 10
    );
    out
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
        assert!(parse("BENCH-NA|no PMU\nBENCH|switch|1|1|1|1\n").is_err(), "figures and no figures at once");
    }

    #[test]
    fn a_board_without_figures_says_why_and_shows_no_number() {
        let parsed = parse("BENCH-NA|no architected PMU\nBENCH-MEM|image 1024|heap-in-use 2048\n").unwrap();
        assert_eq!(parsed.unavailable.as_deref(), Some("no architected PMU"));
        let text = table("imx8mp-evk", "test", &parsed);
        assert!(text.contains("paths not measured on this board: no architected PMU"), "{text}");
        assert!(!text.contains("timer-to-switch"), "{text}");
        assert!(text.contains("= 3 KiB, target 4096 KiB: ok"), "{text}");
    }

    #[test]
    fn the_table_judges_each_figure_against_its_target() {
        let output = "BENCH-WARMUP|timer-to-switch|460\nBENCH|timer-to-switch|200|440|445|451\nBENCH|switch|200|47|47|47\nBENCH|post-to-wake|200|989|989|989\nBENCH-MEM|image 4096|heap-in-use 0\n";
        let text = table("raspi4b", "Raspberry Pi 4B", &parse(output).unwrap());
        let line = |name: &str| text.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_default().to_string();
        assert!(line("timer-to-switch").ends_with("MISSED by 1 (1.00x)"), "{text}");
        assert!(line("switch").ends_with("ok (0.23x of target)"), "{text}");
        assert!(line("post-to-wake").ends_with(" -  -"), "{text}");
        assert!(text.contains("warm-up (first wake-up, not in the statistics) 460"), "{text}");
        assert!(text.starts_with("\nraspi4b (Raspberry Pi 4B)\n"), "{text}");
    }
}
