//! The read-only admin page for the site operator, on a listener of its own
//! (`--admin-listen`, `127.0.0.1:7444` by default, `off` to disable), never
//! the services' one: the services' network has no business reading it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /admin` | the page, rendered here ([`page`]) |
//! | `GET /admin/status.json` | what the page shows, as JSON ([`page::View`]) |
//! | `GET /admin/events` | server-sent `presence` events: the current one, then each change |
//! | `GET /admin/admin.js`, `/admin/admin.css`, `/admin/favicon.svg` | the assets, compiled into the binary |
//!
//! Read-only by construction: only GET and HEAD (anything else 405), no
//! form, nothing that changes state. Every answer carries a strict
//! Content-Security-Policy (no inline script or style, no eval, nothing from
//! elsewhere), `X-Frame-Options: DENY`, `nosniff` and `no-referrer`. The
//! `Host` must be the listener's own address, localhost / 127.0.0.1 / `[::1]`
//! with its port, or a name given by `--admin-host`, and a present `Origin`
//! must name the same: a DNS-rebinding page or another site's script gets
//! 403. Nothing secret is rendered: the view holds no credential, token or
//! certificate bytes.

pub mod page;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use warp::Filter as _;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply as _, Response};
use warp::sse::Event;

use crate::authority::Authority;

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// Event streams open at once on the admin listener (one per open page).
pub const MAX_STREAMS: usize = 16;
/// Presence events the timeline keeps for a page opened later.
pub const TIMELINE_KEPT: usize = 50;

const JS: &str = include_str!("assets/admin.js");
const CSS: &str = include_str!("assets/admin.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// The admin page's state: the authority it reads, the hosts it answers
/// to, the timeline so far.
#[derive(Debug)]
pub struct Admin {
    auth: Arc<Authority>,
    /// Acceptable `Host` values (lowercase, with port where one is needed).
    hosts: Vec<String>,
    timeline: Mutex<VecDeque<page::EventView>>,
    streams: AtomicUsize,
    stop: CancellationToken,
}

impl Admin {
    /// The page of `auth` served on `local`, also answering to `names`
    /// (`--admin-host`: a name alone also matches with the listener's
    /// port). Event streams end when `stop` is cancelled.
    pub fn new(
        auth: Arc<Authority>,
        local: SocketAddr,
        names: &[String],
        stop: CancellationToken,
    ) -> Arc<Admin> {
        let port = local.port();
        let mut hosts = vec![
            local.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        for name in names {
            let name = name.to_ascii_lowercase();
            // "name" or "[v6]" alone: also with the port; "name:port" as given.
            if !name.contains(':') || name.ends_with(']') {
                hosts.push(format!("{name}:{port}"));
            }
            hosts.push(name);
        }
        hosts.sort();
        hosts.dedup();
        Arc::new(Admin {
            auth,
            hosts,
            timeline: Mutex::new(VecDeque::new()),
            streams: AtomicUsize::new(0),
            stop,
        })
    }

    /// The `Host` values answered to.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether a request with `headers` may be answered: exactly one `Host`,
    /// one of ours, and an `Origin`, when present, of the same.
    pub fn request_allowed(&self, headers: &HeaderMap) -> bool {
        let mut hosts = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return false;
        };
        if !host.to_str().is_ok_and(|h| self.host_allowed(h)) {
            return false;
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => true,
            (Some(origin), None) => origin.to_str().is_ok_and(|o| {
                o.get(..7)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
                    && self.host_allowed(&o[7..])
            }),
            (Some(_), Some(_)) => false,
        }
    }

    fn record(&self, ev: page::EventView) {
        let mut t = self.timeline.lock();
        if t.back()
            .is_some_and(|last| last.state == ev.state && last.since == ev.since)
        {
            return;
        }
        if t.len() == TIMELINE_KEPT {
            t.pop_front();
        }
        t.push_back(ev);
    }

    /// The timeline so far, oldest first.
    pub fn timeline(&self) -> Vec<page::EventView> {
        self.timeline.lock().iter().cloned().collect()
    }
}

/// Serves the admin page on `listener` until `stop` (the admin's) is
/// cancelled, then lets open requests finish; event streams end on it.
pub async fn serve(admin: Arc<Admin>, listener: tokio::net::TcpListener) {
    // The timeline: every presence event from now on.
    let recorder = {
        let admin = admin.clone();
        let mut rx = admin.auth.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = page::EventView::from(&*rx.borrow_and_update());
                admin.record(ev);
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    () = admin.stop.cancelled() => break,
                }
            }
        })
    };
    let conns = Arc::new(crate::http::server::ConnMetrics {
        auth: admin.auth.clone(),
        log: crate::http::server::ConnLog::default(),
    });
    let stop = admin.stop.clone();
    // Boxed like the API's routes, so both share one accept loop's code.
    let routes = warp::Filter::boxed(routes(admin));
    crate::http::server::serve(routes, crate::Listener::Tcp(listener), conns, stop).await;
    recorder.abort();
}

/// The one route: every request goes to [`answer`], which never rejects.
pub fn routes(
    admin: Arc<Admin>,
) -> impl warp::Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || admin.clone()))
        .and_then(
            |method: Method, path: warp::path::FullPath, headers: HeaderMap, admin: Arc<Admin>| async move {
                let mut resp = answer(&method, path.as_str(), &headers, &admin);
                harden(resp.headers_mut());
                Ok::<_, Infallible>(resp)
            },
        )
}

fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut resp = warp::reply::with_status(body, status).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn typed(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The answer to one request (before `harden`).
pub fn answer(method: &Method, path: &str, headers: &HeaderMap, admin: &Arc<Admin>) -> Response {
    if !admin.request_allowed(headers) {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: the admin page answers only to its own address, localhost, or an --admin-host name\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: the admin page is read-only\n",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/" => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/admin"));
            resp
        }
        "/admin" | "/admin/" => {
            let view = page::view(&admin.auth);
            warp::reply::html(page::render(&view, &admin.timeline())).into_response()
        }
        "/admin/status.json" => warp::reply::json(&page::view(&admin.auth)).into_response(),
        "/admin/events" => events(admin),
        "/admin/admin.js" => typed(JS, "text/javascript; charset=utf-8"),
        "/admin/admin.css" => typed(CSS, "text/css; charset=utf-8"),
        "/admin/favicon.svg" => typed(ICON, "image/svg+xml"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A place among the [`MAX_STREAMS`], given back when the stream ends.
#[derive(Debug)]
struct Place(Arc<Admin>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn events(admin: &Arc<Admin>) -> Response {
    if admin.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        admin.streams.fetch_sub(1, Ordering::Relaxed);
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many admin event streams open\n",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    }
    let place = Place(admin.clone());
    let rx = admin.auth.subscribe();
    let changes = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let ev = page::EventView::from(&*rx.borrow_and_update());
        Some((ev, (rx, false)))
    });
    let stream = changes
        .map(move |ev| {
            let _held = &place;
            Event::default().event("presence").json_data(ev)
        })
        .take_until(admin.stop.clone().cancelled_owned());
    warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
}

/// Binds the configured admin listener: `None` when it is off, or when the
/// default address cannot be bound (another tetherd on this host has it:
/// warned, not fatal; an address chosen by the operator is).
///
/// # Errors
///
/// When an address the operator chose cannot be bound.
pub async fn bind(config: &crate::Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = config.admin_listen else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            tracing::info!(addr = %l.local_addr()?, "admin page listening (GET /admin)");
            Ok(Some(l))
        }
        Err(e) if config.admin_listen_default => {
            tracing::warn!(%addr, error = %e, "admin page not served: cannot listen on its default address (set --admin-listen, or off)");
            Ok(None)
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("cannot listen on {addr} (admin-listen)")))
        }
    }
}

#[cfg(test)]
mod tests;
