//! A validating, allocation-free reader for flattened device trees (DTB, spec v0.4 §5).
//!
//! The whole structure block is checked once in [`DeviceTree::parse`]: header fields, block
//! bounds, token stream, node nesting, property lengths and string offsets. After that every
//! lookup is a walk over data already known to be well formed, and still never panics.

use core::fmt;

/// `FDT_MAGIC`, the first big-endian word of every DTB.
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Oldest DTB version whose layout this reader understands.
const FDT_MIN_COMPATIBLE_VERSION: u32 = 16;
/// Size of the v17 header in bytes.
const HEADER_LEN: usize = 40;
/// Deepest node nesting accepted; real trees stay below 8.
const MAX_DEPTH: usize = 32;

/// Tokens of the structure block.
mod token {
    pub const BEGIN_NODE: u32 = 1;
    pub const END_NODE: u32 = 2;
    pub const PROP: u32 = 3;
    pub const NOP: u32 = 4;
    pub const END: u32 = 9;
}

/// Why a blob is not a usable device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// The blob is shorter than the header, or `totalsize` exceeds the buffer.
    Truncated,
    /// The first word is not `0xd00dfeed`.
    BadMagic(u32),
    /// `last_comp_version` is newer than this reader.
    UnsupportedVersion(u32),
    /// A block offset or size points outside the blob.
    BlockOutOfBounds(&'static str),
    /// The structure block is malformed at this byte offset (relative to its start).
    BadStructure(usize),
    /// A name or string is not NUL-terminated UTF-8, at this offset.
    BadString(usize),
    /// Nodes nest deeper than this reader accepts.
    TooDeep,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "device tree is truncated"),
            Self::BadMagic(m) => write!(f, "not a device tree (magic {m:#010x}, expected 0xd00dfeed)"),
            Self::UnsupportedVersion(v) => write!(f, "device tree version {v} is not supported"),
            Self::BlockOutOfBounds(which) => write!(f, "device tree {which} block lies outside the blob"),
            Self::BadStructure(at) => write!(f, "device tree structure is malformed at offset {at:#x}"),
            Self::BadString(at) => write!(f, "device tree string at offset {at:#x} is not valid"),
            Self::TooDeep => write!(f, "device tree nodes nest deeper than {MAX_DEPTH}"),
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A NUL-terminated UTF-8 string starting at `at`; returns it and the offset after the NUL.
fn cstr(bytes: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    let s = core::str::from_utf8(&rest[..len]).ok()?;
    Some((s, at + len + 1))
}

/// A parsed, validated device tree borrowing the blob.
#[derive(Clone, Copy)]
pub struct DeviceTree<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    total_size: usize,
}

impl fmt::Debug for DeviceTree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTree").field("total_size", &self.total_size).finish()
    }
}

/// One element of the structure block as seen by a walk.
#[derive(Clone, Copy, Debug)]
enum Item<'a> {
    Begin(&'a str),
    End,
    Prop(Property<'a>),
}

/// A property: its name and raw big-endian value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    /// Property name, e.g. `reg`.
    pub name: &'a str,
    /// Raw value bytes.
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// The value as a single NUL-terminated string.
    pub fn as_str(&self) -> Option<&'a str> {
        let (s, end) = cstr(self.value, 0)?;
        (end == self.value.len()).then_some(s)
    }

    /// The value as a list of NUL-terminated strings (e.g. `compatible`).
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let value = self.value;
        let mut at = 0;
        core::iter::from_fn(move || {
            let (s, next) = cstr(value, at)?;
            at = next;
            Some(s)
        })
    }

    /// The value as a single 32-bit cell.
    pub fn as_u32(&self) -> Option<u32> {
        (self.value.len() == 4).then(|| be32(self.value, 0)).flatten()
    }

    /// The value as one or two cells (32- or 64-bit number).
    pub fn as_u64(&self) -> Option<u64> {
        match self.value.len() {
            4 => be32(self.value, 0).map(u64::from),
            8 => Some(u64::from(be32(self.value, 0)?) << 32 | u64::from(be32(self.value, 4)?)),
            _ => None,
        }
    }

    /// The value as big-endian 32-bit cells; a trailing partial cell is ignored.
    pub fn cells(&self) -> impl Iterator<Item = u32> + 'a {
        self.value.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A node of the tree, located by the offset of its `BEGIN_NODE` token.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    tree: DeviceTree<'a>,
    offset: usize,
    /// Full node name including the unit address, e.g. `uart@9000000`; empty for the root.
    pub name: &'a str,
    /// `#address-cells` of the parent (how `reg` of this node is encoded).
    pub address_cells: u32,
    /// `#size-cells` of the parent.
    pub size_cells: u32,
}

impl<'a> Node<'a> {
    /// Where the node starts in the structure block: unique per node of one tree.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The node name without its unit address.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// The node's own properties, in blob order.
    pub fn properties(&self) -> impl Iterator<Item = Property<'a>> + 'a {
        let mut walk = self.tree.walk_from(self.offset);
        // Skip the node's own BEGIN token; properties come before any child.
        walk.next();
        core::iter::from_fn(move || match walk.next()? {
            (_, Item::Prop(p)) => Some(p),
            _ => None,
        })
    }

    /// Looks up one property by name.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// True when `compatible` lists `what`.
    pub fn is_compatible(&self, what: &str) -> bool {
        self.property("compatible").is_some_and(|p| p.strings().any(|s| s == what))
    }

    /// True unless `status` says the device is not usable.
    pub fn is_enabled(&self) -> bool {
        self.property("status").and_then(|p| p.as_str()).is_none_or(|s| s == "okay" || s == "ok")
    }

    /// `#address-cells` this node declares for its children (default 2).
    pub fn child_address_cells(&self) -> u32 {
        self.property("#address-cells").and_then(|p| p.as_u32()).unwrap_or(2)
    }

    /// `#size-cells` this node declares for its children (default 1).
    pub fn child_size_cells(&self) -> u32 {
        self.property("#size-cells").and_then(|p| p.as_u32()).unwrap_or(1)
    }

    /// The `reg` entries as `(address, size)` pairs decoded with the parent's cell sizes.
    /// Entries whose cells do not fit in 64 bits are skipped.
    pub fn reg(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let (ac, sc) = (self.address_cells as usize, self.size_cells as usize);
        let value = self.property("reg").map(|p| p.value).unwrap_or(&[]);
        let entry = (ac + sc) * 4;
        let chunks = if entry == 0 { value.chunks_exact(usize::MAX) } else { value.chunks_exact(entry) };
        chunks.filter_map(move |chunk| Some((read_cells(chunk, 0, ac)?, read_cells(chunk, ac, sc)?)))
    }

    /// Direct children of this node.
    pub fn children(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let tree = self.tree;
        let (ac, sc) = (self.child_address_cells(), self.child_size_cells());
        let mut walk = tree.walk_from(self.offset);
        walk.next();
        let mut depth = 0usize;
        core::iter::from_fn(move || {
            loop {
                match walk.next()? {
                    (offset, Item::Begin(name)) => {
                        depth += 1;
                        if depth == 1 {
                            return Some(Node { tree, offset, name, address_cells: ac, size_cells: sc });
                        }
                    }
                    (_, Item::End) => {
                        if depth == 0 {
                            return None;
                        }
                        depth -= 1;
                    }
                    (_, Item::Prop(_)) => {}
                }
            }
        })
    }

    /// A direct child by full name, or by base name when `name` has no `@`.
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        self.children().find(|c| c.name == name || (!name.contains('@') && c.base_name() == name))
    }
}

/// Reads `count` big-endian cells starting at cell `first` as one number.
fn read_cells(bytes: &[u8], first: usize, count: usize) -> Option<u64> {
    if count > 2 {
        // Wider numbers are fine only when the upper cells are zero.
        let skip = count - 2;
        for i in 0..skip {
            if be32(bytes, (first + i) * 4)? != 0 {
                return None;
            }
        }
        return read_cells(bytes, first + skip, 2);
    }
    let mut value = 0u64;
    for i in 0..count {
        value = value << 32 | u64::from(be32(bytes, (first + i) * 4)?);
    }
    Some(value)
}

/// Iterator over structure-block items starting at an offset (already validated).
struct Walk<'a> {
    tree: DeviceTree<'a>,
    at: usize,
}

impl<'a> Iterator for Walk<'a> {
    type Item = (usize, Item<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.at;
            let (item, next) = self.tree.item_at(start).ok()??;
            self.at = next;
            if let Some(item) = item {
                return Some((start, item));
            }
        }
    }
}

impl<'a> DeviceTree<'a> {
    /// Validates `blob` and returns a reader over it.
    pub fn parse(blob: &'a [u8]) -> Result<Self, FdtError> {
        let header = |i: usize| be32(blob, i * 4).ok_or(FdtError::Truncated);
        if blob.len() < HEADER_LEN {
            return Err(FdtError::Truncated);
        }
        let magic = header(0)?;
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let total_size = header(1)? as usize;
        if total_size > blob.len() || total_size < HEADER_LEN {
            return Err(FdtError::Truncated);
        }
        let last_comp_version = header(6)?;
        if last_comp_version > 17 || header(5)? < FDT_MIN_COMPATIBLE_VERSION {
            return Err(FdtError::UnsupportedVersion(header(5)?));
        }
        let block = |off: u32, size: u32, which| {
            let (off, size) = (off as usize, size as usize);
            let end = off.checked_add(size).ok_or(FdtError::BlockOutOfBounds(which))?;
            blob.get(off..end).filter(|_| end <= total_size).ok_or(FdtError::BlockOutOfBounds(which))
        };
        let structs = block(header(2)?, header(9)?, "structure")?;
        let strings = block(header(3)?, header(8)?, "strings")?;
        let tree = Self { blob: &blob[..total_size], structs, strings, total_size };
        tree.validate()?;
        Ok(tree)
    }

    /// Reads a device tree from a raw pointer, as handed over by a boot loader.
    ///
    /// # Safety
    /// `ptr` must point to readable memory holding at least a DTB header, and the
    /// `totalsize` bytes it announces must be readable and stay unchanged for `'a`.
    pub unsafe fn from_ptr(ptr: *const u8) -> Result<Self, FdtError> {
        if ptr.is_null() || !(ptr as usize).is_multiple_of(4) {
            return Err(FdtError::Truncated);
        }
        // SAFETY: the caller guarantees a readable header at `ptr`.
        let header = unsafe { core::slice::from_raw_parts(ptr, 8) };
        let magic = be32(header, 0).ok_or(FdtError::Truncated)?;
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let total = be32(header, 4).ok_or(FdtError::Truncated)? as usize;
        // SAFETY: the caller guarantees `totalsize` readable bytes.
        Self::parse(unsafe { core::slice::from_raw_parts(ptr, total.max(HEADER_LEN)) })
    }

    /// The whole blob (`totalsize` bytes), e.g. to keep where it lies out of a guest's reach.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.blob
    }

    /// Size of the whole blob in bytes (`totalsize`).
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// Decodes the item at `at`: `Ok(None)` for a NOP, `Ok(Some(None))` at END.
    #[allow(clippy::type_complexity)]
    fn item_at(&self, at: usize) -> Result<Option<(Option<Item<'a>>, usize)>, FdtError> {
        let bad = FdtError::BadStructure(at);
        let tok = be32(self.structs, at).ok_or(bad)?;
        Ok(match tok {
            token::BEGIN_NODE => {
                let (name, end) = cstr(self.structs, at + 4).ok_or(FdtError::BadString(at + 4))?;
                Some((Some(Item::Begin(name)), align4(end)))
            }
            token::END_NODE => Some((Some(Item::End), at + 4)),
            token::PROP => {
                let len = be32(self.structs, at + 4).ok_or(bad)? as usize;
                let name_off = be32(self.structs, at + 8).ok_or(bad)? as usize;
                let value_start = at + 12;
                let value = self.structs.get(value_start..value_start.checked_add(len).ok_or(bad)?).ok_or(bad)?;
                let (name, _) = cstr(self.strings, name_off).ok_or(FdtError::BadString(name_off))?;
                Some((Some(Item::Prop(Property { name, value })), align4(value_start + len)))
            }
            token::NOP => Some((None, at + 4)),
            token::END => None,
            _ => return Err(bad),
        })
    }

    fn walk_from(&self, at: usize) -> Walk<'a> {
        Walk { tree: *self, at }
    }

    /// One full pass over the structure block checking every token and the nesting.
    fn validate(&self) -> Result<(), FdtError> {
        let mut at = 0;
        let mut depth = 0usize;
        let mut seen_root = false;
        loop {
            match self.item_at(at)? {
                None => break,
                Some((item, next)) => {
                    match item {
                        Some(Item::Begin(_)) => {
                            if depth == 0 && seen_root {
                                return Err(FdtError::BadStructure(at));
                            }
                            seen_root = true;
                            depth += 1;
                            if depth > MAX_DEPTH {
                                return Err(FdtError::TooDeep);
                            }
                        }
                        Some(Item::End) => {
                            depth = depth.checked_sub(1).ok_or(FdtError::BadStructure(at))?;
                        }
                        Some(Item::Prop(_)) if depth == 0 => return Err(FdtError::BadStructure(at)),
                        Some(Item::Prop(_)) | None => {}
                    }
                    at = next;
                }
            }
        }
        if depth != 0 || !seen_root {
            return Err(FdtError::BadStructure(at));
        }
        Ok(())
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        // Validation guarantees the first non-NOP item is the root's BEGIN_NODE.
        let offset = self.walk_from(0).next().map_or(0, |(o, _)| o);
        Node { tree: *self, offset, name: "", address_cells: 2, size_cells: 1 }
    }

    /// Finds a node by absolute path such as `/cpus/cpu@0`; a component without `@`
    /// matches a node's base name.
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        path.split('/').filter(|c| !c.is_empty()).try_fold(self.root(), |node, part| node.child(part))
    }

    /// Every node of the tree in blob order (depth first), with cell sizes resolved.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        self.nodes_with_depth().map(|(node, _)| node)
    }

    /// Every node with its depth below the root (root is 0).
    fn nodes_with_depth(&self) -> impl Iterator<Item = (Node<'a>, usize)> + 'a {
        let tree = *self;
        // A small stack of (#address-cells, #size-cells) for the open ancestors.
        let mut cells = [(2u32, 1u32); MAX_DEPTH + 1];
        let mut depth = 0usize;
        let mut walk = tree.walk_from(0);
        core::iter::from_fn(move || {
            loop {
                match walk.next()? {
                    (offset, Item::Begin(name)) => {
                        let (ac, sc) = cells[depth.min(MAX_DEPTH)];
                        let node = Node { tree, offset, name, address_cells: ac, size_cells: sc };
                        let node_depth = depth;
                        depth += 1;
                        if depth <= MAX_DEPTH {
                            cells[depth] = (node.child_address_cells(), node.child_size_cells());
                        }
                        return Some((node, node_depth));
                    }
                    (_, Item::End) => depth = depth.saturating_sub(1),
                    (_, Item::Prop(_)) => {}
                }
            }
        })
    }

    /// Translates an address from `node`'s `reg` (a bus address of its parent) into a CPU
    /// physical address, applying each ancestor's `ranges`. A missing or empty `ranges`
    /// is taken as identity; an address no range covers yields `None`.
    pub fn translate_address(&self, node: &Node<'a>, address: u64) -> Option<u64> {
        // Collect the ancestors of `node` (root first) with a depth-first walk.
        let mut stack: [Option<Node<'a>>; MAX_DEPTH + 1] = [None; MAX_DEPTH + 1];
        let depth = self.nodes_with_depth().find_map(|(candidate, d)| {
            let slot = stack.get_mut(d)?;
            *slot = Some(candidate);
            (candidate.offset == node.offset).then_some(d)
        })?;
        // The buses holding `node`: stack[1..depth] (the root has no `ranges` to apply).
        let buses = stack.get(1..depth.max(1))?;
        if buses.iter().any(Option::is_none) {
            return None;
        }
        Self::translate_through(buses.iter().flatten(), address)
    }

    /// Translates a bus address of the innermost of `buses` (the ancestors of a node below
    /// the root, outermost first) into a CPU physical address, applying each bus's `ranges`
    /// as [`translate_address`](Self::translate_address) does.
    pub fn translate_through<'n>(buses: impl DoubleEndedIterator<Item = &'n Node<'a>>, address: u64) -> Option<u64>
    where
        'a: 'n,
    {
        let mut address = address;
        for bus in buses.rev() {
            let Some(ranges) = bus.property("ranges") else { continue };
            if ranges.value.is_empty() {
                continue;
            }
            let child_ac = bus.child_address_cells() as usize;
            let parent_ac = bus.address_cells as usize;
            let child_sc = bus.child_size_cells() as usize;
            let entry = (child_ac + parent_ac + child_sc) * 4;
            if entry == 0 {
                return None;
            }
            address = ranges.value.chunks_exact(entry).find_map(|chunk| {
                let child = read_cells(chunk, 0, child_ac)?;
                let parent = read_cells(chunk, child_ac, parent_ac)?;
                let size = read_cells(chunk, child_ac + parent_ac, child_sc)?;
                let offset = address.checked_sub(child)?;
                if offset < size { parent.checked_add(offset) } else { None }
            })?;
        }
        Some(address)
    }

    /// The first enabled node whose `compatible` lists any of `what`.
    pub fn find_compatible(&self, what: &[&str]) -> Option<Node<'a>> {
        self.nodes().find(|n| n.is_enabled() && what.iter().any(|w| n.is_compatible(w)))
    }

    /// Resolves a node by its `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Option<Node<'a>> {
        self.nodes().find(|n| n.property("phandle").and_then(|p| p.as_u32()) == Some(phandle))
    }

    /// Resolves an alias name (from `/aliases`) or an absolute path to a node.
    pub fn resolve_path(&self, path_or_alias: &str) -> Option<Node<'a>> {
        if path_or_alias.starts_with('/') {
            return self.find_node(path_or_alias);
        }
        let target = self.find_node("/aliases")?.property(path_or_alias)?.as_str()?;
        self.find_node(target)
    }
}
