//! The thin AArch64 layer of the oob core: interrupt masking, IRQ-safe locks and the
//! thread context switch.

pub mod context;
pub mod irq_lock;

use aarch64_cpu::registers::{DAIF, Readable, Writeable};

/// The interrupt mask state of the executing CPU, as saved by [`mask_irqs`].
#[derive(Debug, Clone, Copy)]
#[must_use = "restore the previous interrupt state with `restore_irqs`"]
pub struct IrqState(u64);

/// Masks IRQs on this CPU and returns the previous state.
#[inline]
pub fn mask_irqs() -> IrqState {
    let previous = DAIF.get();
    DAIF.write(DAIF::I::Masked);
    #[cfg(feature = "latency-trace-masks")]
    crate::latency_trace::masked_from(previous);
    IrqState(previous)
}

/// Restores the interrupt state saved by [`mask_irqs`].
#[inline]
pub fn restore_irqs(state: IrqState) {
    #[cfg(feature = "latency-trace-masks")]
    crate::latency_trace::unmasking_to(state.0);
    DAIF.set(state.0);
}

/// Unmasks IRQs on this CPU (the in-band stage and oob threads run with IRQs on).
#[inline]
pub fn unmask_irqs() {
    #[cfg(feature = "latency-trace-masks")]
    crate::latency_trace::unmasking_to(0);
    DAIF.write(DAIF::I::Unmasked);
}

/// Runs `f` with IRQs unmasked on this CPU, then restores the caller's interrupt state (for
/// in-band work that holds no lock, such as the tail of a guest exit at EL2).
#[inline]
pub fn with_irqs_unmasked<T>(f: impl FnOnce() -> T) -> T {
    let saved = mask_irqs();
    unmask_irqs();
    let result = f();
    restore_irqs(saved);
    result
}

/// Whether IRQs are masked on this CPU.
#[inline]
pub fn irqs_masked() -> bool {
    DAIF.is_set(DAIF::I)
}
