//! Semaphores and event flags: counts, non-blocking attempts, timeouts, wake-ups.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Failure, OrderLog, Stamp, TestResult, api, check, cpu, join_all, ms, nanos_between, spawn, us};
use crate::rt::{self, Duration, Error, EventFlags, FlagsMode, Instant, Policy, Semaphore, Timeout};

/// How late a timed-out wait may return under `-icount` (deterministic, tiny latency).
const TIMEOUT_SLACK: u64 = 100_000;

/// Checks that a wait begun at `began` with a `timeout` timed out on time.
fn timed_out_on_time(what: &str, began: Instant, timeout: Duration, result: Result<(), Error>) -> TestResult {
    let elapsed = nanos_between(began, rt::now());
    check(result == Err(Error::TimedOut), || format!("{what}: {result:?}, expected TimedOut"))?;
    let expected = timeout.as_nanos();
    check(elapsed >= expected && elapsed < expected + TIMEOUT_SLACK, || {
        format!("{what}: timed out after {elapsed} ns, expected {expected} ns (+ < {TIMEOUT_SLACK})")
    })
}

/// Counts and `try_wait`, timeouts (relative and absolute), a post waking a waiter, and
/// waiters served in priority order.
pub fn semaphore() -> TestResult {
    struct Shared {
        sem: Semaphore,
        posted: Stamp,
        woke: Stamp,
        log: OrderLog,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        sem: api("Semaphore::new", Semaphore::new(2))?,
        posted: Stamp::new(),
        woke: Stamp::new(),
        log: OrderLog::new(),
        failure: Failure::new(),
    });
    let on = cpu(1);

    // Counting and timeouts, in one thread.
    let s = shared.clone();
    let counter = spawn("sem-count", on, Policy::Fifo, 20, move || {
        let steps = || -> TestResult {
            api("try_wait 1", s.sem.try_wait())?;
            api("wait 2", s.sem.wait(Some(Timeout::After(ms(1)))))?;
            let third = s.sem.try_wait();
            check(third == Err(Error::WouldBlock), || format!("third try_wait on 2 units: {third:?}"))?;
            check(s.sem.count() == Ok(0), || format!("count {:?}, expected 0", s.sem.count()))?;
            api("post", s.sem.post())?;
            api("post", s.sem.post())?;
            check(s.sem.count() == Ok(2), || format!("count {:?} after 2 posts, expected 2", s.sem.count()))?;
            api("try_wait", s.sem.try_wait())?;
            api("try_wait", s.sem.try_wait())?;
            let began = rt::now();
            timed_out_on_time("wait After(2 ms)", began, ms(2), s.sem.wait(Some(Timeout::After(ms(2)))))?;
            let began = rt::now();
            let at = began + us(1500);
            timed_out_on_time("wait At(+1.5 ms)", began, us(1500), s.sem.wait(Some(Timeout::At(at))))
        };
        if let Err(reason) = steps() {
            s.failure.set(reason);
        }
    })?;
    join_all(vec![counter])?;
    shared.failure.check()?;

    // A post from a lower-priority thread wakes the waiter at once.
    let s = shared.clone();
    let waiter = spawn("sem-wait", on, Policy::Fifo, 30, move || match s.sem.wait(Some(Timeout::After(ms(20)))) {
        Ok(()) => s.woke.set(rt::now()),
        Err(e) => s.failure.set(format!("waiter: {e}")),
    })?;
    let s = shared.clone();
    let poster = spawn("sem-post", on, Policy::Fifo, 10, move || {
        // The waiter blocked first: it outranks this thread on the same CPU.
        s.posted.set(rt::now());
        if let Err(e) = s.sem.post() {
            s.failure.set(format!("post: {e}"));
        }
    })?;
    join_all(vec![waiter, poster])?;
    shared.failure.check()?;
    let latency = nanos_between(shared.posted.get(), shared.woke.get());
    check(shared.woke.get() >= shared.posted.get() && latency < 50_000, || {
        format!("waiter woke {latency} ns after the post (expected < 50 us)")
    })?;

    // Waiters of priorities 10, 30, 20 (blocked in that order) get the units 30, 20, 10.
    let mut handles = Vec::new();
    for priority in [10u8, 30, 20] {
        let s = shared.clone();
        handles.push(spawn("sem-queue", on, Policy::Fifo, priority, move || {
            match s.sem.wait(Some(Timeout::After(ms(20)))) {
                Ok(()) => s.log.push(u32::from(priority)),
                Err(e) => s.failure.set(format!("queued waiter {priority}: {e}")),
            }
        })?);
    }
    let s = shared.clone();
    handles.push(spawn("sem-feed", on, Policy::Fifo, 5, move || {
        // Priority 5: runs once the three waiters are blocked; each post hands over one unit.
        for _ in 0..3 {
            if let Err(e) = s.sem.post() {
                s.failure.set(format!("post: {e}"));
            }
        }
    })?);
    join_all(handles)?;
    shared.failure.check()?;
    let order = shared.log.events();
    check(order == [30, 20, 10], || format!("units went to priorities {order:?}, expected [30, 20, 10]"))
}

/// Any/All waits, consuming or not, timeouts, clearing, and a waiter woken only once all
/// the bits it waits for are posted.
pub fn event_flags() -> TestResult {
    struct Shared {
        flags: EventFlags,
        woke: AtomicBool,
        received: AtomicU64,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        flags: api("EventFlags::new", EventFlags::new(0b0001))?,
        woke: AtomicBool::new(false),
        received: AtomicU64::new(0),
        failure: Failure::new(),
    });
    let on = cpu(1);
    let s = shared.clone();
    let single = spawn("flags-one", on, Policy::Fifo, 20, move || {
        let f = &s.flags;
        let steps = || -> TestResult {
            let timeout = Some(Timeout::After(ms(1)));
            let began = rt::now();
            let all = f.wait(0b0011, FlagsMode::All, false, timeout).map(|_| ());
            timed_out_on_time("All of 0b11 with 0b01 set", began, ms(1), all)?;
            let any = f.wait(0b0011, FlagsMode::Any, false, timeout);
            check(any == Ok(0b0001), || format!("Any of 0b11 with 0b01 set: {any:?}, expected Ok(1)"))?;
            check(f.value() == Ok(0b0001), || format!("value {:?} after a non-consuming wait", f.value()))?;
            let consumed = f.wait(0b0001, FlagsMode::Any, true, timeout);
            check(consumed == Ok(0b0001), || format!("consuming wait: {consumed:?}"))?;
            check(f.value() == Ok(0), || format!("value {:?} after a consuming wait, expected 0", f.value()))?;
            api("post", f.post(0b1010))?;
            api("clear", f.clear(0b0010))?;
            check(f.value() == Ok(0b1000), || format!("value {:?} after post 0b1010, clear 0b10", f.value()))?;
            api("clear", f.clear(0b1000))?;
            let empty = f.wait(0, FlagsMode::Any, false, timeout);
            check(empty == Err(Error::InvalidMask), || format!("empty mask: {empty:?}, expected InvalidMask"))
        };
        if let Err(reason) = steps() {
            s.failure.set(reason);
        }
    })?;
    join_all(vec![single])?;
    shared.failure.check()?;

    // A waiter for All of 0b110 stays blocked after 0b010, wakes on 0b100.
    let s = shared.clone();
    let waiter = spawn("flags-wait", on, Policy::Fifo, 30, move || {
        match s.flags.wait(0b0110, FlagsMode::All, true, Some(Timeout::After(ms(20)))) {
            Ok(bits) => {
                s.received.store(bits, Ordering::Release);
                s.woke.store(true, Ordering::Release);
            }
            Err(e) => s.failure.set(format!("All waiter: {e}")),
        }
    })?;
    let s = shared.clone();
    let poster = spawn("flags-post", on, Policy::Fifo, 10, move || {
        let steps = || -> TestResult {
            api("post 0b0010", s.flags.post(0b0010))?;
            rt::sleep(us(200)).map_err(|e| format!("sleep: {e}"))?;
            check(!s.woke.load(Ordering::Acquire), || "the All waiter woke on half its bits".into())?;
            api("post 0b1100", s.flags.post(0b1100))?;
            check(s.woke.load(Ordering::Acquire), || "the All waiter (higher priority) did not run on the post".into())?;
            let value = s.flags.value();
            check(value == Ok(0b1000), || format!("value {value:?} after the consuming All wait, expected 0b1000"))
        };
        if let Err(reason) = steps() {
            s.failure.set(reason);
        }
    })?;
    join_all(vec![waiter, poster])?;
    shared.failure.check()?;
    let received = shared.received.load(Ordering::Acquire);
    check(received == 0b0110, || format!("the All waiter received {received:#b}, expected 0b110"))
}
