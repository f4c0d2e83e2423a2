//! The PSCI model: a call from a vCPU that does not exist changes nothing; CPU_ON succeeds
//! only for a vCPU that was off, starting exactly that vCPU at exactly the entry asked for;
//! only CPU_ON starts a vCPU, and only at an entry point inside the guest's RAM; every error
//! is a PSCI error code.

use smccc::psci::{self as ids, error as code};
use vm::psci::{MAX_VCPUS, SUPPORTED_FUNCTIONS};
use vm::{Action, PowerState, Psci, PsciCall};

use crate::input::Input;

/// Two functions the model does not implement (beside [`SUPPORTED_FUNCTIONS`]).
const UNSUPPORTED_FUNCTIONS: &[u32] = &[ids::PSCI_MIGRATE_64, 0x8400_00ff];

/// The PSCI error codes a call may return, sign-extended as in x0.
const ERRORS: &[i32] = &[
    code::NOT_SUPPORTED,
    code::INVALID_PARAMETERS,
    code::DENIED,
    code::ALREADY_ON,
    code::ON_PENDING,
    code::INTERNAL_FAILURE,
    code::NOT_PRESENT,
    code::DISABLED,
    code::INVALID_ADDRESS,
];

/// Builds a model from the first bytes, then makes the calls the rest describes.
pub fn fuzz(data: &[u8]) {
    let mut input = Input::new(data);
    let vcpus = 1 + usize::from(input.u8()) % MAX_VCPUS;
    let boot = usize::from(input.u8()) % vcpus;
    let mpidrs: Vec<u64> = (0..vcpus as u64).map(|i| (i & 3) | (i >> 2) << 8).collect();
    let Ok(mut psci) = Psci::new(&mpidrs, boot) else { return };
    // Up to three RAM ranges below 4 GiB (so CPU_ON_32 entry points can reach them too).
    let ram: Vec<(u64, u64)> = (0..usize::from(input.u8()) % 4)
        .map(|_| (u64::from(input.u32() & !0xfff), u64::from(input.u32() >> 8)))
        .collect();
    psci.set_guest_ram(&ram).expect("three ranges are allowed");
    while !input.is_empty() {
        let caller = usize::from(input.u8()) % (vcpus + 1);
        let function_id = match input.u8() & 7 {
            0 => input.u32(),
            1 => input.pick(UNSUPPORTED_FUNCTIONS),
            _ => input.pick(&SUPPORTED_FUNCTIONS),
        };
        let target = if input.u8() & 1 == 0 { mpidrs[usize::from(input.u8()) % vcpus] } else { input.u64() };
        // Half the entry points inside a RAM range (when there is one), aligned or not.
        let entry = match ram.get(usize::from(input.u8()) % (2 * ram.len()).max(1)) {
            Some(&(base, size)) => base + u64::from(input.u32()) % size.max(1),
            None => input.u64(),
        };
        let call = PsciCall { function_id, arg1: target, arg2: entry, arg3: input.u64() };
        let before = psci.clone();
        let Ok(outcome) = psci.handle(caller, call) else {
            assert!(caller >= vcpus, "vCPU {caller} of {vcpus} refused");
            assert!(psci == before, "a refused call changed the model");
            continue;
        };
        assert!(caller < vcpus, "a call from missing vCPU {caller} was handled");
        let is_error = |x0: u64| ERRORS.iter().any(|&e| x0 == e as i64 as u64);
        let cpu_on = matches!(function_id, ids::PSCI_CPU_ON_32 | ids::PSCI_CPU_ON_64);
        match outcome.action {
            Action::StartVcpu { index, entry, context_id } => {
                assert!(cpu_on, "{call:?} started a vCPU");
                assert_eq!(outcome.x0, 0, "a start without SUCCESS");
                let narrow = |v: u64| if function_id == ids::PSCI_CPU_ON_32 { v & 0xffff_ffff } else { v };
                assert_eq!((entry, context_id), (narrow(call.arg2), narrow(call.arg3)));
                assert!(before.in_guest_ram(entry), "a vCPU started at {entry:#x}, outside the guest's RAM {ram:x?}");
                assert_eq!(Some(index), before.index_of(narrow(call.arg1)), "started the wrong vCPU");
                assert_eq!(before.state(index), Some(PowerState::Off), "started vCPU {index} that was not off");
                assert_eq!(psci.state(index), Some(PowerState::OnPending));
                psci.vcpu_running(index).expect("the started vCPU runs");
            }
            Action::None if cpu_on => assert!(is_error(outcome.x0), "CPU_ON answered {:#x} without a start", outcome.x0),
            _ => {}
        }
        if is_error(outcome.x0) {
            assert_eq!(outcome.action, Action::None, "an error with an action");
        }
    }
}
