//! Requests the parser rejects, and what a UAS answers to them (crates/session-sip/
//! INPUT_CHOICES.md): 513 for a line or a header count over the limits, 414 for an over-long
//! Request-Line, 400 naming the problem for NUL or non-UTF-8 bytes in a header name or in
//! Call-ID, From and CSeq, for a Request-URI host that is neither an IPv4 address nor a
//! hostname, and for a Content-Length beyond the datagram — and a silent drop whenever the top
//! Via cannot be read, since the answer would have nowhere to go (RFC 3261 §18.2.2).

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_sip::{
    Action, Error, HeaderName, Message, ParseLimits, Response, StreamDecoder, UasPolicy, Uri,
    Verdict, bad_request_for, parse_datagram, triage_datagram_with,
};

const VIA: &[u8] = b"SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds";
const FROM: &[u8] = b"\"Alice\" <sip:alice@example.com>;tag=1928301774";
const CALL_ID: &[u8] = b"a84b4c76e66710@pc33.example.com";
const CSEQ: &[u8] = b"314159 INVITE";
const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";

/// An INVITE with these parts; `extra` is whole header lines, put before Content-Type.
struct Invite<'a> {
    method: &'a str,
    uri: String,
    via: Option<&'a [u8]>,
    from: &'a [u8],
    call_id: &'a [u8],
    cseq: &'a [u8],
    extra: Vec<u8>,
    content_length: usize,
}

impl Default for Invite<'_> {
    fn default() -> Self {
        Self {
            method: "INVITE",
            uri: "sip:bob@biloxi.example.com".to_owned(),
            via: Some(VIA),
            from: FROM,
            call_id: CALL_ID,
            cseq: CSEQ,
            extra: Vec::new(),
            content_length: SDP.len(),
        }
    }
}

impl Invite<'_> {
    fn bytes(&self) -> Bytes {
        let mut v = format!("{} {} SIP/2.0\r\n", self.method, self.uri).into_bytes();
        let mut line = |name: &str, value: &[u8]| {
            v.extend_from_slice(name.as_bytes());
            v.extend_from_slice(b": ");
            v.extend_from_slice(value);
            v.extend_from_slice(b"\r\n");
        };
        if let Some(via) = self.via {
            line("Via", via);
        }
        line("Max-Forwards", b"70");
        line("To", b"Bob <sip:bob@biloxi.example.com>");
        line("From", self.from);
        line("Call-ID", self.call_id);
        line("CSeq", self.cseq);
        line("Contact", b"<sip:alice@pc33.example.com>");
        v.extend_from_slice(&self.extra);
        v.extend_from_slice(
            format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                self.content_length
            )
            .as_bytes(),
        );
        v.extend_from_slice(SDP);
        Bytes::from(v)
    }
}

fn triage(bytes: &Bytes) -> Verdict {
    triage_datagram_with(
        bytes,
        &ParseLimits::default(),
        &UasPolicy::default(),
        &mut fastrand::Rng::with_seed(7),
    )
}

/// The stateless answer, checked for what every answer must be: not a well-formed request,
/// the status and a reason that names the problem, the request's Via and transaction headers
/// copied (§8.2.6.2), a To tag, and bytes that parse back when the copied values allow it.
fn answer(bytes: &Bytes, status: u16, reason_has: &str) -> Response {
    let v = triage(bytes);
    assert!(!v.well_formed, "{}", v.reason);
    let Action::Answer(resp) = v.action else {
        panic!(
            "expected a {status} answer, got {:?} ({})",
            v.action, v.reason
        );
    };
    assert_eq!(resp.status.as_u16(), status, "{}", resp.reason);
    assert!(
        resp.reason.contains(reason_has),
        "reason {:?} should contain {reason_has:?}",
        resp.reason
    );
    assert_eq!(
        resp.headers.get_str(HeaderName::Via).map(str::as_bytes),
        Some(VIA)
    );
    assert_eq!(
        resp.top_via().unwrap().branch(),
        Some("z9hG4bK776asdhds"),
        "routable by its Via"
    );
    for name in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        assert!(resp.headers.get(name).is_some(), "{name} copied");
    }
    assert!(resp.to().unwrap().tag().is_some(), "a To tag");
    *resp
}

fn dropped(bytes: &Bytes) {
    let v = triage(bytes);
    assert!(
        matches!(v.action, Action::Drop),
        "expected a drop, got {:?} ({})",
        v.action,
        v.reason
    );
}

/// Each case with the Via readable, and the same bytes with the Via unreadable or missing, or
/// as an ACK: those are dropped.
fn dropped_without_a_readable_via(case: &Invite<'_>) {
    for via in [Some(&b"SIP/2.0/UDP"[..]), Some(b"garbage"), None] {
        let no_via = Invite { via, ..clone(case) };
        dropped(&no_via.bytes());
    }
    let ack = Invite {
        method: "ACK",
        cseq: if case.cseq == CSEQ {
            b"314159 ACK"
        } else {
            case.cseq
        },
        ..clone(case)
    };
    dropped(&ack.bytes());
}

fn clone<'a>(c: &Invite<'a>) -> Invite<'a> {
    Invite {
        method: c.method,
        uri: c.uri.clone(),
        via: c.via,
        from: c.from,
        call_id: c.call_id,
        cseq: c.cseq,
        extra: c.extra.clone(),
        content_length: c.content_length,
    }
}

#[test]
fn the_baseline_is_accepted() {
    let v = triage(&Invite::default().bytes());
    assert!(matches!(v.action, Action::Accept), "{}", v.reason);
}

#[test]
fn a_header_line_over_8_kb_gets_513() {
    let case = Invite {
        extra: format!("Subject: {}\r\n", "a".repeat(9000)).into_bytes(),
        ..Invite::default()
    };
    let resp = answer(&case.bytes(), 513, "line is longer than 8192 bytes");
    assert!(resp.reason.starts_with("Message Too Large"));
    // The answer parses back: the over-long line is not copied.
    assert_eq!(
        Message::parse(resp.to_bytes()).unwrap(),
        Message::Response(resp)
    );
    dropped_without_a_readable_via(&case);
}

#[test]
fn an_over_long_via_is_still_read_and_copied() {
    let long_via = format!(
        "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds;x={}",
        "a".repeat(9000)
    );
    let case = Invite {
        via: Some(long_via.as_bytes()),
        ..Invite::default()
    };
    let v = triage(&case.bytes());
    let Action::Answer(resp) = v.action else {
        panic!("{:?}", v.action)
    };
    assert_eq!(resp.status.as_u16(), 513);
    assert_eq!(resp.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
}

#[test]
fn a_request_line_over_8_kb_gets_414() {
    let case = Invite {
        uri: format!("sip:bob@biloxi.example.com;x={}", "a".repeat(9000)),
        ..Invite::default()
    };
    let resp = answer(&case.bytes(), 414, "line is longer than 8192 bytes");
    assert!(resp.reason.starts_with("Request-URI Too Long"));
    dropped_without_a_readable_via(&case);
}

#[test]
fn more_than_256_headers_get_513() {
    let many: String = (0..300).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let case = Invite {
        extra: many.into_bytes(),
        ..Invite::default()
    };
    let resp = answer(&case.bytes(), 513, "more than 256 header fields");
    assert!(resp.reason.starts_with("Message Too Large"));
    dropped_without_a_readable_via(&case);
}

#[test]
fn a_message_over_the_size_limit_gets_513() {
    let bytes = Invite::default().bytes();
    let limits = ParseLimits::default().max_message_size(bytes.len() - SDP.len());
    let error = parse_datagram(&bytes, &limits).unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }));
    let resp = bad_request_for(&bytes, &error, &limits).unwrap();
    assert_eq!(resp.status.as_u16(), 513);
}

#[test]
fn nul_in_a_header_name_gets_400() {
    let case = Invite {
        extra: b"X-Fo\0o: bar\r\n".to_vec(),
        ..Invite::default()
    };
    answer(&case.bytes(), 400, "name is not a token");
    dropped_without_a_readable_via(&case);
}

#[test]
fn non_utf8_in_a_header_name_gets_400() {
    for name in [&b"X-F\xffo"[..], b"X-F\xc3\xa9o", b"\xc3"] {
        let mut extra = name.to_vec();
        extra.extend_from_slice(b": bar\r\n");
        let case = Invite {
            extra,
            ..Invite::default()
        };
        answer(&case.bytes(), 400, "name is not a token");
        dropped_without_a_readable_via(&case);
    }
}

#[test]
fn a_header_line_without_a_colon_gets_400() {
    let case = Invite {
        extra: b"this is no header\r\n  nor this continuation\r\n".to_vec(),
        ..Invite::default()
    };
    answer(&case.bytes(), 400, "line without a colon");
    dropped_without_a_readable_via(&case);
}

#[test]
fn nul_in_call_id_from_or_cseq_gets_400() {
    let cases = [
        (
            Invite {
                call_id: b"a84b\0c76@pc33.example.com",
                ..Invite::default()
            },
            "Call-ID",
        ),
        (
            Invite {
                from: b"<sip:ali\0ce@example.com>;tag=1",
                ..Invite::default()
            },
            "From",
        ),
        (
            Invite {
                from: b"\"Al\0ice\" <sip:alice@example.com>;tag=1",
                ..Invite::default()
            },
            "From",
        ),
        (
            Invite {
                cseq: b"314159\0 INVITE",
                ..Invite::default()
            },
            "CSeq",
        ),
    ];
    for (case, header) in cases {
        let resp = answer(&case.bytes(), 400, &format!("malformed {header} header"));
        // §8.2.6.2: the value is copied as received, NUL included.
        let copied = resp.headers.get_by_name(header).unwrap().value_bytes();
        assert!(copied.contains(&0), "{header}: {copied:?}");
        dropped_without_a_readable_via(&case);
    }
}

#[test]
fn non_utf8_in_call_id_from_or_cseq_gets_400() {
    let cases = [
        (
            Invite {
                call_id: b"a84b\xffc76@pc33.example.com",
                ..Invite::default()
            },
            "Call-ID",
        ),
        (
            Invite {
                from: b"\"Al\xffice\" <sip:alice@example.com>;tag=1",
                ..Invite::default()
            },
            "From",
        ),
        (
            Invite {
                cseq: b"314159 INV\xc3ITE",
                ..Invite::default()
            },
            "CSeq",
        ),
    ];
    for (case, header) in cases {
        let resp = answer(
            &case.bytes(),
            400,
            &format!("malformed {header} header: value is not UTF-8"),
        );
        // The value is copied with U+FFFD for the bad bytes: the answer stays UTF-8 text.
        let copied = resp.headers.get_by_name(header).unwrap().value();
        assert!(copied.contains('\u{fffd}'), "{header}: {copied:?}");
        let wire = resp.to_bytes();
        assert!(std::str::from_utf8(&wire).is_ok());
        dropped_without_a_readable_via(&case);
    }
}

#[test]
fn non_utf8_in_another_header_value_gets_400_naming_it() {
    let case = Invite {
        extra: b"Subject: caf\xe9\r\nX-Custom: \xff\r\n".to_vec(),
        ..Invite::default()
    };
    answer(
        &case.bytes(),
        400,
        "malformed Subject header: value is not UTF-8",
    );
    let case = Invite {
        extra: b"X-Custom: \xff\r\n".to_vec(),
        ..Invite::default()
    };
    answer(
        &case.bytes(),
        400,
        "malformed extension header: value is not UTF-8",
    );
}

#[test]
fn a_request_uri_host_of_256_256_256_256_gets_400() {
    for (uri, why) in [
        ("sip:bob@256.256.256.256", "octet over 255"),
        ("sip:bob@1.2.3.256:5060", "octet over 255"),
        ("sip:256.256.256.256", "octet over 255"),
        ("sip:bob@1.2.3", "bad host"),
        ("sip:bob@1.2.3.4.5", "bad host"),
        ("sip:bob@example.123", "bad host"),
        ("sip:bob@-example.com", "bad host"),
        ("sip:bob@example-.com", "bad host"),
        ("sip:bob@example..com", "bad host"),
    ] {
        let case = Invite {
            uri: uri.to_owned(),
            ..Invite::default()
        };
        answer(&case.bytes(), 400, why);
        dropped_without_a_readable_via(&case);
    }
}

#[test]
fn a_from_host_that_is_no_host_gets_400_naming_from() {
    let case = Invite {
        from: b"<sip:alice@256.256.256.256>;tag=1",
        ..Invite::default()
    };
    answer(&case.bytes(), 400, "malformed From header: IPv4 address");
}

#[test]
fn hosts_follow_the_grammar() {
    for good in [
        "sip:a@255.255.255.255",
        "sip:a@0.0.0.0",
        "sip:a@010.001.1.1",
        "sip:a@192.0.2.1:5060",
        "sip:a@example.com.",
        "sip:a@3com.example.com",
        "sip:a@a-b.c-d",
        "sip:a@localhost",
        "sip:a@x",
        "sip:a@[2001:db8::1]",
        "sips:a@EXAMPLE.COM;transport=tls",
    ] {
        assert!(Uri::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "sip:a@256.0.0.1",
        "sip:a@1.2.3.4.",
        "sip:a@1234.1.1.1",
        "sip:a@1.2.3",
        "sip:a@123",
        "sip:a@example.1com",
        "sip:a@.example.com",
        "sip:a@example.com..",
        "sip:a@.",
        "sip:a@-",
        "sip:a@a-",
        "sip:a@exa_mple.com",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_content_length_beyond_the_datagram_gets_400() {
    // RFC 3261 §18.3: a request whose body ends before Content-Length says SHOULD get a 400.
    let case = Invite {
        content_length: SDP.len() + 20,
        ..Invite::default()
    };
    answer(&case.bytes(), 400, "exceeds the");
    dropped_without_a_readable_via(&case);
}

#[test]
fn responses_with_the_same_faults_are_dropped() {
    for bad in [
        format!("SIP/2.0 200 OK\r\nSubject: {}\r\n", "a".repeat(9000)).into_bytes(),
        b"SIP/2.0 200 OK\r\nX-F\0o: 1\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nCall-ID: \xff\r\n".to_vec(),
    ] {
        let mut bytes = bad;
        bytes.extend_from_slice(
            b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n\
              Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        dropped(&Bytes::from(bytes));
    }
}

#[test]
fn on_a_stream_an_over_long_line_skips_one_message_and_keeps_the_connection() {
    let long = Invite {
        extra: format!("Subject: {}\r\n", "a".repeat(9000)).into_bytes(),
        ..Invite::default()
    }
    .bytes();
    let many = Invite {
        extra: (0..300)
            .map(|i| format!("X-H{i}: {i}\r\n"))
            .collect::<String>()
            .into_bytes(),
        ..Invite::default()
    }
    .bytes();
    let good = Invite::default().bytes();
    let limits = ParseLimits::default();
    let mut d = StreamDecoder::new(limits.clone());
    for bad in [&long, &many] {
        d.push(bad);
        d.push(&good);
        let e = d.decode().unwrap_err();
        assert!(!e.is_framing(), "{e}");
        let raw = d.take_rejected().unwrap();
        assert_eq!(raw, *bad);
        let resp = bad_request_for(&raw, &e, &limits).unwrap();
        assert_eq!(resp.status.as_u16(), 513);
        assert!(d.decode().unwrap().is_some(), "the next message decodes");
    }
}

#[test]
fn a_parsed_request_without_a_via_is_dropped() {
    // It parses (the parser checks the Via only when there is one), and validation finds the
    // Via missing: an answer could not be routed, so nothing is sent.
    let case = Invite {
        via: None,
        ..Invite::default()
    };
    let v = triage(&case.bytes());
    assert!(v.message.is_some());
    assert_eq!(v.reason, "Bad Request (missing Via header)");
    assert!(matches!(v.action, Action::Drop), "{:?}", v.action);
}

#[test]
fn non_utf8_in_the_request_line_gets_400_naming_it() {
    let case = Invite {
        uri: String::new(),
        ..Invite::default()
    };
    let mut bytes = case.bytes().to_vec();
    // "INVITE  SIP/2.0": put a URI with a byte that is not UTF-8 between the spaces.
    bytes.splice(7..7, b"sip:b\xff@example.com".iter().copied());
    answer(
        &Bytes::from(bytes),
        400,
        "malformed start line: not UTF-8 text",
    );
}
