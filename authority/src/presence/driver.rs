//! Which driver opens the dongle: the native protocol on its selector, or a
//! FIDO2 key opened for the credential the active license names
//! (`docs/dongle-protocol.md`, section 8). The license is read at every
//! open, so an installed license update is followed at the next plug.

use std::fmt;
use std::sync::Arc;

use tether_dongle::fido2::{Fido2Dongle, Fido2Selector};
use tether_dongle::{Dongle, Driver, LinkError};
use tether_keys::{DongleIdentity, LicenseTerms};

use crate::authority::Authority;
use crate::config::DongleChoice;

/// The driver for `choice`.
pub fn driver(auth: &Arc<Authority>, choice: &DongleChoice) -> Arc<dyn Driver> {
    match choice {
        DongleChoice::Native(selector) => Arc::new(selector.clone()),
        DongleChoice::Fido2(selector) => Arc::new(LicensedFido2 {
            selector: selector.clone(),
            auth: auth.clone(),
        }),
    }
}

/// Refuses a dongle kind the license does not name, with what to do.
///
/// # Errors
/// When `--dongle` picks a FIDO2 key and the license names a native dongle,
/// or the other way round.
pub fn check_kind(choice: &DongleChoice, terms: &LicenseTerms) -> anyhow::Result<()> {
    match (choice, &terms.dongle) {
        (DongleChoice::Native(_), DongleIdentity::Native(_))
        | (DongleChoice::Fido2(_), DongleIdentity::Fido2(_)) => Ok(()),
        (DongleChoice::Fido2(sel), DongleIdentity::Native(_)) => anyhow::bail!(
            "--dongle {sel} is a FIDO2 security key, but license {} names native dongle {}: \
             use --dongle hid (or socket:PATH), or a license issued for the key's dongle.fido2.pem",
            terms.id,
            terms.dongle_serial
        ),
        (DongleChoice::Native(sel), DongleIdentity::Fido2(cred)) => anyhow::bail!(
            "--dongle {sel} is a native dongle, but license {} names FIDO2 security key {} ({}): \
             use --dongle fido2 (or fido2:SERIAL, fido2:/dev/hidrawN, fido2:socket:PATH)",
            terms.id,
            terms.dongle_serial,
            cred.model
        ),
        #[allow(unreachable_patterns)]
        _ => anyhow::bail!("the license names a dongle kind this tetherd does not know"),
    }
}

/// Opens the FIDO2 key for the active license's credential.
struct LicensedFido2 {
    selector: Fido2Selector,
    auth: Arc<Authority>,
}

impl fmt::Debug for LicensedFido2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicensedFido2")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl Driver for LicensedFido2 {
    fn open(&self) -> tether_dongle::Result<Box<dyn Dongle>> {
        let license = self.auth.license();
        let DongleIdentity::Fido2(credential) = &license.terms().dongle else {
            // Checked at start; a license update of another kind is refused
            // at install. Nothing to open for it.
            return Err(LinkError::Absent);
        };
        Ok(Box::new(Fido2Dongle::connect(
            &self.selector,
            credential.clone(),
        )?))
    }
}
