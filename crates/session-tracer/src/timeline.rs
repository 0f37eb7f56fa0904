//! A snapshot of one session's trace: [`Timeline`], its [`TimedEntry`]s with offsets from the
//! session's first entry, the [`Gap`] left where entries were dropped, and the text rendering.
//!
//! ```text
//! session 00000000-0000-0000-0000-00000000002a  Call-ID a84b4c76e66710@pc33  live
//! +0.000s    → INVITE sip:bob@biloxi.example.com (CSeq 1, SDP)
//! +0.012s    ← 180 Ringing (CSeq 1 INVITE)
//! +0.020s    state ringing → active
//! ```

use crate::entry::TraceEntry;
use crate::health::Secs;
use crate::tracer::CorrelationId;
use session_types::SessionId;
use std::fmt;
use std::time::{Duration, Instant};

/// One entry of a [`Timeline`] with its time.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct TimedEntry {
    /// Time since the session's first recorded entry (zero for an entry recorded with an
    /// earlier `Instant` than the first).
    pub offset: Duration,
    /// What happened.
    pub entry: TraceEntry,
}

/// Where a [`Timeline`] lost entries to the per-session limit: the first entries are kept, then
/// the newest; the ones in between are counted here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Gap {
    /// How many kept entries come before the gap.
    pub after: usize,
    /// How many entries were dropped there.
    pub dropped: u64,
}

/// A copy of one session's trace, taken by [`crate::SessionTracer::timeline`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Timeline {
    pub(crate) session: SessionId,
    pub(crate) correlation: Option<CorrelationId>,
    pub(crate) started: Instant,
    pub(crate) finished: Option<Duration>,
    pub(crate) entries: Vec<TimedEntry>,
    pub(crate) gap: Option<Gap>,
}

impl Timeline {
    /// The session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The session's correlation, if it was correlated with another.
    pub fn correlation(&self) -> Option<CorrelationId> {
        self.correlation
    }

    /// When the session's first entry was recorded; offsets count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the session finished (offset from [`Timeline::started`]), or `None` while it lives.
    pub fn finished(&self) -> Option<Duration> {
        self.finished
    }

    /// The kept entries, in the order they were recorded.
    pub fn entries(&self) -> &[TimedEntry] {
        &self.entries
    }

    /// Where entries were dropped, if any were.
    pub fn gap(&self) -> Option<Gap> {
        self.gap
    }

    /// The Call-ID of the first SIP message with one.
    pub fn call_id(&self) -> Option<&str> {
        self.entries.iter().find_map(|timed| match &timed.entry {
            TraceEntry::SipIn(sip) | TraceEntry::SipOut(sip) => sip.call_id.as_deref(),
            _ => None,
        })
    }

    /// The timeline as text: a header line, then one line per entry (see the module docs).
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", self.session)?;
        if let Some(call_id) = self.call_id() {
            write!(f, "  Call-ID {call_id}")?;
        }
        if let Some(correlation) = self.correlation {
            write!(f, "  correlation {correlation}")?;
        }
        match self.finished {
            Some(at) => writeln!(f, "  finished at +{}", Secs(at))?,
            None => writeln!(f, "  live")?,
        }
        for (index, timed) in self.entries.iter().enumerate() {
            if let Some(gap) = self.gap.filter(|gap| gap.after == index) {
                writeln!(f, "           … {} entries dropped …", gap.dropped)?;
            }
            let offset = format!("+{}", Secs(timed.offset));
            writeln!(f, "{offset:<10} {}", timed.entry)?;
        }
        if let Some(gap) = self.gap.filter(|gap| gap.after >= self.entries.len()) {
            writeln!(f, "           … {} entries dropped …", gap.dropped)?;
        }
        Ok(())
    }
}
