//! The messages the codec benchmarks parse and the two parses they time (session-sip's and
//! rsip's, each with the typed reads a dialog layer does), shared by `benches/codec.rs` and
//! `examples/parse_profile.rs`.

use bytes::Bytes;
use rsip::prelude::*;
use session_sip::{Message, ParseLimits, parse_datagram};

pub(crate) const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, PRACK\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: session-core/0.1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 327\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=Session SDP\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp:49173 IN IP4 192.0.2.101\r\n\
a=ssrc:2864861922 cname:alice\r\n";

pub(crate) const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101;rport=5060\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4:5060>\r\n\
Content-Length: 0\r\n\
\r\n";

pub(crate) const ACK: &str = "ACK sip:bob@192.0.2.4:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds9\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\
\r\n";

pub(crate) const BYE: &str = "BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds10\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
To: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 231 BYE\r\n\
Content-Length: 0\r\n\
\r\n";

/// What a dialog layer reads from every message: top Via branch, From/To tags, Call-ID,
/// CSeq, Content-Length.
pub(crate) fn parse_ours(bytes: &Bytes, limits: &ParseLimits) -> usize {
    let m = parse_datagram(bytes, limits).unwrap();
    let (n, h) = match &m {
        Message::Request(r) => (
            r.top_via().unwrap().branch().unwrap().len()
                + r.from().unwrap().tag().unwrap().len()
                + r.to().unwrap().tag().map_or(0, str::len)
                + r.call_id().unwrap().len()
                + r.cseq().unwrap().seq as usize,
            r.content_length().unwrap().unwrap(),
        ),
        Message::Response(r) => (
            r.top_via().unwrap().branch().unwrap().len()
                + r.from().unwrap().tag().unwrap().len()
                + r.to().unwrap().tag().map_or(0, str::len)
                + r.call_id().unwrap().len()
                + r.cseq().unwrap().seq as usize,
            r.content_length().unwrap().unwrap(),
        ),
    };
    n + h
}

/// The same reads through rsip (its headers are typed on access).
pub(crate) fn parse_rsip(bytes: &[u8]) -> usize {
    let m = rsip::SipMessage::try_from(bytes).unwrap();
    let via = m.via_header().unwrap().typed().unwrap();
    let branch = via.branch().map_or(0, |b| b.to_string().len());
    let from = m
        .from_header()
        .unwrap()
        .tag()
        .unwrap()
        .map_or(0, |t| t.value().len());
    let to = m
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .map_or(0, |t| t.value().len());
    let call_id = m.call_id_header().unwrap().value().len();
    let cseq = m.cseq_header().unwrap().typed().unwrap().seq as usize;
    let cl = m
        .headers()
        .iter()
        .find_map(|h| match h {
            rsip::Header::ContentLength(cl) => Some(cl.length().unwrap() as usize),
            _ => None,
        })
        .unwrap();
    branch + from + to + call_id + cseq + cl
}
