//! Counters and a histogram, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics: recording is a relaxed increment on the hot path, and the
//! set of series is fixed, so nothing grows with traffic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a token request was refused (one series each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: missing or unknown credential.
    Unauthorized,
    /// 403: service not in the license.
    ServiceNotLicensed,
    /// 403: license outside its validity window.
    LicenseNotValid,
    /// 503: no dongle, or not yet verified.
    DongleAbsent,
    /// 503: clock behind its high-water mark.
    ClockRollback,
    /// 429: over the per-service rate.
    RateLimited,
    /// 400: malformed request.
    BadRequest,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::Unauthorized,
        Refusal::ServiceNotLicensed,
        Refusal::LicenseNotValid,
        Refusal::DongleAbsent,
        Refusal::ClockRollback,
        Refusal::RateLimited,
        Refusal::BadRequest,
    ];

    /// The snake_case code used in JSON errors and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::ServiceNotLicensed => "service_not_licensed",
            Refusal::LicenseNotValid => "license_not_valid",
            Refusal::DongleAbsent => "dongle_absent",
            Refusal::ClockRollback => "clock_rollback",
            Refusal::RateLimited => "rate_limited",
            Refusal::BadRequest => "bad_request",
        }
    }
}

/// Upper bounds of the heartbeat latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The daemon's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    issued: AtomicU64,
    refused: [AtomicU64; 7],
    transitions: AtomicU64,
    heartbeat_buckets: [AtomicU64; 10],
    heartbeat_count: AtomicU64,
    heartbeat_sum_us: AtomicU64,
    heartbeat_failures: AtomicU64,
}

impl Metrics {
    /// One token issued.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Relaxed);
    }

    /// Tokens issued so far.
    pub fn issued_total(&self) -> u64 {
        self.issued.load(Relaxed)
    }

    /// One request refused.
    pub fn refused(&self, why: Refusal) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refused[i].fetch_add(1, Relaxed);
    }

    /// One change of presence state.
    pub fn transition(&self) {
        self.transitions.fetch_add(1, Relaxed);
    }

    /// One heartbeat round trip.
    pub fn heartbeat(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.heartbeat_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.heartbeat_count.fetch_add(1, Relaxed);
        self.heartbeat_sum_us
            .fetch_add(latency.as_micros() as u64, Relaxed);
    }

    /// One failed heartbeat.
    pub fn heartbeat_failed(&self) {
        self.heartbeat_failures.fetch_add(1, Relaxed);
    }

    /// Prometheus text exposition; `present` is the current state.
    pub fn render(&self, present: bool) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "# HELP tether_tokens_issued_total Tokens issued.");
        let _ = writeln!(out, "# TYPE tether_tokens_issued_total counter");
        let _ = writeln!(
            out,
            "tether_tokens_issued_total {}",
            self.issued.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_tokens_refused_total Token requests refused, by reason."
        );
        let _ = writeln!(out, "# TYPE tether_tokens_refused_total counter");
        for (r, n) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "tether_tokens_refused_total{{reason=\"{}\"}} {}",
                r.code(),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tether_dongle_present 1 while a verified dongle is present."
        );
        let _ = writeln!(out, "# TYPE tether_dongle_present gauge");
        let _ = writeln!(out, "tether_dongle_present {}", u8::from(present));
        let _ = writeln!(
            out,
            "# HELP tether_presence_transitions_total Changes of presence state."
        );
        let _ = writeln!(out, "# TYPE tether_presence_transitions_total counter");
        let _ = writeln!(
            out,
            "tether_presence_transitions_total {}",
            self.transitions.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_heartbeat_failures_total Heartbeats that failed."
        );
        let _ = writeln!(out, "# TYPE tether_heartbeat_failures_total counter");
        let _ = writeln!(
            out,
            "tether_heartbeat_failures_total {}",
            self.heartbeat_failures.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_heartbeat_seconds PRESENCE round-trip latency."
        );
        let _ = writeln!(out, "# TYPE tether_heartbeat_seconds histogram");
        for (bound, n) in BUCKETS.iter().zip(&self.heartbeat_buckets) {
            let _ = writeln!(
                out,
                "tether_heartbeat_seconds_bucket{{le=\"{bound}\"}} {}",
                n.load(Relaxed)
            );
        }
        let count = self.heartbeat_count.load(Relaxed);
        let _ = writeln!(
            out,
            "tether_heartbeat_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.heartbeat_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "tether_heartbeat_seconds_sum {sum}");
        let _ = writeln!(out, "tether_heartbeat_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_and_buckets() {
        let m = Metrics::default();
        m.issued();
        m.refused(Refusal::DongleAbsent);
        m.refused(Refusal::DongleAbsent);
        m.heartbeat(Duration::from_micros(1500));
        let text = m.render(true);
        assert!(text.contains("tether_tokens_issued_total 1\n"));
        assert!(text.contains("tether_tokens_refused_total{reason=\"dongle_absent\"} 2\n"));
        assert!(text.contains("tether_heartbeat_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("tether_heartbeat_seconds_bucket{le=\"0.002\"} 1\n"));
        assert!(text.contains("tether_dongle_present 1\n"));
    }
}
