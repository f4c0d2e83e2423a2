//! On-target checks selected with `companion.test=NAME` on the command line.

/// An address no supported board maps (256 GiB, inside the 39-bit space).
const UNMAPPED_ADDRESS: usize = 0x40_0000_0000;

/// Why a requested test could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTestError<'a> {
    /// No test by that name.
    Unknown(&'a str),
    /// The unmapped read returned instead of faulting.
    DidNotFault,
}

/// Runs the named test. `fault` provokes an unexpected exception (a data abort at EL2)
/// and does not return.
pub fn run(name: &str) -> Result<(), SelfTestError<'_>> {
    match name {
        "fault" => {
            log::info!("selftest fault: reading unmapped address {UNMAPPED_ADDRESS:#x}");
            // SAFETY: deliberately faults; the exception handler reports it and ends the run.
            let value = unsafe { (UNMAPPED_ADDRESS as *const u64).read_volatile() };
            log::error!("selftest fault: the read returned {value:#x} instead of faulting");
            Err(SelfTestError::DidNotFault)
        }
        other => Err(SelfTestError::Unknown(other)),
    }
}
