//! The guest's device tree, rewritten from real QEMU trees: memory without the core, PSCI
//! through the emulated conduit, the virtual GIC, the timer without EL2 interrupts, chosen.

use platform::board::QEMU_VIRT;
use platform::fdt::{DeviceTree, FdtWriter};
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, GuestTreeError, build_guest_tree, guest_memory};
use platform::passthrough::DevicePolicy;
use platform::{GicVersion, MemoryRange, PlatformInfo};

const VIRT_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3-4cpu.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2-2cpu.dtb");

/// The core's region in the tests: 4 MiB at the start of RAM.
const CORE: MemoryRange = MemoryRange::new(0x4000_0000, 4 << 20);
const INITRD: MemoryRange = MemoryRange::new(0x4800_0000, 0x0123_4000);
/// All of QEMU virt's RAM in the fixtures (1 GiB).
const VIRT_RAM: &[MemoryRange] = &[MemoryRange::new(0x4000_0000, 1 << 30)];

/// QEMU virt's device policy: its allow-list, RAM and PL011 console.
fn virt_policy() -> DevicePolicy<'static> {
    DevicePolicy { allowed: QEMU_VIRT.passthrough, ram: VIRT_RAM, console: MemoryRange::new(0x0900_0000, 0x1000) }
}

fn config(vcpus: usize) -> GuestTreeConfig<'static> {
    GuestTreeConfig {
        core_regions: &[CORE],
        reserved: &[],
        vcpus,
        bootargs: "console=ttyAMA0 earlycon",
        initrd: Some(INITRD),
        psci: GuestPsciConduit::Hvc,
        devices: virt_policy(),
        emulated_virtio: None,
    }
}

fn rewrite(blob: &[u8], config: &GuestTreeConfig<'_>) -> Vec<u8> {
    build_guest_tree(&DeviceTree::parse(blob).unwrap(), config).unwrap()
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().unwrap())
}

#[test]
fn gicv3_guest_sees_its_memory_cpus_psci_gic_timer_and_chosen() {
    let blob = rewrite(VIRT_GICV3, &config(2));
    let tree = DeviceTree::parse(&blob).unwrap();
    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    // Memory: 1 GiB minus the core's 4 MiB at its start.
    assert_eq!(info.memory, vec![MemoryRange::new(0x4040_0000, (1 << 30) - (4 << 20))]);
    // Two vCPUs, started through PSCI over HVC.
    assert_eq!(info.cpus.len(), 2);
    let psci = tree.find_node("/psci").unwrap();
    assert_eq!(psci.property("method").and_then(|p| p.as_str()), Some("hvc"));
    assert_eq!(psci.property("compatible").unwrap().strings().collect::<Vec<_>>(), ["arm,psci-1.0", "arm,psci-0.2"]);
    for cpu in tree.find_node("/cpus").unwrap().children().filter(|n| n.base_name() == "cpu") {
        assert_eq!(cpu.property("enable-method").and_then(|p| p.as_str()), Some("psci"));
    }
    // GIC: distributor and redistributors only, no maintenance interrupt.
    let gic = tree.find_compatible(&["arm,gic-v3"]).unwrap();
    assert_eq!(gic.reg().count(), 2);
    assert!(gic.property("interrupts").is_none());
    assert_eq!(info.gic.version, GicVersion::V3);
    assert_eq!(info.gic.maintenance_intid, None);
    // Timer: three interrupts (secure, non-secure physical, virtual), no EL2 ones.
    let timer = tree.find_compatible(&["arm,armv8-timer"]).unwrap();
    assert_eq!(timer.property("interrupts").unwrap().value.len(), 3 * 3 * 4);
    // Chosen: the guest's command line and initrd; the console path is kept.
    let chosen = tree.find_node("/chosen").unwrap();
    assert_eq!(chosen.property("bootargs").and_then(|p| p.as_str()), Some("console=ttyAMA0 earlycon"));
    assert_eq!(be_u64(chosen.property("linux,initrd-start").unwrap().value), INITRD.base);
    assert_eq!(be_u64(chosen.property("linux,initrd-end").unwrap().value), INITRD.end());
    assert!(chosen.property("stdout-path").is_some());
    // Everything else is copied: the UART is still there.
    assert_eq!(info.uart.base, 0x0900_0000);
}

#[test]
fn gicv2_guest_keeps_the_cpu_interface_address_and_loses_the_hypervisor_frames() {
    let blob = rewrite(VIRT_GICV2, &config(4));
    let tree = DeviceTree::parse(&blob).unwrap();
    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    assert_eq!(info.gic.version, GicVersion::V2);
    assert_eq!(info.gic.cpu_interface.map(|r| r.base), Some(0x0801_0000));
    assert_eq!(info.gic.hyp_interface, None);
    assert_eq!(info.gic.virtual_cpu_interface, None);
    assert_eq!(info.gic.maintenance_intid, None);
    // More vCPUs asked than the board has: the guest gets what exists.
    assert_eq!(info.cpus.len(), 2);
}

#[test]
fn memory_holes_split_ranges_and_whole_coverage_is_an_error() {
    let tree = DeviceTree::parse(VIRT_GICV3).unwrap();
    let middle = MemoryRange::new(0x5000_0000, 0x10_0000);
    let split = guest_memory(&tree, &[middle]).unwrap();
    assert_eq!(
        split,
        vec![MemoryRange::new(0x4000_0000, 0x1000_0000), MemoryRange::new(0x5010_0000, 0x4000_0000 - 0x1010_0000)]
    );
    let end = MemoryRange::new(0x7ff0_0000, 0x100_0000);
    assert_eq!(guest_memory(&tree, &[end]).unwrap(), vec![MemoryRange::new(0x4000_0000, 0x3ff0_0000)]);
    let disjoint = MemoryRange::new(0x1000, 0x1000);
    assert_eq!(guest_memory(&tree, &[disjoint]).unwrap(), vec![MemoryRange::new(0x4000_0000, 1 << 30)]);
    let all = MemoryRange::new(0x3000_0000, 0x8000_0000);
    assert_eq!(guest_memory(&tree, &[all]), Err(GuestTreeError::NoMemoryLeft));
    let everything = GuestTreeConfig { core_regions: &[all], ..config(1) };
    assert_eq!(build_guest_tree(&tree, &everything), Err(GuestTreeError::NoMemoryLeft));
}

#[test]
fn zero_vcpus_is_refused() {
    let tree = DeviceTree::parse(VIRT_GICV3).unwrap();
    assert_eq!(build_guest_tree(&tree, &config(0)), Err(GuestTreeError::ZeroVcpus));
}

#[test]
fn missing_psci_and_chosen_nodes_are_added_and_spin_tables_become_psci() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.begin_node("memory@0").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_cells("reg", &[0, 0, 0x4000_0000]).unwrap();
    w.end_node().unwrap();
    w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    for cpu in 0..2u32 {
        w.begin_node(&format!("cpu@{cpu}")).unwrap();
        w.property_str("device_type", "cpu").unwrap();
        w.property_u32("reg", cpu).unwrap();
        w.property_str("enable-method", "spin-table").unwrap();
        w.property_cells("cpu-release-addr", &[0, 0xe0 + 8 * cpu]).unwrap();
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let config = GuestTreeConfig {
        core_regions: &[MemoryRange::new(0x3c00_0000, 0x400_0000)],
        reserved: &[MemoryRange::new(0, 0x1000)],
        ..config(2)
    };
    let guest = rewrite(&blob, &config);
    let tree = DeviceTree::parse(&guest).unwrap();
    assert_eq!(tree.find_node("/psci").and_then(|n| n.property("method")).and_then(|p| p.as_str()), Some("hvc"));
    assert!(tree.find_node("/chosen").and_then(|n| n.property("bootargs")).is_some());
    for cpu in tree.find_node("/cpus").unwrap().children() {
        assert_eq!(cpu.property("enable-method").and_then(|p| p.as_str()), Some("psci"));
        assert!(cpu.property("cpu-release-addr").is_none());
    }
    // Memory with one size cell, minus the core's top 64 MiB.
    let memory = tree.root().children().find(|n| n.base_name() == "memory").unwrap();
    assert_eq!(memory.reg().collect::<Vec<_>>(), vec![(0, 0x3c00_0000)]);
}

#[test]
fn corrupted_trees_never_panic() {
    // Every tree the reader accepts, however odd, rewrites to a result or an error.
    let mut blob = VIRT_GICV3.to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = (state as usize) % blob.len();
        let saved = blob[index];
        blob[index] ^= (state >> 32) as u8 | 1;
        if let Ok(tree) = DeviceTree::parse(&blob) {
            let _ = build_guest_tree(&tree, &config(4));
        }
        blob[index] = saved;
    }
}

mod guest_map {
    use super::*;
    use platform::guest_map::{ConsoleAccess, GuestRegionKind, device_ranges, plan_guest_map};

    fn plan(blob: &[u8]) -> Vec<platform::guest_map::GuestRegion> {
        let tree = DeviceTree::parse(blob).unwrap();
        let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
        let memory = guest_memory(&tree, &[CORE]).unwrap();
        plan_guest_map(&memory, &device_ranges(&tree, &virt_policy()), &info.gic, &info.uart, ConsoleAccess::Shared)
    }

    #[test]
    fn a_passed_through_console_is_mapped_at_its_address() {
        let tree = DeviceTree::parse(VIRT_GICV3).unwrap();
        let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
        let memory = guest_memory(&tree, &[CORE]).unwrap();
        let regions = plan_guest_map(&memory, &device_ranges(&tree, &virt_policy()), &info.gic, &info.uart, ConsoleAccess::PassThrough);
        let uart = regions.iter().find(|r| r.ipa == 0x0900_0000).expect("console mapped");
        assert_eq!((uart.pa, uart.kind), (0x0900_0000, GuestRegionKind::Device));
    }

    #[test]
    fn ram_is_identity_mapped_without_the_core_and_gic_and_console_are_withheld() {
        let regions = plan(VIRT_GICV3);
        let ram: Vec<_> = regions.iter().filter(|r| r.kind == GuestRegionKind::Ram).collect();
        assert_eq!(ram.len(), 1);
        assert_eq!((ram[0].ipa, ram[0].pa, ram[0].size), (0x4040_0000, 0x4040_0000, (1 << 30) - (4 << 20)));
        let touches = |base: u64| regions.iter().any(|r| r.ipa <= base && base < r.ipa + r.size);
        // GIC distributor, redistributors and ITS, and the PL011 console: trapped or hidden.
        for withheld in [0x0800_0000, 0x080a_0000, 0x0808_0000, 0x0900_0000] {
            assert!(!touches(withheld), "{withheld:#x} must not be mapped");
        }
        // The core's own memory is not mapped.
        assert!(!touches(CORE.base));
        // Allow-listed devices pass through at IPA = PA: the PL031 RTC and the PL061 GPIO.
        for device in [0x0901_0000, 0x0903_0000] {
            let region = regions.iter().find(|r| r.ipa == device).unwrap_or_else(|| panic!("{device:#x} mapped"));
            assert_eq!((region.pa, region.kind), (device, GuestRegionKind::Device));
        }
        // Sorted, page aligned, not overlapping.
        for pair in regions.windows(2) {
            assert!(pair[0].ipa + pair[0].size <= pair[1].ipa, "{:x?} overlaps {:x?}", pair[0], pair[1]);
        }
        assert!(regions.iter().all(|r| r.ipa % 4096 == 0 && r.size % 4096 == 0));
    }

    #[test]
    fn gicv2_cpu_interface_is_backed_by_the_virtual_cpu_interface() {
        let regions = plan(VIRT_GICV2);
        let gicc = regions.iter().find(|r| r.kind == GuestRegionKind::VirtualCpuInterface).unwrap();
        assert_eq!((gicc.ipa, gicc.pa), (0x0801_0000, 0x0804_0000));
        assert!(!regions.iter().any(|r| r.ipa <= 0x0803_0000 && 0x0803_0000 < r.ipa + r.size), "GICH hidden");
    }
}

#[test]
fn the_emulated_virtio_device_gets_an_enabled_node_and_real_slots_stay_disabled() {
    let channel = QEMU_VIRT.channel.expect("qemu-virt reserves a channel device");
    let blob = rewrite(VIRT_GICV3, &GuestTreeConfig { emulated_virtio: Some(channel), ..config(1) });
    let tree = DeviceTree::parse(&blob).unwrap();
    let node = tree.find_node(&format!("/virtio_mmio@{:x}", channel.base)).expect("the emulated node");
    assert_eq!(node.property("compatible").and_then(|p| p.as_str()), Some("virtio,mmio"));
    assert_eq!(node.reg().collect::<Vec<_>>(), vec![(channel.base, 0x1000)]);
    let cells: Vec<u32> =
        node.property("interrupts").unwrap().value.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect();
    assert_eq!(cells, [0, channel.spi, 4]);
    assert_eq!(channel.intid(), channel.spi + 32);
    // No other node is there, and QEMU's own virtio-mmio slots stay withheld.
    let root = tree.root();
    let virtio: Vec<_> = root.children().filter(|n| n.is_compatible("virtio,mmio")).collect();
    assert!(virtio.len() > 1, "the fixture has QEMU's slots");
    for slot in virtio.iter().filter(|n| n.name != node.name) {
        assert_eq!(slot.property("status").and_then(|p| p.as_str()), Some("disabled"), "{}", slot.name);
        assert!(slot.reg().all(|(base, _)| base != channel.base), "the channel's page is no real slot's");
    }
}

/// A board tree with memory at 0x4000_0000 (1 GiB) under a root of the given cells.
fn tree_with_root_cells(address_cells: u32, size_cells: u32) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", address_cells).unwrap();
    w.property_u32("#size-cells", size_cells).unwrap();
    w.begin_node("memory@40000000").unwrap();
    w.property_str("device_type", "memory").unwrap();
    // At most 4 cells per number: a huge cell count only has to be declared, not filled.
    let mut reg = vec![0; address_cells.clamp(1, 4) as usize - 1];
    reg.push(0x4000_0000);
    reg.extend(vec![0; size_cells.clamp(1, 4) as usize - 1]);
    if size_cells > 0 {
        reg.push(0x4000_0000);
    }
    w.property_cells("reg", &reg).unwrap();
    w.end_node().unwrap();
    w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    w.begin_node("cpu@0").unwrap();
    w.property_str("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.finish().unwrap()
}

#[test]
fn a_root_whose_cells_cannot_describe_memory_is_refused_not_miswritten() {
    // The fuzzer's find: with `#address-cells = <0>` the memory node was written with one
    // address cell anyway, and the guest read memory at 0 that held the core.
    for (address_cells, size_cells) in [(0, 2), (2, 0), (3, 2), (2, 3), (u32::MAX, 1)] {
        let blob = tree_with_root_cells(address_cells, size_cells);
        let result = build_guest_tree(&DeviceTree::parse(&blob).unwrap(), &config(1));
        assert!(
            matches!(&result, Err(GuestTreeError::Malformed(why)) if why.contains("#address-cells")),
            "{address_cells}/{size_cells}: {result:?}"
        );
    }
}

#[test]
fn memory_and_the_emulated_device_follow_the_roots_cells() {
    let channel = QEMU_VIRT.channel.expect("qemu-virt reserves a channel device");
    for (address_cells, size_cells) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
        let blob = tree_with_root_cells(address_cells, size_cells);
        let config = GuestTreeConfig { emulated_virtio: Some(channel), initrd: None, ..config(1) };
        let guest = rewrite(&blob, &config);
        let tree = DeviceTree::parse(&guest).unwrap();
        let memory = tree.root().children().find(|n| n.base_name() == "memory").unwrap();
        assert_eq!(memory.reg().collect::<Vec<_>>(), vec![(CORE.end(), 0x4000_0000 - CORE.size)], "{address_cells}/{size_cells}");
        let node = tree.find_node(&format!("/virtio_mmio@{:x}", channel.base)).unwrap();
        assert_eq!(node.reg().collect::<Vec<_>>(), vec![(channel.base, 0x1000)], "{address_cells}/{size_cells}");
    }
}

/// A Raspberry Pi 4–shaped tree: `/cpus` with the 32-bit SMP method and spin tables,
/// `stdout-path` naming the mini UART, and the PL011 console carrying the Bluetooth chip.
fn pi_shaped_tree() -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.begin_node("memory@0").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_cells("reg", &[0, 0, 0x3b40_0000]).unwrap();
    w.end_node().unwrap();
    w.begin_node("chosen").unwrap();
    w.property_str("stdout-path", "serial1:115200n8").unwrap();
    w.end_node().unwrap();
    w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    w.property_str("enable-method", "brcm,bcm2836-smp").unwrap();
    for cpu in 0..4u32 {
        w.begin_node(&format!("cpu@{cpu}")).unwrap();
        w.property_str("device_type", "cpu").unwrap();
        w.property_u32("reg", cpu).unwrap();
        w.property_str("enable-method", "spin-table").unwrap();
        w.property_cells("cpu-release-addr", &[0, 0xd8 + 8 * cpu]).unwrap();
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    w.begin_node("soc").unwrap();
    w.property_str("compatible", "simple-bus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x180_0000]).unwrap();
    w.begin_node("serial@7e201000").unwrap();
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]).unwrap();
    w.property_cells("reg", &[0x7e20_1000, 0x200]).unwrap();
    w.begin_node("bluetooth").unwrap();
    w.property_str("compatible", "brcm,bcm43438-bt").unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.begin_node("serial@7e215040").unwrap();
    w.property_str("compatible", "brcm,bcm2835-aux-uart").unwrap();
    w.property_cells("reg", &[0x7e21_5040, 0x40]).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.finish().unwrap()
}

#[test]
fn the_pi_guest_gets_the_emulated_pl011_as_a_plain_console_and_psci_only() {
    let ram = [MemoryRange::new(0, 0x3b40_0000)];
    let config = GuestTreeConfig {
        core_regions: &[MemoryRange::new(0, 4 << 20)],
        devices: DevicePolicy {
            allowed: platform::board::RPI4.passthrough,
            ram: &ram,
            console: MemoryRange::new(0xfe20_1000, 0x200),
        },
        ..config(4)
    };
    let guest = rewrite(&pi_shaped_tree(), &config);
    let tree = DeviceTree::parse(&guest).unwrap();
    let chosen = tree.find_node("/chosen").unwrap();
    assert_eq!(chosen.property("stdout-path").and_then(|p| p.as_str()), Some("/soc/serial@7e201000"));
    let console = tree.find_node("/soc/serial@7e201000").unwrap();
    assert!(console.property("status").is_none(), "the console stays enabled");
    let bluetooth = tree.find_node("/soc/serial@7e201000/bluetooth").unwrap();
    assert_eq!(bluetooth.property("status").and_then(|p| p.as_str()), Some("disabled"));
    let cpus = tree.find_node("/cpus").unwrap();
    assert!(cpus.property("enable-method").is_none(), "no 32-bit SMP method beside PSCI");
    for cpu in cpus.children() {
        assert_eq!(cpu.property("enable-method").and_then(|p| p.as_str()), Some("psci"));
        assert!(cpu.property("cpu-release-addr").is_none());
    }
    let memory = tree.root().children().find(|n| n.base_name() == "memory").unwrap();
    assert_eq!(memory.reg().collect::<Vec<_>>(), vec![(4 << 20, 0x3b40_0000 - (4 << 20))]);
}

#[test]
fn a_tree_without_the_console_keeps_its_own_stdout_path() {
    let config = GuestTreeConfig {
        devices: DevicePolicy { console: MemoryRange::new(0x1234_0000, 0x1000), ..virt_policy() },
        ..config(1)
    };
    let guest = rewrite(VIRT_GICV3, &config);
    let host = DeviceTree::parse(VIRT_GICV3).unwrap();
    let stdout = |tree: &DeviceTree<'_>| tree.find_node("/chosen").and_then(|n| n.property("stdout-path")).and_then(|p| p.as_str()).map(str::to_owned);
    assert!(stdout(&host).is_some());
    assert_eq!(stdout(&DeviceTree::parse(&guest).unwrap()), stdout(&host));
}
