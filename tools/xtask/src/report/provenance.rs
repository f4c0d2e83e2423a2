//! Where a run's figures come from: the core's git revision and the host that ran QEMU,
//! for `report.json` (`run.revision`, `run.host`), so a report taken elsewhere still says
//! what produced it.

use std::fs;
use std::process::Command;

use crate::paths::workspace_root;
use crate::process;

/// The core's revision and the host of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// `git rev-parse --short=12 HEAD` of the workspace, `-dirty` appended when the work tree
    /// has changes; `None` outside a git checkout.
    pub revision: Option<String>,
    /// The host: name, CPUs and kernel (`box, 2 CPUs, Linux 6.1.0`); parts it cannot read
    /// are left out.
    pub host: String,
}

/// The current workspace's revision and this host.
pub fn current() -> Provenance {
    Provenance { revision: revision(), host: host() }
}

fn git(args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(workspace_root()).args(args);
    process::output(&mut cmd).ok()
}

fn revision() -> Option<String> {
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|status| !status.trim().is_empty());
    Some(format!("{}{}", head.trim(), if dirty { "-dirty" } else { "" }))
}

fn host() -> String {
    let read = |path: &str| fs::read_to_string(path).ok().map(|text| text.trim().to_owned()).filter(|text| !text.is_empty());
    describe_host(
        read("/proc/sys/kernel/hostname"),
        std::thread::available_parallelism().ok().map(usize::from),
        read("/proc/sys/kernel/osrelease"),
    )
}

/// `name, N CPUs, Linux RELEASE`, leaving out what is unknown.
fn describe_host(name: Option<String>, cpus: Option<usize>, kernel: Option<String>) -> String {
    let parts: Vec<String> = [
        name,
        cpus.map(|n| format!("{n} CPU{}", if n == 1 { "" } else { "s" })),
        kernel.map(|release| format!("Linux {release}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() { "unknown".to_owned() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_says_what_is_known() {
        assert_eq!(describe_host(Some("box".into()), Some(2), Some("6.1.0".into())), "box, 2 CPUs, Linux 6.1.0");
        assert_eq!(describe_host(None, Some(1), None), "1 CPU");
        assert_eq!(describe_host(None, None, None), "unknown");
    }

    #[test]
    fn this_checkout_has_a_revision() {
        let revision = current().revision.expect("the workspace is a git checkout");
        let hash = revision.trim_end_matches("-dirty");
        assert_eq!(hash.len(), 12, "{revision}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{revision}");
    }
}
