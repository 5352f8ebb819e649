//! Token signing per core, next to a raw `ed25519-dalek` signature over a
//! message of the same size, and `jsonwebtoken::encode` (the crate's own
//! path, which rebuilds the key per call), all in one run.
//!
//! `cargo bench -p tether-keys --bench token_sign`
//! Target: Tether's signer at least 85% of raw sign.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use tether_keys::{
    Certificate, DelegationRequest, LicenseId, LicenseTerms, TokenClaims, TokenSigner, testkeys,
};

#[path = "common/interleave.rs"]
mod interleave;
use interleave::rates;

fn main() {
    let license = LicenseTerms {
        id: LicenseId([7; 16]),
        customer: "ACME Corp".into(),
        dongle_serial: "TD-0001".into(),
        dongle: testkeys::dongle().public().into(),
        issued_at: tether_keys::UnixTime::from_secs(1_700_000_000),
        not_before: tether_keys::UnixTime::from_secs(1_700_000_000),
        not_after: tether_keys::UnixTime::from_secs(1_900_000_000),
        max_token_ttl: 300,
        features: vec!["mux".into()],
        services: vec!["backend".into(), "muxer".into()],
        seats: Default::default(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
    .sign(&testkeys::vendor())
    .unwrap();
    let cert = Certificate::sign(
        DelegationRequest::new(
            [1; 32],
            testkeys::session().public(),
            tether_keys::UnixTime::from_secs(1_800_000_000),
            tether_keys::UnixTime::from_secs(1_800_000_300),
        ),
        "TD-0001",
        1,
        &testkeys::dongle(),
    )
    .unwrap();
    let claims = TokenClaims {
        iss: "tether:TD-0001".into(),
        sub: "backend".into(),
        aud: "backend".into(),
        iat: tether_keys::UnixTime::from_secs(1_800_000_000),
        nbf: tether_keys::UnixTime::from_secs(1_800_000_000),
        exp: tether_keys::UnixTime::from_secs(1_800_000_060),
        jti: URL_SAFE_NO_PAD.encode([9u8; 16]),
        lic: URL_SAFE_NO_PAD.encode(license.encoded()),
        dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
        nonce: Some("q9Xw2".into()),
        ins: None,
        prf: None,
    };
    let signer = TokenSigner::new(testkeys::session()).unwrap();
    let token = signer.sign(&claims).unwrap();
    let signed_len = token.rsplit_once('.').unwrap().0.len();
    let message = vec![b'x'; signed_len];
    let raw = ed25519_dalek::SigningKey::from_bytes(&testkeys::TEST_SESSION_SEED);

    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&testkeys::TEST_SESSION_SEED);
    let jwt_key = jsonwebtoken::EncodingKey::from_ed_der(&pkcs8);
    let header =
        tether_keys::token::token_header(&testkeys::session().public().fingerprint().short());
    // Same bytes either way: the point of keeping jsonwebtoken's types.
    assert_eq!(
        jsonwebtoken::encode(&header, &claims, &jwt_key).unwrap(),
        token
    );

    let [raw_rate, tether_rate, jwt_rate] = rates(
        40,
        [
            &mut || {
                black_box(raw.sign(black_box(&message)));
            },
            &mut || {
                black_box(signer.sign(black_box(&claims)).unwrap());
            },
            &mut || {
                black_box(jsonwebtoken::encode(&header, black_box(&claims), &jwt_key).unwrap());
            },
        ],
    );
    println!(
        "token signing, one core, token of {} bytes ({signed_len} signed)",
        token.len()
    );
    println!("  raw ed25519-dalek sign ({signed_len} B)     {raw_rate:>10.0} /s  (ceiling)");
    println!(
        "  tether TokenSigner::sign              {tether_rate:>10.0} /s  {:>5.1}% of raw  (target >= 85%)",
        100.0 * tether_rate / raw_rate
    );
    println!(
        "  jsonwebtoken::encode (PKCS#8 key)     {jwt_rate:>10.0} /s  {:>5.1}% of raw  (peer)",
        100.0 * jwt_rate / raw_rate
    );
}
