//! Freshness (`docs/threat-model.md`, "Freshness"): every certificate the
//! dongle signs commits to the live consumers' nonces.
//!
//! Under a license with a nonce period F, each consumer instance presents a
//! nonce it drew itself (`GET /token?instance=ID&nonce=N`) and accepts a
//! token only with a proof that its leaf `(service, instance, nonce)` is in
//! the certificate the token carries, the nonce drawn less than F ago. So
//! the authority has to get fresh nonces into certificates:
//!
//! - A lease whose nonce is in the current certificate is served at once,
//!   with the proof computed when the certificate was made.
//! - A lease that presents a *new* nonce while an older one of its own is
//!   in the certificate (a consumer rotating every F/2) is served under the
//!   older one, which it still accepts; the new one is *lazy*: it joins the
//!   next certificate, asked for at most F/8 after the first such nonce
//!   ([`LAZY_DIVISOR`]).
//! - A lease with no leaf in the certificate (a new or restarted instance)
//!   is *urgent*: it is answered 503 `awaiting_certificate` (the HTTP
//!   handler first waits a little for the certificate itself), and the
//!   watchdog asks the dongle for a new certificate [`BATCH`] after the
//!   first urgent nonce, never sooner than [`MIN_GAP`] after the last one,
//!   so that a restart storm of hundreds of instances costs a few
//!   signatures, not hundreds.
//!
//! Each certificate's leaves are the live leases' latest nonces
//! ([`crate::leases::Leases::live_leaves`]): a lapsed lease leaves the next
//! certificate, and no service gets more leaves than its seats.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tether_keys::merkle::LeafSet;
use tokio::sync::watch;

/// How long urgent nonces are gathered before a certificate is asked for.
pub const BATCH: Duration = Duration::from_millis(250);
/// Rotated nonces join a certificate at most F / this after the first of
/// them arrives: a consumer rotates at F/2 and fetches at least every F/8,
/// so its new nonce is in a certificate it has fetched well before its old
/// one turns F old (F/2 + F/8 + F/8 + F/8 < F).
pub const LAZY_DIVISOR: u32 = 8;
/// Early certificates tetherd asks for in a burst, at most; then one per
/// [`EARLY_EVERY`]. The native dongle's reach rule earns 2 s of validity per
/// second powered and charges at least 60 s a certificate, so it sustains
/// one every 30 s: a client that churns instance ids (each new one wants a
/// certificate) spends this budget, not the dongle's, which keeps its
/// reserve for re-plugs, restarts and half-life renewals.
pub const EARLY_BURST: u32 = 10;
/// One early certificate more in the budget per this long.
pub const EARLY_EVERY: Duration = Duration::from_secs(30);
/// The least nonce period the native dongle's reach rule sustains: rotated
/// nonces ask for a certificate every F/8, which must earn (2 s a second)
/// the 60 s each costs, and fit the early-certificate budget (one per 30 s).
/// The license format accepts 60 s and up (tests, other dongles); `tether
/// license issue` refuses less than this and `tetherd` warns.
pub const LEAST_SUSTAINABLE_PERIOD: Duration = Duration::from_secs(240);
/// The shortest time between two certificates asked for early.
pub const MIN_GAP: Duration = Duration::from_secs(2);

/// A leaf of the current certificate, as tokens carry it.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The nonce in the leaf.
    pub nonce: String,
    /// The inclusion proof, encoded as the `prf` claim.
    pub prf: String,
}

/// The leaves one certificate commits to, by service and instance, each
/// with its proof (computed once, when the certificate is made).
#[derive(Debug, Default)]
pub struct CommittedLeaves {
    by_service: HashMap<String, HashMap<String, Committed>>,
}

impl CommittedLeaves {
    /// Indexes `set`, computing every proof once (O(n log n) hashes).
    pub fn new(set: &LeafSet) -> CommittedLeaves {
        let mut by_service: HashMap<String, HashMap<String, Committed>> = HashMap::new();
        for (leaf, proof) in set.leaves().iter().zip(set.prove_all()) {
            by_service
                .entry(leaf.service().to_string())
                .or_default()
                .insert(
                    leaf.instance().to_string(),
                    Committed {
                        nonce: leaf.nonce().to_string(),
                        prf: proof.to_claim(),
                    },
                );
        }
        CommittedLeaves { by_service }
    }

    /// `instance`'s leaf of `service`, if the certificate holds one.
    pub fn get(&self, service: &str, instance: &str) -> Option<&Committed> {
        self.by_service.get(service)?.get(instance)
    }

    /// How many leaves in all.
    pub fn len(&self) -> usize {
        self.by_service.values().map(HashMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// The first and the last urgent nonce since the last certificate.
    urgent: Option<(Instant, Instant)>,
    /// The first and the last lazy nonce since the last certificate.
    lazy: Option<(Instant, Instant)>,
    /// When the last certificate's leaves were taken.
    last: Option<Instant>,
    /// No early certificate before this (the dongle declined one).
    hold_off: Option<Instant>,
    /// Early certificates left in the budget ([`EARLY_BURST`], one more
    /// every [`EARLY_EVERY`]), as of `budget_at`; `None`: full.
    budget: Option<(f64, Instant)>,
}

impl Pending {
    /// Early certificates available at `now`.
    fn available(&self, now: Instant) -> f64 {
        match self.budget {
            None => f64::from(EARLY_BURST),
            Some((left, at)) => (left
                + now.saturating_duration_since(at).as_secs_f64() / EARLY_EVERY.as_secs_f64())
            .min(f64::from(EARLY_BURST)),
        }
    }
}

/// Nonces waiting for a certificate, and when to ask the dongle for one.
#[derive(Debug)]
pub struct Freshness {
    pending: Mutex<Pending>,
    /// Bumped each time a certificate is installed; `/token` waits on it.
    certified: watch::Sender<u64>,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            pending: Mutex::default(),
            certified: watch::channel(0).0,
        }
    }
}

impl Freshness {
    /// A nonce no certificate holds for an instance with no leaf at all.
    pub fn note_urgent(&self) {
        let now = Instant::now();
        let mut p = self.pending.lock();
        p.urgent = Some(p.urgent.map_or((now, now), |(first, _)| (first, now)));
    }

    /// A new nonce of an instance whose older one is still in the certificate.
    pub fn note_lazy(&self) {
        let now = Instant::now();
        let mut p = self.pending.lock();
        p.lazy = Some(p.lazy.map_or((now, now), |(first, _)| (first, now)));
    }

    /// When the watchdog should ask for a certificate early (`None`: no
    /// nonce is waiting), for a nonce period of `period`.
    pub fn due(&self, period: Duration) -> Option<Instant> {
        let p = self.pending.lock();
        let earliest = p.last.map(|t| t + MIN_GAP);
        let urgent = p.urgent.map(|(first, _)| first + BATCH);
        let lazy = p.lazy.map(|(first, _)| first + period / LAZY_DIVISOR);
        let due = match (urgent, lazy) {
            (Some(u), Some(l)) => u.min(l),
            (u, l) => u.or(l)?,
        };
        let due = earliest.map_or(due, |e| due.max(e));
        let due = p.hold_off.map_or(due, |h| due.max(h));
        // The early-certificate budget: when empty, the next one refills.
        let now = Instant::now();
        let short = 1.0 - p.available(now);
        if short > 0.0 {
            return Some(due.max(now + EARLY_EVERY.mul_f64(short)));
        }
        Some(due)
    }

    /// The dongle declined a certificate: ask again no sooner than `until`.
    pub fn hold_off(&self, until: Instant) {
        self.pending.lock().hold_off = Some(until);
    }

    /// The watchdog is about to take the leaves of a new certificate;
    /// returns the instant to pass to [`Freshness::certified`].
    pub fn snapshot(&self) -> Instant {
        Instant::now()
    }

    /// A certificate with the leaves taken at `taken` is installed: nonces
    /// noted before then are in it; any noted since still wait. `early`:
    /// it was asked for because nonces waited, so the next early one waits
    /// [`MIN_GAP`] (the one at a plug-in or a half-life renewal does not
    /// delay the first instances after it).
    pub fn certified(&self, taken: Instant, early: bool) {
        {
            let mut guard = self.pending.lock();
            let p = &mut *guard;
            if early {
                p.last = Some(taken);
                let now = Instant::now();
                p.budget = Some(((p.available(now) - 1.0).max(0.0), now));
            }
            p.hold_off = None;
            for slot in [&mut p.urgent, &mut p.lazy] {
                *slot = match *slot {
                    Some((_, last)) if last > taken => Some((last, last)),
                    _ => None,
                };
            }
        }
        self.certified.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes when the next certificate is installed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.certified.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tether_keys::merkle::{Leaf, verify};

    use super::*;

    #[test]
    fn urgent_nonces_are_batched_and_spaced() {
        let f = Freshness::default();
        let period = Duration::from_secs(300);
        assert!(f.due(period).is_none());
        let before = Instant::now();
        f.note_urgent();
        f.note_urgent();
        let due = f.due(period).unwrap();
        assert!(due >= before + BATCH && due <= Instant::now() + BATCH);
        let taken = f.snapshot();
        f.certified(taken, true);
        assert!(f.due(period).is_none());
        // The next urgent nonce waits for the minimum gap.
        f.note_urgent();
        assert!(f.due(period).unwrap() >= taken + MIN_GAP);
    }

    #[test]
    fn lazy_nonces_wait_an_eighth_of_the_period_and_late_ones_stay_pending() {
        let f = Freshness::default();
        let period = Duration::from_secs(300);
        let before = Instant::now();
        f.note_lazy();
        let due = f.due(period).unwrap();
        let eighth = period / LAZY_DIVISOR;
        assert_eq!(eighth, Duration::from_millis(37_500));
        assert!(due >= before + eighth);
        assert!(due <= Instant::now() + eighth);
        let taken = f.snapshot();
        std::thread::sleep(Duration::from_millis(2));
        f.note_urgent();
        f.certified(taken, true);
        // The urgent nonce came after the leaves were taken: still pending.
        assert!(f.due(period).is_some());
    }

    /// `threat-model.md` ("An honest authority's cost"): rotated nonces join
    /// a certificate within F/8, each DELEGATE charged at least the native
    /// dongle's minimum, "sustainable". A site whose consumers rotate at
    /// random phases always has a rotated nonce waiting, so it asks for a
    /// certificate every F/8. For every period a license allows (60 to
    /// 3600 s) that must not spend the dongle's reach faster than it earns
    /// it: otherwise, once the hour's budget is gone (about 10 min at
    /// F = 60 s), every certificate waits for reach (one per 30 s), rotated
    /// nonces miss F/8 and honest consumers lapse when their old nonce turns
    /// F old, and a re-plug is declined until reach is earned back.
    #[test]
    fn lazy_certificates_are_sustainable_at_every_nonce_period_the_cli_issues() {
        let rules = tether_emulator::Rules::default();
        for period in [LEAST_SUSTAINABLE_PERIOD.as_secs(), 300, 600, 3600] {
            let every = Duration::from_secs(period) / LAZY_DIVISOR;
            let earned = every * rules.reach_rate;
            assert!(
                earned >= rules.min_charge,
                "F = {period} s: a certificate every {every:?} earns {earned:?} of reach and costs {:?}",
                rules.min_charge
            );
            // And the early-certificate budget keeps up with it too.
            assert!(every >= EARLY_EVERY, "F = {period} s");
        }
        // Below it, not: tetherd warns at start, the CLI refuses to issue.
        let shorter = (LEAST_SUSTAINABLE_PERIOD - Duration::from_secs(1)) / LAZY_DIVISOR;
        assert!(shorter * rules.reach_rate < rules.min_charge);
    }

    /// A client churning instance ids gets at most the burst of early
    /// certificates, then one per `EARLY_EVERY`: the dongle's own budget is
    /// not spent on it.
    #[test]
    fn early_certificates_are_budgeted() {
        let f = Freshness::default();
        let period = Duration::from_secs(300);
        for _ in 0..EARLY_BURST {
            f.note_urgent();
            assert!(f.due(period).unwrap() < Instant::now() + MIN_GAP + BATCH);
            f.certified(f.snapshot(), true);
        }
        f.note_urgent();
        let due = f.due(period).unwrap();
        assert!(
            due > Instant::now() + EARLY_EVERY - Duration::from_secs(1),
            "{due:?}"
        );
        // Certificates at plug-in or half-life renewals do not spend it.
        let g = Freshness::default();
        for _ in 0..50 {
            g.certified(g.snapshot(), false);
        }
        g.note_urgent();
        assert!(g.due(period).unwrap() < Instant::now() + BATCH + Duration::from_millis(50));
    }

    #[test]
    fn committed_leaves_carry_proofs_that_verify() {
        let set = LeafSet::new((0..37).map(|i| {
            Leaf::new(
                if i % 3 == 0 { "muxer" } else { "backend" },
                format!("i{i}"),
                format!("n{i}"),
            )
            .unwrap()
        }));
        let committed = CommittedLeaves::new(&set);
        assert_eq!(committed.len(), 37);
        let root = set.root();
        let c = committed.get("backend", "i4").unwrap();
        assert_eq!(c.nonce, "n4");
        let proof = tether_keys::InclusionProof::from_claim(&c.prf).unwrap();
        verify(&root, &Leaf::new("backend", "i4", "n4").unwrap(), &proof).unwrap();
        assert!(committed.get("muxer", "i4").is_none());
    }
}
