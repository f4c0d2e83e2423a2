//! `cargo xtask fuzz`: coverage-guided fuzzing of the parsers of guest- and user-controlled
//! bytes (the targets of `fuzz/`, see docs/fuzzing.md) with libFuzzer, on the pinned stable
//! toolchain: the harness `fuzz/libfuzzer` is built with LLVM's sanitizer-coverage
//! instrumentation (`-C passes=sancov-module`, stable `-C` options), so no nightly toolchain
//! and no `cargo fuzz` is needed, only a C++ compiler for libFuzzer itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::paths::{target_dir, workspace_root};
use crate::process::{self, Ending};
use crate::toolchain;

/// The instrumentation libFuzzer needs: edge counters, the PC table and comparison tracing,
/// plus `cfg(fuzzing)` as `cargo fuzz` sets it.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";
/// Largest input libFuzzer makes (the FDT seeds are about 8 KiB).
const MAX_LEN: &str = "-max_len=16384";
/// Memory limit of one fuzzing process.
const RSS_LIMIT: &str = "-rss_limit_mb=2048";
/// Time allowed beyond the fuzzing time for libFuzzer to load the corpus and stop.
const MARGIN: Duration = Duration::from_secs(60);
/// Lines of a failing run's output shown.
const TAIL_LINES: usize = 30;
/// Lines printed from the panic message on.
const PANIC_LINES: usize = 4;
/// Largest failing input printed in hex (the FDT seeds are about 8 KiB).
const MAX_HEX_INPUT: usize = 16384;

/// What to fuzz and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of fuzzing per target; 0 replays the corpus once.
    pub seconds: u64,
    /// Only this target (a directory of `fuzz/corpus/`).
    pub target: Option<String>,
}

/// The checked-in corpus of every target: `fuzz/corpus/<target>/`.
fn corpus_dir() -> PathBuf {
    workspace_root().join("fuzz/corpus")
}

/// The targets: one per corpus directory, sorted.
fn targets() -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(corpus_dir())
        .with_context(|| format!("cannot list {}", corpus_dir().display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Builds the instrumented harness; returns the binary.
fn build() -> Result<PathBuf> {
    let host = toolchain::host_triple()?;
    let out = target_dir().join("fuzz");
    let mut cargo = toolchain::cargo();
    cargo
        .args(["build", "--release", "--locked", "--manifest-path", "fuzz/libfuzzer/Cargo.toml", "--target", &host])
        .arg("--target-dir")
        .arg(&out)
        // An explicit --target keeps the flags off build scripts and proc macros.
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    eprintln!("xtask: building the fuzzing harness (libFuzzer, sanitizer coverage)");
    process::run(&mut cargo)?;
    Ok(out.join(host).join("release/fuzz"))
}

/// Fuzzes (or replays) one target; `Ok(false)` if it found a failing input.
fn fuzz_one(binary: &Path, target: &str, seconds: u64) -> Result<bool> {
    let work = target_dir().join("fuzz/corpus").join(target);
    let artifacts = target_dir().join("fuzz/artifacts").join(target);
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&artifacts)?;
    let seeds = corpus_dir().join(target);
    let regressions = workspace_root().join("fuzz/regressions").join(target);
    let mut cmd = Command::new(binary);
    cmd.env("FUZZ_TARGET", target).arg(format!("-artifact_prefix={}/", artifacts.display())).args([MAX_LEN, RSS_LIMIT]);
    if seconds == 0 {
        cmd.arg("-runs=0");
    } else {
        // New inputs go to the first directory: the scratch copy, not the checked-in seeds.
        cmd.arg(format!("-max_total_time={seconds}")).arg(&work);
    }
    cmd.arg(&seeds);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    let captured = process::capture_with_timeout(cmd, Duration::from_secs(seconds) + MARGIN)?;
    let runs = captured
        .output
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("Done ")?.split(' ').next()?.parse::<u64>().ok());
    let coverage = captured
        .output
        .lines()
        .rev()
        .find_map(|line| Some(line.split_once(" cov: ")?.1.split(' ').next()?.to_owned()));
    if captured.ending == Ending::Exited(0) {
        println!(
            "fuzz {target}: ok, {} inputs in {:.1}s, {} edges covered",
            runs.map_or("?".into(), |r| r.to_string()),
            captured.elapsed.as_secs_f64(),
            coverage.as_deref().unwrap_or("?")
        );
        return Ok(true);
    }
    let lines: Vec<&str> = captured.output.lines().collect();
    // The panic's own message comes before a backtrace longer than the tail: print it first.
    if let Some(at) = lines.iter().position(|line| line.contains("panicked at")) {
        println!("{}", lines[at..lines.len().min(at + PANIC_LINES)].join("\n"));
    }
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    println!("{tail}");
    // CI keeps only the log: the newest failing input in hex lets it be reproduced from there.
    if let Some(input) = fs::read_dir(&artifacts)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    {
        let bytes = fs::read(&input)?;
        if bytes.len() <= MAX_HEX_INPUT {
            println!("fuzz {target}: failing input ({} bytes, hex): {}", bytes.len(), hex(&bytes));
        }
    }
    println!(
        "fuzz {target}: FAILED ({:?}); the input is in {}: fix the bug, then keep it as a regression test \
         in fuzz/regressions/{target}/",
        captured.ending,
        artifacts.display()
    );
    Ok(false)
}

/// Builds the harness and fuzzes every target (or `options.target`) in turn; `Ok(false)`
/// if any failed.
pub fn run(options: &Options) -> Result<bool> {
    let all = targets()?;
    let chosen: Vec<String> = match &options.target {
        Some(name) if all.contains(name) => vec![name.clone()],
        Some(name) => bail!("no fuzz target {name:?}; the targets are: {}", all.join(", ")),
        None => all,
    };
    let binary = build()?;
    let mut ok = true;
    for target in &chosen {
        ok &= fuzz_one(&binary, target, options.seconds)?;
    }
    Ok(ok)
}

/// `bytes` as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
