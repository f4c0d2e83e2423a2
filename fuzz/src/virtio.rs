//! The virtio-mmio transport and split virtqueues, driven by a guest that writes any register
//! and any bytes into its RAM, against a device that takes and returns chains: the model
//! never touches memory outside guest RAM (the RAM here panics if it does), every chain it
//! hands out lies in RAM with writable buffers last, a used length never exceeds the chain's
//! writable bytes, the interrupt line is InterruptStatus != 0, and a broken device stays
//! broken (DEVICE_NEEDS_RESET set, no chain handed out) until the driver writes status 0.

use vm::AccessSize;
use vm::virtio::{Chain, GuestMemory, OutOfRam, SliceMemory, Transport, offset, status};

use crate::input::Input;

/// Guest RAM's base and size.
pub(crate) const BASE: u64 = 0x4000_0000;
pub(crate) const RAM: usize = 0x2000;

/// Guest RAM that panics on any access the model did not check first.
pub(crate) struct StrictMemory<'a>(pub(crate) SliceMemory<'a>);

impl GuestMemory for StrictMemory<'_> {
    fn contains(&self, addr: u64, len: u64) -> bool {
        self.0.contains(addr, len)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRam> {
        assert!(
            self.0.contains(addr, buf.len() as u64),
            "read of {} bytes at {addr:#x} outside RAM",
            buf.len()
        );
        self.0.read(addr, buf)
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfRam> {
        assert!(
            self.0.contains(addr, data.len() as u64),
            "write of {} bytes at {addr:#x} outside RAM",
            data.len()
        );
        self.0.write(addr, data)
    }
}

/// Registers worth hitting often.
const REGISTERS: &[u64] = &[
    offset::DEVICE_FEATURES_SEL,
    offset::DRIVER_FEATURES,
    offset::DRIVER_FEATURES_SEL,
    offset::QUEUE_SEL,
    offset::QUEUE_NUM,
    offset::QUEUE_READY,
    offset::QUEUE_NOTIFY,
    offset::INTERRUPT_ACK,
    offset::STATUS,
    offset::QUEUE_DESC_LOW,
    offset::QUEUE_DESC_HIGH,
    offset::QUEUE_DRIVER_LOW,
    offset::QUEUE_DRIVER_HIGH,
    offset::QUEUE_DEVICE_LOW,
    offset::QUEUE_DEVICE_HIGH,
];

/// Runs the register accesses, RAM writes and device work the bytes describe.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let mut ram = vec![0u8; RAM];
    let mut mem = StrictMemory(SliceMemory::new(BASE, &mut ram));
    let mut dev: Transport<3> = Transport::new(3, 0b11);
    let mut held: Vec<(u16, Chain)> = Vec::new();
    while !input.is_empty() {
        let was_broken = dev.broken().is_some();
        let mut reset = false;
        match input.u8() % 6 {
            0 => {
                let at = input.pick(REGISTERS);
                // Addresses near RAM most of the time, anything sometimes.
                let value = match input.u8() % 4 {
                    0 => input.u64(),
                    _ => BASE + u64::from(input.u16()) % (RAM as u64 + 0x100),
                };
                let value = if at == offset::QUEUE_NUM {
                    value % 300
                } else {
                    value
                };
                let value = if at == offset::QUEUE_SEL || at == offset::QUEUE_NOTIFY {
                    value % 4
                } else {
                    value
                };
                reset = at == offset::STATUS && value as u32 == 0;
                if let Ok(vm::virtio::Event::Reset) = dev.write(&mem, at, AccessSize::Word, value) {
                    held.clear();
                }
            }
            1 => {
                let at = u64::from(input.u16()) % 0x200;
                let size = input.pick(&[
                    AccessSize::Byte,
                    AccessSize::Halfword,
                    AccessSize::Word,
                    AccessSize::Doubleword,
                ]);
                if let Ok(value) = dev.read(at, size, &[1, 2, 3, 4]) {
                    assert_eq!(value & !size.mask(), 0);
                }
            }
            2 => {
                // The guest scribbles on its RAM (rings included).
                let at = BASE + u64::from(input.u16()) % RAM as u64;
                let len = usize::from(input.u8() % 16).min((BASE + RAM as u64 - at) as usize);
                let bytes: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                mem.0.write(at, &bytes).unwrap();
            }
            3 => {
                let q = u16::from(input.u8() % 4);
                if let Some(chain) = dev.pop(&mem, q) {
                    assert!(!was_broken, "a broken device handed out a chain");
                    let mut seen_writable = false;
                    for seg in chain.segments() {
                        assert!(
                            mem.contains(seg.addr, u64::from(seg.len)),
                            "{seg:?} outside RAM"
                        );
                        assert!(seg.len > 0);
                        assert!(seg.writable || !seen_writable, "readable after writable");
                        seen_writable |= seg.writable;
                    }
                    let mut buf = [0u8; 64];
                    chain.read(&mem, &mut buf).unwrap();
                    held.push((q, chain));
                }
            }
            4 => {
                if !held.is_empty() {
                    let (q, chain) = held.remove(usize::from(input.u8()) % held.len());
                    let fill = [0xa5u8; 64];
                    let written = chain
                        .write(&mut mem, &fill[..usize::from(input.u8() % 64)])
                        .unwrap();
                    assert!(written as u64 <= chain.writable_len());
                    dev.push_used(&mut mem, q, &chain, written as u32);
                }
            }
            _ => {
                let q = u16::from(input.u8() % 4);
                let _ = dev.has_available(&mem, q);
            }
        }
        if was_broken && !reset {
            assert!(
                dev.broken().is_some(),
                "the device recovered without a reset"
            );
        }
        if dev.broken().is_some() {
            assert_ne!(dev.status() & status::DEVICE_NEEDS_RESET, 0);
            assert!(!dev.is_live());
        }
        assert_eq!(dev.irq_level(), dev.interrupt_status() != 0);
    }
}
