//! The latency test, after EVL's `latmus`: on one CPU, a periodic oob thread (thread
//! context) and a periodic timer callback (timer-IRQ context) each measure how late they
//! run against the ideal date of their period. The two timers are offset by half a period
//! so they never compete for the CPU.
//!
//! Output (latmus's format): an `RTT|` header, one `RTD|` line per second for the thread
//! context, then an `RTS|` summary per context (each after its own `RTT|` line) and a
//! histogram (`HSH|`/`HSD|`, [`OOB_BUCKET_NS`] buckets, the width named in the `HSH|` line).
//!
//! Sampling audit: every drain checks that each context took one sample (or counted one
//! overrun) per period since its first deadline — at each second's report and at the end —
//! so a context that stopped sampling (its timer or interrupt switched off, its CPU stolen)
//! fails the run's verdict ([`crate::power::EXIT_SAMPLING_GAP`]) instead of reporting fine
//! figures over fewer samples.
//!
//! Gravity: unless given, the test first calibrates it like `latmus -t`: it runs both
//! contexts with zero anticipation and sets each context's gravity to the smallest latency
//! seen, so the timer fires that much early and the woken code runs on time.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::arch::irq_lock::IrqSpinLock;
use crate::latency_stats::{LatencyStats, RTH, RtdLine, RtsLine};
use crate::sample_audit::SampleAudit;
use crate::rt::{self, Duration, Error, Gravity, Instant, IrqContext, IrqTimer, ThreadBuilder, Timer, TimerExpiry};

/// The oob contexts' histogram bucket width: their latencies are a few µs at most on an
/// unloaded path, so 1 µs buckets would squash them into two bars.
pub const OOB_BUCKET_NS: u32 = 100;

/// Test parameters, from the command line (`latmus.*`).
#[derive(Debug, Clone, Copy)]
pub struct LatmusConfig {
    /// Period in microseconds.
    pub period_us: u64,
    /// Run length in seconds.
    pub duration_s: u64,
    /// The CPU the test runs on.
    pub cpu: usize,
    /// The measuring thread's FIFO priority.
    pub priority: u8,
    /// Timer anticipation in ns for both contexts; `None`: calibrate first.
    pub gravity_ns: Option<u64>,
}

/// What a run measured, per context (boxed: the histograms are 4 KiB each, too much to
/// copy around on a 64 KiB boot stack).
pub struct LatmusResults {
    /// The thread context.
    pub thread: Box<LatencyStats>,
    /// The timer-IRQ context.
    pub irq: Box<LatencyStats>,
    /// The gravity the run used.
    pub gravity: Gravity,
}

/// Samples of the timer-IRQ context, filled by the callback.
static IRQ_SAMPLES: IrqSpinLock<LatencyStats> = IrqSpinLock::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS));

/// The worst latency of each context (thread, timer IRQ) since the last [`end_phase`] (or
/// the start of the measured run), ns; `i64::MIN`: no sample yet. Atomics each context
/// updates after its sample, so a mark takes no lock and moves no statistics.
static PHASE_MAX: [AtomicI64; 2] = [const { AtomicI64::new(i64::MIN) }; 2];

/// Thread-context samples since the last [`end_phase`].
static PHASE_SAMPLES: AtomicU64 = AtomicU64::new(0);

/// Whether [`end_phase`] was called in this run: [`finish_background`] then reports the
/// last phase.
static PHASE_MARKED: AtomicBool = AtomicBool::new(false);

/// When the IRQ-context callback last ran (ns of [`rt::now`]): the final audit counts the
/// periods due until then if it ran after the stop (its overruns cover periods up to it).
static IRQ_LAST_NS: AtomicU64 = AtomicU64::new(0);

/// The IRQ-context callback: one sample per expiry.
fn irq_sample(expiry: &TimerExpiry, _: Instant, _: &mut IrqContext<'_>) {
    let now = rt::now();
    IRQ_LAST_NS.fetch_max(now.as_nanos(), Ordering::Relaxed);
    let late = signed_ns(now, expiry.deadline);
    crate::latency_trace::sample(crate::latency_trace::Context::Irq, late);
    PHASE_MAX[1].fetch_max(late, Ordering::Relaxed);
    let mut samples = IRQ_SAMPLES.lock();
    samples.record(late);
    samples.record_overruns(expiry.overruns);
}

/// `now - ideal` in signed nanoseconds.
fn signed_ns(now: Instant, ideal: Instant) -> i64 {
    now.as_nanos() as i64 - ideal.as_nanos() as i64
}

/// The measuring thread's shared state.
struct ThreadSampler {
    samples: IrqSpinLock<LatencyStats>,
    stop: AtomicBool,
    taken: AtomicU64,
    /// When the thread last woke (ns of [`rt::now`]): a thread late past the stop counts the
    /// periods it missed up to then as overruns, so the final audit counts them as due.
    last_wake_ns: AtomicU64,
}

/// Audits one context's drained samples against the periods due by `now`; a gap fails the
/// run at once (lock-free: drains happen under locks and in the guest's traps) and is logged
/// with the summary ([`log_gaps`]).
fn audit(audit: &mut SampleAudit, stats: &LatencyStats, now: Instant) {
    if audit.check(stats.samples() + stats.overruns(), now.as_nanos()).is_some() {
        crate::power::record_failure(crate::power::EXIT_SAMPLING_GAP);
    }
}

/// Logs the gaps the audits of the thread and IRQ contexts found, if any.
fn log_gaps(audits: Option<(SampleAudit, SampleAudit)>) {
    let Some((thread, irq)) = audits else { return };
    for (context, audit) in [("oob thread", thread), ("oob timer-IRQ", irq)] {
        if let Some((counted, due)) = audit.gap() {
            log::error!(
                "latmus: the {context} context took {counted} samples and overruns where {due} periods were due: \
                 it stopped sampling; the run fails"
            );
        }
    }
}

/// Runs both contexts for `periods` periods (or until told to stop) and leaves the samples
/// in `IRQ_SAMPLES` and the sampler; the caller drains them as it likes, each drain audited
/// unless the run is a calibration.
struct Measurement {
    sampler: Arc<ThreadSampler>,
    irq_timer: IrqTimer,
    thread: rt::JoinHandle,
    /// The audits of the thread and IRQ contexts (`None`: calibration, not audited).
    audits: Option<(SampleAudit, SampleAudit)>,
    /// When the contexts were told to stop: no period is due after it.
    stopped_at: Option<Instant>,
}

impl Measurement {
    fn start(config: &LatmusConfig, periods: u64, audited: bool) -> Result<Self, Error> {
        let period = Duration::from_micros(config.period_us);
        *IRQ_SAMPLES.lock() = LatencyStats::with_bucket_ns(OOB_BUCKET_NS);
        let sampler = Arc::new(ThreadSampler {
            samples: IrqSpinLock::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)),
            stop: AtomicBool::new(false),
            taken: AtomicU64::new(0),
            last_wake_ns: AtomicU64::new(0),
        });
        IRQ_LAST_NS.store(0, Ordering::Relaxed);
        if audited {
            crate::latency_trace::new_run();
            take_phase();
            PHASE_MARKED.store(false, Ordering::Relaxed);
        }
        let first = rt::now() + Duration::from_millis(2);
        let irq_timer = IrqTimer::new(config.cpu, irq_sample)?;
        irq_timer.start(first + Duration::from_nanos(period.as_nanos() / 2), Some(period))?;
        let timer = Timer::new(config.cpu)?;
        let thread_sampler = sampler.clone();
        let thread = ThreadBuilder::new("latmus").cpu(config.cpu).fifo(config.priority).spawn(move || {
            if timer.start(first, Some(period)).is_err() {
                return;
            }
            for _ in 0..periods {
                let Ok((expirations, deadline)) = timer.wait() else { break };
                let now = rt::now();
                thread_sampler.last_wake_ns.store(now.as_nanos(), Ordering::Relaxed);
                let late = signed_ns(now, deadline);
                crate::latency_trace::sample(crate::latency_trace::Context::Thread, late);
                PHASE_MAX[0].fetch_max(late, Ordering::Relaxed);
                PHASE_SAMPLES.fetch_add(1, Ordering::Relaxed);
                let mut samples = thread_sampler.samples.lock();
                samples.record(late);
                samples.record_overruns(expirations - 1);
                drop(samples);
                thread_sampler.taken.fetch_add(1, Ordering::Relaxed);
                if thread_sampler.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })?;
        let audits = audited.then(|| {
            let period_ns = period.as_nanos();
            (
                SampleAudit::new(first.as_nanos(), period_ns),
                SampleAudit::new(first.as_nanos() + period_ns / 2, period_ns),
            )
        });
        Ok(Self { sampler, irq_timer, thread, audits, stopped_at: None })
    }

    /// Moves the samples gathered since the last call into `thread` and `irq` (replacing
    /// what they held) and audits them.
    fn drain(&mut self, thread: &mut LatencyStats, irq: &mut LatencyStats) {
        thread.reset();
        irq.reset();
        core::mem::swap(&mut *self.sampler.samples.lock(), thread);
        core::mem::swap(&mut *IRQ_SAMPLES.lock(), irq);
        self.audit(thread, irq);
    }

    /// Audits what a drain moved out against the periods due by now (or by the stop).
    fn audit(&mut self, thread: &LatencyStats, irq: &LatencyStats) {
        let now = self.stopped_at.unwrap_or_else(rt::now);
        if let Some((thread_audit, irq_audit)) = self.audits.as_mut() {
            audit(thread_audit, thread, now);
            audit(irq_audit, irq, now);
        }
    }

    /// Tells both contexts to stop (the thread after its next sample); the first call's time
    /// is when periods stop being due.
    fn stop(&mut self) -> Result<(), Error> {
        self.stopped_at.get_or_insert_with(rt::now);
        self.sampler.stop.store(true, Ordering::Relaxed);
        self.irq_timer.stop().map(|_| ())
    }

    /// Stops both contexts, moves what was left undrained into `thread` and `irq`, and
    /// returns the audits (`None` for a calibration).
    fn finish(
        mut self,
        thread: &mut LatencyStats,
        irq: &mut LatencyStats,
    ) -> Result<Option<(SampleAudit, SampleAudit)>, Error> {
        self.stop()?;
        let Self { sampler, irq_timer, thread: handle, mut audits, stopped_at } = self;
        handle.join()?;
        drop(irq_timer);
        thread.reset();
        irq.reset();
        core::mem::swap(&mut *sampler.samples.lock(), thread);
        core::mem::swap(&mut *IRQ_SAMPLES.lock(), irq);
        if let (Some((thread_audit, irq_audit)), Some(stopped_at)) = (audits.as_mut(), stopped_at) {
            // A context that ran once more after the stop, late, counted the periods it
            // missed up to then: they were due. One that stopped sampling earlier is still
            // measured against the stop.
            let until = |last_ns: u64| Instant::from_nanos(last_ns.max(stopped_at.as_nanos()));
            audit(thread_audit, thread, until(sampler.last_wake_ns.load(Ordering::Relaxed)));
            audit(irq_audit, irq, until(IRQ_LAST_NS.load(Ordering::Relaxed)));
        }
        Ok(audits)
    }
}

/// Samples taken per context to calibrate the gravity.
const CALIBRATION_PERIODS: u64 = 500;

/// Measures both contexts with zero gravity and returns the smallest latency of each.
fn calibrate(config: &LatmusConfig) -> Result<Gravity, Error> {
    rt::set_gravity(Gravity::default())?;
    let measurement = Measurement::start(config, CALIBRATION_PERIODS, false)?;
    measurement.thread_wait()?;
    let (mut thread, mut irq) = (Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)));
    measurement.finish(&mut thread, &mut irq)?;
    let floor = |stats: &LatencyStats| Duration::from_nanos(stats.min().unwrap_or(0).max(0) as u64);
    let (irq, user) = (floor(&irq), floor(&thread));
    Ok(Gravity { irq, kernel: user, user })
}

impl Measurement {
    /// Waits (in-band) until the thread took its samples.
    fn thread_wait(&self) -> Result<(), Error> {
        while !self.thread.is_finished() {
            wait_until(rt::now() + Duration::from_millis(1))?;
        }
        Ok(())
    }
}

/// The gravity the test runs with — `latmus.gravity` for every context, or calibrated —
/// installed in the core.
fn set_up_gravity(config: &LatmusConfig) -> Result<Gravity, Error> {
    let gravity = match config.gravity_ns {
        Some(ns) => Gravity { irq: Duration::from_nanos(ns), kernel: Duration::from_nanos(ns), user: Duration::from_nanos(ns) },
        None => {
            let gravity = calibrate(config)?;
            log::info!(
                "latmus: gravity calibrated over {CALIBRATION_PERIODS} periods: irq {} ns, thread {} ns",
                gravity.irq.as_nanos(),
                gravity.user.as_nanos()
            );
            gravity
        }
    };
    rt::set_gravity(gravity)?;
    Ok(gravity)
}

/// Where a run's report goes: the console ([`run`]) or a channel to Linux
/// ([`run_reporting`]).
pub type Report<'a> = &'a mut dyn FnMut(core::fmt::Arguments<'_>);

/// Waits until `deadline`: in-band on the boot path, as an oob sleep from an oob thread.
fn wait_until(deadline: Instant) -> Result<(), Error> {
    if rt::current().is_some() { rt::sleep_until(deadline) } else { rt::inband_sleep_until(deadline) }
}

/// The `RTT|` and `RTH|` lines opening the thread context's report.
fn print_thread_header(config: &LatmusConfig, gravity: Gravity) {
    report_thread_header(config, gravity, &mut |args| rt::print(args));
}

/// [`print_thread_header`] into `out`.
fn report_thread_header(config: &LatmusConfig, gravity: Gravity, out: Report<'_>) {
    out(format_args!(
        "RTT|  00:00:01  (oob thread context, {} us period, priority {}, cpu {}, gravity {} ns)\n{RTH}\n",
        config.period_us,
        config.priority,
        config.cpu,
        gravity.user.as_nanos()
    ));
}

/// Runs the test and prints its results.
pub fn run(config: LatmusConfig) -> Result<LatmusResults, Error> {
    run_reporting(config, &mut |args| rt::print(args))
}

/// Runs the test (in-band or from an oob thread) and reports into `out`. Refused
/// ([`Error::WouldBlock`]) while a background test runs: both would share the IRQ context's
/// samples.
pub fn run_reporting(config: LatmusConfig, out: Report<'_>) -> Result<LatmusResults, Error> {
    if config.cpu >= rt::cpu_count() {
        return Err(Error::InvalidCpu);
    }
    if BACKGROUND.lock().is_some() {
        return Err(Error::WouldBlock);
    }
    let gravity = set_up_gravity(&config)?;

    report_thread_header(&config, gravity, out);
    let mut measurement = Measurement::start(&config, u64::MAX, true)?;
    let mut results =
        LatmusResults { thread: Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), irq: Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), gravity };
    let (mut thread, mut irq) = (Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)));
    let start = rt::now();
    for second in 1..=config.duration_s {
        wait_until(start + Duration::from_secs(second))?;
        measurement.drain(&mut thread, &mut irq);
        results.thread.merge(&thread);
        results.irq.merge(&irq);
        out(format_args!("{}\n", RtdLine { interval: &thread, run: &results.thread }));
    }
    // The measuring thread is still alive: show it with its statistics.
    if let Ok(table) = rt::ps_table() {
        out(format_args!("{table}"));
    }
    let audits = measurement.finish(&mut thread, &mut irq)?;
    results.thread.merge(&thread);
    results.irq.merge(&irq);

    let seconds = config.duration_s;
    out(format_args!("{}\n", RtsLine { run: &results.thread, elapsed_s: seconds, planned_s: seconds }));
    out(format_args!(
        "RTT|  00:00:01  (oob timer-IRQ context, same run, offset by half a period, gravity {} ns)\n{RTH}\n",
        gravity.irq.as_nanos()
    ));
    out(format_args!("{}\n", RtsLine { run: &results.irq, elapsed_s: seconds, planned_s: seconds }));
    report_histogram(&results, out);
    log::info!(
        "latmus: {} thread samples, {} irq samples, {} + {} overruns",
        results.thread.samples(),
        results.irq.samples(),
        results.thread.overruns(),
        results.irq.overruns()
    );
    log_gaps(audits);
    Ok(results)
}

fn print_histogram(results: &LatmusResults) {
    report_histogram(results, &mut |args| rt::print(args));
}

/// The histogram lines (`HSH|`, `HSD|`) into `out`.
fn report_histogram(results: &LatmusResults, out: Report<'_>) {
    // The header names the bucket width (latmus's `bucket(us)` column, in 100 ns here).
    out(format_args!("HSH|--context-|-bucket({OOB_BUCKET_NS}ns)|---samples\n"));
    for (name, stats) in [("thread", &*results.thread), ("irq", &*results.irq)] {
        for (bucket, &count) in stats.histogram().iter().enumerate().filter(|(_, c)| **c > 0) {
            out(format_args!("HSD|{name:>10}| {bucket:12}| {count:9}\n"));
        }
    }
}

/// A latency test running next to the guest: its measurement, the whole-run statistics and
/// the configuration, reported each second by a low-priority oob thread.
struct Background {
    measurement: Measurement,
    results: LatmusResults,
    config: LatmusConfig,
    seconds: u64,
}

static BACKGROUND: IrqSpinLock<Option<Background>> = IrqSpinLock::new(None);

/// Starts the test in the background (calibrating gravity first, in the in-band stage):
/// an `RTD|` line per second for `config.duration_s` seconds, printed by an oob thread while
/// the guest runs; [`finish_background`] prints the summary.
pub fn start_in_background(config: LatmusConfig) -> Result<(), Error> {
    if config.cpu >= rt::cpu_count() {
        return Err(Error::InvalidCpu);
    }
    let gravity = set_up_gravity(&config)?;
    log::info!(
        "latmus: running next to the guest on cpu {} for {} s (gravity irq {} ns, thread {} ns)",
        config.cpu,
        config.duration_s,
        gravity.irq.as_nanos(),
        gravity.user.as_nanos()
    );
    print_thread_header(&config, gravity);
    let measurement = Measurement::start(&config, u64::MAX, true)?;
    let results = LatmusResults { thread: Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), irq: Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), gravity };
    *BACKGROUND.lock() = Some(Background { measurement, results, config, seconds: 0 });
    let reporter = ThreadBuilder::new("latmus-report").cpu(config.cpu).fifo(1).spawn(move || {
        let (mut thread, mut irq) = (Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)));
        let start = rt::now();
        for second in 1..=config.duration_s {
            if rt::sleep_until(start + Duration::from_secs(second)).is_err() {
                return;
            }
            let mut guard = BACKGROUND.lock();
            let Some(background) = guard.as_mut() else { return };
            background.measurement.drain(&mut thread, &mut irq);
            background.results.thread.merge(&thread);
            background.results.irq.merge(&irq);
            background.seconds = second;
            let line = alloc::format!("{}", RtdLine { interval: &thread, run: &background.results.thread });
            drop(guard);
            rt::print(format_args!("{line}\n"));
        }
        // The measurement stops; the summary waits for finish_background.
        if let Some(background) = BACKGROUND.lock().as_mut() {
            let _ = background.measurement.stop();
        }
    })?;
    // The reporter lives as long as the run: its handle is not joined.
    core::mem::forget(reporter);
    Ok(())
}

/// The worst latency of each context and the thread context's samples over one phase of
/// the background test ([`end_phase`]).
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// The thread context's worst, ns (0 without a sample).
    pub thread_max_ns: i64,
    /// The timer-IRQ context's worst, ns (0 without a sample).
    pub irq_max_ns: i64,
    /// Thread-context samples.
    pub samples: u64,
}

/// Ends the current phase: its figures, and a new phase starts.
fn take_phase() -> Phase {
    let max = |context: usize| match PHASE_MAX[context].swap(i64::MIN, Ordering::Relaxed) {
        i64::MIN => 0,
        max => max,
    };
    Phase { thread_max_ns: max(0), irq_max_ns: max(1), samples: PHASE_SAMPLES.swap(0, Ordering::Relaxed) }
}

/// The latency of the background test since the previous mark (or its start) — each
/// context's worst, the thread context's samples — and starts a new phase; `None` if no
/// background test runs. Lets a caller compare the oob latency across phases of what runs
/// beside it (a guest with its IRQs masked against the same guest idle; each boot of a
/// restarted guest). Holds no lock over the figures: they are atomics the contexts update
/// as they sample, so a mark costs the test nothing.
pub fn end_phase() -> Option<Phase> {
    if BACKGROUND.lock().is_none() {
        return None;
    }
    PHASE_MARKED.store(true, Ordering::Relaxed);
    Some(take_phase())
}

/// [`end_phase`] as the thread context's worst and samples.
pub fn phase_mark() -> Option<(i64, u64)> {
    end_phase().map(|phase| (phase.thread_max_ns, phase.samples))
}

/// Stops the background test's sampling now, if it runs: a guest asked to power off, and
/// what follows (reports, the console flushed from the trap with IRQs masked) takes the CPU
/// from the test; no period after this point is due. [`finish_background`] then prints the
/// summary.
pub fn stop_background() {
    if let Some(background) = BACKGROUND.lock().as_mut() {
        let _ = background.measurement.stop();
    }
}

/// Waits in-band (IRQs unmasked, the console drained) until the background test, if one
/// runs, has run its whole length, then prints its summary ([`finish_background`]). For a
/// run whose guest could not start: the oob test goes on without it.
pub fn wait_background() {
    let Some(length) = BACKGROUND.lock().as_ref().map(|background| background.config.duration_s) else { return };
    // A second's grace beyond the test's length, should its reporter have stopped early.
    let deadline = rt::now() + Duration::from_secs(length + 1);
    while rt::now() < deadline
        && BACKGROUND.lock().as_ref().is_some_and(|background| background.seconds < background.config.duration_s)
    {
        crate::console::drain();
        // SAFETY: WFI only waits for an interrupt (the test's timer ticks every period).
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
    finish_background();
}

/// Prints the background test's summary (`RTS|` per context, histograms, totals), if one
/// ran. Callable from any context; it does not wait for the test's threads. Periods after
/// [`stop_background`], if it was called, are not due.
pub fn finish_background() {
    let Some(mut background) = BACKGROUND.lock().take() else { return };
    let (mut thread, mut irq) = (Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)), Box::new(LatencyStats::with_bucket_ns(OOB_BUCKET_NS)));
    background.measurement.drain(&mut thread, &mut irq);
    background.results.thread.merge(&thread);
    background.results.irq.merge(&irq);
    let (elapsed, planned) = (background.seconds, background.config.duration_s);
    let results = &background.results;
    rt::print(format_args!("{}\n", RtsLine { run: &results.thread, elapsed_s: elapsed, planned_s: planned }));
    rt::print(format_args!(
        "RTT|  00:00:01  (oob timer-IRQ context, same run, offset by half a period, gravity {} ns)\n{RTH}\n",
        results.gravity.irq.as_nanos()
    ));
    rt::print(format_args!("{}\n", RtsLine { run: &results.irq, elapsed_s: elapsed, planned_s: planned }));
    print_histogram(results);
    log::info!(
        "latmus: {} thread samples, {} irq samples, {} + {} overruns",
        results.thread.samples(),
        results.irq.samples(),
        results.thread.overruns(),
        results.irq.overruns()
    );
    log_gaps(background.measurement.audits);
    if PHASE_MARKED.load(Ordering::Relaxed) {
        let Phase { thread_max_ns, irq_max_ns, samples } = take_phase();
        log::info!("latmus: last phase: oob thread max {thread_max_ns} ns, oob irq max {irq_max_ns} ns, {samples} samples");
    }
    // The test's threads and timers stay allocated: the run is ending.
    core::mem::forget(background);
}

