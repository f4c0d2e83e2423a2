//! Monotonic time in nanoseconds: [`Instant`], [`Duration`] and blocking [`Timeout`]s.
//!
//! All arithmetic saturates: a deadline far in the future clamps to [`Instant::MAX`] instead of
//! wrapping into the past, and a difference of out-of-order instants is zero.

use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A point on the monotonic clock, in nanoseconds since an arbitrary origin (boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

/// A span of time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

/// When a blocking operation gives up: at an absolute instant or after a relative delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Give up at this instant.
    At(Instant),
    /// Give up this long after the operation starts.
    After(Duration),
}

impl Instant {
    /// The clock origin.
    pub const ZERO: Self = Self(0);
    /// The latest representable instant ("never").
    pub const MAX: Self = Self(u64::MAX);

    /// The instant `ns` nanoseconds after the origin.
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, clamped to [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }

    /// `self + d`, or `None` if it does not fit.
    pub const fn checked_add(self, d: Duration) -> Option<Self> {
        match self.0.checked_add(d.0) {
            Some(ns) => Some(Self(ns)),
            None => None,
        }
    }

    /// `self - d`, clamped to [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.0))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self(0);
    /// The longest representable duration.
    pub const MAX: Self = Self(u64::MAX);

    /// `ns` nanoseconds.
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// `us` microseconds (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Self(us.saturating_mul(1_000))
    }

    /// `ms` milliseconds (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }

    /// `s` seconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000_000))
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, clamped to [`Duration::MAX`].
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`, clamped to zero.
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// `self * n`, clamped to [`Duration::MAX`].
    pub const fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }
}

impl Timeout {
    /// The absolute deadline of this timeout for an operation starting at `now`.
    pub const fn deadline(self, now: Instant) -> Instant {
        match self {
            Self::At(at) => at,
            Self::After(d) => now.saturating_add(d),
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, other: Duration) -> Duration {
        self.saturating_add(other)
    }
}

impl AddAssign for Duration {
    fn add_assign(&mut self, other: Duration) {
        *self = *self + other;
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, other: Duration) -> Duration {
        self.saturating_sub(other)
    }
}

impl SubAssign for Duration {
    fn sub_assign(&mut self, other: Duration) {
        *self = *self - other;
    }
}

/// Microseconds with three decimals (`12.345`), the unit of the `ps` table; honours width and
/// alignment.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&alloc::format!("{}.{:03}", self.0 / 1_000, self.0 % 1_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Instant::MAX + Duration::from_nanos(1), Instant::MAX);
        assert_eq!(Instant::from_nanos(5) - Duration::from_nanos(9), Instant::ZERO);
        assert_eq!(Instant::from_nanos(5) - Instant::from_nanos(9), Duration::ZERO);
        assert_eq!(Instant::from_nanos(9) - Instant::from_nanos(5), Duration::from_nanos(4));
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_nanos(3) - Duration::from_nanos(4), Duration::ZERO);
        assert_eq!(Instant::MAX.checked_add(Duration::from_nanos(1)), None);
    }

    #[test]
    fn unit_constructors_scale_exactly() {
        assert_eq!(Duration::from_micros(3).as_nanos(), 3_000);
        assert_eq!(Duration::from_millis(3).as_nanos(), 3_000_000);
        assert_eq!(Duration::from_secs(3).as_nanos(), 3_000_000_000);
    }

    #[test]
    fn relative_and_absolute_timeouts_resolve_to_deadlines() {
        let now = Instant::from_nanos(1_000);
        assert_eq!(Timeout::After(Duration::from_nanos(50)).deadline(now), Instant::from_nanos(1_050));
        assert_eq!(Timeout::At(Instant::from_nanos(7)).deadline(now), Instant::from_nanos(7));
    }

    #[test]
    fn durations_display_as_microseconds() {
        assert_eq!(alloc::format!("{}", Duration::from_nanos(12_345)), "12.345");
        assert_eq!(alloc::format!("{:>8}", Duration::from_nanos(7)), "   0.007");
    }
}
