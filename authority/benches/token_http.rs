//! `GET /token` under load, next to two endpoints of the same server built
//! only for this benchmark: a trivial one, and one that returns one raw
//! Ed25519 signature over a payload of the token's size (the ceiling for one
//! signature per token), and `GET /token` with seat accounting on (1,000
//! instances cycling over a 1,000-seat service). Then unplug -> first
//! refused request, over 100 unplugs, resident memory at load, and the lease
//! table's memory for 100,000 instances.
//!
//! `cargo bench -p tether-authority --bench token_http` (needs `wrk`:
//! `apt-get install wrk`). Load: wrk, 1 thread, 64 connections, loopback.
//! Every `/token` row runs with the usage ledger on (a token waits for the
//! group commit of its count); "no ledger" is the same server without it.
//! Targets: token throughput >= 85% of the one-signature endpoint (>= 80%
//! with the usage ledger on);
//! unplug-to-refusal p99 < 50 ms; resident memory < 20 MiB at load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use tether_authority::{Config, Listen, config, http, presence};
use tether_dongle as dongle;
use tether_emulator::{Device, Rules, SocketEmulator};
use tether_keys::keyfile::{self, Overwrite};
use tether_keys::{CredentialFile, Dongle, LicenseId, LicenseTerms, SecretKey, Vendor};
use tokio_util::sync::CancellationToken;
use warp::Filter as _;

const SERIAL: &str = "TD-BENCH";

#[derive(Debug, Default)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non2xx: u64,
}

fn parse_ms(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        _ => f64::NAN,
    }
}

/// Mean req/s over rounds, worst p50/p99, all non-2xx answers.
fn combine(rounds: &[Wrk]) -> Wrk {
    let worst = |f: fn(&Wrk) -> f64| rounds.iter().map(f).fold(f64::NAN, f64::max);
    Wrk {
        rps: rounds.iter().map(|w| w.rps).sum::<f64>() / rounds.len() as f64,
        p50_ms: worst(|w| w.p50_ms),
        p99_ms: worst(|w| w.p99_ms),
        non2xx: rounds.iter().map(|w| w.non2xx).sum(),
    }
}

fn wrk(url: &str, header: Option<&str>, secs: u32) -> Wrk {
    wrk_script(url, header, secs, None)
}

fn wrk_script(url: &str, header: Option<&str>, secs: u32, script: Option<&Path>) -> Wrk {
    wrk_with(url, header, secs, script, 64)
}

fn wrk_with(
    url: &str,
    header: Option<&str>,
    secs: u32,
    script: Option<&Path>,
    connections: u32,
) -> Wrk {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut w = Wrk {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non2xx: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("Requests/sec:"), Some(v)) => w.rps = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => w.p50_ms = parse_ms(v),
            (Some("99%"), Some(v)) => w.p99_ms = parse_ms(v),
            (Some("Non-2xx"), _) => {
                w.non2xx = line.rsplit(' ').next().unwrap().parse().unwrap_or(0);
            }
            _ => {}
        }
    }
    w
}

fn get_status(addr: SocketAddr, path: &str, bearer: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn provision(dir: &Path, nonce_period: u32) -> (Config, SecretKey<Dongle>, String, String) {
    let vendor = SecretKey::<Vendor>::generate();
    let dongle_key = SecretKey::<Dongle>::generate();
    keyfile::write_public_key(
        &dir.join("vendor.pub"),
        &vendor.public(),
        &[],
        Overwrite::Never,
    )
    .unwrap();
    let now = tether_keys::UnixTime::now();
    let license = LicenseTerms {
        id: LicenseId::generate(),
        customer: "Bench".into(),
        dongle_serial: SERIAL.into(),
        dongle: dongle_key.public().into(),
        issued_at: now,
        not_before: now - std::time::Duration::from_secs(60),
        not_after: now + std::time::Duration::from_secs(86_400),
        max_token_ttl: 300,
        features: vec!["mux".into()],
        services: vec!["backend".into(), "seated".into()],
        seats: [("seated".to_string(), 1000)].into(),
        sequence: 1,
        grace: 0,
        nonce_period,
    }
    .sign(&vendor)
    .unwrap();
    keyfile::write_file(
        &dir.join("license.tether"),
        keyfile::license_pem(&license).as_bytes(),
        0o644,
        Overwrite::Never,
    )
    .unwrap();
    let mut creds = CredentialFile::default();
    let secret = creds.enroll("backend", false).unwrap().expose().to_string();
    let seated = creds.enroll("seated", false).unwrap().expose().to_string();
    creds.save(&dir.join("credentials")).unwrap();
    let config = Config {
        license: dir.join("license.tether"),
        vendor_pub: dir.join("vendor.pub"),
        dongle: config::DongleChoice::Native(dongle::Selector::Socket(dir.join("dongle.sock"))),
        listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
        credentials: dir.join("credentials"),
        token_ttl: Duration::from_secs(60),
        heartbeat: Duration::from_millis(250),
        cert_lifetime: Duration::from_secs(300),
        state_dir: dir.join("state"),
        rate_limit: 100_000_000,
        clock_tolerance: Duration::from_secs(300),
        log_json: false,
        admin_listen: None,
        admin_listen_default: false,
        admin_hosts: Vec::new(),
        expiry_warnings: Vec::new(),
        ledger_segment_size: tether_authority::ledger::DEFAULT_SEGMENT_BYTES,
    };
    let _ = config::DEFAULT_CONFIG;
    (config, dongle_key, secret, seated)
}

struct Served {
    auth: Arc<tether_authority::Authority>,
    addr: SocketAddr,
    base: String,
    secret: String,
    seated: String,
    emu: SocketEmulator,
    stop: CancellationToken,
    watchdog: std::thread::JoinHandle<()>,
}

/// An authority, its emulated dongle and watchdog, served with `extra`
/// routes on a loopback port of `runtime`; ready to issue.
fn serve(runtime: &tokio::runtime::Runtime, dir: &Path, nonce_period: u32) -> Served {
    serve_with(runtime, dir, nonce_period, true)
}

/// `tether_authority::load` without the usage ledger: the same checks and
/// settings, for the "ledger off" comparison only (tetherd has no such switch).
fn load_without_ledger(config: &Config) -> Arc<tether_authority::Authority> {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&config.vendor_pub).unwrap();
    let license = keyfile::read_license(&config.license).unwrap();
    license.verify(&vendor).unwrap();
    let store = tether_authority::state::StateStore::open(&config.state_dir).unwrap();
    let credentials = CredentialFile::load(&config.credentials, false).unwrap();
    let settings = tether_authority::authority::IssueSettings {
        token_ttl: config.token_ttl,
        clock_tolerance: config.clock_tolerance,
        rate_limit: config.rate_limit,
    };
    Arc::new(tether_authority::Authority::new(
        license,
        credentials,
        settings,
        store,
    ))
}

fn serve_with(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    nonce_period: u32,
    ledger: bool,
) -> Served {
    std::fs::create_dir_all(dir).unwrap();
    let (config, dongle_key, secret, seated) = provision(dir, nonce_period);
    // No rate limit on the emulated dongle: the benchmark re-plugs it 100 times.
    let rules = Rules {
        reach_budget: Duration::ZERO,
        ..Rules::default()
    };
    let emu = SocketEmulator::spawn(
        Device::new(dongle_key, SERIAL, rules),
        &dir.join("dongle.sock"),
    )
    .unwrap();
    let auth = if ledger {
        tether_authority::load(&config).unwrap()
    } else {
        load_without_ledger(&config)
    };
    let stop = CancellationToken::new();
    let watchdog = {
        // The watchdog follows the token through a task on this runtime.
        let _context = runtime.enter();
        presence::spawn(
            auth.clone(),
            presence::WatchSettings {
                driver: presence::driver(&auth, &config.dongle),
                heartbeat: config.heartbeat,
                cert_lifetime: config.cert_lifetime,
            },
            &stop,
        )
        .unwrap()
    };
    let routes = http::filters::routes(auth.clone(), CancellationToken::new());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(warp::serve(routes).incoming(listener).run());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !auth.is_present() {
        assert!(Instant::now() < deadline, "authority never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Served {
        auth,
        addr,
        base: format!("http://{addr}"),
        secret,
        seated,
        emu,
        stop,
        watchdog,
    }
}

/// What the ledger costs on disk: its records as measured in `dir` (the
/// plain server's, after the load), and a day at 10 services x 100
/// instances refreshing every 30 s with a certificate every 150 s.
fn ledger_figures(dir: &Path) {
    use tether_keys::ledger::{Event, FRAME_OVERHEAD, TokenMinute};
    let records = tether_authority::ledger::read_all(dir).unwrap();
    let bytes: u64 = tether_authority::ledger::segments(dir)
        .unwrap()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let size = |kind: &str| {
        let sizes: Vec<usize> = records
            .iter()
            .filter(|(r, _)| r.event.name() == kind)
            .map(|(r, _)| r.encode().len() + FRAME_OVERHEAD)
            .collect();
        (
            sizes.iter().sum::<usize>() / sizes.len().max(1),
            sizes.len(),
        )
    };
    let (cert, _) = size("certificate");
    let (checkpoint, _) = size("checkpoint");
    let (lease, _) = size("lease_acquired");
    println!(
        "  usage ledger after the load: {} records in {bytes} bytes ({} bytes a record on average; certificate {cert}, checkpoint {checkpoint}, lease {lease})",
        records.len(),
        bytes / records.len().max(1) as u64
    );
    let minute = tether_keys::ledger::Record {
        sequence: 1,
        time: tether_keys::UnixTime::now(),
        prev: [0; 32],
        event: Event::TokenMinute(TokenMinute {
            service: "service-0".into(),
            minute: 0,
            issued: 200,
            instances: 100,
            refused: Default::default(),
        }),
    };
    let minute_bytes = minute.encode().len() + FRAME_OVERHEAD;
    // Per day: one token-minute record per service per minute, a
    // certificate and a checkpoint every 150 s (half of a 5 min
    // certificate), and each of the 1,000 instances taking a seat once.
    let per_day = 10 * 1440 * minute_bytes + (86_400 / 150) * (cert + checkpoint) + 1000 * lease;
    let per_token = 1000 * 2 * 1440;
    println!(
        "  10 services x 100 instances every 30 s ({per_token} tokens a day): {minute_bytes} bytes a token-minute record, {:.2} MB a day ({:.2} bytes a token)",
        per_day as f64 / 1e6,
        per_day as f64 / per_token as f64
    );
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("token_http: skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cycle = dir.path().join("instances.lua");
    std::fs::write(
        &cycle,
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  \
         return wrk.format(\"GET\", \"/token?instance=i\" .. (counter % 1000))\nend\n",
    )
    .unwrap();
    // 1,000 instances, each with a new nonce every 5,000 requests (all of
    // them rotate four times a second or so, far more often than F/2).
    let rotating = dir.path().join("rotating.lua");
    std::fs::write(
        &rotating,
        "counter = 0\nrequest = function()\n  counter = counter + 1\n  \
         local i = counter % 1000\n  \
         return wrk.format(\"GET\", \"/token?instance=i\" .. i .. \"&nonce=n\" .. i .. \"r\" .. math.floor(counter / 5000))\nend\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench_key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    // The ceiling signs as many bytes as a real token's signing input
    // (measured once a token exists, below).
    let payload: Arc<std::sync::OnceLock<Vec<u8>>> = Arc::default();
    let ceiling_payload = payload.clone();
    // And as many as a token under freshness (its proof makes it longer).
    let fresh_payload: Arc<std::sync::OnceLock<Vec<u8>>> = Arc::default();
    let fresh_ceiling_payload = fresh_payload.clone();
    let fresh_key = bench_key.clone();
    let trivial = warp::path!("bench" / "trivial").map(|| "ok");
    let sign = warp::path!("bench" / "sign").map(move || {
        let sig = bench_key.sign(ceiling_payload.get().map_or(&[][..], |p| &p[..]));
        warp::reply::json(&serde_json::json!({ "sig": URL_SAFE_NO_PAD.encode(sig.to_bytes()) }))
    });
    let sign_fresh = warp::path!("bench" / "sign-fresh").map(move || {
        let sig = fresh_key.sign(fresh_ceiling_payload.get().map_or(&[][..], |p| &p[..]));
        warp::reply::json(&serde_json::json!({ "sig": URL_SAFE_NO_PAD.encode(sig.to_bytes()) }))
    });
    let Served {
        auth,
        addr,
        base,
        secret,
        seated,
        emu,
        stop,
        watchdog: _watchdog,
    } = serve(&runtime, &dir.path().join("plain"), 0);
    // The same server under a license with freshness (nonce period 1 min).
    let fresh = serve(&runtime, &dir.path().join("fresh"), 60);
    // The plain server once more, without the usage ledger (for its cost).
    let unledgered = serve_with(&runtime, &dir.path().join("unledgered"), 0, false);
    // The two reference endpoints, on their own listener of the same runtime.
    let bench_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let bench_base = format!("http://{}", bench_listener.local_addr().unwrap());
    runtime.spawn(
        warp::serve(trivial.or(sign).or(sign_fresh))
            .incoming(bench_listener)
            .run(),
    );
    // The admin page of the plain server, and an operator's browser on it:
    // its event stream held open and /admin/status.json every 2 s (what
    // the page's script does), switched on for the "page open" rounds.
    let admin_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let admin_addr = admin_listener.local_addr().unwrap();
    let page = tether_authority::admin::Admin::new(
        auth.clone(),
        admin_addr,
        &[],
        CancellationToken::new(),
    );
    runtime.spawn(tether_authority::admin::serve(page, admin_listener));
    let viewing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _viewer = {
        let viewing = viewing.clone();
        std::thread::spawn(move || {
            let host = format!("Host: {admin_addr}\r\n");
            let mut stream = TcpStream::connect(admin_addr).unwrap();
            stream
                .write_all(format!("GET /admin/events HTTP/1.1\r\n{host}\r\n").as_bytes())
                .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let mut last_poll = Instant::now();
            loop {
                let _ = stream.read(&mut buf);
                if viewing.load(std::sync::atomic::Ordering::Relaxed)
                    && last_poll.elapsed() >= Duration::from_secs(2)
                {
                    last_poll = Instant::now();
                    if let Ok(mut s) = TcpStream::connect(admin_addr) {
                        let _ = s.write_all(
                            format!(
                                "GET /admin/status.json HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        );
                        let _ = s.read_to_end(&mut Vec::new());
                    }
                }
            }
        })
    };
    let token = auth.issue(Some(&secret), None).unwrap().token;
    let signed_len = token.rfind('.').unwrap();
    payload.set(vec![b'x'; signed_len]).unwrap();
    println!(
        "token of {} bytes ({signed_len} signed); the ceiling signs as many",
        token.len()
    );
    let bearer = format!("Authorization: Bearer {secret}");
    // Rounds of 2 s per endpoint, interleaved, so a neighbour's load falls on
    // all three alike; req/s is the mean over rounds, latency the worst round.
    let (rounds, secs) = (3, 2);
    let seated_bearer = format!("Authorization: Bearer {seated}");
    // Warm-up, not measured: each of the 1,000 instances takes its seat
    // once (a write of state.json each); the rounds then measure the steady
    // state, renewals.
    let _ = wrk_script(
        &format!("{base}/token"),
        Some(&seated_bearer),
        1,
        Some(&cycle),
    );
    // Warm-up of the fresh server, not measured: all 1,000 instances start
    // at once (a restart storm, in-process), their first nonces wait for a
    // certificate together; then the rounds rotate nonces, which ride the
    // older leaves until the next certificate.
    let fresh_bearer = format!("Authorization: Bearer {}", fresh.seated);
    let ask = |i: usize| {
        fresh
            .auth
            .issue_for(&tether_authority::authority::TokenRequest {
                bearer: Some(&fresh.seated),
                instance: Some(&format!("i{i}")),
                nonce: Some(&format!("n{i}r0")),
                ..Default::default()
            })
            .is_ok()
    };
    let storm: usize = (0..1000).map(|i| usize::from(ask(i))).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..1000).any(|i| !ask(i)) {
        assert!(Instant::now() < deadline, "the storm was never certified");
        std::thread::sleep(Duration::from_millis(50));
    }
    let fresh_token = fresh
        .auth
        .issue_for(&tether_authority::authority::TokenRequest {
            bearer: Some(&fresh.seated),
            instance: Some("i0"),
            nonce: Some("n0r0"),
            ..Default::default()
        })
        .unwrap()
        .token;
    let fresh_signed = fresh_token.rfind('.').unwrap();
    fresh_payload.set(vec![b'x'; fresh_signed]).unwrap();
    println!(
        "  a token under freshness is {} bytes ({fresh_signed} signed, its proof for 1,000 leaves included); its ceiling signs as many",
        fresh_token.len()
    );
    println!(
        "  freshness warm-up: 1,000 new instances at once ({storm} served at once), all certified in {} DELEGATEs",
        fresh.auth.metrics.certificates() - 1
    );
    let certs_before = fresh.auth.metrics.certificates();
    let fresh_started = Instant::now();
    let mut runs: [Vec<Wrk>; 8] = Default::default();
    let unledgered_bearer = format!("Authorization: Bearer {}", unledgered.secret);
    for _ in 0..rounds {
        runs[7].push(wrk(
            &format!("{}/token", unledgered.base),
            Some(&unledgered_bearer),
            secs,
        ));
        viewing.store(true, std::sync::atomic::Ordering::Relaxed);
        runs[6].push(wrk(&format!("{base}/token"), Some(&bearer), secs));
        viewing.store(false, std::sync::atomic::Ordering::Relaxed);
        runs[5].push(wrk(&format!("{bench_base}/bench/sign-fresh"), None, secs));
        runs[4].push(wrk_script(
            &format!("{}/token", fresh.base),
            Some(&fresh_bearer),
            secs,
            Some(&rotating),
        ));
        runs[0].push(wrk(&format!("{bench_base}/bench/trivial"), None, secs));
        runs[1].push(wrk(&format!("{bench_base}/bench/sign"), None, secs));
        runs[2].push(wrk(&format!("{base}/token"), Some(&bearer), secs));
        runs[3].push(wrk_script(
            &format!("{base}/token"),
            Some(&seated_bearer),
            secs,
            Some(&cycle),
        ));
    }
    let fresh_elapsed = fresh_started.elapsed();
    let fresh_certs = fresh.auth.metrics.certificates() - certs_before;
    let [t, s, k, q, f, sf, a, off] = runs.map(|r| combine(&r));
    let hwm = rss_kib("VmHWM:");
    let rss = rss_kib("VmRSS:");
    println!(
        "GET over loopback, wrk -t1 -c64, {rounds} interleaved rounds of {secs}s per endpoint, server on 2 worker threads, one run:"
    );
    println!("  endpoint            req/s     p50 ms   p99 ms   non-2xx");
    for (name, w) in [
        ("trivial", &t),
        ("one signature", &s),
        ("one sig. (fresh)", &sf),
        ("GET /token", &k),
        ("/token, no ledger", &off),
        ("/token, admin open", &a),
        ("/token + seats", &q),
        ("/token + fresh", &f),
    ] {
        println!(
            "  {name:<16} {:>9.0} {:>9.2} {:>8.2} {:>9}",
            w.rps, w.p50_ms, w.p99_ms, w.non2xx
        );
    }
    println!(
        "  /token vs one signature: {:.1}%  (target >= 85%);  vs trivial: {:.1}%",
        100.0 * k.rps / s.rps,
        100.0 * k.rps / t.rps
    );
    println!(
        "  /token with the usage ledger on (every /token row but \"no ledger\") vs one signature: {:.1}%  (target >= 80%);  vs the ledger off: {:.1}%",
        100.0 * k.rps / s.rps,
        100.0 * k.rps / off.rps
    );
    ledger_figures(&dir.path().join("plain/state/ledger"));
    unledgered.stop.cancel();
    println!(
        "  /token with the admin page open and streaming vs without: {:.1}%",
        100.0 * a.rps / k.rps
    );
    println!(
        "  /token with seat accounting (1,000 instances cycling, 1,000 seats) vs one signature: {:.1}%  (target >= 85%)",
        100.0 * q.rps / s.rps
    );
    println!(
        "  /token with freshness (1,000 instances rotating nonces, F = 60 s) vs one signature over a token of its size: {:.1}%  (target >= 80%); vs the plain token's: {:.1}%",
        100.0 * f.rps / sf.rps,
        100.0 * f.rps / s.rps
    );
    println!(
        "  DELEGATEs at steady state with 1,000 instances rotating: {fresh_certs} in {:.0} s ({:.0} an hour; F/8 = 7.5 s between early certificates, plus one per half certificate lifetime)",
        fresh_elapsed.as_secs_f64(),
        fresh_certs as f64 * 3600.0 / fresh_elapsed.as_secs_f64()
    );
    fresh.stop.cancel();
    println!(
        "  resident memory after load: {:.1} MiB (peak {:.1} MiB; whole bench process incl. emulator) (target < 20 MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    // Unplug -> first refused GET /token, 100 times.
    let mut lat = Vec::with_capacity(100);
    for _ in 0..100 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get_status(addr, "/token", &secret) != 200 {
            assert!(Instant::now() < deadline, "not re-verified after plug");
            std::thread::sleep(Duration::from_millis(2));
        }
        let t0 = Instant::now();
        emu.unplug();
        while get_status(addr, "/token", &secret) == 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "still issuing after unplug"
            );
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        emu.plug();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "unplug -> first refused GET /token over {} unplugs: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 50 ms)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    stop.cancel();

    // The lease table's memory for 100,000 instances of one service.
    let before = rss_kib("VmRSS:");
    let table = tether_authority::leases::Leases::new([("svc", Some(200_000))]);
    let now = tether_keys::UnixTime::now();
    for i in 0..100_000 {
        table
            .acquire(
                "svc",
                &format!("instance-{i:08}"),
                now,
                now + std::time::Duration::from_secs(65),
                None,
            )
            .unwrap();
    }
    let after = rss_kib("VmRSS:");
    let grown = after.saturating_sub(before);
    println!(
        "lease table for 100,000 instances: {:.1} MiB resident ({} bytes a lease)",
        grown as f64 / 1024.0,
        grown * 1024 / 100_000
    );
    drop(table);
}
