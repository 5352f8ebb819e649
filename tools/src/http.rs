//! The CLI's HTTP client: `GET` with an optional bearer credential, `DELETE`
//! with one, and a reader for tetherd's server-sent events.
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
    read_response(request.call().map_err(ureq::Error::into_io)?)
}

/// `DELETE url+path` (e.g. `/lease?instance=ID`), optionally with a bearer
/// credential.
///
/// # Errors
///
/// As [`get`].
pub fn delete(url: &str, path: &str, bearer: Option<&str>) -> io::Result<Response> {
    let host = authority_of(url)?;
    let mut request = agent().delete(format!("http://{host}{path}"));
    if let Some(secret) = bearer {
        request = request.header("Authorization", format!("Bearer {secret}"));
    }
    read_response(request.call().map_err(ureq::Error::into_io)?)
}

fn read_response(mut response: ureq::http::Response<ureq::Body>) -> io::Result<Response> {
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
        self.next_of("state", timeout)
    }

    /// The data of the next event named `kind` (`state`, `license`,
    /// `expiry`), skipping the others.
    ///
    /// # Errors
    ///
    /// As [`Events::next_state`], for an event named `kind`.
    pub fn next_of(&mut self, kind: &str, timeout: Duration) -> io::Result<serde_json::Value> {
        let Events {
            stream,
            pending,
            runtime,
        } = self;
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => return Err(timed_out(&format!("events: no {kind} event"))),
                    Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(Some(Err(EventStreamError::Transport(e)))) => return Err(e),
                    Ok(Some(Err(e))) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                    }
                    Ok(Some(Ok(event))) => event,
                };
                pending.store(0, Ordering::Relaxed);
                if event.event == kind {
                    return serde_json::from_str(event.data.trim())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    /// Serves one connection: reads the request head, sends `parts` with a
    /// pause between them (so they arrive as separate reads), then holds the
    /// connection open a while. Returns the base URL and the request head.
    fn serve_once(parts: Vec<Vec<u8>>) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            for part in parts {
                if conn.write_all(&part).is_err() {
                    return;
                }
                let _ = conn.flush();
                std::thread::sleep(Duration::from_millis(30));
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        (url, rx)
    }

    fn chunked(chunks: usize, size: usize) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..chunks {
            out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'a', size));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn a_bearer_request_and_its_answer() {
        let body = r#"{"code":"x"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (url, head) = serve_once(vec![answer.into_bytes()]);
        let r = get(&url, "/token?nonce=n1", Some("tsk_secret")).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json().unwrap()["code"], "x");
        let head = head.recv().unwrap();
        assert!(
            head.starts_with("GET /token?nonce=n1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("authorization: Bearer tsk_secret\r\n")
                || head.contains("Authorization: Bearer tsk_secret\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_chunked_body_is_capped_in_total_not_per_chunk() {
        let (url, _) = serve_once(vec![chunked(4, 1000)]);
        assert_eq!(get(&url, "/", None).unwrap().body.len(), 4000);
        // Each chunk small, the total over 1 MiB.
        let (url, _) = serve_once(vec![chunked(1100, 1024)]);
        let err = get(&url, "/", None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_long_body_is_refused() {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .into_bytes();
        answer.extend(std::iter::repeat_n(b'a', MAX_BODY as usize + 1));
        let (url, _) = serve_once(vec![answer]);
        assert_eq!(
            get(&url, "/", None).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    const SSE_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

    #[test]
    fn events_parse_across_reads_and_line_endings() {
        let (url, _) = serve_once(vec![
            SSE_HEAD.to_vec(),
            b": keep-alive\r\n\r\nevent: other\ndata: 1\n\n".to_vec(),
            // CRLF endings, and a UTF-8 character split across two reads.
            b"event: state\r\ndata: {\"state\":\"pr\xc3".to_vec(),
            b"\xa9sent\"}\r\n\r\n".to_vec(),
            // CR alone ends lines too.
            b"event: state\rdata: {\"state\":\"absent\"}\r\r".to_vec(),
            // eventsource-stream 0.2.3 holds a CR until it sees the next byte
            // (it could start CRLF), so something must follow the last one.
            b": more\n\n".to_vec(),
        ]);
        let mut events = Events::open(&url).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(events.next_state(t).unwrap()["state"], "pr\u{e9}sent");
        assert_eq!(events.next_state(t).unwrap()["state"], "absent");
        let quiet = events.next_state(Duration::from_millis(100)).unwrap_err();
        assert_eq!(quiet.kind(), io::ErrorKind::TimedOut, "{quiet}");
    }

    #[test]
    fn an_endless_event_is_refused_at_the_cap() {
        let filler = vec![b'x'; 8 << 10];
        let mut parts = vec![SSE_HEAD.to_vec(), b"event: state\ndata: ".to_vec()];
        parts.extend(std::iter::repeat_n(filler, 10));
        let (url, _) = serve_once(parts);
        let mut events = Events::open(&url).unwrap();
        let err = events.next_state(Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_refused_stream_names_its_status() {
        let (url, _) = serve_once(vec![
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ]);
        let err = Events::open(&url).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }

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
