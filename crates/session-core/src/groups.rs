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
use std::collections::HashMap;

/// Every group of a manager, shared by its handles and its task. (`pub` for
/// `crate::bench_support` only.)
#[derive(Debug, Default)]
pub struct Groups {
    inner: Mutex<Membership>,
}

#[derive(Debug, Default)]
struct Membership {
    /// Members of each group, in joining order (a group with none stays until dissolved).
    members: HashMap<GroupId, Vec<SessionId>>,
    /// The groups of each session that is in one.
    of: HashMap<SessionId, Vec<GroupId>>,
}

impl Membership {
    /// Takes `session` out of `group`; the events that tells, in order.
    fn remove(&mut self, session: SessionId, group: GroupId, events: &mut Vec<SessionEvent>) {
        let Some(members) = self.members.get_mut(&group) else {
            return;
        };
        let Some(at) = members.iter().position(|m| *m == session) else {
            return;
        };
        members.remove(at);
        let now_empty = members.is_empty();
        if let Some(groups) = self.of.get_mut(&session) {
            groups.retain(|g| *g != group);
            if groups.is_empty() {
                self.of.remove(&session);
            }
        }
        events.push(SessionEvent::GroupMemberLeft {
            session_id: session,
            group,
        });
        if now_empty {
            events.push(SessionEvent::GroupEmpty { group });
        }
    }
}

impl Groups {
    /// A new, empty group.
    pub(crate) fn create(&self) -> GroupId {
        let group = GroupId::next();
        self.inner.lock().members.insert(group, Vec::new());
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
        let mut inner = self.inner.lock();
        if !accept() {
            return false;
        }
        let members = inner.members.entry(group).or_default();
        if members.contains(&session) {
            return false;
        }
        members.push(session);
        inner.of.entry(session).or_default().push(group);
        // Indexed on the bus before the event, so the group's subscribers see it.
        bus.join_group(session, group);
        drop(inner);
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
        {
            let mut inner = self.inner.lock();
            for group in inner.of.get(&session).cloned().unwrap_or_default() {
                inner.remove(session, group, &mut events);
            }
        }
        Self::announce(bus, &events);
    }

    /// Dissolves `group`: every member leaves it (their calls go on); returns them.
    pub(crate) fn dissolve(&self, bus: &EventBus, group: GroupId) -> Vec<SessionId> {
        let mut events = Vec::new();
        let members = {
            let mut inner = self.inner.lock();
            let members = inner.members.get(&group).cloned().unwrap_or_default();
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
        self.inner.lock().members.get(&group).cloned()
    }

    /// The groups `session` is in.
    pub(crate) fn of(&self, session: SessionId) -> Vec<GroupId> {
        self.inner
            .lock()
            .of
            .get(&session)
            .cloned()
            .unwrap_or_default()
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
