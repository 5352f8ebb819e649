//! Key and license files on disk.
//!
//! Private keys are PKCS#8 v1 PEM (RFC 8410, `-----BEGIN PRIVATE KEY-----`),
//! public keys SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or one line of base64;
//! licenses are `-----BEGIN TETHER LICENSE-----`. Before the PEM block a file
//! may carry `Tether-Name: value` lines (RFC 7468 explanatory text, ignored by
//! OpenSSL) naming the key's role and, for dongles, the serial.
//!
//! Secret files are created with `create_new` and mode 0600 (or replaced
//! atomically with `--force`, see [`crate::fsutil`]), and refused on load when group or others may
//! read them. Buffers that held a secret are wiped.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::key::{PublicKey, ROLE_NAMES, Role, SecretKey};
use crate::license::License;
use crate::{Error, Result, fsutil};

/// The `Tether-*` header lines of a file, by name.
pub type Headers = BTreeMap<String, String>;

/// Header naming the key's role.
pub const ROLE_HEADER: &str = "Tether-Key-Role";
/// Header naming a dongle's serial.
pub const SERIAL_HEADER: &str = "Tether-Dongle-Serial";

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410, section 7); the seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410, section 4); the key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
const LICENSE_LABEL: &str = "TETHER LICENSE";

/// How to treat an existing output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`Error::Exists`].
    Never,
    /// Replace it atomically.
    Replace,
}

/// Writes `contents` to `path` with permission bits `mode` (e.g. `0o600`):
/// `create_new` ([`fsutil::write_new`]), or an atomic, durable replace
/// ([`fsutil::write_atomic`]).
///
/// # Errors
///
/// [`Error::Exists`] if the file exists and `overwrite` is
/// [`Overwrite::Never`]; [`Error::Io`] if it cannot be written.
pub fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: Overwrite) -> Result<()> {
    match overwrite {
        Overwrite::Never => fsutil::write_new(path, contents, mode),
        Overwrite::Replace => fsutil::write_atomic(path, contents, mode),
    }
}

fn armor(headers: &[(&str, &str)], label: &str, der: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let b64 = Zeroizing::new(STANDARD.encode(der));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Parses headers and the one PEM block with `label`; the bytes are wiped on drop.
fn dearmor(path: &Path, text: &str, label: &str) -> Result<(Headers, Zeroizing<Vec<u8>>)> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut headers = Headers::new();
    let mut body = Zeroizing::new(String::new());
    let mut state = 0; // 0: before, 1: inside, 2: after
    for line in text.lines().map(str::trim) {
        match state {
            0 if line == begin => state = 1,
            0 if let Some(rest) = line.strip_prefix("-----BEGIN ") => {
                // The label comes from an untrusted file: no slicing by byte
                // offsets (short or non-ASCII lines), and nothing but
                // printable ASCII reaches the terminal.
                let found: String = rest
                    .strip_suffix("-----")
                    .unwrap_or(rest)
                    .chars()
                    .take(40)
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                return Err(Error::bad_file(
                    path,
                    format!("holds a {found} block, expected {label}"),
                ));
            }
            0 => {
                if let Some((k, v)) = line.split_once(':')
                    && k.starts_with("Tether-")
                {
                    headers.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
            1 if line == end => state = 2,
            1 => body.push_str(line),
            _ if line.is_empty() => {}
            _ => return Err(Error::bad_file(path, "unexpected text after the PEM block")),
        }
    }
    if state != 2 {
        return Err(Error::bad_file(
            path,
            format!("no complete {label} PEM block"),
        ));
    }
    let bytes = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| Error::bad_file(path, "PEM body is not valid base64"))?;
    Ok((headers, Zeroizing::new(bytes)))
}

fn check_role<R: Role>(path: &Path, headers: &Headers) -> Result<()> {
    match headers.get(ROLE_HEADER) {
        Some(found) if found != R::NAME => Err(Error::WrongRole {
            path: path.to_path_buf(),
            found: if ROLE_NAMES.contains(&found.as_str()) {
                found.clone()
            } else {
                format!("unknown-role {found:?}")
            },
            expected: R::NAME,
        }),
        _ => Ok(()),
    }
}

fn read_text(path: &Path, secret: bool) -> Result<Zeroizing<String>> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if secret {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > 64 * 1024 {
        return Err(Error::bad_file(
            path,
            "file is too large to be a key or license",
        ));
    }
    let raw = Zeroizing::new(fs::read(path).map_err(|e| Error::io(path, e))?);
    let text = std::str::from_utf8(&raw).map_err(|_| Error::bad_file(path, "not a text file"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Writes a private key file (mode 0600) with its role and any `extra` headers.
pub fn write_secret_key<R: Role>(
    path: &Path,
    key: &SecretKey<R>,
    extra: &[(&str, &str)],
    overwrite: Overwrite,
) -> Result<()> {
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PKCS8_PREFIX);
    der.extend_from_slice(key.expose_seed().as_ref());
    let mut headers = vec![(ROLE_HEADER, R::NAME)];
    headers.extend_from_slice(extra);
    let pem = armor(&headers, PRIVATE_LABEL, &der);
    write_file(path, pem.as_bytes(), 0o600, overwrite)
}

/// Reads a private key file of role `R`; refuses group/world-readable files,
/// keys of another role and anything but an Ed25519 PKCS#8 v1 key.
pub fn read_secret_key<R: Role>(path: &Path) -> Result<(SecretKey<R>, Headers)> {
    let text = read_text(path, true)?;
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(Error::bad_file(
            path,
            "holds a public key, expected a private key",
        ));
    }
    let (headers, der) = dearmor(path, &text, PRIVATE_LABEL)?;
    check_role::<R>(path, &headers)?;
    if der.len() != 48 || der[..16] != PKCS8_PREFIX {
        return Err(Error::bad_file(path, "not an Ed25519 PKCS#8 private key"));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&der[16..]);
    Ok((SecretKey::from_seed(&seed), headers))
}

/// The PEM text of a public key file.
pub fn public_key_pem<R: Role>(key: &PublicKey<R>, extra: &[(&str, &str)]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    let mut headers = vec![(ROLE_HEADER, R::NAME)];
    headers.extend_from_slice(extra);
    armor(&headers, PUBLIC_LABEL, &der).to_string()
}

/// Writes a public key file (mode 0644).
pub fn write_public_key<R: Role>(
    path: &Path,
    key: &PublicKey<R>,
    extra: &[(&str, &str)],
    overwrite: Overwrite,
) -> Result<()> {
    write_file(
        path,
        public_key_pem(key, extra).as_bytes(),
        0o644,
        overwrite,
    )
}

/// Parses a public key from PEM text or one line of base64 (32 raw bytes).
pub fn parse_public_key<R: Role>(path: &Path, text: &str) -> Result<(PublicKey<R>, Headers)> {
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(Error::bad_file(
            path,
            "holds a private key, expected a public key",
        ));
    }
    let (headers, raw) = if text.contains("-----BEGIN ") {
        let (headers, der) = dearmor(path, text, PUBLIC_LABEL)?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(Error::bad_file(path, "not an Ed25519 public key"));
        }
        (headers, der[12..].to_vec())
    } else {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| Error::bad_file(path, "neither PEM nor base64"))?;
        (Headers::new(), raw)
    };
    check_role::<R>(path, &headers)?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| Error::bad_file(path, "an Ed25519 public key is 32 bytes"))?;
    let key = PublicKey::from_bytes(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))?;
    Ok((key, headers))
}

/// Reads a public key file of role `R`.
pub fn read_public_key<R: Role>(path: &Path) -> Result<(PublicKey<R>, Headers)> {
    let text = read_text(path, false)?;
    parse_public_key(path, &text)
}

/// The PEM text of a license file.
pub fn license_pem(license: &License) -> String {
    let terms = license.terms();
    armor(
        &[
            ("Tether-License-Id", &terms.id.to_string()),
            ("Tether-Customer", &terms.customer),
        ],
        LICENSE_LABEL,
        license.encoded(),
    )
    .to_string()
}

/// Parses a license file's text (headers are informational; the block is what is signed).
pub fn parse_license(path: &Path, text: &str) -> Result<License> {
    let (_, bytes) = dearmor(path, text, LICENSE_LABEL)?;
    License::decode(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// Reads and decodes (but does not verify) a license file.
pub fn read_license(path: &Path) -> Result<License> {
    let text = read_text(path, false)?;
    parse_license(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Dongle, Vendor};
    use crate::testkeys;

    /// Found by the `license_decode` fuzz target: a BEGIN line shorter than
    /// its own markers, or with a non-ASCII label, panicked on a byte slice.
    #[test]
    fn odd_begin_lines_are_errors_not_panics() {
        let p = Path::new("license.tether");
        for text in [
            "-----BEGIN X\n",
            "-----BEGIN é-----\n",
            "-----BEGIN \u{1b}[31mRED-----\n",
            "-----BEGIN ééééééééééééééééééééééééééééééééééééééééééééééé\n",
        ] {
            let err = parse_license(p, text).unwrap_err().to_string();
            assert!(err.contains("block, expected"), "{text:?}: {err}");
            assert!(!err.contains('\u{1b}'), "control character echoed: {err:?}");
        }
        // Trimmed to "-----BEGIN": not a BEGIN line at all, so no block.
        assert!(parse_license(p, "-----BEGIN \n").is_err());
        let err = parse_license(p, "-----BEGIN PUBLIC KEY-----\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("holds a PUBLIC KEY block, expected TETHER LICENSE"),
            "{err}"
        );
    }

    #[test]
    fn private_key_round_trip_is_0600_and_openssl_shaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        write_secret_key(&path, &testkeys::vendor(), &[], Overwrite::Never).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        // RFC 8410 example shape: 48 DER bytes -> 64 base64 characters starting "MC4CAQAw".
        assert!(text.contains("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let (key, headers) = read_secret_key::<Vendor>(&path).unwrap();
        assert_eq!(key.public(), testkeys::vendor().public());
        assert_eq!(headers[ROLE_HEADER], "vendor");
    }

    #[test]
    fn existing_files_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_secret_key(&path, &testkeys::vendor(), &[], Overwrite::Never).unwrap();
        let err = write_secret_key(&path, &testkeys::vendor(), &[], Overwrite::Never).unwrap_err();
        assert!(matches!(err, Error::Exists(_)));
        write_secret_key(&path, &testkeys::vendor(), &[], Overwrite::Replace).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn readable_private_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_secret_key(&path, &testkeys::vendor(), &[], Overwrite::Never).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_key::<Vendor>(&path).unwrap_err();
        assert!(matches!(
            err,
            Error::InsecurePermissions { mode: 0o644, .. }
        ));
    }

    #[test]
    fn wrong_role_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_secret_key(&path, &testkeys::dongle(), &[], Overwrite::Never).unwrap();
        let err = read_secret_key::<Vendor>(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: holds a dongle key, expected a vendor key",
                path.display()
            )
        );
    }

    #[test]
    fn public_key_pem_and_base64_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pub");
        let public = testkeys::dongle().public();
        write_public_key(&path, &public, &[(SERIAL_HEADER, "TD-9")], Overwrite::Never).unwrap();
        let (read, headers) = read_public_key::<Dongle>(&path).unwrap();
        assert_eq!(read, public);
        assert_eq!(headers[SERIAL_HEADER], "TD-9");
        let b64 = STANDARD.encode(public.as_bytes());
        let (raw, _) = parse_public_key::<Dongle>(&path, &b64).unwrap();
        assert_eq!(raw, public);
        assert!(read_secret_key::<Dongle>(&path).is_err());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let p = Path::new("x");
        for text in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
        ] {
            assert!(
                dearmor(p, text, PRIVATE_LABEL)
                    .and_then(|(_, der)| {
                        if der.len() == 48 {
                            Ok(())
                        } else {
                            Err(Error::bad_file(p, "short"))
                        }
                    })
                    .is_err()
            );
        }
    }
}
