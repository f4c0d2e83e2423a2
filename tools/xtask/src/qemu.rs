//! QEMU: makes sure a recent enough `qemu-system-aarch64` is installed, and
//! turns a profile plus the files to boot into its command line.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::debian::{self, PrivateApt};
use crate::process;
use crate::profiles::Profile;

/// The emulator binary.
const PROGRAM: &str = "qemu-system-aarch64";
/// The oldest major version with the machine models and options relied on.
const MIN_MAJOR: u32 = 10;
/// The Debian package providing it, and the suite with a recent enough one.
const PACKAGE: &str = "qemu-system-arm";
const SUITE: &str = "bookworm-backports";

/// The command line given to the core: the non-empty `args`, space separated. (The run's
/// verdict comes from the core's console, see [`crate::verdict`], not from QEMU's status.)
pub fn bootargs<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    args.into_iter().filter(|arg| !arg.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A QEMU version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u32,
    minor: u32,
    micro: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// An installed `qemu-system-aarch64` of at least version [`MIN_MAJOR`].
#[derive(Debug, Clone)]
pub struct Qemu {
    version: Version,
}

impl Qemu {
    /// Checks the installed QEMU, installing a recent one from Debian
    /// backports (root only) if it is missing or too old.
    pub fn ensure_installed() -> Result<Self> {
        let problem = match installed_version()? {
            Some(version) if version.major >= MIN_MAJOR => return Ok(Self { version }),
            Some(version) => format!("{PROGRAM} {version} is older than {MIN_MAJOR}.0"),
            None => format!("{PROGRAM} is not installed"),
        };
        install(&problem)?;
        match installed_version()? {
            Some(version) if version.major >= MIN_MAJOR => Ok(Self { version }),
            _ => bail!("{problem}, and installing {PACKAGE} from {SUITE} did not fix that"),
        }
    }

    /// The QEMU command booting `boot`: the profile's machine with no
    /// default devices, display or monitor and no reboot (the run ends
    /// instead), then the console, the files to load and any extra arguments.
    /// Semihosting stays off (QEMU's default): nothing on the machine may reach
    /// the host's files or set QEMU's exit status.
    pub fn command(&self, boot: &Boot<'_>) -> Command {
        let profile = boot.profile;
        let mut cmd = machine_command(profile);
        cmd.arg("-kernel").arg(boot.kernel);
        if let Some(dtb) = boot.dtb {
            cmd.arg("-dtb").arg(dtb);
        }
        cmd.args(["-append", boot.bootargs]);
        cmd.args(&profile.extra_args).args(boot.extra_args);
        cmd
    }

    /// The command booting `profile`'s machine from `firmware` (`-bios`: a boot loader such as
    /// U-Boot, which loads what it boots itself), then `extra_args`.
    pub fn firmware_command(&self, profile: &Profile, firmware: &Path, extra_args: &[String]) -> Command {
        let mut cmd = machine_command(profile);
        cmd.arg("-bios").arg(firmware);
        cmd.args(&profile.extra_args).args(extra_args);
        cmd
    }

    /// A stand-in for an installed QEMU 10.0.0, for command-line tests.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            version: Version {
                major: 10,
                minor: 0,
                micro: 0,
            },
        }
    }

    /// A one-line description, e.g. `qemu-system-aarch64 10.0.2`.
    pub fn describe(&self) -> String {
        format!("{PROGRAM} {}", self.version)
    }
}

/// Everything one QEMU boot needs besides the profile's own settings.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// The machine to emulate.
    pub profile: &'a Profile,
    /// The raw image to boot (`-kernel`).
    pub kernel: &'a Path,
    /// The device tree to hand over, if the profile uses a fetched one.
    pub dtb: Option<&'a Path>,
    /// The core's command line (`-append`).
    pub bootargs: &'a str,
    /// Further QEMU arguments, placed last.
    pub extra_args: &'a [String],
}

/// The installed QEMU's version, `None` if it is not installed.
fn installed_version() -> Result<Option<Version>> {
    let output = match Command::new(PROGRAM).arg("--version").output() {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot run {PROGRAM} --version")),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text)
        .map(Some)
        .with_context(|| format!("cannot find a version in `{PROGRAM} --version` output: {text}"))
}

/// Parses `QEMU emulator version 10.0.2 (Debian ...)`.
fn parse_version(text: &str) -> Option<Version> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let number = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = number.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let micro = parts.next().unwrap_or(Ok(0)).ok()?;
    Some(Version {
        major,
        minor,
        micro,
    })
}

/// `profile`'s machine, CPUs, memory and console, with no default devices, display or
/// monitor, and no reboot.
fn machine_command(profile: &Profile) -> Command {
    let mut cmd = Command::new(PROGRAM);
    cmd.args(["-machine", &profile.machine]);
    cmd.args(["-cpu", &profile.cpu]);
    cmd.args(["-smp", &profile.smp.to_string()]);
    cmd.args(["-m", &profile.memory]);
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot"]);
    cmd.args(&profile.serial);
    cmd
}

/// Installs QEMU from Debian backports through a private APT state, or
/// explains how to when not root or not on Debian bookworm.
fn install(problem: &str) -> Result<()> {
    install_host_packages(problem, SUITE, &[PACKAGE])
}

/// Installs Debian `packages` from `suite` on this host through a private APT state (root on
/// Debian bookworm only), or explains how to.
pub fn install_host_packages(problem: &str, suite: &str, packages: &[&str]) -> Result<()> {
    let apt = PrivateApt::host()?;
    let codename = host_codename();
    if codename.as_deref() != Some(debian::RELEASE) {
        bail!(
            "{problem}; this host is not Debian {} ({}), so install {} yourself",
            debian::RELEASE,
            codename.as_deref().unwrap_or("unknown release"),
            packages.join(" "),
        );
    }
    if !is_root()? {
        bail!(
            "{problem}; as root, xtask would install {} from {suite} itself. \
             To do it by hand without changing the host's APT sources:\n\n{}",
            packages.join(" "),
            apt.install_instructions(suite, packages)
        );
    }
    eprintln!("xtask: {problem}; installing {} from {suite}", packages.join(" "));
    apt.install(suite, packages)
}

/// Whether xtask runs as root, per `id -u`.
fn is_root() -> Result<bool> {
    Ok(process::output(Command::new("id").arg("-u"))?.trim() == "0")
}

/// The host's release codename from `/etc/os-release`, if any.
fn host_codename() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|value| value.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Board;

    #[test]
    fn parses_versions() {
        let text = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright";
        assert_eq!(
            parse_version(text),
            Some(Version {
                major: 10,
                minor: 0,
                micro: 2
            })
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2\n"),
            Some(Version {
                major: 7,
                minor: 2,
                micro: 0
            })
        );
        assert_eq!(parse_version("no number here"), None);
    }

    #[test]
    fn joins_bootargs() {
        assert_eq!(bootargs([]), "");
        assert_eq!(bootargs(["companion.test=fault", "", "latmus=3"]), "companion.test=fault latmus=3");
    }

    #[test]
    fn command_line_from_profile() {
        let profile = Profile {
            name: "imx8mp-evk".into(),
            description: String::new(),
            board: Board::Imx8,
            machine: "imx8mp-evk".into(),
            cpu: "cortex-a53".into(),
            smp: 4,
            memory: "2G".into(),
            dtb: Some("freescale/imx8mp-evk.dtb".into()),
            serial: vec![
                "-serial".into(),
                "null".into(),
                "-serial".into(),
                "stdio".into(),
            ],
            extra_args: vec!["-d".into(), "guest_errors".into()],
        };
        let extra = ["-s".to_owned()];
        let boot = Boot {
            profile: &profile,
            kernel: Path::new("/t/Image"),
            dtb: Some(Path::new("/c/imx8mp-evk.dtb")),
            bootargs: "companion.test=fault",
            extra_args: &extra,
        };
        let qemu = Qemu {
            version: Version {
                major: 10,
                minor: 0,
                micro: 2,
            },
        };
        assert_eq!(
            process::describe(&qemu.command(&boot)),
            "qemu-system-aarch64 -machine imx8mp-evk -cpu cortex-a53 -smp 4 -m 2G -nodefaults \
             -display none -no-reboot \
             -serial null -serial stdio -kernel /t/Image -dtb /c/imx8mp-evk.dtb \
             -append companion.test=fault -d guest_errors -s"
        );
    }
}
