//! User timers on the hardware: what happens when one fires.
//!
//! A timer either wakes the thread waiting for it (like reading an EVL timerfd: the waiter
//! learns how many periods elapsed since its last wait) or runs a callback in the timer
//! interrupt itself, under the scheduler lock, with an [`IrqContext`] to post semaphores and
//! event flags from there.

use oob::{Error, FlagsId, Instant, SemaphoreId, TimerExpiry, TimerHandle};

use super::Glue;

/// An IRQ-context timer callback: the expiry, the time the interrupt was handled, and
/// access to the services an interrupt handler may use. Keep it short: it runs with IRQs
/// masked under the scheduler lock.
pub type TimerCallback = fn(&TimerExpiry, Instant, &mut IrqContext<'_>);

/// What a timer's expiry does.
pub(crate) enum TimerAction {
    /// Count the expirations and wake the waiter (through a semaphore used as a wait queue).
    Wake { semaphore: SemaphoreId },
    /// Run a callback in the interrupt.
    Callback(TimerCallback),
}

/// A user timer's glue-side record.
pub(crate) struct TimerSlot {
    pub(crate) handle: TimerHandle,
    pub(crate) action: TimerAction,
    /// Expirations (periods elapsed, overruns included) not yet consumed by a waiter.
    pub(crate) pending: u64,
    /// The logical deadline of the latest expiry.
    pub(crate) last_deadline: Instant,
}

/// What an IRQ-context callback may do: post to semaphores and event flags.
pub struct IrqContext<'a> {
    glue: &'a mut Glue,
}

impl IrqContext<'_> {
    /// Releases a unit of a semaphore (waking its best waiter).
    pub fn sem_post(&mut self, semaphore: SemaphoreId) -> Result<(), Error> {
        self.glue.core.sem_post(semaphore)
    }

    /// Sets event flags (waking the waiters they satisfy).
    pub fn flags_post(&mut self, flags: FlagsId, bits: u64) -> Result<(), Error> {
        self.glue.core.flags_post(flags, bits)
    }
}

/// Handles one user timer expiry (called by the timer interrupt under the lock).
pub(crate) fn expired(glue: &mut Glue, expiry: &TimerExpiry, now: Instant) {
    let Some(Some(slot)) = glue.timers.get_mut(expiry.token as usize) else { return };
    slot.pending = slot.pending.saturating_add(1 + expiry.overruns);
    slot.last_deadline = expiry.deadline;
    match slot.action {
        TimerAction::Wake { semaphore } => {
            let _ = glue.core.sem_post(semaphore);
        }
        TimerAction::Callback(callback) => {
            slot.pending = 0;
            callback(expiry, now, &mut IrqContext { glue });
        }
    }
}
