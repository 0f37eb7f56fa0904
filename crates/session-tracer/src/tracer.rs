//! The tracer itself: [`SessionTracer`], its [`TracerConfig`], the [`CorrelationId`] that ties
//! call legs together, and the [`TracerStats`] that count what the memory limits dropped.
//!
//! # Layout
//!
//! Sessions live in 32 shards, each a mutex over a hash map; a session's shard comes
//! from its id, so recording an entry for an existing session takes one uncontended lock and one
//! hash lookup. A separate *order* mutex keeps the age of every session — live ones by creation,
//! finished ones by finish — and is taken only when a session is created, finishes or is
//! evicted, never for an ordinary entry. Locks are always taken shard first, then order, and
//! never two shards at once, so they cannot deadlock.

use crate::entry::TraceEntry;
use crate::error::{Error, Result};
use crate::health::{HealthIssue, HealthThresholds, HealthWatch};
use crate::timeline::{Gap, TimedEntry, Timeline};
use parking_lot::Mutex;
use session_types::SessionId;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many shards the session map is split into (a power of two).
const SHARDS: usize = 32;

/// Ties sessions together: every leg of a bridged, transferred or forked call shares one, so
/// [`SessionTracer::related`] can list them. Handed out by [`SessionTracer::correlate`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CorrelationId(u64);

impl CorrelationId {
    /// The raw number (unique within one tracer).
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Limits and thresholds of a [`SessionTracer`]. Start from [`TracerConfig::default`] and
/// adjust with the setters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct TracerConfig {
    /// Most sessions kept at once, live and finished. A new session beyond it evicts the oldest
    /// finished session, or the oldest live one when none has finished. Default 10,000.
    pub max_sessions: usize,
    /// Most entries kept per session: the first half and the newest half; the ones between are
    /// dropped and counted. Default 64.
    pub max_entries_per_session: usize,
    /// How long a finished session stays after it finished (if `max_sessions` does not evict
    /// it first). Expired sessions are removed when a session is created or finished and by
    /// [`SessionTracer::health`]. Default 5 minutes.
    pub keep_finished: Duration,
    /// When the health rules fire.
    pub thresholds: HealthThresholds,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_entries_per_session: 64,
            keep_finished: Duration::from_secs(300),
            thresholds: HealthThresholds::default(),
        }
    }
}

impl TracerConfig {
    /// Sets [`TracerConfig::max_sessions`].
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// Sets [`TracerConfig::max_entries_per_session`].
    pub fn max_entries_per_session(mut self, entries: usize) -> Self {
        self.max_entries_per_session = entries;
        self
    }

    /// Sets [`TracerConfig::keep_finished`].
    pub fn keep_finished(mut self, keep: Duration) -> Self {
        self.keep_finished = keep;
        self
    }

    /// Sets [`TracerConfig::thresholds`].
    pub fn thresholds(mut self, thresholds: HealthThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }
}

/// What a tracer holds and what its limits have dropped since it was created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct TracerStats {
    /// Sessions held now, live and finished.
    pub sessions: usize,
    /// Of those, finished ones.
    pub finished_sessions: usize,
    /// Entries dropped because their session had `max_entries_per_session` already.
    pub entries_dropped: u64,
    /// Finished sessions evicted to make room under `max_sessions`.
    pub finished_evicted: u64,
    /// Live sessions evicted to make room under `max_sessions` (none had finished).
    pub live_evicted: u64,
    /// Finished sessions removed because `keep_finished` had passed.
    pub finished_expired: u64,
}

/// Per-session timelines and health analysis for every call of a process.
///
/// Cheap to clone (all clones share one tracer) and safe to call from any thread. Nothing here
/// reads the clock: every time is an argument. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct SessionTracer {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTracer")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for SessionTracer {
    /// A tracer with [`TracerConfig::default`].
    fn default() -> Self {
        Self::with_valid_config(TracerConfig::default())
    }
}

struct Inner {
    config: TracerConfig,
    shards: Box<[Mutex<Shard>; SHARDS]>,
    order: Mutex<Order>,
    /// Serializes [`SessionTracer::correlate`] calls, which may relabel sessions in many shards.
    correlating: Mutex<()>,
    next_correlation: AtomicU64,
    entries_dropped: AtomicU64,
    finished_evicted: AtomicU64,
    live_evicted: AtomicU64,
    finished_expired: AtomicU64,
}

type Shard = HashMap<SessionId, SessionTrace, BuildHasherDefault<IdHasher>>;

/// One session as the tracer keeps it.
struct SessionTrace {
    /// Creation number: tells this session apart from a later one with the same id (recorded
    /// again after eviction), so an eviction never removes the wrong one.
    generation: u64,
    correlation: Option<CorrelationId>,
    started: Instant,
    finished: Option<Instant>,
    entries: BoundedEntries,
    watch: HealthWatch,
}

#[derive(Clone)]
struct Timed {
    at: Instant,
    entry: TraceEntry,
}

/// The first `head_capacity` entries and a ring of the newest `tail_capacity` ones.
#[derive(Default)]
struct BoundedEntries {
    head: Vec<Timed>,
    tail: VecDeque<Timed>,
    dropped: u64,
}

impl BoundedEntries {
    fn head_capacity(max: usize) -> usize {
        max.div_ceil(2)
    }

    fn tail_capacity(max: usize) -> usize {
        max / 2
    }

    /// The entry recorded last, if it is still kept.
    fn last_mut(&mut self) -> Option<&mut Timed> {
        if !self.tail.is_empty() {
            self.tail.back_mut()
        } else if self.dropped == 0 {
            self.head.last_mut()
        } else {
            None
        }
    }

    /// Keeps `timed`; returns whether an entry had to be dropped for it.
    fn push(&mut self, timed: Timed, max: usize) -> bool {
        if matches!(timed.entry, TraceEntry::RtpCounters { .. })
            && let Some(last) = self.last_mut()
            && matches!(last.entry, TraceEntry::RtpCounters { .. })
        {
            *last = timed;
            return false;
        }
        if self.head.len() < Self::head_capacity(max) {
            self.head.push(timed);
            return false;
        }
        let tail_capacity = Self::tail_capacity(max);
        if tail_capacity == 0 {
            self.dropped += 1;
            return true;
        }
        let full = self.tail.len() >= tail_capacity;
        if full {
            self.tail.pop_front();
            self.dropped += 1;
        }
        self.tail.push_back(timed);
        full
    }
}

/// The age of every session, for eviction: live ones by creation, finished ones by finish.
#[derive(Default)]
struct Order {
    next: u64,
    /// Creation number → session.
    live: BTreeMap<u64, SessionId>,
    /// Finish number → (session, its creation number, when it finished).
    finished: BTreeMap<u64, (SessionId, u64, Instant)>,
}

/// A session the order has let go of and its shard must now remove.
type Victim = (SessionId, u64);

impl Order {
    fn len(&self) -> usize {
        self.live.len() + self.finished.len()
    }

    fn next_number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Finished sessions whose time is up at `now`, oldest first.
    fn expire(&mut self, now: Instant, keep: Duration, victims: &mut Vec<Victim>) -> u64 {
        let mut expired = 0;
        while let Some(entry) = self.finished.first_entry() {
            let (session, generation, finished) = *entry.get();
            if now.saturating_duration_since(finished) < keep {
                break;
            }
            entry.remove();
            victims.push((session, generation));
            expired += 1;
        }
        expired
    }

    /// The oldest finished session, else the oldest live one; `true` when it was live.
    fn evict_oldest(&mut self) -> Option<(Victim, bool)> {
        if let Some((_, (session, generation, _))) = self.finished.pop_first() {
            return Some(((session, generation), false));
        }
        self.live
            .pop_first()
            .map(|(generation, session)| ((session, generation), true))
    }
}

impl SessionTracer {
    /// A tracer with the given limits. Fails when a limit is zero.
    pub fn new(config: TracerConfig) -> Result<Self> {
        if config.max_sessions == 0 {
            return Err(Error::ZeroLimit("max_sessions"));
        }
        if config.max_entries_per_session == 0 {
            return Err(Error::ZeroLimit("max_entries_per_session"));
        }
        Ok(Self::with_valid_config(config))
    }

    fn with_valid_config(config: TracerConfig) -> Self {
        let shards = Box::new(std::array::from_fn(|_| Mutex::new(Shard::default())));
        Self {
            inner: Arc::new(Inner {
                config,
                shards,
                order: Mutex::new(Order::default()),
                correlating: Mutex::new(()),
                next_correlation: AtomicU64::new(0),
                entries_dropped: AtomicU64::new(0),
                finished_evicted: AtomicU64::new(0),
                live_evicted: AtomicU64::new(0),
                finished_expired: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration the tracer was built with.
    pub fn config(&self) -> &TracerConfig {
        &self.inner.config
    }

    fn shard(&self, session: SessionId) -> &Mutex<Shard> {
        // Masked below SHARDS, the length of the array: the index is always in bounds.
        &self.inner.shards[(mix(session.as_u128()) as usize) & (SHARDS - 1)]
    }

    /// Records what happened to `session` at `at`. The first entry of a session creates its
    /// timeline (evicting the oldest session when `max_sessions` are held); a
    /// [`TraceEntry::State`] into a final state marks it finished.
    pub fn record(&self, session: SessionId, at: Instant, entry: TraceEntry) {
        let finishes = matches!(&entry, TraceEntry::State { to, .. } if to.is_final());
        let mut victims = Vec::new();
        {
            let mut shard = self.shard(session).lock();
            let trace = match shard.entry(session) {
                MapEntry::Occupied(occupied) => occupied.into_mut(),
                MapEntry::Vacant(vacant) => {
                    let generation = self.admit(session, at, &mut victims);
                    vacant.insert(SessionTrace {
                        generation,
                        correlation: None,
                        started: at,
                        finished: None,
                        entries: BoundedEntries::default(),
                        watch: HealthWatch::default(),
                    })
                }
            };
            trace.watch.observe(at, &entry);
            let max = self.inner.config.max_entries_per_session;
            if trace.entries.push(Timed { at, entry }, max) {
                self.inner.entries_dropped.fetch_add(1, Ordering::Relaxed);
            }
            if finishes {
                self.mark_finished(session, trace, at, &mut victims);
            }
        }
        self.remove(&victims);
    }

    /// Marks `session` finished at `at`, so it becomes the first to be evicted and is removed
    /// once [`TracerConfig::keep_finished`] has passed. Returns `false` when the session is
    /// unknown or already finished. Recording a final [`TraceEntry::State`] does the same.
    pub fn finish(&self, session: SessionId, at: Instant) -> bool {
        let mut victims = Vec::new();
        let finished = {
            let mut shard = self.shard(session).lock();
            match shard.get_mut(&session) {
                Some(trace) if trace.finished.is_none() => {
                    self.mark_finished(session, trace, at, &mut victims);
                    true
                }
                _ => false,
            }
        };
        self.remove(&victims);
        finished
    }

    /// Registers a new session with the order (called under its shard's lock) and returns its
    /// generation; sessions that must go to make room are added to `victims`.
    fn admit(&self, session: SessionId, at: Instant, victims: &mut Vec<Victim>) -> u64 {
        let config = &self.inner.config;
        let mut order = self.inner.order.lock();
        let expired = order.expire(at, config.keep_finished, victims);
        self.inner
            .finished_expired
            .fetch_add(expired, Ordering::Relaxed);
        while order.len() >= config.max_sessions {
            let Some((victim, was_live)) = order.evict_oldest() else {
                break;
            };
            victims.push(victim);
            let counter = if was_live {
                &self.inner.live_evicted
            } else {
                &self.inner.finished_evicted
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let generation = order.next_number();
        order.live.insert(generation, session);
        generation
    }

    /// Moves a session from live to finished in the order (called under its shard's lock).
    fn mark_finished(
        &self,
        session: SessionId,
        trace: &mut SessionTrace,
        at: Instant,
        victims: &mut Vec<Victim>,
    ) {
        if trace.finished.is_some() {
            return;
        }
        trace.finished = Some(at);
        let mut order = self.inner.order.lock();
        // A session the order already evicted is on its way out; do not bring it back.
        if order.live.remove(&trace.generation).is_some() {
            let number = order.next_number();
            order
                .finished
                .insert(number, (session, trace.generation, at));
        }
        let expired = order.expire(at, self.inner.config.keep_finished, victims);
        self.inner
            .finished_expired
            .fetch_add(expired, Ordering::Relaxed);
    }

    /// Removes sessions the order let go of, one shard lock at a time.
    fn remove(&self, victims: &[Victim]) {
        for &(session, generation) in victims {
            let mut shard = self.shard(session).lock();
            if shard
                .get(&session)
                .is_some_and(|trace| trace.generation == generation)
            {
                shard.remove(&session);
            }
        }
    }

    /// Puts `a` and `b` under one correlation, so [`SessionTracer::related`] lists them
    /// together. When both already have one, `b`'s whole group joins `a`'s. Fails when either
    /// session is not traced.
    pub fn correlate(&self, a: SessionId, b: SessionId) -> Result<CorrelationId> {
        let _serialized = self.inner.correlating.lock();
        if !self.shard(b).lock().contains_key(&b) {
            return Err(Error::UnknownSession(b));
        }
        let a_correlation = {
            let mut shard = self.shard(a).lock();
            let trace = shard.get_mut(&a).ok_or(Error::UnknownSession(a))?;
            *trace.correlation.get_or_insert_with(|| {
                CorrelationId(self.inner.next_correlation.fetch_add(1, Ordering::Relaxed) + 1)
            })
        };
        let b_correlation = {
            let mut shard = self.shard(b).lock();
            let trace = shard.get_mut(&b).ok_or(Error::UnknownSession(b))?;
            trace.correlation.replace(a_correlation)
        };
        if let Some(old) = b_correlation.filter(|&old| old != a_correlation) {
            for shard in self.inner.shards.iter() {
                for trace in shard.lock().values_mut() {
                    if trace.correlation == Some(old) {
                        trace.correlation = Some(a_correlation);
                    }
                }
            }
        }
        Ok(a_correlation)
    }

    /// The correlation of `session`, if it has one.
    pub fn correlation(&self, session: SessionId) -> Option<CorrelationId> {
        self.shard(session)
            .lock()
            .get(&session)
            .and_then(|trace| trace.correlation)
    }

    /// Every traced session sharing `session`'s correlation, `session` included, oldest first.
    /// Just `session` when it has no correlation; empty when it is not traced.
    pub fn related(&self, session: SessionId) -> Vec<SessionId> {
        let (correlation, started) = {
            let shard = self.shard(session).lock();
            match shard.get(&session) {
                Some(trace) => (trace.correlation, trace.started),
                None => return Vec::new(),
            }
        };
        let Some(correlation) = correlation else {
            return vec![session];
        };
        let mut related = vec![(started, session)];
        for shard in self.inner.shards.iter() {
            for (&id, trace) in shard.lock().iter() {
                if id != session && trace.correlation == Some(correlation) {
                    related.push((trace.started, id));
                }
            }
        }
        related.sort_unstable();
        related.into_iter().map(|(_, id)| id).collect()
    }

    /// A copy of `session`'s timeline, or `None` when it is not traced.
    pub fn timeline(&self, session: SessionId) -> Option<Timeline> {
        let shard = self.shard(session).lock();
        shard.get(&session).map(|trace| snapshot(session, trace))
    }

    /// Every held timeline as text, oldest session first, separated by blank lines.
    pub fn render_all(&self) -> String {
        let mut timelines = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.lock();
            timelines.extend(shard.iter().map(|(&id, trace)| snapshot(id, trace)));
        }
        timelines.sort_unstable_by_key(|timeline| (timeline.started(), timeline.session()));
        let rendered: Vec<String> = timelines.iter().map(Timeline::render).collect();
        rendered.join("\n")
    }

    /// The timelines of `session` and every session related to it, rendered one after the
    /// other (see [`SessionTracer::related`]).
    pub fn render_related(&self, session: SessionId) -> String {
        let rendered: Vec<String> = self
            .related(session)
            .into_iter()
            .filter_map(|id| self.timeline(id))
            .map(|timeline| timeline.render())
            .collect();
        rendered.join("\n")
    }

    /// The health issues of every live session at `now`, oldest session first (and, within a
    /// session: requests, ACK, audio, hold). Also removes finished sessions older than
    /// [`TracerConfig::keep_finished`].
    pub fn health(&self, now: Instant) -> Vec<HealthIssue> {
        let mut victims = Vec::new();
        {
            let mut order = self.inner.order.lock();
            let expired = order.expire(now, self.inner.config.keep_finished, &mut victims);
            self.inner
                .finished_expired
                .fetch_add(expired, Ordering::Relaxed);
        }
        self.remove(&victims);

        let thresholds = &self.inner.config.thresholds;
        let mut found = Vec::new();
        let mut kinds = Vec::new();
        for shard in self.inner.shards.iter() {
            for (&session, trace) in shard.lock().iter() {
                if trace.finished.is_some() {
                    continue;
                }
                trace.watch.check(now, thresholds, &mut kinds);
                for kind in kinds.drain(..) {
                    let issue = HealthIssue {
                        session,
                        correlation: trace.correlation,
                        kind,
                    };
                    found.push((trace.started, session, issue));
                }
            }
        }
        // A stable sort keeps each session's issues in the order `check` produced them.
        found.sort_by_key(|(started, session, _)| (*started, *session));
        found.into_iter().map(|(_, _, issue)| issue).collect()
    }

    /// How many sessions are held and what the limits have dropped so far.
    pub fn stats(&self) -> TracerStats {
        let (sessions, finished_sessions) = {
            let order = self.inner.order.lock();
            (order.len(), order.finished.len())
        };
        TracerStats {
            sessions,
            finished_sessions,
            entries_dropped: self.inner.entries_dropped.load(Ordering::Relaxed),
            finished_evicted: self.inner.finished_evicted.load(Ordering::Relaxed),
            live_evicted: self.inner.live_evicted.load(Ordering::Relaxed),
            finished_expired: self.inner.finished_expired.load(Ordering::Relaxed),
        }
    }
}

fn snapshot(session: SessionId, trace: &SessionTrace) -> Timeline {
    let started = trace.started;
    let timed = |timed: &Timed| TimedEntry {
        offset: timed.at.saturating_duration_since(started),
        entry: timed.entry.clone(),
    };
    let mut entries: Vec<TimedEntry> = trace.entries.head.iter().map(timed).collect();
    let gap = (trace.entries.dropped > 0).then_some(Gap {
        after: entries.len(),
        dropped: trace.entries.dropped,
    });
    entries.extend(trace.entries.tail.iter().map(timed));
    Timeline {
        session,
        correlation: trace.correlation,
        started,
        finished: trace
            .finished
            .map(|at| at.saturating_duration_since(started)),
        entries,
        gap,
    }
}

/// Folds a 128-bit session id into well-mixed 64 bits (session ids are random, but ids an
/// application builds with `SessionId::from_u128` may count up).
fn mix(raw: u128) -> u64 {
    let folded = (raw as u64) ^ ((raw >> 64) as u64);
    let product = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    product ^ (product >> 29)
}

/// The session map's hasher: [`mix`] of the id, instead of SipHash over 16 bytes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, raw: u128) {
        self.0 = mix(raw);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if `SessionId`'s `Hash` changes shape; FNV-1a keeps it correct.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
