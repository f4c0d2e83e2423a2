//! A run's verdict, and why a guest cannot forge it.
//!
//! QEMU runs with semihosting off, so nothing on the machine can set QEMU's exit status or
//! touch a host file; the core ends every run by printing `verdict: PASS|FAIL (exit code N,
//! nonce HEX)` and powering off (PSCI `SYSTEM_OFF`). HEX is a fresh random [`Nonce`] xtask
//! passes in the core's own boot arguments (`companion.nonce=`), which the guest never sees.
//! The core marks every line of guest console output with [`GUEST_MARK`] at its start, so:
//!
//! - a line without the mark is the core's (or QEMU's) — [`Source::Core`];
//! - the run passes only on a core line `verdict: PASS` carrying this run's nonce; a core
//!   `verdict: FAIL` counts with any nonce (a failure needs no proof: the core may fail before
//!   it read its arguments, or be entered at EL1 where it reads none);
//! - figures the harness trusts (`RTS|`, `replay log:`, forwarded counts, …) are read from
//!   core lines only; what the guest reports (cyclictest, `/proc/interrupts`) from guest lines
//!   only, and labelled as guest-reported.
//!
//! [`judge`] turns how QEMU ended and what the console showed into the core's exit code or
//! the reason the run has no trustworthy verdict (a hang caught by the watchdog, QEMU ending
//! without a verdict).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use regex::Regex;

use crate::process::Ending;

/// What the core puts before every line of guest console output (`kernel/src/guest/console.rs`).
pub const GUEST_MARK: &str = "guest| ";

/// Random bytes in a nonce (printed as twice as many hex digits).
const NONCE_BYTES: usize = 16;

/// A per-run secret the core prints in its verdict line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh nonce from the host's random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; NONCE_BYTES];
        File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut bytes))
            .context("cannot read /dev/urandom for the run's nonce")?;
        Ok(Self(bytes.iter().map(|byte| format!("{byte:02x}")).collect()))
    }

    /// A fixed nonce, for tests.
    #[cfg(test)]
    pub fn fixed(hex: &str) -> Self {
        Self(hex.to_owned())
    }

    /// The core's boot argument carrying it.
    pub fn bootarg(&self) -> String {
        format!("companion.nonce={}", self.0)
    }

    /// What only the core's final verdict line contains: the run may end once it appeared.
    pub fn end_marker(&self) -> String {
        format!(", nonce {})", self.0)
    }

    /// `bootargs` with the nonce among the core's arguments (before a ` -- ` that starts the
    /// guest's command line, never after it).
    pub fn add_to(&self, bootargs: &str) -> String {
        match bootargs.split_once(" -- ") {
            Some((core, guest)) => format!("{} -- {guest}", join(core, &self.bootarg())),
            None => join(bootargs, &self.bootarg()),
        }
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `first` and `second` separated by a space, either possibly empty.
fn join(first: &str, second: &str) -> String {
    [first, second].iter().filter(|s| !s.trim().is_empty()).copied().collect::<Vec<_>>().join(" ")
}

/// Who printed a console line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The core (or QEMU): no guest mark.
    Core,
    /// The guest, through the core's emulated UART: the line started with [`GUEST_MARK`].
    Guest,
}

/// A console line's source and its text (without the guest mark).
pub fn classify(line: &str) -> (Source, &str) {
    match line.strip_prefix(GUEST_MARK) {
        Some(text) => (Source::Guest, text),
        None => (Source::Core, line),
    }
}

/// The text of the lines of `console` printed by `source`, in order.
pub fn lines_of(console: &str, source: Source) -> impl Iterator<Item = &str> {
    console.lines().map(classify).filter(move |(from, _)| *from == source).map(|(_, text)| text)
}

static VERDICT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^verdict: (PASS|FAIL) \(exit code (\d+), nonce ([^)]*)\)$").expect("valid regex")
});

/// The core's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the run passed.
    pub pass: bool,
    /// The core's exit code (0 for a pass).
    pub code: i32,
}

/// The core's verdict in `console`: the first core line `verdict: PASS` with this run's
/// nonce, or `verdict: FAIL` (any nonce); `None` if there is neither.
pub fn verdict(console: &str, nonce: &Nonce) -> Option<Verdict> {
    lines_of(console, Source::Core).find_map(|line| {
        let caps = VERDICT.captures(line)?;
        let pass = &caps[1] == "PASS";
        if pass && caps[3] != nonce.0 {
            return None;
        }
        let code = caps[2].parse().ok()?;
        Some(Verdict { pass: pass && code == 0, code })
    })
}

/// The core's exit code for a run that ended with `ending` and printed `console`, or why it
/// has no verdict to trust.
pub fn judge(ending: Ending, console: &str, nonce: &Nonce) -> Result<i32, String> {
    let found = verdict(console, nonce);
    match (ending, found) {
        (Ending::Exited(0) | Ending::AfterVerdict, Some(verdict)) => Ok(verdict.code),
        (Ending::Exited(code), Some(_)) => Err(format!("QEMU exited with status {code} after the core's verdict")),
        (Ending::TimedOut(_), Some(verdict)) => Ok(verdict.code),
        (Ending::TimedOut(limit), None) => Err(format!(
            "watchdog: no verdict from the core within {:.0} s; QEMU killed (a hung core or guest)",
            limit.as_secs_f64()
        )),
        (Ending::Signaled, _) => Err("QEMU was killed by a signal".to_owned()),
        (Ending::Exited(_) | Ending::AfterVerdict, None) => {
            Err("QEMU ended without the core's verdict (no `verdict:` line with this run's nonce)".to_owned())
        }
    }
}

static RTT_PERIOD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^RTT\|.*\(oob thread context, (\d+) us period").expect("valid regex"));
static RTS_ELAPSED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^RTS\|.*\|\s*(\d\d):(\d\d):(\d\d)/\d\d:\d\d:\d\d$").expect("valid regex"));
static LATMUS_TOTALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\] latmus: (\d+) thread samples, (\d+) irq samples, (\d+) \+ (\d+) overruns$").expect("valid regex")
});

/// Whether the core's latency tests (if the console shows any) kept sampling: for each run
/// (from its thread-context `RTT|` header to the next), one `RTD|` line per second it reports
/// as elapsed, and per context as many samples plus overruns as periods in those seconds
/// (less the first 2 ms before the first deadline, plus at most one second more when the run
/// ended after the last report). Core lines only. One line per problem; empty when fine or
/// when no latency test ran.
pub fn sampling_problems(console: &str) -> Vec<String> {
    let core: Vec<&str> = lines_of(console, Source::Core).collect();
    let starts: Vec<usize> = core.iter().enumerate().filter(|(_, line)| RTT_PERIOD.is_match(line)).map(|(at, _)| at).collect();
    let mut problems = Vec::new();
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(core.len());
        let name = if starts.len() == 1 { SINGLE_RUN.to_owned() } else { format!("latency test run {}", index + 1) };
        problems.extend(run_sampling_problems(&core[start..end], &name));
    }
    problems
}

/// How [`sampling_problems`] names the run when there is only one.
const SINGLE_RUN: &str = "the latency test";

/// [`sampling_problems`] of one run, `lines` starting at its `RTT|` header.
fn run_sampling_problems(lines: &[&str], name: &str) -> Vec<String> {
    let Some(period_us) = lines.first().and_then(|line| RTT_PERIOD.captures(line)?[1].parse::<u64>().ok()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let rtd = lines.iter().filter(|line| line.starts_with("RTD|")).count() as u64;
    let elapsed = lines.iter().find_map(|line| {
        let caps = RTS_ELAPSED.captures(line)?;
        let part = |i: usize| caps[i].parse::<u64>().ok();
        Some(part(1)? * 3600 + part(2)? * 60 + part(3)?)
    });
    let Some(elapsed) = elapsed else {
        return vec![format!("{name} started (RTT|) but printed no RTS| summary")];
    };
    if rtd != elapsed {
        problems.push(format!("{name} reported {elapsed} s elapsed but printed {rtd} RTD| lines (one per second)"));
    }
    let Some(caps) = lines.iter().find_map(|line| LATMUS_TOTALS.captures(line)) else {
        problems.push(format!("{name} printed no `latmus: ... samples` totals"));
        return problems;
    };
    let number = |i: usize| caps[i].parse::<u64>().unwrap_or(0);
    let per_second = 1_000_000 / period_us.max(1);
    let (low, high) = ((elapsed * per_second).saturating_sub(3), (elapsed + 1) * per_second + 3);
    for (context, samples, overruns) in [("thread", number(1), number(3)), ("irq", number(2), number(4))] {
        let counted = samples + overruns;
        if !(low..=high).contains(&counted) {
            problems.push(format!(
                "the {context} context counted {counted} samples and overruns over {elapsed} s at a {period_us} us \
                 period (expected {low}..={high}): it did not sample every period{}",
                if name == SINGLE_RUN { String::new() } else { format!(" ({name})") }
            ));
        }
    }
    problems
}

/// The latency test a run has its guest start with `companion latmus` (the main job's
/// script), next to cyclictest: its period and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLatencyTest {
    /// The period asked for (`-p`), in µs.
    pub period_us: u64,
    /// The length asked for (`-T`), in seconds.
    pub seconds: u64,
}

impl GuestLatencyTest {
    /// The guest's command-line word asking its script for the test (`guest.latmus=PERIOD_US`;
    /// the length is the script's `guest.duration=`).
    pub fn guest_arg(self) -> String {
        format!("guest.latmus={}", self.period_us)
    }

    /// The core's argument measuring the guest's synthetic-interrupt delay (`sirq`) beside
    /// it, as the boot-argument form does.
    pub const CORE_ARG: &str = "companion.sirq=on";
}

static RTS_SECONDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^RTS\|.*\|\s*(\d\d):(\d\d):(\d\d)/(\d\d):(\d\d):(\d\d)$").expect("valid regex"));

/// Why a run whose guest was to start the latency test (`expected`) did not measure what was
/// asked, read from the core's lines only (the core prints what the control port streams to
/// Linux; Linux's copy proves nothing): no test at all (the guest never started it, or the
/// core refused it), more than one, another period, or another length. One line per problem;
/// empty when fine. Whether every period was sampled is [`sampling_problems`]'s.
pub fn guest_latency_test_problems(console: &str, expected: GuestLatencyTest) -> Vec<String> {
    let core: Vec<&str> = lines_of(console, Source::Core).collect();
    let periods: Vec<u64> = core.iter().filter_map(|line| RTT_PERIOD.captures(line)?[1].parse().ok()).collect();
    let GuestLatencyTest { period_us, seconds } = expected;
    let Some(&period) = periods.first() else {
        return vec![format!(
            "no latency test ran: the guest was to start `companion latmus -p {period_us} -T {seconds}` beside \
             cyclictest, but the core printed no RTT| line (the guest never started it, or the core refused it)"
        )];
    };
    let mut problems = Vec::new();
    if periods.len() > 1 {
        problems.push(format!("the latency test ran {} times (the guest was to start it once)", periods.len()));
    }
    if period != period_us {
        problems.push(format!("the latency test ran at a {period} us period, not the run's {period_us} us"));
    }
    let lengths = core.iter().find_map(|line| {
        let caps = RTS_SECONDS.captures(line)?;
        let part = |i: usize| caps[i].parse::<u64>().ok();
        Some((part(1)? * 3600 + part(2)? * 60 + part(3)?, part(4)? * 3600 + part(5)? * 60 + part(6)?))
    });
    if let Some((elapsed, planned)) = lengths
        && (elapsed, planned) != (seconds, seconds)
    {
        problems.push(format!(
            "the latency test measured {elapsed} s of {planned} s planned, not the run's {seconds} s: it stopped early \
             or was started with another length"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn nonce() -> Nonce {
        Nonce::fixed(NONCE)
    }

    #[test]
    fn nonces_are_fresh_and_go_to_the_core_only() {
        let (a, b) = (Nonce::generate().unwrap(), Nonce::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 2 * NONCE_BYTES);
        assert!(a.0.bytes().all(|b| b.is_ascii_hexdigit()));
        let n = nonce();
        assert_eq!(n.add_to(""), format!("companion.nonce={NONCE}"));
        assert_eq!(n.add_to("latmus=2"), format!("latmus=2 companion.nonce={NONCE}"));
        assert_eq!(
            n.add_to("companion.guest=0x1 latmus=2 -- console=ttyAMA0 guest.script=uname"),
            format!("companion.guest=0x1 latmus=2 companion.nonce={NONCE} -- console=ttyAMA0 guest.script=uname")
        );
    }

    #[test]
    fn classifies_guest_lines_by_their_mark() {
        assert_eq!(classify("guest| verdict: PASS"), (Source::Guest, "verdict: PASS"));
        assert_eq!(classify("[ 0.1 core cpu0 INFO] x"), (Source::Core, "[ 0.1 core cpu0 INFO] x"));
        assert_eq!(classify(" guest| x"), (Source::Core, " guest| x"));
        let console = "a\nguest| b\nc\nguest| guest| d\n";
        assert_eq!(lines_of(console, Source::Core).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(lines_of(console, Source::Guest).collect::<Vec<_>>(), ["b", "guest| d"]);
    }

    #[test]
    fn a_pass_needs_this_runs_nonce_on_a_core_line() {
        let pass = format!("verdict: PASS (exit code 0, nonce {NONCE})\n");
        assert_eq!(verdict(&pass, &nonce()), Some(Verdict { pass: true, code: 0 }));
        // The guest's copy, a wrong nonce, none at all: no verdict.
        assert_eq!(verdict(&format!("guest| {pass}"), &nonce()), None);
        assert_eq!(verdict("verdict: PASS (exit code 0, nonce 00)\n", &nonce()), None);
        assert_eq!(verdict("verdict: PASS\n", &nonce()), None);
        // A failure counts whatever its nonce.
        let fail = "verdict: FAIL (exit code 104, nonce unknown at EL1)\n";
        assert_eq!(verdict(fail, &nonce()), Some(Verdict { pass: false, code: 104 }));
    }

    #[test]
    fn judges_hangs_and_missing_verdicts_as_failures() {
        let pass = format!("verdict: PASS (exit code 0, nonce {NONCE})\n");
        assert_eq!(judge(Ending::Exited(0), &pass, &nonce()), Ok(0));
        assert_eq!(judge(Ending::AfterVerdict, &pass, &nonce()), Ok(0));
        assert!(judge(Ending::Exited(0), "guest| all fine\n", &nonce()).unwrap_err().contains("without the core's verdict"));
        let hung = judge(Ending::TimedOut(Duration::from_secs(90)), "booting\n", &nonce()).unwrap_err();
        assert!(hung.contains("watchdog") && hung.contains("90 s"), "{hung}");
        assert!(judge(Ending::Exited(1), &pass, &nonce()).is_err());
        assert!(judge(Ending::Signaled, &pass, &nonce()).is_err());
    }

    /// The core's latency-test lines of a 3 s run at 1 ms.
    fn latmus_console(rtd_lines: usize, thread_samples: u64) -> String {
        let mut console = "RTT|  00:00:01  (oob thread context, 1000 us period, priority 99, cpu 3, gravity 0 ns)\n".to_owned();
        for _ in 0..rtd_lines {
            console += "RTD|      1.000|      2.000|      3.000|       0|     0|      1.000|      3.000\n";
        }
        console += "RTS|      1.000|      2.000|      3.000|       0|     0|    00:00:03/00:00:03\n";
        console + &format!("[ 3.1 core cpu0 INFO ] latmus: {thread_samples} thread samples, 2999 irq samples, 0 + 0 overruns\n")
    }

    #[test]
    fn sampling_checks_catch_missing_seconds_and_samples() {
        assert!(sampling_problems(&latmus_console(3, 2998)).is_empty());
        assert!(sampling_problems("no latency test here\n").is_empty());
        assert_eq!(sampling_problems(&latmus_console(2, 2998)).len(), 1);
        let gap = sampling_problems(&latmus_console(3, 1500));
        assert!(gap.len() == 1 && gap[0].contains("thread context counted 1500"), "{gap:?}");
    }

    #[test]
    fn sampling_checks_take_each_run_on_its_own() {
        // Two runs back to back (the flood case's quiet and busy halves): both fine.
        let two = latmus_console(3, 2998) + &latmus_console(3, 2999);
        assert!(sampling_problems(&two).is_empty(), "{:?}", sampling_problems(&two));
        // The second one lost samples: named as the second run.
        let gap = sampling_problems(&(latmus_console(3, 2998) + &latmus_console(3, 1500)));
        assert!(gap.len() == 1 && gap[0].contains("counted 1500") && gap[0].contains("(latency test run 2)"), "{gap:?}");
        // The first one printed a second too few.
        let short = sampling_problems(&(latmus_console(2, 2998) + &latmus_console(3, 2998)));
        assert!(short.len() == 1 && short[0].starts_with("latency test run 1 reported 3 s elapsed but printed 2"), "{short:?}");
    }

    #[test]
    fn sampling_checks_ignore_guest_forgeries() {
        // A guest printing a whole latency test changes nothing: none ran.
        let forged: String = latmus_console(3, 2998).lines().map(|line| format!("guest| {line}\n")).collect();
        assert!(sampling_problems(&forged).is_empty());
        // Nor can it hide a gap in the core's own by adding lines.
        let console = latmus_console(3, 1500) + "guest| [ 3.2 core cpu0 INFO ] latmus: 3000 thread samples, 3000 irq samples, 0 + 0 overruns\n";
        assert_eq!(sampling_problems(&console).len(), 1);
    }

    const ASKED: GuestLatencyTest = GuestLatencyTest { period_us: 1000, seconds: 3 };

    #[test]
    fn a_guest_started_test_must_have_run_as_asked() {
        assert_eq!(ASKED.guest_arg(), "guest.latmus=1000");
        assert!(guest_latency_test_problems(&latmus_console(3, 2998), ASKED).is_empty());
        // The guest never started it: a clear reason, whatever the guest printed itself.
        let forged: String = latmus_console(3, 2998).lines().map(|line| format!("guest| {line}\n")).collect();
        let none = guest_latency_test_problems(&forged, ASKED);
        assert!(none.len() == 1 && none[0].starts_with("no latency test ran"), "{none:?}");
        // Another period, another length, twice.
        let slow = latmus_console(3, 2998).replace("1000 us period", "500000 us period");
        assert!(guest_latency_test_problems(&slow, ASKED)[0].contains("500000 us period"));
        let short = guest_latency_test_problems(&latmus_console(3, 2998), GuestLatencyTest { period_us: 1000, seconds: 10 });
        assert!(short.len() == 1 && short[0].contains("3 s of 3 s planned, not the run's 10 s"), "{short:?}");
        let twice = latmus_console(3, 2998).repeat(2);
        assert!(guest_latency_test_problems(&twice, ASKED)[0].contains("ran 2 times"));
    }

    #[test]
    fn a_guest_test_that_stopped_sampling_fails_both_checks() {
        // The core's RTS| says 2 of 3 s (the run ended before the test did): the length
        // check fails, and the per-second count with it.
        let console = latmus_console(2, 1999).replace("00:00:03/00:00:03", "00:00:02/00:00:03");
        let length = guest_latency_test_problems(&console, ASKED);
        assert!(length.len() == 1 && length[0].contains("2 s of 3 s planned"), "{length:?}");
        assert!(sampling_problems(&latmus_console(3, 1500)).iter().any(|p| p.contains("did not sample every period")));
    }
}
