//! Errors of digest authentication: one enum, grouped by cause, classified into
//! [`session_types::ErrorKind`].
//!
//! ```
//! use session_auth::{Challenge, Error};
//! use session_types::{Classify, ErrorKind};
//!
//! let err = Challenge::parse(r#"Digest realm="example.com", nonce="abc"#).unwrap_err();
//! assert!(matches!(err, Error::Syntax { .. }));
//! assert_eq!(err.kind(), ErrorKind::MalformedInput);
//! ```

use session_types::{Classify, ErrorKind, StatusCode};

/// Everything that can go wrong while parsing, answering or verifying digest authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- Malformed input (a UAS answers 400) ---
    /// The header value does not follow the auth-param grammar (RFC 7235 §2.1, RFC 3261 §25.1).
    #[error("malformed digest header: {what} at byte {at}")]
    Syntax {
        /// What is wrong.
        what: &'static str,
        /// The byte offset in the header value where it was found.
        at: usize,
    },
    /// A parameter the grammar requires is absent (`realm`, `nonce`, `response`, ...).
    #[error("missing digest parameter `{0}`")]
    MissingParam(&'static str),
    /// A parameter that may appear once appears twice (RFC 7616 §3.3: at most once each).
    #[error("digest parameter `{0}` given more than once")]
    DuplicateParam(&'static str),
    /// A parameter's value is not legal (`nc` that is not 8 hex digits, an empty nonce, ...).
    #[error("bad digest parameter `{name}`: {what}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value.
        what: &'static str,
    },

    // --- Incompatible: well formed, but not something this crate can use ---
    /// An authentication scheme other than Digest (`Basic`, `Bearer`, ...); at most 64
    /// characters of it are kept.
    #[error("authentication scheme `{0}` is not Digest")]
    UnsupportedScheme(String),
    /// An `algorithm` this crate does not implement (RFC 2617 §3.2.1: such a challenge is
    /// ignored); at most 64 characters of it are kept.
    #[error("unsupported digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// A `qop` with no value this crate implements (`auth`, `auth-int`); at most 64
    /// characters of it are kept.
    #[error("unsupported quality of protection `{0}`")]
    UnsupportedQop(String),
    /// A 401/407 whose challenges are all unusable: not Digest, an unknown algorithm or qop,
    /// malformed, or none that the credentials at hand can answer.
    #[error("no usable digest challenge in the {0} response")]
    NoUsableChallenge(StatusCode),
    /// The credential provider has nothing for the challenged realm.
    #[error("no credentials for realm `{realm}`")]
    NoCredentials {
        /// The realm that was asked for.
        realm: String,
    },
    /// The server challenged again for a realm we had already answered, without `stale=true`
    /// (or with `stale=true` a second time): the credentials are wrong, and retrying would
    /// loop (RFC 2617 §3.2.1, RFC 3261 §22.2).
    #[error("credentials rejected for realm `{realm}` ({status})")]
    CredentialsRejected {
        /// 401 (a UAS or registrar) or 407 (a proxy).
        status: StatusCode,
        /// The realm whose credentials failed.
        realm: String,
    },

    /// One request was challenged more often than [`crate::DigestClient::MAX_ROUNDS`] times
    /// (each time for a realm not yet answered): the server is not going to accept it.
    #[error("too many authentication challenges for one request (last: {0})")]
    TooManyChallenges(StatusCode),

    // --- API misuse ---
    /// The response handed to the client is not a 401 or a 407.
    #[error("a {0} response is not an authentication challenge")]
    NotAChallenge(StatusCode),
    /// Credentials or configuration the application gave are unusable (a username with CR or
    /// LF, an HA1 that is not a hex digest of the right length, an empty algorithm list).
    #[error("invalid credentials or configuration: {0}")]
    InvalidInput(&'static str),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Keeps error payloads that come from the network small.
    pub(crate) fn clipped(s: &str) -> String {
        let mut end = s.len().min(64);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.get(..end).unwrap_or_default().to_owned()
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Syntax { .. }
            | Self::MissingParam(_)
            | Self::DuplicateParam(_)
            | Self::InvalidParam { .. } => ErrorKind::MalformedInput,
            Self::UnsupportedScheme(_)
            | Self::UnsupportedAlgorithm(_)
            | Self::UnsupportedQop(_)
            | Self::NoUsableChallenge(_)
            | Self::NoCredentials { .. }
            | Self::CredentialsRejected { .. }
            | Self::TooManyChallenges(_) => ErrorKind::Incompatible,
            Self::NotAChallenge(_) | Self::InvalidInput(_) => ErrorKind::ApiMisuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_keeps_char_boundaries() {
        let long = "é".repeat(100);
        let c = Error::clipped(&long);
        assert!(c.len() <= 64);
        assert!(c.chars().all(|ch| ch == 'é'));
        assert_eq!(Error::clipped("MD5"), "MD5");
    }

    #[test]
    fn classified_by_cause() {
        let rejected = Error::CredentialsRejected {
            status: StatusCode::UNAUTHORIZED,
            realm: "r".into(),
        };
        assert_eq!(rejected.kind(), ErrorKind::Incompatible);
        assert!(rejected.to_string().contains("credentials rejected"));
        assert!(rejected.to_string().contains("401"));
        assert_eq!(
            Error::MissingParam("nonce").kind(),
            ErrorKind::MalformedInput
        );
    }
}
