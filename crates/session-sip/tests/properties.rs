//! Property tests: whatever the parser accepts serializes back to the same message; no input
//! panics the parser or the stream decoder; building, escaping and quoting round-trip.

use bytes::Bytes;
use proptest::prelude::*;
use session_sip::{
    HeaderName, Message, Method, NameAddr, ParseLimits, Request, StreamDecoder, UasPolicy, Uri,
    new_branch, parse_datagram, validate_request,
};

const SEED: &[u8] = b"INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP p1.example.com;received=192.0.2.1\r\n\
Max-Forwards: 70\r\n\
To: \"Bob \\\"B\\\"\" <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>;expires=60, *\r\n\
Subject: folded\r\n  over lines\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\no=x\r\n";

fn check_round_trip(bytes: &[u8]) {
    let limits = ParseLimits::default();
    if let Ok(m) = parse_datagram(&Bytes::copy_from_slice(bytes), &limits) {
        let again = parse_datagram(&m.to_bytes(), &limits);
        assert_eq!(again.as_ref(), Ok(&m));
        if let Message::Request(r) = &m {
            let _ = validate_request(r, &UasPolicy::default());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_round_trip(&bytes);
        let mut d = StreamDecoder::new(ParseLimits::default());
        d.push(&bytes);
        while let Ok(Some(_)) = d.decode() {}
    }

    #[test]
    fn mutated_messages_round_trip(
        edits in proptest::collection::vec((0..SEED.len(), prop::sample::select(
            b" \t\r\n:;,<>\"\\%@=/0aZ\x00\xff".to_vec())), 1..6),
        cut in 0..SEED.len() + 1,
    ) {
        let mut bytes = SEED.to_vec();
        for (at, b) in edits {
            bytes[at] = b;
        }
        check_round_trip(&bytes);
        check_round_trip(&SEED[..cut]);
    }

    #[test]
    fn stream_chunking_does_not_matter(cuts in proptest::collection::vec(0..SEED.len() * 2, 0..8)) {
        let mut stream = SEED.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(SEED);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut d = StreamDecoder::new(ParseLimits::default());
        let mut got = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            d.push(&stream[last..c.max(last)]);
            last = c.max(last);
            while let Some(m) = d.decode().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(&got[0], &got[1]);
        prop_assert_eq!(d.take_pings(), 1);
    }

    #[test]
    fn built_requests_round_trip(
        user in "[ -~]{1,12}",
        display in "[ -~\u{e9}\u{4e2d}]{0,12}",
        tag in "[a-zA-Z0-9]{1,10}",
        seq in 0u32..(1 << 31),
        ext in "[A-Z]{1,8}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let uri = Uri::sip(Some(&user), "example.com", Some(5060)).unwrap();
        prop_assert_eq!(uri.user_decoded().unwrap(), user.as_str());
        let method = Method::parse(&ext).unwrap();
        let req = Request::builder(method, uri.clone())
            .via("UDP", "host.example.com", None, &new_branch())
            .from(Some(&display), &uri, &tag)
            .to(None, &uri, None)
            .call_id("abc@host")
            .cseq(seq)
            .max_forwards(70)
            .body("application/octet-stream", body)
            .build();
        let back = Message::parse(req.to_bytes()).unwrap();
        prop_assert_eq!(&back, &Message::Request(req.clone()));
        let from = req.from().unwrap();
        prop_assert_eq!(from.display_name().unwrap(), display.as_str());
        prop_assert_eq!(from.tag(), Some(tag.as_str()));
        prop_assert_eq!(req.cseq().unwrap().seq, seq);
    }
}

#[test]
fn quoting_corner_cases() {
    // RFC 4475 §3.1.1.1: a backslash then an escaped quote inside a display name.
    let a = NameAddr::parse(r#""J Rosenberg \\\""  <sip:jdrosen@example.com>"#).unwrap();
    assert_eq!(a.display_name().unwrap(), r#"J Rosenberg \""#);
    // A quoted `,` or `;` does not split a list or start parameters.
    let raw = "Contact: \"a, b; c\" <sip:x@example.com>;q=0.5, <sip:y@example.com>\r\n";
    let msg = format!(
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{raw}Content-Length: 0\r\n\r\n"
    );
    let m = Message::parse(msg).unwrap();
    let contacts: Vec<_> = m.headers().values(HeaderName::Contact).collect();
    assert_eq!(contacts.len(), 2);
    // %HH escapes are legal in URIs only: esc02's "%Z%45" display name stays literal text.
    let a = NameAddr::parse(r#""%Z%45" <sip:resource@example.com>"#).unwrap();
    assert_eq!(a.display_name().unwrap(), "%Z%45");
    assert!(Uri::parse("sip:%Z%45@example.com").is_err());
    // Escaped characters in URI params stay escaped and compare by their decoded form.
    let u = Uri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31").unwrap();
    assert_eq!(u.user_decoded().unwrap(), "caller");
    assert_eq!(u.param("%6C%72"), Some(None));
}
