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
/// status 0. Anything else is an error naming the log and quoting its end. Progress goes to
/// stderr as `name ... N s` on one line, or, for boots `side_by_side` with others, as whole
/// lines (`name started`, `name: N s`) that cannot interleave.
fn boot(name: &str, cmd: Command, nonce: Option<&Nonce>, side_by_side: bool) -> Result<String> {
    let dir = logs_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join(format!("{name}.log"));
    if side_by_side {
        eprintln!("xtask: bench: {name} started");
    } else {
        eprint!("xtask: bench: {name} ... ");
    }
    let marker = nonce.map(Nonce::end_marker);
    let captured = process::capture_watched(cmd, TIMEOUT, marker.as_deref())?;
    fs::write(&log, &captured.output).with_context(|| format!("cannot write {}", log.display()))?;
    let seconds = captured.elapsed.as_secs_f64();
    if side_by_side {
        eprintln!("xtask: bench: {name}: {seconds:.0} s");
    } else {
        eprintln!("{seconds:.0} s");
    }
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
/// the core (`None`: the baseline guest alone).
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
    let side_by_side = parallel > 1 && jobs.len() > 1;
    run_all(jobs, parallel, |job| boot(&job.name, job.cmd, job.nonce.as_ref(), side_by_side))
}

/// Runs `run` on every job, at most `parallel` at once on scoped threads, and returns the
/// results in the jobs' order; the first failure (in that order) is the error.
fn run_all<J: Send, T: Send>(jobs: Vec<J>, parallel: usize, run: impl Fn(J) -> Result<T> + Sync) -> Result<Vec<T>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(count));
    thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    // The queue's lock is released before the job runs: the next is taken at once.
                    let next = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).next();
                    let Some((index, job)) = next else { break };
                    let result = run(job);
                    results.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
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
    fn jobs_side_by_side_keep_their_order_and_failures() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        // The first job finishes last: the results still come back in the jobs' order, and
        // three jobs with three workers do run at the same time.
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let job = |(name, millis): (&str, u64)| -> Result<String> {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(millis));
            running.fetch_sub(1, Ordering::SeqCst);
            if name == "broken" { bail!("{name} failed") } else { Ok(name.to_owned()) }
        };
        let names = run_all(vec![("one", 300), ("two", 100), ("three", 100)], 3, job).unwrap();
        assert_eq!(names, ["one", "two", "three"]);
        assert_eq!(most.load(Ordering::SeqCst), 3);
        most.store(0, Ordering::SeqCst);
        let names = run_all(vec![("a", 20), ("b", 20), ("c", 20)], 1, job).unwrap();
        assert_eq!((names.join(","), most.load(Ordering::SeqCst)), ("a,b,c".to_owned(), 1));
        let error = run_all(vec![("fine", 10), ("broken", 10), ("also", 10)], 2, job).unwrap_err();
        assert_eq!(error.to_string(), "broken failed");
        assert!(run_all(Vec::<(&str, u64)>::new(), 4, job).unwrap().is_empty());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }
}
