//! The on-target test suite of the oob real-time services, in the spirit of EVL's test
//! suite: each test drives the public API ([`crate::rt`]) from oob threads, records what
//! happened (order logs, timestamps, counters in atomics) and checks it.
//!
//! Selected with `companion.test=oob` (every test) or `companion.test=oob:NAME` (one test).
//! Each test prints `oob-test NAME ... ok` or `oob-test NAME ... FAILED: reason`, and the run
//! ends with `oob-suite: N passed, M failed`.
//!
//! The tests start from the in-band stage of CPU 0, which can only spawn, post and join; the
//! oob threads they spawn run on the other CPUs where possible, so a busy oob thread never
//! starves the in-band flow. Every wait has a timeout and every busy loop is bounded by
//! [`rt::now`], so a broken service fails a test instead of hanging the suite.

mod classes;
mod deferral;
mod fpu;
mod pi;
mod sched;
mod sync;
mod timing;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::rt::{self, Duration, Instant, JoinHandle, Policy, ThreadBuilder};

/// What a test returns: `Err` carries the reason it failed.
pub type TestResult = Result<(), String>;

/// One test of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// The name printed and matched by `companion.test=oob:NAME`.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> TestResult,
}

/// Every test, in the order they run.
pub const TESTS: &[Test] = &[
    Test { name: "priority-order", run: sched::priority_order },
    Test { name: "fifo-order", run: sched::fifo_order },
    Test { name: "round-robin", run: sched::round_robin },
    Test { name: "pi-boost", run: pi::pi_boost },
    Test { name: "pi-chain", run: pi::pi_chain },
    Test { name: "ceiling", run: pi::ceiling },
    Test { name: "semaphore", run: sync::semaphore },
    Test { name: "event-flags", run: sync::event_flags },
    Test { name: "timer-periodic", run: timing::timer_periodic },
    Test { name: "sleep-until", run: timing::sleep_until },
    Test { name: "cross-cpu-wake", run: timing::cross_cpu_wake },
    Test { name: "tp-partitions", run: classes::tp_partitions },
    Test { name: "quota", run: classes::quota },
    Test { name: "fpu-torture", run: fpu::fpu_torture },
    Test { name: "inband-deferral", run: deferral::inband_deferral },
];

/// The outcome of a suite run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
}

/// Runs every test (`only == None`) or the one named; `Err` if any failed or none matched.
pub fn run(only: Option<&str>) -> Result<Summary, Summary> {
    let mut summary = Summary { passed: 0, failed: 0 };
    let started = rt::now();
    for test in TESTS.iter().filter(|test| only.is_none_or(|name| name == test.name)) {
        let begin = rt::now();
        let result = (test.run)();
        let took = rt::now().saturating_duration_since(begin);
        match result {
            Ok(()) => {
                summary.passed += 1;
                rt::print(format_args!("oob-test {} ... ok ({} us)\n", test.name, took.as_nanos() / 1000));
            }
            Err(reason) => {
                summary.failed += 1;
                rt::print(format_args!("oob-test {} ... FAILED: {reason}\n", test.name));
            }
        }
    }
    if summary.passed + summary.failed == 0 {
        rt::print(format_args!("oob-suite: no test named {}\n", only.unwrap_or("")));
        summary.failed = 1;
    }
    let total = rt::now().saturating_duration_since(started);
    rt::print(format_args!(
        "oob-suite: {} passed, {} failed ({} ms)\n",
        summary.passed,
        summary.failed,
        total.as_nanos() / 1_000_000
    ));
    if summary.failed == 0 { Ok(summary) } else { Err(summary) }
}

/// Fails with `message` unless `condition` holds.
fn check(condition: bool, message: impl FnOnce() -> String) -> TestResult {
    if condition { Ok(()) } else { Err(message()) }
}

/// Maps an API error to a test failure naming the call.
fn api<T>(what: &'static str, result: Result<T, rt::Error>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// CPU `n` of the machine, wrapped to the CPUs present (so the suite also runs on fewer).
fn cpu(n: usize) -> usize {
    let count = rt::cpu_count().max(1);
    n % count
}

/// Milliseconds.
const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Microseconds.
const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Nanoseconds between two instants (0 if `later` is earlier).
fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    later.saturating_duration_since(earlier).as_nanos()
}

/// Spawns a thread on `cpu` with `policy` and `priority`.
fn spawn(
    name: &str,
    cpu: usize,
    policy: Policy,
    priority: u8,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, String> {
    ThreadBuilder::new(name)
        .cpu(cpu)
        .policy(policy, priority)
        .spawn(body)
        .map_err(|e| format!("spawn {name}: {e}"))
}

/// Joins every thread (all of them, even after a failure), reporting the first failure.
fn join_all(handles: Vec<JoinHandle>) -> TestResult {
    let mut result = Ok(());
    for handle in handles {
        let id = handle.id();
        if let Err(e) = handle.join()
            && result.is_ok()
        {
            result = Err(format!("join {id}: {e}"));
        }
    }
    result
}

/// Spins until `deadline` (a bounded busy loop).
fn busy_until(deadline: Instant) {
    while rt::now() < deadline {
        core::hint::spin_loop();
    }
}

/// Waits from an oob thread until `flag` is set, polling every 20 µs, for at most
/// `timeout`; returns whether it was set.
fn oob_wait_flag(flag: &AtomicBool, timeout: Duration) -> bool {
    let limit = rt::now() + timeout;
    while !flag.load(Ordering::Acquire) {
        if rt::now() >= limit || rt::sleep(us(20)).is_err() {
            return flag.load(Ordering::Acquire);
        }
    }
    true
}

/// Waits in the in-band stage until `condition` holds, polling every 50 µs, for at most
/// `timeout`; returns whether it held.
fn inband_wait(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let limit = rt::now() + timeout;
    while !condition() {
        if rt::now() >= limit || rt::inband_sleep_until(rt::now() + us(50)).is_err() {
            return condition();
        }
    }
    true
}

/// The most events an [`OrderLog`] records.
const LOG_CAPACITY: usize = 64;

/// An append-only log of small event codes, written lock-free by any thread or CPU.
struct OrderLog {
    next: AtomicUsize,
    events: [AtomicU32; LOG_CAPACITY],
}

impl OrderLog {
    /// An empty log.
    const fn new() -> Self {
        Self { next: AtomicUsize::new(0), events: [const { AtomicU32::new(0) }; LOG_CAPACITY] }
    }

    /// Appends `event` (dropped, and counted as an overflow, past the capacity).
    fn push(&self, event: u32) {
        let slot = self.next.fetch_add(1, Ordering::AcqRel);
        if let Some(entry) = self.events.get(slot) {
            entry.store(event, Ordering::Release);
        }
    }

    /// The events in the order they were appended.
    fn events(&self) -> Vec<u32> {
        let len = self.next.load(Ordering::Acquire).min(LOG_CAPACITY);
        self.events[..len].iter().map(|event| event.load(Ordering::Acquire)).collect()
    }
}

/// Accumulates the CPU time a busy thread actually gets: the sum of the short gaps between
/// consecutive clock reads (a gap longer than [`RunMeter::PREEMPTED`] means the thread was
/// switched out in between).
struct RunMeter {
    last: Instant,
    ran: u64,
}

impl RunMeter {
    /// A gap at least this long was time spent switched out.
    const PREEMPTED: u64 = 20_000;

    /// Starts measuring now.
    fn start() -> Self {
        Self { last: rt::now(), ran: 0 }
    }

    /// Reads the clock, accounting the gap since the previous read; returns the time now.
    fn tick(&mut self) -> Instant {
        let now = rt::now();
        let gap = nanos_between(self.last, now);
        if gap < Self::PREEMPTED {
            self.ran += gap;
        }
        self.last = now;
        now
    }

    /// Busy-runs until `deadline`; returns the CPU time received in nanoseconds.
    fn run_until(mut self, deadline: Instant) -> u64 {
        while self.tick() < deadline {}
        self.ran
    }
}

/// A shared nanosecond timestamp (0: not set).
struct Stamp(AtomicU64);

impl Stamp {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    fn set(&self, at: Instant) {
        self.0.store(at.as_nanos(), Ordering::Release);
    }

    fn get(&self) -> Instant {
        Instant::from_nanos(self.0.load(Ordering::Acquire))
    }
}

/// The first failure a test's threads report (later ones are dropped); lock-free, so a
/// thread preempted while reporting never blocks another.
struct Failure(core::sync::atomic::AtomicPtr<String>);

impl Failure {
    /// No failure yet.
    const fn new() -> Self {
        Self(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Reports `reason`, unless a failure was already reported.
    fn set(&self, reason: String) {
        let boxed = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(reason));
        if self.0.compare_exchange(core::ptr::null_mut(), boxed, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: `boxed` came from `Box::into_raw` above and was not published.
            drop(unsafe { alloc::boxed::Box::from_raw(boxed) });
        }
    }

    /// `Err` with the first reported failure, if any.
    fn check(&self) -> TestResult {
        let reason = self.0.load(Ordering::Acquire);
        if reason.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null pointer was published by `set` from `Box::into_raw` and is only
        // freed by `drop`, which needs `&mut self`.
        Err(unsafe { (*reason).clone() })
    }
}

impl Drop for Failure {
    fn drop(&mut self) {
        let reason = *self.0.get_mut();
        if !reason.is_null() {
            // SAFETY: published by `set` from `Box::into_raw`; nobody else can reach it now.
            drop(unsafe { alloc::boxed::Box::from_raw(reason) });
        }
    }
}
