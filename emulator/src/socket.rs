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
//!
//! The servers here and in [`super::uhid`] are written once, generic over
//! the device behind them ([`LinkDevice`]): the native dongle core
//! ([`Device`], served as [`SocketEmulator`]) and the test FIDO2 key of
//! `tether-softkey` both answer through them.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::stop::Stop;
use crate::uhid::UhidConfig;
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

/// The link a status line describes (see [`LinkDevice::status`]).
#[derive(Debug, Clone, Copy)]
pub enum Link<'a> {
    /// The socket link of [`SocketServer`].
    Socket,
    /// A kernel device of [`super::uhid::UhidServer`].
    Uhid {
        /// What the device presents to the kernel.
        config: &'a UhidConfig,
        /// Its serial (the kernel's `HID_UNIQ`).
        serial: &'a str,
    },
}

/// A device the emulator's servers (socket link, UHID) can serve: it
/// answers one 64-byte output report with the input reports to send back
/// (`docs/dongle-protocol.md`, section 2), and says what the control socket
/// shows of it.
pub trait LinkDevice: Send + 'static {
    /// Prefix of the server threads' names (`PREFIX-accept`, ...).
    const THREADS: &'static str;
    /// Ends the [`std::io::ErrorKind::AddrInUse`] message when something
    /// already answers on a socket (`PATH: BUSY`).
    const BUSY: &'static str;
    /// The control commands, listed after an unknown one.
    const COMMANDS: &'static str;
    /// Whether plug, unplug and kernel device changes are logged at INFO
    /// (otherwise DEBUG).
    const LOG_LINKS: bool;

    /// Answers one output report (64 bytes) with the input reports to send.
    fn handle_report(&mut self, report: &[u8]) -> Vec<Report>;

    /// How long to hold answers back (a fault mode); zero by default.
    fn reply_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// A power cycle (re-plug).
    fn power_up(&mut self);

    /// The control line `fault ARGS...`: `None` when it is not a command
    /// (answered as unknown), else whether the fault was set.
    ///
    /// # Errors
    ///
    /// The message to answer as `error: ...`.
    fn fault(&mut self, args: &[&str]) -> Option<Result<(), String>>;

    /// The control socket's status line, `ok plugged=... ...`.
    fn status(&self, plugged: bool, link: Link<'_>) -> String;
}

impl LinkDevice for Device {
    const THREADS: &'static str = "dongle-emu";
    const BUSY: &'static str = "an emulator is already running";
    const COMMANDS: &'static str = "plug, unplug, fault MODE, status";
    const LOG_LINKS: bool = false;

    fn handle_report(&mut self, report: &[u8]) -> Vec<Report> {
        Device::handle_report(self, report)
    }

    fn reply_delay(&self) -> Duration {
        Device::reply_delay(self)
    }

    fn power_up(&mut self) {
        Device::power_up(self);
    }

    fn fault(&mut self, args: &[&str]) -> Option<Result<(), String>> {
        match args {
            [mode] => Some(
                mode.parse::<Fault>()
                    .map(|f| self.set_fault(f))
                    .map_err(|e| e.to_string()),
            ),
            _ => None,
        }
    }

    fn status(&self, plugged: bool, link: Link<'_>) -> String {
        let line = format!(
            "ok plugged={plugged} fault={} serial={} counter={}",
            Device::fault(self),
            self.serial(),
            self.counter()
        );
        match link {
            Link::Socket => line,
            Link::Uhid { config, .. } => format!(
                "{line} uhid={:04x}:{:04x} usage_page={:#06x}",
                config.vid, config.pid, config.usage_page,
            ),
        }
    }
}

/// Logs a link change at the level `D` asks for.
pub(super) fn log_link<D: LinkDevice>(message: &str) {
    if D::LOG_LINKS {
        tracing::info!("{message}");
    } else {
        tracing::debug!("{message}");
    }
}

#[derive(Debug, Default)]
struct Conns {
    next_id: u64,
    open: Vec<(u64, UnixStream)>,
}

#[derive(Debug)]
struct Shared<D> {
    device: Mutex<D>,
    conns: Mutex<Conns>,
    plugged: AtomicBool,
    stop: Stop,
}

/// Locks, riding over poisoning: a panicked holder leaves plain data.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The device's answers to one incoming report, after its reply delay (the
/// `slow` fault; slept outside the lock). Answers are held back, not the
/// reports of a request still arriving: sleeping after every report would
/// run a multi-report request past the device's own message timeout
/// (section 3.5). Every server (socket, UHID) answers through here.
pub(super) fn answer<D: LinkDevice>(device: &Mutex<D>, report: &[u8]) -> Vec<Report> {
    let (answers, delay) = {
        let mut d = lock(device);
        (d.handle_report(report), d.reply_delay())
    };
    if !delay.is_zero() && !answers.is_empty() {
        std::thread::sleep(delay);
    }
    answers
}

impl<D: LinkDevice> Shared<D> {
    fn plug(&self) {
        let _conns = lock(&self.conns);
        if !self.plugged.swap(true, Ordering::SeqCst) {
            lock(&self.device).power_up();
            log_link::<D>("plugged in");
        }
    }

    fn unplug(&self) {
        let mut conns = lock(&self.conns);
        if self.plugged.swap(false, Ordering::SeqCst) {
            log_link::<D>("unplugged");
        }
        for (_, s) in conns.open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl<D: LinkDevice> ControlTarget for Shared<D> {
    type Device = D;
    fn plug(&self) -> std::io::Result<()> {
        Shared::plug(self);
        Ok(())
    }
    fn unplug(&self) -> std::io::Result<()> {
        Shared::unplug(self);
        Ok(())
    }
    fn status(&self) -> String {
        lock(&self.device).status(self.plugged.load(Ordering::SeqCst), Link::Socket)
    }
    fn device(&self) -> &Mutex<D> {
        &self.device
    }
    fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }
}

/// What the control socket drives: the socket link here, the UHID device in
/// [`super::uhid`]. The control protocol is written once, over this.
pub(super) trait ControlTarget {
    /// The device behind.
    type Device: LinkDevice;
    /// Plugs the dongle in (a power-up).
    fn plug(&self) -> std::io::Result<()>;
    /// Unplugs it.
    fn unplug(&self) -> std::io::Result<()>;
    /// `ok plugged=... ...`.
    fn status(&self) -> String;
    /// The device (for `fault`).
    fn device(&self) -> &Mutex<Self::Device>;
    /// Whether the server is shutting down.
    fn stopped(&self) -> bool;
}

/// Answers one control line: `plug`, `unplug`, `status` or `fault ...`.
fn control_line<T: ControlTarget>(target: &T, line: &str) -> String {
    let done = |r: std::io::Result<()>| match r {
        Ok(()) => target.status(),
        Err(e) => format!("error: {e}"),
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let fault = match words[..] {
        ["plug"] => return done(target.plug()),
        ["unplug"] => return done(target.unplug()),
        ["status"] => return target.status(),
        ["fault", ref args @ ..] => lock(target.device()).fault(args),
        _ => None,
    };
    match fault {
        Some(Ok(())) => target.status(),
        Some(Err(e)) => format!("error: {e}"),
        None => format!(
            "error: unknown command {line:?}: {}",
            <T::Device as LinkDevice>::COMMANDS
        ),
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

/// Refuses to clobber a live server at `path` ([`LinkDevice::BUSY`]);
/// removes a stale socket left by a killed one.
pub(super) fn claim<D: LinkDevice>(path: &Path) -> std::io::Result<()> {
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{}: {}", path.display(), D::BUSY),
        ));
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// The native emulator on the socket link.
pub type SocketEmulator = SocketServer<Device>;

/// A running socket server of device `D`. Dropping it stops it and removes
/// its sockets.
#[derive(Debug)]
pub struct SocketServer<D: LinkDevice> {
    shared: Arc<Shared<D>>,
    path: PathBuf,
    threads: Vec<JoinHandle<()>>,
}

impl<D: LinkDevice> SocketServer<D> {
    /// Serves `device` on `path` (and `path.ctl`), plugged in.
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::AddrInUse`] when something already answers on
    /// either socket; otherwise when a socket cannot be bound or a thread
    /// cannot be started.
    pub fn spawn(device: D, path: &Path) -> std::io::Result<Self> {
        let ctl = control_path(path);
        claim::<D>(path)?;
        claim::<D>(&ctl)?;
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
            .name(format!("{}-accept", D::THREADS))
            .spawn(move || accept_loop(&s, &listener))?;
        let s = shared.clone();
        let control = std::thread::Builder::new()
            .name(format!("{}-control", D::THREADS))
            .spawn(move || control_loop(&*s, &ctl_listener))?;
        Ok(SocketServer {
            shared,
            path: path.to_path_buf(),
            threads: vec![accept, control],
        })
    }

    /// The data socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Plugs the device in (a power-up).
    pub fn plug(&self) {
        self.shared.plug();
    }

    /// Unplugs it: open connections fail at once; new ones until [`Self::plug`].
    pub fn unplug(&self) {
        self.shared.unplug();
    }

    /// Runs `f` on the device (to read its counter, say).
    pub fn with_device<T>(&self, f: impl FnOnce(&mut D) -> T) -> T {
        f(&mut lock(&self.shared.device))
    }
}

impl SocketServer<Device> {
    /// Switches the fault mode.
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.shared.device).set_fault(fault);
    }
}

impl<D: LinkDevice> Drop for SocketServer<D> {
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

fn accept_loop<D: LinkDevice>(shared: &Arc<Shared<D>>, listener: &UnixListener) {
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
            .name(format!("{}-conn", D::THREADS))
            .spawn(move || {
                serve(&s, stream);
                lock(&s.conns).open.retain(|(i, _)| *i != id);
            });
        if spawned.is_err() {
            lock(&shared.conns).open.retain(|(i, _)| *i != id);
        }
    }
}

fn serve<D: LinkDevice>(shared: &Shared<D>, mut stream: UnixStream) {
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
