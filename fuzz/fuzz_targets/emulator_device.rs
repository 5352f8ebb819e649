//! The emulated dongle's whole input path (`Device::handle_report_at` in
//! `authority/src/dongle/emulator/mod.rs`: framing, channels, timeouts, the
//! request parser, the DELEGATE rules). Input: one configuration byte (see
//! `tether_fuzz::device`), then records of a clock byte and a 64-byte report.
//!
//! Asserts: no panic; everything the device sends back is a well-formed
//! answer the host side decodes (frames reassemble, ERROR is one byte,
//! PRESENCE one signature, INIT/INFO/DELEGATE decode with the host's own
//! decoders); certificates verify under the dongle key (no fault signs with
//! another key) and, without the rollback or replay fault, their counters
//! only grow.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tether_dongle::ctaphid::{Command, Message, Packet, Progress, Reassembler};
use tether_dongle::native::message::{
    DongleInfo, InitResponse, decode_delegate, decode_error, decode_presence, decode_receipt,
    decode_site_request,
};
use tether_emulator::Fault;
use tether_fuzz::{RECORD_LEN, clock_step, device, fault};
use tether_keys::{Dongle, PublicKey, testkeys};

static DONGLE: OnceLock<PublicKey<Dongle>> = OnceLock::new();

struct Host {
    fault: Fault,
    dongle: PublicKey<Dongle>,
    last_counter: Option<u32>,
}

impl Host {
    fn check(&mut self, m: &Message) {
        let dongle = self.dongle;
        match m.cmd {
            Command::Error => {
                decode_error(&m.payload).expect("ERROR answer is not one byte");
            }
            Command::Init => {
                InitResponse::decode(&m.payload).expect("INIT answer does not decode");
            }
            Command::Info => {
                let info = DongleInfo::decode(&m.payload).expect("INFO answer does not decode");
                assert_eq!(info.public_key, dongle);
            }
            Command::Presence => {
                decode_presence(&m.payload).expect("PRESENCE answer is not a signature");
            }
            Command::Delegate => {
                let cert = decode_delegate(&m.payload).expect("DELEGATE answer does not decode");
                cert.verify(&dongle)
                    .expect("certificate not signed by the dongle key");
                if matches!(self.fault, Fault::None | Fault::Slow(_)) {
                    if let Some(last) = self.last_counter {
                        assert!(cert.counter > last, "counter did not grow");
                    }
                    self.last_counter = Some(cert.counter);
                }
            }
            Command::Receipt => {
                let r = decode_receipt(&m.payload).expect("RECEIPT answer does not decode");
                r.verify_signature(&dongle)
                    .expect("receipt not signed by the dongle key");
            }
            Command::SiteRequest => {
                let r =
                    decode_site_request(&m.payload).expect("SITE_REQUEST answer does not decode");
                r.verify_signature()
                    .expect("site request not signed by its dongle key");
            }
            Command::Other(b) => panic!("device answered with command {b:#04x}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, records)) = data.split_first() else {
        return;
    };
    let mut dev = device(config);
    let mut host = Host {
        fault: fault(config),
        dongle: *DONGLE.get_or_init(|| testkeys::dongle().public()),
        last_counter: None,
    };
    let mut uptime = Duration::ZERO;
    for record in records.chunks(RECORD_LEN) {
        let (&step, report) = record.split_first().expect("chunks are not empty");
        uptime += clock_step(step);
        let answers = dev.handle_report_at(report, uptime);
        let mut partial: Option<Reassembler> = None;
        for answer in &answers {
            let packet = Packet::decode(answer).expect("device sent a malformed report");
            if let Packet::Init(_) = packet {
                assert!(
                    partial.is_none(),
                    "device began an answer before ending one"
                );
                partial = Some(Reassembler::new(packet.cid()));
            }
            let r = partial
                .as_mut()
                .expect("device sent a continuation with no answer begun");
            match r.push(answer).expect("device answer does not reassemble") {
                Progress::Done(m) => {
                    partial = None;
                    host.check(&m);
                }
                Progress::NeedMore => {}
            }
        }
        assert!(partial.is_none(), "device answer cut short");
    }
});
