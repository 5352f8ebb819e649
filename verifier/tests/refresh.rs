//! The refresher against a small fake authority on loopback (real HTTP, real
//! SSE): licensed at start, dropped at once on `absent`, back on `present`,
//! kept until the monotonic deadline when the authority vanishes (even with
//! the wall clock set back), and a token that does not echo our nonce refused.
//! Then what crowded and rate-limited authorities do to consumers: a refused
//! event stream is reported at WARN and replaced by polling, `Retry-After` is
//! honoured, and replicas told `present` at once do not stampede. Last,
//! freshness (issue 15): the nonce ring's rotation, the previous nonce
//! accepted, a stale one refused, `awaiting_certificate` waited out quietly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::merkle::{Leaf, LeafSet};
use tether_keys::{
    Certificate, CredentialFile, DelegationRequest, License, LicenseId, LicenseTerms,
    ServiceSecret, TokenClaims, TokenSigner, UnixTime, testkeys,
};
use tether_verifier::{Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};
use tokio::sync::watch;
use warp::Filter as _;

const NORMAL: u8 = 0;
const FAIL_500: u8 = 1;
const WRONG_NONCE: u8 = 2;
/// Answer the next request 429 with `Retry-After` as an HTTP-date 3 s
/// ahead, then serve normally.
const LIMIT_BY_DATE: u8 = 3;

struct Fake {
    license: License,
    cert: Certificate,
    signer: TokenSigner,
    ttl: u64,
    mode: AtomicU8,
    present: watch::Sender<bool>,
    creds: CredentialFile,
    /// More credentials for the same service: one per replica, so the
    /// server can tell replicas apart (index + 1 in the log; 0 is `creds`).
    replicas: Vec<CredentialFile>,
    /// Answer `/events` with 503 `too_many_streams`.
    refuse_events: AtomicBool,
    /// The `Authorization` headers `/events` received.
    events_auth: Mutex<Vec<Option<String>>>,
    /// A token bucket shared by every credential: (tokens per second, state).
    rate: Option<(f64, Mutex<(f64, Instant)>)>,
    /// Every `/token` request: (replica, when it arrived, status answered).
    log: Mutex<Vec<(usize, Instant, u16)>>,
    /// Freshness (issue 15): the license has a nonce period, and tokens
    /// carry inclusion proofs in per-answer certificates.
    fresh: Option<Mutex<Freshness>>,
}

/// The fake's view of freshness: a nonce first asked with goes into the
/// next certificate, so the answer to it echoes the nonce committed before
/// (or, when there is none, 503 `awaiting_certificate`), and later answers
/// echo it.
#[derive(Default)]
struct Freshness {
    /// Nonces in the order first asked with.
    seen: Vec<String>,
    /// Nonces in a certificate, in order.
    committed: Vec<String>,
    /// Answers that echoed an older nonce than the one asked with.
    echoed_previous: usize,
    /// 503 `awaiting_certificate` answers.
    pending_answers: usize,
    /// Answer every request 503 `awaiting_certificate`.
    always_pending: bool,
}

fn fake(ttl: u64) -> (Arc<Fake>, ServiceSecret) {
    let now = UnixTime::now();
    let license = LicenseTerms {
        id: LicenseId([1; 16]),
        customer: "T".into(),
        dongle_serial: "TD-1".into(),
        dongle: testkeys::dongle().public().into(),
        issued_at: now - Duration::from_secs(60),
        not_before: now - Duration::from_secs(60),
        not_after: now + Duration::from_secs(3600),
        max_token_ttl: 300,
        features: vec![],
        services: vec!["backend".into()],
        seats: Default::default(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
    .sign(&testkeys::vendor())
    .unwrap();
    let cert = Certificate::sign(
        DelegationRequest::new(
            [2; 32],
            testkeys::session().public(),
            now - Duration::from_secs(30),
            now + Duration::from_secs(600),
        ),
        "TD-1",
        1,
        &testkeys::dongle(),
    )
    .unwrap();
    let mut creds = CredentialFile::default();
    let secret = creds.enroll("backend", false).unwrap();
    let f = Fake {
        license,
        cert,
        signer: TokenSigner::new(testkeys::session()).unwrap(),
        ttl,
        mode: AtomicU8::new(NORMAL),
        present: watch::channel(true).0,
        creds,
        replicas: Vec::new(),
        refuse_events: AtomicBool::new(false),
        events_auth: Mutex::new(Vec::new()),
        rate: None,
        log: Mutex::new(Vec::new()),
        fresh: None,
    };
    (Arc::new(f), secret)
}

/// A fake whose license demands a fresh nonce every 60 s (the least a
/// license allows).
fn fake_fresh(ttl: u64) -> (Arc<Fake>, ServiceSecret) {
    let (f, secret) = fake(ttl);
    let mut f = Arc::into_inner(f).unwrap();
    f.license = LicenseTerms {
        nonce_period: 60,
        ..f.license.terms().clone()
    }
    .sign(&testkeys::vendor())
    .unwrap();
    f.fresh = Some(Mutex::new(Freshness::default()));
    (Arc::new(f), secret)
}

/// A fake with `n` replica credentials and a shared limit of `rate` tokens a
/// second (burst of the same size, as tetherd's bucket).
fn fake_replicas(ttl: u64, n: usize, rate: f64) -> (Arc<Fake>, Vec<ServiceSecret>) {
    let (f, _) = fake(ttl);
    let mut f = Arc::into_inner(f).unwrap();
    let mut secrets = Vec::new();
    for _ in 0..n {
        let mut c = CredentialFile::default();
        secrets.push(c.enroll("backend", false).unwrap());
        f.replicas.push(c);
    }
    f.rate = Some((rate, Mutex::new((rate, Instant::now()))));
    (Arc::new(f), secrets)
}

fn take_rate(f: &Fake) -> bool {
    let Some((rate, bucket)) = &f.rate else {
        return true;
    };
    let mut b = bucket.lock().unwrap();
    let now = Instant::now();
    b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(*rate);
    b.1 = now;
    if b.0 >= 1.0 {
        b.0 -= 1.0;
        true
    } else {
        false
    }
}

#[derive(serde::Deserialize)]
struct Q {
    nonce: Option<String>,
    instance: Option<String>,
}

fn token_reply(f: &Fake, auth: Option<String>, q: Q) -> warp::reply::Response {
    use warp::Reply as _;
    use warp::http::StatusCode;
    let err = |s: StatusCode, m: &str| {
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"code":"x","message":m})),
            s,
        )
        .into_response()
    };
    let bearer = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let who = if f.creds.authenticate(bearer.as_bytes()).is_some() {
        0
    } else if let Some(i) = f
        .replicas
        .iter()
        .position(|c| c.authenticate(bearer.as_bytes()).is_some())
    {
        i + 1
    } else {
        return err(StatusCode::UNAUTHORIZED, "unknown service credential");
    };
    let arrived = Instant::now();
    let logged = |status: StatusCode, r: warp::reply::Response| {
        f.log.lock().unwrap().push((who, arrived, status.as_u16()));
        r
    };
    let with_retry = |s: StatusCode, m: &str| {
        let mut r = err(s, m);
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from_static("1"));
        logged(s, r)
    };
    match f.mode.load(Ordering::SeqCst) {
        FAIL_500 => return err(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        _ if !*f.present.borrow() => {
            return with_retry(StatusCode::SERVICE_UNAVAILABLE, "dongle absent");
        }
        _ => {}
    }
    if f.mode
        .compare_exchange(LIMIT_BY_DATE, NORMAL, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        let at = std::time::SystemTime::now() + Duration::from_secs(3);
        let mut r = err(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        r.headers_mut().insert(
            "retry-after",
            warp::http::HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap(),
        );
        return logged(StatusCode::TOO_MANY_REQUESTS, r);
    }
    if !take_rate(f) {
        return with_retry(StatusCode::TOO_MANY_REQUESTS, "rate limited");
    }
    let now = UnixTime::now();
    let nonce = if f.mode.load(Ordering::SeqCst) == WRONG_NONCE {
        Some("someone-elses".to_string())
    } else {
        q.nonce
    };
    let mut dcert = URL_SAFE_NO_PAD.encode(f.cert.encoded());
    let (mut nonce, mut ins, mut prf) = (nonce, None, None);
    if let Some(fresh) = &f.fresh {
        let mut fr = fresh.lock().unwrap();
        let asked = nonce.clone().unwrap_or_default();
        let pending = |fr: &mut Freshness| {
            fr.pending_answers += 1;
            let mut r = warp::reply::with_status(
                warp::reply::json(&serde_json::json!({
                    "code": "awaiting_certificate",
                    "message": "your nonce will be in the next certificate"
                })),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response();
            r.headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from_static("1"));
            logged(StatusCode::SERVICE_UNAVAILABLE, r)
        };
        if fr.always_pending {
            return pending(&mut fr);
        }
        if !fr.seen.contains(&asked) {
            fr.seen.push(asked.clone());
        }
        let echo = if fr.committed.contains(&asked) {
            asked
        } else {
            let before = fr.committed.last().cloned();
            fr.committed.push(asked);
            match before {
                Some(p) => {
                    fr.echoed_previous += 1;
                    p
                }
                None => return pending(&mut fr),
            }
        };
        let instance = q.instance.unwrap_or_default();
        let set = LeafSet::new([
            Leaf::new("backend", instance.as_str(), echo.as_str()).unwrap(),
            Leaf::new("backend", "someone-else", "their-nonce").unwrap(),
        ]);
        let mine = Leaf::new("backend", instance.as_str(), echo.as_str()).unwrap();
        let proof = set.prove(set.index_of(&mine).unwrap()).unwrap();
        let mut req = DelegationRequest::new(
            [2; 32],
            testkeys::session().public(),
            now - Duration::from_secs(30),
            now + Duration::from_secs(600),
        );
        req.commitment = set.commitment().unwrap();
        let cert = Certificate::sign(req, "TD-1", 1, &testkeys::dongle()).unwrap();
        dcert = URL_SAFE_NO_PAD.encode(cert.encoded());
        nonce = Some(echo);
        ins = Some(instance);
        prf = Some(proof.to_claim());
    }
    let claims = TokenClaims {
        iss: "tether:TD-1".into(),
        sub: "backend".into(),
        aud: "backend".into(),
        iat: now,
        nbf: now,
        exp: now + Duration::from_secs(f.ttl),
        jti: format!("{}", now.secs()),
        lic: URL_SAFE_NO_PAD.encode(f.license.encoded()),
        dcert,
        nonce,
        ins,
        prf,
    };
    let token = f.signer.sign(&claims).unwrap();
    logged(
        StatusCode::OK,
        warp::reply::json(
            &serde_json::json!({"token": token, "expires_at": now + Duration::from_secs(f.ttl)}),
        )
        .into_response(),
    )
}

/// Serves the fake on 127.0.0.1:0; dropping the returned sender stops it.
async fn serve(f: Arc<Fake>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let f1 = f.clone();
    let token = warp::path!("token")
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<Q>())
        .map(move |a, q| token_reply(&f1, a, q));
    let f2 = f.clone();
    let events = warp::path!("events")
        .and(warp::header::optional::<String>("authorization"))
        .map(move |auth: Option<String>| {
        use warp::Reply as _;
        f2.events_auth.lock().unwrap().push(auth);
        if f2.refuse_events.load(Ordering::SeqCst) {
            let mut r = warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"code":"too_many_streams","message":"too many event streams"})),
                warp::http::StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response();
            r.headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from_static("1"));
            return r;
        }
        let rx = f2.present.subscribe();
        let s = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let present = *rx.borrow_and_update();
            let state = if present { "present" } else { "absent" };
            let ev = warp::sse::Event::default().event("state").data(format!(
                r#"{{"state":"{state}","reason":"test","since":0}}"#
            ));
            Some((Ok::<_, std::convert::Infallible>(ev), (rx, false)))
        });
        warp::sse::reply(warp::sse::keep_alive().stream(s)).into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(token.or(events))
            .incoming(listener)
            .graceful(async move {
                let _ = rx.await;
            })
            .run(),
    );
    (format!("http://{addr}"), tx)
}

fn verifier() -> Verifier {
    Verifier::new(testkeys::vendor().public(), Expectations::new("backend"))
}

async fn until(watch: &LicenseWatch, limit: Duration, want: bool) -> Duration {
    let start = Instant::now();
    while watch.is_licensed() != want {
        assert!(
            start.elapsed() < limit,
            "not {} within {limit:?}: {:?}",
            if want { "licensed" } else { "unlicensed" },
            watch.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_presence_events() {
    let (f, secret) = fake(60);
    let (url, _stop) = serve(f.clone()).await;
    let watch = LicenseWatch::spawn(WatchConfig::new(&url, "backend", secret, verifier()));
    until(&watch, Duration::from_secs(2), true).await;
    // Give the event stream a moment to connect, then report the dongle gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.present.send_replace(false);
    let took = until(&watch, Duration::from_millis(500), false).await;
    eprintln!("unlicensed {took:?} after the absent event");
    match watch.state() {
        LicenseState::Unlicensed { reason } => assert!(reason.contains("absent"), "{reason}"),
        s => panic!("{s:?}"),
    }
    f.present.send_replace(true);
    until(&watch, Duration::from_secs(3), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_token_until_its_monotonic_deadline_even_if_the_clock_goes_back() {
    static OFFSET: AtomicI64 = AtomicI64::new(0);
    fn clock() -> UnixTime {
        UnixTime::from_secs(
            UnixTime::now()
                .secs()
                .saturating_add_signed(OFFSET.load(Ordering::SeqCst)),
        )
    }
    let (f, secret) = fake(3);
    let (url, stop) = serve(f.clone()).await;
    let config = WatchConfig::new(&url, "backend", secret, verifier()).wall_clock(clock);
    let watch = LicenseWatch::spawn(config);
    until(&watch, Duration::from_secs(2), true).await;
    let got = Instant::now();
    // The authority vanishes and the wall clock is set back an hour.
    drop(stop);
    f.mode.store(FAIL_500, Ordering::SeqCst);
    OFFSET.store(-3600, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        watch.is_licensed(),
        "dropped the license before the token ran out"
    );
    until(&watch, Duration::from_secs(4), false).await;
    let held = got.elapsed();
    eprintln!("license held {held:?} for a 3 s token with the authority gone");
    assert!(
        held <= Duration::from_millis(3500),
        "the wall clock extended the token: {held:?}"
    );
    match watch.state() {
        LicenseState::Unlicensed { reason } => assert!(reason.contains("expired"), "{reason}"),
        s => panic!("{s:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_does_not_echo_our_nonce_is_refused() {
    let (f, secret) = fake(60);
    f.mode.store(WRONG_NONCE, Ordering::SeqCst);
    let (url, _stop) = serve(f.clone()).await;
    let watch = LicenseWatch::spawn(WatchConfig::new(&url, "backend", secret, verifier()));
    let mut rx = watch.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let LicenseState::Unlicensed { reason } = &*rx.borrow()
            && reason.contains("nonce")
        {
            break;
        }
        assert!(
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_ok(),
            "{:?}",
            watch.state()
        );
    }
    assert!(!watch.is_licensed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_is_reported() {
    let (f, _) = fake(60);
    let (url, _stop) = serve(f).await;
    let other = ServiceSecret::generate();
    let watch = LicenseWatch::spawn(WatchConfig::new(&url, "backend", other, verifier()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    match watch.state() {
        LicenseState::Unlicensed { reason } => assert!(reason.contains("401"), "{reason}"),
        s => panic!("{s:?}"),
    }
}

/// Captures log lines written while a test's current-thread runtime runs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

fn token_fetches(f: &Fake) -> usize {
    f.log.lock().unwrap().len()
}

/// Issue 13 item 3, consumer side: an authority that refuses `/events`
/// (503 `too_many_streams`, as when 256 hostile streams are held) leaves
/// the consumer polling every `fallback_refresh`, so an unplug is still
/// noticed within seconds; it says so once at WARN (not once per retry);
/// the credential is sent on `/events`; half-life returns with the stream.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_event_stream_is_reported_and_replaced_by_polling() {
    let logs = Logs::default();
    let _guard = logs.install();
    let (f, secret) = fake(60);
    f.refuse_events.store(true, Ordering::SeqCst);
    let (url, _stop) = serve(f.clone()).await;
    let expose = secret.expose().to_string();
    let config = WatchConfig::new(&url, "backend", secret, verifier())
        .fallback_refresh(Duration::from_millis(500));
    let watch = LicenseWatch::spawn(config);
    until(&watch, Duration::from_secs(2), true).await;
    // Let it retry the stream a few times: each waits at least the
    // Retry-After (1 s) and the backoff (0.25, 0.5, 1, 2 s).
    let start = Instant::now();
    while f.events_auth.lock().unwrap().len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "too few attempts at /events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = watch.health();
    assert!(!health.following_events, "{health:?}");
    assert!(
        health
            .events_problem
            .as_deref()
            .unwrap_or("")
            .contains("503"),
        "{health:?}"
    );
    let attempts = f.events_auth.lock().unwrap().len();
    assert!(attempts >= 3, "only {attempts} attempts at /events");
    assert!(
        f.events_auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {expose}"))),
        "/events without the service credential"
    );
    let text = logs.text();
    let warns: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cannot follow"))
        .collect();
    assert_eq!(warns.len(), 1, "one WARN for {attempts} refusals:\n{text}");
    // Polling every 0.5 s, not at half-life (30 s).
    let fetched = token_fetches(&f);
    let took = start.elapsed();
    assert!(
        fetched >= 4,
        "{fetched} fetches in {took:?} while not following"
    );
    // Unplugged: noticed by polling, without any event.
    f.present.send_replace(false);
    let took = until(&watch, Duration::from_secs(2), false).await;
    eprintln!("unplug noticed by polling after {took:?} (fallback_refresh 500 ms)");
    f.present.send_replace(true);
    until(&watch, Duration::from_secs(3), true).await;
    // The stream is allowed again: followed within the backoff (<= 10 s),
    // said at INFO, and refreshes return to half-life.
    f.refuse_events.store(false, Ordering::SeqCst);
    let start = Instant::now();
    while !watch.health().following_events {
        assert!(
            start.elapsed() < Duration::from_secs(12),
            "{:?}",
            watch.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        logs.text()
            .contains("following the authority's events again")
    );
    // At most the one fetch already scheduled, then half-life.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = token_fetches(&f);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        token_fetches(&f),
        before,
        "still polling with the stream back"
    );
    assert!(watch.is_licensed());
}

/// Issue 13 item 4: 8 replicas of one service, an authority limited to 2
/// tokens a second (429 with `Retry-After: 1`), the dongle comes back and
/// every replica hears `present` at once. No replica retries sooner than
/// `Retry-After` after a 429, and all are licensed in about N / R = 4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_their_fetches_and_honour_retry_after() {
    // The default spread (1 s), then one sized for N / R = 4 s.
    for spread in [Duration::from_secs(1), Duration::from_secs(4)] {
        replicas_after_present(8, 2.0, spread).await;
    }
}

async fn replicas_after_present(n: usize, rate: f64, spread: Duration) {
    let (f, secrets) = fake_replicas(60, n, rate);
    f.present.send_replace(false);
    let (url, _stop) = serve(f.clone()).await;
    let watches: Vec<LicenseWatch> = secrets
        .into_iter()
        .map(|s| {
            LicenseWatch::spawn(
                WatchConfig::new(&url, "backend", s, verifier()).event_spread(spread),
            )
        })
        .collect();
    // Every replica is refused (dongle absent) and follows the events.
    let start = Instant::now();
    while watches.iter().any(|w| !w.health().following_events) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "events not followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(watches.iter().all(|w| !w.is_licensed()));
    f.log.lock().unwrap().clear();
    let back = Instant::now();
    f.present.send_replace(true);
    let mut licensed_after = vec![None; n];
    while licensed_after.iter().any(Option::is_none) {
        for (i, w) in watches.iter().enumerate() {
            if licensed_after[i].is_none() && w.is_licensed() {
                licensed_after[i] = Some(back.elapsed());
            }
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "not all licensed in 30 s: {licensed_after:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = licensed_after.iter().flatten().max().copied().unwrap();
    let log = f.log.lock().unwrap().clone();
    let refused = log.iter().filter(|e| e.2 == 429).count();
    eprintln!(
        "{n} replicas at {rate} tokens/s, event_spread {spread:?}: last licensed {last:?} \
         after `present`, {refused} answers 429, {} requests",
        log.len()
    );
    // Each retry after a 429 waited at least its Retry-After (1 s).
    let mut waits = Vec::new();
    for (i, (who, at, status)) in log.iter().enumerate() {
        if *status != 429 {
            continue;
        }
        if let Some((_, next, _)) = log[i + 1..].iter().find(|e| e.0 == *who) {
            let waited = next.duration_since(*at);
            waits.push(waited);
            assert!(
                waited >= Duration::from_secs(1),
                "replica {who} retried {waited:?} after a 429 with Retry-After: 1"
            );
        }
    }
    if let Some(min) = waits.iter().min() {
        eprintln!("shortest wait after a 429: {min:?} (Retry-After: 1)");
    }
    // Generous: the stampede took 18.4 s before; ideal is about N / R = 4 s.
    assert!(
        last < Duration::from_secs(15),
        "last licensed after {last:?}"
    );
}

/// Issue 13 item 8, consumer side: the refresher compares each token's
/// `iat` with its own clock at receipt, reports the skew in its health, and
/// warns once it passes half the leeway (here 20 s against 30 s).
#[tokio::test(flavor = "current_thread")]
async fn clock_skew_is_measured_and_reported() {
    fn behind() -> UnixTime {
        UnixTime::now() - Duration::from_secs(20)
    }
    let logs = Logs::default();
    let _guard = logs.install();
    let (f, secret) = fake(60);
    let (url, _stop) = serve(f.clone()).await;
    let lenient = || {
        Verifier::new(
            testkeys::vendor().public(),
            Expectations::new("backend").leeway(30),
        )
    };
    let skewed = LicenseWatch::spawn(
        WatchConfig::new(&url, "backend", secret, lenient()).wall_clock(behind),
    );
    until(&skewed, Duration::from_secs(2), true).await;
    let h = skewed.health();
    let skew = h.clock_skew_secs.unwrap();
    eprintln!("measured skew {skew} s with our clock set 20 s behind");
    assert!((19..=20).contains(&skew), "{h:?}");
    assert!(h.clocks_disagree, "{h:?}");
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("disagree")
            && l.contains("authority_ahead_s")),
        "{text}"
    );
    // Another authority, our clock right: no disagreement.
    drop(skewed);
    let (f2, secret2) = fake(60);
    let (url2, _stop2) = serve(f2).await;
    let right = LicenseWatch::spawn(WatchConfig::new(&url2, "backend", secret2, lenient()));
    until(&right, Duration::from_secs(2), true).await;
    let h = right.health();
    assert!((-1..=0).contains(&h.clock_skew_secs.unwrap()), "{h:?}");
    assert!(!h.clocks_disagree, "{h:?}");
}

/// `Retry-After` as an HTTP-date (RFC 9110 section 10.2.3): the retry waits
/// until that date (whole seconds, so at least 2 s of a date 3 s ahead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_honoured() {
    let (f, secret) = fake(60);
    f.mode.store(LIMIT_BY_DATE, Ordering::SeqCst);
    let (url, _stop) = serve(f.clone()).await;
    let watch = LicenseWatch::spawn(WatchConfig::new(&url, "backend", secret, verifier()));
    until(&watch, Duration::from_secs(8), true).await;
    let log = f.log.lock().unwrap().clone();
    assert_eq!(log[0].2, 429, "{log:?}");
    assert_eq!(log[1].2, 200, "{log:?}");
    let waited = log[1].1.duration_since(log[0].1);
    eprintln!("retried {waited:?} after a 429 with an HTTP-date 3 s ahead");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
}

/// `release` gives the seat back: from then on this instance is no longer
/// licensed, though its last token has not expired (another instance may
/// hold the seat now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_watch_is_no_longer_licensed() {
    let (f, secret) = fake(60);
    let (url, _stop) = serve(f.clone()).await;
    let watch = LicenseWatch::spawn(WatchConfig::new(&url, "backend", secret, verifier()));
    let mut changes = watch.subscribe();
    until(&watch, Duration::from_secs(2), true).await;
    let _ = watch.release().await;
    assert!(!watch.is_licensed(), "{:?}", watch.state());
    match watch.state() {
        LicenseState::Unlicensed { reason } => assert!(reason.contains("released"), "{reason}"),
        s => panic!("{s:?}"),
    }
    // Subscribers hear it too.
    assert!(matches!(
        &*changes.borrow_and_update(),
        LicenseState::Unlicensed { .. }
    ));
}

/// Issue 15: under a license with a nonce period of 60 s, the refresher
/// keeps its nonce for 30 s (its monotonic clock, advanced here instead of
/// slept through), sends the new one when due, accepts the answer that
/// echoes the previous one (the authority has not committed the new one
/// yet) without a moment unlicensed, and refuses as stale a previous nonce
/// drawn 60 s ago or longer. The first answer, 503 `awaiting_certificate`,
/// is retried with the same nonce, quietly.
#[tokio::test(flavor = "current_thread")]
async fn a_freshness_license_rotates_nonces_and_accepts_the_previous_one() {
    static OFFSET: AtomicU64 = AtomicU64::new(0);
    static BASE: OnceLock<Instant> = OnceLock::new();
    fn mono() -> Instant {
        *BASE.get_or_init(Instant::now) + Duration::from_secs(OFFSET.load(Ordering::SeqCst))
    }
    let logs = Logs::default();
    let _guard = logs.install();
    let (f, secret) = fake_fresh(2);
    let (url, _stop) = serve(f.clone()).await;
    let config = WatchConfig::new(&url, "backend", secret, verifier())
        .follow_events(false)
        .monotonic_clock(mono);
    let watch = LicenseWatch::spawn(config);
    let fresh = || f.fresh.as_ref().unwrap().lock().unwrap();

    until(&watch, Duration::from_secs(4), true).await;
    {
        let fr = fresh();
        assert_eq!(fr.pending_answers, 1, "the first nonce was pending once");
        assert_eq!(fr.seen.len(), 1, "and asked for again, not replaced");
    }
    // Every state from now on.
    let states = Arc::new(Mutex::new(Vec::new()));
    let mut rx = watch.subscribe();
    let record = states.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().clone();
            record.lock().unwrap().push(s);
        }
    });
    // Fetches every second (2 s tokens), the same nonce while it is young.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fresh().seen.len(), 1, "rotated before F/2");

    // F/2 later: a new nonce, answered first with the previous one.
    OFFSET.store(31, Ordering::SeqCst);
    let start = Instant::now();
    while fresh().seen.len() < 2 || fresh().echoed_previous < 1 {
        assert!(start.elapsed() < Duration::from_secs(6), "no rotation");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(watch.is_licensed(), "{:?}", watch.state());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(watch.is_licensed(), "{:?}", watch.state());
    assert!(fresh().echoed_previous >= 1);
    assert!(
        states
            .lock()
            .unwrap()
            .iter()
            .all(|s| matches!(s, LicenseState::Licensed { .. })),
        "unlicensed for a moment: {:?}",
        states.lock().unwrap()
    );
    assert!(!logs.text().contains("WARN"), "{}", logs.text());

    // Fetches stopped for 69 s (as if rate limited): the nonce sent then
    // replaces one that is now the previous and 69 s old; the authority's
    // answer echoing it is stale.
    OFFSET.store(100, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let stale =
            states.lock().unwrap().iter().any(
                |s| matches!(s, LicenseState::Unlicensed { reason } if reason.contains("stale")),
            );
        if stale {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{:?}",
            states.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fresh().seen.len(), 3);
    // The next answer echoes the current nonce: licensed again.
    until(&watch, Duration::from_secs(4), true).await;
}

/// Issue 15: 503 `awaiting_certificate` while a token is held keeps the
/// service licensed and is retried after `Retry-After` without a WARN.
#[tokio::test(flavor = "current_thread")]
async fn awaiting_certificate_keeps_the_current_token_quietly() {
    let logs = Logs::default();
    let _guard = logs.install();
    let (f, secret) = fake_fresh(8);
    let (url, _stop) = serve(f.clone()).await;
    let config = WatchConfig::new(&url, "backend", secret, verifier()).follow_events(false);
    let watch = LicenseWatch::spawn(config);
    until(&watch, Duration::from_secs(4), true).await;
    let fresh = || f.fresh.as_ref().unwrap().lock().unwrap();
    fresh().always_pending = true;
    let before = fresh().pending_answers;
    let start = Instant::now();
    while fresh().pending_answers < before + 2 {
        assert!(watch.is_licensed(), "{:?}", watch.state());
        assert!(start.elapsed() < Duration::from_secs(7), "no retries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(watch.is_licensed(), "{:?}", watch.state());
    assert!(!logs.text().contains("WARN"), "{}", logs.text());
    fresh().always_pending = false;
}

/// Issue 15: a consumer restarted under the same instance id (one given to
/// `WatchConfig::instance`, as the C and Python bindings allow) finds the
/// leaf its previous process left in the certificate: the authority answers
/// with that old nonce, which the new process never drew. It must keep its
/// own nonce until the authority commits it; drawing a new one on every
/// refusal puts each one in a certificate one request too late, for ever
/// (tetherd answers under the committed leaf and commits the latest nonce
/// presented; the fake does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_with_a_stable_id_is_not_locked_out() {
    let (f, secret) = fake_fresh(60);
    let text = secret.expose().to_string();
    let (url, _stop) = serve(f.clone()).await;
    let watch_as = |secret: ServiceSecret| {
        LicenseWatch::spawn(
            WatchConfig::new(&url, "backend", secret, verifier())
                .follow_events(false)
                .instance("web-1")
                .unwrap(),
        )
    };
    let first = watch_as(secret);
    until(&first, Duration::from_secs(4), true).await;
    drop(first);
    let second = watch_as(ServiceSecret::parse(&text).unwrap());
    until(&second, Duration::from_secs(8), true).await;
}
