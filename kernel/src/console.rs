//! The console: one UART shared by every CPU, and the `log` backend that stamps each core
//! line with its time since boot and CPU.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};
use platform::UartInfo;
use platform::uart::Console;

use crate::arch::irq_lock::IrqSpinLock;
use crate::clock::CounterFrequency;

/// IRQ-safe: a context printing cannot be preempted by one that wants to print.
static CONSOLE: IrqSpinLock<Option<Console>> = IrqSpinLock::new(None);
/// Counter value at boot; timestamps count from here.
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
/// Counter frequency used for timestamps (set once at boot).
static COUNTER_HZ: AtomicU64 = AtomicU64::new(0);

/// Points the console at `uart` and enables its transmitter.
///
/// # Safety
/// `uart` must describe a real UART reachable at its address (identity mapped device
/// memory, or the MMU off).
pub unsafe fn init(uart: &UartInfo) {
    // SAFETY: forwarded from the caller.
    let console = unsafe { Console::new(uart.kind, uart.base as usize) };
    console.enable();
    *CONSOLE.lock() = Some(console);
}

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

struct ConsoleWriter<'a>(&'a Console);

impl Write for ConsoleWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(s);
        Ok(())
    }
}

/// Writes formatted text to the console under the console lock.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(console) = CONSOLE.lock().as_ref() {
        let _ = ConsoleWriter(console).write_fmt(args);
    }
}

/// Writes from a context that may have died holding the lock (panic, fatal exception):
/// waits a bounded time for the lock, then takes the UART regardless.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    for _ in 0..1_000_000 {
        if let Some(guard) = CONSOLE.try_lock() {
            if let Some(console) = guard.as_ref() {
                let _ = ConsoleWriter(console).write_fmt(args);
            }
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the holder is stuck (it is us, or a CPU that faulted); garbled output beats none.
    unsafe { CONSOLE.force_unlock() };
    write_fmt(args);
}

/// The `log` backend: `[    secs.micros core cpuN LEVEL] message`.
struct CoreLogger;

static LOGGER: CoreLogger = CoreLogger;

impl log::Log for CoreLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let ns = uptime_ns();
        write_fmt(format_args!(
            "[{:5}.{:06} core cpu{} {:<5}] {}\n",
            ns / 1_000_000_000,
            (ns / 1000) % 1_000_000,
            boot::cpu_index(),
            record.level(),
            record.args()
        ));
    }

    fn flush(&self) {}
}
