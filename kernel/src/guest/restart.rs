//! Restarting the in-band guest while the oob side runs on (`companion.guest.restart=on`, the
//! default for a Linux guest): PSCI `SYSTEM_RESET`/`SYSTEM_RESET2` (a `reboot`, or a Linux
//! panic with `panic=-1`) and the hang watchdog ([`super::watchdog`]) end the guest and boot
//! it again from a pristine copy of its kernel and initramfs.
//!
//! The sequence:
//!
//! 1. [`request`] (on the CPU that saw the cause): checks the limit
//!    (`companion.guest.restart.limit=N` restarts per minute, default
//!    [`DEFAULT_LIMIT_PER_MINUTE`]; beyond it, or with restarts off, the run fails with
//!    exit code 106), marks the restart requested and kicks every vCPU's CPU.
//! 2. Each CPU, on its next way back into its vCPU ([`leave_if_requested`], called from the
//!    trap and IRQ exits and from a stopped vCPU's wait), leaves guest context for good
//!    ([`leave_guest`]): its list registers are taken back (`virq::take_back`: nothing stays
//!    listed, a physical activation the guest left active is deactivated), its EL1 timers are
//!    stopped, and its stack is cut back to where it first entered a vCPU; a secondary CPU
//!    goes back to its idle loop, waiting for the new guest's `CPU_ON`.
//! 3. CPU 0, with IRQs unmasked (oob work preempts every step), waits for the others, tears
//!    the vGIC down (`virq::teardown`: what was pending for the dead guest is counted
//!    discarded, every physical activation given back, the passed-through lines masked),
//!    quiesces the passed-through devices themselves ([`super::quiesce`]: interrupt enables
//!    off, latched status cleared), resets the console model and the PSCI model, and has the guest's loader
//!    ([`super::linux::reload`]) scrub and reload its RAM in chunks; then it enters vCPU 0.
//!
//! A Linux guest cannot say why it reset (a `reboot` and a panic both end in `SYSTEM_RESET`):
//! the cause printed is the call, `reset`, or `watchdog`.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTV_CTL_EL0, Writeable};

use crate::power;

/// Restarts allowed within any minute unless `companion.guest.restart.limit` says otherwise.
pub const DEFAULT_LIMIT_PER_MINUTE: usize = 3;
/// Longest time CPU 0 waits for the other CPUs to leave their vCPUs before it gives up and
/// fails the run (a CPU that never exits its guest is a core bug, not the guest's doing).
const LEAVE_TIMEOUT_NS: u64 = 1_000_000_000;
/// How long CPU 0 waits for the other CPUs to leave their vCPUs before it kicks them again.
const REKICK_NS: u64 = 50_000;
/// Most restarts the limit remembers (the limit is at most this).
const MAX_LIMIT: usize = 16;
/// One minute in ns.
const MINUTE_NS: u64 = 60_000_000_000;

/// Why the guest restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cause {
    /// PSCI `SYSTEM_RESET` or `SYSTEM_RESET2` (a reboot, or a panic with `panic=-1`).
    Reset = 1,
    /// The hang watchdog fired ([`super::watchdog`]).
    Watchdog = 2,
}

impl Cause {
    fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Watchdog => "watchdog",
        }
    }

    fn from_u8(value: u8) -> Self {
        if value == Self::Watchdog as u8 { Self::Watchdog } else { Self::Reset }
    }
}

/// Restarts are allowed (`companion.guest.restart`).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The limit per minute.
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT_PER_MINUTE);
/// A restart is requested and not yet done: every vCPU leaves its guest.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The cause of the requested restart.
static CAUSE: AtomicU8 = AtomicU8::new(0);
/// When it was requested (ns of the oob clock).
static REQUESTED_AT: AtomicU64 = AtomicU64::new(0);
/// Restarts done so far.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// When the last ones were requested, a ring of [`MAX_LIMIT`] (ns; 0: none).
static RECENT: [AtomicU64; MAX_LIMIT] = [const { AtomicU64::new(0) }; MAX_LIMIT];
/// Per CPU: the stack pointer when it first entered a vCPU (0: never), where
/// [`leave_guest`] cuts its stack back to.
static ENTRY_SP: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
/// Per CPU: it runs (or has stopped in) a vCPU of the current guest.
static IN_GUEST: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];
/// Per CPU: its MPIDR, to kick it.
static MPIDR: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
/// The run ends instead of restarting (the watchdog found a hung guest it may not restart).
static ENDING: AtomicBool = AtomicBool::new(false);
/// The restart whose first guest console line is awaited (0: none), and when it began.
static AWAITING_LINE: AtomicUsize = AtomicUsize::new(0);

/// Reads `companion.guest.restart=on|off` (default on) and `companion.guest.restart.limit=N`
/// (1 to 16 per minute); `Err` names a bad value. Call once before the guest boots.
pub fn configure(setting: Option<&str>, limit: Option<&str>, mpidrs: &[u64]) -> Result<bool, &'static str> {
    let enabled = match setting {
        None | Some("on") => true,
        Some("off") => false,
        Some(_) => return Err("companion.guest.restart must be on or off"),
    };
    let limit = match limit.map(str::parse::<usize>) {
        None => DEFAULT_LIMIT_PER_MINUTE,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err("companion.guest.restart.limit must be within 1..=16"),
    };
    for (slot, &mpidr) in MPIDR.iter().zip(mpidrs) {
        slot.store(mpidr, Ordering::Relaxed);
    }
    LIMIT.store(limit, Ordering::Relaxed);
    ENABLED.store(enabled, Ordering::Release);
    Ok(enabled)
}

/// Turns restarts off (the guest's loader found no room for the pristine copy).
pub fn disable() {
    ENABLED.store(false, Ordering::Release);
}

/// The limit of restarts per minute.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Whether restarts are on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Whether a restart is under way (the guest is being torn down or reloaded).
pub fn in_progress() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// Asks for a restart for `cause`. Returns `false` (after recording the run's failure, exit
/// code 106) when restarts are off or the limit per minute is reached: the caller ends the
/// run. A second request while one is under way is merged into it.
pub fn request(cause: Cause) -> bool {
    if !enabled() {
        log::error!("guest: {} while restarts are off (companion.guest.restart=off); the run fails", cause.name());
        power::record_failure(power::EXIT_GUEST_RESET);
        return false;
    }
    if REQUESTED.swap(true, Ordering::AcqRel) {
        return true;
    }
    let now = crate::rt::now().as_nanos();
    let limit = LIMIT.load(Ordering::Relaxed);
    let within_minute = RECENT.iter().filter(|at| {
        let at = at.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < MINUTE_NS
    });
    if within_minute.count() >= limit {
        log::error!("guest: {} with {limit} restarts within the last minute already (the limit); the run fails", cause.name());
        power::record_failure(power::EXIT_GUEST_RESET);
        REQUESTED.store(false, Ordering::Release);
        return false;
    }
    let number = COUNT.load(Ordering::Relaxed);
    RECENT[number % MAX_LIMIT].store(now.max(1), Ordering::Relaxed);
    CAUSE.store(cause as u8, Ordering::Relaxed);
    REQUESTED_AT.store(now, Ordering::Relaxed);
    log::warn!("guest: restarting (restart {}, cause {}, at {} ms)", number + 1, cause.name(), now / 1_000_000);
    // The background latency test's figures over the boot that ends here (the first boot, or
    // the restart before it and the boot it reloaded), so a run compares its boots after a
    // restart with its first one (the last boot's phase: `latmus: last phase: …` at the end).
    if let Some(phase) = crate::latmus::end_phase() {
        log::info!(
            "guest: restart {}: the boot before it: oob thread max {} ns, oob irq max {} ns, {} samples",
            number + 1,
            phase.thread_max_ns,
            phase.irq_max_ns,
            phase.samples
        );
    }
    kick_vcpus();
    true
}

/// Makes every other CPU running a vCPU exit it once (the oob kick).
pub fn kick_vcpus() {
    let this = boot::cpu_index();
    for (cpu, in_guest) in IN_GUEST.iter().enumerate() {
        if cpu != this && in_guest.load(Ordering::Acquire) {
            crate::gic::send_sgi(crate::sched::KICK_SGI, MPIDR[cpu].load(Ordering::Relaxed), cpu);
        }
    }
}

/// From an oob context that found the guest hung and may not restart it (the failure is
/// recorded): every vCPU leaves the guest as for a restart, and CPU 0 ends the run instead.
pub fn end_run_from_oob() {
    ENDING.store(true, Ordering::Release);
    REQUESTED.store(true, Ordering::Release);
    kick_vcpus();
}

/// This CPU enters its vCPU (from [`super::enter_vcpu`]): remembers, the first time, the
/// stack pointer [`leave_guest`] cuts back to.
pub(crate) fn entering(sp: u64) {
    let cpu = boot::cpu_index();
    if let Some(slot) = ENTRY_SP.get(cpu) {
        let _ = slot.compare_exchange(0, sp, Ordering::Relaxed, Ordering::Relaxed);
    }
    if let Some(flag) = IN_GUEST.get(cpu) {
        flag.store(true, Ordering::Release);
    }
}

/// On the way back into this CPU's vCPU (IRQs masked, no lock held, interrupt depth 0):
/// leaves the guest for good if a restart is requested.
#[inline]
pub fn leave_if_requested() {
    if REQUESTED.load(Ordering::Acquire) && IN_GUEST.get(boot::cpu_index()).is_some_and(|f| f.load(Ordering::Acquire)) {
        leave_guest();
    }
}

/// Leaves guest context on this CPU for good (a restart): list registers taken back, EL1
/// timers stopped, stage 2 off; then the stack is cut back to where this CPU first entered a
/// vCPU and it goes on in [`after_leave`]. Call with IRQs masked, holding no lock, from the
/// CPU's in-band context at interrupt depth 0 (its trap or IRQ exit): nothing on the stack
/// below the cut is used again.
pub fn leave_guest() -> ! {
    let cpu = boot::cpu_index();
    let _ = crate::arch::mask_irqs();
    super::virq::take_back();
    // The dead guest's timers would keep firing into a vGIC that no longer has them enabled.
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    crate::traps::route_interrupts_to_el2();
    let sp = ENTRY_SP.get(cpu).map_or(0, |slot| slot.load(Ordering::Relaxed));
    if let Some(flag) = IN_GUEST.get(cpu) {
        flag.store(false, Ordering::Release);
    }
    if sp == 0 {
        // Never entered through `enter_vcpu` (cannot happen: IN_GUEST is set there).
        after_leave(cpu)
    }
    // SAFETY: `sp` is this CPU's stack pointer when it first entered its vCPU, inside its
    // in-band stack; everything below it belongs to frames that never return (the entry,
    // the guest's traps), so cutting the stack there and jumping to a function that never
    // returns loses nothing still in use. IRQs are masked.
    unsafe {
        core::arch::asm!(
            "mov sp, {sp}",
            "b {after}",
            sp = in(reg) sp,
            after = sym after_leave_entry,
            in("x0") cpu,
            options(noreturn),
        )
    }
}

/// [`after_leave`] as the assembly jump's target.
extern "C" fn after_leave_entry(cpu: usize) -> ! {
    after_leave(cpu)
}

/// A CPU out of guest context: a secondary waits for the new guest's `CPU_ON`; CPU 0 does the
/// restart and boots the guest again.
fn after_leave(cpu: usize) -> ! {
    if cpu != 0 {
        super::vcpus::idle(cpu)
    }
    restart_on_this_cpu()
}

/// CPU 0: waits for every other CPU to leave its vCPU, tears down and reloads the guest, and
/// enters it again. IRQs unmasked throughout except the final entry.
fn restart_on_this_cpu() -> ! {
    crate::arch::unmask_irqs();
    let started = crate::rt::now().as_nanos();
    super::vcpus::forbid_starts();
    loop {
        let left = IN_GUEST.iter().skip(1).all(|flag| !flag.load(Ordering::Acquire));
        if left {
            break;
        }
        if crate::rt::now().as_nanos().saturating_sub(started) > LEAVE_TIMEOUT_NS {
            log::error!("guest: restart: a CPU did not leave its vCPU within 1 s; the run fails");
            power::record_failure(power::EXIT_GUEST_RESET);
            super::linux::end_run()
        }
        for (cpu, flag) in IN_GUEST.iter().enumerate().skip(1) {
            if flag.load(Ordering::Acquire) {
                crate::gic::send_sgi(crate::sched::KICK_SGI, MPIDR[cpu].load(Ordering::Relaxed), cpu);
            }
        }
        crate::console::drain();
        // Not WFI: nothing may wake this CPU for tens of milliseconds (no guest timer, maybe no
        // oob timer), and a CPU that consumed its kick in the core just before the request
        // (with IRQs unmasked for its console drain) needs another one. YIELD, not
        // `spin_loop` (an ISB on aarch64): under QEMU's round-robin TCG (`-icount`) a YIELD
        // hands the host thread to the other vCPUs at once, where a plain spin kept it until
        // the next timer deadline, up to 20 ms.
        let kicked = crate::rt::now().as_nanos();
        while crate::rt::now().as_nanos().saturating_sub(kicked) < REKICK_NS
            && IN_GUEST.iter().skip(1).any(|flag| flag.load(Ordering::Acquire))
        {
            // SAFETY: YIELD is a hint with no architectural effect.
            unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
        }
    }
    let out = crate::rt::now().as_nanos();
    // Again, now that no vCPU runs: a CPU_ON the dead guest made meanwhile is forgotten too.
    super::vcpus::forbid_starts();
    let teardown = super::virq::teardown();
    if ENDING.load(Ordering::Acquire) {
        super::linux::end_run()
    }
    let number = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    // Nothing allocated may stay in scope here: this function never returns, so it would
    // never be dropped (a leak per restart).
    let quiesced = super::quiesce::passed_devices();
    if !quiesced.is_empty() {
        log::info!("guest: restart {number}: passed-through devices quiesced: {}", super::quiesce::Names(quiesced));
    }
    let cause = Cause::from_u8(CAUSE.load(Ordering::Relaxed));
    let reload = super::linux::reload(number);
    let now = crate::rt::now().as_nanos();
    match reload {
        Ok(state) => {
            log::info!(
                "guest: restart {number} ({}): vCPUs out in {} us, {} interrupts discarded, {} physical activations given back, guest reloaded in {} ms, core heap {} bytes in use",
                cause.name(),
                out.saturating_sub(REQUESTED_AT.load(Ordering::Relaxed)) / 1000,
                teardown.discarded,
                teardown.released,
                now.saturating_sub(out) / 1_000_000,
                crate::heap::in_use()
            );
            AWAITING_LINE.store(number, Ordering::Relaxed);
            REQUESTED.store(false, Ordering::Release);
            super::linux::enter_again(state)
        }
        Err(e) => {
            log::error!("guest: restart {number}: {e}; the run fails");
            power::record_failure(power::EXIT_GUEST_RESET);
            super::linux::end_run()
        }
    }
}

/// The guest wrote to its console: the first time after a restart, the core logs how long
/// the guest took from the restart request to its first console output.
pub fn guest_console_output() {
    let number = AWAITING_LINE.load(Ordering::Relaxed);
    if number == 0 || super::console::tx_bytes() == 0 || AWAITING_LINE.compare_exchange(number, 0, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    let now = crate::rt::now().as_nanos();
    let at = REQUESTED_AT.load(Ordering::Relaxed);
    log::info!(
        "guest: restart {number}: cause {}, at {} ms, first guest console output {} ms later",
        Cause::from_u8(CAUSE.load(Ordering::Relaxed)).name(),
        at / 1_000_000,
        now.saturating_sub(at) / 1_000_000
    );
}

/// How many restarts were done.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}
