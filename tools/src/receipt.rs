//! `tether license receipt verify`, `tether site request` and `tether site
//! request verify`: the files a site sends its vendor, signed by the
//! site's dongle (`docs/formats.md`, "Revocation receipt", "Site request",
//! "Site request protocol").
//!
//! `tether site request` goes through the running tetherd, which holds the
//! dongle (a second host on the same dongle would contend with its
//! heartbeats): it places `STATE_DIR/site-request-pending.json` (a fresh
//! nonce) atomically, sends SIGHUP, and waits for
//! `STATE_DIR/site-request-verdict.json` naming the nonce; the signed file
//! is `STATE_DIR/site-request.tether`, checked here (signature, nonce) and
//! copied to `--out`. With no tetherd running it refuses and places nothing.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tether_authority::receipts::{
    SITE_REQUEST_FILE, SITE_REQUEST_PENDING, SITE_REQUEST_VERDICT, SiteRequestPending,
    SiteRequestVerdict,
};
use tether_keys::keyfile::{self, LicenseUpdate, Overwrite};
use tether_keys::{License, Vendor};

use crate::cli::{ReceiptCmd, ReceiptVerifyArgs, SiteCmd, SiteRequestCmd, SiteRequestVerifyArgs};
use tether_tools::human;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The license file, verified under the vendor public key file.
fn vendor_license(vendor_pub: &Path, license: &Path) -> anyhow::Result<License> {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(vendor_pub)?;
    let lic = keyfile::read_license(license)?;
    lic.verify(&vendor)
        .with_context(|| format!("{}", license.display()))?;
    Ok(lic)
}

/// Prints a refusal as JSON (with `--json`) and returns the error.
fn refused(json_out: bool, err: anyhow::Error) -> anyhow::Result<ExitCode> {
    if json_out {
        println!(
            "{}",
            json!({"valid": false, "reason": tether_authority::error_line(&err)})
        );
        return Ok(ExitCode::from(1));
    }
    Err(err)
}

/// `tether license receipt ...`.
///
/// # Errors
///
/// Without `--json`: when a file does not read, the license does not
/// verify under the vendor key, or the receipt does not prove the
/// revocation (another license, another dongle, a bad signature, another
/// revocation). With `--json` the reason is printed and the exit code is 1.
pub fn receipt(cmd: ReceiptCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptCmd::Verify(args) => match receipt_verify(&args) {
            Ok(code) => Ok(code),
            Err(e) => refused(args.json, e),
        },
    }
}

fn receipt_verify(args: &ReceiptVerifyArgs) -> anyhow::Result<ExitCode> {
    let license = vendor_license(&args.vendor_pub, &args.license)?;
    let receipt = keyfile::read_receipt(&args.receipt)?;
    receipt
        .verify(&license)
        .with_context(|| format!("{}", args.receipt.display()))?;
    if let Some(path) = &args.revocation {
        let LicenseUpdate::Revocation(rev) = keyfile::read_update(path)? else {
            bail!("{}: a license, not a revocation", path.display());
        };
        let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
        rev.verify(&vendor)
            .with_context(|| format!("{}", path.display()))?;
        receipt
            .answers(&rev)
            .with_context(|| format!("{}", args.receipt.display()))?;
    }
    let r = &receipt.request;
    if args.json {
        println!(
            "{}",
            json!({
                "valid": true,
                "license_id": r.license_id.to_string(),
                "license_sequence": r.license_sequence,
                "revoked_through": r.revoked_through,
                "revocation_sha256": hex(&r.revocation_sha256),
                "revocation_checked": args.revocation.is_some(),
                "installed_at": r.installed_at.secs(),
                "dongle_serial": receipt.serial,
                "counter": receipt.counter,
            })
        );
    } else {
        let now = tether_keys::UnixTime::now().secs();
        println!(
            "{}: valid receipt: dongle {} (counter {}) dropped license {} sequence {} under the revocation through sequence {}{}, installed {} (the site's clock)",
            args.receipt.display(),
            receipt.serial,
            receipt.counter,
            r.license_id,
            r.license_sequence,
            r.revoked_through,
            if args.revocation.is_some() {
                " (the revocation given)"
            } else {
                ""
            },
            human::instant(r.installed_at.secs(), now),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tether site ...`.
///
/// # Errors
///
/// For `request`: no tetherd runs on the state directory, it refused (its
/// reason: e.g. the dongle declined), no answer within `--timeout` (the
/// dongle absent), or the output file exists without `--force`. For
/// `request verify`: as `tether license receipt verify`.
pub fn site(cmd: SiteCmd) -> anyhow::Result<ExitCode> {
    let SiteCmd::Request(args) = cmd;
    match args.command {
        Some(SiteRequestCmd::Verify(v)) => match site_request_verify(&v) {
            Ok(code) => Ok(code),
            Err(e) => refused(v.json, e),
        },
        None => {
            let Some(out) = args.out else {
                bail!("--out is required");
            };
            let timeout = tether_keys::parse_duration(&args.timeout)?;
            site_request(&args.state_dir, &out, args.force, timeout)
        }
    }
}

fn site_request(
    dir: &Path,
    out: &Path,
    force: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    if out.exists() && !force {
        bail!(
            "{}: already exists (use --force to overwrite)",
            out.display()
        );
    }
    let pid = crate::install::running_tetherd(dir)?;
    let nonce = tether_keys::delegation::fresh_nonce();
    let nonce_hex = hex(&nonce);
    let verdict_path = dir.join(SITE_REQUEST_VERDICT);
    let _ = std::fs::remove_file(&verdict_path);
    let pending = dir.join(SITE_REQUEST_PENDING);
    let body = serde_json::to_vec(&SiteRequestPending {
        nonce: nonce_hex.clone(),
    })?;
    tether_keys::fsutil::write_atomic(&pending, &body, 0o644)?;
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    let started = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(&verdict_path)
            && let Ok(v) = serde_json::from_slice::<SiteRequestVerdict>(&bytes)
            && v.nonce == nonce_hex
        {
            if !v.accepted {
                bail!("tetherd refused the site request: {}", v.reason);
            }
            let signed_path = dir.join(SITE_REQUEST_FILE);
            let text = std::fs::read_to_string(&signed_path)
                .with_context(|| format!("{}: cannot read", signed_path.display()))?;
            let signed = keyfile::parse_site_request(&signed_path, &text)?;
            signed
                .verify_signature()
                .with_context(|| format!("{}", signed_path.display()))?;
            if signed.ask.nonce != nonce {
                bail!(
                    "{}: answers another request (not our nonce)",
                    signed_path.display()
                );
            }
            let overwrite = if force {
                Overwrite::Replace
            } else {
                Overwrite::Never
            };
            keyfile::write_file(out, text.as_bytes(), 0o644, overwrite)?;
            println!(
                "site request for license {} sequence {}, signed by dongle {} (counter {}), written to {}: send it to the vendor",
                signed.ask.license_id,
                signed.ask.license_sequence,
                signed.serial,
                signed.counter,
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() >= timeout {
            let _ = std::fs::remove_file(&pending);
            bail!(
                "no answer from tetherd within {}: is the dongle plugged in (tetherd's /status)? Nothing was signed; run this again once it is",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn site_request_verify(args: &SiteRequestVerifyArgs) -> anyhow::Result<ExitCode> {
    let req = keyfile::read_site_request(&args.request)?;
    let license = match &args.license {
        Some(path) => Some(vendor_license(&args.vendor_pub, path)?),
        None => {
            // The vendor key file is still read: a wrong path is an error.
            keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
            None
        }
    };
    match &license {
        Some(lic) => req.verify(lic),
        None => req.verify_signature(),
    }
    .with_context(|| format!("{}", args.request.display()))?;
    let a = &req.ask;
    if args.json {
        println!(
            "{}",
            json!({
                "valid": true,
                "license_checked": license.is_some(),
                "dongle_serial": req.serial,
                "dongle_key": req.dongle_key.fingerprint().to_string(),
                "license_id": a.license_id.to_string(),
                "license_sequence": a.license_sequence,
                "nonce": hex(&a.nonce),
                "requested_at": a.requested_at.secs(),
                "counter": req.counter,
            })
        );
    } else {
        let now = tether_keys::UnixTime::now().secs();
        println!(
            "{}: valid site request from dongle {} (key {}, counter {}){}: runs license {} sequence {}, asked {} (the site's clock), nonce {}",
            args.request.display(),
            req.serial,
            req.dongle_key.fingerprint(),
            req.counter,
            if license.is_some() {
                ", the licensed dongle"
            } else {
                "; not checked against a license (give --license)"
            },
            a.license_id,
            a.license_sequence,
            human::instant(a.requested_at.secs(), now),
            hex(&a.nonce)
        );
    }
    Ok(ExitCode::SUCCESS)
}
