//! Routes. No route reads a request body, so none is parsed; every route is
//! GET only. Headers are read by the handlers (`super::auth`), so that a
//! malformed `Authorization` gets the same JSON refusal as a wrong one.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warp::Filter;

use super::handlers;
use super::models::{LeaseQuery, TokenQuery};
use super::streams::StreamPlaces;
use crate::authority::Authority;

/// All routes, with the JSON `recover`.
pub fn routes(
    auth: Arc<Authority>,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let with_auth = {
        let auth = auth.clone();
        warp::any().map(move || auth.clone())
    };
    let token = warp::path!("token")
        .and(warp::get())
        .and(with_auth.clone())
        .and(warp::header::headers_cloned())
        .and(warp::query::<TokenQuery>())
        .and_then(handlers::token);
    let lease = warp::path!("lease")
        .and(warp::delete())
        .and(with_auth.clone())
        .and(warp::header::headers_cloned())
        .and(warp::query::<LeaseQuery>())
        .and_then(handlers::release_lease);
    let places = Arc::new(StreamPlaces::new(auth.services()));
    let events = warp::path!("events")
        .and(warp::get())
        .and(with_auth.clone())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || shutdown.clone()))
        .and(warp::any().map(move || places.clone()))
        .and_then(handlers::events);
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and_then(handlers::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_auth.clone())
        .and_then(handlers::readyz);
    let status = warp::path!("status")
        .and(warp::get())
        .and(with_auth.clone())
        .and_then(handlers::status);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_auth)
        .and_then(handlers::metrics);
    token
        .or(lease)
        .unify()
        .or(events)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(status)
        .unify()
        .or(metrics)
        .unify()
        .recover(handlers::recover)
        .unify()
}
