//! Shared helpers of the integration tests: real SIP messages, parsed by session-sip, for one
//! call from Alice to Bob.

#![allow(dead_code, unreachable_pub)]

use session_sip::Message;
use session_tracer::{SessionTracer, TracerConfig};

pub const CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.example.com";

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn message(start_line: &str, to_tag: bool, cseq: u32, cseq_method: &str, sdp: bool) -> Message {
    let to_tag = if to_tag { ";tag=a6c85cf" } else { "" };
    let body = if sdp { SDP } else { "" };
    let content_type = if sdp {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let text = format!(
        "{start_line}\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>{to_tag}\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: {cseq} {cseq_method}\r\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(text.into_bytes()).expect("test message parses")
}

/// A request to Bob; `sdp` adds an SDP offer.
pub fn request(method: &str, cseq: u32, sdp: bool) -> Message {
    let to_tag = !matches!(method, "INVITE" | "CANCEL") || cseq > 1;
    message(
        &format!("{method} sip:bob@biloxi.example.com SIP/2.0"),
        to_tag,
        cseq,
        method,
        sdp,
    )
}

/// A response to the request with `cseq` and `method`; `sdp` adds an SDP answer.
pub fn response(status: u16, reason: &str, cseq: u32, method: &str, sdp: bool) -> Message {
    message(
        &format!("SIP/2.0 {status} {reason}"),
        status != 100,
        cseq,
        method,
        sdp,
    )
}

pub fn tracer(config: TracerConfig) -> SessionTracer {
    SessionTracer::new(config).expect("valid config")
}
