//! The engine's one timer heap: mixer ticks, RTCP reports and stall checks of every bridge and
//! member, so the engine never needs a timer per object (the approach of session-dialog's
//! transaction table). Entries are checked when they fire against the state they were set for
//! (a tick against the bridge's next tick, a member's timer against its join generation), and
//! entries of a member or bridge that goes away are removed at once, so the heap holds only
//! live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use session_types::SessionId;

use crate::engine::BridgeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A mixer tick of a bridge.
    Tick(BridgeId),
    /// A member's RTCP report (with the member's join generation).
    Rtcp(SessionId, u64),
    /// A member's stall check (with the member's join generation).
    Stall(SessionId, u64),
}

impl Timer {
    fn session(self) -> Option<SessionId> {
        match self {
            Self::Tick(_) => None,
            Self::Rtcp(s, _) | Self::Stall(s, _) => Some(s),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest timer's instant.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest timer due at `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Removes every timer of these members, in one pass over the heap (a whole bridge's
    /// members are looked up in a sorted copy, so destroying a big bridge stays cheap).
    pub(crate) fn forget_sessions(&mut self, sessions: &[SessionId]) {
        if sessions.len() <= 8 {
            self.heap
                .retain(|Reverse((_, t))| t.session().is_none_or(|s| !sessions.contains(&s)));
            return;
        }
        let mut sorted = sessions.to_vec();
        sorted.sort_unstable();
        self.heap.retain(|Reverse((_, t))| {
            t.session()
                .is_none_or(|s| sorted.binary_search(&s).is_err())
        });
    }

    /// Removes a bridge's ticks.
    pub(crate) fn forget_ticks(&mut self, bridge: BridgeId) {
        self.heap
            .retain(|Reverse((_, t))| *t != Timer::Tick(bridge));
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
