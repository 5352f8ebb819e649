//! The one error type of `tether-keys`.
//!
//! Variants say *what* is wrong (a tampered license, a key of the wrong role, a
//! file others can read) and keep the I/O cause via `source()`. Signature
//! failures carry no internals: callers learn that a signature is bad, not why.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or checking trust material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An output file already exists and overwriting was not asked for.
    #[error("{0}: already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// A private key file is readable by group or others.
    #[error(
        "{path}: private key file has mode {mode:04o}; it must not be readable by group or others (chmod 600)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits (e.g. `0o644`).
        mode: u32,
    },
    /// A file is not in the expected format.
    #[error("{path}: {what}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A key of one role was given where another was expected.
    #[error("{path}: holds a {found} key, expected a {expected} key")]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// The role found in the file.
        found: String,
        /// The role the caller asked for.
        expected: &'static str,
    },
    /// Bytes that do not decode as the named structure.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The structure being decoded.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A structure in a format version this build does not read.
    #[error(
        "{what} format version {version} is not supported (this build reads versions {supported}); upgrade Tether to read it"
    )]
    UnsupportedVersion {
        /// The structure being decoded.
        what: &'static str,
        /// The version byte found.
        version: u8,
        /// The versions this build reads.
        supported: &'static str,
    },
    /// A structure made for a kind of dongle this build cannot check.
    #[error(
        "{what} for dongle kind {kind} ({name}) is not supported by this build; upgrade Tether to read it"
    )]
    UnsupportedDongleKind {
        /// The structure being decoded.
        what: &'static str,
        /// The kind byte found.
        kind: u8,
        /// What that kind is, or "unknown".
        name: &'static str,
    },
    /// A consumer's leaf is not in the tree a certificate commits to, as the
    /// inclusion proof claims (`merkle`).
    #[error("not included in the certificate's commitment: {0}")]
    NotIncluded(&'static str),
    /// A value given to build a structure is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A license names another vendor key than the one it is checked against.
    #[error("license was issued by another vendor key ({found}), not {expected}")]
    WrongVendor {
        /// Fingerprint named in the license.
        found: String,
        /// Fingerprint of the trusted vendor key.
        expected: String,
    },
    /// A certificate of one dongle kind checked against a dongle of another
    /// (a native certificate under a FIDO2 license, or the reverse).
    #[error("{certificate} is from a {found} dongle, but the license names a {expected} dongle")]
    DongleKindMismatch {
        /// The structure checked.
        certificate: &'static str,
        /// The kind the certificate is for ("native" or "FIDO2").
        found: &'static str,
        /// The kind the license names.
        expected: &'static str,
    },
    /// A FIDO2 assertion (a kind 2 certificate) that does not hold, and why
    /// (`fido2`; `docs/formats.md`, "FIDO2 delegation certificate").
    #[error("FIDO2 assertion refused: {0}")]
    Fido2(crate::fido2::AssertionFault),
    /// A signature does not verify under the expected key.
    #[error("bad {0} signature")]
    BadSignature(&'static str),
    /// A validity window does not contain the time of the check.
    #[error("{what} expired at {} (now {})", .not_after.secs(), .now.secs())]
    Expired {
        /// The structure.
        what: &'static str,
        /// End of its validity.
        not_after: crate::UnixTime,
        /// Time of the check.
        now: crate::UnixTime,
    },
    /// A validity window starts after the time of the check.
    #[error("{what} not valid before {} (now {})", .not_before.secs(), .now.secs())]
    NotYetValid {
        /// The structure.
        what: &'static str,
        /// Start of its validity.
        not_before: crate::UnixTime,
        /// Time of the check.
        now: crate::UnixTime,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            what: what.into(),
        }
    }
}
