//! The transaction endpoint fed real SIP bytes: matching, stateless answers, CANCEL, ACK for
//! failures, response routing, and draining to zero.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Protocol, Transmit};
use session_simnet::sip::ScriptedPeer;
use session_sip::{Message, Method, Request, Response};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PEER: &str = "127.0.0.1:5070";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn invite(branch: &str) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
         From: <sip:alice@127.0.0.1:5070>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1:5060>\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:5070>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn request(method: &str, branch: &str, to_tag: Option<&str>, cseq: &str) -> Bytes {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    Bytes::from(format!(
        "{method} sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: <sip:alice@127.0.0.1:5070>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1:5060>{to_tag}\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: {cseq}\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn response_of(t: &Transmit) -> Response {
    match Message::parse(t.bytes.clone()).unwrap() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method.as_str()),
    }
}

fn request_of(t: &Transmit) -> Request {
    match Message::parse(t.bytes.clone()).unwrap() {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

/// Runs every timer until the endpoint has nothing left, returning the virtual end time.
fn drain_timers(ep: &mut Endpoint, mut now: Instant) -> Instant {
    while let Some(at) = ep.poll_timeout() {
        now = now.max(at);
        ep.handle_timeout(now);
        transmits(ep);
        events(ep);
    }
    now
}

fn new_request_event(ep: &mut Endpoint) -> (session_dialog::transaction::TransactionId, Request) {
    let mut found = None;
    for event in events(ep) {
        if let EndpointEvent::Request { id, request, .. } = event {
            found = Some((id, request));
        }
    }
    found.expect("a Request event")
}

#[test]
fn invite_server_flow_with_retransmission_trying_and_ack() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.handle_datagram(t0, Protocol::Udp, peer(), &invite("z9hG4bK-inv1"));
    let (id, req) = new_request_event(&mut ep);
    assert_eq!(req.method, Method::Invite);
    // The TU is slow: 100 Trying after 200 ms, without a To tag.
    ep.handle_timeout(t0 + Duration::from_millis(200));
    let sent = transmits(&mut ep);
    assert_eq!(sent.len(), 1);
    let trying = response_of(&sent[0]);
    assert_eq!(trying.status, StatusCode::TRYING);
    assert_eq!(trying.to().unwrap().tag(), None);
    // RFC 3581: the response goes to the source and the Via says where it came from.
    assert_eq!(sent[0].destination, peer());
    let via = trying.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.1"));
    assert_eq!(via.rport(), Some(Some(5070)));
    // A retransmitted INVITE is absorbed and gets the last response again.
    ep.handle_datagram(
        t0 + Duration::from_millis(500),
        Protocol::Udp,
        peer(),
        &invite("z9hG4bK-inv1"),
    );
    assert!(events(&mut ep).is_empty());
    assert_eq!(
        response_of(&transmits(&mut ep)[0]).status,
        StatusCode::TRYING
    );
    // The TU answers 200; the ACK for it has a new branch and goes up as an Ack.
    let ok = Response::from_request_with_tag(&req, StatusCode::OK, Some("b1"));
    ep.respond(t0 + Duration::from_millis(600), id, ok).unwrap();
    assert_eq!(response_of(&transmits(&mut ep)[0]).status, StatusCode::OK);
    ep.handle_datagram(
        t0 + Duration::from_millis(610),
        Protocol::Udp,
        peer(),
        &request("ACK", "z9hG4bK-ack1", Some("b1"), "1 ACK"),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [EndpointEvent::Ack { .. }]
    ));
    drain_timers(&mut ep, t0);
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn malformed_and_unknown_requests_are_answered_statelessly() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    // No Call-ID: 400.
    let no_call_id = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &Bytes::from_static(no_call_id.as_bytes()),
    );
    let sent = transmits(&mut ep);
    assert_eq!(response_of(&sent[0]).status, StatusCode::BAD_REQUEST);
    // An unknown method: 501 with Allow.
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &request("FOOBAR", "z9hG4bK-f", None, "1 FOOBAR"),
    );
    let answer = response_of(&transmits(&mut ep)[0]);
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
    assert!(answer.headers.get(session_sip::HeaderName::Allow).is_some());
    // Garbage and a malformed response: dropped silently.
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &Bytes::from_static(b"\x00\x01garbage"),
    );
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(transmits(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn out_of_dialog_options_get_a_stateless_200_with_allow() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &request("OPTIONS", "z9hG4bK-o", None, "7 OPTIONS"),
    );
    let sent = transmits(&mut ep);
    let ok = response_of(&sent[0]);
    assert_eq!(ok.status, StatusCode::OK);
    assert!(
        ok.headers
            .get(session_sip::HeaderName::Allow)
            .unwrap()
            .value()
            .contains("INVITE")
    );
    assert!(ok.to().unwrap().tag().is_some());
    assert_eq!(
        sent[0].destination,
        peer(),
        "no rport: the source IP and the Via port"
    );
    assert_eq!(ep.transaction_count(), 0, "stateless");
    assert!(events(&mut ep).is_empty());
}

/// A balancer's probe: 200 while new INVITEs are taken, 503 with Retry-After while they are
/// shed, and the reported load (`X-Load`) in both; no header until a load is reported.
#[test]
fn options_answer_503_while_shedding_and_carry_the_reported_load() {
    use session_dialog::endpoint::{LOAD_HEADER, Load};
    use session_sip::HeaderName;
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    let probe = |ep: &mut Endpoint, branch: &str| {
        ep.handle_datagram(
            t0,
            Protocol::Udp,
            peer(),
            &request("OPTIONS", branch, None, "1 OPTIONS"),
        );
        let sent = transmits(ep);
        assert_eq!(sent.len(), 1);
        response_of(&sent[0])
    };
    let plain = probe(&mut ep, "z9hG4bK-h1");
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.headers.get_by_name(LOAD_HEADER).is_none());

    ep.set_load(Some(Load {
        active: 3,
        limit: Some(100),
    }));
    let healthy = probe(&mut ep, "z9hG4bK-h2");
    assert_eq!(healthy.status, StatusCode::OK);
    assert_eq!(healthy.headers.get_str(HeaderName::RetryAfter), None);
    assert_eq!(
        healthy.headers.get_by_name(LOAD_HEADER).map(|h| h.value()),
        Some("3/100")
    );

    ep.set_shedding(Some(Duration::from_secs(7)));
    ep.set_load(Some(Load {
        active: 100,
        limit: None,
    }));
    let full = probe(&mut ep, "z9hG4bK-h3");
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(full.headers.get_str(HeaderName::RetryAfter), Some("7"));
    assert_eq!(
        full.headers.get_by_name(LOAD_HEADER).map(|h| h.value()),
        Some("100")
    );
    assert_eq!(ep.transaction_count(), 0, "stateless either way");

    ep.set_shedding(None);
    assert_eq!(probe(&mut ep, "z9hG4bK-h4").status, StatusCode::OK);
}

#[test]
fn cancel_ends_a_pending_invite_with_487_and_no_invite_gets_481() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    let mut alice = ScriptedPeer::new("alice", peer(), "sip:bob@127.0.0.1:5060".parse().unwrap());
    let invite = alice.invite();
    ep.handle_datagram(t0, Protocol::Udp, peer(), &invite.to_bytes());
    let (id, req) = new_request_event(&mut ep);
    ep.respond(
        t0,
        id,
        Response::from_request_with_tag(&req, StatusCode::RINGING, Some("ring")),
    )
    .unwrap();
    let next = |ep: &mut Endpoint| ep.poll_transmit().map(|t| t.bytes);
    alice
        .expect_response(next(&mut ep), StatusCode::RINGING)
        .unwrap();
    ep.handle_datagram(
        t0 + Duration::from_millis(100),
        Protocol::Udp,
        peer(),
        &alice.cancel().to_bytes(),
    );
    let cancel_ok = alice
        .expect_response(next(&mut ep), StatusCode::OK)
        .unwrap();
    assert_eq!(cancel_ok.cseq().unwrap().method, Method::Cancel);
    let terminated = alice
        .expect_response(next(&mut ep), StatusCode::REQUEST_TERMINATED)
        .unwrap();
    assert_eq!(
        terminated.to().unwrap().tag(),
        Some("ring"),
        "the 487 keeps the To tag of the 180"
    );
    assert_eq!(terminated.cseq().unwrap().method, Method::Invite);
    assert!(
        events(&mut ep)
            .iter()
            .any(|e| matches!(e, EndpointEvent::Cancelled { id: c } if *c == id))
    );
    // The ACK for the 487 has the INVITE's branch and stays in the transaction.
    let ack = alice.ack_failure(&terminated);
    ep.handle_datagram(
        t0 + Duration::from_millis(150),
        Protocol::Udp,
        peer(),
        &ack.to_bytes(),
    );
    assert!(events(&mut ep).is_empty());
    assert!(next(&mut ep).is_none(), "absorbed");
    // A CANCEL for nothing: 481.
    alice.new_call();
    ep.handle_datagram(t0, Protocol::Udp, peer(), &alice.cancel().to_bytes());
    alice
        .expect_response(
            next(&mut ep),
            StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
        )
        .unwrap();
    drain_timers(&mut ep, t0);
    assert_eq!(ep.transaction_count(), 0);
}

fn outgoing_invite() -> Request {
    let Message::Request(req) = Message::parse(invite("z9hG4bK-out1")).unwrap() else {
        unreachable!()
    };
    req
}

fn answer_to(req: &Request, status: StatusCode) -> Bytes {
    let mut response = Response::from_request_with_tag(req, status, Some("far"));
    // Responses come back with one Via (ours).
    response.headers.remove_all(session_sip::HeaderName::Via);
    response.headers.push_front(session_sip::Header::new(
        session_sip::HeaderName::Via,
        req.headers
            .values(session_sip::HeaderName::Via)
            .next()
            .unwrap()
            .to_owned(),
    ));
    response.to_bytes()
}

#[test]
fn client_invite_failure_is_acked_by_the_transaction() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    let req = outgoing_invite();
    let id = ep
        .send_request(t0, req.clone(), peer(), Protocol::Udp)
        .unwrap();
    assert_eq!(request_of(&transmits(&mut ep)[0]).method, Method::Invite);
    ep.handle_datagram(
        t0 + Duration::from_millis(30),
        Protocol::Udp,
        peer(),
        &answer_to(&req, StatusCode::BUSY_HERE),
    );
    let ack = request_of(&transmits(&mut ep)[0]);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.top_via().unwrap().branch(),
        Some("z9hG4bK-out1"),
        "same branch as the INVITE (§17.1.1.3)"
    );
    assert_eq!(ack.to().unwrap().tag(), Some("far"));
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    assert!(
        matches!(events(&mut ep).as_slice(), [EndpointEvent::Response { id: r, response }] if *r == id && response.status == StatusCode::BUSY_HERE)
    );
    // The 486 again: ACK again, nothing up.
    ep.handle_datagram(
        t0 + Duration::from_millis(530),
        Protocol::Udp,
        peer(),
        &answer_to(&req, StatusCode::BUSY_HERE),
    );
    assert_eq!(request_of(&transmits(&mut ep)[0]).method, Method::Ack);
    assert!(events(&mut ep).is_empty());
    drain_timers(&mut ep, t0);
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn client_transactions_time_out_and_drain() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    let req = outgoing_invite();
    let id = ep
        .send_request(t0, req.clone(), peer(), Protocol::Udp)
        .unwrap();
    assert!(matches!(
        ep.send_request(t0, req, peer(), Protocol::Udp),
        Err(session_dialog::endpoint::EndpointError::DuplicateTransaction)
    ));
    let mut sent = 0;
    let mut timed_out = false;
    let mut now = t0;
    while let Some(at) = ep.poll_timeout() {
        now = at;
        ep.handle_timeout(now);
        sent += transmits(&mut ep).len();
        timed_out |= events(&mut ep)
            .iter()
            .any(|e| matches!(e, EndpointEvent::TimedOut { id: t } if *t == id));
    }
    assert!(timed_out);
    assert_eq!(sent, 1 + 6, "the INVITE plus six retransmissions");
    assert_eq!(now - t0, Duration::from_secs(32));
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn rfc_2543_requests_match_without_the_magic_cookie() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    // A branch without "z9hG4bK": matched on Request-URI, From tag, Call-ID, CSeq and top Via
    // (§17.2.3).
    ep.handle_datagram(t0, Protocol::Udp, peer(), &invite("old-1"));
    let (id, req) = new_request_event(&mut ep);
    ep.handle_datagram(
        t0 + Duration::from_millis(100),
        Protocol::Udp,
        peer(),
        &invite("old-1"),
    );
    assert!(events(&mut ep).is_empty(), "the retransmission is absorbed");
    ep.respond(
        t0,
        id,
        Response::from_request_with_tag(&req, StatusCode::RINGING, Some("r")),
    )
    .unwrap();
    transmits(&mut ep);
    let cancel = String::from_utf8(invite("old-1").to_vec())
        .unwrap()
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    ep.handle_datagram(t0, Protocol::Udp, peer(), &Bytes::from(cancel));
    let statuses: Vec<u16> = transmits(&mut ep)
        .iter()
        .map(|t| response_of(t).status.as_u16())
        .collect();
    assert_eq!(statuses, [200, 487], "the CANCEL found its INVITE");
    drain_timers(&mut ep, t0);
    assert_eq!(ep.transaction_count(), 0);
}

/// A request from 127.0.0.1:5070 whose Via names another host and port and asks for `rport`.
fn via_rport_request(cseq: &str, extra: &str) -> Bytes {
    Bytes::from(format!(
        "OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP client.example.com:5999;branch=z9hG4bK-rp;rport\r\n\
         From: <sip:alice@client.example.com>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1:5060>\r\n\
         Call-ID: rport-1@client.example.com\r\n\
         CSeq: {cseq}\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    ))
}

/// Checks a stateless rejection went where RFC 3581 says (the source, since the Via asks for
/// `rport`) and tells the client where its request came from; returns its text. (A 400 for a
/// CSeq that does not parse copies that CSeq, so the answer is read as text, not parsed.)
fn assert_rport_answer(sent: &[Transmit], status: StatusCode) -> String {
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].destination, peer(), "rport: back to the source");
    let text = String::from_utf8(sent[0].bytes.to_vec()).unwrap();
    assert!(
        text.starts_with(&format!("SIP/2.0 {} ", status.as_u16())),
        "{text}"
    );
    let via = text
        .lines()
        .find(|line| line.starts_with("Via:"))
        .expect("a Via");
    assert_eq!(
        via,
        "Via: SIP/2.0/UDP client.example.com:5999;branch=z9hG4bK-rp;received=127.0.0.1;rport=5070",
        "{text}"
    );
    text
}

#[test]
fn stateless_rejections_carry_received_and_rport() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    // Rejected by the parser: CSeq is not a number.
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &via_rport_request("abc OPTIONS", ""),
    );
    let bad = assert_rport_answer(&transmits(&mut ep), StatusCode::BAD_REQUEST);
    let reason = bad.lines().next().unwrap();
    assert!(
        reason.contains("not a number"),
        "the reason names the problem: {reason}"
    );
    assert!(!reason.contains("2^31"), "{reason}");
    // Rejected by validation after parsing: an unknown required extension.
    ep.handle_datagram(
        t0,
        Protocol::Udp,
        peer(),
        &via_rport_request("1 OPTIONS", "Require: nothing-known\r\n"),
    );
    assert_rport_answer(&transmits(&mut ep), StatusCode::BAD_EXTENSION);
    // The same, already framed and parsed (the TCP path).
    let Message::Request(parsed) =
        Message::parse(via_rport_request("2 OPTIONS", "Require: nothing-known\r\n")).unwrap()
    else {
        panic!("a request")
    };
    ep.handle_message(t0, Protocol::Udp, peer(), Message::Request(parsed));
    assert_rport_answer(&transmits(&mut ep), StatusCode::BAD_EXTENSION);
    assert_eq!(ep.transaction_count(), 0, "stateless");
}
