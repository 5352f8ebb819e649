//! The claims of a Tether token, shared by the issuer and every verifier.
//!
//! Registered claims (RFC 7519) plus the chain a consumer needs to verify the
//! token offline: `lic` (the license) and `dcert` (the delegation certificate
//! certifying the signing session key), both base64url without padding, and
//! the consumer's `nonce` when it sent one (`docs/formats.md`, "Token").

use serde::{Deserialize, Serialize};

/// Claims of a license token. Unknown claims are ignored; a claim given twice
/// is a decoding error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Issuer: `tether:` and the dongle serial.
    pub iss: String,
    /// Subject: the service the token was issued to.
    pub sub: String,
    /// Audience: the service that must accept it (the same service).
    pub aud: String,
    /// Issued at (UNIX seconds).
    pub iat: u64,
    /// Not before (UNIX seconds).
    pub nbf: u64,
    /// Expiry (UNIX seconds).
    pub exp: u64,
    /// Unique token id (base64url of 16 random bytes).
    pub jti: String,
    /// The license, base64url of its canonical bytes.
    pub lic: String,
    /// The delegation certificate, base64url of its canonical bytes.
    pub dcert: String,
    /// The consumer's nonce, echoed when it asked with `?nonce=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Private claim: the consumer instance the token was issued to, which
    /// holds a seat (`GET /token?instance=`); a verifier that knows its own
    /// instance refuses a token issued to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ins: Option<String>,
}

/// The issuer string for a dongle serial.
pub fn issuer_for(serial: &str) -> String {
    format!("tether:{serial}")
}
