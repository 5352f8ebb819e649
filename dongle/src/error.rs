//! The one error type of the dongle link, and the device's error codes.
//!
//! [`LinkError`] tells tetherd what happened in the terms it acts on, for
//! every protocol alike: no dongle, the dongle went away, it did not answer
//! in time, it declined (with its [`ErrorCode`]), or it answered something
//! that breaks the protocol ([`ProtocolError`], typed, never a string inside
//! an `io::Error`).

use std::fmt;

use crate::ctaphid::{Command, FrameError};

/// A `Result` with the dongle link's [`LinkError`].
pub type Result<T, E = LinkError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a dongle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No dongle is present (nothing to open, or nothing answered the channel allocation).
    #[error("no dongle found")]
    Absent,
    /// The dongle was removed (or the emulator unplugged) while open.
    #[error("dongle unplugged")]
    Removed,
    /// The dongle did not answer within the command's timeout.
    #[error("dongle did not answer in time")]
    Timeout,
    /// The dongle is there but its own rules declined the request (an
    /// ERROR response: rate, window, ...).
    #[error("dongle refused: {0}")]
    Declined(ErrorCode),
    /// The dongle answered something that breaks the protocol.
    #[error("dongle protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// A FIDO2 key answered a CTAP2 status other than success (FIDO CTAP
    /// 2.1, section 6.3), or demanded a touch for a silent request.
    #[error("security key refused: {0}")]
    Ctap(crate::fido2::CtapStatus),
    /// An operating-system error on the link that does not mean removal.
    #[error("dongle link I/O: {0}")]
    Io(#[source] std::io::Error),
    /// This kind of dongle does not do what was asked (e.g. a revocation
    /// receipt from a dongle kind that has no such command yet).
    #[error("{0} is not supported by this dongle kind")]
    Unsupported(&'static str),
    /// hidapi failed in a way that does not mean removal (e.g. permissions).
    #[error("hidapi: {0}")]
    Hid(#[source] hidapi::HidError),
}

impl LinkError {
    /// True when the dongle is absent or was removed: tetherd drops the
    /// session and waits for a plug, rather than reporting a fault.
    pub fn is_gone(&self) -> bool {
        matches!(self, LinkError::Absent | LinkError::Removed)
    }
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Protocol(ProtocolError::Frame(e))
    }
}

/// An answer that breaks the protocol (`docs/dongle-protocol.md`, section 5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A report that does not frame (section 3).
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The INIT answer did not echo our nonce.
    #[error("channel allocation answered another host's nonce")]
    NonceMismatch,
    /// The device allocated a reserved channel id.
    #[error("device allocated reserved channel {0:#010x}")]
    BadChannel(u32),
    /// The answer is for another command than the one asked.
    #[error("answer to command {got:#04x}, expected {expected:#04x}")]
    UnexpectedCommand {
        /// The command sent.
        expected: u8,
        /// The command answered.
        got: u8,
    },
    /// A payload of the wrong size for its command.
    #[error("{what}: {got} bytes, expected {expected}")]
    BadLength {
        /// The payload.
        what: &'static str,
        /// Bytes expected (the minimum, for variable-size payloads).
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// Bytes after the end of a payload.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes {
        /// The payload.
        what: &'static str,
        /// How many.
        extra: usize,
    },
    /// A payload whose fields do not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The payload.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// The error codes of an ERROR response (section 5). Unknown codes are
/// kept as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Unknown command, or a command not allowed on this channel.
    InvalidCommand,
    /// A parameter is out of range.
    InvalidParameter,
    /// The payload length is wrong for the command, or above the maximum.
    InvalidLength,
    /// A continuation packet out of sequence.
    InvalidSequence,
    /// A message was not completed in time.
    MessageTimeout,
    /// Another channel is in the middle of a message.
    ChannelBusy,
    /// The channel was never allocated, or the broadcast channel was misused.
    InvalidChannel,
    /// DELEGATE refused by the rate limit.
    RateLimited,
    /// DELEGATE refused: the window is longer than the firmware allows.
    WindowTooLong,
    /// DELEGATE refused: `not_before` is earlier than the last signed one.
    NotBeforeBackwards,
    /// DELEGATE refused: `not_before` runs ahead of the dongle's own ticks.
    NotBeforeAhead,
    /// DELEGATE refused: `not_after` is not after `not_before`.
    InvalidWindow,
    /// The device failed internally (e.g. could not persist its counter).
    Internal,
    /// A code this host does not know.
    Other(u8),
}

impl ErrorCode {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::InvalidCommand => 0x01,
            ErrorCode::InvalidParameter => 0x02,
            ErrorCode::InvalidLength => 0x03,
            ErrorCode::InvalidSequence => 0x04,
            ErrorCode::MessageTimeout => 0x05,
            ErrorCode::ChannelBusy => 0x06,
            ErrorCode::InvalidChannel => 0x0B,
            ErrorCode::RateLimited => 0x10,
            ErrorCode::WindowTooLong => 0x11,
            ErrorCode::NotBeforeBackwards => 0x12,
            ErrorCode::NotBeforeAhead => 0x13,
            ErrorCode::InvalidWindow => 0x14,
            ErrorCode::Internal => 0x7F,
            ErrorCode::Other(b) => b,
        }
    }
}

impl From<u8> for ErrorCode {
    fn from(b: u8) -> Self {
        match b {
            0x01 => ErrorCode::InvalidCommand,
            0x02 => ErrorCode::InvalidParameter,
            0x03 => ErrorCode::InvalidLength,
            0x04 => ErrorCode::InvalidSequence,
            0x05 => ErrorCode::MessageTimeout,
            0x06 => ErrorCode::ChannelBusy,
            0x0B => ErrorCode::InvalidChannel,
            0x10 => ErrorCode::RateLimited,
            0x11 => ErrorCode::WindowTooLong,
            0x12 => ErrorCode::NotBeforeBackwards,
            0x13 => ErrorCode::NotBeforeAhead,
            0x14 => ErrorCode::InvalidWindow,
            0x7F => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorCode::InvalidCommand => "invalid command",
            ErrorCode::InvalidParameter => "invalid parameter",
            ErrorCode::InvalidLength => "invalid length",
            ErrorCode::InvalidSequence => "invalid sequence",
            ErrorCode::MessageTimeout => "message timeout",
            ErrorCode::ChannelBusy => "channel busy",
            ErrorCode::InvalidChannel => "invalid channel",
            ErrorCode::RateLimited => "rate limited",
            ErrorCode::WindowTooLong => "validity window too long",
            ErrorCode::NotBeforeBackwards => "not-before earlier than the last signed one",
            ErrorCode::NotBeforeAhead => "not-before runs ahead of the dongle's ticks",
            ErrorCode::InvalidWindow => "empty validity window",
            ErrorCode::Internal => "internal error",
            ErrorCode::Other(b) => return write!(f, "error code {b:#04x}"),
        };
        write!(f, "{text} ({:#04x})", self.code())
    }
}

/// Used in messages: which command timed out or failed.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}
