//! Command payloads (`docs/dongle-protocol.md`, section 4): what each request
//! and answer carries, encoded by both ends from this one place.
//!
//! Decoders check exact lengths and refuse trailing bytes. The host decodes
//! answers into [`ProtocolError`]s; the device parses requests into
//! [`ErrorCode`]s it can send back.

use tether_keys::delegation::{decode_commitments, encode_commitments};
use tether_keys::receipt::RECEIPT_REQUEST_LEN;
use tether_keys::site_request::SITE_REQUEST_ASK_LEN;
use tether_keys::{
    Certificate, DelegationRequest, Dongle, PublicKey, Receipt, ReceiptRequest, SiteRequest,
    SiteRequestAsk,
};

use crate::ctaphid::Command;
use crate::error::{ErrorCode, ProtocolError};

/// Version of this protocol, answered by INIT.
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the INIT nonce.
pub const INIT_NONCE_LEN: usize = 8;
/// Size of an INIT answer.
pub const INIT_RESPONSE_LEN: usize = 17;
/// Size of a DELEGATE request's fixed part: nonce, session key, not before,
/// not after. Alone, it is the protocol's first DELEGATE payload, which the
/// device still accepts as a request committing to nothing.
pub const DELEGATE_REQUEST_LEN: usize = 32 + 32 + 8 + 8;
/// Size of the shortest extended DELEGATE request: the fixed part, then a
/// root (32), no service counts (1) and a ledger head (8 + 32).
pub const DELEGATE_REQUEST_MIN_EXTENDED_LEN: usize = DELEGATE_REQUEST_LEN + 32 + 1 + 8 + 32;

/// A request, as the device parses it (section 4).
// `Delegate` carries a decompressed public key and is a few hundred bytes
// larger than the rest; one request lives per round trip, so boxing it would
// buy nothing but an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Allocate a channel (section 4.1).
    Init {
        /// Host nonce, echoed.
        nonce: [u8; INIT_NONCE_LEN],
    },
    /// Identify (section 4.2).
    Info,
    /// Sign a presence nonce (section 4.3).
    Presence {
        /// The challenge.
        nonce: [u8; 32],
    },
    /// Sign a delegation certificate (section 4.4).
    Delegate(DelegationRequest),
    /// Sign a revocation receipt (section 4.5).
    Receipt(ReceiptRequest),
    /// Sign a site request (section 4.6).
    SiteRequest(SiteRequestAsk),
}

impl Request {
    /// The command and payload to send.
    pub fn encode(&self) -> (Command, Vec<u8>) {
        match self {
            Request::Init { nonce } => (Command::Init, nonce.to_vec()),
            Request::Info => (Command::Info, Vec::new()),
            Request::Presence { nonce } => (Command::Presence, nonce.to_vec()),
            Request::Delegate(req) => {
                // Always the extended form: one request, one encoding.
                let tail = encode_commitments(&req.commitment, &req.ledger);
                let mut p = Vec::with_capacity(DELEGATE_REQUEST_LEN + tail.len());
                p.extend_from_slice(&req.nonce);
                p.extend_from_slice(req.session_key.as_bytes());
                p.extend_from_slice(&req.not_before.secs().to_be_bytes());
                p.extend_from_slice(&req.not_after.secs().to_be_bytes());
                p.extend_from_slice(&tail);
                (Command::Delegate, p)
            }
            Request::Receipt(req) => (Command::Receipt, req.encode()),
            Request::SiteRequest(ask) => (Command::SiteRequest, ask.encode()),
        }
    }

    /// Parses a complete request message.
    ///
    /// # Errors
    ///
    /// The [`ErrorCode`] the device answers: `InvalidCommand` for a command
    /// it does not take, `InvalidLength` or `InvalidParameter` for a payload
    /// of the wrong length or content.
    pub fn parse(cmd: Command, payload: &[u8]) -> Result<Request, ErrorCode> {
        fn exact<const N: usize>(payload: &[u8]) -> Result<[u8; N], ErrorCode> {
            payload.try_into().map_err(|_| ErrorCode::InvalidLength)
        }
        match cmd {
            Command::Init => Ok(Request::Init {
                nonce: exact(payload)?,
            }),
            Command::Info if payload.is_empty() => Ok(Request::Info),
            Command::Info => Err(ErrorCode::InvalidLength),
            Command::Presence => Ok(Request::Presence {
                nonce: exact(payload)?,
            }),
            Command::Delegate => {
                // The fixed part alone (the first protocol's payload), or the
                // fixed part and the commitments (section 4.4).
                if payload.len() != DELEGATE_REQUEST_LEN
                    && payload.len() < DELEGATE_REQUEST_MIN_EXTENDED_LEN
                {
                    return Err(ErrorCode::InvalidLength);
                }
                let (fixed, tail) = payload.split_at(DELEGATE_REQUEST_LEN);
                let (nonce, rest) = split::<32>(fixed);
                let (key, rest) = split::<32>(rest);
                let (nb, rest) = split::<8>(rest);
                let (na, _) = split::<8>(rest);
                let session_key =
                    PublicKey::from_bytes(&key).map_err(|_| ErrorCode::InvalidParameter)?;
                let mut req = DelegationRequest::new(
                    nonce,
                    session_key,
                    tether_keys::UnixTime::from_secs(u64::from_be_bytes(nb)),
                    tether_keys::UnixTime::from_secs(u64::from_be_bytes(na)),
                );
                if !tail.is_empty() {
                    (req.commitment, req.ledger) =
                        decode_commitments(tail).map_err(|_| ErrorCode::InvalidParameter)?;
                }
                Ok(Request::Delegate(req))
            }
            Command::Receipt if payload.len() != RECEIPT_REQUEST_LEN => {
                Err(ErrorCode::InvalidLength)
            }
            Command::Receipt => ReceiptRequest::decode(payload)
                .map(Request::Receipt)
                .map_err(|_| ErrorCode::InvalidParameter),
            Command::SiteRequest if payload.len() != SITE_REQUEST_ASK_LEN => {
                Err(ErrorCode::InvalidLength)
            }
            Command::SiteRequest => SiteRequestAsk::decode(payload)
                .map(Request::SiteRequest)
                .map_err(|_| ErrorCode::InvalidParameter),
            Command::Error | Command::Other(_) => Err(ErrorCode::InvalidCommand),
        }
    }
}

/// Splits a fixed-size head off a slice that is known to be long enough.
fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = N.min(bytes.len());
    head[..n].copy_from_slice(&bytes[..n]);
    (head, &bytes[n..])
}

/// The answer to INIT (section 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitResponse {
    /// The host's nonce, echoed.
    pub nonce: [u8; INIT_NONCE_LEN],
    /// The allocated channel.
    pub cid: u32,
    /// [`PROTOCOL_VERSION`].
    pub version: u8,
    /// Firmware version.
    pub firmware: (u8, u8, u8),
    /// Capability flags (none defined; 0).
    pub capabilities: u8,
}

impl InitResponse {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(INIT_RESPONSE_LEN);
        p.extend_from_slice(&self.nonce);
        p.extend_from_slice(&self.cid.to_be_bytes());
        p.push(self.version);
        p.extend_from_slice(&[self.firmware.0, self.firmware.1, self.firmware.2]);
        p.push(self.capabilities);
        p
    }

    /// Decodes the payload.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadLength`] when it is not exactly an INIT answer's
    /// length.
    pub fn decode(p: &[u8]) -> Result<InitResponse, ProtocolError> {
        let p: &[u8; INIT_RESPONSE_LEN] = p.try_into().map_err(|_| ProtocolError::BadLength {
            what: "INIT answer",
            expected: INIT_RESPONSE_LEN,
            got: p.len(),
        })?;
        let (nonce, rest) = split::<8>(p);
        let (cid, rest) = split::<4>(rest);
        Ok(InitResponse {
            nonce,
            cid: u32::from_be_bytes(cid),
            version: rest[0],
            firmware: (rest[1], rest[2], rest[3]),
            capabilities: rest[4],
        })
    }
}

/// What INFO tells about a dongle (section 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DongleInfo {
    /// The serial (1-64 printable ASCII bytes).
    pub serial: String,
    /// Firmware version (major, minor, patch).
    pub firmware: (u8, u8, u8),
    /// The dongle's public key.
    pub public_key: PublicKey<Dongle>,
    /// The signature counter: DELEGATEs signed so far.
    pub counter: u32,
}

impl DongleInfo {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let serial = self.serial.as_bytes();
        let mut p = Vec::with_capacity(1 + serial.len() + 3 + 32 + 4);
        p.push(serial.len().min(255) as u8);
        p.extend_from_slice(&serial[..serial.len().min(255)]);
        p.extend_from_slice(&[self.firmware.0, self.firmware.1, self.firmware.2]);
        p.extend_from_slice(self.public_key.as_bytes());
        p.extend_from_slice(&self.counter.to_be_bytes());
        p
    }

    /// Decodes the payload: exact length, printable serial, a valid key.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] naming what is wrong: the length, the serial, or
    /// the key.
    pub fn decode(p: &[u8]) -> Result<DongleInfo, ProtocolError> {
        const WHAT: &str = "INFO answer";
        let Some((&n, rest)) = p.split_first() else {
            return Err(ProtocolError::BadLength {
                what: WHAT,
                expected: 1,
                got: 0,
            });
        };
        let n = usize::from(n);
        let need = n + 3 + 32 + 4;
        if rest.len() < need {
            return Err(ProtocolError::BadLength {
                what: WHAT,
                expected: 1 + need,
                got: p.len(),
            });
        }
        if rest.len() > need {
            return Err(ProtocolError::TrailingBytes {
                what: WHAT,
                extra: rest.len() - need,
            });
        }
        let (serial, rest) = rest.split_at(n);
        if serial.is_empty() || !serial.iter().all(|b| b.is_ascii_graphic()) {
            return Err(ProtocolError::Malformed {
                what: WHAT,
                reason: "serial is not 1-255 printable ASCII bytes",
            });
        }
        let firmware = (rest[0], rest[1], rest[2]);
        let (key, rest) = split::<32>(&rest[3..]);
        let (counter, _) = split::<4>(rest);
        let public_key = PublicKey::from_bytes(&key).map_err(|_| ProtocolError::Malformed {
            what: WHAT,
            reason: "public key is not a valid Ed25519 point",
        })?;
        Ok(DongleInfo {
            serial: String::from_utf8_lossy(serial).into_owned(),
            firmware,
            public_key,
            counter: u32::from_be_bytes(counter),
        })
    }
}

/// Decodes a PRESENCE answer: exactly one signature.
///
/// # Errors
///
/// [`ProtocolError::BadLength`] for any other length.
pub fn decode_presence(p: &[u8]) -> Result<[u8; 64], ProtocolError> {
    p.try_into().map_err(|_| ProtocolError::BadLength {
        what: "PRESENCE answer",
        expected: 64,
        got: p.len(),
    })
}

/// Decodes a DELEGATE answer: the certificate's canonical bytes, nothing else.
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when they are not a canonical certificate
/// (the signature is not checked here).
pub fn decode_delegate(p: &[u8]) -> Result<Certificate, ProtocolError> {
    Certificate::decode(p).map_err(|_| ProtocolError::Malformed {
        what: "DELEGATE answer",
        reason: "not a canonical delegation certificate",
    })
}

/// Decodes a RECEIPT answer: the receipt's canonical bytes, nothing else.
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when they are not a canonical receipt (the
/// signature is not checked here).
pub fn decode_receipt(p: &[u8]) -> Result<Receipt, ProtocolError> {
    Receipt::decode(p).map_err(|_| ProtocolError::Malformed {
        what: "RECEIPT answer",
        reason: "not a canonical revocation receipt",
    })
}

/// Decodes a SITE_REQUEST answer: the request's canonical bytes, nothing else.
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when they are not a canonical site request
/// (the signature is not checked here).
pub fn decode_site_request(p: &[u8]) -> Result<SiteRequest, ProtocolError> {
    SiteRequest::decode(p).map_err(|_| ProtocolError::Malformed {
        what: "SITE_REQUEST answer",
        reason: "not a canonical site request",
    })
}

/// Decodes an ERROR answer: exactly one code byte.
///
/// # Errors
///
/// [`ProtocolError::BadLength`] for any other length.
pub fn decode_error(p: &[u8]) -> Result<ErrorCode, ProtocolError> {
    match p {
        [code] => Ok(ErrorCode::from(*code)),
        _ => Err(ProtocolError::BadLength {
            what: "ERROR answer",
            expected: 1,
            got: p.len(),
        }),
    }
}

/// One host command: its wire format and its answer's decoder, together
/// (section 4). The host runs any of them through
/// [`super::Client::transact`]; the device parses them all as a [`Request`].
pub trait NativeCommand {
    /// The answer, decoded.
    type Response;
    /// The request as sent: command byte and payload.
    fn request(&self) -> Request;
    /// Decodes the answer's payload (not an ERROR answer: those are decoded
    /// once, by the client).
    ///
    /// # Errors
    /// A [`ProtocolError`] naming what does not decode.
    fn decode_response(payload: &[u8]) -> Result<Self::Response, ProtocolError>;
}

/// INIT: allocate a channel (section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    /// The host's nonce, echoed so a stale reader cannot steal the answer.
    pub nonce: [u8; INIT_NONCE_LEN],
}

impl NativeCommand for Init {
    type Response = InitResponse;
    fn request(&self) -> Request {
        Request::Init { nonce: self.nonce }
    }
    fn decode_response(payload: &[u8]) -> Result<InitResponse, ProtocolError> {
        InitResponse::decode(payload)
    }
}

/// INFO: serial, firmware, public key, counter (section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info;

impl NativeCommand for Info {
    type Response = DongleInfo;
    fn request(&self) -> Request {
        Request::Info
    }
    fn decode_response(payload: &[u8]) -> Result<DongleInfo, ProtocolError> {
        DongleInfo::decode(payload)
    }
}

/// PRESENCE: a signature (64 bytes) over a 32-byte nonce (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// The challenge.
    pub nonce: [u8; 32],
}

impl NativeCommand for Presence {
    type Response = [u8; 64];
    fn request(&self) -> Request {
        Request::Presence { nonce: self.nonce }
    }
    fn decode_response(payload: &[u8]) -> Result<[u8; 64], ProtocolError> {
        decode_presence(payload)
    }
}

/// DELEGATE: a delegation certificate for the request (section 4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegate(pub DelegationRequest);

impl NativeCommand for Delegate {
    type Response = Certificate;
    fn request(&self) -> Request {
        Request::Delegate(self.0.clone())
    }
    fn decode_response(payload: &[u8]) -> Result<Certificate, ProtocolError> {
        decode_delegate(payload)
    }
}

/// RECEIPT: a revocation receipt for the request (section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptCommand(pub ReceiptRequest);

impl NativeCommand for ReceiptCommand {
    type Response = Receipt;
    fn request(&self) -> Request {
        Request::Receipt(self.0)
    }
    fn decode_response(payload: &[u8]) -> Result<Receipt, ProtocolError> {
        decode_receipt(payload)
    }
}

/// SITE_REQUEST: a site request for the ask (section 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteRequestCommand(pub SiteRequestAsk);

impl NativeCommand for SiteRequestCommand {
    type Response = SiteRequest;
    fn request(&self) -> Request {
        Request::SiteRequest(self.0)
    }
    fn decode_response(payload: &[u8]) -> Result<SiteRequest, ProtocolError> {
        decode_site_request(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_keys::delegation::LedgerHead;
    use tether_keys::merkle::{Leaf, LeafSet};
    use tether_keys::testkeys;

    fn info() -> DongleInfo {
        DongleInfo {
            serial: "TD-0001".into(),
            firmware: (1, 2, 3),
            public_key: testkeys::dongle().public(),
            counter: 0x0102_0304,
        }
    }

    #[test]
    fn info_exact_bytes_round_trip_and_trailing() {
        let bytes = info().encode();
        assert_eq!(&bytes[..11], b"\x07TD-0001\x01\x02\x03");
        assert_eq!(&bytes[bytes.len() - 4..], &[1, 2, 3, 4]);
        assert_eq!(DongleInfo::decode(&bytes).unwrap(), info());
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            DongleInfo::decode(&long),
            Err(ProtocolError::TrailingBytes {
                what: "INFO answer",
                extra: 1
            })
        );
        assert!(matches!(
            DongleInfo::decode(&bytes[..bytes.len() - 1]),
            Err(ProtocolError::BadLength { .. })
        ));
    }

    fn committing_request() -> DelegationRequest {
        let mut req = DelegationRequest::new(
            [9; 32],
            testkeys::session().public(),
            tether_keys::UnixTime::from_secs(10),
            tether_keys::UnixTime::from_secs(20),
        );
        req.commitment = LeafSet::new([
            Leaf::new("backend", "b-1", "n1").unwrap(),
            Leaf::new("muxer", "m-1", "n2").unwrap(),
        ])
        .commitment()
        .unwrap();
        req.ledger = LedgerHead {
            sequence: 7,
            hash: [0x5A; 32],
        };
        req
    }

    #[test]
    fn delegate_request_round_trip_and_lengths() {
        let req = DelegationRequest::new(
            [9; 32],
            testkeys::session().public(),
            tether_keys::UnixTime::from_secs(10),
            tether_keys::UnixTime::from_secs(20),
        );
        let (cmd, p) = Request::Delegate(req.clone()).encode();
        assert_eq!(p.len(), DELEGATE_REQUEST_MIN_EXTENDED_LEN);
        assert_eq!(
            &p[64..80],
            &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 20]
        );
        // The empty commitment: the empty tree's root, no counts, no ledger.
        assert_eq!(&p[80..112], &tether_keys::merkle::EMPTY_ROOT);
        assert_eq!(&p[112..], &[0; 41]);
        assert_eq!(Request::parse(cmd, &p), Ok(Request::Delegate(req.clone())));
        // The first protocol's fixed 80 bytes still parse, as committing to nothing.
        assert_eq!(
            Request::parse(cmd, &p[..DELEGATE_REQUEST_LEN]),
            Ok(Request::Delegate(req))
        );
        for len in [0, 79, 81, DELEGATE_REQUEST_MIN_EXTENDED_LEN - 1] {
            assert_eq!(
                Request::parse(cmd, &p[..len.min(p.len())]),
                Err(ErrorCode::InvalidLength),
                "{len}"
            );
        }
        let mut trailing = p.clone();
        trailing.push(0);
        assert_eq!(
            Request::parse(cmd, &trailing),
            Err(ErrorCode::InvalidParameter)
        );
        assert_eq!(
            Request::parse(Command::Info, &[0]),
            Err(ErrorCode::InvalidLength)
        );
        assert_eq!(
            Request::parse(Command::Other(0x99), &[]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn delegate_request_carries_the_commitment_and_ledger_head() {
        let req = committing_request();
        let (cmd, p) = Request::Delegate(req.clone()).encode();
        let counts = (1 + 7 + 4) + (1 + 5 + 4);
        assert_eq!(p.len(), DELEGATE_REQUEST_MIN_EXTENDED_LEN + counts);
        assert_eq!(&p[80..112], &req.commitment.root);
        assert_eq!(&p[112..115], b"\x02\x07b");
        assert_eq!(&p[p.len() - 40..p.len() - 32], &7u64.to_be_bytes());
        assert_eq!(Request::parse(cmd, &p), Ok(Request::Delegate(req)));
        // Counts out of order, or a zero count: refused as a bad parameter.
        let mut zero = p.clone();
        zero[113 + 1 + 7..113 + 1 + 7 + 4].copy_from_slice(&[0; 4]);
        assert_eq!(Request::parse(cmd, &zero), Err(ErrorCode::InvalidParameter));
    }

    #[test]
    fn receipt_and_site_request_payloads_are_exact() {
        let req = ReceiptRequest {
            license_id: tether_keys::LicenseId([3; 16]),
            license_sequence: 2,
            revoked_through: 2,
            revocation_sha256: [4; 32],
            installed_at: tether_keys::UnixTime::from_secs(99),
        };
        let (cmd, p) = Request::Receipt(req).encode();
        assert_eq!(cmd.byte(), 0xC4);
        assert_eq!(p.len(), RECEIPT_REQUEST_LEN);
        assert_eq!(Request::parse(cmd, &p), Ok(Request::Receipt(req)));
        for len in [0, 71, 73] {
            let mut q = p.clone();
            q.resize(len, 0);
            assert_eq!(Request::parse(cmd, &q), Err(ErrorCode::InvalidLength));
        }
        let ask = SiteRequestAsk {
            license_id: tether_keys::LicenseId([3; 16]),
            license_sequence: 2,
            nonce: [5; 32],
            requested_at: tether_keys::UnixTime::from_secs(99),
        };
        let (cmd, p) = Request::SiteRequest(ask).encode();
        assert_eq!(cmd.byte(), 0xC5);
        assert_eq!(p.len(), SITE_REQUEST_ASK_LEN);
        assert_eq!(Request::parse(cmd, &p), Ok(Request::SiteRequest(ask)));
        assert_eq!(Request::parse(cmd, &p[1..]), Err(ErrorCode::InvalidLength));
        // Answers decode exactly.
        let receipt = Receipt::sign(req, "TD-0001", 1, &testkeys::dongle()).unwrap();
        assert_eq!(decode_receipt(receipt.encoded()), Ok(receipt.clone()));
        let mut long = receipt.encoded().to_vec();
        long.push(0);
        assert!(decode_receipt(&long).is_err());
        let site = SiteRequest::sign(ask, "TD-0001", 1, &testkeys::dongle()).unwrap();
        assert_eq!(decode_site_request(site.encoded()), Ok(site));
        assert!(decode_site_request(&[]).is_err());
    }

    #[test]
    fn init_response_exact_bytes() {
        let r = InitResponse {
            nonce: [1, 2, 3, 4, 5, 6, 7, 8],
            cid: 0x0000_0042,
            version: 1,
            firmware: (0, 3, 0),
            capabilities: 0,
        };
        let bytes = r.encode();
        assert_eq!(
            bytes,
            [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0x42, 1, 0, 3, 0, 0]
        );
        assert_eq!(InitResponse::decode(&bytes), Ok(r));
        assert!(InitResponse::decode(&bytes[..16]).is_err());
    }

    #[test]
    fn error_codes_decode_with_fallback() {
        assert_eq!(decode_error(&[0x10]), Ok(ErrorCode::RateLimited));
        assert_eq!(decode_error(&[0x55]), Ok(ErrorCode::Other(0x55)));
        assert!(decode_error(&[]).is_err());
        assert!(decode_error(&[1, 2]).is_err());
        for b in 0..=255u8 {
            assert_eq!(ErrorCode::from(b).code(), b);
        }
    }
}
