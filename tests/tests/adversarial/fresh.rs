//! Freshness (issue 15) against a patched authority: a rogue that holds a
//! real dongle (the firmware core, with its reach rule) and signs whatever
//! it likes with the session keys that dongle certifies. It cannot serve a
//! consumer whose nonce is not in the certificate, cannot put more leaves
//! than seats in one, and cannot keep a real consumer licensed more than F
//! after the dongle left, whatever it pre-signed while it had the dongle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_dongle::ctaphid::Command as Cmd;
use tether_dongle::native::message::{self, Request};
use tether_emulator::{Device, Rules};
use tether_keys::merkle::{Leaf, LeafSet};
use tether_keys::{
    Certificate, DelegationRequest, Dongle, License, SecretKey, Session, TokenClaims, TokenSigner,
    UnixTime, keyfile,
};
use tether_tests::{Site, works};
use tether_verifier::{Error, Expectations, Verifier};

use crate::rig::query_param;
use crate::summary;

const M: &str = module_path!();
/// The license's nonce period in these tests: the shortest a license takes.
const F: Duration = Duration::from_secs(60);

/// A rogue authority's own dongle: the firmware core of the site's dongle.
struct RogueDongle {
    dev: Device,
    serial: String,
    powered: Instant,
}

impl RogueDongle {
    fn of(site: &Site) -> RogueDongle {
        let (key, _) =
            keyfile::read_secret_key::<Dongle>(&site.identity.join("dongle.key")).unwrap();
        RogueDongle {
            dev: Device::new(key, &site.serial, Rules::default()),
            serial: site.serial.clone(),
            powered: Instant::now(),
        }
    }

    /// A certificate for a fresh session key committing to `leaves`, valid
    /// `[now - 30 s, now + 300 s]`: what DELEGATE answers, or its error code.
    fn certify(&mut self, leaves: &LeafSet) -> Result<(Certificate, TokenSigner), u8> {
        let key = SecretKey::<Session>::generate();
        let now = UnixTime::now();
        let mut req = DelegationRequest::new(
            [3; 32],
            key.public(),
            now - Duration::from_secs(30),
            now + Duration::from_secs(300),
        );
        req.commitment = leaves.commitment().unwrap();
        let (cmd, payload) = Request::Delegate(req).encode();
        assert_eq!(cmd, Cmd::Delegate);
        let answer = self
            .dev
            .command(1, cmd, &payload, self.powered.elapsed())
            .map_err(|e| e.code())?;
        let cert = message::decode_delegate(&answer).unwrap();
        assert_eq!(cert.serial, self.serial);
        Ok((cert, TokenSigner::new(key).unwrap()))
    }
}

/// A token as the rogue signs it: any claims, with a real certified key.
fn token(
    license: &License,
    cert: &Certificate,
    key: &TokenSigner,
    instance: &str,
    nonce: &str,
    prf: Option<String>,
) -> String {
    let now = UnixTime::now();
    let claims = TokenClaims {
        iss: tether_keys::claims::issuer_for(&license.terms().dongle_serial),
        sub: "backend".into(),
        aud: "backend".into(),
        iat: now,
        nbf: now - Duration::from_secs(30),
        exp: now + Duration::from_secs(60),
        jti: format!("rogue-{}", rand_suffix()),
        lic: URL_SAFE_NO_PAD.encode(license.encoded()),
        dcert: URL_SAFE_NO_PAD.encode(cert.encoded()),
        nonce: Some(nonce.into()),
        ins: Some(instance.into()),
        prf,
        grace: None,
    };
    key.sign(&claims).unwrap()
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    tether_keys::random_fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn proof_of(set: &LeafSet, leaf: &Leaf) -> Option<String> {
    Some(set.prove(set.index_of(leaf)?)?.to_claim())
}

fn fresh_site() -> Site {
    Site::with_license(|t| {
        t.nonce_period = F.as_secs() as u32;
        t.seats.insert("backend".into(), 2);
    })
}

#[test]
fn a_rogue_authority_cannot_license_a_nonce_outside_the_certificate_or_beyond_the_seats() {
    let _g = summary::test(
        M,
        "a_rogue_authority_cannot_license_a_nonce_outside_the_certificate_or_beyond_the_seats",
    );
    let site = fresh_site();
    let license = keyfile::read_license(&site.license).unwrap();
    let verifier = Verifier::new(
        keyfile::read_public_key(&site.vendor_pub).unwrap().0,
        Expectations::new("backend").instance("victim"),
    );
    let mut dongle = RogueDongle::of(&site);
    let now = UnixTime::now();

    // A certificate of other instances' nonces: a token for the victim's
    // nonce has no proof that holds, whichever leaf's proof it borrows.
    let others = LeafSet::new([
        Leaf::new("backend", "a", "nonce-a").unwrap(),
        Leaf::new("backend", "victim", "an-older-nonce").unwrap(),
    ]);
    let (cert, key) = dongle.certify(&others).unwrap();
    let mut refused = 0;
    for borrowed in others.leaves() {
        let t = token(
            &license,
            &cert,
            &key,
            "victim",
            "the-victims-nonce",
            proof_of(&others, borrowed),
        );
        let got = verifier.verify_fresh(&t, &["the-victims-nonce"], now);
        assert!(matches!(got, Err(Error::NotIncluded(_))), "{got:?}");
        refused += 1;
    }
    let bare = token(&license, &cert, &key, "victim", "the-victims-nonce", None);
    assert!(matches!(
        verifier.verify_fresh(&bare, &["the-victims-nonce"], now),
        Err(Error::NotIncluded(_))
    ));
    // Echoing a nonce that is in the certificate but not the consumer's own.
    let echoed = token(
        &license,
        &cert,
        &key,
        "victim",
        "an-older-nonce",
        proof_of(&others, &others.leaves()[1]),
    );
    assert!(matches!(
        verifier.verify_fresh(&echoed, &["the-victims-nonce"], now),
        Err(Error::NonceMismatch)
    ));
    summary::attack(
        M,
        "token for a nonce the certificate does not hold (borrowed proofs, none, another nonce)",
        refused == 2,
        "NotIncluded, NotIncluded, NonceMismatch",
    );

    // Three backend leaves in one certificate, seats 2: the dongle signs it
    // (it cannot know the seats), and every consumer refuses every token
    // under it, its own leaf included.
    let crowd = LeafSet::new(
        ["victim", "b", "c"].map(|i| Leaf::new("backend", i, format!("n-{i}")).unwrap()),
    );
    let (cert, key) = dongle.certify(&crowd).unwrap();
    let mine = Leaf::new("backend", "victim", "n-victim").unwrap();
    let t = token(
        &license,
        &cert,
        &key,
        "victim",
        "n-victim",
        proof_of(&crowd, &mine),
    );
    let got = verifier.verify_fresh(&t, &["n-victim"], now);
    let over = matches!(got, Err(Error::OverSeats { .. }));
    summary::attack(
        M,
        "a certificate with more leaves than seats",
        over,
        &format!("{got:?}"),
    );
    assert!(over, "{got:?}");

    // The same with two leaves is accepted: the rig is sound.
    let pair =
        LeafSet::new(["victim", "b"].map(|i| Leaf::new("backend", i, format!("n-{i}")).unwrap()));
    let (cert, key) = dongle.certify(&pair).unwrap();
    let t = token(
        &license,
        &cert,
        &key,
        "victim",
        "n-victim",
        proof_of(&pair, &mine),
    );
    verifier.verify_fresh(&t, &["n-victim"], now).unwrap();
}

/// The rogue has the dongle for a while and certifies every nonce the real
/// `tether backend` sends, then loses it: from then on it can only serve
/// certificates it already has, whose leaves hold the consumer's old nonces.
/// The consumer rotates its nonce at F/2 and accepts the old one while it
/// is younger than F; so it stops at most F after its last nonce the dongle
/// certified, for all the rogue pre-signed.
#[test]
fn pre_signed_certificates_license_nobody_once_nonces_rotate() {
    let _g = summary::test(
        M,
        "pre_signed_certificates_license_nobody_once_nonces_rotate",
    );
    let site = fresh_site();
    let license = Arc::new(keyfile::read_license(&site.license).unwrap());
    let dongle = Arc::new(Mutex::new(Some(RogueDongle::of(&site))));
    // Every nonce the rogue had certified: nonce -> (certificate, key, proof, instance).
    type Signed = (Certificate, TokenSigner, String, String);
    let signed: Arc<Mutex<HashMap<String, Signed>>> = Arc::default();
    let last_certified: Arc<Mutex<Option<(String, Instant)>>> = Arc::default();
    let rogue = crate::rig::Rogue::start();
    {
        let (license, dongle, signed, last) = (
            license.clone(),
            dongle.clone(),
            signed.clone(),
            last_certified.clone(),
        );
        rogue.serve_target(move |target| {
            let (Some(instance), Some(nonce)) = (
                query_param(target, "instance"),
                query_param(target, "nonce"),
            ) else {
                return (400, r#"{"code":"bad_request","message":"rogue"}"#.into());
            };
            let mut signed = signed.lock().unwrap();
            if !signed.contains_key(nonce)
                && let Some(d) = dongle.lock().unwrap().as_mut()
            {
                // With the dongle: certify this nonce (and every one before,
                // as a pre-signing thief would).
                let leaf = Leaf::new("backend", instance, nonce).unwrap();
                let set = LeafSet::new([leaf.clone()]);
                let (cert, key) = d.certify(&set).unwrap();
                let prf = proof_of(&set, &leaf).unwrap();
                signed.insert(nonce.to_string(), (cert, key, prf, instance.to_string()));
                *last.lock().unwrap() = Some((nonce.to_string(), Instant::now()));
            }
            // Serve this nonce if certified; else the freshest one that is.
            let pick = signed
                .get(nonce)
                .map(|s| (nonce.to_string(), s))
                .or_else(|| {
                    let (n, _) = last.lock().unwrap().clone()?;
                    signed.get(&n).map(|s| (n, s))
                });
            match pick {
                Some((n, (cert, key, prf, ins))) => {
                    let t = token(&license, cert, key, ins, &n, Some(prf.clone()));
                    (
                        200,
                        serde_json::json!({ "token": t, "expires_in": 60, "refresh_in": 30 })
                            .to_string(),
                    )
                }
                None => (503, r#"{"code":"dongle_absent","message":"rogue"}"#.into()),
            }
        });
    }
    let (_svc, backend) = site.start_service("backend", &rogue.url, &[]);
    tether_tests::wait_until(Duration::from_secs(15), || works(&backend));

    // Before it goes, the rogue pre-signs all the reach rule lets it: 30
    // certificates whose leaves guess the consumer's next nonces.
    let instance = signed.lock().unwrap().values().next().unwrap().3.clone();
    for i in 0..30 {
        let guess = Leaf::new(
            "backend",
            instance.as_str(),
            format!("guess-{i}-{}", rand_suffix()),
        )
        .unwrap();
        let set = LeafSet::new([guess.clone()]);
        let (cert, key) = dongle
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .certify(&set)
            .unwrap();
        let prf = proof_of(&set, &guess).unwrap();
        signed.lock().unwrap().insert(
            guess.nonce().to_string(),
            (cert, key, prf, instance.clone()),
        );
    }
    // The dongle leaves; what the rogue holds is all it will ever have.
    let signed_count = signed.lock().unwrap().len();
    *dongle.lock().unwrap() = None;
    let gone = Instant::now();
    let (_, last_drawn) = last_certified.lock().unwrap().clone().unwrap();
    // Until the consumer's last certified nonce is F old, it may still work.
    let mut stopped = None;
    while gone.elapsed() < F + Duration::from_secs(20) {
        if !works(&backend) {
            stopped = Some(Instant::now());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let stopped = stopped.expect("the consumer kept working on pre-signed certificates");
    // And it stays stopped: the rogue has nothing newer to offer.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        assert!(!works(&backend), "licensed again after it stopped");
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = stopped.saturating_duration_since(last_drawn);
    let bound = F + Duration::from_secs(3);
    let held = after <= bound;
    summary::attack(
        M,
        "keep a consumer licensed on certificates pre-signed while the dongle was at hand",
        held,
        &format!(
            "{signed_count} certificates pre-signed; the consumer stopped {:.1} s after its last certified nonce (F = {} s)",
            after.as_secs_f64(),
            F.as_secs()
        ),
    );
    eprintln!(
        "pre-signed: consumer stopped {:.1} s after its last certified nonce, {:.1} s after the dongle left (F = {} s)",
        after.as_secs_f64(),
        stopped.saturating_duration_since(gone).as_secs_f64(),
        F.as_secs()
    );
    assert!(
        held,
        "stopped {after:?} after the last certified nonce, over F"
    );
}
