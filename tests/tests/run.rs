//! `tether run` around real child processes, against the real emulator and
//! tetherd: the program starts only when licensed, is stopped (or paused) on
//! unplug and runs again on re-plug; signals reach it and its exit code comes
//! back; the token file; no zombie when `tether run` is PID 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_tests::{Proc, Site, bin, http, wait_until};

const T: Duration = Duration::from_secs(10);

/// Polls until `cond` holds; returns how long it took.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// The emulator and tetherd, up and ready.
fn authority(site: &Site) -> (Proc, Proc, String) {
    let emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).unwrap().status == 200
    });
    (emu, d, url)
}

/// `tether run` for service `backend` with `extra` flags around `program`,
/// optionally under a wrapper command.
fn tether_run(site: &Site, url: &str, wrapper: &[&str], extra: &[&str], program: &[&str]) -> Proc {
    let mut cmd = match wrapper.split_first() {
        None => Command::new(bin("tether")),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin("tether"));
            c
        }
    };
    cmd.args(["run", "--service", "backend", "--authority", url])
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--secret-file")
        .arg(site.secret_file("backend"))
        .args(extra)
        .arg("--")
        .args(program)
        .env("TETHER_LOG", "debug");
    Proc::spawn(cmd, "tether run")
}

/// A child that records its pid in `starts` (one line per start), then sleeps.
fn recorder(starts: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "env | grep ^TETHER_ > {}.env; echo $$ >> {}; exec sleep 1000",
            starts.display(),
            starts.display()
        ),
    ]
}

fn pids(starts: &Path) -> Vec<i32> {
    std::fs::read_to_string(starts)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The state letter of a process in /proc (`R`, `S`, `T`, `Z`, ...), or
/// `None` when it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn alive(pid: i32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'T' && s != 'X')
}

#[test]
fn the_program_runs_only_while_licensed_stop_mode() {
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);
    site.dongle(&["unplug"]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).unwrap().status == 503
    });
    let starts = site.path("starts");
    let program = recorder(&starts);
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let run = tether_run(&site, &url, &[], &["--grace", "2s"], &program);

    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        pids(&starts).is_empty(),
        "started while the dongle was unplugged"
    );
    let log = run.log();
    assert!(
        log.lines()
            .any(|l| l.contains("not licensed: waiting") && l.contains("dongle")),
        "the wait is explained: {log}"
    );

    let plugged = Instant::now();
    site.dongle(&["plug"]);
    within(T, "started after plug", || {
        pids(&starts).first().is_some_and(|&p| alive(p))
    });
    eprintln!("program started {:?} after the plug", plugged.elapsed());
    let first = pids(&starts)[0];
    let env = std::fs::read_to_string(site.path("starts.env")).unwrap();
    assert!(env.contains("TETHER_CUSTOMER=E2E Test"), "{env}");
    assert!(env.contains("TETHER_FEATURES=mux"), "{env}");
    assert!(
        env.lines()
            .any(|l| l.starts_with("TETHER_LICENSE_ID=") && l.len() == 18 + 32),
        "{env}"
    );
    let instance = env
        .lines()
        .find_map(|l| l.strip_prefix("TETHER_INSTANCE="))
        .expect("TETHER_INSTANCE");
    assert!(
        tether_verifier::refresh::is_instance_id(instance),
        "{instance}"
    );

    let unplugged = Instant::now();
    site.dongle(&["unplug"]);
    let took = within(
        Duration::from_secs(1),
        "program stopped after unplug",
        || state(first).is_none(),
    );
    eprintln!(
        "unplug -> program stopped and reaped: {:?} (after the unplug command returned: {took:?})",
        unplugged.elapsed()
    );
    assert!(unplugged.elapsed() < Duration::from_secs(1));

    let plugged = Instant::now();
    site.dongle(&["plug"]);
    within(T, "started again after re-plug", || {
        pids(&starts).get(1).is_some_and(|&p| alive(p))
    });
    eprintln!("re-plug -> program running again: {:?}", plugged.elapsed());
    let log = run.log();
    assert!(log.contains("license lost: stopping"), "{log}");
    assert!(log.contains("dongle"), "the reason names the dongle: {log}");
    for (_, secret) in &site.secrets {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
    }
}

#[test]
fn the_program_is_paused_while_unlicensed_pause_mode() {
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);
    let starts = site.path("starts");
    let program = recorder(&starts);
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let _run = tether_run(&site, &url, &[], &["--on-loss", "pause"], &program);
    within(T, "started", || {
        pids(&starts).first().is_some_and(|&p| alive(p))
    });
    let pid = pids(&starts)[0];

    let unplugged = Instant::now();
    site.dongle(&["unplug"]);
    within(Duration::from_secs(1), "paused after unplug", || {
        state(pid) == Some('T')
    });
    eprintln!("unplug -> program in state T: {:?}", unplugged.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(pid), Some('T'), "stays paused while unplugged");

    let plugged = Instant::now();
    site.dongle(&["plug"]);
    within(T, "continued after re-plug", || alive(pid));
    eprintln!(
        "re-plug -> the same process running again: {:?}",
        plugged.elapsed()
    );
    assert_eq!(pids(&starts), vec![pid], "continued, not restarted");
}

#[test]
fn signals_reach_the_program_and_its_exit_code_comes_back() {
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);

    // A program that exits 7 on SIGTERM.
    let ready = site.path("ready");
    let script = format!(
        "trap 'exit 7' TERM; touch {}; while :; do sleep 0.1; done",
        ready.display()
    );
    let mut run = tether_run(&site, &url, &[], &[], &["sh", "-c", &script]);
    within(T, "started", || ready.exists());
    run.signal("TERM");
    assert_eq!(run.wait_exit(T), Some(7), "{}", run.log());
    // The seat is released on exit: tetherd lists no lease any more.
    let log = run.log();
    assert!(log.contains("seat released"), "{log}");
    let status: serde_json::Value = tether_tests::http::get(&url, "/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        status["leases"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );

    // A program that SIGTERM kills: 128 + 15.
    let ready2 = site.path("ready2");
    let script = format!("touch {}; exec sleep 1000", ready2.display());
    let mut run = tether_run(&site, &url, &[], &[], &["sh", "-c", &script]);
    within(T, "started", || ready2.exists());
    run.signal("INT");
    assert_eq!(run.wait_exit(T), Some(128 + 2), "{}", run.log());

    // Its own exit status, when it ends by itself.
    let mut run = tether_run(&site, &url, &[], &[], &["sh", "-c", "exit 3"]);
    assert_eq!(run.wait_exit(T), Some(3), "{}", run.log());

    // A paused program still gets the signal (it is continued to act on it).
    let ready3 = site.path("ready3");
    let script = format!(
        "trap 'exit 9' TERM; touch {}; while :; do sleep 0.1; done",
        ready3.display()
    );
    let mut run = tether_run(
        &site,
        &url,
        &[],
        &["--on-loss", "pause"],
        &["sh", "-c", &script],
    );
    within(T, "started", || ready3.exists());
    site.dongle(&["unplug"]);
    std::thread::sleep(Duration::from_millis(500));
    run.signal("TERM");
    assert_eq!(run.wait_exit(T), Some(9), "{}", run.log());
    site.dongle(&["plug"]);

    // Told to end while waiting for a license: 128 + 15, at once.
    site.dongle(&["unplug"]);
    let mut run = tether_run(&site, &url, &[], &[], &["sh", "-c", "exit 0"]);
    // Logged once its signal handlers are in place.
    within(T, "waiting", || run.log().contains("waiting for a license"));
    run.signal("TERM");
    assert_eq!(run.wait_exit(T), Some(128 + 15), "{}", run.log());
}

#[test]
fn the_token_file_holds_a_verified_token_mode_0600() {
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);
    let token_file = site.path("token");
    let starts = site.path("starts");
    let program = recorder(&starts);
    let mut cmd = Command::new(bin("tether"));
    cmd.args(["run", "--service", "backend", "--authority", &url])
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--token-file")
        .arg(&token_file)
        .arg("--")
        .args(&program)
        // The secret through the environment: it must not reach the program.
        .env("TETHER_SECRET", site.secret("backend"))
        .env("TETHER_LOG", "debug");
    let run = Proc::spawn(cmd, "tether run");
    within(T, "started", || !pids(&starts).is_empty());
    let meta = std::fs::metadata(&token_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let (vendor, _) =
        tether_keys::keyfile::read_public_key::<tether_keys::Vendor>(&site.vendor_pub).unwrap();
    let verifier =
        tether_verifier::Verifier::new(vendor, tether_verifier::Expectations::new("backend"));
    verifier
        .verify_at(&token, None, tether_keys::UnixTime::now())
        .expect("the token file holds a valid token");
    let env = std::fs::read_to_string(site.path("starts.env")).unwrap();
    assert!(
        !env.contains("TETHER_SECRET="),
        "the secret reached the program: {env}"
    );
    assert!(
        env.contains(&format!("TETHER_TOKEN_FILE={}", token_file.display())),
        "{env}"
    );
    let log = run.log();
    assert!(
        !log.contains(site.secret("backend")),
        "the secret in the log"
    );
    assert!(!log.contains(token.as_str()), "the token in the log");

    site.dongle(&["unplug"]);
    within(Duration::from_secs(1), "token file removed", || {
        !token_file.exists()
    });
    site.dongle(&["plug"]);
    within(T, "token file back", || token_file.exists());
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let site = Site::new();
    let out = Command::new(bin("tether"))
        .args([
            "run",
            "--service",
            "backend",
            "--authority",
            "http://127.0.0.1:9",
        ])
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--secret-file")
        .arg(site.secret_file("backend"))
        .args(["--", "/no/such/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/no/such/program: program not found"), "{err}");

    let out = Command::new(bin("tether"))
        .args(["run", "--service", "backend", "--grace", "soon"])
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--secret-file")
        .arg(site.secret_file("backend"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--grace"), "{err}");
}

/// Zombie children of `pid` (processes in state Z whose parent it is).
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (st, ppid) = (f.next(), f.next().and_then(|s| s.parse::<i32>().ok()));
        if st == Some("Z") && ppid == Some(pid) {
            found.push(p);
        }
    }
    found
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn no_zombie_when_tether_run_is_pid_1() {
    let usable = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!(
            "SKIPPED: `unshare --pid --fork --mount-proc --kill-child` is not available here (not root, or no util-linux)"
        );
        return;
    }
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);
    let ready = site.path("ready");
    // Orphans: each `( sleep & )` leaves a sleep whose parent exits at once,
    // so it is re-parented to PID 1, which must reap it when it ends.
    let script = format!(
        "for i in 1 2 3 4 5; do (sleep 0.2 &); done; touch {}; while :; do (sleep 0.05 &); sleep 0.1; done",
        ready.display()
    );
    let run = tether_run(
        &site,
        &url,
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        &[],
        &["sh", "-c", &script],
    );
    within(T, "started", || ready.exists());
    // The process unshare forked: PID 1 of the new namespace.
    within(
        Duration::from_secs(2),
        "tether run in the namespace",
        || !children(run.pid()).is_empty(),
    );
    let pid1 = children(run.pid())[0];
    let ns_pid = std::fs::read_to_string(format!("/proc/{pid1}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|s| s.split_whitespace().last().unwrap().to_string())
        .unwrap();
    assert_eq!(ns_pid, "1", "tether run is PID 1 in its namespace");
    // Orphans come and go for 2 s; a zombie seen twice 500 ms apart was
    // never reaped.
    let mut orphans_seen = 0;
    let end = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < end {
        let before = zombie_children(pid1);
        orphans_seen += children(pid1).len().saturating_sub(1);
        std::thread::sleep(Duration::from_millis(500));
        let after = zombie_children(pid1);
        let stuck: Vec<_> = before.iter().filter(|p| after.contains(p)).collect();
        assert!(stuck.is_empty(), "zombies not reaped: {stuck:?}");
    }
    assert!(
        orphans_seen > 0,
        "no orphan was ever re-parented to tether run"
    );
    eprintln!("orphans seen under PID 1: {orphans_seen}; none left a zombie");
}

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
    let site = Site::new();
    let (_emu, _d, url) = authority(&site);
    let starts = site.path("starts");
    let script = format!(
        "trap '' TERM; echo $$ >> {}; while :; do sleep 0.1; done",
        starts.display()
    );
    let run = tether_run(&site, &url, &[], &["--grace", "1s"], &["sh", "-c", &script]);
    within(T, "started", || {
        pids(&starts).first().is_some_and(|&p| alive(p))
    });
    let pid = pids(&starts)[0];
    let unplugged = Instant::now();
    site.dongle(&["unplug"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(pid),
        "SIGTERM is ignored: still running within the grace"
    );
    within(Duration::from_secs(3), "killed after the grace", || {
        state(pid).is_none()
    });
    let took = unplugged.elapsed();
    eprintln!("unplug -> a program ignoring SIGTERM gone after {took:?} (grace 1 s)");
    assert!(
        took >= Duration::from_secs(1),
        "killed before the grace ran out"
    );
    assert!(run.log().contains("outlived its grace"), "{}", run.log());
}
