//! The guest's console: an emulated PL011 ([`vm::pl011::Pl011`]) at the board UART's address,
//! so the guest and the core share the one physical UART line by line.
//!
//! The guest's stores and loads on the UART's page trap (stage 2 leaves it unmapped) and come
//! here through [`mmio`], which only updates the model (constant time: a completed line is
//! not copied, the virtual interrupt is not touched) while IRQs are masked. The rest is the
//! exit's tail, [`finish_exit`], on the way back into the guest with IRQs unmasked between
//! its short IRQ-masked sections: it gives a changed interrupt output to the vGIC, and moves
//! the line the guest completed (it waits in the model meanwhile, UARTFR reading TX full)
//! into the console ring as one record ([`crate::console::write_line_from_trap`]), like each
//! of the core's log lines, so neither is ever cut into the other, with no formatting. The
//! physical UART is written later still, also with IRQs unmasked. Every guest line
//! starts with [`GUEST_LINE_PREFIX`] (`guest| `), added by the core: after every newline the
//! guest writes, and on each piece of an overlong or unfinished line, so no guest byte ever
//! starts a console line of its own and the harness can tell the guest's output from the
//! core's (whose lines carry their `[time core cpuN LEVEL]` prefix or a `XXX|` tag). The
//! model's TX FIFO reports full only while a completed line waits for the exit's tail; when
//! the ring is full, the tail makes room by draining it (IRQs unmasked), so no guest output is
//! lost.
//!
//! The model's interrupt output drives the guest's virtual SPI through
//! [`super::virq::set_virtual_level`] whenever it changes (in the exit's tail). Receiving is not wired: the RX FIFO
//! stays empty (the guest reads no input).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use boot::exceptions::TrapFrame;
use vm::mmio::MmioAccess;
use vm::pl011::{Access, FRAME_SIZE, Line, Pl011};

use super::virq;
use crate::arch::irq_lock::IrqSpinLock;

/// The emulated UART and where the guest sees it.
struct GuestConsole {
    uart: Pl011,
    /// The frame's guest physical address (= the board UART's).
    base: u64,
    /// The frame's size: the UART's `reg` size rounded up to whole pages.
    size: u64,
    /// The guest's INTID for the UART, if the tree names one.
    intid: Option<u32>,
    /// The level last given to the virtual interrupt.
    level: bool,
}

/// What the core puts before every line of guest console output.
pub const GUEST_LINE_PREFIX: &str = "guest| ";

/// IRQ-safe: taken in the guest's trap handler. Lock order: this, then the vGIC's.
static GUEST_CONSOLE: IrqSpinLock<Option<GuestConsole>> = IrqSpinLock::new(None);
/// Whether an access to no register was already logged.
static ODD_ACCESS_LOGGED: AtomicBool = AtomicBool::new(false);
/// Whether an exit left work for [`finish_exit`]: a completed line waits in the model, or its
/// interrupt output changed (read without the lock on every way back into the guest).
static TAIL_WORK: AtomicBool = AtomicBool::new(false);
/// The frame's guest physical address and size, as in [`GuestConsole`] (size 0 before
/// [`init`]): [`mmio`] tells a UART access from any other without taking the lock.
static FRAME: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Emulates a PL011 for the guest at `base` (`size` bytes of registers), raising `intid`
/// (the tree's interrupt for the UART, if any) as a level-sensitive virtual interrupt.
pub fn init(base: u64, size: u64, intid: Option<u32>) {
    let size = size.max(FRAME_SIZE).next_multiple_of(FRAME_SIZE);
    *GUEST_CONSOLE.lock() = Some(GuestConsole { uart: Pl011::new(), base, size, intid, level: false });
    FRAME[0].store(base, Ordering::Relaxed);
    FRAME[1].store(size, Ordering::Release);
}

/// Emulates a guest access to the console UART at `ipa`; `None` if `ipa` is not the UART's,
/// `Some(Err)` if the model refuses the access (the caller injects an abort).
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<(), ()>> {
    if ipa.wrapping_sub(FRAME[0].load(Ordering::Relaxed)) >= FRAME[1].load(Ordering::Acquire) {
        return None;
    }
    let result = {
        let mut guard = GUEST_CONSOLE.lock();
        let console = guard.as_mut()?;
        let offset = ipa.wrapping_sub(console.base);
        if offset >= console.size {
            return None;
        }
        let result = if access.write {
            match access.store_value(&frame.x) {
                Ok(value) => console.uart.write(offset, access.size, value).map(|write| {
                    if write.line_ready {
                        TAIL_WORK.store(true, Ordering::Relaxed);
                    }
                    write.access
                }),
                Err(_) => return Some(Err(())),
            }
        } else {
            console.uart.read(offset, access.size).map(|read| {
                let _ = access.complete_load(&mut frame.x, read.value);
                read.access
            })
        };
        if console.uart.irq_level() != console.level {
            TAIL_WORK.store(true, Ordering::Relaxed);
        }
        result
    };
    match result {
        Ok(Access::Emulated) => Some(Ok(())),
        Ok(Access::Unknown) => {
            log_once(format_args!("guest UART access at {ipa:#x} to no register: RAZ/WI"));
            Some(Ok(()))
        }
        Err(_) => Some(Err(())),
    }
}

/// The tail of a guest exit that left work behind: gives the model's interrupt output to the
/// vGIC if it changed, and moves the line the guest completed, if one waits, into the console
/// ring. Called after every guest exit on the way back into the guest, in-band with no lock
/// held: it unmasks IRQs while it works, so only its short IRQ-masked sections (the model's
/// lock, the vGIC's level change, the copy of at most one line of
/// [`vm::pl011::LINE_CAPACITY`] bytes into the ring) delay an oob interrupt. One atomic load
/// when there is nothing to do. Returns whether the virtual interrupt changed (the caller
/// refreshes the list registers).
#[inline]
pub fn finish_exit() -> bool {
    TAIL_WORK.load(Ordering::Relaxed) && crate::arch::with_irqs_unmasked(finish_exit_now)
}

/// [`finish_exit`]'s work.
#[cold]
#[inline(never)]
fn finish_exit_now() -> bool {
    let (line, level_changed) = {
        let mut guard = GUEST_CONSOLE.lock();
        let Some(console) = guard.as_mut() else { return false };
        TAIL_WORK.store(false, Ordering::Relaxed);
        (console.uart.take_line(), console.update_irq())
    };
    if let Some(line) = line {
        print_line(&line);
    }
    level_changed
}

/// Prints what the guest left in the UART (a waiting line, then a partial one), if any (at
/// the end of a run).
pub fn flush() {
    loop {
        let line = GUEST_CONSOLE.lock().as_mut().and_then(|console| console.uart.flush());
        let Some(line) = line else { return };
        print_line(&line);
    }
}

/// Bytes the guest wrote to its console so far.
pub fn tx_bytes() -> u64 {
    GUEST_CONSOLE.lock().as_ref().map_or(0, |console| console.uart.tx_bytes())
}

impl GuestConsole {
    /// Gives the model's interrupt output to the virtual interrupt if it changed; returns
    /// whether it did.
    fn update_irq(&mut self) -> bool {
        let level = self.uart.irq_level();
        if level == self.level {
            return false;
        }
        self.level = level;
        if let Some(intid) = self.intid {
            virq::set_virtual_level(intid, boot::cpu_index(), level);
        }
        true
    }
}

/// One guest line, whole, in one console record after [`GUEST_LINE_PREFIX`]: copied as it is
/// when it is valid UTF-8 (the common case, no formatting in the trap), with its invalid bytes
/// escaped otherwise. (A [`Line`] never holds a `\n`: the model ends the line there.) Called
/// from the guest's trap (or its SYSTEM_OFF), in-band with no lock held: waiting for room in
/// the ring may unmask IRQs.
fn print_line(line: &Line) {
    match core::str::from_utf8(line.as_bytes()) {
        Ok(text) => crate::console::write_line_from_trap(GUEST_LINE_PREFIX, text),
        Err(_) => crate::console::write_fmt_from_trap(format_args!("{GUEST_LINE_PREFIX}{line}\n")),
    }
}

/// Logs an odd guest access once per run.
fn log_once(args: core::fmt::Arguments<'_>) {
    if !ODD_ACCESS_LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!("{args} (logged once)");
    }
}
