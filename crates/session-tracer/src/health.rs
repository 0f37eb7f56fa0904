//! Health analysis: [`HealthThresholds`] (when a rule fires), the [`HealthIssue`]s that
//! [`crate::SessionTracer::health`] reports, and the small per-session watch that keeps just
//! enough state to judge them without reading the timeline again.
//!
//! Every rule compares a duration measured from a recorded `Instant` with its threshold, and
//! fires once `now - since >= threshold`: not a nanosecond before. Finished sessions are never
//! reported.

use crate::entry::{Flow, SipSummary, StartLine, TraceEntry};
use session_sip::Method;
use session_types::{CallState, SessionId};
use std::fmt;
use std::time::{Duration, Instant};

use crate::tracer::CorrelationId;

/// When each health rule fires. Build from [`HealthThresholds::default`] and adjust with the
/// setters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// An INVITE (sent or received) without a final response for this long is reported as
    /// [`HealthKind::NoFinalResponse`]. Default 60 s.
    pub answer_timeout: Duration,
    /// Any other request (BYE, CANCEL, UPDATE, …) without a final response for this long is
    /// reported as [`HealthKind::NoFinalResponse`]. Default 32 s (64·T1, RFC 3261 Timer F).
    pub request_timeout: Duration,
    /// A 2xx to an INVITE not acknowledged for this long is reported as [`HealthKind::NoAck`].
    /// Default 5 s.
    pub ack_timeout: Duration,
    /// With media started and not on hold, RTP that has not moved (per the recorded
    /// [`TraceEntry::RtpCounters`]) for this long in both directions is
    /// [`HealthKind::NoAudio`], in one direction [`HealthKind::OneWayAudio`]. Default 10 s.
    pub no_audio_after: Duration,
    /// A call on hold this long is reported as [`HealthKind::LongHold`]. Default 10 minutes.
    pub long_hold: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            answer_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(32),
            ack_timeout: Duration::from_secs(5),
            no_audio_after: Duration::from_secs(10),
            long_hold: Duration::from_secs(600),
        }
    }
}

impl HealthThresholds {
    /// Sets [`HealthThresholds::answer_timeout`].
    pub fn answer_timeout(mut self, after: Duration) -> Self {
        self.answer_timeout = after;
        self
    }

    /// Sets [`HealthThresholds::request_timeout`].
    pub fn request_timeout(mut self, after: Duration) -> Self {
        self.request_timeout = after;
        self
    }

    /// Sets [`HealthThresholds::ack_timeout`].
    pub fn ack_timeout(mut self, after: Duration) -> Self {
        self.ack_timeout = after;
        self
    }

    /// Sets [`HealthThresholds::no_audio_after`].
    pub fn no_audio_after(mut self, after: Duration) -> Self {
        self.no_audio_after = after;
        self
    }

    /// Sets [`HealthThresholds::long_hold`].
    pub fn long_hold(mut self, after: Duration) -> Self {
        self.long_hold = after;
        self
    }
}

/// Something wrong with a live session, found by [`crate::SessionTracer::health`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct HealthIssue {
    /// The session.
    pub session: SessionId,
    /// Its correlation, so issues of the legs of one call can be grouped.
    pub correlation: Option<CorrelationId>,
    /// What is wrong.
    pub kind: HealthKind,
}

impl fmt::Display for HealthIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}: {}", self.session, self.kind)
    }
}

/// What a [`HealthIssue`] is about.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HealthKind {
    /// A request has had no final response (a received one: we never answered it).
    NoFinalResponse {
        /// The request's method.
        method: Method,
        /// Its CSeq number.
        cseq: u32,
        /// Whether we sent it or received it.
        request: Flow,
        /// How long since it was first recorded.
        waited: Duration,
    },
    /// A 2xx to an INVITE has not been acknowledged (a received one: we never sent the ACK).
    NoAck {
        /// The INVITE's CSeq number.
        cseq: u32,
        /// Whether we sent the 2xx or received it.
        response: Flow,
        /// How long since the 2xx was first recorded.
        waited: Duration,
    },
    /// Media is up but no RTP moved either way.
    NoAudio {
        /// How long both directions have been still.
        silent_for: Duration,
    },
    /// Media is up but RTP moves one way only.
    OneWayAudio {
        /// The still direction: [`Flow::Received`] when nothing arrives from the peer,
        /// [`Flow::Sent`] when we send nothing.
        silent: Flow,
        /// How long that direction has been still.
        silent_for: Duration,
    },
    /// The call has been on hold a long time.
    LongHold {
        /// How long.
        held_for: Duration,
    },
}

impl fmt::Display for HealthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFinalResponse {
                method,
                cseq,
                request: Flow::Sent,
                waited,
            } => write!(
                f,
                "no final response to the {method} we sent (CSeq {cseq}) after {}",
                Secs(*waited)
            ),
            Self::NoFinalResponse {
                method,
                cseq,
                request: Flow::Received,
                waited,
            } => write!(
                f,
                "the {method} we received (CSeq {cseq}) has had no final response for {}",
                Secs(*waited)
            ),
            Self::NoAck {
                cseq,
                response: Flow::Sent,
                waited,
            } => write!(
                f,
                "no ACK for the 2xx we sent to INVITE (CSeq {cseq}) after {}",
                Secs(*waited)
            ),
            Self::NoAck {
                cseq,
                response: Flow::Received,
                waited,
            } => write!(
                f,
                "we sent no ACK for the 2xx we received to INVITE (CSeq {cseq}) after {}",
                Secs(*waited)
            ),
            Self::NoAudio { silent_for } => {
                write!(f, "no audio either way for {}", Secs(*silent_for))
            }
            Self::OneWayAudio {
                silent: Flow::Received,
                silent_for,
            } => write!(
                f,
                "one-way audio: nothing received for {}",
                Secs(*silent_for)
            ),
            Self::OneWayAudio {
                silent: Flow::Sent,
                silent_for,
            } => write!(f, "one-way audio: nothing sent for {}", Secs(*silent_for)),
            Self::LongHold { held_for } => write!(f, "on hold for {}", Secs(*held_for)),
        }
    }
}

/// Formats a duration as seconds with millisecond precision: `12.345s`.
pub(crate) struct Secs(pub(crate) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0.as_secs(), self.0.subsec_millis())
    }
}

/// Requests awaiting a final response that one session remembers; older ones are forgotten
/// beyond this (a session has one or two at a time in practice).
const MAX_PENDING_REQUESTS: usize = 8;

/// A request seen without its final response yet.
#[derive(Clone, Debug)]
struct PendingRequest {
    flow: Flow,
    cseq: u32,
    method: Method,
    since: Instant,
}

/// A 2xx to an INVITE seen without its ACK yet.
#[derive(Clone, Copy, Debug)]
struct PendingAck {
    /// Which way the 2xx went; the ACK goes the other way.
    response: Flow,
    cseq: u32,
    since: Instant,
}

/// Media progress since [`TraceEntry::MediaStarted`].
#[derive(Clone, Copy, Debug)]
struct MediaWatch {
    /// The last counters, once any were recorded; the audio rules wait for the first.
    counters: Option<(u64, u64)>,
    /// When the sent counter last moved (or media started, or hold ended).
    sent_moved: Instant,
    /// When the received counter last moved (or media started, or hold ended).
    received_moved: Instant,
}

/// What one session's health rules need, updated entry by entry as they are recorded.
#[derive(Clone, Debug, Default)]
pub(crate) struct HealthWatch {
    pending_requests: Vec<PendingRequest>,
    pending_ack: Option<PendingAck>,
    media: Option<MediaWatch>,
    held_since: Option<Instant>,
}

impl HealthWatch {
    /// Takes note of an entry recorded at `at`.
    pub(crate) fn observe(&mut self, at: Instant, entry: &TraceEntry) {
        match entry {
            TraceEntry::SipOut(sip) => self.observe_sip(at, Flow::Sent, sip),
            TraceEntry::SipIn(sip) => self.observe_sip(at, Flow::Received, sip),
            TraceEntry::State { to, .. } => match to {
                CallState::OnHold => self.hold(at),
                CallState::Active => self.resume(at),
                _ => {}
            },
            TraceEntry::Hold => self.hold(at),
            TraceEntry::Resume => self.resume(at),
            TraceEntry::MediaStarted { .. } => {
                self.media = Some(MediaWatch {
                    counters: None,
                    sent_moved: at,
                    received_moved: at,
                });
            }
            TraceEntry::MediaStopped => self.media = None,
            TraceEntry::RtpCounters { sent, received } => {
                if let Some(media) = &mut self.media {
                    let (last_sent, last_received) = media.counters.unwrap_or((0, 0));
                    if *sent != last_sent {
                        media.sent_moved = at;
                    }
                    if *received != last_received {
                        media.received_moved = at;
                    }
                    media.counters = Some((*sent, *received));
                }
            }
            TraceEntry::Dtmf { .. } | TraceEntry::Note(_) => {}
        }
    }

    fn hold(&mut self, at: Instant) {
        self.held_since.get_or_insert(at);
    }

    fn resume(&mut self, at: Instant) {
        if self.held_since.take().is_some() {
            // Audio was expected to be still while held; judge it afresh from now.
            if let Some(media) = &mut self.media {
                media.sent_moved = at;
                media.received_moved = at;
            }
        }
    }

    fn observe_sip(&mut self, at: Instant, flow: Flow, sip: &SipSummary) {
        let Some(cseq) = &sip.cseq else {
            return;
        };
        match &sip.start {
            StartLine::Request {
                method: Method::Ack,
                ..
            } => {
                if self
                    .pending_ack
                    .is_some_and(|p| p.response == flow.opposite() && p.cseq == cseq.seq)
                {
                    self.pending_ack = None;
                }
            }
            StartLine::Request { method, .. } => {
                let known = self
                    .pending_requests
                    .iter()
                    .any(|p| p.flow == flow && p.cseq == cseq.seq && p.method == *method);
                // A retransmission keeps the time of the first copy.
                if !known {
                    if self.pending_requests.len() == MAX_PENDING_REQUESTS {
                        self.pending_requests.remove(0);
                    }
                    self.pending_requests.push(PendingRequest {
                        flow,
                        cseq: cseq.seq,
                        method: method.clone(),
                        since: at,
                    });
                }
            }
            StartLine::Response { status, .. } => {
                if !status.is_final() {
                    return;
                }
                self.pending_requests.retain(|p| {
                    !(p.flow == flow.opposite() && p.cseq == cseq.seq && p.method == cseq.method)
                });
                let awaits_this_ack = self
                    .pending_ack
                    .is_some_and(|p| p.response == flow && p.cseq == cseq.seq);
                if status.is_success() && cseq.method == Method::Invite && !awaits_this_ack {
                    self.pending_ack = Some(PendingAck {
                        response: flow,
                        cseq: cseq.seq,
                        since: at,
                    });
                }
            }
        }
    }

    /// The issues of this session at `now`, in a fixed order: requests, ACK, audio, hold.
    pub(crate) fn check(&self, now: Instant, limits: &HealthThresholds, out: &mut Vec<HealthKind>) {
        for pending in &self.pending_requests {
            let limit = if pending.method == Method::Invite {
                limits.answer_timeout
            } else {
                limits.request_timeout
            };
            let waited = now.saturating_duration_since(pending.since);
            if waited >= limit {
                out.push(HealthKind::NoFinalResponse {
                    method: pending.method.clone(),
                    cseq: pending.cseq,
                    request: pending.flow,
                    waited,
                });
            }
        }
        if let Some(pending) = self.pending_ack {
            let waited = now.saturating_duration_since(pending.since);
            if waited >= limits.ack_timeout {
                out.push(HealthKind::NoAck {
                    cseq: pending.cseq,
                    response: pending.response,
                    waited,
                });
            }
        }
        if let (Some(media), None) = (self.media, self.held_since)
            && media.counters.is_some()
        {
            let sent_still = now.saturating_duration_since(media.sent_moved);
            let received_still = now.saturating_duration_since(media.received_moved);
            let limit = limits.no_audio_after;
            match (sent_still >= limit, received_still >= limit) {
                (true, true) => out.push(HealthKind::NoAudio {
                    silent_for: sent_still.min(received_still),
                }),
                (true, false) => out.push(HealthKind::OneWayAudio {
                    silent: Flow::Sent,
                    silent_for: sent_still,
                }),
                (false, true) => out.push(HealthKind::OneWayAudio {
                    silent: Flow::Received,
                    silent_for: received_still,
                }),
                (false, false) => {}
            }
        }
        if let Some(since) = self.held_since {
            let held_for = now.saturating_duration_since(since);
            if held_for >= limits.long_hold {
                out.push(HealthKind::LongHold { held_for });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_show_milliseconds() {
        assert_eq!(Secs(Duration::from_millis(12)).to_string(), "0.012s");
        assert_eq!(Secs(Duration::from_millis(61_005)).to_string(), "61.005s");
    }
}
