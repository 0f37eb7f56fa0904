//! Errors of the codec: one enum, grouped by cause, classified into
//! [`session_types::ErrorKind`].

use session_types::{Classify, ErrorKind};

/// Everything that can go wrong while parsing, framing or building a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- Limits (ParseLimits) ---
    /// The message (or the buffered stream data) is larger than the configured limit.
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// More header fields than the configured limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A physical line is longer than the configured limit.
    #[error("a line is longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },

    // --- Framing ---
    /// The header section does not end with an empty line.
    #[error("incomplete message: the header section has no terminating empty line")]
    Incomplete,
    /// Content-Length is missing (on a stream), negative, not a number, absurdly large, or
    /// given twice with different values.
    #[error("bad Content-Length: {0}")]
    ContentLength(&'static str),
    /// Content-Length announces more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    BodyTruncated {
        /// The announced length.
        declared: usize,
        /// The bytes actually there.
        available: usize,
    },

    // --- Syntax ---
    /// The Request-Line or Status-Line does not follow the grammar.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// A URI does not follow the grammar.
    #[error("malformed URI: {0}")]
    Uri(&'static str),
    /// A header line or a typed header value does not follow the grammar.
    #[error("malformed {name} header: {what}")]
    Header {
        /// The header's canonical name.
        name: &'static str,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A line of the start line or header section holds a bare CR or LF (lines end with CRLF,
    /// RFC 3261 §7). (Bytes that are not UTF-8 are [`Error::StartLine`] or [`Error::Header`]
    /// errors naming where they are.)
    #[error("a line ends with a bare CR or LF, not CRLF")]
    NotText,

    // --- Missing pieces (typed access or validation) ---
    /// A header the operation needs is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
}

impl Error {
    /// Whether a stream (TCP/TLS) connection must be closed after this error: the message
    /// boundaries are lost (RFC 3261 §18.3, RFC 4475 §3.1.2.3).
    ///
    /// A line or a header count over [`ParseLimits`](crate::ParseLimits) is not: a stream
    /// decoder meets them only in a message it has already framed (its end of headers found
    /// and its Content-Length read), so the message is skipped and can be answered (513).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::ContentLength(_) | Self::Incomplete
        )
    }

    pub(crate) fn header(name: &'static str, what: &'static str) -> Self {
        Self::Header { name, what }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders { .. } | Self::LineTooLong { .. } => {
                ErrorKind::ResourceExhausted
            }
            Self::Incomplete
            | Self::ContentLength(_)
            | Self::BodyTruncated { .. }
            | Self::StartLine(_)
            | Self::Uri(_)
            | Self::Header { .. }
            | Self::NotText
            | Self::MissingHeader(_) => ErrorKind::MalformedInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_cause() {
        assert_eq!(
            Error::TooLarge { limit: 1 }.kind(),
            ErrorKind::ResourceExhausted
        );
        assert_eq!(Error::Uri("x").kind(), ErrorKind::MalformedInput);
        assert!(Error::ContentLength("negative").is_framing());
        assert!(!Error::Uri("x").is_framing());
    }
}
