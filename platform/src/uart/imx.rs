//! NXP i.MX UART (i.MX 8M Plus reference manual, chapter "UART"), transmit side.

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    /// Transmitter register.
    UTXD [
        /// Byte to send.
        TX_DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Control register 1.
    UCR1 [
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Control register 2.
    UCR2 [
        /// Software reset, active low: 1 = not in reset.
        SRST OFFSET(0) NUMBITS(1) [],
        /// Receiver enable.
        RXEN OFFSET(1) NUMBITS(1) [],
        /// Transmitter enable.
        TXEN OFFSET(2) NUMBITS(1) [],
        /// Word size: 1 = 8 data bits.
        WS OFFSET(5) NUMBITS(1) [],
        /// Ignore the RTS pin.
        IRTS OFFSET(14) NUMBITS(1) []
    ],
    /// Test register.
    UTS [
        /// Transmit FIFO full.
        TXFULL OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// i.MX UART register block.
    Registers {
        (0x00 => _urxd),
        (0x40 => utxd: WriteOnly<u32, UTXD::Register>),
        (0x44 => _reserved0),
        (0x80 => ucr1: ReadWrite<u32, UCR1::Register>),
        (0x84 => ucr2: ReadWrite<u32, UCR2::Register>),
        (0x88 => _reserved1),
        (0xb4 => uts: ReadOnly<u32, UTS::Register>),
        (0xb8 => @END),
    }
}

/// An i.MX UART at a fixed address.
pub struct ImxUart {
    registers: *const Registers,
}

// SAFETY: volatile MMIO through a fixed pointer; callers serialize access with a lock.
unsafe impl Send for ImxUart {}
// SAFETY: as above.
unsafe impl Sync for ImxUart {}

impl ImxUart {
    /// # Safety
    /// `base` must address an i.MX UART's register block, mapped as device memory.
    pub unsafe fn new(base: usize) -> Self {
        Self { registers: base as *const Registers }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract makes `registers` a valid MMIO block for our lifetime.
        unsafe { &*self.registers }
    }

    /// Enables the UART and transmitter (8 data bits) if firmware left them off.
    pub fn enable(&self) {
        if !self.regs().ucr1.is_set(UCR1::UARTEN) {
            self.regs().ucr1.modify(UCR1::UARTEN::SET);
        }
        let ucr2 = self.regs().ucr2.extract();
        if !ucr2.is_set(UCR2::TXEN) || !ucr2.is_set(UCR2::SRST) {
            self.regs().ucr2.write(
                UCR2::SRST::SET + UCR2::RXEN::SET + UCR2::TXEN::SET + UCR2::WS::SET + UCR2::IRTS::SET,
            );
        }
    }

    /// Sends one byte.
    pub fn put_byte(&self, byte: u8) {
        while self.regs().uts.is_set(UTS::TXFULL) {
            core::hint::spin_loop();
        }
        self.regs().utxd.write(UTXD::TX_DATA.val(u32::from(byte)));
    }
}
