//! Configuration of the TP and quota classes of each CPU (see [`crate::sched::tp`] and
//! [`crate::sched::quota`] for their semantics).

use super::OobCore;
use crate::error::Error;
use crate::sched::quota::QuotaGroupId;
use crate::sched::tp::TpWindow;
use crate::time::{Duration, Instant};

impl OobCore {
    /// Installs the TP schedule of `cpu`, stopped. Allocates.
    pub fn tp_install(&mut self, cpu: usize, windows: &[TpWindow]) -> Result<(), Error> {
        let cpu = self.cpu_index(cpu)?;
        self.cpus[cpu].rq.tp.install(windows)?;
        self.tp_stop(cpu)
    }

    /// Starts the TP schedule of `cpu`: its first window begins at `now`.
    pub fn tp_start(&mut self, cpu: usize, now: Instant) -> Result<(), Error> {
        let cpu = self.cpu_index(cpu)?;
        let state = &mut self.cpus[cpu];
        let end = state.rq.tp.start(now)?;
        state.arm(state.tp_timer, end, None);
        self.touched.insert(cpu);
        self.retimed.insert(cpu);
        Ok(())
    }

    /// Stops the TP schedule of `cpu`: no TP thread runs there until it is started again.
    pub fn tp_stop(&mut self, cpu: usize) -> Result<(), Error> {
        let cpu = self.cpu_index(cpu)?;
        let state = &mut self.cpus[cpu];
        state.rq.tp.stop();
        state.disarm(state.tp_timer);
        self.touched.insert(cpu);
        self.retimed.insert(cpu);
        Ok(())
    }

    /// Sets the quota period of `cpu` and starts a period at `now` (all budgets refilled; the
    /// next refills at `now + k * period`).
    pub fn quota_set_period(&mut self, cpu: usize, period: Duration, now: Instant) -> Result<(), Error> {
        let cpu = self.cpu_index(cpu)?;
        self.charge(cpu, now);
        let state = &mut self.cpus[cpu];
        state.rq.quota.set_period(period)?;
        state.arm(state.quota_refill_timer, now + period, Some(period));
        self.retimed.insert(cpu);
        self.quota_refill(cpu, now);
        Ok(())
    }

    /// Creates a quota group on `cpu` with `budget` per period (at most the period).
    pub fn quota_create_group(&mut self, cpu: usize, budget: Duration) -> Result<QuotaGroupId, Error> {
        let cpu = self.cpu_index(cpu)?;
        let key = self.cpus[cpu].rq.quota.create_group(budget)?;
        Ok(QuotaGroupId { cpu: cpu as u8, key })
    }

    /// Changes a group's budget; what is left in the current period is capped by it.
    pub fn quota_set_budget(&mut self, group: QuotaGroupId, budget: Duration, now: Instant) -> Result<(), Error> {
        let cpu = self.quota_cpu(group)?;
        self.charge(cpu, now);
        self.cpus[cpu].rq.quota.set_budget(group.key, budget)?;
        self.arm_budget_timers(cpu, now);
        Ok(())
    }

    /// Deletes a group that no thread uses.
    pub fn quota_remove_group(&mut self, group: QuotaGroupId) -> Result<(), Error> {
        let cpu = self.quota_cpu(group)?;
        self.cpus[cpu].rq.quota.remove_group(group.key)
    }

    /// Budget left to a group in the current period (as of the last accounting).
    pub fn quota_budget_left(&self, group: QuotaGroupId) -> Result<Duration, Error> {
        let cpu = self.quota_cpu(group)?;
        Ok(self.cpus[cpu].rq.quota.left(group.key.index))
    }

    fn quota_cpu(&self, group: QuotaGroupId) -> Result<usize, Error> {
        match self.cpus.get(group.cpu()) {
            Some(state) if state.rq.quota.contains(group.key) => Ok(group.cpu()),
            _ => Err(Error::StaleQuotaGroup),
        }
    }
}
