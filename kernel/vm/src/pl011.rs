//! An emulated Arm PL011 UART (r1p5) for the guest's console, so the guest's output and the
//! core's log can share the board's one physical UART without cutting into each other.
//!
//! The model covers what Linux's `amba-pl011` driver and the `pl011` earlycon use: the data
//! register with an RX FIFO, the flag register, the baud rate and line control registers (kept
//! for read-back only: the emulated line has no speed), the interrupt mask, status and clear
//! registers, and the PrimeCell identification registers the AMBA bus matches the driver with.
//!
//! # Transmit: whole lines
//!
//! Each byte written to UARTDR goes into a line buffer. A line is complete when the guest ends
//! it (`\n`), when the buffer reaches [`LINE_CAPACITY`] bytes, or when the guest's driver goes
//! idle with a partial line pending (it clears the TX interrupt mask: Linux's `stop_tx`); the
//! write then says so ([`MmioWrite::line_ready`]) and the line waits in a second buffer until
//! the glue takes it with [`Pl011::take_line`], so a guest store never copies a line (the glue
//! takes it later, outside the trap's critical section). While a line waits, UARTFR reads TX
//! FIFO full (TXFF) and busy (BUSY); otherwise empty (TXFE). A line completed while another
//! still waits (a guest that ignored TXFF) is dropped and counted ([`Pl011::tx_dropped`]).
//! [`Pl011::flush`] takes the waiting line, else the partial one. The glue prints each
//! [`Line`] with one console write, so guest lines and the core's lines never interleave
//! mid-line.
//!
//! # Receive
//!
//! [`Pl011::inject_rx`] puts a byte into the RX FIFO ([`RX_FIFO_DEPTH`] entries, one when
//! UARTLCR_H.FEN is clear) if the receiver is enabled (UARTCR.UARTEN and RXE); a byte that
//! does not fit is dropped and reported as an overrun (UARTRSR.OE, UARTRIS.OEIS), as the
//! hardware does.
//!
//! # Interrupts
//!
//! - TXRIS is always set (even while a completed line waits: the glue takes it before the
//!   writing vCPU runs again). The guest controls the TX interrupt with UARTIMSC.TXIM alone
//!   (Linux enables it only while it has data queued).
//! - RXRIS is set while the RX FIFO holds at least the UARTIFLS.RXIFLSEL trigger level, RTRIS
//!   while it holds anything (the receive timeout, without the 32-bit-period delay). Both
//!   follow the FIFO: reading UARTDR clears them, UARTICR does not.
//! - OEIS (overrun) and the other error and modem bits are latched and cleared by UARTICR.
//!
//! [`Pl011::irq_level`] is the UARTINTR output (UARTMIS non-zero); the glue drives the guest's
//! virtual SPI with it after every access.
//!
//! # Accesses
//!
//! Byte, halfword and word accesses are accepted when naturally aligned; a doubleword access
//! is [`AccessError::BadSize`], a misaligned one [`AccessError::Misaligned`] (the glue injects
//! an abort). Registers are 32-bit slots: a read at a byte or halfword offset inside a slot
//! returns those bytes of the register; a write that does not start at the slot's first byte
//! is ignored and flagged [`Access::Unknown`]. Offsets the model does not know are RAZ/WI and
//! flagged [`Access::Unknown`]; writes to read-only registers are ignored.

use core::fmt;

use crate::mmio::AccessSize;

/// Size of the PL011 register frame (one 4 KiB page).
pub const FRAME_SIZE: u64 = 0x1000;
/// Entries in the RX FIFO when UARTLCR_H.FEN is set (r1p5's 32-entry FIFOs).
pub const RX_FIFO_DEPTH: usize = 32;
/// Most bytes of one [`Line`]: a longer line is handed out in pieces of this size.
pub const LINE_CAPACITY: usize = 256;

/// Register offsets in the frame.
pub mod offset {
    /// UARTDR: data (write: transmit a byte; read: the next received byte).
    pub const DR: u64 = 0x000;
    /// UARTRSR (read: receive status) / UARTECR (write: clear the error bits).
    pub const RSR_ECR: u64 = 0x004;
    /// UARTFR: flags (read only).
    pub const FR: u64 = 0x018;
    /// UARTILPR: IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// UARTIBRD: integer baud rate divisor.
    pub const IBRD: u64 = 0x024;
    /// UARTFBRD: fractional baud rate divisor.
    pub const FBRD: u64 = 0x028;
    /// UARTLCR_H: line control.
    pub const LCR_H: u64 = 0x02c;
    /// UARTCR: control.
    pub const CR: u64 = 0x030;
    /// UARTIFLS: interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// UARTIMSC: interrupt mask set/clear (1 = enabled).
    pub const IMSC: u64 = 0x038;
    /// UARTRIS: raw interrupt status (read only).
    pub const RIS: u64 = 0x03c;
    /// UARTMIS: masked interrupt status (read only).
    pub const MIS: u64 = 0x040;
    /// UARTICR: interrupt clear (write only).
    pub const ICR: u64 = 0x044;
    /// UARTDMACR: DMA control (kept for read-back; the model does no DMA).
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0: the first of the eight identification registers (PeriphID0-3,
    /// PCellID0-3), one byte each in consecutive words up to 0xffc.
    pub const PERIPH_ID0: u64 = 0xfe0;
    /// UARTPCellID3: the last identification register.
    pub const PCELL_ID3: u64 = 0xffc;
}

/// UARTFR bits.
pub mod flag {
    /// Clear to send (modem input; reads 0).
    pub const CTS: u32 = 1 << 0;
    /// The UART is busy transmitting (never: transmission is instant).
    pub const BUSY: u32 = 1 << 3;
    /// The RX FIFO is empty.
    pub const RXFE: u32 = 1 << 4;
    /// The TX FIFO is full (never).
    pub const TXFF: u32 = 1 << 5;
    /// The RX FIFO is full.
    pub const RXFF: u32 = 1 << 6;
    /// The TX FIFO is empty (always).
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits, as laid out in UARTIMSC, UARTRIS, UARTMIS and UARTICR.
pub mod interrupt {
    /// nUARTRI modem interrupt.
    pub const RIM: u32 = 1 << 0;
    /// nUARTCTS modem interrupt.
    pub const CTSM: u32 = 1 << 1;
    /// nUARTDCD modem interrupt.
    pub const DCDM: u32 = 1 << 2;
    /// nUARTDSR modem interrupt.
    pub const DSRM: u32 = 1 << 3;
    /// Receive: the RX FIFO reached its trigger level.
    pub const RX: u32 = 1 << 4;
    /// Transmit: the TX FIFO is at or below its trigger level.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout: the RX FIFO holds data.
    pub const RT: u32 = 1 << 6;
    /// Framing error.
    pub const FE: u32 = 1 << 7;
    /// Parity error.
    pub const PE: u32 = 1 << 8;
    /// Break error.
    pub const BE: u32 = 1 << 9;
    /// Overrun error: a received byte did not fit in the RX FIFO.
    pub const OE: u32 = 1 << 10;
    /// Every implemented interrupt bit.
    pub const ALL: u32 = 0x7ff;
    /// The bits that follow the FIFOs rather than being latched.
    pub const LEVEL: u32 = RX | TX | RT;
}

/// UARTCR bits the model looks at.
pub mod control {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
    /// The implemented bits (r1p5 has none in 3-6).
    pub const MASK: u32 = 0xff87;
}

/// UARTLCR_H bits the model looks at.
pub mod line_control {
    /// FIFO enable: without it, the FIFOs are one entry deep.
    pub const FEN: u32 = 1 << 4;
}

/// UARTRSR bits.
pub mod receive_status {
    /// Overrun error.
    pub const OE: u32 = 1 << 3;
}

/// The identification registers at [`offset::PERIPH_ID0`]..=[`offset::PCELL_ID3`]: a PL011
/// (part 0x011, designer Arm 0x41) revision r1p5, and the PrimeCell ID 0xb105f00d.
pub const ID_REGISTERS: [u8; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Width masks of the read/write registers.
const ILPR_MASK: u32 = 0xff;
const IBRD_MASK: u32 = 0xffff;
const FBRD_MASK: u32 = 0x3f;
const LCR_H_MASK: u32 = 0xff;
const IFLS_MASK: u32 = 0x3f;
const DMACR_MASK: u32 = 0x7;
/// UARTCR at reset: TXE and RXE set, the UART itself disabled.
const CR_RESET: u32 = control::TXE | control::RXE;
/// UARTIFLS at reset: both trigger levels at half full.
const IFLS_RESET: u32 = 0x12;
/// The RX trigger level field of UARTIFLS (RXIFLSEL).
const IFLS_RX_SHIFT: u32 = 3;

/// How an access was handled (shared with the other device models).
pub use crate::mmio::Access;

/// Why the model refused an access (the glue injects an abort).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessError {
    /// A doubleword access: the PL011's registers take bytes, halfwords and words.
    BadSize,
    /// The offset is not a multiple of the access size.
    Misaligned,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSize => "PL011 registers take byte, halfword and word accesses",
            Self::Misaligned => "misaligned PL011 access",
        })
    }
}

/// The result of a guest read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioRead {
    /// The value, zero-extended from the access size.
    pub value: u64,
    /// Whether the register is known.
    pub access: Access,
}

/// The result of a guest write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioWrite {
    /// Whether the register is known.
    pub access: Access,
    /// The write completed a line of guest output: [`Pl011::take_line`] has it, to print whole.
    pub line_ready: bool,
}

/// Why a [`Line`] was handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineEnd {
    /// The guest wrote `\n` (not part of the line; nor is a `\r` just before it).
    Newline,
    /// The line reached [`LINE_CAPACITY`] bytes; the rest follows in the next [`Line`].
    Full,
    /// A partial line: the guest's driver went idle, or the glue called [`Pl011::flush`].
    Flushed,
}

/// A piece of guest output ending at a line boundary (or cut, see [`LineEnd`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Line {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
    end: LineEnd,
}

impl Line {
    /// The bytes the guest wrote, without the line terminator.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    /// Why the line ended.
    pub const fn end(&self) -> LineEnd {
        self.end
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("text", &format_args!("{self}"))
            .field("end", &self.end)
            .finish()
    }
}

/// The line as text: valid UTF-8 as is (control characters included, so the guest's terminal
/// escapes still work), each byte that is not valid UTF-8 as `\xNN`.
impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// The emulated PL011's state.
#[derive(Clone, Debug)]
pub struct Pl011 {
    /// The RX FIFO, a ring of `rx_len` bytes from `rx_head`.
    rx: [u8; RX_FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// UARTRSR.
    receive_status: u32,
    /// Latched raw interrupt bits (errors, modem); the level bits are computed.
    latched: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    /// The transmit line buffers: the guest fills `lines[filling]`; a completed line waits
    /// in the other one.
    lines: [[u8; LINE_CAPACITY]; 2],
    filling: usize,
    line_len: usize,
    /// The completed line waiting in `lines[filling ^ 1]`: its length and end.
    ready: Option<(usize, LineEnd)>,
    /// Bytes the guest transmitted.
    tx_bytes: u64,
    /// Bytes of lines completed while another still waited, dropped.
    tx_dropped: u64,
    /// Received bytes dropped because the RX FIFO was full or the receiver disabled.
    rx_dropped: u64,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A PL011 in its reset state (UART disabled, TXE and RXE set, FIFOs disabled, every
    /// interrupt masked), with empty FIFOs and line buffer.
    pub const fn new() -> Self {
        Self {
            rx: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            receive_status: 0,
            latched: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
            lines: [[0; LINE_CAPACITY]; 2],
            filling: 0,
            line_len: 0,
            ready: None,
            tx_bytes: 0,
            tx_dropped: 0,
            rx_dropped: 0,
        }
    }

    /// A guest load of `size` at `offset` in the frame. Reading UARTDR takes a byte from the
    /// RX FIFO (0 if it is empty).
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<MmioRead, AccessError> {
        check(offset, size)?;
        let slot = offset & !3;
        let (value, access) = match slot {
            offset::DR => (self.pop_rx().map_or(0, u32::from), Access::Emulated),
            offset::RSR_ECR => (self.receive_status, Access::Emulated),
            offset::FR => (self.flags(), Access::Emulated),
            offset::ILPR => (self.ilpr, Access::Emulated),
            offset::IBRD => (self.ibrd, Access::Emulated),
            offset::FBRD => (self.fbrd, Access::Emulated),
            offset::LCR_H => (self.lcr_h, Access::Emulated),
            offset::CR => (self.cr, Access::Emulated),
            offset::IFLS => (self.ifls, Access::Emulated),
            offset::IMSC => (self.imsc, Access::Emulated),
            offset::RIS => (self.raw_interrupts(), Access::Emulated),
            offset::MIS => (self.masked_interrupts(), Access::Emulated),
            offset::ICR => (0, Access::Emulated),
            offset::DMACR => (self.dmacr, Access::Emulated),
            offset::PERIPH_ID0..=offset::PCELL_ID3 => {
                let index = ((slot - offset::PERIPH_ID0) / 4) as usize;
                (
                    ID_REGISTERS.get(index).copied().map_or(0, u32::from),
                    Access::Emulated,
                )
            }
            _ => (0, Access::Unknown),
        };
        let shifted = u64::from(value) >> ((offset & 3) * 8);
        Ok(MmioRead {
            value: shifted & size.mask(),
            access,
        })
    }

    /// A guest store of `value` (`size` bytes) at `offset` in the frame. A byte written to
    /// UARTDR may complete a [`Line`]; clearing UARTIMSC.TXIM with a partial line pending
    /// completes it. Constant time: a completed line is not copied ([`Pl011::take_line`]).
    pub fn write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<MmioWrite, AccessError> {
        check(offset, size)?;
        let mut outcome = MmioWrite {
            access: Access::Emulated,
            line_ready: false,
        };
        if offset & 3 != 0 {
            outcome.access = Access::Unknown;
            return Ok(outcome);
        }
        let value = (value & size.mask()) as u32;
        match offset {
            offset::DR => outcome.line_ready = self.transmit(value as u8),
            offset::RSR_ECR => self.receive_status = 0,
            offset::ILPR => self.ilpr = value & ILPR_MASK,
            offset::IBRD => self.ibrd = value & IBRD_MASK,
            offset::FBRD => self.fbrd = value & FBRD_MASK,
            offset::LCR_H => {
                self.lcr_h = value & LCR_H_MASK;
                // The RX FIFO shrinks to one entry without FEN: keep the oldest byte.
                self.rx_len = self.rx_len.min(self.rx_depth());
            }
            offset::CR => self.cr = value & control::MASK,
            offset::IFLS => self.ifls = value & IFLS_MASK,
            offset::IMSC => {
                let was_transmitting = self.imsc & interrupt::TX != 0;
                self.imsc = value & interrupt::ALL;
                if was_transmitting && self.imsc & interrupt::TX == 0 {
                    outcome.line_ready = self.complete(LineEnd::Flushed, false);
                }
            }
            offset::ICR => self.latched &= !(value & interrupt::ALL),
            offset::DMACR => self.dmacr = value & DMACR_MASK,
            offset::FR | offset::RIS | offset::MIS | offset::PERIPH_ID0..=offset::PCELL_ID3 => {}
            _ => outcome.access = Access::Unknown,
        }
        Ok(outcome)
    }

    /// Puts `byte` into the RX FIFO, as if the line received it. False if it was dropped:
    /// the receiver is disabled (UARTCR.UARTEN or RXE clear), or the FIFO is full (an
    /// overrun: UARTRSR.OE and UARTRIS.OEIS are set).
    pub fn inject_rx(&mut self, byte: u8) -> bool {
        let enabled = control::UARTEN | control::RXE;
        if self.cr & enabled != enabled {
            self.rx_dropped += 1;
            return false;
        }
        if self.rx_len >= self.rx_depth() {
            self.receive_status |= receive_status::OE;
            self.latched |= interrupt::OE;
            self.rx_dropped += 1;
            return false;
        }
        let tail = (self.rx_head + self.rx_len) % RX_FIFO_DEPTH;
        self.rx[tail] = byte;
        self.rx_len += 1;
        true
    }

    /// Takes the completed line waiting to be printed, if any.
    pub fn take_line(&mut self) -> Option<Line> {
        let (len, end) = self.ready.take()?;
        let bytes = self.lines.get(self.filling ^ 1).copied().unwrap_or([0; LINE_CAPACITY]);
        Some(Line { bytes, len: len.min(LINE_CAPACITY), end })
    }

    /// Takes the completed line waiting, else the partial line being transmitted, if any
    /// ([`LineEnd::Flushed`]); call until `None` to take everything.
    pub fn flush(&mut self) -> Option<Line> {
        if self.ready.is_none() {
            self.complete(LineEnd::Flushed, false);
        }
        self.take_line()
    }

    /// The UARTINTR output: some enabled interrupt is raised (UARTMIS is not zero).
    pub fn irq_level(&self) -> bool {
        self.masked_interrupts() != 0
    }

    /// UARTRIS: the raw interrupt status.
    pub fn raw_interrupts(&self) -> u32 {
        let mut raw = self.latched | interrupt::TX;
        if self.rx_len > 0 {
            raw |= interrupt::RT;
        }
        if self.rx_len >= self.rx_trigger_level() {
            raw |= interrupt::RX;
        }
        raw
    }

    /// UARTMIS: the raw interrupt status masked by UARTIMSC.
    pub fn masked_interrupts(&self) -> u32 {
        self.raw_interrupts() & self.imsc
    }

    /// UARTFR: TXFF and BUSY while a completed line waits to be taken, else TXFE; RXFE or
    /// RXFF by the RX FIFO.
    pub fn flags(&self) -> u32 {
        let mut flags = if self.ready.is_some() { flag::TXFF | flag::BUSY } else { flag::TXFE };
        if self.rx_len == 0 {
            flags |= flag::RXFE;
        }
        if self.rx_len >= self.rx_depth() {
            flags |= flag::RXFF;
        }
        flags
    }

    /// Bytes waiting in the RX FIFO.
    pub fn rx_pending(&self) -> usize {
        self.rx_len
    }

    /// Bytes of the line being transmitted, not yet handed out.
    pub fn partial_line_len(&self) -> usize {
        self.line_len
    }

    /// Bytes the guest transmitted so far.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes
    }

    /// Bytes of completed lines dropped because the previous line was still waiting.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// Received bytes dropped so far (receiver disabled, or FIFO overrun).
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    /// The RX FIFO's depth: [`RX_FIFO_DEPTH`] with FIFOs enabled, else 1.
    fn rx_depth(&self) -> usize {
        if self.lcr_h & line_control::FEN != 0 {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    /// The RX FIFO level at which RXRIS is set (UARTIFLS.RXIFLSEL: 1/8, 1/4, 1/2, 3/4 or
    /// 7/8 full; the reserved encodings act as 1/2). Always at least one byte.
    fn rx_trigger_level(&self) -> usize {
        if self.lcr_h & line_control::FEN == 0 {
            return 1;
        }
        let eighths = match (self.ifls >> IFLS_RX_SHIFT) & 0b111 {
            0 => 1,
            1 => 2,
            3 => 6,
            4 => 7,
            _ => 4,
        };
        (RX_FIFO_DEPTH * eighths / 8).max(1)
    }

    /// Takes the oldest byte of the RX FIFO.
    fn pop_rx(&mut self) -> Option<u8> {
        if self.rx_len == 0 {
            return None;
        }
        let byte = self.rx[self.rx_head % RX_FIFO_DEPTH];
        self.rx_head = (self.rx_head + 1) % RX_FIFO_DEPTH;
        self.rx_len -= 1;
        Some(byte)
    }

    /// Adds a transmitted byte to the line buffer; true if it completed a line.
    fn transmit(&mut self, byte: u8) -> bool {
        self.tx_bytes += 1;
        if byte == b'\n' {
            if self.line_len > 0 && self.filling_line().get(self.line_len - 1) == Some(&b'\r') {
                self.line_len -= 1;
            }
            return self.complete(LineEnd::Newline, true);
        }
        let len = self.line_len;
        if let Some(slot) = self.lines.get_mut(self.filling).and_then(|line| line.get_mut(len)) {
            *slot = byte;
            self.line_len += 1;
        }
        self.line_len >= LINE_CAPACITY && self.complete(LineEnd::Full, false)
    }

    /// The buffer being filled.
    fn filling_line(&self) -> &[u8] {
        self.lines.get(self.filling).map_or(&[], |line| line.as_slice())
    }

    /// Completes the line being filled (an empty one only if `empty_too`): it waits for
    /// [`Pl011::take_line`] and the other buffer is filled next. Dropped and counted if a
    /// line still waits. True if a line now waits that did not before.
    fn complete(&mut self, end: LineEnd, empty_too: bool) -> bool {
        if self.line_len == 0 && !empty_too {
            return false;
        }
        if self.ready.is_some() {
            self.tx_dropped += self.line_len as u64;
            self.line_len = 0;
            return false;
        }
        self.ready = Some((self.line_len.min(LINE_CAPACITY), end));
        self.filling ^= 1;
        self.line_len = 0;
        true
    }
}

/// Checks an access's size and alignment.
fn check(offset: u64, size: AccessSize) -> Result<(), AccessError> {
    if size == AccessSize::Doubleword {
        return Err(AccessError::BadSize);
    }
    if !offset.is_multiple_of(u64::from(size.bytes())) {
        return Err(AccessError::Misaligned);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
