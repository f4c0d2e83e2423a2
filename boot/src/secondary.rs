//! Starting the secondary CPUs: PSCI `CPU_ON` through the firmware's conduit, or the
//! spin-table protocol the Raspberry Pi firmware uses.

use core::cell::UnsafeCell;
use core::fmt;

use crate::MAX_CPUS;
use crate::mmu::{MmuRegisters, clean_to_poc};

/// What the entry code reads (MMU and caches off) to bring up a secondary CPU.
/// Layout shared with `entry.S`.
#[repr(C)]
struct SecondaryBoot {
    mair: u64,
    tcr: u64,
    ttbr0: u64,
    sctlr: u64,
    count: u64,
    mpidr: [u64; MAX_CPUS],
}

/// The table, written only by the boot CPU before it starts any other CPU.
#[repr(transparent)]
struct SecondaryBootCell(UnsafeCell<SecondaryBoot>);

// SAFETY: written by the boot CPU before any reader runs; readers only read.
unsafe impl Sync for SecondaryBootCell {}

#[unsafe(no_mangle)]
static SECONDARY_BOOT: SecondaryBootCell = SecondaryBootCell(UnsafeCell::new(SecondaryBoot {
    mair: 0,
    tcr: 0,
    ttbr0: 0,
    sctlr: 0,
    count: 0,
    mpidr: [u64::MAX; MAX_CPUS],
}));

unsafe extern "C" {
    /// Secondary entry point in `entry.S`.
    fn secondary_entry();
}

/// Affinity fields of MPIDR (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// How to start a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMethod {
    /// PSCI `CPU_ON` with an SMC.
    PsciSmc,
    /// Write the entry point to this physical address and send an event.
    SpinTable(u64),
}

/// Why a CPU did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The firmware refused `CPU_ON`.
    Psci(smccc::psci::Error),
    /// The logical index is beyond the boot table.
    TooManyCpus,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Psci(e) => write!(f, "PSCI CPU_ON failed: {e:?}"),
            Self::TooManyCpus => write!(f, "more than {MAX_CPUS} CPUs"),
        }
    }
}

/// Publishes the MMU settings and the MPIDR of every CPU by logical index, for the entry
/// code of the secondaries. Call on the boot CPU before [`start`].
pub fn publish(mmu: &MmuRegisters, mpidrs: &[u64]) {
    let table = SECONDARY_BOOT.0.get();
    // SAFETY: only the boot CPU runs, and no secondary has been started yet.
    unsafe {
        (*table).mair = mmu.mair;
        (*table).tcr = mmu.tcr;
        (*table).ttbr0 = mmu.ttbr0;
        (*table).sctlr = mmu.sctlr;
        for (slot, &mpidr) in (*table).mpidr.iter_mut().zip(mpidrs) {
            *slot = mpidr & MPIDR_AFFINITY_MASK;
        }
        (*table).count = mpidrs.len().min(MAX_CPUS) as u64;
    }
    let start = table as usize;
    clean_to_poc(start..start + core::mem::size_of::<SecondaryBoot>());
}

/// Starts the CPU with affinity `mpidr`; it enters `companion_secondary_main` with its
/// logical index.
pub fn start(mpidr: u64, method: StartMethod) -> Result<(), StartError> {
    let entry = secondary_entry as *const () as usize as u64;
    match method {
        StartMethod::PsciSmc => smccc::psci::cpu_on::<smccc::Smc>(mpidr & MPIDR_AFFINITY_MASK, entry, 0)
            .map_err(StartError::Psci),
        StartMethod::SpinTable(release) => {
            let slot = release as usize as *mut u64;
            // SAFETY: the device tree names this RAM word as the CPU's release address; it
            // is identity mapped, and the parked CPU only reads it.
            unsafe { slot.write_volatile(entry) };
            clean_to_poc(release as usize..release as usize + 8);
            aarch64_cpu::asm::sev();
            Ok(())
        }
    }
}
