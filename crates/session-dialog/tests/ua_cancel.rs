//! CANCEL at any moment of an outgoing call (RFC 3261 §9.1), between two user agents over the
//! simulated network: before the first provisional response (the CANCEL waits for it), after
//! it, and racing the callee's 2xx (the caller ACKs and hangs up). Every run drains to zero
//! state on both sides.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, EndpointError, Protocol};
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_simnet::{Endpoint, Impairments, NodeId, Simulation, Transmit};
use session_sip::Uri;
use session_types::{DialogId, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CALLER: NodeId = NodeId(0);
const CALLEE: NodeId = NodeId(1);

fn addr(node: NodeId) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5060 + u16::try_from(node.0).unwrap()))
}

fn node(addr: SocketAddr) -> NodeId {
    NodeId(usize::from(addr.port() - 5060))
}

fn ua(node: NodeId) -> UserAgent {
    let port = addr(node).port();
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// When each side acts, counted from the INVITE (caller) or its arrival (callee).
#[derive(Clone, Copy)]
struct Script {
    ring_after: Option<Duration>,
    answer_after: Option<(Duration, StatusCode)>,
    cancel_after: Duration,
}

/// One user agent playing its part of a [`Script`], writing down what happened and when.
struct Peer {
    ua: UserAgent,
    me: NodeId,
    script: Script,
    start: Option<Instant>,
    invite: Option<TransactionId>,
    cancel: Option<TransactionId>,
    cancel_at: Option<Instant>,
    incoming: Option<TransactionId>,
    /// The dialog of an answered call.
    dialog: Option<DialogId>,
    ring_at: Option<Instant>,
    answer_at: Option<Instant>,
    /// `(ms since start, what)` in order.
    log: Vec<(u128, String)>,
    /// The time of the last input (transmissions are polled right after it).
    now: Option<Instant>,
}

impl Peer {
    fn new(me: NodeId, script: Script) -> Self {
        Self {
            ua: ua(me),
            me,
            script,
            start: None,
            invite: None,
            cancel: None,
            cancel_at: None,
            incoming: None,
            dialog: None,
            ring_at: None,
            answer_at: None,
            log: Vec::new(),
            now: None,
        }
    }

    fn note(&mut self, now: Instant, what: String) {
        let start = *self.start.get_or_insert(now);
        self.log.push(((now - start).as_millis(), what));
    }

    fn react(&mut self, now: Instant) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::IncomingInvite { tx, .. } => {
                    self.note(now, "INVITE in".into());
                    self.incoming = Some(tx);
                    self.ring_at = self.script.ring_after.map(|d| now + d);
                    self.answer_at = self.script.answer_after.map(|(d, _)| now + d);
                }
                UaEvent::Cancelled { .. } => {
                    self.note(now, "cancelled".into());
                    self.ring_at = None;
                    self.answer_at = None;
                }
                UaEvent::Response {
                    tx,
                    response,
                    dialog,
                } => {
                    if Some(tx) == self.invite && response.status.is_success() {
                        self.dialog = dialog;
                    }
                    let cseq = response.cseq().unwrap();
                    let what = format!("{} {}", response.status.as_u16(), cseq.method.as_str());
                    // Only the INVITE's and the CANCEL's answers tell the story.
                    if Some(tx) == self.invite || Some(tx) == self.cancel {
                        self.note(now, what);
                    }
                }
                UaEvent::Ack { .. } => self.note(now, "ACK in".into()),
                UaEvent::DialogTerminated { reason, .. } => {
                    self.note(now, format!("ended {reason:?}"))
                }
                UaEvent::TransactionTimeout { tx } if Some(tx) == self.invite => {
                    self.note(now, "INVITE timed out".into())
                }
                _ => {}
            }
        }
    }
}

impl Endpoint<Bytes> for Peer {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, payload: Bytes) {
        self.now = Some(now);
        self.ua
            .handle_datagram(now, Protocol::Udp, addr(from), &payload);
        self.react(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        if self.me == CALLER && self.invite.is_none() {
            self.start = Some(now);
            let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
            let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
            let tx = self
                .ua
                .invite(now, &from, &to, addr(CALLEE), Protocol::Udp, None)
                .unwrap();
            self.invite = Some(tx);
            self.cancel_at = Some(now + self.script.cancel_after);
        }
        if self.cancel_at.is_some_and(|at| at <= now) {
            self.cancel_at = None;
            if let Some(invite) = self.invite {
                match self.ua.cancel(now, invite) {
                    Ok(id) => self.cancel = Some(id),
                    // The final response came first: nothing to cancel; hang up if answered.
                    Err(EndpointError::AlreadyFinal | EndpointError::NoSuchTransaction) => {
                        if let Some(dialog) = self.dialog.clone() {
                            // The callee may have ended it already (ACK lost, its BYE).
                            let _ = self.ua.hangup(now, &dialog);
                        }
                    }
                    Err(other) => panic!("cancel: {other}"),
                }
                self.note(now, "cancel()".into());
            }
        }
        if let Some(tx) = self.incoming {
            if self.ring_at.is_some_and(|at| at <= now) {
                self.ring_at = None;
                // The INVITE may have been cancelled under our feet; then this is refused.
                let _ = self
                    .ua
                    .answer(now, tx, StatusCode::RINGING, Vec::new(), None);
            }
            if self.answer_at.is_some_and(|at| at <= now) {
                self.answer_at = None;
                let status = self.script.answer_after.map_or(StatusCode::OK, |(_, s)| s);
                let _ = self.ua.answer(now, tx, status, Vec::new(), None);
            }
        }
        self.ua.handle_timeout(now);
        self.react(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        let t = self.ua.poll_transmit()?;
        if self.me == CALLER {
            let method = t.bytes.split(|&b| b == b' ').next().unwrap_or_default();
            if matches!(method, b"CANCEL" | b"ACK" | b"BYE") {
                let method = String::from_utf8_lossy(method).into_owned();
                // Only the first of each (UDP retransmissions would clutter the story).
                if !self.log.iter().any(|(_, w)| *w == format!("sent {method}"))
                    && let Some(now) = self.now
                {
                    self.note(now, format!("sent {method}"));
                }
            }
        }
        Some(Transmit {
            to: node(t.destination),
            payload: t.bytes,
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        [self.cancel_at, self.ring_at, self.answer_at]
            .into_iter()
            .flatten()
            .chain(self.ua.poll_timeout())
            .min()
    }
}

/// Runs one call; returns both logs after checking that both sides drained to zero state.
fn run(seed: u64, impairments: Impairments, script: Script) -> (Vec<(u128, String)>, Vec<String>) {
    let mut sim = Simulation::new(seed, impairments);
    let caller = sim.add(Peer::new(CALLER, script));
    let callee = sim.add(Peer::new(CALLEE, script));
    sim.wake(caller);
    sim.run_for(Duration::from_secs(300));
    assert!(sim.is_idle() && !sim.stalled(), "seed {seed}: still busy");
    let a = sim.endpoint_mut::<Peer>(caller).unwrap();
    let (a_state, a_log) = (a.ua.state_count(), std::mem::take(&mut a.log));
    let b = sim.endpoint_mut::<Peer>(callee).unwrap();
    let (b_state, b_log) = (b.ua.state_count(), std::mem::take(&mut b.log));
    assert_eq!(
        (a_state, b_state),
        (0, 0),
        "seed {seed}: state left\n{a_log:?}\n{b_log:?}"
    );
    (a_log, b_log.into_iter().map(|(_, w)| w).collect())
}

fn events(log: &[(u128, String)]) -> Vec<&str> {
    log.iter().map(|(_, w)| w.as_str()).collect()
}

fn at(log: &[(u128, String)], what: &str) -> u128 {
    log.iter()
        .find(|(_, w)| w == what)
        .unwrap_or_else(|| panic!("no {what:?} in {log:?}"))
        .0
}

#[test]
fn a_cancel_before_any_provisional_waits_for_the_first_1xx() {
    let script = Script {
        ring_after: Some(ms(100)),
        answer_after: Some((Duration::from_secs(10), StatusCode::OK)),
        cancel_after: ms(10),
    };
    let (caller, callee) = run(1, Impairments::perfect(), script);
    assert_eq!(
        events(&caller),
        [
            "cancel()",
            "180 INVITE",
            "sent CANCEL",
            "200 CANCEL",
            "487 INVITE",
            "sent ACK",
        ],
        "{caller:?}"
    );
    // The INVITE reaches the callee at 1 ms, the 180 comes back at 102 ms: the CANCEL waited.
    assert_eq!(at(&caller, "cancel()"), 10);
    assert_eq!(at(&caller, "sent CANCEL"), at(&caller, "180 INVITE"));
    assert_eq!(callee, ["INVITE in", "cancelled"]);
}

#[test]
fn a_cancel_after_a_provisional_goes_at_once() {
    let script = Script {
        ring_after: Some(ms(10)),
        answer_after: Some((Duration::from_secs(10), StatusCode::OK)),
        cancel_after: ms(50),
    };
    let (caller, callee) = run(2, Impairments::perfect(), script);
    assert_eq!(
        events(&caller),
        [
            "180 INVITE",
            "cancel()",
            "sent CANCEL",
            "200 CANCEL",
            "487 INVITE",
            "sent ACK",
        ],
        "{caller:?}"
    );
    assert_eq!(at(&caller, "sent CANCEL"), 50);
    assert_eq!(callee, ["INVITE in", "cancelled"]);
}

#[test]
fn a_2xx_that_wins_the_race_with_the_cancel_is_acked_and_hung_up() {
    // The callee answers at 51 ms (its time 50 ms after the INVITE arrived at 1 ms); the
    // caller cancels at 51 ms, while the 200 is on the wire.
    let script = Script {
        ring_after: Some(ms(10)),
        answer_after: Some((ms(50), StatusCode::OK)),
        cancel_after: ms(51),
    };
    let (caller, callee) = run(3, Impairments::perfect(), script);
    assert_eq!(
        events(&caller),
        [
            "180 INVITE",
            "cancel()",
            "sent CANCEL",
            "200 INVITE",
            "ended CancelledAfterAnswer",
            "sent ACK",
            "sent BYE",
            "200 CANCEL",
        ],
        "{caller:?}"
    );
    assert_eq!(at(&caller, "sent BYE"), at(&caller, "200 INVITE"));
    assert_eq!(callee, ["INVITE in", "ACK in", "ended PeerBye"]);
}

#[test]
fn a_cancel_is_not_sent_when_a_failure_comes_before_any_provisional() {
    let script = Script {
        ring_after: None,
        answer_after: Some((ms(30), StatusCode::BUSY_HERE)),
        cancel_after: ms(5),
    };
    let (caller, callee) = run(4, Impairments::perfect(), script);
    assert_eq!(
        events(&caller),
        ["cancel()", "486 INVITE", "sent ACK"],
        "{caller:?}"
    );
    assert_eq!(callee, ["INVITE in"]);
}

#[test]
fn a_2xx_before_any_provisional_after_cancel_is_acked_and_hung_up_without_cancel() {
    let script = Script {
        ring_after: None,
        answer_after: Some((ms(30), StatusCode::OK)),
        cancel_after: ms(5),
    };
    let (caller, callee) = run(5, Impairments::perfect(), script);
    assert_eq!(
        events(&caller),
        [
            "cancel()",
            "200 INVITE",
            "ended CancelledAfterAnswer",
            "sent ACK",
            "sent BYE",
        ],
        "{caller:?}"
    );
    assert_eq!(callee, ["INVITE in", "ACK in", "ended PeerBye"]);
}

#[test]
fn cancel_is_idempotent_and_refused_once_the_final_response_is_in() {
    let t0 = Instant::now();
    let mut caller = ua(CALLER);
    let mut callee = ua(CALLEE);
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let deliver = |from: &mut UserAgent, to: &mut UserAgent, source: NodeId| {
        while let Some(t) = from.poll_transmit() {
            to.handle_datagram(t0, Protocol::Udp, addr(source), &t.bytes);
        }
    };
    // Asked twice before any answer: one (deferred) CANCEL, the same id.
    let cancelled = caller
        .invite(t0, &from, &to, addr(CALLEE), Protocol::Udp, None)
        .unwrap();
    let first = caller.cancel(t0, cancelled).unwrap();
    assert_eq!(caller.cancel(t0, cancelled).unwrap(), first);
    // A second call is declined before anyone cancels it.
    let declined = caller
        .invite(t0, &from, &to, addr(CALLEE), Protocol::Udp, None)
        .unwrap();
    deliver(&mut caller, &mut callee, CALLER);
    let incoming: Vec<TransactionId> = std::iter::from_fn(|| callee.poll_event())
        .filter_map(|e| match e {
            UaEvent::IncomingInvite { tx, .. } => Some(tx),
            _ => None,
        })
        .collect();
    assert_eq!(incoming.len(), 2);
    for tx in incoming {
        callee
            .answer(t0, tx, StatusCode::DECLINE, Vec::new(), None)
            .unwrap();
    }
    deliver(&mut callee, &mut caller, CALLEE);
    assert!(matches!(
        caller.cancel(t0, declined),
        Err(EndpointError::AlreadyFinal)
    ));
    assert_eq!(caller.cancel(t0, cancelled).unwrap(), first);
    // Nothing but the two ACKs went out: the deferred CANCEL was dropped by the 603.
    let sent: Vec<Bytes> = std::iter::from_fn(|| caller.poll_transmit())
        .map(|t| t.bytes)
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| b.starts_with(b"ACK ")));
}

#[test]
fn cancels_racing_answers_drain_to_zero_under_loss() {
    // The callee answers 150 ms after the INVITE arrives; the caller cancels anywhere from
    // before the 180 to after the 200, over a hostile network.
    let mut outcomes = [0u32; 4];
    for seed in 0..150 {
        let script = Script {
            ring_after: Some(ms(10)),
            answer_after: Some((ms(150), StatusCode::OK)),
            cancel_after: ms(seed * 7 % 300),
        };
        let (caller, _) = run(seed, Impairments::hostile(0.2), script);
        let events = events(&caller);
        if events.contains(&"ended CancelledAfterAnswer") {
            outcomes[0] += 1;
            let answered = events.iter().position(|e| *e == "200 INVITE").unwrap();
            assert_eq!(
                events.get(answered + 1),
                Some(&"ended CancelledAfterAnswer"),
                "seed {seed}: {events:?}"
            );
        } else if events.contains(&"487 INVITE") {
            outcomes[1] += 1;
        } else if events.contains(&"200 INVITE") {
            // Answered before cancel() was called: refused, and the caller hung up.
            assert!(
                events.contains(&"ended LocalBye") || events.contains(&"ended PeerBye"),
                "seed {seed}: {events:?}"
            );
            outcomes[3] += 1;
        } else {
            // The INVITE or every answer was lost: Timer B, or the CANCEL's guard.
            assert!(
                events.contains(&"INVITE timed out"),
                "seed {seed}: {events:?}"
            );
            outcomes[2] += 1;
        }
    }
    assert!(
        outcomes[0] > 10 && outcomes[1] > 30 && outcomes[3] > 0,
        "every race happens (answered after cancel, cancelled, timed out, answered before): {outcomes:?}"
    );
}
