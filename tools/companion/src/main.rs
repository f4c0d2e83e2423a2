//! `companion`: the guest-side tool of the companion core, after EVL's `evl` command.
//!
//! ```text
//! companion ps            the oob threads (CPU, policy, priority, state, switches, CPU time,
//!                         worst latency) and in-band stages, from the core's control port
//! companion channels      the core's channels with what their oob senders dropped
//! companion latmus [-p period_us] [-T seconds] [-c cpu] [-P priority] [-g gravity_ns | -t]
//!                         runs the core's latency test and streams its EVL-format lines
//!                         (RTT|, RTD| each second, RTS|, HSH|/HSD| histogram)
//! companion ping [-n count] [-s bytes] [-P priority]
//!                         round trips through the core's echo thread (companion.echo):
//!                         min/avg/p99/max, and the oob side's CPU time per message;
//!                         -P: measured from a SCHED_FIFO thread of that priority (1-99)
//! companion send PORT     copies stdin to the channel PORT (a port name or a device path)
//! companion recv PORT     copies the channel PORT to stdout until interrupted
//! ```

mod ports;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The core's control port.
const CONTROL_PORT: &str = "companion.ctl";
/// The core's echo port.
const ECHO_PORT: &str = "companion.echo";
/// The line ending a control answer.
const END: &str = "END";

const USAGE: &str = "usage: companion ps | channels | latmus [-p period_us] [-T seconds] [-c cpu] [-P priority] [-g gravity_ns | -t] | ping [-n count] [-s bytes] [-P priority] | send PORT | recv PORT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ps"] => control("ps"),
        ["channels"] => control("channels"),
        ["latmus", options @ ..] => match latmus_command(options) {
            Ok(command) => control(&command),
            Err(e) => {
                eprintln!("companion latmus: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["ping", options @ ..] => match ping_options(options) {
            Ok(options) => ping(options),
            Err(e) => {
                eprintln!("companion ping: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["send", port] => open(port).and_then(|mut device| io::copy(&mut io::stdin().lock(), &mut device).map(drop)),
        ["recv", port] => open(port).and_then(|mut device| copy_live(&mut device, &mut io::stdout().lock())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("companion: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The control command for `companion latmus OPTIONS` (defaults as the core's boot-argument
/// form: 1000 us, 10 s, the last CPU, priority 99, gravity calibrated first).
fn latmus_command(options: &[&str]) -> Result<String, String> {
    let (mut period, mut seconds, mut cpu, mut priority, mut gravity) = ("1000", "10", "-", "99", "-");
    let mut rest = options.iter();
    while let Some(&option) = rest.next() {
        if option == "-t" {
            gravity = "-";
            continue;
        }
        let slot = match option {
            "-p" => &mut period,
            "-T" => &mut seconds,
            "-c" => &mut cpu,
            "-P" => &mut priority,
            "-g" => &mut gravity,
            other => return Err(format!("unknown option {other}")),
        };
        let value = rest.next().ok_or_else(|| format!("{option} needs a value"))?;
        if value.parse::<u64>().is_err() {
            return Err(format!("{option} {value}: not a number"));
        }
        *slot = value;
    }
    Ok(format!("latmus {period} {seconds} {cpu} {priority} {gravity}"))
}

/// Largest `ping` message: what the echo thread takes in one wake-up.
const PING_MAX: usize = 512;

/// Highest SCHED_FIFO priority Linux gives a thread.
const FIFO_MAX: usize = 99;

/// What `companion ping` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PingOptions {
    /// Round trips (`-n`, default 1000).
    count: usize,
    /// Bytes per message (`-s`, default 64).
    size: usize,
    /// SCHED_FIFO priority to measure from (`-P`); `None`: the caller's policy as it is.
    priority: Option<u8>,
}

/// `companion ping`'s options.
fn ping_options(options: &[&str]) -> Result<PingOptions, String> {
    let mut ping = PingOptions { count: 1000, size: 64, priority: None };
    let mut rest = options.iter();
    while let Some(&option) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{option} needs a value"))?;
        let number: usize = value.parse().map_err(|_| format!("{option} {value}: not a number"))?;
        match option {
            "-n" if number > 0 => ping.count = number,
            "-s" if (1..=PING_MAX).contains(&number) => ping.size = number,
            "-P" if (1..=FIFO_MAX).contains(&number) => ping.priority = u8::try_from(number).ok(),
            "-n" | "-s" | "-P" => {
                return Err(format!("{option} {value}: out of range (-n above 0, -s 1 to {PING_MAX}, -P 1 to {FIFO_MAX})"));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(ping)
}

/// Makes the calling thread SCHED_FIFO at `priority` (Linux's `sched_setscheduler` system
/// call: musl's wrapper of that name only returns ENOSYS), and locks the process's memory so
/// a page fault does not time into a round trip.
fn set_fifo(priority: u8) -> io::Result<()> {
    // SAFETY: `sched_param` is plain integers (musl adds reserved ones), for which all-zero
    // bytes are a valid value.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = i32::from(priority);
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call; pid 0 is
    // the calling thread; the call reads `param` and changes only the scheduler's policy.
    if unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_FIFO, &raw const param) } != 0 {
        return Err(io::Error::new(io::Error::last_os_error().kind(), format!("SCHED_FIFO {priority}: {}", io::Error::last_os_error())));
    }
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(io::Error::new(io::Error::last_os_error().kind(), format!("mlockall: {}", io::Error::last_os_error())));
    }
    Ok(())
}

/// Min, average, 99th percentile (nearest rank) and max of `samples` (sorted in place).
fn summary(samples: &mut [u64]) -> Option<(u64, u64, u64, u64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let avg = samples.iter().sum::<u64>() / n as u64;
    let p99 = samples[(n * 99).div_ceil(100) - 1];
    Some((samples[0], avg, p99, samples[n - 1]))
}

/// The echo thread's wake-ups and CPU time (ns), from the control port's `echo`.
fn echo_stats() -> io::Result<(u64, u64)> {
    let mut device = open(CONTROL_PORT)?;
    device.write_all(b"echo\n")?;
    let mut out = Vec::new();
    answer(BufReader::new(device), &mut out)?;
    let text = String::from_utf8_lossy(&out);
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["echo", wakeups, "wakeups", _, "bytes", cpu_ns, "ns"] => match (wakeups.parse(), cpu_ns.parse()) {
            (Ok(wakeups), Ok(cpu_ns)) => Ok((wakeups, cpu_ns)),
            _ => Err(io::Error::other(format!("bad echo answer: {text}"))),
        },
        _ => Err(io::Error::other(format!("bad echo answer: {text}"))),
    }
}

/// `count` round trips of `size` bytes through the core's echo thread, timed one by one
/// (each waits for its echo, so the echo has one message at a time), from a SCHED_FIFO
/// thread if `priority` is given.
fn ping(PingOptions { count, size, priority }: PingOptions) -> io::Result<()> {
    if let Some(priority) = priority {
        set_fifo(priority)?;
    }
    let before = echo_stats()?;
    let mut port = open(ECHO_PORT)?;
    let (mut message, mut back) = (vec![0u8; size], vec![0u8; size]);
    let mut round_trips = Vec::with_capacity(count);
    for i in 0..count {
        for (j, byte) in message.iter_mut().enumerate() {
            *byte = (i + j) as u8;
        }
        let start = Instant::now();
        port.write_all(&message)?;
        port.read_exact(&mut back)?;
        round_trips.push(start.elapsed().as_nanos() as u64);
        if back != message {
            return Err(io::Error::other(format!("round trip {i}: the echo differs from what was sent")));
        }
    }
    let after = echo_stats()?;
    let (min, avg, p99, max) = summary(&mut round_trips).unwrap_or_default();
    let us = |ns: u64| ns as f64 / 1000.0;
    let policy = priority.map_or_else(String::new, |priority| format!(" (SCHED_FIFO {priority})"));
    println!(
        "ping: {count} round trips of {size} bytes over {ECHO_PORT}{policy}: min {:.1} us, avg {:.1} us, p99 {:.1} us, max {:.1} us",
        us(min),
        us(avg),
        us(p99),
        us(max)
    );
    let wakeups = after.0.saturating_sub(before.0);
    let cpu_ns = after.1.saturating_sub(before.1);
    println!("ping: the echo thread woke {wakeups} times, {} ns of its CPU time per wake-up", cpu_ns / wakeups.max(1));
    Ok(())
}

/// How long a port may take to show up (its name comes after the port, and after a new
/// probe of the device every port comes anew).
const PORT_WAIT: Duration = Duration::from_secs(3);

/// Opens the channel `port` for reading and writing, waiting up to [`PORT_WAIT`] for it.
fn open(port: &str) -> io::Result<File> {
    let give_up = Instant::now() + PORT_WAIT;
    let device = loop {
        match ports::find(Path::new(ports::SYSFS_PORTS), port) {
            Ok(device) => break device,
            Err(e) if Instant::now() >= give_up => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    OpenOptions::new().read(true).write(true).open(&device).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", device.display())))
}

/// Sends `command` on the control port and prints its answer.
fn control(command: &str) -> io::Result<()> {
    let mut device = open(CONTROL_PORT)?;
    device.write_all(format!("{command}\n").as_bytes())?;
    answer(BufReader::new(device), &mut LineFlush(io::stdout().lock()))
}

/// Copies an answer's lines up to its `END` (not printed); an `ERR` line is an error.
fn answer(reader: impl BufRead, out: &mut impl Write) -> io::Result<()> {
    for line in reader.lines() {
        let line = line?;
        if line == END {
            return Ok(());
        }
        if let Some(error) = line.strip_prefix("ERR ") {
            return Err(io::Error::other(format!("the core says: {error}")));
        }
        writeln!(out, "{line}")?;
    }
    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the control port closed before END"))
}

/// Stdout flushed at every line: a streamed answer (latmus) shows each line as it comes.
struct LineFlush<W: Write>(W);

impl<W: Write> Write for LineFlush<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        if buf[..n].contains(&b'\n') {
            self.0.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Copies `from` to `to`, flushing after every read (a live stream).
fn copy_live(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latmus_options_become_the_control_command() {
        assert_eq!(latmus_command(&[]).unwrap(), "latmus 1000 10 - 99 -");
        assert_eq!(
            latmus_command(&["-p", "500", "-T", "2", "-c", "3", "-P", "90", "-g", "2000"]).unwrap(),
            "latmus 500 2 3 90 2000"
        );
        assert_eq!(latmus_command(&["-g", "2000", "-t"]).unwrap(), "latmus 1000 10 - 99 -");
        assert!(latmus_command(&["-p"]).is_err());
        assert!(latmus_command(&["-p", "x"]).is_err());
        assert!(latmus_command(&["-x", "1"]).is_err());
    }

    #[test]
    fn ping_options_and_the_summary() {
        assert_eq!(ping_options(&[]).unwrap(), PingOptions { count: 1000, size: 64, priority: None });
        assert_eq!(ping_options(&["-n", "10", "-s", "512"]).unwrap(), PingOptions { count: 10, size: 512, priority: None });
        assert_eq!(ping_options(&["-P", "80", "-n", "5"]).unwrap(), PingOptions { count: 5, size: 64, priority: Some(80) });
        assert!(ping_options(&["-P", "0"]).is_err());
        assert!(ping_options(&["-P", "100"]).is_err());
        assert!(ping_options(&["-P"]).is_err());
        assert!(ping_options(&["-s", "513"]).is_err());
        assert!(ping_options(&["-n", "0"]).is_err());
        assert!(ping_options(&["-n"]).is_err());
        let mut samples: Vec<u64> = (1..=200).rev().collect();
        assert_eq!(summary(&mut samples), Some((1, 100, 198, 200)));
        assert_eq!(summary(&mut [7]), Some((7, 7, 7, 7)));
        assert_eq!(summary(&mut []), None);
    }

    #[test]
    fn an_answer_stops_at_end_and_errors_are_errors() {
        let mut out = Vec::new();
        answer(&b"CPU  ID\n0  0.0 companion-ctl\nEND\nlater\n"[..], &mut out).unwrap();
        assert_eq!(out, b"CPU  ID\n0  0.0 companion-ctl\n");
        let err = answer(&b"ERR unknown command\n"[..], &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("unknown command"));
        assert_eq!(answer(&b"no end\n"[..], &mut Vec::new()).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
