//! Bringing every CPU of the device tree online and waiting for each to report in.

use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::registers::{MPIDR_EL1, Readable};
use boot::secondary::{self, MPIDR_AFFINITY_MASK, StartMethod};
use platform::{CpuInfo, EnableMethod, PsciConduit};

use crate::console;

/// Bit K set when logical CPU K has reported in.
static ONLINE: AtomicU32 = AtomicU32::new(0);

/// How long the boot CPU waits for a secondary to report in.
const START_TIMEOUT_NS: u64 = 2_000_000_000;

/// This CPU's MPIDR affinity fields.
pub fn current_mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// Marks the calling CPU online and says so on the console.
pub fn report_online() {
    let cpu = boot::cpu_index();
    // Say so first: the boot CPU may end the run as soon as the bit is set.
    log::info!("cpu {cpu} online (MPIDR {:#x}, EL{})", current_mpidr(), current_el());
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
}

/// The exception level the CPU runs at.
pub fn current_el() -> u64 {
    use aarch64_cpu::registers::CurrentEL;
    CurrentEL.read(CurrentEL::EL)
}

/// Orders the CPUs so the boot CPU is logical CPU 0 and the rest keep tree order.
pub fn logical_order(cpus: &[CpuInfo], boot_mpidr: u64) -> alloc::vec::Vec<CpuInfo> {
    let mut ordered: alloc::vec::Vec<CpuInfo> = cpus.iter().filter(|c| c.mpidr == boot_mpidr).copied().collect();
    if ordered.is_empty() {
        ordered.push(CpuInfo { mpidr: boot_mpidr, enable_method: EnableMethod::Unknown });
    }
    ordered.extend(cpus.iter().filter(|c| c.mpidr != boot_mpidr).copied());
    ordered.truncate(boot::MAX_CPUS);
    ordered
}

/// Starts every CPU in `cpus` (logical order, boot CPU first) and waits for each one.
/// Returns how many are online, the boot CPU included.
pub fn start_secondaries(cpus: &[CpuInfo], psci: Option<PsciConduit>) -> usize {
    for (index, cpu) in cpus.iter().enumerate().skip(1) {
        let method = match (cpu.enable_method, psci) {
            (EnableMethod::Psci, Some(PsciConduit::Smc)) => StartMethod::PsciSmc,
            (EnableMethod::Psci, Some(PsciConduit::Hvc)) => {
                log::error!("cpu {index}: PSCI conduit is HVC, which traps to EL2 itself; not started");
                continue;
            }
            (EnableMethod::Psci, None) => {
                log::error!("cpu {index}: enable-method is psci but the tree has no PSCI node; not started");
                continue;
            }
            (EnableMethod::SpinTable { release_address }, _) => StartMethod::SpinTable(release_address),
            (EnableMethod::Unknown, _) => {
                log::error!("cpu {index}: no usable enable-method; not started");
                continue;
            }
        };
        if let Err(e) = secondary::start(cpu.mpidr, method) {
            log::error!("cpu {index} (MPIDR {:#x}): {e}", cpu.mpidr);
            continue;
        }
        let started = console::uptime_ns();
        while ONLINE.load(Ordering::Acquire) & (1 << index) == 0 {
            if console::uptime_ns().saturating_sub(started) > START_TIMEOUT_NS {
                log::error!("cpu {index} (MPIDR {:#x}) did not come online", cpu.mpidr);
                break;
            }
            core::hint::spin_loop();
        }
    }
    ONLINE.load(Ordering::Acquire).count_ones() as usize
}
