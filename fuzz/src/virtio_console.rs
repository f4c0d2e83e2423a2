//! The virtio-console model on top of the transport, driven by a guest that writes any
//! register (six queues: two ports), scribbles on its RAM and has the model service the
//! queues while the core's side fills and drains the ports: the model touches no byte
//! outside guest RAM, a port never takes more than it has room for, the guest gets no byte
//! the ports did not hold, a broken console moves nothing and stays broken until reset, and
//! the interrupt line is InterruptStatus != 0.

use std::collections::VecDeque;

use vm::AccessSize;
use vm::virtio::console::{Console, Ports};
use vm::virtio::{GuestMemory, SliceMemory, offset, status};

use crate::input::Input;
use crate::virtio::StrictMemory;

use crate::virtio::{BASE, RAM};
/// Bytes each port holds each way.
const PORT_ROOM: usize = 64;

/// Two bounded ports, counting what crossed them.
#[derive(Default)]
struct FuzzPorts {
    from_guest: [VecDeque<u8>; 2],
    for_guest: [VecDeque<u8>; 2],
    pulled: u64,
    queued: u64,
}

impl Ports for FuzzPorts {
    fn present(&self, port: usize) -> bool {
        port < 2
    }
    fn name(&self, port: usize) -> &[u8] {
        if port == 0 { b"companion.ctl" } else { b"fuzz" }
    }
    fn push_from_guest(&mut self, port: usize, data: &[u8]) -> usize {
        let n = data.len().min(PORT_ROOM - self.from_guest[port].len());
        self.from_guest[port].extend(&data[..n]);
        n
    }
    fn pull_for_guest(&mut self, port: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.for_guest[port].len());
        for byte in &mut buf[..n] {
            *byte = self.for_guest[port].pop_front().unwrap_or(0);
        }
        self.pulled += n as u64;
        n
    }
    fn has_data_for_guest(&self, port: usize) -> bool {
        !self.for_guest[port].is_empty()
    }
}

/// Registers worth hitting often.
const REGISTERS: &[u64] = &[
    offset::DRIVER_FEATURES,
    offset::DRIVER_FEATURES_SEL,
    offset::QUEUE_SEL,
    offset::QUEUE_NUM,
    offset::QUEUE_READY,
    offset::QUEUE_NOTIFY,
    offset::INTERRUPT_ACK,
    offset::STATUS,
    offset::QUEUE_DESC_LOW,
    offset::QUEUE_DRIVER_LOW,
    offset::QUEUE_DEVICE_LOW,
];

/// Runs what the bytes describe.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let mut ram = vec![0u8; RAM];
    let mut mem = StrictMemory(SliceMemory::new(BASE, &mut ram));
    let mut console: Console<6> = Console::new();
    let mut ports = FuzzPorts::default();
    while !input.is_empty() {
        let was_broken = console.transport().broken().is_some();
        let mut reset = false;
        let before = (ports.pulled, ports.from_guest.clone());
        match input.u8() % 5 {
            0 => {
                let at = input.pick(REGISTERS);
                let value = match at {
                    offset::QUEUE_NUM => u64::from(input.u16() % 300),
                    offset::QUEUE_SEL | offset::QUEUE_NOTIFY => u64::from(input.u8() % 8),
                    offset::STATUS | offset::DRIVER_FEATURES | offset::DRIVER_FEATURES_SEL => u64::from(input.u8()),
                    _ => BASE + u64::from(input.u16()) % (RAM as u64 + 0x100),
                };
                reset = at == offset::STATUS && value == 0;
                let _ = console.write(&mem, at, AccessSize::Word, value);
                console.service(&mut mem, &mut ports);
            }
            1 => {
                let at = BASE + u64::from(input.u16()) % RAM as u64;
                let len = usize::from(input.u8() % 16).min((BASE + RAM as u64 - at) as usize);
                let bytes: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                mem.0.write(at, &bytes).unwrap();
            }
            2 => console.service(&mut mem, &mut ports),
            3 => {
                let port = usize::from(input.u8() % 2);
                let n = usize::from(input.u8()).min(PORT_ROOM - ports.for_guest[port].len());
                ports.for_guest[port].extend(std::iter::repeat_n(0x5a, n));
                ports.queued += n as u64;
            }
            _ => {
                let port = usize::from(input.u8() % 2);
                ports.from_guest[port].clear();
            }
        }
        for port in &ports.from_guest {
            assert!(port.len() <= PORT_ROOM);
        }
        assert!(ports.pulled <= ports.queued, "the guest got bytes no port held");
        if was_broken && !reset {
            assert!(console.transport().broken().is_some(), "recovered without a reset");
            assert_eq!((ports.pulled, &ports.from_guest), (before.0, &before.1), "a broken console moved bytes");
        }
        if console.transport().broken().is_some() {
            assert_ne!(console.transport().status() & status::DEVICE_NEEDS_RESET, 0);
        }
        assert_eq!(console.transport().irq_level(), console.transport().interrupt_status() != 0);
    }
}
