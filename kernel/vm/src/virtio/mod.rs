//! A virtio device model for the guest (virtio 1.2): the virtio-mmio transport
//! ([`transport`]), split virtqueues ([`queue`]) and the guest RAM they live in ([`memory`]).
//!
//! Everything the guest writes is untrusted: register values, ring indices, descriptor
//! addresses, lengths and flags. Each is checked before use against the queue's size and the
//! guest's RAM; a malformed ring breaks the device (DEVICE_NEEDS_RESET and a configuration
//! change interrupt) until the driver resets it, and never panics.
//!
//! A device on top (the glue's flow):
//!
//! ```
//! use vm::AccessSize;
//! use vm::virtio::{Event, SliceMemory, Transport, offset, status};
//!
//! let mut ram = vec![0u8; 0x4000];
//! let mut mem = SliceMemory::new(0x4000_0000, &mut ram);
//! let mut dev: Transport<2> = Transport::new(3, 0); // virtio-console, two queues
//! let word = AccessSize::Word;
//! assert_eq!(dev.read(offset::MAGIC, word, &[]), Ok(0x7472_6976));
//! // The driver: features, queue 0 at 0x4000_0000.., DRIVER_OK.
//! dev.write(&mem, offset::DRIVER_FEATURES_SEL, word, 1).unwrap();
//! dev.write(&mem, offset::DRIVER_FEATURES, word, 1).unwrap(); // VIRTIO_F_VERSION_1
//! dev.write(&mem, offset::STATUS, word, u64::from(status::FEATURES_OK)).unwrap();
//! dev.write(&mem, offset::QUEUE_NUM, word, 8).unwrap();
//! dev.write(&mem, offset::QUEUE_DESC_LOW, word, 0x4000_0000).unwrap();
//! dev.write(&mem, offset::QUEUE_DRIVER_LOW, word, 0x4000_1000).unwrap();
//! dev.write(&mem, offset::QUEUE_DEVICE_LOW, word, 0x4000_2000).unwrap();
//! dev.write(&mem, offset::QUEUE_READY, word, 1).unwrap();
//! let ok = status::FEATURES_OK | status::DRIVER_OK;
//! assert_eq!(dev.write(&mem, offset::STATUS, word, u64::from(ok)), Ok(Event::DriverOk));
//! // A notification: take what the driver offered (nothing yet), use it, raise the interrupt.
//! assert_eq!(dev.write(&mem, offset::QUEUE_NOTIFY, word, 0), Ok(Event::Notify(0)));
//! while let Some(chain) = dev.pop(&mem, 0) {
//!     let written = chain.write(&mut mem, b"hello").unwrap();
//!     dev.push_used(&mut mem, 0, &chain, written as u32);
//! }
//! assert!(dev.broken().is_none());
//! ```

pub mod console;
pub mod control;
pub mod memory;
pub mod queue;
pub mod transport;

#[cfg(test)]
mod tests;

pub use memory::{GuestMemory, OutOfRam, SliceMemory};
pub use queue::{Chain, MAX_CHAIN, QUEUE_SIZE_MAX, Queue, RingError, Segment};
pub use transport::{
    AccessError, Event, F_VERSION_1, FRAME_SIZE, Transport, interrupt, offset, status,
};

#[cfg(test)]
mod console_tests;
