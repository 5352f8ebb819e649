//! The softkey on a Unix socket, with plug/unplug from outside: the
//! emulator's socket link (`docs/dongle-protocol.md`, sections 2.2 and 7),
//! mirrored so a host without `/dev/uhid` reaches a FIDO2 key with the
//! `socket:PATH` selector.
//!
//! Each connection carries fixed 64-byte records, like a hidraw handle;
//! answers go to the connection that asked. The control socket beside it
//! (`PATH.ctl`) takes one line per connection: `plug`, `unplug` or
//! `status`, and answers `ok plugged=... credentials=... counter=...` or
//! `error: ...` (`tether dongle plug|unplug|replug-bench --socket PATH` and
//! [`tether_emulator::socket::control`] speak it).
//!
//! Unplug looks like removal: every open connection is shut down at once (a
//! blocked read sees EOF), new connections are closed as soon as they are
//! accepted until `plug`, which powers the device up afresh (its HID
//! channels are gone; credentials and counters stay).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tether_dongle::ctaphid::REPORT_LEN;
pub use tether_emulator::socket::{control, control_path};

use crate::device::{Device, lock};

/// What the control socket drives: the socket link here, the UHID device
/// in [`crate::uhid`].
pub(crate) trait ControlTarget {
    /// Plugs the key in (a power-up).
    fn plug(&self) -> std::io::Result<()>;
    /// Unplugs it.
    fn unplug(&self) -> std::io::Result<()>;
    /// `ok plugged=... credentials=... counter=...`.
    fn status(&self) -> String;
    /// Whether the server is shutting down.
    fn stopped(&self) -> bool;
}

fn control_line(target: &impl ControlTarget, line: &str) -> String {
    let done = |r: std::io::Result<()>| match r {
        Ok(()) => target.status(),
        Err(e) => format!("error: {e}"),
    };
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["plug"] => done(target.plug()),
        ["unplug"] => done(target.unplug()),
        ["status"] => target.status(),
        ["fault", ..] => {
            "error: the softkey's faults are flags (--require-up, --force-up, --no-counter, --state)"
                .into()
        }
        _ => format!("error: unknown command {line:?}: plug, unplug, status"),
    }
}

/// Serves the control socket until the target stops.
pub(crate) fn control_loop(target: &impl ControlTarget, listener: &UnixListener) {
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

/// Refuses to clobber a live server at `path`; removes a stale socket.
pub(crate) fn claim(path: &Path) -> std::io::Result<()> {
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{}: a dongle is already served there", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

#[derive(Debug)]
struct Shared {
    device: Mutex<Device>,
    conns: Mutex<Vec<(u64, UnixStream)>>,
    next_id: Mutex<u64>,
    plugged: AtomicBool,
    stopped: AtomicBool,
}

impl Shared {
    fn do_plug(&self) {
        let _conns = lock(&self.conns);
        if !self.plugged.swap(true, Ordering::SeqCst) {
            lock(&self.device).power_up();
            tracing::info!("plugged in");
        }
    }

    fn do_unplug(&self) {
        let mut conns = lock(&self.conns);
        if self.plugged.swap(false, Ordering::SeqCst) {
            tracing::info!("unplugged");
        }
        for (_, s) in conns.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl ControlTarget for Shared {
    fn plug(&self) -> std::io::Result<()> {
        self.do_plug();
        Ok(())
    }
    fn unplug(&self) -> std::io::Result<()> {
        self.do_unplug();
        Ok(())
    }
    fn status(&self) -> String {
        format!(
            "ok plugged={} transport=socket {}",
            self.plugged.load(Ordering::SeqCst),
            lock(&self.device).describe()
        )
    }
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// A running socket softkey. Dropping it stops it and removes its sockets.
#[derive(Debug)]
pub struct SocketKey {
    shared: Arc<Shared>,
    path: PathBuf,
    threads: Vec<JoinHandle<()>>,
}

impl SocketKey {
    /// Serves `device` on `path` (and `path.ctl`), plugged in.
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::AddrInUse`] when something already answers on
    /// either socket; otherwise when a socket cannot be bound or a thread
    /// cannot be started.
    pub fn spawn(device: Device, path: &Path) -> std::io::Result<SocketKey> {
        let ctl = control_path(path);
        claim(path)?;
        claim(&ctl)?;
        let listener = UnixListener::bind(path)?;
        let ctl_listener = UnixListener::bind(&ctl)?;
        let shared = Arc::new(Shared {
            device: Mutex::new(device),
            conns: Mutex::default(),
            next_id: Mutex::new(0),
            plugged: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("softkey-accept".into())
            .spawn(move || accept_loop(&s, &listener))?;
        let s = shared.clone();
        let control = std::thread::Builder::new()
            .name("softkey-control".into())
            .spawn(move || control_loop(&*s, &ctl_listener))?;
        Ok(SocketKey {
            shared,
            path: path.to_path_buf(),
            threads: vec![accept, control],
        })
    }

    /// The data socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Plugs the key in (a power-up).
    pub fn plug(&self) {
        self.shared.do_plug();
    }

    /// Unplugs it: open connections fail at once; new ones until [`Self::plug`].
    pub fn unplug(&self) {
        self.shared.do_unplug();
    }

    /// Runs `f` on the device (to read its store, say).
    pub fn with_device<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        f(&mut lock(&self.shared.device))
    }
}

impl Drop for SocketKey {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.do_unplug();
        // Wake the blocked accepts; a thread whose socket file is already
        // gone cannot be woken and is detached (it holds only its listener).
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
        if shared.stopped() {
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
            let mut next = lock(&shared.next_id);
            *next += 1;
            conns.push((*next, clone));
            *next
        };
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("softkey-conn".into())
            .spawn(move || {
                serve(&s, stream);
                lock(&s.conns).retain(|(i, _)| *i != id);
            });
        if spawned.is_err() {
            lock(&shared.conns).retain(|(i, _)| *i != id);
        }
    }
}

fn serve(shared: &Shared, mut stream: UnixStream) {
    let mut report = [0u8; REPORT_LEN];
    loop {
        if stream.read_exact(&mut report).is_err() || !shared.plugged.load(Ordering::SeqCst) {
            return;
        }
        let answers = lock(&shared.device).handle_report(&report);
        for a in answers {
            if stream.write_all(&a).is_err() {
                return;
            }
        }
    }
}
