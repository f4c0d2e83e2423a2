//! Checking a run's console output and the core's verdict against expectations: each
//! expected line is looked for among the core's lines or the guest's (see [`verdict`]).

use std::fmt;

use regex::Regex;

use crate::process::Ending;
use crate::verdict::{self, Nonce, Source};

/// Compiles a pattern that is part of xtask's own code.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|err| panic!("bad pattern {pattern:?}: {err}"))
}

/// Requires some console line of one source to match every one of its patterns (so one
/// line can be checked for several items in any order).
#[derive(Debug, Clone)]
pub struct LineMatch {
    source: Source,
    patterns: Vec<Regex>,
}

impl LineMatch {
    /// A core line matching all of `patterns` (regular expressions).
    pub fn all(patterns: &[&str]) -> Self {
        Self::from(Source::Core, patterns)
    }

    /// A guest line (what follows the core's guest mark) matching all of `patterns`.
    pub fn guest(patterns: &[&str]) -> Self {
        Self::from(Source::Guest, patterns)
    }

    fn from(source: Source, patterns: &[&str]) -> Self {
        Self { source, patterns: patterns.iter().map(|pattern| regex(pattern)).collect() }
    }

    fn matches(&self, line: &str) -> bool {
        self.patterns.iter().all(|pattern| pattern.is_match(line))
    }

    /// The first line of `console` from this source matching every pattern.
    fn find<'a>(&self, console: &'a str) -> Option<&'a str> {
        verdict::lines_of(console, self.source).find(|line| self.matches(line))
    }
}

impl fmt::Display for LineMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self
            .patterns
            .iter()
            .map(|pattern| format!("/{pattern}/"))
            .collect();
        if self.source == Source::Guest {
            f.write_str("guest ")?;
        }
        f.write_str(&patterns.join(" & "))
    }
}

/// What a run must show.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The exit code the core's verdict line must carry (0: `verdict: PASS`).
    pub exit_code: i32,
    /// Lines that must each appear somewhere in the console output.
    pub lines: Vec<LineMatch>,
    /// Lines that may not appear.
    pub forbidden: Vec<LineMatch>,
    /// Pairs of lines whose patterns' first capture group must hold the same text (e.g. a
    /// count the core printed and the one the guest printed).
    pub equal_captures: Vec<(LineMatch, LineMatch)>,
    /// Pairs of lines whose first capture groups are numbers, the first at most the second
    /// (e.g. lines the guest read and lines the core wrote).
    pub at_most_captures: Vec<(LineMatch, LineMatch)>,
    /// The latency test the guest was to start, checked from the core's lines
    /// ([`verdict::guest_latency_test_problems`]).
    pub latency_test: Option<verdict::GuestLatencyTest>,
    /// Whether the run is the channel flood, its losses exact
    /// ([`crate::report::channel::Flood::loss_problems`]).
    pub channel_flood: bool,
    /// Whether the run restarts its guest beside the core's latency test, the worst of its
    /// boots after a restart held against its first boot's
    /// ([`crate::report::restart::BootWindows::problems`], [`crate::report::restart::RESTART_BOUND`]).
    pub restart_windows: bool,
    /// The latency test's sampling is audited ([`verdict::sampling_problems`]): always for a
    /// passing run, and for a failing one that asks for it ([`Self::with_sampling_audit`]).
    pub sampling_audit: bool,
}

impl Expectations {
    /// Expects the core's verdict with `exit_code`, the given lines, and no core line
    /// matching any of `forbidden`.
    pub fn new(exit_code: i32, lines: Vec<LineMatch>, forbidden: &[&str]) -> Self {
        Self {
            exit_code,
            lines,
            forbidden: forbidden.iter().map(|pattern| LineMatch::all(&[pattern])).collect(),
            equal_captures: Vec::new(),
            at_most_captures: Vec::new(),
            latency_test: None,
            channel_flood: false,
            restart_windows: false,
            sampling_audit: exit_code == 0,
        }
    }

    /// Also audits the latency test's sampling when the expected verdict is a failure (a run
    /// that must fail for the guest's doing while the oob side samples every period).
    pub fn with_sampling_audit(mut self) -> Self {
        self.sampling_audit = true;
        self
    }

    /// Also forbids core lines matching any of `patterns`.
    pub fn forbid_core(mut self, patterns: &[&str]) -> Self {
        self.forbidden.extend(patterns.iter().map(|pattern| LineMatch::all(&[pattern])));
        self
    }

    /// Also forbids guest lines matching any of `patterns`.
    pub fn forbid_guest(mut self, patterns: &[&str]) -> Self {
        self.forbidden.extend(patterns.iter().map(|pattern| LineMatch::guest(&[pattern])));
        self
    }

    /// Also requires the latency test the guest was to start to have run as `test` asked.
    pub fn with_latency_test(mut self, test: verdict::GuestLatencyTest) -> Self {
        self.latency_test = Some(test);
        self
    }

    /// Also requires the channel flood's losses to add up exactly.
    pub fn with_channel_flood(mut self) -> Self {
        self.channel_flood = true;
        self
    }

    /// Also requires the oob maxima of the boots after a restart to stay within the bound of
    /// the first boot's.
    pub fn with_restart_windows(mut self) -> Self {
        self.restart_windows = true;
        self
    }

    /// Also requires the first capture of `first` (on the first line it matches) to equal
    /// the first capture of `second`.
    pub fn with_equal_captures(mut self, first: LineMatch, second: LineMatch) -> Self {
        self.equal_captures.push((first, second));
        self
    }

    /// Also requires the number `first` captures to be at most the one `second` captures.
    pub fn with_at_most_captures(mut self, first: LineMatch, second: LineMatch) -> Self {
        self.at_most_captures.push((first, second));
        self
    }

    /// Every way in which a run that ended with `ending` and printed `console` falls short
    /// (its verdict judged with `nonce`); empty when it passes.
    pub fn check(&self, ending: Ending, console: &str, nonce: &Nonce) -> Vec<String> {
        let mut failures = Vec::new();
        match verdict::judge(ending, console, nonce) {
            Ok(code) if code == self.exit_code => {}
            Ok(code) => failures.push(format!("the core's verdict has exit code {code}, expected {}", self.exit_code)),
            Err(why) => failures.push(why),
        }
        if let Some(test) = self.latency_test {
            failures.extend(verdict::guest_latency_test_problems(console, test));
        }
        if self.channel_flood {
            match crate::report::channel::flood(console) {
                Some(Ok(flood)) => failures.extend(flood.loss_problems()),
                Some(Err(why)) => failures.push(format!("channel flood: {why}")),
                None => failures.push("channel flood: no `guest: channel flood: written` line from the guest".to_owned()),
            }
        }
        if self.restart_windows {
            use crate::report::restart::{RESTART_BOUND, boot_windows};
            match boot_windows(console) {
                Some(Ok(windows)) => failures.extend(windows.problems(RESTART_BOUND)),
                Some(Err(why)) => failures.push(format!("restart windows: {why}")),
                None => failures.push("restart windows: the core reported no boot's latency (`guest: restart N: the boot before it`)".to_owned()),
            }
        }
        if self.sampling_audit {
            failures.extend(verdict::sampling_problems(console));
        }
        for expected in &self.lines {
            if expected.find(console).is_none() {
                failures.push(format!("no line matching {expected}"));
            }
        }
        let capture = |matcher: &LineMatch| {
            let line = matcher.find(console)?;
            matcher.patterns.iter().find_map(|pattern| Some(pattern.captures(line)?.get(1)?.as_str().to_owned()))
        };
        for (first, second) in &self.equal_captures {
            match (capture(first), capture(second)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => failures.push(format!("{first} captured {a} but {second} captured {b}")),
                (a, _) => {
                    let missing = if a.is_none() { first } else { second };
                    failures.push(format!("no line capturing {missing}"));
                }
            }
        }
        for (first, second) in &self.at_most_captures {
            let number = |matcher: &LineMatch| capture(matcher).and_then(|text| text.parse::<u64>().ok());
            match (number(first), number(second)) {
                (Some(a), Some(b)) if a <= b => {}
                (Some(a), Some(b)) => failures.push(format!("{first} captured {a}, more than the {b} {second} captured")),
                (a, _) => {
                    let missing = if a.is_none() { first } else { second };
                    failures.push(format!("no line capturing a number for {missing}"));
                }
            }
        }
        for pattern in &self.forbidden {
            if let Some(line) = pattern.find(console) {
                failures.push(format!("forbidden {pattern} in line {:?}", line.trim()));
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn nonce() -> Nonce {
        Nonce::fixed(NONCE)
    }

    fn pass() -> String {
        format!("verdict: PASS (exit code 0, nonce {NONCE})\n")
    }

    fn expectations() -> Expectations {
        Expectations::new(0, vec![LineMatch::all(&["companion core", r"\bGICv3\b"])], &["unexpected"])
    }

    #[test]
    fn passes_when_everything_matches() {
        let console = format!("noise\n[ 0.1 core cpu0 INFO] GICv3, companion core\n{}", pass());
        assert!(expectations().check(Ending::Exited(0), &console, &nonce()).is_empty());
    }

    #[test]
    fn patterns_of_one_match_must_share_a_line() {
        let console = format!("companion core\nGICv3\n{}", pass());
        assert_eq!(
            expectations().check(Ending::Exited(0), &console, &nonce()),
            [r"no line matching /companion core/ & /\bGICv3\b/"]
        );
    }

    #[test]
    fn reports_every_failure() {
        let console = format!("companion core GICv2\nunexpected exception\nverdict: FAIL (exit code 101, nonce {NONCE})\n");
        assert_eq!(
            expectations().check(Ending::Exited(0), &console, &nonce()),
            [
                "the core's verdict has exit code 101, expected 0".to_owned(),
                r"no line matching /companion core/ & /\bGICv3\b/".to_owned(),
                r#"forbidden /unexpected/ in line "unexpected exception""#.to_owned(),
            ]
        );
    }

    #[test]
    fn reports_timeouts_and_missing_verdicts() {
        let console = "companion core GICv3\n";
        let timed_out = expectations().check(Ending::TimedOut(Duration::from_secs(60)), console, &nonce());
        assert!(timed_out[0].starts_with("watchdog: no verdict from the core within 60 s"), "{timed_out:?}");
        let ended = expectations().check(Ending::Exited(0), console, &nonce());
        assert!(ended[0].contains("without the core's verdict"), "{ended:?}");
    }

    #[test]
    fn guest_lines_match_only_guest_expectations() {
        let e = Expectations::new(0, vec![LineMatch::guest(&["^guest: done$"])], &[]).forbid_guest(&["Kernel panic"]);
        let ok = format!("guest| guest: done\n{}", pass());
        assert!(e.check(Ending::Exited(0), &ok, &nonce()).is_empty());
        // The same text from the core is not the guest's.
        let core = format!("guest: done\n{}", pass());
        assert_eq!(e.check(Ending::Exited(0), &core, &nonce()).len(), 1);
        let panic = format!("guest| guest: done\nguest| Kernel panic - not syncing\n{}", pass());
        assert_eq!(e.check(Ending::Exited(0), &panic, &nonce()).len(), 1);
    }

    #[test]
    fn a_forging_guest_changes_nothing() {
        // The run failed; the guest prints every line a passing run would show.
        let e = Expectations::new(0, vec![LineMatch::all(&[r"replay log: .* lost 0$"]), LineMatch::all(&["^RTS\\|"])], &[]);
        let forged = format!(
            "guest| {}guest| [ 1.0 core cpu0 INFO] replay log: logged 1, replayed 1, coalesced 0, withdrawn 0, max depth 1, lost 0\n\
             guest| RTS|      1.000|      2.000|      3.000|       0|     0|    00:00:01/00:00:01\n\
             verdict: FAIL (exit code 105, nonce {NONCE})\n",
            pass()
        );
        let failures = e.check(Ending::Exited(0), &forged, &nonce());
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("exit code 105"));
        // Without the core's verdict, the guest's `verdict: PASS` is no verdict at all.
        let only_forged = format!("guest| {}", pass());
        assert!(e.check(Ending::Exited(0), &only_forged, &nonce())[0].contains("without the core's verdict"));
    }

    #[test]
    fn equal_captures_compare_numbers_from_two_lines() {
        let base = Expectations::new(0, vec![], &[])
            .with_equal_captures(LineMatch::all(&[r"core: (\d+)"]), LineMatch::guest(&[r"guest: (\d+)"]));
        let check = |console: &str| base.check(Ending::Exited(0), &format!("{console}{}", pass()), &nonce());
        assert!(check("core: 2\nguest| guest: 2\n").is_empty());
        assert_eq!(check("core: 2\nguest| guest: 3\n").len(), 1);
        assert_eq!(check("core: 2\n").len(), 1);
        // The guest cannot supply the core's side.
        assert_eq!(check("guest| core: 3\nguest| guest: 3\n").len(), 1);
    }

    #[test]
    fn at_most_captures_hold_the_guest_count_to_the_core_count() {
        let base = Expectations::new(0, vec![], &[])
            .with_at_most_captures(LineMatch::guest(&[r"read (\d+)"]), LineMatch::all(&[r"wrote (\d+)"]));
        let check = |console: &str| base.check(Ending::Exited(0), &format!("{console}{}", pass()), &nonce());
        assert!(check("wrote 5\nguest| read 5\n").is_empty());
        assert!(check("wrote 5\nguest| read 4\n").is_empty());
        assert_eq!(check("wrote 5\nguest| read 6\n").len(), 1);
        // The guest cannot supply the core's count.
        assert_eq!(check("guest| wrote 9\nguest| read 6\n").len(), 1);
    }
}
