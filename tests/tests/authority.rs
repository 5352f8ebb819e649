//! The real `tetherd` binary against the real emulator process: tokens,
//! unplug and re-plug, credentials, clones, rollback, clock, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{Certificate, License, TokenClaims, Vendor, keyfile};
use tether_tests::http::{self, Events};
use tether_tests::{Site, wait_for_token, wait_until};

const T: Duration = Duration::from_secs(10);

/// Verifies a token down the chain with nothing but the vendor public key.
/// (Deliberately independent of the verifier crate.) Returns claims and the
/// certified session key's fingerprint.
fn verify_chain(site: &Site, token: &str) -> (TokenClaims, String) {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&site.vendor_pub).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let claims: TokenClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let license = License::decode(&URL_SAFE_NO_PAD.decode(&claims.lic).unwrap()).unwrap();
    license.verify(&vendor).unwrap();
    let cert = Certificate::decode(&URL_SAFE_NO_PAD.decode(&claims.dcert).unwrap()).unwrap();
    cert.verify_by(&license.terms().dongle).unwrap();
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap()
        .try_into()
        .unwrap();
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    assert!(cert.request.session_key.verify(signed.as_bytes(), &sig));
    let kid = cert.request.session_key.fingerprint().short();
    assert_eq!(header["kid"], kid.as_str());
    (claims, kid)
}

#[test]
fn token_verifies_down_to_the_vendor_root() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let body = wait_for_token(&url, site.secret("backend"), T);
    let (claims, _) = verify_chain(&site, body["token"].as_str().unwrap());
    assert_eq!(claims.aud, "backend");
    assert_eq!(claims.sub, "backend");
    assert_eq!(claims.iss, format!("tether:{}", site.serial));
    assert_eq!(claims.exp.secs() - claims.iat.secs(), 60);
    assert_eq!(body["expires_at"], claims.exp.secs());
    assert!(body["refresh_at"].as_u64().unwrap() < claims.exp.secs());

    let with_nonce =
        http::get(&url, "/token?nonce=abc-DEF_123", Some(site.secret("muxer"))).unwrap();
    assert_eq!(with_nonce.status, 200);
    let (claims, _) = verify_chain(&site, with_nonce.json().unwrap()["token"].as_str().unwrap());
    assert_eq!(claims.nonce.as_deref(), Some("abc-DEF_123"));
    assert_eq!(claims.aud, "muxer");

    let status = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert_eq!(status["dongle"]["state"], "present");
    assert_eq!(status["dongle"]["serial"], site.serial.as_str());
    assert_eq!(status["tokens_issued"], 2);
    let metrics = http::get(&url, "/metrics", None).unwrap();
    assert!(metrics.body.contains("tether_tokens_issued_total 2\n"));
    assert!(metrics.body.contains("tether_dongle_present 1\n"));
    assert_eq!(http::get(&url, "/readyz", None).unwrap().status, 200);
}

#[test]
fn credentials_and_licensing_are_enforced() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let none = http::get(&url, "/token", None).unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(none.json().unwrap()["code"], "unauthorized");
    let wrong = http::get(
        &url,
        "/token",
        Some("tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let unlicensed = http::get(&url, "/token", Some(site.secret("reports"))).unwrap();
    assert_eq!(unlicensed.status, 403);
    assert_eq!(unlicensed.json().unwrap()["code"], "service_not_licensed");
    let bad_nonce = http::get(&url, "/token?nonce=%00%01", Some(site.secret("backend"))).unwrap();
    assert_eq!(bad_nonce.status, 400);
    let unknown = http::get(&url, "/nope", None).unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json().unwrap()["code"], "not_found");
}

#[test]
fn unplug_stops_issuance_and_replug_resumes_under_a_new_session() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let first = wait_for_token(&url, site.secret("backend"), T);
    let (_, kid1) = verify_chain(&site, first["token"].as_str().unwrap());
    let mut events = Events::open(&url).unwrap();
    assert_eq!(events.next_state(T).unwrap()["state"], "present");

    site.dongle(&["unplug"]);
    let unplugged = Instant::now();
    let refused = loop {
        let r = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
        if r.status != 200 {
            break r;
        }
        assert!(
            unplugged.elapsed() < Duration::from_secs(2),
            "still issuing after unplug"
        );
    };
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json().unwrap()["code"], "dongle_absent");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let ev = events.next_state(T).unwrap();
    assert_eq!(ev["state"], "absent", "{ev}");
    assert_eq!(http::get(&url, "/readyz", None).unwrap().status, 503);

    site.dongle(&["plug"]);
    assert_eq!(events.next_state(T).unwrap()["state"], "present");
    let again = wait_for_token(&url, site.secret("backend"), T);
    let (_, kid2) = verify_chain(&site, again["token"].as_str().unwrap());
    assert_ne!(kid1, kid2, "a re-plug must certify a fresh session key");
}

#[test]
fn a_clone_is_refused() {
    let site = Site::new();
    let _emu = site.start_emulator(&["--fault", "clone"]);
    let (d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/status", None).unwrap().json().unwrap()["dongle"]["refused_dongles"]
            .as_u64()
            .unwrap()
            > 0
    });
    let r = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
    assert_eq!(r.status, 503);
    let status = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert_eq!(status["dongle"]["state"], "absent");
    assert!(
        status["dongle"]["reason"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{status}"
    );
    assert!(d.log().contains("possible clone"));
}

#[test]
fn a_counter_rollback_is_refused() {
    let site = Site::new();
    let emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    drop(d);
    // The emulator now answers with a counter below what the authority has seen.
    site.dongle(&["fault", "rollback"]);
    let (d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/status", None).unwrap().json().unwrap()["dongle"]["refused_dongles"]
            .as_u64()
            .unwrap()
            > 0
    });
    assert_eq!(
        http::get(&url, "/token", Some(site.secret("backend")))
            .unwrap()
            .status,
        503
    );
    let status = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert!(
        status["dongle"]["reason"]
            .as_str()
            .unwrap()
            .contains("counter"),
        "{status}"
    );
    drop((d, emu));
}

#[test]
fn a_clock_behind_the_high_water_mark_is_refused() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    std::fs::create_dir_all(site.path("state")).unwrap();
    let future = tether_keys::UnixTime::now().secs() + 86_400;
    std::fs::write(
        site.path("state/state.json"),
        format!("{{\"clock\": {future}, \"counters\": {{}}}}"),
    )
    .unwrap();
    let (_d, url) = site.start_tetherd(&[]);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = None;
    while Instant::now() < deadline {
        let r = http::get(&url, "/token", Some(site.secret("backend"))).unwrap();
        assert_ne!(r.status, 200, "issued a token with the clock rolled back");
        last = Some(r);
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = last.unwrap();
    assert_eq!(last.status, 503);
    let status = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert!(
        last.json().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("behind")
            || status["dongle"]["reason"]
                .as_str()
                .unwrap()
                .contains("behind"),
        "{status}"
    );
}

#[test]
fn sigterm_drains_and_exits_zero_under_load() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&["--rate-limit", "1000000"]);
    wait_for_token(&url, site.secret("backend"), T);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, secret, stop) = (
                url.clone(),
                site.secret("backend").to_string(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let (mut ok, mut bad) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match http::get(&url, "/token", Some(&secret)) {
                        Ok(r) if r.status == 200 => ok += 1,
                        // A completed request must never be an error answer.
                        Ok(r) => bad.push(r.status),
                        // Refused connections after the listener closed are expected.
                        Err(_) => {}
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    d.signal("TERM");
    let code = d.wait_exit(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, bad) = w.join().unwrap();
        assert!(bad.is_empty(), "error answers during shutdown: {bad:?}");
        total += ok;
    }
    assert_eq!(code, Some(0), "tetherd log:\n{}", d.log());
    assert!(total > 0);
    assert!(d.log().contains("session key wiped"));
    // Issue 13, item 6: a clean shutdown under load is not an error.
    assert!(!d.log().contains("ERROR"), "tetherd log:\n{}", d.log());
}

#[test]
fn a_service_over_its_rate_limit_gets_429_and_others_do_not() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&["--rate-limit", "2"]);
    wait_for_token(&url, site.secret("backend"), T);
    // Polling for the first token spent from the bucket (the limit applies
    // before the presence check); let both buckets fill up again.
    std::thread::sleep(Duration::from_millis(1100));
    // A burst of 2 a second: ten requests in a row cannot all pass.
    let answers: Vec<_> = (0..10)
        .map(|_| http::get(&url, "/token", Some(site.secret("backend"))).unwrap())
        .collect();
    let limited: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(answers.iter().any(|r| r.status == 200));
    assert!(limited.len() >= 7, "{} of 10 limited", limited.len());
    assert!(answers.iter().all(|r| r.status == 200 || r.status == 429));
    let r = limited[0];
    assert_eq!(r.json().unwrap()["code"], "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After: {retry}");
    // The limit is per service: the muxer's bucket is its own.
    let other = http::get(&url, "/token", Some(site.secret("muxer"))).unwrap();
    assert_eq!(other.status, 200);
    let metrics = http::get(&url, "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("reason=\"rate_limited\""),
        "no rate_limited refusals in /metrics:\n{metrics}"
    );
}

/// Nothing secret reaches a log, even at the most verbose level: not a
/// service secret (right, near-miss or unlicensed), not a token or any part
/// of one, not the dongle's private key. Third-party crates log at trace too.
#[test]
fn no_secret_token_or_key_reaches_a_log_even_at_trace() {
    let mut site = Site::new();
    site.log = "trace";
    let emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let mut tokens = vec![wait_for_token(&url, site.secret("backend"), T)];
    let secret = site.secret("backend").to_string();
    // One character off. The last base64url character of 32 bytes carries
    // only two bits (A, Q, g or w), so pick one that differs.
    let (head, last) = secret.split_at(secret.len() - 1);
    let near_miss = format!("{head}{}", if last == "A" { "Q" } else { "A" });
    assert_ne!(near_miss, secret);
    assert_eq!(
        http::get(&url, "/token", Some(&near_miss)).unwrap().status,
        401
    );
    assert_eq!(
        http::get(&url, "/token", Some(site.secret("reports")))
            .unwrap()
            .status,
        403
    );
    let (svc, _) = site.start_service("muxer", &url, &[]);
    // A new session (key generated, old one wiped) and its first tokens.
    site.dongle(&["unplug"]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 503)
    });
    site.dongle(&["plug"]);
    tokens.push(wait_for_token(&url, site.secret("muxer"), T));

    let key_pem = std::fs::read_to_string(site.identity.join("dongle.key")).unwrap();
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':') && l.len() >= 16)
        .collect();
    assert!(!key_lines.is_empty());
    let mut forbidden: Vec<(String, &str)> = Vec::new();
    for (_, s) in &site.secrets {
        forbidden.push((s.clone(), "a service secret"));
        forbidden.push((
            s[s.len() - 16..].to_string(),
            "the tail of a service secret",
        ));
    }
    forbidden.push((near_miss.clone(), "a presented credential"));
    for t in &tokens {
        let jwt = t["token"].as_str().unwrap();
        for part in jwt.split('.') {
            forbidden.push((part[part.len() - 24..].to_string(), "part of a token"));
        }
    }
    for l in key_lines {
        forbidden.push((l.to_string(), "the dongle's private key"));
    }
    // The daemon and the service handle the secrets and tokens; they must
    // show that verbose logging was on (the emulator has nothing below info).
    for p in [&d, &svc] {
        let log = p.log();
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "{}: verbose logging was not on:\n{log}",
            p.name
        );
    }
    for p in [&emu, &d, &svc] {
        let log = p.log();
        for (needle, what) in &forbidden {
            assert!(!log.contains(needle.as_str()), "{} logged {what}", p.name);
        }
    }
}

/// A dongle that declines DELEGATE (here: its rate limit is spent) is not
/// re-challenged in a tight loop, and subscribers are told "absent" once,
/// not on every failed attempt.
#[test]
fn a_dongle_that_declines_delegation_is_not_hammered_and_events_stay_quiet() {
    let site = Site::new();
    let _emu = site.start_emulator(&["--reach-budget", "350s"]);
    let (d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let mut events = Events::open(&url).unwrap();
    assert_eq!(events.next_state(T).unwrap()["state"], "present");
    // Re-plug: a new session needs a DELEGATE, and the bucket is empty.
    site.dongle(&["unplug"]);
    site.dongle(&["plug"]);
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let mut seen = Vec::new();
    while let Some(left) = window.checked_sub(started.elapsed()) {
        match events.next_state(left.max(Duration::from_millis(1))) {
            Ok(ev) => seen.push(ev["state"].as_str().unwrap_or("?").to_string()),
            Err(_) => break,
        }
    }
    assert_eq!(seen, ["absent"], "events after the re-plug: {seen:?}");
    let status = http::get(&url, "/status", None).unwrap().json().unwrap();
    assert!(
        status["dongle"]["reason"]
            .as_str()
            .unwrap()
            .contains("rate limited"),
        "{status}"
    );
    // One challenge a second at most, not thousands.
    let challenges = d.log().matches("dongle found; challenging it").count();
    assert!(
        (2..=6).contains(&challenges),
        "{challenges} challenges in about 3 s"
    );
}

/// Event streams are capped: a client cannot pile them up, and a closed one
/// frees its place.
#[test]
fn event_streams_are_capped_and_a_closed_one_frees_its_place() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let mut open: Vec<Events> = (0..256).map(|_| Events::open(&url).unwrap()).collect();
    let refused = http::get(&url, "/events", None).unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json().unwrap()["code"], "too_many_streams");
    // Tokens are not affected.
    wait_for_token(&url, site.secret("backend"), T);
    // Close one: the server notices and the place is free again.
    let mut closed = open.pop().unwrap();
    closed.next_state(T).unwrap();
    drop(closed);
    wait_until(Duration::from_secs(20), || Events::open(&url).is_ok());
}

/// A raw `GET /events` with a credential (the shared client sends none),
/// read line by line.
struct RawEvents(std::io::BufReader<std::net::TcpStream>);

impl RawEvents {
    fn open(url: &str, authorization: &str) -> RawEvents {
        use std::io::{BufRead as _, Write as _};
        let host = url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\r\n"
        )
        .unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        RawEvents(r)
    }

    fn next_state(&mut self, timeout: Duration) -> serde_json::Value {
        use std::io::BufRead as _;
        self.0.get_ref().set_read_timeout(Some(timeout)).unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "stream ended");
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                return serde_json::from_str(data.trim()).unwrap();
            }
        }
    }
}

/// Issue 13, item 3: with 256 anonymous `/events` streams held, a consumer
/// that presents its credential still gets a stream and hears the unplug of
/// the real emulator within a second.
#[test]
fn a_credentialed_stream_hears_an_unplug_within_1s_with_256_anonymous_streams_held() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let _hostile: Vec<Events> = (0..256).map(|_| Events::open(&url).unwrap()).collect();
    assert_eq!(http::get(&url, "/events", None).unwrap().status, 503);
    let mut consumer = RawEvents::open(&url, &format!("Bearer {}", site.secret("backend")));
    assert_eq!(consumer.next_state(T)["state"], "present");
    site.dongle(&["unplug"]);
    let unplugged = Instant::now();
    let ev = consumer.next_state(Duration::from_secs(1));
    assert_eq!(ev["state"], "absent", "{ev}");
    let took = unplugged.elapsed();
    assert!(took < Duration::from_secs(1), "absent after {took:?}");
    eprintln!("unplug -> absent on a credentialed stream, 256 anonymous streams held: {took:?}");
}

/// Issue 13, item 6: clients closing mid-request are counted, and none of
/// it reaches the log at ERROR (or at all, at the default level).
#[test]
fn peers_closing_mid_request_are_counted_and_not_logged_as_errors() {
    use std::io::Write as _;
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (d, url) = site.start_tetherd(&[]);
    let host = url.trim_start_matches("http://");
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(host).unwrap();
        s.write_all(b"GET /token HTTP/1.1\r\nHost: x\r\nAuthoriz")
            .unwrap();
    }
    wait_until(T, || {
        http::get(&url, "/metrics", None)
            .unwrap()
            .body
            .contains("tether_http_connection_errors_total{kind=\"incomplete_message\"} 20\n")
    });
    let log = d.log();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("connection error"), "{log}");
}

/// Issue 13, item 7: `bearer` and `BEARER` are Bearer (RFC 9110 11.1).
#[test]
fn the_auth_scheme_is_case_insensitive() {
    use std::io::{Read as _, Write as _};
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_for_token(&url, site.secret("backend"), T);
    let host = url.trim_start_matches("http://");
    for scheme in ["bearer", "BEARER"] {
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /token HTTP/1.1\r\nHost: {host}\r\nAuthorization: {scheme} {}\r\nConnection: close\r\n\r\n",
            site.secret("backend")
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{scheme}: {answer}");
    }
}

/// The admin page of the real daemon, on its own listener: served there
/// (never on the API's), with the dongle shown present then absent, and a
/// chosen admin address that is taken stops tetherd with one clear line.
#[test]
fn the_admin_page_is_served_on_its_own_listener_only() {
    let site = Site::new();
    let _emu = site.start_emulator(&[]);
    let admin_port = tether_tests::free_port();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let (_tetherd, url) = site.start_tetherd(&["--admin-listen", &admin_listen]);
    wait_for_token(&url, site.secret("backend"), T);
    let page = http::get(&admin, "/admin", None).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("E2E Test"), "{}", page.body);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        http::get(&url, "/admin", None).unwrap().status,
        404,
        "not on the API's listener"
    );
    let state = || {
        http::get(&admin, "/admin/status.json", None)
            .unwrap()
            .json()
            .unwrap()["dongle"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(), "present");
    site.dongle(&["unplug"]);
    wait_until(T, || state() == "absent");

    // The same address again, chosen explicitly: refused at start.
    let mut second = std::process::Command::new(tether_tests::bin("tetherd"))
        .args(["--license"])
        .arg(&site.license)
        .arg("--vendor-pub")
        .arg(&site.vendor_pub)
        .arg("--credentials")
        .arg(&site.credentials)
        .args(["--dongle", "socket:/nonexistent", "--listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(site.path("state2"))
        .args(["--admin-listen", &admin_listen])
        .env("TETHER_CONFIG", "/dev/null")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = second.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("admin-listen"), "{err}");
}
