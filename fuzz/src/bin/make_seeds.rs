//! Writes seed inputs for every fuzz target into `seeds/TARGET/NAME`
//! (or under the directory given as the only argument): the test vectors of
//! `keys/testdata/`, the frames a host sends in a real session (INIT, INFO,
//! PRESENCE, DELEGATE) and the emulator's answers to them, and tokens of the
//! test chain. Deterministic: running it again rewrites the same files.
//!
//! Built with the fuzz targets' flags (`cargo fuzz build make_seeds`) so it
//! shares their build; `scripts/fuzz-smoke.sh` runs it before fuzzing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The targets' instrumentation needs libFuzzer's runtime linked in; this
// binary brings its own `main`.
use libfuzzer_sys as _;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_dongle::ctaphid::{BROADCAST, Command, MAX_MESSAGE, Report, fragment};
use tether_dongle::native::message::{DELEGATE_REQUEST_LEN, Request};
use tether_emulator::{Device, Rules};
use tether_fuzz::{NOW, SERIAL, SERVICE, certificate, claims, clock_step, license, token};
use tether_keys::delegation::LedgerHead;
use tether_keys::fido2::Fido2Algorithm;
use tether_keys::fido2::testsigner::{Knobs, TestAuthenticator};
use tether_keys::merkle::{Leaf, LeafSet};
use tether_keys::{DelegationRequest, LicenseTerms, UnixTime, keyfile, testkeys};
use tether_verifier::{Expectations, Verifier};

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn concat(reports: &[Report]) -> Vec<u8> {
    reports.iter().flatten().copied().collect()
}

fn frames(req: &Request, cid: u32) -> Vec<Report> {
    let (cmd, payload) = req.encode();
    fragment(cid, cmd, &payload).unwrap()
}

/// A host's session with the dongle: channel allocation, then identify,
/// presence and two certificates a minute apart, the first committing to
/// nothing, the second to three consumers and a ledger head.
fn session() -> Vec<(&'static str, Request, u32)> {
    let delegate = |nonce: u8, nb: UnixTime| {
        let mut req = DelegationRequest::new(
            [nonce; 32],
            testkeys::session().public(),
            nb,
            nb + Duration::from_secs(600),
        );
        if nonce != 0xAB {
            req.commitment = LeafSet::new([
                Leaf::new("backend", "b-1", "n1").unwrap(),
                Leaf::new("backend", "b-2", "n2").unwrap(),
                Leaf::new("muxer", "m-1", "n3").unwrap(),
            ])
            .commitment()
            .unwrap();
            req.ledger = LedgerHead {
                sequence: 42,
                hash: [0x5A; 32],
            };
        }
        Request::Delegate(req)
    };
    vec![
        (
            "init",
            Request::Init {
                nonce: *b"8-nonce!",
            },
            BROADCAST,
        ),
        ("info", Request::Info, 1),
        ("presence", Request::Presence { nonce: [0x5A; 32] }, 1),
        ("delegate", delegate(0xAB, NOW), 1),
        (
            "delegate-next",
            delegate(0xCD, NOW + Duration::from_secs(60)),
            1,
        ),
    ]
}

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds"),
        PathBuf::from,
    );
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/testdata");
    let mut s = Seeds { root, count: 0 };

    // The frame decoder: a host's requests and the emulator's real answers.
    let mut device = Device::new(testkeys::dongle(), SERIAL, Rules::default());
    let mut device_script = vec![0u8]; // config: no fault, default rules
    let mut uptime = Duration::ZERO;
    for (name, req, cid) in session() {
        let reports = frames(&req, cid);
        s.put(
            "frame_decoder",
            &format!("request-{name}"),
            &concat(&reports),
        );
        let (cmd, payload) = req.encode();
        let mut parse = vec![cmd.byte()];
        parse.extend_from_slice(&payload);
        s.put("request_parse", name, &parse);
        if name == "delegate" {
            // The first protocol's fixed payload, which the device still takes.
            s.put(
                "request_parse",
                "delegate-fixed-80",
                &parse[..1 + DELEGATE_REQUEST_LEN],
            );
        }
        let mut answers = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            // One second before each message, none between its reports.
            let step = if i == 0 { 100 } else { 0 };
            uptime += clock_step(step);
            answers.extend(device.handle_report_at(r, uptime));
            device_script.push(step);
            device_script.extend_from_slice(r);
        }
        assert!(!answers.is_empty(), "the emulator did not answer {name}");
        s.put(
            "frame_decoder",
            &format!("answer-{name}"),
            &concat(&answers),
        );
    }
    let longest = fragment(7, Command::Info, &[0x5A; MAX_MESSAGE]).unwrap();
    s.put("frame_decoder", "longest", &concat(&longest));
    let mut oversized = longest[0];
    oversized[5..7].copy_from_slice(&((MAX_MESSAGE + 1) as u16).to_be_bytes());
    s.put("frame_decoder", "oversized", &oversized);
    s.put(
        "frame_decoder",
        "short-tail",
        &concat(&longest)[..64 * 3 + 10],
    );

    s.put("emulator_device", "session", &device_script);
    let mut unlimited = device_script.clone();
    unlimited[0] = 1;
    s.put("emulator_device", "session-no-rate-limit", &unlimited);
    let mut rollback = device_script.clone();
    rollback[0] = 2;
    s.put("emulator_device", "session-rollback", &rollback);

    // Licenses and certificates: the vectors, and the test chain.
    for entry in std::fs::read_dir(&testdata).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Binary fixtures (the DER key) are no seeds for these targets.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if name.ends_with(".tether") {
            if let Ok(l) = keyfile::parse_license(&path, &text) {
                s.put("license_decode", &name, l.encoded());
            }
        } else if name.starts_with("cert_") || name.starts_with("fail_cert_") {
            s.put("cert_decode", &name, &hex(&text));
        }
    }
    s.put(
        "license_decode",
        "license_valid.pem",
        &std::fs::read(testdata.join("license_valid.tether")).unwrap(),
    );
    let lic = license();
    s.put("license_decode", "chain", lic.encoded());
    let cert = certificate(7);
    s.put("cert_decode", "chain", cert.encoded());
    // FIDO2 (issue 16): a kind 2 certificate of each algorithm, and a
    // license naming its credential.
    for (name, alg, seed) in [
        ("fido2-ed25519", Fido2Algorithm::Ed25519, 0x21),
        ("fido2-es256", Fido2Algorithm::Es256, 0x22),
    ] {
        let mut auth = TestAuthenticator::new(alg, [seed; 32]);
        let req = DelegationRequest::new(
            [0xAB; 32],
            testkeys::session().public(),
            NOW - Duration::from_secs(60),
            NOW + Duration::from_secs(540),
        );
        let fido = auth.certify(req, &Knobs::default()).unwrap();
        s.put("cert_decode", name, fido.encoded());
        let cred = auth.credential();
        let terms = LicenseTerms {
            dongle_serial: cred.serial(),
            dongle: cred.into(),
            nonce_period: 300,
            ..lic.terms().clone()
        };
        s.put(
            "license_decode",
            name,
            terms.sign(&testkeys::vendor()).unwrap().encoded(),
        );
    }

    // Tokens: one the verifier accepts, and one for each of a few refusals.
    let good = claims(&lic, &cert);
    let mut with_nonce = good.clone();
    with_nonce.nonce = Some("fuzz-nonce".into());
    let verifier = Verifier::new(testkeys::vendor().public(), Expectations::new(SERVICE));
    for (name, c) in [("valid", &good), ("valid-nonce", &with_nonce)] {
        let t = token(c);
        // The target must see a token it accepts, or it fuzzes only refusals.
        if let Err(e) = verifier.verify_at(&t, None, NOW) {
            panic!("seed {name} is refused: {e}");
        }
        s.put("token_verify", name, t.as_bytes());
    }
    let mut other_aud = good.clone();
    other_aud.aud = "muxer".into();
    other_aud.sub = "muxer".into();
    s.put(
        "token_verify",
        "other-audience",
        token(&other_aud).as_bytes(),
    );
    let mut expired = good.clone();
    expired.iat = NOW - Duration::from_secs(400);
    expired.nbf = NOW - Duration::from_secs(400);
    expired.exp = NOW - Duration::from_secs(100);
    s.put("token_verify", "expired", token(&expired).as_bytes());
    let t = token(&good);
    let (head, _) = t.rsplit_once('.').unwrap();
    s.put("token_verify", "unsigned", format!("{head}.").as_bytes());

    eprintln!("make_seeds: {} seeds under {}", s.count, s.root.display());
}
