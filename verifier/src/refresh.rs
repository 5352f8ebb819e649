//! The refresher: keeps one service licensed, or says why it is not.
//!
//! [`LicenseWatch::spawn`] starts a task that fetches `GET /token` with the
//! service's credential and a fresh nonce, verifies the answer offline (the
//! echoed nonce included), and fetches the next one at about half-life with
//! jitter. A token's life is measured with the monotonic clock from its
//! receipt (`exp - iat` after the moment it arrived), so a wall-clock jump
//! can never extend it. On errors the current token is kept until that
//! deadline while fetches back off (exponential, capped, jittered); a 503
//! from the authority (dongle absent) drops the license at once.
//!
//! A second task follows `GET /events` and drops the license the moment the
//! authority reports `absent`, fetching anew on `present`; it reconnects with
//! backoff. Dropping the [`LicenseWatch`] stops both tasks. Neither the
//! secret nor a token is ever logged.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HOST, RETRY_AFTER};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use tether_keys::{ServiceSecret, TokenClaims};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::Verifier;

/// Longest wait for one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff bounds between failed fetches or event reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Larger answers are refused.
const MAX_BODY: usize = 64 * 1024;

/// The license as a service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseState {
    /// Holding a verified token until `expires` (monotonic).
    Licensed {
        /// The token's claims.
        claims: Arc<TokenClaims>,
        /// The token as received, for handing on (`tether run --token-file`).
        token: RawToken,
        /// When the token's life ends, measured from its receipt.
        expires: std::time::Instant,
    },
    /// Not licensed, and why.
    Unlicensed {
        /// Why, in words.
        reason: String,
    },
}

/// A verified token as the authority sent it. Its `Debug` does not show
/// it: a token must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(Arc<str>);

impl RawToken {
    /// The compact JWT.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken(..)")
    }
}

/// An instance id that is not 1-64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an instance id is 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")]
pub struct InvalidInstance;

/// Whether `id` may name a consumer instance: 1-64 characters of
/// `A-Z a-z 0-9 . _ -` (so it needs no escaping in a query string).
pub fn is_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the refresher needs.
pub struct WatchConfig {
    host_port: String,
    service: String,
    secret: ServiceSecret,
    verifier: Arc<Verifier>,
    follow_events: bool,
    instance: Option<String>,
    wall_clock: fn() -> u64,
}

impl std::fmt::Debug for WatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchConfig")
            .field("authority", &self.host_port)
            .field("service", &self.service)
            .field("follow_events", &self.follow_events)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl WatchConfig {
    /// Tokens for `service` from the authority at `url` (`http://host:port`).
    pub fn new(url: &str, service: &str, secret: ServiceSecret, verifier: Verifier) -> Self {
        let host_port = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        WatchConfig {
            host_port,
            service: service.to_string(),
            secret,
            verifier: Arc::new(verifier),
            follow_events: true,
            instance: None,
            wall_clock: tether_keys::now_unix,
        }
    }

    /// Whether to follow `/events` (default on). Off, the license ends at
    /// token expiry at the latest.
    pub fn follow_events(mut self, on: bool) -> Self {
        self.follow_events = on;
        self
    }

    /// Names this consumer instance to the authority in every token request
    /// (`GET /token?instance=ID`; 1-64 characters of `A-Z a-z 0-9 . _ -`).
    /// Unset (the default), the parameter is not sent: an authority without
    /// seats refuses query parameters it does not know.
    ///
    /// # Errors
    ///
    /// [`InvalidInstance`] when `id` is not such a name.
    pub fn instance(mut self, id: &str) -> Result<Self, InvalidInstance> {
        if !is_instance_id(id) {
            return Err(InvalidInstance);
        }
        self.instance = Some(id.to_string());
        Ok(self)
    }

    /// The wall clock verification uses (UNIX seconds); for tests.
    #[doc(hidden)]
    pub fn wall_clock(mut self, clock: fn() -> u64) -> Self {
        self.wall_clock = clock;
        self
    }
}

/// Keeps a service licensed in the background. Stops when dropped.
#[derive(Debug)]
pub struct LicenseWatch {
    rx: watch::Receiver<LicenseState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LicenseWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl LicenseWatch {
    /// Starts refreshing on the current tokio runtime.
    pub fn spawn(config: WatchConfig) -> LicenseWatch {
        let (tx, rx) = watch::channel(LicenseState::Unlicensed {
            reason: "no token yet".into(),
        });
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let config = Arc::new(config);
        let mut tasks = Vec::new();
        if config.follow_events {
            tasks.push(tokio::spawn(follow_events(config.clone(), ev_tx)));
        }
        tasks.push(tokio::spawn(refresh_loop(config, tx, ev_rx)));
        LicenseWatch { rx, tasks }
    }

    /// The current state. A token whose monotonic deadline has passed is
    /// reported as expired even before the background task notices, so this
    /// agrees with [`Self::is_licensed`] at every instant.
    pub fn state(&self) -> LicenseState {
        match &*self.rx.borrow() {
            LicenseState::Licensed { expires, .. } if *expires <= std::time::Instant::now() => {
                LicenseState::Unlicensed {
                    reason: "token expired; no new one yet".into(),
                }
            }
            s => s.clone(),
        }
    }

    /// Whether the service holds a token that has not run out (checked
    /// against the monotonic clock at the moment of the call).
    pub fn is_licensed(&self) -> bool {
        matches!(&*self.rx.borrow(), LicenseState::Licensed { expires, .. } if *expires > std::time::Instant::now())
    }

    /// A receiver of every change.
    pub fn subscribe(&self) -> watch::Receiver<LicenseState> {
        self.rx.clone()
    }
}

/// One GET: status, `Retry-After` seconds, body.
async fn get(
    host_port: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, Option<u64>, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(host_port)
            .await
            .map_err(|e| format!("cannot reach the authority at {host_port}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {host_port}: {e}"))?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(HOST, host_port);
        if let Some(b) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {b}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to {host_port}: {e}"))?;
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, retry, body))
    };
    timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the authority at {host_port} did not answer in time"))?
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.85..1.15))
}

enum Fetch {
    /// A verified token, and when to fetch the next one.
    Token(LicenseState, Instant),
    /// The authority says no token now (dongle absent, license refused):
    /// drop the license, retry after this long.
    Refused(String, Duration),
    /// The authority could not be asked: keep the current token.
    Failed(String),
}

async fn fetch(config: &WatchConfig) -> Fetch {
    let mut raw = [0u8; 18];
    tether_keys::random_fill(&mut raw);
    let nonce = URL_SAFE_NO_PAD.encode(raw);
    let path = match &config.instance {
        Some(id) => format!("/token?nonce={nonce}&instance={id}"),
        None => format!("/token?nonce={nonce}"),
    };
    let (status, retry, body) =
        match get(&config.host_port, &path, Some(config.secret.expose())).await {
            Ok(r) => r,
            Err(e) => return Fetch::Failed(e),
        };
    let received = Instant::now();
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| "no reason given".into());
        let reason = format!("authority refused a token ({status}): {message}");
        return match status {
            // The authority's answer on the license itself: believe it at once.
            401 | 403 | 503 => {
                Fetch::Refused(reason, Duration::from_secs(retry.unwrap_or(1).clamp(1, 30)))
            }
            _ => Fetch::Failed(reason),
        };
    }
    let token = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => match v["token"].as_str() {
            Some(t) => t.to_string(),
            None => return Fetch::Failed("authority answered without a token".into()),
        },
        Err(_) => return Fetch::Failed("authority answered with malformed JSON".into()),
    };
    match config
        .verifier
        .verify_at(&token, Some(&nonce), (config.wall_clock)())
    {
        Ok(v) => {
            let life = Duration::from_secs(v.claims.exp.saturating_sub(v.claims.iat));
            let expires = received + life;
            let next = received + jitter(life / 2);
            Fetch::Token(
                LicenseState::Licensed {
                    claims: v.claims,
                    token: RawToken(token.into()),
                    expires: expires.into_std(),
                },
                next,
            )
        }
        Err(e) => Fetch::Refused(format!("token refused: {e}"), BACKOFF_MIN * 4),
    }
}

async fn refresh_loop(
    config: Arc<WatchConfig>,
    tx: watch::Sender<LicenseState>,
    mut events: mpsc::Receiver<Presence>,
) {
    let mut next_fetch = Instant::now();
    let mut deadline: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    let far = || Instant::now() + Duration::from_secs(86_400);
    loop {
        tokio::select! {
            () = sleep_until(next_fetch) => {
                // The deadline cannot fire while this branch awaits, so a fetch
                // that hangs must not outlive the token it is meant to replace.
                let fetched = match deadline {
                    Some(end) => tokio::time::timeout_at(end, fetch(&config))
                        .await
                        .unwrap_or_else(|_| {
                            Fetch::Failed("the authority did not answer before the token expired".into())
                        }),
                    None => fetch(&config).await,
                };
                match fetched {
                    Fetch::Token(state, next) => {
                        if let LicenseState::Licensed { expires, .. } = &state {
                            deadline = Some(Instant::from_std(*expires));
                        }
                        tx.send_replace(state);
                        next_fetch = next;
                        backoff = BACKOFF_MIN;
                    }
                    Fetch::Refused(reason, retry) => {
                        log_change(&tx, &reason);
                        tx.send_replace(LicenseState::Unlicensed { reason });
                        deadline = None;
                        next_fetch = Instant::now() + jitter(retry);
                    }
                    Fetch::Failed(reason) => {
                        last_error = reason;
                        next_fetch = Instant::now() + jitter(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        if deadline.is_none() {
                            tx.send_replace(LicenseState::Unlicensed { reason: last_error.clone() });
                        }
                    }
                }
            }
            () = sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                deadline = None;
                let reason = format!("token expired and no new one could be fetched: {last_error}");
                log_change(&tx, &reason);
                tx.send_replace(LicenseState::Unlicensed { reason });
            }
            ev = events.recv() => match ev {
                Some(Presence::Absent(reason)) => {
                    deadline = None;
                    let reason = format!("authority reports the dongle absent: {reason}");
                    log_change(&tx, &reason);
                    tx.send_replace(LicenseState::Unlicensed { reason });
                    // The next fetch follows `present`, or the usual retry.
                    next_fetch = Instant::now() + Duration::from_secs(1);
                }
                Some(Presence::Present) => {
                    if !matches!(&*tx.borrow(), LicenseState::Licensed { .. }) {
                        next_fetch = Instant::now();
                    }
                }
                // The events task ended (it never does while we run); go on polling.
                None => events = mpsc::channel(1).1,
            },
        }
    }
}

fn log_change(tx: &watch::Sender<LicenseState>, reason: &str) {
    if matches!(&*tx.borrow(), LicenseState::Licensed { .. }) {
        tracing::warn!(%reason, "license lost");
    }
}

/// A presence event from `/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Present,
    Absent(String),
}

/// Parses one SSE event block's `data:` as a presence event.
fn parse_event(data: &str) -> Option<Presence> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    match v["state"].as_str()? {
        "present" => Some(Presence::Present),
        "absent" => Some(Presence::Absent(
            v["reason"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        )),
        _ => None,
    }
}

async fn follow_events(config: Arc<WatchConfig>, tx: mpsc::Sender<Presence>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match stream_events(&config.host_port, &tx).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => tracing::debug!(error = %e, "event stream unavailable"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Reads `/events` until it ends, forwarding presence events.
async fn stream_events(host_port: &str, tx: &mpsc::Sender<Presence>) -> Result<(), String> {
    let stream = timeout(HTTP_TIMEOUT, tokio::net::TcpStream::connect(host_port))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/events")
        .header(HOST, host_port)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = timeout(HTTP_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut pending = String::new();
    let mut data = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(chunk));
        if pending.len() > MAX_BODY {
            return Err("event line too long".into());
        }
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let Some(ev) = parse_event(&data)
                    && tx.send(ev).await.is_err()
                {
                    return Ok(());
                }
                data.clear();
            } else if let Some(d) = line.strip_prefix("data:") {
                // Each line is bounded above; so is an event of many lines.
                if data.len() + d.len() > MAX_BODY {
                    return Err("event too long".into());
                }
                data.push_str(d.trim_start());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        assert_eq!(
            parse_event(r#"{"state":"present","reason":"x","since":1}"#),
            Some(Presence::Present)
        );
        assert_eq!(
            parse_event(r#"{"state":"absent","reason":"unplugged","since":1}"#),
            Some(Presence::Absent("unplugged".into()))
        );
        assert_eq!(parse_event("not json"), None);
        assert_eq!(parse_event(r#"{"state":"weird"}"#), None);
    }

    #[test]
    fn instance_ids() {
        for ok in ["a", "run-1.x_Y", &"z".repeat(64)] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in ["", &"z".repeat(65), "a b", "a&b=c", "a/b", "é"] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }

    /// A server streaming `data:` lines that never end an event must not
    /// grow the consumer's memory without bound.
    #[tokio::test]
    async fn an_endless_event_is_cut_off() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                .await
                .unwrap();
            let line = format!("data:{}\n", "A".repeat(1000));
            // Far more than the bound, unless the client hangs up first.
            for _ in 0..100_000 {
                if s.write_all(line.as_bytes()).await.is_err() {
                    return true;
                }
            }
            false
        });
        let (tx, _rx) = mpsc::channel(4);
        let result = timeout(Duration::from_secs(20), stream_events(&addr, &tx))
            .await
            .unwrap();
        assert_eq!(result, Err("event too long".to_string()));
        assert!(server.await.unwrap(), "the client read 100 MB of one event");
    }
}
