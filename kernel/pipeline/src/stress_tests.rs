//! Long randomized test: interleaved raises (doorbell edges, hardware-linked level lines going
//! up and down), flushes, guest acknowledges and EOIs (nested by priority), maintenance exits,
//! checked against a reference model: nothing dropped, nothing duplicated, never reordered
//! against priority, and the counters always add up.

use crate::test_util::XorShift;
use crate::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Physical,
    Maintenance,
    Voluntary,
    Idle,
}

struct Sim<const L: usize> {
    rng: XorShift,
    log: Box<ReplayLog<L>>,
    lrs: ListRegisters,
    /// State fields of the hardware list registers.
    hw: Vec<LrHwState>,
    /// Hardware EOIcount since the last sync.
    eoi_count: u32,
    /// Maintenance enables programmed by the last flush.
    maint: Maintenance,
    /// The interrupt universe; index = line number.
    lines: Vec<VirqDesc>,
    idx_of: Vec<Option<usize>>,
    // Reference model, per line.
    /// An occurrence exists that the guest has not acknowledged yet.
    pending: Vec<bool>,
    /// `pending` and already handed to the pipeline (raised into the log).
    in_flight: Vec<bool>,
    /// The guest is handling it.
    active: Vec<bool>,
    /// Occurrences that must be delivered (not coalesced).
    occurrences: Vec<u64>,
    /// Level occurrences withdrawn because the line went low before delivery.
    withdrawn: Vec<u64>,
    acks: Vec<u64>,
    /// Guest deactivations, and completions reported by `sync_from_hardware`.
    eois: Vec<u64>,
    completions: Vec<u64>,
    // Physical GIC, for the hardware-linked level lines.
    line_high: Vec<bool>,
    phys_active: Vec<bool>,
    /// Guest's active interrupts, innermost (highest priority) last.
    stack: Vec<usize>,
    now: u64,
    exits: [u64; 4],
}

impl<const L: usize> Sim<L> {
    fn new(seed: u64, nr_lrs: usize, fall_out: bool) -> Self {
        let mut rng = XorShift::new(seed);
        let prios = [0x20u8, 0x40, 0x41, 0x80, 0x80, 0x81, 0x88, 0xa0, 0xf0];
        let mut lines = Vec::new();
        let mut used = vec![false; NR_INTIDS];
        // 3 SGI doorbells, 10 SPI doorbells (edge, no HW link), 6 hardware-linked level SPIs.
        for n in 0..19 {
            let raw = loop {
                let raw = if n < 3 {
                    rng.below(16)
                } else {
                    32 + rng.below(400)
                } as u32;
                if !used[raw as usize] {
                    used[raw as usize] = true;
                    break raw;
                }
            };
            let id = IntId::new(raw).unwrap();
            let prio = prios[rng.below(prios.len() as u64) as usize];
            let d = if n < 13 {
                VirqDesc::new(id, prio, Trigger::Edge).unwrap()
            } else {
                VirqDesc::new(id, prio, Trigger::Level)
                    .unwrap()
                    .with_hw(id)
                    .unwrap()
            };
            lines.push(d);
        }
        let mut idx_of = vec![None; NR_INTIDS];
        for (i, d) in lines.iter().enumerate() {
            idx_of[d.intid().index()] = Some(i);
        }
        let n = lines.len();
        let mut lrs = ListRegisters::new(nr_lrs).unwrap();
        lrs.set_fall_out(fall_out);
        Self {
            rng,
            log: Box::new(ReplayLog::new()),
            lrs,
            hw: vec![LrHwState::Empty; nr_lrs],
            eoi_count: 0,
            maint: Maintenance::default(),
            lines,
            idx_of,
            pending: vec![false; n],
            in_flight: vec![false; n],
            active: vec![false; n],
            occurrences: vec![0; n],
            withdrawn: vec![0; n],
            acks: vec![0; n],
            eois: vec![0; n],
            completions: vec![0; n],
            line_high: vec![false; n],
            phys_active: vec![false; n],
            stack: Vec::new(),
            now: 0,
            exits: [0; 4],
        }
    }

    fn idx(&self, id: IntId) -> usize {
        self.idx_of[id.index()].expect("INTID outside the universe")
    }

    fn is_hw_level(&self, i: usize) -> bool {
        self.lines[i].hw().is_some()
    }

    fn key(&self, i: usize) -> (u8, IntId) {
        (
            ReplayLog::<L>::level_of(self.lines[i].priority()),
            self.lines[i].intid(),
        )
    }

    /// A hardware-linked level line that the physical GIC would signal now.
    fn physical_ready(&self) -> bool {
        (0..self.lines.len())
            .any(|i| self.is_hw_level(i) && self.line_high[i] && !self.phys_active[i])
    }

    // ---- EL2 ---------------------------------------------------------------------------

    fn random_event(&mut self) {
        let n = self.lines.len();
        let i = self.rng.below(n as u64) as usize;
        if !self.is_hw_level(i) {
            // Doorbell: oob code posts an edge.
            self.log.raise(self.lines[i], self.now);
            if !self.pending[i] {
                self.pending[i] = true;
                self.in_flight[i] = true;
                self.occurrences[i] += 1;
            }
        } else if self.rng.chance(60) {
            if !self.line_high[i] {
                self.line_high[i] = true;
                if !self.active[i] && !self.pending[i] {
                    self.pending[i] = true;
                    self.occurrences[i] += 1;
                    // Went low and high again before EL2 resampled it: the entry still in the
                    // pipeline now stands for this new occurrence.
                    self.in_flight[i] = self.phys_active[i];
                }
            }
        } else if self.line_high[i] {
            self.line_high[i] = false;
            if self.pending[i] {
                self.pending[i] = false;
                self.in_flight[i] = false;
                self.withdrawn[i] += 1;
            }
        }
    }

    /// EL2 takes every physical interrupt the GIC signals: ack, priority drop, log.
    fn take_physical(&mut self) {
        for i in 0..self.lines.len() {
            if self.is_hw_level(i) && self.line_high[i] && !self.phys_active[i] {
                assert!(
                    !self.active[i],
                    "physical inactive while the guest handles it"
                );
                assert!(self.pending[i]);
                self.phys_active[i] = true;
                self.in_flight[i] = true;
                self.log.raise(self.lines[i], self.now);
            }
        }
    }

    fn el2_entry(&mut self, events: bool) {
        self.now += 1 + self.rng.below(50);
        let mut completions = Vec::new();
        let s = self
            .lrs
            .sync_from_hardware(&self.hw, self.eoi_count, self.now, |c| completions.push(c))
            .unwrap();
        assert_eq!(s.anomalies, 0);
        self.eoi_count = 0;
        for c in completions {
            let i = self.idx(c.desc.intid());
            self.completions[i] += 1;
            if c.deactivate_physical {
                assert!(self.phys_active[i]);
                self.phys_active[i] = false;
            } else if c.desc.hw().is_some() {
                assert!(!self.phys_active[i], "HW bit should have deactivated it");
            }
        }
        assert_eq!(
            self.completions, self.eois,
            "guest EOIs and reported completions differ"
        );
        if events {
            for _ in 0..self.rng.below(4) {
                self.random_event();
            }
        }
        self.take_physical();

        let idx_of = &self.idx_of;
        let line_high = &self.line_high;
        let phys_active = &mut self.phys_active;
        let pending = &self.pending;
        let mut asserted = |d: &VirqDesc| {
            let i = idx_of[d.intid().index()].unwrap();
            let high = line_high[i];
            if !high {
                assert!(!pending[i], "dropping a level interrupt whose line is high");
                if d.hw().is_some() {
                    phys_active[i] = false; // the glue deactivates it
                }
            }
            high
        };
        // Lines may have dropped while their interrupt waits in an LR: resample those too, so
        // the guest never sees a de-asserted level interrupt (checked in `ack`).
        {
            let dirty = self.lrs.resample_resident(&mut asserted);
            for i in 0..self.hw.len() {
                if dirty & (1 << i) != 0 {
                    self.hw[i] = self.lrs.get(i).unwrap().hw_state();
                }
            }
        }
        let out = self.lrs.flush(&mut self.log, self.now, &mut asserted);
        for i in 0..self.hw.len() {
            let model = self.lrs.get(i).unwrap().hw_state();
            if out.dirty & (1 << i) != 0 {
                self.hw[i] = model;
            } else {
                assert_eq!(
                    self.hw[i], model,
                    "LR {i} changed without being marked dirty"
                );
            }
        }
        self.maint = out.maintenance;
        self.check_after_flush(&out);
    }

    fn check_after_flush(&self, out: &FlushOutcome) {
        let ls = self.log.stats();
        let rs = self.lrs.stats();
        assert!(ls.balanced(), "{ls:?}");
        assert_eq!(ls.lost, 0);
        assert_eq!(ls.cancelled, 0);
        assert_eq!(rs.injected, ls.replayed);
        assert_eq!(
            rs.injected,
            rs.completed + rs.evicted + rs.level_dropped + self.lrs.resident(),
            "{rs:?}"
        );
        assert_eq!(rs.anomalies, 0);

        // No INTID in two LRs.
        let mut seen = vec![false; NR_INTIDS];
        for s in self.lrs.iter() {
            if let Some(d) = s.desc() {
                assert!(!seen[d.intid().index()], "INTID {} in two LRs", d.intid());
                seen[d.intid().index()] = true;
            }
        }
        // What the guest has active is exactly what LRs hold active plus what fell out.
        let mut active_model: Vec<usize> = self
            .lrs
            .iter()
            .filter(|s| matches!(s, LrState::Active(_) | LrState::PendingActive(_)))
            .map(|s| self.idx(s.desc().unwrap().intid()))
            .chain(self.lrs.fallen_out().map(|d| self.idx(d.intid())))
            .collect();
        active_model.sort_unstable();
        let mut active_guest = self.stack.clone();
        active_guest.sort_unstable();
        assert_eq!(active_model, active_guest);
        // Fallen-out actives leave in the guest's deactivation order.
        let fallen: Vec<usize> = self.lrs.fallen_out().map(|d| self.idx(d.intid())).collect();
        let stack_order: Vec<usize> = self
            .stack
            .iter()
            .rev()
            .copied()
            .filter(|i| fallen.contains(i))
            .collect();
        assert_eq!(fallen, stack_order);

        // Every pending LR holds a real, undelivered occurrence.
        for s in self.lrs.iter() {
            if let LrState::Pending(d) | LrState::PendingActive(d) = s {
                let i = self.idx(d.intid());
                assert!(
                    self.pending[i] && self.in_flight[i],
                    "LR holds {s:?} which is not pending: pending {} in flight {} active {} high {} phys {} lrs {:?} stack {:?}",
                    self.pending[i],
                    self.in_flight[i],
                    self.active[i],
                    self.line_high[i],
                    self.phys_active[i],
                    self.lrs,
                    self.stack
                );
            }
        }
        // Every undelivered occurrence is somewhere: the log or a pending LR.
        for i in 0..self.lines.len() {
            if self.in_flight[i] {
                let id = self.lines[i].intid();
                let in_lr = self
                    .lrs
                    .iter()
                    .any(|s| matches!(s, LrState::Pending(d) | LrState::PendingActive(d) if d.intid() == id));
                assert!(in_lr || self.log.contains(id), "INTID {id} lost");
            }
        }
        // LRs hold the best entries; maintenance exactly while placeable entries remain.
        let blocked = |p: &Pending| {
            let id = p.desc.intid();
            self.lrs.find(id).is_some()
                || (p.desc.hw().is_some() && self.lrs.fallen_out().any(|d| d.intid() == id))
        };
        let placeable: Vec<Pending> = self.log.iter().filter(|p| !blocked(p)).collect();
        assert_eq!(out.maintenance.underflow, !placeable.is_empty());
        assert_eq!(out.maintenance.eoi_count, self.lrs.fallen_out().count() > 0);
        for s in self.lrs.iter() {
            if let LrState::Pending(d) = s {
                let k = self.key(self.idx(d.intid()));
                for q in &placeable {
                    assert!(
                        k < self.key(self.idx(q.desc.intid())),
                        "LR holds {k:?} while {:?} waits",
                        q.desc
                    );
                }
            }
        }
    }

    // ---- guest -------------------------------------------------------------------------

    fn running_level(&self) -> u16 {
        self.stack
            .last()
            .map_or(u16::MAX, |&i| u16::from(self.key(i).0))
    }

    /// The LR the virtual CPU interface would signal: best pending (not pending+active) LR
    /// whose priority preempts the running one.
    fn ackable(&self) -> Option<usize> {
        let running = self.running_level();
        (0..self.hw.len())
            .filter(|&i| self.hw[i] == LrHwState::Pending)
            .map(|i| {
                (
                    self.key(self.idx(self.lrs.get(i).unwrap().desc().unwrap().intid())),
                    i,
                )
            })
            .filter(|((level, _), _)| u16::from(*level) < running)
            .min()
            .map(|(_, i)| i)
    }

    fn ack(&mut self, lr: usize, lower_line: bool) {
        let d = self.lrs.get(lr).unwrap().desc().unwrap();
        let x = self.idx(d.intid());
        assert!(
            self.pending[x],
            "duplicate: guest acknowledged {} with nothing pending",
            d.intid()
        );
        assert!(!self.active[x]);
        let running = self.running_level();
        for y in 0..self.lines.len() {
            if y != x && self.in_flight[y] && !self.active[y] && u16::from(self.key(y).0) < running
            {
                assert!(
                    self.key(x) <= self.key(y),
                    "reordered: {:?} delivered before {:?}\nhw {:?}\nlrs {:?}\nfallen {:?}\nlog {:?}\nstack {:?} maint {:?} y: pending {} active {} phys {} high {}",
                    self.key(x),
                    self.key(y),
                    self.hw,
                    self.lrs.iter().collect::<Vec<_>>(),
                    self.lrs.fallen_out().collect::<Vec<_>>(),
                    self.log.iter().collect::<Vec<_>>(),
                    self.stack.iter().map(|&i| self.key(i)).collect::<Vec<_>>(),
                    self.maint,
                    self.pending[y],
                    self.active[y],
                    self.phys_active[y],
                    self.line_high[y],
                );
            }
        }
        self.pending[x] = false;
        self.in_flight[x] = false;
        self.active[x] = true;
        self.acks[x] += 1;
        self.stack.push(x);
        self.hw[lr] = LrHwState::Active;
        if self.is_hw_level(x) && lower_line {
            self.line_high[x] = false; // the driver cleared the device's condition
        }
    }

    fn eoi(&mut self) {
        let x = self.stack.pop().unwrap();
        self.active[x] = false;
        self.eois[x] += 1;
        let id = self.lines[x].intid();
        let lr = (0..self.hw.len()).find(|&i| {
            matches!(self.hw[i], LrHwState::Active | LrHwState::PendingActive)
                && self.lrs.get(i).unwrap().desc().unwrap().intid() == id
        });
        match lr {
            Some(i) => {
                self.hw[i] = if self.hw[i] == LrHwState::Active {
                    LrHwState::Empty
                } else {
                    LrHwState::Pending
                };
                if self.is_hw_level(x) {
                    self.phys_active[x] = false; // HW bit: deactivates the physical interrupt
                }
            }
            None => {
                assert!(
                    self.lrs.fallen_out().any(|d| d.intid() == id),
                    "EOI of {id} matches nothing"
                );
                self.eoi_count += 1;
            }
        }
        if self.is_hw_level(x) && self.line_high[x] {
            // Still asserted: a new occurrence once the physical side is deactivated.
            self.pending[x] = true;
            self.occurrences[x] += 1;
        }
    }

    fn run_guest(&mut self, voluntary: bool, lower_percent: u64) -> Exit {
        loop {
            if self.physical_ready() {
                return Exit::Physical;
            }
            let valid = self.hw.iter().filter(|s| **s != LrHwState::Empty).count();
            if (self.maint.underflow && valid <= 1) || (self.maint.eoi_count && self.eoi_count > 0)
            {
                return Exit::Maintenance;
            }
            if voluntary && self.rng.chance(10) {
                return Exit::Voluntary;
            }
            let ack = self.ackable();
            let can_eoi = !self.stack.is_empty();
            match ack {
                None if !can_eoi => return Exit::Idle,
                Some(lr) if !can_eoi || self.rng.chance(55) => {
                    let lower = self.rng.chance(lower_percent);
                    self.ack(lr, lower);
                }
                _ => self.eoi(),
            }
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            let exit = self.run_guest(true, 70);
            self.exits[exit as usize] += 1;
            self.el2_entry(true);
        }
        // Drain: no new events, the guest exits only when the hardware makes it.
        let mut rounds = 0;
        loop {
            let exit = self.run_guest(false, 100);
            self.exits[exit as usize] += 1;
            if exit == Exit::Idle {
                break;
            }
            self.el2_entry(false);
            rounds += 1;
            assert!(rounds < 100_000, "no progress while draining");
        }
        // Let EL2 see the final state once more, as the next exit would.
        self.el2_entry(false);
        assert_eq!(
            self.run_guest(false, 100),
            Exit::Idle,
            "stalled with work left"
        );

        assert!(
            self.log.is_empty(),
            "log not drained: {:?}",
            self.log.iter().collect::<Vec<_>>()
        );
        assert!(self.lrs.iter().all(|s| s == LrState::Empty));
        assert_eq!(self.lrs.fallen_out().count(), 0);
        assert!(self.stack.is_empty());
        for i in 0..self.lines.len() {
            assert!(!self.pending[i], "{:?} never delivered", self.lines[i]);
            assert_eq!(
                self.acks[i] + self.withdrawn[i],
                self.occurrences[i],
                "{:?}: delivered {} withdrawn {} of {}",
                self.lines[i],
                self.acks[i],
                self.withdrawn[i],
                self.occurrences[i]
            );
            if !self.is_hw_level(i) {
                assert_eq!(self.withdrawn[i], 0);
            }
        }
        let (ls, rs) = (self.log.stats(), self.lrs.stats());
        assert!(ls.balanced());
        assert_eq!(ls.lost, 0);
        assert_eq!(rs.acked, rs.completed);
        assert_eq!(rs.acked, self.acks.iter().sum::<u64>());
    }
}

fn run_config<const L: usize>(seed: u64, nr_lrs: usize, fall_out: bool) -> (LogStats, LrStats) {
    let mut sim = Sim::<L>::new(seed, nr_lrs, fall_out);
    sim.run(20_000);
    if nr_lrs <= 4 {
        // 19 lines cannot fit in 4 LRs: the maintenance path must have been exercised.
        assert!(
            sim.exits[Exit::Maintenance as usize] > 0,
            "no maintenance exit exercised"
        );
    }
    (sim.log.stats(), sim.lrs.stats())
}

#[test]
fn randomized_pipeline_against_reference() {
    let mut fell_out = 0;
    let mut evicted = 0;
    let mut coalesced = 0;
    let mut level_dropped = 0;
    for seed in [1u64, 0x5eed, 0xc0ffee] {
        for nr_lrs in [2, 4, 16] {
            for fall_out in [false, true] {
                let (ls, rs) = run_config::<DEFAULT_LEVELS>(seed, nr_lrs, fall_out);
                let (ls8, rs8) = run_config::<256>(seed ^ 0xff, nr_lrs, fall_out);
                fell_out += rs.fell_out + rs8.fell_out;
                evicted += rs.evicted + rs8.evicted;
                coalesced += ls.coalesced + ls8.coalesced;
                level_dropped +=
                    ls.level_dropped + ls8.level_dropped + rs.level_dropped + rs8.level_dropped;
            }
        }
    }
    // The interesting paths were all exercised.
    assert!(fell_out > 0 && evicted > 0 && coalesced > 0 && level_dropped > 0);
}
