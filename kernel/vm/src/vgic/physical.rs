//! The physical side of a guest's GIC write: which physical GIC operations a vGIC
//! [`Changes`] calls for, decided by the [`OwnershipTable`].
//!
//! Only [`Owner::PassThrough`](crate::ownership::Owner::PassThrough) PPIs and SPIs ever
//! reach the physical GIC: the guest's enable enables the physical line (with the guest's
//! trigger), its disable masks it, and an entry that gave up a physical activation
//! ([`Change::unlinked`](super::Change::unlinked)) has that physical interrupt deactivated
//! (after the mask, for a disable: a level still high must not fire again in between).
//! A passed-through SPI's routing follows the guest's (vCPU *i* runs on CPU *i*, and a
//! vCPU's MPIDR is its CPU's, so the guest's GICD_IROUTER value is the physical one): the
//! physical route moves with it ([`LineOp::Route`]), at once if the interrupt is idle, or,
//! while a physical activation is in flight (owned by a pending entry or a list register),
//! once that activation ends ([`route_after_completion`]). Pending, active, priority and
//! trigger changes stay in the model: the physical interrupt keeps the core's priority, and
//! is forwarded to whichever vCPU the model targets. Interrupts the core owns, unassigned ones (both hidden from the guest by
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
    /// Routes SPI `intid` as GICD_IROUTER value `route` says (affinity, or 1-of-N).
    fn route(&mut self, intid: u32, route: u64);
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
    /// [`PhysicalGic::route`].
    Route {
        /// The SPI.
        intid: u32,
        /// The GICD_IROUTER value.
        route: u64,
    },
}

/// The physical operations of one guest write, in order. A write touches one 32-INTID bank,
/// so the plan is a few masks over that bank (a few words, cheap to build and return under
/// the vGIC lock with IRQs masked), read back as operations by [`Plan::ops`]. (Its
/// replay-log accounting is the write's [`Change::entered`](super::Change::entered) and
/// [`Change::left`](super::Change::left).)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The bank's first INTID.
    base: u32,
    /// The CPU whose bank (for private INTIDs).
    cpu: usize,
    /// INTIDs to enable, and which of them edge-triggered.
    enable: u32,
    edge: u32,
    /// INTIDs to mask.
    disable: u32,
    /// INTIDs to deactivate (after the mask, for one also disabled).
    deactivate: u32,
    /// The SPI to route now, and its GICD_IROUTER value.
    route: Option<(u32, u64)>,
    /// An SPI whose route the guest changed while its physical activation is in flight: the
    /// glue moves it when that activation ends ([`route_after_completion`]).
    pub deferred_route: Option<u32>,
}

impl Plan {
    /// Nothing to do.
    pub const fn empty() -> Self {
        Self { base: 0, cpu: 0, enable: 0, edge: 0, disable: 0, deactivate: 0, route: None, deferred_route: None }
    }

    /// Whether there is no operation to perform.
    pub const fn is_empty(&self) -> bool {
        self.enable | self.disable | self.deactivate == 0 && self.route.is_none()
    }

    /// The operations, in the order to perform them: by ascending INTID, for each its
    /// enable, or its mask then its deactivation, or its route.
    pub fn ops(&self) -> impl Iterator<Item = LineOp> + '_ {
        let (base, cpu) = (self.base, self.cpu);
        let route = self.route;
        let mut bits = self.enable | self.disable | self.deactivate;
        let mut next_route = route;
        let mut queued: Option<LineOp> = None;
        core::iter::from_fn(move || {
            if let Some(op) = queued.take() {
                return Some(op);
            }
            if bits != 0 {
                let i = bits.trailing_zeros();
                bits &= bits - 1;
                let (intid, bit) = (base + i, 1u32 << i);
                if self.enable & bit != 0 {
                    return Some(LineOp::Enable { intid, cpu, edge: self.edge & bit != 0 });
                }
                let deactivate = LineOp::Deactivate { intid, cpu };
                if self.disable & bit != 0 {
                    queued = (self.deactivate & bit != 0).then_some(deactivate);
                    return Some(LineOp::Disable { intid, cpu });
                }
                return Some(deactivate);
            }
            next_route.take().map(|(intid, route)| LineOp::Route { intid, route })
        })
    }

    /// Performs the operations on `gic`.
    pub fn perform(&self, gic: &mut impl PhysicalGic) {
        if self.is_empty() {
            return;
        }
        for op in self.ops() {
            match op {
                LineOp::Enable { intid, cpu, edge } => gic.enable(intid, cpu, edge),
                LineOp::Disable { intid, cpu } => gic.disable(intid, cpu),
                LineOp::Deactivate { intid, cpu } => gic.deactivate(intid, cpu),
                LineOp::Route { intid, route } => gic.route(intid, route),
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
    plan.base = change.base;
    plan.cpu = cpu;
    let mut bits = change.mask;
    while bits != 0 {
        let i = bits.trailing_zeros();
        bits &= bits - 1;
        let (intid, bit) = (change.base + i, 1u32 << i);
        let unlinked = change.unlinked & bit != 0;
        if !table.reaches_physical(cpu, intid) {
            continue;
        }
        match change.kind {
            ChangeKind::Enabled => {
                plan.enable |= bit;
                if vgic.state(intid, cpu).is_ok_and(|s| s.edge) {
                    plan.edge |= bit;
                }
            }
            ChangeKind::Disabled => {
                plan.disable |= bit;
                if unlinked {
                    plan.deactivate |= bit;
                }
            }
            ChangeKind::Route => match route_value(vgic, intid) {
                Some(route) => plan.route = Some((intid, route)),
                None => plan.deferred_route = Some(intid),
            },
            _ if unlinked => plan.deactivate |= bit,
            _ => {}
        }
    }
    plan
}

/// Whether SPI `intid`'s physical activation is in flight: owned by its pending entry or a
/// list register, or active in the guest.
fn in_flight(vgic: &Vgic, intid: u32) -> bool {
    vgic.state(intid, 0).is_ok_and(|s| s.hw_pending || s.hw_listed || s.listed || s.active)
}

/// The guest's GICD_IROUTER value for SPI `intid`, unless its physical activation is in
/// flight.
fn route_value(vgic: &Vgic, intid: u32) -> Option<u64> {
    if in_flight(vgic, intid) {
        return None;
    }
    vgic.route(intid).ok()
}

/// After the completion of SPI `intid`, whose route change was deferred
/// ([`Plan::deferred_route`]): the route operation if its activation is no longer in flight
/// (`None`: still in flight — ask again at its next completion — or no longer the guest's).
pub fn route_after_completion<const CPUS: usize>(vgic: &Vgic, table: &OwnershipTable<CPUS>, intid: u32) -> Option<LineOp> {
    if !table.reaches_physical(0, intid) {
        return None;
    }
    route_value(vgic, intid).map(|route| LineOp::Route { intid, route })
}

#[cfg(test)]
mod tests;
