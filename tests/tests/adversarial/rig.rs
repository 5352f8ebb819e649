//! Shared equipment of the adversarial suite: emulator control, a rogue
//! authority that serves whatever token a test forges, a TCP proxy that can
//! turn into a black hole, and a load generator for `GET /token`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tether_keys::{Vendor, keyfile};
use tether_tests::{Proc, Site, http};
use tether_verifier::{Expectations, Verifier};

/// The usual patience for things that take a moment.
pub const T: Duration = Duration::from_secs(10);

/// Sends one control line to the site's emulator without spawning a process
/// (so the moment of an unplug is known to the millisecond).
pub fn ctl(site: &Site, line: &str) -> String {
    tether_emulator::socket::control(&site.dongle_socket(), line)
        .unwrap_or_else(|e| panic!("emulator control {line:?}: {e}"))
}

/// `GET /status` as JSON.
pub fn status(url: &str) -> serde_json::Value {
    http::get(url, "/status", None).unwrap().json().unwrap()
}

/// `GET /token` for `service`: status and error code (empty on 200).
pub fn try_token(site: &Site, url: &str, service: &str) -> (u16, String) {
    let r = http::get(url, "/token", Some(site.secret(service))).unwrap();
    let code = if r.status == 200 {
        String::new()
    } else {
        r.json().unwrap()["code"].as_str().unwrap_or("").to_string()
    };
    (r.status, code)
}

/// Asks for a token every 20 ms for `dur`; panics if one is issued.
pub fn never_issues(site: &Site, url: &str, dur: Duration) -> (u16, String) {
    let end = Instant::now() + dur;
    let mut last = (0, String::new());
    while Instant::now() < end {
        last = try_token(site, url, "backend");
        assert_ne!(last.0, 200, "a token was issued");
        std::thread::sleep(Duration::from_millis(20));
    }
    last
}

/// Unplugs the emulator, waits until the authority has noticed (tokens
/// refused), and plugs it back in.
pub fn replug(site: &Site, url: &str) {
    ctl(site, "unplug");
    let end = Instant::now() + T;
    while try_token(site, url, "backend").0 == 200 {
        assert!(Instant::now() < end, "still issuing after the unplug");
        std::thread::sleep(Duration::from_millis(5));
    }
    ctl(site, "plug");
}

/// Polls `/status` until `pred` holds; returns that status.
pub fn wait_status(
    url: &str,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + limit;
    loop {
        let s = status(url);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < end, "status never matched; last: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The dongle's reason in `/status`.
pub fn reason(s: &serde_json::Value) -> String {
    s["dongle"]["reason"].as_str().unwrap_or("").to_string()
}

/// A verifier for `service` trusting the site's vendor key, as a consumer has.
pub fn verifier(site: &Site, service: &str) -> Verifier {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&site.vendor_pub).unwrap();
    Verifier::new(vendor, Expectations::new(service))
}

/// Whether the process still runs, and its log shows no panic.
pub fn healthy(p: &mut Proc) -> bool {
    p.child.try_wait().unwrap().is_none() && !p.log().contains("panicked")
}

/// Resident set size of a process, in KiB, from /proc.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads one HTTP request head; returns the request target.
fn read_target(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
    }
    Some(target)
}

fn respond(mut s: &TcpStream, status: u16, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.flush();
}

/// What the rogue authority answers to `GET /token?nonce=N`: a status and a body.
/// The rogue's answer to a `/token` request, given its target (`/token?...`).
pub type Answer = Box<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// The value of `name` in a request target's query.
pub fn query_param<'t>(target: &'t str, name: &str) -> Option<&'t str> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A rogue authority: what a customer with root can run in tetherd's place.
/// It answers `/token` with whatever the test forges (the consumer's nonce in
/// hand), and `/events` with `present` whenever asked, so that consumers
/// fetch at once instead of after their retry delay.
pub struct Rogue {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    pub fetches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Rogue {
    pub fn start() -> Rogue {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new(Box::new(|_: &str| {
            (
                503,
                r#"{"code":"dongle_absent","message":"rogue: nothing yet"}"#.into(),
            )
        })));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let fetches = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st, f, stp) = (
            answer.clone(),
            streams.clone(),
            fetches.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (a, st, f) = (a.clone(), st.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let Some(target) = read_target(&conn) else {
                        return;
                    };
                    if target.starts_with("/events") {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
                        let mut c = &conn;
                        let _ = c.write_all(head.as_bytes());
                        let _ = c.write_all(event("present").as_bytes());
                        st.lock().unwrap().push(conn);
                    } else if target.starts_with("/token") {
                        let (status, body) = (a.lock().unwrap())(&target);
                        f.fetch_add(1, Ordering::SeqCst);
                        respond(&conn, status, &body);
                    } else {
                        respond(&conn, 404, r#"{"code":"not_found","message":""}"#);
                    }
                });
            }
        });
        Rogue {
            url: format!("http://127.0.0.1:{port}"),
            answer,
            streams,
            fetches,
            stop,
            port,
        }
    }

    /// From now on, `/token` answers with `f`; connected consumers are told
    /// `absent` then `present`, so they drop what they hold and fetch anew.
    pub fn serve(&self, f: impl Fn(Option<&str>) -> (u16, String) + Send + Sync + 'static) {
        self.serve_target(move |target| f(query_param(target, "nonce")));
    }

    /// [`Rogue::serve`], with the whole request target (`/token?...`).
    pub fn serve_target(&self, f: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Box::new(f);
        let mut streams = self.streams.lock().unwrap();
        streams.retain(|mut s| {
            s.write_all(event("absent").as_bytes()).is_ok()
                && s.write_all(event("present").as_bytes()).is_ok()
        });
    }

    /// `/token` fetches answered so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn event(state: &str) -> String {
    format!("event: state\ndata: {{\"state\":\"{state}\",\"reason\":\"rogue\",\"since\":0}}\n\n")
}

/// A TCP proxy in front of an authority that can become a black hole:
/// connections are accepted and then never answered (an authority that hangs,
/// or a network that drops everything).
pub struct Proxy {
    pub url: String,
    black_hole: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let black_hole = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (bh, h, stp) = (black_hole.clone(), held.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                if bh.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let pairs = [
                    (conn.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up.try_clone().unwrap(), conn.try_clone().unwrap()),
                ];
                h.lock().unwrap().extend([conn, up]);
                for (mut from, mut to) in pairs {
                    let bh = bh.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                // In black-hole mode, bytes stop flowing.
                                Ok(_) if bh.load(Ordering::SeqCst) => continue,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            black_hole,
            held,
            stop,
            port,
        }
    }

    /// Swallow everything from now on (open connections included), or forward again.
    pub fn set_black_hole(&self, on: bool) {
        self.black_hole.store(on, Ordering::SeqCst);
        if !on {
            // Connections swallowed while dark are dropped, like a network
            // that comes back: their peers see a reset and reconnect.
            for s in self.held.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One answer seen by the load generator.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer was complete.
    pub done: Instant,
    /// HTTP status; 0 for a transport error.
    pub status: u16,
    /// Error code, or the token on 200.
    pub body: String,
}

/// The answers that are neither a token nor the documented refusal of an
/// absent dongle (503 `dongle_absent`), as (status, body).
pub fn unexpected(seen: &[Seen]) -> Vec<(u16, String)> {
    seen.iter()
        .filter(|s| !(s.status == 200 || (s.status == 503 && s.body == "dongle_absent")))
        .map(|s| (s.status, s.body.clone()))
        .collect()
}

impl Seen {
    /// Verifies the token of a 200 answer as of the moment it arrived (a
    /// long run would otherwise see its first tokens expire).
    pub fn verify(&self, verifiers: &[&Verifier]) -> bool {
        let wall = tether_keys::UnixTime::now()
            .secs()
            .saturating_sub(self.done.elapsed().as_secs());
        verifiers.iter().any(|v| {
            v.verify_at(&self.body, None, tether_keys::UnixTime::from_secs(wall))
                .is_ok()
        })
    }
}

/// Clients asking `GET /token` in a loop, each at most `per_sec` times a
/// second, until stopped; every answer kept.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Seen>>>,
}

impl Load {
    pub fn start(url: &str, secrets: &[String], clients: usize, per_sec: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let gap = Duration::from_secs(1) / per_sec.max(1);
        let workers = (0..clients)
            .map(|i| {
                let (url, secret, stop) = (
                    url.to_string(),
                    secrets[i % secrets.len()].clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    // A hard cap, whatever happens to the stop flag.
                    let end = Instant::now() + Duration::from_secs(900);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let sent = Instant::now();
                        let (status, body) = match http::get(&url, "/token", Some(&secret)) {
                            Ok(r) if r.status == 200 => {
                                let t = r
                                    .json()
                                    .ok()
                                    .and_then(|v| v["token"].as_str().map(str::to_string));
                                (200, t.unwrap_or_default())
                            }
                            Ok(r) => {
                                let code = r
                                    .json()
                                    .ok()
                                    .and_then(|v| v["code"].as_str().map(str::to_string));
                                (r.status, code.unwrap_or_default())
                            }
                            Err(e) => (0, e.to_string()),
                        };
                        seen.push(Seen {
                            sent,
                            done: Instant::now(),
                            status,
                            body,
                        });
                        let next = sent + gap;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    seen
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops the clients; every answer, in no particular order.
    pub fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    }
}
