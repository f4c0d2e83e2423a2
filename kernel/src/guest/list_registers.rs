//! The GICv3 virtual CPU interface's list registers (`ICH_LR<n>_EL2`) of this CPU: how the
//! core puts a virtual interrupt in front of the guest — a software one with an EOI
//! maintenance request, or a physical one hardware-linked — and learns when the guest is
//! done.

use aarch64_cpu::registers::{
    ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2, ICH_AP1R1_EL2, ICH_AP1R2_EL2,
    ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2,
    ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2, ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2,
    ICH_LR15_EL2, ICH_VMCR_EL2, ICH_VTR_EL2, Readable, Writeable,
};
use tock_registers::LocalRegisterCopy;

/// The list-register layout (the same for all sixteen).
type Lr = LocalRegisterCopy<u64, aarch64_cpu::registers::ICH_LR0_EL2::Register>;
use aarch64_cpu::registers::ICH_LR0_EL2 as LR;

/// Most list registers an implementation has.
pub const MAX_LIST_REGISTERS: usize = 16;

/// What a list register holds, as far as the core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrState {
    /// Empty: the guest has deactivated what was there (or nothing was).
    Invalid,
    /// Waiting for the guest to acknowledge it.
    Pending,
    /// Acknowledged, not yet deactivated.
    Active,
    /// Acknowledged, and pending again.
    PendingActive,
}

/// The number of list registers of this CPU's virtual interface.
pub fn count() -> usize {
    (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LIST_REGISTERS)
}

/// Turns on the virtual CPU interface (`ICH_HCR_EL2.En`), all maintenance requests off,
/// with the state of a virtual CPU interface that powers up: no active priorities
/// (`ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2` cleared) and `ICH_VMCR_EL2` zero (priority mask 0,
/// both groups disabled, the smallest binary points, EOImode 0), whatever firmware or an
/// earlier run left there.
pub fn enable_interface() {
    clear_active_priorities();
    ICH_VMCR_EL2.set(0);
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
}

/// Requests (or stops requesting) the underflow maintenance interrupt: raised when at most
/// one list register holds something, so the core can refill them.
pub fn request_underflow(requested: bool) {
    let value = LocalRegisterCopy::<u64, aarch64_cpu::registers::ICH_HCR_EL2::Register>::new(ICH_HCR_EL2.get());
    let mut value = value;
    value.modify(if requested { ICH_HCR_EL2::UIE::SET } else { ICH_HCR_EL2::UIE::CLEAR });
    ICH_HCR_EL2.set(value.get());
}

fn read_raw(index: usize) -> u64 {
    match index {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

fn write_raw(index: usize, value: u64) {
    match index {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        15 => ICH_LR15_EL2.set(value),
        _ => {}
    }
}

/// A bit per list register holding no valid interrupt (`ICH_ELRSR_EL2`): one system
/// register read says which list registers the guest emptied.
pub fn empty_mask() -> u32 {
    let elrsr: u64;
    // SAFETY: reading ICH_ELRSR_EL2 (the virtual interface's empty list register status, a
    // read-only register of this CPU's EL2 state) has no side effect.
    unsafe { core::arch::asm!("mrs {}, ich_elrsr_el2", out(reg) elrsr, options(nomem, nostack, preserves_flags)) };
    elrsr as u32
}

/// A bit per list register holding a software interrupt the guest deactivated, whose EOI
/// maintenance request is still outstanding (`ICH_EISR_EL2`): what keeps the EOI
/// maintenance interrupt asserted until the list register is cleared.
pub fn eoi_mask() -> u32 {
    let eisr: u64;
    // SAFETY: reading ICH_EISR_EL2 (the virtual interface's end-of-interrupt status, a
    // read-only register of this CPU's EL2 state) has no side effect.
    unsafe { core::arch::asm!("mrs {}, ich_eisr_el2", out(reg) eisr, options(nomem, nostack, preserves_flags)) };
    eisr as u32
}

/// The state and virtual INTID of list register `index`.
pub fn read(index: usize) -> (LrState, u32) {
    let lr = Lr::new(read_raw(index));
    (state_of(lr), lr.read(LR::vINTID) as u32)
}

/// The state of list register value `lr`.
fn state_of(lr: Lr) -> LrState {
    match lr.read(LR::State) {
        0b01 => LrState::Pending,
        0b10 => LrState::Active,
        0b11 => LrState::PendingActive,
        _ => LrState::Invalid,
    }
}

/// The state and priority of list register `index` (one read of it).
pub fn state_and_priority(index: usize) -> (LrState, u8) {
    let lr = Lr::new(read_raw(index));
    (state_of(lr), lr.read(LR::Priority) as u8)
}

/// Puts virtual interrupt `intid` (Group 1, `priority`) pending in list register `index`,
/// asking for an EOI maintenance interrupt when the guest deactivates it (a software
/// interrupt: SGIs, the core's posts, emulated devices).
pub fn inject(index: usize, intid: u32, priority: u8) {
    let mut lr = Lr::new(0);
    lr.write(LR::State.val(0b01) + LR::Group::SET + LR::Priority.val(u64::from(priority)) + LR::EOI::SET + LR::vINTID.val(u64::from(intid)));
    write_raw(index, lr.get());
}

/// Puts physical interrupt `intid` (a PPI or SPI this CPU acknowledged, priority dropped and
/// still active) hardware-linked in list register `index`: pending, Group 1, `priority`,
/// `HW = 1`, `pINTID = vINTID = intid`. The guest's deactivation of the virtual interrupt
/// (its EOI with EOImode 0, or its ICV_DIR_EL1) deactivates the physical one; no maintenance
/// interrupt is asked for (with `HW = 1` the EOI bit is part of pINTID), so the core learns
/// of the completion only when it next reads this list register back as invalid.
pub fn inject_linked(index: usize, intid: u32, priority: u8) {
    let mut lr = Lr::new(0);
    lr.write(
        LR::State.val(0b01)
            + LR::HW::SET
            + LR::Group::SET
            + LR::Priority.val(u64::from(priority))
            + LR::pINTID.val(u64::from(intid))
            + LR::vINTID.val(u64::from(intid)),
    );
    write_raw(index, lr.get());
}

/// Empties list register `index`.
pub fn clear(index: usize) {
    write_raw(index, 0);
}

/// Requests (or stops requesting) the "no pending" maintenance interrupt: raised as soon as
/// no list register holds a pending interrupt, i.e. when the guest acknowledged the last one.
/// The sirq measurement uses it to time the guest's acknowledge.
pub fn request_no_pending(requested: bool) {
    let mut value = LocalRegisterCopy::<u64, aarch64_cpu::registers::ICH_HCR_EL2::Register>::new(ICH_HCR_EL2.get());
    value.modify(if requested { ICH_HCR_EL2::NPIE::SET } else { ICH_HCR_EL2::NPIE::CLEAR });
    ICH_HCR_EL2.set(value.get());
}

/// Forgets every active priority of this CPU's virtual CPU interface (`ICH_AP0R<n>_EL2`,
/// `ICH_AP1R<n>_EL2`, as many as `ICH_VTR_EL2.PREbits` implements), as a PE that powers up
/// has none: for a vCPU that stopped with an interrupt acknowledged and not completed, whose
/// list register the core emptied.
pub fn clear_active_priorities() {
    // PREbits + 1 preemption bits: 5 need one register per group, 6 two, 7 four.
    let registers = 1usize << (ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) as usize + 1).saturating_sub(5).min(2);
    ICH_AP0R0_EL2.set(0);
    ICH_AP1R0_EL2.set(0);
    if registers > 1 {
        ICH_AP0R1_EL2.set(0);
        ICH_AP1R1_EL2.set(0);
    }
    if registers > 2 {
        ICH_AP0R2_EL2.set(0);
        ICH_AP0R3_EL2.set(0);
        ICH_AP1R2_EL2.set(0);
        ICH_AP1R3_EL2.set(0);
    }
}
