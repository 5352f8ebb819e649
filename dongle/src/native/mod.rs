//! Tether's own dongle protocol (`docs/dongle-protocol.md`, section 4):
//! INFO, PRESENCE, DELEGATE, RECEIPT and SITE_REQUEST over CTAPHID-style framing, for the emulator
//! and for vendors with their own hardware.
//!
//! - [`message`]: each command's payload and its answer's decoder, written
//!   once for both ends.
//! - [`client`]: the host end ([`Client`]): channel allocation, one command at
//!   a time, timeouts, resynchronisation.
//! - [`NativeDongle`]: the [`Dongle`] tetherd drives.

pub mod client;
pub mod message;

use std::time::Duration;

use tether_keys::{
    Certificate, DelegationRequest, Receipt, ReceiptRequest, SiteRequest, SiteRequestAsk,
};

pub use client::{Client, Timeouts};
pub use message::DongleInfo;

use crate::{Dongle, Identity, LinkError, PresenceProof, Result, Selector};

/// A native-protocol dongle behind the [`Dongle`] trait.
#[derive(Debug)]
pub struct NativeDongle {
    client: Client,
}

impl NativeDongle {
    /// Opens the selected dongle and allocates a channel.
    ///
    /// # Errors
    /// [`LinkError::Absent`] when none is present (or it vanishes during
    /// channel allocation); other link faults.
    pub fn connect(selector: &Selector) -> Result<NativeDongle> {
        Ok(NativeDongle {
            client: Client::connect(selector)?,
        })
    }

    /// Wraps a client already open (tests, other transports).
    pub fn from_client(client: Client) -> NativeDongle {
        NativeDongle { client }
    }
}

impl Dongle for NativeDongle {
    fn identify(&mut self) -> Result<Identity> {
        self.client.info().map(Identity::Native)
    }

    fn prove_presence(&mut self, nonce: &[u8; 32]) -> Result<PresenceProof> {
        self.client.presence(nonce).map(PresenceProof::Signature)
    }

    fn certify(&mut self, request: &DelegationRequest) -> Result<Certificate> {
        self.client.delegate(request)
    }

    fn idle(&mut self, timeout: Duration) -> Result<()> {
        self.client.wait_gone(timeout)
    }

    fn sign_receipt(&mut self, request: &ReceiptRequest) -> Result<Receipt> {
        self.client.receipt(request)
    }

    fn sign_site_request(&mut self, ask: &SiteRequestAsk) -> Result<SiteRequest> {
        self.client.site_request(ask)
    }
}

// Keeps the error type reachable from this module's docs.
#[allow(unused_imports)]
use LinkError as _;
