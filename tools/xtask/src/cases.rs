//! The QEMU test cases: which profile to boot, what to ask the core to do,
//! and what its console and exit status must show.
//!
//! The expectations follow the core's console contract: log lines look like
//! `[    0.001234 core cpu0 INFO] message`; a banner names the core, EL2, the
//! CPU count, the GIC version, the timer frequency and the memory; each CPU
//! reports `cpu K online`, then `all N CPUs online`; the run ends with the
//! core's `verdict: PASS (exit code 0, nonce HEX)` or `verdict: FAIL (exit code N, ...)`
//! (panic: 101, unexpected exception: 102, wrong EL: 104), judged by [`crate::verdict`].
//! Guest output (lines the core marks `guest| `) is matched only by guest expectations.

use std::time::Duration;

use crate::expect::{Expectations, LineMatch};
use crate::guest::init::{FLOOD_SCRIPT, HOSTILE_CONTROL_SCRIPT, PID_DROPS_SCRIPT, PID_SCRIPT, PID_SETPOINTS};
use crate::qemu;

/// How long a case may run unless it says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The core's exit codes (in its verdict line).
const EXIT_PASS: i32 = 0;
const EXIT_UNEXPECTED_EXCEPTION: i32 = 102;
const EXIT_WRONG_EL: i32 = 104;

/// The prefix of every core log line.
const LOG_LINE: &str = r"^\[\s*\d+\.\d+ core cpu\d+ [A-Z]+\s*\] ";
/// A memory size (`1 GiB`, `2048MiB`) or the word memory/RAM, in the banner.
const MEMORY: &str = r"(?i)\d\s*[KMGT]i?B\b|\bmem(ory)?\b|\bRAM\b";

/// The interrupt controller a machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gic {
    /// GICv2 (with its virtualization extensions).
    V2,
    /// GICv3.
    V3,
}

impl Gic {
    fn name(self) -> &'static str {
        match self {
            Gic::V2 => "GICv2",
            Gic::V3 => "GICv3",
        }
    }
}

/// What a case asks the core to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Boot every CPU and pass (no self-test requested).
    Boot {
        /// The GIC the banner must report.
        gic: Gic,
    },
    /// Take an unexpected exception after boot — a data abort at an
    /// unmapped address — and dump it (`companion.test=fault`).
    Fault,
    /// Be entered at EL1 (a machine without EL2) and refuse to start.
    WrongExceptionLevel,
    /// Run the latency test for this many seconds at a 1 ms period
    /// (`latmus=SECONDS`), under `-icount` so the sample count is exact.
    Latency {
        /// Test length.
        seconds: u64,
    },
    /// Run the on-target test suite of the oob services (`companion.test=oob`), under
    /// `-icount` so its timing checks are deterministic.
    OobSuite,
    /// Run the small EL1 test guest under stage 2 (`companion.test=el1-guest`): PSCI over
    /// HVC, an access to the core's memory answered with an injected abort, sixteen
    /// self-SGIs through the list registers (GICv3), a second with IRQs masked, SYSTEM_OFF.
    El1Guest {
        /// The machine's GIC (the SGI test needs the GICv3 virtual GIC).
        gic: Gic,
        /// Run the latency test on the guest's CPU meanwhile (`latmus=3 latmus.cpu=0`,
        /// under `-icount`) and check that the guest's masked second did not disturb it.
        latency: bool,
    },
    /// Run the hostile EL1 guest beside the latency test on its CPU
    /// (`companion.test=hostile-guest latmus=3 latmus.cpu=0 companion.hostile=dma,semihosting`,
    /// under `-icount`): it attacks the GIC, PSCI, SGI generation and the core's memory, asks
    /// fw-cfg for DMA over the core, tries a semihosting exit and forges console lines; the
    /// core checks its image hash, its interrupts and the latency samples.
    HostileGuest,
    /// The main job in small (`cargo xtask run --load grinder`: one CPU under `-icount`): the
    /// latency test and the irqs-off hunter beside the guest's cyclictest and grinder load;
    /// the report built from the console must have every section, and the hunter's top
    /// locations must be named with the guest kernel's System.map.
    MainJob {
        /// The latency test's and cyclictest's length.
        seconds: u64,
    },
    /// The soak in short form ([`crate::soak::Plan::short`]): the latency test throughout while
    /// the guest cycles its loads, on one CPU under `-icount`; or, with `restart_every_s`, the
    /// restart soak ([`crate::soak::Plan::restarting`]).
    Soak {
        /// The soak's length.
        seconds: u64,
        /// The restart soak's period of guest restarts (`None`: the load soak).
        restart_every_s: Option<u64>,
    },
    /// Boot a guest kernel that masks its interrupts and spins at its first instruction
    /// ([`crate::guest::early_hang`]) with restarts limited to one a minute: the watchdog's
    /// boot limit restarts it once, then ends the run (106) at the second hang, while the
    /// latency test samples every period.
    EarlyHangGuest,
    /// Boot the Debian PREEMPT_RT guest under the core and run a guest script.
    LinuxGuest {
        /// The initramfs script the guest runs (`guest.script=`).
        script: &'static str,
        /// vCPUs (`companion.guest.vcpus=`), each pinned to its CPU.
        vcpus: u32,
    },
    /// Boot the files `cargo xtask image --board BOARD` wrote (crate::flash): the core's image,
    /// the guest bundle as QEMU's `-initrd`, the board's device tree and the core's command
    /// line from `cmdline.txt`; the guest runs `uname` beside a [`IMAGE_BOOT_SECONDS`] latency
    /// test. On QEMU virt the Linux guest boots from the bundle; on the Raspberry Pi (GICv2)
    /// the core verifies the bundle, says the guest cannot start there yet, and runs its latency
    /// test to the end.
    ImageBoot {
        /// The board whose folder is booted.
        board: crate::image::Board,
        /// One bit of the bundle's initramfs flipped after writing: the core must refuse the
        /// bundle with a clear line and run its latency test to the end.
        corrupt: bool,
        /// Booted by Debian's U-Boot for QEMU (`-bios`) from the folder as a FAT disk: distro
        /// boot runs its `boot.scr`, which loads the core and the bundle and `booti`s them;
        /// otherwise QEMU loads the files itself (`-kernel`, `-initrd`, `-dtb`, `-append`).
        uboot: bool,
    },
}

/// The latency test's length (`latmus=`) and the guest script's in an image-boot case.
pub const IMAGE_BOOT_SECONDS: u64 = 2;
/// The guest script of an image-boot case.
pub const IMAGE_BOOT_SCRIPT: &str = "uname";
/// The core's exit code when the guest cannot start (the oob work still runs its course).
const EXIT_BOOT_FAILURE: i32 = 103;
/// The core's line saying it found and verified the guest bundle.
const BUNDLE_VERIFIED: &str =
    r"guest: bundle at 0x[0-9a-f]+\+[1-9]\d* KiB verified \(kernel [1-9]\d* KiB, initramfs [1-9]\d* KiB, command line [1-9]\d* bytes, XXH3-128\)";

/// The irqs-off hunter in the main-job case: every 20 µs (cheap on one CPU under icount).
/// At 100 µs a 2 s run caught 0 to 5 windows from one run to the next (the guest's timing
/// shifts with the host's console I/O even under icount): too few for a check that must not
/// fail by chance.
const MAIN_JOB_HUNTER: &str = "companion.irqsoff=20";

/// The main-job case's latency test, started by the guest (`companion latmus`) beside
/// cyclictest: 1 ms period, as long as cyclictest.
fn main_job_latency_test(seconds: u64) -> crate::verdict::GuestLatencyTest {
    crate::verdict::GuestLatencyTest { period_us: 1000, seconds }
}

/// What the main-job case's report lacks: every section of `report.json` must be there
/// (nothing in its `missing` list) and at least one irqs-off location named with
/// `system_map` as `function+0xoff`; one line per problem.
pub fn main_job_report_problems(console: &str, system_map: &std::path::Path) -> Vec<String> {
    let info = crate::report::model::RunInfo {
        id: "test".into(),
        profile: "virt-gicv3-1".into(),
        board: "qemu-virt".into(),
        gic: Some("v3".into()),
        cpus: 1,
        load: "grinder".into(),
        duration_s: 2,
        qemu: "qemu".into(),
        guest_kernel: None,
        icount: true,
        period_us: 1000,
        irqsoff_period_us: Some(100),
        tag: None,
        rtd_arrivals_ms: Vec::new(),
        provenance: Default::default(),
    };
    let mut report = crate::report::Report::new(info, true, Some(0), console);
    report.symbolize(system_map);
    let mut problems: Vec<String> = report.missing().into_iter().map(|line| format!("report lacks {line}")).collect();
    if report.measurements.channel_round_trip.is_none() {
        problems.push("report lacks the channel round trip (no `ping:` line from the guest)".to_owned());
    }
    let top = &report.measurements.irqsoff;
    let named = top.iter().filter(|entry| entry.symbol.as_deref().is_some_and(is_function_offset)).count();
    if named == 0 {
        problems.push(format!("none of the {} irqs-off locations is named as function+0xoff", top.len()));
    }
    problems
}

/// Whether `symbol` reads `name+0xoffset`.
fn is_function_offset(symbol: &str) -> bool {
    symbol.split_once("+0x").is_some_and(|(name, offset)| {
        !name.is_empty() && !name.starts_with("0x") && u64::from_str_radix(offset, 16).is_ok()
    })
}

/// The checks the core makes of the EL1 test guest's reports, in order.
const EL1_GUEST_CHECKS: &[&str] = &[
    "PSCI_VERSION is 1.1",
    "PSCI_FEATURES(CPU_ON) is supported",
    "an unassigned PSCI function is NOT_SUPPORTED",
    "reading the core's memory aborts in the guest",
    "the guest went on after the abort",
    "the guest kept IRQs masked for a second",
    "the guest powered off (not reset)",
];
/// The EL1 test guest's checks that need the GICv3 virtual GIC: the list-register
/// overflow, and the accounting of a forwarded physical interrupt.
const EL1_GUEST_VGIC_CHECKS: &[&str] = &[
    "16 self-SGIs all arrived through the list registers",
    "100 virtual timer interrupts: as many forwarded by the core as counted by the guest",
];

/// The checks the core makes when the hostile guest powers off, in order.
const HOSTILE_GUEST_CHECKS: &[&str] = &[
    "the core's text and read-only data are intact",
    "the core's timer, maintenance and kick interrupts are still enabled on every CPU",
    "the GIC attacks completed",
    "CPU_ON into the core's memory is INVALID_ADDRESS",
    "CPU_ON at address 0 is INVALID_ADDRESS",
    "CPU_ON at a misaligned entry is INVALID_ADDRESS",
    "CPU_ON of a garbage target is INVALID_PARAMETERS",
    "the refused vCPU is still off",
    "1000 random PSCI function IDs are all NOT_SUPPORTED",
    "4000 garbage SGI0R/ASGI1R writes ignored and 2000 SGI1R ones survived",
    "a jump into the core's memory is an instruction abort",
    "a load from the core's memory is a data abort",
    "a store to the core's memory is a data abort",
    "the latency test kept one sample per period beside the guest",
    "a channel descriptor into the core's memory marks the device DEVICE_NEEDS_RESET",
    "the guest's PMU writes left the core's cycle counter running (reads as zero to the guest)",
    "the guest powered off (not reset)",
];

/// The tests of the core's oob suite (`kernel/src/oob_suite`), in the order they run:
/// each must report `oob-test NAME ... ok`.
const OOB_TESTS: &[&str] = &[
    "priority-order",
    "fifo-order",
    "round-robin",
    "pi-boost",
    "pi-chain",
    "ceiling",
    "semaphore",
    "event-flags",
    "timer-periodic",
    "sleep-until",
    "cross-cpu-wake",
    "tp-partitions",
    "quota",
    "fpu-torture",
    "inband-deferral",
];

impl Scenario {
    /// A soak case's plan.
    pub fn soak_plan(self) -> Option<crate::soak::Plan> {
        match self {
            Scenario::Soak { seconds, restart_every_s: None } => Some(crate::soak::Plan::short(seconds)),
            Scenario::Soak { seconds, restart_every_s: Some(every) } => Some(crate::soak::Plan::restarting(seconds, every)),
            _ => None,
        }
    }

    /// The core's self-test to request (`companion.test=NAME`), if any: a
    /// plain boot needs none.
    fn test(self) -> Option<&'static str> {
        match self {
            Scenario::Boot { .. } | Scenario::Latency { .. } | Scenario::WrongExceptionLevel => None,
            Scenario::Fault => Some("fault"),
            Scenario::OobSuite => Some("oob"),
            Scenario::El1Guest { .. } => Some("el1-guest"),
            Scenario::HostileGuest => Some("hostile-guest"),
            Scenario::LinuxGuest { .. } | Scenario::MainJob { .. } | Scenario::Soak { .. } | Scenario::ImageBoot { .. } | Scenario::EarlyHangGuest => None,
        }
    }
}

/// One QEMU test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name, also its log file's name.
    pub name: &'static str,
    /// The QEMU profile to boot.
    pub profile: &'static str,
    /// What the core is asked to do.
    pub scenario: Scenario,
    /// How long the run may take.
    pub timeout: Duration,
    /// Extra QEMU arguments.
    pub qemu_args: &'static [&'static str],
}

/// Deterministic virtual time: one instruction per virtual nanosecond, idle
/// time skipped.
const ICOUNT: &[&str] = &["-icount", "shift=0,sleep=off"];
/// How long the `pid-drops` case leaves the telemetry unread, seconds: 10 lines a second, more
/// than Linux's 256 receive buffers (a line each) and the core's 4 KiB ring hold.
const PID_DROPS_SECONDS: u64 = 45;
/// Each half of the flood case, seconds.
const FLOOD_SECONDS: u64 = 3;
/// The guest script of the restart case: a panic, a reboot, a hang, then cyclictest.
pub const RESTART_SCRIPT: &str = "crash";
/// How much longer than cyclictest the latency test runs beside the `crash` script, in
/// seconds: its three restarts (one after the watchdog's 5 s) and four boots take about 17 s
/// of virtual time on one CPU.
pub const RESTART_ALLOWANCE_S: u64 = 20;
/// The latency test of the restart case: long enough for four boots and cyclictest.
const RESTART_LATMUS: &str = "latmus=60 latmus.period=1000 latmus.cpu=0";
/// The hostile guest of the restart-limit case: it resets at once on every boot.
pub const RESET_LOOP_SCRIPT: &str = "reset-loop";
/// The script of the passed-through device quiesce case.
const RTC_RESTART_SCRIPT: &str = "rtc-restart";
/// The core's exit code when a guest reset is refused (restarts off, or over the limit).
const EXIT_GUEST_RESET: i32 = 106;
/// The core's line announcing a guest restart: a case that expects none forbids it.
const RESTARTING: &str = r"guest: restarting \(restart \d+";

/// Every QEMU case, in the order they run.
pub const CASES: &[Case] = &[
    Case::boot("boot-virt-gicv3-1", "virt-gicv3-1", Gic::V3),
    Case::boot("boot-virt-gicv3-4", "virt-gicv3-4", Gic::V3),
    Case::boot("boot-virt-gicv2-1", "virt-gicv2-1", Gic::V2),
    Case::boot("boot-virt-gicv2-4", "virt-gicv2-4", Gic::V2),
    Case::boot("boot-raspi4b", "raspi4b", Gic::V2),
    Case::boot("boot-imx8mp-evk", "imx8mp-evk", Gic::V3),
    Case {
        name: "fault-dump",
        profile: "virt-gicv3-4",
        scenario: Scenario::Fault,
        timeout: DEFAULT_TIMEOUT,
        qemu_args: &[],
    },
    Case {
        name: "wrong-el",
        profile: "virt-el1",
        scenario: Scenario::WrongExceptionLevel,
        timeout: DEFAULT_TIMEOUT,
        qemu_args: &[],
    },
    Case {
        name: "latmus-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::Latency { seconds: 2 },
        timeout: DEFAULT_TIMEOUT,
        qemu_args: ICOUNT,
    },
    Case {
        name: "latmus-virt-gicv2-4",
        profile: "virt-gicv2-4",
        scenario: Scenario::Latency { seconds: 2 },
        timeout: DEFAULT_TIMEOUT,
        qemu_args: ICOUNT,
    },
    Case {
        name: "oob-suite-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::OobSuite,
        timeout: DEFAULT_TIMEOUT,
        qemu_args: ICOUNT,
    },
    Case {
        name: "oob-suite-virt-gicv2-4",
        profile: "virt-gicv2-4",
        scenario: Scenario::OobSuite,
        timeout: DEFAULT_TIMEOUT,
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::LinuxGuest { script: "uname", vcpus: 4 },
        timeout: Duration::from_secs(180),
        qemu_args: &[],
    },
    Case {
        name: "linux-guest-irq-accounting-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::LinuxGuest { script: "rtc-alarm", vcpus: 4 },
        timeout: Duration::from_secs(180),
        qemu_args: &[],
    },
    Case {
        name: "linux-guest-channel-virt-gicv3-1",
        // One CPU: the latency test shares it with the guest's vCPU, as in the main job;
        // under -icount, as the main job, so a host that stalls QEMU cannot make the latency
        // test miss periods (it did once in plain TCG on a loaded host: 491 overruns).
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: "channel", vcpus: 1 },
        timeout: Duration::from_secs(300),
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-channel-flood-virt-gicv3-1",
        // One CPU under -icount: the oob test, Linux's flood and the core's copies share it,
        // and the maxima compare without the host's scheduling in them.
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: FLOOD_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(600),
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-channel-hostile-virt-gicv3-1",
        // A hostile Linux on the control port, one CPU under -icount: every bad command is
        // refused on the core's console, the latency test it started samples every period.
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: HOSTILE_CONTROL_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(400),
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-pid-drops-virt-gicv3-1",
        // The example application's telemetry unread for PID_DROPS_SECONDS: the oob side drops
        // and counts, and the count is exact (one CPU, -icount).
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: PID_DROPS_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(400),
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-pid-virt-gicv3-1",
        // The example application (the PID loop) beside the guest on its one CPU, under
        // -icount: its setpoints from Linux, its telemetry to Linux (docs/channel.md).
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: PID_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(300),
        qemu_args: ICOUNT,
    },
    Case {
        name: "linux-guest-1vcpu-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::LinuxGuest { script: "uname", vcpus: 1 },
        timeout: Duration::from_secs(180),
        qemu_args: &[],
    },
    Case {
        // The guest restart (docs/guest-restart.md): Linux panics, then reboots, then hangs with
        // IRQs masked (the watchdog restarts it), then runs cyclictest, on the one CPU the
        // latency test samples throughout.
        name: "guest-restart-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: RESTART_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(900),
        qemu_args: ICOUNT,
    },
    Case {
        // The same on four vCPUs: the secondaries leave their vCPUs on the restart's kick and
        // are started again by the new guest's CPU_ON.
        name: "guest-restart-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::LinuxGuest { script: RESTART_SCRIPT, vcpus: 4 },
        timeout: Duration::from_secs(1500),
        qemu_args: ICOUNT,
    },
    Case {
        // A guest resetting at once on every boot: restarted up to the limit (3 a minute), then
        // the run fails with 106, the latency test having sampled every period throughout.
        name: "guest-restart-limit-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: RESET_LOOP_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(600),
        qemu_args: ICOUNT,
    },
    Case {
        // A restart with the dead guest's RTC alarm armed: the core quiesces the PL031, so
        // the next guest gets no RTC interrupt (the core forwards none).
        name: "guest-restart-quiesce-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::LinuxGuest { script: RTC_RESTART_SCRIPT, vcpus: 1 },
        timeout: Duration::from_secs(600),
        qemu_args: ICOUNT,
    },
    Case {
        // A guest that hangs before its first interrupt: restarted by the watchdog's boot
        // limit (20 s), refused at the second hang (limit 1 a minute), sampled throughout.
        name: "guest-early-hang-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::EarlyHangGuest,
        timeout: Duration::from_secs(600),
        qemu_args: ICOUNT,
    },
    Case {
        name: "main-job-report-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::MainJob { seconds: 2 },
        timeout: Duration::from_secs(300),
        qemu_args: ICOUNT,
    },
    Case {
        name: "soak-short-virt-gicv3-1",
        profile: crate::soak::PROFILE,
        scenario: Scenario::Soak { seconds: 6, restart_every_s: None },
        timeout: Duration::from_secs(900),
        qemu_args: ICOUNT,
    },
    Case {
        // The restart soak in short form: three boots of 8 s each, two restarts, the oob
        // worst case per boot compared and the core's heap after each reload.
        name: "soak-restart-short-virt-gicv3-1",
        profile: crate::soak::PROFILE,
        scenario: Scenario::Soak { seconds: 24, restart_every_s: Some(crate::soak::MIN_RESTART_EVERY_S) },
        timeout: Duration::from_secs(1200),
        qemu_args: ICOUNT,
    },
    Case {
        name: "el1-guest-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::El1Guest { gic: Gic::V3, latency: false },
        timeout: DEFAULT_TIMEOUT,
        qemu_args: &[],
    },
    Case {
        name: "el1-guest-virt-gicv2-4",
        profile: "virt-gicv2-4",
        scenario: Scenario::El1Guest { gic: Gic::V2, latency: false },
        timeout: DEFAULT_TIMEOUT,
        qemu_args: &[],
    },
    Case {
        name: "hostile-guest-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::HostileGuest,
        timeout: Duration::from_secs(180),
        qemu_args: ICOUNT,
    },
    Case {
        name: "el1-guest-irqs-off-latmus-virt-gicv3-4",
        profile: "virt-gicv3-4",
        scenario: Scenario::El1Guest { gic: Gic::V3, latency: true },
        // About 3 s of virtual time under -icount: well over a minute on a loaded host.
        timeout: Duration::from_secs(240),
        qemu_args: ICOUNT,
    },
    Case {
        name: "image-boot-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::ImageBoot { board: crate::image::Board::QemuVirt, corrupt: false, uboot: false },
        timeout: Duration::from_secs(300),
        qemu_args: ICOUNT,
    },
    Case {
        name: "image-boot-corrupt-bundle-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::ImageBoot { board: crate::image::Board::QemuVirt, corrupt: true, uboot: false },
        timeout: Duration::from_secs(240),
        qemu_args: ICOUNT,
    },
    Case {
        name: "image-boot-raspi4b",
        profile: "raspi4b",
        scenario: Scenario::ImageBoot { board: crate::image::Board::Rpi4, corrupt: false, uboot: false },
        timeout: Duration::from_secs(240),
        qemu_args: ICOUNT,
    },
    Case {
        name: "image-boot-uboot-virt-gicv3-1",
        profile: "virt-gicv3-1",
        scenario: Scenario::ImageBoot { board: crate::image::Board::QemuVirt, corrupt: false, uboot: true },
        timeout: Duration::from_secs(300),
        qemu_args: ICOUNT,
    },
];

impl Case {
    const fn boot(name: &'static str, profile: &'static str, gic: Gic) -> Self {
        Self {
            name,
            profile,
            scenario: Scenario::Boot { gic },
            timeout: DEFAULT_TIMEOUT,
            qemu_args: &[],
        }
    }

    /// The core's command line for this case.
    pub fn bootargs(&self) -> String {
        if let Scenario::ImageBoot { .. } = self.scenario {
            return crate::flash::core_cmdline(IMAGE_BOOT_SECONDS);
        }
        if let Scenario::LinuxGuest { script, vcpus } = self.scenario {
            let vcpus = format!("companion.guest.vcpus={vcpus}");
            if script == RESET_LOOP_SCRIPT {
                return crate::guest::core_bootargs(&[&vcpus, RESTART_LATMUS], script, 1, crate::guest::init::Load::Idle);
            }
            if script == RESTART_SCRIPT {
                // The latency test only beside one vCPU: with four, Linux's own boot (before any
                // restart) already makes it miss periods on CPU 0 under -icount.
                let latency = if self.scenario == (Scenario::LinuxGuest { script, vcpus: 1 }) { RESTART_LATMUS } else { "" };
                return crate::guest::core_bootargs(&[&vcpus, latency], script, 2, crate::guest::init::Load::Idle);
            }
            let seconds = match script {
                FLOOD_SCRIPT => FLOOD_SECONDS,
                PID_DROPS_SCRIPT => PID_DROPS_SECONDS,
                _ => 1,
            };
            return crate::guest::core_bootargs(&[&vcpus], script, seconds, crate::guest::init::Load::Idle);
        }
        if let Some(plan) = self.scenario.soak_plan() {
            return plan.bootargs();
        }
        if self.scenario == Scenario::EarlyHangGuest {
            return crate::guest::core_bootargs(
                &["companion.guest.vcpus=1", RESTART_LATMUS, "companion.guest.restart.limit=1"],
                "uname",
                1,
                crate::guest::init::Load::Idle,
            );
        }
        if let Scenario::MainJob { seconds } = self.scenario {
            let core = [crate::verdict::GuestLatencyTest::CORE_ARG, MAIN_JOB_HUNTER];
            let guest = crate::guest::core_bootargs(&core, "cyclictest", seconds, crate::guest::init::Load::Grinder);
            return format!("{guest} nokaslr {} {}", main_job_latency_test(seconds).guest_arg(), crate::guest::init::ping_arg());
        }
        let test = self
            .scenario
            .test()
            .map(|name| format!("companion.test={name}"));
        let latency = match self.scenario {
            Scenario::Latency { seconds } => format!("latmus={seconds} latmus.period=1000"),
            Scenario::El1Guest { latency: true, .. } => "latmus=3 latmus.cpu=0".to_string(),
            // Every attack, the DMA request and the semihosting exit included: the stage-2
            // allow-list withholds fw-cfg, and QEMU runs without semihosting.
            Scenario::HostileGuest => "latmus=3 latmus.cpu=0 companion.hostile=dma,semihosting".to_string(),
            _ => String::new(),
        };
        qemu::bootargs([test.as_deref().unwrap_or(""), &latency])
    }

    /// What the run must show on a machine with `cpus` CPUs.
    pub fn expectations(&self, cpus: u32) -> Expectations {
        let all_online = format!(r"\ball {cpus} CPUs? online\b");
        match self.scenario {
            Scenario::Boot { gic } => {
                let cpu_count = format!(r"\b{cpus} CPUs?\b");
                let gic = format!(r"\b{}\b", gic.name());
                let mut lines = vec![LineMatch::all(&[
                    LOG_LINE,
                    "companion core",
                    r"\bEL2\b",
                    &cpu_count,
                    &gic,
                    r"\btimer \d+ Hz\b",
                    MEMORY,
                ])];
                lines.extend(
                    (0..cpus)
                        .map(|cpu| LineMatch::all(&[LOG_LINE, &format!(r"\bcpu {cpu} online\b")])),
                );
                lines.push(LineMatch::all(&[LOG_LINE, &all_online]));
                Expectations::new(EXIT_PASS, lines, &[])
            }
            Scenario::Fault => {
                let lines = [
                    all_online.as_str(),
                    "unexpected exception",
                    r"\bESR_EL2\b",
                    r"\bFAR_EL2\b",
                    r"\bELR_EL2\b",
                    r"\bx0\b",
                    "Data Abort",
                ];
                let lines = lines
                    .iter()
                    .map(|pattern| LineMatch::all(&[pattern]))
                    .collect();
                Expectations::new(EXIT_UNEXPECTED_EXCEPTION, lines, &[])
            }
            Scenario::WrongExceptionLevel => Expectations::new(
                EXIT_WRONG_EL,
                vec![
                    LineMatch::all(&[r"entered at EL1, but it must be entered at EL2", "refusing to start"]),
                ],
                &[r"\bonline\b"],
            ),
            Scenario::Latency { seconds } => {
                // One sample per millisecond and context: exact under -icount but for the
                // edges of the run (the first expiry comes 2 ms in; the timers stop only
                // after the final second's report).
                let samples = seconds * 1000;
                let counts = |n: u64| -> String {
                    let options: Vec<String> = (n - 3..=n + 1).map(|n| n.to_string()).collect();
                    format!("({})", options.join("|"))
                };
                let totals = format!(
                    r"\blatmus: {} thread samples, {} irq samples, 0 \+ 0 overruns\b",
                    counts(samples),
                    counts(samples)
                );
                let summary = format!(r"^RTS\|.*\b00:00:{seconds:02}/00:00:{seconds:02}$");
                let lines = vec![
                    LineMatch::all(&[&all_online]),
                    LineMatch::all(&[LOG_LINE, r"latmus: gravity calibrated over \d+ periods: irq \d+ ns, thread \d+ ns"]),
                    LineMatch::all(&[r"^RTT\|.*\(oob thread context, 1000 us period, priority 99, cpu \d+, gravity \d+ ns\)"]),
                    LineMatch::all(&[r"^RTH\|----lat min\|----lat avg\|----lat max\|-overrun"]),
                    LineMatch::all(&[r"^RTD\|\s+-?\d+\.\d{3}\|\s+-?\d+\.\d{3}\|\s+-?\d+\.\d{3}\|\s+0\|"]),
                    LineMatch::all(&[&summary]),
                    LineMatch::all(&[r"^RTT\|.*\(oob timer-IRQ context"]),
                    LineMatch::all(&[&summary]),
                    LineMatch::all(&[r"^HSD\|\s+thread\|"]),
                    LineMatch::all(&[r"^HSD\|\s+irq\|"]),
                    LineMatch::all(&[LOG_LINE, &totals]),
                    LineMatch::all(&[r"^CPU\s+ID\s+POLICY\s+PRIO\s+STATE"]),
                ];
                Expectations::new(EXIT_PASS, lines, &[])
            }
            Scenario::OobSuite => {
                let mut lines = vec![LineMatch::all(&[LOG_LINE, &all_online])];
                lines.extend(OOB_TESTS.iter().map(|test| {
                    LineMatch::all(&[&format!(r"^oob-test {} \.\.\. ok\b", regex::escape(test))])
                }));
                let summary = format!(r"^oob-suite: {} passed, 0 failed\b", OOB_TESTS.len());
                lines.push(LineMatch::all(&[&summary]));
                Expectations::new(EXIT_PASS, lines, &[r"\bFAILED\b"])
            }
            Scenario::MainJob { seconds } => {
                let latmus = format!(r"^guest: companion latmus exited with status 0 after {seconds} RTD\| lines$");
                let lines = vec![
                    LineMatch::guest(&[r"^guest: load grinder started$"]),
                    LineMatch::guest(&[&latmus]),
                    // The channel's round trip after it, backed by the core's echo count.
                    LineMatch::guest(&[r"^guest: ping: 200 round trips of 64 bytes over companion\.echo: "]),
                    LineMatch::all(&[LOG_LINE, r"channel: companion\.echo: [1-9]\d* wake-ups, [1-9]\d* bytes echoed, [1-9]\d* ns of CPU time, \d+ bytes dropped$"]),
                    LineMatch::guest(&[r"^guest: done$"]),
                    LineMatch::all(&[LOG_LINE, r"replay log: logged [1-9]\d*, .* lost 0$"]),
                    LineMatch::all(&[r"^IRQSOFF\| pc 0x[0-9a-f]+ samples [1-9]"]),
                ];
                Expectations::new(EXIT_PASS, lines, &[RESTARTING])
                    .forbid_guest(&[r"Kernel panic", r"KASLR enabled"])
                    .with_latency_test(main_job_latency_test(seconds))
            }
            Scenario::Soak { restart_every_s: Some(_), .. } => restart_soak_expectations(self.scenario.soak_plan().map_or(0, |plan| plan.restarts())),
            Scenario::Soak { .. } => Expectations::new(
                EXIT_PASS,
                vec![LineMatch::guest(&[r"^guest: soak: \d+ segments done$"])],
                &[r"abort injected", RESTARTING],
            )
            .forbid_guest(&[r"Kernel panic"]),
            Scenario::LinuxGuest { script: RESTART_SCRIPT, vcpus } => restart_expectations(vcpus == 1),
            Scenario::LinuxGuest { script: RESET_LOOP_SCRIPT, .. } => reset_loop_expectations(),
            Scenario::EarlyHangGuest => early_hang_expectations(),
            Scenario::LinuxGuest { script: RTC_RESTART_SCRIPT, .. } => rtc_restart_expectations(),
            Scenario::LinuxGuest { vcpus, script } => {
                let online = if vcpus == 1 { "0".to_string() } else { format!("0-{}", vcpus - 1) };
                let cpus_online = format!(r"^guest: cpus online: {online}$");
                let mut lines = vec![
                    LineMatch::all(&[LOG_LINE, &all_online]),
                    LineMatch::all(&[LOG_LINE, r"guest: Linux at 0x[0-9a-f]+ .*initramfs 0x[0-9a-f]+"]),
                    LineMatch::guest(&[r"^guest: uname: Linux .* PREEMPT_RT .* aarch64"]),
                    // The `uname` script reports the CPUs online; `/init` prints the `uname` line
                    // for every script.
                    LineMatch::guest(&[if script == "uname" { &cpus_online } else { r"^guest: running " }]),
                    LineMatch::guest(&[r"^guest: done$"]),
                    LineMatch::all(&[LOG_LINE, r"guest: PSCI SYSTEM_OFF"]),
                    LineMatch::all(&[LOG_LINE, r"replay log: logged [1-9]\d*, replayed [1-9]\d*, coalesced \d+, withdrawn \d+, max depth \d+, lost 0$"]),
                    LineMatch::all(&[LOG_LINE, r"guest: virtual interrupts: [1-9]\d* forwarded, [1-9]\d* injected, [1-9]\d* completed"]),
                ];
                if script == "channel" {
                    lines.extend(channel_lines());
                }
                if script == PID_SCRIPT {
                    lines.extend(pid_lines());
                }
                if script == HOSTILE_CONTROL_SCRIPT {
                    lines.extend(hostile_control_lines());
                }
                if script == PID_DROPS_SCRIPT {
                    lines.extend([
                        LineMatch::guest(&[r"^guest: pid drops: read [1-9]\d* lines, the first [1-9]\d* before the gap$"]),
                        LineMatch::guest(&[r"^guest: pid drops: gaps unlike their count: 0$"]),
                        LineMatch::all(&[r"^example: \d+ periods, .*, 0 overruns; .* telemetry [1-9]\d* lines written, [1-9]\d* dropped$"]),
                    ]);
                }
                if script == FLOOD_SCRIPT {
                    let seconds = format!(r"^RTS\|.*\|    00:00:0{FLOOD_SECONDS}/00:00:0{FLOOD_SECONDS}$");
                    lines.extend([
                        LineMatch::guest(&[r"^guest: channel flood: quiet$"]),
                        LineMatch::guest(&[r"^guest: channel flood: flooding$"]),
                        LineMatch::all(&[&seconds]),
                    ]);
                }
                let mut expectations =
                    Expectations::new(EXIT_PASS, lines, &[r"abort injected", RESTARTING])
                        .forbid_guest(&[r"Kernel panic", r"insmod .* failed", r"companion latmus .*failed"]);
                if script == FLOOD_SCRIPT {
                    expectations = expectations.with_channel_flood();
                }
                if script == PID_DROPS_SCRIPT {
                    // Each gap is its drops, and the last count the guest saw is the core's
                    // own total (no drop after the guest read again).
                    expectations = expectations
                        .with_equal_captures(
                            LineMatch::guest(&[r"^guest: pid drops: lines missing between the lines read: ([1-9]\d*)$"]),
                            LineMatch::guest(&[r"^guest: pid drops: drops counted by the lines dropped= between them: (\d+)$"]),
                        )
                        .with_equal_captures(
                            LineMatch::guest(&[r"^guest: pid drops: last dropped=(\d+)$"]),
                            LineMatch::all(&[r"^example: \d+ periods, .* telemetry \d+ lines written, (\d+) dropped$"]),
                        );
                }
                if script == HOSTILE_CONTROL_SCRIPT {
                    // Nothing but refusals: the device stays whole, the core never faults.
                    expectations = expectations
                        .forbid_core(&[r"channel device is broken", r"panic on cpu \d+:", r"reply cut"])
                        .forbid_guest(&[r"^guest: hostile: (no |companion ps failed)"]);
                }
                if script == PID_SCRIPT {
                    // What the guest read is at most what the core wrote (its own count).
                    expectations = expectations
                        .with_at_most_captures(
                            LineMatch::guest(&[r"^guest: pid: read ([1-9]\d*) telemetry lines$"]),
                            LineMatch::all(&[&pid_core_summary()]),
                        )
                        .forbid_guest(&[r"^guest: pid: .*(failed|no telemetry)"]);
                }
                if script == "rtc-alarm" {
                    // The RTC alarm (PL031, passed through, SPI 2 = INTID 34): what the core
                    // forwarded must be what Linux counted in /proc/interrupts — and not zero.
                    expectations.with_equal_captures(
                        LineMatch::all(&[r"guest: physical interrupts forwarded by INTID:.* 34: ([1-9]\d*);"]),
                        LineMatch::guest(&[r"^guest: rtc interrupts: ([1-9]\d*)$"]),
                    )
                } else {
                    expectations
                }
            }
            Scenario::ImageBoot { board: crate::image::Board::QemuVirt, corrupt: false, uboot } => {
                let mut lines = vec![
                    LineMatch::all(&[LOG_LINE, &all_online]),
                    LineMatch::all(&[LOG_LINE, BUNDLE_VERIFIED]),
                    LineMatch::all(&[LOG_LINE, r"guest: Linux at 0x[0-9a-f]+ .*initramfs 0x[0-9a-f]+"]),
                    LineMatch::guest(&[r"^guest: uname: Linux .* PREEMPT_RT .* aarch64"]),
                    LineMatch::guest(&[r"^guest: cpus online: 0$"]),
                    LineMatch::guest(&[r"^guest: done$"]),
                    LineMatch::all(&[LOG_LINE, r"guest: PSCI SYSTEM_OFF"]),
                    // Room for the pristine copy: U-Boot left the bundle and tree where loaded.
                    LineMatch::all(&[LOG_LINE, r"guest: restarts on \(at most \d+ a minute\): pristine kernel and initramfs kept"]),
                ];
                if uboot {
                    // U-Boot's own lines, before the core's (no log prefix).
                    lines.push(LineMatch::all(&[r"^U-Boot \d{4}\.\d+"]));
                    lines.push(LineMatch::all(&[r"^## Executing script at"]));
                    lines.push(LineMatch::all(&[r"^Starting kernel \.\.\.$"]));
                }
                Expectations::new(EXIT_PASS, lines, &[r"abort injected", RESTARTING]).forbid_guest(&[r"Kernel panic"])
            }
            Scenario::ImageBoot { corrupt, .. } => {
                let summary = format!(r"^RTS\|.*\b00:00:{IMAGE_BOOT_SECONDS:02}/00:00:{IMAGE_BOOT_SECONDS:02}$");
                let found = if corrupt {
                    LineMatch::all(&[LOG_LINE, r"guest: companion.guest=bundle: the initramfs's XXH3-128 hash does not match the header's$"])
                } else {
                    // Where config.txt has the Pi's firmware put it (QEMU's -initrd place too).
                    LineMatch::all(&[LOG_LINE, BUNDLE_VERIFIED, &format!(r"bundle at {:#x}\+", crate::flash::RPI4_BUNDLE_ADDRESS)])
                };
                let lines = vec![
                    LineMatch::all(&[LOG_LINE, &all_online]),
                    found,
                    LineMatch::all(&[LOG_LINE, r"guest: no Linux guest runs; the oob work goes on without it"]),
                    LineMatch::all(&[&summary]),
                    LineMatch::all(&[LOG_LINE, r"latmus: [1-9]\d* thread samples, [1-9]\d* irq samples"]),
                ];
                let mut forbidden = vec![r"unexpected exception", r"panicked"];
                if corrupt {
                    forbidden.push(BUNDLE_VERIFIED);
                }
                Expectations::new(EXIT_BOOT_FAILURE, lines, &forbidden)
            }
            Scenario::HostileGuest => {
                let mut lines = vec![
                    LineMatch::all(&[LOG_LINE, &all_online]),
                    LineMatch::all(&[LOG_LINE, &format!(r"hostile-guest: {cpus} vCPUs, guest RAM from 0x[0-9a-f]+")]),
                    // The channel attack: the device breaks, the core goes on.
                    LineMatch::all(&[LOG_LINE, r"guest: the channel device is broken \(BadBuffer\)"]),
                    LineMatch::all(&[LOG_LINE, r"hostile-guest: core image hash 0x[0-9a-f]{16} at the start, 0x[0-9a-f]{16} at the end"]),
                ];
                lines.extend(HOSTILE_GUEST_CHECKS.iter().map(|check| {
                    LineMatch::all(&[LOG_LINE, &format!(r"hostile-guest: {}: ok$", regex::escape(check))])
                }));
                lines.push(LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples, 0 \+ 0 overruns"]));
                lines.push(LineMatch::all(&[LOG_LINE, &format!(r"hostile-guest: {} passed, 0 failed", HOSTILE_GUEST_CHECKS.len())]));
                lines.push(LineMatch::all(&[r"\bverdict: PASS\b"]));
                Expectations::new(EXIT_PASS, lines, &[r"\bFAILED\b", r"\bverdict: FAIL\b", r"unexpected exception"])
            }
            Scenario::El1Guest { gic, latency } => {
                let mut lines = vec![
                    LineMatch::all(&[LOG_LINE, &all_online]),
                    LineMatch::all(&[LOG_LINE, r"el1-guest: stage 2 with \d+ regions"]),
                    LineMatch::all(&[LOG_LINE, r"guest: \d+ more data accesses outside its map \(data abort injected\), the last at 0x[0-9a-f]+"]),
                ];
                lines.extend(EL1_GUEST_CHECKS.iter().map(|check| {
                    LineMatch::all(&[LOG_LINE, &format!(r"el1-guest: {}: ok$", regex::escape(check))])
                }));
                if gic == Gic::V3 {
                    // 16 SGIs and 100 timer interrupts, each replayed once, nothing lost;
                    // 12 SGIs waited behind the 4 list registers.
                    lines.push(LineMatch::all(&[
                        LOG_LINE,
                        r"replay log: logged 116, replayed 116, coalesced 0, withdrawn 0, max depth 12, lost 0$",
                    ]));
                }
                for check in EL1_GUEST_VGIC_CHECKS {
                    let line = match gic {
                        Gic::V3 => format!(r"el1-guest: {}: ok$", regex::escape(check)),
                        Gic::V2 => format!(r"el1-guest: {}: not run \(no GICv2 virtual GIC yet\)$", regex::escape(check)),
                    };
                    lines.push(LineMatch::all(&[LOG_LINE, &line]));
                }
                let irqs_off = "oob latency with the guest's IRQs off stays as with them on";
                if latency {
                    lines.push(LineMatch::all(&[
                        LOG_LINE,
                        r"el1-guest: oob thread latency: IRQs on worst -?\d+ ns over \d+ samples, IRQs off worst -?\d+ ns over \d+ samples",
                    ]));
                    lines.push(LineMatch::all(&[LOG_LINE, &format!(r"el1-guest: {}: ok$", regex::escape(irqs_off))]));
                    // One sample per millisecond per context over the guest's run (its IRQs-on
                    // and IRQs-off seconds and the tests before; the run ends when the guest
                    // powers off), none late by a period, and the worst under 10 us.
                    let samples = r"(19\d\d|2\d\d\d)";
                    lines.push(LineMatch::all(&[r"^RTS\|\s+-?\d+\.\d{3}\|\s+-?\d+\.\d{3}\|\s+-?\d\.\d{3}\|\s+0\|"]));
                    lines.push(LineMatch::all(&[
                        LOG_LINE,
                        &format!(r"latmus: {samples} thread samples, {samples} irq samples, 0 \+ 0 overruns"),
                    ]));
                }
                let vgic_checks = if gic == Gic::V3 { EL1_GUEST_VGIC_CHECKS.len() } else { 0 };
                if !latency {
                    lines.push(LineMatch::all(&[
                        LOG_LINE,
                        &format!(r"el1-guest: {}: not run \(no latency test beside the guest\)$", regex::escape(irqs_off)),
                    ]));
                }
                let checks = EL1_GUEST_CHECKS.len() + vgic_checks + usize::from(latency);
                let summary = format!(r"el1-guest: {checks} passed, 0 failed");
                lines.push(LineMatch::all(&[LOG_LINE, &summary]));
                Expectations::new(EXIT_PASS, lines, &[r"\bFAILED\b"])
            }
        }
    }
}

/// What the `channel` script must show: Debian's stock drivers bound to the core's
/// virtio-console (device ID 3), the control port named, and `companion ps` through it
/// listing the control thread itself; then a malformed ring, the device broken, a reset and
/// `companion ps` again.
fn channel_lines() -> Vec<LineMatch> {
    vec![
        LineMatch::all(&[LOG_LINE, r"guest: oob channels: a virtio-console \(virtio-mmio\) at 0x[0-9a-f]+, INTID \d+"]),
        LineMatch::guest(&[r"^guest: virtio device virtio\d+: id 0x0003 driver virtio_console$"]),
        LineMatch::guest(&[r"^guest: port vport\d+p0: companion\.ctl$"]),
        LineMatch::guest(&[r"^guest: ps\| CPU +ID +POLICY +PRIO +STATE +SWITCHES +CPUTIME\(us\) +MAXLAT\(us\) +NAME$"]),
        LineMatch::guest(&[r"^guest: ps\| 0 +\S+ +fifo +1 +run .* companion-ctl$"]),
        // A malformed ring breaks the device (DEVICE_NEEDS_RESET); a reset and a new probe
        // bring it back, and the core went on.
        LineMatch::all(&[LOG_LINE, r"guest: the channel device is broken \(BadRingArea\)"]),
        LineMatch::guest(&[r"^guest: channel status after a malformed ring: 0x0000004B$"]),
        LineMatch::guest(&[r"^guest: channel status after reset: 0x00000000$"]),
        LineMatch::guest(&[r"^guest: ps again\| 0 +\S+ +fifo +1 +run .* companion-ctl$"]),
        // Round trips through the echo thread: the figures and the oob side's CPU time.
        LineMatch::guest(&[
            r"^guest: ping: 200 round trips of 64 bytes over companion\.echo: min [\d.]+ us, avg [\d.]+ us, p99 [\d.]+ us, max [\d.]+ us$",
        ]),
        LineMatch::guest(&[r"^guest: ping: the echo thread woke [1-9]\d* times, [1-9]\d* ns of its CPU time per wake-up$"]),
        LineMatch::guest(&[
            r"^guest: ping: 200 round trips of 64 bytes over companion\.echo \(SCHED_FIFO 80\): min [\d.]+ us, avg [\d.]+ us, p99 [\d.]+ us, max [\d.]+ us$",
        ]),
        // `companion latmus -T 2`: the core's test started from Linux, its lines streamed
        // back (the sampling audit fails the run if a period went without a sample).
        LineMatch::guest(&[r"^guest: latmus\| RTT\|  00:00:01  \(oob thread context, 1000 us period, priority 99, cpu 0, "]),
        LineMatch::guest(&[r"^guest: latmus\| RTD\|"]),
        LineMatch::guest(&[r"^guest: latmus\| RTS\|.*\|    00:00:02/00:00:02$"]),
        LineMatch::guest(&[r"^guest: latmus\| HSH\|--context-\|-bucket\(100ns\)\|---samples$"]),
        LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples"]),
        // The flood beside it: every byte came back or was dropped and counted by the core.
        LineMatch::guest(&[
            r"^guest: echo flood: written 4194304 bytes, read back \d+, dropped [1-9]\d* \(counted by the core\): balanced$",
        ]),
    ]
}

/// What the `channel-hostile` script must bring: one refusal on the core's console for each
/// bad command (a flood's summed up with its exact count), the ring of an app port nobody
/// reads found full with Linux's writer held back, the latency test Linux started run whole
/// (the sampling audit checks its periods), and the control port serving afterwards.
fn hostile_control_lines() -> Vec<LineMatch> {
    let refused = |what: &str| LineMatch::all(&[LOG_LINE, &format!("control: refused {what}$")]);
    let busy = "a latency test started from Linux runs";
    vec![
        refused(r"a command that is not UTF-8 text \(10 bytes\)"),
        refused(r"latmus wants PERIOD_US SECONDS CPU\|- PRIORITY GRAVITY_NS\|- \(got 2 arguments\)"),
        refused(r#"unknown command "reboot now" \(have: ps, channels, echo, latmus\)"#),
        refused(r"a command over 128 bytes"),
        refused(r#"latmus: period "99999999999999999999999" is not a number of 64 bits"#),
        refused(r"latmus: duration 18446744073709551615 s is not within 1..=86400"),
        refused(r"latmus: cpu 4096 does not exist \(1 CPUs\)"),
        refused(r"latmus: gravity 99999999999 ns is over the period \(1000000 ns\)"),
        refused(r"latmus: period 10 us is under the floor of 100 us"),
        refused(r"an incomplete command \(11 bytes without a newline\), dropped"),
        // 40 alternating bad commands in one write: 16 logged, the rest summed up.
        LineMatch::all(&[LOG_LINE, r"control: 24 more refusal lines not logged one by one \(at most 16 a second\)$"]),
        LineMatch::guest(&[r#"^guest: hostile: 20 x ERR unknown command "x1" \(have: ps, channels, echo, latmus\)$"#]),
        refused(&format!(r#""latmus 1000 1 - 99 -": {busy}"#)),
        refused(&format!(r#""ps": {busy}"#)),
        refused(&format!(r#""ps": {busy}, 99 more times"#)),
        LineMatch::all(&[LOG_LINE, r"channel: port \d+ \(example\.telemetry\): the ring from Linux is full \(4096 bytes the oob side has not read\); Linux's writes wait"]),
        LineMatch::guest(&[r"^guest: hostile: dd to example\.telemetry held back$"]),
        // Linux got the refusals as ERR lines (those during the test as the ring had room:
        // they never wait), the 100 `ps` before the test and the test itself answered.
        LineMatch::guest(&[r#"^guest: hostile: [1-9]\d* x ERR "ps": a latency test started from Linux runs$"#]),
        LineMatch::guest(&[r"^guest: hostile: 1 x ERR a command over 128 bytes$"]),
        LineMatch::guest(&[r"^guest: hostile: 101 END, \d+ ERR, 3 RTD\| lines$"]),
        // The test Linux started: whole, its samples on the core's console.
        LineMatch::all(&[r"^RTT\|.*\(oob thread context, 1000 us period, priority 99, cpu 0, "]),
        LineMatch::all(&[r"^RTS\|.*\|    00:00:03/00:00:03$"]),
        LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples, 0 \+ 0 overruns"]),
        LineMatch::guest(&[r"^guest: hostile: ps after\| +0 +\S+ +fifo +1 .* companion-ctl$"]),
    ]
}

/// The example application's own account at the end of the `pid` run: every setpoint the
/// guest sent taken, its malformed line refused (the last setpoint held), no period missed;
/// its first capture is the telemetry lines it wrote.
fn pid_core_summary() -> String {
    let (_, last) = PID_SETPOINTS.last().expect("setpoints");
    let near = within_a_hundredth(last.parse().expect("a number"));
    format!(
        r"^example: \d+ periods, setpoint {} position {near}, 0 overruns; setpoints {} taken, 1 refused; telemetry (\d+) lines written, \d+ dropped$",
        regex::escape(last),
        PID_SETPOINTS.len()
    )
}

/// A pattern for a number printed with 4 decimals within 0.01 of `target`.
fn within_a_hundredth(target: f64) -> String {
    let center = (target * 10_000.0).round() as i64;
    let values: Vec<String> = (center - 100..=center + 100)
        .map(|v| format!("{}{}\\.{:04}", if v < 0 { "-" } else { "" }, v.abs() / 10_000, v.abs() % 10_000))
        .collect();
    format!("(?:{})", values.join("|"))
}

/// What the `pid` script must show: the example application's ports opened, and after each
/// setpoint step the position within 0.01 of it, in the telemetry the guest read and in the
/// core's own lines (which alone carry the overruns and counts the verdict rests on).
fn pid_lines() -> Vec<LineMatch> {
    let mut lines = vec![LineMatch::all(&[
        LOG_LINE,
        r"example: setpoints from channel port \d+ \(example\.setpoint\), telemetry to port \d+ \(example\.telemetry\)$",
    ])];
    for (sent, printed) in PID_SETPOINTS {
        let target: f64 = printed.parse().expect("a number");
        let near = within_a_hundredth(target);
        lines.push(LineMatch::guest(&[&format!(
            r"^guest: pid: setpoint {}: t=\d+ setpoint={} position={near} overruns=0 line=\d+ dropped=0 end$",
            regex::escape(sent),
            regex::escape(printed)
        )]));
        lines.push(LineMatch::all(&[&format!(
            r"^example: t=\s*\d+ ms setpoint {} position \+?{near} overruns 0$",
            regex::escape(printed)
        )]));
    }
    lines.push(LineMatch::all(&[&pid_core_summary()]));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Ending;
    use crate::verdict::Nonce;

    const NONCE: &str = "feedc0de";

    fn nonce() -> Nonce {
        Nonce::fixed(NONCE)
    }

    /// The core's last line for a run that ended with `code`.
    fn verdict_line(code: i32) -> String {
        let word = if code == 0 { "PASS" } else { "FAIL" };
        format!("verdict: {word} (exit code {code}, nonce {NONCE})\n")
    }
    use crate::profiles::Profile;
    use std::collections::HashSet;

    #[test]
    fn within_a_hundredth_takes_four_decimals_near_the_target_only() {
        let near = |target: f64, printed: &str| regex::Regex::new(&format!("^{}$", within_a_hundredth(target))).unwrap().is_match(printed);
        assert!(near(1.5, "1.4900") && near(1.5, "1.5013") && near(1.5, "1.5100"));
        assert!(!near(1.5, "1.5101") && !near(1.5, "1.4899") && !near(1.5, "1.50"));
        assert!(near(-0.75, "-0.7512") && !near(-0.75, "0.7512") && !near(-0.75, "-0.7601"));
        assert!(near(0.005, "-0.0050") && near(0.005, "0.0150") && !near(0.005, "-0.0051"));
    }

    #[test]
    fn pid_case_rests_on_the_cores_account() {
        let case = CASES.iter().find(|case| case.name == "linux-guest-pid-virt-gicv3-1").unwrap();
        assert!(case.bootargs().split_once(" -- ").unwrap().0.contains(crate::guest::PID_APP));
        let summary = regex::Regex::new(&pid_core_summary()).unwrap();
        let good = "example: 16689 periods, setpoint 0.250 position 0.2501, 0 overruns; setpoints 3 taken, 1 refused; telemetry 166 lines written, 0 dropped";
        assert_eq!(&summary.captures(good).unwrap()[1], "166");
        for bad in [
            good.replace("0 overruns", "2 overruns"),
            good.replace("position 0.2501", "position 0.2701"),
            good.replace("3 taken", "2 taken"),
            good.replace("1 refused", "0 refused"),
        ] {
            assert!(!summary.is_match(&bad), "{bad}");
        }
    }

    #[test]
    fn main_job_case_has_the_guest_start_the_latency_test_beside_hunter_and_grinder_without_kaslr() {
        let case = CASES.iter().find(|case| matches!(case.scenario, Scenario::MainJob { .. })).unwrap();
        let args = case.bootargs();
        let (core, guest) = args.split_once(" -- ").unwrap();
        // The guest starts the latency test (companion latmus), not the core's arguments.
        assert!(!core.contains("latmus=") && core.contains(MAIN_JOB_HUNTER) && core.contains("companion.sirq"), "{core}");
        assert!(guest.contains("guest.load=grinder") && guest.contains(" nokaslr") && guest.ends_with(" guest.latmus=1000 guest.ping=200"), "{guest}");
        let expectations = case.expectations(1);
        assert_eq!(expectations.latency_test, Some(main_job_latency_test(2)));
        assert!(is_function_offset("cpu_do_idle+0x8"));
        assert!(!is_function_offset("0xffff800080ee12a0"));
        assert!(!is_function_offset("+0x8"));
        assert!(!is_function_offset("name+0xzz"));
    }

    /// A console as the contract describes it, for `cpus` CPUs and `gic`.
    fn boot_console(cpus: u32, gic: &str) -> String {
        let mut console = format!(
            "[    0.000100 core cpu0 INFO ] companion core 0.1.0 at EL2: {cpus} CPUs, {gic}, \
             timer 62500000 Hz, 1024 MiB RAM\n"
        );
        for cpu in 0..cpus {
            console += &format!("[    0.00{cpu}200 core cpu{cpu} INFO] cpu {cpu} online\n");
        }
        console + &format!("[    0.009000 core cpu0 INFO] all {cpus} CPUs online\n") + &verdict_line(0)
    }

    fn case(name: &str) -> &'static Case {
        CASES.iter().find(|case| case.name == name).unwrap()
    }

    /// The console of a restart-limit run: three restarts, the fourth reset refused, the
    /// latency test's `samples` over 3 s.
    fn reset_loop_console(samples: u64) -> String {
        let mut console = "RTT|  00:00:01  (oob thread context, 1000 us period, priority 99, cpu 0, gravity 0 ns)\n".to_owned();
        for boot in 1..=4 {
            console += &format!("guest| guest: reset-loop: boot {boot}, reboot -f\n");
            if boot < 4 {
                console += &format!("[ {boot}.0 core cpu0 WARN ] guest: restarting (restart {boot}, cause reset, at {boot}000 ms)\n");
                console += &format!(
                    "[ {boot}.1 core cpu0 INFO ] guest: restart {boot} (reset): vCPUs out in 3 us, 0 interrupts discarded, \
                     0 physical activations given back, guest reloaded in 700 ms, core heap 4096 bytes in use\n"
                );
            }
            console += "RTD|      1.000|      2.000|      3.000|       0|     0|      1.000|      3.000\n";
        }
        console += "[ 4.5 core cpu0 ERROR ] guest: reset with 3 restarts within the last minute already (the limit); the run fails\n";
        console += "RTS|      1.000|      2.000|      3.000|       0|     0|    00:00:04/00:00:04\n";
        console += &format!("[ 4.6 core cpu0 INFO ] latmus: {samples} thread samples, {samples} irq samples, 0 + 0 overruns\n");
        console += "[ 4.7 core cpu0 INFO ] replay log: logged 10, replayed 10, coalesced 0, withdrawn 0, max depth 1, lost 0\n";
        console += "[ 4.8 core cpu0 INFO ] guest: virtual interrupts: 10 forwarded, 10 injected, 10 completed; 3 restarts\n";
        console + &verdict_line(106)
    }

    #[test]
    fn the_restart_limit_case_fails_with_106_and_still_audits_the_sampling() {
        let case = case("guest-restart-limit-virt-gicv3-1");
        assert!(case.bootargs().contains("guest.script=reset-loop") && case.bootargs().contains("latmus="));
        let expectations = case.expectations(1);
        assert!(expectations.check(Ending::Exited(0), &reset_loop_console(4000), &nonce()).is_empty());
        let gap = expectations.check(Ending::Exited(0), &reset_loop_console(2000), &nonce());
        assert!(gap.iter().any(|f| f.contains("did not sample every period")), "{gap:?}");
        let passed = reset_loop_console(4000).replace(&verdict_line(106), &verdict_line(0));
        assert!(!expectations.check(Ending::Exited(0), &passed, &nonce()).is_empty(), "the limit must fail the run");
        let fourth = reset_loop_console(4000) + "[ 5.0 core cpu0 WARN ] guest: restarting (restart 4, cause reset, at 5000 ms)\n";
        assert!(!expectations.check(Ending::Exited(0), &fourth, &nonce()).is_empty());
    }

    #[test]
    fn names_are_unique_and_patterns_compile() {
        let names: HashSet<_> = CASES.iter().map(|case| case.name).collect();
        assert_eq!(names.len(), CASES.len());
        for case in CASES {
            case.expectations(4);
        }
    }

    #[test]
    fn every_case_has_its_profile() {
        for case in CASES {
            Profile::load(case.profile).unwrap();
        }
    }

    #[test]
    fn boot_case_accepts_contract_console() {
        let case = case("boot-virt-gicv3-4");
        assert_eq!(case.bootargs(), "");
        let failures = case
            .expectations(4)
            .check(Ending::Exited(0), &boot_console(4, "GICv3"), &nonce());
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn boot_case_catches_wrong_gic_and_missing_cpu() {
        let console = boot_console(4, "GICv2").replace("cpu 2 online", "cpu 2 stuck");
        let failures = case("boot-imx8mp-evk")
            .expectations(4)
            .check(Ending::Exited(0), &console, &nonce());
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("GICv3"));
        assert!(failures[1].contains(r"cpu 2 online"));
    }

    #[test]
    fn boot_case_needs_log_line_format() {
        let prefix = regex::Regex::new(r" core cpu\d+ [A-Z]+\s*\]").unwrap();
        let console = prefix
            .replace_all(&boot_console(1, "GICv2"), "]")
            .into_owned();
        let failures = case("boot-virt-gicv2-1")
            .expectations(1)
            .check(Ending::Exited(0), &console, &nonce());
        assert_eq!(failures.len(), 3, "{failures:?}");
    }

    /// The console of an oob suite run on 4 CPUs, every test passing.
    fn oob_console() -> String {
        let mut console = boot_console(4, "GICv3").replace(&verdict_line(0), "");
        for test in OOB_TESTS {
            console += &format!("oob-test {test} ... ok (1000 us)\n");
        }
        console + &format!("oob-suite: {} passed, 0 failed (400 ms)\n", OOB_TESTS.len()) + &verdict_line(0)
    }

    #[test]
    fn oob_suite_case_accepts_passing_console() {
        let case = case("oob-suite-virt-gicv2-4");
        assert_eq!(case.bootargs(), "companion.test=oob");
        assert_eq!(case.qemu_args, ICOUNT);
        let failures = case.expectations(4).check(Ending::Exited(0), &oob_console(), &nonce());
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn oob_suite_case_catches_failed_and_missing_tests() {
        let expectations = case("oob-suite-virt-gicv3-4").expectations(4);
        let failed = oob_console().replace(
            "oob-test quota ... ok (1000 us)",
            "oob-test quota ... FAILED: group CPU times 0 us",
        );
        assert!(!expectations.check(Ending::Exited(0), &failed, &nonce()).is_empty());
        let missing = oob_console().replace("oob-test ceiling ... ok (1000 us)\n", "");
        let failures = expectations.check(Ending::Exited(0), &missing, &nonce());
        assert!(failures.iter().any(|f| f.contains("ceiling")), "{failures:?}");
    }

    #[test]
    fn fault_case_accepts_contract_console() {
        let case = case("fault-dump");
        assert_eq!(case.bootargs(), "companion.test=fault");
        let console = boot_console(4, "GICv3").replace(&verdict_line(0), "provoking a data abort\n")
            + "[    0.010000 core cpu0 ERROR] unexpected exception: Data Abort (current EL)\n\
               ESR_EL2 0x96000045 FAR_EL2 0xdead0000 ELR_EL2 0x40081234\n\
               x0  0x0000000000000000 x1  0x0000000000000001\n";
        let expectations = case.expectations(4);
        assert!(expectations.check(Ending::Exited(0), &(console.clone() + &verdict_line(102)), &nonce()).is_empty());
        assert_eq!(
            expectations.check(Ending::Exited(0), &(console + &verdict_line(101)), &nonce()),
            ["the core's verdict has exit code 101, expected 102"]
        );
    }
}

/// The restart case: three restarts (a panic, then `reboot -f`, both PSCI resets, then a hang
/// with IRQs masked that only the core's watchdog ends), each torn down and reloaded, the
/// fourth boot's cyclictest, the replay log exact, the latency test without a missed period
/// across all of it (the core's audit, exit code 105, and the sampling checks).
fn restart_expectations(latency: bool) -> Expectations {
    let mut lines = vec![LineMatch::all(&[LOG_LINE, r"guest: restarts on \(at most \d+ a minute\): pristine kernel and initramfs kept at 0x[0-9a-f]+\+\d+ MiB, XXH3-128 [0-9a-f]{32}"])];
    for (boot, step, cause) in [(1, "panicking the kernel", "reset"), (2, "reboot -f", "reset"), (3, "halt -f (IRQs masked for ever)", "watchdog")] {
        lines.push(LineMatch::guest(&[&format!(r"^guest: crash: boot {boot}$")]));
        lines.push(LineMatch::guest(&[&format!(r"^guest: crash: {}$", regex::escape(step))]));
        if cause == "watchdog" {
            lines.push(LineMatch::all(&[LOG_LINE, r"guest: watchdog: [1-9]\d* interrupts in flight and none completed for 5000 ms"]));
        }
        lines.push(LineMatch::all(&[LOG_LINE, &format!(r"guest: restarting \(restart {boot}, cause {cause}, at \d+ ms\)")]));
        lines.push(LineMatch::all(&[
            LOG_LINE,
            &format!(r"guest: restart {boot} \({cause}\): vCPUs out in \d+ us, \d+ interrupts discarded, \d+ physical activations given back, guest reloaded in \d+ ms, core heap \d+ bytes in use"),
        ]));
        lines.push(LineMatch::all(&[LOG_LINE, &format!(r"guest: restart {boot}: cause {cause}, at \d+ ms, first guest console output \d+ ms later")]));
    }
    lines.extend([
        LineMatch::guest(&[r"^guest: crash: boot 4$"]),
        LineMatch::guest(&[r"^guest: cyclictest -m -S -p 90"]),
        LineMatch::guest(&[r"^guest: done$"]),
        LineMatch::all(&[LOG_LINE, r"guest: PSCI SYSTEM_OFF"]),
        LineMatch::all(&[LOG_LINE, r"replay log: logged [1-9]\d*, replayed [1-9]\d*, coalesced \d+, withdrawn \d+, max depth \d+, lost 0$"]),
        LineMatch::all(&[LOG_LINE, r"replay log: waiting \d+, in flight \d+, requeued \d+, overcounted 0, discarded \d+"]),
        LineMatch::all(&[LOG_LINE, r"guest: virtual interrupts: [1-9]\d* forwarded, .*; 3 restarts$"]),
    ]);
    if latency {
        lines.push(LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples, 0 \+ 0 overruns"]));
    }
    let expectations = Expectations::new(EXIT_PASS, lines, &[r"abort injected", r"guest: restarting \(restart 4"]);
    // The oob maxima of the boots after a restart against the first boot's, in this run.
    if latency { expectations.with_restart_windows() } else { expectations }
}

/// The restart-limit case: the default limit (3 a minute) lets three resets restart the guest,
/// the fourth fails the run with 106 and a line saying why; the latency test sampled every
/// period until the end (the sampling audit runs although the verdict is a failure), the
/// replay log lost nothing.
fn reset_loop_expectations() -> Expectations {
    let mut lines = Vec::new();
    for boot in 1..=3 {
        lines.push(LineMatch::guest(&[&format!(r"^guest: reset-loop: boot {boot}, reboot -f$")]));
        lines.push(LineMatch::all(&[LOG_LINE, &format!(r"guest: restarting \(restart {boot}, cause reset, at \d+ ms\)")]));
        lines.push(LineMatch::all(&[LOG_LINE, &format!(r"guest: restart {boot} \(reset\): vCPUs out in \d+ us, .*, core heap \d+ bytes in use$")]));
    }
    lines.extend([
        LineMatch::guest(&[r"^guest: reset-loop: boot 4, reboot -f$"]),
        LineMatch::all(&[LOG_LINE, r"guest: reset with 3 restarts within the last minute already \(the limit\); the run fails$"]),
        LineMatch::all(&[LOG_LINE, r"replay log: logged [1-9]\d*, replayed [1-9]\d*, coalesced \d+, withdrawn \d+, max depth \d+, lost 0$"]),
        LineMatch::all(&[LOG_LINE, r"guest: virtual interrupts: [1-9]\d* forwarded, .*; 3 restarts$"]),
        LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples, 0 \+ 0 overruns"]),
    ]);
    Expectations::new(EXIT_GUEST_RESET, lines, &[r"abort injected", r"guest: restarting \(restart 4", r"stopped sampling"])
        .with_sampling_audit()
}

/// The quiesce case: one restart (the guest's `reboot -f` with its RTC alarm armed), the
/// PL031 and PL061 quiesced, the second boot sees no RTC interrupt and the core forwarded
/// none in the whole run.
fn rtc_restart_expectations() -> Expectations {
    let lines = vec![
        LineMatch::guest(&[r"^guest: rtc-restart: alarm armed 2 s ahead, reboot -f$"]),
        LineMatch::all(&[LOG_LINE, r"guest: restarting \(restart 1, cause reset, at \d+ ms\)"]),
        LineMatch::all(&[LOG_LINE, r"guest: restart 1: passed-through devices quiesced: arm,pl061@0x9030000, arm,pl031@0x9010000$"]),
        LineMatch::guest(&[r"^guest: rtc-restart: rtc interrupts after the restart: 0$"]),
        LineMatch::guest(&[r"^guest: done$"]),
        LineMatch::all(&[LOG_LINE, r"guest: PSCI SYSTEM_OFF"]),
        LineMatch::all(&[LOG_LINE, r"replay log: logged [1-9]\d*, .* lost 0$"]),
    ];
    let forbidden = [r"abort injected", r"guest: restarting \(restart 2", r"forwarded by INTID:.* 34: [1-9]"];
    Expectations::new(EXIT_PASS, lines, &forbidden).forbid_guest(&[r"Kernel panic"])
}

/// The early-hang case: the watchdog's boot limit fires twice; the first restarts the guest,
/// the second is over the limit of one a minute and fails the run (106); the latency test
/// sampled every period throughout, and nothing was left in flight or lost.
fn early_hang_expectations() -> Expectations {
    const SILENT: &str = r"guest: watchdog: no interrupt completed in the 20000 ms since the guest was entered$";
    let lines = vec![
        LineMatch::all(&[LOG_LINE, SILENT]),
        LineMatch::all(&[LOG_LINE, r"guest: restarting \(restart 1, cause watchdog, at \d+ ms\)"]),
        LineMatch::all(&[LOG_LINE, r"guest: restart 1 \(watchdog\): vCPUs out in \d+ us, .*, core heap \d+ bytes in use$"]),
        LineMatch::all(&[LOG_LINE, r"guest: watchdog with 1 restarts within the last minute already \(the limit\); the run fails$"]),
        LineMatch::all(&[LOG_LINE, r"latmus: \d+ thread samples, \d+ irq samples, 0 \+ 0 overruns"]),
    ];
    // The second firing is the refusal's: only the watchdog asks with cause `watchdog`, and
    // its in-flight rule must not be what fired.
    let forbidden = [r"abort injected", r"guest: restarting \(restart 2", r"stopped sampling", r"interrupts in flight and none completed"];
    Expectations::new(EXIT_GUEST_RESET, lines, &forbidden).with_sampling_audit()
}

/// The restart soak's short form: the guest's `planned` resets each restarted it, its last boot
/// finished; the rest ([`crate::soak::problems`]) is judged from the console after the run.
fn restart_soak_expectations(planned: u64) -> Expectations {
    let lines = vec![
        LineMatch::all(&[LOG_LINE, &format!(r"guest: restart {planned} \(reset\): vCPUs out in .*, core heap \d+ bytes in use$")]),
        LineMatch::guest(&[&format!(r"^guest: restart-soak: {planned} restarts done$")]),
        LineMatch::all(&[LOG_LINE, r"guest: PSCI SYSTEM_OFF"]),
    ];
    Expectations::new(EXIT_PASS, lines, &[r"abort injected", &format!(r"guest: restarting \(restart {}", planned + 1)])
}
