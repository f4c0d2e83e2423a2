//! The in-band guest at EL1: stage-2 translation, entering the guest, and handling its traps
//! (hypercalls with PSCI, aborts outside its map).
//!
//! Entering the guest never returns: the CPU's in-band context *becomes* the guest. Its traps
//! arrive through the EL2 vectors on that context's stack, so a trap frame holds the guest's
//! registers, and a handler that returns resumes the guest.
//!
//! Today one vCPU runs (the boot CPU's); the small EL1 test guest in [`test_guest`] drives
//! it. The Linux guest, the vGIC and the other vCPUs come next.

pub mod console;
pub mod exits;
pub mod irqsoff;
pub mod linux;
pub mod list_registers;
pub mod sirq;
pub mod stage2;
pub mod test_guest;
pub mod vcpus;
pub mod virq;

use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::{
    ELR_EL2, ESR_EL1, FAR_EL1, FAR_EL2, HCR_EL2, HPFAR_EL2, Readable, SCTLR_EL1, SPSR_EL1, SPSR_EL2, VBAR_EL1, Writeable,
};
use boot::exceptions::TrapFrame;
use spin::Mutex;
use vm::psci::{Action, Psci, PsciCall};
use vm::trap::Trap;

/// The PSTATE a guest starts in and takes exceptions in: EL1 with SP_EL1, DAIF masked.
pub(crate) const EL1H_MASKED: u64 = 0x3c5;
/// Offset of "current EL with SP_ELx, synchronous" in an AArch64 vector table.
const VECTOR_CURRENT_SPX_SYNC: u64 = 0x200;
/// Offset of "lower EL, AArch64, synchronous" in an AArch64 vector table.
const VECTOR_LOWER_A64_SYNC: u64 = 0x400;
/// Exception class of a data abort taken without a change of EL (as the guest sees it).
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// Exception class of a data abort from a lower EL.
const EC_DATA_ABORT_LOWER_EL: u64 = 0x24;
/// ESR.IL: a 32-bit instruction.
const ESR_IL: u64 = 1 << 25;
/// Data fault status: translation fault at level 3 (no mapping).
const DFSC_TRANSLATION_L3: u64 = 0b000111;
/// SCTLR_EL1 value with the MMU and caches off and the RES1 bits set.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// What the guest's hypercalls and traps are handled with.
pub struct GuestState {
    psci: Psci,
    /// Called for hypercalls outside PSCI; returns the value for x0 or `None` for
    /// NOT_SUPPORTED.
    vendor_call: fn(&mut TrapFrame) -> Option<u64>,
    /// Called when the guest asks PSCI to power off or reset; never returns.
    power_off: fn(reset: bool) -> !,
}

static GUEST: Mutex<Option<GuestState>> = Mutex::new(None);
/// Whether an abort outside the map was already logged (log once, keep going).
static ABORT_LOGGED: AtomicBool = AtomicBool::new(false);

/// SMCCC NOT_SUPPORTED.
const NOT_SUPPORTED: u64 = u64::MAX;
/// SMCCC owning entity of standard secure services (PSCI among them), bits 29:24 of a
/// function ID.
const SMCCC_OWNER_STANDARD: u32 = 4;

/// Enters the guest at `entry` (IPA = PA) on this CPU with `x0`..`x3` as given, after
/// `stage2::install`. Never returns: the in-band context is now the guest.
///
/// # Safety
/// Stage 2 must be installed and map `entry` as guest RAM holding the guest's code, cleaned
/// to the point of coherency; IRQs must be masked.
pub unsafe fn enter(entry: u64, args: [u64; 4], state: GuestState) -> ! {
    *GUEST.lock() = Some(state);
    // SAFETY: forwarded from the caller.
    unsafe { enter_vcpu(entry, args) }
}

/// Enters this CPU's vCPU at `entry` with `x0`..`x3`; the guest state is already installed.
///
/// # Safety
/// As for [`enter`], on this CPU.
pub(crate) unsafe fn enter_vcpu(entry: u64, args: [u64; 4]) -> ! {
    SCTLR_EL1.set(SCTLR_EL1_RESET);
    HCR_EL2.write(
        HCR_EL2::RW::EL1IsAarch64
            + HCR_EL2::VM::Enable
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2,
    );
    ELR_EL2.set(entry);
    SPSR_EL2.set(EL1H_MASKED);
    // SAFETY: ELR/SPSR_EL2 name the guest's entry at EL1; the arguments go in x0..x3 and
    // every other general-purpose register is cleared so no core data leaks into the guest.
    unsafe {
        core::arch::asm!(
            "isb",
            "mov x4, xzr", "mov x5, xzr", "mov x6, xzr", "mov x7, xzr", "mov x8, xzr",
            "mov x9, xzr", "mov x10, xzr", "mov x11, xzr", "mov x12, xzr", "mov x13, xzr",
            "mov x14, xzr", "mov x15, xzr", "mov x16, xzr", "mov x17, xzr", "mov x18, xzr",
            "mov x19, xzr", "mov x20, xzr", "mov x21, xzr", "mov x22, xzr", "mov x23, xzr",
            "mov x24, xzr", "mov x25, xzr", "mov x26, xzr", "mov x27, xzr", "mov x28, xzr",
            "mov x29, xzr", "mov x30, xzr",
            "eret",
            in("x0") args[0], in("x1") args[1], in("x2") args[2], in("x3") args[3],
            options(noreturn),
        )
    }
}

/// Handles a synchronous exception from the guest (lower EL). Never panics on what the
/// guest did: what cannot be handled is refused with an injected abort or NOT_SUPPORTED.
/// Returns the kind of exit it was, for [`exits`].
pub fn handle_trap(frame: &mut TrapFrame) -> exits::ExitKind {
    match Trap::decode(frame.esr) {
        Trap::Hvc { .. } => {
            hypercall(frame);
            exits::ExitKind::Hypercall
        }
        Trap::Smc { .. } => {
            hypercall(frame);
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::Hypercall
        }
        Trap::DataAbort { access, .. } => {
            let ipa = vm::trap::fault_ipa(HPFAR_EL2.get(), FAR_EL2.get());
            let emulated = virq::mmio(frame, ipa, access)
                .map(|result| (result, "GIC", exits::ExitKind::GicMmio))
                .or_else(|| console::mmio(frame, ipa, access).map(|result| (result, "UART", exits::ExitKind::UartMmio)));
            match emulated {
                Some((Ok(()), _, kind)) => {
                    frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
                    kind
                }
                Some((Err(()), device, kind)) => {
                    log::warn!("guest {device} access at IPA {ipa:#x} refused (PC {:#x}): abort injected", frame.elr);
                    inject_data_abort(frame);
                    kind
                }
                None => {
                    outside_map(frame, ipa);
                    exits::ExitKind::Other
                }
            }
        }
        Trap::SysReg(sysreg) if sysreg.known() == Some(vm::sysreg::KnownSysReg::IccSgi1rEl1) && !sysreg.read => {
            virq::send_sgi(vm::gpr::read(&frame.x, sysreg.register));
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::SgiWrite
        }
        Trap::Undecodable { .. } | Trap::InstructionAbort { .. } => {
            let ipa = vm::trap::fault_ipa(HPFAR_EL2.get(), FAR_EL2.get());
            outside_map(frame, ipa);
            exits::ExitKind::Other
        }
        trap => {
            log::warn!("guest trap not handled ({trap:?}) at PC {:#x}: skipped", frame.elr);
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::Other
        }
    }
}

/// A guest access outside its map: an abort for the guest, one log line for the run.
fn outside_map(frame: &mut TrapFrame, ipa: u64) {
    if !ABORT_LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!("guest access outside its map at IPA {ipa:#x} (PC {:#x}): abort injected (logged once)", frame.elr);
    }
    inject_data_abort(frame);
}

/// A hypercall: PSCI, or the vendor call hook.
fn hypercall(frame: &mut TrapFrame) {
    let vcpu = boot::cpu_index();
    let mut guard = GUEST.lock();
    let Some(state) = guard.as_mut() else {
        frame.x[0] = NOT_SUPPORTED;
        return;
    };
    let call = PsciCall::from_registers(&frame.x);
    if !(vm::psci::is_supported(call.function_id) || (call.function_id >> 24) & 0x3f == SMCCC_OWNER_STANDARD) {
        frame.x[0] = (state.vendor_call)(frame).unwrap_or(NOT_SUPPORTED);
        return;
    }
    let Ok(outcome) = state.psci.handle(vcpu, call) else {
        frame.x[0] = NOT_SUPPORTED;
        return;
    };
    frame.x[0] = outcome.x0;
    let power_off = state.power_off;
    // Act without the lock: a stopped vCPU waits here for the next CPU_ON.
    drop(guard);
    match outcome.action {
        Action::SystemOff => power_off(false),
        Action::SystemReset => power_off(true),
        Action::StartVcpu { index, entry, context_id } => vcpus::request_start(index, entry, context_id),
        Action::StopThisVcpu => vcpus::stop_this_vcpu(frame),
        Action::WaitForInterrupt | Action::None => {}
    }
}

/// Tells the PSCI model that vCPU `index` now runs (its CPU_ON completed).
pub(crate) fn vcpu_running(index: usize) {
    if let Some(state) = GUEST.lock().as_mut() {
        let _ = state.psci.vcpu_running(index);
    }
}

/// Makes the guest take a translation-fault data abort at the faulting instruction, as if
/// its own translation had refused the access.
fn inject_data_abort(frame: &mut TrapFrame) {
    let from_el1 = (frame.spsr & 0xf) != 0;
    let iss_write = frame.esr & (1 << 6);
    let ec = if from_el1 { EC_DATA_ABORT_SAME_EL } else { EC_DATA_ABORT_LOWER_EL };
    ESR_EL1.set((ec << 26) | ESR_IL | iss_write | DFSC_TRANSLATION_L3);
    FAR_EL1.set(FAR_EL2.get());
    aarch64_cpu::registers::ELR_EL1.set(frame.elr);
    SPSR_EL1.set(frame.spsr);
    let offset = if from_el1 { VECTOR_CURRENT_SPX_SYNC } else { VECTOR_LOWER_A64_SYNC };
    frame.elr = VBAR_EL1.get() + offset;
    frame.spsr = EL1H_MASKED;
}

impl GuestState {
    /// A guest with one vCPU per affinity in `mpidrs` (vCPU i on CPU i), vCPU 0 running.
    pub fn new(mpidrs: &[u64], vendor_call: fn(&mut TrapFrame) -> Option<u64>, power_off: fn(bool) -> !) -> Option<Self> {
        let psci = Psci::new(mpidrs, 0).ok()?;
        Some(Self { psci, vendor_call, power_off })
    }
}
