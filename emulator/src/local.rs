//! An in-process link to a [`Device`], for unit tests and benches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_dongle::ctaphid::Report;
use tether_dongle::{Result, Transport};

use crate::Device;

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
