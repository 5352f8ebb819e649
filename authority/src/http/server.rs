//! The accept loop: serves the routes on one listener with hyper, and
//! treats connection errors as what they nearly always are, a peer's doing.
//!
//! `warp::serve` logs every failed connection at ERROR (target
//! `warp::server::run`, "server connection error: hyper::Error(
//! IncompleteMessage)"), so any client that closes mid-request, or a port
//! scan, can flood the log. This loop is warp's own (hyper-util's `auto`
//! connection builder, graceful shutdown) with that one difference: each
//! such error is counted in `tether_http_connection_errors_total{kind}` and
//! logged at debug, at most [`LOG_BURST`] lines and then one a second, with
//! the number of lines left out.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::Listener;
use crate::metrics::{ConnError, Metrics};

/// Connection-error log lines let through at once before the limit of one a
/// second applies.
pub const LOG_BURST: u32 = 5;

/// How connection errors reach the log: counted always, logged rate-limited.
#[derive(Debug)]
pub struct ConnLog {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl Default for ConnLog {
    fn default() -> Self {
        let burst = NonZeroU32::new(LOG_BURST).unwrap_or(NonZeroU32::MIN);
        ConnLog {
            limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::MIN).allow_burst(burst)),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl ConnLog {
    /// Counts `err` in `metrics` and logs it at debug if the rate allows;
    /// returns its kind and whether it was logged.
    pub fn report(
        &self,
        metrics: &Metrics,
        err: &(dyn std::error::Error + 'static),
    ) -> (ConnError, bool) {
        let kind = classify(err);
        let total = metrics.connection_error(kind);
        if self.limiter.check().is_ok() {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::debug!(
                kind = ?kind,
                total,
                suppressed,
                error = %err,
                "http connection ended in an error (a peer closing mid-request, most likely)"
            );
            (kind, true)
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            (kind, false)
        }
    }
}

/// The kind of a connection error, for its metric label.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> ConnError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return ConnError::incomplete_message;
            }
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return ConnError::parse;
            }
            if h.is_timeout() {
                return ConnError::timeout;
            }
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return ConnError::io;
        }
        cause = e.source();
    }
    ConnError::other
}

/// Serves `routes` on `listener` until `stop` is cancelled; then stops
/// accepting and waits for open connections to finish (event streams end
/// on the same signal).
pub async fn serve<F>(
    routes: F,
    listener: Listener,
    metrics: Arc<ConnMetrics>,
    stop: CancellationToken,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok(Some(io)) => spawn_conn(io, routes.clone(), &graceful, metrics.clone()),
            Ok(None) => {}
            Err(e) => {
                // Out of file descriptors, most likely: our problem, worth a
                // warning, and a pause instead of a busy loop.
                if metrics.log.limiter.check().is_ok() {
                    tracing::warn!(error = %e, "cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The metrics and the log limiter every connection reports to.
#[derive(Debug)]
pub struct ConnMetrics {
    /// Where counts go.
    pub auth: Arc<crate::Authority>,
    /// The log limiter.
    pub log: ConnLog,
}

enum Io {
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
    Unix(tokio::net::UnixStream),
}

tokio::task_local! {
    /// The TCP peer of the connection being served, for the requests an
    /// HTTP/1.1 connection's task serves inline (`None` on a Unix socket).
    static PEER: Option<std::net::SocketAddr>;
}

/// The peer address of the request being handled, when known (HTTP/1.1 over
/// TCP): shown with the lease it renews in `/status`.
pub fn current_peer() -> Option<std::net::SocketAddr> {
    PEER.try_with(|p| *p).ok().flatten()
}

/// One accepted connection; `Ok(None)` for a connection the peer already
/// reset (nothing to serve, nothing to log).
async fn accept(listener: &Listener) -> std::io::Result<Option<Io>> {
    let res = match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, peer)| Io::Tcp(s, peer)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Io::Unix(s)),
    };
    match res {
        Ok(io) => Ok(Some(io)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn spawn_conn<F>(io: Io, routes: F, graceful: &GracefulShutdown, metrics: Arc<ConnMetrics>)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    match io {
        Io::Tcp(s, peer) => {
            // Answers and events are small single writes: send each at once
            // rather than waiting on the peer's delayed ACK (Nagle).
            let _ = s.set_nodelay(true);
            spawn_io(s, Some(peer), routes, graceful, metrics)
        }
        Io::Unix(s) => spawn_io(s, None, routes, graceful, metrics),
    }
}

fn spawn_io<I, F>(
    io: I,
    peer: Option<std::net::SocketAddr>,
    routes: F,
    graceful: &GracefulShutdown,
    metrics: Arc<ConnMetrics>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let svc = TowerToHyperService::new(warp::service(routes));
    let watcher = graceful.watcher();
    tokio::spawn(PEER.scope(peer, async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(io), svc);
        if let Err(err) = watcher.watch(conn).await {
            metrics.log.report(&metrics.auth.metrics, &*err);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_io_and_unknown_ones_other() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&io), ConnError::io);
        let other = std::fmt::Error;
        assert_eq!(classify(&other), ConnError::other);
    }

    #[test]
    fn the_log_is_rate_limited_but_every_error_counted() {
        let metrics = Metrics::default();
        let log = ConnLog::default();
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let logged = (0..100).filter(|_| log.report(&metrics, &io).1).count();
        assert_eq!(logged, LOG_BURST as usize);
        assert!(
            metrics
                .render(false, &[])
                .contains("tether_http_connection_errors_total{kind=\"io\"} 100\n")
        );
    }
}
