//! Every rejection reason of the verifier has a token that triggers it;
//! cached verification agrees with fresh verification and respects expiry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{
    Certificate, DelegationRequest, Dongle, LicenseId, LicenseTerms, SecretKey, Session,
    TokenClaims, TokenSigner, Vendor, testkeys,
};
use tether_verifier::{Error, Expectations, Verifier};

const NOW: u64 = 1_800_000_000;

struct Mint {
    vendor: SecretKey<Vendor>,
    dongle: SecretKey<Dongle>,
    terms: LicenseTerms,
    cert_window: (u64, u64),
    serial: String,
    session: SecretKey<Session>,
    /// The key that actually signs the token (the session key unless a test swaps it).
    signer: Option<SecretKey<Session>>,
}

fn terms(dongle: &SecretKey<Dongle>) -> LicenseTerms {
    LicenseTerms {
        id: LicenseId([3; 16]),
        customer: "ACME".into(),
        dongle_serial: "TD-1".into(),
        dongle_key: dongle.public(),
        issued_at: NOW - 86_400,
        not_before: NOW - 86_400,
        not_after: NOW + 86_400,
        max_token_ttl: 300,
        features: vec!["mux".into()],
        services: vec!["backend".into(), "muxer".into()],
        seats: Default::default(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
}

impl Mint {
    fn new() -> Self {
        let dongle = testkeys::dongle();
        Mint {
            terms: terms(&dongle),
            vendor: testkeys::vendor(),
            dongle,
            cert_window: (NOW - 30, NOW + 300),
            serial: "TD-1".into(),
            session: testkeys::session(),
            signer: None,
        }
    }

    fn claims(&self, aud: &str) -> TokenClaims {
        let license = self.terms.clone().sign(&self.vendor).unwrap();
        let cert = Certificate::sign(
            DelegationRequest {
                nonce: [9; 32],
                session_key: self.session.public(),
                not_before: self.cert_window.0,
                not_after: self.cert_window.1,
            },
            &self.serial,
            1,
            &self.dongle,
        )
        .unwrap();
        TokenClaims {
            iss: format!("tether:{}", self.serial),
            sub: aud.into(),
            aud: aud.into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            jti: "j1".into(),
            lic: URL_SAFE_NO_PAD.encode(license.encoded()),
            dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
            nonce: Some("n0nce".into()),
            ins: None,
        }
    }

    /// Signs `claims`; the header's kid always names the certified session key.
    fn sign(&self, claims: &TokenClaims) -> String {
        let kid = self.session.public().fingerprint().short();
        let key = self.signer.as_ref().unwrap_or(&self.session);
        raw_token(
            &format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#),
            &serde_json::to_string(claims).unwrap(),
            |m| key.sign(m).to_vec(),
        )
    }

    fn token(&self, aud: &str) -> String {
        self.sign(&self.claims(aud))
    }
}

fn raw_token(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn verifier(service: &str) -> Verifier {
    Verifier::new(testkeys::vendor().public(), Expectations::new(service))
}

fn check(token: &str) -> Result<(), Error> {
    verifier("backend").verify_at(token, None, NOW).map(|_| ())
}

#[test]
fn a_valid_token_verifies() {
    let m = Mint::new();
    let v = verifier("backend")
        .verify_at(&m.token("backend"), Some("n0nce"), NOW)
        .unwrap();
    assert_eq!(v.claims.aud, "backend");
    assert_eq!(v.cert_not_after, NOW + 300);
}

#[test]
fn the_same_bytes_work_with_the_shared_token_signer() {
    let m = Mint::new();
    let token = TokenSigner::new(testkeys::session())
        .unwrap()
        .sign(&m.claims("backend"))
        .unwrap();
    assert_eq!(token, m.token("backend"));
}

#[test]
fn alg_none_and_hs256_are_refused() {
    let m = Mint::new();
    let claims = serde_json::to_string(&m.claims("backend")).unwrap();
    let none = raw_token(r#"{"alg":"none","typ":"JWT"}"#, &claims, |_| vec![]);
    assert_eq!(
        check(&none),
        Err(Error::UnsupportedAlgorithm("none".into()))
    );
    // HS256 "signed" with the vendor public key bytes as the HMAC secret.
    let hs = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, |m| {
        use hmac::hmac_sha256;
        hmac_sha256(testkeys::vendor().public().as_bytes(), m).to_vec()
    });
    assert_eq!(check(&hs), Err(Error::UnsupportedAlgorithm("HS256".into())));
    let rs = raw_token(r#"{"alg":"RS256"}"#, &claims, |_| vec![0; 64]);
    assert_eq!(check(&rs), Err(Error::UnsupportedAlgorithm("RS256".into())));
}

/// HMAC-SHA256 (RFC 2104), so the forged HS256 token is a real one.
mod hmac {
    use sha2::{Digest as _, Sha256};
    pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }
}

#[test]
fn uncertified_keys_are_refused() {
    // The token is signed by a key no certificate names, and says so in kid.
    let m = Mint::new();
    let rogue = SecretKey::<Session>::from_seed(&[0x55; 32]);
    let kid = rogue.public().fingerprint().short();
    let claims = serde_json::to_string(&m.claims("backend")).unwrap();
    let t = raw_token(
        &format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
        &claims,
        |x| rogue.sign(x).to_vec(),
    );
    assert!(matches!(check(&t), Err(Error::UntrustedChain(_))));
    // A valid certificate, but the token is signed by another session key.
    let mut m = Mint::new();
    m.signer = Some(SecretKey::from_seed(&[0x56; 32]));
    assert_eq!(check(&m.token("backend")), Err(Error::BadSignature));
}

#[test]
fn tampering_is_caught() {
    let token = Mint::new().token("backend");
    let parts: Vec<&str> = token.split('.').collect();
    // Payload re-encoded with another audience, old signature kept.
    let mut claims: TokenClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims.exp += 3600;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(check(&forged), Err(Error::BadSignature));
    // One signature byte changed.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(check(&forged), Err(Error::BadSignature));
    // The header changed (typ dropped): the signature no longer covers it.
    let kid = testkeys::session().public().fingerprint().short();
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#));
    let forged = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(check(&forged), Err(Error::BadSignature));
    // Every single-character change anywhere is refused.
    let v = verifier("backend");
    for i in 0..token.len() {
        let mut b = token.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap();
        if t != token {
            assert!(
                v.verify_at(&t, None, NOW).is_err(),
                "change at {i} accepted"
            );
        }
    }
}

#[test]
fn foreign_licenses_and_dongles_are_refused() {
    let mut m = Mint::new();
    m.vendor = SecretKey::from_seed(&[0x77; 32]);
    assert!(
        matches!(check(&m.token("backend")), Err(Error::UntrustedChain(r)) if r.contains("vendor"))
    );
    // A license for another dongle: the certificate's signer is not the licensed key.
    let mut m = Mint::new();
    m.dongle = SecretKey::from_seed(&[0x78; 32]);
    m.terms.dongle_key = testkeys::dongle().public();
    assert!(
        matches!(check(&m.token("backend")), Err(Error::UntrustedChain(r)) if r.contains("dongle"))
    );
    // A certificate from a dongle with another serial.
    let mut m = Mint::new();
    m.serial = "TD-2".into();
    assert!(
        matches!(check(&m.token("backend")), Err(Error::UntrustedChain(r)) if r.contains("another dongle"))
    );
}

#[test]
fn certificate_age_is_bounded_by_our_clock() {
    let m = Mint::new();
    let v = verifier("backend");
    // Long after the certificate's end (and the token's).
    assert!(matches!(
        v.verify_at(&m.token("backend"), None, NOW + 1000),
        Err(Error::Expired(_))
    ));
    // A certificate dated in the future, with a token inside it.
    let mut m = Mint::new();
    m.cert_window = (NOW + 100, NOW + 400);
    let mut c = m.claims("backend");
    (c.iat, c.nbf, c.exp) = (NOW + 100, NOW + 100, NOW + 160);
    assert_eq!(
        v.verify_at(&m.sign(&c), None, NOW),
        Err(Error::NotYetValid("delegation certificate"))
    );
    // A certificate window longer than allowed.
    let mut m = Mint::new();
    m.cert_window = (NOW - 30, NOW + 3600);
    assert_eq!(
        check(&m.token("backend")),
        Err(Error::CertificateTooLong(3630))
    );
    // An expired certificate with a token claiming to be inside it.
    let mut m = Mint::new();
    m.cert_window = (NOW - 600, NOW - 300);
    let mut c = m.claims("backend");
    (c.iat, c.nbf, c.exp) = (NOW - 400, NOW - 400, NOW - 340);
    assert_eq!(
        v.verify_at(&m.sign(&c), None, NOW),
        Err(Error::Expired("delegation certificate"))
    );
}

#[test]
fn token_times_are_checked() {
    let m = Mint::new();
    let v = verifier("backend");
    let t = m.token("backend");
    assert_eq!(
        v.verify_at(&t, None, NOW + 66),
        Err(Error::Expired("token"))
    );
    v.verify_at(&t, None, NOW + 64).unwrap(); // within the 5 s leeway
    let mut c = m.claims("backend");
    (c.nbf, c.exp) = (NOW + 30, NOW + 90);
    assert_eq!(
        v.verify_at(&m.sign(&c), None, NOW),
        Err(Error::NotYetValid("token"))
    );
    let mut c = m.claims("backend");
    c.exp = NOW + 301;
    assert_eq!(
        v.verify_at(&m.sign(&c), None, NOW),
        Err(Error::LifetimeTooLong)
    );
    // A license that has expired.
    let mut m = Mint::new();
    m.terms.not_after = NOW - 10;
    assert_eq!(check(&m.token("backend")), Err(Error::Expired("license")));
}

#[test]
fn audience_issuer_features_and_nonce() {
    let m = Mint::new();
    // A backend token replayed to the muxer.
    let err = verifier("muxer").verify_at(&m.token("backend"), None, NOW);
    assert!(matches!(err, Err(Error::WrongAudience { .. })), "{err:?}");
    let mut c = m.claims("backend");
    c.iss = "tether:TD-9".into();
    assert_eq!(
        check(&m.sign(&c)),
        Err(Error::WrongIssuer("tether:TD-9".into()))
    );
    let mut c = m.claims("backend");
    c.sub = "muxer".into();
    assert!(matches!(
        check(&m.sign(&c)),
        Err(Error::WrongAudience { .. })
    ));
    assert_eq!(
        verifier("reports").verify_at(&m.token("reports"), None, NOW),
        Err(Error::ServiceNotLicensed("reports".into()))
    );
    let needs_rec = Verifier::new(
        testkeys::vendor().public(),
        Expectations::new("backend").require_features(["mux", "rec"]),
    );
    assert_eq!(
        needs_rec.verify_at(&m.token("backend"), None, NOW),
        Err(Error::MissingFeature("rec".into()))
    );
    assert_eq!(
        verifier("backend").verify_at(&m.token("backend"), Some("other"), NOW),
        Err(Error::NonceMismatch)
    );
}

#[test]
fn malformed_tokens_are_refused_without_panic() {
    let m = Mint::new();
    let good = m.token("backend");
    let parts: Vec<&str> = good.split('.').collect();
    let kid = testkeys::session().public().fingerprint().short();
    let header = format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#);
    // Missing claims.
    let t = raw_token(&header, r#"{"aud":"backend"}"#, |x| {
        testkeys::session().sign(x).to_vec()
    });
    assert!(matches!(check(&t), Err(Error::Malformed(_))));
    // A claim given twice.
    let json = serde_json::to_string(&m.claims("backend")).unwrap();
    let dup = json.replacen('{', &format!(r#"{{"exp":{},"#, NOW + 99_999), 1);
    let t = raw_token(&header, &dup, |x| testkeys::session().sign(x).to_vec());
    assert!(
        matches!(check(&t), Err(Error::Malformed(_))),
        "{:?}",
        check(&t)
    );
    // Huge.
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2]);
    assert_eq!(check(&huge), Err(Error::Malformed("token too large")));
    // Non-canonical base64: padding, and non-zero trailing bits.
    assert!(matches!(
        check(&format!("{good}==")),
        Err(Error::Malformed(_))
    ));
    let mut sig = parts[2].to_string();
    let last = sig.pop().unwrap();
    let alt = match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        c => c,
    };
    sig.push(alt);
    assert!(check(&format!("{}.{}.{sig}", parts[0], parts[1])).is_err());
    for junk in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "!!!.!!!.!!!",
        "e30.e30.",
        "e30.e30.e30",
    ] {
        assert!(check(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn cached_results_match_fresh_ones_and_respect_expiry() {
    let m = Mint::new();
    let t = m.token("backend");
    let v = verifier("backend");
    let first = v.verify_at(&t, None, NOW).unwrap();
    let again = v.verify_at(&t, None, NOW).unwrap();
    assert_eq!(first, again);
    assert_eq!(
        verifier("backend").verify_at(&t, None, NOW + 100),
        v.verify_at(&t, None, NOW + 100)
    );
    assert_eq!(
        v.verify_at(&t, None, NOW + 100),
        Err(Error::Expired("token"))
    );
    // A cached token replayed to another audience is still refused.
    let mux = Verifier::new(testkeys::vendor().public(), Expectations::new("muxer"));
    assert!(mux.verify_at(&t, None, NOW).is_err());
    // A new token under the cached certificate.
    let mut c = m.claims("backend");
    c.jti = "j2".into();
    v.verify_at(&m.sign(&c), None, NOW).unwrap();
}

#[test]
fn jsonwebtoken_decode_accepts_the_same_tokens() {
    let m = Mint::new();
    let mut c = m.claims("backend");
    let now = tether_keys::now_unix();
    (c.iat, c.nbf, c.exp) = (now, now, now + 60);
    let t = m.sign(&c);
    let key = jsonwebtoken::DecodingKey::from_ed_der(testkeys::session().public().as_bytes());
    let mut val = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    val.set_audience(&["backend"]);
    let data = jsonwebtoken::decode::<TokenClaims>(&t, &key, &val).unwrap();
    assert_eq!(data.claims, c);
}

/// A license that signs is one whose tokens verify: the license size cap
/// keeps the largest license's tokens under the verifier's size limit.
#[test]
fn the_largest_license_that_signs_still_gives_tokens_that_verify() {
    let mut m = Mint::new();
    m.terms.customer = "C".repeat(255);
    let mut largest = None;
    for i in 0..64 {
        let mut t = m.terms.clone();
        t.features.push(format!("f{i:02}-{}", "x".repeat(58)));
        t.features.sort();
        match t.clone().sign(&m.vendor) {
            Ok(_) => {
                m.terms = t.clone();
                largest = Some(t);
            }
            Err(e) => {
                assert!(e.to_string().contains("over the maximum"), "{e}");
                break;
            }
        }
    }
    let terms = largest.expect("some license signs");
    let license = terms.clone().sign(&m.vendor).unwrap();
    assert!(license.encoded().len() > tether_keys::license::MAX_LICENSE_LEN - 100);
    m.terms = terms;
    let token = m.token("backend");
    assert!(
        token.len() <= tether_verifier::MAX_TOKEN_LEN,
        "{}",
        token.len()
    );
    check(&token).unwrap();
}
