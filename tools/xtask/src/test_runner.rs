//! `cargo xtask test`: the host unit tests, then the QEMU cases, run one at a
//! time; one result line each, then a closing `N passed, M failed` line.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::assets::Assets;
use crate::cases::{CASES, Case};
use crate::image::BuildProfile;
use crate::paths::test_logs_dir;
use crate::process::{self, Captured};
use crate::profiles::Profile;
use crate::qemu::{Boot, Qemu};
use crate::toolchain;
use crate::verdict::Nonce;

/// How many console lines a failure report shows.
const TAIL_LINES: usize = 40;

/// A host test step: its name and what it runs. The workspace's tests run for
/// the host target, xtask's own separately.
struct HostStep {
    name: &'static str,
    runs: HostRun,
}

/// What a host step runs.
enum HostRun {
    /// `cargo` with these arguments.
    Cargo(&'static [&'static str]),
    /// A check written in xtask.
    Check(fn() -> Result<()>),
}

const HOST_STEPS: &[HostStep] = &[
    HostStep {
        name: "host-workspace",
        runs: HostRun::Cargo(&["test", "--workspace", "--exclude", "xtask"]),
    },
    HostStep {
        name: "host-xtask",
        runs: HostRun::Cargo(&["test", "--package", "xtask"]),
    },
    HostStep {
        name: "first-run-toolchain",
        runs: HostRun::Check(crate::first_run::check),
    },
    // A short coverage-guided run of every fuzz target (docs/fuzzing.md).
    HostStep {
        name: "host-fuzz",
        runs: HostRun::Cargo(&["xtask", "fuzz", "--seconds", "3"]),
    },
];

/// QEMU tests written in xtask rather than as [`Case`]s (each boots QEMU itself), run after
/// the cases.
const QEMU_STEPS: &[HostStep] = &[
    // The Pi 4 guest's tree from Debian's real DTB as the firmware passes it (QEMU dumps it).
    HostStep { name: "rpi4-guest-tree", runs: HostRun::Check(crate::board_trees::check) },
    HostStep { name: crate::irqsoff_compare::CASE_NAME, runs: HostRun::Check(crate::irqsoff_compare::check_case) },
];

/// Which tests to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Skip the QEMU cases.
    pub host_only: bool,
    /// Skip the host unit tests.
    pub qemu_only: bool,
    /// Only tests whose name contains this.
    pub filter: Option<String>,
}

impl Selection {
    fn wants(&self, name: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|filter| name.contains(filter))
    }

    fn host_steps(&self) -> Vec<&'static HostStep> {
        if self.qemu_only {
            return Vec::new();
        }
        HOST_STEPS
            .iter()
            .filter(|step| self.wants(step.name))
            .collect()
    }

    fn cases(&self) -> Vec<&'static Case> {
        if self.host_only {
            return Vec::new();
        }
        CASES.iter().filter(|case| self.wants(case.name)).collect()
    }

    fn qemu_steps(&self) -> Vec<&'static HostStep> {
        QEMU_STEPS.iter().filter(|step| !self.host_only && self.wants(step.name)).collect()
    }

    /// The names of the selected tests, in running order.
    pub fn names(&self) -> Vec<&'static str> {
        let host = self.host_steps().into_iter().map(|step| step.name);
        host.chain(self.cases().into_iter().map(|case| case.name))
            .chain(self.qemu_steps().into_iter().map(|step| step.name))
            .collect()
    }
}

/// Counts results and prints their lines.
#[derive(Debug, Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn pass(&mut self, name: &str, elapsed: Duration) {
        self.passed += 1;
        println!("PASS {name} ({:.1}s)", elapsed.as_secs_f64());
    }

    fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        println!("FAIL {name}: {reason}");
    }
}

/// Runs the selected tests; `Ok(false)` if any failed.
pub fn run(selection: &Selection) -> Result<bool> {
    let steps = selection.host_steps();
    let cases = selection.cases();
    if steps.is_empty() && cases.is_empty() && selection.qemu_steps().is_empty() {
        bail!(
            "no test selected; the tests are: {}",
            Selection::default().names().join(", ")
        );
    }
    let mut report = Report::default();
    for step in steps {
        run_host_step(step, &mut report);
    }
    if !cases.is_empty() {
        run_cases(&cases, &mut report);
    }
    for step in selection.qemu_steps() {
        run_host_step(step, &mut report);
    }
    println!("{} passed, {} failed", report.passed, report.failed);
    Ok(report.failed == 0)
}

fn run_host_step(step: &HostStep, report: &mut Report) {
    let start = Instant::now();
    let result = match step.runs {
        HostRun::Cargo(args) => process::run(toolchain::cargo().args(args)),
        HostRun::Check(check) => check(),
    };
    match result {
        Ok(()) => report.pass(step.name, start.elapsed()),
        Err(err) => report.fail(step.name, &format!("{err:#}")),
    }
}

/// Runs the QEMU cases one after the other (QEMU is CPU-bound, and the
/// machine may have few cores).
fn run_cases(cases: &[&Case], report: &mut Report) {
    let qemu = match Qemu::ensure_installed() {
        Ok(qemu) => qemu,
        Err(err) => {
            let reason = format!("no usable QEMU: {err:#}");
            for case in cases {
                report.fail(case.name, &reason);
            }
            return;
        }
    };
    eprintln!("xtask: using {}", qemu.describe());
    let mut assets = Assets::new(BuildProfile::Release);
    let mut guest: Option<crate::guest::Guest> = None;
    for case in cases {
        let needs_guest = matches!(
            case.scenario,
            crate::cases::Scenario::LinuxGuest { .. }
                | crate::cases::Scenario::MainJob { .. }
                | crate::cases::Scenario::Soak { .. }
                | crate::cases::Scenario::ImageBoot { .. }
        );
        let guest_args = if needs_guest {
            if guest.is_none() {
                match crate::guest::Guest::prepare() {
                    Ok(prepared) => guest = Some(prepared),
                    Err(err) => {
                        report.fail(case.name, &format!("cannot prepare the guest: {err:#}"));
                        continue;
                    }
                }
            }
            match (&guest, case.scenario) {
                (_, crate::cases::Scenario::ImageBoot { .. }) | (None, _) => Vec::new(),
                (Some(guest), _) => match crate::guest::core_qemu_args(guest) {
                    Ok(args) => args,
                    Err(err) => {
                        report.fail(case.name, &format!("cannot write the guest bundle: {err:#}"));
                        continue;
                    }
                },
            }
        } else if case.scenario == crate::cases::Scenario::EarlyHangGuest {
            match crate::guest::early_hang::write_bundle(&crate::paths::target_dir().join("guest")) {
                Ok(bundle) => vec!["-initrd".to_string(), bundle.display().to_string()],
                Err(err) => {
                    report.fail(case.name, &format!("cannot write the early-hang guest: {err:#}"));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let nonce = match Nonce::generate() {
            Ok(nonce) => nonce,
            Err(err) => {
                report.fail(case.name, &format!("{err:#}"));
                continue;
            }
        };
        // An image-boot case boots the folder `cargo xtask image` writes, not the usual files.
        let folder = match (case.scenario, &guest) {
            (crate::cases::Scenario::ImageBoot { board, corrupt, uboot }, Some(guest)) => {
                match image_folder(&mut assets, guest, board, corrupt, uboot.then_some(&nonce), case.name) {
                    Ok(folder) => Some((folder, uboot)),
                    Err(err) => {
                        report.fail(case.name, &format!("cannot write the image folder: {err:#}"));
                        continue;
                    }
                }
            }
            _ => None,
        };
        let run = run_case(&qemu, &mut assets, case, &guest_args, folder.as_ref(), nonce).map(|mut run| {
            if let (crate::cases::Scenario::MainJob { .. }, Some(guest)) = (case.scenario, &guest)
                && run.failures.is_empty()
            {
                run.failures.extend(crate::cases::main_job_report_problems(&run.captured.output, &guest.system_map));
            }
            if let Some(plan) = case.scenario.soak_plan()
                && run.failures.is_empty()
            {
                run.failures.extend(crate::soak::problems(&run.captured.output, &plan));
            }
            run
        });
        match run {
            Ok(run) if run.failures.is_empty() => report.pass(case.name, run.captured.elapsed),
            Ok(run) => {
                report.fail(case.name, &run.failures.join("; "));
                print_failure_context(&run);
            }
            Err(err) => report.fail(case.name, &format!("{err:#}")),
        }
    }
}

/// One finished QEMU case.
struct CaseRun {
    command: String,
    log: PathBuf,
    captured: Captured,
    failures: Vec<String>,
}

/// Writes `board`'s folder for the image-boot case `name` (`target/test-images/<name>/`), with
/// one bit of the bundle's initramfs flipped if `corrupt`, and `nonce` in the core's command
/// line it holds if given (a U-Boot boot, where the folder's script sets the command line).
fn image_folder(
    assets: &mut Assets,
    guest: &crate::guest::Guest,
    board: crate::image::Board,
    corrupt: bool,
    nonce: Option<&Nonce>,
    name: &str,
) -> Result<crate::flash::Folder> {
    if nonce.is_some() {
        // mkimage for boot.scr, and the U-Boot the case boots.
        crate::uboot::ensure_installed()?;
    }
    let options = crate::flash::Options {
        board,
        script: crate::cases::IMAGE_BOOT_SCRIPT.to_owned(),
        duration_s: crate::cases::IMAGE_BOOT_SECONDS,
        load: crate::guest::init::Load::Idle,
        core_extra: nonce.map(Nonce::bootarg).unwrap_or_default(),
    };
    let folder = crate::flash::write(assets, guest, &options, &crate::paths::target_dir().join("test-images").join(name))?;
    if corrupt {
        let mut bytes = fs::read(&folder.bundle).with_context(|| format!("cannot read {}", folder.bundle.display()))?;
        let header = platform::guest_bundle::BundleHeader::parse(&bytes, bytes.len() as u64)
            .map_err(|err| anyhow::anyhow!("the bundle just written: {err}"))?;
        let middle = header.initramfs.offset + header.initramfs.size / 2;
        bytes[middle as usize] ^= 1;
        fs::write(&folder.bundle, &bytes).with_context(|| format!("cannot write {}", folder.bundle.display()))?;
    }
    Ok(folder)
}

fn run_case(
    qemu: &Qemu,
    assets: &mut Assets,
    case: &Case,
    guest_args: &[String],
    folder: Option<&(crate::flash::Folder, bool)>,
    nonce: Nonce,
) -> Result<CaseRun> {
    let profile = Profile::load(case.profile)?;
    let files = assets.for_profile(&profile)?;
    let mut extra_args: Vec<String> = case.qemu_args.iter().map(|arg| (*arg).to_owned()).chain(guest_args.iter().cloned()).collect();
    // The folder's own files: its core, its device tree, its cmdline.txt, its bundle as the
    // initrd (as the Pi's firmware or U-Boot would load them).
    let (kernel, dtb, bootargs) = match folder {
        Some((folder, false)) => {
            let cmdline = folder.dir.join(crate::flash::CMDLINE);
            let text = fs::read_to_string(&cmdline).with_context(|| format!("cannot read {}", cmdline.display()))?;
            extra_args.extend(["-initrd".to_owned(), folder.bundle.display().to_string()]);
            (folder.core.clone(), folder.dtb.clone(), nonce.add_to(text.trim()))
        }
        _ => (files.image.raw.clone(), files.dtb.clone(), nonce.add_to(&case.bootargs())),
    };
    let cmd = match folder {
        // U-Boot finds the folder's boot.scr on a FAT disk made of the folder, as on a board.
        Some((folder, true)) => {
            let disk = format!("if=none,id=boot,format=raw,readonly=on,file=fat:{}", folder.dir.display());
            extra_args.extend(["-drive".to_owned(), disk, "-device".to_owned(), "virtio-blk-device,drive=boot".to_owned()]);
            qemu.firmware_command(&profile, &crate::uboot::ensure_installed()?, &extra_args)
        }
        _ => qemu.command(&Boot { profile: &profile, kernel: &kernel, dtb: dtb.as_deref(), bootargs: &bootargs, extra_args: &extra_args }),
    };
    let command = process::describe(&cmd);
    let captured = process::capture_watched(cmd, case.timeout, Some(&nonce.end_marker()))?;

    let logs = test_logs_dir();
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log = logs.join(format!("{}.log", case.name));
    fs::write(&log, &captured.output).with_context(|| format!("cannot write {}", log.display()))?;

    let failures = case
        .expectations(profile.smp)
        .check(captured.ending, &captured.output, &nonce);
    Ok(CaseRun {
        command,
        log,
        captured,
        failures,
    })
}

fn print_failure_context(run: &CaseRun) {
    println!("  command: {}", run.command);
    println!("  log: {}", run.log.display());
    let lines: Vec<&str> = run.captured.output.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    println!("  last {} console lines:", tail.len());
    for line in tail {
        println!("  | {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_filters_by_kind_and_name() {
        let all = Selection::default().names();
        assert_eq!(all.len(), HOST_STEPS.len() + CASES.len() + QEMU_STEPS.len());
        assert_eq!(all[0], "host-workspace");

        let qemu = Selection {
            qemu_only: true,
            ..Selection::default()
        }
        .names();
        assert_eq!(qemu.len(), CASES.len() + QEMU_STEPS.len());
        assert_eq!(qemu.last(), Some(&crate::irqsoff_compare::CASE_NAME));

        let host = Selection {
            host_only: true,
            ..Selection::default()
        }
        .names();
        assert_eq!(host, ["host-workspace", "host-xtask", "first-run-toolchain", "host-fuzz"]);

        let virt = Selection {
            filter: Some("boot-virt-gicv2".into()),
            ..Selection::default()
        }
        .names();
        assert_eq!(virt, ["boot-virt-gicv2-1", "boot-virt-gicv2-4"]);
    }
}
