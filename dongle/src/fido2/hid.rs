//! CTAPHID (FIDO CTAP 2.1, section 11.2) on our report framing
//! ([`crate::ctaphid`]): channel allocation (CTAPHID_INIT, 11.2.9.1.3),
//! PING (11.2.9.1.4), CBOR (11.2.9.1.2) with KEEPALIVE (11.2.9.2.6) and
//! CANCEL (11.2.9.1.5), and ERROR answers (11.2.9.1.6).

use std::fmt;
use std::time::{Duration, Instant};

use super::status::CtapStatus;
use crate::ctaphid::{
    BROADCAST, CTAPHID_MAX_MESSAGE, Command, FrameError, Progress, Reassembler, fragment_limited,
};
use crate::error::{ErrorCode, LinkError, ProtocolError, Result};
use crate::transport::Transport;

/// CTAPHID_PING.
pub const PING: Command = Command::Other(0x81);
/// CTAPHID_MSG (CTAP1/U2F; never sent here).
pub const MSG: Command = Command::Other(0x83);
/// CTAPHID_CBOR.
pub const CBOR: Command = Command::Other(0x90);
/// CTAPHID_CANCEL.
pub const CANCEL: Command = Command::Other(0x91);
/// CTAPHID_KEEPALIVE.
pub const KEEPALIVE: Command = Command::Other(0xBB);
/// CAPABILITY_CBOR in the INIT answer: the key speaks CTAP2.
pub const CAPABILITY_CBOR: u8 = 0x04;
/// KEEPALIVE status: still processing.
pub const STATUS_PROCESSING: u8 = 1;
/// KEEPALIVE status: waiting for a touch.
pub const STATUS_UPNEEDED: u8 = 2;

/// Timeouts of the CTAPHID exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fido2Timeouts {
    /// CTAPHID_INIT.
    pub init: Duration,
    /// CTAPHID_PING.
    pub ping: Duration,
    /// A CBOR command with no touch (getInfo, a silent getAssertion), from
    /// the request to the first answer packet; each KEEPALIVE PROCESSING
    /// extends it by this much again, up to [`Fido2Timeouts::touch`].
    pub cbor: Duration,
    /// A CBOR command that waits for a touch (makeCredential at enrolment).
    pub touch: Duration,
}

impl Default for Fido2Timeouts {
    fn default() -> Self {
        Fido2Timeouts {
            init: Duration::from_millis(1000),
            ping: Duration::from_millis(1000),
            cbor: Duration::from_millis(3000),
            touch: Duration::from_secs(30),
        }
    }
}

/// What CTAPHID_INIT said about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HidInfo {
    /// CTAPHID protocol version (2).
    pub protocol: u8,
    /// Device version (major, minor, build).
    pub device_version: (u8, u8, u8),
    /// Capability flags (WINK 0x01, CBOR 0x04, NMSG 0x08).
    pub capabilities: u8,
}

/// One open FIDO2 key, on a channel of its own.
pub struct CtapHid {
    transport: Box<dyn Transport>,
    cid: u32,
    info: HidInfo,
    timeouts: Fido2Timeouts,
    resync: bool,
}

impl fmt::Debug for CtapHid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtapHid")
            .field("transport", &self.transport)
            .field("cid", &format_args!("{:#010x}", self.cid))
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl CtapHid {
    /// Allocates a channel on `transport` (CTAPHID_INIT) and checks the key
    /// speaks CTAP2 (CAPABILITY_CBOR).
    ///
    /// # Errors
    /// [`LinkError::Timeout`] when nothing answers, [`LinkError::Protocol`]
    /// for a bad INIT answer or a key without CTAP2, link errors.
    pub fn open(transport: Box<dyn Transport>, timeouts: Fido2Timeouts) -> Result<CtapHid> {
        let mut hid = CtapHid {
            transport,
            cid: BROADCAST,
            info: HidInfo {
                protocol: 0,
                device_version: (0, 0, 0),
                capabilities: 0,
            },
            timeouts,
            resync: true,
        };
        hid.init()?;
        if hid.info.capabilities & CAPABILITY_CBOR == 0 {
            return Err(ProtocolError::Malformed {
                what: "CTAPHID_INIT response",
                reason: "the key does not speak CTAP2 (no CBOR capability): a U2F-only key cannot serve",
            }
            .into());
        }
        Ok(hid)
    }

    /// What CTAPHID_INIT said.
    pub fn info(&self) -> HidInfo {
        self.info
    }

    /// The allocated channel.
    pub fn channel(&self) -> u32 {
        self.cid
    }

    fn init(&mut self) -> Result<()> {
        let mut nonce = [0u8; 8];
        tether_keys::random_fill(&mut nonce);
        self.send(BROADCAST, Command::Init, &nonce)?;
        let deadline = Instant::now() + self.timeouts.init;
        loop {
            let payload = self.receive(BROADCAST, Command::Init, deadline, None)?;
            // nonce (8), cid (4), protocol (1), major, minor, build, capabilities.
            if payload.len() < 17 {
                return Err(ProtocolError::BadLength {
                    what: "CTAPHID_INIT response",
                    expected: 17,
                    got: payload.len(),
                }
                .into());
            }
            if payload[..8] != nonce {
                // Another host's allocation on the broadcast channel.
                continue;
            }
            let cid = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
            if cid == 0 || cid == BROADCAST {
                return Err(ProtocolError::BadChannel(cid).into());
            }
            self.cid = cid;
            self.info = HidInfo {
                protocol: payload[12],
                device_version: (payload[13], payload[14], payload[15]),
                capabilities: payload[16],
            };
            self.resync = false;
            return Ok(());
        }
    }

    fn send(&mut self, cid: u32, cmd: Command, payload: &[u8]) -> Result<()> {
        for r in fragment_limited(cid, cmd, payload, CTAPHID_MAX_MESSAGE)? {
            self.transport.write_report(&r)?;
        }
        Ok(())
    }

    /// CTAPHID_PING: `data` echoed; liveness with no signature and no
    /// flash write.
    ///
    /// # Errors
    /// [`LinkError::Removed`] when the key went away, [`LinkError::Timeout`],
    /// [`LinkError::Protocol`] when the echo differs.
    pub fn ping(&mut self, data: &[u8]) -> Result<()> {
        let echo = self.exchange(PING, data, self.timeouts.ping, None)?;
        if echo != data {
            return Err(ProtocolError::Malformed {
                what: "CTAPHID_PING response",
                reason: "the echo differs from what was sent",
            }
            .into());
        }
        Ok(())
    }

    /// One CTAP2 command (`request` = command byte + CBOR) over
    /// CTAPHID_CBOR; returns the body of a successful answer.
    ///
    /// With `silent`, a KEEPALIVE asking for a touch cancels the request
    /// and fails with [`CtapStatus::TouchDemanded`]. Without it, the wait
    /// for a touch lasts up to [`Fido2Timeouts::touch`].
    ///
    /// # Errors
    /// [`LinkError::Ctap`] for a status other than success, and as
    /// [`CtapHid::ping`].
    pub fn cbor(&mut self, request: &[u8], silent: bool) -> Result<Vec<u8>> {
        let timeout = if silent {
            self.timeouts.cbor
        } else {
            self.timeouts.touch
        };
        let answer = self.exchange(CBOR, request, timeout, Some(silent))?;
        let (status, body) = super::ctap::split_status(&answer)?;
        if status != 0 {
            return Err(LinkError::Ctap(CtapStatus::from(status)));
        }
        Ok(body.to_vec())
    }

    /// Idles for `timeout`, returning [`LinkError::Removed`] at once on
    /// removal; stray reports are dropped (the next command reallocates).
    ///
    /// # Errors
    /// [`LinkError::Removed`]; other link errors.
    pub fn wait_gone(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.transport.read_report(left)? {
                None => return Ok(()),
                Some(_) => self.resync = true,
            }
        }
    }

    fn exchange(
        &mut self,
        cmd: Command,
        payload: &[u8],
        timeout: Duration,
        keepalive: Option<bool>,
    ) -> Result<Vec<u8>> {
        if self.resync {
            self.init()?;
        }
        let cid = self.cid;
        let result = self
            .send(cid, cmd, payload)
            .and_then(|()| self.receive(cid, cmd, Instant::now() + timeout, keepalive));
        if matches!(&result, Err(e) if !matches!(e, LinkError::Ctap(_) | LinkError::Declined(_))) {
            self.resync = true;
        }
        result
    }

    /// Reads one message on `cid` answering `cmd`; KEEPALIVEs (when
    /// `keepalive` is `Some(silent)`) extend the deadline up to the touch
    /// timeout, or cancel a silent request that wants a touch.
    fn receive(
        &mut self,
        cid: u32,
        cmd: Command,
        deadline: Instant,
        keepalive: Option<bool>,
    ) -> Result<Vec<u8>> {
        let mut deadline = deadline;
        let limit = Instant::now() + self.timeouts.touch;
        let mut asm = Reassembler::with_limit(cid, CTAPHID_MAX_MESSAGE);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let report = if left.is_zero() {
                None
            } else {
                self.transport.read_report(left)?
            };
            let Some(report) = report else {
                return Err(asm.finish().map_or(LinkError::Timeout, LinkError::from));
            };
            match asm.push(&report) {
                Err(FrameError::WrongChannel { .. }) => continue,
                Err(e) => return Err(e.into()),
                Ok(Progress::NeedMore) => continue,
                Ok(Progress::Done(m)) if m.cmd == Command::Error => {
                    let code = m.payload.first().copied().unwrap_or(0x7F);
                    return Err(LinkError::Declined(ErrorCode::from(code)));
                }
                Ok(Progress::Done(m)) if m.cmd == KEEPALIVE && keepalive.is_some() => {
                    let status = m.payload.first().copied().unwrap_or(0);
                    if status == STATUS_UPNEEDED && keepalive == Some(true) {
                        // CTAPHID_CANCEL has no answer of its own; the key then
                        // answers the request with KEEPALIVE_CANCEL, which the
                        // next command's fresh channel leaves behind.
                        let _ = self.send(cid, CANCEL, &[]);
                        self.resync = true;
                        return Err(LinkError::Ctap(CtapStatus::TouchDemanded));
                    }
                    let step = if keepalive == Some(true) {
                        self.timeouts.cbor
                    } else {
                        self.timeouts.touch
                    };
                    deadline = (Instant::now() + step).min(limit.max(deadline));
                    asm = Reassembler::with_limit(cid, CTAPHID_MAX_MESSAGE);
                }
                Ok(Progress::Done(m)) if m.cmd != cmd => {
                    return Err(ProtocolError::UnexpectedCommand {
                        expected: cmd.byte(),
                        got: m.cmd.byte(),
                    }
                    .into());
                }
                Ok(Progress::Done(m)) => return Ok(m.payload),
            }
        }
    }
}
