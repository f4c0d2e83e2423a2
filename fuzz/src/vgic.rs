//! The vGIC MMIO model: a refused access (outside the frames, bad size, misaligned) and any
//! read leave the model unchanged; a read returns no bits beyond its size; a write's change
//! names only INTIDs the model has, and private ones only for a vCPU that exists.

use vm::AccessSize;
use vm::vgic::{MAX_VCPUS, Vgic};

use crate::input::Input;

/// Largest SPI count tried (the model caps at 988).
const MAX_SPIS_TRIED: u32 = 1024;
/// Offsets are drawn up to a little beyond the last redistributor (and the distributor).
const OFFSET_RANGE: u64 = (MAX_VCPUS as u64 + 1) * 0x2_0000;
/// First SPI INTID.
const FIRST_SPI: u32 = 32;
/// Private INTIDs per vCPU.
const PRIVATE: u32 = 32;

/// One guest access to the distributor or the redistributors.
#[derive(Debug, Clone, Copy)]
enum Op {
    DistRead,
    DistWrite,
    RedistRead,
    RedistWrite,
}

/// Builds a model from the first bytes, then runs the accesses the rest describes.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let vcpus = 1 + usize::from(input.u8()) % MAX_VCPUS;
    let spis = u32::from(input.u16()) % (MAX_SPIS_TRIED + 1);
    let mpidrs: Vec<u64> = (0..vcpus as u64).collect();
    let Ok(mut vgic) = Vgic::new(&mpidrs, spis) else { return };
    let intids = FIRST_SPI + vgic.spi_count();
    while !input.is_empty() {
        let op = input.pick(&[Op::DistRead, Op::DistWrite, Op::RedistRead, Op::RedistWrite]);
        let size = input.pick(&[AccessSize::Byte, AccessSize::Halfword, AccessSize::Word, AccessSize::Doubleword]);
        // Mostly in range, sometimes anywhere.
        let raw = input.u32();
        let offset = if raw & 0xf000_0000 == 0xf000_0000 { u64::from(raw) << 16 } else { u64::from(raw) % OFFSET_RANGE };
        let value = input.u64();
        let before = vgic.clone();
        match op {
            Op::DistRead | Op::RedistRead => {
                let result = if matches!(op, Op::DistRead) { vgic.dist_read(offset, size) } else { vgic.redist_read(offset, size) };
                if let Ok(read) = result {
                    assert_eq!(read.value & !size.mask(), 0, "{op:?} {offset:#x} returned {:#x}", read.value);
                }
                assert!(vgic == before, "{op:?} at {offset:#x} ({} bytes) changed the model", size.bytes());
            }
            Op::DistWrite | Op::RedistWrite => {
                let result = if matches!(op, Op::DistWrite) {
                    vgic.dist_write(offset, size, value)
                } else {
                    vgic.redist_write(offset, size, value)
                };
                match result {
                    Err(_) => assert!(vgic == before, "a refused {op:?} at {offset:#x} changed the model"),
                    Ok(changes) => {
                        if let Some(change) = changes.change {
                            assert!(change.vcpu.is_none_or(|v| v < vcpus), "{change:?} names a missing vCPU");
                            if change.vcpu.is_some() {
                                assert!(change.base < PRIVATE, "{change:?}: a private change beyond INTID 31");
                            }
                            for intid in change.intids() {
                                assert!(intid < intids, "{change:?} names INTID {intid} of {intids}");
                            }
                            assert_eq!(change.unlinked & !change.mask, 0, "{change:?} unlinks what did not change");
                        }
                    }
                }
            }
        }
    }
}
