//! `tether license install`: hands a license update or a revocation to the
//! running tetherd of a state directory and waits for its verdict.
//!
//! The file is verified here first (vendor key), placed atomically as
//! `STATE_DIR/license-pending.tether`, and tetherd (found by
//! `STATE_DIR/tetherd.pid`) is sent SIGHUP; it also polls the directory
//! every 500 ms. Its answer is `STATE_DIR/license-verdict.json`, matched to
//! this install by the file's SHA-256. With no tetherd running the install
//! is refused and nothing is placed: start tetherd, then install.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tether_authority::license::{PENDING_FILE, PID_FILE, VERDICT_FILE, Verdict, sha256_hex};
use tether_keys::Vendor;
use tether_keys::keyfile::{self, LicenseUpdate};

use crate::cli::LicenseInstallArgs;

/// The pid of the tetherd running on `dir`, if one is.
pub(crate) fn running_tetherd(dir: &Path) -> anyhow::Result<rustix::process::Pid> {
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no tetherd is running on {} ({} not found): start tetherd, then install",
            dir.display(),
            path.display()
        )
    })?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .with_context(|| format!("{}: not a process id", path.display()))?;
    // The running tetherd holds the state directory's lock: a stale pid
    // file (a daemon killed with SIGKILL, its pid perhaps reused) must not
    // make us signal an unrelated process.
    let lock_path = dir.join("state.lock");
    let held = match std::fs::OpenOptions::new().write(true).open(&lock_path) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    };
    if !held || rustix::process::test_kill_process(pid).is_err() {
        bail!(
            "no tetherd is running on {} ({} names process {}, which does not hold {}): start tetherd, then install",
            dir.display(),
            path.display(),
            pid.as_raw_nonzero(),
            lock_path.display()
        );
    }
    Ok(pid)
}

/// `tether license install`.
///
/// # Errors
///
/// When the file does not read or verify, no tetherd runs on the state
/// directory, tetherd refuses the update (its reason), or no verdict comes
/// within `--timeout`.
pub fn install(args: &LicenseInstallArgs) -> anyhow::Result<ExitCode> {
    let timeout = tether_keys::parse_duration(&args.timeout)?;
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("{}: cannot read", args.file.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{}: not a license file", args.file.display()))?;
    let what = match keyfile::parse_update(&args.file, text)? {
        LicenseUpdate::License(l) => {
            l.verify(&vendor)
                .with_context(|| format!("{}", args.file.display()))?;
            format!("license {} sequence {}", l.terms().id, l.terms().sequence)
        }
        LicenseUpdate::Revocation(r) => {
            r.verify(&vendor)
                .with_context(|| format!("{}", args.file.display()))?;
            format!(
                "revocation of license {} through sequence {}",
                r.license_id, r.through_sequence
            )
        }
    };
    let dir = &args.state_dir;
    let pid = running_tetherd(dir)?;
    let verdict_path = dir.join(VERDICT_FILE);
    let _ = std::fs::remove_file(&verdict_path);
    let pending = dir.join(PENDING_FILE);
    tether_keys::fsutil::write_atomic(&pending, &bytes, 0o644)?;
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    let sha = sha256_hex(&bytes);
    let started = Instant::now();
    loop {
        if let Ok(json) = std::fs::read(&verdict_path)
            && let Ok(v) = serde_json::from_slice::<Verdict>(&json)
            && v.file_sha256 == sha
        {
            if v.accepted {
                println!("tetherd accepted the {what}: {}", v.reason);
                return Ok(ExitCode::SUCCESS);
            }
            bail!("tetherd refused the {what}: {}", v.reason);
        }
        if started.elapsed() >= timeout {
            bail!(
                "no verdict from tetherd within {}; the file stays pending as {} and is read when tetherd next looks (at its next start at the latest)",
                humantime::format_duration(timeout),
                pending.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
