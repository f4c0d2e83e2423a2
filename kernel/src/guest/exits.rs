//! What the guest's traps cost at EL2: per kind of exit, how many, and the average and
//! longest time from the trap handler's start to the list registers' refresh before the
//! return. The core handles a trap with IRQs masked, so the longest exit bounds how late an
//! oob interrupt can be taken on that CPU because of the guest; printed at power-off as
//! `guest exits handled at EL2: …`. The console drain that may follow on the way back into
//! the guest runs with IRQs unmasked and is not counted (a UART exit only copies a completed
//! line into the console ring).

use core::sync::atomic::{AtomicU64, Ordering};

/// The kinds of guest exits the core handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// An access to the emulated GIC distributor or redistributors.
    GicMmio,
    /// An access to the emulated console UART.
    UartMmio,
    /// An access to the emulated virtio-console of the oob channels.
    ChannelMmio,
    /// A write of `ICC_SGI1R_EL1` (an SGI sent by the guest).
    SgiWrite,
    /// A PSCI or other call over HVC/SMC.
    Hypercall,
    /// Anything else: an access outside the guest's map, an unexpected trap.
    Other,
}

impl ExitKind {
    const ALL: [ExitKind; 6] = [Self::GicMmio, Self::UartMmio, Self::ChannelMmio, Self::SgiWrite, Self::Hypercall, Self::Other];

    fn name(self) -> &'static str {
        match self {
            Self::GicMmio => "GIC MMIO",
            Self::UartMmio => "UART MMIO",
            Self::ChannelMmio => "channel MMIO",
            Self::SgiWrite => "SGI write",
            Self::Hypercall => "HVC/SMC",
            Self::Other => "other",
        }
    }
}

/// Count, total and longest time (counter ticks) of one kind of exit.
struct ExitStats {
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

static STATS: [ExitStats; ExitKind::ALL.len()] =
    [const { ExitStats { count: AtomicU64::new(0), sum: AtomicU64::new(0), max: AtomicU64::new(0) } }; ExitKind::ALL.len()];

/// Records one exit of `kind` that took `ticks` counter ticks at EL2.
#[inline]
pub fn record(kind: ExitKind, ticks: u64) {
    let stats = &STATS[kind as usize];
    stats.count.fetch_add(1, Ordering::Relaxed);
    stats.sum.fetch_add(ticks, Ordering::Relaxed);
    stats.max.fetch_max(ticks, Ordering::Relaxed);
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
}
