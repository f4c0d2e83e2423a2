//! The latency tracer (`companion.trace.latency=on`): what the latency test's worst samples
//! followed. Each CPU keeps a ring of its last [`EVENTS`] events with IRQs masked at EL2 —
//! every IRQ entry (the interrupted PC and PSTATE, and the EL2 timer's compare value, the
//! instant its interrupt was raised), every timed IRQ-masked section of the guest's exits
//! ([`crate::guest::exits::record`]), every return from a trap into the guest — and the
//! latency test's contexts hand it their samples: a sample worse than the context's worst
//! so far takes a copy of its CPU's ring. At the end of the run
//! ([`report`]), one block per context shows the worst sample and the events before it, in
//! ns before the sample was taken. A PC at EL2 is printed as an offset in the core's image as
//! well, to map with its symbols (`llvm-addr2line -fipCe target/images/<board>/companion.elf
//! OFFSET`); a guest PC with the guest's (`System.map`).
//!
//! `companion.trace.latency=masks` also records every change of the IRQ mask at EL2 (where it
//! was masked and unmasked, the PC of the inlined `arch::mask_irqs`/`restore_irqs` call), in
//! an image built with the kernel's `latency-trace-masks` feature
//! (`COMPANION_KERNEL_FEATURES=latency-trace-masks cargo xtask …`): without it those hooks
//! are not compiled. Each event costs some 40 to 80 ns under `-icount`, which the figures of a
//! traced run carry.
//!
//! Off (the default), each hook is one relaxed load and a branch not taken.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Events kept per CPU.
pub const EVENTS: usize = 48;

/// Whether the tracer runs.
static ON: AtomicBool = AtomicBool::new(false);
/// Whether it also records every change of the IRQ mask (`companion.trace.latency=masks`, in
/// an image built with the `latency-trace-masks` feature): the exact masked stretches, at a
/// cost of a few tens of ns per change that the figures then carry.
#[cfg(feature = "latency-trace-masks")]
static MASKS: AtomicBool = AtomicBool::new(false);

/// What an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum Tag {
    /// No event in this slot yet.
    Empty = 0,
    /// An IRQ entry from the guest: `a` the interrupted PC, `b` its PSTATE, `c` the EL2
    /// timer's compare value (when its interrupt was raised, if it is the one taken).
    IrqFromGuest = 1,
    /// An IRQ entry at EL2 itself (an oob thread, the in-band loop, an unmasked window of
    /// an exit's tail): `a`, `b`, `c` as for [`Tag::IrqFromGuest`].
    IrqAtEl2 = 2,
    /// A timed IRQ-masked section: `a` its kind (`ExitKind as u64`), `b` its start (ticks).
    Section = 3,
    /// A trap handler returning to the guest: `a` the guest PC it returns to.
    TrapReturn = 4,
    /// An IRQ entry from the guest returning to it: `a` the guest PC.
    IrqReturn = 5,
    /// IRQs masked from unmasked (`arch::mask_irqs`): `a` where (the PC of the inlined call).
    Masked = 6,
    /// IRQs unmasked (`arch::restore_irqs`, `arch::unmask_irqs`): `a` where.
    Unmasked = 7,
}

impl Tag {
    fn from_raw(raw: u64) -> Self {
        match raw {
            1 => Self::IrqFromGuest,
            2 => Self::IrqAtEl2,
            3 => Self::Section,
            4 => Self::TrapReturn,
            5 => Self::IrqReturn,
            6 => Self::Masked,
            7 => Self::Unmasked,
            _ => Self::Empty,
        }
    }
}

/// One event: what, when (counter ticks) and up to three details.
struct Event {
    tag: AtomicU64,
    at: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
    c: AtomicU64,
}

impl Event {
    const fn empty() -> Self {
        Self {
            tag: AtomicU64::new(Tag::Empty as u64),
            at: AtomicU64::new(0),
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
            c: AtomicU64::new(0),
        }
    }

    fn copy_from(&self, other: &Self) {
        for (to, from) in [(&self.tag, &other.tag), (&self.at, &other.at), (&self.a, &other.a), (&self.b, &other.b), (&self.c, &other.c)] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// One CPU's ring, written by that CPU only, with IRQs masked.
struct Ring {
    events: [Event; EVENTS],
    next: AtomicUsize,
}

static RINGS: [Ring; boot::MAX_CPUS] = [const { Ring { events: [const { Event::empty() }; EVENTS], next: AtomicUsize::new(0) } }; boot::MAX_CPUS];

/// The latency test's contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// The measuring oob thread.
    Thread = 0,
    /// The oob timer's IRQ-context callback.
    Irq = 1,
}

/// One of a context's worst samples and the ring of its CPU when it was taken (oldest first).
struct Worst {
    late_ns: core::sync::atomic::AtomicI64,
    taken_at: AtomicU64,
    events: [Event; EVENTS],
}

/// Worst samples kept per context.
const KEPT: usize = 3;

static WORST: [[Worst; KEPT]; 2] = [const {
    [const { Worst { late_ns: core::sync::atomic::AtomicI64::new(i64::MIN), taken_at: AtomicU64::new(0), events: [const { Event::empty() }; EVENTS] } }; KEPT]
}; 2];

/// The least bad of `context`'s kept samples (the one a worse sample replaces).
fn least_kept(context: Context) -> &'static Worst {
    let kept = &WORST[context as usize];
    kept.iter().min_by_key(|worst| worst.late_ns.load(Ordering::Relaxed)).unwrap_or(&kept[0])
}

/// Starts the tracer (the boot argument `companion.trace.latency=on`), recording the IRQ
/// mask's changes too if `masks` (`companion.trace.latency=masks`).
pub fn start(masks: bool) {
    #[cfg(feature = "latency-trace-masks")]
    MASKS.store(masks, Ordering::Relaxed);
    #[cfg(not(feature = "latency-trace-masks"))]
    let _ = masks;
    ON.store(true, Ordering::Relaxed);
}

/// Appends an event to this CPU's ring. IRQs masked.
#[cold]
#[inline(never)]
fn push(tag: Tag, at: u64, a: u64, b: u64, c: u64) {
    let Some(ring) = RINGS.get(boot::cpu_index()) else { return };
    let index = ring.next.load(Ordering::Relaxed);
    ring.next.store((index + 1) % EVENTS, Ordering::Relaxed);
    let event = &ring.events[index];
    event.tag.store(tag as u64, Ordering::Relaxed);
    event.at.store(at, Ordering::Relaxed);
    event.a.store(a, Ordering::Relaxed);
    event.b.store(b, Ordering::Relaxed);
    event.c.store(c, Ordering::Relaxed);
}

/// An IRQ entry that interrupted `elr` with PSTATE `spsr` (IRQs masked, first thing).
#[inline(always)]
pub fn irq_entry(from_guest: bool, elr: u64, spsr: u64) {
    if ON.load(Ordering::Relaxed) {
        irq_entry_traced(from_guest, elr, spsr);
    }
}

#[cold]
#[inline(never)]
fn irq_entry_traced(from_guest: bool, elr: u64, spsr: u64) {
    let at = crate::hwtimer::counter_unordered();
    let cval: u64;
    // SAFETY: reads the EL2 timer's compare register, no side effect.
    unsafe { core::arch::asm!("mrs {0}, cnthp_cval_el2", out(reg) cval, options(nomem, nostack, preserves_flags)) };
    push(if from_guest { Tag::IrqFromGuest } else { Tag::IrqAtEl2 }, at, elr, spsr, cval);
}

/// An IRQ entry at EL2 itself: the interrupted PC and PSTATE are still in ELR/SPSR_EL2.
#[inline(always)]
pub fn irq_entry_at_el2() {
    if ON.load(Ordering::Relaxed) {
        use aarch64_cpu::registers::{ELR_EL2, Readable, SPSR_EL2};
        irq_entry_traced(false, ELR_EL2.get(), SPSR_EL2.get());
    }
}

/// A timed IRQ-masked section of `kind` (`ExitKind as u64`) that took `ticks` and ends now.
#[inline(always)]
pub fn section(kind: u64, ticks: u64) {
    if ON.load(Ordering::Relaxed) {
        let end = crate::hwtimer::counter_unordered();
        push(Tag::Section, end, kind, end.wrapping_sub(ticks), 0);
    }
}

/// A return into the guest at `elr`, after a trap (`after_irq` false) or an IRQ.
#[inline(always)]
pub fn guest_return(after_irq: bool, elr: u64) {
    if ON.load(Ordering::Relaxed) {
        push(if after_irq { Tag::IrqReturn } else { Tag::TrapReturn }, crate::hwtimer::counter_unordered(), elr, 0, 0);
    }
}

/// The PSTATE.I bit as DAIF reads it.
#[cfg(feature = "latency-trace-masks")]
const DAIF_I: u64 = 1 << 7;

/// The PC of the (inlined) caller.
#[cfg(feature = "latency-trace-masks")]
#[inline(always)]
fn here() -> u64 {
    let pc: u64;
    // SAFETY: reads the PC, no side effect.
    unsafe { core::arch::asm!("adr {0}, .", out(reg) pc, options(nomem, nostack, preserves_flags)) };
    pc
}

/// IRQs were just masked, `previous` the DAIF before: an event if they were unmasked.
#[cfg(feature = "latency-trace-masks")]
#[inline(always)]
pub fn masked_from(previous: u64) {
    if MASKS.load(Ordering::Relaxed) && previous & DAIF_I == 0 {
        push(Tag::Masked, crate::hwtimer::counter_unordered(), here(), 0, 0);
    }
}

/// IRQs are about to be set to `daif`: an event if that unmasks them while they are masked.
#[cfg(feature = "latency-trace-masks")]
#[inline(always)]
pub fn unmasking_to(daif: u64) {
    if MASKS.load(Ordering::Relaxed) && daif & DAIF_I == 0 && crate::arch::irqs_masked() {
        push(Tag::Unmasked, crate::hwtimer::counter_unordered(), here(), 0, 0);
    }
}

/// A measured run of the latency test starts: the samples kept so far (a calibration's, an
/// earlier run's) are forgotten, so the report shows the last run's worst.
pub fn new_run() {
    for worst in WORST.iter().flatten() {
        worst.late_ns.store(i64::MIN, Ordering::Relaxed);
    }
}

/// A sample of the latency test: `late_ns` after its deadline, taken now on this CPU.
#[inline(always)]
pub fn sample(context: Context, late_ns: i64) {
    if ON.load(Ordering::Relaxed) && late_ns > least_kept(context).late_ns.load(Ordering::Relaxed) {
        keep_worst(context, late_ns);
    }
}

/// Copies this CPU's ring as one of `context`'s worst (IRQs masked for the copy: the ring is
/// consistent, and the copy is as rare as a new worst).
#[cold]
#[inline(never)]
fn keep_worst(context: Context, late_ns: i64) {
    let saved = crate::arch::mask_irqs();
    let now = crate::hwtimer::counter_unordered();
    if let Some(ring) = RINGS.get(boot::cpu_index()) {
        let worst = least_kept(context);
        worst.late_ns.store(late_ns, Ordering::Relaxed);
        worst.taken_at.store(now, Ordering::Relaxed);
        let first = ring.next.load(Ordering::Relaxed);
        for (i, to) in worst.events.iter().enumerate() {
            to.copy_from(&ring.events[(first + i) % EVENTS]);
        }
    }
    crate::arch::restore_irqs(saved);
}

/// `pc` as `image+OFFSET` if it lies in the core's image (the ELF links it at 0).
struct CorePc(u64);

impl core::fmt::Display for CorePc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        unsafe extern "C" {
            static __image_start: u8;
            static __image_end: u8;
        }
        // Linker-script symbols: only their addresses are used.
        let (start, end) = ((&raw const __image_start) as u64, (&raw const __image_end) as u64);
        if (start..end).contains(&self.0) { write!(f, "{:#x} (image+{:#x})", self.0, self.0 - start) } else { write!(f, "{:#x}", self.0) }
    }
}

/// The exception level a saved PSTATE names.
fn exception_level(spsr: u64) -> u64 {
    (spsr >> 2) & 0b11
}

/// Logs each context's worst sample and the events before it (nothing if the tracer is off).
pub fn report() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let Some(frequency) = crate::console::counter_frequency() else { return };
    let contexts = WORST[0].iter().map(|worst| ("oob thread", worst)).chain(WORST[1].iter().map(|worst| ("oob timer-IRQ", worst)));
    for (context, worst) in contexts {
        let late = worst.late_ns.load(Ordering::Relaxed);
        if late == i64::MIN {
            continue;
        }
        let taken_at = worst.taken_at.load(Ordering::Relaxed);
        // Signed ns from the sample back to `at` (negative: before it).
        let rel = |at: u64| -(frequency.ticks_to_ns(taken_at.wrapping_sub(at)) as i64);
        log::info!("latency trace: {context} sample {late} ns (one of the {KEPT} worst), taken at counter {taken_at}; events before it (ns from the sample):");
        for event in &worst.events {
            let (a, b, c) = (event.a.load(Ordering::Relaxed), event.b.load(Ordering::Relaxed), event.c.load(Ordering::Relaxed));
            let at = event.at.load(Ordering::Relaxed);
            match Tag::from_raw(event.tag.load(Ordering::Relaxed)) {
                Tag::Empty => {}
                Tag::IrqFromGuest | Tag::IrqAtEl2 => log::info!(
                    "latency trace:   {:>7} irq entry from EL{} pc {} (pstate {b:#x}); timer raised at {:>7}, taken {} ns later",
                    rel(at),
                    exception_level(b),
                    CorePc(a),
                    rel(c),
                    if at >= c { frequency.ticks_to_ns(at - c) as i64 } else { -(frequency.ticks_to_ns(c - at) as i64) }
                ),
                Tag::Section => log::info!(
                    "latency trace:   {:>7} masked section {} from {:>7} ({} ns)",
                    rel(at),
                    crate::guest::exits::kind_name(a),
                    rel(b),
                    frequency.ticks_to_ns(at.wrapping_sub(b))
                ),
                Tag::TrapReturn => log::info!("latency trace:   {:>7} trap returns to the guest at pc {a:#x}", rel(at)),
                Tag::IrqReturn => log::info!("latency trace:   {:>7} irq returns to the guest at pc {a:#x}", rel(at)),
                Tag::Masked => log::info!("latency trace:   {:>7} IRQs masked at {}", rel(at), CorePc(a)),
                Tag::Unmasked => log::info!("latency trace:   {:>7} IRQs unmasked at {}", rel(at), CorePc(a)),
            }
        }
    }
}
