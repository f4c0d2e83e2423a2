//! The core's control port for Linux: the channel `companion.ctl`, served by a low-priority
//! oob thread. A command is one line; the answer is lines ending with `END` (or one `ERR …`
//! line):
//!
//! - `ps`: the oob threads and in-band stages with their statistics (the `rt::ps` table).
//!
//! From a guest shell: `printf 'ps\n' > /dev/vport0p0; cat /dev/vport0p0` (the port's index
//! is the channel's; its name is in `/sys/class/virtio-ports/vport0p0/name`).

use alloc::format;
use alloc::string::String;

use crate::rt::{self, Channel, ThreadBuilder};

/// The control port's name.
pub const PORT_NAME: &str = "companion.ctl";
/// Longest command line.
const MAX_COMMAND: usize = 128;
/// The serving thread's FIFO priority: below every real-time thread.
const PRIORITY: u8 = 1;

/// Opens the control port and starts its thread on CPU 0.
pub fn start() -> Result<(), String> {
    let channel = Channel::open(PORT_NAME).map_err(|e| format!("cannot open {PORT_NAME}: {e:?}"))?;
    let port = channel.port();
    ThreadBuilder::new("companion-ctl")
        .fifo(PRIORITY)
        .spawn(move || serve(channel))
        .map_err(|e| format!("cannot start companion-ctl: {e:?}"))?;
    log::info!("guest: control port {PORT_NAME} is channel port {port}");
    Ok(())
}

/// Answers commands until the core stops.
fn serve(channel: Channel) {
    let mut line = [0u8; MAX_COMMAND];
    let mut len = 0;
    loop {
        let mut byte = [0u8; 1];
        if channel.recv(&mut byte, None).unwrap_or(0) == 0 {
            continue;
        }
        match byte[0] {
            b'\n' => {
                answer(&channel, &line[..len]);
                len = 0;
            }
            b if len < MAX_COMMAND => {
                line[len] = b;
                len += 1;
            }
            // An overlong line: answered as unknown when it ends.
            _ => {}
        }
    }
}

/// Sends the answer to `command`.
fn answer(channel: &Channel, command: &[u8]) {
    let reply = match core::str::from_utf8(command).map(str::trim) {
        Ok("ps") => rt::ps_table().map_or_else(|e| format!("ERR {e:?}\n"), |table| format!("{table}END\n")),
        _ => String::from("ERR unknown command (have: ps)\n"),
    };
    if !channel.send(reply.as_bytes()) {
        // The whole reply did not fit: say so in what does.
        channel.send(b"ERR reply dropped: channel full\n");
    }
}
