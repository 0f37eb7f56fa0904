//! SDP parser, writer and offer/answer tests on bodies shaped like real peers' SDP.

use super::negotiate::{Codec, MediaChange, MediaConfig, OfferAnswer};
use super::*;

/// SIPp's built-in `uac` scenario body (LF line ends as SIPp writes them in the XML).
const SIPP_UAC: &str = "v=0\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\n\
s=-\n\
c=IN IP4 127.0.0.1\n\
t=0 0\n\
m=audio 6000 RTP/AVP 0\n\
a=rtpmap:0 PCMU/8000\n";

/// A baresip-style offer: opus first, G.711, telephone-event, rtcp-mux, no final CRLF.
const BARESIP_OFFER: &str = "v=0\r\n\
o=- 1813736409 1476340733 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
m=audio 10710 RTP/AVP 96 0 8 101\r\n\
b=AS:77\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp-mux\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:3145160946 cname:8d0a6e1c-23cd-4a3b";

/// A linphone-style offer: host name in o=, session-level attributes, telephone-event at
/// three clock rates, a video stream we must reject, PCMA preferred over PCMU.
const LINPHONE_OFFER: &str = "v=0\r\n\
o=alice 2310 1234 IN IP4 linphone.example.org\r\n\
s=Talk\r\n\
c=IN IP4 192.168.0.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
a=record:off\r\n\
m=audio 7078 RTP/AVP 96 97 98 8 0 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp:7079\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
m=video 9078 RTP/AVP 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42801F\r\n";

fn bob() -> OfferAnswer {
    OfferAnswer::new(MediaConfig::default(), "192.0.2.2".parse().unwrap())
}

#[test]
fn parses_sipp_uac_body() {
    let sdp: SessionDescription = SIPP_UAC.parse().unwrap();
    assert_eq!(sdp.origin.username, "user1");
    assert_eq!(sdp.origin.session_version, 2_353_687_637);
    let m = &sdp.media[0];
    assert_eq!(
        (m.media.as_str(), m.port, m.protocol.as_str()),
        ("audio", 6000, "RTP/AVP")
    );
    assert_eq!(m.formats, vec!["0"]);
    assert_eq!(m.rtpmap(0).unwrap().encoding_name, "PCMU");
    assert_eq!(sdp.direction_for(m), MediaDirection::SendRecv);
}

#[test]
fn parses_baresip_offer_without_final_line_end() {
    let sdp: SessionDescription = BARESIP_OFFER.parse().unwrap();
    let m = &sdp.media[0];
    assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![96, 0, 8, 101]);
    let opus = m.rtpmap(96).unwrap();
    assert_eq!((opus.clock_rate, opus.channels), (48_000, 2));
    assert_eq!(m.fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert!(m.rtcp_mux());
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.bandwidths, vec!["AS:77"]);
    assert_eq!(m.attribute_values("ssrc").count(), 1);
}

#[test]
fn parses_linphone_offer_with_host_name() {
    let sdp: SessionDescription = LINPHONE_OFFER.parse().unwrap();
    assert_eq!(sdp.origin.address, "linphone.example.org");
    assert_eq!(sdp.attributes.len(), 2);
    assert_eq!(sdp.media.len(), 2);
    assert_eq!(sdp.media[0].rtcp_port(), Some(7079));
    assert_eq!(sdp.media[1].media, "video");
}

#[test]
fn writer_emits_valid_rtpmap_with_channels_and_crlf() {
    let sdp: SessionDescription = BARESIP_OFFER.parse().unwrap();
    let text = sdp.to_string();
    assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(text.ends_with("\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n'));
    // Round trip: what we write parses back to the same model.
    assert_eq!(text.parse::<SessionDescription>().unwrap(), sdp);
}

#[test]
fn tolerates_broken_rtpmap_channel_form_and_rewrites_it() {
    let body = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                m=audio 5000 RTP/AVP 111\r\na=rtpmap:111 opus/48000 2\r\n";
    let sdp: SessionDescription = body.parse().unwrap();
    assert_eq!(sdp.media[0].rtpmap(111).unwrap().channels, 2);
    assert!(sdp.to_string().contains("a=rtpmap:111 opus/48000/2\r\n"));
}

#[test]
fn writer_cannot_be_made_to_inject_lines() {
    let mut sdp: SessionDescription = SIPP_UAC.parse().unwrap();
    sdp.session_name = "evil\r\nm=video 1 RTP/AVP 0".to_owned();
    sdp.origin.username = "a b".to_owned();
    let text = sdp.to_string();
    assert_eq!(text.lines().filter(|l| l.starts_with("m=")).count(), 1);
    assert!(text.contains("o=a-b "));
}

#[test]
fn malformed_bodies_are_errors_with_line_numbers() {
    let cases: &[(&str, usize)] = &[
        ("", 0),
        ("x=0\r\n", 1),
        ("v=0\r\no=- 1 1 IN IP4\r\n", 2),
        ("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio port RTP/AVP 0\r\n", 3),
        ("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP\r\n", 3),
        ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP9 h\r\n", 3),
        ("v=0\r\nbroken\r\n", 2),
        ("v=0\r\ns=-\r\n", 0),
    ];
    for &(body, line) in cases {
        match body.parse::<SessionDescription>() {
            Err(Error::MalformedSdp { line: l, .. }) => assert_eq!(l, line, "{body:?}"),
            other => panic!("{body:?} gave {other:?}"),
        }
    }
}

#[test]
fn answer_to_sipp_uses_pcmu_and_no_telephone_event() {
    let offer: SessionDescription = SIPP_UAC.parse().unwrap();
    let answered = bob().answer_offer(&offer, 30_000).unwrap();
    let m = &answered.answer.media[0];
    assert_eq!(m.formats, vec!["0"]);
    assert_eq!(answered.media.codec.name, "PCMU");
    assert_eq!(answered.media.telephone_event, None);
    assert_eq!(
        answered.media.remote_rtp().unwrap(),
        "127.0.0.1:6000".parse().unwrap()
    );
    assert_eq!(answered.media.remote_rtcp_port, 6001);
    let text = answered.answer.to_string();
    assert!(text.contains("m=audio 30000 RTP/AVP 0\r\n"), "{text}");
    assert!(text.contains("c=IN IP4 192.0.2.2\r\n"));
    assert!(text.contains("a=sendrecv\r\n"));
}

#[test]
fn answer_to_baresip_keeps_offerer_order_and_mux() {
    let offer: SessionDescription = BARESIP_OFFER.parse().unwrap();
    let mut bob = OfferAnswer::new(
        MediaConfig::default()
            .codecs(vec![Codec::pcma(), Codec::pcmu()])
            .rtcp_mux(true),
        "192.0.2.2".parse().unwrap(),
    );
    let answered = bob.answer_offer(&offer, 30_000).unwrap();
    let m = &answered.answer.media[0];
    // Offerer's order (PCMU before PCMA) wins over ours; opus is dropped.
    assert_eq!(m.formats, vec!["0", "8", "101"]);
    assert_eq!(answered.media.codec.name, "PCMU");
    assert_eq!(answered.media.telephone_event, Some(101));
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert!(answered.media.rtcp_mux);
    assert_eq!(answered.media.remote_rtcp_port, 10710);
    assert!(m.rtcp_mux());
}

#[test]
fn answer_to_linphone_maps_telephone_event_by_rate_and_rejects_video() {
    let offer: SessionDescription = LINPHONE_OFFER.parse().unwrap();
    let answered = bob().answer_offer(&offer, 30_000).unwrap();
    assert_eq!(answered.answer.media.len(), 2);
    let audio = &answered.answer.media[0];
    assert_eq!(audio.formats, vec!["8", "0", "100"]);
    assert_eq!(answered.media.codec.name, "PCMA");
    assert_eq!(answered.media.codec.payload_type, 8);
    assert_eq!(answered.media.telephone_event, Some(100));
    assert_eq!(answered.media.remote_rtcp_port, 7079);
    let video = &answered.answer.media[1];
    assert_eq!((video.media.as_str(), video.port), ("video", 0));
    assert_eq!(video.formats, vec!["96", "97"]);
    assert!(
        answered
            .answer
            .to_string()
            .contains("m=video 0 RTP/AVP 96 97\r\n")
    );
}

#[test]
fn dynamic_payload_type_of_offerer_is_kept() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                m=audio 5000 RTP/AVP 0 118\r\na=rtpmap:118 telephone-event/8000\r\n";
    let answered = bob().answer_offer(&body.parse().unwrap(), 30_000).unwrap();
    assert_eq!(answered.media.telephone_event, Some(118));
    assert!(
        answered
            .answer
            .to_string()
            .contains("a=rtpmap:118 telephone-event/8000\r\n")
    );
}

#[test]
fn no_common_codec_is_a_488_error() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                m=audio 5000 RTP/AVP 96 18\r\na=rtpmap:96 opus/48000/2\r\n";
    let err = bob()
        .answer_offer(&body.parse().unwrap(), 30_000)
        .unwrap_err();
    assert!(matches!(err, Error::NoCommonCodec));
    use session_types::Classify;
    assert_eq!(err.kind().suggested_status().map(|s| s.as_u16()), Some(488));
    // SRTP-only offers are also incompatible: we do not do SRTP.
    let srtp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                m=audio 5000 RTP/SAVP 0\r\n";
    assert!(matches!(
        bob().answer_offer(&srtp.parse().unwrap(), 1),
        Err(Error::NoCommonCodec)
    ));
}

#[test]
fn direction_answers_for_hold() {
    use MediaDirection::*;
    let cases = [
        (SendRecv, SendRecv, SendRecv),
        (SendOnly, SendRecv, RecvOnly),
        (RecvOnly, SendRecv, SendOnly),
        (Inactive, SendRecv, Inactive),
        (SendRecv, SendOnly, SendOnly),
        (SendOnly, SendOnly, Inactive),
    ];
    for (offer, local, expected) in cases {
        assert_eq!(
            offer.answer(local),
            expected,
            "{offer:?} with local {local:?}"
        );
    }
}

fn offer_with(direction: &str, addr: &str, port: u16) -> SessionDescription {
    format!(
        "v=0\r\no=- 7 7 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
    .parse()
    .unwrap()
}

#[test]
fn re_offers_report_hold_resume_and_moves() {
    let mut bob = bob();
    let first = bob
        .answer_offer(&offer_with("sendrecv", "10.0.0.1", 5000), 30_000)
        .unwrap();
    assert!(first.changes.is_empty());
    let v1 = first.answer.origin.session_version;

    let held = bob
        .answer_offer(&offer_with("sendonly", "10.0.0.1", 5000), 30_000)
        .unwrap();
    assert!(held.changes.contains(&MediaChange::HeldByRemote));
    assert_eq!(held.media.direction, MediaDirection::RecvOnly);
    assert!(held.answer.to_string().contains("a=recvonly\r\n"));
    assert_eq!(held.answer.origin.session_version, v1 + 1);

    let resumed = bob
        .answer_offer(&offer_with("sendrecv", "10.0.0.1", 5000), 30_000)
        .unwrap();
    assert!(resumed.changes.contains(&MediaChange::ResumedByRemote));

    // Old-style hold (RFC 2543): c=0.0.0.0.
    let old_hold = bob
        .answer_offer(&offer_with("sendrecv", "0.0.0.0", 5000), 30_000)
        .unwrap();
    assert_eq!(
        old_hold.changes,
        vec![
            MediaChange::HeldByRemote,
            MediaChange::DirectionChanged {
                from: MediaDirection::SendRecv,
                to: MediaDirection::RecvOnly
            }
        ]
    );
    assert!(
        old_hold.answer.to_string().contains("a=recvonly\r\n"),
        "we do not send to 0.0.0.0"
    );
    let back = bob
        .answer_offer(&offer_with("sendrecv", "10.0.0.1", 5000), 30_000)
        .unwrap();
    assert_eq!(back.changes[0], MediaChange::ResumedByRemote);
    assert_eq!(back.media.direction, MediaDirection::SendRecv);

    let moved = bob
        .answer_offer(&offer_with("sendrecv", "10.0.0.9", 6000), 30_000)
        .unwrap();
    assert_eq!(
        moved.changes,
        vec![MediaChange::RemoteAddressChanged {
            host: "10.0.0.9".to_owned(),
            port: 6000
        }]
    );
    // Same offer again: nothing changed, the answer keeps its version.
    let same = bob
        .answer_offer(&offer_with("sendrecv", "10.0.0.9", 6000), 30_000)
        .unwrap();
    assert!(same.changes.is_empty());
    assert_eq!(
        same.answer.origin.session_version,
        moved.answer.origin.session_version
    );
}

#[test]
fn offer_answer_round_trip_and_local_hold() {
    let mut alice = OfferAnswer::new(MediaConfig::default(), "192.0.2.1".parse().unwrap());
    let mut bob = bob();
    let offer = alice.create_offer(40_000);
    let text = offer.to_string();
    assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{text}");
    assert!(text.contains("a=ptime:20\r\n"));
    let answer = bob
        .answer_offer(&text.parse().unwrap(), 50_000)
        .unwrap()
        .answer;
    let agreed = alice
        .process_answer(&answer.to_string().parse().unwrap())
        .unwrap();
    assert_eq!(agreed.media.codec.payload_type, 0);
    assert_eq!(agreed.media.telephone_event, Some(101));
    assert_eq!(agreed.media.direction, MediaDirection::SendRecv);

    // Alice holds Bob.
    alice.set_local_direction(MediaDirection::SendOnly);
    let hold_offer = alice.create_offer(40_000);
    assert!(hold_offer.origin.session_version > offer.origin.session_version);
    let bob_side = bob.answer_offer(&hold_offer, 50_000).unwrap();
    assert!(bob_side.changes.contains(&MediaChange::HeldByRemote));
    let alice_side = alice.process_answer(&bob_side.answer).unwrap();
    assert_eq!(alice_side.media.direction, MediaDirection::SendOnly);
    assert!(
        alice_side
            .changes
            .iter()
            .any(|c| matches!(c, MediaChange::DirectionChanged { .. }))
    );
}

#[test]
fn bad_answers_are_rejected() {
    let mut alice = OfferAnswer::new(MediaConfig::default(), "192.0.2.1".parse().unwrap());
    let _offer = alice.create_offer(40_000);
    let rejected: SessionDescription = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n\
        t=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
        .parse()
        .unwrap();
    assert!(matches!(
        alice.process_answer(&rejected),
        Err(Error::StreamRejected)
    ));
    let foreign: SessionDescription = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n\
        t=0 0\r\nm=audio 5000 RTP/AVP 18\r\n"
        .parse()
        .unwrap();
    assert!(matches!(
        alice.process_answer(&foreign),
        Err(Error::AnswerMismatch(_))
    ));
    let two: SessionDescription = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n\
        t=0 0\r\nm=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"
        .parse()
        .unwrap();
    assert!(matches!(
        alice.process_answer(&two),
        Err(Error::AnswerMismatch(_))
    ));
    // The offer is kept after a bad answer, so a good one still completes it.
    let good: SessionDescription = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n\
        t=0 0\r\nm=audio 5000 RTP/AVP 8\r\n"
        .parse()
        .unwrap();
    assert_eq!(
        alice.process_answer(&good).unwrap().media.codec.name,
        "PCMA"
    );
}

proptest::proptest! {
    #[test]
    fn parser_never_panics(body in "\\PC{0,400}") {
        let _ = body.parse::<SessionDescription>();
    }

    #[test]
    fn parser_never_panics_on_sdp_like_lines(
        lines in proptest::collection::vec(
            "(v=0|o=[ -~]{0,30}|c=IN IP[46] [ -~]{0,20}|m=audio [0-9]{0,6} [A-Z/]{0,8}[ 0-9]{0,10}|a=rtpmap:[ -~]{0,20}|a=[ -~]{0,20}|t=[0-9 ]{0,10})",
            0..12,
        )
    ) {
        let body = lines.join("\r\n");
        if let Ok(sdp) = body.parse::<SessionDescription>() {
            let text = sdp.to_string();
            let _ = text.parse::<SessionDescription>();
        }
    }
}

#[test]
fn answerer_may_renumber_telephone_event() {
    let mut alice = OfferAnswer::new(MediaConfig::default(), "192.0.2.1".parse().unwrap());
    let _ = alice.create_offer(40_000);
    let answer: SessionDescription = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n\
        t=0 0\r\nm=audio 5000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
        .parse()
        .unwrap();
    let agreed = alice.process_answer(&answer).unwrap();
    assert_eq!(
        agreed.media.telephone_event,
        Some(96),
        "we send with the answer's number"
    );
    assert_eq!(
        agreed.media.local_telephone_event,
        Some(101),
        "the peer sends with ours"
    );
}

/// The writer as it was before it was rewritten without `core::fmt` (2026-12-06), kept as the
/// oracle of `to_text`. One change on purpose: an `rtpmap` encoding name goes through `token`
/// here too (the old writer wrote it raw, so a CR inside a name reached the wire).
mod old_writer {
    use std::fmt::{self, Write as _};

    use super::super::{Attribute, RtpMap, SessionDescription};

    fn clean(text: &str) -> impl fmt::Display + '_ {
        struct Clean<'a>(&'a str);
        impl fmt::Display for Clean<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for c in self.0.chars() {
                    f.write_char(if c.is_control() { ' ' } else { c })?;
                }
                Ok(())
            }
        }
        Clean(text)
    }

    fn token(text: &str) -> impl fmt::Display + '_ {
        struct Token<'a>(&'a str);
        impl fmt::Display for Token<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0.is_empty() {
                    return f.write_char('-');
                }
                for c in self.0.chars() {
                    f.write_char(if c.is_control() || c == ' ' { '-' } else { c })?;
                }
                Ok(())
            }
        }
        Token(text)
    }

    fn write_attribute(f: &mut String, a: &Attribute) -> fmt::Result {
        if a.name == "rtpmap"
            && let Some(map) = a.value.as_deref().and_then(RtpMap::parse)
        {
            write!(
                f,
                "a=rtpmap:{} {}/{}",
                map.payload_type,
                token(&map.encoding_name),
                map.clock_rate
            )?;
            if map.channels > 1 {
                write!(f, "/{}", map.channels)?;
            }
            return f.write_str("\r\n");
        }
        match &a.value {
            Some(v) => write!(f, "a={}:{}\r\n", token(&a.name), clean(v)),
            None => write!(f, "a={}\r\n", token(&a.name)),
        }
    }

    pub(super) fn write(sdp: &SessionDescription) -> String {
        let mut f = String::new();
        let o = &sdp.origin;
        let _ = write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\n",
            token(&o.username),
            token(&o.session_id),
            o.session_version,
            o.addr_type.as_str(),
            token(&o.address)
        );
        let name = if sdp.session_name.trim().is_empty() {
            "-"
        } else {
            &sdp.session_name
        };
        let _ = write!(f, "s={}\r\n", clean(name));
        if let Some(c) = &sdp.connection {
            let _ = write!(f, "c=IN {} {}\r\n", c.addr_type.as_str(), token(&c.address));
        }
        for b in &sdp.bandwidths {
            let _ = write!(f, "b={}\r\n", token(b));
        }
        let _ = write!(f, "t={} {}\r\n", sdp.timing.0, sdp.timing.1);
        for a in &sdp.attributes {
            let _ = write_attribute(&mut f, a);
        }
        for m in &sdp.media {
            let _ = write!(f, "m={} {}", token(&m.media), m.port);
            if let Some(n) = m.port_count {
                let _ = write!(f, "/{n}");
            }
            let _ = write!(f, " {}", token(&m.protocol));
            if m.formats.is_empty() {
                f.push_str(" 0");
            }
            for fmt_ in &m.formats {
                let _ = write!(f, " {}", token(fmt_));
            }
            f.push_str("\r\n");
            if let Some(c) = &m.connection {
                let _ = write!(f, "c=IN {} {}\r\n", c.addr_type.as_str(), token(&c.address));
            }
            for b in &m.bandwidths {
                let _ = write!(f, "b={}\r\n", token(b));
            }
            for a in &m.attributes {
                let _ = write_attribute(&mut f, a);
            }
        }
        f
    }
}

/// Text with what stresses the writer: spaces, CR/LF, other C0 controls, DEL, C1 controls
/// (`U+0085`), other non-ASCII, `:` and `/`.
fn tricky_text() -> impl proptest::strategy::Strategy<Value = String> + Clone {
    "([a-zA-Z0-9 :/.\\-]|\r|\n|\t|\u{7f}|\u{85}|\u{9f}|\u{a0}|é|\u{2028}){0,12}"
}

fn arbitrary_sdp() -> impl proptest::strategy::Strategy<Value = SessionDescription> {
    use proptest::collection::vec;
    use proptest::prelude::*;
    let attribute = (
        prop_oneof![
            Just("rtpmap".to_owned()),
            Just("sendrecv".to_owned()),
            tricky_text()
        ],
        proptest::option::of(prop_oneof![
            "[0-9]{1,3} [A-Za-z\r\u{85}-]{0,6}/[0-9]{1,6}(/[0-9])?( [0-9])?",
            tricky_text()
        ]),
    )
        .prop_map(|(name, value)| Attribute { name, value });
    let connection = (any::<bool>(), tricky_text()).prop_map(|(v6, address)| Connection {
        addr_type: if v6 { AddrType::Ip6 } else { AddrType::Ip4 },
        address,
    });
    let media = (
        tricky_text(),
        any::<u16>(),
        proptest::option::of(any::<u16>()),
        tricky_text(),
        vec(tricky_text(), 0..4),
        proptest::option::of(connection.clone()),
        vec(tricky_text(), 0..2),
        vec(attribute.clone(), 0..5),
    )
        .prop_map(
            |(media, port, port_count, protocol, formats, connection, bandwidths, attributes)| {
                MediaDescription {
                    media,
                    port,
                    port_count,
                    protocol,
                    formats,
                    connection,
                    bandwidths,
                    attributes,
                }
            },
        );
    (
        (tricky_text(), tricky_text(), any::<u64>(), tricky_text()),
        tricky_text(),
        proptest::option::of(connection),
        vec(tricky_text(), 0..2),
        (any::<u64>(), any::<u64>()),
        vec(attribute, 0..4),
        vec(media, 0..3),
    )
        .prop_map(
            |(
                (user, id, version, address),
                session_name,
                connection,
                bandwidths,
                timing,
                attributes,
                media,
            )| {
                SessionDescription {
                    origin: Origin {
                        username: user,
                        session_id: id,
                        session_version: version,
                        addr_type: AddrType::Ip4,
                        address,
                    },
                    session_name,
                    connection,
                    bandwidths,
                    timing,
                    attributes,
                    media,
                }
            },
        )
}

proptest::proptest! {
    /// The writer built on `push_str` writes exactly what the `core::fmt` one did.
    #[test]
    fn writer_matches_the_old_writer(sdp in arbitrary_sdp()) {
        proptest::prop_assert_eq!(sdp.to_text(), old_writer::write(&sdp));
        proptest::prop_assert_eq!(sdp.to_string(), sdp.to_text());
    }
}

#[test]
fn writer_matches_the_old_writer_on_real_bodies() {
    for body in [SIPP_UAC, BARESIP_OFFER, LINPHONE_OFFER] {
        let sdp: SessionDescription = body.parse().unwrap();
        assert_eq!(sdp.to_text(), old_writer::write(&sdp));
    }
}

#[test]
fn an_rtpmap_name_cannot_inject_a_line() {
    let body = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96\r\n\
                a=rtpmap:96 op\rus/48000\r\n";
    let sdp: SessionDescription = body.parse().unwrap();
    let text = sdp.to_text();
    assert!(text.contains("a=rtpmap:96 op-us/48000\r\n"), "{text:?}");
    assert_eq!(text.matches('\r').count(), text.matches("\r\n").count());
}

#[test]
fn numbers_are_written_in_decimal() {
    for value in [0, 7, 10, 99, 100, 65_535, 2_353_687_637, u64::MAX] {
        let mut text = String::new();
        push_number(&mut text, value);
        assert_eq!(text, value.to_string());
    }
}

#[test]
fn the_version_grows_only_when_the_answer_changes() {
    let offer: SessionDescription = SIPP_UAC.parse().unwrap();
    let mut us = bob();
    let first = us.answer_offer(&offer, 40_000).unwrap().answer;
    let again = us.answer_offer(&offer, 40_000).unwrap().answer;
    assert_eq!(again.origin.session_version, first.origin.session_version);
    let moved = us.answer_offer(&offer, 40_002).unwrap().answer;
    assert_eq!(
        moved.origin.session_version,
        first.origin.session_version + 1
    );
    us.set_local_direction(MediaDirection::SendOnly);
    let held = us.answer_offer(&offer, 40_002).unwrap().answer;
    assert_eq!(
        held.origin.session_version,
        first.origin.session_version + 2
    );
    let held_again = us.answer_offer(&offer, 40_002).unwrap().answer;
    assert_eq!(
        held_again.origin.session_version,
        held.origin.session_version
    );
}

proptest::proptest! {
    /// The line scan cuts a body exactly where `split('\n')` does.
    #[test]
    fn lines_match_split(body in "([a-z=:\r\n ]|é|\u{85}){0,60}") {
        let ours: Vec<&str> = lines(&body).collect();
        let std: Vec<&str> = body.split('\n').collect();
        proptest::prop_assert_eq!(ours, std);
    }

    /// An attribute splits at its first `:` as `split_once(':')` does.
    #[test]
    fn attributes_split_at_the_first_colon(value in "([a-z: ]|é){0,20}") {
        let attribute = parse_attribute(&value);
        let expected = match value.split_once(':') {
            Some((name, v)) => (name.trim().to_owned(), Some(v.trim().to_owned())),
            None => (value.trim().to_owned(), None),
        };
        proptest::prop_assert_eq!((attribute.name, attribute.value), expected);
    }

    /// IPv4 text as `Display` writes it.
    #[test]
    fn ipv4_text_matches_display(octets in proptest::array::uniform4(proptest::num::u8::ANY)) {
        let ip = std::net::IpAddr::from(octets);
        proptest::prop_assert_eq!(super::negotiate::ip_text(ip), ip.to_string());
    }
}
