//! [`Filter`]: which events a subscription receives.
//!
//! A filter has a *scope* — all events, or the events of some sessions and of the members of
//! some groups — narrowed by an optional set of [`EventKind`]s and an optional predicate. The
//! scope decides where the bus files the subscription: a scoped one is found by a hash lookup on
//! the event's session (or on the groups that session belongs to), so events of other sessions
//! never reach it, not even to be rejected. Kinds and predicate are checked on the events the
//! scope lets through.

use crate::event::{EventKind, SessionEvent};
use session_types::{GroupId, SessionId};
use std::fmt;
use std::sync::Arc;

/// A predicate on events. Runs on the publisher's thread while the bus holds the publishing
/// session's shard lock: keep it cheap, and never call back into the bus from it.
pub(crate) type Predicate = Arc<dyn Fn(&SessionEvent) -> bool + Send + Sync>;

/// Which events a subscription receives.
///
/// An event passes when it is in the filter's scope **and** its kind is among the filter's kinds
/// (if any were given) **and** the predicate (if any) returns true.
///
/// ```
/// use session_events::{EventKind, Filter};
/// use session_types::{GroupId, SessionId};
///
/// let call = SessionId::new();
/// // Everything about one call.
/// let _ = Filter::session(call);
/// // Only its state changes and its end.
/// let _ = Filter::session(call).with_kinds([EventKind::StateChanged, EventKind::SessionTerminated]);
/// // Every member of a conference, and one more call.
/// let _ = Filter::group(GroupId::from_raw(7)).or_session(call);
/// // DTMF of any session, but only the `#` key.
/// let _ = Filter::kind(EventKind::DtmfReceived)
///     .with_predicate(|e| matches!(e, session_events::SessionEvent::DtmfReceived { digit: '#', .. }));
/// ```
#[derive(Clone)]
pub struct Filter {
    pub(crate) scope: Scope,
    /// Bit mask of accepted [`EventKind`]s; 0 accepts every kind.
    pub(crate) kinds: u32,
    pub(crate) predicate: Option<Predicate>,
}

/// Where the events of a filter come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every event, of every session or of none.
    All,
    /// The events of these sessions and of the current members of these groups (sorted,
    /// without duplicates).
    Scoped {
        sessions: Vec<SessionId>,
        groups: Vec<GroupId>,
    },
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Self {
            scope: Scope::All,
            kinds: 0,
            predicate: None,
        }
    }

    /// The events of one session.
    pub fn session(session: SessionId) -> Self {
        Self::scoped(vec![session], Vec::new())
    }

    /// The events of these sessions. An empty list selects nothing.
    pub fn sessions(sessions: impl IntoIterator<Item = SessionId>) -> Self {
        Self::scoped(sessions.into_iter().collect(), Vec::new())
    }

    /// The events of every session that is a member of `group` when the event is published
    /// (see [`crate::EventBus::join_group`] and [`crate::GroupMembership`]), and the
    /// [`SessionEvent::GroupMemberJoined`] and [`SessionEvent::GroupMemberLeft`] events that
    /// name `group`.
    pub fn group(group: GroupId) -> Self {
        Self::scoped(Vec::new(), vec![group])
    }

    /// The events of every member of any of these groups. An empty list selects nothing.
    pub fn groups(groups: impl IntoIterator<Item = GroupId>) -> Self {
        Self::scoped(Vec::new(), groups.into_iter().collect())
    }

    /// Events of one kind, of any session.
    pub fn kind(kind: EventKind) -> Self {
        Self::all().with_kind(kind)
    }

    /// Events of these kinds, of any session.
    pub fn kinds(kinds: impl IntoIterator<Item = EventKind>) -> Self {
        Self::all().with_kinds(kinds)
    }

    /// Events of any session for which `predicate` returns true.
    ///
    /// The predicate runs on the publisher's thread, under the bus's lock for the publishing
    /// session: keep it cheap and never call the bus from it (that would deadlock). A panic in
    /// it propagates out of [`crate::EventBus::publish`], and the subscriptions not yet served
    /// miss that event; the bus itself stays usable.
    pub fn predicate(predicate: impl Fn(&SessionEvent) -> bool + Send + Sync + 'static) -> Self {
        Self::all().with_predicate(predicate)
    }

    /// Widens the scope to `session` as well. A filter on all events stays on all events.
    pub fn or_session(mut self, session: SessionId) -> Self {
        if let Scope::Scoped { sessions, .. } = &mut self.scope {
            sessions.push(session);
            sessions.sort_unstable();
            sessions.dedup();
        }
        self
    }

    /// Widens the scope to the members of `group` as well. A filter on all events stays on all
    /// events.
    pub fn or_group(mut self, group: GroupId) -> Self {
        if let Scope::Scoped { groups, .. } = &mut self.scope {
            groups.push(group);
            groups.sort_unstable();
            groups.dedup();
        }
        self
    }

    /// Accepts events of `kind`. The first call narrows the filter to that kind; further calls
    /// add kinds.
    pub fn with_kind(mut self, kind: EventKind) -> Self {
        self.kinds |= kind.bit();
        self
    }

    /// Accepts events of these kinds (see [`Filter::with_kind`]). An empty list changes nothing.
    pub fn with_kinds(self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        kinds.into_iter().fold(self, Self::with_kind)
    }

    /// Also requires `predicate` to return true (both predicates must hold when one was already
    /// set). Same rules as [`Filter::predicate`].
    pub fn with_predicate(
        mut self,
        predicate: impl Fn(&SessionEvent) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(match self.predicate.take() {
            None => Arc::new(predicate),
            Some(first) => Arc::new(move |event: &SessionEvent| first(event) && predicate(event)),
        });
        self
    }

    /// Whether this filter's kinds and predicate accept `event`, leaving the scope aside (the
    /// bus has already decided the scope by where it found the subscription).
    pub(crate) fn accepts(&self, event: &SessionEvent) -> bool {
        (self.kinds == 0 || self.kinds & event.kind().bit() != 0)
            && self
                .predicate
                .as_ref()
                .is_none_or(|predicate| predicate(event))
    }

    /// Whether the event passes the whole filter, given the groups its session belongs to.
    /// A [`SessionEvent::GroupMemberJoined`] or [`SessionEvent::GroupMemberLeft`] event is
    /// also in the scope of the group it names (its session may already have left it).
    ///
    /// The bus does not use this (it finds scoped subscriptions by index); it states the
    /// filter's meaning in one place, for tests and for callers filtering events themselves.
    pub fn matches(&self, event: &SessionEvent, groups_of_session: &[GroupId]) -> bool {
        let in_scope = match &self.scope {
            Scope::All => true,
            Scope::Scoped { sessions, groups } => event.session_id().is_some_and(|session| {
                sessions.contains(&session)
                    || groups_of_session.iter().any(|g| groups.contains(g))
                    || event
                        .membership_group()
                        .is_some_and(|g| groups.contains(&g))
            }),
        };
        in_scope && self.accepts(event)
    }

    fn scoped(mut sessions: Vec<SessionId>, mut groups: Vec<GroupId>) -> Self {
        sessions.sort_unstable();
        sessions.dedup();
        groups.sort_unstable();
        groups.dedup();
        Self {
            scope: Scope::Scoped { sessions, groups },
            kinds: 0,
            predicate: None,
        }
    }
}

impl Default for Filter {
    /// [`Filter::all`].
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<EventKind> = EventKind::ALL
            .into_iter()
            .filter(|kind| self.kinds & kind.bit() != 0)
            .collect();
        f.debug_struct("Filter")
            .field("scope", &self.scope)
            .field("kinds", &kinds)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Payload;
    use std::time::Duration;

    fn dtmf(session: SessionId, digit: char) -> SessionEvent {
        SessionEvent::DtmfReceived {
            session_id: session,
            digit,
            duration: Duration::from_millis(80),
        }
    }

    #[test]
    fn scope_kind_and_predicate_all_must_hold() {
        let a = SessionId::new();
        let b = SessionId::new();
        let g = GroupId::from_raw(1);
        let stopped = SessionEvent::MediaStopped { session_id: a };

        assert!(Filter::all().matches(&dtmf(a, '1'), &[]));
        assert!(Filter::session(a).matches(&dtmf(a, '1'), &[]));
        assert!(!Filter::session(a).matches(&dtmf(b, '1'), &[]));
        assert!(Filter::group(g).matches(&dtmf(b, '1'), &[g]));
        assert!(!Filter::group(g).matches(&dtmf(b, '1'), &[]));
        assert!(Filter::group(g).or_session(a).matches(&dtmf(a, '1'), &[]));

        let dtmf_only = Filter::session(a).with_kind(EventKind::DtmfReceived);
        assert!(dtmf_only.matches(&dtmf(a, '1'), &[]));
        assert!(!dtmf_only.matches(&stopped, &[]));
        let either = dtmf_only.with_kind(EventKind::MediaStopped);
        assert!(either.matches(&stopped, &[]));

        let hash_only = Filter::kind(EventKind::DtmfReceived)
            .with_predicate(|e| matches!(e, SessionEvent::DtmfReceived { digit: '#', .. }));
        assert!(hash_only.matches(&dtmf(b, '#'), &[]));
        assert!(!hash_only.matches(&dtmf(b, '1'), &[]));
        let both = hash_only.with_predicate(move |e| e.session_id() == Some(a));
        assert!(both.matches(&dtmf(a, '#'), &[]));
        assert!(!both.matches(&dtmf(b, '#'), &[]));
    }

    #[test]
    fn empty_scopes_select_nothing_and_sessionless_events_need_all() {
        let a = SessionId::new();
        assert!(!Filter::sessions([]).matches(&dtmf(a, '1'), &[]));
        assert!(!Filter::groups([]).matches(&dtmf(a, '1'), &[GroupId::from_raw(3)]));
        let tick = SessionEvent::custom(None, "tick", Payload::empty());
        assert!(Filter::all().matches(&tick, &[]));
        assert!(!Filter::session(a).matches(&tick, &[]));
    }

    #[test]
    fn scopes_are_sorted_and_deduplicated() {
        let a = SessionId::from_u128(2);
        let b = SessionId::from_u128(1);
        let filter = Filter::sessions([a, b, a]).or_session(b);
        assert_eq!(
            filter.scope,
            Scope::Scoped {
                sessions: vec![b, a],
                groups: Vec::new()
            }
        );
        assert_eq!(Filter::all().or_session(a).scope, Scope::All);
        assert!(format!("{:?}", Filter::kind(EventKind::Custom)).contains("Custom"));
    }
}
