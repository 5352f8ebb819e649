//! The authority's clock, injected so that time-dependent logic (license
//! windows, certificate windows, leases, the clock mark) is tested in fake
//! time, without sleeping.
//!
//! Times are [`UnixTime`]s, as everywhere in the formats. Only wall-clock
//! readings go through here; the watchdog's pacing (heartbeats, renewals,
//! backoff) uses the monotonic `Instant`, which a wrong wall clock cannot
//! move.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_keys::UnixTime;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Now.
    fn now(&self) -> UnixTime;
}

/// The system clock ([`UnixTime::now`]): what the daemon runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: UnixTime) -> ManualClock {
        ManualClock(AtomicU64::new(now.secs()))
    }

    /// Sets it to `now`.
    pub fn set(&self, now: UnixTime) {
        self.0.store(now.secs(), Ordering::SeqCst);
    }

    /// Moves it forward by `by` (whole seconds).
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}
