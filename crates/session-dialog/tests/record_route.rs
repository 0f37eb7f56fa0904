//! Calls through record-routing proxies (RFC 3261 §12.1, §12.2.1.1, §16.12), message by
//! message: our user agent as callee and as caller, behind one proxy, two proxies, a proxy
//! whose Record-Route has parameters and two values in one line, and a strict-routing proxy.
//! The proxies are session-simnet's [`RecordRoutingProxy`], which refuses any in-dialog
//! request that does not route through it — so a UAS that drops Record-Route from its answers
//! fails here the way it fails behind Kamailio.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{DialogEnd, OutgoingInvite, UaConfig, UaEvent, UserAgent};
use session_simnet::proxy::{ProxyError, RecordRoutingProxy};
use session_simnet::sip::ScriptedPeer;
use session_sip::{Header, HeaderName, Message, Method, Request, Response, Uri};
use session_types::{DialogId, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Our user agent.
const UA: u16 = 5061;
/// The scripted far end.
const PEER: u16 = 5062;
/// The proxies, first (next to the peer) and second (next to us when there are two).
const P1: u16 = 5070;
const P2: u16 = 5071;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ua() -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: UA,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}

/// The scripted far end, whose INVITEs are for our user agent.
fn peer(user: &str) -> ScriptedPeer {
    ScriptedPeer::new(
        user,
        at(PEER),
        Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap(),
    )
}

/// What our user agent sends next: where to, and the message.
fn sent(ua: &mut UserAgent) -> (SocketAddr, Message) {
    let transmit = ua.poll_transmit().expect("the user agent sent nothing");
    let message = Message::parse(transmit.bytes).expect("the user agent sent garbage");
    (transmit.destination, message)
}

fn sent_request(ua: &mut UserAgent) -> (SocketAddr, Request) {
    match sent(ua) {
        (to, Message::Request(request)) => (to, request),
        (_, Message::Response(r)) => panic!("expected a request, got {}", r.status),
    }
}

fn sent_response(ua: &mut UserAgent) -> (SocketAddr, Response) {
    match sent(ua) {
        (to, Message::Response(response)) => (to, response),
        (_, Message::Request(r)) => panic!("expected a response, got {}", r.method.as_str()),
    }
}

fn record_routes(headers: &session_sip::Headers) -> Vec<&str> {
    headers
        .get_all(HeaderName::RecordRoute)
        .map(Header::value)
        .collect()
}

fn routes(request: &Request) -> Vec<&str> {
    request.headers.values(HeaderName::Route).collect()
}

/// The proxies between the peer and our user agent, the peer's nearest first; messages are
/// passed along hop by hop, and each hop must be where the previous one sent the message.
struct Path {
    proxies: Vec<RecordRoutingProxy>,
}

impl Path {
    /// Proxies `(name, port)` from the peer's side to ours, for a call from the peer: each
    /// sends the INVITE to the next one.
    fn toward_ua(proxies: &[(&str, u16)]) -> Self {
        Self::chain(proxies, |i| proxies.get(i + 1).map_or(UA, |p| p.1))
    }

    /// The same for a call from our user agent: each sends the INVITE to the one before it.
    fn toward_peer(proxies: &[(&str, u16)]) -> Self {
        Self::chain(proxies, |i| i.checked_sub(1).map_or(PEER, |j| proxies[j].1))
    }

    fn chain(proxies: &[(&str, u16)], next: impl Fn(usize) -> u16) -> Self {
        let proxies = proxies
            .iter()
            .enumerate()
            .map(|(i, (name, port))| {
                RecordRoutingProxy::loose(name, at(*port)).sending_initial_requests_to(at(next(i)))
            })
            .collect();
        Self { proxies }
    }

    /// One proxy as given.
    fn single(proxy: RecordRoutingProxy) -> Self {
        Self {
            proxies: vec![proxy],
        }
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.proxies
            .iter()
            .map(RecordRoutingProxy::address)
            .collect()
    }

    /// A request from the peer forwarded to our user agent; returns the last proxy's address
    /// (or the peer's, without proxies) and the bytes that arrive.
    fn request_to_ua(&mut self, request: Request) -> Result<(SocketAddr, Bytes), ProxyError> {
        let mut request = request;
        let mut from = at(PEER);
        let mut hops = self.addresses();
        hops.push(at(UA));
        for (i, proxy) in self.proxies.iter_mut().enumerate() {
            let forwarded = proxy.forward_request(&request)?;
            assert_eq!(forwarded.next_hop, hops[i + 1], "{request:?}");
            from = proxy.address();
            request = forwarded.request;
        }
        Ok((from, request.to_bytes()))
    }

    /// A request our user agent sent to `to`, forwarded to the peer.
    fn request_to_peer(
        &mut self,
        (to, request): (SocketAddr, Request),
    ) -> Result<Bytes, ProxyError> {
        let mut request = request;
        let mut expected = to;
        for proxy in self.proxies.iter_mut().rev() {
            assert_eq!(
                expected,
                proxy.address(),
                "sent to the next proxy of the route"
            );
            let forwarded = proxy.forward_request(&request)?;
            expected = forwarded.next_hop;
            request = forwarded.request;
        }
        assert_eq!(expected, at(PEER), "the last hop is the peer's Contact");
        Ok(request.to_bytes())
    }

    /// A response our user agent sent to `to`, passed back to the peer.
    fn response_to_peer(&self, (to, response): (SocketAddr, Response)) -> Bytes {
        let mut response = response;
        let mut expected = to;
        for proxy in self.proxies.iter().rev() {
            assert_eq!(
                expected,
                proxy.address(),
                "the response goes to the proxy's Via"
            );
            let back = proxy.forward_response(&response).unwrap();
            expected = back.next_hop;
            response = back.response;
        }
        assert_eq!(expected, at(PEER));
        response.to_bytes()
    }

    /// A response of the peer's passed back to our user agent; returns the address it comes
    /// from and its bytes.
    fn response_to_ua(&self, response: &Response) -> (SocketAddr, Bytes) {
        let mut response = response.clone();
        let mut from = at(PEER);
        let mut hops = self.addresses();
        hops.push(at(UA));
        for (i, proxy) in self.proxies.iter().enumerate() {
            let back = proxy.forward_response(&response).unwrap();
            assert_eq!(back.next_hop, hops[i + 1]);
            from = proxy.address();
            response = back.response;
        }
        (from, response.to_bytes())
    }
}

/// The peer calls our user agent through `path`; we ring and answer. Checks that the 180 and
/// the 200 carry the INVITE's Record-Route lines exactly, and returns our dialog once the
/// peer's ACK — refused by any proxy it does not route through — arrived.
fn answered_call(
    t: Instant,
    ua: &mut UserAgent,
    alice: &mut ScriptedPeer,
    path: &mut Path,
) -> DialogId {
    let (from, bytes) = path.request_to_ua(alice.invite()).unwrap();
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    let Some(UaEvent::IncomingInvite { tx, request, .. }) = ua.poll_event() else {
        panic!("no INVITE")
    };
    let recorded: Vec<String> = record_routes(&request.headers)
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        recorded.len(),
        path.proxies.len(),
        "one Record-Route line per proxy"
    );
    ua.answer(t, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let dialog = ua
        .answer(t, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    for status in [StatusCode::RINGING, StatusCode::OK] {
        let (to, response) = sent_response(ua);
        assert_eq!(
            record_routes(&response.headers),
            recorded,
            "§12.1.1: the {status} copies every Record-Route of the INVITE, in order"
        );
        let bytes = path.response_to_peer((to, response));
        alice.expect_response(Some(bytes), status).unwrap();
    }
    let (from, bytes) = path
        .request_to_ua(alice.ack())
        .expect("the caller's ACK follows the route set");
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    assert!(
        matches!(ua.poll_event(), Some(UaEvent::Ack { dialog: d, .. }) if d == dialog),
        "the ACK arrived through the proxies"
    );
    dialog
}

/// Our user agent hangs up: its BYE must reach the peer through every proxy.
fn ua_hangs_up(
    t: Instant,
    ua: &mut UserAgent,
    peer: &mut ScriptedPeer,
    path: &mut Path,
    dialog: &DialogId,
) -> Request {
    ua.hangup(t, dialog).unwrap();
    let (to, bye) = sent_request(ua);
    let bytes = path
        .request_to_peer((to, bye.clone()))
        .expect("our BYE follows the route set");
    let seen = peer.expect_request(Some(bytes), Method::Bye).unwrap();
    let ok = peer.respond(&seen, StatusCode::OK);
    let (from, bytes) = path.response_to_ua(&ok);
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    bye
}

/// The peer hangs up: its BYE reaches us through every proxy and our 200 goes back.
fn peer_hangs_up(t: Instant, ua: &mut UserAgent, peer: &mut ScriptedPeer, path: &mut Path) {
    let (from, bytes) = path
        .request_to_ua(peer.bye())
        .expect("the peer's BYE follows the route set");
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    let (to, ok) = sent_response(ua);
    assert_eq!(ok.status, StatusCode::OK);
    peer.expect_response(Some(path.response_to_peer((to, ok))), StatusCode::OK)
        .unwrap();
    assert!(matches!(
        ua.poll_event(),
        Some(UaEvent::DialogTerminated {
            reason: DialogEnd::PeerBye,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Our user agent as callee
// ---------------------------------------------------------------------------------------------

#[test]
fn uas_behind_one_proxy_keeps_the_proxy_in_the_path_both_ways() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    let mut path = Path::single(RecordRoutingProxy::loose("p1", at(P1)));
    let dialog = answered_call(t, &mut ua, &mut alice, &mut path);
    assert_eq!(alice.route_set(), [format!("<sip:127.0.0.1:{P1};lr>")]);
    let bye = ua_hangs_up(t, &mut ua, &mut alice, &mut path, &dialog);
    assert_eq!(
        bye.uri.as_str(),
        format!("sip:alice@127.0.0.1:{PEER}"),
        "loose routing keeps the remote target as Request-URI (§12.2.1.1)"
    );
    assert_eq!(routes(&bye), [format!("<sip:127.0.0.1:{P1};lr>")]);
}

#[test]
fn uas_behind_two_proxies_routes_through_both_in_order() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    let mut path = Path::toward_ua(&[("p1", P1), ("p2", P2)]);
    let dialog = answered_call(t, &mut ua, &mut alice, &mut path);
    // The caller's route set is the 2xx's Record-Route reversed: its own proxy first.
    assert_eq!(
        alice.route_set(),
        [
            format!("<sip:127.0.0.1:{P1};lr>"),
            format!("<sip:127.0.0.1:{P2};lr>")
        ]
    );
    // An in-dialog request from the caller, then our BYE: both ways through both proxies.
    let (from, bytes) = path.request_to_ua(alice.request(Method::Info)).unwrap();
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    let Some(UaEvent::IncomingRequest { tx, .. }) = ua.poll_event() else {
        panic!("no INFO")
    };
    ua.answer(t, tx, StatusCode::OK, Vec::new(), None).unwrap();
    let (to, ok) = sent_response(&mut ua);
    assert!(
        record_routes(&ok.headers).is_empty(),
        "a 200 to INFO establishes nothing: no Record-Route"
    );
    alice
        .expect_response(Some(path.response_to_peer((to, ok))), StatusCode::OK)
        .unwrap();
    let bye = ua_hangs_up(t, &mut ua, &mut alice, &mut path, &dialog);
    assert_eq!(
        routes(&bye),
        [
            format!("<sip:127.0.0.1:{P2};lr>"),
            format!("<sip:127.0.0.1:{P1};lr>")
        ],
        "the callee's route set is the INVITE's Record-Route in order"
    );
}

#[test]
fn uas_behind_two_proxies_answers_the_callers_bye() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    let mut path = Path::toward_ua(&[("p1", P1), ("p2", P2)]);
    answered_call(t, &mut ua, &mut alice, &mut path);
    peer_hangs_up(t, &mut ua, &mut alice, &mut path);
    ua.handle_timeout(t + Duration::from_secs(64));
    assert_eq!(ua.state_count(), 0);
}

#[test]
fn record_route_parameters_and_two_values_in_one_line_come_back_as_written() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    // A proxy recording two of its interfaces in one line (Kamailio's double Record-Route),
    // with the parameters proxies put there.
    let line = format!(
        "<sip:127.0.0.1:{P1};r2=on;lr;ftag=alice-tag-1;did=4a1.0b2>,          <sip:127.0.0.1:{P1};transport=tcp;r2=on;lr=on;ftag=alice-tag-1>"
    );
    let mut path = Path::single(RecordRoutingProxy::with_record_route("p1", at(P1), &line));
    let dialog = answered_call(t, &mut ua, &mut alice, &mut path);
    let bye = ua_hangs_up(t, &mut ua, &mut alice, &mut path, &dialog);
    assert_eq!(
        routes(&bye),
        [
            format!("<sip:127.0.0.1:{P1};r2=on;lr;ftag=alice-tag-1;did=4a1.0b2>"),
            format!("<sip:127.0.0.1:{P1};transport=tcp;r2=on;lr=on;ftag=alice-tag-1>"),
        ],
        "each value a Route of its own, parameters untouched"
    );
}

#[test]
fn uas_behind_a_strict_router_puts_it_in_the_request_uri() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    let mut path = Path::single(RecordRoutingProxy::strict("p1", at(P1)));
    let dialog = answered_call(t, &mut ua, &mut alice, &mut path);
    let bye = ua_hangs_up(t, &mut ua, &mut alice, &mut path, &dialog);
    // §12.2.1.1: no `lr` on the first route: it becomes the Request-URI, and the remote
    // target goes last in the Route list (§16.12.1.2 shows the same exchange).
    assert_eq!(bye.uri.as_str(), format!("sip:127.0.0.1:{P1}"));
    assert_eq!(routes(&bye), [format!("<sip:alice@127.0.0.1:{PEER}>")]);
}

#[test]
fn only_responses_that_establish_a_dialog_carry_record_route() {
    let t = Instant::now();
    let mut ua = ua();
    let mut alice = peer("alice");
    let mut path = Path::single(RecordRoutingProxy::loose("p1", at(P1)));
    // A rejected INVITE: 100 and 486 carry none (§12.1.1 is about 101–2xx).
    let (from, bytes) = path.request_to_ua(alice.invite()).unwrap();
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
        panic!("no INVITE")
    };
    ua.answer(t, tx, StatusCode::TRYING, Vec::new(), None)
        .unwrap();
    ua.answer(t, tx, StatusCode::BUSY_HERE, Vec::new(), None)
        .unwrap();
    for status in [StatusCode::TRYING, StatusCode::BUSY_HERE] {
        let (_, response) = sent_response(&mut ua);
        assert_eq!(response.status, status);
        assert!(record_routes(&response.headers).is_empty(), "{status}");
    }
    // An out-of-dialog REFER answered 202 does establish one (RFC 3515): its Record-Route is
    // copied.
    alice.new_call();
    let mut refer = alice.request(Method::Refer);
    refer.headers.push(Header::new(
        HeaderName::ReferTo,
        format!("<sip:carol@127.0.0.1:{P2}>"),
    ));
    let (from, bytes) = path.request_to_ua(refer).unwrap();
    ua.handle_datagram(t, Protocol::Udp, from, &bytes);
    let Some(UaEvent::IncomingRequest { tx, .. }) = ua.poll_event() else {
        panic!("no REFER")
    };
    ua.answer(t, tx, StatusCode::ACCEPTED, Vec::new(), None)
        .unwrap();
    let (_, ok) = sent_response(&mut ua);
    assert_eq!(
        record_routes(&ok.headers),
        [format!("<sip:127.0.0.1:{P1};lr>")]
    );
}

// ---------------------------------------------------------------------------------------------
// Our user agent as caller
// ---------------------------------------------------------------------------------------------

/// Our user agent calls the peer through `path`, sending the INVITE to the proxy nearest us
/// with that proxy pre-loaded as Route (an outbound proxy, §8.1.2); the peer rings and
/// answers. Returns our dialog and the ACK as it reached the peer.
fn call_out(
    t: Instant,
    ua: &mut UserAgent,
    bob: &mut ScriptedPeer,
    path: &mut Path,
) -> (DialogId, Request) {
    let outbound = path.proxies.last().unwrap().address();
    let from = Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap();
    let to = Uri::parse(&format!("sip:bob@127.0.0.1:{PEER}")).unwrap();
    let (tx, _) = ua
        .invite_with(
            t,
            OutgoingInvite {
                from: &from,
                from_display: None,
                to: &to,
                destination: outbound,
                protocol: Protocol::Udp,
                headers: vec![Header::new(
                    HeaderName::Route,
                    format!("<sip:{outbound};lr>"),
                )],
                body: None,
                call_id: None,
                cseq: None,
                from_tag: None,
                account: None,
                dscp: None,
            },
        )
        .unwrap();
    let invite = sent_request(ua);
    let seen = bob
        .expect_request(Some(path.request_to_peer(invite).unwrap()), Method::Invite)
        .unwrap();
    assert!(routes(&seen).is_empty(), "every proxy took its Route off");
    let mut dialog = None;
    for status in [StatusCode::RINGING, StatusCode::OK] {
        let (from, bytes) = path.response_to_ua(&bob.respond(&seen, status));
        ua.handle_datagram(t, Protocol::Udp, from, &bytes);
        while let Some(event) = ua.poll_event() {
            if let UaEvent::Response {
                tx: t2,
                dialog: d,
                response,
            } = event
                && t2 == tx
                && response.status.is_success()
            {
                dialog = d;
            }
        }
    }
    let ack = sent_request(ua);
    let seen_ack = bob
        .expect_request(
            Some(
                path.request_to_peer(ack)
                    .expect("our ACK follows the route set (§13.2.2.4)"),
            ),
            Method::Ack,
        )
        .unwrap();
    (dialog.expect("the 200 made a dialog"), seen_ack)
}

#[test]
fn uac_through_two_proxies_acks_and_hangs_up_along_the_route_set() {
    let t = Instant::now();
    let mut ua = ua();
    let mut bob = peer("bob");
    let mut path = Path::toward_peer(&[("p1", P1), ("p2", P2)]);
    let (dialog, _) = call_out(t, &mut ua, &mut bob, &mut path);
    // §12.1.2: our route set is the 2xx's Record-Route reversed — our own proxy first.
    assert_eq!(
        ua.dialog(&dialog).unwrap().route_set,
        [
            format!("<sip:127.0.0.1:{P2};lr>"),
            format!("<sip:127.0.0.1:{P1};lr>")
        ]
    );
    // The callee's route set is the INVITE's Record-Route in order: its own proxy first.
    assert_eq!(
        bob.route_set(),
        [
            format!("<sip:127.0.0.1:{P1};lr>"),
            format!("<sip:127.0.0.1:{P2};lr>")
        ]
    );
    let bye = ua_hangs_up(t, &mut ua, &mut bob, &mut path, &dialog);
    assert_eq!(bye.uri.as_str(), format!("sip:bob@127.0.0.1:{PEER}"));
}

#[test]
fn uac_through_a_proxy_answers_the_callees_bye() {
    let t = Instant::now();
    let mut ua = ua();
    let mut bob = peer("bob");
    let mut path = Path::single(RecordRoutingProxy::loose("p1", at(P1)));
    call_out(t, &mut ua, &mut bob, &mut path);
    peer_hangs_up(t, &mut ua, &mut bob, &mut path);
}

#[test]
fn uac_through_a_strict_router_acks_with_it_as_request_uri() {
    let t = Instant::now();
    let mut ua = ua();
    let mut bob = peer("bob");
    let mut path = Path::single(RecordRoutingProxy::strict("p1", at(P1)));
    let (dialog, _) = call_out(t, &mut ua, &mut bob, &mut path);
    let bye = ua_hangs_up(t, &mut ua, &mut bob, &mut path, &dialog);
    assert_eq!(bye.uri.as_str(), format!("sip:127.0.0.1:{P1}"));
    assert_eq!(routes(&bye), [format!("<sip:bob@127.0.0.1:{PEER}>")]);
}

#[test]
fn a_retransmitted_2xx_is_acked_along_the_route_set_not_to_the_outbound_proxy() {
    let t = Instant::now();
    let mut ua = ua();
    let mut bob = peer("bob");
    // The outbound proxy does not record-route: the route set is empty and the ACK goes
    // straight to the callee's Contact (§12.2.1.1) — every time the 2xx comes again too.
    let outbound = at(P1);
    let from = Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap();
    let to = Uri::parse(&format!("sip:bob@127.0.0.1:{PEER}")).unwrap();
    ua.invite(t, &from, &to, outbound, Protocol::Udp, None)
        .unwrap();
    let (to_proxy, invite) = sent_request(&mut ua);
    assert_eq!(to_proxy, outbound);
    let seen = bob
        .expect_request(Some(invite.to_bytes()), Method::Invite)
        .unwrap();
    let ok = bob.respond(&seen, StatusCode::OK);
    for _ in 0..2 {
        ua.handle_datagram(t, Protocol::Udp, outbound, &ok.to_bytes());
        let (to, ack) = sent_request(&mut ua);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(to, at(PEER), "the ACK goes to the 2xx's Contact");
    }
}
