//! The license decoder (`keys/src/license.rs`, `License::decode`) and the
//! license file parser (`keyfile::parse_license`, for inputs that are text).
//!
//! Asserts: no panic; a license that decodes is canonical: its bytes are the
//! input, and signing its terms again reproduces the body byte for byte
//! (vendor fingerprint aside, and entirely when it verifies under the test
//! vendor key); its PEM file parses back to the same license.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tether_keys::{License, keyfile, testkeys};

/// Offset and length of the vendor fingerprint in a license body.
const VENDOR_AT: usize = 1 + 16;
const VENDOR_LEN: usize = 32;

fn check(license: &License) {
    let bytes = license.encoded();
    assert_eq!(&License::decode(bytes).expect("own bytes decode"), license);

    let vendor = testkeys::vendor();
    // Version 1 files still decode, but signing always writes the current
    // version: only a current-version license can be compared with its
    // re-signed body.
    if license.version() != tether_keys::license::LICENSE_VERSION {
        return check_pem(license);
    }
    let resigned = license
        .terms()
        .clone()
        .sign(&vendor)
        .expect("decoded terms are valid terms");
    let body = bytes.len() - 64;
    let mut expected = bytes[..body].to_vec();
    expected[VENDOR_AT..VENDOR_AT + VENDOR_LEN].copy_from_slice(&vendor.public().fingerprint().0);
    assert_eq!(&resigned.encoded()[..body], &expected[..], "not canonical");
    if license.verify(&vendor.public()).is_ok() {
        assert_eq!(resigned.encoded(), bytes);
    }

    check_pem(license);
}

/// Its PEM file parses back to the same license.
fn check_pem(license: &License) {
    let pem = keyfile::license_pem(license);
    let parsed = keyfile::parse_license(Path::new("fuzz.tether"), &pem)
        .unwrap_or_else(|e| panic!("own PEM does not parse: {e}\n{pem}"));
    assert_eq!(&parsed, license);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(license) = License::decode(data) {
        assert_eq!(license.encoded(), data);
        check(&license);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(license) = keyfile::parse_license(Path::new("fuzz.tether"), text)
    {
        check(&license);
    }
});
