//! Typed bodies of tetherd's HTTP API (`docs/api.md`), shared by the daemon
//! and its consumers so nobody reads JSON as `v["..."]`.
//!
//! Serde only, no I/O, no async. The JSON these types produce is the wire
//! format: field names, order and the snake_case strings of the enums are
//! part of the API, and tests compare them byte for byte.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// Whether a verified dongle is there, as `/events` and `/status` say it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    /// No verified dongle: unplugged, refused, or not seen yet.
    #[default]
    Absent,
    /// A dongle answered and is being challenged (`/status` only; events
    /// carry `present` and `absent`).
    Verifying,
    /// A verified dongle certified the current session key.
    Present,
}

impl PresenceState {
    /// The wire string: `absent`, `verifying` or `present`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::Absent => "absent",
            PresenceState::Verifying => "verifying",
            PresenceState::Present => "present",
        }
    }
}

impl fmt::Display for PresenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a successful `GET /token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT (compact serialization).
    pub token: String,
    /// `exp` of the token (UNIX seconds on the wire).
    pub expires_at: UnixTime,
    /// When the consumer should fetch the next one (UNIX seconds on the wire).
    pub refresh_at: UnixTime,
    /// Seconds from issue until `expires_at`.
    pub expires_in: u64,
    /// Seconds from issue until `refresh_at`.
    pub refresh_in: u64,
}

/// Every error body: `{"code": "...", "message": "..."}`.
///
/// `code` is kept as text so that a consumer built before a new code was
/// added still reads the body; [`Refusal::from_body`] types it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case code ([`RefusalCode::as_str`]).
    pub code: String,
    /// Human-readable message; never a secret or an internal detail.
    pub message: String,
}

/// One `event: state` of `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// `present` or `absent`.
    pub state: PresenceState,
    /// Why, in words.
    pub reason: String,
    /// When this state began (UNIX seconds on the wire).
    pub since: UnixTime,
}

/// The `dongle` object of `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DongleStatus {
    /// Where the watchdog is.
    pub state: PresenceState,
    /// When this state began (UNIX seconds on the wire).
    pub since: UnixTime,
    /// Why the dongle is in this state.
    pub reason: String,
    /// Serial of the dongle last seen.
    pub serial: Option<String>,
    /// Its signature counter (DELEGATE operations so far).
    pub counter: Option<u32>,
    /// Fingerprint of the current session key (`SHA256:...`).
    pub session: Option<String>,
    /// End of the current certificate (UNIX seconds on the wire).
    pub cert_not_after: Option<UnixTime>,
    /// Dongles refused so far for not being the licensed one (clone, wrong
    /// serial, bad signature, counter rollback).
    pub refused_dongles: u64,
}

/// The `license` object of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
    /// License id (hex).
    pub id: String,
    /// Customer.
    pub customer: String,
    /// Licensed dongle serial.
    pub dongle_serial: String,
    /// Validity start (UNIX seconds on the wire).
    pub not_before: UnixTime,
    /// Validity end (UNIX seconds on the wire).
    pub not_after: UnixTime,
    /// Licensed features.
    pub features: Vec<String>,
    /// Licensed services.
    pub services: Vec<String>,
    /// Seat count per seat-limited service (others are unlimited).
    #[serde(default)]
    pub seats: std::collections::BTreeMap<String, u32>,
    /// Which version of the license (same id) this is.
    #[serde(default)]
    pub sequence: u64,
    /// Longest token lifetime allowed, in seconds.
    pub max_token_ttl: u32,
    /// Seconds until `not_after` (0 once past).
    #[serde(default)]
    pub expires_in_secs: u64,
    /// Whether an installed revocation covers this license.
    #[serde(default)]
    pub revoked: bool,
    /// The vendor-signed grace after `not_after`, in seconds (0: none).
    #[serde(default)]
    pub grace_secs: u32,
    /// End of the grace: `not_after + grace` (UNIX seconds on the wire).
    #[serde(default)]
    pub grace_until: UnixTime,
    /// Where the license stands now: `not_yet_valid`, `valid`, `grace`
    /// (expired, tokens still issued with a `grace` claim) or `expired`.
    #[serde(default)]
    pub window: String,
    /// `not_after` for a person: RFC 3339 in UTC, ending in `Z`.
    #[serde(default)]
    pub not_after_text: String,
    /// `grace_until` for a person: RFC 3339 in UTC, ending in `Z`.
    #[serde(default)]
    pub grace_until_text: String,
    /// Revocation receipts in the state directory's `receipts/`, pending
    /// or signed, by file name (`formats.md`, "Revocation receipt").
    #[serde(default)]
    pub receipts: Vec<ReceiptStatus>,
    /// The last site request (`tether site request`): waiting, signed or
    /// refused; `null` when none was asked for.
    #[serde(default)]
    pub site_request: Option<SiteRequestStatus>,
}

/// One revocation receipt in `/status` (`license.receipts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptStatus {
    /// The revoked license's id (hex).
    pub license_id: String,
    /// `pending` (waiting for the dongle), `unsupported` (waiting, but the
    /// dongle kind tetherd drives cannot sign one) or `signed`.
    pub state: String,
    /// The file, relative to the state directory
    /// (`receipts/<license id>.pending` or `.receipt`).
    pub file: String,
    /// The license sequence the receipt covers, when readable.
    pub license_sequence: Option<u64>,
    /// The dongle's counter in a signed receipt.
    pub counter: Option<u32>,
    /// What it waits for, or what the operator should do, in words.
    pub message: String,
}

/// The last site request in `/status` (`license.site_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRequestStatus {
    /// `pending` (waiting for the dongle), `signed` or `refused`.
    pub state: String,
    /// The nonce asked for (64 hex digits; empty when unreadable).
    pub nonce: String,
    /// The signed file, relative to the state directory, when `signed`.
    pub file: Option<String>,
    /// What was done, or why not, in words.
    pub message: String,
}

/// One `event: receipt` of `GET /events`: the dongle signed a revocation
/// receipt, written to `file` in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    /// The revoked license's id (hex).
    pub license_id: String,
    /// The license sequence the receipt covers.
    pub license_sequence: u64,
    /// The sequences revoked: through this one.
    pub revoked_through: u64,
    /// The dongle's serial.
    pub dongle_serial: String,
    /// The dongle's counter in the receipt.
    pub counter: u32,
    /// The receipt file, relative to the state directory.
    pub file: String,
    /// In words, for a person.
    pub message: String,
}

/// The body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody {
    /// The dongle and its session.
    pub dongle: DongleStatus,
    /// The license.
    pub license: LicenseSummary,
    /// Tokens issued since start.
    pub tokens_issued: u64,
    /// The authority's clock (UNIX seconds on the wire).
    pub now: UnixTime,
    /// Whether a token would be issued now (what `/readyz` answers).
    pub ready: bool,
    /// Why not, when `ready` is false: the refusal `/token` would give a
    /// licensed service right now. `null` when ready.
    pub not_ready: Option<ErrorBody>,
    /// Seats in use per licensed service.
    #[serde(default)]
    pub seats: Vec<SeatUsage>,
    /// Every live lease.
    #[serde(default)]
    pub leases: Vec<LeaseInfo>,
}

/// Seats of one service in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatUsage {
    /// The service.
    pub service: String,
    /// Live leases.
    pub in_use: u64,
    /// The license's seat count; `null` for unlimited.
    pub seats: Option<u32>,
}

/// One lease in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The service.
    pub service: String,
    /// The instance id.
    pub instance: String,
    /// When the instance took its seat (UNIX seconds on the wire).
    pub since: UnixTime,
    /// When the lease lapses unless renewed (UNIX seconds on the wire).
    pub expires: UnixTime,
    /// The peer that last renewed it, when known.
    pub peer: Option<String>,
}

/// Stable codes of every refusal the API gives, one per cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalCode {
    /// 401: missing or unknown credential.
    Unauthorized,
    /// 403: the service is enrolled but not in the license.
    ServiceNotLicensed,
    /// 403: the license is not valid yet (before `not_before`).
    LicenseNotValid,
    /// 503: no verified dongle, or no certificate that can cover a token.
    DongleAbsent,
    /// 503: the clock is behind its high-water mark or the certificate's start.
    ClockRollback,
    /// 429: over the per-service rate.
    RateLimited,
    /// 400: malformed request.
    BadRequest,
    /// 503: every `/events` stream of this class is taken.
    TooManyStreams,
    /// 404: no such endpoint.
    NotFound,
    /// 405: a method other than GET.
    MethodNotAllowed,
    /// 500: the authority failed; details stay in its log.
    Internal,
    /// 409: every seat of the service is held by another instance's lease;
    /// `Retry-After` says when the earliest can lapse.
    NoSeatFree,
    /// 404: no lease for this instance (`DELETE /lease`).
    NoLease,
    /// 503: the instance's nonce goes into the next dongle certificate
    /// (freshness); `Retry-After` says when to ask again.
    AwaitingCertificate,
    /// 403: the vendor revoked the license (an installed revocation).
    LicenseRevoked,
    /// 403: the license ended: at `not_after`, or for a license with a
    /// vendor-signed grace, at the end of its grace (`not_after + grace`).
    LicenseExpired,
}

impl RefusalCode {
    /// Every code, in the order `/metrics` lists them.
    pub const ALL: [RefusalCode; 16] = [
        RefusalCode::Unauthorized,
        RefusalCode::ServiceNotLicensed,
        RefusalCode::LicenseNotValid,
        RefusalCode::DongleAbsent,
        RefusalCode::ClockRollback,
        RefusalCode::RateLimited,
        RefusalCode::BadRequest,
        RefusalCode::TooManyStreams,
        RefusalCode::NotFound,
        RefusalCode::MethodNotAllowed,
        RefusalCode::Internal,
        RefusalCode::NoSeatFree,
        RefusalCode::NoLease,
        RefusalCode::AwaitingCertificate,
        RefusalCode::LicenseRevoked,
        RefusalCode::LicenseExpired,
    ];

    /// The snake_case code of JSON errors and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::Unauthorized => "unauthorized",
            RefusalCode::ServiceNotLicensed => "service_not_licensed",
            RefusalCode::LicenseNotValid => "license_not_valid",
            RefusalCode::DongleAbsent => "dongle_absent",
            RefusalCode::ClockRollback => "clock_rollback",
            RefusalCode::RateLimited => "rate_limited",
            RefusalCode::BadRequest => "bad_request",
            RefusalCode::TooManyStreams => "too_many_streams",
            RefusalCode::NotFound => "not_found",
            RefusalCode::MethodNotAllowed => "method_not_allowed",
            RefusalCode::Internal => "internal",
            RefusalCode::NoSeatFree => "no_seat_free",
            RefusalCode::NoLease => "no_lease",
            RefusalCode::AwaitingCertificate => "awaiting_certificate",
            RefusalCode::LicenseRevoked => "license_revoked",
            RefusalCode::LicenseExpired => "license_expired",
        }
    }

    /// The HTTP status code that carries it.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalCode::BadRequest => 400,
            RefusalCode::Unauthorized => 401,
            RefusalCode::ServiceNotLicensed
            | RefusalCode::LicenseNotValid
            | RefusalCode::LicenseRevoked
            | RefusalCode::LicenseExpired => 403,
            RefusalCode::NotFound | RefusalCode::NoLease => 404,
            RefusalCode::MethodNotAllowed => 405,
            RefusalCode::NoSeatFree => 409,
            RefusalCode::RateLimited => 429,
            RefusalCode::Internal => 500,
            RefusalCode::DongleAbsent
            | RefusalCode::ClockRollback
            | RefusalCode::TooManyStreams
            | RefusalCode::AwaitingCertificate => 503,
        }
    }

    /// The code with this wire string, if it is one of ours.
    pub fn parse(code: &str) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what [`RefusalCode`] and a message safe to show the
/// caller (it names the cause, never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    code: RefusalCode,
    message: String,
    retry_after: Option<u32>,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same refusal with `Retry-After: secs` (seconds).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The typed code.
    pub fn kind(&self) -> RefusalCode {
        self.code
    }

    /// The snake_case code of the JSON body and metric label.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    /// The HTTP status code.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// `Retry-After`, in seconds: the one the refusal was given, else 1 s for
    /// refusals worth retrying soon (429 and 503).
    pub fn retry_after_secs(&self) -> Option<u32> {
        self.retry_after
            .or_else(|| matches!(self.http_status(), 429 | 503).then_some(1))
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_string(),
            message: self.message.clone(),
        }
    }

    /// Types a received error body; `None` for a code this build does not know.
    pub fn from_body(body: ErrorBody) -> Option<Refusal> {
        RefusalCode::parse(&body.code).map(|code| Refusal::new(code, body.message))
    }
}

/// Whether `id` may name a consumer instance (`GET /token?instance=`,
/// the `ins` claim): 1-64 characters of `A-Z a-z 0-9 . _ -`, so it needs no
/// escaping in a query string. The one rule the authority and the
/// consumers share.
pub fn is_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn presence_states_are_the_strings_of_the_api() {
        for (state, text) in [
            (PresenceState::Absent, "absent"),
            (PresenceState::Verifying, "verifying"),
            (PresenceState::Present, "present"),
        ] {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(state.as_str(), text);
            let back: PresenceState = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(back, state);
        }
    }

    #[test]
    fn every_code_round_trips_and_serde_agrees_with_as_str() {
        for code in RefusalCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
            assert_eq!(RefusalCode::parse(code.as_str()), Some(code));
            let status = code.http_status();
            assert!((400..600).contains(&status), "{code}: {status}");
        }
        assert_eq!(RefusalCode::parse("nonsense"), None);
        // Issue 15: what a consumer waits out with its current token.
        let r = Refusal::new(RefusalCode::AwaitingCertificate, "m");
        assert_eq!(r.code(), "awaiting_certificate");
        assert_eq!(r.http_status(), 503);
        assert_eq!(r.retry_after_secs(), Some(1));
    }

    #[test]
    fn bodies_are_byte_exact() {
        let r = Refusal::new(RefusalCode::DongleAbsent, "dongle lost: dongle unplugged");
        assert_eq!(
            serde_json::to_string(&r.body()).unwrap(),
            r#"{"code":"dongle_absent","message":"dongle lost: dongle unplugged"}"#
        );
        assert_eq!(r.http_status(), 503);
        assert_eq!(r.retry_after_secs(), Some(1));
        assert_eq!(Refusal::from_body(r.body()), Some(r));
        let ev = PresenceEvent {
            state: PresenceState::Absent,
            reason: "x".into(),
            since: UnixTime::from_secs(7),
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"state":"absent","reason":"x","since":7}"#
        );
        let t = TokenResponse {
            token: "a.b.c".into(),
            expires_at: UnixTime::from_secs(60),
            refresh_at: UnixTime::from_secs(30),
            expires_in: 60,
            refresh_in: 30,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"token":"a.b.c","expires_at":60,"refresh_at":30,"expires_in":60,"refresh_in":30}"#
        );
        let d = DongleStatus::default();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"state":"absent","since":0,"reason":"","serial":null,"counter":null,"session":null,"cert_not_after":null,"refused_dongles":0}"#
        );
    }

    #[test]
    fn only_429_and_503_say_retry() {
        for code in RefusalCode::ALL {
            let r = Refusal::new(code, "m");
            assert_eq!(
                r.retry_after_secs().is_some(),
                matches!(code.http_status(), 429 | 503),
                "{code}"
            );
        }
    }
}
