//! Secondary vCPUs: vCPU *i* runs on physical CPU *i*, pinned. A secondary CPU waits in its
//! in-band idle loop until the guest starts its vCPU with PSCI `CPU_ON`; it then prepares its
//! own EL2 state for the guest and enters it. `CPU_OFF` parks the vCPU in its trap until the
//! next `CPU_ON`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTHCTL_EL2, CNTVOFF_EL2, MIDR_EL1, MPIDR_EL1, Readable, VMPIDR_EL2, Writeable};
use boot::exceptions::TrapFrame;

use super::{stage2, virq};
use crate::gic;

/// Per CPU: a start request is waiting.
static START_REQUESTED: [AtomicBool; boot::MAX_CPUS] = [const { AtomicBool::new(false) }; boot::MAX_CPUS];
/// Per CPU: the requested entry point and context id.
static START_ENTRY: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
static START_CONTEXT: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
/// Per CPU: MPIDR, to kick it.
static MPIDR: [AtomicU64; boot::MAX_CPUS] = [const { AtomicU64::new(0) }; boot::MAX_CPUS];
/// Whether a guest is set up (secondaries may enter it).
static GUEST_READY: AtomicBool = AtomicBool::new(false);

/// Records the CPUs' affinities and allows secondaries to enter the guest.
pub fn publish(mpidrs: &[u64]) {
    for (cpu, &mpidr) in mpidrs.iter().enumerate().take(boot::MAX_CPUS) {
        MPIDR[cpu].store(mpidr, Ordering::Relaxed);
    }
    GUEST_READY.store(true, Ordering::Release);
}

/// A restart began: no secondary may enter a vCPU until [`publish`] again, and the dead
/// guest's start requests are forgotten.
pub fn forbid_starts() {
    GUEST_READY.store(false, Ordering::Release);
    for request in &START_REQUESTED {
        request.store(false, Ordering::Release);
    }
}

/// Asks CPU `index` to start its vCPU at `entry` with `context_id` in x0 (PSCI CPU_ON).
pub fn request_start(index: usize, entry: u64, context_id: u64) {
    if index >= boot::MAX_CPUS {
        return;
    }
    START_ENTRY[index].store(entry, Ordering::Relaxed);
    START_CONTEXT[index].store(context_id, Ordering::Relaxed);
    START_REQUESTED[index].store(true, Ordering::Release);
    // Any interrupt wakes the target's WFI; the oob kick is one every CPU accepts.
    gic::send_sgi(crate::sched::KICK_SGI, MPIDR[index].load(Ordering::Relaxed), index);
}

fn take_start(cpu: usize) -> Option<(u64, u64)> {
    START_REQUESTED[cpu]
        .swap(false, Ordering::Acquire)
        .then(|| (START_ENTRY[cpu].load(Ordering::Relaxed), START_CONTEXT[cpu].load(Ordering::Relaxed)))
}

/// The in-band idle loop of a secondary CPU: drains the console, waits for interrupts (oob
/// work preempts both) and enters the guest's vCPU once it is started.
pub fn idle(cpu: usize) -> ! {
    loop {
        crate::arch::unmask_irqs();
        crate::console::drain();
        aarch64_cpu::asm::wfi();
        if GUEST_READY.load(Ordering::Acquire)
            && let Some((entry, context)) = take_start(cpu)
        {
            let _ = crate::arch::mask_irqs();
            prepare_this_cpu(cpu);
            super::vcpu_running(cpu);
            log::info!("guest: vCPU {cpu} starts at {entry:#x}");
            // SAFETY: stage 2 is active on this CPU and maps the guest's memory; the entry is
            // the guest's own choice inside it (a bad one faults in the guest, not here).
            unsafe { super::enter_vcpu(entry, [context, 0, 0, 0]) }
        }
    }
}

/// The guest turned this vCPU off: wait (IRQs masked, WFI) for the next CPU_ON, then
/// resume the guest there.
pub fn stop_this_vcpu(frame: &mut TrapFrame) {
    let cpu = boot::cpu_index();
    // Nobody handles this CPU's list registers while it is off: empty them (what is still
    // pending goes back to the vGIC for whichever vCPU it targets; nothing stays active).
    virq::take_back();
    loop {
        aarch64_cpu::asm::wfi();
        // A restart: this vCPU leaves the dead guest for good (never returns).
        super::restart::leave_if_requested();
        if let Some((entry, context)) = take_start(cpu) {
            super::vcpu_running(cpu);
            super::reset_el1_state();
            frame.elr = entry;
            frame.spsr = super::EL1H_MASKED;
            frame.x = [0; 31];
            frame.x[0] = context;
            return;
        }
        // Let pending interrupts (oob work, the kick) be handled, drain the console (the
        // hypercall holds no lock), then wait again.
        crate::arch::unmask_irqs();
        crate::console::drain();
        let _ = crate::arch::mask_irqs();
    }
}

/// Gives this CPU the EL2 state a vCPU needs: stage 2, timers, identity, virtual GIC.
pub fn prepare_this_cpu(cpu: usize) {
    stage2::activate_on_this_cpu();
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET);
    CNTVOFF_EL2.set(0);
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // SAFETY: VPIDR_EL2 only sets what the guest reads as MIDR_EL1: the real CPU's.
    unsafe { core::arch::asm!("msr vpidr_el2, {0}", in(reg) MIDR_EL1.get(), options(nostack)) };
    virq::init_this_cpu(cpu);
}
