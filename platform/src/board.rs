//! The supported boards as data: the defaults used before the device tree is read and
//! whenever a node is missing from it.

use crate::discovery::{GicInfo, GicVersion, MemoryRange, TimerInfo, UartInfo};
use crate::guest_tree::EmulatedVirtio;
use crate::uart::UartKind;

/// A board the core supports, described by its fixed memory map.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// Short name used by `cargo xtask build --board`.
    pub name: &'static str,
    /// RAM assumed when the device tree has no usable `memory` node.
    pub default_memory: MemoryRange,
    /// The console UART, also used for the earliest messages before the tree is parsed.
    pub console: UartInfo,
    /// The interrupt controller when the tree has none.
    pub gic: GicInfo,
    /// Generic timer interrupts (and frequency if CNTFRQ_EL0 is unset).
    pub timer: TimerInfo,
    /// `compatible` strings of the devices the in-band guest may drive itself (passed
    /// through at IPA = PA): only blocks that never master the bus. Everything else the
    /// tree describes is withheld (see [`crate::passthrough`]).
    pub passthrough: &'static [&'static str],
    /// Where the core puts the guest's emulated channel device (a virtio-mmio console, see
    /// [`EmulatedVirtio`]): a page and an SPI no real device of the board uses. `None`: the
    /// guest gets no channel.
    pub channel: Option<EmulatedVirtio>,
}

/// Arm generic-timer PPIs as most boards wire them: INTIDs 26 (EL2 physical), 27 (virtual),
/// 29 (secure physical), 30 (non-secure physical).
const STANDARD_TIMER_PPIS: TimerInfo = TimerInfo {
    frequency_hz: None,
    secure_phys_intid: 29,
    phys_intid: 30,
    virt_intid: 27,
    hyp_phys_intid: 26,
};

/// QEMU's `virt` machine (GICv3 or GICv2, PL011 at 0x0900_0000).
pub const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    default_memory: MemoryRange::new(0x4000_0000, 128 << 20),
    console: UartInfo { kind: UartKind::Pl011, base: 0x0900_0000, size: 0x1000 },
    gic: GicInfo {
        version: GicVersion::V3,
        distributor: MemoryRange::new(0x0800_0000, 0x1_0000),
        redistributor: Some(MemoryRange::new(0x080a_0000, 0xf6_0000)),
        cpu_interface: None,
        hyp_interface: None,
        virtual_cpu_interface: None,
        maintenance_intid: Some(25),
    },
    timer: STANDARD_TIMER_PPIS,
    // The RTC (its alarm is the Linux guest's test interrupt) and the GPIO block behind
    // the `gpio-keys` power button. Not fw-cfg, virtio-mmio or PCIe: all bus masters.
    passthrough: &["arm,pl031", "arm,pl061"],
    // A hole of the virt memory map (between the virtio-mmio slots at 0x0a00_0000 and the
    // platform bus at 0x0c00_0000) and an SPI above every one the machine wires.
    channel: Some(EmulatedVirtio { base: 0x0b00_0000, spi: 200 }),
};

/// Raspberry Pi 4 Model B (BCM2711: GIC-400, PL011 UART0 at 0xfe20_1000, 54 MHz timer).
pub const RPI4: Board = Board {
    name: "rpi4",
    default_memory: MemoryRange::new(0, 0x3b40_0000),
    console: UartInfo { kind: UartKind::Pl011, base: 0xfe20_1000, size: 0x200 },
    gic: GicInfo {
        version: GicVersion::V2,
        distributor: MemoryRange::new(0xff84_1000, 0x1000),
        redistributor: None,
        cpu_interface: Some(MemoryRange::new(0xff84_2000, 0x2000)),
        hyp_interface: Some(MemoryRange::new(0xff84_4000, 0x2000)),
        virtual_cpu_interface: Some(MemoryRange::new(0xff84_6000, 0x2000)),
        maintenance_intid: Some(25),
    },
    timer: TimerInfo { frequency_hz: Some(54_000_000), ..STANDARD_TIMER_PPIS },
    // GPIO, I2C, PWM and the random number generator: register-only blocks.
    passthrough: &["brcm,bcm2711-gpio", "brcm,bcm2835-gpio", "brcm,bcm2835-i2c", "brcm,bcm2835-pwm", "brcm,bcm2711-rng200"],
    channel: None,
};

/// NXP i.MX 8M Plus EVK (GICv3, console on UART2 at 0x3089_0000, 8 MHz timer).
pub const IMX8: Board = Board {
    name: "imx8",
    default_memory: MemoryRange::new(0x4000_0000, 0x8000_0000),
    console: UartInfo { kind: UartKind::Imx, base: 0x3089_0000, size: 0x1_0000 },
    gic: GicInfo {
        version: GicVersion::V3,
        distributor: MemoryRange::new(0x3880_0000, 0x1_0000),
        redistributor: Some(MemoryRange::new(0x3888_0000, 0xc_0000)),
        cpu_interface: None,
        hyp_interface: None,
        virtual_cpu_interface: None,
        maintenance_intid: Some(25),
    },
    timer: TimerInfo { frequency_hz: Some(8_000_000), ..STANDARD_TIMER_PPIS },
    // GPIO, I2C and PWM: register-only blocks.
    passthrough: &["fsl,imx8mp-gpio", "fsl,imx35-gpio", "fsl,imx8mp-i2c", "fsl,imx21-i2c", "fsl,imx8mp-pwm", "fsl,imx27-pwm"],
    channel: None,
};

/// Every supported board, for look-up by name.
pub const ALL: [&Board; 3] = [&QEMU_VIRT, &RPI4, &IMX8];

/// Finds a board by its `--board` name.
pub fn by_name(name: &str) -> Option<&'static Board> {
    ALL.into_iter().find(|b| b.name == name)
}
