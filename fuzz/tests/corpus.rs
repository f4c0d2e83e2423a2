//! Replays the checked-in corpus and every crash kept in `regressions/` through the fuzz
//! targets' properties, so a plain `cargo test` catches a regression without a fuzzer.

use std::fs;
use std::path::Path;

/// Runs every file under `dir/<target>/` through that target; returns how many ran.
fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut ran = 0;
    for (name, target) in fuzz_targets::TARGETS {
        let Ok(entries) = fs::read_dir(root.join(name)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            println!("{}", path.display());
            target(&data);
            ran += 1;
        }
    }
    ran
}

#[test]
fn corpus_holds_every_property() {
    let ran = replay("corpus");
    assert!(ran >= fuzz_targets::TARGETS.len(), "the corpus has {ran} inputs: at least one per target expected");
}

#[test]
fn every_kept_crash_stays_fixed() {
    replay("regressions");
}
