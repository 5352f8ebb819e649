//! The hidapi link to a real dongle (`docs/dongle-protocol.md`, section 2.1).
//!
//! Finds the device by vendor/product id and the vendor usage page, opens it
//! (by serial when asked), writes each report behind a report-id byte 0 (65
//! bytes) and reads with a timeout. On Linux this uses hidapi's pure-Rust
//! hidraw backend, so no system library is needed. Any I/O error on an open
//! hidraw device means it is gone: it maps to [`LinkError::Removed`].

use std::time::Duration;

use hidapi::{HidApi, HidDevice, HidError};

use crate::ctaphid::{REPORT_LEN, Report};
use crate::error::{LinkError, Result};
use crate::transport::Transport;

/// Default vendor id: pid.codes, the open-source USB vendor id.
pub const DEFAULT_VID: u16 = 0x1209;
/// Default product id: a pid.codes test id (replace for production).
pub const DEFAULT_PID: u16 = 0x0001;
/// The vendor-defined usage page of the dongle's HID interface.
pub const USAGE_PAGE: u16 = 0xFF54;

/// A matching device, as enumeration sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidDongle {
    /// OS path (e.g. `/dev/hidraw3`).
    pub path: String,
    /// USB serial string, if any.
    pub serial: Option<String>,
    /// USB product string, if any.
    pub product: Option<String>,
}

fn context() -> Result<HidApi> {
    HidApi::new().map_err(|e| match e {
        // No hidraw subsystem at all (e.g. a container without /sys or /dev): no dongle.
        HidError::IoError { ref error } if error.kind() == std::io::ErrorKind::NotFound => {
            LinkError::Absent
        }
        other => LinkError::Hid(other),
    })
}

/// The FIDO security keys hidapi lists: usage page 0xF1D0, usage 1 (CTAPHID).
fn fido_devices(api: &HidApi) -> impl Iterator<Item = &hidapi::DeviceInfo> {
    api.device_list()
        .filter(|d| d.usage_page() == FIDO_USAGE_PAGE && d.usage() == 0x01)
}

fn matching(api: &HidApi, vid: u16, pid: u16) -> impl Iterator<Item = &hidapi::DeviceInfo> {
    api.device_list().filter(move |d| {
        d.vendor_id() == vid
            && d.product_id() == pid
            // 0: the backend could not read the report descriptor; accept.
            && (d.usage_page() == USAGE_PAGE || d.usage_page() == 0)
    })
}

/// Lists the dongles present with this vendor/product id (none on a system
/// without hidraw at all).
///
/// # Errors
///
/// [`LinkError::Hid`] when hidapi fails otherwise.
pub fn list(vid: u16, pid: u16) -> Result<Vec<HidDongle>> {
    let api = match context() {
        Err(LinkError::Absent) => return Ok(Vec::new()),
        other => other?,
    };
    Ok(matching(&api, vid, pid)
        .map(|d| HidDongle {
            path: d.path().to_string_lossy().into_owned(),
            serial: d.serial_number().map(str::to_string),
            product: d.product_string().map(str::to_string),
        })
        .collect())
}

/// An open HID dongle.
pub struct HidTransport {
    device: HidDevice,
}

impl std::fmt::Debug for HidTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidTransport").finish_non_exhaustive()
    }
}

impl HidTransport {
    /// Opens the first matching device (or the one with `serial`).
    ///
    /// # Errors
    ///
    /// [`LinkError::Absent`] when none is present (or it went between
    /// listing and opening); [`LinkError::Hid`] when hidapi cannot open it
    /// (permissions, most often).
    pub fn open(vid: u16, pid: u16, serial: Option<&str>) -> Result<HidTransport> {
        let api = context()?;
        let mut found: Vec<&hidapi::DeviceInfo> = matching(&api, vid, pid)
            .filter(|d| serial.is_none_or(|s| d.serial_number() == Some(s)))
            .collect();
        open_first(
            &api,
            &mut found,
            "several dongles match; opening the first (select one by serial: hid:VID:PID:SERIAL)",
        )
    }
}

/// Opens the first of `found` by path order, warning with `several` when
/// more than one matched.
///
/// # Errors
///
/// [`LinkError::Absent`] when `found` is empty or the device went between
/// listing and opening; [`LinkError::Hid`] when hidapi cannot open it.
fn open_first(
    api: &HidApi,
    found: &mut [&hidapi::DeviceInfo],
    several: &str,
) -> Result<HidTransport> {
    found.sort_by(|a, b| a.path().cmp(b.path()));
    let Some(info) = found.first() else {
        return Err(LinkError::Absent);
    };
    if found.len() > 1 {
        tracing::warn!(count = found.len(), "{several}");
    }
    let device = info.open_device(api).map_err(|e| match e {
        // Removed between enumeration and open.
        HidError::IoError { ref error } if error.kind() == std::io::ErrorKind::NotFound => {
            LinkError::Absent
        }
        other => LinkError::Hid(other),
    })?;
    Ok(HidTransport { device })
}

/// The FIDO Alliance usage page of a security key's HID interface (CTAP
/// 2.1, section 11.2.8.1), usage 0x01 (CTAPHID).
pub const FIDO_USAGE_PAGE: u16 = 0xF1D0;

/// Which FIDO2 security key to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FidoFilter {
    /// The first one (by OS path).
    Any,
    /// The one with this USB serial string.
    Serial(String),
    /// The one at this OS path (`/dev/hidrawN`).
    Path(String),
}

/// Lists the FIDO security keys present (usage page 0xF1D0, usage 1).
///
/// # Errors
///
/// [`LinkError::Hid`] when hidapi fails otherwise.
pub fn list_fido() -> Result<Vec<HidDongle>> {
    let api = match context() {
        Err(LinkError::Absent) => return Ok(Vec::new()),
        other => other?,
    };
    let mut out: Vec<HidDongle> = fido_devices(&api)
        .map(|d| HidDongle {
            path: d.path().to_string_lossy().into_owned(),
            serial: d.serial_number().map(str::to_string),
            product: d.product_string().map(str::to_string),
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl HidTransport {
    /// Opens a FIDO security key chosen by `filter`.
    ///
    /// # Errors
    ///
    /// [`LinkError::Absent`] when none matches; [`LinkError::Hid`] when
    /// hidapi cannot open it (permissions, most often: see the udev rule in
    /// `deploy/`).
    pub fn open_fido(filter: &FidoFilter) -> Result<HidTransport> {
        let api = context()?;
        let mut found: Vec<&hidapi::DeviceInfo> = fido_devices(&api)
            .filter(|d| match filter {
                FidoFilter::Any => true,
                FidoFilter::Serial(s) => d.serial_number() == Some(s.as_str()),
                FidoFilter::Path(p) => d.path().to_string_lossy() == p.as_str(),
            })
            .collect();
        open_first(
            &api,
            &mut found,
            "several FIDO security keys present; opening the first (select one: fido2:SERIAL or fido2:/dev/hidrawN)",
        )
    }
}

/// Errors on an open hidraw device: removal shows as ENODEV, EIO, EPIPE,
/// ESHUTDOWN or a POLLHUP ("device disconnected"). Anything else is kept.
fn gone_or(e: HidError) -> LinkError {
    match &e {
        HidError::IoError { error } if matches!(error.raw_os_error(), Some(5 | 19 | 32 | 108)) => {
            LinkError::Removed
        }
        HidError::HidApiError { message } if message.contains("disconnected") => LinkError::Removed,
        _ => LinkError::Hid(e),
    }
}

impl Transport for HidTransport {
    fn write_report(&mut self, report: &Report) -> Result<()> {
        let mut buf = [0u8; REPORT_LEN + 1];
        buf[1..].copy_from_slice(report);
        let n = self.device.write(&buf).map_err(gone_or)?;
        if n < REPORT_LEN {
            return Err(LinkError::Io(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short HID write",
            )));
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>> {
        let mut buf = [0u8; REPORT_LEN + 1];
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let n = self.device.read_timeout(&mut buf, ms).map_err(gone_or)?;
        match n {
            0 => Ok(None),
            // Input reports come without the report-id byte when the device uses none.
            REPORT_LEN => {
                let mut r = [0u8; REPORT_LEN];
                r.copy_from_slice(&buf[..REPORT_LEN]);
                Ok(Some(r))
            }
            _ => Err(crate::ctaphid::FrameError::ReportSize(n).into()),
        }
    }
}
