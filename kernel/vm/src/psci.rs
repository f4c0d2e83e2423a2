//! PSCI 1.1 (Arm DEN 0022) emulated for the guest's vCPUs, as a state machine over at most
//! [`MAX_VCPUS`] vCPUs.
//!
//! The glue decodes an HVC or SMC ([`crate::Trap::Hvc`], [`crate::Trap::Smc`]), takes the call
//! from the caller's registers with [`PsciCall::from_registers`], calls [`Psci::handle`], writes
//! [`Outcome::x0`] back to the caller's x0 and carries out [`Outcome::action`]. A vCPU started
//! with [`Action::StartVcpu`] is `OnPending` until the glue reports it entered the guest with
//! [`Psci::vcpu_running`] (or until it makes a PSCI call itself).
//!
//! Supported: PSCI_VERSION (1.1), PSCI_FEATURES, CPU_ON, CPU_OFF, CPU_SUSPEND, AFFINITY_INFO
//! (level 0), SYSTEM_OFF, SYSTEM_RESET and MIGRATE_INFO_TYPE (2: no Trusted OS to migrate), in
//! their SMC32 and SMC64 forms where both exist. Everything else, including MIGRATE,
//! SYSTEM_RESET2, SYSTEM_SUSPEND and the SMCCC_VERSION/ARCH_* calls, answers NOT_SUPPORTED.
//!
//! **CPU_SUSPEND is always a standby.** Every requested power state, power-down ones included,
//! is treated as a WFI: the call returns SUCCESS once the vCPU has waited for an interrupt
//! ([`Action::WaitForInterrupt`]), with its context intact, and the entry point is ignored.
//! PSCI lets an implementation enter a shallower state than requested, and a caller must cope
//! with a power-down request that returns; Linux does (its suspend finisher reports the state as
//! not entered), and KVM makes the same choice. PSCI_FEATURES(CPU_SUSPEND) therefore reports the
//! original power_state format and platform-coordinated mode only (0).

use smccc::psci::{self as ids, AffinityState, error as code};

use crate::error::Error;
use crate::gpr::RegisterFile;

/// Most vCPUs a [`Psci`] model handles.
pub const MAX_VCPUS: usize = 8;

/// The PSCI version reported: 1.1 (major in bits `[31:16]`, minor in bits `[15:0]`).
pub const PSCI_VERSION_1_1: u64 = 0x0001_0001;

/// MIGRATE_INFO_TYPE's answer: a Trusted OS is not present or does not need migration.
pub const MIGRATE_INFO_TYPE_NOT_PRESENT: u64 = 2;

/// PSCI_FEATURES' answer for a supported function without feature flags; for CPU_SUSPEND it
/// means the original power_state format and platform-coordinated mode.
pub const FEATURES_SUPPORTED: u64 = 0;

/// The affinity fields of an MPIDR: Aff3 `[39:32]`, Aff2 `[23:16]`, Aff1 `[15:8]`, Aff0 `[7:0]`.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// The CPU_ON / AFFINITY_INFO target bits of an SMC32 call: Aff2..Aff0 (there is no Aff3).
const MPIDR_AFFINITY_MASK_32: u64 = 0x00ff_ffff;

/// AArch64 instructions are 4 bytes aligned, so an entry point must be too.
const ENTRY_POINT_ALIGNMENT: u64 = 4;

/// AFFINITY_INFO's only supported lowest affinity level: individual CPUs.
const AFFINITY_LEVEL_CPU: u64 = 0;

/// Every function this model implements, as PSCI_FEATURES reports them.
pub const SUPPORTED_FUNCTIONS: [u32; 12] = [
    ids::PSCI_VERSION,
    ids::PSCI_FEATURES,
    ids::PSCI_CPU_SUSPEND_32,
    ids::PSCI_CPU_SUSPEND_64,
    ids::PSCI_CPU_OFF,
    ids::PSCI_CPU_ON_32,
    ids::PSCI_CPU_ON_64,
    ids::PSCI_AFFINITY_INFO_32,
    ids::PSCI_AFFINITY_INFO_64,
    ids::PSCI_MIGRATE_INFO_TYPE,
    ids::PSCI_SYSTEM_OFF,
    ids::PSCI_SYSTEM_RESET,
];

/// The power state of a vCPU, as AFFINITY_INFO reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Not running and not being started.
    Off,
    /// Started by CPU_ON, not yet running guest code.
    OnPending,
    /// Running (or waiting for an interrupt, which PSCI counts as on).
    On,
}

impl PowerState {
    /// The AFFINITY_INFO return value: 0 ON, 1 OFF, 2 ON_PENDING.
    pub const fn affinity_info(self) -> u64 {
        let state = match self {
            Self::On => AffinityState::On,
            Self::Off => AffinityState::Off,
            Self::OnPending => AffinityState::OnPending,
        };
        state as u64
    }
}

/// A PSCI call as the guest made it: function ID in w0, arguments in x1..x3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PsciCall {
    /// The SMCCC function identifier (w0; the upper half of x0 is ignored).
    pub function_id: u32,
    /// First argument (x1).
    pub arg1: u64,
    /// Second argument (x2).
    pub arg2: u64,
    /// Third argument (x3).
    pub arg3: u64,
}

impl PsciCall {
    /// The call in the caller's saved registers.
    pub fn from_registers(regs: &RegisterFile) -> Self {
        let [x0, x1, x2, x3, ..] = *regs;
        Self {
            function_id: x0 as u32,
            arg1: x1,
            arg2: x2,
            arg3: x3,
        }
    }
}

/// What the glue must do after a call, besides returning [`Outcome::x0`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Nothing: resume the caller.
    None,
    /// Start vCPU `index` at `entry` in the guest's reset state (EL1h, MMU and caches off,
    /// interrupts masked) with `context_id` in x0, then call [`Psci::vcpu_running`]. Resume the
    /// caller too.
    StartVcpu {
        /// The vCPU to start.
        index: usize,
        /// Its entry point (an IPA).
        entry: u64,
        /// The value for its x0.
        context_id: u64,
    },
    /// Stop the calling vCPU (CPU_OFF); it does not return from the call.
    StopThisVcpu,
    /// Let the calling vCPU wait for an interrupt, then resume it (CPU_SUSPEND).
    WaitForInterrupt,
    /// Power the guest off; no vCPU runs again.
    SystemOff,
    /// Reset the guest: stop every vCPU and boot the guest again on the boot vCPU.
    SystemReset,
}

/// The answer to a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// The caller's x0 on return: a result, or a PSCI error code sign-extended to 64 bits.
    /// Meaningless (0) for calls that do not return: CPU_OFF, SYSTEM_OFF, SYSTEM_RESET.
    pub x0: u64,
    /// What the glue must do.
    pub action: Action,
}

impl Outcome {
    const fn value(x0: u64) -> Self {
        Self {
            x0,
            action: Action::None,
        }
    }

    const fn error(psci_error: i32) -> Self {
        Self::value(error_code(psci_error))
    }

    const fn success(action: Action) -> Self {
        Self {
            x0: error_code(code::SUCCESS),
            action,
        }
    }
}

/// A PSCI status code as the guest's x0 holds it (sign-extended).
const fn error_code(status: i32) -> u64 {
    status as i64 as u64
}

/// The affinity fields of `mpidrs` (at most [`MAX_VCPUS`]), as a table indexed by vCPU;
/// `Err(affinity)` names the first affinity given twice. Shared by the PSCI and vGIC models,
/// which both map MPIDRs to vCPU indices.
pub(crate) fn affinity_table(mpidrs: &[u64]) -> Result<[u64; MAX_VCPUS], u64> {
    let mut table = [0; MAX_VCPUS];
    for (i, &mpidr) in mpidrs.iter().take(MAX_VCPUS).enumerate() {
        let affinity = mpidr & MPIDR_AFFINITY_MASK;
        if table[..i].contains(&affinity) {
            return Err(affinity);
        }
        table[i] = affinity;
    }
    Ok(table)
}

/// Whether `function_id` is one this model implements.
pub fn is_supported(function_id: u32) -> bool {
    SUPPORTED_FUNCTIONS.contains(&function_id)
}

/// Most guest RAM ranges a [`Psci`] checks entry points against.
pub const MAX_RAM_RANGES: usize = 16;

/// The PSCI state of a guest: each vCPU's MPIDR and power state, and the guest's RAM (where
/// a `CPU_ON` entry point may be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Psci {
    mpidrs: [u64; MAX_VCPUS],
    states: [PowerState; MAX_VCPUS],
    count: usize,
    boot_vcpu: usize,
    /// Guest RAM as `(base, size)` IPA ranges; the first `ram_count` are used.
    ram: [(u64, u64); MAX_RAM_RANGES],
    ram_count: usize,
}

impl Psci {
    /// A model of `mpidrs.len()` vCPUs, vCPU `i` having the MPIDR affinity `mpidrs[i]` (bits
    /// outside [`MPIDR_AFFINITY_MASK`], such as MPIDR_EL1's RES1 bit 31, are ignored). Only
    /// `boot_vcpu` is on.
    pub fn new(mpidrs: &[u64], boot_vcpu: usize) -> Result<Self, Error> {
        if mpidrs.is_empty() {
            return Err(Error::NoVcpus);
        }
        if mpidrs.len() > MAX_VCPUS {
            return Err(Error::TooManyVcpus(mpidrs.len()));
        }
        if boot_vcpu >= mpidrs.len() {
            return Err(Error::NoSuchVcpu(boot_vcpu));
        }
        let table = affinity_table(mpidrs).map_err(Error::DuplicateMpidr)?;
        let mut psci = Self {
            mpidrs: table,
            states: [PowerState::Off; MAX_VCPUS],
            count: mpidrs.len(),
            boot_vcpu,
            ram: [(0, 0); MAX_RAM_RANGES],
            ram_count: 0,
        };
        psci.reset();
        Ok(psci)
    }

    /// Gives the model the guest's RAM, `(base, size)` IPA ranges: a `CPU_ON` entry point
    /// must lie in one of them (a whole instruction), or the call fails with
    /// INVALID_ADDRESS. Until this is called the model has no RAM and refuses every entry
    /// point: a vCPU can never be started into memory nobody said was the guest's.
    pub fn set_guest_ram(&mut self, ranges: &[(u64, u64)]) -> Result<(), Error> {
        if ranges.len() > MAX_RAM_RANGES {
            return Err(Error::TooManyRamRanges(ranges.len()));
        }
        self.ram[..ranges.len()].copy_from_slice(ranges);
        self.ram_count = ranges.len();
        Ok(())
    }

    /// Whether the instruction at `entry` lies wholly in the guest's RAM.
    pub fn in_guest_ram(&self, entry: u64) -> bool {
        let Some(last) = entry.checked_add(ENTRY_POINT_ALIGNMENT - 1) else { return false };
        self.ram[..self.ram_count]
            .iter()
            .any(|&(base, size)| entry >= base && last - base < size)
    }

    /// Back to the boot state: the boot vCPU on, every other off (after a SYSTEM_RESET, which
    /// [`Self::handle`] does by itself).
    pub fn reset(&mut self) {
        self.states = [PowerState::Off; MAX_VCPUS];
        if let Some(state) = self.states.get_mut(self.boot_vcpu) {
            *state = PowerState::On;
        }
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.count
    }

    /// The power state of vCPU `index`.
    pub fn state(&self, index: usize) -> Option<PowerState> {
        self.states[..self.count].get(index).copied()
    }

    /// The MPIDR affinity of vCPU `index`.
    pub fn mpidr(&self, index: usize) -> Option<u64> {
        self.mpidrs[..self.count].get(index).copied()
    }

    /// The vCPU whose affinity is exactly `affinity` (no bits outside the affinity fields).
    pub fn index_of(&self, affinity: u64) -> Option<usize> {
        self.mpidrs[..self.count]
            .iter()
            .position(|&mpidr| mpidr == affinity)
    }

    /// Records that vCPU `index`, started by [`Action::StartVcpu`], now runs guest code:
    /// ON_PENDING becomes ON. Fails if it was not being started.
    pub fn vcpu_running(&mut self, index: usize) -> Result<(), Error> {
        let state = self.states[..self.count]
            .get_mut(index)
            .ok_or(Error::NoSuchVcpu(index))?;
        match state {
            PowerState::OnPending => {
                *state = PowerState::On;
                Ok(())
            }
            _ => Err(Error::NotStarting(index)),
        }
    }

    /// Handles `call` made by vCPU `caller`. Guest mistakes are answered with PSCI error codes;
    /// the only error is a `caller` outside the model. A caller is evidently running, so its
    /// state becomes ON first (completing a pending CPU_ON the glue did not report).
    pub fn handle(&mut self, caller: usize, call: PsciCall) -> Result<Outcome, Error> {
        let caller_state = self.states[..self.count]
            .get_mut(caller)
            .ok_or(Error::NoSuchVcpu(caller))?;
        *caller_state = PowerState::On;
        let narrow = |arg: u64| u64::from(arg as u32);
        let outcome = match call.function_id {
            ids::PSCI_VERSION => Outcome::value(PSCI_VERSION_1_1),
            ids::PSCI_FEATURES => Outcome::value(features(call.arg1 as u32)),
            ids::PSCI_CPU_SUSPEND_32 | ids::PSCI_CPU_SUSPEND_64 => {
                Outcome::success(Action::WaitForInterrupt)
            }
            ids::PSCI_CPU_OFF => {
                if let Some(state) = self.states.get_mut(caller) {
                    *state = PowerState::Off;
                }
                Outcome::success(Action::StopThisVcpu)
            }
            ids::PSCI_CPU_ON_64 => {
                self.cpu_on(call.arg1, MPIDR_AFFINITY_MASK, call.arg2, call.arg3)
            }
            ids::PSCI_CPU_ON_32 => self.cpu_on(
                narrow(call.arg1),
                MPIDR_AFFINITY_MASK_32,
                narrow(call.arg2),
                narrow(call.arg3),
            ),
            ids::PSCI_AFFINITY_INFO_64 => {
                self.affinity_info(call.arg1, MPIDR_AFFINITY_MASK, call.arg2)
            }
            ids::PSCI_AFFINITY_INFO_32 => {
                self.affinity_info(narrow(call.arg1), MPIDR_AFFINITY_MASK_32, narrow(call.arg2))
            }
            ids::PSCI_MIGRATE_INFO_TYPE => Outcome::value(MIGRATE_INFO_TYPE_NOT_PRESENT),
            ids::PSCI_SYSTEM_OFF => Outcome::success(Action::SystemOff),
            ids::PSCI_SYSTEM_RESET => {
                self.reset();
                Outcome::success(Action::SystemReset)
            }
            _ => Outcome::error(code::NOT_SUPPORTED),
        };
        Ok(outcome)
    }

    /// The vCPU targeted by a CPU_ON / AFFINITY_INFO `target`, whose bits outside `valid` must
    /// be zero.
    fn target(&self, target: u64, valid: u64) -> Option<usize> {
        if target & !valid != 0 {
            return None;
        }
        self.index_of(target)
    }

    fn cpu_on(&mut self, target: u64, valid: u64, entry: u64, context_id: u64) -> Outcome {
        let Some(index) = self.target(target, valid) else {
            return Outcome::error(code::INVALID_PARAMETERS);
        };
        if !entry.is_multiple_of(ENTRY_POINT_ALIGNMENT) || !self.in_guest_ram(entry) {
            return Outcome::error(code::INVALID_ADDRESS);
        }
        let Some(state) = self.states[..self.count].get_mut(index) else {
            return Outcome::error(code::INVALID_PARAMETERS);
        };
        match state {
            PowerState::On => Outcome::error(code::ALREADY_ON),
            PowerState::OnPending => Outcome::error(code::ON_PENDING),
            PowerState::Off => {
                *state = PowerState::OnPending;
                Outcome::success(Action::StartVcpu {
                    index,
                    entry,
                    context_id,
                })
            }
        }
    }

    fn affinity_info(&self, target: u64, valid: u64, lowest_level: u64) -> Outcome {
        if lowest_level != AFFINITY_LEVEL_CPU {
            return Outcome::error(code::INVALID_PARAMETERS);
        }
        match self
            .target(target, valid)
            .and_then(|index| self.state(index))
        {
            Some(state) => Outcome::value(state.affinity_info()),
            None => Outcome::error(code::INVALID_PARAMETERS),
        }
    }
}

/// PSCI_FEATURES' answer for `function_id`.
fn features(function_id: u32) -> u64 {
    if is_supported(function_id) {
        FEATURES_SUPPORTED
    } else {
        error_code(code::NOT_SUPPORTED)
    }
}

#[cfg(test)]
mod tests;
