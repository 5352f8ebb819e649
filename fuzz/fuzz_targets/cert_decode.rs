//! The delegation certificate decoder (`keys/src/delegation.rs`,
//! `Certificate::decode`): also what the host decodes from a DELEGATE answer.
//!
//! Asserts: no panic; a certificate that decodes is canonical: its bytes are
//! the input, and signing its contents again reproduces the body byte for
//! byte (and the whole certificate when it verifies under the test dongle key).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_keys::{Certificate, testkeys};

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = Certificate::decode(data) else {
        return;
    };
    assert_eq!(cert.encoded(), data);
    assert_eq!(
        Certificate::decode(cert.encoded()).expect("own bytes decode"),
        cert
    );
    // Version 1 files still decode; signing writes the current version, so
    // only a current-version certificate compares with its re-signed body.
    if cert.version() != tether_keys::delegation::CERT_VERSION {
        return;
    }
    let dongle = testkeys::dongle();
    let resigned = Certificate::sign(cert.request.clone(), &cert.serial, cert.counter, &dongle)
        .expect("decoded contents are signable");
    let body = data.len() - 64;
    assert_eq!(&resigned.encoded()[..body], &data[..body], "not canonical");
    assert_eq!(resigned.request, cert.request);
    if cert.verify(&dongle.public()).is_ok() {
        assert_eq!(resigned.encoded(), data);
    }
});
