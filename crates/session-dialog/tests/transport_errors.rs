//! Transport errors fed to the sans-IO user agent (RFC 3261 §17.1.4, §17.2.4, §8.1.3.1):
//! client transactions towards the failed peer end at once with `TransportError`, server
//! transactions just end, a dialog whose 2xx waits for its ACK ends, and nothing towards other
//! peers is touched.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_dialog::endpoint::{EndpointError, Protocol};
use session_dialog::ua::{DialogEnd, UaEvent, UserAgent};
use session_sip::{Message, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[path = "support/loopback_ua.rs"]
mod loopback_ua;
use loopback_ua::{addr, ua};

fn uri(text: &str) -> Uri {
    Uri::parse(text).unwrap()
}

fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

fn drop_transmits(ua: &mut UserAgent) {
    while ua.poll_transmit().is_some() {}
}

#[test]
fn invites_to_the_failed_peer_end_at_once_and_others_go_on() {
    let t0 = Instant::now();
    let mut caller = ua(5060);
    let (dead, alive) = (addr(5070), addr(5080));
    let from = uri("sip:alice@127.0.0.1:5060");
    let doomed = caller
        .invite(
            t0,
            &from,
            &uri("sip:bob@127.0.0.1:5070"),
            dead,
            Protocol::Tcp,
            None,
        )
        .unwrap();
    let fine = caller
        .invite(
            t0,
            &from,
            &uri("sip:carol@127.0.0.1:5080"),
            alive,
            Protocol::Tcp,
            None,
        )
        .unwrap();
    // Same address, other transport: a different connection, not affected either.
    let other_transport = caller
        .invite(
            t0,
            &from,
            &uri("sip:bob@127.0.0.1:5070"),
            dead,
            Protocol::Udp,
            None,
        )
        .unwrap();
    drop_transmits(&mut caller);
    let before = caller.transaction_count();
    caller.handle_transport_error(t0 + Duration::from_millis(3), dead, Protocol::Tcp);
    let seen = events(&mut caller);
    assert!(
        matches!(seen.as_slice(), [UaEvent::TransportError { tx }] if *tx == doomed),
        "{seen:?}"
    );
    assert_eq!(caller.transaction_count(), before - 1);
    assert!(caller.poll_transmit().is_none(), "nothing is sent for it");
    // The failed INVITE cannot be cancelled any more; the others can.
    assert!(matches!(
        caller.cancel(t0, doomed),
        Err(EndpointError::NoSuchTransaction)
    ));
    assert!(caller.cancel(t0, fine).is_ok());
    assert!(caller.cancel(t0, other_transport).is_ok());
}

#[test]
fn a_transport_error_after_the_final_response_reports_nothing_more() {
    let t0 = Instant::now();
    let mut caller = ua(5060);
    let mut callee = ua(5061);
    let tx = caller
        .invite(
            t0,
            &uri("sip:alice@127.0.0.1:5060"),
            &uri("sip:bob@127.0.0.1:5061"),
            addr(5061),
            Protocol::Udp,
            None,
        )
        .unwrap();
    let invite = caller.poll_transmit().unwrap();
    callee.handle_datagram(t0, Protocol::Udp, addr(5060), &invite.bytes);
    let Some(UaEvent::IncomingInvite { tx: incoming, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    callee
        .answer(t0, incoming, StatusCode::BUSY_HERE, Vec::new(), None)
        .unwrap();
    let busy = callee.poll_transmit().unwrap();
    caller.handle_datagram(t0, Protocol::Udp, addr(5061), &busy.bytes);
    assert!(matches!(
        caller.poll_event(),
        Some(UaEvent::Response { tx: t, .. }) if t == tx
    ));
    // The ACK for the 486 failed to go out: the transaction (waiting in Timer D) just ends.
    caller.handle_transport_error(t0, addr(5061), Protocol::Udp);
    assert!(caller.poll_event().is_none());
    assert_eq!(caller.state_count(), 0, "no 32 s of Timer D left");
}

#[test]
fn a_server_transaction_whose_response_cannot_be_sent_just_ends() {
    let t0 = Instant::now();
    let mut caller = ua(5060);
    let mut callee = ua(5061);
    caller
        .invite(
            t0,
            &uri("sip:alice@127.0.0.1:5060"),
            &uri("sip:bob@127.0.0.1:5061"),
            addr(5061),
            Protocol::Udp,
            None,
        )
        .unwrap();
    let invite = caller.poll_transmit().unwrap();
    callee.handle_datagram(t0, Protocol::Udp, addr(5060), &invite.bytes);
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    callee
        .answer(t0, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    drop_transmits(&mut callee);
    callee.handle_transport_error(t0, addr(5060), Protocol::Udp);
    assert!(
        callee.poll_event().is_none(),
        "no event for a server transaction"
    );
    assert_eq!(callee.state_count(), 0);
    assert!(matches!(
        callee.answer(t0, tx, StatusCode::OK, Vec::new(), None),
        Err(EndpointError::NoSuchTransaction)
    ));
}

#[test]
fn a_2xx_waiting_for_its_ack_from_a_dead_tcp_peer_ends_the_dialog() {
    let t0 = Instant::now();
    let mut caller = ua(5060);
    let mut callee = ua(5061);
    caller
        .invite(
            t0,
            &uri("sip:alice@127.0.0.1:5060"),
            &uri("sip:bob@127.0.0.1:5061"),
            addr(5061),
            Protocol::Tcp,
            None,
        )
        .unwrap();
    let invite = caller.poll_transmit().unwrap();
    // Over TCP the request comes from the connection's (ephemeral) port.
    let connection = addr(40_000);
    let message = Message::parse(invite.bytes).unwrap();
    callee.handle_message(t0, Protocol::Tcp, connection, message);
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    let dialog = callee
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    let ok = callee.poll_transmit().unwrap();
    assert_eq!(
        (ok.protocol, ok.destination),
        (Protocol::Tcp, connection),
        "the 2xx goes back on the connection"
    );
    assert_eq!(callee.dialog_count(), 1);
    // The connection is gone and cannot be made again: the ACK will never come.
    callee.handle_transport_error(t0 + Duration::from_millis(1), connection, Protocol::Tcp);
    let seen = events(&mut callee);
    assert!(
        matches!(
            seen.as_slice(),
            [UaEvent::DialogTerminated { dialog: d, reason: DialogEnd::TransportError }] if *d == dialog
        ),
        "{seen:?}"
    );
    assert!(callee.poll_transmit().is_none(), "no BYE to a dead peer");
    assert_eq!(callee.state_count(), 0, "no 32 s wait for the ACK");
}

#[test]
fn an_in_dialog_request_to_a_dead_peer_reports_a_transport_error() {
    let t0 = Instant::now();
    let mut caller = ua(5060);
    let mut callee = ua(5061);
    let deliver = |from: &mut UserAgent, to: &mut UserAgent, source: SocketAddr| {
        while let Some(t) = from.poll_transmit() {
            to.handle_datagram(t0, Protocol::Udp, source, &t.bytes);
        }
    };
    caller
        .invite(
            t0,
            &uri("sip:alice@127.0.0.1:5060"),
            &uri("sip:bob@127.0.0.1:5061"),
            addr(5061),
            Protocol::Udp,
            None,
        )
        .unwrap();
    deliver(&mut caller, &mut callee, addr(5060));
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    let dialog = callee
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    deliver(&mut callee, &mut caller, addr(5061));
    deliver(&mut caller, &mut callee, addr(5060));
    events(&mut caller);
    events(&mut callee);
    // The callee sends INFO; the caller's host is unreachable.
    let info = callee
        .request_in_dialog(t0, &dialog, session_sip::Method::Info, Vec::new(), None)
        .unwrap();
    drop_transmits(&mut callee);
    callee.handle_transport_error(t0, addr(5060), Protocol::Udp);
    let seen = events(&mut callee);
    assert!(
        matches!(seen.as_slice(), [UaEvent::TransportError { tx }] if *tx == info),
        "{seen:?}"
    );
    assert_eq!(
        callee.dialog_count(),
        1,
        "the TU decides what to do with it"
    );
}
