//! The Rust side of `verifier/bindings-bench.sh`: `Verifier::verify_at` in a
//! loop on one conformance vector's token, at the vector's fixed time, to set
//! against the same loop through the C ABI (`verifier/c/examples/
//! bench_verify.c`). Built with the `ffi` profile, as the C library is.
//!
//!   bench_verify VECTORS_JSON VECTOR_NAME SECONDS_PER_MODE
//!
//! Prints `rust cold OPS_PER_S` (a new verifier per call: the vendor key's
//! PEM parsed, empty caches, three signatures checked, as
//! `tether_verifier_new_from_pem` + `tether_verify` + `tether_verifier_free`
//! do), `rust cached OPS_PER_S` (one verifier, the same token again: a cache
//! hit) and `session_pub B64URL` (the key the token is signed with, for
//! PyJWT).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{UnixTime, Vendor, testkeys};
use tether_verifier::{Expectations, Verifier};

/// Calls `f` in batches until `secs` have passed; calls per second.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 4,
        "usage: bench_verify VECTORS_JSON VECTOR_NAME SECONDS_PER_MODE"
    );
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    let v = all["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == args[2].as_str())
        .expect("no such vector");
    assert_eq!(v["expected"], "ok", "benchmark a vector that verifies");
    let secs: f64 = args[3].parse().unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let pem = v["vendor_pub"].as_str().unwrap().to_string();
    let now = UnixTime::from_secs(v["now"].as_u64().unwrap());
    let e = &v["expect"];
    let expect = || {
        Expectations::new(e["service"].as_str().unwrap())
            .require_features(
                e["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string()),
            )
            .leeway(e["leeway"].as_u64().unwrap())
    };
    let parse = |pem: &str| {
        tether_keys::keyfile::parse_public_key::<Vendor>(Path::new("<pem>"), pem)
            .unwrap()
            .0
    };

    let cold = rate(secs, || {
        let verifier = Verifier::new(parse(black_box(&pem)), expect());
        black_box(verifier.verify_at(black_box(&token), None, now).unwrap());
    });
    let verifier = Verifier::new(parse(&pem), expect());
    verifier.verify_at(&token, None, now).unwrap();
    let cached = rate(secs, || {
        black_box(verifier.verify_at(black_box(&token), None, now).unwrap());
    });
    println!("rust cold {cold:.0}");
    println!("rust cached {cached:.0}");
    println!(
        "session_pub {}",
        URL_SAFE_NO_PAD.encode(testkeys::session().public().as_bytes())
    );
}
