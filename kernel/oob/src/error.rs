//! Everything a caller of the core can get wrong, as values: the core never panics on input.

use core::fmt;

/// Why an operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// CPU number out of range, or a CPU count of 0 or above [`crate::MAX_CPUS`].
    InvalidCpu,
    /// The thread id is stale (the thread exited and its slot may be reused).
    StaleThread,
    /// The mutex id is stale.
    StaleMutex,
    /// The semaphore id is stale.
    StaleSemaphore,
    /// The event flags id is stale.
    StaleFlags,
    /// The timer id is stale, or does not name a user timer.
    StaleTimer,
    /// The quota group id is stale.
    StaleQuotaGroup,
    /// Priority outside 1..=99.
    InvalidPriority,
    /// Zero round-robin quantum.
    InvalidQuantum,
    /// Time-partitioning partition number out of range.
    InvalidPartition,
    /// Empty time-partitioning schedule, or a window of zero duration.
    InvalidSchedule,
    /// Quota budget of zero or larger than the quota period.
    InvalidBudget,
    /// Zero period.
    InvalidPeriod,
    /// Empty event mask.
    InvalidMask,
    /// The operation must be called by the thread running on its CPU.
    NotRunning,
    /// `switched` was told a `from` that is not the CPU's current context.
    NotCurrent,
    /// `switched` was told a `to` that cannot run on that CPU.
    NotRunnable,
    /// `start` of a thread that is not dormant.
    NotDormant,
    /// `resume` of a thread that is not suspended.
    NotSuspended,
    /// The thread is current on its CPU (switch it out first).
    ThreadIsCurrent,
    /// The thread and the quota group (or target) are on different CPUs.
    WrongCpu,
    /// Unlock by a thread that does not own the mutex.
    NotOwner,
    /// Locking would deadlock: the caller already owns the mutex, or the owner chain leads back
    /// to the caller.
    Deadlock,
    /// The caller's priority is above the mutex's priority ceiling.
    CeilingViolated,
    /// The quota group still has member threads.
    GroupInUse,
    /// No quota period configured on that CPU yet.
    QuotaNotConfigured,
    /// The semaphore count would overflow.
    Overflow,
    /// A non-blocking attempt found the resource unavailable.
    WouldBlock,
    /// The timeout had already elapsed when the blocking call was made.
    TimedOut,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for Error {}
