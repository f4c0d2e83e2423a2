//! The replay log's accounting: every in-band interrupt counter of the core, in one place.
//!
//! The replay log is the vGIC model itself ([`crate::vgic`]): one entry per INTID (and vCPU,
//! for a private one) that waits for the guest ([`IrqState::waiting`](crate::vgic::IrqState::waiting)), replayed into the
//! list registers most urgent first. [`ReplayAccount`] counts what enters and leaves it, and
//! the glue changes the log only through its methods (which call the model and count what
//! the model did), so the balance is exact:
//!
//! `logged = replayed + coalesced + withdrawn + discarded + waiting + lost`, where
//!
//! - `logged`: every arrival — a forwarded physical interrupt, a guest SGI per target, a
//!   posted SGI, a guest set-pending write, an emulated line rising, a level line still high
//!   when its listed copy was deactivated (resampled);
//! - `replayed`: injections into list registers, minus those a list register gave back
//!   (requeued, so waiting again);
//! - `coalesced`: arrivals merged into an entry already waiting (and a requeued copy merged
//!   into a new arrival of the same INTID);
//! - `withdrawn`: entries that left unreplayed because their source no longer asks (an
//!   emulated line fell, the guest cleared the pending state, changed the trigger, or
//!   disabled a linked interrupt it gave back);
//! - `discarded`: entries a restarted guest left in the log, dropped with it
//!   ([`ReplayAccount::teardown`]);
//! - `waiting`: entries still in the log ([`Vgic::waiting`]);
//! - `lost`: what is left. It is computed without saturation ([`ReplaySnapshot::balance`]):
//!   any non-zero balance is a bug of the glue or the model, in either direction.
//!
//! The counters are relaxed atomics: the glue updates them from any CPU with IRQs masked.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::vgic::{Change, ChangeKind, Error, Forwarded, SgiTargets, Teardown, Vgic};

/// INTIDs counted per INTID (SGIs, PPIs and SPIs up to the GICv3 limit).
pub const COUNTED_INTIDS: usize = 1020;

/// A worst, total and count of durations (counter ticks).
#[derive(Debug)]
pub struct Span {
    max: AtomicU64,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Span {
    /// Nothing recorded.
    pub const fn new() -> Self {
        Self { max: AtomicU64::new(0), sum: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    /// Records one duration of `ticks`.
    pub fn record(&self, ticks: u64) {
        // The atomic maximum only when `ticks` beats the one seen (rare): a load otherwise.
        if ticks > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(ticks, Ordering::Relaxed);
        }
        self.sum.fetch_add(ticks, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The worst duration recorded.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The average duration (0 if none).
    pub fn average(&self) -> u64 {
        self.sum.load(Ordering::Relaxed) / self.count.load(Ordering::Relaxed).max(1)
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Default for Span {
    fn default() -> Self {
        Self::new()
    }
}

/// The replay log's counters, and every other in-band interrupt counter (forwarded and
/// unclaimed physical interrupts per INTID, list-register injections and completions).
#[derive(Debug)]
pub struct ReplayAccount {
    logged: AtomicU64,
    coalesced: AtomicU64,
    withdrawn: AtomicU64,
    discarded: AtomicU64,
    injected: AtomicU64,
    injected_linked: AtomicU64,
    completed: AtomicU64,
    completed_linked: AtomicU64,
    requeued: AtomicU64,
    max_depth: AtomicU64,
    forwarded: AtomicU64,
    /// Forwards taken by the PPI fast path ([`ReplayAccount::relist`]) with no copy listed:
    /// each is one arrival, one forward and one hardware-linked injection, counted once here
    /// and added to those in [`Self::snapshot`].
    relisted_fresh: AtomicU64,
    /// Forwards taken by the PPI fast path whose listed copy completed at the same time (the
    /// guest timer's every tick): each is what one of [`Self::relisted_fresh`] is, and one
    /// hardware-linked completion — one atomic add instead of six.
    relisted_copies: AtomicU64,
    forwarded_by_intid: [AtomicU64; COUNTED_INTIDS],
    unclaimed_by_intid: [AtomicU64; COUNTED_INTIDS],
    /// Physical interrupt (or raise) to injection.
    pub to_injection: Span,
    /// Injection to the guest's deactivation, for software interrupts (whose EOI
    /// maintenance interrupt reports the completion at once).
    pub to_completion: Span,
    /// oob sections (an oob context holding a CPU, in-band interrupts held in the GIC) that
    /// ended with an in-band interrupt waiting: their length, an upper bound of its wait.
    pub deferred: Span,
    oob_sections: AtomicU64,
}

/// The counters at one moment, with the log's content then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySnapshot {
    /// Arrivals.
    pub logged: u64,
    /// Injections into list registers.
    pub injected: u64,
    /// Of `injected`, hardware-linked ones.
    pub injected_linked: u64,
    /// List registers the core found completed (read back empty, or emptied after the guest
    /// left them active).
    pub completed: u64,
    /// Of `completed`, hardware-linked ones.
    pub completed_linked: u64,
    /// Injections a list register gave back still pending.
    pub requeued: u64,
    /// Arrivals merged into an entry already waiting.
    pub coalesced: u64,
    /// Entries that left unreplayed (their source no longer asks).
    pub withdrawn: u64,
    /// Entries dropped with a guest that restarted ([`ReplayAccount::teardown`]).
    pub discarded: u64,
    /// Most entries left waiting behind full list registers.
    pub max_depth: u64,
    /// Physical interrupts forwarded to the guest.
    pub forwarded: u64,
    /// Entries in the log now ([`Vgic::waiting`]).
    pub waiting: u64,
}

impl ReplaySnapshot {
    /// Injections that stayed injected: `injected - requeued`, exactly (negative only if the
    /// glue gave back more than it injected).
    pub fn replayed(&self) -> i128 {
        i128::from(self.injected) - i128::from(self.requeued)
    }

    /// `logged - (replayed + coalesced + withdrawn + discarded + waiting)`, exactly: positive when
    /// arrivals went missing, negative when something was accounted twice; 0 when every
    /// arrival is accounted for.
    pub fn balance(&self) -> i128 {
        i128::from(self.logged)
            - (self.replayed()
                + i128::from(self.coalesced)
                + i128::from(self.withdrawn)
                + i128::from(self.discarded)
                + i128::from(self.waiting))
    }

    /// Arrivals that went missing (the positive part of [`Self::balance`]).
    pub fn lost(&self) -> u64 {
        u64::try_from(self.balance().max(0)).unwrap_or(u64::MAX)
    }

    /// Arrivals accounted twice (the negative part of [`Self::balance`]).
    pub fn overcounted(&self) -> u64 {
        u64::try_from((-self.balance()).max(0)).unwrap_or(u64::MAX)
    }

    /// Injections neither completed nor given back: what sits in list registers, or was
    /// completed by the guest and not yet read back (hardware-linked).
    pub fn in_flight(&self) -> i128 {
        i128::from(self.injected) - i128::from(self.completed) - i128::from(self.requeued)
    }
}

/// What a full set of list registers holds, for [`evict_for`]: one entry per occupied list
/// register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The list register.
    pub index: usize,
    /// Still pending (not yet acknowledged by the guest).
    pub pending: bool,
    /// Its priority.
    pub priority: u8,
    /// When it was filled (any clock that increases with each injection, such as the
    /// counter): among equals, the most recent goes back first.
    pub since: u64,
}

/// Which list register to give back to the log so that the most urgent waiting entry
/// (priority `waiting`) gets in: the least urgent *pending* one, if it is strictly less
/// urgent than `waiting` (never an active one: the guest is handling it; never for an
/// equal priority: that would only reorder equals). Among equally least urgent ones, the
/// most recently filled ([`Listed::since`], then the highest-numbered list register): the
/// log replays equal priorities oldest first, and eviction keeps that order, so an older
/// entry never goes back behind a younger one of its priority.
pub fn evict_for(listed: impl IntoIterator<Item = Listed>, waiting: Option<u8>) -> Option<usize> {
    let waiting = waiting?;
    listed
        .into_iter()
        .filter(|lr| lr.pending && lr.priority > waiting)
        .max_by_key(|lr| (lr.priority, lr.since, lr.index))
        .map(|lr| lr.index)
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl ReplayAccount {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            logged: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            injected_linked: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            completed_linked: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            max_depth: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            relisted_fresh: AtomicU64::new(0),
            relisted_copies: AtomicU64::new(0),
            forwarded_by_intid: [const { AtomicU64::new(0) }; COUNTED_INTIDS],
            unclaimed_by_intid: [const { AtomicU64::new(0) }; COUNTED_INTIDS],
            to_injection: Span::new(),
            to_completion: Span::new(),
            deferred: Span::new(),
            oob_sections: AtomicU64::new(0),
        }
    }

    /// An oob section of `ticks` ended; `waiting`: an in-band interrupt waited in the GIC
    /// when it ended (it is replayed now).
    pub fn oob_section_ended(&self, ticks: u64, waiting: bool) {
        add(&self.oob_sections, 1);
        if waiting {
            self.deferred.record(ticks);
        }
    }

    /// How many oob sections ended.
    pub fn oob_sections(&self) -> u64 {
        load(&self.oob_sections)
    }

    /// Counts one arrival, merged into an entry already waiting if `coalesced`.
    fn arrived(&self, coalesced: bool) {
        add(&self.logged, 1);
        if coalesced {
            add(&self.coalesced, 1);
        }
    }

    /// Forwards physical interrupt `intid` (acknowledged, priority dropped) to `vcpu`'s
    /// entry ([`Vgic::forward`]) and counts it: an arrival if the model kept it (linked, or
    /// latched while disabled), nothing if it refused it (a disabled level: the physical
    /// line is sampled again once enabled).
    pub fn forward(&self, vgic: &mut Vgic, intid: u32, vcpu: usize) -> Result<Forwarded, Error> {
        let forwarded = vgic.forward(intid, vcpu)?;
        if let Forwarded::Linked { coalesced } | Forwarded::Latched { coalesced } = forwarded {
            self.arrived(coalesced);
            add(&self.forwarded, 1);
            if let Some(count) = self.forwarded_by_intid.get(intid as usize) {
                add(count, 1);
            }
        }
        Ok(forwarded)
    }

    /// Sets `intid` pending for `vcpu` from the core ([`Vgic::set_pending`]: a posted SGI, an
    /// emulated edge) and counts the arrival.
    pub fn set_pending(&self, vgic: &mut Vgic, intid: u32, vcpu: usize) -> Result<(), Error> {
        let was = vgic.is_waiting(intid, vcpu);
        vgic.set_pending(intid, vcpu)?;
        self.arrived(was);
        Ok(())
    }

    /// Drives an emulated line ([`Vgic::set_level`]) and counts what it did to the log: an
    /// entry that began waiting is an arrival, one that stopped is withdrawn (a line falling
    /// behind a listed copy changes nothing: the copy is the guest's).
    pub fn set_level(&self, vgic: &mut Vgic, intid: u32, vcpu: usize, level: bool) -> Result<(), Error> {
        let was = vgic.is_waiting(intid, vcpu);
        vgic.set_level(intid, vcpu, level)?;
        match (was, vgic.is_waiting(intid, vcpu)) {
            (false, true) => self.arrived(false),
            (true, false) => add(&self.withdrawn, 1),
            _ => {}
        }
        Ok(())
    }

    /// A guest `ICC_SGI1R_EL1` write from `sender` ([`Vgic::sgi1r`]): one arrival per target
    /// vCPU, coalesced where that SGI was already waiting.
    pub fn sgi1r(&self, vgic: &mut Vgic, sender: usize, value: u64) -> Result<SgiTargets, Error> {
        let sgi = crate::vgic::SgiRequest::decode(value).intid;
        // Only the targets are looked at (the exit's hold is bounded by them, not by every
        // vCPU): a bit per target already waiting.
        let targets = vgic.sgi_targets(sender, value)?;
        let mut was = 0u32;
        for target in targets.iter() {
            was |= u32::from(vgic.is_waiting(sgi, target)) << target;
        }
        vgic.raise_sgi(targets, sgi);
        for target in targets.iter() {
            self.arrived(was & (1 << target) != 0);
        }
        Ok(targets)
    }

    /// Counts what a guest GIC write ([`Vgic::dist_write`], [`Vgic::redist_write`]) did to
    /// the log: a set-pending is an arrival for each interrupt it made pending (coalesced
    /// where it was already waiting, as a level line or a linked activation); entries the
    /// write took out unreplayed are withdrawn; a trigger change that made a high line
    /// pending is an arrival.
    pub fn guest_write(&self, change: &Change) {
        let (entered, left) = (u64::from(change.entered.count_ones()), u64::from(change.left.count_ones()));
        if change.kind == ChangeKind::PendingSet {
            add(&self.logged, u64::from(change.mask.count_ones()));
            add(&self.coalesced, u64::from((change.mask & !change.entered).count_ones()));
        } else {
            add(&self.logged, entered);
        }
        add(&self.withdrawn, left);
    }

    /// Counts one injection into a list register (`linked`: hardware-linked).
    pub fn injected(&self, linked: bool) {
        add(&self.injected, 1);
        if linked {
            add(&self.injected_linked, 1);
        }
    }

    /// The guest completed `intid`, injected for `vcpu` (its list register read back empty,
    /// or emptied after the guest left it active): [`Vgic::deactivate`], counted. A level
    /// line still high is resampled: a new arrival.
    pub fn complete(&self, vgic: &mut Vgic, vcpu: usize, intid: u32, linked: bool) {
        let Ok(arrived) = vgic.deactivate(vcpu, intid) else { return };
        add(&self.completed, 1);
        if linked {
            add(&self.completed_linked, 1);
        }
        if arrived {
            self.arrived(false);
        }
    }

    /// [`Vgic::retake`] (the listed copy of `intid`, read back empty, completed, and the
    /// waiting entry taken at once into the same list register), counted as a completion and
    /// (when it returns `Some`) an injection. A level line resampled at the completion and
    /// taken at once is an arrival.
    pub fn retake(&self, vgic: &mut Vgic, vcpu: usize, intid: u32, copy_linked: bool) -> Option<(u8, bool)> {
        let was = vgic.is_waiting(intid, vcpu);
        let listed = vgic.is_listed(intid, vcpu);
        let taken = vgic.retake(vcpu, intid);
        if listed {
            add(&self.completed, 1);
            if copy_linked {
                add(&self.completed_linked, 1);
            }
        }
        if !was && taken.is_some() {
            self.arrived(false);
        }
        if let Some((_, linked)) = taken {
            self.injected(linked);
        }
        taken
    }

    /// The forward fast path of a hardware-linked PPI on its own vCPU ([`Vgic::relist`]):
    /// counted as [`Self::forward`] then [`Self::retake`] count the same transition — an
    /// arrival (never coalesced: nothing waited), a forward of `intid`, a hardware-linked
    /// injection, and, with `copy_emptied`, the listed copy's hardware-linked completion.
    /// `None`, nothing counted nor changed, where the fast path does not apply.
    pub fn relist(&self, vgic: &mut Vgic, vcpu: usize, intid: u32, copy_emptied: bool) -> Option<u8> {
        let priority = vgic.relist(vcpu, intid, copy_emptied)?;
        add(if copy_emptied { &self.relisted_copies } else { &self.relisted_fresh }, 1);
        if let Some(count) = self.forwarded_by_intid.get(intid as usize) {
            add(count, 1);
        }
        Some(priority)
    }

    /// [`Vgic::take_ready`] (an entry a refill chose in an earlier hold, taken if still
    /// deliverable), counted as an injection when it returns `Some`.
    pub fn take(&self, vgic: &mut Vgic, vcpu: usize, intid: u32) -> Option<(u8, bool)> {
        let taken = vgic.take_ready(vcpu, intid);
        if let Some((_, linked)) = taken {
            self.injected(linked);
        }
        taken
    }

    /// [`Vgic::merge_into_listed`]: a guest set-pending write merged into the copy still
    /// pending in a list register, counted coalesced.
    pub fn merge(&self, vgic: &mut Vgic, vcpu: usize, intid: u32) {
        if vgic.merge_into_listed(vcpu, intid) {
            add(&self.coalesced, 1);
        }
    }

    /// A list register gave `intid` back to `vcpu`'s log still pending ([`Vgic::requeue`]):
    /// the injection is undone; merged into an entry already waiting (coalesced), or, if it
    /// is no longer pending (the guest disabled a linked interrupt meanwhile, which releases
    /// it), withdrawn. Returns whether the physical activation was released (see
    /// [`Vgic::requeue`]).
    pub fn requeue(&self, vgic: &mut Vgic, vcpu: usize, intid: u32) -> Result<bool, Error> {
        let was = vgic.is_waiting(intid, vcpu);
        let listed = vgic.is_listed(intid, vcpu);
        let released = vgic.requeue(vcpu, intid)?;
        if listed {
            add(&self.requeued, 1);
            if was {
                add(&self.coalesced, 1);
            } else if !vgic.is_waiting(intid, vcpu) {
                add(&self.withdrawn, 1);
            }
        }
        Ok(released)
    }

    /// The guest is gone (a restart; the glue emptied every list register first):
    /// [`Vgic::teardown`], counted. What the log held for it is *discarded* (not lost); a copy
    /// still listed counts as completed (it ended with the guest), so nothing stays in
    /// flight. `release` gets every physical activation the model owned.
    pub fn teardown(&self, vgic: &mut Vgic, release: impl FnMut(u32, usize)) -> Teardown {
        let outcome = self.teardown_part(vgic, 0..vgic.teardown_entries(), release);
        vgic.teardown_finish();
        outcome
    }

    /// [`Vgic::teardown_part`], counted as [`Self::teardown`] counts: parts covering every
    /// entry, then [`Vgic::teardown_finish`], count what the whole teardown does, and the
    /// balance stays exact between two parts.
    pub fn teardown_part(&self, vgic: &mut Vgic, range: core::ops::Range<usize>, release: impl FnMut(u32, usize)) -> Teardown {
        let outcome = vgic.teardown_part(range, release);
        add(&self.discarded, outcome.discarded);
        add(&self.completed, outcome.listed);
        outcome
    }

    /// Records that `depth` entries were left waiting behind full list registers.
    pub fn depth(&self, depth: u64) {
        self.max_depth.fetch_max(depth, Ordering::Relaxed);
    }

    /// Counts a physical interrupt that fired with nobody to take it.
    pub fn unclaimed(&self, intid: u32) {
        if let Some(count) = self.unclaimed_by_intid.get(intid as usize) {
            add(count, 1);
        }
    }

    /// How many times physical interrupt `intid` fired with nobody to take it.
    pub fn unclaimed_count(&self, intid: u32) -> u64 {
        self.unclaimed_by_intid.get(intid as usize).map_or(0, load)
    }

    /// How many times physical interrupt `intid` was forwarded to the guest.
    pub fn forwarded_count(&self, intid: u32) -> u64 {
        self.forwarded_by_intid.get(intid as usize).map_or(0, load)
    }

    /// The counters now, with `waiting` entries in the log ([`Vgic::waiting`]).
    pub fn snapshot(&self, waiting: u64) -> ReplaySnapshot {
        let copies = load(&self.relisted_copies);
        let relisted = load(&self.relisted_fresh) + copies;
        ReplaySnapshot {
            logged: load(&self.logged) + relisted,
            injected: load(&self.injected) + relisted,
            injected_linked: load(&self.injected_linked) + relisted,
            completed: load(&self.completed) + copies,
            completed_linked: load(&self.completed_linked) + copies,
            requeued: load(&self.requeued),
            coalesced: load(&self.coalesced),
            withdrawn: load(&self.withdrawn),
            discarded: load(&self.discarded),
            max_depth: load(&self.max_depth),
            forwarded: load(&self.forwarded) + relisted,
            waiting,
        }
    }
}

impl Default for ReplayAccount {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
