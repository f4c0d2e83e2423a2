//! The guest kernel's modules the initramfs loads for the core's oob channel device: Debian
//! builds the virtio-mmio transport (and, depending on the release, virtio itself and the
//! console driver) as modules. Each one the kernel package ships as a module file goes into
//! the initramfs (compressed as shipped); the others are built in. `/init` loads them in
//! order with busybox (`unxz`, `insmod`) before the script runs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Node, Rootfs};

/// The modules, in dependency order, relative to `lib/modules/<release>/` (without `.ko`).
const MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio",
    "kernel/drivers/virtio/virtio_ring",
    "kernel/drivers/virtio/virtio_mmio",
    "kernel/drivers/char/virtio_console",
];
/// Where they go in the initramfs, with the `order` file listing them.
pub const MODULE_DIR: &str = "lib/modules/companion";

/// The module files the kernel package at `package_root` ships, in load order.
pub fn find(package_root: &Path) -> Result<Vec<PathBuf>> {
    let modules = package_root.join("lib/modules");
    let release = fs::read_dir(&modules)
        .with_context(|| format!("cannot read {}", modules.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.is_dir())
        .with_context(|| format!("no kernel release under {}", modules.display()))?;
    let mut found = Vec::new();
    for module in MODULES {
        for suffix in [".ko", ".ko.xz"] {
            let path = release.join(format!("{module}{suffix}"));
            if path.is_file() {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// Puts `modules` and their `order` file into the initramfs.
pub fn add(rootfs: &mut Rootfs, modules: &[PathBuf]) {
    let mut order = String::new();
    for path in modules {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        rootfs.insert(&format!("{MODULE_DIR}/{name}"), Node::File(path.clone(), 0o644));
        order.push_str(&name);
        order.push('\n');
    }
    rootfs.insert(&format!("{MODULE_DIR}/order"), Node::Generated(order.into_bytes(), 0o644));
}

/// The cache key extended with the module files (their paths carry the kernel release).
pub fn key(base: &str, modules: &[PathBuf]) -> String {
    let text = modules.iter().fold(String::from(base), |text, path| text + "\n" + &path.to_string_lossy());
    format!("{:016x}", super::fnv1a(text.as_bytes()))
}

/// `/init`'s lines that load the modules listed in the `order` file.
pub fn load_script() -> String {
    format!(
        r#"if [ -f /{MODULE_DIR}/order ]; then
    for module in $(cat /{MODULE_DIR}/order); do
        case "$module" in
            *.xz) unxz -c "/{MODULE_DIR}/$module" > /tmp/module.ko && insmod /tmp/module.ko ;;
            *) insmod "/{MODULE_DIR}/$module" ;;
        esac || echo "guest: insmod $module failed"
    done
    rm -f /tmp/module.ko
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_shipped_modules_in_order_and_skips_built_in_ones() {
        let root = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let release = root.join("lib/modules/6.12.0-rt-arm64");
        fs::create_dir_all(release.join("kernel/drivers/virtio")).unwrap();
        fs::create_dir_all(release.join("kernel/drivers/char")).unwrap();
        fs::write(release.join("kernel/drivers/char/virtio_console.ko"), b"c").unwrap();
        fs::write(release.join("kernel/drivers/virtio/virtio_mmio.ko.xz"), b"m").unwrap();
        let found = find(&root).unwrap();
        let names: Vec<_> = found.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["virtio_mmio.ko.xz", "virtio_console.ko"], "dependency order, built-in ones absent");
        assert_ne!(key("k", &found), key("k", &found[..1]));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_load_script_decompresses_and_reports_failures() {
        let script = load_script();
        assert!(script.contains("unxz -c") && script.contains("insmod"));
        assert!(script.contains("guest: insmod $module failed"));
    }
}
