//! Offline signing of licenses (issue 17, `docs/offline-signing.md`): the
//! vendor root key on an offline machine (OpenSSL) or in a PKCS#11 token
//! (SoftHSM2, driven by OpenSC's `pkcs11-tool`). `tether license issue
//! --unsigned` writes the bytes to sign, the outside tool signs them as
//! they are (pure Ed25519), `tether license attach` builds the license;
//! `tether license verify` accepts it and a real `tetherd` serves tokens
//! under it that verify down to the vendor key the tool made.
//!
//! The tools come from Debian packages (`openssl`, `softhsm2`, `opensc`),
//! installed here when missing; without root to install them the test says
//! so loudly and skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use tether_keys::Vendor;
use tether_keys::keyfile::{self, Overwrite, SERIAL_HEADER};
use tether_tests::{Site, bin, wait_for_token};

const T: Duration = Duration::from_secs(10);
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// One apt-get at a time (the tests of this binary run in parallel).
static APT: Mutex<()> = Mutex::new(());

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Whether `path` exists, after installing `packages` for it if not (as
/// root); false, with a loud message, when it cannot be had.
fn have(path: &str, packages: &[&str]) -> bool {
    let _one = APT.lock().unwrap_or_else(|p| p.into_inner());
    if Path::new(path).exists() {
        return true;
    }
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED: {path} is missing and only root can install {packages:?} (apt-get) ***\n"
        );
        return false;
    }
    eprintln!("installing {packages:?} (Debian packages) for the offline signing test");
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update.stderr));
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", text(&install.stderr));
    assert!(
        Path::new(path).exists(),
        "{path} still missing after apt-get"
    );
    true
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

/// The site's dongle public key file (with its serial), as the vendor has it.
fn dongle_pub(site: &Site) -> PathBuf {
    let path = site.path("dongle.pub");
    if !path.exists() {
        let (dongle, _) =
            keyfile::read_secret_key::<tether_keys::Dongle>(&site.identity.join("dongle.key"))
                .unwrap();
        let serial = [(SERIAL_HEADER, site.serial.as_str())];
        keyfile::write_public_key(&path, &dongle.public(), &serial, Overwrite::Never).unwrap();
    }
    path
}

/// `tether license issue --unsigned` for the site's dongle, under the vendor
/// public key `vendor_pub`: the body file.
fn unsigned_body(site: &Site, vendor_pub: &Path, name: &str) -> PathBuf {
    let body = site.path(name);
    let out = run(Command::new(bin("tether"))
        .args(["license", "issue", "--unsigned", "--vendor-pub"])
        .arg(vendor_pub)
        .arg("--dongle-pub")
        .arg(dongle_pub(site))
        .args([
            "--customer",
            "Offline Co",
            "--services",
            "backend,muxer",
            "--features",
            "mux",
            "--valid-for",
            "30d",
            "--grace",
            "7d",
            "--out",
        ])
        .arg(&body)
        .env_remove("TETHER_VENDOR_KEY"));
    assert!(
        text(&out.stdout).contains("unsigned license body"),
        "{}",
        text(&out.stdout)
    );
    let bytes = std::fs::read(&body).unwrap();
    assert!(bytes.starts_with(b"tether/license/v1\0"), "{bytes:?}");
    body
}

fn attach(site: &Site, body: &Path, sig: &Path, vendor_pub: &Path, out: &str) -> Output {
    Command::new(bin("tether"))
        .args(["license", "attach", "--body"])
        .arg(body)
        .arg("--signature")
        .arg(sig)
        .arg("--vendor-pub")
        .arg(vendor_pub)
        .arg("--out")
        .arg(site.path(out))
        .output()
        .unwrap()
}

/// The attached license verifies with `tether license verify`, and a real
/// tetherd under it issues a token that verifies down to `vendor_pub`.
fn serves_tokens(mut site: Site, license: PathBuf, vendor_pub: PathBuf) {
    let out = run(Command::new(bin("tether"))
        .args(["license", "verify", "--vendor-pub"])
        .arg(&vendor_pub)
        .arg(&license));
    assert!(
        text(&out.stdout).contains("valid license"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("grace period until"),
        "{}",
        text(&out.stdout)
    );
    site.license = license;
    site.vendor_pub = vendor_pub.clone();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let body = wait_for_token(&url, site.secret("backend"), T);
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&vendor_pub).unwrap();
    let verifier = tether_verifier::Verifier::new(
        vendor,
        tether_verifier::Expectations::new("backend").require_features(["mux"]),
    );
    let v = verifier.verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(v.claims.aud, "backend");
}

/// The vendor key made and kept by OpenSSL: `openssl pkeyutl -sign -rawin`
/// over the body file gives the signature `tether license attach` takes.
#[test]
fn a_license_signed_by_openssl_verifies_and_runs_tetherd() {
    if !have("/usr/bin/openssl", &["openssl"]) {
        return;
    }
    let site = Site::new();
    let (key, public) = (
        site.path("vendor-offline.pem"),
        site.path("vendor-offline.pub"),
    );
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public));
    let body = unsigned_body(&site, &public, "body.tbs");
    let sig = site.path("body.sig");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&body)
        .arg("-out")
        .arg(&sig));
    assert_eq!(std::fs::metadata(&sig).unwrap().len(), 64);

    // Another key's signature, and a body changed after signing: refused.
    let other = site.path("other.pem");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&other));
    let other_sig = site.path("other.sig");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&other)
        .arg("-in")
        .arg(&body)
        .arg("-out")
        .arg(&other_sig));
    let refused = attach(&site, &body, &other_sig, &public, "forged.tether");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("signature"),
        "{}",
        text(&refused.stderr)
    );
    let mut tampered = std::fs::read(&body).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered_path = site.path("tampered.tbs");
    std::fs::write(&tampered_path, tampered).unwrap();
    assert!(
        !attach(&site, &tampered_path, &sig, &public, "t.tether")
            .status
            .success()
    );
    assert!(!site.path("t.tether").exists());

    let out = attach(&site, &body, &sig, &public, "offline.tether");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let license = site.path("offline.tether");
    serves_tokens(site, license, public);
}

/// The vendor key generated inside a PKCS#11 token (SoftHSM2), never
/// leaving it: `pkcs11-tool --sign -m EDDSA` over the body file.
#[test]
fn a_license_signed_in_softhsm_via_pkcs11_verifies_and_runs_tetherd() {
    if !have(SOFTHSM_MODULE, &["softhsm2"])
        || !have("/usr/bin/softhsm2-util", &["softhsm2"])
        || !have("/usr/bin/pkcs11-tool", &["opensc"])
        || !have("/usr/bin/openssl", &["openssl"])
    {
        return;
    }
    let site = Site::new();
    let tokens = site.path("softhsm-tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = site.path("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let hsm = |cmd: &str| {
        let mut c = Command::new(cmd);
        c.env("SOFTHSM2_CONF", &conf);
        c
    };
    run(hsm("softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        "tether-vendor",
        "--so-pin",
        "123456",
        "--pin",
        "654321",
    ]));
    let p11 = |args: &[&str]| {
        let mut c = hsm("pkcs11-tool");
        c.args(["--module", SOFTHSM_MODULE, "--token-label", "tether-vendor"])
            .args(args);
        c
    };
    // SoftHSM2 as Debian builds it lists EC-EDWARDS-KEY-PAIR-GEN and EDDSA.
    let mechs = run(&mut p11(&["--list-mechanisms"]));
    assert!(
        text(&mechs.stdout).contains("EDDSA"),
        "{}",
        text(&mechs.stdout)
    );
    run(&mut p11(&[
        "--login",
        "--pin",
        "654321",
        "--keypairgen",
        "--key-type",
        "EC:edwards25519",
        "--label",
        "vendor-root",
        "--id",
        "01",
    ]));
    let exported = site.path("hsm-pub.out");
    let mut read = p11(&["--read-object", "--type", "pubkey", "--id", "01", "-o"]);
    read.arg(&exported);
    run(&mut read);
    // OpenSC writes the SubjectPublicKeyInfo (DER, or PEM in some
    // versions); openssl normalises it to the PEM Tether reads.
    let public = site.path("vendor-hsm.pub");
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-in"])
        .arg(&exported)
        .arg("-out")
        .arg(&public));
    let body = unsigned_body(&site, &public, "body.tbs");
    let sig = site.path("body.sig");
    let mut sign = p11(&[
        "--login", "--pin", "654321", "--sign", "-m", "EDDSA", "--id", "01", "-i",
    ]);
    sign.arg(&body).arg("-o").arg(&sig);
    run(&mut sign);
    assert_eq!(std::fs::metadata(&sig).unwrap().len(), 64);
    let out = attach(&site, &body, &sig, &public, "hsm.tether");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let license = site.path("hsm.tether");
    serves_tokens(site, license, public);
}
