//! Decoding of the Exception Syndrome Register (ESR_ELx) for diagnostics.

/// The exception class field, ESR bits [31:26].
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction-specific syndrome, ESR bits [24:0].
pub fn iss(esr: u64) -> u32 {
    (esr & 0x01ff_ffff) as u32
}

/// A readable name for an exception class (Arm ARM D24.2.40, ESR_EL2.EC).
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "Unknown reason",
        0x01 => "Trapped WFI/WFE",
        0x07 => "Trapped SIMD/FP access",
        0x0e => "Illegal Execution state",
        0x11 | 0x15 => "SVC",
        0x12 | 0x16 => "HVC",
        0x13 | 0x17 => "SMC",
        0x18 => "Trapped MSR/MRS/system instruction",
        0x19 => "Trapped SVE access",
        0x20 => "Instruction Abort from a lower EL",
        0x21 => "Instruction Abort at the current EL",
        0x22 => "PC alignment fault",
        0x24 => "Data Abort from a lower EL",
        0x25 => "Data Abort at the current EL",
        0x26 => "SP alignment fault",
        0x28 | 0x2c => "Trapped floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "Breakpoint",
        0x32 | 0x33 => "Software step",
        0x34 | 0x35 => "Watchpoint",
        0x3c => "BRK instruction",
        _ => "Reserved or unhandled class",
    }
}

/// For data and instruction aborts: the fault status code's meaning (ISS bits [5:0]).
pub fn fault_status_name(iss: u32) -> &'static str {
    match iss & 0x3f {
        0b000000..=0b000011 => "address size fault",
        0b000100..=0b000111 => "translation fault",
        0b001000..=0b001011 => "access flag fault",
        0b001100..=0b001111 => "permission fault",
        0b010000 => "synchronous external abort",
        0b100001 => "alignment fault",
        0b110000 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// Which vector an exception came through, as numbered by the entry code (0..16).
pub fn vector_name(kind: u64) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_at_el2_is_named_with_its_fault() {
        // EC=0x25, IL=1, ISS: WnR=0, DFSC=0b000101 (level-1 translation fault).
        let esr = 0x25 << 26 | 1 << 25 | 0b000101;
        assert_eq!(class_name(exception_class(esr)), "Data Abort at the current EL");
        assert_eq!(fault_status_name(iss(esr)), "translation fault");
    }

    #[test]
    fn every_vector_has_a_name_and_out_of_range_is_flagged() {
        assert!((0..16).all(|k| vector_name(k) != "invalid vector"));
        assert_eq!(vector_name(16), "invalid vector");
    }
}
