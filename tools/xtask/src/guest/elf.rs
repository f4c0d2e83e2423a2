//! Just enough of ELF64 (little-endian) to find what a program loads: its
//! interpreter (`PT_INTERP`) and the shared libraries it needs (`DT_NEEDED`).

use anyhow::{Context, Result, bail};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What the dynamic loader needs to run one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// The program interpreter's path (`/lib/ld-linux-aarch64.so.1`), if any.
    pub interpreter: Option<String>,
    /// The `DT_NEEDED` sonames, in file order.
    pub needed: Vec<String>,
}

/// Whether `bytes` start like an ELF file.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Reads the interpreter and `DT_NEEDED` entries of a 64-bit little-endian
/// ELF file (a static executable has neither).
pub fn dynamic(bytes: &[u8]) -> Result<Dynamic> {
    if !is_elf(bytes) {
        bail!("not an ELF file");
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let phoff = usize_at(bytes, 0x20)?;
    let phentsize = usize::from(u16_at(bytes, 0x36)?);
    let phnum = usize::from(u16_at(bytes, 0x38)?);
    let mut loads = Vec::new();
    let mut dynamic_range = None;
    let mut interpreter = None;
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        let kind = u32_at(bytes, header)?;
        let offset = usize_at(bytes, header + 8)?;
        let vaddr = u64_at(bytes, header + 16)?;
        let filesz = usize_at(bytes, header + 32)?;
        match kind {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dynamic_range = Some((offset, filesz)),
            PT_INTERP => {
                let raw = slice(bytes, offset, filesz)?;
                interpreter = Some(c_string(raw, 0)?);
            }
            _ => {}
        }
    }
    let Some((dyn_offset, dyn_size)) = dynamic_range else {
        return Ok(Dynamic {
            interpreter,
            needed: Vec::new(),
        });
    };
    let entries = slice(bytes, dyn_offset, dyn_size)?;
    let mut needed_offsets = Vec::new();
    let mut strtab_vaddr = None;
    for entry in entries.chunks_exact(16) {
        let tag = u64_at(entry, 0)?;
        let value = u64_at(entry, 8)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab_vaddr = Some(value),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(Dynamic {
            interpreter,
            needed: Vec::new(),
        });
    }
    let strtab_vaddr = strtab_vaddr.context("DT_NEEDED without DT_STRTAB")?;
    // DT_STRTAB is an address: find the loaded segment holding it.
    let strtab = loads
        .iter()
        .find(|(vaddr, _, filesz)| strtab_vaddr >= *vaddr && strtab_vaddr - vaddr < *filesz as u64)
        .map(|(vaddr, offset, _)| offset + (strtab_vaddr - vaddr) as usize)
        .context("DT_STRTAB lies in no PT_LOAD segment")?;
    let needed = needed_offsets
        .into_iter()
        .map(|name| c_string(bytes, strtab + name as usize))
        .collect::<Result<_>>()?;
    Ok(Dynamic {
        interpreter,
        needed,
    })
}

fn slice(bytes: &[u8], offset: usize, len: usize) -> Result<&[u8]> {
    offset
        .checked_add(len)
        .and_then(|end| bytes.get(offset..end))
        .with_context(|| format!("truncated ELF file ({len} bytes at {offset:#x})"))
}

fn u16_at(bytes: &[u8], offset: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(slice(bytes, offset, 2)?.try_into()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(slice(bytes, offset, 4)?.try_into()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(slice(bytes, offset, 8)?.try_into()?))
}

fn usize_at(bytes: &[u8], offset: usize) -> Result<usize> {
    usize::try_from(u64_at(bytes, offset)?).context("ELF offset out of range")
}

/// The NUL-terminated string at `offset`.
fn c_string(bytes: &[u8], offset: usize) -> Result<String> {
    let rest = bytes.get(offset..).context("string offset past the end")?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .context("unterminated string")?;
    String::from_utf8(rest[..len].to_vec()).context("non-UTF-8 string")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal ELF64 image: one PT_LOAD mapping the whole file at
    /// `0x400000`, an optional PT_INTERP and a PT_DYNAMIC naming `needed`.
    pub fn synthetic_elf(interpreter: Option<&str>, needed: &[&str]) -> Vec<u8> {
        const BASE: u64 = 0x40_0000;
        let phnum = 2 + usize::from(interpreter.is_some());
        let phoff = 64;
        let mut strtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in needed {
            name_offsets.push(strtab.len() as u64);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let interp_off = phoff + phnum * 56;
        let interp = interpreter.map(|i| format!("{i}\0")).unwrap_or_default();
        let strtab_off = interp_off + interp.len();
        let dyn_off = (strtab_off + strtab.len()).next_multiple_of(8);
        let mut dynamic = Vec::new();
        for offset in &name_offsets {
            dynamic.extend_from_slice(&DT_NEEDED.to_le_bytes());
            dynamic.extend_from_slice(&offset.to_le_bytes());
        }
        dynamic.extend_from_slice(&DT_STRTAB.to_le_bytes());
        dynamic.extend_from_slice(&(BASE + strtab_off as u64).to_le_bytes());
        dynamic.extend_from_slice(&[0; 16]);
        let total = dyn_off + dynamic.len();

        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut header = |kind: u32, offset: usize, vaddr: u64, size: usize| {
            let mut ph = [0u8; 56];
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&ph);
        };
        header(PT_LOAD, 0, BASE, total);
        if interpreter.is_some() {
            header(PT_INTERP, interp_off, 0, interp.len());
        }
        header(PT_DYNAMIC, dyn_off, BASE + dyn_off as u64, dynamic.len());
        out.extend_from_slice(interp.as_bytes());
        out.extend_from_slice(&strtab);
        out.resize(dyn_off, 0);
        out.extend_from_slice(&dynamic);
        out
    }

    #[test]
    fn reads_interpreter_and_needed() {
        let elf = synthetic_elf(
            Some("/lib/ld-linux-aarch64.so.1"),
            &["libnuma.so.1", "libc.so.6"],
        );
        assert_eq!(
            dynamic(&elf).unwrap(),
            Dynamic {
                interpreter: Some("/lib/ld-linux-aarch64.so.1".into()),
                needed: vec!["libnuma.so.1".into(), "libc.so.6".into()],
            }
        );
    }

    #[test]
    fn library_without_interpreter() {
        let elf = synthetic_elf(None, &["libc.so.6"]);
        let found = dynamic(&elf).unwrap();
        assert_eq!(found.interpreter, None);
        assert_eq!(found.needed, ["libc.so.6"]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(dynamic(b"#!/bin/sh\n").is_err());
        let mut elf = synthetic_elf(None, &["libc.so.6"]);
        elf.truncate(100);
        assert!(dynamic(&elf).is_err());
        assert!(!is_elf(b"\x7fEL"));
    }
}
