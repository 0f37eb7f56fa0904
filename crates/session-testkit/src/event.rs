//! Expectations on [`SessionEvent`]s, for an [`EventLog`](crate::EventLog):
//! `event::state(CallState::Ringing)`, `event::terminated_with(reason)`, … — each describes
//! itself for the failure report. [`Expect::session`] narrows one to a session,
//! [`Expect::and`] to anything else.

use crate::expect::Expect;
use session_core::crates::events::EventKind;
use session_core::{
    BridgeChange, CallState, Direction, PlaybackEnd, SessionEvent, SessionId, TerminationReason,
};

impl Expect<SessionEvent> {
    /// The same expectation, about `session` only.
    #[must_use]
    pub fn session(self, session: SessionId) -> Self {
        self.and(
            format_args!("session {}", crate::events::short(session)),
            move |event| event.session_id() == Some(session),
        )
    }
}

/// Any event at all.
pub fn any() -> Expect<SessionEvent> {
    Expect::new("any event", |_| true)
}

/// An event of this kind.
pub fn kind(kind: EventKind) -> Expect<SessionEvent> {
    Expect::new(format!("{kind:?}"), move |event: &SessionEvent| {
        event.kind() == kind
    })
}

/// A session was created (either direction).
pub fn created() -> Expect<SessionEvent> {
    Expect::new("created", |event| {
        matches!(event, SessionEvent::SessionCreated { .. })
    })
}

/// A session was created for a call in `direction`.
pub fn created_in(direction: Direction) -> Expect<SessionEvent> {
    Expect::new(
        format!("created: {direction}"),
        move |event| matches!(event, SessionEvent::SessionCreated { direction: d, .. } if *d == direction),
    )
}

/// A session was created for a call whose `To` URI (the callee) contains `callee`.
pub fn created_for(callee: &str) -> Expect<SessionEvent> {
    let callee = callee.to_owned();
    Expect::new(
        format!("created for {callee}"),
        move |event| matches!(event, SessionEvent::SessionCreated { to, .. } if to.contains(callee.as_str())),
    )
}

/// A state change into `state`.
pub fn state(state: CallState) -> Expect<SessionEvent> {
    Expect::new(
        format!("state → {state}"),
        move |event| matches!(event, SessionEvent::StateChanged { new, .. } if *new == state),
    )
}

/// A state change into a state that `test` accepts (e.g. `CallState::is_final`), described as
/// `description`.
pub fn state_where(
    description: &str,
    test: impl Fn(CallState) -> bool + Send + Sync + 'static,
) -> Expect<SessionEvent> {
    Expect::new(
        format!("state → {description}"),
        move |event| matches!(event, SessionEvent::StateChanged { new, .. } if test(*new)),
    )
}

/// The state change from `old` to `new`.
pub fn transition(old: CallState, new: CallState) -> Expect<SessionEvent> {
    Expect::new(
        format!("state {old} → {new}"),
        move |event| matches!(event, SessionEvent::StateChanged { old: o, new: n, .. } if *o == old && *n == new),
    )
}

/// Media started (offer/answer done, the RTP endpoint open).
pub fn media_started() -> Expect<SessionEvent> {
    Expect::new("media started", |event| {
        matches!(event, SessionEvent::MediaStarted { .. })
    })
}

/// Media stopped.
pub fn media_stopped() -> Expect<SessionEvent> {
    Expect::new("media stopped", |event| {
        matches!(event, SessionEvent::MediaStopped { .. })
    })
}

/// The peer sent `digit`.
pub fn dtmf(digit: char) -> Expect<SessionEvent> {
    Expect::new(
        format!("digit {digit}"),
        move |event| matches!(event, SessionEvent::DtmfReceived { digit: d, .. } if *d == digit),
    )
}

/// A playback ended as `end` says.
pub fn playback_finished(end: PlaybackEnd) -> Expect<SessionEvent> {
    Expect::new(
        format!("playback finished ({end:?})"),
        move |event| matches!(event, SessionEvent::PlaybackFinished { end: e, .. } if *e == end),
    )
}

/// A bridge change (joined, left, moved …) of the kind `change` is.
pub fn bridge(change: BridgeChange) -> Expect<SessionEvent> {
    Expect::new(
        format!("bridge {change:?}"),
        move |event| matches!(event, SessionEvent::Bridge { change: c, .. } if std::mem::discriminant(c) == std::mem::discriminant(&change)),
    )
}

/// A session ended and released everything (any reason).
pub fn terminated() -> Expect<SessionEvent> {
    Expect::new("terminated", |event| {
        matches!(event, SessionEvent::SessionTerminated { .. })
    })
}

/// A session ended for `reason`.
pub fn terminated_with(reason: TerminationReason) -> Expect<SessionEvent> {
    Expect::new(
        format!("terminated: {reason}"),
        move |event| matches!(event, SessionEvent::SessionTerminated { reason: r, .. } if *r == reason),
    )
}

/// An application event named `name` ([`SessionEvent::Custom`]).
pub fn custom(name: &str) -> Expect<SessionEvent> {
    let name = name.to_owned();
    Expect::new(
        format!("custom \"{name}\""),
        move |event| matches!(event, SessionEvent::Custom { name: n, .. } if **n == *name),
    )
}
