//! Conversions between generic-counter ticks and nanoseconds, exact for any frequency.

/// A counter frequency with exact tick/ns conversion (128-bit intermediate, no drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterFrequency {
    hz: u64,
}

/// Nanoseconds in one second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

impl CounterFrequency {
    /// A frequency in Hz; `None` for 0, which the counter never legitimately reports.
    pub const fn new(hz: u64) -> Option<Self> {
        if hz == 0 { None } else { Some(Self { hz }) }
    }

    /// The frequency in Hz.
    pub const fn hz(&self) -> u64 {
        self.hz
    }

    /// Nanoseconds covered by `ticks`, rounded down.
    ///
    /// Exact with 64-bit arithmetic only (whole seconds, then the remainder, which is below
    /// `hz`, so `remainder * 10^9` fits for any counter below 18 GHz): a 64-bit division is
    /// one instruction, a 128-bit one a library call on the hot timer paths.
    pub const fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let seconds = ticks / self.hz;
        let remainder = ticks % self.hz;
        seconds.saturating_mul(NS_PER_SEC).saturating_add(remainder * NS_PER_SEC / self.hz)
    }

    /// Ticks needed to cover at least `ns` nanoseconds (rounded up, so a deadline is never
    /// early). Exact with 64-bit arithmetic, like [`CounterFrequency::ticks_to_ns`].
    pub const fn ns_to_ticks(&self, ns: u64) -> u64 {
        let seconds = ns / NS_PER_SEC;
        let remainder = ns % NS_PER_SEC;
        seconds.saturating_mul(self.hz).saturating_add((remainder * self.hz).div_ceil(NS_PER_SEC))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_exact_for_qemu_and_board_frequencies() {
        for hz in [62_500_000u64, 54_000_000, 8_000_000, 1_000_000_000, 19_200_000] {
            let f = CounterFrequency::new(hz).unwrap();
            assert_eq!(f.ticks_to_ns(hz), NS_PER_SEC);
            assert_eq!(f.ticks_to_ns(hz * 3600 * 24 * 365), NS_PER_SEC * 3600 * 24 * 365);
        }
    }

    #[test]
    fn deadlines_round_up_and_never_fire_early() {
        let f = CounterFrequency::new(19_200_000).unwrap();
        for ns in [1u64, 52, 53, 1000, 999_999_999] {
            assert!(f.ticks_to_ns(f.ns_to_ticks(ns)) >= ns, "{ns} ns");
            assert!(f.ticks_to_ns(f.ns_to_ticks(ns) - 1) < ns, "{ns} ns is the smallest cover");
        }
    }

    #[test]
    fn matches_the_128_bit_formula() {
        for hz in [62_500_000u64, 54_000_000, 19_200_000, 24_000_000, 1_000_000_000, 7] {
            let f = CounterFrequency::new(hz).unwrap();
            for value in [0u64, 1, 15, 16, 17, hz - 1, hz, hz + 1, 123_456_789_012, u64::MAX / 1_000_000_000, 1 << 50] {
                // Results beyond u64 saturate (centuries away for real counters).
                let clamp = |wide: u128| u64::try_from(wide).unwrap_or(u64::MAX);
                let ns = clamp(value as u128 * NS_PER_SEC as u128 / hz as u128);
                assert_eq!(f.ticks_to_ns(value), ns, "{value} ticks at {hz} Hz");
                let ticks = clamp((value as u128 * hz as u128).div_ceil(NS_PER_SEC as u128));
                assert_eq!(f.ns_to_ticks(value), ticks, "{value} ns at {hz} Hz");
            }
        }
    }

    #[test]
    fn zero_frequency_is_rejected() {
        assert!(CounterFrequency::new(0).is_none());
    }
}
