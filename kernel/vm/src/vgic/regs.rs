//! Register offsets and field layouts of the emulated GICv3 distributor and redistributors
//! (Arm IHI 0069, chapter 12), as the guest sees them.

/// Size of the distributor frame (GICD): 64 KiB.
pub const DIST_FRAME_SIZE: u64 = 0x1_0000;
/// Size of one redistributor frame (RD_base or SGI_base): 64 KiB.
pub const REDIST_FRAME_SIZE: u64 = 0x1_0000;
/// Stride between two vCPUs' redistributors: RD_base + SGI_base, 128 KiB.
pub const REDIST_STRIDE: u64 = 2 * REDIST_FRAME_SIZE;

/// Number of private interrupts per vCPU: SGIs 0-15 and PPIs 16-31.
pub const NR_PRIVATE: usize = 32;
/// Number of SGIs (INTIDs 0-15).
pub const NR_SGIS: u32 = 16;
/// The first SPI INTID.
pub const FIRST_SPI: u32 = 32;
/// Most SPIs a [`super::Vgic`] models: INTIDs 32-1019.
pub const MAX_SPIS: u32 = 988;
/// INTIDs covered by one 32-bit register of a one-bit-per-INTID register array.
pub const INTIDS_PER_BANK: u32 = 32;

// ----- Distributor (offsets from GICD base) -----

/// GICD_CTLR.
pub const GICD_CTLR: u64 = 0x0000;
/// GICD_TYPER.
pub const GICD_TYPER: u64 = 0x0004;
/// GICD_IIDR.
pub const GICD_IIDR: u64 = 0x0008;
/// GICD_TYPER2.
pub const GICD_TYPER2: u64 = 0x000c;
/// GICD_STATUSR.
pub const GICD_STATUSR: u64 = 0x0010;
/// `GICD_IGROUPR<n>`.
pub const GICD_IGROUPR: u64 = 0x0080;
/// `GICD_ISENABLER<n>`.
pub const GICD_ISENABLER: u64 = 0x0100;
/// `GICD_ICENABLER<n>`.
pub const GICD_ICENABLER: u64 = 0x0180;
/// `GICD_ISPENDR<n>`.
pub const GICD_ISPENDR: u64 = 0x0200;
/// `GICD_ICPENDR<n>`.
pub const GICD_ICPENDR: u64 = 0x0280;
/// `GICD_ISACTIVER<n>`.
pub const GICD_ISACTIVER: u64 = 0x0300;
/// `GICD_ICACTIVER<n>`.
pub const GICD_ICACTIVER: u64 = 0x0380;
/// `GICD_IPRIORITYR<n>`.
pub const GICD_IPRIORITYR: u64 = 0x0400;
/// `GICD_ITARGETSR<n>` (RES0 with affinity routing).
pub const GICD_ITARGETSR: u64 = 0x0800;
/// `GICD_ICFGR<n>`.
pub const GICD_ICFGR: u64 = 0x0c00;
/// `GICD_IGRPMODR<n>`.
pub const GICD_IGRPMODR: u64 = 0x0d00;
/// `GICD_NSACR<n>`.
pub const GICD_NSACR: u64 = 0x0e00;
/// GICD_SGIR (RES0 with affinity routing).
pub const GICD_SGIR: u64 = 0x0f00;
/// `GICD_CPENDSGIR<n>` (RES0 with affinity routing).
pub const GICD_CPENDSGIR: u64 = 0x0f10;
/// `GICD_SPENDSGIR<n>` (RES0 with affinity routing).
pub const GICD_SPENDSGIR: u64 = 0x0f20;
/// `GICD_INMIR<n>` (RES0 without NMI support).
pub const GICD_INMIR: u64 = 0x0f80;
/// `GICD_IROUTER<n>` (64-bit, n = INTID, for SPIs only).
pub const GICD_IROUTER: u64 = 0x6000;
/// The first ID register (PIDR4); the ID block runs to 0xfffc (CIDR3).
pub const ID_REGS: u64 = 0xffd0;
/// GICD_PIDR2 / GICR_PIDR2.
pub const PIDR2: u64 = 0xffe8;

/// Size of each one-bit-per-INTID register array (32 registers).
pub const BIT_ARRAY_SIZE: u64 = 0x80;
/// Size of the GICD_IPRIORITYR array (one byte per INTID, 1020 INTIDs).
pub const PRIORITY_ARRAY_SIZE: u64 = 0x3fc;
/// Size of the GICD_ICFGR array (two bits per INTID).
pub const CONFIG_ARRAY_SIZE: u64 = 0x100;
/// Size of the GICD_NSACR array (two bits per INTID).
pub const NSACR_ARRAY_SIZE: u64 = 0x100;
/// Size of the GICD_CPENDSGIR + GICD_SPENDSGIR arrays.
pub const SGI_PENDING_ARRAYS_SIZE: u64 = 0x20;
/// Size of the GICD_INMIR array.
pub const INMIR_ARRAY_SIZE: u64 = 0x80;
/// Size of the GICD_IROUTER array (8 bytes for each of 1020 INTIDs).
pub const ROUTER_ARRAY_SIZE: u64 = 8 * 1020;
/// Size of the ID register block.
pub const ID_REGS_SIZE: u64 = 0x30;

/// GICD_CTLR.EnableGrp0 (DS = 1 layout): RAZ/WI here, there is no Group 0.
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// GICD_CTLR.EnableGrp1 (DS = 1 layout).
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_CTLR.ARE: affinity routing, RAO/WI.
pub const CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR.DS: single security state, RAO/WI.
pub const CTLR_DS: u32 = 1 << 6;
/// GICD_CTLR.RWP / GICR_CTLR.RWP: register write pending, always 0 here.
pub const CTLR_RWP: u32 = 1 << 31;

/// GICD_TYPER.CPUNumber shift (bits `[7:5]`).
pub const TYPER_CPU_NUMBER_SHIFT: u32 = 5;
/// GICD_TYPER.IDbits shift (bits `[23:19]`).
pub const TYPER_ID_BITS_SHIFT: u32 = 19;
/// GICD_TYPER.IDbits value: 10 INTID bits (field holds bits - 1).
pub const TYPER_ID_BITS: u32 = 9;
/// GICD_TYPER.A3V: Aff3 is supported.
pub const TYPER_A3V: u32 = 1 << 24;
/// GICD_TYPER.RSS: SGI range selector supported (targets with Aff0 up to 255).
pub const TYPER_RSS: u32 = 1 << 26;
/// GICD_TYPER.ITLinesNumber mask (bits `[4:0]`).
pub const TYPER_IT_LINES_MASK: u32 = 0x1f;

/// GICD_IIDR / GICR_IIDR: Implementer Arm (JEP106 0x43b), product 0, variant 0, revision 0.
pub const IIDR_VALUE: u32 = 0x0000_043b;

/// The writable bits of GICD_IROUTER: Aff3 `[39:32]`, IRM `[31]`, Aff2..Aff0 `[23:0]`.
pub const IROUTER_MASK: u64 = 0x0000_00ff_80ff_ffff;
/// GICD_IROUTER.Interrupt_Routing_Mode: route to any participating vCPU.
pub const IROUTER_IRM: u64 = 1 << 31;

// ----- Redistributor RD_base (offsets from the vCPU's RD_base) -----

/// GICR_CTLR.
pub const GICR_CTLR: u64 = 0x0000;
/// GICR_IIDR.
pub const GICR_IIDR: u64 = 0x0004;
/// GICR_TYPER (64-bit).
pub const GICR_TYPER: u64 = 0x0008;
/// GICR_STATUSR.
pub const GICR_STATUSR: u64 = 0x0010;
/// GICR_WAKER.
pub const GICR_WAKER: u64 = 0x0014;
/// GICR_PROPBASER (64-bit).
pub const GICR_PROPBASER: u64 = 0x0070;
/// GICR_PENDBASER (64-bit).
pub const GICR_PENDBASER: u64 = 0x0078;

/// GICR_TYPER.Last: this is the last redistributor of the region.
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER.Processor_Number shift (bits `[23:8]`).
pub const GICR_TYPER_PROCESSOR_SHIFT: u32 = 8;
/// GICR_TYPER.Affinity_Value shift (bits `[63:32]`).
pub const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;

/// GICR_WAKER.ProcessorSleep.
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// GICR_WAKER.ChildrenAsleep (read-only).
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

// ----- Redistributor SGI_base (offsets from the vCPU's SGI_base) -----

/// GICR_IGROUPR0.
pub const GICR_IGROUPR0: u64 = 0x0080;
/// GICR_ISENABLER0.
pub const GICR_ISENABLER0: u64 = 0x0100;
/// GICR_ICENABLER0.
pub const GICR_ICENABLER0: u64 = 0x0180;
/// GICR_ISPENDR0.
pub const GICR_ISPENDR0: u64 = 0x0200;
/// GICR_ICPENDR0.
pub const GICR_ICPENDR0: u64 = 0x0280;
/// GICR_ISACTIVER0.
pub const GICR_ISACTIVER0: u64 = 0x0300;
/// GICR_ICACTIVER0.
pub const GICR_ICACTIVER0: u64 = 0x0380;
/// GICR_IPRIORITYR0 (to GICR_IPRIORITYR7 at 0x041c).
pub const GICR_IPRIORITYR0: u64 = 0x0400;
/// Size of the GICR_IPRIORITYR0-7 array.
pub const GICR_PRIORITY_SIZE: u64 = 0x20;
/// GICR_ICFGR0 (SGIs, read-only edge).
pub const GICR_ICFGR0: u64 = 0x0c00;
/// GICR_ICFGR1 (PPIs).
pub const GICR_ICFGR1: u64 = 0x0c04;
/// GICR_IGRPMODR0.
pub const GICR_IGRPMODR0: u64 = 0x0d00;
/// GICR_NSACR.
pub const GICR_NSACR: u64 = 0x0e00;

/// The Int_config bit of a two-bit ICFGR field: set for edge-triggered.
pub const ICFGR_EDGE: u32 = 0b10;

/// The value of the ID registers at 0xffd0..=0xfffc, in order PIDR4, PIDR5, PIDR6, PIDR7,
/// PIDR0, PIDR1, PIDR2, PIDR3, CIDR0..CIDR3. PIDR2.ArchRev (bits `[7:4]`) is 3: GICv3;
/// JEP106 code of Arm; CIDR is the standard CoreSight/PrimeCell preamble.
pub const ID_VALUES: [u32; 12] = [
    0x04, 0x00, 0x00, 0x00, // PIDR4..PIDR7
    0x92, 0xb4, 0x3b, 0x00, // PIDR0..PIDR3
    0x0d, 0xf0, 0x05, 0xb1, // CIDR0..CIDR3
];
