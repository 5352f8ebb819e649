//! The authority's clock, injected so that time-dependent logic (license
//! windows, certificate windows, leases, the clock mark) is tested in fake
//! time, without sleeping.
//!
//! Times are UNIX seconds, as everywhere in the formats. Only wall-clock
//! readings go through here; the watchdog's pacing (heartbeats, renewals,
//! backoff) uses the monotonic `Instant`, which a wrong wall clock cannot
//! move.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Now, in UNIX seconds.
    fn now_unix(&self) -> u64;
}

/// The system clock ([`tether_keys::now_unix`]): what the daemon runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        tether_keys::now_unix()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now` (UNIX seconds).
    pub fn new(now: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now))
    }

    /// Sets it to `now` (UNIX seconds).
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves it forward by `secs` seconds.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
