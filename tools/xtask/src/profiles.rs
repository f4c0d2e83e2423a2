//! QEMU profiles: one TOML file per profile under `qemu/`, describing a
//! machine model and how to boot the core on it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::image::Board;
use crate::paths::profiles_dir;

/// The profile `cargo xtask run` uses unless told otherwise.
pub const DEFAULT: &str = "virt-gicv3-4";

/// One QEMU profile (`qemu/<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name: its file name without `.toml`.
    #[serde(skip)]
    pub name: String,
    /// One line for listings.
    pub description: String,
    /// Which board build of the core this machine boots.
    pub board: Board,
    /// The `-machine` value, with its options.
    pub machine: String,
    /// The `-cpu` model.
    pub cpu: String,
    /// The number of CPUs (`-smp`).
    pub smp: u32,
    /// The RAM size (`-m`), e.g. `1G`.
    pub memory: String,
    /// A device tree from Debian's arm64 kernel package, relative to its
    /// `usr/lib/linux-image-*/` (e.g. `broadcom/bcm2711-rpi-4-b.dtb`); QEMU
    /// generates one itself when this is absent.
    #[serde(default)]
    pub dtb: Option<String>,
    /// QEMU arguments connecting the console UART to stdio.
    pub serial: Vec<String>,
    /// Any further QEMU arguments.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl Profile {
    /// Parses a profile's TOML text.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut profile: Profile =
            toml::from_str(text).with_context(|| format!("profile {name}"))?;
        profile.name = name.to_owned();
        if profile.smp == 0 {
            bail!("profile {name}: smp must be at least 1");
        }
        Ok(profile)
    }

    /// Loads `qemu/<name>.toml`.
    pub fn load(name: &str) -> Result<Self> {
        let path = profiles_dir().join(format!("{name}.toml"));
        if !path.is_file() {
            bail!(
                "no profile {name} (no {}); known: {}",
                path.display(),
                names()?.join(", ")
            );
        }
        Self::parse(name, &read(&path)?)
    }
}

/// The names of all profiles, sorted.
pub fn names() -> Result<Vec<String>> {
    let dir = profiles_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// All profiles, sorted by name.
pub fn all() -> Result<Vec<Profile>> {
    names()?.iter().map(|name| Profile::load(name)).collect()
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_profile() {
        let text = r#"
            description = "Raspberry Pi 4B"
            board = "rpi4"
            machine = "raspi4b"
            cpu = "cortex-a72"
            smp = 4
            memory = "2G"
            dtb = "broadcom/bcm2711-rpi-4-b.dtb"
            serial = ["-serial", "stdio"]
            extra_args = ["-d", "guest_errors"]
        "#;
        let profile = Profile::parse("raspi4b", text).unwrap();
        assert_eq!(profile.name, "raspi4b");
        assert_eq!(profile.board, Board::Rpi4);
        assert_eq!(profile.smp, 4);
        assert_eq!(profile.dtb.as_deref(), Some("broadcom/bcm2711-rpi-4-b.dtb"));
        assert_eq!(profile.extra_args, ["-d", "guest_errors"]);
    }

    #[test]
    fn optional_fields_default() {
        let text = r#"
            description = "d"
            board = "qemu-virt"
            machine = "virt"
            cpu = "cortex-a72"
            smp = 1
            memory = "1G"
            serial = []
        "#;
        let profile = Profile::parse("p", text).unwrap();
        assert_eq!(profile.dtb, None);
        assert!(profile.extra_args.is_empty());
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        let base = "description = \"d\"\nmachine = \"virt\"\ncpu = \"max\"\nsmp = 1\nmemory = \"1G\"\nserial = []\n";
        assert!(
            Profile::parse(
                "p",
                &format!("{base}board = \"qemu-virt\"\nmachin = \"x\"\n")
            )
            .is_err()
        );
        assert!(Profile::parse("p", &format!("{base}board = \"pc\"\n")).is_err());
        let zero = format!(
            "{}board = \"qemu-virt\"\n",
            base.replace("smp = 1", "smp = 0")
        );
        assert!(Profile::parse("p", &zero).is_err());
    }

    #[test]
    fn shipped_profiles_load() {
        let profiles = all().unwrap();
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        for required in [
            "virt-gicv3-1",
            "virt-gicv3-4",
            "virt-gicv2-1",
            "virt-gicv2-4",
            "raspi4b",
            "imx8mp-evk",
            DEFAULT,
        ] {
            assert!(names.contains(&required), "missing profile {required}");
        }
    }
}
