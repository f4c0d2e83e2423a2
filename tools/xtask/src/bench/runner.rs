//! Booting one benchmark configuration under QEMU `-icount` and keeping its console.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::paths;
use crate::process::{self, Ending};
use crate::verdict::{self, Nonce};

/// QEMU arguments making the guest runs repeatable: one instruction advances the virtual
/// clock by 1 ns, and idle time is skipped rather than slept.
pub const ICOUNT: &[&str] = &["-icount", "shift=0,sleep=off"];

/// How long one benchmark boot may take on the host before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(900);

/// Where the consoles of the benchmark's boots are kept (`target/bench/logs/`).
pub fn logs_dir() -> PathBuf {
    paths::target_dir().join("bench").join("logs")
}

/// Runs `cmd` (a QEMU boot), writes its console to `logs/<name>.log` and returns it. A boot of
/// the core (`nonce`: the one in its boot arguments) must end with the core's passing verdict
/// ([`verdict::judge`]); a guest booted without the core (`None`, the baseline) with QEMU's
/// status 0. Anything else is an error naming the log and quoting its end.
pub fn boot(name: &str, cmd: Command, nonce: Option<&Nonce>) -> Result<String> {
    let dir = logs_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join(format!("{name}.log"));
    eprint!("xtask: bench: {name} ... ");
    let marker = nonce.map(Nonce::end_marker);
    let captured = process::capture_watched(cmd, TIMEOUT, marker.as_deref())?;
    fs::write(&log, &captured.output).with_context(|| format!("cannot write {}", log.display()))?;
    eprintln!("{:.0} s", captured.elapsed.as_secs_f64());
    let problem = match nonce {
        Some(nonce) => match verdict::judge(captured.ending, &captured.output, nonce) {
            Ok(0) => None,
            Ok(code) => Some(format!("the core's verdict FAIL (exit code {code})")),
            Err(why) => Some(why),
        },
        None if captured.ending == Ending::Exited(0) => None,
        None => Some(format!("QEMU ended with {:?}", captured.ending)),
    };
    if let Some(problem) = problem {
        bail!("{name}: {problem} (console in {}); its last lines:\n{}", log.display(), tail(&captured.output, 15));
    }
    Ok(captured.output)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }
}
