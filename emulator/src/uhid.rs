//! The emulator as a real kernel HID device, through Linux UHID
//! (`/dev/uhid`; `docs/dongle-protocol.md`, sections 2.1 and 7).
//!
//! The kernel makes a real `/dev/hidrawN` for the device, so the host side
//! runs exactly the production path: hidapi enumeration through sysfs, open
//! by VID/PID (and serial), 65-byte writes behind report id 0, reads with a
//! timeout, and hot-unplug as the kernel reports it. Each output report the
//! host writes arrives here as `UHID_OUTPUT` and is answered by the same
//! [`Device`] core as the socket link, with `UHID_INPUT2` input reports.
//!
//! The device presents what the firmware presents: bus USB, vendor/product
//! id ([`hid::DEFAULT_VID`]:[`hid::DEFAULT_PID`] unless told otherwise), a
//! report descriptor with the vendor usage page and one 64-byte input and one
//! 64-byte output report without report ids, and the serial as `uniq` (the
//! kernel's `HID_UNIQ`, which hidapi reports as the serial number).
//!
//! The server is generic over the device behind it ([`LinkDevice`]): the
//! native core here, the test FIDO2 key of `tether-softkey` with its own
//! [`UhidConfig`] (the FIDO usage page).
//!
//! The control socket is the socket emulator's (`PATH.ctl`: `plug`,
//! `unplug`, `fault MODE`, `status`): `unplug` is `UHID_DESTROY` (the kernel
//! removes the hidraw node and fails every open handle), `plug` creates the
//! device afresh (a power-up; it may get another node number).
//!
//! No unsafe code: the kernel's `struct uhid_event` (packed, 4380 bytes:
//! a 4-byte type and a union) is read and written as plain bytes with
//! `std::fs::File`. A short write is zero-extended by the kernel.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::Device;
use crate::socket::{
    ControlTarget, Link, LinkDevice, answer, claim, control_loop, control_path, lock, log_link,
};
use crate::stop::Stop;
use tether_dongle::ctaphid::{REPORT_LEN, Report};
use tether_dongle::hid;

/// The kernel's UHID character device.
pub const UHID_PATH: &str = "/dev/uhid";

/// `sizeof(struct uhid_event)` in `linux/uhid.h`.
pub const EVENT_LEN: usize = 4380;

// Event types (`enum uhid_event_type`).
const UHID_DESTROY: u32 = 1;
const UHID_START: u32 = 2;
const UHID_STOP: u32 = 3;
const UHID_OPEN: u32 = 4;
const UHID_CLOSE: u32 = 5;
const UHID_OUTPUT: u32 = 6;
const UHID_GET_REPORT: u32 = 9;
const UHID_GET_REPORT_REPLY: u32 = 10;
const UHID_CREATE2: u32 = 11;
const UHID_INPUT2: u32 = 12;
const UHID_SET_REPORT: u32 = 13;
const UHID_SET_REPORT_REPLY: u32 = 14;

/// `enum uhid_report_type`: an output report.
const UHID_OUTPUT_REPORT: u8 = 1;
/// `BUS_USB` in `linux/input.h`.
const BUS_USB: u16 = 0x03;
/// `UHID_DATA_MAX`.
const DATA_MAX: usize = 4096;
/// EIO, the answer to feature-report requests the dongle does not have.
const EIO: u16 = 5;

// Offsets inside the event (after the 4-byte type), from linux/uhid.h.
const CREATE2_NAME: usize = 4; // u8[128]
const CREATE2_PHYS: usize = 4 + 128; // u8[64]
const CREATE2_UNIQ: usize = 4 + 128 + 64; // u8[64]
const CREATE2_RD_SIZE: usize = 4 + 256; // u16
const CREATE2_BUS: usize = 4 + 258; // u16
const CREATE2_VENDOR: usize = 4 + 260; // u32
const CREATE2_PRODUCT: usize = 4 + 264; // u32
const CREATE2_VERSION: usize = 4 + 268; // u32
const CREATE2_COUNTRY: usize = 4 + 272; // u32
const CREATE2_RD_DATA: usize = 4 + 276; // u8[4096]
const OUTPUT_DATA: usize = 4; // u8[4096]
const OUTPUT_SIZE: usize = 4 + DATA_MAX; // u16
const OUTPUT_RTYPE: usize = 4 + DATA_MAX + 2; // u8
const INPUT2_SIZE: usize = 4; // u16
const INPUT2_DATA: usize = 6; // u8[4096]
const REPORT_REQ_ID: usize = 4; // u32, in GET_REPORT and SET_REPORT and their replies
const REPLY_ERR: usize = 8; // u16

/// What the device presents to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UhidConfig {
    /// USB vendor id.
    pub vid: u16,
    /// USB product id.
    pub pid: u16,
    /// Usage page of the report descriptor (the dongle's is [`hid::USAGE_PAGE`];
    /// tests present other pages to check they are ignored).
    pub usage_page: u16,
    /// Device name (the kernel's `HID_NAME`).
    pub name: String,
}

impl Default for UhidConfig {
    fn default() -> Self {
        UhidConfig {
            vid: hid::DEFAULT_VID,
            pid: hid::DEFAULT_PID,
            usage_page: hid::USAGE_PAGE,
            name: "Tether dongle (UHID emulator)".into(),
        }
    }
}

/// The report descriptor: on `usage_page`, usage 1, an application
/// collection with one 64-byte input report (usage 0x20) and one 64-byte
/// output report (usage 0x21), no report ids; the shape of a CTAPHID key.
pub fn report_descriptor(usage_page: u16) -> Vec<u8> {
    let [lo, hi] = usage_page.to_le_bytes();
    let count = REPORT_LEN as u8;
    vec![
        0x06, lo, hi, // Usage Page (usage_page)
        0x09, 0x01, // Usage (1)
        0xA1, 0x01, // Collection (Application)
        0x09, 0x20, //   Usage (0x20): input report
        0x15, 0x00, //   Logical Minimum (0)
        0x26, 0xFF, 0x00, //   Logical Maximum (255)
        0x75, 0x08, //   Report Size (8)
        0x95, count, //   Report Count (64)
        0x81, 0x02, //   Input (Data, Var, Abs)
        0x09, 0x21, //   Usage (0x21): output report
        0x15, 0x00, //   Logical Minimum (0)
        0x26, 0xFF, 0x00, //   Logical Maximum (255)
        0x75, 0x08, //   Report Size (8)
        0x95, count, //   Report Count (64)
        0x91, 0x02, //   Output (Data, Var, Abs)
        0xC0, // End Collection
    ]
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Copies `text` into a fixed C string field, truncated to leave a NUL.
fn put_str(buf: &mut [u8], at: usize, field_len: usize, text: &str) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(field_len - 1);
    put(buf, at, &bytes[..n]);
}

/// A `UHID_CREATE2` event, cut after the report descriptor.
pub fn create2_event(config: &UhidConfig, serial: &str) -> Vec<u8> {
    let rd = report_descriptor(config.usage_page);
    let mut ev = vec![0u8; CREATE2_RD_DATA + rd.len()];
    put(&mut ev, 0, &UHID_CREATE2.to_ne_bytes());
    put_str(&mut ev, CREATE2_NAME, 128, &config.name);
    put_str(&mut ev, CREATE2_PHYS, 64, "tether-uhid");
    put_str(&mut ev, CREATE2_UNIQ, 64, serial);
    put(&mut ev, CREATE2_RD_SIZE, &(rd.len() as u16).to_ne_bytes());
    put(&mut ev, CREATE2_BUS, &BUS_USB.to_ne_bytes());
    put(
        &mut ev,
        CREATE2_VENDOR,
        &u32::from(config.vid).to_ne_bytes(),
    );
    put(
        &mut ev,
        CREATE2_PRODUCT,
        &u32::from(config.pid).to_ne_bytes(),
    );
    let (a, b, _) = super::FIRMWARE;
    put(
        &mut ev,
        CREATE2_VERSION,
        &(u32::from(a) << 8 | u32::from(b)).to_ne_bytes(),
    );
    put(&mut ev, CREATE2_COUNTRY, &0u32.to_ne_bytes());
    put(&mut ev, CREATE2_RD_DATA, &rd);
    ev
}

/// A `UHID_INPUT2` event carrying one report.
pub fn input2_event(report: &Report) -> Vec<u8> {
    let mut ev = vec![0u8; INPUT2_DATA + REPORT_LEN];
    put(&mut ev, 0, &UHID_INPUT2.to_ne_bytes());
    put(&mut ev, INPUT2_SIZE, &(REPORT_LEN as u16).to_ne_bytes());
    put(&mut ev, INPUT2_DATA, report);
    ev
}

/// A `UHID_DESTROY` event.
fn destroy_event() -> Vec<u8> {
    UHID_DESTROY.to_ne_bytes().to_vec()
}

/// A `*_REPORT_REPLY` event refusing request `id` with EIO.
fn refuse_event(reply_type: u32, id: [u8; 4]) -> Vec<u8> {
    let mut ev = vec![0u8; REPLY_ERR + 2];
    put(&mut ev, 0, &reply_type.to_ne_bytes());
    put(&mut ev, REPORT_REQ_ID, &id);
    put(&mut ev, REPLY_ERR, &EIO.to_ne_bytes());
    ev
}

/// What an event read from `/dev/uhid` means to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An output report from the host, report id stripped.
    Output(Report),
    /// An output event that is not one 64-byte output report (dropped, as
    /// firmware drops a malformed transfer).
    BadOutput {
        /// Its size.
        size: usize,
        /// Its report type.
        rtype: u8,
    },
    /// A feature-report request (`UHID_GET_REPORT` / `UHID_SET_REPORT`)
    /// with its id: the dongle has none, so it is refused.
    ReportRequest {
        /// The reply event type.
        reply: u32,
        /// The request id to echo.
        id: [u8; 4],
    },
    /// The kernel stopped the device (after `UHID_DESTROY`).
    Stop,
    /// Start, open, close and anything else: nothing to do.
    Other(u32),
}

/// Decodes an event the kernel wrote; `None` when it is too short to have a type.
pub fn decode_event(ev: &[u8]) -> Option<Event> {
    let ty = u32::from_ne_bytes(ev.get(..4)?.try_into().ok()?);
    // The kernel may write short events; user space extends them with zeros.
    let mut full = [0u8; EVENT_LEN];
    let n = ev.len().min(EVENT_LEN);
    full[..n].copy_from_slice(&ev[..n]);
    let u16_at = |at: usize| u16::from_ne_bytes([full[at], full[at + 1]]);
    let id = || [full[4], full[5], full[6], full[7]];
    Some(match ty {
        UHID_OUTPUT => {
            let size = usize::from(u16_at(OUTPUT_SIZE)).min(DATA_MAX);
            let rtype = full[OUTPUT_RTYPE];
            let data = &full[OUTPUT_DATA..OUTPUT_DATA + size];
            // No report ids: hidraw passes the host's leading 0 through.
            let report = match (rtype, size, data.first()) {
                (UHID_OUTPUT_REPORT, 65, Some(0)) => &data[1..],
                (UHID_OUTPUT_REPORT, REPORT_LEN, _) => data,
                _ => return Some(Event::BadOutput { size, rtype }),
            };
            let mut r = [0u8; REPORT_LEN];
            r.copy_from_slice(report);
            Event::Output(r)
        }
        UHID_GET_REPORT => Event::ReportRequest {
            reply: UHID_GET_REPORT_REPLY,
            id: id(),
        },
        UHID_SET_REPORT => Event::ReportRequest {
            reply: UHID_SET_REPORT_REPLY,
            id: id(),
        },
        UHID_STOP => Event::Stop,
        other => Event::Other(other),
    })
}

/// One created kernel device.
#[derive(Debug)]
struct Node {
    /// Our handle on `/dev/uhid`; the reader thread holds a clone.
    file: File,
    generation: u64,
}

#[derive(Debug)]
struct Shared<D> {
    device: Mutex<D>,
    config: UhidConfig,
    serial: String,
    /// The kernel device while plugged.
    node: Mutex<Option<Node>>,
    generation: Mutex<u64>,
    stop: Stop,
}

impl<D: LinkDevice> Shared<D> {
    /// Creates the kernel device (a power-up unless it is the first).
    fn plug(self: &Arc<Self>, power_up: bool) -> std::io::Result<()> {
        let mut node = lock(&self.node);
        if node.is_some() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(UHID_PATH)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("{UHID_PATH}: {e} (is the uhid module loaded?)"),
                )
            })?;
        if power_up {
            lock(&self.device).power_up();
        }
        file.write_all(&create2_event(&self.config, &self.serial))?;
        let generation = {
            let mut g = lock(&self.generation);
            *g += 1;
            *g
        };
        let reader = file.try_clone()?;
        let s = self.clone();
        std::thread::Builder::new()
            .name(format!("{}-uhid", D::THREADS))
            .spawn(move || serve(&s, reader, generation))?;
        *node = Some(Node { file, generation });
        log_link::<D>(&format!("UHID device created (generation {generation})"));
        Ok(())
    }

    /// `UHID_DESTROY`: the kernel removes the device and fails its handles.
    fn unplug(&self) -> std::io::Result<()> {
        let mut node = lock(&self.node);
        let Some(mut n) = node.take() else {
            return Ok(());
        };
        // The reader sees UHID_STOP next and, as its generation is over, exits.
        *lock(&self.generation) += 1;
        let result = n.file.write_all(&destroy_event());
        log_link::<D>(&format!(
            "UHID device destroyed (generation {})",
            n.generation
        ));
        result
    }

    fn is_current(&self, generation: u64) -> bool {
        *lock(&self.generation) == generation
    }
}

impl<D: LinkDevice> ControlTarget for Arc<Shared<D>> {
    type Device = D;
    fn plug(&self) -> std::io::Result<()> {
        Shared::plug(self, true)
    }
    fn unplug(&self) -> std::io::Result<()> {
        Shared::unplug(self)
    }
    fn status(&self) -> String {
        let plugged = lock(&self.node).is_some();
        let link = Link::Uhid {
            config: &self.config,
            serial: &self.serial,
        };
        lock(&self.device).status(plugged, link)
    }
    fn device(&self) -> &Mutex<D> {
        &self.device
    }
    fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }
}

/// Reads the kernel's events for one created device and answers them.
fn serve<D: LinkDevice>(shared: &Shared<D>, mut file: File, generation: u64) {
    let mut buf = vec![0u8; EVENT_LEN];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading {UHID_PATH} failed");
                return;
            }
        };
        let Some(event) = decode_event(&buf[..n]) else {
            continue;
        };
        match event {
            Event::Output(report) => {
                for a in answer(&shared.device, &report) {
                    // Fails once the device is destroyed: the host is gone anyway.
                    if file.write_all(&input2_event(&a)).is_err() {
                        break;
                    }
                }
            }
            Event::BadOutput { size, rtype } => {
                tracing::debug!(size, rtype, "dropped an output event that is not a report");
            }
            Event::ReportRequest { reply, id } => {
                let _ = file.write_all(&refuse_event(reply, id));
            }
            Event::Stop if !shared.is_current(generation) => return,
            Event::Stop | Event::Other(UHID_START | UHID_OPEN | UHID_CLOSE) => {}
            Event::Other(ty) => tracing::debug!(ty, "ignored UHID event"),
        }
        if shared.stop.is_stopped() {
            return;
        }
    }
}

/// The native emulator as a kernel HID device.
pub type UhidEmulator = UhidServer<Device>;

/// A running UHID server of device `D`. Dropping it destroys the kernel
/// device and removes the control socket.
#[derive(Debug)]
pub struct UhidServer<D: LinkDevice> {
    shared: Arc<Shared<D>>,
    control: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl UhidServer<Device> {
    /// Creates `device` as a kernel HID device presenting `config` with the
    /// device's serial, plugged in, with its control socket at `socket` +
    /// `.ctl`.
    ///
    /// # Errors
    ///
    /// As [`UhidServer::spawn_with_serial`].
    pub fn spawn(device: Device, config: UhidConfig, socket: &Path) -> std::io::Result<Self> {
        let serial = device.serial().to_string();
        UhidServer::spawn_with_serial(device, config, &serial, socket)
    }
}

impl<D: LinkDevice> UhidServer<D> {
    /// Creates `device` as a kernel HID device presenting `config` with
    /// serial `serial` (the kernel's `HID_UNIQ`), plugged in, with its
    /// control socket at `socket` + `.ctl`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AddrInUse`] when something already answers on the
    /// control socket; otherwise when `/dev/uhid` cannot be opened or
    /// written (no `uhid` module, no permission), the socket cannot be
    /// bound, or a thread cannot be started.
    pub fn spawn_with_serial(
        device: D,
        config: UhidConfig,
        serial: &str,
        socket: &Path,
    ) -> std::io::Result<Self> {
        let ctl = control_path(socket);
        claim::<D>(&ctl)?;
        let shared = Arc::new(Shared {
            device: Mutex::new(device),
            config,
            serial: serial.to_string(),
            node: Mutex::new(None),
            generation: Mutex::new(0),
            stop: Stop::default(),
        });
        shared.plug(false)?;
        let listener = UnixListener::bind(&ctl)?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-uhid-control", D::THREADS))
            .spawn(move || control_loop(&s, &listener))?;
        Ok(UhidServer {
            shared,
            control: ctl,
            thread: Some(thread),
        })
    }

    /// Plugs the device in: a new kernel device (a power-up); nothing when
    /// it is plugged in already.
    ///
    /// # Errors
    ///
    /// When `/dev/uhid` cannot be opened or written, or the device's reader
    /// thread cannot be started.
    pub fn plug(&self) -> std::io::Result<()> {
        self.shared.plug(true)
    }

    /// Unplugs it: `UHID_DESTROY`; nothing when it is unplugged already.
    ///
    /// # Errors
    ///
    /// When `UHID_DESTROY` cannot be written (the device is forgotten
    /// anyway, as unplugged).
    pub fn unplug(&self) -> std::io::Result<()> {
        self.shared.unplug()
    }

    /// The control socket.
    pub fn control_path(&self) -> &Path {
        &self.control
    }
}

impl<D: LinkDevice> Drop for UhidServer<D> {
    fn drop(&mut self) {
        self.shared.stop.stop();
        let _ = self.shared.unplug();
        if let Some(t) = self.thread.take()
            && UnixStream::connect(&self.control).is_ok()
        {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn descriptor_is_vendor_page_with_64_byte_reports() {
        assert_eq!(
            report_descriptor(0xFF54),
            [
                0x06, 0x54, 0xFF, 0x09, 0x01, 0xA1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00,
                0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75,
                0x08, 0x95, 0x40, 0x91, 0x02, 0xC0,
            ]
        );
    }

    #[test]
    fn create2_layout_matches_linux_uhid_h() {
        let config = UhidConfig::default();
        let ev = create2_event(&config, "TD-1234");
        let rd = report_descriptor(hid::USAGE_PAGE);
        assert_eq!(ev.len(), 280 + rd.len());
        assert_eq!(ev[..4], 11u32.to_ne_bytes());
        assert!(ev[4..132].starts_with(b"Tether dongle"));
        assert_eq!(&ev[132..143], b"tether-uhid");
        assert_eq!(&ev[196..204], b"TD-1234\0");
        assert_eq!(ev[260..262], (rd.len() as u16).to_ne_bytes());
        assert_eq!(ev[262..264], 3u16.to_ne_bytes());
        assert_eq!(ev[264..268], 0x1209u32.to_ne_bytes());
        assert_eq!(ev[268..272], 0x0001u32.to_ne_bytes());
        assert_eq!(ev[280..], rd[..]);
    }

    #[test]
    fn long_strings_keep_their_nul() {
        let config = UhidConfig {
            name: "n".repeat(300),
            ..UhidConfig::default()
        };
        let ev = create2_event(&config, &"s".repeat(100));
        assert_eq!(ev[4 + 127], 0);
        assert_eq!(ev[196 + 62], b's');
        assert_eq!(ev[196 + 63], 0);
    }

    #[test]
    fn input2_layout() {
        let mut r = [0u8; REPORT_LEN];
        r[0] = 0xAB;
        r[63] = 0xCD;
        let ev = input2_event(&r);
        assert_eq!(ev[..4], 12u32.to_ne_bytes());
        assert_eq!(ev[4..6], 64u16.to_ne_bytes());
        assert_eq!(ev[6], 0xAB);
        assert_eq!(ev[69], 0xCD);
        assert_eq!(ev.len(), 70);
    }

    fn output_event(data: &[u8], rtype: u8) -> Vec<u8> {
        let mut ev = vec![0u8; EVENT_LEN];
        put(&mut ev, 0, &UHID_OUTPUT.to_ne_bytes());
        put(&mut ev, OUTPUT_DATA, data);
        put(&mut ev, OUTPUT_SIZE, &(data.len() as u16).to_ne_bytes());
        ev[OUTPUT_RTYPE] = rtype;
        ev
    }

    #[test]
    fn output_with_report_id_zero_is_stripped() {
        let mut data = [0u8; 65];
        data[1] = 0x11;
        data[64] = 0x22;
        let Some(Event::Output(r)) = decode_event(&output_event(&data, UHID_OUTPUT_REPORT)) else {
            panic!("not an output report");
        };
        assert_eq!((r[0], r[63]), (0x11, 0x22));
    }

    #[test]
    fn output_without_report_id_is_taken_whole() {
        let data = [7u8; 64];
        assert_eq!(
            decode_event(&output_event(&data, UHID_OUTPUT_REPORT)),
            Some(Event::Output([7u8; 64]))
        );
    }

    #[test]
    fn malformed_outputs_are_dropped_not_panicked_on() {
        for (data, rtype) in [
            (vec![0u8; 10], UHID_OUTPUT_REPORT),
            (vec![1u8; 65], UHID_OUTPUT_REPORT),
            (vec![0u8; 64], 0),
        ] {
            assert!(matches!(
                decode_event(&output_event(&data, rtype)),
                Some(Event::BadOutput { .. })
            ));
        }
        // A size field beyond UHID_DATA_MAX is clamped, not trusted.
        let mut ev = output_event(&[0u8; 64], UHID_OUTPUT_REPORT);
        put(&mut ev, OUTPUT_SIZE, &u16::MAX.to_ne_bytes());
        assert!(matches!(
            decode_event(&ev),
            Some(Event::BadOutput { size: 4096, .. })
        ));
        assert_eq!(decode_event(&[1, 2]), None);
    }

    #[test]
    fn feature_requests_are_refused_with_their_id() {
        let mut ev = vec![0u8; 16];
        put(&mut ev, 0, &UHID_GET_REPORT.to_ne_bytes());
        put(&mut ev, 4, &[1, 2, 3, 4]);
        let Some(Event::ReportRequest { reply, id }) = decode_event(&ev) else {
            panic!("not a report request");
        };
        assert_eq!((reply, id), (UHID_GET_REPORT_REPLY, [1, 2, 3, 4]));
        let answer = refuse_event(reply, id);
        assert_eq!(answer[..4], 10u32.to_ne_bytes());
        assert_eq!(answer[4..8], [1, 2, 3, 4]);
        assert_eq!(answer[8..10], 5u16.to_ne_bytes());
    }

    #[test]
    fn stop_is_recognised() {
        assert_eq!(decode_event(&3u32.to_ne_bytes()), Some(Event::Stop));
    }
}
