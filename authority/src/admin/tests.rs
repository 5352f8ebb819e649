//! The admin page over real HTTP on loopback: headers, the Host/Origin
//! check, read-only methods, and no secret in any byte it serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Admin, CSP, serve};
use crate::authority::tests::{authority, session};
use crate::authority::{Authority, TokenRequest};

struct Rig {
    auth: Arc<Authority>,
    secret: String,
    addr: SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn rig(names: &[&str]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (auth, secret) = authority(dir.path());
    let auth = Arc::new(auth);
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let admin = Admin::new(auth.clone(), addr, &names, stop.clone());
    tokio::spawn(serve(admin, listener));
    Rig {
        auth,
        secret,
        addr,
        stop,
        _dir: dir,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `method path` with exactly `headers` (give the Host yourself), read whole.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[String]) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\nContent-Length: 0\r\n\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    Answer {
        status: head[9..12].parse().unwrap(),
        head,
        body: buf[split + 4..].to_vec(),
    }
}

/// The head of a `/admin/events` answer (the stream itself never ends).
async fn stream_head(addr: SocketAddr, headers: &[String]) -> String {
    let mut req = "GET /admin/events HTTP/1.1\r\n".to_string();
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        if line == "\r\n" || line.is_empty() {
            return head;
        }
        head.push_str(&line);
    }
}

fn host(addr: SocketAddr) -> String {
    format!("Host: {addr}")
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[host(addr)]).await
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let r = rig(&[]).await;
    for path in [
        "/admin",
        "/admin/status.json",
        "/admin/admin.js",
        "/admin/admin.css",
        "/admin/favicon.svg",
        "/nowhere",
    ] {
        let a = get(r.addr, path).await;
        assert_eq!(
            a.status,
            if path == "/nowhere" { 404 } else { 200 },
            "{path}"
        );
        assert_eq!(a.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    }
    let page = get(r.addr, "/admin").await;
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(html.contains("<script src=\"/admin/admin.js\" defer></script>"));
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("<style"), "no inline style");
    assert!(!html.contains("style="), "no style attribute");
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("UTC"));
    let js = get(r.addr, "/admin/admin.js").await;
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(!js.text().contains("eval(") && !js.text().contains("innerHTML"));
    // HEAD is served (no body), the refusals carry the headers too.
    let head = request(r.addr, "HEAD", "/admin", &[host(r.addr)]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let refused = request(r.addr, "GET", "/admin", &["Host: evil.example".into()]).await;
    assert_eq!(refused.header("x-frame-options"), Some("DENY"));
    r.stop.cancel();
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let r = rig(&["admin.example", "tunnel:9000"]).await;
    let port = r.addr.port();
    for ok in [
        format!("Host: 127.0.0.1:{port}"),
        format!("Host: localhost:{port}"),
        format!("Host: LOCALHOST:{port}"),
        format!("Host: [::1]:{port}"),
        "Host: admin.example".to_string(),
        format!("Host: admin.example:{port}"),
        "Host: tunnel:9000".to_string(),
    ] {
        let a = request(
            r.addr,
            "GET",
            "/admin/status.json",
            std::slice::from_ref(&ok),
        )
        .await;
        assert_eq!(a.status, 200, "{ok}");
    }
    for bad in [
        "Host: evil.example".to_string(),
        format!("Host: evil.example:{port}"),
        "Host: 127.0.0.1".to_string(),
        "Host: localhost:1".to_string(),
        "Host: tunnel".to_string(),
        // A DNS-rebinding page: its own name, pointing at 127.0.0.1.
        format!("Host: rebind.attacker.example:{port}"),
    ] {
        let a = request(r.addr, "GET", "/admin", std::slice::from_ref(&bad)).await;
        assert_eq!(a.status, 403, "{bad}");
        assert!(!a.text().contains("customer"), "{bad}");
    }
    // No Host at all, or two.
    let a = request(r.addr, "GET", "/admin", &[]).await;
    assert_eq!(a.status, 403);
    let a = request(r.addr, "GET", "/admin", &[host(r.addr), host(r.addr)]).await;
    assert_eq!(a.status, 403);
    // Origin: ours passes, anyone else's (or "null", or https) is refused.
    let ours = format!("Origin: http://127.0.0.1:{port}");
    let a = request(
        r.addr,
        "GET",
        "/admin/status.json",
        &[host(r.addr), ours.clone()],
    )
    .await;
    assert_eq!(a.status, 200);
    let head = stream_head(r.addr, &[host(r.addr), ours]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    for origin in [
        "Origin: http://evil.example".to_string(),
        format!("Origin: http://evil.example:{port}"),
        "Origin: null".to_string(),
        format!("Origin: https://127.0.0.1:{port}"),
    ] {
        for path in ["/admin", "/admin/status.json", "/admin/events"] {
            let a = request(r.addr, "GET", path, &[host(r.addr), origin.clone()]).await;
            assert_eq!(a.status, 403, "{origin} {path}");
        }
    }
    r.stop.cancel();
}

#[tokio::test]
async fn only_get_and_head_are_served() {
    let r = rig(&[]).await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/admin", "/admin/status.json", "/admin/events"] {
            let a = request(r.addr, method, path, &[host(r.addr)]).await;
            assert_eq!(a.status, 405, "{method} {path}");
            assert_eq!(a.header("allow"), Some("GET, HEAD"));
            assert_eq!(a.header("content-security-policy"), Some(CSP));
        }
    }
    r.stop.cancel();
}

/// Enrol a service, issue tokens (one holding a lease): neither the
/// credential nor any part of a token is in a byte the admin serves.
#[tokio::test]
async fn no_secret_or_token_text_is_ever_served() {
    let r = rig(&[]).await;
    r.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    let plain = r.auth.issue(Some(&r.secret), None).unwrap().token;
    let leased = r
        .auth
        .issue_for(&TokenRequest {
            bearer: Some(&r.secret),
            instance: Some("web-1"),
            peer: Some("127.0.0.1:4000".parse().unwrap()),
            ..TokenRequest::default()
        })
        .unwrap()
        .token;
    assert!(r.auth.issue(Some("wrong"), None).is_err());
    // A revocation receipt waiting for the dongle (issue 17).
    let rev = tether_keys::Revocation::sign(
        r.auth.license().terms().id,
        1,
        tether_keys::UnixTime::now(),
        &tether_keys::testkeys::vendor(),
    );
    r.auth.ask_receipt(&rev, 1).unwrap();
    let mut needles = vec![r.secret.clone()];
    for token in [&plain, &leased] {
        needles.push(token.clone());
        needles.extend(token.split('.').map(str::to_string));
        let claims: tether_keys::TokenClaims = {
            use base64::Engine as _;
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        needles.push(claims.jti);
        needles.push(claims.dcert);
        needles.push(claims.lic);
    }
    // The secret's own halves, too (an id and a key, or however it is cut).
    for piece in r.secret.split(['.', '_', ':', '-']) {
        if piece.len() >= 12 {
            needles.push(piece.to_string());
        }
    }
    let mut served = Vec::new();
    for path in [
        "/admin",
        "/admin/status.json",
        "/admin/admin.js",
        "/admin/admin.css",
        "/admin/favicon.svg",
    ] {
        let a = get(r.addr, path).await;
        assert_eq!(a.status, 200, "{path}");
        served.push((path, a.head, a.body));
    }
    // The page does show what it should.
    let html = String::from_utf8_lossy(&served[0].2).into_owned();
    assert!(html.contains("web-1"), "the lease is listed");
    assert!(html.contains("backend"));
    let json: serde_json::Value = serde_json::from_slice(&served[1].2).unwrap();
    assert_eq!(json["dongle"]["state"], "present");
    assert_eq!(json["tokens"][0]["service"], "backend");
    assert_eq!(json["tokens"][0]["issued"], 2);
    let id = r.auth.license().terms().id.to_string();
    assert_eq!(json["license"]["receipts"][0]["state"], "pending");
    assert_eq!(
        json["license"]["receipts"][0]["file"],
        format!("receipts/{id}.pending")
    );
    assert_eq!(json["license"]["site_request_text"], "none");
    assert!(html.contains("receipts-body") && html.contains(&format!("receipts/{id}.pending")));
    for (path, head, body) in &served {
        let hay = String::from_utf8_lossy(body);
        for needle in &needles {
            assert!(
                !hay.contains(needle.as_str()) && !head.contains(needle.as_str()),
                "{path} contains secret text {needle:?}"
            );
        }
    }
    r.stop.cancel();
}

/// The event stream says "absent" the moment the session goes.
#[tokio::test]
async fn the_event_stream_follows_presence() {
    let r = rig(&[]).await;
    r.auth
        .set_present(session(tether_keys::UnixTime::now().secs() - 30), 1);
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("GET /admin/events HTTP/1.1\r\n{}\r\n\r\n", host(r.addr)).as_bytes())
        .await
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut next_state = async || -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "stream ended");
            if let Some(data) = line.strip_prefix("data:") {
                let v: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                return v["state"].as_str().unwrap().to_string();
            }
        }
    };
    assert_eq!(next_state().await, "present");
    r.auth.set_absent("unplugged");
    assert_eq!(next_state().await, "absent");
    // The timeline has both, and the page lists them.
    let html = get(r.addr, "/admin").await.text();
    assert!(html.contains("unplugged"));
    r.stop.cancel();
}
