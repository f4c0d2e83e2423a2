//! Per-CPU state of the in-band stage: which stage owns the CPU, whether the in-band stage is
//! stalled (an oob thread is runnable), and the guest's own virtual IRQ mask as last seen.
//!
//! Unlike Dovetail, the stall bit is not Linux's `local_irq_disable()`: Linux masking (PSTATE.I
//! at EL1) only masks *virtual* IRQs and never delays oob work. Here "stalled" means the oob
//! scheduler will not give the CPU to the guest vCPU, the lowest-priority "thread" of the CPU.

use crate::list_registers::ListRegisters;
use crate::replay_log::ReplayLog;
use crate::stats::DelayStats;

/// Which stage the CPU is executing (or returns to after the current exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The core's out-of-band threads (EL2).
    Oob,
    /// The guest vCPU (EL1/EL0), i.e. Linux.
    InBand,
}

/// Counters of the stage state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallStats {
    /// Transitions from unstalled to stalled.
    pub stalls: u64,
    /// Duration of completed stalls (first oob thread runnable to none runnable).
    pub stall_time: DelayStats,
    /// Guest exits observed with virtual IRQs masked (PSTATE.I set).
    pub exits_masked: u64,
    /// Guest exits observed with virtual IRQs unmasked.
    pub exits_unmasked: u64,
}

/// Per-CPU in-band stage state.
#[derive(Clone, Copy, Debug)]
pub struct StageState {
    current: Stage,
    oob_runnable: u32,
    guest_irqs_masked: bool,
    stalled_since: u64,
    stats: StallStats,
}

impl Default for StageState {
    fn default() -> Self {
        Self::new()
    }
}

impl StageState {
    /// Boot state: the core (oob) runs, nothing runnable, guest IRQs considered masked (a vCPU
    /// enters with PSTATE.DAIF all set).
    pub const fn new() -> Self {
        Self {
            current: Stage::Oob,
            oob_runnable: 0,
            guest_irqs_masked: true,
            stalled_since: 0,
            stats: StallStats {
                stalls: 0,
                stall_time: DelayStats::new(),
                exits_masked: 0,
                exits_unmasked: 0,
            },
        }
    }

    /// The stage executing now.
    pub const fn current(&self) -> Stage {
        self.current
    }

    /// Records a stage switch (the oob scheduler switched to `stage`).
    pub fn set_current(&mut self, stage: Stage) {
        self.current = stage;
    }

    /// An oob thread became runnable at `now` (ns); the first one stalls the in-band stage.
    pub fn oob_thread_ready(&mut self, now: u64) {
        self.set_oob_runnable(self.oob_runnable.saturating_add(1), now);
    }

    /// An oob thread blocked or exited at `now` (ns); the last one unstalls the in-band stage.
    pub fn oob_thread_blocked(&mut self, now: u64) {
        self.set_oob_runnable(self.oob_runnable.saturating_sub(1), now);
    }

    /// Sets the number of runnable oob threads (as the scheduler counts them) at `now` (ns).
    pub fn set_oob_runnable(&mut self, count: u32, now: u64) {
        match (self.oob_runnable, count) {
            (0, 1..) => {
                self.stats.stalls += 1;
                self.stalled_since = now;
            }
            (1.., 0) => self
                .stats
                .stall_time
                .record_between(self.stalled_since, now),
            _ => {}
        }
        self.oob_runnable = count;
    }

    /// Number of runnable oob threads.
    pub const fn oob_runnable(&self) -> u32 {
        self.oob_runnable
    }

    /// True while an oob thread is runnable: the in-band stage may not run.
    pub const fn is_stalled(&self) -> bool {
        self.oob_runnable > 0
    }

    /// Records the guest's virtual IRQ mask seen at a guest exit (SPSR_EL2.I of the vCPU).
    pub fn note_guest_irq_mask(&mut self, masked: bool) {
        self.guest_irqs_masked = masked;
        if masked {
            self.stats.exits_masked += 1;
        } else {
            self.stats.exits_unmasked += 1;
        }
    }

    /// The guest's virtual IRQ mask as last seen. Informational: injecting into the LRs while
    /// it is set is fine (the guest takes the IRQ when it unmasks, without an exit).
    pub const fn guest_irqs_masked(&self) -> bool {
        self.guest_irqs_masked
    }

    /// Can a freshly logged IRQ go to the list registers right away? True when the in-band
    /// stage is the current context, is not stalled, and `lrs` can take the log's best entry
    /// (a free LR, or one flush may evict). Otherwise it waits in the log until the in-band
    /// stage resumes or a maintenance interrupt frees room.
    pub fn should_inject_now<const L: usize>(
        &self,
        lrs: &ListRegisters,
        log: &ReplayLog<L>,
    ) -> bool {
        self.current == Stage::InBand && !self.is_stalled() && lrs.can_accept(log)
    }

    /// A snapshot of the counters.
    pub const fn stats(&self) -> StallStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intid::{IntId, Trigger, VirqDesc};

    #[test]
    fn stall_follows_oob_runnable() {
        let mut s = StageState::new();
        assert!(!s.is_stalled());
        s.oob_thread_ready(100);
        s.oob_thread_ready(150);
        assert!(s.is_stalled());
        s.oob_thread_blocked(200);
        assert!(s.is_stalled());
        s.oob_thread_blocked(400);
        assert!(!s.is_stalled());
        s.oob_thread_blocked(500); // saturates, no bogus stall
        assert_eq!(s.oob_runnable(), 0);
        let st = s.stats();
        assert_eq!((st.stalls, st.stall_time.max()), (1, Some(300)));
        s.note_guest_irq_mask(false);
        assert!(!s.guest_irqs_masked());
        s.note_guest_irq_mask(true);
        assert_eq!((s.stats().exits_masked, s.stats().exits_unmasked), (1, 1));
    }

    #[test]
    fn inject_now_only_in_band_unstalled_with_room() {
        let mut log = Box::new(ReplayLog::<32>::new());
        let mut lrs = ListRegisters::new(2).unwrap();
        let mut s = StageState::new();
        let d = |raw, prio| VirqDesc::new(IntId::new(raw).unwrap(), prio, Trigger::Edge).unwrap();
        log.raise(d(40, 0x80), 0);
        assert!(!s.should_inject_now(&lrs, &log), "oob is current");
        s.set_current(Stage::InBand);
        assert!(s.should_inject_now(&lrs, &log));
        s.oob_thread_ready(1);
        assert!(!s.should_inject_now(&lrs, &log), "stalled");
        s.oob_thread_blocked(2);
        log.raise(d(41, 0x80), 0);
        lrs.flush(&mut log, 3, |_| true);
        assert!(!s.should_inject_now(&lrs, &log), "log empty");
        log.raise(d(42, 0x90), 4);
        assert!(
            !s.should_inject_now(&lrs, &log),
            "LRs full of better entries"
        );
        log.raise(d(43, 0x10), 5);
        assert!(
            s.should_inject_now(&lrs, &log),
            "evicts a worse pending entry"
        );
    }
}
