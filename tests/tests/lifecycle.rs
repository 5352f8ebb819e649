//! A license's whole life at an air-gapped site (issue 17), over the real
//! `tetherd`, emulator and `tether` processes: a later version installed
//! while tokens are issued serves the next token with no refusal in
//! between; an older or the same version is refused and the installed one
//! keeps serving; a restart keeps the update and refuses the old file put
//! back; a revocation answers 403 `license_revoked`, after a restart too.

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
