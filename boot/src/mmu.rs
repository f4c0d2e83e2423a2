//! The EL2 stage-1 translation: an identity map with RAM as normal write-back memory and
//! device regions as Device-nGnRE, execute-never. Built with `aarch64-paging`.
//!
//! W^X: only the image's text is executable, and it is read-only; its read-only data is
//! read-only and execute-never; everything else in RAM (data, BSS, stacks, heap, the
//! guest's RAM) is read/write and execute-never at EL2.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, MAIR_EL2, Readable, SCTLR_EL2, TCR_EL2, Writeable};
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion, PAGE_SIZE};
use alloc::boxed::Box;
use core::ops::Range;

pub use aarch64_paging::MapError;

/// MAIR index 0: normal memory, inner and outer write-back, read/write-allocate.
const NORMAL: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0.union(El23Attributes::INNER_SHAREABLE);
/// MAIR index 1: Device-nGnRE.
const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::XN);
/// The image's text: read-only, executable.
const TEXT: El23Attributes = NORMAL.union(El23Attributes::READ_ONLY);
/// The image's read-only data: read-only, execute-never.
const RODATA: El23Attributes = NORMAL.union(El23Attributes::READ_ONLY).union(El23Attributes::XN);
/// All other RAM: read/write, execute-never.
const DATA: El23Attributes = NORMAL.union(El23Attributes::XN);
/// Bits every live mapping carries.
const PRESENT: El23Attributes = El23Attributes::VALID.union(El23Attributes::ACCESSED);
/// Root at level 1: 39-bit virtual addresses (512 GiB), enough for every supported board.
const ROOT_LEVEL: usize = 1;
/// TCR_EL2.T0SZ for a 39-bit address space.
const T0SZ: u64 = 64 - 39;
/// SCTLR_EL2 bits that are RES1 in the non-VHE layout.
const SCTLR_EL2_RES1: u64 = (1 << 4) | (1 << 5) | (1 << 11) | (1 << 16) | (1 << 18) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
/// TCR_EL2 bits that are RES1 in the non-VHE layout (bits 23 and 31).
const TCR_EL2_RES1: u64 = (1 << 23) | (1 << 31);

/// The register values that turn the MMU on; secondaries copy them.
#[derive(Debug, Clone, Copy)]
pub struct MmuRegisters {
    /// `MAIR_EL2`.
    pub mair: u64,
    /// `TCR_EL2`.
    pub tcr: u64,
    /// `TTBR0_EL2`.
    pub ttbr0: u64,
    /// `SCTLR_EL2`.
    pub sctlr: u64,
}

fn page_aligned(range: &Range<u64>) -> MemoryRegion {
    let start = range.start as usize & !(PAGE_SIZE - 1);
    let end = (range.end as usize).next_multiple_of(PAGE_SIZE);
    MemoryRegion::new(start, end)
}

/// Builds the identity map, turns on the MMU and caches on this CPU, and returns the
/// register values for the other CPUs. The page tables live for the rest of the run.
///
/// # Safety
/// `ram` must cover everything the core executes and touches in memory (image, stacks, heap,
/// device tree), `devices` every MMIO region it uses. Call once, on the boot CPU, with the
/// MMU off.
pub unsafe fn enable(ram: &[Range<u64>], devices: &[Range<u64>]) -> Result<MmuRegisters, MapError> {
    let idmap = Box::leak(Box::new(IdMap::new(ROOT_LEVEL, El2)));
    for range in ram {
        idmap.map_range(&page_aligned(range), DATA | PRESENT)?;
    }
    let (text, rodata) = image_sections();
    idmap.map_range(&page_aligned(&text), TEXT | PRESENT)?;
    idmap.map_range(&page_aligned(&rodata), RODATA | PRESENT)?;
    for range in devices {
        idmap.map_range(&page_aligned(range), DEVICE | PRESENT)?;
    }

    MAIR_EL2.write(
        MAIR_EL2::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
    );
    // Output size: the CPU's physical range, capped at what a 39-bit map can need.
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    TCR_EL2.set(
        TCR_EL2_RES1
            | (TCR_EL2::PS.val(pa_range)
                + TCR_EL2::TG0::KiB_4
                + TCR_EL2::SH0::Inner
                + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::T0SZ.val(T0SZ))
            .value,
    );
    barrier::isb(barrier::SY);
    // SAFETY: the caller guarantees the map covers all memory in use; identity mapping keeps
    // every pointer valid across the switch.
    unsafe {
        idmap.activate();
        core::arch::asm!("tlbi alle2", "dsb nsh", "ic iallu", "dsb nsh", "isb", options(nostack));
    }
    let sctlr = SCTLR_EL2_RES1 | (SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable + SCTLR_EL2::SA::Enable).value;
    SCTLR_EL2.set(sctlr);
    barrier::isb(barrier::SY);

    Ok(MmuRegisters { mair: MAIR_EL2.get(), tcr: TCR_EL2.get(), ttbr0: idmap.root_address().0 as u64, sctlr })
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
}

/// The image's text and read-only data, as the linker script laid them out (page aligned).
pub fn image_sections() -> (Range<u64>, Range<u64>) {
    // Linker-script symbols: only their addresses are used.
    let (start, text_end, rodata_end) =
        (&raw const __image_start as u64, &raw const __text_end as u64, &raw const __rodata_end as u64);
    (start..text_end, text_end..rodata_end)
}

/// Cleans and invalidates the data cache lines covering `range` to the point of coherency,
/// so a CPU running with its MMU and caches off sees what we wrote.
pub fn clean_to_poc(range: Range<usize>) {
    const LINE: usize = 64;
    let mut line = range.start & !(LINE - 1);
    while line < range.end {
        // SAFETY: cache maintenance by VA on mapped memory has no effect on program state.
        unsafe { core::arch::asm!("dc civac, {0}", in(reg) line, options(nostack, preserves_flags)) };
        line += LINE;
    }
    barrier::dsb(barrier::SY);
}
