//! Booting the Linux guest: with `companion.guest=ADDR`, the kernel `Image` a loader put at
//! `ADDR` and the initramfs the tree's `/chosen` names; with `companion.guest=bundle`, both
//! from the guest bundle `/chosen` names ([`super::bundle`]). The guest command line is the
//! one given after ` -- ` on the core's command line, else the bundle's.
//!
//! This first version runs one vCPU on the boot CPU. The console UART is emulated
//! ([`super::console`]) so the guest's lines and the core's share it whole; the GIC is
//! emulated by [`super::virq`].

use alloc::vec::Vec;

use xxhash_rust::xxh3::Xxh3;
use spin::Mutex;

use platform::fdt::DeviceTree;
use platform::guest_map::{ConsoleAccess, device_ranges, plan_guest_map};
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, build_guest_tree, guest_memory};
use platform::guest_tree::EmulatedVirtio;
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
    /// A bad `companion.guest.restart*` setting.
    Restart(&'static str),
    /// The guest bundle is missing or unusable.
    Bundle(super::bundle::Error),
}

/// Where the guest's kernel and initramfs come from (`companion.guest=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestSource {
    /// A kernel `Image` a loader put at this address, the initramfs `/chosen` names.
    Address(u64),
    /// The guest bundle `/chosen` names as the initrd.
    Bundle,
}

impl GuestSource {
    /// Reads `companion.guest=`'s value: `bundle` or a hexadecimal address (`0x...`).
    pub fn parse(value: &str) -> Option<Self> {
        if value == "bundle" {
            return Some(Self::Bundle);
        }
        value.strip_prefix("0x").and_then(|hex| u64::from_str_radix(hex, 16).ok()).map(Self::Address)
    }
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
            Self::Restart(e) => write!(f, "{e}"),
            Self::Bundle(e) => write!(f, "{e}"),
        }
    }
}

/// The initramfs the loader described in `/chosen`, if any.
pub(super) fn initrd(tree: &DeviceTree<'_>) -> Option<MemoryRange> {
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

/// The guest's command line at restart `number` (0: the first boot): restarts add
/// `companion.restarts=N`, which the guest's scripts may read in `/proc/cmdline`.
fn bootargs(cmdline: &str, number: usize) -> alloc::string::String {
    if number == 0 { cmdline.into() } else { alloc::format!("{cmdline} companion.restarts={number}") }
}

/// The guest tree's configuration (shared by the first boot and the restarts).
fn tree_config<'a>(
    info: &'a PlatformInfo<'a>,
    holes: &'a [MemoryRange],
    vcpus: usize,
    bootargs: &'a str,
    initrd: Option<MemoryRange>,
    channel: Option<EmulatedVirtio>,
) -> GuestTreeConfig<'a> {
    GuestTreeConfig {
        core_regions: holes,
        reserved: &[],
        vcpus,
        bootargs,
        initrd,
        psci: GuestPsciConduit::Hvc,
        devices: DevicePolicy::new(info),
        emulated_virtio: channel,
    }
}

/// Where the pristine copy of the kernel (`running`) and the initramfs goes: the top of the
/// highest RAM range it fits in, 2 MiB aligned, overlapping neither of them (nor `loaded`).
/// Not only the top range: a loader may leave its device tree near the top of RAM (U-Boot
/// does), splitting off a range too small for the copy.
fn pristine_region(memory: &[MemoryRange], running: MemoryRange, loaded: MemoryRange, initrd: Option<MemoryRange>) -> Option<MemoryRange> {
    let size = running.size.next_multiple_of(IMAGE_BASE_ALIGN) + initrd.map_or(0, |i| i.size.next_multiple_of(IMAGE_BASE_ALIGN));
    let mut ranges: Vec<&MemoryRange> = memory.iter().collect();
    ranges.sort_by_key(|m| core::cmp::Reverse(m.end()));
    ranges.into_iter().find_map(|range| {
        let base = range.end().checked_sub(size)? & !(IMAGE_BASE_ALIGN - 1);
        let region = MemoryRange::new(base, range.end() - base);
        let overlaps = |r: MemoryRange| r.base < region.end() && region.base < r.end();
        (base >= range.base && !overlaps(running) && !overlaps(loaded) && !initrd.is_some_and(overlaps)).then_some(region)
    })
}

/// What a restart needs to boot the guest again, captured at its first boot.
struct Plan {
    info: &'static PlatformInfo<'static>,
    dtb: usize,
    cmdline: &'static str,
    mpidrs: Vec<u64>,
    /// Guest RAM (without the core and the pristine copy).
    memory: Vec<MemoryRange>,
    /// What the guest's RAM leaves out: the core, the pristine copy.
    holes: Vec<MemoryRange>,
    /// The kernel where it runs (with its BSS), and the initramfs.
    kernel: MemoryRange,
    initrd: Option<MemoryRange>,
    tree_at: u64,
    /// The core-reserved copy of the kernel then the initramfs (each from a 2 MiB boundary).
    pristine: MemoryRange,
    /// XXH3-128 of the copy's kernel and initramfs bytes, taken when copied.
    hash: u128,
    channel: Option<EmulatedVirtio>,
    uart: (u64, u64, Option<u32>),
}

static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

/// Bytes copied, scrubbed or hashed between two looks at the console (IRQs stay unmasked
/// throughout: oob work preempts any of it at once).
const CHUNK: usize = 1 << 20;

/// Copies `len` bytes from `from` to `to` in [`CHUNK`]s, each cleaned to the point of
/// coherency, feeding `hash` with them.
///
/// # Safety
/// Both ranges lie in RAM the core maps, do not overlap, and no one else uses `to`.
unsafe fn copy_chunked(from: u64, to: u64, len: u64, hash: &mut Xxh3) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        // SAFETY: inside the caller's ranges.
        let source = unsafe { core::slice::from_raw_parts((from + done) as *const u8, n as usize) };
        hash.update(source);
        // SAFETY: as above; the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), (to + done) as *mut u8, n as usize) };
        boot::mmu::clean_to_poc((to + done) as usize..(to + done + n) as usize);
        done += n;
        crate::console::drain();
    }
}

/// Where the kernel and the initramfs sit in the pristine copy.
fn pristine_layout(plan_pristine: MemoryRange, kernel: MemoryRange) -> (u64, u64) {
    (plan_pristine.base, plan_pristine.base + kernel.size.next_multiple_of(IMAGE_BASE_ALIGN))
}

/// Prepares and enters the Linux guest on this (boot) CPU; returns only on error.
pub fn boot(
    info: &PlatformInfo<'static>,
    mpidrs: &[u64],
    spis: u32,
    dtb: usize,
    core_end: u64,
    source: GuestSource,
    cmdline: &'static str,
) -> Result<core::convert::Infallible, BootError> {
    // SAFETY: the loader's DTB, still intact in RAM.
    let tree = unsafe { DeviceTree::from_ptr(dtb as *const u8) }.map_err(|_| BootError::Tree)?;
    let ram_start = info.memory.first().map_or(0, |m| m.base);
    let core = MemoryRange::new(ram_start, (core_end - ram_start).next_multiple_of(IMAGE_BASE_ALIGN));
    let restart = super::restart::configure(
        info.bootarg("companion.guest.restart"),
        info.bootarg("companion.guest.restart.limit"),
        mpidrs,
    )
    .map_err(BootError::Restart)?;
    let all_memory = guest_memory(&tree, &[core]).map_err(BootError::GuestTree)?;
    let (kernel, initrd, cmdline) = match source {
        GuestSource::Address(address) => (address, initrd(&tree), cmdline),
        GuestSource::Bundle => {
            let loaded = super::bundle::load(&tree, &all_memory).map_err(BootError::Bundle)?;
            (loaded.kernel, loaded.initrd, if cmdline.is_empty() { loaded.cmdline.unwrap_or("") } else { cmdline })
        }
    };

    // SAFETY: `kernel` lies in guest RAM (checked next, before anything else is read).
    let header_range = MemoryRange::new(kernel, HEADER_SIZE as u64);
    if !inside(&all_memory, header_range) {
        return Err(BootError::OutsideGuestMemory("kernel", header_range));
    }
    // SAFETY: the header range is inside RAM, which the core maps.
    let header_bytes = unsafe { core::slice::from_raw_parts(kernel as *const u8, HEADER_SIZE) };
    let header = ImageHeader::parse(header_bytes).map_err(BootError::Image)?;
    let loaded_at = kernel;
    let kernel = header.run_address(loaded_at).map_err(BootError::Image)?;
    let running = MemoryRange::new(kernel, header.image_size.max(HEADER_SIZE as u64));
    // The pristine copy a restart reloads from, at the top of RAM, out of the guest's reach.
    let pristine = if restart {
        let region = pristine_region(&all_memory, running, MemoryRange::new(loaded_at, header.image_size), initrd);
        if region.is_none() {
            log::warn!("guest: no room for a pristine copy of the kernel and initramfs: restarts are off");
            super::restart::disable();
        }
        region
    } else {
        None
    };
    let holes: Vec<MemoryRange> = [core].into_iter().chain(pristine).collect();
    let memory = guest_memory(&tree, &holes).map_err(BootError::GuestTree)?;
    if !inside(&memory, running) {
        return Err(BootError::OutsideGuestMemory("kernel with its BSS", running));
    }
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

    // The board's channel device unless turned off (`companion.channel=off`), if the GIC has
    // its SPI.
    let channel = info.board.channel.filter(|device| device.intid() < 32 + spis && info.bootarg("companion.channel") != Some("off"));
    let config = tree_config(info, &holes, mpidrs.len(), cmdline, initrd, channel);
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
    if let Some(pristine) = pristine {
        let started = crate::rt::now().as_nanos();
        let (kernel_copy, initrd_copy) = pristine_layout(pristine, running);
        let mut hash = Xxh3::new();
        // SAFETY: the kernel and initramfs lie in guest RAM, the copy in the region the
        // guest's RAM leaves out (checked not to overlap them); no guest runs yet.
        unsafe {
            copy_chunked(running.base, kernel_copy, running.size, &mut hash);
            if let Some(initrd) = initrd {
                copy_chunked(initrd.base, initrd_copy, initrd.size, &mut hash);
            }
        }
        let hash = hash.digest128();
        log::info!(
            "guest: restarts on (at most {} a minute): pristine kernel and initramfs kept at {:#x}+{} MiB, XXH3-128 {:032x}, copied in {} ms",
            super::restart::limit(),
            pristine.base,
            pristine.size >> 20,
            hash,
            crate::rt::now().as_nanos().saturating_sub(started) / 1_000_000
        );
        *PLAN.lock() = Some(Plan {
            info: alloc::boxed::Box::leak(alloc::boxed::Box::new(info.clone())),
            dtb,
            cmdline,
            mpidrs: mpidrs.to_vec(),
            memory: memory.clone(),
            holes: holes.clone(),
            kernel: running,
            initrd,
            tree_at,
            pristine,
            hash,
            channel,
            uart: (info.uart.base, info.uart.size, uart_intid),
        });
        if let Err(e) = super::watchdog::start() {
            log::warn!("guest: the hang watchdog did not start: {e:?}");
        }
    }
    super::vcpus::prepare_this_cpu(boot::cpu_index());
    super::vcpus::publish(mpidrs);
    // The guest owns this CPU from here on: the previous IRQ state is never restored.
    let _ = crate::arch::mask_irqs();
    // SAFETY: stage 2 maps the kernel as guest RAM; the tree is cleaned to the point of
    // coherency; IRQs are masked. x0 = the guest's tree, x1..x3 = 0, as booting.rst asks.
    unsafe { super::enter(kernel, [tree_at, 0, 0, 0], state) }
}

/// A guest reloaded by [`reload`], ready for [`enter_again`].
pub struct Reloaded {
    state: GuestState,
    entry: u64,
    tree_at: u64,
}

/// Restart `number`: scrubs the guest's RAM, checks the pristine copy's hash, copies the
/// kernel and initramfs back, writes a fresh tree (its command line with
/// `companion.restarts=N`), resets the console model, and builds a new PSCI model. Runs on
/// CPU 0 with IRQs unmasked, in [`CHUNK`]s; every vCPU is out of guest context.
pub fn reload(number: usize) -> Result<Reloaded, &'static str> {
    let guard = PLAN.lock();
    let plan = guard.as_ref().ok_or("no pristine copy of the guest")?;
    // The dead guest's unfinished line, then a fresh UART model.
    super::console::flush();
    super::console::init(plan.uart.0, plan.uart.1, plan.uart.2);
    if plan.channel.is_some() {
        super::channel::reset();
    }
    // Scrub: nothing of the dead guest survives into the new one.
    for range in &plan.memory {
        let mut at = range.base;
        while at < range.end() {
            let n = (range.end() - at).min(CHUNK as u64);
            // SAFETY: guest RAM, which the core maps; no vCPU runs.
            unsafe { core::ptr::write_bytes(at as *mut u8, 0, n as usize) };
            boot::mmu::clean_to_poc(at as usize..(at + n) as usize);
            at += n;
            crate::console::drain();
        }
    }
    // One pass: the copy is hashed as it is made, and used only if the hash is the one taken
    // at the first boot.
    let (kernel_copy, initrd_copy) = pristine_layout(plan.pristine, plan.kernel);
    let mut hash = Xxh3::new();
    // SAFETY: from the pristine region to guest RAM (disjoint: the guest's RAM leaves the
    // region out); no vCPU runs.
    unsafe {
        copy_chunked(kernel_copy, plan.kernel.base, plan.kernel.size, &mut hash);
        if let Some(initrd) = plan.initrd {
            copy_chunked(initrd_copy, initrd.base, initrd.size, &mut hash);
        }
    }
    let check = hash.digest128();
    if check != plan.hash {
        return Err("the pristine copy of the kernel and initramfs no longer has its XXH3-128 hash");
    }
    // SAFETY: the loader's DTB, outside guest RAM, never written.
    let tree = unsafe { DeviceTree::from_ptr(plan.dtb as *const u8) }.map_err(|_| "the board's device tree is unreadable")?;
    let args = bootargs(plan.cmdline, number);
    let config = tree_config(plan.info, &plan.holes, plan.mpidrs.len(), &args, plan.initrd, plan.channel);
    let guest_tree = build_guest_tree(&tree, &config).map_err(|_| "cannot build the guest device tree again")?;
    if guest_tree.len() as u64 > IMAGE_BASE_ALIGN {
        return Err("the guest device tree grew beyond 2 MiB");
    }
    // SAFETY: the 2 MiB below the kernel's base, guest RAM checked at the first boot.
    unsafe { core::ptr::copy_nonoverlapping(guest_tree.as_ptr(), plan.tree_at as *mut u8, guest_tree.len()) };
    boot::mmu::clean_to_poc(plan.tree_at as usize..plan.tree_at as usize + guest_tree.len());
    // SAFETY: invalidating the instruction cache has no effect on program state.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
    let state = GuestState::new(&plan.mpidrs, &plan.memory, |_| None, power_off).ok_or("PSCI model")?;
    Ok(Reloaded { state, entry: plan.kernel.base, tree_at: plan.tree_at })
}

/// Boots the reloaded guest on vCPU 0 (this CPU); secondaries start again through `CPU_ON`.
pub fn enter_again(reloaded: Reloaded) -> ! {
    super::vcpus::prepare_this_cpu(boot::cpu_index());
    // Published from under the lock: a clone here would never be dropped (this function does
    // not return, and the next restart cuts its frame off the stack), 8 bytes lost per vCPU
    // and restart.
    if let Some(plan) = PLAN.lock().as_ref() {
        super::vcpus::publish(&plan.mpidrs);
    }
    let _ = crate::arch::mask_irqs();
    // SAFETY: stage 2 (unchanged since the first boot, its TLB entries dropped by
    // `prepare_this_cpu`) maps the reloaded kernel as guest RAM; the tree is cleaned to the
    // point of coherency; IRQs are masked.
    unsafe { super::enter(reloaded.entry, [reloaded.tree_at, 0, 0, 0], reloaded.state) }
}

/// The guest asked PSCI to power off or reset. A reset restarts the guest
/// ([`super::restart`]) unless restarts are off or over their limit: then it fails the run.
fn power_off(reset: bool) -> ! {
    if reset && super::restart::request(super::restart::Cause::Reset) {
        super::restart::leave_guest()
    }
    if !reset {
        log::info!("guest: PSCI SYSTEM_OFF");
    }
    end_run()
}

/// Ends the run with the guest's reports: the latency test stops, the replay log and the
/// other counters are printed, and the verdict (a failure recorded earlier stays).
pub fn end_run() -> ! {
    // The run ends here: the latency test's periods stop being due before the reports take the CPU.
    crate::latmus::stop_background();
    super::console::flush();
    crate::latmus::finish_background();
    super::sirq::report();
    super::control::report();
    crate::apps::report();
    super::irqsoff::report();
    super::virq::report();
    super::exits::report();
    super::virq::report_forwarded();
    super::trap_log::report();
    let counters = super::virq::replay_snapshot();
    log::info!(
        "guest: virtual interrupts: {} forwarded, {} injected, {} completed; {} restarts",
        counters.forwarded,
        counters.injected,
        counters.completed,
        super::restart::count()
    );
    power::exit(power::EXIT_SUCCESS)
}
