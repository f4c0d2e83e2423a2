//! Discovers the running platform from its device tree, falling back to the board's
//! defaults for anything the tree does not describe.

use alloc::vec::Vec;
use core::fmt;

use crate::board::Board;
use crate::fdt::{DeviceTree, FdtError, Node};
use crate::uart::UartKind;

/// Most CPUs the core brings up; per-CPU stacks and tables are sized by it.
pub const MAX_CPUS: usize = 8;

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl MemoryRange {
    /// A range of `size` bytes at `base`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// True when `address` lies inside the range.
    pub const fn contains(&self, address: u64) -> bool {
        address >= self.base && address < self.end()
    }
}

/// The console UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartInfo {
    /// Which driver it needs.
    pub kind: UartKind,
    /// MMIO base.
    pub base: u64,
    /// MMIO size.
    pub size: u64,
}

/// GIC architecture version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (GIC-400): memory-mapped CPU and virtual interfaces.
    V2,
    /// GICv3: system-register CPU interface, redistributors.
    V3,
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V2 => "GICv2",
            Self::V3 => "GICv3",
        })
    }
}

/// Where the interrupt controller lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicInfo {
    /// Architecture version.
    pub version: GicVersion,
    /// Distributor (GICD).
    pub distributor: MemoryRange,
    /// Redistributor region (GICv3).
    pub redistributor: Option<MemoryRange>,
    /// Physical CPU interface (GICC, GICv2).
    pub cpu_interface: Option<MemoryRange>,
    /// Virtual interface control (GICH, GICv2).
    pub hyp_interface: Option<MemoryRange>,
    /// Virtual CPU interface (GICV, GICv2).
    pub virtual_cpu_interface: Option<MemoryRange>,
    /// INTID of the virtual-interface maintenance interrupt.
    pub maintenance_intid: Option<u32>,
}

/// The Arm generic timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerInfo {
    /// `clock-frequency` from the tree, for firmware that leaves CNTFRQ_EL0 unset.
    pub frequency_hz: Option<u32>,
    /// INTID of the secure EL1 physical timer.
    pub secure_phys_intid: u32,
    /// INTID of the non-secure EL1 physical timer.
    pub phys_intid: u32,
    /// INTID of the EL1 virtual timer.
    pub virt_intid: u32,
    /// INTID of the EL2 physical timer (the core's own).
    pub hyp_phys_intid: u32,
}

/// How a secondary CPU is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI `CPU_ON`.
    Psci,
    /// Write the entry point to `release_address` and send an event (Raspberry Pi).
    SpinTable {
        /// Physical address the CPU polls.
        release_address: u64,
    },
    /// The tree says nothing usable: the CPU cannot be started.
    Unknown,
}

/// One CPU of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuInfo {
    /// MPIDR affinity fields (Aff3..Aff0) as in the `reg` property.
    pub mpidr: u64,
    /// How to start it.
    pub enable_method: EnableMethod,
}

/// PSCI conduit: the instruction that reaches the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciConduit {
    /// `SMC #0` to EL3 firmware (or QEMU's emulation of it).
    Smc,
    /// `HVC #0`; useless from EL2, where it would trap to ourselves.
    Hvc,
}

/// Which parts of [`PlatformInfo`] came from board defaults instead of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultsUsed {
    /// No usable `memory` node.
    pub memory: bool,
    /// No usable console UART node.
    pub uart: bool,
    /// No usable GIC node.
    pub gic: bool,
    /// No usable timer node.
    pub timer: bool,
    /// No CPU nodes: only the boot CPU runs.
    pub cpus: bool,
}

/// Everything the core needs to know about the machine it runs on.
#[derive(Debug, Clone)]
pub struct PlatformInfo<'a> {
    /// The board this image was built for.
    pub board: &'static Board,
    /// Root `model` string.
    pub model: &'a str,
    /// RAM ranges, sorted by address, empty ranges removed.
    pub memory: Vec<MemoryRange>,
    /// The console.
    pub uart: UartInfo,
    /// The interrupt controller.
    pub gic: GicInfo,
    /// The generic timer.
    pub timer: TimerInfo,
    /// The CPUs in tree order (at most [`MAX_CPUS`]).
    pub cpus: Vec<CpuInfo>,
    /// CPU nodes beyond [`MAX_CPUS`] that were ignored.
    pub cpus_ignored: usize,
    /// PSCI conduit, when the tree has a PSCI node.
    pub psci: Option<PsciConduit>,
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// Where defaults filled gaps.
    pub defaults_used: DefaultsUsed,
}

/// Why discovery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The blob is not a valid device tree.
    Malformed(FdtError),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed device tree: {e}"),
        }
    }
}

impl From<FdtError> for DiscoveryError {
    fn from(e: FdtError) -> Self {
        Self::Malformed(e)
    }
}

const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];
const IMX_UART_COMPATIBLE: &[&str] =
    &["fsl,imx8mp-uart", "fsl,imx8mm-uart", "fsl,imx8mq-uart", "fsl,imx6q-uart", "fsl,imx21-uart"];
const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GICV2_COMPATIBLE: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic", "arm,cortex-a9-gic"];
const TIMER_COMPATIBLE: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];
const PSCI_COMPATIBLE: &[&str] = &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];
/// Offset of PPI INTIDs in the GIC's numbering (the tree's PPI numbers start at 0).
const PPI_BASE: u32 = 16;
/// Offset of SPI INTIDs.
const SPI_BASE: u32 = 32;

/// The `reg` entries of `node` translated to CPU physical addresses.
fn physical_regs<'a>(tree: &DeviceTree<'a>, node: &Node<'a>) -> Vec<MemoryRange> {
    node.reg()
        .filter_map(|(address, size)| Some(MemoryRange::new(tree.translate_address(node, address)?, size)))
        .collect()
}

/// GIC interrupt specifier type of a shared peripheral interrupt.
const GIC_SPI: u32 = 0;
/// GIC interrupt specifier type of a private peripheral interrupt.
const GIC_PPI: u32 = 1;
/// Number of PPIs.
const PPIS: u32 = 16;
/// Cells of a GIC interrupt specifier (type, number, flags).
pub(crate) const GIC_SPECIFIER_CELLS: usize = 3;

/// The INTID of a 3-cell GIC interrupt specifier (type 0 = SPI: INTID 32 + number; 1 = PPI:
/// 16 + number, below 16; flags); `None` for another type or an out-of-range number.
pub(crate) fn gic_intid(specifier: &[u32]) -> Option<u32> {
    match *specifier {
        [GIC_SPI, number, _] => SPI_BASE.checked_add(number),
        [GIC_PPI, number, _] if number < PPIS => Some(PPI_BASE + number),
        _ => None,
    }
}

/// The INTIDs in `node`'s `interrupts` property, for a 3-cell GIC binding; empty if any
/// specifier is not a valid SPI or PPI (callers then fall back to defaults).
fn gic_intids(node: &Node<'_>) -> Vec<u32> {
    let Some(prop) = node.property("interrupts") else { return Vec::new() };
    let cells: Vec<u32> = prop.cells().collect();
    cells.chunks_exact(GIC_SPECIFIER_CELLS).map(gic_intid).collect::<Option<Vec<u32>>>().unwrap_or_default()
}

/// The GIC INTID of `uart`'s interrupt: the first specifier of the `interrupts` property of
/// the enabled node whose first `reg` is the UART's, read as the GIC's three cells (type
/// 0 = SPI: INTID 32 + number; 1 = PPI: 16 + number; flags). `None` if no such node, no
/// property, or another type.
pub fn uart_intid(tree: &DeviceTree<'_>, uart: &UartInfo) -> Option<u32> {
    let node = tree
        .nodes()
        .filter(|n| n.is_enabled() && n.property("interrupts").is_some())
        .find(|n| physical_regs(tree, n).first().is_some_and(|r| r.base == uart.base))?;
    let cells: Vec<u32> = node.property("interrupts")?.cells().take(GIC_SPECIFIER_CELLS).collect();
    gic_intid(&cells)
}

impl<'a> PlatformInfo<'a> {
    /// Reads the platform from a device tree, filling gaps from `board`.
    pub fn discover(tree: &DeviceTree<'a>, board: &'static Board) -> Self {
        let mut defaults_used = DefaultsUsed::default();
        let root = tree.root();
        let model = root.property("model").and_then(|p| p.as_str()).unwrap_or("unknown");
        let chosen = tree.find_node("/chosen");
        let bootargs = chosen.and_then(|c| c.property("bootargs")).and_then(|p| p.as_str()).unwrap_or("");

        let mut memory: Vec<MemoryRange> = tree
            .nodes()
            .filter(|n| {
                n.property("device_type").and_then(|p| p.as_str()) == Some("memory") && n.is_enabled()
            })
            .flat_map(|n| physical_regs(tree, &n))
            .filter(|r| r.size > 0)
            .collect();
        memory.sort_by_key(|r| r.base);
        memory.dedup();
        if memory.is_empty() {
            defaults_used.memory = true;
            memory.push(board.default_memory);
        }

        let uart = Self::find_uart(tree, chosen.as_ref(), board).unwrap_or_else(|| {
            defaults_used.uart = true;
            board.console
        });
        let gic = Self::find_gic(tree).unwrap_or_else(|| {
            defaults_used.gic = true;
            board.gic
        });
        let timer = Self::find_timer(tree, board).unwrap_or_else(|| {
            defaults_used.timer = true;
            board.timer
        });
        let (cpus, cpus_ignored) = Self::find_cpus(tree);
        defaults_used.cpus = cpus.is_empty();
        let psci = tree.find_compatible(PSCI_COMPATIBLE).map(|n| {
            match n.property("method").and_then(|p| p.as_str()) {
                Some("hvc") => PsciConduit::Hvc,
                _ => PsciConduit::Smc,
            }
        });

        Self { board, model, memory, uart, gic, timer, cpus, cpus_ignored, psci, bootargs, defaults_used }
    }

    /// Parses `blob` and discovers the platform.
    pub fn from_blob(blob: &'a [u8], board: &'static Board) -> Result<Self, DiscoveryError> {
        let tree = DeviceTree::parse(blob)?;
        Ok(Self::discover(&tree, board))
    }

    /// The platform when no device tree could be read: the board's defaults alone.
    pub fn board_defaults(board: &'static Board) -> Self {
        Self {
            board,
            model: board.name,
            memory: alloc::vec![board.default_memory],
            uart: board.console,
            gic: board.gic,
            timer: board.timer,
            cpus: Vec::new(),
            cpus_ignored: 0,
            psci: None,
            bootargs: "",
            defaults_used: DefaultsUsed { memory: true, uart: true, gic: true, timer: true, cpus: true },
        }
    }

    fn uart_from_node(tree: &DeviceTree<'a>, node: &Node<'a>) -> Option<UartInfo> {
        let kind = if PL011_COMPATIBLE.iter().any(|c| node.is_compatible(c)) {
            UartKind::Pl011
        } else if IMX_UART_COMPATIBLE.iter().any(|c| node.is_compatible(c)) {
            UartKind::Imx
        } else {
            return None;
        };
        let reg = *physical_regs(tree, node).first()?;
        Some(UartInfo { kind, base: reg.base, size: reg.size })
    }

    fn find_uart(tree: &DeviceTree<'a>, chosen: Option<&Node<'a>>, board: &Board) -> Option<UartInfo> {
        // The tree's declared console first, then the board's UART if the tree lists it.
        let stdout = chosen
            .and_then(|c| c.property("stdout-path"))
            .and_then(|p| p.as_str())
            .map(|s| s.split(':').next().unwrap_or(s))
            .and_then(|path| tree.resolve_path(path))
            .and_then(|n| Self::uart_from_node(tree, &n));
        stdout.or_else(|| {
            tree.nodes()
                .filter(|n| n.is_enabled())
                .filter_map(|n| Self::uart_from_node(tree, &n))
                .find(|u| u.base == board.console.base)
        })
    }

    fn find_gic(tree: &DeviceTree<'a>) -> Option<GicInfo> {
        let (node, version) = tree
            .find_compatible(GICV3_COMPATIBLE)
            .map(|n| (n, GicVersion::V3))
            .or_else(|| tree.find_compatible(GICV2_COMPATIBLE).map(|n| (n, GicVersion::V2)))?;
        let regs = physical_regs(tree, &node);
        let maintenance_intid = gic_intids(&node).first().copied();
        let reg = |i: usize| regs.get(i).copied();
        Some(match version {
            GicVersion::V3 => GicInfo {
                version,
                distributor: reg(0)?,
                redistributor: Some(reg(1)?),
                cpu_interface: reg(2),
                hyp_interface: reg(3),
                virtual_cpu_interface: reg(4),
                maintenance_intid,
            },
            GicVersion::V2 => GicInfo {
                version,
                distributor: reg(0)?,
                redistributor: None,
                cpu_interface: Some(reg(1)?),
                hyp_interface: reg(2),
                virtual_cpu_interface: reg(3),
                maintenance_intid,
            },
        })
    }

    fn find_timer(tree: &DeviceTree<'a>, board: &Board) -> Option<TimerInfo> {
        let node = tree.find_compatible(TIMER_COMPATIBLE)?;
        let intids = gic_intids(&node);
        let frequency_hz =
            node.property("clock-frequency").and_then(|p| p.as_u32()).or(board.timer.frequency_hz);
        Some(match intids.as_slice() {
            [secure, phys, virt, hyp, ..] => TimerInfo {
                frequency_hz,
                secure_phys_intid: *secure,
                phys_intid: *phys,
                virt_intid: *virt,
                hyp_phys_intid: *hyp,
            },
            _ => TimerInfo { frequency_hz, ..board.timer },
        })
    }

    fn find_cpus(tree: &DeviceTree<'a>) -> (Vec<CpuInfo>, usize) {
        let Some(cpus_node) = tree.find_node("/cpus") else { return (Vec::new(), 0) };
        let mut cpus = Vec::new();
        let mut ignored = 0;
        for node in cpus_node.children() {
            let is_cpu = node.property("device_type").and_then(|p| p.as_str()) == Some("cpu")
                || node.base_name() == "cpu";
            if !is_cpu || !node.is_enabled() {
                continue;
            }
            let Some((mpidr, _)) = node.reg().next() else { continue };
            let enable_method = match node.property("enable-method").and_then(|p| p.as_str()) {
                Some("psci") => EnableMethod::Psci,
                Some("spin-table") => node
                    .property("cpu-release-addr")
                    .and_then(|p| p.as_u64())
                    .map_or(EnableMethod::Unknown, |release_address| EnableMethod::SpinTable {
                        release_address,
                    }),
                _ if tree.find_compatible(PSCI_COMPATIBLE).is_some() => EnableMethod::Psci,
                _ => EnableMethod::Unknown,
            };
            if cpus.len() < MAX_CPUS {
                cpus.push(CpuInfo { mpidr, enable_method });
            } else {
                ignored += 1;
            }
        }
        (cpus, ignored)
    }

    /// RAM in bytes.
    pub fn total_memory(&self) -> u64 {
        self.memory.iter().map(|r| r.size).sum()
    }

    /// The value of a `key=value` boot argument.
    pub fn bootarg(&self, key: &str) -> Option<&'a str> {
        self.bootargs.split_ascii_whitespace().find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
    }
}
