//! Symbolizing guest kernel addresses with its `System.map` (`address type name` lines,
//! as `nm` prints them): an address is named after the greatest text symbol (type `t` or
//! `T`) at or below it, as `name+0xoff`. For Debian's kernel the map is the one `cargo
//! xtask` builds from the kernel's own `/proc/kallsyms` (see `guest::kallsyms`).

use std::path::Path;

use anyhow::{Context, Result};

/// A kernel's text symbols, sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemMap {
    /// `(address, name)`, ascending by address.
    symbols: Vec<(u64, String)>,
}

impl SystemMap {
    /// Parses a `System.map`; lines that are not `address type name` are skipped, as are
    /// symbols other than text (`t`, `T`).
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let address = u64::from_str_radix(words.next()?, 16).ok()?;
                let kind = words.next()?;
                let name = words.next()?;
                matches!(kind, "t" | "T").then(|| (address, name.to_owned()))
            })
            .collect();
        symbols.sort_by_key(|(address, _)| *address);
        Self { symbols }
    }

    /// Reads and parses the `System.map` at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self::parse(&text))
    }

    /// Whether it holds no text symbol, like the placeholder `System.map` Debian packages
    /// with its kernel (the real one is in the `linux-image-<version>-dbg` package).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// `name+0xoff` for `pc`: the greatest text symbol at or below it; `None` below the
    /// first one.
    pub fn symbolize(&self, pc: u64) -> Option<String> {
        let index = self.symbols.partition_point(|(address, _)| *address <= pc).checked_sub(1)?;
        let (address, name) = &self.symbols[index];
        Some(format!("{name}+{:#x}", pc - address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
ffff800080000000 t _head
ffff800080010000 T _text
ffff800080010000 T __irqentry_text_start
ffff800081234000 T _raw_spin_lock_irqsave
ffff800081234040 T _raw_spin_unlock_irqrestore
ffff800081300000 D some_data
ffff800081200000 t default_idle_call
0000000000000000 A _kernel_flags_le_lo32
garbage line
ffff80008123zzzz T broken
";

    #[test]
    fn parses_text_symbols_only() {
        let map = SystemMap::parse(MAP);
        assert_eq!(map.symbols.len(), 6);
        assert!(!map.is_empty());
        let stub = "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        assert!(SystemMap::parse(stub).is_empty());
        assert!(map.symbols.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    }

    #[test]
    fn names_the_greatest_symbol_at_or_below() {
        let map = SystemMap::parse(MAP);
        assert_eq!(map.symbolize(0xffff_8000_8123_4000).as_deref(), Some("_raw_spin_lock_irqsave+0x0"));
        assert_eq!(map.symbolize(0xffff_8000_8123_4024).as_deref(), Some("_raw_spin_lock_irqsave+0x24"));
        assert_eq!(map.symbolize(0xffff_8000_8123_4048).as_deref(), Some("_raw_spin_unlock_irqrestore+0x8"));
        assert_eq!(map.symbolize(0xffff_8000_8120_0010).as_deref(), Some("default_idle_call+0x10"));
        // Data symbols are not candidates: past the last text symbol, the offset grows.
        assert_eq!(map.symbolize(0xffff_8000_8130_0000).as_deref(), Some("_raw_spin_unlock_irqrestore+0xcbfc0"));
        assert_eq!(map.symbolize(0x1000), None);
        assert_eq!(SystemMap::default().symbolize(0xffff_8000_8000_0000), None);
    }
}
