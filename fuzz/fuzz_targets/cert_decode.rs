//! The delegation certificate decoder (`keys/src/delegation.rs`,
//! `Certificate::decode`): also what the host decodes from a DELEGATE answer.
//!
//! Asserts: no panic; a certificate that decodes is canonical: its bytes are
//! the input, and signing its contents again reproduces the body byte for
//! byte (and the whole certificate when it verifies under the test dongle key);
//! a FIDO2 certificate rebuilds from its request and assertion to the same bytes.

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
    // FIDO2 (kind 2): rebuilding from the decoded request and assertion
    // reproduces the bytes.
    if cert.kind() == tether_keys::delegation::DONGLE_KIND_FIDO2 {
        let rebuilt = Certificate::from_fido2_assertion(
            cert.request.clone(),
            &cert.serial,
            cert.fido2_auth_data().expect("FIDO2 authData").to_vec(),
            cert.signature().to_vec(),
        )
        .expect("decoded FIDO2 contents rebuild");
        assert_eq!(rebuilt.encoded(), data, "not canonical");
        assert_eq!(rebuilt, cert);
        return;
    }
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
