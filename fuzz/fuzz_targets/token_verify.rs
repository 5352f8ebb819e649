//! The token verifier (`verifier/src/verify.rs`, `Verifier::verify_at`),
//! trusting the test vendor key, for service `backend`, at `tether_fuzz::NOW`.
//!
//! Asserts: no panic; verifying twice gives the same answer (the second one
//! comes from the caches); a nonce the token does not carry is refused; and a
//! token accepted is checked again independently, link by link: license under
//! the vendor key, certificate under the licensed dongle key, the token's
//! signature under the certified session key, audience, issuer, times.

#![no_main]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tether_fuzz::{NOW, SERVICE};
use tether_keys::{Certificate, License, testkeys};
use tether_verifier::{Error, Expectations, Verified, Verifier};

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .expect("accepted token part is not base64url")
}

fn independently_valid(token: &str, ok: &Verified) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted token is not three parts");
    let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).expect("header JSON");
    assert_eq!(header["alg"], "EdDSA");
    let claims: serde_json::Value = serde_json::from_slice(&b64(parts[1])).expect("claims JSON");
    let c = &ok.claims;
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["lic"], c.lic.as_str());
    assert_eq!(claims["dcert"], c.dcert.as_str());
    assert_eq!((c.aud.as_str(), c.sub.as_str()), (SERVICE, SERVICE));

    let license = License::decode(&b64(&c.lic)).expect("license");
    license
        .verify(&testkeys::vendor().public())
        .expect("license not signed by the vendor");
    assert!(license.allows_service(SERVICE));
    let terms = license.terms();
    assert_eq!(c.iss, format!("tether:{}", terms.dongle_serial));
    let cert = Certificate::decode(&b64(&c.dcert)).expect("certificate");
    assert_eq!(cert.serial, terms.dongle_serial);
    cert.verify_by(&terms.dongle)
        .expect("certificate not signed by the licensed dongle");
    assert_eq!(ok.cert_not_after, cert.request.not_after);
    let signature: [u8; 64] = b64(parts[2]).try_into().expect("64-byte signature");
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    assert!(
        cert.request
            .session_key
            .verify(signed.as_bytes(), &signature),
        "token not signed by the certified session key"
    );
    assert!(
        c.nbf <= NOW + Duration::from_secs(5)
            && NOW <= c.exp + Duration::from_secs(5)
            && c.exp.saturating_duration_since(c.iat)
                <= Duration::from_secs(u64::from(terms.max_token_ttl))
    );
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verifier = Verifier::new(testkeys::vendor().public(), Expectations::new(SERVICE));
    let first = verifier.verify_at(&token, None, NOW);
    let again = verifier.verify_at(&token, None, NOW);
    assert_eq!(first, again, "the cached answer differs");
    if let Ok(ok) = &first {
        independently_valid(&token, ok);
        let with_nonce = verifier.verify_at(&token, Some("fuzz-nonce"), NOW);
        if ok.claims.nonce.as_deref() == Some("fuzz-nonce") {
            assert_eq!(with_nonce.as_ref(), Ok(ok));
        } else {
            assert_eq!(with_nonce, Err(Error::NonceMismatch));
        }
    }
});
