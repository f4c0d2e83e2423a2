//! The latency test, after EVL's `latmus`: a periodic timer on one CPU; each expiry's
//! lateness against its ideal date is a sample. Prints an `RTD|` line per second, then an
//! `RTS|` summary and a histogram.
//!
//! This first version measures the timer-IRQ context (the handler's first instruction);
//! the thread context arrives with the oob scheduler.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{DAIF, Writeable};
use spin::Mutex;

use crate::clock::CounterFrequency;
use crate::latency_stats::{LatencyStats, RTH, RtdLine, RtsLine};
use crate::{gic, hwtimer, irq};

/// Test parameters, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct LatmusConfig {
    /// Period in microseconds.
    pub period_us: u64,
    /// Run length in seconds.
    pub duration_s: u64,
    /// Timer anticipation ("gravity") in ns: the timer is armed this much early.
    pub gravity_ns: u64,
}

impl Default for LatmusConfig {
    fn default() -> Self {
        Self { period_us: 1000, duration_s: 10, gravity_ns: 0 }
    }
}

/// Shared between the timer handler and the reporting loop.
struct Sampler {
    frequency: CounterFrequency,
    period_ticks: u64,
    gravity_ticks: u64,
    /// The ideal date of the next expiry.
    next_ideal: u64,
    interval: LatencyStats,
}

static SAMPLER: Mutex<Option<Sampler>> = Mutex::new(None);
static RUNNING: AtomicBool = AtomicBool::new(false);
static SAMPLES: AtomicU64 = AtomicU64::new(0);

/// The EL2 timer handler: take a sample, re-arm for the next period.
fn on_timer(_intid: u32) {
    let now = hwtimer::counter();
    let mut guard = SAMPLER.lock();
    let Some(s) = guard.as_mut() else {
        hwtimer::disarm();
        return;
    };
    let late_ticks = now as i128 - s.next_ideal as i128;
    let late_ns = if late_ticks >= 0 {
        s.frequency.ticks_to_ns(late_ticks as u64) as i64
    } else {
        -(s.frequency.ticks_to_ns((-late_ticks) as u64) as i64)
    };
    s.interval.record(late_ns);
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    // Next ideal date on the original grid; whole periods already past are overruns.
    s.next_ideal += s.period_ticks;
    if now >= s.next_ideal {
        let missed = (now - s.next_ideal) / s.period_ticks + 1;
        s.interval.record_overruns(missed);
        s.next_ideal += missed * s.period_ticks;
    }
    if RUNNING.load(Ordering::Relaxed) {
        hwtimer::arm(s.next_ideal.saturating_sub(s.gravity_ticks));
    } else {
        hwtimer::disarm();
    }
}

/// Runs the test on the calling CPU and prints its results; returns the whole-run stats.
pub fn run(config: LatmusConfig, frequency: CounterFrequency, timer_intid: u32) -> Result<LatencyStats, gic::GicError> {
    irq::claim(timer_intid, on_timer)?;
    gic::enable_private(timer_intid, boot::cpu_index(), gic::OOB_PRIORITY, arm_gic::Trigger::Level)?;
    let period_ticks = frequency.ns_to_ticks(config.period_us * 1000).max(1);
    let gravity_ticks = frequency.ns_to_ticks(config.gravity_ns);
    let first = hwtimer::counter() + period_ticks;
    *SAMPLER.lock() = Some(Sampler {
        frequency,
        period_ticks,
        gravity_ticks,
        next_ideal: first,
        interval: LatencyStats::new(),
    });
    crate::console::write_fmt(format_args!(
        "RTT|  00:00:01  (oob timer-IRQ context, {} us period, gravity {} ns, cpu {})\n{RTH}\n",
        config.period_us,
        config.gravity_ns,
        boot::cpu_index()
    ));
    RUNNING.store(true, Ordering::Relaxed);
    hwtimer::arm(first.saturating_sub(gravity_ticks));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    // The vectors and the GIC are set up: IRQs may now be taken at EL2.
    DAIF.write(DAIF::I::Unmasked);

    let mut run = LatencyStats::new();
    let second = frequency.hz();
    let start = hwtimer::counter();
    for elapsed in 1..=config.duration_s {
        while hwtimer::counter() < start + elapsed * second {
            aarch64_cpu::asm::wfi();
        }
        let interval = SAMPLER.lock().as_mut().map(|s| core::mem::take(&mut s.interval)).unwrap_or_default();
        run.merge(&interval);
        crate::console::write_fmt(format_args!("{}\n", RtdLine { interval: &interval, run: &run }));
    }
    RUNNING.store(false, Ordering::Relaxed);
    DAIF.write(DAIF::I::Masked);
    hwtimer::disarm();
    if let Some(s) = SAMPLER.lock().take() {
        run.merge(&s.interval);
    }
    crate::console::write_fmt(format_args!(
        "{}\n",
        RtsLine { run: &run, elapsed_s: config.duration_s, planned_s: config.duration_s }
    ));
    print_histogram(&run);
    Ok(run)
}

fn print_histogram(run: &LatencyStats) {
    crate::console::write_fmt(format_args!("HSH|--context-|--bucket(us)-|---samples\n"));
    for (us, &count) in run.histogram().iter().enumerate().filter(|(_, c)| **c > 0) {
        crate::console::write_fmt(format_args!("HSD|       irq| {us:12}| {count:9}\n"));
    }
}
