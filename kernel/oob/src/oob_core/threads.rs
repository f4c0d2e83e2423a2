//! Thread lifecycle: spawn, start, exit, suspend/resume, scheduling parameters, migration.

use alloc::string::String;

use super::OobCore;
use super::timers::TimerEvent;
use crate::error::Error;
use crate::sched::fifo::is_valid_priority;
use crate::sched::rr::TimeSlice;
use crate::sched::tp::TP_PARTITIONS;
use crate::sched::{Class, SchedParams};
use crate::sync::{Waiting, WakeReason};
use crate::thread::{Lifecycle, Policy, Thread, ThreadId, ThreadSpec, ThreadState, ThreadStats};
use crate::time::{Duration, Instant};

impl OobCore {
    /// Creates a thread, ready to run or dormant per `spec.dormant`. Allocates (the control
    /// block and its timeout timer); nothing on the scheduling paths does.
    pub fn spawn(&mut self, spec: ThreadSpec<'_>) -> Result<ThreadId, Error> {
        let cpu = self.cpu_index(spec.cpu)?;
        let base = self.base_params(cpu, spec.policy, spec.priority)?;
        let key = self.threads.next_key();
        let timeout_timer = self.cpus[cpu].timers.create(TimerEvent::Timeout(key), spec.context);
        let inserted = self.threads.insert(Thread {
            name: String::from(spec.name),
            cpu,
            policy: spec.policy,
            base,
            effective: base,
            lifecycle: if spec.dormant { Lifecycle::Dormant } else { Lifecycle::Alive },
            suspended: false,
            waiting: None,
            wake_reason: None,
            timeout_timer,
            context: spec.context,
            slice: Self::slice_of(spec.policy),
            held: Default::default(),
            stats: ThreadStats::default(),
            glue_token: 0,
        });
        debug_assert_eq!(inserted, key);
        if self.links.len() < self.threads.slot_count() {
            self.links.push(Default::default());
        }
        if let Policy::Quota { group } = spec.policy {
            self.cpus[cpu].rq.quota.count_member(group.key.index, true);
        }
        if !spec.dormant {
            self.enqueue(key.index);
        }
        Ok(ThreadId(key))
    }

    /// Sets the glue's token of a thread (typically its control block's address), which
    /// [`OobCore::reschedule_to`] and [`OobCore::on_timer_tick`] return when switching to it.
    pub fn set_glue_token(&mut self, thread: ThreadId, token: usize) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        self.threads[t].glue_token = token;
        Ok(())
    }

    /// Makes a dormant thread ready.
    pub fn start(&mut self, thread: ThreadId) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        if self.threads[t].lifecycle != Lifecycle::Dormant {
            return Err(Error::NotDormant);
        }
        self.threads[t].lifecycle = Lifecycle::Alive;
        if self.threads[t].runnable() {
            self.enqueue(t);
        }
        Ok(())
    }

    /// Terminates a thread: its wait is cancelled, the mutexes it holds are handed to their
    /// waiters, and its id becomes stale. If it is the current context of its CPU, its slot is
    /// reclaimed when the glue switches away from it.
    pub fn exit(&mut self, thread: ThreadId, now: Instant) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        if self.threads[t].runnable() {
            self.unqueue(t);
        }
        self.threads[t].lifecycle = Lifecycle::Exited;
        self.abort_wait(t, WakeReason::Deleted, now);
        while let Some(m) = self.threads[t].held.first() {
            self.release(t, m, now);
        }
        let thread = &self.threads[t];
        if let Policy::Quota { group } = thread.policy {
            self.cpus[thread.cpu].rq.quota.count_member(group.key.index, false);
        }
        if self.is_current(t) {
            self.touched.insert(self.threads[t].cpu);
        } else {
            self.reclaim_if_exited(t);
        }
        Ok(())
    }

    /// Suspends a thread (idempotent): it does not run until resumed, even if its wait ends.
    pub fn suspend(&mut self, thread: ThreadId) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        if self.threads[t].runnable() {
            self.unqueue(t);
        }
        self.threads[t].suspended = true;
        Ok(())
    }

    /// Resumes a suspended thread.
    pub fn resume(&mut self, thread: ThreadId) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        if !self.threads[t].suspended {
            return Err(Error::NotSuspended);
        }
        self.threads[t].suspended = false;
        if self.threads[t].runnable() {
            self.enqueue(t);
        }
        Ok(())
    }

    /// Changes a thread's base priority within its policy.
    pub fn set_priority(&mut self, thread: ThreadId, priority: u8, now: Instant) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        self.set_policy(thread, self.threads[t].policy, priority, now)
    }

    /// Changes a thread's policy and base priority. Boosts from held mutexes still apply; a
    /// round-robin thread starts a full slice.
    pub fn set_policy(&mut self, thread: ThreadId, policy: Policy, priority: u8, now: Instant) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        let cpu = self.threads[t].cpu;
        let base = self.base_params(cpu, policy, priority)?;
        if self.is_current(t) {
            self.charge(cpu, now);
        }
        let quota = &mut self.cpus[cpu].rq.quota;
        if let Policy::Quota { group } = self.threads[t].policy {
            quota.count_member(group.key.index, false);
        }
        if let Policy::Quota { group } = policy {
            quota.count_member(group.key.index, true);
        }
        let thread = &mut self.threads[t];
        thread.policy = policy;
        thread.base = base;
        thread.slice = Self::slice_of(policy);
        self.update_priority(t, now);
        if self.is_current(t) {
            self.arm_budget_timers(cpu, now);
        }
        Ok(())
    }

    /// Moves a thread to another CPU, with its pending timeout. Refused for the current thread of
    /// a CPU (switch it out first, e.g. suspend it) and for quota threads (groups are per CPU).
    /// Inherited priorities involving the thread are re-evaluated (a boost stays within a TP
    /// partition only between threads of the same CPU).
    pub fn migrate(&mut self, thread: ThreadId, cpu: usize, now: Instant) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        let target = self.cpu_index(cpu)?;
        if self.is_current(t) {
            return Err(Error::ThreadIsCurrent);
        }
        if matches!(self.threads[t].policy, Policy::Quota { .. }) {
            return Err(Error::WrongCpu);
        }
        let source = self.threads[t].cpu;
        if source == target {
            return Ok(());
        }
        let runnable = self.threads[t].runnable();
        if runnable {
            self.unqueue(t);
        }
        let key = self.threads.key(t);
        let (old_timer, context) = (self.threads[t].timeout_timer, self.threads[t].context);
        let deadline = self.cpus[source].armed_deadline(old_timer);
        self.cpus[source].destroy_timer(old_timer);
        self.retimed.insert(source);
        let new_timer = self.cpus[target].timers.create(TimerEvent::Timeout(key), context);
        if let Some(deadline) = deadline {
            self.cpus[target].arm(new_timer, deadline, None);
            self.retimed.insert(target);
        }
        let thread = &mut self.threads[t];
        thread.cpu = target;
        thread.timeout_timer = new_timer;
        if runnable {
            self.enqueue(t);
        }
        self.update_priority(t, now);
        if let Some(Waiting::Mutex(m)) = self.threads[t].waiting {
            let owner = self.mutexes[m].owner.expect("a mutex with waiters has an owner");
            self.update_priority(owner, now);
        }
        Ok(())
    }

    /// Records a wake-up latency measured by the glue; the worst is kept.
    pub fn report_latency(&mut self, thread: ThreadId, latency: Duration) -> Result<(), Error> {
        let t = self.thread_index(thread)?;
        let stats = &mut self.threads[t].stats;
        stats.max_latency = stats.max_latency.max(latency);
        Ok(())
    }

    /// The state of a thread.
    pub fn thread_state(&self, thread: ThreadId) -> Result<ThreadState, Error> {
        Ok(self.state_of(self.thread_index(thread)?))
    }

    /// The statistics of a thread.
    pub fn thread_stats(&self, thread: ThreadId) -> Result<ThreadStats, Error> {
        Ok(self.threads[self.thread_index(thread)?].stats)
    }

    /// The priority a thread runs at now: its base priority, or the boost it inherited.
    pub fn effective_priority(&self, thread: ThreadId) -> Result<u8, Error> {
        Ok(self.threads[self.thread_index(thread)?].effective.priority)
    }

    /// The statistics of the in-band stage of `cpu`.
    pub fn inband_stats(&self, cpu: usize) -> Result<ThreadStats, Error> {
        Ok(self.cpus[self.cpu_index(cpu)?].inband)
    }

    /// The state of the thread at `t`.
    pub(crate) fn state_of(&self, t: u32) -> ThreadState {
        let thread = &self.threads[t];
        match (thread.lifecycle, thread.waiting) {
            (Lifecycle::Exited, _) => ThreadState::Exited,
            (Lifecycle::Dormant, _) => ThreadState::Dormant,
            (Lifecycle::Alive, Some(waiting)) => ThreadState::Blocked {
                on: self.wait_object(waiting),
                timeout: self.cpus[thread.cpu].armed_deadline(thread.timeout_timer),
            },
            _ if thread.suspended => ThreadState::Suspended,
            _ if self.is_current(t) => ThreadState::Running,
            _ => ThreadState::Ready,
        }
    }

    /// Frees the slot of an exited thread that is no longer current.
    pub(crate) fn reclaim_if_exited(&mut self, t: u32) {
        if self.threads[t].lifecycle != Lifecycle::Exited {
            return;
        }
        let thread = self.threads.remove(self.threads.key(t)).expect("live slot");
        self.cpus[thread.cpu].destroy_timer(thread.timeout_timer);
        self.retimed.insert(thread.cpu);
    }

    /// Validates `policy` and `priority` for a thread of `cpu`.
    fn base_params(&self, cpu: usize, policy: Policy, priority: u8) -> Result<SchedParams, Error> {
        if !is_valid_priority(priority) {
            return Err(Error::InvalidPriority);
        }
        let class = match policy {
            Policy::Fifo => Class::Fifo,
            Policy::RoundRobin { quantum } if quantum.is_zero() => return Err(Error::InvalidQuantum),
            Policy::RoundRobin { .. } => Class::Fifo,
            Policy::TimePartition { partition } if usize::from(partition) >= TP_PARTITIONS => {
                return Err(Error::InvalidPartition);
            }
            Policy::TimePartition { partition } => Class::Tp(partition),
            Policy::Quota { group } if group.cpu() != cpu => return Err(Error::WrongCpu),
            Policy::Quota { group } if !self.cpus[cpu].rq.quota.contains(group.key) => {
                return Err(Error::StaleQuotaGroup);
            }
            Policy::Quota { group } => Class::Quota(group.key.index),
        };
        Ok(SchedParams { class, priority })
    }

    fn slice_of(policy: Policy) -> Option<TimeSlice> {
        match policy {
            Policy::RoundRobin { quantum } => Some(TimeSlice::new(quantum)),
            _ => None,
        }
    }
}
