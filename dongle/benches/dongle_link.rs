//! PRESENCE and DELEGATE round-trip latency over the emulator's socket link
//! (median and p99), next to the same requests through the in-process
//! transport (the protocol core with no link at all) and a raw Ed25519 sign
//! (the floor: the one signature each answer costs).
//!
//! `cargo bench -p tether-authority --bench dongle_link`
//! (`TETHER_BENCH_ROUNDS` sets the round trips per figure; default 2000.)
//! The devices here keep their state in memory: the `tether dongle emulate`
//! process also writes its state file (fsync) on every DELEGATE, as firmware
//! writes flash, which this bench leaves out to measure the link itself.
//!
//! A real USB HID dongle adds the bus on top: at a 1 ms interrupt interval
//! a one-report request and a one-report answer take at least 2 ms, and a
//! microcontroller's Ed25519 signature several more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_dongle::Selector;
use tether_dongle::native::{Client, Timeouts};
use tether_emulator::LocalTransport;
use tether_emulator::{Device, Rules, SocketEmulator};
use tether_keys::delegation::{fresh_nonce, presence_message};
use tether_keys::{DelegationRequest, SecretKey, Session, testkeys};

const SERIAL: &str = "TD-BENCH";

/// No rate limit: the bench measures the link, not the firmware's policy.
fn rules() -> Rules {
    Rules {
        reach_budget: Duration::ZERO,
        ..Rules::default()
    }
}

fn device() -> Device {
    Device::new(testkeys::dongle(), SERIAL, rules())
}

#[derive(Debug)]
struct Figures {
    median: Duration,
    p99: Duration,
}

fn measure(rounds: usize, mut op: impl FnMut()) -> Figures {
    for _ in 0..rounds / 10 {
        op();
    }
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            op();
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Figures {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn row(name: &str, f: &Figures, floor: Duration) {
    println!(
        "{name:<34} median {:>8.1} us  p99 {:>8.1} us  ({:.2}x raw sign)",
        f.median.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6,
        f.median.as_secs_f64() / floor.as_secs_f64()
    );
}

fn presence(c: &mut Client) {
    let nonce = fresh_nonce();
    black_box(c.presence(&nonce).unwrap());
}

fn delegate(c: &mut Client, session: &tether_keys::PublicKey<Session>, now: tether_keys::UnixTime) {
    let req = DelegationRequest::new(
        fresh_nonce(),
        *session,
        now,
        now + std::time::Duration::from_secs(300),
    );
    black_box(c.delegate(&req).unwrap());
}

fn main() {
    let rounds: usize = std::env::var("TETHER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let now = tether_keys::UnixTime::now();
    let session = SecretKey::<Session>::generate().public();

    // Sanity first: the answers verify, so the figures are for real work.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongle.sock");
    let emu = SocketEmulator::spawn(device(), &path).unwrap();
    let sel: Selector = format!("socket:{}", path.display()).parse().unwrap();
    let mut sock = Client::connect(&sel).unwrap();
    let nonce = fresh_nonce();
    let sig = sock.presence(&nonce).unwrap();
    assert!(
        testkeys::dongle()
            .public()
            .verify(&presence_message(&nonce), &sig)
    );

    let mut local = Client::open(
        Box::new(LocalTransport::new(Arc::new(Mutex::new(device())))),
        Timeouts::default(),
    )
    .unwrap();

    let key = testkeys::dongle();
    let message = presence_message(&fresh_nonce());
    let sign = measure(rounds, || {
        black_box(key.sign(black_box(&message)));
    });

    println!("dongle link round trips, {rounds} each (one thread, loopback):");
    row("raw Ed25519 sign (floor)", &sign, sign.median);
    let f = measure(rounds, || presence(&mut local));
    row("PRESENCE  in-process transport", &f, sign.median);
    let f = measure(rounds, || presence(&mut sock));
    row("PRESENCE  emulator socket link", &f, sign.median);
    let f = measure(rounds, || delegate(&mut local, &session, now));
    row("DELEGATE  in-process transport", &f, sign.median);
    let f = measure(rounds, || delegate(&mut sock, &session, now));
    row("DELEGATE  emulator socket link", &f, sign.median);
    drop(emu);
}
