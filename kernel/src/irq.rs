//! Interrupt entry at EL2: acknowledge, run the owner's handler, end. Oob handlers run at
//! once and their cost is measured; interrupts nobody claimed are counted (they will go to
//! the in-band stage once it exists).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::{gic, hwtimer};

/// Interrupt IDs the core tracks (SGIs, PPIs and SPIs up to the GICv2/v3 limit).
pub const MAX_INTID: usize = 1020;

/// An oob interrupt handler; it receives the INTID.
pub type OobHandler = fn(u32);

static HANDLERS: [AtomicUsize; MAX_INTID] = [const { AtomicUsize::new(0) }; MAX_INTID];
static UNCLAIMED: [AtomicU64; MAX_INTID] = [const { AtomicU64::new(0) }; MAX_INTID];
static HANDLED: [AtomicU64; MAX_INTID] = [const { AtomicU64::new(0) }; MAX_INTID];
/// Worst handler cost in counter ticks, per INTID.
static WORST_COST_TICKS: [AtomicU64; MAX_INTID] = [const { AtomicU64::new(0) }; MAX_INTID];

/// Makes `intid` an oob interrupt handled by `handler`.
pub fn claim(intid: u32, handler: OobHandler) -> Result<(), gic::GicError> {
    let slot = HANDLERS.get(intid as usize).ok_or(gic::GicError::BadIntId(intid))?;
    slot.store(handler as usize, Ordering::Release);
    Ok(())
}

/// Handles every pending interrupt of this CPU. Called from the IRQ vector.
pub fn handle() {
    crate::sched::irq_enter();
    while let Some(ack) = gic::acknowledge() {
        let intid = ack.intid as usize;
        let handler = HANDLERS.get(intid).map_or(0, |h| h.load(Ordering::Acquire));
        if handler == 0 {
            // Not the core's: the guest's, if there is one (masked and reinjected).
            let forwarded = crate::guest::virq::forward(ack.intid);
            if !forwarded && let Some(count) = UNCLAIMED.get(intid) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            // Unordered reads: a few instructions of slack on a statistic is fine, and the
            // ISB of an ordered read costs on the path every wake-up takes.
            let start = hwtimer::counter_unordered();
            // SAFETY: only `claim` stores non-zero values, always valid `OobHandler`s.
            let handler: OobHandler = unsafe { core::mem::transmute::<usize, OobHandler>(handler) };
            handler(ack.intid);
            let cost = hwtimer::counter_unordered().wrapping_sub(start);
            record_cost(intid, cost);
        }
        gic::end_of_interrupt(ack);
    }
    // Every interrupt was ended: switch now if a handler woke a better context.
    crate::sched::irq_exit();
}

/// Counts one handled `intid` and keeps its worst handler cost (the atomic maximum only
/// when the cost beats the one seen, which is rare).
#[inline]
fn record_cost(intid: usize, cost: u64) {
    let (Some(worst), Some(handled)) = (WORST_COST_TICKS.get(intid), HANDLED.get(intid)) else { return };
    if cost > worst.load(Ordering::Relaxed) {
        worst.fetch_max(cost, Ordering::Relaxed);
    }
    handled.fetch_add(1, Ordering::Relaxed);
}

/// One line per interrupt that fired: count, owner, worst handler cost.
pub fn report() {
    let ns = |ticks| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    for intid in 0..MAX_INTID {
        let handled = HANDLED[intid].load(Ordering::Relaxed);
        let unclaimed = UNCLAIMED[intid].load(Ordering::Relaxed);
        if handled > 0 {
            let worst = ns(WORST_COST_TICKS[intid].load(Ordering::Relaxed));
            log::info!("irq {intid:4}: oob, {handled} handled, worst handler cost {worst} ns");
        }
        if unclaimed > 0 {
            log::info!("irq {intid:4}: in-band (no guest yet), {unclaimed} counted");
        }
    }
}
