//! The host side of every Tether dongle protocol (`docs/dongle-protocol.md`).
//!
//! tetherd sees a dongle only through the [`Dongle`] trait, opened by a
//! [`Driver`]; every protocol maps its faults into one [`LinkError`]. All
//! I/O is blocking; tetherd runs it on a thread of its own.
//!
//! ```text
//! Selector::from_str("hid" | "hid:VID:PID" | "hid:VID:PID:SERIAL" | "socket:PATH")
//! Fido2Selector::from_str("fido2" | "fido2:SERIAL" | "fido2:/dev/hidrawN" | "fido2:socket:PATH")
//! Driver::open(&self) -> Result<Box<dyn Dongle>>       // Err(LinkError::Absent) when none
//! Dongle::identify(&mut self) -> Result<Identity>       // native INFO, or FIDO2 getInfo
//! Dongle::prove_presence(&mut self, &[u8; 32]) -> Result<PresenceProof>  // caller verifies
//! Dongle::certify(&mut self, &DelegationRequest) -> Result<Certificate>  // caller verifies
//! Dongle::idle(&mut self, Duration) -> Result<()>      // Err(LinkError::Removed) at once on removal
//! Dongle::sign_receipt(&mut self, &ReceiptRequest) -> Result<Receipt>          // caller verifies
//! Dongle::sign_site_request(&mut self, &SiteRequestAsk) -> Result<SiteRequest> // caller verifies
//! ```
//!
//! A dongle returns what it said; deciding whether to trust it (signature
//! under the licensed key, the request echoed, a counter that only grows) is
//! the caller's job, as in tetherd's presence watchdog.
//!
//! # Layout
//!
//! - [`ctaphid`]: 64-byte reports, init/continuation packets, channels and
//!   reassembly in the style of CTAPHID (section 3; FIDO CTAP 2.1, section 11.2.4).
//! - [`transport`]: the report trait and the emulator's socket link
//!   (and, with the `test-util` feature, a scripted mock device).
//! - [`hid`]: the hidapi link.
//! - [`native`]: Tether's own INFO/PRESENCE/DELEGATE protocol (section 4),
//!   its client and the [`Dongle`] it implements.
//! - [`fido2`]: CTAP2 for FIDO2 security keys (section 8), its client and
//!   `Fido2Dongle`.
//! - [`error`]: [`LinkError`], the protocol faults and the device's error codes.
//!
//! The device side (the emulator that firmware follows) is the
//! `tether-emulator` crate; nothing here depends on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod ctaphid;
pub mod error;
pub mod fido2;
pub mod hid;
pub mod native;
mod selector;
pub mod transport;

use std::fmt;
use std::time::Duration;

use tether_keys::{
    Certificate, DelegationRequest, Receipt, ReceiptRequest, SiteRequest, SiteRequestAsk,
};

pub use error::{ErrorCode, LinkError, ProtocolError, Result};
pub use fido2::Fido2Selector;
pub use native::DongleInfo;
pub use selector::{Selector, SelectorError};
pub use transport::Transport;

/// What a dongle gives as proof that it is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceProof {
    /// An Ed25519 signature (64 bytes) over
    /// [`tether_keys::delegation::presence_message`]`(nonce)` by the dongle key
    /// (native protocol, section 4.3). The caller verifies it.
    Signature([u8; 64]),
    /// A FIDO2 key echoed a CTAPHID PING of the nonce (section 8.4):
    /// liveness of the open device, no signature and no flash write. Who
    /// the key is was proven by the certificate's assertion.
    Ping,
}

/// Who a dongle says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity {
    /// A native dongle's INFO: serial, firmware, public key, counter.
    Native(DongleInfo),
    /// A FIDO2 key's getInfo, with the serial of the credential it was opened for.
    Fido2(Fido2Identity),
}

impl Identity {
    /// The dongle serial (for FIDO2: the credential's, `fido2-...`).
    pub fn serial(&self) -> &str {
        match self {
            Identity::Native(info) => &info.serial,
            Identity::Fido2(f) => &f.serial,
        }
    }

    /// "native" or "FIDO2", for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Identity::Native(_) => "native",
            Identity::Fido2(_) => "FIDO2",
        }
    }
}

/// What a FIDO2 key says of itself (authenticatorGetInfo, CTAP 2.1 section 6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fido2Identity {
    /// The serial of the credential the key was opened for
    /// (`Fido2Credential::serial`): FIDO2 keys expose no serial over CTAP.
    pub serial: String,
    /// Firmware: getInfo's firmwareVersion if given, and the CTAPHID device version.
    pub firmware: String,
    /// The model's AAGUID.
    pub aaguid: [u8; 16],
    /// CTAP versions (`FIDO_2_0`, `FIDO_2_1`, ...).
    pub versions: Vec<String>,
    /// The key demands user verification for everything (`alwaysUv`).
    pub always_uv: bool,
}

/// One open dongle, whatever its protocol. Each call is one exchange with
/// the device; none of them trusts what the device says.
pub trait Dongle: Send + fmt::Debug {
    /// Who the dongle says it is: serial, firmware, and its public key and
    /// counter (native) or model (FIDO2).
    ///
    /// # Errors
    /// Any [`LinkError`]: [`LinkError::Removed`] when it went away.
    fn identify(&mut self) -> Result<Identity>;

    /// A cheap proof of liveness over a fresh 32-byte `nonce`.
    ///
    /// # Errors
    /// Any [`LinkError`]; the proof itself is not checked here.
    fn prove_presence(&mut self, nonce: &[u8; 32]) -> Result<PresenceProof>;

    /// Asks the dongle to sign a delegation certificate for `request`.
    ///
    /// # Errors
    /// [`LinkError::Declined`] when the dongle's own rules refuse it (rate,
    /// window); any other [`LinkError`] on the link.
    fn certify(&mut self, request: &DelegationRequest) -> Result<Certificate>;

    /// Idles for `timeout`, returning early the moment the link reports
    /// removal.
    ///
    /// # Errors
    /// [`LinkError::Removed`] at once on removal; other link faults.
    fn idle(&mut self, timeout: Duration) -> Result<()>;

    /// Asks the dongle to sign a revocation receipt for `request`
    /// (`docs/formats.md`, "Revocation receipt"; native command RECEIPT,
    /// `docs/dongle-protocol.md` section 4.5). The default, for dongle kinds
    /// without such a command, refuses with [`LinkError::Unsupported`].
    ///
    /// # Errors
    /// [`LinkError::Unsupported`] for a dongle kind that cannot sign one;
    /// [`LinkError::Declined`] when the dongle refuses; any other
    /// [`LinkError`] on the link.
    fn sign_receipt(&mut self, request: &ReceiptRequest) -> Result<Receipt> {
        let _ = request;
        Err(LinkError::Unsupported("a revocation receipt"))
    }

    /// Asks the dongle to sign a site request for `ask` (`docs/formats.md`,
    /// "Site request"; native command SITE_REQUEST, section 4.6). The
    /// default refuses with [`LinkError::Unsupported`].
    ///
    /// # Errors
    /// As [`Dongle::sign_receipt`].
    fn sign_site_request(&mut self, ask: &SiteRequestAsk) -> Result<SiteRequest> {
        let _ = ask;
        Err(LinkError::Unsupported("a site request"))
    }
}

/// Opens dongles: tetherd asks again after each loss.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Opens the dongle this driver selects.
    ///
    /// # Errors
    /// [`LinkError::Absent`] when none is present; other link faults.
    fn open(&self) -> Result<Box<dyn Dongle>>;
}

impl Driver for Selector {
    fn open(&self) -> Result<Box<dyn Dongle>> {
        Ok(Box::new(native::NativeDongle::connect(self)?))
    }
}
