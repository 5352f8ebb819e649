//! What went wrong verifying a token: the reason, never the internals.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a token was refused. Each variant is a reason a service can act on or
/// log; none carries key material or parser internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a well-formed token (size, base64, JSON, missing or repeated claims).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than `EdDSA` or `Ed25519`.
    #[error("unsupported algorithm {0:?}: only EdDSA (Ed25519) is accepted")]
    UnsupportedAlgorithm(String),
    /// The JOSE header has a parameter this verifier refuses (`crit`,
    /// `b64` other than true, a `typ` other than JWT, `cty`, `enc`, `zip`).
    #[error("refused token header: {0}")]
    BadHeader(&'static str),
    /// A link of the chain does not lead to the trusted vendor key.
    #[error("untrusted chain: {0}")]
    UntrustedChain(&'static str),
    /// The token's signature does not verify under the certified session key.
    #[error("bad token signature")]
    BadSignature,
    /// The token, its certificate or its license is past its end.
    #[error("{0} expired")]
    Expired(&'static str),
    /// The token, its certificate or its license is not valid yet.
    #[error("{0} not valid yet")]
    NotYetValid(&'static str),
    /// The token is for another service.
    #[error("token is for {found:?}, not {expected:?}")]
    WrongAudience {
        /// The token's `aud`.
        found: String,
        /// This service.
        expected: String,
    },
    /// `iss` does not name the licensed dongle.
    #[error("issuer {0:?} does not match the license")]
    WrongIssuer(String),
    /// The license does not list this service.
    #[error("license does not allow service {0:?}")]
    ServiceNotLicensed(String),
    /// A feature this service needs is not in the license.
    #[error("license lacks feature {0:?}")]
    MissingFeature(String),
    /// The token was issued to another consumer instance (its `ins` claim):
    /// one token shared by several copies is refused by each that checks.
    #[error("token was issued to another instance")]
    WrongInstance,
    /// The token does not echo the nonce this service sent (or, with
    /// [`Verifier::verify_fresh`](crate::Verifier::verify_fresh), none of
    /// the nonces it accepts).
    #[error("token does not echo our nonce")]
    NonceMismatch,
    /// The token echoes our previous nonce, drawn a whole nonce period (the
    /// license's `nonce_period`) ago or longer: the authority has not caught
    /// up with the current one in time.
    #[error("token echoes a stale nonce (drawn a nonce period ago or longer)")]
    StaleNonce,
    /// Under a license that demands freshness (`nonce_period` > 0), or for a
    /// token carrying a `prf` claim: the token's `(aud, ins, nonce)` leaf is
    /// not shown to be in the certificate's commitment. Says which part
    /// fails (no proof, no commitment, a proof that does not lead to the
    /// root, ...).
    #[error("not included in the certificate's commitment: {0}")]
    NotIncluded(&'static str),
    /// The certificate commits to more instances of a service than the
    /// license has seats for (0 seats for a service the license does not
    /// allow).
    #[error(
        "the certificate commits to {count} instances of {service:?}, more than its {seats} seats"
    )]
    OverSeats {
        /// The service.
        service: String,
        /// How many leaves the certificate counts for it.
        count: u32,
        /// The license's seats for it.
        seats: u32,
    },
    /// The certificate's window is longer than this verifier allows.
    #[error("delegation certificate window of {0} s is longer than allowed")]
    CertificateTooLong(u64),
    /// The token lives longer than the license or its certificate allow.
    #[error("token lifetime exceeds what the license and certificate allow")]
    LifetimeTooLong,
}
