//! The CLI's HTTP client: `GET` with an optional bearer credential, and a
//! reader for tetherd's server-sent events.
//!
//! Enough for `tether health` (the container healthcheck: the runtime image
//! has no curl), `tether token`, the demo's status view and the end-to-end
//! tests. Plain HTTP only: tetherd serves loopback or a private network (TCP;
//! no Unix-socket listener exists).
//!
//! - Request/response goes through `ureq` (blocking), with every answer's
//!   body capped at [`MAX_BODY`] bytes after de-chunking.
//! - The event stream goes through hyper's client connection (as the
//!   verifier's refresher does) on a private single-thread runtime, parsed by
//!   `eventsource-stream`, with at most [`MAX_EVENT`] bytes between two
//!   events. Not ureq: a blocked ureq body read can neither be given a new
//!   timeout per call nor be cut when the reader is dropped, and a dropped
//!   [`Events`] must close its connection at once so tetherd frees its place.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};

/// Larger answers are refused: nothing tetherd or a service sends comes close.
pub const MAX_BODY: u64 = 1 << 20;

/// Most bytes of an event stream between two events (keep-alive comments
/// included): tetherd's events are under 1 KiB.
pub const MAX_EVENT: usize = 64 << 10;

/// Connecting, sending, and waiting for each part of an answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// `InvalidData` when the body is not JSON.
    pub fn json(&self) -> io::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not JSON ({e})")))
    }
    /// A header's value, by case-insensitive name.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `url` without its scheme and trailing slash (`host:port`), refusing
/// anything but `http://`.
fn authority_of(url: &str) -> io::Result<&str> {
    url.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|host| !host.is_empty() && !host.contains('/'))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{url}: only http://HOST:PORT base URLs are supported"),
            )
        })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // A 4xx/5xx is an answer to report, not a transport failure.
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(TIMEOUT))
        .timeout_send_request(Some(TIMEOUT))
        .timeout_recv_response(Some(TIMEOUT))
        .timeout_recv_body(Some(TIMEOUT))
        .build()
        .into()
}

/// `GET url+path`, optionally with a bearer credential.
///
/// # Errors
///
/// `InvalidInput` for a URL that is not `http://HOST:PORT`; the transport's
/// error when the server cannot be reached or answers outside HTTP/1.1, within
/// 10 s per step; `InvalidData` for a body over [`MAX_BODY`] bytes or not
/// UTF-8.
pub fn get(url: &str, path: &str, bearer: Option<&str>) -> io::Result<Response> {
    let host = authority_of(url)?;
    let mut request = agent().get(format!("http://{host}{path}"));
    if let Some(secret) = bearer {
        request = request.header("Authorization", format!("Bearer {secret}"));
    }
    let mut response = request.call().map_err(ureq::Error::into_io)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

type EventItem = Result<Event, EventStreamError<io::Error>>;

/// An open `GET /events` stream. Dropping it closes the connection.
pub struct Events {
    // Field order is drop order: the stream (the response body) first, then
    // the runtime, which drops the connection task and so the socket.
    stream: Pin<Box<dyn Stream<Item = EventItem> + Send>>,
    /// Bytes received since the last event.
    pending: Arc<AtomicUsize>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}

impl Events {
    /// Opens `GET url/events`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a URL that is not `http://HOST:PORT`; the socket's
    /// or HTTP error when tetherd cannot be reached within 10 s; an error
    /// naming the status when tetherd answers anything but 200.
    pub fn open(url: &str) -> io::Result<Events> {
        use hyper::Request;
        use hyper::header::HOST;
        use hyper_util::rt::TokioIo;

        let host = authority_of(url)?.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let body = runtime.block_on(async {
            let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&host))
                .await
                .map_err(|_| timed_out("events: connect"))??;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(io::Error::other)?;
            // Polled whenever the runtime runs, i.e. inside `next_state`.
            tokio::spawn(conn);
            let request = Request::get("/events")
                .header(HOST, &host)
                .body(Empty::<Bytes>::new())
                .map_err(io::Error::other)?;
            let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
                .await
                .map_err(|_| timed_out("events: answer"))?
                .map_err(io::Error::other)?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(io::Error::other(format!("events: status {status}")));
            }
            Ok(response.into_body())
        })?;
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = pending.clone();
        let bytes = body.into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(io::Error::other)?;
            let total = counter.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if total > MAX_EVENT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("events: more than {MAX_EVENT} bytes without an event"),
                ));
            }
            Ok(chunk)
        });
        Ok(Events {
            stream: Box::pin(bytes.eventsource()),
            pending,
            runtime,
        })
    }

    /// The next `state` event's data as JSON, waiting up to `timeout` in all.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no `state` event came in time; `UnexpectedEof` when the
    /// stream ended; `InvalidData` for an event whose data is not JSON or a
    /// stream over [`MAX_EVENT`] bytes between events; the transport's error.
    pub fn next_state(&mut self, timeout: Duration) -> io::Result<serde_json::Value> {
        let Events {
            stream,
            pending,
            runtime,
        } = self;
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => return Err(timed_out("events: no state event")),
                    Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(Some(Err(EventStreamError::Transport(e)))) => return Err(e),
                    Ok(Some(Err(e))) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                    }
                    Ok(Some(Ok(event))) => event,
                };
                pending.store(0, Ordering::Relaxed);
                if event.event == "state" {
                    return serde_json::from_str(event.data.trim())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_base_urls_are_accepted() {
        assert_eq!(
            authority_of("http://127.0.0.1:7443").ok(),
            Some("127.0.0.1:7443")
        );
        assert_eq!(
            authority_of("http://127.0.0.1:7443/").ok(),
            Some("127.0.0.1:7443")
        );
        for bad in [
            "https://x:1",
            "127.0.0.1:7443",
            "http://",
            "http://x:1/path",
        ] {
            assert!(authority_of(bad).is_err(), "{bad}");
        }
    }
}
