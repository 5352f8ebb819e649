//! Seats and leases (issue 14) over the real `tetherd` and emulator
//! processes: the seat count is held, Retry-After says when, DELETE /lease
//! frees a seat at once, a SIGKILLed instance's seat lapses, a restart never
//! lets an extra instance in, and a token copied to another instance is
//! refused there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tether_keys::{Vendor, keyfile};
use tether_tests::http;
use tether_tests::{Site, free_port, wait_for_token, wait_until, works};
use tether_verifier::{Expectations, Verifier};

const T: Duration = Duration::from_secs(10);

fn site_with_seats(seats: u32) -> Site {
    Site::with_license(|t| {
        t.seats.insert("backend".into(), seats);
    })
}

fn token_as(url: &str, secret: &str, instance: &str) -> http::Response {
    http::get(url, &format!("/token?instance={instance}"), Some(secret)).unwrap()
}

/// The `jti` of the token in a `/token` answer.
fn jti_of(r: &http::Response) -> String {
    use base64::Engine as _;
    let body: serde_json::Value = r.json().unwrap();
    let token = body["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

fn header(r: &http::Response, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

#[test]
fn seats_are_held_released_and_survive_a_restart() {
    let site = site_with_seats(2);
    let _emu = site.start_emulator(&[]);
    let port = free_port().to_string();
    let (mut d, url) = site.start_tetherd_on(&port, &[]);
    let secret = site.secret("backend");
    wait_for_token(&url, site.secret("muxer"), T);

    // A seat-limited service must name its instances.
    let anonymous = http::get(&url, "/token", Some(secret)).unwrap();
    assert_eq!(anonymous.status, 400, "{}", anonymous.body);

    assert_eq!(token_as(&url, secret, "a").status, 200);
    assert_eq!(token_as(&url, secret, "b").status, 200);
    // A known instance renews; a third is refused with its own status.
    let a_token = token_as(&url, secret, "a");
    assert_eq!(a_token.status, 200);
    let a_jti = jti_of(&a_token);
    let third = token_as(&url, secret, "c");
    assert_eq!(third.status, 409, "{}", third.body);
    assert!(third.body.contains("no_seat_free"), "{}", third.body);
    let retry: u64 = header(&third, "retry-after").unwrap().parse().unwrap();
    assert!((1..=65).contains(&retry), "Retry-After {retry}");

    // /status lists the seats and the leases.
    let status: serde_json::Value = http::get(&url, "/status", None).unwrap().json().unwrap();
    let backend = status["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "backend")
        .unwrap()
        .clone();
    assert_eq!(
        (backend["in_use"].as_u64(), backend["seats"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(status["leases"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["license"]["seats"]["backend"], 2);
    let metrics = http::get(&url, "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("tether_seats_in_use{service=\"backend\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tether_seats_limit{service=\"backend\"} 2"),
        "{metrics}"
    );

    // DELETE /lease frees the seat at once, for the instance itself only:
    // the service's credential and the jti of one of its own tokens. Reading
    // instance ids from /status is not enough to free other instances' seats.
    let release = |bearer: Option<&str>, jti: &str| {
        http::delete(&url, &format!("/lease?instance=a&jti={jti}"), bearer)
            .unwrap()
            .status
    };
    let other = site.secret("muxer");
    assert_eq!(release(Some(other), &a_jti), 404);
    assert_eq!(release(None, &a_jti), 401);
    assert_eq!(release(Some(secret), "not-its-token"), 404);
    let b_jti = jti_of(&token_as(&url, secret, "b"));
    assert_eq!(
        release(Some(secret), &b_jti),
        404,
        "b's token frees a's seat"
    );
    assert_eq!(
        http::delete(&url, "/lease?instance=a", Some(secret))
            .unwrap()
            .status,
        400,
        "no proof at all"
    );
    assert_eq!(release(Some(secret), &a_jti), 204);
    assert_eq!(release(Some(secret), &a_jti), 404);
    assert_eq!(token_as(&url, secret, "c").status, 200);

    // A restart of tetherd keeps b's and c's seats: the tokens they hold
    // live on, so a fourth instance is refused, and b renews.
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    let (_d, url) = site.start_tetherd_on(&port, &[]);
    wait_until(T, || token_as(&url, secret, "b").status == 200);
    let fourth = token_as(&url, secret, "d");
    assert_eq!(fourth.status, 409, "after a restart: {}", fourth.body);
    assert_eq!(token_as(&url, secret, "c").status, 200);
}

#[test]
fn a_token_copied_to_another_instance_is_refused_there() {
    let site = site_with_seats(1);
    let _emu = site.start_emulator(&[]);
    let (_d, url) = site.start_tetherd(&[]);
    let secret = site.secret("backend");
    wait_until(T, || token_as(&url, secret, "web-1").status == 200);
    let body: serde_json::Value = token_as(&url, secret, "web-1").json().unwrap();
    let token = body["token"].as_str().unwrap();
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&site.vendor_pub).unwrap();
    let own = Verifier::new(vendor, Expectations::new("backend").instance("web-1"));
    let verified = own.verify(token).unwrap();
    assert_eq!(verified.claims.ins.as_deref(), Some("web-1"));
    let copy = Verifier::new(vendor, Expectations::new("backend").instance("web-2"));
    assert_eq!(
        copy.verify(token).unwrap_err(),
        tether_verifier::Error::WrongInstance
    );
}

/// The reference services hold seats: two run, a third waits for a seat;
/// SIGTERM releases one at once, SIGKILL's seat lapses with its token.
#[test]
fn reference_services_hold_release_and_lapse_their_seats() {
    let site = site_with_seats(2);
    let _emu = site.start_emulator(&[]);
    // Short tokens, so a killed instance's lease lapses within the test.
    let (_d, url) = site.start_tetherd(&["--token-ttl", "4s", "--cert-lifetime", "60s"]);
    let (mut one, one_url) = site.start_service("backend", &url, &[]);
    let (mut two, two_url) = site.start_service("backend", &url, &[]);
    wait_until(T, || works(&one_url) && works(&two_url));
    let (_three, three_url) = site.start_service("backend", &url, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!works(&three_url), "a third instance works with two seats");
    let status: serde_json::Value = http::get(&three_url, "/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert!(
        status["reason"].as_str().unwrap_or("").contains("seats"),
        "{status}"
    );
    // SIGTERM: the seat is released at once, the third is licensed within
    // its Retry-After (at most a token lifetime plus leeway).
    one.signal("TERM");
    assert_eq!(one.wait_exit(T), Some(0));
    let released = Instant::now();
    wait_until(Duration::from_secs(15), || works(&three_url));
    eprintln!(
        "third instance licensed {:?} after a release",
        released.elapsed()
    );
    // SIGKILL: the seat comes back when the lease lapses (4 s + 5 s leeway).
    two.child.kill().unwrap();
    let _ = two.child.wait();
    let killed = Instant::now();
    let (_four, four_url) = site.start_service("backend", &url, &[]);
    wait_until(Duration::from_secs(20), || works(&four_url));
    let lapse = killed.elapsed();
    eprintln!("a SIGKILLed instance's seat came back after {lapse:?}");
    assert!(
        lapse >= Duration::from_secs(3),
        "seat freed too early: {lapse:?}"
    );
}
