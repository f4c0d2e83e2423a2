//! The layout of ESR_EL2 for the exception classes the hypervisor handles, as named fields
//! (Arm ARM D24.2.40 "ESR_EL2", and the ISS encodings of each class).
//!
//! Every field is a [`Field`] (shift and width), so decoding reads `FIELD.get(value)` rather
//! than masks and shifts spelled out at each use.

/// A bit field of a register: `width` bits starting at bit `shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Position of the field's least significant bit.
    pub shift: u32,
    /// Number of bits, 1..=63.
    pub width: u32,
}

impl Field {
    /// A field of `width` bits at `shift`.
    pub const fn new(shift: u32, width: u32) -> Self {
        Self { shift, width }
    }

    /// A single-bit field (a flag) at `bit`.
    pub const fn bit(bit: u32) -> Self {
        Self {
            shift: bit,
            width: 1,
        }
    }

    /// The field's mask, in place.
    pub const fn mask(self) -> u64 {
        let low = if self.width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        };
        low.wrapping_shl(self.shift)
    }

    /// The field's value in `register`, shifted down to bit 0.
    pub const fn get(self, register: u64) -> u64 {
        (register & self.mask()).wrapping_shr(self.shift)
    }

    /// Whether the field is non-zero in `register` (for flags).
    pub const fn is_set(self, register: u64) -> bool {
        register & self.mask() != 0
    }

    /// `value` placed in the field (excess high bits dropped): for building encodings.
    pub const fn place(self, value: u64) -> u64 {
        value.wrapping_shl(self.shift) & self.mask()
    }
}

/// Exception Class, `ESR_EL2[31:26]`.
pub const EC: Field = Field::new(26, 6);
/// Instruction Length, `ESR_EL2[25]`: 1 for a 32-bit instruction (always, for an AArch64 guest),
/// 0 for a 16-bit T32 instruction.
pub const IL: Field = Field::bit(25);
/// Instruction Specific Syndrome, `ESR_EL2[24:0]`.
pub const ISS: Field = Field::new(0, 25);

/// The exception classes (values of [`EC`]) this crate decodes.
pub mod class {
    /// Trapped WFI, WFE, WFIT or WFET.
    pub const WFX: u8 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or System instruction from AArch64.
    pub const SYS64: u8 = 0x18;
    /// Instruction Abort from a lower Exception level.
    pub const INSTRUCTION_ABORT_LOWER: u8 = 0x20;
    /// Data Abort from a lower Exception level.
    pub const DATA_ABORT_LOWER: u8 = 0x24;
    /// Instruction Abort taken without a change of Exception level.
    pub const INSTRUCTION_ABORT_CURRENT: u8 = 0x21;
    /// Data Abort taken without a change of Exception level.
    pub const DATA_ABORT_CURRENT: u8 = 0x25;

    /// Whether `ec` is an Instruction or Data Abort (whose ISS carries [`super::abort`]).
    pub const fn is_abort(ec: u8) -> bool {
        matches!(ec, INSTRUCTION_ABORT_LOWER | INSTRUCTION_ABORT_CURRENT | DATA_ABORT_LOWER | DATA_ABORT_CURRENT)
    }

    /// A readable name for an exception class, for diagnostics (Arm ARM D24.2.40, ESR_EL2.EC).
    pub fn name(ec: u8) -> &'static str {
        match ec {
            0x00 => "Unknown reason",
            WFX => "Trapped WFI/WFE",
            0x07 => "Trapped SIMD/FP access",
            0x0e => "Illegal Execution state",
            0x11 | 0x15 => "SVC",
            0x12 | HVC64 => "HVC",
            0x13 | SMC64 => "SMC",
            SYS64 => "Trapped MSR/MRS/system instruction",
            0x19 => "Trapped SVE access",
            INSTRUCTION_ABORT_LOWER => "Instruction Abort from a lower EL",
            INSTRUCTION_ABORT_CURRENT => "Instruction Abort at the current EL",
            0x22 => "PC alignment fault",
            DATA_ABORT_LOWER => "Data Abort from a lower EL",
            DATA_ABORT_CURRENT => "Data Abort at the current EL",
            0x26 => "SP alignment fault",
            0x28 | 0x2c => "Trapped floating-point exception",
            0x2f => "SError",
            0x30 | 0x31 => "Breakpoint",
            0x32 | 0x33 => "Software step",
            0x34 | 0x35 => "Watchpoint",
            0x3c => "BRK instruction",
            _ => "Reserved or unhandled class",
        }
    }
}

/// ISS fields of a Data Abort (EC 0x24) and, where shared, an Instruction Abort (EC 0x20).
pub mod abort {
    use super::Field;

    /// Instruction Syndrome Valid: bits `[23:14]` describe the access.
    pub const ISV: Field = Field::bit(24);
    /// Syndrome Access Size: log2 of the access size in bytes.
    pub const SAS: Field = Field::new(22, 2);
    /// Syndrome Sign Extend: the load sign-extends its result.
    pub const SSE: Field = Field::bit(21);
    /// Syndrome Register Transfer: the GPR loaded or stored (31 = the zero register).
    pub const SRT: Field = Field::new(16, 5);
    /// Sixty-Four: the register is a 64-bit X register (0: a 32-bit W register).
    pub const SF: Field = Field::bit(15);
    /// Acquire/Release semantics.
    pub const AR: Field = Field::bit(14);
    /// FAR not Valid (only meaningful for external aborts).
    pub const FNV: Field = Field::bit(10);
    /// External Abort type.
    pub const EA: Field = Field::bit(9);
    /// Cache Maintenance: the fault came from a cache maintenance or address translation
    /// instruction.
    pub const CM: Field = Field::bit(8);
    /// Stage-2 fault on a stage-1 translation table walk.
    pub const S1PTW: Field = Field::bit(7);
    /// Write not Read.
    pub const WNR: Field = Field::bit(6);
    /// Data or Instruction Fault Status Code.
    pub const FSC: Field = Field::new(0, 6);

    /// What an abort's fault status code ([`FSC`]) means, for diagnostics.
    pub fn fault_status_name(fsc: u64) -> &'static str {
        match fsc {
            0b00_0000..=0b00_0011 => "address size fault",
            0b00_0100..=0b00_0111 => "translation fault",
            0b00_1000..=0b00_1011 => "access flag fault",
            0b00_1100..=0b00_1111 => "permission fault",
            0b01_0000 => "synchronous external abort",
            0b10_0001 => "alignment fault",
            0b11_0000 => "TLB conflict abort",
            _ => "other fault",
        }
    }
}

/// ISS fields of a trapped MSR, MRS or System instruction (EC 0x18).
pub mod sys_reg {
    use super::Field;

    /// Op0 of the register encoding.
    pub const OP0: Field = Field::new(20, 2);
    /// Op2 of the register encoding.
    pub const OP2: Field = Field::new(17, 3);
    /// Op1 of the register encoding.
    pub const OP1: Field = Field::new(14, 3);
    /// CRn of the register encoding.
    pub const CRN: Field = Field::new(10, 4);
    /// The general-purpose register transferred (31 = the zero register).
    pub const RT: Field = Field::new(5, 5);
    /// CRm of the register encoding.
    pub const CRM: Field = Field::new(1, 4);
    /// Direction: 1 for a read (MRS), 0 for a write (MSR).
    pub const DIRECTION_READ: Field = Field::bit(0);
}

/// ISS fields of a trapped WFx instruction (EC 0x01).
pub mod wfx {
    use super::Field;

    /// The register holding the WFIT/WFET timeout, valid when [`RV`] is set.
    pub const RN: Field = Field::new(5, 5);
    /// Register Valid: [`RN`] holds the timeout register.
    pub const RV: Field = Field::bit(2);
    /// Trapped Instruction: see the `TI_*` values.
    pub const TI: Field = Field::new(0, 2);
    /// [`TI`] value of WFI.
    pub const TI_WFI: u64 = 0b00;
    /// [`TI`] value of WFE.
    pub const TI_WFE: u64 = 0b01;
    /// [`TI`] value of WFIT.
    pub const TI_WFIT: u64 = 0b10;
    /// [`TI`] value of WFET.
    pub const TI_WFET: u64 = 0b11;
}

/// ISS field of HVC and SMC (EC 0x16, 0x17).
pub mod call {
    use super::Field;

    /// The instruction's 16-bit immediate.
    pub const IMM16: Field = Field::new(0, 16);
}

/// Fields of HPFAR_EL2, the faulting IPA of a stage-2 abort.
pub mod hpfar {
    use super::Field;

    /// Faulting IPA bits `[55:12]` (bits `[51:12]` or `[47:12]` on smaller IPA spaces; the unused
    /// top bits read as zero).
    pub const FIPA: Field = Field::new(4, 44);
    /// Where FIPA's bit 0 lands in the IPA.
    pub const FIPA_IPA_SHIFT: u32 = 12;
}

/// The byte offset within a 4 KiB page, taken from FAR_EL2 when combining it with HPFAR_EL2.
pub const PAGE_OFFSET: Field = Field::new(0, 12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_extract_and_place() {
        assert_eq!(EC.get(0x9381_0047), 0x24);
        assert!(IL.is_set(0x9381_0047));
        assert_eq!(abort::SRT.get(0x9381_0047), 1);
        assert_eq!(abort::SRT.place(0xff), 0x1f << 16);
        assert_eq!(Field::new(0, 64).mask(), u64::MAX);
        assert_eq!(Field::new(63, 1).get(u64::MAX), 1);
    }

    #[test]
    fn a_data_abort_at_el2_is_named_with_its_fault() {
        // EC=0x25, IL=1, ISS: WnR=0, DFSC=0b000101 (level-1 translation fault).
        let esr = 0x25 << 26 | 1 << 25 | 0b000101;
        let ec = EC.get(esr) as u8;
        assert!(class::is_abort(ec) && !class::is_abort(class::HVC64));
        assert_eq!(class::name(ec), "Data Abort at the current EL");
        assert_eq!(abort::fault_status_name(abort::FSC.get(esr)), "translation fault");
        assert_eq!(class::name(0x3f), "Reserved or unhandled class");
    }
}
