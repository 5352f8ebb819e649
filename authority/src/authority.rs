//! The authority's shared state and token issuance.
//!
//! The presence watchdog (`presence.rs`) is the only writer: it installs a
//! [`Session`] once the dongle has certified a fresh session key, and removes
//! it the moment the dongle is gone. Every `GET /token` reads the current
//! session under a read lock and signs with it; with no session there is no
//! key to sign with, so issuance stops at once, whatever else happens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tether_keys::{
    Certificate, CredentialFile, Fingerprint, License, SecretKey, Session as SessionRole,
    TokenClaims, TokenSigner,
};
use tokio::sync::watch;

use crate::metrics::{Metrics, Refusal};
use crate::state::StateStore;

/// A certified session: the in-memory key that signs tokens and its certificate.
/// Dropping it wipes the key (`SecretKey` is `ZeroizeOnDrop`).
#[derive(Debug)]
pub struct Session {
    signer: TokenSigner,
    cert: Certificate,
    cert_b64: String,
    fingerprint: Fingerprint,
}

impl Session {
    /// Pairs a session key with the certificate the dongle signed for it.
    pub fn new(key: SecretKey<SessionRole>, cert: Certificate) -> tether_keys::Result<Self> {
        let fingerprint = key.public().fingerprint();
        Ok(Session {
            signer: TokenSigner::new(key)?,
            cert_b64: URL_SAFE_NO_PAD.encode(cert.encoded()),
            cert,
            fingerprint,
        })
    }

    /// The certificate.
    pub fn cert(&self) -> &Certificate {
        &self.cert
    }

    /// Fingerprint of the session key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// The license state pushed on `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEvent {
    /// `present` or `absent`.
    pub state: &'static str,
    /// Why, in words.
    pub reason: String,
    /// When this state began (UNIX seconds).
    pub since: u64,
}

/// What `GET /status` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DongleStatus {
    /// `absent`, `verifying` or `present`.
    pub state: &'static str,
    /// When this state began (UNIX seconds).
    pub since: u64,
    /// Why the dongle is in this state.
    pub reason: String,
    /// Serial of the dongle last seen.
    pub serial: Option<String>,
    /// Its signature counter.
    pub counter: Option<u32>,
    /// Fingerprint of the current session key.
    pub session: Option<String>,
    /// End of the current certificate (UNIX seconds).
    pub cert_not_after: Option<u64>,
    /// Refusals of a dongle that is not the licensed one (clone, wrong serial, bad signature).
    pub refused_dongles: u64,
}

/// Settings of issuance.
#[derive(Debug, Clone)]
pub struct IssueSettings {
    /// Token lifetime requested by the configuration.
    pub token_ttl: Duration,
    /// How far behind its high-water mark the clock may be.
    pub clock_tolerance: Duration,
    /// Tokens per second per service.
    pub rate_limit: u32,
}

/// A successful `GET /token`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The JWT.
    pub token: String,
    /// `exp` of the token (UNIX seconds).
    pub expires_at: u64,
    /// When the consumer should fetch the next one (UNIX seconds).
    pub refresh_at: u64,
    /// Seconds until `expires_at`.
    pub expires_in: u64,
    /// Seconds until `refresh_at`.
    pub refresh_in: u64,
}

/// A refused token request: the reason and a message safe to show the caller.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Why.
    pub why: Refusal,
    /// Details for the caller (never a secret).
    pub message: String,
}

impl Refused {
    fn new(why: Refusal, message: impl Into<String>) -> Self {
        Refused {
            why,
            message: message.into(),
        }
    }
}

/// A token bucket per service: `rate` tokens a second, a burst of `rate`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The authority.
#[derive(Debug)]
pub struct Authority {
    license: License,
    lic_b64: String,
    issuer: String,
    credentials: CredentialFile,
    settings: IssueSettings,
    /// The only owner of the session: `/token` signs while holding the read
    /// guard, so `set_absent`'s write lock waits for in-flight signatures and
    /// then wipes the key itself; no token is signed after it returns.
    session: RwLock<Option<Session>>,
    events: watch::Sender<PresenceEvent>,
    status: Mutex<DongleStatus>,
    buckets: HashMap<String, Mutex<Bucket>>,
    clock_mark: AtomicU64,
    /// Persisted high-water marks.
    pub store: StateStore,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

impl Authority {
    /// An authority for a verified `license`, with no session yet.
    pub fn new(
        license: License,
        credentials: CredentialFile,
        settings: IssueSettings,
        store: StateStore,
    ) -> Self {
        let now = tether_keys::now_unix();
        let absent = PresenceEvent {
            state: "absent",
            reason: "starting: no dongle verified yet".into(),
            since: now,
        };
        let buckets = credentials
            .services()
            .map(|s| {
                let b = Bucket {
                    tokens: f64::from(settings.rate_limit),
                    last: Instant::now(),
                };
                (s.to_string(), Mutex::new(b))
            })
            .collect();
        let clock_mark = AtomicU64::new(store.marks().clock);
        Authority {
            lic_b64: URL_SAFE_NO_PAD.encode(license.encoded()),
            issuer: tether_keys::claims::issuer_for(&license.terms().dongle_serial),
            license,
            credentials,
            settings,
            session: RwLock::new(None),
            events: watch::channel(absent.clone()).0,
            status: Mutex::new(DongleStatus {
                state: "absent",
                since: now,
                reason: absent.reason,
                ..DongleStatus::default()
            }),
            buckets,
            clock_mark,
            store,
            metrics: Metrics::default(),
        }
    }

    /// The license this authority serves.
    pub fn license(&self) -> &License {
        &self.license
    }

    fn session(&self) -> std::sync::RwLockReadGuard<'_, Option<Session>> {
        self.session.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Time left on the current certificate (zero without one).
    pub fn cert_left(&self) -> Duration {
        self.session().as_ref().map_or(Duration::ZERO, |s| {
            Duration::from_secs(
                s.cert
                    .request
                    .not_after
                    .saturating_sub(tether_keys::now_unix()),
            )
        })
    }

    /// Whether a certified session is installed.
    pub fn is_present(&self) -> bool {
        self.session().is_some()
    }

    fn status_mut(&self) -> std::sync::MutexGuard<'_, DongleStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the dongle status.
    pub fn status(&self) -> DongleStatus {
        self.status_mut().clone()
    }

    /// Subscribes to presence events (the current one is seen first).
    pub fn subscribe(&self) -> watch::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    /// Installs a freshly certified session (first one, or a rotation).
    pub fn set_present(&self, session: Session, counter: u32) {
        let now = tether_keys::now_unix();
        let fingerprint = session.fingerprint().to_string();
        let cert_not_after = session.cert().request.not_after;
        let serial = session.cert().serial.clone();
        *self.session.write().unwrap_or_else(|p| p.into_inner()) = Some(session);
        let was_present = {
            let mut st = self.status_mut();
            let was = st.state == "present";
            if !was {
                st.since = now;
                st.reason = "dongle verified".into();
            }
            st.state = "present";
            st.serial = Some(serial);
            st.counter = Some(counter);
            st.session = Some(fingerprint);
            st.cert_not_after = Some(cert_not_after);
            was
        };
        if !was_present {
            self.metrics.transition();
            self.events.send_replace(PresenceEvent {
                state: "present",
                reason: "dongle verified".into(),
                since: now,
            });
        }
    }

    /// Removes the session and wipes its key at once (after any signature
    /// already under way), then tells every subscriber. No token is signed
    /// with it after this returns.
    pub fn set_absent(&self, reason: &str) {
        let old = self
            .session
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(old);
        let now = tether_keys::now_unix();
        // Subscribers hear of a change of what they were last told: a failed
        // verification (verifying -> absent) is not a new "absent" event.
        let was_present = self.events.borrow().state != "absent";
        {
            let mut st = self.status_mut();
            if st.state != "absent" || st.reason != reason {
                st.since = now;
            }
            st.state = "absent";
            st.reason = reason.to_string();
            st.session = None;
            st.cert_not_after = None;
        }
        if was_present {
            self.metrics.transition();
            self.events.send_replace(PresenceEvent {
                state: "absent",
                reason: reason.to_string(),
                since: now,
            });
        }
    }

    /// Marks that a dongle is being verified (status only; issuance is off).
    pub fn set_verifying(&self, serial: Option<&str>) {
        let mut st = self.status_mut();
        st.state = "verifying";
        st.since = tether_keys::now_unix();
        st.reason = "challenging the dongle".into();
        st.serial = serial.map(str::to_string);
    }

    /// Counts a refused dongle (clone, wrong serial, bad signature) with its reason.
    pub fn refuse_dongle(&self, reason: &str) {
        self.status_mut().refused_dongles += 1;
        self.set_absent(reason);
    }

    /// Raises the persisted clock mark to `now` (called by the watchdog).
    pub fn advance_clock(&self, now: u64) -> Result<(), crate::state::StateError> {
        if now > self.clock_mark.load(Ordering::Relaxed) {
            self.store.advance_clock(now)?;
            self.clock_mark.fetch_max(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the clock is behind its high-water mark by more than the tolerance.
    pub fn clock_rolled_back(&self, now: u64) -> Option<u64> {
        let mark = self.clock_mark.load(Ordering::Relaxed);
        (now.saturating_add(self.settings.clock_tolerance.as_secs()) < mark).then_some(mark)
    }

    fn take_rate(&self, service: &str) -> bool {
        let Some(bucket) = self.buckets.get(service) else {
            return false;
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(self.settings.rate_limit);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Handles `GET /token`: authenticates, checks, signs. Counts the outcome.
    pub fn issue(
        &self,
        bearer: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<TokenResponse, Refused> {
        let result = self.try_issue(bearer, nonce);
        match &result {
            Ok(_) => self.metrics.issued(),
            Err(r) => self.metrics.refused(r.why),
        }
        result
    }

    fn try_issue(
        &self,
        bearer: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<TokenResponse, Refused> {
        let presented = bearer.ok_or_else(|| {
            Refused::new(
                Refusal::Unauthorized,
                "missing Authorization: Bearer credential",
            )
        })?;
        let service = self
            .credentials
            .authenticate(presented.as_bytes())
            .ok_or_else(|| Refused::new(Refusal::Unauthorized, "unknown service credential"))?;
        if let Some(n) = nonce
            && (n.is_empty()
                || n.len() > 128
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(Refused::new(
                Refusal::BadRequest,
                "nonce must be 1-128 base64url characters",
            ));
        }
        if !self.license.allows_service(service) {
            return Err(Refused::new(
                Refusal::ServiceNotLicensed,
                format!("service {service} is not licensed"),
            ));
        }
        if !self.take_rate(service) {
            return Err(Refused::new(
                Refusal::RateLimited,
                format!(
                    "service {service} is over {} tokens per second",
                    self.settings.rate_limit
                ),
            ));
        }
        let now = tether_keys::now_unix();
        self.license
            .check_time(now, 0)
            .map_err(|e| Refused::new(Refusal::LicenseNotValid, e.to_string()))?;
        if let Some(mark) = self.clock_rolled_back(now) {
            return Err(Refused::new(
                Refusal::ClockRollback,
                format!(
                    "system clock ({now}) is behind the time already seen ({mark}); fix the clock"
                ),
            ));
        }
        // Held until the token is signed (see the `session` field).
        let guard = self.session();
        let session = guard
            .as_ref()
            .ok_or_else(|| Refused::new(Refusal::DongleAbsent, self.status().reason))?;
        // A clock stepped back behind the certificate's start (which is
        // already backdated): consumers would refuse the token, so say why.
        if now < session.cert.request.not_before {
            return Err(Refused::new(
                Refusal::ClockRollback,
                format!(
                    "system clock ({now}) is behind the dongle certificate's start ({}); fix the clock",
                    session.cert.request.not_before
                ),
            ));
        }
        let cert_end = session.cert.request.not_after;
        let ttl = self
            .settings
            .token_ttl
            .as_secs()
            .min(u64::from(self.license.terms().max_token_ttl))
            .min(self.license.terms().not_after.saturating_sub(now))
            .min(cert_end.saturating_sub(now));
        if ttl == 0 {
            return Err(Refused::new(
                Refusal::DongleAbsent,
                "certificate is being renewed; retry",
            ));
        }
        let mut jti = [0u8; 16];
        tether_keys::random_fill(&mut jti);
        let claims = TokenClaims {
            iss: self.issuer.clone(),
            sub: service.to_string(),
            aud: service.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: URL_SAFE_NO_PAD.encode(jti),
            lic: self.lic_b64.clone(),
            dcert: session.cert_b64.clone(),
            nonce: nonce.map(str::to_string),
        };
        let token = session
            .signer
            .sign(&claims)
            .map_err(|e| Refused::new(Refusal::BadRequest, e.to_string()))?;
        let refresh_in = ttl / 2;
        Ok(TokenResponse {
            token,
            expires_at: now + ttl,
            refresh_at: now + refresh_in,
            expires_in: ttl,
            refresh_in,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use tether_keys::{DelegationRequest, LicenseId, LicenseTerms, testkeys};

    use super::*;

    const SERIAL: &str = "TD-UNIT";

    pub(crate) fn authority(dir: &std::path::Path) -> (Authority, String) {
        let now = tether_keys::now_unix();
        let license = LicenseTerms {
            id: LicenseId([1; 16]),
            customer: "Unit".into(),
            dongle_serial: SERIAL.into(),
            dongle_key: testkeys::dongle().public(),
            issued_at: now - 60,
            not_before: now - 60,
            not_after: now + 3600,
            max_token_ttl: 300,
            features: vec![],
            services: vec!["backend".into()],
        }
        .sign(&testkeys::vendor())
        .unwrap();
        let mut credentials = CredentialFile::parse(&dir.join("credentials"), "").unwrap();
        let secret = credentials.enroll("backend", false).unwrap();
        let settings = IssueSettings {
            token_ttl: Duration::from_secs(60),
            clock_tolerance: Duration::from_secs(300),
            rate_limit: 1000,
        };
        let store = crate::state::StateStore::open(&dir.join("state")).unwrap();
        let auth = Authority::new(license, credentials, settings, store);
        (auth, secret.expose().to_string())
    }

    pub(crate) fn session(not_before: u64) -> Session {
        let cert = tether_keys::Certificate::sign(
            DelegationRequest {
                nonce: [7; 32],
                session_key: testkeys::session().public(),
                not_before,
                not_after: not_before + 300,
            },
            SERIAL,
            1,
            &testkeys::dongle(),
        )
        .unwrap();
        Session::new(testkeys::session(), cert).unwrap()
    }

    /// `set_absent` waits for a signature under way and wipes the key itself:
    /// once it returns, no request can still be holding the session.
    #[test]
    fn set_absent_waits_for_in_flight_signers_and_then_nothing_signs() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        let auth = Arc::new(auth);
        auth.set_present(session(tether_keys::now_unix() - 30), 1);
        assert!(auth.issue(Some(&secret), None).is_ok());

        // An in-flight signer holds the session read guard, as try_issue does.
        let in_flight = auth.session();
        let unplug = {
            let auth = auth.clone();
            std::thread::spawn(move || auth.set_absent("unplugged"))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !unplug.is_finished(),
            "set_absent returned while a signer still held the session"
        );
        drop(in_flight);
        unplug.join().unwrap();
        assert!(!auth.is_present());
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.why, Refusal::DongleAbsent);
    }

    #[test]
    fn a_clock_behind_the_certificate_start_refuses_to_issue() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        // A certificate that starts in 10 minutes: as if the clock stepped back.
        auth.set_present(session(tether_keys::now_unix() + 600), 1);
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.why, Refusal::ClockRollback);
        assert!(
            refused.message.contains("certificate"),
            "{}",
            refused.message
        );
    }
}
