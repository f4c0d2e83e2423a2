//! The per-CPU replay log: in-band IRQs that arrived while they could not be injected yet.
//!
//! The log is a **set**, not a FIFO: at most one pending entry per INTID, kept in priority
//! order (lower GIC priority value first, ties by lower INTID). A second edge while an INTID is
//! pending is coalesced (counted, not duplicated); a level entry stays pending only while its
//! line is asserted. Because there is one slot per possible INTID, there is no capacity at
//! which an INTID cannot be logged: nothing is ever lost.
//!
//! Storage is fixed at construction (`const fn new`, usable in a `static`); `raise`, `resample`
//! and the removals used by [`ListRegisters::flush`](crate::ListRegisters::flush) are O(1)
//! and never allocate.

use crate::intid::{IntId, NR_INTIDS, Trigger, VirqDesc};
use crate::prio_set::{Key, PrioSet, WORDS};
use crate::stats::DelayStats;

/// Default number of priority levels the log distinguishes: 32, i.e. the top 5 bits of the
/// 8-bit GIC priority. That is the minimum the virtual CPU interface implements (GICv2's
/// GICH_LR priority field is 5 bits; GICv3's ICH_VTR_EL2.PRIbits is at least 5) and what KVM's
/// vGIC keeps (`VGIC_PRI_BITS`), so priorities that differ only in lower bits are equal to
/// the guest anyway. Use `ReplayLog<256>` for exact 8-bit ordering (34 KiB instead of 4 KiB of
/// ordering bitmaps).
pub const DEFAULT_LEVELS: usize = 32;

/// One pending entry of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The virtual interrupt to inject.
    pub desc: VirqDesc,
    /// Timestamp (ns) of the first occurrence that made it pending (coalesced occurrences do
    /// not move it), for the IRQ-to-injection delay.
    pub raised_at: u64,
}

/// What [`ReplayLog::raise`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    /// A new pending entry was created.
    Logged,
    /// The INTID was already pending; the occurrence was counted and merged.
    Coalesced,
}

/// Counters of one replay log. With `cancelled == 0` (no vGIC-initiated removals) the
/// identity `logged == replayed + coalesced + level_dropped + depth` holds at all times,
/// and `lost` stays 0; [`LogStats::balanced`] checks both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Occurrences accepted into the log: raises (new or coalesced) plus entries requeued from
    /// the list registers (see `requeued`).
    pub logged: u64,
    /// Entries moved out of the log into a list register (injections).
    pub replayed: u64,
    /// Occurrences merged with an entry that was already pending, in the log or in a list
    /// register.
    pub coalesced: u64,
    /// Level entries removed because the line was no longer asserted (not pending: no loss).
    pub level_dropped: u64,
    /// Entries removed by [`ReplayLog::cancel`] (the guest cleared the pending state).
    pub cancelled: u64,
    /// Part of `logged`: pending entries taken back from a list register to make room for a
    /// higher-priority one.
    pub requeued: u64,
    /// Occurrences that could not be recorded. Always 0 unless the log has a bug; kept so a
    /// bug would show.
    pub lost: u64,
    /// Entries pending now.
    pub depth: u32,
    /// Largest `depth` seen.
    pub max_depth: u32,
    /// Delay from the physical IRQ (first occurrence) to its injection into a list register.
    pub irq_to_injection: DelayStats,
}

impl LogStats {
    /// True when the accounting identity holds and nothing was lost.
    pub fn balanced(&self) -> bool {
        self.lost == 0
            && self.logged
                == self.replayed
                    + self.coalesced
                    + self.level_dropped
                    + self.cancelled
                    + u64::from(self.depth)
    }
}

/// The per-CPU replay log, ordering by `LEVELS` priority levels (a power of two `<= 256`, see
/// [`DEFAULT_LEVELS`]).
///
/// About 21 KiB with the default 32 levels (49 KiB with 256): put it in a `static` (the
/// constructor is `const`) or on the heap, not on a small stack.
#[derive(Clone)]
pub struct ReplayLog<const LEVELS: usize = DEFAULT_LEVELS> {
    set: PrioSet<LEVELS>,
    slots: [Pending; NR_INTIDS],
    /// Bit per INTID: the IRQ-to-injection delay of this entry was already recorded (it was
    /// injected once and requeued).
    sampled: [u64; WORDS],
    stats: LogStats,
}

impl<const LEVELS: usize> Default for ReplayLog<LEVELS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Iterator over the pending entries in replay order; see [`ReplayLog::iter`].
pub struct Iter<'a, const LEVELS: usize> {
    log: &'a ReplayLog<LEVELS>,
    next: Option<Key>,
}

impl<const LEVELS: usize> Iterator for Iter<'_, LEVELS> {
    type Item = Pending;

    fn next(&mut self) -> Option<Pending> {
        let key = self.next?;
        self.next = self.log.set.next_after(key);
        Some(self.log.slots[key.1.index()])
    }
}

impl<const LEVELS: usize> ReplayLog<LEVELS> {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            set: PrioSet::new(),
            slots: [Pending {
                desc: VirqDesc::NONE,
                raised_at: 0,
            }; NR_INTIDS],
            sampled: [0; WORDS],
            stats: LogStats {
                logged: 0,
                replayed: 0,
                coalesced: 0,
                level_dropped: 0,
                cancelled: 0,
                requeued: 0,
                lost: 0,
                depth: 0,
                max_depth: 0,
                irq_to_injection: DelayStats::new(),
            },
        }
    }

    /// Empties the log and zeroes its counters, in place.
    pub fn reset(&mut self) {
        self.set.clear();
        self.sampled = [0; WORDS];
        self.stats = LogStats::default();
    }

    /// The priority level (ordering class) of a GIC priority: its top `log2(LEVELS)` bits.
    /// Entries of the same level replay by ascending INTID.
    pub const fn level_of(priority: u8) -> u8 {
        PrioSet::<LEVELS>::level_of_priority(priority)
    }

    /// Logs one occurrence of `desc` raised at `now` (ns). If the INTID is already pending
    /// the occurrence is coalesced: the existing entry (its priority, link and first
    /// timestamp) is kept. O(1), no allocation; never fails.
    pub fn raise(&mut self, desc: VirqDesc, now: u64) -> Raised {
        self.stats.logged += 1;
        let id = desc.intid();
        if self.set.contains(id) {
            self.stats.coalesced += 1;
            return Raised::Coalesced;
        }
        if !self.insert(Pending {
            desc,
            raised_at: now,
        }) {
            self.stats.lost += 1;
        }
        Raised::Logged
    }

    /// Files a new entry; false only if the set is inconsistent (a bug).
    fn insert(&mut self, entry: Pending) -> bool {
        let id = entry.desc.intid();
        if !self.set.insert(id, entry.desc.priority()) {
            return false;
        }
        self.slots[id.index()] = entry;
        let (w, m) = (id.index() / 64, 1u64 << (id.index() % 64));
        self.sampled[w] &= !m;
        self.stats.depth = self.set.len() as u32;
        self.stats.max_depth = self.stats.max_depth.max(self.stats.depth);
        true
    }

    /// Removes a member, returning it.
    fn remove(&mut self, id: IntId) -> Option<Pending> {
        if !self.set.remove(id) {
            return None;
        }
        self.stats.depth = self.set.len() as u32;
        Some(self.slots[id.index()])
    }

    /// Reports the current state of a level line. A pending level entry whose line is no longer
    /// asserted is removed (counted in `level_dropped`, not as a loss) and returned: if it is
    /// hardware-linked the caller must deactivate the physical INTID, which was acknowledged and
    /// priority-dropped but is still active. Edge entries, absent entries and asserted lines
    /// are left alone (`None`).
    pub fn resample(&mut self, intid: IntId, asserted: bool) -> Option<VirqDesc> {
        if asserted
            || !self.set.contains(intid)
            || self.slots[intid.index()].desc.trigger() != Trigger::Level
        {
            return None;
        }
        let entry = self.remove(intid)?;
        self.stats.level_dropped += 1;
        Some(entry.desc)
    }

    /// Removes a pending entry because the guest cleared its pending state (vGIC
    /// GICD_ICPENDR). Counted in `cancelled`. A returned hardware-linked entry must have its
    /// physical INTID deactivated by the caller.
    pub fn cancel(&mut self, intid: IntId) -> Option<Pending> {
        let entry = self.remove(intid)?;
        self.stats.cancelled += 1;
        Some(entry)
    }

    /// Changes the priority of a pending entry (the guest rewrote GICD_IPRIORITYR) and re-files
    /// it. Returns false if the INTID is not pending.
    pub fn set_priority(&mut self, intid: IntId, priority: u8) -> bool {
        if !self.set.remove(intid) {
            return false;
        }
        let slot = &mut self.slots[intid.index()];
        slot.desc = slot.desc.with_priority(priority);
        // Cannot fail: the INTID was removed just above.
        if !self.set.insert(intid, priority) {
            self.stats.lost += 1;
            self.stats.depth = self.set.len() as u32;
        }
        true
    }

    /// True if `intid` has a pending entry.
    pub fn contains(&self, intid: IntId) -> bool {
        self.set.contains(intid)
    }

    /// The pending entry of `intid`, if any.
    pub fn get(&self, intid: IntId) -> Option<Pending> {
        self.set.contains(intid).then(|| self.slots[intid.index()])
    }

    /// The entry that replays first (highest priority, then lowest INTID). O(1).
    pub fn peek(&self) -> Option<Pending> {
        self.set.first().map(|(_, id)| self.slots[id.index()])
    }

    /// All pending entries in replay order, without allocation.
    pub fn iter(&self) -> Iter<'_, LEVELS> {
        Iter {
            log: self,
            next: self.set.first(),
        }
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// Restarts the delay statistics (e.g. per reporting interval); counters are kept.
    pub fn clear_delay_stats(&mut self) {
        self.stats.irq_to_injection = DelayStats::new();
    }

    // ---- used by the list-register model -------------------------------------------------

    /// The first key, for walking the log while it changes.
    pub(crate) fn first_key(&self) -> Option<Key> {
        self.set.first()
    }

    /// The next key strictly after `key` (which may have been removed meanwhile).
    pub(crate) fn next_key(&self, key: Key) -> Option<Key> {
        self.set.next_after(key)
    }

    /// Removes an entry that is being injected into a list register at `now`, recording the
    /// IRQ-to-injection delay the first time this entry is injected.
    pub(crate) fn take_for_injection(&mut self, intid: IntId, now: u64) -> Option<Pending> {
        let entry = self.remove(intid)?;
        self.stats.replayed += 1;
        let (w, m) = (intid.index() / 64, 1u64 << (intid.index() % 64));
        if self.sampled[w] & m == 0 {
            self.stats
                .irq_to_injection
                .record_between(entry.raised_at, now);
        }
        Some(entry)
    }

    /// Removes an entry whose INTID is already pending in a list register.
    pub(crate) fn take_coalesced(&mut self, intid: IntId) -> Option<Pending> {
        let entry = self.remove(intid)?;
        self.stats.coalesced += 1;
        Some(entry)
    }

    /// Removes a level entry whose line was found de-asserted before injection.
    pub(crate) fn take_level_dropped(&mut self, intid: IntId) -> Option<Pending> {
        let entry = self.remove(intid)?;
        self.stats.level_dropped += 1;
        Some(entry)
    }

    /// Takes back an entry evicted from a pending list register (it was never seen by the
    /// guest). Its IRQ-to-injection delay was already recorded and is not recorded again.
    pub(crate) fn requeue(&mut self, entry: Pending) {
        self.stats.logged += 1;
        self.stats.requeued += 1;
        let id = entry.desc.intid();
        if self.set.contains(id) {
            self.stats.coalesced += 1;
            return;
        }
        if self.insert(entry) {
            let (w, m) = (id.index() / 64, 1u64 << (id.index() % 64));
            self.sampled[w] |= m;
        } else {
            self.stats.lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::XorShift;

    fn id(raw: u32) -> IntId {
        IntId::new(raw).unwrap()
    }

    fn edge(raw: u32, prio: u8) -> VirqDesc {
        VirqDesc::new(id(raw), prio, Trigger::Edge).unwrap()
    }

    fn level(raw: u32, prio: u8) -> VirqDesc {
        VirqDesc::new(id(raw), prio, Trigger::Level).unwrap()
    }

    #[test]
    fn edges_coalesce() {
        let mut log = Box::new(ReplayLog::<32>::new());
        assert_eq!(log.raise(edge(40, 0xa0), 100), Raised::Logged);
        assert_eq!(log.raise(edge(40, 0xa0), 200), Raised::Coalesced);
        assert_eq!(log.raise(edge(40, 0x10), 300), Raised::Coalesced);
        assert_eq!(log.len(), 1);
        let p = log.peek().unwrap();
        assert_eq!(
            (p.desc.intid(), p.desc.priority(), p.raised_at),
            (id(40), 0xa0, 100)
        );
        let s = log.stats();
        assert_eq!(
            (s.logged, s.coalesced, s.depth, s.max_depth, s.lost),
            (3, 2, 1, 1, 0)
        );
        assert!(s.balanced());
        let taken = log.take_for_injection(id(40), 1100).unwrap();
        assert_eq!(taken.raised_at, 100);
        assert!(log.is_empty());
        let s = log.stats();
        assert_eq!(
            (s.replayed, s.irq_to_injection.max(), s.depth),
            (1, Some(1000), 0)
        );
        assert!(s.balanced());
        // A new edge after injection is a new entry.
        assert_eq!(log.raise(edge(40, 0xa0), 2000), Raised::Logged);
        assert!(log.stats().balanced());
    }

    #[test]
    fn level_resampling() {
        let mut log = Box::new(ReplayLog::<32>::new());
        let hw = level(50, 0x80).with_hw(id(50)).unwrap();
        log.raise(hw, 1);
        log.raise(level(51, 0x80), 1);
        log.raise(edge(52, 0x80), 1);
        // Still asserted: stays.
        assert_eq!(log.resample(id(50), true), None);
        assert!(log.contains(id(50)));
        // De-asserted: dropped as not pending, and handed back for physical deactivation.
        assert_eq!(log.resample(id(50), false), Some(hw));
        assert!(!log.contains(id(50)));
        // Edges are latched: resampling does not drop them.
        assert_eq!(log.resample(id(52), false), None);
        assert!(log.contains(id(52)));
        // Absent entries: nothing.
        assert_eq!(log.resample(id(53), false), None);
        // A level raise while pending coalesces like an edge.
        assert_eq!(log.raise(level(51, 0x80), 2), Raised::Coalesced);
        let s = log.stats();
        assert_eq!(
            (s.level_dropped, s.lost, s.depth, s.logged, s.coalesced),
            (1, 0, 2, 4, 1)
        );
        assert!(s.balanced());
    }

    /// 1000 random raises (random INTIDs, random priorities, duplicates included): the replay
    /// order must equal a sorted reference of the distinct INTIDs, by (level, INTID).
    fn check_priority_order<const LEVELS: usize>(seed: u64) {
        let mut rng = XorShift::new(seed);
        let mut log = Box::new(ReplayLog::<LEVELS>::new());
        let mut reference: Vec<(u8, u32)> = Vec::new();
        let mut prio_of = [None::<u8>; NR_INTIDS];
        for t in 0..1000u64 {
            let raw = rng.below(NR_INTIDS as u64) as u32;
            let prio = rng.next() as u8;
            let trig = if raw < 16 {
                Trigger::Edge
            } else {
                Trigger::Level
            };
            let d = VirqDesc::new(id(raw), prio, trig).unwrap();
            let r = log.raise(d, t);
            match prio_of[raw as usize] {
                None => {
                    assert_eq!(r, Raised::Logged);
                    prio_of[raw as usize] = Some(prio);
                    reference.push((ReplayLog::<LEVELS>::level_of(prio), raw));
                }
                Some(_) => assert_eq!(r, Raised::Coalesced),
            }
        }
        reference.sort_unstable();
        let order: Vec<(u8, u32)> = log
            .iter()
            .map(|p| {
                (
                    ReplayLog::<LEVELS>::level_of(p.desc.priority()),
                    p.desc.intid().raw(),
                )
            })
            .collect();
        assert_eq!(order, reference);
        // Draining with peek/take gives the same order.
        let mut drained = Vec::new();
        while let Some(p) = log.peek() {
            drained.push((
                ReplayLog::<LEVELS>::level_of(p.desc.priority()),
                p.desc.intid().raw(),
            ));
            log.take_for_injection(p.desc.intid(), 5000).unwrap();
        }
        assert_eq!(drained, reference);
        let s = log.stats();
        assert_eq!(s.logged, 1000);
        assert_eq!(s.replayed as usize, reference.len());
        assert!(s.balanced());
    }

    #[test]
    fn priority_order_exact_8bit() {
        for seed in [1, 2, 3, 0xdead_beef] {
            check_priority_order::<256>(seed);
        }
    }

    #[test]
    fn priority_order_default_5bit() {
        for seed in [4, 5, 6, 0xfeed_f00d] {
            check_priority_order::<DEFAULT_LEVELS>(seed);
        }
    }

    #[test]
    fn reprioritize_and_cancel() {
        let mut log = Box::new(ReplayLog::<256>::new());
        log.raise(edge(100, 0x80), 0);
        log.raise(edge(101, 0x40), 0);
        assert_eq!(log.peek().unwrap().desc.intid(), id(101));
        assert!(log.set_priority(id(100), 0x20));
        assert!(!log.set_priority(id(102), 0x20));
        assert_eq!(log.peek().unwrap().desc.intid(), id(100));
        assert_eq!(log.peek().unwrap().desc.priority(), 0x20);
        assert_eq!(log.cancel(id(100)).map(|p| p.desc.intid()), Some(id(100)));
        assert_eq!(log.cancel(id(100)), None);
        assert_eq!(log.peek().unwrap().desc.intid(), id(101));
        let s = log.stats();
        assert_eq!(s.cancelled, 1);
        assert!(s.balanced());
    }

    #[test]
    fn every_intid_fits_at_once() {
        let mut log = Box::new(ReplayLog::<DEFAULT_LEVELS>::new());
        for raw in 0..NR_INTIDS as u32 {
            assert_eq!(log.raise(edge(raw, (raw * 7) as u8), 0), Raised::Logged);
        }
        assert_eq!(log.len(), NR_INTIDS);
        let s = log.stats();
        assert_eq!((s.max_depth as usize, s.lost), (NR_INTIDS, 0));
        assert!(s.balanced());
        log.reset();
        assert!(log.is_empty());
        assert_eq!(log.stats(), LogStats::default());
    }

    #[test]
    fn requeue_keeps_first_sample() {
        let mut log = Box::new(ReplayLog::<DEFAULT_LEVELS>::new());
        log.raise(edge(33, 0x80), 10);
        let p = log.take_for_injection(id(33), 110).unwrap();
        log.requeue(p);
        assert_eq!(log.get(id(33)).unwrap().raised_at, 10);
        log.take_for_injection(id(33), 5000).unwrap();
        let s = log.stats();
        assert_eq!(
            (s.irq_to_injection.count(), s.irq_to_injection.max()),
            (1, Some(100))
        );
        assert_eq!((s.logged, s.requeued, s.replayed), (2, 1, 2));
        assert!(s.balanced());
    }
}
