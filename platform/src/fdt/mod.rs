//! Flattened device tree (DTB) reading and writing.
//!
//! Written here rather than taken from the `fdt` crate: its stable release panics
//! (`assert!`/`expect`) on malformed blobs, and the core must answer a bad tree with a
//! clear error, never a panic. The guest's tree is also *written* by the core, which the
//! reader crates do not do.

mod reader;
mod writer;

pub use reader::{DeviceTree, FdtError, Node, Property};
pub use writer::{FdtWriteError, FdtWriter};
