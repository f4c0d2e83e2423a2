//! A hostile guest kernel for the watchdog's boot limit: a valid arm64 `Image` header whose
//! first instructions mask every exception and wait for ever (`WFI` in a loop), so the guest
//! never enables its timer or GIC and never completes a single interrupt.
//!
//! Why `WFI` rather than a bare `b .`: the hang is the same to the core (nothing in flight,
//! nothing completed), but under `-icount` QEMU executes a one-instruction loop a block at
//! a time, some 30 times slower than real time, while a CPU in `WFI` lets virtual time jump
//! to the next timer: the case's 42 s of virtual time then take seconds, not 20 minutes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The image's size (one 4 KiB page; also its header's `image_size`).
const SIZE: usize = 4096;
/// `b #0x40`: from the header's first word over the header to the code.
const BRANCH_OVER_HEADER: u32 = 0x1400_0010;
/// `msr daifset, #0xf`: mask debug, SError, IRQ and FIQ.
const MASK_ALL: u32 = 0xd503_4fdf;
/// `wfi`: wait for an interrupt (the core's own still arrive at EL2).
const WAIT: u32 = 0xd503_207f;
/// `b .-4`: back to the `wfi`.
const BACK_TO_WAIT: u32 = 0x17ff_ffff;
/// Where the code starts: right after the 64-byte header.
const CODE_OFFSET: usize = 0x40;
/// Header flags: little-endian, 4 KiB pages, may be placed anywhere.
const FLAGS: u64 = 0b1010;
/// The header's magic, "ARM\x64", at offset 0x38.
const MAGIC: &[u8; 4] = b"ARMd";

/// The image's bytes.
pub fn image() -> Vec<u8> {
    let mut bytes = vec![0u8; SIZE];
    bytes[0..4].copy_from_slice(&BRANCH_OVER_HEADER.to_le_bytes());
    // text_offset (0x08) stays 0.
    bytes[0x10..0x18].copy_from_slice(&(SIZE as u64).to_le_bytes());
    bytes[0x18..0x20].copy_from_slice(&FLAGS.to_le_bytes());
    bytes[0x38..0x3c].copy_from_slice(MAGIC);
    bytes[CODE_OFFSET..CODE_OFFSET + 4].copy_from_slice(&MASK_ALL.to_le_bytes());
    bytes[CODE_OFFSET + 4..CODE_OFFSET + 8].copy_from_slice(&WAIT.to_le_bytes());
    bytes[CODE_OFFSET + 8..CODE_OFFSET + 12].copy_from_slice(&BACK_TO_WAIT.to_le_bytes());
    bytes
}

/// Writes the image, as the kernel of a guest bundle without initramfs
/// ([`platform::guest_bundle`]), into `dir` and returns the bundle's path.
pub fn write_bundle(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("early-hang.bundle");
    fs::write(&path, platform::guest_bundle::write(&image(), &[], "")).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn is_an_image_whose_entry_branches_to_a_masked_wait_loop() {
        let bytes = image();
        assert_eq!(&bytes[0x38..0x3c], MAGIC);
        assert_eq!(u64::from_le_bytes(bytes[0x10..0x18].try_into().unwrap()), SIZE as u64);
        // B's imm26 counts words: the entry lands on the code.
        assert_eq!((word(&bytes, 0) & 0x03ff_ffff) as usize * 4, CODE_OFFSET);
        assert_eq!(word(&bytes, 0) >> 26, 0b000101, "B opcode");
        assert_eq!(word(&bytes, CODE_OFFSET), MASK_ALL);
        assert_eq!(word(&bytes, CODE_OFFSET + 4), WAIT);
        // imm26 of -1 word: back to the WFI.
        assert_eq!(word(&bytes, CODE_OFFSET + 8) >> 26, 0b000101, "B opcode");
        assert_eq!(word(&bytes, CODE_OFFSET + 8) & 0x03ff_ffff, 0x03ff_ffff);
    }
}
