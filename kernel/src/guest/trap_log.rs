//! What the guest did wrong, counted per kind and reported at a bounded rate.
//!
//! A trap path runs with IRQs masked and sometimes under the vGIC lock: it only [`count`]s
//! (one relaxed atomic add, never a log line). The lines come from [`emit_due`], called on
//! the way back into the guest with no lock held, at most one batch per
//! [`REPORT_INTERVAL_MS`], through the console writer that waits for room with IRQs
//! unmasked; [`report`] prints the totals at the end of the run. A guest that faults a
//! million times costs a million atomic adds and a handful of lines.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The kinds of guest misbehaviour the core counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An access to a GIC register the vGIC model does not know (RAZ/WI).
    UnknownGicRegister,
    /// An emulated device refused an access (bad size or alignment): data abort injected.
    RefusedDeviceAccess,
    /// A data access outside the guest's map: data abort injected.
    OutsideMap,
    /// An instruction fetch outside the guest's map: instruction abort injected.
    InstructionAbort,
    /// A trap the core does not emulate: UNDEF injected.
    Undefined,
    /// A write to ICC_SGI0R_EL1 or ICC_ASGI1R_EL1 (no group 0 or other Security state for
    /// the guest): ignored.
    IgnoredSgi,
    /// A physical SError taken while the guest ran: a virtual SError injected.
    SError,
    /// A physical FIQ (the core uses none): masked and ended.
    Fiq,
    /// A physical interrupt nobody owns fired: masked.
    UnownedInterrupt,
}

impl Kind {
    const ALL: [Self; 9] = [
        Self::UnknownGicRegister,
        Self::RefusedDeviceAccess,
        Self::OutsideMap,
        Self::InstructionAbort,
        Self::Undefined,
        Self::IgnoredSgi,
        Self::SError,
        Self::Fiq,
        Self::UnownedInterrupt,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::UnknownGicRegister => "unknown GIC register accesses (RAZ/WI)",
            Self::RefusedDeviceAccess => "refused emulated-device accesses (data abort injected)",
            Self::OutsideMap => "data accesses outside its map (data abort injected)",
            Self::InstructionAbort => "instruction fetches outside its map (instruction abort injected)",
            Self::Undefined => "unemulated traps (UNDEF injected)",
            Self::IgnoredSgi => "ICC_SGI0R/ASGI1R writes (ignored)",
            Self::SError => "SErrors (virtual SError injected)",
            Self::Fiq => "physical FIQs (masked)",
            Self::UnownedInterrupt => "interrupts nobody owns (masked)",
        }
    }
}

/// Most one batch of lines per this many milliseconds.
pub const REPORT_INTERVAL_MS: u64 = 1000;

const KINDS: usize = Kind::ALL.len();
static COUNTS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Per kind, the detail of the last event (an IPA, an INTID, a PC).
static LAST: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Per kind, the count the last line reported.
static REPORTED: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Something was counted since the last batch.
static DIRTY: AtomicBool = AtomicBool::new(false);
/// Counter value before which no batch is emitted.
static NEXT_BATCH: AtomicU64 = AtomicU64::new(0);

/// Counts one event of `kind`. Lock-free, no output: safe in any context.
pub fn count(kind: Kind) {
    COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
    DIRTY.store(true, Ordering::Relaxed);
}

/// [`count`], remembering `detail` (an IPA, a PC, an INTID) as the last event's.
pub fn count_at(kind: Kind, detail: u64) {
    LAST[kind as usize].store(detail, Ordering::Relaxed);
    count(kind);
}

/// How many events of `kind` so far.
pub fn total(kind: Kind) -> u64 {
    COUNTS[kind as usize].load(Ordering::Relaxed)
}

/// Emits one line per kind counted since the last batch, if the last batch is at least
/// [`REPORT_INTERVAL_MS`] old. Call on the way back into the guest, holding no lock.
pub fn emit_due() {
    if !DIRTY.load(Ordering::Relaxed) {
        return;
    }
    let now = crate::hwtimer::counter_unordered();
    let next = NEXT_BATCH.load(Ordering::Relaxed);
    if now < next {
        return;
    }
    let interval = crate::console::counter_frequency().map_or(0, |f| f.ns_to_ticks(REPORT_INTERVAL_MS * 1_000_000));
    // One CPU emits a batch; the others find the slot taken.
    if NEXT_BATCH.compare_exchange(next, now + interval, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    DIRTY.store(false, Ordering::Relaxed);
    for kind in Kind::ALL {
        let total = COUNTS[kind as usize].load(Ordering::Relaxed);
        let before = REPORTED[kind as usize].swap(total, Ordering::Relaxed);
        if total > before {
            crate::console::log_from_trap(
                log::Level::Warn,
                format_args!(
                    "guest: {} more {}, the last at {:#x} ({total} in all; at most one report per {REPORT_INTERVAL_MS} ms)",
                    total - before,
                    kind.name(),
                    LAST[kind as usize].load(Ordering::Relaxed)
                ),
            );
        }
    }
}

/// Logs the totals of every kind counted (at the end of a run).
pub fn report() {
    for kind in Kind::ALL {
        let total = COUNTS[kind as usize].load(Ordering::Relaxed);
        if total > 0 {
            log::info!("guest faults: {total} {}", kind.name());
        }
    }
}
