//! How the emulator's server threads learn that it is stopping: one flag
//! type for the socket server and the UHID device alike.
//!
//! Not the `CancellationToken` that stops tetherd and the CLI's services:
//! these are plain blocking threads, each parked in `accept()` or `read()`
//! (a Unix listener, `/dev/uhid`), not in a wait that a token could end.
//! What wakes them is what wakes such a call (a connection to the listener,
//! the kernel device destroyed); awake, they look at this flag. A token
//! here would be this flag with a tokio dependency added to the crate that
//! firmware follows and the fuzz targets link.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once when the emulator is dropped; read by its threads after each
/// wake-up.
#[derive(Debug, Default)]
pub(crate) struct Stop(AtomicBool);

impl Stop {
    /// Marks the emulator as stopping (the caller then wakes its threads).
    pub(crate) fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the emulator is stopping.
    pub(crate) fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
