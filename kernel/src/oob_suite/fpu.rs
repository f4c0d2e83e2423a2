//! FPU/SIMD torture, like EVL's `hectic`: threads on one CPU and across CPUs keep
//! thread-specific values in all 32 vector registers and in `f64` computations while they
//! yield, sleep, and are preempted by a periodic high-priority thread that uses the
//! registers too; any value changed behind a thread's back is a failure.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{Failure, TestResult, check, cpu, join_all, ms, spawn, us};
use crate::rt::{self, Policy, Timer};

/// Vector registers.
const VREGS: usize = 32;

/// A thread-specific value for each vector register.
fn pattern(seed: u64) -> [u128; VREGS] {
    let mut values = [0u128; VREGS];
    for (index, value) in values.iter_mut().enumerate() {
        let low = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(index as u64 * 0x0101_0101_0101_0101);
        let high = !low ^ (seed << 8) ^ index as u64;
        *value = (u128::from(high) << 64) | u128::from(low);
    }
    values
}

/// Loads `values` into v0..v31, spins `spins` iterations (so interrupts and preemptions
/// land while the registers hold them), and returns what v0..v31 hold afterwards.
fn hold_vector_registers(values: &[u128; VREGS], spins: u64) -> [u128; VREGS] {
    let mut out = [0u128; VREGS];
    // SAFETY: reads 512 bytes from `values` and writes 512 bytes to `out`, both valid arrays
    // of 32 `u128`; every vector register it changes is declared clobbered; the spin count
    // is at least 1, so the loop ends.
    unsafe {
        asm!(
            "ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{src}], #64",
            "ld1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{src}], #64",
            "ld1 {{v8.2d, v9.2d, v10.2d, v11.2d}}, [{src}], #64",
            "ld1 {{v12.2d, v13.2d, v14.2d, v15.2d}}, [{src}], #64",
            "ld1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{src}], #64",
            "ld1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{src}], #64",
            "ld1 {{v24.2d, v25.2d, v26.2d, v27.2d}}, [{src}], #64",
            "ld1 {{v28.2d, v29.2d, v30.2d, v31.2d}}, [{src}], #64",
            "2:",
            "subs {spins}, {spins}, #1",
            "b.ne 2b",
            "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{dst}], #64",
            "st1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{dst}], #64",
            "st1 {{v8.2d, v9.2d, v10.2d, v11.2d}}, [{dst}], #64",
            "st1 {{v12.2d, v13.2d, v14.2d, v15.2d}}, [{dst}], #64",
            "st1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{dst}], #64",
            "st1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{dst}], #64",
            "st1 {{v24.2d, v25.2d, v26.2d, v27.2d}}, [{dst}], #64",
            "st1 {{v28.2d, v29.2d, v30.2d, v31.2d}}, [{dst}], #64",
            src = inout(reg) values.as_ptr() => _,
            dst = inout(reg) out.as_mut_ptr() => _,
            spins = inout(reg) spins.max(1) => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack),
        );
    }
    out
}

/// One step of a thread's floating-point chain.
fn fp_step(x: f64, k: u64) -> f64 {
    let y = x * 1.000_000_7 + (k as f64) * 0.25;
    if y > 1e12 { y * 1e-9 } else { y }
}

/// The chain of `steps` steps from `seed`, computed straight through.
fn fp_chain(seed: f64, steps: u64) -> f64 {
    let mut x = seed;
    for k in 0..steps {
        x = core::hint::black_box(fp_step(x, k));
    }
    x
}

/// What the threads do between checks.
#[derive(Debug, Clone, Copy)]
enum Pause {
    Yield,
    Sleep,
}

/// Counters of the torture.
struct Shared {
    checks: AtomicU64,
    ticks: AtomicU64,
    failure: Failure,
}

/// One torture round: vector registers across an interrupt-heavy spin, then an `f64` chain
/// interleaved with `pause`, compared with the chain computed straight.
fn torture_round(shared: &Shared, name: &str, seed: u64, spins: u64, pause: Option<Pause>) -> bool {
    let values = pattern(seed);
    let held = hold_vector_registers(&values, spins);
    if let Some(register) = (0..VREGS).find(|&r| held[r] != values[r]) {
        shared.failure.set(format!(
            "{name}: v{register} became {:#034x}, expected {:#034x}",
            held[register], values[register]
        ));
        return false;
    }
    const STEPS: u64 = 64;
    let start = seed as f64 * 0.5 + 1.0;
    let reference = fp_chain(start, STEPS);
    let mut x = start;
    for k in 0..STEPS {
        x = core::hint::black_box(fp_step(x, k));
        if k % 16 == 15 {
            let paused = match pause {
                Some(Pause::Yield) => rt::yield_now(),
                Some(Pause::Sleep) => rt::sleep(us(30)),
                None => Ok(()),
            };
            if let Err(e) = paused {
                shared.failure.set(format!("{name}: pause: {e}"));
                return false;
            }
        }
    }
    if x.to_bits() != reference.to_bits() {
        shared.failure.set(format!("{name}: f64 chain ended at {x:e}, expected {reference:e}"));
        return false;
    }
    shared.checks.fetch_add(1, Ordering::AcqRel);
    true
}

/// Three yielding threads share CPU 1 with a 200 µs periodic priority-90 thread that uses
/// the registers too; a sleeping thread runs on CPU 2 and a yielding one on CPU 3. 30 ms.
pub fn fpu_torture() -> TestResult {
    let shared = Arc::new(Shared { checks: AtomicU64::new(0), ticks: AtomicU64::new(0), failure: Failure::new() });
    let end = rt::now() + ms(30);
    let mut handles = Vec::new();
    let mut spawned = Ok(());
    let workers = [(cpu(1), 1u64, Pause::Yield), (cpu(1), 2, Pause::Yield), (cpu(1), 3, Pause::Yield), (cpu(2), 4, Pause::Sleep), (cpu(3), 5, Pause::Yield)];
    for (on, seed, pause) in workers {
        let s = shared.clone();
        match spawn("hectic", on, Policy::Fifo, 10, move || {
            let name = format!("thread {seed} on cpu {on}");
            while rt::now() < end {
                if !torture_round(&s, &name, seed, 20_000, Some(pause)) {
                    return;
                }
            }
        }) {
            Ok(handle) => handles.push(handle),
            Err(e) => spawned = Err(e),
        }
    }
    let s = shared.clone();
    let preempter_cpu = cpu(1);
    match spawn("hectic-tick", preempter_cpu, Policy::Fifo, 90, move || {
        let Ok(timer) = Timer::new(preempter_cpu) else { return s.failure.set("Timer::new failed".into()) };
        let period = us(200);
        if timer.start(rt::now() + period, Some(period)).is_err() {
            return s.failure.set("Timer::start failed".into());
        }
        while rt::now() < end {
            if timer.wait().is_err() {
                return s.failure.set("Timer::wait failed".into());
            }
            s.ticks.fetch_add(1, Ordering::AcqRel);
            if !torture_round(&s, "preempter", 99, 500, None) {
                break;
            }
        }
        let _ = timer.stop();
    }) {
        Ok(handle) => handles.push(handle),
        Err(e) => spawned = Err(e),
    }
    let joined = join_all(handles);
    spawned?;
    joined?;
    shared.failure.check()?;
    let (checks, ticks) = (shared.checks.load(Ordering::Acquire), shared.ticks.load(Ordering::Acquire));
    check(ticks >= 100, || format!("the preempter ran {ticks} times in 30 ms, expected about 150"))?;
    check(checks >= ticks + 20, || format!("only {checks} checks passed ({ticks} by the preempter)"))?;
    Ok(())
}
