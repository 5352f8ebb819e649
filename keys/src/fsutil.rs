//! Durable file writes, one implementation for the whole workspace.
//!
//! [`write_atomic`] replaces a file so that after a crash or power loss the
//! path holds either the old contents or the new, never a mix or nothing:
//! a temporary file in the same directory, written and fsynced, renamed over
//! the target, and then the directory fsynced so the rename itself is on disk
//! (POSIX `rename(2)` is atomic but not durable until the directory is synced).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How many differently named temporary files to try before giving up.
const TEMP_ATTEMPTS: usize = 8;

/// Atomically replaces (or creates) `path` with `bytes`, durably.
///
/// The new file is created with permission bits `mode` (e.g. `0o600`; the
/// process umask still applies, as for any `open(2)`), written, fsynced,
/// renamed over `path` and the containing directory fsynced. The temporary
/// file (`.NAME.tmp.PID.RANDOM` in the same directory, so the rename never
/// crosses file systems) is removed if any step before the rename fails.
///
/// # Errors
///
/// [`Error::Io`] naming the file that failed: the temporary file (creating,
/// writing or syncing it), `path` (the rename) or the directory (syncing it).
/// A directory fsync refused as unsupported by the file system
/// (`EINVAL`, `ENOTSUP`) is not an error: the rename has happened and there is
/// nothing more to ask of such a file system.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)
}

/// Creates `path` with `bytes` and `mode`, refusing to replace an existing
/// file (`O_CREAT|O_EXCL`), then fsyncs the file and its directory.
///
/// A file this call created but could not fill is removed again, so a
/// failed write does not leave a truncated file that blocks the next try.
///
/// # Errors
///
/// [`Error::Exists`] if `path` exists; [`Error::Io`] if it cannot be created,
/// written or synced.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                Error::Exists(path.to_path_buf())
            } else {
                Error::io(path, e)
            }
        })?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    sync_parent(path)
}

/// Creates a fresh temporary sibling of `path` with `create_new`: a name that
/// exists already (another writer, a leftover) is never opened or removed.
fn create_temp(path: &Path, mode: u32) -> Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::bad_file(path, "not a file name"))?;
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let mut random = [0u8; 6];
        crate::random_fill(&mut random);
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}.{suffix}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    }
    let (tmp, e) = last.unwrap_or_else(|| {
        (
            path.to_path_buf(),
            std::io::Error::other("no temporary file name"),
        )
    });
    Err(Error::io(tmp, e))
}

/// Fsyncs the directory holding `path`, so a create or rename in it is durable.
fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let synced = File::open(dir).and_then(|d| d.sync_all());
    match synced {
        Err(e) if !matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported) => {
            Err(Error::io(dir, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_atomic_creates_and_replaces_leaving_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn write_atomic_fails_cleanly_when_the_rename_cannot_happen() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails, the temp file goes away.
        let path = dir.path().join("busy");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        let err = write_atomic(&path, b"new", 0o600).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_in_a_missing_directory_names_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("f");
        let err = write_atomic(&path, b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains(".f.tmp."), "{err}");
    }

    #[test]
    fn write_new_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new(&path, b"first", 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = write_new(&path, b"second", 0o600).unwrap_err();
        assert!(matches!(err, Error::Exists(_)));
        assert_eq!(fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn a_bare_file_name_syncs_the_current_directory() {
        // `Path::parent` of "x" is "", which must mean ".", not an error.
        assert!(sync_parent(Path::new("x")).is_ok());
    }
}
