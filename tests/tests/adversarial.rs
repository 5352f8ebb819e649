//! The adversarial suite (issue 8): every security claim of Tether attacked
//! against the real binaries, faults injected into a running authority, and
//! a bounded soak, with one summary table at the end.
//!
//! - `forged`: forged and malformed tokens against the verifier, against
//!   the real reference services through a rogue authority, and against the
//!   `tether verify` CLI.
//! - `dongle`: a misbehaving or foreign dongle (emulator faults) against the
//!   real `tetherd`.
//! - `theft`: a copy of the authority's disk, a session key dumped from
//!   memory, certificates pre-signed while the dongle was at hand.
//! - `fresh`: a rogue authority with a real dongle against freshness: nonces
//!   outside the certificate, more leaves than seats, pre-signed
//!   certificates against a real consumer.
//! - `faults`: unplug mid-request and mid-renewal, SIGKILL, an unwritable or
//!   corrupt state, an unreachable authority, clock steps, a noisy neighbour.
//! - `soak`: steady load and unplug/replug cycles under load
//!   (`TETHER_SOAK_SECS`, `TETHER_SOAK_CYCLES` lengthen it; short in CI).
//!
//! `docs/threat-model.md` maps each attack to the test that tries it. Every
//! test records what it tried in [`summary`]; the last test to finish prints
//! the table (to stderr directly, so it shows without `--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "adversarial/dongle.rs"]
mod dongle;
#[path = "adversarial/faults.rs"]
mod faults;
#[path = "adversarial/forged.rs"]
mod forged;
#[path = "adversarial/fresh.rs"]
mod fresh;
#[path = "adversarial/rig.rs"]
mod rig;
#[path = "adversarial/soak.rs"]
mod soak;
#[path = "adversarial/summary.rs"]
mod summary;
#[path = "adversarial/theft.rs"]
mod theft;
