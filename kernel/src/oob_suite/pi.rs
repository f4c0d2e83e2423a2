//! Mutex priority inheritance (direct and transitive) and priority ceiling.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::{Failure, OrderLog, Stamp, TestResult, api, busy_until, check, cpu, inband_wait, join_all, ms, nanos_between, oob_wait_flag, spawn, us};
use crate::rt::{self, Error, Mutex, Policy, Semaphore, Timeout};

/// The calling thread's effective priority (0 if it cannot be read).
fn my_priority() -> u8 {
    rt::current().and_then(|me| rt::effective_priority(me).ok()).unwrap_or(0)
}

/// Classic inversion on one CPU: low L (10) holds a mutex, mid M (20) spins, high H (30)
/// blocks on the mutex. L must inherit 30, preempt M, release the mutex to H long before
/// M's spin ends, and drop back to 10.
pub fn pi_boost() -> TestResult {
    const L_UNLOCKED: u32 = 1;
    const H_LOCKED: u32 = 2;
    const M_DONE: u32 = 3;
    struct Shared {
        mutex: Mutex,
        locked: AtomicBool,
        h_blocking: AtomicBool,
        h_done: AtomicBool,
        boosted: AtomicU32,
        after: AtomicU32,
        h_asked: Stamp,
        h_got: Stamp,
        log: OrderLog,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        mutex: api("Mutex::new", Mutex::new())?,
        locked: AtomicBool::new(false),
        h_blocking: AtomicBool::new(false),
        h_done: AtomicBool::new(false),
        boosted: AtomicU32::new(0),
        after: AtomicU32::new(0),
        h_asked: Stamp::new(),
        h_got: Stamp::new(),
        log: OrderLog::new(),
        failure: Failure::new(),
    });
    let limit = rt::now() + ms(40);
    let on = cpu(1);
    let low = {
        let s = shared.clone();
        spawn("pi-low", on, Policy::Fifo, 10, move || {
            let Ok(guard) = s.mutex.lock(Some(Timeout::After(ms(10)))) else {
                return s.failure.set("L could not lock the free mutex".into());
            };
            s.locked.store(true, Ordering::Release);
            while !s.h_blocking.load(Ordering::Acquire) && rt::now() < limit {
                core::hint::spin_loop();
            }
            // H is about to block (or did): give it time to, still holding the mutex.
            busy_until(rt::now() + us(100));
            s.boosted.store(u32::from(my_priority()), Ordering::Release);
            s.log.push(L_UNLOCKED);
            if let Err(e) = guard.unlock() {
                s.failure.set(format!("L unlock: {e}"));
            }
            s.after.store(u32::from(my_priority()), Ordering::Release);
        })?
    };
    let mid = {
        let s = shared.clone();
        spawn("pi-mid", on, Policy::Fifo, 20, move || {
            if !oob_wait_flag(&s.locked, ms(10)) {
                return;
            }
            while !s.h_done.load(Ordering::Acquire) && rt::now() < limit {
                core::hint::spin_loop();
            }
            s.log.push(M_DONE);
        })?
    };
    let high = {
        let s = shared.clone();
        spawn("pi-high", on, Policy::Fifo, 30, move || {
            if !oob_wait_flag(&s.locked, ms(10)) {
                return s.failure.set("L never locked the mutex".into());
            }
            // Let M start spinning, starving L.
            let _ = rt::sleep(ms(1));
            s.h_asked.set(rt::now());
            s.h_blocking.store(true, Ordering::Release);
            match s.mutex.lock(Some(Timeout::After(ms(20)))) {
                Ok(guard) => {
                    s.h_got.set(rt::now());
                    s.log.push(H_LOCKED);
                    drop(guard);
                }
                Err(e) => s.failure.set(format!("H lock: {e} (no inheritance?)")),
            }
            s.h_done.store(true, Ordering::Release);
        })?
    };
    join_all(vec![low, mid, high])?;
    shared.failure.check()?;
    let order = shared.log.events();
    check(order == [L_UNLOCKED, H_LOCKED, M_DONE], || {
        format!("order {order:?}, expected L unlocks, H locks, then M finishes ([1, 2, 3])")
    })?;
    let boosted = shared.boosted.load(Ordering::Acquire);
    check(boosted == 30, || format!("L ran at {boosted} while H waited, expected 30"))?;
    let after = shared.after.load(Ordering::Acquire);
    check(after == 10, || format!("L at {after} after unlocking, expected its base 10"))?;
    let waited = nanos_between(shared.h_asked.get(), shared.h_got.get());
    check(waited < 1_000_000, || format!("H waited {waited} ns for the mutex, expected < 1 ms"))
}

/// Transitive inheritance: L (10) holds M1; X (20) holds M2 and waits for M1 (L goes to
/// 20); H (30) waits for M2 (X and L go to 30). The in-band stage watches the priorities;
/// after the unlocks both are back at their base.
pub fn pi_chain() -> TestResult {
    struct Shared {
        m1: Mutex,
        m2: Mutex,
        l_locked: AtomicBool,
        x_locked: AtomicBool,
        h_go: AtomicBool,
        release: AtomicBool,
        l_after: AtomicU32,
        x_after: AtomicU32,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        m1: api("Mutex::new", Mutex::new())?,
        m2: api("Mutex::new", Mutex::new())?,
        l_locked: AtomicBool::new(false),
        x_locked: AtomicBool::new(false),
        h_go: AtomicBool::new(false),
        release: AtomicBool::new(false),
        l_after: AtomicU32::new(0),
        x_after: AtomicU32::new(0),
        failure: Failure::new(),
    });
    let limit = rt::now() + ms(50);
    let on = cpu(1);
    let low = {
        let s = shared.clone();
        spawn("chain-low", on, Policy::Fifo, 10, move || {
            let Ok(guard) = s.m1.lock(Some(Timeout::After(ms(10)))) else {
                return s.failure.set("L could not lock M1".into());
            };
            s.l_locked.store(true, Ordering::Release);
            while !s.release.load(Ordering::Acquire) && rt::now() < limit {
                core::hint::spin_loop();
            }
            drop(guard);
            s.l_after.store(u32::from(my_priority()), Ordering::Release);
        })?
    };
    let mid = {
        let s = shared.clone();
        spawn("chain-mid", on, Policy::Fifo, 20, move || {
            if !oob_wait_flag(&s.l_locked, ms(10)) {
                return s.failure.set("L never locked M1".into());
            }
            let Ok(m2) = s.m2.lock(Some(Timeout::After(ms(10)))) else {
                return s.failure.set("X could not lock M2".into());
            };
            s.x_locked.store(true, Ordering::Release);
            match s.m1.lock(Some(Timeout::After(ms(40)))) {
                Ok(m1) => drop(m1),
                Err(e) => s.failure.set(format!("X lock M1: {e}")),
            }
            drop(m2);
            s.x_after.store(u32::from(my_priority()), Ordering::Release);
        })?
    };
    let high = {
        let s = shared.clone();
        spawn("chain-high", on, Policy::Fifo, 30, move || {
            if !oob_wait_flag(&s.h_go, ms(20)) {
                return s.failure.set("H was never told to go".into());
            }
            match s.m2.lock(Some(Timeout::After(ms(40)))) {
                Ok(m2) => drop(m2),
                Err(e) => s.failure.set(format!("H lock M2: {e}")),
            }
        })?
    };
    let (low_id, mid_id) = (low.id(), mid.id());
    let priority = |id| rt::effective_priority(id).unwrap_or(0);
    let mut result = Ok(());
    // Stage 1: X blocked on M1 lends 20 to L.
    let stage1 = inband_wait(ms(10), || shared.x_locked.load(Ordering::Acquire) && priority(low_id) == 20);
    if !stage1 {
        result = Err(format!("with X waiting for M1, L is at {}, expected 20", priority(low_id)));
    }
    shared.h_go.store(true, Ordering::Release);
    // Stage 2: H blocked on M2 lends 30 to X, and through X to L.
    if result.is_ok() {
        let stage2 = inband_wait(ms(10), || priority(low_id) == 30 && priority(mid_id) == 30);
        if !stage2 {
            result = Err(format!(
                "with H waiting for M2, L is at {} and X at {}, expected 30 and 30",
                priority(low_id),
                priority(mid_id)
            ));
        }
    }
    shared.release.store(true, Ordering::Release);
    join_all(vec![low, mid, high])?;
    result?;
    shared.failure.check()?;
    let (l_after, x_after) = (shared.l_after.load(Ordering::Acquire), shared.x_after.load(Ordering::Acquire));
    check(l_after == 10 && x_after == 20, || format!("after unlocking, L at {l_after} and X at {x_after}, expected 10 and 20"))
}

/// A mutex with ceiling 60: its owner (base 10) runs at 60 while holding it, so a ready
/// thread of priority 50 on its CPU waits for the unlock; a thread of base priority 70 is
/// refused with `CeilingViolated`.
pub fn ceiling() -> TestResult {
    const OWNER_UNLOCKS: u32 = 1;
    const WAITER_RUNS: u32 = 2;
    struct Shared {
        mutex: Mutex,
        wake: Semaphore,
        held_at: AtomicU32,
        after: AtomicU32,
        log: OrderLog,
        failure: Failure,
    }
    let shared = Arc::new(Shared {
        mutex: api("Mutex::with_ceiling", Mutex::with_ceiling(60))?,
        wake: api("Semaphore::new", Semaphore::new(0))?,
        held_at: AtomicU32::new(0),
        after: AtomicU32::new(0),
        log: OrderLog::new(),
        failure: Failure::new(),
    });
    let on = cpu(1);
    let waiter = {
        let s = shared.clone();
        spawn("ceil-mid", on, Policy::Fifo, 50, move || match s.wake.wait(Some(Timeout::After(ms(20)))) {
            Ok(()) => s.log.push(WAITER_RUNS),
            Err(e) => s.failure.set(format!("the priority-50 thread's wait: {e}")),
        })?
    };
    // The waiter blocks at once (it outranks the owner created next on the same CPU).
    let owner = {
        let s = shared.clone();
        spawn("ceil-low", on, Policy::Fifo, 10, move || {
            let Ok(guard) = s.mutex.lock(Some(Timeout::After(ms(10)))) else {
                return s.failure.set("the owner could not lock the ceiling mutex".into());
            };
            s.held_at.store(u32::from(my_priority()), Ordering::Release);
            if let Err(e) = s.wake.post() {
                s.failure.set(format!("post: {e}"));
            }
            busy_until(rt::now() + us(200));
            s.log.push(OWNER_UNLOCKS);
            drop(guard);
            s.after.store(u32::from(my_priority()), Ordering::Release);
        })?
    };
    join_all(vec![waiter, owner])?;
    shared.failure.check()?;
    let held_at = shared.held_at.load(Ordering::Acquire);
    check(held_at >= 60, || format!("the owner ran at {held_at} holding the ceiling-60 mutex"))?;
    let after = shared.after.load(Ordering::Acquire);
    check(after == 10, || format!("the owner at {after} after unlocking, expected 10"))?;
    let order = shared.log.events();
    check(order == [OWNER_UNLOCKS, WAITER_RUNS], || format!("order {order:?}: the priority-50 thread preempted the owner"))?;

    let refused = Arc::new(AtomicU32::new(0));
    let s = shared.clone();
    let r = refused.clone();
    let high = spawn("ceil-high", on, Policy::Fifo, 70, move || {
        let code = match s.mutex.lock(Some(Timeout::After(ms(5)))) {
            Err(Error::CeilingViolated) => 1,
            Err(_) => 2,
            Ok(_guard) => 3,
        };
        r.store(code, Ordering::Release);
    })?;
    join_all(vec![high])?;
    match refused.load(Ordering::Acquire) {
        1 => Ok(()),
        2 => Err("a priority-70 lock of the ceiling-60 mutex failed, but not with CeilingViolated".into()),
        3 => Err("a priority-70 thread locked the ceiling-60 mutex".into()),
        _ => Err("the priority-70 thread did not report".into()),
    }
}
