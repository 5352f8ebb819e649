//! What the admin page shows: one [`View`] built from the authority's
//! public accessors, served as JSON (`/admin/status.json`) and rendered as
//! HTML here. Every string goes through [`escape`]; nothing secret is in a
//! `View` to begin with (no credential, token, certificate or license
//! bytes: fingerprints, names, counts and times only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tether_keys::wire::PresenceEvent;

use crate::authority::Authority;

/// Days before the end of the license from which the page warns.
pub const WARN_DAYS: u64 = 30;
/// Days before the end of the license from which the warning is urgent.
pub const URGENT_DAYS: u64 = 7;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The authority's clock (UNIX seconds).
    pub now: u64,
    /// The same, RFC 3339 UTC.
    pub now_text: String,
    /// Whether a token would be issued now.
    pub ready: bool,
    /// Why not, when not.
    pub not_ready: Option<String>,
    /// The dongle.
    pub dongle: DongleView,
    /// The license.
    pub license: LicenseView,
    /// Seats in use per licensed service.
    pub seats: Vec<SeatView>,
    /// Live leases.
    pub leases: Vec<LeaseView>,
    /// Tokens issued and refused per service.
    pub tokens: Vec<TokensView>,
    /// Tokens issued since start, all services.
    pub tokens_issued: u64,
}

/// The dongle and its session.
#[derive(Debug, Clone, Serialize)]
pub struct DongleView {
    /// `present`, `verifying` or `absent`.
    pub state: &'static str,
    /// Since when (UNIX seconds).
    pub since: u64,
    /// The same, RFC 3339 UTC.
    pub since_text: String,
    /// Why.
    pub reason: String,
    /// Serial of the dongle last seen.
    pub serial: Option<String>,
    /// The protocol tetherd speaks to it: the kind the license names
    /// (`native` or `FIDO2`).
    pub kind: &'static str,
    /// Its signature counter.
    pub counter: Option<u32>,
    /// Fingerprint of the session public key.
    pub session: Option<String>,
    /// End of the current certificate (UNIX seconds).
    pub cert_not_after: Option<u64>,
    /// The same, RFC 3339 UTC.
    pub cert_not_after_text: Option<String>,
    /// Dongles refused since start.
    pub refused: u64,
    /// The last refusals, newest first.
    pub refusals: Vec<RefusalView>,
}

/// One refused dongle.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalView {
    /// When (UNIX seconds).
    pub at: u64,
    /// The same, RFC 3339 UTC.
    pub at_text: String,
    /// Why.
    pub reason: String,
}

/// The license served now.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseView {
    /// Customer.
    pub customer: String,
    /// License id (hex).
    pub id: String,
    /// Version of this license.
    pub sequence: u64,
    /// Features.
    pub features: Vec<String>,
    /// Services.
    pub services: Vec<String>,
    /// Seat counts of the seat-limited services.
    pub seats: BTreeMap<String, u32>,
    /// Start of validity (UNIX seconds).
    pub not_before: u64,
    /// The same, RFC 3339 UTC.
    pub not_before_text: String,
    /// End of validity (UNIX seconds).
    pub not_after: u64,
    /// The same, RFC 3339 UTC.
    pub not_after_text: String,
    /// Grace after the end, in seconds (0: none).
    pub grace: u32,
    /// The grace in words.
    pub grace_text: String,
    /// End of the grace (UNIX seconds).
    pub grace_until: u64,
    /// The same, RFC 3339 UTC.
    pub grace_until_text: String,
    /// `ok`, `warn` or `bad`.
    pub level: &'static str,
    /// What the operator should know about the window, in words.
    pub warning: String,
}

/// Seats of one service.
#[derive(Debug, Clone, Serialize)]
pub struct SeatView {
    /// Service.
    pub service: String,
    /// Live leases.
    pub in_use: u64,
    /// Seat count; `None`: unlimited.
    pub seats: Option<u32>,
}

/// One live lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// Service.
    pub service: String,
    /// Instance id.
    pub instance: String,
    /// Since (RFC 3339 UTC).
    pub since_text: String,
    /// Lapses at (RFC 3339 UTC).
    pub expires_text: String,
    /// Peer that last renewed it.
    pub peer: Option<String>,
}

/// Token counts of one service.
#[derive(Debug, Clone, Serialize)]
pub struct TokensView {
    /// Service.
    pub service: String,
    /// Tokens issued.
    pub issued: u64,
    /// Requests refused.
    pub refused: u64,
}

/// A presence event as the timeline shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// `present` or `absent`.
    pub state: &'static str,
    /// Why.
    pub reason: String,
    /// When (UNIX seconds).
    pub since: u64,
    /// The same, RFC 3339 UTC.
    pub since_text: String,
}

impl From<&PresenceEvent> for EventView {
    fn from(ev: &PresenceEvent) -> Self {
        EventView {
            state: ev.state.as_str(),
            reason: ev.reason.clone(),
            since: ev.since.secs(),
            since_text: utc(ev.since.secs()),
        }
    }
}

/// RFC 3339, UTC, to the second.
pub fn utc(t: u64) -> String {
    crate::state::rfc3339(tether_keys::UnixTime::from_secs(t)).to_string()
}

fn words(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The license window at `now`: level and words.
pub fn window(now: u64, not_before: u64, not_after: u64, grace: u32) -> (&'static str, String) {
    let grace_until = not_after.saturating_add(u64::from(grace));
    if now < not_before {
        return (
            "bad",
            format!("not valid yet: starts in {}", words(not_before - now)),
        );
    }
    if now >= not_after {
        if now < grace_until {
            return (
                "bad",
                format!(
                    "expired {} ago; in grace for {} more (tokens still issued, with warnings)",
                    words(now - not_after),
                    words(grace_until - now)
                ),
            );
        }
        return (
            "bad",
            format!("expired {} ago: no tokens", words(now - not_after)),
        );
    }
    let left = not_after - now;
    let text = format!("valid, {} left", words(left));
    if left < URGENT_DAYS * 86_400 {
        ("bad", format!("{text}: renew now"))
    } else if left < WARN_DAYS * 86_400 {
        ("warn", format!("{text}: renew soon"))
    } else {
        ("ok", text)
    }
}

/// The view of `auth` now.
pub fn view(auth: &Authority) -> View {
    let now_t = auth.now();
    let now = now_t.secs();
    let st = auth.status();
    let lic = auth.license();
    let t = lic.terms();
    let mut refusals: Vec<RefusalView> = auth
        .metrics
        .dongle_refusals()
        .into_iter()
        .map(|(at, reason)| RefusalView {
            at,
            at_text: utc(at),
            reason,
        })
        .collect();
    refusals.reverse();
    let (level, warning) = window(now, t.not_before.secs(), t.not_after.secs(), t.grace);
    let grace_until = t.not_after.secs().saturating_add(u64::from(t.grace));
    // Every licensed or enrolled service, at 0 until it asks.
    let mut counts: BTreeMap<String, (u64, u64)> = t
        .services
        .iter()
        .cloned()
        .chain(auth.services().map(str::to_string))
        .map(|s| (s, (0, 0)))
        .collect();
    for (service, issued, refused) in auth.metrics.per_service() {
        counts.insert(service, (issued, refused));
    }
    let tokens = counts
        .into_iter()
        .map(|(service, (issued, refused))| TokensView {
            service,
            issued,
            refused,
        })
        .collect();
    View {
        now,
        now_text: utc(now),
        ready: auth.ready().is_ok(),
        not_ready: auth.ready().err().map(|r| r.body().message),
        dongle: DongleView {
            state: st.state.as_str(),
            since: st.since.secs(),
            since_text: utc(st.since.secs()),
            reason: st.reason,
            serial: st.serial,
            kind: t.dongle.kind_name(),
            counter: st.counter,
            session: st.session,
            cert_not_after: st.cert_not_after.map(tether_keys::UnixTime::secs),
            cert_not_after_text: st.cert_not_after.map(|t| utc(t.secs())),
            refused: st.refused_dongles,
            refusals,
        },
        license: LicenseView {
            customer: t.customer.clone(),
            id: t.id.to_string(),
            sequence: t.sequence,
            features: t.features.clone(),
            services: t.services.clone(),
            seats: t.seats.clone(),
            not_before: t.not_before.secs(),
            not_before_text: utc(t.not_before.secs()),
            not_after: t.not_after.secs(),
            not_after_text: utc(t.not_after.secs()),
            grace: t.grace,
            grace_text: if t.grace == 0 {
                "none".into()
            } else {
                words(u64::from(t.grace))
            },
            grace_until,
            grace_until_text: utc(grace_until),
            level,
            warning,
        },
        seats: auth
            .leases
            .usage(now_t)
            .into_iter()
            .map(|(service, in_use, seats)| SeatView {
                service,
                in_use: in_use as u64,
                seats,
            })
            .collect(),
        leases: auth
            .leases
            .rows(now_t)
            .into_iter()
            .map(|r| LeaseView {
                service: r.service,
                instance: r.instance,
                since_text: utc(r.lease.since.secs()),
                expires_text: utc(r.lease.expires.secs()),
                peer: r.lease.peer.map(|p| p.to_string()),
            })
            .collect(),
        tokens,
        tokens_issued: auth.metrics.issued_total(),
    }
}

/// `s` with `& < > " '` escaped, safe in HTML text and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NONE: &str = "\u{2014}";

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| NONE.to_string(), |v| escape(&v.to_string()))
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        NONE.to_string()
    } else {
        escape(&v.join(", "))
    }
}

/// One `<dt>`/`<dd>` pair whose value the script refreshes from `key`.
fn field(out: &mut String, label: &str, key: &str, value: &str) {
    let _ = write!(
        out,
        "<dt>{}</dt><dd data-k=\"{}\">{value}</dd>",
        escape(label),
        escape(key)
    );
}

fn table(out: &mut String, id: &str, heads: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table><thead><tr>");
    for h in heads {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    let _ = write!(out, "</tr></thead><tbody id=\"{}\">", escape(id));
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td class=\"muted\" colspan=\"{}\">none</td></tr>",
            heads.len()
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// One timeline entry.
fn event_item(out: &mut String, ev: &EventView) {
    let _ = write!(
        out,
        "<li data-key=\"{state}@{since}\"><time>{at}</time> <span class=\"state state-{state}\">{state}</span> {reason}</li>",
        state = escape(ev.state),
        since = ev.since,
        at = escape(&ev.since_text),
        reason = escape(&ev.reason),
    );
}

/// The whole page: `view` now and the timeline so far (oldest first).
pub fn render(v: &View, timeline: &[EventView]) -> String {
    let d = &v.dongle;
    let l = &v.license;
    let mut o = String::with_capacity(8192);
    o.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>tetherd admin</title>",
        "<link rel=\"icon\" href=\"/admin/favicon.svg\" type=\"image/svg+xml\">",
        "<link rel=\"stylesheet\" href=\"/admin/admin.css\">",
        "<script src=\"/admin/admin.js\" defer></script></head><body>",
    ));
    let _ = write!(
        o,
        "<header><h1>tetherd</h1><p>Read-only admin page. All times are UTC (RFC 3339). \
         Authority clock: <span data-k=\"now_text\">{}</span> \
         <span id=\"live\" class=\"muted\">live updates: connecting</span></p>\
         <p id=\"ready\" class=\"level-{}\">{}</p></header>",
        escape(&v.now_text),
        if v.ready { "ok" } else { "bad" },
        if v.ready {
            "ready: tokens are issued".to_string()
        } else {
            format!("not ready: {}", opt(v.not_ready.as_deref()))
        }
    );

    let _ = write!(
        o,
        "<section id=\"dongle\"><h2>Dongle</h2>\
         <p><span id=\"dongle-state\" class=\"state state-{s}\">{s}</span></p><dl>",
        s = escape(d.state)
    );
    field(&mut o, "Since", "dongle.since_text", &escape(&d.since_text));
    field(&mut o, "Reason", "dongle.reason", &escape(&d.reason));
    field(&mut o, "Serial", "dongle.serial", &opt(d.serial.as_deref()));
    field(&mut o, "Kind", "dongle.kind", &escape(d.kind));
    field(&mut o, "Counter", "dongle.counter", &opt(d.counter));
    field(
        &mut o,
        "Session key",
        "dongle.session",
        &opt(d.session.as_deref()),
    );
    field(
        &mut o,
        "Certificate expires",
        "dongle.cert_not_after_text",
        &opt(d.cert_not_after_text.as_deref()),
    );
    field(
        &mut o,
        "Dongles refused",
        "dongle.refused",
        &d.refused.to_string(),
    );
    o.push_str("</dl><h3>Refused dongles</h3>");
    let rows: Vec<Vec<String>> = d
        .refusals
        .iter()
        .map(|r| vec![r.at_text.clone(), r.reason.clone()])
        .collect();
    table(&mut o, "refusals-body", &["At", "Reason"], &rows);
    o.push_str("</section>");

    let _ = write!(
        o,
        "<section id=\"license\"><h2>License</h2><p id=\"license-warning\" class=\"level-{}\" \
         data-k=\"license.warning\">{}</p><dl>",
        escape(l.level),
        escape(&l.warning)
    );
    field(&mut o, "Customer", "license.customer", &escape(&l.customer));
    field(&mut o, "Id", "license.id", &escape(&l.id));
    field(
        &mut o,
        "Sequence",
        "license.sequence",
        &l.sequence.to_string(),
    );
    field(&mut o, "Features", "license.features", &list(&l.features));
    field(&mut o, "Services", "license.services", &list(&l.services));
    let seats: Vec<String> = l.seats.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    o.push_str("<dt>Seats</dt><dd id=\"license-seats\">");
    o.push_str(&if seats.is_empty() {
        "unlimited".to_string()
    } else {
        escape(&seats.join(", "))
    });
    o.push_str("</dd>");
    field(
        &mut o,
        "Valid from",
        "license.not_before_text",
        &escape(&l.not_before_text),
    );
    field(
        &mut o,
        "Valid until",
        "license.not_after_text",
        &escape(&l.not_after_text),
    );
    let _ = write!(
        o,
        "<dt>Time left</dt><dd id=\"countdown\" data-not-after=\"{}\" data-grace-until=\"{}\">{}</dd>",
        l.not_after,
        l.grace_until,
        escape(&words(l.not_after.saturating_sub(v.now)))
    );
    field(
        &mut o,
        "Grace",
        "license.grace_text",
        &escape(&l.grace_text),
    );
    field(
        &mut o,
        "Grace ends",
        "license.grace_until_text",
        &escape(&l.grace_until_text),
    );
    o.push_str("</dl></section>");

    o.push_str("<section id=\"seats\"><h2>Seats</h2>");
    let rows: Vec<Vec<String>> = v
        .seats
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.in_use.to_string(),
                s.seats
                    .map_or_else(|| "unlimited".into(), |n| n.to_string()),
            ]
        })
        .collect();
    table(&mut o, "seats-body", &["Service", "In use", "Seats"], &rows);
    o.push_str("<h3>Leases</h3>");
    let rows: Vec<Vec<String>> = v
        .leases
        .iter()
        .map(|r| {
            vec![
                r.service.clone(),
                r.instance.clone(),
                r.since_text.clone(),
                r.expires_text.clone(),
                r.peer.clone().unwrap_or_else(|| NONE.into()),
            ]
        })
        .collect();
    table(
        &mut o,
        "leases-body",
        &["Service", "Instance", "Since", "Lapses", "Peer"],
        &rows,
    );
    o.push_str("</section>");

    let _ = write!(
        o,
        "<section id=\"tokens\"><h2>Tokens</h2><p>Issued since start, all services: \
         <span data-k=\"tokens_issued\">{}</span></p>",
        v.tokens_issued
    );
    let rows: Vec<Vec<String>> = v
        .tokens
        .iter()
        .map(|t| {
            vec![
                t.service.clone(),
                t.issued.to_string(),
                t.refused.to_string(),
            ]
        })
        .collect();
    table(
        &mut o,
        "tokens-body",
        &["Service", "Issued", "Refused"],
        &rows,
    );
    o.push_str("</section>");

    o.push_str(
        "<section id=\"timeline\"><h2>Presence timeline</h2>\
         <p class=\"muted\">Newest first; live from the event stream.</p><ol id=\"timeline-list\">",
    );
    for ev in timeline.iter().rev() {
        event_item(&mut o, ev);
    }
    o.push_str("</ol></section></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tether_keys::wire::PresenceState;

    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn window_levels() {
        let day = 86_400;
        assert_eq!(window(100 * day, 0, 200 * day, 0).0, "ok");
        assert_eq!(window(100 * day, 0, 110 * day, 0).0, "warn");
        assert_eq!(window(100 * day, 0, 103 * day, 0).0, "bad");
        let (level, text) = window(100 * day, 0, 99 * day, 2 * day as u32);
        assert_eq!(level, "bad");
        assert!(text.contains("in grace"), "{text}");
        assert!(window(100 * day, 0, 99 * day, 0).1.contains("no tokens"));
        assert!(window(0, day, 2 * day, 0).1.contains("not valid yet"));
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = crate::authority::tests::authority_with(dir.path(), |t| {
            t.customer = "<b>Evil & Co</b>".into();
        });
        let v = view(&auth);
        let ev = EventView {
            state: PresenceState::Absent.as_str(),
            reason: "<img src=x>".into(),
            since: 0,
            since_text: utc(0),
        };
        let html = render(&v, &[ev]);
        assert!(html.contains("&lt;b&gt;Evil &amp; Co&lt;/b&gt;"));
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(!html.contains("<b>Evil"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
        assert!(html.contains("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn the_dongle_kind_is_the_licensed_one() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = crate::authority::tests::authority_with(dir.path(), |_| {});
        assert_eq!(view(&auth).dongle.kind, "native");
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = crate::authority::tests::authority_with(dir.path(), |t| {
            let cred = tether_keys::Fido2Credential {
                rp_id: "tether.example".into(),
                credential_id: vec![7; 32],
                algorithm: tether_keys::Fido2Algorithm::Ed25519,
                public_key: tether_keys::testkeys::dongle().public().to_bytes().to_vec(),
                aaguid: [1; 16],
                model: "Test key".into(),
            };
            t.dongle_serial = cred.serial();
            t.dongle = cred.into();
            t.nonce_period = 300;
        });
        let v = view(&auth);
        assert_eq!(v.dongle.kind, "FIDO2");
        assert!(render(&v, &[]).contains("FIDO2"));
    }
}
