//! [`Error`]: how a step of a test failed — the session operation's own error, a wait that
//! ran out of time, an expectation that did not hold (with a readable report), or the kit's
//! set-up.

use session_core::crates::types::{Classify, ErrorKind};
use session_core::{SessionError, StatusCode};
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The result of the kit's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a step of a test failed.
///
/// `Debug` prints the same text as `Display`: a test that `unwrap`s a result, or returns one
/// from `#[tokio::test]`, shows the error through `Debug`, and an expectation's report is
/// meant to be read as written, line by line.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session operation failed (the peer refused, the call had ended …).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Something awaited did not happen in time.
    #[error("{what}: nothing within {after:?}")]
    TimedOut {
        /// What was awaited.
        what: String,
        /// How long the wait was bounded to (virtual time in a paused runtime).
        after: Duration,
    },
    /// An expectation did not hold; the report says what was expected and what was seen.
    #[error("{0}")]
    Expectation(String),
    /// A manager still holds calls, admission slots or RTP ports when it should hold none.
    #[error(
        "{name} still holds {calls} call(s), {admitted} admission slot(s) and {ports} RTP port \
         pair(s) after {after:?}"
    )]
    NotReleased {
        /// The manager's name in the test.
        name: String,
        /// Sessions alive.
        calls: usize,
        /// Admission slots taken.
        admitted: usize,
        /// RTP port pairs leased.
        ports: usize,
        /// How long it was given.
        after: Duration,
    },
    /// A [`crate::Harness`] has given out every slice of its media port range.
    #[error("no media ports left: {range:?} is split into slices of {per_manager} ports")]
    PortsExhausted {
        /// The harness's range.
        range: RangeInclusive<u16>,
        /// Ports per manager.
        per_manager: u16,
    },
    /// A manager, a call or a subscription stopped while it was awaited.
    #[error("{0} stopped")]
    Stopped(String),
    /// The virtual-time runtime could not be built.
    #[error("the tokio runtime could not start: {0}")]
    Runtime(#[source] std::io::Error),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// The SIP status of a session error (a rejection's 486, 480 …), if it carries one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Session(error) => error.status(),
            _ => None,
        }
    }

    pub(crate) fn timed_out(what: impl Into<String>, after: Duration) -> Self {
        Self::TimedOut {
            what: what.into(),
            after,
        }
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Session(error) => error.kind(),
            Self::TimedOut { .. } | Self::Stopped(_) | Self::Runtime(_) => ErrorKind::Unavailable,
            Self::Expectation(_) | Self::NotReleased { .. } => ErrorKind::PeerMisbehaved,
            Self::PortsExhausted { .. } => ErrorKind::ResourceExhausted,
        }
    }
}
