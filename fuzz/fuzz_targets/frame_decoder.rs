//! The HID frame decoder (`authority/src/dongle/frame.rs`): the input is a
//! stream of 64-byte reports (a shorter tail tests the size check), fed to
//! `Packet::decode` and to a `Reassembler` on the first report's channel.
//!
//! Asserts: no panic; every report that decodes encodes back to the same
//! bytes; decode errors are the documented ones; every message reassembled
//! fits the maximum and survives `fragment` + reassembly unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_dongle::ctaphid::{
    FrameError, MAX_MESSAGE, Message, Packet, Progress, REPORT_LEN, Reassembler, fragment,
};

fn refragment(m: &Message) -> Message {
    let reports = fragment(m.cid, m.cmd, &m.payload).expect("a reassembled message is oversized");
    let mut r = Reassembler::new(m.cid);
    for (i, report) in reports.iter().enumerate() {
        match r.push(report) {
            Ok(Progress::Done(again)) => {
                assert_eq!(i, reports.len() - 1, "message done before its last report");
                return again;
            }
            Ok(Progress::NeedMore) => {}
            Err(e) => panic!("fragment() made report {i} that does not reassemble: {e}"),
        }
    }
    panic!("fragment() made an incomplete message")
}

fuzz_target!(|data: &[u8]| {
    let cid = match data {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 1,
    };
    let mut r = Reassembler::new(cid);
    for report in data.chunks(REPORT_LEN) {
        match Packet::decode(report) {
            Ok(Packet::Init(p)) => assert_eq!(&p.encode()[..], report),
            Ok(Packet::Cont(p)) => assert_eq!(&p.encode()[..], report),
            Err(FrameError::ReportSize(n)) => assert!(n == report.len() && n != REPORT_LEN),
            Err(FrameError::Oversized(n)) => assert!(n > MAX_MESSAGE && report[4] & 0x80 != 0),
            Err(e) => panic!("Packet::decode gave a reassembly error: {e}"),
        }
        if let Ok(Progress::Done(m)) = r.push(report) {
            assert_eq!(m.cid, cid);
            assert!(m.payload.len() <= MAX_MESSAGE);
            assert_eq!(refragment(&m), m);
        }
    }
    let _ = r.finish();
    assert_eq!(r.finish(), None, "finish() leaves nothing behind");
});
