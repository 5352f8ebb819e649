//! The softkey as a real kernel HID device, through Linux UHID
//! (`/dev/uhid`), presenting what a USB security key presents.
//!
//! The report descriptor is the FIDO one (CTAP 2.1, section 11.2.8.1):
//! usage page 0xF1D0, usage 1 (`CTAPHID`), one 64-byte input report (usage
//! 0x20) and one 64-byte output report (usage 0x21), no report ids; the
//! kernel makes a `/dev/hidrawN` for it, and host code finds it by usage
//! page as it finds a YubiKey. The serial is the kernel's `HID_UNIQ`, which
//! hidapi reports as the serial number.
//!
//! The UHID event layout (`struct uhid_event`) and the server are the
//! emulator's ([`tether_emulator::uhid::UhidServer`], generic over the
//! device behind it), written once. The control socket (`PATH.ctl`:
//! `plug`, `unplug`, `status`) is the socket link's: `unplug` is
//! `UHID_DESTROY` (the kernel removes the hidraw node and fails every open
//! handle), `plug` creates the device afresh (a power-up; it may get another
//! node number).

pub use tether_emulator::uhid::{UhidConfig, UhidServer};

use crate::device::Device;

/// The FIDO usage page (CTAP 2.1, section 11.2.8.1).
pub const FIDO_USAGE_PAGE: u16 = 0xF1D0;
/// Default USB vendor id: pid.codes, the open-source vendor id.
pub const DEFAULT_VID: u16 = 0x1209;
/// Default USB product id: a pid.codes test id, next to the native
/// emulator's 0x0001.
pub const DEFAULT_PID: u16 = 0x0002;

/// The kernel device description of a softkey with USB ids `vid`:`pid`.
pub fn config(vid: u16, pid: u16) -> UhidConfig {
    UhidConfig {
        vid,
        pid,
        usage_page: FIDO_USAGE_PAGE,
        name: "Tether softkey (FIDO2, UHID)".into(),
    }
}

/// A running UHID softkey. Dropping it destroys the device and removes the
/// control socket. [`UhidServer::spawn_with_serial`] starts it.
pub type UhidKey = UhidServer<Device>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tether_emulator::uhid::create2_event;

    #[test]
    fn descriptor_is_the_fido_one() {
        // CTAP 2.1, section 11.2.8.1: usage page 0xF1D0, usage 0x01,
        // input usage 0x20, output usage 0x21, 64-byte reports.
        let c = config(DEFAULT_VID, DEFAULT_PID);
        let rd = tether_emulator::uhid::report_descriptor(c.usage_page);
        assert_eq!(&rd[..5], &[0x06, 0xD0, 0xF1, 0x09, 0x01]);
        assert_eq!(&rd[7..9], &[0x09, 0x20]);
        assert_eq!(&rd[20..22], &[0x09, 0x21]);
        assert_eq!((rd[17], rd[30]), (64, 64));
        let ev = create2_event(&c, "SK-1");
        assert_eq!(ev[264..268], 0x1209u32.to_ne_bytes());
        assert_eq!(ev[268..272], 0x0002u32.to_ne_bytes());
        assert_eq!(&ev[196..201], b"SK-1\0");
    }
}
