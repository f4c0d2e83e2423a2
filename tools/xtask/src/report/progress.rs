//! What a watched run shows on the terminal while it runs: the console as it arrives and,
//! when stderr is a terminal, one status line kept below it (phase, virtual seconds done of
//! the planned ones, samples so far, the oob worst case so far), redrawn after each console
//! line; or nothing at all (`--quiet`: only the table at the end).

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::verdict::{self, Source};

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// The console only (what the tests and the soak use).
    #[default]
    Console,
    /// The console and, on a terminal, the status line of a latency run.
    Status {
        /// The latency test's planned length, in seconds.
        duration_s: u64,
        /// The latency test's period, in µs.
        period_us: u64,
    },
    /// Nothing until the table (`--quiet`).
    Quiet,
}

/// What the status line says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Status {
    /// `RTD|` lines seen: the latency test's seconds done.
    seconds: u64,
    /// The oob thread context's worst latency so far, in ns.
    oob_max_ns: Option<i64>,
    /// The core printed its summary (`RTS|`): the test is over.
    summarized: bool,
}

impl Status {
    /// Takes one console line into account (core lines only: the guest's cannot move it).
    fn line(&mut self, line: &str) {
        let (source, text) = verdict::classify(line);
        if source != Source::Core {
            return;
        }
        if let Some(rest) = text.strip_prefix("RTD|") {
            self.seconds += 1;
            // The third field is the second's max, in µs with three decimals.
            if let Some(max_ns) = rest.split('|').nth(2).and_then(micros_to_ns) {
                self.oob_max_ns = Some(self.oob_max_ns.map_or(max_ns, |max| max.max(max_ns)));
            }
        } else if text.starts_with("RTS|") {
            self.summarized = true;
        }
    }

    fn render(&self, duration_s: u64, period_us: u64, elapsed_s: u64) -> String {
        let phase = if self.summarized {
            "reporting"
        } else if self.seconds > 0 {
            "measuring"
        } else {
            "booting"
        };
        let samples = self.seconds.saturating_mul(1_000_000 / period_us.max(1));
        let oob_max = self.oob_max_ns.map_or_else(|| "-".to_owned(), |ns| format!("{:.3} us", ns as f64 / 1000.0));
        format!(
            "[{phase}] {}/{duration_s} s virtual, {samples} oob samples, oob max {oob_max}, in-band max at the end ({elapsed_s} s wall)",
            self.seconds
        )
    }
}

/// Whether a console line is bulk kept out of the live view (it stays in `console.log`):
/// the rows of cyclictest's `-h` histogram dump (`000123 000000 000001`), its per-second
/// maxima (`CTD|`) and its JSON
/// between the markers (`in_json` tracks being inside them).
fn bulk(line: &str, in_json: &mut bool) -> bool {
    let text = verdict::classify(line).1;
    if text == super::parse::CYCLICTEST_JSON_BEGIN {
        *in_json = true;
        return false;
    }
    if text == super::parse::CYCLICTEST_JSON_END {
        *in_json = false;
        return false;
    }
    // The per-second lines the guest script folds from cyclictest's samples (`CTD|0|3|29`).
    if text.starts_with("CTD|") {
        return true;
    }
    let mut words = text.split_whitespace().peekable();
    let histogram_row = words.peek().is_some() && words.all(|word| word.len() == 6 && word.bytes().all(|b| b.is_ascii_digit()));
    *in_json || histogram_row
}

/// Writes to our stdout or stderr; the terminal going away must not stop the capture.
fn write_to(stderr: bool, bytes: &[u8]) {
    let _ = if stderr {
        io::stderr().write_all(bytes).and_then(|()| io::stderr().flush())
    } else {
        io::stdout().write_all(bytes).and_then(|()| io::stdout().flush())
    };
}

fn micros_to_ns(text: &str) -> Option<i64> {
    let value: f64 = text.trim().parse().ok()?;
    value.is_finite().then(|| (value * 1000.0).round() as i64)
}

/// The terminal side of a watched run; shared by the threads copying QEMU's output.
pub struct Terminal {
    view: View,
    /// Whether the status line is drawn (stderr a terminal, a latency run).
    status_line: bool,
    state: Mutex<State>,
}

struct State {
    status: Status,
    /// The tail of the console after its last newline.
    partial: Vec<u8>,
    /// How much of `partial` is on the screen already.
    echoed: usize,
    /// Inside cyclictest's JSON output.
    in_json: bool,
    /// The console's tail after its last newline, for [`State::arrivals`] (any view).
    scanned: Vec<u8>,
    /// When each of the core's `RTD|` lines arrived, since the run started.
    arrivals: Vec<Duration>,
    /// Whether the status line is on the screen now.
    drawn: bool,
    started: Instant,
}

impl Terminal {
    /// A terminal showing the run as `view` says.
    pub fn new(view: View) -> Self {
        let status_line = matches!(view, View::Status { .. }) && io::stderr().is_terminal();
        let state = State {
            status: Status::default(),
            partial: Vec::new(),
            echoed: 0,
            in_json: false,
            scanned: Vec::new(),
            arrivals: Vec::new(),
            drawn: false,
            started: Instant::now(),
        };
        Self { view, status_line, state: Mutex::new(state) }
    }

    /// Shows `bytes` QEMU wrote (to its stderr if `to_stderr`), keeping the status line below
    /// and, with it, the bulk the report reads but nobody reads live out of view (see
    /// [`bulk`]).
    pub fn show(&self, bytes: &[u8], to_stderr: bool) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !to_stderr {
            state.time_arrivals(bytes);
        }
        if self.view == View::Quiet {
            return;
        }
        if self.status_line && state.drawn {
            write_to(true, b"\r\x1b[K");
            state.drawn = false;
        }
        if !self.status_line || to_stderr {
            write_to(to_stderr, bytes);
            return;
        }
        state.partial.extend_from_slice(bytes);
        while let Some(end) = state.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = state.partial.drain(..=end).collect();
            let echoed = std::mem::take(&mut state.echoed);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            state.status.line(text);
            let hide = bulk(text, &mut state.in_json);
            if echoed > 0 {
                // Its start is on the screen already: finish it.
                write_to(false, &line[echoed.min(line.len())..]);
            } else if !hide {
                write_to(false, &line);
            }
        }
        // A line without its end yet (a prompt): shown now, its rest when it comes.
        if state.partial.len() > state.echoed {
            let from = state.echoed;
            write_to(false, &state.partial[from..]);
            state.echoed = state.partial.len();
        }
        // Only below a whole line: a half-printed one would be overwritten.
        if state.partial.is_empty() {
            self.draw(&mut state);
        }
    }

    fn draw(&self, state: &mut State) {
        let View::Status { duration_s, period_us } = self.view else { return };
        let line = state.status.render(duration_s, period_us, state.started.elapsed().as_secs());
        write_to(true, line.as_bytes());
        state.drawn = true;
    }

    /// When each of the core's per-second `RTD|` lines reached the host, since the run
    /// started: the host-time side of the latency test's virtual seconds.
    pub fn rtd_arrivals(&self) -> Vec<Duration> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).arrivals.clone()
    }

    /// Clears the status line (the run is over).
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.status_line && state.drawn {
            write_to(true, b"\r\x1b[K");
            state.drawn = false;
        }
    }
}

impl State {
    /// Notes the arrival time of each complete core `RTD|` line in `bytes`.
    fn time_arrivals(&mut self, bytes: &[u8]) {
        self.scanned.extend_from_slice(bytes);
        while let Some(end) = self.scanned.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.scanned.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let (source, text) = verdict::classify(text.trim_end_matches(['\r', '\n']));
            if source == Source::Core && text.starts_with("RTD|") {
                self.arrivals.push(self.started.elapsed());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_cores_lines_only() {
        let mut status = Status::default();
        assert!(status.render(10, 1000, 0).starts_with("[booting] 0/10 s virtual, 0 oob samples, oob max -"));
        status.line("RTD|      0.016|      0.100|      1.536|       0|     0|      0.016|      1.536");
        status.line("guest| RTD|      0.016|      0.100|    999.000|       0|     0|      0.016|    999.000");
        status.line("RTD|      0.000|      0.100|      0.900|       0|     0|      0.000|      1.536");
        let text = status.render(10, 1000, 7);
        assert!(text.starts_with("[measuring] 2/10 s virtual, 2000 oob samples, oob max 1.536 us"), "{text}");
        status.line("RTS|      0.000|      0.111|      1.536|       0|     0|    00:00:02/00:00:10");
        assert!(status.render(10, 1000, 9).starts_with("[reporting]"));
    }

    #[test]
    fn the_histogram_dump_and_the_json_stay_out_of_the_live_view() {
        let mut in_json = false;
        assert!(bulk("guest| 000012 000000 000998", &mut in_json));
        assert!(!bulk("guest| # Total: 000001000", &mut in_json));
        assert!(!bulk("guest| T: 0 ( 123) P:90 I:1000 C:   3000 Min:      5", &mut in_json));
        assert!(bulk("guest| CTD|0|3|29", &mut in_json));
        assert!(!bulk("guest| guest: cyclictest json begin", &mut in_json));
        assert!(bulk("guest| {", &mut in_json) && bulk("guest|   \"max\": 20", &mut in_json));
        assert!(!bulk("guest| guest: cyclictest json end", &mut in_json));
        assert!(!bulk("RTD|      0.000|      0.054|      0.160|       0|     0|      0.000|      1.328", &mut in_json));
        assert!(!bulk("guest| ", &mut in_json));
    }
}
