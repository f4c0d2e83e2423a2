//! Ending a run: the verdict line, then PSCI `SYSTEM_OFF` (otherwise parking the CPU).
//!
//! The verdict travels only on the core's console, never through QEMU's exit status: the
//! core prints `verdict: PASS (exit code 0, nonce HEX)` (or `FAIL` with the reason's code),
//! where HEX is the per-run nonce the harness gave in the core's own boot arguments
//! (`companion.nonce=`). The guest never sees those arguments, and its console lines are
//! marked (see [`crate::guest::console`]), so it can neither print nor forge this line. The
//! core never uses semihosting, which the harness leaves disabled.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use platform::PsciConduit;

/// Exit code of a run that passed.
pub const EXIT_SUCCESS: u32 = 0;
/// Exit code after a panic.
pub const EXIT_PANIC: u32 = 101;
/// Exit code after an unexpected exception.
pub const EXIT_EXCEPTION: u32 = 102;
/// Exit code after a failed check during boot.
pub const EXIT_BOOT_FAILURE: u32 = 103;
/// Exit code when the loader entered the image at an EL other than 2.
pub const EXIT_WRONG_EL: u32 = 104;
/// Exit code when the latency test missed periods (a context stopped sampling).
pub const EXIT_SAMPLING_GAP: u32 = 105;
/// Exit code when the guest reset or hung and could not be restarted (restarts off, or over
/// their limit per minute).
pub const EXIT_GUEST_RESET: u32 = 106;

/// The longest nonce kept, in hexadecimal digits.
pub const NONCE_MAX_DIGITS: usize = 64;

/// 0: unknown, 1: SMC, 2: none usable.
static PSCI: AtomicU8 = AtomicU8::new(0);
/// The run's nonce (`companion.nonce=`), [`NONCE_LEN`] ASCII hex digits.
static NONCE: [AtomicU8; NONCE_MAX_DIGITS] = [const { AtomicU8::new(0) }; NONCE_MAX_DIGITS];
static NONCE_LEN: AtomicUsize = AtomicUsize::new(0);
/// The first failure recorded during the run ([`record_failure`]), 0 if none.
static FAILURE: AtomicU8 = AtomicU8::new(0);

/// Records the PSCI conduit found in the device tree for [`exit`].
pub fn set_psci(conduit: Option<PsciConduit>) {
    let code = match conduit {
        Some(PsciConduit::Smc) => 1,
        // From EL2 an HVC traps to ourselves: no way to reach the firmware.
        Some(PsciConduit::Hvc) | None => 2,
    };
    PSCI.store(code, Ordering::Relaxed);
}

/// Keeps the run's nonce for the verdict line; refuses (returns `false`) anything but 1 to
/// [`NONCE_MAX_DIGITS`] hexadecimal digits. Called once on the boot CPU.
pub fn set_nonce(nonce: &str) -> bool {
    if nonce.is_empty() || nonce.len() > NONCE_MAX_DIGITS || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    for (slot, byte) in NONCE.iter().zip(nonce.bytes()) {
        slot.store(byte, Ordering::Relaxed);
    }
    NONCE_LEN.store(nonce.len(), Ordering::Release);
    true
}

/// Makes the run fail with `code` however it ends (the first recorded failure wins): for
/// checks that find a problem while the run goes on, such as a latency context that stopped
/// sampling.
pub fn record_failure(code: u32) {
    let code = u8::try_from(code).unwrap_or(u8::MAX);
    let _ = FAILURE.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
}

/// The nonce as text (empty if none was given).
fn with_nonce<R>(f: impl FnOnce(&str) -> R) -> R {
    let len = NONCE_LEN.load(Ordering::Acquire);
    let mut bytes = [0u8; NONCE_MAX_DIGITS];
    for (byte, slot) in bytes.iter_mut().zip(&NONCE[..len]) {
        *byte = slot.load(Ordering::Relaxed);
    }
    // Only ASCII hex digits were stored.
    f(core::str::from_utf8(&bytes[..len]).unwrap_or(""))
}

/// Writes out the console (what its ring holds, then the count of dropped output), prints the
/// verdict with the run's nonce and ends the run; `code` 0 passes unless a failure was
/// recorded ([`record_failure`]).
pub fn exit(code: u32) -> ! {
    let code = match FAILURE.load(Ordering::Relaxed) {
        0 => code,
        recorded if code == EXIT_SUCCESS => u32::from(recorded),
        _ => code,
    };
    let verdict = if code == EXIT_SUCCESS { "PASS" } else { "FAIL" };
    crate::console::finish();
    with_nonce(|nonce| {
        crate::console::write_fmt_emergency(format_args!("verdict: {verdict} (exit code {code}, nonce {nonce})\n"));
    });
    if PSCI.load(Ordering::Relaxed) == 1 {
        let _ = smccc::psci::system_off::<smccc::Smc>();
    }
    park()
}

/// `ID_AA64PFR0_EL1.EL3`: bits [15:12], non-zero when EL3 is implemented.
const PFR0_EL3_SHIFT: u64 = 12;
const PFR0_EL_MASK: u64 = 0xf;

/// Powers off from EL1, where the core refuses to run (no device tree parsed, MMU off): PSCI
/// over `SMC` when EL3 firmware exists, else over `HVC` (the conduit a machine without EL3
/// offers, e.g. QEMU virt without EL2); parks if that returns.
pub fn system_off_from_el1() -> ! {
    use aarch64_cpu::registers::{ID_AA64PFR0_EL1, Readable};
    let has_el3 = (ID_AA64PFR0_EL1.get() >> PFR0_EL3_SHIFT) & PFR0_EL_MASK != 0;
    if has_el3 {
        let _ = smccc::psci::system_off::<smccc::Smc>();
    } else {
        let _ = smccc::psci::system_off::<smccc::Hvc>();
    }
    park()
}

/// Stops this CPU for good. (`WFI`, not `WFE`: QEMU halts a vCPU in WFI but spins on WFE,
/// which would burn the instruction budget of `-icount` runs.)
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}
