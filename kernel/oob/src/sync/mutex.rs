//! Mutexes with priority inheritance across chains and an optional priority ceiling.
//!
//! # Priority inheritance
//!
//! A thread's effective scheduling parameters are recomputed from scratch whenever one of their
//! inputs changes: its base parameters, the ceiling of each mutex it holds, and the effective
//! parameters of the first (best-ranked) waiter of each mutex it holds. The best of these by rank
//! ([`crate::sched`]) wins; a boost never lowers a thread below its base. If the winner is in the
//! thread's own class instance (FIFO, or the same TP partition or quota group of the same CPU)
//! the thread stays in that class at the winner's priority, so sharing a mutex inside a
//! partition or group does not escape the partition's windows or the group's budget. A winner
//! from anywhere else boosts the thread into the FIFO class at the winner's priority, which is
//! at least the winner's rank.
//!
//! When a thread's effective parameters change it is re-queued (in its run queue, or in the wait
//! queue it is in), and if it is itself waiting for a mutex the owner of that mutex is
//! recomputed in turn, walking the chain until nothing changes. So with A waiting on M1 owned by
//! B, B waiting on M2 owned by C, C runs at A's priority; when A times out, or B gives M1 up,
//! the same walk unwinds the boosts from what remains. Cycles are refused at lock time
//! ([`Error::Deadlock`]), so the walk always ends.
//!
//! # Other rules
//!
//! - Locking a mutex one already owns is refused with [`Error::Deadlock`] (no recursion count:
//!   the core mutex is a building block, recursion belongs to a library above it).
//! - Unlocking by a thread that does not own the mutex is refused with [`Error::NotOwner`].
//! - Unlock hands the mutex directly to the best waiter, which wakes with
//!   [`WakeReason::Granted`] as owner; a running thread cannot steal it meanwhile.
//! - With a ceiling, the owner runs at least at FIFO priority `ceiling` while holding it; a
//!   thread whose base rank is above the ceiling may not lock it ([`Error::CeilingViolated`]).
//! - Exiting releases the mutexes the thread holds, handing each to its best waiter.
//! - Destroying a mutex releases it from its owner and wakes waiters with
//!   [`WakeReason::Deleted`].

use crate::arena::Key;
use crate::error::Error;
use crate::list::List;
use crate::oob_core::OobCore;
use crate::sched::SchedParams;
use crate::sched::fifo::is_valid_priority;
use crate::sync::{Wait, Waiting, WakeReason};
use crate::thread::ThreadId;
use crate::time::{Instant, Timeout};

/// Identifies a mutex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MutexId(pub(crate) Key);

/// A mutex.
pub(crate) struct Mutex {
    pub(crate) owner: Option<u32>,
    /// Waiting threads by rank, FIFO among equals.
    pub(crate) waiters: List,
    pub(crate) ceiling: Option<u8>,
}

/// The parameters a thread with `base` runs at when the best of its inputs is `best`, coming from
/// the same CPU or not.
fn boosted(base: SchedParams, best: SchedParams, same_cpu: bool) -> SchedParams {
    if best.rank() <= base.rank() {
        base
    } else if best.class == base.class && same_cpu {
        SchedParams { class: base.class, priority: best.priority }
    } else {
        SchedParams::fifo(best.priority)
    }
}

impl OobCore {
    /// Creates a mutex, with a FIFO priority ceiling (1..=99) if given.
    pub fn mutex_create(&mut self, ceiling: Option<u8>) -> Result<MutexId, Error> {
        if ceiling.is_some_and(|c| !is_valid_priority(c)) {
            return Err(Error::InvalidPriority);
        }
        let key = self.mutexes.insert(Mutex { owner: None, waiters: List::EMPTY, ceiling });
        if self.mutex_links.len() < self.mutexes.slot_count() {
            self.mutex_links.push(Default::default());
        }
        Ok(MutexId(key))
    }

    /// Destroys a mutex: its owner loses it, its waiters wake with [`WakeReason::Deleted`].
    pub fn mutex_destroy(&mut self, mutex: MutexId, now: Instant) -> Result<(), Error> {
        let m = self.mutex_index(mutex)?;
        while let Some(waiter) = self.mutexes[m].waiters.pop_front(&mut self.links) {
            self.end_wait(waiter, WakeReason::Deleted);
        }
        if let Some(owner) = self.mutexes[m].owner {
            self.threads[owner].held.remove(&mut self.mutex_links, m);
            self.update_priority(owner, now);
        }
        self.mutexes.remove(mutex.0);
        Ok(())
    }

    /// The owner of a mutex.
    pub fn mutex_owner(&self, mutex: MutexId) -> Result<Option<ThreadId>, Error> {
        let m = self.mutex_index(mutex)?;
        Ok(self.mutexes[m].owner.map(|t| self.thread_id(t)))
    }

    /// Locks `mutex` for the running thread `thread`, blocking until `timeout` if it is owned.
    pub fn mutex_lock(
        &mut self,
        thread: ThreadId,
        mutex: MutexId,
        timeout: Option<Timeout>,
        now: Instant,
    ) -> Result<Wait<()>, Error> {
        let (t, m) = self.lock_checks(thread, mutex)?;
        let Some(owner) = self.mutexes[m].owner else {
            self.acquire(t, m, now);
            return Ok(Wait::Done(()));
        };
        // Refuse a wait that would close a cycle of owners.
        let mut next = Some(owner);
        while let Some(o) = next {
            if o == t {
                return Err(Error::Deadlock);
            }
            next = match self.threads[o].waiting {
                Some(Waiting::Mutex(m2)) => self.mutexes[m2].owner,
                _ => None,
            };
        }
        let deadline = Self::wait_deadline(timeout, now)?;
        self.block(t, Waiting::Mutex(m), deadline);
        self.update_priority(owner, now);
        Ok(Wait::Blocked)
    }

    /// Locks `mutex` for the running thread `thread` if it is free ([`Error::WouldBlock`] if not).
    pub fn mutex_try_lock(&mut self, thread: ThreadId, mutex: MutexId, now: Instant) -> Result<(), Error> {
        let (t, m) = self.lock_checks(thread, mutex)?;
        if self.mutexes[m].owner.is_some() {
            return Err(Error::WouldBlock);
        }
        self.acquire(t, m, now);
        Ok(())
    }

    /// Unlocks `mutex`, owned by `thread`, handing it to the best waiter.
    pub fn mutex_unlock(&mut self, thread: ThreadId, mutex: MutexId, now: Instant) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        let m = self.mutex_index(mutex)?;
        if self.mutexes[m].owner != Some(t) {
            return Err(Error::NotOwner);
        }
        self.release(t, m, now);
        Ok(())
    }

    /// Releases mutex `m` held by `owner`: direct handoff to the best waiter, then both threads'
    /// inherited priorities are recomputed.
    pub(crate) fn release(&mut self, owner: u32, m: u32, now: Instant) {
        self.threads[owner].held.remove(&mut self.mutex_links, m);
        let heir = self.mutexes[m].waiters.pop_front(&mut self.links);
        self.mutexes[m].owner = heir;
        if let Some(heir) = heir {
            self.threads[heir].held.push_back(&mut self.mutex_links, m, 0);
            self.end_wait(heir, WakeReason::Granted);
            self.update_priority(heir, now);
        }
        self.update_priority(owner, now);
    }

    /// Recomputes the effective parameters of `t` and, while they change, of the owner of the
    /// mutex it waits for, up the chain.
    pub(crate) fn update_priority(&mut self, mut t: u32, now: Instant) {
        loop {
            let params = self.inherited_params(t);
            if params == self.threads[t].effective {
                return;
            }
            self.set_effective(t, params, now);
            match self.threads[t].waiting {
                Some(Waiting::Mutex(m)) => t = self.mutexes[m].owner.expect("a mutex with waiters has an owner"),
                _ => return,
            }
        }
    }

    /// The effective parameters `t` is entitled to by the mutexes it holds.
    pub(crate) fn inherited_params(&self, t: u32) -> SchedParams {
        let thread = &self.threads[t];
        let (mut best, mut best_cpu) = (thread.base, thread.cpu);
        for m in thread.held.iter(&self.mutex_links) {
            let mutex = &self.mutexes[m];
            let ceiling = mutex.ceiling.map(|c| (SchedParams::fifo(c), thread.cpu));
            let waiter = mutex.waiters.first().map(|w| (self.threads[w].effective, self.threads[w].cpu));
            for (candidate, cpu) in [ceiling, waiter].into_iter().flatten() {
                if candidate.rank() > best.rank() {
                    (best, best_cpu) = (candidate, cpu);
                }
            }
        }
        boosted(thread.base, best, best_cpu == thread.cpu)
    }

    fn acquire(&mut self, t: u32, m: u32, now: Instant) {
        self.mutexes[m].owner = Some(t);
        self.threads[t].held.push_back(&mut self.mutex_links, m, 0);
        if self.mutexes[m].ceiling.is_some() {
            self.update_priority(t, now);
        }
    }

    fn lock_checks(&self, thread: ThreadId, mutex: MutexId) -> Result<(u32, u32), Error> {
        let t = self.caller(thread)?;
        let m = self.mutex_index(mutex)?;
        let mutex = &self.mutexes[m];
        if mutex.owner == Some(t) {
            return Err(Error::Deadlock);
        }
        if mutex.ceiling.is_some_and(|c| self.threads[t].base.rank() > SchedParams::fifo(c).rank()) {
            return Err(Error::CeilingViolated);
        }
        Ok((t, m))
    }

    fn mutex_index(&self, mutex: MutexId) -> Result<u32, Error> {
        self.mutexes.get(mutex.0).map(|_| mutex.0.index).ok_or(Error::StaleMutex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::Class;

    #[test]
    fn boost_stays_in_the_own_class_or_goes_fifo() {
        let tp = |p, priority| SchedParams { class: Class::Tp(p), priority };
        assert_eq!(boosted(tp(1, 10), tp(1, 40), true), tp(1, 40));
        assert_eq!(boosted(tp(1, 10), tp(1, 40), false), SchedParams::fifo(40), "partition 1 of another CPU");
        assert_eq!(boosted(tp(1, 10), tp(2, 40), true), SchedParams::fifo(40));
        assert_eq!(boosted(tp(1, 10), SchedParams::fifo(3), false), SchedParams::fifo(3));
        assert_eq!(boosted(SchedParams::fifo(3), tp(1, 99), true), SchedParams::fifo(3));
        assert_eq!(boosted(tp(1, 50), tp(1, 50), true), tp(1, 50));
    }
}
