//! User timers and gravity through the core.

use super::{Sim, dus, us};
use crate::sched::Runnable::Oob;
use crate::{Duration, Error, Gravity, OobCore, Policy, ThreadSpec, TimerContext, Wait};

#[test]
fn periodic_user_timer_reports_overruns_and_keeps_its_grid() {
    let mut core = OobCore::new(1).unwrap();
    let timer = core.timer_create(0, TimerContext::Irq, 42).unwrap();
    assert_eq!(timer.cpu(), 0);
    core.timer_start(timer, us(1_000), Some(dus(1_000))).unwrap();
    assert_eq!(core.on_timer(0, us(999)).unwrap().len(), 0);
    // 3.5 periods late.
    let fired = core.on_timer(0, us(4_500)).unwrap().to_vec();
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].token, fired[0].deadline, fired[0].overruns), (42, us(1_000), 3));
    assert_eq!(core.hardware_deadline(0), Ok(Some(us(5_000))));
    let fired = core.on_timer(0, us(5_000)).unwrap();
    assert_eq!((fired[0].deadline, fired[0].overruns), (us(5_000), 0));
    assert_eq!(core.timer_stop(timer), Ok(true));
    assert_eq!(core.hardware_deadline(0), Ok(None));
    core.timer_destroy(timer).unwrap();
    assert_eq!(core.timer_start(timer, us(1), None), Err(Error::StaleTimer));
    assert_eq!(core.timer_create(1, TimerContext::Irq, 0), Err(Error::InvalidCpu));
    let other = core.timer_create(0, TimerContext::Irq, 0).unwrap();
    assert_eq!(core.timer_start(other, us(1), Some(Duration::ZERO)), Err(Error::InvalidPeriod));
}

#[test]
fn gravity_anticipates_the_hardware_timer_per_context() {
    let mut sim = Sim::new(1);
    sim.core.set_gravity(Gravity { irq: Duration::from_nanos(500), kernel: dus(5), user: dus(10) });
    assert_eq!(sim.core.gravity().user, dus(10));
    let user = sim.spawn("user", 0, Policy::Fifo, 20);
    let kernel = sim
        .core
        .spawn(ThreadSpec { context: TimerContext::Kernel, ..ThreadSpec::new("kernel", 0, Policy::Fifo, 10) })
        .unwrap();
    assert_eq!(sim.core.sleep_until(user, us(1_000), sim.now), Ok(Wait::Blocked));
    sim.settle();
    assert_eq!(sim.running(0), Oob(kernel));
    assert_eq!(sim.core.sleep_until(kernel, us(1_000), sim.now), Ok(Wait::Blocked));
    sim.settle();
    let timer = sim.core.timer_create(0, TimerContext::Irq, 1).unwrap();
    sim.core.timer_start(timer, us(1_000), None).unwrap();
    // Logical deadlines are all 1000 us; the hardware is programmed for the earliest anticipation.
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(us(990))));
    sim.run_until(us(990));
    assert_eq!(sim.running(0), Oob(user), "woken at its anticipated date");
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(us(995))));
    sim.run_until(us(999));
    assert_eq!(sim.core.thread_state(kernel), Ok(crate::ThreadState::Ready));
    assert_eq!(sim.core.hardware_deadline(0), Ok(Some(crate::Instant::from_nanos(999_500))));
    sim.run_until(us(1_000));
    assert_eq!(sim.fired.len(), 1);
    assert_eq!(sim.fired[0].deadline, us(1_000), "expiries report the logical deadline");
}
