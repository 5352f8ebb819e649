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

/// `tag || message`.
pub fn tagged(tag: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + message.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(message);
    out
}
