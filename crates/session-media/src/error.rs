//! The crate's error type and its classification into [`session_types::ErrorKind`].
//!
//! Variants are grouped by cause, as the rest of the workspace does: malformed input from the
//! network (SDP, RTP, RTCP), a peer we cannot work with (no common codec → 488), a peer that
//! broke the offer/answer rules, misuse of the API, and I/O failures.

use session_types::{Classify, ErrorKind};

/// Errors of `session-media`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- malformed input (400) ----
    /// An SDP body does not follow the RFC 8866 grammar.
    #[error("malformed SDP (line {line}): {reason}")]
    MalformedSdp {
        /// 1-based line number of the offending line (0 when the whole body is at fault).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An RTP packet could not be parsed.
    #[error("malformed RTP packet: {0}")]
    MalformedRtp(&'static str),
    /// An RTCP compound packet could not be parsed.
    #[error("malformed RTCP packet: {0}")]
    MalformedRtcp(&'static str),

    // ---- peer incompatible (488 / 415) ----
    /// The offer has no audio stream whose codecs we support (the UAS answers 488).
    #[error("no common codec: no offered audio stream uses a codec we support")]
    NoCommonCodec,
    /// A WAV file uses a format we cannot read (we read PCM of 1–32 bits and 32-bit float, at
    /// any rate and channel count).
    #[error("unsupported WAV format: {0}")]
    UnsupportedWav(String),

    // ---- peer misbehaved ----
    /// An SDP answer does not fit the offer it answers (RFC 3264 §6): different number of
    /// media lines, or it accepts a stream with a codec we never offered.
    #[error("SDP answer does not match the offer: {0}")]
    AnswerMismatch(&'static str),
    /// The answer rejected (port 0) every audio stream we offered.
    #[error("the peer rejected the audio stream")]
    StreamRejected,

    // ---- resources ----
    /// No RTP port pair could be leased (503 with Retry-After), or the pool is misconfigured.
    #[error(transparent)]
    Resources(#[from] session_resources::ResourceError),

    // ---- API misuse ----
    /// A configuration value is invalid (the reason says which).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    // ---- unavailable ----
    /// A socket or file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading or writing a WAV file failed.
    #[error("WAV error: {0}")]
    Wav(#[from] hound::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::MalformedSdp { .. } | Self::MalformedRtp(_) | Self::MalformedRtcp(_) => {
                ErrorKind::MalformedInput
            }
            Self::NoCommonCodec | Self::UnsupportedWav(_) | Self::StreamRejected => {
                ErrorKind::Incompatible
            }
            Self::AnswerMismatch(_) => ErrorKind::PeerMisbehaved,
            Self::InvalidConfig(_) => ErrorKind::ApiMisuse,
            Self::Io(_) | Self::Wav(_) => ErrorKind::Unavailable,
            Self::Resources(e) => e.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::StatusCode;

    #[test]
    fn no_common_codec_maps_to_488() {
        assert_eq!(
            Error::NoCommonCodec.kind().suggested_status(),
            Some(StatusCode::NOT_ACCEPTABLE_HERE)
        );
        let malformed = Error::MalformedSdp {
            line: 1,
            reason: "x",
        };
        assert_eq!(malformed.kind(), ErrorKind::MalformedInput);
        assert_eq!(Error::AnswerMismatch("x").kind(), ErrorKind::PeerMisbehaved);
    }
}
