//! Places for `GET /events` streams, so that anonymous clients cannot starve
//! the consumers that matter.
//!
//! Streams are held as long as their clients like, so every class has a cap:
//! anonymous streams share [`ANONYMOUS_STREAMS`] places; streams that present
//! an enrolled service's credential have [`CREDENTIALED_STREAMS`] places of
//! their own, at most [`STREAMS_PER_SERVICE`] per service, so one service (or
//! a leaked credential) cannot take the others' places either.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::models::{Refusal, RefusalCode};
use crate::metrics::{Metrics, StreamClass};

/// Most anonymous `/events` streams open at once.
pub const ANONYMOUS_STREAMS: usize = 256;
/// Most credentialed `/events` streams open at once, over all services.
pub const CREDENTIALED_STREAMS: usize = 256;
/// Most credentialed `/events` streams of one service (its replicas).
pub const STREAMS_PER_SERVICE: usize = 64;

/// The places, shared by every listener.
#[derive(Debug)]
pub struct StreamPlaces {
    anonymous: Arc<Semaphore>,
    credentialed: Arc<Semaphore>,
    per_service: HashMap<String, Arc<Semaphore>>,
}

/// A taken place; the stream holds it until it ends, and it counts itself
/// in `tether_event_streams{class}` meanwhile.
#[derive(Debug)]
pub struct Place {
    _class: OwnedSemaphorePermit,
    _service: Option<OwnedSemaphorePermit>,
    open: Gauge,
}

impl Place {
    fn new(
        class: OwnedSemaphorePermit,
        service: Option<OwnedSemaphorePermit>,
        open: Gauge,
    ) -> Self {
        open.inc();
        Place {
            _class: class,
            _service: service,
            open,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl StreamPlaces {
    /// Places for the enrolled `services`.
    pub fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> Self {
        StreamPlaces {
            anonymous: Arc::new(Semaphore::new(ANONYMOUS_STREAMS)),
            credentialed: Arc::new(Semaphore::new(CREDENTIALED_STREAMS)),
            per_service: services
                .into_iter()
                .map(|s| (s.to_string(), Arc::new(Semaphore::new(STREAMS_PER_SERVICE))))
                .collect(),
        }
    }

    /// Takes a place for a stream of `service` (an authenticated one), or an
    /// anonymous place with `None`; counts it, or its refusal, in `metrics`.
    ///
    /// # Errors
    ///
    /// [`RefusalCode::TooManyStreams`] when the class (or the service) is full.
    pub fn take(&self, service: Option<&str>, metrics: &Metrics) -> Result<Place, Refusal> {
        let class = match service {
            None => StreamClass::anonymous,
            Some(_) => StreamClass::credentialed,
        };
        let taken = self.try_take(service, metrics.event_streams(class));
        if taken.is_err() {
            metrics.event_stream_refused(class);
        }
        taken
    }

    fn try_take(&self, service: Option<&str>, open: Gauge) -> Result<Place, Refusal> {
        let full = |what: &str| {
            Refusal::new(
                RefusalCode::TooManyStreams,
                format!("too many {what} event streams open; retry later"),
            )
        };
        match service {
            None => {
                let class = self
                    .anonymous
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| full("anonymous"))?;
                Ok(Place::new(class, None, open))
            }
            Some(service) => {
                let own = self
                    .per_service
                    .get(service)
                    .ok_or_else(|| full("credentialed"))?
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| full("of this service's"))?;
                let class = self
                    .credentialed
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| full("credentialed"))?;
                Ok(Place::new(class, Some(own), open))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn classes_and_services_have_their_own_caps() {
        let places = StreamPlaces::new(["a", "b"]);
        let m = Metrics::default();
        let anon: Vec<_> = (0..ANONYMOUS_STREAMS)
            .map(|_| places.take(None, &m).unwrap())
            .collect();
        assert_eq!(
            places.take(None, &m).unwrap_err().kind(),
            RefusalCode::TooManyStreams
        );
        let text = m.render(false, &[]);
        assert!(
            text.contains("tether_event_streams{class=\"anonymous\"} 256\n"),
            "{text}"
        );
        assert!(text.contains("tether_event_streams_refused_total{class=\"anonymous\"} 1\n"));
        // Anonymous streams took nothing from the services.
        let a: Vec<_> = (0..STREAMS_PER_SERVICE)
            .map(|_| places.take(Some("a"), &m).unwrap())
            .collect();
        assert!(places.take(Some("a"), &m).is_err());
        // One service's full share leaves the other's.
        let b = places.take(Some("b"), &m).unwrap();
        drop((anon, a, b));
        assert!(
            m.render(false, &[])
                .contains("tether_event_streams{class=\"anonymous\"} 0\n")
        );
        assert!(places.take(None, &m).is_ok());
        assert!(places.take(Some("a"), &m).is_ok());
        assert!(places.take(Some("unknown"), &m).is_err());
    }
}
