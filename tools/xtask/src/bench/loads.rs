//! The benchmark's third group, the point of the product: the core's oob latency while
//! Linux runs each of EVL's loads, against the same with an idle guest. Each run is the main
//! job (`cargo xtask run --load L`) under `-icount` on one CPU: the core's latency test
//! (thread and timer-IRQ contexts, 1 kHz, priority 99; started by the guest with `companion
//! latmus` beside cyclictest, then `companion ping` times the channel) shares that CPU with the guest's
//! cyclictest and the load, the hardest place for it (every Linux IRQs-off section and every
//! trap of the load happens on the oob CPU), and the only one `-icount` measures without
//! QEMU's round-robin between CPUs in the figures (see [`super::linux_cost`]). Checked as
//! ratios of medians over the runs against issue 11's targets: oob max under a load at most
//! 1.1× its idle-guest value, and under grinder the oob thread's max at most 1/20 of Linux's.

use anyhow::{Context, Result};
use serde::Serialize;

use super::runner::{self, ICOUNT, Job};
use super::stats::{RatioCheck, Spread};
use crate::assets::Assets;
use crate::guest::{self, Guest, init::Load};
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};
use crate::report::channel::RoundTrip;
use crate::report::model::Measurements;
use crate::report::parse;
use crate::verdict::{self, GuestLatencyTest, Nonce};

/// The machine: one CPU (see the module's documentation).
const PROFILE: &str = super::linux_cost::PROFILE;
/// The loads, idle (the reference) first.
const LOADS: [Load; 3] = [Load::Idle, Load::Grinder, Load::Neighbour];
/// Largest oob max under a load, relative to the idle guest's (issue 11).
const LOAD_TARGET: f64 = 1.1;
/// Largest oob-thread max under grinder, relative to Linux's (cyclictest) max (issue 11).
const INBAND_TARGET: f64 = 1.0 / 20.0;

/// One run's figures, ns.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFigures {
    /// oob thread context, max.
    pub thread_max_ns: f64,
    /// oob timer-IRQ context, max.
    pub irq_max_ns: f64,
    /// Linux's cyclictest over all vCPUs, max.
    pub inband_max_ns: f64,
    /// Linux's cyclictest over all vCPUs, p99 (1 µs resolution).
    pub inband_p99_ns: f64,
    /// The sirq test's max (the in-band delay Linux's masking adds), if measured.
    pub sirq_max_ns: Option<f64>,
    /// The channel's round trip (`companion ping` after cyclictest, under the load), if the
    /// core's count backs it.
    pub round_trip: Option<RoundTrip>,
}

/// Reads a main-job console's figures; every one of them must be there.
pub fn figures(measured: &Measurements) -> Result<RunFigures> {
    let max = |latency: &Option<crate::report::model::Latency>, what: &str| -> Result<f64> {
        latency.as_ref().and_then(|l| l.max_ns).map(|ns| ns as f64).with_context(|| format!("no {what} max in the console"))
    };
    let inband = measured.inband().context("no cyclictest output from the guest")?;
    Ok(RunFigures {
        thread_max_ns: max(&measured.oob_thread, "oob thread")?,
        irq_max_ns: max(&measured.oob_irq, "oob irq")?,
        inband_max_ns: inband.max_ns.context("no cyclictest max")? as f64,
        inband_p99_ns: inband.percentile(990).context("cyclictest printed no samples")?.ns() as f64,
        sirq_max_ns: measured.oob_sirq.as_ref().and_then(|sirq| sirq.max_ns).map(|ns| ns as f64),
        round_trip: measured.channel_round_trip.clone().and_then(Result::ok),
    })
}

/// One load's figures over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSpread {
    /// The load.
    pub load: String,
    /// oob thread max, ns.
    pub oob_thread_max_ns: Spread,
    /// oob timer-IRQ max, ns.
    pub oob_irq_max_ns: Spread,
    /// cyclictest max, ns.
    pub inband_max_ns: Spread,
    /// cyclictest p99, ns.
    pub inband_p99_ns: Spread,
    /// sirq max, ns (absent if the core did not measure it).
    pub sirq_max_ns: Option<Spread>,
    /// The channel's round trip, avg and max, ns (absent unless every run has it).
    pub round_trip_avg_ns: Option<Spread>,
    /// See `round_trip_avg_ns`.
    pub round_trip_max_ns: Option<Spread>,
    /// The oob echo thread's CPU time per message, ns (one instruction per ns under -icount).
    pub echo_cpu_ns_per_message: Option<Spread>,
}

impl LoadSpread {
    fn of(load: Load, runs: &[RunFigures]) -> Option<Self> {
        let pick = |f: fn(&RunFigures) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let sirq: Option<Vec<f64>> = runs.iter().map(|run| run.sirq_max_ns).collect();
        let trip = |f: fn(&RoundTrip) -> u64| -> Option<Spread> {
            let values: Option<Vec<f64>> = runs.iter().map(|run| run.round_trip.as_ref().map(|t| f(t) as f64)).collect();
            Spread::of(&values?)
        };
        Some(Self {
            load: load.to_string(),
            oob_thread_max_ns: pick(|run| run.thread_max_ns)?,
            oob_irq_max_ns: pick(|run| run.irq_max_ns)?,
            inband_max_ns: pick(|run| run.inband_max_ns)?,
            inband_p99_ns: pick(|run| run.inband_p99_ns)?,
            sirq_max_ns: sirq.and_then(|values| Spread::of(&values)),
            round_trip_avg_ns: trip(|t| t.avg_ns),
            round_trip_max_ns: trip(|t| t.max_ns),
            echo_cpu_ns_per_message: trip(RoundTrip::echo_cpu_ns_per_wakeup),
        })
    }
}

/// The group's result.
#[derive(Debug, Clone, Serialize)]
pub struct Loads {
    /// Per load, idle first.
    pub loads: Vec<LoadSpread>,
    /// The ratio checks.
    pub checks: Vec<RatioCheck>,
}

/// The checks of the issue over `loads` (idle first).
pub fn checks(loads: &[LoadSpread]) -> Vec<RatioCheck> {
    let mut checks = Vec::new();
    let Some(idle) = loads.iter().find(|l| l.load == Load::Idle.name()) else { return checks };
    for loaded in loads.iter().filter(|l| l.load != Load::Idle.name()) {
        let name = &loaded.load;
        checks.push(RatioCheck::of_runs(
            format!("oob-thread max, {name} / idle"),
            &loaded.oob_thread_max_ns,
            &idle.oob_thread_max_ns,
            LOAD_TARGET,
        ));
        checks.push(RatioCheck::of_runs(
            format!("oob-irq max, {name} / idle"),
            &loaded.oob_irq_max_ns,
            &idle.oob_irq_max_ns,
            LOAD_TARGET,
        ));
        if loaded.load == Load::Grinder.name() {
            checks.push(RatioCheck::of_runs(
                "oob-thread max / in-band max, grinder",
                &loaded.oob_thread_max_ns,
                &loaded.inband_max_ns,
                INBAND_TARGET,
            ));
        }
    }
    checks
}

/// Runs every load `options.runs` times for `options.duration_s` seconds, `options.jobs`
/// boots at a time.
pub fn measure(qemu: &Qemu, assets: &mut Assets, options: &super::Options) -> Result<Loads> {
    let (runs, duration_s) = (options.runs, options.duration_s);
    let guest = Guest::prepare()?;
    let profile = Profile::load(PROFILE)?;
    let files = assets.for_profile(&profile)?;
    // The guest starts the latency test beside cyclictest, in the same window, as the main
    // job does (the core's boot-argument form would measure Linux's boot instead).
    let latency_test = GuestLatencyTest { period_us: 1000, seconds: duration_s };
    let mut jobs = Vec::new();
    for load in LOADS {
        for run in 1..=runs {
            let nonce = Nonce::generate()?;
            let core = guest::core_bootargs(&[GuestLatencyTest::CORE_ARG], "cyclictest", duration_s, load);
            let bootargs = nonce.add_to(&format!("{core} {} {}", latency_test.guest_arg(), guest::init::ping_arg()));
            let mut extra = guest::core_qemu_args(&guest)?;
            extra.extend(ICOUNT.iter().map(|arg| arg.to_string()));
            let boot = Boot { profile: &profile, kernel: &files.image.raw, dtb: files.dtb.as_deref(), bootargs: &bootargs, extra_args: &extra };
            jobs.push(Job { name: format!("load-{load}-{run}"), cmd: qemu.command(&boot), nonce: Some(nonce) });
        }
    }
    let consoles = runner::boot_all(jobs, options.jobs)?;
    let mut loads = Vec::new();
    for (load, consoles) in LOADS.into_iter().zip(consoles.chunks(runs as usize)) {
        let mut per_run = Vec::new();
        for (run, console) in (1..).zip(consoles) {
            let mut problems = verdict::guest_latency_test_problems(console, latency_test);
            problems.extend(verdict::sampling_problems(console));
            anyhow::ensure!(problems.is_empty(), "load {load}, run {run}: {}", problems.join("; "));
            per_run.push(figures(&parse::parse(console)).with_context(|| format!("load {load}, run {run}"))?);
        }
        loads.push(LoadSpread::of(load, &per_run).context("no runs")?);
    }
    let result = Loads { checks: checks(&loads), loads };
    print(&result);
    Ok(result)
}

fn print(result: &Loads) {
    println!("\n(3) oob latency under each guest load against an idle guest (us), median (min..max) over the runs");
    println!("  {:<10} {:>24} {:>24} {:>24} {:>24} {:>24}", "load", "oob-thread max", "oob-irq max", "in-band max", "in-band p99", "sirq max");
    let us = |spread: &Spread| {
        Spread::of(&spread.runs.iter().map(|ns| ns / 1000.0).collect::<Vec<_>>()).map_or_else(String::new, |s| s.describe(""))
    };
    for load in &result.loads {
        println!(
            "  {:<10} {:>24} {:>24} {:>24} {:>24} {:>24}",
            load.load,
            us(&load.oob_thread_max_ns),
            us(&load.oob_irq_max_ns),
            us(&load.inband_max_ns),
            us(&load.inband_p99_ns),
            load.sirq_max_ns.as_ref().map_or_else(|| "-".to_owned(), us)
        );
    }
    println!(
        "  channel round trip (companion ping, {} x 64 bytes after cyclictest, under the load; us) and the oob echo \
         thread's CPU time per message (ns)",
        guest::init::PING_ROUND_TRIPS
    );
    println!("  {:<10} {:>24} {:>24} {:>24}", "load", "round trip avg", "round trip max", "echo cpu/message");
    for load in &result.loads {
        println!(
            "  {:<10} {:>24} {:>24} {:>24}",
            load.load,
            load.round_trip_avg_ns.as_ref().map_or_else(|| "-".to_owned(), us),
            load.round_trip_max_ns.as_ref().map_or_else(|| "-".to_owned(), us),
            load.echo_cpu_ns_per_message.as_ref().map_or_else(|| "-".to_owned(), |s| s.describe(""))
        );
    }
    for check in &result.checks {
        println!("  {:<48} {}", check.name, check.verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(thread: f64, irq: f64, inband: f64) -> RunFigures {
        RunFigures {
            thread_max_ns: thread,
            irq_max_ns: irq,
            inband_max_ns: inband,
            inband_p99_ns: inband / 2.0,
            sirq_max_ns: None,
            round_trip: None,
        }
    }

    #[test]
    fn checks_compare_each_load_with_idle_and_grinder_with_linux() {
        let idle = LoadSpread::of(Load::Idle, &[run(1000.0, 500.0, 20_000.0), run(1200.0, 600.0, 22_000.0)]).unwrap();
        let grinder = LoadSpread::of(Load::Grinder, &[run(1100.0, 550.0, 100_000.0)]).unwrap();
        let neighbour = LoadSpread::of(Load::Neighbour, &[run(2200.0, 500.0, 50_000.0)]).unwrap();
        let checks = checks(&[idle, grinder, neighbour]);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "oob-thread max, grinder / idle",
                "oob-irq max, grinder / idle",
                "oob-thread max / in-band max, grinder",
                "oob-thread max, neighbour / idle",
                "oob-irq max, neighbour / idle",
            ]
        );
        assert!(checks[0].met(), "1100 / 1100: {}", checks[0].verdict);
        assert!(checks[2].met(), "1100 / 100000");
        assert!(!checks[3].met(), "2200 / 1100 is 2x");
        assert!(checks[3].verdict.contains("MISSED by 0.900"), "{}", checks[3].verdict);
    }

    /// Issue 11's bounds, not the bench's earlier 1.2x and 1/10: ratios between the two fail.
    #[test]
    fn checks_use_issue_11s_targets() {
        let idle = LoadSpread::of(Load::Idle, &[run(1000.0, 1000.0, 20_000.0)]).unwrap();
        // 1.15x the idle maxima, and 1150 / 16000 = 0.072 of Linux's max: within 1.2x and 1/10,
        // beyond 1.1x and 1/20.
        let grinder = LoadSpread::of(Load::Grinder, &[run(1150.0, 1150.0, 16_000.0)]).unwrap();
        // 1.09x and 1.1x exactly: met.
        let neighbour = LoadSpread::of(Load::Neighbour, &[run(1090.0, 1100.0, 50_000.0)]).unwrap();
        let checks = checks(&[idle, grinder, neighbour]);
        assert!(checks.iter().take(2).all(|c| c.target == 1.1), "{checks:?}");
        assert_eq!(checks[2].target, 0.05);
        assert!(!checks[0].met() && !checks[1].met(), "1.15x: {} / {}", checks[0].verdict, checks[1].verdict);
        assert!(checks[0].verdict.contains("MISSED by 0.050"), "{}", checks[0].verdict);
        assert!(!checks[2].met(), "0.072 of Linux's max: {}", checks[2].verdict);
        assert!(checks[3].met() && checks[4].met(), "{} / {}", checks[3].verdict, checks[4].verdict);
        // Just under 1/20 of Linux's max: met.
        let idle = LoadSpread::of(Load::Idle, &[run(1000.0, 1000.0, 20_000.0)]).unwrap();
        let quiet = LoadSpread::of(Load::Grinder, &[run(1000.0, 1000.0, 20_001.0)]).unwrap();
        assert!(super::checks(&[idle, quiet])[2].met());
    }

    #[test]
    fn no_idle_reference_no_checks() {
        let grinder = LoadSpread::of(Load::Grinder, &[run(1.0, 1.0, 1.0)]).unwrap();
        assert!(checks(&[grinder]).is_empty());
    }

    #[test]
    fn the_round_trip_spreads_only_when_every_run_has_it() {
        let trip = |avg_ns, cpu_ns| RoundTrip {
            count: 200,
            message_bytes: 64,
            min_ns: 1,
            avg_ns,
            p99_ns: 2 * avg_ns,
            max_ns: 3 * avg_ns,
            echo_wakeups: 200,
            echo_bytes: 12_800,
            echo_cpu_ns: cpu_ns,
        };
        let with = |avg_ns, cpu_ns| RunFigures { round_trip: Some(trip(avg_ns, cpu_ns)), ..run(1.0, 1.0, 1.0) };
        let both = LoadSpread::of(Load::Idle, &[with(80_000, 352_000), with(90_000, 360_000)]).unwrap();
        assert_eq!(both.round_trip_avg_ns.as_ref().unwrap().runs, [80_000.0, 90_000.0]);
        assert_eq!(both.round_trip_max_ns.as_ref().unwrap().runs, [240_000.0, 270_000.0]);
        assert_eq!(both.echo_cpu_ns_per_message.as_ref().unwrap().runs, [1760.0, 1800.0]);
        let one = LoadSpread::of(Load::Idle, &[with(80_000, 352_000), run(1.0, 1.0, 1.0)]).unwrap();
        assert!(one.round_trip_avg_ns.is_none() && one.echo_cpu_ns_per_message.is_none());
    }

    #[test]
    fn a_console_without_figures_is_an_error() {
        assert!(figures(&parse::parse("nothing here\n")).is_err());
    }
}
