//! The channel's round trip (`companion ping`): Linux thread → the core's oob echo thread →
//! Linux thread over `companion.echo`. Linux measures it and prints it (the guest's word, like
//! cyclictest); the core counts what its echo thread took, and that thread's CPU time, and
//! prints the count when the run ends (`channel: companion.echo: …`). The report takes the
//! guest's figures only when the core's count covers them — the echo thread took at least as
//! many bytes as the round trips claimed — so a guest printing a `ping:` line it did not
//! measure is caught, and a core line naming the echo counts is read from the core only.
//!
//! The flood (the `channel-flood` guest script): the core's latency test started from Linux
//! twice, the channel quiet then flooded; [`flood`] reads both tests' maxima from the core's
//! `RTS|` lines and holds the losses Linux reports against the core's count.

use std::sync::LazyLock;

use regex::Regex;

use crate::verdict::{self, Source};

static PING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^guest: ping: (\d+) round trips of (\d+) bytes over companion\.echo: min ([\d.]+) us, avg ([\d.]+) us, p99 ([\d.]+) us, max ([\d.]+) us$",
    )
    .expect("valid regex")
});
static ECHO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"channel: companion\.echo: (\d+) wake-ups, (\d+) bytes echoed, (\d+) ns of CPU time, (\d+) bytes dropped$")
        .expect("valid regex")
});

/// The round trips Linux measured and what the core's echo thread counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrip {
    /// Round trips made (the guest's word).
    pub count: u64,
    /// Bytes per message.
    pub message_bytes: u64,
    /// Shortest round trip, ns (the guest prints 0.1 µs).
    pub min_ns: u64,
    /// Mean round trip, ns.
    pub avg_ns: u64,
    /// 99th percentile (nearest rank), ns.
    pub p99_ns: u64,
    /// Longest round trip, ns.
    pub max_ns: u64,
    /// The echo thread's wake-ups over the run (the core's count).
    pub echo_wakeups: u64,
    /// Bytes it took over the run (the core's count).
    pub echo_bytes: u64,
    /// Its CPU time over the run, ns (the core's scheduler accounting).
    pub echo_cpu_ns: u64,
}

impl RoundTrip {
    /// The echo thread's CPU time per wake-up, ns: the oob side's cost of one message.
    pub fn echo_cpu_ns_per_wakeup(&self) -> u64 {
        self.echo_cpu_ns / self.echo_wakeups.max(1)
    }
}

/// µs with one decimal as printed by `companion ping`, in ns.
fn ns_of_us(text: &str) -> Option<u64> {
    let us: f64 = text.parse().ok()?;
    (us.is_finite() && us >= 0.0).then(|| (us * 1000.0).round() as u64)
}

/// The round trip of `console`: `None` when the guest printed no `ping:` line; `Err` with the
/// reason when the core's count does not back it.
pub fn round_trip(console: &str) -> Option<Result<RoundTrip, String>> {
    let guest = verdict::lines_of(console, Source::Guest).map(|line| line.trim_end_matches('\r'));
    let caps = guest.filter_map(|line| PING.captures(line)).next()?;
    let number = |i: usize| caps[i].parse::<u64>().ok();
    let (Some(count), Some(message_bytes)) = (number(1), number(2)) else {
        return Some(Err("the guest's ping line has unreadable counts".to_owned()));
    };
    let times: Option<Vec<u64>> = (3..=6).map(|i| ns_of_us(&caps[i])).collect();
    let Some([min_ns, avg_ns, p99_ns, max_ns]) = times.and_then(|times| <[u64; 4]>::try_from(times).ok()) else {
        return Some(Err("the guest's ping line has unreadable times".to_owned()));
    };
    let core = verdict::lines_of(console, Source::Core).filter_map(|line| ECHO.captures(line.trim_end_matches('\r'))).last();
    let Some(core) = core else {
        return Some(Err("the guest reported round trips but the core printed no companion.echo count".to_owned()));
    };
    let counted = |i: usize| core[i].parse::<u64>().unwrap_or(0);
    let (echo_wakeups, echo_bytes, echo_cpu_ns) = (counted(1), counted(2), counted(3));
    let claimed = count.saturating_mul(message_bytes);
    if echo_bytes < claimed {
        return Some(Err(format!(
            "the guest reported {count} round trips of {message_bytes} bytes, but the core's echo thread took only \
             {echo_bytes} bytes"
        )));
    }
    Some(Ok(RoundTrip { count, message_bytes, min_ns, avg_ns, p99_ns, max_ns, echo_wakeups, echo_bytes, echo_cpu_ns }))
}

/// Largest oob max with the channel flooded, relative to quiet (issue 13's target; reported,
/// not enforced: see docs/channel.md).
pub const FLOOD_TARGET: f64 = 1.1;

static RTS_MAX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^RTS\|\s*-?\d+\.\d+\|\s*-?\d+\.\d+\|\s*(-?)(\d+)\.(\d{3})\|").expect("valid regex"));
static FLOOD_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^guest: channel flood: written (\d+) bytes, read back (\d+) bytes$").expect("valid regex")
});

/// The oob latency test's maxima with the channel quiet and flooded (the core's), and the
/// flood's bytes: what Linux wrote and read back (the guest's word) against what the core's
/// echo thread took and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    /// oob thread and timer-IRQ maxima, quiet, ns.
    pub quiet_max_ns: [i64; 2],
    /// The same, flooded.
    pub flooded_max_ns: [i64; 2],
    /// Bytes Linux wrote into companion.echo.
    pub written: u64,
    /// Bytes Linux read back.
    pub read_back: u64,
    /// Bytes the core's echo thread took from Linux.
    pub taken: u64,
    /// Bytes its sends dropped (the ring to Linux full).
    pub dropped: u64,
}

impl Flood {
    /// The contexts' names, in the order of the maxima.
    pub const CONTEXTS: [&str; 2] = ["oob-thread", "oob-irq"];

    /// Flooded max over quiet max, per context (quiet taken as at least 1 ns).
    pub fn ratios(&self) -> [f64; 2] {
        [0, 1].map(|i| self.flooded_max_ns[i] as f64 / self.quiet_max_ns[i].max(1) as f64)
    }

    /// Whether the losses add up exactly: Linux lost nothing (the core took all it wrote) and
    /// every byte taken came back or was dropped and counted.
    pub fn exact(&self) -> bool {
        self.taken == self.written && self.read_back + self.dropped == self.taken
    }

    /// What falls short in the flood's accounting: inexact losses, no drop at all (no flood).
    pub fn loss_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.exact() {
            problems.push(format!(
                "channel flood: Linux wrote {} bytes and read back {}, the core took {} and dropped {}: the losses do \
                 not add up",
                self.written, self.read_back, self.taken, self.dropped
            ));
        }
        if self.dropped == 0 {
            problems.push("channel flood: the core dropped nothing: the channel was not flooded".to_owned());
        }
        problems
    }

    /// The contexts whose flooded max exceeds `target` × the quiet one, with their ratio.
    pub fn above(&self, target: f64) -> Vec<(&'static str, f64)> {
        Self::CONTEXTS.into_iter().zip(self.ratios()).filter(|(_, ratio)| *ratio > target).collect()
    }
}

/// The flood's figures in `console`: `None` when the guest printed no flood line; `Err` when
/// the core's lines lack the two tests' summaries or the echo count.
pub fn flood(console: &str) -> Option<Result<Flood, String>> {
    let guest = verdict::lines_of(console, Source::Guest).map(|line| line.trim_end_matches('\r'));
    let caps = guest.filter_map(|line| FLOOD_LINE.captures(line)).next()?;
    let (Ok(written), Ok(read_back)) = (caps[1].parse::<u64>(), caps[2].parse::<u64>()) else {
        return Some(Err("the guest's flood line has unreadable counts".to_owned()));
    };
    let core: Vec<&str> = verdict::lines_of(console, Source::Core).map(|line| line.trim_end_matches('\r')).collect();
    // RTS| lines in order: quiet thread, quiet IRQ, flooded thread, flooded IRQ.
    let maxima: Vec<i64> = core
        .iter()
        .filter_map(|line| {
            let caps = RTS_MAX.captures(line)?;
            let ns = caps[2].parse::<i64>().ok()? * 1000 + caps[3].parse::<i64>().ok()?;
            Some(if &caps[1] == "-" { -ns } else { ns })
        })
        .collect();
    let [quiet_thread, quiet_irq, flooded_thread, flooded_irq] = maxima[..] else {
        return Some(Err(format!("the core printed {} RTS| summaries, not the 4 of a quiet and a flooded test", maxima.len())));
    };
    let Some(echo) = core.iter().filter_map(|line| ECHO.captures(line)).next_back() else {
        return Some(Err("the core printed no companion.echo count".to_owned()));
    };
    let counted = |i: usize| echo[i].parse::<u64>().unwrap_or(0);
    Some(Ok(Flood {
        quiet_max_ns: [quiet_thread, quiet_irq],
        flooded_max_ns: [flooded_thread, flooded_irq],
        written,
        read_back,
        taken: counted(2),
        dropped: counted(4),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = "guest| guest: ping: 200 round trips of 64 bytes over companion.echo: min 49.9 us, avg 84.6 us, p99 378.9 us, max 3618.3 us\r\n";
    const ECHO: &str = "[    7.1 core cpu0 INFO ] channel: companion.echo: 201 wake-ups, 12800 bytes echoed, 354162 ns of CPU time, 0 bytes dropped\n";

    #[test]
    fn reads_the_guests_figures_backed_by_the_cores_count() {
        let trip = round_trip(&format!("{PING}{ECHO}")).unwrap().unwrap();
        assert_eq!(
            trip,
            RoundTrip {
                count: 200,
                message_bytes: 64,
                min_ns: 49_900,
                avg_ns: 84_600,
                p99_ns: 378_900,
                max_ns: 3_618_300,
                echo_wakeups: 201,
                echo_bytes: 12_800,
                echo_cpu_ns: 354_162,
            }
        );
        assert_eq!(trip.echo_cpu_ns_per_wakeup(), 1762);
        assert_eq!(round_trip("guest| guest: cyclictest\nverdict: PASS\n"), None);
    }

    /// A flood run's console: two tests' summaries, the core's echo count, the guest's line.
    fn flood_console(flooded_thread_max: &str, read_back: u64, dropped: u64) -> String {
        let rts = |max: &str| format!("RTS|      0.000|      0.096|{max:>11}|       0|     0|    00:00:02/00:00:02\n");
        format!(
            "{}{}{}{}[ 9.0 core cpu0 INFO ] channel: companion.echo: 900 wake-ups, 1048576 bytes echoed, 1 ns of CPU time, \
             {dropped} bytes dropped\nguest| guest: channel flood: written 1048576 bytes, read back {read_back} bytes\n",
            rts("1.500"),
            rts("0.600"),
            rts(flooded_thread_max),
            rts("0.600"),
        )
    }

    #[test]
    fn the_flood_compares_the_cores_maxima_and_balances_the_losses() {
        let fine = flood(&flood_console("1.600", 8192, 1_040_384)).unwrap().unwrap();
        assert_eq!(fine.quiet_max_ns, [1500, 600]);
        assert_eq!(fine.flooded_max_ns, [1600, 600]);
        assert!(fine.exact());
        let ratios = fine.ratios();
        assert!((ratios[0] - 1.0667).abs() < 1e-3 && ratios[1] == 1.0, "{ratios:?}");
        assert!(fine.loss_problems().is_empty() && fine.above(FLOOD_TARGET).is_empty(), "{fine:?}");
        // A slower oob side under the flood, a byte unaccounted for, nothing dropped.
        let slow = flood(&flood_console("3.000", 8192, 1_040_384)).unwrap().unwrap();
        assert_eq!(slow.above(FLOOD_TARGET), [("oob-thread", 2.0)]);
        assert!(slow.loss_problems().is_empty());
        let lost = flood(&flood_console("1.600", 8191, 1_040_384)).unwrap().unwrap();
        assert!(lost.loss_problems()[0].contains("do not add up"));
        let calm = flood(&flood_console("1.600", 1_048_576, 0)).unwrap().unwrap();
        assert!(calm.loss_problems().iter().any(|p| p.contains("dropped nothing")));
        let negative = flood(&flood_console("-0.016", 8192, 1_040_384)).unwrap().unwrap();
        assert_eq!(negative.flooded_max_ns[0], -16);
        assert_eq!(flood("nothing\n"), None);
    }

    #[test]
    fn the_flood_takes_its_maxima_and_counts_from_the_core_only() {
        // The guest prints the summaries and the count itself: not the core's.
        let console = flood_console("1.600", 8192, 1_040_384);
        let forged: String = console
            .lines()
            .map(|line| if line.starts_with("guest| ") { format!("{line}\n") } else { format!("guest| {line}\n") })
            .collect();
        assert!(flood(&forged).unwrap().unwrap_err().contains("0 RTS| summaries"));
    }

    #[test]
    fn forged_lines_are_caught_or_ignored() {
        // The guest prints the core's count itself: no core count.
        let forged_count = format!("{PING}guest| {ECHO}");
        assert!(round_trip(&forged_count).unwrap().unwrap_err().contains("no companion.echo count"));
        // The core's count is smaller than what the guest claims (it pinged less, or not at all).
        let short = ECHO.replace("12800 bytes", "640 bytes");
        let err = round_trip(&format!("{PING}{short}")).unwrap().unwrap_err();
        assert!(err.contains("took only 640 bytes"), "{err}");
        // A ping line on the core's side is not the guest's measurement.
        let core_ping = PING.strip_prefix("guest| ").unwrap();
        assert_eq!(round_trip(&format!("{core_ping}{ECHO}")), None);
        // Garbage times make no figures.
        let garbage = PING.replace("min 49.9", "min 4e9x");
        assert_eq!(round_trip(&format!("{garbage}{ECHO}")), None);
    }
}
