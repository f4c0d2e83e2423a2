//! The guest's general-purpose registers as trapped instructions name them: X0..X30, or the zero
//! register (encoding 31 in the load/store and MSR/MRS register fields, where it reads as zero
//! and ignores writes).

use core::fmt;

/// Number of general-purpose registers saved on a trap: X0..X30.
pub const NUM_GPRS: usize = 31;

/// The guest's X0..X30, as saved by the exception entry code.
pub type RegisterFile = [u64; NUM_GPRS];

/// The register field's encoding of the zero register (XZR/WZR).
const ZERO_REGISTER_ENCODING: u8 = 31;

/// A register operand of a trapped instruction: X0..X30 or the zero register.
///
/// Always valid by construction: the index is `0..=30`, or the zero register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Register(u8);

impl Register {
    /// The zero register (XZR/WZR): reads as 0, writes are discarded.
    pub const ZERO: Self = Self(ZERO_REGISTER_ENCODING);

    /// Xn for `n` in `0..=30`; `None` otherwise.
    pub const fn x(n: u8) -> Option<Self> {
        if (n as usize) < NUM_GPRS {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The register named by a 5-bit register field of a syndrome (bits above 5 are ignored);
    /// 31 is the zero register.
    pub const fn from_field(field: u64) -> Self {
        Self((field & 0x1f) as u8)
    }

    /// The index into a [`RegisterFile`], or `None` for the zero register.
    pub const fn index(self) -> Option<usize> {
        if (self.0 as usize) < NUM_GPRS {
            Some(self.0 as usize)
        } else {
            None
        }
    }

    /// Whether this is the zero register.
    pub const fn is_zero(self) -> bool {
        self.0 == ZERO_REGISTER_ENCODING
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index() {
            Some(n) => write!(f, "x{n}"),
            None => write!(f, "xzr"),
        }
    }
}

/// The value of `register` in `regs`: 0 for the zero register.
pub fn read(regs: &RegisterFile, register: Register) -> u64 {
    register
        .index()
        .and_then(|i| regs.get(i))
        .copied()
        .unwrap_or(0)
}

/// Writes `value` to `register` in `regs`; a write to the zero register is discarded.
pub fn write(regs: &mut RegisterFile, register: Register, value: u64) {
    if let Some(slot) = register.index().and_then(|i| regs.get_mut(i)) {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_registers_and_zero_register() {
        assert_eq!(Register::x(30).and_then(Register::index), Some(30));
        assert_eq!(Register::x(31), None);
        assert_eq!(Register::from_field(31), Register::ZERO);
        assert_eq!(Register::from_field(0x20 | 3), Register::x(3).unwrap());
        assert!(Register::ZERO.is_zero());
        assert_eq!(Register::ZERO.index(), None);
        assert_eq!(
            format!("{} {}", Register::x(7).unwrap(), Register::ZERO),
            "x7 xzr"
        );
    }

    #[test]
    fn zero_register_reads_zero_and_ignores_writes() {
        let mut regs = [0xaa; NUM_GPRS];
        write(&mut regs, Register::ZERO, 5);
        assert_eq!(regs, [0xaa; NUM_GPRS]);
        assert_eq!(read(&regs, Register::ZERO), 0);
        write(&mut regs, Register::x(4).unwrap(), 5);
        assert_eq!(read(&regs, Register::x(4).unwrap()), 5);
    }
}
