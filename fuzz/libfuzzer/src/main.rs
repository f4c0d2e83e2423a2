//! One libFuzzer binary for every target of `fuzz-targets`; `FUZZ_TARGET` names the one to run.

#![no_main]

use std::sync::OnceLock;

/// The target `FUZZ_TARGET` names, looked up once.
fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
        fuzz_targets::by_name(&name).unwrap_or_else(|| panic!("FUZZ_TARGET={name:?} is not one of {:?}", fuzz_targets::names()))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| target()(data));
