//! The dongle's request parser (`dongle/src/native/message.rs`,
//! `Request::parse`): the first byte is the command, the rest the payload.
//!
//! Asserts: no panic; a request that parses encodes back to the same command
//! and payload (one request, one encoding), except the first protocol's
//! fixed 80-byte DELEGATE payload, which the device still accepts and which
//! encodes in the extended form (`docs/dongle-protocol.md`, section 4.4):
//! its first 80 bytes are the same, the rest commits to nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_dongle::ctaphid::Command;
use tether_dongle::native::message::{DELEGATE_REQUEST_LEN, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&cmd, payload)) = data.split_first() else {
        return;
    };
    let cmd = Command::from(cmd);
    if let Ok(req) = Request::parse(cmd, payload) {
        let (cmd2, payload2) = req.encode();
        assert_eq!(cmd2, cmd);
        match &req {
            Request::Delegate(d) if payload.len() == DELEGATE_REQUEST_LEN => {
                assert_eq!(&payload2[..DELEGATE_REQUEST_LEN], payload);
                assert!(d.commitment.is_empty() && d.ledger.is_none());
            }
            _ => assert_eq!(payload2, payload),
        }
        assert_eq!(Request::parse(cmd2, &payload2), Ok(req));
    }
});
