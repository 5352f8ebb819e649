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

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::models::{Refusal, RefusalCode};

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

/// A taken place; the stream holds it until it ends.
#[derive(Debug)]
pub struct Place {
    _class: OwnedSemaphorePermit,
    _service: Option<OwnedSemaphorePermit>,
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
    /// anonymous place with `None`.
    ///
    /// # Errors
    ///
    /// [`RefusalCode::TooManyStreams`] when the class (or the service) is full.
    pub fn take(&self, service: Option<&str>) -> Result<Place, Refusal> {
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
                Ok(Place {
                    _class: class,
                    _service: None,
                })
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
                Ok(Place {
                    _class: class,
                    _service: Some(own),
                })
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
        let anon: Vec<_> = (0..ANONYMOUS_STREAMS)
            .map(|_| places.take(None).unwrap())
            .collect();
        assert_eq!(
            places.take(None).unwrap_err().kind(),
            RefusalCode::TooManyStreams
        );
        // Anonymous streams took nothing from the services.
        let a: Vec<_> = (0..STREAMS_PER_SERVICE)
            .map(|_| places.take(Some("a")).unwrap())
            .collect();
        assert!(places.take(Some("a")).is_err());
        // One service's full share leaves the other's.
        let b = places.take(Some("b")).unwrap();
        drop((anon, a, b));
        assert!(places.take(None).is_ok());
        assert!(places.take(Some("a")).is_ok());
        assert!(places.take(Some("unknown")).is_err());
    }
}
