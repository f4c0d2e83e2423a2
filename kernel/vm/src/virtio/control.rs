//! The line protocol of the core's control port (`companion.ctl`, a port of the console):
//! bytes from Linux become command lines ([`LineReader`]), each line a [`Command`] or a
//! [`Refusal`] ([`parse`]). Linux is untrusted: any byte sequence gives either a command
//! whose every value is within the bounds below, or a refusal that says why; nothing here
//! panics, allocates or waits.
//!
//! ```
//! use vm::virtio::control::{Command, LineReader, Read, parse};
//!
//! let mut reader: LineReader<128> = LineReader::new();
//! let mut lines = Vec::new();
//! for &byte in b"latmus 50 2 - 99 -\nps\n" {
//!     if let Read::Line(line) = reader.push(byte) {
//!         lines.push(parse(line, 4).map_err(|refusal| refusal.to_string()));
//!     }
//! }
//! assert_eq!(lines[0], Err("latmus: period 50 us is under the floor of 100 us".to_string()));
//! assert_eq!(lines[1], Ok(Command::Ps));
//! ```

use core::fmt;

/// The shortest period Linux may ask of the latency test: the guest is untrusted, and an oob
/// thread woken every microsecond would take most of its CPU from every other oob thread.
/// The core's own boot argument (`latmus.period=`) has no such floor.
pub const MIN_GUEST_PERIOD_US: u64 = 100;
/// The longest period Linux may ask: one second (a period is a timer deadline; longer ones
/// measure nothing the `RTD|` lines, one a second, could show).
pub const MAX_GUEST_PERIOD_US: u64 = 1_000_000;
/// The longest test Linux may ask, in seconds: a day (the control port is the test's only
/// user while it runs; a guest asking for `u64::MAX` seconds must not hold it for ever).
pub const MAX_GUEST_DURATION_S: u64 = 86_400;

/// A command the core acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The oob threads and in-band stages (`ps`).
    Ps,
    /// The open channels and what their oob senders dropped (`channels`).
    Channels,
    /// The echo thread's counts (`echo`).
    Echo,
    /// The latency test (`latmus PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|-`).
    Latmus(LatmusRequest),
}

/// The latency test Linux asks for, every value within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatmusRequest {
    /// The period, [`MIN_GUEST_PERIOD_US`] to [`MAX_GUEST_PERIOD_US`].
    pub period_us: u64,
    /// The length, 1 to [`MAX_GUEST_DURATION_S`] seconds.
    pub duration_s: u64,
    /// The CPU, below the CPU count given to [`parse`]; `None`: the last one.
    pub cpu: Option<usize>,
    /// The measuring thread's FIFO priority, 1 to 99.
    pub priority: u8,
    /// The timer anticipation, at most one period; `None`: calibrate first.
    pub gravity_ns: Option<u64>,
}

/// Why a line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// Bytes that are not UTF-8 text (how many).
    NotText(usize),
    /// A line longer than the reader holds (its length so far when it was cut).
    TooLong(usize),
    /// Bytes without a newline for too long (how many were dropped).
    Incomplete(usize),
    /// No such command (the line, cut to 32 bytes at a character boundary).
    Unknown(&'a str),
    /// `latmus` without its five arguments (how many it had).
    LatmusArity(usize),
    /// A value that is not a decimal number of 64 bits (what, the text cut to 24 bytes).
    NotANumber(&'static str, &'a str),
    /// A period under [`MIN_GUEST_PERIOD_US`].
    PeriodUnderFloor(u64),
    /// A period over [`MAX_GUEST_PERIOD_US`].
    PeriodOverCeiling(u64),
    /// A duration of 0 or over [`MAX_GUEST_DURATION_S`].
    Duration(u64),
    /// A priority outside 1..=99.
    Priority(u64),
    /// A CPU the core does not have (the CPU, the count).
    Cpu(u64, usize),
    /// A gravity over the period (ns, the period in ns).
    Gravity(u64, u64),
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotText(n) => write!(f, "a command that is not UTF-8 text ({n} bytes)"),
            Self::TooLong(n) => write!(f, "a command over {n} bytes"),
            Self::Incomplete(n) => write!(f, "an incomplete command ({n} bytes without a newline), dropped"),
            Self::Unknown(text) => write!(f, "unknown command {text:?} (have: ps, channels, echo, latmus)"),
            Self::LatmusArity(n) => {
                write!(f, "latmus wants PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|- (got {n} arguments)")
            }
            Self::NotANumber(what, text) => write!(f, "latmus: {what} {text:?} is not a number of 64 bits"),
            Self::PeriodUnderFloor(us) => write!(f, "latmus: period {us} us is under the floor of {MIN_GUEST_PERIOD_US} us"),
            Self::PeriodOverCeiling(us) => write!(f, "latmus: period {us} us is over {MAX_GUEST_PERIOD_US} us"),
            Self::Duration(s) => write!(f, "latmus: duration {s} s is not within 1..={MAX_GUEST_DURATION_S}"),
            Self::Priority(p) => write!(f, "latmus: priority {p} is not within 1..=99"),
            Self::Cpu(cpu, count) => write!(f, "latmus: cpu {cpu} does not exist ({count} CPUs)"),
            Self::Gravity(ns, period_ns) => write!(f, "latmus: gravity {ns} ns is over the period ({period_ns} ns)"),
        }
    }
}

/// What one byte gave [`LineReader::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// Nothing yet.
    More,
    /// A complete line (without its newline), UTF-8 text.
    Line(&'a str),
    /// A line refused as it ended ([`Refusal::NotText`], [`Refusal::TooLong`]).
    Refused(Refusal<'a>),
}

/// Gathers bytes into lines of at most `N` bytes.
#[derive(Debug)]
pub struct LineReader<const N: usize> {
    line: [u8; N],
    len: usize,
    /// Bytes of the current line past `N` (dropped).
    over: usize,
}

impl<const N: usize> Default for LineReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        Self { line: [0; N], len: 0, over: 0 }
    }

    /// Bytes of a line not yet ended.
    pub fn pending(&self) -> usize {
        self.len + self.over
    }

    /// Takes one byte: at a newline, the line or why it is refused.
    pub fn push(&mut self, byte: u8) -> Read<'_> {
        if byte != b'\n' {
            if self.len < N {
                self.line[self.len] = byte;
                self.len += 1;
            } else {
                self.over = self.over.saturating_add(1);
            }
            return Read::More;
        }
        let (len, over) = (self.len, self.over);
        self.len = 0;
        self.over = 0;
        if over > 0 {
            return Read::Refused(Refusal::TooLong(N));
        }
        match core::str::from_utf8(&self.line[..len]) {
            Ok(text) => Read::Line(text),
            Err(_) => Read::Refused(Refusal::NotText(len)),
        }
    }

    /// Drops a line not yet ended (Linux sent no newline for too long): the refusal, if there
    /// was one.
    pub fn abandon(&mut self) -> Option<Refusal<'static>> {
        let pending = self.pending();
        self.len = 0;
        self.over = 0;
        (pending > 0).then_some(Refusal::Incomplete(pending))
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The command in `line` for a core of `cpus` CPUs, or why it is refused.
pub fn parse(line: &str, cpus: usize) -> Result<Command, Refusal<'_>> {
    let mut words = line.split_ascii_whitespace();
    let command = match (words.next(), words.next()) {
        (Some("ps"), None) => Command::Ps,
        (Some("channels"), None) => Command::Channels,
        (Some("echo"), None) => Command::Echo,
        (Some("latmus"), first) => Command::Latmus(latmus(first.into_iter().chain(words), cpus)?),
        _ => return Err(Refusal::Unknown(cut(line.trim(), 32))),
    };
    Ok(command)
}

/// The latency test's parameters from `PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|-`.
fn latmus<'a>(args: impl Iterator<Item = &'a str>, cpus: usize) -> Result<LatmusRequest, Refusal<'a>> {
    let mut given = [""; 5];
    let mut count = 0;
    for arg in args {
        if let Some(slot) = given.get_mut(count) {
            *slot = arg;
        }
        count += 1;
    }
    if count != given.len() {
        return Err(Refusal::LatmusArity(count));
    }
    let [period, seconds, cpu, priority, gravity] = given;
    let number = |what: &'static str, text: &'a str| {
        // Digits only: `u64::from_str` also takes a leading `+`.
        if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<u64>().map_err(|_| Refusal::NotANumber(what, cut(text, 24)))
        } else {
            Err(Refusal::NotANumber(what, cut(text, 24)))
        }
    };
    let period_us = number("period", period)?;
    if period_us < MIN_GUEST_PERIOD_US {
        return Err(Refusal::PeriodUnderFloor(period_us));
    }
    if period_us > MAX_GUEST_PERIOD_US {
        return Err(Refusal::PeriodOverCeiling(period_us));
    }
    let duration_s = number("duration", seconds)?;
    if !(1..=MAX_GUEST_DURATION_S).contains(&duration_s) {
        return Err(Refusal::Duration(duration_s));
    }
    let cpu = match cpu {
        "-" => None,
        cpu => match number("cpu", cpu)? {
            n if n < cpus as u64 => Some(n as usize),
            n => return Err(Refusal::Cpu(n, cpus)),
        },
    };
    let priority = match number("priority", priority)? {
        p @ 1..=99 => p as u8,
        p => return Err(Refusal::Priority(p)),
    };
    let period_ns = period_us * 1000;
    let gravity_ns = match gravity {
        "-" => None,
        gravity => match number("gravity", gravity)? {
            ns if ns <= period_ns => Some(ns),
            ns => return Err(Refusal::Gravity(ns, period_ns)),
        },
    };
    Ok(LatmusRequest { period_us, duration_s, cpu, priority, gravity_ns })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    /// Every line in `bytes`, parsed for 4 CPUs, as its command or its refusal's text.
    fn lines(bytes: &[u8]) -> Vec<Result<Command, std::string::String>> {
        let mut reader: LineReader<16> = LineReader::new();
        let mut out = Vec::new();
        for &byte in bytes {
            match reader.push(byte) {
                Read::More => {}
                Read::Line(line) => out.push(parse(line, 4).map_err(|r| r.to_string())),
                Read::Refused(refusal) => out.push(Err(refusal.to_string())),
            }
        }
        out
    }

    fn request(period_us: u64, duration_s: u64, cpu: Option<usize>, priority: u8, gravity_ns: Option<u64>) -> Command {
        Command::Latmus(LatmusRequest { period_us, duration_s, cpu, priority, gravity_ns })
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse("ps", 1), Ok(Command::Ps));
        assert_eq!(parse("  channels ", 1), Ok(Command::Channels));
        assert_eq!(parse("echo", 1), Ok(Command::Echo));
        assert_eq!(parse("latmus 1000 10 - 99 -", 4), Ok(request(1000, 10, None, 99, None)));
        assert_eq!(parse("latmus 100 86400 3 1 100000", 4), Ok(request(100, 86_400, Some(3), 1, Some(100_000))));
    }

    #[test]
    fn malformed_and_truncated_lines_are_refused() {
        assert_eq!(parse("", 1), Err(Refusal::Unknown("")));
        assert_eq!(parse("ps ps", 1), Err(Refusal::Unknown("ps ps")));
        assert_eq!(parse("latmus", 1), Err(Refusal::LatmusArity(0)));
        assert_eq!(parse("latmus 1000 1", 1), Err(Refusal::LatmusArity(2)));
        assert_eq!(parse("latmus 1000 1 - 99 - x", 1), Err(Refusal::LatmusArity(6)));
        assert_eq!(parse("latmus +1000 1 - 99 -", 1), Err(Refusal::NotANumber("period", "+1000")));
        assert_eq!(parse("latmus 1000 -1 - 99 -", 1), Err(Refusal::NotANumber("duration", "-1")));
        assert_eq!(parse("latmus 1e3 1 - 99 -", 1), Err(Refusal::NotANumber("period", "1e3")));
        // An unknown command is named, cut at a character boundary.
        let long = "é".repeat(40);
        let Err(Refusal::Unknown(named)) = parse(&long, 1) else { panic!("not refused") };
        assert_eq!(named.len(), 32);
    }

    #[test]
    fn huge_and_out_of_bound_values_are_refused() {
        let huge = "99999999999999999999999";
        assert_eq!(
            parse(&std::format!("latmus {huge} 1 - 99 -"), 1),
            Err(Refusal::NotANumber("period", "99999999999999999999999"))
        );
        assert_eq!(parse("latmus 1000 18446744073709551615 - 99 -", 1), Err(Refusal::Duration(u64::MAX)));
        assert_eq!(parse("latmus 1000 86401 - 99 -", 1), Err(Refusal::Duration(86_401)));
        assert_eq!(parse("latmus 1000 0 - 99 -", 1), Err(Refusal::Duration(0)));
        assert_eq!(parse("latmus 99 1 - 99 -", 1), Err(Refusal::PeriodUnderFloor(99)));
        assert_eq!(parse("latmus 0 1 - 99 -", 1), Err(Refusal::PeriodUnderFloor(0)));
        assert_eq!(parse("latmus 1000001 1 - 99 -", 1), Err(Refusal::PeriodOverCeiling(1_000_001)));
        assert_eq!(parse("latmus 1000 1 4 99 -", 4), Err(Refusal::Cpu(4, 4)));
        assert_eq!(parse("latmus 1000 1 18446744073709551615 99 -", 4), Err(Refusal::Cpu(u64::MAX, 4)));
        assert_eq!(parse("latmus 1000 1 - 0 -", 1), Err(Refusal::Priority(0)));
        assert_eq!(parse("latmus 1000 1 - 100 -", 1), Err(Refusal::Priority(100)));
        assert_eq!(parse("latmus 1000 1 - 99 1000001", 1), Err(Refusal::Gravity(1_000_001, 1_000_000)));
        assert_eq!(parse("latmus 1000 1 - 99 1000000", 1), Ok(request(1000, 1, None, 99, Some(1_000_000))));
    }

    #[test]
    fn the_reader_cuts_lines_and_refuses_bytes_it_cannot_hold() {
        let got = lines(b"ps\n\xff\xfe\x00garbage\nthis line is too long\nps\n");
        assert_eq!(got[0], Ok(Command::Ps));
        assert_eq!(got[1], Err("a command that is not UTF-8 text (10 bytes)".to_string()));
        assert_eq!(got[2], Err("a command over 16 bytes".to_string()));
        // After a refusal the next line is read afresh.
        assert_eq!(got[3], Ok(Command::Ps));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn an_abandoned_line_is_refused_once_and_forgotten() {
        let mut reader: LineReader<8> = LineReader::new();
        for &byte in b"latmus 1000" {
            assert_eq!(reader.push(byte), Read::More);
        }
        assert_eq!(reader.pending(), 11);
        assert_eq!(reader.abandon(), Some(Refusal::Incomplete(11)));
        assert_eq!(reader.abandon(), None);
        for &byte in b"ps" {
            reader.push(byte);
        }
        assert_eq!(reader.push(b'\n'), Read::Line("ps"));
    }

    #[test]
    fn any_bytes_give_a_command_or_a_refusal_without_panicking() {
        // A cheap deterministic sweep (the fuzzer covers the rest): every line of a
        // pseudo-random byte stream over the protocol's alphabet.
        let alphabet = b"latmus psechonl 0123456789-+\n\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut reader: LineReader<64> = LineReader::new();
        let (mut commands, mut refusals) = (0, 0);
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let byte = alphabet[(state % alphabet.len() as u64) as usize];
            match reader.push(byte) {
                Read::More => {}
                Read::Line(line) => match parse(line, 2) {
                    Ok(Command::Latmus(r)) => {
                        assert!((MIN_GUEST_PERIOD_US..=MAX_GUEST_PERIOD_US).contains(&r.period_us));
                        assert!((1..=MAX_GUEST_DURATION_S).contains(&r.duration_s));
                        assert!(r.cpu.is_none_or(|cpu| cpu < 2) && (1..=99).contains(&r.priority));
                        commands += 1;
                    }
                    Ok(_) => commands += 1,
                    Err(refusal) => {
                        assert!(!refusal.to_string().is_empty());
                        refusals += 1;
                    }
                },
                Read::Refused(_) => refusals += 1,
            }
        }
        assert!(refusals > 1000, "{refusals} refusals, {commands} commands");
    }
}
