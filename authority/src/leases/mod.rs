//! Seats and leases (`docs/api.md`, "Seats").
//!
//! The license may cap how many instances of a service hold tokens at once
//! (its seats). Each instance that asks `GET /token?instance=ID` holds a
//! *lease* on one seat; the lease lives as long as the last token it was
//! given plus the consumers' leeway, and each new token renews it. A new
//! instance finds a seat only while fewer leases than seats are live; else
//! it is refused with `no_seat_free` and the seconds until the earliest
//! lease can lapse. `DELETE /lease?instance=ID` releases one at once.
//!
//! Restarts: the holders of seat-limited services are persisted (in the
//! state file, on every acquisition and release, never on a renewal), and
//! after a restart each is taken to hold its seat until the license's
//! longest token lifetime plus leeway has passed: tokens issued before the
//! restart live that long at most (the run before may have had a longer
//! `--token-ttl`), so a restart never lets more instances in than the license
//! allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use parking_lot::Mutex;
use tether_keys::UnixTime;
use tether_keys::merkle::Leaf;

/// An instance id: 1-64 characters of `[A-Za-z0-9._-]`.
///
/// # Errors
/// The message for a 400 answer when `id` is not one.
pub fn check_instance(id: &str) -> Result<(), &'static str> {
    if tether_keys::wire::is_instance_id(id) {
        Ok(())
    } else {
        Err("instance must be 1-64 characters of A-Z a-z 0-9 . _ -")
    }
}

/// One instance's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// When the instance first got its seat.
    pub since: UnixTime,
    /// When the lease lapses unless renewed.
    pub expires: UnixTime,
    /// The peer that last renewed it, when known.
    pub peer: Option<SocketAddr>,
    /// The `jti` of the last two tokens issued to it: `DELETE /lease`
    /// must present one, so only the instance itself (not anyone who can
    /// read instance ids from `/status`) can give its seat back early.
    pub proofs: [Option<String>; 2],
    /// The nonce the instance presented last (freshness): its leaf in the
    /// next certificate.
    pub nonce: Option<String>,
}

impl Lease {
    /// Records `nonce` as the one presented last; true when it is new.
    fn present(&mut self, nonce: &str) -> bool {
        if self.nonce.as_deref() == Some(nonce) {
            return false;
        }
        self.nonce = Some(nonce.to_string());
        true
    }
}

/// What [`Leases::acquire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A known instance renewed its lease.
    Renewed,
    /// A new instance took a seat (persist the holders).
    New,
}

/// Every seat is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSeat {
    /// The service's seat count.
    pub seats: u32,
    /// Seconds until the earliest live lease can lapse (at least 1).
    pub retry_after: u64,
}

/// A lease as `/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The service.
    pub service: String,
    /// The instance id.
    pub instance: String,
    /// The lease.
    pub lease: Lease,
}

#[derive(Debug, Default)]
struct ServiceLeases {
    /// `None`: unlimited.
    seats: Option<u32>,
    holders: HashMap<String, Lease>,
}

impl ServiceLeases {
    fn live(&self, now: UnixTime) -> usize {
        self.holders.values().filter(|l| l.expires > now).count()
    }
}

/// The lease table of every service.
#[derive(Debug, Default)]
pub struct Leases {
    services: Mutex<HashMap<String, ServiceLeases>>,
}

impl Leases {
    /// A table for the license's services and their seat counts (`None`:
    /// unlimited).
    pub fn new<'a>(services: impl IntoIterator<Item = (&'a str, Option<u32>)>) -> Leases {
        let services = services
            .into_iter()
            .map(|(name, seats)| {
                (
                    name.to_string(),
                    ServiceLeases {
                        seats,
                        holders: HashMap::new(),
                    },
                )
            })
            .collect();
        Leases {
            services: Mutex::new(services),
        }
    }

    /// Restores holders persisted before a restart: each holds its seat
    /// until `until`, unless it renews.
    pub fn restore(
        &self,
        holders: &BTreeMap<String, BTreeSet<String>>,
        now: UnixTime,
        until: UnixTime,
    ) {
        let mut services = self.services.lock();
        for (service, instances) in holders {
            let Some(s) = services.get_mut(service) else {
                continue;
            };
            for instance in instances {
                s.holders.insert(
                    instance.clone(),
                    Lease {
                        since: now,
                        expires: until,
                        peer: None,
                        proofs: Default::default(),
                        nonce: None,
                    },
                );
            }
        }
    }

    /// Renews `instance`'s lease of `service`, or gives it a free seat, so
    /// that it lasts until `expires`.
    ///
    /// # Errors
    /// [`NoSeat`] when the instance holds no lease and every seat is held by
    /// a live one.
    pub fn acquire(
        &self,
        service: &str,
        instance: &str,
        now: UnixTime,
        expires: UnixTime,
        peer: Option<SocketAddr>,
    ) -> Result<Acquired, NoSeat> {
        let mut services = self.services.lock();
        // No allocation on the hot path: the service is almost always known.
        let s = if services.contains_key(service) {
            services.get_mut(service)
        } else {
            Some(services.entry(service.to_string()).or_default())
        };
        let Some(s) = s else {
            return Err(NoSeat {
                seats: 0,
                retry_after: 1,
            });
        };
        // More holders than seats (restored under a license that now has
        // fewer): none renews until the live ones fit in the seats again,
        // else the extra instances would run on for ever.
        let over = s
            .seats
            .is_some_and(|seats| s.holders.len() > seats as usize && s.live(now) > seats as usize);
        if let Some(lease) = s.holders.get_mut(instance) {
            let lapsed = lease.expires <= now;
            if over && !lapsed {
                let earliest = s
                    .holders
                    .values()
                    .map(|l| l.expires)
                    .filter(|&e| e > now)
                    .min()
                    .unwrap_or(now);
                return Err(NoSeat {
                    seats: s.seats.unwrap_or(0),
                    retry_after: earliest.saturating_duration_since(now).as_secs().max(1),
                });
            }
            lease.expires = lease.expires.max(expires);
            lease.peer = peer.or(lease.peer);
            if !lapsed {
                return Ok(Acquired::Renewed);
            }
            // A lapsed lease is a new acquisition: its seat may have gone.
            let mut lease = s.holders.remove(instance).unwrap_or(Lease {
                since: now,
                expires,
                peer,
                proofs: Default::default(),
                nonce: None,
            });
            lease.since = now;
            return Self::take(s, instance, lease, now);
        }
        Self::take(
            s,
            instance,
            Lease {
                since: now,
                expires,
                peer,
                proofs: Default::default(),
                nonce: None,
            },
            now,
        )
    }

    fn take(
        s: &mut ServiceLeases,
        instance: &str,
        lease: Lease,
        now: UnixTime,
    ) -> Result<Acquired, NoSeat> {
        if let Some(seats) = s.seats
            && s.live(now) >= seats as usize
        {
            s.holders.retain(|_, l| l.expires > now);
            let earliest = s.holders.values().map(|l| l.expires).min().unwrap_or(now);
            return Err(NoSeat {
                seats,
                retry_after: earliest.saturating_duration_since(now).as_secs().max(1),
            });
        }
        // Lapsed leases are dropped as new ones come, so the table stays
        // the size of the live instances.
        if s.holders.len() >= 64 && s.holders.len().is_power_of_two() {
            s.holders.retain(|_, l| l.expires > now);
        }
        s.holders.insert(instance.to_string(), lease);
        Ok(Acquired::New)
    }

    /// Records `jti` as the latest token issued to `instance`'s lease.
    pub fn set_proof(&self, service: &str, instance: &str, jti: &str) {
        self.record_token(service, instance, jti, None);
    }

    /// Records `jti` as the latest token issued to `instance`'s lease and,
    /// when given, `nonce` as the one it presented last; true when that
    /// nonce is new (the current certificate cannot hold it yet).
    pub fn record_token(
        &self,
        service: &str,
        instance: &str,
        jti: &str,
        nonce: Option<&str>,
    ) -> bool {
        self.with_lease(service, instance, |lease| {
            let [latest, previous] = &mut lease.proofs;
            *previous = latest.take();
            *latest = Some(jti.to_string());
            nonce.is_some_and(|n| lease.present(n))
        })
    }

    /// Records `nonce` as the one `instance`'s lease presented last; true
    /// when it is new (a leaf the current certificate cannot hold yet).
    pub fn present_nonce(&self, service: &str, instance: &str, nonce: &str) -> bool {
        self.with_lease(service, instance, |lease| lease.present(nonce))
    }

    /// `f` on `instance`'s lease of `service`, under the table's lock;
    /// false when it holds none.
    fn with_lease(
        &self,
        service: &str,
        instance: &str,
        f: impl FnOnce(&mut Lease) -> bool,
    ) -> bool {
        self.services
            .lock()
            .get_mut(service)
            .and_then(|s| s.holders.get_mut(instance))
            .is_some_and(f)
    }

    /// The leaves of the next certificate (freshness): `(service, instance,
    /// nonce)` of every live lease that presented a nonce, for the services
    /// `keep` admits. A lapsed lease leaves the set. At most the seat count
    /// per limited service, even when more leases live (restored under a
    /// license that now has fewer seats): the longest-held ones.
    pub fn live_leaves(&self, now: UnixTime, keep: impl Fn(&str) -> bool) -> Vec<Leaf> {
        let services = self.services.lock();
        let mut out = Vec::new();
        for (service, s) in services.iter().filter(|(name, _)| keep(name)) {
            let mut live: Vec<(&String, &Lease)> = s
                .holders
                .iter()
                .filter(|(_, l)| l.expires > now && l.nonce.is_some())
                .collect();
            if let Some(seats) = s.seats
                && live.len() > seats as usize
            {
                live.sort_by_key(|(instance, l)| (l.since, *instance));
                live.truncate(seats as usize);
            }
            for (instance, lease) in live {
                if let Some(nonce) = &lease.nonce
                    && let Ok(leaf) = Leaf::new(service.as_str(), instance.as_str(), nonce.as_str())
                {
                    out.push(leaf);
                }
            }
        }
        out
    }

    /// Releases `instance`'s lease of `service` when `jti` is that of one
    /// of the last two tokens issued to it; true when it did.
    pub fn release_with_proof(&self, service: &str, instance: &str, jti: &str) -> bool {
        let mut services = self.services.lock();
        let Some(s) = services.get_mut(service) else {
            return false;
        };
        let proven = s
            .holders
            .get(instance)
            .is_some_and(|l| l.proofs.iter().flatten().any(|p| p == jti));
        proven && s.holders.remove(instance).is_some()
    }

    /// Releases `instance`'s lease of `service`; true when it held one.
    pub fn release(&self, service: &str, instance: &str) -> bool {
        self.services
            .lock()
            .get_mut(service)
            .and_then(|s| s.holders.remove(instance))
            .is_some()
    }

    /// Live leases and seat count per service: `(service, in use, seats)`.
    pub fn usage(&self, now: UnixTime) -> Vec<(String, usize, Option<u32>)> {
        let services = self.services.lock();
        let mut out: Vec<_> = services
            .iter()
            .map(|(name, s)| (name.clone(), s.live(now), s.seats))
            .collect();
        out.sort();
        out
    }

    /// Every live lease, by service then instance.
    pub fn rows(&self, now: UnixTime) -> Vec<LeaseRow> {
        let services = self.services.lock();
        let mut out: Vec<LeaseRow> = services
            .iter()
            .flat_map(|(service, s)| {
                s.holders
                    .iter()
                    .filter(|(_, l)| l.expires > now)
                    .map(|(instance, lease)| LeaseRow {
                        service: service.clone(),
                        instance: instance.clone(),
                        lease: lease.clone(),
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
        out
    }

    /// The holders to persist: instances with a live lease of a
    /// seat-limited service.
    pub fn holders(&self, now: UnixTime) -> BTreeMap<String, BTreeSet<String>> {
        let services = self.services.lock();
        services
            .iter()
            .filter(|(_, s)| s.seats.is_some())
            .map(|(name, s)| {
                let live = s
                    .holders
                    .iter()
                    .filter(|(_, l)| l.expires > now)
                    .map(|(i, _)| i.clone())
                    .collect();
                (name.clone(), live)
            })
            .filter(|(_, set): &(String, BTreeSet<String>)| !set.is_empty())
            .collect()
    }

    /// Sets `service`'s seat count (`None`: unlimited), for a license
    /// update. Leases already held stay; a lower count admits no new
    /// instance, and stops renewals, until the live ones fit.
    pub fn set_seats(&self, service: &str, seats: Option<u32>) {
        self.services
            .lock()
            .entry(service.to_string())
            .or_default()
            .seats = seats;
    }

    /// Whether `service` has a seat limit.
    pub fn is_limited(&self, service: &str) -> bool {
        self.services
            .lock()
            .get(service)
            .is_some_and(|s| s.seats.is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// `secs` as an instant.
    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn table(seats: u32) -> Leases {
        Leases::new([("backend", Some(seats)), ("muxer", None)])
    }

    #[test]
    fn seats_are_counted_renewed_released_and_lapse() {
        let t = table(2);
        assert_eq!(
            t.acquire("backend", "a", at(100), at(165), None),
            Ok(Acquired::New)
        );
        assert_eq!(
            t.acquire("backend", "b", at(101), at(166), None),
            Ok(Acquired::New)
        );
        assert_eq!(
            t.acquire("backend", "c", at(102), at(167), None),
            Err(NoSeat {
                seats: 2,
                retry_after: 63
            })
        );
        // A holder renews; an unlimited service never refuses.
        assert_eq!(
            t.acquire("backend", "a", at(110), at(175), None),
            Ok(Acquired::Renewed)
        );
        for i in 0..100 {
            assert!(
                t.acquire("muxer", &format!("m{i}"), at(110), at(175), None)
                    .is_ok()
            );
        }
        // Release frees the seat at once.
        assert!(t.release("backend", "b"));
        assert!(!t.release("backend", "b"));
        assert_eq!(
            t.acquire("backend", "c", at(111), at(176), None),
            Ok(Acquired::New)
        );
        // A crashed holder's seat comes back when its lease lapses.
        // (a's lease ends at 175, c's at 176.)
        assert!(t.acquire("backend", "d", at(174), at(239), None).is_err());
        assert_eq!(
            t.acquire("backend", "d", at(175), at(240), None),
            Ok(Acquired::New)
        );
        assert_eq!(t.usage(at(175))[0], ("backend".to_string(), 2, Some(2)));
    }

    #[test]
    fn a_restart_keeps_restored_seats_until_one_lifetime_has_passed() {
        let t = table(2);
        t.acquire("backend", "a", at(100), at(165), None).unwrap();
        t.acquire("backend", "b", at(100), at(165), None).unwrap();
        let persisted = t.holders(at(100));
        let after = table(2);
        after.restore(&persisted, at(120), at(185));
        assert!(
            after
                .acquire("backend", "c", at(120), at(185), None)
                .is_err()
        );
        assert_eq!(
            after.acquire("backend", "a", at(121), at(186), None),
            Ok(Acquired::Renewed)
        );
        assert_eq!(
            after.acquire("backend", "c", at(185), at(250), None),
            Ok(Acquired::New)
        );
    }

    /// Restored under a license with fewer seats, the extra holders keep
    /// their seats while their tokens live, but none renews until the live
    /// leases fit in the seats again.
    #[test]
    fn more_restored_holders_than_seats_do_not_renew_for_ever() {
        let before = table(3);
        for i in ["a", "b", "c"] {
            before
                .acquire("backend", i, at(100), at(165), None)
                .unwrap();
        }
        let after = table(2);
        after.restore(&before.holders(at(100)), at(120), at(185));
        assert!(
            after
                .acquire("backend", "d", at(121), at(186), None)
                .is_err()
        );
        let renewed = ["a", "b", "c"]
            .iter()
            .filter(|i| after.acquire("backend", i, at(130), at(195), None).is_ok())
            .count();
        assert_eq!(renewed, 0);
        // Once the restored leases lapse, two instances hold the two seats.
        assert_eq!(
            after.acquire("backend", "a", at(185), at(250), None),
            Ok(Acquired::New)
        );
        assert_eq!(
            after.acquire("backend", "b", at(186), at(251), None),
            Ok(Acquired::New)
        );
        assert!(
            after
                .acquire("backend", "c", at(187), at(252), None)
                .is_err()
        );
        assert_eq!(
            after.acquire("backend", "a", at(190), at(255), None),
            Ok(Acquired::Renewed)
        );
    }

    #[test]
    fn instance_ids_are_checked() {
        assert!(check_instance("web-1.example_A").is_ok());
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(65)] {
            assert!(check_instance(bad).is_err(), "{bad:?}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(u8, u8),
        Release(u8),
        Tick(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, 1u8..90).prop_map(|(i, ttl)| Op::Acquire(i, ttl)),
            (0u8..12).prop_map(Op::Release),
            (0u8..40).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Random acquire/renew/release/expire sequences never let more
        /// live leases exist than seats.
        #[test]
        fn live_leases_never_exceed_the_seats(seats in 1u32..5, ops in proptest::collection::vec(op(), 1..200)) {
            let t = table(seats);
            let mut now = 1000u64;
            for op in ops {
                match op {
                    Op::Acquire(i, ttl) => {
                        let _ = t.acquire("backend", &format!("i{i}"), at(now), at(now + u64::from(ttl)), None);
                    }
                    Op::Release(i) => {
                        t.release("backend", &format!("i{i}"));
                    }
                    Op::Tick(d) => now += u64::from(d),
                }
                let live = t.rows(at(now)).iter().filter(|r| r.service == "backend").count();
                prop_assert!(live <= seats as usize, "{live} live leases, {seats} seats");
            }
        }
    }
}
