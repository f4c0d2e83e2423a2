//! `cargo xtask dtb PROFILE` for profiles without a fetched device tree (QEMU `virt`): the
//! tree QEMU generates for the profile's machine, CPUs and memory, dumped with
//! `-machine …,dumpdtb=FILE` into `target/dtb/<profile>.dtb`.
//!
//! QEMU writes the tree once the machine is built and exits before running anything, so
//! the boot image it is given is `/dev/null`; the tree's `/chosen` then has an empty
//! command line and no initramfs (a `cargo xtask run` adds both).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::paths::target_dir;
use crate::process;
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};

/// The flattened device tree's magic number (big-endian, at offset 0).
const FDT_MAGIC: [u8; 4] = 0xd00d_feed_u32.to_be_bytes();

/// Dumps the tree QEMU generates for `profile` and returns its path.
pub fn dump(profile: &Profile) -> Result<PathBuf> {
    dump_with(profile, None)
}

/// Dumps the tree QEMU passes to what it boots on `profile`'s machine given the board's tree
/// `dtb` (if any): `dtb` with `/memory` filled in and `/memreserve/` entries added as the
/// board's firmware would (QEMU's `raspi4b` fills them as the Pi's firmware does).
pub fn dump_with(profile: &Profile, dtb: Option<&Path>) -> Result<PathBuf> {
    let qemu = Qemu::ensure_installed()?;
    let dir = target_dir().join("dtb");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.dtb", profile.name));
    let _ = fs::remove_file(&path);
    let dumping = dump_profile(profile, &path);
    let mut cmd = qemu.command(&Boot { profile: &dumping, kernel: Path::new("/dev/null"), dtb, bootargs: "", extra_args: &[] });
    process::run(&mut cmd).with_context(|| format!("QEMU could not dump the device tree of {}", profile.name))?;
    let bytes = fs::read(&path).with_context(|| format!("QEMU wrote no device tree to {}", path.display()))?;
    ensure!(bytes.starts_with(&FDT_MAGIC), "{} is not a device tree (no FDT magic number)", path.display());
    Ok(path)
}

/// `profile` with `dumpdtb=path` added to its machine options.
fn dump_profile(profile: &Profile, path: &Path) -> Profile {
    let mut dumping = profile.clone();
    dumping.machine = format!("{},dumpdtb={}", profile.machine, path.display());
    dumping
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_gets_dumpdtb_and_the_rest_stays() {
        let profile = Profile::load("virt-gicv3-1").unwrap();
        let dumping = dump_profile(&profile, Path::new("/t/virt-gicv3-1.dtb"));
        assert_eq!(dumping.machine, "virt,virtualization=on,gic-version=3,dumpdtb=/t/virt-gicv3-1.dtb");
        assert_eq!((dumping.smp, &dumping.memory, &dumping.cpu), (profile.smp, &profile.memory, &profile.cpu));
    }
}
