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
//! The UHID event layout (`struct uhid_event`) is the emulator's codec in
//! [`tether_emulator::uhid`], written once. The control socket (`PATH.ctl`:
//! `plug`, `unplug`, `status`) is the socket link's: `unplug` is
//! `UHID_DESTROY` (the kernel removes the hidraw node and fails every open
//! handle), `plug` creates the device afresh (a power-up; it may get another
//! node number).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tether_emulator::uhid::{
    EVENT_LEN, Event, UHID_PATH, UhidConfig, create2_event, decode_event, input2_event,
};

use crate::device::{Device, lock};
use crate::socket::{ControlTarget, claim, control_loop, control_path};

/// The FIDO usage page (CTAP 2.1, section 11.2.8.1).
pub const FIDO_USAGE_PAGE: u16 = 0xF1D0;
/// Default USB vendor id: pid.codes, the open-source vendor id.
pub const DEFAULT_VID: u16 = 0x1209;
/// Default USB product id: a pid.codes test id, next to the native
/// emulator's 0x0001.
pub const DEFAULT_PID: u16 = 0x0002;

// Event types (`enum uhid_event_type` in linux/uhid.h).
const UHID_DESTROY: u32 = 1;
const UHID_START: u32 = 2;
const UHID_OPEN: u32 = 4;
const UHID_CLOSE: u32 = 5;
/// EIO, the answer to feature-report requests (a FIDO key has none).
const EIO: u16 = 5;

/// The kernel device description of a softkey with USB ids `vid`:`pid`.
pub fn config(vid: u16, pid: u16) -> UhidConfig {
    UhidConfig {
        vid,
        pid,
        usage_page: FIDO_USAGE_PAGE,
        name: "Tether softkey (FIDO2, UHID)".into(),
    }
}

/// A `*_REPORT_REPLY` event refusing request `id` with EIO
/// (`struct uhid_get_report_reply_req`: id u32, err u16).
fn refuse_event(reply_type: u32, id: [u8; 4]) -> Vec<u8> {
    let mut ev = Vec::with_capacity(10);
    ev.extend_from_slice(&reply_type.to_ne_bytes());
    ev.extend_from_slice(&id);
    ev.extend_from_slice(&EIO.to_ne_bytes());
    ev
}

#[derive(Debug)]
struct Node {
    file: File,
}

#[derive(Debug)]
struct Shared {
    device: Mutex<Device>,
    config: UhidConfig,
    serial: String,
    node: Mutex<Option<Node>>,
    generation: Mutex<u64>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Shared {
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
            .name("softkey-uhid".into())
            .spawn(move || serve(&s, reader, generation))?;
        *node = Some(Node { file });
        tracing::info!(generation, "UHID device created");
        Ok(())
    }

    fn unplug(&self) -> std::io::Result<()> {
        let mut node = lock(&self.node);
        let Some(mut n) = node.take() else {
            return Ok(());
        };
        *lock(&self.generation) += 1;
        let result = n.file.write_all(&UHID_DESTROY.to_ne_bytes());
        tracing::info!("UHID device destroyed");
        result
    }

    fn is_current(&self, generation: u64) -> bool {
        *lock(&self.generation) == generation
    }
}

impl ControlTarget for Arc<Shared> {
    fn plug(&self) -> std::io::Result<()> {
        Shared::plug(self, true)
    }
    fn unplug(&self) -> std::io::Result<()> {
        Shared::unplug(self)
    }
    fn status(&self) -> String {
        format!(
            "ok plugged={} transport=uhid uhid={:04x}:{:04x} usage_page={:#06x} serial={} {}",
            lock(&self.node).is_some(),
            self.config.vid,
            self.config.pid,
            self.config.usage_page,
            self.serial,
            lock(&self.device).describe()
        )
    }
    fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn serve(shared: &Shared, mut file: File, generation: u64) {
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
                let answers = lock(&shared.device).handle_report(&report);
                for a in answers {
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
        if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
    }
}

/// A running UHID softkey. Dropping it destroys the device and removes the
/// control socket.
#[derive(Debug)]
pub struct UhidKey {
    shared: Arc<Shared>,
    control: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl UhidKey {
    /// Creates `device` as a kernel HID device presenting `config` with
    /// serial `serial`, plugged in, its control socket at `socket` + `.ctl`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AddrInUse`] when something already answers on the
    /// control socket; otherwise when `/dev/uhid` cannot be opened or
    /// written (no `uhid` module, no permission), the socket cannot be
    /// bound, or a thread cannot be started.
    pub fn spawn(
        device: Device,
        config: UhidConfig,
        serial: &str,
        socket: &Path,
    ) -> std::io::Result<Self> {
        let ctl = control_path(socket);
        claim(&ctl)?;
        let shared = Arc::new(Shared {
            device: Mutex::new(device),
            config,
            serial: serial.to_string(),
            node: Mutex::new(None),
            generation: Mutex::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        shared.plug(false)?;
        let listener = UnixListener::bind(&ctl)?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("softkey-uhid-control".into())
            .spawn(move || control_loop(&s, &listener))?;
        Ok(UhidKey {
            shared,
            control: ctl,
            thread: Some(thread),
        })
    }

    /// The control socket.
    pub fn control_path(&self) -> &Path {
        &self.control
    }
}

impl Drop for UhidKey {
    fn drop(&mut self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
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

    #[test]
    fn feature_requests_are_refused_with_eio() {
        let ev = refuse_event(10, [1, 2, 3, 4]);
        assert_eq!(ev[..4], 10u32.to_ne_bytes());
        assert_eq!(ev[4..8], [1, 2, 3, 4]);
        assert_eq!(ev[8..10], 5u16.to_ne_bytes());
    }
}
