//! User timers (one-shot or periodic, reported to the glue with overrun counts) and the timer
//! gravity shared by all CPUs.

use super::OobCore;
use crate::arena::Key;
use crate::effects::CpuMask;
use crate::error::Error;
use crate::time::{Duration, Instant};
use crate::timer::{Gravity, TimerContext, TimerId};

/// What a timer of a CPU's queue is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEvent {
    /// The timeout of the wait of this thread.
    Timeout(Key),
    /// End of the round-robin slice of the current thread.
    Slice,
    /// End of the budget of the current thread's quota group.
    QuotaLimit,
    /// Start of a quota period.
    QuotaRefill,
    /// End of the active TP window.
    TpWindow,
    /// A user timer, with the glue's token.
    User(u64),
}

/// Identifies a user timer (which fires on one CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    pub(crate) cpu: u8,
    pub(crate) id: TimerId,
}

impl TimerHandle {
    /// The CPU whose timer queue holds the timer.
    pub const fn cpu(self) -> usize {
        self.cpu as usize
    }
}

/// A user timer that fired, returned by [`OobCore::on_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerExpiry {
    /// The timer.
    pub timer: TimerHandle,
    /// The token given at creation (e.g. what callback to run or whom to wake).
    pub token: u64,
    /// The logical deadline that fired.
    pub deadline: Instant,
    /// Periods missed because the expiry was late (0 when on time).
    pub overruns: u64,
}

impl OobCore {
    /// Creates a stopped user timer firing on `cpu`, reported with `token`. Allocates.
    pub fn timer_create(&mut self, cpu: usize, context: TimerContext, token: u64) -> Result<TimerHandle, Error> {
        let cpu = self.cpu_index(cpu)?;
        let id = self.cpus[cpu].timers.create(TimerEvent::User(token), context);
        self.user_timers += 1;
        // `on_timer` reports at most every user timer once: make room now.
        self.fired.reserve(self.user_timers.saturating_sub(self.fired.len()));
        Ok(TimerHandle { cpu: cpu as u8, id })
    }

    /// Arms a user timer for `first`, then every `period` (no drift, overruns counted) if given.
    pub fn timer_start(&mut self, timer: TimerHandle, first: Instant, period: Option<Duration>) -> Result<(), Error> {
        self.user_timer_queue(timer)?.start(timer.id, first, period)?;
        self.retimed.insert(timer.cpu());
        Ok(())
    }

    /// Disarms a user timer; returns whether it was armed.
    pub fn timer_stop(&mut self, timer: TimerHandle) -> Result<bool, Error> {
        let was_armed = self.user_timer_queue(timer)?.stop(timer.id)?;
        self.retimed.insert(timer.cpu());
        Ok(was_armed)
    }

    /// Deletes a user timer.
    pub fn timer_destroy(&mut self, timer: TimerHandle) -> Result<(), Error> {
        self.user_timer_queue(timer)?.destroy(timer.id)?;
        self.retimed.insert(timer.cpu());
        self.user_timers -= 1;
        Ok(())
    }

    /// The anticipation applied to hardware timer deadlines, per context.
    pub fn gravity(&self) -> Gravity {
        self.cpus[0].timers.gravity()
    }

    /// Sets the anticipation on every CPU (a calibration-time call: re-keys armed timers).
    pub fn set_gravity(&mut self, gravity: Gravity) {
        for cpu in &mut self.cpus {
            cpu.timers.set_gravity(gravity);
        }
        self.retimed = CpuMask::below(self.cpus.len());
    }

    fn user_timer_queue(&mut self, timer: TimerHandle) -> Result<&mut crate::timer::TimerQueue<TimerEvent>, Error> {
        let queue = &mut self.cpus.get_mut(timer.cpu()).ok_or(Error::StaleTimer)?.timers;
        match queue.payload(timer.id)? {
            TimerEvent::User(_) => Ok(queue),
            _ => Err(Error::StaleTimer),
        }
    }
}
