//! Decoding a synchronous trap from the AArch64 guest at EL1/EL0 (ESR_EL2) into what the
//! hypervisor has to emulate, plus the address arithmetic around it (faulting IPA, skipping the
//! trapped instruction).
//!
//! [`Trap::decode`] is total: every 64-bit value decodes to some [`Trap`], without panicking.
//! A Data Abort whose syndrome does not describe the access (ISV = 0: load/store pair,
//! pre/post-index writeback, SIMD/FP registers, atomics, exclusives, ...) decodes to
//! [`Trap::Undecodable`] with the reason, never to a guessed access.

use crate::esr::{self, abort, call, class, sys_reg, wfx};
use crate::gpr::Register;
use crate::mmio::{AccessSize, MmioAccess};
use crate::sysreg::{SysRegAccess, SysRegEncoding};

/// What a trap from the guest asks the hypervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trap {
    /// A single-register load or store hit a stage-2 fault (EC 0x24, ISV = 1): emulate it if
    /// the IPA ([`fault_ipa`]) is emulated MMIO, then [`skip_instruction`].
    DataAbort {
        /// The access to emulate.
        access: MmioAccess,
        /// The fault itself. The faulting IPA is not in ESR_EL2: compute it with
        /// [`fault_ipa`] from HPFAR_EL2 and FAR_EL2.
        fault: AbortFault,
    },
    /// A Data Abort from the guest that this crate cannot turn into an [`MmioAccess`].
    Undecodable {
        /// Why the access is not described.
        reason: UndecodableReason,
        /// The fault itself.
        fault: AbortFault,
    },
    /// An instruction fetch hit a stage-2 fault (EC 0x20). ELR_EL2 is the faulting address.
    InstructionAbort {
        /// The fault itself.
        fault: AbortFault,
    },
    /// HVC from AArch64 (EC 0x16). ELR_EL2 already points past the HVC.
    Hvc {
        /// The instruction's immediate (0 for SMCCC calls).
        imm: u16,
    },
    /// SMC from AArch64 trapped by HCR_EL2.TSC (EC 0x17). ELR_EL2 points at the SMC itself.
    Smc {
        /// The instruction's immediate (0 for SMCCC calls).
        imm: u16,
    },
    /// A trapped MSR, MRS or System instruction (EC 0x18).
    SysReg(SysRegAccess),
    /// A trapped WFI, WFE, WFIT or WFET (EC 0x01).
    Wait {
        /// Which instruction.
        instruction: WaitInstruction,
        /// For WFIT/WFET with a valid register field: the register holding the timeout
        /// (a CNTVCT_EL0 value).
        timeout_register: Option<Register>,
    },
    /// Any other exception class, left to the caller.
    Other {
        /// The exception class, `ESR_EL2[31:26]`.
        ec: u8,
        /// The instruction-specific syndrome, `ESR_EL2[24:0]`.
        iss: u32,
    },
}

/// Why a Data Abort cannot be emulated from its syndrome alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UndecodableReason {
    /// ISV = 0: the instruction (load/store pair, writeback addressing, SIMD/FP, atomic,
    /// exclusive, ...) is not described; emulating it would mean fetching and decoding it.
    NoInstructionSyndrome,
    /// The stage-2 fault hit the guest's own stage-1 translation table walk (S1PTW): the guest
    /// put its page tables outside its memory.
    StageOneTableWalk,
    /// A cache maintenance or address translation instruction (CM) hit the address.
    CacheMaintenance,
    /// The syndrome claims an impossible access: an 8-byte access to a W register, or a sign
    /// extension of an 8-byte load.
    InconsistentSyndrome,
}

/// The fault part of an abort syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortFault {
    /// The fault status code (DFSC/IFSC).
    pub status: FaultStatus,
    /// Write not Read (WnR): a data abort caused by a write (also set by cache maintenance).
    /// Always false for instruction aborts.
    pub write: bool,
    /// FAR_EL2 holds the faulting virtual address (FnV = 0).
    pub far_valid: bool,
    /// The fault came from the guest's stage-1 translation table walk (S1PTW).
    pub stage1_walk: bool,
    /// External Abort type (EA), IMPLEMENTATION DEFINED classification.
    pub external: bool,
}

/// A decoded Data/Instruction Fault Status Code. Levels are the translation table levels
/// 0..=3; codes outside the common set (including FEAT_LPA2's level -1 codes) are [`Self::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// Address size fault at a level.
    AddressSize {
        /// Translation table level.
        level: u8,
    },
    /// Translation fault at a level: no stage-2 mapping (typically emulated MMIO).
    Translation {
        /// Translation table level.
        level: u8,
    },
    /// Access flag fault at a level.
    AccessFlag {
        /// Translation table level.
        level: u8,
    },
    /// Permission fault at a level.
    Permission {
        /// Translation table level.
        level: u8,
    },
    /// Synchronous External abort, not on a translation table walk.
    SynchronousExternal,
    /// Synchronous External abort on a translation table walk, at a level.
    SynchronousExternalOnWalk {
        /// Translation table level.
        level: u8,
    },
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Any other code.
    Other {
        /// The 6-bit status code.
        code: u8,
    },
}

/// Fault status codes (DFSC/IFSC) whose low 2 bits are the level: the group in bits `[5:2]`.
const FSC_GROUP_ADDRESS_SIZE: u8 = 0b0000;
const FSC_GROUP_TRANSLATION: u8 = 0b0001;
const FSC_GROUP_ACCESS_FLAG: u8 = 0b0010;
const FSC_GROUP_PERMISSION: u8 = 0b0011;
const FSC_GROUP_EXTERNAL_ON_WALK: u8 = 0b0101;
/// Fault status codes without a level.
const FSC_SYNCHRONOUS_EXTERNAL: u8 = 0b01_0000;
const FSC_ALIGNMENT: u8 = 0b10_0001;
const FSC_TLB_CONFLICT: u8 = 0b11_0000;

impl FaultStatus {
    /// Decodes a 6-bit fault status code (higher bits are ignored).
    pub const fn from_code(code: u8) -> Self {
        let code = code & 0x3f;
        let level = code & 0b11;
        match code {
            FSC_SYNCHRONOUS_EXTERNAL => return Self::SynchronousExternal,
            FSC_ALIGNMENT => return Self::Alignment,
            FSC_TLB_CONFLICT => return Self::TlbConflict,
            _ => {}
        }
        match code >> 2 {
            FSC_GROUP_ADDRESS_SIZE => Self::AddressSize { level },
            FSC_GROUP_TRANSLATION => Self::Translation { level },
            FSC_GROUP_ACCESS_FLAG => Self::AccessFlag { level },
            FSC_GROUP_PERMISSION => Self::Permission { level },
            FSC_GROUP_EXTERNAL_ON_WALK => Self::SynchronousExternalOnWalk { level },
            _ => Self::Other { code },
        }
    }
}

/// What WFx instruction trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitInstruction {
    /// Wait For Interrupt.
    Wfi,
    /// Wait For Event.
    Wfe,
    /// Wait For Interrupt with Timeout (FEAT_WFxT).
    Wfit,
    /// Wait For Event with Timeout (FEAT_WFxT).
    Wfet,
}

impl Trap {
    /// Decodes ESR_EL2 of a synchronous exception taken from the AArch64 guest. Total: any
    /// value gives a `Trap`; `ESR_EL2[63:32]` (ISS2) is ignored.
    pub fn decode(esr: u64) -> Self {
        let ec = exception_class(esr);
        let iss = esr::ISS.get(esr);
        match ec {
            class::DATA_ABORT_LOWER => decode_data_abort(iss),
            class::INSTRUCTION_ABORT_LOWER => Self::InstructionAbort {
                fault: abort_fault(iss),
            },
            class::HVC64 => Self::Hvc {
                imm: call::IMM16.get(iss) as u16,
            },
            class::SMC64 => Self::Smc {
                imm: call::IMM16.get(iss) as u16,
            },
            class::SYS64 => Self::SysReg(decode_sys_reg(iss)),
            class::WFX => decode_wait(iss),
            _ => Self::Other {
                ec,
                iss: iss as u32,
            },
        }
    }

    /// Whether the guest, once this trap is emulated, resumes at the next instruction, i.e.
    /// ELR_EL2 still points at the trapping instruction and must be advanced with
    /// [`skip_instruction`]: true for emulated loads/stores, SMC, MSR/MRS and WFx; false for
    /// HVC (ELR_EL2 is already past it) and for aborts and classes that are not emulated here.
    pub const fn completes_by_skipping(&self) -> bool {
        matches!(
            self,
            Self::DataAbort { .. } | Self::Smc { .. } | Self::SysReg(_) | Self::Wait { .. }
        )
    }
}

/// The exception class, `ESR_EL2[31:26]`.
pub const fn exception_class(esr: u64) -> u8 {
    esr::EC.get(esr) as u8
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA gives the page (IPA`[55:12]`) and
/// FAR_EL2 the offset in the 4 KiB page. FAR_EL2 is only meaningful when
/// [`AbortFault::far_valid`]; HPFAR_EL2 is valid for stage-2 faults, which every emulated MMIO
/// access is.
pub const fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    (esr::hpfar::FIPA.get(hpfar) << esr::hpfar::FIPA_IPA_SHIFT) | esr::PAGE_OFFSET.get(far)
}

/// The address of the instruction after the trapping one at `elr`: `elr + 4` when ESR_EL2.IL
/// is set (every AArch64 instruction), `elr + 2` when it is clear (a 16-bit T32 instruction).
/// Wraps rather than overflowing.
pub const fn skip_instruction(elr: u64, esr: u64) -> u64 {
    const A64_INSTRUCTION_BYTES: u64 = 4;
    const T16_INSTRUCTION_BYTES: u64 = 2;
    let length = if esr::IL.is_set(esr) {
        A64_INSTRUCTION_BYTES
    } else {
        T16_INSTRUCTION_BYTES
    };
    elr.wrapping_add(length)
}

fn abort_fault(iss: u64) -> AbortFault {
    AbortFault {
        status: FaultStatus::from_code(abort::FSC.get(iss) as u8),
        write: abort::WNR.is_set(iss),
        far_valid: !abort::FNV.is_set(iss),
        stage1_walk: abort::S1PTW.is_set(iss),
        external: abort::EA.is_set(iss),
    }
}

fn decode_data_abort(iss: u64) -> Trap {
    let fault = abort_fault(iss);
    let undecodable = |reason| Trap::Undecodable { reason, fault };
    if fault.stage1_walk {
        return undecodable(UndecodableReason::StageOneTableWalk);
    }
    if abort::CM.is_set(iss) {
        return undecodable(UndecodableReason::CacheMaintenance);
    }
    if !abort::ISV.is_set(iss) {
        return undecodable(UndecodableReason::NoInstructionSyndrome);
    }
    let size = AccessSize::from_log2(abort::SAS.get(iss));
    let sixty_four = abort::SF.is_set(iss);
    let sign_extend = abort::SSE.is_set(iss);
    if size == AccessSize::Doubleword && (!sixty_four || sign_extend) {
        return undecodable(UndecodableReason::InconsistentSyndrome);
    }
    let access = MmioAccess {
        write: fault.write,
        size,
        sign_extend: sign_extend && !fault.write,
        register: Register::from_field(abort::SRT.get(iss)),
        sixty_four,
        acquire_release: abort::AR.is_set(iss),
    };
    Trap::DataAbort { access, fault }
}

fn decode_sys_reg(iss: u64) -> SysRegAccess {
    let field = |f: esr::Field| f.get(iss) as u8;
    SysRegAccess {
        encoding: SysRegEncoding::new(
            field(sys_reg::OP0),
            field(sys_reg::OP1),
            field(sys_reg::CRN),
            field(sys_reg::CRM),
            field(sys_reg::OP2),
        ),
        register: Register::from_field(sys_reg::RT.get(iss)),
        read: sys_reg::DIRECTION_READ.is_set(iss),
    }
}

fn decode_wait(iss: u64) -> Trap {
    let instruction = match wfx::TI.get(iss) {
        wfx::TI_WFI => WaitInstruction::Wfi,
        wfx::TI_WFE => WaitInstruction::Wfe,
        wfx::TI_WFIT => WaitInstruction::Wfit,
        _ => WaitInstruction::Wfet,
    };
    let with_timeout = matches!(instruction, WaitInstruction::Wfit | WaitInstruction::Wfet);
    let timeout_register =
        (with_timeout && wfx::RV.is_set(iss)).then(|| Register::from_field(wfx::RN.get(iss)));
    Trap::Wait {
        instruction,
        timeout_register,
    }
}

#[cfg(test)]
mod tests;
