//! A revocation receipt: the dongle's signed word that the authority it
//! serves dropped a license.
//!
//! When tetherd installs a vendor-signed [`Revocation`] that stops the
//! license it serves, it asks the dongle to sign a receipt over the license
//! id, the sequence it served, the revocation (its "through" sequence and
//! the SHA-256 of its bytes) and when it installed it (its own clock); the
//! dongle adds its kind, serial and signature counter (raised and kept in
//! flash first, as for a certificate) and signs `domain::RECEIPT || body`
//! with the key the license names. The operator sends the file back; the vendor checks it
//! with [`Receipt::verify`] against the license it issued, to move the
//! license to another site or refund it.
//!
//! Encoding (`docs/formats.md`, "Revocation receipt"): version byte 1,
//! dongle kind (1: native), serial (`str8`), the request as the native
//! RECEIPT command carries it ([`ReceiptRequest`], 72 bytes), the counter
//! (u32), then the dongle's 64-byte Ed25519 signature. No trailing bytes.

use sha2::{Digest as _, Sha256};

use crate::codec::{Reader, Writer};
use crate::delegation::{DONGLE_KIND_FIDO2, DONGLE_KIND_NATIVE};
use crate::key::{Dongle, PublicKey, SecretKey};
use crate::{Error, License, LicenseId, Result, Revocation, UnixTime, domain};

/// Version byte of the receipt body.
pub const RECEIPT_VERSION: u8 = 1;
/// Length of an encoded [`ReceiptRequest`]: license id (16), license
/// sequence (8), revoked through (8), revocation SHA-256 (32), installed at (8).
pub const RECEIPT_REQUEST_LEN: usize = 16 + 8 + 8 + 32 + 8;
/// The longest encoded receipt: a 255-byte serial.
pub const MAX_RECEIPT_LEN: usize = 2 + 1 + 255 + RECEIPT_REQUEST_LEN + 4 + 64;

/// What the authority asks the dongle to sign for a revocation: exactly the
/// payload of the native RECEIPT command (`docs/dongle-protocol.md`,
/// section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptRequest {
    /// The revoked license.
    pub license_id: LicenseId,
    /// The sequence of the license the authority served when it dropped it.
    pub license_sequence: u64,
    /// The revocation's "through" sequence.
    pub revoked_through: u64,
    /// SHA-256 of the revocation's 121 signed bytes.
    pub revocation_sha256: [u8; 32],
    /// When the authority installed the revocation, by its own clock (the
    /// dongle has none): informational.
    pub installed_at: UnixTime,
}

impl ReceiptRequest {
    /// The request for `revocation`, installed at `now` while the authority
    /// served `license_sequence`.
    pub fn for_revocation(
        revocation: &Revocation,
        license_sequence: u64,
        now: UnixTime,
    ) -> ReceiptRequest {
        ReceiptRequest {
            license_id: revocation.license_id,
            license_sequence,
            revoked_through: revocation.through_sequence,
            revocation_sha256: Sha256::digest(revocation.encoded()).into(),
            installed_at: now,
        }
    }

    fn write(&self, w: &mut Writer) {
        w.bytes(&self.license_id.0);
        w.u64(self.license_sequence);
        w.u64(self.revoked_through);
        w.bytes(&self.revocation_sha256);
        w.u64(self.installed_at.secs());
    }

    fn read(r: &mut Reader<'_>) -> Result<ReceiptRequest> {
        Ok(ReceiptRequest {
            license_id: LicenseId(r.array()?),
            license_sequence: r.u64()?,
            revoked_through: r.u64()?,
            revocation_sha256: r.array()?,
            installed_at: UnixTime::from_secs(r.u64()?),
        })
    }

    /// The [`RECEIPT_REQUEST_LEN`] bytes the native RECEIPT command carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }

    /// Decodes exactly [`RECEIPT_REQUEST_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for any other length.
    pub fn decode(bytes: &[u8]) -> Result<ReceiptRequest> {
        let mut r = Reader::new("receipt request", bytes);
        let req = ReceiptRequest::read(&mut r)?;
        r.end()?;
        Ok(req)
    }
}

/// Reads a dongle-signed document's version and kind bytes: only `version`
/// and the native kind are read by this build.
pub(crate) fn read_header(r: &mut Reader<'_>, what: &'static str, version: u8) -> Result<()> {
    let found = r.u8()?;
    if found != version {
        return Err(Error::UnsupportedVersion {
            what,
            version: found,
            supported: "1",
        });
    }
    match r.u8()? {
        DONGLE_KIND_NATIVE => Ok(()),
        kind => Err(Error::UnsupportedDongleKind {
            what,
            kind,
            name: if kind == DONGLE_KIND_FIDO2 {
                "FIDO2 assertion"
            } else {
                "unknown"
            },
        }),
    }
}

/// Checks a dongle serial: 1 to 255 printable ASCII bytes.
pub(crate) fn check_serial(serial: &str, what: &'static str) -> Result<()> {
    if serial.is_empty() || serial.len() > 255 || !serial.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Malformed {
            what,
            reason: "the serial is not 1-255 printable ASCII bytes",
        });
    }
    Ok(())
}

/// A dongle-signed revocation receipt, as decoded from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The dongle's serial.
    pub serial: String,
    /// What the authority asked.
    pub request: ReceiptRequest,
    /// The dongle's signature counter after this signature.
    pub counter: u32,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

fn encode_body(serial: &str, request: &ReceiptRequest, counter: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(RECEIPT_VERSION);
    w.u8(DONGLE_KIND_NATIVE);
    w.str8(serial);
    request.write(&mut w);
    w.u32(counter);
    w.buf
}

impl Receipt {
    /// The device side: signs `request` as dongle `serial` at signature
    /// `counter` (Ed25519, RFC 8032, over `domain::RECEIPT || body`).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if `serial` is not 1 to 255 printable ASCII bytes.
    pub fn sign(
        request: ReceiptRequest,
        serial: &str,
        counter: u32,
        dongle: &SecretKey<Dongle>,
    ) -> Result<Receipt> {
        check_serial(serial, "revocation receipt")?;
        let mut encoded = encode_body(serial, &request, counter);
        let signature = dongle.sign(&domain::tagged(domain::RECEIPT, &encoded));
        encoded.extend_from_slice(&signature);
        Ok(Receipt {
            serial: serial.to_string(),
            request,
            counter,
            signature,
            encoded,
        })
    }

    /// Decodes the bytes; checks structure only (see [`Receipt::verify`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for another version byte,
    /// [`Error::UnsupportedDongleKind`] for a kind other than native,
    /// [`Error::Malformed`] for bytes too short or too long or a serial
    /// that is not printable ASCII.
    pub fn decode(bytes: &[u8]) -> Result<Receipt> {
        const WHAT: &str = "revocation receipt";
        let mut r = Reader::new(WHAT, bytes);
        if bytes.len() > MAX_RECEIPT_LEN {
            return Err(r.malformed("longer than the largest receipt"));
        }
        read_header(&mut r, WHAT, RECEIPT_VERSION)?;
        let serial = r.str8()?;
        check_serial(&serial, WHAT)?;
        let request = ReceiptRequest::read(&mut r)?;
        let counter = r.u32()?;
        let signature = r.finish::<64>()?;
        Ok(Receipt {
            serial,
            request,
            counter,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks the dongle's signature alone (`verify_strict`).
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`] if it does not verify under `dongle`.
    pub fn verify_signature(&self, dongle: &PublicKey<Dongle>) -> Result<()> {
        let body = &self.encoded[..self.encoded.len() - 64];
        if dongle.verify(&domain::tagged(domain::RECEIPT, body), &self.signature) {
            Ok(())
        } else {
            Err(Error::BadSignature("revocation receipt"))
        }
    }

    /// The vendor's check, against `license` (which the caller has verified
    /// under the vendor key): the receipt is for this license id, signed by
    /// the dongle the license names (serial and key), and proves the license
    /// dropped: the sequence served and `license`'s own sequence are both
    /// covered by the revocation.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the mismatch (another license, another
    /// dongle, a sequence the revocation does not cover);
    /// [`Error::BadSignature`] when the signature does not hold.
    pub fn verify(&self, license: &License) -> Result<()> {
        let t = license.terms();
        let invalid = |reason: String| Error::Invalid {
            what: "revocation receipt",
            reason,
        };
        if self.request.license_id != t.id {
            return Err(invalid(format!(
                "it is for license {}, not {}",
                self.request.license_id, t.id
            )));
        }
        if self.serial != t.dongle_serial {
            return Err(invalid(format!(
                "signed by dongle {}, the license names {}",
                self.serial, t.dongle_serial
            )));
        }
        let Some(dongle_key) = t.dongle.native() else {
            return Err(invalid(
                "the license names a FIDO2 dongle, and this receipt is a native one".into(),
            ));
        };
        self.verify_signature(dongle_key)?;
        if self.request.license_sequence > self.request.revoked_through {
            return Err(invalid(format!(
                "the site served sequence {}, later than the revocation's {}",
                self.request.license_sequence, self.request.revoked_through
            )));
        }
        if t.sequence > self.request.revoked_through {
            return Err(invalid(format!(
                "the revocation covers sequences up to {}, not this license's {}",
                self.request.revoked_through, t.sequence
            )));
        }
        Ok(())
    }

    /// Checks that the receipt answers `revocation` (same bytes, by SHA-256).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it answers another revocation.
    pub fn answers(&self, revocation: &Revocation) -> Result<()> {
        let expected: [u8; 32] = Sha256::digest(revocation.encoded()).into();
        if expected == self.request.revocation_sha256 {
            Ok(())
        } else {
            Err(Error::Invalid {
                what: "revocation receipt",
                reason: "it answers another revocation".into(),
            })
        }
    }

    /// The signed bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testkeys;

    fn request() -> ReceiptRequest {
        let rev = Revocation::sign(
            LicenseId([1; 16]),
            2,
            UnixTime::from_secs(1000),
            &testkeys::vendor(),
        );
        ReceiptRequest::for_revocation(&rev, 2, UnixTime::from_secs(2000))
    }

    #[test]
    fn exact_bytes_round_trip_and_tampering() {
        let req = request();
        let bytes = req.encode();
        assert_eq!(bytes.len(), RECEIPT_REQUEST_LEN);
        assert_eq!(&bytes[..16], &[1; 16]);
        assert_eq!(
            &bytes[16..32],
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(&bytes[64..], &2000u64.to_be_bytes());
        assert_eq!(ReceiptRequest::decode(&bytes).unwrap(), req);
        assert!(ReceiptRequest::decode(&bytes[..71]).is_err());

        let receipt = Receipt::sign(req, "TD-0001", 9, &testkeys::dongle()).unwrap();
        let enc = receipt.encoded();
        assert_eq!(&enc[..3], &[1, 1, 7]);
        assert_eq!(&enc[3..10], b"TD-0001");
        assert_eq!(&enc[10..82], &bytes[..]);
        assert_eq!(&enc[82..86], &[0, 0, 0, 9]);
        assert_eq!(enc.len(), 86 + 64);
        let back = Receipt::decode(enc).unwrap();
        assert_eq!(back, receipt);
        back.verify_signature(&testkeys::dongle().public()).unwrap();
        // Another counter: the signature no longer holds.
        let mut other = enc.to_vec();
        other[85] = 10;
        assert!(matches!(
            Receipt::decode(&other)
                .unwrap()
                .verify_signature(&testkeys::dongle().public()),
            Err(Error::BadSignature(_))
        ));
        // A presence or certificate signature never passes as a receipt.
        let body = &enc[..enc.len() - 64];
        let mut forged = body.to_vec();
        forged
            .extend_from_slice(&testkeys::dongle().sign(&domain::tagged(domain::DELEGATION, body)));
        assert!(
            Receipt::decode(&forged)
                .unwrap()
                .verify_signature(&testkeys::dongle().public())
                .is_err()
        );
        let mut v2 = enc.to_vec();
        v2[0] = 2;
        assert!(matches!(
            Receipt::decode(&v2),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        let mut fido = enc.to_vec();
        fido[1] = DONGLE_KIND_FIDO2;
        assert!(matches!(
            Receipt::decode(&fido),
            Err(Error::UnsupportedDongleKind { kind: 2, .. })
        ));
        let mut long = enc.to_vec();
        long.push(0);
        assert!(Receipt::decode(&long).is_err());
        assert!(Receipt::sign(req, "", 1, &testkeys::dongle()).is_err());
        // The longest serial gives the longest receipt, which decodes.
        let longest = Receipt::sign(req, &"S".repeat(255), 1, &testkeys::dongle()).unwrap();
        assert_eq!(longest.encoded().len(), MAX_RECEIPT_LEN);
        assert_eq!(MAX_RECEIPT_LEN, 398);
        assert!(Receipt::decode(longest.encoded()).is_ok());
        assert!(Receipt::sign(req, &"S".repeat(256), 1, &testkeys::dongle()).is_err());
        assert!(Receipt::sign(req, "a b", 1, &testkeys::dongle()).is_err());
    }

    #[test]
    fn the_vendor_check_names_each_mismatch() {
        let vendor = testkeys::vendor();
        let terms = |seq: u64, id: [u8; 16]| {
            let mut t = crate::license::tests::sample_terms();
            t.id = LicenseId(id);
            t.sequence = seq;
            t.sign(&vendor).unwrap()
        };
        let lic = terms(2, [1; 16]);
        let serial = lic.terms().dongle_serial.clone();
        let receipt = Receipt::sign(request(), &serial, 3, &testkeys::dongle()).unwrap();
        receipt.verify(&lic).unwrap();
        // An earlier version of the license is covered too; a later one is not.
        receipt.verify(&terms(1, [1; 16])).unwrap();
        let err = receipt.verify(&terms(3, [1; 16])).unwrap_err().to_string();
        assert!(err.contains("up to 2"), "{err}");
        let err = receipt.verify(&terms(2, [5; 16])).unwrap_err().to_string();
        assert!(err.contains("not 0505"), "{err}");
        // Signed by another dongle key under the right serial.
        let forged = Receipt::sign(request(), &serial, 3, &SecretKey::generate()).unwrap();
        assert!(matches!(forged.verify(&lic), Err(Error::BadSignature(_))));
        // Under another serial.
        let other = Receipt::sign(request(), "TD-OTHER", 3, &testkeys::dongle()).unwrap();
        assert!(
            other
                .verify(&lic)
                .unwrap_err()
                .to_string()
                .contains("TD-OTHER")
        );
        // A site that served a later sequence than the revocation covers.
        let mut later = request();
        later.license_sequence = 3;
        let later = Receipt::sign(later, &serial, 3, &testkeys::dongle()).unwrap();
        assert!(
            later
                .verify(&lic)
                .unwrap_err()
                .to_string()
                .contains("later")
        );
        // Which revocation it answers.
        let rev = Revocation::sign(LicenseId([1; 16]), 2, UnixTime::from_secs(1000), &vendor);
        receipt.answers(&rev).unwrap();
        let rev2 = Revocation::sign(LicenseId([1; 16]), 2, UnixTime::from_secs(1001), &vendor);
        assert!(receipt.answers(&rev2).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok(r) = Receipt::decode(&bytes) {
                proptest::prop_assert_eq!(r.encoded(), &bytes[..]);
            }
            let _ = ReceiptRequest::decode(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_mutated_receipts(
            edits in proptest::collection::vec((0usize..256, proptest::num::u8::ANY), 0..6),
            cut in 0usize..256,
        ) {
            let receipt = Receipt::sign(request(), "TD-0001", 7, &testkeys::dongle()).unwrap();
            let mut bytes = receipt.encoded().to_vec();
            let len = bytes.len();
            for (at, b) in edits {
                bytes[at % len] = b;
            }
            bytes.truncate(cut);
            if let Ok(r) = Receipt::decode(&bytes) {
                proptest::prop_assert_eq!(r.encoded(), &bytes[..]);
                let again = Receipt::sign(r.request, &r.serial, r.counter, &testkeys::dongle()).unwrap();
                proptest::prop_assert_eq!(
                    r.verify_signature(&testkeys::dongle().public()).is_ok(),
                    again.encoded() == &bytes[..]
                );
            }
        }
    }
}
