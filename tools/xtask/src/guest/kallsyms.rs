//! The guest kernel's `System.map`, read from the kernel itself: Debian's packaged
//! `boot/System.map-*` is a one-line placeholder (the real one is in the huge `-dbg`
//! package), so the guest is booted once per kernel under plain QEMU (1 CPU, `nokaslr`,
//! the [`SCRIPT`] initramfs script) to print the text symbols of `/proc/kallsyms` on the
//! console between [`BEGIN_MARKER`] and [`END_MARKER`]. The lines in between become a
//! `System.map` (`address type name`), cached as
//! `guest/System.map-<release>-<key>` with the key hashing the kernel file's name, size
//! and contents.
//!
//! The addresses are those of any `nokaslr` boot of the same `Image`: arm64 kernels run
//! at their link address without KASLR wherever they are loaded, so they also name the
//! PCs the core's irqs-off hunter samples (whose runs add `nokaslr`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::{NoCoreBoot, fnv1a, init};
use crate::process::{self, Ending};
use crate::qemu::Qemu;

/// The initramfs script printing the symbols (a name of [`init::SCRIPTS`]).
pub const SCRIPT: &str = "kallsyms";

/// The script's body. It lifts `kptr_restrict` (which would print every address as zero)
/// and quiets kernel messages on the console (which could split a symbol line) while it
/// prints; the symbols go to `/tmp` first so the end marker can carry their count.
/// Busybox `grep -F` is used for speed: a bracket expression costs seconds under TCG.
pub const SCRIPT_BODY: &str = r#"echo 0 > /proc/sys/kernel/kptr_restrict || true
printk=$(cat /proc/sys/kernel/printk)
echo 1 > /proc/sys/kernel/printk
# Text symbols (types t and T) of the core kernel: module symbols end in [module].
grep -F -e ' t ' -e ' T ' /proc/kallsyms | grep -v -F '[' > /tmp/kallsyms || true
echo "guest: kallsyms begin"
cat /tmp/kallsyms
echo "guest: kallsyms end, $(wc -l < /tmp/kallsyms) lines"
echo "$printk" > /proc/sys/kernel/printk
"#;

/// The console line before the symbols.
pub const BEGIN_MARKER: &str = "guest: kallsyms begin";
/// The start of the console line after them (`guest: kallsyms end, N lines`).
pub const END_MARKER: &str = "guest: kallsyms end, ";

/// The fewest text symbols a real kernel map has (Debian's arm64 kernel: about 57,000).
const MIN_SYMBOLS: usize = 1000;
/// How long the boot may take: seconds on an idle host, more next to other QEMU runs.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The cached `System.map` of `kernel` in `cache`, built first (booting `kernel` with
/// `initramfs` under QEMU) if the cache lacks it.
pub fn system_map(kernel: &Path, initramfs: &Path, cache: &Path) -> Result<PathBuf> {
    let path = cache.join(map_file_name(kernel)?);
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("xtask: building the guest kernel's System.map from /proc/kallsyms (once per kernel)...");
    let start = Instant::now();
    let console = boot_and_capture(kernel, initramfs)?;
    let log = cache.join("kallsyms-console.log");
    let map = match system_map_of_console(&console.output) {
        Ok(map) => map,
        Err(err) => {
            let saved = fs::write(&log, &console.output)
                .map_or_else(|e| format!("(could not save it: {e})"), |()| format!("in {}", log.display()));
            return Err(err.context(format!(
                "the guest's kallsyms boot ({}, after {:.1} s) did not print a usable symbol list; its console is {saved}",
                describe_ending(console.ending),
                console.elapsed.as_secs_f64()
            )));
        }
    };
    let _ = fs::remove_file(&log);
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let partial = cache.join(format!(".{}.partial-{}", file_name(&path), std::process::id()));
    fs::write(&partial, &map.text).with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, &path)
        .with_context(|| format!("cannot move {} to {}", partial.display(), path.display()))?;
    prune_old_maps(cache, &file_name(&path));
    eprintln!(
        "xtask: built {} ({} text symbols, {:.1} MiB) in {:.1} s",
        path.display(),
        map.symbols,
        map.text.len() as f64 / (1024.0 * 1024.0),
        start.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// `System.map-<release>-<key>` for kernel file `vmlinuz-<release>`: the key is a hash of
/// the file's name, size and contents, so a rebuilt kernel of the same release gets its
/// own map.
fn map_file_name(kernel: &Path) -> Result<String> {
    let bytes = fs::read(kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    let name = file_name(kernel);
    Ok(map_file_name_of(&name, &bytes))
}

/// [`map_file_name`] for a kernel file called `name` holding `bytes`.
fn map_file_name_of(name: &str, bytes: &[u8]) -> String {
    let release = name.strip_prefix("vmlinuz-").unwrap_or(name);
    let key = format!("{name}\n{}\n{:016x}\n", bytes.len(), fnv1a(bytes));
    format!("System.map-{release}-{:016x}", fnv1a(key.as_bytes()))
}

/// The last component of `path`, lossily as UTF-8.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// Removes the other maps of `keep`'s release (same kernel file name, other contents): they
/// belong to builds of that kernel no longer used. The maps of other releases stay, since
/// comparisons (`cargo xtask irqsoff --compare`) alternate between kernels. Failures only
/// cost space.
fn prune_old_maps(cache: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if is_older_build(&name.to_string_lossy(), keep) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether map file `name` is another build of `keep`'s kernel: the same
/// `System.map-<release>-` prefix with another key.
fn is_older_build(name: &str, keep: &str) -> bool {
    let release_prefix = |file: &str| file.rsplit_once('-').map(|(prefix, _)| prefix.to_owned());
    name != keep && name.starts_with("System.map-") && release_prefix(name).is_some() && release_prefix(name) == release_prefix(keep)
}

/// Boots `kernel` with `initramfs` on 1 CPU without KASLR, running [`SCRIPT`], and
/// returns its console.
fn boot_and_capture(kernel: &Path, initramfs: &Path) -> Result<process::Captured> {
    let qemu = Qemu::ensure_installed()?;
    let append = format!("{} nokaslr", init::kernel_cmdline(SCRIPT, 1));
    let boot = NoCoreBoot {
        kernel,
        initrd: initramfs,
        append: &append,
        cpus: 1,
        extra_args: &[],
    };
    process::capture_with_timeout(boot.command(&qemu), BOOT_TIMEOUT)
}

/// How a boot ended, for messages.
fn describe_ending(ending: Ending) -> String {
    match ending {
        Ending::Exited(code) => format!("QEMU exited with status {code}"),
        Ending::Signaled => "QEMU was killed by a signal".to_owned(),
        Ending::TimedOut(limit) => format!("QEMU was stopped after the {} s limit", limit.as_secs()),
        Ending::AfterVerdict => "QEMU was stopped after its end marker".to_owned(),
    }
}

/// A `System.map` built from a console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// Its text: `address type name` lines, ascending by address.
    pub text: String,
    /// The number of symbols (lines).
    pub symbols: usize,
}

/// The `System.map` the console of a [`SCRIPT`] boot holds between its markers; an error
/// says what is wrong if the console lacks a marker, a line between them is not a core
/// kernel text symbol, their number is not the one announced, or the list is implausible
/// (too short, zeroed addresses, a kernel booted with KASLR).
pub fn system_map_of_console(console: &str) -> Result<Map> {
    let mut lines = console.lines();
    if !lines.any(|line| line.trim_end() == BEGIN_MARKER) {
        bail!("no `{BEGIN_MARKER}` line on the console (did the initramfs run the {SCRIPT} script?)");
    }
    let mut symbols: Vec<(u64, char, &str)> = Vec::new();
    let mut announced = None;
    for (index, line) in lines.enumerate() {
        let line = line.trim_end();
        if let Some(count) = line.strip_prefix(END_MARKER) {
            let count = count.strip_suffix(" lines").and_then(|n| n.trim().parse::<usize>().ok());
            announced = Some(count.with_context(|| format!("malformed end marker {line:?}"))?);
            break;
        }
        let symbol = parse_symbol(line)
            .with_context(|| format!("line {} after `{BEGIN_MARKER}` is not `address t|T name`: {line:?}", index + 1))?;
        symbols.push(symbol);
    }
    let Some(announced) = announced else {
        bail!(
            "the console ends after {} symbols without the `{END_MARKER}N lines` marker (the guest stopped, or QEMU was)",
            symbols.len()
        );
    };
    ensure!(
        symbols.len() == announced,
        "the guest announced {announced} symbols but the console carried {}",
        symbols.len()
    );
    ensure!(
        console.lines().all(|line| !line.contains("KASLR enabled")),
        "the guest kernel ran with KASLR: its addresses are randomized (was nokaslr on its command line?)"
    );
    let zeros = symbols.iter().filter(|(address, _, _)| *address == 0).count();
    if zeros > 0 && zeros == symbols.len() {
        bail!(
            "all {zeros} addresses are zero: /proc/kallsyms hid them (kernel.kptr_restrict, which the script sets to 0, \
             or a non-root reader)"
        );
    }
    ensure!(zeros == 0, "{zeros} of {} addresses are zero: the list is unreliable", symbols.len());
    ensure!(
        symbols.len() >= MIN_SYMBOLS,
        "only {} text symbols (a kernel has tens of thousands): is /proc/kallsyms complete (CONFIG_KALLSYMS)?",
        symbols.len()
    );
    symbols.sort_by_key(|(address, _, _)| *address);
    let mut text = String::with_capacity(symbols.len() * 48);
    for (address, kind, name) in &symbols {
        text.push_str(&format!("{address:016x} {kind} {name}\n"));
    }
    Ok(Map { text, symbols: symbols.len() })
}

/// One `/proc/kallsyms` line of a core kernel text symbol: a 64-bit address in 16 hex
/// digits (as arm64 prints them, so a line split by a stray message fails), `t` or `T`,
/// and a name.
fn parse_symbol(line: &str) -> Option<(u64, char, &str)> {
    let mut words = line.split_whitespace();
    let address = words.next().filter(|word| word.len() == 16)?;
    let address = u64::from_str_radix(address, 16).ok()?;
    let kind = match words.next()? {
        "t" => 't',
        "T" => 'T',
        _ => return None,
    };
    let name = words.next()?;
    words.next().is_none().then_some((address, kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console around `body` lines, announcing `count` of them.
    fn console(body: &[String], count: usize) -> String {
        format!(
            "[    1.9] Run /init as init process\nguest: running {SCRIPT} (duration 1s)\n{BEGIN_MARKER}\r\n{}{END_MARKER}{count} lines\nguest: {SCRIPT} exited with status 0\nguest: done\n",
            body.iter().map(|line| format!("{line}\n")).collect::<String>()
        )
    }

    /// `n` plausible symbol lines, descending by address (the map sorts them).
    fn symbols(n: usize) -> Vec<String> {
        (0..n)
            .rev()
            .map(|i| format!("{:016x} {} func_{i}", 0xffff_8000_8001_0000_u64 + 0x40 * i as u64, if i % 2 == 0 { 'T' } else { 't' }))
            .collect()
    }

    #[test]
    fn script_prints_the_markers_the_parser_expects() {
        assert_eq!(init::script(SCRIPT), Some(SCRIPT_BODY));
        assert!(SCRIPT_BODY.contains(&format!("echo \"{BEGIN_MARKER}\"\n")));
        assert!(SCRIPT_BODY.contains(&format!("echo \"{END_MARKER}$(wc -l < /tmp/kallsyms) lines\"\n")));
        assert!(SCRIPT_BODY.find("kptr_restrict").unwrap() < SCRIPT_BODY.find("/proc/kallsyms").unwrap());
        // The console and the parser agree on an empty list too: it is an error, not a hang.
        assert!(format!("{:#}", system_map_of_console(&console(&[], 0)).unwrap_err()).contains("only 0 text symbols"));
    }

    #[test]
    fn builds_a_sorted_map_between_the_markers() {
        let lines = symbols(MIN_SYMBOLS);
        let map = system_map_of_console(&console(&lines, MIN_SYMBOLS)).unwrap();
        assert_eq!(map.symbols, MIN_SYMBOLS);
        let first: Vec<&str> = map.text.lines().take(2).collect();
        assert_eq!(first, ["ffff800080010000 T func_0", "ffff800080010040 t func_1"]);
        assert_eq!(map.text.lines().count(), MIN_SYMBOLS);
        // The report's parser reads it back whole.
        let parsed = crate::report::symbols::SystemMap::parse(&map.text);
        assert_eq!(parsed.symbolize(0xffff_8000_8001_0044).as_deref(), Some("func_1+0x4"));
    }

    #[test]
    fn missing_markers_are_clear_errors() {
        let lines = symbols(MIN_SYMBOLS);
        let err = |console: &str| format!("{:#}", system_map_of_console(console).unwrap_err());
        assert!(err("guest: done\n").contains("no `guest: kallsyms begin` line"));
        let cut = format!("{BEGIN_MARKER}\n{}\n", lines[..10].join("\n"));
        let message = err(&cut);
        assert!(message.contains("ends after 10 symbols without"), "{message}");
        let short = console(&lines[..MIN_SYMBOLS - 1], MIN_SYMBOLS);
        assert!(err(&short).contains(&format!("announced {MIN_SYMBOLS} symbols but the console carried {}", MIN_SYMBOLS - 1)));
        let garbled = console(&lines, MIN_SYMBOLS).replace(&format!("{MIN_SYMBOLS} lines"), "many lines");
        assert!(err(&garbled).contains("malformed end marker"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        let lines = symbols(MIN_SYMBOLS);
        for (bad, why) in [
            ("ffff8000801[    5.123456] random: crng init done", "a message split the line"),
            ("23456 T tail_of_a_split_line", "a short address"),
            ("ffff80008001zzzz T broken", "not hex"),
            ("ffff800080010000 D some_data", "not text"),
            ("ffff800080010000 t nft_do_chain [nf_tables]", "a module symbol"),
            ("ffff800080010000 T", "no name"),
        ] {
            let mut with_bad = lines.clone();
            with_bad.insert(7, bad.to_owned());
            let message = format!("{:#}", system_map_of_console(&console(&with_bad, MIN_SYMBOLS + 1)).unwrap_err());
            assert!(message.contains(&format!("line 8 after `{BEGIN_MARKER}`")) && message.contains(bad), "{why}: {message}");
        }
    }

    #[test]
    fn implausible_lists_are_errors() {
        let err = |lines: &[String]| format!("{:#}", system_map_of_console(&console(lines, lines.len())).unwrap_err());
        let zeroed: Vec<String> = (0..MIN_SYMBOLS).map(|i| format!("0000000000000000 T func_{i}")).collect();
        assert!(err(&zeroed).contains(&format!("all {MIN_SYMBOLS} addresses are zero")));
        let mut some_zero = symbols(MIN_SYMBOLS);
        some_zero[3] = "0000000000000000 t odd".to_owned();
        assert!(err(&some_zero).contains("1 of 1000 addresses are zero"));
        assert!(err(&symbols(12)).contains("only 12 text symbols"));
        let lines = symbols(MIN_SYMBOLS);
        let kaslr = format!("[    0.0] KASLR enabled\n{}", console(&lines, lines.len()));
        assert!(format!("{:#}", system_map_of_console(&kaslr).unwrap_err()).contains("ran with KASLR"));
    }

    #[test]
    fn pruning_keeps_other_releases() {
        let keep = map_file_name_of("vmlinuz-6.12.118+deb12-rt-arm64", b"new");
        let older = map_file_name_of("vmlinuz-6.12.118+deb12-rt-arm64", b"old");
        let other = map_file_name_of("vmlinuz-6.1.0-41-rt-arm64", b"old");
        assert!(is_older_build(&older, &keep));
        assert!(!is_older_build(&keep, &keep));
        assert!(!is_older_build(&other, &keep));
        assert!(!is_older_build("initramfs-0123.cpio", &keep));
    }

    #[test]
    fn map_names_follow_the_kernel_file() {
        let name = "vmlinuz-6.12.117+deb12-rt-arm64";
        let a = map_file_name_of(name, b"kernel one");
        assert!(a.starts_with("System.map-6.12.117+deb12-rt-arm64-"), "{a}");
        assert_eq!(a.len(), "System.map-6.12.117+deb12-rt-arm64-".len() + 16);
        assert_eq!(a, map_file_name_of(name, b"kernel one"));
        assert_ne!(a, map_file_name_of(name, b"kernel two"));
        assert_ne!(a, map_file_name_of("vmlinuz-6.13", b"kernel one"));
        assert!(map_file_name_of("Image", b"x").starts_with("System.map-Image-"));
    }
}
