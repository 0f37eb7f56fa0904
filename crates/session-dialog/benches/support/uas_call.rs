//! The sans-IO UAS call shared by `benches/uas_call.rs` and `examples/uas_profile.rs`:
//! a user agent, the peer's INVITE, and one complete call (INVITE → 200 with SDP, ACK,
//! BYE → 200, then the timers that drain it), so that the profile measures exactly what the
//! bench does.

#![allow(clippy::unwrap_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_sip::Uri;
use session_types::StatusCode;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The peer's address.
pub(crate) fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5061))
}

/// A user agent listening at 127.0.0.1:5060.
pub(crate) fn user_agent() -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: 5060,
        contact: Uri::parse("sip:service@127.0.0.1:5060").unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The peer's INVITE (SIPp's `uac` scenario, with SDP).
pub(crate) fn invite() -> Bytes {
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

/// The peer's ACK or BYE in the call whose To tag is `to_tag`, as text around that tag: the
/// peer's side of the call is the harness, not the user agent, so it is made once and only the
/// tag is spliced in per call (`format!` per message cost ≈ 1.2 k instructions of the ≈ 54 k a
/// call measured).
pub(crate) struct InDialog {
    before_tag: String,
    after_tag: String,
}

impl InDialog {
    fn new(method: &str, branch: &str, seq: u32) -> Self {
        Self {
            before_tag: format!(
                "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
                 From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
                 To: service <sip:service@127.0.0.1:5060>;tag="
            ),
            after_tag: format!(
                "\r\n\
                 Call-ID: 1-12345@127.0.0.1\r\n\
                 CSeq: {seq} {method}\r\n\
                 Contact: sip:sipp@127.0.0.1:5061\r\n\
                 Max-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
        }
    }

    fn with_tag(&self, to_tag: &str) -> Bytes {
        let mut text =
            Vec::with_capacity(self.before_tag.len() + to_tag.len() + self.after_tag.len());
        text.extend_from_slice(self.before_tag.as_bytes());
        text.extend_from_slice(to_tag.as_bytes());
        text.extend_from_slice(self.after_tag.as_bytes());
        Bytes::from(text)
    }
}

/// The peer's messages of every call: its INVITE, and its ACK and BYE around our To tag.
pub(crate) struct Peer {
    /// Where the peer sends from.
    pub(crate) addr: SocketAddr,
    /// The INVITE (SIPp's `uac` scenario, with SDP).
    pub(crate) invite: Bytes,
    ack: InDialog,
    bye: InDialog,
}

impl Peer {
    pub(crate) fn new() -> Self {
        Self {
            addr: peer(),
            invite: invite(),
            ack: InDialog::new("ACK", "z9hG4bK-1-2", 1),
            bye: InDialog::new("BYE", "z9hG4bK-1-3", 2),
        }
    }
}

/// One complete call at `*now`; moves `*now` past every timer of the call, which leaves the
/// user agent empty.
pub(crate) fn one_call(ua: &mut UserAgent, now: &mut Instant, peer: &Peer) {
    let mut at = *now;
    ua.handle_datagram(at, Protocol::Udp, peer.addr, &peer.invite);
    let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
        panic!("no INVITE")
    };
    let dialog = ua
        .answer(
            at,
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
    // The peer's side: its ACK and BYE carry our To tag.
    let tag = dialog.local_tag;
    ua.handle_datagram(at, Protocol::Udp, peer.addr, &peer.ack.with_tag(&tag));
    ua.handle_datagram(at, Protocol::Udp, peer.addr, &peer.bye.with_tag(&tag));
    while let Some(event) = ua.poll_event() {
        black_box(event);
    }
    while let Some(t) = ua.poll_transmit() {
        black_box(t);
    }
    // Let every timer of the call fire (Timer L, J …) so the next call starts clean.
    at += Duration::from_secs(40);
    ua.handle_timeout(at);
    assert_eq!(ua.state_count(), 0);
    *now = at;
}
