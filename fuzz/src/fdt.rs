//! The device-tree reader and writer and everything reading a board's tree: parsing never
//! panics; whatever the reader accepts, the writer's copy re-parses to the same tree;
//! discovery and the device allow-list cope; a device passed through is allow-listed, no bus
//! master and outside RAM; the guest tree re-parses, and every device enabled in it is one
//! the guest gets or the core owns.

use platform::board::QEMU_VIRT;
use platform::fdt::{DeviceTree, FdtWriter, Node};
use platform::guest_tree::{GuestPsciConduit, GuestTreeConfig, build_guest_tree};
use platform::passthrough::{DMA_MASTERS, DeviceClass, DevicePolicy, devices};
use platform::{MemoryRange, PlatformInfo};

/// Nesting the copy follows (the reader refuses deeper trees).
const MAX_DEPTH: usize = 64;

/// How many nodes also go through the reader's own whole-tree lookups
/// (`translate_address`, `find_phandle`), each a walk from the start: checking every node
/// that way made the target quadratic in the tree's size.
const WHOLE_TREE_LOOKUPS: usize = 8;

/// A node as the reader sees it: depth, name, properties (name, value).
type Flat<'a> = (usize, &'a str, Vec<(&'a str, &'a [u8])>);

/// Every node in tree order.
fn flatten<'a>(node: Node<'a>, depth: usize, out: &mut Vec<Flat<'a>>) {
    if depth > MAX_DEPTH {
        return;
    }
    out.push((depth, node.name, node.properties().map(|p| (p.name, p.value)).collect()));
    for child in node.children() {
        flatten(child, depth + 1, out);
    }
}

/// Visits `node` and its subtree depth first with the buses holding each node (its
/// ancestors below the root, outermost first), in one walk: linear in the tree's size.
fn visit<'a>(node: Node<'a>, buses: &mut Vec<Node<'a>>, depth: usize, each: &mut impl FnMut(&Node<'a>, &[Node<'a>])) {
    if depth > MAX_DEPTH {
        return;
    }
    each(&node, buses.get(1..).unwrap_or(&[]));
    buses.push(node);
    for child in node.children() {
        visit(child, buses, depth + 1, each);
    }
    buses.pop();
}

/// Copies `node` and its subtree into `out`.
fn copy(node: Node<'_>, depth: usize, out: &mut FdtWriter) -> Result<(), platform::fdt::FdtWriteError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    out.begin_node(node.name)?;
    for property in node.properties() {
        out.property(property.name, property.value)?;
    }
    for child in node.children() {
        copy(child, depth + 1, out)?;
    }
    out.end_node()
}

/// Parses the bytes as a DTB and, if the reader accepts them, checks everything above.
pub fn fuzz(data: &[u8]) {
    // The reader wants its blob 4-byte aligned, as a loader hands it over.
    let words: Vec<u32> = data.chunks(4).map(|c| u32::from_ne_bytes(core::array::from_fn(|i| c.get(i).copied().unwrap_or(0)))).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).take(data.len()).collect();
    let Ok(tree) = DeviceTree::parse(&bytes) else { return };

    let mut flat = Vec::new();
    flatten(tree.root(), 0, &mut flat);
    // Every address translated through its buses and every phandle noted in one walk; the
    // whole-tree lookups must agree for the first few.
    let mut phandles = std::collections::BTreeMap::new();
    let mut looked_up = 0;
    visit(tree.root(), &mut Vec::new(), 0, &mut |node, buses| {
        let lookup = looked_up < WHOLE_TREE_LOOKUPS;
        for (address, _) in node.reg() {
            let translated = DeviceTree::translate_through(buses.iter(), address);
            if lookup {
                assert_eq!(tree.translate_address(node, address), translated, "{} at {address:#x}", node.name);
            }
        }
        if let Some(phandle) = node.property("phandle").and_then(|p| p.as_u32()) {
            phandles.entry(phandle).or_insert(node.offset());
            if lookup {
                let found = tree.find_phandle(phandle).map(|found| found.offset());
                assert_eq!(found, phandles.get(&phandle).copied(), "phandle {phandle:#x} of {} resolves elsewhere", node.name);
            }
        }
        looked_up += 1;
    });
    assert_eq!(phandles.len(), tree.nodes().filter_map(|n| n.property("phandle")?.as_u32()).collect::<std::collections::BTreeSet<_>>().len());

    let mut writer = FdtWriter::new();
    if copy(tree.root(), 0, &mut writer).is_ok()
        && let Ok(blob) = writer.finish()
    {
        let again = DeviceTree::parse(&blob).expect("the writer's output parses");
        let mut flat_again = Vec::new();
        flatten(again.root(), 0, &mut flat_again);
        assert_eq!(flat, flat_again, "the copy differs from the original");
    }

    let info = PlatformInfo::discover(&tree, &QEMU_VIRT);
    let _ = platform::discovery::uart_intid(&tree, &info.uart);
    let policy = DevicePolicy::new(&info);
    for device in devices(&tree, &policy) {
        if device.class == DeviceClass::PassThrough {
            let compatible: Vec<&str> = device.node.property("compatible").map(|p| p.strings().collect()).unwrap_or_default();
            assert!(compatible.iter().any(|c| policy.allowed.contains(c)), "{} is not allow-listed", device.node.name);
            assert!(!compatible.iter().any(|c| DMA_MASTERS.contains(c)), "{} is a bus master", device.node.name);
            for range in &device.regs {
                assert!(!info.memory.iter().any(|m| m.base < range.end() && range.base < m.end()), "{} is in RAM", device.node.name);
            }
        }
    }

    let core = info.memory.first().map_or(MemoryRange::new(0, 0), |m| MemoryRange::new(m.base, m.size.min(2 << 20)));
    let config = GuestTreeConfig {
        core_regions: &[core],
        reserved: &[],
        vcpus: 2,
        bootargs: "console=ttyAMA0",
        initrd: None,
        psci: GuestPsciConduit::Hvc,
        devices: policy,
        emulated_virtio: None,
    };
    if let Ok(guest_blob) = build_guest_tree(&tree, &config) {
        let guest = DeviceTree::parse(&guest_blob).expect("the guest tree parses");
        for node in guest.root().children().filter(|n| n.base_name() == "memory") {
            for (base, size) in node.reg() {
                let range = MemoryRange::new(base, size);
                assert!(!(core.size > 0 && range.base < core.end() && core.base < range.end()), "guest memory {range:x?} holds the core");
            }
        }
        for device in devices(&guest, &policy) {
            assert!(
                matches!(device.class, DeviceClass::PassThrough | DeviceClass::CoreOwned),
                "{} is enabled in the guest tree but {:?}",
                device.node.name,
                device.class
            );
        }
    }
}
