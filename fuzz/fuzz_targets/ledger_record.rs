//! The usage ledger's record and frame decoders (`keys/src/ledger.rs`,
//! `Record::decode`, `read_frame`): what tetherd reads back from its own
//! segments at start, after a crash or an operator's edit.
//!
//! Asserts: no panic; a record that decodes is canonical (encodes to the
//! input) and its frame reads back as the same record; a frame that reads
//! whole used no more bytes than it was given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_keys::ledger::{Frame, Record, read_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = Record::decode(data) {
        assert_eq!(rec.encode(), data, "not canonical");
        let (frame, hash) = rec.frame();
        match read_frame(&frame) {
            Frame::Whole(again, h, used) => {
                assert_eq!(*again, rec);
                assert_eq!(h, hash);
                assert_eq!(used, frame.len());
            }
            other => panic!("own frame does not read back: {other:?}"),
        }
    }
    if let Frame::Whole(rec, _, used) = read_frame(data) {
        assert!(used <= data.len());
        assert_eq!(rec.encode().len() + 12, used);
    }
});
