//! Bring-up of the companion core at EL2: the entry assembly (Image header, relocation,
//! BSS, stacks, vectors), the EL2 stage-1 MMU, secondary-CPU start, and the trap frame
//! handed to the exception handler.
//!
//! Only [`esr`] is portable; the rest builds for `aarch64` alone.

#![cfg_attr(not(test), no_std)]

extern crate alloc;


#[cfg(target_arch = "aarch64")]
pub mod exceptions;
#[cfg(target_arch = "aarch64")]
pub mod mmu;
#[cfg(target_arch = "aarch64")]
pub mod secondary;

/// Most CPUs the entry code gives a stack and a slot in the secondary boot table.
pub const MAX_CPUS: usize = 8;
/// Size of each CPU's boot stack; must match `STACK_SIZE` in `entry.S` and the linker script.
pub const STACK_SIZE: usize = 0x10000;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(include_str!("entry.S"));

/// Logical index of the executing CPU (0 = the boot CPU), kept in `TPIDR_EL2` by the entry code.
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn cpu_index() -> usize {
    use aarch64_cpu::registers::{Readable, TPIDR_EL2};
    TPIDR_EL2.get() as usize
}
