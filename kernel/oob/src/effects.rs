//! What the arch glue must do after calling into the core: reschedule CPUs (IPI the remote ones)
//! and reprogram hardware timers.

use core::fmt;

use crate::MAX_CPUS;
use crate::time::Instant;

/// A set of CPUs.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask(u8);

const _: () = assert!(MAX_CPUS <= 8, "CpuMask holds one bit per CPU in a u8");

impl CpuMask {
    /// No CPU.
    pub const EMPTY: Self = Self(0);

    /// Only `cpu` (empty if `cpu` is not below [`MAX_CPUS`]).
    pub const fn only(cpu: usize) -> Self {
        if cpu < MAX_CPUS { Self(1 << cpu) } else { Self::EMPTY }
    }

    /// The raw bits, CPU n at bit n.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether no CPU is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }

    /// Adds `cpu` (ignored if not below [`MAX_CPUS`]).
    pub fn insert(&mut self, cpu: usize) {
        self.0 |= Self::only(cpu).0;
    }

    /// The CPUs in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_CPUS).filter(move |&cpu| self.contains(cpu))
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Work for the glue, drained by [`crate::OobCore::effects`] after each call into the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects {
    /// CPUs whose best runnable context is no longer the current one: call
    /// [`crate::OobCore::pick_next`] there (send an IPI to remote CPUs).
    pub resched: CpuMask,
    /// CPUs whose hardware timer must be reprogrammed to `timer_deadlines[cpu]` (IPI the remote
    /// ones, which read [`crate::OobCore::hardware_deadline`]). Always contains a CPU after
    /// [`crate::OobCore::on_timer`] on it, since the one-shot hardware timer was consumed.
    pub reprogram: CpuMask,
    /// Per CPU, the hardware timer deadline (timer gravity applied); `None`: disarm.
    pub timer_deadlines: [Option<Instant>; MAX_CPUS],
}
