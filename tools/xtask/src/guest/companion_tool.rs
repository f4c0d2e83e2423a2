//! The guest-side `companion` tool (`tools/companion`): built here as a static aarch64 Linux
//! binary (the `aarch64-unknown-linux-musl` target of `rust-toolchain.toml`, linked by
//! `rust-lld`, see `.cargo/config.toml`) and put in the initramfs as `/usr/bin/companion`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Node, Rootfs};
use crate::paths::target_dir;
use crate::{process, toolchain};

/// The tool's target.
const TARGET: &str = "aarch64-unknown-linux-musl";
/// Where it goes in the initramfs.
const INSTALLED_AT: &str = "usr/bin/companion";

/// Builds the tool (release); returns its path. Installs the target first (`rustup
/// toolchain install` reads it from `rust-toolchain.toml`) when the pinned toolchain lacks
/// it, as on a machine set up before the target was added.
pub fn build() -> Result<PathBuf> {
    if !has_std()? {
        eprintln!("xtask: the pinned toolchain lacks {TARGET}; installing it");
        process::run(&mut toolchain::install_pinned())?;
    }
    let mut cargo = toolchain::cargo();
    cargo.args(["build", "--release", "--package", "companion", "--target", TARGET]);
    process::run(&mut cargo).context("building the guest's companion tool failed")?;
    Ok(target_dir().join(TARGET).join("release/companion"))
}

/// Whether the toolchain has the target's standard library.
fn has_std() -> Result<bool> {
    let libdir = PathBuf::from(toolchain::rustc(&["--print", "target-libdir", "--target", TARGET])?);
    Ok(fs::read_dir(libdir).is_ok_and(|entries| {
        entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
    }))
}

/// Puts the tool into the initramfs.
pub fn add(rootfs: &mut Rootfs, binary: &Path) {
    rootfs.insert(INSTALLED_AT, Node::File(binary.to_path_buf(), 0o755));
}

/// The cache key extended with the tool's bytes (a rebuilt tool makes a new initramfs).
pub fn key(base: &str, binary: &Path) -> Result<String> {
    let bytes = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let mut text = base.as_bytes().to_vec();
    text.extend_from_slice(&bytes);
    Ok(format!("{:016x}", super::fnv1a(&text)))
}
