//! [`PeerEvent`]: what a [`TestPeer`](crate::TestPeer) received and lived through, as its
//! handler saw it — and the expectations on it (`seen::call_to("agent")`, `seen::digit('5')`,
//! `seen::ended_with(reason)` …) for [`TestPeer::expect`](crate::TestPeer::expect) and its
//! neighbours.

use crate::events::short;
use crate::expect::Expect;
use bytes::Bytes;
use session_core::crates::sip::Request;
use session_core::{CallSession, CallStats, DtmfMethod, SessionId, TerminationReason};
use std::net::SocketAddr;

/// Something a test peer received or lived through, in the order its handler saw it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A call arrived; the answer policy was applied to it.
    Call {
        /// Its session.
        call: CallSession,
        /// The INVITE as received (Request-URI, From, To, every header, the SDP offer).
        invite: Request,
        /// Where it came from.
        source: SocketAddr,
        /// The call it asks to replace (RFC 3891), when it matched one of ours.
        replaces: Option<SessionId>,
    },
    /// A call (either direction) was answered and confirmed.
    Established {
        /// Its session.
        call: CallSession,
    },
    /// The other side sent a digit.
    Digit {
        /// The call.
        session: SessionId,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// RFC 4733 or INFO.
        method: DtmfMethod,
    },
    /// The other side asked this peer to transfer (REFER).
    TransferRequested {
        /// The call the REFER came in.
        session: SessionId,
        /// The `Refer-To` URI.
        target: String,
        /// `Referred-By`, when present.
        referred_by: Option<String>,
        /// Whether it was an attended transfer (`Replaces` in the `Refer-To`).
        attended: bool,
    },
    /// The other side put the call on hold (`held`) or took it off.
    Hold {
        /// The call.
        session: SessionId,
        /// On hold now.
        held: bool,
    },
    /// An INFO (other than DTMF) or a MESSAGE arrived in a call.
    Message {
        /// The call.
        session: SessionId,
        /// `INFO` or `MESSAGE`.
        method: String,
        /// Its `Content-Type`, when present.
        content_type: Option<String>,
        /// Its body.
        body: Bytes,
    },
    /// A call ended and released everything.
    Ended {
        /// The call.
        session: SessionId,
        /// Why.
        reason: TerminationReason,
        /// Its final figures.
        stats: CallStats,
    },
}

impl PeerEvent {
    /// The session it is about.
    pub fn session(&self) -> SessionId {
        match self {
            Self::Call { call, .. } | Self::Established { call } => call.id(),
            Self::Digit { session, .. }
            | Self::TransferRequested { session, .. }
            | Self::Hold { session, .. }
            | Self::Message { session, .. }
            | Self::Ended { session, .. } => *session,
        }
    }

    /// One line about it, as reports print it.
    pub fn describe(&self) -> String {
        let who = short(self.session());
        let what = match self {
            Self::Call { invite, source, .. } => {
                let from = invite
                    .headers
                    .get_by_name("From")
                    .map_or("?", |h| h.value());
                format!("call to {} from {from} (via {source})", invite.uri)
            }
            Self::Established { .. } => "established".to_owned(),
            Self::Digit { digit, method, .. } => format!("digit {digit} ({method:?})"),
            Self::TransferRequested {
                target, attended, ..
            } => {
                let kind = if *attended { "attended" } else { "blind" };
                format!("asked to transfer ({kind}) to {target}")
            }
            Self::Hold { held: true, .. } => "put on hold".to_owned(),
            Self::Hold { held: false, .. } => "taken off hold".to_owned(),
            Self::Message { method, body, .. } => {
                format!("{method} \"{}\"", String::from_utf8_lossy(body))
            }
            Self::Ended { reason, .. } => format!("ended: {reason}"),
        };
        format!("{who} {what}")
    }
}

/// A call arrived (any).
pub fn call() -> Expect<PeerEvent> {
    Expect::new("a call", |event| matches!(event, PeerEvent::Call { .. }))
}

/// A call arrived for this user (the Request-URI's user part).
pub fn call_to(user: &str) -> Expect<PeerEvent> {
    let user = user.to_owned();
    Expect::new(
        format!("a call to {user}"),
        move |event| matches!(event, PeerEvent::Call { invite, .. } if invite.uri.user() == Some(user.as_str())),
    )
}

/// A call arrived whose `From` header contains `caller` (a URI, a user, a display name).
pub fn call_from(caller: &str) -> Expect<PeerEvent> {
    let caller = caller.to_owned();
    Expect::new(format!("a call from {caller}"), move |event| {
        matches!(event, PeerEvent::Call { invite, .. }
            if invite.headers.get_by_name("From").is_some_and(|h| h.value().contains(caller.as_str())))
    })
}

/// A call was answered and confirmed.
pub fn established() -> Expect<PeerEvent> {
    Expect::new("established", |event| {
        matches!(event, PeerEvent::Established { .. })
    })
}

/// The digit `digit` arrived (either method).
pub fn digit(digit: char) -> Expect<PeerEvent> {
    Expect::new(
        format!("digit {digit}"),
        move |event| matches!(event, PeerEvent::Digit { digit: d, .. } if *d == digit),
    )
}

/// The digit `digit` arrived by `method`.
pub fn digit_by(digit: char, method: DtmfMethod) -> Expect<PeerEvent> {
    Expect::new(
        format!("digit {digit} by {method:?}"),
        move |event| matches!(event, PeerEvent::Digit { digit: d, method: m, .. } if *d == digit && *m == method),
    )
}

/// A transfer to a target containing `target` was asked for.
pub fn transfer_to(target: &str) -> Expect<PeerEvent> {
    let target = target.to_owned();
    Expect::new(
        format!("asked to transfer to {target}"),
        move |event| matches!(event, PeerEvent::TransferRequested { target: t, .. } if t.contains(target.as_str())),
    )
}

/// The call was put on hold (`true`) or taken off hold (`false`).
pub fn hold(held: bool) -> Expect<PeerEvent> {
    let text = if held {
        "put on hold"
    } else {
        "taken off hold"
    };
    Expect::new(
        text,
        move |event| matches!(event, PeerEvent::Hold { held: h, .. } if *h == held),
    )
}

/// A MESSAGE or INFO whose body is `text`.
pub fn message(text: &str) -> Expect<PeerEvent> {
    let text = text.to_owned();
    Expect::new(
        format!("message \"{text}\""),
        move |event| matches!(event, PeerEvent::Message { body, .. } if body.as_ref() == text.as_bytes()),
    )
}

/// A call ended (any reason).
pub fn ended() -> Expect<PeerEvent> {
    Expect::new("ended", |event| matches!(event, PeerEvent::Ended { .. }))
}

/// A call ended for `reason`.
pub fn ended_with(reason: TerminationReason) -> Expect<PeerEvent> {
    Expect::new(
        format!("ended: {reason}"),
        move |event| matches!(event, PeerEvent::Ended { reason: r, .. } if *r == reason),
    )
}

impl Expect<PeerEvent> {
    /// The same expectation, about `session` only.
    #[must_use]
    pub fn session(self, session: SessionId) -> Self {
        self.and(format_args!("session {}", short(session)), move |event| {
            event.session() == session
        })
    }
}
