//! The portable heart of the out-of-band (oob) scheduler of the companion core, modelled on EVL
//! (Xenomai 4).
//!
//! [`OobCore`] is a deterministic state machine with no hardware access: the arch glue calls it
//! under one lock with the current time ([`Instant`], nanoseconds of the monotonic clock) and
//! applies the [`Effects`] it returns: reschedule CPUs (IPI the remote ones) and program the
//! per-CPU hardware timer. On every CPU, Linux is the in-band stage, the lowest-priority context,
//! run when no oob thread is runnable ([`Runnable::InBand`]).
//!
//! A typical glue loop on CPU `c`:
//!
//! ```
//! use oob::{Instant, OobCore, Policy, Runnable, ThreadSpec};
//!
//! let mut core = OobCore::new(1).unwrap();
//! let now = Instant::from_nanos(1_000);
//! let worker = core.spawn(ThreadSpec::new("worker", 0, Policy::Fifo, 80)).unwrap();
//! let effects = core.effects();
//! assert!(effects.resched.contains(0));
//! let next = core.pick_next(0, now).unwrap();
//! assert_eq!(next, Runnable::Oob(worker));
//! core.switched(0, core.current(0).unwrap(), next, now).unwrap();
//! // ... the glue switches context; later the hardware timer fires: core.on_timer(0, now) ...
//! ```
//!
//! Module map: [`time`] (clock values), [`timer`] (timer queue, gravity), [`thread`] (control
//! block), [`sched`] (run queue and the FIFO/RR/TP/quota classes, with the class order),
//! [`sync`] (blocking, mutex with priority inheritance, semaphore, event flags, sleep),
//! [`oob_core`] (the entry points), [`effects`], [`ps`] (snapshot and table), [`error`].
//!
//! Nothing on the scheduling paths allocates: memory grows only when threads, timers, mutexes,
//! semaphores, event groups and quota groups are created.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod arena;
mod list;

pub mod effects;
pub mod error;
pub mod oob_core;
pub mod ps;
pub mod sched;
pub mod sync;
pub mod thread;
pub mod time;
pub mod timer;
pub mod xbuf;

#[cfg(test)]
mod tests;

pub use effects::{CpuMask, EffectMasks, Effects};
pub use error::Error;
pub use oob_core::OobCore;
pub use oob_core::schedule::{SwitchTo, TickRescheduled, TimerTick};
pub use oob_core::timers::{TimerExpiry, TimerHandle};
pub use ps::{InBandInfo, Snapshot, ThreadInfo};
pub use sched::Runnable;
pub use sched::quota::QuotaGroupId;
pub use sched::tp::{TP_PARTITIONS, TpWindow};
pub use sync::flags::{FlagsCondition, FlagsId, FlagsMode};
pub use sync::mutex::MutexId;
pub use sync::semaphore::SemaphoreId;
pub use sync::{Wait, WaitObject, WakeReason};
pub use thread::{Policy, ThreadId, ThreadSpec, ThreadState, ThreadStats};
pub use time::{Duration, Instant, Timeout};
pub use timer::{Gravity, TimerContext};

/// The largest number of CPUs a core manages.
pub const MAX_CPUS: usize = 8;
