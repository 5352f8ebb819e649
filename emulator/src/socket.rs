//! The emulator on a Unix socket, with plug/unplug from outside
//! (`docs/dongle-protocol.md`, sections 2.2 and 7).
//!
//! Each connection carries fixed 64-byte records, like a hidraw handle.
//! Answers go to the connection that asked. A control socket beside it
//! (`PATH.ctl`) takes one line per connection: `plug`, `unplug`,
//! `fault MODE` or `status`, and answers `ok ...` or `error: ...`.
//!
//! Unplug looks like hardware removal: every open connection is shut down
//! at once (a blocked read sees EOF), and new connections are closed as soon
//! as they are accepted until `plug`, which powers the device up afresh.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::stop::Stop;
use crate::{Device, Fault};
use tether_dongle::ctaphid::{REPORT_LEN, Report};

/// The control socket of the emulator at `path`: `path` + `.ctl`.
pub fn control_path(path: &Path) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(".ctl");
    PathBuf::from(p)
}

/// Sends one control line (`plug`, `unplug`, `fault MODE`, `status`) to the
/// emulator at `path`; returns its answer.
///
/// # Errors
///
/// When the control socket cannot be reached or read, and
/// [`std::io::ErrorKind::Other`] carrying the emulator's message for an
/// `error: ...` answer (an unknown command, a plug that failed).
pub fn control(path: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(control_path(path))?;
    s.write_all(command.trim().as_bytes())?;
    s.write_all(b"\n")?;
    s.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let answer = answer.trim().to_string();
    match answer.strip_prefix("error: ") {
        Some(e) => Err(std::io::Error::other(e.to_string())),
        None => Ok(answer),
    }
}

#[derive(Debug, Default)]
struct Conns {
    next_id: u64,
    open: Vec<(u64, UnixStream)>,
}

#[derive(Debug)]
struct Shared {
    device: Mutex<Device>,
    conns: Mutex<Conns>,
    plugged: AtomicBool,
    stop: Stop,
}

/// Locks, riding over poisoning: a panicked holder leaves plain data.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The device's answers to one incoming report, after the `slow` fault's
/// delay (slept outside the lock). Answers are held back, not the reports of
/// a request still arriving: sleeping after every report would run a
/// multi-report request past the device's own message timeout (section 3.5).
/// Every server (socket, UHID) answers through here.
pub(super) fn answer(device: &Mutex<Device>, report: &[u8]) -> Vec<Report> {
    let (answers, delay) = {
        let mut d = lock(device);
        (d.handle_report(report), d.reply_delay())
    };
    if !delay.is_zero() && !answers.is_empty() {
        std::thread::sleep(delay);
    }
    answers
}

impl Shared {
    fn plug(&self) {
        let _conns = lock(&self.conns);
        if !self.plugged.swap(true, Ordering::SeqCst) {
            lock(&self.device).power_up();
        }
    }

    fn unplug(&self) {
        let mut conns = lock(&self.conns);
        self.plugged.store(false, Ordering::SeqCst);
        for (_, s) in conns.open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn status(&self) -> String {
        let d = lock(&self.device);
        format!(
            "ok plugged={} fault={} serial={} counter={}",
            self.plugged.load(Ordering::SeqCst),
            d.fault(),
            d.serial(),
            d.counter()
        )
    }
}

impl ControlTarget for Shared {
    fn plug(&self) -> std::io::Result<()> {
        Shared::plug(self);
        Ok(())
    }
    fn unplug(&self) -> std::io::Result<()> {
        Shared::unplug(self);
        Ok(())
    }
    fn status(&self) -> String {
        Shared::status(self)
    }
    fn set_fault(&self, fault: Fault) {
        lock(&self.device).set_fault(fault);
    }
    fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }
}

/// What the control socket drives: the socket link here, the UHID device in
/// [`super::uhid`]. The control protocol is written once, over this.
pub(super) trait ControlTarget {
    /// Plugs the dongle in (a power-up).
    fn plug(&self) -> std::io::Result<()>;
    /// Unplugs it.
    fn unplug(&self) -> std::io::Result<()>;
    /// `ok plugged=... fault=... serial=... counter=...`.
    fn status(&self) -> String;
    /// Switches the fault mode.
    fn set_fault(&self, fault: Fault);
    /// Whether the emulator is shutting down.
    fn stopped(&self) -> bool;
}

/// Answers one control line: `plug`, `unplug`, `status` or `fault MODE`.
fn control_line(target: &impl ControlTarget, line: &str) -> String {
    let done = |r: std::io::Result<()>| match r {
        Ok(()) => target.status(),
        Err(e) => format!("error: {e}"),
    };
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("plug"), None, _) => done(target.plug()),
        (Some("unplug"), None, _) => done(target.unplug()),
        (Some("status"), None, _) => target.status(),
        (Some("fault"), Some(mode), None) => match mode.parse::<Fault>() {
            Ok(f) => {
                target.set_fault(f);
                target.status()
            }
            Err(e) => format!("error: {e}"),
        },
        _ => format!("error: unknown command {line:?}: plug, unplug, fault MODE, status"),
    }
}

/// Serves the control socket: one line in, one answer out, per connection,
/// until the target stops.
pub(super) fn control_loop(target: &impl ControlTarget, listener: &UnixListener) {
    for stream in listener.incoming() {
        if target.stopped() {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let mut line = String::new();
        let read = BufReader::new(&mut stream).take(256).read_line(&mut line);
        let answer = match read {
            Ok(_) => control_line(target, line.trim()),
            Err(e) => format!("error: {e}"),
        };
        let _ = stream.write_all(answer.as_bytes());
        let _ = stream.write_all(b"\n");
    }
}

/// A running socket emulator. Dropping it stops it and removes its sockets.
#[derive(Debug)]
pub struct SocketEmulator {
    shared: Arc<Shared>,
    path: PathBuf,
    threads: Vec<JoinHandle<()>>,
}

impl SocketEmulator {
    /// Serves `device` on `path` (and `path.ctl`), plugged in.
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::AddrInUse`] when an emulator already answers on
    /// either socket; otherwise when a socket cannot be bound or a thread
    /// cannot be started.
    pub fn spawn(device: Device, path: &Path) -> std::io::Result<SocketEmulator> {
        let ctl = control_path(path);
        for p in [path, ctl.as_path()] {
            // A stale socket from a killed emulator; refuse to clobber a live one.
            if UnixStream::connect(p).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{}: an emulator is already running", p.display()),
                ));
            }
            let _ = std::fs::remove_file(p);
        }
        let listener = UnixListener::bind(path)?;
        let ctl_listener = UnixListener::bind(&ctl)?;
        let shared = Arc::new(Shared {
            device: Mutex::new(device),
            conns: Mutex::default(),
            plugged: AtomicBool::new(true),
            stop: Stop::default(),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("dongle-emu-accept".into())
            .spawn(move || accept_loop(&s, &listener))?;
        let s = shared.clone();
        let control = std::thread::Builder::new()
            .name("dongle-emu-control".into())
            .spawn(move || control_loop(&*s, &ctl_listener))?;
        Ok(SocketEmulator {
            shared,
            path: path.to_path_buf(),
            threads: vec![accept, control],
        })
    }

    /// The data socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Plugs the dongle in (a power-up).
    pub fn plug(&self) {
        self.shared.plug();
    }

    /// Unplugs it: open connections fail at once; new ones until [`Self::plug`].
    pub fn unplug(&self) {
        self.shared.unplug();
    }

    /// Switches the fault mode.
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.shared.device).set_fault(fault);
    }

    /// Runs `f` on the device (to read its counter, say).
    pub fn with_device<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        f(&mut lock(&self.shared.device))
    }
}

impl Drop for SocketEmulator {
    fn drop(&mut self) {
        self.shared.stop.stop();
        self.shared.unplug();
        // Wake the blocked accepts by connecting to them. If a socket file is
        // already gone (its directory removed first), that thread cannot be
        // woken: detach it rather than hang; it holds only its listener.
        let woken = [
            UnixStream::connect(&self.path).is_ok(),
            UnixStream::connect(control_path(&self.path)).is_ok(),
        ];
        for (t, woken) in self.threads.drain(..).zip(woken) {
            if woken {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(control_path(&self.path));
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    for stream in listener.incoming() {
        if shared.stop.is_stopped() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = {
            let mut conns = lock(&shared.conns);
            if !shared.plugged.load(Ordering::SeqCst) {
                // Nothing on the port: the host sees the link drop at once.
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.push((id, clone));
            id
        };
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("dongle-emu-conn".into())
            .spawn(move || {
                serve(&s, stream);
                lock(&s.conns).open.retain(|(i, _)| *i != id);
            });
        if spawned.is_err() {
            lock(&shared.conns).open.retain(|(i, _)| *i != id);
        }
    }
}

fn serve(shared: &Shared, mut stream: UnixStream) {
    let mut report = [0u8; REPORT_LEN];
    loop {
        if stream.read_exact(&mut report).is_err() || !shared.plugged.load(Ordering::SeqCst) {
            return;
        }
        for a in answer(&shared.device, &report) {
            if stream.write_all(&a).is_err() {
                return;
            }
        }
    }
}
