//! Faults injected into a running authority and its consumers: every
//! outcome is the documented one, nothing panics, nothing hangs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tether_tests::{Site, wait_for_token, wait_until, works};

use crate::rig::{
    Load, Proxy, T, ctl, healthy, never_issues, reason, replug, status, verifier, wait_status,
};
use crate::summary;

const M: &str = module_path!();

/// The emulator's signature counter, from its control socket.
fn emulator_counter(site: &Site) -> u64 {
    let s = ctl(site, "status");
    s.split_whitespace()
        .find_map(|w| w.strip_prefix("counter="))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {s:?}"))
}

/// The certificate a token carries (its `dcert` claim).
fn dcert_of(token: &str) -> String {
    use base64::Engine as _;
    let claims = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["dcert"].as_str().unwrap().to_string()
}

#[test]
fn unplug_mid_request_under_load_never_yields_a_stale_answer() {
    let _g = summary::test(
        M,
        "unplug_mid_request_under_load_never_yields_a_stale_answer",
    );
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&["--rate-limit", "1000000"]);
    wait_for_token(&url, site.secret("backend"), T);
    let secrets = [
        site.secret("backend").to_string(),
        site.secret("muxer").to_string(),
    ];
    let load = Load::start(&url, &secrets, 4, 1000);
    std::thread::sleep(Duration::from_millis(400));
    let unplugged = Instant::now();
    ctl(&site, "unplug");
    std::thread::sleep(Duration::from_millis(400));
    let seen = load.finish();

    let transport = seen.iter().filter(|s| s.status == 0).count();
    let wrong = crate::rig::unexpected(&seen);
    let first_refusal = seen
        .iter()
        .filter(|s| s.status == 503)
        .map(|s| s.done)
        .min()
        .expect("never refused after the unplug");
    // Once one answer said "absent", no request sent later gets a token.
    let late: Vec<_> = seen
        .iter()
        .filter(|s| s.status == 200 && s.sent > first_refusal)
        .collect();
    // Every token issued verifies, and all come from the one session.
    let v = verifier(&site, "backend");
    let vm = verifier(&site, "muxer");
    let mut certs = BTreeSet::new();
    let mut bad_tokens = 0;
    let served = seen.iter().filter(|s| s.status == 200).count();
    for s in seen.iter().filter(|s| s.status == 200) {
        if !s.verify(&[&v, &vm]) {
            bad_tokens += 1;
        }
        certs.insert(dcert_of(&s.body));
    }
    let latency = first_refusal.saturating_duration_since(unplugged);
    summary::refusal_latency(&[latency]);
    summary::requests(
        M,
        served as u64,
        (transport + wrong.len() + late.len() + bad_tokens) as u64,
    );
    let ok = transport == 0 && wrong.is_empty() && late.is_empty() && bad_tokens == 0;
    summary::fault(
        M,
        "unplug mid-request under load",
        ok,
        &format!(
            "{served} served, {} refused, first refusal {latency:?} after the unplug",
            seen.len() - served
        ),
    );
    assert_eq!(transport, 0, "transport errors");
    assert!(wrong.is_empty(), "unexpected answers: {wrong:?}");
    assert!(late.is_empty(), "{} tokens after a refusal", late.len());
    assert_eq!(bad_tokens, 0);
    assert_eq!(certs.len(), 1, "tokens from more than one session");
    ctl(&site, "plug");
    wait_for_token(&url, site.secret("backend"), T);
    assert!(healthy(&mut d));
}

#[test]
fn unplug_mid_renewal_drops_the_session_and_replug_recovers() {
    let _g = summary::test(
        M,
        "unplug_mid_renewal_drops_the_session_and_replug_recovers",
    );
    let site = Site::new();
    let _emu = site.start_emulator(&["--reach-budget", "0"]);
    // Renewal at half of 30 s.
    let (mut d, url) = site.start_tetherd(&["--cert-lifetime", "30s", "--token-ttl", "5s"]);
    let first = wait_for_token(&url, site.secret("backend"), T);
    let c0 = emulator_counter(&site);
    // Every answer held back 400 ms (inside the timeouts), so the renewal's
    // DELEGATE can be caught signed but not yet delivered.
    ctl(&site, "fault slow:400");
    let end = Instant::now() + Duration::from_secs(30);
    while emulator_counter(&site) == c0 {
        assert!(Instant::now() < end, "no renewal within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    ctl(&site, "unplug");
    let s = wait_status(&url, T, |s| s["dongle"]["state"] == "absent");
    let (code, err) = never_issues(&site, &url, Duration::from_millis(500));
    // The certificate signed but never delivered was not installed.
    let counter_kept = s["dongle"]["counter"].as_u64() == Some(c0);
    ctl(&site, "fault none");
    ctl(&site, "plug");
    let again = wait_for_token(&url, site.secret("backend"), T);
    let fresh =
        dcert_of(again["token"].as_str().unwrap()) != dcert_of(first["token"].as_str().unwrap());
    let after = status(&url)["dongle"]["counter"].as_u64().unwrap();
    let ok = code == 503 && err == "dongle_absent" && counter_kept && fresh && after > c0 + 1;
    summary::fault(
        M,
        "unplug mid-certificate-renewal",
        ok,
        &format!("{} ; counter {c0} -> {after}", reason(&s)),
    );
    assert!(
        ok,
        "{s} counter_kept={counter_kept} fresh={fresh} after={after}"
    );
    assert!(healthy(&mut d));
}

#[test]
fn sigkill_under_load_then_restart_keeps_state_consistent() {
    let _g = summary::test(M, "sigkill_under_load_then_restart_keeps_state_consistent");
    let site = Site::new();
    let _emu = site.start_emulator(&["--reach-budget", "0"]);
    let port = tether_tests::free_port().to_string();
    let args = ["--rate-limit", "1000000"];
    let (mut d, url) = site.start_tetherd_on(&port, &args);
    wait_for_token(&url, site.secret("backend"), T);
    let load = Load::start(&url, &[site.secret("backend").to_string()], 3, 300);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        d.signal("KILL");
        d.wait_exit(T);
        let killed = d
            .child
            .try_wait()
            .unwrap()
            .is_some_and(|s| s.code().is_none());
        // What the disk holds after a crash at an arbitrary moment.
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(site.path("state/state.json")).unwrap())
                .expect("state.json is whole after SIGKILL");
        let seen = state["counters"][&site.serial].as_u64().unwrap();
        let dongle = emulator_counter(&site);
        let stray = std::fs::read_dir(site.path("state"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "state.json")
            .count();
        (d, _) = site.start_tetherd_on(&port, &args);
        wait_for_token(&url, site.secret("backend"), T);
        let ok = killed && seen <= dongle;
        summary::fault(
            M,
            &format!("SIGKILL under load #{}", round + 1),
            ok,
            &format!("state counter {seen} <= dongle {dongle}; {stray} stray files; restarted"),
        );
        assert!(ok, "killed {killed}, state {state}, dongle {dongle}");
    }
    let seen = load.finish();
    let served = seen.iter().filter(|s| s.status == 200).count();
    // While the daemon is down, connections are refused; while it verifies
    // the dongle, 503. Never anything else.
    let wrong: Vec<_> = seen
        .iter()
        .filter(|s| s.status != 200 && s.status != 0 && s.body != "dongle_absent")
        .map(|s| (s.status, s.body.clone()))
        .collect();
    summary::requests(M, served as u64, wrong.len() as u64);
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(served > 0);
    assert!(healthy(&mut d));
}

#[test]
fn an_unwritable_state_dir_fails_closed_and_recovers() {
    let _g = summary::test(M, "an_unwritable_state_dir_fails_closed_and_recovers");
    let site = Site::new();
    let _emu = site.start_emulator(&["--reach-budget", "0"]);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    // The directory replaced by a file: no temporary file can be created
    // there, whoever we run as (root ignores permission bits).
    let dir = site.path("state");
    let away = site.path("state.away");
    std::fs::rename(&dir, &away).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    // A re-plug needs a new counter persisted before the session is trusted.
    replug(&site, &url);
    let s = wait_status(&url, T, |s| {
        s["dongle"]["state"] == "absent" && reason(s).contains("state.json")
    });
    let (code, err) = never_issues(&site, &url, Duration::from_millis(1500));
    let refused = code == 503 && err == "dongle_absent";
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&away, &dir).unwrap();
    wait_for_token(&url, site.secret("backend"), T);
    let ok = refused && healthy(&mut d);
    summary::fault(M, "state directory unwritable", ok, &reason(&s));
    assert!(ok, "{s}");
}

#[test]
fn a_consumer_with_its_authority_unreachable_stops_at_token_expiry() {
    let _g = summary::test(
        M,
        "a_consumer_with_its_authority_unreachable_stops_at_token_expiry",
    );
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, authority) = site.start_tetherd(&["--token-ttl", "4s", "--cert-lifetime", "30s"]);
    let proxy = Proxy::start(&authority);
    let (mut svc, backend) = site.start_service("backend", &proxy.url, &[]);
    wait_until(T, || works(&backend));
    // The authority stops answering (a hung host or a dead network): the
    // consumer works on its token, then stops when it expires.
    proxy.set_black_hole(true);
    let dark = Instant::now();
    let mut last_work = dark;
    let mut dropped = None;
    let mut lic = serde_json::Value::Null;
    while dark.elapsed() < Duration::from_secs(9) {
        if works(&backend) {
            last_work = Instant::now();
        }
        lic = tether_tests::http::get(&backend, "/license", None)
            .unwrap()
            .json()
            .unwrap();
        if lic["licensed"] == false {
            dropped = Some(dark.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let worked_for = last_work - dark;
    // Tokens live 4 s, and the last one was fetched before the outage: both
    // the work and the license state end within the TTL (plus polling).
    let stopped = !works(&backend)
        && lic["reason"].as_str().unwrap_or("").contains("expired")
        && dropped.is_some_and(|d| d <= Duration::from_millis(4500));
    let within_ttl = worked_for <= Duration::from_millis(4500);
    proxy.set_black_hole(false);
    wait_until(Duration::from_secs(25), || works(&backend));
    let ok = stopped && within_ttl && healthy(&mut svc);
    summary::fault(
        M,
        "authority unreachable longer than the TTL",
        ok,
        &format!(
            "worked {worked_for:?} into the outage, unlicensed after {dropped:?}: {}",
            lic["reason"]
        ),
    );
    assert!(ok, "worked for {worked_for:?}, dropped {dropped:?}; {lic}");
}

#[test]
fn clock_steps_on_the_authority_are_judged_against_the_high_water_mark() {
    let _g = summary::test(
        M,
        "clock_steps_on_the_authority_are_judged_against_the_high_water_mark",
    );
    // A step the daemon cannot see happen is simulated by the mark it keeps:
    // a mark ahead of the clock is a clock stepped back since.
    let now = tether_keys::UnixTime::now().secs();
    for (what, mark, issues) in [
        (
            "clock stepped back 2 min (within the 5 min tolerance)",
            now + 120,
            true,
        ),
        ("clock stepped back 1 h", now + 3600, false),
        ("clock stepped forward 30 days", now - 30 * 86_400, true),
    ] {
        let site = Site::new();
        let _emu = site.start_emulator(&[]);
        std::fs::create_dir_all(site.path("state")).unwrap();
        std::fs::write(
            site.path("state/state.json"),
            format!("{{\"clock\": {mark}, \"counters\": {{}}}}"),
        )
        .unwrap();
        let (mut d, url) = site.start_tetherd(&[]);
        let (ok, detail) = if issues {
            wait_for_token(&url, site.secret("backend"), T);
            // The mark only ever rises.
            wait_until(T, || {
                let s: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(site.path("state/state.json")).unwrap())
                        .unwrap();
                s["clock"].as_u64().unwrap() >= mark.max(now)
            });
            (true, "tokens issued; mark kept or raised".to_string())
        } else {
            let s = wait_status(&url, T, |s| reason(s).contains("behind"));
            let (code, _) = never_issues(&site, &url, Duration::from_millis(800));
            (code == 503, reason(&s))
        };
        let ok = ok && healthy(&mut d);
        summary::fault(M, what, ok, &detail);
        assert!(ok, "{what}: {detail}");
    }
}

#[test]
fn a_corrupt_or_unusable_state_stops_the_daemon_at_start() {
    let _g = summary::test(M, "a_corrupt_or_unusable_state_stops_the_daemon_at_start");
    // Refusing to guess the high-water marks is the point: starting afresh
    // would forget the counter a clone must exceed.
    for (what, prepare, want) in [
        (
            "state.json corrupt",
            (|site: &Site| {
                std::fs::create_dir_all(site.path("state")).unwrap();
                std::fs::write(site.path("state/state.json"), b"{\"clock\": 1, \"count").unwrap();
            }) as fn(&Site),
            "corrupt state file",
        ),
        (
            "state directory is a file",
            |site: &Site| std::fs::write(site.path("state"), b"x").unwrap(),
            "state",
        ),
    ] {
        let site = Site::new();
        prepare(&site);
        let port = tether_tests::free_port();
        let mut cmd = std::process::Command::new(tether_tests::bin("tetherd"));
        cmd.arg("--license")
            .arg(&site.license)
            .arg("--vendor-pub")
            .arg(&site.vendor_pub)
            .arg("--credentials")
            .arg(&site.credentials)
            .arg("--dongle")
            .arg(format!("socket:{}", site.dongle_socket().display()))
            .arg("--state-dir")
            .arg(site.path("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("TETHER_CONFIG", "/dev/null");
        let mut p = tether_tests::Proc::spawn(cmd, "tetherd");
        let code = p.wait_exit(T);
        let log = p.log();
        let ok = code == Some(1) && log.contains(want) && !log.contains("panicked");
        summary::fault(M, what, ok, log.lines().last().unwrap_or(""));
        assert!(ok, "{what}: exit {code:?}: {log}");
    }
}

#[test]
fn a_neighbour_holding_connections_or_sending_junk_does_not_stop_issuance() {
    let _g = summary::test(
        M,
        "a_neighbour_holding_connections_or_sending_junk_does_not_stop_issuance",
    );
    use std::io::{Read as _, Write as _};
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let addr = url.trim_start_matches("http://").to_string();
    // 200 connections that start a request and never finish it.
    let held: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /token HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let (code, _) = crate::rig::try_token(&site, &url, "backend");
    let ok = code == 200;
    summary::attack(
        M,
        "200 half-open requests held by a neighbour",
        ok,
        &format!("a token {:?} later", started.elapsed()),
    );
    assert!(ok);
    // Junk on the wire: a 1 MiB header, a request line of binary, a huge nonce.
    let mut junk = Vec::new();
    for req in [
        format!(
            "GET /token HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(1 << 20)
        )
        .into_bytes(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        format!(
            "GET /token?nonce={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            "n".repeat(4096),
            site.secret("backend")
        )
        .into_bytes(),
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let _ = s.write_all(&req);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).to_string();
        junk.push(head);
    }
    let refused = junk.iter().all(|h| !h.contains(" 200"));
    let (code, _) = crate::rig::try_token(&site, &url, "backend");
    let ok = refused && code == 200 && healthy(&mut d);
    summary::attack(
        M,
        "oversized header, binary request line, 4 KiB nonce",
        ok,
        &format!("answers {junk:?}; issuing still"),
    );
    assert!(ok, "{junk:?} then {code}");
    drop(held);
}
