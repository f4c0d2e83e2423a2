//! Synchronization: priority inheritance and ceilings, semaphores, event flags, timeouts.

use alloc::vec::Vec;

use super::{Sim, dus, us};
use crate::sched::Runnable::{InBand, Oob};
use crate::{
    CpuMask, Duration, Error, FlagsCondition, FlagsMode, Policy, ThreadState, Timeout, TpWindow, Wait, WaitObject,
    WakeReason,
};

#[test]
fn priority_inheritance_follows_a_chain_of_three_mutexes_and_unwinds() {
    let mut sim = Sim::new(1);
    let [m1, m2, m3] = [(); 3].map(|_| sim.core.mutex_create(None).unwrap());
    let t1 = sim.spawn("t1", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.mutex_lock(t1, m3, None, sim.now), Ok(Wait::Done(())));
    let t2 = sim.spawn("t2", 0, Policy::Fifo, 20);
    sim.core.mutex_try_lock(t2, m2, sim.now).unwrap();
    assert_eq!(sim.core.mutex_lock(t2, m3, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!((sim.running(0), sim.core.effective_priority(t1)), (Oob(t1), Ok(20)));
    let t3 = sim.spawn("t3", 0, Policy::Fifo, 30);
    sim.core.mutex_try_lock(t3, m1, sim.now).unwrap();
    assert_eq!(sim.core.mutex_lock(t3, m2, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    let t4 = sim.spawn("t4", 0, Policy::Fifo, 40);
    sim.run_until(us(100));
    assert_eq!(sim.core.mutex_lock(t4, m1, Some(Timeout::After(dus(50))), sim.now), Ok(Wait::Blocked));
    sim.settle();
    let effective = |sim: &Sim| [t1, t2, t3, t4].map(|t| sim.core.effective_priority(t).unwrap());
    assert_eq!(effective(&sim), [40, 40, 40, 40], "t4 -> m1 (t3) -> m2 (t2) -> m3 (t1)");
    assert_eq!(sim.running(0), Oob(t1));
    let mid = sim.spawn("mid", 0, Policy::Fifo, 35);
    assert_eq!(sim.running(0), Oob(t1), "the boosted owner is not preempted by a medium thread");

    // Unwinding on timeout: just before the deadline nothing changes, at it t4 gives up.
    sim.run_until(us(149));
    assert_eq!(effective(&sim), [40, 40, 40, 40]);
    sim.run_until(us(150));
    assert_eq!(sim.core.take_wake_reason(t4), Ok(Some(WakeReason::TimedOut)));
    assert_eq!(effective(&sim), [30, 30, 30, 40]);
    assert_eq!(sim.running(0), Oob(t4));
    sim.core.exit(t4, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(mid), "t1 now runs at 30 < 35");
    sim.core.suspend(mid).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(t1));

    // Unwinding on release: m3 goes to t2, which keeps t3's boost through m2.
    sim.core.mutex_unlock(t1, m3, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.core.mutex_owner(m3), Ok(Some(t2)));
    assert_eq!(sim.core.take_wake_reason(t2), Ok(Some(WakeReason::Granted)));
    assert_eq!([t1, t2, t3].map(|t| sim.core.effective_priority(t).unwrap()), [10, 30, 30]);
    assert_eq!(sim.running(0), Oob(t2));
    sim.core.mutex_unlock(t2, m2, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.core.mutex_owner(m2), Ok(Some(t3)));
    assert_eq!([t1, t2, t3].map(|t| sim.core.effective_priority(t).unwrap()), [10, 20, 30]);
    assert_eq!(sim.running(0), Oob(t3));
}

#[test]
fn priority_ceiling_raises_the_owner_while_it_holds_the_mutex() {
    let mut sim = Sim::new(1);
    let m = sim.core.mutex_create(Some(50)).unwrap();
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.mutex_lock(a, m, None, sim.now), Ok(Wait::Done(())));
    assert_eq!(sim.core.effective_priority(a), Ok(50));
    let h = sim.spawn("h", 0, Policy::Fifo, 30);
    assert_eq!(sim.running(0), Oob(a), "runs at the ceiling");
    sim.core.mutex_unlock(a, m, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.core.effective_priority(a), Ok(10));
    assert_eq!(sim.running(0), Oob(h));
    let too_high = sim.spawn("too-high", 0, Policy::Fifo, 60);
    assert_eq!(sim.core.mutex_lock(too_high, m, None, sim.now), Err(Error::CeilingViolated));
    assert_eq!(sim.core.mutex_create(Some(0)), Err(Error::InvalidPriority));
}

#[test]
fn mutex_misuse_is_refused() {
    let mut sim = Sim::new(1);
    let [m1, m2] = [(); 2].map(|_| sim.core.mutex_create(None).unwrap());
    let a = sim.spawn("a", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.mutex_lock(a, m1, None, sim.now), Ok(Wait::Done(())));
    assert_eq!(sim.core.mutex_lock(a, m1, None, sim.now), Err(Error::Deadlock), "no recursion");
    let b = sim.spawn("b", 0, Policy::Fifo, 20);
    assert_eq!(sim.core.mutex_lock(b, m2, None, sim.now), Ok(Wait::Done(())));
    assert_eq!(sim.core.mutex_try_lock(b, m1, sim.now), Err(Error::WouldBlock));
    assert_eq!(sim.core.mutex_unlock(b, m1, sim.now), Err(Error::NotOwner));
    assert_eq!(sim.core.mutex_lock(b, m1, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.core.mutex_lock(a, m2, None, sim.now), Err(Error::Deadlock), "a -> m2 (b) -> m1 (a)");
    assert_eq!(sim.core.mutex_lock(b, m2, None, sim.now), Err(Error::NotRunning), "b is blocked");
    sim.core.mutex_destroy(m2, sim.now).unwrap();
    assert_eq!(sim.core.mutex_owner(m2), Err(Error::StaleMutex));
    assert_eq!(sim.core.mutex_lock(a, m2, Some(Timeout::After(dus(1))), sim.now), Err(Error::StaleMutex));
    // A past deadline fails at once without blocking.
    let c = sim.core.mutex_create(None).unwrap();
    sim.core.mutex_unlock(a, m1, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(b));
    assert_eq!(sim.core.mutex_lock(b, c, None, sim.now), Ok(Wait::Done(())));
    sim.core.suspend(b).unwrap();
    sim.settle();
    assert_eq!(sim.core.mutex_lock(a, c, Some(Timeout::At(sim.now)), sim.now), Err(Error::TimedOut));
    assert_eq!(sim.core.thread_state(a), Ok(ThreadState::Running));
}

#[test]
fn unlock_hands_the_mutex_to_the_best_waiter_fifo_among_equals() {
    let mut sim = Sim::new(1);
    let m = sim.core.mutex_create(None).unwrap();
    let owner = sim.spawn("owner", 0, Policy::Fifo, 1);
    assert_eq!(sim.core.mutex_lock(owner, m, None, sim.now), Ok(Wait::Done(())));
    sim.core.suspend(owner).unwrap(); // lets every waiter run and block in turn
    sim.settle();
    let waiters: Vec<_> = [10, 30, 20, 30]
        .iter()
        .map(|&priority| {
            let w = sim.spawn("w", 0, Policy::Fifo, priority);
            assert_eq!(sim.core.mutex_lock(w, m, None, sim.now), Ok(Wait::Blocked));
            sim.settle();
            w
        })
        .collect();
    assert_eq!(sim.core.effective_priority(owner), Ok(30));
    sim.core.resume(owner).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(owner));
    let mut granted = Vec::new();
    let mut holder = owner;
    for _ in 0..4 {
        sim.core.mutex_unlock(holder, m, sim.now).unwrap();
        holder = sim.core.mutex_owner(m).unwrap().unwrap();
        assert_eq!(sim.core.take_wake_reason(holder), Ok(Some(WakeReason::Granted)));
        granted.push(holder);
        sim.settle();
        while sim.running(0) != Oob(holder) {
            let Oob(other) = sim.running(0) else { panic!("in-band with a ready holder") };
            sim.core.suspend(other).unwrap();
            sim.settle();
        }
    }
    assert_eq!(granted, [waiters[1], waiters[3], waiters[2], waiters[0]]);
}

#[test]
fn exiting_owner_hands_its_mutexes_over() {
    let mut sim = Sim::new(1);
    let m = sim.core.mutex_create(None).unwrap();
    let owner = sim.spawn("owner", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.mutex_lock(owner, m, None, sim.now), Ok(Wait::Done(())));
    let waiter = sim.spawn("waiter", 0, Policy::Fifo, 20);
    assert_eq!(sim.core.mutex_lock(waiter, m, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    sim.core.exit(owner, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.core.mutex_owner(m), Ok(Some(waiter)));
    assert_eq!(sim.running(0), Oob(waiter));
    // Destroying a contended mutex wakes its waiters with `Deleted`.
    let late = sim.spawn("late", 0, Policy::Fifo, 30);
    assert_eq!(sim.core.mutex_lock(late, m, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    sim.core.mutex_destroy(m, sim.now).unwrap();
    assert_eq!(sim.core.take_wake_reason(late), Ok(Some(WakeReason::Deleted)));
    assert_eq!(sim.core.effective_priority(waiter), Ok(20));
}

#[test]
fn priority_inheritance_across_cpus_reschedules_the_owner_cpu() {
    let mut sim = Sim::new(2);
    let m = sim.core.mutex_create(None).unwrap();
    let owner = sim.spawn("owner", 1, Policy::Fifo, 10);
    assert_eq!(sim.core.mutex_lock(owner, m, None, sim.now), Ok(Wait::Done(())));
    let _preemptor = sim.spawn("preemptor", 1, Policy::Fifo, 20);
    let waiter = sim.spawn("waiter", 0, Policy::Fifo, 30);
    assert_eq!(sim.core.mutex_lock(waiter, m, None, sim.now), Ok(Wait::Blocked));
    assert_eq!(sim.core.effects().resched.bits(), 0b11, "CPU 0 blocked, CPU 1 must run the boosted owner");
    sim.reschedule(0);
    sim.reschedule(1);
    assert_eq!((sim.running(0), sim.running(1)), (InBand, Oob(owner)));
}

#[test]
fn inheritance_from_another_class_promotes_to_fifo_but_stays_within_a_partition() {
    let mut sim = Sim::new(1);
    let windows =
        [TpWindow { partition: Some(0), duration: dus(500) }, TpWindow { partition: Some(1), duration: dus(500) }];
    sim.core.tp_install(0, &windows).unwrap();
    sim.core.tp_start(0, sim.now).unwrap();
    let [cross, inner] = [(); 2].map(|_| sim.core.mutex_create(None).unwrap());
    let owner = sim.spawn("owner", 0, Policy::TimePartition { partition: 0 }, 10);
    assert_eq!(sim.core.mutex_lock(owner, cross, None, sim.now), Ok(Wait::Done(())));
    assert_eq!(sim.core.mutex_lock(owner, inner, None, sim.now), Ok(Wait::Done(())));
    // A same-partition waiter boosts within the partition: nothing runs in partition 1's window.
    let peer = sim.spawn("peer", 0, Policy::TimePartition { partition: 0 }, 50);
    assert_eq!(sim.core.mutex_lock(peer, inner, None, sim.now), Ok(Wait::Blocked));
    sim.run_until(us(600));
    let info = sim.core.thread_info(owner).unwrap();
    assert_eq!((info.priority, info.boosted), (50, true));
    assert_eq!(sim.running(0), InBand);
    // A FIFO waiter promotes the owner to FIFO: it runs outside its window.
    let fifo = sim.spawn("fifo", 0, Policy::Fifo, 5);
    assert_eq!(sim.core.mutex_lock(fifo, cross, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.running(0), Oob(owner));
    sim.core.mutex_unlock(owner, cross, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(fifo));
    assert_eq!(sim.core.effective_priority(owner), Ok(50));
}

#[test]
fn semaphore_counts_and_wakes_waiters_by_priority() {
    let mut sim = Sim::new(1);
    let sem = sim.core.sem_create(1);
    let poster = sim.spawn("poster", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.sem_wait(poster, sem, None, sim.now), Ok(Wait::Done(())));
    assert_eq!(sim.core.sem_try_wait(sem), Err(Error::WouldBlock));
    let waiters = [20, 30, 25].map(|priority| {
        let w = sim.spawn("w", 0, Policy::Fifo, priority);
        assert_eq!(sim.core.sem_wait(w, sem, None, sim.now), Ok(Wait::Blocked));
        sim.settle();
        w
    });
    assert_eq!(sim.running(0), Oob(poster));
    for expected in [waiters[1], waiters[2], waiters[0]] {
        sim.core.sem_post(sem).unwrap();
        sim.settle();
        assert_eq!(sim.running(0), Oob(expected));
        assert_eq!(sim.core.take_wake_reason(expected), Ok(Some(WakeReason::Granted)));
        assert_eq!(sim.core.sem_count(sem), Ok(0));
        sim.core.suspend(expected).unwrap();
        sim.settle();
    }
    sim.core.sem_post(sem).unwrap();
    assert_eq!(sim.core.sem_count(sem), Ok(1));
    sim.core.sem_try_wait(sem).unwrap();
    sim.core.sem_destroy(sem).unwrap();
    assert_eq!(sim.core.sem_post(sem), Err(Error::StaleSemaphore));
}

#[test]
fn semaphore_timeout_fires_exactly_at_the_deadline() {
    let mut sim = Sim::new(1);
    let sem = sim.core.sem_create(0);
    let t = sim.spawn("t", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.sem_wait(t, sem, Some(Timeout::At(us(500))), sim.now), Ok(Wait::Blocked));
    sim.run_until(us(499));
    assert_eq!(
        sim.core.thread_state(t),
        Ok(ThreadState::Blocked { on: WaitObject::Semaphore(sem), timeout: Some(us(500)) })
    );
    sim.run_until(us(500));
    assert_eq!(sim.core.thread_state(t), Ok(ThreadState::Running));
    assert_eq!(sim.core.take_wake_reason(t), Ok(Some(WakeReason::TimedOut)));
    assert_eq!(sim.core.take_wake_reason(t), Ok(None), "taken once");
    // A deadline at or before the call fails at once.
    assert_eq!(sim.core.sem_wait(t, sem, Some(Timeout::At(us(500))), sim.now), Err(Error::TimedOut));
    assert_eq!(sim.core.sem_wait(t, sem, Some(Timeout::After(Duration::ZERO)), sim.now), Err(Error::TimedOut));
    // A post before the deadline grants and cancels the timeout.
    assert_eq!(sim.core.sem_wait(t, sem, Some(Timeout::After(dus(100))), sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(us(600))));
    sim.run_until(us(550));
    sim.core.sem_post(sem).unwrap();
    sim.settle();
    assert_eq!(sim.core.take_wake_reason(t), Ok(Some(WakeReason::Granted)));
    assert_eq!(sim.core.hardware_deadline(0), Ok(None));
    assert_eq!(sim.core.sem_count(sem), Ok(0));
}

#[test]
fn event_flags_any_all_and_consume() {
    let mut sim = Sim::new(1);
    let flags = sim.core.flags_create(0);
    let any = FlagsCondition { mask: 0b0011, mode: FlagsMode::Any, consume: true };
    let all = FlagsCondition { mask: 0b0110, mode: FlagsMode::All, consume: false };
    let poster = sim.spawn("poster", 0, Policy::Fifo, 5);
    let b = sim.spawn("b", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.flags_wait(b, flags, all, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    let a = sim.spawn("a", 0, Policy::Fifo, 20);
    assert_eq!(sim.core.flags_wait(a, flags, any, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.running(0), Oob(poster));

    sim.core.flags_post(flags, 0b0100).unwrap();
    assert_eq!(sim.core.flags_value(flags), Ok(0b0100), "satisfies nobody");
    sim.core.flags_post(flags, 0b0010).unwrap();
    assert_eq!(
        sim.core.take_wake_reason(a),
        Ok(Some(WakeReason::Signaled(0b0010))),
        "a ranks first and consumes bit 1"
    );
    assert_eq!(sim.core.take_wake_reason(b), Ok(None), "bit 1 was consumed before b's turn");
    assert_eq!(sim.core.flags_value(flags), Ok(0b0100));
    sim.core.flags_post(flags, 0b0010).unwrap();
    assert_eq!(sim.core.take_wake_reason(b), Ok(Some(WakeReason::Signaled(0b0110))));
    assert_eq!(sim.core.flags_value(flags), Ok(0b0110), "b does not consume");

    let take = FlagsCondition { mask: 0b1100, mode: FlagsMode::Any, consume: true };
    assert_eq!(sim.core.flags_try_wait(flags, take), Ok(0b0100));
    assert_eq!(sim.core.flags_try_wait(flags, take), Err(Error::WouldBlock));
    assert_eq!(sim.core.flags_try_wait(flags, FlagsCondition { mask: 0, ..take }), Err(Error::InvalidMask));
    sim.settle();
    assert_eq!(sim.running(0), Oob(a));
    assert_eq!(sim.core.flags_wait(a, flags, any, None, sim.now), Ok(Wait::Done(0b0010)), "satisfied at once");
    sim.core.flags_clear(flags, u64::MAX).unwrap();
    assert_eq!(sim.core.flags_value(flags), Ok(0));
}

#[test]
fn event_flags_timeout_and_deletion() {
    let mut sim = Sim::new(1);
    let flags = sim.core.flags_create(0);
    let any = FlagsCondition { mask: 1, mode: FlagsMode::Any, consume: true };
    let t = sim.spawn("t", 0, Policy::Fifo, 10);
    let u = sim.spawn("u", 0, Policy::Fifo, 5);
    assert_eq!(sim.core.flags_wait(t, flags, any, Some(Timeout::After(dus(300))), sim.now), Ok(Wait::Blocked));
    sim.run_until(us(299));
    assert_eq!(sim.running(0), Oob(u));
    sim.run_until(us(300));
    assert_eq!(sim.running(0), Oob(t));
    assert_eq!(sim.core.take_wake_reason(t), Ok(Some(WakeReason::TimedOut)));
    assert_eq!(sim.core.flags_wait(t, flags, any, Some(Timeout::After(dus(300))), sim.now), Ok(Wait::Blocked));
    sim.settle();
    sim.core.flags_destroy(flags).unwrap();
    assert_eq!(sim.core.take_wake_reason(t), Ok(Some(WakeReason::Deleted)));
    sim.settle();
    assert_eq!(sim.core.hardware_deadline(0), Ok(None), "timeout cancelled");
    assert_eq!(sim.core.flags_post(flags, 1), Err(Error::StaleFlags));
    assert_eq!(sim.core.effects().resched, CpuMask::EMPTY);
}

#[test]
fn suspended_waiter_stays_off_cpu_after_its_wait_ends() {
    let mut sim = Sim::new(1);
    let sem = sim.core.sem_create(0);
    let t = sim.spawn("t", 0, Policy::Fifo, 10);
    assert_eq!(sim.core.sem_wait(t, sem, None, sim.now), Ok(Wait::Blocked));
    sim.settle();
    sim.core.suspend(t).unwrap();
    assert!(matches!(sim.core.thread_state(t), Ok(ThreadState::Blocked { .. })));
    sim.core.sem_post(sem).unwrap();
    sim.settle();
    assert_eq!((sim.core.thread_state(t), sim.running(0)), (Ok(ThreadState::Suspended), InBand));
    sim.core.resume(t).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(t));
}

#[test]
fn migrating_a_waiter_re_evaluates_the_boost_it_gives() {
    let mut sim = Sim::new(2);
    let windows =
        [TpWindow { partition: Some(0), duration: dus(500) }, TpWindow { partition: Some(1), duration: dus(500) }];
    sim.core.tp_install(0, &windows).unwrap();
    sim.core.tp_start(0, sim.now).unwrap();
    let m = sim.core.mutex_create(None).unwrap();
    let owner = sim.spawn("owner", 0, Policy::TimePartition { partition: 0 }, 10);
    assert_eq!(sim.core.mutex_lock(owner, m, None, sim.now), Ok(Wait::Done(())));
    let waiter = sim.spawn("waiter", 0, Policy::TimePartition { partition: 0 }, 50);
    assert_eq!(sim.core.mutex_lock(waiter, m, None, sim.now), Ok(Wait::Blocked));
    sim.run_until(us(600));
    assert_eq!(sim.running(0), InBand, "boosted within partition 0, outside its window");
    sim.core.migrate(waiter, 1, sim.now).unwrap();
    sim.settle();
    assert_eq!(sim.running(0), Oob(owner), "partition 0 of CPU 1 is another partition: FIFO boost");
    assert_eq!(sim.core.effective_priority(owner), Ok(50));
}
