//! Flattened device tree (DTB) reading and writing.
//!
//! Written here rather than taken from a crate, re-checked on 2026-12-03 against the no_std
//! ones (see docs/newcomer.md for the details):
//! - `fdt` 0.1.5 (stable) panics on malformed blobs; 0.2.0-alpha1, `fdt-rs` 0.4.5 (last
//!   release 2024), `flat_device_tree` and `fdt-parser` only read; `vm-fdt` 0.3.0 only
//!   writes, and refuses node names the spec forbids, so the core could not copy a board's
//!   tree as it is.
//! - `dtoolkit` 0.2 does both (a zero-copy reader without allocation, and a `DeviceTree`
//!   model on hash maps that is edited and serialized), fuzzed and returning errors. It is
//!   the one to revisit; taking it now would mean a second model of the tree in the core
//!   (the board's blob read zero-copy, the guest's rebuilt in a hashed model at EL2) where
//!   ours is one: [`DeviceTree`] validates the whole structure block once at
//!   [`DeviceTree::parse`], so no later walk can fail, and the guest tree is streamed
//!   through [`FdtWriter`] while the board's is walked, without a model in between.

mod reader;
mod writer;

pub use reader::{DeviceTree, FdtError, Node, Property};
pub use writer::{FdtWriteError, FdtWriter};
