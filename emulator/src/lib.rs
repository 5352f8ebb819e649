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

mod local;
pub mod socket;
pub mod uhid;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tether_keys::delegation::presence_message;
use tether_keys::{Certificate, DelegationRequest, Dongle, PublicKey, SecretKey, keyfile};

use tether_dongle::ErrorCode;
use tether_dongle::ctaphid::{
    BROADCAST, Command, FrameError, Packet, REPORT_LEN, Report, fragment,
};
use tether_dongle::native::message::{DongleInfo, InitResponse, PROTOCOL_VERSION, Request};

pub use local::LocalTransport;
pub use socket::SocketEmulator;

/// The firmware version the emulator reports.
pub const FIRMWARE: (u8, u8, u8) = (0, 1, 0);
/// A message not completed within this time is dropped (section 3.5).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_millis(500);
/// Name of the key file in an identity directory.
pub const KEY_FILE: &str = "dongle.key";
/// Default name of the state file beside it.
pub const STATE_FILE: &str = "dongle.state";

/// The firmware's DELEGATE rules (section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Longest validity window signed.
    pub max_window: Duration,
    /// Token bucket size.
    pub burst: u32,
    /// One token per this much uptime (zero: no rate limit).
    pub refill: Duration,
    /// How far `not_before` may run ahead of the ticks since the last signature.
    pub slack: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_window: Duration::from_secs(600),
            burst: 3,
            refill: Duration::from_secs(60),
            slack: Duration::from_secs(60),
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

/// What survives power cycles (the firmware's flash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Persisted {
    /// DELEGATEs signed.
    counter: u32,
    /// `not_before` of the last DELEGATE signed.
    last_not_before: Option<u64>,
    /// Token bucket level in thousandths of a token (absent: full).
    bucket_milli: Option<u64>,
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

/// Temp file in the same directory, fsync, rename: a crash leaves the old or the new state.
fn save_state(path: &Path, state: &Persisted) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[derive(Debug)]
struct Pending {
    cid: u32,
    cmd: Command,
    len: usize,
    payload: Vec<u8>,
    next_seq: u8,
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
    /// Uptime at the last DELEGATE signed since power-up.
    last_sign: Option<Duration>,
    bucket_milli: u64,
    bucket_at: Duration,
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
        let full = u64::from(rules.burst) * 1000;
        Device {
            key,
            clone_key: None,
            serial,
            rules,
            bucket_milli: state.bucket_milli.unwrap_or(full).min(full),
            state,
            state_path,
            fault: Fault::None,
            rollback_counter: 0,
            powered_at: Instant::now(),
            last_sign: None,
            bucket_at: Duration::ZERO,
            next_cid: 1,
            pending: None,
            last_delegate: None,
        }
    }

    /// Loads `DIR/dongle.key` (made by `tether keygen dongle`) and the state
    /// file (`state`, default `DIR/dongle.state`; absent means counter 0).
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

    /// How long the link should hold each answer back.
    pub fn reply_delay(&self) -> Duration {
        match self.fault {
            Fault::Slow(d) => d,
            _ => Duration::ZERO,
        }
    }

    /// Power-up (plug): tick count restarts, channels and partial messages
    /// are gone; the flash state (counter, last `not_before`, bucket) stays.
    pub fn power_up(&mut self) {
        self.powered_at = Instant::now();
        self.last_sign = None;
        self.bucket_at = Duration::ZERO;
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
        match packet {
            Packet::Init(init) => {
                let cid = init.cid;
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
                    self.pending = None;
                    if init.cmd != Command::Init {
                        out.extend(error(cid, ErrorCode::InvalidSequence));
                        return out;
                    }
                }
                let len = usize::from(init.len);
                let first = &init.data[..len.min(init.data.len())];
                if first.len() == len {
                    out.extend(self.execute(cid, init.cmd, first, uptime));
                } else {
                    self.pending = Some(Pending {
                        cid,
                        cmd: init.cmd,
                        len,
                        payload: first.to_vec(),
                        next_seq: 0,
                        since: uptime,
                    });
                }
            }
            Packet::Cont(cont) => {
                // A continuation nobody is waiting for is ignored (section 3.5).
                let Some(mut p) = self.pending.take_if(|p| p.cid == cont.cid) else {
                    return out;
                };
                if cont.seq != p.next_seq {
                    out.extend(error(cont.cid, ErrorCode::InvalidSequence));
                    return out;
                }
                let take = (p.len - p.payload.len()).min(cont.data.len());
                p.payload.extend_from_slice(&cont.data[..take]);
                if p.payload.len() == p.len {
                    out.extend(self.execute(p.cid, p.cmd, &p.payload, uptime));
                } else {
                    p.next_seq = p.next_seq.saturating_add(1);
                    self.pending = Some(p);
                }
            }
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

    fn execute(&mut self, cid: u32, cmd: Command, payload: &[u8], uptime: Duration) -> Vec<Report> {
        let req = match Request::parse(cmd, payload) {
            Ok(r) => r,
            Err(code) => return error(cid, code),
        };
        let answer = match req {
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
        };
        match answer {
            Ok(p) => fragment(cid, cmd, &p).unwrap_or_else(|_| error(cid, ErrorCode::Internal)),
            Err(code) => error(cid, code),
        }
    }

    fn refill(&mut self, uptime: Duration) {
        let full = u64::from(self.rules.burst) * 1000;
        let elapsed = uptime.saturating_sub(self.bucket_at).as_millis();
        // A zero refill period means "no rate limit": the bucket is always full.
        self.bucket_milli = match elapsed
            .saturating_mul(1000)
            .checked_div(self.rules.refill.as_millis())
        {
            None => full,
            Some(add) => self
                .bucket_milli
                .saturating_add(u64::try_from(add).unwrap_or(u64::MAX))
                .min(full),
        };
        self.bucket_at = uptime;
    }

    /// The DELEGATE rules of section 6, then the counter, then the signature.
    fn delegate(&mut self, req: DelegationRequest, uptime: Duration) -> Result<Vec<u8>, ErrorCode> {
        if self.fault == Fault::Replay
            && let Some(old) = &self.last_delegate
        {
            return Ok(old.clone());
        }
        if req.not_after <= req.not_before {
            return Err(ErrorCode::InvalidWindow);
        }
        if req.not_after - req.not_before > self.rules.max_window.as_secs() {
            return Err(ErrorCode::WindowTooLong);
        }
        if let Some(last) = self.state.last_not_before {
            if req.not_before < last {
                return Err(ErrorCode::NotBeforeBackwards);
            }
            // The first DELEGATE after power-up is exempt: the dongle cannot
            // know how long it was unpowered.
            if let Some(at) = self.last_sign {
                let ticks = uptime.saturating_sub(at) + self.rules.slack;
                if req.not_before - last > ticks.as_secs() {
                    return Err(ErrorCode::NotBeforeAhead);
                }
            }
        }
        self.refill(uptime);
        if self.bucket_milli < 1000 {
            return Err(ErrorCode::RateLimited);
        }
        let mut next = self.state.clone();
        let counter = if self.fault == Fault::Rollback {
            self.rollback_counter = self.rollback_counter.saturating_add(1);
            self.rollback_counter
        } else {
            next.counter = next.counter.checked_add(1).ok_or(ErrorCode::Internal)?;
            next.counter
        };
        next.last_not_before = Some(req.not_before);
        next.bucket_milli = Some(self.bucket_milli - 1000);
        // The counter reaches flash before any signature carries it.
        if let Some(path) = &self.state_path
            && let Err(e) = save_state(path, &next)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot persist the dongle state");
            return Err(ErrorCode::Internal);
        }
        self.state = next;
        self.bucket_milli -= 1000;
        self.last_sign = Some(uptime);
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
