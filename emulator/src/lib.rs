//! The device side of Tether's native dongle (`docs/dongle-protocol.md`):
//! the firmware's behaviour, byte for byte, as [`Device`]. Used by the
//! `tether` CLI and the tests, never by tetherd.
//!
//! [`Device::handle_report`] takes one 64-byte report and returns the reports
//! the firmware would send back, including ERROR answers for malformed frames
//! (`docs/dongle-protocol.md`, section 3.5). It loads an identity made by
//! `tether keygen dongle`, keeps its signature counter in a state file written
//! atomically, and enforces the DELEGATE rules of section 6 ([`Rules`]).
//! [`Fault`]s make it misbehave for tests. [`socket`] serves it on a Unix
//! socket with plug/unplug control, [`uhid`] as a kernel HID device, and
//! [`LocalTransport`] in-process for unit tests.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::missing_errors_doc)]

mod local;
pub mod socket;
mod stop;
pub mod uhid;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tether_keys::delegation::presence_message;
use tether_keys::{
    Certificate, DelegationRequest, Dongle, PublicKey, Receipt, SecretKey, SiteRequest, keyfile,
};

use tether_dongle::ErrorCode;
use tether_dongle::ctaphid::{
    BROADCAST, Command, FrameError, Packet, Progress, REPORT_LEN, Reassembler, Report, fragment,
};
use tether_dongle::native::message::{DongleInfo, InitResponse, PROTOCOL_VERSION, Request};

pub use local::LocalTransport;
pub use socket::{LinkDevice, SocketEmulator, SocketServer};

/// The firmware version the emulator reports.
pub const FIRMWARE: (u8, u8, u8) = (0, 1, 0);
/// A message not completed within this time is dropped (section 3.5).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_millis(500);
/// Name of the key file in an identity directory.
pub const KEY_FILE: &str = "dongle.key";
/// Default name of the state file beside it.
pub const STATE_FILE: &str = "dongle.state";

/// The firmware's DELEGATE rules (section 6): a bound on how far ahead
/// certificates reach, not on how many are signed, so re-plugs and restarts
/// of a genuine host never lock it out.
///
/// The dongle keeps a *reach budget* in flash, in seconds of validity. A
/// DELEGATE costs the seconds its window adds to what the dongle already
/// covered (the run of windows it signed last), and never less than
/// [`Rules::min_charge`]; the budget refills only while powered, at
/// [`Rules::reach_rate`] seconds per second of uptime, up to
/// [`Rules::reach_budget`]. So time `D` powered buys at most
/// `reach_budget + reach_rate x D` seconds of validity in all, however the
/// windows are dated and however often the dongle is power-cycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Longest validity window signed (`not_after - not_before`).
    pub max_window: Duration,
    /// The reach budget's size (and its level when new); zero turns the
    /// reach rule off (tests and benches only).
    pub reach_budget: Duration,
    /// Seconds of reach earned per second powered.
    pub reach_rate: u32,
    /// The least one DELEGATE costs, even when its window adds nothing new:
    /// bounds how many certificates a budget buys.
    pub min_charge: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_window: Duration::from_secs(600),
            reach_budget: Duration::from_secs(3600),
            reach_rate: 2,
            min_charge: Duration::from_secs(60),
        }
    }
}

impl Rules {
    /// No reach rule at all (tests and benches that re-plug hundreds of
    /// times); the window rule stays.
    pub fn unlimited() -> Rules {
        Rules {
            reach_budget: Duration::ZERO,
            ..Rules::default()
        }
    }
}

/// Ways to misbehave, for tests (section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Sign with a different key under the same serial.
    Clone,
    /// Report and sign counters restarted from 0 (a restored old state).
    Rollback,
    /// Answer every report with random bytes on the same channel.
    Garbage,
    /// Never answer.
    Silent,
    /// Answer after this delay.
    Slow(Duration),
    /// Answer DELEGATE with the previous DELEGATE answer.
    Replay,
    /// Sign another nonce than the one asked (PRESENCE and DELEGATE).
    WrongNonce,
    /// Answer DELEGATE with the certificate asked for, but carrying the
    /// PRESENCE signature over its nonce instead of a delegation signature
    /// (a presence proof offered as a certificate).
    PresenceAsDelegate,
    /// Answer every report with an init packet announcing more than the
    /// largest message (`MAX_MESSAGE`), then continuation packets.
    Oversized,
}

/// A fault name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown fault {0:?}: none, clone, rollback, garbage, silent, slow[:MS], replay, wrong-nonce, presence-as-delegate, oversized"
)]
pub struct FaultError(String);

impl FromStr for Fault {
    type Err = FaultError;
    fn from_str(s: &str) -> Result<Fault, FaultError> {
        Ok(match s {
            "none" => Fault::None,
            "clone" => Fault::Clone,
            "rollback" => Fault::Rollback,
            "garbage" => Fault::Garbage,
            "silent" | "silence" => Fault::Silent,
            "slow" => Fault::Slow(Duration::from_secs(2)),
            "replay" => Fault::Replay,
            "wrong-nonce" => Fault::WrongNonce,
            "presence-as-delegate" => Fault::PresenceAsDelegate,
            "oversized" => Fault::Oversized,
            other => match other.strip_prefix("slow:").and_then(|ms| ms.parse().ok()) {
                Some(ms) => Fault::Slow(Duration::from_millis(ms)),
                None => return Err(FaultError(s.to_string())),
            },
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::Clone => f.write_str("clone"),
            Fault::Rollback => f.write_str("rollback"),
            Fault::Garbage => f.write_str("garbage"),
            Fault::Silent => f.write_str("silent"),
            Fault::Slow(d) => write!(f, "slow:{}", d.as_millis()),
            Fault::Replay => f.write_str("replay"),
            Fault::WrongNonce => f.write_str("wrong-nonce"),
            Fault::PresenceAsDelegate => f.write_str("presence-as-delegate"),
            Fault::Oversized => f.write_str("oversized"),
        }
    }
}

/// Why an identity or its state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] tether_keys::Error),
    /// The key file names no serial.
    #[error("{0}: no {hdr} header", hdr = keyfile::SERIAL_HEADER)]
    NoSerial(PathBuf),
    /// The state file cannot be read or written.
    #[error("{path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file does not parse.
    #[error("{path}: not a dongle state file: {source}")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What survives power cycles (the firmware's flash). Files of firmware
/// 0.1 (`last_not_before`, `bucket_milli`) still load: those fields are
/// ignored and the reach budget starts full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Persisted {
    /// DELEGATEs signed.
    counter: u32,
    /// Reach budget level, in milliseconds of validity (absent: full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reach_milli: Option<u64>,
    /// The run of validity last covered, `[start, end]` in Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<(u64, u64)>,
}

fn load_state(path: &Path) -> Result<Persisted, EmulatorError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| EmulatorError::StateFormat {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
        Err(source) => Err(EmulatorError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The flash write: temp file, fsync, rename, fsync the directory
/// ([`tether_keys::fsutil::write_atomic`]); a crash leaves the old or the new state.
fn save_state(path: &Path, state: &Persisted) -> tether_keys::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    tether_keys::fsutil::write_atomic(path, &bytes, 0o600)
}

/// A message being received: the host side's reassembler, written once
/// (section 3.3), and when its init packet came (section 3.5).
#[derive(Debug)]
struct Pending {
    cid: u32,
    asm: Reassembler,
    since: Duration,
}

/// The emulated dongle.
pub struct Device {
    key: SecretKey<Dongle>,
    clone_key: Option<SecretKey<Dongle>>,
    serial: String,
    rules: Rules,
    state: Persisted,
    state_path: Option<PathBuf>,
    fault: Fault,
    rollback_counter: u32,
    powered_at: Instant,
    /// Reach budget level in milliseconds (mirrors flash).
    reach_milli: u64,
    /// Uptime at which the budget was last refilled.
    reach_at: Duration,
    next_cid: u32,
    pending: Option<Pending>,
    last_delegate: Option<Vec<u8>>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("serial", &self.serial)
            .field("public_key", &self.key.public())
            .field("counter", &self.state.counter)
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device with in-memory state (counter 0), powered up now.
    pub fn new(key: SecretKey<Dongle>, serial: &str, rules: Rules) -> Device {
        Device::with_state(key, serial.to_string(), rules, Persisted::default(), None)
    }

    fn with_state(
        key: SecretKey<Dongle>,
        serial: String,
        rules: Rules,
        state: Persisted,
        state_path: Option<PathBuf>,
    ) -> Device {
        let full = duration_millis(rules.reach_budget);
        Device {
            key,
            clone_key: None,
            serial,
            rules,
            reach_milli: state.reach_milli.unwrap_or(full).min(full),
            state,
            state_path,
            fault: Fault::None,
            rollback_counter: 0,
            powered_at: Instant::now(),
            reach_at: Duration::ZERO,
            next_cid: 1,
            pending: None,
            last_delegate: None,
        }
    }

    /// Loads `DIR/dongle.key` (made by `tether keygen dongle`) and the state
    /// file (`state`, default `DIR/dongle.state`; absent means counter 0).
    ///
    /// # Errors
    ///
    /// [`EmulatorError::Key`] when the key file cannot be read or is not a
    /// dongle key, [`EmulatorError::NoSerial`] when it names no serial, and
    /// [`EmulatorError::State`] or [`EmulatorError::StateFormat`] when the
    /// state file cannot be read or does not parse.
    pub fn load(
        identity: &Path,
        state: Option<&Path>,
        rules: Rules,
    ) -> Result<Device, EmulatorError> {
        let key_path = identity.join(KEY_FILE);
        let (key, headers) = keyfile::read_secret_key::<Dongle>(&key_path)?;
        let serial = headers
            .get(keyfile::SERIAL_HEADER)
            .cloned()
            .ok_or(EmulatorError::NoSerial(key_path))?;
        let state_path = state.map_or_else(|| identity.join(STATE_FILE), Path::to_path_buf);
        let persisted = load_state(&state_path)?;
        Ok(Device::with_state(
            key,
            serial,
            rules,
            persisted,
            Some(state_path),
        ))
    }

    /// The serial.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The genuine public key.
    pub fn public_key(&self) -> PublicKey<Dongle> {
        self.key.public()
    }

    /// The genuine counter (faults aside).
    pub fn counter(&self) -> u32 {
        self.state.counter
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Switches the fault mode.
    pub fn set_fault(&mut self, fault: Fault) {
        if fault == Fault::Clone && self.clone_key.is_none() {
            self.clone_key = Some(SecretKey::generate());
        }
        if fault == Fault::Rollback && self.fault != Fault::Rollback {
            self.rollback_counter = 0;
        }
        self.fault = fault;
    }

    /// How long the link should hold each answer back (the reports of a
    /// request are taken at once).
    pub fn reply_delay(&self) -> Duration {
        match self.fault {
            Fault::Slow(d) => d,
            _ => Duration::ZERO,
        }
    }

    /// Power-up (plug): tick count restarts, channels and partial messages
    /// are gone; the flash state (counter, reach budget, covered run) stays.
    pub fn power_up(&mut self) {
        self.powered_at = Instant::now();
        self.reach_at = Duration::ZERO;
        self.next_cid = 1;
        self.pending = None;
    }

    /// Handles one report now.
    pub fn handle_report(&mut self, report: &[u8]) -> Vec<Report> {
        let uptime = self.powered_at.elapsed();
        self.handle_report_at(report, uptime)
    }

    /// Handles one report at `uptime` since power-up (tests drive the clock).
    /// Never panics.
    pub fn handle_report_at(&mut self, report: &[u8], uptime: Duration) -> Vec<Report> {
        match self.fault {
            Fault::Silent => return Vec::new(),
            Fault::Garbage => return garbage(report),
            Fault::Oversized => return oversized(report),
            _ => {}
        }
        let mut out = Vec::new();
        if let Some(p) = &self.pending
            && uptime.saturating_sub(p.since) > MESSAGE_TIMEOUT
        {
            let cid = p.cid;
            self.pending = None;
            out.extend(error(cid, ErrorCode::MessageTimeout));
        }
        let packet = match Packet::decode(report) {
            Ok(p) => p,
            Err(FrameError::Oversized(_)) => {
                out.extend(error(cid_of(report), ErrorCode::InvalidLength));
                return out;
            }
            // Not a 64-byte report: the HID stack would not deliver it.
            Err(_) => return out,
        };
        let cid = packet.cid();
        if let Packet::Init(init) = &packet {
            if cid == 0 || (cid == BROADCAST && init.cmd != Command::Init) {
                out.extend(error(cid, ErrorCode::InvalidChannel));
                return out;
            }
            if cid != BROADCAST && !self.allocated(cid) {
                out.extend(error(cid, ErrorCode::InvalidChannel));
                return out;
            }
            if let Some(p) = &self.pending {
                if p.cid != cid {
                    out.extend(error(cid, ErrorCode::ChannelBusy));
                    return out;
                }
                // A new init packet on the busy channel: only INIT may cut
                // the message short (a resync).
                self.pending = None;
                if init.cmd != Command::Init {
                    out.extend(error(cid, ErrorCode::InvalidSequence));
                    return out;
                }
            }
        }
        let mut pending = match (self.pending.take(), &packet) {
            (Some(p), _) if p.cid == cid => p,
            // A continuation nobody is waiting for is ignored (section 3.5).
            (Some(p), _) => {
                self.pending = Some(p);
                return out;
            }
            (None, Packet::Cont(_)) => return out,
            (None, Packet::Init(_)) => Pending {
                cid,
                asm: Reassembler::new(cid),
                since: uptime,
            },
        };
        match pending.asm.push(report) {
            Ok(Progress::NeedMore) => self.pending = Some(pending),
            Ok(Progress::Done(m)) => out.extend(self.respond(m.cid, m.cmd, &m.payload, uptime)),
            // Out of order, duplicate, or anything else that breaks the
            // message: it is dropped (section 3.5).
            Err(_) => out.extend(error(cid, ErrorCode::InvalidSequence)),
        }
        out
    }

    fn allocated(&self, cid: u32) -> bool {
        cid != 0 && cid < self.next_cid
    }

    fn signing_key(&self) -> &SecretKey<Dongle> {
        match (&self.fault, &self.clone_key) {
            (Fault::Clone, Some(k)) => k,
            _ => &self.key,
        }
    }

    fn reported_counter(&self) -> u32 {
        if self.fault == Fault::Rollback {
            self.rollback_counter
        } else {
            self.state.counter
        }
    }

    /// Frames the answer to one whole message.
    fn respond(&mut self, cid: u32, cmd: Command, payload: &[u8], uptime: Duration) -> Vec<Report> {
        match self.command(cid, cmd, payload, uptime) {
            Ok(p) => fragment(cid, cmd, &p).unwrap_or_else(|_| error(cid, ErrorCode::Internal)),
            Err(code) => error(cid, code),
        }
    }

    /// The firmware's one call per command, with no framing: the payload of a
    /// whole request on channel `cid` at `uptime` since power-up, and the
    /// answer's payload or the error code to send (section 4).
    ///
    /// # Errors
    /// The [`ErrorCode`] the dongle answers with: a request that does not
    /// parse, a DELEGATE its rules refuse (section 6), or a failure to
    /// persist its counter.
    pub fn command(
        &mut self,
        cid: u32,
        cmd: Command,
        payload: &[u8],
        uptime: Duration,
    ) -> Result<Vec<u8>, ErrorCode> {
        let req = Request::parse(cmd, payload)?;
        match req {
            Request::Init { nonce } => {
                // On the broadcast channel: a fresh channel. On our own: resync, same channel.
                let new = if cid == BROADCAST {
                    let c = self.next_cid;
                    self.next_cid = match self.next_cid.wrapping_add(1) {
                        BROADCAST => 1,
                        n => n,
                    };
                    c
                } else {
                    cid
                };
                Ok(InitResponse {
                    nonce,
                    cid: new,
                    version: PROTOCOL_VERSION,
                    firmware: FIRMWARE,
                    capabilities: 0,
                }
                .encode())
            }
            Request::Info => Ok(DongleInfo {
                serial: self.serial.clone(),
                firmware: FIRMWARE,
                public_key: self.signing_key().public(),
                counter: self.reported_counter(),
            }
            .encode()),
            Request::Presence { nonce } => {
                let nonce = if self.fault == Fault::WrongNonce {
                    tether_keys::delegation::fresh_nonce()
                } else {
                    nonce
                };
                Ok(self.signing_key().sign(&presence_message(&nonce)).to_vec())
            }
            Request::Delegate(req) => self.delegate(req, uptime),
            Request::Receipt(req) => {
                let counter = self.count()?;
                Receipt::sign(req, &self.serial, counter, self.signing_key())
                    .map(|r| r.encoded().to_vec())
                    .map_err(|_| ErrorCode::Internal)
            }
            Request::SiteRequest(ask) => {
                let counter = self.count()?;
                SiteRequest::sign(ask, &self.serial, counter, self.signing_key())
                    .map(|r| r.encoded().to_vec())
                    .map_err(|_| ErrorCode::Internal)
            }
        }
    }

    /// The counter rule of RECEIPT and SITE_REQUEST (sections 4.5, 4.6), as
    /// for DELEGATE: the next counter reaches flash before any signature
    /// carries it. No reach budget: neither signs validity.
    fn count(&mut self) -> Result<u32, ErrorCode> {
        if self.fault == Fault::Rollback {
            self.rollback_counter = self.rollback_counter.saturating_add(1);
            return Ok(self.rollback_counter);
        }
        let mut next = self.state.clone();
        next.counter = next.counter.checked_add(1).ok_or(ErrorCode::Internal)?;
        if let Some(path) = &self.state_path
            && let Err(e) = save_state(path, &next)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot persist the dongle state");
            return Err(ErrorCode::Internal);
        }
        self.state = next;
        Ok(self.state.counter)
    }

    /// Earns reach for the uptime since the last refill (section 6).
    fn refill(&mut self, uptime: Duration) {
        let full = duration_millis(self.rules.reach_budget);
        let earned = duration_millis(uptime.saturating_sub(self.reach_at))
            .saturating_mul(u64::from(self.rules.reach_rate));
        self.reach_milli = self.reach_milli.saturating_add(earned).min(full);
        self.reach_at = uptime;
    }

    /// The window rules and the reach rule of section 6, then the counter
    /// (in flash before any signature carries it), then the signature: a
    /// version 2 certificate carrying whatever commitment and ledger head
    /// the host asked for.
    fn delegate(&mut self, req: DelegationRequest, uptime: Duration) -> Result<Vec<u8>, ErrorCode> {
        if self.fault == Fault::Replay
            && let Some(old) = &self.last_delegate
        {
            return Ok(old.clone());
        }
        if req.not_after <= req.not_before {
            return Err(ErrorCode::InvalidWindow);
        }
        if req.not_after.saturating_duration_since(req.not_before) > self.rules.max_window {
            return Err(ErrorCode::WindowTooLong);
        }
        // The commitment is signed blindly, as asked (the consumers check
        // it); only a certificate the format cannot hold is refused, and
        // before anything is counted.
        if req.check(&self.serial).is_err() {
            return Err(ErrorCode::InvalidParameter);
        }
        let mut next = self.state.clone();
        let limited = !self.rules.reach_budget.is_zero();
        if limited {
            self.refill(uptime);
            let window = (req.not_before.secs(), req.not_after.secs());
            let cost = reach_cost(window, self.state.run)
                .max(self.rules.min_charge.as_secs())
                .saturating_mul(1000);
            if cost > self.reach_milli {
                return Err(ErrorCode::RateLimited);
            }
            next.reach_milli = Some(self.reach_milli - cost);
            next.run = Some(extend_run(window, self.state.run));
        }
        let counter = if self.fault == Fault::Rollback {
            self.rollback_counter = self.rollback_counter.saturating_add(1);
            self.rollback_counter
        } else {
            next.counter = next.counter.checked_add(1).ok_or(ErrorCode::Internal)?;
            next.counter
        };
        // The counter and the budget reach flash before any signature carries them.
        if let Some(path) = &self.state_path
            && let Err(e) = save_state(path, &next)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot persist the dongle state");
            return Err(ErrorCode::Internal);
        }
        if let Some(level) = next.reach_milli {
            self.reach_milli = level;
        }
        self.state = next;
        let mut signed = req;
        if self.fault == Fault::WrongNonce {
            signed.nonce = tether_keys::delegation::fresh_nonce();
        }
        let nonce = signed.nonce;
        let cert = Certificate::sign(signed, &self.serial, counter, self.signing_key())
            .map_err(|_| ErrorCode::Internal)?;
        let mut bytes = cert.encoded().to_vec();
        if self.fault == Fault::PresenceAsDelegate {
            // The body as asked, the signature a PRESENCE over its nonce gives.
            let presence = self.signing_key().sign(&presence_message(&nonce));
            let at = bytes.len() - presence.len();
            bytes[at..].copy_from_slice(&presence);
        }
        self.last_delegate = Some(bytes.clone());
        Ok(bytes)
    }
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds of `window` (`[not_before, not_after]`) outside the covered
/// `run`: what a DELEGATE adds to the validity already signed. Validity
/// covered before the run was forgotten and is charged again, which only
/// ever overcharges.
pub fn reach_cost(window: (u64, u64), run: Option<(u64, u64)>) -> u64 {
    let (nb, na) = window;
    let len = na.saturating_sub(nb);
    match run {
        None => len,
        Some((a, r)) => {
            let overlap = na.min(r).saturating_sub(nb.max(a));
            len - overlap.min(len)
        }
    }
}

/// The covered run after signing `window`: merged when they touch, else the
/// later of the two.
pub fn extend_run(window: (u64, u64), run: Option<(u64, u64)>) -> (u64, u64) {
    let (nb, na) = window;
    match run {
        Some((a, r)) if nb <= r && na >= a => (a.min(nb), r.max(na)),
        Some((a, r)) if na <= r => (a, r),
        _ => (nb, na),
    }
}

fn cid_of(report: &[u8]) -> u32 {
    match report {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn error(cid: u32, code: ErrorCode) -> Vec<Report> {
    fragment(cid, Command::Error, &[code.code()]).unwrap_or_default()
}

/// An init packet announcing a 65535-byte message, then continuation
/// packets, on the asker's channel and command.
fn oversized(report: &[u8]) -> Vec<Report> {
    let mut init = [0xA5u8; REPORT_LEN];
    init[..4].copy_from_slice(&cid_of(report).to_be_bytes());
    init[4] = report.get(4).copied().unwrap_or(0x80) | 0x80;
    init[5..7].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut out = vec![init];
    for seq in 0..2u8 {
        let mut cont = [0x5Au8; REPORT_LEN];
        cont[..4].copy_from_slice(&cid_of(report).to_be_bytes());
        cont[4] = seq;
        out.push(cont);
    }
    out
}

/// Random reports on the asker's channel.
fn garbage(report: &[u8]) -> Vec<Report> {
    let mut r = [0u8; REPORT_LEN];
    tether_keys::random_fill(&mut r);
    r[..4].copy_from_slice(&cid_of(report).to_be_bytes());
    vec![r]
}

#[cfg(test)]
mod tests;
