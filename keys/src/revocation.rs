//! A revocation: the vendor's signed word that a license stops serving.
//!
//! Encoding (`docs/formats.md`, "Revocation"): version byte 1, the license
//! id (16 bytes), the vendor key's fingerprint (32 bytes), the highest
//! sequence revoked (u64, big-endian: every version of the license up to and
//! including it), when the vendor signed it (u64 UNIX seconds), then the
//! vendor's 64-byte Ed25519 signature over `domain::REVOCATION || body`.
//! 121 bytes in all. A later version of the license (higher sequence) is not
//! revoked by it.

use crate::codec::{Reader, Writer};
use crate::key::{Fingerprint, PublicKey, SecretKey, Vendor};
use crate::{Error, LicenseId, Result, UnixTime, domain};

/// Version byte of the revocation body.
pub const REVOCATION_VERSION: u8 = 1;
/// Length of an encoded revocation, signature included.
pub const REVOCATION_LEN: usize = 1 + 16 + 32 + 8 + 8 + 64;

/// A vendor-signed revocation, as decoded from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked license.
    pub license_id: LicenseId,
    /// Every sequence up to and including this one is revoked.
    pub through_sequence: u64,
    /// When the vendor signed it.
    pub issued_at: UnixTime,
    vendor: Fingerprint,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

impl Revocation {
    /// Signs a revocation of `license_id` up to `through_sequence`.
    pub fn sign(
        license_id: LicenseId,
        through_sequence: u64,
        issued_at: UnixTime,
        vendor: &SecretKey<Vendor>,
    ) -> Revocation {
        let fingerprint = vendor.public().fingerprint();
        let mut w = Writer::default();
        w.u8(REVOCATION_VERSION);
        w.bytes(&license_id.0);
        w.bytes(&fingerprint.0);
        w.u64(through_sequence);
        w.u64(issued_at.secs());
        let mut encoded = w.buf;
        let signature = vendor.sign(&domain::tagged(domain::REVOCATION, &encoded));
        encoded.extend_from_slice(&signature);
        Revocation {
            license_id,
            through_sequence,
            issued_at,
            vendor: fingerprint,
            signature,
            encoded,
        }
    }

    /// Decodes the bytes; checks structure only (see [`Revocation::verify`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for another version byte,
    /// [`Error::Malformed`] for bytes too short or too long.
    pub fn decode(bytes: &[u8]) -> Result<Revocation> {
        let mut r = Reader::new("revocation", bytes);
        let version = r.u8()?;
        if version != REVOCATION_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "revocation",
                version,
                supported: "1",
            });
        }
        let license_id = LicenseId(r.array()?);
        let vendor = Fingerprint(r.array()?);
        let through_sequence = r.u64()?;
        let issued_at = UnixTime::from_secs(r.u64()?);
        let signature: [u8; 64] = r.finish()?;
        Ok(Revocation {
            license_id,
            through_sequence,
            issued_at,
            vendor,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks the vendor signature.
    ///
    /// # Errors
    ///
    /// [`Error::WrongVendor`] when signed by another vendor key,
    /// [`Error::BadSignature`] when the signature does not hold.
    pub fn verify(&self, vendor: &PublicKey<Vendor>) -> Result<()> {
        domain::verify_vendor_signed(
            vendor,
            self.vendor,
            &self.encoded,
            &self.signature,
            domain::REVOCATION,
            "revocation",
        )
    }

    /// The signed bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys;

    #[test]
    fn round_trips_verifies_and_refuses_tampering() {
        let id = LicenseId([7; 16]);
        let rev = Revocation::sign(id, 3, UnixTime::from_secs(1000), &testkeys::vendor());
        assert_eq!(rev.encoded().len(), REVOCATION_LEN);
        let back = Revocation::decode(rev.encoded()).unwrap();
        assert_eq!(back, rev);
        back.verify(&testkeys::vendor().public()).unwrap();
        let other = SecretKey::<Vendor>::generate();
        assert!(back.verify(&other.public()).is_err());
        let mut bytes = rev.encoded().to_vec();
        bytes[50] ^= 1;
        assert!(
            Revocation::decode(&bytes)
                .unwrap()
                .verify(&testkeys::vendor().public())
                .is_err()
        );
        bytes[0] = 2;
        assert!(Revocation::decode(&bytes).is_err());
        assert!(Revocation::decode(&rev.encoded()[..100]).is_err());
        // A license signature never passes as a revocation one: distinct tags.
        assert_ne!(domain::LICENSE, domain::REVOCATION);
    }
}
