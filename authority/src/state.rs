//! Persisted high-water marks: the wall clock and each dongle's counter.
//!
//! The clock mark defends against rollback: a customer who sets the VM's
//! clock back cannot make the authority date tokens in the past of tokens it
//! already issued. The counter mark defends against clones: a dongle whose
//! signature counter is below the highest one seen is refused. Both are kept
//! in `STATE_DIR/state.json`, replaced atomically (temp file, fsync, rename).
//!
//! One process owns a state directory at a time: [`StateStore::open`] takes
//! an exclusive lock on `STATE_DIR/state.lock` for as long as the store
//! lives, so a second `tetherd`, or `tether state reset-clock` while
//! `tetherd` runs, is refused rather than racing it.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tether_keys::UnixTime;
use tether_keys::keyfile::{Overwrite, write_file};

/// What is persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// The latest wall-clock time the authority has seen (UNIX seconds in
    /// the file).
    pub clock: UnixTime,
    /// The highest signature counter seen, by dongle serial.
    pub counters: BTreeMap<String, u32>,
    /// Instances holding a seat of a seat-limited service, by service
    /// (`leases.rs`): after a restart each keeps its seat for one token
    /// lifetime plus leeway.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leases: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// The highest sequence ever installed, by license id (hex): an older
    /// version of a license is refused, at start and on install, even after
    /// a restart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub license_sequence: BTreeMap<String, u64>,
    /// Installed revocations, by license id (hex): every sequence up to and
    /// including this one is revoked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked: BTreeMap<String, u64>,
    /// Expiry notices already given (`license::expiry`), by license id
    /// (hex): for which sequence, and which notices (`warn-<seconds>`,
    /// `grace`, `expired`). A new sequence starts afresh; a restart does
    /// not repeat one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expiry_notices: BTreeMap<String, ExpiryNotices>,
}

/// The expiry notices given for one license (`Marks::expiry_notices`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryNotices {
    /// The license sequence they were given for.
    pub sequence: u64,
    /// The notices given.
    pub given: std::collections::BTreeSet<String>,
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another process (a running `tetherd`) holds the state directory.
    #[error(
        "{0}: the state directory is in use by another process (a running tetherd?); stop it first"
    )]
    Busy(PathBuf),
    /// The state file exists but cannot be parsed.
    #[error("{0}: corrupt state file ({1}); refusing to guess the high-water marks")]
    Corrupt(PathBuf, String),
    /// The state could not be read or written.
    #[error(transparent)]
    Io(#[from] tether_keys::Error),
    /// A dongle counter that did not increase: a clone, or a replayed answer.
    #[error("dongle counter went backwards ({counter} after {seen}): possible clone or replay")]
    CounterRollback {
        /// Highest counter seen before.
        seen: u32,
        /// Counter offered now.
        counter: u32,
    },
}

/// `t` as RFC 3339 in UTC, for messages a person reads.
pub fn rfc3339(t: UnixTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.secs()),
    )
}

/// What an operator reads when the system clock is behind the clock mark:
/// both instants, and what to do in either case (which of the two is wrong
/// only the operator can tell).
pub fn clock_behind_advice(now: UnixTime, mark: UnixTime, state_file: &Path) -> String {
    let at = rfc3339;
    let behind = humantime::format_duration(mark.saturating_duration_since(now));
    let dir = state_file.parent().unwrap_or(Path::new("."));
    format!(
        "system clock {} is {behind} behind the latest time this authority has seen, {} (kept in {}). \
         If the system clock is wrong, set it right (NTP, timedatectl). If it is right, the stored mark is \
         wrong (written while the clock ran ahead): stop tetherd and run `tether state reset-clock --state-dir {}`",
        at(now),
        at(mark),
        state_file.display(),
        dir.display()
    )
}

/// The state file and its in-memory copy.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    marks: Mutex<Marks>,
    /// Holds the directory's lock until the store is dropped.
    _lock: std::fs::File,
}

impl StateStore {
    /// Opens (or starts) the state file in `dir`, creating `dir` if needed,
    /// and locks the directory for this process.
    ///
    /// # Errors
    /// [`StateError::Busy`] when another process holds the directory,
    /// [`StateError::Corrupt`] when `state.json` does not parse,
    /// [`StateError::Io`] when the directory or file cannot be read.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let io = |path: &Path, e: std::io::Error| {
            StateError::Io(tether_keys::Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join("state.lock");
        let lock = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| io(&lock_path, e))?
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Busy(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
        let path = dir.join("state.json");
        let marks = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StateError::Corrupt(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Marks::default(),
            Err(e) => {
                return Err(StateError::Io(tether_keys::Error::Io {
                    path: path.clone(),
                    source: e,
                }));
            }
        };
        Ok(StateStore {
            path,
            marks: Mutex::new(marks),
            _lock: lock,
        })
    }

    /// A copy of the marks.
    pub fn marks(&self) -> Marks {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Marks> {
        // parking_lot does not poison: a panic elsewhere leaves the marks
        // usable, as they are only replaced whole after a successful write.
        self.marks.lock()
    }

    /// Raises the clock mark to `now` (never lowers it),
    /// and persists.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the state file cannot be written; the mark is
    /// then not raised.
    pub fn advance_clock(&self, now: UnixTime) -> Result<(), StateError> {
        let mut marks = self.lock();
        if now <= marks.clock {
            return Ok(());
        }
        let mut next = marks.clone();
        next.clock = now;
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// Sets the clock mark to `now`, lowering it: the operator's way back
    /// after the clock ran ahead by mistake (`docs/deploy-vm.md`). Returns
    /// the mark it replaced. Safe to offer: the mark only keeps an honest
    /// authority from dating tokens in the past; how far ahead certificates
    /// reach is bounded by the dongle (`docs/dongle-protocol.md`, section 6).
    ///
    /// # Errors
    /// [`StateError::Io`] when the state file cannot be written.
    pub fn reset_clock(&self, now: UnixTime) -> Result<UnixTime, StateError> {
        let mut marks = self.lock();
        let old = marks.clock;
        let mut next = marks.clone();
        next.clock = now;
        self.persist(&next)?;
        *marks = next;
        Ok(old)
    }

    /// Persists the holders of seat-limited services' seats, as `holders`
    /// gives them. It is called with the state locked, so that concurrent
    /// writers cannot persist their snapshots out of order (a stale one
    /// written last would drop seats still held).
    ///
    /// # Errors
    /// [`StateError::Io`] when the state file cannot be written.
    pub fn record_leases(
        &self,
        holders: impl FnOnce() -> BTreeMap<String, std::collections::BTreeSet<String>>,
    ) -> Result<(), StateError> {
        let mut marks = self.lock();
        let leases = holders();
        if marks.leases == leases {
            return Ok(());
        }
        let mut next = marks.clone();
        next.leases = leases;
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a dongle's counter; refuses one that goes backwards (or repeats).
    /// Fails closed: a counter that cannot be persisted is not accepted, since
    /// after a restart the clone check would no longer know it.
    ///
    /// # Errors
    ///
    /// [`StateError::CounterRollback`] for a counter not above the one seen;
    /// [`StateError`] when the state file cannot be written.
    pub fn record_counter(&self, serial: &str, counter: u32) -> Result<(), StateError> {
        let mut marks = self.lock();
        if let Some(seen) = marks.counters.get(serial).copied()
            && counter <= seen
        {
            return Err(StateError::CounterRollback { seen, counter });
        }
        let mut next = marks.clone();
        next.counters.insert(serial.to_string(), counter);
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// Records a FIDO2 key's signCount (`docs/dongle-protocol.md`, section
    /// 8.5; WebAuthn Level 2, section 7.2, step 21): it may never go down
    /// across accepted certificates; 0 means "no counter" and is allowed
    /// (and recorded nowhere) only while no count was seen: a key that
    /// counted never answers 0 for the same credential, and a clone that
    /// holds the key picks the signCount it signs, so 0 after a count would
    /// let it run unnoticed beside the original. Equal is allowed: some keys
    /// count per credential and some do not count every assertion. Fails
    /// closed like [`StateStore::record_counter`].
    ///
    /// # Errors
    ///
    /// [`StateError::CounterRollback`] for a counter (0 included) below the
    /// one seen; [`StateError`] when the state file cannot be written.
    pub fn record_fido2_counter(&self, serial: &str, counter: u32) -> Result<(), StateError> {
        let mut marks = self.lock();
        let seen = marks.counters.get(serial).copied();
        if counter == 0 && seen.is_none() {
            return Ok(());
        }
        if let Some(seen) = seen
            && counter < seen
        {
            return Err(StateError::CounterRollback { seen, counter });
        }
        if seen == Some(counter) {
            return Ok(());
        }
        let mut next = marks.clone();
        next.counters.insert(serial.to_string(), counter);
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// Raises the highest installed sequence of license `id` to `sequence`
    /// (never lowers it), and persists.
    ///
    /// # Errors
    /// [`StateError::Io`] when the state file cannot be written.
    pub fn record_license_sequence(&self, id: &str, sequence: u64) -> Result<(), StateError> {
        self.raise(|m| &mut m.license_sequence, id, sequence)
    }

    /// The highest sequence of license `id` ever installed here.
    pub fn license_sequence(&self, id: &str) -> Option<u64> {
        self.lock().license_sequence.get(id).copied()
    }

    /// Records a revocation of license `id` through `sequence` (a higher
    /// one already recorded stays), and persists.
    ///
    /// # Errors
    /// [`StateError::Io`] when the state file cannot be written.
    pub fn record_revocation(&self, id: &str, sequence: u64) -> Result<(), StateError> {
        self.raise(|m| &mut m.revoked, id, sequence)
    }

    /// The sequence through which license `id` is revoked, if it is.
    pub fn revoked_through(&self, id: &str) -> Option<u64> {
        self.lock().revoked.get(id).copied()
    }

    fn raise(
        &self,
        map: impl Fn(&mut Marks) -> &mut BTreeMap<String, u64>,
        id: &str,
        value: u64,
    ) -> Result<(), StateError> {
        let mut marks = self.lock();
        if map(&mut marks).get(id).is_some_and(|v| *v >= value) {
            return Ok(());
        }
        let mut next = marks.clone();
        map(&mut next).insert(id.to_string(), value);
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// The expiry notices given for license `id` at `sequence` (none when
    /// those recorded are for another sequence).
    pub fn expiry_notices(&self, id: &str, sequence: u64) -> std::collections::BTreeSet<String> {
        self.lock()
            .expiry_notices
            .get(id)
            .filter(|n| n.sequence == sequence)
            .map(|n| n.given.clone())
            .unwrap_or_default()
    }

    /// Records `notices` as given for license `id` at `sequence` (replacing
    /// those of another sequence), and persists.
    ///
    /// # Errors
    /// [`StateError::Io`] when the state file cannot be written.
    pub fn record_expiry_notices(
        &self,
        id: &str,
        sequence: u64,
        notices: impl IntoIterator<Item = String>,
    ) -> Result<(), StateError> {
        let mut marks = self.lock();
        let mut next = marks.clone();
        let entry = next.expiry_notices.entry(id.to_string()).or_default();
        if entry.sequence != sequence {
            *entry = ExpiryNotices {
                sequence,
                given: Default::default(),
            };
        }
        entry.given.extend(notices);
        if next == *marks {
            return Ok(());
        }
        self.persist(&next)?;
        *marks = next;
        Ok(())
    }

    /// The highest counter seen for `serial`.
    pub fn counter(&self, serial: &str) -> Option<u32> {
        self.lock().counters.get(serial).copied()
    }

    fn persist(&self, marks: &Marks) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(marks).unwrap_or_default();
        write_file(&self.path, &json, 0o600, Overwrite::Replace)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_rise_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.advance_clock(UnixTime::from_secs(100)).unwrap();
        store.advance_clock(UnixTime::from_secs(50)).unwrap();
        store.record_counter("TD-1", 5).unwrap();
        assert!(matches!(
            store.record_counter("TD-1", 5),
            Err(StateError::CounterRollback {
                seen: 5,
                counter: 5
            })
        ));
        assert!(store.record_counter("TD-1", 4).is_err());
        store.record_counter("TD-1", 6).unwrap();
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        assert_eq!(again.marks().clock.secs(), 100);
        assert_eq!(again.counter("TD-1"), Some(6));
    }

    /// FIDO2 signCount: never down, equal allowed, 0 = no counter allowed
    /// only before any count was seen (a clone answering 0 after the
    /// original counted is a rollback); persisted like a native counter.
    #[test]
    fn fido2_counters_never_go_down_and_zero_is_no_counter() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.record_fido2_counter("fido2-ab", 0).unwrap();
        assert_eq!(store.counter("fido2-ab"), None);
        store.record_fido2_counter("fido2-ab", 10).unwrap();
        store.record_fido2_counter("fido2-ab", 10).unwrap();
        assert!(matches!(
            store.record_fido2_counter("fido2-ab", 9),
            Err(StateError::CounterRollback {
                seen: 10,
                counter: 9
            })
        ));
        assert!(matches!(
            store.record_fido2_counter("fido2-ab", 0),
            Err(StateError::CounterRollback {
                seen: 10,
                counter: 0
            })
        ));
        assert_eq!(store.counter("fido2-ab"), Some(10));
        store.record_fido2_counter("fido2-ab", 12).unwrap();
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        assert_eq!(again.counter("fido2-ab"), Some(12));
        assert!(again.record_fido2_counter("fido2-ab", 11).is_err());
    }

    #[test]
    fn one_process_at_a_time_and_the_clock_mark_can_be_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.advance_clock(UnixTime::from_secs(5000)).unwrap();
        assert!(matches!(
            StateStore::open(dir.path()),
            Err(StateError::Busy(_))
        ));
        assert_eq!(
            store.reset_clock(UnixTime::from_secs(1000)).unwrap().secs(),
            5000
        );
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        assert_eq!(again.marks().clock.secs(), 1000);
    }

    #[test]
    fn license_sequence_and_revocation_only_rise_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.record_license_sequence("ab", 3).unwrap();
        store.record_license_sequence("ab", 2).unwrap();
        store.record_revocation("ab", 3).unwrap();
        store.record_revocation("ab", 1).unwrap();
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        assert_eq!(again.license_sequence("ab"), Some(3));
        assert_eq!(again.revoked_through("ab"), Some(3));
        assert_eq!(again.license_sequence("cd"), None);
        let text = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
        assert!(text.contains("\"license_sequence\""), "{text}");
    }

    #[test]
    fn expiry_notices_survive_reopening_and_restart_with_a_new_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store
            .record_expiry_notices("ab", 2, ["warn-86400".to_string()])
            .unwrap();
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        assert!(again.expiry_notices("ab", 2).contains("warn-86400"));
        assert!(again.expiry_notices("ab", 3).is_empty());
        again
            .record_expiry_notices("ab", 3, ["grace".to_string()])
            .unwrap();
        assert!(again.expiry_notices("ab", 2).is_empty());
        assert_eq!(again.expiry_notices("ab", 3).len(), 1);
    }

    #[test]
    fn corrupt_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        assert!(matches!(
            StateStore::open(dir.path()),
            Err(StateError::Corrupt(..))
        ));
    }
}
