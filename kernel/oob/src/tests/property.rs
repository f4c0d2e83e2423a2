//! Randomized operations (xorshift, fixed seeds) with every invariant checked after each one.

use alloc::vec::Vec;

use super::{Sim, dus};
use crate::sched::Runnable::Oob;
use crate::{
    Duration, FlagsCondition, FlagsMode, MutexId, Policy, QuotaGroupId, SemaphoreId, ThreadId, ThreadSpec, Timeout,
    TimerContext, TimerHandle, TpWindow, WakeReason,
};

/// Marsaglia's xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// What the random run exercised, to make sure it reached the interesting paths.
#[derive(Default)]
struct Coverage {
    boosted: u32,
    timed_out: u32,
    granted: u32,
    signaled: u32,
    switches: usize,
}

struct World {
    sim: Sim,
    rng: Rng,
    threads: Vec<ThreadId>,
    mutexes: Vec<MutexId>,
    sem: SemaphoreId,
    flags: crate::FlagsId,
    group: QuotaGroupId,
    timers: Vec<TimerHandle>,
    coverage: Coverage,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut sim = Sim::new(2);
        let windows =
            [TpWindow { partition: Some(0), duration: dus(200) }, TpWindow { partition: Some(1), duration: dus(300) }];
        sim.core.tp_install(0, &windows).unwrap();
        sim.core.tp_start(0, sim.now).unwrap();
        sim.core.quota_set_period(1, dus(1_000), sim.now).unwrap();
        let group = sim.core.quota_create_group(1, dus(300)).unwrap();
        let mutexes = [None, None, Some(40)].map(|ceiling| sim.core.mutex_create(ceiling).unwrap()).to_vec();
        let sem = sim.core.sem_create(1);
        let flags = sim.core.flags_create(0);
        let timers = (0..2).map(|cpu| sim.core.timer_create(cpu, TimerContext::Irq, cpu as u64).unwrap()).collect();
        Self {
            sim,
            rng: Rng(seed),
            threads: Vec::new(),
            mutexes,
            sem,
            flags,
            group,
            timers,
            coverage: Coverage::default(),
        }
    }

    fn random_policy(&mut self, cpu: usize) -> Policy {
        match self.rng.below(4) {
            0 => Policy::Fifo,
            1 => Policy::RoundRobin { quantum: dus(50 + self.rng.below(200)) },
            2 => Policy::TimePartition { partition: self.rng.below(2) as u8 },
            _ if cpu == 1 => Policy::Quota { group: self.group },
            _ => Policy::Fifo,
        }
    }

    fn timeout(&mut self) -> Option<Timeout> {
        match self.rng.below(3) {
            0 => None,
            1 => Some(Timeout::After(dus(self.rng.below(400)))),
            _ => Some(Timeout::At(self.sim.now + dus(self.rng.below(400)))),
        }
    }

    /// One random operation; errors are legitimate outcomes, panics and broken invariants are not.
    fn step(&mut self) {
        let now = self.sim.now;
        let cpu = self.rng.below(2) as usize;
        let running = match self.sim.running(cpu) {
            Oob(t) => Some(t),
            _ => None,
        };
        let any = self.rng.pick(&self.threads);
        let mutex = self.rng.pick(&self.mutexes).unwrap();
        let core = &mut self.sim.core;
        match self.rng.below(20) {
            0 | 1 if self.threads.len() < 10 => {
                let policy = self.random_policy(cpu);
                let priority = 1 + self.rng.below(99) as u8;
                let dormant = self.rng.below(5) == 0;
                let spec = ThreadSpec { dormant, ..ThreadSpec::new("random", cpu, policy, priority) };
                self.threads.push(self.sim.core.spawn(spec).unwrap());
            }
            2..=4 => {
                let until = now + dus(self.rng.below(300));
                self.sim.run_until(until);
            }
            5 | 6 => {
                if let Some(t) = running {
                    let timeout = self.timeout();
                    let _ = self.sim.core.mutex_lock(t, mutex, timeout, now);
                }
            }
            7 => {
                if let Some(t) = running.or(any) {
                    let _ = core.mutex_unlock(t, mutex, now);
                }
            }
            8 => {
                if let Some(t) = running {
                    let _ = core.mutex_try_lock(t, mutex, now);
                }
            }
            9 => {
                if let Some(t) = running {
                    let timeout = self.timeout();
                    let _ = self.sim.core.sem_wait(t, self.sem, timeout, now);
                }
            }
            10 => {
                let _ = core.sem_post(self.sem);
            }
            11 => {
                if let Some(t) = running {
                    let condition = FlagsCondition {
                        mask: 1 + self.rng.below(15),
                        mode: if self.rng.below(2) == 0 { FlagsMode::Any } else { FlagsMode::All },
                        consume: self.rng.below(2) == 0,
                    };
                    let timeout = self.timeout();
                    let _ = self.sim.core.flags_wait(t, self.flags, condition, timeout, now);
                }
            }
            12 => {
                let bits = self.rng.below(16);
                let _ = core.flags_post(self.flags, bits);
            }
            13 => {
                if let Some(t) = running {
                    let delay = dus(self.rng.below(300));
                    let _ = self.sim.core.sleep(t, delay, now);
                }
            }
            14 => {
                if let Some(t) = running {
                    let _ = core.yield_now(t, now);
                }
            }
            15 => {
                if let Some(t) = any {
                    let _ = if self.rng.below(2) == 0 { core.suspend(t) } else { core.resume(t) };
                }
            }
            16 => {
                if let Some(t) = any {
                    let priority = 1 + self.rng.below(99) as u8;
                    let _ = if self.rng.below(2) == 0 {
                        core.set_priority(t, priority, now)
                    } else {
                        let cpu = core.thread_info(t).map_or(0, |info| info.cpu);
                        let policy = self.random_policy(cpu);
                        self.sim.core.set_policy(t, policy, priority, now)
                    };
                }
            }
            17 => {
                if let Some(t) = any {
                    let _ = match self.rng.below(3) {
                        0 => core.exit(t, now),
                        1 => core.migrate(t, cpu, now),
                        _ => core.start(t),
                    };
                }
            }
            18 => {
                let timer = self.rng.pick(&self.timers).unwrap();
                let period = (self.rng.below(2) == 0).then(|| dus(20 + self.rng.below(500)));
                let first = now + dus(self.rng.below(500));
                let _ = core.timer_start(timer, first, period);
            }
            _ => {
                // The glue sometimes reschedules without being asked, or runs a spurious tick.
                let choice = self.rng.below(3);
                if choice == 0 {
                    self.sim.reschedule(cpu);
                } else if choice == 1 {
                    self.sim.timer_tick(cpu);
                } else {
                    let fired = core.on_timer(cpu, now).unwrap().to_vec();
                    self.sim.fired.extend(fired);
                }
            }
        }
        self.sim.core.check_invariants().unwrap();
        self.sim.settle();
        self.observe();
    }

    fn observe(&mut self) {
        self.threads.retain(|&t| self.sim.core.thread_state(t).is_ok());
        for &t in &self.threads {
            if self.sim.core.thread_info(t).unwrap().boosted {
                self.coverage.boosted += 1;
            }
            match self.sim.core.take_wake_reason(t).unwrap() {
                Some(WakeReason::TimedOut) => self.coverage.timed_out += 1,
                Some(WakeReason::Granted) => self.coverage.granted += 1,
                Some(WakeReason::Signaled(_)) => self.coverage.signaled += 1,
                _ => {}
            }
        }
        self.coverage.switches = self.sim.switches.len();
    }
}

#[test]
fn random_operations_preserve_every_invariant() {
    let mut total = Coverage::default();
    for seed in 1..=12u64 {
        let mut world = World::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for _ in 0..2_000 {
            world.step();
        }
        // Drain every thread and check the accounting adds up: each CPU's contexts were charged
        // exactly the elapsed time.
        world.sim.run_until(world.sim.now + Duration::from_millis(1));
        let elapsed = world.sim.now.saturating_duration_since(crate::Instant::ZERO);
        for cpu in 0..2 {
            world.sim.core.pick_next(cpu, world.sim.now).unwrap();
        }
        let snapshot = world.sim.core.snapshot();
        let threads: Duration = snapshot.threads.iter().map(|t| t.stats.cpu_time).fold(Duration::ZERO, |a, b| a + b);
        let inband: Duration = snapshot.inband.iter().map(|s| s.stats.cpu_time).fold(Duration::ZERO, |a, b| a + b);
        assert!(threads + inband <= elapsed.saturating_mul(2), "more CPU time charged than elapsed on 2 CPUs");
        total.boosted += world.coverage.boosted;
        total.timed_out += world.coverage.timed_out;
        total.granted += world.coverage.granted;
        total.signaled += world.coverage.signaled;
        total.switches += world.coverage.switches;
    }

    assert!(total.boosted > 100, "boosts: {}", total.boosted);
    assert!(total.timed_out > 50, "timeouts: {}", total.timed_out);
    assert!(total.granted > 50, "grants: {}", total.granted);
    assert!(total.signaled > 10, "signals: {}", total.signaled);
    assert!(total.switches > 1_000, "switches: {}", total.switches);
}
