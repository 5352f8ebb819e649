//! The dongle link, both ends (`docs/dongle-protocol.md`).
//!
//! # What tetherd calls
//!
//! All I/O is blocking; tetherd runs it on its own thread.
//!
//! ```text
//! Selector::from_str("hid" | "hid:VID:PID" | "hid:VID:PID:SERIAL" | "socket:PATH")
//! Client::connect(&Selector) -> Result<Client>          // Err(Error::NoDongle) when absent
//! Client::info(&mut self) -> Result<DongleInfo>         // serial, firmware, public_key, counter
//! Client::presence(&mut self, &[u8; 32]) -> Result<[u8; 64]>      // raw signature; caller verifies
//! Client::delegate(&mut self, &DelegationRequest) -> Result<Certificate>  // caller verifies
//! Client::wait_gone(&mut self, Duration) -> Result<()>  // Err(Error::Unplugged) at once on removal
//! Error::is_gone(&self) -> bool                         // NoDongle | Unplugged
//! ```
//!
//! [`Error`] is `NoDongle`, `Unplugged`, `Timeout`, `Device(ErrorCode)`,
//! `Protocol(ProtocolError)`, `Io(io::Error)` or `Hid(HidError)`.
//!
//! The client returns what the dongle said; deciding whether to trust it
//! (signature under the licensed key, the request echoed, a counter that
//! only grows) is the caller's job, as in `presence.rs`.
//!
//! # Layout
//!
//! - [`frame`]: 64-byte reports, init/continuation packets, reassembly (section 3).
//! - [`message`]: command payloads (section 4).
//! - [`transport`]: the report trait and the socket, in-process and scripted links.
//! - [`hid`]: the hidapi link.
//! - [`client`]: the host end.
//! - [`emulator`]: the device end, and the socket emulator with plug/unplug.

pub mod client;
pub mod emulator;
pub mod error;
pub mod frame;
pub mod hid;
pub mod message;
pub mod transport;

pub use client::{Client, Selector, SelectorError, Timeouts};
pub use error::{Error, ErrorCode, ProtocolError, Result};
pub use frame::FrameError;
pub use message::DongleInfo;
pub use transport::Transport;
