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
//! Linux is untrusted: each line is checked by [`vm::virtio::control`] (host-tested) before
//! the core acts on it. A malformed, truncated (no newline within [`LINE_WAIT`]), overlong or
//! out-of-bounds command, and any command while a latency test started from Linux runs, gets
//! one `ERR …` line to Linux and one `control: refused …` line on the core's console (a run
//! of the same refusal is summed up); the serving thread and the device go on.
//!
//! From a guest shell: `printf 'ps\n' > /dev/vport0p0; cat /dev/vport0p0` (the port's index
//! is the channel's; its name is in `/sys/class/virtio-ports/vport0p0/name`).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use vm::virtio::control::{self, Command, LineReader, Read};

use crate::latmus::{LatmusConfig, run_reporting};
use crate::rt::{self, Channel, Duration, Error, ThreadBuilder, Timeout};

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

/// How long a line may wait for its newline before it is dropped and refused (a truncated
/// command must not glue itself to the next one).
const LINE_WAIT: Duration = Duration::from_secs(1);

/// Answers commands until the core stops. Every refusal goes to Linux as one `ERR` line and
/// to the core's console ([`Refusals`]).
fn serve(channel: Channel) {
    let mut reader: LineReader<MAX_COMMAND> = LineReader::new();
    let mut refusals = Refusals::default();
    loop {
        let mut byte = [0u8; 1];
        let got = if channel.try_recv(&mut byte) == 1 {
            Ok(1)
        } else {
            // Nothing more for now: what was refused is summed up before waiting. A line
            // begun waits [`LINE_WAIT`] for the rest, unlogged refusals as long for their
            // summary; otherwise the thread waits for bytes for ever.
            refusals.quiet();
            let timeout = (reader.pending() > 0 || refusals.owes_summary()).then_some(Timeout::After(LINE_WAIT));
            channel.recv(&mut byte, timeout)
        };
        match got {
            Ok(1) => match reader.push(byte[0]) {
                Read::More => {}
                Read::Line(line) => match control::parse(line, rt::cpu_count()) {
                    Ok(command) => answer(&channel, command, &mut reader, &mut refusals),
                    Err(refusal) => refusals.refuse(&channel, &refusal, None),
                },
                Read::Refused(refusal) => refusals.refuse(&channel, &refusal, None),
            },
            Err(Error::TimedOut) => {
                if let Some(refusal) = reader.abandon() {
                    refusals.refuse(&channel, &refusal, None);
                }
            }
            _ => {}
        }
    }
}

/// Refusal lines the core's console takes a second at most: an oob writer drops what does
/// not fit the console's ring, and a guest alternating bad commands must not crowd out the
/// core's own lines (the latency test's among them).
const LOGGED_PER_SECOND: u32 = 16;

/// The refusals sent to Linux and logged on the core's console: one line each, except that
/// a run of the same refusal (a flood) is logged once and then summed up
/// (`... N more times`) when it ends: at another refusal, when the port goes quiet, or at the
/// end of a latency test that refused it; and past [`LOGGED_PER_SECOND`] lines a second the
/// rest are counted and summed up in one line.
#[derive(Default)]
struct Refusals {
    /// The last refusal logged, and how many times it came again since.
    last: Option<(String, u64)>,
    /// When the current second of console lines ends.
    window_end: rt::Instant,
    /// Lines logged in the current second.
    logged: u32,
    /// Refusal lines not logged one by one since the last summary.
    unlogged: u64,
}

impl Refusals {
    /// Refuses a command: `ERR <why>` to Linux without waiting (a Linux not reading loses its
    /// refusals, counted as the channel's drops), and the core's console line; `busy` names
    /// the running test that refused a valid command.
    fn refuse(&mut self, channel: &Channel, why: &dyn core::fmt::Display, busy: Option<&str>) {
        let text = match busy {
            Some(busy) => format!("{why}: {busy}"),
            None => format!("{why}"),
        };
        channel.send(format!("ERR {text}\n").as_bytes());
        match &mut self.last {
            Some((last, repeats)) if *last == text => *repeats += 1,
            _ => {
                self.flush();
                self.log(format_args!("control: refused {text}"));
                self.last = Some((text, 0));
            }
        }
    }

    /// Logs how many times the last refusal came again, if it did.
    fn flush(&mut self) {
        if let Some((last, repeats)) = self.last.take()
            && repeats > 0
        {
            self.log(format_args!("control: refused {last}, {repeats} more times"));
        }
    }

    /// The port went quiet: sums up the last run, and what went unlogged once its second
    /// is over.
    fn quiet(&mut self) {
        self.flush();
        self.roll_window();
    }

    /// Whether lines wait to be summed up when the current second ends (the caller wakes
    /// then to call [`Refusals::quiet`]).
    fn owes_summary(&self) -> bool {
        self.unlogged > 0
    }

    /// Logs `line` if this second's budget allows, else counts it.
    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        self.roll_window();
        if self.logged < LOGGED_PER_SECOND {
            self.logged += 1;
            log::warn!("{line}");
        } else {
            self.unlogged += 1;
        }
    }

    /// Starts a new second if the current one is over, first logging how many refusal lines
    /// it did not log (one line a second at most, beyond the budget).
    fn roll_window(&mut self) {
        let now = rt::now();
        if now < self.window_end {
            return;
        }
        if self.unlogged > 0 {
            log::warn!("control: {} more refusal lines not logged one by one (at most {LOGGED_PER_SECOND} a second)", self.unlogged);
            self.unlogged = 0;
        }
        self.window_end = now + Duration::from_secs(1);
        self.logged = 0;
    }
}

/// While a latency test runs from this thread, refuses every line Linux sends (without
/// waiting: the test's lines must go out once a second): a valid command as busy
/// (`control: refused "ps": a latency test started from Linux runs`), another for its own
/// fault.
fn refuse_while_testing(channel: &Channel, reader: &mut LineReader<MAX_COMMAND>, refusals: &mut Refusals) {
    const BUSY: &str = "a latency test started from Linux runs";
    let mut byte = [0u8; 1];
    while channel.try_recv(&mut byte) == 1 {
        match reader.push(byte[0]) {
            Read::More => {}
            Read::Line(line) => match control::parse(line, rt::cpu_count()) {
                Ok(_) => refusals.refuse(channel, &format_args!("{:?}", line.trim()), Some(BUSY)),
                Err(refusal) => refusals.refuse(channel, &refusal, None),
            },
            Read::Refused(refusal) => refusals.refuse(channel, &refusal, None),
        }
    }
}

/// Answers a valid `command`; `reader` goes on reading the lines Linux sends meanwhile.
fn answer(channel: &Channel, command: Command, reader: &mut LineReader<MAX_COMMAND>, refusals: &mut Refusals) {
    match command {
        Command::Ps => match rt::ps_table() {
            Ok(table) => send(channel, &format!("{table}END\n")),
            Err(e) => send(channel, &format!("ERR {e:?}\n")),
        },
        Command::Channels => {
            let mut text = String::new();
            for (port, name, (messages, bytes)) in rt::channel::drop_counts() {
                text.push_str(&format!("{port} {name} dropped {messages} messages {bytes} bytes\n"));
            }
            send(channel, &format!("{text}END\n"));
        }
        Command::Echo => send(channel, &echo_stats()),
        Command::Latmus(request) => {
            let config = LatmusConfig {
                period_us: request.period_us,
                duration_s: request.duration_s,
                cpu: request.cpu.unwrap_or_else(|| rt::cpu_count().saturating_sub(1)),
                priority: request.priority,
                gravity_ns: request.gravity_ns,
            };
            // Lines Linux sends meanwhile are refused as they come (read between the test's
            // lines); a partial one is completed after it.
            // Every line also goes to the core's own console: the harness reads the
            // figures and the sampling audit from core lines only, never from what
            // Linux relays (docs/verdict-and-harness.md).
            let result = run_reporting(config, &mut |args| {
                let text = format!("{args}");
                rt::print(format_args!("{text}"));
                send(channel, &text);
                refuse_while_testing(channel, reader, refusals);
            });
            // A flood refused during the test is summed up once, whatever seconds it spanned.
            refusals.quiet();
            match result {
                Ok(_) => send(channel, "END\n"),
                Err(Error::WouldBlock) => {
                    refusals.refuse(channel, &"latmus: the core's own latency test (its boot arguments) runs", None);
                }
                Err(e) => refusals.refuse(channel, &format_args!("latmus: {e:?}"), None),
            }
        }
    }
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
