//! Picking, switching, CPU time accounting and timer interrupts.
//!
//! The running thread stays queued at the head of its level (as in Linux's RT class), so picking
//! is a pure O(1) look at the queues, a preempted thread keeps its turn, and a round-robin
//! rotation is "move to the tail". `pick_next` decides; `switched` records that the glue
//! actually switched, which is when the current context changes and switches are counted.
//!
//! CPU time is charged incrementally: every entry point that depends on budgets first charges
//! the current context of the CPU up to `now` (`last_charge`..`now`), to its statistics, its
//! round-robin slice and its quota group. The sum is the same as charging `now - last_switch`
//! at each switch, but budgets are exact at any instant.

use super::{Cpu, OobCore};
use super::timers::{TimerEvent, TimerExpiry, TimerHandle};
use crate::effects::{CpuMask, EffectMasks};
use crate::error::Error;
use crate::sched::{Runnable, SchedParams};
use crate::sync::{WakeReason, Waiting, make_ready};
use crate::arena::Arena;
use crate::list::Link;
use crate::thread::{Lifecycle, Thread, ThreadId};
use crate::time::{Duration, Instant};
use crate::timer::Expiry;

/// A context switch the core recorded for a CPU, named the way the glue switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchTo {
    /// To the in-band stage.
    InBand,
    /// To a thread, by the token the glue gave it ([`OobCore::set_glue_token`]).
    Thread(usize),
}

/// What [`OobCore::on_timer_tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerTick {
    /// User timers fired ([`OobCore::fired_timers`]): the glue runs them, then reschedules
    /// and drains the effects as after [`OobCore::on_timer`].
    UserTimers,
    /// No user timer fired: the CPU was rescheduled and the effects drained.
    Rescheduled {
        /// The context the CPU switches to, `None` if it keeps its current one.
        switch: Option<SwitchTo>,
        /// The effects, as [`OobCore::effect_masks_for`] returns them.
        masks: EffectMasks,
        /// The CPU's new hardware deadline when `masks.reprogram` contains it.
        deadline: Option<Instant>,
    },
}

/// What the glue does with the results of a timer tick that rescheduled its CPU
/// ([`OobCore::on_timer_tick_with`]): a trait rather than a closure so that its one method is
/// inlined (`#[inline(always)]`) into each of the tick's exits.
pub trait TickRescheduled {
    /// What the tick returns.
    type Output;
    /// Takes the switch `cpu` makes (`None`: it keeps its context), the effects, and the new
    /// hardware deadline of the CPU (meaningful when `masks.reprogram` contains it).
    fn rescheduled(self, switch: Option<SwitchTo>, masks: EffectMasks, deadline: Option<Instant>) -> Self::Output;
}

/// [`TickRescheduled`] building [`TimerTick::Rescheduled`], for [`OobCore::on_timer_tick`].
struct AsTimerTick;

impl TickRescheduled for AsTimerTick {
    type Output = TimerTick;
    #[inline(always)]
    fn rescheduled(self, switch: Option<SwitchTo>, masks: EffectMasks, deadline: Option<Instant>) -> TimerTick {
        TimerTick::Rescheduled { switch, masks, deadline }
    }
}

/// What [`end_due_sleep`] found first in a CPU's timer queue.
enum FirstDue {
    /// No timer is due.
    Nothing,
    /// A sleep's timeout, now ended: look again.
    SleepEnded,
    /// Another expiry, left in the queue for the general path.
    Other,
}

/// The hot case of a timer interrupt of `cpu` (its `state`, the core's threads, links and
/// touched CPUs): if the first timer due at `now` is the one-shot timeout of a sleep of a
/// thread of `cpu`, takes it out of the queue, as `pop_expired` would, and makes the thread
/// ready — a sleep has no wait queue to leave and no owner to deboost — with the CPU and the
/// thread each looked up once; any other expiry needs the whole core.
#[inline(always)]
fn end_due_sleep(
    state: &mut Cpu,
    threads: &mut Arena<Thread>,
    links: &mut [Link],
    touched: &mut CpuMask,
    cpu: usize,
    now: Instant,
) -> FirstDue {
    let Some((event, periodic)) = state.timers.first_due(now) else { return FirstDue::Nothing };
    if !periodic
        && let TimerEvent::Timeout(key) = event
        && let Some(thread) = threads.get_mut(key)
        && matches!(thread.waiting, Some(Waiting::Sleep))
        && thread.cpu == cpu
    {
        state.timers.drop_first();
        make_ready(thread, key.index, state, links, touched, WakeReason::TimedOut);
        return FirstDue::SleepEnded;
    }
    FirstDue::Other
}

impl OobCore {
    /// Charges CPU time up to `now`, then returns the context `cpu` should run. The glue calls
    /// [`OobCore::switched`] if it differs from [`OobCore::current`].
    pub fn pick_next(&mut self, cpu: usize, now: Instant) -> Result<Runnable, Error> {
        let cpu = self.cpu_index(cpu)?;
        self.charge(cpu, now);
        Ok(self.runnable(self.cpus[cpu].rq.pick()))
    }

    /// Records that `cpu` switched from `from` (its current context) to `to` (a runnable thread
    /// of that CPU or the in-band stage) at `now`: `from` is charged its CPU time, `to` counts a
    /// switch, and the slice or quota limit timer of `to` is armed. `from == to` is a no-op.
    pub fn switched(&mut self, cpu: usize, from: Runnable, to: Runnable, now: Instant) -> Result<(), Error> {
        let cpu = self.cpu_index(cpu)?;
        let previous = self.cpus[cpu].current;
        if from != self.runnable(previous) {
            return Err(Error::NotCurrent);
        }
        let next = match to {
            Runnable::InBand => None,
            Runnable::Oob(id) => {
                let t = self.thread_index(id)?;
                let thread = &self.threads[t];
                if thread.cpu != cpu || !thread.runnable() {
                    return Err(Error::NotRunnable);
                }
                Some(t)
            }
        };
        if next == previous {
            return Ok(());
        }
        self.charge(cpu, now);
        self.switch_to(cpu, previous, next, now);
        Ok(())
    }

    /// [`OobCore::pick_next`] and [`OobCore::switched`] in one step, for a glue that switches
    /// to whatever the core chose: charges CPU time up to `now` and, if the best runnable
    /// context of `cpu` is not its current one, records the switch to it and returns it
    /// (`None`: `cpu` keeps its current context).
    pub fn reschedule(&mut self, cpu: usize, now: Instant) -> Result<Option<Runnable>, Error> {
        let cpu = self.cpu_index(cpu)?;
        self.charge(cpu, now);
        Ok(self.switch_to_best(cpu, now).map(|(next, _)| self.runnable(next)))
    }

    /// [`OobCore::reschedule`], naming the new context the way the glue switches to it: a
    /// thread by its glue token ([`OobCore::set_glue_token`]), with no thread id to look up.
    #[inline]
    pub fn reschedule_to(&mut self, cpu: usize, now: Instant) -> Result<Option<SwitchTo>, Error> {
        let cpu = self.cpu_index(cpu)?;
        self.charge(cpu, now);
        Ok(self.switch_to_best(cpu, now).map(|(_, to)| to))
    }

    /// The rest of a reschedule of the valid CPU `cpu`, charged up to `now` already: switches
    /// to its best runnable context if that is not the current one, and returns it then, as a
    /// thread index (`None`: the in-band stage) and named the way the glue switches to it.
    #[inline]
    fn switch_to_best(&mut self, cpu: usize, now: Instant) -> Option<(Option<u32>, SwitchTo)> {
        // `OobCore::switch_to` with the CPU and the next thread each looked up once (the hot
        // path of every wake-up).
        let state = &mut self.cpus[cpu];
        let (previous, next) = (state.current, state.rq.pick());
        let switched = next != previous;
        if !switched {
            // `cpu` runs its best runnable context, which is all `touched` would make
            // `effects` check for it.
            self.touched.remove(cpu);
            return None;
        }
        state.current = next;
        // The thread's glue token is read here, with the thread at hand.
        let (may_have_budget, to) = match next {
            Some(t) => {
                let thread = &mut self.threads[t];
                thread.stats.switches += 1;
                (thread.may_have_budget(), SwitchTo::Thread(thread.glue_token))
            }
            None => {
                state.inband.switches += 1;
                (false, SwitchTo::InBand)
            }
        };
        let budget_timers_armed = state.budget_timers_armed;
        if let Some(t) = previous {
            self.reclaim_if_exited(t);
        }
        // `OobCore::arm_budget_timers`, its early exit checked with what is at hand.
        if may_have_budget || budget_timers_armed {
            self.rearm_budget_timers(cpu, now);
        }
        // `cpu` now runs its best runnable context, which is all `touched` would make
        // `effects` check for it: no reschedule to report, no need to pick again there.
        self.touched.remove(cpu);
        Some((next, to))
    }

    /// Makes `next` (a runnable thread of `cpu` or the in-band stage) the current context of
    /// `cpu` instead of `previous`, charged up to `now`.
    fn switch_to(&mut self, cpu: usize, previous: Option<u32>, next: Option<u32>, now: Instant) {
        self.cpus[cpu].current = next;
        self.touched.insert(cpu);
        if let Some(t) = previous {
            self.reclaim_if_exited(t);
        }
        match next {
            Some(t) => self.threads[t].stats.switches += 1,
            None => self.cpus[cpu].inband.switches += 1,
        }
        self.arm_budget_timers(cpu, now);
    }

    /// Handles the hardware timer interrupt of `cpu`: fires every timer due at `now` (thread
    /// timeouts, round-robin slices, quota limits and refills, TP windows) and returns the user
    /// timers that fired, for the glue to run their callbacks.
    pub fn on_timer(&mut self, cpu: usize, now: Instant) -> Result<&[TimerExpiry], Error> {
        let cpu = self.cpu_index(cpu)?;
        self.fire_due(cpu, now);
        Ok(&self.fired)
    }

    /// The whole timer interrupt of `cpu` in one call when no user timer fires (the common
    /// case: a thread's timeout or a budget timer): [`OobCore::on_timer`], then
    /// [`OobCore::reschedule_to`] and [`OobCore::effect_masks_for`], with one CPU check and
    /// one charge. When user timers fired, only [`OobCore::on_timer`] was done: the glue runs
    /// them ([`OobCore::fired_timers`]), then reschedules and drains the effects itself.
    pub fn on_timer_tick(&mut self, cpu: usize, now: Instant) -> Result<TimerTick, Error> {
        Ok(self.on_timer_tick_with(cpu, now, AsTimerTick)?.unwrap_or(TimerTick::UserTimers))
    }

    /// [`OobCore::on_timer_tick`] handing what [`TimerTick::Rescheduled`] holds (the switch,
    /// the effects, the new deadline) to `rescheduled` ([`TickRescheduled`]) and returning its
    /// result; `None` when user timers fired instead. For the glue's interrupt handler: the hot case passes its
    /// results in registers, with no enum built and matched in memory.
    ///
    /// The hottest case — only sleeps of threads of `cpu` end, the switch needs no budget
    /// timer and reclaims nothing, and no other CPU has effects pending — runs with the CPU's
    /// state looked up once; anything else continues on the general path
    /// ([`OobCore::tick_general`]) from where it stands.
    #[inline]
    pub fn on_timer_tick_with<R: TickRescheduled>(
        &mut self,
        cpu: usize,
        now: Instant,
        rescheduled: R,
    ) -> Result<Option<R::Output>, Error> {
        let cpu = self.cpu_index(cpu)?;
        self.fired.clear();
        let Self { cpus, threads, links, touched, retimed, .. } = self;
        let state = &mut cpus[cpu];
        // `charge`, with the state at hand when no budget is charged: the in-band stage, or a
        // thread with neither a slice nor a quota group (the rest as `charge_elapsed` does it).
        let elapsed = now.saturating_duration_since(state.last_charge);
        if !elapsed.is_zero() {
            match state.current {
                None => state.inband.cpu_time += elapsed,
                Some(t) if !threads[t].may_have_budget() => threads[t].stats.cpu_time += elapsed,
                Some(_) => {
                    self.charge_elapsed(cpu, now, elapsed);
                    return Ok(self.tick_general(cpu, now, rescheduled));
                }
            }
            state.last_charge = now;
        }
        // The timer fired: this CPU's hardware timer is reprogrammed (or disarmed) whatever
        // the new deadline.
        state.reported_deadline = None;
        loop {
            match end_due_sleep(state, threads, links, touched, cpu, now) {
                FirstDue::Nothing => break,
                FirstDue::SleepEnded => {}
                FirstDue::Other => return Ok(self.tick_general(cpu, now, rescheduled)),
            }
        }
        // `switch_to_best` without its rare cases (budget timers, an exited thread to reclaim).
        let (previous, next) = (state.current, state.rq.pick());
        let mut switch = None;
        if next != previous {
            if state.budget_timers_armed || previous.is_some_and(|t| threads[t].lifecycle == Lifecycle::Exited) {
                return Ok(self.tick_general(cpu, now, rescheduled));
            }
            match next {
                Some(t) => {
                    let thread = &mut threads[t];
                    if thread.may_have_budget() {
                        return Ok(self.tick_general(cpu, now, rescheduled));
                    }
                    thread.stats.switches += 1;
                    switch = Some(SwitchTo::Thread(thread.glue_token));
                }
                None => {
                    state.inband.switches += 1;
                    switch = Some(SwitchTo::InBand);
                }
            }
            state.current = next;
        }
        // `cpu` runs its best runnable context: nothing left for `effects` to check there.
        touched.remove(cpu);
        if !touched.is_empty() || !(retimed.is_empty() || *retimed == CpuMask::only(cpu)) {
            // Other CPUs' changes wait to be drained: the general drain, this CPU included.
            retimed.insert(cpu);
            let (masks, deadline) = self.drain_effect_masks(cpu);
            return Ok(Some(rescheduled.rescheduled(switch, masks, deadline)));
        }
        // `drain_effect_masks` of this CPU alone, which always reprograms after a tick.
        *retimed = CpuMask::EMPTY;
        let deadline = state.timers.hardware_deadline();
        state.reported_deadline = Some(deadline);
        #[cfg(test)]
        self.check_unretimed_deadlines();
        let masks = EffectMasks { resched: CpuMask::EMPTY, reprogram: CpuMask::only(cpu) };
        Ok(Some(rescheduled.rescheduled(switch, masks, deadline)))
    }

    /// [`OobCore::on_timer_tick_with`] of the valid CPU `cpu`, charged up to `now`, from
    /// wherever its hot case stopped (out of line: the rare case): fires whatever else is due,
    /// then reschedules and drains the effects in general.
    #[inline(never)]
    fn tick_general<R: TickRescheduled>(
        &mut self,
        cpu: usize,
        now: Instant,
        rescheduled: R,
    ) -> Option<R::Output> {
        self.fire_due(cpu, now);
        if !self.fired.is_empty() {
            return None;
        }
        // Charged up to `now` by `fire_due` already: what `reschedule_to` would do beyond that.
        let switch = self.switch_to_best(cpu, now).map(|(_, to)| to);
        let (masks, deadline) = self.drain_effect_masks(cpu);
        Some(rescheduled.rescheduled(switch, masks, deadline))
    }

    /// [`OobCore::on_timer`] of the valid CPU `cpu`, the user timers that fired left in
    /// `fired`.
    #[inline]
    fn fire_due(&mut self, cpu: usize, now: Instant) {
        self.charge(cpu, now);
        self.fired.clear();
        self.retimed.insert(cpu);
        loop {
            // The hot case, the end of a timed-out sleep of a thread of this CPU, is handled
            // here with the CPU looked up once and the thread once; any other expiry goes to
            // `fire_first`, which needs the whole core.
            let Self { cpus, threads, links, touched, .. } = self;
            let Some(state) = cpus.get_mut(cpu) else { return };
            state.reported_deadline = None;
            loop {
                match end_due_sleep(state, threads, links, touched, cpu, now) {
                    FirstDue::Nothing => return,
                    FirstDue::SleepEnded => {}
                    FirstDue::Other => break,
                }
            }
            self.fire_first(cpu, now);
        }
    }

    /// Pops the timer of `cpu` that is due at `now` and fires it (out of line: the expiries
    /// other than a sleep's end are the rare case on the hot path).
    #[inline(never)]
    fn fire_first(&mut self, cpu: usize, now: Instant) {
        if let Some(expiry) = self.cpus[cpu].timers.pop_expired(now) {
            self.fire(cpu, expiry, now);
        }
    }

    /// Runs what the expiry of one of the timers of `cpu` does.
    #[inline]
    fn fire(&mut self, cpu: usize, expiry: Expiry<TimerEvent>, now: Instant) {
        match expiry.payload {
            TimerEvent::Timeout(thread) => self.time_out(thread, now),
            TimerEvent::Slice => self.slice_expired(cpu, now),
            TimerEvent::QuotaLimit => self.quota_limit_reached(cpu, now),
            TimerEvent::QuotaRefill => self.quota_refill(cpu, now),
            TimerEvent::TpWindow => self.tp_window_ended(cpu, expiry.deadline.max(now)),
            TimerEvent::User(token) => self.fired.push(TimerExpiry {
                timer: TimerHandle { cpu: cpu as u8, id: expiry.id },
                token,
                deadline: expiry.deadline,
                overruns: expiry.overruns,
            }),
        }
    }

    /// The user timers fired by the last [`OobCore::on_timer`] (the same slice it returned), so
    /// the glue can walk them by index while calling other entry points in between.
    pub fn fired_timers(&self) -> &[TimerExpiry] {
        &self.fired
    }

    /// Charges the current context of `cpu` up to `now`: statistics, RR slice, quota budget.
    /// Inline for the frequent case of nothing to charge (already charged at `now`).
    #[inline]
    pub(crate) fn charge(&mut self, cpu: usize, now: Instant) {
        let state = &mut self.cpus[cpu];
        let elapsed = now.saturating_duration_since(state.last_charge);
        if elapsed.is_zero() {
            return;
        }
        if state.current.is_none() {
            // The in-band stage has no budget: statistics only.
            state.last_charge = now;
            state.inband.cpu_time += elapsed;
            return;
        }
        self.charge_elapsed(cpu, now, elapsed);
    }

    /// [`OobCore::charge`] of a non-zero `elapsed` time, ending at `now`.
    #[inline(never)]
    fn charge_elapsed(&mut self, cpu: usize, now: Instant, elapsed: Duration) {
        let state = &mut self.cpus[cpu];
        state.last_charge = now;
        let Some(t) = state.current else {
            state.inband.cpu_time += elapsed;
            return;
        };
        let thread = &mut self.threads[t];
        thread.stats.cpu_time += elapsed;
        if let Some(group) = thread.quota_group()
            && self.cpus[cpu].rq.quota.charge(group, elapsed)
        {
            self.exhaust_quota(cpu, group, now);
        }
        let thread = &mut self.threads[t];
        let applies = thread.runnable() && thread.slice_applies();
        if applies && thread.slice.as_mut().is_some_and(|slice| slice.charge(elapsed)) {
            self.rotate(t, now);
        }
    }

    /// Re-queues `t` with new effective parameters (a boost or its end), in its run queue or in
    /// the wait queue it is in. The current thread is charged first, under its old parameters,
    /// and keeps its turn within its new level.
    pub(crate) fn set_effective(&mut self, t: u32, params: SchedParams, now: Instant) {
        let cpu = self.threads[t].cpu;
        let current = self.is_current(t);
        if current {
            self.charge(cpu, now);
        }
        let thread = &mut self.threads[t];
        let old = core::mem::replace(&mut thread.effective, params);
        if thread.runnable() {
            self.cpus[cpu].rq.dequeue(&mut self.links, t, old);
            self.cpus[cpu].rq.enqueue(&mut self.links, t, &params, current);
            self.touched.insert(cpu);
        } else if let Some(waiting) = thread.waiting {
            self.with_wait_queue(waiting, |queue, links| {
                queue.remove(links, t);
                queue.insert_by_key(links, t, params.rank());
            });
        }
        if current {
            self.arm_budget_timers(cpu, now);
        }
    }

    /// Arms the slice timer (RR) or quota limit timer (quota) for what is left to the current
    /// thread of `cpu`, and stops the other.
    /// Inline for the common case, checked with the fewest loads: both timers stopped and a
    /// current context that cannot have a budget (a FIFO thread, the in-band stage).
    #[inline]
    pub(crate) fn arm_budget_timers(&mut self, cpu: usize, now: Instant) {
        let state = &self.cpus[cpu];
        if !state.budget_timers_armed && state.current.is_none_or(|t| !self.threads[t].may_have_budget()) {
            return;
        }
        self.rearm_budget_timers(cpu, now);
    }

    /// [`OobCore::arm_budget_timers`] beyond its early exit.
    #[inline(never)]
    fn rearm_budget_timers(&mut self, cpu: usize, now: Instant) {
        let state = &mut self.cpus[cpu];
        let (mut slice_end, mut quota_end) = (None, None);
        if let Some(t) = state.current {
            let thread = &self.threads[t];
            if thread.runnable() {
                if thread.slice_applies() {
                    slice_end = thread.slice.map(|slice| now + slice.left());
                }
                if let Some(group) = thread.quota_group() {
                    let left = state.rq.quota.left(group);
                    quota_end = (!left.is_zero()).then(|| now + left);
                }
            }
        }
        let armed = slice_end.is_some() || quota_end.is_some();
        if !armed && !state.budget_timers_armed {
            // Both already stopped (the common case of FIFO threads and the in-band stage).
            return;
        }
        state.budget_timers_armed = armed;
        for (timer, end) in [(state.slice_timer, slice_end), (state.quota_limit_timer, quota_end)] {
            match end {
                Some(end) => state.arm(timer, end, None),
                None => {
                    state.disarm(timer);
                }
            }
        }
        self.retimed.insert(cpu);
    }

    /// The turn of `t` is over (slice used up, or yield): to the tail of its level, with a full
    /// slice if it is a round-robin thread.
    fn rotate(&mut self, t: u32, now: Instant) {
        let thread = &mut self.threads[t];
        if let Some(slice) = thread.slice.as_mut() {
            slice.refill();
        }
        let (cpu, params) = (thread.cpu, thread.effective);
        let rq = &mut self.cpus[cpu].rq;
        rq.dequeue(&mut self.links, t, params);
        rq.enqueue(&mut self.links, t, &params, false);
        self.touched.insert(cpu);
        if self.is_current(t) {
            self.arm_budget_timers(cpu, now);
        }
    }

    /// Moves the running thread `t` to the tail of its level (a voluntary end of its turn).
    pub fn yield_now(&mut self, thread: ThreadId, now: Instant) -> Result<(), Error> {
        let t = self.caller(thread)?;
        self.charge(self.threads[t].cpu, now);
        self.rotate(t, now);
        Ok(())
    }

    fn slice_expired(&mut self, cpu: usize, now: Instant) {
        if let Some(t) = self.cpus[cpu].current
            && self.threads[t].runnable()
            && self.threads[t].slice_applies()
        {
            self.rotate(t, now);
        }
    }

    fn quota_limit_reached(&mut self, cpu: usize, now: Instant) {
        if let Some(group) = self.cpus[cpu].current.and_then(|t| self.threads[t].quota_group()) {
            self.exhaust_quota(cpu, group, now);
        }
    }

    /// Ends the budget of quota group `group` of `cpu` for this period.
    pub(crate) fn exhaust_quota(&mut self, cpu: usize, group: u32, now: Instant) {
        let threads = &self.threads;
        self.cpus[cpu].rq.quota.exhaust(&mut self.links, group, |t| threads[t].quota_group().unwrap_or(u32::MAX));
        self.touched.insert(cpu);
        self.arm_budget_timers(cpu, now);
    }

    /// Starts a quota period on `cpu`: budgets refilled, parked threads back.
    pub(crate) fn quota_refill(&mut self, cpu: usize, now: Instant) {
        self.cpus[cpu].rq.quota.refill(&mut self.links);
        self.touched.insert(cpu);
        self.arm_budget_timers(cpu, now);
    }

    /// Activates the TP window of `cpu` containing `position` and arms the timer for its end.
    fn tp_window_ended(&mut self, cpu: usize, position: Instant) {
        let state = &mut self.cpus[cpu];
        if let Some(end) = state.rq.tp.advance(position) {
            state.arm(state.tp_timer, end, None);
            self.touched.insert(cpu);
            self.retimed.insert(cpu);
        }
    }
}
