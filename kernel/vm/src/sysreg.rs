//! Trapped MSR/MRS and System instructions: the register encoding (op0, op1, CRn, CRm, op2),
//! and names for the registers the hypervisor is expected to emulate.

use core::fmt;

use crate::gpr::Register;

/// The encoding of a System register or System instruction, as in `S<op0>_<op1>_C<n>_C<m>_<op2>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysRegEncoding {
    /// Op0 (0..=3): 3 for most System registers, 1 for System instructions (DC, IC, TLBI, AT).
    pub op0: u8,
    /// Op1 (0..=7).
    pub op1: u8,
    /// CRn (0..=15).
    pub crn: u8,
    /// CRm (0..=15).
    pub crm: u8,
    /// Op2 (0..=7).
    pub op2: u8,
}

impl SysRegEncoding {
    /// The encoding `S<op0>_<op1>_C<crn>_C<crm>_<op2>`.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// The well-known register with this encoding, if it is one of [`KnownSysReg::ALL`].
    pub fn known(self) -> Option<KnownSysReg> {
        KnownSysReg::from_encoding(self)
    }

    /// A Performance Monitors register an EL1/EL0 access to which `MDCR_EL2.TPM`/`TPMCR`
    /// trap: `PMCR_EL0` to `PMOVSSET_EL0` (CRn 9, CRm 12..=14, op1 3: counter enables,
    /// overflow flags, software increment, selection, event IDs, the cycle counter,
    /// `PMUSERENR_EL0`), `PMEVCNTR<n>_EL0`, `PMEVTYPER<n>_EL0` and `PMCCFILTR_EL0` (CRn 14,
    /// CRm 8..=15, op1 3), `PMINTENSET_EL1`, `PMINTENCLR_EL1` and `PMMIR_EL1` (op1 0).
    pub fn is_pmu(self) -> bool {
        match (self.op0, self.op1, self.crn, self.crm, self.op2) {
            (3, 3, 9, 12..=14, _) | (3, 3, 14, 8..=15, _) => true,
            (3, 0, 9, 14, op2) => matches!(op2, 1 | 2 | 6),
            _ => false,
        }
    }
}

impl fmt::Display for SysRegEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        } = self;
        write!(f, "S{op0}_{op1}_C{crn}_C{crm}_{op2}")
    }
}

/// A trapped MSR (write), MRS (read) or System instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysRegAccess {
    /// Which register or instruction.
    pub encoding: SysRegEncoding,
    /// The general-purpose register transferred (Rt); the zero register for `msr REG, xzr` or
    /// a discarded read.
    pub register: Register,
    /// An MRS (the guest reads the System register into `register`), rather than an MSR or a
    /// System instruction.
    pub read: bool,
}

impl SysRegAccess {
    /// The well-known register accessed, if any.
    pub fn known(&self) -> Option<KnownSysReg> {
        self.encoding.known()
    }

    /// The architectural name of the register accessed, if it is well known.
    pub fn known_name(&self) -> Option<&'static str> {
        self.known().map(KnownSysReg::name)
    }
}

/// System registers a hypervisor hosting Linux commonly traps and emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KnownSysReg {
    /// GICv3 Group 1 SGI generation (current Security state).
    IccSgi1rEl1,
    /// GICv3 Group 1 SGI generation (other Security state).
    IccAsgi1rEl1,
    /// GICv3 Group 0 SGI generation.
    IccSgi0rEl1,
    /// GICv3 System Register Enable, EL1.
    IccSreEl1,
    /// EL1 physical timer: TimerValue.
    CntpTvalEl0,
    /// EL1 physical timer: control.
    CntpCtlEl0,
    /// EL1 physical timer: CompareValue.
    CntpCvalEl0,
    /// Physical counter.
    CntpctEl0,
}

impl KnownSysReg {
    /// Every known register, for lookups and tests.
    pub const ALL: [Self; 8] = [
        Self::IccSgi1rEl1,
        Self::IccAsgi1rEl1,
        Self::IccSgi0rEl1,
        Self::IccSreEl1,
        Self::CntpTvalEl0,
        Self::CntpCtlEl0,
        Self::CntpCvalEl0,
        Self::CntpctEl0,
    ];

    /// The register's encoding (Arm ARM, chapter D24 / GICv3 architecture specification).
    pub const fn encoding(self) -> SysRegEncoding {
        match self {
            Self::IccSgi1rEl1 => SysRegEncoding::new(3, 0, 12, 11, 5),
            Self::IccAsgi1rEl1 => SysRegEncoding::new(3, 0, 12, 11, 6),
            Self::IccSgi0rEl1 => SysRegEncoding::new(3, 0, 12, 11, 7),
            Self::IccSreEl1 => SysRegEncoding::new(3, 0, 12, 12, 5),
            Self::CntpTvalEl0 => SysRegEncoding::new(3, 3, 14, 2, 0),
            Self::CntpCtlEl0 => SysRegEncoding::new(3, 3, 14, 2, 1),
            Self::CntpCvalEl0 => SysRegEncoding::new(3, 3, 14, 2, 2),
            Self::CntpctEl0 => SysRegEncoding::new(3, 3, 14, 0, 1),
        }
    }

    /// The register's architectural name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::IccSgi1rEl1 => "ICC_SGI1R_EL1",
            Self::IccAsgi1rEl1 => "ICC_ASGI1R_EL1",
            Self::IccSgi0rEl1 => "ICC_SGI0R_EL1",
            Self::IccSreEl1 => "ICC_SRE_EL1",
            Self::CntpTvalEl0 => "CNTP_TVAL_EL0",
            Self::CntpCtlEl0 => "CNTP_CTL_EL0",
            Self::CntpCvalEl0 => "CNTP_CVAL_EL0",
            Self::CntpctEl0 => "CNTPCT_EL0",
        }
    }

    /// The known register with `encoding`, if any.
    pub fn from_encoding(encoding: SysRegEncoding) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|known| known.encoding() == encoding)
    }
}

impl fmt::Display for KnownSysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_registers_round_trip_and_are_distinct() {
        for known in KnownSysReg::ALL {
            assert_eq!(known.encoding().known(), Some(known));
        }
        for (i, a) in KnownSysReg::ALL.iter().enumerate() {
            for b in &KnownSysReg::ALL[i + 1..] {
                assert_ne!(a.encoding(), b.encoding(), "{a} and {b}");
            }
        }
        assert_eq!(
            SysRegEncoding::new(3, 0, 1, 0, 0).known(),
            None,
            "SCTLR_EL1 is not listed"
        );
    }

    #[test]
    fn the_pmu_registers_and_nothing_next_to_them() {
        let pmu = [
            (3, 3, 9, 12, 0, "PMCR_EL0"),
            (3, 3, 9, 12, 1, "PMCNTENSET_EL0"),
            (3, 3, 9, 12, 2, "PMCNTENCLR_EL0"),
            (3, 3, 9, 12, 4, "PMSWINC_EL0"),
            (3, 3, 9, 12, 7, "PMCEID1_EL0"),
            (3, 3, 9, 13, 0, "PMCCNTR_EL0"),
            (3, 3, 9, 13, 2, "PMXEVCNTR_EL0"),
            (3, 3, 9, 14, 0, "PMUSERENR_EL0"),
            (3, 3, 9, 14, 3, "PMOVSSET_EL0"),
            (3, 3, 14, 8, 0, "PMEVCNTR0_EL0"),
            (3, 3, 14, 11, 6, "PMEVCNTR30_EL0"),
            (3, 3, 14, 12, 0, "PMEVTYPER0_EL0"),
            (3, 3, 14, 15, 7, "PMCCFILTR_EL0"),
            (3, 0, 9, 14, 1, "PMINTENSET_EL1"),
            (3, 0, 9, 14, 2, "PMINTENCLR_EL1"),
            (3, 0, 9, 14, 6, "PMMIR_EL1"),
        ];
        for (op0, op1, crn, crm, op2, name) in pmu {
            assert!(SysRegEncoding::new(op0, op1, crn, crm, op2).is_pmu(), "{name}");
        }
        let not_pmu = [
            (3, 3, 14, 0, 1, "CNTPCT_EL0"),
            (3, 3, 14, 2, 1, "CNTP_CTL_EL0"),
            (3, 3, 14, 3, 1, "CNTV_CTL_EL0"),
            (3, 3, 13, 0, 2, "TPIDR_EL0"),
            (3, 0, 9, 14, 0, "unallocated next to PMINTENSET_EL1"),
            (3, 0, 9, 9, 0, "PMSCR_EL1 (statistical profiling, not trapped by TPM)"),
            (3, 0, 10, 2, 0, "MAIR_EL1"),
            (3, 4, 9, 12, 0, "op1 4 (EL2)"),
            (2, 3, 9, 12, 0, "op0 2 (debug)"),
        ];
        for (op0, op1, crn, crm, op2, name) in not_pmu {
            assert!(!SysRegEncoding::new(op0, op1, crn, crm, op2).is_pmu(), "{name}");
        }
        for known in KnownSysReg::ALL {
            assert!(!known.encoding().is_pmu(), "{known}");
        }
    }

    #[test]
    fn encodings_print_in_generic_form() {
        assert_eq!(
            KnownSysReg::IccSgi1rEl1.encoding().to_string(),
            "S3_0_C12_C11_5"
        );
        assert_eq!(KnownSysReg::CntpCtlEl0.to_string(), "CNTP_CTL_EL0");
    }
}
