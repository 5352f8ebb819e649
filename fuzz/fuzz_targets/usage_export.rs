//! The usage export decoder and its verification (`keys/src/ledger.rs`,
//! `Export::decode`, `verify`, `chain_exports`): what `tether usage verify`
//! reads at the vendor, from a file the site's root could have written.
//!
//! Asserts: no panic; an export that decodes re-encodes to the input; the
//! verification of it (under the test vendor key) never panics and calls
//! nothing verified that has an error finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_keys::ledger::{Export, Severity, chain_exports, verify};
use tether_keys::testkeys;

fuzz_target!(|data: &[u8]| {
    let Ok(export) = Export::decode(data) else {
        return;
    };
    assert_eq!(export.encode(), data, "not canonical");
    let report = verify(&testkeys::vendor().public(), &export);
    let errors = report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    assert_eq!(report.verified, !errors);
    let _ = chain_exports(&export, &export);
});
