use super::regs::*;
use super::*;
use crate::mmio::AccessSize::{Byte, Doubleword, Halfword, Word};
use crate::test_util::XorShift;

const MPIDRS: [u64; 4] = [0x0, 0x1, 0x100, 0x1_0000_0000];
const SPIS: u32 = 64;
const SGI_BASE: u64 = REDIST_FRAME_SIZE;

fn vgic() -> Vgic {
    Vgic::new(&MPIDRS, SPIS).unwrap()
}

fn dr(v: &mut Vgic, offset: u64) -> u64 {
    v.dist_read(offset, Word).unwrap().value
}

fn dw(v: &mut Vgic, offset: u64, value: u64) -> Changes {
    v.dist_write(offset, Word, value).unwrap()
}

fn rr(v: &mut Vgic, vcpu: usize, offset: u64) -> u64 {
    v.redist_read(vcpu as u64 * REDIST_STRIDE + offset, Word)
        .unwrap()
        .value
}

fn rw(v: &mut Vgic, vcpu: usize, offset: u64, value: u64) -> Changes {
    v.redist_write(vcpu as u64 * REDIST_STRIDE + offset, Word, value)
        .unwrap()
}

/// Distributor and redistributors enabled, SPI 40 and PPI 27 (vCPU 0) enabled.
fn enabled() -> Vgic {
    let mut v = vgic();
    dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1 | CTLR_ARE));
    dw(&mut v, GICD_ISENABLER + 4, 1 << 8);
    rw(&mut v, 0, SGI_BASE + GICR_ISENABLER0, 1 << 27);
    v
}


/// The one-bit-per-interrupt register pairs (distributor, redistributor SGI frame) the
/// randomized walks write: set/clear enable, pending and active.
const BIT_REGS: [(u64, u64); 6] = [
    (GICD_ISENABLER, GICR_ISENABLER0),
    (GICD_ICENABLER, GICR_ICENABLER0),
    (GICD_ISPENDR, GICR_ISPENDR0),
    (GICD_ICPENDR, GICR_ICPENDR0),
    (GICD_ISACTIVER, GICR_ISACTIVER0),
    (GICD_ICACTIVER, GICR_ICACTIVER0),
];
#[test]
fn configuration_errors() {
    assert_eq!(Vgic::new(&[], 32), Err(Error::NoVcpus));
    assert_eq!(Vgic::new(&[0; 9], 32), Err(Error::TooManyVcpus(9)));
    assert_eq!(
        Vgic::new(&[1, 0x8000_0001], 32),
        Err(Error::DuplicateMpidr(1))
    );
    assert_eq!(Vgic::new(&[0], 33), Err(Error::BadSpiCount(33)));
    assert_eq!(Vgic::new(&[0], 992), Err(Error::BadSpiCount(992)));
    assert!(Vgic::new(&[0], 0).is_ok());
    assert!(Vgic::new(&[0], 960).is_ok());
    let mut max = Vgic::new(&[0], MAX_SPIS).unwrap();
    assert_eq!(dr(&mut max, GICD_TYPER) & 0x1f, 31);
    assert!(max.set_pending(1019, 0).is_ok());
    assert_eq!(max.set_pending(1020, 0), Err(Error::NoSuchIntid(1020)));
}

#[test]
fn linux_distributor_init() {
    let mut v = vgic();
    // gic_dist_init: disable, wait for RWP.
    assert_eq!(dw(&mut v, GICD_CTLR, 0).change, None);
    assert_eq!(dr(&mut v, GICD_CTLR) as u32 & CTLR_RWP, 0);
    let ctlr = dr(&mut v, GICD_CTLR) as u32;
    assert_eq!(ctlr & (CTLR_ARE | CTLR_DS), CTLR_ARE | CTLR_DS);
    // PIDR2.ArchRev = 3, TYPER.
    assert_eq!((dr(&mut v, PIDR2) >> 4) & 0xf, 3);
    let typer = dr(&mut v, GICD_TYPER) as u32;
    let gic_irqs = 32 * ((typer & 0x1f) + 1);
    assert_eq!(gic_irqs, 32 + SPIS);
    assert_eq!((typer >> 19) & 0x1f, 9, "10 INTID bits");
    assert_eq!((typer >> 5) & 7, MPIDRS.len() as u32 - 1);
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!(typer & (1 << 16), 0, "no MBIS");
    assert_eq!(typer & (1 << 10), 0, "single security state");
    assert_eq!(dr(&mut v, GICD_TYPER2), 0);
    assert_eq!(dr(&mut v, GICD_IIDR) & 0xfff, 0x43b);
    // gic_dist_config: level, default priority, all disabled and inactive.
    for i in (32..gic_irqs).step_by(16) {
        dw(&mut v, GICD_ICFGR + u64::from(i / 4), 0);
    }
    for i in (32..gic_irqs).step_by(4) {
        dw(&mut v, GICD_IPRIORITYR + u64::from(i), 0xa0a0_a0a0);
    }
    for i in (32..gic_irqs).step_by(32) {
        dw(&mut v, GICD_ICACTIVER + u64::from(i / 8), 0xffff_ffff);
        dw(&mut v, GICD_ICENABLER + u64::from(i / 8), 0xffff_ffff);
        dw(&mut v, GICD_IGROUPR + u64::from(i / 8), 0xffff_ffff);
        dw(&mut v, GICD_IGRPMODR + u64::from(i / 8), 0);
        assert_eq!(dr(&mut v, GICD_IGROUPR + u64::from(i / 8)), 0xffff_ffff);
    }
    // Enable with ARE + Group 1 (Linux writes ARE_NS | ENABLE_G1A | ENABLE_G1).
    let changes = dw(&mut v, GICD_CTLR, 0x13);
    assert_eq!(
        changes.change.unwrap().kind,
        ChangeKind::DistributorEnable(true)
    );
    assert!(v.distributor_enabled());
    assert_eq!(
        dr(&mut v, GICD_CTLR) as u32 & CTLR_ENABLE_GRP1,
        CTLR_ENABLE_GRP1
    );
    // Route every SPI to the boot CPU (64-bit writes).
    for intid in 32..gic_irqs {
        let offset = GICD_IROUTER + 8 * u64::from(intid);
        v.dist_write(offset, Doubleword, MPIDRS[2]).unwrap();
        assert_eq!(v.dist_read(offset, Doubleword).unwrap().value, MPIDRS[2]);
        assert_eq!(v.target(intid, 0), Ok(Target::Vcpu(2)));
    }
    for intid in 32..gic_irqs {
        let state = v.state(intid, 0).unwrap();
        assert!(!state.enabled && !state.active && !state.edge);
        assert_eq!(state.priority, 0xa0);
    }
}

#[test]
fn linux_redistributor_init() {
    let mut v = vgic();
    // Walk the region the way gic_iterate_rdists does: PIDR2 then TYPER until Last.
    let mut found = Vec::new();
    for vcpu in 0.. {
        assert_eq!((rr(&mut v, vcpu, PIDR2) >> 4) & 0xf, 3);
        let base = vcpu as u64 * REDIST_STRIDE;
        let typer = v.redist_read(base + GICR_TYPER, Doubleword).unwrap().value;
        let low = v.redist_read(base + GICR_TYPER, Word).unwrap().value;
        let high = v.redist_read(base + GICR_TYPER + 4, Word).unwrap().value;
        assert_eq!(typer, low | high << 32);
        assert_eq!((typer >> 8) & 0xffff, vcpu as u64, "Processor_Number");
        found.push(typer >> 32);
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
    }
    assert_eq!(found, [0x0, 0x1, 0x100, 0x0100_0000]);
    for vcpu in 0..MPIDRS.len() {
        // gic_enable_redist(true).
        assert_eq!(v.redistributor_awake(vcpu), Some(false));
        let waker = rr(&mut v, vcpu, GICR_WAKER) as u32;
        assert_ne!(waker & WAKER_CHILDREN_ASLEEP, 0);
        rw(
            &mut v,
            vcpu,
            GICR_WAKER,
            u64::from(waker & !WAKER_PROCESSOR_SLEEP),
        );
        assert_eq!(
            rr(&mut v, vcpu, GICR_WAKER) as u32 & WAKER_CHILDREN_ASLEEP,
            0
        );
        assert_eq!(v.redistributor_awake(vcpu), Some(true));
        // No LPIs.
        assert_eq!(rr(&mut v, vcpu, GICR_CTLR), 0);
        rw(&mut v, vcpu, GICR_PROPBASER, 0x1234);
        assert_eq!(rr(&mut v, vcpu, GICR_PROPBASER), 0);
        // gic_cpu_init: SGI frame.
        rw(&mut v, vcpu, SGI_BASE + GICR_IGROUPR0, 0xffff_ffff);
        rw(&mut v, vcpu, SGI_BASE + GICR_IGRPMODR0, 0);
        rw(&mut v, vcpu, SGI_BASE + GICR_ICACTIVER0, 0xffff_ffff);
        rw(&mut v, vcpu, SGI_BASE + GICR_ICENABLER0, 0xffff_ffff);
        for i in (0..32).step_by(4) {
            rw(&mut v, vcpu, SGI_BASE + GICR_IPRIORITYR0 + i, 0xa0a0_a0a0);
        }
        assert_eq!(rr(&mut v, vcpu, SGI_BASE + GICR_IGROUPR0), 0xffff_ffff);
        assert_eq!(rr(&mut v, vcpu, SGI_BASE + GICR_ICFGR0), 0xaaaa_aaaa);
        assert_eq!(rr(&mut v, vcpu, GICR_CTLR) as u32 & CTLR_RWP, 0);
        // SGIs are enabled as Linux requests them.
        let changes = rw(&mut v, vcpu, SGI_BASE + GICR_ISENABLER0, 0xffff);
        assert_eq!(
            changes.change,
            Some(Change {
                kind: ChangeKind::Enabled,
                vcpu: Some(vcpu),
                base: 0,
                mask: 0xffff,
                unlinked: 0,
                entered: 0,
                left: 0,
            })
        );
        assert_eq!(rr(&mut v, vcpu, SGI_BASE + GICR_ISENABLER0), 0xffff);
    }
    assert_eq!(rr(&mut v, 1, SGI_BASE + GICR_IPRIORITYR0 + 4), 0xa0a0_a0a0);
}

#[test]
fn are_makes_distributor_bank_zero_raz_wi() {
    let mut v = vgic();
    for base in [GICD_IGROUPR, GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER] {
        assert_eq!(dw(&mut v, base, 0xffff_ffff).change, None);
        assert_eq!(dr(&mut v, base), 0);
    }
    dw(&mut v, GICD_IPRIORITYR, 0xffff_ffff);
    dw(&mut v, GICD_ICFGR + 4, 0xffff_ffff);
    assert_eq!(dr(&mut v, GICD_IPRIORITYR), 0);
    assert_eq!(dr(&mut v, GICD_ICFGR + 4), 0);
    assert!(!v.state(0, 0).unwrap().enabled);
    assert_eq!(v.state(16, 0).unwrap().priority, 0);
    // ITARGETSR, SGIR, IROUTER<n < 32>, beyond the SPIs: RAZ/WI, known.
    for offset in [
        GICD_ITARGETSR + 0x20,
        GICD_SGIR,
        GICD_IROUTER,
        GICD_ISENABLER + 12,
    ] {
        let changes = dw(&mut v, offset, 0xffff_ffff);
        assert_eq!(
            changes,
            Changes {
                access: Access::Emulated,
                change: None
            }
        );
        assert_eq!(dr(&mut v, offset), 0);
    }
}

#[test]
fn enable_pending_active_semantics() {
    let mut v = enabled();
    let spi = 40;
    // Set-pending via GICD_ISPENDR reports the software-pending INTID once.
    let changes = dw(&mut v, GICD_ISPENDR + 4, 1 << 8);
    let change = changes.change.unwrap();
    assert_eq!(change.kind, ChangeKind::PendingSet);
    assert_eq!(change.intids().collect::<Vec<_>>(), [spi]);
    assert_eq!(dw(&mut v, GICD_ISPENDR + 4, 1 << 8).change, None);
    assert_eq!(dr(&mut v, GICD_ISPENDR + 4), 1 << 8);
    assert_eq!(dr(&mut v, GICD_ICPENDR + 4), 1 << 8);
    assert_eq!(v.highest_pending(0), Some((spi, 0)));
    assert_eq!(v.highest_pending(1), None, "routed to vCPU 0");
    // Acknowledge: pending -> active, no longer offered.
    assert_eq!(v.acknowledge(1, spi), Err(Error::NotDeliverable(spi)));
    v.acknowledge(0, spi).unwrap();
    assert_eq!(dr(&mut v, GICD_ISACTIVER + 4), 1 << 8);
    assert_eq!(dr(&mut v, GICD_ISPENDR + 4), 0);
    assert_eq!(v.highest_pending(0), None);
    // Pending again while active: not offered until deactivated.
    v.set_pending(spi, 0).unwrap();
    assert_eq!(v.highest_pending(0), None);
    v.deactivate(0, spi).unwrap();
    assert_eq!(v.highest_pending(0), Some((spi, 0)));
    // Clear-pending reports what was pending.
    let change = dw(&mut v, GICD_ICPENDR + 4, 0xffff_ffff).change.unwrap();
    assert_eq!(
        (change.kind, change.base, change.mask),
        (ChangeKind::PendingCleared, 32, 1 << 8)
    );
    // Disable: pending but not deliverable.
    v.set_pending(spi, 0).unwrap();
    let change = dw(&mut v, GICD_ICENABLER + 4, 1 << 8).change.unwrap();
    assert_eq!(change.kind, ChangeKind::Disabled);
    assert!(!v.is_deliverable(0, spi));
    assert_eq!(dr(&mut v, GICD_ISENABLER + 4), 0);
    dw(&mut v, GICD_ISENABLER + 4, 1 << 8);
    assert!(v.is_deliverable(0, spi));
    // Distributor disabled: nothing deliverable.
    let change = dw(&mut v, GICD_CTLR, 0).change.unwrap();
    assert_eq!(change.kind, ChangeKind::DistributorEnable(false));
    assert_eq!(v.highest_pending(0), None);
    // Guest-set and -cleared active state.
    dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1));
    let change = dw(&mut v, GICD_ISACTIVER + 4, 1 << 8).change.unwrap();
    assert_eq!(change.kind, ChangeKind::ActiveSet);
    assert!(!v.is_deliverable(0, spi));
    let change = dw(&mut v, GICD_ICACTIVER + 4, 1 << 8).change.unwrap();
    assert_eq!(change.kind, ChangeKind::ActiveCleared);
    assert!(v.is_deliverable(0, spi));
    // Requeue: back from a list register to pending.
    v.acknowledge(0, spi).unwrap();
    v.requeue(0, spi).unwrap();
    assert!(v.is_deliverable(0, spi));
}

#[test]
fn priority_ordering() {
    let mut v = enabled();
    dw(&mut v, GICD_ISENABLER + 4, 0xffff_ffff);
    dw(&mut v, GICD_IPRIORITYR + 40, 0x8080_8080); // 40..43
    v.dist_write(GICD_IPRIORITYR + 41, Byte, 0x20).unwrap();
    let change = v
        .dist_write(GICD_IPRIORITYR + 43, Byte, 0x10)
        .unwrap()
        .change
        .unwrap();
    assert_eq!(
        (change.kind, change.base, change.mask),
        (ChangeKind::Priority, 32, 1 << 11)
    );
    assert_eq!(dr(&mut v, GICD_IPRIORITYR + 40), 0x1080_2080);
    assert_eq!(v.dist_read(GICD_IPRIORITYR + 41, Byte).unwrap().value, 0x20);
    rw(&mut v, 0, SGI_BASE + GICR_IPRIORITYR0 + 24, 0x2000_0000); // PPI 27 at 0x20
    for intid in [40, 41, 42, 43] {
        v.set_pending(intid, 0).unwrap();
    }
    v.set_pending(27, 0).unwrap();
    v.set_pending(26, 0).unwrap(); // not enabled
    let order: Vec<_> = v.pending_for(0).collect();
    // Equal priorities oldest first: 41 became pending before 27.
    assert_eq!(
        order,
        [(43, 0x10), (41, 0x20), (27, 0x20), (40, 0x80), (42, 0x80)]
    );
    assert_eq!(v.highest_pending(0), Some((43, 0x10)));
    assert_eq!(v.pending_for(1).count(), 0, "PPI 27 is vCPU 0's");
    assert_eq!(v.pending_for(99).count(), 0);
}

#[test]
fn level_versus_edge() {
    let mut v = enabled();
    let spi = 40;
    // Level (the reset config): pending follows the line; ICPENDR cannot clear a high line.
    assert!(v.set_level(spi, 0, true).unwrap());
    assert!(v.is_deliverable(0, spi));
    dw(&mut v, GICD_ICPENDR + 4, 1 << 8);
    assert!(v.state(spi, 0).unwrap().pending());
    v.acknowledge(0, spi).unwrap();
    let state = v.state(spi, 0).unwrap();
    assert!(
        state.active && state.pending(),
        "active and pending while the line is high"
    );
    assert!(v.set_level(spi, 0, false).unwrap());
    v.deactivate(0, spi).unwrap();
    assert!(!v.is_deliverable(0, spi));
    // Edge: a rising edge latches; the latch survives the line falling.
    let change = dw(&mut v, GICD_ICFGR + 8, 0b10 << 16).change.unwrap(); // INTID 40
    assert_eq!(
        (change.kind, change.base, change.mask),
        (ChangeKind::Config, 32, 1 << 8)
    );
    assert_eq!(dr(&mut v, GICD_ICFGR + 8), 0b10 << 16);
    assert!(v.state(spi, 0).unwrap().edge);
    v.set_level(spi, 0, true).unwrap();
    v.set_level(spi, 0, false).unwrap();
    assert!(v.is_deliverable(0, spi));
    v.acknowledge(0, spi).unwrap();
    assert!(!v.state(spi, 0).unwrap().pending());
    // PPIs are configurable, SGIs stay edge.
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR0, 0);
    assert_eq!(rr(&mut v, 0, SGI_BASE + GICR_ICFGR0), 0xaaaa_aaaa);
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR1, 0b10 << 22); // PPI 27
    assert_eq!(rr(&mut v, 0, SGI_BASE + GICR_ICFGR1), 0b10 << 22);
    assert!(v.state(27, 0).unwrap().edge);
    assert!(!v.state(27, 1).unwrap().edge);
}

#[test]
fn sgi_targeting() {
    let mut v = enabled();
    for vcpu in 0..MPIDRS.len() {
        rw(&mut v, vcpu, SGI_BASE + GICR_ISENABLER0, 0xffff);
    }
    // IRM = 0: Aff1 = 0, TargetList bits 0 and 1 -> vCPUs 0 and 1; SGI 5.
    let targets = v.sgi1r(0, 5 << 24 | 0b11).unwrap();
    assert_eq!(targets.iter().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(v.highest_pending(1), Some((5, 0)));
    assert_eq!(v.highest_pending(0), Some((5, 0)));
    assert_eq!(v.highest_pending(2), None);
    // Aff1 = 1, Aff0 = 0 -> vCPU 2 (MPIDR 0x100).
    let targets = v.sgi1r(0, 3 << 24 | 1 << 16 | 1).unwrap();
    assert_eq!(targets.iter().collect::<Vec<_>>(), [2]);
    // Aff3 = 1 -> vCPU 3.
    assert_eq!(
        v.sgi1r(1, 1 << 48 | 1).unwrap().iter().collect::<Vec<_>>(),
        [3]
    );
    // RS = 1 names Aff0 16..31: nobody here.
    assert!(v.sgi1r(0, 1 << 44 | 0xffff).unwrap().is_empty());
    // IRM = 1: everyone but the sender.
    let targets = v.sgi1r(2, 1 << 40 | 7 << 24).unwrap();
    assert_eq!(targets.iter().collect::<Vec<_>>(), [0, 1, 3]);
    assert!(v.state(7, 1).unwrap().pending_latch);
    assert!(!v.state(7, 2).unwrap().pending_latch);
    assert_eq!(targets.len(), 3);
    assert_eq!(v.sgi1r(4, 0), Err(Error::NoSuchVcpu(4)));
    let request = SgiRequest::decode(0x00ff_f1ff_ffff_ffff);
    assert_eq!(request.intid, 15);
    assert!(request.all_but_self);
}

#[test]
fn irouter_halves_and_irm() {
    let mut v = enabled();
    let offset = GICD_IROUTER + 8 * 40;
    // Upper half: Aff3 = 1 -> vCPU 3.
    let change = v.dist_write(offset + 4, Word, 1).unwrap().change.unwrap();
    assert_eq!(
        (change.kind, change.base, change.mask),
        (ChangeKind::Route, 32, 1 << 8)
    );
    v.dist_write(offset, Word, 0).unwrap();
    assert_eq!(v.route(40), Ok(0x1_0000_0000));
    assert_eq!(v.target(40, 0), Ok(Target::Vcpu(3)));
    assert_eq!(v.dist_read(offset + 4, Word).unwrap().value, 1);
    // Reserved bits are dropped; a missing affinity routes nowhere.
    v.dist_write(offset, Doubleword, u64::MAX).unwrap();
    assert_eq!(v.route(40), Ok(IROUTER_MASK));
    assert_eq!(v.target(40, 0), Ok(Target::Any));
    v.dist_write(offset, Doubleword, 0x55).unwrap();
    assert_eq!(v.target(40, 0), Ok(Target::Nobody));
    v.set_pending(40, 0).unwrap();
    assert!((0..4).all(|vcpu| !v.is_deliverable(vcpu, 40)));
    // IRM = 1: offered to all, taken by the first to acknowledge.
    v.dist_write(offset, Doubleword, IROUTER_IRM).unwrap();
    assert!((0..4).all(|vcpu| v.is_deliverable(vcpu, 40)));
    v.acknowledge(2, 40).unwrap();
    assert!((0..4).all(|vcpu| !v.is_deliverable(vcpu, 40)));
    assert_eq!(v.route(20), Err(Error::NoSuchIntid(20)));
}

#[test]
fn access_size_rules() {
    let mut v = vgic();
    let bad = |offset| AccessError::BadSize(offset, Byte);
    // Word-only registers.
    assert_eq!(v.dist_read(GICD_CTLR, Byte), Err(bad(GICD_CTLR)));
    assert_eq!(
        v.dist_read(GICD_ISENABLER + 4, Byte),
        Err(bad(GICD_ISENABLER + 4))
    );
    assert_eq!(
        v.dist_write(GICD_ICFGR + 8, Doubleword, 0),
        Err(AccessError::BadSize(GICD_ICFGR + 8, Doubleword))
    );
    assert_eq!(
        v.dist_read(GICD_TYPER, Halfword),
        Err(AccessError::BadSize(GICD_TYPER, Halfword))
    );
    // IPRIORITYR: bytes and words, no halfwords.
    assert!(v.dist_write(GICD_IPRIORITYR + 33, Byte, 1).is_ok());
    assert_eq!(
        v.dist_write(GICD_IPRIORITYR + 34, Halfword, 1),
        Err(AccessError::BadSize(GICD_IPRIORITYR + 34, Halfword))
    );
    assert_eq!(
        v.dist_read(GICD_IPRIORITYR + 34, Word),
        Err(AccessError::Misaligned(GICD_IPRIORITYR + 34, Word))
    );
    // IROUTER: doublewords and words.
    let router = GICD_IROUTER + 8 * 33;
    assert!(v.dist_read(router, Doubleword).is_ok());
    assert!(v.dist_read(router + 4, Word).is_ok());
    assert_eq!(
        v.dist_read(router + 4, Doubleword),
        Err(AccessError::Misaligned(router + 4, Doubleword))
    );
    assert_eq!(v.dist_read(router, Byte), Err(bad(router)));
    // Redistributor: TYPER 64/32, WAKER 32 only, IPRIORITYR bytes.
    let sgi1 = REDIST_STRIDE + SGI_BASE;
    assert!(
        v.redist_read(REDIST_STRIDE + GICR_TYPER, Doubleword)
            .is_ok()
    );
    assert_eq!(
        v.redist_read(REDIST_STRIDE + GICR_WAKER, Doubleword),
        Err(AccessError::Misaligned(
            REDIST_STRIDE + GICR_WAKER,
            Doubleword
        ))
    );
    assert_eq!(
        v.redist_read(REDIST_STRIDE + GICR_CTLR, Doubleword),
        Err(AccessError::BadSize(REDIST_STRIDE + GICR_CTLR, Doubleword))
    );
    v.redist_write(sgi1 + GICR_IPRIORITYR0 + 27, Byte, 0x40)
        .unwrap();
    assert_eq!(v.state(27, 1).unwrap().priority, 0x40);
    assert_eq!(
        v.redist_read(sgi1 + GICR_ISENABLER0, Byte),
        Err(bad(sgi1 + GICR_ISENABLER0))
    );
    // Unknown offsets: RAZ/WI, flagged, any aligned size.
    for size in [Byte, Halfword, Word, Doubleword] {
        let read = v.dist_read(0x8000, size).unwrap();
        assert_eq!(
            read,
            MmioRead {
                value: 0,
                access: Access::Unknown,
                linked: None,
            }
        );
        let write = v
            .redist_write(REDIST_STRIDE + 0x4000, size, u64::MAX)
            .unwrap();
        assert_eq!(
            write,
            Changes {
                access: Access::Unknown,
                change: None
            }
        );
    }
    assert_eq!(
        v.dist_read(0x8001, Halfword),
        Err(AccessError::Misaligned(0x8001, Halfword))
    );
}

#[test]
fn out_of_range() {
    let mut v = vgic();
    let end = MPIDRS.len() as u64 * REDIST_STRIDE;
    assert_eq!(v.redist_read(end, Word), Err(AccessError::OutOfRange(end)));
    assert_eq!(
        v.redist_write(end + 0x14, Word, 0),
        Err(AccessError::OutOfRange(end + 0x14))
    );
    assert_eq!(
        v.redist_read(u64::MAX - 3, Word),
        Err(AccessError::OutOfRange(u64::MAX - 3))
    );
    assert!(v.redist_read(end - 4, Word).is_ok());
    assert_eq!(
        v.dist_read(DIST_FRAME_SIZE, Word),
        Err(AccessError::OutOfRange(DIST_FRAME_SIZE))
    );
    assert_eq!(v.deactivate(4, 3), Err(Error::NoSuchVcpu(4)));
    assert_eq!(v.set_level(96, 0, true), Err(Error::NoSuchIntid(96)));
}

#[test]
fn id_registers_and_reset() {
    let mut v = enabled();
    assert_eq!(dr(&mut v, 0xfff0), 0x0d);
    assert_eq!(dr(&mut v, 0xfffc), 0xb1);
    assert_eq!(rr(&mut v, 3, 0xffe8), 0x3b);
    v.set_pending(40, 0).unwrap();
    v.reset();
    assert_eq!(v, vgic());
}

#[test]
fn random_accesses_never_panic() {
    let mut rng = XorShift::new(0x5eed);
    let sizes = [Byte, Halfword, Word, Doubleword];
    for (mpidrs, spis) in [
        (&MPIDRS[..], SPIS),
        (&[0x0][..], 0),
        (&[0x0, 0x1][..], MAX_SPIS),
    ] {
        let mut v = Vgic::new(mpidrs, spis).unwrap();
        for _ in 0..200_000 {
            let r = rng.next();
            let size = sizes[(r & 3) as usize];
            let value = rng.next();
            let offset = match (r >> 2) % 4 {
                0 => rng.next() % DIST_FRAME_SIZE,
                1 => rng.next() % (REDIST_STRIDE * (MAX_VCPUS as u64 + 1)),
                2 => rng.next() & !3 & 0xffff,
                _ => rng.next(),
            };
            let dist = r & (1 << 8) != 0;
            match (dist, r & (1 << 9) != 0) {
                (true, true) => drop(v.dist_write(offset, size, value)),
                (true, false) => drop(v.dist_read(offset, size)),
                (false, true) => drop(v.redist_write(offset, size, value)),
                (false, false) => drop(v.redist_read(offset, size)),
            }
            let vcpu = (value >> 40) as usize % 10;
            let intid = (value >> 48) as u32 % 1100;
            match (r >> 10) % 8 {
                0 => drop(v.set_pending(intid, vcpu)),
                1 => drop(v.set_level(intid, vcpu, value & 1 != 0)),
                2 => drop(v.acknowledge(vcpu, intid)),
                3 => drop(v.deactivate(vcpu, intid)),
                4 => drop(v.sgi1r(vcpu, value)),
                5 => {
                    if let Some((intid, _)) = v.highest_pending(vcpu) {
                        v.acknowledge(vcpu, intid).unwrap();
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn most_urgent_fills_in_priority_order() {
    let mut v = enabled();
    dw(&mut v, GICD_ISENABLER + 4, 0xffff_ffff);
    dw(&mut v, GICD_IPRIORITYR + 40, 0x8080_2080); // 40: 0x80, 41: 0x20, 42, 43: 0x80
    rw(&mut v, 0, SGI_BASE + GICR_IPRIORITYR0 + 24, 0x2000_0000); // PPI 27 at 0x20
    rw(&mut v, 0, SGI_BASE + GICR_ISENABLER0, 1 << 27);
    for intid in [40, 41, 42, 43, 27] {
        v.set_pending(intid, 0).unwrap();
    }
    let mut two = [(0, 0); 2];
    assert_eq!(v.most_urgent(0, &mut two), 2);
    // Equal priorities in the order they became pending (27 last).
    assert_eq!(two, [(41, 0x20), (27, 0x20)]);
    let mut many = [(0, 0); 8];
    assert_eq!(v.most_urgent(0, &mut many), 5);
    assert_eq!(
        many[..5],
        [(41, 0x20), (27, 0x20), (40, 0x80), (42, 0x80), (43, 0x80)]
    );
    assert_eq!(v.most_urgent(0, &mut []), 0);
    assert_eq!(v.most_urgent(99, &mut many), 0);
    assert_eq!(v.most_urgent(1, &mut many), 0, "PPI 27 is vCPU 0's, SPIs route to vCPU 0");
    v.acknowledge(0, 27).unwrap();
    assert_eq!(v.highest_pending(0), Some((41, 0x20)));
}

#[test]
fn most_urgent_matches_pending_for() {
    let mut rng = XorShift::new(0x0b57);
    for _ in 0..200 {
        let mut v = enabled();
        for vcpu in 0..MPIDRS.len() {
            rw(&mut v, vcpu, SGI_BASE + GICR_ISENABLER0, rng.next() & 0xffff_ffff);
            for n in 0..8 {
                rw(&mut v, vcpu, SGI_BASE + GICR_IPRIORITYR0 + 4 * n, rng.next() & 0xf0f0_f0f0);
            }
            for intid in 0..32 {
                if rng.next().is_multiple_of(3) {
                    v.set_pending(intid, vcpu).unwrap();
                }
            }
        }
        for bank in 1..=SPIS / 32 {
            dw(&mut v, GICD_ISENABLER + 4 * u64::from(bank), rng.next() & 0xffff_ffff);
        }
        for n in 8..(8 + SPIS as u64 / 4) {
            dw(&mut v, GICD_IPRIORITYR + 4 * n, rng.next() & 0xf0f0_f0f0);
        }
        for spi in 32..32 + SPIS {
            if rng.next().is_multiple_of(4) {
                v.set_pending(spi, 0).unwrap();
            }
            if rng.next().is_multiple_of(4) {
                let route = MPIDRS[(rng.next() % 4) as usize] | (rng.next() % 2) << 31;
                v.dist_write(GICD_IROUTER + 8 * u64::from(spi), Doubleword, route).unwrap();
            }
        }
        for vcpu in 0..MPIDRS.len() {
            let expected: Vec<_> = v.pending_for(vcpu).collect();
            for len in [1, 2, 4, 16, 400] {
                let mut out = vec![(0, 0); len];
                let found = v.most_urgent(vcpu, &mut out);
                assert_eq!(out[..found], expected[..found.min(expected.len())]);
                assert_eq!(found, len.min(expected.len()));
            }
            assert_eq!(v.highest_pending(vcpu), expected.first().copied());
        }
    }
}

/// What [`Vgic::pending_for`] must yield, by the definition: every implemented INTID that
/// [`Vgic::state`] and [`Vgic::target`] say is enabled, pending, inactive and routed to
/// `vcpu`, with the distributor enabled, sorted by priority, then age ([`IrqState::since`]),
/// then INTID (a plain scan of every INTID, as the model did before it kept a ready bitmap).
fn naive_pending(v: &Vgic, vcpu: usize) -> Vec<(u32, u8)> {
    if vcpu >= v.vcpu_count() || !v.distributor_enabled() {
        return Vec::new();
    }
    let mut found: Vec<(u32, u8, u64)> = (0..FIRST_SPI + v.spi_count())
        .filter_map(|intid| {
            let irq = v.state(intid, vcpu).ok()?;
            let routed = match v.target(intid, vcpu).ok()? {
                Target::Vcpu(target) => target == vcpu,
                Target::Any => true,
                Target::Nobody => false,
            };
            (irq.enabled && irq.pending() && !irq.active && !irq.listed && routed)
                .then_some((intid, irq.priority, irq.since))
        })
        .collect();
    found.sort_by_key(|&(intid, priority, since)| (priority, since, intid));
    found.into_iter().map(|(intid, priority, _)| (intid, priority)).collect()
}

/// Checks the ready bitmap and every query built on it against the naive scan.
fn check_against_naive(v: &Vgic) {
    assert!(
        v.ready_bits_consistent(),
        "ready bitmap out of step with the state"
    );
    for vcpu in 0..=v.vcpu_count() {
        let expected = naive_pending(v, vcpu);
        assert_eq!(v.pending_for(vcpu).collect::<Vec<_>>(), expected);
        assert_eq!(v.highest_pending(vcpu), expected.first().copied());
        for len in [1, 3, 16] {
            let mut out = vec![(0, 0); len];
            let found = v.most_urgent(vcpu, &mut out);
            assert_eq!(out[..found], expected[..len.min(expected.len())]);
        }
        for intid in 0..FIRST_SPI + v.spi_count() + 2 {
            assert_eq!(
                v.is_deliverable(vcpu, intid),
                expected.iter().any(|&(i, _)| i == intid),
                "INTID {intid}, vCPU {vcpu}"
            );
        }
    }
}

/// A random walk through everything that changes enabled, pending, active, trigger,
/// priority, routing or the distributor enable, with the bitmap-driven queries compared
/// to the naive scan after every step.
#[test]
fn ready_bitmap_matches_naive_scan() {
    let mut rng = XorShift::new(0xb17_3a9);
    for (mpidrs, spis) in [
        (&MPIDRS[..], SPIS),
        (&[0x0][..], 0),
        (&[0x0, 0x1][..], MAX_SPIS),
    ] {
        let mut v = Vgic::new(mpidrs, spis).unwrap();
        let vcpus = mpidrs.len();
        let intids = FIRST_SPI + spis;
        dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1));
        for step in 0..6_000 {
            let r = rng.next();
            let value = rng.next();
            // A few bits set, so that few interrupts are ready at once, as in real use.
            let sparse = value & rng.next() & rng.next();
            let vcpu = (r >> 8) as usize % (vcpus + 1);
            let intid = (r >> 16) as u32 % (intids + 4);
            let bank = (r >> 32) % (u64::from(intids) / 32 + 1);
            let redist = r & (1 << 7) != 0 && vcpu < vcpus;
            match r % 16 {
                0..=3 => {
                    // Sets (even indices) twice as dense as clears, so that interrupts pile up.
                    let which = (value % 6) as usize;
                    let bits = if which.is_multiple_of(2) {
                        value & (rng.next() | rng.next())
                    } else {
                        sparse
                    };
                    let (dist, sgi) = BIT_REGS[which];
                    if redist {
                        rw(&mut v, vcpu, SGI_BASE + sgi, bits);
                    } else {
                        dw(&mut v, dist + 4 * bank, bits);
                    }
                }
                4 => {
                    let offset = 4 * (u64::from(intid) / 4);
                    if redist && intid < FIRST_SPI {
                        rw(
                            &mut v,
                            vcpu,
                            SGI_BASE + GICR_IPRIORITYR0 + offset,
                            value & 0xf0f0_f0f0,
                        );
                    } else {
                        let _ = v.dist_write(GICD_IPRIORITYR + offset, Word, value & 0xf0f0_f0f0);
                    }
                }
                5 => {
                    if redist {
                        rw(&mut v, vcpu, SGI_BASE + GICR_ICFGR1, value);
                    } else {
                        dw(&mut v, GICD_ICFGR + 4 * (2 * bank + (value & 1)), value);
                    }
                }
                6 => {
                    let route = mpidrs[(value % vcpus as u64) as usize]
                        | ((value >> 8) % 2) << 31
                        | if value.is_multiple_of(17) { 0xff } else { 0 };
                    let _ = v.dist_write(GICD_IROUTER + 8 * u64::from(intid), Doubleword, route);
                }
                7 => {
                    // Mostly on: off now and then, back on soon.
                    let on = !value.is_multiple_of(8);
                    dw(
                        &mut v,
                        GICD_CTLR,
                        if on { u64::from(CTLR_ENABLE_GRP1) } else { 0 },
                    );
                }
                8 if value & 3 == 2 => drop(v.forward(intid, vcpu)),
                8 if value & 1 == 0 => drop(v.set_pending(intid, vcpu)),
                8 => {
                    // A forwarded physical interrupt: as the edge or the line it stands for.
                    let mut by_hand = v.clone();
                    let expected = by_hand.state(intid, vcpu).map(|irq| {
                        if irq.edge {
                            by_hand.set_pending(intid, vcpu).unwrap();
                        } else {
                            by_hand.set_level(intid, vcpu, true).unwrap();
                        }
                        irq.pending()
                    });
                    assert_eq!(v.signal(intid, vcpu), expected);
                    assert_eq!(v, by_hand);
                }
                9 => drop(v.set_level(intid, vcpu, value & 1 != 0)),
                10 => drop(v.acknowledge(vcpu, intid)),
                11 => drop(v.deactivate(vcpu, intid)),
                12 if value & 1 == 0 => drop(v.requeue(vcpu, intid)),
                12 if value & 2 == 0 => {
                    // The PPI fast path: what forward then retake do, or nothing at all.
                    let listed = v.state(intid, vcpu).is_ok_and(|s| s.listed);
                    let copy_emptied = listed != (value & 4 != 0);
                    let before = v.clone();
                    match v.relist(vcpu, intid, copy_emptied) {
                        Some(priority) => {
                            assert_eq!(copy_emptied, listed);
                            let mut by_hand = before;
                            assert_eq!(
                                by_hand.forward(intid, vcpu),
                                Ok(Forwarded::Linked { coalesced: false })
                            );
                            assert_eq!(by_hand.retake(vcpu, intid), Some((priority, true)));
                            assert_eq!(v, by_hand);
                        }
                        None => assert_eq!(v, before),
                    }
                }
                12 => {
                    // The fast path: deactivate the listed copy, then acknowledge, at once.
                    let mut by_hand = v.clone();
                    let expected = by_hand.state(intid, vcpu).ok().and_then(|state| {
                        if state.listed {
                            by_hand.deactivate(vcpu, intid).unwrap();
                        }
                        by_hand.acknowledge(vcpu, intid).ok()?;
                        let state = by_hand.state(intid, vcpu).unwrap();
                        Some((state.priority, state.hw_listed))
                    });
                    assert_eq!(v.retake(vcpu, intid), expected);
                    assert_eq!(v, by_hand);
                }
                13 => drop(v.sgi1r(vcpu, value)),
                14 => {
                    // The flush: take the most urgent, as most_urgent then acknowledge would.
                    let mut by_hand = v.clone();
                    let mut expected = [(0, 0); 4];
                    let found = by_hand.most_urgent(vcpu, &mut expected);
                    for &(intid, _) in &expected[..found] {
                        by_hand.acknowledge(vcpu, intid).unwrap();
                    }
                    let mut out = [(0, 0); 4];
                    assert_eq!(v.take_most_urgent(vcpu, &mut out), found);
                    assert_eq!(out[..found], expected[..found]);
                    assert_eq!(v, by_hand);
                }
                _ => {
                    if value.is_multiple_of(500) {
                        v.reset();
                        dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1));
                    }
                }
            }
            if step % 3 == 0 || spis < MAX_SPIS {
                check_against_naive(&v);
            }
        }
    }
}

#[test]
fn ready_bitmap_follows_each_transition() {
    let mut v = enabled();
    assert!(v.ready_bits_consistent());
    // Level SPI 40: the line makes it ready, acknowledge makes it active, the line falling
    // and deactivation leave it idle.
    v.set_level(40, 0, true).unwrap();
    assert_eq!(v.highest_pending(0), Some((40, 0)));
    v.acknowledge(0, 40).unwrap();
    assert_eq!(v.highest_pending(0), None);
    v.set_level(40, 0, false).unwrap();
    v.deactivate(0, 40).unwrap();
    assert_eq!(v.highest_pending(0), None);
    assert!(v.ready_bits_consistent());
    // Edge PPI 27: pending, taken, requeued (pending again), disabled (not ready), enabled.
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR1, 0b10 << (2 * 11));
    v.set_pending(27, 0).unwrap();
    v.acknowledge(0, 27).unwrap();
    assert_eq!(v.highest_pending(0), None);
    v.requeue(0, 27).unwrap();
    assert_eq!(v.highest_pending(0), Some((27, 0)));
    rw(&mut v, 0, SGI_BASE + GICR_ICENABLER0, 1 << 27);
    assert_eq!(v.highest_pending(0), None);
    rw(&mut v, 0, SGI_BASE + GICR_ISENABLER0, 1 << 27);
    assert_eq!(v.highest_pending(0), Some((27, 0)));
    // A level-high PPI turned edge stops being pending (its latch was never set).
    rw(&mut v, 0, SGI_BASE + GICR_ICPENDR0, 1 << 27);
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR1, 0);
    v.set_level(27, 0, true).unwrap();
    assert_eq!(v.highest_pending(0), Some((27, 0)));
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR1, 0b10 << (2 * 11));
    assert_eq!(v.highest_pending(0), None);
    assert!(v.ready_bits_consistent());
    // Distributor-set active hides it; ICACTIVER shows it again.
    dw(&mut v, GICD_ISPENDR + 4, 1 << 8);
    dw(&mut v, GICD_ISACTIVER + 4, 1 << 8);
    assert_eq!(v.highest_pending(0), None);
    dw(&mut v, GICD_ICACTIVER + 4, 1 << 8);
    assert_eq!(v.highest_pending(0), Some((40, 0)));
    // An SGI to vCPU 1 (enabled there) is ready on vCPU 1 only.
    rw(&mut v, 1, SGI_BASE + GICR_ISENABLER0, 1 << 3);
    v.sgi1r(0, (3 << 24) | 0b10).unwrap();
    assert_eq!(v.highest_pending(1), Some((3, 0)));
    assert!(v.ready_bits_consistent());
    v.reset();
    assert!(v.ready_bits_consistent());
    assert_eq!(v, vgic());
}

#[test]
fn hardware_link_follows_the_interrupt() {
    let mut v = enabled();
    let spi = 40;
    // Forwarded while enabled: pending, and the entry owns the physical activation.
    assert_eq!(
        v.forward(spi, 0),
        Ok(Forwarded::Linked { coalesced: false })
    );
    let state = v.state(spi, 0).unwrap();
    assert!(state.pending() && state.hw_pending && !state.hw_listed);
    // The flush takes it: the link moves to the list register.
    let mut out = [(0, 0); 4];
    assert_eq!(v.take_most_urgent(0, &mut out), 1);
    assert_eq!(out[0], (spi, 0));
    assert!(v.is_linked(spi, 0));
    let state = v.state(spi, 0).unwrap();
    assert!(state.listed && state.active && !state.hw_pending);
    // While linked, the guest's pending and active bits are the physical GIC's.
    let linked = Linked {
        active: true,
        vcpu: None,
        base: 32,
        mask: 1 << 8,
    };
    let read = v.dist_read(GICD_ISACTIVER + 4, Word).unwrap();
    assert_eq!((read.value, read.linked), (1 << 8, Some(linked)));
    let read = v.dist_read(GICD_ICPENDR + 4, Word).unwrap();
    assert_eq!(
        read.linked,
        Some(Linked {
            active: false,
            ..linked
        })
    );
    assert_eq!(v.dist_read(GICD_ISENABLER + 4, Word).unwrap().linked, None);
    assert_eq!(v.dist_read(GICD_ISACTIVER, Word).unwrap().linked, None);
    // The guest deactivated it (read back empty): the level line is resampled.
    v.deactivate(0, spi).unwrap();
    let state = v.state(spi, 0).unwrap();
    assert!(!state.listed && !state.hw_listed && !state.pending() && !state.active);
    assert_eq!(v.dist_read(GICD_ISACTIVER + 4, Word).unwrap().linked, None);
    // Forwarded again after the guest's deactivation but before the read-back: the new
    // activation stays with the pending entry, and the line with it.
    v.forward(spi, 0).unwrap();
    v.take_most_urgent(0, &mut out);
    assert_eq!(
        v.forward(spi, 0),
        Ok(Forwarded::Linked { coalesced: false }),
        "the line it holds is the listed copy's: a new assertion"
    );
    assert_eq!(v.highest_pending(0), None, "still listed");
    v.deactivate(0, spi).unwrap();
    let state = v.state(spi, 0).unwrap();
    assert!(state.pending() && state.hw_pending && !state.hw_listed);
    assert_eq!(v.take_most_urgent(0, &mut out), 1);
    assert!(v.is_linked(spi, 0));
    // Taken back while still pending: the link goes back to the pending entry.
    v.requeue(0, spi).unwrap();
    let state = v.state(spi, 0).unwrap();
    assert!(state.hw_pending && !state.hw_listed && !state.listed && state.pending());
    assert_eq!(v.highest_pending(0), Some((spi, 0)));
    // SGIs have no physical interrupt to link; unknown INTIDs are refused.
    assert_eq!(v.forward(3, 0), Err(Error::NotLinkable(3)));
    assert_eq!(
        v.forward(FIRST_SPI + SPIS, 0),
        Err(Error::NoSuchIntid(FIRST_SPI + SPIS))
    );
    // Disabled by the guest: a level is refused (the physical line keeps it), an edge is
    // latched without a link.
    assert_eq!(v.forward(41, 0), Ok(Forwarded::Refused));
    assert!(!v.state(41, 0).unwrap().pending());
    dw(&mut v, GICD_ICFGR + 8, 0b10 << 18); // INTID 41 edge
    assert_eq!(
        v.forward(41, 0),
        Ok(Forwarded::Latched { coalesced: false })
    );
    let state = v.state(41, 0).unwrap();
    assert!(state.pending() && !state.hw_pending);
    dw(&mut v, GICD_ISENABLER + 4, 1 << 9);
    v.requeue(0, spi).unwrap();
    assert_eq!(v.take_most_urgent(0, &mut out), 2);
    assert!(v.is_linked(spi, 0) && !v.is_linked(41, 0));
    assert!(v.ready_bits_consistent());
}

#[test]
fn guest_writes_release_links() {
    let mut v = enabled();
    // Level SPI 40 disabled while pending with its link: the link is released and the line
    // forgotten (resampled when the guest enables it again).
    v.forward(40, 0).unwrap();
    let change = dw(&mut v, GICD_ICENABLER + 4, 1 << 8).change.unwrap();
    assert_eq!(
        (change.kind, change.mask, change.unlinked),
        (ChangeKind::Disabled, 1 << 8, 1 << 8)
    );
    let state = v.state(40, 0).unwrap();
    assert!(!state.hw_pending && !state.pending());
    dw(&mut v, GICD_ISENABLER + 4, 1 << 8);
    // Edge PPI 27: ICPENDR releases the link along with the pending state.
    rw(&mut v, 0, SGI_BASE + GICR_ICFGR1, 0b10 << (2 * 11));
    v.forward(27, 0).unwrap();
    let change = rw(&mut v, 0, SGI_BASE + GICR_ICPENDR0, 1 << 27)
        .change
        .unwrap();
    assert_eq!(
        (change.kind, change.vcpu, change.mask, change.unlinked),
        (ChangeKind::PendingCleared, Some(0), 1 << 27, 1 << 27)
    );
    assert!(!v.state(27, 0).unwrap().pending());
    // Disabled: the edge stays latched (the guest sees it pending) but without its link; it
    // is injected as a software interrupt once enabled again.
    v.forward(27, 0).unwrap();
    let change = rw(&mut v, 0, SGI_BASE + GICR_ICENABLER0, 1 << 27)
        .change
        .unwrap();
    assert_eq!(change.unlinked, 1 << 27);
    let state = v.state(27, 0).unwrap();
    assert!(state.pending() && !state.hw_pending);
    rw(&mut v, 0, SGI_BASE + GICR_ISENABLER0, 1 << 27);
    let mut out = [(0, 0); 4];
    assert_eq!(v.take_most_urgent(0, &mut out), 1);
    assert!(!v.is_linked(27, 0));
    v.deactivate(0, 27).unwrap();
    // A level SPI turned edge while pending only by its line: no longer pending, unlinked.
    dw(&mut v, GICD_ISENABLER + 4, 1 << 9);
    v.forward(41, 0).unwrap();
    let change = dw(&mut v, GICD_ICFGR + 8, 0b10 << 18).change.unwrap();
    assert_eq!(
        (change.kind, change.base, change.mask, change.unlinked),
        (ChangeKind::Config, 32, 1 << 9, 1 << 9)
    );
    assert!(!v.state(41, 0).unwrap().pending());
    // An edge turned level keeps its latch, and its link.
    v.forward(41, 0).unwrap();
    assert_eq!(dw(&mut v, GICD_ICFGR + 8, 0).change.unwrap().unlinked, 0);
    assert!(v.state(41, 0).unwrap().hw_pending);
    // Listed with its link: the list register owns it; guest writes do not release it, and
    // clearing its active bit does not offer it a second time.
    v.forward(40, 0).unwrap();
    assert_eq!(v.take_most_urgent(0, &mut out), 2);
    assert!(v.is_linked(40, 0) && v.is_linked(41, 0));
    for offset in [
        GICD_ICENABLER,
        GICD_ICPENDR,
        GICD_ICACTIVER,
        GICD_ISENABLER,
        GICD_ISPENDR,
    ] {
        let changes = dw(&mut v, offset + 4, 0b11 << 8);
        assert_eq!(changes.change.map_or(0, |c| c.unlinked), 0);
    }
    assert_eq!(
        v.highest_pending(0),
        None,
        "listed: never in two list registers"
    );
    assert!(v.is_linked(40, 0) && v.is_linked(41, 0));
    assert!(v.ready_bits_consistent());
}

/// A random walk of forwards, flushes, completions, requeues and guest writes, with a
/// shadow of which physical interrupts are active: every activation handed to the model
/// must be owned by a pending enabled entry or by a list register, until the guest's
/// deactivation of that list register or a [`Change::unlinked`] releases it — never lost,
/// never invented.
#[test]
fn every_physical_activation_stays_owned() {
    use std::collections::BTreeSet;
    let mut rng = XorShift::new(0x4a_11ed);
    let mut v = vgic();
    let vcpus = MPIDRS.len();
    let intids = FIRST_SPI + SPIS;
    dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1));
    // (INTID, bank): the bank is the vCPU for a PPI, 0 for an SPI.
    let key = |intid: u32, vcpu: usize| (intid, if intid < FIRST_SPI { vcpu } else { 0 });
    let mut active: BTreeSet<(u32, usize)> = BTreeSet::new();
    let mut releases = 0;
    for step in 0..20_000 {
        let r = rng.next();
        let value = rng.next();
        let vcpu = (r >> 8) as usize % vcpus;
        let intid = NR_SGIS + (r >> 16) as u32 % (intids - NR_SGIS);
        let bank = (r >> 32) % (u64::from(intids) / 32);
        let redist = r & (1 << 7) != 0;
        let mut released = |change: Option<Change>, active: &mut BTreeSet<(u32, usize)>| {
            let Some(change) = change else { return };
            for bit in 0..32 {
                if change.unlinked & (1 << bit) != 0 {
                    assert_ne!(change.mask & (1 << bit), 0, "unlinked but unchanged");
                    let intid = change.base + bit;
                    assert!(
                        active.remove(&key(intid, change.vcpu.unwrap_or(0))),
                        "released twice"
                    );
                    releases += 1;
                }
            }
        };
        match r % 8 {
            0 | 1 => {
                // A physical interrupt fires: only if it is not active already (the GIC
                // does not signal an active interrupt again).
                if active.contains(&key(intid, vcpu)) {
                    continue;
                }
                match v.forward(intid, vcpu).unwrap() {
                    Forwarded::Linked { .. } => {
                        active.insert(key(intid, vcpu));
                    }
                    Forwarded::Latched { .. } | Forwarded::Refused => {}
                }
            }
            2 => {
                let mut out = [(0, 0); 4];
                let taken = v.take_most_urgent(vcpu, &mut out);
                for &(intid, _) in &out[..taken] {
                    let state = v.state(intid, vcpu).unwrap();
                    assert_eq!(state.hw_listed, active.contains(&key(intid, vcpu)));
                }
            }
            3 => {
                // A list register read back: the guest deactivated it (with the physical
                // interrupt, if linked), or the flush takes it back still pending.
                let Ok(state) = v.state(intid, vcpu) else {
                    continue;
                };
                if !state.listed {
                    continue;
                }
                if value & 3 == 3 && state.hw_listed {
                    // The fast path: the guest deactivated it, it fires again at once, and
                    // the new copy is taken into the same list register.
                    assert!(active.remove(&key(intid, vcpu)));
                    if let Forwarded::Linked { .. } = v.forward(intid, vcpu).unwrap() {
                        active.insert(key(intid, vcpu));
                    }
                    if let Some((_, linked)) = v.retake(vcpu, intid) {
                        assert_eq!(linked, active.contains(&key(intid, vcpu)));
                    }
                } else if value & 3 == 1 && state.hw_listed && intid < FIRST_SPI {
                    // The PPI fast path: deactivated, fired again, listed again at once (or
                    // the general path when it does not apply).
                    assert!(active.remove(&key(intid, vcpu)));
                    if v.relist(vcpu, intid, true).is_some() {
                        active.insert(key(intid, vcpu));
                        let state = v.state(intid, vcpu).unwrap();
                        assert!(state.listed && state.hw_listed && !state.hw_pending);
                    } else {
                        if let Forwarded::Linked { .. } = v.forward(intid, vcpu).unwrap() {
                            active.insert(key(intid, vcpu));
                        }
                        if let Some((_, linked)) = v.retake(vcpu, intid) {
                            assert_eq!(linked, active.contains(&key(intid, vcpu)));
                        }
                    }
                } else if value & 1 == 0 {
                    if state.hw_listed {
                        assert!(active.remove(&key(intid, vcpu)));
                    }
                    v.deactivate(vcpu, intid).unwrap();
                } else if v.requeue(vcpu, intid).unwrap() {
                    assert!(active.remove(&key(intid, vcpu)));
                    releases += 1;
                }
            }
            4 => {
                let which = (value % 6) as usize;
                // Enables dense, everything else sparse.
                let bits = if which == 0 {
                    value | rng.next()
                } else {
                    value & rng.next() & rng.next()
                };
                let (dist, sgi) = BIT_REGS[which];
                let change = if redist {
                    rw(&mut v, vcpu, SGI_BASE + sgi, bits).change
                } else {
                    dw(&mut v, dist + 4 * bank, bits).change
                };
                released(change, &mut active);
            }
            5 => {
                let change = if redist {
                    rw(&mut v, vcpu, SGI_BASE + GICR_ICFGR1, value).change
                } else {
                    dw(&mut v, GICD_ICFGR + 4 * (2 * bank + (value & 1)), value).change
                };
                released(change, &mut active);
            }
            6 => {
                let route = MPIDRS[(value % vcpus as u64) as usize] | ((value >> 8) % 2) << 31;
                let _ = v.dist_write(GICD_IROUTER + 8 * u64::from(intid), Doubleword, route);
                let on = !value.is_multiple_of(16);
                dw(
                    &mut v,
                    GICD_CTLR,
                    if on { u64::from(CTLR_ENABLE_GRP1) } else { 0 },
                );
            }
            _ => {
                // Guest reads: the linked bits are exactly the listed-with-link interrupts.
                let offset = [GICD_ISPENDR, GICD_ICACTIVER][(value & 1) as usize];
                let read = if redist {
                    v.redist_read(vcpu as u64 * REDIST_STRIDE + SGI_BASE + offset, Word)
                        .unwrap()
                } else {
                    v.dist_read(offset + 4 * bank, Word).unwrap()
                };
                let base = if redist { 0 } else { 32 * bank as u32 };
                let expected: u32 = (0..32)
                    .filter(|bit| v.is_linked(base + bit, vcpu) && (redist || base > 0))
                    .map(|bit| 1 << bit)
                    .sum();
                assert_eq!(read.linked.map_or(0, |l| l.mask), expected, "step {step}");
            }
        }
        // The invariant, over every INTID and bank.
        for vcpu in 0..vcpus {
            for intid in NR_SGIS..intids {
                if intid >= FIRST_SPI && vcpu > 0 {
                    break;
                }
                let state = v.state(intid, vcpu).unwrap();
                let owned = (state.hw_pending && state.enabled && state.pending())
                    || (state.hw_listed && state.listed);
                assert!(!(state.hw_pending && state.hw_listed) || state.listed);
                assert_eq!(
                    active.contains(&key(intid, vcpu)),
                    state.hw_pending || state.hw_listed,
                    "INTID {intid} vCPU {vcpu} at step {step}: {state:?}"
                );
                if state.hw_pending || state.hw_listed {
                    assert!(owned, "INTID {intid} vCPU {vcpu} at step {step}: {state:?}");
                }
            }
        }
        if step % 7 == 0 {
            check_against_naive(&v);
        }
    }
    assert!(
        releases > 50,
        "the walk released links only {releases} times"
    );
}

/// Splits `parts` into chunks of at most `max` of its set bits, lowest first.
fn chunks(mut parts: u32, max: u32) -> Vec<u32> {
    let mut out = Vec::new();
    while parts != 0 {
        let mut chunk = 0;
        for _ in 0..max {
            chunk |= parts & parts.wrapping_neg();
            parts &= !chunk;
        }
        out.push(chunk);
    }
    out
}

/// The union of the changes of a write done in parts, as one change (kind and bank agree).
fn merged(changes: &[Changes]) -> Option<Change> {
    let mut all = changes.iter().filter_map(|c| c.change);
    let first = all.next()?;
    Some(all.fold(first, |acc, c| {
        assert_eq!((acc.kind, acc.vcpu, acc.base), (c.kind, c.vcpu, c.base));
        Change { mask: acc.mask | c.mask, unlinked: acc.unlinked | c.unlinked, entered: acc.entered | c.entered, left: acc.left | c.left, ..acc }
    }))
}

#[test]
fn an_access_split_in_parts_does_what_the_whole_access_does() {
    let mut rng = XorShift::new(0xc4a7);
    let mut whole = enabled();
    let mut split = whole.clone();
    let dist_regs = [GICD_CTLR, GICD_ISENABLER, GICD_ICENABLER, GICD_ISPENDR, GICD_ICPENDR, GICD_ISACTIVER, GICD_ICACTIVER, GICD_IPRIORITYR, GICD_ICFGR, GICD_IROUTER, GICD_IGROUPR];
    let sgi_regs = [GICR_ISENABLER0, GICR_ICENABLER0, GICR_ISPENDR0, GICR_ICPENDR0, GICR_ISACTIVER0, GICR_ICACTIVER0, GICR_IPRIORITYR0, GICR_ICFGR0];
    let mut split_accesses = 0;
    for step in 0..20_000 {
        let r = rng.next();
        let value = rng.next();
        let size = [Byte, Word, Word, Doubleword][(r & 3) as usize];
        let dist = r & 4 != 0;
        let offset = if dist {
            let base = dist_regs[(r >> 3) as usize % dist_regs.len()];
            let stride = if base == GICD_IROUTER { 8 } else { 4 };
            base + stride * ((r >> 8) % if base == GICD_IPRIORITYR { 24 } else { 5 }) + u64::from(base == GICD_IPRIORITYR && size == Byte) * ((r >> 16) & 3)
        } else {
            let vcpu = (r >> 8) % MPIDRS.len() as u64;
            vcpu * REDIST_STRIDE + SGI_BASE + sgi_regs[(r >> 3) as usize % sgi_regs.len()] + 4 * ((r >> 12) % 2)
        };
        let max = 1 + (r >> 20) as u32 % 8;
        let write = r & (1 << 24) != 0;
        let decoded = if dist { split.decode_dist(offset, size) } else { split.decode_redist(offset, size) };
        if write {
            let expected = if dist { whole.dist_write(offset, size, value) } else { whole.redist_write(offset, size, value) };
            let Ok(decoded) = decoded else {
                assert_eq!(decoded.unwrap_err(), expected.unwrap_err(), "step {step}");
                continue;
            };
            let done: Vec<Changes> =
                chunks(decoded.parts(Some(value)), max).into_iter().map(|part| split.write_part(&decoded, value, part)).collect();
            split_accesses += usize::from(done.len() > 1);
            assert_eq!(merged(&done), expected.unwrap().change, "step {step}: write {offset:#x} {value:#x} in parts of {max}");
        } else {
            let expected = if dist { whole.dist_read(offset, size) } else { whole.redist_read(offset, size) };
            let Ok(decoded) = decoded else {
                assert_eq!(decoded.unwrap_err(), expected.unwrap_err(), "step {step}");
                continue;
            };
            let (mut value, mut linked) = (0, None::<Linked>);
            for part in chunks(decoded.parts(None), max) {
                let read = split.read_part(&decoded, part);
                value |= read.value;
                if let Some(l) = read.linked {
                    linked = Some(Linked { mask: linked.map_or(0, |x| x.mask) | l.mask, ..l });
                }
            }
            let expected = expected.unwrap();
            assert_eq!((value, linked), (expected.value, expected.linked), "step {step}: read {offset:#x}");
        }
        assert_eq!(split, whole, "step {step}");
        // Model events, the same on both, so that links and listed entries occur.
        let vcpu = (value >> 40) as usize % MPIDRS.len();
        let intid = 16 + (value >> 48) as u32 % (32 + SPIS - 16);
        for v in [&mut whole, &mut split] {
            match (r >> 28) % 4 {
                0 => drop(v.forward(intid, vcpu)),
                1 => {
                    let mut out = [(0, 0); 2];
                    v.take_most_urgent(vcpu, &mut out);
                }
                2 => drop(v.deactivate(vcpu, intid)),
                _ => {}
            }
        }
    }
    assert!(split_accesses > 1000, "only {split_accesses} accesses were split");
}

#[test]
fn deactivate_says_whether_the_interrupt_became_a_log_entry() {
    let mut v = enabled();
    let spi = 40;
    // A level line still high at the completion: resampled, a new entry of the log.
    v.set_level(spi, 0, true).unwrap();
    v.acknowledge(0, spi).unwrap();
    assert!(!v.is_waiting(spi, 0));
    assert_eq!(v.deactivate(0, spi), Ok(true));
    assert!(v.is_waiting(spi, 0));
    // The line fell before the completion: nothing waits.
    v.acknowledge(0, spi).unwrap();
    v.set_level(spi, 0, false).unwrap();
    assert_eq!(v.deactivate(0, spi), Ok(false));
    assert!(!v.is_waiting(spi, 0));
    // Pending again while listed: an entry already, not a new one.
    v.set_pending(spi, 0).unwrap();
    v.acknowledge(0, spi).unwrap();
    v.set_pending(spi, 0).unwrap();
    assert!(v.is_waiting(spi, 0));
    assert_eq!(v.deactivate(0, spi), Ok(false));
    assert!(v.is_waiting(spi, 0));
}

#[test]
fn sgi_targets_names_what_sgi1r_marks_and_changes_nothing() {
    let mut v = enabled();
    for value in [5 << 24 | 0b11, 3 << 24 | 1 << 16 | 1, 1 << 40 | 7 << 24, 1 << 44 | 0xffff] {
        for sender in 0..4 {
            let before = v.clone();
            let targets = v.sgi_targets(sender, value).unwrap();
            assert_eq!(v, before, "looking changes nothing");
            assert_eq!(v.sgi1r(sender, value).unwrap(), targets);
        }
    }
    assert_eq!(v.sgi_targets(4, 0), Err(Error::NoSuchVcpu(4)));
}

#[test]
fn the_most_urgent_of_one_is_the_first_pending_and_take_ready_takes_only_a_deliverable_one() {
    // Random states over the enabled SPIs and PPIs of vCPU 0: the one-slot choice the refill
    // makes in its own hold is `pending_for`'s first, and `take_ready` does what
    // `acknowledge` does (or nothing, when not deliverable).
    let mut rng = XorShift::new(0x7a4e);
    for _ in 0..2000 {
        let mut v = enabled();
        dw(&mut v, GICD_ISENABLER + 4, 0xffff_ffff);
        dw(&mut v, GICD_ISENABLER + 8, 0xffff_ffff);
        rw(&mut v, 0, SGI_BASE + GICR_ISENABLER0, 0xffff_ffff);
        for _ in 0..6 {
            let intid = 16 + (rng.next() % 80) as u32;
            let offset = GICD_IPRIORITYR + u64::from(intid);
            let priority = (rng.next() % 4) as u8 * 0x40;
            if intid < 32 {
                v.redist_write(SGI_BASE + GICR_IPRIORITYR0 + u64::from(intid), Byte, u64::from(priority)).unwrap();
            } else {
                v.dist_write(offset, Byte, u64::from(priority)).unwrap();
                if rng.next() % 4 == 0 {
                    // Routed to vCPU 1: not vCPU 0's.
                    v.dist_write(GICD_IROUTER + 8 * u64::from(intid), Doubleword, MPIDRS[1]).unwrap();
                }
            }
            v.set_pending(intid, 0).unwrap();
        }
        let mut one = [(0, 0)];
        let found = v.most_urgent(0, &mut one);
        assert_eq!(found == 1, v.highest_pending(0).is_some());
        assert_eq!((found == 1).then_some(one[0]), v.pending_for(0).next());
        for intid in 16..96 {
            let deliverable = v.is_deliverable(0, intid);
            let mut acknowledged = v.clone();
            let before = v.clone();
            let taken = v.take_ready(0, intid);
            assert_eq!(taken.is_some(), deliverable, "INTID {intid}");
            if deliverable {
                acknowledged.acknowledge(0, intid).unwrap();
                assert_eq!(v, acknowledged, "take_ready of {intid} is its acknowledge");
                let state = v.state(intid, 0).unwrap();
                assert_eq!(taken, Some((state.priority, state.hw_listed)));
            } else {
                assert_eq!(v, before, "nothing changes for {intid}");
            }
        }
    }
}

/// The PPI fast path ([`Vgic::relist`]) against [`Vgic::forward`] then [`Vgic::retake`], on a
/// random walk of the private interrupts (enables, triggers, set/clear-pending and
/// clear-active writes, forwards, flushes, completions, requeues, the distributor enable):
/// wherever it applies it leaves exactly their state; elsewhere it changes nothing.
#[test]
fn relist_is_forward_then_retake_or_nothing() {
    let mut rng = XorShift::new(0x7e_1157);
    let mut v = vgic();
    dw(&mut v, GICD_CTLR, u64::from(CTLR_ENABLE_GRP1));
    let (mut applied, mut declined) = ([0u32; 2], 0u32);
    for _ in 0..40_000 {
        let r = rng.next();
        let value = rng.next();
        let vcpu = (r >> 8) as usize % MPIDRS.len();
        let intid = 24 + (r >> 16) as u32 % 8;
        let bit = 1u64 << intid;
        match r % 12 {
            0 => drop(rw(&mut v, vcpu, SGI_BASE + GICR_ISENABLER0, bit)),
            1 if value.is_multiple_of(4) => drop(rw(&mut v, vcpu, SGI_BASE + GICR_ICENABLER0, bit)),
            2 if value.is_multiple_of(8) => drop(rw(&mut v, vcpu, SGI_BASE + GICR_ICFGR1, value)),
            3 if value.is_multiple_of(4) => {
                let offset = [GICR_ISPENDR0, GICR_ICPENDR0, GICR_ICACTIVER0][(value % 3) as usize];
                let _ = rw(&mut v, vcpu, SGI_BASE + offset, bit);
            }
            4 => drop(v.forward(intid, vcpu)),
            5 => {
                let mut out = [(0, 0); 4];
                v.take_most_urgent(vcpu, &mut out);
            }
            6 => drop(v.deactivate(vcpu, intid)),
            7 if value.is_multiple_of(4) => drop(v.requeue(vcpu, intid)),
            8 if value.is_multiple_of(64) => {
                let on = !value.is_multiple_of(128);
                dw(&mut v, GICD_CTLR, if on { u64::from(CTLR_ENABLE_GRP1) } else { 0 });
            }
            _ => {
                let listed = v.state(intid, vcpu).unwrap().listed;
                let copy_emptied = listed != value.is_multiple_of(8);
                let before = v.clone();
                match v.relist(vcpu, intid, copy_emptied) {
                    Some(priority) => {
                        assert_eq!(copy_emptied, listed);
                        applied[usize::from(listed)] += 1;
                        let mut by_hand = before;
                        assert_eq!(by_hand.forward(intid, vcpu), Ok(Forwarded::Linked { coalesced: false }));
                        assert_eq!(by_hand.retake(vcpu, intid), Some((priority, true)));
                        assert_eq!(v, by_hand);
                    }
                    None => {
                        declined += 1;
                        assert_eq!(v, before);
                    }
                }
            }
        }
    }
    // A PPI outside the private range, an SGI and a vCPU beyond the model never apply.
    let before = v.clone();
    assert_eq!(v.relist(0, 5, false), None);
    assert_eq!(v.relist(0, 40, false), None);
    assert_eq!(v.relist(MPIDRS.len(), 27, false), None);
    assert_eq!(v, before);
    assert!(applied[0] > 100 && applied[1] > 100 && declined > 100, "idle {}, listed {}, declined {declined}", applied[0], applied[1]);
}
