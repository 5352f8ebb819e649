//! The license being served, and its replacement while tokens are issued.
//!
//! The active license sits behind an `ArcSwap` in [`Authority`]: each request
//! loads one version and uses it from start to end, so a replacement never
//! leaves a gap in issuance nor mixes two versions in one token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tether_keys::keyfile::{self, LicenseUpdate};
use tether_keys::{License, PublicKey, Revocation, UnixTime, Vendor};
use tokio_util::sync::CancellationToken;

use crate::authority::Authority;

/// Where `tether license install` puts a license or revocation for the
/// running tetherd to read, in the state directory.
pub const PENDING_FILE: &str = "license-pending.tether";
/// Where tetherd answers, in the state directory.
pub const VERDICT_FILE: &str = "license-verdict.json";
/// The last license installed, in the state directory: preferred at start
/// over `--license` when it is the same license at a higher sequence.
pub const ACTIVE_FILE: &str = "license.tether";
/// tetherd's process id, in the state directory, while it runs.
pub const PID_FILE: &str = "tetherd.pid";
/// How often the state directory is looked at for a pending file.
pub const POLL: Duration = Duration::from_millis(500);
/// Warn daily once the license ends within this long.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// tetherd's answer to an install, written to [`VERDICT_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// SHA-256 (hex) of the pending file's bytes: which install this answers.
    pub file_sha256: String,
    /// Whether the update is in effect.
    pub accepted: bool,
    /// The sequence of the license or, for a revocation, the sequence it
    /// revokes through (`null` when the file did not decode).
    pub sequence: Option<u64>,
    /// Why it was refused, or what was done.
    pub reason: String,
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The license being served, with what every token derives from it,
/// computed once per license. Dereferences to the [`License`].
#[derive(Debug)]
pub struct ActiveLicense {
    license: License,
    pub(crate) lic_b64: String,
    pub(crate) issuer: String,
}

impl ActiveLicense {
    pub(crate) fn new(license: License) -> Self {
        ActiveLicense {
            lic_b64: URL_SAFE_NO_PAD.encode(license.encoded()),
            issuer: tether_keys::claims::issuer_for(&license.terms().dongle_serial),
            license,
        }
    }
}

impl std::ops::Deref for ActiveLicense {
    type Target = License;
    fn deref(&self) -> &License {
        &self.license
    }
}

impl Authority {
    /// Serves `new` from the next request on, with no gap: requests under
    /// way finish with the license they started with. `new` must already
    /// verify under the vendor key; it must be the same license (same id,
    /// same dongle) at a higher sequence. Seat counts follow it.
    ///
    /// # Errors
    /// The reason `new` cannot replace the current license; the current one
    /// keeps serving.
    pub fn replace_license(&self, new: License) -> Result<(), String> {
        self.check_replacement(&new)?;
        self.swap(new);
        Ok(())
    }

    fn swap(&self, new: License) {
        for service in &new.terms().services {
            self.leases
                .set_seats(service, new.terms().seats_for(service));
        }
        self.license_slot().store(Arc::new(ActiveLicense::new(new)));
    }

    fn check_replacement(&self, new: &License) -> Result<(), String> {
        let current = self.license();
        let (old, next) = (current.terms(), new.terms());
        if next.id != old.id {
            return Err(format!("license {} is not license {}", next.id, old.id));
        }
        if next.dongle_serial != old.dongle_serial || next.dongle != old.dongle {
            return Err("a license update cannot change the dongle".into());
        }
        if next.sequence <= old.sequence {
            return Err(format!(
                "sequence {} is not above the installed {}",
                next.sequence, old.sequence
            ));
        }
        let id = next.id.to_string();
        if let Some(high) = self.store.license_sequence(&id)
            && next.sequence <= high
        {
            return Err(format!(
                "sequence {} is not above {high}, the highest ever installed here",
                next.sequence
            ));
        }
        Ok(())
    }

    /// Whether an installed revocation covers the license being served.
    pub fn is_revoked(&self) -> bool {
        self.license().terms().sequence < self.revoked_below.load(Ordering::Relaxed)
    }

    /// The state directory (where `state.json` is).
    pub fn state_dir(&self) -> &Path {
        self.store.path().parent().unwrap_or(Path::new("."))
    }

    /// Installs a license update or a revocation, already decoded: checks
    /// it under `vendor`, persists it (the highest sequence or the
    /// revocation in `state.json`, the license as [`ACTIVE_FILE`]) and puts
    /// it in effect. Returns what was done.
    ///
    /// # Errors
    /// Why it was refused; what was served before keeps serving.
    pub fn install(
        &self,
        update: LicenseUpdate,
        vendor: &PublicKey<Vendor>,
    ) -> Result<String, String> {
        match update {
            LicenseUpdate::License(new) => {
                new.verify(vendor).map_err(|e| e.to_string())?;
                self.check_replacement(&new)?;
                let t = new.terms();
                let (id, seq) = (t.id.to_string(), t.sequence);
                tether_keys::fsutil::write_atomic(
                    &self.state_dir().join(ACTIVE_FILE),
                    keyfile::license_pem(&new).as_bytes(),
                    0o644,
                )
                .map_err(|e| format!("cannot keep the license: {e}"))?;
                self.store
                    .record_license_sequence(&id, seq)
                    .map_err(|e| e.to_string())?;
                let old = self.license().terms().sequence;
                self.swap(*new);
                Ok(format!(
                    "license {id} sequence {seq} replaces sequence {old}"
                ))
            }
            LicenseUpdate::Revocation(rev) => self.revoke(&rev, vendor),
        }
    }

    fn revoke(&self, rev: &Revocation, vendor: &PublicKey<Vendor>) -> Result<String, String> {
        rev.verify(vendor).map_err(|e| e.to_string())?;
        let lic = self.license();
        if rev.license_id != lic.terms().id {
            return Err(format!(
                "the revocation is for license {}, not the installed {}",
                rev.license_id,
                lic.terms().id
            ));
        }
        let id = rev.license_id.to_string();
        self.store
            .record_revocation(&id, rev.through_sequence)
            .map_err(|e| e.to_string())?;
        self.revoked_below
            .fetch_max(rev.through_sequence.saturating_add(1), Ordering::Relaxed);
        Ok(if self.is_revoked() {
            format!(
                "license {id} revoked through sequence {}: no more tokens",
                rev.through_sequence
            )
        } else {
            format!(
                "license {id} revoked through sequence {}; the installed sequence {} is later and keeps serving",
                rev.through_sequence,
                lic.terms().sequence
            )
        })
    }

    /// Reads, applies and answers the pending file, if there is one: the
    /// verdict goes to [`VERDICT_FILE`] and the log, the pending file is
    /// removed. Returns the verdict.
    pub fn process_pending(&self, vendor: &PublicKey<Vendor>) -> Option<Verdict> {
        let dir = self.state_dir().to_path_buf();
        let pending = dir.join(PENDING_FILE);
        let bytes = std::fs::read(&pending).ok()?;
        let file_sha256 = sha256_hex(&bytes);
        let update = std::str::from_utf8(&bytes)
            .map_err(|_| "not a license or revocation file (not UTF-8)".to_string())
            .and_then(|text| keyfile::parse_update(&pending, text).map_err(|e| e.to_string()));
        let sequence = match &update {
            Ok(LicenseUpdate::License(l)) => Some(l.terms().sequence),
            Ok(LicenseUpdate::Revocation(r)) => Some(r.through_sequence),
            Err(_) => None,
        };
        let outcome = update.and_then(|u| self.install(u, vendor));
        let verdict = Verdict {
            file_sha256,
            accepted: outcome.is_ok(),
            sequence,
            reason: match outcome {
                Ok(done) | Err(done) => done,
            },
        };
        if verdict.accepted {
            tracing::info!(event = "license_installed", sequence, reason = %verdict.reason, "license update installed");
        } else {
            tracing::warn!(event = "license_refused", sequence, reason = %verdict.reason, "license update refused; the installed license keeps serving");
        }
        let json = serde_json::to_vec_pretty(&verdict).unwrap_or_default();
        if let Err(e) = tether_keys::fsutil::write_atomic(&dir.join(VERDICT_FILE), &json, 0o644) {
            tracing::error!(error = %e, "cannot write the license verdict");
        }
        let _ = std::fs::remove_file(&pending);
        // No subscriber is not an error.
        let _ = self.license_events.send(verdict.clone());
        Some(verdict)
    }
}

/// Whether to warn that the license ends soon: within
/// [`EXPIRY_WARNING`] of `not_after`, and not warned in the last day.
pub fn expiry_warning_due(now: UnixTime, not_after: UnixTime, last: Option<UnixTime>) -> bool {
    let soon = now < not_after && not_after.saturating_duration_since(now) <= EXPIRY_WARNING;
    soon && last.is_none_or(|l| now.saturating_duration_since(l) >= Duration::from_secs(86_400))
}

/// Watches the state directory for a pending license or revocation (every
/// [`POLL`], and at once on [`Authority::license_check`]: SIGHUP), and warns
/// daily while the license ends within [`EXPIRY_WARNING`]. Returns when
/// `stopping` is cancelled.
pub async fn watch(auth: Arc<Authority>, vendor: PublicKey<Vendor>, stopping: CancellationToken) {
    let mut last_warned = None;
    loop {
        auth.process_pending(&vendor);
        let now = auth.now();
        let not_after = auth.license().terms().not_after;
        if expiry_warning_due(now, not_after, last_warned) {
            last_warned = Some(now);
            let left = humantime::format_duration(not_after.saturating_duration_since(now));
            tracing::warn!(
                not_after = %crate::state::rfc3339(not_after),
                "the license ends in {left}: ask the vendor for an update and install it with `tether license install`"
            );
        }
        tokio::select! {
            () = stopping.cancelled() => return,
            () = auth.license_check.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The license to start with: `given` (from `--license`), or the one kept in
/// `state_dir` by the last install when it is the same license at a higher
/// sequence.
pub fn prefer_installed(given: License, state_dir: &Path, vendor: &PublicKey<Vendor>) -> License {
    let path: PathBuf = state_dir.join(ACTIVE_FILE);
    if !path.exists() {
        return given;
    }
    match keyfile::read_license(&path).and_then(|l| l.verify(vendor).map(|()| l)) {
        Ok(kept) => {
            let (k, g) = (kept.terms(), given.terms());
            if k.id == g.id
                && k.dongle == g.dongle
                && k.dongle_serial == g.dongle_serial
                && k.sequence > g.sequence
            {
                tracing::info!(
                    path = %path.display(),
                    sequence = k.sequence,
                    given = g.sequence,
                    "starting on the installed license, later than --license"
                );
                kept
            } else {
                given
            }
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the installed license");
            given
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tether_keys::wire::RefusalCode;
    use tether_keys::{LicenseId, testkeys};

    use super::*;
    use crate::authority::tests::{authority, session};

    fn pend(auth: &Authority, text: &str) -> Verdict {
        std::fs::write(auth.state_dir().join(PENDING_FILE), text).unwrap();
        let v = auth.process_pending(&testkeys::vendor().public()).unwrap();
        assert!(!auth.state_dir().join(PENDING_FILE).exists());
        let written: Verdict =
            serde_json::from_slice(&std::fs::read(auth.state_dir().join(VERDICT_FILE)).unwrap())
                .unwrap();
        assert_eq!(written, v);
        assert_eq!(v.file_sha256, sha256_hex(text.as_bytes()));
        v
    }

    fn version(auth: &Authority, sequence: u64) -> String {
        let mut terms = auth.license().terms().clone();
        terms.sequence = sequence;
        keyfile::license_pem(&terms.sign(&testkeys::vendor()).unwrap())
    }

    /// An install answers with a verdict, keeps the license for a restart,
    /// persists the highest sequence, and never goes back.
    #[test]
    fn pending_updates_are_verified_applied_kept_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(UnixTime::now().secs() - 30), 1);
        assert!(auth.process_pending(&testkeys::vendor().public()).is_none());
        let v = pend(&auth, &version(&auth, 3));
        assert!(v.accepted, "{v:?}");
        assert_eq!(v.sequence, Some(3));
        assert_eq!(auth.license().terms().sequence, 3);
        assert_eq!(auth.store.license_sequence(&"01".repeat(16)), Some(3));
        let kept = keyfile::read_license(&auth.state_dir().join(ACTIVE_FILE)).unwrap();
        assert_eq!(kept.terms().sequence, 3);
        for older in [3, 2] {
            let v = pend(&auth, &version(&auth, older));
            assert!(!v.accepted);
            assert!(v.reason.contains("not above"), "{v:?}");
        }
        // Another vendor's, and garbage, are refused with a reason.
        let mut terms = auth.license().terms().clone();
        terms.sequence = 9;
        let foreign = terms
            .sign(&tether_keys::SecretKey::<Vendor>::generate())
            .unwrap();
        assert!(!pend(&auth, &keyfile::license_pem(&foreign)).accepted);
        let v = pend(&auth, "hello");
        assert!(!v.accepted && v.sequence.is_none(), "{v:?}");
        assert_eq!(auth.license().terms().sequence, 3);
        auth.issue(Some(&secret), None).unwrap();
        // At a restart, the kept license wins over an older --license.
        let given =
            License::decode(&URL_SAFE_NO_PAD.decode(&auth.license().lic_b64).unwrap()).unwrap();
        let mut t1 = given.terms().clone();
        t1.sequence = 1;
        let one = t1.sign(&testkeys::vendor()).unwrap();
        let chosen = prefer_installed(one, auth.state_dir(), &testkeys::vendor().public());
        assert_eq!(chosen.terms().sequence, 3);
    }

    /// A revocation stops issuance with `license_revoked`, persists, and
    /// one for another license is refused.
    #[test]
    fn a_revocation_refuses_tokens_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(UnixTime::now().secs() - 30), 1);
        let vendor = testkeys::vendor();
        let other = Revocation::sign(LicenseId([9; 16]), 5, UnixTime::now(), &vendor);
        assert!(!pend(&auth, &keyfile::revocation_pem(&other)).accepted);
        assert!(auth.issue(Some(&secret), None).is_ok());
        let rev = Revocation::sign(LicenseId([1; 16]), 1, UnixTime::now(), &vendor);
        let v = pend(&auth, &keyfile::revocation_pem(&rev));
        assert!(v.accepted, "{v:?}");
        assert!(auth.is_revoked());
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::LicenseRevoked);
        assert_eq!(refused.http_status(), 403);
        assert_eq!(
            auth.ready().unwrap_err().kind(),
            RefusalCode::LicenseRevoked
        );
        assert_eq!(auth.store.revoked_through(&"01".repeat(16)), Some(1));
        drop(auth);
        let (again, _) = authority(dir.path());
        assert!(again.is_revoked());
    }

    #[test]
    fn expiry_warnings_come_daily_in_the_last_two_weeks() {
        let t = UnixTime::from_secs;
        let end = t(100 * 86_400);
        assert!(!expiry_warning_due(t(80 * 86_400), end, None));
        assert!(expiry_warning_due(t(86 * 86_400), end, None));
        let warned = Some(t(86 * 86_400));
        assert!(!expiry_warning_due(t(86 * 86_400 + 3600), end, warned));
        assert!(expiry_warning_due(t(87 * 86_400), end, warned));
        assert!(!expiry_warning_due(t(101 * 86_400), end, None));
    }
}
