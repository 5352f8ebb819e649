//! Instants as UNIX time: whole seconds since 1970-01-01T00:00:00Z, leap
//! seconds not counted.
//!
//! This is the JWT NumericDate (RFC 7519, section 2) restricted to whole,
//! non-negative seconds, and what every Tether format stores as a big-endian
//! `u64` (`docs/formats.md`). A [`UnixTime`] is an instant; a span of time is
//! a [`std::time::Duration`]. Keeping them apart in the types means a
//! duration cannot be passed where an instant is expected.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant in UNIX seconds (RFC 7519, section 2, "NumericDate": seconds
/// since 1970-01-01T00:00:00Z UTC ignoring leap seconds), whole and not
/// before 1970.
///
/// Serializes as the bare number (`#[serde(transparent)]`), so JSON bodies
/// and JWT claims read exactly as they did with a `u64`; binary formats
/// encode [`secs`](Self::secs). [`Display`](fmt::Display) writes RFC 3339 in
/// UTC (`2026-11-29T22:10:00Z`).
///
/// Arithmetic with a [`Duration`] counts whole seconds (sub-second parts are
/// dropped) and saturates at 0 and `u64::MAX` seconds; `+` and `-` saturate
/// too, so a window widened by a leeway never wraps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// The instant `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_secs(secs: u64) -> UnixTime {
        UnixTime(secs)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// The wall clock, truncated to the second ([`EPOCH`](Self::EPOCH) if
    /// the clock is set before 1970).
    pub fn now() -> UnixTime {
        UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// `self + d` (whole seconds of `d`), or `None` past `u64::MAX` seconds.
    #[must_use]
    pub fn checked_add(self, d: Duration) -> Option<UnixTime> {
        self.0.checked_add(d.as_secs()).map(UnixTime)
    }

    /// `self - d` (whole seconds of `d`), or `None` before 1970.
    #[must_use]
    pub fn checked_sub(self, d: Duration) -> Option<UnixTime> {
        self.0.checked_sub(d.as_secs()).map(UnixTime)
    }

    /// `self + d` (whole seconds of `d`), at most `u64::MAX` seconds.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> UnixTime {
        UnixTime(self.0.saturating_add(d.as_secs()))
    }

    /// `self - d` (whole seconds of `d`), at least [`EPOCH`](Self::EPOCH).
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> UnixTime {
        UnixTime(self.0.saturating_sub(d.as_secs()))
    }

    /// How long after `earlier` this is; zero if it is not later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: UnixTime) -> Duration {
        Duration::from_secs(self.0.saturating_sub(earlier.0))
    }
}

/// Saturating: see [`UnixTime::saturating_add`].
impl Add<Duration> for UnixTime {
    type Output = UnixTime;
    fn add(self, d: Duration) -> UnixTime {
        self.saturating_add(d)
    }
}

/// Saturating: see [`UnixTime::saturating_sub`].
impl Sub<Duration> for UnixTime {
    type Output = UnixTime;
    fn sub(self, d: Duration) -> UnixTime {
        self.saturating_sub(d)
    }
}

/// Saturating: see [`UnixTime::saturating_add`].
impl AddAssign<Duration> for UnixTime {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

/// Saturating: see [`UnixTime::saturating_sub`].
impl SubAssign<Duration> for UnixTime {
    fn sub_assign(&mut self, d: Duration) {
        *self = self.saturating_sub(d);
    }
}

const SECS_PER_DAY: u64 = 86_400;

/// The proleptic Gregorian date of `days` since 1970-01-01, as
/// (year, month 1-12, day 1-31). Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>), for days >= 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so a leap day ends each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 (section 5.6) in UTC, `YYYY-MM-DDTHH:MM:SSZ`. RFC 3339 has
/// four-digit years: past 9999-12-31T23:59:59Z the number of seconds is
/// written instead, with its unit.
impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0 / SECS_PER_DAY);
        if year > 9999 {
            return write!(f, "{} (UNIX seconds, beyond the calendar)", self.0);
        }
        let s = self.0 % SECS_PER_DAY;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (1_798_570_392, "2026-12-29T18:53:12Z"),
            (1_795_990_200, "2026-11-29T22:10:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (secs, text) in cases {
            assert_eq!(UnixTime::from_secs(secs).to_string(), text, "{secs}");
        }
        assert!(
            UnixTime::from_secs(253_402_300_800)
                .to_string()
                .contains("beyond the calendar")
        );
        assert!(
            UnixTime::from_secs(u64::MAX)
                .to_string()
                .contains("beyond the calendar")
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let t = UnixTime::from_secs(100);
        let d = Duration::from_secs(30);
        assert_eq!(t + d, UnixTime::from_secs(130));
        assert_eq!(t - d, UnixTime::from_secs(70));
        assert_eq!(t - Duration::from_secs(101), UnixTime::EPOCH);
        assert_eq!(
            UnixTime::from_secs(u64::MAX) + d,
            UnixTime::from_secs(u64::MAX)
        );
        assert_eq!(UnixTime::from_secs(u64::MAX).checked_add(d), None);
        assert_eq!(t.checked_sub(Duration::from_secs(101)), None);
        assert_eq!(
            t.checked_add(Duration::from_millis(1_999)),
            Some(UnixTime::from_secs(101))
        );
        assert_eq!(UnixTime::from_secs(130).saturating_duration_since(t), d);
        assert_eq!(
            t.saturating_duration_since(UnixTime::from_secs(130)),
            Duration::ZERO
        );
    }

    #[test]
    fn serializes_as_the_bare_number() {
        let t = UnixTime::from_secs(1_700_000_000);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000");
        assert_eq!(serde_json::from_str::<UnixTime>("1700000000").unwrap(), t);
        assert!(serde_json::from_str::<UnixTime>("-1").is_err());
    }
}
