//! The public oob API: what an oob application uses to run real-time code next to the
//! in-band stage, modelled on EVL's (libevl) services.
//!
//! - Threads: [`ThreadBuilder`] (name, CPU, policy, priority, stack), [`sleep_until`],
//!   [`yield_now`], [`exit`], [`current`].
//! - Synchronization, every wait with an optional [`Timeout`]: [`Mutex`] (priority
//!   inheritance, optional ceiling), [`Semaphore`], [`EventFlags`].
//! - Timers: [`Timer`] (a thread waits for each period, learning overruns) and [`IrqTimer`]
//!   (a callback in the timer interrupt).
//! - Time: [`now`], on the monotonic clock in nanoseconds.
//! - Scheduling classes: [`sched_tp`] and [`sched_quota`] configure time partitioning and
//!   quota groups per CPU.
//! - Diagnostics: [`ps`] prints every thread with its statistics.
//! - Talking to Linux: [`Channel`], a named virtio-console port of the guest, bounded each
//!   way, never waiting on Linux.
//!
//! Blocking calls must come from an oob thread; from the in-band stage or an interrupt
//! handler they fail with [`Error::NotRunning`]. Non-blocking calls (`post`, `try_*`) work
//! anywhere. Nothing here panics on bad arguments: every refusal is an [`Error`].
//!
//! An application lives in `kernel/src/apps/` and uses only this module; see
//! `kernel/src/apps/example.rs`.

pub mod channel;
mod sync;
mod timer;

use alloc::boxed::Box;

pub use crate::sched::threads::{DEFAULT_STACK_SIZE, JoinHandle, MIN_STACK_SIZE};
pub use crate::sched::timers::{IrqContext, TimerCallback};
pub use oob::{
    Duration, Error, FlagsMode, Gravity, Instant, Policy, QuotaGroupId, ThreadId, ThreadStats, Timeout,
    TimerContext, TimerExpiry, TpWindow, WakeReason,
};
pub use channel::{Channel, OpenError};
pub use sync::{EventFlags, Mutex, MutexGuard, Semaphore};
pub use timer::{IrqTimer, Timer};

use crate::sched::{self, Waited, with_core};

/// Now, on the core's monotonic clock.
pub fn now() -> Instant {
    sched::clock::now()
}

/// The calling oob thread, `None` from the in-band stage.
pub fn current() -> Option<ThreadId> {
    sched::current_thread()
}

/// The number of CPUs the oob core manages.
pub fn cpu_count() -> usize {
    sched::lock().ok().and_then(|glue| glue.as_ref().map(|glue| glue.core.cpu_count())).unwrap_or(0)
}

/// Creates oob threads.
#[derive(Debug, Clone)]
pub struct ThreadBuilder<'a> {
    name: &'a str,
    cpu: usize,
    policy: Policy,
    priority: u8,
    stack_size: usize,
    context: TimerContext,
}

impl<'a> ThreadBuilder<'a> {
    /// A FIFO thread of priority 1 on CPU 0 with the default stack.
    pub fn new(name: &'a str) -> Self {
        Self { name, cpu: 0, policy: Policy::Fifo, priority: 1, stack_size: DEFAULT_STACK_SIZE, context: TimerContext::User }
    }

    /// The CPU the thread is pinned to.
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = cpu;
        self
    }

    /// Scheduling policy and base priority (1..=99, 99 highest).
    pub fn policy(mut self, policy: Policy, priority: u8) -> Self {
        self.policy = policy;
        self.priority = priority;
        self
    }

    /// FIFO at `priority`.
    pub fn fifo(self, priority: u8) -> Self {
        self.policy(Policy::Fifo, priority)
    }

    /// Stack size in bytes (at least [`MIN_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// The timer gravity class of the thread's timed waits (default: user).
    pub fn timer_context(mut self, context: TimerContext) -> Self {
        self.context = context;
        self
    }

    /// Starts the thread running `body`; it exits when `body` returns.
    pub fn spawn(self, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle, Error> {
        let spec = oob::ThreadSpec {
            name: self.name,
            cpu: self.cpu,
            policy: self.policy,
            priority: self.priority,
            context: self.context,
            dormant: false,
        };
        sched::threads::spawn(spec, self.stack_size, Box::new(body))
    }
}

/// Sleeps the calling oob thread until `deadline`; returns at once if it has passed. The
/// lateness of the wake-up counts in the thread's worst latency.
pub fn sleep_until(deadline: Instant) -> Result<(), Error> {
    let waited = sched::wait(|glue, me, now| match glue.core.sleep_until(me, deadline, now) {
        Err(Error::TimedOut) => Ok(oob::Wait::Done(())),
        other => other,
    })?;
    if let Waited::Woken(_) = waited
        && let Some(me) = current()
    {
        let late = now().saturating_duration_since(deadline);
        let _ = with_core(|glue, _| glue.core.report_latency(me, late));
    }
    Ok(())
}

/// Waits in the in-band stage until `deadline`, with the CPU halted (`WFI`) in between: a
/// one-shot oob timer on this CPU wakes it. Oob work preempts the wait as usual. From an oob
/// thread, use [`sleep_until`].
pub fn inband_sleep_until(deadline: Instant) -> Result<(), Error> {
    if current().is_some() || sched::in_irq() {
        return Err(Error::NotRunning);
    }
    let cpu = boot::cpu_index();
    let wakeup = INBAND_WAKEUP.get(cpu).ok_or(Error::InvalidCpu)?;
    let mut timer = wakeup.lock();
    if timer.is_none() {
        *timer = Some(IrqTimer::new(cpu, |_, _, _| {})?);
    }
    let Some(timer) = timer.as_ref() else { return Err(Error::StaleTimer) };
    timer.start(deadline, None)?;
    while now() < deadline {
        crate::arch::unmask_irqs();
        // The in-band stage is idle: write out the console meanwhile (the deadline is checked
        // again after, as draining may outlast it).
        if crate::console::drain() && now() >= deadline {
            break;
        }
        aarch64_cpu::asm::wfi();
    }
    Ok(())
}

/// Per CPU, the timer that ends in-band sleeps.
static INBAND_WAKEUP: [spin::Mutex<Option<IrqTimer>>; oob::MAX_CPUS] = [const { spin::Mutex::new(None) }; oob::MAX_CPUS];

/// Sleeps the calling oob thread for `delay`.
pub fn sleep(delay: Duration) -> Result<(), Error> {
    sleep_until(now().saturating_add(delay))
}

/// Ends the calling thread's turn: it goes behind the other runnable threads of its priority.
pub fn yield_now() -> Result<(), Error> {
    let me = current().ok_or(Error::NotRunning)?;
    with_core(|glue, now| glue.core.yield_now(me, now))
}

/// Ends the calling oob thread (as if its body returned).
pub fn exit() -> ! {
    sched::threads::exit_current()
}

/// Changes a thread's base priority (its policy stays).
pub fn set_priority(thread: ThreadId, priority: u8) -> Result<(), Error> {
    with_core(|glue, now| glue.core.set_priority(thread, priority, now))
}

/// Suspends a thread until [`resume`]; it keeps its place in any wait.
pub fn suspend(thread: ThreadId) -> Result<(), Error> {
    with_core(|glue, _| glue.core.suspend(thread))
}

/// Resumes a suspended thread.
pub fn resume(thread: ThreadId) -> Result<(), Error> {
    with_core(|glue, _| glue.core.resume(thread))
}

/// A thread's statistics: switches, CPU time, worst wake-up latency.
pub fn thread_stats(thread: ThreadId) -> Result<ThreadStats, Error> {
    with_core(|glue, _| glue.core.thread_stats(thread))
}

/// The priority a thread runs at now (its own, or one inherited through a mutex).
pub fn effective_priority(thread: ThreadId) -> Result<u8, Error> {
    with_core(|glue, _| glue.core.effective_priority(thread))
}

/// The in-band stage's statistics on `cpu`.
pub fn inband_stats(cpu: usize) -> Result<ThreadStats, Error> {
    with_core(|glue, _| glue.core.inband_stats(cpu))
}

/// The timer anticipation applied to each kind of timer.
pub fn gravity() -> Result<Gravity, Error> {
    with_core(|glue, _| Ok(glue.core.gravity()))
}

/// Sets the timer anticipation (normally from the latency test's calibration).
pub fn set_gravity(gravity: Gravity) -> Result<(), Error> {
    with_core(|glue, _| {
        glue.core.set_gravity(gravity);
        Ok(())
    })
}

/// Prints to the console (a whole line at a time never interleaves with another's).
pub fn print(args: core::fmt::Arguments<'_>) {
    crate::console::write_fmt(args);
}

/// The `evl ps`-like table of every in-band stage and thread, as text.
pub fn ps_table() -> Result<alloc::string::String, Error> {
    with_core(|glue, _| Ok(glue.core.snapshot())).map(|snapshot| alloc::format!("{snapshot}"))
}

/// Prints every in-band stage and thread, like `evl ps`, on the console.
pub fn ps() {
    // Formatted first: a record this long is copied into the console ring under its lock,
    // which should not also cover formatting the table.
    if let Ok(table) = ps_table() {
        crate::console::write_fmt(format_args!("{table}"));
    }
}

/// Time partitioning (EVL's `SCHED_TP`): a per-CPU cyclic schedule of windows, each giving
/// the CPU to one partition's threads.
pub mod sched_tp {
    use super::{Error, TpWindow, with_core};

    /// Installs the window schedule of `cpu` (stopped until [`start`]).
    pub fn install(cpu: usize, windows: &[TpWindow]) -> Result<(), Error> {
        with_core(|glue, _| glue.core.tp_install(cpu, windows))
    }

    /// Starts the schedule of `cpu` now.
    pub fn start(cpu: usize) -> Result<(), Error> {
        with_core(|glue, now| glue.core.tp_start(cpu, now))
    }

    /// Stops the schedule of `cpu`: TP threads no longer run.
    pub fn stop(cpu: usize) -> Result<(), Error> {
        with_core(|glue, _| glue.core.tp_stop(cpu))
    }
}

/// Quota scheduling (EVL's `SCHED_QUOTA`): groups of threads share a CPU-time budget per
/// period.
pub mod sched_quota {
    use super::{Duration, Error, QuotaGroupId, with_core};

    /// Sets the quota period of `cpu`.
    pub fn set_period(cpu: usize, period: Duration) -> Result<(), Error> {
        with_core(|glue, now| glue.core.quota_set_period(cpu, period, now))
    }

    /// Creates a group on `cpu` with `budget` per period.
    pub fn create_group(cpu: usize, budget: Duration) -> Result<QuotaGroupId, Error> {
        with_core(|glue, _| glue.core.quota_create_group(cpu, budget))
    }

    /// Changes a group's budget.
    pub fn set_budget(group: QuotaGroupId, budget: Duration) -> Result<(), Error> {
        with_core(|glue, now| glue.core.quota_set_budget(group, budget, now))
    }

    /// Removes an empty group.
    pub fn remove_group(group: QuotaGroupId) -> Result<(), Error> {
        with_core(|glue, _| glue.core.quota_remove_group(group))
    }
}
