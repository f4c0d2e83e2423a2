//! Discovery from real QEMU device trees and from hand-built ones (bus translation, gaps,
//! malformed blobs).

use platform::board::{IMX8, QEMU_VIRT, RPI4};
use platform::discovery::{DiscoveryError, MAX_CPUS};
use platform::fdt::{DeviceTree, FdtError, FdtWriter};
use platform::uart::UartKind;
use platform::{EnableMethod, GicVersion, MemoryRange, PlatformInfo, PsciConduit};

const VIRT_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3-4cpu.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2-2cpu.dtb");

#[test]
fn qemu_virt_gicv3_tree_is_fully_discovered() {
    let info = PlatformInfo::from_blob(VIRT_GICV3, &QEMU_VIRT).unwrap();
    assert_eq!(info.memory, vec![MemoryRange::new(0x4000_0000, 1 << 30)]);
    assert_eq!((info.uart.kind, info.uart.base), (UartKind::Pl011, 0x0900_0000));
    assert_eq!(info.gic.version, GicVersion::V3);
    assert_eq!(info.gic.distributor, MemoryRange::new(0x0800_0000, 0x1_0000));
    assert_eq!(info.gic.redistributor, Some(MemoryRange::new(0x080a_0000, 0xf6_0000)));
    assert_eq!(info.gic.maintenance_intid, Some(25));
    assert_eq!(info.timer.hyp_phys_intid, 26);
    assert_eq!(info.timer.virt_intid, 27);
    assert_eq!(info.cpus.len(), 4);
    assert_eq!(info.cpus[3].mpidr, 3);
    assert!(info.cpus.iter().all(|c| c.enable_method == EnableMethod::Psci));
    assert_eq!(info.psci, Some(PsciConduit::Smc));
    assert_eq!(info.defaults_used, Default::default());
}

#[test]
fn qemu_virt_gicv2_tree_names_all_four_gic_frames() {
    let info = PlatformInfo::from_blob(VIRT_GICV2, &QEMU_VIRT).unwrap();
    assert_eq!(info.gic.version, GicVersion::V2);
    assert_eq!(info.gic.cpu_interface.map(|r| r.base), Some(0x0801_0000));
    assert_eq!(info.gic.hyp_interface.map(|r| r.base), Some(0x0803_0000));
    assert_eq!(info.gic.virtual_cpu_interface.map(|r| r.base), Some(0x0804_0000));
    assert_eq!(info.cpus.len(), 2);
}

/// A Raspberry Pi 4-like tree: devices on a bus at 0x7e00_0000 seen by the CPU at
/// 0xfe00_0000, spin-table CPUs, console chosen through an alias with options.
fn rpi4_like_tree() -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_str("model", "Raspberry Pi 4 Model B").unwrap();
    w.begin_node("aliases").unwrap();
    w.property_str("serial1", "/soc/serial@7e201000").unwrap();
    w.end_node().unwrap();
    w.begin_node("chosen").unwrap();
    w.property_str("stdout-path", "serial1:115200n8").unwrap();
    w.property_str("bootargs", "companion.test=fault other=1").unwrap();
    w.end_node().unwrap();
    w.begin_node("memory@0").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_cells("reg", &[0, 0, 0]).unwrap(); // left for firmware to fill: empty
    w.end_node().unwrap();
    w.begin_node("memory").unwrap();
    w.property_str("device_type", "memory").unwrap();
    w.property_cells("reg", &[0, 0x4000_0000, 0x4000_0000, 0, 0, 0x3b40_0000]).unwrap();
    w.end_node().unwrap();
    w.begin_node("soc").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x0180_0000, 0x4000_0000, 0, 0xff80_0000, 0x80_0000])
        .unwrap();
    w.begin_node("serial@7e201000").unwrap();
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]).unwrap();
    w.property_cells("reg", &[0x7e20_1000, 0x200]).unwrap();
    w.end_node().unwrap();
    w.begin_node("interrupt-controller@40041000").unwrap();
    w.property_strings("compatible", &["arm,gic-400"]).unwrap();
    w.property_cells("reg", &[0x4004_1000, 0x1000, 0x4004_2000, 0x2000, 0x4004_4000, 0x2000, 0x4004_6000, 0x2000])
        .unwrap();
    w.property_cells("interrupts", &[1, 9, 0xf04]).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    for i in 0..4u32 {
        w.begin_node(&format!("cpu@{i}")).unwrap();
        w.property_str("device_type", "cpu").unwrap();
        w.property_u32("reg", i).unwrap();
        w.property_str("enable-method", "spin-table").unwrap();
        w.property_cells("cpu-release-addr", &[0, 0xd8 + 8 * i]).unwrap();
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.finish().unwrap()
}

#[test]
fn bus_addresses_are_translated_through_ranges() {
    let blob = rpi4_like_tree();
    let info = PlatformInfo::from_blob(&blob, &RPI4).unwrap();
    assert_eq!(info.model, "Raspberry Pi 4 Model B");
    assert_eq!(info.uart.base, 0xfe20_1000);
    assert_eq!(info.gic.version, GicVersion::V2);
    assert_eq!(info.gic.distributor.base, 0xff84_1000);
    assert_eq!(info.gic.virtual_cpu_interface.map(|r| r.base), Some(0xff84_6000));
}

#[test]
fn empty_memory_entries_are_dropped_and_ranges_sorted() {
    let blob = rpi4_like_tree();
    let info = PlatformInfo::from_blob(&blob, &RPI4).unwrap();
    assert_eq!(info.memory, vec![MemoryRange::new(0, 0x3b40_0000), MemoryRange::new(0x4000_0000, 0x4000_0000)]);
    assert!(!info.defaults_used.memory);
}

#[test]
fn spin_table_release_addresses_are_read() {
    let blob = rpi4_like_tree();
    let info = PlatformInfo::from_blob(&blob, &RPI4).unwrap();
    let releases: Vec<_> = info.cpus.iter().map(|c| c.enable_method).collect();
    assert_eq!(releases[2], EnableMethod::SpinTable { release_address: 0xe8 });
    assert_eq!(info.psci, None);
}

#[test]
fn bootargs_are_split_into_key_values() {
    let blob = rpi4_like_tree();
    let info = PlatformInfo::from_blob(&blob, &RPI4).unwrap();
    assert_eq!(info.bootarg("companion.test"), Some("fault"));
    assert_eq!(info.bootarg("other"), Some("1"));
    assert_eq!(info.bootarg("companion"), None);
}

#[test]
fn missing_nodes_fall_back_to_board_defaults() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let info = PlatformInfo::from_blob(&blob, &IMX8).unwrap();
    assert_eq!(info.memory, vec![IMX8.default_memory]);
    assert_eq!(info.uart.kind, UartKind::Imx);
    assert_eq!(info.gic, IMX8.gic);
    let d = info.defaults_used;
    assert!(d.memory && d.uart && d.gic && d.timer && d.cpus);
}

#[test]
fn cpus_beyond_the_limit_are_counted_not_kept() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    for i in 0..MAX_CPUS as u32 + 3 {
        w.begin_node(&format!("cpu@{i}")).unwrap();
        w.property_str("device_type", "cpu").unwrap();
        w.property_u32("reg", i).unwrap();
        w.end_node().unwrap();
    }
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let info = PlatformInfo::from_blob(&blob, &QEMU_VIRT).unwrap();
    assert_eq!(info.cpus.len(), MAX_CPUS);
    assert_eq!(info.cpus_ignored, 3);
    assert_eq!(info.cpus[0].enable_method, EnableMethod::Unknown);
}

#[test]
fn malformed_trees_are_refused_with_a_reason() {
    let mut bad_magic = VIRT_GICV3.to_vec();
    bad_magic[0] = 0;
    assert!(matches!(PlatformInfo::from_blob(&bad_magic, &QEMU_VIRT), Err(DiscoveryError::Malformed(FdtError::BadMagic(_)))));

    assert_eq!(DeviceTree::parse(&VIRT_GICV3[..100]).unwrap_err(), FdtError::Truncated);
    assert_eq!(DeviceTree::parse(&[]).unwrap_err(), FdtError::Truncated);

    // Corrupt the first structure token (root BEGIN_NODE) into an unknown token.
    let mut bad_token = VIRT_GICV3.to_vec();
    let off = u32::from_be_bytes(bad_token[8..12].try_into().unwrap()) as usize;
    bad_token[off..off + 4].copy_from_slice(&7u32.to_be_bytes());
    assert!(matches!(DeviceTree::parse(&bad_token), Err(FdtError::BadStructure(_))));

    // A structure block that claims to extend past the blob.
    let mut bad_block = VIRT_GICV3.to_vec();
    bad_block[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(DeviceTree::parse(&bad_block).unwrap_err(), FdtError::BlockOutOfBounds("structure"));
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_or_a_tree_never_a_panic() {
    for len in 0..VIRT_GICV2.len() {
        let _ = PlatformInfo::from_blob(&VIRT_GICV2[..len], &QEMU_VIRT);
    }
    let mut blob = VIRT_GICV2.to_vec();
    for i in (0..blob.len()).step_by(5) {
        let saved = blob[i];
        blob[i] ^= 0xa5;
        let _ = PlatformInfo::from_blob(&blob, &QEMU_VIRT);
        blob[i] = saved;
    }
}

#[test]
fn unbalanced_nodes_are_refused() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("a").unwrap();
    assert!(w.end_node().is_ok());
    let mut blob = {
        w.end_node().unwrap();
        w.finish().unwrap()
    };
    // Drop the root's END_NODE by turning it into a NOP: nesting no longer closes.
    let structs = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    let size = u32::from_be_bytes(blob[36..40].try_into().unwrap()) as usize;
    let last_end = structs + size - 8;
    assert_eq!(&blob[last_end..last_end + 4], &2u32.to_be_bytes());
    blob[last_end..last_end + 4].copy_from_slice(&4u32.to_be_bytes());
    assert!(matches!(DeviceTree::parse(&blob), Err(FdtError::BadStructure(_))));
}

#[test]
fn writer_output_round_trips_through_the_reader() {
    let mut w = FdtWriter::new();
    w.reserve_memory(0x1000, 0x2000);
    w.begin_node("").unwrap();
    w.property_strings("compatible", &["a,b", "c,d"]).unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.begin_node("node@10").unwrap();
    w.property_reg64("reg", &[(0x1_0000_0000, 0x20)]).unwrap();
    w.property_empty("flag").unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let tree = DeviceTree::parse(&blob).unwrap();
    assert!(tree.root().is_compatible("c,d"));
    let node = tree.find_node("/node").unwrap();
    assert_eq!(node.name, "node@10");
    assert_eq!(node.reg().collect::<Vec<_>>(), vec![(0x1_0000_0000, 0x20)]);
    assert_eq!(node.property("flag").unwrap().value, &[] as &[u8]);
    assert_eq!(tree.total_size(), blob.len());
}
