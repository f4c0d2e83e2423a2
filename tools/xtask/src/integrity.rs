//! Cached files that can be trusted: SHA-256 and size checks (against Debian's `Packages`
//! index, or a hash recorded when the file was made), and temporary names unique to one
//! xtask process, so concurrent runs sharing the cache never write the same `.partial` file
//! and a file is published only whole, by an atomic rename.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::process;

/// What a file must be: its size in bytes and its SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The SHA-256 (lowercase hex) of the file at `path`, by `sha256sum`.
pub fn sha256(path: &Path) -> Result<String> {
    let text = process::output(Command::new("sha256sum").arg("--").arg(path))?;
    let hash = text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("sha256sum printed no hash for {}: {text}", path.display());
    }
    Ok(hash)
}

/// The size and SHA-256 of the file at `path`.
pub fn digest(path: &Path) -> Result<Digest> {
    let size = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len();
    Ok(Digest { size, sha256: sha256(path)? })
}

/// Whether the file at `path` is `expected` (the size is checked first: cheap).
pub fn matches(path: &Path, expected: &Digest) -> Result<bool> {
    let size = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len();
    Ok(size == expected.size && sha256(path)?.eq_ignore_ascii_case(&expected.sha256))
}

/// Where the digest recorded for `path` is kept (`<path>.sha256`).
fn record_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Records the digest of the file `made` (by xtask, still at its staging name) for the
/// name it will be published as, `path` (record first, then rename: a reader never finds a
/// new file with an old record).
pub fn record(made: &Path, path: &Path) -> Result<()> {
    let digest = digest(made)?;
    let record = record_path(path);
    let staging = unique_temp(&record);
    fs::write(&staging, format!("{} {}\n", digest.sha256, digest.size))
        .with_context(|| format!("cannot write {}", staging.display()))?;
    fs::rename(&staging, &record).with_context(|| format!("cannot write {}", record.display()))
}

/// Whether the file at `path` exists and still has the digest recorded for it; a file with
/// no (readable) record does not count as intact.
pub fn intact(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(record_path(path)) else { return false };
    let mut words = text.split_whitespace();
    let (Some(sha256), Some(Ok(size))) = (words.next(), words.next().map(str::parse::<u64>)) else { return false };
    matches(path, &Digest { size, sha256: sha256.to_owned() }).unwrap_or(false)
}

/// A name next to `path` for staging it, unique to this process and call
/// (`.<name>.<pid>-<time>-<n>.partial`), so concurrent runs never share one.
pub fn unique_temp(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = path.file_name().map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{nanos}-{n}.partial", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-integrity-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hashes_and_checks_sizes() {
        let dir = scratch("hash");
        let file = dir.join("abc");
        fs::write(&file, "abc").unwrap();
        let expected = Digest {
            size: 3,
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        };
        assert_eq!(digest(&file).unwrap(), expected);
        assert!(matches(&file, &expected).unwrap());
        assert!(!matches(&file, &Digest { size: 4, ..expected.clone() }).unwrap());
        fs::write(&file, "abd").unwrap();
        assert!(!matches(&file, &expected).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recorded_files_are_intact_until_changed() {
        let dir = scratch("record");
        let file = dir.join("initramfs.cpio");
        fs::write(&file, "archive").unwrap();
        assert!(!intact(&file), "no record yet");
        record(&file, &file).unwrap();
        assert!(intact(&file));
        fs::write(&file, "archivX").unwrap();
        assert!(!intact(&file), "same size, other content");
        fs::write(&file, "arch").unwrap();
        assert!(!intact(&file), "truncated");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unique_and_beside_the_file() {
        let path = Path::new("/cache/guest/initramfs-1.cpio");
        let (a, b) = (unique_temp(path), unique_temp(path));
        assert_ne!(a, b);
        assert_eq!(a.parent(), path.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".initramfs-1.cpio.") && name.ends_with(".partial"), "{name}");
    }
}
