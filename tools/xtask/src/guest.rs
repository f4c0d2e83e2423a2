//! The test guest: Debian's PREEMPT_RT arm64 kernel plus an initramfs built
//! from Debian bookworm arm64 packages (busybox-static, rt-tests, stress-ng
//! and every shared library they load), all fetched through the private APT
//! state and cached outside the checkout; and booting it under plain QEMU.
//!
//! Cache layout (under [`cache_dir`]`/guest`): `debs/` holds the downloaded
//! packages, `unpacked/<name>_<version>/` each one unpacked, and
//! `initramfs-<key>.cpio` the archives, keyed by the package versions and the
//! init scripts, with a `.manifest` next to each; `System.map-<release>-<key>` is the
//! kernel's symbol table, read from its `/proc/kallsyms` (see [`kallsyms`]).

mod companion_tool;
mod cpio;
pub mod early_hang;
mod elf;
pub mod init;
mod kallsyms;
mod modules;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::debian::{self, Package, PrivateApt};
use crate::image::Board;
use crate::integrity;
use crate::linux_package::LinuxPackage;
use crate::paths::cache_dir;
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};

/// The packages whose programs the initramfs carries (whole, minus docs);
/// their dependencies only contribute the shared libraries actually loaded.
pub const PACKAGES: [&str; 3] = ["busybox-static", "rt-tests", "stress-ng"];
/// Libraries loaded with `dlopen` rather than `DT_NEEDED`, included anyway:
/// glibc loads libgcc_s for thread cancellation and unwinding.
const DLOPENED: [&str; 1] = ["libgcc_s.so.1"];
/// Where the dynamic loader looks for libraries (Debian arm64 multiarch).
const LIBRARY_DIRS: [&str; 4] = [
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib",
    "usr/lib",
];
/// Parts of the program packages left out of the initramfs.
const EXCLUDED_DIRS: [&str; 6] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/bug",
];
/// Bumped whenever the initramfs layout changes, to invalidate cached archives.
const FORMAT_VERSION: u32 = 1;

/// QEMU arguments loading `guest` for the core as a board's loader would: its kernel and
/// initramfs in one guest bundle (`crate::flash::bundle_file`, what `cargo xtask image`
/// writes) as `-initrd`, which QEMU names in the device tree's `/chosen`, where the core
/// (`companion.guest=bundle`) finds it.
pub fn core_qemu_args(guest: &Guest) -> Result<Vec<String>> {
    let bundle = crate::flash::bundle_file(guest)?;
    Ok(vec!["-initrd".to_string(), bundle.display().to_string()])
}

/// The core's argument booting the guest from the bundle `/chosen` names.
const GUEST_FROM_BUNDLE: &str = "companion.guest=bundle";

/// The core's command line booting the guest with `script` for `duration_s` seconds (at
/// least 1) next to `load` (`guest.load=`, read by the `cyclictest` script), the guest's
/// after ` -- `.
pub fn core_bootargs(core_args: &[&str], script: &str, duration_s: u64, load: init::Load) -> String {
    let guest = guest_cmdline(script, duration_s, load);
    let mut words: Vec<&str> = vec![GUEST_FROM_BUNDLE];
    if CHANNEL_SCRIPTS.contains(&script) {
        words.push(CHANNEL_ON);
    }
    if [init::PID_SCRIPT, init::PID_DROPS_SCRIPT, init::HOSTILE_CONTROL_SCRIPT].contains(&script) {
        words.push(PID_APP);
    }
    words.extend(core_args.iter().copied().filter(|arg| !arg.is_empty()));
    format!("{} -- {guest}", words.join(" "))
}

/// The guest's command line running `script` for `duration_s` seconds (at least 1) next to
/// `load`: what follows ` -- ` on the core's, or what a guest bundle carries.
pub fn guest_cmdline(script: &str, duration_s: u64, load: init::Load) -> String {
    format!("console=ttyAMA0 panic=-1 guest.script={script} guest.duration={} guest.load={load}", duration_s.max(1))
}

/// The core's argument offering the guest the channel device (docs/channel.md).
pub const CHANNEL_ON: &str = "companion.channel=on";

/// The core's argument starting the example application beside the guest, for the `pid`
/// script (its setpoints and telemetry go over the channel), the `pid-drops` one (its
/// telemetry unread) and the `channel-hostile` one (an app port it writes to).
pub const PID_APP: &str = "companion.app=example";

/// The guest scripts that cannot work without the channel: their runs ask for it by name,
/// so they say what they need even though the core offers the device by default
/// (`companion.channel=off` removes it).
const CHANNEL_SCRIPTS: &[&str] = &["channel", "shell", init::PID_SCRIPT, init::PID_DROPS_SCRIPT, init::HOSTILE_CONTROL_SCRIPT];

/// The files booting the guest: kernel, symbols and initramfs.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The raw arm64 kernel `Image`.
    pub kernel: PathBuf,
    /// The kernel's `System.map` (naming the irqs-off hunter's guest PCs): built once per
    /// kernel from its own `/proc/kallsyms` by a `nokaslr` boot under QEMU, since Debian's
    /// packaged one is a placeholder; that placeholder only if the build failed (with a
    /// warning), leaving the report's locations unnamed.
    pub system_map: PathBuf,
    /// The initramfs (an uncompressed `newc` cpio archive).
    pub initramfs: PathBuf,
}

impl Guest {
    /// Fetches Debian's newest PREEMPT_RT arm64 kernel and builds (or reuses
    /// from the cache) the initramfs from the current bookworm packages and the
    /// kernel's `System.map` (the first time, booting the kernel under QEMU).
    pub fn prepare() -> Result<Self> {
        let linux = LinuxPackage::fetch().context("cannot fetch the guest kernel")?;
        let kernel = linux.image()?;
        let initramfs = pin(&build_initramfs().context("cannot build the guest initramfs")?)?;
        // Only the irqs-off hunter needs the map: a failure must not stop every guest run.
        let system_map = match system_map(&kernel, &initramfs) {
            Ok(path) => path,
            Err(err) => {
                eprintln!(
                    "xtask: warning: cannot build the guest kernel's System.map, irqs-off locations will stay \
                     unnamed (or pass --system-map FILE): {err:#}"
                );
                linux.system_map()?
            }
        };
        Ok(Self {
            kernel,
            system_map,
            initramfs,
        })
    }
}

/// A copy of the shared cache's `archive` private to this checkout (`target/guest/`, a hard
/// link when the file system allows, else a copy), so another checkout pruning the cache
/// cannot delete it under a run; reused while intact.
fn pin(archive: &Path) -> Result<PathBuf> {
    let dir = crate::paths::target_dir().join("guest");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = archive.file_name().context("an initramfs path without a file name")?;
    let pinned = dir.join(name);
    if pinned.is_file() && integrity::matches(&pinned, &integrity::digest(archive)?)? {
        return Ok(pinned);
    }
    let staging = integrity::unique_temp(&pinned);
    if fs::hard_link(archive, &staging).is_err() {
        fs::copy(archive, &staging).with_context(|| format!("cannot copy {} to {}", archive.display(), staging.display()))?;
    }
    fs::rename(&staging, &pinned).with_context(|| format!("cannot move {} to {}", staging.display(), pinned.display()))?;
    Ok(pinned)
}

/// The `System.map` of any arm64 guest `kernel` (Debian's or one's own), built once per
/// kernel from its own `/proc/kallsyms` by a `nokaslr` boot with `initramfs` under QEMU and
/// cached (see [`kallsyms`]).
pub fn system_map(kernel: &Path, initramfs: &Path) -> Result<PathBuf> {
    kallsyms::system_map(kernel, initramfs, &guest_cache()?)
}

/// How `cargo xtask guest` boots the guest under QEMU without the core.
#[derive(Debug, Clone)]
pub struct NoCoreBoot<'a> {
    /// The kernel `Image`.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub append: &'a str,
    /// The number of CPUs.
    pub cpus: u32,
    /// Further QEMU arguments, placed last.
    pub extra_args: &'a [String],
}

impl NoCoreBoot<'_> {
    /// The plain `virt` machine the guest runs on without the core: GICv3,
    /// Cortex-A72s, 1 GiB (the core's machines' size, so a baseline compares), no EL2 (the kernel is entered at EL1), PL011
    /// console multiplexed with QEMU's monitor on stdio (Ctrl-A X quits).
    pub fn profile(&self) -> Profile {
        Profile {
            name: "guest-virt".into(),
            description: "QEMU virt, GICv3, Linux guest without the core".into(),
            board: Board::QemuVirt,
            machine: "virt,gic-version=3".into(),
            cpu: "cortex-a72".into(),
            smp: self.cpus,
            memory: "1G".into(),
            dtb: None,
            serial: vec!["-serial".into(), "mon:stdio".into()],
            extra_args: Vec::new(),
        }
    }

    /// The QEMU command line.
    pub fn command(&self, qemu: &Qemu) -> Command {
        let profile = self.profile();
        let mut extra = vec!["-initrd".to_owned(), self.initrd.display().to_string()];
        extra.extend(self.extra_args.iter().cloned());
        qemu.command(&Boot {
            profile: &profile,
            kernel: self.kernel,
            dtb: None,
            bootargs: self.append,
            extra_args: &extra,
        })
    }
}

/// The guest's cache directory.
fn guest_cache() -> Result<PathBuf> {
    Ok(cache_dir()?.join("guest"))
}

/// Builds the initramfs for the current package versions unless the cache
/// already holds it intact (the SHA-256 recorded when it was built still
/// matches; otherwise it is rebuilt); returns its path.
fn build_initramfs() -> Result<PathBuf> {
    let apt = PrivateApt::arm64()?;
    let closure = apt.install_closure(&PACKAGES)?;
    let cache = guest_cache()?;
    let kernel_modules = modules::find(LinuxPackage::fetch()?.root())?;
    let tool = companion_tool::build()?;
    let key = companion_tool::key(&modules::key(&cache_key(&closure), &kernel_modules), &tool)?;
    let archive = cache.join(format!("initramfs-{key}.cpio"));
    if integrity::intact(&archive) {
        return Ok(archive);
    }
    if archive.exists() {
        eprintln!("xtask: {} does not match its recorded SHA-256: rebuilding it", archive.display());
    }
    let debs = apt.download(&closure, &cache.join("debs"))?;
    let unpacked_dir = cache.join("unpacked");
    let mut roots = Vec::new();
    for (package, deb) in closure.iter().zip(&debs) {
        let root = unpacked_dir.join(format!(
            "{}_{}",
            package.name,
            package.version.replace(':', "%3a")
        ));
        debian::unpack(deb, &root)?;
        roots.push((package.name.as_str(), root));
    }

    let mut rootfs = Rootfs::new(roots.iter().map(|(_, root)| root.clone()).collect());
    for (name, root) in &roots {
        if PACKAGES.contains(name) {
            rootfs.add_tree(root)?;
        }
    }
    rootfs.add_generated_files();
    modules::add(&mut rootfs, &kernel_modules);
    companion_tool::add(&mut rootfs, &tool);
    rootfs.resolve_libraries()?;

    let staging = integrity::unique_temp(&archive);
    let size = rootfs.write_cpio(&staging)?;
    let manifest = manifest(&closure, &rootfs);
    let manifest_path = cache.join(format!("initramfs-{key}.manifest"));
    let manifest_staging = integrity::unique_temp(&manifest_path);
    fs::write(&manifest_staging, manifest)
        .with_context(|| format!("cannot write {}", manifest_staging.display()))?;
    fs::rename(&manifest_staging, &manifest_path)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    integrity::record(&staging, &archive)?;
    fs::rename(&staging, &archive)
        .with_context(|| format!("cannot move {} to {}", staging.display(), archive.display()))?;
    prune_old_archives(&cache, &key);
    eprintln!(
        "xtask: built the guest initramfs ({} entries, {:.1} MiB) from {} packages",
        rootfs.nodes.len(),
        size as f64 / (1024.0 * 1024.0),
        closure.len()
    );
    Ok(archive)
}

/// How long an archive of another key is kept: other checkouts sharing the cache (other
/// branches, with other init scripts) build and boot their own archives meanwhile, and
/// must not see them deleted under their runs.
const OTHER_ARCHIVES_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Removes the archives (and manifests and records) of other keys not used for
/// [`OTHER_ARCHIVES_KEPT`] (by modification time): they were built from package versions the
/// archive no longer serves, or by scripts no checkout runs any more. Failures only cost
/// space.
fn prune_old_archives(cache: &Path, key: &str) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let other = name.starts_with("initramfs-")
            && (name.ends_with(".cpio") || name.ends_with(".cpio.sha256") || name.ends_with(".manifest"))
            && !name.contains(key);
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > OTHER_ARCHIVES_KEPT);
        if other && stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The initramfs's cache key: a stable 64-bit FNV-1a hash (hex) of the
/// format version, every package with its version, and the init scripts.
fn cache_key(closure: &[Package]) -> String {
    let mut packages: Vec<String> = closure
        .iter()
        .map(|package| format!("{}={}\n", package.name, package.version))
        .collect();
    packages.sort();
    let mut text = format!("format {FORMAT_VERSION}\n{}", packages.concat());
    text.push_str(&init::init_script());
    for (name, _, body) in init::SCRIPTS {
        text.push_str(&format!("{name}\n{body}"));
    }
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// 64-bit FNV-1a: tiny and stable across Rust releases (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The manifest saved next to an initramfs: its packages and its paths.
fn manifest(closure: &[Package], rootfs: &Rootfs) -> String {
    let mut text = String::from("# packages\n");
    for package in closure {
        text.push_str(&format!("{} {}\n", package.name, package.version));
    }
    text.push_str("# files\n");
    for path in rootfs.nodes.keys() {
        text.push_str(path);
        text.push('\n');
    }
    text
}

/// One entry of the initramfs being assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Directory,
    /// A file copied from an unpacked package, with its permissions.
    File(PathBuf, u32),
    /// A file made here, with its permissions.
    Generated(Vec<u8>, u32),
    Symlink(String),
    CharDevice(u32, u32),
}

/// The initramfs's tree, keyed by path relative to `/` (sorted, so parents
/// come before their children), and the unpacked packages it draws from.
#[derive(Debug)]
struct Rootfs {
    pool: Vec<PathBuf>,
    nodes: BTreeMap<String, Node>,
}

impl Rootfs {
    fn new(pool: Vec<PathBuf>) -> Self {
        Self {
            pool,
            nodes: BTreeMap::new(),
        }
    }

    /// Adds `path` and its missing parent directories.
    fn insert(&mut self, path: &str, node: Node) {
        for (slash, _) in path.match_indices('/') {
            self.nodes
                .entry(path[..slash].to_owned())
                .or_insert(Node::Directory);
        }
        self.nodes.insert(path.to_owned(), node);
    }

    /// Adds the whole unpacked package at `root`, except its documentation.
    fn add_tree(&mut self, root: &Path) -> Result<()> {
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries =
                fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
            for entry in entries {
                let path = entry
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .path();
                let relative = relative_path(root, &path)?;
                if EXCLUDED_DIRS.contains(&relative.as_str()) {
                    continue;
                }
                if path.symlink_metadata().is_ok_and(|meta| meta.is_dir()) {
                    self.insert(&relative, Node::Directory);
                    pending.push(path);
                } else {
                    self.add_from(root, &relative)?;
                }
            }
        }
        Ok(())
    }

    /// Adds the file or symlink `relative` of the unpacked package `root`.
    fn add_from(&mut self, root: &Path, relative: &str) -> Result<()> {
        let path = root.join(relative);
        let meta = path
            .symlink_metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let node = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read link {}", path.display()))?;
            Node::Symlink(target.to_string_lossy().into_owned())
        } else if meta.is_file() {
            Node::File(path, meta.permissions().mode() & 0o7777)
        } else {
            bail!("{} is neither a file nor a symlink", path.display());
        };
        self.insert(relative, node);
        Ok(())
    }

    /// Adds `/init`, the scripts, `/dev/console` and a minimal `/etc`.
    fn add_generated_files(&mut self) {
        self.insert(
            "init",
            Node::Generated(init::init_script().into_bytes(), 0o755),
        );
        for (name, _, body) in init::SCRIPTS {
            let path = format!("{}/{name}", init::SCRIPT_DIR);
            self.insert(
                &path,
                Node::Generated(init::script_file(body).into_bytes(), 0o755),
            );
        }
        for dir in [
            "proc", "sys", "dev", "tmp", "run", "root", "bin", "sbin", "usr/bin", "usr/sbin",
        ] {
            self.insert(dir, Node::Directory);
        }
        self.insert("dev/console", Node::CharDevice(5, 1));
        self.insert(
            "etc/passwd",
            Node::Generated(b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), 0o644),
        );
        self.insert("etc/group", Node::Generated(b"root:x:0:\n".to_vec(), 0o644));
    }

    /// Finds `path` (relative to `/`) in the first package that has it.
    fn find_in_pool(&self, path: &str) -> Option<&PathBuf> {
        self.pool
            .iter()
            .find(|root| root.join(path).symlink_metadata().is_ok())
    }

    /// Adds `path` from the pool, following symlinks (each link and its
    /// target are added). Returns the final file's path, if found.
    fn add_resolved(&mut self, path: &str) -> Result<Option<String>> {
        let mut path = normalize(path);
        for _ in 0..16 {
            let Some(root) = self.find_in_pool(&path).cloned() else {
                return Ok(None);
            };
            self.add_from(&root, &path)?;
            match &self.nodes[&path] {
                Node::Symlink(target) => {
                    path = if let Some(absolute) = target.strip_prefix('/') {
                        normalize(absolute)
                    } else {
                        let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                        normalize(&format!("{parent}/{target}"))
                    };
                }
                _ => return Ok(Some(path)),
            }
        }
        bail!("too many levels of symbolic links resolving {path}")
    }

    /// Adds the interpreter and every library the ELF files load (and what
    /// those load), plus [`DLOPENED`].
    fn resolve_libraries(&mut self) -> Result<()> {
        let mut scanned = BTreeSet::new();
        for soname in DLOPENED {
            self.add_library(soname, "glibc (dlopen)")?;
        }
        loop {
            let unscanned: Vec<(String, PathBuf)> = self
                .nodes
                .iter()
                .filter_map(|(path, node)| match node {
                    Node::File(source, _) if !scanned.contains(path) => {
                        Some((path.clone(), source.clone()))
                    }
                    _ => None,
                })
                .collect();
            if unscanned.is_empty() {
                return Ok(());
            }
            for (path, source) in unscanned {
                scanned.insert(path.clone());
                let bytes = fs::read(&source)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                if !elf::is_elf(&bytes) {
                    continue;
                }
                let dynamic =
                    elf::dynamic(&bytes).with_context(|| format!("cannot parse /{path}"))?;
                if let Some(interpreter) = dynamic.interpreter
                    && self.add_resolved(&interpreter)?.is_none()
                {
                    bail!("no package provides {interpreter}, the interpreter of /{path}");
                }
                for soname in dynamic.needed {
                    self.add_library(&soname, &path)?;
                }
            }
        }
    }

    /// Adds library `soname`, searched in [`LIBRARY_DIRS`] over the pool.
    fn add_library(&mut self, soname: &str, user: &str) -> Result<()> {
        for dir in LIBRARY_DIRS {
            if self.add_resolved(&format!("{dir}/{soname}"))?.is_some() {
                return Ok(());
            }
        }
        bail!(
            "no package in the dependency closure provides {soname} (needed by /{user}) in {}",
            LIBRARY_DIRS.join(", ")
        )
    }

    /// Writes the tree as a `newc` cpio archive at `path`; returns its size.
    fn write_cpio(&self, path: &Path) -> Result<u64> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = cpio::Writer::new(BufWriter::new(file));
        for (name, node) in &self.nodes {
            let contents;
            let (perm, kind) = match node {
                Node::Directory => (0o755, cpio::Kind::Directory),
                Node::File(source, perm) => {
                    contents = fs::read(source)
                        .with_context(|| format!("cannot read {}", source.display()))?;
                    (*perm, cpio::Kind::File(&contents))
                }
                Node::Generated(data, perm) => (*perm, cpio::Kind::File(data)),
                Node::Symlink(target) => (0o777, cpio::Kind::Symlink(target)),
                Node::CharDevice(major, minor) => (0o600, cpio::Kind::CharDevice(*major, *minor)),
            };
            writer
                .entry(name, perm, kind)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let (_, size) = writer
            .finish()
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(size)
    }
}

/// `path` relative to `root`, as a `/`-separated UTF-8 string.
fn relative_path(root: &Path, path: &Path) -> Result<String> {
    let relative = path
        .strip_prefix(root)
        .with_context(|| format!("{} is not under {}", path.display(), root.display()))?;
    relative
        .to_str()
        .map(str::to_owned)
        .with_context(|| format!("non-UTF-8 path {}", path.display()))
}

/// `path` without a leading `/`, empty and `.` components, and with `..`
/// applied (never above the root).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("xtask-guest-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, path: &str, bytes: &[u8]) {
            let path = self.0.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
        }

        fn link(&self, path: &str, target: &str) {
            let path = self.0.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn core_bootargs_carry_the_script_duration_and_load() {
        assert_eq!(
            core_bootargs(&["latmus=5 latmus.period=1000", ""], "cyclictest", 5, init::Load::Grinder),
            "companion.guest=bundle latmus=5 latmus.period=1000 -- \
             console=ttyAMA0 panic=-1 guest.script=cyclictest guest.duration=5 guest.load=grinder"
        );
        let idle = core_bootargs(&[], "uname", 0, init::Load::Idle);
        assert!(idle.ends_with(" -- console=ttyAMA0 panic=-1 guest.script=uname guest.duration=1 guest.load=idle"), "{idle}");
        let neighbour = core_bootargs(&[], "cyclictest", 3, init::Load::Neighbour);
        let (_, guest) = neighbour.split_once(" -- ").unwrap();
        assert_eq!(init::load_of_cmdline(guest), Some("neighbour"));
        // Only the scripts that use the channel have the core offer it.
        let channel = core_bootargs(&[], "channel", 3, init::Load::Idle);
        assert!(channel.split_once(" -- ").unwrap().0.contains(CHANNEL_ON), "{channel}");
        assert!(!neighbour.contains(CHANNEL_ON) && !idle.contains(CHANNEL_ON));
        // The `pid` script has the core start the example application beside the guest.
        let pid = core_bootargs(&[], init::PID_SCRIPT, 1, init::Load::Idle);
        let core = pid.split_once(" -- ").unwrap().0;
        assert!(core.contains(CHANNEL_ON) && core.contains(PID_APP), "{pid}");
        assert!(!channel.contains(PID_APP));
        // So do the scripts stalling its telemetry and writing to its port.
        for script in [init::PID_DROPS_SCRIPT, init::HOSTILE_CONTROL_SCRIPT] {
            let args = core_bootargs(&[], script, 1, init::Load::Idle);
            let core = args.split_once(" -- ").unwrap().0;
            assert!(core.contains(CHANNEL_ON) && core.contains(PID_APP), "{args}");
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize("/lib/ld-linux-aarch64.so.1"),
            "lib/ld-linux-aarch64.so.1"
        );
        assert_eq!(
            normalize("lib/./aarch64-linux-gnu//x"),
            "lib/aarch64-linux-gnu/x"
        );
        assert_eq!(normalize("usr/lib/../../lib/x"), "lib/x");
        assert_eq!(normalize("../../x"), "x");
    }

    #[test]
    fn cache_key_follows_versions_not_order() {
        let package = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
        };
        let a = cache_key(&[package("libc6", "2.36-9"), package("rt-tests", "2.5-1")]);
        let b = cache_key(&[package("rt-tests", "2.5-1"), package("libc6", "2.36-9")]);
        let c = cache_key(&[package("libc6", "2.36-10"), package("rt-tests", "2.5-1")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn resolves_interpreter_and_library_closure() {
        let rt = Scratch::new("rt");
        let libc = Scratch::new("libc");
        let numa = Scratch::new("numa");
        let gcc = Scratch::new("gcc");
        let unused = Scratch::new("unused");
        rt.file(
            "usr/bin/cyclictest",
            &elf::tests::synthetic_elf(
                Some("/lib/ld-linux-aarch64.so.1"),
                &["libnuma.so.1", "libc.so.6"],
            ),
        );
        rt.file("usr/share/doc/rt-tests/copyright", b"text");
        rt.file("usr/share/rt-tests/notes", b"text");
        libc.link(
            "lib/ld-linux-aarch64.so.1",
            "aarch64-linux-gnu/ld-linux-aarch64.so.1",
        );
        libc.file(
            "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
            &elf::tests::synthetic_elf(None, &[]),
        );
        libc.file(
            "lib/aarch64-linux-gnu/libc.so.6",
            &elf::tests::synthetic_elf(None, &["ld-linux-aarch64.so.1"]),
        );
        numa.link("usr/lib/aarch64-linux-gnu/libnuma.so.1", "libnuma.so.1.0.0");
        numa.file(
            "usr/lib/aarch64-linux-gnu/libnuma.so.1.0.0",
            &elf::tests::synthetic_elf(None, &["libc.so.6"]),
        );
        gcc.file(
            "lib/aarch64-linux-gnu/libgcc_s.so.1",
            &elf::tests::synthetic_elf(None, &["libc.so.6"]),
        );
        unused.file("usr/lib/aarch64-linux-gnu/libunused.so.1", b"\x7fELF");

        let pool = [&rt, &libc, &numa, &gcc, &unused]
            .map(|s| s.0.clone())
            .to_vec();
        let mut rootfs = Rootfs::new(pool);
        rootfs.add_tree(&rt.0).unwrap();
        rootfs.resolve_libraries().unwrap();
        let paths: Vec<&str> = rootfs.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "lib",
                "lib/aarch64-linux-gnu",
                "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
                "lib/aarch64-linux-gnu/libc.so.6",
                "lib/aarch64-linux-gnu/libgcc_s.so.1",
                "lib/ld-linux-aarch64.so.1",
                "usr",
                "usr/bin",
                "usr/bin/cyclictest",
                "usr/lib",
                "usr/lib/aarch64-linux-gnu",
                "usr/lib/aarch64-linux-gnu/libnuma.so.1",
                "usr/lib/aarch64-linux-gnu/libnuma.so.1.0.0",
                "usr/share",
                "usr/share/rt-tests",
                "usr/share/rt-tests/notes",
            ]
        );
        assert_eq!(
            rootfs.nodes["lib/ld-linux-aarch64.so.1"],
            Node::Symlink("aarch64-linux-gnu/ld-linux-aarch64.so.1".into())
        );
    }

    #[test]
    fn missing_library_is_a_clear_error() {
        let rt = Scratch::new("missing");
        rt.file(
            "usr/bin/hackbench",
            &elf::tests::synthetic_elf(None, &["libnope.so.9"]),
        );
        rt.file("lib/aarch64-linux-gnu/libgcc_s.so.1", b"not elf");
        let mut rootfs = Rootfs::new(vec![rt.0.clone()]);
        rootfs.add_tree(&rt.0).unwrap();
        let err = format!("{:#}", rootfs.resolve_libraries().unwrap_err());
        assert!(
            err.contains("libnope.so.9 (needed by /usr/bin/hackbench)"),
            "{err}"
        );
    }

    #[test]
    fn generated_files_and_archive() {
        let out = Scratch::new("cpio");
        let mut rootfs = Rootfs::new(Vec::new());
        rootfs.add_generated_files();
        assert!(matches!(rootfs.nodes["init"], Node::Generated(_, 0o755)));
        assert!(rootfs.nodes.contains_key("guest/cyclictest"));
        assert_eq!(rootfs.nodes["dev/console"], Node::CharDevice(5, 1));
        let path = out.0.join("initramfs.cpio");
        let size = rootfs.write_cpio(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert!(bytes.starts_with(b"070701"));
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn no_core_command_line() {
        let qemu = Qemu::for_tests();
        let boot = NoCoreBoot {
            kernel: Path::new("/c/Image"),
            initrd: Path::new("/c/initramfs.cpio"),
            append: "console=ttyAMA0 guest.script=uname",
            cpus: 4,
            extra_args: &[],
        };
        assert_eq!(
            crate::process::describe(&boot.command(&qemu)),
            "qemu-system-aarch64 -machine virt,gic-version=3 -cpu cortex-a72 -smp 4 -m 1G \
             -nodefaults -display none -no-reboot \
             -serial mon:stdio -kernel /c/Image -append 'console=ttyAMA0 guest.script=uname' \
             -initrd /c/initramfs.cpio"
        );
    }
}
