//! SCHED_QUOTA: CPU budgets for groups of threads, per CPU, as in EVL.
//!
//! Each CPU has one quota period; each group on it has a budget per period. Quota threads are
//! scheduled FIFO by priority across all groups (one run queue), and the CPU time of a running
//! quota thread is charged to its group. When the group's budget is used up (detected by
//! accounting, or by the limit timer the core arms for the running thread) the group is
//! *exhausted*: its ready threads are parked off the run queue until the next period starts,
//! when every group gets its full budget back and parked threads return to the run queue. Unused
//! budget is not carried over (EVL's peak-quota credit is not implemented). A thread boosted by
//! priority inheritance into the FIFO class is not charged.

use super::fifo::PrioQueue;
use crate::arena::{Arena, Key};
use crate::error::Error;
use crate::list::{Link, List};
use crate::time::Duration;

/// Identifies a quota group (which belongs to one CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaGroupId {
    pub(crate) cpu: u8,
    pub(crate) key: Key,
}

impl QuotaGroupId {
    /// The CPU the group belongs to.
    pub const fn cpu(self) -> usize {
        self.cpu as usize
    }
}

/// Budget state of one group.
pub(crate) struct QuotaGroup {
    budget: Duration,
    left: Duration,
    /// Ready threads parked while the group is exhausted, in priority order.
    parked: List,
    /// Threads whose base policy names this group.
    members: u32,
}

/// The quota class of one CPU.
pub(crate) struct QuotaClass {
    runnable: PrioQueue,
    groups: Arena<QuotaGroup>,
    period: Option<Duration>,
}

impl QuotaClass {
    /// No period configured, no group.
    pub(crate) const fn new() -> Self {
        Self { runnable: PrioQueue::new(), groups: Arena::new(), period: None }
    }

    /// Sets the period (non-zero, at least every group's budget).
    pub(crate) fn set_period(&mut self, period: Duration) -> Result<(), Error> {
        if period.is_zero() {
            return Err(Error::InvalidPeriod);
        }
        if self.groups.iter().any(|(_, group)| group.budget > period) {
            return Err(Error::InvalidBudget);
        }
        self.period = Some(period);
        Ok(())
    }

    /// Creates a group with a full `budget` per period.
    pub(crate) fn create_group(&mut self, budget: Duration) -> Result<Key, Error> {
        self.check_budget(budget)?;
        Ok(self.groups.insert(QuotaGroup { budget, left: budget, parked: List::EMPTY, members: 0 }))
    }

    /// Changes a group's budget from the next period on; what is left now is capped by it.
    pub(crate) fn set_budget(&mut self, group: Key, budget: Duration) -> Result<(), Error> {
        self.check_budget(budget)?;
        let group = self.groups.get_mut(group).ok_or(Error::StaleQuotaGroup)?;
        group.budget = budget;
        group.left = group.left.min(budget);
        Ok(())
    }

    /// Deletes a group that has no member.
    pub(crate) fn remove_group(&mut self, group: Key) -> Result<(), Error> {
        if self.groups.get(group).ok_or(Error::StaleQuotaGroup)?.members != 0 {
            return Err(Error::GroupInUse);
        }
        self.groups.remove(group);
        Ok(())
    }

    /// Validates a group key.
    pub(crate) fn contains(&self, group: Key) -> bool {
        self.groups.get(group).is_some()
    }

    /// Budget left to group `group` in this period.
    pub(crate) fn left(&self, group: u32) -> Duration {
        self.groups[group].left
    }

    /// Counts a thread in (`true`) or out of the group `group`.
    pub(crate) fn count_member(&mut self, group: u32, joins: bool) {
        let members = &mut self.groups[group].members;
        *members = if joins { *members + 1 } else { *members - 1 };
    }

    /// Queues a ready thread of `group`: parked if the group is exhausted.
    pub(crate) fn enqueue(&mut self, links: &mut [Link], thread: u32, priority: u8, group: u32, front: bool) {
        let group = &mut self.groups[group];
        if group.left.is_zero() {
            group.parked.insert_by_key(links, thread, u16::from(priority));
        } else if front {
            self.runnable.push_front(links, thread, priority);
        } else {
            self.runnable.push_back(links, thread, priority);
        }
    }

    /// Unqueues a thread of `group`, running or parked.
    pub(crate) fn dequeue(&mut self, links: &mut [Link], thread: u32, group: u32) {
        let group = &mut self.groups[group];
        if group.left.is_zero() {
            group.parked.remove(links, thread);
        } else {
            self.runnable.remove(links, thread);
        }
    }

    /// Charges `elapsed` to `group`; returns whether this used up its budget.
    pub(crate) fn charge(&mut self, group: u32, elapsed: Duration) -> bool {
        let group = &mut self.groups[group];
        let was_left = !group.left.is_zero();
        group.left -= elapsed;
        was_left && group.left.is_zero()
    }

    /// Ends `group`'s budget for this period and parks its ready threads; `group_of` maps a
    /// queued thread to its group.
    pub(crate) fn exhaust(&mut self, links: &mut [Link], group: u32, group_of: impl Fn(u32) -> u32) {
        let state = &mut self.groups[group];
        state.left = Duration::ZERO;
        self.runnable.move_matching(links, |thread| group_of(thread) == group, &mut state.parked);
    }

    /// Starts a new period: full budgets, parked threads back on the run queue (behind the
    /// threads already there at their priority).
    pub(crate) fn refill(&mut self, links: &mut [Link]) {
        for group in self.groups.values_mut() {
            group.left = group.budget;
            while let Some(thread) = group.parked.pop_front(links) {
                let priority = links[thread as usize].key as u8;
                self.runnable.push_back(links, thread, priority);
            }
        }
    }

    /// The best thread of a group with budget left.
    pub(crate) fn pick(&self) -> Option<u32> {
        self.runnable.first()
    }

    fn check_budget(&self, budget: Duration) -> Result<(), Error> {
        let period = self.period.ok_or(Error::QuotaNotConfigured)?;
        if budget.is_zero() || budget > period {
            return Err(Error::InvalidBudget);
        }
        Ok(())
    }

    /// Every queued thread with the group it is parked in, if parked (tests only).
    #[cfg(test)]
    pub(crate) fn queued<'a>(&'a self, links: &'a [Link]) -> impl Iterator<Item = (u32, Option<u32>)> + 'a {
        let parked = self
            .groups
            .iter()
            .flat_map(move |(key, group)| group.parked.iter(links).map(move |t| (t, Some(key.index))));
        self.runnable.iter(links).map(|t| (t, None)).chain(parked)
    }

    /// Whether queues are well formed and only exhausted groups have parked threads (tests only).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self, links: &[Link]) -> bool {
        self.runnable.is_consistent(links)
            && self
                .groups
                .iter()
                .all(|(_, g)| g.parked.is_consistent(links) && (g.parked.is_empty() || g.left.is_zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn exhausted_group_is_parked_until_refill() {
        let mut links = [Link::default(); 3];
        let mut quota = QuotaClass::new();
        assert_eq!(quota.create_group(Duration::from_micros(1)), Err(Error::QuotaNotConfigured));
        quota.set_period(Duration::from_millis(1)).unwrap();
        assert_eq!(quota.create_group(Duration::from_millis(2)), Err(Error::InvalidBudget));
        let a = quota.create_group(Duration::from_micros(300)).unwrap().index;
        let b = quota.create_group(Duration::from_micros(500)).unwrap().index;
        let group_of = |thread: u32| if thread == 2 { b } else { a };
        quota.enqueue(&mut links, 0, 10, a, false);
        quota.enqueue(&mut links, 1, 20, a, false);
        quota.enqueue(&mut links, 2, 5, b, false);
        assert_eq!(quota.pick(), Some(1));
        assert!(!quota.charge(a, Duration::from_micros(299)));
        assert!(quota.charge(a, Duration::from_micros(1)));
        assert!(!quota.charge(a, Duration::from_micros(1)), "reported once");
        quota.exhaust(&mut links, a, group_of);
        assert_eq!(quota.pick(), Some(2));
        assert_eq!(quota.queued(&links).collect::<Vec<_>>(), [(2, None), (1, Some(a)), (0, Some(a))]);
        quota.dequeue(&mut links, 0, a);
        quota.refill(&mut links);
        assert_eq!(quota.left(a), Duration::from_micros(300));
        assert_eq!(quota.pick(), Some(1));
        assert!(quota.is_consistent(&links));
        quota.count_member(b, true);
        assert_eq!(quota.remove_group(quota.groups.key(b)), Err(Error::GroupInUse));
        assert_eq!(quota.set_period(Duration::from_micros(400)), Err(Error::InvalidBudget));
    }
}
