//! The channel's round trip (`companion ping`): Linux thread → the core's oob echo thread →
//! Linux thread over `companion.echo`. Linux measures it and prints it (the guest's word, like
//! cyclictest); the core counts what its echo thread took, and that thread's CPU time, and
//! prints the count when the run ends (`channel: companion.echo: …`). The report takes the
//! guest's figures only when the core's count covers them — the echo thread took at least as
//! many bytes as the round trips claimed — so a guest printing a `ping:` line it did not
//! measure is caught, and a core line naming the echo counts is read from the core only.

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
    Regex::new(r"channel: companion\.echo: (\d+) wake-ups, (\d+) bytes echoed, (\d+) ns of CPU time$").expect("valid regex")
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

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = "guest| guest: ping: 200 round trips of 64 bytes over companion.echo: min 49.9 us, avg 84.6 us, p99 378.9 us, max 3618.3 us\r\n";
    const ECHO: &str = "[    7.1 core cpu0 INFO ] channel: companion.echo: 201 wake-ups, 12800 bytes echoed, 354162 ns of CPU time\n";

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
