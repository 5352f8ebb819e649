//! One softkey device: the CTAPHID layer and the CTAP2 layer together, and
//! what both servers (socket, UHID) need from it.

use std::time::Instant;

use tether_dongle::ctaphid::Report;

use crate::ctap2::Softkey;
use crate::ctaphid::CtapHid;

/// Firmware version in the `CTAPHID_INIT` answer (major, minor, build).
pub const FIRMWARE: (u8, u8, u8) = (1, 0, 0);

/// A powered softkey.
#[derive(Debug)]
pub struct Device {
    hid: CtapHid,
    key: Softkey,
}

impl Device {
    /// A device around `key`, just powered up.
    pub fn new(key: Softkey) -> Self {
        Device {
            hid: CtapHid::new(FIRMWARE),
            key,
        }
    }

    /// Answers one output report with the input reports to send back.
    pub fn handle_report(&mut self, report: &[u8]) -> Vec<Report> {
        self.hid
            .handle_report(report, Instant::now(), &mut self.key)
    }

    /// A power cycle (re-plug): HID channels are gone, credentials and
    /// counters stay.
    pub fn power_up(&mut self) {
        self.hid.power_up();
    }

    /// The CTAP2 side (options, store).
    pub fn key(&self) -> &Softkey {
        &self.key
    }

    /// `credentials=N counter=N algorithm=... require_up=... ` for status lines.
    pub fn describe(&self) -> String {
        let o = self.key.options();
        format!(
            "credentials={} counter={} algorithm={:?} counter_enabled={} require_up={} force_up={} syncable={}",
            self.key.store().len(),
            self.key.store().max_counter(),
            o.algorithm,
            o.counter,
            o.require_up,
            o.force_up,
            o.syncable,
        )
    }
}
