//! What the dongle signs: delegation certificates and presence proofs.
//!
//! A delegation certificate binds a fresh in-memory session key to the dongle
//! for a short window; the dongle's signature over it is at once the proof of
//! presence and the certificate consumers verify. A presence proof signs only
//! a nonce, under a different domain tag, so it can never pass as a
//! certificate (`docs/formats.md`, "Delegation certificate").
//!
//! Version 2 (written since the freshness and ledger work, issues 15 and 18)
//! adds the dongle's kind, the [`Commitment`] to the live consumers (Merkle
//! root and per-service leaf counts) and the usage ledger's head
//! ([`LedgerHead`]). Version 1 certificates still decode, as ones with the
//! empty commitment and no ledger; any other version is refused with a
//! message naming it. The domain tag stays `tether/delegation/v1\0`: the
//! body's first byte names its version, so a body of one version never reads
//! as another.
//!
//! Kind 2 certificates come from FIDO2 security keys (issue 16; `fido2`):
//! the same version 2 body with kind byte 2 and counter field 0, signed as a
//! WebAuthn assertion whose `clientDataHash` is
//! `SHA-256(domain::DELEGATION || body)`; the authenticator data and the
//! signature follow the body (`docs/formats.md`, "FIDO2 delegation
//! certificate").

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::codec::{Reader, Writer};
use crate::fido2::{ASSERTION_AUTH_DATA_LEN, AuthenticatorData, MAX_SIGNATURE_LEN};
use crate::key::{Dongle, PublicKey, SecretKey, Session};
use crate::license::{DongleIdentity, kind_name};
use crate::merkle::{Commitment, Hash};
use crate::{Error, Result, UnixTime, domain};

/// Version byte of the certificate body this crate writes.
pub const CERT_VERSION: u8 = 2;
/// The oldest certificate version this crate still reads.
pub const CERT_VERSION_V1: u8 = 1;
/// Dongle kind (certificate v2): Tether's native protocol; the signature is
/// Ed25519 over `domain::DELEGATION || body`.
pub const DONGLE_KIND_NATIVE: u8 = 1;
/// Dongle kind (certificate v2): a FIDO2 security key; the signature is an
/// assertion with `clientDataHash = SHA-256(domain::DELEGATION || body)`.
pub const DONGLE_KIND_FIDO2: u8 = 2;
/// The bytes a FIDO2 certificate carries after its body beyond a native
/// signature's 64: the authData length (2), authData (37), the signature
/// length (1) and up to [`MAX_SIGNATURE_LEN`] bytes of signature.
const FIDO2_TAIL_LEN: usize = 2 + ASSERTION_AUTH_DATA_LEN + 1 + MAX_SIGNATURE_LEN;
/// Largest encoded certificate, signature included: one dongle message
/// (`docs/dongle-protocol.md`, section 3.3), so the dongle can answer it.
pub const MAX_CERT_LEN: usize = 1024;

/// Size of every challenge nonce, in bytes.
pub const NONCE_LEN: usize = 32;

/// A fresh 32-byte challenge from the CSPRNG.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    crate::random_fill(&mut n);
    n
}

/// The usage ledger's head a certificate commits to: the sequence number and
/// hash of the last record written before it was asked for. All zero (the
/// default) means no ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LedgerHead {
    /// The last record's sequence number.
    pub sequence: u64,
    /// The last record's hash.
    pub hash: Hash,
}

impl LedgerHead {
    /// Whether this is "no ledger" (all zero).
    pub fn is_none(&self) -> bool {
        *self == LedgerHead::default()
    }

    fn validate(&self) -> Result<()> {
        if self.hash == [0; 32] && self.sequence != 0 {
            return Err(Error::Invalid {
                what: "ledger head",
                reason: "a sequence with an all-zero hash".into(),
            });
        }
        Ok(())
    }
}

/// What the authority asks the dongle to sign.
///
/// [`DelegationRequest::new`] makes one with the empty commitment and no
/// ledger head; set [`commitment`](Self::commitment) and
/// [`ledger`](Self::ledger) to commit to more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRequest {
    /// The authority's fresh challenge.
    pub nonce: [u8; NONCE_LEN],
    /// The session key being certified.
    pub session_key: PublicKey<Session>,
    /// Start of validity (the authority's clock).
    pub not_before: UnixTime,
    /// End of validity.
    pub not_after: UnixTime,
    /// The live consumers: Merkle root and leaves per service.
    pub commitment: Commitment,
    /// The usage ledger's head.
    pub ledger: LedgerHead,
}

impl DelegationRequest {
    /// A request with the empty commitment and no ledger head.
    pub fn new(
        nonce: [u8; NONCE_LEN],
        session_key: PublicKey<Session>,
        not_before: UnixTime,
        not_after: UnixTime,
    ) -> DelegationRequest {
        DelegationRequest {
            nonce,
            session_key,
            not_before,
            not_after,
            commitment: Commitment::default(),
            ledger: LedgerHead::default(),
        }
    }

    /// Checks that dongle `serial` can sign this request: the rules
    /// [`Certificate::sign`] applies, before anything is counted.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `serial` is not 1 to 255 bytes, `not_after` is
    /// not later than `not_before`, the commitment or ledger head breaks the
    /// format's rules, or the certificate would exceed [`MAX_CERT_LEN`] bytes.
    pub fn check(&self, serial: &str) -> Result<()> {
        self.check_kind(serial, DONGLE_KIND_NATIVE)
    }

    fn check_kind(&self, serial: &str, kind: u8) -> Result<()> {
        if serial.is_empty() || serial.len() > 255 {
            return Err(Error::Invalid {
                what: "dongle serial",
                reason: "1-255 bytes".into(),
            });
        }
        if self.not_after <= self.not_before {
            return Err(Error::Invalid {
                what: "certificate validity",
                reason: "not-after must be later than not-before".into(),
            });
        }
        self.commitment.validate()?;
        self.ledger.validate()?;
        let tail = if kind == DONGLE_KIND_FIDO2 {
            FIDO2_TAIL_LEN
        } else {
            64
        };
        let len = encode_body(kind, serial, self, 0).len() + tail;
        if len > MAX_CERT_LEN {
            return Err(Error::Invalid {
                what: "delegation certificate",
                reason: format!(
                    "{len} bytes encoded, over the maximum of {MAX_CERT_LEN}: fewer or shorter service names"
                ),
            });
        }
        Ok(())
    }

    /// The `clientDataHash` a FIDO2 dongle `serial` is asked to sign for
    /// this request: `SHA-256(domain::DELEGATION || body)`, the body being
    /// the version 2 body with kind byte 2 and counter field 0
    /// (`docs/formats.md`, "FIDO2 delegation certificate").
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`DelegationRequest::check`], with room kept
    /// for the largest assertion.
    pub fn fido2_client_data_hash(&self, serial: &str) -> Result<[u8; 32]> {
        self.check_kind(serial, DONGLE_KIND_FIDO2)?;
        Ok(client_data_hash(&encode_body(
            DONGLE_KIND_FIDO2,
            serial,
            self,
            0,
        )))
    }
}

fn client_data_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(domain::tagged(domain::DELEGATION, body)).into()
}

/// The commitment and ledger head as a version 2 certificate body ends
/// (`docs/formats.md`, "Delegation certificate"), and as the native DELEGATE
/// request carries them (`docs/dongle-protocol.md`, section 4.4).
pub fn encode_commitments(commitment: &Commitment, ledger: &LedgerHead) -> Vec<u8> {
    let mut w = Writer::default();
    commitment.encode(&mut w);
    w.u64(ledger.sequence);
    w.bytes(&ledger.hash);
    w.buf
}

/// Decodes exactly what [`encode_commitments`] writes.
///
/// # Errors
///
/// [`Error::Malformed`] for bytes too short or too long, or a commitment or
/// ledger head that breaks the format's rules.
pub fn decode_commitments(bytes: &[u8]) -> Result<(Commitment, LedgerHead)> {
    let mut r = Reader::new("delegation commitments", bytes);
    let (commitment, ledger) = read_commitments(&mut r)?;
    r.end()?;
    Ok((commitment, ledger))
}

fn read_commitments(r: &mut Reader<'_>) -> Result<(Commitment, LedgerHead)> {
    let commitment = Commitment::decode(r)?;
    let ledger = LedgerHead {
        sequence: r.u64()?,
        hash: r.array()?,
    };
    ledger
        .validate()
        .map_err(|_| r.malformed("ledger head with a sequence and no hash"))?;
    Ok((commitment, ledger))
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
    version: u8,
    proof: Proof,
    /// Length of the signed body at the start of `encoded`.
    body_len: usize,
    encoded: Vec<u8>,
}

/// What signs a certificate's body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Proof {
    /// A native dongle's Ed25519 signature over `domain::DELEGATION || body`.
    Native([u8; 64]),
    /// A FIDO2 assertion over `authData || SHA-256(domain::DELEGATION || body)`.
    Fido2 {
        auth_data: Vec<u8>,
        signature: Vec<u8>,
    },
}

/// The version 2 body (`docs/formats.md`, "Delegation certificate").
fn encode_body(kind: u8, serial: &str, req: &DelegationRequest, counter: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(CERT_VERSION);
    w.u8(kind);
    w.str8(serial);
    w.bytes(&req.nonce);
    w.bytes(req.session_key.as_bytes());
    w.u64(req.not_before.secs());
    w.u64(req.not_after.secs());
    w.u32(counter);
    w.bytes(&encode_commitments(&req.commitment, &req.ledger));
    w.buf
}

impl Certificate {
    /// The device side: signs `req` as dongle `serial` at signature `counter`
    /// (`docs/formats.md`, "Delegation certificate"; Ed25519 per RFC 8032 over
    /// `domain::DELEGATION || body`), in version 2.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`DelegationRequest::check`].
    pub fn sign(
        req: DelegationRequest,
        serial: &str,
        counter: u32,
        dongle: &SecretKey<Dongle>,
    ) -> Result<Certificate> {
        req.check(serial)?;
        let mut encoded = encode_body(DONGLE_KIND_NATIVE, serial, &req, counter);
        let body_len = encoded.len();
        let signature = dongle.sign(&domain::tagged(domain::DELEGATION, &encoded));
        encoded.extend_from_slice(&signature);
        Ok(Certificate {
            serial: serial.to_string(),
            request: req,
            counter,
            version: CERT_VERSION,
            proof: Proof::Native(signature),
            body_len,
            encoded,
        })
    }

    /// The authority side of a FIDO2 dongle: builds a kind 2 certificate
    /// from the assertion the security key returned for
    /// [`DelegationRequest::fido2_client_data_hash`] (`docs/formats.md`,
    /// "FIDO2 delegation certificate"). Checks structure only (call
    /// [`Certificate::verify_by`] before trusting it); `counter` is the
    /// authenticator data's signCount. An ES256 signature must already be
    /// low-S ([`crate::fido2::normalize_es256_signature`]).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`DelegationRequest::fido2_client_data_hash`],
    /// or for a signature that is empty or over [`MAX_SIGNATURE_LEN`] bytes;
    /// [`Error::Malformed`] for authenticator data that is not an
    /// assertion's 37 bytes ([`AuthenticatorData::parse`]).
    pub fn from_fido2_assertion(
        req: DelegationRequest,
        serial: &str,
        auth_data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<Certificate> {
        req.check_kind(serial, DONGLE_KIND_FIDO2)?;
        let parsed = AuthenticatorData::parse(&auth_data)?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE_LEN {
            return Err(Error::Invalid {
                what: "FIDO2 signature",
                reason: format!("1-{MAX_SIGNATURE_LEN} bytes"),
            });
        }
        let body = encode_body(DONGLE_KIND_FIDO2, serial, &req, 0);
        let body_len = body.len();
        let encoded = encode_fido2(body, &auth_data, &signature);
        Ok(Certificate {
            serial: serial.to_string(),
            request: req,
            counter: parsed.sign_count,
            version: CERT_VERSION,
            proof: Proof::Fido2 {
                auth_data,
                signature,
            },
            body_len,
            encoded,
        })
    }

    /// Decodes canonical bytes of version 1 or 2 (`docs/formats.md`,
    /// "Delegation certificate"); call [`Certificate::verify`] before
    /// trusting them. A version 1 certificate reads with the empty
    /// commitment and no ledger head.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for a version other than 1 or 2,
    /// [`Error::UnsupportedDongleKind`] for a dongle kind other than native
    /// or FIDO2,
    /// [`Error::Malformed`] for more than [`MAX_CERT_LEN`] bytes, bytes too
    /// short or too long (trailing bytes are refused), an invalid session
    /// key, an empty serial, an empty validity window, a commitment or
    /// ledger head not in canonical form, or (FIDO2) a body too long to
    /// leave room for the longest assertion, a counter field other than 0, authenticator data that is not an assertion's 37 bytes, or a
    /// signature of 0 or more than [`MAX_SIGNATURE_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Certificate> {
        let mut r = Reader::new("delegation certificate", bytes);
        if bytes.len() > MAX_CERT_LEN {
            return Err(r.malformed("longer than the maximum certificate size"));
        }
        let version = r.u8()?;
        let mut kind = DONGLE_KIND_NATIVE;
        match version {
            CERT_VERSION => match r.u8()? {
                k @ (DONGLE_KIND_NATIVE | DONGLE_KIND_FIDO2) => kind = k,
                other => {
                    return Err(Error::UnsupportedDongleKind {
                        what: "delegation certificate",
                        kind: other,
                        name: "unknown",
                    });
                }
            },
            CERT_VERSION_V1 => {}
            other => {
                return Err(Error::UnsupportedVersion {
                    what: "delegation certificate",
                    version: other,
                    supported: "1 and 2",
                });
            }
        }
        let serial = r.str8()?;
        let nonce = r.array()?;
        let session_key = PublicKey::from_bytes(&r.array()?)?;
        let not_before = UnixTime::from_secs(r.u64()?);
        let not_after = UnixTime::from_secs(r.u64()?);
        let mut counter = r.u32()?;
        let (commitment, ledger) = if version == CERT_VERSION {
            read_commitments(&mut r)?
        } else {
            (Commitment::default(), LedgerHead::default())
        };
        let body_len = bytes.len() - r.remaining();
        let proof = if kind == DONGLE_KIND_FIDO2 {
            // What `from_fido2_assertion` could have built: room for the
            // longest assertion after the body.
            if body_len + FIDO2_TAIL_LEN > MAX_CERT_LEN {
                return Err(r.malformed("FIDO2 certificate body too long for an assertion"));
            }
            if counter != 0 {
                return Err(r.malformed("a FIDO2 certificate's counter field is not 0"));
            }
            let len = usize::from(r.u16()?);
            let auth_data = r.take(len)?.to_vec();
            let parsed = AuthenticatorData::parse(&auth_data)?;
            let len = usize::from(r.u8()?);
            if len == 0 || len > MAX_SIGNATURE_LEN {
                return Err(r.malformed("FIDO2 signature of 0 or more than 72 bytes"));
            }
            let signature = r.take(len)?.to_vec();
            r.end()?;
            counter = parsed.sign_count;
            Proof::Fido2 {
                auth_data,
                signature,
            }
        } else {
            Proof::Native(r.finish::<64>()?)
        };
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
                commitment,
                ledger,
            },
            counter,
            version,
            proof,
            body_len,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks a native dongle's signature with `verify_strict` (RFC 8032
    /// section 5.1.7, with ed25519-dalek's strict checks).
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`] if it does not verify under `dongle`,
    /// [`Error::DongleKindMismatch`] for a FIDO2 certificate.
    pub fn verify(&self, dongle: &PublicKey<Dongle>) -> Result<()> {
        let Proof::Native(signature) = &self.proof else {
            return Err(self.mismatch(DONGLE_KIND_NATIVE));
        };
        let body = &self.encoded[..self.body_len];
        if dongle.verify(&domain::tagged(domain::DELEGATION, body), signature) {
            Ok(())
        } else {
            Err(Error::BadSignature("delegation certificate"))
        }
    }

    /// Checks the certificate against the dongle a license names: the kinds
    /// match, then a native signature as [`Certificate::verify`], or a FIDO2
    /// assertion as [`Fido2Credential::verify_assertion`](crate::Fido2Credential::verify_assertion)
    /// over `clientDataHash = SHA-256(domain::DELEGATION || body)`
    /// (rpIdHash, every flag clear, the signature by the credential's key).
    ///
    /// # Errors
    ///
    /// [`Error::DongleKindMismatch`] when the certificate's kind is not the
    /// identity's; [`Error::BadSignature`] (native) or [`Error::Fido2`]
    /// naming the failed check (FIDO2).
    pub fn verify_by(&self, dongle: &DongleIdentity) -> Result<()> {
        match (dongle, &self.proof) {
            (DongleIdentity::Native(key), Proof::Native(_)) => self.verify(key),
            (
                DongleIdentity::Fido2(cred),
                Proof::Fido2 {
                    auth_data,
                    signature,
                },
            ) => {
                let cdh = client_data_hash(&self.encoded[..self.body_len]);
                cred.verify_assertion(auth_data, &cdh, signature)
            }
            _ => Err(self.mismatch(dongle.kind())),
        }
    }

    fn mismatch(&self, expected: u8) -> Error {
        Error::DongleKindMismatch {
            certificate: "delegation certificate",
            found: kind_name(self.kind()),
            expected: kind_name(expected),
        }
    }

    /// The dongle kind: [`DONGLE_KIND_NATIVE`] (also for version 1) or
    /// [`DONGLE_KIND_FIDO2`].
    pub fn kind(&self) -> u8 {
        match self.proof {
            Proof::Native(_) => DONGLE_KIND_NATIVE,
            Proof::Fido2 { .. } => DONGLE_KIND_FIDO2,
        }
    }

    /// A FIDO2 certificate's authenticator data (`None` for native).
    pub fn fido2_auth_data(&self) -> Option<&[u8]> {
        match &self.proof {
            Proof::Native(_) => None,
            Proof::Fido2 { auth_data, .. } => Some(auth_data),
        }
    }

    /// Checks that `now` lies in the validity window, widened by `leeway`
    /// (whole seconds) on both ends.
    ///
    /// # Errors
    ///
    /// [`Error::NotYetValid`] or [`Error::Expired`].
    pub fn check_time(&self, now: UnixTime, leeway: Duration) -> Result<()> {
        crate::check_window(
            "delegation certificate",
            self.request.not_before,
            self.request.not_after,
            now,
            leeway,
        )
    }

    /// The format version it was encoded in (1 or 2).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The canonical bytes (body and signature).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The dongle's signature: 64 bytes of Ed25519 for a native dongle; for
    /// FIDO2, the assertion's (64-byte Ed25519 or DER ES256).
    pub fn signature(&self) -> &[u8] {
        match &self.proof {
            Proof::Native(signature) => signature,
            Proof::Fido2 { signature, .. } => signature,
        }
    }
}

/// A FIDO2 certificate's bytes: `body || u16 len || authData || u8 len ||
/// signature` (`docs/formats.md`, "FIDO2 delegation certificate"). Callers
/// bound the lengths.
pub(crate) fn encode_fido2(body: Vec<u8>, auth_data: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut w = Writer { buf: body };
    w.u16(auth_data.len() as u16);
    w.bytes(auth_data);
    w.u8(signature.len() as u8);
    w.bytes(signature);
    w.buf
}

/// The bytes of a FIDO2 certificate for `req` with any authenticator data
/// and signature, unchecked: for tests of the decoder's refusals.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn fido2_bytes_unchecked(
    req: &DelegationRequest,
    serial: &str,
    counter_field: u32,
    auth_data: &[u8],
    signature: &[u8],
) -> Vec<u8> {
    encode_fido2(
        encode_body(DONGLE_KIND_FIDO2, serial, req, counter_field),
        auth_data,
        signature,
    )
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

    use crate::merkle::{EMPTY_ROOT, Leaf, LeafSet};
    use std::collections::BTreeMap;

    fn request() -> DelegationRequest {
        let mut req = DelegationRequest::new(
            [0xAB; 32],
            testkeys::session().public(),
            UnixTime::from_secs(1_700_000_000),
            UnixTime::from_secs(1_700_000_600),
        );
        req.commitment = LeafSet::new([
            Leaf::new("backend", "b-1", "n1").unwrap(),
            Leaf::new("backend", "b-2", "n2").unwrap(),
            Leaf::new("muxer", "m-1", "n3").unwrap(),
        ])
        .commitment()
        .unwrap();
        req.ledger = LedgerHead {
            sequence: 42,
            hash: [0x5A; 32],
        };
        req
    }

    /// A version 1 body as the old code wrote it: no kind, commitment or ledger.
    fn v1_bytes(req: &DelegationRequest, counter: u32) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(CERT_VERSION_V1);
        w.str8("TD-0001");
        w.bytes(&req.nonce);
        w.bytes(req.session_key.as_bytes());
        w.u64(req.not_before.secs());
        w.u64(req.not_after.secs());
        w.u32(counter);
        let sig = testkeys::dongle().sign(&domain::tagged(domain::DELEGATION, &w.buf));
        w.bytes(&sig);
        w.buf
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
        let decoded = Certificate::decode(cert.encoded()).unwrap();
        assert_eq!(decoded, cert);
        decoded.verify(&testkeys::dongle().public()).unwrap();
        assert_eq!(decoded.counter, 7);
        assert_eq!(decoded.version(), 2);
        assert_eq!(decoded.request.ledger.sequence, 42);
        assert_eq!(decoded.request.commitment.total(), Some(3));
        let commitments = 32 + 1 + (1 + 7 + 4) + (1 + 5 + 4) + 8 + 32;
        assert_eq!(
            decoded.encoded().len(),
            1 + 1 + 1 + 7 + 32 + 32 + 8 + 8 + 4 + commitments + 64
        );
    }

    #[test]
    fn the_default_request_commits_to_nothing() {
        let req = DelegationRequest::new(
            [1; 32],
            testkeys::session().public(),
            UnixTime::from_secs(1),
            UnixTime::from_secs(2),
        );
        assert_eq!(req.commitment.root, EMPTY_ROOT);
        assert!(req.commitment.is_empty() && req.ledger.is_none());
        let cert = Certificate::sign(req.clone(), "TD-0001", 1, &testkeys::dongle()).unwrap();
        let tail = &cert.encoded()[cert.encoded().len() - 64 - (32 + 1 + 8 + 32)..];
        assert_eq!(&tail[..32], &EMPTY_ROOT);
        assert_eq!(&tail[32..32 + 1 + 8 + 32], &[0; 41]);
        assert_eq!(Certificate::decode(cert.encoded()).unwrap().request, req);
    }

    #[test]
    fn version_1_certificates_still_read_as_committing_to_nothing() {
        let req = DelegationRequest::new(
            [0xAB; 32],
            testkeys::session().public(),
            UnixTime::from_secs(10),
            UnixTime::from_secs(20),
        );
        let bytes = v1_bytes(&req, 3);
        let cert = Certificate::decode(&bytes).unwrap();
        cert.verify(&testkeys::dongle().public()).unwrap();
        assert_eq!(cert.version(), 1);
        assert_eq!(cert.request, req);
        assert_eq!(cert.encoded(), &bytes[..]);
    }

    #[test]
    fn unknown_versions_and_kinds_are_refused_by_name() {
        let cert = Certificate::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
        let mut bytes = cert.encoded().to_vec();
        bytes[0] = 3;
        let err = Certificate::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion { version: 3, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("delegation certificate format version 3"),
            "{err}"
        );
        let mut bytes = cert.encoded().to_vec();
        // A native certificate relabelled FIDO2: its counter field is not 0.
        bytes[1] = DONGLE_KIND_FIDO2;
        assert!(matches!(
            Certificate::decode(&bytes),
            Err(Error::Malformed { .. })
        ));
        bytes[1] = 9;
        assert!(matches!(
            Certificate::decode(&bytes),
            Err(Error::UnsupportedDongleKind { kind: 9, .. })
        ));
    }

    #[test]
    fn commitments_are_bounded_and_canonical() {
        // 64 services of long names do not fit one dongle message: refused at signing.
        let mut req = request();
        req.commitment.counts = (0..64)
            .map(|i| (format!("{i:02}{}", "s".repeat(40)), 1))
            .collect();
        assert!(matches!(
            Certificate::sign(req.clone(), "TD-0001", 1, &testkeys::dongle()),
            Err(Error::Invalid {
                what: "delegation certificate",
                ..
            })
        ));
        // Ten services of ordinary names do.
        req.commitment.counts = (0..10).map(|i| (format!("service-{i}"), 5)).collect();
        Certificate::sign(req.clone(), "TD-0001", 1, &testkeys::dongle()).unwrap();
        // Zero counts, the empty root with counts, a sequence with no hash: refused.
        let mut bad = request();
        bad.commitment.counts.insert("zero".into(), 0);
        assert!(Certificate::sign(bad, "TD-0001", 1, &testkeys::dongle()).is_err());
        let mut bad = request();
        bad.commitment.root = EMPTY_ROOT;
        assert!(Certificate::sign(bad, "TD-0001", 1, &testkeys::dongle()).is_err());
        let mut bad = request();
        bad.ledger.hash = [0; 32];
        assert!(Certificate::sign(bad, "TD-0001", 1, &testkeys::dongle()).is_err());
        // Out-of-order names on the wire are refused by the decoder.
        let (c, l) = (request().commitment, request().ledger);
        let mut bytes = encode_commitments(&c, &l);
        assert_eq!(decode_commitments(&bytes).unwrap(), (c, l));
        let swapped: BTreeMap<String, u32> = [("backend".into(), 2), ("muxer".into(), 1)].into();
        assert_eq!(request().commitment.counts, swapped);
        // backend (1+7+4 bytes) then muxer (1+5+4): put muxer first.
        let entries = bytes[33..33 + 22].to_vec();
        bytes[33..33 + 10].copy_from_slice(&entries[12..]);
        bytes[43..33 + 22].copy_from_slice(&entries[..12]);
        assert!(decode_commitments(&bytes).is_err());
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
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok(c) = Certificate::decode(&bytes) {
                proptest::prop_assert_eq!(c.encoded(), &bytes[..]);
            }
        }

        #[test]
        fn decoder_never_panics_on_mutated_certificates(
            edits in proptest::collection::vec((0usize..512, proptest::num::u8::ANY), 0..6),
            cut in 0usize..512,
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
                if c.version() != CERT_VERSION {
                    return Ok(());
                }
                let again =
                    Certificate::sign(c.request.clone(), &c.serial, c.counter, &testkeys::dongle())
                        .unwrap();
                let body = bytes.len() - 64;
                proptest::prop_assert_eq!(&again.encoded()[..body], &bytes[..body]);
            }
        }
    }
}
