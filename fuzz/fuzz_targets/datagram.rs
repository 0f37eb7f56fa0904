//! Any bytes as one UDP datagram: the parser, the UAS triage and the 400 builder must never
//! panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_sip::{
    Message, ParseLimits, UasPolicy, bad_request_for, parse_datagram, triage_datagram,
};

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits::default();
    let buf = Bytes::copy_from_slice(data);
    match parse_datagram(&buf, &limits) {
        Ok(m) => {
            if let Message::Request(r) = &m {
                let _ = r.top_via();
                let _ = r.from().map(|a| a.uri());
                let _ = r.to().map(|a| a.display_name());
                let _ = r.cseq();
                let _ = r.contacts().count();
            }
        }
        Err(e) => {
            let _ = bad_request_for(data, &e, &limits);
        }
    }
    let _ = triage_datagram(&buf, &limits, &UasPolicy::default());
});
