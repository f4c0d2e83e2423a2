//! Channels between oob code and Linux: each is a named port of the guest's virtio-console
//! (`/dev/vportNpM`, its name in `/sys/class/virtio-ports/vportNpM/name`), a byte stream
//! each way through a bounded [`oob::xbuf::ByteRing`].
//!
//! The oob side never waits on Linux: [`Channel::send`] appends a whole message or drops it
//! and counts the drop (as EVL's xbuf does on its oob side); [`Channel::try_recv`] takes what
//! is there, [`Channel::recv`] waits for bytes with an oob timeout. The device emulation moves
//! bytes to and from the guest's buffers in-band (on the guest's exits); when a ring from
//! Linux is full it holds the guest's buffers back, so Linux's writer blocks: back-pressure,
//! no loss on that side.
//!
//! ```no_run
//! use kernel::rt::{self, Channel, Duration, Timeout};
//!
//! let telemetry = Channel::open("motor").expect("a free port");
//! // In the oob loop: never blocks, a full ring drops the line and counts it.
//! telemetry.send(b"pos=12.5 set=13.0\n");
//! let mut buf = [0u8; 64];
//! let timeout = Some(Timeout::After(Duration::from_micros(100)));
//! if let Ok(n) = telemetry.recv(&mut buf, timeout) {
//!     // ... a new setpoint from Linux in buf[..n]
//! }
//! ```
//!
//! Ports must be opened before the guest starts: the device announces them when Linux's
//! driver probes.

use core::sync::atomic::{AtomicBool, Ordering};

use oob::xbuf::ByteRing;
use spin::Once;

use super::{Error, Semaphore, Timeout};

/// Most channels (ports of the console).
pub const MAX_CHANNELS: usize = 4;
/// Bytes each ring holds, each way.
pub const RING_BYTES: usize = 4096;
/// Longest port name.
pub const MAX_NAME: usize = 64;

/// One port's state, shared by the oob side and the device.
struct Slot {
    taken: AtomicBool,
    name: Once<&'static str>,
    to_linux: ByteRing<RING_BYTES>,
    from_linux: ByteRing<RING_BYTES>,
    /// Posted by the device when bytes from Linux arrive.
    arrived: Once<Semaphore>,
    /// Whether the ring from Linux was found full (logged once a port: Linux writes to a
    /// port whose oob side does not read, or not as fast).
    full_logged: AtomicBool,
}

/// Whether a channel may hold bytes for Linux: set by [`Channel::send`] after its bytes went
/// in, taken by the device's service ([`take_for_guest`]) before it moves them. The guest's
/// way back checks this one flag instead of every ring ([`for_guest_flagged`]).
static FOR_GUEST: AtomicBool = AtomicBool::new(false);

static SLOTS: [Slot; MAX_CHANNELS] = [const {
    Slot {
        taken: AtomicBool::new(false),
        name: Once::new(),
        to_linux: ByteRing::new(),
        from_linux: ByteRing::new(),
        arrived: Once::new(),
        full_logged: AtomicBool::new(false),
    }
}; MAX_CHANNELS];

/// Why [`Channel::open`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The name is empty, longer than [`MAX_NAME`] or holds a NUL.
    BadName,
    /// Every one of the [`MAX_CHANNELS`] ports is taken.
    NoFreePort,
    /// The oob core refused the channel's semaphore (not started yet).
    Core(Error),
}

/// The oob end of a channel. Owned by one oob thread at a time (share it behind a
/// [`super::Mutex`]): each ring has one producer and one consumer.
#[derive(Debug)]
pub struct Channel {
    port: usize,
}

impl Channel {
    /// Claims the next free port under `name` (1 to [`MAX_NAME`] bytes, no NUL).
    pub fn open(name: &'static str) -> Result<Self, OpenError> {
        if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
            return Err(OpenError::BadName);
        }
        let arrived = Semaphore::new(0).map_err(OpenError::Core)?;
        let port = SLOTS
            .iter()
            .position(|slot| !slot.taken.swap(true, Ordering::AcqRel))
            .ok_or(OpenError::NoFreePort)?;
        SLOTS[port].name.call_once(|| name);
        SLOTS[port].arrived.call_once(|| arrived);
        Ok(Self { port })
    }

    /// The port's index on the console (Linux's `/dev/vport*p<index>`).
    pub fn port(&self) -> usize {
        self.port
    }

    /// Sends `data` to Linux whole, or drops it when the ring has no room for all of it
    /// (counted in [`Channel::dropped`]). Never waits; returns whether it went in.
    pub fn send(&self, data: &[u8]) -> bool {
        let sent = SLOTS[self.port].to_linux.push_all(data);
        if sent {
            // After the bytes: a service that takes the flag then finds them.
            FOR_GUEST.store(true, Ordering::Release);
        }
        sent
    }

    /// Bytes [`Channel::send`] can put in now without dropping.
    pub fn room(&self) -> usize {
        SLOTS[self.port].to_linux.free()
    }

    /// Takes the bytes from Linux that are there (up to `buf.len()`); 0 if none.
    pub fn try_recv(&self, buf: &mut [u8]) -> usize {
        SLOTS[self.port].from_linux.pop(buf)
    }

    /// Takes bytes from Linux, waiting (from an oob thread) until some come or `timeout`
    /// passes ([`Error::TimedOut`]).
    pub fn recv(&self, buf: &mut [u8], timeout: Option<Timeout>) -> Result<usize, Error> {
        let slot = &SLOTS[self.port];
        loop {
            let n = slot.from_linux.pop(buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // Set by `open` before the channel exists.
            if let Some(arrived) = slot.arrived.get() {
                arrived.wait(timeout)?;
            }
        }
    }

    /// Messages [`Channel::send`] dropped because the ring was full, and their bytes.
    pub fn dropped(&self) -> (u64, u64) {
        SLOTS[self.port].to_linux.dropped()
    }
}

/// Every open channel: its port, name and what [`Channel::send`] dropped (messages, bytes).
pub fn drop_counts() -> alloc::vec::Vec<(usize, &'static str, (u64, u64))> {
    SLOTS
        .iter()
        .enumerate()
        .filter_map(|(port, slot)| slot.name.get().map(|name| (port, *name, slot.to_linux.dropped())))
        .collect()
}

/// Whether any channel among `ports` (bit `n`: port `n`) can take bytes from Linux.
pub(crate) fn any_room_from_guest(ports: u32) -> bool {
    SLOTS
        .iter()
        .enumerate()
        .any(|(port, slot)| ports & (1 << port) != 0 && slot.name.get().is_some() && slot.from_linux.free() > 0)
}

/// Whether [`Channel::send`] may have put bytes for Linux in a ring since the last
/// [`take_for_guest`] (one load: the device's check on every return into the guest).
#[inline(always)]
pub(crate) fn for_guest_flagged() -> bool {
    FOR_GUEST.load(Ordering::Acquire)
}

/// The device's service begins: clears the flag of [`for_guest_flagged`] (a send from now on
/// sets it again, so none is missed).
pub(crate) fn take_for_guest() {
    FOR_GUEST.swap(false, Ordering::AcqRel);
}

/// The device's service ends: bytes for Linux it left in a ring (its budget spent, or no
/// buffer from the guest) keep the flag set, so the next return into the guest services
/// again, as it did before the flag.
pub(crate) fn keep_flag_if_left() {
    if SLOTS.iter().any(|slot| !slot.to_linux.is_empty()) {
        FOR_GUEST.store(true, Ordering::Release);
    }
}

/// The device's side (in-band): the ports as the console model sees them.
pub(crate) struct DeviceSide;

impl vm::virtio::console::Ports for DeviceSide {
    fn present(&self, port: usize) -> bool {
        SLOTS.get(port).is_some_and(|slot| slot.name.get().is_some())
    }

    fn name(&self, port: usize) -> &[u8] {
        SLOTS.get(port).and_then(|slot| slot.name.get()).map_or(&[], |name| name.as_bytes())
    }

    fn push_from_guest(&mut self, port: usize, data: &[u8]) -> usize {
        let Some(slot) = SLOTS.get(port).filter(|slot| slot.name.get().is_some()) else { return 0 };
        let n = slot.from_linux.push_some(data);
        if n < data.len() && !slot.full_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "channel: port {port} ({}): the ring from Linux is full ({RING_BYTES} bytes the oob side has not read); Linux's writes wait (logged once a port)",
                slot.name.get().copied().unwrap_or("")
            );
        }
        if n > 0
            && let Some(arrived) = slot.arrived.get()
        {
            let _ = arrived.post();
        }
        n
    }

    fn pull_for_guest(&mut self, port: usize, buf: &mut [u8]) -> usize {
        SLOTS.get(port).map_or(0, |slot| slot.to_linux.pop(buf))
    }

    fn has_data_for_guest(&self, port: usize) -> bool {
        SLOTS.get(port).is_some_and(|slot| !slot.to_linux.is_empty())
    }
}
