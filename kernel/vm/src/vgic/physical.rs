//! The physical side of a guest's GIC write: which physical GIC operations a vGIC
//! [`Changes`] calls for, decided by the [`OwnershipTable`].
//!
//! Only [`Owner::PassThrough`](crate::ownership::Owner::PassThrough) PPIs and SPIs ever
//! reach the physical GIC: the guest's enable enables the physical line (with the guest's
//! trigger), its disable masks it, and an entry that gave up a physical activation
//! ([`Change::unlinked`](super::Change::unlinked)) has that physical interrupt deactivated
//! (after the mask, for a disable: a level still high must not fire again in between).
//! Pending, active, priority, trigger and routing changes stay in the model: the physical
//! interrupt keeps the core's priority and routing, and is forwarded to whichever vCPU the
//! model targets. Interrupts the core owns, unassigned ones (both hidden from the guest by
//! [`Vgic::apply_ownership`], so their writes change nothing) and emulated devices'
//! interrupts (virtual only) and the guest's SGIs (virtual, per vCPU) never produce an
//! operation — the table is asked again here, so even a model bug could not reach them.
//!
//! The hypervisor plans under its vGIC lock ([`plan`]) and performs the [`Plan`] after
//! releasing it, through its [`PhysicalGic`].

use super::{Changes, ChangeKind, Vgic};
use crate::ownership::OwnershipTable;

/// The physical GIC operations a guest write may call for.
pub trait PhysicalGic {
    /// Enables `intid` (of `cpu`'s redistributor, for a PPI) for the guest, edge-triggered
    /// or level-sensitive.
    fn enable(&mut self, intid: u32, cpu: usize, edge: bool);
    /// Masks `intid` (of `cpu`'s redistributor, for a PPI).
    fn disable(&mut self, intid: u32, cpu: usize);
    /// Deactivates the physical interrupt `intid` (of `cpu`, for a PPI).
    fn deactivate(&mut self, intid: u32, cpu: usize);
}

/// One physical GIC operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineOp {
    /// [`PhysicalGic::enable`].
    Enable {
        /// The INTID.
        intid: u32,
        /// The CPU whose bank (for a PPI).
        cpu: usize,
        /// Edge-triggered.
        edge: bool,
    },
    /// [`PhysicalGic::disable`].
    Disable {
        /// The INTID.
        intid: u32,
        /// The CPU whose bank (for a PPI).
        cpu: usize,
    },
    /// [`PhysicalGic::deactivate`].
    Deactivate {
        /// The INTID.
        intid: u32,
        /// The CPU whose bank (for a PPI).
        cpu: usize,
    },
}

/// Most operations one write calls for: a 32-INTID bank, a disable and a deactivation each.
const MAX_OPS: usize = 64;

/// The physical operations of one guest write, in order. (Its replay-log accounting is the
/// write's [`Change::entered`](super::Change::entered) and [`Change::left`](super::Change::left).)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    ops: [Option<LineOp>; MAX_OPS],
    len: usize,
}

impl Plan {
    /// Nothing to do.
    pub const fn empty() -> Self {
        Self { ops: [None; MAX_OPS], len: 0 }
    }

    fn push(&mut self, op: LineOp) {
        if let Some(slot) = self.ops.get_mut(self.len) {
            *slot = Some(op);
            self.len += 1;
        }
    }

    /// The operations, in the order to perform them.
    pub fn ops(&self) -> impl Iterator<Item = LineOp> + '_ {
        self.ops[..self.len].iter().flatten().copied()
    }

    /// Performs the operations on `gic`.
    pub fn perform(&self, gic: &mut impl PhysicalGic) {
        for op in self.ops() {
            match op {
                LineOp::Enable { intid, cpu, edge } => gic.enable(intid, cpu, edge),
                LineOp::Disable { intid, cpu } => gic.disable(intid, cpu),
                LineOp::Deactivate { intid, cpu } => gic.deactivate(intid, cpu),
            }
        }
    }
}

/// The physical operations `changes` (just returned by a write to `vgic`) call for, given
/// who owns what in `table`.
pub fn plan<const CPUS: usize>(vgic: &Vgic, table: &OwnershipTable<CPUS>, changes: &Changes) -> Plan {
    let mut plan = Plan::empty();
    let Some(change) = changes.change else { return plan };
    let cpu = change.vcpu.unwrap_or(0);
    for intid in change.intids() {
        let bit = 1u32 << (intid - change.base);
        let unlinked = change.unlinked & bit != 0;
        if !table.reaches_physical(cpu, intid) {
            continue;
        }
        match change.kind {
            ChangeKind::Enabled => {
                let edge = vgic.state(intid, cpu).is_ok_and(|s| s.edge);
                plan.push(LineOp::Enable { intid, cpu, edge });
            }
            ChangeKind::Disabled => {
                plan.push(LineOp::Disable { intid, cpu });
                if unlinked {
                    plan.push(LineOp::Deactivate { intid, cpu });
                }
            }
            _ if unlinked => plan.push(LineOp::Deactivate { intid, cpu }),
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests;
