//! A software FIDO2 security key for tests (`tether-softkey`).
//!
//! An independent CTAP2 authenticator, 1Password's `passkey-authenticator`
//! (with its `passkey-types` request and response types and its
//! `passkey-crypto` RustCrypto backend), behind device-side CTAPHID
//! framing, served two ways:
//!
//! - [`socket`]: the emulator's socket link (`docs/dongle-protocol.md`,
//!   section 2.2): 64-byte records on a Unix socket, plug/unplug/status on
//!   `PATH.ctl`, so a host without `/dev/uhid` reaches it with the
//!   `socket:PATH` selector;
//! - [`uhid`]: a kernel HID device through `/dev/uhid` with the FIDO report
//!   descriptor (usage page 0xF1D0, usage 1, 64-byte reports), so the host
//!   finds it with hidapi like any security key.
//!
//! Layout: [`ctaphid`] (channels, framing, HID commands; CTAP 2.1 section
//! 11.2), [`ctap2`] (the CBOR commands, the fault modes), [`store`] (the
//! credentials and counters, optionally in a state file), [`device`] (one
//! powered device: the two layers together).
//!
//! Test-only: no crate that `tetherd` or the verifier links depends on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod ctap2;
pub mod ctaphid;
pub mod device;
pub mod socket;
pub mod store;
pub mod uhid;

pub use ctap2::{Algorithm, Options, Softkey};
pub use device::Device;
pub use store::Store;

#[cfg(test)]
mod tests;
