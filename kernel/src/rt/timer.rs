//! Timers for oob code: [`Timer`] wakes a waiting thread, [`IrqTimer`] runs a callback in the
//! timer interrupt.

use oob::{Duration, Error, Instant, TimerContext};

use crate::sched::timers::{TimerAction, TimerCallback, TimerSlot};
use crate::sched::{self, Glue, Waited, with_core};

/// Registers a user timer of `cpu` with `action`; returns its token.
fn create(cpu: usize, context: TimerContext, action: impl FnOnce(&mut Glue) -> TimerAction) -> Result<usize, Error> {
    with_core(|glue, _| {
        let token = glue.timers.iter().position(Option::is_none).unwrap_or(glue.timers.len());
        let handle = glue.core.timer_create(cpu, context, token as u64)?;
        let slot = TimerSlot { handle, action: action(glue), pending: 0, last_deadline: Instant::ZERO };
        if token == glue.timers.len() {
            glue.timers.push(Some(slot));
        } else {
            glue.timers[token] = Some(slot);
        }
        Ok(token)
    })
}

fn slot(glue: &mut Glue, token: usize) -> Result<&mut TimerSlot, Error> {
    glue.timers.get_mut(token).and_then(Option::as_mut).ok_or(Error::StaleTimer)
}

fn start(token: usize, first: Instant, period: Option<Duration>) -> Result<(), Error> {
    with_core(|glue, _| {
        let slot = slot(glue, token)?;
        slot.pending = 0;
        let handle = slot.handle;
        glue.core.timer_start(handle, first, period)
    })
}

fn stop(token: usize) -> Result<bool, Error> {
    with_core(|glue, _| {
        let handle = slot(glue, token)?.handle;
        glue.core.timer_stop(handle)
    })
}

fn destroy(token: usize) {
    let _ = with_core(|glue, _| {
        let Some(slot) = glue.timers.get_mut(token).and_then(Option::take) else { return Ok(()) };
        if let TimerAction::Wake { semaphore } = slot.action {
            glue.core.sem_destroy(semaphore)?;
        }
        glue.core.timer_destroy(slot.handle)
    });
}

/// A one-shot or periodic timer a thread waits on, like reading an EVL timerfd.
#[derive(Debug)]
pub struct Timer {
    token: usize,
}

impl Timer {
    /// A stopped timer firing on `cpu` (where the waiting thread runs, normally).
    pub fn new(cpu: usize) -> Result<Self, Error> {
        let token = create(cpu, TimerContext::User, |glue| TimerAction::Wake { semaphore: glue.core.sem_create(0) })?;
        Ok(Self { token })
    }

    /// Arms the timer for `first`, then every `period` if given (no drift).
    pub fn start(&self, first: Instant, period: Option<Duration>) -> Result<(), Error> {
        start(self.token, first, period)
    }

    /// Disarms the timer; returns whether it was armed.
    pub fn stop(&self) -> Result<bool, Error> {
        stop(self.token)
    }

    /// Waits for the next expiry. Returns the number of expirations since the previous wait
    /// (1 when on time; more when periods were missed) and the logical date of the latest.
    pub fn wait(&self) -> Result<(u64, Instant), Error> {
        let token = self.token;
        let semaphore = with_core(|glue, _| match slot(glue, token)?.action {
            TimerAction::Wake { semaphore } => Ok(semaphore),
            TimerAction::Callback(_) => Err(Error::StaleTimer),
        })?;
        match sched::wait(|glue, me, now| glue.core.sem_wait(me, semaphore, None, now))? {
            Waited::Done(()) | Waited::Woken(oob::WakeReason::Granted) => {}
            Waited::Woken(_) => return Err(Error::StaleTimer),
        }
        let me = sched::current_thread();
        let woke = sched::clock::now();
        with_core(|glue, _| {
            // Units posted while nobody waited are included in `pending`: drop them.
            while glue.core.sem_try_wait(semaphore).is_ok() {}
            let slot = slot(glue, token)?;
            let expirations = core::mem::take(&mut slot.pending).max(1);
            let deadline = slot.last_deadline;
            if let Some(me) = me {
                glue.core.report_latency(me, woke.saturating_duration_since(deadline))?;
            }
            Ok((expirations, deadline))
        })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        destroy(self.token);
    }
}

/// A timer whose expiry runs a callback in the timer interrupt of its CPU.
#[derive(Debug)]
pub struct IrqTimer {
    token: usize,
}

impl IrqTimer {
    /// A stopped timer on `cpu` running `callback` on expiry (IRQ-context gravity).
    pub fn new(cpu: usize, callback: TimerCallback) -> Result<Self, Error> {
        let token = create(cpu, TimerContext::Irq, |_| TimerAction::Callback(callback))?;
        Ok(Self { token })
    }

    /// Arms the timer for `first`, then every `period` if given (no drift).
    pub fn start(&self, first: Instant, period: Option<Duration>) -> Result<(), Error> {
        start(self.token, first, period)
    }

    /// Disarms the timer; returns whether it was armed.
    pub fn stop(&self) -> Result<bool, Error> {
        stop(self.token)
    }
}

impl Drop for IrqTimer {
    fn drop(&mut self) {
        destroy(self.token);
    }
}
