//! Device-side CTAPHID: channels, reassembly and the HID commands
//! (FIDO CTAP 2.1, section 11.2 "USB Human Interface Device (USB HID)").
//!
//! [`CtapHid`] takes one 64-byte output report at a time and returns the
//! input reports to send back. It allocates channels (`CTAPHID_INIT` on the
//! broadcast channel, section 11.2.9.1.3), answers `PING`, `WINK`, `CANCEL`
//! and `LOCK`, refuses `MSG` (no U2F: the `NMSG` capability), hands each
//! complete `CBOR` message to a [`CborHandler`] and frames its answer. Every
//! protocol fault gets its `CTAPHID_ERROR` code (section 11.2.9.1.6); no
//! input panics.
//!
//! Why not the `tether-dongle` crate's `ctaphid` types: they are the native
//! protocol's, capped at 1024-byte messages and its own command set, while a
//! FIDO key takes messages up to 7609 bytes (57 + 128 * 59) and FIDO's
//! command bytes. The 64-byte report type is shared.

use std::time::{Duration, Instant};

use tether_dongle::ctaphid::{REPORT_LEN, Report};

/// The broadcast channel (section 11.2.4).
pub const BROADCAST: u32 = 0xFFFF_FFFF;
/// Payload bytes in an initialization packet.
pub const INIT_DATA: usize = REPORT_LEN - 7;
/// Payload bytes in a continuation packet.
pub const CONT_DATA: usize = REPORT_LEN - 5;
/// Largest message: one init packet and 128 continuation packets (section 11.2.4).
pub const MAX_MESSAGE: usize = INIT_DATA + 128 * CONT_DATA;
/// How long a message may take to arrive whole before it is dropped
/// (section 11.2.5.3 suggests the host keep within 100 ms per packet; a
/// generous bound so a slow guest is not refused).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(3);

/// CTAPHID command bytes (section 11.2.9), high bit set.
pub mod cmd {
    /// `CTAPHID_PING`: echo.
    pub const PING: u8 = 0x81;
    /// `CTAPHID_MSG`: a U2F/CTAP1 APDU (not supported here).
    pub const MSG: u8 = 0x83;
    /// `CTAPHID_LOCK`: lock the device to a channel.
    pub const LOCK: u8 = 0x84;
    /// `CTAPHID_INIT`: allocate or resynchronize a channel.
    pub const INIT: u8 = 0x86;
    /// `CTAPHID_WINK`: blink (nothing to blink).
    pub const WINK: u8 = 0x88;
    /// `CTAPHID_CBOR`: a CTAP2 request.
    pub const CBOR: u8 = 0x90;
    /// `CTAPHID_CANCEL`: cancel the pending CBOR request.
    pub const CANCEL: u8 = 0x91;
    /// `CTAPHID_KEEPALIVE`: the device is still working (device to host).
    pub const KEEPALIVE: u8 = 0xBB;
    /// `CTAPHID_ERROR`: a one-byte error code follows.
    pub const ERROR: u8 = 0xBF;
}

/// `CTAPHID_ERROR` codes (section 11.2.9.1.6).
pub mod err {
    /// The command is not known or not supported.
    pub const INVALID_CMD: u8 = 0x01;
    /// A parameter is invalid.
    pub const INVALID_PAR: u8 = 0x02;
    /// The announced length is invalid.
    pub const INVALID_LEN: u8 = 0x03;
    /// A continuation packet out of sequence.
    pub const INVALID_SEQ: u8 = 0x04;
    /// The message did not arrive whole in time.
    pub const MSG_TIMEOUT: u8 = 0x05;
    /// Another channel's message is under way.
    pub const CHANNEL_BUSY: u8 = 0x06;
    /// A channel that was never allocated (or 0).
    pub const INVALID_CHANNEL: u8 = 0x0B;
}

/// `CTAPHID_KEEPALIVE` status: the device waits for a touch (section 11.2.9.1.5).
pub const KEEPALIVE_UPNEEDED: u8 = 2;

/// Capability flags in the `CTAPHID_INIT` answer: `WINK`, `CBOR`, and
/// `NMSG` (no `CTAPHID_MSG`, i.e. no U2F).
pub const CAPABILITIES: u8 = 0x01 | 0x04 | 0x08;

/// What the CTAP2 layer answers to one `CTAPHID_CBOR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborAnswer {
    /// Status byte followed by the CBOR response (CTAP 2.1, section 8).
    pub payload: Vec<u8>,
    /// Whether a real key would have waited for a touch first: the answer is
    /// then preceded by one `KEEPALIVE` (status `UPNEEDED`), as a key sends
    /// while it blinks.
    pub touched: bool,
}

/// The CTAP2 layer behind the HID framing.
pub trait CborHandler {
    /// Answers one CTAP2 request (command byte, then CBOR parameters).
    fn handle_cbor(&mut self, request: &[u8]) -> CborAnswer;
}

/// A message being received.
#[derive(Debug)]
struct Partial {
    cid: u32,
    cmd: u8,
    len: usize,
    payload: Vec<u8>,
    next_seq: u8,
    started: Instant,
}

/// The HID side of one device: allocated channels and the message under way.
#[derive(Debug)]
pub struct CtapHid {
    channels: Vec<u32>,
    partial: Option<Partial>,
    version: (u8, u8, u8),
}

/// Frames `payload` as `cmd` on `cid` (section 11.2.4). `payload` is at
/// most [`MAX_MESSAGE`] bytes; a longer answer becomes an `INVALID_LEN`
/// error rather than a malformed frame.
pub fn frame(cid: u32, cmd: u8, payload: &[u8]) -> Vec<Report> {
    if payload.len() > MAX_MESSAGE {
        return frame(cid, cmd::ERROR, &[err::INVALID_LEN]);
    }
    let mut out = Vec::with_capacity(1 + payload.len().saturating_sub(INIT_DATA) / CONT_DATA + 1);
    let mut r = [0u8; REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = cmd | 0x80;
    r[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let (first, rest) = payload.split_at(payload.len().min(INIT_DATA));
    r[7..7 + first.len()].copy_from_slice(first);
    out.push(r);
    for (seq, chunk) in rest.chunks(CONT_DATA).enumerate() {
        let mut r = [0u8; REPORT_LEN];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        // At most 128 chunks: MAX_MESSAGE keeps seq within 0..=127.
        r[4] = seq as u8;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    out
}

fn error(cid: u32, code: u8) -> Vec<Report> {
    frame(cid, cmd::ERROR, &[code])
}

impl CtapHid {
    /// A powered-up device with no channels, reporting firmware `version`
    /// (major, minor, build) in the `CTAPHID_INIT` answer.
    pub fn new(version: (u8, u8, u8)) -> Self {
        CtapHid {
            channels: Vec::new(),
            partial: None,
            version,
        }
    }

    /// Power loss: every channel and any message under way are forgotten.
    pub fn power_up(&mut self) {
        self.channels.clear();
        self.partial = None;
    }

    fn allocate(&mut self) -> u32 {
        loop {
            let cid: u32 = rand::random();
            if cid != 0 && cid != BROADCAST && !self.channels.contains(&cid) {
                // Bounded: the oldest channels are dropped first.
                if self.channels.len() >= 64 {
                    self.channels.remove(0);
                }
                self.channels.push(cid);
                return cid;
            }
        }
    }

    /// Handles one output report at time `now`; returns the input reports
    /// to send back (none while a message is still arriving).
    pub fn handle_report(
        &mut self,
        report: &[u8],
        now: Instant,
        handler: &mut impl CborHandler,
    ) -> Vec<Report> {
        // A report of another size is not a CTAPHID packet (the transports
        // deliver 64 bytes); drop it as firmware drops a bad transfer.
        let Ok(report) = <&[u8; REPORT_LEN]>::try_from(report) else {
            return Vec::new();
        };
        if let Some(p) = &self.partial
            && now.duration_since(p.started) > MESSAGE_TIMEOUT
        {
            let cid = p.cid;
            self.partial = None;
            let mut out = error(cid, err::MSG_TIMEOUT);
            out.extend(self.handle_report(report, now, handler));
            return out;
        }
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        let b4 = report[4];
        if b4 & 0x80 != 0 {
            self.init_packet(cid, b4, report, now, handler)
        } else {
            self.cont_packet(cid, b4, report, handler)
        }
    }

    fn init_packet(
        &mut self,
        cid: u32,
        command: u8,
        report: &[u8; REPORT_LEN],
        now: Instant,
        handler: &mut impl CborHandler,
    ) -> Vec<Report> {
        let len = usize::from(u16::from_be_bytes([report[5], report[6]]));
        if cid == 0 || (cid == BROADCAST && command != cmd::INIT) {
            return error(cid, err::INVALID_CHANNEL);
        }
        if command == cmd::INIT {
            // INIT aborts whatever its channel had under way (section 11.2.9.1.3).
            if self.partial.as_ref().is_some_and(|p| p.cid == cid) {
                self.partial = None;
            }
            if len != 8 {
                return error(cid, err::INVALID_LEN);
            }
            if cid != BROADCAST && !self.channels.contains(&cid) {
                return error(cid, err::INVALID_CHANNEL);
            }
            let new_cid = if cid == BROADCAST {
                self.allocate()
            } else {
                cid
            };
            let (major, minor, build) = self.version;
            let mut answer = Vec::with_capacity(17);
            answer.extend_from_slice(&report[7..15]); // the host's nonce
            answer.extend_from_slice(&new_cid.to_be_bytes());
            answer.extend_from_slice(&[2, major, minor, build, CAPABILITIES]);
            return frame(cid, cmd::INIT, &answer);
        }
        if !self.channels.contains(&cid) {
            return error(cid, err::INVALID_CHANNEL);
        }
        if let Some(p) = &self.partial {
            if p.cid != cid {
                return error(cid, err::CHANNEL_BUSY);
            }
            // The same channel starting over without finishing: a sequence error.
            self.partial = None;
            return error(cid, err::INVALID_SEQ);
        }
        if command == cmd::CANCEL {
            // Requests are answered before the next report is read: nothing
            // is ever pending, and CANCEL itself has no answer (11.2.9.2.2).
            return Vec::new();
        }
        if len > MAX_MESSAGE {
            return error(cid, err::INVALID_LEN);
        }
        let take = len.min(INIT_DATA);
        let payload = report[7..7 + take].to_vec();
        if payload.len() == len {
            return self.dispatch(cid, command, &payload, handler);
        }
        self.partial = Some(Partial {
            cid,
            cmd: command,
            len,
            payload,
            next_seq: 0,
            started: now,
        });
        Vec::new()
    }

    fn cont_packet(
        &mut self,
        cid: u32,
        seq: u8,
        report: &[u8; REPORT_LEN],
        handler: &mut impl CborHandler,
    ) -> Vec<Report> {
        let Some(mut p) = self.partial.take() else {
            // A stray continuation: ignored (section 11.2.5.3).
            return Vec::new();
        };
        if p.cid != cid {
            // Another channel's continuation while ours is under way.
            let out = error(cid, err::CHANNEL_BUSY);
            self.partial = Some(p);
            return out;
        }
        if seq != p.next_seq {
            return error(cid, err::INVALID_SEQ);
        }
        let take = (p.len - p.payload.len()).min(CONT_DATA);
        p.payload.extend_from_slice(&report[5..5 + take]);
        if p.payload.len() == p.len {
            return self.dispatch(cid, p.cmd, &p.payload, handler);
        }
        p.next_seq = p.next_seq.wrapping_add(1);
        self.partial = Some(p);
        Vec::new()
    }

    fn dispatch(
        &mut self,
        cid: u32,
        command: u8,
        payload: &[u8],
        handler: &mut impl CborHandler,
    ) -> Vec<Report> {
        match command {
            cmd::PING => frame(cid, cmd::PING, payload),
            cmd::WINK if payload.is_empty() => frame(cid, cmd::WINK, &[]),
            cmd::LOCK if payload.len() == 1 => frame(cid, cmd::LOCK, &[]),
            cmd::WINK | cmd::LOCK => error(cid, err::INVALID_LEN),
            cmd::CBOR if payload.is_empty() => error(cid, err::INVALID_LEN),
            cmd::CBOR => {
                let answer = handler.handle_cbor(payload);
                let mut out = Vec::new();
                if answer.touched {
                    out.extend(frame(cid, cmd::KEEPALIVE, &[KEEPALIVE_UPNEEDED]));
                }
                out.extend(frame(cid, cmd::CBOR, &answer.payload));
                out
            }
            _ => error(cid, err::INVALID_CMD),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Echoes the request back behind status 0, touching for command 0x01.
    struct Echo;
    impl CborHandler for Echo {
        fn handle_cbor(&mut self, request: &[u8]) -> CborAnswer {
            let mut payload = vec![0];
            payload.extend_from_slice(request);
            CborAnswer {
                payload,
                touched: request.first() == Some(&0x01),
            }
        }
    }

    fn init_on(hid: &mut CtapHid) -> u32 {
        let mut r = [0u8; 64];
        r[..4].copy_from_slice(&BROADCAST.to_be_bytes());
        r[4] = cmd::INIT;
        r[6] = 8;
        r[7..15].copy_from_slice(b"nonce123");
        let out = hid.handle_report(&r, Instant::now(), &mut Echo);
        assert_eq!(out.len(), 1);
        let a = out[0];
        assert_eq!(a[..4], BROADCAST.to_be_bytes());
        assert_eq!((a[4], a[5], a[6]), (cmd::INIT, 0, 17));
        assert_eq!(&a[7..15], b"nonce123");
        assert_eq!(a[19], 2, "CTAPHID protocol version 2");
        assert_eq!(a[23], CAPABILITIES);
        u32::from_be_bytes([a[15], a[16], a[17], a[18]])
    }

    /// Sends a message, returns the reassembled answers as (cmd, payload).
    fn exchange(hid: &mut CtapHid, cid: u32, command: u8, payload: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        for r in frame(cid, command, payload) {
            out.extend(hid.handle_report(&r, Instant::now(), &mut Echo));
        }
        let mut messages = Vec::new();
        let mut i = 0;
        while i < out.len() {
            let r = out[i];
            assert_eq!(r[..4], cid.to_be_bytes());
            let len = usize::from(u16::from_be_bytes([r[5], r[6]]));
            let mut p = r[7..7 + len.min(INIT_DATA)].to_vec();
            i += 1;
            let mut seq = 0;
            while p.len() < len {
                assert_eq!(out[i][4], seq);
                let take = (len - p.len()).min(CONT_DATA);
                p.extend_from_slice(&out[i][5..5 + take]);
                i += 1;
                seq += 1;
            }
            messages.push((r[4], p));
        }
        messages
    }

    #[test]
    fn init_allocates_distinct_channels_and_ping_echoes() {
        let mut hid = CtapHid::new((1, 2, 3));
        let a = init_on(&mut hid);
        let b = init_on(&mut hid);
        assert_ne!(a, b);
        assert!(a != 0 && a != BROADCAST);
        let long: Vec<u8> = (0..=255u8).cycle().take(MAX_MESSAGE).collect();
        assert_eq!(
            exchange(&mut hid, a, cmd::PING, &long),
            vec![(cmd::PING, long)]
        );
    }

    #[test]
    fn cbor_goes_to_the_handler_with_keepalive_when_touched() {
        let mut hid = CtapHid::new((1, 0, 0));
        let cid = init_on(&mut hid);
        assert_eq!(
            exchange(&mut hid, cid, cmd::CBOR, &[0x04]),
            vec![(cmd::CBOR, vec![0, 0x04])]
        );
        assert_eq!(
            exchange(&mut hid, cid, cmd::CBOR, &[0x01, 0xA0]),
            vec![
                (cmd::KEEPALIVE, vec![KEEPALIVE_UPNEEDED]),
                (cmd::CBOR, vec![0, 0x01, 0xA0])
            ]
        );
    }

    #[test]
    fn faults_get_their_error_codes() {
        let mut hid = CtapHid::new((1, 0, 0));
        // Unallocated channel, channel 0, broadcast for anything but INIT.
        assert_eq!(
            exchange(&mut hid, 0x1234, cmd::PING, b"x"),
            vec![(cmd::ERROR, vec![err::INVALID_CHANNEL])]
        );
        let cid = init_on(&mut hid);
        assert_eq!(
            exchange(&mut hid, cid, cmd::MSG, b"\x00\x01"),
            vec![(cmd::ERROR, vec![err::INVALID_CMD])]
        );
        assert_eq!(
            exchange(&mut hid, cid, cmd::CBOR, b""),
            vec![(cmd::ERROR, vec![err::INVALID_LEN])]
        );
        // Oversized announcement.
        let mut r = [0u8; 64];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        r[4] = cmd::PING;
        r[5..7].copy_from_slice(&((MAX_MESSAGE + 1) as u16).to_be_bytes());
        let out = hid.handle_report(&r, Instant::now(), &mut Echo);
        assert_eq!((out[0][4], out[0][7]), (cmd::ERROR, err::INVALID_LEN));
        // Out of sequence, and another channel while busy.
        let other = init_on(&mut hid);
        let reports = frame(cid, cmd::PING, &[7; 200]);
        assert!(
            hid.handle_report(&reports[0], Instant::now(), &mut Echo)
                .is_empty()
        );
        let busy = hid.handle_report(&frame(other, cmd::PING, b"y")[0], Instant::now(), &mut Echo);
        assert_eq!((busy[0][4], busy[0][7]), (cmd::ERROR, err::CHANNEL_BUSY));
        let bad = hid.handle_report(&reports[2], Instant::now(), &mut Echo);
        assert_eq!((bad[0][4], bad[0][7]), (cmd::ERROR, err::INVALID_SEQ));
        // Then the channel works again.
        assert_eq!(
            exchange(&mut hid, cid, cmd::PING, b"ok"),
            vec![(cmd::PING, b"ok".to_vec())]
        );
    }

    #[test]
    fn abandoned_message_times_out() {
        let mut hid = CtapHid::new((1, 0, 0));
        let cid = init_on(&mut hid);
        let t0 = Instant::now();
        let reports = frame(cid, cmd::PING, &[7; 100]);
        assert!(hid.handle_report(&reports[0], t0, &mut Echo).is_empty());
        let later = t0 + MESSAGE_TIMEOUT + Duration::from_millis(1);
        let out = hid.handle_report(&frame(cid, cmd::PING, b"z")[0], later, &mut Echo);
        assert_eq!((out[0][4], out[0][7]), (cmd::ERROR, err::MSG_TIMEOUT));
        assert_eq!((out[1][4], out[1][7]), (cmd::PING, b'z'));
    }

    #[test]
    fn power_up_forgets_channels_and_junk_never_panics() {
        let mut hid = CtapHid::new((1, 0, 0));
        let cid = init_on(&mut hid);
        hid.power_up();
        assert_eq!(
            exchange(&mut hid, cid, cmd::PING, b"x"),
            vec![(cmd::ERROR, vec![err::INVALID_CHANNEL])]
        );
        for seed in 0..2000u32 {
            let mut r = [0u8; 64];
            for (i, b) in r.iter_mut().enumerate() {
                *b = (seed
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i as u32 * 40503)
                    >> 7) as u8;
            }
            if seed % 3 == 0 {
                r[..4].copy_from_slice(&cid.to_be_bytes());
            }
            let _ = hid.handle_report(&r, Instant::now(), &mut Echo);
            let _ = hid.handle_report(&r[..seed as usize % 64], Instant::now(), &mut Echo);
        }
    }
}
