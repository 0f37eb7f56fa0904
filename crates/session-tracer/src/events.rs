//! Feeding the tracer from the event bus: [`SessionTracer::record_event`] turns a
//! [`SessionEvent`] into the matching [`TraceEntry`], for code that already holds the events
//! (a bus subscriber, or the manager right after publishing).
//!
//! The tracer does not subscribe by itself: that would need a task and the clock, and the
//! tracer reads neither. The subscriber passes the time it received the event.

use crate::entry::{DtmfMethod, Flow, TraceEntry};
use crate::tracer::SessionTracer;
use session_events::SessionEvent;
use std::time::Instant;

impl SessionTracer {
    /// Records `event` for its session at `at` and returns whether it was recorded. Events
    /// without a session, and kinds the tracer has no entry for ([`SessionEvent::Custom`]),
    /// are skipped. [`SessionEvent::SessionTerminated`] is kept as a note and finishes the
    /// session.
    pub fn record_event(&self, at: Instant, event: &SessionEvent) -> bool {
        let entry = match event {
            SessionEvent::SessionCreated {
                direction,
                from,
                to,
                ..
            } => TraceEntry::note(format!("created: {direction} call from {from} to {to}")),
            SessionEvent::StateChanged { old, new, .. } => TraceEntry::State {
                from: *old,
                to: *new,
            },
            SessionEvent::MediaStarted {
                codec,
                local,
                remote,
                ..
            } => TraceEntry::MediaStarted {
                codec: codec.clone(),
                local: *local,
                remote: *remote,
            },
            SessionEvent::MediaStopped { .. } => TraceEntry::MediaStopped,
            SessionEvent::DtmfReceived { digit, .. } => TraceEntry::Dtmf {
                digit: *digit,
                method: DtmfMethod::Unknown,
                flow: Flow::Received,
            },
            SessionEvent::SessionTerminated { reason, .. } => {
                TraceEntry::note(format!("terminated: {reason}"))
            }
            _ => return false,
        };
        let Some(session) = event.session_id() else {
            return false;
        };
        self.record(session, at, entry);
        if matches!(event, SessionEvent::SessionTerminated { .. }) {
            self.finish(session, at);
        }
        true
    }
}
