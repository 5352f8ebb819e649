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
//! `Retry-After` on a 429 or 503 (delta-seconds or an HTTP-date, RFC 9110
//! section 10.2.3) is honoured: the next fetch waits at least that long, plus
//! random jitter so replicas do not retry in step. A 429's wait is kept even
//! when a `present` event arrives meanwhile; a 503's (dongle absent) gives
//! way to a `present` event, which is newer news.
//!
//! A second task follows `GET /events` (sending the service credential, so
//! an authority can keep capacity for enrolled services) and drops the
//! license the moment the authority reports `absent`. On `present` the next
//! fetch comes after a random delay of up to [`WatchConfig::event_spread`],
//! so N replicas reach an authority limited to R tokens a second at about
//! R a second instead of all at once. While the stream cannot be followed
//! (refused, 503, errors) the refresher says so at WARN (once, then at most
//! once a minute) and refreshes every [`WatchConfig::fallback_refresh`]
//! instead of at half-life, so an unplug is still noticed within seconds;
//! half-life returns with the stream. Dropping the [`LicenseWatch`] stops
//! both tasks. Neither the secret nor a token is ever logged.
//!
//! Each token's `iat` is compared with our wall clock at receipt: the
//! difference is [`WatchHealth::clock_skew_secs`], and a WARN says so when
//! it exceeds half the verifier's leeway.
//!
//! Freshness (issue 15): nonces are kept in a ring of two, the current one
//! and the previous one. Until a token shows a license with a
//! `nonce_period` F, every request draws a new nonce and only it is
//! accepted, as before. Under such a license the current nonce is kept and
//! replaced (monotonic clock) once it is F/2 old, the next fetch coming no
//! later than that; a token may echo the current nonce, or the previous one
//! while that was drawn less than F ago (the authority answers with it until
//! the new one is in a certificate), and the verifier checks that the nonce
//! is included in the certificate's commitment. A token echoing the
//! previous nonce drawn F ago or longer is refused as stale; a nonce we did
//! not draw, never. A 503 `awaiting_certificate` (our nonce is pending in
//! the next certificate) is retried with the same nonce after `Retry-After`,
//! keeping the current token and logging at DEBUG only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HOST, RETRY_AFTER};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use tether_keys::wire::RefusalCode;
use tether_keys::{ServiceSecret, TokenClaims, UnixTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::Verifier;

/// Longest wait for one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff bounds between failed fetches or event reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Larger answers are refused, in bytes.
const MAX_BODY: usize = 64 * 1024;
/// The longest `Retry-After` honoured: a longer one (or a date further
/// ahead) waits this long, so a confused server cannot park us for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// An event stream silent for this long is taken as dead (the authority
/// sends a keep-alive comment every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// At most one WARN per this long about a stream that cannot be followed.
const WARN_EVERY: Duration = Duration::from_secs(60);

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

/// How well the refresher can follow the authority, for a service's status
/// page: whether the event stream is open, and whether clocks agree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WatchHealth {
    /// The `/events` stream is open now. Always `false` when following is
    /// off ([`WatchConfig::follow_events`]).
    pub following_events: bool,
    /// Why the stream is not followed, while it is not (and following is on).
    pub events_problem: Option<String>,
    /// The authority's clock minus ours, in seconds (positive: the authority
    /// is ahead), from the last token's `iat` at its receipt. Whole seconds
    /// and the request's transit time make it exact to about 1 s.
    pub clock_skew_secs: Option<i64>,
    /// The skew is larger than half the verifier's leeway: tokens will soon
    /// be refused as not yet valid or expired if it grows.
    pub clocks_disagree: bool,
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

pub use tether_keys::wire::is_instance_id;

/// What the refresher needs.
pub struct WatchConfig {
    host_port: String,
    service: String,
    secret: ServiceSecret,
    verifier: Arc<Verifier>,
    follow_events: bool,
    fallback_refresh: Duration,
    event_spread: Duration,
    wall_clock: fn() -> UnixTime,
    monotonic: fn() -> std::time::Instant,
    instance: String,
}

impl std::fmt::Debug for WatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchConfig")
            .field("authority", &self.host_port)
            .field("service", &self.service)
            .field("follow_events", &self.follow_events)
            .field("fallback_refresh", &self.fallback_refresh)
            .field("event_spread", &self.event_spread)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl WatchConfig {
    /// Tokens for `service` from the authority at `url` (`http://host:port`).
    /// Defaults: follow events, refresh every 3 s while they cannot be
    /// followed, spread fetches after `present` over up to 1 s.
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
            fallback_refresh: Duration::from_secs(3),
            event_spread: Duration::from_secs(1),
            wall_clock: UnixTime::now,
            monotonic: std::time::Instant::now,
            instance: random_instance(service),
        }
    }

    /// This consumer's instance id (default: the service name and 12 random
    /// characters, new at every process start): it holds a seat's lease at
    /// the authority, and every token must name it.
    ///
    /// # Errors
    /// [`InvalidInstance`] when `id` is not 1-64 characters of `[A-Za-z0-9._-]`.
    pub fn instance(mut self, id: &str) -> Result<Self, InvalidInstance> {
        if !is_instance_id(id) {
            return Err(InvalidInstance);
        }
        self.instance = id.to_string();
        Ok(self)
    }

    /// The instance id this watch fetches tokens as.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether to follow `/events` (default on). Off, the license ends at
    /// token expiry at the latest.
    pub fn follow_events(mut self, on: bool) -> Self {
        self.follow_events = on;
        self
    }

    /// How often to fetch a token while the event stream cannot be followed
    /// (default 3 s, at least 250 ms): the longest an unplug then goes
    /// unnoticed. Jittered by up to 15 %.
    pub fn fallback_refresh(mut self, every: Duration) -> Self {
        self.fallback_refresh = every.max(BACKOFF_MIN);
        self
    }

    /// The longest random delay before the fetch that follows a `present`
    /// event (default 1 s; zero fetches at once). Replicas of one service
    /// share its rate limit: N replicas at R tokens a second want a spread
    /// of about N / R seconds; retries after a 429 honour `Retry-After`.
    pub fn event_spread(mut self, spread: Duration) -> Self {
        self.event_spread = spread;
        self
    }

    /// The wall clock verification uses; for tests.
    #[doc(hidden)]
    pub fn wall_clock(mut self, clock: fn() -> UnixTime) -> Self {
        self.wall_clock = clock;
        self
    }

    /// The monotonic clock the nonce ring ages its nonces by; for tests,
    /// which advance it instead of sleeping for minutes.
    #[doc(hidden)]
    pub fn monotonic_clock(mut self, clock: fn() -> std::time::Instant) -> Self {
        self.monotonic = clock;
        self
    }
}

/// Keeps a service licensed in the background. Stops when dropped.
#[derive(Debug)]
pub struct LicenseWatch {
    config: Arc<WatchConfig>,
    rx: watch::Receiver<LicenseState>,
    /// Tells subscribers the seat was released.
    tx: watch::Sender<LicenseState>,
    /// Set by [`LicenseWatch::release`]: licensed no more, whatever an
    /// aborted task may still send.
    released: std::sync::atomic::AtomicBool,
    health: watch::Receiver<WatchHealth>,
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
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(config: WatchConfig) -> LicenseWatch {
        let (tx, rx) = watch::channel(LicenseState::Unlicensed {
            reason: "no token yet".into(),
        });
        let (health_tx, health) = watch::channel(WatchHealth::default());
        let health_tx = Arc::new(health_tx);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let config = Arc::new(config);
        let mut tasks = Vec::new();
        if config.follow_events {
            tasks.push(tokio::spawn(follow_events(
                config.clone(),
                ev_tx,
                health_tx.clone(),
            )));
        }
        tasks.push(tokio::spawn(refresh_loop(
            config.clone(),
            tx.clone(),
            ev_rx,
            health_tx,
        )));
        LicenseWatch {
            config,
            rx,
            tx,
            released: std::sync::atomic::AtomicBool::new(false),
            health,
            tasks,
        }
    }

    /// This consumer's instance id (`WatchConfig::instance`).
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// Stops fetching and releases this instance's seat at the authority
    /// (`DELETE /lease`) at once, for a graceful shutdown. Without it the
    /// seat comes back when the lease lapses, one token lifetime later.
    ///
    /// # Errors
    /// When the authority cannot be reached or refuses (no lease held is not
    /// an error).
    ///
    /// From then on this instance is unlicensed, though its last token has
    /// not expired: another instance may hold the seat now.
    pub async fn release(&self) -> Result<(), String> {
        for t in &self.tasks {
            t.abort();
        }
        // The proof that we are the instance: our latest token's jti.
        let jti = match &*self.tx.borrow() {
            LicenseState::Licensed { claims, .. } => Some(claims.jti.clone()),
            LicenseState::Unlicensed { .. } => None,
        };
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx.send_replace(released_state());
        match jti {
            Some(jti) => release_lease(&self.config, &jti).await,
            // No token held: nothing to prove, and any lease lapses soon.
            None => Ok(()),
        }
    }

    /// The current state. A token whose monotonic deadline has passed is
    /// reported as expired even before the background task notices, so this
    /// agrees with [`Self::is_licensed`] at every instant.
    pub fn state(&self) -> LicenseState {
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return released_state();
        }
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
        !self.released.load(std::sync::atomic::Ordering::SeqCst)
            && matches!(&*self.rx.borrow(), LicenseState::Licensed { expires, .. } if *expires > std::time::Instant::now())
    }

    /// A receiver of every change.
    pub fn subscribe(&self) -> watch::Receiver<LicenseState> {
        self.rx.clone()
    }

    /// Whether the event stream is followed and clocks agree, now.
    pub fn health(&self) -> WatchHealth {
        self.health.borrow().clone()
    }
}

/// A refusal's status, `Retry-After` and body.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 section
/// 10.2.3), the date measured against `now`. Capped at
/// [`MAX_RETRY_AFTER`]; a date in the past means no wait; anything else is
/// ignored (`None`).
fn parse_retry_after(value: &str, now: UnixTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only too many of them fail to parse.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        UnixTime::from_secs(at).saturating_duration_since(now)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// One GET of `/token`.
/// The state once the seat has been released.
fn released_state() -> LicenseState {
    LicenseState::Unlicensed {
        reason: "seat released; no longer fetching tokens".into(),
    }
}

/// A random instance id: `SERVICE-` (at most 51 characters of it) and 12
/// base32 characters (60 bits).
fn random_instance(service: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut raw = [0u8; 12];
    tether_keys::random_fill(&mut raw);
    let suffix: String = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    let prefix: String = service
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(51)
        .collect();
    if prefix.is_empty() {
        suffix
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// Releases this instance's seat at the authority (`DELETE /lease`), for a
/// graceful shutdown; a lease not released lapses one token lifetime later.
///
/// # Errors
/// When the authority cannot be reached or answers other than 204 or 404
/// (no lease held).
async fn release_lease(config: &WatchConfig, jti: &str) -> Result<(), String> {
    let path = format!("/lease?instance={}&jti={jti}", config.instance);
    let answer = request(
        hyper::Method::DELETE,
        &config.host_port,
        &path,
        config.secret.expose(),
        (config.wall_clock)(),
    )
    .await?;
    match answer.status {
        204 | 404 => Ok(()),
        other => Err(format!(
            "the authority answered {other} to releasing the lease"
        )),
    }
}

async fn get(host_port: &str, path: &str, bearer: &str, now: UnixTime) -> Result<Answer, String> {
    request(hyper::Method::GET, host_port, path, bearer, now).await
}

async fn request(
    method: hyper::Method,
    host_port: &str,
    path: &str,
    bearer: &str,
    now: UnixTime,
) -> Result<Answer, String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(host_port)
            .await
            .map_err(|e| format!("cannot reach the authority at {host_port}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {host_port}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host_port)
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to {host_port}: {e}"))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the authority at {host_port} did not answer in time"))?
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.85..1.15))
}

/// `d` plus a random extra of up to `d / 2`: never less than `d`, as
/// `Retry-After` asks, and spread so replicas told the same do not return
/// in step. Never less than [`BACKOFF_MIN`] either: a server answering
/// `Retry-After: 0` again and again must not get a tight loop.
fn at_least(d: Duration) -> Duration {
    let d = d.max(BACKOFF_MIN);
    d + d.mul_f64(rand::rng().random_range(0.0..0.5))
}

enum Fetch {
    /// A verified token, when to fetch the next one, and the clock skew
    /// measured at its receipt (seconds, the authority's clock minus ours).
    Token(LicenseState, Instant, i64),
    /// The authority says no token now (dongle absent, license refused):
    /// drop the license, retry after this long.
    Refused(String, Duration),
    /// 429: too many requests for this service; keep the current token and
    /// wait at least this long.
    RateLimited(String, Duration),
    /// 503 `awaiting_certificate`: our nonce will be in the next
    /// certificate; keep the current token and the nonce, ask again after
    /// this long.
    Pending(String, Duration),
    /// The authority could not be asked: keep the current token.
    Failed(String),
}

/// A new random nonce: 18 bytes, base64url (24 characters).
fn draw_nonce() -> String {
    let mut raw = [0u8; 18];
    tether_keys::random_fill(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The nonces this consumer drew and may still accept (issue 15): the
/// current one and the previous one, with the monotonic instants they were
/// drawn at.
#[derive(Debug)]
struct NonceRing {
    current: String,
    drawn: std::time::Instant,
    previous: Option<(String, std::time::Instant)>,
    /// The license's nonce period once a token has shown it (zero: none).
    period: Option<Duration>,
    /// Send the current nonce again (the authority said it is pending).
    keep: bool,
}

impl NonceRing {
    fn new(now: std::time::Instant) -> NonceRing {
        NonceRing {
            current: draw_nonce(),
            drawn: now,
            previous: None,
            period: None,
            // The first request sends the nonce just drawn.
            keep: true,
        }
    }

    /// The period, when the license demands freshness.
    fn freshness(&self) -> Option<Duration> {
        self.period.filter(|f| !f.is_zero())
    }

    /// The nonce for a request at `now`. Without a known nonce period, a
    /// new one per request (unless the authority said the last one is
    /// pending); with one, a new one once the current is half a period old.
    fn for_request(&mut self, now: std::time::Instant) -> String {
        let rotate = match self.freshness() {
            Some(f) => now.saturating_duration_since(self.drawn) >= f / 2,
            None => !self.keep,
        };
        self.keep = false;
        if rotate {
            let old = std::mem::replace(&mut self.current, draw_nonce());
            self.previous = Some((old, self.drawn));
            self.drawn = now;
        }
        self.current.clone()
    }

    /// Send the current nonce again: the authority has it pending.
    fn hold(&mut self) {
        self.keep = true;
    }

    /// The nonces a token may echo: the current one, and under a nonce
    /// period the previous one too ([`NonceRing::judge`] then checks its age).
    fn accepted(&self) -> Vec<&str> {
        let mut out = vec![self.current.as_str()];
        if self.freshness().is_some()
            && let Some((p, _)) = &self.previous
        {
            out.push(p.as_str());
        }
        out
    }

    /// Refuses an echo of the previous nonce drawn a period ago or longer.
    ///
    /// # Errors
    /// [`crate::Error::StaleNonce`].
    fn judge(&self, echoed: Option<&str>, now: std::time::Instant) -> crate::Result<()> {
        if let (Some(f), Some((p, at)), Some(e)) = (self.freshness(), &self.previous, echoed)
            && p == e
            && e != self.current
            && now.saturating_duration_since(*at) >= f
        {
            return Err(crate::Error::StaleNonce);
        }
        Ok(())
    }

    /// Learns the license's nonce period (seconds) from a verified token.
    fn learn(&mut self, period_secs: u32) {
        self.period = Some(Duration::from_secs(u64::from(period_secs)));
    }

    /// Under a nonce period, how long `echoed` (a nonce of ours) stays
    /// fresh from `now`: until it is F old. `None` without a nonce period.
    fn fresh_for(&self, echoed: Option<&str>, now: std::time::Instant) -> Option<Duration> {
        let f = self.freshness()?;
        let drawn = match (echoed, &self.previous) {
            (Some(e), Some((p, at))) if e == p && e != self.current => *at,
            _ => self.drawn,
        };
        Some((drawn + f).saturating_duration_since(now))
    }

    /// How long until the current nonce is due for replacement, under a
    /// nonce period.
    fn rotation_in(&self, now: std::time::Instant) -> Option<Duration> {
        let f = self.freshness()?;
        Some((self.drawn + f / 2).saturating_duration_since(now))
    }
}

async fn fetch(config: &WatchConfig, ring: &mut NonceRing) -> Fetch {
    let nonce = ring.for_request((config.monotonic)());
    let path = format!("/token?nonce={nonce}&instance={}", config.instance);
    let answer = match get(
        &config.host_port,
        &path,
        config.secret.expose(),
        (config.wall_clock)(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Fetch::Failed(e),
    };
    let received = Instant::now();
    let status = answer.status;
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| "no reason given".into());
        let code = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string));
        let reason = format!("authority refused a token ({status}): {message}");
        if status == 503 && code.as_deref() == Some(RefusalCode::AwaitingCertificate.as_str()) {
            ring.hold();
            return Fetch::Pending(
                format!("our nonce is pending in the authority's next certificate: {message}"),
                at_least(answer.retry_after.unwrap_or(Duration::from_secs(1))),
            );
        }
        return match status {
            429 => Fetch::RateLimited(
                reason,
                at_least(answer.retry_after.unwrap_or(Duration::from_secs(1))),
            ),
            // The authority's answer on the license itself: believe it at once.
            401 | 403 | 409 | 503 => Fetch::Refused(
                reason,
                match answer.retry_after {
                    Some(wait) => at_least(wait),
                    None => jitter(Duration::from_secs(1)),
                },
            ),
            _ => Fetch::Failed(reason),
        };
    }
    let token = match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(v) => match v["token"].as_str() {
            Some(t) => t.to_string(),
            None => return Fetch::Failed("authority answered without a token".into()),
        },
        Err(_) => return Fetch::Failed("authority answered with malformed JSON".into()),
    };
    let now = (config.wall_clock)();
    let verified = config
        .verifier
        .verify_fresh(&token, &ring.accepted(), now)
        .and_then(|v| {
            ring.judge(v.nonce.as_deref(), (config.monotonic)())?;
            Ok(v)
        });
    if let Ok(v) = &verified {
        ring.learn(v.nonce_period);
    } else if matches!(verified, Err(crate::Error::NonceMismatch))
        && let Ok(v) = config.verifier.verify_at(&token, None, now)
    {
        // A genuine token for a nonce we did not draw: under a nonce period,
        // the authority answered under the leaf an earlier process of this
        // instance left in its certificate (a restart under a stable
        // instance id). Learn the period, so that our nonce is kept until it
        // is committed rather than replaced on every retry (each one would
        // reach a certificate one request too late, for ever). The token
        // itself stays refused.
        ring.learn(v.nonce_period);
    }
    match verified {
        Ok(v)
            if !crate::verify::instance_matches(
                v.claims.ins.as_deref(),
                &config.instance,
                v.seats,
            ) =>
        {
            Fetch::Refused(
                "token refused: it was issued to another instance".into(),
                BACKOFF_MIN * 4,
            )
        }
        Ok(v) => {
            if let Some(until) = v.grace {
                tracing::warn!(
                    service = %config.service,
                    grace_until = until.secs(),
                    "the license has expired and runs on its vendor-signed grace period, which ends {}: tokens stop then; ask for a renewed license",
                    httpdate::fmt_http_date(
                        std::time::UNIX_EPOCH + Duration::from_secs(until.secs())
                    )
                );
            }
            let skew = i64::try_from(v.claims.iat.secs())
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(now.secs()).unwrap_or(i64::MAX));
            let life = v.claims.exp.saturating_duration_since(v.claims.iat);
            let mut expires = received + life;
            let mut next = received + jitter(life / 2);
            // Freshness: a token is good only while its nonce is less than F
            // old (the bound "F of operation without the dongle" holds for
            // the token in hand too), and tokens are fetched at least every
            // F/8, so a rotated nonce is in hand well before the old one
            // turns F old.
            if let (Some(fresh), Some(f)) = (
                ring.fresh_for(v.nonce.as_deref(), (config.monotonic)()),
                ring.freshness(),
            ) {
                expires = expires.min(Instant::now() + fresh);
                next = next.min(received + f / 8);
            }
            Fetch::Token(
                LicenseState::Licensed {
                    claims: v.claims,
                    token: RawToken(token.into()),
                    expires: expires.into_std(),
                },
                next,
                skew,
            )
        }
        Err(e) => Fetch::Refused(format!("token refused: {e}"), BACKOFF_MIN * 4),
    }
}

/// Records the skew measured at a token's receipt; WARN when clocks start
/// to disagree by more than half the leeway, INFO when they agree again.
fn record_skew(config: &WatchConfig, health: &watch::Sender<WatchHealth>, skew: i64) {
    let leeway = config.verifier.expectations().leeway_secs();
    let disagree = skew.unsigned_abs().saturating_mul(2) > leeway;
    let was = health.borrow().clocks_disagree;
    if disagree && !was {
        tracing::warn!(
            service = %config.service,
            authority_ahead_s = skew,
            leeway_s = leeway,
            "the authority's clock and ours disagree by more than half the leeway: fix the clocks (NTP) before tokens are refused"
        );
    } else if !disagree && was {
        tracing::info!(service = %config.service, authority_ahead_s = skew, "clocks agree again");
    }
    health.send_modify(|h| {
        h.clock_skew_secs = Some(skew);
        h.clocks_disagree = disagree;
    });
}

async fn refresh_loop(
    config: Arc<WatchConfig>,
    tx: watch::Sender<LicenseState>,
    mut events: mpsc::Receiver<Presence>,
    health: Arc<watch::Sender<WatchHealth>>,
) {
    let mut next_fetch = Instant::now();
    let mut ring = NonceRing::new((config.monotonic)());
    let mut deadline: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    // The end of a 429's Retry-After: no fetch before it, event or not.
    let mut rate_limited_until: Option<Instant> = None;
    let mut health_rx = health.subscribe();
    // Optimistic until the events task says otherwise.
    let mut following = true;
    let far = || Instant::now() + Duration::from_secs(86_400);
    let degraded = |following: bool| config.follow_events && !following;
    loop {
        tokio::select! {
            () = sleep_until(next_fetch) => {
                // The deadline cannot fire while this branch awaits, so a fetch
                // that hangs must not outlive the token it is meant to replace.
                let fetched = match deadline {
                    Some(end) => tokio::time::timeout_at(end, fetch(&config, &mut ring))
                        .await
                        .unwrap_or_else(|_| {
                            Fetch::Failed("the authority did not answer before the token expired".into())
                        }),
                    None => fetch(&config, &mut ring).await,
                };
                let now = Instant::now();
                match fetched {
                    Fetch::Token(state, next, skew) => {
                        if let LicenseState::Licensed { expires, .. } = &state {
                            deadline = Some(Instant::from_std(*expires));
                        }
                        tx.send_replace(state);
                        record_skew(&config, &health, skew);
                        next_fetch = if degraded(following) {
                            next.min(now + jitter(config.fallback_refresh))
                        } else {
                            next
                        };
                        // A fresh nonce is due at F/2: fetch with it then.
                        if let Some(due) = ring.rotation_in((config.monotonic)()) {
                            next_fetch = next_fetch.min(now + due);
                        }
                        backoff = BACKOFF_MIN;
                        rate_limited_until = None;
                    }
                    Fetch::Refused(reason, retry) => {
                        log_change(&tx, &reason);
                        tx.send_replace(LicenseState::Unlicensed { reason });
                        deadline = None;
                        next_fetch = now + retry;
                        rate_limited_until = None;
                    }
                    Fetch::RateLimited(reason, retry) => {
                        tracing::debug!(%reason, wait_ms = retry.as_millis() as u64, "rate limited");
                        last_error = reason;
                        next_fetch = now + retry;
                        rate_limited_until = Some(next_fetch);
                        if deadline.is_none() {
                            tx.send_replace(LicenseState::Unlicensed { reason: last_error.clone() });
                        }
                    }
                    Fetch::Pending(reason, retry) => {
                        // Expected once per new nonce: no WARN, no license lost.
                        tracing::debug!(%reason, wait_ms = retry.as_millis() as u64, "nonce pending");
                        last_error = reason;
                        next_fetch = now + retry;
                        if deadline.is_none() {
                            tx.send_replace(LicenseState::Unlicensed { reason: last_error.clone() });
                        }
                    }
                    Fetch::Failed(reason) => {
                        last_error = reason;
                        next_fetch = now + jitter(backoff);
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
                    if let Some(until) = rate_limited_until {
                        next_fetch = next_fetch.max(until);
                    }
                }
                Some(Presence::Present) => {
                    if !matches!(&*tx.borrow(), LicenseState::Licensed { .. }) {
                        let spread = config
                            .event_spread
                            .mul_f64(rand::rng().random_range(0.0..1.0));
                        // Never later than a fetch already due (the first one
                        // at start, when the stream's opening `present` may
                        // arrive before it runs), never before a 429's wait.
                        next_fetch = next_fetch.min(Instant::now() + spread);
                        if let Some(until) = rate_limited_until {
                            next_fetch = next_fetch.max(until);
                        }
                    }
                }
                // The events task ended (it never does while we run); go on polling.
                None => events = mpsc::channel(1).1,
            },
            Ok(()) = health_rx.changed() => {
                let now_following = health_rx.borrow_and_update().following_events;
                if following && !now_following {
                    // Poll instead, until the stream is back.
                    let soon = Instant::now() + jitter(config.fallback_refresh);
                    next_fetch = next_fetch.min(soon.max(rate_limited_until.unwrap_or(soon)));
                }
                following = now_following;
            }
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

/// Parses one SSE event's data as a presence event.
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

/// Why an event stream could not be opened or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamError {
    /// In words.
    message: String,
    /// The server's `Retry-After`, when it refused.
    retry_after: Option<Duration>,
}

impl From<String> for StreamError {
    fn from(message: String) -> Self {
        StreamError {
            message,
            retry_after: None,
        }
    }
}

async fn follow_events(
    config: Arc<WatchConfig>,
    tx: mpsc::Sender<Presence>,
    health: Arc<watch::Sender<WatchHealth>>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures: u64 = 0;
    let mut last_warn: Option<Instant> = None;
    loop {
        let mut connected = false;
        let result = stream_events(&config, &tx, &mut || {
            connected = true;
            health.send_modify(|h| {
                h.following_events = true;
                h.events_problem = None;
            });
            if last_warn.take().is_some() {
                tracing::info!(service = %config.service, failures, "following the authority's events again");
            }
            failures = 0;
        })
        .await;
        let problem = match &result {
            Ok(()) => "the event stream ended".to_string(),
            Err(e) => e.message.clone(),
        };
        health.send_modify(|h| {
            h.following_events = false;
            h.events_problem = Some(problem.clone());
        });
        if tx.is_closed() {
            return;
        }
        let wait = if connected {
            backoff = BACKOFF_MIN;
            tracing::debug!(error = %problem, "event stream ended; reconnecting");
            jitter(BACKOFF_MIN)
        } else {
            failures += 1;
            if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    service = %config.service,
                    error = %problem,
                    failures,
                    fallback_refresh_ms = config.fallback_refresh.as_millis() as u64,
                    "cannot follow the authority's events: an unplug is noticed at the next refresh; refreshing more often until the stream is back"
                );
                last_warn = Some(Instant::now());
            } else {
                tracing::debug!(error = %problem, failures, "event stream unavailable");
            }
            let retry = result.err().and_then(|e| e.retry_after);
            let wait = jitter(backoff).max(retry.map(at_least).unwrap_or_default());
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        };
        tokio::time::sleep(wait).await;
    }
}

/// Reads `/events` until it ends, forwarding presence events; calls
/// `on_open` once the authority has accepted the stream.
async fn stream_events(
    config: &WatchConfig,
    tx: &mpsc::Sender<Presence>,
    on_open: &mut (dyn FnMut() + Send),
) -> Result<(), StreamError> {
    let host_port = &config.host_port;
    let stream = timeout(HTTP_TIMEOUT, tokio::net::TcpStream::connect(host_port))
        .await
        .map_err(|_| format!("connecting to {host_port} timed out"))?
        .map_err(|e| format!("cannot reach the authority at {host_port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {host_port}: {e}"))?;
    tokio::spawn(conn);
    let req = Request::get("/events")
        .header(HOST, host_port.as_str())
        .header(AUTHORIZATION, format!("Bearer {}", config.secret.expose()))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = timeout(HTTP_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "the authority did not answer /events in time".to_string())?
        .map_err(|e| format!("request to {host_port}: {e}"))?;
    if resp.status() != 200 {
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, (config.wall_clock)()));
        return Err(StreamError {
            message: format!("the authority refused the event stream ({})", resp.status()),
            retry_after,
        });
    }
    on_open();
    let body = resp.into_body().into_data_stream();
    let mut events = std::pin::pin!(crate::sse::events(body));
    loop {
        let next = timeout(STREAM_IDLE, events.next())
            .await
            .map_err(|_| format!("the event stream was silent for {STREAM_IDLE:?}"))?;
        match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(e.to_string().into()),
            Some(Ok(ev)) => {
                // `state` is what the authority names its events
                // (docs/api.md); an unnamed one (`message`) is read the same
                // way; other names are for other consumers.
                if matches!(ev.event.as_str(), "state" | "message")
                    && let Some(p) = parse_event(&ev.data)
                    && tx.send(p).await.is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = UnixTime::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        // The obsolete forms RFC 9110 requires recipients to accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:07 2015", now),
            Some(Duration::from_secs(7))
        );
        // A date in the past: no wait.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Capped.
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        for junk in ["", "-1", "1.5", "soon", "Wed, 32 Oct 2015 07:28:07 GMT"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn waits_are_never_shorter_than_asked() {
        for _ in 0..1000 {
            let w = at_least(Duration::from_secs(1));
            assert!(w >= Duration::from_secs(1) && w < Duration::from_millis(1500));
            let w = at_least(Duration::ZERO);
            assert!(w >= BACKOFF_MIN && w < BACKOFF_MIN * 2);
        }
    }

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

    fn test_config(addr: &str) -> WatchConfig {
        WatchConfig::new(
            addr,
            "backend",
            ServiceSecret::generate(),
            Verifier::new(
                tether_keys::testkeys::vendor().public(),
                crate::Expectations::new("backend"),
            ),
        )
    }

    /// Serves one HTTP answer of `body` as an event stream, then closes.
    async fn one_stream(body: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            s.write_all(body).await.unwrap();
        });
        addr
    }

    /// Only `state` (and unnamed) events move the license; CRLF framing
    /// and a multi-line `data:` (JSON split over two lines, joined with a
    /// newline, which JSON reads as whitespace) are read as the spec says.
    #[tokio::test]
    async fn only_state_events_count() {
        let addr = one_stream(
            b": hello\r\n\r\nevent: lease\r\ndata: {\"state\":\"absent\"}\r\n\r\n\
              event: state\r\ndata: {\"state\":\r\ndata: \"absent\",\"reason\":\"unplugged\"}\r\n\r\n\
              data: {\"state\":\"present\"}\r\n\r\n",
        )
        .await;
        let (tx, mut rx) = mpsc::channel(8);
        let result = stream_events(&test_config(&addr), &tx, &mut || {}).await;
        assert_eq!(result, Ok(()));
        drop(tx);
        let mut got = Vec::new();
        while let Some(p) = rx.recv().await {
            got.push(p);
        }
        assert_eq!(
            got,
            [Presence::Absent("unplugged".into()), Presence::Present]
        );
    }

    /// Issue 15: one nonce per request until a nonce period is known (or
    /// while the authority has ours pending); then a new one every F/2, the
    /// previous one accepted for F after it was drawn.
    #[test]
    fn the_nonce_ring() {
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs;
        let mut ring = NonceRing::new(t0);
        let first = ring.for_request(t0);
        let second = ring.for_request(t0);
        assert_ne!(first, second, "a new nonce per request without a period");
        assert_eq!(ring.accepted(), [second.as_str()]);
        ring.hold();
        assert_eq!(
            ring.for_request(t0),
            second,
            "a pending nonce is sent again"
        );
        ring.learn(0);
        assert_ne!(ring.for_request(t0), second, "period 0: as before");

        ring.learn(60);
        let a = ring.for_request(t0 + s(1));
        assert_eq!(ring.for_request(t0 + s(29)), a);
        assert!(ring.rotation_in(t0 + s(29)).is_some());
        // F/2 after it was drawn (at t0, the last per-request draw).
        let b = ring.for_request(t0 + s(31));
        assert_ne!(a, b);
        assert_eq!(ring.accepted(), [b.as_str(), a.as_str()]);
        assert_eq!(ring.rotation_in(t0 + s(31)), Some(s(30)));
        ring.judge(Some(&b), t0 + s(100)).unwrap();
        ring.judge(Some(&a), t0 + s(59)).unwrap();
        assert_eq!(
            ring.judge(Some(&a), t0 + s(60)),
            Err(crate::Error::StaleNonce)
        );
        // Two rotations on, the first is forgotten: verify_fresh refuses it.
        let c = ring.for_request(t0 + s(61));
        assert_eq!(ring.accepted(), [c.as_str(), b.as_str()]);
        assert!(!ring.accepted().contains(&a.as_str()));
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
        let config = WatchConfig::new(
            &addr,
            "backend",
            ServiceSecret::generate(),
            Verifier::new(
                tether_keys::testkeys::vendor().public(),
                crate::Expectations::new("backend"),
            ),
        );
        let result = timeout(
            Duration::from_secs(20),
            stream_events(&config, &tx, &mut || {}),
        )
        .await
        .unwrap()
        .map_err(|e| e.message);
        assert_eq!(result, Err("event too long".to_string()));
        assert!(server.await.unwrap(), "the client read 100 MB of one event");
    }
}
