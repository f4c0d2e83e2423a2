//! Sleeping until a deadline: a wait with nothing to wait for but its timeout, which ends with
//! [`crate::WakeReason::TimedOut`].

use crate::error::Error;
use crate::oob_core::OobCore;
use crate::sync::{Wait, Waiting};
use crate::thread::ThreadId;
use crate::time::{Duration, Instant};

impl OobCore {
    /// Puts the running thread `thread` to sleep until `deadline`; `Done` if it has passed.
    pub fn sleep_until(&mut self, thread: ThreadId, deadline: Instant, now: Instant) -> Result<Wait<()>, Error> {
        let t = self.caller(thread)?;
        if deadline <= now {
            return Ok(Wait::Done(()));
        }
        self.block(t, Waiting::Sleep, Some(deadline));
        Ok(Wait::Blocked)
    }

    /// Puts the running thread `thread` to sleep for `delay` from `now`.
    pub fn sleep(&mut self, thread: ThreadId, delay: Duration, now: Instant) -> Result<Wait<()>, Error> {
        self.sleep_until(thread, now + delay, now)
    }
}
