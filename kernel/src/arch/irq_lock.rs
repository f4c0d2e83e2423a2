//! A spin lock that masks IRQs while held, for data shared between threads, interrupt
//! handlers and CPUs (the scheduler state, the console, the heap).
//!
//! Masking is what makes such a lock safe on one CPU: a context holding it cannot be
//! preempted by an interrupt whose handler (or the thread it wakes) wants the same lock.
//! The underlying lock is a ticket lock, so CPUs get it in arrival order and none starves.

use core::ops::{Deref, DerefMut};

use spin::mutex::{SpinMutex, SpinMutexGuard, TicketMutex, TicketMutexGuard};
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

/// Access to the data of an [`IrqSpinLock`] taken by code that already runs with IRQs
/// masked (an interrupt handler): unlocks on drop and leaves the interrupt mask alone.
pub struct IrqMaskedGuard<'a, T> {
    guard: TicketMutexGuard<'a, T, YieldRelax>,
}

impl<T> IrqSpinLock<T> {
    /// Takes the lock without saving, masking and restoring the interrupt mask: only for
    /// callers that run with IRQs masked already (interrupt handlers), where that work is
    /// pure cost on the hot path.
    pub fn lock_irqs_masked(&self) -> IrqMaskedGuard<'_, T> {
        debug_assert!(super::irqs_masked(), "lock_irqs_masked with IRQs unmasked");
        IrqMaskedGuard { guard: self.inner.lock() }
    }
}

impl<T> Deref for IrqMaskedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqMaskedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A test-and-test-and-set spin lock held with IRQs masked: like [`IrqSpinLock`], but
/// whichever waiting CPU sees it free first takes it, with no arrival order.
///
/// For locks taken often by every CPU on in-band paths (the guest's virtual interrupts) when
/// the CPUs may themselves be threads of a busier host (QEMU's multi-threaded TCG with more
/// vCPUs than host cores): a ticket lock then hands the lock to the next ticket even when that
/// waiter's thread is descheduled, and every CPU queued behind it spins for a whole host time
/// slice while the lock is free (waiter preemption). Here a running waiter takes it at once.
/// The price is fairness: a waiter may be overtaken, so keep the critical sections short and
/// do not use it where a bounded wait matters (oob paths keep [`IrqSpinLock`]).
pub struct IrqTasLock<T> {
    inner: SpinMutex<T, YieldRelax>,
}

/// Access to the data of an [`IrqTasLock`]; unlocks, then restores the IRQ mask, on drop.
pub struct IrqTasLockGuard<'a, T> {
    guard: Option<SpinMutexGuard<'a, T, YieldRelax>>,
    irqs: IrqState,
}

impl<T> IrqTasLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        Self { inner: SpinMutex::<T, YieldRelax>::new(value) }
    }

    /// Masks IRQs, then takes the lock.
    pub fn lock(&self) -> IrqTasLockGuard<'_, T> {
        let irqs = mask_irqs();
        IrqTasLockGuard { guard: Some(self.inner.lock()), irqs }
    }
}

impl<T> Deref for IrqTasLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("a live guard holds the lock")
    }
}

impl<T> DerefMut for IrqTasLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("a live guard holds the lock")
    }
}

impl<T> Drop for IrqTasLockGuard<'_, T> {
    fn drop(&mut self) {
        self.guard = None;
        restore_irqs(self.irqs);
    }
}
