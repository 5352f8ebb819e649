//! Service credentials: a one-time secret per service, stored only as a hash.
//!
//! Format: `docs/formats.md`, "Service credentials". `tether service enroll
//! NAME` prints a secret `tsk_` + base64url (RFC 4648 section 5, no padding)
//! of 32 random bytes once; the authority's credential file keeps `NAME sha256:HASH`.
//! Presented secrets are hashed and compared in constant time against every
//! entry, so the time taken says nothing about which entry, if any, matched.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::keyfile::{Overwrite, write_file};
use crate::license::check_name;
use crate::{Error, Result};

const SECRET_PREFIX: &str = "tsk_";

/// A service's bearer secret. No `Clone`, no `Display`; wiped on drop.
pub struct ServiceSecret(Zeroizing<String>);

impl ServiceSecret {
    /// A fresh secret from the CSPRNG.
    pub fn generate() -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        crate::random_fill(raw.as_mut());
        let mut s = Zeroizing::new(String::from(SECRET_PREFIX));
        URL_SAFE_NO_PAD.encode_string(raw.as_ref(), &mut s);
        ServiceSecret(s)
    }

    /// Parses a secret as given on a command line, in a file or a header
    /// (surrounding whitespace is ignored).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] unless the text is `tsk_` and 43 base64url
    /// characters (32 bytes).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let ok = text.len() == SECRET_PREFIX.len() + 43
            && text.starts_with(SECRET_PREFIX)
            && URL_SAFE_NO_PAD
                .decode(&text[SECRET_PREFIX.len()..])
                .is_ok_and(|raw| raw.len() == 32);
        if ok {
            Ok(ServiceSecret(Zeroizing::new(text.to_string())))
        } else {
            Err(Error::Malformed {
                what: "service secret",
                reason: "expected tsk_ and 43 base64url characters",
            })
        }
    }

    /// The secret text, for sending it as a bearer credential.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the secret text, as stored by the authority.
    pub fn hash(&self) -> CredentialHash {
        CredentialHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for ServiceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSecret").finish_non_exhaustive()
    }
}

/// SHA-256 of a presented credential.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CredentialHash(pub [u8; 32]);

impl CredentialHash {
    /// Hashes the bytes of a presented bearer token (whatever its form).
    pub fn of(presented: &[u8]) -> Self {
        CredentialHash(Sha256::digest(presented).into())
    }
}

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// The authority's list of enrolled services and their credential hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialFile {
    entries: Vec<(String, CredentialHash)>,
}

impl CredentialFile {
    /// Parses the text form: one `NAME sha256:HASH` a line, `#` comments.
    /// `path` only names the source in errors.
    ///
    /// # Errors
    ///
    /// [`Error::BadFile`] naming the line (counted from 1) that is not
    /// `NAME sha256:HASH`, has an invalid service name, a hash that is not 43
    /// base64url characters (32 bytes), or repeats a service.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut entries: Vec<(String, CredentialHash)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| Error::bad_file(path, format!("line {}: {what}", n + 1));
            let (name, hash) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected NAME sha256:HASH"))?;
            check_name("service", name).map_err(|e| bad(&e.to_string()))?;
            let raw = hash
                .trim()
                .strip_prefix("sha256:")
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| bad("hash must be sha256: and 43 base64url characters"))?;
            if entries.iter().any(|(e, _)| e == name) {
                return Err(bad("service enrolled twice"));
            }
            entries.push((name.to_string(), CredentialHash(raw)));
        }
        Ok(CredentialFile { entries })
    }

    /// Reads the file; a missing file is an empty list only if `missing_ok`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be read (or is missing and `missing_ok` is
    /// false); otherwise as [`CredentialFile::parse`].
    pub fn load(path: &Path, missing_ok: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The text form.
    pub fn render(&self) -> String {
        let mut out =
            String::from("# Tether service credentials: NAME sha256:HASH (hashes only)\n");
        for (name, hash) in &self.entries {
            out.push_str(&format!("{name} {hash:?}\n"));
        }
        out
    }

    /// Writes the file atomically and durably ([`crate::fsutil::write_atomic`];
    /// mode 0600: it tells who may ask for tokens).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_file(path, self.render().as_bytes(), 0o600, Overwrite::Replace)
    }

    /// Enrolls `name` with a fresh secret; re-enrolling (rotation) needs `replace`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `name` is not a valid service name
    /// ([`crate::license::check_name`]), or is enrolled already and `replace`
    /// is false.
    pub fn enroll(&mut self, name: &str, replace: bool) -> Result<ServiceSecret> {
        check_name("service", name)?;
        let secret = ServiceSecret::generate();
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(_) if !replace => {
                return Err(Error::Invalid {
                    what: "service",
                    reason: format!(
                        "{name} is already enrolled (use --force to rotate its secret)"
                    ),
                });
            }
            Some(entry) => entry.1 = secret.hash(),
            None => self.entries.push((name.to_string(), secret.hash())),
        }
        Ok(secret)
    }

    /// The service a presented credential belongs to. Compares against every
    /// entry in constant time.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&str> {
        let hash = CredentialHash::of(presented);
        let mut found = None;
        for (name, stored) in &self.entries {
            if bool::from(stored.0.ct_eq(&hash.0)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Enrolled service names.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_authenticate_and_round_trip() {
        let mut file = CredentialFile::default();
        let a = file.enroll("backend", false).unwrap();
        let b = file.enroll("muxer", false).unwrap();
        assert_eq!(file.authenticate(a.expose().as_bytes()), Some("backend"));
        assert_eq!(file.authenticate(b.expose().as_bytes()), Some("muxer"));
        assert_eq!(file.authenticate(b"tsk_nope"), None);
        let parsed = CredentialFile::parse(Path::new("c"), &file.render()).unwrap();
        assert_eq!(parsed, file);
        assert!(!file.render().contains(a.expose()));
    }

    #[test]
    fn rotation_needs_replace_and_invalidates_the_old_secret() {
        let mut file = CredentialFile::default();
        let old = file.enroll("backend", false).unwrap();
        assert!(file.enroll("backend", false).is_err());
        let new = file.enroll("backend", true).unwrap();
        assert_eq!(file.authenticate(old.expose().as_bytes()), None);
        assert_eq!(file.authenticate(new.expose().as_bytes()), Some("backend"));
    }

    #[test]
    fn secrets_parse_strictly_and_never_print() {
        let s = ServiceSecret::generate();
        assert_eq!(
            ServiceSecret::parse(s.expose()).unwrap().expose(),
            s.expose()
        );
        assert!(ServiceSecret::parse("tsk_short").is_err());
        assert!(!format!("{s:?}").contains("tsk_"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = CredentialFile::parse(Path::new("c"), "backend\n").unwrap_err();
        assert!(err.to_string().contains("line 1"));
        let err = CredentialFile::parse(Path::new("c"), "Backend sha256:x\n").unwrap_err();
        assert!(err.to_string().contains("line 1"));
    }
}
