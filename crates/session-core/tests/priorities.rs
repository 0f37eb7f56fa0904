//! Session priorities on real sockets: `Resource-Priority` (RFC 4412) read and written,
//! admission keeping slots for urgent calls, 417 for a required namespace we do not know, and
//! DSCP marking of SIP and RTP read back from the packets as they arrive (the IP header's TOS
//! byte, through `IP_RECVTOS`), not from our own settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::{
    CallDecision, CallOptions, CallState, DscpPolicy, FailureReason, Limits, Priority, StatusCode,
};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::Duration;
use support::{builder, peer, within};

fn accept(_: &session_core::IncomingCall) -> CallDecision {
    CallDecision::accept()
}

const URGENT: Priority = match Priority::new(3) {
    Some(p) => p,
    None => panic!("level 3 exists"),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_calls_are_admitted_into_reserved_slots_and_carry_their_priority() {
    let alice = peer(builder(38_000..=38_099), accept).await;
    let mut pbx = peer(
        builder(38_100..=38_199).limits(Limits::default().max_sessions(2).reserve_for(URGENT, 1)),
        accept,
    )
    .await;

    // One routine call fits; the second finds only the reserved slot and gets 503.
    let routine = alice.manager.call(&pbx.uri("desk")).await.unwrap();
    within(routine.answered()).await.unwrap();
    let at_pbx = pbx.incoming().await;
    assert_eq!(at_pbx.priority(), Priority::ROUTINE);
    let refused = alice.manager.call(&pbx.uri("desk")).await.unwrap();
    assert_eq!(
        within(refused.ended()).await,
        CallState::Failed(FailureReason::Rejected(StatusCode::SERVICE_UNAVAILABLE))
    );

    // An emergency call takes it: Resource-Priority: esnet.4 on the wire, read back as 4.
    let emergency = alice
        .manager
        .call_with(
            &pbx.uri("911"),
            CallOptions::default().priority(Priority::HIGHEST),
        )
        .await
        .unwrap();
    within(emergency.answered()).await.unwrap();
    assert_eq!(emergency.priority(), Priority::HIGHEST);
    let (at_pbx_urgent, invite) = pbx
        .expect(|seen| match seen {
            support::Seen::Incoming(call, request) => Some((call, request)),
            _ => None,
        })
        .await;
    assert_eq!(
        invite
            .headers
            .get_by_name("Resource-Priority")
            .map(|h| h.value()),
        Some("esnet.4")
    );
    assert_eq!(at_pbx_urgent.priority(), Priority::HIGHEST);
    assert_eq!(pbx.manager.admission().active(), 2);

    for call in [&routine, &emergency] {
        call.hangup().await.unwrap();
    }
    support::assert_released(&alice).await;
    support::assert_released(&pbx).await;
    alice.manager.shutdown().await;
    pbx.manager.shutdown().await;
}

/// A UDP socket that reports the TOS byte of what it receives.
fn tos_socket() -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_tos_v4(true).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket
}

/// The first `n` bytes of `slice`, which the kernel has written.
#[allow(unsafe_code)]
fn written(slice: &[MaybeUninit<u8>], n: usize) -> Vec<u8> {
    // SAFETY: every byte was initialised to 0 before `recvmsg`, which wrote the first `n`
    // (reading a `MaybeUninit` that holds a value is sound).
    slice[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect()
}

/// The next datagram and its TOS byte (from the `IP_TOS` control message).
fn receive(socket: &socket2::Socket) -> (Vec<u8>, u8) {
    let mut data = [MaybeUninit::new(0u8); 4096];
    let mut control = [MaybeUninit::new(0u8); 64];
    let mut buffers = [socket2::MaybeUninitSlice::new(&mut data)];
    let mut message = socket2::MsgHdrMut::new()
        .with_buffers(&mut buffers)
        .with_control(&mut control);
    let length = socket.recvmsg(&mut message, 0).expect("a datagram in time");
    let control_length = message.control_len();
    let payload = written(&data, length);
    let control = written(&control, control_length);
    // struct cmsghdr { size_t len; int level; int type; } then the data (Linux, 64-bit).
    let mut at = 0;
    while at + 16 <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + 8].try_into().unwrap());
        let level = i32::from_ne_bytes(control[at + 8..at + 12].try_into().unwrap());
        let kind = i32::from_ne_bytes(control[at + 12..at + 16].try_into().unwrap());
        // IPPROTO_IP = 0, IP_TOS = 1.
        if level == 0 && kind == 1 && len > 16 {
            return (payload, control[at + 16]);
        }
        at += len.max(16).next_multiple_of(8);
    }
    panic!("no IP_TOS control message")
}

/// The value of header `name` in a SIP message's text.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn sip_and_rtp_packets_are_marked_by_priority_and_417_names_what_we_accept() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut pbx = runtime.block_on(async {
        peer(
            builder(38_200..=38_299).dscp(
                DscpPolicy::default()
                    .sip(24)
                    .sip_at_or_above(URGENT, 40)
                    .rtp(34)
                    .rtp_at_or_above(URGENT, 46),
            ),
            accept,
        )
        .await
    });
    let pbx_at = pbx.manager.local_addr();
    let sip = tos_socket();
    let rtp = tos_socket();
    let sip_at = sip.local_addr().unwrap().as_socket().unwrap();
    let rtp_port = rtp.local_addr().unwrap().as_socket().unwrap().port();
    let invite = |call_id: &str, extra: &str| {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        format!(
            "INVITE sip:desk@{pbx_at} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {sip_at};branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:phone@{sip_at}>;tag=t-{call_id}\r\n\
             To: <sip:desk@{pbx_at}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:phone@{sip_at}>\r\n{extra}Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let send = |text: &str| {
        sip.send_to(text.as_bytes(), &pbx_at.into()).unwrap();
    };
    // Reads SIP until a final response (or, with `bye`, a BYE, which it answers); checks
    // every packet's marking on the way: CS3 for a routine call, CS5 (40) for an urgent one.
    let read_until = |dscp: u8, bye: bool| loop {
        let (payload, tos) = receive(&sip);
        let text = String::from_utf8(payload).unwrap();
        let first_line = text.lines().next().unwrap_or_default().to_owned();
        assert_eq!(tos >> 2, dscp, "SIP marked {dscp}: {first_line}");
        if text.starts_with("BYE ") {
            let copied: String = ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .map(|name| format!("{name}: {}\r\n", header(&text, name).unwrap()))
                .collect();
            send(&format!(
                "SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n"
            ));
            if bye {
                return text;
            }
            continue;
        }
        if !text.starts_with("SIP/2.0") {
            continue;
        }
        let code: u16 = text
            .get(8..11)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text}"));
        if code >= 200 && !bye {
            return text;
        }
    };
    let final_response = |dscp: u8| read_until(dscp, false);

    // 1. Required, and only a namespace we do not know: 417 with what we accept.
    send(&invite(
        "c-417",
        "Resource-Priority: dsn.flash\r\nRequire: resource-priority\r\n",
    ));
    let response = final_response(24);
    assert!(response.starts_with("SIP/2.0 417"), "{response}");
    let accepted = header(&response, "Accept-Resource-Priority").expect("the values we take");
    assert!(
        accepted.contains("esnet.4") && accepted.contains("wps.0"),
        "{accepted}"
    );
    assert!(
        header(&response, "Unsupported").is_none(),
        "resource-priority is supported"
    );

    // 2. A routine call's RTP is AF41 and its SIP CS3, an urgent one's (wps.1 is level 3)
    // EF and CS5; the routine call escalated mid-call is re-marked both.
    for (call_id, extra, dscp) in [
        ("c-routine", "", 34),
        ("c-urgent", "Resource-Priority: wps.1, dsn.flash\r\n", 46),
    ] {
        send(&invite(call_id, extra));
        let answer = final_response(if dscp == 46 { 40 } else { 24 });
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        let to = header(&answer, "To").unwrap();
        send(&format!(
            "ACK sip:desk@{pbx_at} SIP/2.0\r\nVia: SIP/2.0/UDP {sip_at};branch=z9hG4bK-ack-{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:phone@{sip_at}>;tag=t-{call_id}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ));
        // Our idle audio (silence) starts at once; skip whatever the other call still sent.
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(receive(&rtp).1 >> 2);
        }
        assert_eq!(seen.last(), Some(&dscp), "{call_id}: RTP marks {seen:?}");
        let at_pbx = runtime.block_on(pbx.incoming());
        assert_eq!(at_pbx.call_id().as_str(), call_id);
        let expected = if dscp == 46 {
            URGENT
        } else {
            Priority::ROUTINE
        };
        assert_eq!(at_pbx.priority(), expected);
        if expected == Priority::ROUTINE {
            // Escalated by the engine: EF from the next packets on.
            at_pbx.set_priority(Priority::HIGHEST).unwrap();
            assert_eq!(at_pbx.rtp_dscp(), Some(46), "read back from the socket");
            let remarked = (0..10).any(|_| receive(&rtp).1 >> 2 == 46);
            assert!(remarked, "RTP re-marked EF after set_priority");
        }
        runtime.block_on(async { at_pbx.hangup().await.unwrap() });
        // Escalated or urgent from the start: the BYE is CS5.
        let bye = read_until(40, true);
        assert_eq!(header(&bye, "Call-ID"), Some(call_id));
    }
    runtime.block_on(pbx.manager.shutdown());
}
