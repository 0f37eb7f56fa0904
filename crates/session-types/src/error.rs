//! The error taxonomy: every crate's error enum says which [`ErrorKind`] each variant is, so
//! callers (and the SIP layer choosing a response) can react by cause without matching every
//! crate's variants.

use crate::{StatusCode, TransitionError};

/// What kind of failure an error is, grouped by cause.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Input that does not follow the grammar (a SIP message, SDP body, RTP packet, id text).
    /// A SIP server answers 400 (or drops a malformed response).
    MalformedInput,
    /// Well-formed input that breaks the protocol's rules in context: a request for a dialog
    /// that does not exist (481), a re-INVITE during another (491), an out-of-order CSeq.
    PeerMisbehaved,
    /// Well-formed and legal, but we cannot work with it: unknown extension (420), media type
    /// (415), URI scheme (416), no common codec (488), SIP version (505).
    Incompatible,
    /// A limit refused the work (sessions, ports, memory); retry later (503 + Retry-After).
    ResourceExhausted,
    /// The caller used the API wrongly: an illegal state change, an operation on an ended
    /// session, an invalid configuration. Never caused by the network.
    ApiMisuse,
    /// The network or the peer did not answer in time, or a socket failed.
    Unavailable,
}

impl ErrorKind {
    /// The SIP status a UAS answers with when a request fails for this reason, if any.
    pub fn suggested_status(self) -> Option<StatusCode> {
        match self {
            Self::MalformedInput => Some(StatusCode::BAD_REQUEST),
            Self::PeerMisbehaved => None,
            Self::Incompatible => Some(StatusCode::NOT_ACCEPTABLE_HERE),
            Self::ResourceExhausted => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::ApiMisuse => Some(StatusCode::SERVER_INTERNAL_ERROR),
            Self::Unavailable => Some(StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

/// Implemented by every crate's error type: which kind of failure this is.
pub trait Classify {
    /// The cause group of this error.
    fn kind(&self) -> ErrorKind;
}

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An illegal call state change was asked for.
    #[error(transparent)]
    IllegalTransition(#[from] TransitionError),
    /// Text that should be an id is not one.
    #[error(transparent)]
    ParseId(#[from] crate::ParseIdError),
    /// A number outside 100–699 where a status code was expected.
    #[error("{0} is not a SIP status code (100-699)")]
    InvalidStatusCode(u16),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::IllegalTransition(_) => ErrorKind::ApiMisuse,
            Self::ParseId(_) | Self::InvalidStatusCode(_) => ErrorKind::MalformedInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallState, SessionId};

    #[test]
    fn errors_classify_by_cause() {
        let illegal: Error = CallState::Terminated
            .transition(CallState::Active)
            .unwrap_err()
            .into();
        assert_eq!(illegal.kind(), ErrorKind::ApiMisuse);
        let bad_id: Error = "nope".parse::<SessionId>().unwrap_err().into();
        assert_eq!(bad_id.kind(), ErrorKind::MalformedInput);
        assert_eq!(
            ErrorKind::ResourceExhausted.suggested_status(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            ErrorKind::MalformedInput.suggested_status(),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
