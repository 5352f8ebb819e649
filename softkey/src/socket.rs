//! The softkey on a Unix socket, with plug/unplug from outside: the
//! emulator's socket link (`docs/dongle-protocol.md`, sections 2.2 and 7),
//! so a host without `/dev/uhid` reaches a FIDO2 key with the `socket:PATH`
//! selector.
//!
//! The server is the emulator's own ([`tether_emulator::SocketServer`],
//! generic over the device behind it), serving the softkey's [`Device`]
//! through its [`LinkDevice`] implementation here.
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

use tether_dongle::ctaphid::Report;
pub use tether_emulator::socket::{Link, LinkDevice, SocketServer, control, control_path};

use crate::device::Device;

/// A running socket softkey. Dropping it stops it and removes its sockets.
pub type SocketKey = SocketServer<Device>;

impl LinkDevice for Device {
    const THREADS: &'static str = "softkey";
    const BUSY: &'static str = "a dongle is already served there";
    const COMMANDS: &'static str = "plug, unplug, status";
    const LOG_LINKS: bool = true;

    fn handle_report(&mut self, report: &[u8]) -> Vec<Report> {
        Device::handle_report(self, report)
    }

    fn power_up(&mut self) {
        Device::power_up(self);
    }

    fn fault(&mut self, _args: &[&str]) -> Option<Result<(), String>> {
        Some(Err(
            "the softkey's faults are flags (--require-up, --force-up, --no-counter, --state)"
                .into(),
        ))
    }

    fn status(&self, plugged: bool, link: Link<'_>) -> String {
        match link {
            Link::Socket => format!("ok plugged={plugged} transport=socket {}", self.describe()),
            Link::Uhid { config, serial } => format!(
                "ok plugged={plugged} transport=uhid uhid={:04x}:{:04x} usage_page={:#06x} serial={serial} {}",
                config.vid,
                config.pid,
                config.usage_page,
                self.describe()
            ),
        }
    }
}
