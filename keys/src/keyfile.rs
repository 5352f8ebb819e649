//! Key and license files on disk (`docs/formats.md`, "Key files" and "License").
//!
//! - Private keys: PKCS#8 v1 (RFC 5958) Ed25519 keys as in RFC 8410
//!   section 7, encoded and decoded by `ed25519-dalek`'s `pkcs8` feature
//!   (`KeypairBytes`, `EncodePrivateKey` / `DecodePrivateKey`).
//! - Public keys: SubjectPublicKeyInfo as in RFC 8410 section 4 (`PublicKeyBytes`,
//!   `EncodePublicKey` / `DecodePublicKey`), or one line of base64.
//! - Both, and licenses (`TETHER LICENSE`), are PEM-armored per RFC 7468 by
//!   the `pem-rfc7468` crate (strict grammar, constant-time base64).
//!
//! Before the PEM block a file may carry `Tether-Name: value` lines: RFC 7468
//! section 5.2 explanatory text, which OpenSSL and `pem-rfc7468` skip. This
//! module writes and reads those lines; they name the key's role and, for
//! dongles, the serial. Reading is lenient where it always was (indented or
//! CRLF lines, blank lines after the block) and strict about the rest: one
//! block, of the expected label, holding exactly the RFC 8410 DER.
//!
//! Secret files are created with `create_new` and mode 0600 (or replaced
//! atomically with `--force`, see [`crate::fsutil`]), and refused on load
//! when group or others may read them. Buffers that held a secret (DER, PEM,
//! the file's bytes) are `Zeroizing` and wiped on drop.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
    KeypairBytes, PublicKeyBytes,
};
use pem_rfc7468::LineEnding;
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

/// Largest key or license file read, in bytes (64 KiB): far above any real
/// one (a key file is under 300 bytes, a license under 5 KiB armored).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// RFC 7468 label of a PKCS#8 private key (RFC 7468 section 10).
const PRIVATE_LABEL: &str = "PRIVATE KEY";
/// RFC 7468 label of a SubjectPublicKeyInfo (RFC 7468 section 13).
const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// Tether's own label for a license (`docs/formats.md`, "License").
const LICENSE_LABEL: &str = "TETHER LICENSE";
const REVOCATION_LABEL: &str = "TETHER REVOCATION";
const RECEIPT_LABEL: &str = "TETHER RECEIPT";
const SITE_REQUEST_LABEL: &str = "TETHER SITE REQUEST";
/// Line ending of every file written; the reader takes LF, CRLF or CR.
const LINE_ENDING: LineEnding = LineEnding::LF;

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

/// Checks the `extra` header lines a caller asks for: each must read back
/// as written. A name is `Tether-` and letters, digits or `-` (the reader
/// keeps only `Tether-*` lines), not the role header (the role is the type's;
/// a second role line would override it on reading); a value is non-empty
/// printable text without surrounding spaces (the reader trims) and without
/// line breaks (which would inject lines).
fn check_headers(extra: &[(&str, &str)]) -> Result<()> {
    for (name, value) in extra {
        let invalid = |reason: &str| Error::Invalid {
            what: "key file header",
            reason: format!("{name:?}: {reason}"),
        };
        let good_name = name.strip_prefix("Tether-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !good_name {
            return Err(invalid(
                "a header name is Tether- and letters, digits or '-'",
            ));
        }
        if name.eq_ignore_ascii_case(ROLE_HEADER) {
            return Err(invalid("the role comes from the key's type"));
        }
        if value.is_empty() || value.trim() != *value || value.chars().any(char::is_control) {
            return Err(invalid(
                "a header value is printable text, without line breaks or surrounding spaces",
            ));
        }
    }
    Ok(())
}

/// The `Tether-*` header lines, one `Name: value` line each.
fn header_lines(headers: &[(&str, &str)]) -> String {
    headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// PEM-armors `bytes` under `label` (RFC 7468 section 2); the result is wiped on drop.
fn armor(label: &'static str, bytes: &[u8]) -> Result<Zeroizing<String>> {
    pem_rfc7468::encode_string(label, LINE_ENDING, bytes)
        .map(Zeroizing::new)
        .map_err(|e| Error::Invalid {
            what: "PEM block",
            reason: e.to_string(),
        })
}

/// The file's header lines, then the PEM block.
fn with_headers(headers: &[(&str, &str)], block: &str) -> Zeroizing<String> {
    let head = header_lines(headers);
    // Sized once so no reallocation leaves a copy of a secret block behind.
    let mut out = Zeroizing::new(String::with_capacity(head.len() + block.len()));
    out.push_str(&head);
    out.push_str(block);
    out
}

/// Printable ASCII only, at most 40 characters: a label read from an untrusted file.
fn shown_label(rest: &str) -> String {
    rest.strip_suffix("-----")
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
        .collect()
}

/// What to do about a block of another kind, when there is something to say.
fn hint(found: &str) -> &'static str {
    match found {
        "ENCRYPTED PRIVATE KEY" => {
            " (an encrypted key: decrypt it first, e.g. openssl pkey -in FILE -out PLAIN.pem)"
        }
        "OPENSSH PRIVATE KEY" => " (an OpenSSH key: only PKCS#8 Ed25519 keys are read)",
        _ => "",
    }
}

/// Splits `text` into the `Tether-*` header lines before the PEM block and
/// the block, which `pem-rfc7468` decodes (RFC 7468 section 3); the decoded
/// bytes are wiped on drop.
fn dearmor(path: &Path, text: &str, label: &str) -> Result<(Headers, Zeroizing<Vec<u8>>)> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut headers = Headers::new();
    // The base64 lines, trimmed and joined: files were always read whatever
    // their wrapping, and RFC 7468's strict grammar (`pem-rfc7468`) wants
    // 64-column lines, so the block is rewrapped below.
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    let mut state = 0; // 0: before, 1: inside, 2: after
    for line in text.lines().map(str::trim) {
        match state {
            0 if line == begin => state = 1,
            0 if let Some(rest) = line.strip_prefix("-----BEGIN ") => {
                // The label comes from an untrusted file: no slicing by byte
                // offsets (short or non-ASCII lines), and nothing but
                // printable ASCII reaches the terminal.
                let found = shown_label(rest);
                return Err(Error::bad_file(
                    path,
                    format!("holds a {found} block, expected {label}{}", hint(&found)),
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
    let mut block = Zeroizing::new(String::with_capacity(
        begin.len() + end.len() + body.len() + body.len() / 64 + 3,
    ));
    block.push_str(&begin);
    block.push('\n');
    // Whole characters only: a non-ASCII body is refused by the decoder, not
    // split mid-character here.
    let mut column = 0;
    for c in body.chars() {
        if column == 64 {
            block.push('\n');
            column = 0;
        }
        block.push(c);
        column += 1;
    }
    if column > 0 {
        block.push('\n');
    }
    block.push_str(&end);
    block.push('\n');
    let pem_error = |e: pem_rfc7468::Error| match e {
        pem_rfc7468::Error::Base64(_) => Error::bad_file(path, "PEM body is not valid base64"),
        pem_rfc7468::Error::HeaderDisallowed => Error::bad_file(
            path,
            "PEM block has RFC 1421 headers (an encrypted or legacy key?)",
        ),
        other => Error::bad_file(path, format!("malformed PEM block: {other}")),
    };
    let mut decoder = pem_rfc7468::Decoder::new(block.as_bytes()).map_err(pem_error)?;
    if decoder.type_label() != label {
        return Err(Error::bad_file(
            path,
            format!("no complete {label} PEM block"),
        ));
    }
    // Decoded straight into a buffer of the final size: no reallocation
    // leaves a copy of a secret behind.
    let mut bytes = Zeroizing::new(vec![0u8; decoder.remaining_len()]);
    let len = decoder.decode(&mut bytes).map_err(pem_error)?.len();
    if !decoder.is_finished() {
        return Err(Error::bad_file(path, "PEM body is not valid base64"));
    }
    bytes.truncate(len);
    Ok((headers, bytes))
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

/// Reads at most [`MAX_FILE_LEN`] bytes; for a secret, refuses a file group
/// or others may read. The bytes are wiped on drop.
fn read_bytes(path: &Path, secret: bool) -> Result<Zeroizing<Vec<u8>>> {
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
    if meta.len() > MAX_FILE_LEN {
        return Err(Error::bad_file(
            path,
            "file is too large to be a key or license",
        ));
    }
    Ok(Zeroizing::new(
        fs::read(path).map_err(|e| Error::io(path, e))?,
    ))
}

fn read_text(path: &Path, secret: bool) -> Result<Zeroizing<String>> {
    let raw = read_bytes(path, secret)?;
    let text = std::str::from_utf8(&raw).map_err(|_| Error::bad_file(path, "not a text file"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// The PKCS#8 v1 DER of `seed` (RFC 8410 section 7): 48 bytes, wiped on drop.
fn pkcs8_v1(seed: &[u8; 32]) -> Result<ed25519_dalek::pkcs8::SecretDocument> {
    // `public_key: None` makes it v1, the form OpenSSL writes and this module
    // always wrote (`SigningKey`'s own encoder adds the public key: v2).
    // `KeypairBytes` wipes its seed on drop (`ed25519`'s `zeroize` feature).
    KeypairBytes {
        secret_key: *seed,
        public_key: None,
    }
    .to_pkcs8_der()
    .map_err(|e| Error::Invalid {
        what: "private key",
        reason: e.to_string(),
    })
}

/// Decodes an Ed25519 PKCS#8 v1 private key (RFC 8410 section 7): exactly
/// `302e020100300506032b657004220420 || seed`, nothing else.
fn decode_private<R: Role>(path: &Path, der: &[u8]) -> Result<SecretKey<R>> {
    let not_ed25519 = || Error::bad_file(path, "not an Ed25519 PKCS#8 private key");
    let keypair = KeypairBytes::from_pkcs8_der(der).map_err(|_| not_ed25519())?;
    if keypair.public_key.is_some() {
        return Err(Error::bad_file(
            path,
            "a PKCS#8 v2 key (with its public key); only v1 is read (openssl pkey -in FILE rewrites it as v1)",
        ));
    }
    // The DER decoder is strict already; re-encoding and comparing pins the
    // exact bytes the format allows (no attributes, no alternative lengths).
    let seed = Zeroizing::new(keypair.secret_key);
    if pkcs8_v1(&seed)?.as_bytes() != der {
        return Err(not_ed25519());
    }
    Ok(SecretKey::from_seed(&seed))
}

/// The text of a private key file: `Tether-Key-Role` and any `extra` header
/// lines, then the PKCS#8 v1 PEM block. Wiped on drop.
fn secret_key_pem<R: Role>(
    key: &SecretKey<R>,
    extra: &[(&str, &str)],
) -> Result<Zeroizing<String>> {
    let der = pkcs8_v1(&key.expose_seed())?;
    let block = der
        .to_pem(PRIVATE_LABEL, LINE_ENDING)
        .map_err(|e| Error::Invalid {
            what: "private key",
            reason: e.to_string(),
        })?;
    let mut headers = vec![(ROLE_HEADER, R::NAME)];
    headers.extend_from_slice(extra);
    Ok(with_headers(&headers, &block))
}

/// Writes a private key file (mode 0600) with its role and any `extra` headers
/// (`docs/formats.md`, "Key files"; PKCS#8 v1 per RFC 8410 section 7, PEM per
/// RFC 7468).
///
/// # Errors
///
/// [`Error::Invalid`] if an `extra` header would not read back as written
/// (a name other than `Tether-` and letters, digits or `-`, the role header,
/// or a value that is empty, padded or holds a line break) or the key cannot
/// be encoded (which an Ed25519 seed always can); [`Error::Exists`] if the
/// file exists and `overwrite` is [`Overwrite::Never`]; [`Error::Io`] if it
/// cannot be written.
pub fn write_secret_key<R: Role>(
    path: &Path,
    key: &SecretKey<R>,
    extra: &[(&str, &str)],
    overwrite: Overwrite,
) -> Result<()> {
    check_headers(extra)?;
    let pem = secret_key_pem(key, extra)?;
    write_file(path, pem.as_bytes(), 0o600, overwrite)
}

/// Reads a private key file of role `R` (`docs/formats.md`, "Key files").
/// A file without a `Tether-Key-Role` line is taken as any role.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; [`Error::InsecurePermissions`] if group
/// or others may read it; [`Error::WrongRole`] if it names another role;
/// [`Error::BadFile`] for anything but one PEM block holding an Ed25519
/// PKCS#8 v1 key (RFC 8410 section 7) in a file of at most [`MAX_FILE_LEN`]
/// bytes.
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
    Ok((decode_private(path, &der)?, headers))
}

/// Imports an Ed25519 private key made by another tool, as role `R` stated
/// by the caller: PKCS#8 v1 (RFC 8410 section 7) as PEM (RFC 7468) or raw
/// DER, which is what `openssl genpkey -algorithm ed25519 [-outform DER]`
/// writes. Any `Tether-*` header lines are dropped; a `Tether-Key-Role` line
/// naming another role is still refused. Write the key out with
/// [`write_secret_key`] to give it its role header.
///
/// The bounds are those of [`read_secret_key`]: the file must not be readable
/// by group or others (OpenSSL 3 creates private keys with mode 0600), and
/// only the exact RFC 8410 v1 encoding is accepted.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; [`Error::InsecurePermissions`] if group
/// or others may read it; [`Error::WrongRole`] if a header names another
/// role; [`Error::BadFile`] for anything but an Ed25519 PKCS#8 v1 key (an
/// encrypted key is named as such) or a file over [`MAX_FILE_LEN`] bytes.
pub fn import_secret_key<R: Role>(path: &Path) -> Result<SecretKey<R>> {
    let raw = read_bytes(path, true)?;
    match std::str::from_utf8(&raw) {
        Ok(text) if text.contains("-----BEGIN ") => {
            if text.contains("-----BEGIN PUBLIC KEY-----") {
                return Err(Error::bad_file(
                    path,
                    "holds a public key, expected a private key",
                ));
            }
            let (headers, der) = dearmor(path, text, PRIVATE_LABEL)?;
            check_role::<R>(path, &headers)?;
            decode_private(path, &der)
        }
        // DER is binary: a SEQUENCE tag, then the length.
        _ if raw.first() == Some(&0x30) => decode_private(path, &raw),
        _ => Err(Error::bad_file(
            path,
            "neither a PEM nor a DER PKCS#8 private key",
        )),
    }
}

/// The PEM text of a public key file: `Tether-Key-Role` and any `extra`
/// header lines, then the SubjectPublicKeyInfo (RFC 8410 section 4) as PEM
/// (RFC 7468).
///
/// # Panics
///
/// Never in practice: encoding fails only for an invalid PEM label or an
/// input too long to armor, and both label and the 44-byte DER are fixed.
pub fn public_key_pem<R: Role>(key: &PublicKey<R>, extra: &[(&str, &str)]) -> String {
    #[allow(clippy::expect_used)] // See "# Panics": fixed label, fixed 44-byte input.
    let block = key
        .as_dalek()
        .to_public_key_pem(LINE_ENDING)
        .expect("an Ed25519 SPKI always encodes");
    let mut headers = vec![(ROLE_HEADER, R::NAME)];
    headers.extend_from_slice(extra);
    with_headers(&headers, &block).to_string()
}

/// Writes a public key file (mode 0644), as [`public_key_pem`] renders it.
///
/// # Errors
///
/// [`Error::Invalid`] if an `extra` header would not read back as written
/// (as for [`write_secret_key`]); [`Error::Exists`] if the file exists and `overwrite` is
/// [`Overwrite::Never`]; [`Error::Io`] if it cannot be written.
pub fn write_public_key<R: Role>(
    path: &Path,
    key: &PublicKey<R>,
    extra: &[(&str, &str)],
    overwrite: Overwrite,
) -> Result<()> {
    check_headers(extra)?;
    write_file(
        path,
        public_key_pem(key, extra).as_bytes(),
        0o644,
        overwrite,
    )
}

/// Parses a public key of role `R` from PEM text (an Ed25519
/// SubjectPublicKeyInfo, RFC 8410 section 4) or one line of base64 (the 32
/// raw bytes). `path` only names the source in errors.
///
/// # Errors
///
/// [`Error::WrongRole`] if a header names another role; [`Error::BadFile`] if
/// the text is neither form, holds a private key, or the key is not a valid,
/// non-small-order Ed25519 point.
pub fn parse_public_key<R: Role>(path: &Path, text: &str) -> Result<(PublicKey<R>, Headers)> {
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(Error::bad_file(
            path,
            "holds a private key, expected a public key",
        ));
    }
    let (headers, raw) = if text.contains("-----BEGIN ") {
        let (headers, der) = dearmor(path, text, PUBLIC_LABEL)?;
        let not_ed25519 = || Error::bad_file(path, "not an Ed25519 public key");
        let key = PublicKeyBytes::from_public_key_der(&der).map_err(|_| not_ed25519())?;
        // Pins the exact RFC 8410 bytes, as for private keys.
        match key.to_public_key_der() {
            Ok(doc) if doc.as_bytes() == der.as_slice() => {}
            _ => return Err(not_ed25519()),
        }
        (headers, key.to_bytes().to_vec())
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

/// Reads a public key file of role `R`, as [`parse_public_key`] parses it.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; [`Error::BadFile`] if it is over
/// [`MAX_FILE_LEN`] bytes, not UTF-8, or not a public key of that form;
/// [`Error::WrongRole`] if it names another role.
pub fn read_public_key<R: Role>(path: &Path) -> Result<(PublicKey<R>, Headers)> {
    let text = read_text(path, false)?;
    parse_public_key(path, &text)
}

/// The PEM text of a license file (`docs/formats.md`, "License"):
/// informational `Tether-License-Id` and `Tether-Customer` lines, then the
/// signed bytes as a `TETHER LICENSE` block (RFC 7468 armor).
///
/// # Panics
///
/// Never in practice: armoring fails only for an invalid label or an input
/// too long to armor, and the label is fixed and a [`License`] is at most
/// [`crate::license::MAX_LICENSE_LEN`] bytes.
pub fn license_pem(license: &License) -> String {
    let terms = license.terms();
    #[allow(clippy::expect_used)] // See "# Panics": fixed label, bounded input.
    let block = armor(LICENSE_LABEL, license.encoded()).expect("a license always armors");
    with_headers(
        &[
            ("Tether-License-Id", &terms.id.to_string()),
            ("Tether-Customer", &terms.customer),
        ],
        &block,
    )
    .to_string()
}

/// Parses a license file's text (headers are informational; the block is
/// what is signed). Decodes but does not verify: see [`License::verify`].
///
/// # Errors
///
/// [`Error::BadFile`] naming `path` if the text holds no single
/// `TETHER LICENSE` block or the block does not decode as a license.
pub fn parse_license(path: &Path, text: &str) -> Result<License> {
    let (_, bytes) = dearmor(path, text, LICENSE_LABEL)?;
    License::decode(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// Reads and decodes (but does not verify) a license file.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; otherwise as [`parse_license`], and
/// [`Error::BadFile`] for a file over [`MAX_FILE_LEN`] bytes or not UTF-8.
pub fn read_license(path: &Path) -> Result<License> {
    let text = read_text(path, false)?;
    parse_license(path, &text)
}

/// The PEM text of a revocation file (`docs/formats.md`, "Revocation"): an
/// informational `Tether-License-Id` line, then the signed bytes as a
/// `TETHER REVOCATION` block.
///
/// # Panics
///
/// Never in practice: the label is fixed and a revocation is 121 bytes.
pub fn revocation_pem(rev: &crate::Revocation) -> String {
    #[allow(clippy::expect_used)] // See "# Panics": fixed label, bounded input.
    let block = armor(REVOCATION_LABEL, rev.encoded()).expect("a revocation always armors");
    with_headers(
        &[("Tether-License-Id", &rev.license_id.to_string())],
        &block,
    )
    .to_string()
}

/// The PEM text of a revocation receipt (`docs/formats.md`, "Revocation
/// receipt"): informational `Tether-License-Id`, `Tether-Dongle-Serial` and
/// `Tether-Counter` lines, then the signed bytes as a `TETHER RECEIPT` block.
///
/// # Panics
///
/// Never in practice: the label is fixed and a receipt is at most 398 bytes.
pub fn receipt_pem(receipt: &crate::Receipt) -> String {
    #[allow(clippy::expect_used)] // See "# Panics": fixed label, bounded input.
    let block = armor(RECEIPT_LABEL, receipt.encoded()).expect("a receipt always armors");
    with_headers(
        &[
            ("Tether-License-Id", &receipt.request.license_id.to_string()),
            ("Tether-Dongle-Serial", &receipt.serial),
            ("Tether-Counter", &receipt.counter.to_string()),
        ],
        &block,
    )
    .to_string()
}

/// Reads and decodes (but does not verify) a revocation receipt file.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; otherwise as [`parse_receipt`].
pub fn read_receipt(path: &Path) -> Result<crate::Receipt> {
    let text = read_text(path, false)?;
    parse_receipt(path, &text)
}

/// Parses a revocation receipt file's text (decodes, does not verify).
///
/// # Errors
///
/// [`Error::BadFile`] naming `path` if it holds no `TETHER RECEIPT` block
/// or the block does not decode.
pub fn parse_receipt(path: &Path, text: &str) -> Result<crate::Receipt> {
    let (_, bytes) = dearmor(path, text, RECEIPT_LABEL)?;
    crate::Receipt::decode(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// The PEM text of a site request file (`docs/formats.md`, "Site request"):
/// informational `Tether-License-Id`, `Tether-Dongle-Serial` and
/// `Tether-Counter` lines, then the signed bytes as a `TETHER SITE REQUEST`
/// block.
///
/// # Panics
///
/// Never in practice: the label is fixed and a request is at most 422 bytes.
pub fn site_request_pem(request: &crate::SiteRequest) -> String {
    #[allow(clippy::expect_used)] // See "# Panics": fixed label, bounded input.
    let block = armor(SITE_REQUEST_LABEL, request.encoded()).expect("a site request always armors");
    with_headers(
        &[
            ("Tether-License-Id", &request.ask.license_id.to_string()),
            ("Tether-Dongle-Serial", &request.serial),
            ("Tether-Counter", &request.counter.to_string()),
        ],
        &block,
    )
    .to_string()
}

/// Parses a site request file's text (decodes, does not verify).
///
/// # Errors
///
/// [`Error::BadFile`] naming `path` if it holds no `TETHER SITE REQUEST`
/// block or the block does not decode.
pub fn parse_site_request(path: &Path, text: &str) -> Result<crate::SiteRequest> {
    let (_, bytes) = dearmor(path, text, SITE_REQUEST_LABEL)?;
    crate::SiteRequest::decode(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// Reads and decodes (but does not verify) a site request file.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; otherwise as [`parse_site_request`].
pub fn read_site_request(path: &Path) -> Result<crate::SiteRequest> {
    let text = read_text(path, false)?;
    parse_site_request(path, &text)
}

/// What a file handed to `tether license install` holds.
#[derive(Debug, Clone)]
pub enum LicenseUpdate {
    /// A license (a new version of the installed one).
    License(Box<License>),
    /// A revocation of the installed license.
    Revocation(crate::Revocation),
}

/// Parses a license or a revocation file's text, by its block's label.
/// Decodes but does not verify.
///
/// # Errors
///
/// [`Error::BadFile`] naming `path` if the text holds neither block or the
/// block does not decode.
pub fn parse_update(path: &Path, text: &str) -> Result<LicenseUpdate> {
    if text.contains(&format!("-----BEGIN {REVOCATION_LABEL}-----")) {
        let (_, bytes) = dearmor(path, text, REVOCATION_LABEL)?;
        crate::Revocation::decode(&bytes)
            .map(LicenseUpdate::Revocation)
            .map_err(|e| Error::bad_file(path, e.to_string()))
    } else {
        parse_license(path, text).map(|l| LicenseUpdate::License(Box::new(l)))
    }
}

/// Reads and decodes (but does not verify) a license or revocation file.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; otherwise as [`parse_update`].
pub fn read_update(path: &Path) -> Result<LicenseUpdate> {
    let text = read_text(path, false)?;
    parse_update(path, &text)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    /// Copies a fixture into `dir` with `mode` (git keeps only 0644/0755).
    fn fixture_copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::copy(testdata(name), &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Without its `Tether-*` lines: what OpenSSL writes for the same key.
    fn strip_headers(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("Tether-"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `test_dongle_key.pem` / `.pub.pem` were written by the hand-written
    /// encoder this module had before `pkcs8` / `pem-rfc7468`: files made
    /// then still load, and the same key is written byte for byte as before.
    #[test]
    fn files_written_before_the_library_switch_load_and_rewrite_identically() {
        let serial = [(SERIAL_HEADER, "TD-0001")];
        let old_secret = fs::read_to_string(testdata("test_dongle_key.pem")).unwrap();
        let old_public = fs::read_to_string(testdata("test_dongle_key.pub.pem")).unwrap();
        let key = testkeys::dongle();
        assert_eq!(*secret_key_pem(&key, &serial).unwrap(), old_secret);
        assert_eq!(public_key_pem(&key.public(), &serial), old_public);

        let dir = tempfile::tempdir().unwrap();
        let path = fixture_copy(dir.path(), "test_dongle_key.pem", 0o600);
        let (read, headers) = read_secret_key::<Dongle>(&path).unwrap();
        assert_eq!(read.public(), key.public());
        assert_eq!(headers[SERIAL_HEADER], "TD-0001");
        assert_eq!(headers[ROLE_HEADER], "dongle");
        let (public, headers) =
            read_public_key::<Dongle>(&testdata("test_dongle_key.pub.pem")).unwrap();
        assert_eq!(public, key.public());
        assert_eq!(headers[SERIAL_HEADER], "TD-0001");
    }

    /// `openssl_ed25519_test_key.*` were made by
    /// `openssl genpkey -algorithm ed25519` (OpenSSL 3.0) and `openssl pkey`
    /// (`-outform DER`, `-pubout`): a test key, never use it.
    #[test]
    fn openssl_made_key_imports_with_an_explicit_role() {
        let dir = tempfile::tempdir().unwrap();
        let pem = fixture_copy(dir.path(), "openssl_ed25519_test_key.pem", 0o600);
        let der = fixture_copy(dir.path(), "openssl_ed25519_test_key.der", 0o600);
        let (openssl_public, headers) =
            read_public_key::<Vendor>(&testdata("openssl_ed25519_test_key.pub.pem")).unwrap();
        assert!(headers.is_empty());

        let key = import_secret_key::<Vendor>(&pem).unwrap();
        assert_eq!(key.public(), openssl_public);
        assert_eq!(
            import_secret_key::<Vendor>(&der).unwrap().public(),
            openssl_public
        );
        // The caller states the role: the same file is any role it is imported as.
        assert_eq!(
            import_secret_key::<Dongle>(&pem)
                .unwrap()
                .public()
                .as_bytes(),
            openssl_public.as_bytes()
        );

        // Written back as a Tether file: OpenSSL's bytes under a role header.
        let out = dir.path().join("vendor.key");
        write_secret_key(&out, &key, &[], Overwrite::Never).unwrap();
        let written = fs::read_to_string(&out).unwrap();
        assert!(written.starts_with("Tether-Key-Role: vendor\n"));
        assert_eq!(
            strip_headers(&written),
            fs::read_to_string(testdata("openssl_ed25519_test_key.pem")).unwrap()
        );
        assert_eq!(
            strip_headers(&public_key_pem(&key.public(), &[])),
            fs::read_to_string(testdata("openssl_ed25519_test_key.pub.pem")).unwrap()
        );
        let (again, _) = read_secret_key::<Vendor>(&out).unwrap();
        assert_eq!(again.public(), openssl_public);
        assert!(matches!(
            import_secret_key::<Dongle>(&out),
            Err(Error::WrongRole { .. })
        ));
    }

    #[test]
    fn import_keeps_every_bound_of_read() {
        let dir = tempfile::tempdir().unwrap();
        // Readable by others: refused, whoever made it.
        let open = fixture_copy(dir.path(), "openssl_ed25519_test_key.pem", 0o644);
        assert!(matches!(
            import_secret_key::<Vendor>(&open),
            Err(Error::InsecurePermissions { mode: 0o644, .. })
        ));
        let encrypted = fixture_copy(dir.path(), "fail_openssl_encrypted_test_key.pem", 0o600);
        for err in [
            import_secret_key::<Vendor>(&encrypted).unwrap_err(),
            read_secret_key::<Vendor>(&encrypted).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(err.contains("holds a ENCRYPTED PRIVATE KEY block"), "{err}");
            assert!(err.contains("decrypt it first"), "{err}");
        }
        let public = fixture_copy(dir.path(), "openssl_ed25519_test_key.pub.pem", 0o600);
        let err = import_secret_key::<Vendor>(&public).unwrap_err();
        assert!(err.to_string().contains("holds a public key"), "{err}");

        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            write_file(&path, bytes, 0o600, Overwrite::Never).unwrap();
            path
        };
        // PKCS#8 v2 (the public key inside), as ed25519-dalek's own encoder writes it.
        let v2 = KeypairBytes {
            secret_key: [0x02; 32],
            public_key: Some(PublicKeyBytes(*testkeys::dongle().public().as_bytes())),
        };
        let v2_pem = v2.to_pkcs8_pem(LINE_ENDING).unwrap();
        let v2_der = v2.to_pkcs8_der().unwrap();
        for path in [
            write("v2.pem", v2_pem.as_bytes()),
            write("v2.der", v2_der.as_bytes()),
        ] {
            let err = import_secret_key::<Dongle>(&path).unwrap_err();
            assert!(err.to_string().contains("PKCS#8 v2"), "{err}");
            assert!(read_secret_key::<Dongle>(&path).is_err());
        }
        // DER with a byte after it, or cut short, or not DER at all.
        let mut long = fs::read(testdata("openssl_ed25519_test_key.der")).unwrap();
        long.push(0);
        let short = &long[..40];
        for (name, bytes) in [
            ("long.der", &long[..]),
            ("short.der", short),
            ("text", b"hello".as_slice()),
            ("empty", b"".as_slice()),
        ] {
            assert!(
                matches!(
                    import_secret_key::<Vendor>(&write(name, bytes)),
                    Err(Error::BadFile { .. })
                ),
                "{name}"
            );
        }
    }

    /// The reader stays as lenient as it was where that is harmless (CRLF,
    /// indentation, blank lines after the block) and as strict where not.
    #[test]
    fn layout_leniency_is_kept_and_only_that() {
        let p = Path::new("x.pub");
        let public = testkeys::vendor().public();
        let pem = public_key_pem(&public, &[]);
        let crlf = pem.replace('\n', "\r\n");
        let indented: String = pem.lines().map(|l| format!("  {l}  \n")).collect();
        let trailing = format!("{pem}\n\n");
        for text in [&pem, &crlf, &indented, &trailing] {
            let (read, _) = parse_public_key::<Vendor>(p, text).unwrap();
            assert_eq!(read, public, "{text:?}");
        }
        // Any wrapping of the base64, as always: one long line, 76 columns.
        let license = fs::read_to_string(testdata("license_valid.tether")).unwrap();
        let expected = parse_license(p, &license).unwrap();
        let b64: String = license
            .lines()
            .filter(|l| !l.contains(':') && !l.starts_with("-----"))
            .collect();
        assert!(b64.len() > 2 * 76);
        let wrapped = |width: usize| {
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(width)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN TETHER LICENSE-----\n{}\n-----END TETHER LICENSE-----\n",
                lines.join("\n")
            )
        };
        for width in [b64.len(), 76, 20] {
            let read = parse_license(p, &wrapped(width)).unwrap();
            assert_eq!(read.encoded(), expected.encoded(), "width {width}");
        }
        let after = format!("{pem}more\n");
        let err = parse_public_key::<Vendor>(p, &after).unwrap_err();
        assert!(err.to_string().contains("after the PEM block"), "{err}");
        let two = format!("{pem}{pem}");
        assert!(parse_public_key::<Vendor>(p, &two).is_err());
        // A SubjectPublicKeyInfo of another algorithm (X25519, RFC 8410 section 4).
        let x25519 = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VuAyEAgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=\n\
                      -----END PUBLIC KEY-----\n";
        let err = parse_public_key::<Vendor>(p, x25519).unwrap_err();
        assert!(
            err.to_string().contains("not an Ed25519 public key"),
            "{err}"
        );
    }

    #[test]
    fn headers_that_would_not_read_back_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = testkeys::dongle();
        for extra in [
            [(SERIAL_HEADER, "TD-1\nTether-Key-Role: vendor")],
            [(SERIAL_HEADER, "TD-1\r")],
            [(SERIAL_HEADER, " TD-1")],
            [(SERIAL_HEADER, "")],
            [(ROLE_HEADER, "vendor")],
            [("Tether-Key-role", "vendor")],
            [("Serial", "TD-1")],
            [("Tether-A: b", "c")],
        ] {
            let err = write_secret_key(&path, &key, &extra, Overwrite::Never).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{extra:?}: {err}");
            let err = write_public_key(&path, &key.public(), &extra, Overwrite::Never);
            assert!(matches!(err, Err(Error::Invalid { .. })), "{extra:?}");
            assert!(!path.exists());
        }
        write_secret_key(
            &path,
            &key,
            &[(SERIAL_HEADER, "TD-3F2A9C01")],
            Overwrite::Never,
        )
        .unwrap();
    }

    mod round_trips {
        use proptest::prelude::*;

        use super::*;

        fn headers_of(serial: &str) -> Vec<(&str, &str)> {
            if serial.is_empty() {
                vec![]
            } else {
                vec![(SERIAL_HEADER, serial)]
            }
        }

        proptest! {
            #[test]
            fn secret_key_text_round_trips(
                seed in proptest::array::uniform32(any::<u8>()),
                serial in "[A-Za-z0-9-]{0,24}",
            ) {
                let key = SecretKey::<Dongle>::from_seed(&seed);
                let pem = secret_key_pem(&key, &headers_of(&serial)).unwrap();
                let (headers, der) = dearmor(Path::new("k"), &pem, PRIVATE_LABEL).unwrap();
                prop_assert_eq!(der.len(), 48);
                let read = decode_private::<Dongle>(Path::new("k"), &der).unwrap();
                prop_assert_eq!(*read.expose_seed(), seed);
                prop_assert_eq!(&headers[ROLE_HEADER], "dongle");
                prop_assert_eq!(headers.get(SERIAL_HEADER).map(String::as_str),
                    (!serial.is_empty()).then_some(serial.as_str()));
            }

            #[test]
            fn public_key_text_round_trips(
                seed in proptest::array::uniform32(any::<u8>()),
                serial in "[A-Za-z0-9-]{0,24}",
            ) {
                let public = SecretKey::<Vendor>::from_seed(&seed).public();
                let pem = public_key_pem(&public, &headers_of(&serial));
                let (read, _) = parse_public_key::<Vendor>(Path::new("k"), &pem).unwrap();
                prop_assert_eq!(read, public);
                let b64 = STANDARD.encode(public.as_bytes());
                let (read, _) = parse_public_key::<Vendor>(Path::new("k"), &b64).unwrap();
                prop_assert_eq!(read, public);
            }

            /// Through the file system: mode, `create_new`, atomic replace.
            #[test]
            fn secret_key_files_round_trip(
                seed in proptest::array::uniform32(any::<u8>()),
                replace_with in proptest::array::uniform32(any::<u8>()),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("k");
                let key = SecretKey::<Vendor>::from_seed(&seed);
                write_secret_key(&path, &key, &[], Overwrite::Never).unwrap();
                prop_assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
                prop_assert_eq!(*import_secret_key::<Vendor>(&path).unwrap().expose_seed(), seed);
                let other = SecretKey::<Vendor>::from_seed(&replace_with);
                prop_assert!(write_secret_key(&path, &other, &[], Overwrite::Never).is_err());
                write_secret_key(&path, &other, &[], Overwrite::Replace).unwrap();
                let (read, _) = read_secret_key::<Vendor>(&path).unwrap();
                prop_assert_eq!(*read.expose_seed(), replace_with);
                prop_assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
            }

            /// Any text, and any one-character edit of a real file: an
            /// answer, never a panic. (An edit inside the base64 may well be
            /// another valid key: PEM has no checksum, the signatures are
            /// what protect trust material.)
            #[test]
            fn parsers_never_panic_on_edits(
                text in ".{0,200}",
                at in 0usize..400,
                ch in any::<char>(),
            ) {
                let p = Path::new("x");
                let _ = parse_license(p, &text);
                let _ = parse_public_key::<Vendor>(p, &text);
                let _ = dearmor(p, &text, PRIVATE_LABEL);
                let key = testkeys::dongle();
                let edit = |text: &str| -> String {
                    let mut chars: Vec<char> = text.chars().collect();
                    let i = at % chars.len();
                    chars[i] = ch;
                    chars.into_iter().collect()
                };
                let edited = edit(&secret_key_pem(&key, &[]).unwrap());
                if let Ok((_, der)) = dearmor(p, &edited, PRIVATE_LABEL) {
                    let _ = decode_private::<Dongle>(p, &der);
                }
                let _ = parse_public_key::<Dongle>(p, &edit(&public_key_pem(&key.public(), &[])));
                let _ = parse_license(p, &edit(&license_pem(
                    &crate::license::tests::sample_terms().sign(&testkeys::vendor()).unwrap(),
                )));
            }
        }
    }
}
