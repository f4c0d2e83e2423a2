//! The console ring: a fixed-size byte ring that writers fill with whole records and one
//! drainer empties towards the UART. Portable (no locking, no hardware), so the logic is unit
//! tested on the host; the console ([`super`]) puts it behind an IRQ-safe lock.
//!
//! - A record goes in whole or not at all: [`Ring::push`] copies a formatted record,
//!   [`Ring::transaction`] formats one straight into the free space and publishes it only on
//!   [`Transaction::commit`]. So records never interleave, whatever the order writers come in.
//! - The drainer copies the oldest bytes out with [`Ring::peek`] and frees them with
//!   [`Ring::consume`] once the UART took them: a full ring stays full until the bytes are
//!   really out.
//! - Nothing allocates: the storage is an array of `N` bytes (a power of two).
//!
//! [`Staging`] is the stack buffer writers format a record into before taking the ring's lock
//! (so the critical section only copies bytes), [`ByteCount`] measures a record too long
//! for it.

use core::fmt;

/// A ring of `N` bytes (`N` a power of two) holding a sequence of records.
pub struct Ring<const N: usize> {
    bytes: [u8; N],
    /// Bytes ever committed (wrapping): the next record starts at `head % N`.
    head: usize,
    /// Bytes ever consumed (wrapping): the oldest byte is at `tail % N`.
    tail: usize,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        // The positions wrap at `usize::MAX + 1`, which must be a multiple of `N` for
        // `position % N` to stay continuous across the wrap.
        const { assert!(N.is_power_of_two(), "the ring's size must be a power of two") };
        Self { bytes: [0; N], head: 0, tail: 0 }
    }

    /// The ring's size in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes waiting to be drained.
    pub const fn len(&self) -> usize {
        self.head.wrapping_sub(self.tail)
    }

    /// Whether nothing waits to be drained.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes a record may still take.
    pub const fn free(&self) -> usize {
        N - self.len()
    }

    /// Bytes consumed since the ring was created (wrapping): grows while the drainer makes
    /// progress.
    pub const fn consumed(&self) -> usize {
        self.tail
    }

    /// Appends `record` whole; `false` (and the ring unchanged) if it does not fit.
    pub fn push(&mut self, record: &[u8]) -> bool {
        if record.len() > self.free() {
            return false;
        }
        self.copy_in(self.head, record);
        self.head = self.head.wrapping_add(record.len());
        true
    }

    /// Appends the concatenation of `parts` as one record, whole; `false` (and the ring
    /// unchanged) if it does not fit.
    pub fn push_parts(&mut self, parts: &[&[u8]]) -> bool {
        let len = parts.iter().fold(0usize, |len, part| len.saturating_add(part.len()));
        if len > self.free() {
            return false;
        }
        for part in parts {
            self.copy_in(self.head, part);
            self.head = self.head.wrapping_add(part.len());
        }
        true
    }

    /// Starts a record written through [`fmt::Write`] into the free space; it becomes visible
    /// only when committed, and is discarded if dropped (or if it outgrows the free space).
    pub fn transaction(&mut self) -> Transaction<'_, N> {
        Transaction { ring: self, len: 0, overflowed: false }
    }

    /// Copies the oldest bytes into `out` without consuming them; returns how many.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len());
        let start = self.tail % N;
        let first = n.min(N - start);
        out[..first].copy_from_slice(&self.bytes[start..start + first]);
        out[first..n].copy_from_slice(&self.bytes[..n - first]);
        n
    }

    /// Frees the `n` oldest bytes (at most all of them); returns how many were freed.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        self.tail = self.tail.wrapping_add(n);
        n
    }

    /// Copies `data` to the ring's storage from position `at`, wrapping at the end. The caller
    /// checked that it fits in the free space.
    fn copy_in(&mut self, at: usize, data: &[u8]) {
        let start = at % N;
        let first = data.len().min(N - start);
        self.bytes[start..start + first].copy_from_slice(&data[..first]);
        self.bytes[..data.len() - first].copy_from_slice(&data[first..]);
    }
}

/// A record being formatted into a [`Ring`]'s free space: invisible to the drainer until
/// [`Transaction::commit`], discarded when dropped. Writing more than the free space fails
/// with [`fmt::Error`] and spoils the record (commit then publishes nothing).
pub struct Transaction<'a, const N: usize> {
    ring: &'a mut Ring<N>,
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Transaction<'_, N> {
    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the record; returns its length, or `None` (nothing published) if it did not
    /// fit.
    pub fn commit(self) -> Option<usize> {
        if self.overflowed {
            return None;
        }
        self.ring.head = self.ring.head.wrapping_add(self.len);
        Some(self.len)
    }
}

impl<const N: usize> fmt::Write for Transaction<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.overflowed || s.len() > self.ring.free() - self.len {
            self.overflowed = true;
            return Err(fmt::Error);
        }
        let at = self.ring.head.wrapping_add(self.len);
        self.ring.copy_in(at, s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// A record formatted on the stack, at most `S` bytes: writing more fails with
/// [`fmt::Error`] (the caller then takes the long way).
pub struct Staging<const S: usize> {
    bytes: [u8; S],
    len: usize,
}

impl<const S: usize> Default for Staging<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const S: usize> Staging<S> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; S], len: 0 }
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const S: usize> fmt::Write for Staging<S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A [`fmt::Write`] that only counts the bytes written.
#[derive(Debug, Default, Clone, Copy)]
pub struct ByteCount(pub usize);

impl fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// The bytes of `args` formatted, as [`ByteCount`] measures them.
pub fn formatted_len(args: fmt::Arguments<'_>) -> usize {
    let mut count = ByteCount(0);
    let _ = fmt::write(&mut count, args);
    count.0
}

#[cfg(test)]
mod tests;
