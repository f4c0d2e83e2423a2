//! Host tests of the virtio-mmio transport and split virtqueues, driven as a Linux driver
//! would drive them, with malformed rings of every kind.

use super::*;
use crate::AccessSize;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x8000;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const DATA: u64 = BASE + 0x4000;
const SIZE: u16 = 8;
const WORD: AccessSize = AccessSize::Word;

/// The driver's side of queue 0, writing rings straight into RAM.
struct Driver {
    ram: Vec<u8>,
    avail_idx: u16,
}

impl Driver {
    fn new() -> Self {
        Self {
            ram: vec![0; RAM],
            avail_idx: 0,
        }
    }

    fn mem(&mut self) -> SliceMemory<'_> {
        SliceMemory::new(BASE, &mut self.ram)
    }

    fn poke(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr - BASE) as usize;
        self.ram[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn peek(&self, addr: u64, len: usize) -> &[u8] {
        let at = (addr - BASE) as usize;
        &self.ram[at..at + len]
    }

    fn desc(&mut self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        self.poke(DESC + 16 * u64::from(index), &raw);
    }

    /// Offers the chain at `head`.
    fn offer(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % SIZE);
        self.poke(AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let idx = self.avail_idx;
        self.poke(AVAIL + 2, &idx.to_le_bytes());
    }

    fn used_idx(&self) -> u16 {
        u16::from_le_bytes(self.peek(USED + 2, 2).try_into().unwrap())
    }

    fn used_elem(&self, slot: u16) -> (u32, u32) {
        let raw = self.peek(USED + 4 + 8 * u64::from(slot), 8);
        (
            u32::from_le_bytes(raw[0..4].try_into().unwrap()),
            u32::from_le_bytes(raw[4..8].try_into().unwrap()),
        )
    }

    fn write(&mut self, dev: &mut Transport<2>, at: u64, value: u64) -> Event {
        let mem = self.mem();
        dev.write(&mem, at, WORD, value).unwrap()
    }

    /// Probes `dev` as Linux does, with queue 0 at DESC/AVAIL/USED.
    fn bring_up(&mut self, dev: &mut Transport<2>) {
        self.write(
            dev,
            offset::STATUS,
            u64::from(status::ACKNOWLEDGE | status::DRIVER),
        );
        self.write(dev, offset::DRIVER_FEATURES_SEL, 1);
        self.write(dev, offset::DRIVER_FEATURES, 1);
        self.write(
            dev,
            offset::STATUS,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
        );
        self.write(dev, offset::QUEUE_SEL, 0);
        self.write(dev, offset::QUEUE_NUM, u64::from(SIZE));
        self.write(dev, offset::QUEUE_DESC_LOW, DESC);
        self.write(dev, offset::QUEUE_DRIVER_LOW, AVAIL);
        self.write(dev, offset::QUEUE_DEVICE_LOW, USED);
        self.write(dev, offset::QUEUE_READY, 1);
        let all = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
        assert_eq!(
            self.write(dev, offset::STATUS, u64::from(all)),
            Event::DriverOk
        );
        assert!(dev.is_live());
    }
}

fn device() -> Transport<2> {
    Transport::new(3, 1 << 1)
}

#[test]
fn registers_identify_a_version_2_device() {
    let dev = device();
    let read = |at| dev.read(at, WORD, &[]).unwrap();
    assert_eq!(read(offset::MAGIC), 0x7472_6976);
    assert_eq!(read(offset::VERSION), 2);
    assert_eq!(read(offset::DEVICE_ID), 3);
    assert_eq!(read(offset::DEVICE_FEATURES), 1 << 1);
    assert_eq!(read(offset::QUEUE_NUM_MAX), u64::from(QUEUE_SIZE_MAX));
    assert_eq!(read(offset::STATUS), 0);
}

#[test]
fn features_word_1_holds_version_1() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.write(&mut dev, offset::DEVICE_FEATURES_SEL, 1);
    assert_eq!(dev.read(offset::DEVICE_FEATURES, WORD, &[]), Ok(1));
    driver.write(&mut dev, offset::DEVICE_FEATURES_SEL, 2);
    assert_eq!(dev.read(offset::DEVICE_FEATURES, WORD, &[]), Ok(0));
}

#[test]
fn features_ok_needs_version_1_and_only_offered_bits() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.write(&mut dev, offset::STATUS, u64::from(status::FEATURES_OK));
    assert_eq!(dev.status() & status::FEATURES_OK, 0, "no VERSION_1");
    driver.write(&mut dev, offset::DRIVER_FEATURES_SEL, 1);
    driver.write(&mut dev, offset::DRIVER_FEATURES, 1);
    driver.write(&mut dev, offset::DRIVER_FEATURES_SEL, 0);
    driver.write(&mut dev, offset::DRIVER_FEATURES, 1 << 5);
    driver.write(&mut dev, offset::STATUS, u64::from(status::FEATURES_OK));
    assert_eq!(
        dev.status() & status::FEATURES_OK,
        0,
        "bit 5 is not offered"
    );
    driver.write(&mut dev, offset::DRIVER_FEATURES, 1 << 1);
    driver.write(&mut dev, offset::STATUS, u64::from(status::FEATURES_OK));
    assert_ne!(dev.status() & status::FEATURES_OK, 0);
    assert_eq!(dev.driver_features(), F_VERSION_1 | 1 << 1);
}

#[test]
fn registers_take_only_aligned_words_and_config_takes_bytes() {
    let mut driver = Driver::new();
    let mut dev = device();
    assert_eq!(
        dev.read(offset::STATUS, AccessSize::Byte, &[]),
        Err(AccessError::BadSize)
    );
    assert_eq!(
        dev.read(offset::STATUS + 2, WORD, &[]),
        Err(AccessError::Misaligned)
    );
    assert_eq!(
        dev.read(offset::CONFIG, AccessSize::Doubleword, &[]),
        Err(AccessError::BadSize)
    );
    let config = [0x50, 0, 0x18, 0, 4, 0, 0, 0];
    assert_eq!(
        dev.read(offset::CONFIG + 4, AccessSize::Word, &config),
        Ok(4)
    );
    assert_eq!(
        dev.read(offset::CONFIG + 2, AccessSize::Byte, &config),
        Ok(0x18)
    );
    assert_eq!(
        dev.read(offset::CONFIG + 0x40, AccessSize::Word, &config),
        Ok(0),
        "past the config: zero"
    );
    let mem = driver.mem();
    assert_eq!(
        dev.write(&mem, offset::CONFIG + 8, WORD, 0x1_0000_0041),
        Ok(Event::ConfigWrite {
            offset: 8,
            size: WORD,
            value: 0x41
        })
    );
}

#[test]
fn a_chain_goes_round_trip() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.poke(DATA, b"ping");
    driver.desc(0, DATA, 4, 1, 3); // readable, next 3
    driver.desc(3, DATA + 0x100, 16, 2, 0); // writable, last
    driver.offer(0);
    assert_eq!(
        driver.write(&mut dev, offset::QUEUE_NOTIFY, 0),
        Event::Notify(0)
    );
    let mut mem = driver.mem();
    let chain = dev.pop(&mem, 0).expect("a chain");
    assert_eq!(chain.head(), 0);
    assert_eq!((chain.readable_len(), chain.writable_len()), (4, 16));
    let mut got = [0u8; 8];
    assert_eq!(chain.read(&mem, &mut got), Ok(4));
    assert_eq!(&got[..4], b"ping");
    assert_eq!(chain.write(&mut mem, b"pong!"), Ok(5));
    assert_eq!(dev.pop(&mem, 0), None, "only one chain offered");
    dev.push_used(&mut mem, 0, &chain, 5);
    assert_eq!(driver.peek(DATA + 0x100, 5), b"pong!");
    assert_eq!(driver.used_idx(), 1);
    assert_eq!(driver.used_elem(0), (0, 5));
    assert_eq!(dev.interrupt_status(), interrupt::USED_BUFFER);
    assert!(dev.irq_level());
    driver.write(
        &mut dev,
        offset::INTERRUPT_ACK,
        u64::from(interrupt::USED_BUFFER),
    );
    assert!(!dev.irq_level());
    assert!(dev.broken().is_none());
}

#[test]
fn indices_wrap_around_the_ring_and_u16() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.desc(1, DATA, 8, 2, 0);
    for round in 0..70_000u32 {
        driver.offer(1);
        let mut mem = driver.mem();
        let chain = dev
            .pop(&mem, 0)
            .unwrap_or_else(|| panic!("round {round}: {:?}", dev.broken()));
        dev.push_used(&mut mem, 0, &chain, 8);
    }
    assert_eq!(driver.used_idx(), (70_000u32 % 65_536) as u16);
}

#[test]
fn notify_needs_a_ready_queue_and_a_live_device() {
    let mut driver = Driver::new();
    let mut dev = device();
    assert_eq!(
        driver.write(&mut dev, offset::QUEUE_NOTIFY, 0),
        Event::None,
        "not live"
    );
    driver.bring_up(&mut dev);
    assert_eq!(
        driver.write(&mut dev, offset::QUEUE_NOTIFY, 1),
        Event::None,
        "queue 1 not ready"
    );
    assert_eq!(
        driver.write(&mut dev, offset::QUEUE_NOTIFY, 7),
        Event::None,
        "no queue 7"
    );
}

#[test]
fn push_used_refuses_more_than_the_chain_can_hold() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.desc(0, DATA, 8, 2, 0);
    driver.offer(0);
    let mut mem = driver.mem();
    let chain = dev.pop(&mem, 0).unwrap();
    dev.push_used(&mut mem, 0, &chain, 9);
    assert_eq!(dev.broken(), Some(RingError::BadUsed));
}

/// Brings a device up, lets `corrupt` set descriptor 0 (and more) up, offers head 0 and pops.
fn broken_by(corrupt: impl FnOnce(&mut Driver)) -> (Driver, Transport<2>) {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    corrupt(&mut driver);
    if driver.avail_idx == 0 {
        driver.offer(0);
    }
    let mem = driver.mem();
    assert_eq!(dev.pop(&mem, 0), None);
    assert_ne!(dev.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(dev.interrupt_status() & interrupt::CONFIG_CHANGE, 0);
    (driver, dev)
}

#[test]
fn every_malformed_chain_breaks_the_device() {
    type Case = (&'static str, RingError, fn(&mut Driver));
    let cases: [Case; 9] = [
        ("buffer past RAM", RingError::BadBuffer, |d| {
            d.desc(0, BASE + RAM as u64 - 4, 8, 0, 0)
        }),
        ("buffer below RAM", RingError::BadBuffer, |d| {
            d.desc(0, BASE - 1, 1, 0, 0)
        }),
        ("wrapping buffer", RingError::BadBuffer, |d| {
            d.desc(0, u64::MAX - 3, 8, 0, 0)
        }),
        ("empty buffer", RingError::BadBuffer, |d| {
            d.desc(0, DATA, 0, 0, 0)
        }),
        ("next past the queue", RingError::BadIndex, |d| {
            d.desc(0, DATA, 8, 1, SIZE)
        }),
        ("a loop", RingError::ChainTooLong, |d| {
            d.desc(0, DATA, 8, 1, 1);
            d.desc(1, DATA, 8, 1, 0);
        }),
        ("indirect", RingError::Indirect, |d| {
            d.desc(0, DATA, 16, 4, 0)
        }),
        (
            "readable after writable",
            RingError::ReadableAfterWritable,
            |d| {
                d.desc(0, DATA, 8, 2 | 1, 1);
                d.desc(1, DATA, 8, 0, 0);
            },
        ),
        ("head past the queue", RingError::BadIndex, |d| {
            d.offer(SIZE + 3)
        }),
    ];
    for (name, why, corrupt) in cases {
        let (_, dev) = broken_by(corrupt);
        assert_eq!(dev.broken(), Some(why), "{name}");
    }
}

#[test]
fn an_available_index_too_far_ahead_breaks_the_device() {
    let (_, dev) = broken_by(|d| {
        d.desc(0, DATA, 8, 0, 0);
        d.poke(AVAIL + 2, &(SIZE + 1).to_le_bytes());
        d.avail_idx = SIZE + 1;
    });
    assert_eq!(dev.broken(), Some(RingError::AvailOverrun));
}

#[test]
fn a_head_offered_twice_while_in_flight_breaks_the_device() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.desc(0, DATA, 8, 0, 0);
    driver.offer(0);
    driver.offer(0);
    let mem = driver.mem();
    assert!(dev.pop(&mem, 0).is_some());
    assert_eq!(dev.pop(&mem, 0), None);
    assert_eq!(dev.broken(), Some(RingError::BadIndex));
}

#[test]
fn a_broken_device_stays_broken_until_reset() {
    let (mut driver, mut dev) = broken_by(|d| d.desc(0, 0, 8, 0, 0));
    driver.desc(0, DATA, 8, 0, 0);
    let all = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    driver.write(&mut dev, offset::STATUS, u64::from(all));
    assert_ne!(
        dev.status() & status::DEVICE_NEEDS_RESET,
        0,
        "the driver cannot clear it"
    );
    assert_eq!(driver.write(&mut dev, offset::QUEUE_NOTIFY, 0), Event::None);
    let mem = driver.mem();
    assert_eq!(dev.pop(&mem, 0), None, "no queue processed while broken");
    assert!(!dev.has_available(&mem, 0));
    assert_eq!(driver.write(&mut dev, offset::STATUS, 0), Event::Reset);
    assert_eq!(dev.status(), 0);
    assert!(dev.broken().is_none());
    assert!(!dev.irq_level());
    assert_eq!(dev.queue(0), Some(&Queue::default()));
    // Working again after a fresh probe.
    let mut driver = Driver::new();
    driver.bring_up(&mut dev);
    driver.desc(0, DATA, 8, 0, 0);
    driver.offer(0);
    let mem = driver.mem();
    assert!(dev.pop(&mem, 0).is_some());
}

#[test]
fn a_queue_made_ready_with_bad_rings_breaks_the_device() {
    type Setup = (&'static str, RingError, u64, u64, u64, u64);
    let setups: [Setup; 5] = [
        ("size 0", RingError::BadSize, 0, DESC, AVAIL, USED),
        ("size 6", RingError::BadSize, 6, DESC, AVAIL, USED),
        ("size 512", RingError::BadSize, 512, DESC, AVAIL, USED),
        (
            "desc misaligned",
            RingError::BadRingArea,
            8,
            DESC + 8,
            AVAIL,
            USED,
        ),
        (
            "used past RAM",
            RingError::BadRingArea,
            8,
            DESC,
            AVAIL,
            BASE + RAM as u64 - 16,
        ),
    ];
    for (name, why, size, desc, avail, used) in setups {
        let mut driver = Driver::new();
        let mut dev = device();
        driver.write(&mut dev, offset::QUEUE_NUM, size);
        driver.write(&mut dev, offset::QUEUE_DESC_LOW, desc);
        driver.write(&mut dev, offset::QUEUE_DRIVER_LOW, avail);
        driver.write(&mut dev, offset::QUEUE_DEVICE_LOW, used);
        driver.write(&mut dev, offset::QUEUE_READY, 1);
        assert_eq!(dev.broken(), Some(why), "{name}");
        assert_eq!(dev.read(offset::QUEUE_READY, WORD, &[]), Ok(0), "{name}");
    }
}

#[test]
fn a_ready_queue_keeps_its_layout() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.write(&mut dev, offset::QUEUE_DESC_LOW, 0x1234_0000);
    driver.write(&mut dev, offset::QUEUE_NUM, 2);
    assert_eq!(dev.queue(0).map(|q| (q.desc, q.size)), Some((DESC, SIZE)));
}

#[test]
fn a_reset_leaves_the_transport_as_new() {
    let mut driver = Driver::new();
    let mut dev = device();
    driver.bring_up(&mut dev);
    driver.desc(0, BASE + RAM as u64, 4, 0, 0); // outside RAM: breaks the device
    driver.offer(0);
    driver.write(&mut dev, offset::QUEUE_NOTIFY, 0);
    assert_eq!(dev.pop(&driver.mem(), 0), None);
    assert!(dev.broken().is_some());
    assert_eq!(driver.write(&mut dev, offset::STATUS, 0), Event::Reset);
    assert_eq!(dev, device(), "every field back to its reset value");
}
