//! Timer accuracy, sleeps, and cross-CPU wake-ups.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{Failure, Stamp, TestResult, api, check, cpu, join_all, ms, nanos_between, spawn, us};
use crate::rt::{self, Policy, Semaphore, Timeout, Timer};

/// The largest wake-up latency accepted under `-icount` (where it is tiny and exact).
const LATENCY_BOUND: u64 = 50_000;

/// A 1 ms periodic timer waited on 100 times: each wait reports one expiration, deadlines
/// step by exactly 1 ms, and the thread wakes at or after each deadline, within 50 µs.
pub fn timer_periodic() -> TestResult {
    const PERIODS: u64 = 100;
    let failure = Arc::new(Failure::new());
    let worst = Arc::new(AtomicU64::new(0));
    let on = cpu(3);
    let (f, w) = (failure.clone(), worst.clone());
    let thread = spawn("timer", on, Policy::Fifo, 90, move || {
        let steps = || -> super::TestResult {
            let timer = api("Timer::new", Timer::new(on))?;
            let first = rt::now() + ms(1);
            api("Timer::start", timer.start(first, Some(ms(1))))?;
            for k in 0..PERIODS {
                let (expirations, deadline) = api("Timer::wait", timer.wait())?;
                let woke = rt::now();
                check(expirations == 1, || format!("period {k}: {expirations} expirations"))?;
                let expected = first + ms(1).saturating_mul(k);
                check(deadline == expected, || {
                    format!("period {k}: deadline {} ns, expected {} ns", deadline.as_nanos(), expected.as_nanos())
                })?;
                check(woke >= deadline, || format!("period {k}: woke {} ns early", nanos_between(woke, deadline)))?;
                let late = nanos_between(deadline, woke);
                w.fetch_max(late, Ordering::AcqRel);
                check(late < LATENCY_BOUND, || format!("period {k}: woke {late} ns late"))?;
            }
            let armed = api("Timer::stop", timer.stop())?;
            check(armed, || "the periodic timer was not armed any more".into())
        };
        if let Err(reason) = steps() {
            f.set(reason);
        }
    })?;
    join_all(vec![thread])?;
    failure.check()?;
    rt::print(format_args!("oob-test timer-periodic: worst lateness {} ns\n", worst.load(Ordering::Acquire)));
    Ok(())
}

/// `sleep_until` wakes at or after its deadline (within 50 µs) for a range of delays, and
/// returns at once for a deadline already past.
pub fn sleep_until() -> TestResult {
    let failure = Arc::new(Failure::new());
    let f = failure.clone();
    let thread = spawn("sleeper", cpu(3), Policy::Fifo, 80, move || {
        let steps = || -> super::TestResult {
            for delay in [1u64, 10, 50, 100, 333, 1000, 2500] {
                let deadline = rt::now() + us(delay);
                api("sleep_until", rt::sleep_until(deadline))?;
                let woke = rt::now();
                check(woke >= deadline, || format!("{delay} us sleep woke {} ns early", nanos_between(woke, deadline)))?;
                let late = nanos_between(deadline, woke);
                check(late < LATENCY_BOUND, || format!("{delay} us sleep woke {late} ns late"))?;
            }
            let began = rt::now();
            api("sleep_until(past)", rt::sleep_until(began.saturating_sub(ms(1))))?;
            let took = nanos_between(began, rt::now());
            check(took < 20_000, || format!("sleep_until a past deadline took {took} ns"))
        };
        if let Err(reason) = steps() {
            f.set(reason);
        }
    })?;
    join_all(vec![thread])?;
    failure.check()?;
    // The in-band stage cannot block.
    let refused = rt::sleep_until(rt::now() + us(10));
    check(refused == Err(rt::Error::NotRunning), || format!("in-band sleep_until: {refused:?}, expected NotRunning"))
}

/// A thread on CPU 1 blocked on a semaphore is posted from a thread on CPU 2, ten times
/// (ping-pong): it wakes on CPU 1 each time, within 50 µs of the post.
pub fn cross_cpu_wake() -> TestResult {
    const ROUNDS: usize = 10;
    struct Shared {
        ping: Semaphore,
        pong: Semaphore,
        posted: Stamp,
        worst: AtomicU64,
        wrong_cpu: AtomicUsize,
        rounds: AtomicUsize,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        ping: api("Semaphore::new", Semaphore::new(0))?,
        pong: api("Semaphore::new", Semaphore::new(0))?,
        posted: Stamp::new(),
        worst: AtomicU64::new(0),
        wrong_cpu: AtomicUsize::new(usize::MAX),
        rounds: AtomicUsize::new(0),
        failure: Failure::new(),
    });
    let (waiter_cpu, poster_cpu) = (cpu(1), cpu(2));
    let s = shared.clone();
    let waiter = spawn("xcpu-wait", waiter_cpu, Policy::Fifo, 80, move || {
        for round in 0..ROUNDS {
            if let Err(e) = s.ping.wait(Some(Timeout::After(ms(10)))) {
                return s.failure.set(format!("round {round}: waiter: {e}"));
            }
            let latency = nanos_between(s.posted.get(), rt::now());
            s.worst.fetch_max(latency, Ordering::AcqRel);
            let here = boot::cpu_index();
            if here != waiter_cpu {
                s.wrong_cpu.store(here, Ordering::Release);
            }
            s.rounds.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = s.pong.post() {
                return s.failure.set(format!("round {round}: pong post: {e}"));
            }
        }
    })?;
    let s = shared.clone();
    let poster = spawn("xcpu-post", poster_cpu, Policy::Fifo, 80, move || {
        for round in 0..ROUNDS {
            // Let the waiter block again.
            let _ = rt::sleep(us(200));
            s.posted.set(rt::now());
            if let Err(e) = s.ping.post() {
                return s.failure.set(format!("round {round}: post: {e}"));
            }
            if let Err(e) = s.pong.wait(Some(Timeout::After(ms(10)))) {
                return s.failure.set(format!("round {round}: no pong: {e}"));
            }
        }
    })?;
    join_all(vec![waiter, poster])?;
    shared.failure.check()?;
    let rounds = shared.rounds.load(Ordering::Acquire);
    check(rounds == ROUNDS, || format!("{rounds} of {ROUNDS} wake-ups"))?;
    let wrong = shared.wrong_cpu.load(Ordering::Acquire);
    check(wrong == usize::MAX, || format!("the waiter pinned to CPU {waiter_cpu} ran on CPU {wrong}"))?;
    let worst = shared.worst.load(Ordering::Acquire);
    check(worst < LATENCY_BOUND, || format!("worst post-to-wake latency {worst} ns across CPUs"))?;
    rt::print(format_args!("oob-test cross-cpu-wake: worst post-to-wake {worst} ns\n"));
    Ok(())
}
