//! Session dependencies: links saying one session relies on another (a consultation call on
//! the call it consults for, a B leg on its A leg). They form a directed graph without cycles
//! (a link that would close one is refused). When a session ends, each session that depended on
//! it is told ([`SessionEvent::DependencyEnded`]) and, where the link asked for it
//! ([`Cascade::EndDependent`]), ended too. What depending *means* is the engine's business; the
//! library keeps the graph and carries out the one opt-in consequence.

use crate::groups::{IdHasher, IdMap, SmallList};
use parking_lot::Mutex;
use session_events::{EventBus, SessionEvent};
use session_types::SessionId;
use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::hash::BuildHasherDefault;

/// What happens to a dependent when the session it depends on ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Cascade {
    /// Only [`SessionEvent::DependencyEnded`] is published (the default).
    #[default]
    Notify,
    /// The dependent is ended too (BYE, CANCEL, or 480 if not answered yet), after the event.
    EndDependent,
}

/// A link would make a session depend on itself, directly or through others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "session {dependent} already (indirectly) is depended on by {on}: the link would make a cycle"
)]
pub struct DependencyCycle {
    /// The session that was to depend.
    pub dependent: SessionId,
    /// The session it was to depend on.
    pub on: SessionId,
}

/// The graph of a manager, shared by its handles and its task. (`pub` for
/// `crate::bench_support` only.)
#[derive(Debug, Default)]
pub struct Dependencies {
    inner: Mutex<Graph>,
}

#[derive(Debug, Default)]
struct Graph {
    /// For each session, what it depends on (the first inline: linking a session that
    /// depends on nothing else allocates nothing).
    on: IdMap<SessionId, SmallList<SessionId>>,
    /// For each session, who depends on it, with the link's cascade.
    dependents: IdMap<SessionId, SmallList<(SessionId, Cascade)>>,
}

impl Graph {
    /// Whether `from` reaches `to` following "depends on" links.
    fn reaches(&self, from: SessionId, to: SessionId) -> bool {
        if from == to {
            return true;
        }
        // Most sessions depend on nothing: no search (and none of its allocations).
        let Some(first) = self.on.get(&from) else {
            return false;
        };
        let mut seen = HashSet::with_hasher(BuildHasherDefault::<IdHasher>::default());
        let mut stack: Vec<SessionId> = first.iter().collect();
        while let Some(at) = stack.pop() {
            if at == to {
                return true;
            }
            if seen.insert(at) {
                stack.extend(self.on.get(&at).into_iter().flat_map(SmallList::iter));
            }
        }
        false
    }

    /// Removes the link (there is at most one per pair); one lookup in each map.
    fn unlink(&mut self, dependent: SessionId, on: SessionId) -> bool {
        let mut removed = false;
        if let Entry::Occupied(mut targets) = self.on.entry(dependent) {
            removed = targets.get_mut().remove_first(|t| *t == on).is_some();
            if targets.get().is_empty() {
                targets.remove();
            }
        }
        if let Entry::Occupied(mut list) = self.dependents.entry(on) {
            list.get_mut().remove_first(|(d, _)| *d == dependent);
            if list.get().is_empty() {
                list.remove();
            }
        }
        removed
    }
}

impl Dependencies {
    /// Makes `dependent` depend on `on`; `accept` is asked under the lock whether both may
    /// still be linked (neither is ending). `Ok(false)` when the link exists already (its
    /// cascade is updated) or a session is ending.
    pub fn link(
        &self,
        dependent: SessionId,
        on: SessionId,
        cascade: Cascade,
        accept: impl FnOnce() -> bool,
    ) -> Result<bool, DependencyCycle> {
        let mut graph = self.inner.lock();
        if dependent == on || graph.reaches(on, dependent) {
            return Err(DependencyCycle { dependent, on });
        }
        if !accept() {
            return Ok(false);
        }
        let list = graph.dependents.entry(on).or_default();
        if let Some(existing) = list.iter_mut().find(|(d, _)| *d == dependent) {
            existing.1 = cascade;
            return Ok(false);
        }
        list.push((dependent, cascade));
        graph.on.entry(dependent).or_default().push(on);
        Ok(true)
    }

    /// Removes the link; `false` if there was none.
    pub fn unlink(&self, dependent: SessionId, on: SessionId) -> bool {
        self.inner.lock().unlink(dependent, on)
    }

    /// Who depends on `session`.
    pub(crate) fn dependents_of(&self, session: SessionId) -> Vec<SessionId> {
        self.inner
            .lock()
            .dependents
            .get(&session)
            .map(|list| list.iter().map(|(d, _)| d).collect())
            .unwrap_or_default()
    }

    /// What `session` depends on.
    pub(crate) fn depends_on(&self, session: SessionId) -> Vec<SessionId> {
        self.inner
            .lock()
            .on
            .get(&session)
            .map(|list| list.iter().collect())
            .unwrap_or_default()
    }

    /// `session` is ending: its links go, its dependents are told, and those whose link
    /// cascades are returned, for the manager to end.
    pub fn ended(&self, bus: &EventBus, session: SessionId) -> Vec<SessionId> {
        let dependents = {
            let mut graph = self.inner.lock();
            // Most managers link no session at all: then there is nothing to look up.
            if graph.on.is_empty() && graph.dependents.is_empty() {
                return Vec::new();
            }
            let dependents = graph.dependents.remove(&session).unwrap_or_default();
            for (dependent, _) in dependents.iter() {
                graph.unlink(dependent, session);
            }
            // What it depended on: out of `on` at once, then out of each one's dependents.
            for on in graph.on.remove(&session).unwrap_or_default().iter() {
                graph.unlink(session, on);
            }
            dependents
        };
        let mut to_end = Vec::new();
        for (dependent, cascade) in dependents.iter() {
            bus.publish_with(|| SessionEvent::DependencyEnded {
                session_id: dependent,
                ended: session,
            });
            if cascade == Cascade::EndDependent {
                to_end.push(dependent);
            }
        }
        to_end
    }
}
