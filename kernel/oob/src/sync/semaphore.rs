//! Counting semaphores with priority-ordered waiters.
//!
//! `post` hands its unit directly to the best waiter if there is one (it wakes with
//! [`WakeReason::Granted`], the count stays 0), otherwise increments the count.

use crate::arena::Key;
use crate::error::Error;
use crate::list::List;
use crate::oob_core::OobCore;
use crate::sync::{Wait, Waiting, WakeReason};
use crate::thread::ThreadId;
use crate::time::{Instant, Timeout};

/// Identifies a semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SemaphoreId(pub(crate) Key);

/// A counting semaphore.
pub(crate) struct Semaphore {
    count: u32,
    /// Waiting threads by rank, FIFO among equals.
    pub(crate) waiters: List,
}

impl OobCore {
    /// Creates a semaphore holding `count` units.
    pub fn sem_create(&mut self, count: u32) -> SemaphoreId {
        SemaphoreId(self.semaphores.insert(Semaphore { count, waiters: List::EMPTY }))
    }

    /// Destroys a semaphore; its waiters wake with [`WakeReason::Deleted`].
    pub fn sem_destroy(&mut self, sem: SemaphoreId) -> Result<(), Error> {
        let s = self.sem_index(sem)?;
        while let Some(waiter) = self.semaphores[s].waiters.pop_front(&mut self.links) {
            self.end_wait(waiter, WakeReason::Deleted);
        }
        self.semaphores.remove(sem.0);
        Ok(())
    }

    /// Takes a unit for the running thread `thread`, blocking until `timeout` if there is none.
    pub fn sem_wait(
        &mut self,
        thread: ThreadId,
        sem: SemaphoreId,
        timeout: Option<Timeout>,
        now: Instant,
    ) -> Result<Wait<()>, Error> {
        let t = self.caller(thread)?;
        let s = self.sem_index(sem)?;
        if self.take_unit(s) {
            return Ok(Wait::Done(()));
        }
        let deadline = Self::wait_deadline(timeout, now)?;
        self.block(t, Waiting::Semaphore(s), deadline);
        Ok(Wait::Blocked)
    }

    /// Takes a unit if there is one ([`Error::WouldBlock`] if not). Callable from any context.
    pub fn sem_try_wait(&mut self, sem: SemaphoreId) -> Result<(), Error> {
        let s = self.sem_index(sem)?;
        if self.take_unit(s) { Ok(()) } else { Err(Error::WouldBlock) }
    }

    /// Releases a unit: to the best waiter, or into the count. Callable from any context.
    pub fn sem_post(&mut self, sem: SemaphoreId) -> Result<(), Error> {
        let s = self.sem_index(sem)?;
        let semaphore = &mut self.semaphores[s];
        match semaphore.waiters.pop_front(&mut self.links) {
            Some(waiter) => self.end_wait(waiter, WakeReason::Granted),
            None => semaphore.count = semaphore.count.checked_add(1).ok_or(Error::Overflow)?,
        }
        Ok(())
    }

    /// The number of units available.
    pub fn sem_count(&self, sem: SemaphoreId) -> Result<u32, Error> {
        Ok(self.semaphores[self.sem_index(sem)?].count)
    }

    fn take_unit(&mut self, s: u32) -> bool {
        let semaphore = &mut self.semaphores[s];
        let available = semaphore.count > 0;
        if available {
            semaphore.count -= 1;
        }
        available
    }

    fn sem_index(&self, sem: SemaphoreId) -> Result<u32, Error> {
        self.semaphores.get(sem.0).map(|_| sem.0.index).ok_or(Error::StaleSemaphore)
    }
}
