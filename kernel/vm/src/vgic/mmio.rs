//! The distributor and redistributor register frames: decoding an offset into a register,
//! checking the access size, and reading or writing the [`Vgic`] state behind it.

use super::regs::*;
use super::{AccessError, IrqState, MAX_VCPUS, Vgic};
use crate::mmio::AccessSize;

/// How an access was handled (shared with the other device models).
pub use crate::mmio::Access;

/// The result of a guest read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioRead {
    /// The value, zero-extended from the access size.
    pub value: u64,
    /// Whether the register is known.
    pub access: Access,
    /// For a pending or active register (ISPENDR, ICPENDR, ISACTIVER, ICACTIVER): the bits of
    /// `value` that belong to interrupts sitting hardware-linked in a list register. Only
    /// the physical interrupt knows their state (the guest may have deactivated them since
    /// the list register was last read back): the hypervisor replaces those bits by the same
    /// register of the physical GIC (same INTIDs).
    pub linked: Option<Linked>,
}

/// The bits of a guest read that the physical GIC answers ([`MmioRead::linked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Linked {
    /// The active registers (ISACTIVER/ICACTIVER); otherwise the pending ones.
    pub active: bool,
    /// For private INTIDs, the vCPU whose bank was read (its physical CPU's redistributor);
    /// `None` for SPIs (the distributor).
    pub vcpu: Option<usize>,
    /// The first INTID of the register (a multiple of 32).
    pub base: u32,
    /// Which bits of the register.
    pub mask: u32,
}

/// What changed for a set of interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Became enabled: enable the physical line of a pass-through SPI; raise what is now
    /// deliverable.
    Enabled,
    /// Became disabled: disable the physical line of a pass-through SPI.
    Disabled,
    /// The guest set the pending latch (software-pending): inject if deliverable. For an
    /// interrupt whose copy is still pending in a list register, the new pending state merges
    /// into that copy ([`super::ListedUpdate::Merge`]).
    PendingSet,
    /// The guest wrote ICPENDR for interrupts that were pending: cancel them in the replay log
    /// (a level-sensitive one whose line is still high stays pending; the next resample
    /// raises it again). A hardware-linked one waiting for a list register gives its physical
    /// activation up ([`Change::unlinked`]) and its line is forgotten: the physical GIC
    /// samples it again once deactivated.
    PendingCleared,
    /// The guest set the active state.
    ActiveSet,
    /// The guest cleared the active state. A copy the guest acknowledged in a list register
    /// is ended ([`super::ListedUpdate::Complete`]: the hypervisor empties the list register
    /// and deactivates a hardware-linked one's physical interrupt); a copy still pending goes
    /// back to the log ([`super::ListedUpdate::Requeue`]).
    ActiveCleared,
    /// The priority changed: update the replay log's entry.
    Priority,
    /// The trigger (edge/level) changed.
    Config,
    /// The GICD_IROUTER of the SPI changed: move the physical SPI.
    Route,
    /// GICD_CTLR.EnableGrp1 changed to this value.
    DistributorEnable(bool),
}

/// One change caused by a guest write: the INTIDs `base + i` for each bit `i` of `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// For private INTIDs (redistributor writes), the vCPU whose bank changed; `None` for SPIs.
    pub vcpu: Option<usize>,
    /// The first INTID of the 32-INTID bank (a multiple of 32; 0 for `DistributorEnable`).
    pub base: u32,
    /// Which INTIDs of the bank changed (0 for `DistributorEnable`).
    pub mask: u32,
    /// Which of them gave up the activation of their physical interrupt (see the module's
    /// "Hardware-linked interrupts"): disabled, pending cleared, or no longer pending after
    /// a trigger change, while their pending entry owned it. The hypervisor deactivates
    /// those physical interrupts, after applying the change (a disabled line masked first,
    /// so that a level still high does not fire again at once).
    pub unlinked: u32,
    /// Which INTIDs of the bank became entries of the replay log ([`IrqState::waiting`](super::IrqState::waiting)):
    /// a set-pending write, or a trigger change that made a high line pending.
    pub entered: u32,
    /// Which INTIDs of the bank left the replay log unreplayed: pending cleared, or no
    /// longer pending after a trigger change.
    pub left: u32,
}

impl Change {
    /// The INTIDs that changed, ascending.
    pub fn intids(&self) -> impl Iterator<Item = u32> + use<> {
        let (base, mask) = (self.base, self.mask);
        (0..u32::BITS)
            .filter(move |i| mask & (1 << i) != 0)
            .map(move |i| base + i)
    }
}

/// What the hypervisor must do on the physical side after a guest write. A single register
/// write touches one 32-INTID bank (or the distributor enable), so it causes at most one
/// [`Change`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Changes {
    /// Whether the register is known.
    pub access: Access,
    /// What changed, if anything.
    pub change: Option<Change>,
}

/// The one-bit-per-INTID register arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// A decoded register; `n` fields are register indices within their array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    DistCtlr,
    DistTyper,
    Iidr,
    Id(usize),
    Bits(BitReg, u32),
    /// IPRIORITYR, by the INTID of its first byte.
    Priority(u32),
    /// `ICFGR<n>`: INTIDs 16n..16n+15.
    Config(u32),
    Router(u32),
    RedistTyper,
    Waker,
    /// A RAZ/WI register of 32 bits.
    RazWi,
    /// A RAZ/WI register of 64 bits.
    RazWi64,
    /// A RAZ/WI register that also takes byte accesses.
    RazWiBytes,
    Unknown,
}

/// Every part of an access ([`DecodedAccess::parts`]).
const ALL_PARTS: u32 = u32::MAX;

impl Reg {
    /// Whether the register takes an access of `size`.
    fn allows(self, size: AccessSize) -> bool {
        match self {
            Self::Unknown => true,
            Self::Priority(_) | Self::RazWiBytes => {
                matches!(size, AccessSize::Byte | AccessSize::Word)
            }
            Self::Router(_) | Self::RedistTyper | Self::RazWi64 => {
                matches!(size, AccessSize::Word | AccessSize::Doubleword)
            }
            _ => size == AccessSize::Word,
        }
    }
}

/// Which bank of interrupts an access addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// The distributor: SPIs only (affinity routing).
    Dist,
    /// A redistributor's SGI_base: that vCPU's private interrupts only.
    Redist(usize),
}

/// `offset` in `[base, base + size)`: the index of the `stride`-byte register it falls in.
fn in_array(offset: u64, base: u64, size: u64, stride: u64) -> Option<u32> {
    (offset >= base && offset < base + size).then(|| ((offset - base) / stride) as u32)
}

/// The register at `offset` of the distributor frame, and the offset of its first byte.
fn decode_dist(offset: u64) -> (Reg, u64) {
    // The seven bit arrays follow each other from GICD_IGROUPR, in this order. A static,
    // not a const: a const array is copied to the stack on every call.
    static BIT_ARRAYS: [BitReg; 7] = [
        BitReg::Group,
        BitReg::SetEnable,
        BitReg::ClearEnable,
        BitReg::SetPending,
        BitReg::ClearPending,
        BitReg::SetActive,
        BitReg::ClearActive,
    ];
    const _: () = assert!(GICD_ICACTIVER == GICD_IGROUPR + 6 * BIT_ARRAY_SIZE);
    let word = offset & !3;
    match offset {
        GICD_CTLR => return (Reg::DistCtlr, offset),
        GICD_TYPER => return (Reg::DistTyper, offset),
        GICD_IIDR => return (Reg::Iidr, offset),
        GICD_TYPER2 | GICD_STATUSR | GICD_SGIR => return (Reg::RazWi, offset),
        _ => {}
    }
    if let Some(n) = in_array(offset, GICD_IGROUPR, BIT_ARRAYS.len() as u64 * BIT_ARRAY_SIZE, 4) {
        let per_array = (BIT_ARRAY_SIZE / 4) as u32;
        if let Some(&kind) = BIT_ARRAYS.get((n / per_array) as usize) {
            return (Reg::Bits(kind, n % per_array), word);
        }
    }
    if let Some(first) = in_array(offset, GICD_IPRIORITYR, PRIORITY_ARRAY_SIZE, 1) {
        return (Reg::Priority(first), offset);
    }
    if in_array(offset, GICD_ITARGETSR, PRIORITY_ARRAY_SIZE, 1).is_some()
        || in_array(offset, GICD_CPENDSGIR, SGI_PENDING_ARRAYS_SIZE, 1).is_some()
    {
        return (Reg::RazWiBytes, offset);
    }
    if let Some(n) = in_array(offset, GICD_ICFGR, CONFIG_ARRAY_SIZE, 4) {
        return (Reg::Config(n), word);
    }
    if in_array(offset, GICD_IGRPMODR, BIT_ARRAY_SIZE, 4).is_some()
        || in_array(offset, GICD_NSACR, NSACR_ARRAY_SIZE, 4).is_some()
        || in_array(offset, GICD_INMIR, INMIR_ARRAY_SIZE, 4).is_some()
    {
        return (Reg::RazWi, word);
    }
    if let Some(intid) = in_array(offset, GICD_IROUTER, ROUTER_ARRAY_SIZE, 8) {
        return (Reg::Router(intid), offset & !7);
    }
    if let Some(index) = in_array(offset, ID_REGS, ID_REGS_SIZE, 4) {
        return (Reg::Id(index as usize), word);
    }
    (Reg::Unknown, offset)
}

/// The register at `offset` of a redistributor's RD_base frame, and its first byte.
fn decode_rd(offset: u64) -> (Reg, u64) {
    match offset {
        GICR_CTLR | GICR_STATUSR => (Reg::RazWi, offset),
        GICR_IIDR => (Reg::Iidr, offset),
        GICR_WAKER => (Reg::Waker, offset),
        o if o & !7 == GICR_TYPER => (Reg::RedistTyper, GICR_TYPER),
        o if o & !7 == GICR_PROPBASER || o & !7 == GICR_PENDBASER => (Reg::RazWi64, o & !7),
        o => match in_array(o, ID_REGS, ID_REGS_SIZE, 4) {
            Some(index) => (Reg::Id(index as usize), o & !3),
            None => (Reg::Unknown, o),
        },
    }
}

/// The register at `offset` of a redistributor's SGI_base frame, and its first byte.
fn decode_sgi(offset: u64) -> (Reg, u64) {
    let bits = match offset & !3 {
        GICR_IGROUPR0 => Some(BitReg::Group),
        GICR_ISENABLER0 => Some(BitReg::SetEnable),
        GICR_ICENABLER0 => Some(BitReg::ClearEnable),
        GICR_ISPENDR0 => Some(BitReg::SetPending),
        GICR_ICPENDR0 => Some(BitReg::ClearPending),
        GICR_ISACTIVER0 => Some(BitReg::SetActive),
        GICR_ICACTIVER0 => Some(BitReg::ClearActive),
        _ => None,
    };
    if let Some(kind) = bits {
        return (Reg::Bits(kind, 0), offset & !3);
    }
    if let Some(first) = in_array(offset, GICR_IPRIORITYR0, GICR_PRIORITY_SIZE, 1) {
        return (Reg::Priority(first), offset);
    }
    match offset & !3 {
        GICR_ICFGR0 => (Reg::Config(0), GICR_ICFGR0),
        GICR_ICFGR1 => (Reg::Config(1), GICR_ICFGR1),
        GICR_IGRPMODR0 | GICR_NSACR => (Reg::RazWi, offset & !3),
        _ => (Reg::Unknown, offset),
    }
}

/// Checks size and alignment; returns the byte position of `offset` within its register.
fn check(reg: Reg, reg_start: u64, offset: u64, size: AccessSize) -> Result<u32, AccessError> {
    if !offset.is_multiple_of(u64::from(size.bytes())) {
        return Err(AccessError::Misaligned(offset, size));
    }
    if !reg.allows(size) {
        return Err(AccessError::BadSize(offset, size));
    }
    Ok((offset - reg_start) as u32)
}

impl Vgic {
    /// The interrupt `intid` as `frame` sees it: `None` if the frame does not cover it (RAZ/WI).
    fn frame_irq(&mut self, frame: Frame, intid: u32) -> Option<&mut IrqState> {
        let vcpu = match frame {
            Frame::Dist => 0,
            Frame::Redist(vcpu) => vcpu,
        };
        if self.is_concealed(intid, vcpu) {
            return None;
        }
        match frame {
            Frame::Dist if intid >= FIRST_SPI && intid < FIRST_SPI + self.spis => {
                self.shared.get_mut((intid - FIRST_SPI) as usize)
            }
            Frame::Redist(vcpu) if intid < FIRST_SPI => self
                .private
                .get_mut(vcpu)
                .and_then(|bank| bank.get_mut(intid as usize)),
            _ => None,
        }
    }

    /// [`Vgic::refresh`] for `intid` as `frame` sees it (nothing if the frame does not cover
    /// it).
    fn refresh_in(&mut self, frame: Frame, intid: u32) {
        match frame {
            Frame::Dist if intid >= FIRST_SPI => self.refresh(intid, 0),
            Frame::Redist(vcpu) if intid < FIRST_SPI => self.refresh(intid, vcpu),
            _ => {}
        }
    }

    fn dist_ctlr(&self) -> u32 {
        let enable = if self.group1_enabled {
            CTLR_ENABLE_GRP1
        } else {
            0
        };
        CTLR_ARE | CTLR_DS | enable
    }

    fn dist_typer(&self) -> u32 {
        let it_lines = self.spis.div_ceil(INTIDS_PER_BANK) & TYPER_IT_LINES_MASK;
        let cpus = (self.vcpus as u32 - 1) << TYPER_CPU_NUMBER_SHIFT;
        it_lines | cpus | (TYPER_ID_BITS << TYPER_ID_BITS_SHIFT) | TYPER_A3V | TYPER_RSS
    }

    fn redist_typer(&self, vcpu: usize) -> u64 {
        let mpidr = self.mpidrs[vcpu];
        let affinity = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0x00ff_ffff);
        let last = if vcpu + 1 == self.vcpus {
            GICR_TYPER_LAST
        } else {
            0
        };
        (affinity << GICR_TYPER_AFFINITY_SHIFT)
            | ((vcpu as u64) << GICR_TYPER_PROCESSOR_SHIFT)
            | last
    }

    /// The whole (32- or 64-bit) value of `reg`, for a per-INTID register only the INTIDs of
    /// `part` (see [`DecodedAccess::parts`]; the other bits read as zero).
    fn reg_value(&mut self, reg: Reg, frame: Frame, part: u32) -> u64 {
        match reg {
            Reg::DistCtlr => self.dist_ctlr().into(),
            Reg::DistTyper => self.dist_typer().into(),
            Reg::Iidr => IIDR_VALUE.into(),
            Reg::Id(index) => ID_VALUES.get(index).copied().unwrap_or(0).into(),
            Reg::Bits(kind, n) => {
                let mut value = 0u32;
                let mut bits = part;
                while bits != 0 {
                    let bit = bits.trailing_zeros();
                    bits &= bits - 1;
                    let Some(irq) = self.frame_irq(frame, n * INTIDS_PER_BANK + bit) else {
                        continue;
                    };
                    let set = match kind {
                        BitReg::Group => true,
                        BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                        BitReg::SetPending | BitReg::ClearPending => irq.pending(),
                        BitReg::SetActive | BitReg::ClearActive => irq.active,
                    };
                    value |= u32::from(set) << bit;
                }
                value.into()
            }
            Reg::Priority(first) => {
                let mut value = 0u32;
                for byte in (0..4).filter(|byte| part & (1 << byte) != 0) {
                    if let Some(irq) = self.frame_irq(frame, first + byte) {
                        value |= u32::from(irq.priority) << (8 * byte);
                    }
                }
                value.into()
            }
            Reg::Config(n) => {
                let mut value = 0u32;
                for field in (0..16).filter(|field| part & (1 << field) != 0) {
                    if let Some(irq) = self.frame_irq(frame, 16 * n + field)
                        && irq.edge
                    {
                        value |= ICFGR_EDGE << (2 * field);
                    }
                }
                value.into()
            }
            Reg::Router(intid) => match self.frame_irq(Frame::Dist, intid) {
                Some(_) => self.routes[(intid - FIRST_SPI) as usize],
                None => 0,
            },
            Reg::RedistTyper => match frame {
                Frame::Redist(vcpu) => self.redist_typer(vcpu),
                Frame::Dist => 0,
            },
            Reg::Waker => match frame {
                Frame::Redist(vcpu) if self.asleep[vcpu] => {
                    (WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP).into()
                }
                _ => 0,
            },
            Reg::RazWi | Reg::RazWi64 | Reg::RazWiBytes | Reg::Unknown => 0,
        }
    }

    fn read(&mut self, reg: Reg, frame: Frame, at: u32, size: AccessSize, part: u32) -> MmioRead {
        let value = (self.reg_value(reg, frame, part) >> (8 * at)) & size.mask();
        let access = if reg == Reg::Unknown {
            Access::Unknown
        } else {
            Access::Emulated
        };
        MmioRead {
            value,
            access,
            linked: self.linked_bits(reg, frame, part),
        }
    }

    /// For a read of a pending or active register, which of its interrupts sit
    /// hardware-linked in a list register ([`MmioRead::linked`]), among those of `part`.
    fn linked_bits(&mut self, reg: Reg, frame: Frame, part: u32) -> Option<Linked> {
        let Reg::Bits(kind, n) = reg else {
            return None;
        };
        let active = match kind {
            BitReg::SetPending | BitReg::ClearPending => false,
            BitReg::SetActive | BitReg::ClearActive => true,
            _ => return None,
        };
        let base = n * INTIDS_PER_BANK;
        let mut mask = 0u32;
        let mut bits = part;
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            if self
                .frame_irq(frame, base + bit)
                .is_some_and(|irq| irq.hw_listed)
            {
                mask |= 1 << bit;
            }
        }
        let vcpu = match frame {
            Frame::Redist(vcpu) => Some(vcpu),
            Frame::Dist => None,
        };
        (mask != 0).then_some(Linked {
            active,
            vcpu,
            base,
            mask,
        })
    }

    /// Applies a write of `value` (already masked to `size`) at byte `at` of `reg`; for a
    /// per-INTID register only to the INTIDs of `part` ([`DecodedAccess::parts`]).
    fn write(&mut self, reg: Reg, frame: Frame, at: u32, size: AccessSize, value: u64, part: u32) -> Changes {
        let vcpu = match frame {
            Frame::Redist(vcpu) => Some(vcpu),
            Frame::Dist => None,
        };
        let change = |kind, first: u32, mask: u32| {
            (mask != 0).then_some(Change {
                kind,
                vcpu,
                base: first & !(INTIDS_PER_BANK - 1),
                mask: mask << (first % INTIDS_PER_BANK),
                unlinked: 0,
                entered: 0,
                left: 0,
            })
        };
        // Bits (from the register's first INTID) whose pending entry gave up its link.
        let mut unlinked = 0u32;
        // Bits (from the register's first INTID) that entered or left the replay log.
        let (mut entered, mut left) = (0u32, 0u32);
        let change = match reg {
            Reg::DistCtlr => {
                let enable = value as u32 & CTLR_ENABLE_GRP1 != 0;
                let changed = enable != self.group1_enabled;
                self.group1_enabled = enable;
                changed.then_some(Change {
                    kind: ChangeKind::DistributorEnable(enable),
                    vcpu: None,
                    base: 0,
                    mask: 0,
                    unlinked: 0,
                    entered: 0,
                    left: 0,
                })
            }
            Reg::Bits(kind, n) => {
                let first = n * INTIDS_PER_BANK;
                let mut mask = 0u32;
                let mut bits = value as u32 & part;
                while bits != 0 {
                    let bit = bits.trailing_zeros();
                    bits &= bits - 1;
                    let Some(irq) = self.frame_irq(frame, first + bit) else {
                        continue;
                    };
                    let was_waiting = irq.waiting();
                    let changed = match kind {
                        BitReg::Group => false,
                        BitReg::SetEnable => !core::mem::replace(&mut irq.enabled, true),
                        BitReg::ClearEnable => {
                            // Not offered while disabled: its link ends (the line is masked,
                            // then the physical interrupt deactivated).
                            unlinked |= u32::from(irq.unlink()) << bit;
                            core::mem::replace(&mut irq.enabled, false)
                        }
                        BitReg::SetPending => !core::mem::replace(&mut irq.pending_latch, true),
                        BitReg::ClearPending => {
                            // A listed copy's pending state goes too: the glue takes its list
                            // register back if the guest has not acknowledged it yet
                            // (`Vgic::listed_copy_outdated`).
                            let was = irq.pending() || (irq.listed && irq.latch_taken);
                            irq.pending_latch = false;
                            if irq.listed {
                                irq.latch_taken = false;
                            }
                            // Its link ends: a level line is resampled by the physical GIC.
                            unlinked |= u32::from(irq.unlink()) << bit;
                            was
                        }
                        BitReg::SetActive => !core::mem::replace(&mut irq.active, true),
                        BitReg::ClearActive => core::mem::replace(&mut irq.active, false),
                    };
                    mask |= u32::from(changed) << bit;
                    entered |= u32::from(!was_waiting && irq.waiting()) << bit;
                    left |= u32::from(was_waiting && !irq.waiting()) << bit;
                    // Enabled, pending or active may have changed: keep the ready bit in step.
                    self.refresh_in(frame, first + bit);
                }
                let kind = match kind {
                    // IGROUPR is RAO/WI: its mask is always 0, so no change is reported.
                    BitReg::Group | BitReg::SetEnable => ChangeKind::Enabled,
                    BitReg::ClearEnable => ChangeKind::Disabled,
                    BitReg::SetPending => ChangeKind::PendingSet,
                    BitReg::ClearPending => ChangeKind::PendingCleared,
                    BitReg::SetActive => ChangeKind::ActiveSet,
                    BitReg::ClearActive => ChangeKind::ActiveCleared,
                };
                change(kind, first, mask).map(|change| Change { unlinked, entered, left, ..change })
            }
            Reg::Priority(first) => {
                let mut mask = 0u32;
                for byte in (0..size.bytes()).filter(|byte| part & (1 << byte) != 0) {
                    let priority = (value >> (8 * byte)) as u8;
                    if let Some(irq) = self.frame_irq(frame, first + byte)
                        && irq.priority != priority
                    {
                        irq.priority = priority;
                        mask |= 1 << byte;
                    }
                }
                change(ChangeKind::Priority, first, mask)
            }
            Reg::Config(n) => {
                let first = 16 * n;
                let mut mask = 0u32;
                for field in (0..16).filter(|field| part & (1 << field) != 0) {
                    let intid = first + field;
                    let edge = (value >> (2 * field)) as u32 & ICFGR_EDGE != 0;
                    if intid < NR_SGIS && frame != Frame::Dist {
                        continue; // SGIs are always edge-triggered.
                    }
                    if let Some(irq) = self.frame_irq(frame, intid)
                        && irq.edge != edge
                    {
                        let was_waiting = irq.waiting();
                        irq.edge = edge;
                        mask |= 1 << field;
                        // A level line's pending state depends on the trigger: a linked
                        // entry no longer pending gives its physical activation up.
                        if irq.hw_pending && !irq.pending() {
                            irq.unlink();
                            unlinked |= 1 << field;
                        }
                        entered |= u32::from(!was_waiting && irq.waiting()) << field;
                        left |= u32::from(was_waiting && !irq.waiting()) << field;
                        self.refresh_in(frame, intid);
                    }
                }
                let shift = first % INTIDS_PER_BANK;
                change(ChangeKind::Config, first, mask).map(|change| Change {
                    unlinked: unlinked << shift,
                    entered: entered << shift,
                    left: left << shift,
                    ..change
                })
            }
            Reg::Router(intid) => {
                if self.frame_irq(Frame::Dist, intid).is_some() {
                    let route = &mut self.routes[(intid - FIRST_SPI) as usize];
                    let shift = 8 * at;
                    let field = size.mask() << shift;
                    let new = ((*route & !field) | (value << shift)) & IROUTER_MASK;
                    let changed = new != *route;
                    *route = new;
                    change(ChangeKind::Route, intid, u32::from(changed))
                } else {
                    None
                }
            }
            Reg::Waker => {
                if let Frame::Redist(vcpu) = frame {
                    self.asleep[vcpu] = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
                }
                None
            }
            Reg::DistTyper
            | Reg::Iidr
            | Reg::Id(_)
            | Reg::RedistTyper
            | Reg::RazWi
            | Reg::RazWi64
            | Reg::RazWiBytes
            | Reg::Unknown => None,
        };
        let access = if reg == Reg::Unknown {
            Access::Unknown
        } else {
            Access::Emulated
        };
        Changes { access, change }
    }

    /// A guest load of `size` bytes at `offset` in the distributor frame.
    pub fn dist_read(&mut self, offset: u64, size: AccessSize) -> Result<MmioRead, AccessError> {
        let access = self.decode_dist(offset, size)?;
        Ok(self.read_part(&access, ALL_PARTS))
    }

    /// A guest store of `value` (its low `size` bytes) at `offset` in the distributor frame.
    pub fn dist_write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Changes, AccessError> {
        let access = self.decode_dist(offset, size)?;
        Ok(self.write_part(&access, value, ALL_PARTS))
    }

    /// A guest load of `size` bytes at `offset` from the redistributor region's base (vCPU
    /// `offset / 0x20000`'s RD_base, then its SGI_base).
    pub fn redist_read(&mut self, offset: u64, size: AccessSize) -> Result<MmioRead, AccessError> {
        let access = self.decode_redist(offset, size)?;
        Ok(self.read_part(&access, ALL_PARTS))
    }

    /// A guest store of `value` (its low `size` bytes) at `offset` from the redistributor
    /// region's base.
    pub fn redist_write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Changes, AccessError> {
        let access = self.decode_redist(offset, size)?;
        Ok(self.write_part(&access, value, ALL_PARTS))
    }

    /// Decodes and checks a guest access of `size` at `offset` in the distributor frame,
    /// without performing it: the error [`Vgic::dist_read`] / [`Vgic::dist_write`] would
    /// return, or the access for [`Vgic::read_part`] / [`Vgic::write_part`].
    pub fn decode_dist(&self, offset: u64, size: AccessSize) -> Result<DecodedAccess, AccessError> {
        if offset >= DIST_FRAME_SIZE {
            return Err(AccessError::OutOfRange(offset));
        }
        let (reg, start) = decode_dist(offset);
        let at = check(reg, start, offset, size)?;
        Ok(DecodedAccess { reg, frame: Frame::Dist, at, size })
    }

    /// [`Vgic::decode_dist`] for the redistributor region (`offset` from its base).
    pub fn decode_redist(&self, offset: u64, size: AccessSize) -> Result<DecodedAccess, AccessError> {
        let (reg, start, local, frame) = self.decode_redist_offset(offset)?;
        let at = check(reg, start, local, size).map_err(|e| with_offset(e, offset))?;
        Ok(DecodedAccess { reg, frame, at, size })
    }

    /// A decoded load ([`Vgic::decode_dist`]) of only the INTIDs of `part` (see
    /// [`DecodedAccess::parts`]); the other INTIDs' bits read as zero, so the reads of
    /// disjoint parts combine with a bitwise OR (their [`MmioRead::linked`] masks too). The
    /// glue splits a long access in parts so that each holds its lock only briefly.
    pub fn read_part(&mut self, access: &DecodedAccess, part: u32) -> MmioRead {
        self.read(access.reg, access.frame, access.at, access.size, part)
    }

    /// A decoded store of `value` (its low bytes, as the access's size) to only the INTIDs of
    /// `part`: the stores of disjoint parts covering [`DecodedAccess::parts`] do what the
    /// whole store does, each reporting the [`Change`] of its own INTIDs.
    pub fn write_part(&mut self, access: &DecodedAccess, value: u64, part: u32) -> Changes {
        self.write(access.reg, access.frame, access.at, access.size, value & access.size.mask(), part)
    }

    /// The vCPU, register and frame of `offset` from the redistributor region's base.
    fn decode_redist_offset(&self, offset: u64) -> Result<(Reg, u64, u64, Frame), AccessError> {
        let vcpu = offset / REDIST_STRIDE;
        if vcpu >= self.vcpus as u64 || vcpu >= MAX_VCPUS as u64 {
            return Err(AccessError::OutOfRange(offset));
        }
        let in_stride = offset % REDIST_STRIDE;
        let (reg, start) = if in_stride < REDIST_FRAME_SIZE {
            decode_rd(in_stride)
        } else {
            decode_sgi(in_stride - REDIST_FRAME_SIZE)
        };
        let local = in_stride % REDIST_FRAME_SIZE;
        Ok((reg, start, local, Frame::Redist(vcpu as usize)))
    }
}

/// A guest access to the distributor or a redistributor, decoded and checked
/// ([`Vgic::decode_dist`], [`Vgic::decode_redist`]): performed with [`Vgic::read_part`] or
/// [`Vgic::write_part`], in one go or in parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedAccess {
    reg: Reg,
    frame: Frame,
    /// The position of the access in its register.
    at: u32,
    size: AccessSize,
}

impl DecodedAccess {
    /// The parts (INTIDs) the access covers, bit `i` for the register's `i`-th INTID (bit
    /// `i` of a bit-array register, field `i` of an ICFGR, byte `i` of the access to an
    /// IPRIORITYR; a register that is not per-INTID is one part, bit 0, always done whole).
    /// For a store of `store` to a bit-array register, only the INTIDs whose bit is set (a
    /// zero bit changes nothing): 0 if none.
    pub fn parts(&self, store: Option<u64>) -> u32 {
        match self.reg {
            Reg::Bits(..) => store.map_or(u32::MAX, |value| value as u32),
            Reg::Config(_) => (1 << (INTIDS_PER_BANK / 2)) - 1,
            Reg::Priority(_) => (1 << self.size.bytes()) - 1,
            _ => 1,
        }
    }
}

/// `error` reporting the region offset rather than the frame-local one.
fn with_offset(error: AccessError, offset: u64) -> AccessError {
    match error {
        AccessError::OutOfRange(_) => AccessError::OutOfRange(offset),
        AccessError::BadSize(_, size) => AccessError::BadSize(offset, size),
        AccessError::Misaligned(_, size) => AccessError::Misaligned(offset, size),
    }
}
