//! Freshness (issue 15) over the real `tetherd` and emulator processes:
//! every certificate commits to the live instances' nonces, a restart storm
//! of 200 instances costs a handful of DELEGATEs, and re-plugs and restarts
//! never lock a genuine dongle out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::{Certificate, InclusionProof, Leaf, TokenClaims};
use tether_tests::http;
use tether_tests::{Site, wait_until};

const T: Duration = Duration::from_secs(10);

fn fresh_site(seats: Option<u32>) -> Site {
    Site::with_license(|t| {
        t.nonce_period = 300;
        if let Some(n) = seats {
            t.seats.insert("backend".into(), n);
        }
    })
}

/// The emulator's DELEGATE counter (`status` on its control socket).
fn dongle_counter(site: &Site) -> u32 {
    use std::io::{Read as _, Write as _};
    let mut ctl = site.dongle_socket().into_os_string();
    ctl.push(".ctl");
    let mut s = std::os::unix::net::UnixStream::connect(ctl).unwrap();
    s.write_all(b"status\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("counter="))
        .unwrap_or_else(|| panic!("no counter in {text:?}"))
        .parse()
        .unwrap()
}

fn claims_of(token: &str) -> TokenClaims {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Asks for a token as `instance` with `nonce` until one comes, honouring
/// Retry-After; returns it and how many answers were refusals.
fn licensed(
    url: &str,
    secret: &str,
    instance: &str,
    nonce: &str,
    within: Duration,
) -> (String, u32) {
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        let r = http::get(
            url,
            &format!("/token?instance={instance}&nonce={nonce}"),
            Some(secret),
        )
        .unwrap();
        if r.status == 200 {
            let body: serde_json::Value = r.json().unwrap();
            return (body["token"].as_str().unwrap().to_string(), refused);
        }
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "{instance} not licensed within {within:?}: {} {}",
            r.status,
            r.body
        );
        let retry = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(1);
        std::thread::sleep(Duration::from_millis(100).max(Duration::from_secs(retry.min(2)) / 2));
    }
}

/// The token's nonce is `nonce`, and its proof puts `(service, instance,
/// nonce)` in the certificate it carries.
fn assert_included(token: &str, service: &str, instance: &str, nonce: &str) -> Certificate {
    let c = claims_of(token);
    assert_eq!(c.nonce.as_deref(), Some(nonce));
    assert_eq!(c.ins.as_deref(), Some(instance));
    let cert = Certificate::decode(&URL_SAFE_NO_PAD.decode(&c.dcert).unwrap()).unwrap();
    let proof = InclusionProof::from_claim(c.prf.as_deref().expect("a prf claim")).unwrap();
    let leaf = Leaf::new(service, instance, nonce).unwrap();
    cert.request.commitment.check(&leaf, &proof).unwrap();
    cert
}

fn nonce(i: usize, round: u32) -> String {
    let mut raw = [0u8; 32];
    tether_keys::random_fill(&mut raw);
    format!("{}{i}r{round}", URL_SAFE_NO_PAD.encode(raw))
}

#[test]
fn a_restart_storm_of_200_instances_is_licensed_within_seconds_by_a_handful_of_delegates() {
    let site = fresh_site(Some(200));
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 200)
    });
    let before = dongle_counter(&site);
    let secret = site.secret("backend").to_string();
    let refusals = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (url, secret, refusals) = (url.clone(), secret.clone(), refusals.clone());
            std::thread::spawn(move || {
                let instance = format!("storm-{i}");
                let n = nonce(i, 0);
                let (token, refused) = licensed(&url, &secret, &instance, &n, T);
                refusals.fetch_add(refused as usize, Ordering::Relaxed);
                let cert = assert_included(&token, "backend", &instance, &n);
                (started.elapsed(), cert.request.commitment.counts["backend"])
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let last = results.iter().map(|(t, _)| *t).max().unwrap();
    let delegates = dongle_counter(&site) - before;
    println!(
        "restart storm: 200 instances licensed within {last:?} by {delegates} DELEGATEs ({} answers refused first)",
        refusals.load(Ordering::Relaxed)
    );
    assert!(
        last < Duration::from_secs(8),
        "the last instance waited {last:?}"
    );
    assert!(
        (1..=5).contains(&delegates),
        "{delegates} DELEGATEs for one storm"
    );
    // No certificate ever committed to more leaves than the seats.
    assert!(results.iter().all(|(_, n)| *n <= 200));

    // One more instance than the seats: refused, and never in a certificate.
    let r = http::get(
        &url,
        "/token?instance=extra&nonce=extranonce",
        Some(&secret),
    )
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
}

#[test]
fn a_rotated_nonce_is_served_under_the_older_one_until_the_next_certificate() {
    let site = fresh_site(Some(2));
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 200)
    });
    let secret = site.secret("backend");
    // Without a nonce, a freshness license refuses to issue.
    let r = http::get(&url, "/token?instance=a", Some(secret)).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nonce"), "{}", r.body);

    let (first, _) = licensed(&url, secret, "a", "nonce-one", T);
    let c1 = assert_included(&first, "backend", "a", "nonce-one");
    // The new nonce is not in the certificate yet: the token echoes the
    // older one, which the consumer drew less than F ago.
    let r = http::get(&url, "/token?instance=a&nonce=nonce-two", Some(secret)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = r.json().unwrap();
    let second = body["token"].as_str().unwrap();
    let c2 = assert_included(second, "backend", "a", "nonce-one");
    assert_eq!(c1.counter, c2.counter);
    // A new instance forces a certificate at once, and that one holds a's
    // new nonce too.
    let (b, _) = licensed(&url, secret, "b", "nonce-b", T);
    let c3 = assert_included(&b, "backend", "b", "nonce-b");
    assert!(c3.counter > c1.counter);
    assert_eq!(c3.request.commitment.counts["backend"], 2);
    let (third, _) = licensed(&url, secret, "a", "nonce-two", T);
    assert_included(&third, "backend", "a", "nonce-two");
}

#[test]
fn three_quick_replugs_and_a_restart_never_lock_a_genuine_dongle_out() {
    let site = fresh_site(Some(4));
    let _emu = site.start_emulator(&[]);
    let (mut d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend").to_string();
    let (token, _) = licensed(&url, &secret, "a", "replug-0", T);
    assert_included(&token, "backend", "a", "replug-0");
    for round in 1..=3 {
        site.dongle(&["unplug"]);
        wait_until(T, || {
            http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 503)
        });
        site.dongle(&["plug"]);
        let n = format!("replug-{round}");
        let started = Instant::now();
        let (token, _) = licensed(&url, &secret, "a", &n, T);
        // The certificate of the new session holds the instance's latest
        // nonce it knew (drawn less than F ago, so still good) or this one.
        let echoed = claims_of(&token).nonce.unwrap();
        let previous = format!("replug-{}", round - 1);
        assert!(echoed == n || echoed == previous, "{echoed}");
        assert_included(&token, "backend", "a", &echoed);
        println!(
            "re-plug {round}: licensed again {:?} after the plug",
            started.elapsed()
        );
    }
    d.signal("TERM");
    d.wait_exit(T).expect("tetherd exits on SIGTERM");
    let (_d2, url) = site.start_tetherd(&[]);
    // Leases restored after a restart carry no nonce: the instance is
    // new to the first certificate and waits for it.
    let (token, _) = licensed(&url, &secret, "a", "after-restart", T);
    assert_included(&token, "backend", "a", "after-restart");
}

/// A consumer restarted under a stable instance id (one given to
/// `WatchConfig::instance`, as the C and Python bindings allow) meets the
/// leaf its previous process left in the certificate: tetherd answers with
/// that old nonce, which the new process never drew, and commits the latest
/// nonce presented only lazily (F/8). The refresher has to keep its nonce
/// meanwhile: drawing a new one on every refusal puts each one in a
/// certificate one request too late, for ever.
#[test]
fn a_consumer_restarted_under_a_stable_instance_id_is_licensed_again() {
    use tether_keys::{ServiceSecret, Vendor, keyfile};
    use tether_verifier::{Expectations, LicenseWatch, Verifier, WatchConfig};

    let site = Site::with_license(|t| t.nonce_period = 60);
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 200)
    });
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&site.vendor_pub).unwrap();
    let secret = site.secret("backend").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let watch_as = || {
        LicenseWatch::spawn(
            WatchConfig::new(
                &url,
                "backend",
                ServiceSecret::parse(&secret).unwrap(),
                Verifier::new(vendor, Expectations::new("backend")),
            )
            .follow_events(false)
            .instance("web-1")
            .unwrap(),
        )
    };
    let licensed_within = |watch: &LicenseWatch, limit: Duration| {
        let start = Instant::now();
        while !watch.is_licensed() {
            assert!(
                start.elapsed() < limit,
                "not licensed within {limit:?}: {:?}",
                watch.state()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    };
    let _enter = rt.enter();
    let first = watch_as();
    licensed_within(&first, T);
    // The process dies (no release); its lease and its leaf stay.
    drop(first);
    let second = watch_as();
    // F/8 = 7.5 s for the lazy certificate, then a fetch.
    let took = licensed_within(&second, Duration::from_secs(30));
    println!("restarted under the same instance id: licensed after {took:?}");
}

/// A client with any service's credential (here the unlimited muxer's)
/// that names a new instance on every request makes every request urgent.
/// tetherd spends its own early-certificate budget on it (10, then one per
/// 30 s), never the dongle's: a genuine new instance waits at most about
/// 30 s behind the churn, and a re-plug is still certified at once.
#[test]
fn a_client_churning_instance_ids_cannot_drain_the_dongle() {
    let site = Site::with_license(|t| {
        t.nonce_period = 300;
        t.seats.insert("backend".into(), 4);
    });
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 200)
    });
    let before = dongle_counter(&site);
    let muxer = site.secret("muxer").to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = http::get(
                    &url,
                    &format!("/token?instance=churn-{i}&nonce=n{i}"),
                    Some(&muxer),
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    // Long enough to spend tetherd's burst of early certificates.
    std::thread::sleep(Duration::from_secs(25));
    let secret = site.secret("backend").to_string();
    let start = Instant::now();
    let (token, _) = licensed(
        &url,
        &secret,
        "genuine",
        "genuine-nonce",
        Duration::from_secs(60),
    );
    let took = start.elapsed();
    assert_included(&token, "backend", "genuine", "genuine-nonce");
    let spent = dongle_counter(&site) - before;
    // A re-plug while the churn goes on: certified at once.
    site.dongle(&["unplug"]);
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 503)
    });
    site.dongle(&["plug"]);
    let replugged = Instant::now();
    wait_until(T, || {
        http::get(&url, "/readyz", None).is_ok_and(|r| r.status == 200)
    });
    let back = replugged.elapsed();
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    println!(
        "churn: {spent} DELEGATEs in {:.0} s of churn; a genuine new instance waited {took:?}; a re-plug was ready again in {back:?}",
        25.0 + took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(35),
        "a genuine new instance waited {took:?}"
    );
    assert!(
        spent <= crate_early_bound(25 + took.as_secs()),
        "{spent} DELEGATEs spent on the churn"
    );
    assert!(back < Duration::from_secs(3), "the re-plug took {back:?}");
}

/// tetherd's early certificates in `secs` seconds: the burst of 10, then
/// one per 30 s, plus the certificate at plug-in.
fn crate_early_bound(secs: u64) -> u32 {
    10 + u32::try_from(secs / 30).unwrap_or(u32::MAX) + 2
}
