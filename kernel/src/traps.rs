//! The core's exception handler. For now every exception is unexpected except the
//! semihosting probe; later stages add IRQs and guest traps here.

use boot::esr;
use boot::exceptions::{Dump, TrapFrame, VectorKind};

use crate::power;

/// Installs [`handle`] as the EL2 exception handler.
pub fn install() {
    boot::exceptions::set_handler(handle);
}

/// Exception class of an `HLT` that was not taken by a debugger (unknown reason).
const EC_UNKNOWN: u8 = 0x00;

fn is_semihosting_probe(frame: &TrapFrame, kind: VectorKind) -> bool {
    if !(kind.is_synchronous() && kind.from_current_el()) || esr::exception_class(frame.esr) != EC_UNKNOWN {
        return false;
    }
    // SAFETY: ELR points at the EL2 instruction that trapped, inside our mapped image.
    let insn = unsafe { (frame.elr as *const u32).read_volatile() };
    insn == power::SEMIHOSTING_HLT
}

fn handle(frame: &mut TrapFrame, kind: VectorKind) {
    if is_semihosting_probe(frame, kind) {
        frame.x[0] = power::SEMIHOSTING_UNAVAILABLE;
        frame.elr += 4;
        return;
    }
    crate::console::write_fmt_emergency(format_args!("{}", Dump { frame, kind }));
    power::exit(power::EXIT_EXCEPTION);
}
