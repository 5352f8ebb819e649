//! `tether inspect` and `tether verify` end to end, as an operator uses
//! them: instants shown as RFC 3339 UTC with the time left, durations with
//! units, numbers kept in `--json`; a token taken apart into header, claims,
//! license and certificate, each marked verified or not.
//!
//! Tokens are minted here with the real key files `tether keygen` wrote and
//! the license `tether license issue` signed, exactly as tetherd mints them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::delegation::fresh_nonce;
use tether_keys::{
    Certificate, DelegationRequest, Dongle, SecretKey, Session, TokenClaims, TokenSigner, keyfile,
};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "expected success\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    /// Vendor key, dongle TD-INSPECT-1, and a license valid 30 days from an
    /// hour ago, with a 5-minute token cap.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        ok(&tether(&[
            "keygen",
            "vendor",
            "--out",
            s(&root.join("vendor")),
        ]));
        ok(&tether(&[
            "keygen",
            "dongle",
            "--out",
            s(&root.join("dongle")),
            "--serial",
            "TD-INSPECT-1",
        ]));
        ok(&tether(&[
            "license",
            "issue",
            "--vendor-key",
            s(&root.join("vendor/vendor.key")),
            "--dongle-pub",
            s(&root.join("dongle/dongle.pub")),
            "--customer",
            "ACME Corp",
            "--services",
            "backend",
            "--valid-for",
            "30d",
            "--not-before",
            &(tether_keys::UnixTime::now().secs() - 3600).to_string(),
            "--max-ttl",
            "5m",
            "--out",
            s(&root.join("license.tether")),
        ]));
        Site { _dir: dir, root }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    /// A token as tetherd mints it, valid from `nbf` for `ttl` seconds.
    fn token(&self, nbf: u64, ttl: u64) -> String {
        let at = tether_keys::UnixTime::from_secs;
        let license = keyfile::read_license(&self.p("license.tether")).unwrap();
        let (dongle, _) = keyfile::read_secret_key::<Dongle>(&self.p("dongle/dongle.key")).unwrap();
        let session = SecretKey::<Session>::generate();
        let request =
            DelegationRequest::new(fresh_nonce(), session.public(), at(nbf - 30), at(nbf + 590));
        let cert = Certificate::sign(request, "TD-INSPECT-1", 7, &dongle).unwrap();
        let claims = TokenClaims {
            iss: "tether:TD-INSPECT-1".into(),
            sub: "backend".into(),
            aud: "backend".into(),
            iat: at(nbf),
            nbf: at(nbf),
            exp: at(nbf + ttl),
            jti: "jti-inspect-test".into(),
            lic: URL_SAFE_NO_PAD.encode(license.encoded()),
            dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
            nonce: None,
            ins: None,
            prf: None,
            grace: None,
        };
        TokenSigner::new(session).unwrap().sign(&claims).unwrap()
    }
}

/// "2026-12-29T18:53:12Z, in 30 days": a date, a time, Z, and the distance
/// (`tail`, its start: the seconds depend on how fast the test runs).
fn has_rfc3339_with(text: &str, key: &str, tail: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with(key)
            && l.contains("T")
            && l.contains("Z, ")
            && l.contains(tail)
            && l.split_whitespace().nth(1).is_some_and(|d| {
                d.len() == 21 && d.as_bytes()[4] == b'-' && d.as_bytes()[10] == b'T'
            })
    })
}

#[test]
fn license_times_and_durations_are_readable_and_json_keeps_numbers() {
    let site = Site::new();
    let lic = site.p("license.tether");
    let human = ok(&tether(&["inspect", s(&lic)]));
    assert!(
        has_rfc3339_with(&human, "not_after", "in 29 days"),
        "{human}"
    );
    assert!(
        has_rfc3339_with(&human, "not_before", "1 hour ago"),
        "{human}"
    );
    assert!(human.contains("max_token_ttl  5 minutes"), "{human}");
    assert!(human.contains("not verified (pass --vendor-pub"), "{human}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&tether(&["inspect", "--json", s(&lic)]))).unwrap();
    assert!(json["not_after"].is_u64(), "{json}");
    assert_eq!(json["max_token_ttl"], 300);

    let verified = ok(&tether(&[
        "inspect",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&lic),
    ]));
    assert!(verified.contains("signature      verified"), "{verified}");
}

#[test]
fn a_token_is_shown_as_header_claims_license_and_certificate() {
    let site = Site::new();
    let now = tether_keys::UnixTime::now().secs();
    let token = site.token(now, 290);
    let vendor_pub = site.p("vendor/vendor.pub");

    // As an argument, without the vendor key: decoded, nothing claimed verified.
    let plain = ok(&tether(&["inspect", &token]));
    for part in [
        "header:",
        "claims:",
        "license:",
        "certificate:",
        "alg",
        "EdDSA",
    ] {
        assert!(plain.contains(part), "{part} missing:\n{plain}");
    }
    assert!(has_rfc3339_with(&plain, "exp", "in 4 minutes"), "{plain}");
    assert!(
        plain.contains("lifetime       10 minutes 20 seconds"),
        "{plain}"
    );
    assert!(!plain.contains("  verified"), "{plain}");
    assert_eq!(
        plain.matches("not verified (pass --vendor-pub").count(),
        3,
        "{plain}"
    );
    assert!(!plain.contains(&token), "the token itself is not echoed");

    // In a file, as the JSON answer of GET /token, with the vendor key.
    let file = site.p("answer.json");
    fs::write(&file, serde_json::json!({ "token": token }).to_string()).unwrap();
    let checked = ok(&tether(&[
        "inspect",
        "--vendor-pub",
        s(&vendor_pub),
        s(&file),
    ]));
    assert_eq!(
        checked.matches("signature      verified").count(),
        3,
        "{checked}"
    );
    assert!(checked.contains("valid now for backend"), "{checked}");

    let json: serde_json::Value = serde_json::from_str(&ok(&tether(&[
        "inspect",
        "--json",
        "--vendor-pub",
        s(&vendor_pub),
        &token,
    ])))
    .unwrap();
    assert_eq!(json["kind"], "token");
    assert_eq!(json["header"]["alg"], "EdDSA");
    assert_eq!(json["claims"]["exp"], now + 290);
    assert_eq!(
        json["claims"]["lic"],
        serde_json::Value::Null,
        "shown decoded"
    );
    assert_eq!(json["license"]["customer"], "ACME Corp");
    assert_eq!(json["certificate"]["counter"], 7);
    assert_eq!(json["certificate"]["version"], 2);
    assert_eq!(json["certificate"]["commitment"], "none");
    assert_eq!(json["certificate"]["ledger"], "none");
    assert_eq!(json["certificate"]["signature"], "verified");
    assert_eq!(json["signature"], "verified");

    // Another vendor: the license is invalid and nothing above it is verified.
    ok(&tether(&["keygen", "vendor", "--out", s(&site.p("other"))]));
    let other = ok(&tether(&[
        "inspect",
        "--vendor-pub",
        s(&site.p("other/vendor.pub")),
        &token,
    ]));
    assert!(other.contains("INVALID"), "{other}");
    assert!(other.contains("refused"), "{other}");
    assert!(!other.contains("signature      verified"), "{other}");
}

#[test]
fn an_expired_token_says_how_long_ago() {
    let site = Site::new();
    let now = tether_keys::UnixTime::now().secs();
    let token = site.token(now - 4 * 3600, 300);
    let out = ok(&tether(&[
        "inspect",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        &token,
    ]));
    assert!(
        has_rfc3339_with(&out, "exp", "3 hours 55 minutes ago"),
        "{out}"
    );
    assert!(out.contains("refused"), "{out}");
}

#[test]
fn verify_prints_readable_times() {
    let site = Site::new();
    let token = site.token(tether_keys::UnixTime::now().secs(), 290);
    let out = ok(&tether(&[
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        "--service",
        "backend",
        &token,
    ]));
    assert!(out.starts_with("valid token"), "{out}");
    assert!(out.contains("Z, in 4 minutes"), "{out}");
    assert!(out.contains(", certificate until 20"), "{out}");
    assert!(out.contains("Z, in 9 minutes"), "{out}");
}

#[test]
fn license_verify_says_until_when() {
    let site = Site::new();
    let out = ok(&tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&site.p("license.tether")),
    ]));
    assert!(out.contains("valid license"), "{out}");
    assert!(
        out.contains(", until 20") && out.contains("Z, in 29 days"),
        "{out}"
    );
}

#[test]
fn malformed_tokens_are_refused_with_one_line() {
    let site = Site::new();
    fails_with(&tether(&["inspect", "abc.def.ghi"]), "not a token");
    let file = site.p("bad.jwt");
    fs::write(&file, "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln").unwrap();
    fails_with(
        &tether(&["inspect", s(&file)]),
        "the claims part is not JSON",
    );
    let big = site.p("big");
    fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
    fails_with(&tether(&["inspect", s(&big)]), "too large");
}
