//! The license being served, and its replacement while tokens are issued.
//!
//! The active license sits behind an `ArcSwap` in [`Authority`]: each request
//! loads one version and uses it from start to end, so a replacement never
//! leaves a gap in issuance nor mixes two versions in one token.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tether_keys::License;

use crate::authority::Authority;

/// The license being served, with what every token derives from it,
/// computed once per license. Dereferences to the [`License`].
#[derive(Debug)]
pub struct ActiveLicense {
    license: License,
    pub(crate) lic_b64: String,
    pub(crate) issuer: String,
}

impl ActiveLicense {
    pub(crate) fn new(license: License) -> Self {
        ActiveLicense {
            lic_b64: URL_SAFE_NO_PAD.encode(license.encoded()),
            issuer: tether_keys::claims::issuer_for(&license.terms().dongle_serial),
            license,
        }
    }
}

impl std::ops::Deref for ActiveLicense {
    type Target = License;
    fn deref(&self) -> &License {
        &self.license
    }
}

impl Authority {
    /// Serves `new` from the next request on, with no gap: requests under
    /// way finish with the license they started with. `new` must already
    /// verify under the vendor key; it must be the same license (same id,
    /// same dongle) at a higher sequence. Seat counts follow it.
    ///
    /// # Errors
    /// The reason `new` cannot replace the current license; the current one
    /// keeps serving.
    pub fn replace_license(&self, new: License) -> Result<(), String> {
        let current = self.license();
        let (old, next) = (current.terms(), new.terms());
        if next.id != old.id {
            return Err(format!("license {} is not license {}", next.id, old.id));
        }
        if next.dongle_serial != old.dongle_serial || next.dongle_key != old.dongle_key {
            return Err("a license update cannot change the dongle".into());
        }
        if next.sequence <= old.sequence {
            return Err(format!(
                "sequence {} is not above the installed {}",
                next.sequence, old.sequence
            ));
        }
        for service in &next.services {
            self.leases.set_seats(service, next.seats_for(service));
        }
        self.license_slot().store(Arc::new(ActiveLicense::new(new)));
        Ok(())
    }
}
