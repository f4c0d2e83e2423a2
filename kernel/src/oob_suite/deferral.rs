//! The GIC as the deferred log while oob work runs: an in-band interrupt raised while an oob
//! thread holds the CPU waits in the GIC (the priority mask holds it), is delivered once the
//! CPU returns to the in-band stage, most urgent first, and is counted.

use alloc::format;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{MPIDR_EL1, Readable};

use super::{TestResult, check, cpu, ms, spawn, us};
use crate::rt::{self, Policy};
use crate::{gic, hwtimer, irq};

/// The two in-band SGIs: sent less urgent first, expected most urgent first.
const URGENT_SGI: u32 = 15;
const LESS_URGENT_SGI: u32 = 14;
/// The less urgent one's priority (still held by the oob priority mask).
const LESS_URGENT_PRIORITY: u8 = gic::INBAND_PRIORITY + 0x10;

/// The order the handlers ran in (INTIDs), when (counter) and whether in an oob thread.
static ORDER: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static AT: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static RAN: AtomicUsize = AtomicUsize::new(0);
static IN_OOB_THREAD: AtomicBool = AtomicBool::new(false);
/// The CPU each handler ran on.
static ON_CPU: [AtomicUsize; 2] = [const { AtomicUsize::new(usize::MAX) }; 2];

fn on_sgi(intid: u32) {
    let index = RAN.fetch_add(1, Ordering::AcqRel);
    if let (Some(order), Some(at)) = (ORDER.get(index), AT.get(index)) {
        order.store(intid, Ordering::Release);
        at.store(hwtimer::counter_unordered(), Ordering::Release);
        ON_CPU[index].store(boot::cpu_index(), Ordering::Release);
    }
    if crate::sched::current_thread().is_some() {
        IN_OOB_THREAD.store(true, Ordering::Release);
    }
}

/// `inband-deferral`: an oob thread on another CPU enables two in-band SGIs, sends itself
/// the less urgent then the more urgent one, and spins 300 µs: neither may run meanwhile;
/// once it exits, both run in the in-band stage, most urgent first, after its end, and the
/// deferral account counted an oob section ended with an in-band interrupt waiting.
pub fn inband_deferral() -> TestResult {
    irq::claim_inband(URGENT_SGI, on_sgi).map_err(|e| format!("claim: {e}"))?;
    irq::claim_inband(LESS_URGENT_SGI, on_sgi).map_err(|e| format!("claim: {e}"))?;
    RAN.store(0, Ordering::Release);
    let deferred_before = crate::guest::virq::ACCOUNT.deferred.count();
    static ENDED: AtomicU64 = AtomicU64::new(0);
    static RAN_DURING: AtomicUsize = AtomicUsize::new(usize::MAX);
    static SETUP: AtomicBool = AtomicBool::new(false);
    let target = cpu(1);
    let thread = spawn("deferral", target, Policy::Fifo, 90, move || {
        let here = boot::cpu_index();
        let edge = arm_gic::Trigger::Edge;
        let enabled = gic::enable_private(URGENT_SGI, here, gic::INBAND_PRIORITY, edge)
            .and_then(|()| gic::enable_private(LESS_URGENT_SGI, here, LESS_URGENT_PRIORITY, edge));
        SETUP.store(enabled.is_ok(), Ordering::Release);
        let mpidr = MPIDR_EL1.get();
        gic::send_sgi(LESS_URGENT_SGI, mpidr, here);
        gic::send_sgi(URGENT_SGI, mpidr, here);
        let until = rt::now() + us(300);
        while rt::now() < until {
            core::hint::spin_loop();
        }
        RAN_DURING.store(RAN.load(Ordering::Acquire), Ordering::Release);
        ENDED.store(hwtimer::counter_unordered(), Ordering::Release);
    })?;
    thread.join().map_err(|e| format!("join: {e}"))?;
    let delivered = super::inband_wait(ms(20), || RAN.load(Ordering::Acquire) >= 2);
    check(SETUP.load(Ordering::Acquire), || "enabling the SGIs failed".into())?;
    check(RAN_DURING.load(Ordering::Acquire) == 0, || {
        format!(
            "{} in-band SGI(s) ran while the oob thread held CPU {target}: SGI {} on CPU {}",
            RAN_DURING.load(Ordering::Acquire),
            ORDER[0].load(Ordering::Acquire),
            ON_CPU[0].load(Ordering::Acquire)
        )
    })?;
    check(delivered, || format!("{} of 2 in-band SGIs delivered after the thread", RAN.load(Ordering::Acquire)))?;
    let order = [ORDER[0].load(Ordering::Acquire), ORDER[1].load(Ordering::Acquire)];
    check(order == [URGENT_SGI, LESS_URGENT_SGI], || format!("delivered in the order {order:?}, not by priority"))?;
    let ended = ENDED.load(Ordering::Acquire);
    check(AT.iter().all(|at| at.load(Ordering::Acquire) >= ended), || "an SGI ran before the thread ended".into())?;
    check(!IN_OOB_THREAD.load(Ordering::Acquire), || "an SGI ran in an oob thread".into())?;
    let deferred = crate::guest::virq::ACCOUNT.deferred.count() - deferred_before;
    check(deferred >= 1, || "no oob section counted with an in-band interrupt waiting".into())
}
