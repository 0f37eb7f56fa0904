//! Session groups: named sets of sessions an engine acts on together (a team's calls, a
//! tenant's, a campaign's). A session may be in several groups; it leaves them all when it
//! ends. The event bus asks [`Groups`] for a session's groups (it is registered with the bus as
//! a [`GroupMembership`] source by `SessionManagerBuilder::start`; the membership is not
//! mirrored into the bus's own index), so a subscription to a group
//! ([`crate::SessionManager::subscribe_group`]) gets every member's events, and each change is
//! published: [`SessionEvent::GroupMemberJoined`], [`SessionEvent::GroupMemberLeft`] (both
//! reach the group's subscribers, as they name the group) and, when the last member leaves,
//! [`SessionEvent::GroupEmpty`].
//!
//! Lock order: the bus asks [`Groups::groups_of`](GroupMembership::groups_of) while it
//! publishes, before taking its own locks; so the `Groups` lock is never held while calling the
//! bus (events are published after it is released), and nothing but the `accept` closures
//! (which read a call's flag and state) runs under it.
//!
//! Groups are bookkeeping only: no policy. Admission limits per group live in
//! session-resources (`Limits::max_for_group`) and apply to calls placed with
//! [`crate::CallOptions::group`].

use parking_lot::Mutex;
use session_events::{EventBus, GroupMembership, SessionEvent};
use session_types::{GroupId, SessionId};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

/// Every group of a manager, shared by its handles and its task. (`pub` for
/// `crate::bench_support` only.)
#[derive(Debug, Default)]
pub struct Groups {
    inner: Mutex<Membership>,
}

#[derive(Debug, Default)]
struct Membership {
    /// Members of each group, in joining order (a group with none stays until dissolved).
    members: IdMap<GroupId, Members>,
    /// The groups of each session that is in one, with its slot in each group's `Members`
    /// (the first inline: joining one group allocates nothing here).
    of: IdMap<SessionId, SmallList<(GroupId, usize)>>,
}

/// The members of one group in joining order: a slot each, a joiner's slot at the end, a
/// leaver's slot emptied (so leaving a group of thousands is an index, not a search, and
/// nothing is allocated per join). Empty slots at the end are dropped at once; when empty
/// slots elsewhere outnumber the members the slots are packed again (each member's slot
/// renumbered in `of`), which keeps the work per leave constant on average.
#[derive(Debug, Default)]
struct Members {
    slots: Vec<Option<SessionId>>,
    live: usize,
}

impl Members {
    /// Appends `session`; its slot.
    fn push(&mut self, session: SessionId) -> usize {
        self.slots.push(Some(session));
        self.live += 1;
        self.slots.len() - 1
    }

    /// Empties `slot`.
    fn remove(&mut self, slot: usize) {
        if let Some(at) = self.slots.get_mut(slot)
            && at.take().is_some()
        {
            self.live -= 1;
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether empty slots outnumber the members enough to pack them.
    fn sparse(&self) -> bool {
        self.slots.len() > 2 * self.live + 32
    }

    fn iter(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.slots.iter().flatten().copied()
    }
}

impl Membership {
    /// Takes `session` out of `group`: `None` if it was not in it, else whether the group is
    /// empty now.
    fn remove(&mut self, session: SessionId, group: GroupId) -> Option<bool> {
        let Entry::Occupied(mut groups) = self.of.entry(session) else {
            return None;
        };
        let (_, slot) = groups.get_mut().remove_first(|(g, _)| *g == group)?;
        if groups.get().is_empty() {
            groups.remove();
        }
        Some(self.left(group, slot))
    }

    /// The member in `slot` of `group` (already out of `of`) leaves its members; whether the
    /// group is empty now.
    fn left(&mut self, group: GroupId, slot: usize) -> bool {
        let Some(members) = self.members.get_mut(&group) else {
            return false;
        };
        members.remove(slot);
        if members.sparse() {
            // Pack the slots, keeping the order, and tell each member its new slot.
            let sessions: Vec<SessionId> = members.iter().collect();
            members.slots = sessions.iter().copied().map(Some).collect();
            for (at, session) in sessions.into_iter().enumerate() {
                let mine = self
                    .of
                    .get_mut(&session)
                    .and_then(|groups| groups.iter_mut().find(|(g, _)| *g == group));
                if let Some((_, slot)) = mine {
                    *slot = at;
                }
            }
        }
        members.is_empty()
    }
}

/// A short list kept in order, its first item inline: most sessions are in one group and
/// have one link, so the usual join or link allocates nothing. Once a second item has been
/// added the vector keeps its room, so a long-lived entry (an A leg whose B legs come and go)
/// does not allocate again either.
#[derive(Debug)]
pub(crate) struct SmallList<T> {
    /// `None` only while the list is empty (then `more` is empty too).
    first: Option<T>,
    more: Vec<T>,
}

impl<T> Default for SmallList<T> {
    fn default() -> Self {
        Self {
            first: None,
            more: Vec::new(),
        }
    }
}

impl<T: Copy> SmallList<T> {
    pub(crate) fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.more.push(item);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.first.iter_mut().chain(self.more.iter_mut())
    }

    /// Removes the first item `matches` accepts (keeping the others in order) and returns it.
    pub(crate) fn remove_first(&mut self, matches: impl Fn(&T) -> bool) -> Option<T> {
        let first = self.first?;
        if matches(&first) {
            self.first = if self.more.is_empty() {
                None
            } else {
                Some(self.more.remove(0))
            };
            return Some(first);
        }
        let at = self.more.iter().position(matches)?;
        Some(self.more.remove(at))
    }
}

/// A map keyed by our own ids, hashed with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of our own ids, hashed with [`IdHasher`].
pub(crate) type IdSet<K> = std::collections::HashSet<K, BuildHasherDefault<IdHasher>>;

/// A hasher for maps keyed by session and group ids (here and in `dependencies.rs`). Session
/// ids are random (or an application's own), group ids count up; none is chosen by the
/// network, so SipHash's protection against chosen keys is not needed, nor its cost (a third
/// of linking and unlinking two sessions, `benches/bookkeeping.rs`). Folds the id to 64 bits
/// and multiplies, as the event bus's and the tracer's session maps do.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        let product = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The high bits are the well-mixed ones; fold them into the low bits the table uses.
        self.0 = product ^ (product >> 29);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64((n as u64) ^ ((n >> 64) as u64));
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if an id's `Hash` changes shape.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }
}

impl Groups {
    /// A new, empty group.
    pub(crate) fn create(&self) -> GroupId {
        let group = GroupId::next();
        self.inner.lock().members.insert(group, Members::default());
        group
    }

    /// Adds `session` to `group` (made if the application names a group of its own);
    /// `accept` is asked under the lock whether the session may still join (it has not
    /// ended), so a session ending at the same moment never stays behind as a member. `false`
    /// when it was a member already or may not join.
    pub fn add(
        &self,
        bus: &EventBus,
        session: SessionId,
        group: GroupId,
        accept: impl FnOnce() -> bool,
    ) -> bool {
        let mut guard = self.inner.lock();
        if !accept() {
            return false;
        }
        let inner = &mut *guard;
        let groups = inner.of.entry(session).or_default();
        if groups.iter().any(|(g, _)| g == group) {
            return false;
        }
        let slot = inner.members.entry(group).or_default().push(session);
        groups.push((group, slot));
        // A member from now on: the bus asks `groups_of`, so the group's subscribers get the
        // event (which names the group anyway) and the member's next ones.
        drop(guard);
        // Built only if someone subscribes to the bus at all.
        bus.publish_with(|| SessionEvent::GroupMemberJoined {
            session_id: session,
            group,
        });
        true
    }

    /// Takes `session` out of `group`; `false` if it was not in it.
    pub fn remove(&self, bus: &EventBus, session: SessionId, group: GroupId) -> bool {
        let left = self.inner.lock().remove(session, group);
        match left {
            Some(now_empty) => {
                Self::announce_left(bus, session, group, now_empty);
                true
            }
            None => false,
        }
    }

    /// `session` ended: it leaves every group it was in.
    pub fn forget(&self, bus: &EventBus, session: SessionId) {
        let mut left = SmallList::default();
        {
            let mut inner = self.inner.lock();
            // Most calls are in no group (nor, often, is any call): nothing to look up then.
            if inner.of.is_empty() {
                return;
            }
            let Some(groups) = inner.of.remove(&session) else {
                return;
            };
            for (group, slot) in groups.iter() {
                left.push((group, inner.left(group, slot)));
            }
        }
        for (group, now_empty) in left.iter() {
            Self::announce_left(bus, session, group, now_empty);
        }
    }

    /// Dissolves `group`: every member leaves it (their calls go on); returns them.
    pub(crate) fn dissolve(&self, bus: &EventBus, group: GroupId) -> Vec<SessionId> {
        let mut left = Vec::new();
        let members = {
            let mut inner = self.inner.lock();
            let members: Vec<SessionId> = inner
                .members
                .get(&group)
                .map(|members| members.iter().collect())
                .unwrap_or_default();
            for session in &members {
                if let Some(now_empty) = inner.remove(*session, group) {
                    left.push((*session, now_empty));
                }
            }
            inner.members.remove(&group);
            members
        };
        for (session, now_empty) in left {
            Self::announce_left(bus, session, group, now_empty);
        }
        members
    }

    /// The members of `group`, in joining order; `None` for a group that does not exist.
    pub(crate) fn members(&self, group: GroupId) -> Option<Vec<SessionId>> {
        let inner = self.inner.lock();
        let members = inner.members.get(&group)?;
        Some(members.iter().collect())
    }

    /// The groups `session` is in.
    pub(crate) fn of(&self, session: SessionId) -> Vec<GroupId> {
        let inner = self.inner.lock();
        inner
            .of
            .get(&session)
            .map(|groups| groups.iter().map(|(group, _)| group).collect())
            .unwrap_or_default()
    }

    /// Tells that `session` left `group` (already out of it): `GroupMemberLeft`, which the
    /// group's subscribers get because it names the group, then `GroupEmpty` if it was the last
    /// member. The events are built only if the bus has a subscriber.
    fn announce_left(bus: &EventBus, session: SessionId, group: GroupId, now_empty: bool) {
        bus.publish_with(|| SessionEvent::GroupMemberLeft {
            session_id: session,
            group,
        });
        if now_empty {
            bus.publish_with(|| SessionEvent::GroupEmpty { group });
        }
    }
}

/// What the event bus asks at publish time (only while some subscription is on a group): the
/// groups `session` is in. Takes the lock briefly; the bus holds none of its own locks then.
impl GroupMembership for Groups {
    fn groups_of(&self, session: SessionId, out: &mut dyn FnMut(GroupId)) {
        let inner = self.inner.lock();
        if let Some(groups) = inner.of.get(&session) {
            for (group, _) in groups.iter() {
                out(group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<SessionId> {
        (1..=n).map(SessionId::from_u128).collect()
    }

    #[test]
    fn members_keep_joining_order_through_leaving_and_rejoining() {
        let bus = EventBus::new();
        let groups = Groups::default();
        let group = groups.create();
        let [a, b, c, d] = ids(4)[..] else {
            unreachable!()
        };
        for session in [a, b, c, d] {
            assert!(groups.add(&bus, session, group, || true));
        }
        assert!(!groups.add(&bus, b, group, || true), "a member already");
        assert!(groups.remove(&bus, b, group));
        assert!(!groups.remove(&bus, b, group), "not a member any more");
        assert!(groups.add(&bus, b, group, || true));
        assert_eq!(groups.members(group), Some(vec![a, c, d, b]));
        assert_eq!(groups.of(b), vec![group]);
    }

    #[test]
    fn churn_keeps_joining_order_and_packs_the_slots() {
        let bus = EventBus::new();
        let groups = Groups::default();
        let (group, other) = (groups.create(), groups.create());
        let sessions = ids(1_000);
        for session in &sessions {
            assert!(groups.add(&bus, *session, group, || true));
        }
        // Every other session in the second group too, joined in reverse.
        for session in sessions.iter().rev().step_by(2) {
            assert!(groups.add(&bus, *session, other, || true));
        }
        // Leaving from the front and the middle leaves empty slots, packed now and then.
        let mut kept = Vec::new();
        for (n, session) in sessions.iter().enumerate() {
            if n % 3 == 0 {
                kept.push(*session);
            } else {
                assert!(groups.remove(&bus, *session, group));
            }
        }
        assert_eq!(groups.members(group), Some(kept.clone()));
        // Slots renumbered by packing still find their members: all leave, then rejoin.
        for session in kept.iter().rev() {
            assert!(groups.remove(&bus, *session, group));
            assert!(!groups.remove(&bus, *session, group));
        }
        assert_eq!(groups.members(group), Some(Vec::new()));
        let inner = groups.inner.lock();
        let members = &inner.members[&group];
        assert!(members.slots.is_empty() && members.is_empty());
        let expected: Vec<SessionId> = sessions.iter().rev().step_by(2).copied().collect();
        assert_eq!(inner.members[&other].iter().collect::<Vec<_>>(), expected);
        drop(inner);
        for session in &expected {
            assert_eq!(groups.of(*session), vec![other]);
            groups.forget(&bus, *session);
        }
        assert_eq!(groups.members(other), Some(Vec::new()));
        assert!(groups.inner.lock().of.is_empty());
        assert_eq!(
            bus.stats().indexed_sessions,
            0,
            "nothing mirrored into the bus"
        );
    }

    #[test]
    fn forgetting_leaves_every_group_and_the_last_member_empties_it() {
        let bus = EventBus::new();
        let mut all = bus.subscribe(session_events::Filter::all());
        let groups = std::sync::Arc::new(Groups::default());
        bus.add_group_membership(&groups);
        let (first, second) = (groups.create(), groups.create());
        let [a, b] = ids(2)[..] else { unreachable!() };
        assert!(groups.add(&bus, a, first, || true));
        assert!(groups.add(&bus, a, second, || true));
        assert!(groups.add(&bus, b, second, || true));
        assert!(!groups.add(&bus, b, first, || false), "refused by `accept`");
        assert_eq!(groups.of(a), vec![first, second]);
        while all.try_recv().is_ok() {}

        groups.forget(&bus, a);
        let mut seen = Vec::new();
        while let Ok(event) = all.try_recv() {
            seen.push((*event).clone());
        }
        assert_eq!(
            seen,
            vec![
                SessionEvent::GroupMemberLeft {
                    session_id: a,
                    group: first
                },
                SessionEvent::GroupEmpty { group: first },
                SessionEvent::GroupMemberLeft {
                    session_id: a,
                    group: second
                },
            ]
        );
        assert!(groups.of(a).is_empty());
        assert_eq!(groups.members(first), Some(Vec::new()));
        assert_eq!(groups.members(second), Some(vec![b]));
        assert!(bus.groups_of(a).is_empty(), "the bus asks the groups");
        assert_eq!(bus.groups_of(b), vec![second]);
        assert_eq!(
            bus.stats().indexed_sessions,
            0,
            "nothing mirrored into the bus"
        );

        assert_eq!(groups.dissolve(&bus, second), vec![b]);
        assert_eq!(groups.members(second), None);
        assert!(groups.of(b).is_empty());
    }

    /// A subscription on a group gets a member's events because the bus asks `Groups` (nothing
    /// is mirrored into the bus's index): joining, the member's own events, leaving, and
    /// nothing of it afterwards.
    #[test]
    fn a_group_subscription_follows_the_membership_kept_here() {
        use session_events::{Filter, TryRecvError};
        let bus = EventBus::new();
        let groups = std::sync::Arc::new(Groups::default());
        bus.add_group_membership(&groups);
        let group = groups.create();
        let [a, outsider] = ids(2)[..] else {
            unreachable!()
        };
        let mut members = bus.subscribe(Filter::group(group));
        let stopped = |session| SessionEvent::MediaStopped {
            session_id: session,
        };
        assert!(groups.add(&bus, a, group, || true));
        assert_eq!(bus.stats().indexed_sessions, 0);
        assert_eq!(bus.publish(stopped(a)), 1, "a member's own event");
        assert_eq!(bus.publish(stopped(outsider)), 0);
        assert!(groups.remove(&bus, a, group));
        assert_eq!(bus.publish(stopped(a)), 0, "no longer a member");
        let mut seen = Vec::new();
        while let Ok(event) = members.try_recv() {
            seen.push((*event).clone());
        }
        assert_eq!(
            seen,
            vec![
                SessionEvent::GroupMemberJoined {
                    session_id: a,
                    group
                },
                stopped(a),
                SessionEvent::GroupMemberLeft {
                    session_id: a,
                    group
                },
            ]
        );
        assert_eq!(members.try_recv().unwrap_err(), TryRecvError::Empty);
    }
}
