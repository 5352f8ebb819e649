//! The native half of the `tether_verifier` Python package (PyO3, abi3):
//! thin classes over the same safe core as the C library
//! (`verifier/c/src/shared.rs`, compiled here too), so C and Python share
//! one set of reason codes. The Python half (`python/tether_verifier`) turns
//! the codes into exception classes and the JSON into `Claims`.
//!
//! Errors cross as `ValueError((code, message))`, codes as in
//! `docs/bindings.md`; the Python half re-raises them as `TetherError`
//! subclasses. Every method that may wait (a watch's start and stop)
//! releases the GIL.

use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

#[path = "../../c/src/shared.rs"]
#[allow(dead_code, unreachable_pub)]
mod shared;

use shared::{TetherLicenseState, TetherStatus, TetherVerifier, TetherWatch};

fn err((status, message): (TetherStatus, String)) -> PyErr {
    PyValueError::new_err((status.name(), message))
}

/// A verifier: one trusted vendor key and what a service expects of its
/// tokens. Thread-safe; `verify` does not release the GIL (it takes
/// microseconds once the chain is cached).
#[pyclass(frozen, module = "tether_verifier._native")]
struct Verifier {
    inner: TetherVerifier,
}

#[pymethods]
impl Verifier {
    /// `vendor_pub_pem`: the vendor public key as PEM text. `leeway`: clock
    /// leeway in seconds. `refuse_grace`: refuse tokens issued in the
    /// license's grace period (`Expectations::refuse_grace`).
    #[new]
    #[pyo3(signature = (vendor_pub_pem, service, features, leeway, instance=None, refuse_grace=false))]
    fn new(
        vendor_pub_pem: &str,
        service: &str,
        features: Vec<String>,
        leeway: u64,
        instance: Option<&str>,
        refuse_grace: bool,
    ) -> PyResult<Self> {
        let mut inner =
            TetherVerifier::from_pem(vendor_pub_pem, service, &features, leeway, instance)
                .map_err(err)?;
        if refuse_grace {
            inner.refuse_grace();
        }
        Ok(Verifier { inner })
    }

    /// `("ok", claims_json)` or `(reason_code, message)`. `now`: UNIX
    /// seconds, `None` for the system clock.
    #[pyo3(signature = (token, nonce=None, now=None))]
    fn verify(&self, token: &str, nonce: Option<&str>, now: Option<u64>) -> (&'static str, String) {
        match self.inner.verify(token, nonce, now) {
            Ok(json) => (TetherStatus::Ok.name(), json),
            Err((status, message)) => (status.name(), message),
        }
    }

    /// As `verify`, but the token's nonce must be one of `accepted` (the
    /// nonces this consumer drew): `Verifier::verify_fresh`.
    #[pyo3(signature = (token, accepted, now=None))]
    fn verify_fresh(
        &self,
        token: &str,
        accepted: Vec<String>,
        now: Option<u64>,
    ) -> (&'static str, String) {
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        match self.inner.verify_fresh(token, &accepted, now) {
            Ok(json) => (TetherStatus::Ok.name(), json),
            Err((status, message)) => (status.name(), message),
        }
    }
}

/// The refresher: keeps a service licensed from its own thread.
#[pyclass(frozen, module = "tether_verifier._native")]
struct Watch {
    inner: Mutex<Option<TetherWatch>>,
}

impl Watch {
    fn with<T>(&self, f: impl FnOnce(&TetherWatch) -> T, stopped: T) -> T {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(stopped, f)
    }
}

#[pymethods]
impl Watch {
    /// Starts fetching tokens from `url` with the secret in `secret_file`,
    /// verified by `verifier`.
    #[new]
    fn new(py: Python<'_>, url: &str, secret_file: &str, verifier: &Verifier) -> PyResult<Self> {
        let inner = &verifier.inner;
        let watch = py
            .allow_threads(|| shared::start_watch(url, secret_file, inner))
            .map_err(err)?;
        Ok(Watch {
            inner: Mutex::new(Some(watch)),
        })
    }

    /// Whether a token that has not run out is held, now.
    fn is_licensed(&self) -> bool {
        self.with(TetherWatch::is_licensed, false)
    }

    /// `(licensed, reason)`; the reason is `"licensed"` when licensed.
    fn state(&self) -> (bool, String) {
        self.with(
            |w| {
                let (state, reason) = w.state();
                (state == TetherLicenseState::Licensed, reason)
            },
            (false, "stopped".into()),
        )
    }

    /// The held token's claims as JSON, or `None`.
    fn claims_json(&self) -> Option<String> {
        self.with(TetherWatch::claims_json, None)
    }

    /// The instance id tokens are fetched for.
    fn instance(&self) -> String {
        self.with(|w| w.instance().to_string(), String::new())
    }

    /// Stops the refresher and gives the seat back (at most about 2 s).
    /// Idempotent.
    fn stop(&self, py: Python<'_>) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        py.allow_threads(move || drop(taken));
    }
}

/// Reason codes and their numbers (the C library's `TetherStatus`).
fn status_codes() -> Vec<(&'static str, i32)> {
    TetherStatus::ALL
        .iter()
        .map(|s| (s.name(), *s as i32))
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Verifier>()?;
    m.add_class::<Watch>()?;
    m.add("STATUS_CODES", status_codes())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
