//! A spin lock that masks IRQs while held, for data shared between threads, interrupt
//! handlers and CPUs (the scheduler state, the console, the heap).
//!
//! Masking is what makes such a lock safe on one CPU: a context holding it cannot be
//! preempted by an interrupt whose handler (or the thread it wakes) wants the same lock.
//! The underlying lock is a ticket lock, so CPUs get it in arrival order and none starves.

use core::ops::{Deref, DerefMut};

use spin::mutex::{TicketMutex, TicketMutexGuard};
use spin::relax::RelaxStrategy;

use super::{IrqState, mask_irqs, restore_irqs};

/// How a CPU waits for its turn: the `YIELD` hint. Real cores treat it as a hint for SMT
/// siblings; QEMU's single-threaded TCG (used with `-icount`) switches to the next vCPU, so a
/// waiter lets the holder run instead of spinning through its whole time slice — which
/// would advance the shared virtual clock by up to 100 ms and show up as bogus latency.
pub struct YieldRelax;

impl RelaxStrategy for YieldRelax {
    #[inline]
    fn relax() {
        cpu_relax();
    }
}

/// One step of a busy wait for another CPU (see [`YieldRelax`]).
#[inline]
pub fn cpu_relax() {
    // SAFETY: `yield` is a hint with no architectural effect on state.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// A ticket spin lock held with IRQs masked.
pub struct IrqSpinLock<T> {
    inner: TicketMutex<T, YieldRelax>,
}

/// Access to the data of an [`IrqSpinLock`]; unlocks, then restores the IRQ mask, on drop.
pub struct IrqSpinLockGuard<'a, T> {
    guard: Option<TicketMutexGuard<'a, T, YieldRelax>>,
    irqs: IrqState,
}

impl<T> IrqSpinLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        Self { inner: TicketMutex::<T, YieldRelax>::new(value) }
    }

    /// Masks IRQs, then takes the lock.
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let irqs = mask_irqs();
        IrqSpinLockGuard { guard: Some(self.inner.lock()), irqs }
    }

    /// Masks IRQs and takes the lock if it is free; restores the mask if not.
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let irqs = mask_irqs();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqSpinLockGuard { guard: Some(guard), irqs }),
            None => {
                restore_irqs(irqs);
                None
            }
        }
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// Only for a holder that will never run again (a CPU that died in a panic or a fatal
    /// exception), so that the last words can still be printed.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.force_unlock() }
    }
}

impl<'a, T> IrqSpinLockGuard<'a, T> {
    /// Unlocks but keeps IRQs masked; returns the state to restore later. Used by the
    /// scheduler, which must release its lock before switching context with IRQs still off.
    pub fn unlock_keep_masked(mut self) -> IrqState {
        self.guard = None;
        let irqs = self.irqs;
        core::mem::forget(self);
        irqs
    }
}

impl<T> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("a live guard holds the lock")
    }
}

impl<T> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("a live guard holds the lock")
    }
}

impl<T> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.guard = None;
        restore_irqs(self.irqs);
    }
}
