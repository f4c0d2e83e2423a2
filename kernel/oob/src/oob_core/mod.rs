//! [`OobCore`]: the whole oob scheduler state of the system, and the entry points the glue calls.
//!
//! The glue keeps one `OobCore` under one lock (like Xenomai's nklock), calls an entry point
//! with the current time, then drains [`OobCore::effects`] and applies them. The entry points
//! are spread over the modules of their concern: thread lifecycle ([`threads`]), scheduling and
//! timer interrupts ([`schedule`]), class configuration ([`classes`]), user timers ([`timers`]),
//! and the synchronization objects in [`crate::sync`].

pub mod classes;
pub mod schedule;
pub mod threads;
pub mod timers;

#[cfg(test)]
pub(crate) mod invariants;

use alloc::vec::Vec;

use crate::MAX_CPUS;
use crate::arena::Arena;
use crate::effects::{CpuMask, EffectMasks, Effects};
use crate::error::Error;
use crate::list::Link;
use crate::sched::{RunQueue, Runnable};
use crate::sync::flags::EventFlags;
use crate::sync::mutex::Mutex;
use crate::sync::semaphore::Semaphore;
use crate::thread::{Lifecycle, Thread, ThreadId, ThreadStats};
use crate::time::{Duration, Instant};
use crate::timer::{TimerContext, TimerId, TimerQueue};
use timers::{TimerEvent, TimerExpiry};

/// Scheduler state of one CPU.
pub(crate) struct Cpu {
    pub(crate) rq: RunQueue,
    pub(crate) timers: TimerQueue<TimerEvent>,
    /// The context the CPU runs: a thread index, or `None` for the in-band stage.
    pub(crate) current: Option<u32>,
    /// Up to when the current context's CPU time has been charged.
    pub(crate) last_charge: Instant,
    pub(crate) inband: ThreadStats,
    pub(crate) slice_timer: TimerId,
    pub(crate) quota_limit_timer: TimerId,
    pub(crate) quota_refill_timer: TimerId,
    pub(crate) tp_timer: TimerId,
    /// The hardware deadline last reported in [`Effects`]; `None`: must be reported.
    pub(crate) reported_deadline: Option<Option<Instant>>,
    /// Whether the slice or quota limit timer may be armed (false: both are stopped).
    pub(crate) budget_timers_armed: bool,
}

/// The core's own timers (per CPU, or one per thread) exist as long as what they serve, so
/// operations on them cannot fail.
const OWN_TIMER: &str = "the core's own timers live as long as their CPU or thread";

impl Cpu {
    /// Arms one of the core's own timers.
    pub(crate) fn arm(&mut self, timer: TimerId, deadline: Instant, period: Option<Duration>) {
        self.timers.start(timer, deadline, period).expect(OWN_TIMER);
    }

    /// Disarms one of the core's own timers; returns whether it was armed.
    pub(crate) fn disarm(&mut self, timer: TimerId) -> bool {
        self.timers.stop(timer).expect(OWN_TIMER)
    }

    /// The deadline of one of the core's own timers, `None` if stopped.
    pub(crate) fn armed_deadline(&self, timer: TimerId) -> Option<Instant> {
        self.timers.deadline(timer).expect(OWN_TIMER)
    }

    /// Deletes a thread's timer.
    pub(crate) fn destroy_timer(&mut self, timer: TimerId) {
        self.timers.destroy(timer).expect(OWN_TIMER);
    }

    fn new() -> Self {
        let mut timers = TimerQueue::new();
        Self {
            rq: RunQueue::new(),
            slice_timer: timers.create(TimerEvent::Slice, TimerContext::Irq),
            quota_limit_timer: timers.create(TimerEvent::QuotaLimit, TimerContext::Irq),
            quota_refill_timer: timers.create(TimerEvent::QuotaRefill, TimerContext::Irq),
            tp_timer: timers.create(TimerEvent::TpWindow, TimerContext::Irq),
            timers,
            current: None,
            last_charge: Instant::ZERO,
            inband: ThreadStats::default(),
            reported_deadline: None,
            budget_timers_armed: false,
        }
    }
}

/// The out-of-band scheduler of the whole system (see the [crate documentation](crate)).
pub struct OobCore {
    pub(crate) cpus: Vec<Cpu>,
    pub(crate) threads: Arena<Thread>,
    /// Queue links of the threads, indexed like `threads`.
    pub(crate) links: Vec<Link>,
    pub(crate) mutexes: Arena<Mutex>,
    /// Links of the per-owner lists of held mutexes, indexed like `mutexes`.
    pub(crate) mutex_links: Vec<Link>,
    pub(crate) semaphores: Arena<Semaphore>,
    pub(crate) flags: Arena<EventFlags>,
    /// Buffer for the user timers fired by one `on_timer`, with room for all of them.
    pub(crate) fired: Vec<TimerExpiry>,
    pub(crate) user_timers: usize,
    /// CPUs whose run queue or current context changed since the last [`OobCore::effects`].
    pub(crate) touched: CpuMask,
    /// CPUs whose timer queue changed (a timer armed, stopped, fired or destroyed, gravity
    /// set) since the last [`OobCore::effects`]: only their hardware deadline may differ from
    /// the one reported. Every place that changes a timer queue inserts its CPU.
    pub(crate) retimed: CpuMask,
}

impl OobCore {
    /// A core managing CPUs `0..cpus`, each running its in-band stage.
    pub fn new(cpus: usize) -> Result<Self, Error> {
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(Error::InvalidCpu);
        }
        Ok(Self {
            cpus: (0..cpus).map(|_| Cpu::new()).collect(),
            threads: Arena::new(),
            links: Vec::new(),
            mutexes: Arena::new(),
            mutex_links: Vec::new(),
            semaphores: Arena::new(),
            flags: Arena::new(),
            fired: Vec::new(),
            user_timers: 0,
            touched: CpuMask::EMPTY,
            // The initial state (every timer disarmed) is reported once.
            retimed: CpuMask::below(cpus),
        })
    }

    /// Number of CPUs managed.
    pub fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    /// Drains the work accumulated since the last call: CPUs to reschedule, hardware timers to
    /// reprogram. Call after every entry point, under the same lock.
    pub fn effects(&mut self) -> Effects {
        let EffectMasks { resched, reprogram } = self.effect_masks();
        let mut effects = Effects { resched, reprogram, ..Effects::default() };
        for (deadline, state) in effects.timer_deadlines.iter_mut().zip(&self.cpus) {
            *deadline = state.timers.hardware_deadline();
        }
        effects
    }

    /// [`OobCore::effects`] without the per-CPU deadlines (read the glue's own with
    /// [`OobCore::hardware_deadline`]): only the CPUs whose run queue, current context or
    /// timer queue changed since the last call are examined.
    pub fn effect_masks(&mut self) -> EffectMasks {
        self.drain_effect_masks(usize::MAX).0
    }

    /// [`OobCore::effect_masks`] for the glue of `cpu`, with the hardware deadline of `cpu`
    /// (gravity applied, `None`: disarm) to program when `reprogram` contains it, read while
    /// checking it changed (when `reprogram` does not contain `cpu`, the second value is
    /// `None` and means nothing).
    pub fn effect_masks_for(&mut self, cpu: usize) -> (EffectMasks, Option<Instant>) {
        self.drain_effect_masks(cpu)
    }

    /// [`OobCore::effect_masks`], also returning the new hardware deadline of CPU `local` if
    /// it is to be reprogrammed. The common case of a timer interrupt or a wake-up on the
    /// local CPU, rescheduled already (only its own timer queue changed), is inline; the
    /// general case is [`OobCore::drain_all_effect_masks`].
    #[inline(always)]
    pub(crate) fn drain_effect_masks(&mut self, local: usize) -> (EffectMasks, Option<Instant>) {
        if !(self.touched.is_empty() && self.retimed == CpuMask::only(local)) {
            return self.drain_all_effect_masks(local);
        }
        // The same as the loops of `drain_all_effect_masks`, without them.
        #[cfg(test)]
        self.check_unretimed_deadlines();
        self.retimed = CpuMask::EMPTY;
        let mut effects = EffectMasks::default();
        let mut local_deadline = None;
        if let Some(state) = self.cpus.get_mut(local) {
            let deadline = state.timers.hardware_deadline();
            if state.reported_deadline != Some(deadline) {
                effects.reprogram = CpuMask::only(local);
                state.reported_deadline = Some(deadline);
                local_deadline = deadline;
            }
        }
        (effects, local_deadline)
    }

    /// [`OobCore::drain_effect_masks`] beyond its inline common case: every touched and
    /// retimed CPU examined.
    #[inline(never)]
    fn drain_all_effect_masks(&mut self, local: usize) -> (EffectMasks, Option<Instant>) {
        let mut local_deadline = None;
        let mut effects = EffectMasks::default();
        for cpu in self.touched.iter() {
            let state = &self.cpus[cpu];
            if state.rq.pick() != state.current {
                effects.resched.insert(cpu);
            }
        }
        self.touched = CpuMask::EMPTY;
        #[cfg(test)]
        self.check_unretimed_deadlines();
        for cpu in core::mem::take(&mut self.retimed).iter() {
            let Some(state) = self.cpus.get_mut(cpu) else { continue };
            let deadline = state.timers.hardware_deadline();
            if state.reported_deadline != Some(deadline) {
                effects.reprogram.insert(cpu);
                state.reported_deadline = Some(deadline);
                if cpu == local {
                    local_deadline = deadline;
                }
            }
        }
        (effects, local_deadline)
    }

    /// Checks that every CPU left out of `retimed` still has the deadline last reported (tests
    /// only: a timer queue change that forgot its CPU would leave a hardware timer stale).
    #[cfg(test)]
    fn check_unretimed_deadlines(&self) {
        for (cpu, state) in self.cpus.iter().enumerate() {
            if !self.retimed.contains(cpu) {
                assert_eq!(state.reported_deadline, Some(state.timers.hardware_deadline()), "cpu {cpu} retimed unnoticed");
            }
        }
    }

    /// The hardware timer deadline of `cpu` (gravity applied), `None` if no timer is armed.
    pub fn hardware_deadline(&self, cpu: usize) -> Result<Option<Instant>, Error> {
        Ok(self.cpus[self.cpu_index(cpu)?].timers.hardware_deadline())
    }

    /// The context `cpu` runs, as last reported by [`OobCore::switched`].
    pub fn current(&self, cpu: usize) -> Result<Runnable, Error> {
        Ok(self.runnable(self.cpus[self.cpu_index(cpu)?].current))
    }

    /// Validates a CPU number.
    pub(crate) fn cpu_index(&self, cpu: usize) -> Result<usize, Error> {
        if cpu < self.cpus.len() { Ok(cpu) } else { Err(Error::InvalidCpu) }
    }

    /// The index of a thread that has not exited.
    pub(crate) fn thread_index(&self, id: ThreadId) -> Result<u32, Error> {
        match self.threads.get(id.0) {
            Some(thread) if thread.lifecycle != Lifecycle::Exited => Ok(id.0.index),
            _ => Err(Error::StaleThread),
        }
    }

    /// The id of the live thread at `t`.
    pub(crate) fn thread_id(&self, t: u32) -> ThreadId {
        ThreadId(self.threads.key(t))
    }

    /// The public form of a CPU context.
    pub(crate) fn runnable(&self, context: Option<u32>) -> Runnable {
        context.map_or(Runnable::InBand, |t| Runnable::Oob(self.thread_id(t)))
    }

    /// Whether `t` is the current context of its CPU.
    pub(crate) fn is_current(&self, t: u32) -> bool {
        self.cpus[self.threads[t].cpu].current == Some(t)
    }

    /// Queues the runnable thread `t` behind its peers.
    pub(crate) fn enqueue(&mut self, t: u32) {
        let thread = &self.threads[t];
        let cpu = thread.cpu;
        self.cpus[cpu].rq.enqueue(&mut self.links, t, &thread.effective, false);
        self.touched.insert(cpu);
    }

    /// Takes the runnable thread `t` off its run queue.
    pub(crate) fn unqueue(&mut self, t: u32) {
        let thread = &self.threads[t];
        let cpu = thread.cpu;
        self.cpus[cpu].rq.dequeue(&mut self.links, t, thread.effective);
        self.touched.insert(cpu);
    }
}
