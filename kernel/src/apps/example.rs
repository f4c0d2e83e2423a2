//! The example oob application: a 1 kHz position-control loop, the kind of thing a motion
//! controller runs, written only against the public API ([`crate::rt`]).
//!
//! - `control` (FIFO 90): wakes on a periodic [`Timer`], runs a PID controller on a
//!   simulated motor (floating point), and every 100 periods publishes a status under a
//!   [`Mutex`] and posts a [`Semaphore`].
//! - `report` (FIFO 10, same CPU): waits on the semaphore (with a timeout) and prints the
//!   status.
//!
//! Options: `companion.app.seconds` (default 2), `companion.app.cpu` (default: the last CPU).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::rt::{self, Duration, Mutex, Semaphore, ThreadBuilder, Timeout, Timer};

/// The registry entry.
pub const APP: super::App = super::App {
    name: "example",
    summary: "1 kHz PID position loop on a simulated motor, with a reporting thread",
    run,
};

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

fn run(options: &super::Options<'_>) -> Result<(), String> {
    let seconds = options.number("seconds", 2).map_err(|e| format!("{e}"))?;
    let last_cpu = rt::cpu_count().saturating_sub(1) as u64;
    let cpu = options.number("cpu", last_cpu).map_err(|e| format!("{e}"))? as usize;
    fn error(what: &'static str) -> impl Fn(rt::Error) -> String {
        move |e| format!("{what}: {e}")
    }
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
        .spawn(move || control_loop(&control_shared, cpu, seconds))
        .map_err(error("spawn control"))?;
    let report_shared = shared.clone();
    let report = ThreadBuilder::new("report")
        .cpu(cpu)
        .fifo(10)
        .spawn(move || report_loop(&report_shared))
        .map_err(error("spawn report"))?;
    control.join().map_err(error("join control"))?;
    report.join().map_err(error("join report"))?;
    rt::ps();
    Ok(())
}

fn control_loop(shared: &Shared, cpu: usize, seconds: u64) {
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
    for period in 1..=seconds * 1000 {
        let Ok((expirations, _)) = timer.wait() else { break };
        overruns += expirations - 1;
        // The setpoint steps between 0 and 1 every second.
        let setpoint = if (period / 1000) % 2 == 0 { 1.0 } else { 0.0 };
        let error = setpoint - motor.position;
        integral += error * dt;
        let derivative = (error - previous_error) / dt;
        previous_error = error;
        motor.step(kp * error + ki * integral + kd * derivative, dt);
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

fn report_loop(shared: &Shared) {
    while !shared.done.load(Ordering::Acquire) {
        if shared.fresh.wait(Some(Timeout::After(Duration::from_millis(500)))).is_err() {
            rt::print(format_args!("example: no status for 500 ms\n"));
            continue;
        }
        let Ok(guard) = shared.status_lock.lock(None) else { continue };
        // SAFETY: the status lock is held.
        let status = unsafe { *shared.status.get() };
        drop(guard);
        if status.period % 500 == 0 {
            rt::print(format_args!(
                "example: t={:5} ms setpoint {:.1} position {:+.4} overruns {}\n",
                status.period, status.setpoint, status.position, status.overruns
            ));
        }
    }
}
