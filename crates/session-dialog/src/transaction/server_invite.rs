//! INVITE server transaction: RFC 3261 §17.2.1 with the `Accepted` state of RFC 6026 §7.1.
//!
//! ```text
//!   Proceeding ──TU 300-699──► Completed ──ACK──► Confirmed ──Timer I──► Terminated
//!     │ (100 Trying after 200 ms)  │ Timer G retransmits, Timer H: no ACK → timed out
//!     └──TU 2xx──► Accepted ──Timer L──► Terminated
//! ```
//! In `Accepted` the transaction only absorbs INVITE retransmissions and passes ACKs up: the
//! dialog layer (the TU) retransmits the 2xx until its ACK arrives (§13.3.1.4).

use super::{Action, ActionQueue, TimerConfig, Transport, Verdict};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The states of [`ServerInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    /// The INVITE arrived; provisional responses may be sent.
    Proceeding,
    /// A final failure was sent; retransmitting it until the ACK.
    Completed,
    /// The ACK for the failure arrived; absorbing further ACKs for T4.
    Confirmed,
    /// A 2xx was sent (RFC 6026): INVITE retransmissions absorbed, ACKs passed up.
    Accepted,
    /// Over.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    config: TimerConfig,
    transport: Transport,
    last_response: Option<Bytes>,
    /// When to ask for a `100 Trying` if the TU is still silent.
    trying_at: Option<Instant>,
    /// Timer G: next retransmission of the failure, with its interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer H (Completed), I (Confirmed) or L (Accepted).
    state_timer: Option<Instant>,
    actions: ActionQueue,
}

impl ServerInvite {
    /// An INVITE arrived at `now` and created this transaction (hand it up).
    pub fn new(now: Instant, transport: Transport, config: TimerConfig) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            config,
            transport,
            last_response: None,
            trying_at: Some(now + config.trying_delay),
            retransmit: None,
            state_timer: None,
            actions: ActionQueue::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// When [`ServerInvite::handle_timeout`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        super::earliest([
            self.trying_at,
            self.retransmit.map(|(at, _)| at),
            self.state_timer,
        ])
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Frees the action queue's buffer once it is drained: most of a transaction's life is
    /// spent waiting for a timer with nothing queued.
    pub(crate) fn release_buffers(&mut self) {
        self.actions.release();
    }

    /// The INVITE arrived again: re-send the last provisional or final response.
    pub fn handle_invite_retransmission(&mut self) -> Verdict {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) && let Some(response) = &self.last_response
        {
            self.actions.push_back(Action::Transmit(response.clone()));
        }
        Verdict::Absorbed
    }

    /// An ACK matched this transaction (same branch). For a failure it confirms the
    /// transaction; in `Accepted` it belongs to the 2xx and goes up to the dialog.
    pub fn handle_ack(&mut self, now: Instant) -> Verdict {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.retransmit = None;
                // Confirmed only absorbs ACKs: the failure is never sent again.
                self.last_response = None;
                let wait = self.config.absorb_after_final(self.transport);
                if wait.is_zero() {
                    self.terminate();
                } else {
                    self.state_timer = Some(now + wait);
                }
                Verdict::Absorbed
            }
            ServerInviteState::Accepted => Verdict::PassUp,
            _ => Verdict::Absorbed,
        }
    }

    /// The TU answers with `status`; `response` are its bytes. Returns `false` (and sends
    /// nothing) when the transaction can no longer send that response.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        use ServerInviteState::*;
        match (self.state, status) {
            (Proceeding, 100..=199) => {}
            (Proceeding, 200..=299) => {
                self.state = Accepted;
                self.state_timer = Some(now + self.config.timeout());
                self.trying_at = None;
                // The TU retransmits the 2xx itself (§13.3.1.4); INVITE retransmissions in
                // Accepted are absorbed, so the transaction keeps no copy.
                self.actions.push_back(Action::Transmit(response));
                self.last_response = None;
                return true;
            }
            // RFC 6026 §7.1: the TU retransmits its 2xx through the Accepted transaction.
            (Accepted, 200..=299) => {
                self.actions.push_back(Action::Transmit(response));
                return true;
            }
            (Proceeding, 300..=699) => {
                self.state = Completed;
                if !self.transport.is_reliable() {
                    self.retransmit = Some((now + self.config.t1, self.config.t1));
                }
                self.state_timer = Some(now + self.config.timeout());
            }
            _ => return false,
        }
        self.trying_at = None;
        self.actions.push_back(Action::Transmit(response.clone()));
        self.last_response = Some(response);
        true
    }

    fn terminate(&mut self) {
        if self.state != ServerInviteState::Terminated {
            self.state = ServerInviteState::Terminated;
            self.trying_at = None;
            self.retransmit = None;
            self.state_timer = None;
            self.last_response = None;
            self.actions.push_back(Action::Terminated);
        }
    }

    /// Time has reached `now`; fires whichever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.trying_at.is_some_and(|at| at <= now) {
            self.trying_at = None;
            self.actions.push_back(Action::SendTrying);
        }
        if let Some((at, interval)) = self.retransmit
            && at <= now
            && let Some(response) = &self.last_response
        {
            // Timer G doubles up to T2 (§17.2.1).
            let interval = (interval * 2).min(self.config.t2);
            self.retransmit = Some((now + interval, interval));
            self.actions.push_back(Action::Transmit(response.clone()));
        }
        if self.state_timer.is_some_and(|at| at <= now) {
            if self.state == ServerInviteState::Completed {
                // Timer H: the ACK never came.
                self.actions.push_back(Action::TimedOut);
            }
            self.terminate();
        }
    }

    /// The transport failed to send a response (§17.2.4).
    pub fn handle_transport_error(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(tx: &mut ServerInvite) -> Vec<Action> {
        std::iter::from_fn(|| tx.poll_action()).collect()
    }

    fn bytes(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn sends_trying_only_when_the_tu_is_slow() {
        let t0 = Instant::now();
        let mut slow = ServerInvite::new(t0, Transport::Unreliable, TimerConfig::default());
        assert_eq!(slow.deadline(), Some(t0 + ms(200)));
        slow.handle_timeout(t0 + ms(200));
        assert_eq!(drain(&mut slow), [Action::SendTrying]);
        assert!(slow.send_response(t0 + ms(201), 100, bytes("100")));
        assert_eq!(slow.deadline(), None);

        let mut fast = ServerInvite::new(t0, Transport::Unreliable, TimerConfig::default());
        fast.send_response(t0 + ms(10), 180, bytes("180"));
        assert_eq!(
            fast.deadline(),
            None,
            "a TU answer cancels the 100 Trying timer"
        );
    }

    #[test]
    fn failure_is_retransmitted_by_timer_g_until_ack_then_absorbs_for_t4() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, Transport::Unreliable, TimerConfig::default());
        tx.send_response(t0, 486, bytes("486"));
        drain(&mut tx);
        let mut times = Vec::new();
        while let Some(at) = tx.deadline().filter(|&at| at <= t0 + ms(12_000)) {
            tx.handle_timeout(at);
            times.extend(drain(&mut tx).iter().map(|_| at - t0));
        }
        assert_eq!(times, [ms(500), ms(1500), ms(3500), ms(7500), ms(11500)]);
        assert_eq!(tx.handle_ack(t0 + ms(12_000)), Verdict::Absorbed);
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        assert_eq!(tx.handle_ack(t0 + ms(12_100)), Verdict::Absorbed);
        assert_eq!(tx.deadline(), Some(t0 + ms(17_000)), "Timer I = T4");
        tx.handle_timeout(t0 + ms(17_000));
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }

    #[test]
    fn timer_h_reports_a_missing_ack() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, Transport::Reliable, TimerConfig::default());
        tx.send_response(t0, 404, bytes("404"));
        drain(&mut tx);
        assert_eq!(
            tx.deadline(),
            Some(t0 + Duration::from_secs(32)),
            "reliable: no Timer G, only H"
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(&mut tx), [Action::TimedOut, Action::Terminated]);
    }

    #[test]
    fn invite_retransmission_gets_the_last_response() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, Transport::Unreliable, TimerConfig::default());
        assert_eq!(tx.handle_invite_retransmission(), Verdict::Absorbed);
        assert!(drain(&mut tx).is_empty());
        tx.send_response(t0, 180, bytes("180"));
        tx.handle_invite_retransmission();
        assert_eq!(
            drain(&mut tx),
            [
                Action::Transmit(bytes("180")),
                Action::Transmit(bytes("180"))
            ]
        );
    }

    #[test]
    fn accepted_absorbs_invites_passes_acks_and_ends_by_timer_l() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, Transport::Unreliable, TimerConfig::default());
        tx.send_response(t0, 200, bytes("200"));
        assert_eq!(drain(&mut tx), [Action::Transmit(bytes("200"))]);
        assert_eq!(tx.handle_invite_retransmission(), Verdict::Absorbed);
        assert!(
            drain(&mut tx).is_empty(),
            "the dialog layer, not the transaction, resends 2xx"
        );
        assert_eq!(tx.handle_ack(t0 + ms(5)), Verdict::PassUp);
        assert!(
            tx.send_response(t0 + ms(500), 200, bytes("200")),
            "TU retransmission of the 2xx"
        );
        assert!(!tx.send_response(t0 + ms(500), 486, bytes("486")));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(
            drain(&mut tx),
            [Action::Transmit(bytes("200")), Action::Terminated]
        );
    }
}
