//! Revocation receipts and site request files (issue 17), over the real
//! `tetherd`, emulator and `tether` processes: a revocation installed while
//! the dongle is present gets a receipt that verifies at the vendor; a
//! receipt for another license, with another counter, or answering another
//! revocation is refused; a revocation by another vendor key is refused;
//! with the dongle unplugged at revoke, the revocation holds at once and
//! the receipt appears after the re-plug, across a restart of tetherd; a site request round-trips and a
//! tampered one is refused. `/status` shows each receipt (pending or signed,
//! file and counter) and the last site request; `/events` announces a
//! signed receipt (`event: receipt`); the same revocation installed again
//! keeps the signed receipt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tether_keys::keyfile::{self, Overwrite};
use tether_keys::{Revocation, SecretKey, UnixTime, Vendor};
use tether_tests::{Site, bin, http, wait_for_token, wait_until};

const T: Duration = Duration::from_secs(10);

fn tether(args: &[&str], files: &[&Path]) -> Output {
    Command::new(bin("tether"))
        .args(args)
        .args(files)
        .env_remove("TETHER_STATE_DIR")
        .env_remove("TETHER_VENDOR_PUB")
        .output()
        .unwrap()
}

/// A raw `GET /events` stream (the shared client reads no streams),
/// giving the data of the first event of `kind` within `timeout`.
struct Events(std::io::BufReader<std::net::TcpStream>);

impl Events {
    fn open(url: &str) -> Events {
        use std::io::{BufRead as _, Write as _};
        let host = url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        Events(r)
    }

    fn next(&mut self, kind: &str, timeout: Duration) -> serde_json::Value {
        use std::io::BufRead as _;
        self.0.get_ref().set_read_timeout(Some(timeout)).unwrap();
        let (mut line, mut current) = (String::new(), String::new());
        loop {
            line.clear();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "stream ended");
            if let Some(name) = line.trim_end().strip_prefix("event:") {
                current = name.trim().to_string();
            } else if let Some(data) = line.trim_end().strip_prefix("data:")
                && current == kind
            {
                return serde_json::from_str(data.trim()).unwrap();
            }
        }
    }
}

fn status(url: &str) -> serde_json::Value {
    http::get(url, "/status", None).unwrap().json().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn install(site: &Site, file: &Path) -> Output {
    tether(
        &["license", "install", "--timeout", "10s", "--state-dir"],
        &[
            &site.path("state"),
            Path::new("--vendor-pub"),
            &site.vendor_pub,
            file,
        ],
    )
}

/// A revocation of the site's license through `through`, signed by `vendor`.
fn revocation(site: &Site, through: u64, vendor: &SecretKey<Vendor>, name: &str) -> PathBuf {
    let id = keyfile::read_license(&site.license).unwrap().terms().id;
    let rev = Revocation::sign(id, through, UnixTime::now(), vendor);
    let path = site.path(name);
    std::fs::write(&path, keyfile::revocation_pem(&rev)).unwrap();
    path
}

fn vendor(site: &Site) -> SecretKey<Vendor> {
    keyfile::read_secret_key::<Vendor>(&site.vendor_key)
        .unwrap()
        .0
}

fn receipt_path(site: &Site) -> PathBuf {
    let id = keyfile::read_license(&site.license).unwrap().terms().id;
    site.path(&format!("state/receipts/{id}.receipt"))
}

/// `tether license receipt verify --json`: exit status and the JSON.
fn verify_receipt(
    site: &Site,
    license: &Path,
    receipt: &Path,
    extra: &[&Path],
) -> (bool, serde_json::Value) {
    let mut files: Vec<&Path> = vec![
        Path::new("--vendor-pub"),
        &site.vendor_pub,
        Path::new("--license"),
        license,
    ];
    files.extend_from_slice(extra);
    files.push(receipt);
    let out = tether(&["license", "receipt", "verify", "--json"], &files);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.success(), json)
}

#[test]
fn a_revocation_gets_a_receipt_the_vendor_verifies() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend").to_string();
    wait_for_token(&url, &secret, T);

    // Another vendor's revocation is refused, and no receipt is asked for.
    let foreign = revocation(&site, 1, &SecretKey::generate(), "foreign.tether");
    let out = install(&site, &foreign);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("another vendor"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        http::get(&url, "/token", Some(&secret)).unwrap().status,
        200
    );

    assert_eq!(status(&url)["license"]["receipts"], serde_json::json!([]));
    let mut events = Events::open(&url);
    let rev = revocation(&site, 1, &vendor(&site), "revoke.tether");
    let out = install(&site, &rev);
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    assert!(
        text(&out.stdout).contains("receipt"),
        "{}",
        text(&out.stdout)
    );
    let r = http::get(&url, "/token", Some(&secret)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let receipt = receipt_path(&site);
    wait_until(T, || receipt.exists());
    // The log line follows the file.
    wait_until(T, || d.log().contains("signed the revocation receipt"));
    // `/events` announces it, `/status` shows it with its counter.
    let id = keyfile::read_license(&site.license)
        .unwrap()
        .terms()
        .id
        .to_string();
    let announced = events.next("receipt", T);
    assert_eq!(announced["license_id"], id.as_str(), "{announced}");
    assert_eq!(announced["file"], format!("receipts/{id}.receipt"));
    assert_eq!(announced["dongle_serial"], site.serial.as_str());
    assert_eq!(announced["license_sequence"], 1);
    let signed_counter = keyfile::read_receipt(&receipt).unwrap().counter;
    assert_eq!(
        announced["counter"].as_u64(),
        Some(u64::from(signed_counter))
    );
    let st = status(&url);
    let listed = st["license"]["receipts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{st}");
    assert_eq!(listed[0]["state"], "signed", "{st}");
    assert_eq!(listed[0]["license_id"], id.as_str());
    assert_eq!(listed[0]["file"], format!("receipts/{id}.receipt"));
    assert_eq!(listed[0]["counter"], announced["counter"]);
    assert_eq!(st["license"]["site_request"], serde_json::Value::Null);
    // The same revocation again: accepted, and the signed receipt is kept
    // as it is (no second one, no dongle signature spent).
    let first_bytes = std::fs::read(&receipt).unwrap();
    let out = install(&site, &rev);
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    assert!(
        text(&out.stdout).contains("already signed"),
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(std::fs::read(&receipt).unwrap(), first_bytes);
    let st = status(&url);
    assert_eq!(
        st["license"]["receipts"].as_array().unwrap().len(),
        1,
        "{st}"
    );
    assert_eq!(
        std::fs::read_dir(site.path("state/receipts"))
            .unwrap()
            .count(),
        1,
        "only the receipt in receipts/"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&receipt).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // At the vendor: it verifies, answers this revocation, names the dongle.
    let (ok, json) = verify_receipt(
        &site,
        &site.license,
        &receipt,
        &[Path::new("--revocation"), &rev],
    );
    assert!(ok, "{json}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["license_sequence"], 1);
    assert_eq!(json["revoked_through"], 1);
    assert_eq!(json["dongle_serial"], site.serial.as_str());
    assert_eq!(json["revocation_checked"], true);
    let counter = json["counter"].as_u64().unwrap();
    assert!(counter >= 2, "a certificate came first: {counter}");
    let human = tether(
        &["license", "receipt", "verify", "--vendor-pub"],
        &[
            &site.vendor_pub,
            Path::new("--license"),
            &site.license,
            &receipt,
        ],
    );
    assert!(human.status.success());
    assert!(
        text(&human.stdout).contains("valid receipt"),
        "{}",
        text(&human.stdout)
    );

    // `tether inspect` shows it, unverified.
    let shown = tether(&["inspect", "--json"], &[&receipt]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["kind"], "revocation-receipt");
    assert_eq!(shown["counter"].as_u64(), Some(counter));

    // Answering another revocation: refused.
    // (through 2: the same id, through and second would be the same bytes)
    let other_rev = revocation(&site, 2, &vendor(&site), "revoke-2.tether");
    let (ok, json) = verify_receipt(
        &site,
        &site.license,
        &receipt,
        &[Path::new("--revocation"), &other_rev],
    );
    assert!(!ok);
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("another revocation"),
        "{json}"
    );

    // For another license (same dongle, another id): refused.
    let other_license = site.path("other.tether");
    let mut terms = keyfile::read_license(&site.license)
        .unwrap()
        .terms()
        .clone();
    terms.id = tether_keys::LicenseId::generate();
    keyfile::write_file(
        &other_license,
        keyfile::license_pem(&terms.sign(&vendor(&site)).unwrap()).as_bytes(),
        0o644,
        Overwrite::Never,
    )
    .unwrap();
    let (ok, json) = verify_receipt(&site, &other_license, &receipt, &[]);
    assert!(!ok);
    assert!(
        json["reason"].as_str().unwrap().contains("for license"),
        "{json}"
    );

    // With another counter: the dongle's signature no longer holds.
    let original = keyfile::read_receipt(&receipt).unwrap();
    let mut bytes = original.encoded().to_vec();
    let at = bytes.len() - 64 - 4;
    bytes[at..at + 4].copy_from_slice(&(original.counter + 1).to_be_bytes());
    let forged = tether_keys::Receipt::decode(&bytes).unwrap();
    assert_eq!(forged.counter, original.counter + 1);
    let forged_path = site.path("forged.receipt");
    std::fs::write(&forged_path, keyfile::receipt_pem(&forged)).unwrap();
    let (ok, json) = verify_receipt(&site, &site.license, &forged_path, &[]);
    assert!(!ok);
    assert!(
        json["reason"].as_str().unwrap().contains("signature"),
        "{json}"
    );

    // A license under another vendor key is refused before the receipt is read.
    let foreign_license = site.path("foreign-license.tether");
    keyfile::write_file(
        &foreign_license,
        keyfile::license_pem(
            &keyfile::read_license(&site.license)
                .unwrap()
                .terms()
                .clone()
                .sign(&SecretKey::generate())
                .unwrap(),
        )
        .as_bytes(),
        0o644,
        Overwrite::Never,
    )
    .unwrap();
    let (ok, _) = verify_receipt(&site, &foreign_license, &receipt, &[]);
    assert!(!ok);
}

#[test]
fn with_the_dongle_unplugged_the_revocation_holds_and_the_receipt_follows_the_replug() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend").to_string();
    wait_for_token(&url, &secret, T);
    site.dongle(&["unplug"]);
    wait_until(T, || {
        http::get(&url, "/token", Some(&secret)).unwrap().status == 503
    });

    let rev = revocation(&site, 1, &vendor(&site), "revoke.tether");
    let out = install(&site, &rev);
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    let st: serde_json::Value = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert_eq!(st["license"]["revoked"], true);
    let id = keyfile::read_license(&site.license).unwrap().terms().id;
    let pending = site.path(&format!("state/receipts/{id}.pending"));
    assert!(pending.exists());
    let listed = &st["license"]["receipts"][0];
    assert_eq!(listed["state"], "pending", "{st}");
    assert_eq!(listed["file"], format!("receipts/{id}.pending"));
    assert_eq!(listed["counter"], serde_json::Value::Null);
    assert!(
        listed["message"].as_str().unwrap().contains("plugged in"),
        "{st}"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(!receipt_path(&site).exists());

    // The request outlives a restart of tetherd.
    let mut d = d;
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    assert!(pending.exists());
    let (d, url) = site.start_tetherd(&[]);
    site.dongle(&["plug"]);
    wait_until(T, || receipt_path(&site).exists());
    // The pending request goes once the receipt is written.
    wait_until(T, || !pending.exists());
    wait_until(T, || d.log().contains("signed the revocation receipt"));
    let r = http::get(&url, "/token", Some(&secret)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let (ok, json) = verify_receipt(
        &site,
        &site.license,
        &receipt_path(&site),
        &[Path::new("--revocation"), &rev],
    );
    assert!(ok, "{json}");
}

#[test]
fn a_site_request_round_trips_and_a_tampered_one_is_refused() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let out_path = site.path("request.tether");
    let out = tether(
        &["site", "request", "--timeout", "10s", "--state-dir"],
        &[&site.path("state"), Path::new("--out"), &out_path],
    );
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    assert!(
        text(&out.stdout).contains("send it to the vendor"),
        "{}",
        text(&out.stdout)
    );

    let verify = |file: &Path, license: bool| {
        let mut files: Vec<&Path> = vec![Path::new("--vendor-pub"), &site.vendor_pub];
        if license {
            files.push(Path::new("--license"));
            files.push(&site.license);
        }
        files.push(file);
        let out = tether(&["site", "request", "verify", "--json"], &files);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
        (out.status.success(), json)
    };
    let (ok, json) = verify(&out_path, true);
    assert!(ok, "{json}");
    // `/status` shows the last site request.
    let st = status(&url);
    let shown = &st["license"]["site_request"];
    assert_eq!(shown["state"], "signed", "{st}");
    assert_eq!(shown["file"], "site-request.tether");
    assert_eq!(shown["nonce"], json["nonce"]);
    assert_eq!(json["license_checked"], true);
    assert_eq!(json["license_sequence"], 1);
    assert_eq!(json["dongle_serial"], site.serial.as_str());
    let lic = keyfile::read_license(&site.license).unwrap();
    assert_eq!(json["license_id"], lic.terms().id.to_string());
    assert_eq!(json["nonce"].as_str().unwrap().len(), 64);
    let (ok, json) = verify(&out_path, false);
    assert!(ok && json["license_checked"] == false, "{json}");

    let shown = tether(&["inspect", "--json"], &[&out_path]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["kind"], "site-request");
    assert_eq!(shown["nonce"], json["nonce"]);

    // A second request carries another nonce and a higher counter.
    let again_path = site.path("request-2.tether");
    let out = tether(
        &["site", "request", "--state-dir"],
        &[&site.path("state"), Path::new("--out"), &again_path],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, again) = verify(&again_path, true);
    assert_ne!(again["nonce"], json["nonce"]);
    assert!(again["counter"].as_u64() > json["counter"].as_u64());
    // Not overwritten without --force.
    let out = tether(
        &["site", "request", "--state-dir"],
        &[&site.path("state"), Path::new("--out"), &again_path],
    );
    assert!(!out.status.success());

    // Tampered: the sequence raised in the signed bytes.
    let req = keyfile::read_site_request(&out_path).unwrap();
    let mut bytes = req.encoded().to_vec();
    let seq_at = 3 + req.serial.len() + 32 + 16;
    bytes[seq_at + 7] ^= 1;
    let tampered = tether_keys::SiteRequest::decode(&bytes).unwrap();
    let tampered_path = site.path("tampered.tether");
    std::fs::write(&tampered_path, keyfile::site_request_pem(&tampered)).unwrap();
    let (ok, json) = verify(&tampered_path, true);
    assert!(!ok);
    assert!(
        json["reason"].as_str().unwrap().contains("signature"),
        "{json}"
    );
    // Garbage is refused with a reason, not a panic.
    let garbage = site.path("garbage.tether");
    std::fs::write(
        &garbage,
        "-----BEGIN TETHER SITE REQUEST-----\nAAAA\n-----END TETHER SITE REQUEST-----\n",
    )
    .unwrap();
    let (ok, json) = verify(&garbage, true);
    assert!(!ok && json["valid"] == false, "{json}");

    // With the dongle unplugged, the request times out and says why.
    site.dongle(&["unplug"]);
    let out = tether(
        &["site", "request", "--timeout", "1s", "--state-dir"],
        &[
            &site.path("state"),
            Path::new("--out"),
            &site.path("none.tether"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("dongle plugged in"),
        "{}",
        text(&out.stderr)
    );
    assert!(!site.path("state/site-request-pending.json").exists());
}

/// The site whose license ran out is the one that most needs to ask for an
/// update: tetherd runs on an expired license (refusing tokens, holding the
/// dongle), so the request goes through it all the same.
#[test]
fn a_site_with_an_expired_license_can_still_ask_for_an_update() {
    let site = Site::with_license(|t| {
        t.not_before = UnixTime::now() - Duration::from_secs(2 * 86_400);
        t.not_after = UnixTime::now() - Duration::from_secs(86_400);
    });
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    wait_until(T, || d.log().contains("dongle verified"));
    let r = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("license_expired"), "{}", r.body);
    let out_path = site.path("request.tether");
    let out = tether(
        &["site", "request", "--state-dir"],
        &[&site.path("state"), Path::new("--out"), &out_path],
    );
    assert!(out.status.success(), "{}{}", text(&out.stderr), d.log());
    let out = tether(
        &["site", "request", "verify", "--vendor-pub"],
        &[
            &site.vendor_pub,
            Path::new("--license"),
            &site.license,
            &out_path,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("the licensed dongle"),
        "{}",
        text(&out.stdout)
    );
}
