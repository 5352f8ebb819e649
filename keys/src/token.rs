//! The compact JWS form of a Tether token (RFC 7519, `alg: EdDSA` per RFC 8037).
//!
//! The header and claims are `jsonwebtoken`'s types serialized exactly as
//! `jsonwebtoken::encode` would (JSON, base64url without padding, joined by
//! dots), but signed with a session key held ready in memory: one Ed25519
//! signature per token, with the header encoded once per session.
//! `jsonwebtoken::decode` and PyJWT accept the result (tests/interop).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};

use crate::claims::TokenClaims;
use crate::key::{SecretKey, Session};
use crate::{Error, Result};

/// The header every Tether token carries: `{"typ":"JWT","alg":"EdDSA","kid":KID}`,
/// where `KID` is the short fingerprint of the session key.
pub fn token_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    header
}

/// Signs tokens with one session key. Owns the key; wiping it is dropping this.
#[derive(Debug)]
pub struct TokenSigner {
    key: SecretKey<Session>,
    header_b64: String,
}

impl TokenSigner {
    /// Prepares a signer: encodes the JOSE header (RFC 7515 section 4) once.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the header cannot be serialized (it always
    /// can: the error is kept rather than a panic).
    pub fn new(key: SecretKey<Session>) -> Result<Self> {
        let header = token_header(&key.public().fingerprint().short());
        let json = serde_json::to_vec(&header).map_err(|_| Error::Malformed {
            what: "token header",
            reason: "cannot serialize",
        })?;
        Ok(TokenSigner {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(json),
        })
    }

    /// Signs a usage ledger checkpoint with the session key
    /// ([`crate::ledger::Checkpoint`]; `docs/formats.md`, "Usage ledger").
    pub fn sign_checkpoint(
        &self,
        head: &crate::delegation::LedgerHead,
    ) -> crate::ledger::Checkpoint {
        crate::ledger::Checkpoint::sign(head, &self.key)
    }

    /// The session key's public half.
    pub fn public(&self) -> crate::PublicKey<Session> {
        self.key.public()
    }

    /// Encodes and signs `claims` as a compact JWS (RFC 7515 section 7.1;
    /// `alg` EdDSA per RFC 8037 section 3.1).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the claims cannot be serialized as JSON.
    pub fn sign(&self, claims: &TokenClaims) -> Result<String> {
        let json = serde_json::to_vec(claims).map_err(|_| Error::Malformed {
            what: "token claims",
            reason: "cannot serialize",
        })?;
        let b64_len = |n: usize| n.div_ceil(3) * 4;
        let mut token = String::with_capacity(self.header_b64.len() + b64_len(json.len()) + 90);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys;

    fn claims() -> TokenClaims {
        TokenClaims {
            iss: "tether:TD-1".into(),
            sub: "backend".into(),
            aud: "backend".into(),
            iat: crate::UnixTime::from_secs(1),
            nbf: crate::UnixTime::from_secs(1),
            exp: crate::UnixTime::from_secs(61),
            jti: "j".into(),
            lic: "bGlj".into(),
            dcert: "Y2VydA".into(),
            nonce: None,
            ins: None,
            prf: None,
            grace: None,
        }
    }

    #[test]
    fn header_and_signature_are_as_specified() {
        let signer = TokenSigner::new(testkeys::session()).unwrap();
        let token = signer.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let kid = testkeys::session().public().fingerprint().short();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#)
        );
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        let signed = &token[..parts[0].len() + 1 + parts[1].len()];
        assert!(testkeys::session().public().verify(signed.as_bytes(), &sig));
        let decoded: TokenClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(decoded, claims());
    }

    #[test]
    fn jsonwebtoken_decode_accepts_our_tokens() {
        let signer = TokenSigner::new(testkeys::session()).unwrap();
        let mut c = claims();
        c.exp = crate::UnixTime::now() + std::time::Duration::from_secs(60);
        let token = signer.sign(&c).unwrap();
        let key = jsonwebtoken::DecodingKey::from_ed_der(testkeys::session().public().as_bytes());
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["backend"]);
        validation.set_issuer(&["tether:TD-1"]);
        let data = jsonwebtoken::decode::<TokenClaims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims, c);
        assert_eq!(
            data.header.kid,
            Some(testkeys::session().public().fingerprint().short())
        );
    }
}
