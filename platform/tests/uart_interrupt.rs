//! The console UART's interrupt, read from real QEMU device trees and hand-built ones.

use platform::board::QEMU_VIRT;
use platform::discovery::uart_intid;
use platform::fdt::{DeviceTree, FdtWriter};
use platform::uart::UartKind;
use platform::{PlatformInfo, UartInfo};

const VIRT_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3-4cpu.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2-2cpu.dtb");

#[test]
fn qemu_virt_pl011_is_spi_1() {
    for blob in [VIRT_GICV3, VIRT_GICV2] {
        let tree = DeviceTree::parse(blob).unwrap();
        let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
        assert_eq!(uart_intid(&tree, &info.uart), Some(33));
    }
}

#[test]
fn no_node_no_property_or_other_types_give_none() {
    let tree = DeviceTree::parse(VIRT_GICV3).unwrap();
    let elsewhere = UartInfo {
        kind: UartKind::Pl011,
        base: 0x1234_0000,
        size: 0x1000,
    };
    assert_eq!(uart_intid(&tree, &elsewhere), None);

    let uart = UartInfo {
        kind: UartKind::Pl011,
        base: 0x0900_0000,
        size: 0x1000,
    };
    for (interrupts, expected) in [
        (&[0u32, 7, 4][..], Some(39)),
        (&[1, 3, 4][..], Some(19)),
        (&[1, 16, 4][..], None),
        (&[2, 1, 4][..], None),
        (&[0, 1][..], None),
        (&[][..], None),
    ] {
        let blob = uart_tree(Some(interrupts));
        let tree = DeviceTree::parse(&blob).unwrap();
        assert_eq!(
            uart_intid(&tree, &uart),
            expected,
            "interrupts = {interrupts:?}"
        );
    }
    let blob = uart_tree(None);
    assert_eq!(uart_intid(&DeviceTree::parse(&blob).unwrap(), &uart), None);
}

/// A root with 2 address and size cells and one PL011 at 0x0900_0000.
fn uart_tree(interrupts: Option<&[u32]>) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.begin_node("pl011@9000000").unwrap();
    w.property_str("compatible", "arm,pl011").unwrap();
    w.property_reg64("reg", &[(0x0900_0000, 0x1000)]).unwrap();
    if let Some(cells) = interrupts {
        w.property_cells("interrupts", cells).unwrap();
    }
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.finish().unwrap()
}
