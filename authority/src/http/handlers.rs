//! Request handlers. Each returns a complete response; errors are JSON
//! `{code, message}` with the right status and, for 503/429, `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt as _;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::models::{ErrorBody, LicenseSummary, Status, TokenQuery};
use crate::authority::Authority;
use crate::metrics::Refusal;

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp =
        warp::reply::with_status(warp::reply::json(&ErrorBody { code, message }), status)
            .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn status_of(why: Refusal) -> StatusCode {
    match why {
        Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
        Refusal::ServiceNotLicensed | Refusal::LicenseNotValid => StatusCode::FORBIDDEN,
        Refusal::DongleAbsent | Refusal::ClockRollback => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Refusal::BadRequest => StatusCode::BAD_REQUEST,
    }
}

/// `GET /token`.
pub async fn token(
    auth: Arc<Authority>,
    authorization: Option<String>,
    query: TokenQuery,
) -> Result<Response, Infallible> {
    let bearer = authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    Ok(match auth.issue(bearer, query.nonce.as_deref()) {
        Ok(body) => {
            let mut resp = warp::reply::json(&body).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(refused) => {
            let mut resp = error(status_of(refused.why), refused.why.code(), &refused.message);
            if refused.why == Refusal::Unauthorized {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    })
}

/// Most `/events` streams open at once; each is held until its client goes,
/// so without a cap any client on the network could pile them up.
pub const MAX_EVENT_STREAMS: usize = 256;

/// `GET /events`: the current state at once, then every change, until
/// shutdown; 503 `too_many_streams` beyond [`MAX_EVENT_STREAMS`].
pub async fn events(
    auth: Arc<Authority>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    streams: Arc<tokio::sync::Semaphore>,
) -> Result<Response, Infallible> {
    let Ok(permit) = streams.try_acquire_owned() else {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "too many event streams open; retry later",
        ));
    };
    let rx = auth.subscribe();
    let changes = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let ev = rx.borrow_and_update().clone();
        Some((ev, (rx, false)))
    });
    let mut shutdown = shutdown;
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    // The permit lives as long as the stream.
    let stream = changes
        .map(move |ev| {
            let _held = &permit;
            Event::default().event("state").json_data(ev)
        })
        .take_until(stop);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}

/// `GET /healthz`.
pub async fn healthz() -> Result<Response, Infallible> {
    Ok(warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
}

/// `GET /readyz`.
pub async fn readyz(auth: Arc<Authority>) -> Result<Response, Infallible> {
    Ok(if auth.is_present() {
        warp::reply::json(&serde_json::json!({"status": "ready"})).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "dongle_absent",
            &auth.status().reason,
        )
    })
}

/// `GET /status`.
pub async fn status(auth: Arc<Authority>) -> Result<Response, Infallible> {
    let t = auth.license().terms();
    let body = Status {
        dongle: auth.status(),
        license: LicenseSummary {
            id: t.id.to_string(),
            customer: t.customer.clone(),
            dongle_serial: t.dongle_serial.clone(),
            not_before: t.not_before,
            not_after: t.not_after,
            features: t.features.clone(),
            services: t.services.clone(),
            max_token_ttl: t.max_token_ttl,
        },
        tokens_issued: auth.metrics.issued_total(),
        now: tether_keys::now_unix(),
    };
    Ok(warp::reply::json(&body).into_response())
}

/// `GET /metrics`.
pub async fn metrics(auth: Arc<Authority>) -> Result<Response, Infallible> {
    let text = auth.metrics.render(auth.is_present());
    Ok(
        warp::reply::with_header(text, header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .into_response(),
    )
}

/// Maps every rejection to JSON `{code, message}`; internals never leak.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    Ok(if rejection.is_not_found() {
        error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is served",
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid query string",
        )
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        error(StatusCode::BAD_REQUEST, "bad_request", "invalid header")
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "request not understood",
        )
    })
}
