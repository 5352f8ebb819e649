//! HID report framing (`docs/dongle-protocol.md`, section 3).
//!
//! A message (command + payload of up to [`MAX_MESSAGE`] bytes) travels as one
//! [`InitPacket`] and up to 17 [`ContPacket`]s, each exactly one 64-byte
//! report. [`fragment`] splits a message; [`Reassembler`] puts one back
//! together and reports every framing fault as its own [`FrameError`],
//! separating "need more" ([`Progress::NeedMore`]) from "malformed". Nothing
//! here panics on any input.

/// Size of every HID report on the link (section 3.1).
pub const REPORT_LEN: usize = 64;
/// One report.
pub type Report = [u8; REPORT_LEN];
/// The broadcast channel, used only for INIT (section 3.4).
pub const BROADCAST: u32 = 0xFFFF_FFFF;
/// Payload bytes in an init packet.
pub const INIT_DATA: usize = REPORT_LEN - 7;
/// Payload bytes in a continuation packet.
pub const CONT_DATA: usize = REPORT_LEN - 5;
/// Largest message payload (section 3.3).
pub const MAX_MESSAGE: usize = 1024;
/// Largest CTAPHID message payload a FIDO2 key may send: one init packet and
/// 128 continuation packets (FIDO CTAP 2.1, section 11.2.4: 64 - 7 + 128 * (64 - 5)).
pub const CTAPHID_MAX_MESSAGE: usize = INIT_DATA + 128 * CONT_DATA;
/// Largest continuation sequence number.
pub const MAX_SEQ: u8 = 0x7F;

/// A command byte (section 4). The high bit is always set on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Allocate a channel (on [`BROADCAST`] only).
    Init,
    /// Serial, firmware, public key, counter.
    Info,
    /// Sign a presence nonce.
    Presence,
    /// Sign a delegation certificate.
    Delegate,
    /// Sign a revocation receipt (section 4.5).
    Receipt,
    /// Sign a site request (section 4.6).
    SiteRequest,
    /// The device refuses; payload is one [`super::ErrorCode`] byte.
    Error,
    /// Any other command byte (high bit set).
    Other(u8),
}

impl Command {
    /// The wire byte (high bit set).
    pub fn byte(self) -> u8 {
        match self {
            Command::Init => 0x86,
            Command::Info => 0xC1,
            Command::Presence => 0xC2,
            Command::Delegate => 0xC3,
            Command::Receipt => 0xC4,
            Command::SiteRequest => 0xC5,
            Command::Error => 0xBF,
            Command::Other(b) => b | 0x80,
        }
    }
}

impl From<u8> for Command {
    fn from(b: u8) -> Self {
        match b | 0x80 {
            0x86 => Command::Init,
            0xC1 => Command::Info,
            0xC2 => Command::Presence,
            0xC3 => Command::Delegate,
            0xC4 => Command::Receipt,
            0xC5 => Command::SiteRequest,
            0xBF => Command::Error,
            other => Command::Other(other),
        }
    }
}

/// A report that does not frame, or does not continue the current message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A report of the wrong size.
    #[error("report of {0} bytes, expected 64")]
    ReportSize(usize),
    /// A report on another channel.
    #[error("report on channel {got:#010x}, expected {expected:#010x}")]
    WrongChannel {
        /// Our channel.
        expected: u32,
        /// The report's channel.
        got: u32,
    },
    /// An init packet announcing more than [`MAX_MESSAGE`] bytes.
    #[error("message of {0} bytes exceeds the maximum (1024 on the native link, 7609 for CTAPHID)")]
    Oversized(usize),
    /// A continuation packet with no message started.
    #[error("continuation packet {0} without an init packet")]
    UnexpectedContinuation(u8),
    /// A continuation packet that skips ahead.
    #[error("continuation packet {got} out of order, expected {expected}")]
    OutOfOrder {
        /// The sequence number due.
        expected: u8,
        /// The sequence number received.
        got: u8,
    },
    /// A continuation packet already received.
    #[error("continuation packet {0} received twice")]
    DuplicateSequence(u8),
    /// A new init packet before the current message was complete.
    #[error("message cut short after {got} of {expected} bytes by a new init packet")]
    Interrupted {
        /// Bytes announced.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The link went quiet before the message was complete.
    #[error("message truncated after {got} of {expected} bytes")]
    Truncated {
        /// Bytes announced.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
}

/// The first report of a message (section 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPacket {
    /// Channel id.
    pub cid: u32,
    /// Command.
    pub cmd: Command,
    /// Total payload length of the message.
    pub len: u16,
    /// The first [`INIT_DATA`] payload bytes (zero padded).
    pub data: [u8; INIT_DATA],
}

/// A following report of a message (section 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContPacket {
    /// Channel id.
    pub cid: u32,
    /// Sequence number, 0..=127.
    pub seq: u8,
    /// The next [`CONT_DATA`] payload bytes (zero padded).
    pub data: [u8; CONT_DATA],
}

/// Either kind of packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Byte 4 has the high bit set.
    Init(InitPacket),
    /// Byte 4 has the high bit clear.
    Cont(ContPacket),
}

fn be32(b: &[u8; REPORT_LEN]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Packet {
    /// Decodes one report; padding bytes are ignored (section 3.2).
    ///
    /// # Errors
    ///
    /// Only [`FrameError::ReportSize`] for a report that is not
    /// [`REPORT_LEN`] bytes and [`FrameError::Oversized`] for an init packet
    /// announcing more than [`MAX_MESSAGE`] bytes.
    pub fn decode(report: &[u8]) -> Result<Packet, FrameError> {
        Packet::decode_limited(report, MAX_MESSAGE)
    }

    /// As [`Packet::decode`], with `max` the largest length an init packet
    /// may announce ([`MAX_MESSAGE`] on the native link,
    /// [`CTAPHID_MAX_MESSAGE`] for FIDO2 keys).
    ///
    /// # Errors
    ///
    /// As [`Packet::decode`], with `max` in place of [`MAX_MESSAGE`].
    pub fn decode_limited(report: &[u8], max: usize) -> Result<Packet, FrameError> {
        let report: &[u8; REPORT_LEN] = report
            .try_into()
            .map_err(|_| FrameError::ReportSize(report.len()))?;
        let cid = be32(report);
        let b4 = report[4];
        if b4 & 0x80 != 0 {
            let len = u16::from_be_bytes([report[5], report[6]]);
            if usize::from(len) > max {
                return Err(FrameError::Oversized(len.into()));
            }
            let mut data = [0u8; INIT_DATA];
            data.copy_from_slice(&report[7..]);
            Ok(Packet::Init(InitPacket {
                cid,
                cmd: Command::from(b4),
                len,
                data,
            }))
        } else {
            let mut data = [0u8; CONT_DATA];
            data.copy_from_slice(&report[5..]);
            Ok(Packet::Cont(ContPacket { cid, seq: b4, data }))
        }
    }

    /// The channel id.
    pub fn cid(&self) -> u32 {
        match self {
            Packet::Init(p) => p.cid,
            Packet::Cont(p) => p.cid,
        }
    }
}

impl InitPacket {
    /// The 64-byte report.
    pub fn encode(&self) -> Report {
        let mut r = [0u8; REPORT_LEN];
        r[..4].copy_from_slice(&self.cid.to_be_bytes());
        r[4] = self.cmd.byte();
        r[5..7].copy_from_slice(&self.len.to_be_bytes());
        r[7..].copy_from_slice(&self.data);
        r
    }
}

impl ContPacket {
    /// The 64-byte report.
    pub fn encode(&self) -> Report {
        let mut r = [0u8; REPORT_LEN];
        r[..4].copy_from_slice(&self.cid.to_be_bytes());
        r[4] = self.seq & MAX_SEQ;
        r[5..].copy_from_slice(&self.data);
        r
    }
}

/// Splits a message into reports (section 3.3).
///
/// # Errors
///
/// [`FrameError::Oversized`] when `payload` is longer than [`MAX_MESSAGE`].
pub fn fragment(cid: u32, cmd: Command, payload: &[u8]) -> Result<Vec<Report>, FrameError> {
    fragment_limited(cid, cmd, payload, MAX_MESSAGE)
}

/// As [`fragment`], with `max` the largest payload (at most
/// [`CTAPHID_MAX_MESSAGE`]: 128 continuation packets).
///
/// # Errors
///
/// [`FrameError::Oversized`] when `payload` is longer than `max` or than
/// [`CTAPHID_MAX_MESSAGE`].
pub fn fragment_limited(
    cid: u32,
    cmd: Command,
    payload: &[u8],
    max: usize,
) -> Result<Vec<Report>, FrameError> {
    if payload.len() > max.min(CTAPHID_MAX_MESSAGE) {
        return Err(FrameError::Oversized(payload.len()));
    }
    let (first, rest) = payload.split_at(payload.len().min(INIT_DATA));
    let mut data = [0u8; INIT_DATA];
    data[..first.len()].copy_from_slice(first);
    let mut out = vec![
        InitPacket {
            cid,
            cmd,
            len: payload.len() as u16,
            data,
        }
        .encode(),
    ];
    for (seq, chunk) in rest.chunks(CONT_DATA).enumerate() {
        let mut data = [0u8; CONT_DATA];
        data[..chunk.len()].copy_from_slice(chunk);
        // At most 128 continuation packets: CTAPHID_MAX_MESSAGE keeps seq below 128.
        out.push(
            ContPacket {
                cid,
                seq: seq as u8,
                data,
            }
            .encode(),
        );
    }
    Ok(out)
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Channel id.
    pub cid: u32,
    /// Command.
    pub cmd: Command,
    /// Payload, exactly as long as announced.
    pub payload: Vec<u8>,
}

/// What a report did to the message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Valid so far; more continuation packets are due.
    NeedMore,
    /// The message is complete.
    Done(Message),
}

#[derive(Debug)]
struct Partial {
    cmd: Command,
    len: usize,
    payload: Vec<u8>,
    next_seq: u8,
}

/// Reassembles one message on one channel (section 3.3).
///
/// After any error the partial message is dropped, so the next init packet
/// starts afresh.
#[derive(Debug)]
pub struct Reassembler {
    cid: u32,
    max: usize,
    partial: Option<Partial>,
}

impl Reassembler {
    /// Expects reports on channel `cid`, messages of at most [`MAX_MESSAGE`] bytes.
    pub fn new(cid: u32) -> Self {
        Reassembler::with_limit(cid, MAX_MESSAGE)
    }

    /// Expects reports on channel `cid`, messages of at most `max` bytes
    /// (capped at [`CTAPHID_MAX_MESSAGE`]).
    pub fn with_limit(cid: u32, max: usize) -> Self {
        Reassembler {
            cid,
            max: max.min(CTAPHID_MAX_MESSAGE),
            partial: None,
        }
    }

    /// Feeds one report.
    ///
    /// # Errors
    ///
    /// The [`FrameError`] that makes the report unusable: a wrong size, an
    /// oversized announcement, another channel, a continuation with no
    /// message started, out of order or repeated, or an init packet that
    /// interrupts a message. A report that does not decode or is on another
    /// channel leaves the message under way intact; a packet out of
    /// sequence drops it.
    pub fn push(&mut self, report: &[u8]) -> Result<Progress, FrameError> {
        let packet = Packet::decode_limited(report, self.max)?;
        if packet.cid() != self.cid {
            // Another channel's traffic: not ours, and no reason to drop ours.
            return Err(FrameError::WrongChannel {
                expected: self.cid,
                got: packet.cid(),
            });
        }
        match packet {
            Packet::Init(init) => {
                if let Some(p) = self.partial.take() {
                    return Err(FrameError::Interrupted {
                        expected: p.len,
                        got: p.payload.len(),
                    });
                }
                let len = usize::from(init.len);
                let take = len.min(INIT_DATA);
                let mut payload = Vec::with_capacity(len);
                payload.extend_from_slice(&init.data[..take]);
                if payload.len() == len {
                    return Ok(Progress::Done(Message {
                        cid: self.cid,
                        cmd: init.cmd,
                        payload,
                    }));
                }
                self.partial = Some(Partial {
                    cmd: init.cmd,
                    len,
                    payload,
                    next_seq: 0,
                });
                Ok(Progress::NeedMore)
            }
            Packet::Cont(cont) => {
                let Some(mut p) = self.partial.take() else {
                    return Err(FrameError::UnexpectedContinuation(cont.seq));
                };
                if cont.seq < p.next_seq {
                    return Err(FrameError::DuplicateSequence(cont.seq));
                }
                if cont.seq > p.next_seq {
                    return Err(FrameError::OutOfOrder {
                        expected: p.next_seq,
                        got: cont.seq,
                    });
                }
                let take = (p.len - p.payload.len()).min(CONT_DATA);
                p.payload.extend_from_slice(&cont.data[..take]);
                if p.payload.len() == p.len {
                    return Ok(Progress::Done(Message {
                        cid: self.cid,
                        cmd: p.cmd,
                        payload: p.payload,
                    }));
                }
                p.next_seq = p.next_seq.saturating_add(1);
                self.partial = Some(p);
                Ok(Progress::NeedMore)
            }
        }
    }

    /// Ends the input (the timeout expired): the error for a message left
    /// half-received, if any. Clears it.
    pub fn finish(&mut self) -> Option<FrameError> {
        self.partial.take().map(|p| FrameError::Truncated {
            expected: p.len,
            got: p.payload.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn init_packet_exact_bytes() {
        let reports = fragment(0x0102_0304, Command::Presence, &[0xAA; 3]).unwrap();
        assert_eq!(reports.len(), 1);
        let mut expected = hex("01020304 c2 0003 aaaaaa");
        expected.resize(64, 0);
        assert_eq!(reports[0].to_vec(), expected);
    }

    #[test]
    fn continuation_exact_bytes_and_round_trip() {
        let payload: Vec<u8> = (0..=119u8).collect(); // 57 + 59 + 4
        let reports = fragment(7, Command::Delegate, &payload).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(&reports[0][..7], &hex("00000007 c3 0078")[..]);
        assert_eq!(&reports[0][7..], &payload[..57]);
        assert_eq!(&reports[1][..5], &hex("00000007 00")[..]);
        assert_eq!(&reports[1][5..], &payload[57..116]);
        assert_eq!(&reports[2][..9], &hex("00000007 01 74757677")[..]);
        assert!(reports[2][9..].iter().all(|&b| b == 0));

        let mut r = Reassembler::new(7);
        assert_eq!(r.push(&reports[0]).unwrap(), Progress::NeedMore);
        assert_eq!(r.push(&reports[1]).unwrap(), Progress::NeedMore);
        let Progress::Done(m) = r.push(&reports[2]).unwrap() else {
            panic!("not done")
        };
        assert_eq!(m.cmd, Command::Delegate);
        assert_eq!(m.payload, payload);
    }

    #[test]
    fn largest_message_round_trips_and_larger_is_refused() {
        let payload = vec![0x5A; MAX_MESSAGE];
        let reports = fragment(9, Command::Info, &payload).unwrap();
        assert_eq!(
            reports.len(),
            1 + (MAX_MESSAGE - INIT_DATA).div_ceil(CONT_DATA)
        );
        let mut r = Reassembler::new(9);
        let mut done = None;
        for rep in &reports {
            if let Progress::Done(m) = r.push(rep).unwrap() {
                done = Some(m);
            }
        }
        assert_eq!(done.unwrap().payload, payload);
        assert_eq!(
            fragment(9, Command::Info, &[0; MAX_MESSAGE + 1]),
            Err(FrameError::Oversized(MAX_MESSAGE + 1))
        );
    }

    #[test]
    fn ctaphid_limit_takes_128_continuations() {
        let payload: Vec<u8> = (0..CTAPHID_MAX_MESSAGE).map(|i| i as u8).collect();
        assert_eq!(CTAPHID_MAX_MESSAGE, 7609);
        let reports =
            fragment_limited(3, Command::Other(0x90), &payload, CTAPHID_MAX_MESSAGE).unwrap();
        assert_eq!(reports.len(), 129);
        assert_eq!(reports[128][4], 127);
        let mut r = Reassembler::with_limit(3, CTAPHID_MAX_MESSAGE);
        let mut done = None;
        for rep in &reports {
            if let Progress::Done(m) = r.push(rep).unwrap() {
                done = Some(m);
            }
        }
        assert_eq!(done.unwrap().payload, payload);
        // The native link keeps its own limit.
        assert_eq!(
            Reassembler::new(3).push(&reports[0]),
            Err(FrameError::Oversized(CTAPHID_MAX_MESSAGE))
        );
        assert!(fragment_limited(3, Command::Other(0x90), &[0; 7610], usize::MAX).is_err());
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut rep = [0u8; 64];
        rep[..7].copy_from_slice(&hex("00000001 c1 0401"));
        assert_eq!(
            Reassembler::new(1).push(&rep),
            Err(FrameError::Oversized(1025))
        );
    }

    #[test]
    fn wrong_report_size_is_refused() {
        assert_eq!(Packet::decode(&[0; 63]), Err(FrameError::ReportSize(63)));
        assert_eq!(Packet::decode(&[0; 65]), Err(FrameError::ReportSize(65)));
        assert_eq!(Packet::decode(&[]), Err(FrameError::ReportSize(0)));
    }

    #[test]
    fn wrong_channel_is_refused_and_keeps_the_partial_message() {
        let reports = fragment(5, Command::Info, &[1; 100]).unwrap();
        let other = fragment(6, Command::Info, &[1; 100]).unwrap();
        let mut r = Reassembler::new(5);
        r.push(&reports[0]).unwrap();
        assert_eq!(
            r.push(&other[1]),
            Err(FrameError::WrongChannel {
                expected: 5,
                got: 6
            })
        );
        assert!(matches!(r.push(&reports[1]), Ok(Progress::Done(_))));
    }

    #[test]
    fn out_of_order_duplicate_and_orphan_continuations() {
        let reports = fragment(5, Command::Info, &[1; 200]).unwrap();
        assert_eq!(reports.len(), 4);
        let mut r = Reassembler::new(5);
        r.push(&reports[0]).unwrap();
        assert_eq!(
            r.push(&reports[2]),
            Err(FrameError::OutOfOrder {
                expected: 0,
                got: 1
            })
        );
        let mut r = Reassembler::new(5);
        r.push(&reports[0]).unwrap();
        r.push(&reports[1]).unwrap();
        assert_eq!(r.push(&reports[1]), Err(FrameError::DuplicateSequence(0)));
        // After an error the partial message is gone.
        assert_eq!(
            r.push(&reports[2]),
            Err(FrameError::UnexpectedContinuation(1))
        );
    }

    #[test]
    fn truncated_and_interrupted_messages() {
        let reports = fragment(5, Command::Info, &[1; 200]).unwrap();
        let mut r = Reassembler::new(5);
        r.push(&reports[0]).unwrap();
        r.push(&reports[1]).unwrap();
        assert_eq!(
            r.finish(),
            Some(FrameError::Truncated {
                expected: 200,
                got: 116
            })
        );
        assert_eq!(r.finish(), None);
        r.push(&reports[0]).unwrap();
        assert_eq!(
            r.push(&reports[0]),
            Err(FrameError::Interrupted {
                expected: 200,
                got: 57
            })
        );
    }

    #[test]
    fn command_bytes_round_trip_with_other_fallback() {
        for c in [
            Command::Init,
            Command::Info,
            Command::Presence,
            Command::Delegate,
            Command::Receipt,
            Command::SiteRequest,
            Command::Error,
        ] {
            assert_eq!(Command::from(c.byte()), c);
        }
        assert_eq!(Command::from(0x90), Command::Other(0x90));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(reports in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..80), 0..24)) {
            let mut r = Reassembler::new(u32::from_be_bytes([0, 0, 0, 1]));
            for rep in &reports {
                let _ = r.push(rep);
            }
            let _ = r.finish();
        }

        #[test]
        fn fragment_reassemble_round_trip(cid in 1u32..u32::MAX, payload in proptest::collection::vec(proptest::num::u8::ANY, 0..=MAX_MESSAGE)) {
            let reports = fragment(cid, Command::Delegate, &payload).unwrap();
            let mut r = Reassembler::new(cid);
            let mut out = None;
            for rep in &reports {
                proptest::prop_assert!(out.is_none());
                if let Progress::Done(m) = r.push(rep).unwrap() { out = Some(m) }
            }
            proptest::prop_assert_eq!(out.unwrap().payload, payload);
        }
    }
}
