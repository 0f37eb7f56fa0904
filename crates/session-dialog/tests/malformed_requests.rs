//! Malformed requests fed to `Endpoint::handle_datagram`: each gets its stateless answer,
//! routed by the top Via (RFC 3261 §18.2.2, RFC 3581) — 513 for a line or a header count over
//! the parser limits, 414 for an over-long Request-Line, 400 for NUL or non-UTF-8 bytes in a
//! header name or in Call-ID, From and CSeq, for a Request-URI host like 256.256.256.256 and
//! for a Content-Length beyond the datagram — and nothing at all when the Via cannot be read.
//! crates/session-sip/INPUT_CHOICES.md lists the choices.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{Endpoint, EndpointConfig, Protocol, Transmit};
use std::net::SocketAddr;
use std::time::Instant;

const SOURCE: &str = "192.0.2.7:40000";
const VIA: &str = "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-bad1;rport";

fn source() -> SocketAddr {
    SOURCE.parse().unwrap()
}

/// An INVITE with `uri`, `via` (none when `None`) and these header values; `extra` is whole
/// header lines.
fn invite(uri: &str, via: Option<&str>, call_id: &[u8], from: &[u8], cseq: &[u8]) -> Vec<u8> {
    let mut v = format!("INVITE {uri} SIP/2.0\r\n").into_bytes();
    if let Some(via) = via {
        v.extend_from_slice(format!("Via: {via}\r\n").as_bytes());
    }
    for (name, value) in [
        (&b"From"[..], from),
        (b"To", b"<sip:bob@192.0.2.1>"),
        (b"Call-ID", call_id),
        (b"CSeq", cseq),
        (b"Max-Forwards", b"70"),
        (b"Contact", b"<sip:alice@192.0.2.7:5070>"),
    ] {
        v.extend_from_slice(name);
        v.extend_from_slice(b": ");
        v.extend_from_slice(value);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Ends the header section with a Content-Length and an SDP body of `body_len` bytes.
fn finish(mut v: Vec<u8>, extra: &[u8], content_length: usize) -> Bytes {
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\n";
    v.extend_from_slice(extra);
    v.extend_from_slice(
        format!("Content-Type: application/sdp\r\nContent-Length: {content_length}\r\n\r\n")
            .as_bytes(),
    );
    v.extend_from_slice(body);
    Bytes::from(v)
}

const BODY_LEN: usize = 36;

struct Case {
    name: &'static str,
    uri: String,
    call_id: &'static [u8],
    from: &'static [u8],
    cseq: &'static [u8],
    extra: Vec<u8>,
    content_length: usize,
    status: u16,
    reason_has: &'static str,
}

fn cases() -> Vec<Case> {
    let base = || Case {
        name: "",
        uri: "sip:bob@192.0.2.1".to_owned(),
        call_id: b"c1@192.0.2.7",
        from: b"<sip:alice@192.0.2.7>;tag=a1",
        cseq: b"1 INVITE",
        extra: Vec::new(),
        content_length: BODY_LEN,
        status: 0,
        reason_has: "",
    };
    vec![
        Case {
            name: "header line over 8 KB",
            extra: format!("Subject: {}\r\n", "x".repeat(9000)).into_bytes(),
            status: 513,
            reason_has: "line is longer than 8192 bytes",
            ..base()
        },
        Case {
            name: "Request-Line over 8 KB",
            uri: format!("sip:bob@192.0.2.1;x={}", "y".repeat(9000)),
            status: 414,
            reason_has: "line is longer than 8192 bytes",
            ..base()
        },
        Case {
            name: "more than 256 headers",
            extra: (0..300)
                .map(|i| format!("X-N{i}: {i}\r\n"))
                .collect::<String>()
                .into_bytes(),
            status: 513,
            reason_has: "more than 256 header fields",
            ..base()
        },
        Case {
            name: "NUL in a header name",
            extra: b"X-A\0b: 1\r\n".to_vec(),
            status: 400,
            reason_has: "name is not a token",
            ..base()
        },
        Case {
            name: "non-UTF-8 in a header name",
            extra: b"X-A\xfeb: 1\r\n".to_vec(),
            status: 400,
            reason_has: "name is not a token",
            ..base()
        },
        Case {
            name: "NUL in Call-ID",
            call_id: b"c1\0@192.0.2.7",
            status: 400,
            reason_has: "Call-ID",
            ..base()
        },
        Case {
            name: "non-UTF-8 in Call-ID",
            call_id: b"c1\xff@192.0.2.7",
            status: 400,
            reason_has: "Call-ID header: value is not UTF-8",
            ..base()
        },
        Case {
            name: "NUL in From",
            from: b"\"A\0\" <sip:alice@192.0.2.7>;tag=a1",
            status: 400,
            reason_has: "From",
            ..base()
        },
        Case {
            name: "non-UTF-8 in From",
            from: b"<sip:alice@192.0.2.7>;tag=a\xc31",
            status: 400,
            reason_has: "From header: value is not UTF-8",
            ..base()
        },
        Case {
            name: "NUL in CSeq",
            cseq: b"1 INV\0ITE",
            status: 400,
            reason_has: "CSeq",
            ..base()
        },
        Case {
            name: "non-UTF-8 in CSeq",
            cseq: b"1\x80 INVITE",
            status: 400,
            reason_has: "CSeq header: value is not UTF-8",
            ..base()
        },
        Case {
            name: "Request-URI host 256.256.256.256",
            uri: "sip:bob@256.256.256.256".to_owned(),
            status: 400,
            reason_has: "IPv4 address with an octet over 255",
            ..base()
        },
        Case {
            name: "Content-Length beyond the datagram",
            content_length: BODY_LEN + 100,
            status: 400,
            reason_has: "Content-Length",
            ..base()
        },
    ]
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn send(via: Option<&str>, case: &Case) -> (Vec<Transmit>, usize) {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let bytes = finish(
        invite(&case.uri, via, case.call_id, case.from, case.cseq),
        &case.extra,
        case.content_length,
    );
    ep.handle_datagram(Instant::now(), Protocol::Udp, source(), &bytes);
    let sent = transmits(&mut ep);
    let events = std::iter::from_fn(|| ep.poll_event()).count();
    (sent, events)
}

#[test]
fn each_malformed_request_gets_its_answer_by_the_via() {
    for case in cases() {
        let (sent, events) = send(Some(VIA), &case);
        assert_eq!(events, 0, "{}: nothing reaches the layer above", case.name);
        let [answer] = sent.as_slice() else {
            panic!("{}: expected one answer, got {}", case.name, sent.len());
        };
        assert_eq!(answer.protocol, Protocol::Udp);
        // `rport`: back to the source address and port (RFC 3581 §4).
        assert_eq!(answer.destination, source(), "{}", case.name);
        // The copied values may hold the request's NUL: read the wire text, not a parse.
        let text = String::from_utf8_lossy(&answer.bytes);
        let status_line = text.lines().next().unwrap();
        assert!(
            status_line.starts_with(&format!("SIP/2.0 {} ", case.status)),
            "{}: {status_line}",
            case.name
        );
        assert!(
            status_line.contains(case.reason_has),
            "{}: {status_line}",
            case.name
        );
        assert!(
            text.contains("branch=z9hG4bK-bad1;rport=40000;received=192.0.2.7")
                || text.contains("branch=z9hG4bK-bad1;received=192.0.2.7;rport=40000"),
            "{}: the Via carries received and rport: {text}",
            case.name
        );
    }
}

#[test]
fn without_a_readable_via_nothing_is_sent() {
    for case in cases() {
        for via in [
            None,
            Some("SIP/2.0/UDP"),
            Some("garbage"),
            Some("SIP/2.0/UDP 192.0.2.7:99999;branch=z9hG4bK-bad1"),
        ] {
            let (sent, events) = send(via, &case);
            assert!(sent.is_empty(), "{} with Via {via:?}: {sent:?}", case.name);
            assert_eq!(events, 0, "{} with Via {via:?}", case.name);
        }
    }
}

#[test]
fn the_well_formed_baseline_reaches_the_layer_above() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let bytes = finish(
        invite(
            "sip:bob@192.0.2.1",
            Some(VIA),
            b"c1@192.0.2.7",
            b"<sip:alice@192.0.2.7>;tag=a1",
            b"1 INVITE",
        ),
        b"",
        BODY_LEN,
    );
    ep.handle_datagram(Instant::now(), Protocol::Udp, source(), &bytes);
    assert_eq!(std::iter::from_fn(|| ep.poll_event()).count(), 1);
}
