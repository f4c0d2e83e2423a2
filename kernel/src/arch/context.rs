//! The thread context switch.
//!
//! A context switch is an ordinary function call, [`switch_context`], made with IRQs masked:
//! it saves what the AAPCS64 says a callee must preserve (x19..x30, SP, d8..d15) plus the
//! FP control and status registers, and loads the same from the next context. Everything
//! else of a preempted context is already on its own stack: a preemption happens on the way
//! out of an interrupt, after the exception vector saved the whole integer and FP/SIMD
//! register file in the trap frame. So a thread preempted by an IRQ and a thread that blocked
//! in a call look the same to the scheduler, and both resume by returning from
//! `switch_context`.
//!
//! FP/SIMD is switched eagerly, not lazily: the core is built hard-float and its own code
//! may use the vector registers anywhere (Rust lowers copies to them), so deferring the
//! switch with `CPTR_EL2.TFP` traps would not protect a thread's registers from the core
//! itself. The caller-saved vector registers are therefore the caller's business (the
//! compiler saves live ones around the call, and the trap frame holds them on preemption),
//! and the switch itself only moves d8..d15, FPCR and FPSR.

use core::sync::atomic::{AtomicU32, Ordering};

/// What a context switch saves of a context that is not running.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SavedContext {
    /// Callee-saved x19..x28.
    x19_x28: [u64; 10],
    /// Frame pointer (x29).
    fp: u64,
    /// Link register (x30): where the context resumes.
    lr: u64,
    /// Stack pointer.
    sp: u64,
    /// Callee-saved low halves of v8..v15.
    d8_d15: [u64; 8],
    /// Floating-point control register.
    fpcr: u64,
    /// Floating-point status register.
    fpsr: u64,
    /// Non-zero while a CPU runs this context or is still saving it; a CPU about to switch
    /// to it waits for zero (matters when a thread moved to another CPU).
    on_cpu: AtomicU32,
}

const _: () = assert!(core::mem::offset_of!(SavedContext, fp) == 80);
const _: () = assert!(core::mem::offset_of!(SavedContext, sp) == 96);
const _: () = assert!(core::mem::offset_of!(SavedContext, d8_d15) == 104);
const _: () = assert!(core::mem::offset_of!(SavedContext, fpcr) == 168);
const _: () = assert!(core::mem::offset_of!(SavedContext, on_cpu) == 184);

/// The function a new context starts in; it receives the argument given to
/// [`SavedContext::new_thread`] and never returns.
pub type ContextEntry = extern "C" fn(usize) -> !;

impl SavedContext {
    /// The context of code that is running now (a CPU's boot flow): filled in by its first
    /// switch away.
    pub const fn running() -> Self {
        Self { x19_x28: [0; 10], fp: 0, lr: 0, sp: 0, d8_d15: [0; 8], fpcr: 0, fpsr: 0, on_cpu: AtomicU32::new(1) }
    }

    /// A context that starts in `entry(arg)` on the stack whose top (16-byte aligned) is
    /// `stack_top`, with default FP settings.
    pub fn new_thread(stack_top: usize, entry: ContextEntry, arg: usize) -> Self {
        let mut context = Self::default();
        context.x19_x28[0] = arg as u64;
        context.x19_x28[1] = entry as usize as u64;
        context.lr = context_trampoline as *const () as u64;
        context.sp = (stack_top & !0xf) as u64;
        context
    }

    /// Claims the context for the calling CPU: waits until no CPU runs or saves it.
    pub fn claim(&self) {
        while self.on_cpu.swap(1, Ordering::Acquire) != 0 {
            super::irq_lock::cpu_relax();
        }
    }

    /// Whether a CPU runs the context or is still saving it.
    pub fn is_on_cpu(&self) -> bool {
        self.on_cpu.load(Ordering::Acquire) != 0
    }
}

/// First code of a new context: calls `entry(arg)` from x20 and x19 with a clean frame chain.
#[unsafe(naked)]
extern "C" fn context_trampoline() -> ! {
    core::arch::naked_asm!("mov x29, xzr", "mov x0, x19", "blr x20", "brk #0x1")
}

/// Saves the running context into `previous`, releases it, and resumes `next`.
///
/// Returns when some CPU switches back to `previous`.
///
/// # Safety
/// IRQs must be masked. `previous` must be the context running on this CPU, `next` a context
/// claimed with [`SavedContext::claim`] that is either saved by an earlier switch or built
/// by [`SavedContext::new_thread`] on a valid stack; both must stay alive and must not be
/// otherwise accessed until switched to again.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_context(previous: *mut SavedContext, next: *const SavedContext) {
    core::arch::naked_asm!(
        "stp x19, x20, [x0, #0]",
        "stp x21, x22, [x0, #16]",
        "stp x23, x24, [x0, #32]",
        "stp x25, x26, [x0, #48]",
        "stp x27, x28, [x0, #64]",
        "stp x29, x30, [x0, #80]",
        "mov x9, sp",
        "str x9, [x0, #96]",
        "stp d8, d9, [x0, #104]",
        "stp d10, d11, [x0, #120]",
        "stp d12, d13, [x0, #136]",
        "stp d14, d15, [x0, #152]",
        "mrs x9, fpcr",
        "mrs x10, fpsr",
        "stp x9, x10, [x0, #168]",
        // `previous` is saved: release it (pairs with the acquire in `claim`).
        "add x9, x0, #184",
        "stlr wzr, [x9]",
        "ldp x19, x20, [x1, #0]",
        "ldp x21, x22, [x1, #16]",
        "ldp x23, x24, [x1, #32]",
        "ldp x25, x26, [x1, #48]",
        "ldp x27, x28, [x1, #64]",
        "ldp x29, x30, [x1, #80]",
        "ldr x9, [x1, #96]",
        "mov sp, x9",
        "ldp d8, d9, [x1, #104]",
        "ldp d10, d11, [x1, #120]",
        "ldp d12, d13, [x1, #136]",
        "ldp d14, d15, [x1, #152]",
        "ldp x9, x10, [x1, #168]",
        "msr fpcr, x9",
        "msr fpsr, x10",
        "ret",
    )
}
