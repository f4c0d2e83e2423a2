//! The core's boot image: builds the `companion` ELF for a board and
//! flattens it into the raw `Image` that QEMU (or a board's firmware) loads.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::paths::target_dir;
use crate::process;
use crate::toolchain::{self, TARGET, Toolchain};

/// A board the core is built for; each maps to a `board-<name>` feature of
/// the kernel crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Board {
    /// QEMU's `virt` machine.
    QemuVirt,
    /// Raspberry Pi 4 (QEMU `raspi4b`).
    Rpi4,
    /// NXP i.MX 8M Plus EVK (QEMU `imx8mp-evk`).
    Imx8,
}

impl Board {
    /// The board's name, as used on the command line, in profiles and paths.
    pub fn name(self) -> &'static str {
        match self {
            Board::QemuVirt => "qemu-virt",
            Board::Rpi4 => "rpi4",
            Board::Imx8 => "imx8",
        }
    }

    /// The kernel crate feature selecting this board.
    fn feature(self) -> String {
        format!("board-{}", self.name())
    }

    /// Further names under which the board's firmware expects the raw image.
    fn image_aliases(self) -> &'static [&'static str] {
        match self {
            Board::Rpi4 => &["kernel8.img"],
            Board::QemuVirt | Board::Imx8 => &[],
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Which cargo profile the kernel is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProfile {
    /// `--release`: optimized (the default; the image is small).
    Release,
    /// The `dev` profile: unoptimized, for debugging.
    Debug,
}

impl BuildProfile {
    /// The directory cargo puts this profile's outputs in.
    fn dir_name(self) -> &'static str {
        match self {
            BuildProfile::Release => "release",
            BuildProfile::Debug => "debug",
        }
    }
}

/// A built image, under `target/images/<board>/`.
#[derive(Debug, Clone)]
pub struct BootImage {
    /// A copy of the linked ELF, with symbols, for debuggers.
    pub elf: PathBuf,
    /// The flat binary to boot (`Image`).
    pub raw: PathBuf,
}

/// The package and binary that make up the core.
const PACKAGE: &str = "kernel";
const BINARY: &str = "companion";

/// Builds the core for `board` and writes its ELF and raw image.
pub fn build(toolchain: &Toolchain, board: Board, profile: BuildProfile) -> Result<BootImage> {
    let mut cargo = toolchain::cargo();
    cargo.args([
        "build",
        "--package",
        PACKAGE,
        "--bin",
        BINARY,
        "--target",
        TARGET,
    ]);
    // Extra kernel features for a diagnostic image (`COMPANION_KERNEL_FEATURES`, e.g. the
    // latency tracer's `latency-trace-masks`).
    let mut features = board.feature();
    if let Ok(extra) = std::env::var("COMPANION_KERNEL_FEATURES")
        && !extra.is_empty()
    {
        features = format!("{features},{extra}");
    }
    cargo.args(["--no-default-features", "--features", &features]);
    if profile == BuildProfile::Release {
        cargo.arg("--release");
    }
    process::run(&mut cargo).with_context(|| format!("building the core for {board} failed"))?;

    let linked = target_dir()
        .join(TARGET)
        .join(profile.dir_name())
        .join(BINARY);
    let out_dir = target_dir().join("images").join(board.name());
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let image = BootImage {
        elf: out_dir.join(format!("{BINARY}.elf")),
        raw: out_dir.join("Image"),
    };
    fs::copy(&linked, &image.elf).with_context(|| {
        format!(
            "cannot copy {} to {}",
            linked.display(),
            image.elf.display()
        )
    })?;

    let mut objcopy = Command::new(toolchain.objcopy());
    objcopy
        .args(["-O", "binary"])
        .arg(&image.elf)
        .arg(&image.raw);
    process::run(&mut objcopy)?;
    for alias in board.image_aliases() {
        let path = out_dir.join(alias);
        fs::copy(&image.raw, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_agree_with_cli_and_profiles() {
        for board in Board::value_variants() {
            let cli = board.to_possible_value().unwrap();
            assert_eq!(cli.get_name(), board.name());
            let parsed: Board =
                serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                    serde::de::value::Error,
                >::new(board.name()))
                .unwrap();
            assert_eq!(parsed, *board);
        }
        assert_eq!(Board::Rpi4.feature(), "board-rpi4");
    }
}
