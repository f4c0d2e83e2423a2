//! Host tests of the PL011 model: Linux's probe and init sequence, console writes, the flag
//! and identification registers, interrupts, RX injection, line buffering, and random accesses.

use super::*;
use crate::test_util::XorShift;

const WORD: AccessSize = AccessSize::Word;
const HALF: AccessSize = AccessSize::Halfword;
const BYTE: AccessSize = AccessSize::Byte;

fn read(uart: &mut Pl011, offset: u64) -> u32 {
    let read = uart.read(offset, WORD).unwrap();
    assert_eq!(read.access, Access::Emulated, "offset {offset:#x}");
    read.value as u32
}

fn write(uart: &mut Pl011, offset: u64, value: u32) -> Option<Line> {
    let write = uart.write(offset, WORD, value.into()).unwrap();
    assert_eq!(write.access, Access::Emulated, "offset {offset:#x}");
    assert_eq!(write.line_ready, uart.flags() & flag::TXFF != 0);
    uart.take_line()
}

/// Writes one byte to UARTDR (an access of `size`) and takes the line it completed, as the
/// glue does before the guest runs again.
fn transmit(uart: &mut Pl011, size: AccessSize, byte: u8) -> Option<Line> {
    let write = uart.write(offset::DR, size, byte.into()).unwrap();
    assert_eq!(write.line_ready, uart.flags() & flag::TXFF != 0);
    uart.take_line()
}

/// Writes `text` byte by byte to UARTDR, as a console does, and collects the lines.
fn send(uart: &mut Pl011, text: &str) -> Vec<Line> {
    text.bytes().filter_map(|b| transmit(uart, HALF, b)).collect()
}

fn text(line: &Line) -> String {
    line.to_string()
}

/// What Linux's amba-pl011 does from probe to an open port: AMBA ID match, hwinit, startup
/// with interrupts, termios at 115200 8N1 with FIFOs.
fn linux_init(uart: &mut Pl011) {
    let id: Vec<u32> = (0..8)
        .map(|i| read(uart, offset::PERIPH_ID0 + 4 * i))
        .collect();
    let periph = id[..4]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (b & 0xff) << (8 * i));
    let cell = id[4..]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (b & 0xff) << (8 * i));
    assert_eq!(
        periph & 0x000f_ffff,
        0x0004_1011,
        "amba-pl011's match: part 0x011, designer 0x41"
    );
    assert_eq!(cell, 0xb105_f00d);
    // pl011_hwinit: clear every interrupt, save the mask.
    write(uart, offset::ICR, interrupt::ALL);
    let _ = read(uart, offset::IMSC);
    // pl011_startup.
    write(uart, offset::IFLS, 0x12);
    write(
        uart,
        offset::CR,
        control::UARTEN | control::TXE | control::RXE | (1 << 11),
    );
    write(uart, offset::ICR, interrupt::ALL);
    for _ in 0..64 {
        if read(uart, offset::FR) & flag::RXFE != 0 {
            break;
        }
        let _ = read(uart, offset::DR);
    }
    write(uart, offset::IMSC, interrupt::RT | interrupt::RX);
    // pl011_set_termios: 24 MHz / (16 * 115200) = 13.02.
    write(uart, offset::IBRD, 13);
    write(uart, offset::FBRD, 1);
    write(uart, offset::LCR_H, 0x70); // 8 bits, FIFOs enabled
}

#[test]
fn identification_registers_are_a_pl011_r1p5() {
    let mut uart = Pl011::new();
    for (i, &byte) in ID_REGISTERS.iter().enumerate() {
        assert_eq!(
            read(&mut uart, offset::PERIPH_ID0 + 4 * i as u64),
            byte.into()
        );
    }
    assert_eq!(read(&mut uart, offset::PCELL_ID3), 0xb1);
    // Read only.
    write(&mut uart, offset::PERIPH_ID0, 0xff);
    assert_eq!(read(&mut uart, offset::PERIPH_ID0), 0x11);
}

#[test]
fn linux_init_and_console_writes_come_out_as_whole_lines() {
    let mut uart = Pl011::new();
    linux_init(&mut uart);
    assert_eq!(read(&mut uart, offset::IBRD), 13);
    assert_eq!(read(&mut uart, offset::FBRD), 1);
    assert_eq!(read(&mut uart, offset::LCR_H), 0x70);
    assert!(!uart.irq_level(), "RX empty, TX masked");
    // pl011_console_putchar: poll TXFF, write DR; uart_console_write sends "\r\n".
    let mut lines = Vec::new();
    for byte in "[    0.000000] Booting Linux\r\nguest: uname: Linux 6.1 PREEMPT_RT\r\n".bytes() {
        assert_eq!(read(&mut uart, offset::FR) & flag::TXFF, 0);
        lines.extend(write(&mut uart, offset::DR, byte.into()));
        assert_eq!(read(&mut uart, offset::FR) & flag::BUSY, 0);
    }
    let texts: Vec<String> = lines.iter().map(text).collect();
    assert_eq!(
        texts,
        [
            "[    0.000000] Booting Linux",
            "guest: uname: Linux 6.1 PREEMPT_RT"
        ]
    );
    assert!(lines.iter().all(|l| l.end() == LineEnd::Newline));
    assert_eq!(uart.tx_bytes(), 66);
    assert_eq!(uart.partial_line_len(), 0);
}

#[test]
fn earlycon_byte_writes_work_before_any_setup() {
    let mut uart = Pl011::new();
    let lines = send(&mut uart, "earlycon\n");
    assert_eq!(lines.len(), 1);
    assert_eq!(text(&lines[0]), "earlycon");
    let byte = uart.write(offset::DR, BYTE, 0x41).unwrap();
    assert_eq!((byte.access, byte.line_ready), (Access::Emulated, false));
    assert_eq!(uart.flush().map(|l| text(&l)), Some("A".into()));
}

#[test]
fn flag_register_follows_the_rx_fifo() {
    let mut uart = Pl011::new();
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE | flag::RXFE);
    linux_init(&mut uart);
    assert!(uart.inject_rx(b'x'));
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE);
    for i in 1..RX_FIFO_DEPTH {
        assert!(uart.inject_rx(i as u8));
    }
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE | flag::RXFF);
    assert_eq!(read(&mut uart, offset::DR), u32::from(b'x'));
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE);
    for _ in 1..RX_FIFO_DEPTH {
        let _ = read(&mut uart, offset::DR);
    }
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE | flag::RXFE);
    assert_eq!(read(&mut uart, offset::DR), 0, "an empty FIFO reads 0");
}

#[test]
fn tx_interrupt_follows_its_mask_only() {
    let mut uart = Pl011::new();
    linux_init(&mut uart);
    assert_eq!(read(&mut uart, offset::RIS) & interrupt::TX, interrupt::TX);
    assert_eq!(read(&mut uart, offset::MIS), 0);
    write(
        &mut uart,
        offset::IMSC,
        interrupt::RX | interrupt::RT | interrupt::TX,
    );
    assert!(uart.irq_level());
    assert_eq!(read(&mut uart, offset::MIS), interrupt::TX);
    // ICR cannot clear a level condition: the TX FIFO is still empty.
    write(&mut uart, offset::ICR, interrupt::TX);
    assert!(uart.irq_level());
    write(&mut uart, offset::IMSC, interrupt::RX | interrupt::RT);
    assert!(!uart.irq_level());
    assert_eq!(read(&mut uart, offset::IMSC), interrupt::RX | interrupt::RT);
}

#[test]
fn rx_interrupts_follow_the_fifo_and_the_trigger_level() {
    let mut uart = Pl011::new();
    linux_init(&mut uart);
    assert!(uart.inject_rx(b'a'));
    assert_eq!(
        read(&mut uart, offset::MIS),
        interrupt::RT,
        "below the 1/2 trigger: timeout only"
    );
    assert!(uart.irq_level());
    for _ in 1..RX_FIFO_DEPTH / 2 {
        assert!(uart.inject_rx(b'b'));
    }
    assert_eq!(read(&mut uart, offset::MIS), interrupt::RT | interrupt::RX);
    write(&mut uart, offset::ICR, interrupt::RT | interrupt::RX);
    assert!(uart.irq_level(), "ICR does not empty the FIFO");
    // 1/8 trigger level.
    write(&mut uart, offset::IFLS, 0);
    assert_eq!(read(&mut uart, offset::IFLS), 0);
    while read(&mut uart, offset::FR) & flag::RXFE == 0 {
        let _ = read(&mut uart, offset::DR);
    }
    assert!(!uart.irq_level());
    assert_eq!(
        read(&mut uart, offset::RIS) & (interrupt::RX | interrupt::RT),
        0
    );
    for _ in 0..RX_FIFO_DEPTH / 8 {
        uart.inject_rx(b'c');
    }
    assert_eq!(read(&mut uart, offset::MIS), interrupt::RT | interrupt::RX);
    write(&mut uart, offset::IMSC, 0);
    assert!(!uart.irq_level());
}

#[test]
fn rx_overrun_is_latched_until_cleared() {
    let mut uart = Pl011::new();
    linux_init(&mut uart);
    write(&mut uart, offset::IMSC, interrupt::OE);
    for _ in 0..RX_FIFO_DEPTH {
        assert!(uart.inject_rx(b'z'));
    }
    assert!(!uart.irq_level());
    assert!(!uart.inject_rx(b'!'));
    assert_eq!(uart.rx_dropped(), 1);
    assert!(uart.irq_level());
    assert_eq!(read(&mut uart, offset::RSR_ECR), receive_status::OE);
    write(&mut uart, offset::RSR_ECR, 0);
    assert_eq!(read(&mut uart, offset::RSR_ECR), 0);
    write(&mut uart, offset::ICR, interrupt::OE);
    assert!(!uart.irq_level());
    assert_eq!(uart.rx_pending(), RX_FIFO_DEPTH);
}

#[test]
fn rx_needs_the_receiver_enabled_and_fifo_depth_follows_fen() {
    let mut uart = Pl011::new();
    assert!(!uart.inject_rx(b'a'), "UARTEN is clear at reset");
    write(&mut uart, offset::CR, control::UARTEN | control::RXE);
    assert!(uart.inject_rx(b'a'));
    assert!(!uart.inject_rx(b'b'), "without FEN the FIFO holds one byte");
    assert_eq!(read(&mut uart, offset::FR) & flag::RXFF, flag::RXFF);
    assert_eq!(read(&mut uart, offset::DR), u32::from(b'a'));
    write(&mut uart, offset::LCR_H, line_control::FEN);
    assert!(uart.inject_rx(b'c') && uart.inject_rx(b'd'));
    write(&mut uart, offset::LCR_H, 0);
    assert_eq!(uart.rx_pending(), 1);
    assert_eq!(read(&mut uart, offset::DR), u32::from(b'c'));
    write(&mut uart, offset::CR, control::UARTEN);
    assert!(!uart.inject_rx(b'e'), "RXE clear");
}

#[test]
fn long_lines_are_cut_and_crlf_is_one_terminator() {
    let mut uart = Pl011::new();
    let long = "x".repeat(LINE_CAPACITY + 10);
    let lines = send(&mut uart, &long);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].end(), LineEnd::Full);
    assert_eq!(lines[0].as_bytes().len(), LINE_CAPACITY);
    let rest = send(&mut uart, "\r\n");
    assert_eq!(text(&rest[0]), "x".repeat(10));
    // An empty line is still a line; a lone \r stays.
    let lines = send(&mut uart, "\n\ra\rb\r\n");
    let texts: Vec<String> = lines.iter().map(text).collect();
    assert_eq!(texts, ["", "\ra\rb"]);
    assert_eq!(uart.flush(), None);
}

#[test]
fn going_idle_flushes_a_partial_line() {
    let mut uart = Pl011::new();
    linux_init(&mut uart);
    // The tty layer: enable TXIM, send from the interrupt, stop TX when the buffer is empty.
    write(
        &mut uart,
        offset::IMSC,
        interrupt::RX | interrupt::RT | interrupt::TX,
    );
    assert!(send(&mut uart, "# ").is_empty());
    let line = write(&mut uart, offset::IMSC, interrupt::RX | interrupt::RT).unwrap();
    assert_eq!((text(&line), line.end()), ("# ".into(), LineEnd::Flushed));
    // Clearing a mask that was already clear flushes nothing.
    assert!(send(&mut uart, "ab").is_empty());
    assert_eq!(write(&mut uart, offset::IMSC, interrupt::RX), None);
    assert_eq!(uart.partial_line_len(), 2);
}

#[test]
fn invalid_utf8_is_escaped() {
    let mut uart = Pl011::new();
    let mut lines = Vec::new();
    for byte in [b'o', b'k', 0xff, 0xc3, 0xa9, b'\x1b', b'\n'] {
        lines.extend(transmit(&mut uart, BYTE, byte));
    }
    assert_eq!(text(&lines[0]), "ok\\xffé\u{1b}");
}

#[test]
fn sizes_alignment_and_unknown_offsets() {
    let mut uart = Pl011::new();
    assert_eq!(
        uart.read(offset::FR, AccessSize::Doubleword),
        Err(AccessError::BadSize)
    );
    assert_eq!(
        uart.write(offset::DR, AccessSize::Doubleword, 0x41),
        Err(AccessError::BadSize)
    );
    assert_eq!(
        uart.read(offset::FR + 1, HALF),
        Err(AccessError::Misaligned)
    );
    assert_eq!(
        uart.write(offset::CR + 2, WORD, 0),
        Err(AccessError::Misaligned)
    );
    // Sub-word reads return those bytes of the register.
    write(&mut uart, offset::IBRD, 0x1234);
    assert_eq!(uart.read(offset::IBRD, BYTE).unwrap().value, 0x34);
    assert_eq!(uart.read(offset::IBRD + 1, BYTE).unwrap().value, 0x12);
    assert_eq!(uart.read(offset::IBRD + 2, HALF).unwrap().value, 0);
    // Writes inside a register are ignored and flagged.
    let inside = uart.write(offset::IBRD + 1, BYTE, 0xff).unwrap();
    assert_eq!(inside.access, Access::Unknown);
    assert_eq!(read(&mut uart, offset::IBRD), 0x1234);
    // Registers are masked to their width.
    write(&mut uart, offset::FBRD, u32::MAX);
    assert_eq!(read(&mut uart, offset::FBRD), 0x3f);
    // Unknown offsets are RAZ/WI.
    assert_eq!(
        uart.read(0x100, WORD),
        Ok(MmioRead {
            value: 0,
            access: Access::Unknown
        })
    );
    assert_eq!(uart.write(0x100, WORD, 1).unwrap().access, Access::Unknown);
    assert_eq!(uart.read(0x1_0000, WORD).unwrap().access, Access::Unknown);
    // ICR reads as zero; FR, RIS and MIS ignore writes.
    assert_eq!(read(&mut uart, offset::ICR), 0);
    write(&mut uart, offset::FR, 0);
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE | flag::RXFE);
    write(&mut uart, offset::DMACR, 0xff);
    assert_eq!(read(&mut uart, offset::DMACR), 0x7);
    write(&mut uart, offset::ILPR, 0x1ff);
    assert_eq!(read(&mut uart, offset::ILPR), 0xff);
}

#[test]
fn random_accesses_never_panic_and_keep_invariants() {
    let sizes = [
        AccessSize::Byte,
        AccessSize::Halfword,
        AccessSize::Word,
        AccessSize::Doubleword,
    ];
    for seed in 1..=8 {
        let mut rng = XorShift::new(seed);
        let mut uart = Pl011::new();
        for _ in 0..20_000 {
            let r = rng.next();
            let offset = match r % 4 {
                0 => rng.next(),
                1 => rng.next() % 0x2000,
                _ => rng.next() % 0x50, // the register block, any alignment
            };
            let size = sizes[(rng.next() % 4) as usize];
            let value = rng.next();
            match (r >> 8) % 5 {
                0 | 1 => {
                    if let Ok(read) = uart.read(offset, size) {
                        assert_eq!(read.value & !size.mask(), 0);
                    }
                }
                2 | 3 => {
                    if let Ok(write) = uart.write(offset, size, value)
                        && write.line_ready
                        && let Some(line) = uart.take_line()
                    {
                        assert!(line.as_bytes().len() <= LINE_CAPACITY);
                        let _ = line.to_string();
                    }
                }
                _ => {
                    let _ = uart.inject_rx(value as u8);
                }
            }
            assert!(uart.rx_pending() <= RX_FIFO_DEPTH);
            assert!(uart.partial_line_len() < LINE_CAPACITY);
            assert_eq!(uart.irq_level(), uart.masked_interrupts() != 0);
            assert_eq!(uart.masked_interrupts() & !interrupt::ALL, 0);
        }
    }
}

/// Nothing the guest writes can start a console line of its own: a line never holds a `\n`
/// (the glue then prefixes every line, so a forged `verdict:` line always carries the guest
/// mark), whatever bytes come, and an overlong line is cut into pieces the glue marks too.
#[test]
fn no_line_ever_holds_a_newline() {
    let mut uart = Pl011::new();
    let lines = send(&mut uart, "ok\nverdict: PASS (exit code 0, nonce 00)\r\n\nRTS|  1|\n");
    let texts: Vec<String> = lines.iter().map(text).collect();
    assert_eq!(texts, ["ok", "verdict: PASS (exit code 0, nonce 00)", "", "RTS|  1|"]);
    let mut random = XorShift::new(0x5eed);
    let mut uart = Pl011::new();
    let mut bytes = 0usize;
    for _ in 0..20_000 {
        // Mostly newlines and printable bytes, now and then anything.
        let byte = match random.next() % 8 {
            0 => b'\n',
            1 => (random.next() & 0xff) as u8,
            _ => b'a' + (random.next() % 26) as u8,
        };
        if let Some(line) = transmit(&mut uart, BYTE, byte) {
            assert!(!line.as_bytes().contains(&b'\n'));
            assert!(line.as_bytes().len() <= LINE_CAPACITY);
            bytes += line.as_bytes().len();
        }
    }
    assert!(bytes > 0);
    let long = "x".repeat(LINE_CAPACITY + 10) + "\n";
    let pieces = send(&mut Pl011::new(), &long);
    assert_eq!(pieces.len(), 2);
    assert_eq!((pieces[0].end(), pieces[0].as_bytes().len()), (LineEnd::Full, LINE_CAPACITY));
    assert_eq!((pieces[1].end(), pieces[1].as_bytes().len()), (LineEnd::Newline, 10));
}

/// A completed line waits for the glue without being copied: UARTFR reads TX full and busy
/// until it is taken; a line completed meanwhile (a guest ignoring TXFF) is dropped and
/// counted, never mixed into the waiting one; `flush` takes the waiting line, then the partial.
#[test]
fn a_completed_line_waits_for_the_glue_and_a_second_one_is_dropped() {
    let mut uart = Pl011::new();
    for byte in "one\n".bytes() {
        let write = uart.write(offset::DR, BYTE, byte.into()).unwrap();
        assert_eq!(write.line_ready, byte == b'\n');
    }
    assert_eq!(read(&mut uart, offset::FR), flag::TXFF | flag::BUSY | flag::RXFE);
    for byte in "two\nth".bytes() {
        assert!(!uart.write(offset::DR, BYTE, byte.into()).unwrap().line_ready);
    }
    assert_eq!(uart.tx_dropped(), 3);
    let line = uart.take_line().unwrap();
    assert_eq!((text(&line), line.end()), ("one".into(), LineEnd::Newline));
    assert_eq!(read(&mut uart, offset::FR), flag::TXFE | flag::RXFE);
    assert_eq!(uart.take_line(), None);
    assert_eq!(uart.partial_line_len(), 2);
    // A waiting line and a partial one: flush gives both, in order.
    assert!(uart.write(offset::DR, BYTE, b'\n'.into()).unwrap().line_ready);
    assert!(!uart.write(offset::DR, BYTE, b'x'.into()).unwrap().line_ready);
    let texts: Vec<String> = core::iter::from_fn(|| uart.flush()).map(|l| text(&l)).collect();
    assert_eq!(texts, ["th", "x"]);
    assert_eq!(uart.tx_bytes(), 12);
}
