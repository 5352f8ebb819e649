//! A site request file (the C2V analogue): the dongle's signed statement of
//! what a site runs, for the vendor to issue an update against.
//!
//! `tether site request` asks the running tetherd to have its dongle sign
//! the installed license's id and sequence, a fresh 32-byte nonce and the
//! authority's time ([`SiteRequestAsk`]); the dongle adds its kind, serial,
//! public key and signature counter (raised and kept in flash first) and
//! signs `domain::SITE_REQUEST || body`. The vendor checks it with
//! [`SiteRequest::verify_signature`] (the dongle key it carries) and
//! [`SiteRequest::verify`] against the license it issued.
//!
//! Encoding (`docs/formats.md`, "Site request"): version byte 1, dongle kind
//! (1: native), serial (`str8`), dongle public key (32), the ask as the
//! native SITE_REQUEST command carries it (64 bytes), the counter (u32),
//! then the dongle's 64-byte Ed25519 signature. No trailing bytes.

use crate::codec::{Reader, Writer};
use crate::delegation::DONGLE_KIND_NATIVE;
use crate::key::{Dongle, PublicKey, SecretKey};
use crate::receipt::{check_serial, read_header};
use crate::{Error, License, LicenseId, Result, UnixTime, domain};

/// Version byte of the site request body.
pub const SITE_REQUEST_VERSION: u8 = 1;
/// Length of an encoded [`SiteRequestAsk`]: license id (16), license
/// sequence (8), nonce (32), requested at (8).
pub const SITE_REQUEST_ASK_LEN: usize = 16 + 8 + 32 + 8;
/// The longest encoded site request: a 255-byte serial.
pub const MAX_SITE_REQUEST_LEN: usize = 2 + 1 + 255 + 32 + SITE_REQUEST_ASK_LEN + 4 + 64;

/// What the authority asks the dongle to sign: exactly the payload of the
/// native SITE_REQUEST command (`docs/dongle-protocol.md`, section 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteRequestAsk {
    /// The license the site serves.
    pub license_id: LicenseId,
    /// Its installed sequence.
    pub license_sequence: u64,
    /// A fresh nonce from the CSPRNG (`tether site request` draws it).
    pub nonce: [u8; 32],
    /// When the authority asked, by its own clock (the dongle has none).
    pub requested_at: UnixTime,
}

impl SiteRequestAsk {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.license_id.0);
        w.u64(self.license_sequence);
        w.bytes(&self.nonce);
        w.u64(self.requested_at.secs());
    }

    fn read(r: &mut Reader<'_>) -> Result<SiteRequestAsk> {
        Ok(SiteRequestAsk {
            license_id: LicenseId(r.array()?),
            license_sequence: r.u64()?,
            nonce: r.array()?,
            requested_at: UnixTime::from_secs(r.u64()?),
        })
    }

    /// The [`SITE_REQUEST_ASK_LEN`] bytes the native command carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }

    /// Decodes exactly [`SITE_REQUEST_ASK_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for any other length.
    pub fn decode(bytes: &[u8]) -> Result<SiteRequestAsk> {
        let mut r = Reader::new("site request ask", bytes);
        let ask = SiteRequestAsk::read(&mut r)?;
        r.end()?;
        Ok(ask)
    }
}

/// A dongle-signed site request, as decoded from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRequest {
    /// The dongle's serial.
    pub serial: String,
    /// The dongle's public key (checked against the license by [`SiteRequest::verify`]).
    pub dongle_key: PublicKey<Dongle>,
    /// What the authority asked.
    pub ask: SiteRequestAsk,
    /// The dongle's signature counter after this signature.
    pub counter: u32,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

impl SiteRequest {
    /// The device side: signs `ask` as dongle `serial` with key `dongle` at
    /// signature `counter` (Ed25519 over `domain::SITE_REQUEST || body`).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if `serial` is not 1 to 255 printable ASCII bytes.
    pub fn sign(
        ask: SiteRequestAsk,
        serial: &str,
        counter: u32,
        dongle: &SecretKey<Dongle>,
    ) -> Result<SiteRequest> {
        check_serial(serial, "site request")?;
        let dongle_key = dongle.public();
        let mut w = Writer::default();
        w.u8(SITE_REQUEST_VERSION);
        w.u8(DONGLE_KIND_NATIVE);
        w.str8(serial);
        w.bytes(dongle_key.as_bytes());
        ask.write(&mut w);
        w.u32(counter);
        let mut encoded = w.buf;
        let signature = dongle.sign(&domain::tagged(domain::SITE_REQUEST, &encoded));
        encoded.extend_from_slice(&signature);
        Ok(SiteRequest {
            serial: serial.to_string(),
            dongle_key,
            ask,
            counter,
            signature,
            encoded,
        })
    }

    /// Decodes the bytes; checks structure only.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for another version byte,
    /// [`Error::UnsupportedDongleKind`] for a kind other than native,
    /// [`Error::Malformed`] for bytes too short or too long, a serial that
    /// is not printable ASCII, or a key that is not an Ed25519 point.
    pub fn decode(bytes: &[u8]) -> Result<SiteRequest> {
        const WHAT: &str = "site request";
        let mut r = Reader::new(WHAT, bytes);
        if bytes.len() > MAX_SITE_REQUEST_LEN {
            return Err(r.malformed("longer than the largest site request"));
        }
        read_header(&mut r, WHAT, SITE_REQUEST_VERSION)?;
        let serial = r.str8()?;
        check_serial(&serial, WHAT)?;
        let dongle_key = PublicKey::from_bytes(&r.array()?)
            .map_err(|_| r.malformed("the dongle key is not an Ed25519 point"))?;
        let ask = SiteRequestAsk::read(&mut r)?;
        let counter = r.u32()?;
        let signature = r.finish::<64>()?;
        Ok(SiteRequest {
            serial,
            dongle_key,
            ask,
            counter,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks the signature under the dongle key the request carries
    /// (`verify_strict`): the bytes are as that dongle signed them. Whether
    /// that dongle is the licensed one is [`SiteRequest::verify`]'s job.
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`] when it does not verify.
    pub fn verify_signature(&self) -> Result<()> {
        let body = &self.encoded[..self.encoded.len() - 64];
        if self
            .dongle_key
            .verify(&domain::tagged(domain::SITE_REQUEST, body), &self.signature)
        {
            Ok(())
        } else {
            Err(Error::BadSignature("site request"))
        }
    }

    /// The vendor's check against `license` (verified by the caller under
    /// the vendor key): the signature holds, the dongle (serial and key) is
    /// the one the license names, and the request names that license's id.
    /// The installed sequence is reported, not compared: the site may run
    /// a later version than the file at hand.
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`] when the signature does not hold;
    /// [`Error::Invalid`] naming the mismatch.
    pub fn verify(&self, license: &License) -> Result<()> {
        self.verify_signature()?;
        let t = license.terms();
        let invalid = |reason: String| Error::Invalid {
            what: "site request",
            reason,
        };
        let Some(licensed_key) = t.dongle.native() else {
            return Err(invalid(
                "the license names a FIDO2 dongle, and this request is a native one".into(),
            ));
        };
        if self.serial != t.dongle_serial || self.dongle_key != *licensed_key {
            return Err(invalid(format!(
                "signed by dongle {} (key {}), the license names {} (key {})",
                self.serial,
                self.dongle_key.fingerprint(),
                t.dongle_serial,
                licensed_key.fingerprint()
            )));
        }
        if self.ask.license_id != t.id {
            return Err(invalid(format!(
                "the site serves license {}, not {}",
                self.ask.license_id, t.id
            )));
        }
        Ok(())
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

    fn ask() -> SiteRequestAsk {
        SiteRequestAsk {
            license_id: LicenseId([0x11; 16]),
            license_sequence: 4,
            nonce: [7; 32],
            requested_at: UnixTime::from_secs(5000),
        }
    }

    #[test]
    fn exact_bytes_round_trip_and_tampering() {
        let bytes = ask().encode();
        assert_eq!(bytes.len(), SITE_REQUEST_ASK_LEN);
        assert_eq!(&bytes[16..24], &4u64.to_be_bytes());
        assert_eq!(&bytes[24..56], &[7; 32]);
        assert_eq!(SiteRequestAsk::decode(&bytes).unwrap(), ask());
        assert!(SiteRequestAsk::decode(&bytes[1..]).is_err());

        let req = SiteRequest::sign(ask(), "TD-0001", 12, &testkeys::dongle()).unwrap();
        let enc = req.encoded();
        assert_eq!(&enc[..3], &[1, 1, 7]);
        assert_eq!(&enc[10..42], testkeys::dongle().public().as_bytes());
        assert_eq!(&enc[42..106], &bytes[..]);
        assert_eq!(&enc[106..110], &[0, 0, 0, 12]);
        assert_eq!(enc.len(), 110 + 64);
        let back = SiteRequest::decode(enc).unwrap();
        assert_eq!(back, req);
        back.verify_signature().unwrap();
        let license = crate::license::tests::sample_terms()
            .sign(&testkeys::vendor())
            .unwrap();
        back.verify(&license).unwrap();
        // Every byte of the body is covered.
        for i in 0..enc.len() - 64 {
            let mut t = enc.to_vec();
            t[i] ^= 1;
            if let Ok(d) = SiteRequest::decode(&t) {
                assert!(d.verify(&license).is_err(), "byte {i}");
            }
        }
        // A receipt signature over the same body is not a request's.
        let body = &enc[..enc.len() - 64];
        let mut forged = body.to_vec();
        forged.extend_from_slice(&testkeys::dongle().sign(&domain::tagged(domain::RECEIPT, body)));
        assert!(
            SiteRequest::decode(&forged)
                .unwrap()
                .verify_signature()
                .is_err()
        );
        // Signed by another dongle: self-consistent, but not the licensed one.
        let other = SiteRequest::sign(ask(), "TD-0001", 1, &SecretKey::generate()).unwrap();
        other.verify_signature().unwrap();
        assert!(matches!(other.verify(&license), Err(Error::Invalid { .. })));
        let mut other_id = ask();
        other_id.license_id = LicenseId([2; 16]);
        let other_id = SiteRequest::sign(other_id, "TD-0001", 1, &testkeys::dongle()).unwrap();
        assert!(
            other_id
                .verify(&license)
                .unwrap_err()
                .to_string()
                .contains("serves license 0202")
        );
        let longest = SiteRequest::sign(ask(), &"S".repeat(255), 1, &testkeys::dongle()).unwrap();
        assert_eq!(longest.encoded().len(), MAX_SITE_REQUEST_LEN);
        assert_eq!(MAX_SITE_REQUEST_LEN, 422);
        assert!(SiteRequest::decode(longest.encoded()).is_ok());
        let mut long = enc.to_vec();
        long.push(1);
        assert!(SiteRequest::decode(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok(r) = SiteRequest::decode(&bytes) {
                proptest::prop_assert_eq!(r.encoded(), &bytes[..]);
                let _ = r.verify_signature();
            }
            let _ = SiteRequestAsk::decode(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_mutated_requests(
            edits in proptest::collection::vec((0usize..256, proptest::num::u8::ANY), 0..6),
            cut in 0usize..256,
        ) {
            let req = SiteRequest::sign(ask(), "TD-0001", 7, &testkeys::dongle()).unwrap();
            let mut bytes = req.encoded().to_vec();
            let len = bytes.len();
            for (at, b) in edits {
                bytes[at % len] = b;
            }
            bytes.truncate(cut);
            if let Ok(r) = SiteRequest::decode(&bytes) {
                proptest::prop_assert_eq!(r.encoded(), &bytes[..]);
                let _ = r.verify_signature();
            }
        }
    }
}
