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

    /// CPUs `0..count` (all of [`MAX_CPUS`] if `count` exceeds it).
    pub const fn below(count: usize) -> Self {
        if count >= MAX_CPUS { Self((((1u16) << MAX_CPUS) - 1) as u8) } else { Self(((1u16 << count) - 1) as u8) }
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

    /// Removes `cpu` (ignored if not below [`MAX_CPUS`]).
    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !Self::only(cpu).0;
    }

    /// The CPUs in either set.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The CPUs in the set, ascending (one bit scan per CPU, no loop over absent ones).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let cpu = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(cpu)
        })
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The CPU sets of [`Effects`] without the per-CPU deadlines, drained by
/// [`crate::OobCore::effect_masks`]: the cheap form for a glue that reads only its own CPU's
/// deadline (with [`crate::OobCore::hardware_deadline`]) and kicks the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EffectMasks {
    /// As [`Effects::resched`].
    pub resched: CpuMask,
    /// As [`Effects::reprogram`].
    pub reprogram: CpuMask,
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
