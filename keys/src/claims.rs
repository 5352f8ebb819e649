//! The claims of a Tether token, shared by the issuer and every verifier.
//!
//! Registered claims (RFC 7519) plus the chain a consumer needs to verify the
//! token offline: `lic` (the license) and `dcert` (the delegation certificate
//! certifying the signing session key), both base64url without padding, and
//! the consumer's `nonce` when it sent one, and `prf`, the consumer's
//! inclusion proof in the certificate's commitment, under licenses that
//! demand fresh nonces (`docs/formats.md`, "Token claims").

use serde::{Deserialize, Serialize};

use crate::UnixTime;

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
    /// Issued at (a NumericDate: UNIX seconds).
    pub iat: UnixTime,
    /// Not before (a NumericDate: UNIX seconds).
    pub nbf: UnixTime,
    /// Expiry (a NumericDate: UNIX seconds).
    pub exp: UnixTime,
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
    /// Private claim: the consumer's inclusion proof in the certificate's
    /// commitment, base64url without padding of
    /// [`InclusionProof::encode`](crate::merkle::InclusionProof::encode)
    /// (`docs/formats.md`, "Inclusion proof"). Required, with `ins` and
    /// `nonce`, under a license with a `nonce_period`; a verifier checks it
    /// whenever it is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prf: Option<String>,
    /// Private claim: the end of the license's grace period (a NumericDate:
    /// `not_after + grace`, UNIX seconds), present only on tokens issued
    /// after the license's `not_after`, in its vendor-signed grace
    /// (`docs/formats.md`, "Token claims"). Consumers accept such tokens
    /// unless they refuse grace; a verifier checks that it is the
    /// license's grace end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<UnixTime>,
}

/// The issuer string for a dongle serial.
pub fn issuer_for(serial: &str) -> String {
    format!("tether:{serial}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::InclusionProof;

    fn claims(prf: Option<String>) -> TokenClaims {
        TokenClaims {
            iss: issuer_for("TD-0001"),
            sub: "backend".into(),
            aud: "backend".into(),
            iat: UnixTime::from_secs(1),
            nbf: UnixTime::from_secs(1),
            exp: UnixTime::from_secs(2),
            jti: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            lic: "bGlj".into(),
            dcert: "Y2VydA".into(),
            nonce: None,
            ins: None,
            prf,
            grace: None,
        }
    }

    /// `prf` is left out when absent (tokens are unchanged until it is
    /// issued) and carries base64url of the proof's encoding when present.
    #[test]
    fn the_proof_claim_is_optional_and_round_trips() {
        let json = serde_json::to_string(&claims(None)).unwrap();
        assert!(!json.contains("prf"), "{json}");
        let proof = InclusionProof {
            index: 2,
            size: 3,
            path: vec![[0xAA; 32]],
        };
        let with = claims(Some(proof.to_claim()));
        let json = serde_json::to_string(&with).unwrap();
        let back: TokenClaims = serde_json::from_str(&json).unwrap();
        assert_eq!(back, with);
        let prf = back.prf.unwrap();
        assert!(prf.starts_with("AAAAAgAAAAMB"), "{prf}");
        assert_eq!(InclusionProof::from_claim(&prf).unwrap(), proof);
    }
}
