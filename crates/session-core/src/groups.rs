//! Session groups: named sets of sessions an engine acts on together (a team's calls, a
//! tenant's, a campaign's). A session may be in several groups; it leaves them all when it
//! ends. Membership is mirrored into the event bus's group index, so a subscription to a group
//! ([`crate::SessionManager::subscribe_group`]) gets every member's events, and each change is
//! published: [`SessionEvent::GroupMemberJoined`], [`SessionEvent::GroupMemberLeft`] and, when
//! the last member leaves, [`SessionEvent::GroupEmpty`].
//!
//! Groups are bookkeeping only: no policy. Admission limits per group live in
//! session-resources (`Limits::max_for_group`) and apply to calls placed with
//! [`crate::CallOptions::group`].

use parking_lot::Mutex;
use session_events::{EventBus, SessionEvent};
use session_types::{GroupId, SessionId};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Every group of a manager, shared by its handles and its task. (`pub` for
/// `crate::bench_support` only.)
#[derive(Debug, Default)]
pub struct Groups {
    inner: Mutex<Membership>,
}

#[derive(Debug, Default)]
struct Membership {
    /// Members of each group by joining number, so in joining order (a group with none stays
    /// until dissolved). Numbered rather than listed so that leaving a group of thousands is a
    /// lookup, not a search.
    members: IdMap<GroupId, BTreeMap<u64, SessionId>>,
    /// The groups of each session that is in one, with its joining number in each.
    of: IdMap<SessionId, Vec<(GroupId, u64)>>,
    /// Joinings so far (the last joining number given).
    joined: u64,
}

impl Membership {
    /// Takes `session` out of `group`; the events that tells, in order.
    fn remove(&mut self, session: SessionId, group: GroupId, events: &mut Vec<SessionEvent>) {
        let Some(groups) = self.of.get_mut(&session) else {
            return;
        };
        let Some(at) = groups.iter().position(|(g, _)| *g == group) else {
            return;
        };
        let (_, number) = groups.remove(at);
        if groups.is_empty() {
            self.of.remove(&session);
        }
        self.left(session, group, number, events);
    }

    /// Takes `session` out of every group it is in; the events that tells, in order.
    fn remove_all(&mut self, session: SessionId, events: &mut Vec<SessionEvent>) {
        for (group, number) in self.of.remove(&session).unwrap_or_default() {
            self.left(session, group, number, events);
        }
    }

    /// `session`, member `number` of `group` and already out of `of`, leaves its members.
    fn left(
        &mut self,
        session: SessionId,
        group: GroupId,
        number: u64,
        events: &mut Vec<SessionEvent>,
    ) {
        let now_empty = self.members.get_mut(&group).is_some_and(|members| {
            members.remove(&number);
            members.is_empty()
        });
        events.push(SessionEvent::GroupMemberLeft {
            session_id: session,
            group,
        });
        if now_empty {
            events.push(SessionEvent::GroupEmpty { group });
        }
    }
}

/// A map keyed by our own ids, hashed with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

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
        self.inner.lock().members.insert(group, BTreeMap::new());
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
        if groups.iter().any(|(g, _)| *g == group) {
            return false;
        }
        inner.joined += 1;
        groups.push((group, inner.joined));
        inner
            .members
            .entry(group)
            .or_default()
            .insert(inner.joined, session);
        // Indexed on the bus before the event, so the group's subscribers see it.
        bus.join_group(session, group);
        drop(guard);
        bus.publish(SessionEvent::GroupMemberJoined {
            session_id: session,
            group,
        });
        true
    }

    /// Takes `session` out of `group`; `false` if it was not in it.
    pub fn remove(&self, bus: &EventBus, session: SessionId, group: GroupId) -> bool {
        let mut events = Vec::new();
        self.inner.lock().remove(session, group, &mut events);
        Self::announce(bus, &events);
        !events.is_empty()
    }

    /// `session` ended: it leaves every group it was in.
    pub fn forget(&self, bus: &EventBus, session: SessionId) {
        let mut events = Vec::new();
        self.inner.lock().remove_all(session, &mut events);
        Self::announce(bus, &events);
    }

    /// Dissolves `group`: every member leaves it (their calls go on); returns them.
    pub(crate) fn dissolve(&self, bus: &EventBus, group: GroupId) -> Vec<SessionId> {
        let mut events = Vec::new();
        let members = {
            let mut inner = self.inner.lock();
            let members: Vec<SessionId> = inner
                .members
                .get(&group)
                .map(|members| members.values().copied().collect())
                .unwrap_or_default();
            for session in &members {
                inner.remove(*session, group, &mut events);
            }
            inner.members.remove(&group);
            members
        };
        Self::announce(bus, &events);
        members
    }

    /// The members of `group`, in joining order; `None` for a group that does not exist.
    pub(crate) fn members(&self, group: GroupId) -> Option<Vec<SessionId>> {
        let inner = self.inner.lock();
        let members = inner.members.get(&group)?;
        Some(members.values().copied().collect())
    }

    /// The groups `session` is in.
    pub(crate) fn of(&self, session: SessionId) -> Vec<GroupId> {
        let inner = self.inner.lock();
        let groups = inner
            .of
            .get(&session)
            .map(Vec::as_slice)
            .unwrap_or_default();
        groups.iter().map(|(group, _)| *group).collect()
    }

    /// Publishes membership changes (a `Left` while the bus still indexes the member, so the
    /// group's subscribers see it), then drops the bus's index entries.
    fn announce(bus: &EventBus, events: &[SessionEvent]) {
        for event in events {
            bus.publish(event.clone());
            if let SessionEvent::GroupMemberLeft { session_id, group } = event {
                bus.leave_group(*session_id, *group);
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
    fn forgetting_leaves_every_group_and_the_last_member_empties_it() {
        let bus = EventBus::new();
        let mut all = bus.subscribe(session_events::Filter::all());
        let groups = Groups::default();
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
        assert!(bus.groups_of(a).is_empty(), "the bus's index follows");

        assert_eq!(groups.dissolve(&bus, second), vec![b]);
        assert_eq!(groups.members(second), None);
        assert!(groups.of(b).is_empty());
    }
}
