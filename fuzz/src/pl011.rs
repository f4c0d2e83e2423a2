//! The PL011 model: a refused access changes nothing; a read returns no bits beyond its size;
//! the RX FIFO never holds more than its depth; the interrupt line is UARTMIS != 0; a write
//! reports every line it completed; and the lines handed out are exactly the bytes the guest wrote to UARTDR, in order, none lost or
//! repeated (a `\r` before `\n` aside).

use vm::AccessSize;
use vm::pl011::{FRAME_SIZE, LINE_CAPACITY, LineEnd, Pl011, RX_FIFO_DEPTH, offset};

use crate::input::Input;

/// Runs the accesses, received bytes and flushes the bytes describe.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let mut uart = Pl011::new();
    let mut written = Vec::new();
    let mut output = Vec::new();
    let mut keep = |line: vm::pl011::Line| {
        assert!(line.as_bytes().len() <= LINE_CAPACITY);
        assert!(!line.as_bytes().contains(&b'\n'), "{line:?} holds a newline");
        match line.end() {
            LineEnd::Full => assert_eq!(line.as_bytes().len(), LINE_CAPACITY, "{line:?} is not full"),
            LineEnd::Flushed => assert!(!line.as_bytes().is_empty(), "an empty flushed line"),
            LineEnd::Newline => {}
        }
        output.extend_from_slice(line.as_bytes());
        if line.end() == LineEnd::Newline {
            output.push(b'\n');
        }
    };
    while !input.is_empty() {
        let kind = input.u8() % 4;
        let size = input.pick(&[AccessSize::Byte, AccessSize::Halfword, AccessSize::Word, AccessSize::Doubleword]);
        // Registers are word-spaced; reach a little past the frame too.
        let at = u64::from(input.u16()) % (FRAME_SIZE + 0x100);
        let value = input.u64();
        let before = format!("{uart:?}");
        match kind {
            0 => match uart.read(at, size) {
                Ok(read) => assert_eq!(read.value & !size.mask(), 0, "read of {at:#x} gave {:#x}", read.value),
                Err(_) => assert_eq!(format!("{uart:?}"), before, "a refused read changed the model"),
            },
            1 => match uart.write(at, size, value) {
                Ok(write) => {
                    if at == offset::DR {
                        written.push(value as u8);
                    }
                    if write.line_ready {
                        // The glue takes a completed line before the guest runs again.
                        keep(uart.take_line().expect("a ready line to take"));
                    }
                    assert_eq!(uart.take_line(), None, "a line waits that the write did not report");
                }
                Err(_) => assert_eq!(format!("{uart:?}"), before, "a refused write changed the model"),
            },
            2 => {
                uart.inject_rx(value as u8);
            }
            _ => {
                if let Some(line) = uart.flush() {
                    keep(line);
                }
            }
        }
        assert!(uart.rx_pending() <= RX_FIFO_DEPTH);
        assert!(uart.partial_line_len() < LINE_CAPACITY);
        assert_eq!(uart.irq_level(), uart.masked_interrupts() != 0);
        assert_eq!(uart.tx_bytes(), written.len() as u64);
    }
    while let Some(line) = uart.flush() {
        keep(line);
    }
    let strip = |bytes: &[u8]| bytes.iter().copied().filter(|&b| b != b'\r').collect::<Vec<u8>>();
    assert_eq!(strip(&output), strip(&written), "the guest's bytes and the lines differ");
}
