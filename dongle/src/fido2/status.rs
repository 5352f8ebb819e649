//! CTAP2 status codes (FIDO CTAP 2.1, section 6.3 "Status codes"), each
//! with the sentence an operator reads when a key answers it.

use std::fmt;

/// The first byte of every CTAP2 response, other than success (0x00).
/// Unknown codes are kept as [`CtapStatus::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CtapStatus {
    /// CTAP1_ERR_INVALID_COMMAND (0x01): the key does not know the command.
    InvalidCommand,
    /// CTAP1_ERR_INVALID_PARAMETER (0x02).
    InvalidParameter,
    /// CTAP1_ERR_INVALID_LENGTH (0x03).
    InvalidLength,
    /// CTAP2_ERR_CBOR_UNEXPECTED_TYPE (0x11).
    CborUnexpectedType,
    /// CTAP2_ERR_INVALID_CBOR (0x12).
    InvalidCbor,
    /// CTAP2_ERR_MISSING_PARAMETER (0x14).
    MissingParameter,
    /// CTAP2_ERR_UNSUPPORTED_EXTENSION (0x16).
    UnsupportedExtension,
    /// CTAP2_ERR_CREDENTIAL_EXCLUDED (0x19).
    CredentialExcluded,
    /// CTAP2_ERR_PROCESSING (0x21).
    Processing,
    /// CTAP2_ERR_UNSUPPORTED_ALGORITHM (0x26): none of EdDSA, Ed25519, ES256.
    UnsupportedAlgorithm,
    /// CTAP2_ERR_OPERATION_DENIED (0x27): the key refuses to sign without a touch.
    OperationDenied,
    /// CTAP2_ERR_KEY_STORE_FULL (0x28).
    KeyStoreFull,
    /// CTAP2_ERR_UNSUPPORTED_OPTION (0x2B): e.g. `up=false` not supported.
    UnsupportedOption,
    /// CTAP2_ERR_INVALID_OPTION (0x2C).
    InvalidOption,
    /// CTAP2_ERR_KEEPALIVE_CANCEL (0x2D).
    KeepaliveCancel,
    /// CTAP2_ERR_NO_CREDENTIALS (0x2E): the key does not know the credential.
    NoCredentials,
    /// CTAP2_ERR_USER_ACTION_TIMEOUT (0x2F).
    UserActionTimeout,
    /// CTAP2_ERR_PIN_REQUIRED (0x36) / CTAP2_ERR_PUAT_REQUIRED.
    PinRequired,
    /// CTAP2_ERR_UP_REQUIRED (0x3B): user presence is required.
    UpRequired,
    /// CTAP1_ERR_OTHER (0x7F).
    Other7F,
    /// Any other code.
    Other(u8),
    /// Not a key's answer: the key asked for a touch (KEEPALIVE status
    /// UPNEEDED, CTAP 2.1 section 11.2.9.2.6) on an assertion sent with
    /// `up=false`, and the host cancelled it.
    TouchDemanded,
}

impl CtapStatus {
    /// The wire byte (0 for [`CtapStatus::TouchDemanded`], which never is one).
    pub fn code(self) -> u8 {
        match self {
            CtapStatus::InvalidCommand => 0x01,
            CtapStatus::InvalidParameter => 0x02,
            CtapStatus::InvalidLength => 0x03,
            CtapStatus::CborUnexpectedType => 0x11,
            CtapStatus::InvalidCbor => 0x12,
            CtapStatus::MissingParameter => 0x14,
            CtapStatus::UnsupportedExtension => 0x16,
            CtapStatus::CredentialExcluded => 0x19,
            CtapStatus::Processing => 0x21,
            CtapStatus::UnsupportedAlgorithm => 0x26,
            CtapStatus::OperationDenied => 0x27,
            CtapStatus::KeyStoreFull => 0x28,
            CtapStatus::UnsupportedOption => 0x2B,
            CtapStatus::InvalidOption => 0x2C,
            CtapStatus::KeepaliveCancel => 0x2D,
            CtapStatus::NoCredentials => 0x2E,
            CtapStatus::UserActionTimeout => 0x2F,
            CtapStatus::PinRequired => 0x36,
            CtapStatus::UpRequired => 0x3B,
            CtapStatus::Other7F => 0x7F,
            CtapStatus::Other(b) => b,
            CtapStatus::TouchDemanded => 0x00,
        }
    }

    /// True when the key will not sign without a touch: it cannot serve as
    /// a Tether dongle, whatever the host does.
    pub fn demands_touch(self) -> bool {
        matches!(
            self,
            CtapStatus::OperationDenied
                | CtapStatus::UpRequired
                | CtapStatus::UnsupportedOption
                | CtapStatus::TouchDemanded
                | CtapStatus::UserActionTimeout
        )
    }
}

impl From<u8> for CtapStatus {
    fn from(b: u8) -> Self {
        match b {
            0x01 => CtapStatus::InvalidCommand,
            0x02 => CtapStatus::InvalidParameter,
            0x03 => CtapStatus::InvalidLength,
            0x11 => CtapStatus::CborUnexpectedType,
            0x12 => CtapStatus::InvalidCbor,
            0x14 => CtapStatus::MissingParameter,
            0x16 => CtapStatus::UnsupportedExtension,
            0x19 => CtapStatus::CredentialExcluded,
            0x21 => CtapStatus::Processing,
            0x26 => CtapStatus::UnsupportedAlgorithm,
            0x27 => CtapStatus::OperationDenied,
            0x28 => CtapStatus::KeyStoreFull,
            0x2B => CtapStatus::UnsupportedOption,
            0x2C => CtapStatus::InvalidOption,
            0x2D => CtapStatus::KeepaliveCancel,
            0x2E => CtapStatus::NoCredentials,
            0x2F => CtapStatus::UserActionTimeout,
            0x36 => CtapStatus::PinRequired,
            0x3B => CtapStatus::UpRequired,
            0x7F => CtapStatus::Other7F,
            other => CtapStatus::Other(other),
        }
    }
}

impl fmt::Display for CtapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            CtapStatus::NoCredentials => {
                "the key does not know this credential (was it reset, or is it another key?)"
            }
            CtapStatus::OperationDenied
            | CtapStatus::UpRequired
            | CtapStatus::UnsupportedOption
            | CtapStatus::TouchDemanded
            | CtapStatus::UserActionTimeout => {
                "this key demands a touch for every signature: it cannot serve as a Tether dongle"
            }
            CtapStatus::UnsupportedAlgorithm => {
                "the key supports none of EdDSA (-8), Ed25519 (-19) or ES256 (-7)"
            }
            CtapStatus::PinRequired => {
                "the key demands a PIN (alwaysUv or credProtect): it cannot serve as a Tether dongle"
            }
            CtapStatus::KeyStoreFull => "the key's credential store is full",
            CtapStatus::InvalidCommand => "the key does not support this CTAP2 command",
            CtapStatus::InvalidParameter => "the key refused a parameter",
            CtapStatus::InvalidLength => "the key refused the message length",
            CtapStatus::CborUnexpectedType => "the key refused a CBOR type in our request",
            CtapStatus::InvalidCbor => "the key refused our CBOR",
            CtapStatus::MissingParameter => "the key misses a parameter",
            CtapStatus::UnsupportedExtension => "the key does not support an extension we sent",
            CtapStatus::CredentialExcluded => "the credential is excluded",
            CtapStatus::Processing => "the key is still processing",
            CtapStatus::InvalidOption => "the key refused an option",
            CtapStatus::KeepaliveCancel => "the request was cancelled",
            CtapStatus::Other7F => "the key failed (CTAP1_ERR_OTHER)",
            CtapStatus::Other(b) => return write!(f, "the key answered CTAP2 status {b:#04x}"),
        };
        if *self == CtapStatus::TouchDemanded {
            write!(f, "{text} (it asked for a touch)")
        } else {
            write!(f, "{text} (CTAP2 status {:#04x})", self.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_read_clearly() {
        for b in 0..=0xFFu8 {
            let s = CtapStatus::from(b);
            assert_eq!(s.code(), b);
        }
        assert!(
            CtapStatus::from(0x2E)
                .to_string()
                .contains("does not know this credential (was it reset")
        );
        assert!(
            CtapStatus::from(0x27)
                .to_string()
                .contains("demands a touch for every signature")
        );
        assert!(CtapStatus::from(0x27).demands_touch());
        assert!(!CtapStatus::from(0x2E).demands_touch());
    }
}
