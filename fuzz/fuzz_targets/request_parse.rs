//! The dongle's request parser (`authority/src/dongle/message.rs`,
//! `Request::parse`): the first byte is the command, the rest the payload.
//!
//! Asserts: no panic; a request that parses encodes back to the same command
//! and payload (one request, one encoding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_dongle::ctaphid::Command;
use tether_dongle::native::message::Request;

fuzz_target!(|data: &[u8]| {
    let Some((&cmd, payload)) = data.split_first() else {
        return;
    };
    let cmd = Command::from(cmd);
    if let Ok(req) = Request::parse(cmd, payload) {
        let (cmd2, payload2) = req.encode();
        assert_eq!(cmd2, cmd);
        assert_eq!(payload2, payload);
        assert_eq!(Request::parse(cmd2, &payload2), Ok(req));
    }
});
