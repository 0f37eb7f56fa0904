//! Call states and the one function that decides which changes between them are legal.
//!
//! ```text
//!  Initiating ──► Ringing ──► Active ◄──► OnHold
//!      │            │           │  ▲        │
//!      │            │           ▼  │        │
//!      │            │       Transferring ◄──┘
//!      │            │           │
//!      ├──► Cancelled ◄─┘        ▼
//!      └──────────────► Terminating ──► Terminated
//!  (any live state) ──► Failed(reason)
//! ```

use crate::StatusCode;
use std::fmt;

/// Who started the call, seen from this side.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// The peer called us (we are the UAS of the initial INVITE).
    Inbound,
    /// We called the peer (we are the UAC of the initial INVITE).
    Outbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        })
    }
}

/// Why a session failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum FailureReason {
    /// The peer (or a proxy) answered the INVITE with this final non-2xx status.
    Rejected(StatusCode),
    /// No answer in time: Timer B/F expired, no ACK for our 2xx (Timer H), or a session timer
    /// (RFC 4028) ran out.
    Timeout,
    /// The transport failed (connection refused or reset, ICMP unreachable).
    Transport,
    /// SDP offer/answer found no common codec or an unusable description (488).
    MediaNegotiation,
    /// A local limit refused the session (the peer was told 503).
    ResourceExhausted,
    /// The peer broke the protocol badly enough that the session could not continue.
    ProtocolError,
    /// No RTP from the peer for longer than the media timeout: it vanished (a crash, a lost
    /// network); the call was ended with BYE.
    MediaTimeout,
    /// The session was stuck waiting (see [`StuckOn`]) past the limit the application set,
    /// and was ended by the manager's stuck-session limits.
    Stuck(StuckOn),
}

/// What a session was stuck waiting for when the manager ended it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum StuckOn {
    /// A final response to the INVITE: ours (an incoming call the application never
    /// answered; the caller got 480) or the peer's (an outgoing call ringing too long; it
    /// was cancelled).
    FinalResponse,
    /// The ACK for our 2xx (the call was ended with BYE).
    Ack,
}

impl fmt::Display for StuckOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FinalResponse => "a final response",
            Self::Ack => "an ACK",
        })
    }
}

impl FailureReason {
    /// The SIP status that best describes the failure, if one applies.
    pub fn status(self) -> Option<StatusCode> {
        match self {
            Self::Rejected(code) => Some(code),
            Self::Timeout => Some(StatusCode::REQUEST_TIMEOUT),
            Self::Transport => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::MediaNegotiation => Some(StatusCode::NOT_ACCEPTABLE_HERE),
            Self::ResourceExhausted => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::Stuck(StuckOn::FinalResponse) => Some(StatusCode::TEMPORARILY_UNAVAILABLE),
            Self::ProtocolError | Self::MediaTimeout | Self::Stuck(_) => None,
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(code) => write!(f, "rejected with {code}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Transport => f.write_str("transport failure"),
            Self::MediaNegotiation => f.write_str("media negotiation failed"),
            Self::ResourceExhausted => f.write_str("resources exhausted"),
            Self::ProtocolError => f.write_str("protocol error"),
            Self::MediaTimeout => f.write_str("no media from the peer"),
            Self::Stuck(on) => write!(f, "stuck waiting for {on}"),
        }
    }
}

/// The state of one call session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum CallState {
    /// Created; the INVITE is being sent or has just arrived, no provisional response yet.
    Initiating,
    /// A provisional response (180/183) was sent or received: ringing or early media.
    Ringing,
    /// Answered and confirmed: media flows both ways.
    Active,
    /// Media is on hold (either side sent `sendonly`/`inactive`).
    OnHold,
    /// A transfer (REFER) is in progress; the call is still up.
    Transferring,
    /// BYE sent or received; waiting for the transaction to end.
    Terminating,
    /// Ended normally after being answered. Final.
    Terminated,
    /// Ended before an answer by CANCEL (either side). Final.
    Cancelled,
    /// Ended by a failure. Final.
    Failed(FailureReason),
}

impl CallState {
    /// Whether the session is over: no transition leaves a final state.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Terminated | Self::Cancelled | Self::Failed(_))
    }

    /// Whether the call has been answered and is not over yet.
    pub const fn is_established(self) -> bool {
        matches!(self, Self::Active | Self::OnHold | Self::Transferring)
    }

    /// Whether `self → to` is a legal change.
    pub fn can_transition(self, to: CallState) -> bool {
        use CallState::*;
        match (self, to) {
            // Nothing leaves a final state.
            (Terminated | Cancelled | Failed(_), _) => false,
            // A live session may always fail.
            (_, Failed(_)) => true,
            (Initiating, Ringing | Active | Cancelled | Terminating) => true,
            // 2xx answers; CANCEL (or 487) ends it unanswered; Terminating covers a BYE sent
            // for an early dialog's late 2xx.
            (Ringing, Active | Cancelled | Terminating) => true,
            (Active, OnHold | Transferring | Terminating) => true,
            (OnHold, Active | Transferring | Terminating) => true,
            // A failed transfer leaves the call as it was; a successful one ends it.
            (Transferring, Active | OnHold | Terminating) => true,
            (Terminating, Terminated) => true,
            _ => false,
        }
    }

    /// Moves to `to` if the change is legal, else reports the illegal change and keeps `self`.
    pub fn transition(self, to: CallState) -> Result<CallState, TransitionError> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// A short lowercase name, stable for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Initiating => "initiating",
            Self::Ringing => "ringing",
            Self::Active => "active",
            Self::OnHold => "on-hold",
            Self::Transferring => "transferring",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
            Self::Cancelled => "cancelled",
            Self::Failed(_) => "failed",
        }
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(reason) => write!(f, "failed ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// An illegal state change was asked for; the session keeps its old state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("illegal call state transition from {from} to {to}")]
pub struct TransitionError {
    /// The state the session was in.
    pub from: CallState,
    /// The state that was refused.
    pub to: CallState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallState::*;

    const BUSY: CallState = Failed(FailureReason::Rejected(StatusCode::BUSY_HERE));

    fn all_states() -> [CallState; 9] {
        [
            Initiating,
            Ringing,
            Active,
            OnHold,
            Transferring,
            Terminating,
            Terminated,
            Cancelled,
            BUSY,
        ]
    }

    #[test]
    fn typical_paths_are_legal() {
        let paths: &[&[CallState]] = &[
            &[
                Initiating,
                Ringing,
                Active,
                OnHold,
                Active,
                Terminating,
                Terminated,
            ],
            &[Initiating, Active, Transferring, Terminating, Terminated],
            &[Initiating, Ringing, Cancelled],
            &[Initiating, Ringing, BUSY],
            &[
                Initiating,
                Active,
                Transferring,
                Active,
                OnHold,
                Transferring,
                OnHold,
            ],
            &[Initiating, Active, Failed(FailureReason::Timeout)],
        ];
        for path in paths {
            let mut state = path[0];
            for &next in &path[1..] {
                state = state
                    .transition(next)
                    .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            }
        }
    }

    #[test]
    fn final_states_are_final() {
        for from in [Terminated, Cancelled, BUSY] {
            assert!(from.is_final());
            for to in all_states() {
                assert_eq!(
                    from.transition(to),
                    Err(TransitionError { from, to }),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn illegal_transitions_are_rejected() {
        let illegal = [
            (Initiating, Initiating),
            (Initiating, OnHold),
            (Initiating, Transferring),
            (Initiating, Terminated),
            (Ringing, Ringing),
            (Ringing, Initiating),
            (Ringing, OnHold),
            (Active, Ringing),
            (Active, Cancelled),
            (Active, Active),
            (Active, Terminated),
            (OnHold, OnHold),
            (OnHold, Cancelled),
            (Transferring, Transferring),
            (Terminating, Active),
            (Terminating, Cancelled),
            (Terminating, Terminating),
        ];
        for (from, to) in illegal {
            let err = from.transition(to).unwrap_err();
            assert_eq!((err.from, err.to), (from, to));
            assert!(err.to_string().contains("illegal"), "{err}");
        }
    }

    #[test]
    fn every_live_state_can_fail_and_nothing_reenters_initiating() {
        for from in all_states() {
            assert_eq!(from.can_transition(BUSY), !from.is_final());
            assert!(!from.can_transition(Initiating));
        }
    }

    #[test]
    fn legal_transition_count_matches_the_diagram() {
        let legal = all_states()
            .iter()
            .flat_map(|&from| all_states().map(move |to| (from, to)))
            .filter(|&(from, to)| from.can_transition(to))
            .count();
        // 4 + 3 + 3 + 3 + 3 + 1 edges between live states, plus Failed from 6 live states.
        assert_eq!(legal, 17 + 6);
    }

    #[test]
    fn failure_reasons_map_to_statuses() {
        assert_eq!(
            FailureReason::Rejected(StatusCode::DECLINE).status(),
            Some(StatusCode::DECLINE)
        );
        assert_eq!(
            FailureReason::MediaNegotiation.status(),
            Some(StatusCode::NOT_ACCEPTABLE_HERE)
        );
        assert_eq!(BUSY.to_string(), "failed (rejected with 486 Busy Here)");
        assert_eq!(OnHold.to_string(), "on-hold");
    }
}
