//! The HTTP API in-process: routes served by our accept loop on
//! `127.0.0.1:0`, an [`Authority`] driven directly (no dongle), and a raw
//! HTTP/1.1 client, so every byte of the request is the test's choice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::models::{ErrorBody, PresenceEvent, PresenceState, StatusBody, TokenResponse};
use super::server::{ConnLog, ConnMetrics, serve};
use super::streams::ANONYMOUS_STREAMS;
use crate::authority::Authority;
use crate::authority::tests::{authority, session};

struct Rig {
    auth: Arc<Authority>,
    secret: String,
    addr: SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (auth, secret) = authority(dir.path());
    let auth = Arc::new(auth);
    let stop = CancellationToken::new();
    let routes = super::filters::routes(auth.clone(), stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(ConnMetrics {
        auth: auth.clone(),
        log: ConnLog::default(),
    });
    tokio::spawn(serve(
        routes,
        crate::Listener::Tcp(listener),
        conns,
        stop.clone(),
    ));
    Rig {
        auth,
        secret,
        addr,
        stop,
        _dir: dir,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn error(&self) -> ErrorBody {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends `request` as is (a complete HTTP/1.1 request with `Connection:
/// close`) and reads the whole answer.
async fn raw(addr: SocketAddr, request: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    // Bodies here are short JSON, sent whole with Content-Length.
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Answer {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    raw(addr, &req).await
}

/// An open `/events` stream.
struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    async fn open(addr: SocketAddr, headers: &[&str]) -> Result<Stream, u16> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = "GET /events HTTP/1.1\r\nHost: t\r\n".to_string();
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status: u16 = line[9..12].parse().unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
        }
        if status == 200 {
            Ok(Stream { reader })
        } else {
            Err(status)
        }
    }

    async fn next_event(&mut self, timeout: Duration) -> PresenceEvent {
        tokio::time::timeout(timeout, async {
            let mut line = String::new();
            loop {
                line.clear();
                assert!(self.reader.read_line(&mut line).await.unwrap() > 0, "EOF");
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    return serde_json::from_str(data.trim()).unwrap();
                }
            }
        })
        .await
        .expect("no event in time")
    }
}

/// Issue 17: a license install's verdict is an `event: license` on
/// `/events`, after the state events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_install_is_an_event() {
    let rig = rig().await;
    let mut stream = Stream::open(rig.addr, &[]).await.unwrap();
    stream.next_event(Duration::from_secs(5)).await;
    let mut terms = rig.auth.license().terms().clone();
    terms.sequence = 2;
    let pem =
        tether_keys::keyfile::license_pem(&terms.sign(&tether_keys::testkeys::vendor()).unwrap());
    std::fs::write(rig.auth.state_dir().join(crate::license::PENDING_FILE), pem).unwrap();
    let auth = rig.auth.clone();
    tokio::task::spawn_blocking(move || {
        auth.process_pending(&tether_keys::testkeys::vendor().public())
    })
    .await
    .unwrap()
    .unwrap();
    let data = tokio::time::timeout(Duration::from_secs(5), async {
        let mut line = String::new();
        let mut named = false;
        loop {
            line.clear();
            assert!(stream.reader.read_line(&mut line).await.unwrap() > 0, "EOF");
            let l = line.trim_end();
            if l == "event: license" || l == "event:license" {
                named = true;
            } else if named && let Some(data) = l.strip_prefix("data:") {
                return serde_json::from_str::<serde_json::Value>(data.trim()).unwrap();
            }
        }
    })
    .await
    .expect("no license event");
    assert_eq!(data["accepted"], true);
    assert_eq!(data["sequence"], 2);
    rig.stop.cancel();
}

/// Issue 13, item 3: 256 anonymous streams held do not keep a consumer with
/// a credential from opening its stream and hearing an unplug at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_streams_cannot_starve_a_credentialed_consumer() {
    let rig = rig().await;
    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    let mut held = Vec::new();
    for _ in 0..ANONYMOUS_STREAMS {
        held.push(Stream::open(rig.addr, &[]).await.unwrap());
    }
    assert_eq!(Stream::open(rig.addr, &[]).await.err(), Some(503));
    let refused = get(rig.addr, "/events", &[]).await;
    assert_eq!(refused.error().code, "too_many_streams");
    assert_eq!(refused.header("retry-after"), Some("1"));

    let bearer = format!("Authorization: bearer {}", rig.secret);
    let mut consumer = Stream::open(rig.addr, &[&bearer]).await.unwrap();
    let first = consumer.next_event(Duration::from_secs(5)).await;
    assert_eq!(first.state, PresenceState::Present);

    let unplugged = Instant::now();
    rig.auth.set_absent("dongle lost: dongle unplugged");
    let ev = consumer.next_event(Duration::from_secs(1)).await;
    assert_eq!(ev.state, PresenceState::Absent);
    assert!(unplugged.elapsed() < Duration::from_secs(1));
    let m = get(rig.addr, "/metrics", &[]).await.body;
    assert!(
        m.contains("tether_event_streams{class=\"anonymous\"} 256\n"),
        "{m}"
    );
    assert!(
        m.contains("tether_event_streams{class=\"credentialed\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("tether_event_streams_refused_total{class=\"anonymous\"} 2\n"),
        "{m}"
    );
    // The anonymous ones hear it too.
    assert_eq!(
        held[0].next_event(Duration::from_secs(5)).await.state,
        PresenceState::Present
    );
    rig.stop.cancel();
}

/// A credential on /events is optional, but one that is presented must be
/// an enrolled one; another scheme is refused the same way.
#[tokio::test]
async fn events_refuse_an_unknown_or_malformed_credential() {
    let rig = rig().await;
    let r = get(rig.addr, "/events", &["Authorization: Bearer tsk_nope"]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error().code, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = get(rig.addr, "/events", &["Authorization: Basic eDp5"]).await;
    assert_eq!(r.status, 401);
    assert!(Stream::open(rig.addr, &[]).await.is_ok());
}

/// Item 7: RFC 9110 11.1, the scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_over_http() {
    let rig = rig().await;
    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let r = get(
            rig.addr,
            "/token",
            &[&format!("Authorization: {scheme} {}", rig.secret)],
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}: {r:?}");
        let body: TokenResponse = serde_json::from_str(&r.body).unwrap();
        assert!(body.expires_in > 0);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    // Header names are case-insensitive too (RFC 9110 5.1).
    let r = get(
        rig.addr,
        "/token",
        &[&format!("AUTHORIZATION: Bearer {}", rig.secret)],
    )
    .await;
    assert_eq!(r.status, 200);
}

/// Item 7: the rest of the request surface, against RFC 9110 and RFC 3986.
#[tokio::test]
async fn request_parsing_follows_the_rfcs_and_bad_input_is_4xx() {
    let rig = rig().await;
    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    let auth = format!("Authorization: Bearer {}", rig.secret);
    // Percent-encoded unreserved characters are the same characters (RFC 3986 2.3).
    let r = get(rig.addr, "/token?nonce=abc%2DDEF%5F1", &[&auth]).await;
    assert_eq!(r.status, 200, "{r:?}");
    for (path, why) in [
        ("/token?nonce=", "empty nonce"),
        ("/token?nonce=a+b", "a space (form encoding)"),
        ("/token?nonce=a&nonce=b", "a repeated parameter"),
        ("/token?nonce=%ff", "not UTF-8"),
        ("/token?seat=x", "an unknown parameter"),
        (
            "/token?instance=a%20b",
            "an instance outside A-Z a-z 0-9 . _ -",
        ),
        ("/token?nonce=%zz", "a broken escape"),
    ] {
        let r = get(rig.addr, path, &[&auth]).await;
        assert_eq!(r.status, 400, "{why}: {r:?}");
        assert_eq!(r.error().code, "bad_request", "{why}");
    }
    let long = format!("/token?nonce={}", "a".repeat(129));
    assert_eq!(get(rig.addr, &long, &[&auth]).await.status, 400);
    // Two Authorization fields: the field is a singleton (RFC 9110 11.6.2).
    let r = get(rig.addr, "/token", &[&auth, &auth]).await;
    assert_eq!(r.status, 400, "{r:?}");
    // A header value that is not visible ASCII.
    let r = raw(
        rig.addr,
        "GET /token HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer é\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    // 405 lists what is allowed (RFC 9110 15.5.6).
    let r = raw(
        rig.addr,
        "POST /token HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(r.error().code, "method_not_allowed");
    // Not a credential: never echoed back.
    let r = get(rig.addr, "/token", &["Authorization: tsk_secretlooking"]).await;
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("tsk_secretlooking"));
}

/// Item 5: /readyz is 200 only when /token would issue; /status says why not.
#[tokio::test]
async fn readyz_and_status_say_whether_and_why_not() {
    let rig = rig().await;
    let r = get(rig.addr, "/readyz", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error().code, "dongle_absent");
    let st: StatusBody = serde_json::from_str(&get(rig.addr, "/status", &[]).await.body).unwrap();
    assert!(!st.ready);
    assert_eq!(st.not_ready.unwrap().code, "dongle_absent");

    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    assert_eq!(get(rig.addr, "/readyz", &[]).await.status, 200);
    let st: StatusBody = serde_json::from_str(&get(rig.addr, "/status", &[]).await.body).unwrap();
    assert!(st.ready);
    assert_eq!(st.not_ready, None);
    assert_eq!(st.dongle.state, PresenceState::Present);

    // Present, but the certificate ended without a renewal: not ready.
    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 400), 2);
    let r = get(rig.addr, "/readyz", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.error().message.contains("certificate ended"), "{r:?}");
    let st: StatusBody = serde_json::from_str(&get(rig.addr, "/status", &[]).await.body).unwrap();
    assert_eq!(st.dongle.state, PresenceState::Present);
    assert!(!st.ready);

    // Clock behind the stored mark: not ready, clock_rollback.
    rig.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 3);
    rig.auth
        .advance_clock(tether_keys::UnixTime::now() + std::time::Duration::from_secs(86_400))
        .unwrap();
    let r = get(rig.addr, "/readyz", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error().code, "clock_rollback");
}

/// Item 6: a client that closes mid-request is counted, not logged as ours.
#[tokio::test]
async fn a_peer_closing_mid_request_is_counted_in_metrics() {
    let rig = rig().await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(rig.addr).await.unwrap();
        s.write_all(b"GET /token HTTP/1.1\r\nHost: t\r\nAuthor")
            .await
            .unwrap();
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = get(rig.addr, "/metrics", &[]).await;
        assert!(
            m.header("content-type")
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        if m.body
            .contains("tether_http_connection_errors_total{kind=\"incomplete_message\"} 3\n")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not counted:\n{}", m.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The accept loop serves Unix sockets as it serves TCP, and stops on the
/// signal with nothing left accepted.
#[tokio::test]
async fn a_unix_listener_is_served_and_stops_on_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(dir.path());
    let auth = Arc::new(auth);
    let stop = CancellationToken::new();
    let routes = super::filters::routes(auth.clone(), stop.clone());
    let path = dir.path().join("t.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let conns = Arc::new(ConnMetrics {
        auth,
        log: ConnLog::default(),
    });
    let server = tokio::spawn(serve(
        routes,
        crate::Listener::Unix(listener),
        conns,
        stop.clone(),
    ));
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}
