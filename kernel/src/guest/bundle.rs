//! The Linux guest from a guest bundle (`companion.guest=bundle`, [`platform::guest_bundle`]):
//! the board's loader put one file where the device tree's `/chosen`
//! `linux,initrd-start`/`linux,initrd-end` says (the Raspberry Pi firmware's
//! `initramfs FILE followkernel`, U-Boot's `booti` ramdisk, QEMU's `-initrd`); the core checks
//! its header and hashes, copies the kernel to a 2 MiB boundary and leaves the initramfs in
//! place.

use platform::MemoryRange;
use platform::fdt::DeviceTree;
use platform::guest_bundle::{Bundle, BundleError, place_kernel};
use platform::linux_image::{ImageError, ImageHeader};
use xxhash_rust::xxh3::Xxh3;

/// Bytes hashed between two looks at the console.
const CHUNK: usize = 1 << 20;

/// Why the bundle cannot be used.
#[derive(Debug)]
pub enum Error {
    /// `/chosen` names no initrd: the loader did not load the bundle.
    NotLoaded,
    /// The bundle is not inside guest RAM.
    OutsideMemory(MemoryRange),
    /// The bundle is malformed or corrupted.
    Invalid(BundleError),
    /// Its kernel is not a bootable arm64 `Image`.
    Kernel(ImageError),
    /// Nowhere in guest RAM to run the kernel, clear of the bundle.
    NoRoomForKernel(u64),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotLoaded => write!(
                f,
                "companion.guest=bundle: the device tree's /chosen has no linux,initrd-start/end (config.txt \
                 `initramfs FILE followkernel`, U-Boot `booti` with a ramdisk, or QEMU `-initrd` loads the bundle)"
            ),
            Self::OutsideMemory(r) => {
                write!(f, "companion.guest=bundle: the bundle at {:#x}-{:#x} is not inside guest RAM", r.base, r.end())
            }
            Self::Invalid(e) => write!(f, "companion.guest=bundle: {e}"),
            Self::Kernel(e) => write!(f, "companion.guest=bundle: its kernel: {e}"),
            Self::NoRoomForKernel(size) => {
                write!(f, "companion.guest=bundle: no room in guest RAM for its kernel ({} KiB running) clear of the bundle", size >> 10)
            }
        }
    }
}

/// The guest as taken out of a bundle.
pub struct Loaded {
    /// Where the kernel now is (`text_offset` above a 2 MiB boundary).
    pub kernel: u64,
    /// The initramfs, in place inside the bundle.
    pub initrd: Option<MemoryRange>,
    /// The bundle's command line, if it has one (copied out of guest RAM).
    pub cmdline: Option<&'static str>,
}

/// XXH3-128 of `bytes` in [`CHUNK`]s, draining the console between them (IRQs stay unmasked:
/// oob work preempts it at once).
fn hash_chunked(bytes: &[u8]) -> u128 {
    let mut hash = Xxh3::new();
    for chunk in bytes.chunks(CHUNK) {
        hash.update(chunk);
        crate::console::drain();
    }
    hash.digest128()
}

/// Finds the bundle `/chosen` names in `memory` (guest RAM, the core left out), verifies it,
/// and copies its kernel to where it runs.
pub fn load(tree: &DeviceTree<'_>, memory: &[MemoryRange]) -> Result<Loaded, Error> {
    let range = super::linux::initrd(tree).ok_or(Error::NotLoaded)?;
    if !memory.iter().any(|m| m.base <= range.base && range.end() <= m.end()) {
        return Err(Error::OutsideMemory(range));
    }
    let started = crate::rt::now().as_nanos();
    // SAFETY: the range is inside RAM, which the core maps; no guest runs yet, and nothing
    // writes it while this slice lives (the kernel's copy goes clear of it).
    let bytes = unsafe { core::slice::from_raw_parts(range.base as *const u8, range.size as usize) };
    let bundle = Bundle::open(bytes, hash_chunked).map_err(Error::Invalid)?;
    let header = ImageHeader::parse(bundle.kernel).map_err(Error::Kernel)?;
    let running = header.image_size.max(bundle.kernel.len() as u64);
    let kernel = place_kernel(memory, range, header.text_offset, running).ok_or(Error::NoRoomForKernel(running))?;
    // SAFETY: `place_kernel` put the destination inside guest RAM, clear of the bundle (the
    // source); no guest runs yet.
    unsafe { core::ptr::copy_nonoverlapping(bundle.kernel.as_ptr(), kernel as *mut u8, bundle.kernel.len()) };
    boot::mmu::clean_to_poc(kernel as usize..kernel as usize + bundle.kernel.len());
    let initrd = (!bundle.initramfs.is_empty())
        .then(|| MemoryRange::new(range.base + bundle.header.initramfs.offset, bundle.header.initramfs.size));
    let cmdline: Option<&'static str> =
        (!bundle.cmdline.is_empty()).then(|| &*alloc::boxed::Box::leak(alloc::string::String::from(bundle.cmdline).into_boxed_str()));
    log::info!(
        "guest: bundle at {:#x}+{} KiB verified (kernel {} KiB, initramfs {} KiB, command line {} bytes, XXH3-128) in {} ms; kernel copied to {kernel:#x}",
        range.base,
        range.size >> 10,
        bundle.kernel.len() >> 10,
        bundle.initramfs.len() >> 10,
        bundle.cmdline.len(),
        crate::rt::now().as_nanos().saturating_sub(started) / 1_000_000
    );
    Ok(Loaded { kernel, initrd, cmdline })
}
