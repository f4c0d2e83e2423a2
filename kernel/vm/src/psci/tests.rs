use super::*;
use crate::test_util::XorShift;

/// Four vCPUs with the MPIDRs of a 2-cluster machine; vCPU 0 boots.
const MPIDRS: [u64; 4] = [0x0, 0x1, 0x100, 0x1_0000_0101];
const NOT_SUPPORTED: u64 = u64::MAX; // -1
const INVALID_PARAMETERS: u64 = -2i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const ON_PENDING: u64 = -5i64 as u64;
const INVALID_ADDRESS: u64 = -9i64 as u64;
const AFFINITY_ON: u64 = 0;
const AFFINITY_OFF: u64 = 1;
const AFFINITY_ON_PENDING: u64 = 2;

/// The guest's RAM in these tests: 256 MiB at 1 GiB, and 64 KiB at 4 GiB.
const GUEST_RAM: [(u64, u64); 2] = [(0x4000_0000, 0x1000_0000), (0x1_0000_0000, 0x1_0000)];

fn psci() -> Psci {
    let mut psci = Psci::new(&MPIDRS, 0).unwrap();
    psci.set_guest_ram(&GUEST_RAM).unwrap();
    psci
}

#[test]
fn cpu_on_outside_guest_ram_is_invalid_address() {
    // The core's image below the guest, past its end, a gap between ranges, straddling the
    // end of a range, at the top of the address space: all refused, and nothing started.
    for entry in [0x0, 0x3fe0_0000, 0x3fff_fffc, 0x5000_0000, 0x8000_0000, 0x1_0001_0000, 0xffff_ffff_ffff_fffc] {
        let mut psci = psci();
        assert_eq!(x0(&mut psci, 0, call(0xc400_0003, 1, entry, 0)), INVALID_ADDRESS, "{entry:#x}");
        assert_eq!(psci.state(1), Some(PowerState::Off), "{entry:#x}");
    }
    // The first and last instruction of each range are fine.
    for entry in [0x4000_0000, 0x4fff_fffc, 0x1_0000_0000, 0x1_0000_fffc] {
        let mut psci = psci();
        assert_eq!(x0(&mut psci, 0, call(0xc400_0003, 1, entry, 0)), 0, "{entry:#x}");
    }
    // No RAM given: nothing can be started.
    let mut bare = Psci::new(&MPIDRS, 0).unwrap();
    assert_eq!(x0(&mut bare, 0, call(0xc400_0003, 1, 0x4000_0000, 0)), INVALID_ADDRESS);
    assert_eq!(bare.set_guest_ram(&[(0, 1); MAX_RAM_RANGES + 1]), Err(Error::TooManyRamRanges(MAX_RAM_RANGES + 1)));
}

fn call(function_id: u32, arg1: u64, arg2: u64, arg3: u64) -> PsciCall {
    PsciCall {
        function_id,
        arg1,
        arg2,
        arg3,
    }
}

fn x0(psci: &mut Psci, caller: usize, c: PsciCall) -> u64 {
    psci.handle(caller, c).unwrap().x0
}

#[test]
fn construction_checks_the_mapping() {
    assert_eq!(Psci::new(&[], 0), Err(Error::NoVcpus));
    assert_eq!(Psci::new(&[0; 9], 0), Err(Error::TooManyVcpus(9)));
    assert_eq!(Psci::new(&[0, 1, 1], 0), Err(Error::DuplicateMpidr(1)));
    assert_eq!(
        Psci::new(&[0x8000_0000, 0], 0),
        Err(Error::DuplicateMpidr(0)),
        "RES1 bit ignored"
    );
    assert_eq!(Psci::new(&[0, 1], 2), Err(Error::NoSuchVcpu(2)));
    let psci = Psci::new(&[0x8000_0002, 3], 1).unwrap();
    assert_eq!(
        (psci.vcpu_count(), psci.mpidr(0), psci.index_of(3)),
        (2, Some(2), Some(1))
    );
    assert_eq!(
        (psci.state(0), psci.state(1), psci.state(2)),
        (Some(PowerState::Off), Some(PowerState::On), None)
    );
    assert!(Psci::new(&[0, 1, 2, 3, 4, 5, 6, 7], 7).is_ok());
}

#[test]
fn version_is_1_1() {
    let mut psci = psci();
    assert_eq!(
        psci.handle(0, call(0x8400_0000, 0, 0, 0)),
        Ok(Outcome {
            x0: 0x10001,
            action: Action::None
        })
    );
}

#[test]
fn features_of_each_function() {
    let mut psci = psci();
    let supported: [u32; 12] = [
        0x8400_0000, // PSCI_VERSION
        0x8400_000a, // PSCI_FEATURES
        0x8400_0001, // CPU_SUSPEND (SMC32)
        0xc400_0001, // CPU_SUSPEND (SMC64)
        0x8400_0002, // CPU_OFF
        0x8400_0003, // CPU_ON (SMC32)
        0xc400_0003, // CPU_ON (SMC64)
        0x8400_0004, // AFFINITY_INFO (SMC32)
        0xc400_0004, // AFFINITY_INFO (SMC64)
        0x8400_0006, // MIGRATE_INFO_TYPE
        0x8400_0008, // SYSTEM_OFF
        0x8400_0009, // SYSTEM_RESET
    ];
    for function in supported {
        assert_eq!(
            x0(&mut psci, 0, call(0x8400_000a, function.into(), 0, 0)),
            0,
            "{function:#x}"
        );
        assert!(is_supported(function));
    }
    let unsupported = [
        0x8400_0005, // MIGRATE
        0xc400_0007, // MIGRATE_INFO_UP_CPU
        0x8400_0012, // SYSTEM_RESET2
        0xc400_000e, // SYSTEM_SUSPEND
        0x8000_0000, // SMCCC_VERSION
        0xc400_0002, // CPU_OFF has no SMC64 form
        0xdead_beef,
    ];
    for function in unsupported {
        assert_eq!(
            x0(&mut psci, 0, call(0x8400_000a, function, 0, 0)),
            NOT_SUPPORTED,
            "{function:#x}"
        );
    }
    // Only the low 32 bits of the queried ID count, as for w1.
    assert_eq!(
        x0(&mut psci, 0, call(0x8400_000a, 0xffff_ffff_8400_0000, 0, 0)),
        0
    );
}

#[test]
fn unknown_function_is_not_supported() {
    let mut psci = psci();
    for function in [0x8400_0005, 0x8400_00ff, 0xc200_0000, 0, u32::MAX] {
        let outcome = psci.handle(0, call(function, 1, 2, 3)).unwrap();
        assert_eq!(
            outcome,
            Outcome {
                x0: NOT_SUPPORTED,
                action: Action::None
            },
            "{function:#x}"
        );
    }
    assert_eq!(psci, self::psci(), "no state changed");
}

#[test]
fn cpu_on_twice_is_on_pending_then_already_on() {
    let mut psci = psci();
    let cpu_on = call(0xc400_0003, 0x100, 0x4008_0000, 0xc0ffee);
    assert_eq!(
        psci.handle(0, cpu_on),
        Ok(Outcome {
            x0: 0,
            action: Action::StartVcpu {
                index: 2,
                entry: 0x4008_0000,
                context_id: 0xc0ffee
            }
        })
    );
    assert_eq!(psci.state(2), Some(PowerState::OnPending));
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0004, 0x100, 0, 0)),
        AFFINITY_ON_PENDING
    );
    assert_eq!(x0(&mut psci, 0, cpu_on), ON_PENDING);
    psci.vcpu_running(2).unwrap();
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0004, 0x100, 0, 0)),
        AFFINITY_ON
    );
    assert_eq!(x0(&mut psci, 0, cpu_on), ALREADY_ON);
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0003, 0, 0x4008_0000, 0)),
        ALREADY_ON,
        "the caller itself"
    );
    assert_eq!(psci.vcpu_running(2), Err(Error::NotStarting(2)));
    assert_eq!(psci.vcpu_running(9), Err(Error::NoSuchVcpu(9)));
}

#[test]
fn cpu_on_rejects_unknown_targets_and_bad_entry_points() {
    let mut psci = psci();
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0003, 0x2, 0x4000_0000, 0)),
        INVALID_PARAMETERS
    );
    // Aff3 = 1 with Aff0/Aff1 = 0x101 is vCPU 3; junk above Aff3 or in bits [31:24] is refused.
    assert_eq!(
        x0(
            &mut psci,
            0,
            call(0xc400_0003, 0x101_0000_0101, 0x4000_0000, 0)
        ),
        INVALID_PARAMETERS
    );
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0003, 0x8000_0001, 0x4000_0000, 0)),
        INVALID_PARAMETERS
    );
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0003, 1, 0x4000_0002, 0)),
        INVALID_ADDRESS
    );
    assert_eq!(
        psci.state(1),
        Some(PowerState::Off),
        "refused calls change nothing"
    );
    assert!(matches!(
        psci.handle(0, call(0xc400_0003, 0x1_0000_0101, 0x4000_0000, 0))
            .unwrap()
            .action,
        Action::StartVcpu { index: 3, .. }
    ));
}

#[test]
fn smc32_cpu_on_uses_the_low_32_bits() {
    let mut psci = psci();
    let outcome = psci
        .handle(
            0,
            call(
                0x8400_0003,
                0xffff_ffff_0000_0001,
                0x1_4000_0000,
                0x1_0000_0007,
            ),
        )
        .unwrap();
    assert_eq!(
        outcome.action,
        Action::StartVcpu {
            index: 1,
            entry: 0x4000_0000,
            context_id: 7
        }
    );
    // SMC32 has no Aff3: vCPU 3 (Aff3 = 1) cannot be named, and 0x101 is nobody.
    assert_eq!(
        x0(&mut psci, 0, call(0x8400_0003, 0x101, 0x4000_0000, 0)),
        INVALID_PARAMETERS
    );
}

#[test]
fn cpu_off_then_affinity_info_reports_off_and_the_cpu_can_restart() {
    let mut psci = psci();
    psci.handle(0, call(0xc400_0003, 1, 0x4000_0000, 0))
        .unwrap();
    psci.vcpu_running(1).unwrap();
    assert_eq!(
        psci.handle(1, call(0x8400_0002, 0, 0, 0)),
        Ok(Outcome {
            x0: 0,
            action: Action::StopThisVcpu
        })
    );
    assert_eq!(x0(&mut psci, 0, call(0xc400_0004, 1, 0, 0)), AFFINITY_OFF);
    assert_eq!(
        x0(&mut psci, 0, call(0x8400_0004, 1, 0, 0)),
        AFFINITY_OFF,
        "SMC32 form"
    );
    assert!(matches!(
        psci.handle(0, call(0xc400_0003, 1, 0x4000_1000, 5))
            .unwrap()
            .action,
        Action::StartVcpu {
            index: 1,
            entry: 0x4000_1000,
            context_id: 5
        }
    ));
}

#[test]
fn affinity_info_is_level_0_only_and_knows_its_cpus() {
    let mut psci = psci();
    assert_eq!(x0(&mut psci, 0, call(0xc400_0004, 0, 0, 0)), AFFINITY_ON);
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0004, 0x1_0000_0101, 0, 0)),
        AFFINITY_OFF
    );
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0004, 0, 1, 0)),
        INVALID_PARAMETERS,
        "level 1"
    );
    assert_eq!(
        x0(&mut psci, 0, call(0xc400_0004, 0x42, 0, 0)),
        INVALID_PARAMETERS
    );
}

#[test]
fn cpu_suspend_is_a_standby_of_any_power_state() {
    let mut psci = psci();
    let standby = Outcome {
        x0: 0,
        action: Action::WaitForInterrupt,
    };
    // Standby (0) and a power-down state (bit 16 in the original format) with an entry point.
    for (function, power_state) in [
        (0xc400_0001, 0),
        (0xc400_0001, 1 << 16),
        (0x8400_0001, 0x0101_0000),
    ] {
        assert_eq!(
            psci.handle(0, call(function, power_state, 0x4000_0000, 1)),
            Ok(standby)
        );
    }
    assert_eq!(psci.state(0), Some(PowerState::On));
}

#[test]
fn system_off_reset_and_migrate_info_type() {
    let mut psci = psci();
    assert_eq!(x0(&mut psci, 0, call(0x8400_0006, 0, 0, 0)), 2);
    assert_eq!(
        psci.handle(0, call(0x8400_0008, 0, 0, 0)).unwrap().action,
        Action::SystemOff
    );
    psci.handle(0, call(0xc400_0003, 1, 0x4000_0000, 0))
        .unwrap();
    // The reset may come from any vCPU; the model returns to its boot state.
    assert_eq!(
        psci.handle(1, call(0x8400_0009, 0, 0, 0)).unwrap().action,
        Action::SystemReset
    );
    assert_eq!(psci, self::psci());
}

#[test]
fn callers_are_checked_and_a_pending_caller_is_on() {
    let mut psci = psci();
    assert_eq!(
        psci.handle(4, call(0x8400_0000, 0, 0, 0)),
        Err(Error::NoSuchVcpu(4))
    );
    psci.handle(0, call(0xc400_0003, 1, 0x4000_0000, 0))
        .unwrap();
    psci.handle(1, call(0x8400_0000, 0, 0, 0)).unwrap();
    assert_eq!(psci.state(1), Some(PowerState::On));
}

#[test]
fn from_registers_takes_w0_and_x1_to_x3() {
    let mut regs = [0; crate::gpr::NUM_GPRS];
    regs[..5].copy_from_slice(&[0xffff_ffff_c400_0003, 1, 2, 3, 4]);
    assert_eq!(PsciCall::from_registers(&regs), call(0xc400_0003, 1, 2, 3));
}

/// Random calls from random running vCPUs: never a panic, and the model's states always agree
/// with a simple reference of which vCPUs were started and stopped.
#[test]
fn random_call_sequences_keep_states_consistent() {
    let functions = [
        0x8400_0002,
        0xc400_0003,
        0x8400_0003,
        0xc400_0004,
        0xc400_0001,
        0x8400_000a,
        0x8400_0009,
        0x8400_0077,
    ];
    let mut rng = XorShift::new(7);
    let mut psci = psci();
    let mut reference = [
        PowerState::On,
        PowerState::Off,
        PowerState::Off,
        PowerState::Off,
    ];
    let (mut starts, mut stops) = (0, 0);
    for _ in 0..50_000 {
        let running: Vec<usize> = (0..4)
            .filter(|&i| reference[i] != PowerState::Off)
            .collect();
        let Some(&caller) = running.get((rng.next() % running.len().max(1) as u64) as usize) else {
            psci.reset();
            reference = [
                PowerState::On,
                PowerState::Off,
                PowerState::Off,
                PowerState::Off,
            ];
            continue;
        };
        reference[caller] = PowerState::On;
        let function = functions[(rng.next() % functions.len() as u64) as usize];
        let target = if rng.next().is_multiple_of(4) {
            rng.next()
        } else {
            MPIDRS[(rng.next() % 4) as usize]
        };
        let arg2 = if rng.next().is_multiple_of(8) {
            rng.next()
        } else if rng.next().is_multiple_of(4) {
            rng.next() & !3 & 0xffff_ffff
        } else {
            GUEST_RAM[0].0 + (rng.next() & !3) % GUEST_RAM[0].1
        };
        let arg2 = if rng.next().is_multiple_of(2) {
            arg2
        } else {
            arg2 % 2
        };
        let outcome = psci
            .handle(caller, call(function, target, arg2, rng.next()))
            .unwrap();
        match outcome.action {
            Action::StartVcpu { index, entry, .. } => {
                starts += 1;
                assert!(psci.in_guest_ram(entry), "{entry:#x}");
                assert_eq!(reference[index], PowerState::Off);
                reference[index] = PowerState::OnPending;
                if rng.next().is_multiple_of(2) {
                    psci.vcpu_running(index).unwrap();
                    reference[index] = PowerState::On;
                }
            }
            Action::StopThisVcpu => {
                stops += 1;
                reference[caller] = PowerState::Off;
            }
            Action::SystemReset => {
                reference = [
                    PowerState::On,
                    PowerState::Off,
                    PowerState::Off,
                    PowerState::Off,
                ]
            }
            _ => {}
        }
        for (i, &state) in reference.iter().enumerate() {
            assert_eq!(psci.state(i), Some(state));
        }
    }
    assert!(
        starts > 1000 && stops > 1000,
        "{starts} starts, {stops} stops"
    );
}
