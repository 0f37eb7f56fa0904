//! The events themselves: [`SessionEvent`], its fieldless [`EventKind`] for filters, why a
//! session ended ([`TerminationReason`]) and the application payload of custom events
//! ([`Payload`]).
//!
//! An event is built once by its publisher and shared as `Arc<SessionEvent>`: every subscriber
//! that receives it holds the same allocation, so fan-out copies a pointer, never the event.

use session_types::{
    BridgeId, BridgeTechnology, CallId, CallState, Direction, FailureReason, GroupId, SessionId,
};
use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How a source played into a call ended, in [`SessionEvent::PlaybackFinished`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PlaybackEnd {
    /// The source ran out: the prompt or tone played to its end.
    Completed,
    /// The application detached it before its end.
    Stopped,
    /// Another source was attached in its place before its end.
    Replaced,
}

/// What a bridge did with a session, in [`SessionEvent::Bridge`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BridgeChange {
    /// The session joined the bridge: its media now goes through it.
    Joined,
    /// The session left the bridge (removed, the bridge destroyed, or the call ended).
    Left,
    /// The session came from another bridge (a move or a merge), without a gap.
    MovedFrom {
        /// The bridge it was in.
        from: BridgeId,
    },
    /// The session's bridge switched technology (members joined or left, a setting changed).
    TechnologyChanged {
        /// The technology now (it displays as `relay`, `transcoding relay` or `mixer`).
        to: BridgeTechnology,
    },
    /// The session sent RTP and then none for this long; nobody is evicted for it.
    MediaStalled {
        /// How long it has been silent.
        silent_for: Duration,
    },
}

/// What the embedded registrar did with a binding, in [`SessionEvent::Registrar`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BindingChange {
    /// A REGISTER bound a new contact to the address of record, for this long.
    Added {
        /// How long the binding lasts unless refreshed.
        expires: Duration,
    },
    /// A REGISTER refreshed an existing binding (or changed its q-value), for this long.
    Refreshed {
        /// How long the binding lasts now unless refreshed again.
        expires: Duration,
    },
    /// A REGISTER removed the binding (`Expires: 0`, or `Contact: *`).
    Removed,
    /// The binding was not refreshed in time and is gone.
    Expired,
}

/// The final figures of a session, carried by [`SessionEvent::SessionTerminated`]. Plain values,
/// so that a billing or monitoring subscriber needs nothing but this crate.
#[derive(Clone, PartialEq, Debug, Default)]
#[non_exhaustive]
pub struct CallSummary {
    /// From the session's creation to the answer; `None` if it was never answered.
    pub setup_time: Option<Duration>,
    /// From the answer to the end; `None` if it was never answered.
    pub talk_time: Option<Duration>,
    /// The negotiated codec, if media was negotiated.
    pub codec: Option<Arc<str>>,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP packets received.
    pub packets_received: u64,
    /// RTP packets lost on the way to us (cumulative, RFC 3550).
    pub packets_lost: i64,
    /// Interarrival jitter of what we received, in ms.
    pub jitter_ms: f64,
    /// Round-trip time from the peer's last RTCP report, if any.
    pub rtt: Option<Duration>,
    /// Estimated listening quality (1.0–4.5); `None` when nothing was received.
    pub mos: Option<f64>,
}

/// Something that happened to a session (or, for [`SessionEvent::Custom`], to the application).
///
/// New variants will be added as the library grows, so matches need a wildcard arm. Strings are
/// `Arc<str>` so that building an event from parsed SIP data shares the text instead of copying
/// it.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created: an INVITE arrived (inbound) or is about to be sent (outbound).
    SessionCreated {
        /// The new session.
        session_id: SessionId,
        /// Who started the call.
        direction: Direction,
        /// The SIP Call-ID of the initial INVITE.
        call_id: CallId,
        /// The `From` URI (the caller).
        from: Arc<str>,
        /// The callee: an outgoing call's `To` URI; an incoming call's Request-URI (where the
        /// INVITE was sent, which a proxy may have retargeted away from its `To`).
        to: Arc<str>,
    },
    /// The session's call state changed (see `session_types::CallState` for the legal changes).
    StateChanged {
        /// The session.
        session_id: SessionId,
        /// The session's SIP Call-ID.
        call_id: CallId,
        /// The state before the change.
        old: CallState,
        /// The state after the change.
        new: CallState,
    },
    /// Media began to flow: offer/answer completed and the RTP endpoint is open.
    MediaStarted {
        /// The session.
        session_id: SessionId,
        /// The negotiated codec, as named in the SDP `a=rtpmap` line (e.g. `PCMU`).
        codec: Arc<str>,
        /// Our RTP address.
        local: SocketAddr,
        /// The peer's RTP address.
        remote: SocketAddr,
    },
    /// Media stopped: the call was put on hold, ended, or the RTP endpoint closed.
    MediaStopped {
        /// The session.
        session_id: SessionId,
    },
    /// The peer sent a DTMF digit (RFC 4733 telephone-event or SIP INFO).
    DtmfReceived {
        /// The session.
        session_id: SessionId,
        /// The digit: `0`–`9`, `*`, `#` or `A`–`D`.
        digit: char,
        /// How long the key was held.
        duration: Duration,
    },
    /// A source attached to the session's audio stopped playing (the stream goes on with
    /// silence until another is attached).
    PlaybackFinished {
        /// The session.
        session_id: SessionId,
        /// Why it stopped.
        end: PlaybackEnd,
    },
    /// The session joined a group (see `session_core`'s groups).
    GroupMemberJoined {
        /// The session.
        session_id: SessionId,
        /// The group.
        group: GroupId,
    },
    /// The session left a group: taken out, the group dissolved, or the session ended.
    GroupMemberLeft {
        /// The session.
        session_id: SessionId,
        /// The group.
        group: GroupId,
    },
    /// A session this one depends on ended (see `session_core`'s dependencies).
    DependencyEnded {
        /// The dependent session (the event is about it).
        session_id: SessionId,
        /// The session it depended on, which ended.
        ended: SessionId,
    },
    /// A group's last member left. About no session: unscoped subscribers see it.
    GroupEmpty {
        /// The group.
        group: GroupId,
    },
    /// The session is over and everything it held has been released. The last event of a
    /// session.
    SessionTerminated {
        /// The session.
        session_id: SessionId,
        /// Why it ended.
        reason: TerminationReason,
        /// The figures it ended with: what a call detail record is built from.
        summary: CallSummary,
    },
    /// A bridge did something with the session's media (session-bridge): it joined, left or
    /// moved, its bridge switched technology, or its RTP stalled.
    Bridge {
        /// The session.
        session_id: SessionId,
        /// The bridge.
        bridge: BridgeId,
        /// What happened.
        change: BridgeChange,
    },
    /// The embedded registrar (session-core's `RegistrarConfig`) added, refreshed or removed a
    /// binding of an address of record to a contact. About no session: unscoped subscribers
    /// see it.
    Registrar {
        /// The address of record, in the registrar's canonical form (`sip:user@domain`).
        aor: Arc<str>,
        /// The contact URI bound to it.
        contact: Arc<str>,
        /// What happened.
        change: BindingChange,
    },
    /// An event of the application's own, e.g. to coordinate sessions ("the agent leg is up,
    /// bridge the customer leg"). The bus routes it like any other: by its session when it has
    /// one, and to unscoped subscribers either way.
    Custom {
        /// The session the event is about, if any. Without one, only subscribers that are not
        /// scoped to sessions or groups see it.
        session_id: Option<SessionId>,
        /// What happened, named by the application (filter on it with a predicate).
        name: Arc<str>,
        /// Application data; see [`Payload::downcast_ref`].
        payload: Payload,
    },
}

impl SessionEvent {
    /// The session this event is about; `None` only for a [`SessionEvent::Custom`] event
    /// without one.
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Self::SessionCreated { session_id, .. }
            | Self::StateChanged { session_id, .. }
            | Self::MediaStarted { session_id, .. }
            | Self::MediaStopped { session_id }
            | Self::DtmfReceived { session_id, .. }
            | Self::PlaybackFinished { session_id, .. }
            | Self::GroupMemberJoined { session_id, .. }
            | Self::GroupMemberLeft { session_id, .. }
            | Self::DependencyEnded { session_id, .. }
            | Self::SessionTerminated { session_id, .. }
            | Self::Bridge { session_id, .. } => Some(*session_id),
            Self::Custom { session_id, .. } => *session_id,
            Self::GroupEmpty { .. } | Self::Registrar { .. } => None,
        }
    }

    /// The group a [`SessionEvent::GroupMemberJoined`] or [`SessionEvent::GroupMemberLeft`]
    /// event is about: such an event also reaches that group's subscriptions, whether or not
    /// the session is (still) a member when it is published.
    pub(crate) fn membership_group(&self) -> Option<GroupId> {
        match self {
            Self::GroupMemberJoined { group, .. } | Self::GroupMemberLeft { group, .. } => {
                Some(*group)
            }
            _ => None,
        }
    }

    /// Which kind of event this is, for filters and logs.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::SessionCreated { .. } => EventKind::SessionCreated,
            Self::StateChanged { .. } => EventKind::StateChanged,
            Self::MediaStarted { .. } => EventKind::MediaStarted,
            Self::MediaStopped { .. } => EventKind::MediaStopped,
            Self::DtmfReceived { .. } => EventKind::DtmfReceived,
            Self::PlaybackFinished { .. } => EventKind::PlaybackFinished,
            Self::GroupMemberJoined { .. } => EventKind::GroupMemberJoined,
            Self::GroupMemberLeft { .. } => EventKind::GroupMemberLeft,
            Self::GroupEmpty { .. } => EventKind::GroupEmpty,
            Self::DependencyEnded { .. } => EventKind::DependencyEnded,
            Self::SessionTerminated { .. } => EventKind::SessionTerminated,
            Self::Bridge { .. } => EventKind::Bridge,
            Self::Custom { .. } => EventKind::Custom,
            Self::Registrar { .. } => EventKind::Registrar,
        }
    }

    /// The SIP Call-ID, for the events that carry one.
    pub fn call_id(&self) -> Option<&CallId> {
        match self {
            Self::SessionCreated { call_id, .. } | Self::StateChanged { call_id, .. } => {
                Some(call_id)
            }
            _ => None,
        }
    }

    /// A custom event about `session` (or about no session), with an application payload.
    pub fn custom(session: Option<SessionId>, name: impl Into<Arc<str>>, payload: Payload) -> Self {
        Self::Custom {
            session_id: session,
            name: name.into(),
            payload,
        }
    }
}

/// The kind of a [`SessionEvent`], without its data: what a [`crate::Filter`] selects on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum EventKind {
    /// [`SessionEvent::SessionCreated`].
    SessionCreated,
    /// [`SessionEvent::StateChanged`].
    StateChanged,
    /// [`SessionEvent::MediaStarted`].
    MediaStarted,
    /// [`SessionEvent::MediaStopped`].
    MediaStopped,
    /// [`SessionEvent::DtmfReceived`].
    DtmfReceived,
    /// [`SessionEvent::SessionTerminated`].
    SessionTerminated,
    /// [`SessionEvent::Bridge`].
    Bridge,
    /// [`SessionEvent::Custom`].
    Custom,
    /// [`SessionEvent::PlaybackFinished`].
    PlaybackFinished,
    /// [`SessionEvent::GroupMemberJoined`].
    GroupMemberJoined,
    /// [`SessionEvent::GroupMemberLeft`].
    GroupMemberLeft,
    /// [`SessionEvent::GroupEmpty`].
    GroupEmpty,
    /// [`SessionEvent::DependencyEnded`].
    DependencyEnded,
    /// [`SessionEvent::Registrar`].
    Registrar,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 14] = [
        Self::SessionCreated,
        Self::StateChanged,
        Self::MediaStarted,
        Self::MediaStopped,
        Self::DtmfReceived,
        Self::SessionTerminated,
        Self::Bridge,
        Self::Custom,
        Self::PlaybackFinished,
        Self::GroupMemberJoined,
        Self::GroupMemberLeft,
        Self::GroupEmpty,
        Self::DependencyEnded,
        Self::Registrar,
    ];

    /// A short stable name, e.g. `state-changed`, for logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SessionCreated => "session-created",
            Self::StateChanged => "state-changed",
            Self::MediaStarted => "media-started",
            Self::MediaStopped => "media-stopped",
            Self::DtmfReceived => "dtmf-received",
            Self::SessionTerminated => "session-terminated",
            Self::Bridge => "bridge",
            Self::Custom => "custom",
            Self::PlaybackFinished => "playback-finished",
            Self::GroupMemberJoined => "group-member-joined",
            Self::GroupMemberLeft => "group-member-left",
            Self::GroupEmpty => "group-empty",
            Self::DependencyEnded => "dependency-ended",
            Self::Registrar => "registrar",
        }
    }

    /// This kind's bit in a filter's kind mask.
    pub(crate) const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a session ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum TerminationReason {
    /// We hung up (sent BYE).
    LocalHangup,
    /// The peer hung up (sent BYE).
    RemoteHangup,
    /// The call was cancelled before it was answered (CANCEL, either side).
    Cancelled,
    /// The call failed.
    Failed(FailureReason),
    /// The library shut down while the session was live.
    Shutdown,
}

impl TerminationReason {
    /// The final call state this reason leads to.
    pub const fn final_state(self) -> CallState {
        match self {
            Self::LocalHangup | Self::RemoteHangup | Self::Shutdown => CallState::Terminated,
            Self::Cancelled => CallState::Cancelled,
            Self::Failed(reason) => CallState::Failed(reason),
        }
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalHangup => f.write_str("local hangup"),
            Self::RemoteHangup => f.write_str("remote hangup"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
            Self::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// The data of a [`SessionEvent::Custom`] event: any `Send + Sync` value, shared.
///
/// Two payloads compare equal when they are the same allocation (clones of one payload), since
/// arbitrary values cannot be compared.
#[derive(Clone)]
pub struct Payload(Option<Arc<dyn Any + Send + Sync>>);

impl Payload {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Some(Arc::new(value)))
    }

    /// No data: the event's name says it all.
    pub const fn empty() -> Self {
        Self(None)
    }

    /// Whether there is no data.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The value, if there is one and it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|value| value.downcast_ref())
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::empty()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("Payload(empty)"),
            Some(_) => f.write_str("Payload(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::StatusCode;

    #[test]
    fn kinds_have_distinct_bits_and_names() {
        let mut bits = 0u32;
        for kind in EventKind::ALL {
            assert_eq!(bits & kind.bit(), 0, "{kind} shares a bit");
            bits |= kind.bit();
        }
        let names: std::collections::HashSet<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
    }

    #[test]
    fn events_know_their_session_and_kind() {
        let id = SessionId::new();
        let event = SessionEvent::DtmfReceived {
            session_id: id,
            digit: '5',
            duration: Duration::from_millis(100),
        };
        assert_eq!(event.session_id(), Some(id));
        assert_eq!(event.kind(), EventKind::DtmfReceived);
        assert_eq!(event.call_id(), None);

        let custom = SessionEvent::custom(None, "tick", Payload::empty());
        assert_eq!(custom.session_id(), None);
        assert_eq!(custom.kind(), EventKind::Custom);

        let created = SessionEvent::SessionCreated {
            session_id: id,
            direction: Direction::Inbound,
            call_id: CallId::from("abc@host"),
            from: "sip:alice@example.com".into(),
            to: "sip:bob@example.com".into(),
        };
        assert_eq!(created.call_id().map(CallId::as_str), Some("abc@host"));
    }

    #[test]
    fn payloads_downcast_and_compare_by_identity() {
        let payload = Payload::new(42u32);
        assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
        assert_eq!(payload.downcast_ref::<u64>(), None);
        assert_eq!(payload.clone(), payload);
        assert_ne!(Payload::new(42u32), payload);
        assert_eq!(Payload::empty(), Payload::default());
        assert!(Payload::empty().is_empty());
    }

    #[test]
    fn termination_reasons_map_to_final_states() {
        let busy = TerminationReason::Failed(FailureReason::Rejected(StatusCode::BUSY_HERE));
        assert!(busy.final_state().is_final());
        assert_eq!(
            TerminationReason::Cancelled.final_state(),
            CallState::Cancelled
        );
        assert_eq!(
            TerminationReason::RemoteHangup.final_state(),
            CallState::Terminated
        );
    }
}
