//! Booting the Linux guest (`companion.guest=ADDR`): the kernel `Image` a loader put at
//! `ADDR`, the initramfs the tree's `/chosen` names, and the guest command line given after
//! ` -- ` on the core's command line.
//!
//! This first version runs one vCPU on the boot CPU. The console UART is emulated
//! ([`super::console`]) so the guest's lines and the core's share it whole; the GIC is
//! emulated by [`super::virq`].

use alloc::vec::Vec;

use platform::fdt::DeviceTree;
use platform::guest_map::{ConsoleAccess, device_ranges, plan_guest_map};
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, build_guest_tree, guest_memory};
use platform::passthrough::DevicePolicy;
use platform::linux_image::{HEADER_SIZE, IMAGE_BASE_ALIGN, ImageHeader};
use platform::{MemoryRange, PlatformInfo};

use super::{GuestState, stage2};
use crate::power;

/// Why the guest could not be started.
#[derive(Debug)]
pub enum BootError {
    /// The board's device tree is unreadable.
    Tree,
    /// The kernel image is unusable.
    Image(platform::linux_image::ImageError),
    /// The guest device tree could not be built.
    GuestTree(platform::guest_tree::GuestTreeError),
    /// The kernel, its BSS or the initramfs is not inside guest memory.
    OutsideGuestMemory(&'static str, MemoryRange),
    /// No room for the guest's device tree below the kernel.
    NoRoomForTree,
    /// The stage-2 tables could not be built.
    Stage2(stage2::Stage2Error),
    /// The virtual GIC could not be set up.
    Vgic(&'static str),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tree => write!(f, "the board's device tree is unreadable"),
            Self::Image(e) => write!(f, "guest kernel: {e}"),
            Self::GuestTree(e) => write!(f, "guest device tree: {e}"),
            Self::OutsideGuestMemory(what, r) => {
                write!(f, "the guest {what} at {:#x}-{:#x} is not inside guest memory", r.base, r.end())
            }
            Self::NoRoomForTree => write!(f, "no room for the guest device tree below the kernel"),
            Self::Stage2(e) => write!(f, "{e}"),
            Self::Vgic(e) => write!(f, "virtual GIC: {e}"),
        }
    }
}

/// The initramfs the loader described in `/chosen`, if any.
fn initrd(tree: &DeviceTree<'_>) -> Option<MemoryRange> {
    let chosen = tree.find_node("/chosen")?;
    let read = |name: &str| {
        let property = chosen.property(name)?;
        property.as_u64().or_else(|| property.as_u32().map(u64::from))
    };
    let (start, end) = (read("linux,initrd-start")?, read("linux,initrd-end")?);
    (end > start).then(|| MemoryRange::new(start, end - start))
}

fn inside(memory: &[MemoryRange], range: MemoryRange) -> bool {
    memory.iter().any(|m| m.base <= range.base && range.end() <= m.end())
}

/// Prepares and enters the Linux guest on this (boot) CPU; returns only on error.
pub fn boot(
    info: &PlatformInfo<'_>,
    mpidrs: &[u64],
    spis: u32,
    dtb: usize,
    core_end: u64,
    kernel: u64,
    cmdline: &str,
) -> Result<core::convert::Infallible, BootError> {
    // SAFETY: the loader's DTB, still intact in RAM.
    let tree = unsafe { DeviceTree::from_ptr(dtb as *const u8) }.map_err(|_| BootError::Tree)?;
    let ram_start = info.memory.first().map_or(0, |m| m.base);
    let core = MemoryRange::new(ram_start, (core_end - ram_start).next_multiple_of(IMAGE_BASE_ALIGN));
    let memory = guest_memory(&tree, &[core]).map_err(BootError::GuestTree)?;

    // SAFETY: `kernel` lies in guest RAM (checked next, before anything else is read).
    let header_range = MemoryRange::new(kernel, HEADER_SIZE as u64);
    if !inside(&memory, header_range) {
        return Err(BootError::OutsideGuestMemory("kernel", header_range));
    }
    // SAFETY: the header range is inside RAM, which the core maps.
    let header_bytes = unsafe { core::slice::from_raw_parts(kernel as *const u8, HEADER_SIZE) };
    let header = ImageHeader::parse(header_bytes).map_err(BootError::Image)?;
    let loaded_at = kernel;
    let kernel = header.run_address(loaded_at).map_err(BootError::Image)?;
    let running = MemoryRange::new(kernel, header.image_size.max(HEADER_SIZE as u64));
    if !inside(&memory, running) {
        return Err(BootError::OutsideGuestMemory("kernel with its BSS", running));
    }
    let initrd = initrd(&tree);
    if let Some(initrd) = initrd
        && !inside(&memory, initrd)
    {
        return Err(BootError::OutsideGuestMemory("initramfs", initrd));
    }
    if kernel != loaded_at {
        // The loader put the image at a round address; it runs `text_offset` above one.
        let loaded = MemoryRange::new(loaded_at, header.image_size);
        if !inside(&memory, loaded) {
            return Err(BootError::OutsideGuestMemory("kernel as loaded", loaded));
        }
        if initrd.is_some_and(|i| i.base < running.end() && running.base < i.end()) {
            return Err(BootError::OutsideGuestMemory("kernel moved to its text_offset (it would cover the initramfs)", running));
        }
        // SAFETY: both ranges lie in guest RAM (checked above), which the core maps and no
        // guest uses yet; `copy` handles their overlap.
        unsafe { core::ptr::copy(loaded_at as *const u8, kernel as *mut u8, header.image_size as usize) };
        boot::mmu::clean_to_poc(kernel as usize..(kernel + header.image_size) as usize);
        log::info!(
            "guest: kernel moved from {loaded_at:#x} to {kernel:#x} (its text_offset {:#x} above a 2 MiB boundary)",
            header.text_offset
        );
    }

    let config = GuestTreeConfig {
        core_regions: &[core],
        reserved: &[],
        vcpus: mpidrs.len(),
        bootargs: cmdline,
        initrd,
        psci: GuestPsciConduit::Hvc,
        devices: DevicePolicy::new(info),
        // The board's channel device unless turned off (`companion.channel=off`), if the GIC
        // has its SPI.
        emulated_virtio: info
            .board
            .channel
            .filter(|device| device.intid() < 32 + spis && info.bootarg("companion.channel") != Some("off")),
    };
    let guest_tree: Vec<u8> = build_guest_tree(&tree, &config).map_err(BootError::GuestTree)?;
    // The tree goes in the 2 MiB below the kernel's base.
    let tree_at = (kernel - header.text_offset).checked_sub(IMAGE_BASE_ALIGN).ok_or(BootError::NoRoomForTree)?;
    let tree_range = MemoryRange::new(tree_at, guest_tree.len() as u64);
    if guest_tree.len() as u64 > IMAGE_BASE_ALIGN
        || !inside(&memory, tree_range)
        || initrd.is_some_and(|i| i.base < tree_range.end() && tree_range.base < i.end())
    {
        return Err(BootError::NoRoomForTree);
    }
    // SAFETY: the range is guest RAM below the kernel, outside the initramfs and the core.
    unsafe { core::ptr::copy_nonoverlapping(guest_tree.as_ptr(), tree_at as *mut u8, guest_tree.len()) };
    boot::mmu::clean_to_poc(tree_at as usize..tree_at as usize + guest_tree.len());

    let plan = plan_guest_map(&memory, &device_ranges(&tree, &config.devices), &info.gic, &info.uart, ConsoleAccess::Shared);
    // SAFETY: no guest runs yet; the tables are leaked.
    unsafe { stage2::install(&plan) }.map_err(BootError::Stage2)?;
    log::info!(
        "guest: Linux at {kernel:#x} ({} KiB running), tree at {tree_at:#x}, initramfs {}, {} MiB of RAM, command line: {cmdline}",
        running.size >> 10,
        initrd.map_or(alloc::string::String::from("none"), |i| alloc::format!("{:#x}+{} KiB", i.base, i.size >> 10)),
        memory.iter().map(|m| m.size).sum::<u64>() >> 20
    );

    let state = GuestState::new(mpidrs, &memory, |_| None, power_off).ok_or(BootError::Tree)?;
    let uart_intid = platform::discovery::uart_intid(&tree, &info.uart);
    let passed_through = platform::passthrough::passed_intids(&platform::passthrough::devices(&tree, &DevicePolicy::new(info)));
    let channel = config.emulated_virtio;
    let emulated: Vec<u32> = uart_intid.into_iter().chain(channel.map(|device| device.intid())).collect();
    let interrupts = super::virq::GuestInterrupts { timer: &info.timer, emulated: &emulated, passed_through: &passed_through };
    super::virq::init(&info.gic, mpidrs, spis.next_multiple_of(32), &interrupts).map_err(BootError::Vgic)?;
    super::console::init(info.uart.base, info.uart.size, uart_intid);
    if let Some(device) = channel {
        super::channel::init(device.base, device.intid(), &memory);
        log::info!(
            "guest: oob channels: a virtio-console (virtio-mmio) at {:#x}, INTID {}, {} ports at most",
            device.base,
            device.intid(),
            crate::rt::channel::MAX_CHANNELS
        );
        if let Err(e) = super::control::start() {
            log::warn!("guest: {e}");
        }
    }
    log::info!(
        "guest: console is an emulated PL011 at {:#x} ({}), shared line by line with the core's log",
        info.uart.base,
        uart_intid.map_or(alloc::string::String::from("no interrupt"), |intid| alloc::format!("INTID {intid}"))
    );
    super::vcpus::prepare_this_cpu(boot::cpu_index());
    super::vcpus::publish(mpidrs);
    // The guest owns this CPU from here on: the previous IRQ state is never restored.
    let _ = crate::arch::mask_irqs();
    // SAFETY: stage 2 maps the kernel as guest RAM; the tree is cleaned to the point of
    // coherency; IRQs are masked. x0 = the guest's tree, x1..x3 = 0, as booting.rst asks.
    unsafe { super::enter(kernel, [tree_at, 0, 0, 0], state) }
}

/// The guest asked PSCI to power off or reset: end the run. A reset fails it: restarting a
/// guest is not supported yet, and a guest that resets did not finish what it ran.
fn power_off(reset: bool) -> ! {
    // The run ends here: the latency test's periods stop being due before the reports take the CPU.
    crate::latmus::stop_background();
    super::console::flush();
    if reset {
        log::error!("guest: PSCI SYSTEM_RESET: restarting the guest is not supported; the run fails");
        power::record_failure(power::EXIT_GUEST_RESET);
    } else {
        log::info!("guest: PSCI SYSTEM_OFF");
    }
    crate::latmus::finish_background();
    super::sirq::report();
    super::irqsoff::report();
    super::virq::report();
    super::exits::report();
    super::virq::report_forwarded();
    super::trap_log::report();
    let counters = super::virq::replay_snapshot();
    log::info!(
        "guest: virtual interrupts: {} forwarded, {} injected, {} completed",
        counters.forwarded,
        counters.injected,
        counters.completed
    );
    power::exit(power::EXIT_SUCCESS)
}
