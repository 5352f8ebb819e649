//! The credential store: every credential the softkey made, with its
//! private key and signature counter, optionally persisted to a state file.
//!
//! A real security key usually keeps a non-resident credential's private key
//! inside the credential id (wrapped under a device secret); this store
//! keeps it in the file instead. The host sees no difference: the credential
//! id is opaque, and a credential the device does not know answers
//! `CTAP2_ERR_NO_CREDENTIALS`. So a "factory reset" is deleting the file,
//! and "a clone rolled back" is restoring an older copy of it (its counter
//! goes back).
//!
//! File format (ours, test-only): CBOR, an array of maps
//! `{1: credential id (bytes), 2: rpId (text), 3: COSE_Key with the private
//! key (bytes, RFC 9052 section 7), 4: signCount (uint) or null, 5: user
//! handle (bytes) or null}`. Written whole to a temporary file, mode 0600,
//! then renamed over the old one, after every change.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ciborium::Value;
use coset::CborSerializable as _;
use passkey_authenticator::{CredentialStore, DiscoverabilitySupport, StoreInfo};
use passkey_types::Passkey;
use passkey_types::ctap2::make_credential::{
    Options, PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity,
};
use passkey_types::ctap2::{Ctap2Error, StatusCode};
use passkey_types::webauthn::PublicKeyCredentialDescriptor;

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a softkey state file.
    #[error("{path}: not a softkey state file: {reason}")]
    Malformed {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The softkey's credentials, in memory and (with a path) on disk.
pub struct Store {
    path: Option<PathBuf>,
    credentials: Vec<Passkey>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material: only how many credentials and where.
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

fn field(map: &[(Value, Value)], key: i64) -> Option<&Value> {
    map.iter()
        .find(|(k, _)| k.as_integer() == Some(key.into()))
        .map(|(_, v)| v)
}

fn decode(bytes: &[u8]) -> Result<Vec<Passkey>, String> {
    let value: Value = ciborium::from_reader(bytes).map_err(|e| e.to_string())?;
    let Value::Array(items) = value else {
        return Err("not a CBOR array".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |what: &str| format!("credential {i}: {what}");
            let Value::Map(map) = item else {
                return Err(bad("not a map"));
            };
            let bytes = |key| match field(map, key) {
                Some(Value::Bytes(b)) => Ok(b.clone()),
                _ => Err(bad(&format!("field {key} is not bytes"))),
            };
            let rp_id = match field(map, 2) {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err(bad("no rpId")),
            };
            let key = coset::CoseKey::from_slice(&bytes(3)?)
                .map_err(|e| bad(&format!("COSE key: {e}")))?;
            let counter = match field(map, 4) {
                Some(Value::Integer(n)) => {
                    Some(u32::try_from(*n).map_err(|_| bad("counter out of range"))?)
                }
                Some(Value::Null) | None => None,
                _ => return Err(bad("counter is not an integer")),
            };
            let user_handle = match field(map, 5) {
                Some(Value::Bytes(b)) => Some(b.clone().into()),
                Some(Value::Null) | None => None,
                _ => return Err(bad("user handle is not bytes")),
            };
            Ok(Passkey {
                key,
                credential_id: bytes(1)?.into(),
                rp_id,
                user_handle,
                username: None,
                user_display_name: None,
                counter,
                extensions: Default::default(),
            })
        })
        .collect()
}

fn encode(credentials: &[Passkey]) -> Result<Vec<u8>, String> {
    let items = credentials
        .iter()
        .map(|c| {
            let key = c.key.clone().to_vec().map_err(|e| e.to_string())?;
            Ok(Value::Map(vec![
                (1.into(), Value::Bytes(c.credential_id.to_vec())),
                (2.into(), Value::Text(c.rp_id.clone())),
                (3.into(), Value::Bytes(key)),
                (4.into(), c.counter.map_or(Value::Null, |n| n.into())),
                (
                    5.into(),
                    c.user_handle
                        .as_ref()
                        .map_or(Value::Null, |h| Value::Bytes(h.to_vec())),
                ),
            ]))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Array(items), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

impl Store {
    /// A store that lives in memory only (gone when the process ends).
    pub fn in_memory() -> Self {
        Store {
            path: None,
            credentials: Vec::new(),
        }
    }

    /// The store persisted at `path`: loaded when the file exists, empty
    /// (a factory-fresh key) when it does not.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the file exists and cannot be read,
    /// [`StoreError::Malformed`] when it is not a state file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let credentials = match std::fs::read(path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| StoreError::Malformed {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Store {
            path: Some(path.to_path_buf()),
            credentials,
        })
    }

    /// How many credentials it holds.
    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    /// The highest signature counter of any credential (0 without counters).
    pub fn max_counter(&self) -> u32 {
        self.credentials
            .iter()
            .filter_map(|c| c.counter)
            .max()
            .unwrap_or(0)
    }

    /// The credential with this id, if any.
    pub fn get(&self, credential_id: &[u8]) -> Option<&Passkey> {
        self.credentials
            .iter()
            .find(|c| c.credential_id.as_slice() == credential_id)
    }

    /// Forgets every credential (`authenticatorReset`) and saves.
    ///
    /// # Errors
    ///
    /// As [`Self::save`].
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.credentials.clear();
        self.save()
    }

    /// Writes the file (nothing for an in-memory store).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the temporary file cannot be written or
    /// renamed into place.
    pub fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let bytes = encode(&self.credentials).map_err(|reason| StoreError::Malformed {
            path: path.clone(),
            reason,
        })?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    fn save_status(&self) -> Result<(), StatusCode> {
        self.save().map_err(|e| {
            tracing::error!(error = %e, "cannot save the softkey state");
            StatusCode::from(Ctap2Error::Other)
        })
    }
}

#[async_trait::async_trait]
impl CredentialStore for Store {
    type PasskeyItem = Passkey;

    async fn find_credentials(
        &self,
        ids: Option<&[PublicKeyCredentialDescriptor]>,
        rp_id: &str,
        _user_handle: Option<&[u8]>,
    ) -> Result<Vec<Passkey>, StatusCode> {
        let found: Vec<Passkey> = match ids {
            // An allow list: those credentials, bound to this rpId.
            Some(ids) => ids
                .iter()
                .filter_map(|d| self.get(&d.id))
                .filter(|c| c.rp_id == rp_id)
                .cloned()
                .collect(),
            // No allow list: the discoverable credentials of this rpId, newest first.
            None => self
                .credentials
                .iter()
                .rev()
                .filter(|c| c.rp_id == rp_id && c.user_handle.is_some())
                .cloned()
                .collect(),
        };
        if found.is_empty() {
            Err(Ctap2Error::NoCredentials.into())
        } else {
            Ok(found)
        }
    }

    async fn save_credential(
        &mut self,
        cred: Passkey,
        _user: PublicKeyCredentialUserEntity,
        _rp: PublicKeyCredentialRpEntity,
        _options: Options,
    ) -> Result<(), StatusCode> {
        self.credentials.push(cred);
        self.save_status()
    }

    async fn update_credential(&mut self, cred: &Passkey) -> Result<(), StatusCode> {
        match self
            .credentials
            .iter_mut()
            .find(|c| c.credential_id == cred.credential_id)
        {
            Some(c) => *c = cred.clone(),
            None => return Err(Ctap2Error::NoCredentials.into()),
        }
        self.save_status()
    }

    async fn get_info(&self) -> StoreInfo {
        StoreInfo {
            discoverability: DiscoverabilitySupport::Full,
        }
    }
}
