//! JSON shapes of the HTTP API. The bodies themselves are the shared wire
//! types of [`tether_keys::wire`]; only what the daemon alone reads is here.

use serde::Deserialize;

pub use tether_keys::wire::{
    DongleStatus, ErrorBody, LeaseInfo, LicenseSummary, PresenceEvent, PresenceState, Refusal,
    RefusalCode, SeatUsage, StatusBody, TokenResponse,
};

/// Query of `GET /token`. Unknown and repeated parameters are refused (400).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The consumer's nonce, echoed into the token.
    pub nonce: Option<String>,
    /// The consumer instance, which holds a lease on a seat.
    pub instance: Option<String>,
}

/// Query of `DELETE /lease`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseQuery {
    /// The instance whose lease to release.
    pub instance: String,
    /// The `jti` of the instance's current (or previous) token: the proof
    /// that the instance itself asks.
    pub jti: String,
}
