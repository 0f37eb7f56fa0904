//! The crate's error type: which resource ran out, at what limit, and when to try again.
//!
//! Every refusal is an [`ResourceError::Exhausted`], which classifies as
//! [`ErrorKind::ResourceExhausted`]; the SIP layer answers it with `503 Service Unavailable` and a
//! `Retry-After` header built from [`ResourceError::retry_after_secs`] (RFC 3261 §21.5.4,
//! §20.33). A configuration the crate cannot work with is an [`ErrorKind::ApiMisuse`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_types::{Classify, ErrorKind, GroupId};

/// Which resource refused the work.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Resource {
    /// The global number of concurrent sessions.
    Sessions,
    /// The number of concurrent sessions of one user.
    ///
    /// The user name is kept for the caller, but `Display` does not print it: user names are
    /// personal data and errors end up in logs.
    UserSessions {
        /// The user whose quota is used up.
        user: Arc<str>,
    },
    /// The number of concurrent sessions in one group.
    GroupSessions {
        /// The group whose limit is reached.
        group: GroupId,
    },
    /// The RTP/RTCP port pairs of a [`PortPool`](crate::PortPool).
    RtpPorts,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sessions => f.write_str("sessions"),
            Self::UserSessions { .. } => f.write_str("sessions per user"),
            Self::GroupSessions { group } => write!(f, "sessions in {group}"),
            Self::RtpPorts => f.write_str("RTP port pairs"),
        }
    }
}

/// Errors of this crate.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// A limit refused the request; nothing was taken. Answer 503 with `Retry-After`.
    #[error("limit of {limit} {resource} reached; retry after {}s", retry_secs(*.retry_after))]
    Exhausted {
        /// Which resource is used up.
        resource: Resource,
        /// The limit that was reached (for port pools, the number of pairs).
        limit: usize,
        /// How long the caller should wait before trying again (a hint, not a promise).
        retry_after: Duration,
    },
    /// A port range that holds no RTP/RTCP pair (an even port, not 0, followed by the next
    /// port): the configuration is wrong.
    #[error("port range {start}..={end} holds no RTP/RTCP pair (an even port and the next one)")]
    EmptyPortRange {
        /// The first port of the range as given.
        start: u16,
        /// The last port of the range as given (inclusive).
        end: u16,
    },
}

/// Result with this crate's [`ResourceError`].
pub type Result<T, E = ResourceError> = std::result::Result<T, E>;

impl ResourceError {
    pub(crate) fn exhausted(resource: Resource, limit: usize, retry_after: Duration) -> Self {
        Self::Exhausted {
            resource,
            limit,
            retry_after,
        }
    }

    /// The resource that ran out, if this is a refusal.
    pub fn resource(&self) -> Option<&Resource> {
        match self {
            Self::Exhausted { resource, .. } => Some(resource),
            Self::EmptyPortRange { .. } => None,
        }
    }

    /// The limit that was reached, if this is a refusal.
    pub fn limit(&self) -> Option<usize> {
        match self {
            Self::Exhausted { limit, .. } => Some(*limit),
            Self::EmptyPortRange { .. } => None,
        }
    }

    /// The suggested wait before retrying, if this is a refusal.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Exhausted { retry_after, .. } => Some(*retry_after),
            Self::EmptyPortRange { .. } => None,
        }
    }

    /// The value of a SIP `Retry-After` header (whole seconds, rounded up, at least 1), if this
    /// is a refusal.
    pub fn retry_after_secs(&self) -> Option<u32> {
        self.retry_after().map(retry_secs)
    }
}

/// Whole seconds, rounded up, at least 1, saturating at `u32::MAX` (RFC 3261 §20.33 carries
/// delta-seconds; 0 would invite an immediate retry).
fn retry_secs(d: Duration) -> u32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

impl Classify for ResourceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Exhausted { .. } => ErrorKind::ResourceExhausted,
            Self::EmptyPortRange { .. } => ErrorKind::ApiMisuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::StatusCode;

    #[test]
    fn exhausted_classifies_as_503_with_retry_after() {
        let err = ResourceError::exhausted(Resource::Sessions, 10, Duration::from_millis(1500));
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert_eq!(
            err.kind().suggested_status(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(err.retry_after_secs(), Some(2));
        assert_eq!(err.limit(), Some(10));
        assert_eq!(err.resource(), Some(&Resource::Sessions));
        assert_eq!(
            err.to_string(),
            "limit of 10 sessions reached; retry after 2s"
        );
    }

    #[test]
    fn user_names_stay_out_of_messages() {
        let err = ResourceError::exhausted(
            Resource::UserSessions {
                user: "alice".into(),
            },
            2,
            Duration::ZERO,
        );
        let text = err.to_string();
        assert!(!text.contains("alice"), "{text}");
        assert_eq!(text, "limit of 2 sessions per user reached; retry after 1s");
        let group = ResourceError::exhausted(
            Resource::GroupSessions {
                group: GroupId::from_raw(7),
            },
            3,
            Duration::from_secs(5),
        );
        assert_eq!(
            group.to_string(),
            "limit of 3 sessions in group-7 reached; retry after 5s"
        );
    }

    #[test]
    fn bad_configuration_is_api_misuse() {
        let err = ResourceError::EmptyPortRange { start: 3, end: 3 };
        assert_eq!(err.kind(), ErrorKind::ApiMisuse);
        assert_eq!(err.retry_after(), None);
        assert_eq!(err.retry_after_secs(), None);
    }

    #[test]
    fn retry_secs_rounds_up_and_saturates() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_secs(Duration::from_nanos(3_000_000_001)), 4);
        assert_eq!(retry_secs(Duration::MAX), u32::MAX);
    }
}
