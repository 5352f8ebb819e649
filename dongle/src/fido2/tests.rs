//! The CTAP2 layer against fixed byte vectors and a small scripted key:
//! exact request bytes, strict decoding, KEEPALIVE, ERROR and status codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::ctaphid::{
    BROADCAST, CTAPHID_MAX_MESSAGE, Command, Progress, Reassembler, Report, fragment_limited,
};

pub(super) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s
        .split_whitespace()
        .filter(|w| !w.starts_with('#'))
        .collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every request the scripted key received: command and payload.
pub(super) type Requests = Arc<Mutex<Vec<(Command, Vec<u8>)>>>;

/// What the scripted key does with the next CBOR request.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    /// Status byte + body.
    Cbor(Vec<u8>),
    /// KEEPALIVE with this status, then the next answer.
    Keepalive(u8),
    /// A CTAPHID_ERROR with this code.
    HidError(u8),
    /// Unplugged.
    Gone,
    /// A getAssertion answered by this software authenticator over the
    /// request's clientDataHash, with these faults.
    Assert(
        Arc<Mutex<tether_keys::fido2::testsigner::TestAuthenticator>>,
        tether_keys::fido2::testsigner::Knobs,
    ),
}

/// A scripted CTAPHID key: allocates channel 0x0A0B0C0D on INIT (echoing
/// the nonce), echoes PING, answers CBOR from a script, records requests.
#[derive(Debug)]
pub(super) struct ScriptedKey {
    cid: u32,
    pending: Vec<Report>,
    out: VecDeque<Report>,
    pub answers: VecDeque<Answer>,
    pub requests: Requests,
    pub capabilities: u8,
    gone: bool,
}

impl ScriptedKey {
    pub(super) fn new(answers: impl IntoIterator<Item = Answer>) -> ScriptedKey {
        ScriptedKey {
            cid: 0x0A0B_0C0D,
            pending: Vec::new(),
            out: VecDeque::new(),
            answers: answers.into_iter().collect(),
            requests: Arc::default(),
            capabilities: 0x05,
            gone: false,
        }
    }

    fn reply(&mut self, cid: u32, cmd: Command, payload: &[u8]) {
        self.out
            .extend(fragment_limited(cid, cmd, payload, CTAPHID_MAX_MESSAGE).unwrap());
    }
}

impl crate::Transport for ScriptedKey {
    fn write_report(&mut self, report: &Report) -> crate::Result<()> {
        if self.gone {
            return Err(LinkError::Removed);
        }
        // Reports of one request, reassembled from its first packet on.
        self.pending.push(*report);
        let first = self.pending[0];
        let mut asm = Reassembler::with_limit(
            u32::from_be_bytes([first[0], first[1], first[2], first[3]]),
            CTAPHID_MAX_MESSAGE,
        );
        let mut done = None;
        for r in &self.pending {
            if let Ok(Progress::Done(m)) = asm.push(r) {
                done = Some(m);
            }
        }
        let Some(m) = done else {
            return Ok(());
        };
        self.pending.clear();
        self.requests
            .lock()
            .unwrap()
            .push((m.cmd, m.payload.clone()));
        match m.cmd {
            Command::Init => {
                let mut p = m.payload.clone();
                p.extend_from_slice(&self.cid.to_be_bytes());
                p.extend_from_slice(&[2, 5, 4, 3, self.capabilities]);
                self.reply(BROADCAST, Command::Init, &p);
            }
            c if c == hid::PING => self.reply(m.cid, c, &m.payload),
            c if c == hid::CANCEL => {}
            c if c == hid::CBOR => loop {
                match self.answers.pop_front() {
                    Some(Answer::Keepalive(s)) => self.reply(m.cid, hid::KEEPALIVE, &[s]),
                    Some(Answer::Cbor(a)) => {
                        self.reply(m.cid, hid::CBOR, &a);
                        break;
                    }
                    Some(Answer::HidError(code)) => {
                        self.reply(m.cid, Command::Error, &[code]);
                        break;
                    }
                    Some(Answer::Gone) => {
                        self.gone = true;
                        break;
                    }
                    Some(Answer::Assert(key, knobs)) => {
                        let req = cbor::decode_one(&m.payload[1..], "test request").unwrap();
                        let req = cbor::Map::new(req, "test request").unwrap();
                        let cdh: [u8; 32] = req
                            .int_key(2)
                            .unwrap()
                            .as_bytes()
                            .unwrap()
                            .as_slice()
                            .try_into()
                            .unwrap();
                        let (auth, sig) = key.lock().unwrap().assert(&cdh, &knobs);
                        let mut a = vec![0x00];
                        a.extend_from_slice(&cbor::encode(&cbor::map(vec![
                            (cbor::i(2), cbor::b(&auth)),
                            (cbor::i(3), cbor::b(&sig)),
                        ])));
                        self.reply(m.cid, hid::CBOR, &a);
                        break;
                    }
                    None => break,
                }
            },
            _ => self.reply(m.cid, Command::Error, &[0x01]),
        }
        Ok(())
    }

    fn read_report(&mut self, _timeout: Duration) -> crate::Result<Option<Report>> {
        match self.out.pop_front() {
            Some(r) => Ok(Some(r)),
            None if self.gone => Err(LinkError::Removed),
            None => Ok(None),
        }
    }
}

/// A YubiKey-5-like getInfo answer, built by hand (status 00, then the map):
/// versions [U2F_V2, FIDO_2_0, FIDO_2_1], extensions [credProtect,
/// hmac-secret], aaguid cb69481e8ff7403993ec0a2729a154a8, options {rk: true,
/// up: true, clientPin: false}, maxMsgSize 1200, algorithms [ES256, EdDSA],
/// firmwareVersion 328965.
pub(super) const GET_INFO_ANSWER: &str = "
    00 a6
    01 83 66 5532465f5632 68 4649444f5f325f30 68 4649444f5f325f31
    02 82 6b 63726564 50726f74656374 6b 686d61632d736563726574
    03 50 cb69481e8ff7403993ec0a2729a154a8
    04 a3 62 726b f5 62 7570 f5 69 636c69656e7450696e f4
    05 19 04b0
    0a 82 a2 63 616c67 26 64 74797065 6a 7075626c69632d6b6579
          a2 63 616c67 27 64 74797065 6a 7075626c69632d6b6579
";

fn get_info_answer() -> Vec<u8> {
    // The same, with firmwareVersion appended (map of 7).
    let mut v = unhex(GET_INFO_ANSWER);
    v[1] = 0xA7;
    v.extend_from_slice(&unhex("0e 1a 00050505"));
    v
}

fn client(answers: Vec<Answer>) -> (Fido2Client, Requests) {
    let key = ScriptedKey::new(answers);
    let requests = key.requests.clone();
    let hid = CtapHid::open(Box::new(key), Fido2Timeouts::default()).unwrap();
    (Fido2Client::from_hid(hid), requests)
}

#[test]
fn scripted_key_reports_are_split_by_message() {
    // Sanity of the scripted key itself: a two-packet request arrives whole.
    let (mut c, requests) = client(vec![]);
    c.hid().ping(&[7; 100]).unwrap();
    let reqs = requests.lock().unwrap();
    assert_eq!(reqs.last().unwrap(), &(hid::PING, vec![7; 100]));
}

#[test]
fn init_allocates_a_channel_and_reads_capabilities() {
    let (mut c, requests) = client(vec![]);
    assert_eq!(c.hid().channel(), 0x0A0B_0C0D);
    assert_eq!(
        c.hid().info(),
        HidInfo {
            protocol: 2,
            device_version: (5, 4, 3),
            capabilities: 0x05
        }
    );
    let reqs = requests.lock().unwrap();
    assert_eq!(reqs[0].0, Command::Init);
    assert_eq!(reqs[0].1.len(), 8);
}

#[test]
fn a_key_without_cbor_is_refused() {
    let mut key = ScriptedKey::new(vec![]);
    key.capabilities = 0x01;
    let err = CtapHid::open(Box::new(key), Fido2Timeouts::default()).unwrap_err();
    assert!(err.to_string().contains("U2F-only"), "{err}");
}

#[test]
fn get_info_exact_request_and_decoded_answer() {
    let (mut c, requests) = client(vec![Answer::Cbor(get_info_answer())]);
    let info = c.get_info().unwrap();
    assert_eq!(requests.lock().unwrap()[1], (hid::CBOR, vec![0x04]));
    assert_eq!(info.versions, ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]);
    assert_eq!(info.extensions, ["credProtect", "hmac-secret"]);
    assert_eq!(info.aaguid_hex(), "cb69481e8ff7403993ec0a2729a154a8");
    assert_eq!(info.options.get("rk"), Some(&true));
    assert_eq!(info.options.get("clientPin"), Some(&false));
    assert_eq!(info.max_msg_size, Some(1200));
    assert_eq!(info.algorithms, Some(vec![-7, -8]));
    assert_eq!(info.firmware_version, Some(0x0005_0505));
    assert!(info.is_ctap2());
    assert!(!info.always_uv());
}

#[test]
fn get_info_refuses_trailing_bytes_and_wrong_types() {
    let mut trailing = unhex(GET_INFO_ANSWER)[1..].to_vec();
    trailing.push(0x00);
    assert!(matches!(
        AuthenticatorInfo::decode(&trailing),
        Err(crate::ProtocolError::TrailingBytes { extra: 1, .. })
    ));
    // aaguid of 15 bytes.
    let short = unhex("a2 01 81 68 4649444f5f325f30 03 4f 000102030405060708090a0b0c0d0e");
    assert!(
        AuthenticatorInfo::decode(&short)
            .unwrap_err()
            .to_string()
            .contains("16 bytes")
    );
    // versions as a text string instead of an array.
    let wrong = unhex("a2 01 68 4649444f5f325f30 03 50 000102030405060708090a0b0c0d0e0f");
    assert!(AuthenticatorInfo::decode(&wrong).is_err());
    // No aaguid.
    assert!(AuthenticatorInfo::decode(&unhex("a1 01 80")).is_err());
}

#[test]
fn make_credential_exact_request() {
    let req = MakeCredential {
        client_data_hash: [0x22; 32],
        rp_id: "tether:default".into(),
        user_id: vec![0x01],
        cred_protect: true,
    };
    let mut expected = unhex("01 a6 01 5820");
    expected.extend_from_slice(&[0x22; 32]);
    expected.extend_from_slice(&unhex(
        "02 a2 62 6964 6e 7465746865723a64656661756c74 64 6e616d65 66 546574686572
         03 a3 62 6964 41 01 64 6e616d65 66 746574686572 6b 646973706c61794e616d65 66 746574686572
         04 83 a2 63 616c67 27 64 74797065 6a 7075626c69632d6b6579
               a2 63 616c67 32 64 74797065 6a 7075626c69632d6b6579
               a2 63 616c67 26 64 74797065 6a 7075626c69632d6b6579
         06 a1 6b 63726564 50726f74656374 01
         07 a1 62 726b f4",
    ));
    assert_eq!(req.encode(), expected);
    // Without credProtect the map has 5 entries and no key 06.
    let plain = MakeCredential {
        cred_protect: false,
        ..req
    }
    .encode();
    assert_eq!(plain[1], 0xA5);
}

/// authData for a new Ed25519 credential: rpIdHash 0x33.., flags UP|AT
/// (0x41), signCount 0, aaguid 0x44.., credential id 0x55 x 16, COSE key.
pub(super) fn new_credential_auth_data(flags: u8, extra: &[u8]) -> Vec<u8> {
    let mut a = vec![0x33; 32];
    a.push(flags);
    a.extend_from_slice(&[0, 0, 0, 0]);
    a.extend_from_slice(&[0x44; 16]);
    a.extend_from_slice(&[0x00, 0x10]);
    a.extend_from_slice(&[0x55; 16]);
    a.extend_from_slice(&cbor::encode(&CosePublicKey::Ed25519([0x66; 32]).to_cbor()));
    a.extend_from_slice(extra);
    a
}

fn make_credential_answer(auth_data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend_from_slice(&cbor::encode(&cbor::map(vec![
        (cbor::i(1), cbor::t("packed")),
        (cbor::i(2), cbor::b(auth_data)),
        (
            cbor::i(3),
            cbor::map(vec![
                (cbor::t("alg"), cbor::i(-8)),
                (cbor::t("sig"), cbor::b(&[0x77; 64])),
            ]),
        ),
    ])));
    v
}

#[test]
fn make_credential_answer_decodes_with_keepalives() {
    let auth = new_credential_auth_data(0x41, &[]);
    let (mut c, _) = client(vec![
        Answer::Keepalive(hid::STATUS_PROCESSING),
        Answer::Keepalive(hid::STATUS_UPNEEDED),
        Answer::Cbor(make_credential_answer(&auth)),
    ]);
    let req = MakeCredential {
        client_data_hash: [0; 32],
        rp_id: "tether:default".into(),
        user_id: vec![1],
        cred_protect: false,
    };
    let cred = c.make_credential(&req).unwrap();
    assert_eq!(cred.fmt, "packed");
    assert_eq!(cred.credential_id, vec![0x55; 16]);
    assert_eq!(cred.public_key, CosePublicKey::Ed25519([0x66; 32]));
    assert_eq!(cred.aaguid, [0x44; 16]);
    assert_eq!(cred.att_stmt.alg, Some(-8));
    assert!(cred.att_stmt.x5c.is_empty());
    assert_eq!(cred.auth_data, auth);
}

#[test]
fn new_credential_auth_data_is_strict() {
    // Trailing bytes without ED.
    let bad = make_credential_answer(&new_credential_auth_data(0x41, &[0x00]));
    assert!(matches!(
        NewCredential::decode(&bad[1..]),
        Err(crate::ProtocolError::TrailingBytes { .. })
    ));
    // ED with an extensions map is accepted.
    let ok = make_credential_answer(&new_credential_auth_data(
        0xC1,
        &unhex("a1 6b 63726564 50726f74656374 01"),
    ));
    assert!(NewCredential::decode(&ok[1..]).is_ok());
    // No AT flag.
    let no_at = make_credential_answer(&new_credential_auth_data(0x01, &[]));
    assert!(
        NewCredential::decode(&no_at[1..])
            .unwrap_err()
            .to_string()
            .contains("AT flag")
    );
    // Truncated inside the COSE key.
    let mut cut = new_credential_auth_data(0x41, &[]);
    cut.truncate(cut.len() - 3);
    assert!(NewCredential::decode(&make_credential_answer(&cut)[1..]).is_err());
}

#[test]
fn get_assertion_exact_request_is_silent() {
    let req = GetAssertion {
        rp_id: "tether:default".into(),
        client_data_hash: [0x11; 32],
        credential_id: vec![0xAB; 4],
    };
    let mut expected = unhex("02 a4 01 6e 7465746865723a64656661756c74 02 5820");
    expected.extend_from_slice(&[0x11; 32]);
    expected.extend_from_slice(&unhex(
        "03 81 a2 62 6964 44 abababab 64 74797065 6a 7075626c69632d6b6579
         05 a1 62 7570 f4",
    ));
    assert_eq!(req.encode(), expected);
}

fn assertion_answer(cred_id: &[u8], count: u32) -> Vec<u8> {
    let mut auth = vec![0x33; 32];
    auth.push(0x00);
    auth.extend_from_slice(&count.to_be_bytes());
    let mut v = vec![0x00];
    v.extend_from_slice(&cbor::encode(&cbor::map(vec![
        (
            cbor::i(1),
            cbor::map(vec![
                (cbor::t("id"), cbor::b(cred_id)),
                (cbor::t("type"), cbor::t("public-key")),
            ]),
        ),
        (cbor::i(2), cbor::b(&auth)),
        (cbor::i(3), cbor::b(&[0x99; 64])),
    ])));
    v
}

#[test]
fn get_assertion_decodes_and_checks_the_credential() {
    let req = GetAssertion {
        rp_id: "r".into(),
        client_data_hash: [0; 32],
        credential_id: vec![1, 2, 3],
    };
    let (mut c, _) = client(vec![
        Answer::Cbor(assertion_answer(&[1, 2, 3], 7)),
        Answer::Cbor(assertion_answer(&[9, 9], 8)),
    ]);
    let a = c.get_assertion(&req).unwrap();
    assert_eq!(a.sign_count(), 7);
    assert_eq!(a.signature, vec![0x99; 64]);
    assert_eq!(a.auth_data.len(), 37);
    let err = c.get_assertion(&req).unwrap_err();
    assert!(err.to_string().contains("another credential"), "{err}");
}

#[test]
fn status_codes_become_clear_errors() {
    let req = GetAssertion {
        rp_id: "r".into(),
        client_data_hash: [0; 32],
        credential_id: vec![1],
    };
    let (mut c, _) = client(vec![Answer::Cbor(vec![0x2E]), Answer::Cbor(vec![0x27])]);
    let err = c.get_assertion(&req).unwrap_err();
    assert!(matches!(err, LinkError::Ctap(CtapStatus::NoCredentials)));
    assert!(
        err.to_string().contains("does not know this credential"),
        "{err}"
    );
    let err = c.get_assertion(&req).unwrap_err();
    assert!(err.to_string().contains("demands a touch"), "{err}");
}

#[test]
fn a_silent_request_that_wants_a_touch_is_cancelled() {
    let req = GetAssertion {
        rp_id: "r".into(),
        client_data_hash: [0; 32],
        credential_id: vec![1],
    };
    let key = ScriptedKey::new(vec![Answer::Keepalive(hid::STATUS_UPNEEDED)]);
    let requests = key.requests.clone();
    let mut c =
        Fido2Client::from_hid(CtapHid::open(Box::new(key), Fido2Timeouts::default()).unwrap());
    let err = c.get_assertion(&req).unwrap_err();
    assert!(
        matches!(err, LinkError::Ctap(CtapStatus::TouchDemanded)),
        "{err}"
    );
    assert_eq!(requests.lock().unwrap().last().unwrap().0, hid::CANCEL);
}

#[test]
fn hid_errors_removal_and_ping() {
    let (mut c, _) = client(vec![Answer::HidError(0x06), Answer::Gone]);
    let err = c.get_info().unwrap_err();
    assert!(
        matches!(err, LinkError::Declined(crate::ErrorCode::ChannelBusy)),
        "{err}"
    );
    c.hid().ping(b"tether").unwrap();
    assert!(matches!(c.get_info().unwrap_err(), LinkError::Removed));
}

#[test]
fn empty_and_garbage_answers_are_protocol_errors() {
    let (mut c, _) = client(vec![
        Answer::Cbor(vec![]),
        Answer::Cbor(vec![0x00, 0xFF, 0x00]),
    ]);
    assert!(matches!(c.get_info().unwrap_err(), LinkError::Protocol(_)));
    assert!(matches!(c.get_info().unwrap_err(), LinkError::Protocol(_)));
}

#[test]
fn selectors_parse_and_print() {
    for s in [
        "fido2",
        "fido2:ABC123",
        "fido2:/dev/hidraw3",
        "fido2:socket:/tmp/k.sock",
    ] {
        let sel: Fido2Selector = s.parse().unwrap();
        assert_eq!(sel.to_string(), s);
    }
    assert_eq!(
        "fido2:/dev/hidraw3".parse::<Fido2Selector>().unwrap(),
        Fido2Selector::Hid(crate::hid::FidoFilter::Path("/dev/hidraw3".into()))
    );
    for bad in ["fido", "fido2:", "fido2:socket:", "hid", "socket:/x"] {
        assert!(bad.parse::<Fido2Selector>().is_err(), "{bad}");
    }
}

/// A delegation request for `serial`-less tests: a fresh session key, a
/// five-minute window.
fn request() -> tether_keys::DelegationRequest {
    let now = tether_keys::UnixTime::now();
    tether_keys::DelegationRequest::new(
        tether_keys::delegation::fresh_nonce(),
        tether_keys::SecretKey::<tether_keys::Session>::generate().public(),
        now,
        now + Duration::from_secs(300),
    )
}

fn dongle_for(
    algorithm: tether_keys::Fido2Algorithm,
    knobs: tether_keys::fido2::testsigner::Knobs,
    certs: usize,
) -> (Fido2Dongle, tether_keys::DongleIdentity) {
    use tether_keys::fido2::testsigner::TestAuthenticator;
    let key = TestAuthenticator::new(algorithm, [7; 32]);
    let credential = key.credential();
    let key = Arc::new(Mutex::new(key));
    let mut answers = vec![Answer::Cbor(get_info_answer())];
    for _ in 0..certs {
        answers.push(Answer::Assert(key.clone(), knobs.clone()));
    }
    let hid = CtapHid::open(
        Box::new(ScriptedKey::new(answers)),
        Fido2Timeouts::default(),
    )
    .unwrap();
    (
        Fido2Dongle::from_client(Fido2Client::from_hid(hid), credential.clone()),
        tether_keys::DongleIdentity::Fido2(credential),
    )
}

/// The dongle end to end against a software authenticator: identify by
/// getInfo, PING liveness, and certificates that `verify_by` accepts, with a
/// counter that rises; ES256 high-S signatures normalised.
#[test]
fn fido2_dongle_certifies_what_verify_by_accepts() {
    use crate::{Dongle as _, Identity, PresenceProof};
    for (alg, high_s) in [
        (tether_keys::Fido2Algorithm::Ed25519, false),
        (tether_keys::Fido2Algorithm::Es256, false),
        (tether_keys::Fido2Algorithm::Es256, true),
    ] {
        let knobs = tether_keys::fido2::testsigner::Knobs {
            high_s,
            ..Default::default()
        };
        let (mut dongle, identity) = dongle_for(alg, knobs, 2);
        let Identity::Fido2(id) = dongle.identify().unwrap() else {
            panic!("not a FIDO2 identity")
        };
        assert_eq!(id.serial, dongle.credential().serial());
        assert_eq!(ctap::hex(&id.aaguid), "cb69481e8ff7403993ec0a2729a154a8");
        assert_eq!(
            dongle.prove_presence(&[3; 32]).unwrap(),
            PresenceProof::Ping
        );
        let req = request();
        let first = dongle.certify(&req).unwrap();
        first.verify_by(&identity).unwrap();
        assert_eq!(first.request, req);
        assert_eq!(first.serial, dongle.credential().serial());
        let second = dongle.certify(&request()).unwrap();
        second.verify_by(&identity).unwrap();
        assert!(second.counter > first.counter, "{alg:?}");
    }
}

/// A key that sets UP on a silent assertion makes a certificate
/// `verify_by` refuses (the dongle builds it; the authority checks it).
#[test]
fn fido2_dongle_certificates_with_up_set_are_refused_by_verify_by() {
    use crate::Dongle as _;
    let knobs = tether_keys::fido2::testsigner::Knobs {
        flags: 0x01,
        ..Default::default()
    };
    let (mut dongle, identity) = dongle_for(tether_keys::Fido2Algorithm::Ed25519, knobs, 1);
    dongle.identify().unwrap();
    let cert = dongle.certify(&request()).unwrap();
    assert!(cert.verify_by(&identity).is_err());
}

/// The fuzz target's seeds (`fuzz/seeds/ctap2_decode/`, one selector byte
/// then the CBOR body) decode, so the fuzzer starts from valid answers.
#[test]
fn the_fuzz_seeds_are_valid_answers() {
    let seed = |name: &str| {
        let path = format!(
            "{}/../fuzz/seeds/ctap2_decode/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        bytes[1..].to_vec()
    };
    let info = AuthenticatorInfo::decode(&seed("get-info")).unwrap();
    assert_eq!(info.firmware_version, Some(0x0005_0505));
    let cred = NewCredential::decode(&seed("make-credential")).unwrap();
    assert_eq!(cred.public_key, CosePublicKey::Ed25519([0x66; 32]));
    let a = Assertion::decode(&seed("get-assertion"), &[1, 2, 3]).unwrap();
    assert_eq!(a.sign_count(), 7);
}

proptest::proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = AuthenticatorInfo::decode(&bytes);
        let _ = NewCredential::decode(&bytes);
        let _ = Assertion::decode(&bytes, &[1]);
        let _ = cbor::decode_one(&bytes, "x").map(CosePublicKey::from_cbor);
    }
}
