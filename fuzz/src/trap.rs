//! ESR_EL2 decoding: whatever the syndrome, a register operand is X0..X30 or the zero
//! register, an access is 1, 2, 4 or 8 bytes, loads and stores touch only their register,
//! and the instruction skip is 2 or 4 bytes.

use vm::{AccessSize, Register, RegisterFile, Trap, fault_ipa, skip_instruction};

use crate::input::Input;

/// Largest general-purpose register index (X30).
const LAST_GPR: usize = 30;
/// Bits of FAR_EL2 that are the offset in the faulting page.
const PAGE_OFFSET_MASK: u64 = 0xfff;

/// The operand is X0..X30 or the zero register.
fn check_register(register: Register) {
    match register.index() {
        Some(index) => assert!(index <= LAST_GPR, "register index {index}"),
        None => assert!(register.is_zero(), "{register:?} has no index but is not the zero register"),
    }
}

/// Decodes one syndrome and completes the access it describes against fuzzed registers.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let (esr, far, hpfar, elr, load) = (input.u64(), input.u64(), input.u64(), input.u64(), input.u64());
    let mut regs: RegisterFile = core::array::from_fn(|_| input.u64());

    let next = skip_instruction(elr, esr);
    assert!(next == elr.wrapping_add(2) || next == elr.wrapping_add(4), "skip from {elr:#x} to {next:#x}");
    assert_eq!(fault_ipa(hpfar, far) & PAGE_OFFSET_MASK, far & PAGE_OFFSET_MASK);

    match Trap::decode(esr) {
        Trap::DataAbort { access, .. } => {
            check_register(access.register);
            assert!(matches!(access.size.bytes(), 1 | 2 | 4 | 8));
            assert!(!(access.write && access.sign_extend), "a store that sign-extends: {access:?}");
            assert!(access.size != AccessSize::Doubleword || access.sixty_four, "a W-register doubleword: {access:?}");
            let before = regs;
            if access.write {
                let value = access.store_value(&regs).expect("a store has a value");
                let expected = access.register.index().map_or(0, |i| regs[i]) & access.size.mask();
                assert_eq!(value, expected);
                assert!(access.complete_load(&mut regs, load).is_err(), "a store completed as a load");
                assert_eq!(regs, before, "a refused load changed registers");
            } else {
                access.complete_load(&mut regs, load).expect("a load completes");
                let result = access.load_result(load);
                if !access.sixty_four {
                    assert!(result <= AccessSize::Word.mask(), "a W-register load gave {result:#x}");
                }
                for (i, (now, was)) in regs.iter().zip(before.iter()).enumerate() {
                    if Some(i) == access.register.index() {
                        assert_eq!(*now, result);
                    } else {
                        assert_eq!(now, was, "a load into {:?} changed x{i}", access.register);
                    }
                }
            }
        }
        Trap::SysReg(access) => check_register(access.register),
        Trap::Wait { timeout_register: Some(register), .. } => check_register(register),
        _ => {}
    }
}
