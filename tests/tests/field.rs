//! Faults real sites hit (issue 13), each as a test over the real `tetherd`
//! and emulator processes: a flapping USB link, tetherd restarts, and a
//! clock that ran ahead by mistake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use tether_tests::http;
use tether_tests::{Site, bin, free_port, wait_for_token, wait_until};

const T: Duration = Duration::from_secs(10);

fn status(url: &str) -> serde_json::Value {
    http::get(url, "/status", None).unwrap().json().unwrap()
}

/// Three quick re-plugs used to spend the dongle's DELEGATE bucket and lock
/// the site out for about a minute. With the reach rule (dongle-protocol.md
/// section 6) a genuine dongle that flaps, and a tetherd that restarts, are
/// licensed again at once, every time.
#[test]
fn a_flapping_dongle_and_restarts_never_lock_the_site_out() {
    let site = Site::new();
    // The emulator with the firmware's default rules: nothing relaxed.
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    wait_for_token(&url, site.secret("backend"), T);
    let mut worst = Duration::ZERO;
    let replugs = 12;
    for i in 0..replugs {
        site.dongle(&["unplug"]);
        std::thread::sleep(Duration::from_millis(150));
        site.dongle(&["plug"]);
        let plugged = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        wait_for_token(&url, site.secret("backend"), T);
        worst = worst.max(plugged.elapsed());
        let s = status(&url);
        assert_eq!(s["dongle"]["state"], "present", "re-plug {i}: {s}");
    }
    eprintln!("{replugs} re-plugs in a row: licensed again within {worst:?} of each plug");
    assert!(
        !d.log().contains("rate limited"),
        "the dongle declined a re-plug:\n{}",
        d.log()
    );
    // Restarts (each certifies a new session) do not lock it out either.
    for i in 0..3 {
        d.signal("TERM");
        assert_eq!(d.wait_exit(T), Some(0), "restart {i}");
        (d, _) = site.start_tetherd_on(&port, &[]);
        wait_for_token(&url, site.secret("backend"), T);
    }
    assert!(!d.log().contains("rate limited"), "{}", d.log());
}

/// A clock set an hour ahead by mistake (an ESXi guest resuming with the
/// wrong time): tetherd ran under it and wrote its high-water mark an hour
/// ahead. With the clock right again, tetherd refuses and says which clock
/// to fix and how; after `tether state reset-clock` it issues at once (the
/// dongle itself no longer refuses a window dated back, see section 6).
#[test]
fn a_clock_that_ran_ahead_recovers_with_the_documented_steps() {
    // libfaketime preloaded into tetherd itself (the `faketime` wrapper
    // forks, and signals must reach tetherd); the monotonic clock stays real.
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is needed (scripts/test installs it: apt-get install faketime)"
    );
    let preload = format!("LD_PRELOAD={lib}");
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_under(
        &[
            "env",
            &preload,
            "FAKETIME=+1h",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
        ],
        &port,
        &[],
    );
    wait_until(T, || {
        http::get(&url, "/token", Some(site.secret("backend"))).is_ok_and(|r| r.status == 200)
    });
    site.dongle(&["unplug"]);
    site.dongle(&["plug"]);
    wait_for_token(&url, site.secret("backend"), T);
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));

    // The clock is right again; the mark is an hour ahead.
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    let mut last = serde_json::Value::Null;
    wait_until(T, || {
        last = status(&url);
        last["dongle"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("reset-clock"))
    });
    let reason = last["dongle"]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("behind"), "{reason}");
    assert!(reason.contains("If the system clock is wrong"), "{reason}");
    let refused = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);

    // reset-clock refuses while tetherd holds the state directory...
    let state_dir = site.path("state");
    let out = Command::new(bin("tether"))
        .args(["state", "reset-clock", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    // ...and works once it is stopped.
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    let out = Command::new(bin("tether"))
        .args(["state", "reset-clock", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (d, url) = site.start_tetherd_on(&port, &[]);
    let started = Instant::now();
    wait_for_token(&url, site.secret("backend"), T);
    eprintln!(
        "licensed {:?} after the documented steps",
        started.elapsed()
    );
    assert!(!d.log().contains("rate limited"), "{}", d.log());
}
