//! Errors of this crate: [`Error`], classified by cause through [`session_types::Classify`].

use session_types::{Classify, ErrorKind, SessionId};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`crate::TracerConfig`] limit was zero; the tracer needs room for at least one session
    /// and one entry per session.
    #[error("the tracer's {0} must be at least 1")]
    ZeroLimit(&'static str),
    /// [`crate::SessionTracer::correlate`] named a session the tracer holds nothing for (never
    /// recorded, or already evicted).
    #[error("the tracer holds no timeline for session {0}")]
    UnknownSession(SessionId),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ZeroLimit(_) | Self::UnknownSession(_) => ErrorKind::ApiMisuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_caller_mistakes() {
        assert_eq!(
            Error::ZeroLimit("max_sessions").kind(),
            ErrorKind::ApiMisuse
        );
        let id = SessionId::from_u128(7);
        assert_eq!(Error::UnknownSession(id).kind(), ErrorKind::ApiMisuse);
        assert_eq!(
            Error::ZeroLimit("max_sessions").to_string(),
            "the tracer's max_sessions must be at least 1"
        );
    }
}
