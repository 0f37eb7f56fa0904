//! Every datagram a seeded user agent sends as a UAS in a scripted set of calls (180 with a
//! caller's line, 200 with SDP or a failure, a retransmitted INVITE, 2xx and failure
//! retransmissions, the failure's ACK, INFO answered with the caller's Server, BYE and its
//! retransmission, a BYE for no dialog, the timers), against the bytes recorded in
//! `golden/uas_wire.txt` before the responses were written straight from the request
//! (`reply::Reply`): the wire must not change. The requests use compact names, two Vias,
//! Record-Route and Timestamp, so that every rule of RFC 3261 §8.2.6 shows.
//!
//! After a deliberate change on the wire, rewrite the file with
//! `UPDATE_GOLDEN=1 cargo test -p session-dialog --test uas_wire_golden`.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_sip::{Header, HeaderName, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn req(
    method: &str,
    branch: &str,
    call: &str,
    seq: u32,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> Bytes {
    Bytes::from(format!(
        "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.1.2.3:5061;branch={branch};rport\r\n\
         v: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-proxy\r\n\
         Record-Route: <sip:p1.example;lr>\r\n\
         f: \"Peer\" <sip:peer@127.0.0.1:5061>;tag=peer-{call}\r\n\
         t: <sip:service@127.0.0.1:5060>{to_tag}\r\n\
         i: {call}@127.0.0.1\r\n\
         CSeq: {seq} {method}\r\n\
         Timestamp: 12\r\n\
         Contact: sip:peer@127.0.0.1:5061;expires=60\r\n\
         Max-Forwards: 70\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn script() -> String {
    let mut ua = UserAgent::new(UaConfig {
        // Not the crate's version, which would change the Server line with every release.
        endpoint: EndpointConfig {
            user_agent: Some("session-dialog golden test".into()),
            ..EndpointConfig::default()
        },
        via_host: "127.0.0.1".into(),
        via_port: 5060,
        contact: Uri::parse("sip:service@127.0.0.1:5060").unwrap(),
        large_requests_over_tcp: false,
        rng_seed: Some(42),
    });
    let peer = SocketAddr::from(([127, 0, 0, 1], 5061));
    let mut now = Instant::now();
    let start = now;
    let mut out = Vec::new();
    let drain = |ua: &mut UserAgent, out: &mut Vec<String>, now: Instant| {
        while let Some(t) = ua.poll_transmit() {
            out.push(format!(
                "-> {} {:?} +{:?}\n{}",
                t.destination,
                t.protocol,
                now - start,
                String::from_utf8_lossy(&t.bytes)
            ));
        }
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    for (i, final_status) in [200u16, 486, 200, 603].into_iter().enumerate() {
        let call = format!("call-{i}");
        let invite = req(
            "INVITE",
            &format!("z9hG4bK-{i}-0"),
            &call,
            1,
            "",
            "Supported: timer\r\nc: application/sdp\r\n",
            sdp,
        );
        ua.handle_datagram(now, Protocol::Udp, peer, &invite);
        let tx = loop {
            match ua.poll_event() {
                Some(UaEvent::IncomingInvite { tx, .. }) => break tx,
                Some(_) => continue,
                None => panic!("no INVITE"),
            }
        };
        drain(&mut ua, &mut out, now);
        // 180 with a caller header, then the final answer.
        ua.answer(
            now,
            tx,
            StatusCode::new(180).unwrap(),
            vec![Header::new(HeaderName::Allow, "INVITE, ACK, BYE")],
            None,
        )
        .unwrap();
        drain(&mut ua, &mut out, now);
        now += Duration::from_millis(300);
        ua.handle_timeout(now);
        drain(&mut ua, &mut out, now);
        let status = StatusCode::new(final_status).unwrap();
        let body = status
            .is_success()
            .then(|| ("application/sdp", Bytes::from_static(sdp.as_bytes())));
        let dialog = ua
            .answer(
                now,
                tx,
                status,
                vec![Header::new(HeaderName::ContentLength, "7")],
                body,
            )
            .unwrap();
        drain(&mut ua, &mut out, now);
        // A retransmitted INVITE, then time for a 2xx retransmission.
        ua.handle_datagram(now, Protocol::Udp, peer, &invite);
        drain(&mut ua, &mut out, now);
        now += Duration::from_millis(600);
        ua.handle_timeout(now);
        drain(&mut ua, &mut out, now);
        let tag = match &dialog {
            Some(d) => d.local_tag.to_string(),
            None => {
                // The failure's ACK goes in the INVITE transaction: read the tag off the wire.
                let last = out.last().unwrap();
                let at = last.find(";tag=").unwrap();
                let rest = &last[at + 5..];
                rest[..rest.find("\r\n").unwrap()].to_owned()
            }
        };
        let to = format!(";tag={tag}");
        let ack_branch = if dialog.is_some() {
            format!("z9hG4bK-{i}-2")
        } else {
            format!("z9hG4bK-{i}-0")
        };
        ua.handle_datagram(
            now,
            Protocol::Udp,
            peer,
            &req("ACK", &ack_branch, &call, 1, &to, "", ""),
        );
        drain(&mut ua, &mut out, now);
        if dialog.is_some() {
            // An INFO answered by the application, then BYE.
            ua.handle_datagram(
                now,
                Protocol::Udp,
                peer,
                &req("INFO", &format!("z9hG4bK-{i}-i"), &call, 2, &to, "", ""),
            );
            while let Some(event) = ua.poll_event() {
                if let UaEvent::IncomingRequest { tx, .. } = event {
                    ua.answer(
                        now,
                        tx,
                        StatusCode::OK,
                        vec![Header::new(HeaderName::Server, "custom")],
                        None,
                    )
                    .unwrap();
                }
            }
            drain(&mut ua, &mut out, now);
            ua.handle_datagram(
                now,
                Protocol::Udp,
                peer,
                &req("BYE", &format!("z9hG4bK-{i}-3"), &call, 3, &to, "", ""),
            );
            drain(&mut ua, &mut out, now);
            // The BYE again: the transaction answers it from what it kept.
            ua.handle_datagram(
                now,
                Protocol::Udp,
                peer,
                &req("BYE", &format!("z9hG4bK-{i}-3"), &call, 3, &to, "", ""),
            );
            drain(&mut ua, &mut out, now);
        }
        while ua.poll_event().is_some() {}
        // A BYE for no dialog: 481.
        ua.handle_datagram(
            now,
            Protocol::Udp,
            peer,
            &req(
                "BYE",
                &format!("z9hG4bK-{i}-x"),
                &call,
                9,
                ";tag=nope",
                "",
                "",
            ),
        );
        drain(&mut ua, &mut out, now);
        now += Duration::from_secs(40);
        ua.handle_timeout(now);
        drain(&mut ua, &mut out, now);
        while ua.poll_event().is_some() {}
    }
    out.iter().map(|line| format!("{line}\n")).collect()
}

#[test]
fn the_uas_wire_is_as_recorded() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/uas_wire.txt");
    let wire = script();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &wire).unwrap();
    }
    let recorded = std::fs::read_to_string(path).unwrap();
    for (at, (got, want)) in wire.lines().zip(recorded.lines()).enumerate() {
        assert_eq!(got, want, "line {} of {path}", at + 1);
    }
    assert_eq!(wire.lines().count(), recorded.lines().count(), "{path}");
    assert_eq!(wire, recorded);
}
