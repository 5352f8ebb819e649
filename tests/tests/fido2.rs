//! FIDO2 security keys as dongles (issue 16), end to end over real
//! processes: the `tether-softkey` test authenticator (an independent
//! CTAP2 implementation) on the socket link, `tether dongle enroll --fido2`,
//! `tether license issue`, `tetherd --dongle fido2:socket:PATH`,
//! `tether token` and `tether verify`.
//!
//! A real key: `TETHER_TEST_FIDO2=1 cargo test -p tether-tests --test fido2
//! -- --ignored` (touch it when asked; docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tether_keys::CredentialFile;
use tether_keys::keyfile::{self, Overwrite};
use tether_tests::{Proc, bin, free_port, http, wait_until};

const T: Duration = Duration::from_secs(15);

/// A site whose dongle is a software FIDO2 key.
struct FidoSite {
    dir: tempfile::TempDir,
    secret: String,
}

impl FidoSite {
    fn new() -> FidoSite {
        let dir = tempfile::tempdir().unwrap();
        let mut creds = CredentialFile::default();
        let secret = creds.enroll("backend", false).unwrap().expose().to_string();
        creds.save(&dir.path().join("credentials")).unwrap();
        keyfile::write_file(
            &dir.path().join("backend.secret"),
            secret.as_bytes(),
            0o600,
            Overwrite::Never,
        )
        .unwrap();
        FidoSite { dir, secret }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn socket(&self) -> PathBuf {
        self.path("key.sock")
    }

    fn device(&self) -> String {
        format!("fido2:socket:{}", self.socket().display())
    }

    /// Starts `tether-softkey` on the site's socket and state file.
    fn start_key(&self, extra: &[&str]) -> Proc {
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        let mut ctl = sock.clone().into_os_string();
        ctl.push(".ctl");
        let _ = std::fs::remove_file(&ctl);
        let mut cmd = Command::new(bin("tether-softkey"));
        cmd.arg("--socket")
            .arg(&sock)
            .arg("--state")
            .arg(self.path("key.state"))
            .args(extra);
        let proc = Proc::spawn(cmd, "tether-softkey");
        wait_until(T, || sock.exists());
        proc
    }

    /// Stops the key cleanly (SIGTERM: it unplugs and removes its sockets).
    fn stop_key(&self, mut key: Proc) {
        key.signal("TERM");
        assert!(key.wait_exit(T).is_some(), "tether-softkey did not stop");
    }

    fn tether(&self, args: &[&str]) -> Output {
        Command::new(bin("tether"))
            .args(args)
            .env("TETHER_CONFIG", "/dev/null")
            .output()
            .unwrap()
    }

    fn enroll(&self, extra: &[&str]) -> Output {
        let out = self.path("identity");
        let device = self.device();
        let mut args = vec![
            "dongle",
            "enroll",
            "--fido2",
            "--device",
            &device,
            "--product",
            "e2e",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.tether(&args)
    }

    /// Enrols (self attestation allowed), makes a vendor key, issues a
    /// license for the key with a nonce period.
    fn enroll_and_license(&self) {
        let out = self.enroll(&["--allow-self-attested"]);
        assert!(out.status.success(), "enroll: {}", text(&out));
        let vendor = self.path("vendor");
        let out = self.tether(&["keygen", "vendor", "--out", vendor.to_str().unwrap()]);
        assert!(out.status.success(), "keygen: {}", text(&out));
        let out = self.tether(&[
            "license",
            "issue",
            "--vendor-key",
            vendor.join("vendor.key").to_str().unwrap(),
            "--dongle-pub",
            self.path("identity/dongle.fido2.pem").to_str().unwrap(),
            "--customer",
            "FIDO2 E2E",
            "--services",
            "backend",
            "--nonce-period",
            "5m",
            "--out",
            self.path("license.tether").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "license issue: {}", text(&out));
    }

    fn start_tetherd(&self, dongle: &str) -> (Proc, String) {
        let port = free_port();
        let mut cmd = Command::new(bin("tetherd"));
        cmd.arg("--license")
            .arg(self.path("license.tether"))
            .arg("--vendor-pub")
            .arg(self.path("vendor/vendor.pub"))
            .arg("--credentials")
            .arg(self.path("credentials"))
            .arg("--dongle")
            .arg(dongle)
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("TETHER_CONFIG", "/dev/null")
            .env("TETHER_ADMIN_LISTEN", "off");
        let proc = Proc::spawn(cmd, "tetherd");
        let url = format!("http://127.0.0.1:{port}");
        wait_until(T, || http::get(&url, "/healthz", None).is_ok());
        (proc, url)
    }

    /// `tether token` with a fresh nonce once tetherd is ready, then
    /// `tether verify` of its answer.
    fn token_verified(&self, url: &str) -> String {
        wait_until(T, || {
            http::get(url, "/readyz", None).is_ok_and(|r| r.status == 200)
        });
        let mut raw = [0u8; 16];
        tether_keys::random_fill(&mut raw);
        let nonce: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        // A new instance each time: an instance that rotates its nonce is
        // served under its older one until the next certificate.
        let instance = format!("i{}", &nonce[..8]);
        let out = self.tether(&[
            "token",
            "--url",
            url,
            "--secret-file",
            self.path("backend.secret").to_str().unwrap(),
            "--nonce",
            &nonce,
            "--instance",
            &instance,
        ]);
        assert!(out.status.success(), "tether token: {}", text(&out));
        let answer = String::from_utf8(out.stdout).unwrap();
        let mut verify = Command::new(bin("tether"))
            .args([
                "verify",
                "--vendor-pub",
                self.path("vendor/vendor.pub").to_str().unwrap(),
                "--service",
                "backend",
                "--nonce",
                &nonce,
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        verify
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = verify.wait_with_output().unwrap();
        assert!(out.status.success(), "tether verify: {}", text(&out));
        let body: serde_json::Value = serde_json::from_str(&answer).unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// Waits until `GET /token` is refused with a reason containing `what`.
    fn refused_with(&self, url: &str, what: &str) -> String {
        let mut last = String::new();
        let deadline = Instant::now() + T;
        while Instant::now() < deadline {
            let r = http::get(url, "/token?nonce=abc&instance=probe", Some(&self.secret)).unwrap();
            if r.status != 200 && r.body.contains(what) {
                return r.body;
            }
            last = format!("{} {}", r.status, r.body);
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("GET /token not refused with {what:?} within {T:?}; last: {last}");
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The certificate a token carries (its `dcert` claim).
fn dcert(token: &str) -> String {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    claims["dcert"].as_str().unwrap().to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Enrol -> license -> tetherd -> token verified offline -> unplug ->
/// refused -> re-plug -> a fresh session, all in one tetherd process.
#[test]
fn a_software_fido2_key_licenses_unplug_refuses_and_replug_brings_a_fresh_session() {
    let site = FidoSite::new();
    let key = site.start_key(&[]);
    site.enroll_and_license();
    let identity = site.path("identity/dongle.fido2.pem");
    assert_eq!(mode(&identity), 0o644);
    assert!(
        std::fs::read_to_string(&identity)
            .unwrap()
            .contains("TETHER FIDO2 CREDENTIAL")
    );

    let (mut tetherd, url) = site.start_tetherd(&site.device());
    let first = site.token_verified(&url);

    let started = Instant::now();
    site.tether_ok(&[
        "dongle",
        "unplug",
        "--socket",
        site.socket().to_str().unwrap(),
    ]);
    site.refused_with(&url, "dongle");
    eprintln!("unplug -> refusal in {:?}", started.elapsed());

    site.tether_ok(&[
        "dongle",
        "plug",
        "--socket",
        site.socket().to_str().unwrap(),
    ]);
    let second = site.token_verified(&url);
    assert_ne!(
        dcert(&first),
        dcert(&second),
        "a re-plug must bring a new certificate"
    );
    assert!(
        tetherd.child.try_wait().unwrap().is_none(),
        "tetherd must still run"
    );
    drop(key);
}

/// An ES256 key (the softkey with --algorithm es256): enrolled as ES256,
/// its DER signatures normalised to low S, tokens verified offline.
#[test]
fn an_es256_key_licenses_too() {
    let site = FidoSite::new();
    let _key = site.start_key(&["--algorithm", "es256"]);
    site.enroll_and_license();
    let pem = std::fs::read_to_string(site.path("identity/dongle.fido2.pem")).unwrap();
    let cred = tether_keys::Fido2Credential::from_pem(&pem).unwrap();
    assert_eq!(cred.algorithm, tether_keys::Fido2Algorithm::Es256);
    assert_eq!(cred.public_key.len(), 65);
    let (_tetherd, url) = site.start_tetherd(&site.device());
    // Each new instance's nonce needs a new certificate: several ES256
    // assertions, about half of them high S before normalisation.
    for _ in 0..4 {
        site.token_verified(&url);
    }
}

impl FidoSite {
    fn tether_ok(&self, args: &[&str]) {
        let out = self.tether(args);
        assert!(out.status.success(), "tether {args:?}: {}", text(&out));
    }
}

/// `tether dongle probe --fido2` shows getInfo and a PING round trip.
#[test]
fn probe_shows_get_info_and_a_ping_round_trip() {
    let site = FidoSite::new();
    let _key = site.start_key(&[]);
    let device = site.device();
    let out = site.tether(&["dongle", "probe", "--fido2", "--device", &device]);
    assert!(out.status.success(), "probe: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The softkey's AAGUID is "tether-softkey-1" in ASCII.
    assert!(
        stdout.contains("7465746865722d736f66746b65792d31"),
        "{stdout}"
    );
    assert!(stdout.contains("FIDO_2_"), "{stdout}");
    assert!(stdout.contains("ping:        ok"), "{stdout}");
    // No key there: a clear error.
    let out = site.tether(&[
        "dongle",
        "probe",
        "--fido2",
        "--device",
        "fido2:socket:/nonexistent.sock",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no FIDO2 security key found"),
        "{}",
        text(&out)
    );
}

/// A key that refuses silent assertions is refused at enrolment, saying why.
#[test]
fn a_key_that_demands_a_touch_is_refused_at_enrolment() {
    let site = FidoSite::new();
    let _key = site.start_key(&["--require-up"]);
    let out = site.enroll(&["--allow-self-attested"]);
    assert!(!out.status.success(), "enroll must fail: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demands a touch for every signature")
            && err.contains("cannot serve as a Tether dongle"),
        "{err}"
    );
    assert!(!site.path("identity/dongle.fido2.pem").exists());
}

/// A syncable credential (BE/BS set, as a passkey provider makes) is not
/// bound to one device: refused at enrolment.
#[test]
fn a_syncable_credential_is_refused_at_enrolment() {
    let site = FidoSite::new();
    let _key = site.start_key(&["--syncable"]);
    let out = site.enroll(&["--allow-self-attested"]);
    assert!(!out.status.success(), "enroll must fail: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not bound to one device"), "{err}");
    assert!(!site.path("identity/dongle.fido2.pem").exists());
}

/// Without attestation roots or --allow-self-attested, a self-attesting key
/// is refused.
#[test]
fn self_attestation_is_refused_unless_allowed() {
    let site = FidoSite::new();
    let _key = site.start_key(&[]);
    let out = site.enroll(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--attestation-roots"),
        "{}",
        text(&out)
    );
    let roots = site.path("roots");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::write(roots.join("none.txt"), "not a certificate").unwrap();
    let out = site.enroll(&["--attestation-roots", roots.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no PEM certificate"),
        "{}",
        text(&out)
    );
}

/// A key reset (its state deleted) no longer knows the credential: tetherd
/// says so instead of issuing.
#[test]
fn a_reset_key_is_refused_with_a_clear_reason() {
    let site = FidoSite::new();
    let key = site.start_key(&[]);
    site.enroll_and_license();
    site.stop_key(key);
    std::fs::remove_file(site.path("key.state")).unwrap();
    let _key = site.start_key(&[]);
    let (_tetherd, url) = site.start_tetherd(&site.device());
    site.refused_with(&url, "does not know this credential");
}

/// A key whose state is rolled back (a clone of an older copy) signs a
/// counter below one already accepted: tetherd refuses it.
#[test]
fn a_signature_counter_that_goes_down_is_refused() {
    let site = FidoSite::new();
    let key = site.start_key(&[]);
    site.enroll_and_license();
    site.stop_key(key);
    std::fs::copy(site.path("key.state"), site.path("key.state.old")).unwrap();
    let key = site.start_key(&[]);
    let (_tetherd, url) = site.start_tetherd(&site.device());
    site.token_verified(&url);
    // Another certificate or two: the counter rises past the copy's.
    site.tether_ok(&[
        "dongle",
        "unplug",
        "--socket",
        site.socket().to_str().unwrap(),
    ]);
    site.tether_ok(&[
        "dongle",
        "plug",
        "--socket",
        site.socket().to_str().unwrap(),
    ]);
    site.token_verified(&url);
    site.stop_key(key);
    std::fs::copy(site.path("key.state.old"), site.path("key.state")).unwrap();
    let _key = site.start_key(&[]);
    site.refused_with(&url, "went backwards");
}

/// tetherd refuses to start when --dongle and the license disagree on the kind.
#[test]
fn a_native_license_with_dongle_fido2_is_refused_at_start() {
    let site = tether_tests::Site::new();
    let mut cmd = Command::new(bin("tetherd"));
    cmd.arg("--license")
        .arg(&site.license)
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--credentials")
        .arg(&site.credentials)
        .arg("--dongle")
        .arg("fido2")
        .arg("--state-dir")
        .arg(site.path("state"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("TETHER_CONFIG", "/dev/null")
        .env("TETHER_ADMIN_LISTEN", "off");
    let mut proc = Proc::spawn(cmd, "tetherd");
    let code = proc.wait_exit(T);
    assert!(code.is_some_and(|c| c != 0), "tetherd must refuse to start");
    let log = proc.log();
    assert!(
        log.contains("FIDO2 security key") && log.contains("native dongle"),
        "{log}"
    );
}

/// A real key, by hand: `TETHER_TEST_FIDO2=1` (and `TETHER_TEST_FIDO2_DEVICE`,
/// default `fido2`; `TETHER_TEST_FIDO2_ROOTS` for attestation roots, else
/// self attestation is allowed). Touch the key once when asked.
#[test]
#[ignore = "needs a real FIDO2 key: TETHER_TEST_FIDO2=1"]
fn a_real_fido2_key_enrols_and_probes() {
    if std::env::var("TETHER_TEST_FIDO2").as_deref() != Ok("1") {
        eprintln!("TETHER_TEST_FIDO2 is not 1: skipped");
        return;
    }
    let site = FidoSite::new();
    let device = std::env::var("TETHER_TEST_FIDO2_DEVICE").unwrap_or_else(|_| "fido2".into());
    let out_dir = site.path("identity");
    let mut args = vec![
        "dongle".to_string(),
        "enroll".into(),
        "--fido2".into(),
        "--device".into(),
        device.clone(),
        "--out".into(),
        out_dir.display().to_string(),
    ];
    match std::env::var("TETHER_TEST_FIDO2_ROOTS") {
        Ok(dir) => args.extend(["--attestation-roots".into(), dir]),
        Err(_) => args.push("--allow-self-attested".into()),
    }
    let out = Command::new(bin("tether")).args(&args).output().unwrap();
    assert!(out.status.success(), "enroll: {}", text(&out));
    let identity = out_dir.join("dongle.fido2.pem");
    let out = site.tether(&[
        "dongle",
        "probe",
        "--fido2",
        "--device",
        &device,
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "probe: {}", text(&out));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}
