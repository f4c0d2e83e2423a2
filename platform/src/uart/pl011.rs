//! Arm PL011 UART (PrimeCell UART r1p5, DDI 0183), transmit side.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields![u32,
    /// Data register.
    DR [
        /// Byte to send / received byte.
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy sending.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 register block.
    Registers {
        (0x00 => dr: ReadWrite<u32, DR::Register>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => @END),
    }
}

/// A PL011 at a fixed address.
pub struct Pl011 {
    registers: *const Registers,
}

// SAFETY: the driver only performs volatile MMIO through a fixed pointer; callers serialize
// access with a lock.
unsafe impl Send for Pl011 {}
// SAFETY: as above.
unsafe impl Sync for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must address a PL011's register block, mapped as device memory.
    pub unsafe fn new(base: usize) -> Self {
        Self { registers: base as *const Registers }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract makes `registers` a valid MMIO block for our lifetime.
        unsafe { &*self.registers }
    }

    /// Turns on the UART and its transmitter if firmware did not (baud rate is left as set).
    pub fn enable(&self) {
        let cr = self.regs().cr.extract();
        if !cr.is_set(CR::UARTEN) || !cr.is_set(CR::TXE) {
            self.regs().cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        }
    }

    /// Sends one byte.
    pub fn put_byte(&self, byte: u8) {
        while self.regs().fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs().dr.write(DR::DATA.val(u32::from(byte)));
    }
}
