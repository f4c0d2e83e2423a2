//! Debian's U-Boot for QEMU's arm64 `virt` (package `u-boot-qemu`) and its `mkimage`
//! (`u-boot-tools`): the image-boot case through U-Boot boots the folder `cargo xtask image`
//! wrote as a board's U-Boot would (distro boot, `boot.scr`, `booti`). Installed like QEMU
//! when missing (root on Debian bookworm).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// U-Boot for QEMU virt, arm64, as `u-boot-qemu` installs it.
const FIRMWARE: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// The packages and their suite.
const PACKAGES: &[&str] = &["u-boot-qemu", "u-boot-tools"];
const SUITE: &str = crate::debian::RELEASE;

fn installed() -> bool {
    Path::new(FIRMWARE).is_file() && Command::new("mkimage").arg("-V").output().is_ok_and(|out| out.status.success())
}

/// U-Boot's image for QEMU virt, with `mkimage` beside it, installing both if needed.
pub fn ensure_installed() -> Result<PathBuf> {
    if !installed() {
        crate::qemu::install_host_packages("U-Boot for QEMU or mkimage is not installed", SUITE, PACKAGES)?;
        if !installed() {
            bail!("installing {} did not give {FIRMWARE} and mkimage", PACKAGES.join(" "));
        }
    }
    Ok(PathBuf::from(FIRMWARE))
}
