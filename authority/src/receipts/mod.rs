//! Work for the dongle beyond certificates: revocation receipts and site
//! requests (issue 17; `docs/formats.md`, "Revocation receipt", "Site
//! request", "Site request protocol").
//!
//! Both are asked for through files in the state directory, so they
//! survive restarts and wait for a dongle that is not plugged in:
//!
//! - installing a revocation that stops the served license writes
//!   `receipts/<license id>.pending` (the [`ReceiptRequest`], hex); the
//!   presence watchdog, while the licensed dongle is present, has it signed,
//!   checks it, writes `receipts/<license id>.receipt` (PEM, 0644, atomic)
//!   and removes the pending file;
//! - `tether site request` writes [`SITE_REQUEST_PENDING`] (a nonce, hex);
//!   the watchdog has the dongle sign the served license's id and sequence,
//!   the nonce and the time, and answers with [`SITE_REQUEST_FILE`] and
//!   [`SITE_REQUEST_VERDICT`].
//!
//! The license watcher ([`crate::license::watch`]) looks for pending files
//! at every poll and on SIGHUP and raises [`DongleJobs`]; the watchdog runs
//! them between heartbeats (`run`). Everything the dongle answers is
//! checked as a certificate is: the licensed key, the request echoed, the
//! serial, a counter above every one seen (then persisted).
//!
//! A signed receipt is never overwritten: the same revocation installed
//! again (or another one stopping the same license at the same sequence)
//! keeps the first receipt and asks the dongle for nothing; a revocation
//! that stops a later sequence of the same license gets its own file,
//! `<license id>.s<sequence>.receipt`. A dongle kind that cannot sign
//! receipts (FIDO2 today) is said so once, in the log and in `/status`
//! ([`overview`]); the receipt stays pending without being asked for
//! again until the next plug.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tether_dongle::{Dongle, LinkError};
use tether_keys::wire::{PresenceState, ReceiptEvent, ReceiptStatus, SiteRequestStatus};
use tether_keys::{Receipt, ReceiptRequest, Revocation, SiteRequestAsk, keyfile};

use crate::authority::Authority;

/// The receipts' folder, in the state directory.
pub const RECEIPTS_DIR: &str = "receipts";
/// Extension of a receipt waiting for the dongle, in [`RECEIPTS_DIR`].
pub const PENDING_EXT: &str = "pending";
/// Extension of a signed receipt, in [`RECEIPTS_DIR`].
pub const RECEIPT_EXT: &str = "receipt";
/// A site request waiting for the dongle, in the state directory.
pub const SITE_REQUEST_PENDING: &str = "site-request-pending.json";
/// The last signed site request (PEM), in the state directory.
pub const SITE_REQUEST_FILE: &str = "site-request.tether";
/// tetherd's answer to a site request, in the state directory.
pub const SITE_REQUEST_VERDICT: &str = "site-request-verdict.json";
/// After the dongle declines (or cannot do) a job, ask again after this long.
pub const RETRY: Duration = Duration::from_secs(30);

/// A site request asked for: [`SITE_REQUEST_PENDING`]'s content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRequestPending {
    /// The 32-byte nonce to sign, as 64 hex digits.
    pub nonce: String,
}

/// tetherd's answer to a site request: [`SITE_REQUEST_VERDICT`]'s content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRequestVerdict {
    /// The nonce asked for (hex): which request this answers.
    pub nonce: String,
    /// Whether [`SITE_REQUEST_FILE`] holds the signed request.
    pub accepted: bool,
    /// What was done, or why not.
    pub reason: String,
}

/// Whether the watchdog has dongle work to do.
#[derive(Debug, Default)]
pub struct DongleJobs {
    due: AtomicBool,
    hold_until: Mutex<Option<Instant>>,
    /// A refusal was logged at WARN; the ones that repeat go to DEBUG.
    warned: AtomicBool,
    /// The dongle kind cannot sign receipts: why, in words. Pending
    /// receipts are then not asked for until the next plug.
    unsupported: Mutex<Option<String>>,
}

impl DongleJobs {
    /// Asks the watchdog to look for work at its next step.
    pub fn wake(&self) {
        self.due.store(true, Ordering::Release);
    }

    /// Whether there is work and no hold-off after a refusal.
    pub fn due(&self) -> bool {
        self.due.load(Ordering::Acquire)
            && self.hold_until.lock().is_none_or(|t| Instant::now() >= t)
    }

    fn take(&self) {
        self.due.store(false, Ordering::Release);
    }

    fn hold_off(&self) {
        *self.hold_until.lock() = Some(Instant::now() + RETRY);
    }

    /// A newly verified dongle: retry at once.
    pub fn plugged(&self) {
        *self.hold_until.lock() = None;
        *self.unsupported.lock() = None;
    }

    /// Why the dongle kind cannot sign receipts, once it said so (until
    /// the next plug).
    pub fn unsupported(&self) -> Option<String> {
        self.unsupported.lock().clone()
    }
}

/// What [`Authority::ask_receipt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    /// The request waits in `receipts/<id>.pending` for the dongle.
    Pending,
    /// A receipt for this license at this sequence is already signed: it
    /// is kept (file name relative to the state directory, counter).
    AlreadySigned(String, u32),
}

/// The pending receipt file of license `id` in `state_dir`.
pub fn pending_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir
        .join(RECEIPTS_DIR)
        .join(format!("{id}.{PENDING_EXT}"))
}

/// The receipt file of license `id` in `state_dir` (the first one signed
/// for that license).
pub fn receipt_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir
        .join(RECEIPTS_DIR)
        .join(format!("{id}.{RECEIPT_EXT}"))
}

/// The receipt file for license `id` at `sequence` when `<id>.receipt`
/// already holds one for another sequence of the same license.
pub fn receipt_path_for_sequence(state_dir: &Path, id: &str, sequence: u64) -> PathBuf {
    state_dir
        .join(RECEIPTS_DIR)
        .join(format!("{id}.s{sequence}.{RECEIPT_EXT}"))
}

/// Every signed receipt in `state_dir`'s [`RECEIPTS_DIR`] that reads,
/// sorted by file name.
fn signed_receipts(state_dir: &Path) -> Vec<(PathBuf, Receipt)> {
    let mut found: Vec<(PathBuf, Receipt)> = std::fs::read_dir(state_dir.join(RECEIPTS_DIR))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == RECEIPT_EXT))
                .filter_map(|p| keyfile::read_receipt(&p).ok().map(|r| (p, r)))
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The signed receipt for license `id` at `sequence`, if there is one.
fn signed_receipt_for(state_dir: &Path, id: &str, sequence: u64) -> Option<(PathBuf, Receipt)> {
    signed_receipts(state_dir).into_iter().find(|(_, r)| {
        r.request.license_id.to_string() == id && r.request.license_sequence == sequence
    })
}

/// `path` relative to the state directory, for `/status` and `/events`
/// (which should not show local paths).
fn relative(state_dir: &Path, path: &Path) -> String {
    path.strip_prefix(state_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Why a job could not be done; the watchdog acts on it as on a failed
/// certificate.
#[derive(Debug)]
pub(crate) enum JobError {
    /// The link failed (gone, timed out, garbled).
    Link(LinkError),
    /// The dongle answered falsely (not the licensed key, another request,
    /// a counter that did not grow).
    Refused(String),
    /// The counter mark cannot be kept.
    State(crate::state::StateError),
}

impl Authority {
    /// Persists a receipt request for `rev`, which stopped the served
    /// license at `license_sequence`, and wakes the watchdog; or, when a
    /// receipt for that license at that sequence is already signed, keeps
    /// it and asks for nothing (the same revocation installed twice).
    ///
    /// # Errors
    /// When the pending file cannot be written (the revocation still holds).
    pub(crate) fn ask_receipt(
        &self,
        rev: &Revocation,
        license_sequence: u64,
    ) -> Result<Asked, String> {
        let id = rev.license_id.to_string();
        if let Some((path, receipt)) = signed_receipt_for(self.state_dir(), &id, license_sequence) {
            return Ok(Asked::AlreadySigned(
                relative(self.state_dir(), &path),
                receipt.counter,
            ));
        }
        let request = ReceiptRequest::for_revocation(rev, license_sequence, self.now());
        let path = pending_path(self.state_dir(), &id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        }
        tether_keys::fsutil::write_atomic(&path, hex(&request.encode()).as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
        self.jobs.wake();
        Ok(Asked::Pending)
    }

    /// Raises [`DongleJobs`] when a receipt or a site request waits (the
    /// license watcher calls it at every look). Pending receipts do not
    /// count while the dongle kind is known not to sign them.
    pub fn look_for_dongle_jobs(&self) {
        let dir = self.state_dir();
        let unsupported = self.jobs.unsupported().is_some();
        let receipts = !unsupported
            && std::fs::read_dir(dir.join(RECEIPTS_DIR)).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    Path::new(&e.file_name())
                        .extension()
                        .is_some_and(|x| x == PENDING_EXT)
                })
            });
        if receipts || dir.join(SITE_REQUEST_PENDING).exists() {
            self.jobs.wake();
        }
    }
}

/// Runs the waiting jobs on the licensed dongle, which the watchdog holds
/// present. Returns at the first link failure or false answer (the
/// watchdog then drops the dongle as after a failed certificate); a dongle
/// that declines leaves the job waiting and is asked again after [`RETRY`]
/// or at the next plug; a dongle kind that cannot sign receipts at all
/// ([`LinkError::Unsupported`]) is said so once (WARN, and `/status`) and
/// asked again only at the next plug.
pub(crate) fn run(dongle: &mut dyn Dongle, auth: &Authority) -> Result<(), JobError> {
    auth.jobs.take();
    let dir = auth.state_dir().to_path_buf();
    // The site request first: it answers a refusal itself, while a
    // refused receipt stops here and waits.
    let outcome = site_request(dongle, auth, &dir).and_then(|()| {
        if auth.jobs.unsupported().is_some() {
            Ok(())
        } else {
            receipts(dongle, auth, &dir)
        }
    });
    match outcome {
        Err(JobError::Link(e @ LinkError::Unsupported(_))) => {
            let message = format!(
                "{e}: revocation receipts stay pending in {RECEIPTS_DIR}/ (the revocation itself holds); \
                 they are signed once a dongle kind that can sign them (the native dongle) serves this license"
            );
            if auth.jobs.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(%message, "the dongle kind again cannot sign a revocation receipt");
            } else {
                tracing::warn!(event = "receipt_unsupported", %message, "this dongle kind cannot sign revocation receipts; not asked again until the next plug");
            }
            *auth.jobs.unsupported.lock() = Some(message);
            Ok(())
        }
        Err(JobError::Link(e @ LinkError::Declined(_))) => {
            if auth.jobs.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "the dongle again did not sign a revocation receipt");
            } else {
                tracing::warn!(error = %e, "the dongle did not sign a revocation receipt; it stays pending and is asked for every 30 s and at each plug");
            }
            auth.jobs.hold_off();
            auth.jobs.wake();
            Ok(())
        }
        Ok(()) => {
            auth.jobs.warned.store(false, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

fn pending_receipts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join(RECEIPTS_DIR))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == PENDING_EXT))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn receipts(dongle: &mut dyn Dongle, auth: &Authority, dir: &Path) -> Result<(), JobError> {
    for path in pending_receipts(dir) {
        let request = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| unhex(&t))
            .and_then(|b| ReceiptRequest::decode(&b).ok());
        let Some(request) = request else {
            // Kept for a look, out of the way: not asked for again and again.
            let aside = path.with_extension("invalid");
            tracing::error!(path = %path.display(), aside = %aside.display(), "not a pending receipt request; set aside");
            let _ = std::fs::rename(&path, &aside);
            continue;
        };
        let receipt = dongle.sign_receipt(&request).map_err(JobError::Link)?;
        let lic = auth.license();
        let terms = lic.terms();
        let Some(dongle_key) = terms.dongle.native() else {
            return Err(JobError::Refused(
                "the license names a FIDO2 dongle: native receipts do not apply".into(),
            ));
        };
        receipt.verify_signature(dongle_key).map_err(|_| {
            JobError::Refused(
                "receipt signature does not verify with the licensed dongle key".into(),
            )
        })?;
        if receipt.request != request {
            return Err(JobError::Refused(
                "the receipt answers another request (replayed or forged)".into(),
            ));
        }
        if receipt.serial != terms.dongle_serial {
            return Err(JobError::Refused(format!(
                "receipt names serial {}, not {}",
                receipt.serial, terms.dongle_serial
            )));
        }
        record_counter(auth, &receipt.serial, receipt.counter)?;
        let id = request.license_id.to_string();
        // Never over a signed receipt: one for this sequence already
        // there is kept (this one is dropped), one for another sequence
        // keeps its name and this one gets its own.
        if let Some((kept, old)) = signed_receipt_for(dir, &id, request.license_sequence) {
            tracing::info!(license = %id, kept = %kept.display(), counter = old.counter, "a receipt for this license and sequence was already signed; kept, the new one dropped");
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let first = receipt_path(dir, &id);
        let out = if first.exists() {
            receipt_path_for_sequence(dir, &id, request.license_sequence)
        } else {
            first
        };
        if let Err(e) = tether_keys::fsutil::write_atomic(
            &out,
            keyfile::receipt_pem(&receipt).as_bytes(),
            0o644,
        ) {
            tracing::error!(path = %out.display(), error = %e, "cannot write the revocation receipt; it is asked for again later");
            auth.jobs.hold_off();
            auth.jobs.wake();
            return Ok(());
        }
        let _ = std::fs::remove_file(&path);
        tracing::info!(
            event = "receipt_signed",
            license = %id,
            counter = receipt.counter,
            path = %out.display(),
            "the dongle signed the revocation receipt: send it to the vendor"
        );
        let file = relative(dir, &out);
        // No subscriber is not an error.
        let _ = auth.receipt_events.send(ReceiptEvent {
            license_id: id.clone(),
            license_sequence: request.license_sequence,
            revoked_through: request.revoked_through,
            dongle_serial: receipt.serial.clone(),
            counter: receipt.counter,
            message: format!(
                "the dongle signed the revocation receipt of license {id} (counter {}): send {file} from the state directory to the vendor",
                receipt.counter
            ),
            file,
        });
    }
    Ok(())
}

/// The receipts and the last site request as `/status` and the admin page
/// show them (`docs/api.md`, "GET /status"): every pending and signed
/// receipt in [`RECEIPTS_DIR`] (sorted by file name), and the state of
/// the last site request.
pub fn overview(auth: &Authority) -> (Vec<ReceiptStatus>, Option<SiteRequestStatus>) {
    let dir = auth.state_dir();
    let unsupported = auth.jobs.unsupported();
    let present = auth.status().state == PresenceState::Present;
    let mut list = Vec::new();
    for path in pending_receipts(dir) {
        let request = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| unhex(&t))
            .and_then(|b| ReceiptRequest::decode(&b).ok());
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (state, message) = match &unsupported {
            Some(why) => ("unsupported", why.clone()),
            None if present => ("pending", "the dongle is asked to sign it now".to_string()),
            None => (
                "pending",
                "waiting for the licensed dongle: signed once it is plugged in".to_string(),
            ),
        };
        list.push(ReceiptStatus {
            license_id: id,
            state: state.into(),
            file: relative(dir, &path),
            license_sequence: request.map(|r| r.license_sequence),
            counter: None,
            message,
        });
    }
    for (path, receipt) in signed_receipts(dir) {
        list.push(ReceiptStatus {
            license_id: receipt.request.license_id.to_string(),
            state: "signed".into(),
            file: relative(dir, &path),
            license_sequence: Some(receipt.request.license_sequence),
            counter: Some(receipt.counter),
            message: "signed by the dongle: send it to the vendor".into(),
        });
    }
    (list, site_request_status(dir))
}

fn site_request_status(dir: &Path) -> Option<SiteRequestStatus> {
    if let Ok(text) = std::fs::read(dir.join(SITE_REQUEST_PENDING)) {
        let nonce = serde_json::from_slice::<SiteRequestPending>(&text)
            .map(|p| p.nonce)
            .unwrap_or_default();
        return Some(SiteRequestStatus {
            state: "pending".into(),
            nonce,
            file: None,
            message: "waiting for the licensed dongle to sign it".into(),
        });
    }
    let verdict: SiteRequestVerdict =
        serde_json::from_slice(&std::fs::read(dir.join(SITE_REQUEST_VERDICT)).ok()?).ok()?;
    Some(SiteRequestStatus {
        state: if verdict.accepted {
            "signed"
        } else {
            "refused"
        }
        .into(),
        nonce: verdict.nonce,
        file: verdict.accepted.then(|| SITE_REQUEST_FILE.to_string()),
        message: verdict.reason,
    })
}

fn record_counter(auth: &Authority, serial: &str, counter: u32) -> Result<(), JobError> {
    auth.store
        .record_counter(serial, counter)
        .map_err(|e| match e {
            crate::state::StateError::CounterRollback { .. } => JobError::Refused(e.to_string()),
            other => JobError::State(other),
        })
}

fn site_request(dongle: &mut dyn Dongle, auth: &Authority, dir: &Path) -> Result<(), JobError> {
    let pending = dir.join(SITE_REQUEST_PENDING);
    let Ok(text) = std::fs::read(&pending) else {
        return Ok(());
    };
    let asked: Option<SiteRequestPending> = serde_json::from_slice(&text).ok();
    let nonce: Option<[u8; 32]> = asked
        .as_ref()
        .and_then(|a| unhex(&a.nonce))
        .and_then(|b| b.try_into().ok());
    let shown = asked.map(|a| a.nonce).unwrap_or_default();
    let Some(nonce) = nonce else {
        answer(
            dir,
            &shown,
            false,
            "not a site request (want {\"nonce\": 64 hex digits})".into(),
        );
        return Ok(());
    };
    let lic = auth.license();
    let terms = lic.terms();
    let ask = SiteRequestAsk {
        license_id: terms.id,
        license_sequence: terms.sequence,
        nonce,
        requested_at: auth.now(),
    };
    let signed = match dongle.sign_site_request(&ask) {
        Ok(s) => s,
        Err(e @ LinkError::Unsupported(_)) => {
            answer(
                dir,
                &shown,
                false,
                format!("{e}: make the site request with a native dongle serving this license"),
            );
            return Ok(());
        }
        Err(e @ LinkError::Declined(_)) => {
            answer(
                dir,
                &shown,
                false,
                format!("the dongle did not sign it: {e}"),
            );
            return Ok(());
        }
        Err(e) => return Err(JobError::Link(e)),
    };
    if signed.verify_signature().is_err() || terms.dongle.native() != Some(&signed.dongle_key) {
        return Err(JobError::Refused(
            "site request not signed by the licensed dongle key".into(),
        ));
    }
    if signed.ask != ask || signed.serial != terms.dongle_serial {
        return Err(JobError::Refused(
            "the site request answers another request or names another serial".into(),
        ));
    }
    record_counter(auth, &signed.serial, signed.counter)?;
    let out = dir.join(SITE_REQUEST_FILE);
    match tether_keys::fsutil::write_atomic(
        &out,
        keyfile::site_request_pem(&signed).as_bytes(),
        0o644,
    ) {
        Ok(()) => {
            tracing::info!(
                event = "site_request_signed",
                license = %terms.id,
                sequence = terms.sequence,
                counter = signed.counter,
                "the dongle signed a site request"
            );
            answer(
                dir,
                &shown,
                true,
                format!(
                    "signed by dongle {} at counter {}: license {} sequence {}",
                    signed.serial, signed.counter, terms.id, terms.sequence
                ),
            );
        }
        Err(e) => answer(
            dir,
            &shown,
            false,
            format!("cannot write {}: {e}", out.display()),
        ),
    }
    Ok(())
}

/// Writes the verdict and removes the pending request.
fn answer(dir: &Path, nonce: &str, accepted: bool, reason: String) {
    if !accepted {
        tracing::warn!(%reason, "site request refused");
    }
    let verdict = SiteRequestVerdict {
        nonce: nonce.to_string(),
        accepted,
        reason,
    };
    let json = serde_json::to_vec_pretty(&verdict).unwrap_or_default();
    if let Err(e) = tether_keys::fsutil::write_atomic(&dir.join(SITE_REQUEST_VERDICT), &json, 0o644)
    {
        tracing::error!(error = %e, "cannot write the site request verdict");
    }
    let _ = std::fs::remove_file(dir.join(SITE_REQUEST_PENDING));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use tether_dongle::native::{Client, NativeDongle, Timeouts};
    use tether_emulator::{Device, LocalTransport, Rules};
    use tether_keys::{LicenseId, UnixTime, testkeys};

    use super::*;
    use crate::authority::tests::{SERIAL, authority};

    fn dongle() -> Box<dyn Dongle> {
        let device = Device::new(testkeys::dongle(), SERIAL, Rules::default());
        let transport = LocalTransport::new(Arc::new(std::sync::Mutex::new(device)));
        let client = Client::open(Box::new(transport), Timeouts::default()).unwrap();
        Box::new(NativeDongle::from_client(client))
    }

    /// A dongle kind with neither command.
    #[derive(Debug)]
    struct Plain;
    impl Dongle for Plain {
        fn identify(&mut self) -> tether_dongle::Result<tether_dongle::Identity> {
            Err(LinkError::Absent)
        }
        fn prove_presence(
            &mut self,
            _: &[u8; 32],
        ) -> tether_dongle::Result<tether_dongle::PresenceProof> {
            Err(LinkError::Absent)
        }
        fn certify(
            &mut self,
            _: &tether_keys::DelegationRequest,
        ) -> tether_dongle::Result<tether_keys::Certificate> {
            Err(LinkError::Absent)
        }
        fn idle(&mut self, _: Duration) -> tether_dongle::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_pending_receipt_is_signed_checked_and_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = authority(dir.path());
        let rev = Revocation::sign(LicenseId([1; 16]), 1, UnixTime::now(), &testkeys::vendor());
        auth.ask_receipt(&rev, 1).unwrap();
        assert!(auth.jobs.due());
        let id = "01".repeat(16);
        // A dongle kind that cannot sign one: the request waits, the
        // overview says why, and it is not asked for again before a plug.
        run(&mut Plain, &auth).unwrap();
        assert!(pending_path(auth.state_dir(), &id).exists());
        assert!(!auth.jobs.due(), "not asked again after unsupported");
        auth.look_for_dongle_jobs();
        assert!(!auth.jobs.due(), "the watcher does not wake it either");
        let (list, site) = overview(&auth);
        assert!(site.is_none());
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].state, "unsupported");
        assert_eq!(list[0].license_id, id);
        assert_eq!(list[0].file, format!("receipts/{id}.pending"));
        assert_eq!(list[0].license_sequence, Some(1));
        assert!(
            list[0]
                .message
                .contains("not supported by this dongle kind"),
            "{}",
            list[0].message
        );
        auth.jobs.plugged();
        auth.look_for_dongle_jobs();
        assert!(auth.jobs.due());
        assert_eq!(overview(&auth).0[0].state, "pending");
        let mut events = auth.receipt_events.subscribe();
        let mut d = dongle();
        run(d.as_mut(), &auth).unwrap();
        assert!(!pending_path(auth.state_dir(), &id).exists());
        let receipt = keyfile::read_receipt(&receipt_path(auth.state_dir(), &id)).unwrap();
        receipt.verify(&auth.license()).unwrap();
        receipt.answers(&rev).unwrap();
        assert_eq!(auth.store.counter(SERIAL), Some(receipt.counter));
        let ev = events.try_recv().unwrap();
        assert_eq!(ev.license_id, id);
        assert_eq!(ev.counter, receipt.counter);
        assert_eq!(ev.file, format!("receipts/{id}.receipt"));
        let (list, _) = overview(&auth);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].state, "signed");
        assert_eq!(list[0].counter, Some(receipt.counter));
        // The same revocation again: the signed receipt is kept, nothing
        // is asked of the dongle.
        let again = auth.ask_receipt(&rev, 1).unwrap();
        assert_eq!(
            again,
            Asked::AlreadySigned(format!("receipts/{id}.receipt"), receipt.counter)
        );
        assert!(!pending_path(auth.state_dir(), &id).exists());
        // A pending request for the same sequence left from before (an
        // older tetherd) is signed but does not overwrite the receipt.
        let before = std::fs::read(receipt_path(auth.state_dir(), &id)).unwrap();
        let later =
            ReceiptRequest::for_revocation(&rev, 1, UnixTime::now() + Duration::from_secs(9));
        std::fs::write(pending_path(auth.state_dir(), &id), hex(&later.encode())).unwrap();
        auth.look_for_dongle_jobs();
        run(d.as_mut(), &auth).unwrap();
        assert!(!pending_path(auth.state_dir(), &id).exists());
        assert_eq!(
            std::fs::read(receipt_path(auth.state_dir(), &id)).unwrap(),
            before
        );
        // One for a later sequence of the license gets its own file.
        let rev2 = Revocation::sign(LicenseId([1; 16]), 2, UnixTime::now(), &testkeys::vendor());
        assert_eq!(auth.ask_receipt(&rev2, 2).unwrap(), Asked::Pending);
        run(d.as_mut(), &auth).unwrap();
        assert_eq!(
            std::fs::read(receipt_path(auth.state_dir(), &id)).unwrap(),
            before
        );
        let second =
            keyfile::read_receipt(&receipt_path_for_sequence(auth.state_dir(), &id, 2)).unwrap();
        assert_eq!(second.request.license_sequence, 2);
        assert!(second.counter > receipt.counter);
        assert_eq!(overview(&auth).0.len(), 2);
        // The watcher finds nothing more to do.
        auth.jobs.take();
        auth.look_for_dongle_jobs();
        assert!(!auth.jobs.due());
        // A garbled pending file is set aside, not retried for ever.
        std::fs::write(pending_path(auth.state_dir(), &id), "zz").unwrap();
        auth.look_for_dongle_jobs();
        assert!(auth.jobs.due());
        run(d.as_mut(), &auth).unwrap();
        assert!(!pending_path(auth.state_dir(), &id).exists());
        assert!(
            pending_path(auth.state_dir(), &id)
                .with_extension("invalid")
                .exists()
        );
        auth.look_for_dongle_jobs();
        assert!(!auth.jobs.due());
    }

    #[test]
    fn a_site_request_is_answered_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = authority(dir.path());
        let d = auth.state_dir().to_path_buf();
        let nonce = hex(&[7; 32]);
        std::fs::write(
            d.join(SITE_REQUEST_PENDING),
            serde_json::to_vec(&SiteRequestPending {
                nonce: nonce.clone(),
            })
            .unwrap(),
        )
        .unwrap();
        auth.look_for_dongle_jobs();
        assert!(auth.jobs.due());
        let mut dongle = dongle();
        run(dongle.as_mut(), &auth).unwrap();
        let verdict: SiteRequestVerdict =
            serde_json::from_slice(&std::fs::read(d.join(SITE_REQUEST_VERDICT)).unwrap()).unwrap();
        assert!(verdict.accepted, "{verdict:?}");
        assert_eq!(verdict.nonce, nonce);
        let req = keyfile::read_site_request(&d.join(SITE_REQUEST_FILE)).unwrap();
        req.verify(&auth.license()).unwrap();
        assert_eq!(req.ask.nonce, [7; 32]);
        assert!(!d.join(SITE_REQUEST_PENDING).exists());
        std::fs::write(d.join(SITE_REQUEST_PENDING), b"{\"nonce\": \"zz\"}").unwrap();
        auth.look_for_dongle_jobs();
        run(dongle.as_mut(), &auth).unwrap();
        let verdict: SiteRequestVerdict =
            serde_json::from_slice(&std::fs::read(d.join(SITE_REQUEST_VERDICT)).unwrap()).unwrap();
        assert!(!verdict.accepted);
        assert!(!d.join(SITE_REQUEST_PENDING).exists());
        assert_eq!(unhex("0aFf"), Some(vec![10, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("é1"), None);
    }
}
