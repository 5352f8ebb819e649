//! The license: what the vendor root signs for one customer and one dongle.
//!
//! Encoding (`docs/formats.md`, "License"): the canonical body, then the
//! vendor's 64-byte Ed25519 signature over `domain::LICENSE || body`.
//! Features and services are sorted and unique, so every license has exactly
//! one encoding; the decoder refuses any other order.
//!
//! Version 2 (written since seats) adds the sequence of the license's
//! versions, a seat count per service, a grace period after expiry, the
//! period at which consumers must present fresh nonces, and the dongle's
//! kind. Version 1 files still decode, as a license with no seat limit,
//! sequence 0, no grace and no freshness requirement; any other version is
//! refused with a message naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::codec::{Reader, Writer};
use crate::fido2::Fido2Credential;
use crate::key::{Dongle, Fingerprint, PublicKey, SecretKey, Vendor};
use crate::{Error, Result, UnixTime, domain};

/// Version byte of the license body this crate writes.
pub const LICENSE_VERSION: u8 = 2;
/// The oldest license version this crate still reads.
pub const LICENSE_VERSION_V1: u8 = 1;
/// Dongle kind byte (license v2): Tether's native protocol, an Ed25519 key.
pub const DONGLE_KIND_NATIVE: u8 = 1;
/// Dongle kind byte (license v2): a FIDO2 security key, named by its
/// credential (`docs/formats.md`, "FIDO2 credential fields").
pub const DONGLE_KIND_FIDO2: u8 = 2;
/// The refusal of a FIDO2 license without freshness, as signing and
/// decoding word it.
pub const FIDO2_NEEDS_FRESHNESS: &str = "FIDO2 dongles need freshness: --nonce-period";
/// Longest grace period after expiry a license may grant: 90 days, in seconds.
pub const MAX_GRACE: u32 = 90 * 86_400;
/// Largest encoded license in bytes (3 KiB, signature included). Every token carries the
/// license, and verifiers refuse tokens over 8 KiB: a 3 KiB license keeps
/// its tokens well inside that, so a license that signs is one whose tokens
/// verify.
pub const MAX_LICENSE_LEN: usize = 3 * 1024;

/// A license's identifier: 16 random bytes, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LicenseId(pub [u8; 16]);

impl LicenseId {
    /// A fresh random identifier.
    pub fn generate() -> Self {
        let mut id = [0u8; 16];
        crate::random_fill(&mut id);
        LicenseId(id)
    }
}

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The dongle a license is bound to: its kind and what checks its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DongleIdentity {
    /// Tether's native protocol: the dongle's Ed25519 public key.
    Native(PublicKey<Dongle>),
    /// A FIDO2 security key: the credential made at enrollment.
    Fido2(Fido2Credential),
}

impl DongleIdentity {
    /// The kind byte: [`DONGLE_KIND_NATIVE`] or [`DONGLE_KIND_FIDO2`].
    pub fn kind(&self) -> u8 {
        match self {
            DongleIdentity::Native(_) => DONGLE_KIND_NATIVE,
            DongleIdentity::Fido2(_) => DONGLE_KIND_FIDO2,
        }
    }

    /// The kind's name: `native` or `FIDO2`.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind())
    }

    /// SHA-256 of the raw public key (the native key's fingerprint; for
    /// FIDO2, of the 32- or 65-byte key).
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            DongleIdentity::Native(k) => k.fingerprint(),
            DongleIdentity::Fido2(c) => c.fingerprint(),
        }
    }

    /// The native dongle key, if this is a native dongle.
    pub fn native(&self) -> Option<&PublicKey<Dongle>> {
        match self {
            DongleIdentity::Native(k) => Some(k),
            DongleIdentity::Fido2(_) => None,
        }
    }

    /// The FIDO2 credential, if this is a FIDO2 dongle.
    pub fn fido2(&self) -> Option<&Fido2Credential> {
        match self {
            DongleIdentity::Native(_) => None,
            DongleIdentity::Fido2(c) => Some(c),
        }
    }
}

impl From<PublicKey<Dongle>> for DongleIdentity {
    fn from(key: PublicKey<Dongle>) -> Self {
        DongleIdentity::Native(key)
    }
}

impl From<Fido2Credential> for DongleIdentity {
    fn from(cred: Fido2Credential) -> Self {
        DongleIdentity::Fido2(cred)
    }
}

/// The name of a dongle kind byte: `native`, `FIDO2` or `unknown`.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        DONGLE_KIND_NATIVE => "native",
        DONGLE_KIND_FIDO2 => "FIDO2",
        _ => "unknown",
    }
}

/// What a license grants, before the vendor signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseTerms {
    /// Identifier, unique per issued license.
    pub id: LicenseId,
    /// Customer name, 1 to 255 bytes of UTF-8.
    pub customer: String,
    /// The dongle's serial number (for a FIDO2 dongle, exactly
    /// [`Fido2Credential::serial`]).
    pub dongle_serial: String,
    /// The dongle: its kind and key.
    pub dongle: DongleIdentity,
    /// When the vendor signed it.
    pub issued_at: UnixTime,
    /// Start of validity.
    pub not_before: UnixTime,
    /// End of validity.
    pub not_after: UnixTime,
    /// The longest token lifetime an authority may issue under it, in seconds.
    pub max_token_ttl: u32,
    /// Feature names, sorted and unique.
    pub features: Vec<String>,
    /// Services allowed to hold tokens, sorted and unique.
    pub services: Vec<String>,
    /// Seats: how many instances of a service may hold tokens at once, for
    /// the services that have a limit (absent: unlimited). Each key is one
    /// of `services`; each count is at least 1.
    pub seats: BTreeMap<String, u32>,
    /// Which version of this license (same `id`) this is: 1 for the first
    /// issue, higher for each update; an authority never goes back to a
    /// lower one. 0 only for version-1 files, which had no sequence.
    pub sequence: u64,
    /// Seconds after `not_after` during which tokens are still issued,
    /// with warnings (0: none; at most [`MAX_GRACE`]).
    pub grace: u32,
    /// How often, in seconds, each consumer must present a fresh nonce that
    /// the dongle commits to (0: freshness not required).
    pub nonce_period: u32,
}

/// A vendor-signed license, as decoded from its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    version: u8,
    terms: LicenseTerms,
    vendor: Fingerprint,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

/// Checks a feature or service name: 1 to 63 of `a-z 0-9 _ -` (ASCII, so
/// bytes and characters alike), starting with a letter or digit.
///
/// # Errors
///
/// [`Error::Invalid`] naming `what` and the refused name.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what,
            reason: format!("{name:?}: use 1-63 characters of a-z, 0-9, '_' and '-'"),
        })
    }
}

/// Sorts, deduplicates and checks a list of names (surrounding whitespace is
/// trimmed): at most 64 names after deduplication.
///
/// # Errors
///
/// [`Error::Invalid`] for an invalid name ([`check_name`]) or more than 64
/// names.
pub fn normalize_names(what: &'static str, names: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = names.iter().map(|s| s.trim().to_string()).collect();
    for n in &out {
        check_name(what, n)?;
    }
    out.sort();
    out.dedup();
    if out.len() > 64 {
        return Err(Error::Invalid {
            what,
            reason: "at most 64 entries".into(),
        });
    }
    Ok(out)
}

fn check_short_text(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err(Error::Invalid {
            what,
            reason: "1-255 bytes of printable UTF-8".into(),
        });
    }
    Ok(())
}

impl LicenseTerms {
    fn validate(&self) -> Result<()> {
        check_short_text("customer", &self.customer)?;
        check_short_text("dongle serial", &self.dongle_serial)?;
        if self.not_after <= self.not_before {
            return Err(Error::Invalid {
                what: "validity",
                reason: "not-after must be later than not-before".into(),
            });
        }
        if self.max_token_ttl == 0 {
            return Err(Error::Invalid {
                what: "max token TTL",
                reason: "must be at least one second".into(),
            });
        }
        for (what, list) in [("feature", &self.features), ("service", &self.services)] {
            if normalize_names(what, list)? != *list {
                return Err(Error::Invalid {
                    what,
                    reason: "list must be sorted and unique".into(),
                });
            }
        }
        if self.services.is_empty() {
            return Err(Error::Invalid {
                what: "service",
                reason: "a license allows at least one service".into(),
            });
        }
        for (service, &count) in &self.seats {
            if !self.services.contains(service) {
                return Err(Error::Invalid {
                    what: "seats",
                    reason: format!("{service:?} has seats but is not a licensed service"),
                });
            }
            if count == 0 {
                return Err(Error::Invalid {
                    what: "seats",
                    reason: format!(
                        "{service:?}: a seat count is at least 1 (leave it out for unlimited)"
                    ),
                });
            }
        }
        if self.grace > MAX_GRACE {
            return Err(Error::Invalid {
                what: "grace",
                reason: format!("at most {MAX_GRACE} s (90 days)"),
            });
        }
        if self.nonce_period != 0 && !(60..=3600).contains(&self.nonce_period) {
            return Err(Error::Invalid {
                what: "nonce period",
                reason: "0 (off) or 60 to 3600 seconds".into(),
            });
        }
        if let DongleIdentity::Fido2(cred) = &self.dongle {
            cred.validate()?;
            if self.dongle_serial != cred.serial() {
                return Err(Error::Invalid {
                    what: "dongle serial",
                    reason: format!(
                        "a FIDO2 dongle's serial is derived from its credential: {}",
                        cred.serial()
                    ),
                });
            }
            if self.nonce_period == 0 {
                return Err(Error::Invalid {
                    what: "nonce period",
                    reason: FIDO2_NEEDS_FRESHNESS.into(),
                });
            }
        }
        Ok(())
    }

    /// The version 2 body (`docs/formats.md`, "License").
    fn encode_body(&self, vendor: &Fingerprint) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(LICENSE_VERSION);
        w.bytes(&self.id.0);
        w.bytes(&vendor.0);
        w.u64(self.sequence);
        w.str8(&self.customer);
        w.u8(self.dongle.kind());
        w.str8(&self.dongle_serial);
        match &self.dongle {
            DongleIdentity::Native(key) => w.bytes(key.as_bytes()),
            DongleIdentity::Fido2(cred) => cred.encode(&mut w),
        }
        w.u64(self.issued_at.secs());
        w.u64(self.not_before.secs());
        w.u64(self.not_after.secs());
        w.u32(self.grace);
        w.u32(self.max_token_ttl);
        w.u32(self.nonce_period);
        w.list8(&self.features);
        w.u8(self.services.len() as u8);
        for service in &self.services {
            w.str8(service);
            w.u32(self.seats.get(service).copied().unwrap_or(0));
        }
        w.buf
    }

    /// The seat count of `service`, or `None` when unlimited.
    pub fn seats_for(&self, service: &str) -> Option<u32> {
        self.seats.get(service).copied()
    }

    /// Signs these terms with the vendor root key (`docs/formats.md`,
    /// "License"; Ed25519 per RFC 8032 over `domain::LICENSE || body`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the customer or dongle serial is not 1 to 255
    /// bytes of printable UTF-8, a FIDO2 dongle's credential is invalid, its
    /// serial is not the credential's, or its `nonce_period` is 0
    /// ([`FIDO2_NEEDS_FRESHNESS`]), `not_after` is not later than `not_before`,
    /// `max_token_ttl` is 0 seconds, the feature or service lists are not
    /// sorted, unique and valid names, no service is listed, or the encoded
    /// license would exceed [`MAX_LICENSE_LEN`] bytes.
    pub fn sign(self, vendor: &SecretKey<Vendor>) -> Result<License> {
        self.validate()?;
        if self.sequence == 0 {
            return Err(Error::Invalid {
                what: "sequence",
                reason: "a license's sequence starts at 1".into(),
            });
        }
        let fingerprint = vendor.public().fingerprint();
        let mut encoded = self.encode_body(&fingerprint);
        if encoded.len() + 64 > MAX_LICENSE_LEN {
            return Err(Error::Invalid {
                what: "license",
                reason: format!(
                    "{} bytes encoded, over the maximum of {MAX_LICENSE_LEN}: shorten the customer name or the feature and service lists",
                    encoded.len() + 64
                ),
            });
        }
        let signature = vendor.sign(&domain::tagged(domain::LICENSE, &encoded));
        encoded.extend_from_slice(&signature);
        Ok(License {
            version: LICENSE_VERSION,
            terms: self,
            vendor: fingerprint,
            signature,
            encoded,
        })
    }
}

impl License {
    /// Decodes canonical bytes (`docs/formats.md`, "License"). Checks
    /// structure only: call [`License::verify`] before trusting anything in it.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for more than [`MAX_LICENSE_LEN`] bytes, an
    /// unknown version or dongle kind, bytes too short or too long (trailing
    /// bytes are refused), an invalid dongle key or FIDO2 credential, a FIDO2
    /// dongle without freshness ([`FIDO2_NEEDS_FRESHNESS`]), or terms not in
    /// canonical form.
    pub fn decode(bytes: &[u8]) -> Result<License> {
        let mut r = Reader::new("license", bytes);
        if bytes.len() > MAX_LICENSE_LEN {
            return Err(r.malformed("longer than the maximum license size"));
        }
        let version = r.u8()?;
        let terms = match version {
            LICENSE_VERSION => decode_v2(&mut r)?,
            LICENSE_VERSION_V1 => decode_v1(&mut r)?,
            other => {
                return Err(Error::UnsupportedVersion {
                    what: "license",
                    version: other,
                    supported: "1 and 2",
                });
            }
        };
        let vendor = terms.1;
        let terms = terms.0;
        let signature = r.finish::<64>()?;
        if terms.dongle.kind() == DONGLE_KIND_FIDO2 && terms.nonce_period == 0 {
            return Err(Error::Malformed {
                what: "license",
                reason: FIDO2_NEEDS_FRESHNESS,
            });
        }
        terms.validate().map_err(|_| Error::Malformed {
            what: "license",
            reason: "terms are not in canonical form",
        })?;
        Ok(License {
            version,
            terms,
            vendor,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Checks the vendor's signature with `verify_strict` (RFC 8032 section
    /// 5.1.7, with ed25519-dalek's strict checks).
    ///
    /// # Errors
    ///
    /// [`Error::WrongVendor`] when the license names a different vendor key,
    /// [`Error::BadSignature`] when the signature does not verify.
    pub fn verify(&self, vendor: &PublicKey<Vendor>) -> Result<()> {
        domain::verify_vendor_signed(
            vendor,
            self.vendor,
            &self.encoded,
            &self.signature,
            domain::LICENSE,
            "license",
        )
    }

    /// Checks that `now` lies in the validity window, widened by `leeway`
    /// (whole seconds) on both ends.
    ///
    /// # Errors
    ///
    /// [`Error::NotYetValid`] or [`Error::Expired`].
    pub fn check_time(&self, now: UnixTime, leeway: Duration) -> Result<()> {
        crate::check_window(
            "license",
            self.terms.not_before,
            self.terms.not_after,
            now,
            leeway,
        )
    }

    /// The signed terms.
    pub fn terms(&self) -> &LicenseTerms {
        &self.terms
    }

    /// The format version it was encoded in (1 or 2).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Fingerprint of the vendor key that signed it.
    pub fn vendor(&self) -> Fingerprint {
        self.vendor
    }

    /// The canonical bytes (body and signature).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Whether the license allows `service`.
    pub fn allows_service(&self, service: &str) -> bool {
        self.terms.services.iter().any(|s| s == service)
    }

    /// Whether the license grants `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.terms.features.iter().any(|s| s == feature)
    }
}

/// Version 1 body after the version byte: no sequence, seats, grace or
/// freshness, and a native dongle.
fn decode_v1(r: &mut Reader<'_>) -> Result<(LicenseTerms, Fingerprint)> {
    let id = LicenseId(r.array()?);
    let vendor = Fingerprint(r.array()?);
    let customer = r.str8()?;
    let dongle_serial = r.str8()?;
    let dongle = DongleIdentity::Native(PublicKey::from_bytes(&r.array()?)?);
    let issued_at = UnixTime::from_secs(r.u64()?);
    let not_before = UnixTime::from_secs(r.u64()?);
    let not_after = UnixTime::from_secs(r.u64()?);
    let max_token_ttl = r.u32()?;
    let features = r.list8()?;
    let services = r.list8()?;
    let terms = LicenseTerms {
        id,
        customer,
        dongle_serial,
        dongle,
        issued_at,
        not_before,
        not_after,
        max_token_ttl,
        features,
        services,
        seats: BTreeMap::new(),
        sequence: 0,
        grace: 0,
        nonce_period: 0,
    };
    Ok((terms, vendor))
}

/// Version 2 body after the version byte (`docs/formats.md`, "License").
fn decode_v2(r: &mut Reader<'_>) -> Result<(LicenseTerms, Fingerprint)> {
    let id = LicenseId(r.array()?);
    let vendor = Fingerprint(r.array()?);
    let sequence = r.u64()?;
    let customer = r.str8()?;
    let kind = r.u8()?;
    let dongle_serial = r.str8()?;
    let dongle = match kind {
        DONGLE_KIND_NATIVE => DongleIdentity::Native(PublicKey::from_bytes(&r.array()?)?),
        DONGLE_KIND_FIDO2 => DongleIdentity::Fido2(Fido2Credential::decode(r)?),
        _ => return Err(r.malformed("unknown dongle kind")),
    };
    let issued_at = UnixTime::from_secs(r.u64()?);
    let not_before = UnixTime::from_secs(r.u64()?);
    let not_after = UnixTime::from_secs(r.u64()?);
    let grace = r.u32()?;
    let max_token_ttl = r.u32()?;
    let nonce_period = r.u32()?;
    let features = r.list8()?;
    let count = r.u8()?;
    let mut services = Vec::with_capacity(usize::from(count));
    let mut seats = BTreeMap::new();
    for _ in 0..count {
        let service = r.str8()?;
        let n = r.u32()?;
        if n > 0 {
            seats.insert(service.clone(), n);
        }
        services.push(service);
    }
    if sequence == 0 {
        return Err(r.malformed("sequence 0 in a version 2 license"));
    }
    let terms = LicenseTerms {
        id,
        customer,
        dongle_serial,
        dongle,
        issued_at,
        not_before,
        not_after,
        max_token_ttl,
        features,
        services,
        seats,
        sequence,
        grace,
        nonce_period,
    };
    Ok((terms, vendor))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkeys;

    pub(crate) fn sample_terms() -> LicenseTerms {
        LicenseTerms {
            id: LicenseId([0x11; 16]),
            customer: "ACME Corp".into(),
            dongle_serial: "TD-0001".into(),
            dongle: DongleIdentity::Native(testkeys::dongle().public()),
            issued_at: UnixTime::from_secs(1_700_000_000),
            not_before: UnixTime::from_secs(1_700_000_000),
            not_after: UnixTime::from_secs(1_800_000_000),
            max_token_ttl: 300,
            features: vec!["mux".into(), "record".into()],
            services: vec!["backend".into(), "muxer".into()],
            seats: BTreeMap::from([("backend".into(), 4)]),
            sequence: 1,
            grace: 0,
            nonce_period: 0,
        }
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let license = sample_terms().sign(&testkeys::vendor()).unwrap();
        let decoded = License::decode(license.encoded()).unwrap();
        assert_eq!(decoded, license);
        decoded.verify(&testkeys::vendor().public()).unwrap();
        decoded
            .check_time(UnixTime::from_secs(1_750_000_000), Duration::from_secs(0))
            .unwrap();
        assert!(decoded.allows_service("muxer"));
        assert!(!decoded.allows_service("other"));
        assert!(decoded.has_feature("mux"));
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let license = sample_terms().sign(&testkeys::vendor()).unwrap();
        let vendor = testkeys::vendor().public();
        for i in 0..license.encoded().len() {
            let mut bytes = license.encoded().to_vec();
            bytes[i] ^= 0x01;
            let accepted = License::decode(&bytes).and_then(|l| l.verify(&vendor));
            assert!(accepted.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn another_vendor_is_named_as_such() {
        let license = sample_terms().sign(&testkeys::vendor()).unwrap();
        let other = SecretKey::<Vendor>::from_seed(&[0xEE; 32]).public();
        assert!(matches!(
            license.verify(&other),
            Err(Error::WrongVendor { .. })
        ));
    }

    #[test]
    fn unsorted_lists_are_refused_at_signing() {
        let mut terms = sample_terms();
        terms.services = vec!["muxer".into(), "backend".into()];
        assert!(terms.sign(&testkeys::vendor()).is_err());
    }

    #[test]
    fn time_window_is_enforced() {
        let license = sample_terms().sign(&testkeys::vendor()).unwrap();
        assert!(matches!(
            license.check_time(UnixTime::from_secs(1_800_000_001), Duration::from_secs(0)),
            Err(Error::Expired { .. })
        ));
        assert!(matches!(
            license.check_time(UnixTime::from_secs(1_699_999_999), Duration::from_secs(0)),
            Err(Error::NotYetValid { .. })
        ));
        license
            .check_time(UnixTime::from_secs(1_800_000_001), Duration::from_secs(5))
            .unwrap();
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("service", "backend").is_ok());
        assert!(check_name("service", "Backend").is_err());
        assert!(check_name("service", "").is_err());
        assert!(check_name("service", "-x").is_err());
        assert_eq!(
            normalize_names("feature", &["b".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    pub(crate) fn fido2_terms() -> LicenseTerms {
        use crate::fido2::{Fido2Algorithm, testsigner::TestAuthenticator};
        let cred = TestAuthenticator::new(Fido2Algorithm::Es256, [0x22; 32]).credential();
        LicenseTerms {
            dongle_serial: cred.serial(),
            dongle: DongleIdentity::Fido2(cred),
            nonce_period: 300,
            ..sample_terms()
        }
    }

    #[test]
    fn fido2_licenses_round_trip_with_kind_2() {
        let license = fido2_terms().sign(&testkeys::vendor()).unwrap();
        let decoded = License::decode(license.encoded()).unwrap();
        assert_eq!(decoded, license);
        decoded.verify(&testkeys::vendor().public()).unwrap();
        // version, id, vendor, sequence, customer: then the kind byte.
        let at = 1 + 16 + 32 + 8 + 1 + "ACME Corp".len();
        assert_eq!(license.encoded()[at], DONGLE_KIND_FIDO2);
        assert_eq!(decoded.terms().dongle.kind_name(), "FIDO2");
    }

    #[test]
    fn fido2_licenses_need_freshness_at_signing_and_decoding() {
        let mut terms = fido2_terms();
        terms.nonce_period = 0;
        let err = terms.clone().sign(&testkeys::vendor()).unwrap_err();
        assert!(err.to_string().contains(FIDO2_NEEDS_FRESHNESS), "{err}");
        // The same terms encoded by hand (as a careless signer might): the decoder refuses them.
        let mut bytes = terms.encode_body(&testkeys::vendor().public().fingerprint());
        bytes.extend_from_slice(&[0; 64]);
        assert!(matches!(
            License::decode(&bytes),
            Err(Error::Malformed {
                reason: FIDO2_NEEDS_FRESHNESS,
                ..
            })
        ));
    }

    #[test]
    fn fido2_serial_must_be_the_credentials() {
        let mut terms = fido2_terms();
        terms.dongle_serial = "TD-0001".into();
        assert!(matches!(
            terms.sign(&testkeys::vendor()),
            Err(Error::Invalid {
                what: "dongle serial",
                ..
            })
        ));
    }

    #[test]
    fn fido2_small_order_key_is_refused_at_signing_and_decoding() {
        use crate::fido2::{Fido2Algorithm, testsigner::TestAuthenticator};
        let mut cred = TestAuthenticator::new(Fido2Algorithm::Ed25519, [0x21; 32]).credential();
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        cred.public_key = identity;
        let terms = LicenseTerms {
            dongle_serial: cred.serial(),
            dongle: DongleIdentity::Fido2(cred),
            ..fido2_terms()
        };
        assert!(terms.clone().sign(&testkeys::vendor()).is_err());
        let mut bytes = terms.encode_body(&testkeys::vendor().public().fingerprint());
        bytes.extend_from_slice(&[0; 64]);
        assert!(matches!(
            License::decode(&bytes),
            Err(Error::Malformed { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_on_mutated_fido2_licenses(
            edits in proptest::collection::vec((0usize..640, proptest::num::u8::ANY), 0..6),
            cut in 0usize..640,
        ) {
            let license = fido2_terms().sign(&testkeys::vendor()).unwrap();
            let mut bytes = license.encoded().to_vec();
            let len = bytes.len();
            for (at, b) in edits {
                bytes[at % len] = b;
            }
            bytes.truncate(cut);
            if let Ok(l) = License::decode(&bytes) {
                proptest::prop_assert_eq!(l.encoded(), &bytes[..]);
                if l.verify(&testkeys::vendor().public()).is_ok() {
                    proptest::prop_assert_eq!(&bytes[..], license.encoded());
                }
            }
        }
    }

    proptest::proptest! {
        // Without cargo-fuzz (fuzz/license_decode does more): bad bytes are
        // refused, never a panic, and whatever decodes is canonical.
        #[test]
        fn decoder_never_panics_on_random_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok(l) = License::decode(&bytes) {
                proptest::prop_assert_eq!(l.encoded(), &bytes[..]);
            }
        }

        #[test]
        fn decoder_never_panics_on_mutated_licenses(
            edits in proptest::collection::vec((0usize..512, proptest::num::u8::ANY), 0..6),
            cut in 0usize..512,
        ) {
            let license = sample_terms().sign(&testkeys::vendor()).unwrap();
            let mut bytes = license.encoded().to_vec();
            let len = bytes.len();
            for (at, b) in edits {
                bytes[at % len] = b;
            }
            bytes.truncate(cut);
            if let Ok(l) = License::decode(&bytes) {
                proptest::prop_assert_eq!(l.encoded(), &bytes[..]);
                let resigned = l.terms().clone().sign(&testkeys::vendor()).unwrap();
                // Canonical: the same terms encode to the same body (the vendor field aside).
                let body = bytes.len() - 64;
                proptest::prop_assert_eq!(&resigned.encoded()[..17], &bytes[..17]);
                proptest::prop_assert_eq!(&resigned.encoded()[49..body], &bytes[49..body]);
            }
        }
    }
}
