//! Blocking: the machinery shared by mutexes, semaphores, event flags and sleeps.
//!
//! A blocking call is made by the thread running on its CPU. If it cannot complete at once, the
//! thread leaves its run queue, joins the object's wait queue (ordered by rank, FIFO among
//! equals, see [`crate::sched`]), a timeout is armed on its CPU's timer queue if requested, and
//! the call returns [`Wait::Blocked`]; the CPU gets a reschedule effect. When the wait ends the
//! thread becomes ready again with a [`WakeReason`], which the glue fetches with
//! [`OobCore::take_wake_reason`] and returns to the thread when it runs. A timeout that has
//! already passed when the call is made fails at once with [`Error::TimedOut`]; otherwise the
//! wait times out when the CPU's timer queue fires the timeout, i.e. in the first
//! [`OobCore::on_timer`] at or after the deadline (minus the thread's timer gravity).

pub mod flags;
pub mod mutex;
pub mod semaphore;
pub mod sleep;

use crate::arena::Key;
use crate::effects::CpuMask;
use crate::error::Error;
use crate::list::{Link, List};
use crate::oob_core::{Cpu, OobCore};
use crate::thread::{Thread, ThreadId};
use crate::time::Instant;
use flags::{FlagsCondition, FlagsId};
use mutex::MutexId;
use semaphore::SemaphoreId;

/// What a blocked thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitObject {
    /// A mutex.
    Mutex(MutexId),
    /// A semaphore.
    Semaphore(SemaphoreId),
    /// An event flags group.
    Flags(FlagsId),
    /// A sleep until a deadline.
    Sleep,
}

/// Why a blocked thread was woken up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// It got what it waited for (mutex handed over, semaphore unit).
    Granted,
    /// The timeout elapsed first (for a sleep: the sleep is over).
    TimedOut,
    /// The event flags it waited for were posted: the bits it received.
    Signaled(u64),
    /// The object it waited on was destroyed.
    Deleted,
}

/// Result of a call that may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Wait<T> {
    /// Completed without blocking, with its result.
    Done(T),
    /// The caller is now blocked; its [`WakeReason`] tells how the wait ended.
    Blocked,
}

/// The internal record of a wait, by arena index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    Mutex(u32),
    Semaphore(u32),
    Flags { group: u32, condition: FlagsCondition },
    Sleep,
}

impl OobCore {
    /// The thread index of `id` if it is the running thread of its CPU (the only thread that may
    /// block).
    pub(crate) fn caller(&self, id: ThreadId) -> Result<u32, Error> {
        let t = self.thread_index(id)?;
        let thread = &self.threads[t];
        if self.cpus[thread.cpu].current == Some(t) && thread.runnable() { Ok(t) } else { Err(Error::NotRunning) }
    }

    /// The deadline of an optional timeout, or `TimedOut` if it has already passed.
    pub(crate) fn wait_deadline(timeout: Option<crate::time::Timeout>, now: Instant) -> Result<Option<Instant>, Error> {
        match timeout.map(|timeout| timeout.deadline(now)) {
            Some(deadline) if deadline <= now => Err(Error::TimedOut),
            deadline => Ok(deadline),
        }
    }

    /// Blocks the running thread `t`: off its run queue, onto the object's wait queue, timeout
    /// armed.
    pub(crate) fn block(&mut self, t: u32, waiting: Waiting, deadline: Option<Instant>) {
        self.unqueue(t);
        let thread = &mut self.threads[t];
        thread.waiting = Some(waiting);
        thread.wake_reason = None;
        let (cpu, timer, rank) = (thread.cpu, thread.timeout_timer, thread.effective.rank());
        if let Some(deadline) = deadline {
            self.cpus[cpu].arm(timer, deadline, None);
            self.retimed.insert(cpu);
        }
        self.with_wait_queue(waiting, |queue, links| queue.insert_by_key(links, t, rank));
    }

    /// Ends the wait of `t`, already removed from the object's wait queue: the timeout is
    /// cancelled and the thread made ready (unless suspended or exited). A round-robin thread that
    /// was switched out while waiting starts a full slice; one woken before it even left the CPU
    /// just continues its turn (its slice timer still matches).
    pub(crate) fn end_wait(&mut self, t: u32, reason: WakeReason) {
        self.end_wait_with(t, reason, TimeoutTimer::MayBeArmed);
    }

    /// [`OobCore::end_wait`], told whether the timeout timer may still be armed: the timeout
    /// path knows its timer just fired (and left the queue), so it skips the cancellation.
    #[inline]
    fn end_wait_with(&mut self, t: u32, reason: WakeReason, timer: TimeoutTimer) {
        let thread = &mut self.threads[t];
        let cpu = thread.cpu;
        let state = &mut self.cpus[cpu];
        if timer == TimeoutTimer::MayBeArmed && state.disarm(thread.timeout_timer) {
            self.retimed.insert(cpu);
        }
        make_ready(thread, t, state, &mut self.links, &mut self.touched, reason);
    }
    /// Takes `t` out of the wait queue it is in and ends its wait with `reason`; for a mutex
    /// wait, the owner's inherited priority is recomputed (PI unwinding).
    pub(crate) fn abort_wait(&mut self, t: u32, reason: WakeReason, now: Instant) {
        let Some(waiting) = self.threads[t].waiting else {
            return;
        };
        self.abort_wait_of(t, waiting, reason, now, TimeoutTimer::MayBeArmed);
    }

    /// [`OobCore::abort_wait`] of `t`, known to be in the wait `waiting`.
    #[inline]
    fn abort_wait_of(&mut self, t: u32, waiting: Waiting, reason: WakeReason, now: Instant, timer: TimeoutTimer) {
        self.with_wait_queue(waiting, |queue, links| queue.remove(links, t));
        self.end_wait_with(t, reason, timer);
        if let Waiting::Mutex(m) = waiting {
            let owner = self.mutexes[m].owner.expect("a mutex with waiters has an owner");
            self.update_priority(owner, now);
        }
    }

    /// Handles the timeout timer of thread `key` firing.
    #[inline]
    pub(crate) fn time_out(&mut self, key: Key, now: Instant) {
        // One lookup: the key's generation check also yields the wait to abort.
        let Some(thread) = self.threads.get_mut(key) else { return };
        match thread.waiting {
            None => {}
            // The timer that fired was the thread's timeout timer, already out of the queue. A
            // sleep has no wait queue to leave and no owner to deboost: end it directly, with
            // the thread at hand (the hot path of every timed wake-up).
            Some(Waiting::Sleep) => {
                let cpu = thread.cpu;
                if let Some(state) = self.cpus.get_mut(cpu) {
                    make_ready(thread, key.index, state, &mut self.links, &mut self.touched, WakeReason::TimedOut);
                }
            }
            Some(waiting) => self.abort_wait_of(key.index, waiting, WakeReason::TimedOut, now, TimeoutTimer::Fired),
        }
    }

    /// Runs `f` on the wait queue `waiting` refers to (nothing for a sleep).
    pub(crate) fn with_wait_queue(&mut self, waiting: Waiting, f: impl FnOnce(&mut List, &mut [Link])) {
        let queue = match waiting {
            Waiting::Mutex(m) => &mut self.mutexes[m].waiters,
            Waiting::Semaphore(s) => &mut self.semaphores[s].waiters,
            Waiting::Flags { group, .. } => &mut self.flags[group].waiters,
            Waiting::Sleep => return,
        };
        f(queue, &mut self.links);
    }

    /// The public description of a wait.
    pub(crate) fn wait_object(&self, waiting: Waiting) -> WaitObject {
        match waiting {
            Waiting::Mutex(m) => WaitObject::Mutex(MutexId(self.mutexes.key(m))),
            Waiting::Semaphore(s) => WaitObject::Semaphore(SemaphoreId(self.semaphores.key(s))),
            Waiting::Flags { group, .. } => WaitObject::Flags(FlagsId(self.flags.key(group))),
            Waiting::Sleep => WaitObject::Sleep,
        }
    }

    /// Takes the reason of the thread's last wake-up (once), for the glue to return from the
    /// blocking call when the thread runs again.
    pub fn take_wake_reason(&mut self, thread: ThreadId) -> Result<Option<WakeReason>, Error> {
        let t = self.thread_index(thread)?;
        Ok(self.threads[t].wake_reason.take())
    }
}

/// The end of the wait of thread `t` (`thread`, of CPU `state`), its timeout timer already
/// dealt with and out of any wait queue: woken with `reason` and made ready (unless suspended or
/// exited). A round-robin thread that was switched out while waiting starts a full slice; one
/// woken before it even left the CPU just continues its turn (its slice timer still matches).
/// Takes the core's parts it touches so that callers holding the thread need no second lookup.
#[inline(always)]
pub(crate) fn make_ready(thread: &mut Thread, t: u32, state: &mut Cpu, links: &mut [Link], touched: &mut CpuMask, reason: WakeReason) {
    thread.waiting = None;
    thread.wake_reason = Some(reason);
    if let Some(slice) = thread.slice.as_mut()
        && state.current != Some(t)
    {
        slice.refill();
    }
    if thread.runnable() {
        // As `OobCore::enqueue`, with the thread and CPU at hand.
        state.rq.enqueue(links, t, &thread.effective, false);
        touched.insert(thread.cpu);
    }
}

/// Whether the timeout timer of a wait that ends may still be armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeoutTimer {
    /// It may be: cancel it.
    MayBeArmed,
    /// It just fired, so it is out of its queue already.
    Fired,
}
