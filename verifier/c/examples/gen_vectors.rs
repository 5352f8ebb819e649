//! Writes the conformance set, `tests/conformance/vectors.json`: tokens made
//! with the fixed test keys, each with the vendor public key, a fixed
//! verification time, the expectations, and the reason code every binding
//! must give (`"ok"` for a token that verifies). The Rust verifier
//! (`tests/tests/conformance.rs`), the C library (`verifier/c/tests/
//! conformance.c` and its unit tests) and the Python package
//! (`verifier/python/tests/test_conformance.py`) run every vector.
//!
//!   cargo run -p tether-verifier-c --example gen_vectors > tests/conformance/vectors.json
//!
//! Ed25519 signatures are deterministic and every input is fixed, so the
//! output is the same on every run: the Rust runner checks it is current.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tether_keys::fido2::testsigner::{Knobs, TestAuthenticator};
use tether_keys::fido2::{FLAG_UP, Fido2Algorithm};
use tether_keys::merkle::{Leaf, LeafSet};
use tether_keys::{
    Certificate, DelegationRequest, LicenseId, LicenseTerms, SecretKey, Session, TokenClaims,
    Vendor, keyfile, testkeys,
};

/// The verification time of every vector but those that say otherwise.
const NOW: u64 = 1_800_000_000;

#[derive(Serialize)]
struct Expect {
    service: String,
    features: Vec<String>,
    /// Seconds.
    leeway: u64,
    instance: Option<String>,
}

#[derive(Serialize)]
struct Vector {
    name: String,
    description: String,
    vendor_pub: String,
    /// UNIX seconds.
    now: u64,
    expect: Expect,
    token: String,
    nonce: Option<String>,
    /// When not null, verify with `verify_fresh` (C: `tether_verify_fresh`,
    /// Python: `Verifier.verify_fresh`): the nonces the consumer accepts.
    accepted: Option<Vec<String>>,
    expected: String,
}

#[derive(Serialize)]
struct Set {
    comment: &'static str,
    generator: &'static str,
    vectors: Vec<Vector>,
}

/// What a token is made of; each vector changes one thing.
#[derive(Clone)]
struct Mint {
    cert_window: (u64, u64),
    claims_edit: fn(&mut TokenClaims),
    header: Option<String>,
    /// Sign with another key than the certified one (kid still names it).
    rogue_signer: bool,
    /// The kid names another key.
    rogue_kid: bool,
    /// A license that demands fresh nonces, and what the certificate
    /// commits to.
    fresh: Option<Fresh>,
    /// A FIDO2 dongle (issue 16; needs `fresh`): the license names the test
    /// credential of this algorithm, and the certificate is its assertion.
    fido2: Option<Fido2>,
}

/// The FIDO2 part of a token: which credential, what the assertion gets
/// wrong, and whether the certificate is a native one instead.
#[derive(Clone, Copy)]
struct Fido2 {
    algorithm: Fido2Algorithm,
    flags: u8,
    high_s: bool,
    native_cert: bool,
}

const FIDO2_ED25519: Fido2 = Fido2 {
    algorithm: Fido2Algorithm::Ed25519,
    flags: 0,
    high_s: false,
    native_cert: false,
};

/// A `(service, instance, nonce)` leaf.
type LeafText = (&'static str, &'static str, &'static str);

/// The freshness part of a token (issue 15): the license has a nonce
/// period of 300 s and 2 seats for backend; the certificate commits to
/// `leaves`; the token carries `ins` and `nonce`, and the inclusion proof
/// of `proof_of` (none: no `prf` claim).
#[derive(Clone, Copy)]
struct Fresh {
    leaves: &'static [LeafText],
    ins: &'static str,
    nonce: &'static str,
    proof_of: Option<LeafText>,
}

/// Two backend instances, each with the nonce it drew.
const TWO_BACKENDS: &[LeafText] = &[("backend", "b-1", "n-1"), ("backend", "b-2", "n-2")];

/// Instance b-1 with nonce n-1, proven in [`TWO_BACKENDS`].
const FRESH_B1: Fresh = Fresh {
    leaves: TWO_BACKENDS,
    ins: "b-1",
    nonce: "n-1",
    proof_of: Some(("backend", "b-1", "n-1")),
};

fn leaf_set(leaves: &[LeafText]) -> LeafSet {
    LeafSet::new(leaves.iter().map(|&(s, i, n)| Leaf::new(s, i, n).unwrap()))
}

impl Default for Mint {
    fn default() -> Self {
        Mint {
            cert_window: (NOW - 30, NOW + 300),
            claims_edit: |_| {},
            header: None,
            rogue_signer: false,
            rogue_kid: false,
            fresh: None,
            fido2: None,
        }
    }
}

fn at(secs: u64) -> tether_keys::UnixTime {
    tether_keys::UnixTime::from_secs(secs)
}

fn terms() -> LicenseTerms {
    LicenseTerms {
        id: LicenseId([3; 16]),
        customer: "Conformance".into(),
        dongle_serial: "TD-CONF".into(),
        dongle: testkeys::dongle().public().into(),
        issued_at: at(NOW - 86_400),
        not_before: at(NOW - 86_400),
        not_after: at(NOW + 86_400),
        max_token_ttl: 300,
        features: vec!["mux".into()],
        services: vec!["backend".into(), "muxer".into()],
        seats: Default::default(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
}

fn rogue() -> SecretKey<Session> {
    SecretKey::from_seed(&[0x42; 32])
}

impl Mint {
    fn token(&self) -> String {
        let mut terms = terms();
        let mut request = DelegationRequest::new(
            [9; 32],
            testkeys::session().public(),
            at(self.cert_window.0),
            at(self.cert_window.1),
        );
        if let Some(fresh) = &self.fresh {
            terms.nonce_period = 300;
            terms.seats = [("backend".to_string(), 2)].into();
            request.commitment = leaf_set(fresh.leaves).commitment().unwrap();
        }
        let mut serial = "TD-CONF".to_string();
        let cert = match &self.fido2 {
            Some(f) => {
                let seed = match f.algorithm {
                    Fido2Algorithm::Ed25519 => 0x21,
                    Fido2Algorithm::Es256 => 0x22,
                };
                let mut auth = TestAuthenticator::new(f.algorithm, [seed; 32]);
                let cred = auth.credential();
                serial = cred.serial();
                terms.dongle_serial = serial.clone();
                terms.dongle = cred.into();
                if f.native_cert {
                    Certificate::sign(request, &serial, 1, &testkeys::dongle()).unwrap()
                } else {
                    let knobs = Knobs {
                        flags: f.flags,
                        high_s: f.high_s,
                        ..Knobs::default()
                    };
                    auth.certify(request, &knobs).unwrap()
                }
            }
            None => Certificate::sign(request, "TD-CONF", 1, &testkeys::dongle()).unwrap(),
        };
        let license = terms.sign(&testkeys::vendor()).unwrap();
        let session = testkeys::session();
        let mut claims = TokenClaims {
            iss: format!("tether:{serial}"),
            sub: "backend".into(),
            aud: "backend".into(),
            iat: at(NOW),
            nbf: at(NOW),
            exp: at(NOW + 60),
            jti: "conformance-jti".into(),
            lic: URL_SAFE_NO_PAD.encode(license.encoded()),
            dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
            nonce: Some("n0nce".into()),
            ins: None,
            prf: None,
        };
        if let Some(fresh) = &self.fresh {
            claims.ins = Some(fresh.ins.into());
            claims.nonce = Some(fresh.nonce.into());
            claims.prf = fresh.proof_of.map(|(s, i, n)| {
                let set = leaf_set(fresh.leaves);
                let leaf = Leaf::new(s, i, n).unwrap();
                set.prove(set.index_of(&leaf).unwrap()).unwrap().to_claim()
            });
        }
        (self.claims_edit)(&mut claims);
        let kid = if self.rogue_kid {
            rogue().public().fingerprint().short()
        } else {
            session.public().fingerprint().short()
        };
        let header = self
            .header
            .clone()
            .unwrap_or_else(|| format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#));
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap())
        );
        let signer = if self.rogue_signer { rogue() } else { session };
        let sig = signer.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn main() {
    let vendor_pub = keyfile::public_key_pem(&testkeys::vendor().public(), &[]);
    let other_vendor =
        keyfile::public_key_pem(&SecretKey::<Vendor>::from_seed(&[0x77; 32]).public(), &[]);
    let kid = testkeys::session().public().fingerprint().short();
    let expect = |service: &str| Expect {
        service: service.into(),
        features: vec![],
        leeway: 5,
        instance: None,
    };
    let base = Mint::default();
    let mut vectors = Vec::new();
    let mut add = |name: &str, description: &str, token: String, f: &dyn Fn(&mut Vector)| {
        let mut v = Vector {
            name: name.into(),
            description: description.into(),
            vendor_pub: vendor_pub.clone(),
            now: NOW,
            expect: expect("backend"),
            token,
            nonce: None,
            accepted: None,
            expected: "ok".into(),
        };
        f(&mut v);
        vectors.push(v);
    };

    // Tokens that verify.
    add(
        "valid_basic",
        "a token for backend, verified at its issue time",
        base.token(),
        &|_| {},
    );
    add(
        "valid_nonce",
        "the token echoes the nonce asked for",
        base.token(),
        &|v| {
            v.nonce = Some("n0nce".into());
        },
    );
    add(
        "valid_feature",
        "muxer needs feature mux, which the license grants",
        Mint {
            claims_edit: |c| {
                c.aud = "muxer".into();
                c.sub = "muxer".into();
            },
            ..base.clone()
        }
        .token(),
        &|v| {
            v.expect = Expect {
                features: vec!["mux".into()],
                ..expect("muxer")
            };
        },
    );
    add(
        "valid_instance",
        "the token names our instance",
        Mint {
            claims_edit: |c| c.ins = Some("svc-1".into()),
            ..base.clone()
        }
        .token(),
        &|v| v.expect.instance = Some("svc-1".into()),
    );
    add(
        "valid_within_leeway",
        "3 s past exp, with 5 s of leeway",
        base.token(),
        &|v| {
            v.now = NOW + 63;
        },
    );

    // Tokens that are refused, one reason each.
    add(
        "fail_bad_signature",
        "signed by a key other than the certified session key",
        Mint {
            rogue_signer: true,
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "bad_signature".into(),
    );
    add(
        "fail_tampered_claims",
        "claims changed after signing",
        {
            let t = base.token();
            let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
            let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
            parts[1] = URL_SAFE_NO_PAD.encode(claims.replace("conformance-jti", "conformance-jtx"));
            parts.join(".")
        },
        &|v| v.expected = "bad_signature".into(),
    );
    add(
        "fail_expired",
        "verified 100 s after exp",
        base.token(),
        &|v| {
            v.now = NOW + 160;
            v.expected = "expired".into();
        },
    );
    add(
        "fail_not_yet_valid",
        "verified 20 s before nbf",
        base.token(),
        &|v| {
            v.now = NOW - 20;
            v.expected = "not_yet_valid".into();
        },
    );
    add(
        "fail_wrong_audience",
        "a backend token shown to muxer",
        base.token(),
        &|v| {
            v.expect = expect("muxer");
            v.expected = "wrong_audience".into();
        },
    );
    add(
        "fail_wrong_issuer",
        "iss names another dongle",
        Mint {
            claims_edit: |c| c.iss = "tether:TD-OTHER".into(),
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "wrong_issuer".into(),
    );
    add(
        "fail_service_not_licensed",
        "a token for a service the license does not list",
        Mint {
            claims_edit: |c| {
                c.aud = "reports".into();
                c.sub = "reports".into();
            },
            ..base.clone()
        }
        .token(),
        &|v| {
            v.expect = expect("reports");
            v.expected = "service_not_licensed".into();
        },
    );
    add(
        "fail_missing_feature",
        "backend requires a feature the license lacks",
        base.token(),
        &|v| {
            v.expect.features = vec!["analytics".into()];
            v.expected = "missing_feature".into();
        },
    );
    add(
        "fail_wrong_instance",
        "the token names another instance",
        Mint {
            claims_edit: |c| c.ins = Some("svc-2".into()),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.expect.instance = Some("svc-1".into());
            v.expected = "wrong_instance".into();
        },
    );
    add(
        "fail_nonce_mismatch",
        "the token echoes another nonce",
        base.token(),
        &|v| {
            v.nonce = Some("another".into());
            v.expected = "nonce_mismatch".into();
        },
    );
    add(
        "fail_untrusted_chain_vendor",
        "the license is signed by another vendor",
        base.token(),
        &|v| {
            v.vendor_pub = other_vendor.clone();
            v.expected = "untrusted_chain".into();
        },
    );
    add(
        "fail_untrusted_chain_kid",
        "kid names a key no certificate vouches for",
        Mint {
            rogue_kid: true,
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "untrusted_chain".into(),
    );
    add(
        "fail_certificate_too_long",
        "a certificate window of an hour (15 min allowed)",
        Mint {
            cert_window: (NOW - 30, NOW + 3600),
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "certificate_too_long".into(),
    );
    add(
        "fail_lifetime_too_long",
        "exp 10 min after iat; the license allows 5",
        Mint {
            claims_edit: |c| c.exp = c.iat + std::time::Duration::from_secs(600),
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "lifetime_too_long".into(),
    );
    add(
        "fail_unsupported_algorithm",
        "alg HS256",
        Mint {
            header: Some(format!(r#"{{"typ":"JWT","alg":"HS256","kid":"{kid}"}}"#)),
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "unsupported_algorithm".into(),
    );
    add(
        "fail_bad_header",
        "crit names an extension",
        Mint {
            header: Some(format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":["exp"]}}"#)),
            ..base.clone()
        }
        .token(),
        &|v| v.expected = "bad_header".into(),
    );
    add(
        "fail_malformed_empty",
        "the empty string",
        String::new(),
        &|v| {
            v.expected = "malformed".into();
        },
    );
    add(
        "fail_malformed_garbage",
        "not a JWS",
        "not a token".into(),
        &|v| {
            v.expected = "malformed".into();
        },
    );
    add(
        "fail_malformed_two_parts",
        "header and claims, no signature",
        {
            let t = base.token();
            t[..t.rfind('.').unwrap()].to_string()
        },
        &|v| v.expected = "malformed".into(),
    );
    add(
        "fail_malformed_base64",
        "a signature that is not base64url",
        {
            let t = base.token();
            format!("{}.!!!!", &t[..t.rfind('.').unwrap()])
        },
        &|v| v.expected = "malformed".into(),
    );
    add(
        "fail_malformed_too_large",
        "9000 bytes (8 KiB allowed)",
        "a".repeat(9000),
        &|v| {
            v.expected = "malformed".into();
        },
    );

    // Freshness (issue 15): a license with a nonce period of 300 s and 2
    // seats for backend; the consumer verifies with the nonces it drew.
    let fresh = Mint {
        fresh: Some(FRESH_B1),
        ..base.clone()
    };
    let accept = |nonces: &[&str]| Some(nonces.iter().map(|n| n.to_string()).collect());
    add(
        "ok_fresh_included",
        "nonce period 300 s, 2 backend seats: the token's leaf (backend, b-1, n-1) is proven in the certificate's 2-leaf commitment, and n-1 is accepted",
        fresh.token(),
        &|v| v.accepted = accept(&["n-2", "n-1"]),
    );
    add(
        "ok_fresh_any_nonce",
        "the same token verified without a nonce rule (tether_verify, nonce NULL): the inclusion is checked all the same",
        fresh.token(),
        &|_| {},
    );
    add(
        "fail_fresh_nonce_not_accepted",
        "the token's nonce n-1 is not among those accepted",
        fresh.token(),
        &|v| {
            v.accepted = accept(&["n-2"]);
            v.expected = "nonce_mismatch".into();
        },
    );
    add(
        "fail_fresh_none_accepted",
        "an empty list of accepted nonces accepts no token",
        fresh.token(),
        &|v| {
            v.accepted = accept(&[]);
            v.expected = "nonce_mismatch".into();
        },
    );
    add(
        "fail_not_included",
        "the token's nonce n-9 is not in the tree: the proof of (backend, b-1, n-1) does not lead from (backend, b-1, n-9) to the root",
        Mint {
            fresh: Some(Fresh {
                nonce: "n-9",
                ..FRESH_B1
            }),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.accepted = accept(&["n-9"]);
            v.expected = "not_included".into();
        },
    );
    add(
        "fail_not_included_no_proof",
        "a license that demands fresh nonces, and a token without a prf claim",
        Mint {
            fresh: Some(Fresh {
                proof_of: None,
                ..FRESH_B1
            }),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "not_included".into();
        },
    );
    add(
        "fail_not_included_other_instance",
        "the token names instance b-3 with the proof of b-1's leaf",
        Mint {
            fresh: Some(Fresh {
                ins: "b-3",
                ..FRESH_B1
            }),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "not_included".into();
        },
    );
    add(
        "fail_over_seats",
        "the certificate commits to 3 backend instances; the license has 2 seats",
        Mint {
            fresh: Some(Fresh {
                leaves: &[
                    ("backend", "b-1", "n-1"),
                    ("backend", "b-2", "n-2"),
                    ("backend", "b-3", "n-3"),
                ],
                ..FRESH_B1
            }),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "over_seats".into();
        },
    );
    add(
        "fail_over_seats_unlicensed_service",
        "the certificate commits to an instance of reports, which the license does not list (0 seats)",
        Mint {
            fresh: Some(Fresh {
                leaves: &[
                    ("backend", "b-1", "n-1"),
                    ("backend", "b-2", "n-2"),
                    ("reports", "r-1", "n-4"),
                ],
                ..FRESH_B1
            }),
            ..base.clone()
        }
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "over_seats".into();
        },
    );

    // FIDO2 dongles (issue 16): the license names a FIDO2 credential (and
    // so demands fresh nonces); the certificate is the key's assertion.
    let fido2 = |f: Fido2| Mint {
        fresh: Some(FRESH_B1),
        fido2: Some(f),
        ..base.clone()
    };
    add(
        "valid_fido2_ed25519",
        "a FIDO2 license (Ed25519 credential) and a certificate that is the key's silent assertion",
        fido2(FIDO2_ED25519).token(),
        &|v| v.accepted = accept(&["n-1"]),
    );
    add(
        "valid_fido2_es256",
        "a FIDO2 license (ES256 credential) and a certificate that is the key's silent assertion",
        fido2(Fido2 {
            algorithm: Fido2Algorithm::Es256,
            ..FIDO2_ED25519
        })
        .token(),
        &|v| v.accepted = accept(&["n-1"]),
    );
    add(
        "fail_fido2_user_present",
        "the FIDO2 assertion has the UP flag set: Tether asks a silent one",
        fido2(Fido2 {
            flags: FLAG_UP,
            ..FIDO2_ED25519
        })
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "untrusted_chain".into();
        },
    );
    add(
        "fail_fido2_high_s",
        "the ES256 assertion's signature has a high S (the malleable twin)",
        fido2(Fido2 {
            algorithm: Fido2Algorithm::Es256,
            high_s: true,
            ..FIDO2_ED25519
        })
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "untrusted_chain".into();
        },
    );
    add(
        "fail_fido2_native_certificate",
        "a native certificate under a license naming a FIDO2 credential (same serial)",
        fido2(Fido2 {
            native_cert: true,
            ..FIDO2_ED25519
        })
        .token(),
        &|v| {
            v.accepted = accept(&["n-1"]);
            v.expected = "untrusted_chain".into();
        },
    );

    let set = Set {
        comment: "Tether conformance vectors (issue 20): every binding must accept the ok ones and refuse the others with the expected reason code. Times are UNIX seconds; leeway is seconds.",
        generator: "cargo run -p tether-verifier-c --example gen_vectors > tests/conformance/vectors.json",
        vectors,
    };
    println!("{}", serde_json::to_string_pretty(&set).unwrap());
}
