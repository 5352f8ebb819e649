//! Domain-separation tags: every signature covers `tag || message`.
//!
//! The tags differ in their first bytes and end in NUL, so no message signed
//! under one tag is a valid message under another (`docs/formats.md`).

/// Prefix of the message a vendor signs for a license.
pub const LICENSE: &[u8] = b"tether/license/v1\0";
/// Prefix of the message a vendor signs for a revocation.
pub const REVOCATION: &[u8] = b"tether/revocation/v1\0";
/// Prefix of the message a dongle signs for a delegation certificate.
pub const DELEGATION: &[u8] = b"tether/delegation/v1\0";
/// Prefix of the message a dongle signs to prove presence.
pub const PRESENCE: &[u8] = b"tether/presence/v1\0";
/// Prefix of the message a dongle signs for a revocation receipt.
pub const RECEIPT: &[u8] = b"tether/receipt/v1\0";
/// Prefix of the message a dongle signs for a site request file.
pub const SITE_REQUEST: &[u8] = b"tether/site-request/v1\0";

/// Prefix of the bytes hashed for a usage ledger record's hash (not a
/// signature: the chain's link, `docs/formats.md`, "Usage ledger").
pub const LEDGER_RECORD: &[u8] = b"tether/ledger-record/v1\0";
/// Prefix of the message a session key signs for a ledger checkpoint.
pub const LEDGER_CHECKPOINT: &[u8] = b"tether/ledger-checkpoint/v1\0";
/// The first bytes of a usage export file (its magic and version).
pub const USAGE_EXPORT: &[u8] = b"tether/usage-export/v1\0";

/// `tag || message`.
pub fn tagged(tag: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + message.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(message);
    out
}

/// Checks a vendor-signed document (a license, a revocation): it names
/// `vendor` (`named`), and its last 64 bytes are `vendor`'s Ed25519
/// signature (`verify_strict`, RFC 8032 section 5.1.7) over the rest under
/// `tag`.
///
/// # Errors
///
/// [`crate::Error::WrongVendor`] when it names another vendor key,
/// [`crate::Error::BadSignature`] (naming `what`) when the signature does
/// not hold.
pub(crate) fn verify_vendor_signed(
    vendor: &crate::key::PublicKey<crate::key::Vendor>,
    named: crate::key::Fingerprint,
    encoded: &[u8],
    signature: &[u8; 64],
    tag: &[u8],
    what: &'static str,
) -> crate::Result<()> {
    let expected = vendor.fingerprint();
    if named != expected {
        return Err(crate::Error::WrongVendor {
            found: named.to_string(),
            expected: expected.to_string(),
        });
    }
    let body = &encoded[..encoded.len().saturating_sub(64)];
    if vendor.verify(&tagged(tag, body), signature) {
        Ok(())
    } else {
        Err(crate::Error::BadSignature(what))
    }
}
