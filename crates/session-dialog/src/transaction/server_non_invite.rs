//! Non-INVITE server transaction: RFC 3261 §17.2.2.
//!
//! ```text
//!   Trying ──TU 1xx──► Proceeding ──TU 200-699──► Completed ──Timer J──► Terminated
//!     └──TU 200-699──────────────────────┘
//! ```
//! Request retransmissions are absorbed in Trying and answered with the last response later.

use super::{Action, ActionQueue, TimerConfig, Transport, Verdict};
use bytes::Bytes;
use std::time::Instant;

/// The states of [`ServerNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request arrived; the TU has not answered yet.
    Trying,
    /// The TU sent a provisional response.
    Proceeding,
    /// The TU sent the final response; it is re-sent for each retransmitted request.
    Completed,
    /// Over.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    config: TimerConfig,
    transport: Transport,
    last_response: Option<Bytes>,
    /// Timer J.
    timer_j: Option<Instant>,
    actions: ActionQueue,
}

impl ServerNonInvite {
    /// A request arrived and created this transaction (hand the request up).
    pub fn new(transport: Transport, config: TimerConfig) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            config,
            transport,
            last_response: None,
            timer_j: None,
            actions: ActionQueue::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// When [`ServerNonInvite::handle_timeout`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer_j
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

    /// The request arrived again (a retransmission).
    pub fn handle_request(&mut self) -> Verdict {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) && let Some(response) = &self.last_response
        {
            self.actions.push_back(Action::Transmit(response.clone()));
        }
        Verdict::Absorbed
    }

    /// The TU answers with `status`; `response` are its bytes. A response after the final one
    /// is ignored (returns `false`), as §17.2.2 requires.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        use ServerNonInviteState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => self.state = Proceeding,
            (Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                let wait = self.config.timer_j(self.transport);
                self.timer_j = Some(now + wait);
            }
            _ => return false,
        }
        self.actions.push_back(Action::Transmit(response.clone()));
        self.last_response = Some(response);
        if self.timer_j.is_some_and(|at| at <= now) {
            self.terminate();
        }
        true
    }

    fn terminate(&mut self) {
        if self.state != ServerNonInviteState::Terminated {
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
            self.last_response = None;
            self.actions.push_back(Action::Terminated);
        }
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_j.is_some_and(|at| at <= now) {
            self.terminate();
        }
    }

    /// The transport failed to send a response (§17.2.4): the transaction is over.
    pub fn handle_transport_error(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn drain(tx: &mut ServerNonInvite) -> Vec<Action> {
        std::iter::from_fn(|| tx.poll_action()).collect()
    }

    #[test]
    fn retransmissions_get_the_last_response() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(Transport::Unreliable, TimerConfig::default());
        assert_eq!(tx.handle_request(), Verdict::Absorbed);
        assert!(drain(&mut tx).is_empty(), "nothing to resend in Trying");
        assert!(tx.send_response(t0, 100, Bytes::from_static(b"100")));
        tx.handle_request();
        assert_eq!(
            drain(&mut tx),
            [
                Action::Transmit(Bytes::from_static(b"100")),
                Action::Transmit(Bytes::from_static(b"100"))
            ]
        );
        assert!(tx.send_response(t0, 200, Bytes::from_static(b"200")));
        tx.handle_request();
        assert_eq!(
            drain(&mut tx),
            [
                Action::Transmit(Bytes::from_static(b"200")),
                Action::Transmit(Bytes::from_static(b"200"))
            ]
        );
        assert!(
            !tx.send_response(t0, 500, Bytes::from_static(b"500")),
            "a second final is refused"
        );
        assert_eq!(
            tx.deadline(),
            Some(t0 + Duration::from_secs(32)),
            "Timer J = 64·T1"
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(&mut tx), [Action::Terminated]);
        assert_eq!(tx.state(), ServerNonInviteState::Terminated);
    }

    #[test]
    fn reliable_transport_terminates_on_final() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(Transport::Reliable, TimerConfig::default());
        tx.send_response(t0, 200, Bytes::from_static(b"200"));
        assert_eq!(
            drain(&mut tx),
            [
                Action::Transmit(Bytes::from_static(b"200")),
                Action::Terminated
            ]
        );
    }
}
