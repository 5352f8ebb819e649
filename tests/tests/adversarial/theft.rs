//! Key theft: what a customer with root can take from the authority, and
//! what it buys. A copy of every file on its disk mints nothing; a session
//! key dumped from memory dies with its certificate; and certificates
//! pre-signed while the dongle was at hand are bounded by the dongle's
//! DELEGATE rules (`docs/dongle-protocol.md`, section 6).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tether_dongle::ctaphid::{BROADCAST, Command as Cmd, Progress, Reassembler, fragment};
use tether_dongle::native::message::{self, InitResponse, Request};
use tether_emulator::{Device, Rules};
use tether_keys::{DelegationRequest, Dongle, SecretKey, Session, Vendor, keyfile, testkeys};
use tether_tests::{Proc, Site, bin, free_port, http, wait_for_token, wait_until, works};

use crate::forged::Mint;
use crate::rig::{T, never_issues, status};
use crate::summary;

const M: &str = module_path!();

/// Copies a directory tree, skipping sockets (they are not data).
fn copy_tree(from: &Path, to: &Path, skip: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut copied = Vec::new();
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if src == skip || ty.is_socket() {
            continue;
        }
        if ty.is_dir() {
            copied.extend(copy_tree(&src, &dst, skip));
        } else {
            std::fs::copy(&src, &dst).unwrap();
            copied.push(dst);
        }
    }
    copied
}

#[test]
fn a_copy_of_the_authority_disk_mints_nothing() {
    let _g = summary::test(M, "a_copy_of_the_authority_disk_mints_nothing");
    let site = Site::new();
    // The authority's whole configuration, as a deployment keeps it on disk.
    let config = format!(
        "license = {:?}\nvendor_pub = {:?}\ncredentials = {:?}\nstate_dir = {:?}\n",
        site.license,
        site.vendor_pub,
        site.credentials,
        site.path("state")
    );
    std::fs::write(site.path("authority.toml"), config).unwrap();
    site.secret_file("backend");
    let _emu = site.start_emulator(&[]);
    let (_d, url) =
        site.start_tetherd(&["--config", site.path("authority.toml").to_str().unwrap()]);
    wait_for_token(&url, site.secret("backend"), T);
    // Let the state file hold both high-water marks.
    wait_until(T, || site.path("state/state.json").exists());

    // Everything on the disk but the dongle (which stands for the hardware).
    let stolen = tempfile::tempdir().unwrap();
    let files = copy_tree(site.dir.path(), stolen.path(), &site.identity);
    assert!(files.len() >= 6, "{files:?}");
    let mut signing_keys = 0;
    for f in &files {
        let text = std::fs::read(f).unwrap();
        let holds_key = keyfile::read_secret_key::<Session>(f).is_ok()
            || keyfile::read_secret_key::<Dongle>(f).is_ok()
            || keyfile::read_secret_key::<Vendor>(f).is_ok()
            || String::from_utf8_lossy(&text).contains("PRIVATE KEY");
        if holds_key {
            eprintln!("holds a private key: {}", f.display());
        }
        signing_keys += usize::from(holds_key);
    }
    summary::attack(
        M,
        "stolen disk: look for a signing key",
        signing_keys == 0,
        &format!("{} files, {signing_keys} private keys", files.len()),
    );
    assert_eq!(signing_keys, 0);

    // A second tetherd on the copies, with no dongle.
    let s = stolen.path();
    let rewritten = std::fs::read_to_string(s.join("authority.toml"))
        .unwrap()
        .replace(site.dir.path().to_str().unwrap(), s.to_str().unwrap());
    std::fs::write(s.join("authority.toml"), rewritten).unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin("tetherd"));
    cmd.arg("--config")
        .arg(s.join("authority.toml"))
        .arg("--dongle")
        .arg(format!("socket:{}", s.join("no-dongle.sock").display()))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let _thief = Proc::spawn(cmd, "tetherd-stolen");
    let thief = format!("http://127.0.0.1:{port}");
    wait_until(T, || http::get(&thief, "/healthz", None).is_ok());
    let (code, err) = never_issues(&site, &thief, Duration::from_secs(2));
    let st = status(&thief);
    let ok = code == 503 && err == "dongle_absent" && st["dongle"]["state"] == "absent";
    summary::attack(
        M,
        "stolen disk: tetherd on the copies, no dongle",
        ok,
        &format!("{code} {err}"),
    );
    assert!(ok, "{st}");
    // A consumer pointed at it stays unlicensed.
    let (_b, backend) = site.start_service("backend", &thief, &[]);
    let mut licensed = false;
    for _ in 0..40 {
        licensed |= works(&backend);
        std::thread::sleep(Duration::from_millis(50));
    }
    summary::attack(
        M,
        "stolen disk: consumer of the copied authority",
        !licensed,
        "unlicensed",
    );
    assert!(!licensed);
}

#[test]
fn a_dumped_session_key_dies_with_its_certificate() {
    let _g = summary::test(M, "a_dumped_session_key_dies_with_its_certificate");
    // What tetherd asks by default: 30 s backdate, 5 min lifetime.
    let t0: u64 = 1_800_000_000;
    let mut m = Mint::at(t0, testkeys::vendor(), testkeys::dongle(), "TD-1");
    m.cert_window = (t0 - 30, t0 + 300);
    let v = tether_verifier::Verifier::new(
        testkeys::vendor().public(),
        tether_verifier::Expectations::new("backend"),
    );
    let (nb, na) = m.cert_window;
    let leeway = 5;
    // Whatever times the thief writes into the token, at whatever moment
    // the consumer checks it.
    let mut latest_accepted = 0;
    let mut tried = 0;
    for now in (na - 30)..=(na + 120) {
        let datings = [
            (now, now + 60),
            (na - 60, na),
            (nb, nb + 60),
            (now, na),
            (now - 300, now),
            (na, na + 60),
        ];
        for (iat, exp) in datings {
            let mut c = m.claims("backend", iat);
            c.exp = tether_keys::UnixTime::from_secs(exp);
            let ok = v
                .verify_at(&m.token(&c), None, tether_keys::UnixTime::from_secs(now))
                .is_ok();
            if now > na + leeway {
                tried += 1;
                assert!(
                    !ok,
                    "accepted at {now} (cert ends {na}): iat {iat} exp {exp}"
                );
            }
            if ok {
                latest_accepted = latest_accepted.max(now);
            }
        }
    }
    summary::attack(
        M,
        "dumped session key after its certificate",
        true,
        &format!("{tried} tokens over 115 s after the end, none accepted"),
    );
    // The bound is exact: the certificate's end plus the verifier's leeway.
    assert_eq!(latest_accepted, na + leeway);
    // A certificate longer than consumers allow is worthless from the start.
    let mut long = Mint::at(t0, testkeys::vendor(), testkeys::dongle(), "TD-1");
    long.cert_window = (t0 - 30, t0 + 3600);
    let r = v.verify_at(
        &long.token(&long.claims("backend", t0)),
        None,
        tether_keys::UnixTime::from_secs(t0),
    );
    summary::attack(
        M,
        "session key certified for an hour",
        r.is_err(),
        &format!("{r:?}"),
    );
    assert_eq!(r, Err(tether_verifier::Error::CertificateTooLong(3630)));
}

/// Drives the device core as firmware: `at` is its uptime since power-up.
struct Firmware {
    dev: Device,
    cid: u32,
}

impl Firmware {
    fn exchange(&mut self, cid: u32, req: &Request, at: Duration) -> Result<Vec<u8>, u8> {
        let (cmd, payload) = req.encode();
        let mut out = Vec::new();
        for r in fragment(cid, cmd, &payload).unwrap() {
            out.extend(self.dev.handle_report_at(&r, at));
        }
        let mut asm = Reassembler::new(cid);
        for r in out {
            if let Progress::Done(m) = asm.push(&r).unwrap() {
                if m.cmd == Cmd::Error {
                    return Err(m.payload[0]);
                }
                return Ok(m.payload);
            }
        }
        panic!("no complete answer");
    }

    fn power_up(&mut self) {
        self.dev.power_up();
        let nonce = [7u8; 8];
        let answer = self
            .exchange(BROADCAST, &Request::Init { nonce }, Duration::ZERO)
            .unwrap();
        self.cid = InitResponse::decode(&answer).unwrap().cid;
    }

    fn delegate(&mut self, not_before: u64, len: u64, at: Duration) -> Result<(u64, u64), u8> {
        let req = DelegationRequest::new(
            [1; 32],
            SecretKey::<Session>::generate().public(),
            tether_keys::UnixTime::from_secs(not_before),
            tether_keys::UnixTime::from_secs(not_before + len),
        );
        let cid = self.cid;
        let payload = self.exchange(cid, &Request::Delegate(req), at)?;
        let cert = message::decode_delegate(&payload).unwrap();
        cert.verify(&testkeys::dongle().public()).unwrap();
        Ok((
            cert.request.not_before.secs(),
            cert.request.not_after.secs(),
        ))
    }
}

/// The thief's best strategy against the reach rule (section 6): the longest
/// windows, back to back, dated as far ahead as wished, power-cycling before
/// every DELEGATE, and keeping the dongle powered only as long as the budget
/// needs to refill. Returns (certificates, seconds covered, uptime spent).
fn presign_ahead(fw: &mut Firmware, rules: Rules, hour: Duration, far: u64) -> (u64, u64, u64) {
    let max = rules.max_window.as_secs();
    let (mut powered, mut next, mut certs) = (Duration::ZERO, far, 0u64);
    let step = Duration::from_secs(1);
    loop {
        fw.power_up();
        let mut at = Duration::ZERO;
        let signed = loop {
            match fw.delegate(next, max, at) {
                Ok(w) => break Some(w),
                Err(0x10) if powered + at + step <= hour => at += step,
                Err(0x10) => break None,
                Err(e) => panic!("unexpected refusal {e:#04x}"),
            }
        };
        powered += at;
        let Some((nb, na)) = signed else { break };
        assert_eq!((nb, na), (next, next + max));
        next = na;
        certs += 1;
    }
    (certs, next - far, powered.as_secs())
}

#[test]
fn an_hour_with_the_dongle_buys_at_most_the_documented_bound() {
    let _g = summary::test(
        M,
        "an_hour_with_the_dongle_buys_at_most_the_documented_bound",
    );
    let rules = Rules::default();
    let mut fw = Firmware {
        dev: Device::new(testkeys::dongle(), "TD-1", rules),
        cid: 0,
    };
    let hour = Duration::from_secs(3600);
    let far = 1_900_000_000u64;
    let max = rules.max_window.as_secs();
    let (certs, covered, _) = presign_ahead(&mut fw, rules, hour, far);
    // reach_budget + reach_rate x 1 h = 1 h + 2 h of validity, in 10 min windows.
    let bound = rules.reach_budget.as_secs() + u64::from(rules.reach_rate) * hour.as_secs();
    eprintln!(
        "one hour with the dongle: {certs} certificates, {} min without it (was 630 min under the 0.1 bucket)",
        covered / 60
    );
    assert_eq!(covered, bound, "180 minutes, as documented");
    assert_eq!(certs, bound / max);
    // And not one more: the budget is spent and refills only while powered.
    fw.power_up();
    let more = fw.delegate(far + covered, max, Duration::from_secs(299));
    summary::attack(
        M,
        "pre-sign certificates beyond the reach bound",
        more == Err(0x10),
        &format!(
            "{certs} certificates ({} min) in one hour, then {more:?}",
            covered / 60
        ),
    );
    assert_eq!(more, Err(0x10));
    // Many certificates for the same window (one per extra site) cost the
    // minimum charge each: a fresh budget buys reach_budget / min_charge.
    let mut fw = Firmware {
        dev: Device::new(testkeys::dongle(), "TD-1", rules),
        cid: 0,
    };
    fw.power_up();
    let mut same = 0u64;
    while fw.delegate(far, max, Duration::ZERO).is_ok() {
        same += 1;
        fw.power_up();
    }
    let first = max.max(rules.min_charge.as_secs());
    let expected = 1 + (rules.reach_budget.as_secs() - first) / rules.min_charge.as_secs();
    summary::attack(
        M,
        "many certificates for one window, power-cycling between them",
        same == expected,
        &format!("{same} certificates from a full budget"),
    );
    assert_eq!(same, expected, "first costs its window, the rest 60 s each");
    // Freshness (threat-model.md): certificates pre-signed in that hour
    // hold no nonce drawn later, so they buy at most F of operation per
    // consumer (`fresh::pre_signed_certificates_license_nobody_once_nonces_rotate`).
    // What a dongle relayed live to other sites still buys: instances up to
    // seats x the certificates it signs within F. From a full budget, and
    // F = 5 min powered, at most reach_budget / min_charge + 2 F / min_charge.
    let f = Duration::from_secs(300);
    let mut within_f = same;
    // One second powered, one DELEGATE, a power cycle: 300 times.
    for _ in 0..f.as_secs() {
        fw.power_up();
        if fw.delegate(far, max, Duration::from_secs(1)).is_ok() {
            within_f += 1;
        }
    }
    let min_charge = rules.min_charge.as_secs();
    let instance_bound =
        (rules.reach_budget.as_secs() + u64::from(rules.reach_rate) * f.as_secs()) / min_charge;
    eprintln!(
        "certificates a live dongle signs within F = 5 min: {within_f} (bound {instance_bound}): live instances per service at most {within_f} x seats"
    );
    summary::attack(
        M,
        "certificates within F from one dongle (the live-relay instance bound)",
        within_f <= instance_bound,
        &format!("{within_f} certificates within 5 min, bound {instance_bound}"),
    );
    assert!(within_f <= instance_bound, "{within_f} > {instance_bound}");
    // A window longer than the firmware signs.
    fw.power_up();
    let long = fw.delegate(far, max + 1, Duration::from_secs(3600));
    summary::attack(
        M,
        "certificate window over 10 min",
        long == Err(0x11),
        &format!("{long:?}"),
    );
    assert_eq!(long, Err(0x11));
}
