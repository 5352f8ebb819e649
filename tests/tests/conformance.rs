//! The conformance set (`tests/conformance/vectors.json`, issue 20) run
//! through the Rust verifier: every vector is accepted or refused for the
//! reason it names. The C library and the Python package run the same set
//! (`verifier/bindings-test.sh`), so the three agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;
use tether_keys::Vendor;
use tether_verifier::{Error, Expectations, Verifier};

/// The reason code of a refusal, as `docs/bindings.md` names them.
fn code(e: &Error) -> &'static str {
    match e {
        Error::Malformed(_) => "malformed",
        Error::UnsupportedAlgorithm(_) => "unsupported_algorithm",
        Error::BadHeader(_) => "bad_header",
        Error::UntrustedChain(_) => "untrusted_chain",
        Error::BadSignature => "bad_signature",
        Error::Expired(_) => "expired",
        Error::NotYetValid(_) => "not_yet_valid",
        Error::WrongAudience { .. } => "wrong_audience",
        Error::WrongIssuer(_) => "wrong_issuer",
        Error::ServiceNotLicensed(_) => "service_not_licensed",
        Error::MissingFeature(_) => "missing_feature",
        Error::WrongInstance => "wrong_instance",
        Error::NonceMismatch => "nonce_mismatch",
        Error::CertificateTooLong(_) => "certificate_too_long",
        Error::LifetimeTooLong => "lifetime_too_long",
        Error::NotIncluded(_) => "not_included",
        Error::OverSeats { .. } => "over_seats",
        Error::StaleNonce => "stale_nonce",
        _ => "other_refusal",
    }
}

#[test]
fn every_vector_gets_its_expected_result() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/vectors.json");
    let set: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vectors = set["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 20, "the set has {} vectors", vectors.len());
    let mut seen_refusals = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let (vendor, _) = tether_keys::keyfile::parse_public_key::<Vendor>(
            Path::new(name),
            v["vendor_pub"].as_str().unwrap(),
        )
        .unwrap();
        let e = &v["expect"];
        let mut expect = Expectations::new(e["service"].as_str().unwrap())
            .require_features(
                e["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string()),
            )
            .leeway(e["leeway"].as_u64().unwrap());
        if let Some(id) = e["instance"].as_str() {
            expect = expect.instance(id);
        }
        if e["refuse_grace"].as_bool().unwrap() {
            expect = expect.refuse_grace();
        }
        let verifier = Verifier::new(vendor, expect);
        let token = v["token"].as_str().unwrap();
        let now = tether_keys::UnixTime::from_secs(v["now"].as_u64().unwrap());
        let result = match v["accepted"].as_array() {
            Some(list) => {
                let accepted: Vec<&str> = list.iter().map(|n| n.as_str().unwrap()).collect();
                verifier.verify_fresh(token, &accepted, now)
            }
            None => verifier.verify_at(token, v["nonce"].as_str(), now),
        };
        let got = match result {
            Ok(_) => "ok",
            Err(err) => code(&err),
        };
        let want = v["expected"].as_str().unwrap();
        assert_eq!(
            name.starts_with("fail_"),
            want != "ok",
            "{name}: name and expectation"
        );
        if got != want {
            failures.push(format!("{name}: expected {want}, got {got}"));
        }
        seen_refusals.insert(want.to_string());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every refusal reason of the verifier has a vector.
    for reason in [
        "malformed",
        "unsupported_algorithm",
        "bad_header",
        "untrusted_chain",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "service_not_licensed",
        "missing_feature",
        "wrong_instance",
        "nonce_mismatch",
        "certificate_too_long",
        "lifetime_too_long",
        "not_included",
        "over_seats",
        // stale_nonce has none: only the refresher gives it, never a
        // verification of one token.
    ] {
        assert!(seen_refusals.contains(reason), "no vector for {reason}");
    }
}
