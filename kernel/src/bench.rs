//! The core's benchmark (`companion.bench`), run by `cargo xtask bench` under QEMU with
//! `-icount shift=0`, where one PMU cycle ([`crate::cycles`], 1 GHz of virtual time under
//! TCG) is one virtual nanosecond is one instruction while only the measured CPU executes,
//! on every board whatever its generic counter's frequency.
//!
//! Figures, each as `BENCH|name|samples|min|avg|max` in cycles:
//! - `timer-to-switch`: the EL2 timer's deadline (the CPU is halted in the in-band stage,
//!   so the exception is taken exactly then; converted from counter ticks to cycles by a
//!   [`cycles::Calibration`]) to the woken thread's first instruction, i.e. the return from
//!   `switch_context` on its stack.
//! - `timer-to-return`: the same deadline to the thread's return from `sleep_until`.
//! - `switch`: one thread-to-thread context switch alone (`switch_context` call to return
//!   in the next thread).
//! - `post-to-wake`: a thread posts a semaphore a higher-priority thread of the same CPU
//!   waits on, until the waiter returns from its wait (the whole API path).
//!
//! And the footprint: `BENCH-MEM|image|heap-in-use|stacks` in bytes. Where the CPU has no
//! architected PMU (or its counters do not move), `BENCH-NA|reason` replaces the figures.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::cycles::{self, Calibration};
use crate::rt::{self, Duration, Error, Gravity, Semaphore, ThreadBuilder, Timeout};
use crate::sched;

/// Samples per figure.
const SAMPLES: usize = 200;

/// How often the in-band stage checks whether a measurement is done: rarely, so the other
/// CPU executes next to nothing while one measures (under `-icount` every executed
/// instruction of any CPU advances the shared virtual clock).
const QUIET: Duration = Duration::from_millis(100);

/// Counter ticks between the calibration's two edges.
const CALIBRATION_SPAN: u64 = 1000;

/// Min, average and max of samples, as a `BENCH|` line.
fn report(name: &str, samples: &[u64]) {
    if samples.is_empty() {
        rt::print(format_args!("BENCH|{name}|0|0|0|0\n"));
        return;
    }
    let min = samples.iter().min().copied().unwrap_or(0);
    let max = samples.iter().max().copied().unwrap_or(0);
    let avg = samples.iter().sum::<u64>() / samples.len() as u64;
    rt::print(format_args!("BENCH|{name}|{}|{min}|{avg}|{max}\n", samples.len()));
}

/// Runs every figure on `cpu` and prints them; `image_bytes` and `stack_bytes` are the
/// image's size (with BSS and boot stacks) and the boot stacks' share of it.
pub fn run(cpu: usize, image_bytes: usize, boot_stack_bytes: usize) -> Result<(), Error> {
    rt::set_gravity(Gravity::default())?;
    match start_cycle_counter(cpu)? {
        Ok(calibration) => {
            timer_to_thread(cpu, calibration)?;
            switches(cpu)?;
        }
        Err(reason) => rt::print(format_args!("BENCH-NA|{reason}\n")),
    }
    let thread_stacks = 3 * rt::DEFAULT_STACK_SIZE;
    let idle = ThreadBuilder::new("bench-idle").cpu(cpu).fifo(1).spawn(|| {
        let _ = rt::sleep(Duration::from_millis(5));
    })?;
    let heap = crate::heap::in_use();
    idle.join()?;
    rt::print(format_args!(
        "BENCH-MEM|image {image_bytes}|boot-stacks {boot_stack_bytes}|heap-in-use {heap}|thread-stacks-in-heap {thread_stacks}\n"
    ));
    Ok(())
}

/// Starts `cpu`'s cycle counter and calibrates it against the generic counter, on that CPU;
/// the inner error says why the paths cannot be measured there.
fn start_cycle_counter(cpu: usize) -> Result<Result<Calibration, &'static str>, Error> {
    let outcome = Arc::new(spin::Mutex::new(Err("the calibration thread did not run")));
    let thread_outcome = outcome.clone();
    ThreadBuilder::new("bench-cycles")
        .cpu(cpu)
        .fifo(99)
        .spawn(move || {
            *thread_outcome.lock() = match cycles::enable() {
                Err(cycles::NoPmu) => Err("no architected PMU (ID_AA64DFR0_EL1.PMUVer): no cycle counter"),
                Ok(()) => Calibration::measure(CALIBRATION_SPAN)
                    .ok_or("the cycle counter or the generic counter does not move: no calibration"),
            };
        })?
        .join_polling(QUIET)?;
    let outcome = *outcome.lock();
    Ok(outcome)
}

fn timer_to_thread(cpu: usize, calibration: Calibration) -> Result<(), Error> {
    let results = Arc::new(spin::Mutex::new((Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES))));
    let thread_results = results.clone();
    let sleeper = ThreadBuilder::new("bench-timer").cpu(cpu).fifo(99).spawn(move || {
        // One warm-up wake-up first: it runs the paths a first time (the timer handler's
        // first worst-cost record, cold caches on hardware) and is reported on its own.
        for _ in 0..=SAMPLES {
            let deadline = rt::now() + Duration::from_micros(50);
            if rt::sleep_until(deadline).is_err() {
                return;
            }
            let returned = cycles::now();
            let fired = calibration.cycles_at(sched::clock::to_ticks(deadline));
            let switched_in = sched::switch_stamps(cpu).map_or(0, |(_, back)| back);
            // A stamp before the deadline belongs to an earlier switch: the sleep did not
            // block (it cannot happen with a 50 µs margin, but a wrong sample must not count).
            if switched_in < fired {
                continue;
            }
            let mut results = thread_results.lock();
            results.0.push(switched_in - fired);
            results.1.push(returned - fired);
        }
    })?;
    sleeper.join_polling(QUIET)?;
    let results = results.lock();
    for (name, samples) in [("timer-to-switch", &results.0), ("timer-to-return", &results.1)] {
        if let Some((warmup, steady)) = samples.split_first() {
            rt::print(format_args!("BENCH-WARMUP|{name}|{warmup}\n"));
            report(name, steady);
        }
    }
    Ok(())
}

fn switches(cpu: usize) -> Result<(), Error> {
    let semaphore = Arc::new(Semaphore::new(0)?);
    let posted_at = Arc::new(AtomicU64::new(0));
    let results = Arc::new(spin::Mutex::new((Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES))));
    let (waiter_semaphore, waiter_posted_at, waiter_results) = (semaphore.clone(), posted_at.clone(), results.clone());
    let waiter = ThreadBuilder::new("bench-waiter").cpu(cpu).fifo(20).spawn(move || {
        for _ in 0..SAMPLES {
            if waiter_semaphore.wait(Some(Timeout::After(Duration::from_millis(100)))).is_err() {
                return;
            }
            let woke = cycles::now();
            let (away, back) = sched::switch_stamps(cpu).unwrap_or_default();
            let posted = waiter_posted_at.load(Ordering::Relaxed);
            if back < away || woke < posted {
                continue;
            }
            let mut results = waiter_results.lock();
            results.0.push(back - away);
            results.1.push(woke - posted);
        }
    })?;
    let poster = ThreadBuilder::new("bench-poster").cpu(cpu).fifo(10).spawn(move || {
        for _ in 0..SAMPLES {
            posted_at.store(cycles::now(), Ordering::Relaxed);
            if semaphore.post().is_err() {
                return;
            }
        }
    })?;
    poster.join_polling(QUIET)?;
    waiter.join_polling(QUIET)?;
    let results = results.lock();
    report("switch", &results.0);
    report("post-to-wake", &results.1);
    Ok(())
}
