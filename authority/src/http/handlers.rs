//! Request handlers. Each returns a complete response; errors are JSON
//! `{code, message}` ([`ErrorBody`](super::models::ErrorBody)) with the
//! status of their [`RefusalCode`] and, for 503/429, `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::auth;
use super::models::{
    LeaseInfo, LeaseQuery, LicenseSummary, Refusal, RefusalCode, SeatUsage, StatusBody, TokenQuery,
};
use super::streams::StreamPlaces;
use crate::authority::Authority;

/// The JSON error response of `refusal`.
pub fn error(refusal: &Refusal) -> Response {
    let status =
        StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp =
        warp::reply::with_status(warp::reply::json(&refusal.body()), status).into_response();
    if let Some(secs) = refusal.retry_after_secs() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if refusal.kind() == RefusalCode::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// How long `GET /token` waits for the certificate that will hold a new
/// instance's nonce before answering 503 `awaiting_certificate`.
const AWAIT_CERTIFICATE: std::time::Duration = std::time::Duration::from_secs(3);

/// `GET /token`.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn token(
    auth: Arc<Authority>,
    headers: HeaderMap,
    query: TokenQuery,
) -> Result<Response, Infallible> {
    let issued = match auth::bearer(&headers) {
        Ok(bearer) => {
            let request = crate::authority::TokenRequest {
                bearer,
                nonce: query.nonce.as_deref(),
                instance: query.instance.as_deref(),
                peer: super::server::current_peer(),
                retry: false,
            };
            // Subscribed first, so a certificate installed meanwhile is seen.
            let mut certified = auth.freshness.subscribe();
            match auth.issue_for(&request) {
                // The nonce goes into the next certificate (freshness), asked
                // for within a fraction of a second: wait for it here rather
                // than send the consumer away and back.
                Err(r) if r.kind() == RefusalCode::AwaitingCertificate => {
                    match tokio::time::timeout(AWAIT_CERTIFICATE, certified.changed()).await {
                        Ok(Ok(())) => auth.issue_for(&crate::authority::TokenRequest {
                            retry: true,
                            ..request
                        }),
                        _ => Err(r),
                    }
                }
                other => other,
            }
        }
        Err(refused) => {
            auth.metrics.refused(refused.kind());
            Err(refused)
        }
    };
    // The usage ledger's rule: no token leaves before its count is durable
    // (group commit, `authority/src/ledger`).
    let issued = match (issued, auth.ledger.get()) {
        (Ok(body), Some(ledger)) => match ledger.durable().await {
            Ok(()) => Ok(body),
            Err(e) => {
                if let Some(service) = auth::bearer(&headers)
                    .ok()
                    .flatten()
                    .and_then(|b| auth.authenticate(b))
                {
                    ledger.uncount(service, auth.now());
                    ledger.refusal(service, RefusalCode::Internal.as_str(), auth.now());
                }
                Err(Refusal::new(RefusalCode::Internal, e.to_string()))
            }
        },
        (other, _) => other,
    };
    Ok(match issued {
        Ok(body) => {
            let mut resp = warp::reply::json(&body).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(refused) => error(&refused),
    })
}

/// `GET /events`: the current state at once, then every change, until
/// shutdown. Anonymous, or with an enrolled service's Bearer credential for
/// a place of its own ([`super::streams`]); 503 `too_many_streams` when the
/// class is full, 401 for a credential that is presented but not enrolled.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn events(
    auth: Arc<Authority>,
    headers: HeaderMap,
    shutdown: CancellationToken,
    places: Arc<StreamPlaces>,
) -> Result<Response, Infallible> {
    let service = match auth::bearer(&headers) {
        Ok(None) => None,
        Ok(Some(presented)) => match auth.authenticate(presented) {
            Some(service) => Some(service),
            None => {
                return Ok(error(&Refusal::new(
                    RefusalCode::Unauthorized,
                    "unknown service credential",
                )));
            }
        },
        Err(refused) => return Ok(error(&refused)),
    };
    let place = match places.take(service, &auth.metrics) {
        Ok(place) => place,
        Err(refused) => return Ok(error(&refused)),
    };
    let rx = auth.subscribe();
    let changes = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let ev = rx.borrow_and_update().clone();
        Some((ev, (rx, false)))
    });
    // License installs (`tether license install`): their verdicts, as
    // `event: license` (consumers that know only `state` skip them).
    let installs =
        futures_util::stream::unfold(auth.license_events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(verdict) => return Some((verdict, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .map(|verdict| Event::default().event("license").json_data(verdict));
    // Expiry notices (`license::expiry`): the latest at once, then each new one.
    // Signed revocation receipts (`receipts/`), as `event: receipt`.
    let receipts =
        futures_util::stream::unfold(auth.receipt_events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .map(|ev| Event::default().event("receipt").json_data(ev));
    let expiry = futures_util::stream::unfold(
        (auth.expiry_events.subscribe(), true),
        |(mut rx, mut first)| async move {
            loop {
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                first = false;
                let latest = rx.borrow_and_update().clone();
                if let Some(ev) = latest {
                    return Some((ev, (rx, false)));
                }
            }
        },
    )
    .map(|ev| Event::default().event("expiry").json_data(ev));
    let states = changes.map(|ev| Event::default().event("state").json_data(ev));
    // The place is held as long as the stream.
    let stream = futures_util::stream::select(states, installs);
    let stream = futures_util::stream::select(stream, receipts);
    let stream = futures_util::stream::select(stream, expiry)
        .map(move |ev| {
            let _held = &place;
            ev
        })
        .take_until(shutdown.cancelled_owned());
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}

/// `GET /healthz`.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn healthz() -> Result<Response, Infallible> {
    Ok(warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
}

/// `GET /readyz`: 200 when a token would be issued now, else 503 with the
/// refusal `/token` would give (its own code, whatever its usual status:
/// for a load balancer every "no" is "not ready").
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn readyz(auth: Arc<Authority>) -> Result<Response, Infallible> {
    Ok(match auth.ready() {
        Ok(()) => warp::reply::json(&serde_json::json!({"status": "ready"})).into_response(),
        Err(refused) => {
            let mut resp = error(&refused);
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    })
}

/// `GET /status`.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn status(auth: Arc<Authority>) -> Result<Response, Infallible> {
    let lic = auth.license();
    let t = lic.terms();
    let not_ready = auth.ready().err().map(|r| r.body());
    let now = auth.now();
    let seats = auth
        .leases
        .usage(now)
        .into_iter()
        .map(|(service, in_use, seats)| SeatUsage {
            service,
            in_use: in_use as u64,
            seats,
        })
        .collect();
    let leases = auth
        .leases
        .rows(now)
        .into_iter()
        .map(|r| LeaseInfo {
            service: r.service,
            instance: r.instance,
            since: r.lease.since,
            expires: r.lease.expires,
            peer: r.lease.peer.map(|p| p.to_string()),
        })
        .collect();
    let (receipts, site_request) = crate::receipts::overview(&auth);
    let body = StatusBody {
        dongle: auth.status(),
        license: LicenseSummary {
            id: t.id.to_string(),
            customer: t.customer.clone(),
            dongle_serial: t.dongle_serial.clone(),
            not_before: t.not_before,
            not_after: t.not_after,
            features: t.features.clone(),
            services: t.services.clone(),
            seats: t.seats.clone(),
            sequence: t.sequence,
            max_token_ttl: t.max_token_ttl,
            expires_in_secs: t.not_after.saturating_duration_since(now).as_secs(),
            revoked: auth.is_revoked(),
            grace_secs: t.grace,
            grace_until: t.grace_until(),
            window: crate::license::expiry::window(t, now).as_str().to_string(),
            not_after_text: crate::state::rfc3339(t.not_after).to_string(),
            grace_until_text: crate::state::rfc3339(t.grace_until()).to_string(),
            receipts,
            site_request,
        },
        tokens_issued: auth.metrics.issued_total(),
        now: auth.now(),
        ready: not_ready.is_none(),
        not_ready,
        seats,
        leases,
    };
    Ok(warp::reply::json(&body).into_response())
}

/// `DELETE /lease?instance=ID`: releases the instance's seat at once
/// (204), with the service's own credential.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn release_lease(
    auth: Arc<Authority>,
    headers: HeaderMap,
    query: LeaseQuery,
) -> Result<Response, Infallible> {
    let released =
        auth::bearer(&headers).and_then(|b| auth.release_lease(b, &query.instance, &query.jti));
    Ok(match released {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => error(&refused),
    })
}

/// `GET /metrics`.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn metrics(auth: Arc<Authority>) -> Result<Response, Infallible> {
    let seats = auth.leases.usage(auth.now());
    let lic = auth.license();
    auth.metrics.license_window(
        lic.terms().not_after.secs(),
        lic.terms().grace_until().secs(),
    );
    let text = auth.metrics.render(auth.is_present(), &seats);
    Ok(
        warp::reply::with_header(text, header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
            .into_response(),
    )
}

/// Maps every rejection to JSON `{code, message}`; internals never leak.
///
/// # Errors
///
/// Never: every outcome, refusals included, is a response (`Infallible`
/// is what warp's `and_then` asks for).
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    Ok(if rejection.is_not_found() {
        error(&Refusal::new(RefusalCode::NotFound, "no such endpoint"))
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        let mut resp = error(&Refusal::new(
            RefusalCode::MethodNotAllowed,
            "only GET is served",
        ));
        // RFC 9110 section 15.5.6: a 405 lists the methods that are served.
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        resp
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        error(&Refusal::new(
            RefusalCode::BadRequest,
            "invalid query string",
        ))
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        error(&Refusal::new(RefusalCode::BadRequest, "invalid header"))
    } else {
        error(&Refusal::new(
            RefusalCode::BadRequest,
            "request not understood",
        ))
    })
}
