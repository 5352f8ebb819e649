//! What a vendor's service links to stay licensed: offline verification of
//! Tether tokens down to the vendor root key ([`Verifier`]), and the
//! refresher that fetches, verifies and renews them, following the
//! authority's license events ([`LicenseWatch`], feature `refresh`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_verifier::{Expectations, LicenseWatch, Verifier, WatchConfig};
//! let (vendor, _) = tether_keys::keyfile::read_public_key(std::path::Path::new("vendor.pub"))?;
//! let verifier = Verifier::new(vendor, Expectations::new("muxer").require_features(["mux"]));
//! let secret = tether_keys::ServiceSecret::parse(&std::fs::read_to_string("muxer.secret")?)?;
//! let watch = LicenseWatch::spawn(WatchConfig::new("http://127.0.0.1:7443", "muxer", secret, verifier));
//! if watch.is_licensed() { /* do the work */ }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Every public fallible item says how it fails (issue 12).
#![deny(clippy::missing_errors_doc, clippy::missing_panics_doc)]

mod error;
#[cfg(feature = "refresh")]
pub mod refresh;
#[cfg(feature = "refresh")]
mod sse;
mod verify;

pub use error::{Error, Result};
#[cfg(feature = "refresh")]
pub use refresh::{
    InvalidInstance, LicenseState, LicenseWatch, RawToken, WatchConfig, WatchHealth, is_instance_id,
};
pub use verify::{Expectations, MAX_TOKEN_LEN, Verified, Verifier, instance_matches};
