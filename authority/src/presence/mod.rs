//! The presence watchdog: Absent -> Verifying -> Present(session) -> Absent.
//!
//! Runs on its own OS thread, because dongle I/O is blocking (hidapi). Each
//! step consumes the current `Link` state and returns the next. Removal is
//! noticed through every signal there is: a transport error on any request,
//! the link dropping while idle, and a PRESENCE heartbeat. Whatever the
//! signal, [`Authority::set_absent`] drops the session key at once.
//!
//! A dongle that is not the licensed one (another serial, another key, a bad
//! signature, a counter that goes backwards, an answer to another request) is
//! refused and logged as a possible clone; it is never accepted silently.

mod driver;

pub use driver::{check_kind, driver};

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio_util::sync::CancellationToken;

use tether_keys::delegation::{fresh_nonce, presence_message};
use tether_keys::{DelegationRequest, DongleIdentity, SecretKey, Session as SessionRole};

use tether_dongle::{Dongle, Driver, Identity, LinkError, PresenceProof};

use crate::authority::{Authority, Session};

/// How often to look for a dongle while none is present.
const POLL_ABSENT: Duration = Duration::from_millis(50);
/// Pause after refusing a dongle, so a wrong one is not hammered; doubled
/// while the same refusal repeats, up to [`PAUSE_MAX`].
const PAUSE_REFUSED: Duration = Duration::from_secs(1);
/// The longest pause between challenges of a dongle that keeps being refused.
const PAUSE_MAX: Duration = Duration::from_secs(8);
/// Slack before "now" in a certificate's window, for consumers whose clocks lag.
const CERT_BACKDATE: u64 = 30;
/// When the dongle declines a renewal, ask again after this long.
const RETRY_RENEWAL: Duration = Duration::from_secs(10);
/// The longest idle slice while present, so that nonces waiting for a
/// certificate (freshness) are seen within it.
const POLL_PENDING: Duration = Duration::from_millis(50);
/// How often the clock high-water mark is persisted.
const CLOCK_PERSIST: Duration = Duration::from_secs(10);

/// Watchdog settings.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Opens the dongle (the native protocol over a selected link, or any
    /// other [`Driver`]).
    pub driver: Arc<dyn Driver>,
    /// PRESENCE heartbeat interval.
    pub heartbeat: Duration,
    /// Lifetime of each delegation certificate; renewed at half-life.
    pub cert_lifetime: Duration,
}

/// The daemon's shutdown token as the blocking watchdog thread sees it, and
/// the one bridge between the two: a thread cannot await
/// `token.cancelled()`, so one task does, and then sets this and wakes any
/// wait at once. The task stops the watchdog too if the runtime drops it
/// before the token is cancelled (nothing could cancel it any more then).
#[derive(Debug, Default)]
struct Shutdown {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Shutdown {
    /// Follows `token` through a task on `runtime`.
    fn follow(token: CancellationToken, runtime: &tokio::runtime::Handle) -> Arc<Shutdown> {
        let shutdown = Arc::new(Shutdown::default());
        let stop_on_drop = StopOnDrop(shutdown.clone());
        runtime.spawn(async move {
            token.cancelled().await;
            drop(stop_on_drop);
        });
        shutdown
    }

    /// Stops the watchdog.
    fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout`; true when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        self.wake
            .wait_while_for(&mut stopped, |stopped| !*stopped, timeout);
        *stopped
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }
}

/// Held by the bridging task: stops the watchdog when the task ends, by
/// cancellation or by being dropped.
struct StopOnDrop(Arc<Shutdown>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The link to the dongle, as a state machine.
enum Link {
    /// No dongle (or a refused one).
    Absent,
    /// A dongle answered; it must prove it is the licensed one.
    Verifying(Box<dyn Dongle>),
    /// Verified; a session is installed.
    Present {
        client: Box<dyn Dongle>,
        next_beat: Instant,
        renew_at: Instant,
    },
}

/// Why a dongle was not accepted, or was lost.
#[derive(Debug, thiserror::Error)]
enum Lost {
    /// The link failed: unplugged, timed out, or garbled.
    #[error("dongle lost: {0}")]
    Link(#[from] LinkError),
    /// The dongle is not the licensed one, or answered falsely.
    #[error("dongle refused: {0}")]
    Refused(String),
    /// The system clock is behind its high-water mark: no certificate is
    /// dated until the operator sets it right (the message says how).
    #[error("refusing to date certificates: {0}")]
    Clock(String),
    /// The dongle is fine but our state cannot be kept.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    /// The usage ledger cannot be written: no certificate may commit to a
    /// head that is not durable, no session start unrecorded.
    #[error("{0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Starts the watchdog thread; it stops when `shutdown` is cancelled (or
/// when the runtime it was started in ends first).
///
/// # Errors
///
/// When called outside a tokio runtime (the shutdown token is followed by
/// a task), or the thread cannot be started.
pub fn spawn(
    auth: Arc<Authority>,
    settings: WatchSettings,
    shutdown: &CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let stop = Shutdown::follow(shutdown.clone(), &runtime);
    std::thread::Builder::new()
        .name("tether-presence".into())
        .spawn(move || run(&auth, &settings, &stop))
}

/// Drops the session whenever the watchdog ends, by shutdown or by a bug
/// (unwinding): no session may outlive the thread that watches the dongle.
struct AbsentOnExit<'a>(&'a Authority);

impl Drop for AbsentOnExit<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .set_absent("presence watchdog failed; issuance stopped");
        } else {
            self.0.set_absent("authority shutting down");
        }
    }
}

/// Remembers the last refusal, so one that repeats (a dongle that keeps
/// declining, a foreign dongle left plugged in) is logged once at its level
/// and then at debug, and challenged less and less often.
#[derive(Debug, Default)]
struct Backoff {
    last: Option<String>,
    pause: Duration,
}

impl Backoff {
    /// Records `reason`; true when it repeats the previous one.
    fn repeats(&mut self, reason: &str) -> bool {
        let same = self.last.as_deref() == Some(reason);
        self.pause = if same {
            (self.pause * 2).min(PAUSE_MAX)
        } else {
            PAUSE_REFUSED
        };
        self.last = Some(reason.to_string());
        same
    }

    /// A dongle verified: the next refusal is news again.
    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

fn run(auth: &Authority, settings: &WatchSettings, stop: &Shutdown) {
    let _absent_on_exit = AbsentOnExit(auth);
    let mut link = Link::Absent;
    let mut backoff = Backoff::default();
    let mut last_persist = Instant::now() - CLOCK_PERSIST;
    while !stop.is_stopped() {
        if last_persist.elapsed() >= CLOCK_PERSIST {
            last_persist = Instant::now();
            if let Err(e) = auth.advance_clock(auth.now()) {
                tracing::warn!(error = %e, "cannot persist the clock high-water mark");
            }
        }
        crate::ledger::tick(auth);
        link = step(link, auth, settings, stop, &mut backoff);
    }
}

fn step(
    link: Link,
    auth: &Authority,
    settings: &WatchSettings,
    stop: &Shutdown,
    backoff: &mut Backoff,
) -> Link {
    match link {
        Link::Absent => match settings.driver.open() {
            Ok(client) => {
                if backoff.last.is_some() {
                    tracing::debug!("dongle found; challenging it again");
                } else {
                    tracing::info!("dongle found; challenging it");
                }
                auth.set_verifying(None);
                Link::Verifying(client)
            }
            Err(e) => {
                if !e.is_gone() {
                    tracing::debug!(error = %e, "dongle not usable yet");
                }
                stop.wait(POLL_ABSENT);
                Link::Absent
            }
        },
        Link::Verifying(mut client) => match verify(client.as_mut(), auth, settings) {
            Ok(counter) => {
                backoff.reset();
                auth.jobs.plugged();
                tracing::info!(
                    serial = %auth.license().terms().dongle_serial,
                    counter,
                    "dongle verified; issuing tokens"
                );
                let now = Instant::now();
                Link::Present {
                    client,
                    next_beat: now + settings.heartbeat,
                    renew_at: now + settings.cert_lifetime / 2,
                }
            }
            Err(lost) => lose(auth, &lost, stop, backoff),
        },
        Link::Present {
            mut client,
            next_beat,
            renew_at,
        } => {
            // Receipts and site requests waiting for the dongle (`receipts/`).
            if auth.jobs.due() {
                match crate::receipts::run(client.as_mut(), auth) {
                    Ok(()) => {}
                    Err(crate::receipts::JobError::Link(e)) => {
                        return lose(auth, &Lost::Link(e), stop, backoff);
                    }
                    Err(crate::receipts::JobError::Refused(why)) => {
                        return lose(auth, &Lost::Refused(why), stop, backoff);
                    }
                    Err(crate::receipts::JobError::State(e)) => {
                        return lose(auth, &Lost::State(e), stop, backoff);
                    }
                }
            }
            // Fresh nonces waiting (freshness) bring the renewal forward.
            let early = auth.renewal_due();
            let due = next_beat.min(renew_at).min(early.unwrap_or(renew_at));
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                // Idle until the next heartbeat, but learn of an unplug at
                // once, and of nonces waiting within a slice.
                match client.idle(wait.min(POLL_PENDING)) {
                    Ok(()) => {}
                    Err(e) => return lose(auth, &Lost::Link(e), stop, backoff),
                }
                if stop.is_stopped() || Instant::now() < due.min(auth.renewal_due().unwrap_or(due))
                {
                    return Link::Present {
                        client,
                        next_beat,
                        renew_at,
                    };
                }
            }
            let now = Instant::now();
            let early_due = auth.renewal_due().is_some_and(|t| t <= now);
            if now < renew_at && !early_due {
                return match heartbeat(client.as_mut(), auth) {
                    Ok(()) => Link::Present {
                        client,
                        next_beat: now + settings.heartbeat,
                        renew_at,
                    },
                    Err(lost) => lose(auth, &lost, stop, backoff),
                };
            }
            match certify(client.as_mut(), auth, settings, early_due) {
                Ok(_) => Link::Present {
                    client,
                    next_beat: now + settings.heartbeat,
                    renew_at: now + settings.cert_lifetime / 2,
                },
                // The dongle is there but declined (rate limit, window rule): the
                // current certificate still holds, so keep issuing under it and
                // ask again later. Tokens never outlive it (their TTL is capped).
                Err(Lost::Link(e @ LinkError::Declined(_))) if auth.cert_left() > RETRY_RENEWAL => {
                    tracing::warn!(error = %e, "dongle declined to renew the certificate; retrying");
                    auth.freshness.hold_off(now + RETRY_RENEWAL);
                    Link::Present {
                        client,
                        next_beat: now + settings.heartbeat,
                        renew_at: now + RETRY_RENEWAL,
                    }
                }
                Err(lost) => lose(auth, &lost, stop, backoff),
            }
        }
    }
}

/// Drops the session for `lost` and pauses before looking again after a
/// refusal, a state failure, or a request the dongle itself declined (its
/// reach budget, a window rule): whenever it happened (first challenge,
/// heartbeat or renewal), the dongle is not re-challenged in a tight loop,
/// `/status` keeps showing why, and a refusal that repeats is logged once.
/// A link that dropped is looked for again at once.
fn lose(auth: &Authority, lost: &Lost, stop: &Shutdown, backoff: &mut Backoff) -> Link {
    let reason = lost.to_string();
    let repeated = backoff.repeats(&reason);
    fail(auth, lost, &reason, repeated);
    if matches!(
        lost,
        Lost::Refused(_)
            | Lost::State(_)
            | Lost::Ledger(_)
            | Lost::Clock(_)
            | Lost::Link(LinkError::Declined(_) | LinkError::Ctap(_))
    ) {
        stop.wait(backoff.pause);
    } else {
        // The link dropped: news the next time it does, too.
        backoff.reset();
    }
    Link::Absent
}

fn fail(auth: &Authority, lost: &Lost, reason: &str, repeated: bool) {
    match lost {
        Lost::Refused(_) => {
            if repeated {
                tracing::debug!(%reason, "dongle refused again");
            } else {
                tracing::warn!(%reason, "possible clone or foreign dongle refused");
            }
            auth.refuse_dongle(reason);
        }
        Lost::Link(LinkError::Declined(_)) if repeated => {
            tracing::debug!(%reason, "dongle declined again");
            auth.set_absent(reason);
        }
        // A FIDO2 key that answered but will not sign for the licence (a
        // reset key, another key, one that wants a touch): refused, said once.
        Lost::Link(LinkError::Ctap(_)) => {
            if repeated {
                tracing::debug!(%reason, "security key refused again");
            } else {
                tracing::warn!(%reason, "security key cannot serve the license");
            }
            auth.refuse_dongle(reason);
        }
        Lost::Link(_) => {
            tracing::info!(%reason, "dongle gone; issuance stopped");
            auth.set_absent(reason);
        }
        Lost::Clock(_) if repeated => auth.set_absent(reason),
        Lost::Clock(_) => {
            tracing::error!(%reason, "system clock behind its high-water mark; issuance stopped");
            auth.ledger
                .append(tether_keys::ledger::Event::ClockAnomaly {
                    detail: reason.to_string(),
                });
            auth.set_absent(reason);
        }
        Lost::Ledger(_) => {
            if !repeated {
                tracing::error!(%reason, "cannot write the usage ledger; issuance stopped");
            }
            auth.set_absent(reason);
        }
        Lost::State(_) => {
            tracing::error!(%reason, "cannot keep state; issuance stopped");
            auth.set_absent(reason);
        }
    }
}

/// The dongle must say it is the licensed one (native: INFO's serial, key
/// and counter; FIDO2: the credential's serial and the key's model); then a
/// first certified session, whose signature is the real proof.
fn verify(
    client: &mut dyn Dongle,
    auth: &Authority,
    settings: &WatchSettings,
) -> Result<u32, Lost> {
    let identity = client.identify()?;
    let lic = auth.license();
    let terms = lic.terms();
    auth.set_verifying(Some(identity.serial()));
    if identity.serial() != terms.dongle_serial {
        return Err(Lost::Refused(format!(
            "serial {} is not the licensed dongle {}",
            identity.serial(),
            terms.dongle_serial
        )));
    }
    match (&identity, &terms.dongle) {
        (Identity::Native(info), DongleIdentity::Native(key)) => {
            if info.public_key != *key {
                return Err(Lost::Refused(format!(
                    "dongle {} has key {}, the license names {}",
                    info.serial,
                    info.public_key.fingerprint(),
                    key.fingerprint()
                )));
            }
            if let Some(seen) = auth.store.counter(&info.serial)
                && info.counter < seen
            {
                return Err(Lost::Refused(format!(
                    "dongle {} reports counter {} below {seen} already seen",
                    info.serial, info.counter
                )));
            }
        }
        (Identity::Fido2(key), DongleIdentity::Fido2(cred)) => {
            // A zero AAGUID says nothing (some keys hide their model).
            if key.aaguid != [0; 16] && cred.aaguid != [0; 16] && key.aaguid != cred.aaguid {
                return Err(Lost::Refused(format!(
                    "security key model {} is not the licensed {} ({}): another key",
                    fido2_hex(&key.aaguid),
                    cred.aaguid_string(),
                    cred.model
                )));
            }
            if key.always_uv {
                return Err(Lost::Refused(
                    "this key demands user verification for every signature (alwaysUv): it cannot serve as a Tether dongle"
                        .into(),
                ));
            }
        }
        (other, _) => {
            return Err(Lost::Refused(format!(
                "a {} dongle answered, but the license names a {} dongle",
                other.kind_name(),
                match terms.dongle {
                    DongleIdentity::Native(_) => "native",
                    _ => "FIDO2",
                }
            )));
        }
    }
    certify(client, auth, settings, false)
}

fn fido2_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh session key, certified by the dongle, checked, installed.
fn certify(
    client: &mut dyn Dongle,
    auth: &Authority,
    settings: &WatchSettings,
    early: bool,
) -> Result<u32, Lost> {
    let lic = auth.license();
    let terms = lic.terms();
    let key = SecretKey::<SessionRole>::generate();
    let now = auth.now();
    if let Some(mark) = auth.clock_rolled_back(now) {
        return Err(Lost::Clock(crate::state::clock_behind_advice(
            now,
            mark,
            auth.store.path(),
        )));
    }
    let mut request = DelegationRequest::new(
        fresh_nonce(),
        key.public(),
        now.saturating_sub(Duration::from_secs(CERT_BACKDATE)),
        now + settings.cert_lifetime,
    );
    // The live consumers' nonces (freshness), taken once for this certificate.
    let taken = auth.freshness.snapshot();
    let leaves = auth.next_leaves(now);
    request.commitment = leaves.commitment().map_err(|e| Lost::State(e.into()))?;
    // The usage ledger's head, durable before the dongle commits to it.
    if let Some(ledger) = auth.ledger.get() {
        request.ledger = ledger.sync()?;
    }
    let cert = client.certify(&request)?;
    if cert.verify_by(&terms.dongle).is_err() {
        return Err(Lost::Refused(
            "delegation signature does not verify with the licensed dongle key".into(),
        ));
    }
    if cert.request != request {
        return Err(Lost::Refused(
            "delegation answers another request (replayed or forged)".into(),
        ));
    }
    if cert.serial != terms.dongle_serial {
        return Err(Lost::Refused(format!(
            "certificate names serial {}, not {}",
            cert.serial, terms.dongle_serial
        )));
    }
    // Native: the counter rises with every DELEGATE. FIDO2 (section 8.5):
    // signCount never goes down; 0 is "no counter" until a count was seen.
    let recorded = match terms.dongle {
        DongleIdentity::Native(_) => auth.store.record_counter(&cert.serial, cert.counter),
        _ => auth.store.record_fido2_counter(&cert.serial, cert.counter),
    };
    recorded.map_err(|e| match e {
        crate::state::StateError::CounterRollback { .. } => Lost::Refused(e.to_string()),
        other => Lost::State(other),
    })?;
    let session =
        Session::with_leaves(key, cert, &leaves).map_err(|e| Lost::Refused(e.to_string()))?;
    let counter = session.cert().counter;
    // The certificate (and a checkpoint under its session key) is durable
    // in the ledger before the session issues anything.
    if let Some(ledger) = auth.ledger.get() {
        ledger.certificate(session.cert(), session.signer())?;
    }
    auth.set_present(session, counter);
    auth.freshness.certified(taken, early);
    auth.metrics.certified(leaves.len());
    Ok(counter)
}

/// One liveness round trip: a native dongle's PRESENCE signature checked
/// with the licensed key, or a FIDO2 key's PING echo (section 8.4: who the
/// key is was proven by the certificate's assertion on this open handle;
/// no signature per heartbeat wears no flash).
fn heartbeat(client: &mut dyn Dongle, auth: &Authority) -> Result<(), Lost> {
    let nonce = fresh_nonce();
    let started = Instant::now();
    let proof = match client.prove_presence(&nonce) {
        Ok(proof) => proof,
        Err(e) => {
            auth.metrics.heartbeat_failed();
            return Err(Lost::Link(e));
        }
    };
    let lic = auth.license();
    let ok = match (&proof, &lic.terms().dongle) {
        (PresenceProof::Signature(sig), DongleIdentity::Native(key)) => {
            key.verify(&presence_message(&nonce), sig)
        }
        (PresenceProof::Ping, DongleIdentity::Fido2(_)) => true,
        _ => {
            auth.metrics.heartbeat_failed();
            return Err(Lost::Refused(format!(
                "the licensed dongle gave a presence proof of another kind: {proof:?}"
            )));
        }
    };
    if ok {
        auth.metrics.heartbeat(started.elapsed());
        Ok(())
    } else {
        auth.metrics.heartbeat_failed();
        Err(Lost::Refused(
            "presence signature does not verify with the licensed dongle key".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::authority::tests::{SERIAL, authority, authority_on, session};
    use crate::clock::ManualClock;

    /// If the watchdog dies (a bug, unwinding), its session dies with it.
    #[test]
    fn a_dying_watchdog_takes_the_session_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = authority(dir.path());
        auth.set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
        assert!(auth.is_present());
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = AbsentOnExit(&auth);
            panic!("a bug in the watchdog");
        }));
        assert!(died.is_err());
        assert!(!auth.is_present());
        assert!(
            auth.status().reason.contains("watchdog failed"),
            "{}",
            auth.status().reason
        );
    }

    /// The bridge wakes a waiting watchdog as soon as the token is
    /// cancelled, not when its wait times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn cancelling_the_token_wakes_the_watchdog_at_once() {
        let token = CancellationToken::new();
        let stop = Shutdown::follow(token.clone(), &tokio::runtime::Handle::current());
        assert!(!stop.wait(Duration::ZERO));
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            (stop.wait(Duration::from_secs(600)), started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        let (stopped, waited) = tokio::task::spawn_blocking(move || waiter.join().unwrap())
            .await
            .unwrap();
        assert!(stopped);
        assert!(waited < Duration::from_secs(600), "{waited:?}");
    }

    /// A runtime that ends before the token is cancelled stops the
    /// watchdog too: nothing could cancel the token any more.
    #[test]
    fn the_watchdog_stops_when_its_runtime_ends() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let token = CancellationToken::new();
        let stop = Shutdown::follow(token, runtime.handle());
        assert!(!stop.is_stopped());
        drop(runtime);
        assert!(stop.wait(Duration::from_secs(600)));
    }

    /// An emulated dongle, in-process, for the license `authority_on` makes.
    fn emulated_dongle() -> Box<dyn Dongle> {
        use tether_dongle::native::{Client, NativeDongle, Timeouts};
        use tether_emulator::{Device, LocalTransport, Rules};
        let device = Device::new(tether_keys::testkeys::dongle(), SERIAL, Rules::default());
        let transport = LocalTransport::new(Arc::new(std::sync::Mutex::new(device)));
        let client = Client::open(Box::new(transport), Timeouts::default()).unwrap();
        Box::new(NativeDongle::from_client(client))
    }

    /// The watchdog dates certificates by the authority's clock, in fake
    /// time: backdated 30 s, ending one lifetime later; and once that clock
    /// falls behind its mark by more than the tolerance, it dates none.
    #[test]
    fn certificates_are_dated_by_the_authoritys_clock_in_fake_time() {
        const T0: u64 = 1_800_000_000;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(tether_keys::UnixTime::from_secs(T0)));
        let (auth, _) = authority_on(dir.path(), clock.clone(), |_| {});
        let settings = WatchSettings {
            driver: Arc::new(tether_dongle::Selector::Socket(dir.path().join("unused"))),
            heartbeat: Duration::from_millis(250),
            cert_lifetime: Duration::from_secs(300),
        };
        let mut dongle = emulated_dongle();
        verify(dongle.as_mut(), &auth, &settings).unwrap();
        let window = |auth: &Authority| {
            let guard = auth.session();
            let cert = &guard.as_ref().unwrap().cert().request;
            (cert.not_before.secs(), cert.not_after.secs())
        };
        assert_eq!(window(&auth), (T0 - CERT_BACKDATE, T0 + 300));
        assert_eq!(auth.cert_left(), Duration::from_secs(300));

        clock.advance(Duration::from_secs(150));
        certify(dongle.as_mut(), &auth, &settings, false).unwrap();
        assert_eq!(window(&auth), (T0 + 150 - CERT_BACKDATE, T0 + 450));

        // The mark stands at T0 + 150; a clock set back 301 s is refused.
        auth.advance_clock(auth.now()).unwrap();
        clock.set(tether_keys::UnixTime::from_secs(T0 + 150 - 301));
        let refused = certify(dongle.as_mut(), &auth, &settings, false).unwrap_err();
        assert!(matches!(refused, Lost::Clock(_)), "{refused}");
        assert_eq!(window(&auth), (T0 + 150 - CERT_BACKDATE, T0 + 450));
    }
}
