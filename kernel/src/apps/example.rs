//! The example oob application: a 1 kHz position-control loop, the kind of thing a motion
//! controller runs, written only against the public API ([`crate::rt`]).
//!
//! - `control` (FIFO 90): wakes on a periodic [`Timer`], runs a PID controller on a
//!   simulated motor (floating point), and every 100 periods publishes a status under a
//!   [`Mutex`] and posts a [`Semaphore`].
//! - `report` (FIFO 10, same CPU): waits on the semaphore (with a timeout) and prints the
//!   status.
//!
//! Alone ([`APP`]'s `run`, `cargo xtask run --no-guest --app example`) the setpoint steps
//! between 0 and 1 every second. Beside the Linux guest (`start`, `cargo xtask run
//! --guest-script pid`) it talks to Linux over two channels ([`Channel`]):
//!
//! - [`SETPOINT_PORT`] (Linux → core): one setpoint per line (`1.5\n`); the control thread
//!   takes what arrived with a non-blocking read every period, so it never waits on Linux;
//! - [`TELEMETRY_PORT`] (core → Linux): every 100 ms the reporting thread (never the control
//!   thread) sends `t=MS setpoint=S position=P overruns=N line=L dropped=D end`; a line that
//!   does not fit (Linux not reading) is dropped and counted. `L` numbers the lines the thread
//!   formed (from 0), `D` is how many of the lines before it were dropped: a reader that
//!   missed lines sees the gap in `L` and the drops that made it in `D`, and the two agree.
//!
//! Two ports, not one both ways: Linux lets one process at a time open a port, and the
//! guest reads telemetry the whole time it sends setpoints; and each oob thread then owns
//! its own [`Channel`].
//!
//! Options: `companion.app.seconds` (default 2 alone; beside the guest 0: until the run
//! ends), `companion.app.cpu` (default: the last CPU).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::rt::{self, Channel, Duration, JoinHandle, Mutex, Semaphore, ThreadBuilder, Timeout, Timer};

/// The registry entry.
pub const APP: super::App = super::App {
    name: "example",
    summary: "1 kHz PID position loop on a simulated motor, with a reporting thread",
    run,
    start,
    report,
};

/// The port Linux writes setpoints to, one per line.
pub const SETPOINT_PORT: &str = "example.setpoint";
/// The port the reporting thread streams telemetry lines on.
pub const TELEMETRY_PORT: &str = "example.telemetry";
/// Longest setpoint line; a longer one is discarded whole.
const MAX_SETPOINT_LINE: usize = 32;
/// Reads of up to [`MAX_SETPOINT_LINE`] bytes the control thread makes per period at most:
/// its cost per period stays bounded however fast Linux writes (the rest waits its turn).
const MAX_READS_PER_PERIOD: usize = 4;

/// What the control loop publishes.
#[derive(Debug, Clone, Copy, Default)]
struct Status {
    period: u64,
    setpoint: f64,
    position: f64,
    overruns: u64,
}

/// State shared by the two threads.
struct Shared {
    status_lock: Mutex,
    status: core::cell::UnsafeCell<Status>,
    fresh: Semaphore,
    done: AtomicBool,
}

// SAFETY: `status` is only accessed with `status_lock` held.
unsafe impl Sync for Shared {}
// SAFETY: the ids inside are plain values; the core serializes every operation on them.
unsafe impl Send for Shared {}

/// The figures [`report`] prints at the end of a run beside the guest: plain atomics, so the
/// in-band reader never takes an oob lock.
struct Counters {
    periods: AtomicU64,
    overruns: AtomicU64,
    setpoint_bits: AtomicU64,
    position_bits: AtomicU64,
    setpoints_taken: AtomicU64,
    setpoints_refused: AtomicU64,
    lines_written: AtomicU64,
    lines_dropped: AtomicU64,
}

static COUNTERS: Counters = Counters {
    periods: AtomicU64::new(0),
    overruns: AtomicU64::new(0),
    setpoint_bits: AtomicU64::new(0),
    position_bits: AtomicU64::new(0),
    setpoints_taken: AtomicU64::new(0),
    setpoints_refused: AtomicU64::new(0),
    lines_written: AtomicU64::new(0),
    lines_dropped: AtomicU64::new(0),
};

/// A motor: position and velocity, driven by a torque, integrated at the loop period.
struct Motor {
    position: f64,
    velocity: f64,
}

impl Motor {
    fn step(&mut self, torque: f64, dt: f64) {
        let friction = -0.5 * self.velocity;
        self.velocity += (torque + friction) * dt;
        self.position += self.velocity * dt;
    }
}

/// Where the setpoint comes from.
enum Setpoints {
    /// Steps between 0 and 1 every second.
    SquareWave,
    /// Lines from Linux on [`SETPOINT_PORT`]; holds the current one and a partial line.
    Linux { channel: Channel, current: f64, line: [u8; MAX_SETPOINT_LINE], len: usize, overlong: bool },
}

impl Setpoints {
    /// The setpoint for `period`; from Linux, what arrived since the last period, up to
    /// [`MAX_READS_PER_PERIOD`] reads (never waits). A line that is not a finite number, or
    /// too long, is refused and counted.
    fn at(&mut self, period: u64) -> f64 {
        match self {
            Self::SquareWave => {
                if (period / 1000) % 2 == 0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Linux { channel, current, line, len, overlong } => {
                let mut chunk = [0u8; MAX_SETPOINT_LINE];
                for _ in 0..MAX_READS_PER_PERIOD {
                    let n = channel.try_recv(&mut chunk);
                    if n == 0 {
                        break;
                    }
                    for &byte in &chunk[..n] {
                        if byte != b'\n' {
                            if *len < line.len() {
                                line[*len] = byte;
                                *len += 1;
                            } else {
                                *overlong = true;
                            }
                            continue;
                        }
                        match parse_setpoint(&line[..*len]).filter(|_| !*overlong) {
                            Some(value) => {
                                *current = value;
                                COUNTERS.setpoints_taken.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                COUNTERS.setpoints_refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        (*len, *overlong) = (0, false);
                    }
                }
                *current
            }
        }
    }
}

/// A setpoint line's value: a finite decimal number (surrounding blanks and a `\r` allowed).
fn parse_setpoint(line: &[u8]) -> Option<f64> {
    let text = core::str::from_utf8(line).ok()?.trim();
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Turns a core error into the application's error text, saying what failed.
fn error(what: &'static str) -> impl Fn(rt::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Spawns the two threads on `cpu` for `seconds` (0: forever).
fn spawn(cpu: usize, seconds: u64, setpoints: Setpoints, telemetry: Option<Channel>) -> Result<(JoinHandle, JoinHandle), String> {
    let shared = Arc::new(Shared {
        status_lock: Mutex::new().map_err(error("mutex"))?,
        status: core::cell::UnsafeCell::new(Status::default()),
        fresh: Semaphore::new(0).map_err(error("semaphore"))?,
        done: AtomicBool::new(false),
    });
    let control_shared = shared.clone();
    let control = ThreadBuilder::new("control")
        .cpu(cpu)
        .fifo(90)
        .spawn(move || control_loop(&control_shared, cpu, seconds, setpoints))
        .map_err(error("spawn control"))?;
    let report = ThreadBuilder::new("report")
        .cpu(cpu)
        .fifo(10)
        .spawn(move || report_loop(&shared, telemetry.as_ref()))
        .map_err(error("spawn report"))?;
    Ok((control, report))
}

/// The CPU option (default: the last CPU).
fn cpu_option(options: &super::Options<'_>) -> Result<usize, String> {
    let last_cpu = rt::cpu_count().saturating_sub(1) as u64;
    Ok(options.number("cpu", last_cpu).map_err(|e| format!("{e}"))? as usize)
}

/// Runs alone, with the square-wave setpoint, to completion.
fn run(options: &super::Options<'_>) -> Result<(), String> {
    let seconds = options.number("seconds", 2).map_err(|e| format!("{e}"))?.max(1);
    let (control, report) = spawn(cpu_option(options)?, seconds, Setpoints::SquareWave, None)?;
    control.join().map_err(error("join control"))?;
    report.join().map_err(error("join report"))?;
    rt::ps();
    Ok(())
}

/// Starts beside the guest (before it boots: the ports must exist when Linux probes the
/// channel device), with the setpoint from Linux and telemetry to Linux; returns at once.
fn start(options: &super::Options<'_>) -> Result<(), String> {
    let seconds = options.number("seconds", 0).map_err(|e| format!("{e}"))?;
    let cpu = cpu_option(options)?;
    let setpoint = Channel::open(SETPOINT_PORT).map_err(|e| format!("cannot open {SETPOINT_PORT}: {e:?}"))?;
    let telemetry = Channel::open(TELEMETRY_PORT).map_err(|e| format!("cannot open {TELEMETRY_PORT}: {e:?}"))?;
    log::info!("example: setpoints from channel port {} ({SETPOINT_PORT}), telemetry to port {} ({TELEMETRY_PORT})", setpoint.port(), telemetry.port());
    let setpoints = Setpoints::Linux { channel: setpoint, current: 0.0, line: [0; MAX_SETPOINT_LINE], len: 0, overlong: false };
    // The threads run on; the end of the run stops them.
    spawn(cpu, seconds, setpoints, Some(telemetry)).map(drop)
}

/// The core's own account at the end of a run beside the guest: what the harness holds
/// the guest's telemetry against.
fn report() {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    rt::print(format_args!(
        "example: {} periods, setpoint {:.3} position {:.4}, {} overruns; setpoints {} taken, {} refused; telemetry {} lines written, {} dropped\n",
        load(&COUNTERS.periods),
        f64::from_bits(load(&COUNTERS.setpoint_bits)),
        f64::from_bits(load(&COUNTERS.position_bits)),
        load(&COUNTERS.overruns),
        load(&COUNTERS.setpoints_taken),
        load(&COUNTERS.setpoints_refused),
        load(&COUNTERS.lines_written),
        load(&COUNTERS.lines_dropped),
    ));
}

fn control_loop(shared: &Shared, cpu: usize, seconds: u64, mut setpoints: Setpoints) {
    const PERIOD: Duration = Duration::from_millis(1);
    let dt = PERIOD.as_nanos() as f64 * 1e-9;
    let (kp, ki, kd) = (40.0, 5.0, 12.0);
    let mut motor = Motor { position: 0.0, velocity: 0.0 };
    let (mut integral, mut previous_error) = (0.0, 0.0);
    let mut overruns = 0;
    let Ok(timer) = Timer::new(cpu) else { return };
    if timer.start(rt::now() + PERIOD, Some(PERIOD)).is_err() {
        return;
    }
    let last = if seconds == 0 { u64::MAX } else { seconds * 1000 };
    for period in 1..=last {
        let Ok((expirations, _)) = timer.wait() else { break };
        overruns += expirations - 1;
        let setpoint = setpoints.at(period);
        let error = setpoint - motor.position;
        integral += error * dt;
        let derivative = (error - previous_error) / dt;
        previous_error = error;
        motor.step(kp * error + ki * integral + kd * derivative, dt);
        COUNTERS.periods.store(period, Ordering::Relaxed);
        COUNTERS.overruns.store(overruns, Ordering::Relaxed);
        COUNTERS.setpoint_bits.store(setpoint.to_bits(), Ordering::Relaxed);
        COUNTERS.position_bits.store(motor.position.to_bits(), Ordering::Relaxed);
        if period % 100 == 0
            && let Ok(guard) = shared.status_lock.lock(None)
        {
            // SAFETY: the status lock is held.
            unsafe { *shared.status.get() = Status { period, setpoint, position: motor.position, overruns } };
            drop(guard);
            let _ = shared.fresh.post();
        }
    }
    shared.done.store(true, Ordering::Release);
    let _ = shared.fresh.post();
}

fn report_loop(shared: &Shared, telemetry: Option<&Channel>) {
    while !shared.done.load(Ordering::Acquire) {
        if shared.fresh.wait(Some(Timeout::After(Duration::from_millis(500)))).is_err() {
            rt::print(format_args!("example: no status for 500 ms\n"));
            continue;
        }
        let Ok(guard) = shared.status_lock.lock(None) else { continue };
        // SAFETY: the status lock is held.
        let status = unsafe { *shared.status.get() };
        drop(guard);
        if let Some(channel) = telemetry {
            // Only this thread counts lines: the two loads are its own earlier stores.
            let dropped = COUNTERS.lines_dropped.load(Ordering::Relaxed);
            let formed = COUNTERS.lines_written.load(Ordering::Relaxed) + dropped;
            let line = format!(
                "t={} setpoint={:.3} position={:.4} overruns={} line={formed} dropped={dropped} end\n",
                status.period, status.setpoint, status.position, status.overruns
            );
            let counter = if channel.send(line.as_bytes()) { &COUNTERS.lines_written } else { &COUNTERS.lines_dropped };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if status.period % 500 == 0 {
            rt::print(format_args!(
                "example: t={:5} ms setpoint {:.3} position {:+.4} overruns {}\n",
                status.period, status.setpoint, status.position, status.overruns
            ));
        }
    }
}
