//! A split virtqueue (virtio 1.2, section 2.7) seen from the device: the descriptor table, the
//! driver's available ring and the device's used ring, all in guest RAM and all untrusted.
//!
//! Every field is read from guest RAM exactly once per use and checked before it is used: a
//! head or `next` index within the queue, every buffer wholly inside guest RAM, at most
//! [`MAX_CHAIN`] descriptors per chain (so a loop is refused too), device-writable buffers only
//! after the readable ones, no indirect descriptors (not offered), and an available index never
//! more than the queue size ahead. Anything else is a [`RingError`]: the transport then marks
//! the device broken.

use super::memory::GuestMemory;

/// Largest queue size the device offers (QueueNumMax).
pub const QUEUE_SIZE_MAX: u16 = 256;
/// Most descriptors one chain may have.
pub const MAX_CHAIN: usize = 16;

/// Bytes of one descriptor table entry.
const DESC_SIZE: u64 = 16;
/// Bytes of one used ring element.
const USED_ELEM_SIZE: u64 = 8;
/// Bytes of a ring's header (flags and index).
const RING_HEADER: u64 = 4;
/// Descriptor flag: the chain continues at `next`.
const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable.
const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of indirect descriptors.
const DESC_F_INDIRECT: u16 = 4;

/// What is wrong with a ring the driver set up: any of them makes the device broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The driver made a queue ready with a size of zero, not a power of two, or above
    /// [`QUEUE_SIZE_MAX`].
    BadSize,
    /// A ring area is misaligned or not wholly inside guest RAM.
    BadRingArea,
    /// The available index is more than the queue size ahead of the device.
    AvailOverrun,
    /// A head or `next` index is not below the queue size.
    BadIndex,
    /// A buffer is not wholly inside guest RAM, or is empty.
    BadBuffer,
    /// A chain is longer than [`MAX_CHAIN`] or than the queue (this includes loops).
    ChainTooLong,
    /// A readable buffer follows a writable one.
    ReadableAfterWritable,
    /// An indirect descriptor (VIRTIO_F_INDIRECT_DESC is not offered).
    Indirect,
    /// A ring access was refused by guest memory (cannot happen after the checks; kept so a
    /// model bug is survived).
    Memory,
    /// A used length larger than the chain's writable bytes, or a head never popped.
    BadUsed,
}

/// One buffer of a chain: wholly inside guest RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes (non-zero).
    pub len: u32,
    /// Whether the device may write it (otherwise it may only read it).
    pub writable: bool,
}

/// A descriptor chain taken from the available ring, already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index (what the used ring gives back).
    head: u16,
    segments: [Segment; MAX_CHAIN],
    count: usize,
}

impl Chain {
    /// The head descriptor's index.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The chain's buffers, readable ones first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// Total bytes of the readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.segments()
            .iter()
            .filter(|s| !s.writable)
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Total bytes of the writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.segments()
            .iter()
            .filter(|s| s.writable)
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Copies the readable buffers' bytes, in order, into `out` (as many as fit); returns how
    /// many were copied.
    pub fn read(&self, mem: &impl GuestMemory, out: &mut [u8]) -> Result<usize, RingError> {
        let mut done = 0;
        for seg in self.segments().iter().filter(|s| !s.writable) {
            let n = (seg.len as usize).min(out.len() - done);
            mem.read(seg.addr, &mut out[done..done + n])
                .map_err(|_| RingError::Memory)?;
            done += n;
            if done == out.len() {
                break;
            }
        }
        Ok(done)
    }

    /// Copies `data` into the writable buffers, in order (as much as fits); returns how many
    /// bytes were written.
    pub fn write(&self, mem: &mut impl GuestMemory, data: &[u8]) -> Result<usize, RingError> {
        let mut done = 0;
        for seg in self.segments().iter().filter(|s| s.writable) {
            let n = (seg.len as usize).min(data.len() - done);
            mem.write(seg.addr, &data[done..done + n])
                .map_err(|_| RingError::Memory)?;
            done += n;
            if done == data.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// One split virtqueue's device-side state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// QueueNum: the size the driver chose.
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// QueueDesc: the descriptor table's guest-physical address.
    pub desc: u64,
    /// QueueDriver: the available ring's.
    pub avail: u64,
    /// QueueDevice: the used ring's.
    pub used: u64,
    /// The next available ring slot the device reads.
    next_avail: u16,
    /// The next used ring index the device writes.
    next_used: u16,
    /// Heads taken and not yet returned (bit per descriptor index).
    in_flight: [u64; QUEUE_SIZE_MAX as usize / 64],
}

impl Queue {
    /// Checks the queue's setup when the driver makes it ready: size, ring alignment and every
    /// ring area wholly inside guest RAM.
    pub fn check_setup(&self, mem: &impl GuestMemory) -> Result<(), RingError> {
        let n = u64::from(self.size);
        if self.size == 0 || !self.size.is_power_of_two() || self.size > QUEUE_SIZE_MAX {
            return Err(RingError::BadSize);
        }
        // (address, length, alignment) of the descriptor table, available ring (with
        // used_event) and used ring (with avail_event).
        let areas = [
            (self.desc, DESC_SIZE * n, 16),
            (self.avail, RING_HEADER + 2 * n + 2, 2),
            (self.used, RING_HEADER + USED_ELEM_SIZE * n + 2, 4),
        ];
        for (addr, len, align) in areas {
            if addr % align != 0 || !mem.contains(addr, len) {
                return Err(RingError::BadRingArea);
            }
        }
        Ok(())
    }

    /// Forgets the queue (a device reset).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Reads a little-endian u16 at `addr`.
    fn read_u16(mem: &impl GuestMemory, addr: u64) -> Result<u16, RingError> {
        let mut b = [0; 2];
        mem.read(addr, &mut b).map_err(|_| RingError::Memory)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Whether the driver has made buffers available that the device has not taken.
    pub fn has_available(&self, mem: &impl GuestMemory) -> Result<bool, RingError> {
        Ok(self.pending(mem)? != 0)
    }

    /// How many chains the available ring holds beyond the device's position (checked).
    fn pending(&self, mem: &impl GuestMemory) -> Result<u16, RingError> {
        let idx = Self::read_u16(mem, self.avail + 2)?;
        // The ring entries the index publishes are read after it.
        mem.fence();
        let pending = idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(RingError::AvailOverrun);
        }
        Ok(pending)
    }

    /// Takes the next available chain, checking it wholly; `None` when the ring is empty.
    /// The queue must be ready (checked by [`Queue::check_setup`]).
    pub fn pop(&mut self, mem: &impl GuestMemory) -> Result<Option<Chain>, RingError> {
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = Self::read_u16(mem, self.avail + RING_HEADER + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        if self.is_in_flight(head) {
            // The driver offered a head the device still holds.
            return Err(RingError::BadIndex);
        }
        self.in_flight[usize::from(head) / 64] |= 1 << (head % 64);
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// Whether `head` was taken and not yet returned.
    fn is_in_flight(&self, head: u16) -> bool {
        self.in_flight[usize::from(head) / 64] & (1 << (head % 64)) != 0
    }

    /// Walks and checks the chain starting at descriptor `head`.
    fn walk(&self, mem: &impl GuestMemory, head: u16) -> Result<Chain, RingError> {
        let mut chain = Chain {
            head,
            segments: [Segment::default(); MAX_CHAIN],
            count: 0,
        };
        let mut index = head;
        loop {
            if index >= self.size {
                return Err(RingError::BadIndex);
            }
            if chain.count == MAX_CHAIN || chain.count == usize::from(self.size) {
                return Err(RingError::ChainTooLong);
            }
            let mut raw = [0u8; DESC_SIZE as usize];
            mem.read(self.desc + DESC_SIZE * u64::from(index), &mut raw)
                .map_err(|_| RingError::Memory)?;
            let addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(RingError::Indirect);
            }
            if len == 0 || !mem.contains(addr, u64::from(len)) {
                return Err(RingError::BadBuffer);
            }
            let writable = flags & DESC_F_WRITE != 0;
            if !writable && chain.segments().iter().any(|s| s.writable) {
                return Err(RingError::ReadableAfterWritable);
            }
            chain.segments[chain.count] = Segment {
                addr,
                len,
                writable,
            };
            chain.count += 1;
            if flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = next;
        }
    }

    /// Returns `chain` to the driver with `written` bytes written into its writable buffers.
    pub fn push_used(
        &mut self,
        mem: &mut impl GuestMemory,
        chain: &Chain,
        written: u32,
    ) -> Result<(), RingError> {
        let head = chain.head;
        if head >= self.size
            || !self.is_in_flight(head)
            || u64::from(written) > chain.writable_len()
        {
            return Err(RingError::BadUsed);
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used + RING_HEADER + USED_ELEM_SIZE * slot;
        let mut raw = [0u8; USED_ELEM_SIZE as usize];
        raw[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..8].copy_from_slice(&written.to_le_bytes());
        mem.write(elem, &raw).map_err(|_| RingError::Memory)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element is visible before the index that publishes it.
        mem.fence();
        mem.write(self.used + 2, &self.next_used.to_le_bytes())
            .map_err(|_| RingError::Memory)?;
        self.in_flight[usize::from(head) / 64] &= !(1 << (head % 64));
        Ok(())
    }
}
