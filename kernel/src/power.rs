//! Ending a run: the verdict, reported as QEMU's exit status through semihosting when it is
//! available, otherwise PSCI `SYSTEM_OFF`, otherwise parking the CPU.

use core::sync::atomic::{AtomicU8, Ordering};

use platform::PsciConduit;

/// Exit status for a run that passed.
pub const EXIT_SUCCESS: u32 = 0;
/// Exit status after a panic.
pub const EXIT_PANIC: u32 = 101;
/// Exit status after an unexpected exception.
pub const EXIT_EXCEPTION: u32 = 102;
/// Exit status after a failed check during boot.
pub const EXIT_BOOT_FAILURE: u32 = 103;
/// Exit status when the loader entered the image at an EL other than 2.
pub const EXIT_WRONG_EL: u32 = 104;

/// Semihosting `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the exit reason that carries a status code.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
/// The A64 semihosting trap instruction, `HLT #0xF000`.
pub const SEMIHOSTING_HLT: u32 = 0xd45e_0000;
/// What the trap handler leaves in x0 when `HLT` trapped instead of reaching a debugger.
pub const SEMIHOSTING_UNAVAILABLE: u64 = u64::MAX;

/// 0: unknown, 1: SMC, 2: none usable.
static PSCI: AtomicU8 = AtomicU8::new(0);

/// Records the PSCI conduit found in the device tree for [`exit`].
pub fn set_psci(conduit: Option<PsciConduit>) {
    PSCI.store(if conduit == Some(PsciConduit::Smc) { 1 } else { 2 }, Ordering::Relaxed);
}

/// Asks the semihosting host to end with `code`; returns if there is no such host.
pub fn semihosting_exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: with a semihosting host this does not return; without one, HLT traps and the
    // trap handler steps over it with x0 = SEMIHOSTING_UNAVAILABLE.
    unsafe {
        core::arch::asm!("hlt #0xf000", inout("x0") SYS_EXIT => _, in("x1") block.as_ptr(), options(nostack));
    }
}

/// Writes out the console (what its ring holds, then the count of dropped output), prints the
/// verdict and ends the run with `code` (0 = pass).
pub fn exit(code: u32) -> ! {
    let verdict = if code == EXIT_SUCCESS { "PASS" } else { "FAIL" };
    crate::console::finish();
    crate::console::write_fmt_emergency(format_args!("verdict: {verdict} (exit code {code})\n"));
    semihosting_exit(code);
    if PSCI.load(Ordering::Relaxed) == 1 {
        let _ = smccc::psci::system_off::<smccc::Smc>();
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
