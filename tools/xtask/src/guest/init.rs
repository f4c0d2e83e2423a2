//! The guest initramfs's `/init` and the scripts it can run, chosen on the
//! kernel command line with `guest.script=NAME` (and `guest.duration=SECONDS`
//! for the timed ones). Kernel parameters cannot easily carry spaces, so the
//! command line only selects among scripts baked into the initramfs.

/// Where the scripts live in the initramfs.
pub const SCRIPT_DIR: &str = "guest";
/// The script run when the command line names none.
pub const DEFAULT_SCRIPT: &str = "uname";
/// The duration timed scripts use when the command line gives none.
pub const DEFAULT_DURATION: u64 = 10;
/// The line `/init` prints last, just before powering off.
pub const DONE_MARKER: &str = "guest: done";

/// A shell command substitution giving the RTC interrupts Linux counted, summed over its
/// CPUs (`/proc/interrupts`).
macro_rules! rtc_interrupts {
    () => {
        r#"$(grep -i rtc /proc/interrupts | awk '{s=0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s}')"#
    };
}

/// A shell function: `port_of NAME` prints the `/dev` name of the virtio-console port called
/// NAME, waiting up to 3 s for Linux to name it; fails if it never does.
macro_rules! port_of {
    () => {
        r#"port_of() {
    for try in $(seq 30); do
        found=$(grep -lx "$1" /sys/class/virtio-ports/*/name 2>/dev/null | head -n 1 | cut -d/ -f5 || true)
        [ -n "$found" ] && { echo "$found"; return 0; }
        sleep 0.1
    done
    return 1
}
"#
    };
}

/// The scripts: name, one-line description, and body (run by busybox `sh`
/// with `$GUEST_DURATION` set, stdout and stderr on the console).
pub const SCRIPTS: &[(&str, &str, &str)] = &[
    (
        "uname",
        "print the kernel's identity and whether it is PREEMPT_RT",
        "uname -a\n\
         echo \"guest: cpus online: $(cat /sys/devices/system/cpu/online)\"\n\
         echo \"guest: realtime: $(cat /sys/kernel/realtime 2>/dev/null || echo 0)\"\n",
    ),
    (
        "cyclictest",
        "cyclictest, one SCHED_FIFO 90 thread per CPU, 1 ms period, 1 us histogram to 1 ms, for the duration, \
         next to the load named by guest.load= (idle, grinder, neighbour)",
        CYCLICTEST_WITH_LOAD,
    ),
    (
        "cyclictest-stress",
        "cyclictest as above while stress-ng loads every CPU",
        "stress-ng --cpu 0 --timeout \"$((GUEST_DURATION + 2))s\" --quiet &\n\
         sleep 1\n\
         echo \"guest: cyclictest -m -S -p 90 -i 1000 -h 1000 -D ${GUEST_DURATION}s -q (under stress-ng --cpu 0)\"\n\
         cyclictest -m -S -p 90 -i 1000 -h 1000 -D \"${GUEST_DURATION}s\" -q\n\
         status=$?\n\
         wait\n\
         exit $status\n",
    ),
    (
        "rtc-alarm",
        "one RTC alarm interrupt (the PL031, passed through), then /proc/interrupts: for accounting",
        concat!(
            "echo +1 > /sys/class/rtc/rtc0/wakealarm\n\
             sleep 3\n\
             grep -i rtc /proc/interrupts\n\
             echo \"guest: rtc interrupts: ",
            rtc_interrupts!(),
            "\"\n"
        ),
    ),
    (
        "soak",
        "cargo xtask soak: the loads idle, grinder and neighbour in turn for guest.segment= seconds each, \
         an RTC alarm per segment, for the duration; then /proc/interrupts summed per INTID",
        SOAK,
    ),
    (
        "bench",
        "cargo xtask bench's Linux figures: cyclictest as in `cyclictest` with no load but in \
         nanoseconds (1 ns buckets to 50 us, summed in the guest to one `cyclictest ns:` line), then \
         hackbench (4 groups of 40, 20 loops) three times",
        BENCH,
    ),
    (
        "hackbench",
        "hackbench, 4 groups of 40 processes over sockets, 10 loops (about 6 s under TCG)",
        "hackbench -g 4 -l 10\n",
    ),
    (
        "stress-ng",
        "stress-ng's CPU stressor on every CPU for the duration, with metrics",
        "stress-ng --cpu 0 --timeout \"${GUEST_DURATION}s\" --metrics-brief\n",
    ),
    (
        super::kallsyms::SCRIPT,
        "print the kernel's text symbols from /proc/kallsyms between markers (cargo xtask builds \
         the guest's System.map from them; boot with nokaslr for the addresses other nokaslr boots use)",
        super::kallsyms::SCRIPT_BODY,
    ),
    (
        "channel",
        "the core's oob channel device under Debian's stock virtio drivers: the virtio devices and \
         their drivers, the named ports, `companion ps` (asked on the core's companion.ctl port); then a \
         malformed ring written with devmem breaks the device, a reset and a new probe bring it back; \
         then `companion latmus -T 2` while 4 MiB flood the companion.echo port (losses counted)",
        CHANNEL,
    ),
    (
        FLOOD_SCRIPT,
        "the oob latency test started from Linux (`companion latmus`) with the channel quiet, then again \
         while Linux floods the companion.echo port whose echo it does not read until the end; then what \
         came back (the core counts what its echo dropped)",
        CHANNEL_FLOOD,
    ),
    (
        HOSTILE_CONTROL_SCRIPT,
        "a hostile Linux on the core's control port (raw bytes to companion.ctl): malformed, truncated, \
         overlong and out-of-bounds commands, a latency-test period under the floor, a flood of `ps`; then a \
         latency test from Linux and, while it runs, a second one, another flood and a bad command; and \
         writes to an app port nobody reads (example.telemetry, with companion.app=example); the core \
         refuses each and goes on",
        HOSTILE_CONTROL,
    ),
    (
        PID_DROPS_SCRIPT,
        "the example oob application's drop path (companion.app=example): holds example.telemetry open \
         without reading for guest.duration seconds (Linux's buffers and the core's ring fill, the oob \
         side drops and counts), then reads; checks that every gap in the lines' numbers is the drops \
         their dropped= count shows",
        PID_DROPS,
    ),
    (
        PID_SCRIPT,
        "the example oob application (the PID motor loop, started beside the guest with \
         companion.app=example): sends it three setpoints over example.setpoint with `companion send`, \
         reads its telemetry from example.telemetry with `companion recv`, and prints the last line \
         seen at the end of each step and the lines read; then sends a malformed setpoint (refused)",
        PID,
    ),
    (
        "crash",
        "the guest restart (docs/guest-restart.md): the first boot panics the kernel (sysrq c; panic=-1 \
         resets), the second reboots with `reboot -f`, the third hangs with IRQs masked (`halt -f`; the \
         core's hang watchdog restarts it), the fourth runs the `cyclictest` script; the boot number \
         comes from the core's companion.restarts=N",
        CRASH,
    ),
    (
        "rtc-restart",
        "a guest restart with a passed-through device left armed (docs/guest-restart.md): the first \
         boot arms an RTC alarm 2 s ahead and resets at once with `reboot -f`; the second counts the \
         RTC interrupts it gets (the core quiesced the PL031 at the restart: none)",
        RTC_RESTART,
    ),
    (
        "reset-loop",
        "a hostile guest for the restart limit (docs/guest-restart.md): every boot resets at once with \
         `reboot -f` (PSCI SYSTEM_RESET), so the core restarts it up to companion.guest.restart.limit \
         times a minute and then fails the run (exit code 106)",
        RESET_LOOP,
    ),
    (
        "restart-soak",
        "the restart soak (cargo xtask soak --restart-every S): cyclictest until this boot's uptime reaches \
         guest.restart-every= seconds, then `reboot -f`, guest.restarts= times; the last boot powers off",
        RESTART_SOAK,
    ),
    (
        "shell",
        "an interactive busybox shell on the console (exit it to power off)",
        "setsid cttyhack sh || sh\n",
    ),
];

/// The script driving the example application over its channels.
pub const PID_SCRIPT: &str = "pid";

/// The setpoints the `pid` script sends (4 s each), each with the form the core's telemetry
/// prints it in.
pub const PID_SETPOINTS: &[(&str, &str)] = &[("1.5", "1.500"), ("-0.75", "-0.750"), ("0.25", "0.250")];

/// The `pid` script: `companion recv` copies the telemetry to a file in the background (for a
/// bounded time, `timeout`), each setpoint goes in with `companion send`, and after each step
/// the last complete telemetry line carrying that setpoint is printed; then a malformed line.
const PID: &str = concat!(
    port_of!(),
    r#"port_of example.telemetry >/dev/null || true
timeout 15 companion recv example.telemetry >/tmp/telemetry 2>/tmp/recv.err &
recv=$!
sleep 1
for pair in 1.5:1.500 -0.75:-0.750 0.25:0.250; do
    setpoint=${pair%%:*}
    printed=${pair#*:}
    echo "$setpoint" | companion send example.setpoint || echo "guest: pid: companion send $setpoint failed"
    sleep 4
    seen=$(grep -E "^t=[0-9]+ setpoint=$printed position=-?[0-9]+\.[0-9]+ overruns=[0-9]+ line=[0-9]+ dropped=[0-9]+ end$" /tmp/telemetry | tail -n 1)
    echo "guest: pid: setpoint $setpoint: ${seen:-no telemetry}"
done
# A line that is no number: the core refuses and counts it, the setpoint stays.
echo "1.5x" | companion send example.setpoint || echo "guest: pid: companion send 1.5x failed"
sleep 1
# `timeout` ends it (status 124, or 143 for the TERM it sends): not a failure.
wait $recv || true
echo "guest: pid: read $(grep -c ' end$' /tmp/telemetry) telemetry lines"
"#
);

/// The script stalling the example application's telemetry.
pub const PID_DROPS_SCRIPT: &str = "pid-drops";

/// The `pid-drops` script: the telemetry port open and unread for the duration, then read for
/// 5 s. Every complete line carries its number (`line=`) and the drops before it
/// (`dropped=`); between two lines read, the lines missing must be the drops counted. Prints
/// the sums and the last `dropped=` (the case holds it to the core's own total).
const PID_DROPS: &str = concat!(
    port_of!(),
    r#"port=$(port_of example.telemetry) || { echo "guest: pid drops: no example.telemetry port"; exit 1; }
exec 5<"/dev/$port"
echo "guest: pid drops: example.telemetry open, not read for $GUEST_DURATION s"
sleep "$GUEST_DURATION"
timeout 5 cat <&5 >/tmp/telemetry || true
exec 5<&-
awk '/ end$/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if (n > 0) {
        gap = v["line"] - last - 1; rose = v["dropped"] - last_dropped
        missing += gap; counted += rose
        if (gap != rose) unequal++
        if (gap > 0) held = n
    }
    last = v["line"]; last_dropped = v["dropped"]; n++
}
END {
    printf "guest: pid drops: read %d lines, the first %d before the gap\n", n, held
    printf "guest: pid drops: lines missing between the lines read: %d\n", missing
    printf "guest: pid drops: drops counted by the lines dropped= between them: %d\n", counted
    printf "guest: pid drops: gaps unlike their count: %d\n", unequal + 0
    printf "guest: pid drops: last dropped=%d\n", last_dropped
}' /tmp/telemetry
"#
);

/// The script attacking the core's control port from Linux.
pub const HOSTILE_CONTROL_SCRIPT: &str = "channel-hostile";

/// The `channel-hostile` script: one process holds companion.ctl open (Linux lets one at a
/// time), a background `cat` collects every answer, and the script writes raw commands: 40
/// alternating bad ones at once (the core logs 16 a second), 100 `ps` before any test
/// (answered) and 100 while its latency test runs (refused). The core's console carries the
/// refusals; the guest prints what it got back.
const HOSTILE_CONTROL: &str = concat!(
    port_of!(),
    r#"ctl=$(port_of companion.ctl) || { echo "guest: hostile: no companion.ctl port"; exit 1; }
telemetry=$(port_of example.telemetry) || { echo "guest: hostile: no example.telemetry port"; exit 1; }
ps_flood() {
    i=0
    while [ "$i" -lt 100 ]; do printf 'ps\n'; i=$((i + 1)); done >&3
}
exec 3<>"/dev/$ctl"
cat <&3 >/tmp/answers &
reader=$!
echo "guest: hostile: before any test"
printf '\377\376\001garbage\n' >&3
printf 'latmus 1000 1\n' >&3
printf 'reboot now\n' >&3
head -c 300 /dev/zero | tr '\0' A >&3
printf '\n' >&3
printf 'latmus 99999999999999999999999 1 - 99 -\n' >&3
printf 'latmus 1000 18446744073709551615 - 99 -\n' >&3
printf 'latmus 1000 1 4096 99 -\n' >&3
printf 'latmus 1000 1 - 99 99999999999\n' >&3
printf 'latmus 10 1 - 99 -\n' >&3
# A truncated command: no newline, then silence (the core drops it after a second).
printf 'latmus 1000' >&3
sleep 3
# 40 bad commands at once, each unlike the one before: the core logs 16 a second at most.
i=0
while [ "$i" -lt 20 ]; do printf 'x1\nx2\n'; i=$((i + 1)); done > /tmp/alternating
cat /tmp/alternating >&3
ps_flood
sleep 3
echo "guest: hostile: a latency test from Linux"
printf 'latmus 1000 3 - 99 -\n' >&3
sleep 1
echo "guest: hostile: while it runs"
printf 'latmus 1000 1 - 99 -\n' >&3
ps_flood
printf 'latmus 10 1 - 99 -\n' >&3
# An app port whose oob side never reads what Linux writes: the writer is held back.
if timeout 2 dd if=/dev/zero of="/dev/$telemetry" bs=4096 count=512 2>/dev/null; then
    echo "guest: hostile: dd to example.telemetry finished"
else
    echo "guest: hostile: dd to example.telemetry held back"
fi
for try in $(seq 100); do
    grep -q '^RTS|' /tmp/answers && [ "$(grep -c '^END$' /tmp/answers)" -ge 101 ] && break
    sleep 0.1
done
kill "$reader"
exec 3<&-
grep '^ERR ' /tmp/answers | sort | uniq -c | while read -r count line; do
    echo "guest: hostile: $count x $line"
done
echo "guest: hostile: $(grep -c '^END$' /tmp/answers) END, $(grep -c '^ERR ' /tmp/answers) ERR, $(grep -c '^RTD|' /tmp/answers) RTD| lines"
companion ps > /tmp/ps || echo "guest: hostile: companion ps failed"
grep companion-ctl /tmp/ps | sed 's/^/guest: hostile: ps after| /'
"#
);

/// The script measuring the oob latency with the channel quiet and flooded.
pub const FLOOD_SCRIPT: &str = "channel-flood";

/// The `channel-flood` script: `companion latmus` for the duration with the channel quiet,
/// then again while a loop writes 64 KiB at a time into companion.echo, whose echo Linux
/// does not read until the end (its receive buffers fill, the core's echo thread drops what
/// does not fit and counts it; Linux's writer is held back, never dropped). The core prints
/// both tests' lines and, at the end, what its echo took and dropped; Linux says what it
/// wrote and read back.
const CHANNEL_FLOOD: &str = concat!(
    port_of!(),
    r#"echo_port=$(port_of companion.echo) || { echo "guest: channel flood: no companion.echo port"; exit 1; }
echo "guest: channel flood: quiet"
companion latmus -T "$GUEST_DURATION" >/tmp/quiet 2>&1 || echo "guest: channel flood: companion latmus (quiet) failed"
exec 4<>"/dev/$echo_port"
echo "guest: channel flood: flooding"
(
    blocks=0
    while [ ! -e /tmp/flood.stop ]; do
        dd if=/dev/zero bs=4096 count=16 >&4 2>/dev/null || break
        blocks=$((blocks + 16))
    done
    echo "$blocks" >/tmp/flood.blocks
) &
flood=$!
companion latmus -T "$GUEST_DURATION" >/tmp/busy 2>&1 || echo "guest: channel flood: companion latmus (flood) failed"
touch /tmp/flood.stop
wait $flood
read_back=$(timeout 3 cat <&4 | wc -c)
exec 4<&-
echo "guest: channel flood: written $(($(cat /tmp/flood.blocks) * 4096)) bytes, read back $read_back bytes"
"#
);

/// Shell lines setting `$restarts` to the `companion.restarts=N` the core adds to the command
/// line of a restarted guest (0 at the first boot).
macro_rules! restarts_from_cmdline {
    () => {
        r#"restarts=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        companion.restarts=*) restarts="${arg#companion.restarts=}" ;;
    esac
done
"#
    };
}

/// The `rtc-restart` script: a dead guest's armed RTC alarm must not reach the next one.
const RTC_RESTART: &str = concat!(
    restarts_from_cmdline!(),
    r#"if [ "$restarts" -eq 0 ]; then
    echo +2 > /sys/class/rtc/rtc0/wakealarm
    echo "guest: rtc-restart: alarm armed 2 s ahead, reboot -f"
    reboot -f
fi
sleep 4
echo "guest: rtc-restart: rtc interrupts after the restart: "#,
    rtc_interrupts!(),
    r#""
"#
);

/// The `reset-loop` script: a hostile guest resetting at once on every boot.
const RESET_LOOP: &str = concat!(
    restarts_from_cmdline!(),
    r#"echo "guest: reset-loop: boot $((restarts + 1)), reboot -f"
reboot -f
"#
);

/// The `bench` script: cyclictest in nanoseconds (`-N`: its histogram's buckets become 1 ns
/// wide, so `-h 50000` covers 50 µs; written to a file rather than the console) reduced in
/// the guest to one line — samples, average, p99 (the smallest latency at or below which 99 %
/// of all samples lie, overflows counted), max, overflows — then hackbench three times.
/// cyclictest zero-pads its numbers (`%06d`), and busybox's awk reads a number with a
/// leading 0 as octal when its digits allow it (`05467` is 2871): every number goes through
/// `dec`, which drops the zeros first.
const BENCH: &str = r#"echo "guest: bench: cyclictest -m -S -p 90 -i 1000 -N -h 50000 -D ${GUEST_DURATION}s -q --histfile=/tmp/cyclictest.hist"
cyclictest -m -S -p 90 -i 1000 -N -h 50000 -D "${GUEST_DURATION}s" -q --histfile=/tmp/cyclictest.hist
awk 'function dec(s) { sub(/^0+/, "", s); return s + 0 }
    /^[0-9]+[ \t]/ { n = 0; for (i = 2; i <= NF; i++) n += dec($i); if (n > 0) { count[dec($1)] += n; total += n }; next }
    /^# Avg Latencies:/ { for (i = 4; i <= NF; i++) { avg += dec($i); threads++ } }
    /^# Max Latencies:/ { for (i = 4; i <= NF; i++) if (dec($i) > max) max = dec($i) }
    /^# Histogram Overflows:/ { for (i = 4; i <= NF; i++) over += dec($i) }
    END {
        all = total + over; seen = 0; p99 = -1
        for (b = 0; b < 50000 && p99 < 0; b++) if (b in count) { seen += count[b]; if (seen * 100 >= all * 99) p99 = b }
        printf "guest: bench: cyclictest ns: samples %d avg %d p99 %s max %d overflows %d\n", all, threads ? avg / threads : 0, p99 < 0 ? "over" : p99, max, over
    }' /tmp/cyclictest.hist
for run in 1 2 3; do
    echo "guest: bench: hackbench -g 4 -l 20 run $run: $(hackbench -g 4 -l 20 | grep '^Time:')"
done
"#;

/// The `restart-soak` script: each boot runs cyclictest until its uptime reaches the period.
const RESTART_SOAK: &str = concat!(
    restarts_from_cmdline!(),
    r#"every=20
planned=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        guest.restart-every=*) every="${arg#guest.restart-every=}" ;;
        guest.restarts=*) planned="${arg#guest.restarts=}" ;;
    esac
done
echo "guest: restart-soak: boot $((restarts + 1)) of $((planned + 1))"
read -r uptime _ < /proc/uptime
left=$((every - ${uptime%%.*}))
[ "$left" -ge 1 ] || left=1
cyclictest -m -S -p 90 -i 1000 -D "${left}s" -q
if [ "$restarts" -lt "$planned" ]; then
    echo "guest: restart-soak: reboot -f"
    reboot -f
fi
echo "guest: restart-soak: $planned restarts done"
"#
);

/// The `crash` script: which boot this is, from [`restarts_from_cmdline`].
const CRASH: &str = concat!(
    restarts_from_cmdline!(),
    r#"echo "guest: crash: boot $((restarts + 1))"
case "$restarts" in
    0)
        echo "guest: crash: panicking the kernel"
        # What this script printed may still wait in the tty's buffer (the UART takes a
        # line per transmit interrupt); a panic throws it away, as on a real UART.
        sleep 0.5
        echo c > /proc/sysrq-trigger
        ;;
    1)
        echo "guest: crash: reboot -f"
        reboot -f
        ;;
    2)
        # busybox `halt -f` is the kernel's LINUX_REBOOT_CMD_HALT: Linux masks its IRQs, stops
        # the other CPUs and spins for ever (arm64 machine_halt), never calling PSCI: only
        # the core's hang watchdog ends it.
        echo "guest: crash: halt -f (IRQs masked for ever)"
        sleep 0.5
        halt -f
        ;;
esac
exec /guest/cyclictest
"#
);

/// The `channel` script: what probed, then `companion ps` through the core's control port.
const CHANNEL: &str = concat!(
    port_of!(),
    r#"for device in /sys/bus/virtio/devices/*; do
    [ -e "$device" ] || continue
    driver=$(readlink "$device/driver" 2>/dev/null || echo none)
    echo "guest: virtio device ${device##*/}: id $(cat "$device/device") driver ${driver##*/}"
done
for port in /sys/class/virtio-ports/*; do
    [ -e "$port" ] || continue
    echo "guest: port ${port##*/}: $(cat "$port/name")"
done
companion ps > /tmp/ps
while read -r line; do
    echo "guest: ps| $line"
done < /tmp/ps
# A malformed ring: the driver let go, then a queue made ready with its rings at 0 (not RAM).
platform=$(basename "$(readlink -f /sys/bus/virtio/drivers/virtio_console/virtio*/..)")
base=$((0x${platform%%.*}))
echo "$platform" > /sys/bus/platform/drivers/virtio-mmio/unbind
reg() { devmem $((base + $1)) 32 ${2:-}; }
reg 0x70 0; reg 0x70 3; reg 0x24 1; reg 0x20 1; reg 0x70 11
reg 0x30 0; reg 0x38 8; reg 0x80 0; reg 0x90 0; reg 0xa0 0; reg 0x44 1
echo "guest: channel status after a malformed ring: $(reg 0x70)"
reg 0x70 0
echo "guest: channel status after reset: $(reg 0x70)"
echo "$platform" > /sys/bus/platform/drivers/virtio-mmio/bind
companion ps > /tmp/ps
while read -r line; do
    echo "guest: ps again| $line"
done < /tmp/ps
# Round trips Linux -> the core's echo thread -> Linux, one message at a time.
companion ping -n 200 > /tmp/ping 2>&1 || echo "guest: companion ping failed"
# The same from a SCHED_FIFO 80 thread (`-P`).
companion ping -n 200 -P 80 > /tmp/ping-fifo 2>&1 || echo "guest: companion ping -P 80 failed: $(cat /tmp/ping-fifo)"
cat /tmp/ping-fifo >> /tmp/ping
while read -r line; do
    echo "guest: $line"
done < /tmp/ping
# The latency test, started from Linux, its lines streamed back over the channel, while
# 4 MiB flood companion.echo, whose echo nobody reads until the end: Linux's writer is held
# back, the core's echo drops what does not fit and counts it.
echo_port=$(port_of companion.echo) || true
exec 4<>"/dev/$echo_port"
dd if=/dev/zero bs=4096 count=1024 >&4 2> /tmp/dd &
flood=$!
companion latmus -T 2 > /tmp/latmus
wait $flood
while read -r line; do
    echo "guest: latmus| $line"
done < /tmp/latmus
read_back=$(timeout 3 cat <&4 | wc -c)
exec 4<&-
dropped=$(companion channels | grep " companion.echo " | cut -d" " -f6)
written=$((4096 * 1024))
balance=unbalanced
[ "$written" -eq "$((read_back + dropped))" ] && balance=balanced
echo "guest: echo flood: written $written bytes, read back $read_back, dropped $dropped (counted by the core): $balance"
"#
);

/// The load running next to cyclictest, after EVL's method (`latmus` under `idle`, a
/// "grinder" or a "neighbour"); chosen with `guest.load=NAME` on the guest's command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Load {
    /// Nothing but cyclictest.
    Idle,
    /// A `hackbench` loop plus busybox `dd if=/dev/zero of=/dev/null bs=128M` in a loop.
    #[default]
    Grinder,
    /// stress-ng's context-switch (one per CPU), virtual-memory (64 MiB) and memcpy
    /// stressors.
    Neighbour,
}

impl Load {
    /// The load's name, as on the command lines and in the report (`grinder`).
    pub fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Grinder => "grinder",
            Load::Neighbour => "neighbour",
        }
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The load the guest command line names with `guest.load=NAME` (the last one wins, as in
/// the guest's scripts); `None` if it names none.
pub fn load_of_cmdline(cmdline: &str) -> Option<&str> {
    cmdline.split_whitespace().filter_map(|word| word.strip_prefix("guest.load=")).next_back()
}

/// The `cyclictest` script: reads `guest.load=` from `/proc/cmdline`, starts the load in
/// its own session (so one signal to its process group stops all of it), runs cyclictest,
/// then stops the load. The grinder's `dd` takes the largest block size of 128M, 64M, 16M,
/// 1M that busybox `dd` accepts (and the guest can allocate), and says which.
const CYCLICTEST_WITH_LOAD: &str = r#"# The load's processes still alive, by name (busybox pgrep cannot match several exactly).
load_pids() {
    for comm in /proc/[0-9]*/comm; do
        read -r name 2>/dev/null <"$comm" || continue
        case "$name" in hackbench|dd|stress-ng*) pid=${comm#/proc/}; echo "${pid%/comm}" ;; esac
    done
}
load=idle
latmus_period=
ping_count=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        guest.load=*) load="${arg#guest.load=}" ;;
        guest.latmus=*) latmus_period="${arg#guest.latmus=}" ;;
        guest.ping=*) ping_count="${arg#guest.ping=}" ;;
    esac
done
# The oob latency test, started from Linux (guest.latmus=PERIOD_US) before the load: it
# calibrates its gravity (half a second at 1 ms) on a quiet guest, then measures for the
# duration beside the load and cyclictest. The core prints its lines on its own console,
# which is what the report reads; Linux's copy only says how it ended.
latmus_pid=
if [ -n "$latmus_period" ]; then
    echo "guest: companion latmus -p $latmus_period -T $GUEST_DURATION"
    companion latmus -p "$latmus_period" -T "$GUEST_DURATION" >/tmp/latmus.out 2>&1 &
    latmus_pid=$!
fi
load_pid=
case "$load" in
    idle) ;;
    grinder)
        bs=
        for size in 128M 64M 16M 1M; do
            if dd if=/dev/zero of=/dev/null bs=$size count=1 2>/dev/null; then bs=$size; break; fi
        done
        if [ -z "$bs" ]; then echo "guest: dd accepts none of 128M 64M 16M 1M; grinder without dd"; fi
        echo "guest: grinder: while :; do hackbench -g 4 -l 10; done & while :; do dd if=/dev/zero of=/dev/null bs=${bs:-none} count=8; done &"
        setsid sh -c "while :; do hackbench -g 4 -l 10 >/dev/null || sleep 1; done &
            if [ -n '$bs' ]; then while :; do dd if=/dev/zero of=/dev/null bs=$bs count=8 2>/dev/null; done & fi
            wait" </dev/null &
        load_pid=$!
        ;;
    neighbour)
        echo "guest: neighbour: stress-ng --switch 0 --vm 1 --vm-bytes 64M --memcpy 1 --timeout $((GUEST_DURATION + 30))s --quiet"
        setsid stress-ng --switch 0 --vm 1 --vm-bytes 64M --memcpy 1 --timeout "$((GUEST_DURATION + 30))s" --quiet </dev/null &
        load_pid=$!
        ;;
    *) echo "guest: unknown guest.load '$load' (known: idle, grinder, neighbour); running idle"; load=idle ;;
esac
echo "guest: load $load started"
if [ -n "$load_pid$latmus_pid" ]; then sleep 1; fi
echo "guest: cyclictest -m -S -p 90 -i 1000 -h 1000 -D ${GUEST_DURATION}s -q -v --json=/tmp/cyclictest.json"
status=0
cyclictest -m -S -p 90 -i 1000 -h 1000 -D "${GUEST_DURATION}s" -q -v --json=/tmp/cyclictest.json >/tmp/cyclictest.out || status=$?
# -v wrote every sample as `thread:cycle:latency`: each thread's worst per second (1000 cycles
# of 1 ms) becomes a `CTD|thread|second|max_us` line; everything else is printed as it was.
awk -F: 'NF == 3 && $1 ~ /^ *[0-9]+$/ && $2 ~ /^ *[0-9]+$/ && $3 ~ /^ *-?[0-9]+$/ {
        t = $1 + 0; s = int(($2 + 0) / 1000); v = $3 + 0; k = t " " s
        if (!(k in m) || v > m[k]) m[k] = v
        if (t > nt) nt = t
        if (s > ns) ns = s
        next
    }
    { print }
    END { for (t = 0; t <= nt; t++) for (s = 0; s <= ns; s++) if ((t " " s) in m) printf "CTD|%d|%d|%d\n", t, s, m[t " " s] }' /tmp/cyclictest.out
if [ -n "$latmus_pid" ]; then
    latmus_status=0
    wait "$latmus_pid" || latmus_status=$?
    echo "guest: companion latmus exited with status $latmus_status after $(grep -c '^RTD|' /tmp/latmus.out) RTD| lines"
    grep -e '^ERR' -e '^companion' /tmp/latmus.out | sed 's/^/guest: latmus: /' || true
fi
# The channel's round trip (guest.ping=COUNT), Linux -> the core's oob echo thread -> Linux,
# under the same load: the figures are Linux's, the core counts what its echo thread took.
if [ -n "$ping_count" ]; then
    companion ping -n "$ping_count" >/tmp/ping 2>&1 || echo "guest: companion ping failed"
    while read -r line; do
        echo "guest: $line"
    done </tmp/ping
fi
# cyclictest's own JSON, between markers, for the report folder (cyclictest.json).
if [ -s /tmp/cyclictest.json ]; then
    echo "guest: cyclictest json begin"
    cat /tmp/cyclictest.json
    echo
    echo "guest: cyclictest json end"
fi
if [ -n "$load_pid" ]; then
    echo "guest: load $load: $(load_pids | wc -w) processes running at the end"
    # stress-ng stops its stressors itself on SIGINT; the grinder's shell loops need the group.
    if [ "$load" = neighbour ]; then kill -INT "$load_pid" 2>/dev/null || true
    else kill -TERM "-$load_pid" 2>/dev/null || kill -TERM "$load_pid" 2>/dev/null || true; fi
    wait "$load_pid" 2>/dev/null || true
    sleep 1
    left=$(load_pids)
    if [ -n "$left" ]; then
        kill -KILL $left 2>/dev/null || true
        echo "guest: $(echo $left | wc -w) load processes needed SIGKILL"
    fi
fi
echo "guest: load stopped"
exit $status
"#;

/// The `soak` script: cycles the loads (idle, grinder, neighbour), each for `guest.segment=`
/// seconds (default 10) until the duration is over, setting an RTC alarm (the passed-through
/// PL031, SPI 2) at each segment's start; then prints `/proc/interrupts` and, per GIC
/// interrupt, `guest: interrupts INTID N: COUNT` (summed over the CPUs) for the harness to
/// compare with what the core forwarded.
const SOAK: &str = r#"segment=10
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        guest.segment=*) segment="${arg#guest.segment=}" ;;
    esac
done
load_pids() {
    for comm in /proc/[0-9]*/comm; do
        read -r name 2>/dev/null <"$comm" || continue
        case "$name" in hackbench|dd|stress-ng*) pid=${comm#/proc/}; echo "${pid%/comm}" ;; esac
    done
}
elapsed=0
n=0
while [ "$elapsed" -lt "$GUEST_DURATION" ]; do
    case $((n % 3)) in
        0) load=idle ;;
        1) load=grinder ;;
        *) load=neighbour ;;
    esac
    echo "guest: soak: segment $n: load $load for ${segment}s"
    echo 0 > /sys/class/rtc/rtc0/wakealarm 2>/dev/null || true
    echo +1 > /sys/class/rtc/rtc0/wakealarm 2>/dev/null || echo "guest: soak: cannot set the RTC alarm"
    pid=
    case "$load" in
        grinder)
            setsid sh -c "while :; do hackbench -g 4 -l 10 >/dev/null || sleep 1; done &
                while :; do dd if=/dev/zero of=/dev/null bs=1M count=8 2>/dev/null; done &
                wait" </dev/null &
            pid=$! ;;
        neighbour)
            setsid stress-ng --switch 0 --vm 1 --vm-bytes 64M --memcpy 1 --timeout "$((segment + 30))s" --quiet </dev/null &
            pid=$! ;;
    esac
    sleep "$segment"
    if [ -n "$pid" ]; then
        if [ "$load" = neighbour ]; then kill -INT "$pid" 2>/dev/null || true
        else kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
        left=$(load_pids)
        if [ -n "$left" ]; then kill -KILL $left 2>/dev/null || true; fi
    fi
    elapsed=$((elapsed + segment))
    n=$((n + 1))
done
sleep 2
cat /proc/interrupts
awk '$1 ~ /^[0-9]+:$/ { s = 0; i = 2; while (i <= NF && $i ~ /^[0-9]+$/) { s += $i; i++ }
    if ($i ~ /^GIC/ && $(i + 1) ~ /^[0-9]+$/) print "guest: interrupts INTID " $(i + 1) ": " s }' /proc/interrupts
echo "guest: soak: $n segments done"
"#;

/// The round trips `companion ping` makes over the channel after cyclictest when the guest's
/// command line asks ([`ping_arg`]): the main job's and the benchmark's.
pub const PING_ROUND_TRIPS: u32 = 200;

/// The guest's command-line word asking the `cyclictest` script for [`PING_ROUND_TRIPS`].
pub fn ping_arg() -> String {
    format!("guest.ping={PING_ROUND_TRIPS}")
}

/// Whether script `name` starts the core's latency test itself (`companion latmus`) when the
/// guest's command line has `guest.latmus=PERIOD_US`: the main job's `cyclictest`.
pub fn starts_latency_test(name: &str) -> bool {
    name == "cyclictest"
}

/// Whether script `name` runs the latency test itself with its own options (`channel`,
/// `channel-flood`): the core must not start one from its arguments beside it (the control
/// port refuses a second test while one runs).
pub fn runs_own_latency_test(name: &str) -> bool {
    name == "channel" || name == FLOOD_SCRIPT || name == HOSTILE_CONTROL_SCRIPT
}

/// The body of script `name`, if it exists.
pub fn script(name: &str) -> Option<&'static str> {
    SCRIPTS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map(|(_, _, body)| *body)
}

/// The names of all scripts, comma separated, for messages.
pub fn script_names() -> String {
    SCRIPTS
        .iter()
        .map(|(name, _, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A script file's full text (`#!/bin/sh`, stop on errors, then `body`).
pub fn script_file(body: &str) -> String {
    format!("#!/bin/sh\nset -e\n{body}")
}

/// The initramfs's `/init`: mounts the pseudo file systems, installs
/// busybox's applets, prints `uname -a`, runs the script the command line
/// selects, prints [`DONE_MARKER`] and powers off.
pub fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
# PID 1 of the companion-core test guest (generated by cargo xtask).
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=vt100
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run

script={DEFAULT_SCRIPT}
duration={DEFAULT_DURATION}
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        guest.script=*) script="${{arg#guest.script=}}" ;;
        guest.duration=*) duration="${{arg#guest.duration=}}" ;;
    esac
done
case "$duration" in
    ''|*[!0-9]*) echo "guest: bad guest.duration '$duration', using {DEFAULT_DURATION}"; duration={DEFAULT_DURATION} ;;
esac

{modules}
echo "guest: uname: $(uname -a)"
if [ -x "/{SCRIPT_DIR}/$script" ]; then
    echo "guest: running $script (duration ${{duration}}s)"
    GUEST_DURATION="$duration" "/{SCRIPT_DIR}/$script"
    status=$?
else
    echo "guest: no script '$script'; have: $(ls /{SCRIPT_DIR} | tr '\n' ' ')"
    status=127
fi
echo "guest: $script exited with status $status"
echo "{DONE_MARKER}"
sync
poweroff -f
# Only reached if poweroff failed: ask the kernel directly.
echo o > /proc/sysrq-trigger
sleep 5
"#,
        modules = super::modules::load_script()
    )
}

/// The kernel command line booting the initramfs on the `virt` machine's
/// PL011 console and running `script` for `duration` seconds. `panic=-1`
/// makes a kernel panic reboot at once, which QEMU's `-no-reboot` turns into
/// an exit.
pub fn kernel_cmdline(script: &str, duration: u64) -> String {
    format!("console=ttyAMA0 panic=-1 guest.script={script} guest.duration={duration}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_mounts_runs_and_powers_off() {
        let init = init_script();
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        for needed in [
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev",
            "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
            "guest.script=*) script=\"${arg#guest.script=}\" ;;",
            "GUEST_DURATION=\"$duration\" \"/guest/$script\"",
            "echo \"guest: done\"\nsync\npoweroff -f\n",
        ] {
            assert!(init.contains(needed), "/init lacks {needed:?}:\n{init}");
        }
        // Mounting happens before anything reads /proc/cmdline.
        assert!(init.find("mount -t proc").unwrap() < init.find("/proc/cmdline").unwrap());
    }

    #[test]
    fn scripts_are_unique_and_findable() {
        let mut names: Vec<&str> = SCRIPTS.iter().map(|(name, _, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCRIPTS.len());
        assert!(script(DEFAULT_SCRIPT).is_some());
        assert!(
            script("cyclictest")
                .unwrap()
                .contains("cyclictest -m -S -p 90 -i 1000 -h 1000 -D \"${GUEST_DURATION}s\" -q")
        );
        assert!(script("nope").is_none());
        assert!(script_names().starts_with("uname, cyclictest"));
        // Names must survive the command line and the shell unquoted.
        for name in names {
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        }
    }

    #[test]
    fn pid_script_sends_the_setpoints_the_case_expects() {
        let body = script(PID_SCRIPT).unwrap();
        let pairs: Vec<String> = PID_SETPOINTS.iter().map(|(sent, printed)| format!("{sent}:{printed}")).collect();
        assert!(body.contains(&format!("for pair in {}; do", pairs.join(" "))), "{body}");
        assert!(body.contains("timeout 15 companion recv example.telemetry") && body.contains("companion send example.setpoint"));
    }

    #[test]
    fn cyclictest_runs_next_to_the_chosen_load_and_stops_it() {
        let body = script("cyclictest").unwrap();
        let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{body}"));
        for needed in [
            "guest.load=*) load=\"${arg#guest.load=}\" ;;",
            "hackbench -g 4 -l 10 >/dev/null || sleep 1",
            "for size in 128M 64M 16M 1M; do",
            "dd if=/dev/zero of=/dev/null bs=$bs count=8",
            "setsid stress-ng --switch 0 --vm 1 --vm-bytes 64M --memcpy 1",
            "kill -TERM \"-$load_pid\"",
            "kill -INT \"$load_pid\"",
            "kill -KILL $left",
            "exit $status",
        ] {
            at(needed);
        }
        // The load starts before cyclictest and stops after it; the messages bracket it.
        let started = at("echo \"guest: load $load started\"");
        let cyclictest = at("cyclictest -m -S -p 90 -i 1000 -h 1000 -D \"${GUEST_DURATION}s\" -q -v --json=/tmp/cyclictest.json >/tmp/cyclictest.out || status=$?");
        let stopped = at("echo \"guest: load stopped\"");
        assert!(at("load=idle") < started && started < cyclictest && cyclictest < stopped);
        assert!(at("kill -TERM") > cyclictest);
        // The latency test starts from Linux before the load, ends before it stops, and its
        // exit is reported.
        let latmus = at("companion latmus -p \"$latmus_period\" -T \"$GUEST_DURATION\" >/tmp/latmus.out 2>&1 &");
        let waited = at("wait \"$latmus_pid\" || latmus_status=$?");
        assert!(at("guest.latmus=*) latmus_period=") < latmus && latmus < started && cyclictest < waited && waited < stopped);
        at("echo \"guest: companion latmus exited with status $latmus_status after");
        // The round trips follow, under the load still running.
        let ping = at("companion ping -n \"$ping_count\" >/tmp/ping 2>&1");
        assert!(waited < ping && ping < stopped && at("guest.ping=*) ping_count=") < ping);
        assert_eq!(ping_arg(), "guest.ping=200");
        assert!(starts_latency_test("cyclictest") && !starts_latency_test("crash") && !starts_latency_test("shell"));
        assert!(runs_own_latency_test("channel") && runs_own_latency_test(FLOOD_SCRIPT) && !runs_own_latency_test("cyclictest"));
        assert!(script(FLOOD_SCRIPT).unwrap().matches("companion latmus -T").count() == 2);
        // Every load the command line can name has its branch in the script.
        for load in [Load::Grinder, Load::Neighbour] {
            at(&format!("\n    {load})\n"));
        }
        at("\n    idle) ;;\n");
    }

    #[test]
    fn loads_by_name() {
        assert_eq!(Load::default(), Load::Grinder);
        for load in [Load::Idle, Load::Grinder, Load::Neighbour] {
            assert_eq!(<Load as clap::ValueEnum>::from_str(load.name(), false), Ok(load));
            assert_eq!(load.to_string(), load.name());
            let value = <Load as clap::ValueEnum>::to_possible_value(&load).unwrap();
            assert_eq!(value.get_name(), load.name());
        }
        assert!(<Load as clap::ValueEnum>::from_str("stress", false).is_err());
        assert_eq!(load_of_cmdline("console=ttyAMA0 guest.load=idle guest.load=neighbour"), Some("neighbour"));
        assert_eq!(load_of_cmdline("console=ttyAMA0 guest.script=uname"), None);
    }

    #[test]
    fn command_line_selects_script() {
        assert_eq!(
            kernel_cmdline("cyclictest", 5),
            "console=ttyAMA0 panic=-1 guest.script=cyclictest guest.duration=5"
        );
        assert!(script_file("uname -a\n").starts_with("#!/bin/sh\nset -e\n"));
    }
}
