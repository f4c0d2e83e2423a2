//! Scheduling order: priorities, FIFO among equals (with `yield_now`), round-robin slicing.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{OrderLog, TestResult, api, busy_until, check, cpu, inband_wait, join_all, ms, spawn, us};
use crate::rt::{self, Duration, EventFlags, FlagsMode, Policy, Timeout};

/// Threads blocked on a gate, and the log of what they did once released.
struct Gate {
    flags: EventFlags,
    blocked: AtomicUsize,
    log: OrderLog,
}

impl Gate {
    fn new() -> Result<Arc<Self>, alloc::string::String> {
        Ok(Arc::new(Self { flags: api("EventFlags::new", EventFlags::new(0))?, blocked: AtomicUsize::new(0), log: OrderLog::new() }))
    }

    /// Blocks the calling thread until the gate opens (bit 0 posted), for at most a second.
    fn pass(&self) -> bool {
        self.blocked.fetch_add(1, Ordering::AcqRel);
        self.flags.wait(1, FlagsMode::Any, false, Some(Timeout::After(ms(1000)))).is_ok()
    }

    /// From the in-band stage: waits until `count` threads reached the gate (and a little
    /// more, so they are blocked in the wait), then opens it.
    fn open_when(&self, count: usize) -> TestResult {
        let arrived = inband_wait(ms(100), || self.blocked.load(Ordering::Acquire) >= count);
        check(arrived, || format!("only {} of {count} threads reached the gate", self.blocked.load(Ordering::Acquire)))?;
        let _ = rt::inband_sleep_until(rt::now() + us(200));
        api("EventFlags::post", self.flags.post(1))
    }
}

/// Four FIFO threads of different priorities on one CPU, released together by one event
/// post from the in-band stage, run highest priority first.
pub fn priority_order() -> TestResult {
    let gate = Gate::new()?;
    let priorities = [10u8, 40, 20, 30];
    let mut handles = Vec::new();
    for priority in priorities {
        let gate = gate.clone();
        handles.push(spawn("prio", cpu(1), Policy::Fifo, priority, move || {
            if gate.pass() {
                gate.log.push(u32::from(priority));
            }
        })?);
    }
    let opened = gate.open_when(priorities.len());
    join_all(handles)?;
    opened?;
    let order = gate.log.events();
    check(order == [40, 30, 20, 10], || format!("ran in order {order:?}, expected [40, 30, 20, 10]"))
}

/// Three FIFO threads of equal priority, released together, run in arrival order without
/// preempting each other; `yield_now` sends each behind the others.
pub fn fifo_order() -> TestResult {
    let gate = Gate::new()?;
    let mut handles = Vec::new();
    for index in 0..3u32 {
        let mine = gate.clone();
        handles.push(spawn("fifo", cpu(1), Policy::Fifo, 20, move || {
            if !mine.pass() {
                return;
            }
            mine.log.push(index);
            busy_until(rt::now() + us(300));
            mine.log.push(10 + index);
            if rt::yield_now().is_err() {
                return;
            }
            mine.log.push(20 + index);
        })?);
        // Arrival order: each thread blocks before the next one is created.
        let arrived = inband_wait(ms(100), || gate.blocked.load(Ordering::Acquire) > index as usize);
        check(arrived, || format!("fifo thread {index} did not reach the gate"))?;
    }
    let opened = gate.open_when(3);
    join_all(handles)?;
    opened?;
    let order = gate.log.events();
    let expected = [0, 10, 1, 11, 2, 12, 20, 21, 22];
    check(order == expected, || format!("events {order:?}, expected {expected:?} (N: start, 1N: before yield, 2N: after yield)"))
}

/// Two busy round-robin threads of equal priority with a 1 ms quantum share the CPU in
/// turns: over 20 ms, about 20 alternations and about equal progress.
pub fn round_robin() -> TestResult {
    const RUN: Duration = ms(20);
    /// Who ran last (0: nobody yet, else thread index + 1).
    struct Shared {
        last: AtomicU32,
        switches: AtomicU32,
        loops: [AtomicU64; 2],
        start: AtomicU64,
    }
    let shared = Arc::new(Shared {
        last: AtomicU32::new(0),
        switches: AtomicU32::new(0),
        loops: [AtomicU64::new(0), AtomicU64::new(0)],
        start: AtomicU64::new((rt::now() + ms(2)).as_nanos()),
    });
    let policy = Policy::RoundRobin { quantum: ms(1) };
    let mut handles = Vec::new();
    for index in 0..2usize {
        let shared = shared.clone();
        handles.push(spawn("rr", cpu(2), policy, 20, move || {
            let start = rt::Instant::from_nanos(shared.start.load(Ordering::Acquire));
            let me = index as u32 + 1;
            let mut loops = 0u64;
            // Both begin together, when the second thread surely exists.
            while rt::now() < start {
                if rt::sleep_until(start).is_err() {
                    return;
                }
            }
            let end = start + RUN;
            while rt::now() < end {
                let previous = shared.last.swap(me, Ordering::AcqRel);
                if previous != 0 && previous != me {
                    shared.switches.fetch_add(1, Ordering::AcqRel);
                }
                loops += 1;
            }
            shared.loops[index].store(loops, Ordering::Release);
        })?);
    }
    join_all(handles)?;
    let switches = shared.switches.load(Ordering::Acquire);
    let loops = [shared.loops[0].load(Ordering::Acquire), shared.loops[1].load(Ordering::Acquire)];
    check(loops[0] > 0 && loops[1] > 0, || format!("a thread made no progress: loops {loops:?}"))?;
    check((12..=30).contains(&switches), || format!("{switches} alternations in 20 ms at a 1 ms quantum, expected about 20"))?;
    let (low, high) = (loops[0].min(loops[1]), loops[0].max(loops[1]));
    check(low * 10 >= high * 7, || format!("unequal shares: loops {loops:?}"))
}
