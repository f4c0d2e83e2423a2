//! The oob scheduler on the hardware: the glue between the portable [`oob::OobCore`] and
//! the CPUs, their EL2 timers and the GIC.
//!
//! One [`OobCore`] holds the scheduling state of every CPU under one IRQ-safe lock (like
//! Xenomai's nklock). Every entry point follows the same pattern: take the lock, read the
//! clock, call the core, then apply its effects — program this CPU's EL2 timer (CNTHP),
//! kick remote CPUs with the oob IPI, and switch context if this CPU's best runnable context
//! changed. Each CPU's in-band stage is the context its boot flow runs in (an idle loop for
//! now, the Linux vCPU later); it has no thread control block, only a saved context.
//!
//! Switching never happens inside an interrupt handler: a handler lets the core choose the
//! CPU's next context under the lock it holds anyway (one decision per wake-up), and
//! [`irq_exit`] switches to it after every interrupt was acknowledged and ended, on the way
//! back to the interrupted context (whose registers the vector saved on its stack). The
//! decision stays valid until then: whoever changes the CPU's run queue later marks it for
//! rescheduling (or kicks it), and [`irq_exit`] decides again.
//!
//! Submodules: [`threads`] (stacks, start, exit, join), [`timers`] (user timers and what
//! their expiry does), [`clock`] (the monotonic clock).

pub mod clock;
pub mod threads;
pub mod timers;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use oob::{EffectMasks, Error, Instant, OobCore, SwitchTo, ThreadId, TickRescheduled};

use crate::arch::context::{SavedContext, switch_context};
use crate::arch::irq_lock::{IrqSpinLock, IrqSpinLockGuard};
use crate::arch::{mask_irqs, restore_irqs};
use crate::{gic, hwtimer, irq};
use threads::OobThread;
use timers::TimerSlot;

/// The SGI the core uses as its oob IPI ("kick"): reprogram your timer, reschedule.
pub const KICK_SGI: u32 = 0;

/// The scheduler state shared by all CPUs.
pub(crate) struct Glue {
    /// The portable scheduler.
    pub(crate) core: OobCore,
    /// Thread control blocks by `ThreadId::index`.
    threads: Vec<Option<Box<OobThread>>>,
    /// Exited threads whose stacks may still be in use until their CPU switched away (boxed:
    /// their saved context must not move).
    #[allow(clippy::vec_box)]
    zombies: Vec<Box<OobThread>>,
    /// User timers by token.
    pub(crate) timers: Vec<Option<TimerSlot>>,
}

/// The scheduler, once [`init`] ran.
pub(crate) static GLUE: IrqSpinLock<Option<Glue>> = IrqSpinLock::new(None);

/// Per-CPU state that lives outside the lock. Aligned to 256 bytes (its size, a power of
/// two): a CPU's entry is then one shifted add from the table, not a multiply, at each of the
/// several places of the interrupt path that find it.
#[repr(align(256))]
struct PerCpu {
    /// The saved context of the in-band stage while an oob thread runs.
    inband: UnsafeCell<SavedContext>,
    /// The running oob thread; null while the in-band stage runs.
    current: AtomicPtr<OobThread>,
    /// The context the core last chose for this CPU (null: the in-band stage), which it
    /// switches to at the next opportunity if it is not `current`. Written under the lock,
    /// by this CPU only.
    next: AtomicPtr<OobThread>,
    /// Set when the CPU must reschedule at the next opportunity.
    need_resched: AtomicBool,
    /// Interrupt nesting depth (no switching inside a handler). Written only by its own CPU,
    /// with IRQs masked, hence plain loads and stores (see [`irq_enter`]).
    irq_depth: AtomicU32,
    /// MPIDR affinity, to address the kick.
    mpidr: AtomicU64,
    /// When an oob context last took the CPU from the in-band stage (counter).
    oob_since: AtomicU64,
}

// SAFETY: `inband` is only touched by its own CPU, with IRQs masked, through `switch_context`.
unsafe impl Sync for PerCpu {}

const _: () = assert!(core::mem::size_of::<PerCpu>() == 256, "PerCpu outgrew its alignment: raise both");

static CPUS: [PerCpu; oob::MAX_CPUS] = [const {
    PerCpu {
        inband: UnsafeCell::new(SavedContext::running()),
        current: AtomicPtr::new(core::ptr::null_mut()),
        next: AtomicPtr::new(core::ptr::null_mut()),
        need_resched: AtomicBool::new(false),
        irq_depth: AtomicU32::new(0),
        mpidr: AtomicU64::new(0),
        oob_since: AtomicU64::new(0),
    }
}; oob::MAX_CPUS];

/// Per CPU, the PMU cycle counter ([`crate::cycles`]) just before the last `switch_context`
/// call and just after a context resumed from one: the raw switch cost, and the instant a
/// woken thread got the CPU back, for the benchmark (two cycle-counter reads per switch, no
/// barrier; meaningful only where the benchmark started the counter).
static SWITCH_STAMPS: [[AtomicU64; 2]; oob::MAX_CPUS] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; oob::MAX_CPUS];

/// The cycle-counter values (before the switch away, after the switch back) of `cpu`'s last
/// context switch; see [`SWITCH_STAMPS`].
pub fn switch_stamps(cpu: usize) -> Option<(u64, u64)> {
    let stamps = SWITCH_STAMPS.get(cpu)?;
    Some((stamps[0].load(Ordering::Relaxed), stamps[1].load(Ordering::Relaxed)))
}

/// Counter PPI of the EL2 physical timer, set by [`init`].
static TIMER_INTID: AtomicU32 = AtomicU32::new(0);

/// Creates the scheduler for `mpidrs.len()` CPUs (logical order) and claims the EL2 timer
/// interrupt `timer_intid` and the kick SGI. Call once on the boot CPU, before
/// [`cpu_online`] on any CPU.
pub fn init(mpidrs: &[u64], timer_intid: u32, frequency: crate::clock::CounterFrequency) -> Result<(), Error> {
    let core = OobCore::new(mpidrs.len())?;
    for (cpu, &mpidr) in mpidrs.iter().enumerate() {
        CPUS[cpu].mpidr.store(mpidr, Ordering::Relaxed);
    }
    clock::init(frequency);
    TIMER_INTID.store(timer_intid, Ordering::Relaxed);
    *GLUE.lock() = Some(Glue { core, threads: Vec::new(), zombies: Vec::new(), timers: Vec::new() });
    let claimed = irq::claim(timer_intid, on_timer_interrupt).and_then(|()| irq::claim(KICK_SGI, on_kick));
    claimed.map_err(|_| Error::InvalidCpu)
}

/// Enables the calling CPU's timer interrupt and kick at oob priority. Call on every CPU
/// after [`init`]; IRQs stay masked until the CPU's in-band stage unmasks them.
pub fn cpu_online(cpu: usize) -> Result<(), gic::GicError> {
    hwtimer::disarm();
    gic::enable_private(TIMER_INTID.load(Ordering::Relaxed), cpu, gic::OOB_PRIORITY, arm_gic::Trigger::Level)?;
    gic::enable_private(KICK_SGI, cpu, gic::OOB_PRIORITY, arm_gic::Trigger::Edge)
}

/// The oob thread running on this CPU, `None` in the in-band stage.
pub fn current_thread() -> Option<ThreadId> {
    let thread = CPUS[boot::cpu_index()].current.load(Ordering::Relaxed);
    // SAFETY: a current thread's control block lives until its CPU switched away from it.
    (!thread.is_null()).then(|| unsafe { (*thread).id })
}

/// Whether the caller runs inside an interrupt handler.
pub fn in_irq() -> bool {
    CPUS[boot::cpu_index()].irq_depth.load(Ordering::Relaxed) > 0
}

/// Locks the scheduler; `Err(NotRunning)` until [`init`] ran.
pub(crate) fn lock() -> Result<IrqSpinLockGuard<'static, Option<Glue>>, Error> {
    let guard = GLUE.lock();
    if guard.is_none() {
        return Err(Error::NotRunning);
    }
    Ok(guard)
}

/// Runs `f` on the core under the lock, applies the effects, and reschedules this CPU if
/// needed (unless in an interrupt handler, where [`irq_exit`] does it).
///
/// Two holds of the lock, not one: the first for `f` and its effects, the second (only when
/// they marked this CPU for rescheduling) for the decision and the switch. In between the
/// caller's IRQ mask is back, so an interrupt raised during the operation is taken before the
/// switch instead of after it. This is correct because nothing of the first hold waits for
/// the second:
/// - the core is consistent at each unlock: its current context of this CPU is still the
///   caller (no decision was taken), which may be blocked, exited or outranked by then;
/// - whatever runs in between (a handler on this CPU, another CPU) changes the run queues
///   only under the lock, and a change for this CPU marks it for rescheduling or kicks it;
/// - the decision ([`decide`]) is not a delta of `f`: it picks this CPU's best runnable
///   context from the core's state at the time it runs. If a handler in between already
///   decided (and [`irq_exit`] switched away, e.g. from a caller that blocked), it cleared
///   the mark, and the caller finds nothing left to do when it runs again; if not, the
///   second hold decides on everything done up to then.
///
/// The CPU is looked up again after the gap: a caller switched away in it may resume on
/// another CPU.
pub(crate) fn with_core<T>(f: impl FnOnce(&mut Glue, Instant) -> Result<T, Error>) -> Result<T, Error> {
    let result = {
        let mut guard = lock()?;
        let glue = guard.as_mut().ok_or(Error::NotRunning)?;
        let result = f(glue, clock::now());
        apply_effects(glue, boot::cpu_index());
        result
    };
    // Unlocked, and the caller's IRQ mask is back. A look without the lock (in a handler,
    // where `irq_exit` reschedules, nothing to do): the mark is written only by its own
    // CPU, and if the caller was switched out and in since it found its CPU, the mark of its
    // new CPU is clear (whatever switched to it decided with the mark cleared, and only this
    // context or a handler, which consumes it at `irq_exit`, sets it again); a stale
    // positive just takes the lock for nothing.
    let state = &CPUS[boot::cpu_index()];
    if state.need_resched.load(Ordering::Relaxed) && state.irq_depth.load(Ordering::Relaxed) == 0 {
        reschedule_if_needed(lock()?, boot::cpu_index());
    }
    result
}

/// Switches away if this CPU is marked for rescheduling and not inside a handler; consumes
/// (unlocks) the guard either way.
pub(crate) fn reschedule_if_needed(guard: IrqSpinLockGuard<'static, Option<Glue>>, cpu: usize) {
    let state = &CPUS[cpu];
    if state.need_resched.load(Ordering::Relaxed) && state.irq_depth.load(Ordering::Relaxed) == 0 {
        schedule(guard, cpu);
    }
}

/// Applies what the core asked for after an entry point: this CPU's timer is programmed
/// and its reschedule noted; remote CPUs are kicked.
pub(crate) fn apply_effects(glue: &mut Glue, cpu: usize) {
    let (masks, deadline) = glue.core.effect_masks_for(cpu);
    apply_masks(cpu, masks, deadline);
}

/// [`apply_effects`] of drained effects: `deadline` is this CPU's new hardware deadline when
/// `reprogram` contains it.
#[inline(always)]
fn apply_masks(cpu: usize, EffectMasks { resched, reprogram }: EffectMasks, deadline: Option<Instant>) {
    if reprogram.contains(cpu) {
        program_timer(deadline);
    }
    if resched.contains(cpu) {
        CPUS[cpu].need_resched.store(true, Ordering::Relaxed);
    }
    let mut kick = resched.union(reprogram);
    kick.remove(cpu);
    if !kick.is_empty() {
        kick_cpus(kick);
    }
}

/// Sends the kick to every CPU of `targets` (out of line: remote effects are the rare case
/// on the hot paths).
#[cold]
#[inline(never)]
fn kick_cpus(targets: oob::CpuMask) {
    for target in targets.iter() {
        if let Some(state) = CPUS.get(target) {
            gic::send_sgi(KICK_SGI, state.mpidr.load(Ordering::Relaxed), target);
        }
    }
}

/// Programs this CPU's EL2 timer for `deadline`, or disarms it.
#[inline(always)]
fn program_timer(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => hwtimer::arm(clock::to_ticks(deadline)),
        None => hwtimer::disarm(),
    }
}

/// Switches this CPU to its best runnable context, if that is not the current one.
///
/// Consumes the guard. Two masked stretches, not one: the decision under the lock, then,
/// after the lock's release has given the caller its IRQ mask back, the switch with IRQs
/// masked again (the caller's state restored when this context runs again). An interrupt
/// raised during the decision is taken in between. The choice recorded in
/// [`PerCpu::next`] stays right across the gap, as it does from an interrupt handler's
/// choice to [`irq_exit`]: whatever changes this CPU's run queue in it does so under the
/// lock and marks the CPU for rescheduling (a handler here, which [`irq_exit`] then acts on:
/// it decides again and switches itself) or kicks it (another CPU; the kick is taken at the
/// latest when the next context unmasks). If a handler switched this context away in the
/// gap, whatever switches it back recorded it as its CPU's choice, so [`switch_to_next`]
/// finds nothing to do; the CPU is looked up again, as the context may resume on another.
/// A thread that exited or blocked keeps its stack until it is switched out: its context
/// stays claimed (on the CPU) until then, and the core never chooses it again.
fn schedule(mut guard: IrqSpinLockGuard<'static, Option<Glue>>, cpu: usize) {
    let Some(glue) = guard.as_mut() else { return };
    decide(glue, cpu, clock::now());
    drop(guard);
    let irqs = mask_irqs();
    switch_to_next(boot::cpu_index());
    restore_irqs(irqs);
}

/// Under the lock: lets the core choose this CPU's context at `now`, records the choice in
/// [`PerCpu::next`] (for [`switch_to_next`] once the lock is released), then applies the
/// effects of everything done under the lock — once, choice included.
fn decide(glue: &mut Glue, cpu: usize, now: Instant) {
    CPUS[cpu].need_resched.store(false, Ordering::Relaxed);
    match glue.core.reschedule_to(cpu, now) {
        Ok(None) => {}
        Ok(Some(to)) => record_next(cpu, to),
        Err(e) => log::error!("cpu {cpu}: rescheduling refused: {e}"),
    }
    apply_effects(glue, cpu);
}

/// Records the context the core just switched `cpu` to, for [`switch_to_next`].
#[inline]
fn record_next(cpu: usize, to: SwitchTo) {
    let next: *mut OobThread = match to {
        SwitchTo::InBand => core::ptr::null_mut(),
        // The token of every thread is the address of its control block (see `spawn`).
        SwitchTo::Thread(block) => block as *mut OobThread,
    };
    CPUS[cpu].next.store(next, Ordering::Relaxed);
}

/// Switches this CPU to the context the core chose for it ([`PerCpu::next`]) if that is not
/// the running one. Call with IRQs masked and the lock released; returns when the calling
/// context runs again (or at once if there is nothing to switch).
fn switch_to_next(cpu: usize) {
    let state = &CPUS[cpu];
    let previous = state.current.load(Ordering::Relaxed);
    let next = state.next.load(Ordering::Relaxed);
    if previous == next {
        return;
    }
    if !previous.is_null() {
        // SAFETY: the previous thread's block lives until it is switched away (now).
        unsafe { (*previous).check_stack() };
    }
    let context_of = |thread: *mut OobThread| -> *mut SavedContext {
        if thread.is_null() {
            state.inband.get()
        } else {
            // SAFETY: a thread block is boxed and lives until its CPU switched away from it.
            unsafe { &raw mut (*thread).context }
        }
    };
    let (previous_context, next_context) = (context_of(previous), context_of(next));
    // SAFETY: `next_context` is a live context of this CPU's chosen runnable.
    unsafe { (*next_context).claim() };
    let now = hwtimer::counter_unordered();
    // The in-band stage's interrupts wait in the GIC while oob contexts hold the CPU.
    if previous.is_null() {
        gic::hold_inband();
        state.oob_since.store(now, Ordering::Relaxed);
    } else if next.is_null() {
        irq::leave_oob_stage(cpu, now.wrapping_sub(state.oob_since.load(Ordering::Relaxed)));
    }
    state.current.store(next, Ordering::Relaxed);
    SWITCH_STAMPS[cpu][0].store(crate::cycles::now(), Ordering::Relaxed);
    // SAFETY: IRQs are masked; `previous_context` is the running context, `next_context` was
    // claimed and is saved or fresh; both outlive the switch (zombies are reaped only once
    // released).
    unsafe { switch_context(previous_context, next_context) };
    // Back on this context's stack, possibly on another CPU after a migration.
    SWITCH_STAMPS[boot::cpu_index()][1].store(crate::cycles::now(), Ordering::Relaxed);
}

/// Called by the interrupt entry of CPU `cpu` (the caller's) before the handlers of one
/// exception, with IRQs masked.
pub fn irq_enter(cpu: usize) {
    // A plain increment, no atomic read-modify-write: only this CPU writes its depth, always
    // with IRQs masked (interrupt entry and exit), so no other write can come in between.
    let depth = &CPUS[cpu].irq_depth;
    depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Called by the interrupt entry of CPU `cpu` (the caller's) after every interrupt was
/// handled and ended, with IRQs masked: switches to the context the handlers chose, deciding
/// again first if something changed this CPU's run queue after that choice. Inline: the
/// interrupt entry's tail.
#[inline(always)]
pub fn irq_exit(cpu: usize) {
    let state = &CPUS[cpu];
    // A plain decrement, like the increment of `irq_enter`; the outermost exit (the common
    // case) stores 0 without computing it.
    let depth = state.irq_depth.load(Ordering::Relaxed);
    if depth != 1 {
        state.irq_depth.store(depth.saturating_sub(1), Ordering::Relaxed);
        return;
    }
    state.irq_depth.store(0, Ordering::Relaxed);
    if state.need_resched.load(Ordering::Relaxed)
        && let Ok(mut guard) = lock()
        && let Some(glue) = guard.as_mut()
    {
        decide(glue, cpu, clock::now());
    }
    switch_to_next(cpu);
}

/// The EL2 timer interrupt: fire what is due, run IRQ-context callbacks, wake threads.
fn on_timer_interrupt(_intid: u32) {
    let cpu = boot::cpu_index();
    // An interrupt handler runs with IRQs masked: the lock need not touch the mask.
    let mut guard = GLUE.lock_irqs_masked();
    if guard.is_none() {
        hwtimer::disarm();
        return;
    }
    let Some(glue) = guard.as_mut() else { return };
    // No barrier: the exception entry that brought the interrupt is context synchronizing.
    let now = clock::now_unordered();
    match glue.core.on_timer_tick_with(cpu, now, ApplyTick(cpu)) {
        Ok(Some(())) => {}
        Ok(None) => {
            for index in 0..glue.core.fired_timers().len() {
                let expiry = glue.core.fired_timers()[index];
                timers::expired(glue, &expiry, now);
            }
            // Choose this CPU's next context now, under this lock, and apply all effects once.
            decide(glue, cpu, now);
        }
        // Not a CPU of the core: `decide` reports it.
        Err(_) => decide(glue, cpu, now),
    }
}

/// What the timer interrupt of CPU `.0` does with the core's choice for it (the common case,
/// in one call: timeouts fired, this CPU's next context chosen, the effects drained). Inline
/// in each of the core's exits, so the hot one hands its results over in registers.
struct ApplyTick(usize);

impl TickRescheduled for ApplyTick {
    type Output = ();
    #[inline(always)]
    fn rescheduled(self, switch: Option<SwitchTo>, masks: EffectMasks, deadline: Option<Instant>) {
        let cpu = self.0;
        CPUS[cpu].need_resched.store(false, Ordering::Relaxed);
        if let Some(to) = switch {
            record_next(cpu, to);
        }
        apply_masks(cpu, masks, deadline);
    }
}

/// The kick: another CPU changed this CPU's timer deadline or run queue.
fn on_kick(_intid: u32) {
    let cpu = boot::cpu_index();
    let Ok(mut guard) = lock() else { return };
    let Some(glue) = guard.as_mut() else { return };
    program_timer(glue.core.hardware_deadline(cpu).ok().flatten());
    decide(glue, cpu, clock::now());
}

/// How a call that may block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited<T> {
    /// It completed without blocking.
    Done(T),
    /// The thread blocked and was woken for this reason.
    Woken(oob::WakeReason),
}

/// Runs a call that may block the calling oob thread; if it blocked, switches away and
/// returns the wake-up reason once the thread runs again.
pub(crate) fn wait<T>(
    f: impl FnOnce(&mut Glue, ThreadId, Instant) -> Result<oob::Wait<T>, Error>,
) -> Result<Waited<T>, Error> {
    let me = current_thread().ok_or(Error::NotRunning)?;
    if in_irq() {
        return Err(Error::NotRunning);
    }
    match with_core(|glue, now| f(glue, me, now))? {
        oob::Wait::Done(value) => Ok(Waited::Done(value)),
        oob::Wait::Blocked => {
            let reason = with_core(|glue, _| glue.core.take_wake_reason(me))?;
            // A blocked thread runs again only once its wait ended, with a reason.
            Ok(Waited::Woken(reason.unwrap_or(oob::WakeReason::Deleted)))
        }
    }
}
