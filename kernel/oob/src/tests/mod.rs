//! Scenario tests driving the core like the arch glue would, with a simulated clock.

mod property;
mod sched;
mod sync;
mod timers;

use alloc::vec::Vec;

use crate::{Duration, Instant, OobCore, Policy, Runnable, SwitchTo, ThreadId, ThreadSpec, TimerExpiry, TimerTick};

/// Instant `us` microseconds after boot.
pub(crate) fn us(us: u64) -> Instant {
    Instant::from_nanos(us * 1_000)
}

/// Duration of `us` microseconds.
pub(crate) fn dus(us: u64) -> Duration {
    Duration::from_micros(us)
}

/// A simulated glue: applies effects at once and fires hardware timers at their exact dates.
pub(crate) struct Sim {
    pub(crate) core: OobCore,
    pub(crate) now: Instant,
    /// Every context switch: when, on which CPU, to what.
    pub(crate) switches: Vec<(Instant, usize, Runnable)>,
    /// Every user timer expiry.
    pub(crate) fired: Vec<TimerExpiry>,
}

impl Sim {
    pub(crate) fn new(cpus: usize) -> Self {
        Self { core: OobCore::new(cpus).unwrap(), now: Instant::ZERO, switches: Vec::new(), fired: Vec::new() }
    }

    /// Spawns a ready thread and lets it preempt if it should.
    pub(crate) fn spawn(&mut self, name: &str, cpu: usize, policy: Policy, priority: u8) -> ThreadId {
        let id = self.core.spawn(ThreadSpec::new(name, cpu, policy, priority)).unwrap();
        self.settle();
        id
    }

    /// Reschedules every CPU the effects ask for, until nothing changes; checks invariants.
    pub(crate) fn settle(&mut self) {
        loop {
            self.core.check_invariants().unwrap();
            let effects = self.core.effects();
            if effects.resched.is_empty() {
                return;
            }
            for cpu in effects.resched.iter() {
                self.reschedule(cpu);
            }
        }
    }

    /// What the glue does on a reschedule request for `cpu`.
    pub(crate) fn reschedule(&mut self, cpu: usize) {
        let next = self.core.pick_next(cpu, self.now).unwrap();
        let current = self.core.current(cpu).unwrap();
        if next != current {
            self.core.switched(cpu, current, next, self.now).unwrap();
            self.switches.push((self.now, cpu, next));
        }
    }

    /// Advances the clock to `until`, handling every hardware timer interrupt on the way at its
    /// exact date.
    pub(crate) fn run_until(&mut self, until: Instant) {
        self.settle();
        loop {
            let due = (0..self.core.cpu_count()).filter_map(|cpu| self.core.hardware_deadline(cpu).unwrap()).min();
            match due {
                Some(date) if date <= until => {
                    self.now = self.now.max(date);
                    for cpu in 0..self.core.cpu_count() {
                        if self.core.hardware_deadline(cpu).unwrap().is_some_and(|d| d <= self.now) {
                            self.timer_tick(cpu);
                        }
                    }
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// What the glue does on a timer interrupt of `cpu`: the one-call fast path, with the
    /// user timers and remote effects it leaves to the glue.
    pub(crate) fn timer_tick(&mut self, cpu: usize) {
        match self.core.on_timer_tick(cpu, self.now).unwrap() {
            TimerTick::UserTimers => {
                let fired = self.core.fired_timers().to_vec();
                self.fired.extend(fired);
            }
            TimerTick::Rescheduled { switch, masks, deadline } => {
                let current = self.core.current(cpu).unwrap();
                assert!(!masks.resched.contains(cpu), "the tick rescheduled its own CPU");
                match switch {
                    Some(to) => {
                        let expected = match current {
                            Runnable::InBand => SwitchTo::InBand,
                            Runnable::Oob(_) => SwitchTo::Thread(0),
                        };
                        assert_eq!(to, expected, "the switch names the new current context");
                        self.switches.push((self.now, cpu, current));
                    }
                    None => assert_eq!(self.core.pick_next(cpu, self.now).unwrap(), current),
                }
                assert!(masks.reprogram.contains(cpu), "a tick always reprograms its CPU");
                assert_eq!(deadline, self.core.hardware_deadline(cpu).unwrap());
                for other in masks.resched.iter() {
                    self.reschedule(other);
                }
            }
        }
    }

    /// The context `cpu` runs.
    pub(crate) fn running(&self, cpu: usize) -> Runnable {
        self.core.current(cpu).unwrap()
    }

    /// The switches on `cpu` since (and including) `from`.
    pub(crate) fn switches_on(&self, cpu: usize, from: Instant) -> Vec<(Instant, Runnable)> {
        self.switches.iter().filter(|(at, c, _)| *c == cpu && *at >= from).map(|&(at, _, to)| (at, to)).collect()
    }
}
