//! The guest hang watchdog (on with restarts): a low-priority oob thread on CPU 0 looks at
//! the replay log's counters every [`PERIOD`] and restarts the guest when interrupts stayed
//! in flight without a single completion for [`LIMIT`], or when the guest completed no
//! interrupt at all in the [`BOOT_LIMIT`] after it was entered ([`vm::hang_watch`]).
//!
//! Why 5 s of virtual time: Linux's longest legitimate IRQs-off sections are in the
//! millisecond range (the irqs-off hunter's worst under the grinder load is about 1 ms), its
//! own hard-lockup detector waits 10 s, and a guest idle in WFI with no timer due has nothing
//! in flight, so it is never counted as stalled however long it sleeps. 5 s is thousands of
//! times the worst legitimate section and still ends a hung guest before Linux's detectors
//! would (which a guest with IRQs masked forever may never run anyway).
//!
//! Why 20 s before the first interrupt: Debian's kernel takes its first timer interrupt in
//! `start_kernel` (about 0.1 s of virtual time under `-icount`); without `-icount` QEMU's
//! virtual time follows the host's, and a loaded 2-core host stretches that early boot
//! several times. 20 s is far beyond both and still ends a guest that hung early.

use vm::hang_watch::{HangWatch, Progress};

use super::restart::{self, Cause};
use crate::rt::{self, Duration, ThreadBuilder};

/// How often the watchdog looks.
pub const PERIOD: Duration = Duration::from_millis(250);
/// How long interrupts may stay in flight without a completion.
pub const LIMIT: Duration = Duration::from_secs(5);
/// How long a guest may run from its entry before completing its first interrupt.
pub const BOOT_LIMIT: Duration = Duration::from_secs(20);
/// The thread's FIFO priority: below every real-time thread.
const PRIORITY: u8 = 1;

/// Starts the watchdog thread on CPU 0.
pub fn start() -> Result<(), rt::Error> {
    ThreadBuilder::new("guest-watchdog").cpu(0).fifo(PRIORITY).spawn(watch)?;
    Ok(())
}

fn watch() {
    let mut watch = HangWatch::new(LIMIT.as_nanos(), BOOT_LIMIT.as_nanos());
    loop {
        if rt::sleep(PERIOD).is_err() {
            return;
        }
        if restart::in_progress() {
            watch.reset();
            continue;
        }
        let snapshot = super::virq::ACCOUNT.snapshot(0);
        match watch.tick(&snapshot, rt::now().as_nanos()) {
            Progress::Healthy => {}
            // A completion of a hardware-linked interrupt is seen at the next read-back:
            // make every vCPU exit once.
            Progress::Stalled => restart::kick_vcpus(),
            Progress::Hung => {
                log::warn!(
                    "guest: watchdog: {} interrupts in flight and none completed for {} ms",
                    snapshot.in_flight(),
                    LIMIT.as_nanos() / 1_000_000
                );
                restart_or_end(&mut watch);
            }
            Progress::SilentSinceBoot => {
                log::warn!(
                    "guest: watchdog: no interrupt completed in the {} ms since the guest was entered",
                    BOOT_LIMIT.as_nanos() / 1_000_000
                );
                restart_or_end(&mut watch);
            }
        }
    }
}

/// Asks for a restart by the watchdog (ending the run when restarts are refused) and
/// starts watching the next guest.
fn restart_or_end(watch: &mut HangWatch) {
    if !restart::request(Cause::Watchdog) {
        restart::end_run_from_oob();
    }
    watch.reset();
}
