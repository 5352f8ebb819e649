//! Expiry notices: warnings ahead of the license's end, its grace, its end.
//!
//! A license warns at configurable thresholds before its `not_after`
//! (`tetherd --expiry-warnings`, default [`DEFAULT_THRESHOLDS`]), then says
//! when it enters its vendor-signed grace and when it has ended. Each notice
//! is a WARN log line and an `expiry` event on `GET /events`
//! (`docs/api.md`, "Events"), given once per license sequence: the notices
//! given are kept in `state.json` ([`crate::state::ExpiryNotices`]), so a
//! restart does not repeat them, and an update (a higher sequence) starts
//! afresh. While the license is in grace, the log repeats a WARN every
//! [`GRACE_REMINDER`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tether_keys::{LicenseTerms, UnixTime};
use tokio_util::sync::CancellationToken;

use crate::authority::Authority;
use crate::state::rfc3339;

/// The default warning thresholds before the license ends.
pub const DEFAULT_THRESHOLDS: &str = "30d,7d,1d";
/// How often the log repeats its WARN while the license is in grace.
pub const GRACE_REMINDER: Duration = Duration::from_secs(3600);
/// How often the license's window is looked at.
pub const CHECK: Duration = Duration::from_millis(500);

/// Where a license stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Before `not_before`.
    NotYetValid,
    /// From `not_before` to before `not_after`.
    Valid,
    /// From `not_after` to before `not_after + grace`: tokens are issued
    /// with a `grace` claim.
    Grace,
    /// From the end of the grace (or `not_after`, without grace) on.
    Expired,
}

impl Window {
    /// The name in `/status` (`license.window`): `not_yet_valid`, `valid`,
    /// `grace` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::NotYetValid => "not_yet_valid",
            Window::Valid => "valid",
            Window::Grace => "grace",
            Window::Expired => "expired",
        }
    }
}

/// Where `terms` stand at `now` (the same instants as issuance:
/// [`Authority::issue`] refuses from [`Window::Expired`] on).
pub fn window(terms: &LicenseTerms, now: UnixTime) -> Window {
    if now < terms.not_before {
        Window::NotYetValid
    } else if now < terms.not_after {
        Window::Valid
    } else if now < terms.grace_until() {
        Window::Grace
    } else {
        Window::Expired
    }
}

/// An `expiry` event on `GET /events` (`docs/api.md`, "Events").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryEvent {
    /// `warning` (the license ends within `threshold_secs`), `grace` (it
    /// ended; tokens are issued in its grace) or `expired` (no more tokens).
    pub kind: String,
    /// License id (hex).
    pub license_id: String,
    /// The license's sequence.
    pub sequence: u64,
    /// The license's end (UNIX seconds).
    pub not_after: UnixTime,
    /// The grace's end (UNIX seconds; `not_after` without grace).
    pub grace_until: UnixTime,
    /// For a warning, the threshold crossed, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_secs: Option<u64>,
    /// What a person reads: the instants in UTC, marked `Z`.
    pub message: String,
}

/// Parses `--expiry-warnings`: comma-separated durations (`30d,7d,1d`), or
/// `off` for none. Returned longest first, without repeats.
///
/// # Errors
///
/// A duration that does not parse, or one of zero.
pub fn parse_thresholds(text: &str) -> anyhow::Result<Vec<Duration>> {
    let text = text.trim();
    if text == "off" || text.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let d = tether_keys::parse_duration(part)
            .with_context(|| format!("{part:?}: expected a duration such as 30d"))?;
        if d.as_secs() == 0 {
            bail!("{part:?}: a warning threshold is at least one second");
        }
        out.push(Duration::from_secs(d.as_secs()));
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.dedup();
    Ok(out)
}

fn warn_label(threshold: Duration) -> String {
    format!("warn-{}", threshold.as_secs())
}

/// The notice due at `now` for `terms`, given the notices already `given`:
/// the notices to record as given and the event, or `None`. One notice at
/// a time: a license first seen 5 days before its end gives the 7-day
/// warning only (and records the 30-day one as given).
pub fn due(
    terms: &LicenseTerms,
    now: UnixTime,
    thresholds: &[Duration],
    given: &BTreeSet<String>,
) -> Option<(Vec<String>, ExpiryEvent)> {
    let all_warnings = || thresholds.iter().map(|t| warn_label(*t));
    let event = |kind: &str, threshold: Option<Duration>, message: String| ExpiryEvent {
        kind: kind.to_string(),
        license_id: terms.id.to_string(),
        sequence: terms.sequence,
        not_after: terms.not_after,
        grace_until: terms.grace_until(),
        threshold_secs: threshold.map(|t| t.as_secs()),
        message,
    };
    let (end, grace_end) = (rfc3339(terms.not_after), rfc3339(terms.grace_until()));
    match window(terms, now) {
        Window::NotYetValid => None,
        Window::Valid => {
            let left = terms.not_after.saturating_duration_since(now);
            let crossed: Vec<Duration> =
                thresholds.iter().copied().filter(|t| left <= *t).collect();
            let tightest = *crossed.last()?;
            if given.contains(&warn_label(tightest)) {
                return None;
            }
            let grace = if terms.grace == 0 {
                "it has no grace period".to_string()
            } else {
                format!(
                    "then a grace period of {} until {grace_end}",
                    humantime::format_duration(Duration::from_secs(u64::from(terms.grace)))
                )
            };
            let message = format!(
                "expiry warning: the license expires in {}, at {end} ({grace}): ask the vendor for an update and install it with `tether license install`",
                humantime::format_duration(left)
            );
            Some((
                crossed.into_iter().map(warn_label).collect(),
                event("warning", Some(tightest), message),
            ))
        }
        Window::Grace => {
            if given.contains("grace") {
                return None;
            }
            let message = format!(
                "the license expired at {end}; in its grace period until {grace_end}: tokens are still issued, with a grace claim, and consumers that refuse grace stop now; install a renewed license"
            );
            let labels = all_warnings().chain(["grace".to_string()]).collect();
            Some((labels, event("grace", None, message)))
        }
        Window::Expired => {
            if given.contains("expired") {
                return None;
            }
            let message = if terms.grace == 0 {
                format!("the license expired at {end}: no more tokens (license_expired)")
            } else {
                format!(
                    "the license expired at {end} and its grace ended at {grace_end}: no more tokens (license_expired)"
                )
            };
            let labels = all_warnings()
                .chain(["grace".to_string(), "expired".to_string()])
                .collect();
            Some((labels, event("expired", None, message)))
        }
    }
}

/// Gives the notice due now, if any: records it in `state.json`, logs it
/// at WARN and publishes it on `/events`. Returns it.
pub fn check(auth: &Authority, thresholds: &[Duration]) -> Option<ExpiryEvent> {
    let lic = auth.license();
    let t = lic.terms();
    if auth.is_revoked() {
        return None;
    }
    let id = t.id.to_string();
    // A notice about a version no longer served is not sent to new streams.
    auth.expiry_events.send_if_modified(|latest| {
        let stale = latest
            .as_ref()
            .is_some_and(|e| e.sequence != t.sequence || e.license_id != id);
        if stale {
            *latest = None;
        }
        stale
    });
    let given = auth.store.expiry_notices(&id, t.sequence);
    let (labels, event) = due(t, auth.now(), thresholds, &given)?;
    if let Err(e) = auth.store.record_expiry_notices(&id, t.sequence, labels) {
        // Given anyway (and again at the next check): a repeated warning
        // is better than none.
        tracing::error!(error = %e, "cannot record an expiry notice");
    }
    tracing::warn!(
        event = "license_expiry",
        kind = %event.kind,
        license = %id,
        sequence = t.sequence,
        not_after = %rfc3339(t.not_after),
        grace_until = %rfc3339(t.grace_until()),
        "{}",
        event.message
    );
    auth.expiry_events.send_replace(Some(event.clone()));
    Some(event)
}

/// Checks every [`CHECK`] (and at once on a license install) until
/// `stopping` is cancelled; repeats a WARN every [`GRACE_REMINDER`] while
/// the license is in grace.
pub async fn watch(auth: Arc<Authority>, thresholds: Vec<Duration>, stopping: CancellationToken) {
    let mut reminded: Option<std::time::Instant> = None;
    let mut installs = auth.license_events.subscribe();
    loop {
        let fired = check(&auth, &thresholds);
        let lic = auth.license();
        let t = lic.terms();
        if window(t, auth.now()) == Window::Grace && !auth.is_revoked() {
            let due = fired.is_some() || reminded.is_none_or(|r| r.elapsed() >= GRACE_REMINDER);
            if due {
                if fired.is_none() {
                    tracing::warn!(
                        event = "license_grace",
                        not_after = %rfc3339(t.not_after),
                        grace_until = %rfc3339(t.grace_until()),
                        "the license expired at {}; tokens are issued in its grace period until {}, then refused: install a renewed license",
                        rfc3339(t.not_after),
                        rfc3339(t.grace_until())
                    );
                }
                reminded = Some(std::time::Instant::now());
            }
        } else {
            reminded = None;
        }
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = installs.recv() => {}
            () = tokio::time::sleep(CHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn terms(not_after: u64, grace: u32) -> LicenseTerms {
        LicenseTerms {
            id: tether_keys::LicenseId([1; 16]),
            customer: "Unit".into(),
            dongle_serial: "TD-1".into(),
            dongle: tether_keys::testkeys::dongle().public().into(),
            issued_at: UnixTime::from_secs(0),
            not_before: UnixTime::from_secs(0),
            not_after: UnixTime::from_secs(not_after),
            max_token_ttl: 300,
            features: vec![],
            services: vec!["backend".into()],
            seats: Default::default(),
            sequence: 1,
            grace,
            nonce_period: 0,
        }
    }

    #[test]
    fn thresholds_parse_longest_first() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(
            parse_thresholds("1d,30d, 7d,7d").unwrap(),
            vec![d(30 * 86_400), d(7 * 86_400), d(86_400)]
        );
        assert!(parse_thresholds("off").unwrap().is_empty());
        assert!(parse_thresholds("30d,soon").is_err());
        assert!(parse_thresholds("0s").is_err());
    }

    /// Each threshold once, the tightest crossed only, then grace, then
    /// the end; nothing again once given.
    #[test]
    fn notices_come_once_each_in_order() {
        let day = 86_400;
        let th = parse_thresholds(DEFAULT_THRESHOLDS).unwrap();
        let t = terms(100 * day, 3 * day as u32);
        let mut given = BTreeSet::new();
        let mut step = |now: u64| {
            let got = due(&t, UnixTime::from_secs(now), &th, &given);
            if let Some((labels, _)) = &got {
                given.extend(labels.iter().cloned());
            }
            got.map(|(_, e)| (e.kind, e.threshold_secs))
        };
        assert_eq!(step(60 * day), None);
        assert_eq!(step(70 * day), Some(("warning".into(), Some(30 * day))));
        assert_eq!(step(71 * day), None);
        // Jumped past 7 d and 1 d at once: the 1-day warning only.
        assert_eq!(step(99 * day + 10), Some(("warning".into(), Some(day))));
        assert_eq!(step(99 * day + 20), None);
        assert_eq!(step(100 * day), Some(("grace".into(), None)));
        assert_eq!(step(101 * day), None);
        assert_eq!(step(103 * day), Some(("expired".into(), None)));
        assert_eq!(step(104 * day), None);
    }

    /// On a live authority in fake time: each notice once, published as the
    /// latest; not again after a restart on the same state directory; a
    /// new sequence clears the stale latest and is warned about afresh.
    #[test]
    fn check_records_publishes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000;
        let clock = Arc::new(crate::clock::ManualClock::new(UnixTime::from_secs(t0)));
        let end = UnixTime::from_secs(t0 + 3600);
        let edit = |t: &mut LicenseTerms| {
            t.not_after = end;
            t.grace = 600;
        };
        let th = parse_thresholds("2h,30m").unwrap();
        let (auth, _) = crate::authority::tests::authority_on(dir.path(), clock.clone(), edit);
        let first = check(&auth, &th).unwrap();
        assert_eq!(
            (first.kind.as_str(), first.threshold_secs),
            ("warning", Some(7200))
        );
        assert_eq!(*auth.expiry_events.borrow(), Some(first));
        assert!(check(&auth, &th).is_none());
        clock.set(UnixTime::from_secs(t0 + 3600 - 1000));
        assert_eq!(check(&auth, &th).unwrap().threshold_secs, Some(1800));
        drop(auth);

        let (auth, _) = crate::authority::tests::authority_on(dir.path(), clock.clone(), edit);
        assert!(check(&auth, &th).is_none(), "repeated after a restart");
        clock.set(end);
        assert_eq!(check(&auth, &th).unwrap().kind, "grace");
        let mut next = auth.license().terms().clone();
        next.sequence = 2;
        next.grace = 0;
        next.not_after = end + Duration::from_secs(7200);
        auth.replace_license(next.sign(&tether_keys::testkeys::vendor()).unwrap())
            .unwrap();
        // Sequence 2 ends in 2 h: its 2-hour warning, not silence.
        let renewed = check(&auth, &th).unwrap();
        assert_eq!((renewed.sequence, renewed.threshold_secs), (2, Some(7200)));
        assert_eq!(auth.expiry_events.borrow().as_ref().unwrap().sequence, 2);
    }

    #[test]
    fn windows_and_messages_name_utc() {
        let t = terms(1_000, 0);
        assert_eq!(window(&t, UnixTime::from_secs(999)), Window::Valid);
        assert_eq!(window(&t, UnixTime::from_secs(1_000)), Window::Expired);
        let (_, e) = due(&t, UnixTime::from_secs(1_000), &[], &BTreeSet::new()).unwrap();
        assert_eq!(e.kind, "expired");
        assert!(e.message.contains("1970-01-01T00:16:40Z"), "{}", e.message);
        let g = terms(1_000, 60);
        assert_eq!(window(&g, UnixTime::from_secs(1_000)), Window::Grace);
        assert_eq!(window(&g, UnixTime::from_secs(1_060)), Window::Expired);
    }
}
