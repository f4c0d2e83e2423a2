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
    /// The oob test suite (`oob` or `oob:NAME`) had failures.
    OobSuite {
        /// Tests that passed.
        passed: usize,
        /// Tests that failed.
        failed: usize,
    },
}

/// Runs the named test. `fault` provokes an unexpected exception (a data abort at EL2)
/// and does not return; `oob` runs the oob services test suite ([`crate::oob_suite`]),
/// `oob:NAME` one test of it.
pub fn run(name: &str) -> Result<(), SelfTestError<'_>> {
    match name {
        "fault" => {
            log::info!("selftest fault: reading unmapped address {UNMAPPED_ADDRESS:#x}");
            // SAFETY: deliberately faults; the exception handler reports it and ends the run.
            let value = unsafe { (UNMAPPED_ADDRESS as *const u64).read_volatile() };
            log::error!("selftest fault: the read returned {value:#x} instead of faulting");
            Err(SelfTestError::DidNotFault)
        }
        "oob" => oob_suite(None),
        other => match other.strip_prefix("oob:") {
            Some(test) => oob_suite(Some(test)),
            None => Err(SelfTestError::Unknown(other)),
        },
    }
}

/// Runs the oob suite, or one test of it.
fn oob_suite(only: Option<&str>) -> Result<(), SelfTestError<'static>> {
    crate::oob_suite::run(only)
        .map(|_| ())
        .map_err(|summary| SelfTestError::OobSuite { passed: summary.passed, failed: summary.failed })
}
