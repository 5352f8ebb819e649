//! The revocation receipt and site request decoders (`keys/src/receipt.rs`,
//! `keys/src/site_request.rs`), their request decoders, and their PEM file
//! parsers (for inputs that are text).
//!
//! Asserts: no panic; whatever decodes is canonical: its bytes are the
//! input, signing its fields again with the test dongle key reproduces the
//! body byte for byte (the key field aside, for a site request), and the
//! signature verifies exactly when the bytes are that signature's; its PEM
//! file parses back to the same value.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tether_keys::{Receipt, ReceiptRequest, SiteRequest, SiteRequestAsk, keyfile, testkeys};

fn check_receipt(r: &Receipt) {
    let bytes = r.encoded();
    assert_eq!(&Receipt::decode(bytes).expect("own bytes decode"), r);
    let again = Receipt::sign(r.request, &r.serial, r.counter, &testkeys::dongle())
        .expect("decoded fields sign");
    let body = bytes.len() - 64;
    assert_eq!(&again.encoded()[..body], &bytes[..body], "not canonical");
    assert_eq!(
        r.verify_signature(&testkeys::dongle().public()).is_ok(),
        again.encoded() == bytes
    );
    let pem = keyfile::receipt_pem(r);
    let dir = std::env::temp_dir().join(format!("tether-fuzz-receipt-{}", std::process::id()));
    std::fs::write(&dir, &pem).expect("temp file");
    let parsed = keyfile::read_receipt(&dir).expect("own PEM parses");
    let _ = std::fs::remove_file(&dir);
    assert_eq!(&parsed, r);
}

fn check_site_request(r: &SiteRequest) {
    let bytes = r.encoded();
    assert_eq!(&SiteRequest::decode(bytes).expect("own bytes decode"), r);
    let again = SiteRequest::sign(r.ask, &r.serial, r.counter, &testkeys::dongle())
        .expect("decoded fields sign");
    if r.dongle_key == testkeys::dongle().public() {
        let body = bytes.len() - 64;
        assert_eq!(&again.encoded()[..body], &bytes[..body], "not canonical");
        assert_eq!(r.verify_signature().is_ok(), again.encoded() == bytes);
    } else {
        let _ = r.verify_signature();
    }
    let pem = keyfile::site_request_pem(r);
    let parsed = keyfile::parse_site_request(Path::new("fuzz.tether"), &pem)
        .unwrap_or_else(|e| panic!("own PEM does not parse: {e}\n{pem}"));
    assert_eq!(&parsed, r);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Receipt::decode(data) {
        assert_eq!(r.encoded(), data);
        check_receipt(&r);
    }
    if let Ok(r) = SiteRequest::decode(data) {
        assert_eq!(r.encoded(), data);
        check_site_request(&r);
    }
    if let Ok(req) = ReceiptRequest::decode(data) {
        assert_eq!(req.encode(), data);
    }
    if let Ok(ask) = SiteRequestAsk::decode(data) {
        assert_eq!(ask.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(r) = keyfile::parse_site_request(Path::new("fuzz.tether"), text)
    {
        check_site_request(&r);
    }
});
