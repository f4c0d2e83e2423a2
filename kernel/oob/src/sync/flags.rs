//! Event flags groups: a 64-bit mask threads wait on for any or all of a set of bits.
//!
//! `post(bits)` sets bits, then serves waiters in rank order. A waiter's [`FlagsCondition`] is
//! satisfied when one of its bits ([`FlagsMode::Any`]) or all of them ([`FlagsMode::All`]) are
//! set; it wakes with [`WakeReason::Signaled`] carrying its bits that were set. A waiter that
//! asked to consume clears those bits before the next waiter is examined, so a higher-priority
//! consumer gets an event first and a lower-priority one may be left waiting.

use crate::arena::Key;
use crate::error::Error;
use crate::list::List;
use crate::oob_core::OobCore;
use crate::sync::{Wait, Waiting, WakeReason};
use crate::thread::ThreadId;
use crate::time::{Instant, Timeout};

/// Identifies an event flags group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlagsId(pub(crate) Key);

/// Which bits of the mask satisfy a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsMode {
    /// At least one bit of the mask.
    Any,
    /// Every bit of the mask.
    All,
}

/// What a flags wait asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagsCondition {
    /// The bits of interest (non-zero).
    pub mask: u64,
    /// Whether any or all of them are needed.
    pub mode: FlagsMode,
    /// Clear the received bits when the wait is satisfied.
    pub consume: bool,
}

impl FlagsCondition {
    /// The bits of `mask` set in `value` if they satisfy the condition.
    fn satisfied_by(self, value: u64) -> Option<u64> {
        let bits = value & self.mask;
        let ok = match self.mode {
            FlagsMode::Any => bits != 0,
            FlagsMode::All => bits == self.mask,
        };
        ok.then_some(bits)
    }
}

/// An event flags group.
pub(crate) struct EventFlags {
    value: u64,
    /// Waiting threads by rank, FIFO among equals.
    pub(crate) waiters: List,
}

impl OobCore {
    /// Creates an event flags group with the bits `value` set.
    pub fn flags_create(&mut self, value: u64) -> FlagsId {
        FlagsId(self.flags.insert(EventFlags { value, waiters: List::EMPTY }))
    }

    /// Destroys a group; its waiters wake with [`WakeReason::Deleted`].
    pub fn flags_destroy(&mut self, flags: FlagsId) -> Result<(), Error> {
        let f = self.flags_index(flags)?;
        while let Some(waiter) = self.flags[f].waiters.pop_front(&mut self.links) {
            self.end_wait(waiter, WakeReason::Deleted);
        }
        self.flags.remove(flags.0);
        Ok(())
    }

    /// Waits, as the running thread `thread`, for `condition`; blocks until `timeout` if it is not
    /// satisfied now. `Done` carries the bits received.
    pub fn flags_wait(
        &mut self,
        thread: ThreadId,
        flags: FlagsId,
        condition: FlagsCondition,
        timeout: Option<Timeout>,
        now: Instant,
    ) -> Result<Wait<u64>, Error> {
        let t = self.caller(thread)?;
        match self.flags_try_wait(flags, condition) {
            Err(Error::WouldBlock) => {}
            done => return done.map(Wait::Done),
        }
        let deadline = Self::wait_deadline(timeout, now)?;
        self.block(t, Waiting::Flags { group: flags.0.index, condition }, deadline);
        Ok(Wait::Blocked)
    }

    /// Takes the bits of `condition` if it is satisfied now ([`Error::WouldBlock`] if not).
    /// Callable from any context.
    pub fn flags_try_wait(&mut self, flags: FlagsId, condition: FlagsCondition) -> Result<u64, Error> {
        let f = self.flags_index(flags)?;
        if condition.mask == 0 {
            return Err(Error::InvalidMask);
        }
        let group = &mut self.flags[f];
        let bits = condition.satisfied_by(group.value).ok_or(Error::WouldBlock)?;
        if condition.consume {
            group.value &= !bits;
        }
        Ok(bits)
    }

    /// Sets `bits` and wakes the waiters they satisfy. Callable from any context.
    pub fn flags_post(&mut self, flags: FlagsId, bits: u64) -> Result<(), Error> {
        let f = self.flags_index(flags)?;
        self.flags[f].value |= bits;
        let mut cursor = self.flags[f].waiters.first();
        while let Some(waiter) = cursor {
            cursor = List::next(&self.links, waiter);
            let Some(Waiting::Flags { condition, .. }) = self.threads[waiter].waiting else {
                unreachable!("flags waiters wait for flags");
            };
            let group = &mut self.flags[f];
            if let Some(received) = condition.satisfied_by(group.value) {
                if condition.consume {
                    group.value &= !received;
                }
                group.waiters.remove(&mut self.links, waiter);
                self.end_wait(waiter, WakeReason::Signaled(received));
            }
        }
        Ok(())
    }

    /// Clears `bits`.
    pub fn flags_clear(&mut self, flags: FlagsId, bits: u64) -> Result<(), Error> {
        let f = self.flags_index(flags)?;
        self.flags[f].value &= !bits;
        Ok(())
    }

    /// The bits currently set.
    pub fn flags_value(&self, flags: FlagsId) -> Result<u64, Error> {
        Ok(self.flags[self.flags_index(flags)?].value)
    }

    fn flags_index(&self, flags: FlagsId) -> Result<u32, Error> {
        self.flags.get(flags.0).map(|_| flags.0.index).ok_or(Error::StaleFlags)
    }
}
