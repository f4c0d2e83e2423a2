//! SCHED_FIFO: fixed priorities 1..=99 (99 highest), first-in first-out within a level.
//!
//! `PrioQueue` is the O(1) multi-level queue every class builds on: one intrusive list per
//! level and a 128-bit bitmap of non-empty levels, so the best thread is the head of the level
//! given by the bitmap's most significant set bit. Round-robin threads share these queues (see
//! [`super::rr`]), as in EVL.

use crate::list::{Link, List};

/// Lowest real-time priority.
pub const MIN_PRIORITY: u8 = 1;
/// Highest real-time priority.
pub const MAX_PRIORITY: u8 = 99;

const LEVELS: usize = MAX_PRIORITY as usize + 1;

/// Whether `priority` is a valid real-time priority.
pub const fn is_valid_priority(priority: u8) -> bool {
    priority >= MIN_PRIORITY && priority <= MAX_PRIORITY
}

/// Threads ready at priorities 1..=99, FIFO within a level.
pub(crate) struct PrioQueue {
    levels: [List; LEVELS],
    nonempty: u128,
}

impl PrioQueue {
    /// An empty queue.
    pub(crate) const fn new() -> Self {
        Self { levels: [List::EMPTY; LEVELS], nonempty: 0 }
    }

    /// Queues `thread` behind the others of its level.
    #[inline]
    pub(crate) fn push_back(&mut self, links: &mut [Link], thread: u32, priority: u8) {
        self.levels[priority as usize].push_back(links, thread, u16::from(priority));
        self.nonempty |= 1 << priority;
    }

    /// Queues `thread` ahead of the others of its level (a preempted thread keeps its turn).
    pub(crate) fn push_front(&mut self, links: &mut [Link], thread: u32, priority: u8) {
        self.levels[priority as usize].push_front(links, thread, u16::from(priority));
        self.nonempty |= 1 << priority;
    }

    /// Unqueues `thread`, which must be queued here.
    pub(crate) fn remove(&mut self, links: &mut [Link], thread: u32) {
        let level = links[thread as usize].key as usize;
        self.levels[level].remove(links, thread);
        if self.levels[level].is_empty() {
            self.nonempty &= !(1 << level);
        }
    }

    /// The best thread: head of the highest non-empty level.
    #[inline]
    pub(crate) fn first(&self) -> Option<u32> {
        let top = self.top_level()?;
        self.levels[top as usize].first()
    }

    /// Moves every thread accepted by `take` to the back of `dest`, highest level first and in
    /// queue order, keeping its level as link key. Linear in the queued threads; never allocates.
    pub(crate) fn move_matching(&mut self, links: &mut [Link], take: impl Fn(u32) -> bool, dest: &mut List) {
        let mut remaining = self.nonempty;
        while remaining != 0 {
            let level = 127 - remaining.leading_zeros();
            remaining &= !(1 << level);
            let mut cursor = self.levels[level as usize].first();
            while let Some(thread) = cursor {
                cursor = List::next(links, thread);
                if take(thread) {
                    self.remove(links, thread);
                    dest.push_back(links, thread, level as u16);
                }
            }
        }
    }

    #[inline]
    fn top_level(&self) -> Option<u32> {
        (self.nonempty != 0).then(|| 127 - self.nonempty.leading_zeros())
    }

    /// Every queued thread, highest level first (tests only).
    #[cfg(test)]
    pub(crate) fn iter<'a>(&'a self, links: &'a [Link]) -> impl Iterator<Item = u32> + 'a {
        let nonempty = self.nonempty;
        (0..LEVELS)
            .rev()
            .filter(move |&level| nonempty & (1 << level) != 0)
            .flat_map(move |level| self.levels[level].iter(links))
    }

    /// Whether the bitmap matches the levels and every list is well linked (tests only).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self, links: &[Link]) -> bool {
        self.levels.iter().enumerate().all(|(level, list)| {
            let marked = self.nonempty & (1 << level) != 0;
            marked != list.is_empty()
                && (list.is_empty()
                    || list.is_consistent(links)
                        && list.iter(links).all(|thread| links[thread as usize].key as usize == level))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn highest_priority_first_and_fifo_within_a_level() {
        let mut links = [Link::default(); 5];
        let mut q = PrioQueue::new();
        q.push_back(&mut links, 0, 10);
        q.push_back(&mut links, 1, 99);
        q.push_back(&mut links, 2, 10);
        q.push_back(&mut links, 3, 1);
        q.push_front(&mut links, 4, 10);
        assert_eq!(q.iter(&links).collect::<Vec<_>>(), [1, 4, 0, 2, 3]);
        q.remove(&mut links, 1);
        assert_eq!(q.first(), Some(4));
        q.remove(&mut links, 4);
        q.remove(&mut links, 0);
        q.remove(&mut links, 2);
        assert_eq!(q.first(), Some(3));
        q.remove(&mut links, 3);
        assert_eq!(q.first(), None);
        assert!(q.is_consistent(&links));
    }

    #[test]
    fn moving_matching_threads_keeps_priority_order() {
        let mut links = [Link::default(); 4];
        let mut q = PrioQueue::new();
        for (thread, priority) in [(0, 5), (1, 50), (2, 5), (3, 50)] {
            q.push_back(&mut links, thread, priority);
        }
        let mut parked = List::EMPTY;
        q.move_matching(&mut links, |thread| thread != 2, &mut parked);
        assert_eq!(parked.iter(&links).collect::<Vec<_>>(), [1, 3, 0]);
        assert_eq!(q.iter(&links).collect::<Vec<_>>(), [2]);
        assert!(q.is_consistent(&links));
    }

    #[test]
    fn priority_range() {
        assert!(!is_valid_priority(0));
        assert!(is_valid_priority(1) && is_valid_priority(99));
        assert!(!is_valid_priority(100));
    }
}
