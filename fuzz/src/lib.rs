//! What the fuzz targets and `make_seeds` share: the fixed test chain the
//! token target trusts, and the input format of the emulator target.
//!
//! Everything here is made from the fixed test keys of `tether_keys::testkeys`
//! (vendor `01..`, dongle `02..`, session `03..`), as the vectors in
//! `keys/testdata/` are, so seeds regenerate to the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tether_emulator::{Device, Fault, Rules};
use tether_keys::{
    Certificate, DelegationRequest, License, LicenseId, LicenseTerms, TokenClaims, TokenSigner,
    UnixTime, testkeys,
};

/// The time tokens are verified at (the vectors' `NOW`).
pub const NOW: UnixTime = UnixTime::from_secs(1_750_000_000);
/// The serial of the test dongle.
pub const SERIAL: &str = "TD-0001";
/// The service the token target's verifier expects.
pub const SERVICE: &str = "backend";

/// The test license: vendor `01..`, dongle `02..` as `TD-0001`, backend and
/// muxer, valid 1 700 000 000 to 1 800 000 000, tokens of up to 300 s.
pub fn license() -> License {
    LicenseTerms {
        id: LicenseId([0x11; 16]),
        customer: "ACME Corp".into(),
        dongle_serial: SERIAL.into(),
        dongle: testkeys::dongle().public().into(),
        issued_at: UnixTime::from_secs(1_700_000_000),
        not_before: UnixTime::from_secs(1_700_000_000),
        not_after: UnixTime::from_secs(1_800_000_000),
        max_token_ttl: 300,
        features: vec!["mux".into(), "record".into()],
        services: vec!["backend".into(), "muxer".into()],
        seats: Default::default(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
    .sign(&testkeys::vendor())
    .unwrap()
}

/// A certificate for the test session key, 10 minutes around [`NOW`].
pub fn certificate(counter: u32) -> Certificate {
    Certificate::sign(
        DelegationRequest::new(
            [0xAB; 32],
            testkeys::session().public(),
            NOW - Duration::from_secs(60),
            NOW + Duration::from_secs(540),
        ),
        SERIAL,
        counter,
        &testkeys::dongle(),
    )
    .unwrap()
}

/// Claims a verifier for [`SERVICE`] accepts at [`NOW`].
pub fn claims(license: &License, cert: &Certificate) -> TokenClaims {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    TokenClaims {
        iss: format!("tether:{SERIAL}"),
        sub: SERVICE.into(),
        aud: SERVICE.into(),
        iat: NOW - Duration::from_secs(10),
        nbf: NOW - Duration::from_secs(10),
        exp: NOW + Duration::from_secs(290),
        jti: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        lic: b64(license.encoded()),
        dcert: b64(cert.encoded()),
        nonce: None,
        ins: None,
        prf: None,
    }
}

/// Signs `claims` with the test session key.
pub fn token(claims: &TokenClaims) -> String {
    TokenSigner::new(testkeys::session())
        .unwrap()
        .sign(claims)
        .unwrap()
}

/// Input format of the `emulator_device` target: one configuration byte,
/// then records of one clock byte and one 64-byte report.
pub const RECORD_LEN: usize = 1 + 64;

/// The device a configuration byte selects: bit 0 lifts the DELEGATE rate
/// limit, bits 1-2 pick a deterministic fault (none, rollback, replay, slow).
pub fn device(config: u8) -> Device {
    let mut rules = Rules::default();
    if config & 1 != 0 {
        rules.reach_budget = Duration::ZERO;
    }
    let mut device = Device::new(testkeys::dongle(), SERIAL, rules);
    device.set_fault(fault(config));
    device
}

/// The fault of a configuration byte.
pub fn fault(config: u8) -> Fault {
    match (config >> 1) & 3 {
        0 => Fault::None,
        1 => Fault::Rollback,
        2 => Fault::Replay,
        _ => Fault::Slow(Duration::from_millis(1)),
    }
}

/// How far a clock byte moves the device's uptime: up to 1.27 s in 10 ms
/// steps below 128, else up to 254 s in 2 s steps (past the message timeout
/// and the DELEGATE refill period).
pub fn clock_step(b: u8) -> Duration {
    if b < 128 {
        Duration::from_millis(u64::from(b) * 10)
    } else {
        Duration::from_secs(u64::from(b - 128) * 2)
    }
}
