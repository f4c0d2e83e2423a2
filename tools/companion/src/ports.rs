//! Finding a channel's device: the virtio-console ports Linux lists under
//! `/sys/class/virtio-ports/<vportNpM>/name`, each with its device `/dev/<vportNpM>`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where Linux lists the virtio-console ports.
pub const SYSFS_PORTS: &str = "/sys/class/virtio-ports";

/// The device of the port called `name`, looked up under `sysfs` (normally
/// [`SYSFS_PORTS`]); a path (containing `/`) is taken as the device itself.
pub fn find(sysfs: &Path, name: &str) -> io::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut seen = Vec::new();
    for entry in fs::read_dir(sysfs)? {
        let entry = entry?;
        let port_name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        let port_name = port_name.trim_end_matches('\n');
        if port_name == name {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
        seen.push(port_name.to_string());
    }
    seen.sort();
    Err(io::Error::new(io::ErrorKind::NotFound, format!("no channel port named {name:?} (have: {})", seen.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_port_by_name_and_lists_the_others_when_missing() {
        let root = std::env::temp_dir().join(format!("companion-ports-{}", std::process::id()));
        for (port, name) in [("vport0p0", "companion.ctl\n"), ("vport0p1", "motor\n")] {
            fs::create_dir_all(root.join(port)).unwrap();
            fs::write(root.join(port).join("name"), name).unwrap();
        }
        assert_eq!(find(&root, "motor").unwrap(), PathBuf::from("/dev/vport0p1"));
        assert_eq!(find(&root, "/dev/hvc0").unwrap(), PathBuf::from("/dev/hvc0"));
        let err = find(&root, "nope").unwrap_err().to_string();
        assert!(err.contains("companion.ctl, motor"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }
}
