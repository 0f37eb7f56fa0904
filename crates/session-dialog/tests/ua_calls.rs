//! Two user agents exchanging real SIP bytes over the simulated network: whole calls
//! (INVITE, 180, 200, ACK, BYE) with loss, reordering and duplication, over many seeds. Every
//! call completes or fails by the RFC's timers, and both sides drain to zero state.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{DialogEnd, UaConfig, UaEvent, UserAgent};
use session_simnet::sip::ScriptedPeer;
use session_simnet::{Endpoint, Impairments, NodeId, Simulation, Transmit};
use session_sip::Uri;
use session_types::{DialogId, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(node: NodeId) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5060 + u16::try_from(node.0).unwrap()))
}

fn node(addr: SocketAddr) -> NodeId {
    NodeId(usize::from(addr.port() - 5060))
}

fn ua(node_id: usize) -> UserAgent {
    let port = 5060 + u16::try_from(node_id).unwrap();
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}

/// What each side saw.
#[derive(Default, Debug)]
struct Log {
    answered: bool,
    acked: bool,
    ended: Option<DialogEnd>,
    failed: Option<String>,
    provisional: u32,
}

/// Drives one [`UserAgent`] inside the simulation. Node 0 calls node 1; node 1 rings, then
/// answers; node 0 hangs up one second after the answer.
struct Peer {
    ua: UserAgent,
    me: NodeId,
    started: bool,
    call: Option<TransactionId>,
    dialog: Option<DialogId>,
    hangup_at: Option<Instant>,
    log: Log,
}

impl Peer {
    fn new(me: usize) -> Self {
        Self {
            ua: ua(me),
            me: NodeId(me),
            started: false,
            call: None,
            dialog: None,
            hangup_at: None,
            log: Log::default(),
        }
    }

    fn react(&mut self, now: Instant) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::IncomingInvite { tx, .. } => {
                    self.ua
                        .answer(now, tx, StatusCode::RINGING, Vec::new(), None)
                        .unwrap();
                    let dialog = self
                        .ua
                        .answer(
                            now,
                            tx,
                            StatusCode::OK,
                            Vec::new(),
                            Some(("application/sdp", Bytes::from_static(b"v=0\r\n"))),
                        )
                        .unwrap();
                    self.dialog = dialog;
                    self.log.answered = true;
                }
                UaEvent::Ack { .. } => self.log.acked = true,
                UaEvent::Response {
                    response,
                    dialog,
                    tx,
                } if Some(tx) == self.call => {
                    if response.status.is_provisional() {
                        self.log.provisional += 1;
                    } else if response.status.is_success() {
                        self.log.answered = true;
                        self.dialog = dialog;
                        self.hangup_at = Some(now + Duration::from_secs(1));
                    } else {
                        self.log.failed = Some(response.status.to_string());
                    }
                }
                UaEvent::TransactionTimeout { tx } if Some(tx) == self.call => {
                    self.log.failed = Some("timeout".into())
                }
                UaEvent::DialogTerminated { reason, .. } => self.log.ended = Some(reason),
                _ => {}
            }
        }
    }
}

impl Endpoint<Bytes> for Peer {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, payload: Bytes) {
        self.ua
            .handle_datagram(now, Protocol::Udp, addr(from), &payload);
        self.react(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.me == NodeId(0) && !self.started {
            self.started = true;
            let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
            let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
            self.call = Some(
                self.ua
                    .invite(now, &from, &to, addr(NodeId(1)), Protocol::Udp, None)
                    .unwrap(),
            );
        }
        if self.hangup_at.is_some_and(|at| at <= now) {
            self.hangup_at = None;
            if let Some(dialog) = self.dialog.clone() {
                // The peer may already have ended it (ACK timeout); then there is nothing to do.
                let _ = self.ua.hangup(now, &dialog);
            }
        }
        self.ua.handle_timeout(now);
        self.react(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        let t = self.ua.poll_transmit()?;
        Some(Transmit {
            to: node(t.destination),
            payload: t.bytes,
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.hangup_at
            .into_iter()
            .chain(self.ua.poll_timeout())
            .min()
    }
}

fn run_call(seed: u64, impairments: Impairments) -> (Log, Log, usize, usize) {
    let mut sim = Simulation::new(seed, impairments);
    let caller = sim.add(Peer::new(0));
    let callee = sim.add(Peer::new(1));
    sim.wake(caller);
    sim.run_for(Duration::from_secs(200));
    assert!(
        sim.is_idle() && !sim.stalled(),
        "seed {seed}: still busy after 200 s"
    );
    let a = sim.endpoint_mut::<Peer>(caller).unwrap();
    let a_state = a.ua.state_count();
    let a_log = std::mem::take(&mut a.log);
    let b = sim.endpoint_mut::<Peer>(callee).unwrap();
    let b_state = b.ua.state_count();
    let b_log = std::mem::take(&mut b.log);
    (a_log, b_log, a_state, b_state)
}

#[test]
fn a_clean_call_goes_through_every_step() {
    let (caller, callee, a_state, b_state) = run_call(1, Impairments::perfect());
    assert!(
        caller.answered && caller.provisional >= 1 && caller.failed.is_none(),
        "{caller:?}"
    );
    assert_eq!(caller.ended, Some(DialogEnd::LocalBye));
    assert!(callee.answered && callee.acked, "{callee:?}");
    assert_eq!(callee.ended, Some(DialogEnd::PeerBye));
    assert_eq!((a_state, b_state), (0, 0), "state drains to zero");
}

#[test]
fn calls_complete_or_fail_cleanly_under_30_percent_loss() {
    let (mut complete, mut acked) = (0, 0);
    for seed in 0..100 {
        let (caller, callee, a_state, b_state) = run_call(seed, Impairments::hostile(0.3));
        assert_eq!(
            (a_state, b_state),
            (0, 0),
            "seed {seed}: state left: {caller:?} {callee:?}"
        );
        if caller.answered {
            // An answered call ends by our BYE, or by the callee's BYE when our ACK never arrived.
            assert!(caller.ended.is_some(), "seed {seed}: {caller:?}");
        } else {
            assert!(
                caller.failed.is_some(),
                "seed {seed}: neither answered nor failed: {caller:?}"
            );
        }
        // A lost ACK can be overtaken by the caller's BYE, which ends the dialog just the same.
        if caller.ended == Some(DialogEnd::LocalBye) && callee.ended == Some(DialogEnd::PeerBye) {
            complete += 1;
            acked += u32::from(callee.acked);
        }
    }
    assert!(
        complete >= 95,
        "only {complete} of 100 calls completed cleanly"
    );
    assert!(
        acked >= 75,
        "only {acked} of {complete} ACKs arrived before the BYE"
    );
}

/// A scripted peer at node `n`'s address, calling the user agent at node 1.
fn scripted(user: &str, n: usize) -> ScriptedPeer {
    ScriptedPeer::new(
        user,
        addr(NodeId(n)),
        Uri::parse("sip:ua@127.0.0.1:5061").unwrap(),
    )
}

#[test]
fn requests_for_unknown_dialogs_get_481() {
    let t0 = Instant::now();
    let mut ua = ua(1);
    let mut alice = scripted("alice", 0);
    alice.assume_remote_tag("nope");
    let bye = alice.bye();
    ua.handle_datagram(t0, Protocol::Udp, alice.address(), &bye.to_bytes());
    let sent = ua.poll_transmit().map(|t| t.bytes);
    alice
        .expect_response(sent, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
        .unwrap();
    assert!(ua.poll_event().is_none());
    assert_eq!(
        ua.state_count(),
        1,
        "only the BYE's server transaction, until Timer J"
    );
}

#[test]
fn a_scripted_caller_sees_the_uas_flow_message_by_message() {
    let t0 = Instant::now();
    let mut ua = ua(1);
    let mut alice = scripted("alice", 0);
    let source = alice.address();
    let invite = alice.invite_with_body(Some(("application/sdp", Bytes::from_static(b"v=0\r\n"))));
    ua.handle_datagram(t0, Protocol::Udp, source, &invite.to_bytes());
    // A retransmission of the INVITE is absorbed: one IncomingInvite.
    ua.handle_datagram(t0, Protocol::Udp, source, &invite.to_bytes());
    let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
        panic!("no INVITE")
    };
    assert!(ua.poll_event().is_none());
    ua.answer(t0, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let dialog = ua
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    let next = |ua: &mut UserAgent| ua.poll_transmit().map(|t| t.bytes);
    let ringing = alice
        .expect_response(next(&mut ua), StatusCode::RINGING)
        .unwrap();
    let ok = alice
        .expect_response(next(&mut ua), StatusCode::OK)
        .unwrap();
    assert_eq!(
        ringing.to().unwrap().tag(),
        ok.to().unwrap().tag(),
        "§8.2.6.2"
    );
    assert_eq!(alice.remote_tag().as_deref(), Some(&*dialog.local_tag));
    // No ACK yet: the 2xx goes again after T1.
    ua.handle_timeout(t0 + Duration::from_millis(500));
    alice
        .expect_response(next(&mut ua), StatusCode::OK)
        .unwrap();
    let ack = alice.ack();
    ua.handle_datagram(t0, Protocol::Udp, source, &ack.to_bytes());
    assert!(matches!(ua.poll_event(), Some(UaEvent::Ack { dialog: d, .. }) if d == dialog));
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
    assert!(next(&mut ua).is_none());
    ua.handle_timeout(t0 + Duration::from_secs(64));
    assert_eq!(ua.state_count(), 0);
}

fn response_to(
    invite: &session_sip::Request,
    status: StatusCode,
    to_tag: &str,
    contact_port: u16,
) -> Bytes {
    let mut response = session_sip::Response::from_request_with_tag(invite, status, Some(to_tag));
    response.headers.push(session_sip::Header::new(
        session_sip::HeaderName::Contact,
        format!("<sip:callee@127.0.0.1:{contact_port}>"),
    ));
    response.to_bytes()
}

fn sent_requests(ua: &mut UserAgent) -> Vec<session_sip::Request> {
    std::iter::from_fn(|| ua.poll_transmit())
        .filter_map(|t| match session_sip::Message::parse(t.bytes).ok()? {
            session_sip::Message::Request(r) => Some(r),
            session_sip::Message::Response(_) => None,
        })
        .collect()
}

#[test]
fn a_forked_second_answer_is_acked_and_ended_with_bye() {
    let t0 = Instant::now();
    let mut ua = ua(0);
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let tx = ua
        .invite(t0, &from, &to, addr(NodeId(1)), Protocol::Udp, None)
        .unwrap();
    let invite = sent_requests(&mut ua).remove(0);
    let peer = addr(NodeId(1));
    // Two branches of a forking proxy answer: two dialogs for one INVITE (§13.2.2.4).
    ua.handle_datagram(
        t0,
        Protocol::Udp,
        peer,
        &response_to(&invite, StatusCode::OK, "first", 5061),
    );
    ua.handle_datagram(
        t0,
        Protocol::Udp,
        peer,
        &response_to(&invite, StatusCode::OK, "second", 5062),
    );
    let sent = sent_requests(&mut ua);
    let summary: Vec<(String, Option<String>)> = sent
        .iter()
        .map(|r| {
            (
                r.method.as_str().to_owned(),
                r.to().unwrap().tag().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ACK".to_owned(), Some("first".to_owned())),
            ("ACK".to_owned(), Some("second".to_owned())),
            ("BYE".to_owned(), Some("second".to_owned())),
        ]
    );
    assert_eq!(
        sent[2].uri.as_str(),
        "sip:callee@127.0.0.1:5062",
        "the BYE goes to the second branch's Contact"
    );
    let mut answered = Vec::new();
    let mut ended = Vec::new();
    while let Some(event) = ua.poll_event() {
        match event {
            UaEvent::Response {
                tx: t,
                dialog: Some(d),
                ..
            } if t == tx => answered.push(d.remote_tag.to_string()),
            UaEvent::DialogTerminated { dialog, reason } => {
                ended.push((dialog.remote_tag.to_string(), reason))
            }
            _ => {}
        }
    }
    assert_eq!(answered, ["first"], "only the first answer is the call");
    assert_eq!(ended, [("second".to_owned(), DialogEnd::ForkRejected)]);
    assert_eq!(ua.dialog_count(), 1);
    // A retransmission of the first 2xx is ACKed again and reported no more.
    ua.handle_datagram(
        t0,
        Protocol::Udp,
        peer,
        &response_to(&invite, StatusCode::OK, "first", 5061),
    );
    let again = sent_requests(&mut ua);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].method.as_str(), "ACK");
    assert!(ua.poll_event().is_none());
}

#[test]
fn a_reinvite_crossing_ours_gets_491_and_ours_gets_a_retry_delay() {
    let t0 = Instant::now();
    let mut caller = ua(0);
    let mut callee = ua(1);
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    // Set the call up by hand, delivering every datagram at once.
    fn deliver(from: &mut UserAgent, to: &mut UserAgent, source: SocketAddr, now: Instant) {
        while let Some(t) = from.poll_transmit() {
            to.handle_datagram(now, Protocol::Udp, source, &t.bytes);
        }
    }
    caller
        .invite(t0, &from, &to, addr(NodeId(1)), Protocol::Udp, None)
        .unwrap();
    deliver(&mut caller, &mut callee, addr(NodeId(0)), t0);
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    let callee_dialog = callee
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .unwrap();
    deliver(&mut callee, &mut caller, addr(NodeId(1)), t0);
    deliver(&mut caller, &mut callee, addr(NodeId(0)), t0);
    let caller_dialog = callee_dialog.peer_view();
    while caller.poll_event().is_some() {}
    while callee.poll_event().is_some() {}
    // Both send a re-INVITE at the same moment.
    caller
        .request_in_dialog(
            t0,
            &caller_dialog,
            session_sip::Method::Invite,
            Vec::new(),
            None,
        )
        .unwrap();
    callee
        .request_in_dialog(
            t0,
            &callee_dialog,
            session_sip::Method::Invite,
            Vec::new(),
            None,
        )
        .unwrap();
    deliver(&mut caller, &mut callee, addr(NodeId(0)), t0);
    deliver(&mut callee, &mut caller, addr(NodeId(1)), t0);
    // Each side answered the other's re-INVITE with 491; deliver those answers.
    deliver(&mut caller, &mut callee, addr(NodeId(0)), t0);
    deliver(&mut callee, &mut caller, addr(NodeId(1)), t0);
    let glare = |ua: &mut UserAgent| {
        std::iter::from_fn(|| ua.poll_event()).find_map(|e| match e {
            UaEvent::ReInviteGlare { retry_after, .. } => Some(retry_after),
            _ => None,
        })
    };
    // §14.1: the Call-ID owner (the caller) waits 2.1–4 s, the other side 0–2 s.
    let caller_wait = glare(&mut caller).expect("the caller saw 491");
    let callee_wait = glare(&mut callee).expect("the callee saw 491");
    assert!(
        (Duration::from_millis(2100)..=Duration::from_secs(4)).contains(&caller_wait),
        "{caller_wait:?}"
    );
    assert!(callee_wait <= Duration::from_secs(2), "{callee_wait:?}");
    // The glare is over: a new re-INVITE is allowed.
    caller
        .request_in_dialog(
            t0,
            &caller_dialog,
            session_sip::Method::Invite,
            Vec::new(),
            None,
        )
        .unwrap();
}

#[test]
fn a_request_too_large_for_udp_goes_over_tcp() {
    let t0 = Instant::now();
    let mut config_ua = UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: 5060,
        contact: Uri::parse("sip:ua@127.0.0.1:5060").unwrap(),
        large_requests_over_tcp: true,
        rng_seed: None,
    });
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let small = Bytes::from_static(b"v=0\r\n");
    config_ua
        .invite(
            t0,
            &from,
            &to,
            addr(NodeId(1)),
            Protocol::Udp,
            Some(("application/sdp", small)),
        )
        .unwrap();
    let sent = config_ua.poll_transmit().unwrap();
    assert_eq!(sent.protocol, Protocol::Udp);
    let large = Bytes::from(vec![b'a'; 1400]);
    config_ua
        .invite(
            t0,
            &from,
            &to,
            addr(NodeId(1)),
            Protocol::Udp,
            Some(("application/sdp", large)),
        )
        .unwrap();
    let sent = config_ua.poll_transmit().unwrap();
    assert_eq!(
        sent.protocol,
        Protocol::Tcp,
        "§18.1.1: over 1300 bytes with TCP available"
    );
    let session_sip::Message::Request(invite) = session_sip::Message::parse(sent.bytes).unwrap()
    else {
        panic!()
    };
    assert_eq!(invite.top_via().unwrap().transport, "TCP");
}

#[test]
fn cancelling_a_ringing_call_ends_it_with_487_on_both_sides() {
    let t0 = Instant::now();
    let mut caller = ua(0);
    let mut callee = ua(1);
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let deliver = |from: &mut UserAgent, to: &mut UserAgent, source: SocketAddr| {
        while let Some(t) = from.poll_transmit() {
            to.handle_datagram(t0, Protocol::Udp, source, &t.bytes);
        }
    };
    let invite = caller
        .invite(t0, &from, &to, addr(NodeId(1)), Protocol::Udp, None)
        .unwrap();
    deliver(&mut caller, &mut callee, addr(NodeId(0)));
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    callee
        .answer(t0, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    deliver(&mut callee, &mut caller, addr(NodeId(1)));
    // §9.1: CANCEL only after a provisional response.
    caller.cancel(t0, invite).unwrap();
    deliver(&mut caller, &mut callee, addr(NodeId(0)));
    assert!(
        std::iter::from_fn(|| callee.poll_event())
            .any(|e| matches!(e, UaEvent::Cancelled { tx: t } if t == tx)),
        "the callee learns of the CANCEL"
    );
    // The 200 for the CANCEL and the 487 for the INVITE reach the caller, who ACKs the 487.
    deliver(&mut callee, &mut caller, addr(NodeId(1)));
    let statuses: Vec<(u16, String)> = std::iter::from_fn(|| caller.poll_event())
        .filter_map(|e| match e {
            UaEvent::Response { response, .. } => Some((
                response.status.as_u16(),
                response.cseq().unwrap().method.as_str().to_owned(),
            )),
            _ => None,
        })
        .collect();
    assert!(
        statuses.contains(&(200, "CANCEL".to_owned())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(487, "INVITE".to_owned())),
        "{statuses:?}"
    );
    deliver(&mut caller, &mut callee, addr(NodeId(0)));
    assert_eq!(caller.dialog_count() + callee.dialog_count(), 0);
    // Both sides drain once their timers run out.
    let end = t0 + Duration::from_secs(64);
    caller.handle_timeout(end);
    callee.handle_timeout(end);
    assert_eq!((caller.state_count(), callee.state_count()), (0, 0));
}
