//! ICC_SGI1R_EL1: the guest's request to send an SGI, and the vCPUs it targets.

/// ICC_SGI1R_EL1.TargetList, bits `[15:0]`: Aff0 values (plus 16 × RS) to target.
const TARGET_LIST_MASK: u64 = 0xffff;
/// ICC_SGI1R_EL1.Aff1 shift (bits `[23:16]`).
const AFF1_SHIFT: u32 = 16;
/// ICC_SGI1R_EL1.INTID shift (bits `[27:24]`).
const INTID_SHIFT: u32 = 24;
/// ICC_SGI1R_EL1.INTID mask (after shifting).
const INTID_MASK: u64 = 0xf;
/// ICC_SGI1R_EL1.Aff2 shift (bits `[39:32]`).
const AFF2_SHIFT: u32 = 32;
/// ICC_SGI1R_EL1.IRM, bit 40: every PE but the sender.
const IRM_BIT: u64 = 1 << 40;
/// ICC_SGI1R_EL1.RS shift (bits `[47:44]`).
const RS_SHIFT: u32 = 44;
/// ICC_SGI1R_EL1.RS mask (after shifting).
const RS_MASK: u64 = 0xf;
/// ICC_SGI1R_EL1.Aff3 shift (bits `[55:48]`).
const AFF3_SHIFT: u32 = 48;
/// Mask of one 8-bit affinity field.
const AFF_MASK: u64 = 0xff;
/// Aff0 values covered by one TargetList (one RS value).
const TARGETS_PER_RANGE: u64 = 16;

/// A decoded ICC_SGI1R_EL1 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgiRequest {
    /// The SGI (0-15).
    pub intid: u32,
    /// Interrupt_Routing_Mode: every vCPU except the sender; the other fields are ignored.
    pub all_but_self: bool,
    /// The target's MPIDR affinity without Aff0: Aff3 `[39:32]`, Aff2 `[23:16]`, Aff1
    /// `[15:8]`.
    pub affinity: u64,
    /// RS: TargetList bit `i` names Aff0 = 16 × RS + `i`.
    pub range: u8,
    /// TargetList.
    pub target_list: u16,
}

impl SgiRequest {
    /// Decodes an ICC_SGI1R_EL1 value (total: reserved bits are ignored).
    pub const fn decode(value: u64) -> Self {
        let aff1 = (value >> AFF1_SHIFT) & AFF_MASK;
        let aff2 = (value >> AFF2_SHIFT) & AFF_MASK;
        let aff3 = (value >> AFF3_SHIFT) & AFF_MASK;
        Self {
            intid: ((value >> INTID_SHIFT) & INTID_MASK) as u32,
            all_but_self: value & IRM_BIT != 0,
            affinity: (aff3 << 32) | (aff2 << 16) | (aff1 << 8),
            range: ((value >> RS_SHIFT) & RS_MASK) as u8,
            target_list: (value & TARGET_LIST_MASK) as u16,
        }
    }

    /// Whether it targets the vCPU with MPIDR affinity `mpidr`, sent from `sender_mpidr`.
    pub fn targets_mpidr(&self, mpidr: u64, sender_mpidr: u64) -> bool {
        if self.all_but_self {
            return mpidr != sender_mpidr;
        }
        if mpidr & !AFF_MASK != self.affinity {
            return false;
        }
        let aff0 = mpidr & AFF_MASK;
        let first = u64::from(self.range) * TARGETS_PER_RANGE;
        aff0 >= first
            && aff0 < first + TARGETS_PER_RANGE
            && self.target_list & (1 << (aff0 - first)) != 0
    }

    /// The vCPUs (indices into `mpidrs`) it targets, sent by vCPU `sender`.
    pub fn targets(&self, mpidrs: &[u64], sender: usize) -> SgiTargets {
        let sender_mpidr = mpidrs.get(sender).copied();
        let mut mask = 0u8;
        for (index, &mpidr) in mpidrs.iter().enumerate().take(u8::BITS as usize) {
            let hit = match sender_mpidr {
                Some(sender_mpidr) => self.targets_mpidr(mpidr, sender_mpidr),
                None => !self.all_but_self && self.targets_mpidr(mpidr, u64::MAX),
            };
            if hit {
                mask |= 1 << index;
            }
        }
        SgiTargets(mask)
    }
}

/// A set of vCPU indices (the targets of an SGI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SgiTargets(pub u8);

impl SgiTargets {
    /// Whether vCPU `index` is a target.
    pub fn contains(&self, index: usize) -> bool {
        index < u8::BITS as usize && self.0 & (1 << index) != 0
    }

    /// Whether there is no target.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The target indices, ascending (one step per target, not per possible index).
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let mut mask = self.0;
        core::iter::from_fn(move || {
            let index = (mask != 0).then(|| mask.trailing_zeros() as usize)?;
            mask &= mask - 1;
            Some(index)
        })
    }
}
