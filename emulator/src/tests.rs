//! Device tests: exact bytes of answers and errors, the DELEGATE rules,
//! the state file, the faults, and the client against the device.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_keys::delegation::presence_message;
use tether_keys::{DelegationRequest, testkeys};

use super::*;
use tether_dongle::native::{Client, Timeouts};
use tether_dongle::transport::{Reply, Scripted};
use tether_dongle::{LinkError, ProtocolError};

const SERIAL: &str = "TD-0001";
const T0: u64 = 1_700_000_000;

fn device() -> Device {
    Device::new(testkeys::dongle(), SERIAL, Rules::default())
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn padded(s: &str) -> Vec<u8> {
    let mut v = hex(s);
    v.resize(64, 0);
    v
}

fn send(d: &mut Device, cid: u32, cmd: Command, payload: &[u8], at: u64) -> Vec<Report> {
    send_at(d, cid, cmd, payload, Duration::from_secs(at))
}

fn send_at(d: &mut Device, cid: u32, cmd: Command, payload: &[u8], at: Duration) -> Vec<Report> {
    let mut out = Vec::new();
    for r in fragment(cid, cmd, payload).unwrap() {
        out.extend(d.handle_report_at(&r, at));
    }
    out
}

fn alloc(d: &mut Device) -> u32 {
    let out = send(d, BROADCAST, Command::Init, &[7; 8], 0);
    u32::from_be_bytes(out[0][15..19].try_into().unwrap())
}

fn request(nb: u64, len: u64) -> DelegationRequest {
    DelegationRequest::new(
        [0x11; 32],
        testkeys::session().public(),
        tether_keys::UnixTime::from_secs(nb),
        tether_keys::UnixTime::from_secs(nb + len),
    )
}

fn delegate(d: &mut Device, cid: u32, req: &DelegationRequest, at: u64) -> Result<Vec<u8>, u8> {
    delegate_ms(d, cid, req, at * 1000)
}

/// DELEGATE at `at_ms` milliseconds of uptime.
fn delegate_ms(
    d: &mut Device,
    cid: u32,
    req: &DelegationRequest,
    at_ms: u64,
) -> Result<Vec<u8>, u8> {
    let (cmd, p) = Request::Delegate(req.clone()).encode();
    let out = send_at(d, cid, cmd, &p, Duration::from_millis(at_ms));
    if out[0][4] == 0xBF {
        return Err(out[0][7]);
    }
    let len = usize::from(u16::from_be_bytes([out[0][5], out[0][6]]));
    let mut payload: Vec<u8> = out[0][7..].to_vec();
    for r in &out[1..] {
        payload.extend_from_slice(&r[5..]);
    }
    payload.truncate(len);
    Ok(payload)
}

#[test]
fn init_answer_exact_bytes() {
    let mut d = device();
    let out = send(
        &mut d,
        BROADCAST,
        Command::Init,
        &hex("0102030405060708"),
        0,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].to_vec(),
        padded("ffffffff 86 0011 0102030405060708 00000001 01 000100 00")
    );
    // The next allocation is a different channel.
    let out = send(&mut d, BROADCAST, Command::Init, &[0; 8], 0);
    assert_eq!(&out[0][15..19], &[0, 0, 0, 2]);
}

#[test]
fn error_answers_exact_bytes() {
    let mut d = device();
    let cid = alloc(&mut d);
    assert_eq!(cid, 1);
    // Unknown command.
    let out = send(&mut d, cid, Command::Other(0x99), &[], 0);
    assert_eq!(out[0].to_vec(), padded("00000001 bf 0001 01"));
    // INFO with a payload.
    let out = send(&mut d, cid, Command::Info, &[0], 0);
    assert_eq!(out[0].to_vec(), padded("00000001 bf 0001 03"));
    // A channel never allocated.
    let out = send(&mut d, 0x42, Command::Info, &[], 0);
    assert_eq!(out[0].to_vec(), padded("00000042 bf 0001 0b"));
    // A command other than INIT on the broadcast channel.
    let out = send(&mut d, BROADCAST, Command::Info, &[], 0);
    assert_eq!(out[0].to_vec(), padded("ffffffff bf 0001 0b"));
    // An announced length above the maximum.
    let out = d.handle_report_at(&padded("00000001 c1 0401"), Duration::ZERO);
    assert_eq!(out[0].to_vec(), padded("00000001 bf 0001 03"));
    // A continuation out of sequence.
    let msg = fragment(cid, Command::Delegate, &[0; 80]).unwrap();
    assert!(d.handle_report_at(&msg[0], Duration::ZERO).is_empty());
    let mut skipped = msg[1];
    skipped[4] = 1;
    let out = d.handle_report_at(&skipped, Duration::ZERO);
    assert_eq!(out[0].to_vec(), padded("00000001 bf 0001 04"));
    // A second channel starting while the first is mid-message.
    let other = alloc(&mut d);
    assert!(d.handle_report_at(&msg[0], Duration::ZERO).is_empty());
    let out = send(&mut d, other, Command::Info, &[], 0);
    assert_eq!(out[0].to_vec(), padded("00000002 bf 0001 06"));
    // The half message expires; its channel learns of it with the next report.
    let out = d.handle_report_at(
        &fragment(other, Command::Info, &[]).unwrap()[0],
        Duration::from_secs(1),
    );
    assert_eq!(out[0].to_vec(), padded("00000001 bf 0001 05"));
    assert_eq!(out[1][4], Command::Info.byte());
    // A stray continuation is ignored.
    assert!(d.handle_report_at(&msg[1], Duration::ZERO).is_empty());
}

#[test]
fn client_round_trips_over_the_in_process_device() {
    let dev = Arc::new(Mutex::new(device()));
    let mut c = Client::open(
        Box::new(LocalTransport::new(dev.clone())),
        Timeouts::default(),
    )
    .unwrap();
    let info = c.info().unwrap();
    assert_eq!(info.serial, SERIAL);
    assert_eq!(info.public_key, testkeys::dongle().public());
    assert_eq!(info.counter, 0);
    assert_eq!(info.firmware, FIRMWARE);
    let nonce = [5; 32];
    let sig = c.presence(&nonce).unwrap();
    assert!(info.public_key.verify(&presence_message(&nonce), &sig));
    let now = tether_keys::UnixTime::now().secs();
    let req = request(now, 300);
    let cert = c.delegate(&req).unwrap();
    cert.verify(&info.public_key).unwrap();
    assert_eq!(cert.request, req);
    assert_eq!(cert.counter, 1);
    assert_eq!(c.info().unwrap().counter, 1);
    assert!(matches!(
        c.delegate(&request(now, 3600)),
        Err(LinkError::Declined(ErrorCode::WindowTooLong))
    ));
}

/// RECEIPT and SITE_REQUEST: signed by the dongle key under their own
/// tags, each raising the counter (in flash) as DELEGATE does, with no
/// reach charged; a wrong length is refused without counting.
#[test]
fn receipts_and_site_requests_raise_the_counter_and_verify() {
    use tether_keys::{LicenseId, ReceiptRequest, SiteRequestAsk, UnixTime};
    let dir = tempfile::tempdir().unwrap();
    keyfile::write_secret_key(
        &dir.path().join(KEY_FILE),
        &testkeys::dongle(),
        &[(keyfile::SERIAL_HEADER, SERIAL)],
        keyfile::Overwrite::Never,
    )
    .unwrap();
    let dev = Arc::new(Mutex::new(
        Device::load(dir.path(), None, Rules::default()).unwrap(),
    ));
    let mut c = Client::open(
        Box::new(LocalTransport::new(dev.clone())),
        Timeouts::default(),
    )
    .unwrap();
    let now = UnixTime::now().secs();
    c.delegate(&request(now, 300)).unwrap();
    let req = ReceiptRequest {
        license_id: LicenseId([1; 16]),
        license_sequence: 1,
        revoked_through: 1,
        revocation_sha256: [9; 32],
        installed_at: UnixTime::from_secs(now),
    };
    let receipt = c.receipt(&req).unwrap();
    assert_eq!(receipt.request, req);
    assert_eq!(receipt.serial, SERIAL);
    assert_eq!(receipt.counter, 2);
    receipt
        .verify_signature(&testkeys::dongle().public())
        .unwrap();
    let ask = SiteRequestAsk {
        license_id: LicenseId([1; 16]),
        license_sequence: 1,
        nonce: [3; 32],
        requested_at: UnixTime::from_secs(now),
    };
    let site = c.site_request(&ask).unwrap();
    assert_eq!(site.ask, ask);
    assert_eq!(site.counter, 3);
    assert_eq!(site.dongle_key, testkeys::dongle().public());
    site.verify_signature().unwrap();
    // A certificate after them carries a higher counter still.
    assert_eq!(c.delegate(&request(now, 300)).unwrap().counter, 4);
    // The counter is in flash.
    drop(c);
    assert_eq!(
        Device::load(dir.path(), None, Rules::default())
            .unwrap()
            .counter(),
        4
    );
    // Wrong lengths: refused, nothing counted.
    let mut d = dev.lock().unwrap();
    let cid = alloc(&mut d);
    for (cmd, len) in [(Command::Receipt, 71), (Command::SiteRequest, 65)] {
        let out = send(&mut d, cid, cmd, &vec![0; len], 0);
        assert_eq!(out[0][4], 0xBF);
        assert_eq!(out[0][7], ErrorCode::InvalidLength.code());
    }
    assert_eq!(d.counter(), 4);
}

/// The device signs a version 2 certificate holding exactly the commitment
/// and ledger head it was asked for (blindly: the consumers check them).
#[test]
fn delegate_signs_the_commitment_and_ledger_head_it_is_given() {
    use tether_keys::delegation::LedgerHead;
    use tether_keys::merkle::{Leaf, LeafSet};
    let mut d = device();
    let cid = alloc(&mut d);
    let mut req = request(T0, 300);
    req.commitment = LeafSet::new([
        Leaf::new("backend", "b-1", "n1").unwrap(),
        Leaf::new("muxer", "m-1", "n2").unwrap(),
    ])
    .commitment()
    .unwrap();
    req.ledger = LedgerHead {
        sequence: 9,
        hash: [0x77; 32],
    };
    let bytes = delegate(&mut d, cid, &req, 0).unwrap();
    let cert = Certificate::decode(&bytes).unwrap();
    cert.verify(&testkeys::dongle().public()).unwrap();
    assert_eq!(cert.version(), 2);
    assert_eq!(cert.request, req);
    assert_eq!(cert.counter, 1);
}

/// The first protocol's fixed 80-byte DELEGATE payload still works: a
/// version 2 certificate committing to nothing.
#[test]
fn delegate_accepts_the_old_fixed_payload() {
    let mut d = device();
    let cid = alloc(&mut d);
    let req = request(T0, 300);
    let (cmd, p) = Request::Delegate(req.clone()).encode();
    let out = send(&mut d, cid, cmd, &p[..80], 0);
    assert_eq!(out[0][4], 0xC3, "answered with an error");
    let len = usize::from(u16::from_be_bytes([out[0][5], out[0][6]]));
    let mut payload: Vec<u8> = out[0][7..].to_vec();
    for r in &out[1..] {
        payload.extend_from_slice(&r[5..]);
    }
    payload.truncate(len);
    let cert = Certificate::decode(&payload).unwrap();
    cert.verify(&testkeys::dongle().public()).unwrap();
    assert_eq!(cert.request, req);
    assert!(cert.request.commitment.is_empty() && cert.request.ledger.is_none());
}

/// A commitment whose certificate would not fit one message is refused
/// before the counter moves.
#[test]
fn delegate_refuses_a_certificate_too_large_without_counting() {
    let mut d = device();
    let cid = alloc(&mut d);
    let mut req = request(T0, 300);
    req.commitment.root = [1; 32];
    req.commitment.counts = (0..12)
        .map(|i| (format!("{i:02}{}", "s".repeat(61)), 1))
        .collect();
    let (_, p) = Request::Delegate(req.clone()).encode();
    assert!(
        p.len() <= tether_dongle::ctaphid::MAX_MESSAGE,
        "{}",
        p.len()
    );
    assert_eq!(delegate(&mut d, cid, &req, 0), Err(0x02));
    assert_eq!(d.reported_counter(), 0);
}

#[test]
fn window_rules() {
    let mut d = device();
    let cid = alloc(&mut d);
    assert_eq!(delegate(&mut d, cid, &request(T0, 0), 0), Err(0x14));
    assert_eq!(delegate(&mut d, cid, &request(T0, 601), 0), Err(0x11));
    assert!(delegate(&mut d, cid, &request(T0, 600), 0).is_ok());
    // A clock set back (after running ahead by mistake) is no lockout: the
    // window costs its length from the reach budget, nothing else.
    assert!(delegate(&mut d, cid, &request(T0 - 3600, 60), 10).is_ok());
    assert!(delegate(&mut d, cid, &request(T0 + 86_400, 60), 10).is_ok());
}

/// A genuine host that re-plugs (or restarts) asks for a window starting
/// where the last one did: each costs the minimum charge (60 s), and the
/// budget earns twice the time powered. So a storm of back-to-back
/// re-plugs is absorbed, and a link that flaps every 30 s or slower never
/// locks the dongle out, however long it goes on.
#[test]
fn replugs_and_restarts_never_exhaust_the_reach_budget() {
    let mut d = device();
    let mut now_ms: u64 = T0 * 1000;
    let mut replug = |d: &mut Device, powered_ms: u64, i: usize| {
        // Unplugged 0.15 s, then powered for `powered_ms` before the DELEGATE.
        d.power_up();
        let cid = alloc(d);
        now_ms += 150 + powered_ms;
        let now = now_ms / 1000;
        let r = delegate_ms(d, cid, &request(now - 30, 330), powered_ms);
        assert!(r.is_ok(), "re-plug {i}: {r:?}");
    };
    // A storm: 55 re-plugs 0.45 s apart (0.3 s powered each).
    for i in 0..55 {
        replug(&mut d, 300, i);
    }
    // Then a link that keeps flapping every 31 s, for over an hour.
    for i in 0..150 {
        replug(&mut d, 30_850, i);
    }
    assert_eq!(d.counter(), 205);
}

/// The budget: gaps cost their whole window, it refills at `reach_rate`
/// seconds per second powered, and a power cycle does not refill it.
#[test]
fn reach_budget_spends_refills_and_survives_power_cycles() {
    let mut d = device();
    let cid = alloc(&mut d);
    // Six disjoint 600 s windows spend the 3600 s budget.
    for i in 0..6 {
        assert!(
            delegate(&mut d, cid, &request(T0 + i * 10_000, 600), 0).is_ok(),
            "{i}"
        );
    }
    assert_eq!(
        delegate(&mut d, cid, &request(T0 + 60_000, 600), 0),
        Err(0x10)
    );
    // 600 s of reach take 300 s powered at 2 s a second.
    assert_eq!(
        delegate(&mut d, cid, &request(T0 + 60_000, 600), 299),
        Err(0x10)
    );
    assert!(delegate(&mut d, cid, &request(T0 + 60_000, 600), 300).is_ok());
    // A window inside what is covered still costs the minimum charge (60 s).
    assert_eq!(
        delegate(&mut d, cid, &request(T0 + 60_000, 60), 300),
        Err(0x10)
    );
    assert!(delegate(&mut d, cid, &request(T0 + 60_000, 60), 330).is_ok());
    // A power cycle does not refill the budget.
    d.power_up();
    let cid = alloc(&mut d);
    assert_eq!(
        delegate(&mut d, cid, &request(T0 + 70_000, 60), 0),
        Err(0x10)
    );
    assert_eq!(d.counter(), 8);
}

#[test]
fn reach_cost_counts_only_new_validity() {
    assert_eq!(reach_cost((100, 200), None), 100);
    assert_eq!(reach_cost((100, 200), Some((150, 400))), 50);
    assert_eq!(reach_cost((100, 200), Some((0, 400))), 0);
    assert_eq!(reach_cost((100, 200), Some((300, 400))), 100);
    assert_eq!(reach_cost((100, 500), Some((200, 300))), 300);
    assert_eq!(extend_run((100, 200), Some((150, 400))), (100, 400));
    assert_eq!(extend_run((500, 600), Some((150, 400))), (500, 600));
    assert_eq!(extend_run((0, 100), Some((150, 400))), (150, 400));
}

#[test]
fn state_survives_restarts_and_is_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(KEY_FILE);
    keyfile::write_secret_key(
        &key,
        &testkeys::dongle(),
        &[(keyfile::SERIAL_HEADER, SERIAL)],
        keyfile::Overwrite::Never,
    )
    .unwrap();
    let mut d = Device::load(dir.path(), None, Rules::default()).unwrap();
    assert_eq!(d.serial(), SERIAL);
    let cid = alloc(&mut d);
    delegate(&mut d, cid, &request(T0, 60), 0).unwrap();
    delegate(&mut d, cid, &request(T0, 60), 1).unwrap();
    let mut d = Device::load(dir.path(), None, Rules::default()).unwrap();
    assert_eq!(d.counter(), 2);
    let cid = alloc(&mut d);
    // The reach budget came back from flash: 3600 - 2 x 60 left, so five
    // disjoint 600 s windows fit and a sixth does not (it would with a
    // fresh budget).
    for i in 1..=5 {
        delegate(&mut d, cid, &request(T0 + i * 10_000, 600), 0).unwrap();
    }
    assert_eq!(
        delegate(&mut d, cid, &request(T0 + 60_000, 600), 0),
        Err(0x10)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&STATE_FILE.to_string()));
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    // An explicit state path, and a garbled one.
    let other = dir.path().join("other.state");
    assert_eq!(
        Device::load(dir.path(), Some(&other), Rules::default())
            .unwrap()
            .counter(),
        0
    );
    std::fs::write(&other, "not json").unwrap();
    assert!(matches!(
        Device::load(dir.path(), Some(&other), Rules::default()),
        Err(EmulatorError::StateFormat { .. })
    ));
}

fn local(dev: &Arc<Mutex<Device>>) -> Client {
    let t = Timeouts {
        init: Duration::from_millis(50),
        info: Duration::from_millis(50),
        presence: Duration::from_millis(50),
        delegate: Duration::from_millis(50),
    };
    Client::open(Box::new(LocalTransport::new(dev.clone())), t).unwrap()
}

#[test]
fn faults_are_what_the_host_sees() {
    let dev = Arc::new(Mutex::new(device()));
    let mut c = local(&dev);
    let genuine = testkeys::dongle().public();
    let now = tether_keys::UnixTime::now().secs();

    dev.lock().unwrap().set_fault(Fault::Clone);
    assert_ne!(c.info().unwrap().public_key, genuine);
    let cert = c.delegate(&request(now, 60)).unwrap();
    assert!(cert.verify(&genuine).is_err());

    dev.lock().unwrap().set_fault(Fault::None);
    c.delegate(&request(now, 60)).unwrap();
    let before = c.info().unwrap().counter;
    dev.lock().unwrap().set_fault(Fault::Rollback);
    assert!(c.info().unwrap().counter < before);
    assert!(c.delegate(&request(now, 60)).unwrap().counter <= before);

    dev.lock().unwrap().set_fault(Fault::Replay);
    let fresh = request(now + 1, 60);
    let replayed = c.delegate(&fresh).unwrap();
    assert_ne!(replayed.request, fresh);

    dev.lock().unwrap().set_fault(Fault::WrongNonce);
    let nonce = [3; 32];
    let sig = c.presence(&nonce).unwrap();
    assert!(!genuine.verify(&presence_message(&nonce), &sig));

    dev.lock().unwrap().set_fault(Fault::Garbage);
    assert!(matches!(
        c.presence(&nonce),
        Err(LinkError::Protocol(_) | LinkError::Timeout)
    ));

    dev.lock().unwrap().set_fault(Fault::Silent);
    assert!(matches!(c.presence(&nonce), Err(LinkError::Timeout)));

    // Healthy again: the client resynchronises on a fresh channel.
    dev.lock().unwrap().set_fault(Fault::None);
    let sig = c.presence(&nonce).unwrap();
    assert!(genuine.verify(&presence_message(&nonce), &sig));
}

#[test]
fn fault_names_round_trip() {
    for f in [
        Fault::None,
        Fault::Clone,
        Fault::Rollback,
        Fault::Garbage,
        Fault::Silent,
        Fault::Slow(Duration::from_millis(250)),
        Fault::Replay,
        Fault::WrongNonce,
        Fault::PresenceAsDelegate,
        Fault::Oversized,
    ] {
        assert_eq!(f.to_string().parse::<Fault>().unwrap(), f);
    }
    assert!("melt".parse::<Fault>().is_err());
}

#[test]
fn presence_as_delegate_and_oversized_are_what_the_host_sees() {
    let dev = Arc::new(Mutex::new(device()));
    let mut c = local(&dev);
    let genuine = testkeys::dongle().public();
    let now = tether_keys::UnixTime::now().secs();

    // The certificate asked for, signed as a presence proof: the domain tag
    // keeps it from verifying as a delegation, yet it is a genuine signature.
    dev.lock().unwrap().set_fault(Fault::PresenceAsDelegate);
    let req = request(now, 60);
    let cert = c.delegate(&req).unwrap();
    assert_eq!(cert.request, req);
    assert!(cert.verify(&genuine).is_err());
    let sig: [u8; 64] = cert.encoded()[cert.encoded().len() - 64..]
        .try_into()
        .unwrap();
    assert!(genuine.verify(&presence_message(&req.nonce), &sig));

    dev.lock().unwrap().set_fault(Fault::Oversized);
    assert!(matches!(
        c.presence(&[1; 32]),
        Err(LinkError::Protocol(ProtocolError::Frame(
            FrameError::Oversized(65535)
        )))
    ));
    dev.lock().unwrap().set_fault(Fault::None);
    c.presence(&[1; 32]).unwrap();
}

/// A device double that answers INIT by echoing the nonce on channel
/// 0x11223344, then plays a script.
#[derive(Debug)]
struct EchoInit {
    script: Scripted,
    init_answer: Option<Report>,
}

impl tether_dongle::Transport for EchoInit {
    fn write_report(&mut self, r: &Report) -> tether_dongle::Result<()> {
        if r[..5] == hex("ffffffff86")[..] {
            let nonce: [u8; 8] = r[7..15].try_into().unwrap();
            let p = InitResponse {
                nonce,
                cid: 0x1122_3344,
                version: 1,
                firmware: (9, 8, 7),
                capabilities: 0,
            };
            self.init_answer = Some(fragment(BROADCAST, Command::Init, &p.encode()).unwrap()[0]);
        }
        self.script.write_report(r)
    }
    fn read_report(&mut self, t: Duration) -> tether_dongle::Result<Option<Report>> {
        match self.init_answer.take() {
            Some(a) => Ok(Some(a)),
            None => self.script.read_report(t),
        }
    }
}

fn scripted(replies: Vec<Reply>) -> (Client, Arc<Mutex<Vec<Report>>>) {
    let script = Scripted::new(replies);
    let written = script.written.clone();
    let t = EchoInit {
        script,
        init_answer: None,
    };
    (
        Client::open(Box::new(t), Timeouts::default()).unwrap(),
        written,
    )
}

fn reply(s: &str) -> Reply {
    Reply::Report(padded(s).try_into().unwrap())
}

#[test]
fn client_writes_exact_bytes_and_checks_answers() {
    let sig = "ab".repeat(57);
    let sig_rest = "ab".repeat(7);
    let (mut c, written) = scripted(vec![
        // Another channel's traffic is skipped.
        reply("00000009 c2 0040"),
        reply(&format!("11223344 c2 0040 {sig}")),
        reply(&format!("11223344 00 {sig_rest}")),
    ]);
    assert_eq!(c.channel(), 0x1122_3344);
    assert_eq!(c.firmware(), (9, 8, 7));
    assert_eq!(c.presence(&[0xCD; 32]).unwrap(), [0xAB; 64]);
    let w = written.lock().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(&w[0][..7], &hex("ffffffff 86 0008")[..]);
    assert_eq!(
        w[1].to_vec(),
        padded(&format!("11223344 c2 0020 {}", "cd".repeat(32)))
    );
}

#[test]
fn client_errors_are_typed() {
    let (mut c, _) = scripted(vec![reply("11223344 bf 0001 10")]);
    assert!(matches!(
        c.info(),
        Err(LinkError::Declined(ErrorCode::RateLimited))
    ));
    let (mut c, _) = scripted(vec![reply("11223344 bf 0001 66")]);
    assert!(matches!(
        c.info(),
        Err(LinkError::Declined(ErrorCode::Other(0x66)))
    ));
    let (mut c, _) = scripted(vec![reply("11223344 c2 0000")]);
    assert!(matches!(
        c.info(),
        Err(LinkError::Protocol(ProtocolError::UnexpectedCommand {
            expected: 0xC1,
            got: 0xC2
        }))
    ));
    let (mut c, _) = scripted(vec![reply("11223344 c2 0041 00"), Reply::Silence]);
    assert!(matches!(
        c.presence(&[0; 32]),
        Err(LinkError::Protocol(ProtocolError::Frame(
            FrameError::Truncated {
                expected: 65,
                got: 57
            }
        )))
    ));
    let (mut c, _) = scripted(vec![reply("11223344 c2 0003 000000")]);
    assert!(matches!(
        c.presence(&[0; 32]),
        Err(LinkError::Protocol(ProtocolError::BadLength { .. }))
    ));
    let (mut c, _) = scripted(vec![Reply::Gone]);
    assert!(matches!(c.info(), Err(LinkError::Removed)));
    assert!(
        LinkError::Removed.is_gone()
            && LinkError::Absent.is_gone()
            && !LinkError::Timeout.is_gone()
    );
}

#[test]
fn init_checks_the_echoed_nonce() {
    // Only a foreign nonce arrives: not ours, and said so.
    let foreign = InitResponse {
        nonce: [0xEE; 8],
        cid: 5,
        version: 1,
        firmware: (0, 0, 0),
        capabilities: 0,
    };
    let answer = fragment(BROADCAST, Command::Init, &foreign.encode()).unwrap()[0];
    let t = Scripted::new([Reply::Report(answer)]);
    let r = Client::open(
        Box::new(t),
        Timeouts {
            init: Duration::from_millis(20),
            ..Timeouts::default()
        },
    );
    assert!(matches!(
        r,
        Err(LinkError::Protocol(ProtocolError::NonceMismatch))
    ));
}

proptest::proptest! {
    #[test]
    fn device_never_panics(reports in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 64), 0..24)) {
        let mut d = device();
        let _ = alloc(&mut d);
        for (i, r) in reports.iter().enumerate() {
            let _ = d.handle_report_at(r, Duration::from_millis(i as u64 * 100));
        }
    }

    #[test]
    fn request_parser_never_panics(cmd in proptest::num::u8::ANY, payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = Request::parse(Command::from(cmd), &payload);
    }
}

proptest::proptest! {
    /// The reach rule's accounting (section 6): whatever windows are
    /// signed, in whatever order (backwards, overlapping, with gaps, far
    /// ahead), the costs charged add up to at least the validity covered.
    #[test]
    fn reach_costs_cover_the_union_of_all_windows(
        windows in proptest::collection::vec((0u64..3000, 1u64..=600), 1..60),
    ) {
        let mut covered = vec![false; 3600];
        let mut run = None;
        let mut charged = 0u64;
        for (nb, len) in windows {
            let w = (nb, nb + len);
            charged += reach_cost(w, run);
            run = Some(extend_run(w, run));
            for s in &mut covered[nb as usize..(nb + len) as usize] {
                *s = true;
            }
            let union = covered.iter().filter(|s| **s).count() as u64;
            proptest::prop_assert!(charged >= union, "charged {charged}, covered {union}");
        }
    }
}
