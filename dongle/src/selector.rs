//! Which dongle to open: `hid`, `hid:VID:PID`, `hid:VID:PID:SERIAL` or
//! `socket:PATH`, as tetherd's `--dongle` and the CLI take it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::hid::{DEFAULT_PID, DEFAULT_VID};

/// Which dongle to talk to. Parses from `hid`, `hid:VID:PID`,
/// `hid:VID:PID:SERIAL` (hex ids) or `socket:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A USB HID dongle.
    Hid {
        /// Vendor id.
        vid: u16,
        /// Product id.
        pid: u16,
        /// USB serial, when several are plugged.
        serial: Option<String>,
    },
    /// The emulator's Unix socket.
    Socket(PathBuf),
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: expected hid, hid:VID:PID, hid:VID:PID:SERIAL or socket:PATH")]
pub struct SelectorError(String);

fn hex16(s: &str) -> Option<u16> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    u16::from_str_radix(s, 16).ok()
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        let bad = || SelectorError(s.to_string());
        if let Some(path) = s.strip_prefix("socket:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Selector::Socket(PathBuf::from(path)));
        }
        if s == "hid" {
            return Ok(Selector::Hid {
                vid: DEFAULT_VID,
                pid: DEFAULT_PID,
                serial: None,
            });
        }
        let rest = s.strip_prefix("hid:").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let vid = parts.next().and_then(hex16).ok_or_else(bad)?;
        let pid = parts.next().and_then(hex16).ok_or_else(bad)?;
        let serial = match parts.next() {
            None => None,
            Some("") => return Err(bad()),
            Some(s) => Some(s.to_string()),
        };
        Ok(Selector::Hid { vid, pid, serial })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Hid { vid, pid, serial } => {
                write!(f, "hid:{vid:04x}:{pid:04x}")?;
                match serial {
                    Some(s) => write!(f, ":{s}"),
                    None => Ok(()),
                }
            }
            Selector::Socket(p) => write!(f, "socket:{}", p.display()),
        }
    }
}
