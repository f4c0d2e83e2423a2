//! Debian's arm64 Linux kernel package: the source of the boards' device
//! trees and of the guest kernel (a raw arm64 `Image`). Its `System.map` is only a
//! placeholder; the guest's real one is read from the running kernel (see
//! `guest::kallsyms`).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::debian::PrivateApt;

/// The packages considered, as an APT regex; the newest one is used.
const PACKAGE_PATTERN: &str = "^linux-image-.*-rt-arm64-unsigned$";

/// The APT regex of the PREEMPT_RT arm64 kernel packages of upstream release `release`
/// (`6.1` matches `linux-image-6.1.0-41-rt-arm64-unsigned` but not `6.12.…`); an error
/// for anything but dotted numbers.
pub fn release_pattern(release: &str) -> Result<String> {
    let valid = !release.is_empty()
        && release.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        bail!("kernel release {release:?} is not a version such as 6.1 or 6.12");
    }
    Ok(format!("^linux-image-{}[.-].*-rt-arm64-unsigned$", release.replace('.', "\\.")))
}

/// An unpacked Debian arm64 kernel package.
#[derive(Debug, Clone)]
pub struct LinuxPackage {
    name: String,
    root: PathBuf,
}

impl LinuxPackage {
    /// Finds the newest matching package and unpacks it (once) into the cache.
    pub fn fetch() -> Result<Self> {
        Self::fetch_matching(PACKAGE_PATTERN)
    }

    /// The newest PREEMPT_RT arm64 kernel package of upstream release `release` (e.g. `6.1`,
    /// from bookworm and bookworm-security, where the default comes from bookworm-backports),
    /// unpacked.
    pub fn fetch_release(release: &str) -> Result<Self> {
        Self::fetch_matching(&release_pattern(release)?)
    }

    /// The newest package whose name matches the APT regex `pattern`, unpacked (once) into
    /// the cache.
    fn fetch_matching(pattern: &str) -> Result<Self> {
        let apt = PrivateApt::arm64()?;
        let package = apt.newest_package(pattern)?;
        let root = apt.fetch_unpacked(&package.name)?;
        Ok(Self {
            name: package.name,
            root,
        })
    }

    /// The directory the package's device trees are in
    /// (`usr/lib/linux-image-<version>/`).
    fn dtb_dir(&self) -> Result<PathBuf> {
        let lib = self.root.join("usr/lib");
        let entries =
            fs::read_dir(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("linux-image-")
            })
            .map(|entry| entry.path())
            .collect();
        match dirs.len() {
            1 => Ok(dirs.remove(0)),
            n => bail!(
                "{}: expected one usr/lib/linux-image-* directory, found {n}",
                self.name
            ),
        }
    }

    /// The device tree `relative` (e.g. `broadcom/bcm2711-rpi-4-b.dtb`).
    pub fn dtb(&self, relative: &str) -> Result<PathBuf> {
        let path = self.dtb_dir()?.join(relative);
        if !path.is_file() {
            bail!(
                "{} has no device tree {relative} (looked for {})",
                self.name,
                path.display()
            );
        }
        Ok(path)
    }

    /// Where the package is unpacked (its modules are under `lib/modules/<release>/`).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The kernel image, `boot/vmlinuz-<release>`: Debian ships arm64
    /// kernels as a raw, uncompressed `Image`, which QEMU's `-kernel` boots.
    pub fn image(&self) -> Result<PathBuf> {
        self.boot_file("vmlinuz-")
    }

    /// The package's `boot/System.map-<release>`: a one-line placeholder (its real
    /// symbols are in the `-dbg` package), holding no text symbol; the fallback when the
    /// map built from `/proc/kallsyms` cannot be.
    pub fn system_map(&self) -> Result<PathBuf> {
        self.boot_file("System.map-")
    }

    /// The one file of `boot/` whose name starts with `prefix`.
    fn boot_file(&self, prefix: &str) -> Result<PathBuf> {
        let boot = self.root.join("boot");
        let entries =
            fs::read_dir(&boot).with_context(|| format!("cannot read {}", boot.display()))?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
            .map(|entry| entry.path())
            .collect();
        match files.len() {
            1 => Ok(files.remove(0)),
            n => bail!("{}: expected one boot/{prefix}* file, found {n}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_patterns_match_only_that_release() {
        let pattern = regex::Regex::new(&release_pattern("6.1").unwrap()).unwrap();
        assert!(pattern.is_match("linux-image-6.1.0-41-rt-arm64-unsigned"));
        assert!(!pattern.is_match("linux-image-6.12.118+deb12-rt-arm64-unsigned"));
        assert!(!pattern.is_match("linux-image-6.1.0-41-arm64-unsigned"));
        let newer = regex::Regex::new(&release_pattern("6.12").unwrap()).unwrap();
        assert!(newer.is_match("linux-image-6.12.118+deb12-rt-arm64-unsigned"));
        assert!(!newer.is_match("linux-image-6.1.0-41-rt-arm64-unsigned"));
        for bad in ["", "6.", "6..1", "6.1*", "latest", "6.1$"] {
            assert!(release_pattern(bad).is_err(), "{bad:?}");
        }
    }
}
