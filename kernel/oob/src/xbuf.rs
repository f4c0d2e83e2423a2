//! A bounded byte ring between one producer and one consumer that never waits, the building
//! block of the core's cross-buffers (like EVL's xbuf): an oob writer that finds it full
//! drops its message and the drop is counted; the in-band side sees how much room is left and
//! holds back (back-pressure) instead.
//!
//! Lock-free and without `unsafe`: the bytes are relaxed atomics, published by the producer's
//! release store of its position and claimed by the consumer's. At most one producer and one
//! consumer may use a ring at a time (the owner's API guarantees it); breaking that garbles
//! bytes but is never undefined behaviour.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// A ring of `N` bytes (any `N` above zero).
pub struct ByteRing<const N: usize> {
    bytes: [AtomicU8; N],
    /// Bytes ever written (the producer's position).
    head: AtomicUsize,
    /// Bytes ever read (the consumer's position).
    tail: AtomicUsize,
    dropped_messages: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            bytes: [const { AtomicU8::new(0) }; N],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped_messages: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
        }
    }

    /// Bytes waiting for the consumer.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        head.wrapping_sub(self.tail.load(Ordering::Acquire)).min(N)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left for the producer.
    pub fn free(&self) -> usize {
        N - self.len()
    }

    /// Producer: appends as much of `data` as fits; returns how much.
    pub fn push_some(&self, data: &[u8]) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let used = head.wrapping_sub(self.tail.load(Ordering::Acquire)).min(N);
        let n = data.len().min(N - used);
        for (i, &byte) in data[..n].iter().enumerate() {
            self.bytes[head.wrapping_add(i) % N].store(byte, Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Producer: appends all of `data`, or nothing when it does not fit (the message and
    /// its bytes are counted as dropped). Never waits.
    pub fn push_all(&self, data: &[u8]) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let used = head.wrapping_sub(self.tail.load(Ordering::Acquire)).min(N);
        if data.len() > N - used {
            self.dropped_messages.fetch_add(1, Ordering::Relaxed);
            self.dropped_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            return false;
        }
        self.push_some(data) == data.len()
    }

    /// Consumer: takes up to `buf.len()` bytes, oldest first; returns how many.
    pub fn pop(&self, buf: &mut [u8]) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let ready = self.head.load(Ordering::Acquire).wrapping_sub(tail).min(N);
        let n = buf.len().min(ready);
        for (i, out) in buf[..n].iter_mut().enumerate() {
            *out = self.bytes[tail.wrapping_add(i) % N].load(Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }

    /// Messages [`ByteRing::push_all`] dropped, and their bytes.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_messages.load(Ordering::Relaxed), self.dropped_bytes.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRing;
    use std::sync::Arc;

    #[test]
    fn a_full_ring_drops_whole_messages_and_counts_them() {
        let ring: ByteRing<8> = ByteRing::new();
        assert!(ring.push_all(b"hello"));
        assert!(!ring.push_all(b"world"), "5 bytes do not fit in the 3 left");
        assert_eq!(ring.dropped(), (1, 5));
        assert!(ring.push_all(b"abc"));
        assert_eq!(ring.free(), 0);
        let mut buf = [0u8; 16];
        assert_eq!(ring.pop(&mut buf), 8);
        assert_eq!(&buf[..8], b"helloabc");
        assert!(ring.is_empty());
    }

    #[test]
    fn push_some_takes_what_fits_across_the_wrap() {
        let ring: ByteRing<5> = ByteRing::new();
        let mut buf = [0u8; 5];
        assert_eq!(ring.push_some(b"abc"), 3);
        assert_eq!(ring.pop(&mut buf[..2]), 2);
        assert_eq!(ring.push_some(b"defgh"), 4);
        assert_eq!(ring.pop(&mut buf), 5);
        assert_eq!(&buf, b"cdefg");
    }

    #[test]
    fn a_stalled_reader_sees_each_gap_as_the_drops_counted() {
        // The example application's telemetry: numbered lines, each with the drops before
        // it, into a 4 KiB ring whose reader stalls, then reads, then stalls again.
        let ring: ByteRing<4096> = ByteRing::new();
        let (mut written, mut read) = (0u64, String::new());
        for line in 0..1000u64 {
            let (dropped, _) = ring.dropped();
            assert_eq!(line, written + dropped, "every line formed is written or dropped");
            let text = format!("t={} line={line} dropped={dropped} end\n", line * 100);
            written += u64::from(ring.push_all(text.as_bytes()));
            if (400..450).contains(&line) || line == 999 {
                let mut buf = [0u8; 512];
                loop {
                    let n = ring.pop(&mut buf);
                    if n == 0 {
                        break;
                    }
                    read.push_str(core::str::from_utf8(&buf[..n]).unwrap());
                }
            }
        }
        let fields: Vec<(u64, u64)> = read
            .lines()
            .map(|l| {
                let value = |key: &str| l.split(' ').find_map(|w| w.strip_prefix(key)).unwrap().parse::<u64>().unwrap();
                (value("line="), value("dropped="))
            })
            .collect();
        let (mut missing, mut counted) = (0, 0);
        for pair in fields.windows(2) {
            let ((line, dropped), (next, next_dropped)) = (pair[0], pair[1]);
            assert_eq!(next - line - 1, next_dropped - dropped, "a gap is its drops");
            missing += next - line - 1;
            counted += next_dropped - dropped;
        }
        let (dropped, _) = ring.dropped();
        assert!(missing > 0 && missing == counted);
        assert_eq!(fields.len() as u64 + dropped, 1000, "read + dropped = formed");
        assert_eq!(written, fields.len() as u64);
    }

    #[test]
    fn one_producer_and_one_consumer_on_two_threads_lose_nothing_that_fitted() {
        let ring: Arc<ByteRing<64>> = Arc::new(ByteRing::new());
        let producer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                for i in 0..20_000u32 {
                    let msg = [(i % 251) as u8; 7];
                    if ring.push_all(&msg) {
                        sent.extend_from_slice(&msg);
                    }
                }
                sent
            })
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 13];
        while !producer.is_finished() || !ring.is_empty() {
            let n = ring.pop(&mut buf);
            got.extend_from_slice(&buf[..n]);
        }
        let sent = producer.join().unwrap();
        assert_eq!(got, sent, "every byte that went in came out, in order");
        let (messages, bytes) = ring.dropped();
        assert_eq!(sent.len() as u64 + bytes, 20_000 * 7);
        assert_eq!(messages * 7, bytes);
    }
}
