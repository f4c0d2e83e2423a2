//! The "sirq" measurement, after EVL's latmus: how long Linux keeps a virtual interrupt
//! the core posts waiting — the in-band delay its IRQs-off sections cause.
//!
//! An oob timer on a vCPU's CPU periodically posts a virtual SGI to that vCPU (SGI 0, which
//! Linux takes as a reschedule IPI: harmless when nothing needs rescheduling). The post time
//! is kept; when the SGI sits in a list register, the "no pending" maintenance interrupt is
//! requested, which fires the moment the guest acknowledges it. Post to acknowledge is one
//! sample; a post is skipped while the previous one is unanswered or while the guest has the
//! SGI disabled (during boot).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::irq_lock::IrqSpinLock;
use crate::latency_stats::LatencyStats;
use crate::rt::{self, Duration, Instant, IrqContext, IrqTimer, TimerExpiry};

/// The SGI posted: Linux's reschedule IPI.
pub const SIRQ_SGI: u32 = 0;

/// The vCPU measured (its CPU runs the posting timer).
static VCPU: AtomicU64 = AtomicU64::new(0);
/// Counter value of the outstanding post; 0 when none.
static POSTED_AT: AtomicU64 = AtomicU64::new(0);
/// Posts skipped because the previous one was unanswered.
static SKIPPED: AtomicU64 = AtomicU64::new(0);
/// The samples, in ns.
static SAMPLES: IrqSpinLock<LatencyStats> = IrqSpinLock::new(LatencyStats::new());
/// The posting timer (kept alive for the run).
static TIMER: spin::Mutex<Option<IrqTimer>> = spin::Mutex::new(None);

/// Starts posting to `vcpu` (on CPU `vcpu`) every `period`.
pub fn start(vcpu: usize, period: Duration) -> Result<(), rt::Error> {
    VCPU.store(vcpu as u64, Ordering::Relaxed);
    let timer = IrqTimer::new(vcpu, post)?;
    timer.start(rt::now() + period, Some(period))?;
    *TIMER.lock() = Some(timer);
    log::info!("sirq: posting SGI {SIRQ_SGI} to vCPU {vcpu} every {} us", period.as_nanos() / 1000);
    Ok(())
}

/// The timer callback: post, unless one is outstanding.
fn post(_: &TimerExpiry, _: Instant, _: &mut IrqContext<'_>) {
    if POSTED_AT.load(Ordering::Relaxed) != 0 {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let vcpu = VCPU.load(Ordering::Relaxed) as usize;
    let now = crate::hwtimer::counter_unordered().max(1);
    if super::virq::post_sgi(vcpu, SIRQ_SGI) {
        POSTED_AT.store(now, Ordering::Relaxed);
    }
}

/// Whether `intid` injected on `cpu` is an outstanding sirq post (then its acknowledge is
/// to be timed).
pub(crate) fn is_outstanding(cpu: usize, intid: u32) -> bool {
    intid == SIRQ_SGI && cpu as u64 == VCPU.load(Ordering::Relaxed) && POSTED_AT.load(Ordering::Relaxed) != 0
}

/// The post of `sgi` did not enter the vGIC (the guest has the SGI disabled, during boot, or
/// pending already): no post is outstanding, counted as skipped.
pub(crate) fn refused(sgi: u32) {
    if sgi == SIRQ_SGI && POSTED_AT.swap(0, Ordering::Relaxed) != 0 {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The guest acknowledged the outstanding post: one sample.
pub(crate) fn acknowledged() {
    let posted = POSTED_AT.swap(0, Ordering::Relaxed);
    if posted == 0 {
        return;
    }
    let ticks = crate::hwtimer::counter_unordered().saturating_sub(posted);
    let ns = crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    SAMPLES.lock().record(ns as i64);
}

/// Prints the summary and histogram (`HSD|      sirq|…`), if anything was measured.
pub fn report() {
    let stats = SAMPLES.lock();
    if stats.samples() == 0 {
        return;
    }
    log::info!(
        "sirq: {} samples, min {} ns, avg {} ns, max {} ns",
        stats.samples(),
        stats.min().unwrap_or(0),
        stats.avg().unwrap_or(0),
        stats.max().unwrap_or(0)
    );
    log::info!("sirq: {} posts skipped while one was unanswered", SKIPPED.load(Ordering::Relaxed));
    rt::print(format_args!("HSH|--context-|--bucket(us)-|---samples\n"));
    for (us, &count) in stats.histogram().iter().enumerate().filter(|(_, c)| **c > 0) {
        rt::print(format_args!("HSD|{:>10}| {us:12}| {count:9}\n", "sirq"));
    }
}
