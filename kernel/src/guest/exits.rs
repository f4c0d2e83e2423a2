//! What the guest's traps cost at EL2: per kind of exit, how many, and the average and
//! longest time from the trap handler's start to the list registers' refresh before the
//! return. The core handles a trap with IRQs masked, so the longest exit bounds how late an
//! oob interrupt can be taken on that CPU because of the guest; printed at power-off as
//! `guest exits handled at EL2: …`, then one line per kind with the histogram of those
//! IRQ-masked times, `guest exits IRQ-masked at EL2, histogram, KIND: <=100 ns: N, …`. The console drain that may follow on the way back into
//! the guest runs with IRQs unmasked and is not counted, and so does the copy of a console line
//! a UART exit completed into the console ring (the exit itself only updates the UART model).

use core::sync::atomic::{AtomicU64, Ordering};

/// The kinds of guest exits the core handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// An access to the emulated GIC distributor or redistributors.
    GicMmio,
    /// One IRQ-masked section of the work a GIC access left for after its exit (the vGIC
    /// lock held for one INTID, `guest::virq::finish_exit`); the rest of that work runs
    /// with IRQs unmasked.
    GicMmioPart,
    /// One IRQ-masked section (hold) of the list-register refill on the way back into the
    /// guest, after any exit or interrupt (`guest::virq::flush`); IRQs are unmasked between
    /// two holds.
    ListRegisterRefill,
    /// An access to the emulated console UART.
    UartMmio,
    /// An access to the emulated virtio-console of the oob channels.
    ChannelMmio,
    /// A write of `ICC_SGI1R_EL1` (an SGI sent by the guest): only recorded in the exit.
    SgiWrite,
    /// The IRQ-masked section of the work an SGI write left for after its exit (the vGIC lock
    /// held for the model's update, `guest::virq::finish_exit`); the kicks run with IRQs
    /// unmasked.
    SgiWritePart,
    /// A PSCI or other call over HVC/SMC.
    Hypercall,
    /// Anything else: an access outside the guest's map, an unexpected trap.
    Other,
}

impl ExitKind {
    const ALL: [ExitKind; 9] = [Self::GicMmio, Self::GicMmioPart, Self::ListRegisterRefill, Self::UartMmio, Self::ChannelMmio, Self::SgiWrite, Self::SgiWritePart, Self::Hypercall, Self::Other];

    fn name(self) -> &'static str {
        match self {
            Self::GicMmio => "GIC MMIO",
            Self::GicMmioPart => "GIC MMIO after the exit, per lock hold",
            Self::ListRegisterRefill => "list-register refill, per hold",
            Self::UartMmio => "UART MMIO",
            Self::ChannelMmio => "channel MMIO",
            Self::SgiWrite => "SGI write",
            Self::SgiWritePart => "SGI write after the exit",
            Self::Hypercall => "HVC/SMC",
            Self::Other => "other",
        }
    }
}

/// Upper bounds (ns) of the IRQ-masked time histogram's buckets; a last bucket takes the
/// rest. Under `-icount` with a 1 GHz counter one ns is one instruction, so the 300 ns
/// bucket is the 300-instruction target.
const BUCKET_NS: [u64; 7] = [100, 200, 300, 500, 1_000, 2_000, 5_000];
/// Buckets: [`BUCKET_NS`] and the rest.
const BUCKETS: usize = BUCKET_NS.len() + 1;

/// Count, total and longest time (counter ticks) of one kind of exit, and how many fell in
/// each bucket of [`BUCKET_NS`].
struct ExitStats {
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
    histogram: [AtomicU64; BUCKETS],
}

static STATS: [ExitStats; ExitKind::ALL.len()] = [const {
    ExitStats {
        count: AtomicU64::new(0),
        sum: AtomicU64::new(0),
        max: AtomicU64::new(0),
        histogram: [const { AtomicU64::new(0) }; BUCKETS],
    }
}; ExitKind::ALL.len()];

/// [`BUCKET_NS`] in counter ticks (0 until the first exit computes them).
static BUCKET_TICKS: [AtomicU64; BUCKET_NS.len()] = [const { AtomicU64::new(0) }; BUCKET_NS.len()];

/// The bucket of an exit of `ticks`.
fn bucket(ticks: u64) -> usize {
    if BUCKET_TICKS[0].load(Ordering::Relaxed) == 0 {
        let hz = crate::console::counter_frequency().map_or(0, |f| f.hz());
        for (bound, ns) in BUCKET_TICKS.iter().zip(BUCKET_NS) {
            bound.store((u128::from(ns) * u128::from(hz) / 1_000_000_000).max(1) as u64, Ordering::Relaxed);
        }
    }
    BUCKET_TICKS.iter().position(|bound| ticks <= bound.load(Ordering::Relaxed)).unwrap_or(BUCKETS - 1)
}

/// The name of the kind `raw` (`ExitKind as u64`), for the latency tracer.
pub fn kind_name(raw: u64) -> &'static str {
    ExitKind::ALL.iter().find(|kind| **kind as u64 == raw).map_or("unknown", |kind| kind.name())
}

/// Records one exit of `kind` that took `ticks` counter ticks at EL2.
#[inline]
pub fn record(kind: ExitKind, ticks: u64) {
    crate::latency_trace::section(kind as u64, ticks);
    let stats = &STATS[kind as usize];
    stats.count.fetch_add(1, Ordering::Relaxed);
    stats.sum.fetch_add(ticks, Ordering::Relaxed);
    stats.max.fetch_max(ticks, Ordering::Relaxed);
    stats.histogram[bucket(ticks)].fetch_add(1, Ordering::Relaxed);
}

/// Logs one line with every kind of exit that happened: count, average and longest (ns).
pub fn report() {
    let ns = |ticks: u64| crate::console::counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks));
    let mut line = alloc::string::String::new();
    for kind in ExitKind::ALL {
        let stats = &STATS[kind as usize];
        let count = stats.count.load(Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        let avg = ns(stats.sum.load(Ordering::Relaxed) / count);
        let max = ns(stats.max.load(Ordering::Relaxed));
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {}: {count} (avg {avg} ns, max {max} ns);", kind.name()));
    }
    log::info!("guest exits handled at EL2:{line}");
    for kind in ExitKind::ALL {
        let stats = &STATS[kind as usize];
        if stats.count.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut line = alloc::string::String::new();
        for (i, count) in stats.histogram.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            let _ = match BUCKET_NS.get(i) {
                Some(ns) => core::fmt::Write::write_fmt(&mut line, format_args!(" <={ns} ns: {count},")),
                None => core::fmt::Write::write_fmt(&mut line, format_args!(" >{} ns: {count}", BUCKET_NS[BUCKET_NS.len() - 1])),
            };
        }
        log::info!("guest exits IRQ-masked at EL2, histogram, {}:{line}", kind.name());
    }
    crate::latency_trace::report();
}
