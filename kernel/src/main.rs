//! The companion core image: the Rust side of the boot path, from the entry code's call to
//! the verdict. Builds only for `aarch64-unknown-none`; on the host it is a stub that says so.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the companion core image builds for aarch64-unknown-none only: use `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod image {
    extern crate alloc;

    use alloc::vec::Vec;
    use core::ops::Range;

    use kernel::{BOARD, apps, console, gic, heap, latmus, power, sched, selftest, smp, traps};
    use platform::PlatformInfo;
    use platform::fdt::DeviceTree;

    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    /// Entered from `entry.S` on the boot CPU at EL2, MMU off, BSS clear, on CPU 0's stack.
    #[unsafe(no_mangle)]
    extern "C" fn companion_primary_main(dtb: usize, image_base: usize) -> ! {
        heap::init();
        // SAFETY: the board's console UART; the MMU is off so MMIO goes straight to it.
        unsafe { console::init(&BOARD.console) };
        console::start_log(BOARD.timer.frequency_hz);
        traps::install();
        traps::route_interrupts_to_el2();

        let info = discover(dtb);
        if info.uart != BOARD.console {
            // SAFETY: the UART the device tree names, still reachable with the MMU off.
            unsafe { console::init(&info.uart) };
        }
        report_defaults(&info);

        let mmu = enable_mmu(&info, dtb);
        power::set_psci(info.psci);
        if let Some(nonce) = info.bootarg("companion.nonce")
            && !power::set_nonce(nonce)
        {
            fail(format_args!("companion.nonce: not 1 to {} hexadecimal digits", power::NONCE_MAX_DIGITS));
        }
        // SAFETY: the GIC frames were mapped as device memory by `enable_mmu`.
        let cpus = smp::logical_order(&info.cpus, smp::current_mpidr());
        let mpidrs: Vec<u64> = cpus.iter().map(|cpu| cpu.mpidr).collect();
        let gic = match unsafe { gic::init(&info.gic, &mpidrs) } {
            Ok(summary) => summary,
            Err(e) => fail(format_args!("GIC unusable: {e}")),
        };
        let hz = console::counter_frequency().map_or(0, |f| f.hz());
        log::info!(
            "companion core {} on {} ({}): EL{}, {} CPUs, memory {} MiB, {}, timer {} Hz",
            env!("CARGO_PKG_VERSION"),
            BOARD.name,
            info.model,
            smp::current_el(),
            cpus.len(),
            info.total_memory() >> 20,
            gic,
            hz,
        );
        for range in &info.memory {
            log::info!("  memory {:#012x}-{:#012x}", range.base, range.end());
        }
        // Linker-script symbols: only their addresses are used.
        let image_size = (&raw const __image_end) as usize - (&raw const __image_start) as usize;
        log::info!(
            "  image at {image_base:#x}, {} KiB with BSS and stacks; heap {} KiB in use of {} KiB",
            image_size >> 10,
            heap::in_use() >> 10,
            heap::HEAP_SIZE >> 10
        );
        if !info.bootargs.is_empty() {
            log::info!("  command line: {}", info.bootargs);
        }

        let mpidrs: Vec<u64> = cpus.iter().map(|c| c.mpidr).collect();
        let Some(frequency) = console::counter_frequency() else { fail(format_args!("the counter frequency is unknown")) };
        if let Err(e) = sched::init(&mpidrs, info.timer.hyp_phys_intid, frequency) {
            fail(format_args!("oob scheduler: {e}"));
        }
        if let Err(e) = sched::cpu_online(0) {
            fail(format_args!("oob interrupts of cpu 0: {e}"));
        }
        boot::secondary::publish(&mmu, &mpidrs);
        smp::report_online();
        let online = smp::start_secondaries(&cpus, info.psci);
        if online != cpus.len() {
            fail(format_args!("only {online} of {} CPUs online", cpus.len()));
        }
        log::info!("all {online} CPUs online");
        // From here on the boot flow is CPU 0's in-band stage: oob work preempts it, and
        // console output waits in the ring for the drain points.
        kernel::arch::unmask_irqs();
        console::defer_output();

        if info.bootarg("companion.test") == Some("el1-guest") {
            if let Some(duration) = info.bootarg("latmus")
                && let Err(e) = latmus::start_in_background(latmus_config(&info, duration, cpus.len()))
            {
                fail(format_args!("latency test: {e}"));
            }
            let core_end = (&raw const __image_end) as u64;
            let Err(e) = kernel::guest::test_guest::run(&info, dtb, core_end, smp::current_mpidr());
            fail(format_args!("el1-guest: {e}"));
        }
        if info.bootarg("companion.test") == Some("hostile-guest") {
            if let Some(duration) = info.bootarg("latmus")
                && let Err(e) = latmus::start_in_background(latmus_config(&info, duration, cpus.len()))
            {
                fail(format_args!("latency test: {e}"));
            }
            let core_end = (&raw const __image_end) as u64;
            let attacks = info.bootarg("companion.hostile").unwrap_or("");
            let Err(e) = kernel::guest::hostile_guest::run(&info, dtb, core_end, &mpidrs, gic.spis, attacks);
            fail(format_args!("hostile-guest: {e}"));
        }
        if let Some(value) = info.bootarg("companion.guest") {
            let Some(source) = kernel::guest::linux::GuestSource::parse(value) else {
                fail(format_args!("companion.guest={value}: neither `bundle` nor a hexadecimal address (0x...)"))
            };
            let cmdline: &'static str = info.bootargs.split_once(" -- ").map_or("", |(_, guest)| guest.trim());
            if let Some(duration) = info.bootarg("latmus")
                && let Err(e) = latmus::start_in_background(latmus_config(&info, duration, cpus.len()))
            {
                fail(format_args!("latency test: {e}"));
            }
            // The in-band side of the picture: Linux's delay acknowledging a virtual IRQ the
            // core posts to vCPU 0, 100 times a second; beside the latency test, whether the
            // core starts it (`latmus=`) or the guest does (`companion latmus`, the main job:
            // `companion.sirq=on`).
            if (info.bootarg("latmus").is_some() || info.bootarg("companion.sirq").is_some())
                && let Err(e) = kernel::guest::sirq::start(0, kernel::rt::Duration::from_millis(10))
            {
                fail(format_args!("sirq test: {e}"));
            }
            let core_end = (&raw const __image_end) as u64;
            // One vCPU per CPU, pinned, unless told otherwise.
            let vcpus = match info.bootarg("companion.guest.vcpus").map(str::parse::<usize>) {
                None => mpidrs.len(),
                Some(Ok(n)) if (1..=mpidrs.len()).contains(&n) => n,
                Some(_) => fail(format_args!("companion.guest.vcpus must be within 1..={}", mpidrs.len())),
            };
            // The latency tracer: what the latency test's worst samples followed.
            match info.bootarg("companion.trace.latency") {
                None | Some("off") => {}
                Some("on") => kernel::latency_trace::start(false),
                Some("masks") if cfg!(feature = "latency-trace-masks") => kernel::latency_trace::start(true),
                Some("masks") => fail(format_args!("companion.trace.latency=masks needs an image built with the latency-trace-masks feature")),
                Some(other) => fail(format_args!("companion.trace.latency={other}: on, masks or off")),
            }
            // The irqs-off hunter: where Linux holds in-band IRQs off, sampled every US µs.
            if let Some(us) = info.bootarg("companion.irqsoff") {
                let period = match us.parse::<u64>() {
                    Ok(us) if us > 0 => kernel::rt::Duration::from_micros(us),
                    _ => fail(format_args!("companion.irqsoff={us}: not a period in microseconds (> 0)")),
                };
                if let Err(e) = kernel::guest::irqsoff::start(vcpus, period) {
                    fail(format_args!("irqsoff: {e}"));
                }
            }
            // An application beside the guest: it opens its channels before Linux probes them.
            if let Some(name) = info.bootarg("companion.app") {
                start_app(&info, name);
            }
            let Err(e) = kernel::guest::linux::boot(&info, &mpidrs[..vcpus], gic.spis, dtb, core_end, source, cmdline);
            // No guest: the run fails, but the oob work started for it runs its course.
            log::error!("guest: {e}");
            log::error!("guest: no Linux guest runs; the oob work goes on without it");
            power::record_failure(power::EXIT_BOOT_FAILURE);
            latmus::wait_background();
            power::exit(power::EXIT_SUCCESS)
        }
        if let Some(test) = info.bootarg("companion.test")
            && let Err(e) = selftest::run(test)
        {
            fail(format_args!("selftest {test}: {e:?}"));
        }
        if let Some(name) = info.bootarg("companion.app") {
            run_app(&info, name);
        }
        if info.bootarg("companion.bench").is_some() {
            let cpu = cpus.len().min(2) - 1;
            if let Err(e) = kernel::bench::run(cpu, image_size, boot::STACK_SIZE * cpus.len()) {
                fail(format_args!("benchmark: {e}"));
            }
        }
        if let Some(duration) = info.bootarg("latmus") {
            run_latmus(&info, duration, cpus.len());
        }
        if info.bootarg("companion.ps").is_some() {
            kernel::rt::ps();
        }
        power::exit(power::EXIT_SUCCESS)
    }

    /// The oob application called `name`; an unknown name stops the boot.
    fn find_app(name: &str) -> &'static apps::App {
        apps::find(name).unwrap_or_else(|| {
            let known: Vec<&str> = apps::APPS.iter().map(|app| app.name).collect();
            fail(format_args!("companion.app={name}: no such application (known: {})", known.join(", ")))
        })
    }

    /// Starts the oob application `name` beside the guest with its `companion.app.*` options.
    fn start_app(info: &PlatformInfo<'_>, name: &str) {
        let app = find_app(name);
        log::info!("starting application {} beside the guest: {}", app.name, app.summary);
        let lookup = |key: &str| info.bootarg(key);
        if let Err(e) = apps::start(app, &apps::Options::new(&lookup)) {
            fail(format_args!("application {}: {e}", app.name));
        }
    }

    /// Runs the oob application `name` with its `companion.app.*` options.
    fn run_app(info: &PlatformInfo<'_>, name: &str) {
        let app = find_app(name);
        log::info!("starting application {}: {}", app.name, app.summary);
        let lookup = |key: &str| info.bootarg(key);
        if let Err(e) = (app.run)(&apps::Options::new(&lookup)) {
            fail(format_args!("application {}: {e}", app.name));
        }
        log::info!("application {} finished", app.name);
    }

    /// Runs the latency test for `duration` seconds with the `latmus.*` options.
    fn run_latmus(info: &PlatformInfo<'_>, duration: &str, cpus: usize) {
        if let Err(e) = latmus::run(latmus_config(info, duration, cpus)) {
            fail(format_args!("latency test: {e}"));
        }
        kernel::irq::report();
    }

    /// The latency test's configuration from the `latmus.*` options.
    fn latmus_config(info: &PlatformInfo<'_>, duration: &str, cpus: usize) -> latmus::LatmusConfig {
        let number = |key: &str, default: u64| match info.bootarg(key) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| fail(format_args!("{key}={text}: not a number"))),
        };
        let gravity_ns = info.bootarg("latmus.gravity").map(|text| {
            text.parse().unwrap_or_else(|_| fail(format_args!("latmus.gravity={text}: not a number of ns")))
        });
        let config = latmus::LatmusConfig {
            duration_s: duration.parse().unwrap_or_else(|_| fail(format_args!("latmus={duration}: not a number of seconds"))),
            period_us: number("latmus.period", 1000),
            cpu: number("latmus.cpu", cpus.saturating_sub(1) as u64) as usize,
            priority: u8::try_from(number("latmus.priority", 99)).unwrap_or(0),
            gravity_ns,
        };
        if config.period_us == 0 {
            fail(format_args!("latmus.period must be at least 1 us"));
        }
        if !(1..=99).contains(&config.priority) {
            fail(format_args!("latmus.priority must be within 1..=99"));
        }
        if config.cpu >= cpus {
            fail(format_args!("latmus.cpu={}: only {cpus} CPUs", config.cpu));
        }
        config
    }

    /// Reads the device tree at `dtb`; no tree means board defaults, a bad tree stops the boot.
    fn discover(dtb: usize) -> PlatformInfo<'static> {
        if dtb == 0 {
            log::warn!("no device tree in x0: using the {} board's defaults", BOARD.name);
            return PlatformInfo::board_defaults(BOARD);
        }
        // SAFETY: the loader passes a DTB in RAM in x0; it stays untouched for the whole run.
        match unsafe { DeviceTree::from_ptr(dtb as *const u8) } {
            Ok(tree) => PlatformInfo::discover(&tree, BOARD),
            Err(e) => fail(format_args!("malformed device tree at {dtb:#x}: {e}")),
        }
    }

    fn report_defaults(info: &PlatformInfo<'_>) {
        let d = info.defaults_used;
        for (missing, what) in [
            (d.memory, "memory"),
            (d.uart, "console UART"),
            (d.gic, "GIC"),
            (d.timer, "timer"),
            (d.cpus, "CPUs"),
        ] {
            if missing {
                log::warn!("device tree describes no usable {what}: using the {} board's default", BOARD.name);
            }
        }
        if info.cpus_ignored > 0 {
            log::warn!("{} CPUs beyond the first {} are left off", info.cpus_ignored, boot::MAX_CPUS);
        }
    }

    fn enable_mmu(info: &PlatformInfo<'_>, dtb: usize) -> boot::mmu::MmuRegisters {
        let ram: Vec<Range<u64>> = info.memory.iter().map(|r| r.base..r.end()).collect();
        let gic = &info.gic;
        let mut devices: Vec<Range<u64>> = [Some(gic.distributor), gic.redistributor, gic.cpu_interface, gic.hyp_interface]
            .into_iter()
            .flatten()
            .chain([platform::MemoryRange::new(info.uart.base, info.uart.size)])
            .map(|r| r.base..r.end())
            .collect();
        if dtb != 0 {
            // SAFETY: `discover` already read a valid tree there; it stays untouched.
            if let Ok(tree) = unsafe { DeviceTree::from_ptr(dtb as *const u8) } {
                devices.extend(kernel::guest::quiesce::prepare(&tree, info));
            }
        }
        // SAFETY: RAM holds the image, stacks, heap and device tree; `devices` holds all MMIO
        // the core touches (the passed-through devices' registers only for their quiesce at
        // a guest restart). We are the boot CPU and the MMU is off.
        match unsafe { boot::mmu::enable(&ram, &devices) } {
            Ok(registers) => registers,
            Err(e) => fail(format_args!("cannot build the EL2 page tables: {e}")),
        }
    }

    /// Reports a boot failure and ends the run.
    fn fail(args: core::fmt::Arguments<'_>) -> ! {
        log::error!("{args}");
        power::exit(power::EXIT_BOOT_FAILURE)
    }

    /// Entered from `entry.S` on a secondary CPU, MMU on, on its own stack.
    #[unsafe(no_mangle)]
    extern "C" fn companion_secondary_main(cpu: usize) -> ! {
        traps::route_interrupts_to_el2();
        gic::init_cpu(cpu);
        if let Err(e) = sched::cpu_online(cpu) {
            log::error!("oob interrupts of cpu {cpu}: {e}");
            power::park();
        }
        smp::report_online();
        kernel::guest::vcpus::idle(cpu)
    }

    /// Entered from `entry.S` when the loader did not start us at EL2.
    #[unsafe(no_mangle)]
    extern "C" fn companion_wrong_exception_level(el: u64, _dtb: usize) -> ! {
        // SAFETY: the board's console UART, MMU off.
        unsafe { console::init(&BOARD.console) };
        // Straight to the UART: at EL1 there is no per-CPU state (TPIDR_EL2) for the ring.
        console::write_unbuffered(format_args!(
            "companion core: entered at EL{el}, but it must be entered at EL2 (with virtualization \
             enabled); refusing to start\nverdict: FAIL (exit code {}, nonce unknown at EL1)\n",
            power::EXIT_WRONG_EL
        ));
        power::system_off_from_el1()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        console::write_fmt_emergency(format_args!("panic on cpu {}: {info}\n", boot::cpu_index()));
        power::exit(power::EXIT_PANIC)
    }
}
