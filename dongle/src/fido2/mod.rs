//! FIDO2 security keys as Tether dongles (`docs/dongle-protocol.md`,
//! section 8): CTAP2 (FIDO Client to Authenticator Protocol 2.1) over
//! CTAPHID, on the same report framing and transports as the native
//! protocol.
//!
//! - [`hid`]: CTAPHID channel, PING, CBOR, KEEPALIVE, CANCEL, ERROR (section 11.2).
//! - [`ctap`]: authenticatorGetInfo (6.4), authenticatorMakeCredential (6.1),
//!   authenticatorGetAssertion (6.2), strict decoders of their answers.
//! - [`cose`]: COSE_Key for OKP Ed25519 and EC2 P-256.
//! - [`CtapStatus`]: status codes (6.3), each with a clear sentence.
//! - [`Fido2Client`]: the three commands on one open key.
//! - [`Fido2Selector`]: `fido2`, `fido2:SERIAL`, `fido2:/dev/hidrawN`,
//!   `fido2:socket:PATH`.
//!
//! CBOR is `ciborium`'s: a maintained serde codec whose `Value` lets us
//! check every field ourselves (`ctap-types` fixes sizes with `heapless`
//! and targets the device side).

mod cbor;
pub mod cose;
pub mod ctap;
mod dongle;
pub mod hid;
mod status;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use cose::CosePublicKey;
pub use ctap::{Assertion, AuthenticatorInfo, GetAssertion, MakeCredential, NewCredential};
pub use dongle::{Fido2Dongle, Fido2Driver};
pub use hid::{CtapHid, Fido2Timeouts, HidInfo};
pub use status::CtapStatus;

use crate::error::{LinkError, Result};
use crate::hid::{FidoFilter, HidTransport};
use crate::transport::{SocketTransport, Transport};

/// Which FIDO2 key to open: `fido2` (the first FIDO HID device),
/// `fido2:SERIAL` (USB serial string), `fido2:/dev/hidrawN` (a path), or
/// `fido2:socket:PATH` (a software key on the emulator's socket link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fido2Selector {
    /// A USB HID security key.
    Hid(FidoFilter),
    /// A Unix socket carrying 64-byte reports (`tether-softkey`).
    Socket(PathBuf),
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: expected fido2, fido2:SERIAL, fido2:/dev/hidrawN or fido2:socket:PATH")]
pub struct Fido2SelectorError(String);

impl FromStr for Fido2Selector {
    type Err = Fido2SelectorError;

    fn from_str(s: &str) -> std::result::Result<Fido2Selector, Fido2SelectorError> {
        let bad = || Fido2SelectorError(s.to_string());
        if s == "fido2" {
            return Ok(Fido2Selector::Hid(FidoFilter::Any));
        }
        let rest = s.strip_prefix("fido2:").ok_or_else(bad)?;
        if let Some(path) = rest.strip_prefix("socket:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Fido2Selector::Socket(PathBuf::from(path)));
        }
        if rest.is_empty() {
            return Err(bad());
        }
        if rest.starts_with('/') {
            return Ok(Fido2Selector::Hid(FidoFilter::Path(rest.to_string())));
        }
        Ok(Fido2Selector::Hid(FidoFilter::Serial(rest.to_string())))
    }
}

impl fmt::Display for Fido2Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fido2Selector::Hid(FidoFilter::Any) => write!(f, "fido2"),
            Fido2Selector::Hid(FidoFilter::Serial(s)) => write!(f, "fido2:{s}"),
            Fido2Selector::Hid(FidoFilter::Path(p)) => write!(f, "fido2:{p}"),
            Fido2Selector::Socket(p) => write!(f, "fido2:socket:{}", p.display()),
        }
    }
}

impl Fido2Selector {
    /// Opens the transport this selector names.
    ///
    /// # Errors
    /// [`LinkError::Absent`] when no key matches; other link errors.
    pub fn open_transport(&self) -> Result<Box<dyn Transport>> {
        Ok(match self {
            Fido2Selector::Hid(filter) => Box::new(HidTransport::open_fido(filter)?),
            Fido2Selector::Socket(path) => Box::new(SocketTransport::connect(path)?),
        })
    }
}

/// One open FIDO2 key and the three CTAP2 commands Tether uses.
#[derive(Debug)]
pub struct Fido2Client {
    hid: CtapHid,
}

impl Fido2Client {
    /// Opens the selected key and allocates a channel.
    ///
    /// # Errors
    /// [`LinkError::Absent`] when none is present (or it vanishes during
    /// INIT); other link errors; [`LinkError::Protocol`] for a key without CTAP2.
    pub fn connect(selector: &Fido2Selector) -> Result<Fido2Client> {
        match CtapHid::open(selector.open_transport()?, Fido2Timeouts::default()) {
            Ok(hid) => Ok(Fido2Client { hid }),
            Err(LinkError::Removed) => Err(LinkError::Absent),
            Err(e) => Err(e),
        }
    }

    /// Wraps an open CTAPHID channel (tests, other transports).
    pub fn from_hid(hid: CtapHid) -> Fido2Client {
        Fido2Client { hid }
    }

    /// The CTAPHID layer (PING, idle).
    pub fn hid(&mut self) -> &mut CtapHid {
        &mut self.hid
    }

    /// authenticatorGetInfo (CTAP 2.1, section 6.4).
    ///
    /// # Errors
    /// Link errors, [`LinkError::Ctap`], or a malformed answer.
    pub fn get_info(&mut self) -> Result<AuthenticatorInfo> {
        let body = self.hid.cbor(&[ctap::GET_INFO], true)?;
        Ok(AuthenticatorInfo::decode(&body)?)
    }

    /// authenticatorMakeCredential (section 6.1); waits for a touch.
    ///
    /// # Errors
    /// Link errors, [`LinkError::Ctap`], or a malformed answer.
    pub fn make_credential(&mut self, request: &MakeCredential) -> Result<NewCredential> {
        let body = self.hid.cbor(&request.encode(), false)?;
        Ok(NewCredential::decode(&body)?)
    }

    /// authenticatorGetAssertion (section 6.2), silent (`up=false`).
    ///
    /// # Errors
    /// [`LinkError::Ctap`] (e.g. [`CtapStatus::NoCredentials`], or
    /// [`CtapStatus::TouchDemanded`] for a key that wants a touch), link
    /// errors, or a malformed answer.
    pub fn get_assertion(&mut self, request: &GetAssertion) -> Result<Assertion> {
        let body = self.hid.cbor(&request.encode(), true)?;
        Ok(Assertion::decode(&body, &request.credential_id)?)
    }
}

#[cfg(test)]
mod tests;
