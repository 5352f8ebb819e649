//! The one trait every link implements: write a 64-byte report, read one
//! with a timeout (`docs/dongle-protocol.md`, section 2). Framing is written
//! once on top of it, in [`super::Client`].
//!
//! Implementations here: [`SocketTransport`] (the emulator's Unix socket),
//! [`LocalTransport`] (an in-process [`Device`], for unit tests) and
//! [`Scripted`] (replays fixed reports and records what was written, for
//! exact-byte tests). The hidapi link is in [`super::hid`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::emulator::Device;
use super::error::{Error, Result};
use super::frame::{REPORT_LEN, Report};

/// A link that carries 64-byte reports.
pub trait Transport: Send + fmt::Debug {
    /// Writes one report.
    fn write_report(&mut self, report: &Report) -> Result<()>;
    /// Reads one report, waiting at most `timeout`; `Ok(None)` when none came.
    /// A removed device fails with [`Error::Unplugged`] at once.
    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>>;
}

/// Maps a socket error: a peer that went away is an unplug.
pub(crate) fn map_io(e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::NotConnected
        | ErrorKind::UnexpectedEof => Error::Unplugged,
        _ => Error::Io(e),
    }
}

/// The emulator link: a Unix stream socket carrying fixed 64-byte records
/// (section 2.2). EOF or a reset is [`Error::Unplugged`].
#[derive(Debug)]
pub struct SocketTransport {
    stream: UnixStream,
    buf: Report,
    filled: usize,
}

impl SocketTransport {
    /// Connects; a missing or refusing socket is [`Error::NoDongle`].
    pub fn connect(path: &Path) -> Result<SocketTransport> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => Error::NoDongle,
            _ => Error::Io(e),
        })?;
        Ok(SocketTransport {
            stream,
            buf: [0; REPORT_LEN],
            filled: 0,
        })
    }
}

impl Transport for SocketTransport {
    fn write_report(&mut self, report: &Report) -> Result<()> {
        self.stream.write_all(report).map_err(map_io)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero timeout would mean "block forever".
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(Error::Io)?;
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Err(Error::Unplugged),
                Ok(n) => {
                    self.filled += n;
                    if self.filled == REPORT_LEN {
                        self.filled = 0;
                        return Ok(Some(self.buf));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(map_io(e)),
            }
        }
    }
}

/// An in-process emulated device: every written report is answered at once
/// by the shared [`Device`]. For unit tests; faults that delay answers are
/// not modelled here (use the socket emulator).
#[derive(Debug)]
pub struct LocalTransport {
    device: Arc<Mutex<Device>>,
    queue: VecDeque<Report>,
}

impl LocalTransport {
    /// A link to `device` (shared, so a test can inspect or change it).
    pub fn new(device: Arc<Mutex<Device>>) -> LocalTransport {
        LocalTransport {
            device,
            queue: VecDeque::new(),
        }
    }
}

impl Transport for LocalTransport {
    fn write_report(&mut self, report: &Report) -> Result<()> {
        let mut device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        self.queue.extend(device.handle_report(report));
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>> {
        match self.queue.pop_front() {
            Some(r) => Ok(Some(r)),
            None => {
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

/// What a [`Scripted`] read returns next.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This report.
    Report(Report),
    /// Nothing within the timeout (returns at once).
    Silence,
    /// The device is gone.
    Gone,
}

/// A scripted mock device: reads replay [`Reply`]s in order (then silence);
/// writes are recorded for exact-byte assertions.
#[derive(Debug, Default)]
pub struct Scripted {
    /// Replies still to give.
    pub replies: VecDeque<Reply>,
    /// Every report written so far (shared so a test keeps a handle).
    pub written: Arc<Mutex<Vec<Report>>>,
}

impl Scripted {
    /// A mock that will give `replies`.
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Scripted {
        Scripted {
            replies: replies.into_iter().collect(),
            written: Arc::default(),
        }
    }
}

impl Transport for Scripted {
    fn write_report(&mut self, report: &Report) -> Result<()> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(*report);
        Ok(())
    }

    fn read_report(&mut self, _timeout: Duration) -> Result<Option<Report>> {
        match self.replies.pop_front() {
            Some(Reply::Report(r)) => Ok(Some(r)),
            Some(Reply::Silence) | None => Ok(None),
            Some(Reply::Gone) => Err(Error::Unplugged),
        }
    }
}
