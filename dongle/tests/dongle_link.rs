//! The dongle link end to end over the emulator's Unix socket: round trips
//! verified with the dongle key, unplug during a request, re-plug, clones and
//! counter rollbacks as the host detects them, the firmware's DELEGATE rules,
//! and hidapi with no device (plus a hardware test, ignored by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tether_dongle::native::Client;
use tether_dongle::{ErrorCode, LinkError, Selector};
use tether_emulator::{Device, Fault, Rules, SocketEmulator, socket};
use tether_keys::delegation::{fresh_nonce, presence_message};
use tether_keys::{DelegationRequest, SecretKey, Session, testkeys};

const SERIAL: &str = "TD-TEST01";

// Fields drop in order: the emulator stops before its directory goes.
struct Rig {
    emu: SocketEmulator,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn rig_with(rules: Rules) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongle.sock");
    let emu = SocketEmulator::spawn(Device::new(testkeys::dongle(), SERIAL, rules), &path).unwrap();
    Rig {
        _dir: dir,
        path,
        emu,
    }
}

fn rig() -> Rig {
    rig_with(Rules::default())
}

impl Rig {
    fn selector(&self) -> Selector {
        format!("socket:{}", self.path.display()).parse().unwrap()
    }
    fn connect(&self) -> Client {
        Client::connect(&self.selector()).unwrap()
    }
}

fn request(not_before: u64, secs: u64) -> DelegationRequest {
    DelegationRequest::new(
        fresh_nonce(),
        SecretKey::<Session>::generate().public(),
        tether_keys::UnixTime::from_secs(not_before),
        tether_keys::UnixTime::from_secs(not_before + secs),
    )
}

#[test]
fn info_presence_delegate_round_trips_verify_with_the_dongle_key() {
    let rig = rig();
    let mut c = rig.connect();
    let info = c.info().unwrap();
    assert_eq!(info.serial, SERIAL);
    assert_eq!(info.public_key, testkeys::dongle().public());
    let nonce = fresh_nonce();
    let sig = c.presence(&nonce).unwrap();
    assert!(info.public_key.verify(&presence_message(&nonce), &sig));
    let req = request(tether_keys::UnixTime::now().secs(), 300);
    let cert = c.delegate(&req).unwrap();
    cert.verify(&info.public_key).unwrap();
    assert_eq!(cert.request, req);
    assert_eq!(cert.serial, SERIAL);
    assert_eq!(cert.counter, info.counter + 1);
}

#[test]
fn two_hosts_get_their_own_channels() {
    let rig = rig();
    let mut a = rig.connect();
    let mut b = rig.connect();
    assert_ne!(a.channel(), b.channel());
    a.info().unwrap();
    b.info().unwrap();
}

#[test]
fn unplug_during_a_request_fails_at_once_and_plug_brings_it_back() {
    let rig = rig();
    let mut c = rig.connect();
    c.info().unwrap();
    // Answers take 5 s; the unplug must cut the request short, well within the timeout.
    rig.emu.set_fault(Fault::Slow(Duration::from_secs(5)));
    let started = Instant::now();
    let unplugger = {
        let path = rig.path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            socket::control(&path, "unplug").unwrap();
        })
    };
    let r = c.presence(&fresh_nonce());
    let took = started.elapsed();
    unplugger.join().unwrap();
    assert!(matches!(r, Err(LinkError::Removed)), "{r:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(r.unwrap_err().is_gone());

    // While unplugged, nothing connects.
    let err = Client::connect(&rig.selector()).unwrap_err();
    assert!(matches!(err, LinkError::Absent), "{err:?}");

    rig.emu.set_fault(Fault::None);
    rig.emu.plug();
    let mut c = rig.connect();
    let nonce = fresh_nonce();
    let sig = c.presence(&nonce).unwrap();
    assert!(
        testkeys::dongle()
            .public()
            .verify(&presence_message(&nonce), &sig)
    );
}

#[test]
fn wait_gone_returns_on_unplug_and_idles_otherwise() {
    let rig = rig();
    let mut c = rig.connect();
    c.wait_gone(Duration::from_millis(50)).unwrap();
    let started = Instant::now();
    let t = {
        let path = rig.path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            socket::control(&path, "unplug").unwrap();
        })
    };
    let r = c.wait_gone(Duration::from_secs(5));
    t.join().unwrap();
    assert!(matches!(r, Err(LinkError::Removed)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_missing_socket_is_no_dongle() {
    let sel: Selector = "socket:/nonexistent/tether/dongle.sock".parse().unwrap();
    assert!(matches!(Client::connect(&sel), Err(LinkError::Absent)));
}

/// What the host does with INFO and certificates (as tetherd's watchdog does).
fn check_against_license(
    c: &mut Client,
    licensed: &tether_keys::PublicKey<tether_keys::Dongle>,
    seen_counter: u32,
) -> Result<u32, String> {
    let info = c.info().map_err(|e| e.to_string())?;
    if info.public_key != *licensed {
        return Err("public key differs from the license".into());
    }
    if info.counter < seen_counter {
        return Err(format!("counter {} below {seen_counter}", info.counter));
    }
    let req = request(tether_keys::UnixTime::now().secs(), 60);
    let cert = c.delegate(&req).map_err(|e| e.to_string())?;
    cert.verify(licensed)
        .map_err(|_| "certificate does not verify".to_string())?;
    if cert.request != req {
        return Err("certificate answers another request".into());
    }
    if cert.counter <= seen_counter {
        return Err(format!("counter {} not above {seen_counter}", cert.counter));
    }
    Ok(cert.counter)
}

#[test]
fn a_clone_is_detected_by_its_key() {
    let rig = rig();
    let licensed = testkeys::dongle().public();
    let mut c = rig.connect();
    let seen = check_against_license(&mut c, &licensed, 0).unwrap();
    rig.emu.set_fault(Fault::Clone);
    let err = check_against_license(&mut c, &licensed, seen).unwrap_err();
    assert!(err.contains("public key"), "{err}");
    // Even if INFO were believed, the certificate would not verify.
    let cert = c
        .delegate(&request(tether_keys::UnixTime::now().secs(), 60))
        .unwrap();
    assert!(cert.verify(&licensed).is_err());
}

#[test]
fn a_counter_rollback_is_detected() {
    let rig = rig();
    let licensed = testkeys::dongle().public();
    let mut c = rig.connect();
    let seen = check_against_license(&mut c, &licensed, 0).unwrap();
    rig.emu.set_fault(Fault::Rollback);
    let err = check_against_license(&mut c, &licensed, seen).unwrap_err();
    assert!(err.contains("counter"), "{err}");
}

#[test]
fn replayed_and_wrong_nonce_answers_are_detected() {
    let rig = rig();
    let licensed = testkeys::dongle().public();
    let mut c = rig.connect();
    check_against_license(&mut c, &licensed, 0).unwrap();
    rig.emu.set_fault(Fault::Replay);
    let err = check_against_license(&mut c, &licensed, 0).unwrap_err();
    assert!(err.contains("another request"), "{err}");
    rig.emu.set_fault(Fault::WrongNonce);
    let nonce = fresh_nonce();
    let sig = c.presence(&nonce).unwrap();
    assert!(!licensed.verify(&presence_message(&nonce), &sig));
}

#[test]
fn garbage_and_silence_are_errors_not_panics() {
    let rig = rig();
    let mut c = rig.connect();
    rig.emu.set_fault(Fault::Garbage);
    let r = c.presence(&fresh_nonce());
    assert!(
        matches!(r, Err(LinkError::Protocol(_) | LinkError::Timeout)),
        "{r:?}"
    );
    rig.emu.set_fault(Fault::Silent);
    assert!(matches!(
        c.presence(&fresh_nonce()),
        Err(LinkError::Timeout)
    ));
    rig.emu.set_fault(Fault::None);
    c.presence(&fresh_nonce()).unwrap();
}

#[test]
fn delegate_rules_are_refused_with_their_codes() {
    let rig = rig();
    let mut c = rig.connect();
    let now = tether_keys::UnixTime::now().secs();
    assert!(matches!(
        c.delegate(&request(now, 601)),
        Err(LinkError::Declined(ErrorCode::WindowTooLong))
    ));
    // Reach budget 1 h: 600 s for the first window, then windows dated
    // apart cost their length each (600 + 5 x 600 = 3600).
    c.delegate(&request(now, 600)).unwrap();
    for i in 1..=5 {
        c.delegate(&request(now + i * 10_000, 600)).unwrap();
    }
    // Spent: the next one is declined until the dongle has been powered long enough.
    assert!(matches!(
        c.delegate(&request(now + 60_000, 600)),
        Err(LinkError::Declined(ErrorCode::RateLimited))
    ));
}

#[test]
fn the_control_socket_speaks_lines() {
    let rig = rig();
    let status = socket::control(&rig.path, "status").unwrap();
    assert!(status.contains("plugged=true"), "{status}");
    assert!(
        socket::control(&rig.path, "fault clone")
            .unwrap()
            .contains("fault=clone")
    );
    assert!(socket::control(&rig.path, "fault melt").is_err());
    assert!(socket::control(&rig.path, "dance").is_err());
}

#[test]
fn selectors_parse() {
    assert_eq!(
        "hid".parse::<Selector>().unwrap(),
        Selector::Hid {
            vid: 0x1209,
            pid: 0x0001,
            serial: None
        }
    );
    assert_eq!(
        "hid:1209:beef:SN 1".parse::<Selector>().unwrap(),
        Selector::Hid {
            vid: 0x1209,
            pid: 0xBEEF,
            serial: Some("SN 1".into())
        }
    );
    assert_eq!(
        "socket:/run/x.sock".parse::<Selector>().unwrap(),
        Selector::Socket("/run/x.sock".into())
    );
    for bad in [
        "",
        "usb",
        "hid:",
        "hid:xyz:1",
        "hid:1209",
        "hid:1209:1:",
        "socket:",
    ] {
        assert!(bad.parse::<Selector>().is_err(), "{bad}");
    }
    let s: Selector = "hid:1209:0001:ABC".parse().unwrap();
    assert_eq!(s.to_string().parse::<Selector>().unwrap(), s);
}

#[test]
fn hidapi_with_no_device_is_no_dongle() {
    // A vendor/product id nothing uses (pid.codes test range end).
    let sel: Selector = "hid:1209:000f".parse().unwrap();
    let err = Client::connect(&sel).unwrap_err();
    assert!(matches!(err, LinkError::Absent), "{err:?}");
}

/// Drives a real dongle: `TETHER_TEST_HID=VID:PID cargo test -p tether-authority -- --ignored`.
#[test]
#[ignore = "needs a real dongle; set TETHER_TEST_HID=VID:PID"]
fn real_hid_dongle_round_trips() {
    let ids = std::env::var("TETHER_TEST_HID").expect("TETHER_TEST_HID=VID:PID");
    let sel: Selector = format!("hid:{ids}").parse().unwrap();
    let mut c = Client::connect(&sel).unwrap();
    let info = c.info().unwrap();
    let nonce = fresh_nonce();
    let sig = c.presence(&nonce).unwrap();
    assert!(info.public_key.verify(&presence_message(&nonce), &sig));
    let req = request(tether_keys::UnixTime::now().secs(), 300);
    let cert = c.delegate(&req).unwrap();
    cert.verify(&info.public_key).unwrap();
    assert_eq!(cert.request, req);
    assert!(cert.counter > info.counter);
}
