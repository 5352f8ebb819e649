//! A license's whole life at an air-gapped site (issue 17), over the real
//! `tetherd`, emulator and `tether` processes: a later version installed
//! while tokens are issued serves the next token with no refusal in
//! between; an older or the same version is refused and the installed one
//! keeps serving; a restart keeps the update and refuses the old file put
//! back; a revocation answers 403 `license_revoked`, after a restart too.
//! Expiry: tokens in a license's vendor-signed grace carry the `grace`
//! claim and verify, then 403 `license_expired`; a license without grace
//! stops at its `not_after`; `--valid-until` is the end of the day in UTC;
//! `/metrics` shows the end, and `expiry` events come once per threshold
//! and license sequence, restarts included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tether_keys::keyfile::{self, Overwrite};
use tether_keys::{License, LicenseTerms, Revocation, UnixTime, Vendor};
use tether_tests::{Proc, Site, bin, free_port, http, wait_for_token};

const T: Duration = Duration::from_secs(10);

/// A version of the site's license at `sequence`, `edit`ed, signed by the
/// vendor and written to `name`.
fn version(
    site: &Site,
    sequence: u64,
    name: &str,
    edit: impl FnOnce(&mut LicenseTerms),
) -> PathBuf {
    let (vendor, _) = keyfile::read_secret_key::<Vendor>(&site.vendor_key).unwrap();
    let mut terms = keyfile::read_license(&site.license)
        .unwrap()
        .terms()
        .clone();
    terms.sequence = sequence;
    terms.issued_at = UnixTime::now();
    edit(&mut terms);
    let path = site.path(name);
    let license = terms.sign(&vendor).unwrap();
    keyfile::write_file(
        &path,
        keyfile::license_pem(&license).as_bytes(),
        0o644,
        Overwrite::Never,
    )
    .unwrap();
    path
}

fn install(site: &Site, file: &Path) -> Output {
    Command::new(bin("tether"))
        .args(["license", "install", "--timeout", "10s", "--state-dir"])
        .arg(site.path("state"))
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg(file)
        .env_remove("TETHER_STATE_DIR")
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The license inside a `/token` answer's token.
fn license_of(body: &serde_json::Value) -> License {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = body["token"].as_str().unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    License::decode(&b64.decode(claims["lic"].as_str().unwrap()).unwrap()).unwrap()
}

fn status(url: &str) -> serde_json::Value {
    http::get(url, "/status", None).unwrap().json().unwrap()
}

fn stop(d: &mut Proc) {
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
}

#[test]
fn a_license_is_updated_refused_kept_and_revoked() {
    let mut site = Site::new();
    let v1 = site.license.clone();
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    let secret = site.secret("backend").to_string();
    wait_for_token(&url, &secret, T);
    assert!(site.path("state/tetherd.pid").exists());

    // A client asking all along: not one refusal across the update.
    let stop_loop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (url, secret) = (url.clone(), secret.clone());
        let (stop_loop, ok, refused) = (stop_loop.clone(), ok.clone(), refused.clone());
        std::thread::spawn(move || {
            while !stop_loop.load(Ordering::Relaxed) {
                match http::get(&url, "/token", Some(&secret)) {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = license_of(&wait_for_token(&url, &secret, T));
    assert_eq!(before.terms().sequence, 1);
    let mut events = http::Events::open(&url).unwrap();
    let v2 = version(&site, 2, "v2.tether", |t| t.features.push("record".into()));
    let out = install(&site, &v2);
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    assert!(
        text(&out.stdout).contains("accepted"),
        "{}",
        text(&out.stdout)
    );
    let next = wait_for_token(&url, &secret, T);
    let served = license_of(&next);
    assert_eq!(served.terms().sequence, 2);
    let announced = events.next_of("license", T).unwrap();
    assert_eq!(announced["accepted"], true, "{announced}");
    assert_eq!(announced["sequence"], 2, "{announced}");
    drop(events);
    assert!(served.has_feature("record"));
    std::thread::sleep(Duration::from_millis(300));
    stop_loop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "refusals during the update"
    );
    let st = status(&url);
    assert_eq!(st["license"]["sequence"], 2);
    let left = st["license"]["expires_in_secs"].as_u64().unwrap();
    assert!((80_000..=86_400).contains(&left), "{left}");
    assert_eq!(st["license"]["revoked"], false);
    let verdict: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(site.path("state/license-verdict.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(verdict["accepted"], true);
    assert_eq!(verdict["sequence"], 2);

    // Older and same versions are refused, with the reason; v2 keeps serving.
    for file in [&v1, &v2] {
        let out = install(&site, file);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("refused") && err.contains("not above"),
            "{err}"
        );
    }
    assert_eq!(
        license_of(&wait_for_token(&url, &secret, T))
            .terms()
            .sequence,
        2
    );
    assert!(d.log().contains("license update refused"), "{}", d.log());

    // A restart keeps the update, though --license still names v1.
    stop(&mut d);
    assert!(!site.path("state/tetherd.pid").exists());
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    assert_eq!(status(&url)["license"]["sequence"], 2);
    assert_eq!(
        license_of(&wait_for_token(&url, &secret, T))
            .terms()
            .sequence,
        2
    );
    stop(&mut d);

    // The old file put back, without the kept one: refused at start.
    std::fs::remove_file(site.path("state/license.tether")).unwrap();
    let mut old = Proc::spawn(site.tetherd_command(&[], &port, &[]), "tetherd");
    assert_eq!(old.wait_exit(T), Some(1));
    let log = old.log();
    assert!(
        log.contains("below sequence 2") && log.contains("cannot be put back"),
        "{log}"
    );
    drop(old);

    // With v2 named: serves; then a revocation stops it, after a restart too.
    site.license = v2.clone();
    let (d, url) = site.start_tetherd_on(&port, &[]);
    wait_for_token(&url, &secret, T);
    let (vendor, _) = keyfile::read_secret_key::<Vendor>(&site.vendor_key).unwrap();
    let id = keyfile::read_license(&v2).unwrap().terms().id;
    let rev = Revocation::sign(id, 2, UnixTime::now(), &vendor);
    let rev_path = site.path("revoke.tether");
    std::fs::write(&rev_path, keyfile::revocation_pem(&rev)).unwrap();
    let out = install(&site, &rev_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let check_revoked = |url: &str| {
        let r = http::get(url, "/token", Some(&secret)).unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("license_revoked"), "{}", r.body);
        assert_eq!(status(url)["license"]["revoked"], true);
    };
    check_revoked(&url);
    let mut d = d;
    stop(&mut d);
    let (_d, url) = site.start_tetherd_on(&port, &[]);
    std::thread::sleep(Duration::from_millis(500));
    check_revoked(&url);
}

/// In its last 14 days a license is warned about in the log (once a day),
/// and `/status` says how long it has left.
#[test]
fn a_license_ending_soon_is_warned_about() {
    let site = Site::with_license(|t| {
        t.not_after = UnixTime::now() + Duration::from_secs(10 * 86_400);
    });
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let left = status(&url)["license"]["expires_in_secs"].as_u64().unwrap();
    assert!((10 * 86_400 - 60..=10 * 86_400).contains(&left), "{left}");
    tether_tests::wait_until(T, || d.log().contains("the license ends in"));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        d.log().matches("the license ends in").count(),
        1,
        "{}",
        d.log()
    );
}

/// The claims of a `/token` answer's token.
fn claims_of(body: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let token = body["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn verifier(site: &Site, expect: tether_verifier::Expectations) -> tether_verifier::Verifier {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&site.vendor_pub).unwrap();
    tether_verifier::Verifier::new(vendor, expect)
}

/// Issue 17, grace: after `not_after`, tokens still come, carrying the
/// grace end in their `grace` claim; they verify (a consumer that refuses
/// grace refuses them); `/status` and the log say so, with UTC times;
/// after the grace, 403 `license_expired`.
#[test]
fn tokens_in_grace_carry_the_claim_and_verify_then_403_after_it() {
    let now = UnixTime::now();
    let not_after = now + Duration::from_secs(5);
    let site = Site::with_license(|t| {
        t.not_after = not_after;
        t.grace = 4;
    });
    let grace_until = not_after + Duration::from_secs(4);
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend").to_string();
    let before = wait_for_token(&url, &secret, T);
    assert!(claims_of(&before).get("grace").is_none(), "{before}");
    assert_eq!(status(&url)["license"]["window"], "valid");

    // Into the grace: the next tokens carry it.
    let mut in_grace = None;
    tether_tests::wait_until(T, || {
        let r = http::get(&url, "/token", Some(&secret)).unwrap();
        assert_eq!(r.status, 200, "refused before the grace ended: {}", r.body);
        let body = r.json().unwrap();
        let found = claims_of(&body).get("grace").is_some();
        in_grace = Some(body);
        found
    });
    let token = in_grace.unwrap();
    let claims = claims_of(&token);
    assert_eq!(claims["grace"], grace_until.secs(), "{claims}");
    assert!(claims["exp"].as_u64().unwrap() <= grace_until.secs());
    let lenient = verifier(&site, tether_verifier::Expectations::new("backend"));
    let v = lenient.verify(token["token"].as_str().unwrap()).unwrap();
    assert_eq!(v.grace, Some(grace_until));
    let strict = verifier(
        &site,
        tether_verifier::Expectations::new("backend").refuse_grace(),
    );
    let refused = strict.verify(token["token"].as_str().unwrap()).unwrap_err();
    assert!(
        matches!(refused, tether_verifier::Error::Expired(_)),
        "{refused}"
    );
    let st = status(&url);
    assert_eq!(st["license"]["window"], "grace", "{st}");
    assert_eq!(st["license"]["grace_until"], grace_until.secs());
    assert!(
        st["license"]["grace_until_text"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{st}"
    );
    tether_tests::wait_until(T, || d.log().contains("in its grace period until"));

    // After the grace: 403 license_expired, the grace named.
    tether_tests::wait_until(T, || UnixTime::now() >= grace_until);
    let r = http::get(&url, "/token", Some(&secret)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let body = r.json().unwrap();
    assert_eq!(body["code"], "license_expired", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("grace ended"),
        "{body}"
    );
    assert_eq!(status(&url)["license"]["window"], "expired");
}

/// A license without grace stops issuing at its `not_after`: the last
/// token lives no later, and then 403 `license_expired`.
#[test]
fn a_license_without_grace_stops_at_not_after() {
    let not_after = UnixTime::now() + Duration::from_secs(4);
    let site = Site::with_license(|t| t.not_after = not_after);
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend").to_string();
    let last = wait_for_token(&url, &secret, T);
    let claims = claims_of(&last);
    assert!(claims.get("grace").is_none());
    assert!(
        claims["exp"].as_u64().unwrap() <= not_after.secs(),
        "{claims}"
    );
    tether_tests::wait_until(T, || UnixTime::now() >= not_after);
    let r = http::get(&url, "/token", Some(&secret)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let body = r.json().unwrap();
    assert_eq!(body["code"], "license_expired", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no grace"),
        "{body}"
    );
}

/// `--valid-until 2027-12-31` ends the license at 2027-12-31T23:59:59Z
/// (the end of that day in UTC, as `--help` says), `--grace 7d` adds
/// 604800 s, and both instants are printed in UTC.
#[test]
fn valid_until_is_the_end_of_that_day_in_utc() {
    let site = Site::new();
    let dongle_pub = site.path("dongle.pub");
    let (dongle, _) =
        keyfile::read_secret_key::<tether_keys::Dongle>(&site.identity.join("dongle.key")).unwrap();
    let serial = [(keyfile::SERIAL_HEADER, site.serial.as_str())];
    keyfile::write_public_key(&dongle_pub, &dongle.public(), &serial, Overwrite::Never).unwrap();
    let out = site.path("dated.tether");
    let issued = Command::new(bin("tether"))
        .args(["license", "issue", "--vendor-key"])
        .arg(&site.vendor_key)
        .arg("--dongle-pub")
        .arg(&dongle_pub)
        .args([
            "--customer",
            "Dated",
            "--services",
            "backend",
            "--valid-until",
            "2027-12-31",
            "--grace",
            "7d",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let stdout = text(&issued.stdout);
    assert!(stdout.contains("2027-12-31T23:59:59Z"), "{stdout}");
    assert!(stdout.contains("2028-01-07T23:59:59Z"), "{stdout}");
    let license = keyfile::read_license(&out).unwrap();
    assert_eq!(license.terms().not_after.secs(), 1_830_297_599);
    assert_eq!(license.terms().grace, 7 * 86_400);
    let help = Command::new(bin("tether"))
        .args(["license", "issue", "--help"])
        .output()
        .unwrap();
    assert!(
        text(&help.stdout).contains("23:59:59Z"),
        "{}",
        text(&help.stdout)
    );
    // Not a date: refused, saying what is expected.
    let bad = Command::new(bin("tether"))
        .args(["license", "issue", "--vendor-key"])
        .arg(&site.vendor_key)
        .arg("--dongle-pub")
        .arg(&dongle_pub)
        .args(["--customer", "X", "--services", "backend"])
        .args(["--valid-until", "31/12/2027", "--out"])
        .arg(site.path("bad.tether"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("2027-12-31"),
        "{}",
        text(&bad.stderr)
    );
}

/// `/metrics` carries the license's end and grace end; an `expiry` event
/// comes at each threshold crossed, then at the grace and at the end, each
/// once, in order.
#[test]
fn expiry_metric_and_events_at_each_threshold_then_grace_then_end() {
    let not_after = UnixTime::now() + Duration::from_secs(11);
    let site = Site::with_license(|t| {
        t.not_after = not_after;
        t.grace = 3;
    });
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&["--expiry-warnings", "7s,4s"]);
    let mut events = http::Events::open(&url).unwrap();
    let metrics = http::get(&url, "/metrics", None).unwrap().body;
    assert!(
        metrics.contains(&format!(
            "tether_license_expiry_timestamp_seconds {}\n",
            not_after.secs()
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "tether_license_grace_end_timestamp_seconds {}\n",
        not_after.secs() + 3
    )));
    let mut seen = Vec::new();
    let wait = Duration::from_secs(16);
    while seen.last().map(String::as_str) != Some("expired") {
        let ev = events.next_of("expiry", wait).unwrap();
        let label = match ev["kind"].as_str().unwrap() {
            "warning" => format!("warning {}", ev["threshold_secs"]),
            other => other.to_string(),
        };
        assert!(ev["message"].as_str().unwrap().contains('Z'), "{ev}");
        seen.push(label);
    }
    assert_eq!(seen, ["warning 7", "warning 4", "grace", "expired"]);
}

/// The 30-day warning (default thresholds) comes once per license
/// sequence: not again after a restart, and again for an update.
#[test]
fn an_expiry_warning_is_not_repeated_after_a_restart_but_is_for_a_new_sequence() {
    let site = Site::with_license(|t| {
        t.not_after = UnixTime::now() + Duration::from_secs(20 * 86_400);
    });
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    let mut events = http::Events::open(&url).unwrap();
    let ev = events.next_of("expiry", T).unwrap();
    assert_eq!(ev["kind"], "warning");
    assert_eq!(ev["threshold_secs"], 30 * 86_400);
    assert_eq!(ev["sequence"], 1);
    tether_tests::wait_until(T, || d.log().contains("license_expiry"));
    assert_eq!(d.log().matches("license_expiry").count(), 1, "{}", d.log());
    drop(events);
    stop(&mut d);

    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    wait_for_token(&url, site.secret("backend"), T);
    let mut events = http::Events::open(&url).unwrap();
    let again = events.next_of("expiry", Duration::from_secs(2));
    assert!(again.is_err(), "repeated after a restart: {again:?}");
    assert!(!d.log().contains("license_expiry"), "{}", d.log());

    // An update (sequence 2) is a new license to warn about.
    let v2 = version(&site, 2, "v2.tether", |_| {});
    let out = install(&site, &v2);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ev = events.next_of("expiry", T).unwrap();
    assert_eq!(ev["sequence"], 2, "{ev}");
    assert_eq!(ev["threshold_secs"], 30 * 86_400);
    drop(events);
    stop(&mut d);
}

/// The reference services: by default a backend keeps working through the
/// license's grace (warning in its log), while one started with
/// `--refuse-grace` stops at the license's `not_after`.
#[test]
fn a_service_refusing_grace_stops_at_not_after_and_the_default_one_does_not() {
    let not_after = UnixTime::now() + Duration::from_secs(8);
    let site = Site::with_license(|t| {
        t.not_after = not_after;
        t.grace = 120;
    });
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let (lenient, lenient_url) = site.start_service("backend", &url, &[]);
    let (_strict, strict_url) = site.start_service("backend", &url, &["--refuse-grace"]);
    tether_tests::wait_until(T, || {
        tether_tests::works(&lenient_url) && tether_tests::works(&strict_url)
    });
    tether_tests::wait_until(Duration::from_secs(20), || {
        UnixTime::now() >= not_after && !tether_tests::works(&strict_url)
    });
    let stopped = UnixTime::now();
    assert!(
        stopped.secs() <= not_after.secs() + 5,
        "the strict service stopped {} s after not_after",
        stopped.secs() - not_after.secs()
    );
    // The default one keeps working, on tokens that carry the grace claim.
    for _ in 0..5 {
        assert!(tether_tests::works(&lenient_url), "{}", lenient.log());
        std::thread::sleep(Duration::from_millis(400));
    }
    tether_tests::wait_until(T, || lenient.log().contains("grace period"));
    assert!(!tether_tests::works(&strict_url));
}
