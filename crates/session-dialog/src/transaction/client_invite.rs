//! INVITE client transaction: RFC 3261 §17.1.1 with the `Accepted` state of RFC 6026 §7.2.
//!
//! ```text
//!            send INVITE (Timer A if unreliable, Timer B)
//!   Calling ──1xx──► Proceeding ──300-699──► Completed ──Timer D──► Terminated
//!      │  └─300-699 (send ACK)───────────────────┘
//!      ├──2xx──► Accepted ──Timer M──► Terminated      (2xx and retransmissions go up)
//!      └──Timer B──► Terminated (timed out)
//! ```

use super::{Action, ActionQueue, TimerConfig, Transport, Verdict};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The states of [`ClientInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing heard yet; retransmitting on an unreliable transport.
    Calling,
    /// A provisional response arrived; no more retransmissions.
    Proceeding,
    /// A final failure arrived and was ACKed; absorbing its retransmissions.
    Completed,
    /// A 2xx arrived; further 2xx (from retransmission or forking) still go up (RFC 6026).
    Accepted,
    /// Over.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    config: TimerConfig,
    transport: Transport,
    /// The INVITE, for Timer A; released once the transaction leaves `Calling`.
    request: Bytes,
    ack: Option<Bytes>,
    /// Timer A: next retransmission, with its current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer B (Calling), D (Completed) or M (Accepted): when the current state ends.
    state_timer: Option<Instant>,
    actions: ActionQueue,
}

impl ClientInvite {
    /// Starts the transaction at `now`: the INVITE is queued for sending at once.
    pub fn new(now: Instant, request: Bytes, transport: Transport, config: TimerConfig) -> Self {
        let retransmit = (!transport.is_reliable()).then(|| (now + config.t1, config.t1));
        let mut actions = ActionQueue::default();
        actions.push_back(Action::Transmit(request.clone()));
        Self {
            state: ClientInviteState::Calling,
            config,
            transport,
            request,
            ack: None,
            retransmit,
            state_timer: Some(now + config.timeout()),
            actions,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// When [`ClientInvite::handle_timeout`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        super::earliest([self.retransmit.map(|(at, _)| at), self.state_timer])
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

    /// A response with `status` matched this transaction. For a 300–699 response `make_ack`
    /// is called (once per transaction) for the ACK of §17.1.1.3, which the transaction then
    /// sends and re-sends for every retransmission of the failure.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
        make_ack: impl FnOnce() -> Bytes,
    ) -> Verdict {
        use ClientInviteState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.retransmit = None;
                self.request = Bytes::new();
                // Timer B only guards the Calling state (§17.1.1.2); once a provisional arrives
                // the TU decides how long to wait (CANCEL, Expires).
                self.state_timer = None;
                Verdict::PassUp
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.retransmit = None;
                self.request = Bytes::new();
                self.state_timer = Some(now + self.config.timeout());
                Verdict::PassUp
            }
            (Calling | Proceeding, 300..=699) => {
                self.state = Completed;
                self.retransmit = None;
                self.request = Bytes::new();
                let ack = make_ack();
                self.actions.push_back(Action::Transmit(ack.clone()));
                self.ack = Some(ack);
                let wait = self.config.timer_d(self.transport);
                self.enter_wait(now, wait);
                Verdict::PassUp
            }
            (Completed, 300..=699) => {
                // A retransmitted failure: our ACK was lost; send it again.
                if let Some(ack) = &self.ack {
                    self.actions.push_back(Action::Transmit(ack.clone()));
                }
                Verdict::Absorbed
            }
            // RFC 6026: every 2xx goes up, so the TU ACKs retransmissions and forked answers.
            (Accepted, 200..=299) => Verdict::PassUp,
            _ => Verdict::Absorbed,
        }
    }

    fn enter_wait(&mut self, now: Instant, wait: Duration) {
        if wait.is_zero() {
            self.terminate();
        } else {
            self.state_timer = Some(now + wait);
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientInviteState::Terminated {
            self.state = ClientInviteState::Terminated;
            self.retransmit = None;
            self.state_timer = None;
            self.actions.push_back(Action::Terminated);
        }
    }

    /// A CANCEL for this INVITE was sent at `now` (RFC 3261 §9.1). In `Proceeding` no timer
    /// guards the transaction any more, so one of 64·T1 is armed: if no final response arrives
    /// by then, the transaction times out and ends ("the client SHOULD then consider the
    /// original transaction cancelled and destroy the client transaction").
    pub fn handle_cancel_sent(&mut self, now: Instant) {
        if self.state == ClientInviteState::Proceeding && self.state_timer.is_none() {
            self.state_timer = Some(now + self.config.timeout());
        }
    }

    /// Time has reached `now`; fires whichever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.retransmit
            && at <= now
            && self.state == ClientInviteState::Calling
        {
            // Timer A doubles without a cap (§17.1.1.2); Timer B ends it.
            let interval = interval * 2;
            self.retransmit = Some((now + interval, interval));
            self.actions
                .push_back(Action::Transmit(self.request.clone()));
        }
        if self.state_timer.is_some_and(|at| at <= now) {
            // Timer B in Calling; in Proceeding only the CANCEL guard is ever armed.
            if matches!(
                self.state,
                ClientInviteState::Calling | ClientInviteState::Proceeding
            ) {
                self.actions.push_back(Action::TimedOut);
            }
            self.terminate();
        }
    }

    /// The transport reported an error sending for this transaction (§17.1.4): it ends, and
    /// before a final response it reports [`Action::TimedOut`] (the TU treats it as 503,
    /// §8.1.3.1). After a final response (its ACK could not be sent) it only ends.
    pub fn handle_transport_error(&mut self) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.actions.push_back(Action::TimedOut);
        }
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(tx: &mut ClientInvite) -> Vec<Action> {
        std::iter::from_fn(|| tx.poll_action()).collect()
    }

    fn invite() -> Bytes {
        Bytes::from_static(b"INVITE")
    }

    /// Runs timers only, until `end`, returning when each transmission happened.
    fn retransmission_times(tx: &mut ClientInvite, t0: Instant, end: Instant) -> Vec<Duration> {
        let mut times = Vec::new();
        while let Some(at) = tx.deadline().filter(|&at| at <= end) {
            tx.handle_timeout(at);
            for action in drain(tx) {
                if matches!(action, Action::Transmit(_)) {
                    times.push(at - t0);
                }
            }
        }
        times
    }

    #[test]
    fn unreliable_calling_retransmits_with_timer_a_doubling_until_timer_b() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        assert_eq!(drain(&mut tx), [Action::Transmit(invite())]);
        let times = retransmission_times(&mut tx, t0, t0 + Duration::from_secs(40));
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six retransmissions before Timer B at 32 s.
        assert_eq!(
            times,
            [ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
        );
        assert_eq!(tx.state(), ClientInviteState::Terminated);
        assert_eq!(tx.deadline(), None);
    }

    #[test]
    fn timer_b_reports_a_timeout() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Reliable, TimerConfig::default());
        drain(&mut tx);
        assert_eq!(
            tx.deadline(),
            Some(t0 + Duration::from_secs(32)),
            "reliable: Timer B only"
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(&mut tx), [Action::TimedOut, Action::Terminated]);
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        assert_eq!(
            tx.handle_response(t0 + ms(100), 180, Bytes::new),
            Verdict::PassUp
        );
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(tx.deadline(), None);
        assert_eq!(
            tx.handle_response(t0 + ms(200), 183, Bytes::new),
            Verdict::PassUp
        );
    }

    #[test]
    fn failure_is_acked_once_built_and_resent_for_each_retransmission() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        let mut built = 0;
        let mut make_ack = || {
            built += 1;
            Bytes::from_static(b"ACK")
        };
        assert_eq!(
            tx.handle_response(t0 + ms(50), 486, &mut make_ack),
            Verdict::PassUp
        );
        assert_eq!(
            drain(&mut tx),
            [Action::Transmit(Bytes::from_static(b"ACK"))]
        );
        assert_eq!(
            tx.handle_response(t0 + ms(600), 486, &mut make_ack),
            Verdict::Absorbed
        );
        assert_eq!(
            drain(&mut tx),
            [Action::Transmit(Bytes::from_static(b"ACK"))]
        );
        assert_eq!(built, 1);
        // Timer D: 32 s, then gone, with no timeout reported.
        assert_eq!(tx.deadline(), Some(t0 + ms(50) + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }

    #[test]
    fn reliable_failure_terminates_at_once() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Reliable, TimerConfig::default());
        drain(&mut tx);
        tx.handle_response(t0, 603, || Bytes::from_static(b"ACK"));
        assert_eq!(
            drain(&mut tx),
            [
                Action::Transmit(Bytes::from_static(b"ACK")),
                Action::Terminated
            ]
        );
    }

    #[test]
    fn accepted_passes_every_2xx_up_until_timer_m() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        assert_eq!(
            tx.handle_response(t0 + ms(10), 200, Bytes::new),
            Verdict::PassUp
        );
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(
            tx.handle_response(t0 + ms(510), 200, Bytes::new),
            Verdict::PassUp
        );
        assert_eq!(
            tx.handle_response(t0 + ms(520), 180, Bytes::new),
            Verdict::Absorbed
        );
        assert_eq!(
            tx.handle_response(t0 + ms(530), 486, Bytes::new),
            Verdict::Absorbed
        );
        assert!(
            drain(&mut tx).is_empty(),
            "no ACK from the transaction for a 2xx"
        );
        tx.handle_timeout(t0 + ms(10) + Duration::from_secs(32));
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }

    #[test]
    fn a_cancel_without_final_response_ends_the_transaction_after_64_t1() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        tx.handle_response(t0 + ms(100), 180, Bytes::new);
        assert_eq!(tx.deadline(), None, "nothing guards Proceeding by itself");
        tx.handle_cancel_sent(t0 + ms(200));
        assert_eq!(tx.deadline(), Some(t0 + ms(200) + Duration::from_secs(32)));
        tx.handle_timeout(t0 + ms(200) + Duration::from_secs(32));
        assert_eq!(drain(&mut tx), [Action::TimedOut, Action::Terminated]);
    }

    #[test]
    fn a_cancel_does_not_change_timer_b_in_calling() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Reliable, TimerConfig::default());
        drain(&mut tx);
        tx.handle_cancel_sent(t0 + ms(300));
        assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)));
    }

    #[test]
    fn transport_error_times_out_once() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        tx.handle_transport_error();
        tx.handle_transport_error();
        assert_eq!(drain(&mut tx), [Action::TimedOut, Action::Terminated]);
    }

    #[test]
    fn transport_error_after_a_final_response_only_ends() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(t0, invite(), Transport::Unreliable, TimerConfig::default());
        drain(&mut tx);
        tx.handle_response(t0, 486, || Bytes::from_static(b"ACK"));
        drain(&mut tx);
        tx.handle_transport_error();
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }
}
