//! A virtio-console device with named multiport ports (virtio 1.2, section 5.3), the channel
//! between the guest's Linux (the stock `virtio_console` driver: `/dev/vportNpM`, names under
//! `/sys/class/virtio-ports/`) and the core's ports.
//!
//! Queues, with VIRTIO_CONSOLE_F_MULTIPORT: 0/1 port 0's receive/transmit, 2/3 the control
//! receive/transmit, then 2n+2/2n+3 port n's (n >= 1). `Q` is the number of queues, so the
//! device has `Q / 2 - 1` ports.
//!
//! The control protocol: the driver sends DEVICE_READY; the device answers DEVICE_ADD for each
//! port; the driver answers PORT_READY for each; the device then names the port (PORT_NAME)
//! and opens it from the host side (PORT_OPEN 1, so the guest can read and write). The guest's
//! PORT_OPEN tells whether a process has the port open.
//!
//! Data flow is a byte stream per port, through [`Ports`] (the core's bounded rings):
//! - guest → core: a transmit chain is copied into the port as far as it takes; the rest stays
//!   held (the chain is not returned) until the port has room. The driver runs out of
//!   transmit buffers and its writer blocks: back-pressure, nothing lost.
//! - core → guest: whatever the port holds goes into the next receive buffers the driver
//!   offered; none offered, it waits in the port.
//!
//! A register access ([`Console::write`]) only records the work a notification brings
//! ([`Console::notified`]): it is cheap and bounded, so the glue can emulate it in the trap
//! with IRQs masked. [`Console::service`] then moves everything that can move, at most
//! [`BUDGET`] bytes per port and direction per call; the glue runs it where oob interrupts can
//! preempt it (on the way back into the guest, IRQs unmasked).

use super::memory::GuestMemory;
use super::queue::Chain;
use super::transport::{AccessError, Event, Transport};
use crate::mmio::AccessSize;

/// The virtio device ID of a console.
pub const DEVICE_ID: u32 = 3;
/// Feature bit: multiple ports and the control queues.
pub const F_MULTIPORT: u64 = 1 << 1;
/// Most ports a console may have (the glue's `Q` is at most `2 * (MAX_PORTS + 1)`).
pub const MAX_PORTS: usize = 15;
/// Most control messages waiting for a control receive buffer.
const CONTROL_BACKLOG: usize = 4 * (MAX_PORTS + 1);
/// Bytes of a control message (id u32, event u16, value u16).
const CONTROL_SIZE: usize = 8;
/// The control receive and transmit queues.
const CONTROL_RX: u16 = 2;
const CONTROL_TX: u16 = 3;
/// Bytes moved per copy step.
const CHUNK: usize = 256;
/// Most bytes moved per port and direction in one [`Console::service`] call: bounds the
/// in-band time one call takes (and keeps a used length far below 2^32).
pub const BUDGET: u64 = 4096;

/// Control events (virtio 1.2, 5.3.6.2).
pub mod control {
    /// Driver → device: the driver is ready (value 1) or failed (0).
    pub const DEVICE_READY: u16 = 0;
    /// Device → driver: a port was added.
    pub const DEVICE_ADD: u16 = 1;
    /// Driver → device: the port is ready (value 1) or failed (0).
    pub const PORT_READY: u16 = 3;
    /// Both ways: the port was opened (1) or closed (0) on the sender's side.
    pub const PORT_OPEN: u16 = 6;
    /// Device → driver: the port's name follows the message.
    pub const PORT_NAME: u16 = 7;
}

/// The core's ports: a bounded byte stream each way per port.
pub trait Ports {
    /// Whether `port` exists (only those are announced to the driver).
    fn present(&self, port: usize) -> bool;
    /// The port's name (what `/sys/class/virtio-ports/*/name` shows).
    fn name(&self, port: usize) -> &[u8];
    /// Takes up to `data.len()` bytes the guest sent on `port`; returns how many it took.
    fn push_from_guest(&mut self, port: usize, data: &[u8]) -> usize;
    /// Fills `buf` with bytes for the guest on `port`; returns how many.
    fn pull_for_guest(&mut self, port: usize, buf: &mut [u8]) -> usize;
    /// Whether `port` holds bytes for the guest.
    fn has_data_for_guest(&self, port: usize) -> bool;
}

/// A transmit chain partly copied into its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    chain: Chain,
    done: u64,
}

/// The console's own state beyond the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console<const Q: usize> {
    transport: Transport<Q>,
    backlog: [[u8; CONTROL_SIZE]; CONTROL_BACKLOG],
    backlog_len: usize,
    held: [Option<Held>; MAX_PORTS + 1],
    guest_open: u32,
    /// A notification (or DRIVER_OK) came that [`Console::service`] has not handled yet.
    notified: bool,
    /// The driver reset the device: [`Console::service`] forgets the console's state first
    /// (a register write stays cheap; none of that state is visible in the registers).
    reset_pending: bool,
    /// Messages the driver sent that the model ignored (unknown events or ports).
    ignored: u64,
}

impl<const Q: usize> Default for Console<Q> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const Q: usize> Console<Q> {
    /// A reset console with `Q / 2 - 1` ports.
    pub fn new() -> Self {
        Self {
            transport: Transport::new(DEVICE_ID, F_MULTIPORT),
            backlog: [[0; CONTROL_SIZE]; CONTROL_BACKLOG],
            backlog_len: 0,
            held: [None; MAX_PORTS + 1],
            guest_open: 0,
            notified: false,
            reset_pending: false,
            ignored: 0,
        }
    }

    /// The number of ports.
    pub const fn ports(&self) -> usize {
        let n = Q / 2;
        if n == 0 { 0 } else { n - 1 }
    }

    /// The transport (status, broken state, interrupt line).
    pub fn transport(&self) -> &Transport<Q> {
        &self.transport
    }

    /// Whether a guest process has `port` open.
    pub fn guest_open(&self, port: usize) -> bool {
        !self.reset_pending && port < 32 && self.guest_open & (1 << port) != 0
    }

    /// The ports whose transmit chain waits for room (bit `n`: port `n`): the glue must call
    /// [`Console::service`] again once one of those ports has room (no notification will
    /// come: the driver waits for that chain), and need not for room in any other port.
    pub fn held_ports(&self) -> u32 {
        if self.reset_pending {
            return 0;
        }
        self.held.iter().enumerate().filter(|(_, held)| held.is_some()).fold(0, |mask, (port, _)| mask | 1 << port)
    }

    /// Whether a notification (or DRIVER_OK) came that [`Console::service`] has not handled
    /// yet.
    pub fn notified(&self) -> bool {
        self.notified
    }

    /// Control messages from the driver the model ignored.
    pub fn ignored(&self) -> u64 {
        if self.reset_pending { 0 } else { self.ignored }
    }

    /// The configuration space: cols, rows (0: no size), max_nr_ports, emerg_wr.
    fn config(&self) -> [u8; 12] {
        let mut config = [0; 12];
        config[4..8].copy_from_slice(&(self.ports() as u32).to_le_bytes());
        config
    }

    /// A read of the register frame.
    pub fn read(&self, at: u64, size: AccessSize) -> Result<u64, AccessError> {
        self.transport.read(at, size, &self.config())
    }

    /// A write to the register frame. A notification (or DRIVER_OK) is only recorded
    /// ([`Console::notified`]); [`Console::service`] handles it.
    pub fn write(&mut self, mem: &impl GuestMemory, at: u64, size: AccessSize, value: u64) -> Result<(), AccessError> {
        match self.transport.write(mem, at, size, value)? {
            Event::Reset => {
                self.reset_pending = true;
                self.notified = false;
            }
            Event::Notify(_) | Event::DriverOk => self.notified = true,
            // emerg_wr and the rest of the configuration are ignored.
            Event::ConfigWrite { .. } | Event::None => {}
        }
        Ok(())
    }

    /// Forgets the console's state after a device reset (the transport reset itself).
    fn reset_ports(&mut self) {
        self.reset_pending = false;
        self.backlog_len = 0;
        self.held = [None; MAX_PORTS + 1];
        self.guest_open = 0;
        self.ignored = 0;
    }

    /// Moves everything that can move: control messages both ways, guest → port and
    /// port → guest data, at most [`BUDGET`] bytes per port and direction (call again while
    /// [`Console::held_ports`] or a port holds bytes for the guest). Does nothing unless the
    /// device is live.
    pub fn service(&mut self, mem: &mut impl GuestMemory, ports: &mut impl Ports) {
        if self.reset_pending {
            self.reset_ports();
        }
        self.notified = false;
        if !self.transport.is_live() {
            return;
        }
        self.receive_control(mem, ports);
        self.send_control(mem, ports);
        for port in 0..self.ports() {
            self.move_from_guest(mem, ports, port);
            self.move_to_guest(mem, ports, port);
        }
    }

    /// The receive and transmit queue of `port`.
    fn queues(port: usize) -> (u16, u16) {
        let base = if port == 0 { 0 } else { 2 * port as u16 + 2 };
        (base, base + 1)
    }

    /// Queues a control message for the driver (dropped, and counted, past the backlog,
    /// which only a driver that never offers control buffers fills).
    fn post(&mut self, id: u32, event: u16, value: u16) {
        if self.backlog_len == CONTROL_BACKLOG {
            self.ignored += 1;
            return;
        }
        let mut msg = [0u8; CONTROL_SIZE];
        msg[0..4].copy_from_slice(&id.to_le_bytes());
        msg[4..6].copy_from_slice(&event.to_le_bytes());
        msg[6..8].copy_from_slice(&value.to_le_bytes());
        self.backlog[self.backlog_len] = msg;
        self.backlog_len += 1;
    }

    /// Handles the driver's control messages.
    fn receive_control(&mut self, mem: &mut impl GuestMemory, ports: &impl Ports) {
        while let Some(chain) = self.transport.pop(mem, CONTROL_TX) {
            let mut msg = [0u8; CONTROL_SIZE];
            let Ok(n) = chain.read(mem, &mut msg) else {
                return;
            };
            self.transport.push_used(mem, CONTROL_TX, &chain, 0);
            if n < CONTROL_SIZE {
                self.ignored += 1;
                continue;
            }
            let id = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let event = u16::from_le_bytes([msg[4], msg[5]]);
            let value = u16::from_le_bytes([msg[6], msg[7]]);
            let port = id as usize;
            match event {
                control::DEVICE_READY if value == 1 => {
                    for port in (0..self.ports()).filter(|&port| ports.present(port)) {
                        self.post(port as u32, control::DEVICE_ADD, 0);
                    }
                }
                control::PORT_READY if value == 1 && port < self.ports() && ports.present(port) => {
                    self.post(id, control::PORT_NAME, 1);
                    self.post(id, control::PORT_OPEN, 1);
                }
                control::PORT_OPEN if port < self.ports() => {
                    if value == 1 {
                        self.guest_open |= 1 << port;
                    } else {
                        self.guest_open &= !(1 << port);
                    }
                }
                _ => self.ignored += 1,
            }
        }
    }

    /// Sends queued control messages into the driver's control receive buffers.
    fn send_control(&mut self, mem: &mut impl GuestMemory, ports: &impl Ports) {
        let mut sent = 0;
        while sent < self.backlog_len {
            let Some(chain) = self.transport.pop(mem, CONTROL_RX) else {
                break;
            };
            let msg = self.backlog[sent];
            let mut out = [0u8; CONTROL_SIZE + CHUNK];
            out[..CONTROL_SIZE].copy_from_slice(&msg);
            let mut len = CONTROL_SIZE;
            if u16::from_le_bytes([msg[4], msg[5]]) == control::PORT_NAME {
                let port = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
                let name = ports.name(port);
                let name = &name[..name.len().min(CHUNK)];
                len += name.len();
                out[CONTROL_SIZE..len].copy_from_slice(name);
            }
            let Ok(written) = chain.write(mem, &out[..len]) else {
                return;
            };
            self.transport
                .push_used(mem, CONTROL_RX, &chain, written as u32);
            sent += 1;
        }
        self.backlog.copy_within(sent..self.backlog_len, 0);
        self.backlog_len -= sent;
    }

    /// Copies what the guest transmitted on `port` into it, as far as it takes; a chain not
    /// wholly taken stays held.
    fn move_from_guest(&mut self, mem: &mut impl GuestMemory, ports: &mut impl Ports, port: usize) {
        let (_, tx) = Self::queues(port);
        let mut budget = BUDGET;
        loop {
            let held = match self.held[port].take() {
                Some(held) => held,
                None => match self.transport.pop(mem, tx) {
                    Some(chain) => Held { chain, done: 0 },
                    None => return,
                },
            };
            let Some(held) = self.drain(mem, ports, port, held, &mut budget) else {
                continue;
            };
            // Not wholly taken: the port is full, or this call's budget is spent.
            self.held[port] = Some(held);
            return;
        }
    }

    /// Copies the rest of `held` into `port`; gives the chain back when done, else returns
    /// what is left.
    fn drain(
        &mut self,
        mem: &mut impl GuestMemory,
        ports: &mut impl Ports,
        port: usize,
        mut held: Held,
        budget: &mut u64,
    ) -> Option<Held> {
        let (_, tx) = Self::queues(port);
        let mut skip = held.done;
        for seg in held.chain.segments().iter().filter(|s| !s.writable) {
            let len = u64::from(seg.len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let mut at = skip;
            skip = 0;
            while at < len {
                let mut buf = [0u8; CHUNK];
                if *budget == 0 {
                    return Some(held);
                }
                let n = (len - at).min(CHUNK as u64).min(*budget) as usize;
                if mem.read(seg.addr + at, &mut buf[..n]).is_err() {
                    self.transport.fail(super::queue::RingError::Memory);
                    return None;
                }
                let taken = ports.push_from_guest(port, &buf[..n]);
                *budget -= taken as u64;
                at += taken as u64;
                held.done += taken as u64;
                if taken < n {
                    return Some(held);
                }
            }
        }
        self.transport.push_used(mem, tx, &held.chain, 0);
        None
    }

    /// Copies what `port` holds into the receive buffers the driver offered.
    fn move_to_guest(&mut self, mem: &mut impl GuestMemory, ports: &mut impl Ports, port: usize) {
        let (rx, _) = Self::queues(port);
        let mut budget = BUDGET;
        while budget > 0 && ports.has_data_for_guest(port) {
            let Some(chain) = self.transport.pop(mem, rx) else {
                return;
            };
            let mut written = 0u64;
            for seg in chain.segments().iter().filter(|s| s.writable) {
                let len = u64::from(seg.len);
                let mut at = 0;
                while at < len {
                    let mut buf = [0u8; CHUNK];
                    let n = (len - at).min(CHUNK as u64).min(budget) as usize;
                    let got = ports.pull_for_guest(port, &mut buf[..n]);
                    if got == 0 {
                        break;
                    }
                    if mem.write(seg.addr + at, &buf[..got]).is_err() {
                        self.transport.fail(super::queue::RingError::Memory);
                        return;
                    }
                    at += got as u64;
                    written += got as u64;
                    budget -= got as u64;
                }
                if at < len {
                    break;
                }
            }
            self.transport.push_used(mem, rx, &chain, written as u32);
        }
    }
}
