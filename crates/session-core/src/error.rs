//! [`SessionError`]: every way a session operation can fail, with the SIP status when the
//! failure came from (or maps to) one.

use session_types::{CallState, Classify, ErrorKind, FailureReason, StatusCode};

/// The result of session-core operations.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer (or a proxy) answered with a final non-2xx status.
    // The status code alone: `StatusCode`'s Display adds the standard phrase, and the phrase
    // that matters is the one received.
    #[error("the peer answered {} {reason}", status.as_u16())]
    Rejected {
        /// The status on the wire.
        status: StatusCode,
        /// Its reason phrase as received.
        reason: String,
    },
    /// No final response in time (Timer B/F), or no ACK for our 2xx.
    #[error("no response in time")]
    Timeout,
    /// The transport failed (connection refused, unreachable).
    #[error("the transport failed")]
    Transport,
    /// The call was cancelled before it was answered.
    #[error("the call was cancelled")]
    Cancelled,
    /// The session ended while the operation was waiting.
    #[error("the session ended ({0})")]
    Ended(CallState),
    /// The operation does not fit the session's state (e.g. `hold` before the answer).
    #[error("cannot {operation} while the call is {state}")]
    InvalidState {
        /// What was asked.
        operation: &'static str,
        /// The state the session was in.
        state: CallState,
    },
    /// No session with this id (it ended and was forgotten).
    #[error("no such session")]
    NoSuchSession,
    /// A request of ours of the same kind is still pending (e.g. a second re-INVITE).
    #[error("a {0} is already in progress")]
    Pending(&'static str),
    /// A local limit refused the session (admission or RTP ports).
    #[error("resources exhausted: {0}")]
    Resources(#[from] session_resources::ResourceError),
    /// A dependency link would close a cycle.
    #[error(transparent)]
    DependencyCycle(#[from] crate::dependencies::DependencyCycle),
    /// SDP negotiation failed or a media socket could not be set up.
    #[error("media: {0}")]
    Media(#[from] session_media::Error),
    /// A URI or header given by the caller is not valid SIP.
    #[error("invalid {what}: {value}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The transfer target could not be reached; the call stays up.
    #[error("transfer failed: {} {reason}", status.as_u16())]
    TransferFailed {
        /// The final status the transferee reported (`message/sipfrag`), or 408/503 when it
        /// reported none.
        status: StatusCode,
        /// The reason phrase of that sipfrag's status line as written (e.g. `Busy Here`, or a
        /// carrier's own words), or the standard phrase of 408/503.
        reason: String,
    },
    /// A bridge operation was refused (no such bridge, the call is in none, a forced relay is
    /// full …).
    #[error("bridge: {0}")]
    Bridge(#[from] session_bridge::Error),
    /// Binding the SIP transport failed.
    #[error("SIP transport: {0}")]
    Driver(#[from] session_dialog::driver::DriverError),
    /// Binding the metrics listener (`SessionManagerBuilder::metrics_address`) failed.
    #[error("metrics listener: {0}")]
    MetricsListener(#[source] std::io::Error),
    /// The manager was shut down.
    #[error("the session manager has shut down")]
    Shutdown,
}

impl SessionError {
    /// The SIP status this error carries or best maps to.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected { status, .. } | Self::TransferFailed { status, .. } => Some(*status),
            Self::Timeout => Some(StatusCode::REQUEST_TIMEOUT),
            Self::Transport | Self::Resources(_) | Self::Shutdown => {
                Some(StatusCode::SERVICE_UNAVAILABLE)
            }
            Self::Cancelled => Some(StatusCode::REQUEST_TERMINATED),
            Self::Media(_) => Some(StatusCode::NOT_ACCEPTABLE_HERE),
            Self::Bridge(_) => None,
            Self::Pending(_) => Some(StatusCode::REQUEST_PENDING),
            Self::NoSuchSession => Some(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
            Self::Ended(state) => match state {
                CallState::Failed(reason) => reason.status(),
                CallState::Cancelled => Some(StatusCode::REQUEST_TERMINATED),
                _ => None,
            },
            Self::InvalidState { .. }
            | Self::InvalidInput { .. }
            | Self::Driver(_)
            | Self::MetricsListener(_)
            | Self::DependencyCycle(_) => None,
        }
    }

    /// The error a call ending in `state` gives to whoever waited for its answer.
    pub(crate) fn from_final_state(state: CallState, last: Option<(StatusCode, &str)>) -> Self {
        match state {
            CallState::Failed(FailureReason::Rejected(status)) => Self::Rejected {
                status,
                reason: last
                    .filter(|(s, _)| *s == status)
                    .map_or_else(|| status.reason_phrase().to_owned(), |(_, r)| r.to_owned()),
            },
            CallState::Failed(FailureReason::Timeout) => Self::Timeout,
            CallState::Failed(FailureReason::Transport) => Self::Transport,
            CallState::Cancelled => Self::Cancelled,
            other => Self::Ended(other),
        }
    }
}

impl Classify for SessionError {
    fn kind(&self) -> ErrorKind {
        match self {
            // The peer said no: it cannot or will not work with this call.
            Self::Rejected { .. } | Self::TransferFailed { .. } => ErrorKind::Incompatible,
            Self::Timeout
            | Self::Transport
            | Self::Driver(_)
            | Self::MetricsListener(_)
            | Self::Shutdown => ErrorKind::Unavailable,
            Self::Cancelled
            | Self::Ended(_)
            | Self::InvalidState { .. }
            | Self::NoSuchSession
            | Self::Pending(_) => ErrorKind::ApiMisuse,
            Self::Resources(_) => ErrorKind::ResourceExhausted,
            Self::Media(e) => e.kind(),
            Self::Bridge(e) => e.kind(),
            Self::InvalidInput { .. } | Self::DependencyCycle(_) => ErrorKind::ApiMisuse,
        }
    }
}
