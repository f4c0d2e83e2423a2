//! The "irqs-off hunter" (`companion.irqsoff=US`): where Linux keeps its IRQs masked while
//! an in-band interrupt waits for it.
//!
//! Every IRQ the core takes from the guest records, per CPU, the interrupted guest PC and
//! whether the guest had IRQs masked (PSTATE.I in the saved SPSR) — one relaxed store on
//! entry, one on exit, only while the hunter runs. An oob timer on each vCPU's CPU fires
//! every `US` µs; its own IRQ interrupted the guest, so the recorded state is where the
//! guest was. If the guest had IRQs masked *and* an in-band interrupt waits for that vCPU
//! ([`super::virq::has_pending`]), the sample counts for that PC and extends the CPU's
//! current *window* (consecutive such samples); the first sample that is not one closes it.
//!
//! A CPU's samples count only once the guest was seen there with IRQs unmasked: Linux
//! boots (and brings up each secondary CPU) with IRQs masked for a long time while its
//! timer is already pending, which would otherwise top the list with boot code.
//!
//! A window is credited to the PC of its **first** sample: the one closest to where the
//! section began, so a long section that calls into helpers is charged to the code that
//! entered it rather than spread over the helpers. Its length is estimated as the span from
//! its first to its last sample plus one period (the sampling resolution; a one-sample
//! window is one period long). Samples are counted for every PC they land on.
//!
//! Each CPU keeps its own fixed table of [`TABLE_SIZE`] PCs (open addressing with at most
//! `MAX_PROBES` probes, no allocation in the callback, and no lock ever contended);
//! samples for new PCs that find no free slot are counted as dropped. At guest power-off, [`report`] merges the tables and prints the
//! [`TOP`] PCs with the longest windows as `IRQSOFF| pc 0x… samples N longest_ns M` lines,
//! which `cargo xtask irqsoff` symbolizes with the guest's System.map.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::irq_lock::IrqSpinLock;
use crate::rt::{self, Duration, Instant, IrqContext, IrqTimer, TimerExpiry};

/// PCs each CPU's table holds.
pub const TABLE_SIZE: usize = 512;
/// Slots a lookup probes before giving up (bounds the callback's cost once the table fills).
const MAX_PROBES: usize = 32;
/// PCs printed at power-off.
pub const TOP: usize = 20;
/// SPSR.I (bit 7): the guest had IRQs masked.
const SPSR_I: u64 = 1 << 7;
/// In [`LAST_GUEST_IRQ`], bit 0 of the (4-byte aligned) PC says the guest had IRQs masked.
const MASKED_BIT: u64 = 1;

/// Whether the hunter runs (the IRQ entry records nothing otherwise).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The sampling period, in ns.
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
/// Per CPU, while it handles an IRQ taken from the guest: the guest PC with [`MASKED_BIT`]
/// set if the guest had IRQs masked; 0 otherwise.
static LAST_GUEST_IRQ: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];

/// One PC's record.
#[derive(Clone, Copy)]
struct Entry {
    /// The guest PC (0: free slot).
    pc: u64,
    /// Samples taken at this PC (IRQs masked, an in-band interrupt waiting).
    samples: u64,
    /// The longest window credited to this PC, in ns.
    longest_ns: u64,
}

const FREE: Entry = Entry { pc: 0, samples: 0, longest_ns: 0 };

/// The window being measured on one CPU.
#[derive(Clone, Copy)]
struct Window {
    /// The PC of its first sample (the one credited).
    pc: u64,
    /// When its first and last samples were taken, in ns.
    first_ns: u64,
    last_ns: u64,
}

/// One CPU's hunter state; only that CPU's timer callback updates it.
struct CpuHunter {
    table: [Entry; TABLE_SIZE],
    window: Option<Window>,
    /// Whether the guest was seen with IRQs unmasked on this CPU (its boot is over).
    armed: bool,
    /// Samples (or windows) for new PCs that found the table full.
    dropped: u64,
}

impl CpuHunter {
    const fn new() -> Self {
        Self { table: [FREE; TABLE_SIZE], window: None, armed: false, dropped: 0 }
    }

    /// The slot for `pc`, claimed if new; `None` if the table is full (around its hash).
    fn slot(&mut self, pc: u64) -> Option<&mut Entry> {
        // Fibonacci hashing of the instruction index; linear probing.
        let start = ((pc >> 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % TABLE_SIZE;
        let index = (0..MAX_PROBES)
            .map(|probe| (start + probe) % TABLE_SIZE)
            .find(|&i| self.table[i].pc == pc || self.table[i].pc == 0)?;
        let entry = &mut self.table[index];
        entry.pc = pc;
        Some(entry)
    }

    fn sample(&mut self, pc: u64, now_ns: u64) {
        match self.slot(pc) {
            Some(entry) => entry.samples += 1,
            None => self.dropped += 1,
        }
        match &mut self.window {
            Some(window) => window.last_ns = now_ns,
            None => self.window = Some(Window { pc, first_ns: now_ns, last_ns: now_ns }),
        }
    }

    fn close_window(&mut self, period_ns: u64) {
        let Some(window) = self.window.take() else { return };
        let length = window.last_ns.saturating_sub(window.first_ns).saturating_add(period_ns);
        match self.slot(window.pc) {
            Some(entry) => entry.longest_ns = entry.longest_ns.max(length),
            None => self.dropped += 1,
        }
    }
}

static HUNTERS: [IrqSpinLock<CpuHunter>; boot::MAX_CPUS] = [const { IrqSpinLock::new(CpuHunter::new()) }; boot::MAX_CPUS];
/// The sampling timers (kept alive for the run).
static TIMERS: spin::Mutex<Vec<IrqTimer>> = spin::Mutex::new(Vec::new());

/// The IRQ entry, for an IRQ taken from the guest: records where the guest was and whether
/// it had IRQs masked. Nothing when the hunter is off.
#[inline]
pub fn note_guest_irq(elr: u64, spsr: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let masked = if spsr & SPSR_I != 0 { MASKED_BIT } else { 0 };
    if let Some(slot) = LAST_GUEST_IRQ.get(boot::cpu_index()) {
        slot.store((elr & !MASKED_BIT) | masked, Ordering::Relaxed);
    }
}

/// The IRQ entry, once an IRQ taken from the guest is handled: forgets the guest state, so
/// a later IRQ taken at EL2 is not mistaken for one that interrupted the guest.
#[inline]
pub fn guest_irq_handled() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(slot) = LAST_GUEST_IRQ.get(boot::cpu_index()) {
        slot.store(0, Ordering::Relaxed);
    }
}

/// Starts sampling the guest on CPUs `0..vcpus` every `period`.
pub fn start(vcpus: usize, period: Duration) -> Result<(), rt::Error> {
    PERIOD_NS.store(period.as_nanos(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    let mut timers = TIMERS.lock();
    for cpu in 0..vcpus.min(boot::MAX_CPUS) {
        let timer = IrqTimer::new(cpu, sample)?;
        timer.start(rt::now() + period, Some(period))?;
        timers.push(timer);
    }
    log::info!("irqsoff: sampling the guest on {vcpus} CPU(s) every {} us", period.as_nanos() / 1000);
    Ok(())
}

/// The timer callback, on the sampled CPU.
fn sample(_: &TimerExpiry, now: Instant, _: &mut IrqContext<'_>) {
    let cpu = boot::cpu_index();
    let Some(hunter) = HUNTERS.get(cpu) else { return };
    let state = LAST_GUEST_IRQ[cpu].load(Ordering::Relaxed);
    let masked = state & MASKED_BIT != 0;
    let mut hunter = hunter.lock();
    if state != 0 && !masked {
        hunter.armed = true;
    }
    if hunter.armed && masked && super::virq::has_pending(cpu) {
        hunter.sample(state & !MASKED_BIT, now.as_nanos());
    } else {
        hunter.close_window(PERIOD_NS.load(Ordering::Relaxed));
    }
}

/// Prints the [`TOP`] PCs by longest window (`IRQSOFF|` lines), if the hunter ran.
pub fn report() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let period_ns = PERIOD_NS.load(Ordering::Relaxed);
    let mut merged: Vec<Entry> = Vec::new();
    let mut dropped = 0;
    for hunter in &HUNTERS {
        let mut hunter = hunter.lock();
        hunter.close_window(period_ns);
        dropped += hunter.dropped;
        for entry in hunter.table.iter().filter(|e| e.pc != 0) {
            match merged.iter_mut().find(|m| m.pc == entry.pc) {
                Some(m) => {
                    m.samples += entry.samples;
                    m.longest_ns = m.longest_ns.max(entry.longest_ns);
                }
                None => merged.push(*entry),
            }
        }
    }
    let samples: u64 = merged.iter().map(|e| e.samples).sum();
    log::info!(
        "irqsoff: {samples} samples with IRQs masked and an in-band IRQ waiting, at {} PCs ({dropped} dropped: table full)",
        merged.len()
    );
    merged.sort_unstable_by(|a, b| b.longest_ns.cmp(&a.longest_ns).then(b.samples.cmp(&a.samples)));
    for entry in merged.iter().take(TOP) {
        rt::print(format_args!(
            "IRQSOFF| pc {:#x} samples {} longest_ns {}\n",
            entry.pc, entry.samples, entry.longest_ns
        ));
    }
}
