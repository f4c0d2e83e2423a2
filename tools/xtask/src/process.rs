//! Running external programs: checked runs, captured output, and timed
//! captures of a console (stdout and stderr merged in order).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};
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
pub fn capture_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Captured> {
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
    let collector = thread::spawn(move || {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map(|_| bytes)
    });
    let ending = match child
        .wait_timeout(timeout)
        .context("cannot wait for child")?
    {
        Some(status) => status.code().map_or(Ending::Signaled, Ending::Exited),
        None => {
            // Already gone or not, it must not outlive us; the error of a
            // kill racing with its exit is irrelevant.
            let _ = child.kill();
            child.wait().context("cannot reap killed child")?;
            Ending::TimedOut(timeout)
        }
    };
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
