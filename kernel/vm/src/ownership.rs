//! Interrupt ownership: the one table that says, for every physical INTID, who owns it — the
//! core, the guest (passed through), an emulated device (virtual only), or nobody.
//!
//! Everything that decides what a guest may see or change asks this table: the IRQ entry
//! (the core's handler, forward to the guest, or count and mask), the vGIC model (INTIDs the
//! guest does not own read as zero and ignore writes, [`crate::vgic::Vgic::apply_ownership`])
//! and the glue that turns the model's changes into physical GIC operations
//! ([`crate::vgic::physical`]): only [`Owner::PassThrough`] INTIDs ever reach the physical
//! GIC on the guest's behalf.
//!
//! SGIs are special: the guest's SGIs (0..16) are always virtual, per vCPU, whatever the
//! table says of the physical SGI of the same number (the core's kick SGI is
//! [`Owner::Core`]): a guest `ICC_SGI1R_EL1` write only marks the model's SGI pending.
//!
//! SGIs and PPIs (0..32) are banked per CPU; SPIs are global. Each entry is one atomic byte,
//! so a `static` table (the constructor is `const`) is shared by all CPUs without a lock.

use core::sync::atomic::{AtomicU8, Ordering};

/// Private (banked) INTIDs: SGIs and PPIs.
pub const NR_BANKED: u32 = 32;
/// The first INTID after the SPI range (1020..1024 are special INTIDs).
pub const INTID_LIMIT: u32 = 1020;
/// The number of SGIs.
pub const NR_SGIS: u32 = 16;
/// Entries for the SPIs.
const NR_SPIS: usize = (INTID_LIMIT - NR_BANKED) as usize;

/// Who owns an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Nobody: invisible to the guest (RAZ/WI); if it fires, it is counted and masked.
    Unassigned,
    /// The core (its timers, the GIC maintenance interrupt, its kick SGI, its UART, any
    /// claimed interrupt): invisible to the guest, never touched on its behalf.
    Core,
    /// The guest's, passed through: the guest's enable, disable and deactivation reach the
    /// physical GIC; the physical interrupt is forwarded hardware-linked.
    PassThrough,
    /// An emulated device's interrupt: the guest sees and configures it in the vGIC model
    /// only; no physical interrupt of that INTID is ever touched for it.
    Virtual,
}

impl Owner {
    const fn bits(self) -> u8 {
        match self {
            Self::Unassigned => 0,
            Self::Core => 1,
            Self::PassThrough => 2,
            Self::Virtual => 3,
        }
    }

    const fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Core,
            2 => Self::PassThrough,
            3 => Self::Virtual,
            _ => Self::Unassigned,
        }
    }
}

/// Why an ownership change was refused (the glue's mistake, never the guest's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// No such CPU in this table.
    NoSuchCpu(usize),
    /// Not an SGI, PPI or SPI.
    NoSuchIntid(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchCpu(cpu) => write!(f, "no CPU {cpu} in the ownership table"),
            Self::NoSuchIntid(intid) => write!(f, "INTID {intid} is not an SGI, PPI or SPI"),
        }
    }
}

impl core::error::Error for Error {}

/// The ownership of every INTID for `CPUS` CPUs; everything [`Owner::Unassigned`] at first.
#[derive(Debug)]
pub struct OwnershipTable<const CPUS: usize> {
    banked: [[AtomicU8; NR_BANKED as usize]; CPUS],
    shared: [AtomicU8; NR_SPIS],
}

impl<const CPUS: usize> Default for OwnershipTable<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> OwnershipTable<CPUS> {
    /// A table with every INTID unassigned.
    pub const fn new() -> Self {
        Self {
            banked: [const { [const { AtomicU8::new(0) }; NR_BANKED as usize] }; CPUS],
            shared: [const { AtomicU8::new(0) }; NR_SPIS],
        }
    }

    /// The entry of `intid` as `cpu` sees it (its bank for an SGI or PPI).
    fn entry(&self, cpu: usize, intid: u32) -> Result<&AtomicU8, Error> {
        if intid < NR_BANKED {
            let bank = self.banked.get(cpu).ok_or(Error::NoSuchCpu(cpu))?;
            Ok(&bank[intid as usize])
        } else {
            self.shared.get((intid - NR_BANKED) as usize).ok_or(Error::NoSuchIntid(intid))
        }
    }

    /// The owner of `intid` on `cpu` (`cpu` is ignored for SPIs); [`Owner::Unassigned`] for
    /// anything out of range.
    pub fn owner(&self, cpu: usize, intid: u32) -> Owner {
        self.entry(cpu, intid).map_or(Owner::Unassigned, |entry| Owner::from_bits(entry.load(Ordering::Acquire)))
    }

    /// Makes `owner` the owner of `intid` on `cpu` (for an SPI: everywhere).
    pub fn set(&self, cpu: usize, intid: u32, owner: Owner) -> Result<(), Error> {
        self.entry(cpu, intid)?.store(owner.bits(), Ordering::Release);
        Ok(())
    }

    /// Makes `owner` the owner of `intid` on every CPU (a PPI or SGI such as a timer).
    pub fn set_everywhere(&self, intid: u32, owner: Owner) -> Result<(), Error> {
        if intid < NR_BANKED {
            for cpu in 0..CPUS {
                self.set(cpu, intid, owner)?;
            }
            Ok(())
        } else {
            self.set(0, intid, owner)
        }
    }

    /// Makes `owner` the owner of `intid` on every CPU unless the core owns it there: how
    /// guest interrupts are assigned (the core's claims always win). Returns whether it was
    /// assigned on at least one CPU.
    pub fn assign_unless_core(&self, intid: u32, owner: Owner) -> Result<bool, Error> {
        let cpus = if intid < NR_BANKED { CPUS } else { 1 };
        let mut assigned = false;
        for cpu in 0..cpus {
            if self.owner(cpu, intid) != Owner::Core {
                self.set(cpu, intid, owner)?;
                assigned = true;
            }
        }
        Ok(assigned)
    }

    /// Whether the guest sees `intid` (of vCPU `cpu`'s bank) in its vGIC: its SGIs always
    /// (virtual only), other INTIDs when passed through or emulated.
    pub fn guest_visible(&self, cpu: usize, intid: u32) -> bool {
        intid < NR_SGIS || matches!(self.owner(cpu, intid), Owner::PassThrough | Owner::Virtual)
    }

    /// Whether the guest's configuration of `intid` (of `cpu`'s bank) may reach the physical
    /// GIC: a passed-through PPI or SPI only.
    pub fn reaches_physical(&self, cpu: usize, intid: u32) -> bool {
        intid >= NR_SGIS && self.owner(cpu, intid) == Owner::PassThrough
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_unassigned_and_out_of_range_is_unassigned() {
        let table = OwnershipTable::<2>::new();
        for intid in [0, 16, 27, 32, 1019] {
            assert_eq!(table.owner(0, intid), Owner::Unassigned);
        }
        assert_eq!(table.owner(5, 27), Owner::Unassigned);
        assert_eq!(table.owner(0, 1020), Owner::Unassigned);
        assert_eq!(table.set(0, 1020, Owner::Core), Err(Error::NoSuchIntid(1020)));
        assert_eq!(table.set(2, 27, Owner::Core), Err(Error::NoSuchCpu(2)));
    }

    #[test]
    fn private_interrupts_are_banked_and_spis_are_shared() {
        let table = OwnershipTable::<2>::new();
        table.set(1, 27, Owner::PassThrough).unwrap();
        assert_eq!(table.owner(0, 27), Owner::Unassigned);
        assert_eq!(table.owner(1, 27), Owner::PassThrough);
        table.set(1, 40, Owner::Virtual).unwrap();
        assert_eq!(table.owner(0, 40), Owner::Virtual);
        table.set_everywhere(26, Owner::Core).unwrap();
        assert!((0..2).all(|cpu| table.owner(cpu, 26) == Owner::Core));
    }

    #[test]
    fn guest_assignment_never_takes_a_core_interrupt() {
        let table = OwnershipTable::<2>::new();
        table.set(0, 26, Owner::Core).unwrap();
        table.set(0, 33, Owner::Core).unwrap();
        assert!(table.assign_unless_core(26, Owner::PassThrough).unwrap());
        assert_eq!(table.owner(0, 26), Owner::Core);
        assert_eq!(table.owner(1, 26), Owner::PassThrough);
        assert!(!table.assign_unless_core(33, Owner::PassThrough).unwrap());
        assert_eq!(table.owner(0, 33), Owner::Core);
    }

    #[test]
    fn only_passed_through_ppis_and_spis_reach_the_physical_gic() {
        let table = OwnershipTable::<1>::new();
        let owners = [Owner::Unassigned, Owner::Core, Owner::PassThrough, Owner::Virtual];
        for (i, owner) in owners.into_iter().enumerate() {
            for intid in [3 + i as u32, 20 + i as u32, 40 + i as u32] {
                table.set(0, intid, owner).unwrap();
                let sgi = intid < NR_SGIS;
                assert_eq!(table.reaches_physical(0, intid), !sgi && owner == Owner::PassThrough, "{intid} {owner:?}");
                let visible = sgi || matches!(owner, Owner::PassThrough | Owner::Virtual);
                assert_eq!(table.guest_visible(0, intid), visible, "{intid} {owner:?}");
            }
        }
    }
}
