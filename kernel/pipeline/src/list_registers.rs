//! A model of the GIC virtual CPU interface's list registers (LRs) and the flush/sync cycle that
//! moves the replay log into them.
//!
//! The model is the authoritative copy between guest runs: the glue writes the LRs that
//! [`ListRegisters::flush`] marks dirty, lets the guest run, then reads back each LR's state
//! field and hands it to [`ListRegisters::sync_from_hardware`]. Encoding/decoding of the actual
//! register formats (`ICH_LR<n>_EL2`, `GICH_LR<n>`) is the vGIC backend's job.
//!
//! Policy (after KVM's vGIC, maintenance bits only as needed):
//! - LRs hold the best entries: a free LR is used first; otherwise a *pending* LR whose entry
//!   sorts after the candidate is evicted back to the log (the guest never saw it), so the
//!   guest always acknowledges the globally highest-priority pending interrupt first (for the
//!   same reason, when nothing can be made room for, the pending half of a pending+active LR
//!   that sorts after the waiting entry is taken back to the log);
//!   optionally ([`ListRegisters::set_fall_out`]) the lowest-priority *active* LR is moved out
//!   ("falls out") to make room for a strictly higher-priority interrupt, and its later EOI is
//!   accounted through EOIcount.
//! - An INTID is never in two LRs: a log entry whose INTID is pending in an LR is coalesced;
//!   one whose INTID is active (without HW link) turns that LR into pending+active.
//!   Hardware-linked interrupts are never made pending+active (the pending state lives in the
//!   physical distributor); such an entry waits in the log.
//! - When entries remain in the log for lack of room, [`Maintenance::underflow`] asks for the
//!   underflow maintenance interrupt (ICH_HCR_EL2.UIE / GICH_HCR.UIE: asserted when at most one
//!   LR is valid). NPIE is deliberately not used: when it fires, the LRs it reports as "no
//!   longer pending" are usually still active, so nothing could be injected and a second exit
//!   would follow. While active interrupts are fallen out, [`Maintenance::eoi_count`] asks for
//!   LRENPIE so their EOIs (EOIcount increments) raise a maintenance interrupt.

use crate::intid::{Error, IntId, Trigger, VirqDesc};
use crate::prio_set::Key;
use crate::replay_log::{Pending, ReplayLog};
use crate::stats::DelayStats;

/// Largest number of list registers an implementation can have (ICH_VTR_EL2.ListRegs + 1 <= 16;
/// GICv2's GICH_VTR allows up to 64 but real parts have 4).
pub const MAX_LRS: usize = 16;
/// Maximum number of active interrupts that can be fallen out at once. The guest can only nest
/// active interrupts of distinct group priorities (at most 32 with 5 priority bits); when full,
/// nothing more falls out (a priority inversion at worst, never a loss).
pub const FALLEN_OUT_CAPACITY: usize = 64;

/// Model state of one list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// Invalid: free for a new interrupt.
    Empty,
    /// Pending: the guest has not acknowledged it yet.
    Pending(VirqDesc),
    /// Active: acknowledged, not yet deactivated by the guest.
    Active(VirqDesc),
    /// Pending and active: active in the guest, and pending once more behind that (never used
    /// for hardware-linked interrupts).
    PendingActive(VirqDesc),
}

impl LrState {
    /// The interrupt held, if any.
    pub const fn desc(&self) -> Option<VirqDesc> {
        match self {
            Self::Empty => None,
            Self::Pending(d) | Self::Active(d) | Self::PendingActive(d) => Some(*d),
        }
    }

    /// The state field as the hardware encodes it.
    pub const fn hw_state(&self) -> LrHwState {
        match self {
            Self::Empty => LrHwState::Empty,
            Self::Pending(_) => LrHwState::Pending,
            Self::Active(_) => LrHwState::Active,
            Self::PendingActive(_) => LrHwState::PendingActive,
        }
    }
}

/// The state field of a list register as read back from hardware after the guest ran
/// (`ICH_LR<n>_EL2.State`, bits 63:62; `GICH_LR<n>.State`, bits 29:28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrHwState {
    /// 0b00, invalid.
    Empty,
    /// 0b01, pending.
    Pending,
    /// 0b10, active.
    Active,
    /// 0b11, pending and active.
    PendingActive,
}

impl LrHwState {
    /// Decodes the 2-bit state field (only the low two bits of `bits` are used).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::Empty,
            0b01 => Self::Pending,
            0b10 => Self::Active,
            _ => Self::PendingActive,
        }
    }
}

/// Which maintenance interrupt conditions the glue must enable until the next flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Set ICH_HCR_EL2.UIE (GICH_HCR.UIE): entries remain in the log for lack of room.
    pub underflow: bool,
    /// Set ICH_HCR_EL2.LRENPIE (GICH_HCR.LRENPIE): active interrupts fell out of the LRs and
    /// their EOIs will only show as EOIcount increments.
    pub eoi_count: bool,
}

impl Maintenance {
    /// True if any maintenance interrupt is requested.
    pub const fn any(&self) -> bool {
        self.underflow || self.eoi_count
    }
}

/// What one [`ListRegisters::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Bit `i` set: LR `i` changed and must be written to hardware.
    pub dirty: u16,
    /// Log entries injected (including merges into pending+active).
    pub injected: u32,
    /// Log entries merged into an LR that already held the INTID pending.
    pub coalesced: u32,
    /// Level entries dropped because the line was no longer asserted.
    pub level_dropped: u32,
    /// Pending LRs moved back to the log to make room for higher-priority entries.
    pub evicted: u32,
    /// Active LRs moved out to make room for strictly higher-priority entries.
    pub fell_out: u32,
    /// Maintenance interrupts to enable.
    pub maintenance: Maintenance,
}

/// A guest-completed interrupt reported by [`ListRegisters::sync_from_hardware`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The interrupt the guest deactivated.
    pub desc: VirqDesc,
    /// True when the glue must deactivate `desc.hw()` on the physical GIC itself (ICC_DIR_EL1 /
    /// GICC_DIR): the interrupt had fallen out of the LRs, so the HW bit could not do it.
    pub deactivate_physical: bool,
}

/// What one [`ListRegisters::sync_from_hardware`] observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Pending interrupts the guest acknowledged.
    pub acked: u32,
    /// Interrupts the guest deactivated (in LRs or through EOIcount).
    pub completed: u32,
    /// Part of `completed`: fallen-out actives retired through EOIcount.
    pub fallen_out_completed: u32,
    /// Transitions the guest cannot cause (model/hardware mismatch) and EOIcount beyond the
    /// fallen-out interrupts. Always 0 with a correct glue.
    pub anomalies: u32,
    /// Bit `i` set: LR `i` holds something the model does not know; the glue must rewrite it
    /// from the model (as invalid).
    pub stale: u16,
}

/// Counters of one CPU's list registers. With `anomalies == 0`,
/// `injected == completed + evicted + level_dropped + resident` holds, where `resident` is
/// [`ListRegisters::resident`] (a pending+active LR holds two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LrStats {
    /// Log entries injected (equals the log's `replayed`).
    pub injected: u64,
    /// Part of `injected`: merged into an LR holding the INTID active (pending+active).
    pub merged_active: u64,
    /// Interrupts the guest acknowledged.
    pub acked: u64,
    /// Interrupts the guest deactivated.
    pub completed: u64,
    /// Pending entries moved back to the log.
    pub evicted: u64,
    /// Active entries moved out of the LRs.
    pub fell_out: u64,
    /// Part of `completed`: fallen-out interrupts retired through EOIcount.
    pub fallen_out_completed: u64,
    /// LR-resident pending level entries dropped by [`ListRegisters::resample_resident`].
    pub level_dropped: u64,
    /// See [`SyncOutcome::anomalies`].
    pub anomalies: u64,
    /// Flushes that requested a maintenance interrupt.
    pub maintenance_requests: u64,
    /// Delay from injection to the first sync that saw the guest's acknowledge. The guest's
    /// acknowledge is invisible to EL2, so this is an upper bound, as tight as exits are
    /// frequent.
    pub injection_to_ack: DelayStats,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: LrState,
    /// Physical IRQ timestamp of the pending part.
    raised_at: u64,
    /// Injection timestamp of the pending part.
    injected_at: u64,
}

const EMPTY_SLOT: Slot = Slot {
    state: LrState::Empty,
    raised_at: 0,
    injected_at: 0,
};

/// One CPU's list registers (the hardware has `count` of them, `2..=MAX_LRS`) and the active
/// interrupts that fell out of them.
#[derive(Clone, Debug)]
pub struct ListRegisters {
    slots: [Slot; MAX_LRS],
    count: usize,
    /// Fallen-out actives, sorted by descending (priority, INTID): the next to be EOI'd by the
    /// guest (highest priority) is last.
    fallen: [VirqDesc; FALLEN_OUT_CAPACITY],
    fallen_len: usize,
    fall_out: bool,
    stats: LrStats,
}

fn key_of<const L: usize>(d: &VirqDesc) -> Key {
    (ReplayLog::<L>::level_of(d.priority()), d.intid())
}

impl ListRegisters {
    /// `count` list registers as reported by the hardware (ICH_VTR_EL2.ListRegs + 1,
    /// GICH_VTR.ListRegs + 1); at least 2, at most [`MAX_LRS`]. Falling out is off.
    pub const fn new(count: usize) -> Result<Self, Error> {
        if count < 2 || count > MAX_LRS {
            return Err(Error::InvalidLrCount(count));
        }
        Ok(Self {
            slots: [EMPTY_SLOT; MAX_LRS],
            count,
            fallen: [VirqDesc::NONE; FALLEN_OUT_CAPACITY],
            fallen_len: 0,
            fall_out: false,
            stats: LrStats {
                injected: 0,
                merged_active: 0,
                acked: 0,
                completed: 0,
                evicted: 0,
                fell_out: 0,
                fallen_out_completed: 0,
                level_dropped: 0,
                anomalies: 0,
                maintenance_requests: 0,
                injection_to_ack: DelayStats::new(),
            },
        })
    }

    /// Allows or forbids moving active interrupts out of the LRs. Enable it only while the
    /// guest uses EOImode 0 (ICH_VMCR_EL2.VEOIM / GICH_VMCR.VEOIM clear, which is what Linux
    /// does at EL1): the EOIcount accounting relies on the guest deactivating in priority order.
    /// Already fallen-out interrupts are still retired through EOIcount after disabling.
    pub fn set_fall_out(&mut self, enabled: bool) {
        self.fall_out = enabled;
    }

    /// Number of list registers.
    pub const fn count(&self) -> usize {
        self.count
    }

    /// State of LR `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<LrState> {
        (i < self.count).then(|| self.slots[i].state)
    }

    /// States of all LRs, in LR order.
    pub fn iter(&self) -> impl Iterator<Item = LrState> + '_ {
        self.slots[..self.count].iter().map(|s| s.state)
    }

    /// Number of empty LRs.
    pub fn free_count(&self) -> usize {
        self.iter().filter(|s| matches!(s, LrState::Empty)).count()
    }

    /// The LR holding `intid`, if any.
    pub fn find(&self, intid: IntId) -> Option<usize> {
        self.iter()
            .position(|s| s.desc().is_some_and(|d| d.intid() == intid))
    }

    /// Fallen-out active interrupts, in the order the guest will deactivate them.
    pub fn fallen_out(&self) -> impl Iterator<Item = VirqDesc> + '_ {
        self.fallen[..self.fallen_len].iter().rev().copied()
    }

    /// Interrupt instances currently owned by the LR layer: one per pending or active LR, two
    /// per pending+active LR, one per fallen-out active.
    pub fn resident(&self) -> u64 {
        let in_lrs: u64 = self
            .iter()
            .map(|s| match s {
                LrState::Empty => 0,
                LrState::Pending(_) | LrState::Active(_) => 1,
                LrState::PendingActive(_) => 2,
            })
            .sum();
        in_lrs + self.fallen_len as u64
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LrStats {
        self.stats
    }

    /// Restarts the delay statistics; counters are kept.
    pub fn clear_delay_stats(&mut self) {
        self.stats.injection_to_ack = DelayStats::new();
    }

    /// Would [`flush`](Self::flush) inject the log's best entry right now (a free LR, or one
    /// it may evict)? Cheap: O(LRs).
    pub fn can_accept<const L: usize>(&self, log: &ReplayLog<L>) -> bool {
        let Some(best) = log.peek() else { return false };
        let key = key_of::<L>(&best.desc);
        self.free_count() > 0
            || self.evictable_pending::<L>(key).is_some()
            || self.fallable_active::<L>(key).is_some()
    }

    fn fallen_index(&self, intid: IntId) -> Option<usize> {
        self.fallen[..self.fallen_len]
            .iter()
            .position(|d| d.intid() == intid)
    }

    fn remove_fallen(&mut self, i: usize) -> VirqDesc {
        let d = self.fallen[i];
        self.fallen.copy_within(i + 1..self.fallen_len, i);
        self.fallen_len -= 1;
        d
    }

    /// Inserts into the fallen-out list, keeping it sorted by descending (priority, INTID).
    fn push_fallen(&mut self, d: VirqDesc) -> bool {
        if self.fallen_len == FALLEN_OUT_CAPACITY {
            return false;
        }
        let k = (d.priority(), d.intid());
        let pos = self.fallen[..self.fallen_len]
            .iter()
            .position(|f| (f.priority(), f.intid()) < k)
            .unwrap_or(self.fallen_len);
        self.fallen.copy_within(pos..self.fallen_len, pos + 1);
        self.fallen[pos] = d;
        self.fallen_len += 1;
        true
    }

    /// The pending LR whose entry sorts last, if it sorts after `key`.
    fn evictable_pending<const L: usize>(&self, key: Key) -> Option<usize> {
        let mut worst: Option<(Key, usize)> = None;
        for (i, s) in self.slots[..self.count].iter().enumerate() {
            if let LrState::Pending(d) = s.state {
                let k = key_of::<L>(&d);
                if worst.is_none_or(|(w, _)| k > w) {
                    worst = Some((k, i));
                }
            }
        }
        worst.filter(|(w, _)| *w > key).map(|(_, i)| i)
    }

    /// The lowest-priority active LR, if falling out is enabled, there is room, and its level
    /// is strictly lower in priority than `key`'s.
    fn fallable_active<const L: usize>(&self, key: Key) -> Option<usize> {
        if !self.fall_out || self.fallen_len == FALLEN_OUT_CAPACITY {
            return None;
        }
        let mut lowest: Option<((u8, IntId), usize)> = None;
        for (i, s) in self.slots[..self.count].iter().enumerate() {
            if let LrState::Active(d) = s.state {
                let k = (d.priority(), d.intid());
                if lowest.is_none_or(|(w, _)| k > w) {
                    lowest = Some((k, i));
                }
            }
        }
        lowest
            .filter(|((prio, _), _)| ReplayLog::<L>::level_of(*prio) > key.0)
            .map(|(_, i)| i)
    }

    /// Finds an LR for an entry with `key`: a free one, else by evicting a worse pending entry
    /// to the log, else by moving a lower-priority active entry out.
    fn acquire_slot<const L: usize>(
        &mut self,
        key: Key,
        log: &mut ReplayLog<L>,
        out: &mut FlushOutcome,
    ) -> Option<usize> {
        if let Some(i) = self.slots[..self.count]
            .iter()
            .position(|s| matches!(s.state, LrState::Empty))
        {
            return Some(i);
        }
        if let Some(i) = self.evictable_pending::<L>(key) {
            let slot = self.slots[i];
            if let LrState::Pending(desc) = slot.state {
                log.requeue(Pending {
                    desc,
                    raised_at: slot.raised_at,
                });
                self.slots[i] = EMPTY_SLOT;
                self.stats.evicted += 1;
                out.evicted += 1;
                out.dirty |= 1 << i;
                return Some(i);
            }
        }
        if let Some(i) = self.fallable_active::<L>(key)
            && let LrState::Active(desc) = self.slots[i].state
            && self.push_fallen(desc)
        {
            self.slots[i] = EMPTY_SLOT;
            self.stats.fell_out += 1;
            out.fell_out += 1;
            out.dirty |= 1 << i;
            return Some(i);
        }
        None
    }

    /// When no LR can be had for `key`: takes the pending half of every pending+active LR that
    /// sorts after `key` back to the log (the LR becomes active), so the guest cannot
    /// acknowledge it before the better entry waiting in the log. Returns true if any changed.
    fn demote_pending_active<const L: usize>(
        &mut self,
        key: Key,
        log: &mut ReplayLog<L>,
        out: &mut FlushOutcome,
    ) -> bool {
        let mut any = false;
        for i in 0..self.count {
            let slot = self.slots[i];
            if let LrState::PendingActive(d) = slot.state
                && key_of::<L>(&d) > key
            {
                log.requeue(Pending {
                    desc: d,
                    raised_at: slot.raised_at,
                });
                self.slots[i].state = LrState::Active(d);
                self.stats.evicted += 1;
                out.evicted += 1;
                out.dirty |= 1 << i;
                any = true;
            }
        }
        any
    }

    /// Moves the highest-priority entries of `log` into the LRs at time `now` (ns).
    ///
    /// `line_asserted` is asked, for each level entry about to be injected (or merged), whether
    /// its line is still asserted; if it answers false the entry is dropped as not pending, and
    /// if the entry is hardware-linked the glue must deactivate its physical INTID (it was
    /// acknowledged and priority-dropped but never deactivated).
    ///
    /// Returns the LRs to write back and the maintenance interrupts to enable. No allocation;
    /// O(LRs) per injected entry plus O(LRs) for the merge pass.
    pub fn flush<const L: usize>(
        &mut self,
        log: &mut ReplayLog<L>,
        now: u64,
        mut line_asserted: impl FnMut(&VirqDesc) -> bool,
    ) -> FlushOutcome {
        let mut out = FlushOutcome::default();

        // Pass 1: log entries whose INTID already sits in an LR.
        for i in 0..self.count {
            match self.slots[i].state {
                LrState::Empty => {}
                LrState::Pending(d) | LrState::PendingActive(d) => {
                    if log.take_coalesced(d.intid()).is_some() {
                        out.coalesced += 1;
                    }
                }
                LrState::Active(d) => {
                    let id = d.intid();
                    let Some(p) = log.get(id) else { continue };
                    if d.hw().is_some() || p.desc.hw().is_some() {
                        continue; // never pending+active with HW=1: wait in the log
                    }
                    if p.desc.trigger() == Trigger::Level && !line_asserted(&p.desc) {
                        log.take_level_dropped(id);
                        out.level_dropped += 1;
                        continue;
                    }
                    if let Some(p) = log.take_for_injection(id, now) {
                        self.slots[i] = Slot {
                            state: LrState::PendingActive(d),
                            raised_at: p.raised_at,
                            injected_at: now,
                        };
                        self.stats.injected += 1;
                        self.stats.merged_active += 1;
                        out.injected += 1;
                        out.dirty |= 1 << i;
                    }
                }
            }
        }

        // Pass 2: the rest, best first, while there is room.
        let mut cursor = log.first_key();
        while let Some(key) = cursor {
            let id = key.1;
            if let Some(p) = log.get(id) {
                let in_lr = self.find(id).is_some();
                let fallen = self.fallen_index(id).is_some();
                if in_lr || (fallen && p.desc.hw().is_some()) {
                    // Hardware-linked and still active in the guest: cannot be pending+active.
                } else if p.desc.trigger() == Trigger::Level && !line_asserted(&p.desc) {
                    log.take_level_dropped(id);
                    out.level_dropped += 1;
                } else {
                    let mut slot = self.acquire_slot(key, log, &mut out);
                    if slot.is_none() && self.demote_pending_active::<L>(key, log, &mut out) {
                        slot = self.acquire_slot(key, log, &mut out);
                    }
                    let Some(i) = slot else {
                        out.maintenance.underflow = true;
                        break;
                    };
                    if let Some(p) = log.take_for_injection(id, now) {
                        let state = match self.fallen_index(id) {
                            // Its active part comes back into the LR: the guest's EOI will hit it.
                            Some(f) => LrState::PendingActive(self.remove_fallen(f)),
                            None => LrState::Pending(p.desc),
                        };
                        self.slots[i] = Slot {
                            state,
                            raised_at: p.raised_at,
                            injected_at: now,
                        };
                        self.stats.injected += 1;
                        out.injected += 1;
                        out.dirty |= 1 << i;
                    }
                }
            }
            cursor = log.next_key(key);
        }

        out.maintenance.eoi_count = self.fallen_len > 0;
        if out.maintenance.any() {
            self.stats.maintenance_requests += 1;
        }
        out
    }

    /// Folds back the LR states the guest left (`states[i]` for LR `i`, exactly
    /// [`count`](Self::count) of them) and `eoi_count` (ICH_HCR_EL2.EOIcount / GICH_HCR.EOICount,
    /// which the glue must then reset to 0) at time `now` (ns).
    ///
    /// Pending→active/empty records an acknowledge (and its delay); active→empty (or the active
    /// half of pending+active) a completion, reported through `on_complete`. Each EOIcount unit
    /// retires the highest-priority fallen-out interrupt; for those `deactivate_physical` is set
    /// when they are hardware-linked. LRs still pending stay as they are.
    pub fn sync_from_hardware(
        &mut self,
        states: &[LrHwState],
        eoi_count: u32,
        now: u64,
        mut on_complete: impl FnMut(Completion),
    ) -> Result<SyncOutcome, Error> {
        if states.len() != self.count {
            return Err(Error::LrStateCount {
                expected: self.count,
                got: states.len(),
            });
        }
        let mut out = SyncOutcome::default();
        for (i, &hw) in states.iter().enumerate() {
            let slot = self.slots[i];
            let mut acked = 0;
            let mut completed = 0;
            let new_state = match (slot.state, hw) {
                (LrState::Empty, LrHwState::Empty) => LrState::Empty,
                (LrState::Pending(d), LrHwState::Pending) => LrState::Pending(d),
                (LrState::Active(d), LrHwState::Active) => LrState::Active(d),
                (LrState::PendingActive(d), LrHwState::PendingActive) => LrState::PendingActive(d),
                (LrState::Pending(d), LrHwState::Active) => {
                    acked = 1;
                    LrState::Active(d)
                }
                (LrState::Pending(_), LrHwState::Empty) => {
                    acked = 1;
                    completed = 1;
                    LrState::Empty
                }
                (LrState::Active(_), LrHwState::Empty) => {
                    completed = 1;
                    LrState::Empty
                }
                (LrState::PendingActive(d), LrHwState::Pending) => {
                    completed = 1;
                    LrState::Pending(d)
                }
                (LrState::PendingActive(d), LrHwState::Active) => {
                    completed = 1;
                    acked = 1;
                    LrState::Active(d)
                }
                (LrState::PendingActive(_), LrHwState::Empty) => {
                    completed = 2;
                    acked = 1;
                    LrState::Empty
                }
                (LrState::Empty, _) => {
                    out.anomalies += 1;
                    out.stale |= 1 << i;
                    LrState::Empty
                }
                // The guest cannot make an interrupt pending again, nor un-acknowledge it:
                // adopt what the hardware holds.
                (LrState::Pending(d) | LrState::Active(d), LrHwState::PendingActive) => {
                    out.anomalies += 1;
                    LrState::PendingActive(d)
                }
                (LrState::Active(d), LrHwState::Pending) => {
                    out.anomalies += 1;
                    LrState::Pending(d)
                }
            };
            if let Some(d) = slot.state.desc() {
                for _ in 0..completed {
                    on_complete(Completion {
                        desc: d,
                        deactivate_physical: false,
                    });
                }
            }
            if acked > 0 {
                self.stats
                    .injection_to_ack
                    .record_between(slot.injected_at, now);
            }
            out.acked += acked;
            out.completed += completed;
            self.slots[i].state = new_state;
        }

        for _ in 0..eoi_count {
            if self.fallen_len == 0 {
                out.anomalies += 1;
                continue;
            }
            self.fallen_len -= 1;
            let desc = self.fallen[self.fallen_len];
            on_complete(Completion {
                desc,
                deactivate_physical: desc.hw().is_some(),
            });
            out.completed += 1;
            out.fallen_out_completed += 1;
        }

        self.stats.acked += u64::from(out.acked);
        self.stats.completed += u64::from(out.completed);
        self.stats.fallen_out_completed += u64::from(out.fallen_out_completed);
        self.stats.anomalies += u64::from(out.anomalies);
        Ok(out)
    }

    /// Drops LR-resident *pending* level interrupts whose line is no longer asserted (KVM does
    /// the same for mapped level interrupts). Call between `sync_from_hardware` and `flush`
    /// when the cost of sampling is acceptable (e.g. from the maintenance handler); a dropped
    /// hardware-linked entry must have its physical INTID deactivated by the glue. Returns the
    /// LRs to write back.
    pub fn resample_resident(&mut self, mut line_asserted: impl FnMut(&VirqDesc) -> bool) -> u16 {
        let mut dirty = 0;
        for i in 0..self.count {
            if let LrState::Pending(d) = self.slots[i].state
                && d.trigger() == Trigger::Level
                && !line_asserted(&d)
            {
                self.slots[i] = EMPTY_SLOT;
                self.stats.level_dropped += 1;
                dirty |= 1 << i;
            }
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay_log::DEFAULT_LEVELS;

    type Log = ReplayLog<DEFAULT_LEVELS>;

    fn id(raw: u32) -> IntId {
        IntId::new(raw).unwrap()
    }

    fn edge(raw: u32, prio: u8) -> VirqDesc {
        VirqDesc::new(id(raw), prio, Trigger::Edge).unwrap()
    }

    fn hw_states(lrs: &ListRegisters) -> Vec<LrHwState> {
        lrs.iter().map(|s| s.hw_state()).collect()
    }

    fn assert_unique(lrs: &ListRegisters) {
        let ids: Vec<u32> = lrs
            .iter()
            .filter_map(|s| s.desc())
            .map(|d| d.intid().raw())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "an INTID is in two LRs: {ids:?}");
    }

    #[test]
    fn lr_count_refused() {
        assert_eq!(ListRegisters::new(0).err(), Some(Error::InvalidLrCount(0)));
        assert_eq!(ListRegisters::new(1).err(), Some(Error::InvalidLrCount(1)));
        assert_eq!(
            ListRegisters::new(17).err(),
            Some(Error::InvalidLrCount(17))
        );
        assert!(ListRegisters::new(4).is_ok());
        assert!(ListRegisters::new(16).is_ok());
        let mut lrs = ListRegisters::new(4).unwrap();
        let r = lrs.sync_from_hardware(&[LrHwState::Empty; 3], 0, 0, |_| {});
        assert_eq!(
            r,
            Err(Error::LrStateCount {
                expected: 4,
                got: 3
            })
        );
    }

    /// 40 pending, 4 LRs, a guest that acknowledges the best pending LR and completes it, and
    /// exits only for maintenance: everything is delivered exactly once, in priority order, and
    /// maintenance is requested exactly while entries remain.
    #[test]
    fn more_pending_than_lrs() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(4).unwrap();
        for n in 0..40u32 {
            // Scrambled priorities and INTIDs.
            let raw = 32 + (n * 37) % 200;
            log.raise(edge(raw, ((n * 53) % 256) as u8), 0);
        }
        let mut expected: Vec<(u8, u32)> = log
            .iter()
            .map(|p| (Log::level_of(p.desc.priority()), p.desc.intid().raw()))
            .collect();
        expected.sort_unstable();
        let mut delivered = Vec::new();
        let mut now = 0;
        let mut out = lrs.flush(&mut log, now, |_| true);
        let mut exits = 0;
        loop {
            assert_eq!(out.maintenance.underflow, !log.is_empty());
            assert!(!out.maintenance.eoi_count);
            assert_unique(&lrs);
            // Guest runs: take the best pending LR, handle, EOI; repeat while it can.
            let mut hw = hw_states(&lrs);
            loop {
                let best = (0..4)
                    .filter(|&i| hw[i] == LrHwState::Pending)
                    .min_by_key(|&i| {
                        let d = lrs.get(i).unwrap().desc().unwrap();
                        (Log::level_of(d.priority()), d.intid())
                    });
                let Some(i) = best else { break };
                let d = lrs.get(i).unwrap().desc().unwrap();
                delivered.push((Log::level_of(d.priority()), d.intid().raw()));
                hw[i] = LrHwState::Empty;
                // UIE fires when at most one LR is valid.
                let valid = hw.iter().filter(|s| **s != LrHwState::Empty).count();
                if out.maintenance.underflow && valid <= 1 {
                    break;
                }
            }
            let valid = hw.iter().filter(|s| **s != LrHwState::Empty).count();
            let maintenance_fires = out.maintenance.underflow && valid <= 1;
            now += 1000;
            let s = lrs.sync_from_hardware(&hw, 0, now, |_| {}).unwrap();
            assert_eq!(s.anomalies, 0);
            if !maintenance_fires {
                break;
            }
            exits += 1;
            out = lrs.flush(&mut log, now, |_| true);
        }
        assert!(log.is_empty());
        assert_eq!(
            delivered, expected,
            "not delivered exactly once in priority order"
        );
        assert!(
            exits >= 10,
            "only {exits} maintenance exits for 40 IRQs in 4 LRs"
        );
        let (ls, rs) = (log.stats(), lrs.stats());
        assert!(ls.balanced());
        assert_eq!((ls.logged, ls.replayed, ls.lost), (40, 40, 0));
        assert_eq!(
            (rs.injected, rs.acked, rs.completed, rs.anomalies),
            (40, 40, 40, 0)
        );
        assert_eq!(
            rs.injected,
            rs.completed + rs.evicted + rs.level_dropped + lrs.resident()
        );
    }

    #[test]
    fn higher_priority_evicts_pending() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(2).unwrap();
        log.raise(edge(40, 0x80), 0);
        log.raise(edge(41, 0x80), 0);
        log.raise(edge(42, 0x90), 0);
        let out = lrs.flush(&mut log, 10, |_| true);
        assert_eq!(
            (out.injected, out.dirty, out.maintenance.underflow),
            (2, 0b11, true)
        );
        log.raise(edge(43, 0x10), 20);
        let out = lrs.flush(&mut log, 30, |_| true);
        assert_eq!((out.injected, out.evicted), (1, 1));
        // 41 (same level as 40, higher INTID) went back to the log.
        assert!(lrs.find(id(43)).is_some() && lrs.find(id(40)).is_some());
        assert_eq!(
            log.iter().map(|p| p.desc.intid().raw()).collect::<Vec<_>>(),
            [41, 42]
        );
        let ls = log.stats();
        assert_eq!((ls.requeued, ls.irq_to_injection.count()), (1, 3));
        assert!(ls.balanced());
    }

    #[test]
    fn merges_never_duplicate() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(4).unwrap();
        log.raise(edge(50, 0x80), 0);
        lrs.flush(&mut log, 1, |_| true);
        // Raised again while pending in the LR: coalesced at flush.
        log.raise(edge(50, 0x80), 2);
        let out = lrs.flush(&mut log, 3, |_| true);
        assert_eq!((out.injected, out.coalesced, out.dirty), (0, 1, 0));
        // Guest acknowledges; raised again while active: pending+active in the same LR.
        lrs.sync_from_hardware(
            &[
                LrHwState::Active,
                LrHwState::Empty,
                LrHwState::Empty,
                LrHwState::Empty,
            ],
            0,
            4,
            |_| {},
        )
        .unwrap();
        log.raise(edge(50, 0x80), 5);
        let out = lrs.flush(&mut log, 6, |_| true);
        assert_eq!((out.injected, out.dirty), (1, 0b1));
        assert_eq!(lrs.get(0), Some(LrState::PendingActive(edge(50, 0x80))));
        assert_unique(&lrs);
        // Hardware-linked and active: never pending+active, it waits in the log.
        let hw = edge(60, 0x80).with_hw(id(60)).unwrap();
        log.raise(hw, 7);
        lrs.flush(&mut log, 8, |_| true);
        lrs.sync_from_hardware(
            &[
                LrHwState::PendingActive,
                LrHwState::Active,
                LrHwState::Empty,
                LrHwState::Empty,
            ],
            0,
            9,
            |_| {},
        )
        .unwrap();
        log.raise(hw, 10);
        let out = lrs.flush(&mut log, 11, |_| true);
        assert_eq!(out.injected, 0);
        assert!(!out.maintenance.underflow);
        assert!(log.contains(id(60)));
        assert_unique(&lrs);
        // Once the guest deactivated it, the next flush injects it.
        let mut done = Vec::new();
        lrs.sync_from_hardware(
            &[
                LrHwState::Pending,
                LrHwState::Empty,
                LrHwState::Empty,
                LrHwState::Empty,
            ],
            0,
            12,
            |c| done.push(c),
        )
        .unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|c| !c.deactivate_physical));
        let out = lrs.flush(&mut log, 13, |_| true);
        assert_eq!(out.injected, 1);
        assert!(log.is_empty());
        let (ls, rs) = (log.stats(), lrs.stats());
        assert!(ls.balanced());
        assert_eq!(
            rs.injected,
            rs.completed + rs.evicted + rs.level_dropped + lrs.resident()
        );
    }

    #[test]
    fn level_resampled_at_injection_and_in_lrs() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(4).unwrap();
        let a = VirqDesc::new(id(70), 0x80, Trigger::Level)
            .unwrap()
            .with_hw(id(70))
            .unwrap();
        let b = VirqDesc::new(id(71), 0x80, Trigger::Level).unwrap();
        log.raise(a, 0);
        log.raise(b, 0);
        let mut dropped = Vec::new();
        let out = lrs.flush(&mut log, 1, |d| {
            let high = d.intid() != id(70);
            if !high {
                dropped.push(*d);
            }
            high
        });
        assert_eq!((out.injected, out.level_dropped), (1, 1));
        assert_eq!(dropped, [a]);
        assert_eq!(log.stats().level_dropped, 1);
        // 71 sits pending in an LR; its line drops before the guest takes it.
        assert_eq!(lrs.resample_resident(|_| true), 0);
        assert_eq!(lrs.resample_resident(|_| false), 0b1);
        assert_eq!(lrs.free_count(), 4);
        let rs = lrs.stats();
        assert_eq!(rs.level_dropped, 1);
        assert_eq!(
            rs.injected,
            rs.completed + rs.evicted + rs.level_dropped + lrs.resident()
        );
        assert!(log.stats().balanced());
    }

    /// All LRs active (nested guest handlers); a strictly higher-priority interrupt arrives.
    /// With falling out enabled the lowest-priority active leaves the LRs, and its EOI comes
    /// back as EOIcount.
    #[test]
    fn active_fall_out_and_eoi_count() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(2).unwrap();
        let low = edge(80, 0xc0).with_hw(id(80)).unwrap();
        let mid = edge(81, 0x80);
        log.raise(low, 0);
        log.raise(mid, 0);
        lrs.flush(&mut log, 1, |_| true);
        lrs.sync_from_hardware(&[LrHwState::Active, LrHwState::Active], 0, 2, |_| {})
            .unwrap();
        let high = edge(82, 0x40);
        log.raise(high, 3);
        // Without falling out: wait for underflow.
        let out = lrs.flush(&mut log, 4, |_| true);
        assert_eq!(
            (out.injected, out.maintenance),
            (
                0,
                Maintenance {
                    underflow: true,
                    eoi_count: false
                }
            )
        );
        lrs.set_fall_out(true);
        let out = lrs.flush(&mut log, 5, |_| true);
        assert_eq!((out.injected, out.fell_out), (1, 1));
        assert_eq!(
            out.maintenance,
            Maintenance {
                underflow: false,
                eoi_count: true
            }
        );
        assert_eq!(lrs.fallen_out().collect::<Vec<_>>(), [low]);
        assert_eq!(lrs.find(id(82)), Some(1));
        // Guest: takes 82, EOIs 82, EOIs 81, EOIs 80 (no LR: EOIcount = 1).
        let mut done = Vec::new();
        let s = lrs
            .sync_from_hardware(&[LrHwState::Empty, LrHwState::Empty], 1, 6, |c| {
                done.push(c)
            })
            .unwrap();
        assert_eq!(
            (s.acked, s.completed, s.fallen_out_completed, s.anomalies),
            (1, 3, 1, 0)
        );
        assert_eq!(
            done.last(),
            Some(&Completion {
                desc: low,
                deactivate_physical: true
            })
        );
        assert_eq!(lrs.fallen_out().count(), 0);
        let out = lrs.flush(&mut log, 7, |_| true);
        assert!(!out.maintenance.any());
        // An EOIcount with nothing fallen out is an anomaly, not a crash.
        let s = lrs
            .sync_from_hardware(&[LrHwState::Empty, LrHwState::Empty], 1, 8, |_| {})
            .unwrap();
        assert_eq!(s.anomalies, 1);
    }

    #[test]
    fn fallen_out_non_hw_comes_back_pending_active() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(2).unwrap();
        lrs.set_fall_out(true);
        log.raise(edge(90, 0xc0), 0);
        log.raise(edge(91, 0x80), 0);
        lrs.flush(&mut log, 1, |_| true);
        lrs.sync_from_hardware(&[LrHwState::Active, LrHwState::Active], 0, 2, |_| {})
            .unwrap();
        log.raise(edge(92, 0x40), 3);
        lrs.flush(&mut log, 4, |_| true);
        assert_eq!(
            lrs.fallen_out()
                .map(|d| d.intid().raw())
                .collect::<Vec<_>>(),
            [90]
        );
        // Guest takes 92 and finishes it and 91; 90 (fallen out) is raised again meanwhile.
        lrs.sync_from_hardware(&[LrHwState::Empty, LrHwState::Empty], 0, 5, |_| {})
            .unwrap();
        log.raise(edge(90, 0xc0), 6);
        let out = lrs.flush(&mut log, 7, |_| true);
        assert_eq!(out.injected, 1);
        assert_eq!(lrs.fallen_out().count(), 0);
        assert_eq!(lrs.get(0), Some(LrState::PendingActive(edge(90, 0xc0))));
        assert!(!out.maintenance.any());
        let rs = lrs.stats();
        assert_eq!(
            rs.injected,
            rs.completed + rs.evicted + rs.level_dropped + lrs.resident()
        );
    }

    #[test]
    fn ack_latency_and_stale_lrs() {
        let mut log = Box::new(Log::new());
        let mut lrs = ListRegisters::new(4).unwrap();
        log.raise(edge(100, 0x80), 1_000);
        lrs.flush(&mut log, 3_000, |_| true);
        let hw = [
            LrHwState::Active,
            LrHwState::Pending,
            LrHwState::Empty,
            LrHwState::Empty,
        ];
        let s = lrs.sync_from_hardware(&hw, 0, 10_000, |_| {}).unwrap();
        assert_eq!((s.acked, s.anomalies, s.stale), (1, 1, 0b10));
        assert_eq!(lrs.stats().injection_to_ack.max(), Some(7_000));
        assert_eq!(log.stats().irq_to_injection.max(), Some(2_000));
        assert_eq!(LrHwState::from_bits(0b11), LrHwState::PendingActive);
        assert_eq!(LrHwState::from_bits(0b01), LrHwState::Pending);
    }
}
