//! A minimal blocking HTTP/1.1 client: `GET` with an optional bearer
//! credential, `Connection: close`, and a line reader for server-sent events.
//!
//! Enough for `tether health` (the container healthcheck: the runtime image
//! has no curl), `tether token`, the demo's status view and the end-to-end
//! tests. Plain HTTP only: tetherd serves loopback or a private network.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

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
    pub fn json(&self) -> std::io::Result<serde_json::Value> {
        serde_json::from_str(&self.body).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not JSON ({e})"))
        })
    }
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Larger answers are refused: nothing tetherd or a service sends comes close.
const MAX_BODY: usize = 1 << 20;

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

fn send(url: &str, path: &str, bearer: Option<&str>) -> std::io::Result<TcpStream> {
    if !url.starts_with("http://") {
        return Err(std::io::Error::other(format!(
            "{url}: only http:// URLs are supported"
        )));
    }
    let mut stream = TcpStream::connect(host_port(url))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        host_port(url)
    )?;
    Ok(stream)
}

/// `GET url+path`, optionally with a bearer credential.
pub fn get(url: &str, path: &str, bearer: Option<&str>) -> std::io::Result<Response> {
    let stream = send(url, path, bearer)?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let mut body = String::new();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n > MAX_BODY {
                return Err(std::io::Error::other("response too large"));
            }
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    } else {
        reader.take(MAX_BODY as u64).read_to_string(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

type Head = (u16, Vec<(String, String)>);

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Head> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// An open `GET /events` stream, read line by line.
#[derive(Debug)]
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// Opens `GET url/events`.
    pub fn open(url: &str) -> std::io::Result<Events> {
        let stream = send(url, "/events", None)?;
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader)?;
        if status != 200 {
            return Err(std::io::Error::other(format!("events: status {status}")));
        }
        Ok(Events { reader })
    }

    /// The next `state` event's data as JSON, waiting up to `timeout`.
    pub fn next_state(&mut self, timeout: Duration) -> std::io::Result<serde_json::Value> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let mut is_state = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line == "event:state" || line == "event: state" {
                is_state = true;
            } else if let Some(data) = line.strip_prefix("data:") {
                if is_state {
                    return serde_json::from_str(data.trim()).map_err(std::io::Error::other);
                }
            } else if line.is_empty() {
                is_state = false;
            }
        }
    }
}
