//! Transaction pairs over a seeded lossy network in virtual time: for many seeds, every
//! transaction either completes or ends by the RFC's timer, and no state is left behind.

use bytes::Bytes;
use session_dialog::transaction::{
    Action, ClientInvite, ClientNonInvite, ServerInvite, ServerInviteState, ServerNonInvite,
    TimerConfig, Transport, Verdict,
};
use session_simnet::{Endpoint, Impairments, NodeId, Simulation, Transmit};
use std::time::{Duration, Instant};

const SERVER: NodeId = NodeId(1);
const CLIENT: NodeId = NodeId(0);

fn status_of(payload: &Bytes) -> Option<u16> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

/// Drains a transaction's actions into the endpoint's outbox; returns what else happened.
macro_rules! drain_actions {
    ($tx:expr, $out:expr, $to:expr, $timed_out:expr, $terminated:expr) => {
        while let Some(action) = $tx.poll_action() {
            match action {
                Action::Transmit(bytes) => $out.push(Transmit {
                    to: $to,
                    payload: bytes,
                }),
                Action::TimedOut => $timed_out = true,
                Action::Terminated => $terminated = true,
                Action::SendTrying => {}
            }
        }
    };
}

struct NonInviteClient {
    tx: Option<ClientNonInvite>,
    finals_seen: u32,
    timed_out: bool,
    terminated: bool,
    out: Vec<Transmit<Bytes>>,
}

impl Endpoint<Bytes> for NonInviteClient {
    fn handle_datagram(&mut self, now: Instant, _from: NodeId, payload: Bytes) {
        let Some(tx) = self.tx.as_mut() else { return };
        if let Some(status) = status_of(&payload)
            && tx.handle_response(now, status) == Verdict::PassUp
            && status >= 200
        {
            self.finals_seen += 1;
        }
        drain_actions!(tx, self.out, SERVER, self.timed_out, self.terminated);
    }
    fn handle_timeout(&mut self, now: Instant) {
        let tx = self.tx.get_or_insert_with(|| {
            ClientNonInvite::new(
                now,
                Bytes::from_static(b"OPTIONS"),
                Transport::Unreliable,
                TimerConfig::default(),
            )
        });
        tx.handle_timeout(now);
        drain_actions!(tx, self.out, SERVER, self.timed_out, self.terminated);
    }
    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        self.out.pop()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.tx.as_ref()?.deadline()
    }
}

struct NonInviteServer {
    tx: Option<ServerNonInvite>,
    requests_up: u32,
    /// A non-INVITE server transaction has no timeout to report; this must stay false.
    timed_out: bool,
    terminated: bool,
    out: Vec<Transmit<Bytes>>,
}

impl Endpoint<Bytes> for NonInviteServer {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, _payload: Bytes) {
        match self.tx.as_mut() {
            Some(tx) => {
                assert_eq!(tx.handle_request(), Verdict::Absorbed);
            }
            None if !self.terminated => {
                // A new transaction: the TU answers at once with 200.
                self.requests_up += 1;
                let tx = self.tx.insert(ServerNonInvite::new(
                    Transport::Unreliable,
                    TimerConfig::default(),
                ));
                tx.send_response(now, 200, Bytes::from_static(b"200"));
            }
            None => return,
        }
        if let Some(tx) = self.tx.as_mut() {
            drain_actions!(tx, self.out, from, self.timed_out, self.terminated);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(tx) = self.tx.as_mut() {
            tx.handle_timeout(now);
            drain_actions!(tx, self.out, CLIENT, self.timed_out, self.terminated);
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        self.out.pop()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.tx.as_ref().filter(|_| !self.terminated)?.deadline()
    }
}

#[test]
fn non_invite_transactions_complete_or_time_out_under_30_percent_loss() {
    let mut completed = 0;
    for seed in 0..300 {
        let mut sim = Simulation::new(seed, Impairments::hostile(0.3));
        let client = sim.add(NonInviteClient {
            tx: None,
            finals_seen: 0,
            timed_out: false,
            terminated: false,
            out: Vec::new(),
        });
        sim.add(NonInviteServer {
            tx: None,
            requests_up: 0,
            timed_out: false,
            terminated: false,
            out: Vec::new(),
        });
        sim.wake(client);
        sim.run_for(Duration::from_secs(120));
        assert!(sim.is_idle(), "seed {seed}: state left behind");
        let c = sim.endpoint::<NonInviteClient>(client).unwrap();
        let s = sim.endpoint::<NonInviteServer>(SERVER).unwrap();
        assert!(c.terminated, "seed {seed}: client transaction still alive");
        assert!(
            s.requests_up <= 1,
            "seed {seed}: a retransmission reached the TU"
        );
        assert!(!s.timed_out, "seed {seed}");
        assert!(
            s.tx.is_none() || s.terminated,
            "seed {seed}: server transaction still alive"
        );
        // Exactly one of: one final response went up, or Timer F fired.
        assert_eq!(u32::from(c.timed_out) + c.finals_seen, 1, "seed {seed}");
        completed += c.finals_seen;
    }
    // With ~11 request transmissions in 32 s, even 30% loss plus bursts almost never defeats it.
    assert!(completed >= 295, "only {completed} of 300 completed");
}

struct InviteClient {
    tx: Option<ClientInvite>,
    final_status: Option<u16>,
    acks_built: u32,
    timed_out: bool,
    terminated: bool,
    out: Vec<Transmit<Bytes>>,
}

impl Endpoint<Bytes> for InviteClient {
    fn handle_datagram(&mut self, now: Instant, _from: NodeId, payload: Bytes) {
        let Some(tx) = self.tx.as_mut() else { return };
        let Some(status) = status_of(&payload) else {
            return;
        };
        let acks_built = &mut self.acks_built;
        let verdict = tx.handle_response(now, status, || {
            *acks_built += 1;
            Bytes::from_static(b"ACK")
        });
        if verdict == Verdict::PassUp && status >= 200 {
            assert_eq!(
                self.final_status, None,
                "a retransmitted failure reached the TU"
            );
            self.final_status = Some(status);
        }
        drain_actions!(tx, self.out, SERVER, self.timed_out, self.terminated);
    }
    fn handle_timeout(&mut self, now: Instant) {
        let tx = self.tx.get_or_insert_with(|| {
            ClientInvite::new(
                now,
                Bytes::from_static(b"INVITE"),
                Transport::Unreliable,
                TimerConfig::default(),
            )
        });
        tx.handle_timeout(now);
        drain_actions!(tx, self.out, SERVER, self.timed_out, self.terminated);
    }
    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        self.out.pop()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.tx.as_ref()?.deadline()
    }
}

struct InviteServer {
    tx: Option<ServerInvite>,
    invites_up: u32,
    ack_timed_out: bool,
    terminated: bool,
    out: Vec<Transmit<Bytes>>,
}

impl Endpoint<Bytes> for InviteServer {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, payload: Bytes) {
        match (&payload[..], self.tx.as_mut()) {
            (b"INVITE", None) if !self.terminated => {
                self.invites_up += 1;
                let tx = self.tx.insert(ServerInvite::new(
                    now,
                    Transport::Unreliable,
                    TimerConfig::default(),
                ));
                tx.send_response(now, 180, Bytes::from_static(b"180"));
                tx.send_response(now, 486, Bytes::from_static(b"486"));
            }
            (b"INVITE", Some(tx)) => {
                tx.handle_invite_retransmission();
            }
            (b"ACK", Some(tx)) => {
                assert_eq!(
                    tx.handle_ack(now),
                    Verdict::Absorbed,
                    "the ACK of a failure stays in the transaction"
                );
            }
            _ => return,
        }
        if let Some(tx) = self.tx.as_mut() {
            drain_actions!(tx, self.out, from, self.ack_timed_out, self.terminated);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(tx) = self.tx.as_mut() {
            tx.handle_timeout(now);
            drain_actions!(tx, self.out, CLIENT, self.ack_timed_out, self.terminated);
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit<Bytes>> {
        self.out.pop()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.tx.as_ref().filter(|_| !self.terminated)?.deadline()
    }
}

#[test]
fn invite_failure_and_its_ack_converge_under_30_percent_loss() {
    let mut confirmed = 0;
    for seed in 0..300 {
        let mut sim = Simulation::new(seed, Impairments::hostile(0.3));
        let client = sim.add(InviteClient {
            tx: None,
            final_status: None,
            acks_built: 0,
            timed_out: false,
            terminated: false,
            out: Vec::new(),
        });
        sim.add(InviteServer {
            tx: None,
            invites_up: 0,
            ack_timed_out: false,
            terminated: false,
            out: Vec::new(),
        });
        sim.wake(client);
        sim.run_for(Duration::from_secs(300));
        assert!(sim.is_idle(), "seed {seed}: state left behind");
        let c = sim.endpoint::<InviteClient>(client).unwrap();
        let s = sim.endpoint::<InviteServer>(SERVER).unwrap();
        assert!(c.terminated, "seed {seed}: client alive");
        assert!(
            c.acks_built <= 1,
            "seed {seed}: ACK built {} times",
            c.acks_built
        );
        assert!(
            s.invites_up <= 1,
            "seed {seed}: an INVITE retransmission reached the TU"
        );
        match c.final_status {
            Some(status) => assert_eq!(status, 486, "seed {seed}"),
            None => assert!(c.timed_out, "seed {seed}: no final and no Timer B"),
        }
        if s.invites_up == 1 {
            assert!(s.terminated, "seed {seed}: server alive");
            let state = s.tx.as_ref().map(ServerInvite::state);
            assert_eq!(state, Some(ServerInviteState::Terminated));
            if !s.ack_timed_out {
                confirmed += 1;
            }
        }
    }
    // Timer G resends the 486 ~7 times before Timer H; the ACK rides on each resend.
    assert!(confirmed >= 290, "only {confirmed} of 300 saw their ACK");
}
