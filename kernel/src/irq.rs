//! Interrupt entry at EL2: acknowledge, run the owner's handler, end. Who owns what is the
//! one ownership table, [`OWNERSHIP`]. The core's interrupts (claimed with [`claim`]) run
//! their oob handler at once, its cost measured, then are ended (GICv3: priority drop and
//! deactivation). One passed through to the guest is forwarded: hardware-linked, it only has
//! its priority dropped and stays active until the guest deactivates it. Anything else
//! (nobody's, or an emulated device's INTID firing physically) is counted, masked and ended.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::guest::virq::Forward;
use crate::{gic, hwtimer};

/// Interrupt IDs the core tracks (SGIs, PPIs and SPIs up to the GICv2/v3 limit).
pub const MAX_INTID: usize = 1020;

/// Who owns every interrupt: the core's claims, the guest's passed-through and emulated
/// interrupts ([`crate::guest::virq::init`]); the vGIC and its physical glue ask it too.
pub static OWNERSHIP: vm::ownership::OwnershipTable<{ boot::MAX_CPUS }> = vm::ownership::OwnershipTable::new();

/// An oob interrupt handler; it receives the INTID.
pub type OobHandler = fn(u32);

/// What the core keeps per interrupt ID, in one slot so that an interrupt costs one bounds
/// check.
struct IrqSlot {
    /// The oob handler (an `OobHandler` as `usize`), 0 if unclaimed.
    handler: AtomicUsize,
    /// Times an oob handler ran.
    handled: AtomicU64,
    /// Worst handler cost in counter ticks.
    worst_cost_ticks: AtomicU64,
    /// Claimed at in-band priority ([`claim_inband`]): it waits in the GIC while an oob
    /// context runs.
    inband: AtomicBool,
}

static SLOTS: [IrqSlot; MAX_INTID] = [const {
    IrqSlot {
        handler: AtomicUsize::new(0),
        handled: AtomicU64::new(0),
        worst_cost_ticks: AtomicU64::new(0),
        inband: AtomicBool::new(false),
    }
}; MAX_INTID];

/// Makes `intid` an oob interrupt handled by `handler`, the core's on every CPU.
pub fn claim(intid: u32, handler: OobHandler) -> Result<(), gic::GicError> {
    let slot = SLOTS.get(intid as usize).ok_or(gic::GicError::BadIntId(intid))?;
    OWNERSHIP
        .set_everywhere(intid, vm::ownership::Owner::Core)
        .map_err(|_| gic::GicError::BadIntId(intid))?;
    slot.handler.store(handler as usize, Ordering::Release);
    Ok(())
}

/// [`claim`], for an interrupt the caller enables at [`gic::INBAND_PRIORITY`] (the GIC
/// maintenance interrupt): its handler is the core's, but it waits in the GIC while an oob
/// context runs, like the guest's interrupts, and counts as in-band in the deferral account.
pub fn claim_inband(intid: u32, handler: OobHandler) -> Result<(), gic::GicError> {
    claim(intid, handler)?;
    if let Some(slot) = SLOTS.get(intid as usize) {
        slot.inband.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether `intid` (of `cpu`) is signalled at in-band priority: the guest's, or claimed with
/// [`claim_inband`].
fn is_inband(cpu: usize, intid: u32) -> bool {
    OWNERSHIP.owner(cpu, intid) != vm::ownership::Owner::Core
        || SLOTS.get(intid as usize).is_some_and(|slot| slot.inband.load(Ordering::Relaxed))
}

/// CPU `cpu` (the caller's) returns to the in-band stage after an oob section of `ticks`
/// (the scheduler raised the priority mask when it began, [`gic::hold_inband`]): counts the
/// section, and whether an in-band interrupt waited behind it, then lets the GIC replay what
/// waited, most urgent first, as soon as IRQs are unmasked. IRQs masked.
pub fn leave_oob_stage(cpu: usize, ticks: u64) {
    // Released first: QEMU's GICv2 reports in GICC_HPPIR only what its mask lets through
    // (IRQs stay masked here, so nothing is taken before the look).
    gic::release_inband();
    let waiting = gic::highest_pending().is_some_and(|intid| is_inband(cpu, intid));
    crate::guest::virq::ACCOUNT.oob_section_ended(ticks, waiting);
}

/// Logs the deferral account: oob sections, those an in-band interrupt waited behind, and
/// their length (an upper bound of the wait).
pub fn report_deferral() {
    let account = &crate::guest::virq::ACCOUNT;
    let ns = |ticks| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    log::info!(
        "replay log: deferred in the GIC: {} of {} oob sections ended with an in-band interrupt waiting, wait at most avg {} ns, max {} ns",
        account.deferred.count(),
        account.oob_sections(),
        ns(account.deferred.average()),
        ns(account.deferred.max())
    );
}

/// Handles the highest-priority pending interrupt of this CPU. Called from the IRQ vector,
/// IRQs masked.
///
/// One interrupt per exception (as Linux does on GICv3): another one still pending takes the
/// IRQ exception again as soon as IRQs are unmasked — at once on the return from the vector, or
/// when the context switched to unmasks them — and the path of the common single interrupt
/// saves the acknowledge that would only find nothing more. Inline: each IRQ entry calls it
/// once.
#[inline(always)]
pub fn handle() {
    // IRQs stay masked until `irq_exit` switches: this code stays on this CPU until then.
    let cpu = boot::cpu_index();
    crate::sched::irq_enter(cpu);
    if let Some(ack) = gic::acknowledge() {
        let slot = SLOTS.get(ack.intid as usize);
        let handler = slot.map_or(0, |slot| slot.handler.load(Ordering::Acquire));
        if handler == 0 {
            // Not the core's: the guest's, if there is one. Its priority is dropped first
            // (before any other CPU can see it forwarded and the guest deactivate it); a
            // hardware-linked one stays active until the guest deactivates its virtual copy.
            gic::drop_priority(ack);
            let passed_through = OWNERSHIP.owner(cpu, ack.intid) == vm::ownership::Owner::PassThrough;
            match if passed_through { crate::guest::virq::forward(ack.intid) } else { Forward::Unclaimed } {
                Forward::Linked => {}
                Forward::Taken => gic::deactivate(ack),
                Forward::Unclaimed => {
                    if !passed_through {
                        // Nobody's: it must not fire again.
                        let _ = gic::set_enabled(ack.intid, cpu, false);
                        crate::guest::trap_log::count_at(crate::guest::trap_log::Kind::UnownedInterrupt, u64::from(ack.intid));
                    }
                    gic::deactivate(ack);
                    crate::guest::virq::ACCOUNT.unclaimed(ack.intid);
                }
            }
        } else if let Some(slot) = slot {
            // Unordered reads: a few instructions of slack on a statistic is fine, and the
            // ISB of an ordered read costs on the path every wake-up takes.
            let start = hwtimer::counter_unordered();
            // SAFETY: only `claim` stores non-zero values, always valid `OobHandler`s.
            let handler: OobHandler = unsafe { core::mem::transmute::<usize, OobHandler>(handler) };
            handler(ack.intid);
            let cost = hwtimer::counter_unordered().wrapping_sub(start);
            slot.record_cost(cost);
            gic::end_of_interrupt(ack);
        } else {
            gic::end_of_interrupt(ack);
        }
    }
    // The interrupt was ended: switch now if its handler woke a better context.
    crate::sched::irq_exit(cpu);
}

impl IrqSlot {
    /// Counts one handled interrupt and keeps its worst handler cost (the atomic maximum only
    /// when the cost beats the one seen, which is rare).
    #[inline]
    fn record_cost(&self, cost: u64) {
        // The count first: the rare new worst is then a branch out of a straight path.
        self.handled.fetch_add(1, Ordering::Relaxed);
        if cost > self.worst_cost_ticks.load(Ordering::Relaxed) {
            self.record_worst(cost);
        }
    }

    /// Keeps `cost` as the worst handler cost if no other CPU recorded a worse one meanwhile.
    #[cold]
    #[inline(never)]
    fn record_worst(&self, cost: u64) {
        self.worst_cost_ticks.fetch_max(cost, Ordering::Relaxed);
    }
}

/// One line per interrupt that fired: count, owner, worst handler cost (the in-band counts
/// are the replay log's account, [`crate::guest::virq::ACCOUNT`]).
pub fn report() {
    let ns = |ticks| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    for (intid, slot) in SLOTS.iter().enumerate() {
        let handled = slot.handled.load(Ordering::Relaxed);
        let unclaimed = crate::guest::virq::ACCOUNT.unclaimed_count(intid as u32);
        if handled > 0 {
            let worst = ns(slot.worst_cost_ticks.load(Ordering::Relaxed));
            log::info!("irq {intid:4}: oob, {handled} handled, worst handler cost {worst} ns");
        }
        if unclaimed > 0 {
            log::info!("irq {intid:4}: in-band (no guest yet), {unclaimed} counted");
        }
    }
}
