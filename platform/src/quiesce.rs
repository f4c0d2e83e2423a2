//! Quiescing passed-through devices at a guest restart: the register writes that stop each
//! allow-listed device from raising interrupts (and from running) whatever the dead guest
//! left it doing, so the next guest does not inherit a pending alarm, an armed GPIO edge or
//! an I2C transfer half done.
//!
//! One sequence per `compatible` on the boards' allow-lists ([`crate::board::Board`]'s
//! `passthrough`), from each block's reference manual: interrupt enables cleared, latched
//! status cleared where it is write-one-to-clear, the block disabled where that is
//! harmless. Clocks, pin muxing and data registers are left alone (the next guest's
//! driver sets them up as at a cold boot). A test keeps every allow-listed `compatible`
//! covered, so a device added to a list without a sequence fails the build's tests.

use alloc::vec::Vec;

use crate::passthrough::{Device, DeviceClass};

/// The width of a register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 32 bits.
    Word,
}

impl Width {
    /// Bytes accessed.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Byte => 1,
            Self::Word => 4,
        }
    }
}

/// One register write of a device's quiesce sequence, relative to its first `reg` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterWrite {
    /// Offset from the device's base.
    pub offset: u64,
    /// Access width.
    pub width: Width,
    /// The value written.
    pub value: u32,
}

const fn word(offset: u64, value: u32) -> RegisterWrite {
    RegisterWrite { offset, width: Width::Word, value }
}

/// Arm PL031 RTC: RTCIMSC (0x10) masks the alarm, RTCICR (0x1c) clears a latched one.
const PL031: &[RegisterWrite] = &[word(0x10, 0), word(0x1c, 1)];
/// Arm PL061 GPIO: GPIOIE (0x410) masks every line, GPIOIC (0x41c) clears latched edges.
const PL061: &[RegisterWrite] = &[word(0x410, 0), word(0x41c, 0xff)];
/// BCM2835/BCM2711 GPIO: the rising, falling, high, low, async-rising and async-falling
/// detect enables of both banks (0x4c–0x8c) off, then the event status (GPEDS0/1, 0x40 and
/// 0x44, write one to clear) cleared.
const BCM2835_GPIO: &[RegisterWrite] = &[
    word(0x4c, 0),
    word(0x50, 0),
    word(0x58, 0),
    word(0x5c, 0),
    word(0x64, 0),
    word(0x68, 0),
    word(0x70, 0),
    word(0x74, 0),
    word(0x7c, 0),
    word(0x80, 0),
    word(0x88, 0),
    word(0x8c, 0),
    word(0x40, 0xffff_ffff),
    word(0x44, 0xffff_ffff),
];
/// BCM2835 I2C (BSC): C (0x00) with the controller and its interrupt enables off and the
/// FIFO cleared (CLEAR, bits 5:4), then S (0x04) clearing CLKT, ERR and DONE (bits 9, 8, 1).
const BCM2835_I2C: &[RegisterWrite] = &[word(0x00, 0x30), word(0x04, 0x302)];
/// BCM2835 PWM: CTL (0x00) off (both channels disabled); DMAC (0x08) off, no DMA requests.
const BCM2835_PWM: &[RegisterWrite] = &[word(0x00, 0), word(0x08, 0)];
/// BCM2711 RNG200: RNG_CTRL (0x00) off, RNG_INT_ENABLE (0x1c) off, RNG_INT_STATUS (0x18,
/// write one to clear) cleared.
const BCM2711_RNG200: &[RegisterWrite] = &[word(0x00, 0), word(0x1c, 0), word(0x18, 0xffff_ffff)];
/// i.MX GPIO: IMR (0x14) masks every line, ISR (0x18, write one to clear) cleared.
const IMX_GPIO: &[RegisterWrite] = &[word(0x14, 0), word(0x18, 0xffff_ffff)];
/// i.MX I2C: I2CR (0x08; 8-bit accesses, registers 4 bytes apart on i.MX 8) with the module
/// and its interrupt disabled, then I2SR (0x0c) with the interrupt flag cleared.
const IMX_I2C: &[RegisterWrite] =
    &[RegisterWrite { offset: 0x08, width: Width::Byte, value: 0 }, RegisterWrite { offset: 0x0c, width: Width::Byte, value: 0 }];
/// i.MX PWM (v2): PWMCR (0x00) disabled, PWMIR (0x08) interrupts off, PWMSR (0x04, write one
/// to clear) cleared.
const IMX_PWM: &[RegisterWrite] = &[word(0x00, 0), word(0x08, 0), word(0x04, 0xff)];

/// Every known `compatible` with its sequence.
const SEQUENCES: &[(&str, &[RegisterWrite])] = &[
    ("arm,pl031", PL031),
    ("arm,pl061", PL061),
    ("brcm,bcm2711-gpio", BCM2835_GPIO),
    ("brcm,bcm2835-gpio", BCM2835_GPIO),
    ("brcm,bcm2835-i2c", BCM2835_I2C),
    ("brcm,bcm2835-pwm", BCM2835_PWM),
    ("brcm,bcm2711-rng200", BCM2711_RNG200),
    ("fsl,imx8mp-gpio", IMX_GPIO),
    ("fsl,imx35-gpio", IMX_GPIO),
    ("fsl,imx8mp-i2c", IMX_I2C),
    ("fsl,imx21-i2c", IMX_I2C),
    ("fsl,imx8mp-pwm", IMX_PWM),
    ("fsl,imx27-pwm", IMX_PWM),
];

/// The quiesce sequence of a device compatible with `compatible`, if one is known, with the
/// table's own copy of the name.
pub fn sequence(compatible: &str) -> Option<(&'static str, &'static [RegisterWrite])> {
    SEQUENCES.iter().find(|(known, _)| *known == compatible).copied()
}

/// One passed-through device's quiesce: absolute register writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuiesce {
    /// The device's base address (its first `reg` range), for the log.
    pub base: u64,
    /// The `compatible` whose sequence applies.
    pub compatible: &'static str,
    /// (address, width, value), in order.
    pub writes: Vec<(u64, Width, u32)>,
}

/// Why a passed-through device cannot be quiesced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unquiesced {
    /// None of its `compatible` strings has a sequence.
    NoSequence {
        /// The device's base address.
        base: u64,
    },
    /// A write of its sequence falls outside its first `reg` range.
    OutsideRegisters {
        /// The device's base address.
        base: u64,
        /// The offending offset.
        offset: u64,
    },
}

/// The quiesce plan for the passed-through devices among `devices`: one entry per device
/// with a sequence that fits its registers, and the devices left out, with why.
pub fn plan(devices: &[Device<'_>]) -> (Vec<DeviceQuiesce>, Vec<Unquiesced>) {
    let mut planned = Vec::new();
    let mut left_out = Vec::new();
    for device in devices.iter().filter(|d| d.class == DeviceClass::PassThrough) {
        let Some(registers) = device.regs.first() else { continue };
        let found = device.node.property("compatible").and_then(|p| p.strings().find_map(sequence));
        let Some((compatible, writes)) = found else {
            left_out.push(Unquiesced::NoSequence { base: registers.base });
            continue;
        };
        if let Some(bad) = writes.iter().find(|w| w.offset.checked_add(w.width.bytes()).is_none_or(|end| end > registers.size)) {
            left_out.push(Unquiesced::OutsideRegisters { base: registers.base, offset: bad.offset });
            continue;
        }
        let writes = writes.iter().map(|w| (registers.base + w.offset, w.width, w.value)).collect();
        planned.push(DeviceQuiesce { base: registers.base, compatible, writes });
    }
    (planned, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allow_listed_compatible_has_a_sequence() {
        for board in crate::board::ALL {
            for compatible in board.passthrough {
                let (name, _) = sequence(compatible).unwrap_or_else(|| panic!("{compatible} on {} has no quiesce sequence", board.name));
                assert_eq!(name, *compatible);
            }
        }
    }

    #[test]
    fn sequences_are_aligned_to_their_width() {
        for (compatible, writes) in SEQUENCES {
            for write in *writes {
                assert_eq!(write.offset % write.width.bytes(), 0, "{compatible} {write:?}");
            }
        }
    }
}
