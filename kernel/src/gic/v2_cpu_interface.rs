//! The GICv2 physical CPU interface (GICC) acknowledge/EOI path, lock-free because the
//! frame is banked per CPU. (`arm-gic`'s GICv2 driver needs `&mut` for these, which would
//! put a lock in every interrupt.)

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    /// GICC_CTLR (non-secure view).
    GICC_CTLR [
        /// Enable signalling of group 1 interrupts (group 0 without security extensions).
        ENABLE OFFSET(0) NUMBITS(1) []
    ],
    /// GICC_PMR: priority mask.
    GICC_PMR [
        /// Interrupts with a numerically lower priority are signalled.
        PRIORITY OFFSET(0) NUMBITS(8) []
    ],
    /// GICC_IAR / GICC_EOIR.
    GICC_IAR [
        /// Interrupt ID; 1023 means none pending.
        INTERRUPT_ID OFFSET(0) NUMBITS(10) [],
        /// Source CPU of an SGI.
        CPUID OFFSET(10) NUMBITS(3) []
    ]
];

register_structs! {
    /// Start of the GICC frame.
    GiccRegisters {
        (0x00 => ctlr: ReadWrite<u32, GICC_CTLR::Register>),
        (0x04 => pmr: ReadWrite<u32, GICC_PMR::Register>),
        (0x08 => _bpr),
        (0x0c => iar: ReadOnly<u32, GICC_IAR::Register>),
        (0x10 => eoir: WriteOnly<u32, GICC_IAR::Register>),
        (0x14 => _rpr),
        (0x18 => hppir: ReadOnly<u32, GICC_IAR::Register>),
        (0x1c => @END),
    }
}

/// INTID the GIC returns when nothing is pending.
const SPURIOUS: u32 = 1023;

/// The calling CPU's view of the GICC frame.
pub struct GicV2CpuInterface {
    registers: *const GiccRegisters,
}

impl GicV2CpuInterface {
    /// # Safety
    /// `base` must be the mapped GICC frame.
    pub unsafe fn new(base: usize) -> Self {
        Self { registers: base as *const GiccRegisters }
    }

    fn regs(&self) -> &GiccRegisters {
        // SAFETY: `new`'s contract.
        unsafe { &*self.registers }
    }

    /// Enables signalling to this CPU with the given priority mask.
    pub fn enable(&self, priority_mask: u8) {
        self.regs().pmr.write(GICC_PMR::PRIORITY.val(u32::from(priority_mask)));
        self.regs().ctlr.write(GICC_CTLR::ENABLE::SET);
    }

    /// Acknowledges the highest-priority pending interrupt; returns the full IAR value
    /// (the source CPU of an SGI must be written back on EOI).
    pub fn acknowledge(&self) -> Option<u32> {
        let iar = self.regs().iar.get();
        let intid = iar & 0x3ff;
        if intid >= SPURIOUS - 3 { None } else { Some(iar) }
    }

    /// Sets the priority mask: only interrupts of a numerically lower priority are signalled.
    pub fn set_priority_mask(&self, priority_mask: u8) {
        self.regs().pmr.write(GICC_PMR::PRIORITY.val(u32::from(priority_mask)));
    }

    /// The INTID of the highest-priority pending interrupt (GICC_HPPIR, which ignores the
    /// priority mask), if any.
    pub fn highest_pending(&self) -> Option<u32> {
        let intid = self.regs().hppir.read(GICC_IAR::INTERRUPT_ID);
        (intid < SPURIOUS - 3).then_some(intid)
    }

    /// Ends the interrupt whose IAR value was returned by [`acknowledge`](Self::acknowledge).
    pub fn end_of_interrupt(&self, iar: u32) {
        self.regs().eoir.set(iar);
    }
}
