//! Timestamps and the `log` backend: `[    secs.micros core cpuN LEVEL] message`.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};

use crate::clock::CounterFrequency;

/// Counter value at boot; timestamps count from here.
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
/// Counter frequency used for timestamps (set once at boot).
static COUNTER_HZ: AtomicU64 = AtomicU64::new(0);

/// Starts the timestamp clock and installs the logger. `fallback_hz` is used when firmware
/// left `CNTFRQ_EL0` at zero.
pub fn start_log(fallback_hz: Option<u32>) {
    BOOT_COUNTER.store(CNTPCT_EL0.get(), Ordering::Relaxed);
    let hz = match CNTFRQ_EL0.get() {
        0 => fallback_hz.map_or(0, u64::from),
        hz => hz,
    };
    COUNTER_HZ.store(hz, Ordering::Relaxed);
    // A second call finds the logger installed, which is fine.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// The counter frequency timestamps are computed with.
pub fn counter_frequency() -> Option<CounterFrequency> {
    CounterFrequency::new(COUNTER_HZ.load(Ordering::Relaxed))
}

/// Nanoseconds since boot by the generic counter.
pub fn uptime_ns() -> u64 {
    let ticks = CNTPCT_EL0.get().wrapping_sub(BOOT_COUNTER.load(Ordering::Relaxed));
    counter_frequency().map_or(0, |f| f.ticks_to_ns(ticks))
}

/// The prefix of a core line: `[    secs.micros core cpuN LEVEL] `, stamped now.
pub(super) struct Stamp {
    ns: u64,
    cpu: usize,
    level: log::Level,
}

impl Stamp {
    /// A stamp for a line of `level` printed now by this CPU.
    pub(super) fn now(level: log::Level) -> Self {
        Self { ns: uptime_ns(), cpu: boot::cpu_index(), level }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:5}.{:06} core cpu{} {:<5}] ",
            self.ns / 1_000_000_000,
            (self.ns / 1000) % 1_000_000,
            self.cpu,
            self.level
        )
    }
}

/// Logs one core-stamped line from a guest trap's way back into the guest, holding no lock:
/// a full ring is waited for with IRQs unmasked ([`super::write_fmt_from_trap`]).
pub fn log_from_trap(level: log::Level, args: fmt::Arguments<'_>) {
    super::write_fmt_from_trap(format_args!("{}{}\n", Stamp::now(level), args));
}

/// The `log` backend: one console record per line.
struct CoreLogger;

static LOGGER: CoreLogger = CoreLogger;

impl log::Log for CoreLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        super::write_fmt(format_args!("{}{}\n", Stamp::now(record.level()), record.args()));
    }

    fn flush(&self) {}
}
