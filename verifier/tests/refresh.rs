//! The refresher against a small fake authority on loopback (real HTTP, real
//! SSE): licensed at start, dropped at once on `absent`, back on `present`,
//! kept until the monotonic deadline when the authority vanishes (even with
//! the wall clock set back), and a token that does not echo our nonce refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{
    Certificate, CredentialFile, DelegationRequest, License, LicenseId, LicenseTerms,
    ServiceSecret, TokenClaims, TokenSigner, testkeys,
};
use tether_verifier::{Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};
use tokio::sync::watch;
use warp::Filter as _;

const NORMAL: u8 = 0;
const FAIL_500: u8 = 1;
const WRONG_NONCE: u8 = 2;

struct Fake {
    license: License,
    cert: Certificate,
    signer: TokenSigner,
    ttl: u64,
    mode: AtomicU8,
    present: watch::Sender<bool>,
    creds: CredentialFile,
}

fn fake(ttl: u64) -> (Arc<Fake>, ServiceSecret) {
    let now = tether_keys::now_unix();
    let license = LicenseTerms {
        id: LicenseId([1; 16]),
        customer: "T".into(),
        dongle_serial: "TD-1".into(),
        dongle_key: testkeys::dongle().public(),
        issued_at: now - 60,
        not_before: now - 60,
        not_after: now + 3600,
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
        DelegationRequest {
            nonce: [2; 32],
            session_key: testkeys::session().public(),
            not_before: now - 30,
            not_after: now + 600,
        },
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
    };
    (Arc::new(f), secret)
}

#[derive(serde::Deserialize)]
struct Q {
    nonce: Option<String>,
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
    if f.creds.authenticate(bearer.as_bytes()).is_none() {
        return err(StatusCode::UNAUTHORIZED, "unknown service credential");
    }
    match f.mode.load(Ordering::SeqCst) {
        FAIL_500 => return err(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        _ if !*f.present.borrow() => return err(StatusCode::SERVICE_UNAVAILABLE, "dongle absent"),
        _ => {}
    }
    let now = tether_keys::now_unix();
    let nonce = if f.mode.load(Ordering::SeqCst) == WRONG_NONCE {
        Some("someone-elses".to_string())
    } else {
        q.nonce
    };
    let claims = TokenClaims {
        iss: "tether:TD-1".into(),
        sub: "backend".into(),
        aud: "backend".into(),
        iat: now,
        nbf: now,
        exp: now + f.ttl,
        jti: format!("{now}"),
        lic: URL_SAFE_NO_PAD.encode(f.license.encoded()),
        dcert: URL_SAFE_NO_PAD.encode(f.cert.encoded()),
        nonce,
        ins: None,
    };
    let token = f.signer.sign(&claims).unwrap();
    warp::reply::json(&serde_json::json!({"token": token, "expires_at": now + f.ttl}))
        .into_response()
}

/// Serves the fake on 127.0.0.1:0; dropping the returned sender stops it.
async fn serve(f: Arc<Fake>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let f1 = f.clone();
    let token = warp::path!("token")
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<Q>())
        .map(move |a, q| token_reply(&f1, a, q));
    let f2 = f.clone();
    let events = warp::path!("events").map(move || {
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
        warp::sse::reply(warp::sse::keep_alive().stream(s))
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
    fn clock() -> u64 {
        tether_keys::now_unix().saturating_add_signed(OFFSET.load(Ordering::SeqCst))
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
