//! The console: one physical UART shared by every CPU, fed through a ring buffer so that
//! producing output never waits for the UART, and the `log` backend that stamps each core
//! line with its time since boot and CPU.
//!
//! # Producing (`write_fmt`, the logger, the guest's console lines)
//!
//! A writer formats its record (one `write_fmt` call: a line, or a few) on its own stack,
//! then copies it into `RING` under the ring's IRQ-safe lock: the critical section copies
//! bytes and nothing else. A record goes in whole, so lines from different CPUs and contexts
//! (core, guest, oob threads) never interleave, and records come out in the order they went
//! in. A record longer than the stack buffer ([`STAGING_SIZE`]) is measured first, then
//! formatted straight into the ring under the lock (rare: tables printed at the end of a run;
//! preformat them into a string when the lock must stay short).
//!
//! The guest's console lines skip formatting: `write_line_from_trap` copies the line's bytes
//! and a newline into the ring as one record.
//!
//! When the ring is full, an in-band writer drains it itself until its record fits (nothing
//! is lost, nothing is reordered), or waits for another CPU's drainer to make room; an oob
//! writer (an oob thread or an interrupt handler) never waits for the UART: it drops its
//! record and counts the bytes, and the count is printed at the end of the run
//! (`console: N bytes of oob output dropped`). An in-band writer with IRQs masked (it may hold
//! an IRQ-safe lock an oob context needs) gives up too if the other CPU's drainer makes no
//! progress for 100 ms: that drainer may be preempted by the very oob context that waits for
//! the lock.
//!
//! # Draining (`drain`)
//!
//! The UART is written by one drainer at a time, whoever holds its try-lock; the others skip
//! (the holder drains what they left). Draining happens in in-band contexts only — on the way
//! back into the guest after a guest exit, in each CPU's in-band idle loop and in-band sleeps
//! — with IRQs unmasked while the UART is waited for: an oob interrupt preempts the drain,
//! and may switch to an oob thread, which saves the in-band context, drainer stack and all,
//! until the CPU comes back to it. Oob threads and interrupt handlers never drain.
//!
//! Until the boot flow calls `defer_output` (once the scheduler runs and CPU 0's in-band
//! stage has IRQs on), every in-band write drains at once, so early boot output appears as it
//! is written.
//!
//! # The end of a run
//!
//! `finish` (from `crate::power::exit`) and `write_fmt_emergency` (panics, fatal
//! exception dumps, the verdict) take the UART from whoever holds it (waiting while the holder
//! makes progress), write out what the ring holds, then write directly to the UART.

pub mod ring;

#[cfg(target_os = "none")]
mod drain;
#[cfg(target_os = "none")]
mod logger;
#[cfg(target_os = "none")]
mod write;

#[cfg(target_os = "none")]
pub use drain::{defer_output, drain, drain_giving_way, finish, init, write_fmt_emergency, write_unbuffered};
#[cfg(target_os = "none")]
pub use logger::{counter_frequency, log_from_trap, start_log, uptime_ns};
#[cfg(target_os = "none")]
pub use write::{dropped_bytes, write_fmt, write_fmt_from_trap, write_line_from_trap};

/// Size of the console ring: about 5.7 s of output at 115200 baud.
pub const RING_SIZE: usize = 64 * 1024;
/// The stack buffer a record is formatted into before it is copied into the ring (a longer
/// record takes the slow path). Fits a log line and a full line of the guest's console.
pub const STAGING_SIZE: usize = 320;

/// The ring every writer fills and the drainer empties. IRQ-safe: any context may write.
#[cfg(target_os = "none")]
static RING: crate::arch::irq_lock::IrqSpinLock<ring::Ring<RING_SIZE>> =
    crate::arch::irq_lock::IrqSpinLock::new(ring::Ring::new());

/// Whether the ring may hold bytes to drain: set under the ring's lock by every record, cleared
/// under it by the drainer that finds the ring empty. Read without the lock by the drain
/// points, so that the common case (nothing to print) costs one load.
#[cfg(target_os = "none")]
static PENDING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// How a writer that must make room in a full ring waits for the UART.
#[cfg(target_os = "none")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// With the caller's interrupt mask (it may hold an IRQ-safe lock).
    AsCaller,
    /// With IRQs unmasked: the caller holds no lock (a guest trap handler, an idle loop).
    Unmasked,
}

/// Whether the caller is an oob context: an oob thread or an interrupt handler. Such writers
/// never wait for the UART.
#[cfg(target_os = "none")]
fn in_oob_context() -> bool {
    crate::sched::current_thread().is_some() || crate::sched::in_irq()
}
