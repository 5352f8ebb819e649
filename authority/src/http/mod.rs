//! The HTTP API (warp): `filters` route requests, `handlers` answer them,
//! `models` are the JSON shapes (the shared [`tether_keys::wire`] types),
//! `auth` reads the `Authorization` header, `streams` caps `/events`, and
//! `server` is the accept loop. One `recover` turns every rejection into a
//! JSON `{code, message}` that never leaks internals.
//!
//! | route | answer |
//! |---|---|
//! | `GET /token` | a license token for the bearer's service (`docs/api.md`) |
//! | `GET /events` | server-sent events of the license state |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when a token would be issued now, else 503 and why |
//! | `GET /status` | JSON: dongle, session, license, readiness, counts |
//! | `GET /metrics` | OpenMetrics text |

pub mod auth;
pub mod filters;
pub mod handlers;
pub mod models;
pub mod server;
pub mod streams;

#[cfg(test)]
mod tests;
