//! Every rejection reason of the verifier has a token that triggers it;
//! cached verification agrees with fresh verification and respects expiry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{
    Certificate, DelegationRequest, Dongle, LicenseId, LicenseTerms, SecretKey, Session,
    TokenClaims, TokenSigner, UnixTime, Vendor, testkeys,
};
use tether_verifier::{Error, Expectations, Verifier};

const NOW: u64 = 1_800_000_000;

/// `secs` as an instant.
fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

struct Mint {
    vendor: SecretKey<Vendor>,
    dongle: SecretKey<Dongle>,
    terms: LicenseTerms,
    cert_window: (UnixTime, UnixTime),
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
        dongle: dongle.public().into(),
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

impl Mint {
    fn new() -> Self {
        let dongle = testkeys::dongle();
        Mint {
            terms: terms(&dongle),
            vendor: testkeys::vendor(),
            dongle,
            cert_window: (at(NOW - 30), at(NOW + 300)),
            serial: "TD-1".into(),
            session: testkeys::session(),
            signer: None,
        }
    }

    fn claims(&self, aud: &str) -> TokenClaims {
        let license = self.terms.clone().sign(&self.vendor).unwrap();
        let cert = Certificate::sign(
            DelegationRequest::new(
                [9; 32],
                self.session.public(),
                self.cert_window.0,
                self.cert_window.1,
            ),
            &self.serial,
            1,
            &self.dongle,
        )
        .unwrap();
        TokenClaims {
            iss: format!("tether:{}", self.serial),
            sub: aud.into(),
            aud: aud.into(),
            iat: at(NOW),
            nbf: at(NOW),
            exp: at(NOW + 60),
            jti: "j1".into(),
            lic: URL_SAFE_NO_PAD.encode(license.encoded()),
            dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
            nonce: Some("n0nce".into()),
            ins: None,
            prf: None,
            grace: None,
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
    verifier("backend")
        .verify_at(token, None, at(NOW))
        .map(|_| ())
}

#[test]
fn a_valid_token_verifies() {
    let m = Mint::new();
    let v = verifier("backend")
        .verify_at(&m.token("backend"), Some("n0nce"), at(NOW))
        .unwrap();
    assert_eq!(v.claims.aud, "backend");
    assert_eq!(v.cert_not_after, at(NOW + 300));
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
fn a_newer_license_or_certificate_format_is_refused_saying_to_upgrade() {
    let mint = Mint::new();
    // The version byte (the body's first) of a format a later Tether writes.
    let mut claims = mint.claims("backend");
    let mut lic = URL_SAFE_NO_PAD.decode(&claims.lic).unwrap();
    lic[0] = 3;
    claims.lic = URL_SAFE_NO_PAD.encode(&lic);
    assert_eq!(
        check(&mint.sign(&claims)),
        Err(Error::Malformed(
            "lic is in a license format this build does not read (newer Tether): upgrade the verifier"
        ))
    );
    let mut claims = mint.claims("backend");
    let mut cert = URL_SAFE_NO_PAD.decode(&claims.dcert).unwrap();
    cert[0] = 3;
    claims.dcert = URL_SAFE_NO_PAD.encode(&cert);
    assert_eq!(
        check(&mint.sign(&claims)),
        Err(Error::Malformed(
            "dcert is in a certificate format this build does not read (newer Tether): upgrade the verifier"
        ))
    );
    // A broken one of a version this build reads is still just not a license.
    let mut claims = mint.claims("backend");
    let lic = URL_SAFE_NO_PAD.decode(&claims.lic).unwrap();
    claims.lic = URL_SAFE_NO_PAD.encode(&lic[..lic.len() - 1]);
    assert_eq!(
        check(&mint.sign(&claims)),
        Err(Error::Malformed("lic is not a license"))
    );
}

#[test]
fn tampering_is_caught() {
    let token = Mint::new().token("backend");
    let parts: Vec<&str> = token.split('.').collect();
    // Payload re-encoded with another audience, old signature kept.
    let mut claims: TokenClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims.exp += Duration::from_secs(3600);
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
                v.verify_at(&t, None, at(NOW)).is_err(),
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
    m.terms.dongle = testkeys::dongle().public().into();
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
        v.verify_at(&m.token("backend"), None, at(NOW + 1000)),
        Err(Error::Expired(_))
    ));
    // A certificate dated in the future, with a token inside it.
    let mut m = Mint::new();
    m.cert_window = (at(NOW + 100), at(NOW + 400));
    let mut c = m.claims("backend");
    (c.iat, c.nbf, c.exp) = (at(NOW + 100), at(NOW + 100), at(NOW + 160));
    assert_eq!(
        v.verify_at(&m.sign(&c), None, at(NOW)),
        Err(Error::NotYetValid("delegation certificate"))
    );
    // A certificate window longer than allowed.
    let mut m = Mint::new();
    m.cert_window = (at(NOW - 30), at(NOW + 3600));
    assert_eq!(
        check(&m.token("backend")),
        Err(Error::CertificateTooLong(3630))
    );
    // An expired certificate with a token claiming to be inside it.
    let mut m = Mint::new();
    m.cert_window = (at(NOW - 600), at(NOW - 300));
    let mut c = m.claims("backend");
    (c.iat, c.nbf, c.exp) = (at(NOW - 400), at(NOW - 400), at(NOW - 340));
    assert_eq!(
        v.verify_at(&m.sign(&c), None, at(NOW)),
        Err(Error::Expired("delegation certificate"))
    );
}

#[test]
fn token_times_are_checked() {
    let m = Mint::new();
    let v = verifier("backend");
    let t = m.token("backend");
    assert_eq!(
        v.verify_at(&t, None, at(NOW + 66)),
        Err(Error::Expired("token"))
    );
    v.verify_at(&t, None, at(NOW + 64)).unwrap(); // within the 5 s leeway
    let mut c = m.claims("backend");
    (c.nbf, c.exp) = (at(NOW + 30), at(NOW + 90));
    assert_eq!(
        v.verify_at(&m.sign(&c), None, at(NOW)),
        Err(Error::NotYetValid("token"))
    );
    let mut c = m.claims("backend");
    c.exp = at(NOW + 301);
    assert_eq!(
        v.verify_at(&m.sign(&c), None, at(NOW)),
        Err(Error::LifetimeTooLong)
    );
    // A license that has expired.
    let mut m = Mint::new();
    m.terms.not_after = at(NOW - 10);
    assert_eq!(check(&m.token("backend")), Err(Error::Expired("license")));
}

#[test]
fn audience_issuer_features_and_nonce() {
    let m = Mint::new();
    // A backend token replayed to the muxer.
    let err = verifier("muxer").verify_at(&m.token("backend"), None, at(NOW));
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
        verifier("reports").verify_at(&m.token("reports"), None, at(NOW)),
        Err(Error::ServiceNotLicensed("reports".into()))
    );
    let needs_rec = Verifier::new(
        testkeys::vendor().public(),
        Expectations::new("backend").require_features(["mux", "rec"]),
    );
    assert_eq!(
        needs_rec.verify_at(&m.token("backend"), None, at(NOW)),
        Err(Error::MissingFeature("rec".into()))
    );
    assert_eq!(
        verifier("backend").verify_at(&m.token("backend"), Some("other"), at(NOW)),
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
    let first = v.verify_at(&t, None, at(NOW)).unwrap();
    let again = v.verify_at(&t, None, at(NOW)).unwrap();
    assert_eq!(first, again);
    assert_eq!(
        verifier("backend").verify_at(&t, None, at(NOW + 100)),
        v.verify_at(&t, None, at(NOW + 100))
    );
    assert_eq!(
        v.verify_at(&t, None, at(NOW + 100)),
        Err(Error::Expired("token"))
    );
    // A cached token replayed to another audience is still refused.
    let mux = Verifier::new(testkeys::vendor().public(), Expectations::new("muxer"));
    assert!(mux.verify_at(&t, None, at(NOW)).is_err());
    // A new token under the cached certificate.
    let mut c = m.claims("backend");
    c.jti = "j2".into();
    v.verify_at(&m.sign(&c), None, at(NOW)).unwrap();
}

#[test]
fn jsonwebtoken_decode_accepts_the_same_tokens() {
    let m = Mint::new();
    let mut c = m.claims("backend");
    let now = UnixTime::now();
    (c.iat, c.nbf, c.exp) = (now, now, now + Duration::from_secs(60));
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

/// The JOSE header, parameter by parameter (RFC 7515 section 4.1, RFC 8725,
/// RFC 7797, RFC 9864): each test signs its header correctly with the
/// certified session key, so only the parameter under test decides.
mod jose_header {
    use super::*;

    fn kid() -> String {
        testkeys::session().public().fingerprint().short()
    }

    /// A token with `header` (JSON text), valid claims, signed by the session key.
    fn with_header(header: &str) -> String {
        let claims = serde_json::to_string(&Mint::new().claims("backend")).unwrap();
        raw_token(header, &claims, |m| testkeys::session().sign(m).to_vec())
    }

    fn check_header(header: &str) -> Result<(), Error> {
        check(&with_header(header))
    }

    /// `alg` (4.1.1, RFC 8725 3.1): pinned to Ed25519. `EdDSA` (what Tether
    /// emits) and `Ed25519` (RFC 9864's fully-specified name) are both
    /// accepted and both mean the certified Ed25519 session key; every
    /// other value, case variants included, is refused before any key is
    /// touched.
    #[test]
    fn alg_is_pinned_to_ed25519() {
        let kid = kid();
        for alg in ["EdDSA", "Ed25519"] {
            check_header(&format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#)).unwrap();
        }
        for alg in [
            "none", "None", "HS256", "RS256", "ES256", "PS256", "Ed448", "eddsa", "EDDSA",
            "ed25519", "ED25519", " EdDSA", "EdDSA ", "",
        ] {
            assert_eq!(
                check_header(&format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#)),
                Err(Error::UnsupportedAlgorithm(alg.into())),
                "{alg:?}"
            );
        }
        for alg in ["null", "1", r#"["EdDSA"]"#, r#"{"name":"EdDSA"}"#, "true"] {
            assert!(
                matches!(
                    check_header(&format!(r#"{{"alg":{alg},"kid":"{kid}"}}"#)),
                    Err(Error::Malformed(_))
                ),
                "{alg}"
            );
        }
    }

    /// `crit` (4.1.11): the verifier understands no extension, so any
    /// `crit` is refused, whatever it lists (even registered names, which
    /// RFC 7515 forbids there, or an empty list, which it also forbids).
    #[test]
    fn crit_is_refused() {
        let kid = kid();
        for crit in [
            r#"["exp"]"#,
            r#"["b64"]"#,
            r#"["tether-x"]"#,
            r#"[]"#,
            r#""b64""#,
            "null",
        ] {
            assert!(
                matches!(
                    check_header(&format!(
                        r#"{{"alg":"EdDSA","kid":"{kid}","crit":{crit},"tether-x":1}}"#
                    )),
                    Err(Error::BadHeader(_))
                ),
                "{crit}"
            );
        }
    }

    /// `jku`, `jwk`, `x5u`, `x5c`, `x5t`, `x5t#S256` (4.1.2 to 4.1.8, RFC
    /// 8725 3.10): ignored, never fetched, never used to pick a key. A
    /// header offering the attacker's key still needs the certified key's
    /// signature; one offering nonsense changes nothing for a genuine token.
    #[test]
    fn key_parameters_never_pick_a_key() {
        let kid = kid();
        let rogue = SecretKey::<Session>::from_seed(&[0x66; 32]);
        let x = URL_SAFE_NO_PAD.encode(rogue.public().as_bytes());
        let offers = format!(
            r#""jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}},"jku":"http://127.0.0.1:1/jwks","x5u":"http://127.0.0.1:1/c","x5c":["AAAA"],"x5t":"AAAA","x5t#S256":"AAAA""#
        );
        // Genuine token, signed by the session key, with every offer: verifies.
        check_header(&format!(r#"{{"alg":"EdDSA","kid":"{kid}",{offers}}}"#)).unwrap();
        let claims = serde_json::to_string(&Mint::new().claims("backend")).unwrap();
        // Signed by the offered key, kid naming the certified key: bad signature.
        let t = raw_token(
            &format!(r#"{{"alg":"EdDSA","kid":"{kid}",{offers}}}"#),
            &claims,
            |m| rogue.sign(m).to_vec(),
        );
        assert_eq!(check(&t), Err(Error::BadSignature));
        // Signed by the offered key, kid naming it: not the certified key.
        let rogue_kid = rogue.public().fingerprint().short();
        let t = raw_token(
            &format!(r#"{{"alg":"EdDSA","kid":"{rogue_kid}",{offers}}}"#),
            &claims,
            |m| rogue.sign(m).to_vec(),
        );
        assert!(matches!(check(&t), Err(Error::UntrustedChain(_))));
    }

    /// `kid` (4.1.4): required, a string, equal to the short fingerprint of
    /// the session key the certificate names.
    #[test]
    fn kid_must_name_the_certified_session_key() {
        let other = SecretKey::<Session>::from_seed(&[0x67; 32])
            .public()
            .fingerprint()
            .short();
        for header in [
            r#"{"alg":"EdDSA"}"#.to_string(),
            format!(r#"{{"alg":"EdDSA","kid":"{other}"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, kid().to_lowercase()),
            r#"{"alg":"EdDSA","kid":""}"#.to_string(),
        ] {
            assert_eq!(
                check_header(&header),
                Err(Error::UntrustedChain(
                    "kid does not name the certified session key"
                )),
                "{header}"
            );
        }
        for kid in ["1", "null", r#"["x"]"#] {
            assert!(matches!(
                check_header(&format!(r#"{{"alg":"EdDSA","kid":{kid}}}"#)),
                Err(Error::Malformed(_))
            ));
        }
    }

    /// `typ` (4.1.9, RFC 8725 3.11): Tether emits `JWT` (what jsonwebtoken
    /// and PyJWT write and expect). It is optional; when present it must
    /// say JWT (media types compare case-insensitively, `application/` may
    /// be omitted). Explicit typing is not needed against cross-JWT
    /// confusion here: the session key signs nothing but Tether tokens.
    #[test]
    fn typ_is_jwt_or_absent() {
        let kid = kid();
        check_header(&format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#)).unwrap();
        for typ in ["JWT", "jwt", "application/jwt", "Application/JWT"] {
            check_header(&format!(r#"{{"typ":"{typ}","alg":"EdDSA","kid":"{kid}"}}"#)).unwrap();
        }
        for typ in [
            r#""at+jwt""#,
            r#""JOSE""#,
            r#""JWS""#,
            r#""secevent+jwt""#,
            r#""""#,
            "null",
            "1",
        ] {
            assert_eq!(
                check_header(&format!(r#"{{"typ":{typ},"alg":"EdDSA","kid":"{kid}"}}"#)),
                Err(Error::BadHeader("typ is not JWT")),
                "{typ}"
            );
        }
    }

    /// `b64` (RFC 7797): an unencoded payload changes what the signature
    /// covers; refused with or without `crit`. `true` is the ordinary
    /// encoding and changes nothing.
    #[test]
    fn b64_false_is_refused() {
        let kid = kid();
        for header in [
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","b64":false}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","b64":false,"crit":["b64"]}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","b64":"false"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","b64":0}}"#),
        ] {
            assert!(
                matches!(check_header(&header), Err(Error::BadHeader(_))),
                "{header}"
            );
        }
        check_header(&format!(r#"{{"alg":"EdDSA","kid":"{kid}","b64":true}}"#)).unwrap();
    }

    /// Member names are unique (RFC 7515 section 4): a repeated one is
    /// refused, whichever comes first, registered or not, escaped or not.
    #[test]
    fn duplicate_members_are_refused() {
        let kid = kid();
        for header in [
            format!(r#"{{"alg":"EdDSA","alg":"none","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","alg":"EdDSA","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","kid":"{kid}"}}"#),
            format!(r#"{{"typ":"JWT","typ":"at+jwt","alg":"EdDSA","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","x":1,"x":2}}"#),
            format!(r#"{{"alg":"EdDSA","a\u006cg":"none","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":["a"],"crit":["a"]}}"#),
        ] {
            assert_eq!(
                check_header(&header),
                Err(Error::Malformed("header is not a JSON object with alg")),
                "{header}"
            );
        }
    }

    /// `cty` (4.1.10; nested tokens, RFC 7519 5.2) and JWE's `enc` and
    /// `zip` (RFC 7516 4.1): never in a signed Tether token, refused.
    #[test]
    fn cty_and_jwe_parameters_are_refused() {
        let kid = kid();
        for extra in [r#""cty":"JWT""#, r#""enc":"A256GCM""#, r#""zip":"DEF""#] {
            assert!(
                matches!(
                    check_header(&format!(r#"{{"alg":"EdDSA","kid":"{kid}",{extra}}}"#)),
                    Err(Error::BadHeader(_))
                ),
                "{extra}"
            );
        }
    }

    /// Parameters not defined by RFC 7515 and not listed in `crit` are
    /// ignored, as section 4 requires.
    #[test]
    fn unknown_parameters_are_ignored() {
        let kid = kid();
        check_header(&format!(
            r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT","x-note":{{"a":[1,2]}},"iss":"x"}}"#
        ))
        .unwrap();
    }

    /// Why Tether keeps emitting `EdDSA` (docs/formats.md): `jsonwebtoken`
    /// 11 cannot even parse a header saying `Ed25519`.
    #[test]
    fn jsonwebtoken_11_knows_eddsa_and_not_ed25519() {
        let kid = kid();
        let eddsa = with_header(&format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#));
        let ed25519 = with_header(&format!(r#"{{"alg":"Ed25519","kid":"{kid}"}}"#));
        assert!(jsonwebtoken::decode_header(&eddsa).is_ok());
        assert!(jsonwebtoken::decode_header(&ed25519).is_err());
        check(&ed25519).unwrap();
    }

    /// The header must be a JSON object.
    #[test]
    fn the_header_is_an_object() {
        for header in [
            r#"["EdDSA"]"#,
            r#""EdDSA""#,
            "null",
            "1",
            "",
            "{",
            r#"{"alg":"EdDSA"} x"#,
        ] {
            assert!(
                matches!(check_header(header), Err(Error::Malformed(_))),
                "{header}"
            );
        }
    }
}

/// Issue 15, freshness: under a license with a `nonce_period`, a token
/// proves that its `(aud, ins, nonce)` leaf is in the Merkle tree its
/// certificate commits to, and the commitment stays within the seats.
mod freshness {
    use super::*;
    use std::collections::BTreeMap;
    use tether_keys::merkle::{Commitment, InclusionProof, Leaf, LeafSet};

    /// The live consumers: two backends (its 2 seats) and one muxer.
    fn leaves() -> LeafSet {
        LeafSet::new([
            Leaf::new("backend", "b-1", "n-1").unwrap(),
            Leaf::new("backend", "b-2", "n-2").unwrap(),
            Leaf::new("muxer", "m-1", "n-m").unwrap(),
        ])
    }

    /// A mint whose license demands fresh nonces every 300 s and gives the
    /// backend 2 seats.
    fn mint() -> Mint {
        let mut m = Mint::new();
        m.terms.nonce_period = 300;
        m.terms.seats = BTreeMap::from([("backend".into(), 2)]);
        m
    }

    /// Claims for instance `ins` of `aud` echoing `nonce`, under a v2
    /// certificate committing to `commitment`, with `prf`.
    fn claims(
        m: &Mint,
        commitment: Commitment,
        aud: &str,
        ins: &str,
        nonce: &str,
        prf: Option<&InclusionProof>,
    ) -> TokenClaims {
        let mut req = DelegationRequest::new(
            [9; 32],
            m.session.public(),
            m.cert_window.0,
            m.cert_window.1,
        );
        req.commitment = commitment;
        let cert = Certificate::sign(req, &m.serial, 1, &m.dongle).unwrap();
        let mut c = m.claims(aud);
        c.dcert = URL_SAFE_NO_PAD.encode(cert.encoded());
        c.ins = Some(ins.into());
        c.nonce = Some(nonce.into());
        c.prf = prf.map(InclusionProof::to_claim);
        c
    }

    /// The token of backend `b-1` (leaf 0), proof and all.
    fn good(m: &Mint) -> String {
        let set = leaves();
        let proof = set.prove(0).unwrap();
        m.sign(&claims(
            m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-1",
            Some(&proof),
        ))
    }

    fn refused(m: &Mint, proof: &InclusionProof, nonce: &str) -> Result<(), Error> {
        let set = leaves();
        let c = claims(
            m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            nonce,
            Some(proof),
        );
        check(&m.sign(&c))
    }

    #[test]
    fn an_included_nonce_is_accepted() {
        let m = mint();
        let t = good(&m);
        let v = verifier("backend");
        let got = v.verify_at(&t, Some("n-1"), at(NOW)).unwrap();
        assert_eq!(got.nonce.as_deref(), Some("n-1"));
        assert_eq!(got.seats, Some(2));
        // Stateless, no nonce asked for: the proof is still checked, and passes.
        v.verify_at(&t, None, at(NOW)).unwrap();
        // Again, from the cache.
        v.verify_at(&t, Some("n-1"), at(NOW)).unwrap();
        // Every leaf of the tree, the muxer's (no seat limit) included.
        let set = leaves();
        for (i, leaf) in set.leaves().iter().enumerate() {
            let c = claims(
                &m,
                set.commitment().unwrap(),
                leaf.service(),
                leaf.instance(),
                leaf.nonce(),
                Some(&set.prove(i).unwrap()),
            );
            verifier(leaf.service())
                .verify_at(&m.sign(&c), Some(leaf.nonce()), at(NOW))
                .unwrap();
        }
    }

    #[test]
    fn a_nonce_not_in_the_tree_is_refused() {
        let m = mint();
        let proof = leaves().prove(0).unwrap();
        let err = refused(&m, &proof, "n-9");
        assert!(matches!(err, Err(Error::NotIncluded(_))), "{err:?}");
        // Another instance's nonce, with our instance id.
        let err = refused(&m, &proof, "n-2");
        assert!(matches!(err, Err(Error::NotIncluded(_))), "{err:?}");
        // The refusal is not cached as a success: the same token again.
        let set = leaves();
        let t = m.sign(&claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-9",
            Some(&proof),
        ));
        let v = verifier("backend");
        for _ in 0..2 {
            assert!(matches!(
                v.verify_at(&t, None, at(NOW)),
                Err(Error::NotIncluded(_))
            ));
        }
    }

    #[test]
    fn an_altered_proof_is_refused() {
        let m = mint();
        let proof = leaves().prove(0).unwrap();
        assert!(refused(&m, &proof, "n-1").is_ok());
        let mut path = proof.clone();
        path.path[0][0] ^= 1;
        let mut shorter = proof.clone();
        shorter.path.pop();
        let mut longer = proof.clone();
        longer.path.push([0; 32]);
        let mut index = proof.clone();
        index.index = 1;
        let mut size = proof.clone();
        size.size = 4;
        let mut muxer_index = proof.clone();
        muxer_index.index = 2;
        for (what, p) in [
            ("path", path),
            ("shorter", shorter),
            ("longer", longer),
            ("index", index),
            ("size", size),
            ("muxer's index", muxer_index),
        ] {
            let err = refused(&m, &p, "n-1");
            assert!(matches!(err, Err(Error::NotIncluded(_))), "{what}: {err:?}");
        }
        // Not a proof at all.
        let set = leaves();
        let mut c = claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-1",
            Some(&proof),
        );
        c.prf = Some("AAAA".into());
        assert!(matches!(check(&m.sign(&c)), Err(Error::Malformed(_))));
    }

    /// The certificate's memo of Merkle nodes, warm from every leaf's
    /// proof, changes no verdict: each altered proof is still refused by
    /// the verifier that accepted the good ones, and the good ones still
    /// pass after.
    #[test]
    fn a_warm_node_memo_refuses_what_a_cold_verifier_refuses() {
        let m = mint();
        let set = leaves();
        let v = verifier("backend");
        let token = |ins: &str, nonce: &str, p: &InclusionProof| {
            m.sign(&claims(
                &m,
                set.commitment().unwrap(),
                "backend",
                ins,
                nonce,
                Some(p),
            ))
        };
        for (i, leaf) in set.leaves().iter().enumerate().take(2) {
            let t = token(leaf.instance(), leaf.nonce(), &set.prove(i).unwrap());
            v.verify_at(&t, None, at(NOW)).unwrap();
        }
        let proof = set.prove(0).unwrap();
        let mut variants = Vec::new();
        for level in 0..proof.path.len() {
            let mut p = proof.clone();
            p.path[level][31] ^= 0x80;
            variants.push(p);
        }
        let mut swapped = proof.clone();
        swapped.path.swap(0, 1);
        variants.push(swapped);
        let mut index = proof.clone();
        index.index = 1;
        variants.push(index);
        for p in &variants {
            let err = v.verify_at(&token("b-1", "n-1", p), None, at(NOW));
            assert!(matches!(err, Err(Error::NotIncluded(_))), "{p:?}: {err:?}");
        }
        // Leaf 1's proof for leaf 0's (ins, nonce), and a nonce not in the tree.
        let err = v.verify_at(&token("b-1", "n-1", &set.prove(1).unwrap()), None, at(NOW));
        assert!(matches!(err, Err(Error::NotIncluded(_))), "{err:?}");
        let err = v.verify_at(&token("b-1", "n-9", &proof), None, at(NOW));
        assert!(matches!(err, Err(Error::NotIncluded(_))), "{err:?}");
        // A new token (another jti) of a good leaf still passes.
        let mut c = claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-2",
            "n-2",
            Some(&set.prove(1).unwrap()),
        );
        c.jti = "another".into();
        v.verify_at(&m.sign(&c), None, at(NOW)).unwrap();
    }

    #[test]
    fn a_commitment_over_the_seats_is_refused() {
        let m = mint();
        let set = LeafSet::new([
            Leaf::new("backend", "b-1", "n-1").unwrap(),
            Leaf::new("backend", "b-2", "n-2").unwrap(),
            Leaf::new("backend", "b-3", "n-3").unwrap(),
        ]);
        let c = claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-1",
            Some(&set.prove(0).unwrap()),
        );
        assert_eq!(
            check(&m.sign(&c)),
            Err(Error::OverSeats {
                service: "backend".into(),
                count: 3,
                seats: 2
            })
        );
        // A service the license does not allow has no seats at all.
        let set = LeafSet::new([
            Leaf::new("backend", "b-1", "n-1").unwrap(),
            Leaf::new("reports", "r-1", "n-r").unwrap(),
        ]);
        let c = claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-1",
            Some(&set.prove(0).unwrap()),
        );
        assert_eq!(
            check(&m.sign(&c)),
            Err(Error::OverSeats {
                service: "reports".into(),
                count: 1,
                seats: 0
            })
        );
    }

    #[test]
    fn a_token_without_proof_or_commitment_is_refused_under_freshness() {
        let m = mint();
        let set = leaves();
        let c = claims(&m, set.commitment().unwrap(), "backend", "b-1", "n-1", None);
        assert_eq!(
            check(&m.sign(&c)),
            Err(Error::NotIncluded(
                "no inclusion proof (prf claim) under a license that demands fresh nonces"
            ))
        );
        // A certificate that commits to nobody.
        let c = claims(
            &m,
            Commitment::default(),
            "backend",
            "b-1",
            "n-1",
            Some(&set.prove(0).unwrap()),
        );
        assert!(matches!(check(&m.sign(&c)), Err(Error::NotIncluded(_))));
        // No instance or no nonce: no leaf to prove.
        let mut c = claims(
            &m,
            set.commitment().unwrap(),
            "backend",
            "b-1",
            "n-1",
            Some(&set.prove(0).unwrap()),
        );
        c.ins = None;
        assert!(matches!(check(&m.sign(&c)), Err(Error::NotIncluded(_))));
        // The plain token of before (v2 certificate, empty commitment).
        assert!(matches!(
            check(&m.token("backend")),
            Err(Error::NotIncluded(_))
        ));
    }

    #[test]
    fn without_freshness_nothing_changes_but_a_proof_given_is_checked() {
        let mut m = mint();
        m.terms.nonce_period = 0;
        // No proof, no commitment: as before.
        check(&m.token("backend")).unwrap();
        let proof = leaves().prove(0).unwrap();
        refused(&m, &proof, "n-1").unwrap();
        let mut bad = proof.clone();
        bad.path[0][5] ^= 0x80;
        assert!(matches!(
            refused(&m, &bad, "n-1"),
            Err(Error::NotIncluded(_))
        ));
    }

    #[test]
    fn verify_fresh_accepts_the_ring_and_nothing_else() {
        let m = mint();
        let t = good(&m);
        let v = verifier("backend");
        // The authority answered with our previous nonce.
        let got = v.verify_fresh(&t, &["n-new", "n-1"], at(NOW)).unwrap();
        assert_eq!(got.nonce.as_deref(), Some("n-1"));
        assert_eq!(
            v.verify_fresh(&t, &["n-new", "n-older"], at(NOW)),
            Err(Error::NonceMismatch)
        );
        assert_eq!(v.verify_fresh(&t, &[], at(NOW)), Err(Error::NonceMismatch));
        // A token with no nonce at all matches no ring.
        let mut plain = Mint::new();
        plain.terms.nonce_period = 0;
        let mut c = plain.claims("backend");
        c.nonce = None;
        assert_eq!(
            v.verify_fresh(&plain.sign(&c), &["n0nce"], at(NOW)),
            Err(Error::NonceMismatch)
        );
    }

    /// Issue 15 says freshness and the seats in a certificate hold
    /// "whatever the authority does", but the verifier takes any license
    /// the vendor signed for the dongle. A rogue authority that kept the
    /// license's previous version (same id, sequence 1, no nonce period,
    /// more seats: what the customer ran before the vendor turned freshness
    /// on, still within its dates) serves tokens under it with a
    /// certificate committing to no one. The consumer that has been
    /// verifying sequence 2 takes them, echoing its fresh nonce: pre-signed
    /// certificates work again, for as long as their windows, and seats
    /// beyond the current license's.
    /// A consumer started afresh has seen no newer version: the vendor pins
    /// freshness instead, and a license without it is refused.
    #[test]
    fn a_consumer_that_requires_freshness_refuses_a_license_without_it() {
        let mut m = mint();
        m.terms.nonce_period = 0;
        let v = Verifier::new(
            testkeys::vendor().public(),
            Expectations::new("backend").require_freshness(),
        );
        let mut c = m.claims("backend");
        c.ins = Some("b-1".into());
        c.nonce = Some("n-1".into());
        let got = v.verify_at(&m.sign(&c), Some("n-1"), at(NOW));
        assert!(matches!(got, Err(Error::NotIncluded(_))), "{got:?}");
    }

    #[test]
    fn a_superseded_license_without_a_nonce_period_does_not_switch_freshness_off() {
        let mut m = mint();
        m.terms.sequence = 2;
        let v = verifier("backend");
        v.verify_fresh(&good(&m), &["n-1"], at(NOW)).unwrap();
        // The superseded version, still signed by the vendor and in its dates.
        m.terms.sequence = 1;
        m.terms.nonce_period = 0;
        m.terms.seats = BTreeMap::from([("backend".into(), 50)]);
        let mut c = m.claims("backend");
        c.ins = Some("b-1".into());
        c.nonce = Some("n-fresh".into());
        let old = m.sign(&c);
        let got = v.verify_fresh(&old, &["n-fresh", "n-1"], at(NOW));
        assert!(
            got.is_err(),
            "a token under the superseded license without freshness was accepted: {got:?}"
        );
    }
}

/// Grace (issue 17): a token issued after the license's `not_after`, in its
/// vendor-signed grace, carries the grace end and verifies (reporting it);
/// a consumer that refuses grace refuses it as an expired license; after
/// the grace, every consumer refuses; a `grace` claim that is not the
/// license's grace end is malformed, and a license without grace stops at
/// its `not_after`.
#[test]
fn tokens_in_grace_verify_unless_grace_is_refused() {
    let mut m = Mint::new();
    // The license ended 100 s ago; its grace lasts 600 s.
    m.terms.not_after = at(NOW - 100);
    m.terms.grace = 600;
    let end = at(NOW + 500);
    let mut c = m.claims("backend");
    c.grace = Some(end);
    let token = m.sign(&c);
    let v = verifier("backend")
        .verify_at(&token, None, at(NOW))
        .unwrap();
    assert_eq!(v.grace, Some(end));

    let strict = Verifier::new(
        testkeys::vendor().public(),
        Expectations::new("backend").refuse_grace(),
    );
    let refused = strict.verify_at(&token, None, at(NOW)).unwrap_err();
    assert!(
        matches!(refused, Error::Expired(what) if what.contains("grace")),
        "{refused}"
    );
    // Without the claim too: the license is past its end for this consumer.
    let mut plain = m.claims("backend");
    plain.grace = None;
    assert!(matches!(
        strict.verify_at(&m.sign(&plain), None, at(NOW)),
        Err(Error::Expired(_))
    ));

    // After the grace (and the leeway), refused by everyone.
    m.cert_window = (at(NOW + 400), at(NOW + 700));
    let mut late = m.claims("backend");
    (late.iat, late.nbf, late.exp, late.grace) =
        (at(NOW + 490), at(NOW + 490), at(NOW + 500), Some(end));
    let late = m.sign(&late);
    verifier("backend")
        .verify_at(&late, None, at(NOW + 495))
        .unwrap();
    assert!(matches!(
        verifier("backend").verify_at(&late, None, at(NOW + 506)),
        Err(Error::Expired(_))
    ));

    // A grace claim that is not the license's grace end.
    let mut m = Mint::new();
    m.terms.not_after = at(NOW - 100);
    m.terms.grace = 600;
    let mut wrong = m.claims("backend");
    wrong.grace = Some(at(NOW + 9_999));
    assert!(matches!(check(&m.sign(&wrong)), Err(Error::Malformed(_))));

    // No grace: stops at not_after (plus leeway), and a claim is malformed.
    let mut m = Mint::new();
    m.terms.not_after = at(NOW - 100);
    assert!(matches!(check(&m.token("backend")), Err(Error::Expired(_))));
    let mut claimed = m.claims("backend");
    claimed.grace = Some(at(NOW - 100));
    assert!(matches!(check(&m.sign(&claimed)), Err(Error::Malformed(_))));
}

/// Issue 16, FIDO2 dongles: tokens whose certificate is a FIDO2 assertion
/// (Ed25519 and ES256) verify under a license naming the credential, from
/// the cache too; every check of the assertion refuses with its own reason,
/// and a certificate of one kind never passes under a license of the other.
mod fido2 {
    use super::*;
    use tether_keys::DongleIdentity;
    use tether_keys::fido2::testsigner::{Knobs, TestAuthenticator};
    use tether_keys::fido2::{FLAG_UP, FLAG_UV, Fido2Algorithm};
    use tether_keys::merkle::{Leaf, LeafSet};

    fn authenticators() -> [TestAuthenticator; 2] {
        [
            TestAuthenticator::new(Fido2Algorithm::Ed25519, [0x41; 32]),
            TestAuthenticator::new(Fido2Algorithm::Es256, [0x42; 32]),
        ]
    }

    /// A mint whose license names `auth`'s credential (freshness on, as
    /// FIDO2 licenses must have it).
    fn mint(auth: &TestAuthenticator) -> Mint {
        let mut m = Mint::new();
        let cred = auth.credential();
        m.serial = cred.serial();
        m.terms.dongle_serial = cred.serial();
        m.terms.dongle = DongleIdentity::Fido2(cred);
        m.terms.nonce_period = 300;
        m
    }

    /// The token of backend `b-1` under a certificate `auth` signs with `knobs`.
    fn token(m: &Mint, auth: &mut TestAuthenticator, knobs: &Knobs) -> String {
        let set = LeafSet::new([Leaf::new("backend", "b-1", "n-1").unwrap()]);
        let mut req = DelegationRequest::new(
            [9; 32],
            m.session.public(),
            m.cert_window.0,
            m.cert_window.1,
        );
        req.commitment = set.commitment().unwrap();
        let cert = auth.certify(req, knobs).unwrap();
        let mut c = m.claims("backend");
        c.dcert = URL_SAFE_NO_PAD.encode(cert.encoded());
        c.ins = Some("b-1".into());
        c.nonce = Some("n-1".into());
        c.prf = Some(set.prove(0).unwrap().to_claim());
        m.sign(&c)
    }

    #[test]
    fn fido2_chains_of_both_algorithms_verify_and_cache() {
        for mut auth in authenticators() {
            let m = mint(&auth);
            let t = token(&m, &mut auth, &Knobs::default());
            let v = verifier("backend");
            let got = v.verify_at(&t, Some("n-1"), at(NOW)).unwrap();
            assert_eq!(got.claims.iss, format!("tether:{}", m.serial));
            // Again, from the cache, and a second token under the same certificate path.
            v.verify_at(&t, Some("n-1"), at(NOW)).unwrap();
            assert_eq!(
                v.verify_at(&t, Some("other"), at(NOW)),
                Err(Error::NonceMismatch)
            );
        }
    }

    #[test]
    fn each_assertion_fault_is_refused_with_its_reason() {
        let cases: [(Knobs, &str); 4] = [
            (
                Knobs {
                    flags: FLAG_UP,
                    ..Knobs::default()
                },
                "UP flag",
            ),
            (
                Knobs {
                    flags: FLAG_UV,
                    ..Knobs::default()
                },
                "UV flag",
            ),
            (
                Knobs {
                    rp_id: Some("evil.example".into()),
                    ..Knobs::default()
                },
                "another rpId",
            ),
            (
                Knobs {
                    client_data_hash: Some([7; 32]),
                    ..Knobs::default()
                },
                "not signed by the licensed dongle",
            ),
        ];
        for mut auth in authenticators() {
            let m = mint(&auth);
            for (knobs, reason) in &cases {
                let err = check(&token(&m, &mut auth, knobs)).unwrap_err();
                assert!(
                    matches!(&err, Error::UntrustedChain(r) if r.contains(reason)),
                    "{reason}: {err}"
                );
            }
        }
        let mut es = TestAuthenticator::new(Fido2Algorithm::Es256, [0x42; 32]);
        let m = mint(&es);
        let high_s = Knobs {
            high_s: true,
            ..Knobs::default()
        };
        let err = check(&token(&m, &mut es, &high_s)).unwrap_err();
        assert!(
            matches!(&err, Error::UntrustedChain(r) if r.contains("high S")),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_of_one_kind_never_passes_under_the_other() {
        let [mut auth, _] = authenticators();
        // A FIDO2 certificate under a native license of the same serial.
        let fido = mint(&auth);
        let mut native_license = fido.terms.clone();
        native_license.dongle = testkeys::dongle().public().into();
        native_license.nonce_period = 300;
        let mut m = mint(&auth);
        m.terms = native_license;
        let err = check(&token(&m, &mut auth, &Knobs::default())).unwrap_err();
        assert!(
            matches!(&err, Error::UntrustedChain(r) if r.contains("another kind of dongle")),
            "{err}"
        );
        // A native certificate (the dongle's own key) under a FIDO2 license.
        let mut c = fido.claims("backend");
        c.prf = None;
        c.nonce = None;
        let err = check(&fido.sign(&c)).unwrap_err();
        assert!(
            matches!(&err, Error::UntrustedChain(r) if r.contains("another kind of dongle")),
            "{err}"
        );
    }
}
