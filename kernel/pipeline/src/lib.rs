//! The companion core's interrupt pipeline: the per-CPU replay log of
//! in-band interrupts, the model of the GIC virtual CPU interface's list registers, and the
//! in-band stage's stall state.
//!
//! Portable, allocation-free and free of hardware access: the arch/vGIC glue reads and writes
//! the registers and calls into this crate, which is unit tested on the host.
//!
//! # How the glue uses it
//!
//! Per CPU: one [`ReplayLog`], one [`ListRegisters`] (sized from ICH_VTR_EL2.ListRegs + 1 or
//! GICH_VTR), one [`StageState`]. All run with physical IRQs masked at EL2 on their own CPU
//! (the log and LRs are `&mut`, per CPU). Who owns each interrupt is not this crate's: the
//! one ownership table is `vm::ownership::OwnershipTable`.
//!
//! **Physical IRQ (EL2 vector).** Read the INTID (ICC_IAR1_EL1 / GICC_IAR), take a timestamp
//! `now`, and look its owner up in the ownership table:
//! - the core's: run the core's handler at once, EOI + deactivate.
//! - passed through to the guest: priority-drop only (EOImode=1: ICC_EOIR1_EL1), do **not** deactivate, then
//!   [`ReplayLog::raise`] with a [`VirqDesc`] carrying the guest's virtual priority (from the
//!   vGIC distributor), the trigger type and `with_hw(intid)` so the guest's deactivation
//!   deactivates the physical interrupt (list register HW bit).
//! - nobody's: count it, disable it at the distributor, deactivate it.
//!
//! **Flush** (inject): whenever the CPU is about to return to the guest — after any exit,
//! including the IRQ above when [`StageState::should_inject_now`] says so, and when the oob
//! scheduler switches back to the in-band stage — do, in this order:
//! 1. [`ListRegisters::sync_from_hardware`] with each LR's state field and EOIcount (then write
//!    EOIcount back to 0). For each [`Completion`] with `deactivate_physical`, write the physical
//!    INTID to ICC_DIR_EL1 / GICC_DIR.
//! 2. Optionally [`ListRegisters::resample_resident`] (see below).
//! 3. [`ListRegisters::flush`]; write back every LR whose bit is set in
//!    [`FlushOutcome::dirty`] (encode [`ListRegisters::get`]: state, vINTID, priority, group 1,
//!    HW + pINTID when `hw()` is set), and set ICH_HCR_EL2.UIE from
//!    [`Maintenance::underflow`] and LRENPIE from [`Maintenance::eoi_count`] (NPIE stays 0).
//!
//! LRs live on the physical CPU while oob threads run (the vCPU is pinned), so nothing needs
//! saving on a stage switch; only the model must not be flushed while the guest runs.
//!
//! **Maintenance IRQ** (PPI 25, the core's): it only means "sync and flush now": do steps
//! 1–3, which refills the LRs and clears or keeps UIE/LRENPIE. UIE is level-sensitive (at most
//! one valid LR); flush only requests it when every LR is occupied, so it cannot storm.
//!
//! **Level interrupts.** The physical line of an in-band level interrupt stays active (not
//! deactivated) while logged, so it cannot re-fire. `flush` asks `line_asserted(desc)` for each
//! level entry before injecting it; the glue answers from the physical pending bit
//! (GICD_ISPENDR / GICR_ISPENDR0: an active level interrupt reads pending while its line is
//! high) or from the emulated device. Returning false drops the entry (counted as
//! `level_dropped`, not a loss) and obliges the glue to deactivate the physical INTID if the
//! entry is hardware-linked. [`ReplayLog::resample`] pushes the same information (e.g. from an
//! emulated device model) without waiting for a flush. [`ListRegisters::resample_resident`]
//! applies it to level interrupts still pending in LRs.
//!
//! **Guest EOImode.** Falling out of active interrupts (and so EOIcount) is off by default;
//! enable it with [`ListRegisters::set_fall_out`] while ICH_VMCR_EL2.VEOIM reads 0.
//!
//! **Doorbells.** Oob code posts a virtual IRQ to Linux with [`ReplayLog::raise`] on the target
//! CPU (without `with_hw`); its timestamp starts the "sirq" latency.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod intid;
pub mod list_registers;
pub mod replay_log;
pub mod stall;
pub mod stats;

mod prio_set;

#[cfg(test)]
mod stress_tests;
#[cfg(test)]
mod test_util;

pub use intid::{Error, IntId, IntKind, NR_BANKED, NR_INTIDS, NR_SGIS, NR_SPIS, Trigger, VirqDesc};
pub use list_registers::{
    Completion, FALLEN_OUT_CAPACITY, FlushOutcome, ListRegisters, LrHwState, LrState, LrStats,
    MAX_LRS, Maintenance, SyncOutcome,
};
pub use replay_log::{DEFAULT_LEVELS, LogStats, Pending, Raised, ReplayLog};
pub use stall::{Stage, StageState, StallStats};
pub use stats::DelayStats;
