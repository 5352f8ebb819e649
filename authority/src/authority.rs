//! The authority's shared state and token issuance.
//!
//! The presence watchdog (`presence.rs`) is the only writer: it installs a
//! [`Session`] once the dongle has certified a fresh session key, and removes
//! it the moment the dongle is gone. Every `GET /token` reads the current
//! session under a read lock and signs with it; with no session there is no
//! key to sign with, so issuance stops at once, whatever else happens.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tether_keys::wire::{
    DongleStatus, PresenceEvent, PresenceState, Refusal, RefusalCode, TokenResponse,
};
use tether_keys::{
    Certificate, CredentialFile, Fingerprint, LeafSet, License, SecretKey, Session as SessionRole,
    TokenClaims, TokenSigner, UnixTime,
};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::freshness::{CommittedLeaves, Freshness};
use crate::leases::{self, Acquired, Leases};
pub use crate::license::ActiveLicense;
use crate::metrics::Metrics;
use crate::state::StateStore;

/// How far before its issue time a token's `nbf` lies, in seconds, so that
/// consumers whose clocks run a little behind the authority's accept it (the
/// certificates are backdated by as much). Never before the certificate's
/// own `not_before` or the license's, and `exp` is not moved: a token is
/// usable no longer than before.
pub const TOKEN_BACKDATE_SECS: u64 = 30;
/// A lease outlives its token by this much (seconds): the consumers' default
/// leeway, during which they may still accept the token.
pub const LEASE_LEEWAY_SECS: u64 = 5;

/// What `GET /token` asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequest<'a> {
    /// The presented Bearer credential.
    pub bearer: Option<&'a str>,
    /// The consumer's nonce, echoed in the token.
    pub nonce: Option<&'a str>,
    /// The consumer instance (`?instance=`), which holds a lease.
    pub instance: Option<&'a str>,
    /// The peer's address, shown with its lease.
    pub peer: Option<std::net::SocketAddr>,
    /// A second try of the same HTTP request, after waiting for the
    /// certificate that holds its nonce: the first try spent its rate.
    pub retry: bool,
}

/// A certified session: the in-memory key that signs tokens and its certificate.
/// Dropping it wipes the key (`SecretKey` is `ZeroizeOnDrop`).
#[derive(Debug)]
pub struct Session {
    signer: TokenSigner,
    cert: Certificate,
    cert_b64: String,
    fingerprint: Fingerprint,
    /// The leaves the certificate commits to, with their proofs.
    committed: CommittedLeaves,
}

impl Session {
    /// Pairs a session key with the certificate the dongle signed for it.
    ///
    /// # Errors
    ///
    /// [`tether_keys::Error`] when the key cannot be set up for signing tokens.
    pub fn new(key: SecretKey<SessionRole>, cert: Certificate) -> tether_keys::Result<Self> {
        Self::with_leaves(key, cert, &LeafSet::default())
    }

    /// [`Session::new`] for a certificate that commits to `leaves`
    /// (freshness): each leaf's proof is computed here, once.
    ///
    /// # Errors
    ///
    /// [`tether_keys::Error`] when the key cannot be set up for signing
    /// tokens, or `leaves` are not what the certificate commits to.
    pub fn with_leaves(
        key: SecretKey<SessionRole>,
        cert: Certificate,
        leaves: &LeafSet,
    ) -> tether_keys::Result<Self> {
        if leaves.commitment()? != cert.request.commitment {
            return Err(tether_keys::Error::Invalid {
                what: "session leaves",
                reason: "not the ones the certificate commits to".into(),
            });
        }
        let fingerprint = key.public().fingerprint();
        Ok(Session {
            signer: TokenSigner::new(key)?,
            cert_b64: URL_SAFE_NO_PAD.encode(cert.encoded()),
            cert,
            fingerprint,
            committed: CommittedLeaves::new(leaves),
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

/// Settings of issuance.
#[derive(Debug, Clone)]
pub struct IssueSettings {
    /// Token lifetime requested by the configuration.
    pub token_ttl: Duration,
    /// How far behind its high-water mark the clock may be.
    pub clock_tolerance: Duration,
    /// Tokens per second per service (also the burst).
    pub rate_limit: u32,
}

/// The authority.
#[derive(Debug)]
pub struct Authority {
    /// Swappable while tokens are issued: each request reads one version
    /// from start to end ([`Authority::replace_license`]).
    license: ArcSwap<ActiveLicense>,
    credentials: CredentialFile,
    settings: IssueSettings,
    /// Every wall-clock reading of the authority comes from here.
    clock: Arc<dyn Clock>,
    /// The only owner of the session: `/token` signs while holding the read
    /// guard, so `set_absent`'s write lock waits for in-flight signatures and
    /// then wipes the key itself; no token is signed after it returns.
    session: RwLock<Option<Session>>,
    events: watch::Sender<PresenceEvent>,
    status: Mutex<DongleStatus>,
    /// One GCRA limiter per enrolled service: `rate_limit` a second, a burst
    /// of as many. The set of services is fixed at start, so nothing grows.
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    clock_mark: AtomicU64,
    /// Seats: one lease per (service, instance).
    pub leases: Leases,
    /// Persisted high-water marks.
    pub store: StateStore,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Nonces waiting for a certificate (licenses with a nonce period).
    pub freshness: Freshness,
    /// Sequences below this one are revoked (0: none), for the license's id
    /// (which never changes while the authority runs).
    pub(crate) revoked_below: AtomicU64,
    /// Wakes the license watcher at once (SIGHUP) instead of at its next poll.
    pub license_check: tokio::sync::Notify,
    /// Verdicts on license installs, for `/events` (`event: license`).
    pub license_events: tokio::sync::broadcast::Sender<crate::license::Verdict>,
}

impl Authority {
    /// An authority for a verified `license`, with no session yet, on the
    /// system clock.
    pub fn new(
        license: License,
        credentials: CredentialFile,
        settings: IssueSettings,
        store: StateStore,
    ) -> Self {
        Self::with_clock(license, credentials, settings, store, Arc::new(SystemClock))
    }

    /// [`Authority::new`] on another clock (a fake one, in tests).
    pub fn with_clock(
        license: License,
        credentials: CredentialFile,
        settings: IssueSettings,
        store: StateStore,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        let absent = PresenceEvent {
            state: PresenceState::Absent,
            reason: "starting: no dongle verified yet".into(),
            since: now,
        };
        // The configuration refuses 0; should one get here anyway, 1 a second
        // is the closest limit that still limits.
        let rate = NonZeroU32::new(settings.rate_limit).unwrap_or(NonZeroU32::MIN);
        let limiters = credentials
            .services()
            .map(|s| (s.to_string(), RateLimiter::direct(Quota::per_second(rate))))
            .collect();
        let clock_mark = AtomicU64::new(store.marks().clock.secs());
        let terms = license.terms();
        let revoked_below = AtomicU64::new(
            store
                .revoked_through(&terms.id.to_string())
                .map_or(0, |s| s.saturating_add(1)),
        );
        let leases = Leases::new(
            terms
                .services
                .iter()
                .map(|s| (s.as_str(), terms.seats_for(s))),
        );
        // Tokens issued before a restart live at most one lifetime more:
        // the license's longest, since the run before may have had a longer
        // `--token-ttl` than this one.
        let lifetime = u64::from(terms.max_token_ttl);
        leases.restore(
            &store.marks().leases,
            now,
            now + Duration::from_secs(lifetime + LEASE_LEEWAY_SECS),
        );
        Authority {
            license: ArcSwap::from_pointee(ActiveLicense::new(license)),
            credentials,
            settings,
            clock,
            session: RwLock::new(None),
            events: watch::channel(absent.clone()).0,
            status: Mutex::new(DongleStatus {
                state: PresenceState::Absent,
                since: now,
                reason: absent.reason,
                ..DongleStatus::default()
            }),
            limiters,
            clock_mark,
            leases,
            store,
            metrics: Metrics::default(),
            freshness: Freshness::default(),
            revoked_below,
            license_check: tokio::sync::Notify::new(),
            license_events: tokio::sync::broadcast::channel(16).0,
        }
    }

    /// Now, on the authority's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The license this authority serves now.
    pub fn license(&self) -> Arc<ActiveLicense> {
        self.license.load_full()
    }

    pub(crate) fn license_slot(&self) -> &ArcSwap<ActiveLicense> {
        &self.license
    }

    pub(crate) fn session(&self) -> RwLockReadGuard<'_, Option<Session>> {
        self.session.read()
    }

    /// Time left on the current certificate (zero without one).
    pub fn cert_left(&self) -> Duration {
        self.session().as_ref().map_or(Duration::ZERO, |s| {
            s.cert
                .request
                .not_after
                .saturating_duration_since(self.now())
        })
    }

    /// Whether a certified session is installed.
    pub fn is_present(&self) -> bool {
        self.session().is_some()
    }

    /// A copy of the dongle status.
    pub fn status(&self) -> DongleStatus {
        self.status.lock().clone()
    }

    /// Subscribes to presence events (the current one is seen first).
    pub fn subscribe(&self) -> watch::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    /// The service a credential belongs to, if it is an enrolled one
    /// (constant time over all entries, like `/token`).
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        self.credentials.authenticate(presented.as_bytes())
    }

    /// The enrolled services.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.credentials.services()
    }

    /// Installs a freshly certified session (first one, or a rotation).
    pub fn set_present(&self, session: Session, counter: u32) {
        let now = self.now();
        let fingerprint = session.fingerprint().to_string();
        let cert_not_after = session.cert().request.not_after;
        let serial = session.cert().serial.clone();
        *self.session.write() = Some(session);
        let was_present = {
            let mut st = self.status.lock();
            let was = st.state == PresenceState::Present;
            if !was {
                st.since = now;
                st.reason = "dongle verified".into();
            }
            st.state = PresenceState::Present;
            st.serial = Some(serial);
            st.counter = Some(counter);
            st.session = Some(fingerprint);
            st.cert_not_after = Some(cert_not_after);
            was
        };
        if !was_present {
            self.metrics.transition();
            self.events.send_replace(PresenceEvent {
                state: PresenceState::Present,
                reason: "dongle verified".into(),
                since: now,
            });
        }
    }

    /// Removes the session and wipes its key at once (after any signature
    /// already under way), then tells every subscriber. No token is signed
    /// with it after this returns.
    pub fn set_absent(&self, reason: &str) {
        let old = self.session.write().take();
        drop(old);
        let now = self.now();
        // Subscribers hear of a change of what they were last told: a failed
        // verification (verifying -> absent) is not a new absent event.
        let was_present = self.events.borrow().state != PresenceState::Absent;
        {
            let mut st = self.status.lock();
            if st.state != PresenceState::Absent || st.reason != reason {
                st.since = now;
            }
            st.state = PresenceState::Absent;
            st.reason = reason.to_string();
            st.session = None;
            st.cert_not_after = None;
        }
        if was_present {
            self.metrics.transition();
            self.events.send_replace(PresenceEvent {
                state: PresenceState::Absent,
                reason: reason.to_string(),
                since: now,
            });
        }
    }

    /// Marks that a dongle is being verified (status only; issuance is off).
    pub fn set_verifying(&self, serial: Option<&str>) {
        let mut st = self.status.lock();
        st.state = PresenceState::Verifying;
        st.since = self.now();
        st.reason = "challenging the dongle".into();
        st.serial = serial.map(str::to_string);
    }

    /// Counts a refused dongle (clone, wrong serial, bad signature) with its reason.
    pub fn refuse_dongle(&self, reason: &str) {
        self.metrics.dongle_refused(self.now().secs(), reason);
        self.status.lock().refused_dongles += 1;
        self.set_absent(reason);
    }

    /// Raises the persisted clock mark to `now` (called by the watchdog).
    ///
    /// # Errors
    ///
    /// [`crate::state::StateError`] when the state file cannot be written;
    /// the mark in memory is then left as it was.
    pub fn advance_clock(&self, now: UnixTime) -> Result<(), crate::state::StateError> {
        if now.secs() > self.clock_mark.load(Ordering::Relaxed) {
            self.store.advance_clock(now)?;
            self.clock_mark.fetch_max(now.secs(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// The high-water mark when `now` is behind it by more than the
    /// tolerance.
    pub fn clock_rolled_back(&self, now: UnixTime) -> Option<UnixTime> {
        let mark = UnixTime::from_secs(self.clock_mark.load(Ordering::Relaxed));
        (now.saturating_add(self.settings.clock_tolerance) < mark).then_some(mark)
    }

    /// Renews `instance`'s lease or takes a free seat; a new holder of a
    /// seat-limited service is persisted before the token is signed.
    fn hold_seat(
        &self,
        service: &str,
        instance: &str,
        now: UnixTime,
        expires: UnixTime,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Refusal> {
        match self.leases.acquire(service, instance, now, expires, peer) {
            Ok(Acquired::Renewed) => Ok(()),
            Ok(Acquired::New) if !self.leases.is_limited(service) => Ok(()),
            Ok(Acquired::New) => {
                if let Err(e) = self.store.record_leases(|| self.leases.holders(now)) {
                    // Fail closed: a seat nobody would remember after a
                    // restart could be handed out twice.
                    self.leases.release(service, instance);
                    tracing::error!(error = %e, "cannot persist a lease");
                    return Err(Refusal::new(
                        RefusalCode::Internal,
                        "the lease could not be recorded",
                    ));
                }
                Ok(())
            }
            Err(no) => Err(Refusal::new(
                RefusalCode::NoSeatFree,
                format!(
                    "all {} seats of {service} are held; the earliest lease can lapse in {} s",
                    no.seats, no.retry_after
                ),
            )
            .retry_after(u32::try_from(no.retry_after).unwrap_or(u32::MAX))),
        }
    }

    /// The leaf of `instance` the current certificate holds, after noting
    /// `nonce` as its latest (freshness, [`crate::freshness`]).
    ///
    /// # Errors
    ///
    /// `awaiting_certificate` (503, `Retry-After: 1`) when the certificate
    /// holds no leaf of the instance yet: the next one will.
    fn commit_nonce<'s>(
        &self,
        session: &'s Session,
        service: &str,
        instance: &str,
        nonce: &str,
    ) -> Result<&'s crate::freshness::Committed, Refusal> {
        match session.committed.get(service, instance) {
            Some(c) => Ok(c),
            None => {
                // The lease keeps the nonce for the next certificate.
                self.leases.present_nonce(service, instance, nonce);
                self.freshness.note_urgent();
                Err(Refusal::new(
                    RefusalCode::AwaitingCertificate,
                    format!(
                        "instance {instance}'s nonce goes into the next dongle certificate, due within {} s; retry",
                        crate::freshness::MIN_GAP.as_secs()
                    ),
                )
                .retry_after(1))
            }
        }
    }

    /// When the watchdog should ask the dongle for a certificate early, for
    /// nonces waiting (licenses with a nonce period; `None` otherwise).
    pub fn renewal_due(&self) -> Option<std::time::Instant> {
        let period = self.license.load().terms().nonce_period;
        (period > 0)
            .then(|| self.freshness.due(Duration::from_secs(u64::from(period))))
            .flatten()
    }

    /// The leaves of the next certificate: the live leases' latest nonces
    /// under a license with a nonce period, none otherwise.
    pub fn next_leaves(&self, now: UnixTime) -> LeafSet {
        let lic = self.license.load();
        if lic.terms().nonce_period == 0 {
            return LeafSet::default();
        }
        LeafSet::new(self.leases.live_leaves(now, |s| lic.allows_service(s)))
    }

    /// `DELETE /lease?instance=ID&jti=JTI`: releases the instance's seat at
    /// once, given the `jti` of one of the last two tokens issued to it.
    ///
    /// # Errors
    ///
    /// `unauthorized` for a missing or unknown credential, `bad_request` for
    /// a malformed instance, `no_lease` when it holds none or `jti` is not
    /// one of its tokens'.
    pub fn release_lease(
        &self,
        bearer: Option<&str>,
        instance: &str,
        jti: &str,
    ) -> Result<(), Refusal> {
        let service = self.service_of(bearer)?;
        leases::check_instance(instance).map_err(|m| Refusal::new(RefusalCode::BadRequest, m))?;
        // Only the instance itself knows the jti of its own tokens: anyone
        // else who reads instance ids from /status cannot free their seats
        // (and run more instances than the license allows on tokens that
        // still live).
        if !self.leases.release_with_proof(service, instance, jti) {
            return Err(Refusal::new(
                RefusalCode::NoLease,
                format!("instance {instance} holds no lease of {service}"),
            ));
        }
        if self.leases.is_limited(service) {
            let now = self.now();
            if let Err(e) = self.store.record_leases(|| self.leases.holders(now)) {
                // The seat is free now; after a restart it would only be
                // held a little longer than needed.
                tracing::warn!(error = %e, "cannot persist a released lease");
            }
        }
        tracing::debug!(service, instance, "lease released");
        Ok(())
    }

    fn take_rate(&self, service: &str) -> bool {
        self.limiters
            .get(service)
            .is_some_and(|limiter| limiter.check().is_ok())
    }

    /// Handles `GET /token`: authenticates, checks, signs. Counts the outcome.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] naming the first check that failed, in the order of
    /// `docs/api.md`: credential, nonce, service licensed, rate, license
    /// window, clock, dongle and certificate.
    pub fn issue(
        &self,
        bearer: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<TokenResponse, Refusal> {
        self.issue_for(&TokenRequest {
            bearer,
            nonce,
            ..TokenRequest::default()
        })
    }

    /// [`Authority::issue`] for an instance, which holds a lease on a seat.
    ///
    /// # Errors
    ///
    /// As [`Authority::issue`], and `no_seat_free` (409, with `Retry-After`)
    /// when every seat of the service is held; `bad_request` for a malformed
    /// instance, or none for a seat-limited service.
    pub fn issue_for(&self, req: &TokenRequest<'_>) -> Result<TokenResponse, Refusal> {
        let mut service = None;
        let result = self.try_issue(req, &mut service);
        match &result {
            Ok(_) => self.metrics.issued(),
            Err(r) => self.metrics.refused(r.kind()),
        }
        if let Some(service) = service {
            self.metrics.service_outcome(service, result.is_ok());
        }
        result
    }

    /// Whether `/token` would issue a token to a licensed service right now
    /// (what `/readyz` answers): the license in its window, the clock not
    /// rolled back, a verified dongle and a certificate that covers now.
    /// Neither counts nor spends anything.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] `/token` would give.
    pub fn ready(&self) -> Result<(), Refusal> {
        let now = self.now();
        let guard = self.session();
        let lic = self.license.load();
        self.issuable(now, guard.as_ref(), &lic).map(|_| ())
    }

    /// The checks after the caller's own (credential, service, rate): the
    /// token's lifetime in seconds when one can be signed at `now`.
    fn issuable<'s>(
        &self,
        now: UnixTime,
        session: Option<&'s Session>,
        license: &ActiveLicense,
    ) -> Result<(u64, &'s Session), Refusal> {
        let terms = license.terms();
        if terms.sequence < self.revoked_below.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                RefusalCode::LicenseRevoked,
                format!(
                    "license {} (sequence {}) was revoked by the vendor",
                    terms.id, terms.sequence
                ),
            ));
        }
        license
            .check_time(now, Duration::ZERO)
            .map_err(|e| Refusal::new(RefusalCode::LicenseNotValid, e.to_string()))?;
        // The window is inclusive, but a token could live 0 s at its last second.
        if now >= terms.not_after {
            return Err(Refusal::new(
                RefusalCode::LicenseNotValid,
                format!(
                    "license expired at {} (now {})",
                    crate::state::rfc3339(terms.not_after),
                    crate::state::rfc3339(now)
                ),
            ));
        }
        if let Some(mark) = self.clock_rolled_back(now) {
            return Err(Refusal::new(
                RefusalCode::ClockRollback,
                crate::state::clock_behind_advice(now, mark, self.store.path()),
            ));
        }
        let Some(session) = session else {
            let st = self.status();
            let reason = match st.state {
                PresenceState::Verifying => format!("dongle not verified yet: {}", st.reason),
                _ => st.reason,
            };
            return Err(Refusal::new(RefusalCode::DongleAbsent, reason));
        };
        let cert = &session.cert.request;
        // A clock stepped back behind the certificate's start (which is
        // already backdated): consumers would refuse the token, so say why.
        if now < cert.not_before {
            return Err(Refusal::new(
                RefusalCode::ClockRollback,
                format!(
                    "system clock ({}) is behind the dongle certificate's start ({}); fix the clock",
                    now.secs(),
                    cert.not_before.secs()
                ),
            ));
        }
        if now >= cert.not_after {
            return Err(Refusal::new(
                RefusalCode::DongleAbsent,
                format!(
                    "the dongle certificate ended at {} (now {}) and no renewed one is installed yet; retry",
                    cert.not_after.secs(),
                    now.secs()
                ),
            ));
        }
        let ttl = self
            .settings
            .token_ttl
            .as_secs()
            .min(u64::from(terms.max_token_ttl))
            .min(terms.not_after.saturating_duration_since(now).as_secs())
            .min(cert.not_after.saturating_duration_since(now).as_secs());
        Ok((ttl, session))
    }

    /// The enrolled service whose credential `bearer` is.
    fn service_of(&self, bearer: Option<&str>) -> Result<&str, Refusal> {
        let presented = bearer.ok_or_else(|| {
            Refusal::new(
                RefusalCode::Unauthorized,
                "missing Authorization: Bearer credential",
            )
        })?;
        self.authenticate(presented)
            .ok_or_else(|| Refusal::new(RefusalCode::Unauthorized, "unknown service credential"))
    }

    /// Issues; sets `served` to the service once its credential is known
    /// (for the per-service counts).
    fn try_issue<'s>(
        &'s self,
        req: &TokenRequest<'_>,
        served: &mut Option<&'s str>,
    ) -> Result<TokenResponse, Refusal> {
        // One license version from start to end, whatever is installed meanwhile.
        let lic = self.license.load();
        let (bearer, nonce) = (req.bearer, req.nonce);
        let service = self.service_of(bearer)?;
        *served = Some(service);
        if let Some(n) = nonce
            && (n.is_empty()
                || n.len() > 128
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                "nonce must be 1-128 base64url characters",
            ));
        }
        if let Some(instance) = req.instance {
            leases::check_instance(instance)
                .map_err(|m| Refusal::new(RefusalCode::BadRequest, m))?;
        }
        if !lic.allows_service(service) {
            return Err(Refusal::new(
                RefusalCode::ServiceNotLicensed,
                format!("service {service} is not licensed"),
            ));
        }
        let fresh = lic.terms().nonce_period > 0;
        if fresh && (req.instance.is_none() || nonce.is_none()) {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                format!(
                    "the license requires fresh nonces (every {} s): each instance must send ?instance=ID&nonce=N",
                    lic.terms().nonce_period
                ),
            ));
        }
        if req.instance.is_none()
            && let Some(seats) = lic.terms().seats_for(service)
        {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                format!(
                    "service {service} has {seats} seats: each instance must name itself with ?instance=ID"
                ),
            ));
        }
        if !req.retry && !self.take_rate(service) {
            return Err(Refusal::new(
                RefusalCode::RateLimited,
                format!(
                    "service {service} is over {} tokens per second",
                    self.settings.rate_limit
                ),
            ));
        }
        let now = self.now();
        // Held until the token is signed (see the `session` field).
        let guard = self.session();
        let (ttl, session) = self.issuable(now, guard.as_ref(), &lic)?;
        let mut jti = [0u8; 16];
        tether_keys::random_fill(&mut jti);
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let mut echoed = nonce.map(str::to_string);
        let mut prf = None;
        if let Some(instance) = req.instance {
            self.hold_seat(
                service,
                instance,
                now,
                now + Duration::from_secs(ttl + LEASE_LEEWAY_SECS),
                req.peer,
            )?;
            let presented = nonce.filter(|_| fresh);
            if let Some(n) = presented {
                let committed = self.commit_nonce(session, service, instance, n)?;
                echoed = Some(committed.nonce.clone());
                prf = Some(committed.prf.clone());
            }
            // One lock for the token's jti and the nonce: a new nonce the
            // certificate does not hold yet joins the next one, lazily (the
            // token rides the older leaf meanwhile).
            if self.leases.record_token(service, instance, &jti, presented)
                && echoed.as_deref() != presented
            {
                self.freshness.note_lazy();
            }
        }
        let nbf = now
            .saturating_sub(Duration::from_secs(TOKEN_BACKDATE_SECS))
            .max(session.cert.request.not_before)
            .max(lic.terms().not_before);
        let claims = TokenClaims {
            iss: lic.issuer.clone(),
            sub: service.to_string(),
            aud: service.to_string(),
            iat: now,
            nbf,
            exp: now + Duration::from_secs(ttl),
            jti,
            lic: lic.lic_b64.clone(),
            dcert: session.cert_b64.clone(),
            nonce: echoed,
            ins: req.instance.map(str::to_string),
            prf,
        };
        let token = session.signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            Refusal::new(RefusalCode::Internal, "the token could not be signed")
        })?;
        let refresh_in = ttl / 2;
        Ok(TokenResponse {
            token,
            expires_at: now + Duration::from_secs(ttl),
            refresh_at: now + Duration::from_secs(refresh_in),
            expires_in: ttl,
            refresh_in,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use tether_keys::{DelegationRequest, LicenseId, LicenseTerms, testkeys};

    use super::*;
    use crate::clock::ManualClock;

    pub(crate) const SERIAL: &str = "TD-UNIT";

    pub(crate) fn authority(dir: &std::path::Path) -> (Authority, String) {
        authority_with(dir, |_| {})
    }

    /// An authority whose license `edit` changed first.
    pub(crate) fn authority_with(
        dir: &std::path::Path,
        edit: impl FnOnce(&mut LicenseTerms),
    ) -> (Authority, String) {
        authority_on(dir, Arc::new(SystemClock), edit)
    }

    /// An authority on `clock`, whose license (laid around the clock's
    /// reading) `edit` changed first.
    pub(crate) fn authority_on(
        dir: &std::path::Path,
        clock: Arc<dyn Clock>,
        edit: impl FnOnce(&mut LicenseTerms),
    ) -> (Authority, String) {
        let now = clock.now().secs();
        let mut terms = LicenseTerms {
            id: LicenseId([1; 16]),
            customer: "Unit".into(),
            dongle_serial: SERIAL.into(),
            dongle: testkeys::dongle().public().into(),
            issued_at: UnixTime::from_secs(now - 60),
            not_before: UnixTime::from_secs(now - 60),
            not_after: UnixTime::from_secs(now + 3600),
            max_token_ttl: 300,
            features: vec![],
            services: vec!["backend".into()],
            seats: Default::default(),
            sequence: 1,
            grace: 0,
            nonce_period: 0,
        };
        edit(&mut terms);
        let license = terms.sign(&testkeys::vendor()).unwrap();
        let mut credentials = CredentialFile::parse(&dir.join("credentials"), "").unwrap();
        let secret = credentials.enroll("backend", false).unwrap();
        let settings = IssueSettings {
            token_ttl: Duration::from_secs(60),
            clock_tolerance: Duration::from_secs(300),
            rate_limit: 1000,
        };
        let store = crate::state::StateStore::open(&dir.join("state")).unwrap();
        let auth = Authority::with_clock(license, credentials, settings, store, clock);
        (auth, secret.expose().to_string())
    }

    /// A newer version of the license (same id and dongle, higher
    /// sequence) serves the very next token, with seats that follow it; an
    /// older one, another license or another dongle is refused and the
    /// current one keeps serving.
    #[test]
    fn a_license_update_serves_the_next_token_and_never_goes_back() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        let lic_of = |token: &str| {
            let claims = token.split('.').nth(1).unwrap();
            let claims: TokenClaims =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            License::decode(&URL_SAFE_NO_PAD.decode(claims.lic).unwrap()).unwrap()
        };
        let before = auth.issue(Some(&secret), None).unwrap().token;
        assert_eq!(lic_of(&before).terms().sequence, 1);
        let mut terms = auth.license().terms().clone();
        terms.sequence = 2;
        terms.seats.insert("backend".into(), 1);
        terms.features = vec!["mux".into()];
        auth.replace_license(terms.clone().sign(&testkeys::vendor()).unwrap())
            .unwrap();
        let after = auth
            .issue_for(&TokenRequest {
                bearer: Some(&secret),
                instance: Some("one"),
                ..TokenRequest::default()
            })
            .unwrap()
            .token;
        let served = lic_of(&after);
        assert_eq!(served.terms().sequence, 2);
        assert!(served.has_feature("mux"));
        // The new seat count holds at once.
        let second = auth.issue_for(&TokenRequest {
            bearer: Some(&secret),
            instance: Some("two"),
            ..TokenRequest::default()
        });
        assert_eq!(second.unwrap_err().kind(), RefusalCode::NoSeatFree);
        // Never back, never another license, never another dongle.
        let mut older = terms.clone();
        older.sequence = 1;
        let err = auth
            .replace_license(older.sign(&testkeys::vendor()).unwrap())
            .unwrap_err();
        assert!(err.contains("not above"), "{err}");
        let mut other = terms.clone();
        other.sequence = 3;
        other.id = LicenseId([9; 16]);
        assert!(
            auth.replace_license(other.sign(&testkeys::vendor()).unwrap())
                .is_err()
        );
        let mut dongle = terms;
        dongle.sequence = 3;
        dongle.dongle_serial = "TD-OTHER".into();
        assert!(
            auth.replace_license(dongle.sign(&testkeys::vendor()).unwrap())
                .is_err()
        );
        assert_eq!(auth.license().terms().sequence, 2);
    }

    pub(crate) fn session(not_before: u64) -> Session {
        let cert = tether_keys::Certificate::sign(
            DelegationRequest::new(
                [7; 32],
                testkeys::session().public(),
                UnixTime::from_secs(not_before),
                UnixTime::from_secs(not_before + 300),
            ),
            SERIAL,
            1,
            &testkeys::dongle(),
        )
        .unwrap();
        Session::new(testkeys::session(), cert).unwrap()
    }

    /// A session whose certificate commits to `leaves`, as the watchdog makes one.
    pub(crate) fn session_with(not_before: u64, leaves: &LeafSet) -> Session {
        let mut request = DelegationRequest::new(
            [7; 32],
            testkeys::session().public(),
            UnixTime::from_secs(not_before),
            UnixTime::from_secs(not_before + 300),
        );
        request.commitment = leaves.commitment().unwrap();
        let cert = tether_keys::Certificate::sign(request, SERIAL, 1, &testkeys::dongle()).unwrap();
        Session::with_leaves(testkeys::session(), cert, leaves).unwrap()
    }

    /// Under a license with a nonce period, a token is served only under a
    /// certificate that holds the instance's leaf, with its proof; a new
    /// instance waits for the next certificate (asked for within a batch),
    /// a rotated nonce is served under the older one meanwhile, and the
    /// leaves never outnumber the seats.
    #[test]
    fn freshness_serves_tokens_only_under_certificates_holding_the_nonce() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority_with(dir.path(), |t| {
            t.nonce_period = 300;
            t.seats.insert("backend".into(), 2);
        });
        let now = auth.now();
        auth.set_present(session(now.secs() - 30), 1);
        let ask = |instance: &'static str, nonce: &'static str| {
            auth.issue_for(&TokenRequest {
                bearer: Some(&secret),
                instance: Some(instance),
                nonce: Some(nonce),
                ..TokenRequest::default()
            })
        };
        // No nonce, no token.
        let none = auth.issue_for(&TokenRequest {
            bearer: Some(&secret),
            instance: Some("a"),
            ..TokenRequest::default()
        });
        assert_eq!(none.unwrap_err().kind(), RefusalCode::BadRequest);
        // New instances wait for the next certificate, which is due soon.
        assert!(auth.renewal_due().is_none());
        let wait = ask("a", "na1").unwrap_err();
        assert_eq!(wait.kind(), RefusalCode::AwaitingCertificate);
        assert_eq!(wait.retry_after_secs(), Some(1));
        assert_eq!(
            ask("b", "nb1").unwrap_err().kind(),
            RefusalCode::AwaitingCertificate
        );
        let due = auth.renewal_due().unwrap();
        assert!(due <= std::time::Instant::now() + crate::freshness::BATCH);
        // The seats are held meanwhile: a third instance finds none.
        assert_eq!(ask("c", "nc1").unwrap_err().kind(), RefusalCode::NoSeatFree);

        let taken = auth.freshness.snapshot();
        let leaves = auth.next_leaves(now);
        assert_eq!(leaves.len(), 2);
        auth.set_present(session_with(now.secs() - 30, &leaves), 2);
        auth.freshness.certified(taken, true);
        assert!(auth.renewal_due().is_none());

        let claims_of = |token: &str| -> TokenClaims {
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let token = ask("a", "na1").unwrap().token;
        let claims = claims_of(&token);
        assert_eq!(claims.nonce.as_deref(), Some("na1"));
        let cert = Certificate::decode(&URL_SAFE_NO_PAD.decode(&claims.dcert).unwrap()).unwrap();
        let proof =
            tether_keys::InclusionProof::from_claim(claims.prf.as_deref().unwrap()).unwrap();
        let leaf = tether_keys::Leaf::new("backend", "a", "na1").unwrap();
        cert.request.commitment.check(&leaf, &proof).unwrap();
        assert_eq!(cert.request.commitment.counts["backend"], 2);

        // A rotated nonce: served under the older one, the new one lazy.
        let rotated = claims_of(&ask("a", "na2").unwrap().token);
        assert_eq!(rotated.nonce.as_deref(), Some("na1"));
        let lazy = auth.renewal_due().unwrap();
        assert!(lazy > std::time::Instant::now() + Duration::from_secs(30));
        // The next certificate holds the new nonce, and only live leases.
        let next = auth.next_leaves(now);
        assert!(
            next.leaves()
                .iter()
                .any(|l| l.instance() == "a" && l.nonce() == "na2")
        );
        assert_eq!(next.len(), 2);
        assert!(
            auth.next_leaves(now + Duration::from_secs(3600)).is_empty(),
            "lapsed leases leave the set"
        );
    }

    /// `set_absent` waits for a signature under way and wipes the key itself:
    /// once it returns, no request can still be holding the session.
    #[test]
    fn set_absent_waits_for_in_flight_signers_and_then_nothing_signs() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        let auth = Arc::new(auth);
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
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
        assert_eq!(refused.kind(), RefusalCode::DongleAbsent);
    }

    #[test]
    fn a_clock_behind_the_certificate_start_refuses_to_issue() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        // A certificate that starts in 10 minutes: as if the clock stepped back.
        auth.set_present(session(tether_keys::UnixTime::now().secs() + 600), 1);
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::ClockRollback);
        assert!(
            refused.message().contains("certificate"),
            "{}",
            refused.message()
        );
    }

    fn claims_of(token: &str) -> TokenClaims {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    /// Item 8 of issue 13: `nbf` lies up to 30 s before issue, never before
    /// the certificate's start; `iat` and `exp` do not move.
    #[test]
    fn tokens_are_backdated_but_never_before_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        let now = tether_keys::UnixTime::now().secs();
        auth.set_present(session(now - 100), 1);
        let c = claims_of(&auth.issue(Some(&secret), None).unwrap().token);
        assert!(c.iat.secs() >= now && c.iat.secs() <= now + 2, "{c:?}");
        assert_eq!(c.nbf.secs(), c.iat.secs() - TOKEN_BACKDATE_SECS);
        assert_eq!(c.exp.secs(), c.iat.secs() + 60);
        // A certificate that began 10 s ago: the token starts with it.
        auth.set_present(session(now - 10), 2);
        let c = claims_of(&auth.issue(Some(&secret), None).unwrap().token);
        assert_eq!(c.nbf.secs(), now - 10);
        assert_eq!(c.exp.secs(), c.iat.secs() + 60);
    }

    /// Item 10: at the second a license ends, and after, the refusal names
    /// the license's expiry, not the dongle or a renewal.
    #[test]
    fn an_expired_license_is_refused_for_its_expiry() {
        for ago in [0, 10] {
            let dir = tempfile::tempdir().unwrap();
            let (auth, secret) = authority_with(dir.path(), |t| {
                t.not_after = tether_keys::UnixTime::now() - Duration::from_secs(ago);
            });
            auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
            let refused = auth.issue(Some(&secret), None).unwrap_err();
            assert_eq!(refused.kind(), RefusalCode::LicenseNotValid, "{refused}");
            assert_eq!(refused.http_status(), 403);
            assert!(refused.message().contains("expired"), "{refused}");
            assert!(!refused.message().contains("renew"), "{refused}");
            assert_eq!(
                auth.ready().unwrap_err().kind(),
                RefusalCode::LicenseNotValid
            );
        }
    }

    /// Item 10: a license not yet valid says so.
    #[test]
    fn a_license_not_yet_valid_is_refused_for_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority_with(dir.path(), |t| {
            t.not_before = tether_keys::UnixTime::now() + Duration::from_secs(600);
        });
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::LicenseNotValid);
        assert!(refused.message().contains("not valid before"), "{refused}");
    }

    /// Item 10: a certificate that ran out without a renewal says so, instead
    /// of "being renewed".
    #[test]
    fn an_ended_certificate_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 400), 1);
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::DongleAbsent);
        assert!(refused.message().contains("certificate ended"), "{refused}");
        assert_eq!(auth.ready().unwrap_err(), refused);
    }

    /// Item 10: the absent and verifying refusals carry the watchdog's reason.
    #[test]
    fn absent_and_verifying_refusals_give_the_watchdogs_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        auth.set_absent("dongle lost: dongle unplugged");
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::DongleAbsent);
        assert_eq!(refused.message(), "dongle lost: dongle unplugged");
        auth.set_verifying(Some(SERIAL));
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert!(
            refused.message().starts_with("dongle not verified yet"),
            "{refused}"
        );
    }

    /// Item 10: a clock behind the stored mark names both the clock and the
    /// mark, since either may be the wrong one.
    #[test]
    fn a_rolled_back_clock_names_the_clock_and_the_stored_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        auth.advance_clock(tether_keys::UnixTime::now() + Duration::from_secs(86_400))
            .unwrap();
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::ClockRollback);
        assert!(refused.message().contains("behind"), "{refused}");
        assert!(refused.message().contains("stored mark"), "{refused}");
        assert_eq!(auth.ready().unwrap_err().kind(), RefusalCode::ClockRollback);
    }

    /// Item 5: ready means a token would be issued now, and spends nothing.
    #[test]
    fn ready_follows_issuance_and_spends_no_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority(dir.path());
        assert_eq!(auth.ready().unwrap_err().kind(), RefusalCode::DongleAbsent);
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        for _ in 0..5000 {
            auth.ready().unwrap();
        }
        assert!(auth.issue(Some(&secret), None).is_ok());
        assert_eq!(auth.metrics.issued_total(), 1);
    }

    /// The per-service limiter keeps its behaviour: a burst of `rate`, then
    /// 429 `rate_limited`, per service.
    #[test]
    fn a_service_over_its_rate_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, secret) = authority(dir.path());
        let rate = NonZeroU32::new(3).unwrap();
        for l in auth.limiters.values_mut() {
            *l = RateLimiter::direct(Quota::per_second(rate));
        }
        auth.settings.rate_limit = 3;
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        let answers: Vec<_> = (0..10).map(|_| auth.issue(Some(&secret), None)).collect();
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 3);
        let refused = answers.into_iter().find_map(Result::err).unwrap();
        assert_eq!(refused.kind(), RefusalCode::RateLimited);
        assert_eq!(refused.http_status(), 429);
    }

    /// Fake time: 2027-01-15, far from the test machine's clock.
    const T0: u64 = 1_800_000_000;

    /// A lease lives as long as its token plus the consumers' leeway (TTL +
    /// 5 s), to the second, in fake time: a second instance is refused the
    /// only seat one second before, and gets it at that second.
    #[test]
    fn a_lease_lapses_at_token_ttl_plus_leeway_in_fake_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(UnixTime::from_secs(T0)));
        let (auth, secret) = authority_on(dir.path(), clock.clone(), |t| {
            t.seats.insert("backend".into(), 1);
        });
        auth.set_present(session(T0 - 30), 1);
        let as_instance = |instance| TokenRequest {
            bearer: Some(&secret),
            instance: Some(instance),
            ..TokenRequest::default()
        };
        let first = auth.issue_for(&as_instance("a")).unwrap();
        assert_eq!(first.expires_in, 60);
        let lapses = first.expires_at.secs() + LEASE_LEEWAY_SECS;
        assert_eq!(lapses, T0 + 65);

        clock.set(UnixTime::from_secs(lapses - 1));
        let refused = auth.issue_for(&as_instance("b")).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::NoSeatFree, "{refused}");
        assert_eq!(refused.retry_after_secs(), Some(1), "{refused}");

        clock.set(UnixTime::from_secs(lapses));
        let second = auth.issue_for(&as_instance("b")).unwrap();
        assert_eq!(second.expires_at.secs(), lapses + 60);
        // And now "a" is the one without a seat.
        let refused = auth.issue_for(&as_instance("a")).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::NoSeatFree, "{refused}");
    }

    /// A license ends at its `not_after`, to the second, in fake time: the
    /// last token before it lives only up to it; at it, `/token` and
    /// `/readyz` refuse with `license_not_valid`, under a certificate that
    /// still has minutes left.
    #[test]
    fn a_license_is_not_valid_at_its_not_after_in_fake_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(UnixTime::from_secs(T0)));
        let (auth, secret) = authority_on(dir.path(), clock.clone(), |t| {
            t.not_after = UnixTime::from_secs(T0 + 3600);
        });
        let end = T0 + 3600;
        auth.set_present(session(end - 100), 1);

        clock.set(UnixTime::from_secs(end - 1));
        let last = auth.issue(Some(&secret), None).unwrap();
        assert_eq!(last.expires_at.secs(), end);
        assert_eq!(last.expires_in, 1);
        auth.ready().unwrap();

        clock.set(UnixTime::from_secs(end));
        let refused = auth.issue(Some(&secret), None).unwrap_err();
        assert_eq!(refused.kind(), RefusalCode::LicenseNotValid, "{refused}");
        assert!(refused.message().contains("expired"), "{refused}");
        assert_eq!(
            auth.ready().unwrap_err().kind(),
            RefusalCode::LicenseNotValid
        );
        assert!(auth.cert_left() > Duration::ZERO);
    }

    /// A restart keeps every restored seat for as long as a token issued
    /// before it can live, whatever `--token-ttl` the new run has: a run
    /// with a 5-minute TTL, restarted with 1 minute, must not free the
    /// seat after 65 s while the old token lives on for minutes.
    #[test]
    fn a_restart_with_a_shorter_ttl_keeps_seats_while_old_tokens_live() {
        let dir = tempfile::tempdir().unwrap();
        let seats = |t: &mut LicenseTerms| {
            t.seats.insert("backend".into(), 1);
        };
        let exp = {
            let (mut auth, secret) = authority_with(dir.path(), seats);
            auth.settings.token_ttl = Duration::from_secs(300);
            auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
            let t = auth
                .issue_for(&TokenRequest {
                    bearer: Some(&secret),
                    instance: Some("a"),
                    ..TokenRequest::default()
                })
                .unwrap();
            assert!(t.expires_in > 200, "{}", t.expires_in);
            t.expires_at.secs()
        };
        let (after, _) = authority_with(dir.path(), seats);
        assert_eq!(after.settings.token_ttl, Duration::from_secs(60));
        let rows = after.leases.rows(tether_keys::UnixTime::now());
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].lease.expires.secs() >= exp + LEASE_LEEWAY_SECS,
            "seat freed at {} while the token lives until {exp}",
            rows[0].lease.expires
        );
    }

    /// Concurrent acquisitions each persist the holders; the state file
    /// must end with every seat taken, not with the snapshot of whichever
    /// writer came last, or a restart frees seats whose tokens live.
    #[test]
    fn concurrent_acquisitions_all_reach_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, secret) = authority_with(dir.path(), |t| {
            t.seats.insert("backend".into(), 1000);
        });
        let auth = Arc::new(auth);
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let (auth, secret) = (Arc::clone(&auth), secret.clone());
                std::thread::spawn(move || {
                    for i in 0..12 {
                        let id = format!("t{n}-{i}");
                        auth.issue_for(&TokenRequest {
                            bearer: Some(&secret),
                            instance: Some(&id),
                            ..TokenRequest::default()
                        })
                        .unwrap();
                        // Whatever other writers do meanwhile, a seat once
                        // recorded stays recorded while it is held.
                        std::thread::sleep(Duration::from_millis(3));
                        let marks = auth.store.marks().leases;
                        if !marks["backend"].contains(&id) {
                            return Err(id);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let lost: Vec<String> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap().err())
            .collect();
        assert!(
            lost.is_empty(),
            "held seats missing from the state file: {lost:?}"
        );
        let live = auth.leases.holders(tether_keys::UnixTime::now());
        assert_eq!(live["backend"].len(), 96);
        drop(auth);
        let persisted = crate::state::StateStore::open(&dir.path().join("state"))
            .unwrap()
            .marks()
            .leases;
        assert_eq!(persisted, live);
    }
}
