//! The daemon's metrics, rendered at `GET /metrics` by `prometheus-client`
//! (OpenMetrics text).
//!
//! Every series is registered at start and every label value is listed
//! there, so nothing grows with traffic and a new [`RefusalCode`] or
//! [`ConnError`] gets its own series (the exhaustive `ALL` lists) instead of
//! being counted as something else.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tether_keys::wire::RefusalCode;

/// Upper bounds of the heartbeat latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// How an HTTP connection ended in error. A peer's doing, nearly always:
/// counted here and logged at debug, never at error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub enum ConnError {
    /// The peer closed the connection in the middle of a request.
    incomplete_message,
    /// The peer sent something that is not HTTP/1.1.
    parse,
    /// The peer was too slow (header read timeout).
    timeout,
    /// The socket failed (reset, broken pipe).
    io,
    /// Anything else hyper reports.
    other,
}

impl ConnError {
    /// Every kind, each a series of `tether_http_connection_errors_total`.
    pub const ALL: [ConnError; 5] = [
        ConnError::incomplete_message,
        ConnError::parse,
        ConnError::timeout,
        ConnError::io,
        ConnError::other,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnLabel {
    kind: ConnError,
}

/// The two classes of `/events` streams (`http::streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub enum StreamClass {
    /// Streams without a credential.
    anonymous,
    /// Streams of an enrolled service.
    credentialed,
}

impl StreamClass {
    /// Both classes.
    pub const ALL: [StreamClass; 2] = [StreamClass::anonymous, StreamClass::credentialed];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabel {
    class: StreamClass,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    issued: Counter,
    refused: Family<ReasonLabel, Counter>,
    present: Gauge,
    transitions: Counter,
    heartbeat_failures: Counter,
    heartbeat: Histogram,
    conn_errors: Family<ConnLabel, Counter>,
    streams_open: Family<ClassLabel, Gauge>,
    streams_refused: Family<ClassLabel, Counter>,
    seats_in_use: Family<ServiceLabel, Gauge>,
    seats_limit: Family<ServiceLabel, Gauge>,
    certificates: Counter,
    leaves: Gauge,
    license_expiry: Gauge,
    license_grace_end: Gauge,
    service_issued: Family<ServiceLabel, Counter>,
    service_refused: Family<ServiceLabel, Counter>,
    /// The per-service counters again, for the admin page to read (a
    /// `Family` cannot be listed). Only enrolled services get here: a
    /// request is counted by service after its credential is recognised.
    by_service: Mutex<BTreeMap<String, [Counter; 2]>>,
    /// The last [`DONGLE_REFUSALS_KEPT`] refused dongles: when, and why.
    dongle_refusals: Mutex<VecDeque<(u64, String)>>,
}

/// How many refused dongles [`Metrics::dongle_refusals`] remembers.
pub const DONGLE_REFUSALS_KEPT: usize = 16;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let issued = Counter::default();
        registry.register("tether_tokens_issued", "Tokens issued", issued.clone());
        let refused = Family::<ReasonLabel, Counter>::default();
        for code in RefusalCode::ALL {
            // Listed from the start, at 0, so every reason has its series.
            let _ = refused.get_or_create(&ReasonLabel {
                reason: code.as_str(),
            });
        }
        registry.register(
            "tether_tokens_refused",
            "Token requests refused, by reason",
            refused.clone(),
        );
        let present = Gauge::default();
        registry.register(
            "tether_dongle_present",
            "1 while a verified dongle is present",
            present.clone(),
        );
        let transitions = Counter::default();
        registry.register(
            "tether_presence_transitions",
            "Changes of presence state",
            transitions.clone(),
        );
        let heartbeat_failures = Counter::default();
        registry.register(
            "tether_heartbeat_failures",
            "Heartbeats that failed",
            heartbeat_failures.clone(),
        );
        let heartbeat = Histogram::new(BUCKETS);
        registry.register(
            "tether_heartbeat_seconds",
            "PRESENCE round-trip latency in seconds",
            heartbeat.clone(),
        );
        let conn_errors = Family::<ConnLabel, Counter>::default();
        for kind in ConnError::ALL {
            let _ = conn_errors.get_or_create(&ConnLabel { kind });
        }
        registry.register(
            "tether_http_connection_errors",
            "HTTP connections that ended in an error, by kind (mostly peers closing mid-request)",
            conn_errors.clone(),
        );
        let streams_open = Family::<ClassLabel, Gauge>::default();
        let streams_refused = Family::<ClassLabel, Counter>::default();
        for class in StreamClass::ALL {
            let _ = streams_open.get_or_create(&ClassLabel { class });
            let _ = streams_refused.get_or_create(&ClassLabel { class });
        }
        registry.register(
            "tether_event_streams",
            "GET /events streams open now, by class",
            streams_open.clone(),
        );
        registry.register(
            "tether_event_streams_refused",
            "GET /events streams refused because their class (or service) was full",
            streams_refused.clone(),
        );
        let seats_in_use = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "tether_seats_in_use",
            "Live leases per licensed service",
            seats_in_use.clone(),
        );
        let seats_limit = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "tether_seats_limit",
            "The license's seat count per seat-limited service",
            seats_limit.clone(),
        );
        let certificates = Counter::default();
        registry.register(
            "tether_certificates",
            "Delegation certificates the dongle signed (DELEGATE commands answered)",
            certificates.clone(),
        );
        let leaves = Gauge::default();
        registry.register(
            "tether_certificate_leaves",
            "Consumer instances (nonces) the current certificate commits to",
            leaves.clone(),
        );
        let license_expiry = Gauge::default();
        registry.register(
            "tether_license_expiry_timestamp_seconds",
            "When the license being served ends (its not_after), UNIX seconds",
            license_expiry.clone(),
        );
        let license_grace_end = Gauge::default();
        registry.register(
            "tether_license_grace_end_timestamp_seconds",
            "When the license's vendor-signed grace ends (not_after + grace; equal to the expiry without grace), UNIX seconds",
            license_grace_end.clone(),
        );
        let service_issued = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "tether_service_tokens_issued",
            "Tokens issued, by enrolled service",
            service_issued.clone(),
        );
        let service_refused = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "tether_service_tokens_refused",
            "Token requests refused, by enrolled service (unknown credentials are not here)",
            service_refused.clone(),
        );
        Metrics {
            registry,
            certificates,
            leaves,
            license_expiry,
            license_grace_end,
            service_issued,
            service_refused,
            by_service: Mutex::default(),
            dongle_refusals: Mutex::default(),
            streams_open,
            streams_refused,
            issued,
            refused,
            present,
            transitions,
            heartbeat_failures,
            heartbeat,
            conn_errors,
            seats_in_use,
            seats_limit,
        }
    }
}

impl Metrics {
    /// Certificates the dongle signed since start.
    pub fn certificates(&self) -> u64 {
        self.certificates.get()
    }

    /// Counts a certificate the dongle signed, committing to `leaves` nonces.
    pub fn certified(&self, leaves: usize) {
        self.certificates.inc();
        self.leaves.set(i64::try_from(leaves).unwrap_or(i64::MAX));
    }

    /// The license being served ends at `not_after` and its grace at
    /// `grace_until` (UNIX seconds), for the `tether_license_*` gauges.
    pub fn license_window(&self, not_after: u64, grace_until: u64) {
        self.license_expiry
            .set(i64::try_from(not_after).unwrap_or(i64::MAX));
        self.license_grace_end
            .set(i64::try_from(grace_until).unwrap_or(i64::MAX));
    }

    /// One token issued.
    pub fn issued(&self) {
        self.issued.inc();
    }

    /// Tokens issued so far.
    pub fn issued_total(&self) -> u64 {
        self.issued.get()
    }

    /// One request refused.
    pub fn refused(&self, why: RefusalCode) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc();
    }

    /// One request of an enrolled `service` answered: issued or refused.
    pub fn service_outcome(&self, service: &str, issued: bool) {
        let mut map = self.by_service.lock();
        let counters = map.entry(service.to_string()).or_insert_with(|| {
            let label = ServiceLabel {
                service: service.to_string(),
            };
            [
                self.service_issued.get_or_create(&label).clone(),
                self.service_refused.get_or_create(&label).clone(),
            ]
        });
        counters[usize::from(!issued)].inc();
    }

    /// Tokens issued and refused so far per enrolled service that asked:
    /// `(service, issued, refused)`, sorted by service.
    pub fn per_service(&self) -> Vec<(String, u64, u64)> {
        self.by_service
            .lock()
            .iter()
            .map(|(s, [i, r])| (s.clone(), i.get(), r.get()))
            .collect()
    }

    /// A dongle refused at `at` (UNIX seconds) for `reason`.
    pub fn dongle_refused(&self, at: u64, reason: &str) {
        let mut log = self.dongle_refusals.lock();
        if log.len() == DONGLE_REFUSALS_KEPT {
            log.pop_front();
        }
        log.push_back((at, reason.to_string()));
    }

    /// The last refused dongles, oldest first: `(at, reason)`.
    pub fn dongle_refusals(&self) -> Vec<(u64, String)> {
        self.dongle_refusals.lock().iter().cloned().collect()
    }

    /// One change of presence state.
    pub fn transition(&self) {
        self.transitions.inc();
    }

    /// One heartbeat round trip.
    pub fn heartbeat(&self, latency: Duration) {
        self.heartbeat.observe(latency.as_secs_f64());
    }

    /// One failed heartbeat.
    pub fn heartbeat_failed(&self) {
        self.heartbeat_failures.inc();
    }

    /// One HTTP connection that ended in an error; returns the count of that
    /// kind so far.
    pub fn connection_error(&self, kind: ConnError) -> u64 {
        let counter = self.conn_errors.get_or_create(&ConnLabel { kind });
        counter.inc() + 1
    }

    /// The gauge of open `/events` streams of `class` (a handle: the stream
    /// increments it when it opens and decrements it when it ends).
    pub fn event_streams(&self, class: StreamClass) -> Gauge {
        self.streams_open
            .get_or_create(&ClassLabel { class })
            .clone()
    }

    /// One `/events` stream of `class` refused for want of a place.
    pub fn event_stream_refused(&self, class: StreamClass) {
        self.streams_refused
            .get_or_create(&ClassLabel { class })
            .inc();
    }

    /// OpenMetrics text exposition ([`CONTENT_TYPE`]); `present` is the
    /// current state.
    pub fn render(&self, present: bool, seats: &[(String, usize, Option<u32>)]) -> String {
        self.present.set(i64::from(present));
        for (service, in_use, limit) in seats {
            let label = ServiceLabel {
                service: service.clone(),
            };
            self.seats_in_use
                .get_or_create(&label)
                .set(i64::try_from(*in_use).unwrap_or(i64::MAX));
            if let Some(limit) = limit {
                self.seats_limit
                    .get_or_create(&label)
                    .set(i64::from(*limit));
            }
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
        m.refused(RefusalCode::DongleAbsent);
        m.refused(RefusalCode::DongleAbsent);
        m.heartbeat(Duration::from_micros(1500));
        let text = m.render(true, &[]);
        assert!(text.contains("tether_tokens_issued_total 1\n"));
        assert!(text.contains("tether_tokens_refused_total{reason=\"dongle_absent\"} 2\n"));
        assert!(text.contains("tether_heartbeat_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("tether_heartbeat_seconds_bucket{le=\"0.002\"} 1\n"));
        assert!(text.contains("tether_dongle_present 1\n"));
        m.license_window(1_900_000_000, 1_900_604_800);
        let text = m.render(true, &[]);
        assert!(
            text.contains("tether_license_expiry_timestamp_seconds 1900000000\n"),
            "{text}"
        );
        assert!(text.contains("tether_license_grace_end_timestamp_seconds 1900604800\n"));
    }

    /// Every refusal code and connection-error kind has its own series from
    /// the start: nothing falls through into another label.
    #[test]
    fn every_reason_and_kind_has_its_own_series() {
        let m = Metrics::default();
        let text = m.render(false, &[]);
        for code in RefusalCode::ALL {
            let line = format!(
                "tether_tokens_refused_total{{reason=\"{}\"}} 0\n",
                code.as_str()
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        for kind in ConnError::ALL {
            assert_eq!(m.connection_error(kind), 1);
        }
        let text = m.render(false, &[]);
        assert!(
            text.contains("tether_http_connection_errors_total{kind=\"incomplete_message\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tether_dongle_present 0\n"));
        m.refused(RefusalCode::Internal);
        assert!(
            m.render(false, &[])
                .contains("tether_tokens_refused_total{reason=\"internal\"} 1\n")
        );
    }
}
