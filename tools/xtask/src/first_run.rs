//! The `first-run-toolchain` test step: a newcomer's machine, where the pinned toolchain is
//! installed but lacks the bare-metal target and `llvm-tools`, must get them from the first
//! `cargo xtask` command.
//!
//! The step keeps a scratch `RUSTUP_HOME` under `target/first-run/` holding the pinned
//! channel as rustup's `minimal` profile installs it, removes the target and `llvm-tools`
//! from it before every check (so the check always starts from the newcomer's state, even
//! when a previous run completed it), then runs `cargo xtask toolchain` through rustup's
//! `cargo` proxy — the path on which `RUSTUP_TOOLCHAIN` used to hide `rust-toolchain.toml`
//! from `rustup toolchain install` — and requires the target to be installed afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::paths::workspace_root;
use crate::process;
use crate::toolchain::{self, TARGET};

/// The scratch rustup home.
fn scratch_home() -> PathBuf {
    workspace_root().join("target/first-run/rustup-home")
}

/// A `rustup` command working on the scratch home, outside any toolchain override a parent
/// cargo set.
fn rustup(home: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.env("RUSTUP_HOME", home)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
        .current_dir(workspace_root());
    cmd
}

/// Whether the scratch home's pinned toolchain has the bare-metal target.
fn has_target(home: &Path, channel: &str) -> Result<bool> {
    let mut list = rustup(home);
    list.args(["target", "list", "--installed", "--toolchain", channel]);
    Ok(process::output(&mut list)?.lines().any(|line| line.trim() == TARGET))
}

/// Runs the check; an error says what a newcomer would have seen.
pub fn check() -> Result<()> {
    let channel = toolchain::pinned_channel()?;
    let home = scratch_home();
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let mut installed = rustup(&home);
    installed.args(["toolchain", "list"]);
    let has_channel = process::output(&mut installed)?.lines().any(|line| line.starts_with(&channel));
    if has_channel {
        // Back to the newcomer's state: the toolchain without what rust-toolchain.toml adds.
        let mut remove_target = rustup(&home);
        remove_target.args(["target", "remove", "--toolchain", &channel, TARGET]);
        let _ = process::output(&mut remove_target);
        let mut remove_tools = rustup(&home);
        remove_tools.args(["component", "remove", "--toolchain", &channel, "llvm-tools"]);
        let _ = process::output(&mut remove_tools);
    } else {
        let mut install = rustup(&home);
        install.args(["toolchain", "install", &channel, "--profile", "minimal", "--no-self-update"]);
        process::run(&mut install)?;
    }
    ensure!(!has_target(&home, &channel)?, "could not set up a {channel} toolchain without {TARGET}");

    // What the newcomer types, through rustup's proxy (not the `cargo` running this xtask).
    let mut first_command = Command::new("cargo");
    first_command
        .args(["xtask", "toolchain"])
        .env("RUSTUP_HOME", &home)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .current_dir(workspace_root());
    process::run(&mut first_command).context("`cargo xtask toolchain` on a toolchain without the target")?;
    ensure!(
        has_target(&home, &channel)?,
        "`cargo xtask toolchain` succeeded but {channel} still lacks {TARGET}"
    );
    Ok(())
}
