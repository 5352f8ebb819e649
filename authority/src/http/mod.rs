//! The HTTP API (warp): `filters` route requests, `handlers` answer them,
//! `models` are the JSON shapes. One `recover` turns every rejection into a
//! JSON `{code, message}` that never leaks internals.
//!
//! | route | answer |
//! |---|---|
//! | `GET /token` | a license token for the bearer's service (`docs/api.md`) |
//! | `GET /events` | server-sent events of the license state |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while a verified dongle is present, else 503 |
//! | `GET /status` | JSON: dongle, session, license, counts |
//! | `GET /metrics` | Prometheus text |

pub mod filters;
pub mod handlers;
pub mod models;
