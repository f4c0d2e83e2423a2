//! A per-CPU timer queue: absolute deadlines, periodic timers with overrun counting, and gravity.
//!
//! Timers are created once (the only time the queue allocates) and then armed, re-armed and
//! stopped in O(log n) through an index-aware binary heap: every timer knows its heap position,
//! so cancelling needs no lazy-deletion garbage and the heap never holds more entries than there
//! are timers.
//!
//! **Gravity** is EVL's timer anticipation: the time between the hardware timer firing and the
//! woken code actually running. Each timer belongs to a [`TimerContext`]; the hardware is
//! programmed `gravity(context)` before the timer's deadline so the work lands on time. The
//! *logical* deadline is unchanged: it is what the timer reports, what periodic slots and
//! overruns are computed from. A timer is *due* once its hardware date has passed, because the
//! interrupt programmed for it arrives then; testing the logical deadline instead would make the
//! anticipated interrupt find nothing to do and re-arm itself immediately, a busy loop.

use alloc::vec::Vec;

use crate::arena::{Arena, Key, NIL};
use crate::error::Error;
use crate::time::{Duration, Instant};

/// Identifies one timer of a [`TimerQueue`]; stale once the timer is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(Key);

/// What runs when a timer fires, which decides its gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerContext {
    /// A handler that completes in the timer interrupt itself.
    Irq,
    /// The wake-up of a thread running core (kernel) code.
    Kernel,
    /// The wake-up of an application (user) thread.
    User,
}

/// Anticipation of the hardware timer per [`TimerContext`]. All zero by default; the glue sets
/// calibrated values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gravity {
    /// Anticipation for [`TimerContext::Irq`] timers.
    pub irq: Duration,
    /// Anticipation for [`TimerContext::Kernel`] timers.
    pub kernel: Duration,
    /// Anticipation for [`TimerContext::User`] timers.
    pub user: Duration,
}

impl Gravity {
    /// The anticipation applied to timers of `context`.
    pub const fn of(&self, context: TimerContext) -> Duration {
        match context {
            TimerContext::Irq => self.irq,
            TimerContext::Kernel => self.kernel,
            TimerContext::User => self.user,
        }
    }
}

/// One firing of a timer, as returned by [`TimerQueue::pop_expired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry<T> {
    /// The timer that fired.
    pub id: TimerId,
    /// Its payload.
    pub payload: T,
    /// The logical deadline that fired (for a late periodic timer: the oldest missed slot).
    pub deadline: Instant,
    /// Periodic slots that were also due and were skipped (0 when on time).
    pub overruns: u64,
}

struct Timer<T> {
    payload: T,
    context: TimerContext,
    /// Logical deadline.
    deadline: Instant,
    /// Hardware date: `deadline - gravity(context)`, the heap key.
    trigger: Instant,
    period: Option<Duration>,
    /// Position in the heap, or `NIL` when stopped.
    heap_pos: u32,
    /// Arming order, breaks ties between equal triggers (first armed fires first).
    seq: u64,
}

/// A queue of timers with payload `T`, see the [module documentation](self).
pub struct TimerQueue<T> {
    timers: Arena<Timer<T>>,
    heap: Vec<u32>,
    gravity: Gravity,
    seq: u64,
}

impl<T: Copy> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> TimerQueue<T> {
    /// An empty queue with zero gravity.
    pub const fn new() -> Self {
        Self {
            timers: Arena::new(),
            heap: Vec::new(),
            gravity: Gravity { irq: Duration::ZERO, kernel: Duration::ZERO, user: Duration::ZERO },
            seq: 0,
        }
    }

    /// Creates a stopped timer. Allocates; nothing else in the queue does.
    pub fn create(&mut self, payload: T, context: TimerContext) -> TimerId {
        let key = self.timers.insert(Timer {
            payload,
            context,
            deadline: Instant::MAX,
            trigger: Instant::MAX,
            period: None,
            heap_pos: NIL,
            seq: 0,
        });
        // The heap holds at most one entry per timer: make room now so arming never allocates.
        self.heap.reserve(self.timers.slot_count().saturating_sub(self.heap.len()));
        TimerId(key)
    }

    /// Stops and deletes a timer, returning its payload.
    pub fn destroy(&mut self, id: TimerId) -> Result<T, Error> {
        self.stop(id)?;
        self.timers.remove(id.0).map(|timer| timer.payload).ok_or(Error::StaleTimer)
    }

    /// Arms (or re-arms) a timer for `deadline`, repeating every `period` if given.
    pub fn start(&mut self, id: TimerId, deadline: Instant, period: Option<Duration>) -> Result<(), Error> {
        if period.is_some_and(Duration::is_zero) {
            return Err(Error::InvalidPeriod);
        }
        let seq = self.next_seq();
        let gravity = self.gravity;
        let timer = self.timers.get_mut(id.0).ok_or(Error::StaleTimer)?;
        timer.deadline = deadline;
        timer.trigger = deadline.saturating_sub(gravity.of(timer.context));
        timer.period = period;
        timer.seq = seq;
        let pos = timer.heap_pos;
        if pos == NIL {
            let pos = self.heap.len() as u32;
            self.heap.push(id.0.index);
            self.timers[id.0.index].heap_pos = pos;
            self.sift_up(pos);
        } else {
            self.sift_up(pos);
            self.sift_down(self.timers[id.0.index].heap_pos);
        }
        Ok(())
    }

    /// Disarms a timer; returns whether it was armed.
    pub fn stop(&mut self, id: TimerId) -> Result<bool, Error> {
        let pos = self.timers.get(id.0).ok_or(Error::StaleTimer)?.heap_pos;
        if pos == NIL {
            return Ok(false);
        }
        self.remove_at(pos);
        Ok(true)
    }

    /// The logical deadline of an armed timer, `None` when stopped.
    pub fn deadline(&self, id: TimerId) -> Result<Option<Instant>, Error> {
        let timer = self.timers.get(id.0).ok_or(Error::StaleTimer)?;
        Ok((timer.heap_pos != NIL).then_some(timer.deadline))
    }

    /// The payload of a timer.
    pub fn payload(&self, id: TimerId) -> Result<T, Error> {
        self.timers.get(id.0).map(|timer| timer.payload).ok_or(Error::StaleTimer)
    }

    /// The anticipation currently applied.
    pub fn gravity(&self) -> Gravity {
        self.gravity
    }

    /// Changes the anticipation, re-keying every armed timer (O(n); a calibration-time call).
    pub fn set_gravity(&mut self, gravity: Gravity) {
        self.gravity = gravity;
        for &index in &self.heap {
            let timer = &mut self.timers[index];
            timer.trigger = timer.deadline.saturating_sub(gravity.of(timer.context));
        }
        for pos in (0..self.heap.len() / 2).rev() {
            self.sift_down(pos as u32);
        }
    }

    /// When to program the hardware timer: the earliest `deadline - gravity(context)`.
    #[inline]
    pub fn hardware_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|&index| self.timers[index].trigger)
    }

    /// The logical deadline of the timer that fires next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|&index| self.timers[index].deadline)
    }

    /// Number of armed timers.
    pub fn armed(&self) -> usize {
        self.heap.len()
    }

    /// Fires the next timer due at `now` (hardware date reached), if any. A one-shot timer is
    /// disarmed; a periodic one moves to the first slot of its original grid whose hardware date
    /// is after `now`, counting the skipped slots as overruns. Call in a loop until `None`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Expiry<T>> {
        let &index = self.heap.first()?;
        // One slot lookup for the key and the timer.
        let (key, timer) = self.timers.entry(index);
        if timer.trigger > now {
            return None;
        }
        let id = TimerId(key);
        let (fired, payload, period) = (timer.deadline, timer.payload, timer.period);
        let gravity = self.gravity.of(timer.context);
        let mut overruns = 0;
        let next = period.and_then(|period| {
            let late = now.saturating_add(gravity).saturating_duration_since(fired);
            overruns = late.as_nanos() / period.as_nanos();
            let slots_ahead = overruns.checked_add(1)?;
            fired.checked_add(Duration::from_nanos(period.as_nanos().checked_mul(slots_ahead)?))
        });
        match next {
            Some(deadline) => {
                let seq = self.next_seq();
                let timer = &mut self.timers[index];
                timer.deadline = deadline;
                timer.trigger = deadline.saturating_sub(gravity);
                timer.seq = seq;
                self.sift_down(0);
            }
            // One-shot, or a periodic timer whose next slot is past the end of time.
            None => self.remove_first(),
        }
        Some(Expiry { id, payload, deadline: fired, overruns })
    }

    /// The payload of the timer that fires next if it is due at `now`, and whether it is
    /// periodic: a look before [`TimerQueue::pop_expired`], or before
    /// [`TimerQueue::drop_first`] for a due one-shot timer whose expiry needs nothing else.
    #[inline]
    pub fn first_due(&self, now: Instant) -> Option<(T, bool)> {
        let &index = self.heap.first()?;
        let timer = &self.timers[index];
        (timer.trigger <= now).then_some((timer.payload, timer.period.is_some()))
    }

    /// Disarms the timer that fires next (nothing if none is armed): the end of a one-shot
    /// timer that [`TimerQueue::first_due`] found due, the same as its
    /// [`TimerQueue::pop_expired`].
    #[inline]
    pub fn drop_first(&mut self) {
        self.remove_first();
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Whether the timer at heap position `a` fires before the one at `b`.
    fn before(&self, a: u32, b: u32) -> bool {
        let (ta, tb) = (&self.timers[self.heap[a as usize]], &self.timers[self.heap[b as usize]]);
        (ta.trigger, ta.seq) < (tb.trigger, tb.seq)
    }

    fn swap(&mut self, a: u32, b: u32) {
        self.heap.swap(a as usize, b as usize);
        self.timers[self.heap[a as usize]].heap_pos = a;
        self.timers[self.heap[b as usize]].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: u32) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.before(pos, parent) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: u32) {
        let len = self.heap.len() as u32;
        loop {
            let (left, right) = (2 * pos + 1, 2 * pos + 2);
            let mut first = pos;
            if left < len && self.before(left, first) {
                first = left;
            }
            if right < len && self.before(right, first) {
                first = right;
            }
            if first == pos {
                break;
            }
            self.swap(pos, first);
            pos = first;
        }
    }

    /// [`TimerQueue::remove_at`] of the root (the timer that fires next): the last entry takes
    /// its place and can only move down.
    #[inline]
    fn remove_first(&mut self) {
        if self.heap.len() > 1 {
            self.remove_first_of_many();
        } else if let Some(index) = self.heap.pop() {
            // The only armed timer: nothing moves.
            self.timers[index].heap_pos = NIL;
        }
    }

    /// [`TimerQueue::remove_first`] when other timers are armed (out of line: a sift).
    #[inline(never)]
    fn remove_first_of_many(&mut self) {
        if self.heap.is_empty() {
            return;
        }
        let index = self.heap.swap_remove(0);
        self.timers[index].heap_pos = NIL;
        if let Some(&moved) = self.heap.first() {
            self.timers[moved].heap_pos = 0;
            self.sift_down(0);
        }
    }

    fn remove_at(&mut self, pos: u32) {
        let last = self.heap.len() as u32 - 1;
        if pos != last {
            self.swap(pos, last);
        }
        let index = self.heap.pop().expect("heap holds the removed entry");
        self.timers[index].heap_pos = NIL;
        if pos != last {
            self.sift_up(pos);
            self.sift_down(self.timers[self.heap[pos as usize]].heap_pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    fn drain(queue: &mut TimerQueue<u32>, now: Instant) -> Vec<(u32, u64)> {
        core::iter::from_fn(|| queue.pop_expired(now)).map(|e| (e.payload, e.overruns)).collect()
    }

    #[test]
    fn fires_in_deadline_order_then_arming_order() {
        let mut q = TimerQueue::new();
        let ids: Vec<_> = (0..5).map(|n| q.create(n, TimerContext::Kernel)).collect();
        for (id, deadline) in ids.iter().zip([50, 10, 30, 10, 20]) {
            q.start(*id, at(deadline), None).unwrap();
        }
        assert_eq!(q.hardware_deadline(), Some(at(10)));
        assert_eq!(drain(&mut q, at(9)), vec![]);
        assert_eq!(drain(&mut q, at(30)), vec![(1, 0), (3, 0), (4, 0), (2, 0)]);
        assert_eq!(q.next_deadline(), Some(at(50)));
        assert_eq!(q.armed(), 1);
    }

    #[test]
    fn cancel_and_rearm_keep_the_heap_ordered() {
        let mut q = TimerQueue::new();
        let ids: Vec<_> = (0..64).map(|n| q.create(n, TimerContext::Irq)).collect();
        for (n, id) in ids.iter().enumerate() {
            q.start(*id, at((n as u64 * 7919) % 101), None).unwrap();
        }
        for id in ids.iter().step_by(3) {
            assert!(q.stop(*id).unwrap());
            assert!(!q.stop(*id).unwrap());
        }
        q.start(ids[1], at(1_000), None).unwrap(); // re-arm later
        q.start(ids[2], at(0), None).unwrap(); // re-arm earlier
        let fired: Vec<_> = core::iter::from_fn(|| q.pop_expired(Instant::MAX)).map(|e| e.deadline).collect();
        assert!(fired.windows(2).all(|w| w[0] <= w[1]), "{fired:?}");
        assert_eq!(fired.len(), 64 - 22);
        assert_eq!(*fired.last().unwrap(), at(1_000));
        assert_eq!(q.hardware_deadline(), None);
    }

    #[test]
    fn late_periodic_timer_counts_overruns_and_stays_on_its_grid() {
        let mut q = TimerQueue::new();
        let id = q.create(7, TimerContext::User);
        q.start(id, at(1_000), Some(Duration::from_nanos(100))).unwrap();
        // 3.5 periods late: slots 1100, 1200, 1300 were missed.
        let expiry = q.pop_expired(at(1_350)).unwrap();
        assert_eq!((expiry.payload, expiry.deadline, expiry.overruns), (7, at(1_000), 3));
        assert_eq!(q.next_deadline(), Some(at(1_400)));
        assert!(q.pop_expired(at(1_350)).is_none());
        // Late by exactly one period counts one overrun.
        let expiry = q.pop_expired(at(1_500)).unwrap();
        assert_eq!((expiry.deadline, expiry.overruns), (at(1_400), 1));
        assert_eq!(q.next_deadline(), Some(at(1_600)));
        // On time: no overrun, no drift.
        assert_eq!(q.pop_expired(at(1_600)).unwrap().overruns, 0);
        assert_eq!(q.next_deadline(), Some(at(1_700)));
    }

    #[test]
    fn gravity_anticipates_the_hardware_deadline_only() {
        let mut q = TimerQueue::new();
        let user = q.create(1, TimerContext::User);
        let irq = q.create(2, TimerContext::Irq);
        q.set_gravity(Gravity { irq: Duration::ZERO, kernel: Duration::from_nanos(5), user: Duration::from_nanos(50) });
        q.start(user, at(1_000), Some(Duration::from_nanos(500))).unwrap();
        q.start(irq, at(960), None).unwrap();
        // The user timer is programmed first although its logical deadline is later.
        assert_eq!(q.hardware_deadline(), Some(at(950)));
        assert_eq!(q.next_deadline(), Some(at(1_000)));
        assert_eq!(q.deadline(user).unwrap(), Some(at(1_000)));
        assert!(q.pop_expired(at(949)).is_none());
        let expiry = q.pop_expired(at(950)).unwrap();
        assert_eq!((expiry.payload, expiry.deadline, expiry.overruns), (1, at(1_000), 0));
        // The periodic grid is the logical one: 1500, programmed at 1450.
        assert_eq!(q.deadline(user).unwrap(), Some(at(1_500)));
        assert_eq!(q.pop_expired(at(955)), None);
        assert_eq!(q.pop_expired(at(960)).map(|e| e.payload), Some(2));
        assert_eq!(q.hardware_deadline(), Some(at(1_450)));
        // Changing gravity re-keys armed timers.
        q.set_gravity(Gravity::default());
        assert_eq!(q.hardware_deadline(), Some(at(1_500)));
    }

    #[test]
    fn stale_ids_and_zero_periods_are_refused() {
        let mut q = TimerQueue::new();
        let id = q.create(1, TimerContext::Kernel);
        assert_eq!(q.start(id, at(5), Some(Duration::ZERO)), Err(Error::InvalidPeriod));
        q.start(id, at(5), None).unwrap();
        assert_eq!(q.destroy(id), Ok(1));
        assert_eq!(q.hardware_deadline(), None);
        let reused = q.create(2, TimerContext::Kernel);
        assert_eq!(q.start(id, at(5), None), Err(Error::StaleTimer));
        assert_eq!(q.stop(id), Err(Error::StaleTimer));
        assert_eq!(q.payload(reused), Ok(2));
    }

    #[test]
    fn periodic_timer_at_the_end_of_time_becomes_one_shot() {
        let mut q = TimerQueue::new();
        let id = q.create(1, TimerContext::Kernel);
        q.start(id, Instant::MAX, Some(Duration::from_nanos(10))).unwrap();
        assert!(q.pop_expired(Instant::MAX).is_some());
        assert!(q.pop_expired(Instant::MAX).is_none());
        assert_eq!(q.deadline(id), Ok(None));
    }
}
