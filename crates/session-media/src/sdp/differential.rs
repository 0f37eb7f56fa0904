//! Differential tests: the borrowed parser, `answer_offer` on the view and
//! `answer_offer_text` against the code they replaced ([`super::oracle`]), on arbitrary
//! bodies, mutated real offers (SIPp's, baresip's, linphone's, …) and arbitrary owned
//! descriptions. Results must be identical: the same descriptions or the same errors, the same
//! answers byte for byte, the same `o=` versions over a session's sequence of exchanges.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use super::negotiate::{Codec, MediaConfig, OfferAnswer};
use super::oracle::{self, OldOfferAnswer};
use super::*;

/// Real offers, as their senders write them.
const CORPUS: &[&str] = &[
    // SIPp's `uac` scenario.
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
     t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    // baresip: opus first, rtcp-mux, no final line end.
    "v=0\r\no=- 1813736409 1476340733 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\n\
     t=0 0\r\nm=audio 10710 RTP/AVP 96 0 8 101\r\nb=AS:77\r\na=rtpmap:96 opus/48000/2\r\n\
     a=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=ptime:20\r\n\
     a=sendrecv\r\na=label:1\r\na=ssrc:3145160946 cname:8d0a6e1c-23cd-4a3b",
    // linphone: host name, session attributes, events at three rates, video to reject.
    "v=0\r\no=alice 2310 1234 IN IP4 linphone.example.org\r\ns=Talk\r\nc=IN IP4 192.168.0.20\r\n\
     t=0 0\r\na=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
     a=record:off\r\nm=audio 7078 RTP/AVP 96 97 98 8 0 18 101 99 100\r\n\
     a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:97 speex/16000\r\n\
     a=fmtp:97 vbr=on\r\na=rtpmap:98 speex/8000\r\na=fmtp:98 vbr=on\r\na=fmtp:18 annexb=yes\r\n\
     a=rtpmap:101 telephone-event/48000\r\na=rtpmap:99 telephone-event/16000\r\n\
     a=rtpmap:100 telephone-event/8000\r\na=rtcp:7079\r\na=rtcp-fb:* trr-int 1000\r\n\
     m=video 9078 RTP/AVP 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
     a=fmtp:97 profile-level-id=42801F\r\n",
    // A PBX on hold (sendonly at session level, media c=, mid, IPv6 origin, LF line ends).
    "v=0\no=pbx 99 100 IN IP6 2001:db8::1\ns=call\nt=0 0\na=sendonly\n\
     m=audio 4000/2 RTP/AVPF 8 101\nc=IN IP4 0.0.0.0\na=mid:audio0\na=ptime:30\n\
     a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-11,16\n",
    // Two audio streams, the first we cannot take, a data channel.
    "v=0\r\no=- 5 5 IN IP4 10.0.0.1\r\ns= \r\nc=IN IP4 10.0.0.1/127\r\nt=0 0\r\n\
     m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
     m=audio 5006 RTP/AVP 96 0\r\na=rtpmap:96 PCMU/8000\r\na=rtcp:5009 IN IP4 10.0.0.1\r\n\
     a=inactive\r\nm=application 5008 UDP/DTLS/SCTP webrtc-datachannel\r\n",
];

/// Lines a mutation may insert: valid, broken and unusual ones.
const LINES: &[&str] = &[
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 pcmu/8000/1",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:101 TELEPHONE-EVENT/8000 1",
    "a=rtpmap:97 PCMU/8000 2",
    "a=fmtp:101 0-16",
    "a=fmtp:101\t0-15 \r",
    "a=fmtp: 101  1-2\u{85}x",
    "a=ptime:30",
    "a=ptime:0.5",
    "a=ptime:abc",
    "a=rtcp-mux",
    "a=rtcp:9999",
    "a=rtcp:x 1",
    "a=mid:0",
    "a=mid:a\u{1}b",
    "a=mid",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
    "a=sendrecv",
    "a= spaced name : value ",
    "c=IN IP4 0.0.0.0",
    "c=IN IP6 ::",
    "c=IN IP4 host.example.com",
    "c=IN IP5 1.2.3.4",
    "c=IN IP4",
    "b=AS:64",
    "m=audio 0 RTP/AVP 0",
    "m=audio 7000 RTP/AVP 0 8 101",
    "m=audio 7000/2 RTP/AVPF 18 9 3",
    "m=audio 7000 RTP/AVP",
    "m=audio 70000 RTP/AVP 0",
    "m=audio 7000/x RTP/AVP 0",
    "m=video 7002 RTP/AVP 96",
    "m=audio\u{a0}7000\u{2028}RTP/AVP\t0",
    "o=- 1 2 IN IP4 1.1.1.1",
    "o=- 1 x IN IP4 1.1.1.1",
    "o=- 1 2 IN IPX 1.1.1.1",
    "o=- 1",
    "s=",
    "t=1 2",
    "t=x 1",
    "v=0",
    "i=info",
    "x",
    "ab",
    "é=1",
    "",
];

fn configs() -> impl Strategy<Value = MediaConfig> {
    let codec = prop_oneof![
        Just(Codec::pcmu()),
        Just(Codec::pcma()),
        Just(Codec {
            name: "opus".to_owned(),
            clock_rate: 48_000,
            channels: 2,
            payload_type: 96,
        }),
        Just(Codec {
            name: "G722".to_owned(),
            clock_rate: 8_000,
            channels: 1,
            payload_type: 9,
        }),
        Just(Codec {
            name: "sp ex\u{85}".to_owned(),
            clock_rate: 16_000,
            channels: 1,
            payload_type: 97,
        }),
    ];
    (
        vec(codec, 0..4),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(20u32), Just(30), Just(0)],
        prop_oneof![Just("-"), Just("bob"), Just("a b\r\n"), Just("")],
    )
        .prop_map(
            |(codecs, telephone_event, rtcp_mux, ptime, username)| MediaConfig {
                codecs,
                telephone_event,
                telephone_event_pt: 101,
                ptime,
                rtcp_mux,
                username: username.to_owned(),
            },
        )
}

fn local_ips() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just(IpAddr::from([127, 0, 0, 1])),
        Just(IpAddr::from([192, 0, 2, 254])),
        Just("2001:db8::7".parse::<IpAddr>().unwrap()),
    ]
}

/// A mutation of a body's lines.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Insert(usize, usize),
    /// Replaces a line's byte range with text (at character boundaries only).
    Splice(usize, usize, String),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), 0..LINES.len()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (
            any::<usize>(),
            any::<usize>(),
            "([a-zA-Z0-9 :/.=\\-]|\r|\t|\u{1}|\u{85}|é|\u{a0}){0,6}"
        )
            .prop_map(|(a, b, t)| Mutation::Splice(a, b, t)),
    ];
    vec(one, 0..5)
}

fn mutate(body: &str, mutations: &[Mutation], line_end: &str) -> String {
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    for m in mutations {
        let len = lines.len().max(1);
        match m {
            Mutation::Delete(at) if !lines.is_empty() => {
                lines.remove(at % len);
            }
            Mutation::Duplicate(at) if !lines.is_empty() => {
                let line = lines[at % len].clone();
                lines.insert(at % len, line);
            }
            Mutation::Swap(a, b) if !lines.is_empty() => lines.swap(a % len, b % len),
            Mutation::Insert(at, which) => {
                lines.insert(at % (lines.len() + 1), LINES[*which].to_owned())
            }
            Mutation::Splice(at, from, text) if !lines.is_empty() => {
                let line = &mut lines[at % len];
                let mut start = from % (line.len() + 1);
                while !line.is_char_boundary(start) {
                    start -= 1;
                }
                let end = line[start..]
                    .char_indices()
                    .nth(2)
                    .map_or(line.len(), |(i, _)| start + i);
                line.replace_range(start..end, text);
            }
            _ => {}
        }
    }
    lines.join(line_end)
}

/// Parses with both parsers and requires the same result.
fn same_parse(body: &str) -> Result<Option<SessionDescription>, TestCaseError> {
    let new = body.parse::<SessionDescription>();
    let old = oracle::parse(body);
    prop_assert_eq!(format!("{new:?}"), format!("{old:?}"), "body {:?}", body);
    Ok(new.ok())
}

/// One step of a session: answer an offer (one of three ways), or change what we want.
#[derive(Debug, Clone)]
enum Step {
    /// Answer offer `n % offers` on a port, through the view and text (`true`) or the owned
    /// model.
    Answer(usize, u16, bool),
    Offer(u16),
    Direction(MediaDirection),
    Ip(IpAddr),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let direction = prop_oneof![
        Just(MediaDirection::SendRecv),
        Just(MediaDirection::SendOnly),
        Just(MediaDirection::RecvOnly),
        Just(MediaDirection::Inactive),
    ];
    let step = prop_oneof![
        6 => (any::<usize>(), prop_oneof![Just(9u16), Just(40_000), Just(40_002)], any::<bool>())
            .prop_map(|(n, port, text)| Step::Answer(n, port, text)),
        1 => prop_oneof![Just(9u16), Just(40_000)].prop_map(Step::Offer),
        1 => direction.prop_map(Step::Direction),
        1 => local_ips().prop_map(Step::Ip),
    ];
    vec(step, 1..8)
}

/// Runs the same session against the oracle and the rewrite and requires the same answers
/// (text, agreed media, changes, errors) and the same state after each step.
fn same_session(
    config: MediaConfig,
    ip: IpAddr,
    offers: &[(String, SessionDescription)],
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let config = Arc::new(config);
    let mut old = OldOfferAnswer::with_shared_config(config.clone(), ip, 7);
    let mut new = OfferAnswer::with_shared_config(config, ip, 7);
    for step in steps {
        match step {
            Step::Answer(n, port, text) => {
                let Some((body, offer)) = offers.get(n % offers.len().max(1)) else {
                    continue;
                };
                let expected = old.answer_offer(offer, *port);
                if *text {
                    let view = SessionDescriptionRef::parse(body).unwrap();
                    let got = new.answer_offer_text(&view, *port);
                    match (&expected, got) {
                        (Ok(e), Ok(got)) => {
                            prop_assert_eq!(&got.text, &e.answer.to_text());
                            prop_assert_eq!(got.media, &e.media);
                            prop_assert_eq!(&got.changes, &e.changes);
                        }
                        (e, got) => prop_assert_eq!(
                            format!("{:?}", e.as_ref().err()),
                            format!("{:?}", got.err())
                        ),
                    }
                } else {
                    let got = new.answer_offer(offer, *port);
                    prop_assert_eq!(format!("{got:?}"), format!("{expected:?}"));
                }
            }
            Step::Offer(port) => {
                prop_assert_eq!(new.create_offer(*port), old.create_offer(*port));
            }
            Step::Direction(d) => {
                new.set_local_direction(*d);
                old.set_local_direction(*d);
            }
            Step::Ip(ip) => {
                new.set_local_ip(*ip);
                old.set_local_ip(*ip);
            }
        }
        prop_assert_eq!(new.current(), old.current());
        prop_assert_eq!(new.pending_offer(), old.pending_offer());
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: both parsers accept and reject alike, with the same errors.
    #[test]
    fn parse_matches_the_oracle_on_any_text(body in "\\PC{0,300}") {
        same_parse(&body)?;
    }

    /// Any bytes through `parse_bytes`: as the old `from_utf8_lossy` then parse.
    #[test]
    fn parse_bytes_matches_the_oracle(body in vec(any::<u8>(), 0..200), corpus in 0..CORPUS.len()) {
        let mut bytes = CORPUS[corpus].as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        for body in [&body[..], &bytes[..]] {
            let new = SessionDescription::parse_bytes(body);
            let old = oracle::parse(&String::from_utf8_lossy(body));
            prop_assert_eq!(format!("{new:?}"), format!("{old:?}"));
        }
    }

    /// Mutated real offers: the same parse, then the same session of answers and offers.
    #[test]
    fn mutated_offers_answer_as_the_oracle(
        picks in vec((0..CORPUS.len(), mutations(), prop_oneof![Just("\r\n"), Just("\n"), Just("\r\n\r\n")]), 1..4),
        config in configs(),
        ip in local_ips(),
        steps in steps(),
    ) {
        let mut offers = Vec::new();
        for (corpus, mutations, line_end) in &picks {
            let body = mutate(CORPUS[*corpus], mutations, line_end);
            if let Some(sdp) = same_parse(&body)? {
                offers.push((body, sdp));
            }
        }
        same_session(config, ip, &offers, &steps)?;
    }

    /// SDP-shaped lines in any order.
    #[test]
    fn sdp_like_bodies_answer_as_the_oracle(
        lines in vec(0..LINES.len(), 0..14),
        config in configs(),
        steps in steps(),
    ) {
        let mut body = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\n".to_owned();
        for line in lines {
            body.push_str(LINES[line]);
            body.push_str("\r\n");
        }
        if let Some(sdp) = same_parse(&body)? {
            same_session(config, IpAddr::from([10, 0, 0, 1]), &[(body, sdp)], &steps)?;
        }
    }

    /// Owned descriptions of any content (what an application may build and pass to
    /// `answer_offer`), answered through the view of the owned model.
    #[test]
    fn owned_offers_answer_as_the_oracle(
        offer in owned_offer(),
        config in configs(),
        port in any::<u16>(),
    ) {
        let config = Arc::new(config);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut old = OldOfferAnswer::with_shared_config(config.clone(), ip, 3);
        let mut new = OfferAnswer::with_shared_config(config.clone(), ip, 3);
        let mut text = OfferAnswer::with_shared_config(config, ip, 3);
        let expected = old.answer_offer(&offer, port);
        prop_assert_eq!(format!("{:?}", new.answer_offer(&offer, port)), format!("{expected:?}"));
        let got = text.answer_offer_text(&SessionDescriptionRef::of(&offer), port);
        match (&expected, got) {
            (Ok(e), Ok(got)) => prop_assert_eq!(&got.text, &e.answer.to_text()),
            (e, got) => prop_assert!(e.is_err() && got.is_err()),
        }
        prop_assert_eq!(SessionDescriptionRef::of(&offer).to_description(), offer);
    }
}

/// Owned offers with text that stresses the writer in every field the answer copies.
fn owned_offer() -> impl Strategy<Value = SessionDescription> {
    let text = "([a-zA-Z0-9 :/.\\-]|\r|\n|\t|\u{7f}|\u{85}|é|\u{a0}){0,8}";
    let name = prop_oneof![
        Just("rtpmap".to_owned()),
        Just("fmtp".to_owned()),
        Just("mid".to_owned()),
        Just("ptime".to_owned()),
        Just("rtcp".to_owned()),
        Just("rtcp-mux".to_owned()),
        Just("sendonly".to_owned()),
        text.prop_map(|t| t),
    ];
    let value = proptest::option::of(prop_oneof![
        "(0|8|96|101) (PCMU|pcma|opus|telephone-event|G\u{85}7)/(8000|48000)(/2)?",
        "(0|96|101) [0-9a-z\\-,\r\t ]{0,8}",
        "[0-9. ]{0,6}",
        text,
    ]);
    let attribute = (name, value).prop_map(|(name, value)| Attribute { name, value });
    let connection = prop_oneof![
        Just("0.0.0.0".to_owned()),
        Just("192.0.2.1".to_owned()),
        "[a-z.:/0-9]{0,10}",
    ]
    .prop_map(|address| Connection {
        addr_type: AddrType::Ip4,
        address,
    });
    let media = (
        prop_oneof![Just("audio".to_owned()), text.prop_map(|t| t)],
        prop_oneof![Just(0u16), Just(5004)],
        prop_oneof![
            Just("RTP/AVP".to_owned()),
            Just("RTP/AVPF".to_owned()),
            text.prop_map(|t| t)
        ],
        vec(prop_oneof!["(0|8|9|18|96|101|\\+8)", text], 0..4),
        proptest::option::of(connection.clone()),
        vec(attribute.clone(), 0..6),
    )
        .prop_map(|(media, port, protocol, formats, connection, attributes)| {
            MediaDescription {
                media,
                port,
                port_count: None,
                protocol,
                formats,
                connection,
                bandwidths: Vec::new(),
                attributes,
            }
        });
    (
        proptest::option::of(connection),
        vec(attribute, 0..3),
        vec(media, 0..3),
    )
        .prop_map(|(connection, attributes, media)| SessionDescription {
            origin: Origin {
                username: "-".to_owned(),
                session_id: "1".to_owned(),
                session_version: 1,
                addr_type: AddrType::Ip4,
                address: "h".to_owned(),
            },
            session_name: "-".to_owned(),
            connection,
            bandwidths: Vec::new(),
            timing: (0, 0),
            attributes,
            media,
        })
}

#[test]
fn the_corpus_parses_and_answers_as_the_oracle() {
    for body in CORPUS {
        let sdp = same_parse(body).unwrap().unwrap();
        same_session(
            MediaConfig::default(),
            IpAddr::from([127, 0, 0, 1]),
            &[(body.to_string(), sdp)],
            &[
                Step::Answer(0, 9, true),
                Step::Answer(0, 9, false),
                Step::Answer(0, 9, true),
            ],
        )
        .unwrap();
    }
}

/// Text for inside a line: what stresses the writer (controls, C1, non-ASCII spaces), no LF.
const IN_LINE: &str = "([a-z0-9:/.=\\-]|\r|\t|\u{1}|\u{7f}|\u{85}|é|\u{a0}| ){0,6}";

/// An offer built section by section from likely and unlikely pieces, so that most are
/// answerable and the answers carry every kind of field.
fn structured_body() -> impl Strategy<Value = String> {
    let pt = prop_oneof![
        4 => prop_oneof![Just("0"), Just("8"), Just("96"), Just("101")].prop_map(str::to_owned),
        1 => prop_oneof![Just("9"), Just("18"), Just("97"), Just("100"), Just("+8")]
            .prop_map(str::to_owned),
        1 => IN_LINE.prop_map(|t| t),
    ];
    let attribute = prop_oneof![
        3 => (
            pt.clone(),
            prop_oneof![
                3 => Just("telephone-event"),
                1 => prop_oneof![
                    Just("PCMU"), Just("pcma"), Just("opus"), Just("TELEPHONE-EVENT"),
                    Just("G722"), Just("sp ex\u{85}"), Just("x\u{1}y"),
                ],
            ],
            prop_oneof![4 => Just("8000"), 1 => Just("16000"), 1 => Just("48000"), 1 => Just("x")],
            prop_oneof![Just(""), Just("/2"), Just("/1"), Just(" 2"), Just("/0")],
        )
            .prop_map(|(pt, name, rate, ch)| format!("a=rtpmap:{pt} {name}/{rate}{ch}")),
        2 => (pt.clone(), IN_LINE).prop_map(|(pt, params)| format!("a=fmtp:{pt} {params}")),
        1 => prop_oneof![Just("20"), Just("30.5"), Just("0"), Just("1e9"), Just("x")]
            .prop_map(|p| format!("a=ptime:{p}")),
        1 => IN_LINE.prop_map(|m| format!("a=mid:{m}")),
        1 => prop_oneof![Just("7079"), Just("x 1"), Just("70000")].prop_map(|r| format!("a=rtcp:{r}")),
        1 => Just("a=rtcp-mux".to_owned()),
        1 => prop_oneof![Just("a=sendonly"), Just("a=recvonly"), Just("a=inactive"), Just("a=sendrecv")]
            .prop_map(str::to_owned),
        1 => (IN_LINE, proptest::option::of(IN_LINE)).prop_map(|(n, v)| match v {
            Some(v) => format!("a={n}:{v}"),
            None => format!("a={n}"),
        }),
    ];
    let connection = prop_oneof![
        Just("c=IN IP4 192.0.2.7"),
        Just("c=IN IP4 0.0.0.0"),
        Just("c=IN IP6 ::"),
        Just("c=IN IP4 host.example/2"),
    ];
    let media = (
        prop_oneof![6 => Just("audio".to_owned()), 1 => Just("video".to_owned()), 1 => IN_LINE.prop_map(|t| t)],
        prop_oneof![4 => Just("5004"), 1 => Just("0"), 1 => Just("5004/2")],
        prop_oneof![
            6 => Just("RTP/AVP".to_owned()),
            1 => Just("RTP/AVPF".to_owned()),
            1 => Just("RTP/SAVP".to_owned()),
            1 => IN_LINE.prop_map(|t| t),
        ],
        vec(pt, 1..5),
        proptest::option::of(connection.clone()),
        vec(attribute.clone(), 0..10),
        any::<bool>(),
    )
        .prop_map(|(media, port, proto, formats, connection, attributes, events)| {
            let mut lines = vec![format!("m={media} {port} {proto} {}", formats.join(" "))];
            if events {
                // Most answers then carry telephone-event and its fmtp.
                if let Some(m) = lines.first_mut() {
                    m.push_str(" 101");
                }
                lines.push("a=rtpmap:101 telephone-event/8000".to_owned());
            }
            lines.extend(connection.map(str::to_owned));
            lines.extend(attributes);
            lines
        });
    (
        prop_oneof![Just("-"), Just("user1")],
        prop_oneof![4 => connection.prop_map(Some), 1 => Just(None)],
        vec(attribute, 0..2),
        vec(media, 1..4),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(user, connection, attributes, media, line_end)| {
            let mut lines = vec![
                "v=0".to_owned(),
                format!("o={user} 1 1 IN IP4 192.0.2.1"),
                "s=-".to_owned(),
            ];
            lines.extend(connection.map(str::to_owned));
            lines.push("t=0 0".to_owned());
            lines.extend(attributes);
            lines.extend(media.into_iter().flatten());
            lines.join(line_end)
        })
}

proptest::proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Structured offers, a session of up to three of them.
    #[test]
    fn structured_offers_answer_as_the_oracle(
        bodies in vec(structured_body(), 1..4),
        config in configs(),
        ip in local_ips(),
        steps in steps(),
    ) {
        let mut offers = Vec::new();
        for body in bodies {
            if let Some(sdp) = same_parse(&body)? {
                offers.push((body, sdp));
            }
        }
        same_session(config, ip, &offers, &steps)?;
    }
}

proptest::proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// `Words` cuts where `split_whitespace` does, and `rest` is what follows each word.
    #[test]
    fn words_match_split_whitespace(text in "([a-z0-9]| |\t|\r|\n|\u{b}|\u{c}|\u{85}|\u{a0}|\u{2028}|\u{3000}|é){0,24}") {
        let ours: Vec<&str> = Words::new(&text).collect();
        let std: Vec<&str> = text.split_whitespace().collect();
        prop_assert_eq!(&ours, &std);
        let mut words = Words::new(&text);
        while let Some(word) = words.next() {
            let rest = words.rest();
            prop_assert!(text.ends_with(rest));
            let before = &text[..text.len() - rest.len()];
            prop_assert!(before.ends_with(word));
            prop_assert_eq!(Words::new(rest).collect::<Vec<_>>(), words.clone().collect::<Vec<_>>());
        }
    }

    /// The trims agree with `str`'s.
    #[test]
    fn trims_match_std(text in "([a-z]| |\t|\r|\u{b}|\u{85}|\u{a0}|é){0,8}") {
        prop_assert_eq!(trim(&text), text.trim());
        prop_assert_eq!(trim_end(&text), text.trim_end());
    }

    /// The word-at-a-time search finds the first byte as `position` does.
    #[test]
    fn find_byte_matches_position(bytes in vec(prop_oneof![Just(b'\n'), Just(0x8a), Just(0x0b), any::<u8>()], 0..40), byte in prop_oneof![Just(b'\n'), any::<u8>()]) {
        prop_assert_eq!(find_byte(&bytes, byte), bytes.iter().position(|&b| b == byte));
    }

    /// Numbers in decimal, as `Display` writes them.
    #[test]
    fn numbers_match_display(value in prop_oneof![any::<u64>(), 0..2000u64, Just(u64::MAX)]) {
        let mut text = String::from("x");
        push_number(&mut text, value);
        prop_assert_eq!(text, format!("x{value}"));
        let digits = Digits::of(value);
        prop_assert_eq!(digits.as_str(), value.to_string());
    }

    /// `rtpmap` values parse as they did.
    #[test]
    fn rtpmaps_parse_as_they_did(value in "( |\t|\u{a0})?(0|96|\\+1|300|x)( |  |/)([a-zA-Z\\-\u{85}]{0,4})(/|/ | )(8000|90000|x|)(/|/ | |)(1|2|0|x|)(/3)?( 2)?( |\u{a0})?") {
        prop_assert_eq!(RtpMap::parse(&value), oracle::rtpmap_parse(&value));
    }

    /// The hold address is recognised as `Connection::is_unspecified` does.
    #[test]
    fn unspecified_matches_the_owned_model(address in "(0|00|1|:|\\.|/|f|a){0,12}") {
        let owned = Connection { addr_type: AddrType::Ip4, address: address.clone() };
        let view = view::ConnectionRef { addr_type: AddrType::Ip4, address: &address };
        prop_assert_eq!(view.is_unspecified(), owned.is_unspecified());
    }
}

#[test]
fn many_rtpmaps_are_found_as_the_first_one() {
    // More than the 16 kept in place: later ones are still found, the first of a number wins.
    let mut body = String::from("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
    body.push_str("m=audio 5004 RTP/AVP 119 120 121 122\r\n");
    for pt in 100..121 {
        body.push_str(&format!("a=rtpmap:{pt} x{pt}/8000\r\n"));
    }
    body.push_str("a=rtpmap:120 PCMU/8000\r\na=rtpmap:121 PCMA/8000\r\na=rtpmap:122 PCMA/8000\r\n");
    let sdp = same_parse(&body).unwrap().unwrap();
    same_session(
        MediaConfig::default(),
        IpAddr::from([127, 0, 0, 1]),
        &[(body, sdp)],
        &[Step::Answer(0, 9, true), Step::Answer(0, 9, false)],
    )
    .unwrap();
}
