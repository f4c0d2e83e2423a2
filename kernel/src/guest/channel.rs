//! The guest's end of the oob channels: a virtio-console over virtio-mmio
//! ([`vm::virtio::console::Console`]) at an address the core reserves for it, whose ports are
//! the [`crate::rt::Channel`]s.
//!
//! The guest's accesses to the device's page trap (stage 2 leaves it unmapped) and come here
//! through [`mmio`], with IRQs masked: an access only reads or writes the register frame and
//! records what a notification asks for; it never walks a queue nor copies a byte, and never
//! waits (the device busy on another CPU: the guest runs the access again). The queues are
//! serviced on the way back into the guest ([`poll`]) with IRQs unmasked, so oob interrupts
//! preempt it; one service moves at most [`vm::virtio::console::BUDGET`] bytes per port and
//! direction, the rest at the next return. With nothing to do, [`poll`] is a few atomic
//! loads. The model's interrupt output drives the guest's virtual SPI through
//! [`super::virq::set_virtual_level`].
//!
//! The guest's descriptors are checked against its RAM ranges ([`GuestRam`]); a malformed
//! ring breaks the device (DEVICE_NEEDS_RESET) and is logged once; the core goes on.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use boot::exceptions::TrapFrame;
use platform::MemoryRange;
use vm::mmio::MmioAccess;
use vm::virtio::console::Console;
use vm::virtio::{FRAME_SIZE, GuestMemory, OutOfRam};

use super::virq;
use crate::arch::{mask_irqs, restore_irqs, unmask_irqs};
use crate::rt::channel::{DeviceSide, MAX_CHANNELS};

/// Queues of the console: two per port and the two control queues.
const QUEUES: usize = 2 * (MAX_CHANNELS + 1);

/// The guest's RAM as the core maps it (identity, at EL2): the ranges the guest tree gives it.
struct GuestRam {
    ranges: Vec<MemoryRange>,
}

impl GuestMemory for GuestRam {
    fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        self.ranges.iter().any(|r| r.base <= addr && r.base.checked_add(r.size).is_some_and(|r_end| end <= r_end))
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRam> {
        if !self.contains(addr, buf.len() as u64) {
            return Err(OutOfRam { addr, len: buf.len() as u64 });
        }
        // SAFETY: the range lies in the guest's RAM, which the core maps identity at EL2
        // (read-write, normal memory) for as long as the guest runs; the guest may change it
        // concurrently, so it is copied as bytes and checked after the copy, never trusted.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfRam> {
        if !self.contains(addr, data.len() as u64) {
            return Err(OutOfRam { addr, len: data.len() as u64 });
        }
        // SAFETY: as in `read`: guest RAM, identity-mapped and writable at EL2; it holds none
        // of the core's data.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
    }

    fn fence(&self) {
        barrier::dmb(barrier::ISH);
    }
}

/// The device and where the guest sees it.
struct GuestChannel {
    console: Console<QUEUES>,
    ram: GuestRam,
    intid: u32,
    level: bool,
}

/// Taken without waiting by the trap handler (IRQs masked) and by the service on the way
/// back into the guest (IRQs unmasked: not IRQ-safe, and no interrupt handler takes it). Lock
/// order: this, then the vGIC's.
static DEVICE: spin::Mutex<Option<GuestChannel>> = spin::Mutex::new(None);
/// The device's page ([`NO_DEVICE`]: none), read by the trap handler without the lock.
static BASE: AtomicU64 = AtomicU64::new(NO_DEVICE);
/// [`BASE`] when the guest has no channel device.
const NO_DEVICE: u64 = u64::MAX;
/// Whether the guest wrote a register since the last service (a notification to handle, an
/// interrupt acknowledged, a status change): [`poll`] then services, and updates the
/// interrupt line and the broken state, before the guest runs again. Kept beside the lock,
/// so [`poll`] checks it without taking it.
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// The ports whose transmit chain waits for room in its channel (bit `n`: port `n`).
static HELD_PORTS: AtomicU32 = AtomicU32::new(0);
/// Whether the device's breaking was logged.
static BROKEN_LOGGED: AtomicBool = AtomicBool::new(false);

/// Emulates the console at `base` (one page) raising `intid`; `ram` is the guest's RAM.
pub fn init(base: u64, intid: u32, ram: &[MemoryRange]) {
    let ram = GuestRam { ranges: ram.to_vec() };
    *DEVICE.lock() = Some(GuestChannel { console: Console::new(), ram, intid, level: false });
    BASE.store(base, Ordering::Release);
}

/// Emulates a guest access at `ipa` (IRQs masked, in the trap): `None` if `ipa` is not the
/// device's page, `Some(Ok(false))` if the device is busy on another CPU (the guest runs the
/// access again), `Some(Err)` if the transport refuses the access (the caller injects an
/// abort). Touches only the register frame: what a write brings (a notification, the
/// interrupt line, the broken state) is left to [`poll`] on the way out of this exit.
pub fn mmio(frame: &mut TrapFrame, ipa: u64, access: MmioAccess) -> Option<Result<bool, ()>> {
    let base = BASE.load(Ordering::Acquire);
    let offset = ipa.wrapping_sub(base);
    if base == NO_DEVICE || offset >= FRAME_SIZE {
        return None;
    }
    let Some(mut guard) = DEVICE.try_lock() else {
        return Some(Ok(false));
    };
    let device = guard.as_mut()?;
    let result = if access.write {
        WRITTEN.store(true, Ordering::Relaxed);
        match access.store_value(&frame.x) {
            Ok(value) => device.console.write(&device.ram, offset, access.size, value).map_err(|_| ()),
            Err(_) => Err(()),
        }
    } else {
        device
            .console
            .read(offset, access.size)
            .map_err(|_| ())
            .and_then(|value| access.complete_load(&mut frame.x, value).map_err(|_| ()))
    };
    Some(result.map(|()| true))
}

/// Services the queues on the way back into the guest, in its in-band context: handles what
/// the guest's register writes asked for, moves what oob code sent to the guest and what the
/// guest sent that waited for room, and sets the interrupt line. Runs with IRQs unmasked
/// (restored as they were after). Returns whether it serviced (the caller refreshes the list
/// registers then). Inline: its check, three flag loads, is on every return into the guest.
#[inline]
pub fn poll() -> bool {
    // Room in a port matters only to a chain held for that port: a chain Linux wrote to a
    // port whose oob side never reads must not make every return into the guest service.
    let held = HELD_PORTS.load(Ordering::Relaxed);
    let waiting = held != 0 && crate::rt::channel::any_room_from_guest(held);
    if !WRITTEN.load(Ordering::Relaxed) && !waiting && !crate::rt::channel::for_guest_flagged() {
        return false;
    }
    service()
}

/// [`poll`]'s work, out of line: the fast path stays a few loads.
#[cold]
#[inline(never)]
fn service() -> bool {
    // Another CPU services: it sees what this one would.
    let Some(mut guard) = DEVICE.try_lock() else { return false };
    let Some(device) = guard.as_mut() else { return false };
    WRITTEN.store(false, Ordering::Relaxed);
    crate::rt::channel::take_for_guest();
    let saved = mask_irqs();
    unmask_irqs();
    device.console.service(&mut device.ram, &mut DeviceSide);
    crate::rt::channel::keep_flag_if_left();
    device.update();
    restore_irqs(saved);
    true
}

impl GuestChannel {
    /// Gives the model's interrupt output to the virtual interrupt if it changed; logs the
    /// device's breaking once.
    fn update(&mut self) {
        HELD_PORTS.store(self.console.held_ports(), Ordering::Relaxed);
        if let Some(why) = self.console.transport().broken()
            && !BROKEN_LOGGED.swap(true, Ordering::Relaxed)
        {
            log::warn!("guest: the channel device is broken ({why:?}): DEVICE_NEEDS_RESET until the guest resets it");
        }
        let level = self.console.transport().irq_level();
        if level != self.level {
            self.level = level;
            virq::set_virtual_level(self.intid, boot::cpu_index(), level);
        }
    }
}

/// A guest restart: the device goes back to its reset state (no queue set up, no chain held
/// from the dead guest's RAM, its line low, as the torn-down vGIC has it); the channels and
/// the oob threads serving them stay as they are.
pub fn reset() {
    if let Some(device) = DEVICE.lock().as_mut() {
        device.console = Console::new();
        device.level = false;
    }
    HELD_PORTS.store(0, Ordering::Relaxed);
    BROKEN_LOGGED.store(false, Ordering::Relaxed);
}
