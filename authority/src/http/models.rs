//! JSON shapes of the HTTP API.

use serde::{Deserialize, Serialize};

use crate::authority::DongleStatus;

/// Query of `GET /token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The consumer's nonce, echoed into the token.
    pub nonce: Option<String>,
}

/// Every error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable snake_case code.
    pub code: &'a str,
    /// Human-readable message.
    pub message: &'a str,
}

/// The license as shown by `/status`.
#[derive(Debug, Serialize)]
pub struct LicenseSummary {
    /// License id.
    pub id: String,
    /// Customer.
    pub customer: String,
    /// Licensed dongle serial.
    pub dongle_serial: String,
    /// Validity start.
    pub not_before: u64,
    /// Validity end.
    pub not_after: u64,
    /// Features.
    pub features: Vec<String>,
    /// Services.
    pub services: Vec<String>,
    /// Longest token lifetime allowed.
    pub max_token_ttl: u32,
}

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The dongle and its session.
    pub dongle: DongleStatus,
    /// The license.
    pub license: LicenseSummary,
    /// Tokens issued since start.
    pub tokens_issued: u64,
    /// Current time (UNIX seconds).
    pub now: u64,
}
