//! The CTAP2 layer: CBOR requests in, status byte and CBOR response out
//! (FIDO CTAP 2.1, section 6 "Authenticator API" and section 8 "Message
//! Encoding"), answered by 1Password's `passkey-authenticator`.
//!
//! What this module adds around the independent implementation, and nothing
//! more: decoding the command byte and the CBOR parameters with its own
//! `passkey-types` request types, encoding its responses the same way, the
//! "touch" (presence is always granted when asked, as a user who touches at
//! once), `authenticatorReset`, a packed self attestation (WebAuthn L2,
//! section 8.2: `passkey-authenticator` answers attestation format `none`,
//! a real key answers `packed`), the hardware-bound flags (below) and the
//! fault modes of [`Options`].
//!
//! Hardware-bound flags: `passkey-authenticator` is written for a passkey
//! provider, so every authenticatorData it builds says BE (backup eligible,
//! 0x08) and BS (backed up, 0x10), WebAuthn L3 section 6.1. A security key's
//! credential is bound to the device and says neither, and Tether refuses a
//! syncable credential. So, unless [`Options::syncable`], the softkey first
//! checks the library's own signature over its authenticatorData with the
//! credential's public key, then clears BE and BS and signs the corrected
//! `authenticatorData || clientDataHash` with the same key (`passkey-crypto`).
//! That re-signature is the one signature of ours; everything it covers but
//! the flags byte is the library's.
//!
//! Commands: `authenticatorMakeCredential` (0x01), `authenticatorGetAssertion`
//! (0x02), `authenticatorGetInfo` (0x04), `authenticatorReset` (0x07);
//! `authenticatorGetNextAssertion` (0x08) answers `CTAP2_ERR_NOT_ALLOWED`,
//! anything else `CTAP1_ERR_INVALID_COMMAND`.

use coset::iana::EnumI64 as _;
use passkey_authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey_crypto::iana;
use passkey_crypto::rust_crypto::{RustCryptoBackend, RustCryptoSecretKey};
use passkey_crypto::{PublicKeyT as _, SecretKeyT as _};
use passkey_types::Passkey;
use passkey_types::ctap2::{
    Aaguid, Ctap2Error, Flags, StatusCode, get_assertion, get_info, make_credential,
};
use passkey_types::webauthn::AuthenticatorTransport;

use crate::ctaphid::{CborAnswer, CborHandler};
use crate::store::Store;

/// CTAP2 command bytes (CTAP 2.1, section 6).
pub mod command {
    /// `authenticatorMakeCredential`.
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    /// `authenticatorGetAssertion`.
    pub const GET_ASSERTION: u8 = 0x02;
    /// `authenticatorGetInfo`.
    pub const GET_INFO: u8 = 0x04;
    /// `authenticatorReset`.
    pub const RESET: u8 = 0x07;
    /// `authenticatorGetNextAssertion`.
    pub const GET_NEXT_ASSERTION: u8 = 0x08;
}

/// The signature algorithm of new credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// EdDSA over Ed25519 (COSE -8).
    EdDsa,
    /// ECDSA P-256 with SHA-256 (COSE -7), DER signatures.
    Es256,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Ok(Algorithm::EdDsa),
            "es256" | "p256" => Ok(Algorithm::Es256),
            other => Err(format!("unknown algorithm {other:?}: eddsa or es256")),
        }
    }
}

impl Algorithm {
    fn cose(self) -> &'static [iana::Algorithm] {
        match self {
            Algorithm::EdDsa => &[iana::Algorithm::EdDSA, iana::Algorithm::Ed25519],
            Algorithm::Es256 => &[iana::Algorithm::ES256],
        }
    }
}

/// How the softkey behaves: its identity and its fault modes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The AAGUID in `getInfo` and in attested credential data.
    pub aaguid: [u8; 16],
    /// The algorithm of new credentials.
    pub algorithm: Algorithm,
    /// Keep a per-credential signature counter (+1 per assertion); without
    /// it every signCount is 0 ("no counter").
    pub counter: bool,
    /// Refuse `getAssertion` with `up = false` (`CTAP2_ERR_UNSUPPORTED_OPTION`),
    /// as a key that insists on a touch.
    pub require_up: bool,
    /// Set the UP flag even when `up = false` was asked (a key that always
    /// waits for a touch and reports it).
    pub force_up: bool,
    /// Keep BE and BS set, as `passkey-authenticator` sets them (a synced
    /// passkey rather than a device-bound key); see the module docs.
    pub syncable: bool,
    /// The firmware version `getInfo` reports.
    pub firmware_version: u32,
}

/// The default AAGUID: 16 bytes spelling "tether-softkey-1" (a test model).
pub const DEFAULT_AAGUID: [u8; 16] = *b"tether-softkey-1";

impl Default for Options {
    fn default() -> Self {
        Options {
            aaguid: DEFAULT_AAGUID,
            algorithm: Algorithm::EdDsa,
            counter: true,
            require_up: false,
            force_up: false,
            syncable: false,
            firmware_version: 1,
        }
    }
}

/// The user at the key: touches at once when asked; no user verification.
#[derive(Debug)]
struct Presence {
    force_up: bool,
}

#[async_trait::async_trait]
impl UserValidationMethod for Presence {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence: presence || self.force_up,
            verification: false,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        None
    }
}

type Inner = Authenticator<Store, Presence, RustCryptoBackend>;

/// A software FIDO2 authenticator: `passkey-authenticator` with its store.
pub struct Softkey {
    inner: Inner,
    runtime: tokio::runtime::Runtime,
    options: Options,
}

impl std::fmt::Debug for Softkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Softkey")
            .field("options", &self.options)
            .field("store", self.inner.store())
            .finish_non_exhaustive()
    }
}

/// A CTAP2 status code as its byte (CTAP 2.1, section 8.2).
fn status(code: impl Into<StatusCode>) -> u8 {
    u8::from(code.into())
}

/// Sorts every map's keys in the CTAP2 canonical order (CTAP 2.1, section
/// 8, "CTAP2 canonical CBOR encoding form"): lower major type first, then
/// the shorter encoding, then bytewise lexical order of the encodings.
fn canonical(value: ciborium::Value) -> Result<ciborium::Value, String> {
    use ciborium::Value;
    Ok(match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().map(canonical).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => {
            let mut keyed = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = canonical(k)?;
                    let mut enc = Vec::new();
                    ciborium::into_writer(&k, &mut enc).map_err(|e| e.to_string())?;
                    Ok((
                        (enc.first().map_or(0, |b| b >> 5), enc.len(), enc),
                        k,
                        canonical(v)?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Tag(t, inner) => Value::Tag(t, Box::new(canonical(*inner)?)),
        other => other,
    })
}

/// Status 0 and `value` in the CTAP2 canonical CBOR form.
///
/// `passkey-types` serializes some maps with indefinite length (its
/// integer-keyed structs go through `serialize_map(None)`), which CTAP 2.1
/// section 8 forbids and libfido2 refuses ("cbor type"), so its output is
/// read back as a CBOR value and written again definite-length, keys in
/// canonical order. The values are untouched.
fn encode(value: &impl serde::Serialize) -> Vec<u8> {
    let encoded = (|| {
        let mut raw = Vec::new();
        ciborium::into_writer(value, &mut raw).map_err(|e| e.to_string())?;
        let v: ciborium::Value =
            ciborium::from_reader(raw.as_slice()).map_err(|e| e.to_string())?;
        let mut out = vec![0u8];
        ciborium::into_writer(&canonical(v)?, &mut out).map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    })();
    encoded.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a response");
        vec![status(Ctap2Error::Other)]
    })
}

fn decode<T: serde::de::DeserializeOwned>(params: &[u8]) -> Result<T, u8> {
    if params.is_empty() {
        return Err(status(Ctap2Error::MissingParameter));
    }
    ciborium::from_reader(params).map_err(|e| {
        tracing::debug!(error = %e, "request parameters do not decode");
        status(Ctap2Error::InvalidCbor)
    })
}

/// Fills in a missing `user.name` or `user.displayName` of a makeCredential
/// request with the empty string. CTAP 2.1 section 6.1 makes both optional
/// (libfido2 sends a name only), but `passkey-types` reads the user with
/// its WebAuthn type, where both are required; nothing else is touched.
fn complete_user(params: &[u8]) -> Result<Vec<u8>, u8> {
    use ciborium::Value;
    if params.is_empty() {
        return Err(status(Ctap2Error::MissingParameter));
    }
    let mut request: Value = ciborium::from_reader(params).map_err(|e| {
        tracing::debug!(error = %e, "makeCredential parameters do not decode");
        status(Ctap2Error::InvalidCbor)
    })?;
    let Some(Value::Map(user)) = request
        .as_map_mut()
        .and_then(|m| m.iter_mut().find(|(k, _)| *k == Value::from(3)))
        .map(|(_, v)| v)
    else {
        // No user map: the library's own decoder answers it.
        return Ok(params.to_vec());
    };
    for field in ["name", "displayName"] {
        if !user.iter().any(|(k, _)| *k == Value::from(field)) {
            user.push((field.into(), Value::Text(String::new())));
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&request, &mut out).map_err(|_| status(Ctap2Error::Other))?;
    Ok(out)
}

/// Up to 8 hex digits of a credential id, for logs (it is not a secret,
/// but the whole id is noise).
fn short_id(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// BE and BS (WebAuthn L3 section 6.1).
fn backup_flags() -> Flags {
    Flags::BE | Flags::BS
}

impl Softkey {
    /// The credential's key, to check and to (re)sign with.
    fn secret(&self, credential_id: &[u8]) -> Result<RustCryptoSecretKey, u8> {
        let key = self
            .inner
            .store()
            .get(credential_id)
            .map(|c| c.key.clone())
            .ok_or(status(Ctap2Error::Other))?;
        RustCryptoSecretKey::from_cose_key(&key)
            .map_err(|_| status(Ctap2Error::UnsupportedAlgorithm))
    }

    /// Checks the library's signature over `auth_data || client_data_hash`,
    /// then clears BE and BS in `auth_data` and returns the signature over
    /// the corrected data (see the module docs). With [`Options::syncable`],
    /// returns `signature` unchanged.
    fn bind_to_device(
        &self,
        credential_id: &[u8],
        auth_data: &mut passkey_types::ctap2::AuthenticatorData,
        client_data_hash: &[u8],
        signature: Vec<u8>,
    ) -> Result<Vec<u8>, u8> {
        if self.options.syncable || !auth_data.flags.intersects(backup_flags()) {
            return Ok(signature);
        }
        let mut secret = self.secret(credential_id)?;
        let theirs = [auth_data.to_vec().as_slice(), client_data_hash].concat();
        if secret.public_key().verify(&theirs, &signature).is_err() {
            tracing::error!("passkey-authenticator's signature does not verify: refused");
            return Err(status(Ctap2Error::Other));
        }
        auth_data.flags.remove(backup_flags());
        let ours = [auth_data.to_vec().as_slice(), client_data_hash].concat();
        Ok(secret.sign(&ours))
    }

    /// A softkey over `store`.
    ///
    /// # Errors
    ///
    /// When the async runtime that drives `passkey-authenticator` cannot
    /// be built.
    pub fn new(store: Store, options: Options) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let mut inner = Authenticator::new(
            Aaguid::from(options.aaguid),
            store,
            Presence {
                force_up: options.force_up,
            },
            RustCryptoBackend,
        )
        .transports(vec![AuthenticatorTransport::Usb]);
        inner.set_make_credentials_with_signature_counter(options.counter);
        // Always a subset of what the rust-crypto backend has.
        inner
            .set_algorithms(options.algorithm.cose())
            .map_err(|e| std::io::Error::other(format!("algorithm: {e:?}")))?;
        Ok(Softkey {
            inner,
            runtime,
            options,
        })
    }

    /// The credential store.
    pub fn store(&self) -> &Store {
        self.inner.store()
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn get_info(&mut self) -> Vec<u8> {
        let mut info: Box<get_info::Response> = self.runtime.block_on(self.inner.get_info());
        info.firmware_version = Some(self.options.firmware_version);
        info.attestation_formats = Some(vec!["packed".into()]);
        encode(&*info)
    }

    fn make_credential(&mut self, params: &[u8]) -> Result<Vec<u8>, u8> {
        let request: make_credential::Request = decode(&complete_user(params)?)?;
        let client_data_hash = request.client_data_hash.to_vec();
        let rp_id = request.rp.id.clone();
        let mut response = self
            .runtime
            .block_on(self.inner.make_credential(request))
            .map_err(status)?;
        // Packed self attestation (WebAuthn L2, section 8.2, "If self
        // attestation is in use"): the new credential's key signs
        // authenticatorData || clientDataHash; no x5c.
        let id = response
            .auth_data
            .attested_credential_data
            .as_ref()
            .map(|a| a.credential_id().to_vec())
            .ok_or(status(Ctap2Error::Other))?;
        let alg = match self.inner.store().get(&id).and_then(|c| c.key.alg.clone()) {
            Some(coset::Algorithm::Assigned(a)) => a.to_i64(),
            _ => return Err(status(Ctap2Error::Other)),
        };
        if !self.options.syncable {
            response.auth_data.flags.remove(backup_flags());
        }
        let mut secret = self.secret(&id)?;
        let signed = [response.auth_data.to_vec().as_slice(), &client_data_hash].concat();
        let sig = secret.sign(&signed);
        response.fmt = "packed".into();
        response.att_stmt = ciborium::Value::Map(vec![
            ("alg".into(), alg.into()),
            ("sig".into(), ciborium::Value::Bytes(sig)),
        ]);
        tracing::info!(
            rp_id,
            credential = short_id(&id),
            alg,
            credentials = self.inner.store().len(),
            "makeCredential: new credential (packed self attestation)"
        );
        Ok(encode(&response))
    }

    fn get_assertion(&mut self, params: &[u8]) -> Result<(Vec<u8>, bool), u8> {
        let request: get_assertion::Request = decode(params)?;
        if !request.options.up && self.options.require_up {
            tracing::info!(
                rp_id = request.rp_id,
                "getAssertion up=false refused (--require-up)"
            );
            return Err(status(Ctap2Error::UnsupportedOption));
        }
        let rp_id = request.rp_id.clone();
        let up_asked = request.options.up;
        let client_data_hash = request.client_data_hash.to_vec();
        let mut response = self
            .runtime
            .block_on(self.inner.get_assertion(request))
            .map_err(|e| {
                let code = status(e);
                tracing::info!(rp_id, status = code, "getAssertion refused");
                code
            })?;
        let id = response
            .credential
            .as_ref()
            .map(|c| c.id.to_vec())
            .ok_or(status(Ctap2Error::Other))?;
        let signature = std::mem::take(&mut response.signature).to_vec();
        response.signature = self
            .bind_to_device(&id, &mut response.auth_data, &client_data_hash, signature)?
            .into();
        let flags = response.auth_data.flags;
        tracing::info!(
            rp_id,
            credential = response
                .credential
                .as_ref()
                .map(|c| short_id(&c.id))
                .unwrap_or_default(),
            sign_count = response.auth_data.counter.unwrap_or(0),
            up = flags.contains(Flags::UP),
            up_asked,
            "getAssertion"
        );
        Ok((encode(&response), flags.contains(Flags::UP)))
    }

    fn reset(&mut self) -> Result<Vec<u8>, u8> {
        self.inner.store_mut().clear().map_err(|e| {
            tracing::error!(error = %e, "reset: cannot save the state");
            status(Ctap2Error::Other)
        })?;
        tracing::info!("reset: every credential forgotten");
        Ok(vec![0])
    }
}

impl CborHandler for Softkey {
    fn handle_cbor(&mut self, request: &[u8]) -> CborAnswer {
        let Some((&cmd, params)) = request.split_first() else {
            return CborAnswer {
                payload: vec![status(Ctap2Error::InvalidLength)],
                touched: false,
            };
        };
        let (result, touched) = match cmd {
            command::GET_INFO => (Ok(self.get_info()), false),
            command::MAKE_CREDENTIAL => (self.make_credential(params), true),
            command::GET_ASSERTION => match self.get_assertion(params) {
                Ok((payload, up)) => (Ok(payload), up),
                Err(e) => (Err(e), false),
            },
            command::RESET => (self.reset(), true),
            command::GET_NEXT_ASSERTION => (Err(status(Ctap2Error::NotAllowed)), false),
            other => {
                tracing::debug!(command = other, "unsupported CTAP2 command");
                (Err(status(Ctap2Error::InvalidCommand)), false)
            }
        };
        match result {
            Ok(payload) => CborAnswer { payload, touched },
            Err(code) => CborAnswer {
                payload: vec![code],
                touched: false,
            },
        }
    }
}
