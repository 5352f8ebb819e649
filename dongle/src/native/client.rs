//! The host end: [`Client`] allocates a channel with INIT, then runs one
//! command at a time, checking channel, sequence, command and echoed nonce
//! (`docs/dongle-protocol.md`, sections 3-5).

use std::fmt;
use std::time::{Duration, Instant};

use tether_keys::{
    Certificate, DelegationRequest, Receipt, ReceiptRequest, SiteRequest, SiteRequestAsk,
};

use super::message::{
    self, Delegate, DongleInfo, INIT_NONCE_LEN, Info, Init, NativeCommand, Presence,
    ReceiptCommand, SiteRequestCommand,
};
use crate::Selector;
use crate::ctaphid::{BROADCAST, Command, FrameError, Progress, Reassembler, fragment};
use crate::error::{LinkError, ProtocolError, Result};
use crate::hid::HidTransport;
use crate::transport::{SocketTransport, Transport};

/// Per-command timeouts (section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// INIT (channel allocation).
    pub init: Duration,
    /// INFO.
    pub info: Duration,
    /// PRESENCE: one signature.
    pub presence: Duration,
    /// DELEGATE: one signature and a counter write to flash.
    pub delegate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            init: Duration::from_millis(1000),
            info: Duration::from_millis(1000),
            presence: Duration::from_millis(1000),
            delegate: Duration::from_millis(3000),
        }
    }
}

/// An open link to one dongle, on a channel of its own.
pub struct Client {
    transport: Box<dyn Transport>,
    cid: u32,
    firmware: (u8, u8, u8),
    timeouts: Timeouts,
    /// Set after a timeout or a garbled answer: a late answer may still be
    /// on the way, so the next command first allocates a fresh channel.
    resync: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport)
            .field("cid", &format_args!("{:#010x}", self.cid))
            .field("firmware", &self.firmware)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the selected dongle and allocates a channel.
    ///
    /// # Errors
    ///
    /// [`LinkError::Absent`] when none is present (or it vanishes during
    /// INIT); otherwise as [`Client::open`], or the transport's error when
    /// it cannot be opened (`Io`, `Hid`).
    pub fn connect(sel: &Selector) -> Result<Client> {
        let transport: Box<dyn Transport> = match sel {
            Selector::Hid { vid, pid, serial } => {
                Box::new(HidTransport::open(*vid, *pid, serial.as_deref())?)
            }
            Selector::Socket(path) => Box::new(SocketTransport::connect(path)?),
        };
        match Client::open(transport, Timeouts::default()) {
            Err(LinkError::Removed) => Err(LinkError::Absent),
            other => other,
        }
    }

    /// Runs INIT over any transport.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`]: the INIT exchange timed out, was declined,
    /// broke the protocol, or the link failed.
    pub fn open(transport: Box<dyn Transport>, timeouts: Timeouts) -> Result<Client> {
        let mut client = Client {
            transport,
            cid: BROADCAST,
            firmware: (0, 0, 0),
            timeouts,
            resync: true,
        };
        client.init()?;
        Ok(client)
    }

    /// The allocated channel id.
    pub fn channel(&self) -> u32 {
        self.cid
    }

    /// The firmware version the INIT answer gave.
    pub fn firmware(&self) -> (u8, u8, u8) {
        self.firmware
    }

    /// INFO: serial, firmware, public key, counter.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`], and [`LinkError::Protocol`] for an answer
    /// that does not decode.
    pub fn info(&mut self) -> Result<DongleInfo> {
        self.transact(&Info, self.timeouts.info)
    }

    /// PRESENCE: the raw signature over
    /// [`tether_keys::delegation::presence_message`]`(nonce)`; the caller verifies it.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`], and [`LinkError::Protocol`] for an answer
    /// that is not one signature.
    pub fn presence(&mut self, nonce: &[u8; 32]) -> Result<[u8; 64]> {
        self.transact(&Presence { nonce: *nonce }, self.timeouts.presence)
    }

    /// DELEGATE: the decoded certificate; the caller verifies signature,
    /// request, serial and counter.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`] ([`LinkError::Declined`] when the device's
    /// rules refuse the window), and [`LinkError::Protocol`] for an answer
    /// that is not a canonical certificate.
    pub fn delegate(&mut self, req: &DelegationRequest) -> Result<Certificate> {
        self.transact(&Delegate(req.clone()), self.timeouts.delegate)
    }

    /// RECEIPT: the decoded revocation receipt (section 4.5), under the
    /// DELEGATE timeout (a signature and a counter write to flash); the
    /// caller verifies signature, request, serial and counter.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`], and [`LinkError::Protocol`] for an answer
    /// that is not a canonical receipt.
    pub fn receipt(&mut self, req: &ReceiptRequest) -> Result<Receipt> {
        self.transact(&ReceiptCommand(*req), self.timeouts.delegate)
    }

    /// SITE_REQUEST: the decoded site request (section 4.6), under the
    /// DELEGATE timeout; the caller verifies it.
    ///
    /// # Errors
    ///
    /// As [`Client::transact`], and [`LinkError::Protocol`] for an answer
    /// that is not a canonical site request.
    pub fn site_request(&mut self, ask: &SiteRequestAsk) -> Result<SiteRequest> {
        self.transact(&SiteRequestCommand(*ask), self.timeouts.delegate)
    }

    /// Idles for `timeout`, returning early with [`LinkError::Removed`] the
    /// moment the link reports removal. Stray reports are discarded (and make
    /// the next command use a fresh channel).
    ///
    /// # Errors
    ///
    /// [`LinkError::Removed`] on removal; the transport's other errors
    /// (`Io`, `Hid`) as they come.
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

    /// Allocates a fresh channel on the broadcast channel (section 4.1).
    fn init(&mut self) -> Result<()> {
        let mut nonce = [0u8; INIT_NONCE_LEN];
        tether_keys::random_fill(&mut nonce);
        let (cmd, payload) = Init { nonce }.request().encode();
        for r in fragment(BROADCAST, cmd, &payload)? {
            self.transport.write_report(&r)?;
        }
        let deadline = Instant::now() + self.timeouts.init;
        let mut foreign_nonce = false;
        loop {
            let payload = match self.receive(BROADCAST, Command::Init, deadline) {
                Err(LinkError::Timeout) if foreign_nonce => {
                    return Err(ProtocolError::NonceMismatch.into());
                }
                other => other?,
            };
            let answer = Init::decode_response(&payload)?;
            if answer.nonce != nonce {
                // Another host's allocation on the shared broadcast channel.
                foreign_nonce = true;
                continue;
            }
            if answer.cid == 0 || answer.cid == BROADCAST {
                return Err(ProtocolError::BadChannel(answer.cid).into());
            }
            self.cid = answer.cid;
            self.firmware = answer.firmware;
            self.resync = false;
            return Ok(());
        }
    }

    /// Runs one command on our channel (allocating a fresh one first after
    /// a timeout or a garbled answer) and decodes its answer.
    ///
    /// # Errors
    /// [`LinkError::Timeout`] with no whole answer within `timeout`,
    /// [`LinkError::Declined`] for an ERROR answer, [`LinkError::Protocol`]
    /// for an answer that does not frame or decode, and the transport's
    /// errors ([`LinkError::Removed`] on removal).
    pub fn transact<C: NativeCommand>(
        &mut self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Response> {
        let payload = self.exchange(command, timeout)?;
        let decoded = C::decode_response(&payload);
        if decoded.is_err() {
            self.resync = true;
        }
        Ok(decoded?)
    }

    fn exchange<C: NativeCommand>(&mut self, command: &C, timeout: Duration) -> Result<Vec<u8>> {
        if self.resync {
            self.init()?;
        }
        let (cmd, payload) = command.request().encode();
        let result = (|| {
            for r in fragment(self.cid, cmd, &payload)? {
                self.transport.write_report(&r)?;
            }
            self.receive(self.cid, cmd, Instant::now() + timeout)
        })();
        if matches!(&result, Err(e) if !matches!(e, LinkError::Declined(_))) {
            self.resync = true;
        }
        result
    }

    /// Reads one message on `cid` answering `cmd`. Reports on other channels
    /// are other hosts' traffic and are skipped; any other framing fault fails.
    fn receive(&mut self, cid: u32, cmd: Command, deadline: Instant) -> Result<Vec<u8>> {
        let mut asm = Reassembler::new(cid);
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
                    return Err(LinkError::Declined(message::decode_error(&m.payload)?));
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
