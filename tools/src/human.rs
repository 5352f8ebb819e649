//! Numbers a person reads: instants as RFC 3339 in UTC with the time left or
//! passed ("2026-12-29T18:53:12Z, in 30 days"), durations with units
//! ("5 minutes"), counts with the right plural ("1 token", "2 tokens").
//!
//! Only the human output uses these; `--json` keeps UNIX seconds. Calendar
//! arithmetic and unit names come from `jiff`.

use std::time::Duration;

use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
use jiff::{Span, Timestamp};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn printer() -> SpanPrinter {
    SpanPrinter::new()
        .designator(Designator::Verbose)
        .spacing(Spacing::BetweenUnitsAndDesignators)
}

/// Splits whole seconds into days, hours, minutes and seconds (days of 24
/// hours: a duration, not a calendar span), or `None` past what a span holds.
fn span_of(secs: u64) -> Option<Span> {
    let days = i64::try_from(secs / DAY).ok()?;
    let rest = secs % DAY;
    Span::new()
        .try_days(days)
        .ok()?
        .try_hours((rest / HOUR) as i64)
        .ok()?
        .try_minutes((rest % HOUR / MINUTE) as i64)
        .ok()?
        .try_seconds((rest % MINUTE) as i64)
        .ok()
}

/// A duration with units, exact to the second: "5 minutes", "1 day 2 hours",
/// "0 seconds". Sub-second durations show milliseconds ("250 milliseconds").
#[must_use]
pub fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return plural(d.as_millis() as u64, "millisecond", "milliseconds");
    }
    seconds(d.as_secs())
}

/// Whole seconds with units: `300` is "5 minutes", `90` "1 minute 30 seconds".
#[must_use]
pub fn seconds(secs: u64) -> String {
    match span_of(secs) {
        Some(span) => printer().span_to_string(&span),
        None => plural(secs, "second", "seconds"),
    }
}

/// A distance in time cut to its two largest units, for "in 29 days 23
/// hours" and "3 hours 5 minutes ago": a person checking an expiry needs the
/// order of magnitude, not the seconds.
fn approximately(secs: u64) -> String {
    const UNITS: [u64; 4] = [DAY, HOUR, MINUTE, 1];
    let cut = UNITS
        .iter()
        .position(|u| secs >= *u)
        .map_or(0, |i| match UNITS.get(i + 1) {
            Some(next) => secs - secs % next,
            None => secs,
        });
    seconds(cut)
}

/// A UNIX time as RFC 3339 in UTC, or `None` outside the range a calendar
/// date can express.
#[must_use]
pub fn rfc3339(unix: u64) -> Option<String> {
    let secs = i64::try_from(unix).ok()?;
    Timestamp::from_second(secs).ok().map(|t| t.to_string())
}

/// An instant against `now` (both UNIX seconds): "2026-12-29T18:53:12Z, in
/// 30 days", "2026-11-29T15:00:00Z, 3 hours ago", "…, now".
#[must_use]
pub fn instant(unix: u64, now: u64) -> String {
    let Some(date) = rfc3339(unix) else {
        return format!("{unix} (UNIX seconds, beyond the calendar)");
    };
    let when = match unix.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {}", approximately(unix - now)),
        std::cmp::Ordering::Less => format!("{} ago", approximately(now - unix)),
        std::cmp::Ordering::Equal => "now".to_string(),
    };
    format!("{date}, {when}")
}

/// `n` and the noun in the right number: "1 token", "0 tokens", "2 tokens".
#[must_use]
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_carry_units() {
        assert_eq!(seconds(300), "5 minutes");
        assert_eq!(seconds(90), "1 minute 30 seconds");
        assert_eq!(seconds(1), "1 second");
        assert_eq!(seconds(0), "0 seconds");
        assert_eq!(seconds(86_400 + 7_200), "1 day 2 hours");
        assert_eq!(duration(Duration::from_millis(250)), "250 milliseconds");
        assert_eq!(duration(Duration::from_secs(15)), "15 seconds");
        // Beyond what a span holds: still a number with its unit, no panic.
        assert_eq!(seconds(u64::MAX), format!("{} seconds", u64::MAX));
    }

    #[test]
    fn instants_are_rfc3339_utc_with_the_time_left() {
        let now = 1_798_570_392; // 2026-12-29T18:53:12Z
        assert_eq!(
            instant(now + 30 * DAY + 5, now),
            "2027-01-28T18:53:17Z, in 30 days"
        );
        assert_eq!(
            instant(now - 3 * HOUR - 59, now),
            "2026-12-29T15:52:13Z, 3 hours ago"
        );
        assert_eq!(instant(now, now), "2026-12-29T18:53:12Z, now");
        assert_eq!(
            instant(now + 30 * DAY - 61, now),
            "2027-01-28T18:52:11Z, in 29 days 23 hours"
        );
        assert_eq!(
            instant(now - 4 * MINUTE - 59, now),
            "2026-12-29T18:48:13Z, 4 minutes 59 seconds ago"
        );
        assert_eq!(instant(now + 1, now), "2026-12-29T18:53:13Z, in 1 second");
        assert!(instant(u64::MAX, now).contains("beyond the calendar"));
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(plural(1, "token", "tokens"), "1 token");
        assert_eq!(plural(0, "token", "tokens"), "0 tokens");
        assert_eq!(plural(2, "token", "tokens"), "2 tokens");
    }
}
