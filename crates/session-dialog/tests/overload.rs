//! Overload: new INVITEs are refused with a stateless 503 + Retry-After while the user agent
//! sheds, calls admitted before go on untouched; and the driver's queue to the layer above
//! is bounded — a layer above that stops reading makes the driver shed new calls, never grow.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::driver::{DriverConfig, SipDriver};
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{DialogEnd, UaConfig, UaEvent, UserAgent};
use session_simnet::sip::ScriptedPeer;
use session_sip::{HeaderName, Message, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const UA: u16 = 5061;

fn ua() -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: UA,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: Some(7),
    })
}

fn caller(user: &str, port: u16) -> ScriptedPeer {
    ScriptedPeer::new(
        user,
        SocketAddr::from(([127, 0, 0, 1], port)),
        Uri::parse(&format!("sip:ua@127.0.0.1:{UA}")).unwrap(),
    )
}

fn next(ua: &mut UserAgent) -> Option<Bytes> {
    ua.poll_transmit().map(|t| t.bytes)
}

#[test]
fn a_new_invite_is_refused_503_with_retry_after_and_nothing_is_kept() {
    let t0 = Instant::now();
    let mut ua = ua();
    ua.set_shedding(Some(Duration::from_secs(7)));
    let mut alice = caller("alice", 5062);
    let invite = alice.invite();
    ua.handle_datagram(t0, Protocol::Udp, alice.address(), &invite.to_bytes());
    let refused = alice
        .expect_response(next(&mut ua), StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert_eq!(
        refused.headers.values(HeaderName::RetryAfter).next(),
        Some("7"),
        "RFC 3261 §21.5.4"
    );
    assert!(
        refused.to().unwrap().tag().is_some(),
        "a final response has a To tag"
    );
    assert!(ua.poll_event().is_none(), "the layer above hears nothing");
    assert_eq!(ua.state_count(), 0, "no transaction, no dialog");
    // Its retransmission is refused again, and its ACK matches nothing and is dropped.
    ua.handle_datagram(t0, Protocol::Udp, alice.address(), &invite.to_bytes());
    alice
        .expect_response(next(&mut ua), StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    let ack = alice.ack_failure(&refused);
    ua.handle_datagram(t0, Protocol::Udp, alice.address(), &ack.to_bytes());
    assert!(next(&mut ua).is_none());
    assert!(ua.poll_event().is_none());
    assert_eq!((ua.state_count(), ua.shed_invites()), (0, 2));
    // Shedding off: the next INVITE is a call again.
    ua.set_shedding(None);
    let mut bob = caller("bob", 5063);
    ua.handle_datagram(t0, Protocol::Udp, bob.address(), &bob.invite().to_bytes());
    assert!(matches!(
        ua.poll_event(),
        Some(UaEvent::IncomingInvite { .. })
    ));
}

#[test]
fn a_call_admitted_before_shedding_goes_on_to_its_end() {
    let t0 = Instant::now();
    let mut ua = ua();
    let mut alice = caller("alice", 5062);
    let source = alice.address();
    let invite = alice.invite();
    ua.handle_datagram(t0, Protocol::Udp, source, &invite.to_bytes());
    let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
        panic!("no INVITE")
    };
    ua.set_shedding(Some(Duration::from_secs(5)));
    // Its retransmission matches its transaction: not refused (at most the 100 again).
    while next(&mut ua).is_some() {}
    ua.handle_datagram(t0, Protocol::Udp, source, &invite.to_bytes());
    if let Some(bytes) = next(&mut ua) {
        alice
            .expect_response(Some(bytes), StatusCode::TRYING)
            .unwrap();
    }
    assert_eq!(ua.shed_invites(), 0);
    let dialog = ua
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    while let Some(bytes) = next(&mut ua) {
        if let Ok(Message::Response(r)) = Message::parse(bytes.clone())
            && r.status == StatusCode::OK
        {
            alice.expect_response(Some(bytes), StatusCode::OK).unwrap();
        }
    }
    ua.handle_datagram(t0, Protocol::Udp, source, &alice.ack().to_bytes());
    assert!(matches!(ua.poll_event(), Some(UaEvent::Ack { dialog: d, .. }) if d == dialog));
    // A re-INVITE and a BYE within the dialog are requests of an admitted call.
    let bye = alice.bye();
    ua.handle_datagram(t0, Protocol::Udp, source, &bye.to_bytes());
    alice
        .expect_response(next(&mut ua), StatusCode::OK)
        .unwrap();
    assert!(matches!(
        ua.poll_event(),
        Some(UaEvent::DialogTerminated {
            reason: DialogEnd::PeerBye,
            ..
        })
    ));
    assert_eq!(ua.shed_invites(), 0);
}

/// The layer above reads nothing: the driver's event queue fills to its bound, after which
/// new INVITEs get 503 from the driver itself, and nothing grows without limit.
#[tokio::test]
async fn a_layer_above_that_stops_reading_makes_the_driver_shed_new_calls() {
    let (handle, events) = SipDriver::start(DriverConfig {
        udp: true,
        tcp: false,
        event_queue: 8,
        overload_room: 4,
        overload_retry_after: Duration::from_secs(3),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let server = handle.local_addr();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&format!("sip:ua@{server}")).unwrap();
    let mut callers: Vec<ScriptedPeer> = (0..40)
        .map(|i| {
            ScriptedPeer::new(
                &format!("c{i}"),
                socket.local_addr().unwrap(),
                target.clone(),
            )
        })
        .collect();
    let (mut trying, mut refused) = (0, 0);
    let mut buf = vec![0u8; 65_535];
    for caller in &mut callers {
        socket
            .send_to(&caller.invite().to_bytes(), server)
            .await
            .unwrap();
        // Every INVITE is answered: 100 Trying (admitted) or 503 (shed).
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("every INVITE gets an answer")
            .unwrap();
        let Ok(Message::Response(response)) = Message::parse(Bytes::copy_from_slice(&buf[..len]))
        else {
            panic!("not a response")
        };
        match response.status {
            StatusCode::TRYING => trying += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    response.headers.values(HeaderName::RetryAfter).next(),
                    Some("3")
                );
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The queue holds 8; shedding starts when fewer than 4 places are free.
    assert_eq!(
        (trying, refused),
        (5, 35),
        "admitted until the room ran short"
    );
    let state = handle
        .with(|ua, _| (ua.transaction_count(), ua.shed_invites()))
        .await
        .unwrap();
    assert_eq!(state, (5, 35), "only the admitted calls hold transactions");
    drop(events);
}

/// A full queue loses nothing: the driver holds what did not fit and stops reading its
/// socket until the layer above catches up, then every INVITE arrives, in order.
#[tokio::test]
async fn a_full_queue_holds_events_and_loses_none() {
    let (handle, mut events) = SipDriver::start(DriverConfig {
        udp: true,
        tcp: false,
        event_queue: 2,
        overload_room: 0,
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let server = handle.local_addr();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&format!("sip:ua@{server}")).unwrap();
    let mut call_ids = Vec::new();
    for i in 0..6 {
        let mut caller = ScriptedPeer::new(
            &format!("c{i}"),
            socket.local_addr().unwrap(),
            target.clone(),
        );
        socket
            .send_to(&caller.invite().to_bytes(), server)
            .await
            .unwrap();
        call_ids.push(caller.call_id().to_owned());
    }
    let mut arrived = Vec::new();
    while arrived.len() < call_ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("every INVITE reaches the layer above")
            .unwrap();
        if let UaEvent::IncomingInvite { request, .. } = event {
            arrived.push(request.call_id().unwrap().to_owned());
        }
    }
    assert_eq!(arrived, call_ids);
}

/// The layer above stops refusing while the driver sits idle: the next INVITE is admitted.
/// (The shedding state used to be set only before the driver waited, so the first INVITE after
/// a quiet spell was judged by the old answer — a spurious 503 right after a slot came free.)
#[tokio::test]
async fn refusing_turned_off_while_idle_admits_the_next_invite() {
    let (handle, _events) = SipDriver::start(DriverConfig {
        udp: true,
        tcp: false,
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let server = handle.local_addr();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&format!("sip:ua@{server}")).unwrap();
    let mut buf = vec![0u8; 65_535];
    let mut first_answer = async |caller: &mut ScriptedPeer| {
        socket
            .send_to(&caller.invite().to_bytes(), server)
            .await
            .unwrap();
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        match Message::parse(Bytes::copy_from_slice(&buf[..len])).unwrap() {
            Message::Response(response) => response.status,
            Message::Request(_) => panic!("a request came back"),
        }
    };
    let me = socket.local_addr().unwrap();
    handle.refuse_new_calls(true);
    let mut a = ScriptedPeer::new("a", me, target.clone());
    assert_eq!(first_answer(&mut a).await, StatusCode::SERVICE_UNAVAILABLE);
    // The driver is idle now; the layer above has room again.
    handle.refuse_new_calls(false);
    let mut b = ScriptedPeer::new("b", me, target);
    assert_eq!(first_answer(&mut b).await, StatusCode::TRYING);
}

/// After a burst, the maps give back the room of their peak (hash maps keep it otherwise):
/// 2,000 calls answered and hung up, the timers run out, and the capacity falls back.
#[test]
fn the_maps_give_back_the_room_of_a_past_peak() {
    let t0 = Instant::now();
    let mut ua = ua();
    let source = SocketAddr::from(([127, 0, 0, 1], 5062));
    let mut callers: Vec<ScriptedPeer> =
        (0..2_000).map(|i| caller(&format!("c{i}"), 5062)).collect();
    let mut txs = Vec::new();
    for caller in &mut callers {
        ua.handle_datagram(t0, Protocol::Udp, source, &caller.invite().to_bytes());
        while let Some(event) = ua.poll_event() {
            if let UaEvent::IncomingInvite { tx, .. } = event {
                txs.push(tx);
            }
        }
    }
    for tx in txs {
        ua.answer(t0, tx, StatusCode::OK, Vec::new(), None).unwrap();
    }
    let mut answers = Vec::new();
    while let Some(bytes) = next(&mut ua) {
        answers.push(bytes);
    }
    for (caller, bytes) in callers.iter_mut().zip(answers.iter().filter(|b| {
        matches!(Message::parse((*b).clone()), Ok(Message::Response(r)) if r.status == StatusCode::OK)
    })) {
        caller.expect_response(Some(bytes.clone()), StatusCode::OK).unwrap();
        ua.handle_datagram(t0, Protocol::Udp, source, &caller.ack().to_bytes());
        ua.handle_datagram(t0, Protocol::Udp, source, &caller.bye().to_bytes());
    }
    while ua.poll_transmit().is_some() {}
    while ua.poll_event().is_some() {}
    let peak = ua.capacity();
    assert!(peak > 4_000, "the burst grew the maps: {peak}");
    // Every timer runs out (Timer J/L etc.), then the room check comes due.
    let mut now = t0;
    for _ in 0..12 {
        now += Duration::from_secs(10);
        ua.handle_timeout(now);
        if let Some(at) = ua.poll_timeout() {
            ua.handle_timeout(at.max(now));
        }
    }
    assert_eq!(ua.state_count(), 0, "every call is gone");
    let after = ua.capacity();
    assert!(
        after * 10 < peak,
        "the capacity fell back from {peak} to {after}"
    );
}
