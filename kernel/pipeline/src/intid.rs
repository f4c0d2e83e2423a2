//! Interrupt identifiers, trigger types, the description of a virtual IRQ, and the crate's error.

use core::fmt;

/// Number of INTIDs this crate handles: 0..1020 (SGIs, PPIs, SPIs). 1020..1023 are the GIC's
/// special INTIDs and are refused; GICv3 extended PPI/SPI ranges and LPIs are out of scope.
pub const NR_INTIDS: usize = 1020;
/// Number of Software Generated Interrupts (INTIDs 0..16), banked per CPU.
pub const NR_SGIS: usize = 16;
/// Number of banked INTIDs (SGIs and PPIs, INTIDs 0..32), one copy per CPU.
pub const NR_BANKED: usize = 32;
/// Number of Shared Peripheral Interrupts this crate handles (INTIDs 32..1020).
pub const NR_SPIS: usize = NR_INTIDS - NR_BANKED;

/// A validated GIC interrupt identifier in `0..NR_INTIDS`.
///
/// Range checks happen once, in [`IntId::new`]; every other API takes an `IntId` and so can
/// neither fail nor panic on an out-of-range number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntId(u16);

/// The class of an INTID, which decides whether its state is banked per CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    /// Software Generated Interrupt (0..16): banked per CPU, always edge-triggered.
    Sgi,
    /// Private Peripheral Interrupt (16..32): banked per CPU.
    Ppi,
    /// Shared Peripheral Interrupt (32..1020): one global copy.
    Spi,
}

impl IntId {
    /// Validates `raw`; INTIDs `>= NR_INTIDS` (including the special 1020..1023) are refused.
    pub const fn new(raw: u32) -> Result<Self, Error> {
        if raw < NR_INTIDS as u32 {
            Ok(Self(raw as u16))
        } else {
            Err(Error::InvalidIntId(raw))
        }
    }

    /// An index known to be in range (from a bitmap of valid INTIDs), clamped so that even a
    /// corrupted bitmap cannot produce an out-of-range INTID.
    pub(crate) const fn clamped(index: usize) -> Self {
        if index < NR_INTIDS {
            Self(index as u16)
        } else {
            Self(NR_INTIDS as u16 - 1)
        }
    }

    /// The INTID as the GIC numbers it.
    pub const fn raw(self) -> u32 {
        self.0 as u32
    }

    /// The INTID as an array index (always `< NR_INTIDS`).
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// SGI, PPI or SPI.
    pub const fn kind(self) -> IntKind {
        if (self.0 as usize) < NR_SGIS {
            IntKind::Sgi
        } else if (self.0 as usize) < NR_BANKED {
            IntKind::Ppi
        } else {
            IntKind::Spi
        }
    }

    /// True for SGIs and PPIs, whose configuration and state exist once per CPU.
    pub const fn is_banked(self) -> bool {
        (self.0 as usize) < NR_BANKED
    }
}

impl TryFrom<u32> for IntId {
    type Error = Error;

    fn try_from(raw: u32) -> Result<Self, Error> {
        Self::new(raw)
    }
}

impl fmt::Display for IntId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Each edge is an event; an edge while one is already pending is coalesced.
    Edge,
    /// Pending exactly while the line is asserted; resampled before injection.
    Level,
}

/// A virtual interrupt as the in-band stage will see it: virtual INTID, priority, trigger type
/// and, optionally, the physical INTID it is linked to (the list register's HW bit: the guest's
/// deactivation also deactivates the physical interrupt).
///
/// The constructor enforces the architectural rules: SGIs are edge-triggered and never
/// hardware-linked, and a physical INTID cannot be an SGI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirqDesc {
    intid: IntId,
    priority: u8,
    trigger: Trigger,
    hw: Option<IntId>,
}

impl VirqDesc {
    /// A placeholder used to fill unused storage; never reported to callers.
    pub(crate) const NONE: Self = Self {
        intid: IntId(0),
        priority: 0xff,
        trigger: Trigger::Edge,
        hw: None,
    };

    /// A virtual interrupt without a physical link. A level-triggered SGI is refused.
    pub const fn new(intid: IntId, priority: u8, trigger: Trigger) -> Result<Self, Error> {
        if matches!(intid.kind(), IntKind::Sgi) && matches!(trigger, Trigger::Level) {
            return Err(Error::LevelSgi(intid));
        }
        Ok(Self {
            intid,
            priority,
            trigger,
            hw: None,
        })
    }

    /// Links this virtual interrupt to physical INTID `pintid` (list register HW bit). Refused
    /// when either side is an SGI.
    pub const fn with_hw(self, pintid: IntId) -> Result<Self, Error> {
        if matches!(self.intid.kind(), IntKind::Sgi) {
            return Err(Error::HwLinkedSgi(self.intid));
        }
        if matches!(pintid.kind(), IntKind::Sgi) {
            return Err(Error::HwLinkedSgi(pintid));
        }
        Ok(Self {
            hw: Some(pintid),
            ..self
        })
    }

    /// The same interrupt with another priority.
    pub const fn with_priority(self, priority: u8) -> Self {
        Self { priority, ..self }
    }

    /// Virtual INTID (the list register's vINTID field).
    pub const fn intid(&self) -> IntId {
        self.intid
    }

    /// GIC priority: a lower value is a higher priority.
    pub const fn priority(&self) -> u8 {
        self.priority
    }

    /// Edge or level.
    pub const fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// The linked physical INTID (list register pINTID with HW=1), if any.
    pub const fn hw(&self) -> Option<IntId> {
        self.hw
    }
}

/// Everything this crate can refuse. No function of this crate panics on bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The number is not an INTID in `0..NR_INTIDS`.
    InvalidIntId(u32),
    /// The CPU index is not below the table's CPU count.
    InvalidCpu(usize),
    /// SGIs are always edge-triggered.
    LevelSgi(IntId),
    /// SGIs cannot be hardware-linked, on either the virtual or the physical side.
    HwLinkedSgi(IntId),
    /// The list register count is outside `2..=MAX_LRS` (the maintenance policy needs two).
    InvalidLrCount(usize),
    /// `sync_from_hardware` got a different number of states than there are list registers.
    LrStateCount {
        /// Number of list registers in the model.
        expected: usize,
        /// Number of states passed in.
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidIntId(raw) => write!(f, "INTID {raw} out of range 0..{NR_INTIDS}"),
            Self::InvalidCpu(cpu) => write!(f, "CPU index {cpu} out of range"),
            Self::LevelSgi(id) => write!(f, "SGI {id} cannot be level-triggered"),
            Self::HwLinkedSgi(id) => write!(f, "SGI {id} cannot be hardware-linked"),
            Self::InvalidLrCount(n) => write!(f, "{n} list registers: need 2..=16"),
            Self::LrStateCount { expected, got } => {
                write!(
                    f,
                    "{got} list register states for {expected} list registers"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_intids_are_refused() {
        for raw in [1020, 1021, 1022, 1023, 1024, 4096, 8192, u32::MAX] {
            assert_eq!(IntId::new(raw), Err(Error::InvalidIntId(raw)));
            assert_eq!(IntId::try_from(raw), Err(Error::InvalidIntId(raw)));
        }
        assert_eq!(IntId::new(0).map(IntId::raw), Ok(0));
        assert_eq!(IntId::new(1019).map(IntId::raw), Ok(1019));
    }

    #[test]
    fn kinds() {
        let k = |raw| IntId::new(raw).unwrap().kind();
        assert_eq!(k(0), IntKind::Sgi);
        assert_eq!(k(15), IntKind::Sgi);
        assert_eq!(k(16), IntKind::Ppi);
        assert_eq!(k(31), IntKind::Ppi);
        assert_eq!(k(32), IntKind::Spi);
        assert_eq!(k(1019), IntKind::Spi);
    }

    #[test]
    fn sgi_rules() {
        let sgi = IntId::new(3).unwrap();
        let spi = IntId::new(40).unwrap();
        assert_eq!(
            VirqDesc::new(sgi, 0xa0, Trigger::Level),
            Err(Error::LevelSgi(sgi))
        );
        let edge_sgi = VirqDesc::new(sgi, 0xa0, Trigger::Edge).unwrap();
        assert_eq!(edge_sgi.with_hw(spi), Err(Error::HwLinkedSgi(sgi)));
        let d = VirqDesc::new(spi, 0xa0, Trigger::Level).unwrap();
        assert_eq!(d.with_hw(sgi), Err(Error::HwLinkedSgi(sgi)));
        assert_eq!(d.with_hw(spi).unwrap().hw(), Some(spi));
    }
}
