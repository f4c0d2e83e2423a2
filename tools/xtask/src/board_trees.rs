//! The `rpi4-guest-tree` test: the Raspberry Pi 4 guest's device tree rewritten from Debian's
//! real `bcm2711-rpi-4-b.dtb` as the Pi's firmware passes it (QEMU's `raspi4b` fills `/memory`
//! and adds the spin table's `/memreserve/` the same way), checked for what the guest must see:
//! memory without the core, PSCI instead of spin tables, the GIC without its hypervisor frames
//! or maintenance interrupt, the timer without its EL2 interrupts, and the PL011 the core
//! emulates as a plain console.

use anyhow::{Context, Result, ensure};

use platform::MemoryRange;
use platform::fdt::DeviceTree;
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, build_guest_tree, guest_memory};
use platform::passthrough::DevicePolicy;

use crate::linux_package::LinuxPackage;
use crate::profiles::Profile;

/// The QEMU profile standing in for the Pi's firmware.
const PROFILE: &str = "raspi4b";
/// The core's region on the Pi: from 0 (the firmware's spin table) past its image, BSS and
/// stacks, rounded to 2 MiB as the core rounds it.
const CORE: MemoryRange = MemoryRange::new(0, 4 << 20);
/// The PL011 (UART0) the core emulates for the guest, at its CPU address.
const CONSOLE: MemoryRange = MemoryRange::new(0xfe20_1000, 0x200);
/// Its node in Debian's tree.
const CONSOLE_PATH: &str = "/soc/serial@7e201000";
/// Where the firmware puts the guest bundle (config.txt) and its size here.
const INITRD: MemoryRange = MemoryRange::new(crate::flash::RPI4_BUNDLE_ADDRESS, 64 << 20);
/// The Pi 4's CPUs: one vCPU each.
const CPUS: usize = 4;

/// Fetches the tree, rewrites it and checks the result.
pub fn check() -> Result<()> {
    let profile = Profile::load(PROFILE)?;
    let relative = profile.dtb.as_deref().context("the raspi4b profile names no device tree")?;
    let debian = LinuxPackage::fetch()?.dtb(relative)?;
    let passed = crate::qemu_dtb::dump_with(&profile, Some(&debian))?;
    let bytes = std::fs::read(&passed).with_context(|| format!("cannot read {}", passed.display()))?;
    check_tree(&bytes)
}

/// The checks on the firmware-filled tree `bytes`.
fn check_tree(bytes: &[u8]) -> Result<()> {
    let host = DeviceTree::parse(bytes).map_err(|e| anyhow::anyhow!("the Pi's tree does not parse: {e:?}"))?;
    let info = platform::PlatformInfo::discover(&host, &platform::board::RPI4);
    let config = GuestTreeConfig {
        core_regions: &[CORE],
        reserved: &[],
        vcpus: CPUS,
        bootargs: "console=ttyAMA0",
        initrd: Some(INITRD),
        psci: GuestPsciConduit::Hvc,
        devices: DevicePolicy { allowed: platform::board::RPI4.passthrough, ram: &info.memory, console: CONSOLE },
        emulated_virtio: None,
    };
    let blob = build_guest_tree(&host, &config).map_err(|e| anyhow::anyhow!("guest tree: {e}"))?;
    let guest = DeviceTree::parse(&blob).map_err(|e| anyhow::anyhow!("the guest tree does not parse: {e:?}"))?;

    // Memory: what the firmware gave, less the core (which covers the spin table at 0).
    let expected = guest_memory(&host, &[CORE]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let memory: Vec<MemoryRange> = guest
        .root()
        .children()
        .filter(|n| n.base_name() == "memory")
        .flat_map(|n| n.reg().map(|(base, size)| MemoryRange::new(base, size)).collect::<Vec<_>>())
        .collect();
    ensure!(memory == expected, "guest memory {memory:x?}, expected {expected:x?}");
    ensure!(memory.iter().all(|m| m.base >= CORE.end()), "guest memory {memory:x?} overlaps the core's {CORE:x?}");
    ensure!(expected.iter().map(|m| m.size).sum::<u64>() > 512 << 20, "less than 512 MiB of guest memory: {expected:x?}");

    // CPUs: all four through PSCI over HVC; no spin tables, no 32-bit SMP method.
    let cpus = guest.find_node("/cpus").context("no /cpus")?;
    ensure!(cpus.property("enable-method").is_none(), "/cpus keeps its own enable-method");
    let cpu_nodes: Vec<_> = cpus.children().filter(|n| n.base_name() == "cpu").collect();
    ensure!(cpu_nodes.len() == CPUS, "{} CPUs in the guest tree", cpu_nodes.len());
    for cpu in &cpu_nodes {
        ensure!(cpu.property("enable-method").and_then(|p| p.as_str()) == Some("psci"), "{} not started by PSCI", cpu.name);
        ensure!(cpu.property("cpu-release-addr").is_none(), "{} keeps a spin table", cpu.name);
    }
    let psci = guest.find_node("/psci").context("no /psci")?;
    ensure!(psci.property("method").and_then(|p| p.as_str()) == Some("hvc"), "PSCI is not over HVC");

    // The GIC-400: distributor and CPU interface only, no maintenance interrupt.
    let gic = find(&guest, |n| n.is_compatible("arm,gic-400")).context("no GIC-400 node")?;
    let frames: Vec<(u64, u64)> = gic.reg().collect();
    ensure!(frames.len() == 2, "the guest's GIC has {} frames: {frames:x?}", frames.len());
    ensure!(gic.property("interrupts").is_none(), "the guest's GIC keeps the maintenance interrupt");

    // The timer: three interrupts (secure, non-secure physical, virtual), no EL2 one.
    let timer = find(&guest, |n| n.is_compatible("arm,armv8-timer")).context("no timer node")?;
    let cells = timer.property("interrupts").map_or(0, |p| p.value.len() / 4);
    ensure!(cells == 9, "the timer has {cells} interrupt cells, 9 expected");

    // The console: stdout-path names the PL011 (not the board's mini UART), its Bluetooth off.
    let stdout = guest.find_node("/chosen").and_then(|n| n.property("stdout-path")).and_then(|p| p.as_str());
    ensure!(stdout == Some(CONSOLE_PATH), "stdout-path is {stdout:?}, not {CONSOLE_PATH}");
    let console = guest.find_node(CONSOLE_PATH).context("no PL011 node")?;
    ensure!(console.property("status").and_then(|p| p.as_str()) != Some("disabled"), "the console UART is disabled");
    for child in console.children() {
        ensure!(child.property("status").and_then(|p| p.as_str()) == Some("disabled"), "{} under the console is enabled", child.name);
    }
    let initrd = guest.find_node("/chosen").and_then(|n| n.property("linux,initrd-start")).and_then(|p| p.as_u64());
    ensure!(initrd == Some(INITRD.base), "linux,initrd-start is {initrd:x?}");
    Ok(())
}

/// The first node of `tree` (depth first) matching `wanted`.
fn find<'a>(tree: &DeviceTree<'a>, wanted: impl Fn(&platform::fdt::Node<'a>) -> bool + Copy) -> Option<platform::fdt::Node<'a>> {
    fn walk<'a>(node: platform::fdt::Node<'a>, wanted: impl Fn(&platform::fdt::Node<'a>) -> bool + Copy) -> Option<platform::fdt::Node<'a>> {
        if wanted(&node) {
            return Some(node);
        }
        node.children().find_map(|child| walk(child, wanted))
    }
    walk(tree.root(), wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_memory_is_refused_with_a_reason() {
        // Debian's tree as packaged: the firmware has not filled /memory yet.
        let mut w = platform::fdt::FdtWriter::new();
        w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.begin_node("memory@0").unwrap();
        w.property_str("device_type", "memory").unwrap();
        w.property_cells("reg", &[0, 0, 0]).unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let error = check_tree(&w.finish().unwrap()).unwrap_err();
        assert!(format!("{error:#}").contains("memory"), "{error:#}");
    }
}
