//! A FIDO2 security key behind the [`Dongle`] trait (`docs/dongle-protocol.md`,
//! section 8.4): opened with the license's [`Fido2Credential`], it
//! identifies by the credential's serial and the key's getInfo, proves
//! liveness with CTAPHID PING (no signature, no flash write), and certifies
//! a session key with one silent getAssertion per certificate.

use std::time::Duration;

use tether_keys::fido2::normalize_es256_signature;
use tether_keys::{Certificate, DelegationRequest, Fido2Algorithm, Fido2Credential};

use super::{Fido2Client, Fido2Selector, GetAssertion};
use crate::error::{LinkError, ProtocolError, Result};
use crate::{Dongle, Driver, Fido2Identity, Identity, PresenceProof};

/// One open FIDO2 key and the credential the license names.
#[derive(Debug)]
pub struct Fido2Dongle {
    client: Fido2Client,
    credential: Fido2Credential,
    serial: String,
}

impl Fido2Dongle {
    /// Opens the selected key for `credential`.
    ///
    /// # Errors
    /// [`LinkError::Absent`] when no key is present; other link errors.
    pub fn connect(selector: &Fido2Selector, credential: Fido2Credential) -> Result<Fido2Dongle> {
        Ok(Fido2Dongle::from_client(
            Fido2Client::connect(selector)?,
            credential,
        ))
    }

    /// Wraps an open client (tests, other transports).
    pub fn from_client(client: Fido2Client, credential: Fido2Credential) -> Fido2Dongle {
        let serial = credential.serial();
        Fido2Dongle {
            client,
            credential,
            serial,
        }
    }

    /// The credential this dongle signs with.
    pub fn credential(&self) -> &Fido2Credential {
        &self.credential
    }

    /// The open client (getInfo, raw commands).
    pub fn client(&mut self) -> &mut Fido2Client {
        &mut self.client
    }
}

impl Dongle for Fido2Dongle {
    fn identify(&mut self) -> Result<Identity> {
        let info = self.client.get_info()?;
        if !info.is_ctap2() {
            return Err(ProtocolError::Malformed {
                what: "authenticatorGetInfo response",
                reason: "the key lists no FIDO_2_x version",
            }
            .into());
        }
        let hid = self.client.hid().info();
        let firmware = match info.firmware_version {
            Some(v) => format!(
                "{v} (device {}.{}.{})",
                hid.device_version.0, hid.device_version.1, hid.device_version.2
            ),
            None => format!(
                "{}.{}.{}",
                hid.device_version.0, hid.device_version.1, hid.device_version.2
            ),
        };
        let always_uv = info.always_uv();
        Ok(Identity::Fido2(Fido2Identity {
            serial: self.serial.clone(),
            firmware,
            aaguid: info.aaguid,
            versions: info.versions,
            always_uv,
        }))
    }

    fn prove_presence(&mut self, nonce: &[u8; 32]) -> Result<PresenceProof> {
        self.client.hid().ping(nonce)?;
        Ok(PresenceProof::Ping)
    }

    fn certify(&mut self, request: &DelegationRequest) -> Result<Certificate> {
        let client_data_hash =
            request
                .fido2_client_data_hash(&self.serial)
                .map_err(|_| ProtocolError::Malformed {
                    what: "delegation request",
                    reason: "does not fit a FIDO2 certificate",
                })?;
        let assertion = self.client.get_assertion(&GetAssertion {
            rp_id: self.credential.rp_id.clone(),
            client_data_hash,
            credential_id: self.credential.credential_id.clone(),
        })?;
        let signature = match self.credential.algorithm {
            Fido2Algorithm::Ed25519 => assertion.signature,
            // Keys do not normalise S; a certificate carries the low-S twin.
            Fido2Algorithm::Es256 => {
                normalize_es256_signature(&assertion.signature).map_err(|_| {
                    ProtocolError::Malformed {
                        what: "getAssertion signature",
                        reason: "not a strict DER ECDSA signature",
                    }
                })?
            }
        };
        Certificate::from_fido2_assertion(
            request.clone(),
            &self.serial,
            assertion.auth_data,
            signature,
        )
        .map_err(|_| {
            LinkError::Protocol(ProtocolError::Malformed {
                what: "getAssertion answer",
                reason: "authenticator data or signature of the wrong shape for an assertion",
            })
        })
    }

    fn idle(&mut self, timeout: Duration) -> Result<()> {
        self.client.hid().wait_gone(timeout)
    }
}

/// Opens the selected FIDO2 key for a fixed credential.
#[derive(Debug, Clone)]
pub struct Fido2Driver {
    /// Which key.
    pub selector: Fido2Selector,
    /// The credential the license names.
    pub credential: Fido2Credential,
}

impl Driver for Fido2Driver {
    fn open(&self) -> Result<Box<dyn Dongle>> {
        Ok(Box::new(Fido2Dongle::connect(
            &self.selector,
            self.credential.clone(),
        )?))
    }
}
