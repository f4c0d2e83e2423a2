//! Where things live: the workspace, its build outputs and the per-user cache.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The workspace root: this crate lives at `<root>/tools/xtask`.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask lives two levels below the workspace root")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The directory holding the QEMU profiles (`<root>/qemu`).
pub fn profiles_dir() -> PathBuf {
    workspace_root().join("qemu")
}

/// Where `cargo xtask test` saves each QEMU case's console log.
pub fn test_logs_dir() -> PathBuf {
    target_dir().join("test-logs")
}

/// The per-user cache for downloads: `$XDG_CACHE_HOME/companion-core`,
/// else `~/.cache/companion-core`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?)
                .join(".cache")
        }
    };
    Ok(base.join("companion-core"))
}
