//! `ps`: a snapshot of every thread and in-band stage, printable as a table like `evl ps`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::Error;
use crate::oob_core::OobCore;
use crate::sync::WaitObject;
use crate::thread::{Policy, ThreadId, ThreadState, ThreadStats};

/// One thread, as a plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// Its id.
    pub id: ThreadId,
    /// Its name.
    pub name: String,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Its policy.
    pub policy: Policy,
    /// Its own priority.
    pub base_priority: u8,
    /// The priority it runs at (inherited from a mutex if `boosted`).
    pub priority: u8,
    /// Whether it runs with parameters inherited from a mutex.
    pub boosted: bool,
    /// Its state.
    pub state: ThreadState,
    /// Its statistics.
    pub stats: ThreadStats,
}

/// The in-band stage of one CPU, as a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InBandInfo {
    /// The CPU.
    pub cpu: usize,
    /// Whether it is the CPU's current context.
    pub running: bool,
    /// Its statistics.
    pub stats: ThreadStats,
}

/// Every thread and in-band stage at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The threads, by id.
    pub threads: Vec<ThreadInfo>,
    /// The in-band stages, by CPU.
    pub inband: Vec<InBandInfo>,
}

impl OobCore {
    /// A snapshot of all threads (including exited ones not yet switched out) and in-band
    /// stages. Allocates: a diagnostic, not for the scheduling paths.
    pub fn snapshot(&self) -> Snapshot {
        let threads = self.threads.iter().map(|(key, _)| self.info_of(key.index)).collect();
        let inband = (0..self.cpus.len())
            .map(|cpu| InBandInfo { cpu, running: self.cpus[cpu].current.is_none(), stats: self.cpus[cpu].inband })
            .collect();
        Snapshot { threads, inband }
    }

    /// The snapshot row of one thread.
    pub fn thread_info(&self, thread: ThreadId) -> Result<ThreadInfo, Error> {
        Ok(self.info_of(self.thread_index(thread)?))
    }

    fn info_of(&self, t: u32) -> ThreadInfo {
        let thread = &self.threads[t];
        ThreadInfo {
            id: self.thread_id(t),
            name: thread.name.clone(),
            cpu: thread.cpu,
            policy: thread.policy,
            base_priority: thread.base.priority,
            priority: thread.effective.priority,
            boosted: thread.effective != thread.base,
            state: self.state_of(t),
            stats: thread.stats,
        }
    }
}

/// Short state name for the table.
fn state_name(state: &ThreadState) -> &'static str {
    match state {
        ThreadState::Dormant => "dormant",
        ThreadState::Ready => "ready",
        ThreadState::Running => "run",
        ThreadState::Blocked { on: WaitObject::Mutex(_), .. } => "wait:mutex",
        ThreadState::Blocked { on: WaitObject::Semaphore(_), .. } => "wait:sem",
        ThreadState::Blocked { on: WaitObject::Flags(_), .. } => "wait:flags",
        ThreadState::Blocked { on: WaitObject::Sleep, .. } => "sleep",
        ThreadState::Suspended => "susp",
        ThreadState::Exited => "exited",
    }
}

/// The table: one line per in-band stage and thread, times in microseconds, a `*` marking an
/// inherited priority.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CPU  ID       POLICY  PRIO  STATE        SWITCHES    CPUTIME(us)   MAXLAT(us)  NAME")?;
        for stage in &self.inband {
            let state = if stage.running { "run" } else { "ready" };
            let stats = &stage.stats;
            writeln!(
                f,
                "{:>3}  {:<7}  {:<6}  {:>4}  {:<10}  {:>10}  {:>13}  {:>11}  [in-band]",
                stage.cpu, "-", "inband", 0, state, stats.switches, stats.cpu_time, stats.max_latency
            )?;
        }
        for thread in &self.threads {
            let prio = alloc::format!("{}{}", thread.priority, if thread.boosted { "*" } else { "" });
            let stats = &thread.stats;
            writeln!(
                f,
                "{:>3}  {:<7}  {:<6}  {:>4}  {:<10}  {:>10}  {:>13}  {:>11}  {}",
                thread.cpu,
                thread.id,
                thread.policy.name(),
                prio,
                state_name(&thread.state),
                stats.switches,
                stats.cpu_time,
                stats.max_latency,
                thread.name
            )?;
        }
        Ok(())
    }
}
