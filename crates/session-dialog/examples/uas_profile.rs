//! The UAS call of `benches/uas_call.rs` in a plain loop, for profilers:
//!
//! ```text
//! cargo build --release -p session-dialog --example uas_profile
//! valgrind --tool=callgrind /path/to/target/release/examples/uas_profile 20000
//! perf record -g /path/to/target/release/examples/uas_profile 500000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_sip::Uri;
use session_types::StatusCode;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn invite() -> Bytes {
    let body = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    Bytes::from(format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
         To: service <sip:service@127.0.0.1:5060>\r\n\
         Call-ID: 1-12345@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn in_dialog(method: &str, branch: &str, seq: u32, to_tag: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
         To: service <sip:service@127.0.0.1:5060>;tag={to_tag}\r\n\
         Call-ID: 1-12345@127.0.0.1\r\n\
         CSeq: {seq} {method}\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let peer: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let mut ua = UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: 5060,
        contact: Uri::parse("sip:service@127.0.0.1:5060").unwrap(),
        large_requests_over_tcp: false,
    });
    let invite = invite();
    let mut now = Instant::now();
    let started = Instant::now();
    for _ in 0..calls {
        ua.handle_datagram(now, Protocol::Udp, peer, &invite);
        let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
            panic!("no INVITE")
        };
        let dialog = ua
            .answer(
                now,
                tx,
                StatusCode::OK,
                Vec::new(),
                Some(("application/sdp", Bytes::from_static(SDP))),
            )
            .unwrap()
            .unwrap();
        while let Some(t) = ua.poll_transmit() {
            black_box(t);
        }
        let tag = dialog.local_tag;
        ua.handle_datagram(
            now,
            Protocol::Udp,
            peer,
            &in_dialog("ACK", "z9hG4bK-1-2", 1, &tag),
        );
        ua.handle_datagram(
            now,
            Protocol::Udp,
            peer,
            &in_dialog("BYE", "z9hG4bK-1-3", 2, &tag),
        );
        while let Some(event) = ua.poll_event() {
            black_box(event);
        }
        while let Some(t) = ua.poll_transmit() {
            black_box(t);
        }
        now += Duration::from_secs(40);
        ua.handle_timeout(now);
        assert_eq!(ua.state_count(), 0);
    }
    let per_call = started.elapsed() / calls.max(1);
    println!("{calls} calls, {per_call:?} per call");
}
