//! The portable core of the companion core's trap handling for its Linux guest at EL1: decoding
//! ESR_EL2 into what to emulate ([`Trap`]), completing emulated MMIO loads and stores in the
//! guest's registers ([`MmioAccess`]), naming trapped System registers ([`KnownSysReg`]), and
//! PSCI 1.1 for the guest's vCPUs ([`Psci`]).
//!
//! Pure logic, no hardware access, no allocation, no `unsafe`, unit tested on the host. Every
//! guest-controlled input (ESR_EL2, FAR_EL2, HPFAR_EL2, guest registers, PSCI arguments) is
//! handled without panicking: a syndrome that does not describe the access is
//! [`Trap::Undecodable`], a bad PSCI call gets a PSCI error code. [`Error`] only reports the
//! glue's own mistakes.
//!
//! A glue's synchronous lower-EL handler:
//!
//! ```
//! use vm::{fault_ipa, skip_instruction, Action, Psci, PsciCall, Trap};
//!
//! let mut psci = Psci::new(&[0x0, 0x1], 0).unwrap();
//! let mut regs = [0u64; 31];
//! let (esr, far, hpfar, mut elr) = (0x9381_0047, 0x1_0000_0004, 0x9_0000, 0x4008_0000);
//! regs[1] = 0x41; // str w1, [x0] to a UART register
//!
//! let trap = Trap::decode(esr);
//! match trap {
//!     Trap::DataAbort { access, fault } if fault.far_valid => {
//!         let ipa = fault_ipa(hpfar, far);
//!         assert_eq!(ipa, 0x0900_0004);
//!         if access.write {
//!             let value = access.store_value(&regs).unwrap();
//!             assert_eq!(value, 0x41); // ... write `value` to the emulated device at `ipa`
//!         } else {
//!             access.complete_load(&mut regs, 0 /* read from the device */).unwrap();
//!         }
//!     }
//!     Trap::Hvc { imm: 0 } | Trap::Smc { imm: 0 } => {
//!         let outcome = psci.handle(0, PsciCall::from_registers(&regs)).unwrap();
//!         regs[0] = outcome.x0;
//!         if let Action::StartVcpu { index, entry, context_id } = outcome.action {
//!             // ... start vCPU `index` at `entry` with x0 = `context_id`
//!         }
//!     }
//!     _ => { /* inject an abort, log, ... */ }
//! }
//! if trap.completes_by_skipping() {
//!     elr = skip_instruction(elr, esr);
//! }
//! assert_eq!(elr, 0x4008_0004);
//! ```
//!
//! Module map: [`trap`] (the decoder, faulting IPA, instruction skip), [`mmio`] (the emulated
//! access and register write-back), [`gpr`] (register operands and the register file),
//! [`sysreg`] (System register encodings and names), [`psci`] (PSCI 1.1), [`esr`] (ESR_EL2 and
//! HPFAR_EL2 field layout), [`error`].

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod error;
pub mod esr;
pub mod gpr;
pub mod hang_watch;
pub mod mmio;
pub mod ownership;
pub mod pl011;
pub mod psci;
pub mod replay;
pub mod sysreg;
pub mod trap;
pub mod vgic;
pub mod virtio;

#[cfg(test)]
mod test_util;

pub use error::Error;
pub use gpr::{NUM_GPRS, Register, RegisterFile};
pub use mmio::{AccessSize, MmioAccess};
pub use psci::{Action, Outcome, PowerState, Psci, PsciCall};
pub use sysreg::{KnownSysReg, SysRegAccess, SysRegEncoding};
pub use trap::{
    AbortFault, FaultStatus, Trap, UndecodableReason, WaitInstruction, exception_class, fault_ipa,
    skip_instruction,
};
