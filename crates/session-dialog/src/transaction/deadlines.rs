//! A min-heap of deadlines with lazy deletion that remembers whether its earliest entry is
//! known to be live, so that asking for the next deadline again and again (a driver asks
//! after every input) looks nothing up until something could have made that entry stale.
//!
//! An entry `(at, key)` is live while its owner still wants `key` woken at `at`; the heap
//! does not know, the owner's `live` check passed to [`Deadlines::earliest`] does. The rules
//! that keep the remembered answer right:
//! - a pushed entry must be live: if it becomes the earliest, the earliest is still live;
//! - an entry that goes stale is [`Deadlines::forget`]ten: if it is the earliest it is dropped
//!   at once (so the next [`Deadlines::earliest`] does not look it up) and the new earliest is
//!   checked then; deeper in the heap it stays until it surfaces, which only a pop can make it
//!   do;
//! - every pop ([`Deadlines::pop_due`]) leaves the new earliest unchecked.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines by key, earliest first; see the module docs.
#[derive(Debug)]
pub(crate) struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// The earliest entry was found live, and nothing that could make it stale happened since
    /// (an empty heap is checked).
    checked: bool,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            checked: true,
        }
    }
}

impl<K: Ord> Deadlines<K> {
    /// Adds a live entry.
    #[inline]
    pub(crate) fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// Entry `(at, key)` is stale now (its owner no longer wants it).
    #[inline]
    pub(crate) fn forget(&mut self, at: Instant, key: &K) {
        if self
            .heap
            .peek()
            .is_some_and(|Reverse((top, top_key))| *top == at && top_key == key)
        {
            self.heap.pop();
            self.checked = self.heap.is_empty();
        }
    }

    /// The earliest live deadline: stale entries before it, as `live` says, are dropped —
    /// unless it was found live before and nothing could have changed that.
    pub(crate) fn earliest(
        &mut self,
        mut live: impl FnMut(Instant, &K) -> bool,
    ) -> Option<Instant> {
        if !self.checked {
            while let Some(Reverse((at, key))) = self.heap.peek() {
                if live(*at, key) {
                    break;
                }
                self.heap.pop();
            }
            self.checked = true;
        }
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest entry if it is due at `now`, live or not.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.heap.peek().is_none_or(|Reverse((at, _))| *at > now) {
            return None;
        }
        self.checked = false;
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Entries, live and stale.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Room for entries.
    pub(crate) fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.heap.reserve(additional);
    }

    /// Forgets that the earliest entry was found live (for tests: the next
    /// [`Deadlines::earliest`] checks it again, as if nothing were remembered).
    #[cfg(test)]
    pub(crate) fn forget_checks(&mut self) {
        self.checked = false;
    }

    /// Gives back room a past peak left (see [`super::table::shrink_heap`]).
    pub(crate) fn shrink(&mut self, floor: usize) {
        super::table::shrink_heap(&mut self.heap, floor);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::time::Duration;

    /// An owner: what each key wants, and how many times `live` was asked.
    struct Owner {
        wants: HashMap<u32, Instant>,
        asked: Cell<usize>,
    }

    impl Owner {
        fn earliest(&self, deadlines: &mut Deadlines<u32>) -> Option<Instant> {
            deadlines.earliest(|at, key| {
                self.asked.set(self.asked.get() + 1);
                self.wants.get(key) == Some(&at)
            })
        }
    }

    #[test]
    fn the_earliest_is_looked_up_again_only_after_a_change_that_can_make_it_stale() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut deadlines = Deadlines::default();
        let mut owner = Owner {
            wants: HashMap::new(),
            asked: Cell::new(0),
        };
        assert_eq!(owner.earliest(&mut deadlines), None);
        // A push is live: no look-up, whether it becomes the earliest or not.
        for (key, ms) in [(1, 300), (2, 100), (3, 200)] {
            owner.wants.insert(key, at(ms));
            deadlines.push(at(ms), key);
        }
        assert_eq!(owner.earliest(&mut deadlines), Some(at(100)));
        assert_eq!(owner.asked.get(), 0);
        // Forgetting an entry deeper in the heap changes nothing until it surfaces.
        owner.wants.remove(&3);
        deadlines.forget(at(200), &3);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(100)));
        assert_eq!(owner.asked.get(), 0);
        // Forgetting the earliest drops it at once; the stale one under it goes at the next
        // question, and the live one after it is looked up once.
        owner.wants.remove(&2);
        deadlines.forget(at(100), &2);
        assert_eq!(deadlines.len(), 2);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(300)));
        assert_eq!(owner.asked.get(), 2);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(300)));
        assert_eq!(owner.asked.get(), 2);
        // A re-arm: the old entry forgotten, the new one pushed.
        owner.wants.insert(1, at(50));
        deadlines.forget(at(300), &1);
        deadlines.push(at(50), 1);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(50)));
        assert_eq!(owner.asked.get(), 2);
        // A pop leaves the next one unchecked.
        owner.wants.insert(4, at(70));
        deadlines.push(at(70), 4);
        assert_eq!(deadlines.pop_due(at(49)), None);
        assert_eq!(deadlines.pop_due(at(60)), Some((at(50), 1)));
        owner.wants.remove(&1);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(70)));
        assert_eq!(owner.asked.get(), 3);
        // Forgetting the last entry leaves an empty heap, checked.
        owner.wants.remove(&4);
        deadlines.forget(at(70), &4);
        assert_eq!(owner.earliest(&mut deadlines), None);
        assert_eq!(owner.asked.get(), 3);
        assert_eq!(deadlines.len(), 0);
    }

    #[test]
    fn a_stale_entry_surfacing_after_a_pop_is_dropped() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut deadlines = Deadlines::default();
        let mut owner = Owner {
            wants: HashMap::from([(1, at(10)), (2, at(20)), (3, at(30))]),
            asked: Cell::new(0),
        };
        for (key, when) in owner.wants.clone() {
            deadlines.push(when, key);
        }
        // Key 2 changed its mind without telling (as a forgotten entry deeper would be).
        owner.wants.remove(&2);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(10)));
        assert_eq!(deadlines.pop_due(at(10)), Some((at(10), 1)));
        owner.wants.remove(&1);
        assert_eq!(owner.earliest(&mut deadlines), Some(at(30)));
        assert_eq!(deadlines.len(), 1);
    }
}
