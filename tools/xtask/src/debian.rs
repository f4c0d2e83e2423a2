//! Private APT state for Debian bookworm: installs host packages and fetches
//! arm64 packages without touching the host's APT configuration.
//!
//! Each state lives in its own directory of the cache (`apt-host/`,
//! `apt-arm64/`) with its own `sources.list`, package lists and archive
//! cache; APT still verifies the Release signatures against Debian's keyring
//! and each `.deb` against its hash.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::paths::cache_dir;
use crate::process;
use crate::integrity::{self, Digest};

/// The Debian release the private sources follow.
pub const RELEASE: &str = "bookworm";
/// The keyring APT checks the archive's signatures against.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The archive and the suites (`bookworm`, `bookworm-updates`, ...) used.
const MIRROR: &str = "http://deb.debian.org";
const SUITES: [(&str, &str); 4] = [
    ("debian", ""),
    ("debian", "-updates"),
    ("debian", "-backports"),
    ("debian-security", "-security"),
];
/// Package lists younger than this are not refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Which packages a private APT state serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Packages to install on this host (its own dpkg status).
    Host,
    /// arm64 packages only downloaded and unpacked (an empty dpkg status).
    Arm64,
}

/// A package name with the version APT would fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The binary package name.
    pub name: String,
    /// Its candidate version.
    pub version: String,
}

/// One private APT state (sources, lists, archive cache) in the cache dir.
#[derive(Debug, Clone)]
pub struct PrivateApt {
    dir: PathBuf,
    scope: Scope,
    /// The archive components its sources name (`main`, `non-free-firmware`).
    component: &'static str,
}

impl PrivateApt {
    /// The state used to install packages on the host (`<cache>/apt-host`).
    pub fn host() -> Result<Self> {
        Ok(Self {
            dir: cache_dir()?.join("apt-host"),
            scope: Scope::Host,
            component: "main",
        })
    }

    /// The state used to fetch arm64 packages (`<cache>/apt-arm64`).
    pub fn arm64() -> Result<Self> {
        Ok(Self {
            dir: cache_dir()?.join("apt-arm64"),
            scope: Scope::Arm64,
            component: "main",
        })
    }

    /// The state fetching arm64 packages of the `non-free-firmware` component (the Raspberry
    /// Pi's boot firmware, `raspi-firmware`), kept apart (`<cache>/apt-arm64-non-free-firmware`)
    /// so the main state's lists stay as they are.
    pub fn arm64_non_free_firmware() -> Result<Self> {
        Ok(Self {
            dir: cache_dir()?.join("apt-arm64-non-free-firmware"),
            scope: Scope::Arm64,
            component: "non-free-firmware",
        })
    }

    fn sources_path(&self) -> PathBuf {
        self.dir.join("sources.list")
    }

    fn lists_dir(&self) -> PathBuf {
        self.dir.join("lists")
    }

    fn archive_cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn status_path(&self) -> PathBuf {
        self.dir.join("status")
    }

    /// Records the sources the lists were last updated from (kept outside the
    /// lists dir, which `apt-get update` cleans).
    fn stamp_path(&self) -> PathBuf {
        self.dir.join("lists.updated")
    }

    /// The `sources.list` text of this state.
    pub fn sources_list(&self) -> String {
        let options = match self.scope {
            Scope::Host => format!("signed-by={KEYRING}"),
            Scope::Arm64 => format!("arch=arm64 signed-by={KEYRING}"),
        };
        SUITES
            .iter()
            .map(|(archive, suffix)| {
                format!("deb [{options}] {MIRROR}/{archive} {RELEASE}{suffix} {}\n", self.component)
            })
            .collect()
    }

    /// The directories this state needs, for `mkdir -p`.
    fn dirs(&self) -> [PathBuf; 2] {
        [
            self.lists_dir().join("partial"),
            self.archive_cache_dir().join("archives/partial"),
        ]
    }

    /// Creates the directories and files APT is pointed at.
    fn prepare(&self) -> Result<()> {
        for dir in self.dirs() {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write(&self.sources_path(), &self.sources_list())?;
        if self.scope == Scope::Arm64 {
            write(&self.status_path(), "")?;
        }
        Ok(())
    }

    /// The `-o` options that confine APT to this state.
    fn options(&self) -> Vec<OsString> {
        let mut settings = vec![
            ("Dir::Etc::SourceList", self.sources_path().into_os_string()),
            ("Dir::Etc::SourceParts", "/dev/null".into()),
            ("Dir::State::Lists", self.lists_dir().into_os_string()),
            ("Dir::Cache", self.archive_cache_dir().into_os_string()),
        ];
        if self.scope == Scope::Arm64 {
            settings.extend([
                ("Dir::State::status", self.status_path().into_os_string()),
                ("APT::Architecture", "arm64".into()),
                ("APT::Architectures::", "arm64".into()),
            ]);
        }
        settings
            .into_iter()
            .flat_map(|(name, value)| {
                let mut setting = OsString::from(format!("{name}="));
                setting.push(value);
                [OsString::from("-o"), setting]
            })
            .collect()
    }

    /// An `apt-get` command confined to this state. Its progress goes to
    /// stderr, keeping stdout for xtask's results.
    fn apt_get(&self) -> Command {
        let mut cmd = Command::new("apt-get");
        cmd.args(self.options()).stdout(io::stderr());
        cmd
    }

    /// An `apt-cache` command confined to this state.
    fn apt_cache(&self) -> Command {
        let mut cmd = Command::new("apt-cache");
        cmd.args(self.options());
        cmd
    }

    fn update_command(&self) -> Command {
        let mut cmd = self.apt_get();
        cmd.arg("update");
        cmd
    }

    fn install_command(&self, suite: &str, packages: &[&str]) -> Command {
        let mut cmd = self.apt_get();
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", "-t", suite])
            .args(packages);
        cmd
    }

    /// Refreshes the package lists unless they are less than a day old and
    /// came from the current sources. A failed refresh of lists that exist
    /// is only a warning: they are still usable.
    pub fn refresh(&self) -> Result<()> {
        self.prepare()?;
        let sources = self.sources_list();
        let stamp = self.stamp_path();
        let have_lists = fs::read_to_string(&stamp).is_ok_and(|used| used == sources);
        let fresh = have_lists
            && fs::metadata(&stamp)
                .and_then(|meta| meta.modified())
                .is_ok_and(|time| {
                    SystemTime::now()
                        .duration_since(time)
                        .is_ok_and(|age| age < LISTS_MAX_AGE)
                });
        if fresh {
            return Ok(());
        }
        match process::run(&mut self.update_command()) {
            Ok(()) => write(&stamp, &sources),
            Err(err) if have_lists => {
                eprintln!(
                    "xtask: warning: {err:#}; using the package lists from an earlier update"
                );
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Installs `packages` on the host from `suite` (host state; needs root).
    pub fn install(&self, suite: &str, packages: &[&str]) -> Result<()> {
        assert_eq!(
            self.scope,
            Scope::Host,
            "only the host state installs packages"
        );
        self.prepare()?;
        process::run(&mut self.update_command())?;
        write(&self.stamp_path(), &self.sources_list())?;
        process::run(&mut self.install_command(suite, packages))
    }

    /// The shell commands a user with sudo would run to do [`Self::install`].
    pub fn install_instructions(&self, suite: &str, packages: &[&str]) -> String {
        let dirs: Vec<_> = self
            .dirs()
            .iter()
            .map(|dir| process::shell_quote(dir.as_os_str()))
            .collect();
        format!(
            "mkdir -p {dirs}\ncat > {sources} <<'EOF'\n{list}EOF\nsudo {update}\nsudo {install}\n",
            dirs = dirs.join(" "),
            sources = process::shell_quote(self.sources_path().as_os_str()),
            list = self.sources_list(),
            update = process::describe(&self.update_command()),
            install = process::describe(&self.install_command(suite, packages)),
        )
    }

    /// The newest package whose name matches the APT regex `pattern`, by
    /// candidate version.
    pub fn newest_package(&self, pattern: &str) -> Result<Package> {
        self.refresh()?;
        let mut search = self.apt_cache();
        search.args(["search", "--names-only", pattern]);
        let names: Vec<String> = process::output(&mut search)?
            .lines()
            .filter_map(|line| line.split(" - ").next())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty() {
            bail!("no {RELEASE} package matches `{pattern}`");
        }
        let mut show = self.apt_cache();
        show.args(["show", "--no-all-versions"]).args(&names);
        let mut newest: Option<Package> = None;
        for package in parse_packages(&process::output(&mut show)?) {
            if match &newest {
                Some(best) => version_greater(&package.version, &best.version)?,
                None => true,
            } {
                newest = Some(package);
            }
        }
        newest.with_context(|| format!("`apt-cache show` described none of {names:?}"))
    }

    /// Downloads package `name` and unpacks it into
    /// `<cache>/debian/<name>/`, returning that directory. An already
    /// unpacked package is reused as it is.
    pub fn fetch_unpacked(&self, name: &str) -> Result<PathBuf> {
        let unpacked_dir = cache_dir()?.join("debian");
        let root = unpacked_dir.join(name);
        if root.is_dir() {
            return Ok(root);
        }
        self.refresh()?;
        // This run's own staging directory: concurrent runs never share one.
        let staging = integrity::unique_temp(&root);
        let download_dir = staging.join("download");
        fs::create_dir_all(&download_dir)
            .with_context(|| format!("cannot create {}", download_dir.display()))?;

        eprintln!("xtask: downloading Debian package {name}");
        let mut download = self.apt_get();
        download.args(["download", name]).current_dir(&download_dir);
        process::run(&mut download)?;
        let deb = single_deb(&download_dir)?;
        let package = self.candidate(name)?;
        self.verify(&deb, &package)?;

        let staged_root = staging.join("root");
        let mut unpack = Command::new("dpkg-deb");
        unpack.arg("-x").arg(&deb).arg(&staged_root);
        process::run(&mut unpack)?;
        // Publish the tree only once it is complete; a concurrent run may have published
        // its own meanwhile, which is as good.
        let published = fs::rename(&staged_root, &root);
        let _ = fs::remove_dir_all(&staging);
        if published.is_err() && root.is_dir() {
            return Ok(root);
        }
        published.with_context(|| format!("cannot move unpacked {name} to {}", root.display()))?;
        Ok(root)
    }

    /// The packages APT would install, with their versions, to install
    /// `packages` (without recommends) on an empty arm64 system: the
    /// dependency closure by APT's own resolver (`apt-get -s install`,
    /// which needs no root and changes nothing).
    pub fn install_closure(&self, packages: &[&str]) -> Result<Vec<Package>> {
        assert_eq!(self.scope, Scope::Arm64, "only the arm64 state is empty");
        self.refresh()?;
        let mut simulate = self.apt_get();
        simulate
            .args(["-s", "-q", "install", "--no-install-recommends"])
            .args(packages)
            .stdout(std::process::Stdio::piped());
        let text = process::output(&mut simulate)
            .with_context(|| format!("APT cannot resolve the dependencies of {packages:?}"))?;
        let closure = parse_simulated_install(&text);
        for wanted in packages {
            if !closure.iter().any(|package| package.name == *wanted) {
                bail!("`{}` does not install {wanted}", process::describe(&simulate));
            }
        }
        Ok(closure)
    }

    /// Downloads the exact `packages` (name and version) into `dir`, skipping
    /// those already there whose size and SHA-256 match Debian's index (a cached
    /// `.deb` that does not is downloaded again), and returns each one's `.deb`, in
    /// order. Downloads go to a directory of this run's own and are checked before
    /// an atomic rename publishes them.
    pub fn download(&self, packages: &[Package], dir: &Path) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let digests = self.digests(packages)?;
        let mut missing = Vec::new();
        for (package, digest) in packages.iter().zip(&digests) {
            match find_deb(dir, package) {
                Some(deb) if integrity::matches(&deb, digest)? => {}
                Some(deb) => {
                    eprintln!("xtask: {} does not match Debian's index: downloading it again", deb.display());
                    fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
                    missing.push(package);
                }
                None => missing.push(package),
            }
        }
        if !missing.is_empty() {
            self.refresh()?;
            eprintln!("xtask: downloading {} Debian packages", missing.len());
            let staging = integrity::unique_temp(&dir.join("download"));
            fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
            let result = self.download_into(&missing, &staging, dir);
            let _ = fs::remove_dir_all(&staging);
            result?;
        }
        packages
            .iter()
            .map(|package| {
                find_deb(dir, package).with_context(|| {
                    format!(
                        "apt-get download left no .deb for {} {} in {}",
                        package.name,
                        package.version,
                        dir.display()
                    )
                })
            })
            .collect()
    }
}

impl PrivateApt {
    /// The candidate version of package `name`.
    fn candidate(&self, name: &str) -> Result<Package> {
        let mut show = self.apt_cache();
        show.args(["show", "--no-all-versions", name]);
        parse_packages(&process::output(&mut show)?)
            .into_iter()
            .find(|package| package.name == name)
            .with_context(|| format!("`apt-cache show {name}` described no such package"))
    }

    /// The size and SHA-256 Debian's `Packages` index gives each of `packages`, in order.
    fn digests(&self, packages: &[Package]) -> Result<Vec<Digest>> {
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let mut show = self.apt_cache();
        show.arg("show").args(packages.iter().map(|package| format!("{}={}", package.name, package.version)));
        let stanzas = parse_digests(&process::output(&mut show)?);
        packages
            .iter()
            .map(|package| {
                stanzas
                    .iter()
                    .find(|(described, _)| described == package)
                    .map(|(_, digest)| digest.clone())
                    .with_context(|| format!("Debian's index gives no SHA256/Size for {} {}", package.name, package.version))
            })
            .collect()
    }

    /// Fails unless `deb` has the size and SHA-256 Debian's index gives `package`.
    fn verify(&self, deb: &Path, package: &Package) -> Result<()> {
        let digest = self.digests(std::slice::from_ref(package))?.remove(0);
        if !integrity::matches(deb, &digest)? {
            bail!("{} does not match Debian's index (size {}, SHA256 {})", deb.display(), digest.size, digest.sha256);
        }
        Ok(())
    }

    /// Downloads `packages` into `staging` (this run's own directory), checks each against
    /// Debian's index and moves it into `dir`.
    fn download_into(&self, packages: &[&Package], staging: &Path, dir: &Path) -> Result<()> {
        let mut download = self.apt_get();
        download
            .arg("download")
            .args(packages.iter().map(|package| format!("{}={}", package.name, package.version)))
            .current_dir(staging);
        process::run(&mut download)?;
        for package in packages {
            let deb = find_deb(staging, package)
                .with_context(|| format!("apt-get download left no .deb for {} {}", package.name, package.version))?;
            self.verify(&deb, package)?;
            let name = deb.file_name().context("a .deb without a name")?;
            fs::rename(&deb, dir.join(name)).with_context(|| format!("cannot move {} into {}", deb.display(), dir.display()))?;
        }
        Ok(())
    }
}

/// The package, version, size and SHA-256 of each `apt-cache show` stanza that has them.
fn parse_digests(text: &str) -> Vec<(Package, Digest)> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_owned())
            };
            let package = Package { name: field("Package")?, version: field("Version")? };
            let digest = Digest { size: field("Size")?.parse().ok()?, sha256: field("SHA256")?.to_ascii_lowercase() };
            Some((package, digest))
        })
        .collect()
}

/// Unpacks `deb` into `dest` (once: an existing `dest` is reused), through a
/// staging directory of this run's own so a half-unpacked tree is never used.
pub fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    if dest.is_dir() {
        return Ok(());
    }
    let staging = integrity::unique_temp(dest);
    let mut extract = Command::new("dpkg-deb");
    extract.arg("-x").arg(deb).arg(&staging);
    if let Some(parent) = staging.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    process::run(&mut extract).with_context(|| format!("cannot unpack {}", deb.display()))?;
    match fs::rename(&staging, dest) {
        Ok(()) => Ok(()),
        // A concurrent run published the same package first.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("cannot move {} to {}", staging.display(), dest.display())),
    }
}

/// The `.deb` `apt-get download` saves `package` as (`name_version_arch.deb`,
/// with an epoch's `:` written `%3a`), if it is in `dir`.
fn find_deb(dir: &Path, package: &Package) -> Option<PathBuf> {
    let prefix = format!("{}_{}_", package.name, package.version.replace(':', "%3a"));
    fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let name = name.to_str()?;
        (name.starts_with(&prefix) && name.ends_with(".deb")).then(|| entry.path())
    })
}

/// The packages and versions of `apt-get -s install` output's `Inst` lines
/// (`Inst libc6 (2.36-9+deb12u10 Debian:12.11/stable [arm64])`).
fn parse_simulated_install(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let name = rest.split_whitespace().next()?;
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some(Package {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        })
        .collect()
}

/// Writes `text` to `path`, naming the path on failure.
fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The one `.deb` that `apt-get download` left in `dir`.
fn single_deb(dir: &Path) -> Result<PathBuf> {
    let debs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    match debs.as_slice() {
        [deb] => Ok(deb.clone()),
        _ => bail!(
            "expected one .deb in {}, found {}",
            dir.display(),
            debs.len()
        ),
    }
}

/// Parses the `Package:` and `Version:` fields of `apt-cache show` stanzas.
fn parse_packages(text: &str) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            };
            Some(Package {
                name: field("Package")?,
                version: field("Version")?,
            })
        })
        .collect()
}

/// Whether Debian version `a` is greater than `b`, as dpkg orders them.
fn version_greater(a: &str, b: &str) -> Result<bool> {
    let mut compare = Command::new("dpkg");
    compare.args(["--compare-versions", a, "gt", b]);
    match process::status(&mut compare)?.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("`{}` failed", process::describe(&compare)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(scope: Scope) -> PrivateApt {
        PrivateApt {
            dir: PathBuf::from("/cache/apt"),
            scope,
            component: "main",
        }
    }

    #[test]
    fn the_firmware_state_names_only_its_component() {
        let firmware = PrivateApt { component: "non-free-firmware", ..state(Scope::Arm64) };
        let list = firmware.sources_list();
        assert_eq!(list.lines().count(), 4);
        assert!(list.lines().all(|line| line.ends_with(" non-free-firmware")), "{list}");
    }

    #[test]
    fn arm64_sources_cover_all_suites() {
        let list = state(Scope::Arm64).sources_list();
        let opts = "[arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
        assert_eq!(
            list,
            format!(
                "deb {opts} http://deb.debian.org/debian bookworm main\n\
                 deb {opts} http://deb.debian.org/debian bookworm-updates main\n\
                 deb {opts} http://deb.debian.org/debian bookworm-backports main\n\
                 deb {opts} http://deb.debian.org/debian-security bookworm-security main\n"
            )
        );
        assert!(!state(Scope::Host).sources_list().contains("arch="));
    }

    #[test]
    fn options_confine_apt() {
        let host = process::describe(&state(Scope::Host).update_command());
        assert_eq!(
            host,
            "apt-get -o Dir::Etc::SourceList=/cache/apt/sources.list -o Dir::Etc::SourceParts=/dev/null \
             -o Dir::State::Lists=/cache/apt/lists -o Dir::Cache=/cache/apt/cache update"
        );
        let arm64 = process::describe(&state(Scope::Arm64).apt_cache());
        assert!(arm64.contains("-o Dir::State::status=/cache/apt/status"));
        assert!(arm64.contains("-o APT::Architecture=arm64 -o APT::Architectures::=arm64"));
    }

    #[test]
    fn install_instructions_are_runnable_shell() {
        let text =
            state(Scope::Host).install_instructions("bookworm-backports", &["qemu-system-arm"]);
        assert!(
            text.starts_with(
                "mkdir -p /cache/apt/lists/partial /cache/apt/cache/archives/partial\n"
            )
        );
        assert!(text.contains("cat > /cache/apt/sources.list <<'EOF'\ndeb [signed-by="));
        assert!(text.ends_with(
            "sudo DEBIAN_FRONTEND=noninteractive apt-get -o Dir::Etc::SourceList=/cache/apt/sources.list \
             -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=/cache/apt/lists \
             -o Dir::Cache=/cache/apt/cache install -y --no-install-recommends -t bookworm-backports \
             qemu-system-arm\n"
        ));
    }

    #[test]
    fn parses_apt_cache_show() {
        let text = "Package: linux-image-6.1.0-40-rt-arm64-unsigned\nSource: linux\nVersion: 6.1.153-1\n\
                    Description: Linux\n\nPackage: linux-image-6.12.95+deb12-rt-arm64-unsigned\n\
                    Version: 6.12.95-1~deb12u1\nDepends: kmod\n\n";
        assert_eq!(
            parse_packages(text),
            [
                Package {
                    name: "linux-image-6.1.0-40-rt-arm64-unsigned".into(),
                    version: "6.1.153-1".into()
                },
                Package {
                    name: "linux-image-6.12.95+deb12-rt-arm64-unsigned".into(),
                    version: "6.12.95-1~deb12u1".into()
                },
            ]
        );
    }

    #[test]
    fn parses_sizes_and_hashes_of_the_index() {
        let text = "Package: libc6\nVersion: 2.36-9\nArchitecture: arm64\nSize: 2321948\n\
                    SHA256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n\n\
                    Package: busybox\nVersion: 1:1.35.0-4\n\n";
        let digests = parse_digests(text);
        assert_eq!(digests.len(), 1, "a stanza without SHA256/Size gives none");
        assert_eq!(digests[0].0, Package { name: "libc6".into(), version: "2.36-9".into() });
        assert_eq!(digests[0].1.size, 2_321_948);
        assert!(digests[0].1.sha256.starts_with("abcdef0123"));
    }

    #[test]
    fn parses_simulated_install() {
        let text = "NOTE: This is only a simulation!\n\
                    Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [arm64])\n\
                    Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [arm64]) []\n\
                    Inst tzdata [2024a-0] (1:2025b-0+deb12u1 Debian:12.15/oldstable [all])\n\
                    Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [arm64])\n";
        let names: Vec<String> = parse_simulated_install(text)
            .into_iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        assert_eq!(
            names,
            [
                "gcc-12-base=12.2.0-14+deb12u1",
                "libc6=2.36-9+deb12u14",
                "tzdata=1:2025b-0+deb12u1"
            ]
        );
    }

    #[test]
    fn finds_downloaded_debs_by_version() {
        let dir = std::env::temp_dir().join(format!("xtask-find-deb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("tzdata_1%3a2025b-0_all.deb"), "").unwrap();
        fs::write(dir.join("libc6_2.36-9_arm64.deb"), "").unwrap();
        let package = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
        };
        assert!(find_deb(&dir, &package("tzdata", "1:2025b-0")).is_some());
        assert!(find_deb(&dir, &package("libc6", "2.36-9")).is_some());
        assert!(find_deb(&dir, &package("libc6", "2.36-10")).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compares_debian_versions() {
        assert!(version_greater("6.12.95-1~deb12u1", "6.1.153-1").unwrap());
        assert!(!version_greater("1.0~rc1", "1.0").unwrap());
    }
}
