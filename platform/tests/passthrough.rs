//! The device allow-list against real QEMU trees and hand-built ones: only register-only,
//! allow-listed devices outside RAM reach the guest; bus masters are withheld, unmapped and
//! disabled in the guest's tree; the loader's tree is not guest memory.

use platform::board::{ALL, QEMU_VIRT};
use platform::fdt::{DeviceTree, FdtWriter};
use platform::guest_map::{ConsoleAccess, GuestRegionKind, device_ranges, plan_guest_map};
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, build_guest_tree, guest_memory};
use platform::passthrough::{DMA_MASTERS, DeviceClass, DevicePolicy, WithheldReason, devices, passed_intids};
use platform::{MemoryRange, PlatformInfo};

const VIRT_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3-4cpu.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2-2cpu.dtb");
const CORE: MemoryRange = MemoryRange::new(0x4000_0000, 4 << 20);

fn overlaps(a: MemoryRange, b: MemoryRange) -> bool {
    a.base < b.end() && b.base < a.end()
}

/// The classes of the fixture's devices by node name.
fn classes(blob: &[u8]) -> Vec<(String, DeviceClass, Vec<u32>)> {
    let tree = DeviceTree::parse(blob).unwrap();
    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    devices(&tree, &DevicePolicy::new(&info)).into_iter().map(|d| (d.node.name.to_string(), d.class, d.intids)).collect()
}

#[test]
fn qemu_virt_passes_only_the_rtc_and_gpio_and_withholds_every_bus_master() {
    for blob in [VIRT_GICV3, VIRT_GICV2] {
        let classes = classes(blob);
        let of = |name: &str| classes.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("{name} listed")).1;
        let passed: Vec<&str> =
            classes.iter().filter(|(_, c, _)| *c == DeviceClass::PassThrough).map(|(n, ..)| n.as_str()).collect();
        assert_eq!(passed, ["pl061@9030000", "pl031@9010000"]);
        assert_eq!(of("fw-cfg@9020000"), DeviceClass::Withheld(WithheldReason::DmaMaster));
        assert_eq!(of("pcie@10000000"), DeviceClass::Withheld(WithheldReason::DmaMaster));
        let virtio: Vec<_> = classes.iter().filter(|(n, ..)| n.starts_with("virtio_mmio@")).collect();
        assert_eq!(virtio.len(), 32);
        assert!(virtio.iter().all(|(_, c, _)| *c == DeviceClass::Withheld(WithheldReason::DmaMaster)));
        assert_eq!(of("flash@0"), DeviceClass::Withheld(WithheldReason::NotAllowListed));
        assert_eq!(of("pl011@9000000"), DeviceClass::CoreOwned);
        assert!(classes.iter().any(|(n, c, _)| n.starts_with("intc@") && *c == DeviceClass::CoreOwned));
    }
}

#[test]
fn qemu_virt_gives_the_guest_only_the_interrupts_of_passed_through_devices() {
    let tree = DeviceTree::parse(VIRT_GICV3).unwrap();
    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    let found = devices(&tree, &DevicePolicy::new(&info));
    // The RTC and the GPIO only: not PCIe INTA-D (SPIs 3-6, through `interrupt-map`), not the
    // 32 virtio-mmio slots (SPIs 16-47), not the console (SPI 1, emulated by the core).
    assert_eq!(passed_intids(&found), [34, 39]);
    let withheld: Vec<u32> = found
        .iter()
        .filter(|d| matches!(d.class, DeviceClass::Withheld(_)))
        .flat_map(|d| d.intids.iter().copied())
        .collect();
    assert!((35..=38).chain(48..=79).all(|intid| withheld.contains(&intid)));
    let intids = |name: &str| found.iter().find(|d| d.node.name == name).unwrap().intids.clone();
    assert_eq!(intids("pl031@9010000"), [34]);
    assert_eq!(intids("pl061@9030000"), [39]);
}

#[test]
fn qemu_virt_plan_maps_only_allow_listed_devices_and_nothing_in_ram() {
    for blob in [VIRT_GICV3, VIRT_GICV2] {
        let tree = DeviceTree::parse(blob).unwrap();
        let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
        let policy = DevicePolicy::new(&info);
        let allowed: Vec<MemoryRange> = devices(&tree, &policy)
            .into_iter()
            .filter(|d| d.class == DeviceClass::PassThrough)
            .flat_map(|d| d.regs)
            .map(|r| MemoryRange::new(r.base & !0xfff, (r.size + 0xfff) & !0xfff))
            .collect();
        let memory = guest_memory(&tree, &[CORE]).unwrap();
        let plan = plan_guest_map(&memory, &device_ranges(&tree, &policy), &info.gic, &info.uart, ConsoleAccess::Shared);
        for region in plan.iter().filter(|r| r.kind == GuestRegionKind::Device) {
            let range = MemoryRange::new(region.pa, region.size);
            assert!(allowed.contains(&range), "{range:x?} is not an allow-listed device");
            assert!(!info.memory.iter().any(|m| overlaps(*m, range)), "{range:x?} is in RAM");
        }
        for region in plan.iter().filter(|r| r.kind == GuestRegionKind::Ram) {
            assert!(!overlaps(MemoryRange::new(region.pa, region.size), CORE), "RAM {region:x?} includes the core");
        }
        // fw-cfg, the first and last virtio-mmio slot, PCIe ECAM, MMIO and PIO windows.
        for address in [0x0902_0000, 0x0a00_0000, 0x0a00_3e00, 0x40_1000_0000, 0x1000_0000, 0x3eff_0000, 0] {
            assert!(!plan.iter().any(|r| r.ipa <= address && address < r.ipa + r.size), "{address:#x} mapped");
        }
    }
}

#[test]
fn withheld_devices_are_disabled_in_the_guest_tree() {
    let host = DeviceTree::parse(VIRT_GICV3).unwrap();
    let info = PlatformInfo::discover(&host, &QEMU_VIRT);
    let config = GuestTreeConfig {
        core_regions: &[CORE],
        reserved: &[],
        vcpus: 1,
        bootargs: "console=ttyAMA0",
        initrd: None,
        psci: GuestPsciConduit::Hvc,
        devices: DevicePolicy::new(&info),
        emulated_virtio: None,
    };
    let blob = build_guest_tree(&host, &config).unwrap();
    let guest = DeviceTree::parse(&blob).unwrap();
    let enabled = |path: &str| guest.find_node(path).unwrap_or_else(|| panic!("{path} kept")).is_enabled();
    for withheld in ["/fw-cfg@9020000", "/pcie@10000000", "/virtio_mmio@a000000", "/virtio_mmio@a003e00", "/flash@0"] {
        assert!(!enabled(withheld), "{withheld} must be disabled");
    }
    for kept in ["/pl031@9010000", "/pl061@9030000", "/pl011@9000000", "/intc@8000000", "/gpio-keys", "/timer"] {
        assert!(enabled(kept), "{kept} must stay enabled");
    }
    // Every enabled device of the guest's tree is one the guest gets or the core emulates.
    let guest_info = PlatformInfo::discover(&guest, &QEMU_VIRT);
    for device in devices(&guest, &DevicePolicy { ram: &info.memory, ..DevicePolicy::new(&guest_info) }) {
        assert!(matches!(device.class, DeviceClass::PassThrough | DeviceClass::CoreOwned), "{} enabled", device.node.name);
    }
}

#[test]
fn board_allow_lists_name_no_bus_master() {
    for board in ALL {
        assert!(!board.passthrough.is_empty());
        for compatible in board.passthrough {
            assert!(!DMA_MASTERS.contains(compatible), "{}: {compatible} is a bus master", board.name);
        }
    }
}

/// A tree with 1 GiB of RAM at 0x4000_0000, a reserved carve-out outside it, and `devices`
/// (name, compatible, bus address, extra empty property) on a `soc` bus whose address 0 is
/// CPU address 0xfe00_0000.
fn hand_built(devices: &[(&str, &str, u64, Option<&str>)]) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.begin_node("memory@40000000").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_reg64("reg", &[(0x4000_0000, 1 << 30)]).unwrap();
    w.end_node().unwrap();
    w.begin_node("reserved-memory").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_empty("ranges").unwrap();
    w.begin_node("firmware@30000000").unwrap();
    w.property_reg64("reg", &[(0x3000_0000, 0x10_0000)]).unwrap();
    w.property_empty("no-map").unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.begin_node("soc").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_cells("ranges", &[0, 0, 0xfe00_0000, 0x100_0000]).unwrap();
    for &(name, compatible, base, extra) in devices {
        w.begin_node(name).unwrap();
        w.property_str("compatible", compatible).unwrap();
        w.property_cells("reg", &[base as u32, 0x1000]).unwrap();
        if let Some(extra) = extra {
            w.property_empty(extra).unwrap();
        }
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    // Outside the bus: a framebuffer in RAM and a device over the reserved carve-out.
    for (name, base) in [("framebuffer@7000000", 0x7000_0000u64), ("sram@30000000", 0x3000_0000)] {
        w.begin_node(name).unwrap();
        w.property_str("compatible", "arm,pl061").unwrap();
        w.property_reg64("reg", &[(base, 0x1000)]).unwrap();
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    w.finish().unwrap()
}

#[test]
fn hand_built_tree_allow_list_masters_memory_and_translation() {
    let blob = hand_built(&[
        ("gpio@1000", "arm,pl061", 0x1000, None),
        ("dma@2000", "arm,pl330", 0x2000, None),
        ("coherent@3000", "arm,pl061", 0x3000, Some("dma-coherent")),
        ("smmu-client@4000", "arm,pl061", 0x4000, Some("iommus")),
        ("unknown@5000", "acme,widget", 0x5000, None),
        ("console@6000", "arm,pl011", 0x6000, None),
        ("magic@7000", "acme,magic-box", 0x7000, None),
    ]);
    let tree = DeviceTree::parse(&blob).unwrap();
    let ram = [MemoryRange::new(0x4000_0000, 1 << 30)];
    let policy = DevicePolicy { allowed: QEMU_VIRT.passthrough, ram: &ram, console: MemoryRange::new(0xfe00_6000, 0x1000) };
    let found = devices(&tree, &policy);
    let class = |name: &str| found.iter().find(|d| d.node.name == name).unwrap_or_else(|| panic!("{name}")).class;
    use WithheldReason::*;
    assert_eq!(class("gpio@1000"), DeviceClass::PassThrough);
    assert_eq!(class("dma@2000"), DeviceClass::Withheld(DmaMaster));
    assert_eq!(class("coherent@3000"), DeviceClass::Withheld(DmaMaster));
    assert_eq!(class("smmu-client@4000"), DeviceClass::Withheld(DmaMaster));
    assert_eq!(class("unknown@5000"), DeviceClass::Withheld(NotAllowListed));
    assert_eq!(class("console@6000"), DeviceClass::CoreOwned);
    // Not a GIC for having "gic" in its name.
    assert_eq!(class("magic@7000"), DeviceClass::Withheld(NotAllowListed));
    assert_eq!(class("framebuffer@7000000"), DeviceClass::Withheld(OverlapsMemory));
    assert_eq!(class("sram@30000000"), DeviceClass::Withheld(OverlapsMemory));
    // Reserved-memory children and memory are not devices.
    assert!(!found.iter().any(|d| d.node.name.starts_with("firmware") || d.node.name.starts_with("memory")));
    // Bus addresses are translated through `soc`'s ranges.
    assert_eq!(device_ranges(&tree, &policy), [MemoryRange::new(0xfe00_1000, 0x1000)]);
}

#[test]
fn children_of_a_withheld_bus_are_disabled_with_it() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.begin_node("bus@10000000").unwrap();
    w.property_str("compatible", "pci-host-ecam-generic").unwrap();
    w.property_cells("reg", &[0x1000_0000, 0x1000]).unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_empty("ranges").unwrap();
    w.begin_node("gpio@10001000").unwrap();
    w.property_str("compatible", "arm,pl061").unwrap();
    w.property_cells("reg", &[0x1000_1000, 0x1000]).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let tree = DeviceTree::parse(&blob).unwrap();
    let policy = DevicePolicy { allowed: QEMU_VIRT.passthrough, ram: &[], console: MemoryRange::new(0x900_0000, 0x1000) };
    let found = devices(&tree, &policy);
    assert_eq!(found.len(), 1, "only the bus is listed");
    assert_eq!(found[0].class, DeviceClass::Withheld(WithheldReason::DmaMaster));
    assert!(device_ranges(&tree, &policy).is_empty());
}

#[test]
fn the_loaders_tree_is_not_guest_memory() {
    // A tree whose memory covers the very bytes it lives in: the guest must not get them.
    let build = |base: u64| {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.begin_node("memory").unwrap();
        w.property_str("device_type", "memory").unwrap();
        w.property_reg64("reg", &[(base, 64 << 20)]).unwrap();
        w.end_node().unwrap();
        w.begin_node("chosen").unwrap();
        w.property_str("bootargs", "companion.nonce=0123456789abcdef").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.finish().unwrap()
    };
    let mut blob = build(0);
    let at = blob.as_ptr() as u64;
    let memory = MemoryRange::new((at & !0xfff) - (16 << 20), 64 << 20);
    let rebuilt = build(memory.base);
    assert_eq!(rebuilt.len(), blob.len());
    blob.copy_from_slice(&rebuilt);
    let tree = DeviceTree::parse(&blob).unwrap();
    let guest = guest_memory(&tree, &[]).unwrap();
    let tree_pages = MemoryRange::new(at & !0xfff, ((at + blob.len() as u64 + 0xfff) & !0xfff) - (at & !0xfff));
    assert_eq!(guest.len(), 2, "memory split around the tree: {guest:x?}");
    assert!(guest.iter().all(|r| !overlaps(*r, tree_pages)), "{guest:x?} includes the tree at {at:#x}");
    assert_eq!(guest.iter().map(|r| r.size).sum::<u64>(), memory.size - tree_pages.size);
}

#[test]
fn qemu_virt_quiesce_plan_covers_both_passed_devices_inside_their_registers() {
    use platform::quiesce::{Width, plan};
    for blob in [VIRT_GICV3, VIRT_GICV2] {
        let tree = DeviceTree::parse(blob).unwrap();
        let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
        let (planned, left_out) = plan(&devices(&tree, &DevicePolicy::new(&info)));
        assert!(left_out.is_empty(), "{left_out:?}");
        let summary: Vec<(u64, &str)> = planned.iter().map(|d| (d.base, d.compatible)).collect();
        assert_eq!(summary, [(0x903_0000, "arm,pl061"), (0x901_0000, "arm,pl031")]);
        // The RTC: alarm masked, then a latched alarm cleared.
        let rtc = &planned[1];
        assert_eq!(rtc.writes, [(0x901_0010, Width::Word, 0), (0x901_001c, Width::Word, 1)]);
        for device in &planned {
            assert!(device.writes.iter().all(|&(at, width, _)| at >= device.base && at + width.bytes() <= device.base + 0x1000));
        }
    }
}

#[test]
fn a_passed_device_without_a_sequence_or_too_small_for_it_is_left_out_and_named() {
    use platform::quiesce::{Unquiesced, plan};
    // A PL031 whose `reg` is 24 bytes (its IMSC at 0x10 fits, its ICR at 0x1c does not) and a device that is
    // passed through by a board allowing an unknown compatible.
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.begin_node("memory@40000000").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000]).unwrap();
    w.end_node().unwrap();
    w.begin_node("rtc@9010000").unwrap();
    w.property_str("compatible", "arm,pl031").unwrap();
    w.property_cells("reg", &[0, 0x901_0000, 0, 0x18]).unwrap();
    w.end_node().unwrap();
    w.begin_node("widget@9040000").unwrap();
    w.property_str("compatible", "acme,widget").unwrap();
    w.property_cells("reg", &[0, 0x904_0000, 0, 0x1000]).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let tree = DeviceTree::parse(&blob).unwrap();
    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    let policy = DevicePolicy { allowed: &["arm,pl031", "acme,widget"], ..DevicePolicy::new(&info) };
    let (planned, left_out) = plan(&devices(&tree, &policy));
    assert!(planned.is_empty(), "{planned:?}");
    assert_eq!(left_out, [Unquiesced::OutsideRegisters { base: 0x901_0000, offset: 0x1c }, Unquiesced::NoSequence { base: 0x904_0000 }]);
}
