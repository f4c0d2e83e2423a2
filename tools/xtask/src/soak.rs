//! `cargo xtask soak --minutes N`: one long run of the core hosting the Debian guest on one
//! CPU under `-icount` (like the bench), the core's latency test running throughout while the
//! guest cycles its loads (idle, grinder, neighbour; [`SEGMENT_S`] seconds each) and raises
//! an RTC alarm per segment. The run passes when:
//!
//! - the core's verdict is PASS with this run's nonce (so its own checks held: every latency
//!   context took one sample per period, the guest did not reset);
//! - the latency test kept sampling ([`verdict::sampling_problems`]) and had no overrun;
//! - the replay log lost nothing (`lost 0`);
//! - for every INTID the core forwarded, the guest's `/proc/interrupts` counted as many: exactly
//!   for SPIs (the RTC alarm, whose source is quiet when the guest reads its counts), and for
//!   PPIs (the virtual timer, which keeps ticking while the guest powers off after reading)
//!   at most [`PPI_SLACK`] fewer;
//! - the oob thread's worst latency per window (a minute; the segment in the short form) does
//!   not drift: no window's maximum exceeds [`DRIFT_FACTOR`] × the first window's plus
//!   [`DRIFT_MARGIN_NS`].
//!
//! The figures (per-window worst latency, counts) are read from the core's lines only, the
//! guest's interrupt counts from its marked lines ([`verdict`]). A short form runs in
//! `cargo xtask test` (case `soak-short-virt-gicv3-1`).

use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result};
use regex::Regex;

use crate::assets::Assets;
use crate::guest::{self, Guest, init::Load};
use crate::image::BuildProfile;
use crate::paths;
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};
use crate::report;
use crate::verdict::{self, Nonce, Source};

/// The machine: one CPU, so the core's latency test shares it with the guest and its loads.
pub const PROFILE: &str = "virt-gicv3-1";
/// Deterministic virtual time, as in the bench: `-icount shift=N,sleep=off`, one
/// instruction every 2^N ns (N = 0 by default, as the bench: a 1 GHz virtual CPU).
fn icount_args(shift: u8) -> [String; 2] {
    ["-icount".to_owned(), format!("shift={shift},sleep=off")]
}

/// The clock of the virtual CPU one instruction every 2^`shift` ns makes, in MHz.
pub fn virtual_cpu_mhz(shift: u8) -> u64 {
    1000 >> shift
}
/// How long each load runs before the next, in seconds (long form).
pub const SEGMENT_S: u64 = 20;
/// How much longer than the loads the latency test is asked to run, in seconds: it starts
/// before the guest boots and must cover the whole of the loads; the run ends when the guest
/// powers off after its last segment.
pub const BOOT_ALLOWANCE_S: u64 = 30;
/// The drift window of the long form, in seconds.
pub const WINDOW_S: u64 = 60;
/// A window's worst latency may be at most this times the first window's…
pub const DRIFT_FACTOR: f64 = 1.5;
/// …plus this (1 µs), so a first window with a tiny worst case does not make noise a drift.
pub const DRIFT_MARGIN_NS: i64 = 1_000;
/// How many more virtual-timer (PPI) interrupts the core may have forwarded than the guest
/// counted: those of the guest's last milliseconds, between reading `/proc/interrupts` and
/// powering off.
pub const PPI_SLACK: u64 = 20;

/// The restart soak's guest script: cyclictest until the boot's uptime reaches
/// `guest.restart-every=`, then `reboot -f`, `guest.restarts=` times.
pub const RESTART_SCRIPT: &str = "restart-soak";
/// The shortest restart period, in seconds: Linux's boot under `-icount` takes about 3 s.
pub const MIN_RESTART_EVERY_S: u64 = 8;
/// How much each restart lengthens the run, in virtual seconds (the core's reload, about
/// 0.8 s, and the kernel's boot before its uptime counts), for the latency test's length.
const RELOAD_ALLOWANCE_S: u64 = 2;

/// A soak's shape: its length, each load's segment and the drift window, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How long the latency test and the guest's loads run.
    pub duration_s: u64,
    /// How long each load runs (the restart soak: each boot).
    pub segment_s: u64,
    /// The window of the per-window worst latency.
    pub window_s: u64,
    /// The restart soak ([`Plan::restarting`]): the guest resets after this many seconds of
    /// uptime, on every boot but the last. `None`: the load soak.
    pub restart_every_s: Option<u64>,
}

impl Plan {
    /// The long form: `minutes` minutes, [`SEGMENT_S`]-second segments, 1-minute windows.
    pub fn minutes(minutes: u64) -> Self {
        Self { duration_s: minutes.max(1) * 60, segment_s: SEGMENT_S, window_s: WINDOW_S, restart_every_s: None }
    }

    /// A short form of `seconds` seconds: the three loads in equal segments, one window each.
    pub fn short(seconds: u64) -> Self {
        let segment_s = (seconds / 3).max(2);
        Self { duration_s: segment_s * 3, segment_s, window_s: segment_s, restart_every_s: None }
    }

    /// The restart soak (docs/guest-restart.md): about `seconds` seconds (at least two boots)
    /// in which the guest runs cyclictest and resets every `every_s` seconds of its uptime (at
    /// least [`MIN_RESTART_EVERY_S`]); one drift window per boot.
    pub fn restarting(seconds: u64, every_s: u64) -> Self {
        let every_s = every_s.max(MIN_RESTART_EVERY_S);
        let boots = (seconds / every_s).max(2);
        Self { duration_s: boots * every_s, segment_s: every_s, window_s: every_s, restart_every_s: Some(every_s) }
    }

    /// How many restarts the plan asks of the guest (0 for the load soak).
    pub fn restarts(&self) -> u64 {
        self.restart_every_s.map_or(0, |every| self.duration_s / every.max(1) - 1)
    }

    /// The core's boot arguments (the nonce is added by the caller).
    pub fn bootargs(&self) -> String {
        let Some(every) = self.restart_every_s else {
            let latency = format!("latmus={} latmus.period=1000", self.duration_s + BOOT_ALLOWANCE_S);
            return guest::core_bootargs(&[&latency], "soak", self.duration_s, Load::Idle)
                + &format!(" guest.segment={}", self.segment_s);
        };
        let restarts = self.restarts();
        let latency = format!("latmus={} latmus.period=1000", self.duration_s + BOOT_ALLOWANCE_S + RELOAD_ALLOWANCE_S * restarts);
        // A restart every `every` seconds is at most 60 / every + 1 within a minute.
        let limit = format!("companion.guest.restart.limit={}", (60 / every + 2).min(16));
        guest::core_bootargs(&[&latency, &limit], RESTART_SCRIPT, self.duration_s, Load::Idle)
            + &format!(" guest.restart-every={every} guest.restarts={restarts}")
    }

    /// The watchdog's limit: booting the guest under -icount on one CPU, then the virtual
    /// run, which takes several times its length in host time under the loads — 30 times on
    /// a 2-core host that was also building (a 2-minute soak had reached 60 virtual seconds
    /// when a 10-times limit killed it).
    pub fn watchdog(&self) -> Duration {
        Duration::from_secs(600 + 40 * self.duration_s)
    }
}

static FORWARDED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\] guest: physical interrupts forwarded by INTID:(.*)$").expect("valid regex"));
static GUEST_COUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^guest: interrupts INTID (\d+): (\d+)$").expect("valid regex"));
static REPLAY_LOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\] replay log: logged \d+, .* lost (\d+)$").expect("valid regex"));
static RESTART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\] guest: restart (\d+) \((\w+)\): vCPUs out in .*, core heap (\d+) bytes in use$").expect("valid regex")
});
static OVERRUNS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\] latmus: \d+ thread samples, \d+ irq samples, (\d+) \+ (\d+) overruns$").expect("valid regex"));

/// The per-second worst latencies (ns) of the oob thread context, from the core's `RTD|` lines.
fn per_second_max(console: &str) -> Vec<i64> {
    verdict::lines_of(console, Source::Core)
        .filter_map(|line| line.strip_prefix("RTD|"))
        .filter_map(|rest| {
            let max = rest.split('|').nth(2)?.trim();
            let (whole, fraction) = max.split_once('.').unwrap_or((max, "0"));
            let ns = whole.parse::<i64>().ok()? * 1000;
            let fraction: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
            Some(if ns < 0 || whole.starts_with('-') { ns - fraction } else { ns + fraction })
        })
        .collect()
}

/// The worst latency of each `window_s`-second window (a last partial window included).
pub fn window_maxima(console: &str, window_s: u64) -> Vec<i64> {
    per_second_max(console)
        .chunks(usize::try_from(window_s.max(1)).unwrap_or(usize::MAX))
        .filter_map(|window| window.iter().copied().max())
        .collect()
}

/// Whether a window's worst latency drifted above the first window's: the windows that did.
pub fn drifted(maxima: &[i64]) -> Vec<(usize, i64)> {
    let Some(&first) = maxima.first() else { return Vec::new() };
    let limit = (first.max(0) as f64 * DRIFT_FACTOR) as i64 + DRIFT_MARGIN_NS;
    maxima.iter().enumerate().skip(1).filter(|(_, max)| **max > limit).map(|(i, max)| (i, *max)).collect()
}

/// The counts the core forwarded per INTID (its last report).
fn forwarded(console: &str) -> Option<BTreeMap<u32, u64>> {
    let list = verdict::lines_of(console, Source::Core).filter_map(|line| FORWARDED.captures(line)).last()?;
    Some(
        list[1]
            .split(';')
            .filter_map(|entry| {
                let (intid, count) = entry.trim().split_once(':')?;
                Some((intid.trim().parse().ok()?, count.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// What the guest's `/proc/interrupts` counted per INTID (its marked lines only).
fn guest_counts(console: &str) -> BTreeMap<u32, u64> {
    verdict::lines_of(console, Source::Guest)
        .filter_map(|line| {
            let caps = GUEST_COUNT.captures(line)?;
            Some((caps[1].parse().ok()?, caps[2].parse().ok()?))
        })
        .collect()
}

/// Everything the soak's console shows wrong beyond the verdict (which [`run`] and the test
/// case judge first); one line per problem.
pub fn problems(console: &str, plan: &Plan) -> Vec<String> {
    let mut problems = verdict::sampling_problems(console);
    let core = || verdict::lines_of(console, Source::Core);
    match core().find_map(|line| REPLAY_LOST.captures(line)) {
        Some(caps) if &caps[1] == "0" => {}
        Some(caps) => problems.push(format!("the replay log lost {}", &caps[1])),
        None => problems.push("no replay log accounting from the core".to_owned()),
    }
    match core().find_map(|line| OVERRUNS.captures(line)) {
        Some(caps) if &caps[1] == "0" && &caps[2] == "0" => {}
        Some(caps) => problems.push(format!("oob overruns: {} thread + {} irq", &caps[1], &caps[2])),
        None => problems.push("no latency totals from the core".to_owned()),
    }
    match plan.restart_every_s {
        None => problems.extend(interrupt_count_problems(console)),
        // The guest's /proc/interrupts covers its last boot only: the restarts are checked.
        Some(_) => problems.extend(restart_problems(console, plan.restarts())),
    }
    let maxima = window_maxima(console, plan.window_s);
    let expected_windows = plan.duration_s.div_ceil(plan.window_s.max(1));
    if (maxima.len() as u64) < expected_windows {
        problems.push(format!("{} windows of worst latency, expected {expected_windows}", maxima.len()));
    }
    for (window, max) in drifted(&maxima) {
        problems.push(format!(
            "oob worst latency drifted: window {window} reached {max} ns, over {DRIFT_FACTOR} x the first window's {} ns + {DRIFT_MARGIN_NS} ns",
            maxima[0]
        ));
    }
    problems
}

/// The core's restart lines: (number, cause, core heap bytes in use after the reload).
pub fn restarts(console: &str) -> Vec<(u64, String, u64)> {
    verdict::lines_of(console, Source::Core)
        .filter_map(|line| RESTART.captures(line))
        .filter_map(|caps| Some((caps[1].parse().ok()?, caps[2].to_owned(), caps[3].parse().ok()?)))
        .collect()
}

/// The restart soak's own checks: exactly `planned` restarts, numbered in order, each a reset
/// (none by the watchdog), and the core's heap after each reload no fuller than after the
/// first (a restart that leaks leaves more in use every time).
fn restart_problems(console: &str, planned: u64) -> Vec<String> {
    let restarts = restarts(console);
    let mut problems = Vec::new();
    if restarts.len() as u64 != planned || restarts.iter().zip(1..).any(|((number, _, _), expected)| *number != expected) {
        let numbers: Vec<u64> = restarts.iter().map(|(number, _, _)| *number).collect();
        problems.push(format!("restarts {numbers:?}, expected 1 to {planned} in order"));
    }
    for (number, cause, _) in restarts.iter().filter(|(_, cause, _)| cause != "reset") {
        problems.push(format!("restart {number} had cause {cause}, expected reset"));
    }
    if let Some((_, _, first)) = restarts.first() {
        for (number, _, heap) in restarts.iter().filter(|(_, _, heap)| heap > first) {
            problems.push(format!("the core's heap grew: {heap} bytes in use after restart {number}, {first} after restart 1"));
        }
    }
    problems
}

/// The load soak's interrupt accounting: what the core forwarded per INTID against what the
/// guest's `/proc/interrupts` counted.
fn interrupt_count_problems(console: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let guest = guest_counts(console);
    match forwarded(console) {
        None => problems.push("no per-INTID forwarded counts from the core".to_owned()),
        Some(core_counts) => {
            if !core_counts.keys().any(|&intid| intid >= 32) {
                problems.push("the core forwarded no SPI (the RTC alarms did not arrive)".to_owned());
            }
            for (intid, &forwarded) in &core_counts {
                let counted = guest.get(intid).copied();
                let fine = match counted {
                    Some(counted) if *intid >= 32 => counted == forwarded,
                    Some(counted) => forwarded >= counted && forwarded - counted <= PPI_SLACK,
                    None => false,
                };
                if !fine {
                    let counted = counted.map_or("no count".to_owned(), |n| n.to_string());
                    problems.push(format!("INTID {intid}: the core forwarded {forwarded}, the guest counted {counted}"));
                }
            }
        }
    }
    problems
}

/// `cargo xtask soak`: runs `plan`, prints the per-window worst latencies and the checks, and
/// writes the console to `target/soak/console.log`.
/// `icount_shift` slows the virtual CPU (see [`virtual_cpu_mhz`]) so that a long soak ends
/// sooner in host time; the figures are then those of that slower CPU.
pub fn run(plan: Plan, icount_shift: u8) -> Result<ExitCode> {
    let qemu = Qemu::ensure_installed()?;
    let guest = Guest::prepare()?;
    let profile = Profile::load(PROFILE)?;
    let files = Assets::new(BuildProfile::Release).for_profile(&profile)?;
    let nonce = Nonce::generate()?;
    let bootargs = nonce.add_to(&plan.bootargs());
    let mut extra = guest::core_qemu_args(&guest)?;
    extra.extend(icount_args(icount_shift));
    let boot =
        Boot { profile: &profile, kernel: &files.image.raw, dtb: files.dtb.as_deref(), bootargs: &bootargs, extra_args: &extra };
    let dir = paths::target_dir().join("soak");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join("console.log");
    let mut cmd = qemu.command(&boot);
    let mhz = virtual_cpu_mhz(icount_shift);
    eprintln!(
        "xtask: soak of {} s ({} s per load or boot, {} s windows) under -icount shift={icount_shift} (a {mhz} MHz virtual CPU)",
        plan.duration_s, plan.segment_s, plan.window_s
    );
    let watch = report::Watch {
        watchdog: Some(plan.watchdog()),
        end_marker: Some(nonce.end_marker()),
        view: report::progress::View::Console,
    };
    let (ending, console) = report::run_captured(&mut cmd, &log, &watch)?;
    let mut failures = match verdict::judge(ending, &console, &nonce) {
        Ok(0) => Vec::new(),
        Ok(code) => vec![format!("the core's verdict is FAIL (exit code {code})")],
        Err(why) => vec![why],
    };
    failures.extend(problems(&console, &plan));
    println!();
    let clock = format!("-icount shift={icount_shift} (a {mhz} MHz virtual CPU)");
    match plan.restart_every_s {
        None => println!("soak: {} s under {clock} on {PROFILE}, loads idle/grinder/neighbour for {} s each", plan.duration_s, plan.segment_s),
        Some(every) => println!("soak: {} s under {clock} on {PROFILE}, a guest restart every {every} s of its uptime", plan.duration_s),
    }
    for (window, max) in window_maxima(&console, plan.window_s).iter().enumerate() {
        println!("  window {window:>3} ({} s): oob thread worst {:.3} us", plan.window_s, *max as f64 / 1000.0);
    }
    for (number, cause, heap) in restarts(&console) {
        println!("  restart {number:>3} ({cause}): core heap {heap} bytes in use after the reload");
    }
    println!("  console: {}", log.display());
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &failures {
            println!("soak: FAIL: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtd(max_us: &str) -> String {
        format!("RTD|      1.000|      2.000|{max_us:>11}|       0|     0|      1.000|      9.000\n")
    }

    /// A soak console of `seconds` seconds with the given per-second worst latencies.
    fn console(maxima: &[&str], core_27: u64, guest_27: u64) -> String {
        let mut text = "RTT|  00:00:01  (oob thread context, 1000 us period, priority 99, cpu 0, gravity 0 ns)\n".to_owned();
        for max in maxima {
            text += &rtd(max);
        }
        let n = maxima.len();
        text += &format!("RTS|      1.000|      2.000|      9.000|       0|     0|    00:00:{n:02}/00:00:{n:02}\n");
        text += &format!("[ 9.0 core cpu0 INFO ] latmus: {0} thread samples, {0} irq samples, 0 + 0 overruns\n", n * 1000);
        text += "[ 9.1 core cpu0 INFO ] replay log: logged 10, replayed 10, coalesced 0, withdrawn 0, max depth 1, lost 0\n";
        text += &format!("[ 9.2 core cpu0 INFO ] guest: physical interrupts forwarded by INTID: 27: {core_27}; 34: 3;\n");
        text + &format!("guest| guest: interrupts INTID 27: {guest_27}\nguest| guest: interrupts INTID 34: 3\n")
    }

    #[test]
    fn short_plan_cycles_three_loads_and_reaches_the_guest() {
        let plan = Plan::short(6);
        assert_eq!(plan, Plan { duration_s: 6, segment_s: 2, window_s: 2, restart_every_s: None });
        let args = plan.bootargs();
        let (core, guest) = args.split_once(" -- ").unwrap();
        assert!(core.contains(&format!("latmus={}", 6 + BOOT_ALLOWANCE_S)), "{core}");
        assert!(guest.contains("guest.script=soak") && guest.contains("guest.segment=2"), "{guest}");
        assert_eq!(Plan::minutes(30).duration_s, 1800);
    }

    #[test]
    fn a_clean_soak_has_no_problems() {
        let plan = Plan::short(6);
        let text = console(&["5.000", "6.000", "5.500", "7.000", "4.000", "6.500"], 105, 100);
        assert_eq!(window_maxima(&text, 2), [6_000, 7_000, 6_500]);
        assert!(problems(&text, &plan).is_empty(), "{:?}", problems(&text, &plan));
    }

    #[test]
    fn drift_lost_interrupts_and_forgeries_are_caught() {
        let plan = Plan::short(6);
        // The last window's worst 20 us against 6 us first: drift (limit 1.5 x 6 + 1 = 10 us).
        let drift = console(&["5.000", "6.000", "5.500", "7.000", "4.000", "20.000"], 100, 100);
        assert!(problems(&drift, &plan).iter().any(|p| p.contains("drifted: window 2")), "{:?}", problems(&drift, &plan));
        // The guest counted fewer timer interrupts than forwarded beyond the slack, or more.
        let lost = console(&["5.000"; 6], 200, 100);
        assert!(problems(&lost, &plan).iter().any(|p| p.starts_with("INTID 27")));
        let extra = console(&["5.000"; 6], 100, 101);
        assert!(problems(&extra, &plan).iter().any(|p| p.starts_with("INTID 27")));
        // A guest printing its own calm RTD lines and counts changes nothing.
        let forged = drift.clone() + &rtd("1.000").replace("RTD|", "guest| RTD|");
        assert!(problems(&forged, &plan).iter().any(|p| p.contains("drifted")));
        let forged_counts = lost.replace("guest| guest: interrupts INTID 27: 100", "guest: interrupts INTID 27: 200");
        assert!(problems(&forged_counts, &plan).iter().any(|p| p.starts_with("INTID 27")));
    }

    /// A restart line of the core with `heap` bytes in use.
    fn restart_line(number: u64, cause: &str, heap: u64) -> String {
        format!(
            "[ 5.0 core cpu0 INFO ] guest: restart {number} ({cause}): vCPUs out in 3 us, 0 interrupts discarded, \
             0 physical activations given back, guest reloaded in 700 ms, core heap {heap} bytes in use\n"
        )
    }

    #[test]
    fn restart_plan_boots_every_period_and_allows_its_restarts() {
        let plan = Plan::restarting(65, 20);
        assert_eq!((plan.duration_s, plan.window_s, plan.restarts()), (60, 20, 2));
        assert_eq!(Plan::restarting(5, 1).restarts(), 1, "at least two boots, at least 8 s each");
        let args = plan.bootargs();
        let (core, guest) = args.split_once(" -- ").unwrap();
        assert!(core.contains("companion.guest.restart.limit=5") && core.contains("latmus=94"), "{core}");
        assert!(guest.contains("guest.script=restart-soak") && guest.contains("guest.restart-every=20 guest.restarts=2"), "{guest}");
    }

    #[test]
    fn restart_soak_catches_missing_restarts_a_watchdog_and_a_leak() {
        let plan = Plan::restarting(30, 10);
        let base = console(&["5.000"; 30], 100, 100).replace("guest: interrupts INTID 27: 100", "guest: interrupts INTID 27: 3");
        let clean = base.clone() + &restart_line(1, "reset", 4096) + &restart_line(2, "reset", 4096);
        assert!(problems(&clean, &plan).is_empty(), "{:?}", problems(&clean, &plan));
        let missing = base.clone() + &restart_line(1, "reset", 4096);
        assert!(problems(&missing, &plan).iter().any(|p| p.starts_with("restarts [1]")));
        let hung = base.clone() + &restart_line(1, "reset", 4096) + &restart_line(2, "watchdog", 4096);
        assert!(problems(&hung, &plan).iter().any(|p| p.contains("cause watchdog")));
        let leak = base.clone() + &restart_line(1, "reset", 4096) + &restart_line(2, "reset", 8192);
        assert!(problems(&leak, &plan).iter().any(|p| p.contains("heap grew: 8192 bytes in use after restart 2")));
        let forged = base + &restart_line(1, "reset", 4096) + "guest| " + &restart_line(2, "reset", 4096);
        assert!(!problems(&forged, &plan).is_empty(), "a guest's restart line is not the core's");
    }

    #[test]
    fn reads_negative_and_fractional_maxima() {
        assert_eq!(per_second_max(&rtd("-0.056")), [-56]);
        assert_eq!(per_second_max(&rtd("12.5")), [12_500]);
        assert!(per_second_max(&format!("guest| {}", rtd("3.000"))).is_empty());
    }
}
