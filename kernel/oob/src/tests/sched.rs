//! Scheduling: class order, FIFO, RR, TP, quota, in-band stage, cross-CPU effects, lifecycle.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::{Sim, dus, us};
use crate::sched::Runnable::{InBand, Oob};
use crate::{
    CpuMask, Duration, Error, OobCore, Policy, Runnable, ThreadSpec, ThreadState, TpWindow, Wait, WaitObject,
    WakeReason,
};

const RR_1MS: Policy = Policy::RoundRobin { quantum: Duration::from_millis(1) };

#[test]
fn inband_stage_runs_exactly_when_no_oob_thread_is_runnable() {
    let mut sim = Sim::new(1);
    assert_eq!(sim.core.pick_next(0, sim.now), Ok(InBand));
    let t = sim.core.spawn(ThreadSpec { dormant: true, ..ThreadSpec::new("t", 0, Policy::Fifo, 10) }).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), InBand, "dormant threads do not run");
    assert_eq!(sim.core.thread_state(t), Ok(ThreadState::Dormant));
    sim.core.start(t).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(t));
    assert_eq!(sim.core.start(t), Err(Error::NotDormant));

    sim.run_until(us(10));
    assert_eq!(sim.core.sleep(t, dus(100), sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.running(0), InBand, "blocked");
    sim.run_until(us(200));
    assert_eq!(sim.core.take_wake_reason(t), Ok(Some(WakeReason::TimedOut)));
    sim.core.suspend(t).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), InBand, "suspended");
    sim.core.resume(t).unwrap();
    assert_eq!(sim.core.resume(t), Err(Error::NotSuspended));
    sim.settle();
    assert_eq!(sim.running(0), Oob(t));
    sim.core.exit(t, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), InBand, "exited");
    assert_eq!(
        sim.switches_on(0, us(0)),
        vec![
            (us(0), Oob(t)),
            (us(10), InBand),
            (us(110), Oob(t)),
            (us(200), InBand),
            (us(200), Oob(t)),
            (us(200), InBand)
        ]
    );
}

#[test]
fn highest_priority_first_fifo_within_a_level_and_preempted_keeps_its_turn() {
    let mut sim = Sim::new(1);
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    let b = sim.spawn("b", 0, Policy::Fifo, 20);
    let c = sim.spawn("c", 0, Policy::Fifo, 20);
    let d = sim.spawn("d", 0, Policy::Fifo, 5);
    assert_eq!(sim.running(0), Oob(b));
    let h = sim.spawn("h", 0, Policy::Fifo, 30);
    assert_eq!(sim.running(0), Oob(h));
    let _ = sim.core.sleep(h, Duration::from_secs(1), sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(b), "b was preempted at the head of its level");
    let mut order = Vec::new();
    while let Oob(t) = sim.running(0) {
        order.push(t);
        sim.core.suspend(t).unwrap();
        sim.settle();
    }
    assert_eq!(order, [b, c, a, d]);
}

#[test]
fn round_robin_rotates_after_its_slice_with_exact_timing() {
    let mut sim = Sim::new(1);
    let a = sim.spawn("a", 0, RR_1MS, 10);
    let b = sim.spawn("b", 0, RR_1MS, 10);
    sim.run_until(us(2_400));
    // A higher-priority thread preempts `a` 400 us into its slice, for 200 us.
    let h = sim.spawn("h", 0, Policy::Fifo, 20);
    sim.run_until(us(2_600));
    let _ = sim.core.sleep(h, Duration::from_secs(1), sim.now).unwrap();
    sim.run_until(us(4_300));
    let expected = vec![
        (us(0), Oob(a)),
        (us(1_000), Oob(b)),
        (us(2_000), Oob(a)),
        (us(2_400), Oob(h)),
        (us(2_600), Oob(a)),
        (us(3_200), Oob(b)),
        (us(4_200), Oob(a)),
    ];
    assert_eq!(sim.switches_on(0, us(0)), expected, "a keeps the 600 us left of its slice");
    sim.core.pick_next(0, sim.now).unwrap(); // charge up to now
    assert_eq!(sim.core.thread_stats(a).unwrap().cpu_time, dus(1_000 + 400 + 600 + 100));
    assert_eq!(sim.core.thread_stats(b).unwrap().cpu_time, dus(2_000));
    assert_eq!(sim.core.thread_stats(h).unwrap().cpu_time, dus(200));
    assert_eq!(sim.core.thread_stats(a).unwrap().switches, 4);
}

#[test]
fn round_robin_thread_alone_at_its_level_keeps_running() {
    let mut sim = Sim::new(1);
    let a = sim.spawn("a", 0, RR_1MS, 10);
    let low = sim.spawn("low", 0, RR_1MS, 5);
    sim.run_until(us(5_500));
    assert_eq!(sim.switches_on(0, us(0)), vec![(us(0), Oob(a))]);
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(us(6_000))), "slice timer re-armed at each rotation");
    assert_eq!(sim.core.thread_stats(low).unwrap().cpu_time, Duration::ZERO);
}

fn tp_schedule() -> [TpWindow; 3] {
    [
        TpWindow { partition: Some(0), duration: dus(300) },
        TpWindow { partition: None, duration: dus(200) },
        TpWindow { partition: Some(1), duration: dus(500) },
    ]
}

#[test]
fn tp_threads_run_only_in_their_windows_with_exact_boundaries() {
    let mut sim = Sim::new(1);
    sim.core.tp_install(0, &tp_schedule()).unwrap();
    let t0 = sim.spawn("t0", 0, Policy::TimePartition { partition: 0 }, 10);
    let t1 = sim.spawn("t1", 0, Policy::TimePartition { partition: 1 }, 50);
    assert_eq!(sim.running(0), InBand, "TP is stopped until started");
    sim.core.tp_start(0, sim.now).unwrap();
    sim.run_until(us(2_100));
    // A FIFO thread, even at priority 1, runs whatever the window.
    let f = sim.spawn("f", 0, Policy::Fifo, 1);
    sim.run_until(us(2_150));
    let _ = sim.core.sleep(f, Duration::from_secs(1), sim.now).unwrap();
    sim.run_until(us(2_600));
    let expected = vec![
        (us(0), Oob(t0)),
        (us(300), InBand),
        (us(500), Oob(t1)),
        (us(1_000), Oob(t0)),
        (us(1_300), InBand),
        (us(1_500), Oob(t1)),
        (us(2_000), Oob(t0)),
        (us(2_100), Oob(f)),
        (us(2_150), Oob(t0)),
        (us(2_300), InBand),
        (us(2_500), Oob(t1)),
    ];
    assert_eq!(sim.switches_on(0, us(0)), expected);
    sim.core.pick_next(0, sim.now).unwrap();
    assert_eq!(sim.core.thread_stats(t0).unwrap().cpu_time, dus(300 + 300 + 100 + 150));
    assert_eq!(sim.core.thread_stats(t1).unwrap().cpu_time, dus(500 + 500 + 100));
    sim.core.tp_stop(0).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), InBand);
}

#[test]
fn tp_window_switch_stays_on_the_grid_when_the_interrupt_is_late() {
    let mut core = OobCore::new(1).unwrap();
    core.tp_install(0, &tp_schedule()).unwrap();
    let t0 = core.spawn(ThreadSpec::new("t0", 0, Policy::TimePartition { partition: 0 }, 10)).unwrap();
    let t1 = core.spawn(ThreadSpec::new("t1", 0, Policy::TimePartition { partition: 1 }, 10)).unwrap();
    core.tp_start(0, us(0)).unwrap();
    assert_eq!(core.pick_next(0, us(0)), Ok(Oob(t0)));
    assert_eq!(core.hardware_deadline(0), Ok(Some(us(300))));
    // The interrupt for 300 us arrives at 1 650 us: inside window 3 of the second frame.
    core.on_timer(0, us(1_650)).unwrap();
    assert_eq!(core.pick_next(0, us(1_650)), Ok(Oob(t1)));
    assert_eq!(core.hardware_deadline(0), Ok(Some(us(2_000))));
}

#[test]
fn quota_group_gets_its_budget_every_period() {
    let mut sim = Sim::new(1);
    sim.core.quota_set_period(0, dus(1_000), sim.now).unwrap();
    let group = sim.core.quota_create_group(0, dus(300)).unwrap();
    let busy = sim.spawn("busy", 0, Policy::Quota { group }, 10);
    sim.run_until(us(10_000));
    sim.core.pick_next(0, sim.now).unwrap();
    assert_eq!(sim.core.thread_stats(busy).unwrap().cpu_time, dus(3_000), "30% of 10 periods");
    assert_eq!(sim.core.inband_stats(0).unwrap().cpu_time, dus(7_000));
    let mut expected: Vec<(crate::Instant, Runnable)> =
        (0..10).flat_map(|k| [(us(k * 1_000), Oob(busy)), (us(k * 1_000 + 300), InBand)]).collect();
    expected.push((us(10_000), Oob(busy)));
    assert_eq!(sim.switches_on(0, us(0)), expected);
}

#[test]
fn quota_budget_is_shared_by_the_group_and_does_not_bind_fifo_threads() {
    let mut sim = Sim::new(1);
    sim.core.quota_set_period(0, dus(1_000), sim.now).unwrap();
    let group = sim.core.quota_create_group(0, dus(300)).unwrap();
    let hi = sim.spawn("hi", 0, Policy::Quota { group }, 20);
    let lo = sim.spawn("lo", 0, Policy::Quota { group }, 10);
    sim.run_until(us(1_100));
    assert_eq!(sim.running(0), Oob(hi));
    sim.core.suspend(hi).unwrap(); // `lo` gets what `hi` left: 200 us
    sim.run_until(us(2_000));
    assert_eq!(
        sim.switches_on(0, us(0)),
        vec![
            (us(0), Oob(hi)),
            (us(300), InBand),
            (us(1_000), Oob(hi)),
            (us(1_100), Oob(lo)),
            (us(1_300), InBand),
            (us(2_000), Oob(lo))
        ]
    );
    assert_eq!(sim.core.quota_budget_left(group), Ok(dus(300)));
    // A FIFO thread is not charged and not throttled.
    let f = sim.spawn("f", 0, Policy::Fifo, 1);
    sim.run_until(us(3_500));
    assert_eq!(sim.running(0), Oob(f));
    assert_eq!(sim.core.quota_budget_left(group), Ok(dus(300)));
    assert_eq!(sim.core.quota_remove_group(group), Err(Error::GroupInUse));
}

#[test]
fn cross_cpu_wake_reschedules_that_cpu_only_and_only_if_it_preempts() {
    let mut sim = Sim::new(3);
    let sem = sim.core.sem_create(0);
    let waiter = sim.spawn("waiter", 1, Policy::Fifo, 50);
    assert_eq!(sim.core.sem_wait(waiter, sem, None, sim.now), Ok(Wait::Blocked));
    let lower = sim.spawn("lower", 2, Policy::Fifo, 5);
    assert_eq!(sim.core.sem_wait(lower, sem, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    let busy = sim.spawn("busy", 2, Policy::Fifo, 10);
    let _poster = sim.spawn("poster", 0, Policy::Fifo, 10);
    assert_eq!(sim.running(1), InBand);
    assert_eq!(sim.running(2), Oob(busy));

    sim.core.sem_post(sem).unwrap();
    let effects = sim.core.effects();
    assert_eq!(effects.resched, CpuMask::only(1), "the waiter's CPU, not the poster's");
    sim.core.sem_post(sem).unwrap();
    assert_eq!(sim.core.effects().resched, CpuMask::EMPTY, "`lower` does not preempt `busy`");
    sim.reschedule(1);
    assert_eq!(sim.running(1), Oob(waiter));
    assert_eq!(sim.core.thread_state(lower), Ok(ThreadState::Ready));
}

#[test]
fn stale_thread_ids_are_refused() {
    let mut sim = Sim::new(1);
    let t = sim.spawn("t", 0, Policy::Fifo, 10);
    sim.core.exit(t, sim.now).unwrap();
    assert_eq!(sim.core.thread_state(t), Err(Error::StaleThread));
    assert_eq!(sim.core.current(0), Ok(Oob(t)), "still current until switched out");
    sim.settle();
    assert_eq!(sim.running(0), InBand);
    let u = sim.spawn("u", 0, Policy::Fifo, 10);
    assert_eq!(u.index(), t.index(), "slot reused");
    assert_ne!(u, t);
    assert_eq!(sim.core.exit(t, sim.now), Err(Error::StaleThread));
    assert_eq!(sim.core.resume(t), Err(Error::StaleThread));
    assert_eq!(sim.core.set_priority(t, 20, sim.now), Err(Error::StaleThread));
    assert_eq!(sim.core.sleep(t, dus(1), sim.now), Err(Error::StaleThread));
    assert_eq!(sim.core.switched(0, Oob(t), InBand, sim.now), Err(Error::NotCurrent));
    assert_eq!(sim.core.thread_state(u), Ok(ThreadState::Running));
    // A thread that is not current is reclaimed at once.
    let d = sim.core.spawn(ThreadSpec { dormant: true, ..ThreadSpec::new("d", 0, Policy::Fifo, 1) }).unwrap();
    sim.core.exit(d, sim.now).unwrap();
    let e = sim.core.spawn(ThreadSpec::new("e", 0, Policy::Fifo, 1)).unwrap();
    assert_eq!(e.index(), d.index());
    assert_eq!(sim.core.thread_state(d), Err(Error::StaleThread));
}

#[test]
fn invalid_parameters_are_refused() {
    let mut core = OobCore::new(2).unwrap();
    assert!(matches!(OobCore::new(0), Err(Error::InvalidCpu)));
    assert!(matches!(OobCore::new(9), Err(Error::InvalidCpu)));
    let spec = |cpu, policy, priority| ThreadSpec::new("x", cpu, policy, priority);
    assert_eq!(core.spawn(spec(2, Policy::Fifo, 10)), Err(Error::InvalidCpu));
    assert_eq!(core.spawn(spec(0, Policy::Fifo, 0)), Err(Error::InvalidPriority));
    assert_eq!(core.spawn(spec(0, Policy::Fifo, 100)), Err(Error::InvalidPriority));
    assert_eq!(core.spawn(spec(0, Policy::RoundRobin { quantum: Duration::ZERO }, 10)), Err(Error::InvalidQuantum));
    assert_eq!(core.spawn(spec(0, Policy::TimePartition { partition: 8 }, 10)), Err(Error::InvalidPartition));
    assert_eq!(core.quota_create_group(1, dus(10)), Err(Error::QuotaNotConfigured));
    core.quota_set_period(1, dus(100), us(0)).unwrap();
    assert_eq!(core.quota_create_group(1, dus(101)), Err(Error::InvalidBudget));
    let group = core.quota_create_group(1, dus(10)).unwrap();
    assert_eq!(core.spawn(spec(0, Policy::Quota { group }, 10)), Err(Error::WrongCpu));
    let t = core.spawn(spec(1, Policy::Quota { group }, 10)).unwrap();
    assert_eq!(core.migrate(t, 0, us(0)), Err(Error::WrongCpu));
    assert_eq!(core.set_priority(t, 100, us(0)), Err(Error::InvalidPriority));
    core.set_policy(t, Policy::Fifo, 10, us(0)).unwrap();
    core.quota_remove_group(group).unwrap();
    assert_eq!(core.spawn(spec(1, Policy::Quota { group }, 10)), Err(Error::StaleQuotaGroup));
    assert_eq!(core.tp_install(0, &[]), Err(Error::InvalidSchedule));
    assert_eq!(core.tp_start(0, us(0)), Err(Error::InvalidSchedule));
    assert_eq!(core.pick_next(5, us(0)), Err(Error::InvalidCpu));
}

#[test]
fn switched_validates_its_arguments() {
    let mut sim = Sim::new(2);
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    let other_cpu = sim.spawn("b", 1, Policy::Fifo, 10);
    let blocked = sim.core.spawn(ThreadSpec::new("c", 0, Policy::Fifo, 5)).unwrap();
    sim.core.suspend(blocked).unwrap();
    let now = sim.now;
    assert_eq!(sim.core.switched(0, InBand, Oob(a), now), Err(Error::NotCurrent));
    assert_eq!(sim.core.switched(0, Oob(a), Oob(other_cpu), now), Err(Error::NotRunnable));
    assert_eq!(sim.core.switched(0, Oob(a), Oob(blocked), now), Err(Error::NotRunnable));
    assert_eq!(sim.core.switched(0, Oob(a), Oob(a), now), Ok(()));
    assert_eq!(sim.core.thread_stats(a).unwrap().switches, 1);
    assert_eq!(sim.core.switched(0, Oob(a), InBand, now), Ok(()), "the glue may run in-band anytime");
}

#[test]
fn set_priority_reorders_runnable_threads() {
    let mut sim = Sim::new(1);
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    let b = sim.spawn("b", 0, Policy::Fifo, 5);
    sim.core.set_priority(b, 20, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(b));
    sim.core.set_priority(b, 1, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(a));
    sim.core.set_policy(b, RR_1MS, 10, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(a), "equal priority does not preempt");
    assert_eq!(sim.core.effective_priority(b), Ok(10));
}

#[test]
fn migration_moves_the_thread_and_its_pending_timeout() {
    let mut sim = Sim::new(2);
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    let b = sim.spawn("b", 0, Policy::Fifo, 5);
    assert_eq!(sim.core.migrate(a, 1, sim.now), Err(Error::ThreadIsCurrent));
    sim.core.migrate(b, 1, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(1), Oob(b));
    let _ = sim.core.sleep(b, dus(100), sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.core.hardware_deadline(1), Ok(Some(us(100))));
    sim.core.migrate(b, 0, sim.now).unwrap();
    assert_eq!(sim.core.hardware_deadline(1), Ok(None));
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(us(100))));
    sim.run_until(us(150));
    assert_eq!(sim.core.thread_state(b), Ok(ThreadState::Ready), "woke on CPU 0 behind `a`");
    sim.core.suspend(a).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(b));
    assert_eq!(sim.running(1), InBand);
}

#[test]
fn effects_report_hardware_deadline_changes() {
    let mut core = OobCore::new(2).unwrap();
    let first = core.effects();
    assert_eq!(first.reprogram.bits(), 0b11, "initial state reported once");
    assert_eq!(first.timer_deadlines[..2], [None, None]);
    assert!(core.effects().reprogram.is_empty());
    let timer = core.timer_create(1, crate::TimerContext::Kernel, 7).unwrap();
    core.timer_start(timer, us(500), None).unwrap();
    let effects = core.effects();
    assert_eq!((effects.reprogram, effects.timer_deadlines[1]), (CpuMask::only(1), Some(us(500))));
    let fired = core.on_timer(1, us(500)).unwrap();
    assert_eq!((fired.len(), fired[0].token, fired[0].timer), (1, 7, timer));
    let effects = core.effects();
    assert_eq!((effects.reprogram, effects.timer_deadlines[1]), (CpuMask::only(1), None));
    assert_eq!(core.on_timer(0, us(600)).unwrap(), &[], "spurious");
    assert_eq!(core.effects().reprogram, CpuMask::only(0), "the consumed one-shot is always reported");
}

#[test]
fn snapshot_lists_threads_and_prints_a_ps_table() {
    let mut sim = Sim::new(2);
    let m = sim.core.mutex_create(None).unwrap();
    let owner = sim.spawn("owner", 0, Policy::Fifo, 10);
    sim.core.mutex_try_lock(owner, m, sim.now).unwrap();
    let waiter = sim.spawn("waiter", 0, Policy::Fifo, 60);
    assert_eq!(sim.core.mutex_lock(waiter, m, None, sim.now), Ok(Wait::Blocked));
    sim.run_until(us(1_500));
    sim.core.report_latency(owner, Duration::from_nanos(4_250)).unwrap();
    sim.core.report_latency(owner, Duration::from_nanos(1_000)).unwrap();
    let _idle = sim.spawn("sleeper", 1, RR_1MS, 5);
    sim.core.pick_next(0, sim.now).unwrap();
    let snapshot = sim.core.snapshot();
    assert_eq!(snapshot.threads.len(), 3);
    let row = snapshot.threads.iter().find(|row| row.id == owner).unwrap();
    assert_eq!((row.priority, row.base_priority, row.boosted, row.state), (60, 10, true, ThreadState::Running));
    assert_eq!(row.stats.max_latency, Duration::from_nanos(4_250));
    assert_eq!(row.stats.cpu_time, dus(1_500));
    let blocked = sim.core.thread_info(waiter).unwrap();
    assert_eq!(blocked.state, ThreadState::Blocked { on: WaitObject::Mutex(m), timeout: None });
    let table = format!("{snapshot}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 2 + 3, "{table}");
    assert!(lines[0].starts_with("CPU  ID"));
    assert!(
        lines.iter().any(|l| l.contains("60*")
            && l.contains("run")
            && l.contains("1500.000")
            && l.contains("4.250")
            && l.ends_with("owner")),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.contains("wait:mutex") && l.ends_with("waiter")), "{table}");
    assert!(lines.iter().any(|l| l.contains(" rr ") && l.ends_with("sleeper")), "{table}");
    assert!(lines.iter().any(|l| l.contains("inband") && l.ends_with("[in-band]")), "{table}");
}

#[test]
fn exited_quota_thread_still_current_is_charged_to_no_group() {
    let mut sim = Sim::new(1);
    sim.core.quota_set_period(0, dus(1_000), sim.now).unwrap();
    let group = sim.core.quota_create_group(0, dus(300)).unwrap();
    let t = sim.spawn("t", 0, Policy::Quota { group }, 10);
    sim.core.exit(t, sim.now).unwrap();
    sim.core.quota_remove_group(group).unwrap();
    sim.now = us(50); // the glue switches away a little later
    sim.settle();
    assert_eq!(sim.running(0), InBand);
    assert_eq!(sim.core.inband_stats(0).unwrap().switches, 1);
    assert_eq!(sim.core.quota_budget_left(group), Err(Error::StaleQuotaGroup));
}
