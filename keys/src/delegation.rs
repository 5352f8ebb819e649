//! What the dongle signs: delegation certificates and presence proofs.
//!
//! A delegation certificate binds a fresh in-memory session key to the dongle
//! for a short window; the dongle's signature over it is at once the proof of
//! presence and the certificate consumers verify. A presence proof signs only
//! a nonce, under a different domain tag, so it can never pass as a
//! certificate (`docs/formats.md`, "Delegation certificate").

use crate::codec::{Reader, Writer};
use crate::key::{Dongle, PublicKey, SecretKey, Session};
use crate::{Error, Result, domain};

/// Version byte of the certificate body.
pub const CERT_VERSION: u8 = 1;

/// Size of every challenge nonce, in bytes.
pub const NONCE_LEN: usize = 32;

/// A fresh 32-byte challenge from the CSPRNG.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    crate::random_fill(&mut n);
    n
}

/// What the authority asks the dongle to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRequest {
    /// The authority's fresh challenge.
    pub nonce: [u8; NONCE_LEN],
    /// The session key being certified.
    pub session_key: PublicKey<Session>,
    /// Start of validity (UNIX seconds, the authority's clock).
    pub not_before: u64,
    /// End of validity (UNIX seconds).
    pub not_after: u64,
}

/// A dongle-signed delegation certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The dongle's serial (1 to 255 bytes).
    pub serial: String,
    /// What was asked.
    pub request: DelegationRequest,
    /// The dongle's signature counter after this signature (a count of
    /// signatures, not a time).
    pub counter: u32,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

fn encode_body(serial: &str, req: &DelegationRequest, counter: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(CERT_VERSION);
    w.str8(serial);
    w.bytes(&req.nonce);
    w.bytes(req.session_key.as_bytes());
    w.u64(req.not_before);
    w.u64(req.not_after);
    w.u32(counter);
    w.buf
}

impl Certificate {
    /// The device side: signs `req` as dongle `serial` at signature `counter`
    /// (`docs/formats.md`, "Delegation certificate"; Ed25519 per RFC 8032 over
    /// `domain::DELEGATION || body`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `serial` is not 1 to 255 bytes, or the request's
    /// `not_after` is not later than its `not_before`.
    pub fn sign(
        req: DelegationRequest,
        serial: &str,
        counter: u32,
        dongle: &SecretKey<Dongle>,
    ) -> Result<Certificate> {
        if serial.is_empty() || serial.len() > 255 {
            return Err(Error::Invalid {
                what: "dongle serial",
                reason: "1-255 bytes".into(),
            });
        }
        if req.not_after <= req.not_before {
            return Err(Error::Invalid {
                what: "certificate validity",
                reason: "not-after must be later than not-before".into(),
            });
        }
        let mut encoded = encode_body(serial, &req, counter);
        let signature = dongle.sign(&domain::tagged(domain::DELEGATION, &encoded));
        encoded.extend_from_slice(&signature);
        Ok(Certificate {
            serial: serial.to_string(),
            request: req,
            counter,
            signature,
            encoded,
        })
    }

    /// Decodes canonical bytes (`docs/formats.md`, "Delegation certificate");
    /// call [`Certificate::verify`] before trusting them.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for an unknown version, bytes too short or too
    /// long (trailing bytes are refused), an invalid session key, an empty
    /// serial or an empty validity window.
    pub fn decode(bytes: &[u8]) -> Result<Certificate> {
        let mut r = Reader::new("delegation certificate", bytes);
        if r.u8()? != CERT_VERSION {
            return Err(r.malformed("unknown version"));
        }
        let serial = r.str8()?;
        let nonce = r.array()?;
        let session_key = PublicKey::from_bytes(&r.array()?)?;
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        let counter = r.u32()?;
        let signature = r.finish::<64>()?;
        if serial.is_empty() || not_after <= not_before {
            return Err(Error::Malformed {
                what: "delegation certificate",
                reason: "empty serial or empty validity window",
            });
        }
        Ok(Certificate {
            serial,
            request: DelegationRequest {
                nonce,
                session_key,
                not_before,
                not_after,
            },
            counter,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks the dongle's signature with `verify_strict` (RFC 8032 section
    /// 5.1.7, with ed25519-dalek's strict checks).
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`] if it does not verify under `dongle`.
    pub fn verify(&self, dongle: &PublicKey<Dongle>) -> Result<()> {
        let body = &self.encoded[..self.encoded.len() - 64];
        if dongle.verify(&domain::tagged(domain::DELEGATION, body), &self.signature) {
            Ok(())
        } else {
            Err(Error::BadSignature("delegation certificate"))
        }
    }

    /// Checks that `now` (UNIX seconds) lies in the validity window, widened
    /// by `leeway` (seconds) on both ends.
    ///
    /// # Errors
    ///
    /// [`Error::NotYetValid`] or [`Error::Expired`].
    pub fn check_time(&self, now: u64, leeway: u64) -> Result<()> {
        crate::check_window(
            "delegation certificate",
            self.request.not_before,
            self.request.not_after,
            now,
            leeway,
        )
    }

    /// The canonical bytes (body and signature).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The dongle's 64-byte Ed25519 signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// The message a dongle signs to prove presence: `domain::PRESENCE || nonce`
/// (`docs/formats.md`, "Presence proof").
pub fn presence_message(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    domain::tagged(domain::PRESENCE, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys;

    fn request() -> DelegationRequest {
        DelegationRequest {
            nonce: [0xAB; 32],
            session_key: testkeys::session().public(),
            not_before: 1_700_000_000,
            not_after: 1_700_000_600,
        }
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
        let decoded = Certificate::decode(cert.encoded()).unwrap();
        assert_eq!(decoded, cert);
        decoded.verify(&testkeys::dongle().public()).unwrap();
        assert_eq!(decoded.counter, 7);
        assert_eq!(
            decoded.encoded().len(),
            1 + 1 + 7 + 32 + 32 + 8 + 8 + 4 + 64
        );
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
        let dongle = testkeys::dongle().public();
        for i in 0..cert.encoded().len() {
            let mut bytes = cert.encoded().to_vec();
            bytes[i] ^= 0x80;
            let ok = Certificate::decode(&bytes).and_then(|c| c.verify(&dongle));
            assert!(ok.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn presence_signature_is_no_certificate() {
        // A dongle's presence signature over bytes that happen to equal a certificate
        // body still fails: the domain tags differ.
        let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
        let body = &cert.encoded()[..cert.encoded().len() - 64];
        let forged_sig = testkeys::dongle().sign(&domain::tagged(domain::PRESENCE, body));
        let mut forged = body.to_vec();
        forged.extend_from_slice(&forged_sig);
        let forged = Certificate::decode(&forged).unwrap();
        assert!(matches!(
            forged.verify(&testkeys::dongle().public()),
            Err(Error::BadSignature(_))
        ));
    }

    proptest::proptest! {
        // Without cargo-fuzz (fuzz/cert_decode does more): bad bytes are
        // refused, never a panic, and whatever decodes is canonical.
        #[test]
        fn decoder_never_panics_on_random_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)
        ) {
            if let Ok(c) = Certificate::decode(&bytes) {
                proptest::prop_assert_eq!(c.encoded(), &bytes[..]);
            }
        }

        #[test]
        fn decoder_never_panics_on_mutated_certificates(
            edits in proptest::collection::vec((0usize..256, proptest::num::u8::ANY), 0..6),
            cut in 0usize..256,
        ) {
            let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
            let mut bytes = cert.encoded().to_vec();
            let len = bytes.len();
            for (at, b) in edits {
                bytes[at % len] = b;
            }
            bytes.truncate(cut);
            if let Ok(c) = Certificate::decode(&bytes) {
                proptest::prop_assert_eq!(c.encoded(), &bytes[..]);
                let again =
                    Certificate::sign(c.request.clone(), &c.serial, c.counter, &testkeys::dongle())
                        .unwrap();
                let body = bytes.len() - 64;
                proptest::prop_assert_eq!(&again.encoded()[..body], &bytes[..body]);
            }
        }
    }
}
