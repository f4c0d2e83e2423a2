//! The time-partitioning and quota scheduling classes: CPU shares over a run.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{RunMeter, TestResult, api, check, cpu, join_all, ms, spawn};
use crate::rt::{self, Duration, Policy, TpWindow, sched_quota, sched_tp};

/// Whether `value` is within `percent` % of `expected`.
fn near(value: u64, expected: u64, percent: u64) -> bool {
    value.abs_diff(expected) * 100 <= expected * percent
}

/// Busy threads in TP partitions 0 and 1 of a 2 ms / 3 ms schedule get CPU time in a 2:3
/// ratio over 50 ms.
pub fn tp_partitions() -> TestResult {
    const RUN: Duration = ms(50);
    let on = cpu(2);
    let windows = [TpWindow { partition: Some(0), duration: ms(2) }, TpWindow { partition: Some(1), duration: ms(3) }];
    api("sched_tp::install", sched_tp::install(on, &windows))?;
    let ran = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let end = rt::now() + ms(1) + RUN;
    let mut handles = Vec::new();
    let mut spawned = Ok(());
    for partition in 0..2u8 {
        let ran = ran.clone();
        match spawn("tp", on, Policy::TimePartition { partition }, 10, move || {
            let meter = RunMeter::start();
            ran[usize::from(partition)].store(meter.run_until(end), Ordering::Release);
        }) {
            Ok(handle) => handles.push(handle),
            Err(e) => spawned = Err(e),
        }
    }
    let started = api("sched_tp::start", sched_tp::start(on));
    let joined = if started.is_ok() { join_all(handles) } else { Ok(()) };
    let stopped = api("sched_tp::stop", sched_tp::stop(on));
    spawned?;
    started?;
    joined?;
    stopped?;
    let ran = [ran[0].load(Ordering::Acquire), ran[1].load(Ordering::Acquire)];
    let total = RUN.as_nanos();
    // Partition 0 gets 2/5 of the time, partition 1 3/5 (give or take a window at the ends).
    check(near(ran[0], total * 2 / 5, 12) && near(ran[1], total * 3 / 5, 12), || {
        format!("partition CPU times {} us and {} us over {} us, expected 2:3", ran[0] / 1000, ran[1] / 1000, total / 1000)
    })?;
    check(near(ran[0] * 3, ran[1] * 2, 10), || format!("ratio {} : {} us, expected 2:3", ran[0] / 1000, ran[1] / 1000))
}

/// With a 10 ms quota period, busy threads in groups of 3 ms and 5 ms budgets get 30 % and
/// 50 % of the CPU over 100 ms; the empty groups can then be removed.
pub fn quota() -> TestResult {
    const RUN: Duration = ms(100);
    let on = cpu(3);
    api("sched_quota::set_period", sched_quota::set_period(on, ms(10)))?;
    let budgets = [ms(3), ms(5)];
    let mut groups = Vec::new();
    for budget in budgets {
        groups.push(api("sched_quota::create_group", sched_quota::create_group(on, budget))?);
    }
    let ran = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let end = rt::now() + RUN;
    let mut handles = Vec::new();
    let mut spawned = Ok(());
    for (index, group) in groups.iter().copied().enumerate() {
        let ran = ran.clone();
        match spawn("quota", on, Policy::Quota { group }, 10, move || {
            ran[index].store(RunMeter::start().run_until(end), Ordering::Release);
        }) {
            Ok(handle) => handles.push(handle),
            Err(e) => spawned = Err(e),
        }
    }
    let joined = join_all(handles);
    let mut removed = Ok(());
    for group in groups {
        if let Err(e) = sched_quota::remove_group(group) {
            removed = Err(format!("remove_group after the threads exited: {e}"));
        }
    }
    spawned?;
    joined?;
    removed?;
    let ran = [ran[0].load(Ordering::Acquire), ran[1].load(Ordering::Acquire)];
    let total = RUN.as_nanos();
    check(near(ran[0], total * 3 / 10, 10) && near(ran[1], total / 2, 10), || {
        format!("group CPU times {} us and {} us over {} us, expected 30 % and 50 %", ran[0] / 1000, ran[1] / 1000, total / 1000)
    })
}
