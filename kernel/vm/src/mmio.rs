//! An emulated MMIO access as the Data Abort syndrome describes it, and how its result goes
//! back into (or its data comes out of) the guest's registers.
//!
//! The glue's flow for a trapped access ([`crate::Trap::DataAbort`]):
//! - store: `access.store_value(&regs)` gives the data, already masked to the access size, to
//!   hand to the emulated device at [`crate::fault_ipa`];
//! - load: read `access.size` bytes from the device, then `access.complete_load(&mut regs,
//!   data)` writes the register with the architectural zero or sign extension;
//! - both: resume the guest at [`crate::skip_instruction`].

use crate::error::Error;
use crate::gpr::{self, Register, RegisterFile};

/// How an emulated device model handled an access (the vGIC's and the PL011's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Access {
    /// A register the model implements (including the architecturally RAZ/WI ones, reads of
    /// write-only registers and writes to read-only ones, which the hardware ignores too).
    #[default]
    Emulated,
    /// An offset the model does not know (or, for the PL011, a write inside a register
    /// rather than at its first byte): read as zero, write ignored. Worth logging once.
    Unknown,
}

/// The size of a single-register load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessSize {
    /// 1 byte.
    Byte,
    /// 2 bytes.
    Halfword,
    /// 4 bytes.
    Word,
    /// 8 bytes.
    Doubleword,
}

impl AccessSize {
    /// The size from the syndrome's SAS field (log2 of the byte count; only the low 2 bits
    /// are used).
    pub const fn from_log2(sas: u64) -> Self {
        match sas & 0b11 {
            0 => Self::Byte,
            1 => Self::Halfword,
            2 => Self::Word,
            _ => Self::Doubleword,
        }
    }

    /// The size in bytes: 1, 2, 4 or 8.
    pub const fn bytes(self) -> u32 {
        match self {
            Self::Byte => 1,
            Self::Halfword => 2,
            Self::Word => 4,
            Self::Doubleword => 8,
        }
    }

    /// The size in bits: 8, 16, 32 or 64.
    pub const fn bits(self) -> u32 {
        self.bytes() * 8
    }

    /// A mask of the low [`Self::bits`] bits.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Doubleword => u64::MAX,
            _ => (1u64 << self.bits()) - 1,
        }
    }
}

/// A guest load or store of one general-purpose register that hit emulated MMIO, as decoded
/// from a Data Abort with a valid instruction syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// A store (WnR = 1) rather than a load.
    pub write: bool,
    /// The number of bytes accessed (SAS).
    pub size: AccessSize,
    /// The load sign-extends its result (SSE; LDRSB, LDRSH, LDRSW). Always false for stores.
    pub sign_extend: bool,
    /// The register loaded or stored (SRT); the zero register for `str xzr` or a discarded load.
    pub register: Register,
    /// The register is a 64-bit X register (SF); otherwise a 32-bit W register, whose upper
    /// half a load clears.
    pub sixty_four: bool,
    /// The instruction has acquire or release semantics (AR; LDAR, STLR, ...).
    pub acquire_release: bool,
}

impl MmioAccess {
    /// The value the destination register takes when the device returned `data` for this load:
    /// `data` cut to the access size, then sign- or zero-extended, then cut to 32 bits for a
    /// W register. Bits of `data` beyond the access size are ignored.
    pub const fn load_result(&self, data: u64) -> u64 {
        let data = data & self.size.mask();
        let bits = self.size.bits();
        let extended = if self.sign_extend && bits < 64 {
            let unused = 64 - bits;
            (((data << unused) as i64) >> unused) as u64
        } else {
            data
        };
        if self.sixty_four {
            extended
        } else {
            extended & AccessSize::Word.mask()
        }
    }

    /// Completes a load: writes [`Self::load_result`] of `data` to the destination register
    /// (nothing for the zero register). Fails, touching nothing, if this access is a store.
    pub fn complete_load(&self, regs: &mut RegisterFile, data: u64) -> Result<(), Error> {
        if self.write {
            return Err(Error::NotALoad);
        }
        gpr::write(regs, self.register, self.load_result(data));
        Ok(())
    }

    /// The data of a store, masked to the access size (the zero register stores 0). Fails if
    /// this access is a load.
    pub fn store_value(&self, regs: &RegisterFile) -> Result<u64, Error> {
        if !self.write {
            return Err(Error::NotAStore);
        }
        Ok(gpr::read(regs, self.register) & self.size.mask())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpr::NUM_GPRS;

    fn load(size: AccessSize, sign_extend: bool, sixty_four: bool, register: u8) -> MmioAccess {
        MmioAccess {
            write: false,
            size,
            sign_extend,
            register: Register::from_field(register.into()),
            sixty_four,
            acquire_release: false,
        }
    }

    #[test]
    fn sizes() {
        let all = [
            AccessSize::Byte,
            AccessSize::Halfword,
            AccessSize::Word,
            AccessSize::Doubleword,
        ];
        for (log2, size) in all.into_iter().enumerate() {
            assert_eq!(AccessSize::from_log2(log2 as u64), size);
            assert_eq!(size.bytes(), 1 << log2);
            assert_eq!(size.mask().count_ones(), size.bits());
        }
    }

    #[test]
    fn ldrsb_into_w_and_x_registers() {
        // ldrsb w2, [x0]: sign-extends to 32 bits, upper half cleared.
        let w = load(AccessSize::Byte, true, false, 2);
        assert_eq!(w.load_result(0x80), 0xffff_ff80);
        assert_eq!(w.load_result(0x7f), 0x7f);
        // ldrsb x2, [x0]: sign-extends to 64 bits.
        let x = load(AccessSize::Byte, true, true, 2);
        assert_eq!(x.load_result(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(
            x.load_result(0xffff_ff7f),
            0x7f,
            "bits beyond the byte are ignored"
        );
    }

    #[test]
    fn ldrsh_ldrsw_and_zero_extension() {
        assert_eq!(
            load(AccessSize::Halfword, true, true, 0).load_result(0x8001),
            0xffff_ffff_ffff_8001
        );
        assert_eq!(
            load(AccessSize::Halfword, true, false, 0).load_result(0x8001),
            0xffff_8001
        );
        assert_eq!(
            load(AccessSize::Word, true, true, 0).load_result(0x8000_0000),
            0xffff_ffff_8000_0000
        );
        assert_eq!(
            load(AccessSize::Halfword, false, true, 0).load_result(0xffff_8001),
            0x8001
        );
        assert_eq!(
            load(AccessSize::Word, false, false, 0).load_result(u64::MAX),
            0xffff_ffff
        );
        assert_eq!(
            load(AccessSize::Doubleword, false, true, 0).load_result(u64::MAX),
            u64::MAX
        );
        // An inconsistent 8-byte W load cannot come from decode, but still cannot panic.
        assert_eq!(
            load(AccessSize::Doubleword, true, false, 0).load_result(u64::MAX),
            0xffff_ffff
        );
    }

    #[test]
    fn complete_load_writes_only_the_destination() {
        let mut regs = [0x1111_2222_3333_4444; NUM_GPRS];
        load(AccessSize::Byte, false, false, 5)
            .complete_load(&mut regs, 0xabcd)
            .unwrap();
        assert_eq!(regs[5], 0xcd, "a W-register load clears the upper bits");
        assert!(
            regs.iter()
                .enumerate()
                .all(|(i, &r)| i == 5 || r == 0x1111_2222_3333_4444)
        );
        let before = regs;
        load(AccessSize::Word, false, true, 31)
            .complete_load(&mut regs, 7)
            .unwrap();
        assert_eq!(regs, before, "a load into xzr is discarded");
    }

    #[test]
    fn store_value_is_masked_and_xzr_stores_zero() {
        let mut regs = [0; NUM_GPRS];
        regs[3] = 0x1122_3344_5566_7788;
        let mut store = load(AccessSize::Halfword, false, false, 3);
        store.write = true;
        assert_eq!(store.store_value(&regs), Ok(0x7788));
        store.size = AccessSize::Doubleword;
        store.sixty_four = true;
        assert_eq!(store.store_value(&regs), Ok(0x1122_3344_5566_7788));
        store.register = Register::ZERO;
        assert_eq!(store.store_value(&regs), Ok(0));
    }

    #[test]
    fn loads_and_stores_are_not_confused() {
        let mut regs = [9; NUM_GPRS];
        let mut access = load(AccessSize::Word, false, true, 1);
        assert_eq!(access.store_value(&regs), Err(Error::NotAStore));
        access.write = true;
        assert_eq!(access.complete_load(&mut regs, 0), Err(Error::NotALoad));
        assert_eq!(regs, [9; NUM_GPRS]);
    }
}
