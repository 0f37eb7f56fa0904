//! The crate's error type and its classification into [`session_types::ErrorKind`].
//!
//! Almost every failure here is a caller's mistake (an unknown bridge, a session that is already
//! bridged, a gain between members of different bridges), classified `ApiMisuse`. The one
//! exception is malformed RTCP from the network, which keeps session-media's classification.
//! Malformed or unexpected RTP is never an error: [`crate::BridgeEngine::handle_rtp`] answers
//! it with [`crate::RtpAction::Dropped`] and a reason, since a datagram is not a request.

use session_types::{Classify, ErrorKind, SessionId};

use crate::engine::BridgeId;
use crate::leg::Leg;

/// Errors of `session-bridge`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- API misuse ----
    /// No bridge with this id (never created, or destroyed).
    #[error("no bridge {0}")]
    UnknownBridge(BridgeId),
    /// The session is in no bridge of this engine.
    #[error("session {0} is in no bridge")]
    NotBridged(SessionId),
    /// A session is in at most one bridge; this one already is.
    #[error("session {session} is already in bridge {bridge}")]
    AlreadyBridged {
        /// The session.
        session: SessionId,
        /// The bridge it is in.
        bridge: BridgeId,
    },
    /// The bridge was created with [`crate::TechnologyChoice::ForceRelay`] and already has two
    /// members; a relay has no way to carry a third.
    #[error("bridge {0} is forced to relay and already has two members")]
    RelayFull(BridgeId),
    /// A per-pair gain names two sessions that are not members of one bridge.
    #[error("sessions {listener} and {talker} are not members of the same bridge")]
    NotInSameBridge {
        /// The listener of the pair.
        listener: SessionId,
        /// The talker of the pair.
        talker: SessionId,
    },
    /// A leg cannot be bridged as described (the reason says why).
    #[error("invalid leg: {0}")]
    InvalidLeg(&'static str),
    /// An argument makes no sense (the reason says which).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The [`crate::BridgeDriver`] was shut down (or its last handle dropped).
    #[error("the bridge driver was shut down")]
    DriverClosed,

    // ---- from the network ----
    /// A datagram given to [`crate::BridgeEngine::handle_rtcp`] is not RTCP (classified as
    /// session-media classifies it: malformed input).
    #[error(transparent)]
    Media(#[from] session_media::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownBridge(_)
            | Self::NotBridged(_)
            | Self::AlreadyBridged { .. }
            | Self::RelayFull(_)
            | Self::NotInSameBridge { .. }
            | Self::InvalidLeg(_)
            | Self::InvalidArgument(_)
            | Self::DriverClosed => ErrorKind::ApiMisuse,
            Self::Media(e) => e.kind(),
        }
    }
}

/// A refused [`crate::BridgeEngine::add_member`]: the reason, and the leg handed back, so the
/// leg keeps exactly one owner (the caller) whatever happened.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused {
    /// Why the member was not added.
    #[source]
    pub error: Error,
    /// The leg, unchanged.
    pub leg: Box<Leg>,
}

impl Classify for Refused {
    fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misuse_and_malformed_are_told_apart() {
        assert_eq!(
            Error::UnknownBridge(BridgeId::from_raw(3)).kind(),
            ErrorKind::ApiMisuse
        );
        let malformed = Error::from(session_media::Error::MalformedRtcp("truncated"));
        assert_eq!(malformed.kind(), ErrorKind::MalformedInput);
    }
}
