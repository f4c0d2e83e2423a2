//! `cargo xtask run`'s machine flags (`--board`, `--gic`, `--cpus`) resolved into a QEMU
//! profile: the board's profile file, with QEMU virt's GIC version and CPU count applied.

use anyhow::{Result, bail};

use crate::image::Board;
use crate::profiles::Profile;

/// The interrupt controller version of QEMU's `virt` machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gic {
    /// GICv2 (no guest support yet).
    V2,
    /// GICv3 (the default).
    V3,
}

impl Gic {
    fn number(self) -> u8 {
        match self {
            Gic::V2 => 2,
            Gic::V3 => 3,
        }
    }
}

/// The most CPUs the core handles on QEMU `virt` (its per-CPU tables).
pub const MAX_CPUS: u32 = 8;

/// What the user asked for; `None` leaves the board's own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineFlags {
    /// The board.
    pub board: Board,
    /// The GIC version (QEMU virt only).
    pub gic: Option<Gic>,
    /// The number of CPUs (QEMU virt only).
    pub cpus: Option<u32>,
}

impl MachineFlags {
    /// The profile file these flags start from.
    fn base_profile(&self) -> String {
        match self.board {
            Board::QemuVirt => format!("virt-gicv{}-4", self.gic.unwrap_or(Gic::V3).number()),
            Board::Rpi4 => "raspi4b".to_owned(),
            Board::Imx8 => "imx8mp-evk".to_owned(),
        }
    }

    /// Applies the flags to `base` (the profile of [`Self::base_profile`]); fixed boards
    /// refuse a GIC or CPU count other than their own.
    pub fn apply(&self, mut base: Profile) -> Result<Profile> {
        match self.board {
            Board::QemuVirt => {
                let cpus = self.cpus.unwrap_or(base.smp);
                if !(1..=MAX_CPUS).contains(&cpus) {
                    bail!("--cpus {cpus}: QEMU virt runs the core on 1 to {MAX_CPUS} CPUs");
                }
                if cpus != base.smp {
                    base.name = format!("{}-{cpus}", base.name.rsplit_once('-').map_or(base.name.as_str(), |(stem, _)| stem));
                    base.description = format!("{} ({cpus} CPUs)", base.description.split(", ").take(2).collect::<Vec<_>>().join(", "));
                    base.smp = cpus;
                }
            }
            fixed => {
                let own_gic = if fixed == Board::Rpi4 { Gic::V2 } else { Gic::V3 };
                if let Some(gic) = self.gic.filter(|gic| *gic != own_gic) {
                    bail!("--gic {gic:?}: the {} has a GICv{}", fixed.name(), own_gic.number());
                }
                if let Some(cpus) = self.cpus.filter(|cpus| *cpus != base.smp) {
                    bail!("--cpus {cpus}: the {} has {} CPUs", fixed.name(), base.smp);
                }
            }
        }
        Ok(base)
    }

    /// Loads and applies the profile.
    pub fn resolve(&self) -> Result<Profile> {
        self.apply(Profile::load(&self.base_profile())?)
    }
}

/// Why the Linux guest cannot run on `profile`, if it cannot: it needs QEMU virt with a
/// GICv3 (the list-register backend is GICv3 only; the i.MX 8M Plus model does not wire the
/// GIC's virtual IRQ outputs).
pub fn guest_unsupported(profile: &Profile) -> Option<String> {
    if profile.board != Board::QemuVirt {
        return Some(format!("the Linux guest runs on QEMU virt only, not on {} (use --no-guest)", profile.name));
    }
    if !profile.machine.contains("gic-version=3") {
        return Some(format!("the Linux guest needs a GICv3 ({} has a GICv2); use --gic v3 or --no-guest", profile.name));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virt(gic: u8, smp: u32) -> Profile {
        let text = format!(
            "description = \"QEMU virt, GICv{gic}, {smp} CPUs\"\nboard = \"qemu-virt\"\nmachine = \"virt,virtualization=on,gic-version={gic}\"\ncpu = \"cortex-a72\"\nsmp = {smp}\nmemory = \"1G\"\nserial = [\"-serial\", \"stdio\"]\n"
        );
        Profile::parse(&format!("virt-gicv{gic}-{smp}"), &text).unwrap()
    }

    fn rpi4() -> Profile {
        let text = "description = \"Raspberry Pi 4B\"\nboard = \"rpi4\"\nmachine = \"raspi4b\"\ncpu = \"cortex-a72\"\nsmp = 4\nmemory = \"2G\"\nserial = [\"-serial\", \"stdio\"]\n";
        Profile::parse("raspi4b", text).unwrap()
    }

    #[test]
    fn virt_takes_gic_and_cpus() {
        let flags = MachineFlags { board: Board::QemuVirt, gic: Some(Gic::V2), cpus: Some(2) };
        assert_eq!(flags.base_profile(), "virt-gicv2-4");
        let profile = flags.apply(virt(2, 4)).unwrap();
        assert_eq!((profile.smp, profile.name.as_str()), (2, "virt-gicv2-2"));
        assert_eq!(profile.description, "QEMU virt, GICv2 (2 CPUs)");
        let default = MachineFlags { board: Board::QemuVirt, gic: None, cpus: None };
        assert_eq!(default.base_profile(), "virt-gicv3-4");
        assert_eq!(default.apply(virt(3, 4)).unwrap().name, "virt-gicv3-4");
        let too_many = MachineFlags { cpus: Some(9), ..default };
        assert!(too_many.apply(virt(3, 4)).unwrap_err().to_string().contains("1 to 8 CPUs"));
        assert!(MachineFlags { cpus: Some(0), ..default }.apply(virt(3, 4)).is_err());
    }

    #[test]
    fn fixed_boards_refuse_other_gics_and_cpu_counts() {
        let flags = MachineFlags { board: Board::Rpi4, gic: Some(Gic::V3), cpus: None };
        assert!(flags.apply(rpi4()).unwrap_err().to_string().contains("has a GICv2"));
        let flags = MachineFlags { board: Board::Rpi4, gic: Some(Gic::V2), cpus: Some(2) };
        assert!(flags.apply(rpi4()).unwrap_err().to_string().contains("has 4 CPUs"));
        let flags = MachineFlags { board: Board::Rpi4, gic: None, cpus: Some(4) };
        assert_eq!(flags.apply(rpi4()).unwrap().name, "raspi4b");
    }

    #[test]
    fn the_guest_needs_virt_with_a_gicv3() {
        assert_eq!(guest_unsupported(&virt(3, 4)), None);
        assert!(guest_unsupported(&virt(2, 4)).unwrap().contains("needs a GICv3"));
        assert!(guest_unsupported(&rpi4()).unwrap().contains("QEMU virt only"));
    }
}
