//! The control port's line protocol (`vm::virtio::control`), fed bytes as Linux would write
//! them to `companion.ctl`: every line is a command within its bounds or a refusal that says
//! why; a line abandoned half-way is refused once and forgotten; nothing panics.

use std::fmt::Write;

use vm::virtio::control::{Command, LineReader, MAX_GUEST_DURATION_S, MAX_GUEST_PERIOD_US, MIN_GUEST_PERIOD_US, Read, parse};

/// The line length the core reads (`kernel/src/guest/control.rs`).
const MAX_COMMAND: usize = 128;

/// The first byte picks the CPU count (1 to 8) and where a pause (an abandoned line) falls;
/// the rest is the byte stream.
pub fn fuzz(data: &[u8]) {
    let Some((&head, bytes)) = data.split_first() else { return };
    let cpus = 1 + usize::from(head & 7);
    let pause_every = 1 + usize::from(head >> 3);
    let mut reader: LineReader<MAX_COMMAND> = LineReader::new();
    let mut text = String::new();
    for (i, &byte) in bytes.iter().enumerate() {
        if i % pause_every == pause_every - 1 && byte == 0 {
            let pending = reader.pending();
            match reader.abandon() {
                Some(refusal) => assert!(pending > 0 && write!(text, "{refusal}").is_ok()),
                None => assert_eq!(pending, 0),
            }
            assert_eq!(reader.pending(), 0, "an abandoned line is forgotten");
            continue;
        }
        match reader.push(byte) {
            Read::More => assert!(byte != b'\n'),
            Read::Line(line) => {
                assert!(line.len() <= MAX_COMMAND && !line.contains('\n'));
                match parse(line, cpus) {
                    Ok(Command::Latmus(request)) => {
                        assert!((MIN_GUEST_PERIOD_US..=MAX_GUEST_PERIOD_US).contains(&request.period_us));
                        assert!((1..=MAX_GUEST_DURATION_S).contains(&request.duration_s));
                        assert!(request.cpu.is_none_or(|cpu| cpu < cpus));
                        assert!((1..=99).contains(&request.priority));
                        assert!(request.gravity_ns.is_none_or(|ns| ns <= request.period_us * 1000));
                    }
                    Ok(Command::Ps | Command::Channels | Command::Echo) => {}
                    Err(refusal) => {
                        text.clear();
                        write!(text, "{refusal}").expect("a refusal formats");
                        assert!(!text.is_empty() && !text.contains('\n'), "one line: {text:?}");
                    }
                }
            }
            Read::Refused(refusal) => {
                text.clear();
                write!(text, "{refusal}").expect("a refusal formats");
                assert!(!text.is_empty() && !text.contains('\n'));
            }
        }
        if byte == b'\n' {
            assert_eq!(reader.pending(), 0, "a newline ends the line");
        }
    }
}
