//! The in-band guest's device tree, rewritten from the one the board gave the core.
//!
//! The guest (an unmodified Linux at EL1) must see the machine as the core presents it:
//!
//! - **memory** without the core's own region and the pages of the loader's tree (the core
//!   leaves both unmapped at stage 2);
//! - **CPUs**: the first `vcpus` CPU nodes, each started through PSCI (a spin-table
//!   `cpu-release-addr` is dropped, and so is an `enable-method` of `/cpus` itself, as the Pi
//!   4's 32-bit `brcm,bcm2836-smp`: the core emulates PSCI for the guest);
//! - **PSCI** 1.0/0.2 through the conduit the core emulates (HVC by default), added if the
//!   board has no PSCI node;
//! - **the virtual GIC**: the distributor and redistributors at their physical addresses
//!   (the core traps and emulates them); for GICv2 the CPU-interface frame is kept at its
//!   address (the core maps the virtual CPU interface there) and the hypervisor frames are
//!   removed; the maintenance interrupt is removed;
//! - **the generic timer** without its EL2 (hypervisor) interrupts;
//! - **`/chosen`** with the guest's command line and initrd, and `stdout-path` naming the
//!   console UART the core emulates (a board's own may name another UART, as the Raspberry
//!   Pi 4's names the mini UART);
//! - **the console UART's children** (the Pi 4's Bluetooth on UART0) disabled: the guest
//!   gets the UART as a plain console, not a serdev bus for a device that is not there;
//! - **the core's emulated virtio-mmio device** (the oob channels), if configured, as a
//!   `virtio,mmio` node under the root (in the root's address and size cells, the GIC's three
//!   interrupt cells, as on the boards that have one);
//! - **withheld devices** (everything [`crate::passthrough`] does not pass through: bus
//!   masters, devices off the board's allow-list) with `status = "disabled"`, so the guest
//!   never probes what it cannot reach.
//!
//! Everything else is copied unchanged. The result is a fresh DTB built with
//! [`FdtWriter`]; nothing here panics on a malformed or unusual input tree.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::MemoryRange;
use crate::passthrough::{DeviceClass, DevicePolicy, devices, page_range};
use crate::fdt::{DeviceTree, FdtWriteError, FdtWriter, Node, Property};

/// How the guest reaches the core's PSCI emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestPsciConduit {
    /// `HVC #0` (the usual choice for a guest, as under KVM).
    Hvc,
    /// `SMC #0` (trapped to EL2 with `HCR_EL2.TSC`).
    Smc,
}

/// What the guest's tree must say.
#[derive(Debug, Clone)]
pub struct GuestTreeConfig<'a> {
    /// Physical ranges the guest must not see as memory (the core's image, heap, stacks).
    pub core_regions: &'a [MemoryRange],
    /// More ranges the guest must leave alone but that stay mapped (e.g. firmware's spin
    /// table): written as `/memreserve/` entries.
    pub reserved: &'a [MemoryRange],
    /// How many CPUs the guest gets (the first ones of the tree, in tree order).
    pub vcpus: usize,
    /// The guest kernel command line.
    pub bootargs: &'a str,
    /// Where the initramfs was loaded, if any.
    pub initrd: Option<MemoryRange>,
    /// The PSCI conduit the core emulates.
    pub psci: GuestPsciConduit,
    /// Which devices the guest gets: the ones it withholds are marked disabled.
    pub devices: DevicePolicy<'a>,
    /// The core's emulated virtio-mmio device, added as a `virtio,mmio` node.
    pub emulated_virtio: Option<EmulatedVirtio>,
}

/// A virtio-mmio device the core emulates: one page at `base` (trapped, never mapped) and a
/// level-sensitive SPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedVirtio {
    /// The register page's guest-physical address.
    pub base: u64,
    /// The SPI number (the INTID is 32 above it).
    pub spi: u32,
}

impl EmulatedVirtio {
    /// Bytes of the register frame.
    pub const SIZE: u64 = 0x1000;

    /// The device's INTID.
    pub const fn intid(&self) -> u32 {
        self.spi + 32
    }
}

/// Why the guest tree could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestTreeError {
    /// The tree has no `/memory` node with a usable `reg`.
    NoMemory,
    /// Nothing is left of memory once the core's regions are removed.
    NoMemoryLeft,
    /// The tree has no `/cpus` node or none of its CPUs.
    NoCpus,
    /// The guest must have at least one vCPU.
    ZeroVcpus,
    /// A property the rewrite needs has an unexpected shape.
    Malformed(String),
    /// Writing the new tree failed.
    Write(FdtWriteError),
}

impl fmt::Display for GuestTreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemory => write!(f, "the device tree describes no memory"),
            Self::NoMemoryLeft => write!(f, "no guest memory is left once the core's regions are removed"),
            Self::NoCpus => write!(f, "the device tree describes no CPUs"),
            Self::ZeroVcpus => write!(f, "the guest needs at least one vCPU"),
            Self::Malformed(what) => write!(f, "malformed device tree: {what}"),
            Self::Write(e) => write!(f, "cannot write the guest device tree: {e:?}"),
        }
    }
}

impl From<FdtWriteError> for GuestTreeError {
    fn from(e: FdtWriteError) -> Self {
        Self::Write(e)
    }
}

/// GIC compatibles whose `reg` lists distributor, redistributor(s), then GICC, GICH, GICV.
const GIC_V3_COMPATIBLE: &str = "arm,gic-v3";
/// GICv2 compatibles whose `reg` lists distributor, GICC, then GICH, GICV.
const GIC_V2_COMPATIBLES: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic"];
/// The generic timer's compatibles.
const TIMER_COMPATIBLES: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];
/// Timer interrupts a guest keeps: secure physical, non-secure physical, virtual.
const GUEST_TIMER_INTERRUPTS: usize = 3;
/// The GIC binding's interrupt type for an SPI, and a level-high trigger.
const GIC_SPI: u32 = 0;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// The root's `#address-cells`/`#size-cells` the guest tree can keep: the memory node and the
/// emulated virtio device are written in the root's cells, one or two each (a 64-bit value).
const ROOT_CELLS: core::ops::RangeInclusive<u32> = 1..=2;
/// The PSCI node's compatibles, newest first.
const PSCI_COMPATIBLES: &[&str] = &["arm,psci-1.0", "arm,psci-0.2"];

/// Builds the guest's DTB from the board's tree `host` (see the [module docs](self)).
pub fn build_guest_tree(host: &DeviceTree<'_>, config: &GuestTreeConfig<'_>) -> Result<Vec<u8>, GuestTreeError> {
    if config.vcpus == 0 {
        return Err(GuestTreeError::ZeroVcpus);
    }
    let root = host.root();
    let root_cells = (root.child_address_cells(), root.child_size_cells());
    if !ROOT_CELLS.contains(&root_cells.0) || !ROOT_CELLS.contains(&root_cells.1) {
        return Err(GuestTreeError::Malformed(alloc::format!(
            "/: #address-cells {} and #size-cells {}: the guest's memory is written in 1 or 2 cells each",
            root_cells.0, root_cells.1
        )));
    }
    let memory = guest_memory(host, config.core_regions)?;
    let kept_cpus = guest_cpu_names(host, config.vcpus)?;
    let mut writer = FdtWriter::new();
    for range in config.reserved {
        writer.reserve_memory(range.base, range.size);
    }
    let found = devices(host, &config.devices);
    let console = found
        .iter()
        .find(|device| device.class == DeviceClass::CoreOwned && device.regs.iter().any(|r| overlaps(*r, config.devices.console)))
        .map(|device| device.node.offset());
    let console_path = console.and_then(|offset| path_of(root, offset, &mut String::new()));
    let withheld: Vec<usize> = found
        .iter()
        .filter(|device| matches!(device.class, DeviceClass::Withheld(_)))
        .map(|device| device.node.offset())
        .collect();
    let mut rewrite = Rewrite {
        config,
        memory: &memory,
        kept_cpus: &kept_cpus,
        withheld: &withheld,
        memory_written: false,
        console,
        console_path: console_path.as_deref(),
        inside_console: false,
    };
    rewrite.node(&mut writer, host.root(), 0)?;
    Ok(writer.finish()?)
}

/// Guest memory: every `/memory` range minus the core's regions and minus the pages of
/// `host` itself (the loader's tree carries the core's own command line; QEMU puts it in RAM
/// after the initramfs), sorted.
pub fn guest_memory(host: &DeviceTree<'_>, core_regions: &[MemoryRange]) -> Result<Vec<MemoryRange>, GuestTreeError> {
    let blob = host.as_bytes();
    let blob = page_range(MemoryRange::new(blob.as_ptr() as u64, blob.len() as u64));
    let mut ranges: Vec<MemoryRange> = host
        .root()
        .children()
        .filter(|node| node.base_name() == "memory" && node.is_enabled())
        .flat_map(|node| node.reg().map(|(base, size)| MemoryRange::new(base, size)).collect::<Vec<_>>())
        .filter(|range| range.size > 0)
        .collect();
    if ranges.is_empty() {
        return Err(GuestTreeError::NoMemory);
    }
    for hole in core_regions.iter().chain([&blob]) {
        ranges = ranges.into_iter().flat_map(|range| subtract(range, *hole)).collect();
    }
    ranges.sort_by_key(|range| range.base);
    if ranges.is_empty() {
        return Err(GuestTreeError::NoMemoryLeft);
    }
    Ok(ranges)
}

/// `range` without `hole`: zero, one or two pieces.
fn subtract(range: MemoryRange, hole: MemoryRange) -> impl Iterator<Item = MemoryRange> {
    let below = (hole.base > range.base).then(|| MemoryRange::new(range.base, hole.base.min(range.end()) - range.base));
    let above = (hole.end() < range.end())
        .then(|| MemoryRange::new(hole.end().max(range.base), range.end() - hole.end().max(range.base)));
    [below, above].into_iter().flatten().filter(|piece| piece.size > 0)
}

/// Whether two ranges share a byte.
fn overlaps(a: MemoryRange, b: MemoryRange) -> bool {
    a.base < b.end() && b.base < a.end()
}

/// The full path of the node at `offset` under `node`, whose own path `prefix` holds (empty
/// for the root); `None` if it is not there.
fn path_of(node: Node<'_>, offset: usize, prefix: &mut String) -> Option<String> {
    for child in node.children() {
        let length = prefix.len();
        prefix.push('/');
        prefix.push_str(child.name);
        if child.offset() == offset {
            return Some(prefix.clone());
        }
        if let Some(found) = path_of(child, offset, prefix) {
            return Some(found);
        }
        prefix.truncate(length);
    }
    None
}

/// The names of the CPU nodes the guest keeps: the first `vcpus` in tree order.
fn guest_cpu_names<'a>(host: &DeviceTree<'a>, vcpus: usize) -> Result<Vec<&'a str>, GuestTreeError> {
    let cpus = host.find_node("/cpus").ok_or(GuestTreeError::NoCpus)?;
    let names: Vec<&str> = cpus
        .children()
        .filter(|node| node.base_name() == "cpu" && node.property("device_type").and_then(|p| p.as_str()) == Some("cpu"))
        .map(|node| node.name)
        .take(vcpus)
        .collect();
    if names.is_empty() { Err(GuestTreeError::NoCpus) } else { Ok(names) }
}

/// The state of one rewrite.
struct Rewrite<'c, 'm> {
    config: &'c GuestTreeConfig<'c>,
    memory: &'m [MemoryRange],
    kept_cpus: &'m [&'m str],
    /// Offsets of the device nodes the guest does not get.
    withheld: &'m [usize],
    memory_written: bool,
    /// The console UART's node offset and full path, if the tree has it.
    console: Option<usize>,
    console_path: Option<&'m str>,
    /// The nodes being copied are below the console UART's.
    inside_console: bool,
}

/// Big-endian cells of `value` in `count` cells (1 or 2, see [`ROOT_CELLS`]).
fn push_cells(out: &mut Vec<u8>, value: u64, count: u32) {
    if count >= 2 {
        out.extend_from_slice(&((value >> 32) as u32).to_be_bytes());
    }
    out.extend_from_slice(&(value as u32).to_be_bytes());
}

impl Rewrite<'_, '_> {
    /// Copies `node` (at `depth`, 0 = root) with the guest's changes.
    fn node(&mut self, out: &mut FdtWriter, node: Node<'_>, depth: usize) -> Result<(), GuestTreeError> {
        let path_is = |name: &str| depth == 1 && node.name == name;
        if depth == 1 && node.base_name() == "memory" {
            // All guest memory goes into the first memory node; later ones are dropped.
            if !self.memory_written {
                self.memory_written = true;
                self.memory_node(out, node)?;
            }
            return Ok(());
        }
        if depth == 2 && node.base_name() == "cpu" && !self.kept_cpus.contains(&node.name) {
            return Ok(());
        }
        if depth == 2 && node.base_name() == "cpu-map" {
            // Topology would name dropped CPUs by phandle: leave it out.
            return Ok(());
        }
        out.begin_node(node.name)?;
        let is_cpu = depth == 2 && node.base_name() == "cpu";
        let is_psci = path_is("psci") || node.is_compatible("arm,psci") || PSCI_COMPATIBLES.iter().any(|c| node.is_compatible(c));
        let gic_v3 = node.is_compatible(GIC_V3_COMPATIBLE);
        let gic_v2 = GIC_V2_COMPATIBLES.iter().any(|c| node.is_compatible(c));
        let is_timer = TIMER_COMPATIBLES.iter().any(|c| node.is_compatible(c));
        let is_chosen = path_is("chosen");
        let is_cpus = path_is("cpus");
        let is_withheld = self.withheld.contains(&node.offset()) || self.inside_console;
        for property in node.properties() {
            match property.name {
                "status" if is_withheld => {}
                "enable-method" | "cpu-release-addr" if is_cpu => {}
                "enable-method" if is_cpus => {}
                "stdout-path" if is_chosen && self.console_path.is_some() => {}
                "method" | "compatible" if is_psci => {}
                "cpu_on" | "cpu_off" | "cpu_suspend" | "migrate" if is_psci => {}
                "interrupts" if gic_v3 || gic_v2 => {}
                "reg" if gic_v3 => self.gic_v3_reg(out, &node, property)?,
                "reg" if gic_v2 => self.gic_v2_reg(out, &node, property)?,
                "interrupts" if is_timer => self.timer_interrupts(out, property)?,
                "bootargs" | "linux,initrd-start" | "linux,initrd-end" if is_chosen => {}
                _ => out.property(property.name, property.value)?,
            }
        }
        if is_cpu {
            out.property_str("enable-method", "psci")?;
        }
        if is_psci {
            self.psci_properties(out)?;
        }
        if is_chosen {
            self.chosen_properties(out)?;
        }
        if is_withheld {
            out.property_str("status", "disabled")?;
        }
        let was_inside_console = self.inside_console;
        self.inside_console |= self.console == Some(node.offset());
        for child in node.children() {
            self.node(out, child, depth + 1)?;
        }
        self.inside_console = was_inside_console;
        if depth == 0 {
            self.missing_root_nodes(out, &node)?;
        }
        out.end_node()?;
        Ok(())
    }

    fn memory_node(&mut self, out: &mut FdtWriter, node: Node<'_>) -> Result<(), GuestTreeError> {
        let first = self.memory.first().ok_or(GuestTreeError::NoMemoryLeft)?;
        out.begin_node(&alloc::format!("memory@{:x}", first.base))?;
        out.property_str("device_type", "memory")?;
        let mut reg = Vec::new();
        for range in self.memory {
            push_cells(&mut reg, range.base, node.address_cells);
            push_cells(&mut reg, range.size, node.size_cells);
        }
        out.property("reg", &reg)?;
        out.end_node()?;
        Ok(())
    }

    /// GICv3 `reg`: distributor and redistributor region(s) only (the CPU interface is
    /// system registers; GICC/GICH/GICV entries go).
    fn gic_v3_reg(&self, out: &mut FdtWriter, node: &Node<'_>, property: Property<'_>) -> Result<(), GuestTreeError> {
        let regions = node.property("#redistributor-regions").and_then(|p| p.as_u32()).unwrap_or(1) as usize;
        self.keep_reg_entries(out, node, property, 1 + regions)
    }

    /// GICv2 `reg`: distributor and CPU interface (where the core maps the virtual CPU
    /// interface); the hypervisor frames go.
    fn gic_v2_reg(&self, out: &mut FdtWriter, node: &Node<'_>, property: Property<'_>) -> Result<(), GuestTreeError> {
        self.keep_reg_entries(out, node, property, 2)
    }

    fn keep_reg_entries(&self, out: &mut FdtWriter, node: &Node<'_>, property: Property<'_>, entries: usize) -> Result<(), GuestTreeError> {
        let entry_bytes = 4 * (node.address_cells as usize + node.size_cells as usize);
        if entry_bytes == 0 || !property.value.len().is_multiple_of(entry_bytes) {
            return Err(GuestTreeError::Malformed(alloc::format!("{}: reg is not whole entries", node.name)));
        }
        let keep = entries.min(property.value.len() / entry_bytes) * entry_bytes;
        out.property("reg", &property.value[..keep])?;
        Ok(())
    }

    /// Timer `interrupts`: the first three (secure, non-secure physical, virtual); the EL2
    /// ones belong to the core.
    fn timer_interrupts(&self, out: &mut FdtWriter, property: Property<'_>) -> Result<(), GuestTreeError> {
        // Three cells per interrupt (type, number, flags) with the GIC bindings.
        const CELLS_PER_INTERRUPT: usize = 3;
        let bytes = GUEST_TIMER_INTERRUPTS * CELLS_PER_INTERRUPT * 4;
        if property.value.len() < bytes {
            out.property("interrupts", property.value)?;
        } else {
            out.property("interrupts", &property.value[..bytes])?;
        }
        Ok(())
    }

    fn psci_properties(&self, out: &mut FdtWriter) -> Result<(), GuestTreeError> {
        out.property_strings("compatible", PSCI_COMPATIBLES)?;
        let method = match self.config.psci {
            GuestPsciConduit::Hvc => "hvc",
            GuestPsciConduit::Smc => "smc",
        };
        out.property_str("method", method)?;
        Ok(())
    }

    fn chosen_properties(&self, out: &mut FdtWriter) -> Result<(), GuestTreeError> {
        out.property_str("bootargs", self.config.bootargs)?;
        if let Some(path) = self.console_path {
            out.property_str("stdout-path", path)?;
        }
        if let Some(initrd) = self.config.initrd {
            out.property("linux,initrd-start", &initrd.base.to_be_bytes())?;
            out.property("linux,initrd-end", &initrd.end().to_be_bytes())?;
        }
        Ok(())
    }

    /// Adds `/psci` and `/chosen` if the board's tree lacks them.
    fn missing_root_nodes(&self, out: &mut FdtWriter, root: &Node<'_>) -> Result<(), GuestTreeError> {
        let has = |name: &str| root.children().any(|child| child.name == name);
        if !has("psci") {
            out.begin_node("psci")?;
            self.psci_properties(out)?;
            out.end_node()?;
        }
        if !has("chosen") {
            out.begin_node("chosen")?;
            self.chosen_properties(out)?;
            out.end_node()?;
        }
        if let Some(device) = self.config.emulated_virtio {
            out.begin_node(&alloc::format!("virtio_mmio@{:x}", device.base))?;
            out.property_str("compatible", "virtio,mmio")?;
            let mut reg = Vec::new();
            push_cells(&mut reg, device.base, root.child_address_cells());
            push_cells(&mut reg, EmulatedVirtio::SIZE, root.child_size_cells());
            out.property("reg", &reg)?;
            out.property_cells("interrupts", &[GIC_SPI, device.spi, IRQ_TYPE_LEVEL_HIGH])?;
            out.property_empty("dma-coherent")?;
            out.end_node()?;
        }
        Ok(())
    }
}
