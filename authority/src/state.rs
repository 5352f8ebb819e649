//! Persisted high-water marks: the wall clock and each dongle's counter.
//!
//! The clock mark defends against rollback: a customer who sets the VM's
//! clock back cannot make the authority date tokens in the past of tokens it
//! already issued. The counter mark defends against clones: a dongle whose
//! signature counter is below the highest one seen is refused. Both are kept
//! in `STATE_DIR/state.json`, replaced atomically (temp file, fsync, rename).

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tether_keys::keyfile::{Overwrite, write_file};

/// What is persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// The latest wall-clock time (UNIX seconds) the authority has seen.
    pub clock: u64,
    /// The highest signature counter seen, by dongle serial.
    pub counters: BTreeMap<String, u32>,
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
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

/// The state file and its in-memory copy.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    marks: Mutex<Marks>,
}

impl StateStore {
    /// Opens (or starts) the state file in `dir`, creating `dir` if needed.
    ///
    /// # Errors
    ///
    /// [`StateError`] when `dir` cannot be created or the state file cannot
    /// be read or parsed.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StateError::Io(tether_keys::Error::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        })?;
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

    /// Raises the clock mark to `now`, in UNIX seconds (never lowers it),
    /// and persists.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the state file cannot be written; the mark is
    /// then not raised.
    pub fn advance_clock(&self, now: u64) -> Result<(), StateError> {
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
        store.advance_clock(100).unwrap();
        store.advance_clock(50).unwrap();
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
        assert_eq!(again.marks().clock, 100);
        assert_eq!(again.counter("TD-1"), Some(6));
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
