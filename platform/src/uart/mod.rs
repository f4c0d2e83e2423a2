//! Console UART drivers. Output only: the core writes its log; input comes later.

mod imx;
mod pl011;

pub use imx::ImxUart;
pub use pl011::Pl011;

/// Which UART block a console is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (QEMU virt, Raspberry Pi 4 UART0).
    Pl011,
    /// NXP i.MX UART (i.MX 8M).
    Imx,
}

/// A console UART at a fixed MMIO address.
pub enum Console {
    /// A PL011.
    Pl011(Pl011),
    /// An i.MX UART.
    Imx(ImxUart),
}

impl Console {
    /// Binds a driver of `kind` to the UART at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a UART of that kind, mapped as device memory (or with
    /// the MMU off), and nothing else may program it concurrently.
    pub unsafe fn new(kind: UartKind, base: usize) -> Self {
        match kind {
            // SAFETY: forwarded from the caller.
            UartKind::Pl011 => Self::Pl011(unsafe { Pl011::new(base) }),
            // SAFETY: forwarded from the caller.
            UartKind::Imx => Self::Imx(unsafe { ImxUart::new(base) }),
        }
    }

    /// Makes the transmitter usable if firmware left it off.
    pub fn enable(&self) {
        match self {
            Self::Pl011(u) => u.enable(),
            Self::Imx(u) => u.enable(),
        }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put_byte(&self, byte: u8) {
        match self {
            Self::Pl011(u) => u.put_byte(byte),
            Self::Imx(u) => u.put_byte(byte),
        }
    }

    /// Sends a string, turning `\n` into `\r\n`.
    pub fn write_str(&self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
    }
}
