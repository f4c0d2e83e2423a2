//! Producing console output: whole records into the ring (see the module documentation of
//! [`super`]).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use super::ring::{Ring, Staging, formatted_len};
use super::{PENDING, RING, RING_SIZE, STAGING_SIZE, Wait, drain, in_oob_context};

/// Bytes of output dropped: the ring was full when an oob context wrote them (or, in corner
/// cases, an in-band writer could not make room: see [`drain::make_room`]).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes of console output dropped so far (oob writers finding the ring full).
pub fn dropped_bytes() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes formatted text to the console as one record: it comes out whole, in order with
/// every other record. Never waits for the UART from an oob context (a full ring drops the
/// record); an in-band caller finding the ring full drains it with its interrupt mask as it
/// is, or waits for another CPU's drainer to make room.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    write(args, Wait::AsCaller);
}

/// [`write_fmt`] for an in-band caller that holds no lock, such as a guest trap handler: if
/// the ring is full, it waits for the UART with IRQs unmasked, so oob interrupts are taken
/// meanwhile.
pub fn write_fmt_from_trap(args: fmt::Arguments<'_>) {
    write(args, Wait::Unmasked);
}

/// Writes `prefix`, `text` and a newline to the console as one record, with no formatting:
/// the guest console's lines, from its trap ([`write_fmt_from_trap`]'s waiting rules).
pub fn write_line_from_trap(prefix: &str, text: &str) {
    let oob = in_oob_context();
    let parts: [&[u8]; 3] = [prefix.as_bytes(), text.as_bytes(), b"\n"];
    let queued = put(prefix.len() + text.len() + 1, oob, Wait::Unmasked, |ring| ring.push_parts(&parts));
    queued_by(queued, oob, Wait::Unmasked);
}

fn write(args: fmt::Arguments<'_>, wait: Wait) {
    let oob = in_oob_context();
    let mut staging = Staging::<STAGING_SIZE>::new();
    let queued = if staging.write_fmt(args).is_ok() {
        let record = staging.as_bytes();
        put(record.len(), oob, wait, |ring| ring.push(record))
    } else {
        write_long(args, oob, wait)
    };
    queued_by(queued, oob, wait);
}

/// After a record was queued: before [`drain::defer_output`], an in-band writer drains at
/// once.
#[inline]
fn queued_by(queued: bool, oob: bool, wait: Wait) {
    if queued && !oob && !drain::deferred() {
        drain::drain_now(wait);
    }
}

/// A record longer than the stack buffer: measured, then formatted into the ring under its
/// lock. Returns whether it was queued.
#[cold]
#[inline(never)]
fn write_long(args: fmt::Arguments<'_>, oob: bool, wait: Wait) -> bool {
    let len = formatted_len(args);
    if len > RING_SIZE {
        if oob {
            drop_bytes(len);
        } else {
            drain::write_through(args, wait);
        }
        return false;
    }
    put(len, oob, wait, |ring| {
        let mut record = ring.transaction();
        // A formatting error leaves the transaction spoilt: commit publishes nothing.
        let _ = record.write_fmt(args);
        record.commit().is_some()
    })
}

/// Queues a record of `len` bytes, which `fill` writes into the ring under its lock once the
/// ring has room; an oob writer drops it instead of waiting. Returns whether it was queued.
fn put(len: usize, oob: bool, wait: Wait, mut fill: impl FnMut(&mut Ring<RING_SIZE>) -> bool) -> bool {
    loop {
        {
            let mut ring = RING.lock();
            if ring.free() >= len {
                let queued = fill(&mut ring);
                if queued {
                    PENDING.store(true, Ordering::Relaxed);
                    return true;
                }
                // The second formatting gave more than the first measured.
                drop(ring);
                drop_bytes(len);
                return false;
            }
        }
        if oob || !drain::make_room(len, wait) {
            drop_bytes(len);
            return false;
        }
    }
}

/// Counts `len` bytes that will never be printed.
fn drop_bytes(len: usize) {
    DROPPED.fetch_add(len as u64, Ordering::Relaxed);
}
