//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register frame a
//! driver probes, negotiates features and sets queues up through, and the device status with
//! its "broken" state.
//!
//! Registers are 32-bit and take only aligned word accesses ([`AccessError`] otherwise: the
//! glue injects an abort); the device-specific configuration space from offset 0x100 takes
//! byte, halfword and word accesses and is the device's ([`Transport::read`] and
//! [`Transport::write`] hand those to it). Unknown offsets read as zero and ignore writes.
//!
//! **Broken.** [`Transport::fail`] (a malformed ring, found by [`Transport::pop`] or when a
//! queue is made ready) sets DEVICE_NEEDS_RESET in the status and raises the configuration
//! change interrupt; from then on no queue is processed and the bit stays set, whatever the
//! driver writes, until it resets the device (status 0).

use core::fmt;

use super::memory::GuestMemory;
use super::queue::{Chain, Queue, RingError};
use crate::mmio::AccessSize;

/// Size of the register frame (one 4 KiB page).
pub const FRAME_SIZE: u64 = 0x1000;
/// "virt" in little-endian: the MagicValue register.
pub const MAGIC: u32 = 0x7472_6976;
/// The transport version this model implements (the modern, non-legacy one).
pub const VERSION: u32 = 2;
/// The VendorID register: "CCOR", this core's.
pub const VENDOR_ID: u32 = 0x524f_4343;
/// Feature bit: the device complies with virtio 1.x (required of a version 2 transport).
pub const F_VERSION_1: u64 = 1 << 32;

/// Register offsets in the frame.
pub mod offset {
    /// MagicValue (read only).
    pub const MAGIC: u64 = 0x000;
    /// Version (read only).
    pub const VERSION: u64 = 0x004;
    /// DeviceID (read only).
    pub const DEVICE_ID: u64 = 0x008;
    /// VendorID (read only).
    pub const VENDOR_ID: u64 = 0x00c;
    /// DeviceFeatures: 32 feature bits, the word DeviceFeaturesSel selects.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// DeviceFeaturesSel.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// DriverFeatures: 32 bits the driver accepts, the word DriverFeaturesSel selects.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// DriverFeaturesSel.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// QueueSel: the queue the Queue* registers refer to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// QueueNumMax (read only).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// QueueNum: the queue size the driver chose.
    pub const QUEUE_NUM: u64 = 0x038;
    /// QueueReady.
    pub const QUEUE_READY: u64 = 0x044;
    /// QueueNotify (write only): the queue index with new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// InterruptStatus (read only).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// InterruptACK (write only).
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Status.
    pub const STATUS: u64 = 0x070;
    /// QueueDescLow; QueueDescHigh follows.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// QueueDescHigh.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// QueueDriverLow (the available ring).
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// QueueDriverHigh.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// QueueDeviceLow (the used ring).
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// QueueDeviceHigh.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// ConfigGeneration (read only).
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// The device-specific configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits (virtio 1.2, section 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: queues may be used.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is done (set only if the device accepts the features).
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and must be reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// InterruptStatus bits.
pub mod interrupt {
    /// The device used a buffer.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration (or the device status) changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// An access the transport refuses (the glue injects an abort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// A register access that is not a word, or a doubleword access to the configuration.
    BadSize,
    /// The offset is not a multiple of the access size.
    Misaligned,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSize => "virtio-mmio registers take word accesses (config: byte to word)",
            Self::Misaligned => "misaligned virtio-mmio access",
        })
    }
}

/// What a write asks of the device, beyond the transport's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing more.
    None,
    /// The driver notified queue `0` (ready, device live and not broken): process it.
    Notify(u16),
    /// The driver reset the device: the device forgets its own state too.
    Reset,
    /// The driver set DRIVER_OK: the device may start using its queues.
    DriverOk,
    /// A write to the configuration space at this offset (from the space's start).
    ConfigWrite {
        /// Offset in the configuration space.
        offset: u64,
        /// The access size.
        size: AccessSize,
        /// The value written.
        value: u64,
    },
}

/// The virtio-mmio transport state of one device with `Q` queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport<const Q: usize> {
    device_id: u32,
    device_features: u64,
    driver_features: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: [Queue; Q],
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    broken: Option<RingError>,
}

impl<const Q: usize> Transport<Q> {
    /// A reset device of type `device_id` offering `features` (VIRTIO_F_VERSION_1 is added).
    pub fn new(device_id: u32, features: u64) -> Self {
        Self {
            device_id,
            device_features: features | F_VERSION_1,
            driver_features: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues: [Queue::default(); Q],
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            broken: None,
        }
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The features the driver accepted (meaningful once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    /// Whether the driver set FEATURES_OK and DRIVER_OK and the device is not broken: queues
    /// may be used.
    pub fn is_live(&self) -> bool {
        let live = status::FEATURES_OK | status::DRIVER_OK;
        self.status & live == live && self.broken.is_none()
    }

    /// The interrupt line: InterruptStatus non-zero.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }

    /// InterruptStatus.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Queue `index`'s state, if the device has it.
    pub fn queue(&self, index: u16) -> Option<&Queue> {
        self.queues.get(usize::from(index))
    }

    /// Marks the device broken (the first reason is kept) and tells the driver.
    pub fn fail(&mut self, why: RingError) {
        if self.broken.is_none() {
            self.broken = Some(why);
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt_status |= interrupt::CONFIG_CHANGE;
    }

    /// Takes the next available chain of queue `index`; `None` if the ring is empty, the
    /// queue is not ready or the device is not live. A malformed ring breaks the device.
    pub fn pop(&mut self, mem: &impl GuestMemory, index: u16) -> Option<Chain> {
        if !self.is_live() {
            return None;
        }
        let queue = self
            .queues
            .get_mut(usize::from(index))
            .filter(|q| q.ready)?;
        match queue.pop(mem) {
            Ok(chain) => chain,
            Err(why) => {
                self.fail(why);
                None
            }
        }
    }

    /// Whether queue `index` has buffers to take (false when not live or broken).
    pub fn has_available(&mut self, mem: &impl GuestMemory, index: u16) -> bool {
        if !self.is_live() {
            return false;
        }
        let Some(queue) = self.queues.get(usize::from(index)).filter(|q| q.ready) else {
            return false;
        };
        match queue.has_available(mem) {
            Ok(any) => any,
            Err(why) => {
                self.fail(why);
                false
            }
        }
    }

    /// Returns `chain` (from [`Transport::pop`] on queue `index`) with `written` bytes written
    /// and raises the used-buffer interrupt. Does nothing once broken; an inconsistent return
    /// breaks the device.
    pub fn push_used(
        &mut self,
        mem: &mut impl GuestMemory,
        index: u16,
        chain: &Chain,
        written: u32,
    ) {
        if !self.is_live() {
            return;
        }
        let Some(queue) = self.queues.get_mut(usize::from(index)).filter(|q| q.ready) else {
            return;
        };
        match queue.push_used(mem, chain, written) {
            Ok(()) => self.interrupt_status |= interrupt::USED_BUFFER,
            Err(why) => self.fail(why),
        }
    }

    /// A full reset: the driver wrote 0 to Status. In place, field by field (a reset is
    /// emulated in the trap: no whole new transport built and copied).
    fn reset(&mut self) {
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.queues.iter_mut().for_each(Queue::reset);
        self.status = 0;
        self.interrupt_status = 0;
        self.config_generation = 0;
        self.broken = None;
    }

    /// The selected queue, if it exists.
    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Checks an access's size and alignment; whether it is to the configuration space.
    fn check(at: u64, size: AccessSize) -> Result<bool, AccessError> {
        let config = at >= offset::CONFIG;
        if size == AccessSize::Doubleword || (!config && size != AccessSize::Word) {
            return Err(AccessError::BadSize);
        }
        if !at.is_multiple_of(u64::from(size.bytes())) {
            return Err(AccessError::Misaligned);
        }
        Ok(config)
    }

    /// A read of the frame at `at`; `config` is the device's configuration space (bytes past
    /// its end read as zero).
    pub fn read(&self, at: u64, size: AccessSize, config: &[u8]) -> Result<u64, AccessError> {
        if Self::check(at, size)? {
            let start = (at - offset::CONFIG) as usize;
            let mut value = 0u64;
            for i in 0..size.bytes() as usize {
                let byte = config.get(start + i).copied().unwrap_or(0);
                value |= u64::from(byte) << (8 * i);
            }
            return Ok(value);
        }
        let queue = self.queues.get(self.queue_sel as usize);
        let word = |sel: u32, bits: u64| {
            if sel < 2 {
                (bits >> (32 * sel)) as u32
            } else {
                0
            }
        };
        let value = match at {
            offset::MAGIC => MAGIC,
            offset::VERSION => VERSION,
            offset::DEVICE_ID => self.device_id,
            offset::VENDOR_ID => VENDOR_ID,
            offset::DEVICE_FEATURES => word(self.device_features_sel, self.device_features),
            offset::QUEUE_NUM_MAX => queue.map_or(0, |_| u32::from(super::queue::QUEUE_SIZE_MAX)),
            offset::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            offset::INTERRUPT_STATUS => self.interrupt_status,
            offset::STATUS => self.status,
            offset::CONFIG_GENERATION => self.config_generation,
            offset::QUEUE_NUM => queue.map_or(0, |q| u32::from(q.size)),
            offset::QUEUE_DESC_LOW => queue.map_or(0, |q| q.desc as u32),
            offset::QUEUE_DESC_HIGH => queue.map_or(0, |q| (q.desc >> 32) as u32),
            offset::QUEUE_DRIVER_LOW => queue.map_or(0, |q| q.avail as u32),
            offset::QUEUE_DRIVER_HIGH => queue.map_or(0, |q| (q.avail >> 32) as u32),
            offset::QUEUE_DEVICE_LOW => queue.map_or(0, |q| q.used as u32),
            offset::QUEUE_DEVICE_HIGH => queue.map_or(0, |q| (q.used >> 32) as u32),
            _ => 0,
        };
        Ok(u64::from(value))
    }

    /// A write of `value` to the frame at `at`; `mem` is guest RAM, for checking a queue's
    /// rings when the driver makes it ready.
    pub fn write(
        &mut self,
        mem: &impl GuestMemory,
        at: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Event, AccessError> {
        if Self::check(at, size)? {
            return Ok(Event::ConfigWrite {
                offset: at - offset::CONFIG,
                size,
                value: value & size.mask(),
            });
        }
        let value = value as u32;
        // Queue layout is fixed once the queue is ready (the driver must not change it).
        let set_low = |field: &mut u64| *field = (*field & !0xffff_ffff) | u64::from(value);
        let set_high = |field: &mut u64| *field = (*field & 0xffff_ffff) | (u64::from(value) << 32);
        match at {
            offset::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            offset::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            offset::DRIVER_FEATURES
                if self.status & status::FEATURES_OK == 0 && self.driver_features_sel < 2 =>
            {
                let shift = 32 * self.driver_features_sel;
                self.driver_features =
                    (self.driver_features & !(0xffff_ffff << shift)) | (u64::from(value) << shift);
            }
            offset::QUEUE_SEL => self.queue_sel = value,
            offset::QUEUE_NUM => {
                if let Some(q) = self.selected().filter(|q| !q.ready) {
                    q.size = value.min(u32::from(u16::MAX)) as u16;
                }
            }
            offset::QUEUE_DESC_LOW => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_low(&mut q.desc)),
            offset::QUEUE_DESC_HIGH => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_high(&mut q.desc)),
            offset::QUEUE_DRIVER_LOW => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_low(&mut q.avail)),
            offset::QUEUE_DRIVER_HIGH => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_high(&mut q.avail)),
            offset::QUEUE_DEVICE_LOW => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_low(&mut q.used)),
            offset::QUEUE_DEVICE_HIGH => self
                .selected()
                .filter(|q| !q.ready)
                .map_or((), |q| set_high(&mut q.used)),
            offset::QUEUE_READY => self.set_ready(mem, value & 1 != 0),
            offset::QUEUE_NOTIFY => {
                let ready = self.queues.get(value as usize).is_some_and(|q| q.ready);
                if ready && self.is_live() {
                    return Ok(Event::Notify(value as u16));
                }
            }
            offset::INTERRUPT_ACK => self.interrupt_status &= !value,
            offset::STATUS => return Ok(self.set_status(value)),
            _ => {}
        }
        Ok(Event::None)
    }

    /// QueueReady written: a queue made ready has its setup checked (a bad one breaks the
    /// device); clearing it forgets the queue's position.
    fn set_ready(&mut self, mem: &impl GuestMemory, ready: bool) {
        let Some(q) = self.selected() else { return };
        if !ready {
            q.reset();
            return;
        }
        if q.ready {
            return;
        }
        match q.check_setup(mem) {
            Ok(()) => q.ready = true,
            Err(why) => self.fail(why),
        }
    }

    /// Status written: 0 resets; FEATURES_OK only sticks if the accepted features are offered
    /// ones including VIRTIO_F_VERSION_1; DEVICE_NEEDS_RESET stays set while broken.
    fn set_status(&mut self, value: u32) -> Event {
        if value == 0 {
            self.reset();
            return Event::Reset;
        }
        let mut value = value & !status::DEVICE_NEEDS_RESET;
        let features_ok = self.driver_features & !self.device_features == 0
            && self.driver_features & F_VERSION_1 != 0;
        if value & status::FEATURES_OK != 0 && !features_ok {
            value &= !status::FEATURES_OK;
        }
        let was_live = self.is_live();
        self.status = value
            | if self.broken.is_some() {
                status::DEVICE_NEEDS_RESET
            } else {
                0
            };
        if !was_live && self.is_live() {
            Event::DriverOk
        } else {
            Event::None
        }
    }
}
