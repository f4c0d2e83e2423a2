//! Builds flattened device trees (DTB v17) in memory.
//!
//! Used to write the guest's device tree and, in host tests, to make fixture trees.

use alloc::vec::Vec;

/// Incrementally writes a DTB: open nodes, add properties, close nodes, then [`finish`].
///
/// [`finish`]: FdtWriter::finish
#[derive(Default)]
pub struct FdtWriter {
    structs: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
    open_nodes: usize,
}

/// What went wrong while writing a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtWriteError {
    /// A property was added outside any node.
    PropertyOutsideNode,
    /// `end_node` had no open node to close.
    UnbalancedEnd,
    /// `finish` was called with nodes still open.
    NodesStillOpen(usize),
    /// A name contained a NUL byte.
    NameContainsNul,
}

impl FdtWriter {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `/memreserve/` entry.
    pub fn reserve_memory(&mut self, address: u64, size: u64) {
        self.reservations.push((address, size));
    }

    fn push_u32(&mut self, v: u32) {
        self.structs.extend_from_slice(&v.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    /// Opens a node; the root is `""`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtWriteError> {
        if name.as_bytes().contains(&0) {
            return Err(FdtWriteError::NameContainsNul);
        }
        self.push_u32(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self.open_nodes += 1;
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), FdtWriteError> {
        self.open_nodes = self.open_nodes.checked_sub(1).ok_or(FdtWriteError::UnbalancedEnd)?;
        self.push_u32(2);
        Ok(())
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        let needle = name.as_bytes();
        let mut at = 0;
        while at < self.strings.len() {
            let end = at + self.strings[at..].iter().position(|&b| b == 0).unwrap_or(0);
            if &self.strings[at..end] == needle {
                return at as u32;
            }
            at = end + 1;
        }
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(needle);
        self.strings.push(0);
        offset
    }

    /// Adds a property with a raw value to the open node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtWriteError> {
        if self.open_nodes == 0 {
            return Err(FdtWriteError::PropertyOutsideNode);
        }
        if name.as_bytes().contains(&0) {
            return Err(FdtWriteError::NameContainsNul);
        }
        let name_offset = self.string_offset(name);
        self.push_u32(3);
        self.push_u32(value.len() as u32);
        self.push_u32(name_offset);
        self.structs.extend_from_slice(value);
        self.pad();
        Ok(())
    }

    /// Adds a string property.
    pub fn property_str(&mut self, name: &str, value: &str) -> Result<(), FdtWriteError> {
        self.property_strings(name, &[value])
    }

    /// Adds a string-list property (e.g. `compatible`).
    pub fn property_strings(&mut self, name: &str, values: &[&str]) -> Result<(), FdtWriteError> {
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        self.property(name, &bytes)
    }

    /// Adds a property made of 32-bit cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtWriteError> {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.property(name, &bytes)
    }

    /// Adds a property holding one 32-bit cell.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtWriteError> {
        self.property_cells(name, &[value])
    }

    /// Adds a `reg`-style property of (address, size) pairs encoded with 2 address and 2 size cells.
    pub fn property_reg64(&mut self, name: &str, entries: &[(u64, u64)]) -> Result<(), FdtWriteError> {
        let cells: Vec<u32> = entries
            .iter()
            .flat_map(|&(a, s)| [(a >> 32) as u32, a as u32, (s >> 32) as u32, s as u32])
            .collect();
        self.property_cells(name, &cells)
    }

    /// Adds an empty (boolean) property.
    pub fn property_empty(&mut self, name: &str) -> Result<(), FdtWriteError> {
        self.property(name, &[])
    }

    /// Finishes the tree and returns the DTB bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, FdtWriteError> {
        if self.open_nodes != 0 {
            return Err(FdtWriteError::NodesStillOpen(self.open_nodes));
        }
        self.push_u32(9);
        const HEADER: usize = 40;
        let rsv_offset = HEADER;
        let rsv_len = (self.reservations.len() + 1) * 16;
        let struct_offset = rsv_offset + rsv_len;
        let strings_offset = struct_offset + self.structs.len();
        let total = strings_offset + self.strings.len();
        let mut out = Vec::with_capacity(total);
        for word in [
            0xd00d_feed,
            total as u32,
            struct_offset as u32,
            strings_offset as u32,
            rsv_offset as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&u32::to_be_bytes(word));
        }
        for &(a, s) in self.reservations.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}
