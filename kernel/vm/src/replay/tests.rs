//! The replay log as the core runs it — the vGIC model, driven through [`ReplayAccount`] by
//! a host model of the glue and of each CPU's list registers — checked for delivery order,
//! for nothing dropped or duplicated, and for exact counters.

use std::collections::HashMap;

use super::*;
use crate::mmio::AccessSize::Word;
use crate::test_util::XorShift;
use crate::vgic::regs::*;
use crate::vgic::ListedUpdate;

const MPIDRS: [u64; 2] = [0x0, 0x1];
const SPIS: u32 = 64;
const SGI_BASE: u64 = REDIST_FRAME_SIZE;

/// What a simulated list register holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LrState {
    Pending,
    Active,
    /// The guest deactivated it; the core has not read it back yet.
    Invalid,
}

#[derive(Clone, Copy, Debug)]
struct Lr {
    intid: u32,
    priority: u8,
    linked: bool,
    state: LrState,
    /// When it was filled (the simulation's injection count).
    injected: u64,
}

/// The glue (as `guest::virq` drives the model) and the guest's virtual CPU interface.
struct Sim {
    vgic: Box<Vgic>,
    account: Box<ReplayAccount>,
    lrs: Vec<Vec<Option<Lr>>>,
    /// Per vCPU, the interrupts the guest acknowledged, in order, with their priority.
    delivered: Vec<Vec<(u32, u8)>>,
    /// Per vCPU, the guest's active interrupts, innermost last.
    running: Vec<Vec<usize>>,
    /// Injections so far (the list registers' fill clock).
    injections: u64,
}

impl Sim {
    fn new(lrs: usize) -> Self {
        let mut vgic = Box::new(Vgic::new(&MPIDRS, SPIS).unwrap());
        vgic.dist_write(GICD_CTLR, Word, u64::from(CTLR_ENABLE_GRP1 | CTLR_ARE)).unwrap();
        let vcpus = MPIDRS.len();
        Self {
            vgic,
            account: Box::new(ReplayAccount::new()),
            lrs: vec![vec![None; lrs]; vcpus],
            delivered: vec![Vec::new(); vcpus],
            running: vec![Vec::new(); vcpus],
            injections: 0,
        }
    }

    fn dist_write(&mut self, offset: u64, value: u64) {
        let changes = self.vgic.dist_write(offset, Word, value).unwrap();
        if let Some(change) = changes.change {
            self.account.guest_write(&change);
        }
    }

    fn redist_write(&mut self, vcpu: usize, offset: u64, value: u64) {
        let changes = self.vgic.redist_write(vcpu as u64 * REDIST_STRIDE + offset, Word, value).unwrap();
        if let Some(change) = changes.change {
            self.account.guest_write(&change);
        }
    }

    /// Enables SPI `intid` at `priority`, edge-triggered, routed to `vcpu`.
    fn spi(&mut self, intid: u32, priority: u8, vcpu: usize) {
        let bank = u64::from(intid / 32) * 4;
        let bit = 1u64 << (intid % 32);
        self.dist_write(GICD_ICFGR + u64::from(intid / 16) * 4, 0xaaaa_aaaa);
        let shift = 8 * (intid % 4);
        let word = GICD_IPRIORITYR + u64::from(intid & !3);
        let old = self.vgic.dist_read(word, Word).unwrap().value;
        self.dist_write(word, (old & !(0xff << shift)) | (u64::from(priority) << shift));
        self.vgic.dist_write(GICD_IROUTER + 8 * u64::from(intid), crate::mmio::AccessSize::Doubleword, MPIDRS[vcpu]).unwrap();
        self.dist_write(GICD_ISENABLER + bank, bit);
    }

    /// Enables SGI `sgi` at `priority` on every vCPU.
    fn sgi(&mut self, sgi: u32, priority: u8) {
        for vcpu in 0..MPIDRS.len() {
            let shift = 8 * (sgi % 4);
            let word = SGI_BASE + GICR_IPRIORITYR0 + u64::from(sgi & !3);
            let old = self.vgic.redist_read(vcpu as u64 * REDIST_STRIDE + word, Word).unwrap().value;
            self.redist_write(vcpu, word, (old & !(0xff << shift)) | (u64::from(priority) << shift));
            self.redist_write(vcpu, SGI_BASE + GICR_ISENABLER0, 1 << sgi);
        }
    }

    /// Enables PPI `intid` of `vcpu` at `priority` (level-sensitive, as it resets).
    fn ppi(&mut self, vcpu: usize, intid: u32, priority: u8) {
        let shift = 8 * (intid % 4);
        let word = SGI_BASE + GICR_IPRIORITYR0 + u64::from(intid & !3);
        let old = self.vgic.redist_read(vcpu as u64 * REDIST_STRIDE + word, Word).unwrap().value;
        self.redist_write(vcpu, word, (old & !(0xff << shift)) | (u64::from(priority) << shift));
        self.redist_write(vcpu, SGI_BASE + GICR_ISENABLER0, 1 << intid);
    }

    /// Physical PPI `intid` forwarded on `vcpu`'s own CPU, as the glue's `forward` takes
    /// it: by the fast path ([`ReplayAccount::relist`]) into the list register of its copy
    /// if that reads back empty, or into a free one if it has none; otherwise by the general
    /// path (the flush injects it). Returns whether the fast path took it.
    fn forward_ppi(&mut self, vcpu: usize, intid: u32) -> bool {
        let copy = self.lrs[vcpu].iter().position(|lr| lr.is_some_and(|l| l.intid == intid));
        let slot = match copy {
            Some(index) => self.lrs[vcpu][index].filter(|l| l.linked && l.state == LrState::Invalid).map(|_| index),
            None => self.lrs[vcpu].iter().position(Option::is_none),
        };
        if let Some(index) = slot
            && let Some(priority) = self.account.relist(&mut self.vgic, vcpu, intid, copy.is_some())
        {
            self.injections += 1;
            self.lrs[vcpu][index] = Some(Lr { intid, priority, linked: true, state: LrState::Pending, injected: self.injections });
            return true;
        }
        self.account.forward(&mut self.vgic, intid, vcpu).unwrap();
        false
    }

    /// A physical interrupt forwarded to its target.
    fn forward(&mut self, intid: u32) {
        let vcpu = match self.vgic.target(intid, 0) {
            Ok(crate::vgic::Target::Vcpu(vcpu)) => vcpu,
            _ => 0,
        };
        self.account.forward(&mut self.vgic, intid, vcpu).unwrap();
    }

    /// After a guest write to an interrupt sitting in a list register (the glue flags the
    /// listing CPU): every list register still pending whose copy is outdated
    /// ([`Vgic::listed_copy_outdated`]) goes back to the log. Returns the INTIDs whose
    /// physical activation was released.
    fn recheck(&mut self, vcpu: usize) -> Vec<u32> {
        let mut released = Vec::new();
        for slot in 0..self.lrs[vcpu].len() {
            let Some(lr) = self.lrs[vcpu][slot] else { continue };
            if lr.state == LrState::Invalid {
                continue;
            }
            match self.vgic.listed_copy_update(lr.intid, vcpu, lr.priority, lr.state == LrState::Active) {
                ListedUpdate::Keep => {}
                ListedUpdate::Merge => self.account.merge(&mut self.vgic, vcpu, lr.intid),
                ListedUpdate::Requeue => {
                    self.lrs[vcpu][slot] = None;
                    if self.account.requeue(&mut self.vgic, vcpu, lr.intid).unwrap() {
                        released.push(lr.intid);
                    }
                }
                ListedUpdate::Complete => {
                    self.lrs[vcpu][slot] = None;
                    self.account.complete(&mut self.vgic, vcpu, lr.intid, lr.linked);
                    if lr.linked {
                        released.push(lr.intid);
                    }
                }
            }
        }
        released
    }

    /// The flush on `vcpu`'s way back into the guest: completions, then the most urgent
    /// entries into the free list registers.
    fn flush(&mut self, vcpu: usize) {
        for lr in self.lrs[vcpu].iter_mut() {
            if let Some(l) = lr
                && l.state == LrState::Invalid
            {
                self.account.complete(&mut self.vgic, vcpu, l.intid, l.linked);
                *lr = None;
            }
        }
        let free = self.lrs[vcpu].iter().filter(|lr| lr.is_none()).count();
        let mut chosen = vec![(0, 0); free];
        let taken = self.vgic.take_most_urgent(vcpu, &mut chosen);
        for &(intid, priority) in &chosen[..taken] {
            // Nothing waiting for this vCPU is more urgent than what it just took.
            if let Some((_, best)) = self.vgic.highest_pending(vcpu) {
                assert!(best >= priority, "{intid} (priority {priority}) taken before one at {best}");
            }
            let linked = self.vgic.is_linked(intid, vcpu);
            let slot = self.lrs[vcpu].iter_mut().find(|lr| lr.is_none()).unwrap();
            self.injections += 1;
            *slot = Some(Lr { intid, priority, linked, state: LrState::Pending, injected: self.injections });
            self.account.injected(linked);
        }
        if taken == free {
            self.account.depth(self.vgic.ready_count(vcpu) as u64);
        }
    }

    /// The guest acknowledges its most urgent pending list register, if it preempts what
    /// runs (lower priority value); returns its INTID.
    fn ack(&mut self, vcpu: usize) -> Option<u32> {
        let running = self.running[vcpu].last().map_or(u8::MAX, |&i| self.lrs[vcpu][i].unwrap().priority);
        let (index, lr) = self.lrs[vcpu]
            .iter()
            .enumerate()
            .filter_map(|(i, lr)| lr.filter(|l| l.state == LrState::Pending).map(|l| (i, l)))
            .min_by_key(|(i, l)| (l.priority, *i))?;
        if lr.priority >= running {
            return None;
        }
        self.lrs[vcpu][index].as_mut().unwrap().state = LrState::Active;
        self.running[vcpu].push(index);
        self.delivered[vcpu].push((lr.intid, lr.priority));
        Some(lr.intid)
    }

    /// The guest deactivates its innermost active interrupt.
    fn eoi(&mut self, vcpu: usize) {
        // A list register taken back after the guest cleared its active state is gone: the
        // EOI only drops the priority.
        if let Some(index) = self.running[vcpu].pop()
            && let Some(lr) = self.lrs[vcpu][index].as_mut()
        {
            lr.state = LrState::Invalid;
        }
    }

    /// The vCPU stops: its list registers are emptied, pending ones requeued.
    fn take_back(&mut self, vcpu: usize) {
        for lr in self.lrs[vcpu].iter_mut() {
            if let Some(l) = lr.take() {
                match l.state {
                    LrState::Pending => {
                        self.account.requeue(&mut self.vgic, vcpu, l.intid).unwrap();
                    }
                    LrState::Active | LrState::Invalid => self.account.complete(&mut self.vgic, vcpu, l.intid, l.linked),
                }
            }
        }
        self.running[vcpu].clear();
    }

    fn snapshot(&self) -> ReplaySnapshot {
        self.account.snapshot(self.vgic.waiting() as u64)
    }

    /// Runs every vCPU until nothing is left anywhere.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for vcpu in 0..MPIDRS.len() {
                self.flush(vcpu);
                while self.ack(vcpu).is_some() {
                    busy = true;
                }
                if !self.running[vcpu].is_empty() {
                    busy = true;
                    self.eoi(vcpu);
                }
                busy |= self.lrs[vcpu].iter().any(Option::is_some);
            }
            if !busy && self.vgic.waiting() == 0 {
                return;
            }
        }
        panic!("the log never drained: {:?}", self.snapshot());
    }

    /// Every list register holds what the model says is listed, and the counters balance.
    fn check(&self) {
        let s = self.snapshot();
        assert_eq!(s.balance(), 0, "{s:?}");
        let listed: usize = self.lrs.iter().flatten().filter(|lr| lr.is_some()).count();
        assert_eq!(s.in_flight(), listed as i128, "{s:?}");
    }
}

#[test]
fn forty_interrupts_through_four_list_registers_in_priority_order() {
    let mut sim = Sim::new(4);
    // SPIs 32..72, priorities spread out of INTID order, all for vCPU 0.
    for i in 0..40u32 {
        sim.spi(32 + i, ((i * 7) % 16) as u8 * 0x10, 0);
    }
    for i in 0..40u32 {
        sim.forward(32 + i);
    }
    sim.check();
    // The guest only takes one at a time, completing it before the next: the flush refills
    // in priority order, so the guest sees them sorted by (priority, INTID).
    let mut rounds = 0;
    while sim.delivered[0].len() < 40 {
        sim.flush(0);
        assert!(sim.ack(0).is_some());
        sim.eoi(0);
        sim.check();
        rounds += 1;
        assert!(rounds < 100);
    }
    sim.flush(0);
    // Most urgent first (which of equal priorities the guest takes first is its CPU
    // interface's choice among the list registers).
    let priorities: Vec<u8> = sim.delivered[0].iter().map(|&(_, priority)| priority).collect();
    assert!(priorities.is_sorted(), "{:?}", sim.delivered[0]);
    let mut intids: Vec<u32> = sim.delivered[0].iter().map(|&(intid, _)| intid).collect();
    intids.sort_unstable();
    assert_eq!(intids, (32..72).collect::<Vec<_>>(), "each exactly once");
    let s = sim.snapshot();
    assert_eq!((s.logged, s.injected, s.completed, s.waiting, s.lost()), (40, 40, 40, 0, 0), "{s:?}");
    assert_eq!(s.max_depth, 36, "four listed, 36 waiting after the first flush");
    assert_eq!(s.injected_linked, 40, "forwarded physical interrupts go hardware-linked");
}

#[test]
fn an_interrupt_dropped_on_purpose_is_counted_lost() {
    let mut sim = Sim::new(4);
    sim.spi(40, 0xa0, 0);
    sim.spi(41, 0xa0, 0);
    sim.forward(40);
    sim.forward(41);
    // A glue bug: the flush takes both from the model but writes only one list register.
    let mut chosen = [(0, 0); 2];
    assert_eq!(sim.vgic.take_most_urgent(0, &mut chosen), 2);
    sim.lrs[0][0] = Some(Lr { intid: 40, priority: 0xa0, linked: true, state: LrState::Pending, injected: 0 });
    sim.account.injected(true);
    let s = sim.snapshot();
    assert_eq!(s.lost(), 1, "{s:?}");
    assert_eq!(s.overcounted(), 0);
    // The other direction: an injection counted twice is not hidden either.
    sim.account.injected(true);
    sim.account.injected(true);
    let s = sim.snapshot();
    assert_eq!((s.lost(), s.overcounted()), (0, 1), "{s:?}");
}

#[test]
fn guest_set_pending_writes_are_logged_and_cleared_ones_withdrawn() {
    let mut sim = Sim::new(4);
    sim.spi(40, 0xa0, 0);
    sim.dist_write(GICD_ISPENDR + 4, 1 << 8);
    // Again while waiting: the latch is already set, nothing new.
    sim.dist_write(GICD_ISPENDR + 4, 1 << 8);
    sim.check();
    assert_eq!(sim.snapshot().logged, 1);
    sim.dist_write(GICD_ICPENDR + 4, 1 << 8);
    sim.check();
    let s = sim.snapshot();
    assert_eq!((s.logged, s.withdrawn, s.waiting), (1, 1, 0), "{s:?}");
    // Set pending behind a copy in a list register: a new entry, replayed after the copy.
    sim.dist_write(GICD_ISPENDR + 4, 1 << 8);
    sim.flush(0);
    sim.dist_write(GICD_ISPENDR + 4, 1 << 8);
    sim.check();
    assert_eq!(sim.snapshot().waiting, 1);
    sim.drain();
    sim.check();
    assert_eq!(sim.delivered[0], [(40, 0xa0), (40, 0xa0)]);
}

#[test]
fn a_level_line_high_at_deactivation_is_resampled_and_a_fallen_one_withdrawn() {
    let mut sim = Sim::new(4);
    sim.spi(44, 0x80, 0);
    // Level-sensitive (an emulated device's line).
    sim.dist_write(GICD_ICFGR + 8, 0);
    sim.account.set_level(&mut sim.vgic, 44, 0, true).unwrap();
    sim.flush(0);
    sim.ack(0);
    sim.eoi(0);
    sim.check();
    // Still high at the read-back: delivered again.
    sim.flush(0);
    sim.check();
    assert_eq!(sim.snapshot().logged, 2);
    sim.ack(0);
    // Falls while the copy is active: the copy is the guest's, nothing withdrawn.
    sim.account.set_level(&mut sim.vgic, 44, 0, false).unwrap();
    sim.eoi(0);
    sim.flush(0);
    sim.check();
    // Rises and falls before any flush: withdrawn.
    sim.account.set_level(&mut sim.vgic, 44, 0, true).unwrap();
    sim.account.set_level(&mut sim.vgic, 44, 0, false).unwrap();
    sim.check();
    let s = sim.snapshot();
    assert_eq!((s.logged, s.withdrawn, s.waiting, s.completed), (3, 1, 0, 2), "{s:?}");
}

#[test]
fn requeued_list_registers_are_replayed_again_and_merge_with_new_arrivals() {
    let mut sim = Sim::new(2);
    sim.sgi(3, 0x40);
    sim.account.sgi1r(&mut sim.vgic, 1, 3 << 24 | 1).unwrap();
    sim.flush(0);
    // Sent again while the first sits pending in a list register: a second entry.
    sim.account.sgi1r(&mut sim.vgic, 1, 3 << 24 | 1).unwrap();
    sim.check();
    // The vCPU stops: the listed copy goes back and merges with the waiting one.
    sim.take_back(0);
    sim.check();
    let s = sim.snapshot();
    assert_eq!((s.logged, s.requeued, s.coalesced, s.waiting), (2, 1, 1, 1), "{s:?}");
    sim.drain();
    sim.check();
    assert_eq!(sim.delivered[0], [(3, 0x40)]);
}

/// Per (vCPU, INTID), arrivals not yet delivered, for the reference model.
type Owed = HashMap<(usize, u32), bool>;

/// Random arrivals (forwarded SPIs, guest SGIs, guest set-pending writes, emulated level
/// lines), guest acknowledges and completions (nested by priority), flushes, vCPU stops and
/// guest disables, against a reference: every interrupt that arrived is delivered after it
/// arrived (nothing dropped, even behind full list registers), the guest never acknowledges
/// one that did not arrive (nothing invented), every flush takes the most urgent, and the
/// counters balance after every step.
#[test]
fn randomized_delivery_against_a_reference_model() {
    for seed in 1..=24u64 {
        let mut rng = XorShift::new(seed);
        let lrs = 1 + (seed % 4) as usize;
        let mut sim = Sim::new(lrs);
        let spis: Vec<u32> = (0..12).map(|i| 32 + i).collect();
        for (i, &spi) in spis.iter().enumerate() {
            sim.spi(spi, (i as u8 % 4) * 0x20, i % 2);
        }
        for sgi in 0..4 {
            sim.sgi(sgi, 0x10 * sgi as u8 + 0x30);
        }
        let level = 60;
        sim.spi(level, 0x50, 0);
        sim.dist_write(GICD_ICFGR + 4 * u64::from(level / 16), 0);
        let mut owed = Owed::new();
        let mut physically_active: HashMap<u32, bool> = HashMap::new();
        let mut seen = vec![0usize; 2];
        for _ in 0..3000 {
            let vcpu = (rng.next() % 2) as usize;
            match rng.next() % 12 {
                0 | 1 => {
                    let spi = spis[(rng.next() % spis.len() as u64) as usize];
                    // A hardware-linked interrupt cannot fire again while active.
                    if !physically_active.get(&spi).copied().unwrap_or(false) {
                        let target = if (spi - 32) % 2 == 0 { 0 } else { 1 };
                        sim.forward(spi);
                        physically_active.insert(spi, sim.vgic.state(spi, 0).unwrap().hw_pending);
                        owed.insert((target, spi), true);
                    }
                }
                2 => {
                    let sgi = (rng.next() % 4) as u32;
                    let targets = sim.account.sgi1r(&mut sim.vgic, vcpu, u64::from(sgi) << 24 | 0b11).unwrap();
                    for target in targets.iter() {
                        owed.insert((target, sgi), true);
                    }
                }
                3 => {
                    let spi = spis[(rng.next() % spis.len() as u64) as usize];
                    if !sim.vgic.state(spi, 0).unwrap().hw_pending && !physically_active.get(&spi).copied().unwrap_or(false) {
                        sim.dist_write(GICD_ISPENDR + 4, 1 << (spi - 32));
                        owed.insert((if (spi - 32) % 2 == 0 { 0 } else { 1 }, spi), true);
                    }
                }
                4 => {
                    let high = rng.next() % 2 == 0;
                    sim.account.set_level(&mut sim.vgic, level, 0, high).unwrap();
                }
                5 | 6 => sim.flush(vcpu),
                7 | 8 => {
                    if let Some(intid) = sim.ack(vcpu) {
                        owed.insert((vcpu, intid), false);
                    }
                }
                9 | 10 => sim.eoi(vcpu),
                _ => {
                    if rng.next() % 8 == 0 {
                        sim.take_back(vcpu);
                    }
                }
            }
            // What the guest completed ends the physical activation of a linked copy.
            for lrs in &sim.lrs {
                for lr in lrs.iter().flatten() {
                    if lr.linked && lr.state == LrState::Invalid {
                        physically_active.insert(lr.intid, sim.vgic.state(lr.intid, 0).unwrap().hw_pending);
                    }
                }
            }
            sim.check();
            for vcpu in 0..MPIDRS.len() {
                assert_eq!(sim.vgic.ready_count(vcpu), sim.vgic.pending_for(vcpu).count(), "seed {seed}");
            }
            for (vcpu, seen) in seen.iter_mut().enumerate() {
                for &(intid, _) in &sim.delivered[vcpu][*seen..] {
                    assert!(intid == level || owed.contains_key(&(vcpu, intid)), "seed {seed}: {intid} never arrived");
                }
                *seen = sim.delivered[vcpu].len();
            }
        }
        sim.account.set_level(&mut sim.vgic, level, 0, false).unwrap();
        sim.drain();
        sim.check();
        for (vcpu, seen) in seen.iter().enumerate() {
            for &(intid, _) in &sim.delivered[vcpu][*seen..] {
                owed.insert((vcpu, intid), false);
            }
        }
        let undelivered: Vec<_> = owed.iter().filter(|&(_, &owed)| owed).collect();
        assert!(undelivered.is_empty(), "seed {seed}: never delivered: {undelivered:?}");
        let s = sim.snapshot();
        assert_eq!((s.waiting, s.in_flight(), s.lost()), (0, 0, 0), "seed {seed}: {s:?}");
        assert!(s.logged > 500 && s.coalesced > 0 && s.max_depth > 0, "seed {seed}: a weak run: {s:?}");
    }
}

#[test]
fn eviction_takes_the_least_urgent_pending_list_register_never_an_active_one() {
    let lr = |index, pending, priority, since| Listed { index, pending, priority, since };
    let full = [lr(0, true, 0x80, 1), lr(1, false, 0xf0, 2), lr(2, true, 0xc0, 4), lr(3, true, 0xc0, 3)];
    // 0xf0 is the least urgent but active: of the pending 0xc0 ones, the most recently
    // filled goes (list register 2, though 3 is higher-numbered).
    assert_eq!(evict_for(full, Some(0x40)), Some(2));
    // Filled at the same time: the higher-numbered one.
    assert_eq!(evict_for([lr(0, true, 0xc0, 5), lr(1, true, 0xc0, 5)], Some(0)), Some(1));
    // Not more urgent than any pending one: nothing moves (equal priorities keep their order).
    assert_eq!(evict_for(full, Some(0xc0)), None);
    assert_eq!(evict_for(full, None), None);
    // Only active ones: nothing to evict.
    assert_eq!(evict_for([lr(0, false, 0xf0, 1), lr(1, false, 0xf0, 2)], Some(0)), None);
}

#[test]
fn an_evicted_list_register_is_replayed_after_the_urgent_one_and_accounted() {
    let mut sim = Sim::new(2);
    sim.spi(40, 0xc0, 0);
    sim.spi(41, 0xc0, 0);
    sim.spi(42, 0x40, 0);
    sim.forward(40);
    sim.forward(41);
    sim.flush(0);
    sim.forward(42);
    // The glue's eviction: the least urgent pending list register goes back to the log.
    let listed = sim.lrs[0].iter().enumerate().filter_map(|(index, lr)| {
        lr.map(|l| Listed { index, pending: l.state == LrState::Pending, priority: l.priority, since: l.injected })
    });
    let best = sim.vgic.highest_pending(0).map(|(_, priority)| priority);
    let index = evict_for(listed.collect::<Vec<_>>(), best).unwrap();
    let evicted = sim.lrs[0][index].take().unwrap();
    sim.account.requeue(&mut sim.vgic, 0, evicted.intid).unwrap();
    sim.check();
    sim.flush(0);
    assert_eq!(sim.ack(0), Some(42), "the urgent one is in front of the guest at once");
    sim.eoi(0);
    sim.drain();
    sim.check();
    let mut order: Vec<u32> = sim.delivered[0].iter().map(|&(intid, _)| intid).collect();
    assert_eq!(order.remove(0), 42);
    order.sort_unstable();
    assert_eq!(order, [40, 41]);
    assert_eq!(sim.snapshot().requeued, 1);
}

/// A guest restart as the core performs it: every vCPU's list registers taken back (what
/// the guest completed counted, what it never took requeued, what it left active ended and
/// its physical activation deactivated), then [`ReplayAccount::teardown`], whose `release`
/// deactivates what the model still owned. Returns the physical activations it ended.
fn restart(sim: &mut Sim, physically_active: &mut HashMap<u32, bool>) -> Teardown {
    for vcpu in 0..MPIDRS.len() {
        for slot in 0..sim.lrs[vcpu].len() {
            let Some(lr) = sim.lrs[vcpu][slot].take() else { continue };
            match lr.state {
                LrState::Invalid => sim.account.complete(&mut sim.vgic, vcpu, lr.intid, lr.linked),
                LrState::Active => {
                    sim.account.complete(&mut sim.vgic, vcpu, lr.intid, lr.linked);
                    if lr.linked {
                        physically_active.insert(lr.intid, false);
                    }
                }
                LrState::Pending => {
                    if sim.account.requeue(&mut sim.vgic, vcpu, lr.intid).unwrap() {
                        physically_active.insert(lr.intid, false);
                    }
                }
            }
        }
        sim.running[vcpu].clear();
    }
    let waiting = sim.vgic.waiting() as u64;
    let mut released = Vec::new();
    let mut reset = sim.vgic.clone();
    reset.reset();
    // In parts of 1 to 8 entries (as the core does, one short hold each), or whole.
    let entries = sim.vgic.teardown_entries();
    let part = 1 + (waiting as usize * 7 + entries) % 9;
    let outcome = if part == 9 {
        sim.account.teardown(&mut sim.vgic, |intid, vcpu| released.push((intid, vcpu)))
    } else {
        let mut sum = Teardown::default();
        for start in (0..entries).step_by(part) {
            let one = sim.account.teardown_part(&mut sim.vgic, start..start + part, |intid, vcpu| released.push((intid, vcpu)));
            let snapshot = sim.snapshot();
            assert_eq!((snapshot.lost(), snapshot.overcounted()), (0, 0), "exact between two parts");
            sum += one;
        }
        sim.vgic.teardown_finish();
        sum
    };
    assert!(sim.vgic == reset, "a teardown leaves the model in its reset state");
    for &(intid, _) in &released {
        assert_eq!(physically_active.insert(intid, false), Some(true), "{intid} released without an activation");
    }
    assert_eq!(outcome.discarded, waiting);
    assert_eq!(outcome.listed, 0, "every list register was taken back");
    assert_eq!(outcome.released, released.len() as u64);
    outcome
}

#[test]
fn a_restart_in_any_state_leaves_nothing_active_nothing_listed_and_exact_counts() {
    let mut discarded_somewhere = false;
    let mut released_somewhere = false;
    for seed in 1..=40u64 {
        let mut rng = XorShift::new(seed);
        let lrs = 1 + (seed % 4) as usize;
        let mut sim = Sim::new(lrs);
        let spis: Vec<u32> = (0..8).map(|i| 32 + i).collect();
        let setup = |sim: &mut Sim| {
            for (i, &spi) in spis.iter().enumerate() {
                sim.spi(spi, (i as u8 % 4) * 0x20, i % 2);
            }
            for sgi in 0..4 {
                sim.sgi(sgi, 0x10 * sgi as u8 + 0x30);
            }
        };
        setup(&mut sim);
        let mut physically_active: HashMap<u32, bool> = HashMap::new();
        // Every state a run can reach: stop after a random number of random steps.
        let steps = rng.next() % 400;
        for _ in 0..steps {
            let vcpu = (rng.next() % 2) as usize;
            match rng.next() % 8 {
                0 | 1 => {
                    let spi = spis[(rng.next() % spis.len() as u64) as usize];
                    if !physically_active.get(&spi).copied().unwrap_or(false) {
                        sim.forward(spi);
                        physically_active.insert(spi, sim.vgic.state(spi, 0).unwrap().hw_pending);
                    }
                }
                2 => {
                    let sgi = (rng.next() % 4) as u32;
                    sim.account.sgi1r(&mut sim.vgic, vcpu, u64::from(sgi) << 24 | 0b11).unwrap();
                }
                3 | 4 => sim.flush(vcpu),
                5 | 6 => {
                    sim.ack(vcpu);
                }
                _ => sim.eoi(vcpu),
            }
            for lrs in &sim.lrs {
                for lr in lrs.iter().flatten() {
                    if lr.linked && lr.state == LrState::Invalid {
                        physically_active.insert(lr.intid, sim.vgic.state(lr.intid, 0).unwrap().hw_pending);
                    }
                }
            }
            sim.check();
        }
        let before = sim.snapshot();
        let outcome = restart(&mut sim, &mut physically_active);
        discarded_somewhere |= outcome.discarded > 0;
        released_somewhere |= outcome.released > 0;
        let after = sim.snapshot();
        assert!(physically_active.values().all(|&active| !active), "seed {seed}: {physically_active:?}");
        assert_eq!((after.waiting, after.in_flight(), after.balance()), (0, 0, 0), "seed {seed}: {after:?}");
        assert_eq!(after.discarded - before.discarded, outcome.discarded, "seed {seed}");
        assert_eq!(after.logged, before.logged, "seed {seed}: a restart is no arrival");
        for vcpu in 0..MPIDRS.len() {
            for intid in (0..32).chain(spis.iter().copied()) {
                let state = sim.vgic.state(intid, vcpu).unwrap();
                assert!(
                    !state.enabled && !state.pending() && !state.active && !state.listed && !state.hw_pending && !state.hw_listed,
                    "seed {seed}: {intid} on vCPU {vcpu} kept {state:?}"
                );
            }
            assert_eq!(sim.vgic.ready_count(vcpu), 0);
        }
        // The next guest starts from the reset state and gets everything it is sent.
        sim.dist_write(GICD_CTLR, u64::from(CTLR_ENABLE_GRP1 | CTLR_ARE));
        setup(&mut sim);
        for &spi in &spis {
            sim.forward(spi);
        }
        sim.drain();
        let end = sim.snapshot();
        assert_eq!((end.waiting, end.in_flight(), end.lost(), end.overcounted()), (0, 0, 0, 0), "seed {seed}: {end:?}");
        assert!(end.logged >= after.logged + spis.len() as u64);
    }
    assert!(discarded_somewhere && released_somewhere, "the seeds never reached a restart with something pending and linked");
}

#[test]
fn equal_priorities_are_replayed_oldest_first_so_a_busy_one_cannot_starve_another() {
    // One list register. SPI 40 fires again while the guest handles it; SPI 50 (same
    // priority, higher INTID) fires with it. When the list register comes free both wait,
    // 50 for longer: ordered by INTID, 40 would win every time and 50 wait for ever.
    let mut sim = Sim::new(1);
    sim.spi(40, 0xa0, 0);
    sim.spi(50, 0xa0, 0);
    sim.forward(40);
    let mut delivered = Vec::new();
    for _ in 0..6 {
        sim.flush(0);
        let taken = sim.ack(0).unwrap();
        delivered.push(taken);
        if taken == 40 {
            sim.forward(40);
            if !sim.vgic.is_waiting(50, 0) {
                sim.forward(50);
            }
        }
        sim.eoi(0);
    }
    assert_eq!(delivered, [40, 50, 40, 50, 40, 50], "each in its turn");
    sim.drain();
    sim.check();
    assert_eq!(sim.snapshot().lost(), 0);
}

#[test]
fn an_evicted_entry_keeps_its_place_among_its_priority() {
    // Two list registers: 41 (0xc0) in list register 1, and 43 (0xc0) filled after it into
    // list register 0. SPI 39 (0xc0) then waits, and 42 (0x40) arrives: the most recently
    // filled list register, 43's, goes back (not the higher-numbered one). Back in the log,
    // 43 is still older than 39: it is replayed before it.
    let mut sim = Sim::new(2);
    for intid in [39, 40, 41, 43] {
        sim.spi(intid, 0xc0, 0);
    }
    sim.spi(42, 0x40, 0);
    sim.forward(40);
    sim.flush(0);
    sim.forward(41);
    sim.flush(0);
    assert_eq!(sim.ack(0), Some(40));
    sim.eoi(0);
    sim.forward(43);
    sim.flush(0);
    sim.forward(39);
    sim.forward(42);
    let listed: Vec<_> = sim.lrs[0]
        .iter()
        .enumerate()
        .filter_map(|(index, lr)| lr.map(|l| Listed { index, pending: l.state == LrState::Pending, priority: l.priority, since: l.injected }))
        .collect();
    let best = sim.vgic.highest_pending(0).map(|(_, priority)| priority);
    let index = evict_for(listed, best).unwrap();
    let evicted = sim.lrs[0][index].take().unwrap();
    assert_eq!((index, evicted.intid), (0, 43));
    sim.account.requeue(&mut sim.vgic, 0, evicted.intid).unwrap();
    assert_eq!(sim.vgic.pending_for(0).collect::<Vec<_>>(), [(42, 0x40), (43, 0xc0), (39, 0xc0)]);
    sim.drain();
    sim.check();
    assert_eq!(sim.delivered[0].len(), 5);
}

#[test]
fn guest_writes_to_a_listed_interrupt_update_or_withdraw_its_list_register() {
    let mut sim = Sim::new(4);
    for intid in [40, 41, 42, 43] {
        sim.spi(intid, 0xc0, 0);
        sim.forward(intid);
    }
    sim.flush(0);
    assert_eq!(sim.ack(0), Some(40), "40 is acknowledged: the guest's now");
    let before = sim.snapshot();
    // Priority of 41, disable of 42, clear-pending of 43, and the same three writes to the
    // acknowledged 40.
    sim.dist_write(GICD_IPRIORITYR + 40, 0xc0c0_2020);
    sim.dist_write(GICD_ICENABLER + 4, (1 << 8) | (1 << 10));
    sim.dist_write(GICD_ICPENDR + 4, (1 << 8) | (1 << 11));
    assert!(sim.vgic.listed_copy_outdated(41, 0, 0xc0));
    assert!(!sim.vgic.listed_copy_outdated(41, 0, 0x20), "the new priority matches");
    let released = sim.recheck(0);
    // Forwarded, so linked: a copy withdrawn gives its physical activation up.
    assert_eq!(released, [42, 43]);
    let listed: Vec<u32> = sim.lrs[0].iter().flatten().map(|lr| lr.intid).collect();
    assert_eq!(listed, [40], "41, 42 and 43 taken back; the acknowledged 40 stays");
    // 41 goes in again with its new priority; 42 (disabled, still pending) and 43 (cleared)
    // do not.
    sim.flush(0);
    let relisted: Vec<(u32, u8)> = sim.lrs[0].iter().flatten().map(|lr| (lr.intid, lr.priority)).collect();
    assert_eq!(relisted, [(40, 0xc0), (41, 0x20)]);
    let s = sim.snapshot();
    assert_eq!(s.requeued - before.requeued, 3);
    assert_eq!(s.withdrawn - before.withdrawn, 1, "43 left the log unreplayed");
    assert!(sim.vgic.is_waiting(42, 0), "a disabled interrupt stays pending");
    sim.eoi(0);
    // Enabled again, 42 is replayed (its physical activation was released: a new one would
    // be forwarded again; here the latched edge goes in as a software interrupt).
    sim.dist_write(GICD_ISENABLER + 4, 1 << 10);
    sim.drain();
    sim.check();
    let delivered: Vec<u32> = sim.delivered[0].iter().map(|&(intid, _)| intid).collect();
    assert_eq!(delivered, [40, 41, 42]);
    let s = sim.snapshot();
    assert_eq!((s.logged, s.replayed(), s.withdrawn, s.waiting, s.lost(), s.overcounted()), (4, 3, 1, 0, 0, 0), "{s:?}");
}

#[test]
fn set_pending_and_clear_active_writes_to_listed_interrupts_merge_complete_or_requeue() {
    let mut sim = Sim::new(4);
    // 43 and then the more urgent 41 acknowledged (active, nested); 40 and 42 still pending.
    for (intid, priority) in [(40, 0x80), (41, 0x10), (42, 0x90), (43, 0x30)] {
        sim.spi(intid, priority, 0);
    }
    sim.forward(43);
    sim.flush(0);
    assert_eq!(sim.ack(0), Some(43));
    sim.forward(41);
    sim.flush(0);
    assert_eq!(sim.ack(0), Some(41));
    sim.forward(40);
    sim.forward(42);
    sim.flush(0);
    let before = sim.snapshot();
    // Set-pending of the pending 40 and of the acknowledged 43; clear-active of the pending
    // 42 and of the acknowledged 41.
    sim.dist_write(GICD_ISPENDR + 4, (1 << 8) | (1 << 11));
    sim.dist_write(GICD_ICACTIVER + 4, (1 << 9) | (1 << 10));
    assert_eq!(sim.vgic.listed_copy_update(40, 0, 0x80, false), ListedUpdate::Merge);
    assert_eq!(sim.vgic.listed_copy_update(41, 0, 0x10, true), ListedUpdate::Complete);
    assert_eq!(sim.vgic.listed_copy_update(42, 0, 0x90, false), ListedUpdate::Requeue);
    assert_eq!(sim.vgic.listed_copy_update(43, 0, 0x30, true), ListedUpdate::Keep);
    let released = sim.recheck(0);
    // 41's list register is gone with its link: the core deactivates the physical interrupt.
    assert_eq!(released, [41]);
    let listed: Vec<u32> = sim.lrs[0].iter().flatten().map(|lr| lr.intid).collect();
    assert_eq!(listed, [43, 40], "41 completed, 42 taken back; 40 and 43 kept");
    assert!(!sim.vgic.is_waiting(40, 0), "40's new pending state merged into its copy");
    assert!(sim.vgic.is_waiting(43, 0), "43 is pending again behind its active copy");
    assert!(!sim.vgic.state(41, 0).unwrap().active && !sim.vgic.is_listed(41, 0));
    sim.check();
    let s = sim.snapshot();
    assert_eq!(s.coalesced - before.coalesced, 1, "the set-pending of 40 coalesced");
    assert_eq!(s.requeued - before.requeued, 1, "42 given back");
    // The guest ends 41 (priority drop only) and 43, then takes what is left: 40 once, 42
    // once, 43 again (its second pending state).
    sim.eoi(0);
    sim.eoi(0);
    sim.drain();
    sim.check();
    let delivered: Vec<u32> = sim.delivered[0].iter().map(|&(intid, _)| intid).collect();
    assert_eq!(delivered, [43, 41, 43, 40, 42]);
    let s = sim.snapshot();
    assert_eq!((s.waiting, s.lost(), s.overcounted()), (0, 0, 0), "{s:?}");
}

/// The guest's timer through the PPI fast path, beside an SPI, against the same arrivals
/// through the general path (forward, then the flush): the same deliveries and the same
/// counters, exact at every step; where the fast path does not apply (no list register
/// free, the distributor off) the general path takes the interrupt and nothing is lost.
#[test]
fn the_ppi_fast_path_counts_what_the_general_path_counts() {
    const TIMER: u32 = 27;
    let (mut fast, mut general) = (Sim::new(4), Sim::new(4));
    for sim in [&mut fast, &mut general] {
        sim.ppi(0, TIMER, 0xa0);
        sim.spi(40, 0x80, 0);
        sim.spi(41, 0xc0, 0);
    }
    // The guest takes everything pending and ends it (the physical timer fires again only
    // once its linked copy is deactivated).
    let guest = |sim: &mut Sim| {
        loop {
            while sim.ack(0).is_some() {}
            if sim.running[0].is_empty() {
                break;
            }
            sim.eoi(0);
        }
    };
    let mut taken = 0;
    for round in 0..300 {
        if round % 3 == 0 {
            fast.forward(40);
            general.forward(40);
        }
        if round % 7 == 0 {
            fast.forward(41);
            general.forward(41);
        }
        taken += u32::from(fast.forward_ppi(0, TIMER));
        general.account.forward(&mut general.vgic, TIMER, 0).unwrap();
        fast.flush(0);
        general.flush(0);
        fast.check();
        general.check();
        assert_eq!(fast.snapshot(), general.snapshot(), "round {round}");
        guest(&mut fast);
        guest(&mut general);
    }
    assert_eq!(taken, 300, "every timer interrupt took the fast path");
    assert_eq!(fast.delivered, general.delivered);
    let s = fast.snapshot();
    assert_eq!((s.logged, s.forwarded, s.injected_linked), (300 + 100 + 43, 300 + 100 + 43, 300 + 100 + 43), "{s:?}");
    // The list registers full of SPIs the guest has not taken yet: the timer waits in the
    // model, and is delivered after them.
    for intid in 42..46 {
        fast.spi(intid, 0x90, 0);
        fast.forward(intid);
    }
    fast.flush(0);
    assert!(fast.lrs[0].iter().all(|lr| lr.is_some_and(|l| l.intid >= 42)));
    assert!(!fast.forward_ppi(0, TIMER), "no list register free: the general path");
    fast.check();
    // The distributor off: the fast path declines, the timer waits (pending) in the model.
    fast.drain();
    fast.dist_write(GICD_CTLR, u64::from(CTLR_ARE));
    assert!(!fast.forward_ppi(0, TIMER));
    fast.check();
    fast.dist_write(GICD_CTLR, u64::from(CTLR_ENABLE_GRP1 | CTLR_ARE));
    fast.drain();
    fast.check();
    // The four SPIs (more urgent), the timer that found no list register free, then the
    // one forwarded while the distributor was off.
    let delivered: Vec<u32> = fast.delivered[0].iter().skip(fast.delivered[0].len() - 6).map(|&(intid, _)| intid).collect();
    assert_eq!(delivered, [42, 43, 44, 45, TIMER, TIMER]);
    let s = fast.snapshot();
    assert_eq!((s.waiting, s.lost(), s.overcounted(), s.in_flight()), (0, 0, 0, 0), "{s:?}");
}
