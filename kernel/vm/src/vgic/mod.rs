//! An emulated GICv3 distributor and redistributors for the Linux guest (its `irq-gic-v3`
//! driver), over at most [`MAX_VCPUS`] vCPUs and up to [`MAX_SPIS`] SPIs.
//!
//! [`Vgic`] holds the guest-visible state of every interrupt: enabled, pending, active,
//! priority and trigger for each vCPU's private interrupts (SGIs 0-15, PPIs 16-31) and for the
//! SPIs, plus each SPI's GICD_IROUTER. The glue forwards the guest's stage-2 faults on the
//! distributor frame to [`Vgic::dist_read`] / [`Vgic::dist_write`] and on the redistributor
//! region to [`Vgic::redist_read`] / [`Vgic::redist_write`]; trapped ICC_SGI1R_EL1 writes go to
//! [`Vgic::sgi1r`]. The CPU interface itself is the hardware's virtual one (ICH_* / ICV_*):
//! this model does not emulate ICC registers.
//!
//! # Architectural choices
//!
//! - **Single security state (GICD_CTLR.DS = 1), affinity routing always on (ARE RAO/WI).**
//!   GICD_CTLR uses the DS = 1 layout: EnableGrp1 (bit 1) is the only writable bit.
//! - **Group 1 only.** Every interrupt is Group 1: GICD_IGROUPR / GICR_IGROUPR0 read as one for
//!   implemented INTIDs and ignore writes; EnableGrp0, GICD_IGRPMODR, GICR_IGRPMODR0,
//!   GICD_NSACR and GICR_NSACR are RAZ/WI.
//! - **No LPIs, no ITS, no MBIs, no NMIs, no extended INTID ranges.** GICD_TYPER says so;
//!   GICR_PROPBASER / GICR_PENDBASER, GICR_CTLR, GICR_STATUSR, GICD_STATUSR and GICD_TYPER2 are
//!   RAZ/WI, GICD_INMIR is RAZ/WI.
//! - **With ARE = 1**, the distributor's registers for INTIDs 0-31 (bank 0 of the bit arrays,
//!   IPRIORITYR0-7, ICFGR0-1), GICD_ITARGETSR, GICD_SGIR, GICD_CPENDSGIR and GICD_SPENDSGIR are
//!   RAZ/WI, as are registers for INTIDs beyond the implemented SPIs and `GICD_IROUTER<n>` for
//!   n < 32.
//! - **Priorities keep all 8 bits**; the virtual CPU interface and the replay log may coarsen
//!   them when injecting.
//! - **SGIs are edge-triggered** (GICR_ICFGR0 reads 0xaaaa_aaaa, writes ignored); PPIs and
//!   SPIs are configurable and reset to level-sensitive.
//! - **GICR_WAKER**: ProcessorSleep is read/write and ChildrenAsleep follows it at once, so
//!   Linux's wake-up handshake completes on its first poll. Redistributors reset asleep.
//! - **GICD_IROUTER** resets to vCPU 0's affinity. Interrupt_Routing_Mode = 1 (1 of N) is
//!   supported: such an SPI is offered to every vCPU by [`Vgic::pending_for`]; the first to
//!   [`Vgic::acknowledge`] it takes it. An affinity that names no vCPU delivers nowhere.
//! - **Access sizes**: 32-bit registers take word accesses only, except IPRIORITYR (and the
//!   RAZ/WI ITARGETSR and *PENDSGIR) which also take bytes; 64-bit registers (GICD_IROUTER,
//!   GICR_TYPER, GICR_PROPBASER, GICR_PENDBASER) take doublewords and words (either half).
//!   Anything else, or a misaligned access, is [`AccessError::BadSize`] /
//!   [`AccessError::Misaligned`]; the glue injects an abort. Offsets the model does not know
//!   are RAZ/WI for any aligned size and flagged [`Access::Unknown`] for logging.
//!
//! # Pending, level and edge
//!
//! An interrupt is pending when its pending latch is set, or when it is level-sensitive and
//! its input line is high ([`IrqState::pending`]). GICD_ISPENDR, an edge via
//! [`Vgic::set_pending`] or a rising [`Vgic::set_level`] on an edge interrupt, and
//! [`Vgic::sgi1r`] set the latch; GICD_ICPENDR and [`Vgic::acknowledge`] clear it; the line
//! follows [`Vgic::set_level`]. [`Vgic::acknowledge`] makes the interrupt active (active and
//! pending if a level line is still high); [`Vgic::deactivate`] ends it.
//!
//! # The replay log
//!
//! The vGIC is both the **guest-visible state** (what the guest programmed and can read
//! back) and the **replay log** of in-band interrupts that wait for the guest: one entry per
//! INTID (and vCPU, for a private one), [`IrqState::waiting`], replayed into the list
//! registers most urgent first by [`Vgic::take_most_urgent`]. The glue (the kernel's
//! `guest::virq`) joins it to the hardware, and every change it makes to the log goes
//! through [`crate::replay::ReplayAccount`], which counts it:
//!
//! - **Physical in-band IRQ** forwarded to the guest: [`Vgic::forward`] (which also hands it
//!   the physical activation, see below).
//! - **Virtual-only interrupts**: SGIs ([`Vgic::sgi1r`]), the core's posted SGIs
//!   ([`Vgic::set_pending`]), emulated devices' lines ([`Vgic::set_level`]).
//! - **Flush**: [`Vgic::take_most_urgent`] takes the most urgent entries for the free list
//!   registers (each becomes listed, not offered again) — or, in separate short steps,
//!   [`Vgic::most_urgent`] chooses one and [`Vgic::take_ready`] takes it if still
//!   deliverable; a pending list register given back is [`Vgic::requeue`]d.
//! - **LR sync**: each completion (the guest's EOI / deactivation) is [`Vgic::deactivate`]d;
//!   for a hardware-linked interrupt it is seen only when the list register is next read
//!   back (no maintenance interrupt).
//! - **Guest MMIO writes** return [`Changes`]; [`Change::entered`] and [`Change::left`] say
//!   which entries the write put into or took out of the log, and
//!   [`physical::plan`] what the physical GIC must do.
//!
//! # Hardware-linked interrupts
//!
//! A physical PPI or SPI forwarded to the guest is not masked: the hypervisor drops its
//! priority (EOImode 1) but leaves it *active*, and [`Vgic::forward`] hands that activation
//! to the interrupt's pending entry ([`IrqState::hw_pending`]). The flush that takes the
//! entry moves the activation into the list register ([`IrqState::hw_listed`]), which it
//! writes with `HW = 1` and `pINTID = vINTID`: the guest's deactivation of the virtual
//! interrupt then deactivates the physical one, and a level line still high fires again.
//! The model keeps one invariant, checked by the host tests: **every physical activation
//! it was given is owned by one of**
//!
//! - a pending, enabled entry (`hw_pending`), which will be injected with its link;
//! - a list register (`hw_listed`, with [`IrqState::listed`]), whose deactivation by the
//!   guest deactivates it;
//! - nobody, in which case the model said so: [`Change::unlinked`] after a guest write that
//!   disabled the interrupt, cleared its pending state or made it no longer pending (the
//!   hypervisor deactivates the physical interrupt, after masking a disabled line),
//!   [`Vgic::requeue`] returning true (a list register taken back for an interrupt the guest
//!   disabled meanwhile), and [`Vgic::forward`] of an interrupt the guest has disabled (the
//!   hypervisor masks and deactivates it at once).
//!
//! (A listed copy the guest has deactivated stays listed until its list register is read
//! back; meanwhile the physical interrupt can fire again, and [`Vgic::forward`] gives the
//! new activation to the pending entry: both flags are then set, the list register's being
//! stale.)
//!
//! A level interrupt whose link ends (the guest deactivated it, or the link was dropped) has
//! its line forgotten: the physical line is *resampled* — still high, it fires and is
//! forwarded again. A list register taken back while still pending ([`Vgic::requeue`])
//! gives its link back to the pending entry. While an interrupt sits linked in a list
//! register, its pending and active bits as the guest reads them are the physical
//! interrupt's ([`MmioRead::linked`]): the list register, not the model, knows when the
//! guest deactivated it.

#[cfg(test)]
mod tests;

mod mmio;
pub mod physical;
pub mod regs;
mod sgi;

use core::fmt;

pub use mmio::{Access, Change, ChangeKind, Changes, DecodedAccess, Linked, MmioRead};
pub use regs::{MAX_SPIS, NR_PRIVATE};
pub use sgi::{SgiRequest, SgiTargets};

use crate::mmio::AccessSize;
use crate::ownership::OwnershipTable;
use crate::psci::MPIDR_AFFINITY_MASK;

/// Most vCPUs a [`Vgic`] models (GICv3's Processor_Number space is larger; this crate's is
/// not).
pub const MAX_VCPUS: usize = crate::psci::MAX_VCPUS;

/// The glue's mistakes when configuring or driving a [`Vgic`] (never the guest's doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A vGIC needs at least one vCPU.
    NoVcpus,
    /// More vCPUs than [`MAX_VCPUS`] were asked for.
    TooManyVcpus(usize),
    /// Two vCPUs were given the same MPIDR affinity.
    DuplicateMpidr(u64),
    /// An SPI count that is neither a multiple of 32 up to 960 nor [`MAX_SPIS`].
    BadSpiCount(u32),
    /// A vCPU index outside the model.
    NoSuchVcpu(usize),
    /// An INTID that is neither private nor one of the implemented SPIs.
    NoSuchIntid(u32),
    /// [`Vgic::acknowledge`] of an interrupt that was not deliverable to that vCPU.
    NotDeliverable(u32),
    /// [`Vgic::forward`] of an SGI: only PPIs and SPIs have a physical interrupt to link.
    NotLinkable(u32),
    /// An INTID the guest does not own ([`Vgic::apply_ownership`]): the model ignores it.
    Concealed(u32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVcpus => write!(f, "no vCPUs"),
            Self::TooManyVcpus(n) => write!(f, "{n} vCPUs: at most {MAX_VCPUS}"),
            Self::DuplicateMpidr(mpidr) => write!(f, "MPIDR {mpidr:#x} given to two vCPUs"),
            Self::BadSpiCount(n) => write!(f, "{n} SPIs: not a multiple of 32 up to 960 or 988"),
            Self::NoSuchVcpu(index) => write!(f, "vCPU index {index} out of range"),
            Self::NoSuchIntid(intid) => write!(f, "INTID {intid} not implemented"),
            Self::NotDeliverable(intid) => {
                write!(f, "INTID {intid} acknowledged but not deliverable")
            }
            Self::NotLinkable(intid) => {
                write!(f, "INTID {intid} has no physical interrupt to link")
            }
            Self::Concealed(intid) => write!(f, "INTID {intid} is not the guest's"),
        }
    }
}

impl core::error::Error for Error {}

/// A guest access the model refuses; the glue injects a synchronous external abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The offset is beyond the distributor frame or the last vCPU's redistributor.
    OutOfRange(u64),
    /// The register does not support an access of this size.
    BadSize(u64, AccessSize),
    /// The offset is not a multiple of the access size.
    Misaligned(u64, AccessSize),
}

/// The name the brief's API uses for [`AccessError`].
pub type VgicError = AccessError;

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange(offset) => write!(f, "GIC offset {offset:#x} out of range"),
            Self::BadSize(offset, size) => {
                write!(f, "{}-byte access to GIC offset {offset:#x}", size.bytes())
            }
            Self::Misaligned(offset, size) => {
                write!(
                    f,
                    "misaligned {}-byte access at GIC offset {offset:#x}",
                    size.bytes()
                )
            }
        }
    }
}

impl core::error::Error for AccessError {}

/// The guest-visible state of one interrupt (of one vCPU, for a private interrupt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqState {
    /// Enabled (GICD_ISENABLER / GICR_ISENABLER0).
    pub enabled: bool,
    /// The pending latch: set by an edge, GICD_ISPENDR or an SGI; cleared by GICD_ICPENDR or
    /// acknowledgement.
    pub pending_latch: bool,
    /// The input line of a level-sensitive interrupt (from [`Vgic::set_level`]).
    pub line_level: bool,
    /// Active: acknowledged (in a list register or being handled) and not yet deactivated.
    pub active: bool,
    /// In a list register: taken by [`Vgic::acknowledge`] and not yet given back by
    /// [`Vgic::deactivate`] (the list register read back empty) or [`Vgic::requeue`]. Never
    /// offered again meanwhile, whatever the guest writes to its active bit: one INTID is in
    /// at most one list register.
    pub listed: bool,
    /// The pending entry owns the activation of the physical interrupt of the same INTID
    /// ([`Vgic::forward`]): its injection carries the hardware link.
    pub hw_pending: bool,
    /// The list register holding it carries the hardware link: the guest's deactivation of
    /// the virtual interrupt deactivates the physical one.
    pub hw_listed: bool,
    /// The last [`Vgic::acknowledge`] consumed the pending latch; [`Vgic::requeue`] restores it.
    pub latch_taken: bool,
    /// The priority (lower is more urgent), all 8 bits.
    pub priority: u8,
    /// Edge-triggered (ICFGR Int_config = 1); otherwise level-sensitive.
    pub edge: bool,
    /// When it last became ready (the model's arrival count then; 0: never): equal
    /// priorities are offered oldest first, so one that fires again and again cannot keep
    /// another of its priority waiting. A list register given back ([`Vgic::requeue`])
    /// keeps its entry's place.
    pub since: u64,
}

impl IrqState {
    /// The reset state: disabled, idle, priority 0, level-sensitive (edge for SGIs).
    const fn reset(edge: bool) -> Self {
        Self {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            listed: false,
            hw_pending: false,
            hw_listed: false,
            latch_taken: false,
            priority: 0,
            edge,
            since: 0,
        }
    }

    /// Pending as the guest reads it: the latch, or a level-sensitive line that is high.
    pub const fn pending(&self) -> bool {
        self.pending_latch || (!self.edge && self.line_level)
    }

    /// An entry of the replay log: pending and not in a list register, or, while a copy sits
    /// in one, pending anew — its latch set again (an edge, a set-pending write, an SGI) or a
    /// new physical activation handed to it ([`Vgic::forward`]). A level line still high
    /// behind its listed copy is that copy's assertion, not a new entry (it becomes one if
    /// still high when the copy is deactivated). Deliverable now or not.
    pub const fn waiting(&self) -> bool {
        if self.listed { self.pending_latch || self.hw_pending } else { self.pending() }
    }

    /// Enabled, pending, not active and not in a list register: a candidate for injection,
    /// routing and the distributor enable aside. [`Vgic`] keeps one bit of this per interrupt.
    const fn ready(&self) -> bool {
        self.enabled && self.pending() && !self.active && !self.listed
    }

    /// The pending entry gives up the physical activation it owns, if any (the hypervisor
    /// deactivates the physical interrupt); a level line is forgotten, to be resampled.
    /// Returns whether there was a link.
    pub(crate) fn unlink(&mut self) -> bool {
        let linked = core::mem::take(&mut self.hw_pending);
        if linked && !self.edge {
            self.line_level = false;
        }
        linked
    }
}

/// How [`Vgic::forward`] took a physical interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forwarded {
    /// Pending (an edge latched, or the line high), and the entry owns the physical
    /// interrupt's activation: the hypervisor leaves it active for the guest's deactivation.
    /// `coalesced`: it was pending already.
    Linked {
        /// The interrupt was pending already: this assertion merged into it.
        coalesced: bool,
    },
    /// The guest has the interrupt disabled: an edge is latched (pending, without a link) and
    /// the hypervisor masks the physical line and deactivates it. `coalesced` as for `Linked`.
    Latched {
        /// The interrupt was pending already.
        coalesced: bool,
    },
    /// The guest has a level-sensitive interrupt disabled: nothing is recorded; the
    /// hypervisor masks the physical line and deactivates it (the line keeps the physical
    /// interrupt pending, and is sampled again when the guest enables it).
    Refused,
}

/// What [`Vgic::teardown`] found in the model of a guest that is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Entries of the replay log ([`IrqState::waiting`]) dropped with the guest.
    pub discarded: u64,
    /// Entries still in a list register (none when the glue emptied them first).
    pub listed: u64,
    /// Physical activations given to the caller's `release`.
    pub released: u64,
}

impl core::ops::AddAssign for Teardown {
    /// Adds the counts of another part of the same teardown ([`Vgic::teardown_part`]).
    fn add_assign(&mut self, part: Self) {
        self.discarded += part.discarded;
        self.listed += part.listed;
        self.released += part.released;
    }
}

/// What the glue does with a listed copy after a guest write ([`Vgic::listed_copy_update`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedUpdate {
    /// The copy still matches what the guest programmed: keep its list register.
    Keep,
    /// Take the list register back to the log ([`Vgic::requeue`]): withdrawn, or injected
    /// again (a new priority, a cleared active state).
    Requeue,
    /// The guest cleared the active state of the copy it acknowledged: empty the list
    /// register and complete the interrupt ([`Vgic::deactivate`]); the hypervisor deactivates
    /// a linked one's physical interrupt (the list register no longer will).
    Complete,
    /// A set-pending write to an interrupt whose copy is still pending in a list register:
    /// the copy stands for both ([`Vgic::merge_into_listed`]).
    Merge,
}

/// Where an interrupt is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// To this vCPU (private interrupts, and SPIs routed to its affinity).
    Vcpu(usize),
    /// To any one vCPU (GICD_IROUTER.Interrupt_Routing_Mode = 1).
    Any,
    /// Nowhere: the SPI is routed to an affinity with no vCPU.
    Nobody,
}

/// Words of the SPI ready bitmap: one bit per SPI.
const SPI_WORDS: usize = MAX_SPIS.div_ceil(u32::BITS) as usize;

/// The emulated GICv3 distributor and redistributors of one guest. About 17 KiB; no
/// allocation.
///
/// Besides the state of each interrupt it keeps, for the list-register flush, a bitmap of
/// the interrupts that are *ready* (enabled, pending and not active): one word per vCPU for
/// its private interrupts, one bit per SPI, and a summary word saying which SPI words are
/// non-zero. Every change of enabled, pending or active updates it, so
/// [`Vgic::most_urgent`] and [`Vgic::pending_for`] visit only the set bits rather than every
/// interrupt. Routing and the distributor enable are checked when the bits are visited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vgic {
    mpidrs: [u64; MAX_VCPUS],
    vcpus: usize,
    spis: u32,
    group1_enabled: bool,
    asleep: [bool; MAX_VCPUS],
    private: [[IrqState; NR_PRIVATE]; MAX_VCPUS],
    shared: [IrqState; MAX_SPIS as usize],
    routes: [u64; MAX_SPIS as usize],
    /// Per vCPU, bit `n`: private INTID `n` is ready.
    private_ready: [u32; MAX_VCPUS],
    /// Bit `n % 32` of word `n / 32`: SPI `32 + n` is ready.
    spi_ready: [u32; SPI_WORDS],
    /// Bit `w`: `spi_ready[w]` is non-zero.
    spi_ready_words: u32,
    /// Per vCPU, bit `n`: private INTID `n` is not the guest's (RAZ/WI, never raised).
    concealed_private: [u32; MAX_VCPUS],
    /// Bit `n % 32` of word `n / 32`: SPI `32 + n` is not the guest's.
    concealed_spi: [u32; SPI_WORDS],
    /// How many times an interrupt became ready: the next [`IrqState::since`].
    arrivals: u64,
}

impl Vgic {
    /// A vGIC for `mpidrs.len()` vCPUs (vCPU `i` has the affinity `mpidrs[i]`; bits outside
    /// the affinity fields are ignored) and `spis` SPIs (INTIDs 32 to 32 + `spis` - 1), in its
    /// reset state.
    pub fn new(mpidrs: &[u64], spis: u32) -> Result<Self, Error> {
        let mut vgic = Self::unconfigured();
        vgic.configure(mpidrs, spis)?;
        Ok(vgic)
    }

    /// A vGIC of no vCPUs and no SPIs, all zero (a static's initial value, built at
    /// compile time): [`Self::configure`] it in place. (The model is about 20 KiB; building
    /// it with [`Self::new`] on a small stack and moving it into place may not fit.)
    pub const fn unconfigured() -> Self {
        Self {
            mpidrs: [0; MAX_VCPUS],
            vcpus: 0,
            spis: 0,
            group1_enabled: false,
            asleep: [false; MAX_VCPUS],
            private: [[IrqState::reset(false); NR_PRIVATE]; MAX_VCPUS],
            shared: [IrqState::reset(false); MAX_SPIS as usize],
            routes: [0; MAX_SPIS as usize],
            private_ready: [0; MAX_VCPUS],
            spi_ready: [0; SPI_WORDS],
            spi_ready_words: 0,
            concealed_private: [0; MAX_VCPUS],
            concealed_spi: [0; SPI_WORDS],
            arrivals: 0,
        }
    }

    /// Makes this vGIC the one [`Self::new`] returns for the same arguments, in place;
    /// changes nothing on error.
    pub fn configure(&mut self, mpidrs: &[u64], spis: u32) -> Result<(), Error> {
        if mpidrs.is_empty() {
            return Err(Error::NoVcpus);
        }
        if mpidrs.len() > MAX_VCPUS {
            return Err(Error::TooManyVcpus(mpidrs.len()));
        }
        if spis > MAX_SPIS || (!spis.is_multiple_of(regs::INTIDS_PER_BANK) && spis != MAX_SPIS) {
            return Err(Error::BadSpiCount(spis));
        }
        let table = crate::psci::affinity_table(mpidrs).map_err(Error::DuplicateMpidr)?;
        self.mpidrs = table;
        self.vcpus = mpidrs.len();
        self.spis = spis;
        self.concealed_private = [0; MAX_VCPUS];
        self.concealed_spi = [0; SPI_WORDS];
        self.reset();
        Ok(())
    }

    /// Back to the reset state (after a guest reset): everything disabled and idle, SPIs
    /// routed to vCPU 0, redistributors asleep. Hardware links are dropped with the rest:
    /// the hypervisor deactivates the physical interrupts it forwarded first.
    pub fn reset(&mut self) {
        self.group1_enabled = false;
        self.asleep = [true; MAX_VCPUS];
        for bank in &mut self.private {
            for (intid, irq) in bank.iter_mut().enumerate() {
                *irq = IrqState::reset((intid as u32) < regs::NR_SGIS);
            }
        }
        self.shared.fill(IrqState::reset(false));
        self.routes.fill(self.mpidrs[0]);
        // Everything is disabled and idle: nothing is ready.
        self.private_ready = [0; MAX_VCPUS];
        self.spi_ready = [0; SPI_WORDS];
        self.spi_ready_words = 0;
        self.arrivals = 0;
    }

    /// The guest is gone (a restart): counts what the log still held for it and hands every
    /// physical activation the model owned to `release` (`(intid, vcpu)`: the hypervisor
    /// deactivates the physical interrupt; `vcpu` is the bank of a private one), then
    /// [`Self::reset`]s. Entries still listed (a list register nobody took back — the glue
    /// empties them first, so normally none) are reported apart, as ended: their copy died
    /// with the guest. The ownership concealment is kept. The same as
    /// [`Self::teardown_part`] over every entry, then [`Self::teardown_finish`].
    pub fn teardown(&mut self, release: impl FnMut(u32, usize)) -> Teardown {
        let outcome = self.teardown_part(0..self.teardown_entries(), release);
        self.teardown_finish();
        outcome
    }

    /// How many entries [`Self::teardown_part`] goes through: every vCPU's private
    /// interrupts (vCPU by vCPU), then the SPIs.
    pub fn teardown_entries(&self) -> usize {
        self.vcpus * NR_PRIVATE + self.spis as usize
    }

    /// [`Self::teardown`] of entries `range` only (of [`Self::teardown_entries`]), for a
    /// caller that keeps each hold of its lock short: they are counted, their physical
    /// activations given to `release`, and they are put back in their reset state (an SPI's
    /// route too). Parts covering every entry once, then [`Self::teardown_finish`], leave the
    /// model as [`Self::reset`] does, their outcomes summing to [`Self::teardown`]'s.
    pub fn teardown_part(&mut self, range: core::ops::Range<usize>, mut release: impl FnMut(u32, usize)) -> Teardown {
        let mut outcome = Teardown::default();
        let private_end = self.vcpus * NR_PRIVATE;
        let default_route = self.mpidrs[0];
        for entry in range.start..range.end.min(self.teardown_entries()) {
            let (intid, vcpu, irq) = if entry < private_end {
                let (vcpu, intid) = (entry / NR_PRIVATE, entry % NR_PRIVATE);
                (intid as u32, vcpu, &mut self.private[vcpu][intid])
            } else {
                let index = entry - private_end;
                self.routes[index] = default_route;
                (regs::FIRST_SPI + index as u32, 0, &mut self.shared[index])
            };
            if irq.waiting() {
                outcome.discarded += 1;
            }
            if irq.listed {
                outcome.listed += 1;
            }
            if irq.hw_pending || irq.hw_listed {
                outcome.released += 1;
                release(intid, vcpu);
            }
            *irq = IrqState::reset(intid < regs::NR_SGIS);
            // No longer ready: its bit goes.
            self.refresh(intid, vcpu);
        }
        outcome
    }

    /// The end of a teardown in parts ([`Self::teardown_part`]): the distributor off, the
    /// redistributors asleep, the arrival count back to 0.
    pub fn teardown_finish(&mut self) {
        self.group1_enabled = false;
        self.asleep = [true; MAX_VCPUS];
        self.arrivals = 0;
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    /// Number of SPIs.
    pub fn spi_count(&self) -> u32 {
        self.spis
    }

    /// The MPIDR affinity of vCPU `index`.
    pub fn mpidr(&self, index: usize) -> Option<u64> {
        self.mpidrs[..self.vcpus].get(index).copied()
    }

    /// The vCPU whose affinity is exactly `affinity`.
    pub fn index_of(&self, affinity: u64) -> Option<usize> {
        self.mpidrs[..self.vcpus]
            .iter()
            .position(|&m| m == affinity)
    }

    /// Whether the guest enabled Group 1 at the distributor (GICD_CTLR.EnableGrp1).
    pub fn distributor_enabled(&self) -> bool {
        self.group1_enabled
    }

    /// Whether vCPU `vcpu`'s redistributor is awake (GICR_WAKER.ProcessorSleep = 0).
    pub fn redistributor_awake(&self, vcpu: usize) -> Option<bool> {
        self.asleep[..self.vcpus].get(vcpu).map(|asleep| !asleep)
    }

    /// The state of `intid`; `vcpu` selects the bank of a private INTID and is ignored for
    /// SPIs.
    pub fn state(&self, intid: u32, vcpu: usize) -> Result<IrqState, Error> {
        self.lookup(intid, vcpu).copied()
    }

    /// The vCPU index of a GICD_IROUTER value.
    fn route_target(&self, route: u64) -> Target {
        if route & regs::IROUTER_IRM != 0 {
            return Target::Any;
        }
        match self.index_of(route & MPIDR_AFFINITY_MASK) {
            Some(index) => Target::Vcpu(index),
            None => Target::Nobody,
        }
    }

    /// Where `intid` is delivered; `vcpu` selects the bank of a private INTID.
    pub fn target(&self, intid: u32, vcpu: usize) -> Result<Target, Error> {
        self.lookup(intid, vcpu)?;
        Ok(match spi_index(intid) {
            Some(index) => self.route_target(self.routes[index]),
            None => Target::Vcpu(vcpu),
        })
    }

    /// The GICD_IROUTER value of SPI `intid`.
    pub fn route(&self, intid: u32) -> Result<u64, Error> {
        match spi_index(intid) {
            Some(index) if intid < regs::FIRST_SPI + self.spis => Ok(self.routes[index]),
            _ => Err(Error::NoSuchIntid(intid)),
        }
    }

    fn lookup(&self, intid: u32, vcpu: usize) -> Result<&IrqState, Error> {
        if self.is_concealed(intid, vcpu) {
            return Err(Error::Concealed(intid));
        }
        if intid < regs::FIRST_SPI {
            let bank = self.private[..self.vcpus]
                .get(vcpu)
                .ok_or(Error::NoSuchVcpu(vcpu))?;
            Ok(&bank[intid as usize])
        } else if intid < regs::FIRST_SPI + self.spis {
            Ok(&self.shared[(intid - regs::FIRST_SPI) as usize])
        } else {
            Err(Error::NoSuchIntid(intid))
        }
    }

    fn lookup_mut(&mut self, intid: u32, vcpu: usize) -> Result<&mut IrqState, Error> {
        if self.is_concealed(intid, vcpu) {
            return Err(Error::Concealed(intid));
        }
        if intid < regs::FIRST_SPI {
            let bank = self.private[..self.vcpus]
                .get_mut(vcpu)
                .ok_or(Error::NoSuchVcpu(vcpu))?;
            Ok(&mut bank[intid as usize])
        } else if intid < regs::FIRST_SPI + self.spis {
            Ok(&mut self.shared[(intid - regs::FIRST_SPI) as usize])
        } else {
            Err(Error::NoSuchIntid(intid))
        }
    }

    /// Whether `intid` (of `vcpu`'s bank, if private) is hidden from the guest
    /// ([`Self::apply_ownership`]).
    pub fn is_concealed(&self, intid: u32, vcpu: usize) -> bool {
        if intid < regs::FIRST_SPI {
            self.concealed_private.get(vcpu).is_some_and(|bits| bits & (1 << intid) != 0)
        } else {
            spi_index(intid).is_some_and(|index| self.concealed_spi[index / 32] & (1 << (index % 32)) != 0)
        }
    }

    /// Hides from the guest every PPI and SPI `table` does not give it (see
    /// [`OwnershipTable::guest_visible`]): they read as zero and ignore writes in every
    /// register, and cannot be raised, forwarded or injected. What is hidden is put back in
    /// its reset state (never pending, never ready). INTIDs the table gives the guest are
    /// shown again, with their state as it was. The guest's SGIs are always its own.
    pub fn apply_ownership<const CPUS: usize>(&mut self, table: &OwnershipTable<CPUS>) {
        for vcpu in 0..self.vcpus {
            let mut concealed = 0u32;
            for intid in regs::NR_SGIS..regs::FIRST_SPI {
                if !table.guest_visible(vcpu, intid) {
                    concealed |= 1 << intid;
                    self.private[vcpu][intid as usize] = IrqState::reset(false);
                }
            }
            self.concealed_private[vcpu] = concealed;
            for intid in regs::NR_SGIS..regs::FIRST_SPI {
                self.refresh(intid, vcpu);
            }
        }
        self.concealed_spi = [0; SPI_WORDS];
        for index in 0..self.spis as usize {
            let intid = regs::FIRST_SPI + index as u32;
            if !table.guest_visible(0, intid) {
                self.concealed_spi[index / 32] |= 1 << (index % 32);
                self.shared[index] = IrqState::reset(false);
            }
            self.refresh(intid, 0);
        }
    }

    /// Whether SPI number `index` (INTID 32 + `index`, implemented) is routed to `vcpu`: to
    /// its affinity, or to any vCPU (IRM = 1).
    fn spi_routed_to(&self, index: usize, vcpu: usize) -> bool {
        match self.route_target(self.routes[index]) {
            Target::Vcpu(target) => target == vcpu,
            Target::Any => true,
            Target::Nobody => false,
        }
    }

    /// Whether `intid` may be injected into `vcpu` now: the distributor and the interrupt are
    /// enabled, it is pending and not active, and it targets `vcpu` (an IRM = 1 SPI targets
    /// every vCPU). False for unknown INTIDs and vCPUs.
    pub fn is_deliverable(&self, vcpu: usize, intid: u32) -> bool {
        let Ok(irq) = self.lookup(intid, vcpu) else {
            return false;
        };
        self.group1_enabled
            && irq.ready()
            && match spi_index(intid) {
                // `lookup` accepted it: an implemented SPI, which routing decides.
                Some(index) => vcpu < self.vcpus && self.spi_routed_to(index, vcpu),
                // A private interrupt of the bank `lookup` found: `vcpu`'s own.
                None => true,
            }
    }

    /// Brings the ready bit of `intid` (of `vcpu`'s bank, for a private INTID) up to date
    /// with its state, stamping [`IrqState::since`] when it becomes ready. Every change of an
    /// interrupt's enabled, pending (latch, line, trigger) or active state calls it;
    /// out-of-range arguments are ignored.
    #[inline]
    fn refresh(&mut self, intid: u32, vcpu: usize) {
        if intid < regs::FIRST_SPI {
            let Some(bank) = self.private[..self.vcpus].get_mut(vcpu) else {
                return;
            };
            let bit = 1u32 << intid;
            let irq = &mut bank[intid as usize];
            if irq.ready() {
                if self.private_ready[vcpu] & bit == 0 {
                    self.arrivals += 1;
                    irq.since = self.arrivals;
                }
                self.private_ready[vcpu] |= bit;
            } else {
                self.private_ready[vcpu] &= !bit;
            }
        } else if intid < regs::FIRST_SPI + self.spis {
            let index = (intid - regs::FIRST_SPI) as usize;
            let (word, bit) = (index / 32, 1u32 << (index % 32));
            let irq = &mut self.shared[index];
            if irq.ready() {
                if self.spi_ready[word] & bit == 0 {
                    self.arrivals += 1;
                    irq.since = self.arrivals;
                }
                self.spi_ready[word] |= bit;
            } else {
                self.spi_ready[word] &= !bit;
            }
            if self.spi_ready[word] != 0 {
                self.spi_ready_words |= 1 << word;
            } else {
                self.spi_ready_words &= !(1 << word);
            }
        }
    }

    /// Calls `visit(intid, state)` for every ready interrupt that may go to `vcpu` by its
    /// bank (its private ones, every ready SPI whatever its routing), in ascending INTID
    /// order. Nothing for a vCPU index outside the model.
    #[inline]
    fn for_each_ready(&self, vcpu: usize, mut visit: impl FnMut(u32, &IrqState)) {
        let (Some(bank), Some(&private)) = (self.private.get(vcpu), self.private_ready.get(vcpu))
        else {
            return;
        };
        let mut bits = private;
        while bits != 0 {
            let intid = bits.trailing_zeros();
            bits &= bits - 1;
            visit(intid, &bank[intid as usize]);
        }
        let mut words = self.spi_ready_words;
        while words != 0 {
            let word = words.trailing_zeros() as usize;
            words &= words - 1;
            let mut bits = self.spi_ready[word];
            while bits != 0 {
                let index = word * 32 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Only implemented SPIs have their bit set: always `Some`.
                if let Some(irq) = self.shared.get(index) {
                    visit(regs::FIRST_SPI + index as u32, irq);
                }
            }
        }
    }

    /// Whether the ready bitmaps agree with the interrupts' states (for tests).
    #[cfg(test)]
    fn ready_bits_consistent(&self) -> bool {
        let private = (0..MAX_VCPUS).all(|vcpu| {
            (0..NR_PRIVATE).all(|intid| {
                let ready = vcpu < self.vcpus && self.private[vcpu][intid].ready();
                (self.private_ready[vcpu] >> intid) & 1 == u32::from(ready)
            })
        });
        let shared = (0..MAX_SPIS as usize).all(|index| {
            let ready = index < self.spis as usize && self.shared[index].ready();
            (self.spi_ready[index / 32] >> (index % 32)) & 1 == u32::from(ready)
        });
        let words = (0..SPI_WORDS)
            .all(|word| (self.spi_ready_words >> word) & 1 == u32::from(self.spi_ready[word] != 0));
        private && shared && words && self.spi_ready_words >> SPI_WORDS == 0
    }

    /// Every interrupt that may be injected into `vcpu` now (see [`Self::is_deliverable`]),
    /// as `(INTID, priority)`, most urgent first: by priority value, then oldest first
    /// ([`IrqState::since`]), then by INTID. Empty for an unknown vCPU.
    pub fn pending_for(&self, vcpu: usize) -> PendingIter<'_> {
        PendingIter {
            vgic: self,
            vcpu,
            after: None,
            done: false,
        }
    }

    /// How many interrupt entries wait to be replayed ([`IrqState::waiting`]), over every
    /// vCPU's private interrupts and the SPIs — deliverable now or not (the guest
    /// may have them disabled, or its distributor off). The replay log's accounting counts
    /// them as still in the log.
    pub fn waiting(&self) -> usize {
        let private = self.private[..self.vcpus].iter().flatten();
        let shared = self.shared[..self.spis as usize].iter();
        private.chain(shared).filter(|irq| irq.waiting()).count()
    }

    /// Whether `intid` (of `vcpu`'s bank, if private) is an entry of the replay log
    /// ([`IrqState::waiting`]). False for unknown INTIDs and vCPUs.
    pub fn is_waiting(&self, intid: u32, vcpu: usize) -> bool {
        self.lookup(intid, vcpu).is_ok_and(|irq| irq.waiting())
    }

    /// How many interrupts [`Self::pending_for`] would yield for `vcpu`, in one pass over the
    /// ready bits (a routing check per ready SPI): O(ready), where counting the iterator is
    /// O(ready²).
    pub fn ready_count(&self, vcpu: usize) -> usize {
        if vcpu >= self.vcpus || !self.group1_enabled {
            return 0;
        }
        let mut count = 0;
        self.for_each_ready(vcpu, |intid, _| {
            count += usize::from(spi_index(intid).is_none_or(|index| self.spi_routed_to(index, vcpu)));
        });
        count
    }

    /// The first item of [`Self::pending_for`].
    pub fn highest_pending(&self, vcpu: usize) -> Option<(u32, u8)> {
        let mut best = [(0, 0)];
        (self.most_urgent(vcpu, &mut best) == 1).then_some(best[0])
    }

    /// Fills `out` with the first `out.len()` items of [`Self::pending_for`] (most urgent
    /// first) in a single pass over the vCPU's ready interrupts (the bitmap, not every INTID),
    /// and returns how many it wrote. The list-register flush uses it to fill all its free
    /// list registers at once.
    pub fn most_urgent(&self, vcpu: usize, out: &mut [(u32, u8)]) -> usize {
        if out.is_empty() || vcpu >= self.vcpus || !self.group1_enabled {
            return 0;
        }
        if let [only] = out {
            // The list-register refill's case: the best key kept at hand, no lookups.
            return match self.best_ready(vcpu) {
                Some(best) => {
                    *only = best;
                    1
                }
                None => 0,
            };
        }
        let mut found = 0;
        self.for_each_ready(vcpu, |intid, irq| {
            let key = (irq.priority, irq.since, intid);
            if found == out.len() && self.order_key(vcpu, out[found - 1]) <= key {
                // Not better than the worst kept one.
                return;
            }
            // Routing only for the few that would be kept.
            if let Some(index) = spi_index(intid)
                && !self.spi_routed_to(index, vcpu)
            {
                return;
            }
            // Insert in order, dropping the worst if full.
            let mut at = found.min(out.len() - 1);
            if found < out.len() {
                found += 1;
            }
            while at > 0 && self.order_key(vcpu, out[at - 1]) > key {
                out[at] = out[at - 1];
                at -= 1;
            }
            out[at] = (intid, key.0);
        });
        found
    }

    /// [`Self::most_urgent`] for one: the first item of [`Self::pending_for`], in one pass
    /// keeping the best order key found so far (no lookup per comparison).
    fn best_ready(&self, vcpu: usize) -> Option<(u32, u8)> {
        let mut best: Option<(u8, u64, u32)> = None;
        self.for_each_ready(vcpu, |intid, irq| {
            let key = (irq.priority, irq.since, intid);
            if best.is_some_and(|kept| kept <= key) {
                return;
            }
            if let Some(index) = spi_index(intid)
                && !self.spi_routed_to(index, vcpu)
            {
                return;
            }
            best = Some(key);
        });
        best.map(|(priority, _, intid)| (intid, priority))
    }

    /// The delivery order of `(intid, priority)`, an interrupt ready for `vcpu`: priority,
    /// then age ([`IrqState::since`]), then INTID.
    fn order_key(&self, vcpu: usize, (intid, priority): (u32, u8)) -> (u8, u64, u32) {
        (priority, self.lookup(intid, vcpu).map_or(0, |irq| irq.since), intid)
    }

    /// An edge of `intid` (a forwarded physical edge interrupt, or an emulated device's): sets
    /// its pending latch. `vcpu` selects the bank of a private INTID and is ignored for SPIs.
    /// Returns whether the interrupt became pending.
    pub fn set_pending(&mut self, intid: u32, vcpu: usize) -> Result<bool, Error> {
        let irq = self.lookup_mut(intid, vcpu)?;
        let was = irq.pending();
        irq.pending_latch = true;
        self.refresh(intid, vcpu);
        Ok(!was)
    }

    /// The input line of `intid` is now `level` (a forwarded physical level interrupt, or an
    /// emulated device's line). For a level-sensitive interrupt the line is its pending state;
    /// for an edge-triggered one a rising edge sets the pending latch. `vcpu` selects the bank
    /// of a private INTID. Returns whether the pending state changed.
    pub fn set_level(&mut self, intid: u32, vcpu: usize, level: bool) -> Result<bool, Error> {
        let irq = self.lookup_mut(intid, vcpu)?;
        let was = irq.pending();
        if irq.edge && level && !irq.line_level {
            irq.pending_latch = true;
        }
        irq.line_level = level;
        let changed = irq.pending() != was;
        self.refresh(intid, vcpu);
        Ok(changed)
    }

    /// A forwarded physical interrupt `intid` fired: an edge for an edge-triggered one (as
    /// [`Self::set_pending`]), its line high for a level-sensitive one (as
    /// [`Self::set_level`] with `true`). `vcpu` selects the bank of a private INTID. Returns
    /// whether it was pending already (the new assertion merges into the pending one).
    pub fn signal(&mut self, intid: u32, vcpu: usize) -> Result<bool, Error> {
        let irq = self.lookup_mut(intid, vcpu)?;
        let was = irq.pending();
        if irq.edge {
            irq.pending_latch = true;
        } else {
            irq.line_level = true;
        }
        self.refresh(intid, vcpu);
        Ok(was)
    }

    /// A physical PPI or SPI `intid` the hypervisor acknowledged for the guest, priority
    /// dropped and left active (`vcpu`: the bank of a PPI, the target of an SPI — ignored
    /// for SPIs). If the guest has it enabled, it becomes pending as [`Self::signal`] makes
    /// it and its entry owns the physical activation ([`Forwarded::Linked`]); otherwise
    /// see [`Forwarded`]. An SGI is refused with [`Error::NotLinkable`].
    pub fn forward(&mut self, intid: u32, vcpu: usize) -> Result<Forwarded, Error> {
        if intid < regs::NR_SGIS {
            return Err(Error::NotLinkable(intid));
        }
        let irq = self.lookup_mut(intid, vcpu)?;
        // Linked in a list register, the physical interrupt could not have fired again
        // unless the guest deactivated it: the line the model holds is that copy's, not a
        // pending assertion this one merges into (the read-back will forget it).
        let stale_line = irq.hw_listed && !irq.hw_pending;
        let coalesced = irq.pending_latch || (!irq.edge && irq.line_level && !stale_line);
        let forwarded = if irq.enabled {
            if irq.edge {
                irq.pending_latch = true;
            } else {
                irq.line_level = true;
            }
            irq.hw_pending = true;
            Forwarded::Linked { coalesced }
        } else if irq.edge {
            irq.pending_latch = true;
            Forwarded::Latched { coalesced }
        } else {
            Forwarded::Refused
        };
        self.refresh(intid, vcpu);
        Ok(forwarded)
    }

    /// The list-register flush took `intid` for `vcpu`: pending becomes active (the latch is
    /// cleared; a level line that is still high leaves it active and pending) and listed; a
    /// physical activation the entry owned moves to the list register
    /// ([`IrqState::hw_listed`]: inject it with the hardware link). Fails, changing
    /// nothing, unless it was deliverable to `vcpu`.
    pub fn acknowledge(&mut self, vcpu: usize, intid: u32) -> Result<(), Error> {
        self.lookup(intid, vcpu)?;
        if !self.is_deliverable(vcpu, intid) {
            return Err(Error::NotDeliverable(intid));
        }
        self.take(vcpu, intid);
        Ok(())
    }

    /// [`Self::acknowledge`] of an interrupt known to be deliverable to `vcpu`.
    fn take(&mut self, vcpu: usize, intid: u32) {
        if let Ok(irq) = self.lookup_mut(intid, vcpu) {
            irq.latch_taken = irq.pending_latch;
            irq.pending_latch = false;
            irq.active = true;
            irq.listed = true;
            irq.hw_listed = core::mem::take(&mut irq.hw_pending);
            self.refresh(intid, vcpu);
        }
    }

    /// [`Self::most_urgent`], then [`Self::acknowledge`] of each interrupt it wrote to `out`:
    /// what the list-register flush does, in one pass. Returns how many it took.
    pub fn take_most_urgent(&mut self, vcpu: usize, out: &mut [(u32, u8)]) -> usize {
        let found = self.most_urgent(vcpu, out);
        for &(intid, _) in &out[..found] {
            // Each was deliverable, and taking one leaves the others so (distinct INTIDs).
            self.take(vcpu, intid);
        }
        found
    }

    /// The guest deactivated `intid` (a completion from the list-register sync: its list
    /// register read back empty): it is neither active nor listed any more. If the list
    /// register carried the hardware link, the physical interrupt was deactivated with it:
    /// a level line is forgotten (resampled: still high, it fires and is forwarded again)
    /// unless a new forward already raised it. Deactivating an inactive interrupt does
    /// nothing. Returns whether this made the interrupt an entry of the replay log
    /// ([`IrqState::waiting`]) that was not one before (one lookup, for the list-register
    /// flush's bounded holds).
    pub fn deactivate(&mut self, vcpu: usize, intid: u32) -> Result<bool, Error> {
        let irq = self.lookup_mut(intid, vcpu)?;
        let was = irq.waiting();
        irq.active = false;
        irq.listed = false;
        if core::mem::take(&mut irq.hw_listed) && !irq.edge && !irq.hw_pending {
            irq.line_level = false;
        }
        let arrived = !was && irq.waiting();
        self.refresh(intid, vcpu);
        Ok(arrived)
    }

    /// An acknowledged interrupt went back from a list register to the replay log while still
    /// pending (the guest never took it): it is pending again, no longer active nor listed
    /// (the pending latch the acknowledgement consumed is restored; a level interrupt's line
    /// speaks for itself), and a physical activation the list register carried goes back to
    /// the pending entry — unless the guest disabled the interrupt or changed its trigger
    /// while it was listed, so that the entry is not pending and enabled: then the link is
    /// released and this returns true (the hypervisor deactivates the physical interrupt, as
    /// for [`Change::unlinked`]). Nothing happens to an interrupt that is not listed.
    pub fn requeue(&mut self, vcpu: usize, intid: u32) -> Result<bool, Error> {
        let irq = self.lookup_mut(intid, vcpu)?;
        let mut released = false;
        if irq.listed {
            let since = irq.since;
            irq.active = false;
            irq.listed = false;
            irq.pending_latch |= irq.latch_taken;
            irq.latch_taken = false;
            irq.hw_pending |= core::mem::take(&mut irq.hw_listed);
            if irq.hw_pending && !(irq.enabled && irq.pending()) {
                released = irq.unlink();
            }
            self.refresh(intid, vcpu);
            // Back in its place among its priority: not a new arrival.
            self.lookup_mut(intid, vcpu)?.since = since;
        }
        Ok(released)
    }

    /// [`Self::deactivate`] of `intid`'s listed copy, if it has one, then
    /// [`Self::acknowledge`] of `intid` for `vcpu` if it is deliverable — in one lookup, for
    /// a list-register fast path: the caller knows the listed copy's list register empty
    /// (and has a free one). Returns the priority to inject it with and whether it carries
    /// the hardware link, or `None` if it was not deliverable (after the deactivation).
    pub fn retake(&mut self, vcpu: usize, intid: u32) -> Option<(u8, bool)> {
        // Routing and the distributor enable, as `is_deliverable` checks them.
        let routed = self.routed_here(vcpu, intid);
        let irq = self.lookup_mut(intid, vcpu).ok()?;
        if irq.listed {
            irq.active = false;
            irq.listed = false;
            if core::mem::take(&mut irq.hw_listed) && !irq.edge && !irq.hw_pending {
                irq.line_level = false;
            }
            // Ready again, as after `deactivate`: stamped like any entry that becomes ready.
            self.refresh(intid, vcpu);
        }
        self.take_routed(vcpu, intid, routed)
    }

    /// The forward fast path of a hardware-linked PPI on its own vCPU (the guest's timer):
    /// [`Self::forward`] of PPI `intid` for `vcpu`, then [`Self::retake`] — the same state
    /// afterwards, stamp included — in one lookup and without touching the ready bits (the
    /// PPI is not ready before nor after), for the common case only. `copy_emptied`: the
    /// caller found the list register of `intid`'s listed copy read back empty (the guest
    /// deactivated it, with the physical interrupt); otherwise it has no copy listed.
    ///
    /// Applies when the distributor and the PPI are enabled, nothing waits in its entry (no
    /// latch, no activation handed to it), and either `copy_emptied` and the model has a
    /// hardware-linked copy listed, or not and the PPI is idle (not listed, not active, not
    /// pending). Returns the priority to inject it with (hardware-linked); `None`, changing
    /// nothing, in every other case (the caller takes the general path).
    pub fn relist(&mut self, vcpu: usize, intid: u32, copy_emptied: bool) -> Option<u8> {
        if !(regs::NR_SGIS..regs::FIRST_SPI).contains(&intid) || !self.group1_enabled {
            return None;
        }
        if self.concealed_private.get(vcpu).is_none_or(|bits| bits & (1 << intid) != 0) {
            return None;
        }
        let irq = self.private[..self.vcpus].get_mut(vcpu)?.get_mut(intid as usize)?;
        if !irq.enabled || irq.hw_pending || irq.pending_latch {
            return None;
        }
        let applies = if copy_emptied { irq.listed && irq.hw_listed } else { !irq.listed && !irq.active && !irq.pending() };
        if !applies {
            return None;
        }
        // What `forward` then `retake` leave: the edge's latch consumed by the take, the
        // level's line high (the new assertion), active and listed with the link.
        irq.latch_taken = irq.edge;
        if !irq.edge {
            irq.line_level = true;
        }
        irq.active = true;
        irq.listed = true;
        irq.hw_listed = true;
        // Ready for an instant between the two, as `refresh` stamps it.
        self.arrivals += 1;
        irq.since = self.arrivals;
        Some(irq.priority)
    }

    /// [`Self::acknowledge`] of `intid` for `vcpu` if it is deliverable, in one lookup:
    /// returns the priority to inject it with and whether it carries the hardware link, or
    /// `None` (nothing changed) if it is not deliverable. For a list-register refill that
    /// chose `intid` ([`Self::most_urgent`]) in an earlier, separate hold of its lock: the
    /// interrupt may have changed since, and is taken only if still deliverable.
    pub fn take_ready(&mut self, vcpu: usize, intid: u32) -> Option<(u8, bool)> {
        let routed = self.routed_here(vcpu, intid);
        self.take_routed(vcpu, intid, routed)
    }

    /// Whether the distributor is enabled and `intid` (an SPI) is routed to `vcpu`, or is a
    /// private one: the delivery conditions beyond the interrupt's own state.
    fn routed_here(&self, vcpu: usize, intid: u32) -> bool {
        self.group1_enabled
            && match spi_index(intid) {
                Some(index) => vcpu < self.vcpus && self.spi_routed_to(index, vcpu),
                None => true,
            }
    }

    /// [`Self::take_ready`] with `routed` ([`Self::routed_here`]) already known.
    fn take_routed(&mut self, vcpu: usize, intid: u32, routed: bool) -> Option<(u8, bool)> {
        let irq = self.lookup_mut(intid, vcpu).ok()?;
        if !(routed && irq.ready()) {
            return None;
        }
        irq.latch_taken = irq.pending_latch;
        irq.pending_latch = false;
        irq.active = true;
        irq.listed = true;
        irq.hw_listed = core::mem::take(&mut irq.hw_pending);
        let taken = (irq.priority, irq.hw_listed);
        self.refresh(intid, vcpu);
        Some(taken)
    }

    /// Whether `intid` (of `vcpu`'s bank, if private) sits in a list register
    /// ([`IrqState::listed`]). False for unknown INTIDs and vCPUs.
    pub fn is_listed(&self, intid: u32, vcpu: usize) -> bool {
        self.lookup(intid, vcpu).is_ok_and(|irq| irq.listed)
    }

    /// Whether the copy of `intid` listed for `vcpu` with `priority`, its list register still
    /// pending (not acknowledged by the guest), no longer matches what the guest programmed
    /// since it was listed: the guest disabled the interrupt, cleared its pending state (a
    /// level line still high keeps it pending), or gave it another priority. The glue then
    /// takes that list register back ([`Vgic::requeue`], which releases the physical
    /// activation of a linked one no longer pending and enabled): the copy is withdrawn, or
    /// injected again with the new priority. False for an interrupt not listed.
    pub fn listed_copy_outdated(&self, intid: u32, vcpu: usize, priority: u8) -> bool {
        self.lookup(intid, vcpu).is_ok_and(|irq| {
            let still_pending = irq.latch_taken || (!irq.edge && irq.line_level);
            irq.listed && (!irq.enabled || !still_pending || irq.priority != priority)
        })
    }

    /// What to do with the copy of `intid` listed for `vcpu` with `priority` after a guest
    /// write to the interrupt (`acknowledged`: its list register is active, the guest took
    /// it; otherwise still pending):
    ///
    /// - not acknowledged, and [`Self::listed_copy_outdated`] or its active state cleared by
    ///   the guest (ICACTIVER): [`ListedUpdate::Requeue`] (the write left the model's entry
    ///   as an unlisted one would be);
    /// - not acknowledged, pending anew (a set-pending write: the interrupt was pending
    ///   already, in the list register): [`ListedUpdate::Merge`];
    /// - acknowledged, its active state cleared by the guest: [`ListedUpdate::Complete`];
    /// - otherwise [`ListedUpdate::Keep`] (an acknowledged copy pending anew waits behind it,
    ///   as pending and active; disabled or re-prioritised, it runs to its end).
    pub fn listed_copy_update(&self, intid: u32, vcpu: usize, priority: u8, acknowledged: bool) -> ListedUpdate {
        let Ok(irq) = self.lookup(intid, vcpu) else { return ListedUpdate::Keep };
        if !irq.listed {
            ListedUpdate::Keep
        } else if acknowledged {
            if irq.active { ListedUpdate::Keep } else { ListedUpdate::Complete }
        } else if !irq.active || self.listed_copy_outdated(intid, vcpu, priority) {
            ListedUpdate::Requeue
        } else if irq.pending_latch {
            ListedUpdate::Merge
        } else {
            ListedUpdate::Keep
        }
    }

    /// [`ListedUpdate::Merge`]: the pending state set anew on `intid`, whose copy is still
    /// pending in a list register, merges into that copy (the latch is cleared). Returns
    /// whether there was one (the entry then leaves the log, coalesced).
    pub fn merge_into_listed(&mut self, vcpu: usize, intid: u32) -> bool {
        let Ok(irq) = self.lookup_mut(intid, vcpu) else { return false };
        let merged = irq.listed && core::mem::take(&mut irq.pending_latch);
        self.refresh(intid, vcpu);
        merged
    }

    /// Whether `intid` (of `vcpu`'s bank, if private) sits in a list register with the
    /// hardware link ([`IrqState::hw_listed`]). False for unknown INTIDs and vCPUs.
    pub fn is_linked(&self, intid: u32, vcpu: usize) -> bool {
        self.lookup(intid, vcpu).is_ok_and(|irq| irq.hw_listed)
    }

    /// Handles a trapped write of `value` to ICC_SGI1R_EL1 by vCPU `sender`: marks the SGI
    /// pending on every target and returns the targets. See [`SgiRequest`] for the decoding.
    pub fn sgi1r(&mut self, sender: usize, value: u64) -> Result<SgiTargets, Error> {
        let targets = self.sgi_targets(sender, value)?;
        self.raise_sgi(targets, SgiRequest::decode(value).intid);
        Ok(targets)
    }

    /// Marks SGI `intid` (0-15) pending on every vCPU of `targets` (as [`Self::sgi_targets`]
    /// found them); vCPUs outside the model and INTIDs above 15 are ignored.
    pub fn raise_sgi(&mut self, targets: SgiTargets, intid: u32) {
        if intid >= regs::NR_SGIS {
            return;
        }
        let vcpus = self.vcpus;
        for vcpu in targets.iter().filter(|&vcpu| vcpu < vcpus) {
            self.private[vcpu][intid as usize].pending_latch = true;
            self.refresh(intid, vcpu);
        }
    }

    /// The targets [`Self::sgi1r`] would mark for a write of `value` by vCPU `sender`,
    /// changing nothing.
    pub fn sgi_targets(&self, sender: usize, value: u64) -> Result<SgiTargets, Error> {
        if sender >= self.vcpus {
            return Err(Error::NoSuchVcpu(sender));
        }
        Ok(SgiRequest::decode(value).targets(&self.mpidrs[..self.vcpus], sender))
    }
}

/// The index of `intid` in the SPI arrays, if it is in the SPI range at all.
fn spi_index(intid: u32) -> Option<usize> {
    if (regs::FIRST_SPI..regs::FIRST_SPI + MAX_SPIS).contains(&intid) {
        Some((intid - regs::FIRST_SPI) as usize)
    } else {
        None
    }
}

/// The interrupts deliverable to one vCPU, most urgent first ([`Vgic::pending_for`]). Each
/// step visits the ready interrupts (the bitmap) once.
#[derive(Clone, Debug)]
pub struct PendingIter<'a> {
    vgic: &'a Vgic,
    vcpu: usize,
    after: Option<(u8, u64, u32)>,
    done: bool,
}

impl Iterator for PendingIter<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<Self::Item> {
        let vgic = self.vgic;
        if self.done || self.vcpu >= vgic.vcpus || !vgic.group1_enabled {
            return None;
        }
        let (vcpu, after) = (self.vcpu, self.after);
        let mut best: Option<(u8, u64, u32)> = None;
        vgic.for_each_ready(vcpu, |intid, irq| {
            let key = (irq.priority, irq.since, intid);
            if after.is_some_and(|after| key <= after) || best.is_some_and(|b| key >= b) {
                return;
            }
            if spi_index(intid).is_none_or(|index| vgic.spi_routed_to(index, vcpu)) {
                best = Some(key);
            }
        });
        self.after = best;
        self.done = best.is_none();
        best.map(|(priority, _, intid)| (intid, priority))
    }
}
