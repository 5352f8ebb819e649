//! The provisioning CLI end to end: real `tether` processes, real files and
//! permissions. A full run, then each refusal with its own message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    out: Output,
}

impl Run {
    fn ok(&self) -> &Self {
        assert!(
            self.out.status.success(),
            "expected success, got {:?}\nstdout: {}\nstderr: {}",
            self.out.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
    fn fails_with(&self, needle: &str) -> &Self {
        assert!(
            !self.out.status.success(),
            "expected failure, got success\nstdout: {}",
            self.stdout()
        );
        let err = self.stderr();
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line expected: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        self
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

fn tether(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    Run { out }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        tether(&["keygen", "vendor", "--out", s(&root.join("vendor"))]).ok();
        tether(&[
            "keygen",
            "dongle",
            "--out",
            s(&root.join("dongle")),
            "--serial",
            "TD-TEST-1",
        ])
        .ok();
        Site { _dir: dir, root }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn issue(&self, out: &str, extra: &[&str]) -> Run {
        let vendor_key = self.p("vendor/vendor.key");
        let dongle_pub = self.p("dongle/dongle.pub");
        let out = self.p(out);
        let mut args = vec![
            "license",
            "issue",
            "--vendor-key",
            s(&vendor_key),
            "--dongle-pub",
            s(&dongle_pub),
            "--customer",
            "ACME Corp",
            "--features",
            "mux,record",
            "--services",
            "backend,muxer",
            "--max-ttl",
            "5m",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--valid-for") {
            args.extend_from_slice(&["--valid-for", "365d"]);
        }
        tether(&args)
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn full_provisioning() {
    let site = Site::new();
    assert_eq!(mode(&site.p("vendor/vendor.key")), 0o600);
    assert_eq!(mode(&site.p("dongle/dongle.key")), 0o600);
    site.issue("license.tether", &[]).ok();

    let creds = site.p("credentials");
    let backend = tether(&["service", "enroll", "backend", "--credentials", s(&creds)]);
    backend.ok();
    let secret = backend.stdout().trim().to_string();
    assert!(secret.starts_with("tsk_") && secret.len() == 47, "{secret}");
    let secret_file = site.p("muxer.secret");
    tether(&[
        "service",
        "enroll",
        "muxer",
        "--credentials",
        s(&creds),
        "--secret-out",
        s(&secret_file),
    ])
    .ok();
    assert_eq!(mode(&secret_file), 0o600);
    assert_eq!(mode(&creds), 0o600);
    let stored = fs::read_to_string(&creds).unwrap();
    assert!(stored.contains("backend sha256:") && stored.contains("muxer sha256:"));
    assert!(
        !stored.contains(&secret),
        "the secret itself must not be stored"
    );

    let lic = site.p("license.tether");
    let inspect = tether(&["inspect", "--json", s(&lic)]);
    inspect.ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout()).unwrap();
    assert_eq!(v["kind"], "license");
    assert_eq!(v["customer"], "ACME Corp");
    assert_eq!(v["dongle_serial"], "TD-TEST-1");
    assert_eq!(v["services"], serde_json::json!(["backend", "muxer"]));
    assert_eq!(v["features"], serde_json::json!(["mux", "record"]));
    assert_eq!(v["max_token_ttl"], 300);

    let key_info = tether(&["inspect", s(&site.p("dongle/dongle.key"))]);
    key_info.ok();
    assert!(key_info.stdout().contains("TD-TEST-1"));
    assert!(
        !key_info.stdout().contains("MC4CAQ"),
        "never print key material"
    );
    let creds_info = tether(&["inspect", "--json", s(&creds)]);
    assert!(creds_info.ok().stdout().contains("muxer"));

    let verify = tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&lic),
    ]);
    assert!(verify.ok().stdout().contains("valid license"));
}

#[test]
fn tampered_license_is_refused() {
    let site = Site::new();
    site.issue("license.tether", &[]).ok();
    let lic = site.p("license.tether");
    // Change one character inside the signature (the end of the base64 body).
    let text = fs::read_to_string(&lic).unwrap();
    let body_end = text.find("\n-----END TETHER LICENSE-----").unwrap();
    let mut bytes = text.into_bytes();
    let i = body_end - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    fs::write(&lic, bytes).unwrap();
    tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&lic),
    ])
    .fails_with("bad license signature");
}

#[test]
fn wrong_vendor_key_is_refused() {
    let site = Site::new();
    site.issue("license.tether", &[]).ok();
    tether(&["keygen", "vendor", "--out", s(&site.p("other"))]).ok();
    tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("other/vendor.pub")),
        s(&site.p("license.tether")),
    ])
    .fails_with("issued by another vendor key");
}

#[test]
fn expired_license_is_refused() {
    let site = Site::new();
    site.issue(
        "old.tether",
        &["--not-before", "1000000000", "--valid-for", "1d"],
    )
    .ok();
    tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&site.p("old.tether")),
    ])
    .fails_with("license expired at 1000086400");
}

#[test]
fn world_readable_private_key_is_refused() {
    let site = Site::new();
    let key = site.p("vendor/vendor.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    site.issue("license.tether", &[])
        .fails_with("must not be readable by group or others");
    assert!(!site.p("license.tether").exists());
}

#[test]
fn existing_output_is_not_overwritten() {
    let site = Site::new();
    let before = fs::read(site.p("vendor/vendor.key")).unwrap();
    tether(&["keygen", "vendor", "--out", s(&site.p("vendor"))]).fails_with("already exists");
    assert_eq!(fs::read(site.p("vendor/vendor.key")).unwrap(), before);
    site.issue("license.tether", &[]).ok();
    site.issue("license.tether", &[])
        .fails_with("already exists");
    site.issue("license.tether", &["--force"]).ok();
    let creds = site.p("creds");
    tether(&["service", "enroll", "backend", "--credentials", s(&creds)]).ok();
    tether(&["service", "enroll", "backend", "--credentials", s(&creds)])
        .fails_with("already enrolled");
}

#[test]
fn wrong_key_type_and_missing_file_are_named() {
    let site = Site::new();
    let dongle_key = site.p("dongle/dongle.key");
    let vendor_pub = site.p("vendor/vendor.pub");
    let dongle_pub = site.p("dongle/dongle.pub");
    // A dongle key where the vendor key belongs.
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&dongle_key),
        "--dongle-pub",
        s(&dongle_pub),
        "--customer",
        "X",
        "--services",
        "backend",
        "--out",
        s(&site.p("l")),
    ])
    .fails_with("holds a dongle key, expected a vendor key");
    // The vendor public key where the dongle's belongs.
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&site.p("vendor/vendor.key")),
        "--dongle-pub",
        s(&vendor_pub),
        "--customer",
        "X",
        "--services",
        "backend",
        "--out",
        s(&site.p("l")),
    ])
    .fails_with("holds a vendor key, expected a dongle key");
    tether(&["inspect", s(&site.p("nope"))]).fails_with("No such file");
    tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&vendor_pub),
        s(&dongle_pub),
    ])
    .fails_with("holds a PUBLIC KEY block, expected TETHER LICENSE");
}

fn inspect_json(path: &Path) -> serde_json::Value {
    let run = tether(&["inspect", "--json", s(path)]);
    serde_json::from_str(&run.ok().stdout()).unwrap()
}

/// Issue 17: the next version of a license keeps its id, dongle and
/// customer, is one sequence higher, and takes the terms the vendor changes.
#[test]
fn superseding_keeps_the_license_and_raises_the_sequence() {
    let site = Site::new();
    site.issue("v1.tether", &["--seats", "backend=2"]).ok();
    let (v1, v2) = (site.p("v1.tether"), site.p("v2.tether"));
    let key = site.p("vendor/vendor.key");
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&key),
        "--supersedes",
        s(&v1),
        "--services",
        "backend",
        "--seats",
        "backend=5",
        "--valid-for",
        "730d",
        "--nonce-period",
        "5m",
        "--out",
        s(&v2),
    ])
    .ok();
    let (a, b) = (inspect_json(&v1), inspect_json(&v2));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["customer"], "ACME Corp");
    assert_eq!(b["dongle_serial"], "TD-TEST-1");
    assert_eq!(a["sequence"], 1);
    assert_eq!(b["sequence"], 2);
    assert_eq!(b["services"], serde_json::json!(["backend"]));
    assert_eq!(b["features"], a["features"]);
    assert!(b.to_string().contains("\"backend\":5"), "{b}");
    // Unchanged flags keep the old terms; a third version is sequence 3.
    let v3 = site.p("v3.tether");
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&key),
        "--supersedes",
        s(&v2),
        "--customer",
        "ACME Renamed",
        "--dongle-pub",
        s(&site.p("dongle/dongle.pub")),
        "--out",
        s(&v3),
    ])
    .ok();
    let c = inspect_json(&v3);
    assert_eq!(c["sequence"], 3);
    assert_eq!(c["customer"], "ACME Renamed");
    assert_eq!(c["services"], b["services"]);
    assert_eq!(c["not_after"], b["not_after"]);
    // Another dongle is refused.
    tether(&[
        "keygen",
        "dongle",
        "--out",
        s(&site.p("other")),
        "--serial",
        "TD-OTHER",
    ])
    .ok();
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&key),
        "--supersedes",
        s(&v2),
        "--dongle-pub",
        s(&site.p("other/dongle.pub")),
        "--out",
        s(&site.p("v4.tether")),
    ])
    .fails_with("cannot change the dongle");
    // Without --supersedes, the dongle and customer are still required.
    tether(&[
        "license",
        "issue",
        "--vendor-key",
        s(&key),
        "--out",
        s(&site.p("v5.tether")),
    ]);
    assert!(!site.p("v5.tether").exists());
}

/// Issue 17: a revocation is signed for a license; installing anything
/// with no tetherd running is refused clearly and places nothing.
#[test]
fn revoke_and_install_without_a_daemon() {
    let site = Site::new();
    site.issue("license.tether", &[]).ok();
    let rev = site.p("revoke.tether");
    let out = tether(&[
        "license",
        "revoke",
        "--vendor-key",
        s(&site.p("vendor/vendor.key")),
        "--license",
        s(&site.p("license.tether")),
        "--out",
        s(&rev),
    ]);
    assert!(out.ok().stdout().contains("through sequence 1"));
    assert!(
        fs::read_to_string(&rev)
            .unwrap()
            .contains("-----BEGIN TETHER REVOCATION-----")
    );
    let state = site.p("state");
    fs::create_dir_all(&state).unwrap();
    for file in [&rev, &site.p("license.tether")] {
        tether(&[
            "license",
            "install",
            "--state-dir",
            s(&state),
            "--vendor-pub",
            s(&site.p("vendor/vendor.pub")),
            s(file),
        ])
        .fails_with("no tetherd is running");
    }
    // A stale pid file (our own pid: a live process) without the lock held.
    fs::write(
        state.join("tetherd.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    tether(&[
        "license",
        "install",
        "--state-dir",
        s(&state),
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&rev),
    ])
    .fails_with("does not hold");
    assert!(!state.join("license-pending.tether").exists());
    // A file from another vendor is refused before anything else.
    tether(&["keygen", "vendor", "--out", s(&site.p("v2"))]).ok();
    tether(&[
        "license",
        "install",
        "--state-dir",
        s(&state),
        "--vendor-pub",
        s(&site.p("v2/vendor.pub")),
        s(&rev),
    ])
    .fails_with("vendor");
}

/// Issue 16: `--dongle-pub` takes a FIDO2 identity file (told apart by its
/// PEM label), refuses it without `--nonce-period` or with another serial,
/// and `inspect` / `license verify` show the credential.
#[test]
fn a_fido2_identity_file_makes_a_fido2_license() {
    use tether_keys::Fido2Algorithm;
    use tether_keys::fido2::testsigner::TestAuthenticator;
    let site = Site::new();
    let cred = TestAuthenticator::new(Fido2Algorithm::Es256, [0x42; 32]).credential();
    let identity = site.p("dongle.fido2.pem");
    fs::write(&identity, cred.to_pem()).unwrap();
    let vendor_key = site.p("vendor/vendor.key");
    let issue = |out: &str, extra: &[&str]| {
        let out = site.p(out);
        let mut args = vec![
            "license",
            "issue",
            "--vendor-key",
            s(&vendor_key),
            "--dongle-pub",
            s(&identity),
            "--customer",
            "ACME Corp",
            "--services",
            "backend,muxer",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        tether(&args)
    };
    issue("no-freshness.tether", &[]).fails_with("FIDO2 dongles need freshness: --nonce-period");
    issue("off.tether", &["--nonce-period", "off"])
        .fails_with("FIDO2 dongles need freshness: --nonce-period");
    issue(
        "serial.tether",
        &["--nonce-period", "5m", "--serial", "TD-TEST-1"],
    )
    .fails_with("differs from the serial");
    assert!(!site.p("no-freshness.tether").exists());
    issue("fido2.tether", &["--nonce-period", "5m"]).ok();

    let lic = site.p("fido2.tether");
    let v: serde_json::Value =
        serde_json::from_str(&tether(&["inspect", "--json", s(&lic)]).ok().stdout()).unwrap();
    assert_eq!(v["dongle_kind"], "FIDO2");
    assert_eq!(v["dongle_serial"], cred.serial());
    assert_eq!(v["nonce_period"], 300);
    assert_eq!(v["dongle"]["rp_id"], cred.rp_id);
    assert_eq!(v["dongle"]["aaguid"], cred.aaguid_string());
    assert_eq!(v["dongle"]["model"], cred.model);
    assert_eq!(v["dongle"]["algorithm"], "ES256");
    assert!(
        v["dongle"]["credential_id"]
            .as_str()
            .unwrap()
            .ends_with("(48 bytes)"),
        "{v}"
    );
    let human = tether(&["inspect", s(&lic)]);
    assert!(human.ok().stdout().contains("FIDO2"), "{}", human.stdout());

    let verify = tether(&[
        "license",
        "verify",
        "--vendor-pub",
        s(&site.p("vendor/vendor.pub")),
        s(&lic),
    ]);
    let shown = verify.ok().stdout();
    assert!(
        shown.contains(&format!("FIDO2 {}", cred.serial())),
        "{shown}"
    );
    assert!(
        shown.contains("ES256") && shown.contains("tether.example"),
        "{shown}"
    );

    let id: serde_json::Value =
        serde_json::from_str(&tether(&["inspect", "--json", s(&identity)]).ok().stdout()).unwrap();
    assert_eq!(id["kind"], "fido2-credential");
    assert_eq!(id["serial"], cred.serial());

    // A native license's dongle shows as such.
    site.issue("native.tether", &[]).ok();
    let v: serde_json::Value = serde_json::from_str(
        &tether(&["inspect", "--json", s(&site.p("native.tether"))])
            .ok()
            .stdout(),
    )
    .unwrap();
    assert_eq!(v["dongle_kind"], "native");
}
