//! Tether's shared vocabulary of trust.
//!
//! The chain a consumer verifies offline, link by link:
//! vendor root ([`Vendor`]) -> [`License`] -> dongle ([`Dongle`]) ->
//! delegation [`Certificate`] -> session key ([`Session`]) -> JWT -> [`TokenClaims`].
//!
//! This crate holds the types, their canonical encodings, the key files and
//! the service credentials. It does no network I/O and no async.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Issue 12: every public fallible item says when it fails (and panics, if it can).
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]

pub mod claims;
mod codec;
pub mod credential;
pub mod delegation;
pub mod domain;
mod error;
pub mod fido2;
pub mod fsutil;
pub mod key;
pub mod keyfile;
pub mod license;
pub mod merkle;
pub mod revocation;
mod time;
pub mod token;
pub mod wire;

pub use claims::TokenClaims;
pub use credential::{CredentialFile, ServiceSecret};
pub use delegation::{Certificate, DelegationRequest};
pub use error::{Error, Result};
pub use fido2::{AuthenticatorData, Fido2Algorithm, Fido2Credential};
pub use key::{Dongle, Fingerprint, PublicKey, SecretKey, Session, Vendor};
pub use license::{DongleIdentity, License, LicenseId, LicenseTerms};
pub use merkle::{Commitment, InclusionProof, Leaf, LeafSet};
pub use revocation::Revocation;
pub use time::UnixTime;
pub use token::TokenSigner;

use std::time::Duration;

/// Fills `buf` from a CSPRNG seeded by the operating system.
///
/// # Panics
///
/// If the operating system's random source fails (`rand::rng()` panics
/// then): without randomness no key or nonce can be made safely.
pub fn random_fill(buf: &mut [u8]) {
    use rand::RngCore as _;
    rand::rng().fill_bytes(buf);
}

/// Checks `not_before - leeway <= now <= not_after + leeway`; the
/// arithmetic saturates.
///
/// # Errors
///
/// [`Error::NotYetValid`] if `now` is before the widened window,
/// [`Error::Expired`] if after it; both name `what`.
pub fn check_window(
    what: &'static str,
    not_before: UnixTime,
    not_after: UnixTime,
    now: UnixTime,
    leeway: Duration,
) -> Result<()> {
    if now.saturating_add(leeway) < not_before {
        Err(Error::NotYetValid {
            what,
            not_before,
            now,
        })
    } else if now.saturating_sub(leeway) > not_after {
        Err(Error::Expired {
            what,
            not_after,
            now,
        })
    } else {
        Ok(())
    }
}

/// Parses a duration such as `90s`, `5m`, `1h 30m`, `365d`, `250ms` or `60`
/// (seconds), with `humantime` restricted to the units `ms`, `s`, `m`, `h`, `d`.
///
/// # Errors
///
/// [`Error::Invalid`] for anything else (another unit, a fraction, a sign)
/// or a duration that overflows.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let invalid = || Error::Invalid {
        what: "duration",
        reason: format!("{text:?}: use a number and a unit (ms, s, m, h, d), e.g. 5m or 1h 30m"),
    };
    // A bare whole number is seconds, as it always was here.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| invalid());
    }
    // humantime's grammar, with only the units these docs name (it also
    // reads "5y" or "2months", which a license window should not hide).
    let units_ok = text.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && text
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|u| !u.is_empty())
            .all(|u| matches!(u, "ms" | "s" | "m" | "h" | "d"));
    if !units_ok {
        return Err(invalid());
    }
    humantime::parse_duration(text).map_err(|_| invalid())
}

/// Fixed keys for tests and test vectors. Never use them for anything else.
#[doc(hidden)]
pub mod testkeys {
    use crate::key::{Dongle, SecretKey, Session, Vendor};

    /// Seed of the test vendor key (a clearly named test fixture).
    pub const TEST_VENDOR_SEED: [u8; 32] = [0x01; 32];
    /// Seed of the test dongle key.
    pub const TEST_DONGLE_SEED: [u8; 32] = [0x02; 32];
    /// Seed of the test session key.
    pub const TEST_SESSION_SEED: [u8; 32] = [0x03; 32];

    /// The test vendor key.
    pub fn vendor() -> SecretKey<Vendor> {
        SecretKey::from_seed(&TEST_VENDOR_SEED)
    }
    /// The test dongle key.
    pub fn dongle() -> SecretKey<Dongle> {
        SecretKey::from_seed(&TEST_DONGLE_SEED)
    }
    /// The test session key.
    pub fn session() -> SecretKey<Session> {
        SecretKey::from_seed(&TEST_SESSION_SEED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("365d").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "m", "5y", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
