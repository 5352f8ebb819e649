//! Ed25519 keys, typed by the role they play in the chain of trust.
//!
//! A [`SecretKey<Vendor>`] can never be passed where a [`SecretKey<Dongle>`] is
//! expected: the role is part of the type. Secret halves have no `Clone`,
//! `Display` or `Serialize`, print only their fingerprint in `Debug`, and are
//! wiped on drop (the inner `ed25519_dalek::SigningKey` is `ZeroizeOnDrop`).

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// The role a key plays. Implemented only by the marker types of this module.
pub trait Role: sealed::Sealed + Send + Sync + 'static {
    /// The role's name as it appears in key files (`Tether-Key-Role:`).
    const NAME: &'static str;
}

macro_rules! role {
    ($(#[$doc:meta])* $ty:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $ty {}
        impl sealed::Sealed for $ty {}
        impl Role for $ty {
            const NAME: &'static str = $name;
        }
    };
}

role!(
    /// The vendor's offline root: signs licenses.
    Vendor,
    "vendor"
);
role!(
    /// The dongle's identity: signs presence proofs and delegation certificates.
    Dongle,
    "dongle"
);
role!(
    /// The authority's per-session key, in memory only: signs tokens.
    Session,
    "session"
);

/// Names every role, for error messages about keys of an unknown role.
pub const ROLE_NAMES: [&str; 3] = [Vendor::NAME, Dongle::NAME, Session::NAME];

/// SHA-256 of a public key: its stable, printable identity (`docs/formats.md`,
/// "Fingerprints").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of raw public key bytes.
    pub fn of(public: &[u8; 32]) -> Self {
        Fingerprint(Sha256::digest(public).into())
    }

    /// The short form used as a JWT `kid`: the first 12 bytes, base64url (16 characters).
    pub fn short(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0[..12])
    }
}

impl fmt::Display for Fingerprint {
    /// The full form: `SHA256:` and 43 base64url characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The public half of a key of role `R`.
pub struct PublicKey<R: Role> {
    key: VerifyingKey,
    role: PhantomData<R>,
}

impl<R: Role> PublicKey<R> {
    /// Parses the 32-byte encoding of RFC 8032 section 5.1.2; refuses points
    /// that are not valid or are of small order.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for an invalid or small-order point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::Malformed {
            what: "Ed25519 public key",
            reason: "not a valid curve point",
        })?;
        if key.is_weak() {
            return Err(Error::Malformed {
                what: "Ed25519 public key",
                reason: "small-order point",
            });
        }
        Ok(PublicKey {
            key,
            role: PhantomData,
        })
    }

    /// The 32 raw bytes (RFC 8032 section 5.1.2 encoding).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The raw bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// SHA-256 of the raw bytes.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.as_bytes())
    }

    /// Verifies the 64-byte `signature` over `message` (RFC 8032 section
    /// 5.1.7) with the strict rules of `verify_strict` (no small-order
    /// components, canonical `S`).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.key.verify_strict(message, &sig).is_ok()
    }

    /// The `ed25519-dalek` key, for code that verifies many messages.
    pub fn as_dalek(&self) -> &VerifyingKey {
        &self.key
    }
}

impl<R: Role> Clone for PublicKey<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R: Role> Copy for PublicKey<R> {}
impl<R: Role> PartialEq for PublicKey<R> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<R: Role> Eq for PublicKey<R> {}

impl<R: Role> fmt::Debug for PublicKey<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("role", &R::NAME)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// The secret half of a key of role `R`. Wiped on drop; never cloned or printed.
pub struct SecretKey<R: Role> {
    key: SigningKey,
    role: PhantomData<R>,
}

impl<R: Role> SecretKey<R> {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random_fill(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// A key from its 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey {
            key: SigningKey::from_bytes(seed),
            role: PhantomData,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey<R> {
        PublicKey {
            key: self.key.verifying_key(),
            role: PhantomData,
        }
    }

    /// Signs `message` (RFC 8032 section 5.1.6), returning the 64-byte
    /// signature. Callers prefix their own domain tag (see [`crate::domain`]).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The 32-byte seed, for writing a key file. The only way the secret
    /// leaves this type.
    pub fn expose_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }
}

impl<R: Role> fmt::Debug for SecretKey<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("role", &R::NAME)
            .field("public", &self.public().fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_seed() {
        let key = SecretKey::<Vendor>::from_seed(&[0x42; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("vendor"));
        assert!(!shown.contains("42, 42"));
        assert!(shown.ends_with(".. }"));
    }

    #[test]
    fn fingerprint_is_sha256_of_public_bytes() {
        let public = SecretKey::<Dongle>::from_seed(&[7; 32]).public();
        let fp = public.fingerprint();
        assert_eq!(fp.0, <[u8; 32]>::from(Sha256::digest(public.as_bytes())));
        assert_eq!(fp.short().len(), 16);
        assert!(fp.to_string().starts_with("SHA256:"));
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_message() {
        let a = SecretKey::<Session>::from_seed(&[1; 32]);
        let b = SecretKey::<Session>::from_seed(&[2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.public().verify(b"hello", &sig));
        assert!(!a.public().verify(b"hellp", &sig));
        assert!(!b.public().verify(b"hello", &sig));
    }

    #[test]
    fn small_order_public_keys_are_refused() {
        // The identity point, encoded: a classic weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::<Vendor>::from_bytes(&identity).is_err());
    }
}
