//! Mutex, semaphore and event flags for oob threads.

use oob::{Error, FlagsCondition, FlagsId, FlagsMode, MutexId, SemaphoreId, Timeout, WakeReason};

use crate::sched::{self, Waited, with_core};

/// Maps how a wait ended to the caller's result.
fn woken<T>(reason: WakeReason, granted: impl FnOnce(u64) -> T) -> Result<T, Error> {
    match reason {
        WakeReason::Granted => Ok(granted(0)),
        WakeReason::Signaled(bits) => Ok(granted(bits)),
        WakeReason::TimedOut => Err(Error::TimedOut),
        WakeReason::Deleted => Err(Error::StaleSemaphore),
    }
}

/// A mutex with priority inheritance and an optional priority ceiling. Not recursive.
#[derive(Debug)]
pub struct Mutex {
    id: MutexId,
}

/// Holds a [`Mutex`]; unlocks on drop.
#[derive(Debug)]
#[must_use = "the mutex is unlocked when the guard is dropped"]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
}

impl Mutex {
    /// A mutex with priority inheritance.
    pub fn new() -> Result<Self, Error> {
        with_core(|glue, _| glue.core.mutex_create(None)).map(|id| Self { id })
    }

    /// A mutex with a FIFO priority ceiling (1..=99) on top of inheritance.
    pub fn with_ceiling(ceiling: u8) -> Result<Self, Error> {
        with_core(|glue, _| glue.core.mutex_create(Some(ceiling))).map(|id| Self { id })
    }

    /// Locks, waiting until `timeout` (forever if `None`).
    pub fn lock(&self, timeout: Option<Timeout>) -> Result<MutexGuard<'_>, Error> {
        let waited = sched::wait(|glue, me, now| glue.core.mutex_lock(me, self.id, timeout, now))?;
        match waited {
            Waited::Done(()) => Ok(MutexGuard { mutex: self }),
            Waited::Woken(WakeReason::Deleted) => Err(Error::StaleMutex),
            Waited::Woken(reason) => woken(reason, |_| MutexGuard { mutex: self }),
        }
    }

    /// Locks if free, [`Error::WouldBlock`] if not.
    pub fn try_lock(&self) -> Result<MutexGuard<'_>, Error> {
        let me = sched::current_thread().ok_or(Error::NotRunning)?;
        with_core(|glue, now| glue.core.mutex_try_lock(me, self.id, now)).map(|()| MutexGuard { mutex: self })
    }

    /// The owning thread, if locked.
    pub fn owner(&self) -> Result<Option<oob::ThreadId>, Error> {
        with_core(|glue, _| glue.core.mutex_owner(self.id))
    }
}

impl MutexGuard<'_> {
    /// Unlocks now, reporting a refusal (the guard's drop ignores it).
    pub fn unlock(self) -> Result<(), Error> {
        let result = unlock(self.mutex.id);
        core::mem::forget(self);
        result
    }
}

fn unlock(mutex: MutexId) -> Result<(), Error> {
    let me = sched::current_thread().ok_or(Error::NotRunning)?;
    with_core(|glue, now| glue.core.mutex_unlock(me, mutex, now))
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        let _ = unlock(self.mutex.id);
    }
}

impl Drop for Mutex {
    fn drop(&mut self) {
        let id = self.id;
        let _ = with_core(|glue, now| glue.core.mutex_destroy(id, now));
    }
}

/// A counting semaphore with priority-ordered waiters.
#[derive(Debug)]
pub struct Semaphore {
    id: SemaphoreId,
}

impl Semaphore {
    /// A semaphore holding `count` units.
    pub fn new(count: u32) -> Result<Self, Error> {
        with_core(|glue, _| Ok(glue.core.sem_create(count))).map(|id| Self { id })
    }

    /// Takes a unit, waiting until `timeout` (forever if `None`).
    pub fn wait(&self, timeout: Option<Timeout>) -> Result<(), Error> {
        match sched::wait(|glue, me, now| glue.core.sem_wait(me, self.id, timeout, now))? {
            Waited::Done(()) => Ok(()),
            Waited::Woken(reason) => woken(reason, |_| ()),
        }
    }

    /// Takes a unit if there is one, [`Error::WouldBlock`] if not. Works in any context.
    pub fn try_wait(&self) -> Result<(), Error> {
        with_core(|glue, _| glue.core.sem_try_wait(self.id))
    }

    /// Releases a unit, to the best waiter if any. Works in any context.
    pub fn post(&self) -> Result<(), Error> {
        with_core(|glue, _| glue.core.sem_post(self.id))
    }

    /// Units available.
    pub fn count(&self) -> Result<u32, Error> {
        with_core(|glue, _| glue.core.sem_count(self.id))
    }

    /// The id, for posting from an IRQ-context callback ([`super::IrqContext::sem_post`]).
    pub fn id(&self) -> SemaphoreId {
        self.id
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        let id = self.id;
        let _ = with_core(|glue, _| glue.core.sem_destroy(id));
    }
}

/// A group of 64 event flags threads wait on for any or all of a mask.
#[derive(Debug)]
pub struct EventFlags {
    id: FlagsId,
}

impl EventFlags {
    /// A group with the given initial bits.
    pub fn new(value: u64) -> Result<Self, Error> {
        with_core(|glue, _| Ok(glue.core.flags_create(value))).map(|id| Self { id })
    }

    /// Waits until any or all (`mode`) of `mask` are set, until `timeout`; returns the bits
    /// of `mask` received and, with `consume`, clears them.
    pub fn wait(&self, mask: u64, mode: FlagsMode, consume: bool, timeout: Option<Timeout>) -> Result<u64, Error> {
        let condition = FlagsCondition { mask, mode, consume };
        match sched::wait(|glue, me, now| glue.core.flags_wait(me, self.id, condition, timeout, now))? {
            Waited::Done(bits) => Ok(bits),
            Waited::Woken(WakeReason::Deleted) => Err(Error::StaleFlags),
            Waited::Woken(reason) => woken(reason, |bits| bits),
        }
    }

    /// Sets bits, waking the waiters they satisfy. Works in any context.
    pub fn post(&self, bits: u64) -> Result<(), Error> {
        with_core(|glue, _| glue.core.flags_post(self.id, bits))
    }

    /// Clears bits.
    pub fn clear(&self, bits: u64) -> Result<(), Error> {
        with_core(|glue, _| glue.core.flags_clear(self.id, bits))
    }

    /// The current bits.
    pub fn value(&self) -> Result<u64, Error> {
        with_core(|glue, _| glue.core.flags_value(self.id))
    }

    /// The id, for posting from an IRQ-context callback ([`super::IrqContext::flags_post`]).
    pub fn id(&self) -> FlagsId {
        self.id
    }
}

impl Drop for EventFlags {
    fn drop(&mut self) {
        let id = self.id;
        let _ = with_core(|glue, _| glue.core.flags_destroy(id));
    }
}
