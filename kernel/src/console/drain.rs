//! Draining the ring to the physical UART: one drainer at a time, from in-band contexts, with
//! IRQs unmasked while the UART is waited for; and the last words of a run (see the module
//! documentation of [`super`]).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use platform::UartInfo;
use platform::uart::Console;
use spin::mutex::{SpinMutex, SpinMutexGuard};

use super::logger::Stamp;
use super::ring::Ring;
use super::{PENDING, RING, RING_SIZE, Wait, in_oob_context};
use crate::arch::irq_lock::{IrqSpinLockGuard, YieldRelax, cpu_relax};
use crate::arch::{mask_irqs, restore_irqs, unmask_irqs};

/// The physical UART. Holding this lock is being the drainer, the one context writing to the
/// UART. It is not IRQ-safe on purpose: the drainer holds it with IRQs unmasked while it
/// waits for the UART, and may be preempted by oob work meanwhile. So it is only ever
/// `try_lock`ed: a drain point that finds it taken goes on; only an in-band writer that
/// needs room in a full ring waits for another CPU's holder (with IRQs masked, only while the
/// holder makes progress: [`make_room`]), and the end of a run takes it from a holder that
/// stopped ([`take_for_exit`]).
static UART: SpinMutex<Option<Console>, YieldRelax> = SpinMutex::new(None);
/// The CPU whose context holds [`UART`] ([`NO_CPU`] when it is free). A writer of that CPU
/// must never wait for the drainer: it is the drainer's own context, or preempted it.
static DRAINER_CPU: AtomicUsize = AtomicUsize::new(NO_CPU);
const NO_CPU: usize = usize::MAX;
/// Bytes written to the UART from the ring: the drainer's progress, which those waiting for
/// the UART at the end of a run watch.
static DRAINED: AtomicU64 = AtomicU64::new(0);
/// Whether draining is left to the drain points (after [`defer_output`]); before, in-band
/// writes drain at once.
static DEFERRED: AtomicBool = AtomicBool::new(false);

/// Bytes copied out of the ring under its lock at a time.
const CHUNK: usize = 128;
/// A drainer that wrote nothing for this long (ms) is taken to be stopped: preempted for
/// good, or dead. (A chunk takes 11 ms at 115200 baud.)
const STALLED_MS: u64 = 100;

/// Points the console at `uart`, enables its transmitter, and prints what was written
/// before.
///
/// # Safety
/// `uart` must describe a real UART reachable at its address (identity mapped device
/// memory, or the MMU off).
pub unsafe fn init(uart: &UartInfo) {
    // SAFETY: forwarded from the caller.
    let console = unsafe { Console::new(uart.kind, uart.base as usize) };
    console.enable();
    // Boot: only this CPU runs, nobody else holds the UART.
    *UART.lock() = Some(console);
    drain_now(Wait::AsCaller);
}

/// Leaves draining to the drain points from now on: in-band writes no longer wait for the
/// UART. Call once the scheduler runs and the boot CPU's in-band stage has IRQs unmasked.
pub fn defer_output() {
    DEFERRED.store(true, Ordering::Relaxed);
}

/// Whether [`defer_output`] was called.
pub(super) fn deferred() -> bool {
    DEFERRED.load(Ordering::Relaxed)
}

/// A drain point: writes what the ring holds to the UART, unless another context is at it
/// (that one drains what is left). The common case, nothing to print, is one load.
///
/// Call it from an in-band context holding no lock (a guest exit on its way back into the
/// guest, an idle loop, an in-band wait): IRQs are unmasked while the UART is waited for,
/// then the caller's mask is restored. Returns whether it drained, i.e. whether interrupts
/// may have been taken meanwhile.
#[inline]
pub fn drain() -> bool {
    drain_giving_way(never)
}

/// [`drain`] that gives way to `give_way`: it does not start, or stops before the next byte,
/// when `give_way()` holds (on the way back into the guest: an interrupt waits for the guest,
/// which should take it before the console is written out; the rest drains at a later exit).
#[inline]
pub fn drain_giving_way(give_way: fn() -> bool) -> bool {
    if !PENDING.load(Ordering::Relaxed) {
        return false;
    }
    drain_point(give_way)
}

#[cold]
#[inline(never)]
fn drain_point(give_way: fn() -> bool) -> bool {
    // Oob contexts never drain (a misplaced drain point must not make them wait).
    if in_oob_context() || give_way() {
        return false;
    }
    drain_now_giving_way(Wait::Unmasked, give_way)
}

/// Never gives way.
fn never() -> bool {
    false
}

/// Drains the ring if no other context is at it, then again if a record came in just as the
/// drainer let go (its writer saw the UART taken and left it to the drainer). Writes at most
/// one ring's worth, so that a flood of output cannot hold the caller forever.
pub(super) fn drain_now(wait: Wait) -> bool {
    drain_now_giving_way(wait, never)
}

/// [`drain_now`], stopping as soon as `give_way()` holds.
fn drain_now_giving_way(wait: Wait, give_way: fn() -> bool) -> bool {
    let mut budget = RING_SIZE;
    let mut drained = false;
    while budget > 0 {
        // A writer stores PENDING and then tries the UART; a drainer lets the UART go and
        // then loads PENDING (its next turn here). With this fence on both sides, one of them
        // sees the other: no record is left behind with nobody draining it.
        fence(Ordering::SeqCst);
        if !PENDING.load(Ordering::Relaxed) {
            break;
        }
        let Some(drainer) = Drainer::try_take() else { break };
        drained = true;
        let written = drainer.drain(wait, RING_SIZE, budget, give_way);
        drop(drainer);
        if written == 0 || give_way() {
            break;
        }
        budget = budget.saturating_sub(written);
    }
    drained
}

/// An in-band writer found the ring without `len` free bytes: drains until it has them, or
/// waits for another CPU's drainer to make them. `false` if it cannot: the record is larger
/// than the ring, there is no UART yet, the drainer is this CPU's own preempted context, or
/// the caller has IRQs masked and the other CPU's drainer stalled.
///
/// The last case breaks a deadlock: a caller with IRQs masked may hold an IRQ-safe lock that
/// an oob context needs, and that oob context may be what preempted the other drainer.
pub(super) fn make_room(len: usize, wait: Wait) -> bool {
    if len > RING_SIZE {
        return false;
    }
    let cpu = boot::cpu_index();
    let patient = wait == Wait::Unmasked || !crate::arch::irqs_masked();
    let mut watch = StallWatch::new();
    loop {
        if let Some(drainer) = Drainer::try_take() {
            if drainer.guard.is_none() {
                return false;
            }
            drainer.drain(wait, len, usize::MAX, never);
            // The caller tries again (another writer may have taken the room meanwhile).
            return true;
        }
        if DRAINER_CPU.load(Ordering::Relaxed) == cpu {
            return false;
        }
        if RING.lock().free() >= len {
            return true;
        }
        if !patient && watch.stalled() {
            return false;
        }
        with_mask(wait, cpu_relax);
    }
}

/// An in-band record larger than the whole ring: drains the ring, then writes the record
/// straight to the UART.
#[cold]
pub(super) fn write_through(args: fmt::Arguments<'_>, wait: Wait) {
    let cpu = boot::cpu_index();
    let patient = wait == Wait::Unmasked || !crate::arch::irqs_masked();
    let mut watch = StallWatch::new();
    loop {
        if let Some(drainer) = Drainer::try_take() {
            drainer.drain(wait, RING_SIZE, usize::MAX, never);
            if let Some(uart) = drainer.guard.as_ref() {
                with_mask(wait, || {
                    let _ = UartWriter(uart).write_fmt(args);
                });
            }
            return;
        }
        if DRAINER_CPU.load(Ordering::Relaxed) == cpu || (!patient && watch.stalled()) {
            return;
        }
        with_mask(wait, cpu_relax);
    }
}

/// Writes straight to the UART, bypassing the ring, the drainer's bookkeeping and every
/// per-CPU state: only for an image entered at the wrong exception level, which stops at
/// once.
pub fn write_unbuffered(args: fmt::Arguments<'_>) {
    if let Some(guard) = UART.try_lock()
        && let Some(uart) = guard.as_ref()
    {
        let _ = UartWriter(uart).write_fmt(args);
    }
}

/// Writes from a context that may be about to die, or that may have died holding the UART or
/// the ring (panic, fatal exception, the verdict): takes the UART (see [`take_for_exit`]),
/// writes out what the ring holds, then `args` straight to the UART.
pub fn write_fmt_emergency(args: fmt::Arguments<'_>) {
    let drainer = take_for_exit();
    if let Some(uart) = drainer.guard.as_ref() {
        drain_for_exit(uart);
        let _ = UartWriter(uart).write_fmt(args);
    }
}

/// Ends the console's part of a run: writes out what the ring holds, then how many bytes of
/// oob output were dropped (`console: N bytes of oob output dropped`). Output written after
/// this still reaches the ring, and [`write_fmt_emergency`] still writes it out first.
pub fn finish() {
    let drainer = take_for_exit();
    if let Some(uart) = drainer.guard.as_ref() {
        drain_for_exit(uart);
        let _ = UartWriter(uart).write_fmt(format_args!(
            "{}console: {} bytes of oob output dropped\n",
            Stamp::now(log::Level::Info),
            super::dropped_bytes()
        ));
    }
}

/// The holder of [`UART`]; records its CPU in [`DRAINER_CPU`] while it holds it.
struct Drainer {
    guard: SpinMutexGuard<'static, Option<Console>, YieldRelax>,
}

impl Drainer {
    /// Takes the UART if it is free.
    fn try_take() -> Option<Self> {
        let guard = UART.try_lock()?;
        DRAINER_CPU.store(boot::cpu_index(), Ordering::Relaxed);
        Some(Self { guard })
    }

    /// Writes the ring's oldest bytes to the UART until it has `need_free` free bytes
    /// ([`RING_SIZE`]: until it is empty), `budget` bytes were written, or `give_way()` holds
    /// (checked before each byte); returns how many were written. Bytes leave the ring only
    /// once the UART took them. With [`Wait::Unmasked`], IRQs are unmasked throughout (masked
    /// only inside the ring's lock) and restored at the end.
    fn drain(&self, wait: Wait, need_free: usize, budget: usize, give_way: fn() -> bool) -> usize {
        let Some(uart) = self.guard.as_ref() else { return 0 };
        let saved = (wait == Wait::Unmasked).then(|| {
            let saved = mask_irqs();
            unmask_irqs();
            saved
        });
        let mut chunk = [0u8; CHUNK];
        let mut written = 0;
        // The bytes of the last chunk out on the UART, still to consume.
        let mut out = 0;
        let mut stopped = false;
        loop {
            let n = {
                let mut ring = RING.lock();
                ring.consume(out);
                if ring.is_empty() {
                    PENDING.store(false, Ordering::Relaxed);
                }
                if stopped || ring.free() >= need_free || written >= budget {
                    break;
                }
                ring.peek(&mut chunk)
            };
            out = put_bytes_until(uart, &chunk[..n], give_way);
            stopped = out < n;
            DRAINED.fetch_add(out as u64, Ordering::Relaxed);
            written += out;
        }
        if let Some(saved) = saved {
            restore_irqs(saved);
        }
        written
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        // Before the guard unlocks (fields drop after this).
        DRAINER_CPU.store(NO_CPU, Ordering::Relaxed);
    }
}

/// Takes the UART for the last words of a run. Waits while its holder makes progress (what
/// it writes comes first); takes it by force from a holder that stopped — a CPU that died
/// holding it, or this CPU's own context that an exception or an oob thread interrupted.
fn take_for_exit() -> Drainer {
    let cpu = boot::cpu_index();
    let mut watch = StallWatch::new();
    loop {
        if let Some(drainer) = Drainer::try_take() {
            return drainer;
        }
        if DRAINER_CPU.load(Ordering::Relaxed) == cpu || watch.stalled() {
            break;
        }
        cpu_relax();
    }
    // SAFETY: the holder stopped for good (it died, or it is this CPU's interrupted context,
    // which the end of the run never returns to): garbled output beats none.
    unsafe { UART.force_unlock() };
    loop {
        if let Some(drainer) = Drainer::try_take() {
            return drainer;
        }
        cpu_relax();
    }
}

/// Watches another context's drainer for progress ([`DRAINED`]).
struct StallWatch {
    progress: u64,
    since: u64,
    patience: u64,
}

impl StallWatch {
    fn new() -> Self {
        let patience = super::counter_frequency().map_or(10_000_000, |f| f.hz() / 1000 * STALLED_MS);
        Self { progress: DRAINED.load(Ordering::Relaxed), since: crate::hwtimer::counter_unordered(), patience }
    }

    /// Whether the drainer wrote nothing for [`STALLED_MS`].
    fn stalled(&mut self) -> bool {
        let now = crate::hwtimer::counter_unordered();
        let drained = DRAINED.load(Ordering::Relaxed);
        if drained != self.progress {
            (self.progress, self.since) = (drained, now);
            return false;
        }
        now.wrapping_sub(self.since) > self.patience
    }
}

/// Writes out everything the ring holds, holding its lock throughout (the run is ending).
fn drain_for_exit(uart: &Console) {
    let mut ring = lock_ring_for_exit();
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = ring.peek(&mut chunk);
        if n == 0 {
            break;
        }
        put_bytes(uart, &chunk[..n]);
        ring.consume(n);
        DRAINED.fetch_add(n as u64, Ordering::Relaxed);
    }
    PENDING.store(false, Ordering::Relaxed);
}

/// Locks the ring at the end of a run: waits a bounded time, then takes it from a holder that
/// died in its critical section (a panic while formatting a record into it).
fn lock_ring_for_exit() -> IrqSpinLockGuard<'static, Ring<RING_SIZE>> {
    for _ in 0..1_000_000 {
        if let Some(ring) = RING.try_lock() {
            return ring;
        }
        cpu_relax();
    }
    // SAFETY: the holder is stuck (it is us, or a CPU that faulted): the critical sections
    // are a few hundred nanoseconds otherwise.
    unsafe { RING.force_unlock() };
    RING.lock()
}

/// Runs `f` with IRQs unmasked if `wait` allows it, then restores the mask.
fn with_mask<T>(wait: Wait, f: impl FnOnce() -> T) -> T {
    if wait == Wait::AsCaller {
        return f();
    }
    crate::arch::with_irqs_unmasked(f)
}

/// [`put_bytes`] byte by byte until `give_way()` holds; returns how many bytes were sent.
fn put_bytes_until(uart: &Console, bytes: &[u8], give_way: fn() -> bool) -> usize {
    for (sent, byte) in bytes.iter().enumerate() {
        if give_way() {
            return sent;
        }
        put_bytes(uart, core::slice::from_ref(byte));
    }
    bytes.len()
}

/// Sends `bytes` to the UART, turning `\n` into `\r\n`, waiting while its FIFO is full.
fn put_bytes(uart: &Console, bytes: &[u8]) {
    for &byte in bytes {
        if byte == b'\n' {
            uart.put_byte(b'\r');
        }
        uart.put_byte(byte);
    }
}

/// Formats straight to the UART.
struct UartWriter<'a>(&'a Console);

impl Write for UartWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_bytes(self.0, s.as_bytes());
        Ok(())
    }
}
