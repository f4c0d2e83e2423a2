//! The crate's error type: misuse by the hypervisor glue or a bad configuration, never a guest's
//! doing (guest-controlled input is answered with PSCI error codes or [`crate::Trap`] variants).

use core::fmt;

use crate::psci::MAX_VCPUS;

/// What went wrong when the glue called into this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A PSCI model needs at least one vCPU.
    NoVcpus,
    /// More vCPUs than [`MAX_VCPUS`] were asked for.
    TooManyVcpus(usize),
    /// Two vCPUs were given the same MPIDR affinity.
    DuplicateMpidr(u64),
    /// A vCPU index outside the model.
    NoSuchVcpu(usize),
    /// A vCPU was marked running while the model says it is not being started.
    NotStarting(usize),
    /// A load result was applied to an MMIO store.
    NotALoad,
    /// A store value was fetched for an MMIO load.
    NotAStore,
    /// More guest RAM ranges than a PSCI model keeps.
    TooManyRamRanges(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVcpus => write!(f, "no vCPUs"),
            Self::TooManyVcpus(n) => write!(f, "{n} vCPUs: at most {MAX_VCPUS}"),
            Self::DuplicateMpidr(mpidr) => write!(f, "MPIDR {mpidr:#x} given to two vCPUs"),
            Self::NoSuchVcpu(index) => write!(f, "vCPU index {index} out of range"),
            Self::NotStarting(index) => write!(f, "vCPU {index} is not being started"),
            Self::NotALoad => write!(f, "load result applied to an MMIO store"),
            Self::NotAStore => write!(f, "store value fetched for an MMIO load"),
            Self::TooManyRamRanges(n) => write!(f, "{n} guest RAM ranges: at most {}", crate::psci::MAX_RAM_RANGES),
        }
    }
}

impl core::error::Error for Error {}
