//! The companion core. Portable logic (clock arithmetic, and later the scheduler, timers,
//! replay log, vGIC and trap decoding) builds and is unit tested on the host; the modules
//! that touch hardware build only for the bare-metal target.

#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod clock;
// The console ring is portable (host tested); the UART side builds for the target only.
pub mod console;
pub mod latency_stats;
pub mod sample_audit;

#[cfg(target_os = "none")]
pub mod apps;
#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod bench;
#[cfg(target_os = "none")]
pub mod cycles;
#[cfg(target_os = "none")]
pub mod gic;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod hwtimer;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod latency_trace;
#[cfg(target_os = "none")]
pub mod latmus;
#[cfg(target_os = "none")]
pub mod oob_suite;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod rt;
#[cfg(target_os = "none")]
pub mod sched;
#[cfg(target_os = "none")]
pub mod selftest;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod traps;

/// The board this image is built for, chosen by the `board-*` feature.
#[cfg(feature = "board-rpi4")]
pub const BOARD: &platform::Board = &platform::board::RPI4;
/// The board this image is built for, chosen by the `board-*` feature.
#[cfg(all(feature = "board-imx8", not(feature = "board-rpi4")))]
pub const BOARD: &platform::Board = &platform::board::IMX8;
/// The board this image is built for, chosen by the `board-*` feature.
#[cfg(not(any(feature = "board-rpi4", feature = "board-imx8")))]
pub const BOARD: &platform::Board = &platform::board::QEMU_VIRT;
