//! The core's exception handler: IRQs go to the interrupt entry; every other exception is
//! unexpected. Guest traps come with the in-band stage.

use boot::exceptions::{Dump, TrapFrame, VectorKind};

use crate::power;

/// Installs [`handle`] as the EL2 exception handler.
pub fn install() {
    boot::exceptions::set_handler(handle);
}

/// Routes physical IRQs, FIQs and SErrors to EL2 (HCR_EL2.IMO/FMO/AMO), so they reach the
/// core even while it runs at EL2 and whatever a lower EL masks; EL1 runs AArch64.
/// Call on every CPU.
pub fn route_interrupts_to_el2() {
    use aarch64_cpu::registers::{HCR_EL2, Writeable};
    HCR_EL2.write(HCR_EL2::RW::EL1IsAarch64 + HCR_EL2::IMO::EnableVirtualIRQ + HCR_EL2::FMO::EnableVirtualFIQ + HCR_EL2::AMO::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The IRQ entry the EL2 vectors call directly (`el2_irq_common` in `entry.S`, no handler
/// lookup on the path every oob wake-up takes): handles the interrupt, then, on the way
/// back into a guest, drains the console and refreshes the guest's list registers. An IRQ
/// from the guest also tells the irqs-off hunter where the guest was (nothing unless
/// `companion.irqsoff` runs it).
#[unsafe(no_mangle)]
extern "C" fn companion_irq_entry(frame: &mut TrapFrame, kind: u64) {
    let from_guest = !VectorKind(kind).from_current_el();
    crate::latency_trace::irq_entry(from_guest, frame.elr, frame.spsr);
    if from_guest {
        crate::guest::irqsoff::note_guest_irq(frame.elr, frame.spsr);
    }
    crate::irq::handle();
    if from_guest {
        crate::guest::irqsoff::guest_irq_handled();
        before_guest_entry();
        crate::latency_trace::guest_return(true, frame.elr);
    }
}

/// The IRQ entry of the EL2 vectors for an interrupt taken at EL2 itself
/// (`el2_irq_current_el` in `entry.S`): an oob thread or the core's own in-band loop was
/// interrupted, so there is no guest to look after and nothing to route — the oob wake-up's
/// path, kept to the interrupt handling alone.
#[unsafe(no_mangle)]
extern "C" fn companion_irq_current_el() {
    crate::latency_trace::irq_entry_at_el2();
    crate::irq::handle();
}

/// On the way back into the guest after an interrupt, in its in-band context with every
/// interrupt handled (the interrupt depth is back to 0, nothing is locked): the channel's
/// service, the list registers' refresh (what the interrupt brought is injected without
/// waiting for the console) and the console drain, by [`way_back`].
#[inline]
fn before_guest_entry() {
    crate::guest::restart::leave_if_requested();
    way_back(|| {
        crate::guest::channel::poll();
        crate::guest::virq::flush();
        drain_console_for_guest();
    });
}

/// The way back into the guest once an exit's own work is done (IRQs masked by the exception
/// on entry, interrupt depth 0, no lock held): runs `tail` with IRQs unmasked, so an oob
/// interrupt raised meanwhile is taken at once instead of after the whole tail (the tail's
/// own masked sections are short and timed each), then masks them to the return: a last
/// list-register refresh for what the interrupts taken on the way (a maintenance interrupt,
/// a forward) left the guest — a few instructions when nothing did — and the restart check
/// (a restart's kick taken while IRQs were unmasked was consumed at EL2 and would not make
/// this CPU exit its vCPU again).
#[inline]
fn way_back(tail: impl FnOnce()) {
    crate::arch::unmask_irqs();
    tail();
    let _ = crate::arch::mask_irqs();
    crate::guest::virq::flush();
    crate::guest::restart::leave_if_requested();
}

/// Drains the console on the way back into the guest, giving way to the guest: no drain
/// while an interrupt waits for it, and the drain stops before the next byte once one does
/// (the rest drains at a later exit).
#[inline]
fn drain_console_for_guest() {
    crate::console::drain_giving_way(crate::guest::virq::pending_here);
}

fn handle(frame: &mut TrapFrame, kind: VectorKind) {
    if kind.is_irq() {
        companion_irq_entry(frame, kind.0);
        return;
    }
    if kind.is_synchronous() && !kind.from_current_el() {
        let start = crate::hwtimer::counter_unordered();
        let kind = crate::guest::handle_trap(frame);
        crate::guest::restart::leave_if_requested();
        // The exit's time with IRQs masked; what follows (the list-register refill, a console
        // exit's line and interrupt output, the channel's service, the console drain) runs
        // with IRQs unmasked between short masked sections, each timed on its own.
        crate::guest::exits::record(kind, crate::hwtimer::counter_unordered().wrapping_sub(start));
        way_back(|| {
            crate::guest::virq::flush();
            let console_changed = crate::guest::console::finish_exit();
            let gic_changed = crate::guest::virq::finish_exit(frame);
            if crate::guest::channel::poll() || console_changed || gic_changed {
                crate::guest::virq::flush();
            }
            drain_console_for_guest();
            crate::guest::trap_log::emit_due();
        });
        crate::latency_trace::guest_return(false, frame.elr);
        return;
    }
    if kind.is_serror() && !kind.from_current_el() {
        // The guest's (a device it touched): a virtual SError for it, never the core's death.
        crate::guest::serror_from_guest();
        return;
    }
    if kind.is_fiq() {
        // The core uses no FIQ (group 0) interrupt: end and mask whatever signalled one.
        crate::guest::trap_log::count(crate::guest::trap_log::Kind::Fiq);
        crate::gic::quiesce_fiq();
        return;
    }
    crate::console::write_fmt_emergency(format_args!("{}", Dump { frame, kind }));
    power::exit(power::EXIT_EXCEPTION);
}
