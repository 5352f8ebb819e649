//! A dongle that lies, or is not the licensed one, against the real
//! `tetherd` (through the emulator's fault modes and second emulators).
//! None of them yields a token, `/status` says why, and the daemon lives on.
//! (The clone fault and the counter rollback fault are tried in
//! `tests/tests/authority.rs`.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_keys::keyfile::{self, Overwrite, SERIAL_HEADER};
use tether_keys::{Dongle, SecretKey};
use tether_tests::{Proc, Site, bin, wait_for_token, wait_until};

use crate::rig::{T, ctl, healthy, never_issues, reason, replug, status, try_token, wait_status};
use crate::summary;

const M: &str = module_path!();

/// Emulator flags for tests that re-verify often: no DELEGATE rate limit.
const NO_LIMIT: &[&str] = &["--reach-budget", "0"];

/// Waits until the dongle was refused (not merely lost) and the reason
/// contains `want`; then checks no token comes for a while. Records it.
fn refused(site: &Site, url: &str, what: &str, want: &str) -> serde_json::Value {
    let s = wait_status(url, T, |s| {
        s["dongle"]["refused_dongles"].as_u64().unwrap_or(0) > 0 && reason(s).contains(want)
    });
    let (code, err) = never_issues(site, url, Duration::from_millis(600));
    let ok = code == 503 && err == "dongle_absent" && s["dongle"]["state"] != "present";
    summary::attack(M, what, ok, &reason(&s));
    assert!(ok, "{what}: {code} {err} {s}");
    s
}

/// Starts an emulator on the site's socket with another identity directory.
fn emulator_with(site: &Site, identity: &Path, extra: &[&str]) -> Proc {
    let sock = site.dongle_socket();
    let mut cmd = Command::new(bin("tether"));
    cmd.args(["dongle", "emulate", "--identity"])
        .arg(identity)
        .arg("--socket")
        .arg(&sock)
        .args(extra);
    let p = Proc::spawn(cmd, "emulator-2");
    wait_until(T, || {
        tether_emulator::socket::control(&sock, "status").is_ok()
    });
    p
}

#[test]
fn a_replayed_delegation_is_refused() {
    let _g = summary::test(M, "a_replayed_delegation_is_refused");
    let site = Site::new();
    let _emu = site.start_emulator(NO_LIMIT);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    // The dongle (or a man in the middle on the USB link) answers the next
    // DELEGATE with the certificate it signed before.
    ctl(&site, "fault replay");
    replug(&site, &url);
    refused(&site, &url, "replayed old DELEGATE answer", "replayed");
    ctl(&site, "fault none");
    wait_for_token(&url, site.secret("backend"), T);
    assert!(healthy(&mut d));
}

#[test]
fn answers_to_another_nonce_are_refused() {
    let _g = summary::test(M, "answers_to_another_nonce_are_refused");
    let site = Site::new();
    let _emu = site.start_emulator(&["--fault", "wrong-nonce", "--reach-budget", "0"]);
    let (mut d, url) = site.start_tetherd(&[]);
    refused(
        &site,
        &url,
        "DELEGATE signed over another nonce",
        "another request",
    );
    ctl(&site, "fault none");
    wait_for_token(&url, site.secret("backend"), T);
    // Present, then the heartbeat's PRESENCE is answered for another nonce.
    let before = status(&url)["dongle"]["refused_dongles"].as_u64().unwrap();
    ctl(&site, "fault wrong-nonce");
    // The refusal's reason is soon replaced by the next verification's
    // (the DELEGATE is answered for another nonce too): the log keeps it.
    let s = wait_status(&url, T, |s| {
        s["dongle"]["refused_dongles"].as_u64().unwrap() > before
    });
    wait_until(T, || d.log().contains("presence signature does not verify"));
    let (code, _) = try_token(&site, &url, "backend");
    let ok = code == 503 && s["dongle"]["state"] != "present";
    summary::attack(M, "PRESENCE signed over another nonce", ok, &reason(&s));
    assert!(ok);
    assert!(healthy(&mut d));
}

#[test]
fn a_presence_signature_offered_as_a_delegation_is_refused() {
    let _g = summary::test(M, "a_presence_signature_offered_as_a_delegation_is_refused");
    let site = Site::new();
    let _emu = site.start_emulator(&["--fault", "presence-as-delegate", "--reach-budget", "0"]);
    let (mut d, url) = site.start_tetherd(&[]);
    refused(
        &site,
        &url,
        "presence signature offered as a delegation",
        "delegation signature does not verify",
    );
    ctl(&site, "fault none");
    wait_for_token(&url, site.secret("backend"), T);
    assert!(healthy(&mut d));
}

#[test]
fn a_second_dongle_with_the_same_serial_is_refused() {
    let _g = summary::test(M, "a_second_dongle_with_the_same_serial_is_refused");
    let site = Site::new();
    let emu = site.start_emulator(NO_LIMIT);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    // Two re-plugs, so the authority has seen counter 3.
    for _ in 0..2 {
        replug(&site, &url);
        wait_for_token(&url, site.secret("backend"), T);
    }
    assert!(status(&url)["dongle"]["counter"].as_u64().unwrap() >= 3);
    drop(emu);

    // Another device made with the licensed serial, but its own key.
    let other = site.path("other-dongle");
    std::fs::create_dir_all(&other).unwrap();
    keyfile::write_secret_key(
        &other.join("dongle.key"),
        &SecretKey::<Dongle>::generate(),
        &[(SERIAL_HEADER, &site.serial)],
        Overwrite::Never,
    )
    .unwrap();
    let second = emulator_with(&site, &other, NO_LIMIT);
    refused(
        &site,
        &url,
        "second dongle, same serial, its own key",
        "the license names",
    );
    drop(second);

    // The licensed key itself copied into a second device, whose counter
    // starts again from 0 (or from an old backup).
    let before = status(&url)["dongle"]["refused_dongles"].as_u64().unwrap();
    let state = site.path("second.state");
    let state_arg = state.to_str().unwrap();
    let third = emulator_with(
        &site,
        &site.identity,
        &["--state", state_arg, "--reach-budget", "0"],
    );
    let s = wait_status(&url, T, |s| {
        s["dongle"]["refused_dongles"].as_u64().unwrap() > before && reason(s).contains("counter")
    });
    let (code, _) = try_token(&site, &url, "backend");
    let ok = code == 503;
    summary::attack(
        M,
        "second dongle, same serial, copied key, own counter",
        ok,
        &reason(&s),
    );
    assert!(ok, "{s}");
    drop(third);
    assert!(healthy(&mut d));
}

#[test]
fn garbage_oversized_frames_and_silence_stop_issuance_and_are_survived() {
    let _g = summary::test(
        M,
        "garbage_oversized_frames_and_silence_stop_issuance_and_are_survived",
    );
    let site = Site::new();
    let _emu = site.start_emulator(NO_LIMIT);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    for (fault, want) in [
        ("garbage", "dongle lost: "),
        ("oversized", "exceeds the maximum (1024"),
        ("silent", "did not answer in time"),
    ] {
        let injected = Instant::now();
        ctl(&site, &format!("fault {fault}"));
        let s = wait_status(&url, T, |s| {
            s["dongle"]["state"] != "present" && reason(s).contains(want)
        });
        let took = injected.elapsed();
        let (code, err) = never_issues(&site, &url, Duration::from_millis(400));
        let rejected = code == 503 && err == "dongle_absent";
        summary::attack(
            M,
            &format!("dongle answering {fault}"),
            rejected,
            &format!("{} (after {took:?})", reason(&s)),
        );
        assert!(rejected, "{fault}: {s}");
        // Healthy again: the daemon picks the dongle up by itself.
        ctl(&site, "fault none");
        wait_for_token(&url, site.secret("backend"), T);
        let alive = healthy(&mut d);
        summary::fault(M, &format!("dongle answering {fault}"), alive, "recovered");
        assert!(alive, "{}", d.log());
    }
    // A slow dongle within the timeouts is not a missing one.
    ctl(&site, "fault slow:300");
    let end = Instant::now() + Duration::from_secs(2);
    let mut refused = 0;
    while Instant::now() < end {
        if try_token(&site, &url, "backend").0 != 200 {
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ctl(&site, "fault none");
    summary::fault(
        M,
        "dongle answering 300 ms late",
        refused == 0,
        &format!("{refused} refusals"),
    );
    assert_eq!(refused, 0, "a slow dongle made tokens fail");
}
