//! The one trait every link implements: write a 64-byte report, read one
//! with a timeout (`docs/dongle-protocol.md`, section 2). Framing is written
//! once on top of it, in [`crate::native::Client`].
//!
//! Implementations here: [`SocketTransport`] (the emulator's Unix socket)
//! and, with the `test-util` feature, `Scripted` (replays fixed reports and
//! records what was written, for exact-byte tests). The hidapi link is in
//! [`crate::hid`]; the in-process emulated device is `tether-emulator`'s
//! `LocalTransport`.

use std::fmt;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ctaphid::{REPORT_LEN, Report};
use crate::error::{LinkError, Result};

/// A link that carries 64-byte reports.
pub trait Transport: Send + fmt::Debug {
    /// Writes one report.
    ///
    /// # Errors
    ///
    /// [`LinkError::Removed`] when the device is gone; another
    /// [`LinkError`] when the link fails otherwise.
    fn write_report(&mut self, report: &Report) -> Result<()>;
    /// Reads one report, waiting at most `timeout`; `Ok(None)` when none came.
    ///
    /// # Errors
    ///
    /// A removed device fails with [`LinkError::Removed`] at once; another
    /// [`LinkError`] when the link fails otherwise.
    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>>;
}

/// Maps a socket error: a peer that went away is an unplug.
pub(crate) fn map_io(e: std::io::Error) -> LinkError {
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::NotConnected
        | ErrorKind::UnexpectedEof => LinkError::Removed,
        _ => LinkError::Io(e),
    }
}

/// The emulator link: a Unix stream socket carrying fixed 64-byte records
/// (section 2.2). EOF or a reset is [`LinkError::Removed`].
#[derive(Debug)]
pub struct SocketTransport {
    stream: UnixStream,
    buf: Report,
    filled: usize,
}

impl SocketTransport {
    /// Connects to the emulator's socket.
    ///
    /// # Errors
    ///
    /// [`LinkError::Absent`] for a missing or refusing socket,
    /// [`LinkError::Io`] for any other failure.
    pub fn connect(path: &Path) -> Result<SocketTransport> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => LinkError::Absent,
            _ => LinkError::Io(e),
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
                .map_err(LinkError::Io)?;
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Err(LinkError::Removed),
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

#[cfg(any(test, feature = "test-util"))]
mod scripted;
#[cfg(any(test, feature = "test-util"))]
pub use scripted::{Reply, Scripted};
