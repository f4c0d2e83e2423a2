//! The trap frame saved by the EL2 vectors and the hook that receives it.

use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

use vm::esr;

/// Registers saved on every exception taken to EL2 (layout shared with `entry.S`).
#[repr(C)]
#[derive(Clone)]
pub struct TrapFrame {
    /// General-purpose registers x0..x30. An IRQ's frame leaves the callee-saved x19..x29
    /// unwritten: the handler preserves them (AAPCS64), so they stay live in the registers.
    pub x: [u64; 31],
    /// Return address (`ELR_EL2`).
    pub elr: u64,
    /// Saved program status (`SPSR_EL2`).
    pub spsr: u64,
    /// Exception syndrome (`ESR_EL2`); not written for IRQs (meaningless there).
    pub esr: u64,
    /// Fault address (`FAR_EL2`), meaningful for aborts; not written for IRQs.
    pub far: u64,
    /// Stack pointer at the time of the exception (for exceptions taken from EL2); not
    /// written for IRQs.
    pub sp: u64,
    /// The interrupted context's FP/SIMD registers, saved on every exception.
    pub fp: FpState,
}

/// The FP/SIMD register file: `q0..q31`, `FPCR`, `FPSR`.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpState {
    /// Vector registers q0..q31.
    pub q: [u128; 32],
    /// Floating-point control register (rounding mode, flush-to-zero, ...).
    pub fpcr: u64,
    /// Floating-point status register (cumulative exception flags).
    pub fpsr: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 816);
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fp) == 288);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fp) + core::mem::offset_of!(FpState, fpcr) == 800);

/// The vector an exception came through (0..16, in vector-table order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorKind(pub u64);

impl VectorKind {
    /// True for IRQ vectors (from EL2 or from a lower EL).
    pub fn is_irq(self) -> bool {
        self.0 % 4 == 1
    }

    /// True for FIQ vectors.
    pub fn is_fiq(self) -> bool {
        self.0 % 4 == 2
    }

    /// True for SError vectors.
    pub fn is_serror(self) -> bool {
        self.0 % 4 == 3
    }

    /// True for synchronous exceptions.
    pub fn is_synchronous(self) -> bool {
        self.0.is_multiple_of(4)
    }

    /// True when the exception was taken from the current EL (EL2 itself).
    pub fn from_current_el(self) -> bool {
        self.0 < 8
    }
}

/// A function that handles an exception and returns to where it came from.
pub type TrapHandler = fn(&mut TrapFrame, VectorKind);

static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the function every exception is handed to. Until this is called, every
/// exception is fatal.
pub fn set_handler(handler: TrapHandler) {
    HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Called by `entry.S` for every exception taken to EL2.
#[unsafe(no_mangle)]
extern "C" fn el2_trap(frame: &mut TrapFrame, kind: u64) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler.is_null() {
        panic!("exception before a handler was installed:\n{}", Dump { frame, kind: VectorKind(kind) });
    }
    // SAFETY: only `set_handler` stores into HANDLER, always a valid `TrapHandler`.
    let handler: TrapHandler = unsafe { core::mem::transmute::<*mut (), TrapHandler>(handler) };
    handler(frame, VectorKind(kind));
}

/// Which vector an exception came through, as numbered by the entry code (0..16).
fn vector_name(kind: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "synchronous, current EL with SP_EL0",
        "IRQ, current EL with SP_EL0",
        "FIQ, current EL with SP_EL0",
        "SError, current EL with SP_EL0",
        "synchronous, current EL",
        "IRQ, current EL",
        "FIQ, current EL",
        "SError, current EL",
        "synchronous, lower EL (AArch64)",
        "IRQ, lower EL (AArch64)",
        "FIQ, lower EL (AArch64)",
        "SError, lower EL (AArch64)",
        "synchronous, lower EL (AArch32)",
        "IRQ, lower EL (AArch32)",
        "FIQ, lower EL (AArch32)",
        "SError, lower EL (AArch32)",
    ];
    NAMES.get(kind as usize).copied().unwrap_or("invalid vector")
}

/// A full, human-readable register dump of an exception.
pub struct Dump<'a> {
    /// The saved registers.
    pub frame: &'a TrapFrame,
    /// The vector it came through.
    pub kind: VectorKind,
}

impl fmt::Display for Dump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.frame;
        let ec = esr::EC.get(t.esr) as u8;
        writeln!(f, "unexpected exception on cpu {}: {}", crate::cpu_index(), vector_name(self.kind.0))?;
        write!(f, "  ESR_EL2 {:#018x}  EC {:#04x} ({})", t.esr, ec, esr::class::name(ec))?;
        if esr::class::is_abort(ec) {
            let write = if esr::abort::WNR.is_set(t.esr) { ", write" } else { "" };
            write!(f, ", {}{write}", esr::abort::fault_status_name(esr::abort::FSC.get(t.esr)))?;
        }
        writeln!(f)?;
        writeln!(f, "  FAR_EL2 {:#018x}  ELR_EL2 {:#018x}  SPSR_EL2 {:#018x}  SP {:#018x}", t.far, t.elr, t.spsr, t.sp)?;
        for row in 0..8 {
            write!(f, " ")?;
            for col in 0..4 {
                let i = row * 4 + col;
                if i < 31 {
                    write!(f, " x{i:<2} {:#018x}", t.x[i])?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::vector_name;

    #[test]
    fn every_vector_has_a_name_and_out_of_range_is_flagged() {
        assert!((0..16).all(|k| vector_name(k) != "invalid vector"));
        assert_eq!(vector_name(16), "invalid vector");
    }
}
