//! Errors of this crate: [`Error`] (what the bus's fallible calls return) and the receive errors
//! of a [`crate::Subscription`] and a [`crate::ChannelSubscription`] ([`RecvError`],
//! [`TryRecvError`], [`RecvTimeoutError`]), all classified by cause through
//! [`session_types::Classify`].

use session_types::{Classify, ErrorKind};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A subscription (or a bus's default) was given a queue capacity of zero.
    #[error("a subscription's queue capacity must be at least 1")]
    ZeroCapacity,
    /// The shard count given to [`crate::EventBusBuilder::shards`] is not a power of two in
    /// 1..=[`crate::EventBusBuilder::MAX_SHARDS`].
    #[error("the shard count must be a power of two from 1 to 4096, got {0}")]
    InvalidShardCount(usize),
    /// Receiving from a subscription failed (so `?` works on [`crate::Subscription::recv`]).
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ZeroCapacity | Self::InvalidShardCount(_) => ErrorKind::ApiMisuse,
            Self::Recv(err) => err.kind(),
        }
    }
}

/// Why [`crate::Subscription::recv`] (or [`crate::Subscription::blocking_recv`], or
/// [`crate::ChannelSubscription::recv`]) returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind: its queue was full, so this many of the oldest queued events
    /// were dropped for it (for a [`crate::ChannelSubscription`]: this many new events were
    /// refused by its full channel). Returned at the position of the gap; the next call returns
    /// the event after it. Not fatal: keep receiving.
    #[error("subscriber lagged behind: {0} events were dropped")]
    Lagged(u64),
    /// No more events will come: every [`crate::EventBus`] handle was dropped, or every session
    /// this subscription was scoped to (it had no group) was forgotten (see
    /// [`crate::EventBus::forget_session`]). Events queued before that were all received.
    /// For a [`crate::ChannelSubscription`]: its channel is disconnected and empty.
    #[error("the subscription is closed")]
    Closed,
}

impl Classify for RecvError {
    fn kind(&self) -> ErrorKind {
        match self {
            // The subscriber's queue limit refused events.
            Self::Lagged(_) => ErrorKind::ResourceExhausted,
            Self::Closed => ErrorKind::Unavailable,
        }
    }
}

/// Why [`crate::Subscription::try_recv`] (or [`crate::ChannelSubscription::try_recv`]) returned
/// no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is queued right now.
    #[error("no event is queued")]
    Empty,
    /// See [`RecvError::Lagged`].
    #[error("subscriber lagged behind: {0} events were dropped")]
    Lagged(u64),
    /// See [`RecvError::Closed`].
    #[error("the subscription is closed")]
    Closed,
}

/// Why [`crate::Subscription::recv_timeout`] (or [`crate::ChannelSubscription::recv_timeout`])
/// returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    #[error("timed out waiting for an event")]
    Timeout,
    /// See [`RecvError::Lagged`].
    #[error("subscriber lagged behind: {0} events were dropped")]
    Lagged(u64),
    /// See [`RecvError::Closed`].
    #[error("the subscription is closed")]
    Closed,
}

impl From<RecvError> for TryRecvError {
    fn from(err: RecvError) -> Self {
        match err {
            RecvError::Lagged(n) => Self::Lagged(n),
            RecvError::Closed => Self::Closed,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(err: RecvError) -> Self {
        match err {
            RecvError::Lagged(n) => Self::Lagged(n),
            RecvError::Closed => Self::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_classify_by_cause() {
        assert_eq!(Error::ZeroCapacity.kind(), ErrorKind::ApiMisuse);
        assert_eq!(Error::InvalidShardCount(3).kind(), ErrorKind::ApiMisuse);
        assert_eq!(
            Error::from(RecvError::Lagged(3)).kind(),
            ErrorKind::ResourceExhausted
        );
        assert_eq!(RecvError::Closed.kind(), ErrorKind::Unavailable);
        assert_eq!(
            TryRecvError::from(RecvError::Lagged(2)),
            TryRecvError::Lagged(2)
        );
        assert_eq!(
            RecvTimeoutError::from(RecvError::Closed),
            RecvTimeoutError::Closed
        );
        assert_eq!(
            RecvError::Lagged(7).to_string(),
            "subscriber lagged behind: 7 events were dropped"
        );
    }
}
