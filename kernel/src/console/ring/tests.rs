use std::collections::VecDeque;
use std::fmt::Write;
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::*;

/// Drains everything, `chunk` bytes at a time, as the console's drainer does.
fn drain<const N: usize>(ring: &mut Ring<N>, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = ring.peek(&mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
        assert_eq!(ring.consume(n), n);
    }
}

#[test]
fn push_peek_consume() {
    let mut ring = Ring::<16>::new();
    assert!(ring.is_empty());
    assert_eq!(ring.capacity(), 16);
    assert!(ring.push(b"abc\n"));
    assert_eq!((ring.len(), ring.free()), (4, 12));
    let mut out = [0u8; 2];
    assert_eq!(ring.peek(&mut out), 2);
    assert_eq!(&out, b"ab");
    // Peeking does not consume.
    assert_eq!(ring.len(), 4);
    assert_eq!(ring.consume(2), 2);
    assert_eq!(drain(&mut ring, 8), b"c\n");
    assert_eq!(ring.consumed(), 4);
    // Consuming more than is there frees what there is.
    assert_eq!(ring.consume(5), 0);
    assert!(ring.is_empty());
}

#[test]
fn records_wrap_around_the_end() {
    let mut ring = Ring::<16>::new();
    assert!(ring.push(b"0123456789"));
    assert_eq!(ring.consume(10), 10);
    // Starts at 10: 6 bytes to the end, the rest from the start.
    assert!(ring.push(b"abcdefghij\n"));
    assert_eq!(ring.len(), 11);
    assert_eq!(drain(&mut ring, 3), b"abcdefghij\n");
    // Again through a transaction.
    let mut t = ring.transaction();
    let word = "wrapped";
    write!(t, "{word}-{}", 42).unwrap();
    assert_eq!(t.commit(), Some(10));
    assert_eq!(drain(&mut ring, 16), b"wrapped-42");
}

#[test]
fn a_full_ring_refuses_a_record_whole() {
    let mut ring = Ring::<8>::new();
    assert!(ring.push(b"12345"));
    assert!(!ring.push(b"6789"));
    // Nothing of the refused record went in.
    assert_eq!(ring.len(), 5);
    assert!(ring.push(b"678"));
    assert_eq!(ring.free(), 0);
    assert!(!ring.push(b"x"));
    assert!(ring.push(b""));
    assert_eq!(drain(&mut ring, 3), b"12345678");
    // A record larger than the ring never fits.
    assert!(!ring.push(b"123456789"));
    assert!(ring.push(b"12345678"));
}

#[test]
fn a_record_in_parts_goes_in_whole() {
    let mut ring = Ring::<8>::new();
    assert!(ring.push(b"ab"));
    assert_eq!(ring.consume(2), 2);
    // Across the end of the storage, part by part.
    assert!(ring.push_parts(&[b"guest", b"\n"]));
    assert!(!ring.push_parts(&[b"xy", b"\n"]));
    assert_eq!(ring.len(), 6);
    assert!(ring.push_parts(&[b"", b"y", b""]));
    assert_eq!(drain(&mut ring, 8), b"guest\ny");
}

#[test]
fn transactions_publish_on_commit_only() {
    let mut ring = Ring::<16>::new();
    assert!(ring.push(b"old\n"));
    {
        let mut t = ring.transaction();
        t.write_str("dropped").unwrap();
        assert_eq!(t.len(), 7);
    }
    assert_eq!(ring.len(), 4);
    let mut t = ring.transaction();
    assert!(t.is_empty());
    t.write_str("new\n").unwrap();
    assert_eq!(t.commit(), Some(4));
    assert_eq!(drain(&mut ring, 5), b"old\nnew\n");
}

#[test]
fn a_transaction_that_outgrows_the_free_space_publishes_nothing() {
    let mut ring = Ring::<8>::new();
    assert!(ring.push(b"abc"));
    let mut t = ring.transaction();
    t.write_str("12").unwrap();
    assert!(t.write_str("3456").is_err());
    // Even what would fit afterwards is refused: the record is spoilt.
    assert!(t.write_str("3").is_err());
    assert_eq!(t.commit(), None);
    assert_eq!(drain(&mut ring, 8), b"abc");
}

#[test]
fn positions_wrap_at_the_end_of_usize() {
    let mut ring = Ring::<8>::new();
    ring.head = usize::MAX - 2;
    ring.tail = usize::MAX - 2;
    assert!(ring.push(b"abcdef"));
    assert_eq!(ring.len(), 6);
    assert_eq!(drain(&mut ring, 4), b"abcdef");
    assert!(ring.is_empty());
}

/// A small deterministic generator for the model test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[test]
fn behaves_like_a_queue_of_whole_records() {
    let mut ring = Ring::<64>::new();
    let mut model: VecDeque<u8> = VecDeque::new();
    let mut rng = Lcg(7);
    for step in 0..20_000u32 {
        if rng.next(3) < 2 {
            let len = rng.next(30);
            let record: Vec<u8> = (0..len).map(|i| (step as usize + i) as u8).collect();
            let fits = record.len() <= 64 - model.len();
            if rng.next(2) == 0 {
                assert_eq!(ring.push(&record), fits);
            } else {
                let mut t = ring.transaction();
                let text: String = record.iter().map(|&b| char::from(b'a' + b % 26)).collect();
                let ok = t.write_str(&text).is_ok();
                assert_eq!(ok, fits);
                assert_eq!(t.commit().is_some(), fits);
                if fits {
                    model.extend(text.bytes());
                }
                continue;
            }
            if fits {
                model.extend(&record);
            }
        } else {
            let mut buf = vec![0u8; rng.next(20)];
            let n = ring.peek(&mut buf);
            let expected: Vec<u8> = model.iter().take(buf.len()).copied().collect();
            assert_eq!(&buf[..n], &expected[..]);
            let keep = rng.next(n + 1);
            assert_eq!(ring.consume(keep), keep);
            model.drain(..keep);
        }
        assert_eq!(ring.len(), model.len());
    }
}

#[test]
fn lines_from_many_writers_stay_whole_and_in_order() {
    // The console's pattern: writers stage a line, then copy it in under a lock; one drainer
    // copies chunks out and consumes them. Writers retry while the ring is full.
    const WRITERS: usize = 4;
    const LINES: usize = 2000;
    let ring = Arc::new(Mutex::new(Ring::<256>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for n in 0..LINES {
                    let mut staging = Staging::<64>::new();
                    writeln!(staging, "writer {w} line {n} {}", "x".repeat(n % 23)).unwrap();
                    while !ring.lock().unwrap().push(staging.as_bytes()) {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut chunk = [0u8; 37];
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        loop {
            let n = ring.lock().unwrap().peek(&mut chunk);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            ring.lock().unwrap().consume(n);
        }
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    let mut next = [0usize; WRITERS];
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], "writer", "a line was cut: {line:?}");
        let w: usize = words[1].parse().unwrap();
        let n: usize = words[3].parse().unwrap();
        assert_eq!(n, next[w], "writer {w}'s lines out of order");
        assert_eq!(words.get(4).copied().unwrap_or(""), "x".repeat(n % 23));
        next[w] += 1;
    }
    assert_eq!(next, [LINES; WRITERS]);
}

#[test]
fn staging_refuses_what_does_not_fit() {
    let mut staging = Staging::<8>::new();
    write!(staging, "{}", 1234).unwrap();
    assert!(write!(staging, "{}", 56789).is_err());
    assert_eq!(staging.as_bytes(), b"1234");
    write!(staging, "5678").unwrap();
    assert_eq!(staging.as_bytes(), b"12345678");
}

#[test]
fn byte_count_measures_a_record() {
    assert_eq!(formatted_len(format_args!("{}-{:>5}\n", 12, "ab")), 9);
    let mut count = ByteCount::default();
    count.write_str("é").unwrap();
    assert_eq!(count.0, 2);
}
