//! The core's control port for Linux: the channel `companion.ctl`, served by a low-priority
//! oob thread. A command is one line; the answer is lines ending with `END` (or one `ERR …`
//! line):
//!
//! - `ps`: the oob threads and in-band stages with their statistics (the `rt::ps` table);
//! - `channels`: each open channel's port, name and the messages and bytes its oob sender
//!   dropped (a full ring), one line each;
//! - `latmus PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|-`: runs the latency test
//!   ([`crate::latmus::run_reporting`]) and streams its lines (`RTT|`, one `RTD|` per second,
//!   `RTS|`, the `HSH|`/`HSD|` histogram) as they come, and prints them on the core's console
//!   too (the harness trusts those, not Linux's copy); `-` for the CPU is the last one, for
//!   the gravity: calibrate first (`latmus -t`).
//!
//! - `echo`: what the echo thread did: `echo <wakeups> wakeups <bytes> bytes <cpu_ns> ns`
//!   (its CPU time, from the scheduler's accounting: the oob side's cost of the messages).
//!
//! The core also opens `companion.echo`, served by its own oob thread: every byte Linux
//! sends comes back, or is dropped and counted when Linux does not read (the flood test and
//! round-trip measurements, `companion ping`, use it).
//!
//! From a guest shell: `printf 'ps\n' > /dev/vport0p0; cat /dev/vport0p0` (the port's index
//! is the channel's; its name is in `/sys/class/virtio-ports/vport0p0/name`).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::latmus::{LatmusConfig, run_reporting};
use crate::rt::{self, Channel, Duration, ThreadBuilder};

/// The control port's name.
pub const PORT_NAME: &str = "companion.ctl";
/// The echo port's name.
pub const ECHO_PORT_NAME: &str = "companion.echo";
/// Longest command line.
const MAX_COMMAND: usize = 128;
/// The serving thread's FIFO priority: below every real-time thread.
const PRIORITY: u8 = 1;
/// How long an answer waits for room in the channel (Linux reading) before it is cut.
const ROOM_WAIT: Duration = Duration::from_secs(2);
/// How often it looks.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// The echo thread's wake-ups with bytes, the bytes it took, and its thread (0: not started).
static ECHO_WAKEUPS: AtomicU64 = AtomicU64::new(0);
static ECHO_BYTES: AtomicU64 = AtomicU64::new(0);
static ECHO_THREAD: spin::Once<rt::ThreadId> = spin::Once::new();

/// Opens the control port and starts its thread on CPU 0.
pub fn start() -> Result<(), String> {
    let channel = Channel::open(PORT_NAME).map_err(|e| format!("cannot open {PORT_NAME}: {e:?}"))?;
    let port = channel.port();
    ThreadBuilder::new("companion-ctl")
        .fifo(PRIORITY)
        .spawn(move || serve(channel))
        .map_err(|e| format!("cannot start companion-ctl: {e:?}"))?;
    let echo = Channel::open(ECHO_PORT_NAME).map_err(|e| format!("cannot open {ECHO_PORT_NAME}: {e:?}"))?;
    let echo_port = echo.port();
    ThreadBuilder::new("companion-echo")
        .fifo(PRIORITY)
        .spawn(move || serve_echo(echo))
        .map_err(|e| format!("cannot start companion-echo: {e:?}"))?;
    log::info!("guest: control port {PORT_NAME} is channel port {port}, {ECHO_PORT_NAME} port {echo_port}");
    Ok(())
}

/// Sends back what comes, as it comes: never waits for Linux (a full ring drops and counts).
fn serve_echo(channel: Channel) {
    if let Some(me) = rt::current() {
        ECHO_THREAD.call_once(|| me);
    }
    let mut buf = [0u8; 512];
    loop {
        let n = channel.recv(&mut buf, None).unwrap_or(0);
        if n > 0 {
            channel.send(&buf[..n]);
            ECHO_WAKEUPS.fetch_add(1, Ordering::Relaxed);
            ECHO_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The echo thread's wake-ups with bytes, the bytes it took and its CPU time (ns).
fn echo_counts() -> (u64, u64, u64) {
    let cpu_ns = ECHO_THREAD.get().and_then(|&thread| rt::thread_stats(thread).ok()).map_or(0, |stats| stats.cpu_time.as_nanos());
    (ECHO_WAKEUPS.load(Ordering::Relaxed), ECHO_BYTES.load(Ordering::Relaxed), cpu_ns)
}

/// The `echo` command's answer: wake-ups, bytes and the echo thread's CPU time.
fn echo_stats() -> String {
    let (wakeups, bytes, cpu_ns) = echo_counts();
    format!("echo {wakeups} wakeups {bytes} bytes {cpu_ns} ns\nEND\n")
}

/// Logs what the echo thread did over the run, if it ran: the core's own count (bytes taken
/// from Linux, CPU time, bytes its sends dropped), which the harness holds the round trips
/// (`companion ping`) and the losses (the flood) Linux reports against.
pub fn report() {
    if ECHO_THREAD.get().is_none() {
        return;
    }
    let (wakeups, bytes, cpu_ns) = echo_counts();
    let dropped = rt::channel::drop_counts()
        .into_iter()
        .find(|(_, name, _)| *name == ECHO_PORT_NAME)
        .map_or(0, |(_, _, (_, bytes))| bytes);
    log::info!(
        "channel: {ECHO_PORT_NAME}: {wakeups} wake-ups, {bytes} bytes echoed, {cpu_ns} ns of CPU time, {dropped} bytes dropped"
    );
}

/// Answers commands until the core stops.
fn serve(channel: Channel) {
    let mut line = [0u8; MAX_COMMAND];
    let mut len = 0;
    loop {
        let mut byte = [0u8; 1];
        if channel.recv(&mut byte, None).unwrap_or(0) == 0 {
            continue;
        }
        match byte[0] {
            b'\n' => {
                answer(&channel, &line[..len]);
                len = 0;
            }
            b if len < MAX_COMMAND => {
                line[len] = b;
                len += 1;
            }
            // An overlong line: answered as unknown when it ends.
            _ => {}
        }
    }
}

/// Sends the answer to `command`.
fn answer(channel: &Channel, command: &[u8]) {
    let text = core::str::from_utf8(command).unwrap_or("").trim();
    let words: alloc::vec::Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["ps"] => match rt::ps_table() {
            Ok(table) => send(channel, &format!("{table}END\n")),
            Err(e) => send(channel, &format!("ERR {e:?}\n")),
        },
        ["channels"] => {
            let mut text = String::new();
            for (port, name, (messages, bytes)) in rt::channel::drop_counts() {
                text.push_str(&format!("{port} {name} dropped {messages} messages {bytes} bytes\n"));
            }
            send(channel, &format!("{text}END\n"));
        }
        ["echo"] => send(channel, &echo_stats()),
        ["latmus", args @ ..] => match latmus_config(args) {
            Ok(config) => {
                // Every line also goes to the core's own console: the harness reads the
                // figures and the sampling audit from core lines only, never from what
                // Linux relays (docs/verdict-and-harness.md).
                let result = run_reporting(config, &mut |args| {
                    let text = format!("{args}");
                    rt::print(format_args!("{text}"));
                    send(channel, &text);
                });
                match result {
                    Ok(_) => send(channel, "END\n"),
                    Err(e) => send(channel, &format!("ERR latmus: {e:?}\n")),
                }
            }
            Err(e) => send(channel, &format!("ERR {e}\n")),
        },
        _ => send(channel, "ERR unknown command (have: ps, channels, echo, latmus)\n"),
    }
}

/// The shortest period Linux may ask of the latency test: the guest is untrusted, and an oob
/// thread woken every microsecond would take most of its CPU from every other oob thread.
/// The core's own boot argument (`latmus.period=`) has no such floor.
const MIN_GUEST_PERIOD_US: u64 = 100;

/// The latency test's parameters from `PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|-`.
fn latmus_config(args: &[&str]) -> Result<LatmusConfig, String> {
    let [period, seconds, cpu, priority, gravity] = args else {
        return Err(String::from("latmus wants PERIOD_US SECONDS CPU|- PRIORITY GRAVITY_NS|-"));
    };
    let number = |what: &str, text: &str| text.parse::<u64>().map_err(|_| format!("latmus: bad {what} {text:?}"));
    let period_us = number("period", period)?;
    let duration_s = number("duration", seconds)?;
    let priority = number("priority", priority)?;
    if period_us < MIN_GUEST_PERIOD_US || duration_s == 0 || !(1..=99).contains(&priority) {
        return Err(format!("latmus: period at least {MIN_GUEST_PERIOD_US} us, duration above 0, priority 1..=99"));
    }
    let cpu = match *cpu {
        "-" => rt::cpu_count().saturating_sub(1),
        cpu => number("cpu", cpu)? as usize,
    };
    let gravity_ns = match *gravity {
        "-" => None,
        gravity => Some(number("gravity", gravity)?),
    };
    Ok(LatmusConfig { period_us, duration_s, cpu, priority: priority as u8, gravity_ns })
}

/// Sends `text` whole, waiting (this is not a real-time thread) while Linux has not read
/// enough for it; cut after [`ROOM_WAIT`] with an `ERR` line if Linux stopped reading.
fn send(channel: &Channel, text: &str) {
    let give_up = rt::now() + ROOM_WAIT;
    for chunk in text.as_bytes().chunks(crate::rt::channel::RING_BYTES / 2) {
        while channel.room() < chunk.len() {
            if rt::now() >= give_up || rt::sleep(ROOM_POLL).is_err() {
                channel.send(b"ERR reply cut: Linux is not reading\n");
                return;
            }
        }
        channel.send(chunk);
    }
}
