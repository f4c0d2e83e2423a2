//! Booting one benchmark configuration under QEMU `-icount` and keeping its console.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::thread;
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

/// One boot for [`boot_all`]: its log's name, its QEMU command, and the nonce of a boot of
/// the core (`None`: the baseline guest alone), as [`boot`] takes them.
pub struct Job {
    /// The log's name (`logs/<name>.log`).
    pub name: String,
    /// The QEMU command.
    pub cmd: Command,
    /// The nonce in the core's boot arguments, `None` without the core.
    pub nonce: Option<Nonce>,
}

/// Runs `jobs` through [`boot`], at most `parallel` QEMU processes at once, and returns their
/// consoles in the jobs' order; the first failed boot (in that order) is the error. Every
/// benchmark boot runs under `-icount`, where the figures are virtual time: boots side by
/// side only take longer on the host, which is why several may share its CPUs.
pub fn boot_all(jobs: Vec<Job>, parallel: usize) -> Result<Vec<String>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(count));
    thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    // The queue's lock is released before the boot: the next job is taken at once.
                    let next = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).next();
                    let Some((index, job)) = next else { break };
                    let console = boot(&job.name, job.cmd, job.nonce.as_ref());
                    results.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((index, console));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, console)| console).collect()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose "QEMU" is `sh -c SCRIPT` (a baseline boot: judged by its exit status).
    fn shell_job(name: &str, script: &str) -> Job {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Job { name: format!("runner-test-{name}"), cmd, nonce: None }
    }

    #[test]
    fn boots_side_by_side_keep_their_order_and_failures() {
        // The first job finishes last: the consoles still come back in the jobs' order.
        let jobs = vec![shell_job("slow", "sleep 0.3; echo one"), shell_job("fast", "echo two"), shell_job("third", "echo three")];
        let consoles = boot_all(jobs, 3).unwrap();
        assert_eq!(consoles.iter().map(|c| c.trim()).collect::<Vec<_>>(), ["one", "two", "three"]);
        let jobs = vec![shell_job("ok", "echo fine"), shell_job("fails", "echo broken; exit 3")];
        let error = boot_all(jobs, 2).unwrap_err().to_string();
        assert!(error.contains("runner-test-fails") && error.contains("broken"), "{error}");
        // One at a time works the same.
        let consoles = boot_all(vec![shell_job("a", "echo a"), shell_job("b", "echo b")], 1).unwrap();
        assert_eq!(consoles.iter().map(|c| c.trim()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(boot_all(Vec::new(), 4).unwrap().is_empty());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }
}
