//! [`EventBus`]: the publish side, the subscription index and group membership.
//!
//! # The index
//!
//! Subscriptions are filed where a publish will look for them, so that a publish costs one hash
//! lookup plus the subscriptions that can match — never a scan of all subscriptions:
//!
//! - **by session**: a sharded map `SessionId → entry`; an entry holds the subscriptions scoped
//!   to that session and the groups the session belongs to. Shards are `parking_lot` mutexes,
//!   picked by the session id's bits.
//! - **by group**: a sharded map `GroupId → subscriptions` (read-write locks; publishes only
//!   read).
//! - **unscoped**: one list of the subscriptions on all sessions (all events, kind-only,
//!   predicate-only), checked on every publish, skipped without a lock while it is empty.
//!
//! Both kinds of subscription — [`Subscription`] (a queue of its own) and [`ChannelSubscription`]
//! (a bounded crossbeam channel) — are filed the same way; an index entry says which kind it
//! holds.
//!
//! While no subscription exists at all ([`EventBus::subscriber_count`] is 0) a publish is one
//! atomic load and a count in a per-thread stripe of counters: no lock, and the event is not put
//! in an `Arc` ([`EventBus::publish_with`] does not even build it). Group memberships are kept
//! all the same (a subscription made later must find them).
//!
//! # Group membership kept elsewhere
//!
//! A session's groups are those of its index entry ([`EventBus::join_group`]) plus those the
//! [`GroupMembership`] sources registered with [`EventBus::add_group_membership`] report (how
//! session-core's manager shares its groups with the bus instead of mirroring them). The sources
//! are asked only while at least one subscription is scoped to a group (a counter, read with one
//! atomic load), and before the publish takes any bus lock: a source may take locks of its own,
//! and must not publish from `groups_of`. A [`SessionEvent::GroupMemberJoined`] or
//! [`SessionEvent::GroupMemberLeft`] event also goes to the group it names, so that a group's
//! subscribers see a member leave whichever side already forgot the membership.
//!
//! Publishing an event of session S asks the sources (see above), then locks S's shard, delivers
//! to S's own subscriptions, then to the subscriptions of each group S is in (each group once),
//! then to the unscoped ones, and releases the shard.
//! Holding S's shard for the whole delivery makes every subscriber see S's events in one and
//! the same order. Wakers are woken after the locks are released (a thread blocked on a
//! [`ChannelSubscription`]'s channel is woken by crossbeam inside `try_send`). Lock order (outer
//! first): membership sources' list (read) → a source's own locks, released before the session
//! shard is taken; session shard → group shard → unscoped list → a subscription's queue or
//! channel sender; the other operations take one of these at a time.

use crate::channel::{ChannelSink, ChannelSubscription};
use crate::error::{Error, Result};
use crate::event::SessionEvent;
use crate::filter::{Filter, Scope};
use crate::subscription::{Pushed, QueueSink, Sink, Slot, SlotRef, Subscription, count_out};
use parking_lot::{Mutex, RwLock};
use session_types::{GroupId, SessionId};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;

/// Where an [`EventBus`] learns which groups a session is in when that membership is kept
/// outside the bus, so that it need not be mirrored with [`EventBus::join_group`] and
/// [`EventBus::leave_group`] (two more locks per join and leave). session-core's
/// `SessionManager` registers its groups this way.
///
/// Register one with [`EventBus::add_group_membership`]. The bus asks it at publish time, and
/// only while some subscription is scoped to a group; it asks before taking any lock of its own,
/// so `groups_of` may take the source's locks — as long as the source never holds one of them
/// while it publishes on, subscribes to, or registers with the bus.
///
/// ```
/// use session_events::{EventBus, Filter, GroupMembership, SessionEvent};
/// use session_types::{GroupId, SessionId};
/// use std::sync::{Arc, Mutex};
///
/// /// An application's own table of who is in which group.
/// #[derive(Default)]
/// struct Rooms(Mutex<Vec<(SessionId, GroupId)>>);
///
/// impl GroupMembership for Rooms {
///     fn groups_of(&self, session: SessionId, out: &mut dyn FnMut(GroupId)) {
///         let rooms = self.0.lock().unwrap();
///         rooms.iter().filter(|(s, _)| *s == session).for_each(|(_, g)| out(*g));
///     }
/// }
///
/// let bus = EventBus::new();
/// let rooms = Arc::new(Rooms::default());
/// bus.add_group_membership(&rooms);
/// let (call, room) = (SessionId::new(), GroupId::next());
/// rooms.0.lock().unwrap().push((call, room));
///
/// let mut members = bus.subscribe(Filter::group(room));
/// assert_eq!(bus.publish(SessionEvent::MediaStopped { session_id: call }), 1);
/// assert!(members.try_recv().is_ok());
/// assert_eq!(bus.groups_of(call), vec![room]);
/// ```
pub trait GroupMembership: Send + Sync {
    /// Calls `out` once with each group `session` is in (none for a session in no group).
    fn groups_of(&self, session: SessionId, out: &mut dyn FnMut(GroupId));
}

/// The event bus: publish [`SessionEvent`]s, [`subscribe`](Self::subscribe) with a [`Filter`].
///
/// Cheap to clone; clones share one bus. When the last clone is dropped every subscription is
/// closed: subscribers receive what was queued, then [`crate::RecvError::Closed`].
///
/// ```
/// use session_events::{EventBus, EventKind, Filter, SessionEvent};
/// use session_types::{CallId, CallState, SessionId};
///
/// let bus = EventBus::new();
/// let call = SessionId::new();
/// let mut mine = bus.subscribe(Filter::session(call).with_kind(EventKind::StateChanged));
///
/// let delivered = bus.publish(SessionEvent::StateChanged {
///     session_id: call,
///     call_id: CallId::from("a84b4c76e66710@pc33.example.com"),
///     old: CallState::Ringing,
///     new: CallState::Active,
/// });
/// assert_eq!(delivered, 1);
/// let event = mine.try_recv().unwrap();
/// assert!(matches!(*event, SessionEvent::StateChanged { new: CallState::Active, .. }));
///
/// // An event of another session does not even look at `mine`.
/// assert_eq!(bus.publish(SessionEvent::MediaStopped { session_id: SessionId::new() }), 0);
/// drop(mine);
/// assert_eq!(bus.subscriber_count(), 0);
/// ```
pub struct EventBus {
    inner: Arc<Inner>,
}

/// Builds an [`EventBus`] with non-default settings.
#[derive(Clone, Debug)]
pub struct EventBusBuilder {
    capacity: usize,
    shards: usize,
}

/// A snapshot of the bus's counters, e.g. for metrics or to prove in a test that everything
/// was released.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct BusStats {
    /// Live subscriptions the bus delivers to (as [`EventBus::subscriber_count`]).
    pub subscribers: usize,
    /// Of those, the ones not scoped to sessions or groups (checked on every publish).
    pub unscoped_subscribers: usize,
    /// Sessions with an index entry (subscriptions scoped to them, or group memberships).
    pub indexed_sessions: usize,
    /// Groups with subscriptions scoped to them.
    pub indexed_groups: usize,
    /// Events published.
    pub published: u64,
    /// Events queued for a subscriber (or sent into a [`ChannelSubscription`]'s channel),
    /// counted once per subscriber.
    pub delivered: u64,
    /// Subscriptions a publish looked at (whether or not their kinds and predicate accepted the
    /// event). Grows only by the subscriptions indexed under the event's session and its groups,
    /// plus the unscoped ones.
    pub examined: u64,
    /// Events dropped for subscribers that fell behind (reported to them as lag): the oldest of
    /// a full [`Subscription`] queue, or the new event refused by a full
    /// [`ChannelSubscription`] channel.
    pub lagged: u64,
}

/// The state shared by an [`EventBus`]'s clones and its subscriptions.
pub(crate) struct Inner {
    shard_mask: usize,
    sessions: Box<[Padded<Mutex<SessionShard>>]>,
    groups: Box<[Padded<RwLock<GroupShard>>]>,
    unscoped: RwLock<Vec<SlotRef>>,
    /// `unscoped.len()`, readable without the lock so a publish skips the empty list for free.
    unscoped_len: AtomicUsize,
    /// Serialises the publishes of events without a session, and counts them.
    sessionless: Mutex<Counters>,
    /// Events published while no subscription existed (the quiet path of
    /// [`EventBus::publish`]), counted per thread: the first `QUIET_STRIPES - 1` threads of the
    /// process that publish quietly each own a stripe (its only writer, so counting is a load
    /// and a store, no read-modify-write, and no cache line is shared); later threads share the
    /// last stripe and count into it atomically.
    quiet_published: Box<[Padded<AtomicU64>]>,
    /// Live subscriptions. Counted in before a subscription is filed in the index and out after
    /// it has left it, so 0 means the index holds no subscription: a publish that reads 0 has
    /// nobody to deliver to.
    subscribers: AtomicUsize,
    /// Live subscriptions scoped to at least one group (counted like `subscribers`): while 0, a
    /// publish asks no membership source.
    group_subscriptions: AtomicUsize,
    /// The membership sources of [`EventBus::add_group_membership`], held weakly.
    membership: RwLock<Vec<Weak<dyn GroupMembership>>>,
    /// `membership.len()`, readable without the lock.
    membership_len: AtomicUsize,
    /// Live [`EventBus`] handles; the last one to go closes every subscription.
    handles: AtomicUsize,
    next_id: AtomicU64,
    default_capacity: usize,
}

/// Keeps each shard's lock on a cache line of its own.
#[repr(align(64))]
struct Padded<T>(T);

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
type GroupShard = IdMap<GroupId, Vec<SlotRef>>;

#[derive(Default)]
struct SessionShard {
    entries: IdMap<SessionId, SessionEntry>,
    counters: Counters,
}

#[derive(Default)]
struct SessionEntry {
    subscribers: Vec<SlotRef>,
    groups: GroupList,
}

/// The groups of one session: the first inline, so that joining and leaving one group (the
/// usual case) allocates nothing; more in a vector. Order does not matter.
#[derive(Default)]
struct GroupList {
    first: Option<GroupId>,
    more: Vec<GroupId>,
}

impl GroupList {
    fn contains(&self, group: GroupId) -> bool {
        self.first == Some(group) || self.more.contains(&group)
    }

    /// Adds `group` (not already in the list).
    fn push(&mut self, group: GroupId) {
        if self.first.is_none() {
            self.first = Some(group);
        } else {
            self.more.push(group);
        }
    }

    /// Removes `group`; `false` if it was not in the list.
    fn remove(&mut self, group: GroupId) -> bool {
        if self.first == Some(group) {
            self.first = self.more.pop();
            true
        } else if let Some(at) = self.more.iter().position(|g| *g == group) {
            self.more.swap_remove(at);
            true
        } else {
            false
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }

    /// Adds `group` unless it is in the list already.
    fn insert(&mut self, group: GroupId) {
        if !self.contains(group) {
            self.push(group);
        }
    }
}

impl SessionEntry {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.groups.is_empty()
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    published: u64,
    delivered: u64,
    examined: u64,
    lagged: u64,
}

impl EventBus {
    /// A bus with the default settings (see [`EventBusBuilder`]).
    pub fn new() -> Self {
        Self::from_settings(
            EventBusBuilder::DEFAULT_CAPACITY,
            EventBusBuilder::DEFAULT_SHARDS,
        )
    }

    /// Starts building a bus with other settings.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder {
            capacity: EventBusBuilder::DEFAULT_CAPACITY,
            shards: EventBusBuilder::DEFAULT_SHARDS,
        }
    }

    fn from_settings(capacity: usize, shards: usize) -> Self {
        let inner = Inner {
            shard_mask: shards - 1,
            sessions: (0..shards).map(|_| Padded(Mutex::default())).collect(),
            groups: (0..shards).map(|_| Padded(RwLock::default())).collect(),
            unscoped: RwLock::default(),
            unscoped_len: AtomicUsize::new(0),
            sessionless: Mutex::default(),
            quiet_published: (0..QUIET_STRIPES)
                .map(|_| Padded(AtomicU64::new(0)))
                .collect(),
            subscribers: AtomicUsize::new(0),
            group_subscriptions: AtomicUsize::new(0),
            membership: RwLock::default(),
            membership_len: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            next_id: AtomicU64::new(1),
            default_capacity: capacity,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Publishes `event` to every subscription whose filter accepts it, and returns to how many
    /// it was delivered.
    ///
    /// Never waits for a subscriber: a full queue drops its oldest event and the subscriber is
    /// told (see [`crate::RecvError::Lagged`]); a full [`ChannelSubscription`] channel refuses
    /// this event, which is counted for that subscriber (see [`crate::Delivery`]) and not
    /// included in the returned count. Costs one hash lookup on the event's session plus
    /// the subscriptions filed under it and under its groups, plus the unscoped subscriptions;
    /// subscriptions on other sessions are not looked at.
    ///
    /// Pass a `SessionEvent` (it is put in an `Arc` once) or an `Arc<SessionEvent>` you keep.
    /// While the bus has no subscription at all the event is only counted (in
    /// [`BusStats::published`]) and dropped: no lock is taken and a `SessionEvent` is not put in
    /// an `Arc`. To skip building the event too, use [`publish_with`](Self::publish_with).
    pub fn publish(&self, event: impl Into<Arc<SessionEvent>>) -> usize {
        if self.is_quiet() {
            self.inner.count_quiet();
            return 0;
        }
        self.publish_arc(event.into())
    }

    /// Publishes the event `build` makes, building it only if the bus has a subscription at
    /// all; otherwise it is counted in [`BusStats::published`] like any publish and `build` is
    /// not called. Returns to how many subscriptions it was delivered, as
    /// [`publish`](Self::publish), with the same guarantees (order, bounded queues, drops
    /// counted).
    ///
    /// For a hot path whose event costs something to make (a cloned `CallId`, a formatted
    /// reason) on a bus that often has no subscriber.
    ///
    /// ```
    /// use session_events::{EventBus, Filter, SessionEvent};
    /// use session_types::{GroupId, SessionId};
    ///
    /// let bus = EventBus::new();
    /// let (call, group) = (SessionId::new(), GroupId::next());
    /// let joined = || SessionEvent::GroupMemberJoined { session_id: call, group };
    /// // Nobody listens: the closure is not called, the publish is counted.
    /// assert_eq!(bus.publish_with(|| unreachable!("not built")), 0);
    /// let mut sub = bus.subscribe(Filter::session(call));
    /// assert_eq!(bus.publish_with(joined), 1);
    /// assert!(sub.try_recv().is_ok());
    /// assert_eq!(bus.stats().published, 2);
    /// ```
    pub fn publish_with(&self, build: impl FnOnce() -> SessionEvent) -> usize {
        if self.is_quiet() {
            self.inner.count_quiet();
            return 0;
        }
        self.publish_arc(Arc::new(build()))
    }

    /// Whether the bus has no subscription at all, so a publish has nobody to deliver to.
    /// A subscription is counted in before it is filed in the index, so one made before this
    /// call (by any thread, happens-before) is seen.
    #[inline]
    fn is_quiet(&self) -> bool {
        self.inner.subscribers.load(Ordering::Acquire) == 0
    }

    /// The publish proper: the index lookups and the deliveries.
    fn publish_arc(&self, event: Arc<SessionEvent>) -> usize {
        let inner = &*self.inner;
        let mut delivery = Publication::new(&event);
        match event.session_id() {
            Some(session) => {
                // The groups the index entry does not know: the one a membership event names and
                // those of the membership sources — wanted only if a subscription is on a group,
                // and asked before any bus lock is taken.
                let mut more = GroupList::default();
                if inner.group_subscriptions.load(Ordering::Acquire) != 0 {
                    if let Some(group) = event.membership_group() {
                        more.push(group);
                    }
                    inner.source_groups(session, &mut more);
                }
                let mut shard = inner.session_shard(session).lock();
                let entry = shard.entries.get(&session);
                if let Some(entry) = entry {
                    delivery.offer_all(&entry.subscribers);
                    for group in entry.groups.iter() {
                        inner.offer_group(group, &mut delivery);
                    }
                }
                for group in more.iter() {
                    if entry.is_none_or(|entry| !entry.groups.contains(group)) {
                        inner.offer_group(group, &mut delivery);
                    }
                }
                inner.offer_unscoped(&mut delivery);
                delivery.count(&mut shard.counters);
            }
            None => {
                let mut counters = inner.sessionless.lock();
                inner.offer_unscoped(&mut delivery);
                delivery.count(&mut counters);
            }
        }
        delivery.finish()
    }

    /// Subscribes with `filter` and the bus's default queue capacity.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        let slot = self.register(filter, QueueSink::new(self.inner.default_capacity));
        Subscription::new(slot, Arc::clone(&self.inner))
    }

    /// Subscribes with `filter` and a queue of `capacity` events.
    ///
    /// # Errors
    /// [`Error::ZeroCapacity`] when `capacity` is 0.
    pub fn subscribe_with_capacity(&self, filter: Filter, capacity: usize) -> Result<Subscription> {
        if capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        let slot = self.register(filter, QueueSink::new(capacity));
        Ok(Subscription::new(slot, Arc::clone(&self.inner)))
    }

    /// Subscribes with `filter`, delivering into a bounded `crossbeam_channel` of `capacity`
    /// events, for a thread that waits on several channels at once with
    /// [`crossbeam_channel::select!`] (a real-time media thread, say).
    ///
    /// Same filters, index, per-session order, unsubscribe-on-drop and closing as
    /// [`subscribe`](Self::subscribe); what differs is what happens when the subscriber falls
    /// behind. The bus never blocks on the channel (`try_send`): when it is full the **newest**
    /// event is dropped for this subscriber and counted, and the next item that does get through
    /// carries the count ([`crate::Delivery::missed_before`]). See [`ChannelSubscription`].
    ///
    /// # Errors
    /// [`Error::ZeroCapacity`] when `capacity` is 0 (a zero-capacity crossbeam channel is a
    /// rendezvous channel, into which a publisher that never waits could deliver nothing).
    pub fn subscribe_channel(
        &self,
        filter: Filter,
        capacity: usize,
    ) -> Result<ChannelSubscription> {
        if capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        let (sink, receiver) = ChannelSink::new(capacity);
        let slot = self.register(filter, sink);
        Ok(ChannelSubscription::new(
            slot,
            Arc::clone(&self.inner),
            receiver,
        ))
    }

    /// Makes `session` a member of `group`: from now on its events also reach the subscriptions
    /// on `group`. Returns `false` if it already was a member (of the bus's own index: the
    /// [`GroupMembership`] sources are not asked).
    ///
    /// Kept whether or not anyone subscribes (a subscription to `group` made later finds its
    /// members); a session's first group is stored without an allocation. Membership kept
    /// elsewhere can be shared with the bus instead, see
    /// [`add_group_membership`](Self::add_group_membership).
    pub fn join_group(&self, session: SessionId, group: GroupId) -> bool {
        let mut shard = self.inner.session_shard(session).lock();
        let entry = shard.entries.entry(session).or_default();
        if entry.groups.contains(group) {
            false
        } else {
            entry.groups.push(group);
            true
        }
    }

    /// Removes `session` from `group` (in the bus's own index). Returns `false` if it was not a
    /// member there.
    pub fn leave_group(&self, session: SessionId, group: GroupId) -> bool {
        let mut shard = self.inner.session_shard(session).lock();
        let Entry::Occupied(mut entry) = shard.entries.entry(session) else {
            return false;
        };
        if !entry.get_mut().groups.remove(group) {
            return false;
        }
        if entry.get().is_empty() {
            entry.remove();
        }
        true
    }

    /// The groups `session` belongs to: those of the bus's own index
    /// ([`join_group`](Self::join_group)), then those the [`GroupMembership`] sources report
    /// that are not among them.
    pub fn groups_of(&self, session: SessionId) -> Vec<GroupId> {
        let mut more = GroupList::default();
        self.inner.source_groups(session, &mut more);
        let shard = self.inner.session_shard(session).lock();
        let own = shard.entries.get(&session).map(|entry| &entry.groups);
        let mut groups: Vec<GroupId> = own.map(|own| own.iter().collect()).unwrap_or_default();
        groups.extend(
            more.iter()
                .filter(|group| own.is_none_or(|own| !own.contains(*group))),
        );
        groups
    }

    /// Registers `source` as a place where sessions' group memberships are kept: from now on an
    /// event of a session the source says is in a group also reaches that group's
    /// subscriptions, as if the session had [`join_group`](Self::join_group)ed it. See
    /// [`GroupMembership`] for when it is asked and what it may do.
    ///
    /// The bus holds the source weakly: it is asked as long as something else keeps it alive
    /// (session-core's manager does, for its lifetime), and forgotten once it is dropped. Several
    /// sources may be registered (several managers sharing one bus): a session's groups are
    /// the union of what they all report and of the bus's own index. Registering the same
    /// source twice has no further effect.
    pub fn add_group_membership<M: GroupMembership + 'static>(&self, source: &Arc<M>) {
        let weak: Weak<M> = Arc::downgrade(source);
        let weak: Weak<dyn GroupMembership> = weak;
        let mut sources = self.inner.membership.write();
        sources.retain(|known| known.strong_count() > 0);
        if !sources.iter().any(|known| Weak::ptr_eq(known, &weak)) {
            sources.push(weak);
        }
        self.inner
            .membership_len
            .store(sources.len(), Ordering::Release);
    }

    /// Forgets `session` once it is over: drops its group memberships (those of the bus's own
    /// index; a [`GroupMembership`] source keeps its own) and its index entry, and
    /// closes the subscriptions that were scoped to it alone (they receive what is queued, then
    /// [`crate::RecvError::Closed`]). A subscription scoped to other sessions or groups as well
    /// keeps receiving those; one scoped to several sessions only is closed when the last of them
    /// is forgotten. Returns how many subscriptions were closed.
    ///
    /// Publish the session's last event ([`SessionEvent::SessionTerminated`]) first.
    pub fn forget_session(&self, session: SessionId) -> usize {
        let removed = self
            .inner
            .session_shard(session)
            .lock()
            .entries
            .remove(&session);
        let Some(entry) = removed else {
            return 0;
        };
        entry
            .subscribers
            .iter()
            .filter(|slot| slot.release_entry(&self.inner.subscribers))
            .count()
    }

    /// How many subscriptions the bus currently delivers to. Dropping a [`Subscription`] (or
    /// forgetting the only session it was scoped to) counts it out at once.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Acquire)
    }

    /// A snapshot of the bus's counters. Takes each shard's lock briefly, so it is for metrics
    /// and tests, not for every event.
    pub fn stats(&self) -> BusStats {
        let inner = &*self.inner;
        let mut stats = BusStats {
            subscribers: self.subscriber_count(),
            unscoped_subscribers: inner.unscoped.read().len(),
            ..BusStats::default()
        };
        let mut add = |counters: &Counters| {
            stats.published += counters.published;
            stats.delivered += counters.delivered;
            stats.examined += counters.examined;
            stats.lagged += counters.lagged;
        };
        add(&inner.sessionless.lock());
        add(&Counters {
            published: inner
                .quiet_published
                .iter()
                .map(|stripe| stripe.0.load(Ordering::Relaxed))
                .sum(),
            ..Counters::default()
        });
        let mut indexed_sessions = 0;
        for shard in inner.sessions.iter() {
            let shard = shard.0.lock();
            indexed_sessions += shard.entries.len();
            add(&shard.counters);
        }
        stats.indexed_sessions = indexed_sessions;
        stats.indexed_groups = inner.groups.iter().map(|shard| shard.0.read().len()).sum();
        stats
    }

    /// Files a new slot with `sink` in the index and counts it in.
    fn register<S: Sink>(&self, filter: Filter, sink: S) -> Arc<Slot<S>>
    where
        SlotRef: From<Arc<Slot<S>>>,
    {
        let inner = &*self.inner;
        let entries = match &filter.scope {
            Scope::All => 1,
            Scope::Scoped { sessions, groups } => sessions.len() + groups.len(),
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, filter, entries, sink));
        inner.subscribers.fetch_add(1, Ordering::AcqRel);
        if on_groups(&slot.filter) {
            inner.group_subscriptions.fetch_add(1, Ordering::AcqRel);
        }
        match &slot.filter.scope {
            Scope::All => {
                let mut list = inner.unscoped.write();
                list.push(SlotRef::from(Arc::clone(&slot)));
                inner.unscoped_len.store(list.len(), Ordering::Release);
            }
            Scope::Scoped { sessions, groups } => {
                for session in sessions {
                    let mut shard = inner.session_shard(*session).lock();
                    let entry = shard.entries.entry(*session).or_default();
                    entry.subscribers.push(SlotRef::from(Arc::clone(&slot)));
                }
                for group in groups {
                    let mut shard = inner.group_shard(*group).write();
                    shard
                        .entry(*group)
                        .or_default()
                        .push(SlotRef::from(Arc::clone(&slot)));
                }
            }
        }
        slot
    }
}

impl Inner {
    fn session_shard(&self, session: SessionId) -> &Mutex<SessionShard> {
        let raw = session.as_u128();
        let index = shard_bits((raw as u64) ^ ((raw >> 64) as u64)) & self.shard_mask;
        &self.sessions[index].0
    }

    fn group_shard(&self, group: GroupId) -> &RwLock<GroupShard> {
        &self.groups[shard_bits(group.as_u64()) & self.shard_mask].0
    }

    /// Offers the event to the subscriptions on `group`. Takes one group shard at a time: two
    /// groups may share a shard.
    fn offer_group(&self, group: GroupId, delivery: &mut Publication<'_>) {
        let groups = self.group_shard(group).read();
        if let Some(slots) = groups.get(&group) {
            delivery.offer_all(slots);
        }
    }

    /// Adds to `out` the groups the membership sources say `session` is in. Call with no bus
    /// lock held (a source takes its own locks).
    fn source_groups(&self, session: SessionId, out: &mut GroupList) {
        if self.membership_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let sources = self.membership.read();
        for source in sources.iter() {
            if let Some(source) = source.upgrade() {
                source.groups_of(session, &mut |group| out.insert(group));
            }
        }
    }

    /// Counts a publish made while no subscription existed, in this thread's stripe.
    #[inline]
    fn count_quiet(&self) {
        let thread = QUIET_THREAD.with(|thread| {
            let mut number = thread.get();
            if number == usize::MAX {
                number = NEXT_QUIET_THREAD.fetch_add(1, Ordering::Relaxed);
                thread.set(number);
            }
            number
        });
        match self.quiet_published.get(thread) {
            // The shared last stripe is never an owned one.
            Some(owned) if thread < QUIET_STRIPES - 1 => {
                // This thread is the stripe's only writer (of every bus): no lost update.
                let count = owned.0.load(Ordering::Relaxed);
                owned.0.store(count + 1, Ordering::Relaxed);
            }
            _ => {
                self.quiet_published[QUIET_STRIPES - 1]
                    .0
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn offer_unscoped(&self, delivery: &mut Publication<'_>) {
        if self.unscoped_len.load(Ordering::Acquire) != 0 {
            delivery.offer_all(&self.unscoped.read());
        }
    }

    /// Removes `slot` from every index entry that still holds it and counts it out. Idempotent.
    pub(crate) fn unregister<S>(&self, slot: &Slot<S>) {
        match &slot.filter.scope {
            Scope::All => {
                let mut list = self.unscoped.write();
                remove_slot(&mut list, slot.id);
                self.unscoped_len.store(list.len(), Ordering::Release);
            }
            Scope::Scoped { sessions, groups } => {
                for session in sessions {
                    let mut shard = self.session_shard(*session).lock();
                    if let Entry::Occupied(mut entry) = shard.entries.entry(*session) {
                        remove_slot(&mut entry.get_mut().subscribers, slot.id);
                        if entry.get().is_empty() {
                            entry.remove();
                        }
                    }
                }
                for group in groups {
                    let mut shard = self.group_shard(*group).write();
                    if let Entry::Occupied(mut entry) = shard.entry(*group) {
                        remove_slot(entry.get_mut(), slot.id);
                        if entry.get().is_empty() {
                            entry.remove();
                        }
                    }
                }
            }
        }
        // A slot on a group is counted out here only: `release_entry` never releases all of
        // its entries (group entries are released by `unregister` alone).
        if count_out(slot, &self.subscribers) && on_groups(&slot.filter) {
            self.group_subscriptions.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Closes every subscription (the last [`EventBus`] handle is gone).
    fn close_all(&self) {
        for shard in self.sessions.iter() {
            for entry in shard.0.lock().entries.values() {
                entry.subscribers.iter().for_each(|slot| slot.close());
            }
        }
        for shard in self.groups.iter() {
            for slots in shard.0.read().values() {
                slots.iter().for_each(|slot| slot.close());
            }
        }
        self.unscoped.read().iter().for_each(|slot| slot.close());
    }
}

/// Whether `filter` is scoped to at least one group.
fn on_groups(filter: &Filter) -> bool {
    matches!(&filter.scope, Scope::Scoped { groups, .. } if !groups.is_empty())
}

fn remove_slot(slots: &mut Vec<SlotRef>, id: u64) {
    if let Some(at) = slots.iter().position(|s| s.id() == id) {
        // Order among the subscribers of one entry does not matter.
        slots.swap_remove(at);
    }
}

/// One publish in progress: offers the event to subscriptions and counts what happened.
struct Publication<'a> {
    event: &'a Arc<SessionEvent>,
    delivered: u64,
    examined: u64,
    lagged: u64,
    /// Ids of multi-path subscriptions already offered this event (allocated only if one is
    /// met).
    seen: Vec<u64>,
    /// Wakers to wake once the locks are released: the first inline (the usual case, a
    /// per-session subscriber waiting in `recv`), the others in a vector allocated only if met.
    first_waker: Option<Waker>,
    more_wakers: Vec<Waker>,
}

impl<'a> Publication<'a> {
    fn new(event: &'a Arc<SessionEvent>) -> Self {
        Self {
            event,
            delivered: 0,
            examined: 0,
            lagged: 0,
            seen: Vec::new(),
            first_waker: None,
            more_wakers: Vec::new(),
        }
    }

    fn offer_all(&mut self, slots: &[SlotRef]) {
        for slot in slots {
            match slot {
                SlotRef::Queue(slot) => {
                    if self.admits(slot) {
                        let pushed = slot.sink.push(self.event);
                        self.record(pushed);
                    }
                }
                SlotRef::Channel(slot) => {
                    if self.admits(slot) {
                        let pushed = slot.sink.push(self.event);
                        self.record(pushed);
                    }
                }
            }
        }
    }

    /// Counts `slot` as examined and decides whether the event goes to it: not already offered
    /// through another index entry, and accepted by its kinds and predicate.
    #[inline]
    fn admits<S>(&mut self, slot: &Slot<S>) -> bool {
        self.examined += 1;
        if slot.multi_path {
            if self.seen.contains(&slot.id) {
                return false;
            }
            self.seen.push(slot.id);
        }
        slot.filter.accepts(self.event)
    }

    #[inline]
    fn record(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued { dropped, wake } => {
                self.delivered += 1;
                self.lagged += u64::from(dropped);
                if let Some(waker) = wake {
                    if self.first_waker.is_none() {
                        self.first_waker = Some(waker);
                    } else {
                        self.more_wakers.push(waker);
                    }
                }
            }
            Pushed::Refused => self.lagged += 1,
            Pushed::Closed => {}
        }
    }

    fn count(&self, counters: &mut Counters) {
        counters.published += 1;
        counters.delivered += self.delivered;
        counters.examined += self.examined;
        counters.lagged += self.lagged;
    }

    /// Ends the publish (call with no lock held): wakes the waiting subscribers, on drop, and
    /// returns the delivered count.
    fn finish(self) -> usize {
        // At most the number of subscriptions, which fit in memory, so in usize.
        usize::try_from(self.delivered).unwrap_or(usize::MAX)
    }
}

impl Drop for Publication<'_> {
    /// Wakes the subscribers queued for so far. Also runs if a predicate panics mid-publish,
    /// after the shard guard (declared later) has been released, so that no subscriber holding
    /// a queued event is left asleep.
    fn drop(&mut self) {
        if let Some(waker) = self.first_waker.take() {
            waker.wake();
        }
        for waker in self.more_wakers.drain(..) {
            waker.wake();
        }
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for EventBus {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.close_all();
        }
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscriber_count())
            .field("shards", &(self.inner.shard_mask + 1))
            .field("default_capacity", &self.inner.default_capacity)
            .finish()
    }
}

impl EventBusBuilder {
    /// The default queue capacity of a subscription: 256 events.
    pub const DEFAULT_CAPACITY: usize = 256;
    /// The default number of shards of each index map: 64.
    pub const DEFAULT_SHARDS: usize = 64;
    /// The largest shard count accepted.
    pub const MAX_SHARDS: usize = 4096;

    /// The queue capacity of subscriptions made with [`EventBus::subscribe`]. A subscriber that
    /// falls further behind than this loses its oldest events (and is told how many).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How many shards each index map is split into: a power of two. More shards, less
    /// contention between publishers of different sessions.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Builds the bus.
    ///
    /// # Errors
    /// [`Error::ZeroCapacity`] or [`Error::InvalidShardCount`].
    pub fn build(self) -> Result<EventBus> {
        if self.capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        if !self.shards.is_power_of_two() || self.shards > Self::MAX_SHARDS {
            return Err(Error::InvalidShardCount(self.shards));
        }
        Ok(EventBus::from_settings(self.capacity, self.shards))
    }
}

/// Stripes of [`Inner::quiet_published`]: one owned by each of the first `QUIET_STRIPES - 1`
/// threads that publish quietly, and the last shared by the threads after them.
const QUIET_STRIPES: usize = 32;

/// The number the next thread to publish quietly is given (all buses share the numbering,
/// so a thread owns the stripe of that number in every bus).
static NEXT_QUIET_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number; `usize::MAX` until its first quiet publish.
    static QUIET_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Picks a shard from an id: multiplicative hashing, high bits (the map inside the shard uses
/// [`IdHasher`], whose low bits differ).
fn shard_bits(raw: u64) -> usize {
    (raw.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize
}

/// A fast hasher for our ids. Session ids are random and group ids are small local numbers,
/// none chosen by the network, so SipHash's flooding protection is not needed here.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517C_C1B7_2722_0A95);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Payload};
    use crate::{RecvError, TryRecvError};
    use session_types::{CallId, CallState};

    fn stopped(session: SessionId) -> SessionEvent {
        SessionEvent::MediaStopped {
            session_id: session,
        }
    }

    fn state(session: SessionId, new: CallState) -> SessionEvent {
        SessionEvent::StateChanged {
            session_id: session,
            call_id: CallId::from("c@h"),
            old: CallState::Initiating,
            new,
        }
    }

    #[test]
    fn builder_validates_settings() {
        assert_eq!(
            EventBus::builder().capacity(0).build().unwrap_err(),
            Error::ZeroCapacity
        );
        assert_eq!(
            EventBus::builder().shards(3).build().unwrap_err(),
            Error::InvalidShardCount(3)
        );
        assert_eq!(
            EventBus::builder().shards(8192).build().unwrap_err(),
            Error::InvalidShardCount(8192)
        );
        let bus = EventBus::builder().shards(1).capacity(2).build().unwrap();
        let sub = bus.subscribe(Filter::all());
        assert_eq!(sub.capacity(), 2);
        assert_eq!(
            bus.subscribe_with_capacity(Filter::all(), 0).unwrap_err(),
            Error::ZeroCapacity
        );
    }

    #[test]
    fn one_shard_still_keeps_sessions_apart() {
        let bus = EventBus::builder().shards(1).build().unwrap();
        let a = SessionId::new();
        let b = SessionId::new();
        let mut sub_a = bus.subscribe(Filter::session(a));
        let mut sub_b = bus.subscribe(Filter::session(b));
        assert_eq!(bus.publish(stopped(a)), 1);
        assert_eq!(sub_a.try_recv().unwrap().session_id(), Some(a));
        assert_eq!(sub_b.try_recv().unwrap_err(), TryRecvError::Empty);
    }

    #[test]
    fn a_session_and_its_group_deliver_once() {
        let bus = EventBus::new();
        let a = SessionId::new();
        let g1 = GroupId::from_raw(1);
        let g2 = GroupId::from_raw(2);
        assert!(bus.join_group(a, g1));
        assert!(bus.join_group(a, g2));
        assert!(!bus.join_group(a, g2));
        let mut sub = bus.subscribe(Filter::session(a).or_group(g1).or_group(g2));
        assert_eq!(bus.publish(stopped(a)), 1);
        assert!(sub.try_recv().is_ok());
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Empty);
        // Looked at three times (session, g1, g2), delivered once.
        let stats = bus.stats();
        assert_eq!((stats.examined, stats.delivered), (3, 1));
    }

    #[test]
    fn forgetting_a_session_closes_its_own_subscriptions_only() {
        let bus = EventBus::new();
        let a = SessionId::new();
        let b = SessionId::new();
        let g = GroupId::next();
        bus.join_group(a, g);
        let mut only_a = bus.subscribe(Filter::session(a));
        let mut a_and_b = bus.subscribe(Filter::sessions([a, b]));
        let mut group = bus.subscribe(Filter::group(g));
        bus.publish(state(a, CallState::Terminated));
        assert_eq!(bus.forget_session(a), 1);
        assert_eq!(bus.groups_of(a), Vec::<GroupId>::new());
        assert_eq!(bus.subscriber_count(), 2);

        // The closed one still gets what was queued, then Closed.
        assert!(only_a.try_recv().is_ok());
        assert_eq!(only_a.try_recv().unwrap_err(), TryRecvError::Closed);
        assert!(a_and_b.try_recv().is_ok());
        assert!(group.try_recv().is_ok());
        // `a` left the group with its entry: later events of `a` reach nobody.
        assert_eq!(bus.publish(stopped(a)), 0);
        assert_eq!(bus.publish(stopped(b)), 1);
        assert!(!a_and_b.is_closed());

        drop(only_a);
        assert_eq!(bus.subscriber_count(), 2);
        // Forgetting the last of its sessions closes a multi-session subscription.
        assert_eq!(bus.forget_session(b), 1);
        assert!(a_and_b.is_closed());
        assert!(a_and_b.try_recv().is_ok());
        assert_eq!(a_and_b.try_recv().unwrap_err(), TryRecvError::Closed);
        assert_eq!(bus.subscriber_count(), 1);
        drop(a_and_b);
        assert_eq!(bus.subscriber_count(), 1);
        drop(group);
        assert_eq!(bus.subscriber_count(), 0);
        let stats = bus.stats();
        assert_eq!(
            (
                stats.indexed_sessions,
                stats.indexed_groups,
                stats.unscoped_subscribers
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn leaving_a_group_stops_its_events() {
        let bus = EventBus::new();
        let a = SessionId::new();
        let g = GroupId::next();
        let mut sub = bus.subscribe(Filter::group(g));
        bus.join_group(a, g);
        assert_eq!(bus.publish(stopped(a)), 1);
        assert!(bus.leave_group(a, g));
        assert!(!bus.leave_group(a, g));
        assert_eq!(bus.publish(stopped(a)), 0);
        assert!(sub.try_recv().is_ok());
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Empty);
        drop(sub);
        assert_eq!(bus.stats().indexed_sessions, 0);
    }

    #[test]
    fn dropping_the_last_handle_closes_subscriptions_after_their_queue() {
        let bus = EventBus::new();
        let clone = bus.clone();
        let a = SessionId::new();
        let mut sub = bus.subscribe(Filter::session(a));
        let mut all = bus.subscribe(Filter::all());
        bus.publish(stopped(a));
        drop(bus);
        assert!(!sub.is_closed());
        drop(clone);
        assert!(sub.is_closed());
        assert!(sub.try_recv().is_ok());
        assert_eq!(sub.blocking_recv().unwrap_err(), RecvError::Closed);
        assert!(all.try_recv().is_ok());
        assert_eq!(all.try_recv().unwrap_err(), TryRecvError::Closed);
    }

    #[test]
    fn sessionless_events_reach_unscoped_subscribers_only() {
        let bus = EventBus::new();
        let mut all = bus.subscribe(Filter::all());
        let mut custom = bus.subscribe(Filter::kind(EventKind::Custom));
        let _scoped = bus.subscribe(Filter::session(SessionId::new()));
        let tick = SessionEvent::custom(None, "tick", Payload::new(7u8));
        assert_eq!(bus.publish(tick), 2);
        assert!(all.try_recv().is_ok());
        let event = custom.try_recv().unwrap();
        let SessionEvent::Custom { payload, .. } = &*event else {
            panic!("not custom: {event:?}");
        };
        assert_eq!(payload.downcast_ref::<u8>(), Some(&7));
        assert_eq!(bus.stats().published, 1);
    }

    #[test]
    fn a_panicking_predicate_leaves_the_bus_usable_and_wakes_who_was_served() {
        use std::sync::atomic::AtomicBool;
        use std::task::{Context, Poll, Wake};

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }

        let bus = EventBus::new();
        let a = SessionId::new();
        let mut served = bus.subscribe(Filter::session(a));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        assert!(
            served
                .poll_recv(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let _bomb = bus.subscribe(Filter::predicate(|e| {
            assert!(e.kind() != EventKind::MediaStopped, "predicate bug");
            true
        }));

        let publish = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bus.publish(stopped(a));
        }));
        assert!(publish.is_err());
        // Served before the panic, and woken although the publish never finished.
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(matches!(
            served.poll_recv(&mut Context::from_waker(&waker)),
            Poll::Ready(Ok(_))
        ));
        // The shard lock was released: the bus goes on.
        assert_eq!(bus.publish(state(a, CallState::Ringing)), 2);
    }

    #[test]
    fn quiet_publishes_are_counted_and_memberships_kept_for_later_subscribers() {
        let bus = EventBus::new();
        let a = SessionId::new();
        let (g1, g2) = (GroupId::next(), GroupId::next());
        assert!(bus.join_group(a, g1));
        assert!(bus.join_group(a, g2));
        assert!(!bus.join_group(a, g1));
        // Nobody listens: counted, not built, not delivered.
        assert_eq!(bus.publish(stopped(a)), 0);
        assert_eq!(bus.publish_with(|| unreachable!("built for nobody")), 0);
        let shared = Arc::new(stopped(a));
        assert_eq!(bus.publish(Arc::clone(&shared)), 0);
        assert_eq!(Arc::strong_count(&shared), 1, "the bus kept no reference");
        assert_eq!(bus.stats().published, 3);

        // A subscription to the second group made now finds `a` a member of it.
        let mut group = bus.subscribe(Filter::group(g2));
        assert_eq!(bus.publish_with(|| state(a, CallState::Active)), 1);
        assert_eq!(bus.publish(Arc::clone(&shared)), 1);
        assert!(matches!(
            &*group.try_recv().unwrap(),
            SessionEvent::StateChanged { .. }
        ));
        assert!(Arc::ptr_eq(&group.try_recv().unwrap(), &shared));
        assert_eq!(bus.groups_of(a).len(), 2);
        assert!(bus.leave_group(a, g1));
        assert_eq!(bus.groups_of(a), vec![g2]);
        assert!(bus.leave_group(a, g2));
        assert!(!bus.leave_group(a, g2));
        assert_eq!(bus.publish(stopped(a)), 0);
        drop(group);
        let stats = bus.stats();
        assert_eq!((stats.published, stats.delivered), (6, 2));
        assert_eq!(stats.indexed_sessions, 0);
    }

    #[test]
    fn quiet_publishes_from_many_threads_are_all_counted() {
        // More threads than owned stripes, so the shared one is used too.
        const THREADS: usize = QUIET_STRIPES + 8;
        const EACH: u64 = 1_000;
        let bus = EventBus::new();
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    let session = SessionId::new();
                    for _ in 0..EACH {
                        assert_eq!(bus.publish(stopped(session)), 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(bus.stats().published, THREADS as u64 * EACH);
    }

    /// A membership source that counts how often it is asked.
    #[derive(Default)]
    struct Table {
        members: Mutex<Vec<(SessionId, GroupId)>>,
        asked: AtomicUsize,
    }

    impl Table {
        fn join(&self, session: SessionId, group: GroupId) {
            self.members.lock().push((session, group));
        }

        fn leave(&self, session: SessionId, group: GroupId) {
            self.members.lock().retain(|m| *m != (session, group));
        }

        fn asked(&self) -> usize {
            self.asked.load(Ordering::SeqCst)
        }
    }

    impl GroupMembership for Table {
        fn groups_of(&self, session: SessionId, out: &mut dyn FnMut(GroupId)) {
            self.asked.fetch_add(1, Ordering::SeqCst);
            for (s, g) in self.members.lock().iter() {
                if *s == session {
                    out(*g);
                }
            }
        }
    }

    #[test]
    fn a_membership_source_routes_to_group_subscriptions_and_is_asked_only_for_them() {
        let bus = EventBus::new();
        let table = Arc::new(Table::default());
        bus.add_group_membership(&table);
        bus.add_group_membership(&table);
        let (a, b) = (SessionId::new(), SessionId::new());
        let (g, other) = (GroupId::next(), GroupId::next());
        table.join(a, g);

        // Nobody listens, or nobody on a group: the source is not asked.
        assert_eq!(bus.publish(stopped(a)), 0);
        let mut own = bus.subscribe(Filter::session(a));
        let _all = bus.subscribe(Filter::all());
        assert_eq!(bus.publish(stopped(a)), 2);
        assert_eq!(table.asked(), 0);

        // A subscription on the group gets `a`'s events through the source (asked once per
        // publish: registering twice changed nothing), not `b`'s.
        let mut group = bus.subscribe(Filter::group(g));
        assert_eq!(bus.publish(stopped(a)), 3);
        assert_eq!(table.asked(), 1);
        assert_eq!(bus.publish(stopped(b)), 1);
        assert!(group.try_recv().is_ok());
        assert_eq!(group.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(bus.groups_of(a), vec![g]);

        // In the group both by the source and by the bus's own index: delivered once.
        assert!(bus.join_group(a, g));
        assert!(bus.join_group(a, other));
        assert_eq!(bus.groups_of(a), vec![g, other]);
        assert_eq!(bus.publish(stopped(a)), 3);
        assert!(group.try_recv().is_ok());
        assert_eq!(group.try_recv().unwrap_err(), TryRecvError::Empty);
        assert!(bus.leave_group(a, g) && bus.leave_group(a, other));

        // The member leaves the source first, then the leave is published: the group's
        // subscription still sees it (the event names the group), and nothing after it.
        table.leave(a, g);
        let left = SessionEvent::GroupMemberLeft {
            session_id: a,
            group: g,
        };
        assert_eq!(bus.publish(left.clone()), 3);
        assert_eq!(*group.try_recv().unwrap(), left);
        assert_eq!(bus.publish(stopped(a)), 2);
        assert_eq!(group.try_recv().unwrap_err(), TryRecvError::Empty);
        assert!(own.try_recv().is_ok());

        // Once the group subscription is gone the source is not asked again.
        drop(group);
        let asked = table.asked();
        bus.publish(stopped(a));
        assert_eq!(table.asked(), asked);
        assert_eq!(bus.stats().indexed_groups, 0);
    }

    #[test]
    fn membership_sources_combine_and_are_held_weakly() {
        let bus = EventBus::new();
        let (first, second) = (Arc::new(Table::default()), Arc::new(Table::default()));
        bus.add_group_membership(&first);
        bus.add_group_membership(&second);
        let (a, b) = (SessionId::new(), SessionId::new());
        let g = GroupId::next();
        first.join(a, g);
        second.join(b, g);
        let group = bus.subscribe(Filter::group(g));
        assert_eq!(bus.publish(stopped(a)), 1);
        assert_eq!(bus.publish(stopped(b)), 1);
        assert_eq!(group.len(), 2);
        // A dropped source is no longer asked (nor kept alive by the bus).
        let weak = Arc::downgrade(&second);
        drop(second);
        assert!(weak.upgrade().is_none());
        assert_eq!(bus.publish(stopped(b)), 0);
        assert_eq!(bus.publish(stopped(a)), 1);
        assert!(bus.groups_of(b).is_empty());
        let third = Arc::new(Table::default());
        bus.add_group_membership(&third);
        assert_eq!(bus.inner.membership.read().len(), 2, "the dead one pruned");
    }

    #[test]
    fn id_hasher_spreads_sequential_ids() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let build = BuildHasherDefault::<IdHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..64u64)
            .map(|n| build.hash_one(GroupId::from_raw(n)) & 63)
            .collect();
        assert!(buckets.len() > 32, "only {} of 64 buckets", buckets.len());
        let shards: std::collections::HashSet<usize> =
            (0..64u64).map(|n| shard_bits(n) & 63).collect();
        assert!(shards.len() > 32, "only {} of 64 shards", shards.len());
    }
}
