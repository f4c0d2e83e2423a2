//! `cargo xtask image --board qemu-virt|rpi4|imx8 [--out DIR]`: the folder a user copies to a
//! board's boot medium (docs/boards.md, "Flashing"): the core's image, the guest bundle
//! (Debian's guest kernel, the project's initramfs and the guest's command line, in one file
//! the core finds through the device tree's `/chosen`), the board's device tree from Debian's
//! kernel package, and what the board's loader reads: the Raspberry Pi's firmware,
//! `config.txt` and `cmdline.txt`; a U-Boot script for the i.MX 8M Plus EVK; for QEMU virt
//! the core's command line and a U-Boot script too (QEMU's `-bios` U-Boot boots it as a board's
//! U-Boot would).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::assets::Assets;
use crate::debian::PrivateApt;
use crate::guest::{self, Guest, init::Load};
use crate::image::Board;
use crate::linux_package::LinuxPackage;
use crate::process;

/// The guest bundle's file name in every folder.
pub const BUNDLE: &str = "guest.bundle";
/// The file holding the core's command line (the Pi's firmware reads it; QEMU's `-append`
/// gets it).
pub const CMDLINE: &str = "cmdline.txt";
/// Debian's package of the Raspberry Pi's boot firmware (component non-free-firmware).
const RASPI_FIRMWARE: &str = "raspi-firmware";
/// Where that package keeps the files the Pi's boot ROM and firmware load.
const RASPI_FIRMWARE_DIR: &str = "usr/lib/raspi-firmware";
/// Where the Pi's firmware loads the bundle: 128 MiB, where QEMU's `raspi4b` puts an
/// `-initrd` too. Not `followkernel`: the firmware would put it right after kernel8.img's
/// bytes, inside the core's BSS, which the core clears as it starts.
pub const RPI4_BUNDLE_ADDRESS: u64 = 0x0800_0000;
/// Where the U-Boot script loads the core (the EVK's RAM, as QEMU virt's, starts at
/// 0x40000000; `booti` moves the core to its own `text_offset` if needed).
const UBOOT_CORE_ADDRESS: u64 = 0x4048_0000;
/// Where it loads the board's device tree.
const UBOOT_DTB_ADDRESS: u64 = 0x4300_0000;
/// Where it loads the guest bundle.
const UBOOT_BUNDLE_ADDRESS: u64 = 0x4400_0000;
// A board's tree fits between the two (16 MiB; the EVK's is 75 KiB).
const _: () = assert!(UBOOT_BUNDLE_ADDRESS - UBOOT_DTB_ADDRESS >= 16 << 20);
/// The U-Boot script's source.
pub const UBOOT_SCRIPT: &str = "boot.cmd";
/// The U-Boot script in `mkimage`'s form, which `source` and distro boot read.
pub const UBOOT_IMAGE: &str = "boot.scr";

/// What the folder's guest runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The board.
    pub board: Board,
    /// The guest's script (`guest.script=`).
    pub script: String,
    /// The latency test's and the script's length, seconds.
    pub duration_s: u64,
    /// The load beside cyclictest.
    pub load: Load,
    /// More core arguments, after the folder's own (a test's nonce); usually empty.
    pub core_extra: String,
}

/// A written folder.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The folder.
    pub dir: PathBuf,
    /// The core's image in it.
    pub core: PathBuf,
    /// The guest bundle in it.
    pub bundle: PathBuf,
    /// The board's device tree in it (QEMU virt: none, QEMU makes its own).
    pub dtb: Option<PathBuf>,
}

/// The default folder: `target/flash/<board>/`.
pub fn default_dir(board: Board) -> PathBuf {
    crate::paths::target_dir().join("flash").join(board.name())
}

/// The core's file name in the board's folder.
fn core_name(board: Board) -> &'static str {
    match board {
        Board::Rpi4 => "kernel8.img",
        Board::QemuVirt | Board::Imx8 => "Image",
    }
}

/// The board's device tree in Debian's kernel package (under `usr/lib/linux-image-*/`).
fn dtb_in_package(board: Board) -> Option<&'static str> {
    match board {
        Board::Rpi4 => Some("broadcom/bcm2711-rpi-4-b.dtb"),
        Board::Imx8 => Some("freescale/imx8mp-evk.dtb"),
        Board::QemuVirt => None,
    }
}

/// The core's command line in a folder: the guest from the bundle (its own command line is
/// inside it), the latency test beside it for `duration_s` seconds at 1 ms.
pub fn core_cmdline(duration_s: u64) -> String {
    format!("companion.guest=bundle latmus={} latmus.period=1000", duration_s.max(1))
}

/// [`core_cmdline`] and `extra` (if any).
fn core_cmdline_with(duration_s: u64, extra: &str) -> String {
    let base = core_cmdline(duration_s);
    if extra.trim().is_empty() { base } else { format!("{base} {}", extra.trim()) }
}

/// The Raspberry Pi firmware's `config.txt` booting the core with the bundle.
pub fn config_txt(dtb: &str) -> String {
    format!(
        "# The companion core on a Raspberry Pi 4, written by `cargo xtask image --board rpi4`.\n\
         # 64-bit: the firmware's stub enters kernel8.img at EL2, as the core needs.\n\
         arm_64bit=1\n\
         kernel={kernel}\n\
         # The guest bundle, at 128 MiB (not followkernel: that is inside the core's BSS); the\n\
         # firmware names it in the device tree's /chosen (linux,initrd-start/end) for the core.\n\
         initramfs {BUNDLE} {RPI4_BUNDLE_ADDRESS:#x}\n\
         device_tree={dtb}\n\
         # The serial console on GPIO 14 (TX) and 15 (RX), 115200 8N1.\n\
         enable_uart=1\n\
         # The core's console is the PL011 (UART0); this overlay puts it on GPIO 14/15 instead of\n\
         # the mini UART. Debian ships no overlays: copy overlays/disable-bt.dtbo from the\n\
         # Raspberry Pi firmware's boot folder (docs/boards.md, \"Flashing\").\n\
         dtoverlay=disable-bt\n",
        kernel = core_name(Board::Rpi4),
    )
}

/// The U-Boot script (`boot.cmd`) loading the core `core`, the board's tree `dtb` (none: the
/// tree U-Boot itself runs with, `${fdtcontroladdr}`, as on QEMU virt) and the bundle from the
/// partition U-Boot's distro boot found the script on, and booting the core with `booti` (the
/// bundle as its ramdisk: U-Boot names it in `/chosen`). `initrd_high`/`fdt_high` keep the
/// bundle and the tree where they were loaded, low in RAM, instead of U-Boot's copies at its
/// top, where the core keeps the pristine copy guest restarts reload from.
pub fn uboot_script(bootargs: &str, core: &str, dtb: Option<&str>) -> String {
    let source = "${devtype} ${devnum}:${distro_bootpart}";
    let mut script = String::from(
        "# The companion core, written by `cargo xtask image`.\n\
         # Distro boot sets devtype, devnum and distro_bootpart; by hand: setenv devtype mmc;\n\
         # setenv devnum 1; setenv distro_bootpart 1 (the SD card's first partition).\n",
    );
    script.push_str(&format!("setenv bootargs \"{bootargs}\"\n"));
    script.push_str("setenv initrd_high 0xffffffffffffffff\nsetenv fdt_high 0xffffffffffffffff\n");
    script.push_str(&format!("load {source} {UBOOT_CORE_ADDRESS:#x} {core}\n"));
    let tree = match dtb {
        Some(name) => {
            script.push_str(&format!("load {source} {UBOOT_DTB_ADDRESS:#x} {name}\n"));
            format!("{UBOOT_DTB_ADDRESS:#x}")
        }
        None => "${fdtcontroladdr}".to_owned(),
    };
    script.push_str("# Last: booti takes the ramdisk's size from ${filesize}.\n");
    script.push_str(&format!("load {source} {UBOOT_BUNDLE_ADDRESS:#x} {BUNDLE}\n"));
    script.push_str(&format!("booti {UBOOT_CORE_ADDRESS:#x} {UBOOT_BUNDLE_ADDRESS:#x}:${{filesize}} {tree}\n"));
    script
}

/// The bundle's bytes: the guest kernel and initramfs files and the guest's command line.
fn bundle_bytes(kernel: &Path, initramfs: &Path, cmdline: &str) -> Result<Vec<u8>> {
    let read = |path: &Path| fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    Ok(platform::guest_bundle::write(&read(kernel)?, &read(initramfs)?, cmdline))
}

/// The guest bundle of `guest`'s kernel and initramfs without a command line (the core's
/// gives it, after ` -- `), for runs under QEMU: `target/guest/guest-<hash>.bundle`, named by
/// its parts' hashes, written once (atomically: concurrent runs never see half a file).
pub fn bundle_file(guest: &Guest) -> Result<PathBuf> {
    let bytes = bundle_bytes(&guest.kernel, &guest.initramfs, "")?;
    // The header holds both parts' sizes and hashes: its own hash names the contents.
    let header = bytes.get(..platform::guest_bundle::HEADER_SIZE).context("a guest bundle shorter than its header")?;
    let dir = crate::paths::target_dir().join("guest");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("guest-{:032x}.bundle", platform::guest_bundle::hash(header)));
    if fs::metadata(&path).is_ok_and(|meta| meta.len() == bytes.len() as u64) {
        return Ok(path);
    }
    let staging = crate::integrity::unique_temp(&path);
    fs::write(&staging, &bytes).with_context(|| format!("cannot write {}", staging.display()))?;
    fs::rename(&staging, &path).with_context(|| format!("cannot move {} to {}", staging.display(), path.display()))?;
    Ok(path)
}

/// Writes `contents` to `dir/name`.
fn put(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Copies `from` into `dir` under `name`.
fn copy_in(from: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::copy(from, &path).with_context(|| format!("cannot copy {} to {}", from.display(), path.display()))?;
    Ok(path)
}

/// Copies every file of Debian's `raspi-firmware` (start4.elf, fixup4.dat, ...) into `dir`;
/// returns how many.
fn copy_raspi_firmware(dir: &Path) -> Result<usize> {
    let apt = PrivateApt::arm64_non_free_firmware()?;
    let root = apt.fetch_unpacked(RASPI_FIRMWARE).context("cannot fetch the Raspberry Pi firmware")?;
    let firmware = root.join(RASPI_FIRMWARE_DIR);
    let mut copied = 0;
    for entry in fs::read_dir(&firmware).with_context(|| format!("cannot read {}", firmware.display()))? {
        let path = entry?.path();
        if let (true, Some(name)) = (path.is_file(), path.file_name().and_then(|n| n.to_str())) {
            copy_in(&path, dir, name)?;
            copied += 1;
        }
    }
    anyhow::ensure!(copied > 0, "{} holds no firmware file", firmware.display());
    Ok(copied)
}

/// Turns `boot.cmd` into the `boot.scr` U-Boot's `source` and distro boot read, if `mkimage`
/// (Debian's `u-boot-tools`) is installed; `false` if it is not.
fn compile_uboot_script(dir: &Path) -> Result<bool> {
    if Command::new("mkimage").arg("-V").output().is_err() {
        return Ok(false);
    }
    let mut mkimage = Command::new("mkimage");
    mkimage.args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "companion core", "-d"]);
    mkimage.arg(dir.join(UBOOT_SCRIPT)).arg(dir.join(UBOOT_IMAGE));
    process::output(&mut mkimage)?;
    Ok(true)
}

/// Writes `boot.cmd` and, where `mkimage` is installed, `boot.scr`.
fn write_uboot_script(dir: &Path, bootargs: &str, core: &str, dtb: Option<&str>) -> Result<()> {
    put(dir, UBOOT_SCRIPT, uboot_script(bootargs, core, dtb).as_bytes())?;
    if !compile_uboot_script(dir)? {
        eprintln!(
            "xtask: no mkimage here (Debian's u-boot-tools): boot.scr not written; on the board, type \
             boot.cmd's lines at the U-Boot prompt, or run `mkimage -T script -d boot.cmd boot.scr`"
        );
    }
    Ok(())
}

/// Writes the folder for `options.board` into `dir` (created if needed; files of the same
/// names are replaced, others left alone).
pub fn write(assets: &mut Assets, guest: &Guest, options: &Options, dir: &Path) -> Result<Folder> {
    let board = options.board;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let core = copy_in(&assets.image(board)?.raw, dir, core_name(board))?;
    let guest_cmdline = guest::guest_cmdline(&options.script, options.duration_s, options.load);
    let bundle = put(dir, BUNDLE, &bundle_bytes(&guest.kernel, &guest.initramfs, &guest_cmdline)?)?;
    let dtb = match dtb_in_package(board) {
        Some(relative) => {
            let source = LinuxPackage::fetch()?.dtb(relative)?;
            let name = Path::new(relative).file_name().and_then(|n| n.to_str()).context("a device tree without a name")?;
            Some(copy_in(&source, dir, name)?)
        }
        None => None,
    };
    let dtb_name = dtb.as_ref().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let bootargs = core_cmdline_with(options.duration_s, &options.core_extra);
    match board {
        Board::QemuVirt => {
            put(dir, CMDLINE, format!("{bootargs}\n").as_bytes())?;
            write_uboot_script(dir, &bootargs, core_name(board), None)?;
        }
        Board::Rpi4 => {
            let files = copy_raspi_firmware(dir)?;
            eprintln!("xtask: {files} Raspberry Pi firmware files from Debian's {RASPI_FIRMWARE}");
            put(dir, "config.txt", config_txt(&dtb_name).as_bytes())?;
            put(dir, CMDLINE, format!("{bootargs}\n").as_bytes())?;
        }
        Board::Imx8 => write_uboot_script(dir, &bootargs, core_name(board), Some(&dtb_name))?,
    }
    Ok(Folder { dir: dir.to_path_buf(), core, bundle, dtb })
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::guest_bundle::Bundle;

    #[test]
    fn extra_core_arguments_follow_the_folders_own() {
        assert_eq!(core_cmdline_with(2, ""), core_cmdline(2));
        assert_eq!(core_cmdline_with(2, " companion.nonce=ab "), format!("{} companion.nonce=ab", core_cmdline(2)));
    }

    #[test]
    fn the_core_finds_its_guest_in_the_bundle_not_at_an_address() {
        let cmdline = core_cmdline(60);
        assert_eq!(cmdline, "companion.guest=bundle latmus=60 latmus.period=1000");
        assert!(!cmdline.contains(" -- "), "the guest's command line travels in the bundle");
        assert_eq!(core_cmdline(0), "companion.guest=bundle latmus=1 latmus.period=1000");
    }

    #[test]
    fn the_pi_config_boots_the_core_at_el2_with_the_bundle_and_a_uart() {
        let text = config_txt("bcm2711-rpi-4-b.dtb");
        let settings: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            settings,
            [
                "arm_64bit=1",
                "kernel=kernel8.img",
                "initramfs guest.bundle 0x8000000",
                "device_tree=bcm2711-rpi-4-b.dtb",
                "enable_uart=1",
                "dtoverlay=disable-bt"
            ]
        );
        // Nothing that would make the firmware enter the core at EL1 or at a 32-bit stub.
        assert!(!text.contains("kernel_old") && !text.contains("armstub"));
    }

    #[test]
    fn the_uboot_script_loads_the_bundle_last_and_boots_it_as_the_ramdisk() {
        let script = uboot_script("companion.guest=bundle latmus=5", "Image", Some("imx8mp-evk.dtb"));
        let commands: Vec<&str> = script.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            commands,
            [
                "setenv bootargs \"companion.guest=bundle latmus=5\"",
                "setenv initrd_high 0xffffffffffffffff",
                "setenv fdt_high 0xffffffffffffffff",
                "load ${devtype} ${devnum}:${distro_bootpart} 0x40480000 Image",
                "load ${devtype} ${devnum}:${distro_bootpart} 0x43000000 imx8mp-evk.dtb",
                "load ${devtype} ${devnum}:${distro_bootpart} 0x44000000 guest.bundle",
                "booti 0x40480000 0x44000000:${filesize} 0x43000000",
            ]
        );
        // Without a tree file: the one U-Boot runs with.
        let virt = uboot_script("x", "Image", None);
        assert!(!virt.contains(".dtb"));
        assert!(virt.lines().last().unwrap().ends_with(" ${fdtcontroladdr}"));
    }

    #[test]
    fn the_bundle_carries_the_files_and_the_guest_command_line() {
        let dir = std::env::temp_dir().join(format!("xtask-flash-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (kernel, initramfs) = (dir.join("Image"), dir.join("initramfs.cpio"));
        fs::write(&kernel, [7u8; 100]).unwrap();
        fs::write(&initramfs, b"070701 archive").unwrap();
        let cmdline = guest::guest_cmdline("uname", 1, Load::Idle);
        let bytes = bundle_bytes(&kernel, &initramfs, &cmdline).unwrap();
        let bundle = Bundle::verify(&bytes).unwrap();
        assert_eq!(bundle.kernel, &[7u8; 100][..]);
        assert_eq!(bundle.initramfs, b"070701 archive");
        assert_eq!(bundle.cmdline, cmdline);
        assert!(bundle_bytes(&dir.join("missing"), &initramfs, "").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
