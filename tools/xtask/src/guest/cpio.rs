//! A writer for the `newc` cpio format the Linux kernel unpacks as an
//! initramfs (see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//! Entries are owned by root with a zero timestamp, so equal inputs give
//! byte-identical archives.

use std::io::{self, Write};

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// What one archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A directory.
    Directory,
    /// A regular file with these contents.
    File(&'a [u8]),
    /// A symbolic link to this target.
    Symlink(&'a str),
    /// A character device with this major and minor number.
    CharDevice(u32, u32),
}

/// Streams `newc` entries to `out`; [`Self::finish`] writes the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    next_inode: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// A writer appending to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    /// Appends an entry named `path` (relative, no leading `/`) with
    /// permission bits `perm` (ignored for symlinks, which get 0777).
    pub fn entry(&mut self, path: &str, perm: u32, kind: Kind<'_>) -> io::Result<()> {
        let (type_bits, data, nlink, rdev) = match kind {
            Kind::Directory => (S_IFDIR, &[][..], 2, (0, 0)),
            Kind::File(data) => (S_IFREG, data, 1, (0, 0)),
            Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), 1, (0, 0)),
            Kind::CharDevice(major, minor) => (S_IFCHR, &[][..], 1, (major, minor)),
        };
        let perm = if type_bits == S_IFLNK {
            0o777
        } else {
            perm & 0o7777
        };
        let inode = self.next_inode;
        self.next_inode += 1;
        self.record(path, inode, type_bits | perm, nlink, rdev, data)
    }

    /// Writes the `TRAILER!!!` entry and returns the output and the archive's size.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.record("TRAILER!!!", 0, 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn record(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        nlink: u32,
        (rdev_major, rdev_minor): (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name} is too large for cpio")))?;
        let name_size = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::other("name too long for cpio"))?;
        let fields = [
            inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0,
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads to the format's 4-byte alignment.
    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..padding as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses an archive back into (name, mode, rdev major, data) tuples.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "bad magic at {offset}");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, major, name_size) = (field(1), field(6), field(9), field(11));
            let name_end = 110 + name_size as usize;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end - 1], 0);
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            offset += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty());
                return entries;
            }
            entries.push((name, mode, major, data));
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let mut writer = Writer::new(Vec::new());
        writer.entry("bin", 0o755, Kind::Directory).unwrap();
        writer
            .entry("bin/busybox", 0o755, Kind::File(b"\x7fELF12345"))
            .unwrap();
        writer.entry("bin/sh", 0, Kind::Symlink("busybox")).unwrap();
        writer
            .entry("dev/console", 0o600, Kind::CharDevice(5, 1))
            .unwrap();
        let (bytes, size) = writer.finish().unwrap();
        assert_eq!(size as usize, bytes.len());
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            parse(&bytes),
            [
                ("bin".into(), 0o040_755, 0, vec![]),
                ("bin/busybox".into(), 0o100_755, 0, b"\x7fELF12345".to_vec()),
                ("bin/sh".into(), 0o120_777, 0, b"busybox".to_vec()),
                ("dev/console".into(), 0o020_600, 5, vec![]),
            ]
        );
    }

    #[test]
    fn header_layout_is_newc() {
        let mut writer = Writer::new(Vec::new());
        writer.entry("init", 0o755, Kind::File(b"#!")).unwrap();
        let (bytes, _) = writer.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        // magic, inode 1, mode 100755, uid, gid, nlink 1, mtime 0, size 2, ..., namesize 5
        let expected: String = [1, 0o100_755, 0, 0, 1, 0, 2, 0, 0, 0, 0, 5, 0]
            .iter()
            .map(|field| format!("{field:08X}"))
            .collect();
        assert_eq!(header, format!("070701{expected}"));
        assert!(header.starts_with("07070100000001000081ED"));
        // 110 header + "init\0" = 115, padded to 116; data "#!" then padding to 120.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..120], b"#!\0\0");
        assert!(bytes[120..].starts_with(b"070701"));
    }
}
