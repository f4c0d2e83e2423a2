//! The pinned Rust toolchain (`rust-toolchain.toml`): makes sure its
//! bare-metal target and `llvm-tools` are installed, and finds them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::paths::workspace_root;
use crate::process;

/// The bare-metal target the core is built for.
pub const TARGET: &str = "aarch64-unknown-none";

/// A `cargo` command run from the workspace root, using the same cargo that
/// runs xtask.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The installed pinned toolchain, with the tools xtask needs from it.
#[derive(Debug, Clone)]
pub struct Toolchain {
    objcopy: PathBuf,
}

impl Toolchain {
    /// Finds the pinned toolchain's pieces, running `rustup toolchain install`
    /// once if the bare-metal target or `llvm-objcopy` is missing.
    pub fn ensure_installed() -> Result<Self> {
        if let Some(toolchain) = Self::find()? {
            return Ok(toolchain);
        }
        eprintln!("xtask: the pinned toolchain lacks {TARGET} or llvm-tools; installing it");
        process::run(&mut install_pinned())?;
        Self::find()?.with_context(|| {
            format!(
                "`rustup toolchain install` did not provide {TARGET} and llvm-tools; \
                 check rust-toolchain.toml"
            )
        })
    }

    /// `llvm-objcopy` from the toolchain's `llvm-tools` component.
    pub fn objcopy(&self) -> &Path {
        &self.objcopy
    }

    /// The toolchain if it is complete, `None` if something must be installed.
    fn find() -> Result<Option<Self>> {
        let libdir = PathBuf::from(rustc(&["--print", "target-libdir", "--target", TARGET])?);
        let objcopy = PathBuf::from(rustc(&["--print", "sysroot"])?)
            .join("lib/rustlib")
            .join(host_triple()?)
            .join("bin/llvm-objcopy");
        Ok((has_libcore(&libdir) && objcopy.is_file()).then_some(Self { objcopy }))
    }
}

/// `rustup toolchain install` for the workspace's `rust-toolchain.toml`: the pinned channel
/// with its targets and components.
///
/// Under `cargo xtask`, rustup's `cargo` proxy has set `RUSTUP_TOOLCHAIN` to the pinned
/// channel's name. Left in place, it makes rustup install that *bare* toolchain (no target,
/// no components) instead of reading `rust-toolchain.toml`: the variable is removed here so
/// the file decides.
pub fn install_pinned() -> Command {
    let mut install = Command::new("rustup");
    install
        // Installing a toolchain is no reason to replace the user's rustup.
        .args(["toolchain", "install", "--no-self-update"])
        .current_dir(workspace_root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE");
    install
}

/// The channel `rust-toolchain.toml` pins (e.g. `1.95.0`).
pub fn pinned_channel() -> Result<String> {
    let path = workspace_root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    file.get("toolchain")
        .and_then(|toolchain| toolchain.get("channel"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{} names no [toolchain] channel", path.display()))
}

/// Runs the workspace's `rustc` and returns its trimmed stdout.
pub(crate) fn rustc(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("rustc");
    cmd.args(args).current_dir(workspace_root());
    Ok(process::output(&mut cmd)?.trim().to_owned())
}

/// The host triple, from `rustc -vV`.
pub fn host_triple() -> Result<String> {
    let verbose = rustc(&["-vV"])?;
    verbose
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host triple")
}

/// Whether a target library directory holds the prebuilt `core`.
fn has_libcore(libdir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(libdir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libcore-") && name.ends_with(".rlib")
    })
}
