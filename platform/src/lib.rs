//! Board support for the companion core: what each supported board looks like (memory map,
//! UART, GIC, timer), how the running board is discovered from its device tree, and the
//! console UART drivers.
//!
//! Everything except the MMIO drivers is portable and unit tested on the host.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod board;
pub mod discovery;
pub mod fdt;
pub mod guest_bundle;
pub mod guest_map;
pub mod guest_tree;
pub mod linux_image;
pub mod passthrough;
pub mod quiesce;
pub mod uart;

pub use board::Board;
pub use discovery::{
    CpuInfo, EnableMethod, GicInfo, GicVersion, MemoryRange, PlatformInfo, PsciConduit, TimerInfo,
    UartInfo,
};
