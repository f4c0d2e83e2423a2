//! The per-CPU run queue: the scheduling classes combined in EVL's order.
//!
//! # Ordering
//!
//! Every runnable oob thread is queued in exactly one class of its CPU, according to its
//! *effective* scheduling parameters (its own, or those it inherited through a mutex). The next
//! context is, in this order:
//!
//! 1. the best FIFO/RR thread (highest priority, then longest waiting);
//! 2. else the best thread of the active TP partition, if the CPU's TP schedule runs;
//! 3. else the best thread of a quota group that has budget left;
//! 4. else the in-band stage (Linux), which is always runnable.
//!
//! So a class outranks every priority of the classes below it. Where threads of different
//! classes must be compared (mutex wait queues, priority inheritance) the same order is encoded
//! as a *rank*: `class weight × 100 + priority`, weights FIFO/RR 2, TP 1, quota 0, so the rank
//! order is exactly the pick order above.

pub mod fifo;
pub mod quota;
pub mod rr;
pub mod tp;

use fifo::PrioQueue;
use quota::QuotaClass;
use tp::TpClass;

use crate::list::Link;
use crate::thread::ThreadId;

/// The class a thread is scheduled in, with the class's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// FIFO (and RR, which is FIFO with a slice).
    Fifo,
    /// Time partitioning, in this partition.
    Tp(u8),
    /// Quota, in this group (arena index of the CPU's quota class).
    Quota(u32),
}

/// A class and a priority within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedParams {
    pub(crate) class: Class,
    pub(crate) priority: u8,
}

impl SchedParams {
    /// FIFO at `priority`.
    pub(crate) const fn fifo(priority: u8) -> Self {
        Self { class: Class::Fifo, priority }
    }

    /// The cross-class order of the [module documentation](self).
    pub(crate) const fn rank(self) -> u16 {
        let weight = match self.class {
            Class::Fifo => 2,
            Class::Tp(_) => 1,
            Class::Quota(_) => 0,
        };
        weight * 100 + self.priority as u16
    }
}

/// What a CPU runs: an oob thread, or the in-band stage when no oob thread is runnable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runnable {
    /// An out-of-band thread.
    Oob(ThreadId),
    /// The in-band stage (Linux), the lowest-priority context of every CPU.
    InBand,
}

/// The run queue of one CPU.
pub(crate) struct RunQueue {
    fifo: PrioQueue,
    pub(crate) tp: TpClass,
    pub(crate) quota: QuotaClass,
}

impl RunQueue {
    /// Empty queues, TP stopped, no quota period.
    pub(crate) const fn new() -> Self {
        Self { fifo: PrioQueue::new(), tp: TpClass::new(), quota: QuotaClass::new() }
    }

    /// Queues a runnable thread under `params`; `front` keeps its turn within its level.
    /// Inline for FIFO threads (the wake-up hot path), the other classes out of line.
    #[inline]
    /// `params` by reference: the hot path reads the class and priority alone, so no copy of
    /// the parameters is kept for the out-of-line classes.
    pub(crate) fn enqueue(&mut self, links: &mut [Link], thread: u32, params: &SchedParams, front: bool) {
        let &SchedParams { class, priority } = params;
        match class {
            Class::Fifo if front => self.fifo.push_front(links, thread, priority),
            Class::Fifo => self.fifo.push_back(links, thread, priority),
            _ => self.enqueue_in_class(links, thread, params, front),
        }
    }

    /// [`RunQueue::enqueue`] in the TP and quota classes.
    #[inline(never)]
    fn enqueue_in_class(&mut self, links: &mut [Link], thread: u32, params: &SchedParams, front: bool) {
        let &SchedParams { class, priority } = params;
        match class {
            Class::Fifo if front => self.fifo.push_front(links, thread, priority),
            Class::Fifo => self.fifo.push_back(links, thread, priority),
            Class::Tp(partition) if front => self.tp.queue(partition).push_front(links, thread, priority),
            Class::Tp(partition) => self.tp.queue(partition).push_back(links, thread, priority),
            Class::Quota(group) => self.quota.enqueue(links, thread, priority, group, front),
        }
    }

    /// Unqueues a thread queued under `params`.
    pub(crate) fn dequeue(&mut self, links: &mut [Link], thread: u32, params: SchedParams) {
        match params.class {
            Class::Fifo => self.fifo.remove(links, thread),
            Class::Tp(partition) => self.tp.queue(partition).remove(links, thread),
            Class::Quota(group) => self.quota.dequeue(links, thread, group),
        }
    }

    /// The thread to run, `None` for the in-band stage. O(1).
    /// Inline for the FIFO class, the other classes out of line.
    #[inline]
    pub(crate) fn pick(&self) -> Option<u32> {
        self.fifo.first().or_else(|| self.pick_below_fifo())
    }

    /// [`RunQueue::pick`] when no FIFO thread is ready.
    #[inline(never)]
    fn pick_below_fifo(&self) -> Option<u32> {
        self.tp.pick().or_else(|| self.quota.pick())
    }

    /// Every queued thread with the class queue it is in (tests only).
    #[cfg(test)]
    pub(crate) fn queued<'a>(&'a self, links: &'a [Link]) -> impl Iterator<Item = (u32, QueuedIn)> + 'a {
        let fifo = self.fifo.iter(links).map(|t| (t, QueuedIn::Fifo));
        let tp = self.tp.queued(links).map(|(p, t)| (t, QueuedIn::Tp(p)));
        let quota = self.quota.queued(links).map(|(t, parked)| (t, QueuedIn::Quota { parked }));
        fifo.chain(tp).chain(quota)
    }

    /// Whether all class queues are well formed (tests only).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self, links: &[Link]) -> bool {
        self.fifo.is_consistent(links) && self.tp.is_consistent(links) && self.quota.is_consistent(links)
    }
}

/// Which class queue a thread was found in (invariant checks).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuedIn {
    Fifo,
    Tp(u8),
    Quota { parked: Option<u32> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_follows_the_class_order() {
        let fifo1 = SchedParams::fifo(1);
        let tp99 = SchedParams { class: Class::Tp(0), priority: 99 };
        let quota99 = SchedParams { class: Class::Quota(0), priority: 99 };
        assert!(fifo1.rank() > tp99.rank());
        assert!(tp99.rank() > quota99.rank());
        assert!(SchedParams::fifo(2).rank() > fifo1.rank());
    }

    #[test]
    fn fifo_outranks_tp_which_outranks_quota() {
        let mut links = [Link::default(); 3];
        let mut rq = RunQueue::new();
        rq.quota.set_period(crate::time::Duration::from_millis(1)).unwrap();
        let group = rq.quota.create_group(crate::time::Duration::from_micros(10)).unwrap().index;
        rq.tp.install(&[tp::TpWindow { partition: Some(3), duration: crate::time::Duration::from_micros(5) }]).unwrap();
        rq.enqueue(&mut links, 0, &SchedParams { class: Class::Quota(group), priority: 99 }, false);
        assert_eq!(rq.pick(), Some(0));
        rq.enqueue(&mut links, 1, &SchedParams { class: Class::Tp(3), priority: 99 }, false);
        assert_eq!(rq.pick(), Some(0), "TP threads wait for their window");
        rq.tp.start(crate::time::Instant::ZERO).unwrap();
        assert_eq!(rq.pick(), Some(1));
        rq.enqueue(&mut links, 2, &SchedParams::fifo(1), false);
        assert_eq!(rq.pick(), Some(2));
        rq.dequeue(&mut links, 2, SchedParams::fifo(1));
        rq.dequeue(&mut links, 1, SchedParams { class: Class::Tp(3), priority: 99 });
        rq.dequeue(&mut links, 0, SchedParams { class: Class::Quota(group), priority: 99 });
        assert_eq!(rq.pick(), None);
        assert!(rq.is_consistent(&links));
    }
}
