//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst): where a kernel
//! must be placed and how big it is once running, checked before the core enters a guest.

use core::fmt;

/// The header's magic, "ARM\x64", at offset 0x38.
const MAGIC: u32 = 0x644d_5241;
/// Offset of the magic in the header.
const MAGIC_OFFSET: usize = 0x38;
/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// Flags bit 0: big-endian kernel.
const FLAG_BIG_ENDIAN: u64 = 1 << 0;
/// Flags bits 2:1: page size (0 unspecified, 1 4K, 2 16K, 3 64K).
const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
/// Flags bit 3: the image may be placed anywhere (2 MiB aligned) in memory.
const FLAG_PLACE_ANYWHERE: u64 = 1 << 3;
/// Alignment of the base an image is placed at (`text_offset` above it).
pub const IMAGE_BASE_ALIGN: u64 = 2 << 20;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image above a 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes the running kernel occupies from its start (BSS included); 0 in very old kernels.
    pub image_size: u64,
    /// Page size the kernel uses, in bytes, if the header says.
    pub page_size: Option<u64>,
    /// Whether the image may be placed anywhere in memory.
    pub place_anywhere: bool,
}

/// Why a blob is not a bootable arm64 Linux image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer bytes than a header.
    Truncated,
    /// No "ARM\x64" magic.
    BadMagic,
    /// A big-endian kernel (the core runs little-endian guests only).
    BigEndian,
    /// The image is not at `2 MiB aligned base + text_offset`.
    Misplaced {
        /// Where it is.
        address: u64,
        /// Its text offset.
        text_offset: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "shorter than an arm64 Image header"),
            Self::BadMagic => write!(f, "no arm64 Image magic (\"ARM\\x64\" at offset 0x38)"),
            Self::BigEndian => write!(f, "a big-endian kernel"),
            Self::Misplaced { address, text_offset } => write!(
                f,
                "loaded at {address:#x}, but it must sit {text_offset:#x} above a 2 MiB aligned address"
            ),
        }
    }
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

impl ImageHeader {
    /// Reads the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_SIZE {
            return Err(ImageError::Truncated);
        }
        let magic = u32::from_le_bytes([bytes[MAGIC_OFFSET], bytes[MAGIC_OFFSET + 1], bytes[MAGIC_OFFSET + 2], bytes[MAGIC_OFFSET + 3]]);
        if magic != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let (text_offset, image_size, flags) = (u64_at(bytes, 8), u64_at(bytes, 16), u64_at(bytes, 24));
        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(ImageError::BigEndian);
        }
        let page_size = match (flags >> FLAG_PAGE_SIZE_SHIFT) & 0b11 {
            1 => Some(4 << 10),
            2 => Some(16 << 10),
            3 => Some(64 << 10),
            _ => None,
        };
        Ok(Self { text_offset, image_size, page_size, place_anywhere: flags & FLAG_PLACE_ANYWHERE != 0 })
    }

    /// Where an image loaded at `address` must run from: `address` itself when it already sits
    /// `text_offset` above a 2 MiB aligned base, otherwise the lowest such place above it (less
    /// than 2 MiB higher), to which the caller moves the image's `image_size` bytes. A loader
    /// that knows nothing of `text_offset` (QEMU's generic loader, U-Boot's `load`) puts an
    /// image at a round address; booting it there would be wrong for any `text_offset` but 0.
    /// An image that cannot say how big it is (`image_size` 0, pre-3.17 kernels) or whose
    /// `text_offset` is not below 2 MiB can only be booted where it already is.
    pub fn run_address(&self, address: u64) -> Result<u64, ImageError> {
        let misplaced = ImageError::Misplaced { address, text_offset: self.text_offset };
        if address >= self.text_offset && (address - self.text_offset).is_multiple_of(IMAGE_BASE_ALIGN) {
            return Ok(address);
        }
        if self.image_size == 0 || self.text_offset >= IMAGE_BASE_ALIGN {
            return Err(misplaced);
        }
        let base = (address / IMAGE_BASE_ALIGN) * IMAGE_BASE_ALIGN;
        let at = base + self.text_offset;
        let at = if at < address { at.checked_add(IMAGE_BASE_ALIGN).ok_or(misplaced)? } else { at };
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARMd");
        h
    }

    #[test]
    fn reads_a_debian_kernel_header() {
        // Debian 6.12 rt-arm64: text_offset 0, image_size 0x2b10000, flags 0xa (LE, 4K, anywhere).
        let parsed = ImageHeader::parse(&header(0, 0x2b1_0000, 0xa)).unwrap();
        assert_eq!(parsed, ImageHeader { text_offset: 0, image_size: 0x2b1_0000, page_size: Some(4096), place_anywhere: true });
        assert_eq!(parsed.run_address(0x5000_0000), Ok(0x5000_0000));
        assert_eq!(parsed.run_address(0x5000_1000), Ok(0x5020_0000));
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::Truncated));
        assert_eq!(ImageHeader::parse(&[0; 64]), Err(ImageError::BadMagic));
        assert_eq!(ImageHeader::parse(&header(0, 0, 1)), Err(ImageError::BigEndian));
        // A pre-3.17 kernel (no image_size) can only run where it was put.
        let old = ImageHeader::parse(&header(0x80000, 0, 0)).unwrap();
        assert_eq!(old.run_address(0x4008_0000), Ok(0x4008_0000));
        assert_eq!(old.run_address(0x4000_0000), Err(ImageError::Misplaced { address: 0x4000_0000, text_offset: 0x80000 }));
        assert!(old.run_address(0x1000).is_err());
        let huge_offset = ImageHeader::parse(&header(IMAGE_BASE_ALIGN, 0x10_0000, 0)).unwrap();
        assert!(huge_offset.run_address(0x5000_0000 + 0x1000).is_err());
        let at_the_top = ImageHeader::parse(&header(0x80000, 0x10_0000, 0)).unwrap();
        assert!(at_the_top.run_address(u64::MAX - 0x1000).is_err());
    }

    #[test]
    fn an_image_with_a_text_offset_runs_that_far_above_a_round_load_address() {
        // Debian 6.1's and any self-built kernel with TEXT_OFFSET 0x80000, put at 0x50000000.
        let image = ImageHeader::parse(&header(0x80000, 0x200_0000, 0xa)).unwrap();
        assert_eq!(image.run_address(0x5000_0000), Ok(0x5008_0000));
        assert_eq!(image.run_address(0x5008_0000), Ok(0x5008_0000));
        // Past the offset within its 2 MiB: the next base.
        assert_eq!(image.run_address(0x5009_0000), Ok(0x5028_0000));
        assert_eq!(image.run_address(0x1000), Ok(0x8_0000));
    }
}
