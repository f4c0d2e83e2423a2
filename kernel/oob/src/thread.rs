//! The thread control block, thread ids, creation parameters, states and statistics.

use alloc::string::String;
use core::fmt;

use crate::arena::Key;
use crate::list::List;
use crate::sched::quota::QuotaGroupId;
use crate::sched::rr::TimeSlice;
use crate::sched::{Class, SchedParams};
use crate::sync::{WaitObject, Waiting, WakeReason};
use crate::time::{Duration, Instant};
use crate::timer::{TimerContext, TimerId};

/// Identifies a thread: slot index plus generation, so an id kept after the thread exited is
/// refused ([`crate::Error::StaleThread`]) even once the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub(crate) Key);

impl ThreadId {
    /// The slot index (small, dense: usable as a table index by the glue).
    pub const fn index(self) -> u32 {
        self.0.index
    }

    /// How many times the slot was reused before this thread got it.
    pub const fn generation(self) -> u32 {
        self.0.generation
    }
}

/// `index.generation`, the "PID" of the `ps` table.
impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&alloc::format!("{}.{}", self.0.index, self.0.generation))
    }
}

/// A scheduling policy (the priority is given separately, 1..=99 for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Fixed priority, first-in first-out within a priority.
    Fifo,
    /// FIFO with a time slice: rotates among equal priorities every `quantum` of CPU time.
    RoundRobin {
        /// CPU time per turn (non-zero).
        quantum: Duration,
    },
    /// Runs only in the windows of `partition` of its CPU's TP schedule.
    TimePartition {
        /// Partition number, below [`crate::sched::tp::TP_PARTITIONS`].
        partition: u8,
    },
    /// Runs while its quota group (on the same CPU) has budget left.
    Quota {
        /// The group charged for the thread's CPU time.
        group: QuotaGroupId,
    },
}

impl Policy {
    /// Short name for tables.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::RoundRobin { .. } => "rr",
            Self::TimePartition { .. } => "tp",
            Self::Quota { .. } => "quota",
        }
    }
}

/// Parameters of [`crate::OobCore::spawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSpec<'a> {
    /// Name shown by `ps`.
    pub name: &'a str,
    /// The CPU the thread is pinned to.
    pub cpu: usize,
    /// Scheduling policy.
    pub policy: Policy,
    /// Base priority, 1..=99 (99 highest).
    pub priority: u8,
    /// What the thread's timeouts wake, for timer gravity.
    pub context: TimerContext,
    /// Create dormant (started by [`crate::OobCore::start`]) instead of ready.
    pub dormant: bool,
}

impl<'a> ThreadSpec<'a> {
    /// A ready user thread with the given name, CPU, policy and priority.
    pub const fn new(name: &'a str, cpu: usize, policy: Policy, priority: u8) -> Self {
        Self { name, cpu, policy, priority, context: TimerContext::User, dormant: false }
    }
}

/// Where a thread is in its life, as observed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    /// Created, not started.
    Dormant,
    /// Runnable, waiting for the CPU.
    Ready,
    /// The current context of its CPU.
    Running,
    /// Waiting for `on`, until `timeout` if any (shown even if also suspended).
    Blocked {
        /// What it waits for.
        on: WaitObject,
        /// When the wait times out.
        timeout: Option<Instant>,
    },
    /// Suspended (and not blocked).
    Suspended,
    /// Exited; still the current context of its CPU until switched out.
    Exited,
}

/// Per-thread (and per in-band stage) statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadStats {
    /// Times the context was switched in.
    pub switches: u64,
    /// CPU time consumed.
    pub cpu_time: Duration,
    /// Worst wake-up latency reported by the glue.
    pub max_latency: Duration,
}

/// Lifecycle stage of a thread slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Dormant,
    Alive,
    Exited,
}

/// The thread control block.
pub(crate) struct Thread {
    pub(crate) name: String,
    pub(crate) cpu: usize,
    pub(crate) policy: Policy,
    /// The thread's own scheduling parameters.
    pub(crate) base: SchedParams,
    /// The parameters it is queued with: `base`, or a boost from a mutex it holds.
    pub(crate) effective: SchedParams,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) suspended: bool,
    pub(crate) waiting: Option<Waiting>,
    pub(crate) wake_reason: Option<WakeReason>,
    /// Preallocated timeout timer in the queue of the thread's CPU.
    pub(crate) timeout_timer: TimerId,
    /// Gravity context of the timeout timer.
    pub(crate) context: TimerContext,
    /// Round-robin slice, for `Policy::RoundRobin` only.
    pub(crate) slice: Option<TimeSlice>,
    /// Mutexes held (mutex arena indices, linked through the core's mutex links).
    pub(crate) held: List,
    pub(crate) stats: ThreadStats,
    /// The glue's word for the thread (its control block's address), returned with every
    /// switch to it so the glue needs no lookup of its own; 0 until set.
    pub(crate) glue_token: usize,
}

impl Thread {
    /// Whether the thread may be queued to run.
    pub(crate) fn runnable(&self) -> bool {
        self.lifecycle == Lifecycle::Alive && self.waiting.is_none() && !self.suspended
    }

    /// Whether the round-robin slice applies now: an RR thread at its own parameters.
    pub(crate) fn slice_applies(&self) -> bool {
        self.slice.is_some() && self.effective == self.base
    }

    /// The quota group index the thread is charged to, if it runs in the quota class. An exited
    /// thread (still current until switched out) is charged to no group: it left the group, which
    /// may be gone.
    /// Whether a slice or a quota budget may apply to the thread: false guarantees that
    /// neither [`Thread::slice_applies`] nor [`Thread::quota_group`] holds (a cheap pre-check).
    pub(crate) fn may_have_budget(&self) -> bool {
        self.slice.is_some() || matches!(self.effective.class, Class::Quota(_))
    }

    pub(crate) fn quota_group(&self) -> Option<u32> {
        match self.effective.class {
            Class::Quota(group) if self.lifecycle != Lifecycle::Exited => Some(group),
            _ => None,
        }
    }
}
