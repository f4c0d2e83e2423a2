//! The guest's RAM as the virtio model sees it: every access names a guest-physical range that
//! must lie wholly inside RAM, or it is refused.

/// A guest-physical range that is not wholly inside the guest's RAM (or wraps past 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRam {
    /// The first guest-physical address of the refused range.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// The guest's RAM: the core's implementation checks the guest's RAM ranges and copies through
/// its stage-2 view; [`SliceMemory`] is the host's.
///
/// Implementations refuse any range not wholly inside RAM (and any range that wraps); the
/// virtio model checks ranges with [`GuestMemory::contains`] before it touches them, so a
/// refusal is a bug in the model, which it still survives (the device is marked broken).
pub trait GuestMemory {
    /// Whether `[addr, addr + len)` lies wholly inside the guest's RAM (an empty range: whether
    /// `addr` does or is RAM's end).
    fn contains(&self, addr: u64, len: u64) -> bool;
    /// Copies `buf.len()` bytes at guest-physical `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRam>;
    /// Copies `data` to guest-physical `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfRam>;
    /// Orders the accesses before it before those after it, as the driver on another CPU sees
    /// them (a `dmb ish` in the core; nothing on the host, where one thread does both sides).
    fn fence(&self) {}
}

/// One contiguous RAM range backed by a byte slice: the host tests' and fuzzer's guest RAM.
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    /// Guest RAM at guest-physical `base`, as large as `bytes`.
    pub fn new(base: u64, bytes: &'a mut [u8]) -> Self {
        Self { base, bytes }
    }

    /// The first guest-physical address of RAM.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The RAM's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The slice index range of `[addr, addr + len)`, if inside RAM.
    fn index(&self, addr: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = addr.checked_sub(self.base)?;
        let end = start.checked_add(len)?;
        if end > self.bytes.len() as u64 {
            return None;
        }
        Some(start as usize..end as usize)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn contains(&self, addr: u64, len: u64) -> bool {
        self.index(addr, len).is_some()
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRam> {
        let range = self.index(addr, buf.len() as u64).ok_or(OutOfRam {
            addr,
            len: buf.len() as u64,
        })?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfRam> {
        let range = self.index(addr, data.len() as u64).ok_or(OutOfRam {
            addr,
            len: data.len() as u64,
        })?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}
