//! Every guest change x every owner kind -> what reaches the physical GIC.

use super::*;
use crate::mmio::AccessSize;
use crate::ownership::Owner;
use crate::vgic::regs::*;

/// Records the operations it is asked for.
#[derive(Default)]
struct Recorder(Vec<LineOp>);

impl PhysicalGic for Recorder {
    fn enable(&mut self, intid: u32, cpu: usize, edge: bool) {
        self.0.push(LineOp::Enable { intid, cpu, edge });
    }
    fn disable(&mut self, intid: u32, cpu: usize) {
        self.0.push(LineOp::Disable { intid, cpu });
    }
    fn deactivate(&mut self, intid: u32, cpu: usize) {
        self.0.push(LineOp::Deactivate { intid, cpu });
    }
    fn route(&mut self, intid: u32, route: u64) {
        self.0.push(LineOp::Route { intid, route });
    }
}

const OWNERS: [Owner; 4] = [Owner::Unassigned, Owner::Core, Owner::PassThrough, Owner::Virtual];
/// The PPI and the SPI of each owner kind (same order as [`OWNERS`]).
const PPIS: [u32; 4] = [20, 21, 22, 23];
const SPIS: [u32; 4] = [40, 41, 42, 43];
/// The vCPU whose redistributor the PPI tests write.
const VCPU: usize = 1;

fn setup() -> (Vgic, OwnershipTable<2>) {
    let table = OwnershipTable::<2>::new();
    for (i, owner) in OWNERS.into_iter().enumerate() {
        table.set_everywhere(PPIS[i], owner).unwrap();
        table.set_everywhere(SPIS[i], owner).unwrap();
    }
    let mut vgic = Vgic::new(&[0x0, 0x1], 64).unwrap();
    vgic.apply_ownership(&table);
    (vgic, table)
}

/// A guest change of one interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Enable,
    Disable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority,
    Trigger,
    Route,
}

const OPS: [Op; 9] =
    [Op::Enable, Op::Disable, Op::SetPending, Op::ClearPending, Op::SetActive, Op::ClearActive, Op::Priority, Op::Trigger, Op::Route];

/// The register offset (in the frame its INTID belongs to), access size and value of `op`
/// on `intid`.
fn register(op: Op, intid: u32) -> (u64, AccessSize, u64) {
    let private = intid < FIRST_SPI;
    let bit_reg = |dist: u64, redist: u64| {
        let offset = if private { REDIST_FRAME_SIZE + redist } else { dist + 4 * u64::from(intid / 32) };
        (offset, AccessSize::Word, 1u64 << (intid % 32))
    };
    match op {
        Op::Enable => bit_reg(GICD_ISENABLER, GICR_ISENABLER0),
        Op::Disable => bit_reg(GICD_ICENABLER, GICR_ICENABLER0),
        Op::SetPending => bit_reg(GICD_ISPENDR, GICR_ISPENDR0),
        Op::ClearPending => bit_reg(GICD_ICPENDR, GICR_ICPENDR0),
        Op::SetActive => bit_reg(GICD_ISACTIVER, GICR_ISACTIVER0),
        Op::ClearActive => bit_reg(GICD_ICACTIVER, GICR_ICACTIVER0),
        Op::Priority => {
            let offset = if private { REDIST_FRAME_SIZE + GICR_IPRIORITYR0 } else { GICD_IPRIORITYR } + u64::from(intid);
            (offset, AccessSize::Byte, 0x40)
        }
        Op::Trigger => {
            let offset = if private { REDIST_FRAME_SIZE + GICR_ICFGR0 } else { GICD_ICFGR } + 4 * u64::from(intid / 16);
            (offset, AccessSize::Word, 0b10 << (2 * (intid % 16)))
        }
        Op::Route => (GICD_IROUTER + 8 * u64::from(intid), AccessSize::Doubleword, 0x1),
    }
}

/// Writes `op` for `intid` (of [`VCPU`]'s redistributor if private) and plans it.
fn write(vgic: &mut Vgic, table: &OwnershipTable<2>, op: Op, intid: u32) -> Plan {
    let (offset, size, value) = register(op, intid);
    let changes = if intid < FIRST_SPI {
        vgic.redist_write(VCPU as u64 * REDIST_STRIDE + offset, size, value)
    } else {
        vgic.dist_write(offset, size, value)
    }
    .unwrap();
    plan(vgic, table, &changes)
}

/// The bank the physical operations of `intid` address.
fn cpu_of(intid: u32) -> usize {
    if intid < FIRST_SPI { VCPU } else { 0 }
}

/// Brings `intid` into the state `op` is meaningful from: enabled (and, for a passed-through
/// one, forwarded, so that a disable or pending clear gives a physical activation up),
/// pending and active as needed.
fn prepare(vgic: &mut Vgic, table: &OwnershipTable<2>, op: Op, intid: u32, owner: Owner) {
    if op != Op::Enable {
        let _ = write(vgic, table, Op::Enable, intid);
    }
    if owner == Owner::PassThrough && matches!(op, Op::Disable | Op::ClearPending) {
        assert!(matches!(vgic.forward(intid, cpu_of(intid)), Ok(crate::vgic::Forwarded::Linked { .. })));
    }
    if op == Op::ClearActive {
        let _ = write(vgic, table, Op::SetActive, intid);
    }
}

#[test]
fn every_change_times_every_owner_kind() {
    for op in OPS {
        for (i, owner) in OWNERS.into_iter().enumerate() {
            let intids: &[u32] = if op == Op::Route { &[SPIS[i]] } else { &[PPIS[i], SPIS[i]] };
            for &intid in intids {
                let (mut vgic, table) = setup();
                prepare(&mut vgic, &table, op, intid, owner);
                let before = vgic.state(intid, cpu_of(intid));
                let plan = write(&mut vgic, &table, op, intid);
                let mut gic = Recorder::default();
                plan.perform(&mut gic);
                let cpu = cpu_of(intid);
                let expected: Vec<LineOp> = match (owner, op) {
                    (Owner::PassThrough, Op::Enable) => vec![LineOp::Enable { intid, cpu, edge: false }],
                    (Owner::PassThrough, Op::Disable) => {
                        vec![LineOp::Disable { intid, cpu }, LineOp::Deactivate { intid, cpu }]
                    }
                    (Owner::PassThrough, Op::ClearPending) => vec![LineOp::Deactivate { intid, cpu }],
                    (Owner::PassThrough, Op::Route) => vec![LineOp::Route { intid, route: 0x1 }],
                    _ => vec![],
                };
                assert_eq!(gic.0, expected, "{op:?} on {owner:?} INTID {intid}");
                match owner {
                    // Hidden: the model refuses to say anything and the write changed nothing.
                    Owner::Core | Owner::Unassigned => {
                        assert_eq!(before, Err(crate::vgic::Error::Concealed(intid)));
                        assert_eq!(vgic.state(intid, cpu), Err(crate::vgic::Error::Concealed(intid)));
                        let (offset, size, _) = register(op, intid);
                        let read = if intid < FIRST_SPI {
                            vgic.redist_read(VCPU as u64 * REDIST_STRIDE + offset, size)
                        } else {
                            vgic.dist_read(offset, size)
                        };
                        assert_eq!(read.unwrap().value, 0, "{op:?} on {owner:?} INTID {intid} reads as zero");
                    }
                    // Seen by the guest: the model took the write.
                    Owner::PassThrough | Owner::Virtual => {
                        let after = vgic.state(intid, cpu).unwrap();
                        let took = match op {
                            Op::Enable => after.enabled,
                            Op::Disable => !after.enabled,
                            Op::SetPending => after.pending(),
                            Op::ClearPending => !after.pending_latch,
                            Op::SetActive => after.active,
                            Op::ClearActive => !after.active,
                            Op::Priority => after.priority == 0x40,
                            Op::Trigger => after.edge,
                            Op::Route => vgic.route(intid) == Ok(0x1),
                        };
                        assert!(took, "{op:?} on {owner:?} INTID {intid} reaches the model");
                    }
                }
            }
        }
    }
}

#[test]
fn the_trigger_the_guest_chose_is_the_one_enabled() {
    let (mut vgic, table) = setup();
    for intid in [PPIS[2], SPIS[2]] {
        assert!(write(&mut vgic, &table, Op::Trigger, intid).ops().next().is_none());
        let ops: Vec<_> = write(&mut vgic, &table, Op::Enable, intid).ops().collect();
        assert_eq!(ops, vec![LineOp::Enable { intid, cpu: cpu_of(intid), edge: true }]);
    }
}

#[test]
fn writing_every_bit_of_every_bank_reaches_only_passed_through_interrupts() {
    let (mut vgic, table) = setup();
    let bit_regs = [
        (GICD_ISENABLER, GICR_ISENABLER0),
        (GICD_ISPENDR, GICR_ISPENDR0),
        (GICD_ISACTIVER, GICR_ISACTIVER0),
        (GICD_ICACTIVER, GICR_ICACTIVER0),
        (GICD_ICPENDR, GICR_ICPENDR0),
        (GICD_ICENABLER, GICR_ICENABLER0),
    ];
    let mut gic = Recorder::default();
    for (dist, redist) in bit_regs {
        for vcpu in 0..2u64 {
            let changes = vgic.redist_write(vcpu * REDIST_STRIDE + REDIST_FRAME_SIZE + redist, AccessSize::Word, 0xffff_ffff).unwrap();
            plan(&vgic, &table, &changes).perform(&mut gic);
        }
        for bank in 1..3u64 {
            let changes = vgic.dist_write(dist + 4 * bank, AccessSize::Word, 0xffff_ffff).unwrap();
            plan(&vgic, &table, &changes).perform(&mut gic);
        }
    }
    assert!(!gic.0.is_empty());
    for op in gic.0 {
        let (intid, cpu) = match op {
            LineOp::Enable { intid, cpu, .. } | LineOp::Disable { intid, cpu } | LineOp::Deactivate { intid, cpu } => (intid, cpu),
            LineOp::Route { intid, .. } => (intid, 0),
        };
        assert_eq!(table.owner(cpu, intid), Owner::PassThrough, "{op:?}");
    }
    // The core's and the unassigned interrupts stayed in their reset state, invisible.
    for intid in [PPIS[0], PPIS[1], SPIS[0], SPIS[1]] {
        assert!(vgic.is_concealed(intid, VCPU));
        assert!(vgic.set_pending(intid, VCPU).is_err());
        assert!(vgic.forward(intid, VCPU).is_err());
    }
}

#[test]
fn the_guests_sgis_are_always_virtual() {
    let table = OwnershipTable::<2>::new();
    // The core's kick SGI is the core's physically; the guest's SGI 0 is its own anyway.
    table.set_everywhere(0, Owner::Core).unwrap();
    let mut vgic = Vgic::new(&[0x0, 0x1], 32).unwrap();
    vgic.apply_ownership(&table);
    assert!(!vgic.is_concealed(0, 0));
    let changes = vgic.redist_write(REDIST_FRAME_SIZE + GICR_ISENABLER0, AccessSize::Word, 0xffff).unwrap();
    assert!(vgic.state(0, 0).unwrap().enabled);
    assert_eq!(plan(&vgic, &table, &changes).ops().count(), 0);
}

#[test]
fn a_route_moves_at_once_when_idle_and_after_the_activation_when_in_flight() {
    let (mut vgic, table) = setup();
    let spi = SPIS[2];
    vgic.dist_write(GICD_CTLR, AccessSize::Word, u64::from(CTLR_ENABLE_GRP1 | CTLR_ARE)).unwrap();
    let (offset, size, value) = register(Op::Enable, spi);
    vgic.dist_write(offset, size, value).unwrap();
    // Idle: moved at once.
    let plan = write(&mut vgic, &table, Op::Route, spi);
    assert_eq!(plan.ops().collect::<Vec<_>>(), [LineOp::Route { intid: spi, route: 0x1 }]);
    assert_eq!(plan.deferred_route, None);
    // Forwarded and listed on vCPU 1: the route back to vCPU 0 waits for the completion.
    vgic.forward(spi, 1).unwrap();
    let mut taken = [(0, 0)];
    assert_eq!(vgic.take_most_urgent(1, &mut taken), 1);
    let changes = vgic.dist_write(GICD_IROUTER + 8 * u64::from(spi), AccessSize::Doubleword, 0x0).unwrap();
    let deferred = super::plan(&vgic, &table, &changes);
    assert_eq!(deferred.ops().count(), 0, "no move while the activation is in flight");
    assert_eq!(deferred.deferred_route, Some(spi));
    assert_eq!(route_after_completion(&vgic, &table, spi), None, "still listed");
    vgic.deactivate(1, spi).unwrap();
    assert_eq!(route_after_completion(&vgic, &table, spi), Some(LineOp::Route { intid: spi, route: 0x0 }));
    // Never for an SPI the guest does not pass through.
    assert_eq!(route_after_completion(&vgic, &table, SPIS[3]), None);
    assert_eq!(route_after_completion(&vgic, &table, SPIS[1]), None);
}
