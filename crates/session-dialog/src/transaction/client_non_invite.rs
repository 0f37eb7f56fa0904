//! Non-INVITE client transaction: RFC 3261 §17.1.2.
//!
//! ```text
//!          send request (Timer E if unreliable, Timer F)
//!   Trying ──1xx──► Proceeding ──200-699──► Completed ──Timer K──► Terminated
//!     └──200-699────────────────────────────────┘
//!   Trying/Proceeding ──Timer F──► Terminated (timed out)
//! ```

use super::{Action, ActionQueue, TimerConfig, Transport, Verdict};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The states of [`ClientNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent; retransmitting with a doubling interval capped at T2.
    Trying,
    /// A provisional response arrived; retransmitting every T2.
    Proceeding,
    /// A final response arrived; absorbing its retransmissions for T4.
    Completed,
    /// Over.
    Terminated,
}

/// A non-INVITE client transaction (OPTIONS, BYE, REFER, INFO, …).
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    config: TimerConfig,
    transport: Transport,
    request: Bytes,
    /// Timer E: next retransmission, with its current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer F (Trying, Proceeding) or K (Completed).
    state_timer: Option<Instant>,
    actions: ActionQueue,
}

impl ClientNonInvite {
    /// Starts the transaction at `now`: the request is queued for sending at once.
    pub fn new(now: Instant, request: Bytes, transport: Transport, config: TimerConfig) -> Self {
        let retransmit = (!transport.is_reliable()).then(|| (now + config.t1, config.t1));
        let mut actions = ActionQueue::default();
        actions.push_back(Action::Transmit(request.clone()));
        Self {
            state: ClientNonInviteState::Trying,
            config,
            transport,
            request,
            retransmit,
            state_timer: Some(now + config.timeout()),
            actions,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// When [`ClientNonInvite::handle_timeout`] must next be called.
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

    /// A response with `status` matched this transaction.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> Verdict {
        use ClientNonInviteState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                Verdict::PassUp
            }
            (Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.retransmit = None;
                // Only Timer K is left: the request is never sent again.
                self.request = Bytes::new();
                let wait = self.config.absorb_after_final(self.transport);
                if wait.is_zero() {
                    self.terminate();
                } else {
                    self.state_timer = Some(now + wait);
                }
                Verdict::PassUp
            }
            _ => Verdict::Absorbed,
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientNonInviteState::Terminated {
            self.state = ClientNonInviteState::Terminated;
            self.retransmit = None;
            self.state_timer = None;
            self.actions.push_back(Action::Terminated);
        }
    }

    /// Time has reached `now`; fires whichever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.retransmit
            && at <= now
        {
            // Timer E: doubling up to T2 while Trying; T2 once Proceeding (§17.1.2.2).
            let interval = match self.state {
                ClientNonInviteState::Proceeding => self.config.t2,
                _ => (interval * 2).min(self.config.t2),
            };
            self.retransmit = Some((now + interval, interval));
            self.actions
                .push_back(Action::Transmit(self.request.clone()));
        }
        if self.state_timer.is_some_and(|at| at <= now) {
            if matches!(
                self.state,
                ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
            ) {
                self.actions.push_back(Action::TimedOut);
            }
            self.terminate();
        }
    }

    /// The transport reported an error sending for this transaction (§17.1.4).
    pub fn handle_transport_error(&mut self) {
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            self.actions.push_back(Action::TimedOut);
            self.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(tx: &mut ClientNonInvite) -> Vec<Action> {
        std::iter::from_fn(|| tx.poll_action()).collect()
    }

    fn transmissions_until(tx: &mut ClientNonInvite, t0: Instant, end: Instant) -> Vec<Duration> {
        let mut times = Vec::new();
        while let Some(at) = tx.deadline().filter(|&at| at <= end) {
            tx.handle_timeout(at);
            times.extend(
                drain(tx)
                    .iter()
                    .filter(|a| matches!(a, Action::Transmit(_)))
                    .map(|_| at - t0),
            );
        }
        times
    }

    #[test]
    fn timer_e_doubles_up_to_t2_then_timer_f_times_out() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"OPTIONS"),
            Transport::Unreliable,
            TimerConfig::default(),
        );
        drain(&mut tx);
        let times = transmissions_until(&mut tx, t0, t0 + Duration::from_secs(31));
        // 0.5, 1.5, 3.5, 7.5 then every 4 s: 11.5, 15.5, 19.5, 23.5, 27.5 (31.5 is past the window).
        assert_eq!(
            times,
            [
                ms(500),
                ms(1500),
                ms(3500),
                ms(7500),
                ms(11500),
                ms(15500),
                ms(19500),
                ms(23500),
                ms(27500)
            ]
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        let actions = drain(&mut tx);
        assert_eq!(actions.last(), Some(&Action::Terminated));
        assert!(actions.contains(&Action::TimedOut));
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"BYE"),
            Transport::Unreliable,
            TimerConfig::default(),
        );
        drain(&mut tx);
        assert_eq!(tx.handle_response(t0 + ms(100), 100), Verdict::PassUp);
        let times = transmissions_until(&mut tx, t0, t0 + Duration::from_secs(10));
        // The pending Timer E (0.5 s) still fires, then the interval is T2.
        assert_eq!(times, [ms(500), ms(4500), ms(8500)]);
    }

    #[test]
    fn final_response_goes_up_once_and_timer_k_ends_it() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"BYE"),
            Transport::Unreliable,
            TimerConfig::default(),
        );
        drain(&mut tx);
        assert_eq!(tx.handle_response(t0 + ms(20), 200), Verdict::PassUp);
        assert_eq!(tx.handle_response(t0 + ms(520), 200), Verdict::Absorbed);
        assert_eq!(
            tx.deadline(),
            Some(t0 + ms(20) + Duration::from_secs(5)),
            "Timer K = T4"
        );
        tx.handle_timeout(t0 + Duration::from_secs(6));
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }

    #[test]
    fn reliable_transport_never_retransmits_and_ends_on_final() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            Bytes::from_static(b"INFO"),
            Transport::Reliable,
            TimerConfig::default(),
        );
        assert_eq!(drain(&mut tx).len(), 1);
        assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)));
        tx.handle_response(t0 + ms(5), 481);
        assert_eq!(drain(&mut tx), [Action::Terminated]);
    }
}
