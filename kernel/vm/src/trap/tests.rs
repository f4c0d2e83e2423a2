//! ESR encodings are built here from the bit positions of the Arm ARM, written out literally,
//! independently of the crate's field constants.

use super::*;
use crate::gpr::NUM_GPRS;
use crate::sysreg::KnownSysReg;
use crate::test_util::XorShift;

const EC_SHIFT: u64 = 26;
const IL: u64 = 1 << 25;
const ISV: u64 = 1 << 24;
const SAS_SHIFT: u64 = 22;
const SSE: u64 = 1 << 21;
const SRT_SHIFT: u64 = 16;
const SF: u64 = 1 << 15;
const AR: u64 = 1 << 14;
const FNV: u64 = 1 << 10;
const CM: u64 = 1 << 8;
const S1PTW: u64 = 1 << 7;
const WNR: u64 = 1 << 6;
/// DFSC: translation fault, level 3.
const TRANSLATION_L3: u64 = 0b000111;

/// A data abort from a lower EL with a valid syndrome.
fn data_abort(sas: u64, srt: u64, flags: u64) -> u64 {
    0x24 << EC_SHIFT | IL | ISV | sas << SAS_SHIFT | srt << SRT_SHIFT | flags | TRANSLATION_L3
}

fn mmio(esr: u64) -> MmioAccess {
    match Trap::decode(esr) {
        Trap::DataAbort { access, .. } => access,
        other => panic!("{esr:#x} decoded to {other:?}"),
    }
}

#[test]
fn str_w1_is_a_4_byte_store_with_a_real_encoding() {
    // str w1, [x0] to an unmapped IPA: ESR_EL2 0x93810047.
    let esr = data_abort(2, 1, WNR);
    assert_eq!(esr, 0x9381_0047);
    let Trap::DataAbort { access, fault } = Trap::decode(esr) else {
        panic!()
    };
    assert_eq!(
        access,
        MmioAccess {
            write: true,
            size: AccessSize::Word,
            sign_extend: false,
            register: Register::x(1).unwrap(),
            sixty_four: false,
            acquire_release: false,
        }
    );
    assert_eq!(fault.status, FaultStatus::Translation { level: 3 });
    assert!(fault.write && fault.far_valid && !fault.stage1_walk && !fault.external);
    let mut regs = [0; NUM_GPRS];
    regs[1] = 0xdead_beef_cafe_f00d;
    assert_eq!(access.store_value(&regs), Ok(0xcafe_f00d));
}

#[test]
fn every_access_size_decodes() {
    for (sas, size) in [
        (0, AccessSize::Byte),
        (1, AccessSize::Halfword),
        (2, AccessSize::Word),
    ] {
        assert_eq!(mmio(data_abort(sas, 0, 0)).size, size);
    }
    assert_eq!(mmio(data_abort(3, 0, SF)).size, AccessSize::Doubleword);
}

#[test]
fn ldrsb_to_w_and_x_registers_sign_extend_through_decode() {
    let mut regs = [0x5555_5555_5555_5555; NUM_GPRS];
    // ldrsb w2, [x0]
    let w = mmio(data_abort(0, 2, SSE));
    assert!(w.sign_extend && !w.sixty_four && !w.write);
    w.complete_load(&mut regs, 0xf0).unwrap();
    assert_eq!(regs[2], 0xffff_fff0);
    // ldrsb x2, [x0]
    let x = mmio(data_abort(0, 2, SSE | SF));
    x.complete_load(&mut regs, 0xf0).unwrap();
    assert_eq!(regs[2], 0xffff_ffff_ffff_fff0);
    // ldrb w2, [x0]: zero extension.
    mmio(data_abort(0, 2, 0))
        .complete_load(&mut regs, 0xf0)
        .unwrap();
    assert_eq!(regs[2], 0xf0);
    // ldrsw x3, [x0]
    mmio(data_abort(2, 3, SSE | SF))
        .complete_load(&mut regs, 0x8000_0001)
        .unwrap();
    assert_eq!(regs[3], 0xffff_ffff_8000_0001);
}

#[test]
fn acquire_release_and_64_bit_forms() {
    // ldar x4, [x0]
    let ldar = mmio(data_abort(3, 4, SF | AR));
    assert!(ldar.acquire_release && ldar.sixty_four && !ldar.write);
    // stlr w5, [x0]
    let stlr = mmio(data_abort(2, 5, AR | WNR));
    assert!(stlr.acquire_release && stlr.write);
}

#[test]
fn srt_31_is_the_zero_register_for_loads_and_stores() {
    let mut regs = [7; NUM_GPRS];
    // str xzr, [x0]
    let store = mmio(data_abort(3, 31, SF | WNR));
    assert_eq!(store.register, Register::ZERO);
    assert_eq!(store.store_value(&regs), Ok(0));
    // ldr wzr, [x0]: the result is discarded.
    let load = mmio(data_abort(2, 31, 0));
    load.complete_load(&mut regs, 0x1234).unwrap();
    assert_eq!(regs, [7; NUM_GPRS]);
}

#[test]
fn sign_extension_bit_of_a_store_is_ignored() {
    assert!(!mmio(data_abort(0, 1, SSE | WNR)).sign_extend);
}

#[test]
fn undescribed_accesses_are_undecodable_not_guessed() {
    let no_syndrome = |flags| Trap::decode(0x24 << EC_SHIFT | IL | flags | TRANSLATION_L3);
    // ldp x0, x1, [x2] (or any writeback form): ISV = 0.
    let Trap::Undecodable { reason, fault } = no_syndrome(0) else {
        panic!()
    };
    assert_eq!(reason, UndecodableReason::NoInstructionSyndrome);
    assert_eq!(fault.status, FaultStatus::Translation { level: 3 });
    // stp: ISV = 0, WnR = 1.
    assert!(matches!(
        no_syndrome(WNR),
        Trap::Undecodable { reason: UndecodableReason::NoInstructionSyndrome, fault }
            if fault.write
    ));
    // dc civac on unmapped IPA: CM = 1, WnR = 1.
    assert!(matches!(
        no_syndrome(CM | WNR),
        Trap::Undecodable {
            reason: UndecodableReason::CacheMaintenance,
            ..
        }
    ));
    // Fault on the guest's own page-table walk, even with a syndrome present.
    assert!(matches!(
        Trap::decode(data_abort(3, 0, SF | S1PTW)),
        Trap::Undecodable { reason: UndecodableReason::StageOneTableWalk, fault } if fault.stage1_walk
    ));
    // An 8-byte access to a W register, or a sign-extending 8-byte load, cannot exist.
    for flags in [0, SSE | SF] {
        assert!(matches!(
            Trap::decode(data_abort(3, 0, flags)),
            Trap::Undecodable {
                reason: UndecodableReason::InconsistentSyndrome,
                ..
            }
        ));
    }
}

#[test]
fn far_not_valid_is_reported() {
    let Trap::DataAbort { fault, .. } = Trap::decode(data_abort(2, 0, FNV)) else {
        panic!()
    };
    assert!(!fault.far_valid);
}

#[test]
fn fault_status_codes() {
    assert_eq!(
        FaultStatus::from_code(0b000100),
        FaultStatus::Translation { level: 0 }
    );
    assert_eq!(
        FaultStatus::from_code(0b001011),
        FaultStatus::AccessFlag { level: 3 }
    );
    assert_eq!(
        FaultStatus::from_code(0b001101),
        FaultStatus::Permission { level: 1 }
    );
    assert_eq!(
        FaultStatus::from_code(0b000010),
        FaultStatus::AddressSize { level: 2 }
    );
    assert_eq!(
        FaultStatus::from_code(0b010000),
        FaultStatus::SynchronousExternal
    );
    assert_eq!(
        FaultStatus::from_code(0b010101),
        FaultStatus::SynchronousExternalOnWalk { level: 1 }
    );
    assert_eq!(FaultStatus::from_code(0b100001), FaultStatus::Alignment);
    assert_eq!(FaultStatus::from_code(0b110000), FaultStatus::TlbConflict);
    assert_eq!(
        FaultStatus::from_code(0b101011),
        FaultStatus::Other { code: 0b101011 }
    );
    assert_eq!(
        FaultStatus::from_code(0xff),
        FaultStatus::Other { code: 0x3f }
    );
}

#[test]
fn instruction_abort_from_lower_el() {
    // Fetch from an unmapped IPA: EC 0x20, IFSC translation level 3.
    let esr = 0x20 << EC_SHIFT | IL | TRANSLATION_L3;
    assert_eq!(esr, 0x8200_0007);
    let Trap::InstructionAbort { fault } = Trap::decode(esr) else {
        panic!()
    };
    assert_eq!(fault.status, FaultStatus::Translation { level: 3 });
    assert!(!fault.write);
    assert!(!Trap::decode(esr).completes_by_skipping());
}

#[test]
fn hvc_and_smc_carry_their_immediate() {
    // hvc #0, smc #0, hvc #0x1234, smc #0xffff
    assert_eq!(Trap::decode(0x5a00_0000), Trap::Hvc { imm: 0 });
    assert_eq!(Trap::decode(0x5e00_0000), Trap::Smc { imm: 0 });
    assert_eq!(
        Trap::decode(0x16 << EC_SHIFT | IL | 0x1234),
        Trap::Hvc { imm: 0x1234 }
    );
    assert_eq!(
        Trap::decode(0x17 << EC_SHIFT | IL | 0xffff),
        Trap::Smc { imm: 0xffff }
    );
    assert!(
        !Trap::Hvc { imm: 0 }.completes_by_skipping(),
        "ELR_EL2 is already past an HVC"
    );
    assert!(
        Trap::Smc { imm: 0 }.completes_by_skipping(),
        "ELR_EL2 points at a trapped SMC"
    );
}

/// ISS of a trapped MSR/MRS: Op0 `[21:20]`, Op2 `[19:17]`, Op1 `[16:14]`, CRn `[13:10]`, Rt `[9:5]`,
/// CRm `[4:1]`, Direction `[0]` (1 = read).
fn sys_reg_esr(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
    let iss = op0 << 20 | op2 << 17 | op1 << 14 | crn << 10 | rt << 5 | crm << 1 | read as u64;
    0x18 << EC_SHIFT | IL | iss
}

#[test]
fn msr_icc_sgi1r_el1_decodes_and_is_named() {
    // msr ICC_SGI1R_EL1, x5
    let esr = sys_reg_esr(3, 0, 12, 11, 5, 5, false);
    assert_eq!(esr, 0x623a_30b6);
    let Trap::SysReg(access) = Trap::decode(esr) else {
        panic!()
    };
    assert_eq!(access.encoding, SysRegEncoding::new(3, 0, 12, 11, 5));
    assert_eq!(access.register, Register::x(5).unwrap());
    assert!(!access.read);
    assert_eq!(access.encoding.known(), Some(KnownSysReg::IccSgi1rEl1));
    assert_eq!(KnownSysReg::IccSgi1rEl1.name(), "ICC_SGI1R_EL1");
}

#[test]
fn mrs_and_other_known_registers() {
    // mrs x0, CNTP_CTL_EL0
    let Trap::SysReg(access) = Trap::decode(sys_reg_esr(3, 3, 14, 2, 1, 0, true)) else {
        panic!()
    };
    assert!(access.read);
    assert_eq!(access.known_name(), Some("CNTP_CTL_EL0"));
    // msr ICC_SGI0R_EL1, xzr ; msr ICC_ASGI1R_EL1, x30 (S3_0_C12_C11_7 and _6, as QEMU
    // reports them: the hostile guest's writes are recognized by these)
    let Trap::SysReg(sgi0) = Trap::decode(sys_reg_esr(3, 0, 12, 11, 7, 31, false)) else {
        panic!()
    };
    assert_eq!(
        (sgi0.encoding.known(), sgi0.register),
        (Some(KnownSysReg::IccSgi0rEl1), Register::ZERO)
    );
    let Trap::SysReg(asgi) = Trap::decode(sys_reg_esr(3, 0, 12, 11, 6, 30, false)) else {
        panic!()
    };
    assert_eq!(asgi.encoding.known(), Some(KnownSysReg::IccAsgi1rEl1));
    // dc isw, x1 (a System instruction, op0 = 1): decoded but unnamed.
    let Trap::SysReg(dc) = Trap::decode(sys_reg_esr(1, 0, 7, 6, 2, 1, false)) else {
        panic!()
    };
    assert_eq!(dc.encoding, SysRegEncoding::new(1, 0, 7, 6, 2));
    assert_eq!(dc.known_name(), None);
}

#[test]
fn wfi_wfe_and_timeouts() {
    let wait = |iss: u64| Trap::decode(0x01 << EC_SHIFT | IL | iss);
    assert_eq!(0x01 << EC_SHIFT | IL, 0x0600_0000);
    assert_eq!(
        wait(0),
        Trap::Wait {
            instruction: WaitInstruction::Wfi,
            timeout_register: None
        }
    );
    assert_eq!(
        wait(1),
        Trap::Wait {
            instruction: WaitInstruction::Wfe,
            timeout_register: None
        }
    );
    // wfit x3: TI = 0b10, RV = 1, Rn = 3.
    assert_eq!(
        wait(3 << 5 | 1 << 2 | 0b10),
        Trap::Wait {
            instruction: WaitInstruction::Wfit,
            timeout_register: Register::x(3)
        }
    );
    assert_eq!(
        wait(0b11),
        Trap::Wait {
            instruction: WaitInstruction::Wfet,
            timeout_register: None
        },
        "RV = 0: no register"
    );
    assert!(wait(0).completes_by_skipping());
}

#[test]
fn other_classes_pass_through() {
    // brk #0 from EL1 (EC 0x3c) and an unknown-reason trap (EC 0).
    assert_eq!(Trap::decode(0xf200_0000), Trap::Other { ec: 0x3c, iss: 0 });
    assert_eq!(
        Trap::decode(0x1ff_ffff),
        Trap::Other {
            ec: 0,
            iss: 0x1ff_ffff
        }
    );
    // ISS2 (bits 63:32) does not disturb decoding.
    assert_eq!(Trap::decode(0xffff_ffff_5a00_0000), Trap::Hvc { imm: 0 });
}

#[test]
fn fault_ipa_combines_hpfar_page_and_far_offset() {
    // IPA 0x0900_0abc (a PL011 register): HPFAR.FIPA = IPA[55:12] at bits [47:4].
    let hpfar = 0x0900_0abc_u64 >> 12 << 4;
    assert_eq!(hpfar, 0x9_0000);
    assert_eq!(fault_ipa(hpfar, 0xffff_8000_1234_5abc), 0x0900_0abc);
    // The NS bit (63) and FAR's page bits do not leak in; the widest FIPA is kept.
    assert_eq!(
        fault_ipa(1 << 63 | 0xffff_ffff_fff0, 0xfff),
        0x00ff_ffff_ffff_ffff
    );
}

#[test]
fn skip_instruction_advances_by_the_instruction_length() {
    assert_eq!(skip_instruction(0x4000_0000, 0x9381_0047), 0x4000_0004);
    assert_eq!(
        skip_instruction(0x4000_0000, 0x9181_0047),
        0x4000_0002,
        "IL = 0: 16-bit T32"
    );
    assert_eq!(skip_instruction(u64::MAX - 1, IL), 2, "wraps, never panics");
}

#[test]
fn exception_class_is_bits_31_to_26() {
    assert_eq!(exception_class(0x9381_0047), 0x24);
    assert_eq!(exception_class(u64::MAX), 0x3f);
}

/// Arbitrary ESR values: decoding, skipping and applying any decoded access never panic, and
/// the decoded fields stay in their architectural ranges.
#[test]
fn decoding_arbitrary_esr_values_never_panics() {
    let mut rng = XorShift::new(0x5eed_e5a2);
    let classes = [0x01, 0x16, 0x17, 0x18, 0x20, 0x24];
    let mut regs = [0; NUM_GPRS];
    for round in 0..200_000 {
        let raw = rng.next();
        // Half the values get a handled class so every decoder sees random syndromes.
        let esr = if round % 2 == 0 {
            raw
        } else {
            let ec = classes[(rng.next() % classes.len() as u64) as usize];
            (raw & !(0x3f << EC_SHIFT)) | ec << EC_SHIFT
        };
        let trap = Trap::decode(esr);
        let _ = skip_instruction(rng.next(), esr);
        let _ = fault_ipa(rng.next(), rng.next());
        match trap {
            Trap::DataAbort { access, fault } => {
                assert_eq!(exception_class(esr), 0x24);
                assert_eq!(access.write, fault.write);
                assert_eq!(u64::from(access.size.bytes()), 1 << (esr >> SAS_SHIFT & 3));
                if access.write {
                    let value = access.store_value(&regs).unwrap();
                    assert_eq!(value & !access.size.mask(), 0);
                } else {
                    access.complete_load(&mut regs, rng.next()).unwrap();
                }
            }
            Trap::SysReg(access) => {
                let e = access.encoding;
                assert!(e.op0 <= 3 && e.op1 <= 7 && e.crn <= 15 && e.crm <= 15 && e.op2 <= 7);
                let _ = access.known_name();
            }
            Trap::Other { ec, iss } => {
                assert!(!classes.contains(&u64::from(ec)));
                assert!(iss < 1 << 25);
            }
            _ => {}
        }
    }
}

/// Loads against a reference model written with Rust's integer casts.
#[test]
fn random_loads_match_the_cast_reference() {
    let mut rng = XorShift::new(42);
    for _ in 0..20_000 {
        let data = rng.next();
        let sas = rng.next() % 4;
        let signed = rng.next() % 2 == 1 && sas < 3;
        let sixty_four = rng.next() % 2 == 1 || sas == 3;
        let flags = if signed { SSE } else { 0 } | if sixty_four { SF } else { 0 };
        let access = mmio(data_abort(sas, 9, flags));
        let extended = match (sas, signed) {
            (0, true) => data as i8 as i64 as u64,
            (1, true) => data as i16 as i64 as u64,
            (2, true) => data as i32 as i64 as u64,
            (0, false) => data as u8 as u64,
            (1, false) => data as u16 as u64,
            (2, false) => data as u32 as u64,
            _ => data,
        };
        let expected = if sixty_four {
            extended
        } else {
            extended as u32 as u64
        };
        let mut regs = [0; NUM_GPRS];
        access.complete_load(&mut regs, data).unwrap();
        assert_eq!(
            regs[9], expected,
            "sas {sas} signed {signed} sf {sixty_four} data {data:#x}"
        );
    }
}
