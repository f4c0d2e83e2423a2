//! `cargo xtask`: builds the companion core's boot images, boots them under
//! QEMU with the profiles in `qemu/`, and runs the host and QEMU tests.

mod assets;
mod bench;
mod board_trees;
mod cases;
mod debian;
mod expect;
mod first_run;
mod flash;
mod fuzz;
mod guest;
mod image;
mod integrity;
mod irqsoff_compare;
mod linux_package;
mod machine;
mod paths;
mod process;
mod profiles;
mod qemu;
mod qemu_dtb;
mod report;
mod soak;
mod test_runner;
mod toolchain;
mod uboot;
mod verdict;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use assets::Assets;
use guest::Guest;
use guest::init::Load;
use image::{Board, BuildProfile};
use linux_package::LinuxPackage;
use profiles::Profile;
use qemu::{Boot, Qemu};

/// Build, run and test the companion core.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the core's boot image (target/images/<board>/Image).
    Build {
        /// The board to build for.
        #[arg(long, value_enum, default_value_t = Board::QemuVirt)]
        board: Board,
        #[command(flatten)]
        build: BuildFlags,
    },
    /// Write the folder to copy onto a board's boot medium (docs/boards.md, "Flashing"): the
    /// core, the guest bundle (Debian's guest kernel, the initramfs and the guest's command
    /// line in one file), the board's device tree; for rpi4 the Pi firmware, config.txt and
    /// cmdline.txt; for imx8 a U-Boot script; for qemu-virt the core's cmdline.txt.
    Image {
        /// The board.
        #[arg(long, value_enum, default_value_t = Board::QemuVirt)]
        board: Board,
        /// The folder to write (default target/flash/<board>).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// What the guest runs (a script of its initramfs, as for `run`).
        #[arg(long, value_name = "NAME", default_value = "cyclictest")]
        guest_script: String,
        /// How long the latency test and the guest's script run: 30s, 5m, 1h or plain seconds.
        #[arg(long, value_name = "DURATION", default_value = "60", value_parser = parse_duration)]
        duration: u64,
        #[command(flatten)]
        build: BuildFlags,
    },
    /// The main job: the core on QEMU hosting Debian PREEMPT_RT, the oob latency test beside
    /// the guest's cyclictest and a load (started by the guest with `companion latmus`; by
    /// the core's arguments with --no-guest); live console, then a latency table and a report
    /// in target/report/<run>/. Exits with the exit code of the core's verdict (1 when the run
    /// has none: a hang the watchdog stopped, or QEMU ending without one).
    Run {
        /// The board QEMU emulates.
        #[arg(long, value_enum, default_value_t = Board::QemuVirt)]
        board: Board,
        /// The GIC version (QEMU virt; default v3, which the Linux guest needs).
        #[arg(long, value_enum, value_name = "VERSION")]
        gic: Option<machine::Gic>,
        /// The number of CPUs (QEMU virt, 1 to 8; default 1). The guest gets one vCPU per CPU;
        /// the latency test runs on the last.
        #[arg(long, value_name = "N")]
        cpus: Option<u32>,
        /// A QEMU profile (a file qemu/<NAME>.toml) instead of --board/--gic/--cpus.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["gic", "cpus"])]
        profile: Option<String>,
        /// How QEMU keeps time. icount: `-icount shift=0,sleep=off`, virtual time is the
        /// instruction count, so the figures measure the core and repeat run to run (as
        /// `cargo xtask bench` runs). tcg: plain TCG, virtual time is the host's clock, so
        /// the figures mostly measure how the host schedules QEMU's threads.
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::Icount)]
        mode: Mode,
        /// Boot the core alone, without the Linux guest.
        #[arg(long)]
        no_guest: bool,
        /// What the guest runs (a script of its initramfs: uname, cyclictest,
        /// cyclictest-stress, rtc-alarm, bench, hackbench, stress-ng, kallsyms, shell).
        #[arg(long, value_name = "NAME", default_value = "cyclictest")]
        guest_script: String,
        /// Your own guest kernel (a raw arm64 `Image`) instead of Debian's.
        #[arg(long, value_name = "FILE")]
        guest_kernel: Option<std::path::PathBuf>,
        /// Your own initramfs instead of the one built from Debian packages.
        #[arg(long, value_name = "FILE")]
        guest_initrd: Option<std::path::PathBuf>,
        /// The guest's whole kernel command line instead of the default (which selects
        /// `--guest-script`, the duration and `--load`).
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        guest_append: Option<String>,
        /// The load running in the guest next to cyclictest, after EVL's method: idle
        /// (nothing), grinder (a hackbench loop and `dd bs=128M` from /dev/zero in a loop) or
        /// neighbour (stress-ng's switch, vm and memcpy stressors). Default: grinder with
        /// `--guest-script cyclictest`, idle otherwise (only that script runs a load).
        #[arg(long, value_enum, value_name = "NAME", conflicts_with_all = ["no_guest", "guest_append"])]
        load: Option<guest::init::Load>,
        /// How long the latency test and cyclictest run: 30s, 5m, 1h or plain seconds (0: boot
        /// only; at most 24h).
        #[arg(long, value_name = "DURATION", default_value = "10", value_parser = parse_duration, allow_negative_numbers = true)]
        duration: u64,
        /// The latency test's period, in microseconds (10 to 1000000).
        #[arg(long, value_name = "US", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=1_000_000), allow_negative_numbers = true)]
        period: u64,
        /// Show only the table at the end: no live console, no status line (the console is
        /// still written to the report folder).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        destination: ReportFlags,
        /// More boot arguments for the core, after the latency test's.
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        append: Option<String>,
        /// The irqs-off hunter's sampling period in microseconds, 0 to turn it off: while an
        /// in-band IRQ waits because Linux has IRQs masked, an oob timer samples the guest's PC
        /// every US µs (`companion.irqsoff=US`); the report names the locations with the guest
        /// kernel's System.map. On by default (the guest then boots with `nokaslr`); 10 to
        /// 1000000 when on.
        #[arg(long, value_name = "US", default_value_t = 1000, conflicts_with = "no_guest", value_parser = parse_irqsoff_period)]
        irqsoff: u64,
        /// The guest kernel's System.map naming the irqs-off hunter's locations (default: the
        /// map `cargo xtask` builds once per kernel from Debian's kernel's own /proc/kallsyms).
        #[arg(long, value_name = "FILE")]
        system_map: Option<PathBuf>,
        #[command(flatten)]
        build: BuildFlags,
        /// Extra QEMU arguments, after `--`.
        #[arg(last = true, value_name = "QEMU_ARGS")]
        qemu_args: Vec<String>,
    },
    /// `run` with the irqs-off hunter (`--irqsoff PERIOD`): where Linux (cyclictest and its
    /// load) holds in-band IRQs off while one waits, as a top list of guest functions.
    Irqsoff {
        /// The QEMU profile (a file qemu/<NAME>.toml).
        #[arg(long, value_name = "NAME", default_value = profiles::DEFAULT)]
        profile: String,
        /// How long the guest's cyclictest (and the core's latency test) runs: 30s, 5m, 1h or
        /// plain seconds.
        #[arg(long, value_name = "DURATION", default_value = "10", value_parser = parse_duration, allow_negative_numbers = true)]
        duration: u64,
        /// The load next to cyclictest (idle, grinder, neighbour; default grinder).
        #[arg(long, value_enum, value_name = "NAME")]
        load: Option<guest::init::Load>,
        /// The hunter's sampling period, in microseconds, as `run --irqsoff` (each sample is a
        /// timer IRQ on every vCPU's CPU: 100 µs overloads QEMU's emulation on a small host,
        /// 1000 µs costs it little).
        #[arg(long = "irqsoff-period", value_name = "US", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
        period: u64,
        /// The guest kernel's System.map naming the locations (see `run --system-map`).
        #[arg(long, value_name = "FILE")]
        system_map: Option<PathBuf>,
        /// How QEMU keeps time (see `run --mode`).
        #[arg(long, value_enum, value_name = "MODE", default_value = "tcg")]
        mode: Mode,
        #[command(flatten)]
        compare: irqsoff_compare::Flags,
        #[command(flatten)]
        build: BuildFlags,
    },
    /// Run the host unit tests, then the QEMU test cases.
    Test {
        /// Only the QEMU test cases.
        #[arg(long, conflicts_with = "host_only")]
        qemu_only: bool,
        /// Only the host unit tests.
        #[arg(long)]
        host_only: bool,
        /// List the selected tests instead of running them.
        #[arg(long)]
        list: bool,
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// Coverage-guided fuzzing of the parsers of guest- and user-controlled bytes (libFuzzer
    /// on the pinned stable toolchain; docs/fuzzing.md).
    Fuzz {
        /// Seconds of fuzzing per target; 0 replays the corpus once.
        #[arg(long, value_name = "N", default_value_t = 60)]
        seconds: u64,
        /// Only this target (trap, vgic, psci, pl011, fdt).
        target: Option<String>,
    },
    /// Repeatable figures under QEMU -icount: (1) the core's paths and footprint, (2) what the
    /// core costs Linux (the same guest with and without it), (3) oob latency under each guest
    /// load against an idle guest; prints tables with the targets, writes
    /// target/bench/bench.json.
    Bench {
        /// Only these groups (repeatable; default all).
        #[arg(long = "only", value_enum, value_name = "GROUP")]
        groups: Vec<bench::Group>,
        /// Boots per configuration in groups 2 and 3 (medians and spread over them).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
        /// How long cyclictest and the latency test run in each boot, in virtual seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
        duration: u64,
        /// Boots of groups 2 and 3 run side by side, at most this many at once (each under
        /// -icount: the figures stay virtual time, only the wall time changes).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
    },
    /// The baseline: the Linux test guest (Debian's PREEMPT_RT arm64 kernel and an initramfs
    /// of Debian packages, fetched and built into the cache) on QEMU without the core, on the
    /// same machine as `run` (1 GiB, --mode, --cpus, --load); the same table and report in
    /// target/report/<run>/ (target/report/latest-baseline links to the newest), so a run can
    /// be set beside its baseline. `--guest-script shell` is interactive (Ctrl-A X quits).
    /// Exits with QEMU's status.
    Guest {
        /// The script the guest runs, then powers off: uname, cyclictest,
        /// cyclictest-stress, hackbench, stress-ng or shell (as `run --guest-script`).
        #[arg(long = "guest-script", value_name = "NAME", default_value = "cyclictest")]
        script: String,
        /// How long timed scripts (cyclictest, stress-ng) run: 30s, 5m, 1h or plain seconds.
        #[arg(long, value_name = "DURATION", default_value_t = guest::init::DEFAULT_DURATION, value_parser = parse_duration, allow_negative_numbers = true)]
        duration: u64,
        /// The number of guest CPUs (as `run --cpus`).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
        cpus: u32,
        /// How QEMU keeps time (as `run --mode`).
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::Icount)]
        mode: Mode,
        /// The load next to cyclictest (as `run --load`; default grinder with the cyclictest
        /// script, idle otherwise).
        #[arg(long, value_enum, value_name = "NAME", conflicts_with = "guest_append")]
        load: Option<guest::init::Load>,
        /// Show only the table at the end (as `run --quiet`).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        destination: ReportFlags,
        /// Boot this kernel Image instead of Debian's RT kernel.
        #[arg(long, value_name = "PATH")]
        guest_kernel: Option<PathBuf>,
        /// Boot this initramfs instead of the generated one.
        #[arg(long, value_name = "PATH")]
        guest_initrd: Option<PathBuf>,
        /// The guest's whole kernel command line, replacing the generated one
        /// (which selects --script and --duration).
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        guest_append: Option<String>,
        /// Only fetch and build the guest's files and print their paths.
        #[arg(long)]
        prepare_only: bool,
        /// Extra QEMU arguments, after `--`.
        #[arg(last = true, value_name = "QEMU_ARGS")]
        qemu_args: Vec<String>,
    },
    /// A soak under QEMU -icount on one CPU: the core's latency test throughout while the guest
    /// cycles its loads; passes on the core's verdict, nothing lost, forwarded interrupts equal
    /// to the guest's /proc/interrupts, no overrun and no drift of the worst latency per minute.
    Soak {
        /// How long, in virtual minutes.
        #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
        minutes: u64,
        /// A short form instead, in seconds (the three loads in equal segments, one window each).
        #[arg(long, value_name = "SECONDS", conflicts_with = "minutes", value_parser = clap::value_parser!(u64).range(6..))]
        seconds: Option<u64>,
        /// One instruction every 2^N virtual ns (0: a 1 GHz virtual CPU, as the bench; 2: 250
        /// MHz). A larger N ends a long soak sooner in host time; its figures are those of the
        /// slower CPU, and the summary says which.
        #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
        icount_shift: u8,
        /// The restart soak instead (docs/guest-restart.md): the guest runs cyclictest and
        /// resets every SECONDS of its uptime (at least 8); passes on the core's verdict, every
        /// restart done, the core's heap no fuller after any reload than after the first, no
        /// overrun and no drift of the worst latency per boot.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(8..))]
        restart_every: Option<u64>,
    },
    /// List the QEMU profiles.
    Profiles,
    /// Check the pinned toolchain, installing its bare-metal target and llvm-tools (from
    /// rust-toolchain.toml) if they are missing, and print where it is.
    Toolchain,
    /// Fetch a profile's device tree and print its path; for a `virt` profile, the tree QEMU
    /// generates for its machine, dumped into target/dtb/<PROFILE>.dtb.
    Dtb {
        /// The QEMU profile.
        #[arg(value_name = "PROFILE")]
        qemu_profile: String,
    },
}

/// How QEMU keeps time in a `cargo xtask run` (see `run --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// `-icount shift=0,sleep=off`: virtual time counts instructions.
    Icount,
    /// Plain TCG: virtual time follows the host's clock.
    Tcg,
}

/// Where a run's report goes (`run`, `guest`).
#[derive(Debug, Args, Default)]
struct ReportFlags {
    /// Write the report into DIR (created if need be) instead of a new target/report/<run>/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A label for the run: its folder is target/report/<time>-<TAG>, and report.json says
    /// it (`run.tag`).
    #[arg(long, value_name = "TAG", value_parser = report::valid_tag)]
    tag: Option<String>,
}

impl From<ReportFlags> for report::Destination {
    fn from(flags: ReportFlags) -> Self {
        Self { tag: flags.tag, out: flags.out }
    }
}

/// The cargo profile the core is built with (optimized unless `--debug`).
#[derive(Debug, Args)]
struct BuildFlags {
    /// An unoptimized build of the core instead of the optimized one.
    #[arg(long)]
    debug: bool,
}

impl BuildFlags {
    fn profile(&self) -> BuildProfile {
        if self.debug {
            BuildProfile::Debug
        } else {
            BuildProfile::Release
        }
    }
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Build { board, build } => {
            let image = Assets::new(build.profile()).image(board)?;
            println!("{}", image.raw.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Image { board, out, guest_script, duration, build } => {
            if guest::init::script(&guest_script).is_none() {
                anyhow::bail!("--guest-script {guest_script}: no such script (known: {})", guest::init::script_names());
            }
            let load = effective_load(&guest_script, None)?;
            let options = flash::Options { board, load, script: guest_script, duration_s: duration, core_extra: String::new() };
            let dir = out.unwrap_or_else(|| flash::default_dir(board));
            let folder = flash::write(&mut Assets::new(build.profile()), &Guest::prepare()?, &options, &dir)?;
            println!("{}", folder.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            board,
            gic,
            cpus,
            profile,
            mode,
            no_guest,
            guest_script,
            guest_kernel,
            guest_initrd,
            guest_append,
            load,
            duration,
            period,
            quiet,
            destination,
            append,
            irqsoff,
            system_map,
            build,
            qemu_args,
        } => {
            // The `crash` script boots Linux four times: the latency test covers the three
            // restarts too (docs/guest-restart.md), not only the last boot's cyclictest.
            let latency_s = if guest_script == cases::RESTART_SCRIPT { duration + cases::RESTART_ALLOWANCE_S } else { duration };
            let latency_test = if duration == 0 { String::new() } else { format!("latmus={latency_s} latmus.period={period}") };
            // The main job's guest starts the latency test itself (`companion latmus` beside
            // cyclictest, in the same window); other scripts, a guest command line of the
            // user's and --no-guest keep the core's boot-argument form.
            // The core refuses Linux periods under 100 us (`MIN_GUEST_PERIOD_US` in
            // kernel/src/guest/control.rs): shorter ones keep the boot-argument form too.
            let guest_latency_test = (!no_guest
                && duration > 0
                && period >= MIN_GUEST_LATENCY_PERIOD_US
                && guest_append.is_none()
                && guest::init::starts_latency_test(&guest_script))
                .then_some(verdict::GuestLatencyTest { period_us: period, seconds: duration });
            let profile = match profile {
                Some(name) => {
                    anyhow::ensure!(board == Board::QemuVirt, "--profile {name} names the board itself; drop --board");
                    Profile::load(&name)?
                }
                // One CPU unless asked: the figures that measure the core (see --mode).
                None => machine::MachineFlags { board, gic, cpus: cpus.or((board == Board::QemuVirt).then_some(1)) }.resolve()?,
            };
            let mut qemu_args = qemu_args;
            if mode == Mode::Icount && !qemu_args.iter().any(|arg| arg == "-icount") {
                qemu_args.splice(0..0, ["-icount".to_owned(), "shift=0,sleep=off".to_owned()]);
            }
            if no_guest {
                let bootargs = qemu::bootargs([latency_test.as_str(), append.as_deref().unwrap_or("")]);
                let plan = ReportPlan {
                    duration_s: duration,
                    guest_kernel: None,
                    guest: false,
                    load: Load::Idle.to_string(),
                    system_map: None,
                    interactive: false,
                    period_us: period,
                    irqsoff_period_us: None,
                    guest_latency_test: None,
                    quiet,
                    destination: destination.into(),
                };
                return run(&profile, &bootargs, build.profile(), &qemu_args, &plan);
            }
            if let Some(why) = machine::guest_unsupported(&profile) {
                anyhow::bail!("{why}");
            }
            let mut guest = Guest::prepare()?;
            for (what, given, slot) in
                [("kernel", &guest_kernel, &mut guest.kernel), ("initramfs", &guest_initrd, &mut guest.initramfs)]
            {
                if let Some(path) = given {
                    anyhow::ensure!(path.is_file(), "--guest-{what} {}: no such file", path.display());
                    *slot = path.clone();
                }
            }
            if guest::init::script(&guest_script).is_none() {
                anyhow::bail!("--guest-script {guest_script}: no such script (known: {})", guest::init::script_names());
            }
            let load = effective_load(&guest_script, load)?;
            let hunter = if irqsoff > 0 { format!("companion.irqsoff={irqsoff}") } else { String::new() };
            let core_latency_test = if guest_latency_test.is_some() {
                verdict::GuestLatencyTest::CORE_ARG
            } else if guest::init::runs_own_latency_test(&guest_script) {
                ""
            } else {
                latency_test.as_str()
            };
            let mut bootargs = guest::core_bootargs(
                &[core_latency_test, hunter.as_str(), append.as_deref().unwrap_or("")],
                &guest_script,
                duration,
                load,
            );
            if let Some(test) = guest_latency_test {
                // And the channel's round trip after cyclictest, under the same load.
                bootargs = format!("{bootargs} {} {}", test.guest_arg(), guest::init::ping_arg());
            }
            // What the report names as the load: the guest command line's, as the guest sees it.
            let mut load_name = load.to_string();
            if let Some(guest_append) = &guest_append {
                let core = bootargs.split_once(" -- ").map_or(bootargs.as_str(), |(core, _)| core).to_string();
                bootargs = format!("{core} -- {guest_append}");
                load_name = guest::init::load_of_cmdline(guest_append).unwrap_or(Load::Idle.name()).to_owned();
            }
            // The irqs-off hunter's PCs are named with System.map's addresses: no KASLR (and
            // so no KPTI trampoline either) in the guest.
            if irqsoff > 0 && guest_append.is_none() {
                bootargs.push_str(" nokaslr");
            }
            let mut extra = guest::core_qemu_args(&guest)?;
            extra.extend(qemu_args);
            let plan = ReportPlan {
                duration_s: duration,
                guest_kernel: Some(guest.kernel.file_name().map_or_else(
                    || guest.kernel.display().to_string(),
                    |name| name.to_string_lossy().into_owned(),
                )),
                guest: true,
                load: load_name,
                // Debian's map names only Debian's kernel; another is read from its own kallsyms.
                system_map: system_map.or_else(|| match &guest_kernel {
                    None => Some(guest.system_map.clone()),
                    Some(_) if irqsoff == 0 => None,
                    Some(kernel) => guest::system_map(kernel, &guest.initramfs)
                        .map_err(|err| eprintln!("xtask: warning: irqs-off locations stay unnamed: {err:#}"))
                        .ok(),
                }),
                interactive: guest_script == "shell",
                period_us: period,
                irqsoff_period_us: (irqsoff > 0).then_some(irqsoff),
                guest_latency_test,
                quiet,
                destination: destination.into(),
            };
            run(&profile, &bootargs, build.profile(), &extra, &plan)
        }
        Command::Irqsoff { profile, duration, load, period, system_map, mode, compare, build } => {
            let hunt = |guest_kernel, guest_initrd, system_map| {
                dispatch(Command::Run {
                    board: Board::QemuVirt,
                    gic: None,
                    cpus: None,
                    profile: Some(profile.clone()),
                    mode,
                    no_guest: false,
                    guest_script: "cyclictest".to_owned(),
                    guest_kernel,
                    guest_initrd,
                    guest_append: None,
                    load,
                    duration,
                    period: 1000,
                    quiet: false,
                    destination: ReportFlags::default(),
                    append: None,
                    irqsoff: period,
                    system_map,
                    build: BuildFlags { debug: build.debug },
                    qemu_args: Vec::new(),
                })
            };
            if !compare.is_set() {
                return hunt(None, None, system_map);
            }
            let sides = irqsoff_compare::sides(&compare)?;
            irqsoff_compare::run(&sides, &irqsoff_compare::Settings { period_us: period }, &mut |side| {
                hunt(Some(side.kernel.clone()), Some(side.initramfs.clone()), Some(side.system_map.clone()))
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            qemu_only,
            host_only,
            list,
            filter,
        } => {
            let selection = test_runner::Selection {
                host_only,
                qemu_only,
                filter,
            };
            if list {
                selection.names().iter().for_each(|name| println!("{name}"));
                return Ok(ExitCode::SUCCESS);
            }
            Ok(if test_runner::run(&selection)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Fuzz { seconds, target } => Ok(if fuzz::run(&fuzz::Options { seconds, target })? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Bench { groups, runs, duration, jobs } => {
            bench::run(&bench::Options { groups, runs, duration_s: duration, jobs: jobs as usize })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Guest {
            script,
            duration,
            cpus,
            mode,
            load,
            quiet,
            destination,
            guest_kernel,
            guest_initrd,
            guest_append,
            prepare_only,
            qemu_args,
        } => {
            let options = GuestOptions {
                script,
                duration,
                cpus,
                mode,
                load,
                quiet,
                destination: destination.into(),
                kernel: guest_kernel,
                initrd: guest_initrd,
                append: guest_append,
                prepare_only,
            };
            run_guest(&options, &qemu_args)
        }
        Command::Toolchain => {
            let toolchain = toolchain::Toolchain::ensure_installed()?;
            println!(
                "toolchain ready: {} with {} and {}",
                toolchain::pinned_channel()?,
                toolchain::TARGET,
                toolchain.objcopy().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Soak { minutes, seconds, icount_shift, restart_every } => soak::run(
            match restart_every {
                None => seconds.map_or_else(|| soak::Plan::minutes(minutes), soak::Plan::short),
                Some(every) => soak::Plan::restarting(seconds.unwrap_or(minutes * 60), every),
            },
            icount_shift,
        ),
        Command::Profiles => {
            for profile in profiles::all()? {
                println!(
                    "{:<12} {:<10} {}",
                    profile.name, profile.board, profile.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dtb { qemu_profile } => {
            let profile = Profile::load(&qemu_profile)?;
            let Some(dtb) = &profile.dtb else {
                println!("{}", qemu_dtb::dump(&profile)?.display());
                return Ok(ExitCode::SUCCESS);
            };
            println!("{}", LinuxPackage::fetch()?.dtb(dtb)?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the report of a `cargo xtask run` needs besides the profile and QEMU.
#[derive(Debug, Clone)]
struct ReportPlan {
    /// The latency test's planned duration, in seconds.
    duration_s: u64,
    /// The guest kernel's file name, if a guest runs.
    guest_kernel: Option<String>,
    /// Whether a guest runs (in-band rows expected).
    guest: bool,
    /// The load next to the guest's cyclictest (`idle` without a guest).
    load: String,
    /// The guest kernel's System.map, to name the irqs-off hunter's locations.
    system_map: Option<PathBuf>,
    /// Whether the guest is interactive (`--guest-script shell`): no watchdog then.
    interactive: bool,
    /// The latency test's period, in µs.
    period_us: u64,
    /// The irqs-off hunter's sampling period, in µs (`None`: off).
    irqsoff_period_us: Option<u64>,
    /// The latency test the guest starts (`companion latmus`), if it is the guest's.
    guest_latency_test: Option<verdict::GuestLatencyTest>,
    /// `--quiet`: only the table.
    quiet: bool,
    /// Where the report goes.
    destination: report::Destination,
}

impl ReportPlan {
    /// The watchdog's limit: the run's length plus a margin generous enough for booting the
    /// guest under plain TCG on a small host (and -icount runs, whose virtual seconds can
    /// take longer than real ones); none for an interactive guest.
    fn watchdog(&self) -> Option<std::time::Duration> {
        (!self.interactive).then(|| std::time::Duration::from_secs(600 + 20 * self.duration_s))
    }
}

/// The load `cargo xtask run` puts next to `script`: the one asked for, else grinder for
/// `cyclictest` (the only script that runs a load) and idle for the others. A load other
/// than idle with another script is an error rather than silently not run.
fn effective_load(script: &str, asked: Option<Load>) -> Result<Load> {
    match asked {
        None if script == "cyclictest" => Ok(Load::default()),
        None => Ok(Load::Idle),
        Some(load) if load != Load::Idle && script != "cyclictest" => {
            anyhow::bail!("--load {load} needs --guest-script cyclictest (the {script} script runs no load)")
        }
        Some(load) => Ok(load),
    }
}

/// `cargo xtask run`: boots the core (and the guest, if given) on `profile_name`'s machine,
/// showing the console live while capturing it into `target/report/<run>/console.log`; at
/// the end prints the latency table and writes the report (see [`report`]).
fn run(
    profile: &Profile,
    bootargs: &str,
    build: BuildProfile,
    qemu_args: &[String],
    plan: &ReportPlan,
) -> Result<ExitCode> {
    let qemu = Qemu::ensure_installed()?;
    let files = Assets::new(build).for_profile(profile)?;
    let nonce = verdict::Nonce::generate()?;
    let bootargs = nonce.add_to(bootargs);
    let boot = Boot {
        profile,
        kernel: &files.image.raw,
        dtb: files.dtb.as_deref(),
        bootargs: &bootargs,
        extra_args: qemu_args,
    };
    let mut cmd = qemu.command(&boot);
    let (id, dir) = report::create_run_dir(&plan.destination)?;
    let view = if plan.quiet {
        report::progress::View::Quiet
    } else {
        eprintln!("xtask: {}", process::describe(&cmd));
        report::progress::View::Status { duration_s: plan.duration_s, period_us: plan.period_us }
    };
    let watch = report::Watch { watchdog: plan.watchdog(), end_marker: Some(nonce.end_marker()), view };
    let (ending, console, arrivals) = report::run_timed(&mut cmd, &dir.join("console.log"), &watch)?;
    let interrupted = report::interrupted();
    let judged = verdict::judge(ending, &console, &nonce);
    let info = report::model::RunInfo {
        id: id.clone(),
        profile: profile.name.clone(),
        board: profile.board.to_string(),
        gic: report::model::gic_of_machine(&profile.machine),
        cpus: profile.smp,
        load: plan.load.clone(),
        duration_s: plan.duration_s,
        qemu: qemu.describe(),
        guest_kernel: plan.guest_kernel.clone(),
        icount: qemu_args.iter().chain(&profile.extra_args).any(|arg| arg == "-icount"),
        period_us: plan.period_us,
        irqsoff_period_us: plan.irqsoff_period_us,
        tag: plan.destination.tag.clone(),
        rtd_arrivals_ms: arrivals.iter().map(|at| u64::try_from(at.as_millis()).unwrap_or(u64::MAX)).collect(),
        provenance: report::provenance::current(),
    };
    let mut report = report::Report::new(info, plan.guest, judged.as_ref().ok().copied(), &console);
    report.interrupted = interrupted;
    if let Some(map) = &plan.system_map
        && !report.measurements.irqsoff.is_empty()
    {
        if console.contains("KASLR enabled") {
            eprintln!("xtask: warning: the guest ran with KASLR: irqs-off locations stay unnamed (add nokaslr)");
        } else {
            report.symbolize(map);
        }
    }
    if !plan.quiet {
        println!();
    }
    print!("{}", report::table::render(&report));
    // The report must not hide the verdict: a failure to write it is only a warning. Only a
    // complete run (the core's verdict, no Ctrl-C) becomes `latest`.
    let complete = judged.is_ok() && !interrupted;
    // `latest` names folders under target/report only.
    let link = complete && plan.destination.out.is_none();
    match report.write(&dir).and_then(|()| if link { report::link_latest(&id) } else { Ok(()) }) {
        Ok(()) if plan.quiet => {}
        Ok(()) if complete => eprintln!("xtask: report in {}", dir.display()),
        Ok(()) => eprintln!(
            "xtask: partial report in {} ({}; target/report/latest left as it was)",
            dir.display(),
            if interrupted { "interrupted" } else { "no verdict" }
        ),
        Err(err) => eprintln!("xtask: warning: the report is incomplete: {err:#}"),
    }
    // An interrupted run's missing summary is the interruption, not a sampling problem.
    let mut problems = Vec::new();
    if !interrupted {
        if let Some(test) = plan.guest_latency_test {
            problems.extend(verdict::guest_latency_test_problems(&console, test));
        }
        problems.extend(verdict::sampling_problems(&console));
    }
    for problem in &problems {
        eprintln!("xtask: FAIL: {problem}");
    }
    Ok(match judged {
        Ok(0) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(0) => ExitCode::FAILURE,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(_) if interrupted => {
            eprintln!("xtask: interrupted: no verdict from the core");
            ExitCode::from(INTERRUPTED_EXIT)
        }
        Err(why) => {
            eprintln!("xtask: FAIL: {why}");
            ExitCode::FAILURE
        }
    })
}

/// The exit status of a run Ctrl-C cut short before the core's verdict: 128 + SIGINT, as
/// shells report it.
const INTERRUPTED_EXIT: u8 = 130;

/// What `cargo xtask guest` was asked for.
#[derive(Debug, Clone)]
struct GuestOptions {
    script: String,
    duration: u64,
    cpus: u32,
    mode: Mode,
    load: Option<Load>,
    quiet: bool,
    destination: report::Destination,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    prepare_only: bool,
}

/// `cargo xtask guest`: prepares the guest's files (or takes the user's)
/// and boots them on QEMU's virt machine without the core.
fn run_guest(options: &GuestOptions, qemu_args: &[String]) -> Result<ExitCode> {
    if options.append.is_none() && guest::init::script(&options.script).is_none() {
        anyhow::bail!(
            "no guest script {}; known: {}",
            options.script,
            guest::init::script_names()
        );
    }
    let prepared = if options.kernel.is_some() && options.initrd.is_some() {
        None
    } else {
        let start = Instant::now();
        let prepared = Guest::prepare()?;
        eprintln!("xtask: guest files ready in {:.1} s", start.elapsed().as_secs_f64());
        Some(prepared)
    };
    let pick = |given: &Option<PathBuf>, made: fn(&Guest) -> &PathBuf| -> Result<PathBuf> {
        let path = match (given, &prepared) {
            (Some(path), _) => path.clone(),
            (None, Some(guest)) => made(guest).clone(),
            (None, None) => unreachable!("prepared unless both files are given"),
        };
        anyhow::ensure!(path.is_file(), "guest file {} does not exist", path.display());
        Ok(path)
    };
    let kernel = pick(&options.kernel, |guest| &guest.kernel)?;
    let initrd = pick(&options.initrd, |guest| &guest.initramfs)?;
    let load = effective_load(&options.script, options.load)?;
    let append = options.append.clone().unwrap_or_else(|| {
        format!("{} guest.load={load}", guest::init::kernel_cmdline(&options.script, options.duration))
    });
    if options.prepare_only {
        println!("kernel {}", kernel.display());
        if let Some(guest) = &prepared {
            println!("system-map {}", guest.system_map.display());
        }
        println!("initramfs {}", initrd.display());
        println!("append {append}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("xtask: guest kernel {}", kernel.display());
    if let Some(guest) = &prepared {
        eprintln!("xtask: guest System.map {}", guest.system_map.display());
    }
    eprintln!("xtask: guest initramfs {}", initrd.display());
    let qemu = Qemu::ensure_installed()?;
    let mut extra = qemu_args.to_vec();
    if options.mode == Mode::Icount && !extra.iter().any(|arg| arg == "-icount") {
        extra.splice(0..0, ["-icount".to_owned(), "shift=0,sleep=off".to_owned()]);
    }
    let boot = guest::NoCoreBoot {
        kernel: &kernel,
        initrd: &initrd,
        append: &append,
        cpus: options.cpus,
        extra_args: &extra,
    };
    let mut cmd = boot.command(&qemu);
    if options.script == "shell" {
        eprintln!("xtask: {}", process::describe(&cmd));
        let start = Instant::now();
        let status = process::status(&mut cmd)?;
        eprintln!("xtask: QEMU exited ({status}) after {:.1} s", start.elapsed().as_secs_f64());
        return Ok(exit_code(status));
    }
    baseline(&qemu, &mut cmd, options, &kernel, load)
}

/// `cargo xtask guest` with a timed script: the console captured as `run` captures it, then
/// the same table and report (no oob rows: no core), `latest-baseline` moved for a run that
/// ended by itself.
fn baseline(qemu: &Qemu, cmd: &mut std::process::Command, options: &GuestOptions, kernel: &std::path::Path, load: Load) -> Result<ExitCode> {
    let (id, dir) = report::create_run_dir(&options.destination)?;
    let view = if options.quiet {
        report::progress::View::Quiet
    } else {
        eprintln!("xtask: {}", process::describe(cmd));
        report::progress::View::Console
    };
    let watch = report::Watch {
        watchdog: Some(std::time::Duration::from_secs(600 + 20 * options.duration)),
        end_marker: None,
        view,
    };
    let (ending, console) = report::run_captured(cmd, &dir.join("console.log"), &watch)?;
    let interrupted = report::interrupted();
    let exit = match ending {
        process::Ending::Exited(code) => Some(code),
        _ => None,
    };
    let info = report::model::RunInfo {
        id: id.clone(),
        profile: "guest-virt".into(),
        board: Board::QemuVirt.to_string(),
        gic: Some("v3".into()),
        cpus: options.cpus,
        load: load.to_string(),
        duration_s: options.duration,
        qemu: qemu.describe(),
        guest_kernel: kernel.file_name().map(|name| name.to_string_lossy().into_owned()),
        icount: options.mode == Mode::Icount,
        // cyclictest's interval (-i 1000).
        period_us: 1000,
        irqsoff_period_us: None,
        tag: options.destination.tag.clone(),
        // No core, so no `RTD|` lines to time.
        rtd_arrivals_ms: Vec::new(),
        provenance: report::provenance::current(),
    };
    let mut report = report::Report::baseline(info, exit, &console);
    report.interrupted = interrupted;
    if !options.quiet {
        println!();
    }
    print!("{}", report::table::render(&report));
    let link = exit == Some(0) && !interrupted && options.destination.out.is_none();
    let written = report.write(&dir).and_then(|()| if link { report::link_named("latest-baseline", &id) } else { Ok(()) });
    match written {
        Ok(()) if options.quiet => {}
        Ok(()) => eprintln!("xtask: baseline report in {}", dir.display()),
        Err(err) => eprintln!("xtask: warning: the report is incomplete: {err:#}"),
    }
    Ok(match (exit, interrupted) {
        (_, true) => ExitCode::from(INTERRUPTED_EXIT),
        (Some(0), false) => ExitCode::SUCCESS,
        (Some(code), false) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, false) => {
            eprintln!("xtask: FAIL: QEMU did not exit by itself ({ending:?})");
            ExitCode::FAILURE
        }
    })
}

/// The longest run `--duration` accepts: a day.
const MAX_DURATION_S: u64 = 24 * 3600;

/// The shortest latency-test period the core accepts from Linux (`MIN_GUEST_PERIOD_US` in
/// kernel/src/guest/control.rs): a shorter `--period` is given by the core's boot argument.
const MIN_GUEST_LATENCY_PERIOD_US: u64 = 100;

/// A duration as cyclictest's `-D` takes it: plain seconds, or a number with `s`, `m`, `h`
/// or `d`; at most [`MAX_DURATION_S`].
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` is not a duration: a whole number with an optional s, m, h or d (30s, 5m)")),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: a whole number with an optional s, m, h or d (30s, 5m)"))?;
    let seconds = value.checked_mul(scale).filter(|&s| s <= MAX_DURATION_S);
    seconds.ok_or_else(|| format!("{text} is longer than the 24h a run may take"))
}

/// `--irqsoff`: 0 (off) or a period of 10 µs to 1 s.
fn parse_irqsoff_period(text: &str) -> Result<u64, String> {
    let period: u64 = text.trim().parse().map_err(|_| format!("`{text}` is not a period in µs (0 turns the hunter off)"))?;
    if period == 0 || (10..=1_000_000).contains(&period) {
        Ok(period)
    } else {
        Err(format!("{period} µs: the hunter samples every 10 to 1000000 µs (0 turns it off)"))
    }
}

/// The exit code mirroring a child's status (128 + N for signal N, as shells do).
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(["xtask"].iter().chain(args)).map(|cli| cli.command)
    }

    fn load_of(args: &[&str]) -> Option<Load> {
        match parse(args) {
            Ok(Command::Run { load, .. }) => load,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn run_takes_a_known_load() {
        assert_eq!(load_of(&["run"]), None);
        assert_eq!(load_of(&["run", "--load", "idle"]), Some(Load::Idle));
        assert_eq!(load_of(&["run", "--load", "grinder"]), Some(Load::Grinder));
        assert_eq!(load_of(&["run", "--load", "neighbour", "--duration", "5"]), Some(Load::Neighbour));
        assert!(parse(&["run", "--load", "stress"]).is_err());
        assert!(parse(&["run", "--load", "grinder", "--no-guest"]).is_err());
        assert!(parse(&["run", "--load", "grinder", "--guest-append", "console=ttyAMA0"]).is_err());
    }

    #[test]
    fn run_takes_machine_flags_or_a_profile() {
        match parse(&["run", "--cpus", "2", "--gic", "v3", "--mode", "tcg"]) {
            Ok(Command::Run { board: Board::QemuVirt, gic: Some(machine::Gic::V3), cpus: Some(2), mode: Mode::Tcg, profile: None, .. }) => {}
            other => panic!("not parsed as asked: {other:?}"),
        }
        assert!(matches!(parse(&["run"]), Ok(Command::Run { mode: Mode::Icount, cpus: None, .. })));
        assert!(parse(&["run", "--mode", "kvm"]).is_err());
        assert!(matches!(parse(&["run", "--board", "rpi4", "--no-guest"]), Ok(Command::Run { board: Board::Rpi4, .. })));
        assert!(parse(&["run", "--profile", "virt-gicv3-1", "--cpus", "2"]).is_err());
        assert!(parse(&["run", "--gic", "v4"]).is_err());
        assert!(parse(&["run", "--board", "pdp11"]).is_err());
    }

    #[test]
    fn irqsoff_takes_a_period_and_a_load() {
        match parse(&["irqsoff", "--duration", "5", "--load", "idle"]) {
            Ok(Command::Irqsoff { duration: 5, load: Some(Load::Idle), period: 1000, .. }) => {}
            other => panic!("not an irqsoff run: {other:?}"),
        }
        assert!(matches!(parse(&["run", "--irqsoff", "50"]), Ok(Command::Run { irqsoff: 50, .. })));
        assert!(matches!(parse(&["run"]), Ok(Command::Run { irqsoff: 1000, .. })));
        assert!(matches!(parse(&["run", "--irqsoff", "0"]), Ok(Command::Run { irqsoff: 0, .. })));
        assert!(matches!(parse(&["run", "--no-guest"]), Ok(Command::Run { no_guest: true, .. })));
        assert!(parse(&["run", "--irqsoff", "100", "--no-guest"]).is_err());
    }

    #[test]
    fn durations_and_periods_are_checked_with_a_useful_message() {
        assert_eq!(parse_duration("30"), Ok(30));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert!(parse_duration("25h").unwrap_err().contains("24h"));
        assert!(parse_duration("5x").unwrap_err().contains("not a duration"));
        assert!(matches!(parse(&["run", "--duration", "2m"]), Ok(Command::Run { duration: 120, .. })));
        assert!(matches!(parse(&["guest", "--duration", "1m", "--guest-script", "uname"]), Ok(Command::Guest { duration: 60, .. })));
        let negative = parse(&["run", "--duration", "-1"]).unwrap_err().to_string();
        assert!(negative.contains("not a duration") && !negative.contains("-- -1"), "{negative}");
        assert!(parse(&["run", "--period", "12345678901234"]).is_err());
        assert!(parse(&["run", "--period", "5"]).is_err());
        assert!(parse(&["run", "--irqsoff", "5"]).unwrap_err().to_string().contains("10 to 1000000"));
        assert!(parse(&["irqsoff", "--period", "100"]).is_err(), "--period is the latency test's only");
        assert!(matches!(parse(&["irqsoff", "--irqsoff-period", "100"]), Ok(Command::Irqsoff { period: 100, .. })));
        assert!(parse(&["run", "--release"]).is_err() && parse(&["guest", "--no-core"]).is_err());
        match parse(&["run", "--tag", "rt-6.12", "--out", "/tmp/x"]) {
            Ok(Command::Run { destination: ReportFlags { tag: Some(tag), out: Some(out) }, .. }) => {
                assert_eq!((tag.as_str(), out.as_path()), ("rt-6.12", std::path::Path::new("/tmp/x")));
            }
            other => panic!("not parsed as asked: {other:?}"),
        }
        assert!(parse(&["run", "--tag", "../up"]).unwrap_err().to_string().contains("a tag is"));
        assert!(matches!(parse(&["guest", "--tag", "base"]), Ok(Command::Guest { destination: ReportFlags { tag: Some(_), .. }, .. })));
    }

    #[test]
    fn the_load_defaults_to_grinder_for_cyclictest_only() {
        assert_eq!(effective_load("cyclictest", None).unwrap(), Load::Grinder);
        assert_eq!(effective_load("uname", None).unwrap(), Load::Idle);
        assert_eq!(effective_load("cyclictest", Some(Load::Neighbour)).unwrap(), Load::Neighbour);
        assert_eq!(effective_load("hackbench", Some(Load::Idle)).unwrap(), Load::Idle);
        let err = effective_load("uname", Some(Load::Grinder)).unwrap_err().to_string();
        assert!(err.contains("--load grinder needs --guest-script cyclictest"), "{err}");
    }
}
