//! Host tests of the virtio-console model, driven as Linux's `virtio_console` drives it.

use std::collections::VecDeque;

use super::console::{Console, Ports, control};
use super::*;
use crate::AccessSize;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x20000;
const SIZE: u16 = 8;
const QUEUES: usize = 6;
const WORD: AccessSize = AccessSize::Word;

/// Two ports with bounded byte queues each way.
struct FakePorts {
    names: [&'static [u8]; 2],
    to_core: [VecDeque<u8>; 2],
    to_guest: [VecDeque<u8>; 2],
    capacity: usize,
}

impl FakePorts {
    fn new(capacity: usize) -> Self {
        Self {
            names: [b"companion.ctl", b"motor"],
            to_core: Default::default(),
            to_guest: Default::default(),
            capacity,
        }
    }
}

impl Ports for FakePorts {
    fn present(&self, port: usize) -> bool {
        port < 2
    }
    fn name(&self, port: usize) -> &[u8] {
        self.names[port]
    }
    fn push_from_guest(&mut self, port: usize, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity - self.to_core[port].len());
        self.to_core[port].extend(&data[..n]);
        n
    }
    fn pull_for_guest(&mut self, port: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.to_guest[port].len());
        for b in &mut buf[..n] {
            *b = self.to_guest[port].pop_front().unwrap();
        }
        n
    }
    fn has_data_for_guest(&self, port: usize) -> bool {
        !self.to_guest[port].is_empty()
    }
}

/// Linux's side: queue q's rings at BASE + q * 0x1000, buffers from BASE + 0x10000.
struct Guest {
    ram: Vec<u8>,
    avail_idx: [u16; QUEUES],
    used_seen: [u16; QUEUES],
    next_desc: [u16; QUEUES],
    next_buf: u64,
}

fn desc_addr(q: usize) -> u64 {
    BASE + q as u64 * 0x1000
}
fn avail_addr(q: usize) -> u64 {
    desc_addr(q) + 0x400
}
fn used_addr(q: usize) -> u64 {
    desc_addr(q) + 0x800
}

impl Guest {
    fn new() -> Self {
        Self {
            ram: vec![0; RAM],
            avail_idx: [0; QUEUES],
            used_seen: [0; QUEUES],
            next_desc: [0; QUEUES],
            next_buf: BASE + 0x10000,
        }
    }

    fn mem(&mut self) -> SliceMemory<'_> {
        SliceMemory::new(BASE, &mut self.ram)
    }

    fn poke(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr - BASE) as usize;
        self.ram[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
        let at = (addr - BASE) as usize;
        self.ram[at..at + len].to_vec()
    }

    /// A register write, then the service the glue runs on the way back into the guest.
    fn write(&mut self, dev: &mut Console<QUEUES>, ports: &mut FakePorts, at: u64, value: u64) {
        let mut mem = SliceMemory::new(BASE, &mut self.ram);
        dev.write(&mem, at, WORD, value).unwrap();
        dev.service(&mut mem, ports);
    }

    /// Offers one buffer (its data, or zeroes `len` long if writable) on queue `q`; returns
    /// its address.
    fn offer(&mut self, q: usize, data: &[u8], len: u32, writable: bool) -> u64 {
        let addr = self.next_buf;
        self.next_buf += 0x200;
        self.poke(addr, data);
        let index = self.next_desc[q] % SIZE;
        self.next_desc[q] += 1;
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&(if writable { 2u16 } else { 0 }).to_le_bytes());
        self.poke(desc_addr(q) + 16 * u64::from(index), &raw);
        let slot = u64::from(self.avail_idx[q] % SIZE);
        self.poke(avail_addr(q) + 4 + 2 * slot, &index.to_le_bytes());
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        let idx = self.avail_idx[q];
        self.poke(avail_addr(q) + 2, &idx.to_le_bytes());
        addr
    }

    /// The used entries of queue `q` not seen yet: (descriptor address, length).
    fn used(&mut self, q: usize) -> Vec<(u64, u32)> {
        let idx = u16::from_le_bytes(self.peek(used_addr(q) + 2, 2).try_into().unwrap());
        let mut out = Vec::new();
        while self.used_seen[q] != idx {
            let slot = u64::from(self.used_seen[q] % SIZE);
            let raw = self.peek(used_addr(q) + 4 + 8 * slot, 8);
            let id = u32::from_le_bytes(raw[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(raw[4..8].try_into().unwrap());
            let desc = self.peek(desc_addr(q) + 16 * u64::from(id), 8);
            out.push((u64::from_le_bytes(desc.try_into().unwrap()), len));
            self.used_seen[q] = self.used_seen[q].wrapping_add(1);
        }
        out
    }

    /// The control messages the device sent: (id, event, value, trailing bytes).
    fn control(&mut self) -> Vec<(u32, u16, u16, Vec<u8>)> {
        let used = self.used(2);
        used.into_iter()
            .map(|(addr, len)| {
                let raw = self.peek(addr, len as usize);
                let id = u32::from_le_bytes(raw[0..4].try_into().unwrap());
                (
                    id,
                    u16::from_le_bytes([raw[4], raw[5]]),
                    u16::from_le_bytes([raw[6], raw[7]]),
                    raw[8..].to_vec(),
                )
            })
            .collect()
    }

    fn send_control(
        &mut self,
        dev: &mut Console<QUEUES>,
        ports: &mut FakePorts,
        id: u32,
        event: u16,
        value: u16,
    ) {
        let mut msg = [0u8; 8];
        msg[0..4].copy_from_slice(&id.to_le_bytes());
        msg[4..6].copy_from_slice(&event.to_le_bytes());
        msg[6..8].copy_from_slice(&value.to_le_bytes());
        self.offer(3, &msg, 8, false);
        self.write(dev, ports, offset::QUEUE_NOTIFY, 3);
    }

    /// Probes as `virtio_console` does, up to the ports being open on both sides.
    fn probe(&mut self, dev: &mut Console<QUEUES>, ports: &mut FakePorts) {
        self.write(dev, ports, offset::DRIVER_FEATURES_SEL, 1);
        self.write(dev, ports, offset::DRIVER_FEATURES, 1);
        self.write(dev, ports, offset::DRIVER_FEATURES_SEL, 0);
        self.write(dev, ports, offset::DRIVER_FEATURES, console::F_MULTIPORT);
        self.write(
            dev,
            ports,
            offset::STATUS,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
        );
        for q in 0..QUEUES {
            self.write(dev, ports, offset::QUEUE_SEL, q as u64);
            self.write(dev, ports, offset::QUEUE_NUM, u64::from(SIZE));
            self.write(dev, ports, offset::QUEUE_DESC_LOW, desc_addr(q));
            self.write(dev, ports, offset::QUEUE_DRIVER_LOW, avail_addr(q));
            self.write(dev, ports, offset::QUEUE_DEVICE_LOW, used_addr(q));
            self.write(dev, ports, offset::QUEUE_READY, 1);
        }
        let all = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
        self.write(dev, ports, offset::STATUS, u64::from(all));
        for _ in 0..6 {
            self.offer(2, &[], 64, true);
        }
        self.send_control(dev, ports, u32::MAX, control::DEVICE_READY, 1);
        let added = self.control();
        assert_eq!(
            added,
            vec![
                (0, control::DEVICE_ADD, 0, vec![]),
                (1, control::DEVICE_ADD, 0, vec![])
            ]
        );
        for port in 0..2 {
            self.send_control(dev, ports, port, control::PORT_READY, 1);
        }
        let names = self.control();
        assert_eq!(
            names,
            vec![
                (0, control::PORT_NAME, 1, b"companion.ctl".to_vec()),
                (0, control::PORT_OPEN, 1, vec![]),
                (1, control::PORT_NAME, 1, b"motor".to_vec()),
                (1, control::PORT_OPEN, 1, vec![]),
            ]
        );
    }
}

#[test]
fn the_config_offers_multiport_with_its_port_count() {
    let dev: Console<QUEUES> = Console::new();
    assert_eq!(dev.ports(), 2);
    assert_eq!(dev.read(offset::DEVICE_ID, WORD), Ok(3));
    assert_eq!(
        dev.read(offset::DEVICE_FEATURES, WORD),
        Ok(console::F_MULTIPORT)
    );
    assert_eq!(dev.read(offset::CONFIG + 4, WORD), Ok(2), "max_nr_ports");
}

#[test]
fn ports_are_added_named_and_opened() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(64));
    guest.probe(&mut dev, &mut ports);
    assert!(!dev.guest_open(1));
    guest.send_control(&mut dev, &mut ports, 1, control::PORT_OPEN, 1);
    assert!(dev.guest_open(1));
    guest.send_control(&mut dev, &mut ports, 1, control::PORT_OPEN, 0);
    assert!(!dev.guest_open(1));
    assert_eq!(dev.ignored(), 0);
    assert!(dev.transport().irq_level());
}

#[test]
fn guest_writes_wait_for_room_in_the_port() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(10));
    guest.probe(&mut dev, &mut ports);
    let data: Vec<u8> = (0..25).collect();
    guest.offer(5, &data, 25, false); // port 1's transmit queue
    guest.write(&mut dev, &mut ports, offset::QUEUE_NOTIFY, 5);
    assert_eq!(ports.to_core[1].len(), 10, "the port is full");
    assert!(guest.used(5).is_empty(), "the chain is held: back-pressure");
    assert_eq!(dev.held_ports(), 1 << 1, "port 1 holds a chain, no other");
    let mut got: Vec<u8> = ports.to_core[1].drain(..).collect();
    dev.service(&mut guest.mem(), &mut ports);
    got.extend(ports.to_core[1].drain(..));
    dev.service(&mut guest.mem(), &mut ports);
    got.extend(ports.to_core[1].drain(..));
    assert_eq!(got, data, "every byte, in order, once");
    assert_eq!(guest.used(5).len(), 1, "returned once wholly taken");
    assert_eq!(dev.held_ports(), 0);
}

#[test]
fn port_bytes_fill_the_guests_receive_buffers() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(64));
    guest.probe(&mut dev, &mut ports);
    let line = b"RTD|      0.100|      0.200|      0.300|       0|     0|      0.100|      0.300";
    ports.to_guest[1].extend(line);
    dev.service(&mut guest.mem(), &mut ports);
    assert_eq!(
        ports.to_guest[1].len(),
        line.len(),
        "no buffer offered yet: the bytes wait"
    );
    let a = guest.offer(4, &[], 50, true);
    let b = guest.offer(4, &[], 50, true);
    dev.service(&mut guest.mem(), &mut ports);
    let used = guest.used(4);
    assert_eq!(used, vec![(a, 50), (b, line.len() as u32 - 50)]);
    let mut got = guest.peek(a, 50);
    got.extend(guest.peek(b, line.len() - 50));
    assert_eq!(got, line);
    assert!(ports.to_guest[1].is_empty());
}

#[test]
fn a_malformed_transmit_chain_breaks_the_console_until_reset() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(64));
    guest.probe(&mut dev, &mut ports);
    let addr = guest.offer(1, b"x", 1, false);
    // Point the descriptor outside RAM.
    let index = guest.next_desc[1] - 1;
    guest.poke(
        desc_addr(1) + 16 * u64::from(index),
        &(BASE + RAM as u64).to_le_bytes(),
    );
    guest.write(&mut dev, &mut ports, offset::QUEUE_NOTIFY, 1);
    assert_eq!(dev.transport().broken(), Some(RingError::BadBuffer));
    assert_ne!(
        dev.read(offset::STATUS, WORD).unwrap() as u32 & status::DEVICE_NEEDS_RESET,
        0
    );
    ports.to_guest[0].extend(b"lost?");
    guest.offer(0, &[], 16, true);
    dev.service(&mut guest.mem(), &mut ports);
    assert!(guest.used(0).is_empty(), "nothing moves while broken");
    assert_eq!(ports.to_guest[0].len(), 5, "the port's bytes stay");
    let _ = addr;
    guest.write(&mut dev, &mut ports, offset::STATUS, 0);
    assert!(dev.transport().broken().is_none());
    let mut fresh = Guest::new();
    fresh.probe(&mut dev, &mut ports);
}

#[test]
fn a_notification_only_records_the_work_the_service_does() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(64));
    guest.probe(&mut dev, &mut ports);
    assert!(!dev.notified());
    guest.offer(5, b"hello", 5, false);
    dev.write(&guest.mem(), offset::QUEUE_NOTIFY, WORD, 5).unwrap();
    assert!(dev.notified(), "the notification is recorded");
    assert!(ports.to_core[1].is_empty(), "the trap moved nothing");
    assert!(guest.used(5).is_empty());
    dev.service(&mut guest.mem(), &mut ports);
    assert!(!dev.notified());
    assert_eq!(ports.to_core[1], b"hello");
    assert_eq!(guest.used(5).len(), 1);
}

#[test]
fn a_reset_forgets_held_chains_before_anything_moves_again() {
    let (mut guest, mut dev, mut ports) =
        (Guest::new(), Console::<QUEUES>::new(), FakePorts::new(4));
    guest.probe(&mut dev, &mut ports);
    guest.offer(5, b"0123456789", 10, false);
    guest.write(&mut dev, &mut ports, offset::QUEUE_NOTIFY, 5);
    assert_ne!(dev.held_ports(), 0);
    dev.write(&guest.mem(), offset::STATUS, WORD, 0).unwrap();
    assert_eq!(dev.held_ports(), 0, "the reset drops the held chain");
    assert_eq!(dev.read(offset::STATUS, WORD), Ok(0));
    ports.to_core[1].clear();
    dev.service(&mut guest.mem(), &mut ports);
    assert!(ports.to_core[1].is_empty(), "nothing of the old chain moves after the reset");
    let mut fresh = Guest::new();
    fresh.probe(&mut dev, &mut ports);
}
