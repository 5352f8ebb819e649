//! Load and soak, bounded in time and count: `GET /token` from many clients
//! with zero 5xx while the dongle is present and memory that stays flat; and
//! unplug/replug cycles under load with the refusal latency of each.
//! `TETHER_SOAK_SECS` (default 10; the full run is 60) and
//! `TETHER_SOAK_CYCLES` (default 20; full run 100) lengthen them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_tests::{Site, http, wait_for_token};

use crate::rig::{Load, T, ctl, healthy, rss_kib, verifier};
use crate::summary;

const M: &str = module_path!();

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

#[test]
fn steady_load_gets_no_5xx_and_memory_stays_flat() {
    let _g = summary::test(M, "steady_load_gets_no_5xx_and_memory_stays_flat");
    let secs = env_u64("TETHER_SOAK_SECS", 10).clamp(1, 3600);
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&["--rate-limit", "1000000"]);
    wait_for_token(&url, site.secret("backend"), T);
    let secrets = [
        site.secret("backend").to_string(),
        site.secret("muxer").to_string(),
    ];
    // RSS every 250 ms while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let pid = d.pid();
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let started = Instant::now();
    let load = Load::start(&url, &secrets, 8, 400);
    std::thread::sleep(Duration::from_secs(secs));
    let seen = load.finish();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.join().unwrap();

    let served = seen.iter().filter(|s| s.status == 200).count();
    let failed: Vec<_> = seen
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| (s.status, s.body.clone()))
        .collect();
    let five_xx = failed.iter().filter(|(st, _)| *st >= 500).count();
    // A sample of what was issued verifies down to the vendor key.
    let (vb, vm) = (verifier(&site, "backend"), verifier(&site, "muxer"));
    let unverified = seen
        .iter()
        .filter(|s| s.status == 200)
        .step_by(250)
        .filter(|s| !s.verify(&[&vb, &vm]))
        .count();
    // Flat memory: after a warm-up fifth, the last third grows at most 10%
    // (and 8 MiB of allocator slack) over the first third.
    let warm = &rss[rss.len() / 5..];
    let third = (warm.len() / 3).max(1);
    let early = *warm[..third].iter().max().unwrap_or(&0);
    let late = *warm[warm.len() - third..].iter().max().unwrap_or(&0);
    let flat = late <= early + early / 10 + 8 * 1024;
    summary::requests(M, served as u64, failed.len() as u64 + unverified as u64);
    eprintln!(
        "ADV soak: {served} tokens in {took:.1?} ({:.0}/s), {} failed, RSS {early} -> {late} KiB ({} samples)",
        served as f64 / took.as_secs_f64(),
        failed.len(),
        rss.len()
    );
    assert_eq!(five_xx, 0, "5xx while the dongle was present: {failed:?}");
    assert!(
        failed.is_empty(),
        "failed requests: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(unverified, 0);
    assert!(
        served as u64 >= secs * 50,
        "only {served} tokens in {secs} s"
    );
    assert!(rss.len() >= 4, "too few RSS samples");
    assert!(flat, "RSS grew from {early} KiB to {late} KiB: {rss:?}");
    assert!(healthy(&mut d));
}

#[test]
fn unplug_replug_cycles_under_load() {
    let _g = summary::test(M, "unplug_replug_cycles_under_load");
    let cycles = env_u64("TETHER_SOAK_CYCLES", 20).clamp(1, 10_000);
    let site = Site::new();
    // Every plug certifies a new session key: no DELEGATE rate limit here.
    let _emu = site.start_emulator(&["--reach-budget", "0"]);
    let (mut d, url) = site.start_tetherd(&["--rate-limit", "1000000"]);
    let first = wait_for_token(&url, site.secret("backend"), T);
    let mut kids = BTreeSet::from([kid_of(first["token"].as_str().unwrap())]);
    let secrets = [
        site.secret("backend").to_string(),
        site.secret("muxer").to_string(),
    ];
    let load = Load::start(&url, &secrets, 4, 200);
    let mut latencies = Vec::new();
    let mut survived = 0;
    for _ in 0..cycles {
        std::thread::sleep(Duration::from_millis(100));
        let unplugged = Instant::now();
        ctl(&site, "unplug");
        // How long until this client is refused.
        let latency = loop {
            let r = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
            if r.status == 503 {
                break unplugged.elapsed();
            }
            assert_eq!(r.status, 200);
            assert!(
                unplugged.elapsed() < T,
                "still issuing {T:?} after the unplug"
            );
        };
        latencies.push(latency);
        ctl(&site, "plug");
        let again = wait_for_token(&url, site.secret("backend"), T);
        // Each plug brings a session key never seen before.
        if kids.insert(kid_of(again["token"].as_str().unwrap())) {
            survived += 1;
        }
    }
    let seen = load.finish();
    let served = seen.iter().filter(|s| s.status == 200).count();
    let wrong = crate::rig::unexpected(&seen);
    summary::requests(M, served as u64, wrong.len() as u64);
    summary::refusal_latency(&latencies);
    for (i, l) in latencies.iter().enumerate() {
        eprintln!("ADV cycle {i}: refused {l:?} after unplug");
    }
    summary::fault(
        M,
        &format!("{cycles} unplug/replug cycles under load"),
        survived == cycles && wrong.is_empty(),
        &format!("{survived} fresh sessions, {served} tokens served under load"),
    );
    assert!(wrong.is_empty(), "{:?}", &wrong[..wrong.len().min(5)]);
    assert_eq!(survived, cycles, "a re-plug reused a session key");
    assert!(healthy(&mut d));
}
