//! Running external programs: checked runs, captured output, and timed
//! captures of a console (stdout and stderr merged in order).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wait_timeout::ChildExt;

/// Renders a command as a shell line (with the variables it sets), quoting
/// where needed, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(name, value)| {
            let value = shell_quote(value?);
            Some(format!("{}={value}", name.to_string_lossy()))
        })
        .collect();
    words.push(shell_quote(cmd.get_program()));
    words.extend(cmd.get_args().map(shell_quote));
    let line = words.join(" ");
    match cmd.get_current_dir() {
        Some(dir) => format!("(cd {} && {line})", shell_quote(dir.as_os_str())),
        None => line,
    }
}

/// Quotes one word for a POSIX shell if it needs it.
pub fn shell_quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=,:+@%^".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio and returns its exit status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))
}

/// Runs `cmd` with inherited stdio and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd`, returning its stdout; fails (quoting stderr) unless it succeeds.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", describe(cmd)))
}

/// How a timed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program exited with this status code.
    Exited(i32),
    /// The program was killed by a signal it did not expect.
    Signaled,
    /// The program ran past its time limit and was killed.
    TimedOut(Duration),
    /// The program printed its end marker but did not exit within [`END_GRACE`], and was
    /// killed (a board whose core cannot power the machine off).
    AfterVerdict,
}

/// How long a program may keep running after it printed its end marker.
pub const END_GRACE: Duration = Duration::from_secs(3);
/// How often a watched run is polled.
const POLL: Duration = Duration::from_millis(100);

/// Waits for `child` until it exits, `timeout` passes (watchdog), or [`END_GRACE`] after
/// `ended` became true; kills it in the last two cases.
pub fn wait_watched(child: &mut Child, timeout: Duration, ended: &AtomicBool) -> Result<Ending> {
    let start = Instant::now();
    let mut ended_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.wait_timeout(POLL).context("cannot wait for child")? {
            return Ok(status.code().map_or(Ending::Signaled, Ending::Exited));
        }
        if ended_at.is_none() && ended.load(Ordering::Relaxed) {
            ended_at = Some(Instant::now());
        }
        let ending = match ended_at {
            Some(at) if at.elapsed() >= END_GRACE => Ending::AfterVerdict,
            _ if start.elapsed() >= timeout => Ending::TimedOut(timeout),
            _ => continue,
        };
        // Already gone or not, it must not outlive us; the error of a kill racing with its
        // exit is irrelevant.
        let _ = child.kill();
        child.wait().context("cannot reap killed child")?;
        return Ok(ending);
    }
}

/// Watches a stream of output for a marker (which may straddle reads): sets its flag once
/// the marker appeared.
pub struct MarkerWatch {
    marker: Option<String>,
    tail: Vec<u8>,
    seen: Arc<AtomicBool>,
}

impl MarkerWatch {
    /// Watches for `marker` (nothing if `None`), reporting into `seen`.
    pub fn new(marker: Option<&str>, seen: Arc<AtomicBool>) -> Self {
        Self { marker: marker.map(str::to_owned), tail: Vec::new(), seen }
    }

    /// Looks at the next `bytes` of output.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(marker) = &self.marker else { return };
        let marker = marker.as_bytes();
        self.tail.extend_from_slice(bytes);
        if self.tail.windows(marker.len()).any(|window| window == marker) {
            self.seen.store(true, Ordering::Relaxed);
        }
        let keep = marker.len().saturating_sub(1);
        let drop = self.tail.len().saturating_sub(keep);
        self.tail.drain(..drop);
    }
}

/// What a timed run printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// How the program ended.
    pub ending: Ending,
    /// Everything it printed on stdout and stderr, in order, with `\r` removed.
    pub output: String,
    /// Wall-clock time from start to end.
    pub elapsed: Duration,
}

/// Runs `cmd` with no stdin and its stdout and stderr merged into one pipe,
/// killing it after `timeout`.
pub fn capture_with_timeout(cmd: Command, timeout: Duration) -> Result<Captured> {
    capture_watched(cmd, timeout, None)
}

/// [`capture_with_timeout`], also ending the run [`END_GRACE`] after `end_marker` appeared in
/// its output (the core's verdict line, when the core cannot power the machine off).
pub fn capture_watched(mut cmd: Command, timeout: Duration, end_marker: Option<&str>) -> Result<Captured> {
    let (mut reader, writer) = io::pipe().context("cannot create a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone().context("cannot duplicate a pipe")?)
        .stderr(writer);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(&cmd)))?;
    // The command still holds the pipe's write ends: close them so the
    // reader sees end-of-file when the child exits.
    drop(cmd);
    let seen = Arc::new(AtomicBool::new(false));
    let mut watch = MarkerWatch::new(end_marker, Arc::clone(&seen));
    let collector = thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(bytes),
                Ok(n) => {
                    watch.feed(&chunk[..n]);
                    bytes.extend_from_slice(&chunk[..n]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    });
    let ending = wait_watched(&mut child, timeout, &seen)?;
    let elapsed = start.elapsed();
    let bytes = collector
        .join()
        .expect("output collector panicked")
        .context("cannot read child output")?;
    let output = String::from_utf8_lossy(&bytes).replace('\r', "");
    Ok(Captured {
        ending,
        output,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote(OsStr::new("-M")), "-M");
        assert_eq!(
            shell_quote(OsStr::new("virt,gic-version=3")),
            "virt,gic-version=3"
        );
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
    }

    #[test]
    fn captures_merged_output_and_exit_code() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 7"]);
        let captured = capture_with_timeout(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(captured.ending, Ending::Exited(7));
        assert_eq!(captured.output, "out\nerr\n");
    }

    #[test]
    fn ends_a_run_that_printed_its_marker_but_does_not_exit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'verdict: PASS (exit code 0, nonce 12)'; exec sleep 30"]);
        let captured = capture_watched(cmd, Duration::from_secs(20), Some(", nonce 12)")).unwrap();
        assert_eq!(captured.ending, Ending::AfterVerdict);
        assert!(captured.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn marker_watch_sees_markers_split_across_reads() {
        let seen = Arc::new(AtomicBool::new(false));
        let mut watch = MarkerWatch::new(Some("nonce ab)"), Arc::clone(&seen));
        watch.feed(b"verdict: PASS (exit code 0, non");
        assert!(!seen.load(Ordering::Relaxed));
        watch.feed(b"ce a");
        watch.feed(b"b)\n");
        assert!(seen.load(Ordering::Relaxed));
    }

    #[test]
    fn kills_on_timeout() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let captured = capture_with_timeout(cmd, Duration::from_millis(300)).unwrap();
        assert_eq!(
            captured.ending,
            Ending::TimedOut(Duration::from_millis(300))
        );
        assert_eq!(captured.output, "started\n");
        assert!(captured.elapsed < Duration::from_secs(10));
    }
}
