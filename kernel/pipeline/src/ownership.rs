//! Interrupt ownership: for every INTID, which stage handles it, its trigger type, and
//! counters. SGIs and PPIs (0..32) are banked per CPU; SPIs (32..1020) are global.
//!
//! Every field is an atomic, so one table (e.g. a `static`, the constructor is `const`) is
//! shared by all CPUs without a lock: configuration uses release/acquire, counters are relaxed.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::intid::{Error, IntId, IntKind, NR_BANKED, NR_SPIS, Trigger};

/// Which stage an interrupt belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nobody claimed it; if it fires, the glue should count it and disable it.
    Unassigned,
    /// Handled at once by the core (its timer, oob devices, its IPIs), whatever the guest's mask.
    Oob,
    /// Belongs to Linux: acknowledged, priority-dropped (EOImode=1), logged and replayed.
    InBand,
}

/// Owner and trigger type of one interrupt, read with a single atomic load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineConfig {
    /// The owning stage.
    pub owner: Owner,
    /// Edge or level.
    pub trigger: Trigger,
}

/// Counters of one interrupt (per CPU for SGIs and PPIs, global for SPIs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounters {
    /// Times the physical interrupt was acknowledged.
    pub raised: u64,
    /// Times its owner finished with it (oob handler returned, or the guest deactivated it).
    pub handled: u64,
}

const OWNER_MASK: u8 = 0b011;
/// Set: the trigger is the *other* one than the INTID class's reset default (so that the
/// all-zero table is the reset state: SGIs edge, PPIs and SPIs level).
const TRIGGER_FLIPPED: u8 = 0b100;

#[derive(Debug)]
struct Line {
    config: AtomicU8,
    raised: AtomicU64,
    handled: AtomicU64,
}

impl Line {
    const fn reset() -> Self {
        Self {
            config: AtomicU8::new(0),
            raised: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        }
    }
}

const fn default_trigger(intid: IntId) -> Trigger {
    match intid.kind() {
        IntKind::Sgi => Trigger::Edge,
        IntKind::Ppi | IntKind::Spi => Trigger::Level,
    }
}

const fn decode(intid: IntId, bits: u8) -> LineConfig {
    let owner = match bits & OWNER_MASK {
        1 => Owner::Oob,
        2 => Owner::InBand,
        _ => Owner::Unassigned,
    };
    let default = default_trigger(intid);
    let trigger = if bits & TRIGGER_FLIPPED == 0 {
        default
    } else {
        match default {
            Trigger::Edge => Trigger::Level,
            Trigger::Level => Trigger::Edge,
        }
    };
    LineConfig { owner, trigger }
}

const fn owner_bits(owner: Owner) -> u8 {
    match owner {
        Owner::Unassigned => 0,
        Owner::Oob => 1,
        Owner::InBand => 2,
    }
}

/// The ownership table for `CPUS` CPUs. Reset state: everything [`Owner::Unassigned`], SGIs
/// edge-triggered, PPIs and SPIs level-triggered, counters zero. About 24 bytes per line:
/// 24 KiB for the SPIs plus 768 bytes per CPU.
#[derive(Debug)]
pub struct OwnershipTable<const CPUS: usize> {
    banked: [[Line; NR_BANKED]; CPUS],
    shared: [Line; NR_SPIS],
}

impl<const CPUS: usize> Default for OwnershipTable<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> OwnershipTable<CPUS> {
    /// A table in the reset state.
    pub const fn new() -> Self {
        Self {
            banked: [const { [const { Line::reset() }; NR_BANKED] }; CPUS],
            shared: [const { Line::reset() }; NR_SPIS],
        }
    }

    /// The line `intid` as seen by `cpu`: the CPU's banked copy for SGIs/PPIs, the global one
    /// for SPIs. `cpu` is validated in both cases.
    fn line(&self, cpu: usize, intid: IntId) -> Result<&Line, Error> {
        let Some(banked) = self.banked.get(cpu) else {
            return Err(Error::InvalidCpu(cpu));
        };
        let i = intid.index();
        let line = if intid.is_banked() {
            banked.get(i)
        } else {
            self.shared.get(i - NR_BANKED)
        };
        line.ok_or(Error::InvalidIntId(intid.raw()))
    }

    /// Sets the owner of `intid` for `cpu` (for an SPI, for all CPUs).
    pub fn set_owner(&self, cpu: usize, intid: IntId, owner: Owner) -> Result<(), Error> {
        let line = self.line(cpu, intid)?;
        let bits = owner_bits(owner);
        // Only this field changes; a concurrent trigger change is preserved.
        let _ = line
            .config
            .fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                Some((c & !OWNER_MASK) | bits)
            });
        Ok(())
    }

    /// Sets the owner of `intid` on every CPU (for a PPI such as the timer, or an SGI).
    pub fn set_owner_all_cpus(&self, intid: IntId, owner: Owner) -> Result<(), Error> {
        for cpu in 0..CPUS {
            self.set_owner(cpu, intid, owner)?;
        }
        Ok(())
    }

    /// The owner of `intid` as seen by `cpu`.
    pub fn owner(&self, cpu: usize, intid: IntId) -> Result<Owner, Error> {
        Ok(self.config(cpu, intid)?.owner)
    }

    /// Sets the trigger type of `intid` for `cpu` (for an SPI, for all CPUs). SGIs are always
    /// edge-triggered: `Level` is refused for them.
    pub fn set_trigger(&self, cpu: usize, intid: IntId, trigger: Trigger) -> Result<(), Error> {
        if intid.kind() == IntKind::Sgi && trigger == Trigger::Level {
            return Err(Error::LevelSgi(intid));
        }
        let line = self.line(cpu, intid)?;
        let flip = if trigger == default_trigger(intid) {
            0
        } else {
            TRIGGER_FLIPPED
        };
        let _ = line
            .config
            .fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                Some((c & !TRIGGER_FLIPPED) | flip)
            });
        Ok(())
    }

    /// The trigger type of `intid` as seen by `cpu`.
    pub fn trigger(&self, cpu: usize, intid: IntId) -> Result<Trigger, Error> {
        Ok(self.config(cpu, intid)?.trigger)
    }

    /// Owner and trigger type, in one load.
    pub fn config(&self, cpu: usize, intid: IntId) -> Result<LineConfig, Error> {
        let line = self.line(cpu, intid)?;
        Ok(decode(intid, line.config.load(Ordering::Acquire)))
    }

    /// Hot path, on every physical acknowledge: counts the occurrence and returns where it goes.
    pub fn note_raised(&self, cpu: usize, intid: IntId) -> Result<LineConfig, Error> {
        let line = self.line(cpu, intid)?;
        line.raised.fetch_add(1, Ordering::Relaxed);
        Ok(decode(intid, line.config.load(Ordering::Acquire)))
    }

    /// Counts one completed handling (oob handler returned, or the guest deactivated it).
    pub fn note_handled(&self, cpu: usize, intid: IntId) -> Result<(), Error> {
        self.line(cpu, intid)?
            .handled
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The counters of `intid` as seen by `cpu`.
    pub fn counters(&self, cpu: usize, intid: IntId) -> Result<LineCounters, Error> {
        let line = self.line(cpu, intid)?;
        Ok(LineCounters {
            raised: line.raised.load(Ordering::Relaxed),
            handled: line.handled.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: u32) -> IntId {
        IntId::new(raw).unwrap()
    }

    #[test]
    fn reset_state() {
        let t = Box::new(OwnershipTable::<2>::new());
        assert_eq!(
            t.config(0, id(1)),
            Ok(LineConfig {
                owner: Owner::Unassigned,
                trigger: Trigger::Edge
            })
        );
        assert_eq!(
            t.config(1, id(27)),
            Ok(LineConfig {
                owner: Owner::Unassigned,
                trigger: Trigger::Level
            })
        );
        assert_eq!(
            t.config(0, id(1019)),
            Ok(LineConfig {
                owner: Owner::Unassigned,
                trigger: Trigger::Level
            })
        );
    }

    #[test]
    fn banked_and_shared() {
        let t = Box::new(OwnershipTable::<4>::new());
        // PPI 27 (virtual timer) is Linux's on CPU 1 only; PPI 26 (hyp timer) is oob everywhere.
        t.set_owner(1, id(27), Owner::InBand).unwrap();
        t.set_owner_all_cpus(id(26), Owner::Oob).unwrap();
        assert_eq!(t.owner(0, id(27)), Ok(Owner::Unassigned));
        assert_eq!(t.owner(1, id(27)), Ok(Owner::InBand));
        for cpu in 0..4 {
            assert_eq!(t.owner(cpu, id(26)), Ok(Owner::Oob));
        }
        // An SPI is global: set through CPU 2, seen from CPU 0.
        t.set_owner(2, id(40), Owner::InBand).unwrap();
        t.set_trigger(2, id(40), Trigger::Edge).unwrap();
        assert_eq!(
            t.config(0, id(40)),
            Ok(LineConfig {
                owner: Owner::InBand,
                trigger: Trigger::Edge
            })
        );
        // Changing the owner keeps the trigger and vice versa.
        t.set_owner(0, id(40), Owner::Oob).unwrap();
        assert_eq!(t.trigger(3, id(40)), Ok(Trigger::Edge));
        t.set_trigger(0, id(40), Trigger::Level).unwrap();
        assert_eq!(t.owner(3, id(40)), Ok(Owner::Oob));
    }

    #[test]
    fn counters_per_cpu_where_banked() {
        let t = Box::new(OwnershipTable::<2>::new());
        t.set_owner_all_cpus(id(27), Owner::InBand).unwrap();
        assert_eq!(t.note_raised(0, id(27)).unwrap().owner, Owner::InBand);
        t.note_raised(0, id(27)).unwrap();
        t.note_raised(1, id(27)).unwrap();
        t.note_handled(0, id(27)).unwrap();
        t.note_raised(0, id(100)).unwrap();
        t.note_raised(1, id(100)).unwrap();
        assert_eq!(
            t.counters(0, id(27)),
            Ok(LineCounters {
                raised: 2,
                handled: 1
            })
        );
        assert_eq!(
            t.counters(1, id(27)),
            Ok(LineCounters {
                raised: 1,
                handled: 0
            })
        );
        assert_eq!(
            t.counters(0, id(100)),
            Ok(LineCounters {
                raised: 2,
                handled: 0
            })
        );
    }

    #[test]
    fn bad_input_refused() {
        let t = Box::new(OwnershipTable::<2>::new());
        assert_eq!(
            t.set_owner(2, id(40), Owner::Oob),
            Err(Error::InvalidCpu(2))
        );
        assert_eq!(
            t.owner(usize::MAX, id(3)),
            Err(Error::InvalidCpu(usize::MAX))
        );
        assert_eq!(t.note_raised(5, id(3)), Err(Error::InvalidCpu(5)));
        assert_eq!(
            t.set_trigger(0, id(3), Trigger::Level),
            Err(Error::LevelSgi(id(3)))
        );
        assert_eq!(t.set_trigger(0, id(3), Trigger::Edge), Ok(()));
        assert_eq!(
            IntId::new(1020).and_then(|i| t.owner(0, i)),
            Err(Error::InvalidIntId(1020))
        );
        assert_eq!(
            IntId::new(1023).and_then(|i| t.set_owner(0, i, Owner::Oob)),
            Err(Error::InvalidIntId(1023))
        );
    }

    #[test]
    fn usable_as_static() {
        static TABLE: OwnershipTable<8> = OwnershipTable::new();
        TABLE.set_owner(7, id(30), Owner::Oob).unwrap();
        assert_eq!(TABLE.owner(7, id(30)), Ok(Owner::Oob));
    }
}
