//! Fuzz targets for everything of the companion core that parses guest- or user-controlled
//! bytes, each a function of arbitrary bytes that panics when a property fails:
//!
//! - [`trap`]: ESR_EL2 decoding and MMIO load/store completion;
//! - [`vgic`]: the vGIC distributor and redistributor MMIO model;
//! - [`psci`]: the PSCI model;
//! - [`pl011`]: the PL011 model;
//! - [`virtio`]: the virtio-mmio transport and split virtqueues;
//! - [`virtio_console`]: the multiport virtio-console on top;
//! - [`control_line`]: the line protocol of the core's control port on that console;
//! - [`fdt`]: the device-tree reader and writer, discovery, the device allow-list and the
//!   guest-tree rewrite;
//! - [`bundle`]: the guest bundle's header parser and hash checks.
//!
//! `cargo xtask fuzz` runs them under libFuzzer (the `libfuzzer/` harness); `cargo test`
//! replays the checked-in corpus and every crash kept in `regressions/` (see
//! `docs/fuzzing.md`).

pub mod control_line;
pub mod bundle;
pub mod fdt;
pub mod input;
pub mod pl011;
pub mod psci;
pub mod trap;
pub mod vgic;
pub mod virtio;
pub mod virtio_console;

/// A fuzz target: its name (the corpus directory's) and the function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("trap", trap::fuzz),
    ("vgic", vgic::fuzz),
    ("psci", psci::fuzz),
    ("pl011", pl011::fuzz),
    ("virtio", virtio::fuzz),
    ("virtio-console", virtio_console::fuzz),
    ("control-line", control_line::fuzz),
    ("fdt", fdt::fuzz),
    ("bundle", bundle::fuzz),
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The names of every target.
pub fn names() -> Vec<&'static str> {
    TARGETS.iter().map(|(n, _)| *n).collect()
}
