//! Per-session DiffServ marks through the user agent: an INVITE sent marked, an incoming
//! INVITE whose answers are marked, and the dialogs they make carrying the mark to every
//! later message in both directions (ACK, BYE, the answers to the peer's requests), while an
//! unmarked call's messages go with the socket's mark.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::Protocol;
use session_dialog::ua::{OutgoingInvite, UaEvent, UserAgent};
use session_sip::{Method, Uri};
use session_types::{DialogId, StatusCode};
use std::time::Instant;

#[path = "support/loopback_ua.rs"]
mod loopback_ua;
use loopback_ua::{addr, ua};

/// Delivers everything `from` (at `from_port`) queued to `to`; returns each message's first
/// line with its mark.
fn deliver(
    from: &mut UserAgent,
    from_port: u16,
    to: &mut UserAgent,
    now: Instant,
) -> Vec<(String, Option<u8>)> {
    let mut sent = Vec::new();
    while let Some(transmit) = from.poll_transmit() {
        let text = String::from_utf8_lossy(&transmit.bytes).into_owned();
        sent.push((text.lines().next().unwrap().to_owned(), transmit.dscp));
        to.handle_datagram(now, Protocol::Udp, addr(from_port), &transmit.bytes);
    }
    sent
}

fn marks_of(sent: &[(String, Option<u8>)], start: &str) -> Vec<Option<u8>> {
    let found: Vec<_> = sent
        .iter()
        .filter(|(line, _)| line.starts_with(start))
        .map(|(_, dscp)| *dscp)
        .collect();
    assert!(!found.is_empty(), "no {start:?} in {sent:?}");
    found
}

#[test]
fn marks_follow_the_call_both_ways() {
    let now = Instant::now();
    let (mut a, mut b) = (ua(5070), ua(5071));
    let from = Uri::parse("sip:alice@127.0.0.1:5070").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5071").unwrap();
    let (invite, _) = a
        .invite_with(
            now,
            OutgoingInvite {
                from: &from,
                from_display: None,
                to: &to,
                destination: addr(5071),
                protocol: Protocol::Udp,
                headers: Vec::new(),
                body: None,
                call_id: None,
                cseq: None,
                from_tag: None,
                account: None,
                dscp: Some(46),
            },
        )
        .unwrap();
    assert_eq!(
        marks_of(&deliver(&mut a, 5070, &mut b, now), "INVITE"),
        [Some(46)]
    );

    // The callee marks its answers (an urgent call by its Resource-Priority, say).
    let tx = match b.poll_event() {
        Some(UaEvent::IncomingInvite { tx, .. }) => tx,
        other => panic!("{other:?}"),
    };
    assert!(b.set_transaction_dscp(tx, Some(40)));
    b.answer(now, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let b_dialog: DialogId = b
        .answer(now, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    let sent = deliver(&mut b, 5071, &mut a, now);
    assert_eq!(marks_of(&sent, "SIP/2.0 180"), [Some(40)]);
    assert_eq!(marks_of(&sent, "SIP/2.0 200"), [Some(40)]);

    // The caller's ACK goes in its dialog, marked as its INVITE.
    let mut a_dialog = None;
    while let Some(event) = a.poll_event() {
        if let UaEvent::Response {
            tx: answered,
            dialog,
            response,
        } = event
            && answered == invite
            && response.status == StatusCode::OK
        {
            a_dialog = dialog;
        }
    }
    let a_dialog = a_dialog.expect("the 2xx made a dialog");
    assert_eq!(
        marks_of(&deliver(&mut a, 5070, &mut b, now), "ACK"),
        [Some(46)]
    );

    // A request in the dialog and its answer: each side's own mark; a changed mark applies
    // from the next message on.
    a.request_in_dialog(now, &a_dialog, Method::Info, Vec::new(), None)
        .unwrap();
    assert_eq!(
        marks_of(&deliver(&mut a, 5070, &mut b, now), "INFO"),
        [Some(46)]
    );
    let info = std::iter::from_fn(|| b.poll_event())
        .find_map(|event| match event {
            UaEvent::IncomingRequest { tx, .. } => Some(tx),
            _ => None,
        })
        .expect("the INFO");
    b.answer(now, info, StatusCode::OK, Vec::new(), None)
        .unwrap();
    assert_eq!(
        marks_of(&deliver(&mut b, 5071, &mut a, now), "SIP/2.0 200"),
        [Some(40)]
    );
    assert!(a.set_dialog_dscp(&a_dialog, None));

    // The callee hangs up: its BYE is marked, the caller's 200 is not any more.
    b.hangup(now, &b_dialog).unwrap();
    assert_eq!(
        marks_of(&deliver(&mut b, 5071, &mut a, now), "BYE"),
        [Some(40)]
    );
    assert_eq!(
        marks_of(&deliver(&mut a, 5070, &mut b, now), "SIP/2.0 200"),
        [None]
    );
}

#[test]
fn an_unmarked_call_goes_with_the_sockets_mark() {
    let now = Instant::now();
    let (mut a, mut b) = (ua(5072), ua(5073));
    let from = Uri::parse("sip:alice@127.0.0.1:5072").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5073").unwrap();
    a.invite(
        now,
        &from,
        &to,
        addr(5073),
        Protocol::Udp,
        Some(("application/sdp", Bytes::from_static(b"v=0\r\n"))),
    )
    .unwrap();
    assert_eq!(
        marks_of(&deliver(&mut a, 5072, &mut b, now), "INVITE"),
        [None]
    );
    let tx = match b.poll_event() {
        Some(UaEvent::IncomingInvite { tx, .. }) => tx,
        other => panic!("{other:?}"),
    };
    b.answer(now, tx, StatusCode::OK, Vec::new(), None).unwrap();
    assert_eq!(
        marks_of(&deliver(&mut b, 5073, &mut a, now), "SIP/2.0 200"),
        [None]
    );
    assert_eq!(marks_of(&deliver(&mut a, 5072, &mut b, now), "ACK"), [None]);
}
