//! Forged and malformed tokens. `verifier/tests/verify.rs` already holds the
//! classic forgeries (alg none, HS256 with the vendor key, uncertified keys,
//! tampering, foreign vendor or dongle, certificate age, times, audience);
//! this adds what it lacks, each with the exact reason expected, and then
//! attacks the real reference service through a rogue authority: a customer
//! with root can point a service at any server, so everything the service
//! accepts must verify down to the vendor key. The `tether verify` CLI gets
//! the same forgeries.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use tether_keys::{
    Certificate, DelegationRequest, Dongle, LicenseId, LicenseTerms, SecretKey, Session,
    TokenClaims, Vendor, keyfile, testkeys,
};
use tether_tests::{Site, http, wait_for_token, works};
use tether_verifier::{Error, Expectations, MAX_TOKEN_LEN, Verifier};

use crate::rig::{Rogue, T, healthy};
use crate::summary;

const NOW: u64 = 1_800_000_000;
const M: &str = module_path!();

/// The whole chain, with every part replaceable.
pub(crate) struct Mint {
    vendor: SecretKey<Vendor>,
    dongle: SecretKey<Dongle>,
    terms: LicenseTerms,
    serial: String,
    pub(crate) cert_window: (u64, u64),
    session: SecretKey<Session>,
}

impl Mint {
    fn new() -> Mint {
        Mint::at(NOW, testkeys::vendor(), testkeys::dongle(), "TD-1")
    }

    pub(crate) fn at(
        now: u64,
        vendor: SecretKey<Vendor>,
        dongle: SecretKey<Dongle>,
        serial: &str,
    ) -> Mint {
        Mint {
            terms: LicenseTerms {
                id: LicenseId([4; 16]),
                customer: "ACME".into(),
                dongle_serial: serial.into(),
                dongle: dongle.public().into(),
                issued_at: tether_keys::UnixTime::from_secs(now - 86_400),
                not_before: tether_keys::UnixTime::from_secs(now - 86_400),
                not_after: tether_keys::UnixTime::from_secs(now + 86_400),
                max_token_ttl: 300,
                features: vec!["mux".into()],
                services: vec!["backend".into(), "muxer".into()],
                seats: Default::default(),
                sequence: 1,
                grace: 0,
                nonce_period: 0,
            },
            vendor,
            dongle,
            serial: serial.into(),
            cert_window: (now - 30, now + 300),
            session: SecretKey::generate(),
        }
    }

    fn license_bytes(&self) -> Vec<u8> {
        self.terms
            .clone()
            .sign(&self.vendor)
            .unwrap()
            .encoded()
            .to_vec()
    }

    fn cert(&self) -> Certificate {
        Certificate::sign(
            DelegationRequest::new(
                [9; 32],
                self.session.public(),
                tether_keys::UnixTime::from_secs(self.cert_window.0),
                tether_keys::UnixTime::from_secs(self.cert_window.1),
            ),
            &self.serial,
            1,
            &self.dongle,
        )
        .unwrap()
    }

    pub(crate) fn claims(&self, aud: &str, now: u64) -> TokenClaims {
        TokenClaims {
            iss: format!("tether:{}", self.serial),
            sub: aud.into(),
            aud: aud.into(),
            iat: tether_keys::UnixTime::from_secs(now),
            nbf: tether_keys::UnixTime::from_secs(now),
            exp: tether_keys::UnixTime::from_secs(now + 60),
            jti: "j".into(),
            lic: URL_SAFE_NO_PAD.encode(self.license_bytes()),
            dcert: URL_SAFE_NO_PAD.encode(self.cert().encoded()),
            nonce: None,
            ins: None,
            prf: None,
        }
    }

    fn kid(&self) -> String {
        self.session.public().fingerprint().short()
    }

    fn header(&self) -> String {
        format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{}"}}"#, self.kid())
    }

    /// Header and claims as given, signed by the session key.
    fn raw(&self, header: &str, claims: &str) -> String {
        sign_parts(
            &URL_SAFE_NO_PAD.encode(header),
            &URL_SAFE_NO_PAD.encode(claims),
            |m| self.session.sign(m),
        )
    }

    pub(crate) fn token(&self, c: &TokenClaims) -> String {
        self.raw(&self.header(), &serde_json::to_string(c).unwrap())
    }
}

fn sign_parts(h: &str, c: &str, sign: impl Fn(&[u8]) -> [u8; 64]) -> String {
    let signed = format!("{h}.{c}");
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn verifier(service: &str) -> Verifier {
    Verifier::new(testkeys::vendor().public(), Expectations::new(service))
}

/// Tries one forged token on a fresh backend verifier at `now`; records it
/// and checks the exact reason.
fn expect(what: &str, token: &str, now: u64, want: &Error) {
    expect_with(&verifier("backend"), what, token, None, now, want);
}

fn expect_with(v: &Verifier, what: &str, token: &str, nonce: Option<&str>, now: u64, want: &Error) {
    let got = v.verify_at(token, nonce, tether_keys::UnixTime::from_secs(now));
    let detail = match &got {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.to_string(),
    };
    summary::attack(M, what, got.is_err(), &detail);
    assert_eq!(got.as_ref().err(), Some(want), "{what}");
}

/// Replaces the last character of a base64url text with one that decodes to
/// the same bytes under a lenient decoder (only the unused low bits differ).
fn noncanonical_tail(b64: &str) -> String {
    let spare_bits = (b64.len() * 6) % 8;
    assert!(spare_bits > 0, "no unused bits in {b64}");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *b64.as_bytes().last().unwrap();
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    let alt = alphabet[idx ^ 1];
    format!("{}{}", &b64[..b64.len() - 1], alt as char)
}

#[test]
fn duplicate_keys_and_wrong_json_shapes_are_malformed() {
    let _g = summary::test(M, "duplicate_keys_and_wrong_json_shapes_are_malformed");
    let m = Mint::new();
    let kid = m.kid();
    let claims = serde_json::to_string(&m.claims("backend", NOW)).unwrap();
    let header_err = Error::Malformed("header is not a JSON object with alg");
    let claims_err = Error::Malformed("claims missing, repeated or of the wrong type");
    for (what, header) in [
        (
            "header with alg twice (EdDSA, none)",
            format!(r#"{{"alg":"EdDSA","alg":"none","kid":"{kid}"}}"#),
        ),
        (
            "header with alg twice (none, EdDSA)",
            format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{kid}"}}"#),
        ),
        (
            "header with kid twice",
            format!(r#"{{"alg":"EdDSA","kid":"AAAAAAAAAAAAAAAA","kid":"{kid}"}}"#),
        ),
        ("header without alg", format!(r#"{{"kid":"{kid}"}}"#)),
        (
            "header alg not a string",
            format!(r#"{{"alg":1,"kid":"{kid}"}}"#),
        ),
        ("header is an array", r#"["EdDSA"]"#.to_string()),
        (
            "header nested 2000 deep",
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
        ),
    ] {
        let t = m.raw(&header, &claims);
        assert!(
            t.len() <= MAX_TOKEN_LEN,
            "{what}: keep it under the size limit"
        );
        expect(what, &t, NOW, &header_err);
    }
    let c = m.claims("backend", NOW);
    let json = serde_json::to_string(&c).unwrap();
    for (what, text) in [
        (
            "claims with aud twice (backend, muxer)",
            json.replacen('{', r#"{"aud":"muxer","#, 1),
        ),
        (
            "claims with nonce twice",
            json.replacen('{', r#"{"nonce":"a","nonce":"b","#, 1),
        ),
        (
            "claims with lic twice",
            json.replacen('{', &format!(r#"{{"lic":"{}","#, c.lic), 1),
        ),
        (
            "aud as an array of services",
            json.replace(r#""aud":"backend""#, r#""aud":["backend","muxer"]"#),
        ),
        (
            "exp as a string",
            json.replace(
                &format!(r#""exp":{}"#, c.exp.secs()),
                &format!(r#""exp":"{}""#, c.exp.secs()),
            ),
        ),
        (
            "exp as a float",
            json.replace(
                &format!(r#""exp":{}"#, c.exp.secs()),
                &format!(r#""exp":{}.5"#, c.exp.secs()),
            ),
        ),
        (
            "iat negative",
            json.replace(&format!(r#""iat":{}"#, c.iat.secs()), r#""iat":-1"#),
        ),
        ("claims are null", "null".to_string()),
        (
            "claims as an array of their values",
            serde_json::to_string(&[c.iss.as_str(), c.sub.as_str(), c.aud.as_str()])
                .unwrap()
                .replace(
                    ']',
                    &format!(
                        r#",{},{},{},"j","{}","{}"]"#,
                        c.iat.secs(),
                        c.nbf.secs(),
                        c.exp.secs(),
                        c.lic,
                        c.dcert
                    ),
                ),
        ),
    ] {
        assert_ne!(text, json, "{what}: the edit did not apply");
        expect(what, &m.raw(&m.header(), &text), NOW, &claims_err);
    }
}

#[test]
fn algorithm_confusion_and_key_injection_are_refused() {
    let _g = summary::test(M, "algorithm_confusion_and_key_injection_are_refused");
    let m = Mint::new();
    let kid = m.kid();
    let claims = serde_json::to_string(&m.claims("backend", NOW)).unwrap();
    // `Ed25519` (RFC 9864's fully-specified name for what Tether signs) is
    // accepted since issue 13 item 9, pinned to the same Ed25519 key as
    // `EdDSA`; its case variants and every other algorithm stay refused.
    let fully_specified = m.raw(&format!(r#"{{"alg":"Ed25519","kid":"{kid}"}}"#), &claims);
    verifier("backend")
        .verify_at(
            &fully_specified,
            None,
            tether_keys::UnixTime::from_secs(NOW),
        )
        .unwrap();
    for alg in [
        "eddsa", "EDDSA", "ed25519", "ED25519", "Ed448", "ES256", "HS512", "PS256", "",
    ] {
        let t = m.raw(&format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#), &claims);
        expect(
            &format!("alg {alg:?}"),
            &t,
            NOW,
            &Error::UnsupportedAlgorithm(alg.into()),
        );
    }
    // The attacker's own key, embedded in the header (jwk, jku, x5c) and named by kid.
    let rogue = SecretKey::<Session>::generate();
    let rogue_kid = rogue.public().fingerprint().short();
    let jwk = URL_SAFE_NO_PAD.encode(rogue.public().as_bytes());
    let injected = format!(
        r#"{{"alg":"EdDSA","kid":"{rogue_kid}","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{jwk}"}},"jku":"http://127.0.0.1:1/k","x5c":["AAAA"]}}"#
    );
    let t = sign_parts(
        &URL_SAFE_NO_PAD.encode(&injected),
        &URL_SAFE_NO_PAD.encode(&claims),
        |x| rogue.sign(x),
    );
    expect(
        "attacker key embedded as jwk, named by kid",
        &t,
        NOW,
        &Error::UntrustedChain("kid does not name the certified session key"),
    );
    // Same, but kid names the certified key: the signature gives it away.
    let injected = injected.replace(&rogue_kid, &kid);
    let t = sign_parts(
        &URL_SAFE_NO_PAD.encode(&injected),
        &URL_SAFE_NO_PAD.encode(&claims),
        |x| rogue.sign(x),
    );
    expect(
        "attacker key embedded as jwk, kid of the certified key",
        &t,
        NOW,
        &Error::BadSignature,
    );
    // No kid at all.
    let t = m.raw(r#"{"alg":"EdDSA"}"#, &claims);
    expect(
        "no kid",
        &t,
        NOW,
        &Error::UntrustedChain("kid does not name the certified session key"),
    );
    // The dongle key signs the JWT itself, skipping the session key.
    let dongle_kid = testkeys::dongle().public().fingerprint().short();
    let t = sign_parts(
        &URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":"{dongle_kid}"}}"#)),
        &URL_SAFE_NO_PAD.encode(&claims),
        |x| testkeys::dongle().sign(x),
    );
    expect(
        "JWT signed by the dongle key itself",
        &t,
        NOW,
        &Error::UntrustedChain("kid does not name the certified session key"),
    );
}

#[test]
fn non_canonical_encodings_and_sizes_are_refused() {
    let _g = summary::test(M, "non_canonical_encodings_and_sizes_are_refused");
    let m = Mint::new();
    let c = m.claims("backend", NOW);
    let good = m.token(&c);
    verifier("backend")
        .verify_at(&good, None, tether_keys::UnixTime::from_secs(NOW))
        .unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);

    // Signature: the same 64 bytes under a lenient decoder, another text.
    expect(
        "signature with non-zero trailing bits",
        &format!("{h}.{p}.{}", noncanonical_tail(s)),
        NOW,
        &Error::Malformed("signature is not base64url"),
    );
    // Ed25519 malleability: S + L verifies under a lax verifier.
    let mut sig: [u8; 64] = URL_SAFE_NO_PAD.decode(s).unwrap().try_into().unwrap();
    add_group_order(&mut sig[32..]);
    expect(
        "signature with S + L (malleated)",
        &format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig)),
        NOW,
        &Error::BadSignature,
    );
    // Header and claims re-signed by the real session key over non-canonical
    // text: refused by the decoder, whatever the signature says.
    let claims_json = serde_json::to_string(&c).unwrap();
    let mut header_b64 = URL_SAFE_NO_PAD.encode(m.header());
    // Pad the header JSON until its encoding has spare bits.
    let mut header_json = m.header();
    while (header_b64.len() * 6).is_multiple_of(8) {
        header_json.push(' ');
        header_b64 = URL_SAFE_NO_PAD.encode(&header_json);
    }
    let claims_b64 = URL_SAFE_NO_PAD.encode(&claims_json);
    let cases = [
        (
            "header with non-zero trailing bits, re-signed",
            noncanonical_tail(&header_b64),
            claims_b64.clone(),
            Error::Malformed("header is not base64url"),
        ),
        (
            "header with = padding, re-signed",
            format!("{header_b64}=="),
            claims_b64.clone(),
            Error::Malformed("header is not base64url"),
        ),
        (
            "claims in the standard (+/) alphabet, re-signed",
            header_b64.clone(),
            standard_alphabet(&claims_json),
            Error::Malformed("claims are not base64url"),
        ),
        (
            "claims with a line break, re-signed",
            header_b64.clone(),
            format!("{}\n{}", &claims_b64[..40], &claims_b64[40..]),
            Error::Malformed("claims are not base64url"),
        ),
    ];
    for (what, hh, cc, want) in cases {
        let t = sign_parts(&hh, &cc, |x| m.session.sign(x));
        expect(what, &t, NOW, &want);
    }
    // The license and certificate inside: canonical bytes only (trailing byte).
    let mut lic = m.license_bytes();
    lic.push(0);
    let mut c2 = c.clone();
    c2.lic = URL_SAFE_NO_PAD.encode(&lic);
    expect(
        "license with a trailing byte",
        &m.token(&c2),
        NOW,
        &Error::Malformed("lic is not a license"),
    );
    let mut cert = m.cert().encoded().to_vec();
    cert.push(0);
    let mut c3 = c.clone();
    c3.dcert = URL_SAFE_NO_PAD.encode(&cert);
    expect(
        "certificate with a trailing byte",
        &m.token(&c3),
        NOW,
        &Error::Malformed("dcert is not a delegation certificate"),
    );
    // Sizes: one byte over the limit, and a megabyte.
    let over = format!(
        "{h}.{}.{s}",
        "A".repeat(MAX_TOKEN_LEN - h.len() - s.len() - 1)
    );
    assert_eq!(over.len(), MAX_TOKEN_LEN + 1);
    expect(
        "token one byte over the limit",
        &over,
        NOW,
        &Error::Malformed("token too large"),
    );
    let started = Instant::now();
    expect(
        "token of 1 MiB",
        &format!("{good}{}", "A".repeat(1 << 20)),
        NOW,
        &Error::Malformed("token too large"),
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    for (what, t) in [
        ("five segments (JWE shape)", format!("{good}.{s}.{s}")),
        ("empty signature", format!("{h}.{p}.")),
    ] {
        assert!(
            verifier("backend")
                .verify_at(&t, None, tether_keys::UnixTime::from_secs(NOW))
                .is_err()
        );
        summary::attack(M, what, true, "malformed");
    }
}

/// Adds the Ed25519 group order L to a 32-byte little-endian scalar.
fn add_group_order(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let v = u16::from(*b) + u16::from(l) + carry;
        *b = v as u8;
        carry = v >> 8;
    }
}

/// base64 of `text` in the standard alphabet, made to contain `+` or `/`.
fn standard_alphabet(text: &str) -> String {
    let mut t = text.to_string();
    loop {
        let std = STANDARD_NO_PAD.encode(&t);
        if std.contains(['+', '/']) {
            return std;
        }
        // Characters that encode to high sextets, until one shows.
        t.push('~');
    }
}

#[test]
fn times_and_chain_edges_are_refused() {
    let _g = summary::test(M, "times_and_chain_edges_are_refused");
    let m = Mint::new();
    // An authority whose clock runs ahead of the consumer's.
    let mut c = m.claims("backend", NOW);
    (c.iat, c.nbf, c.exp) = (
        tether_keys::UnixTime::from_secs(NOW + 100),
        tether_keys::UnixTime::from_secs(NOW + 100),
        tether_keys::UnixTime::from_secs(NOW + 160),
    );
    expect(
        "token issued 100 s in the consumer's future",
        &m.token(&c),
        NOW,
        &Error::NotYetValid("token"),
    );
    // A consumer whose clock is stepped forward an hour.
    expect(
        "consumer clock stepped forward 1 h",
        &m.token(&m.claims("backend", NOW)),
        NOW + 3600,
        &Error::Expired("delegation certificate"),
    );
    // A token that outlives its certificate, or starts before it.
    let mut short = Mint::new();
    short.cert_window = (NOW - 30, NOW + 30);
    expect(
        "token outliving its certificate",
        &short.token(&short.claims("backend", NOW)),
        NOW,
        &Error::LifetimeTooLong,
    );
    let mut c = m.claims("backend", NOW);
    (c.iat, c.nbf) = (
        tether_keys::UnixTime::from_secs(NOW - 120),
        tether_keys::UnixTime::from_secs(NOW - 120),
    );
    c.exp = tether_keys::UnixTime::from_secs(NOW + 10);
    expect(
        "token issued before its certificate",
        &m.token(&c),
        NOW,
        &Error::LifetimeTooLong,
    );
    let mut c = m.claims("backend", NOW);
    c.exp = tether_keys::UnixTime::from_secs(u64::MAX);
    expect(
        "exp at u64::MAX",
        &m.token(&c),
        NOW,
        &Error::LifetimeTooLong,
    );
    let mut c = m.claims("backend", NOW);
    c.iat = c.exp + Duration::from_secs(1);
    expect("iat after exp", &m.token(&c), NOW, &Error::LifetimeTooLong);
    // A license not valid yet.
    let mut early = Mint::new();
    early.terms.not_before = tether_keys::UnixTime::from_secs(NOW + 3600);
    early.terms.not_after = tether_keys::UnixTime::from_secs(NOW + 7200);
    expect(
        "license not valid yet",
        &early.token(&early.claims("backend", NOW)),
        NOW,
        &Error::NotYetValid("license"),
    );
    // A presence signature offered as the certificate's signature.
    let cert = m.cert();
    let mut bytes = cert.encoded().to_vec();
    let n = bytes.len();
    let presence = testkeys::dongle().sign(&tether_keys::delegation::presence_message(
        &cert.request.nonce,
    ));
    bytes[n - 64..].copy_from_slice(&presence);
    let mut c = m.claims("backend", NOW);
    c.dcert = URL_SAFE_NO_PAD.encode(&bytes);
    expect(
        "presence signature as the certificate's",
        &m.token(&c),
        NOW,
        &Error::UntrustedChain("certificate is not signed by the licensed dongle"),
    );
    // The nonce: asked for, not echoed.
    expect_with(
        &verifier("backend"),
        "nonce asked, token carries none",
        &m.token(&m.claims("backend", NOW)),
        Some("mine"),
        NOW,
        &Error::NonceMismatch,
    );
}

#[test]
fn the_caches_cannot_be_confused() {
    let _g = summary::test(M, "the_caches_cannot_be_confused");
    let m = Mint::new();
    let v = verifier("backend");
    let c = m.claims("backend", NOW);
    let good = m.token(&c);
    v.verify_at(&good, None, tether_keys::UnixTime::from_secs(NOW))
        .unwrap();
    // The cached signature with other claims.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c2 = c.clone();
    c2.exp += Duration::from_secs(200);
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c2).unwrap()),
        parts[2]
    );
    expect_with(
        &v,
        "cached signature with other claims",
        &swapped,
        None,
        NOW,
        &Error::BadSignature,
    );
    // The cached certificate under a license from another vendor naming the
    // same dongle (signed by the real session key: an insider's best shot).
    let mut foreign = Mint::new();
    foreign.vendor = SecretKey::generate();
    let mut c3 = c.clone();
    c3.lic = URL_SAFE_NO_PAD.encode(foreign.license_bytes());
    expect_with(
        &v,
        "cached certificate under a foreign vendor's license",
        &m.token(&c3),
        None,
        NOW,
        &Error::UntrustedChain("license is not signed by the trusted vendor key"),
    );
    // The cached valid token, later.
    expect_with(
        &v,
        "cached token after its expiry",
        &good,
        None,
        NOW + 70,
        &Error::Expired("token"),
    );
}

/// The muxer's view of its license.
fn license_of(service: &str) -> serde_json::Value {
    http::get(service, "/license", None)
        .unwrap()
        .json()
        .unwrap()
}

/// Serves `answer` from the rogue authority; waits until the service has
/// fetched it and shows `want` in its reason. Returns the reason.
fn rogue_attack(
    rogue: &Rogue,
    muxer: &str,
    what: &str,
    want: &str,
    answer: impl Fn(Option<&str>) -> (u16, String) + Send + Sync + 'static,
) -> String {
    let before = rogue.fetch_count();
    rogue.serve(answer);
    let end = Instant::now() + T;
    let mut last = serde_json::Value::Null;
    while Instant::now() < end {
        last = license_of(muxer);
        let reason = last["reason"].as_str().unwrap_or("");
        if rogue.fetch_count() > before && reason.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = last["reason"].as_str().unwrap_or("").to_string();
    let rejected = last["licensed"] == false && !works(muxer) && reason.contains(want);
    summary::attack(M, &format!("rogue authority: {what}"), rejected, &reason);
    assert!(rejected, "{what}: {last}");
    reason
}

fn token_json(token: &str) -> (u16, String) {
    (200, serde_json::json!({ "token": token }).to_string())
}

#[test]
fn a_service_pointed_at_a_rogue_authority_accepts_nothing_forged() {
    let _g = summary::test(
        M,
        "a_service_pointed_at_a_rogue_authority_accepts_nothing_forged",
    );
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, authority) = site.start_tetherd(&[]);
    wait_for_token(&authority, site.secret("backend"), T);
    let rogue = Rogue::start();
    let (mut svc, muxer) = site.start_service("muxer", &rogue.url, &[]);

    // Control: the rogue relays genuine tokens, so the rig can license at all.
    let (a, secret) = (authority.clone(), site.secret("muxer").to_string());
    rogue.serve(move |nonce| {
        let path = format!("/token?nonce={}", nonce.unwrap_or(""));
        let r = http::get(&a, &path, Some(&secret)).unwrap();
        (r.status, r.body)
    });
    tether_tests::wait_until(T, || works(&muxer));

    // A genuine backend token, with the muxer's nonce, replayed to the muxer.
    let (a, secret) = (authority.clone(), site.secret("backend").to_string());
    rogue_attack(
        &rogue,
        &muxer,
        "backend token replayed to the muxer",
        "token is for \"backend\"",
        move |nonce| {
            let path = format!("/token?nonce={}", nonce.unwrap_or(""));
            let r = http::get(&a, &path, Some(&secret)).unwrap();
            (r.status, r.body)
        },
    );
    // A genuine muxer token captured earlier, replayed.
    let captured = http::get(&authority, "/token?nonce=old", Some(site.secret("muxer")))
        .unwrap()
        .json()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    rogue_attack(
        &rogue,
        &muxer,
        "captured muxer token replayed",
        "does not echo our nonce",
        move |_| token_json(&captured),
    );

    // Forgeries with the consumer's nonce in hand.
    let license = keyfile::read_license(&site.license).unwrap();
    let real_dongle = keyfile::read_secret_key::<Dongle>(&site.identity.join("dongle.key"))
        .unwrap()
        .0;
    let now = tether_keys::UnixTime::now().secs();
    let forge = move |m: &Mint, lic: Option<&[u8]>, nonce: Option<&str>, times: (u64, u64)| {
        let mut c = m.claims("muxer", times.0);
        c.exp = tether_keys::UnixTime::from_secs(times.1);
        if let Some(l) = lic {
            c.lic = URL_SAFE_NO_PAD.encode(l);
        }
        c.nonce = nonce.map(str::to_string);
        m.token(&c)
    };
    let lic_bytes = license.encoded().to_vec();
    let serial = site.serial.clone();

    // alg none, with the real license and a real-looking certificate.
    let lb = lic_bytes.clone();
    let s2 = serial.clone();
    rogue_attack(
        &rogue,
        &muxer,
        "alg none",
        "unsupported algorithm \"none\"",
        move |nonce| {
            let m = Mint::at(now, SecretKey::generate(), SecretKey::generate(), &s2);
            let t = forge(&m, Some(&lb), nonce, (now, now + 60));
            let p: Vec<&str> = t.split('.').collect();
            let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
            token_json(&format!("{h}.{}.", p[1]))
        },
    );
    // A session key the attacker certified with a dongle key of his own.
    let lb = lic_bytes.clone();
    let s2 = serial.clone();
    rogue_attack(
        &rogue,
        &muxer,
        "session key certified by the attacker's own dongle key",
        "certificate is not signed by the licensed dongle",
        move |nonce| {
            let m = Mint::at(now, SecretKey::generate(), SecretKey::generate(), &s2);
            token_json(&forge(&m, Some(&lb), nonce, (now, now + 60)))
        },
    );
    // A whole chain under the attacker's own vendor key.
    let s2 = serial.clone();
    rogue_attack(
        &rogue,
        &muxer,
        "license signed by the attacker's vendor key",
        "license is not signed by the trusted vendor key",
        move |nonce| {
            let m = Mint::at(now, SecretKey::generate(), SecretKey::generate(), &s2);
            token_json(&forge(&m, None, nonce, (now, now + 60)))
        },
    );
    // A session key "dumped" after its genuine certificate ended: the best
    // the attacker can do is date the token inside the old window.
    let lb = lic_bytes.clone();
    let s2 = serial.clone();
    let seed = real_dongle.expose_seed();
    let dongle_seed: [u8; 32] = *seed;
    rogue_attack(
        &rogue,
        &muxer,
        "dumped session key after its certificate ended",
        "expired",
        move |nonce| {
            let mut m = Mint::at(
                now,
                SecretKey::generate(),
                SecretKey::from_seed(&dongle_seed),
                &s2,
            );
            m.cert_window = (now - 400, now - 100);
            token_json(&forge(&m, Some(&lb), nonce, (now - 200, now - 140)))
        },
    );
    // Sizes and shapes of the answer itself.
    rogue_attack(
        &rogue,
        &muxer,
        "token over 8 KiB",
        "token too large",
        |_| token_json(&"A".repeat(9000)),
    );
    rogue_attack(
        &rogue,
        &muxer,
        "answer of 256 KiB",
        "reading the answer",
        |_| (200, format!("{{\"token\":\"{}\"}}", "A".repeat(256 * 1024))),
    );
    rogue_attack(
        &rogue,
        &muxer,
        "answer that is not JSON",
        "malformed JSON",
        |_| (200, "{\"token\":".into()),
    );
    rogue_attack(
        &rogue,
        &muxer,
        "JSON without a token",
        "without a token",
        |_| (200, "{\"tokens\":[]}".into()),
    );
    rogue_attack(
        &rogue,
        &muxer,
        "present events, but 503 on /token",
        "authority refused a token (503)",
        |_| (503, r#"{"code":"dongle_absent","message":"no"}"#.into()),
    );
    assert!(healthy(&mut svc), "the service must survive all of it");
    drop(real_dongle);
}

/// Runs `tether verify` on `token` (stdin when it is long); exit status and stderr.
fn cli_verify(site: &Site, service: &str, nonce: Option<&str>, token: &str) -> (bool, String) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(tether_tests::bin("tether"));
    cmd.args(["verify", "--vendor-pub"])
        .arg(&site.vendor_pub)
        .args(["--service", service]);
    if let Some(n) = nonce {
        cmd.args(["--nonce", n]);
    }
    cmd.arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The CLI reads a bounded prefix; it may close stdin before we finish.
    let _ = stdin.write_all(token.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_verify_cli_refuses_forgeries_with_their_reason() {
    let _g = summary::test(M, "the_verify_cli_refuses_forgeries_with_their_reason");
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, authority) = site.start_tetherd(&[]);
    let genuine = wait_for_token(&authority, site.secret("backend"), T)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, err) = cli_verify(&site, "backend", None, &genuine);
    assert!(ok, "a genuine token must verify: {err}");

    let real_dongle = keyfile::read_secret_key::<Dongle>(&site.identity.join("dongle.key"))
        .unwrap()
        .0;
    let license = keyfile::read_license(&site.license).unwrap();
    let now = tether_keys::UnixTime::now().secs();
    let forge = |dongle: SecretKey<Dongle>, window: (u64, u64), times: (u64, u64)| {
        let mut m = Mint::at(now, SecretKey::generate(), dongle, &site.serial);
        m.cert_window = window;
        let mut c = m.claims("backend", times.0);
        c.exp = tether_keys::UnixTime::from_secs(times.1);
        c.lic = URL_SAFE_NO_PAD.encode(license.encoded());
        m.token(&c)
    };
    let p: Vec<&str> = genuine.split('.').collect();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        p[1]
    );
    let mut sig = URL_SAFE_NO_PAD.decode(p[2]).unwrap();
    sig[0] ^= 1;
    let tampered = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig));
    let seed = *real_dongle.expose_seed();
    let cases = [
        (
            "backend token for the muxer",
            "muxer",
            None,
            genuine.clone(),
            "token is for \"backend\"",
        ),
        (
            "nonce not echoed",
            "backend",
            Some("mine"),
            genuine.clone(),
            "does not echo our nonce",
        ),
        ("alg none", "backend", None, none, "unsupported algorithm"),
        (
            "tampered signature",
            "backend",
            None,
            tampered,
            "bad token signature",
        ),
        (
            "session key certified by another dongle key",
            "backend",
            None,
            forge(
                SecretKey::generate(),
                (now - 30, now + 300),
                (now, now + 60),
            ),
            "not signed by the licensed dongle",
        ),
        (
            "dumped session key after its certificate",
            "backend",
            None,
            forge(
                SecretKey::from_seed(&seed),
                (now - 400, now - 100),
                (now - 200, now - 140),
            ),
            "expired",
        ),
        (
            "1 MiB on stdin",
            "backend",
            None,
            "A".repeat(1 << 20),
            "token too large",
        ),
        (
            "a JSON answer without a token",
            "backend",
            None,
            "{\"tokens\":1}".into(),
            "no \"token\"",
        ),
    ];
    for (what, service, nonce, token, want) in cases {
        let (ok, err) = cli_verify(&site, service, nonce, &token);
        let rejected = !ok && err.contains(want);
        summary::attack(M, &format!("tether verify: {what}"), rejected, err.trim());
        assert!(rejected, "{what}: ok={ok} {err}");
    }
}
