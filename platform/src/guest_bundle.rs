//! The guest bundle: one file carrying the Linux guest's kernel `Image`, its initramfs and
//! optionally its command line, so that a board's loader needs to place only one file
//! beside the core (the Raspberry Pi firmware's `initramfs FILE followkernel`, U-Boot's
//! `booti` ramdisk, QEMU's `-initrd`) and the core finds it through the device tree's
//! `/chosen` `linux,initrd-start`/`linux,initrd-end` (docs/boards.md).
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! | ------ | ---- | ----- |
//! | 0      | 8    | magic [`MAGIC`] |
//! | 8      | 4    | version ([`VERSION`]) |
//! | 12     | 4    | header size ([`HEADER_SIZE`]) |
//! | 16     | 32×3 | the kernel, initramfs and command line, each: offset u64, size u64, XXH3-128 u128 |
//!
//! Each part starts on a [`PART_ALIGN`] boundary of the file at or after the header, and no
//! two parts overlap. The kernel is required; the initramfs and the command line may be
//! empty (size 0, offset 0, hash 0).

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::MemoryRange;
use crate::linux_image::IMAGE_BASE_ALIGN;

/// The bundle's magic: its first eight bytes.
pub const MAGIC: [u8; 8] = *b"CCGUEST\0";
/// The layout version this parser reads.
pub const VERSION: u32 = 1;
/// Bytes of a version-1 header.
pub const HEADER_SIZE: usize = 16 + PART_COUNT * PART_ENTRY_SIZE;
/// Every part starts on a multiple of this in the file (a page: the initramfs can stay where
/// the loader put the bundle).
pub const PART_ALIGN: u64 = 4096;
/// Bytes of one part's entry in the header.
const PART_ENTRY_SIZE: usize = 32;
/// Parts a version-1 bundle has.
const PART_COUNT: usize = 3;
/// Offset of the first part entry.
const PARTS_OFFSET: usize = 16;

/// A part of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// The arm64 Linux kernel `Image`.
    Kernel,
    /// The initramfs (a cpio archive, possibly compressed).
    Initramfs,
    /// The guest's command line (UTF-8, no NUL).
    CommandLine,
}

impl PartKind {
    /// The parts in header order.
    pub const ALL: [PartKind; PART_COUNT] = [PartKind::Kernel, PartKind::Initramfs, PartKind::CommandLine];

    /// The part's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Initramfs => "initramfs",
            Self::CommandLine => "command line",
        }
    }
}

/// One part's entry in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Part {
    /// Offset from the bundle's start.
    pub offset: u64,
    /// Size in bytes (0: absent).
    pub size: u64,
    /// XXH3-128 of its bytes.
    pub hash: u128,
}

impl Part {
    /// Its bytes within the bundle, as offsets.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.size
    }
}

/// Why bytes are not a usable guest bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    /// Fewer bytes than a header.
    Truncated {
        /// Bytes there are.
        len: u64,
    },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic,
    /// A version this parser does not read.
    UnsupportedVersion(u32),
    /// The header size field is not the version's.
    BadHeaderSize(u32),
    /// The bundle has no kernel.
    NoKernel,
    /// A part does not start on a [`PART_ALIGN`] boundary.
    Misaligned(PartKind),
    /// A part starts inside the header.
    InsideHeader(PartKind),
    /// A part ends past the bundle's end.
    PastEnd {
        /// The part.
        part: PartKind,
        /// Where it ends (saturated on overflow).
        end: u64,
        /// The bundle's length.
        len: u64,
    },
    /// Two parts overlap.
    Overlap(PartKind, PartKind),
    /// A part's bytes do not have the hash the header gives.
    HashMismatch(PartKind),
    /// The command line is not UTF-8 or holds a NUL.
    BadCommandLine,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "{len} bytes, shorter than a bundle header ({HEADER_SIZE} bytes)"),
            Self::BadMagic => write!(f, "not a guest bundle (no \"CCGUEST\" magic)"),
            Self::UnsupportedVersion(v) => write!(f, "bundle version {v}, this core reads version {VERSION}"),
            Self::BadHeaderSize(size) => write!(f, "header size {size}, version {VERSION} has {HEADER_SIZE}"),
            Self::NoKernel => write!(f, "the bundle has no kernel"),
            Self::Misaligned(part) => write!(f, "the {} does not start on a {PART_ALIGN}-byte boundary", part.name()),
            Self::InsideHeader(part) => write!(f, "the {} starts inside the header", part.name()),
            Self::PastEnd { part, end, len } => {
                write!(f, "the {} ends at byte {end}, past the bundle's {len} bytes", part.name())
            }
            Self::Overlap(a, b) => write!(f, "the {} and the {} overlap", a.name(), b.name()),
            Self::HashMismatch(part) => write!(f, "the {}'s XXH3-128 hash does not match the header's", part.name()),
            Self::BadCommandLine => write!(f, "the command line is not UTF-8 text without NUL"),
        }
    }
}

/// A parsed bundle header whose parts all lie inside the bundle, apart from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleHeader {
    /// The kernel `Image`.
    pub kernel: Part,
    /// The initramfs (size 0: none).
    pub initramfs: Part,
    /// The guest command line (size 0: none).
    pub cmdline: Part,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u128_at(bytes: &[u8], at: usize) -> u128 {
    let mut word = [0u8; 16];
    word.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(word)
}

impl BundleHeader {
    /// Reads the header at the start of `header` (at least [`HEADER_SIZE`] bytes, or the
    /// whole bundle if shorter) of a bundle `len` bytes long, and checks its layout. The
    /// hashes are checked by [`Self::check_hashes`].
    pub fn parse(header: &[u8], len: u64) -> Result<Self, BundleError> {
        if header.len() < HEADER_SIZE || len < HEADER_SIZE as u64 {
            return Err(BundleError::Truncated { len: len.min(header.len() as u64) });
        }
        if header[..MAGIC.len()] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u32_at(header, 8);
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let header_size = u32_at(header, 12);
        if header_size as usize != HEADER_SIZE {
            return Err(BundleError::BadHeaderSize(header_size));
        }
        let part = |index: usize| {
            let at = PARTS_OFFSET + index * PART_ENTRY_SIZE;
            Part { offset: u64_at(header, at), size: u64_at(header, at + 8), hash: u128_at(header, at + 16) }
        };
        let parsed = Self { kernel: part(0), initramfs: part(1), cmdline: part(2) };
        if parsed.kernel.size == 0 {
            return Err(BundleError::NoKernel);
        }
        for kind in PartKind::ALL {
            let part = parsed.part(kind);
            if part.size == 0 {
                continue;
            }
            if !part.offset.is_multiple_of(PART_ALIGN) {
                return Err(BundleError::Misaligned(kind));
            }
            if part.offset < HEADER_SIZE as u64 {
                return Err(BundleError::InsideHeader(kind));
            }
            let end = part.offset.saturating_add(part.size);
            if end > len {
                return Err(BundleError::PastEnd { part: kind, end, len });
            }
        }
        for (i, a) in PartKind::ALL.iter().enumerate() {
            for b in &PartKind::ALL[i + 1..] {
                let (x, y) = (parsed.part(*a), parsed.part(*b));
                if x.size != 0 && y.size != 0 && x.offset < y.range().end && y.offset < x.range().end {
                    return Err(BundleError::Overlap(*a, *b));
                }
            }
        }
        Ok(parsed)
    }

    /// The entry of `kind`.
    pub fn part(&self, kind: PartKind) -> Part {
        match kind {
            PartKind::Kernel => self.kernel,
            PartKind::Initramfs => self.initramfs,
            PartKind::CommandLine => self.cmdline,
        }
    }

    /// Checks every present part of `bundle` (the whole bundle this header was parsed from)
    /// against its hash, computing each with `hash` (XXH3-128 of the bytes; the core passes
    /// one that yields to its console between chunks).
    pub fn check_hashes(&self, bundle: &[u8], mut hash: impl FnMut(&[u8]) -> u128) -> Result<(), BundleError> {
        for kind in PartKind::ALL {
            let part = self.part(kind);
            if part.size != 0 && hash(self.bytes(bundle, kind)) != part.hash {
                return Err(BundleError::HashMismatch(kind));
            }
        }
        Ok(())
    }

    /// The bytes of `kind` in `bundle` (empty if absent). `bundle` is the bundle the header
    /// was parsed from: [`Self::parse`] checked every part lies inside it.
    pub fn bytes<'a>(&self, bundle: &'a [u8], kind: PartKind) -> &'a [u8] {
        let range = self.part(kind).range();
        bundle.get(range.start as usize..range.end as usize).unwrap_or(&[])
    }
}

/// A bundle checked whole: layout and hashes.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    /// Its header.
    pub header: BundleHeader,
    /// The kernel `Image`.
    pub kernel: &'a [u8],
    /// The initramfs (empty: none).
    pub initramfs: &'a [u8],
    /// The guest command line (empty: none).
    pub cmdline: &'a str,
}

impl<'a> Bundle<'a> {
    /// Parses `bundle` and checks its parts' hashes with `hash` (see
    /// [`BundleHeader::check_hashes`]).
    pub fn open(bundle: &'a [u8], hash: impl FnMut(&[u8]) -> u128) -> Result<Self, BundleError> {
        let header = BundleHeader::parse(bundle, bundle.len() as u64)?;
        header.check_hashes(bundle, hash)?;
        let cmdline = core::str::from_utf8(header.bytes(bundle, PartKind::CommandLine))
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or(BundleError::BadCommandLine)?;
        Ok(Self {
            header,
            kernel: header.bytes(bundle, PartKind::Kernel),
            initramfs: header.bytes(bundle, PartKind::Initramfs),
            cmdline,
        })
    }

    /// [`Self::open`] with the one-shot XXH3-128.
    pub fn verify(bundle: &'a [u8]) -> Result<Self, BundleError> {
        Self::open(bundle, hash)
    }
}

/// XXH3-128 of `bytes`, the bundle's part hash.
pub fn hash(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// Writes a bundle of `kernel`, `initramfs` and `cmdline` (either may be empty), each part
/// on a [`PART_ALIGN`] boundary.
pub fn write(kernel: &[u8], initramfs: &[u8], cmdline: &str) -> Vec<u8> {
    let parts: [&[u8]; PART_COUNT] = [kernel, initramfs, cmdline.as_bytes()];
    let mut out = Vec::with_capacity(HEADER_SIZE + parts.iter().map(|p| p.len() + PART_ALIGN as usize).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    let mut at = (HEADER_SIZE as u64).next_multiple_of(PART_ALIGN);
    for part in parts {
        let (offset, size) = if part.is_empty() { (0, 0) } else { (at, part.len() as u64) };
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(if part.is_empty() { 0 } else { hash(part) }).to_le_bytes());
        at = (at + size).next_multiple_of(PART_ALIGN);
    }
    for part in parts.iter().filter(|p| !p.is_empty()) {
        out.resize((out.len() as u64).next_multiple_of(PART_ALIGN) as usize, 0);
        out.extend_from_slice(part);
    }
    out
}

/// Where to run a kernel taken out of a bundle: the lowest address `text_offset` above a
/// 2 MiB boundary in one of `memory`'s ranges such that the kernel's `size` bytes (BSS
/// included) and the 2 MiB below that boundary (where the core puts the guest's device tree)
/// lie inside that range and clear of `avoid` (the bundle itself, whose initramfs stays in
/// place). `None` if nowhere fits.
pub fn place_kernel(memory: &[MemoryRange], avoid: MemoryRange, text_offset: u64, size: u64) -> Option<u64> {
    if text_offset >= IMAGE_BASE_ALIGN {
        return None;
    }
    let overlaps = |start: u64, end: u64| start < avoid.end() && avoid.base < end;
    let mut ranges: Vec<MemoryRange> = memory.to_vec();
    ranges.sort_by_key(|m| m.base);
    for range in ranges {
        // The tree's 2 MiB below the base, inside the range.
        let mut base = range.base.checked_add(IMAGE_BASE_ALIGN)?.next_multiple_of(IMAGE_BASE_ALIGN);
        loop {
            let tree = base - IMAGE_BASE_ALIGN;
            let Some(end) = base.checked_add(text_offset).and_then(|run| run.checked_add(size)) else { break };
            if end > range.end() {
                break;
            }
            if !overlaps(tree, end) {
                return Some(base + text_offset);
            }
            // Past the bundle, leaving the tree's room after it.
            let Some(next) = avoid.end().checked_next_multiple_of(IMAGE_BASE_ALIGN).and_then(|b| b.checked_add(IMAGE_BASE_ALIGN)) else {
                break;
            };
            if next <= base {
                break;
            }
            base = next;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        write(&[0xaa; 5000], &[0xbb; 300], "console=ttyAMA0 panic=-1")
    }

    fn set_u64(bytes: &mut [u8], at: usize, value: u64) {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Offset of `kind`'s entry field (0 offset, 8 size, 16 hash).
    fn field(kind: PartKind, within: usize) -> usize {
        PARTS_OFFSET + PartKind::ALL.iter().position(|k| *k == kind).unwrap() * PART_ENTRY_SIZE + within
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn places_the_kernel_low_with_room_for_the_tree_and_clear_of_the_bundle() {
        // QEMU virt: RAM from 1 GiB (the core's 2 MiB left out), the bundle at +128 MiB.
        let memory = [MemoryRange::new(0x4020_0000, 1024 * MIB - 2 * MIB)];
        let bundle = MemoryRange::new(0x4800_0000, 70 * MIB);
        assert_eq!(place_kernel(&memory, bundle, 0, 43 * MIB), Some(0x4040_0000));
        // Too big below the bundle: after it, its tree's 2 MiB past the bundle's end.
        assert_eq!(place_kernel(&memory, bundle, 0, 200 * MIB), Some(0x4800_0000 + 72 * MIB));
        // A text offset is added to a 2 MiB boundary.
        assert_eq!(place_kernel(&memory, bundle, 0x8_0000, MIB), Some(0x4048_0000));
        // The Pi: the bundle follows the core low in RAM; the kernel goes above it.
        let pi = [MemoryRange::new(0x20_0000, 0x3b40_0000 - 0x20_0000)];
        let follows = MemoryRange::new(0x20_0000, 60 * MIB + 5);
        assert_eq!(place_kernel(&pi, follows, 0, 43 * MIB), Some(0x20_0000 + 62 * MIB + 2 * MIB));
    }

    #[test]
    fn finds_no_place_when_nothing_fits() {
        let memory = [MemoryRange::new(0x4000_0000, 64 * MIB)];
        let bundle = MemoryRange::new(0x4000_0000, 10 * MIB);
        assert_eq!(place_kernel(&memory, bundle, 0, 64 * MIB), None);
        assert_eq!(place_kernel(&memory, bundle, IMAGE_BASE_ALIGN, MIB), None);
        assert_eq!(place_kernel(&[MemoryRange::new(u64::MAX - 4 * MIB, 4 * MIB)], bundle, 0, 4 * MIB), None);
        assert_eq!(place_kernel(&[], bundle, 0, MIB), None);
        // A second range takes it when the first is too small.
        let two = [MemoryRange::new(0x4000_0000, 4 * MIB), MemoryRange::new(0x8000_0000, 64 * MIB)];
        assert_eq!(place_kernel(&two, bundle, 0, 8 * MIB), Some(0x8020_0000));
    }

    #[test]
    fn round_trips_every_part_aligned() {
        let bytes = sample();
        let bundle = Bundle::verify(&bytes).unwrap();
        assert_eq!(bundle.kernel, &[0xaa; 5000][..]);
        assert_eq!(bundle.initramfs, &[0xbb; 300][..]);
        assert_eq!(bundle.cmdline, "console=ttyAMA0 panic=-1");
        assert_eq!(bundle.header.kernel.offset, PART_ALIGN);
        assert_eq!(bundle.header.initramfs.offset, 3 * PART_ALIGN);
        assert_eq!(bundle.header.cmdline.offset, 4 * PART_ALIGN);
    }

    #[test]
    fn optional_parts_may_be_absent() {
        let bytes = write(&[1; 10], &[], "");
        let bundle = Bundle::verify(&bytes).unwrap();
        assert!(bundle.initramfs.is_empty() && bundle.cmdline.is_empty());
        assert_eq!(bundle.header.initramfs, Part::default());
        assert_eq!(Bundle::verify(&write(&[], &[1], "")).unwrap_err(), BundleError::NoKernel);
    }

    #[test]
    fn refuses_short_or_foreign_or_newer_bundles() {
        let bytes = sample();
        for len in [0, 1, HEADER_SIZE - 1] {
            assert_eq!(Bundle::verify(&bytes[..len]).unwrap_err(), BundleError::Truncated { len: len as u64 });
        }
        let mut foreign = bytes.clone();
        foreign[0] = b'X';
        assert_eq!(Bundle::verify(&foreign).unwrap_err(), BundleError::BadMagic);
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert_eq!(Bundle::verify(&newer).unwrap_err(), BundleError::UnsupportedVersion(2));
        let mut header_size = bytes.clone();
        header_size[12] = 0;
        assert!(matches!(Bundle::verify(&header_size).unwrap_err(), BundleError::BadHeaderSize(_)));
    }

    #[test]
    fn refuses_parts_past_the_end_or_overlapping_or_misplaced() {
        let bytes = sample();
        // Cut inside the command line: the last part ends past the end.
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            Bundle::verify(cut).unwrap_err(),
            BundleError::PastEnd { part: PartKind::CommandLine, end: bytes.len() as u64, len: cut.len() as u64 }
        );
        let mut huge = bytes.clone();
        set_u64(&mut huge, field(PartKind::Kernel, 8), u64::MAX);
        assert_eq!(
            Bundle::verify(&huge).unwrap_err(),
            BundleError::PastEnd { part: PartKind::Kernel, end: u64::MAX, len: bytes.len() as u64 }
        );
        let mut overlapping = bytes.clone();
        set_u64(&mut overlapping, field(PartKind::Initramfs, 0), PART_ALIGN * 2);
        assert_eq!(Bundle::verify(&overlapping).unwrap_err(), BundleError::Overlap(PartKind::Kernel, PartKind::Initramfs));
        let mut misaligned = bytes.clone();
        set_u64(&mut misaligned, field(PartKind::Initramfs, 0), 3 * PART_ALIGN + 1);
        assert_eq!(Bundle::verify(&misaligned).unwrap_err(), BundleError::Misaligned(PartKind::Initramfs));
        let mut in_header = bytes.clone();
        set_u64(&mut in_header, field(PartKind::Kernel, 0), 0);
        assert_eq!(Bundle::verify(&in_header).unwrap_err(), BundleError::InsideHeader(PartKind::Kernel));
    }

    #[test]
    fn refuses_a_part_whose_bytes_changed() {
        let mut bytes = sample();
        let last_kernel_byte = (PART_ALIGN + 4999) as usize;
        bytes[last_kernel_byte] ^= 1;
        assert_eq!(Bundle::verify(&bytes).unwrap_err(), BundleError::HashMismatch(PartKind::Kernel));
        let mut bytes = sample();
        bytes[(3 * PART_ALIGN) as usize] ^= 1;
        assert_eq!(Bundle::verify(&bytes).unwrap_err(), BundleError::HashMismatch(PartKind::Initramfs));
    }

    #[test]
    fn refuses_a_command_line_with_a_nul_even_if_hashed() {
        let bytes = write(&[1; 10], &[], "a\0b");
        assert_eq!(Bundle::verify(&bytes).unwrap_err(), BundleError::BadCommandLine);
        let mut invalid = write(&[1; 10], &[], "\u{e9}");
        // Replace the é's first byte and fix the hash: still refused, as not UTF-8.
        let at = BundleHeader::parse(&invalid, invalid.len() as u64).unwrap().cmdline.offset as usize;
        invalid[at] = 0xff;
        let fixed = hash(&invalid[at..at + 2]);
        invalid[field(PartKind::CommandLine, 16)..field(PartKind::CommandLine, 32)].copy_from_slice(&fixed.to_le_bytes());
        assert_eq!(Bundle::verify(&invalid).unwrap_err(), BundleError::BadCommandLine);
    }

    #[test]
    fn every_error_reads_as_a_sentence() {
        let errors = [
            BundleError::Truncated { len: 3 },
            BundleError::BadMagic,
            BundleError::UnsupportedVersion(9),
            BundleError::PastEnd { part: PartKind::Initramfs, end: 10, len: 5 },
            BundleError::Overlap(PartKind::Kernel, PartKind::CommandLine),
            BundleError::HashMismatch(PartKind::Kernel),
        ];
        for error in errors {
            let text = alloc::format!("{error}");
            assert!(text.len() > 10, "{text}");
        }
        assert!(alloc::format!("{}", BundleError::HashMismatch(PartKind::Initramfs)).contains("initramfs"));
    }
}
