//! What a program loads, read with `goblin`: its interpreter (`PT_INTERP`) and the shared
//! libraries it needs (`DT_NEEDED`), for the 64-bit little-endian ELF files of the guest's
//! packages.

use anyhow::{Context, Result, bail};
use goblin::elf::Elf;
use goblin::elf::dynamic::{DT_NEEDED, DT_STRTAB};
use goblin::elf::program_header::PT_LOAD;

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
    let elf = Elf::parse(bytes).context("malformed ELF file")?;
    if !elf.is_64 || !elf.little_endian {
        bail!("not a 64-bit little-endian ELF file");
    }
    // goblin reads the names wherever DT_STRTAB points; they must lie in a loaded segment.
    let dyns = elf.dynamic.as_ref().map_or(&[][..], |dynamic| &dynamic.dyns[..]);
    if dyns.iter().any(|entry| entry.d_tag == DT_NEEDED) {
        let strtab = dyns.iter().find(|entry| entry.d_tag == DT_STRTAB).context("DT_NEEDED without DT_STRTAB")?.d_val;
        let loaded = elf.program_headers.iter().any(|header| {
            header.p_type == PT_LOAD && strtab >= header.p_vaddr && strtab - header.p_vaddr < header.p_filesz
        });
        if !loaded {
            bail!("DT_STRTAB lies in no PT_LOAD segment");
        }
    }
    Ok(Dynamic {
        interpreter: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|&name| name.to_owned()).collect(),
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use goblin::elf::dynamic::DT_STRSZ;
    use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP};

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
        dynamic.extend_from_slice(&DT_STRSZ.to_le_bytes());
        dynamic.extend_from_slice(&(strtab.len() as u64).to_le_bytes());
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
            ph[40..48].copy_from_slice(&(size as u64).to_le_bytes());
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
    fn reads_a_real_program() {
        // This test binary: a dynamically linked 64-bit little-endian ELF on the usual hosts.
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let found = dynamic(&bytes).unwrap();
        assert!(found.interpreter.as_deref().is_some_and(|path| path.starts_with('/')), "{found:?}");
        assert!(found.needed.iter().any(|name| name.starts_with("libc.so")), "{found:?}");
    }

    #[test]
    fn needed_names_without_their_strings_are_an_error() {
        let mut elf = synthetic_elf(None, &["libc.so.6"]);
        let strtab = elf.windows(8).position(|w| w == DT_STRTAB.to_le_bytes()).unwrap();
        elf[strtab + 8..strtab + 16].copy_from_slice(&0xdead_0000_u64.to_le_bytes());
        assert!(format!("{:#}", dynamic(&elf).unwrap_err()).contains("DT_STRTAB lies in no PT_LOAD"));
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
