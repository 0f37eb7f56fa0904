//! [`EventLog`]: what a manager published on its bus, kept in order, and the waits that check
//! it — [`EventLog::expect`], [`EventLog::expect_in_order`], [`EventLog::expect_none`] — each
//! bounded by the log's timeout, each failing with a report that shows what was expected and
//! what came. The [`crate::event`] module builds the expectations.

use crate::error::{Error, Result};
use crate::expect::{self, Expect, Progress};
use session_core::crates::events::{RecvError, TryRecvError};
use session_core::{CallSession, EventBus, Filter, SessionEvent, SessionId, SessionManager};
use std::sync::Arc;
use std::time::Duration;

/// Room in an event log's subscription: the events a test may leave unread between two
/// waits before the oldest are dropped (the report then says how many, and where).
pub const EVENT_LOG_CAPACITY: usize = 4096;

/// The default bound of every wait of the kit: generous on loopback, where a call takes
/// milliseconds, and free in virtual time, where an idle wait costs nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The events of a bus (a whole manager's, one call's, a filter's), received in order and
/// kept, with waits that check them.
///
/// A wait reads from the log's *cursor*: an expectation met moves the cursor past the event
/// that met it, so consecutive waits check consecutive stretches of the log, and events of
/// other sessions in between are skipped. [`EventLog::seen`] is everything received so far.
pub struct EventLog {
    subscription: session_core::Subscription,
    events: Vec<Arc<SessionEvent>>,
    /// Events lost before the event at this index (the subscription's queue was full).
    gaps: Vec<(usize, u64)>,
    cursor: usize,
    closed: bool,
    timeout: Duration,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("events", &self.events.len())
            .field("cursor", &self.cursor)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl EventLog {
    /// Every event of `manager` from now on (subscribe before acting, so nothing is missed).
    pub fn all(manager: &SessionManager) -> Self {
        Self::new(manager.events(), Filter::all())
    }

    /// Events of `bus` that `filter` selects, from now on.
    pub fn new(bus: &EventBus, filter: Filter) -> Self {
        let subscription = match bus.subscribe_with_capacity(filter.clone(), EVENT_LOG_CAPACITY) {
            Ok(subscription) => subscription,
            // Only a zero capacity is refused, and ours is not zero; the default one will do.
            Err(_) => bus.subscribe(filter),
        };
        Self::from_subscription(subscription)
    }

    /// The events of one call (its state changes, media, digits, its end).
    pub fn call(call: &CallSession) -> Self {
        Self::from_subscription(call.events())
    }

    /// The events of a subscription made elsewhere (a group's, say).
    pub fn from_subscription(subscription: session_core::Subscription) -> Self {
        Self {
            subscription,
            events: Vec::new(),
            gaps: Vec::new(),
            cursor: 0,
            closed: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds every wait to `timeout` ([`DEFAULT_TIMEOUT`] by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Every event received so far (what is queued is taken in first, without waiting).
    pub fn seen(&mut self) -> &[Arc<SessionEvent>] {
        self.take_queued();
        &self.events
    }

    /// The log as text, one event a line, as failure reports show it.
    pub fn render(&mut self) -> String {
        self.take_queued();
        let mut out = String::new();
        expect::report_items(&mut out, &self.events, 0, |event| describe_event(event));
        out
    }

    /// Waits for an event that meets `expect`, after the cursor; returns it.
    pub async fn expect(&mut self, expect: Expect<SessionEvent>) -> Result<Arc<SessionEvent>> {
        let mut met = self.expect_in_order([expect]).await?;
        // `expect_in_order` returns one event per expectation, and there was one.
        met.pop()
            .ok_or_else(|| Error::Expectation("no event was returned".to_owned()))
    }

    /// Waits until the events after the cursor meet `expects` in order (each by an event after
    /// the one that met the one before; other events are skipped); returns the events that
    /// met them and moves the cursor past the last. Fails with a report when the log's timeout
    /// runs out first.
    pub async fn expect_in_order(
        &mut self,
        expects: impl IntoIterator<Item = Expect<SessionEvent>>,
    ) -> Result<Vec<Arc<SessionEvent>>> {
        let expects: Vec<_> = expects.into_iter().collect();
        let start = self.cursor;
        let mut progress = Progress::from(start);
        let deadline = crate::time::deadline(self.timeout);
        loop {
            self.take_queued();
            if progress.advance(&expects, &self.events) {
                self.cursor = progress.met.last().map_or(self.cursor, |last| last + 1);
                return Ok(progress
                    .met
                    .iter()
                    .map(|&i| Arc::clone(&self.events[i]))
                    .collect());
            }
            if self.closed || !self.receive_until(deadline).await {
                return Err(Error::Expectation(self.report(&expects, &progress, start)));
            }
        }
    }

    /// Checks that no event after the cursor meets `expect` for `window` (virtual time in a
    /// paused runtime, so waiting for an absence is free there). The cursor does not move.
    pub async fn expect_none(
        &mut self,
        expect: Expect<SessionEvent>,
        window: Duration,
    ) -> Result<()> {
        let deadline = crate::time::deadline(window);
        loop {
            self.take_queued();
            if let Some(found) = self.events[self.cursor..]
                .iter()
                .position(|event| expect.matches(event))
            {
                let mut text = format!(
                    "expected no event like \"{expect}\" within {window:?}, but item {} is:\n",
                    self.cursor + found
                );
                expect::report_items(&mut text, &self.events, self.cursor, |event| {
                    describe_event(event)
                });
                return Err(Error::Expectation(text));
            }
            if self.closed || !self.receive_until(deadline).await {
                return Ok(());
            }
        }
    }

    /// Moves the cursor past everything received so far: the next wait looks at new events
    /// only.
    pub fn skip_seen(&mut self) {
        self.take_queued();
        self.cursor = self.events.len();
    }

    fn take_queued(&mut self) {
        while !self.closed {
            match self.subscription.try_recv() {
                Ok(event) => self.events.push(event),
                Err(TryRecvError::Lagged(missed)) => self.gaps.push((self.events.len(), missed)),
                Err(TryRecvError::Closed) => self.closed = true,
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Receives one more event (or a gap, or the end) unless `deadline` comes first; `false`
    /// when it came first.
    async fn receive_until(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.subscription.recv()).await {
            Err(_) => false,
            Ok(Ok(event)) => {
                self.events.push(event);
                true
            }
            Ok(Err(RecvError::Lagged(missed))) => {
                self.gaps.push((self.events.len(), missed));
                true
            }
            Ok(Err(_)) => {
                self.closed = true;
                true
            }
        }
    }

    fn report(
        &self,
        expects: &[Expect<SessionEvent>],
        progress: &Progress,
        start: usize,
    ) -> String {
        let mut notes: Vec<String> = self
            .gaps
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(at, missed)| {
                format!("{missed} event(s) were lost before item {at}: the log fell behind")
            })
            .collect();
        if self.closed {
            notes.push("the subscription closed: no more events will come".to_owned());
        }
        if start > 0 {
            notes.push(format!(
                "items before {start} were matched by earlier waits"
            ));
        }
        expect::report(
            expects,
            progress,
            &self.events,
            start,
            self.timeout,
            |event| describe_event(event),
            &notes,
        )
    }
}

/// The last 8 hex digits of a session id: enough to tell a test's sessions apart. (Its first
/// digits are a UUID v7's timestamp, the same for every session of a test.)
pub(crate) fn short(session: SessionId) -> String {
    let text = session.to_string();
    let skip = text.chars().count().saturating_sub(8);
    text.chars().skip(skip).collect()
}

/// One line about an event, as reports print it.
pub fn describe_event(event: &SessionEvent) -> String {
    let who = event
        .session_id()
        .map_or_else(|| "--------".to_owned(), short);
    let what = match event {
        SessionEvent::SessionCreated {
            direction,
            from,
            to,
            ..
        } => format!("created: {direction} {from} → {to}"),
        SessionEvent::StateChanged { old, new, .. } => format!("state {old} → {new}"),
        SessionEvent::MediaStarted {
            codec,
            local,
            remote,
            ..
        } => format!("media started: {codec} {local} ⇄ {remote}"),
        SessionEvent::MediaStopped { .. } => "media stopped".to_owned(),
        SessionEvent::DtmfReceived { digit, .. } => format!("digit {digit}"),
        SessionEvent::PlaybackFinished { end, .. } => format!("playback finished ({end:?})"),
        SessionEvent::GroupMemberJoined { group, .. } => format!("joined group {group}"),
        SessionEvent::GroupMemberLeft { group, .. } => format!("left group {group}"),
        SessionEvent::GroupEmpty { group } => format!("group {group} empty"),
        SessionEvent::DependencyEnded { ended, .. } => {
            format!("depended on {}, which ended", short(*ended))
        }
        SessionEvent::SessionTerminated { reason, .. } => format!("terminated: {reason}"),
        SessionEvent::Bridge { bridge, change, .. } => format!("bridge {bridge}: {change:?}"),
        SessionEvent::Custom { name, .. } => format!("custom \"{name}\""),
        other => format!("{:?}", other.kind()),
    };
    format!("{who} {what}")
}
