//! Which of the board's devices the in-band guest may drive itself.
//!
//! A device passed through at IPA = PA is driven by the guest with no stage 2 between it and
//! the bus. A device that masters the bus (DMA, or MSI writes) would then read and write any
//! physical address the guest names, the core's image included: without an SMMU stage 2 for
//! it (the core programs none) such a device is never passed through. So the guest gets an
//! **allow-list** only: the board's register-only blocks, named by `compatible`
//! ([`Board::passthrough`](crate::Board::passthrough)). Every other device node is withheld:
//! it stays unmapped at stage 2 and [`crate::guest_tree`] marks it `status = "disabled"`
//! so the guest never probes it. A device is refused even when allow-listed if it is a known
//! bus master ([`DMA_MASTERS`], or a node that says so with `dma-coherent`, `iommus`,
//! `iommu-map`, `msi-parent` or `msi-map`) or if any of its ranges touches RAM or a
//! reserved-memory carve-out (a framebuffer or firmware region described as a device).
//!
//! The GIC (with its ITS and MSI frames) and the console UART are the core's: emulated or
//! hidden by it, never passed through, and left in the guest's tree.

use alloc::vec::Vec;

use crate::discovery::{GIC_SPECIFIER_CELLS, MemoryRange, PlatformInfo, gic_intid};
use crate::fdt::{DeviceTree, Node};
use crate::guest_map::GUEST_PAGE;

/// `compatible` strings of bus masters, refused whatever a board's list says.
pub const DMA_MASTERS: &[&str] = &[
    "qemu,fw-cfg-mmio",
    "virtio,mmio",
    "pci-host-ecam-generic",
    "pci-host-cam-generic",
    "arm,pl330",
    "arm,pl080",
    "arm,pl081",
    "arm,smmu-v3",
    "brcm,bcm2835-dma",
    "brcm,bcm2711-dma",
    "brcm,bcm2711-pcie",
    "brcm,bcm2711-genet-v5",
    "brcm,bcm2711-emmc2",
    "brcm,bcm2835-sdhci",
    "brcm,bcm2835-usb",
    "brcm,bcm2708-usb",
    "fsl,imx8mp-sdma",
    "fsl,imx35-sdma",
    "fsl,imx8mp-fec",
    "fsl,imx6sx-fec",
    "fsl,imx8mp-usdhc",
    "fsl,imx8mp-dwc3",
    "snps,dwc3",
    "snps,dwmac",
    "generic-xhci",
    "generic-ehci",
    "generic-ohci",
];

/// Properties that mark a node as a bus master (it does DMA, sits behind an IOMMU, or
/// writes MSIs).
const MASTER_PROPERTIES: &[&str] = &["dma-coherent", "iommus", "iommu-map", "msi-parent", "msi-map"];

/// Deepest node nesting walked (deeper subtrees are not devices the core knows about).
const MAX_DEPTH: usize = 16;

/// Why a device is not passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithheldReason {
    /// It masters the bus (see [`DMA_MASTERS`]); there is no SMMU stage 2 to contain it.
    DmaMaster,
    /// One of its ranges touches RAM or a reserved-memory carve-out.
    OverlapsMemory,
    /// A `reg` entry cannot be translated to a CPU address.
    Untranslatable,
    /// Its `compatible` is not on the board's allow-list.
    NotAllowListed,
}

/// What the guest gets of one device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClass {
    /// The GIC (and its ITS or MSI frames) or the console: the core's, emulated or hidden;
    /// the node stays in the guest's tree.
    CoreOwned,
    /// Mapped at IPA = PA; the guest drives it.
    PassThrough,
    /// Unmapped and disabled in the guest's tree.
    Withheld(WithheldReason),
}

/// One device node of the board's tree (a node with a non-empty `reg`).
#[derive(Debug, Clone)]
pub struct Device<'a> {
    /// The node.
    pub node: Node<'a>,
    /// Its `reg` entries as CPU physical ranges (untranslatable entries left out).
    pub regs: Vec<MemoryRange>,
    /// The GIC INTIDs it raises (`interrupts`, `interrupts-extended` and `interrupt-map`
    /// entries whose parent is the GIC).
    pub intids: Vec<u32>,
    /// What the guest gets of it.
    pub class: DeviceClass,
}

/// The rules deciding each device's [`DeviceClass`].
#[derive(Debug, Clone, Copy)]
pub struct DevicePolicy<'a> {
    /// `compatible` strings of the devices that may be passed through.
    pub allowed: &'a [&'a str],
    /// All RAM (the core's region included).
    pub ram: &'a [MemoryRange],
    /// The console UART's registers.
    pub console: MemoryRange,
}

impl<'a> DevicePolicy<'a> {
    /// The policy for the running platform: its board's allow-list, its RAM and console.
    pub fn new(info: &'a PlatformInfo<'_>) -> Self {
        Self { allowed: info.board.passthrough, ram: &info.memory, console: MemoryRange::new(info.uart.base, info.uart.size) }
    }

    /// The class of a device at `regs` whose node is `node` (`translated` is false if some
    /// `reg` entry has no CPU address); `reserved` are the reserved-memory carve-outs.
    fn classify(&self, node: &Node<'_>, regs: &[MemoryRange], translated: bool, reserved: &[MemoryRange]) -> DeviceClass {
        let compatible: Vec<&str> = node.property("compatible").map(|p| p.strings().collect()).unwrap_or_default();
        let compatibles = || compatible.iter().copied();
        if compatibles().any(is_gic) || regs.iter().any(|r| overlaps(&page_range(*r), &page_range(self.console))) {
            return DeviceClass::CoreOwned;
        }
        let master = compatibles().any(|c| DMA_MASTERS.contains(&c))
            || MASTER_PROPERTIES.iter().any(|name| node.property(name).is_some());
        let reason = if master {
            WithheldReason::DmaMaster
        } else if regs.iter().any(|r| self.ram.iter().chain(reserved).any(|m| overlaps(&page_range(*r), m))) {
            WithheldReason::OverlapsMemory
        } else if !translated {
            WithheldReason::Untranslatable
        } else if !compatibles().any(|c| self.allowed.contains(&c)) {
            WithheldReason::NotAllowListed
        } else {
            return DeviceClass::PassThrough;
        };
        DeviceClass::Withheld(reason)
    }
}

/// Whether a `compatible` string names an Arm GIC part (`arm,gic-v3`, `arm,gic-v3-its`,
/// `arm,gic-400`, `arm,cortex-a15-gic`, `arm,gic-v2m-frame`, ...).
fn is_gic(compatible: &str) -> bool {
    compatible.starts_with("arm,") && compatible.contains("gic")
}

/// Whether two ranges overlap.
pub(crate) fn overlaps(a: &MemoryRange, b: &MemoryRange) -> bool {
    a.base < b.end() && b.base < a.end()
}

/// Rounds a range out to whole stage-2 pages.
pub(crate) fn page_range(range: MemoryRange) -> MemoryRange {
    let base = range.base & !(GUEST_PAGE - 1);
    let end = range.end().saturating_add(GUEST_PAGE - 1) & !(GUEST_PAGE - 1);
    MemoryRange::new(base, end.saturating_sub(base))
}

/// Every device node of `tree` with its class under `policy`, in tree order. Not devices:
/// the root, `/cpus`, memory, `/reserved-memory` and its children, `/chosen`, `/aliases`,
/// disabled nodes, nodes without a non-empty `reg` (their parent bus decides for them), and
/// anything below a withheld device.
pub fn devices<'a>(tree: &DeviceTree<'a>, policy: &DevicePolicy<'_>) -> Vec<Device<'a>> {
    let root = tree.root();
    let reserved: Vec<MemoryRange> = root
        .child("reserved-memory")
        .into_iter()
        .flat_map(|node| node.children().collect::<Vec<_>>())
        .flat_map(|child| child.reg().map(|(base, size)| MemoryRange::new(base, size)).collect::<Vec<_>>())
        .collect();
    let interrupt_parents = tree
        .nodes()
        .filter_map(|node| {
            let phandle = node.property("phandle")?.as_u32()?;
            let cells = node.property("#interrupt-cells")?.as_u32()? as usize;
            let address = node.property("#address-cells").and_then(|p| p.as_u32()).unwrap_or(0) as usize;
            let gic = node.property("compatible").is_some_and(|p| p.strings().any(is_gic));
            Some(InterruptParent { phandle, cells, address, gic })
        })
        .collect();
    let mut walk = Walk { policy, reserved: &reserved, interrupt_parents, found: Vec::new() };
    let parent = root.property("interrupt-parent").and_then(|p| p.as_u32());
    for child in root.children() {
        walk.node(child, parent, &mut Vec::new());
    }
    walk.found
}

/// The GIC INTIDs the guest is given: those of passed-through devices, less any INTID a
/// withheld or core-owned device also raises (a shared line stays the core's), sorted and
/// without repeats. Every other SPI stays unassigned: hidden from the guest's vGIC.
pub fn passed_intids(devices: &[Device<'_>]) -> Vec<u32> {
    let kept_back: Vec<u32> = devices
        .iter()
        .filter(|d| d.class != DeviceClass::PassThrough)
        .flat_map(|d| d.intids.iter().copied())
        .collect();
    let mut intids: Vec<u32> = devices
        .iter()
        .filter(|d| d.class == DeviceClass::PassThrough)
        .flat_map(|d| d.intids.iter().copied())
        .filter(|intid| !kept_back.contains(intid))
        .collect();
    intids.sort_unstable();
    intids.dedup();
    intids
}

/// An interrupt controller (or nexus) of the tree, as interrupt specifiers need it.
struct InterruptParent {
    phandle: u32,
    /// `#interrupt-cells`.
    cells: usize,
    /// `#address-cells` (0 if absent), part of each `interrupt-map` entry.
    address: usize,
    /// Whether it is the GIC.
    gic: bool,
}

/// One walk of the tree for [`devices`].
struct Walk<'t, 'a> {
    policy: &'t DevicePolicy<'t>,
    reserved: &'t [MemoryRange],
    interrupt_parents: Vec<InterruptParent>,
    found: Vec<Device<'a>>,
}

impl<'a> Walk<'_, 'a> {
    /// Visits `node` below the `buses` (its ancestors but the root, outermost first) whose
    /// inherited interrupt parent is `parent` (a phandle).
    fn node(&mut self, node: Node<'a>, parent: Option<u32>, buses: &mut Vec<Node<'a>>) {
        let depth = buses.len() + 1;
        if depth > MAX_DEPTH || !node.is_enabled() {
            return;
        }
        let name = node.base_name();
        let is_memory = name == "memory" || node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        if depth == 1 && (is_memory || matches!(name, "cpus" | "reserved-memory" | "chosen" | "aliases")) {
            return;
        }
        let parent = node.property("interrupt-parent").and_then(|p| p.as_u32()).or(parent);
        let entries: Vec<(u64, u64)> = if node.address_cells == 0 { Vec::new() } else { node.reg().filter(|(_, size)| *size > 0).collect() };
        if !entries.is_empty() {
            let regs: Vec<MemoryRange> = entries
                .iter()
                .filter_map(|&(address, size)| Some(MemoryRange::new(DeviceTree::translate_through(buses.iter(), address)?, size)))
                .collect();
            let class = self.policy.classify(&node, &regs, regs.len() == entries.len(), self.reserved);
            let intids = self.intids(&node, parent);
            self.found.push(Device { node, regs, intids, class });
            if matches!(class, DeviceClass::Withheld(_)) {
                // Children of a withheld device (or bus) go with it.
                return;
            }
        }
        buses.push(node);
        for child in node.children() {
            self.node(child, parent, buses);
        }
        buses.pop();
    }

    /// The interrupt parent with `phandle`.
    fn interrupt_parent(&self, phandle: u32) -> Option<&InterruptParent> {
        self.interrupt_parents.iter().find(|p| p.phandle == phandle)
    }

    /// The GIC INTIDs `node` raises, given its interrupt parent `parent`.
    fn intids(&self, node: &Node<'a>, parent: Option<u32>) -> Vec<u32> {
        let mut intids = Vec::new();
        if let Some(interrupts) = node.property("interrupts")
            && parent.and_then(|p| self.interrupt_parent(p)).is_some_and(|p| p.gic)
        {
            let cells: Vec<u32> = interrupts.cells().collect();
            intids.extend(cells.chunks_exact(GIC_SPECIFIER_CELLS).filter_map(gic_intid));
        }
        if let Some(extended) = node.property("interrupts-extended") {
            let cells: Vec<u32> = extended.cells().collect();
            let mut at = 0;
            while let Some(&phandle) = cells.get(at) {
                let Some(target) = self.interrupt_parent(phandle) else { break };
                let count = target.cells;
                let Some(specifier) = cells.get(at + 1..at + 1 + count) else { break };
                if target.gic && count == GIC_SPECIFIER_CELLS {
                    intids.extend(gic_intid(specifier));
                }
                at += 1 + count;
            }
        }
        if let Some(map) = node.property("interrupt-map") {
            let cells: Vec<u32> = map.cells().collect();
            let child = node.child_address_cells() as usize
                + node.property("#interrupt-cells").and_then(|p| p.as_u32()).unwrap_or(1) as usize;
            let mut at = 0;
            while let Some(&phandle) = cells.get(at + child) {
                let Some(target) = self.interrupt_parent(phandle) else { break };
                let count = target.cells;
                let start = at + child + 1 + target.address;
                let Some(specifier) = cells.get(start..start + count) else { break };
                if target.gic && count == GIC_SPECIFIER_CELLS {
                    intids.extend(gic_intid(specifier));
                }
                at = start + count;
            }
        }
        intids.sort_unstable();
        intids.dedup();
        intids
    }
}
