//! Reliable provisional responses (RFC 3262) between two user agents in virtual time, and
//! against scripted peers: the reliable 183 with SDP and its PRACK, the 2xx held until that
//! PRACK, a lost PRACK, no PRACK at all (500 after 64·T1), RSeq order per early dialog, PRACKs
//! that match nothing (481), and the CSeq that carries over from the early dialog.
//!
//! The wire is a log of every datagram in the order it was sent (with the virtual time and
//! whether it was dropped), so the tests assert on the order of messages, not on events alone.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, EndpointError, Protocol};
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{DialogEnd, OutgoingInvite, UaConfig, UaEvent, UserAgent};
use session_sip::{Header, HeaderName, Message, Request, Response, Uri};
use session_types::{DialogId, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The caller.
const A: u16 = 5060;
/// The callee.
const B: u16 = 5061;

const SDP: &str = "application/sdp";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A user agent on `port`; `rel` puts `100rel` in its policy's option tags.
fn ua(port: u16, rel: bool) -> UserAgent {
    let mut endpoint = EndpointConfig::default();
    if rel {
        endpoint.policy.supported = vec!["100rel".to_owned()];
    }
    UserAgent::new(UaConfig {
        endpoint,
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: Some(u64::from(port)),
    })
}

fn sdp(version: u32) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\n"
    ))
}

/// `"183/INVITE"` for a response, `"PRACK"` for a request.
fn label(message: &Message) -> String {
    match message {
        Message::Request(r) => r.method.as_str().to_owned(),
        Message::Response(r) => format!(
            "{}/{}",
            r.status.as_u16(),
            r.cseq().unwrap().method.as_str()
        ),
    }
}

fn header(message: &Message, name: HeaderName) -> Option<&str> {
    match message {
        Message::Request(r) => r.headers.get_str(name),
        Message::Response(r) => r.headers.get_str(name),
    }
}

fn cseq(message: &Message) -> u32 {
    match message {
        Message::Request(r) => r.cseq().unwrap().seq,
        Message::Response(r) => r.cseq().unwrap().seq,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// One datagram on the wire.
struct Sent {
    at: Duration,
    from: Side,
    message: Message,
    bytes: Bytes,
    dropped: bool,
}

type DropRule = Box<dyn FnMut(Side, &Message) -> bool>;

/// Two user agents, A calling B, over a lossless zero-latency wire in virtual time, except
/// for what `drop` refuses.
struct Pair {
    start: Instant,
    now: Instant,
    a: UserAgent,
    b: UserAgent,
    wire: Vec<Sent>,
    events_a: Vec<UaEvent>,
    events_b: Vec<UaEvent>,
    drop: DropRule,
}

impl Pair {
    fn new() -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            a: ua(A, true),
            b: ua(B, true),
            wire: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            drop: Box::new(|_, _| false),
        }
    }

    /// A calls B with an SDP offer and `header` (`Supported: 100rel` or `Require: 100rel`);
    /// returns A's client transaction and B's server transaction.
    fn call(&mut self, header: Header) -> (TransactionId, TransactionId) {
        let from = Uri::parse(&format!("sip:alice@127.0.0.1:{A}")).unwrap();
        let to = Uri::parse(&format!("sip:bob@127.0.0.1:{B}")).unwrap();
        let (tx, _) = self
            .a
            .invite_with(
                self.now,
                OutgoingInvite {
                    from: &from,
                    from_display: None,
                    to: &to,
                    destination: at(B),
                    protocol: Protocol::Udp,
                    headers: vec![header],
                    body: Some((SDP, sdp(1))),
                    call_id: None,
                    cseq: None,
                    from_tag: None,
                    account: None,
                    dscp: None,
                },
            )
            .unwrap();
        self.flush();
        let incoming = self.events_b.iter().find_map(|e| match e {
            UaEvent::IncomingInvite { tx, .. } => Some(*tx),
            _ => None,
        });
        (tx, incoming.expect("B got no INVITE"))
    }

    /// Delivers what both sides have to send until neither has more.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            for side in [Side::A, Side::B] {
                loop {
                    let sender = match side {
                        Side::A => &mut self.a,
                        Side::B => &mut self.b,
                    };
                    let Some(transmit) = sender.poll_transmit() else {
                        break;
                    };
                    moved = true;
                    let message = Message::parse(transmit.bytes.clone()).unwrap();
                    let dropped = (self.drop)(side, &message);
                    if !dropped {
                        let (receiver, source) = match side {
                            Side::A => (&mut self.b, at(A)),
                            Side::B => (&mut self.a, at(B)),
                        };
                        receiver.handle_datagram(self.now, Protocol::Udp, source, &transmit.bytes);
                    }
                    self.wire.push(Sent {
                        at: self.now - self.start,
                        from: side,
                        message,
                        bytes: transmit.bytes,
                        dropped,
                    });
                }
            }
            while let Some(event) = self.a.poll_event() {
                self.events_a.push(event);
            }
            while let Some(event) = self.b.poll_event() {
                self.events_b.push(event);
            }
            if !moved {
                break;
            }
        }
    }

    /// Lets `duration` of virtual time pass, firing timers and delivering as it goes.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.flush();
        while let Some(next) = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .filter(|&next| next <= end)
        {
            self.now = self.now.max(next);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.flush();
        }
        self.now = end;
    }

    /// `"A INVITE"`, `"B 183/INVITE"` … in wire order (`"(lost)"` after dropped ones).
    fn trace(&self) -> Vec<String> {
        self.wire
            .iter()
            .map(|s| {
                let lost = if s.dropped { " (lost)" } else { "" };
                format!("{:?} {}{lost}", s.from, label(&s.message))
            })
            .collect()
    }

    /// When each message with `label` went out, in ms since the start.
    fn times(&self, from: Side, label_is: &str) -> Vec<u128> {
        self.wire
            .iter()
            .filter(|s| s.from == from && label(&s.message) == label_is)
            .map(|s| s.at.as_millis())
            .collect()
    }

    fn first(&self, from: Side, label_is: &str) -> &Message {
        &self
            .wire
            .iter()
            .find(|s| s.from == from && label(&s.message) == label_is)
            .unwrap_or_else(|| panic!("no {label_is} from {from:?}: {:?}", self.trace()))
            .message
    }

    /// The statuses of the responses A reported for CSeq method `method`.
    fn reported(&self, method: &str) -> Vec<u16> {
        self.events_a
            .iter()
            .filter_map(|e| match e {
                UaEvent::Response { response, .. }
                    if response.cseq().unwrap().method.as_str() == method =>
                {
                    Some(response.status.as_u16())
                }
                _ => None,
            })
            .collect()
    }

    fn answered_dialog(&self) -> DialogId {
        self.events_a
            .iter()
            .find_map(|e| match e {
                UaEvent::Response {
                    response, dialog, ..
                } if response.status.is_success() => dialog.clone(),
                _ => None,
            })
            .expect("A got no 2xx")
    }

    /// Both sides hold nothing once every transaction has ended.
    fn drains(&mut self) {
        self.run(Duration::from_secs(40));
        assert_eq!(
            (self.a.state_count(), self.b.state_count()),
            (0, 0),
            "{:?}",
            self.trace()
        );
    }
}

fn supported() -> Header {
    Header::new(HeaderName::Supported, "100rel")
}

fn require() -> Header {
    Header::new(HeaderName::Require, "100rel")
}

/// B sends 183 with SDP (early media) and asks for the 200 at once, before the PRACK has come.
fn early_media_then_answer(pair: &mut Pair, tx: TransactionId) -> Option<DialogId> {
    let now = pair.now;
    let early = pair.b.answer(
        now,
        tx,
        StatusCode::SESSION_PROGRESS,
        Vec::new(),
        Some((SDP, sdp(1))),
    );
    assert_eq!(early.unwrap(), None);
    pair.b
        .answer(now, tx, StatusCode::OK, Vec::new(), Some((SDP, sdp(1))))
        .unwrap()
}

#[test]
fn a_reliable_183_with_sdp_is_pracked_and_the_200_waits_for_the_prack() {
    let mut pair = Pair::new();
    let (_, tx) = pair.call(supported());
    let dialog = early_media_then_answer(&mut pair, tx);
    assert!(
        dialog.is_some(),
        "the held 2xx's dialog is returned at once"
    );
    pair.flush();
    assert_eq!(
        pair.trace(),
        [
            "A INVITE",
            "B 183/INVITE",
            "A PRACK",
            "B 200/PRACK",
            // §3: the 2xx only after the PRACK of the 1xx with a session description.
            "B 200/INVITE",
            "A ACK",
        ]
    );
    let progress = pair.first(Side::B, "183/INVITE");
    assert_eq!(header(progress, HeaderName::Require), Some("100rel"));
    let rseq: u32 = header(progress, HeaderName::RSeq).unwrap().parse().unwrap();
    assert!((1..=(1 << 31) - 1).contains(&rseq), "RSeq {rseq}");
    let Message::Response(progress) = progress else {
        unreachable!()
    };
    let b_tag = progress.to().unwrap().tag().unwrap().to_owned();
    let Message::Request(prack) = pair.first(Side::A, "PRACK") else {
        unreachable!()
    };
    assert_eq!(
        prack.headers.get_str(HeaderName::RAck),
        Some(format!("{rseq} 1 INVITE").as_str())
    );
    assert_eq!(prack.cseq().unwrap().seq, 2, "the early dialog's next CSeq");
    assert_eq!(
        prack.uri.as_str(),
        format!("sip:ua@127.0.0.1:{B}"),
        "the 183's Contact"
    );
    assert_eq!(prack.to().unwrap().tag(), Some(b_tag.as_str()));
    // The 1xx and the 2xx reach the layer above once each; the PRACK's 200 does not.
    assert_eq!(pair.reported("INVITE"), [183, 200]);
    assert!(pair.reported("PRACK").is_empty());
    assert!(
        pair.events_b
            .iter()
            .any(|e| matches!(e, UaEvent::Prack { tx: t, .. } if *t == tx))
    );
    assert!(
        pair.events_b
            .iter()
            .any(|e| matches!(e, UaEvent::Ack { .. }))
    );

    // The confirmed dialog counts on from the PRACK: BYE is CSeq 3.
    let dialog = pair.answered_dialog();
    let now = pair.now;
    pair.a.hangup(now, &dialog).unwrap();
    pair.flush();
    let bye = pair.first(Side::A, "BYE");
    assert!(cseq(bye) > cseq(pair.first(Side::A, "PRACK")));
    assert_eq!(cseq(bye), 3);
    assert_eq!(label(&pair.wire.last().unwrap().message), "200/BYE");
    pair.drains();
}

#[test]
fn a_lost_prack_is_resent_by_its_transaction_while_the_183_is_resent_at_t1_doubling() {
    let mut pair = Pair::new();
    let mut lost = 0;
    pair.drop = Box::new(move |_, message| {
        let first_three = label(message) == "PRACK" && lost < 3;
        lost += usize::from(first_three);
        first_three
    });
    let (_, tx) = pair.call(supported());
    early_media_then_answer(&mut pair, tx);
    pair.run(Duration::from_secs(5));
    // T1 = 500 ms: the 183 at 0, T1, 3·T1, 7·T1 (the PRACK came at 7·T1); the PRACK by its
    // own non-INVITE transaction (Timer E) at the same times, every copy the same bytes.
    assert_eq!(pair.times(Side::B, "183/INVITE"), [0, 500, 1500, 3500]);
    assert_eq!(pair.times(Side::A, "PRACK"), [0, 500, 1500, 3500]);
    let pracks: Vec<&Bytes> = pair
        .wire
        .iter()
        .filter(|s| label(&s.message) == "PRACK")
        .map(|s| &s.bytes)
        .collect();
    assert!(pracks.windows(2).all(|w| w[0] == w[1]), "one PRACK, resent");
    assert_eq!(pair.times(Side::B, "200/PRACK"), [3500]);
    assert_eq!(pair.times(Side::B, "200/INVITE"), [3500]);
    let trace = pair.trace();
    let ok_prack = trace.iter().position(|l| l == "B 200/PRACK").unwrap();
    let ok_invite = trace.iter().position(|l| l == "B 200/INVITE").unwrap();
    assert!(ok_prack < ok_invite, "{trace:?}");
    // The 183's retransmissions are not PRACKed again nor reported again.
    assert_eq!(pair.reported("INVITE"), [183, 200]);
    let (dialog, now) = (pair.answered_dialog(), pair.now);
    pair.a.hangup(now, &dialog).unwrap();
    pair.drains();
}

#[test]
fn without_any_prack_the_invite_gets_500_after_64_t1_and_the_held_2xx_never_goes() {
    let mut pair = Pair::new();
    pair.drop = Box::new(|_, message| label(message) == "PRACK");
    let (_, tx) = pair.call(supported());
    let dialog = early_media_then_answer(&mut pair, tx).unwrap();
    pair.run(Duration::from_secs(33));
    // §3: intervals double with no T2 cap (4 s): 0.5, 1, 2, 4, 8, 16 s.
    assert_eq!(
        pair.times(Side::B, "183/INVITE"),
        [0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    // 64·T1 after the 183: the INVITE is rejected with a 5xx.
    assert_eq!(pair.times(Side::B, "500/INVITE"), [32000]);
    assert!(
        pair.times(Side::B, "200/INVITE").is_empty(),
        "{:?}",
        pair.trace()
    );
    let ends: Vec<&UaEvent> = pair
        .events_b
        .iter()
        .filter(|e| {
            matches!(
                e,
                UaEvent::PrackTimeout { .. } | UaEvent::DialogTerminated { .. }
            )
        })
        .collect();
    assert!(
        matches!(ends.as_slice(), [
            UaEvent::PrackTimeout { tx: t },
            UaEvent::DialogTerminated { dialog: d, reason: DialogEnd::PrackTimeout },
        ] if *t == tx && *d == dialog),
        "{ends:?}"
    );
    assert_eq!(pair.reported("INVITE"), [183, 500]);
    let now = pair.now;
    assert!(
        pair.b
            .answer(now, tx, StatusCode::OK, Vec::new(), None)
            .is_err()
    );
    pair.drains();
}

#[test]
fn a_cancel_while_the_2xx_is_held_ends_the_dialog_it_made() {
    let mut pair = Pair::new();
    pair.drop = Box::new(|_, message| label(message) == "PRACK");
    let (invite, tx) = pair.call(supported());
    let dialog = early_media_then_answer(&mut pair, tx).unwrap();
    pair.run(ms(100));
    let now = pair.now;
    pair.a.cancel(now, invite).unwrap();
    pair.flush();
    assert!(pair.times(Side::B, "200/INVITE").is_empty());
    assert_eq!(pair.times(Side::B, "487/INVITE"), [100]);
    assert!(
        pair.events_b.iter().any(|e| matches!(
            e,
            UaEvent::DialogTerminated { dialog: d, reason: DialogEnd::CancelledBeforeAnswer }
                if *d == dialog
        )),
        "{:?}",
        pair.events_b
    );
    assert_eq!(pair.b.dialog_count(), 0);
    pair.drains();
}

#[test]
fn hanging_up_while_the_2xx_is_held_answers_the_invite_480_without_a_bye() {
    let mut pair = Pair::new();
    pair.drop = Box::new(|_, message| label(message) == "PRACK");
    let (_, tx) = pair.call(supported());
    let dialog = early_media_then_answer(&mut pair, tx).unwrap();
    pair.run(ms(100));
    let now = pair.now;
    // The caller still sees an early dialog: a callee does not BYE it (RFC 3261 §15).
    assert!(matches!(
        pair.b.hangup(now, &dialog),
        Err(EndpointError::NoSuchTransaction)
    ));
    pair.flush();
    assert!(pair.times(Side::B, "BYE").is_empty(), "{:?}", pair.trace());
    assert!(pair.times(Side::B, "200/INVITE").is_empty());
    assert_eq!(pair.times(Side::B, "480/INVITE"), [100]);
    assert!(pair.events_b.iter().any(|e| matches!(
        e,
        UaEvent::DialogTerminated { dialog: d, reason: DialogEnd::LocalBye } if *d == dialog
    )));
    assert_eq!(pair.reported("INVITE"), [183, 480]);
    pair.drains();
}

// ---------------------------------------------------------------------------------------------
// Our UAC against a scripted UAS
// ---------------------------------------------------------------------------------------------

/// What `ua` sends next.
fn sent(ua: &mut UserAgent) -> Option<(SocketAddr, Message)> {
    let transmit = ua.poll_transmit()?;
    Some((
        transmit.destination,
        Message::parse(transmit.bytes).unwrap(),
    ))
}

fn sent_request(ua: &mut UserAgent) -> (SocketAddr, Request) {
    match sent(ua) {
        Some((to, Message::Request(request))) => (to, request),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// A reliable provisional response to `invite` from the branch with To tag `tag`.
fn reliable_1xx(
    invite: &Request,
    status: StatusCode,
    tag: &str,
    rseq: u32,
    extra: &[Header],
) -> Bytes {
    let mut response = Response::from_request_with_tag(invite, status, Some(tag));
    response.headers.remove_all(HeaderName::ContentLength);
    for header in extra {
        response.headers.push(header.clone());
    }
    response.headers.push(Header::new(
        HeaderName::Contact,
        format!(
            "<sip:{tag}@127.0.0.1:{}>",
            5070 + u16::from(tag.as_bytes()[1] - b'0')
        ),
    ));
    response.headers.push(require());
    response
        .headers
        .push(Header::new(HeaderName::RSeq, rseq.to_string()));
    response
        .headers
        .push(Header::new(HeaderName::ContentLength, "0"));
    response.to_bytes()
}

fn responses(events: impl Iterator<Item = UaEvent>) -> Vec<u16> {
    events
        .filter_map(|e| match e {
            UaEvent::Response { response, .. } => Some(response.status.as_u16()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_uac_pracks_the_first_rseq_then_only_the_next_one_in_each_early_dialog() {
    let mut now = Instant::now();
    let mut a = ua(A, true);
    let from = Uri::parse(&format!("sip:alice@127.0.0.1:{A}")).unwrap();
    let to = Uri::parse(&format!("sip:bob@127.0.0.1:{B}")).unwrap();
    let (tx, _) = a
        .invite_with(
            now,
            OutgoingInvite {
                from: &from,
                from_display: None,
                to: &to,
                destination: at(B),
                protocol: Protocol::Udp,
                headers: vec![supported()],
                body: None,
                call_id: None,
                cseq: Some(10),
                from_tag: None,
                account: None,
                dscp: None,
            },
        )
        .unwrap();
    let (_, invite) = sent_request(&mut a);
    let deliver = |a: &mut UserAgent, bytes: Bytes, now: Instant| {
        a.handle_datagram(now, Protocol::Udp, at(B), &bytes);
        responses(std::iter::from_fn(|| a.poll_event()))
    };

    // Fork b1: RSeq 7 is the first: PRACKed at its Contact, in its early dialog.
    let first = reliable_1xx(&invite, StatusCode::SESSION_PROGRESS, "b1", 7, &[]);
    assert_eq!(deliver(&mut a, first.clone(), now), [183]);
    let (hop, prack) = sent_request(&mut a);
    assert_eq!(hop, at(5071));
    assert_eq!(prack.uri.as_str(), "sip:b1@127.0.0.1:5071");
    assert_eq!(prack.headers.get_str(HeaderName::RAck), Some("7 10 INVITE"));
    assert_eq!(prack.cseq().unwrap().seq, 11);
    assert_eq!(prack.to().unwrap().tag(), Some("b1"));
    // The same RSeq again (a retransmission), and one that skips 8: neither PRACKed nor
    // reported (§4).
    assert!(deliver(&mut a, first, now).is_empty());
    assert!(sent(&mut a).is_none());
    let skipped = reliable_1xx(&invite, StatusCode::SESSION_PROGRESS, "b1", 9, &[]);
    assert!(deliver(&mut a, skipped, now).is_empty());
    assert!(sent(&mut a).is_none());
    // RSeq 8 is the next one.
    let next = reliable_1xx(&invite, StatusCode::RINGING, "b1", 8, &[]);
    assert_eq!(deliver(&mut a, next, now), [180]);
    let (_, second) = sent_request(&mut a);
    assert_eq!(
        second.headers.get_str(HeaderName::RAck),
        Some("8 10 INVITE")
    );
    assert_eq!(second.cseq().unwrap().seq, 12);

    // Fork b2 (another To tag) has an RSeq space and a CSeq count of its own, and a route set
    // from its Record-Route.
    let record_route = Header::new(HeaderName::RecordRoute, "<sip:127.0.0.1:5080;lr>");
    let fork = reliable_1xx(&invite, StatusCode::RINGING, "b2", 100, &[record_route]);
    assert_eq!(deliver(&mut a, fork, now), [180]);
    let (hop, third) = sent_request(&mut a);
    assert_eq!(hop, at(5080), "the early dialog's first route");
    assert_eq!(
        third.headers.get_str(HeaderName::Route),
        Some("<sip:127.0.0.1:5080;lr>")
    );
    assert_eq!(
        third.headers.get_str(HeaderName::RAck),
        Some("100 10 INVITE")
    );
    assert_eq!(third.cseq().unwrap().seq, 11);
    assert_eq!(third.to().unwrap().tag(), Some("b2"));

    // The PRACKs' 200s are not reported.
    for prack in [&prack, &second, &third] {
        let ok = Response::from_request_with_tag(prack, StatusCode::OK, None);
        assert!(deliver(&mut a, ok.to_bytes(), now).is_empty());
    }

    // b1 answers: the confirmed dialog goes on from the early dialog's CSeq.
    let mut ok = Response::from_request_with_tag(&invite, StatusCode::OK, Some("b1"));
    ok.headers
        .push(Header::new(HeaderName::Contact, "<sip:b1@127.0.0.1:5071>"));
    assert_eq!(deliver(&mut a, ok.to_bytes(), now), [200]);
    let (_, ack) = sent_request(&mut a);
    assert_eq!(ack.cseq().unwrap().seq, 10);
    let dialog = DialogId::new(
        session_types::CallId::new(invite.call_id().unwrap()),
        invite.from().unwrap().tag().unwrap(),
        "b1",
    );
    now += ms(10);
    a.hangup(now, &dialog).unwrap();
    let (hop, bye) = sent_request(&mut a);
    assert_eq!(hop, at(5071));
    assert_eq!(bye.cseq().unwrap().seq, 13, "after the PRACKs 11 and 12");
    let _ = tx;
}

#[test]
fn a_100_asking_for_100rel_is_not_pracked() {
    let now = Instant::now();
    let mut a = ua(A, true);
    let to = Uri::parse(&format!("sip:bob@127.0.0.1:{B}")).unwrap();
    let from = Uri::parse(&format!("sip:alice@127.0.0.1:{A}")).unwrap();
    a.invite(now, &from, &to, at(B), Protocol::Udp, None)
        .unwrap();
    let (_, invite) = sent_request(&mut a);
    let mut trying = Response::from_request_with_tag(&invite, StatusCode::TRYING, None);
    trying.headers.push(require());
    trying.headers.push(Header::new(HeaderName::RSeq, "1"));
    a.handle_datagram(now, Protocol::Udp, at(B), &trying.to_bytes());
    assert!(sent(&mut a).is_none(), "§4: 100rel in a 100 is ignored");
}

// ---------------------------------------------------------------------------------------------
// Our UAS against a scripted UAC
// ---------------------------------------------------------------------------------------------

const CALL_ID: &str = "prack-test@127.0.0.1";

/// An INVITE from a scripted caller at A with the extra header lines `extra` (each ending in
/// CRLF) and an SDP offer when `offer`.
fn invite_bytes(extra: &str, offer: bool) -> Bytes {
    let body = if offer { sdp(1) } else { Bytes::new() };
    let content_type = if offer {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let head = format!(
        "INVITE sip:ua@127.0.0.1:{B} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{A};branch=z9hG4bK-invite\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1:{A}>;tag=caller\r\n\
         To: <sip:ua@127.0.0.1:{B}>\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:{A}>\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

/// A PRACK from the scripted caller.
fn prack_bytes(branch: &str, to_tag: &str, cseq: u32, rack: Option<&str>) -> Bytes {
    let rack = rack.map_or(String::new(), |r| format!("RAck: {r}\r\n"));
    Bytes::from(format!(
        "PRACK sip:ua@127.0.0.1:{B} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{A};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1:{A}>;tag=caller\r\n\
         To: <sip:ua@127.0.0.1:{B}>;tag={to_tag}\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: {cseq} PRACK\r\n\
         {rack}Content-Length: 0\r\n\r\n"
    ))
}

/// The callee `b` got `invite`: its server transaction.
fn received(b: &mut UserAgent, now: Instant, invite: Bytes) -> TransactionId {
    b.handle_datagram(now, Protocol::Udp, at(A), &invite);
    std::iter::from_fn(|| b.poll_event())
        .find_map(|e| match e {
            UaEvent::IncomingInvite { tx, .. } => Some(tx),
            _ => None,
        })
        .expect("no INVITE event")
}

fn sent_response(ua: &mut UserAgent) -> Response {
    match sent(ua) {
        Some((_, Message::Response(response))) => response,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The RSeq and To tag of a reliable provisional response.
fn rseq_and_tag(response: &Response) -> (u32, String) {
    assert_eq!(
        response.headers.get_str(HeaderName::Require),
        Some("100rel")
    );
    let rseq = response
        .headers
        .get_str(HeaderName::RSeq)
        .unwrap()
        .parse()
        .unwrap();
    (rseq, response.to().unwrap().tag().unwrap().to_owned())
}

#[test]
fn a_prack_that_matches_no_unacknowledged_1xx_gets_481() {
    let mut now = Instant::now();
    let mut b = ua(B, true);
    let tx = received(&mut b, now, invite_bytes("Require: 100rel\r\n", true));
    // Require: 100rel: even a 180 without a body goes reliably.
    b.answer(now, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let (rseq, tag) = rseq_and_tag(&sent_response(&mut b));
    let prack = |b: &mut UserAgent, bytes: Bytes| {
        b.handle_datagram(now, Protocol::Udp, at(A), &bytes);
        sent_response(b).status.as_u16()
    };
    let wrong = [
        ("rseq", tag.as_str(), format!("{} 1 INVITE", rseq + 1)),
        ("cseq", tag.as_str(), format!("{rseq} 2 INVITE")),
        ("method", tag.as_str(), format!("{rseq} 1 UPDATE")),
        ("tag", "not-ours", format!("{rseq} 1 INVITE")),
    ];
    for (n, (branch, to_tag, rack)) in wrong.iter().enumerate() {
        let cseq = 2 + u32::try_from(n).unwrap();
        let status = prack(&mut b, prack_bytes(branch, to_tag, cseq, Some(rack)));
        assert_eq!(status, 481, "wrong {branch}: {rack}");
    }
    assert_eq!(prack(&mut b, prack_bytes("norack", &tag, 6, None)), 400);
    let good = format!("{rseq} 1 INVITE");
    assert_eq!(
        prack(&mut b, prack_bytes("good", &tag, 7, Some(&good))),
        200
    );
    assert!(
        std::iter::from_fn(|| b.poll_event())
            .any(|e| matches!(e, UaEvent::Prack { tx: t, .. } if t == tx))
    );
    // Acknowledged now: the same RAck in a new PRACK matches nothing.
    assert_eq!(
        prack(&mut b, prack_bytes("again", &tag, 8, Some(&good))),
        481
    );
    // And the 180 is not sent again.
    now += ms(1000);
    b.handle_timeout(now);
    assert!(sent(&mut b).is_none());
}

#[test]
fn with_require_every_1xx_is_reliable_one_at_a_time_in_rseq_order() {
    let now = Instant::now();
    let mut b = ua(B, true);
    let tx = received(&mut b, now, invite_bytes("Require: 100rel\r\n", false));
    b.answer(now, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let (first, tag) = rseq_and_tag(&sent_response(&mut b));
    // A second reliable 1xx waits for the first's PRACK (§3).
    b.answer(now, tx, StatusCode::QUEUED, Vec::new(), None)
        .unwrap();
    assert!(sent(&mut b).is_none());
    let rack = format!("{first} 1 INVITE");
    b.handle_datagram(
        now,
        Protocol::Udp,
        at(A),
        &prack_bytes("p1", &tag, 2, Some(&rack)),
    );
    assert_eq!(sent_response(&mut b).status, StatusCode::OK);
    let queued = sent_response(&mut b);
    assert_eq!(queued.status, StatusCode::QUEUED);
    let (second, _) = rseq_and_tag(&queued);
    assert_eq!(second, first + 1);
    let rack = format!("{second} 1 INVITE");
    b.handle_datagram(
        now,
        Protocol::Udp,
        at(A),
        &prack_bytes("p2", &tag, 3, Some(&rack)),
    );
    assert_eq!(sent_response(&mut b).status, StatusCode::OK);
    // Nothing unacknowledged carried SDP: the 2xx goes at once.
    let dialog = b
        .answer(now, tx, StatusCode::OK, Vec::new(), Some((SDP, sdp(1))))
        .unwrap()
        .unwrap();
    assert_eq!(sent_response(&mut b).status, StatusCode::OK);
    // The dialog counts the PRACKs: a request with their CSeq is out of order.
    assert_eq!(b.dialog(&dialog).unwrap().remote_seq, Some(3));
}

#[test]
fn with_supported_only_a_1xx_with_a_body_is_reliable() {
    let now = Instant::now();
    let mut b = ua(B, true);
    let tx = received(&mut b, now, invite_bytes("Supported: 100rel\r\n", true));
    b.answer(now, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let ringing = sent_response(&mut b);
    assert_eq!(ringing.headers.get(HeaderName::RSeq), None);
    assert_eq!(ringing.headers.get(HeaderName::Require), None);
    b.answer(
        now,
        tx,
        StatusCode::SESSION_PROGRESS,
        Vec::new(),
        Some((SDP, sdp(1))),
    )
    .unwrap();
    let progress = sent_response(&mut b);
    let (rseq, tag) = rseq_and_tag(&progress);
    assert!(!progress.body.is_empty());
    // The 2xx is held: nothing goes, and no second final response can be asked for.
    let dialog = b
        .answer(now, tx, StatusCode::OK, Vec::new(), Some((SDP, sdp(1))))
        .unwrap();
    assert!(dialog.is_some());
    assert!(sent(&mut b).is_none());
    assert!(matches!(
        b.answer(now, tx, StatusCode::BUSY_HERE, Vec::new(), None),
        Err(EndpointError::ResponseRefused)
    ));
    let rack = format!("{rseq} 1 INVITE");
    b.handle_datagram(
        now,
        Protocol::Udp,
        at(A),
        &prack_bytes("p", &tag, 2, Some(&rack)),
    );
    assert_eq!(sent_response(&mut b).status, StatusCode::OK);
    let ok = sent_response(&mut b);
    assert_eq!(
        (ok.status, ok.cseq().unwrap().method.as_str()),
        (StatusCode::OK, "INVITE")
    );
    assert_eq!(ok.to().unwrap().tag(), Some(tag.as_str()));
}

#[test]
fn without_100rel_in_the_policy_nothing_goes_reliably() {
    let now = Instant::now();
    let mut b = ua(B, false);
    let tx = received(&mut b, now, invite_bytes("Supported: 100rel\r\n", true));
    b.answer(
        now,
        tx,
        StatusCode::SESSION_PROGRESS,
        Vec::new(),
        Some((SDP, sdp(1))),
    )
    .unwrap();
    assert_eq!(sent_response(&mut b).headers.get(HeaderName::RSeq), None);
    // Requiring it is refused by the endpoint, as any option tag we do not list.
    let required = invite_bytes("Require: 100rel\r\n", true);
    let required = String::from_utf8(required.to_vec())
        .unwrap()
        .replace("branch=z9hG4bK-invite", "branch=z9hG4bK-second")
        .replace(CALL_ID, "second@127.0.0.1");
    b.handle_datagram(now, Protocol::Udp, at(A), &Bytes::from(required));
    let refused = sent_response(&mut b);
    assert_eq!(refused.status, StatusCode::BAD_EXTENSION);
    assert_eq!(
        refused.headers.get_str(HeaderName::Unsupported),
        Some("100rel")
    );
}
