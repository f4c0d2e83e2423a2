//! Structural invariants of the whole core, checked by the tests after every operation.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use super::OobCore;
use crate::sched::{Class, QueuedIn};
use crate::sync::Waiting;
use crate::thread::Lifecycle;

/// A wait queue owner, for comparing with a thread's wait record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Mutex(u32),
    Semaphore(u32),
    Flags(u32),
}

fn object_of(waiting: Waiting) -> Option<Object> {
    match waiting {
        Waiting::Mutex(m) => Some(Object::Mutex(m)),
        Waiting::Semaphore(s) => Some(Object::Semaphore(s)),
        Waiting::Flags { group, .. } => Some(Object::Flags(group)),
        Waiting::Sleep => None,
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl OobCore {
    /// Checks every invariant; the error names the first one broken.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let slots = self.threads.slot_count();
        let mut in_run_queue = vec![0u32; slots];
        let mut in_wait_queue = vec![0u32; slots];
        let live = |t: u32| self.threads.is_occupied(t);

        for (cpu, state) in self.cpus.iter().enumerate() {
            ensure!(state.rq.is_consistent(&self.links), "cpu {cpu}: malformed run queue");
            for (t, place) in state.rq.queued(&self.links) {
                ensure!(live(t), "cpu {cpu}: free slot {t} queued");
                in_run_queue[t as usize] += 1;
                let thread = &self.threads[t];
                ensure!(thread.cpu == cpu, "thread {t} queued on cpu {cpu}, pinned to {}", thread.cpu);
                ensure!(thread.runnable(), "thread {t} queued but not runnable");
                ensure!(
                    self.links[t as usize].key == u16::from(thread.effective.priority),
                    "thread {t}: queued at a stale level"
                );
                let expected = match thread.effective.class {
                    Class::Fifo => QueuedIn::Fifo,
                    Class::Tp(partition) => QueuedIn::Tp(partition),
                    Class::Quota(group) => {
                        let exhausted = state.rq.quota.left(group).is_zero();
                        QueuedIn::Quota { parked: exhausted.then_some(group) }
                    }
                };
                ensure!(place == expected, "thread {t} queued in {place:?}, expected {expected:?}");
            }
            if let Some(t) = state.current {
                ensure!(live(t), "cpu {cpu}: current is a free slot");
                ensure!(self.threads[t].cpu == cpu, "cpu {cpu}: current thread {t} is pinned elsewhere");
            }
        }

        let wait_queues = self
            .mutexes
            .iter()
            .map(|(key, m)| (Object::Mutex(key.index), m.waiters))
            .chain(self.semaphores.iter().map(|(key, s)| (Object::Semaphore(key.index), s.waiters)))
            .chain(self.flags.iter().map(|(key, f)| (Object::Flags(key.index), f.waiters)));
        for (object, waiters) in wait_queues {
            ensure!(waiters.is_consistent(&self.links), "{object:?}: malformed wait queue");
            let mut previous_rank = u16::MAX;
            for t in waiters.iter(&self.links) {
                ensure!(live(t), "{object:?}: free slot {t} waiting");
                in_wait_queue[t as usize] += 1;
                let thread = &self.threads[t];
                let rank = thread.effective.rank();
                ensure!(self.links[t as usize].key == rank, "thread {t} queued on {object:?} with a stale rank");
                ensure!(rank <= previous_rank, "{object:?}: waiters out of rank order");
                previous_rank = rank;
                ensure!(
                    thread.waiting.and_then(object_of) == Some(object),
                    "thread {t} in the wait queue of {object:?} but waits for {:?}",
                    thread.waiting
                );
            }
        }

        for (key, mutex) in self.mutexes.iter() {
            let m = key.index;
            match mutex.owner {
                None => ensure!(mutex.waiters.is_empty(), "mutex {m}: waiters but no owner"),
                Some(owner) => {
                    ensure!(live(owner), "mutex {m}: owner is a free slot");
                    let holder = &self.threads[owner];
                    ensure!(holder.lifecycle != Lifecycle::Exited, "mutex {m}: owned by an exited thread");
                    ensure!(
                        holder.held.iter(&self.mutex_links).filter(|&h| h == m).count() == 1,
                        "mutex {m}: not once in its owner's held list"
                    );
                    if let Some(first) = mutex.waiters.first() {
                        ensure!(
                            holder.effective.rank() >= self.threads[first].effective.rank(),
                            "mutex {m}: owner {owner} ranks below its first waiter {first} (priority inversion)"
                        );
                    }
                }
            }
        }

        for (key, thread) in self.threads.iter() {
            let t = key.index;
            ensure!(thread.effective.rank() >= thread.base.rank(), "thread {t}: effective rank below base");
            ensure!(thread.effective == self.inherited_params(t), "thread {t}: inheritance not propagated");
            ensure!(thread.held.is_consistent(&self.mutex_links), "thread {t}: malformed held list");
            for m in thread.held.iter(&self.mutex_links) {
                ensure!(self.mutexes[m].owner == Some(t), "thread {t} holds mutex {m} it does not own");
            }
            let expected_run = u32::from(thread.runnable());
            ensure!(
                in_run_queue[t as usize] == expected_run,
                "thread {t}: in run queues {} times, runnable {}",
                in_run_queue[t as usize],
                thread.runnable()
            );
            let expected_wait = u32::from(thread.waiting.and_then(object_of).is_some());
            ensure!(
                in_wait_queue[t as usize] == expected_wait,
                "thread {t}: in wait queues {} times, expected {expected_wait}",
                in_wait_queue[t as usize]
            );
            if let Some(Waiting::Mutex(m)) = thread.waiting {
                ensure!(self.mutexes[m].owner != Some(t), "thread {t} waits for mutex {m} it owns");
                ensure!(
                    !thread.held.iter(&self.mutex_links).any(|h| h == m),
                    "thread {t} waits for mutex {m} it holds"
                );
            }
            let timer_armed = self.cpus[thread.cpu]
                .timers
                .deadline(thread.timeout_timer)
                .map_err(|e| format!("thread {t}: timer {e:?}"))?
                .is_some();
            ensure!(!timer_armed || thread.waiting.is_some(), "thread {t}: timeout armed without a wait");
            ensure!(
                thread.lifecycle != Lifecycle::Exited || self.is_current(t),
                "thread {t}: exited but not reclaimed"
            );
            ensure!(
                thread.lifecycle != Lifecycle::Exited || thread.held.is_empty(),
                "thread {t}: exited holding mutexes"
            );
        }
        Ok(())
    }
}
