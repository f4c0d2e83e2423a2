//! Checking a run's console output and exit status against expectations.

use std::fmt;

use regex::Regex;

use crate::process::Ending;

/// Compiles a pattern that is part of xtask's own code.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|err| panic!("bad pattern {pattern:?}: {err}"))
}

/// Requires some console line to match every one of its patterns (so one
/// line can be checked for several items in any order).
#[derive(Debug, Clone)]
pub struct LineMatch {
    patterns: Vec<Regex>,
}

impl LineMatch {
    /// A line matching all of `patterns` (regular expressions).
    pub fn all(patterns: &[&str]) -> Self {
        Self {
            patterns: patterns.iter().map(|pattern| regex(pattern)).collect(),
        }
    }

    fn matches(&self, line: &str) -> bool {
        self.patterns.iter().all(|pattern| pattern.is_match(line))
    }
}

impl fmt::Display for LineMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self
            .patterns
            .iter()
            .map(|pattern| format!("/{pattern}/"))
            .collect();
        f.write_str(&patterns.join(" & "))
    }
}

/// What a run must show.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The exit status QEMU must end with.
    pub exit_code: i32,
    /// Lines that must each appear somewhere in the console output.
    pub lines: Vec<LineMatch>,
    /// Patterns no console line may match.
    pub forbidden: Vec<Regex>,
    /// Pairs of patterns whose first capture group must hold the same text (e.g. a count
    /// the core printed and the one the guest printed).
    pub equal_captures: Vec<(Regex, Regex)>,
}

impl Expectations {
    /// Expects exit status `exit_code`, the given lines, and none of `forbidden`.
    pub fn new(exit_code: i32, lines: Vec<LineMatch>, forbidden: &[&str]) -> Self {
        Self {
            exit_code,
            lines,
            forbidden: forbidden.iter().map(|pattern| regex(pattern)).collect(),
            equal_captures: Vec::new(),
        }
    }

    /// Also requires the first capture of `first` (on the first line it matches) to equal
    /// the first capture of `second`.
    pub fn with_equal_captures(mut self, first: &str, second: &str) -> Self {
        self.equal_captures.push((regex(first), regex(second)));
        self
    }

    /// Every way in which a run that ended with `ending` and printed
    /// `console` falls short; empty when it passes.
    pub fn check(&self, ending: Ending, console: &str) -> Vec<String> {
        let mut failures = Vec::new();
        match ending {
            Ending::Exited(code) if code == self.exit_code => {}
            Ending::Exited(code) => {
                failures.push(format!("exit status {code}, expected {}", self.exit_code))
            }
            Ending::Signaled => failures.push("QEMU was killed by a signal".to_owned()),
            Ending::TimedOut(limit) => {
                failures.push(format!("timed out after {}s", limit.as_secs_f64()))
            }
        }
        for expected in &self.lines {
            if !console.lines().any(|line| expected.matches(line)) {
                failures.push(format!("no line matching {expected}"));
            }
        }
        let capture = |pattern: &Regex| {
            console.lines().find_map(|line| pattern.captures(line)).and_then(|c| c.get(1).map(|m| m.as_str().to_owned()))
        };
        for (first, second) in &self.equal_captures {
            match (capture(first), capture(second)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => failures.push(format!("/{first}/ captured {a} but /{second}/ captured {b}")),
                (a, _) => {
                    let missing = if a.is_none() { first } else { second };
                    failures.push(format!("no line capturing /{missing}/"));
                }
            }
        }
        for pattern in &self.forbidden {
            if let Some(line) = console.lines().find(|line| pattern.is_match(line)) {
                failures.push(format!("forbidden /{pattern}/ in line {:?}", line.trim()));
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn expectations() -> Expectations {
        Expectations::new(
            0,
            vec![
                LineMatch::all(&["companion core", r"\bGICv3\b"]),
                LineMatch::all(&["verdict: PASS"]),
            ],
            &["verdict: FAIL"],
        )
    }

    #[test]
    fn passes_when_everything_matches() {
        let console = "noise\n[ 0.1 core cpu0 INFO] GICv3, companion core\nverdict: PASS\n";
        assert!(expectations().check(Ending::Exited(0), console).is_empty());
    }

    #[test]
    fn patterns_of_one_match_must_share_a_line() {
        let console = "companion core\nGICv3\nverdict: PASS\n";
        assert_eq!(
            expectations().check(Ending::Exited(0), console),
            [r"no line matching /companion core/ & /\bGICv3\b/"]
        );
    }

    #[test]
    fn reports_every_failure() {
        let console = "companion core GICv2\nverdict: FAIL\n";
        assert_eq!(
            expectations().check(Ending::Exited(101), console),
            [
                "exit status 101, expected 0".to_owned(),
                r"no line matching /companion core/ & /\bGICv3\b/".to_owned(),
                "no line matching /verdict: PASS/".to_owned(),
                r#"forbidden /verdict: FAIL/ in line "verdict: FAIL""#.to_owned(),
            ]
        );
    }

    #[test]
    fn reports_timeouts_and_signals() {
        let console = "companion core GICv3\nverdict: PASS\n";
        let timed_out = expectations().check(Ending::TimedOut(Duration::from_secs(60)), console);
        assert_eq!(timed_out, ["timed out after 60s"]);
        assert_eq!(
            expectations().check(Ending::Signaled, console),
            ["QEMU was killed by a signal"]
        );
    }

    #[test]
    fn equal_captures_compare_numbers_from_two_lines() {
        let base = Expectations::new(0, vec![], &[]).with_equal_captures(r"core: (\d+)", r"guest: (\d+)");
        assert!(base.check(Ending::Exited(0), "core: 2\nguest: 2\n").is_empty());
        assert_eq!(base.check(Ending::Exited(0), "core: 2\nguest: 3\n").len(), 1);
        assert_eq!(base.check(Ending::Exited(0), "core: 2\n").len(), 1);
    }

}
