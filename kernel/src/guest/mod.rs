//! The in-band guest at EL1: stage-2 translation, entering the guest, and handling its traps
//! (hypercalls with PSCI, aborts outside its map).
//!
//! Entering the guest never returns: the CPU's in-band context *becomes* the guest. Its traps
//! arrive through the EL2 vectors on that context's stack, so a trap frame holds the guest's
//! registers, and a handler that returns resumes the guest.
//!
//! Today one vCPU runs (the boot CPU's); the small EL1 test guest in [`test_guest`] drives
//! it. The Linux guest, the vGIC and the other vCPUs come next.

pub mod builtin;
pub mod bundle;
pub mod channel;
pub mod console;
pub mod control;
pub mod exits;
pub mod hostile_guest;
pub mod irqsoff;
pub mod linux;
pub mod list_registers;
pub mod quiesce;
pub mod restart;
pub mod sirq;
pub mod stage2;
pub mod test_guest;
pub mod trap_log;
pub mod vcpus;
pub mod virq;
pub mod watchdog;

use aarch64_cpu::registers::{
    AFSR0_EL1, AFSR1_EL1, AMAIR_EL1, CNTKCTL_EL1, CONTEXTIDR_EL1, CPACR_EL1, ELR_EL2, ESR_EL1, FAR_EL1, FAR_EL2, HCR_EL2,
    HPFAR_EL2, MAIR_EL1, PAR_EL1, ReadWriteable, Readable, SCTLR_EL1, SP_EL0, SP_EL1, SPSR_EL1, SPSR_EL2, TCR_EL1, TPIDR_EL0, TPIDR_EL1,
    TPIDRRO_EL0, TTBR0_EL1, TTBR1_EL1, VBAR_EL1, Writeable,
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
/// Exception class of an instruction abort taken without a change of EL.
const EC_INSTRUCTION_ABORT_SAME_EL: u64 = 0x21;
/// Exception class of an instruction abort from a lower EL.
const EC_INSTRUCTION_ABORT_LOWER_EL: u64 = 0x20;
/// Exception class "unknown reason": what an undefined instruction raises.
const EC_UNKNOWN: u64 = 0x00;
/// ESR.EC's position.
const ESR_EC_SHIFT: u64 = 26;
/// Data abort ISS.WnR: the access was a write.
const ESR_WNR: u64 = 1 << 6;
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
    reset_el1_state();
    crate::cycles::trap_guest_pmu();
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
    let sp: u64;
    // SAFETY: reads the stack pointer, nothing else.
    unsafe { core::arch::asm!("mov {0}, sp", out(reg) sp, options(nomem, nostack)) };
    restart::entering(sp);
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

/// Puts this CPU's EL1 state in the state a PE powers up in, as far as the guest can tell:
/// MMU and caches off, no vector base, no translation tables, FP/SIMD trapped, no thread
/// pointers, nothing left from a previous run of the vCPU (a `CPU_ON` after `CPU_OFF`, or
/// a start into a vCPU some earlier guest code had configured).
pub(crate) fn reset_el1_state() {
    SCTLR_EL1.set(SCTLR_EL1_RESET);
    VBAR_EL1.set(0);
    TCR_EL1.set(0);
    TTBR0_EL1.set(0);
    TTBR1_EL1.set(0);
    MAIR_EL1.set(0);
    AMAIR_EL1.set(0);
    CPACR_EL1.set(0);
    CONTEXTIDR_EL1.set(0);
    CNTKCTL_EL1.set(0);
    ESR_EL1.set(0);
    FAR_EL1.set(0);
    AFSR0_EL1.set(0);
    AFSR1_EL1.set(0);
    PAR_EL1.set(0);
    SPSR_EL1.set(0);
    aarch64_cpu::registers::ELR_EL1.set(0);
    SP_EL0.set(0);
    SP_EL1.set(0);
    TPIDR_EL0.set(0);
    TPIDR_EL1.set(0);
    TPIDRRO_EL0.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
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
            // `Ok(false)`: not done, the guest runs the access again (the channel's device
            // is busy on another CPU). The console first: its exits are the most frequent; it
            // and the channel tell their own pages from others without a lock.
            let done = |result: Result<(), ()>| result.map(|()| true);
            let emulated = console::mmio(frame, ipa, access)
                .map(|result| (done(result), "UART", exits::ExitKind::UartMmio))
                .or_else(|| channel::mmio(frame, ipa, access).map(|result| (result, "virtio", exits::ExitKind::ChannelMmio)))
                .or_else(|| virq::mmio(frame, ipa, access).map(|result| (done(result), "GIC", exits::ExitKind::GicMmio)));
            match emulated {
                Some((Ok(done), _, kind)) => {
                    if done {
                        frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
                    }
                    if kind == exits::ExitKind::UartMmio {
                        restart::guest_console_output();
                    }
                    kind
                }
                Some((Err(()), _, kind)) => {
                    trap_log::count_at(trap_log::Kind::RefusedDeviceAccess, ipa);
                    inject_abort(frame, AbortKind::Data);
                    kind
                }
                None => {
                    trap_log::count_at(trap_log::Kind::OutsideMap, ipa);
                    inject_abort(frame, AbortKind::Data);
                    exits::ExitKind::Other
                }
            }
        }
        Trap::SysReg(sysreg) if sysreg.known() == Some(vm::sysreg::KnownSysReg::IccSgi1rEl1) && !sysreg.read => {
            virq::send_sgi(vm::gpr::read(&frame.x, sysreg.register));
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::SgiWrite
        }
        Trap::SysReg(sysreg)
            if !sysreg.read
                && matches!(
                    sysreg.known(),
                    Some(vm::sysreg::KnownSysReg::IccSgi0rEl1 | vm::sysreg::KnownSysReg::IccAsgi1rEl1)
                ) =>
        {
            // No group 0 and no other Security state in the guest's GIC: nothing to send.
            trap_log::count(trap_log::Kind::IgnoredSgi);
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::Other
        }
        Trap::SysReg(sysreg) if sysreg.encoding.is_pmu() => {
            // The PMU is the core's (`MDCR_EL2.TPM`/`TPMCR`, `cycles::trap_guest_pmu`): the
            // guest sees one with no event counters, whose registers read as zero and
            // ignore writes.
            if sysreg.read {
                vm::gpr::write(&mut frame.x, sysreg.register, 0);
            }
            frame.elr = vm::trap::skip_instruction(frame.elr, frame.esr);
            exits::ExitKind::Other
        }
        Trap::Undecodable { .. } => {
            trap_log::count_at(trap_log::Kind::OutsideMap, vm::trap::fault_ipa(HPFAR_EL2.get(), FAR_EL2.get()));
            inject_abort(frame, AbortKind::Data);
            exits::ExitKind::Other
        }
        Trap::InstructionAbort { .. } => {
            trap_log::count_at(trap_log::Kind::InstructionAbort, frame.elr);
            inject_abort(frame, AbortKind::Instruction);
            exits::ExitKind::Other
        }
        _ => {
            // Nothing the core emulates: the instruction is undefined for the guest.
            trap_log::count_at(trap_log::Kind::Undefined, frame.esr);
            inject_undefined(frame);
            exits::ExitKind::Other
        }
    }
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
    virq::vcpu_started(index);
}

/// Which abort to inject.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AbortKind {
    /// A data access.
    Data,
    /// An instruction fetch.
    Instruction,
}

/// Makes the guest take a translation-fault abort (data or instruction, as the trap was) at
/// the faulting instruction, as if its own translation had refused the access.
fn inject_abort(frame: &mut TrapFrame, kind: AbortKind) {
    let from_el1 = (frame.spsr & 0xf) != 0;
    let (ec, iss) = match (kind, from_el1) {
        (AbortKind::Data, true) => (EC_DATA_ABORT_SAME_EL, frame.esr & ESR_WNR),
        (AbortKind::Data, false) => (EC_DATA_ABORT_LOWER_EL, frame.esr & ESR_WNR),
        (AbortKind::Instruction, true) => (EC_INSTRUCTION_ABORT_SAME_EL, 0),
        (AbortKind::Instruction, false) => (EC_INSTRUCTION_ABORT_LOWER_EL, 0),
    };
    inject_sync(frame, (ec << ESR_EC_SHIFT) | ESR_IL | iss | DFSC_TRANSLATION_L3, FAR_EL2.get());
}

/// Makes the guest take an undefined-instruction exception at the trapping instruction.
fn inject_undefined(frame: &mut TrapFrame) {
    inject_sync(frame, (EC_UNKNOWN << ESR_EC_SHIFT) | ESR_IL, 0);
}

/// Makes the guest take a synchronous exception with syndrome `esr` and fault address
/// `far` at the trapping instruction, through its EL1 vectors.
fn inject_sync(frame: &mut TrapFrame, esr: u64, far: u64) {
    let from_el1 = (frame.spsr & 0xf) != 0;
    ESR_EL1.set(esr);
    FAR_EL1.set(far);
    aarch64_cpu::registers::ELR_EL1.set(frame.elr);
    SPSR_EL1.set(frame.spsr);
    let offset = if from_el1 { VECTOR_CURRENT_SPX_SYNC } else { VECTOR_LOWER_A64_SYNC };
    frame.elr = VBAR_EL1.get() + offset;
    frame.spsr = EL1H_MASKED;
}

/// A physical SError taken while the guest ran (HCR_EL2.AMO routes it to EL2): most likely
/// the guest's own access to a device that faulted. The guest gets a virtual SError
/// (HCR_EL2.VSE, taken when it unmasks SErrors); the core counts it and goes on.
pub fn serror_from_guest() {
    trap_log::count_at(trap_log::Kind::SError, aarch64_cpu::registers::ELR_EL2.get());
    HCR_EL2.modify(HCR_EL2::VSE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

impl GuestState {
    /// A guest with one vCPU per affinity in `mpidrs` (vCPU i on CPU i), vCPU 0 running,
    /// and `ram` (IPA = PA) as its memory: `CPU_ON` starts vCPUs only there.
    pub fn new(
        mpidrs: &[u64],
        ram: &[platform::MemoryRange],
        vendor_call: fn(&mut TrapFrame) -> Option<u64>,
        power_off: fn(bool) -> !,
    ) -> Option<Self> {
        let mut psci = Psci::new(mpidrs, 0).ok()?;
        let mut ranges = [(0u64, 0u64); vm::psci::MAX_RAM_RANGES];
        if ram.len() > ranges.len() {
            return None;
        }
        for (range, memory) in ranges.iter_mut().zip(ram) {
            *range = (memory.base, memory.size);
        }
        psci.set_guest_ram(&ranges[..ram.len()]).ok()?;
        Some(Self { psci, vendor_call, power_off })
    }
}
