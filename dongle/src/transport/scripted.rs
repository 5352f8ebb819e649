//! A scripted mock device for exact-byte tests (feature `test-util`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Transport;
use crate::ctaphid::Report;
use crate::error::{LinkError, Result};

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
            Some(Reply::Gone) => Err(LinkError::Removed),
        }
    }
}
