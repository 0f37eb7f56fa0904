//! All live transactions of an endpoint, indexed by the key a message is matched on, with one
//! timer structure for all of them (a min-heap with lazy deletion, [`Deadlines`]: re-arming
//! pushes the new deadline, stale entries are skipped when they surface; the earliest is looked
//! up only when something could have made it stale).

use super::deadlines::Deadlines;
use super::{Action, ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite};
use crate::map::SeededState;
use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A handle to one transaction in a [`TransactionTable`]; never reused within a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(u64);

/// Hashes a [`TransactionId`] with one multiplication. Ids are handed out by the table in
/// sequence, never taken from the network, so they need no protection against chosen
/// collisions; SipHash would cost more than the rest of a lookup. The multiplier spreads the
/// sequence over the high bits, which the hash map uses as per-bucket tags.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TransactionId`; fold anything else in the same way.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by [`TransactionId`] with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<TransactionId, V, BuildHasherDefault<IdHasher>>;

/// Room the per-call maps and queues keep when idle: giving it back after every call only to
/// allocate it again for the next one costs more than it saves.
pub(crate) const KEEP: usize = 16;

/// Boxes kept for the next values of their type (for speed: every call allocates and frees
/// the same few boxes, and reusing them spares both). At most [`KEEP`]; a box is given back
/// emptied of what it held that is big (see the callers of [`Spare::keep`]), and what is left
/// in it is dropped when it is reused.
pub(crate) struct Spare<T>(Vec<Box<T>>);

impl<T> Default for Spare<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Spare<T> {
    /// `value` in a box: a kept one if there is one.
    pub(crate) fn boxed(&mut self, value: T) -> Box<T> {
        match self.0.pop() {
            Some(mut boxed) => {
                *boxed = value;
                boxed
            }
            None => Box::new(value),
        }
    }

    /// Keeps `boxed` for [`Spare::boxed`], unless [`KEEP`] are kept already.
    pub(crate) fn keep(&mut self, boxed: Box<T>) {
        if self.0.len() < KEEP {
            self.0.push(boxed);
        }
    }
}

/// What to shrink a collection of `len` entries and room for `capacity` to: twice its length
/// (at least `floor`) when it holds less than a quarter of its capacity and the room is more
/// than twice that, else `None` (shrinking it would give back little, or nothing).
pub(crate) fn shrink_target(len: usize, capacity: usize, floor: usize) -> Option<usize> {
    let target = len.saturating_mul(2).max(floor);
    (len.saturating_mul(4) < capacity && capacity > target.saturating_mul(2)).then_some(target)
}

/// Shrinks `map` as [`shrink_target`] says: hash maps keep the room of their peak otherwise.
pub(crate) fn shrink_map<K: Hash + Eq, V, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, V, S>,
    floor: usize,
) {
    if let Some(target) = shrink_target(map.len(), map.capacity(), floor) {
        map.shrink_to(target);
    }
}

/// [`shrink_map`] for a heap.
pub(crate) fn shrink_heap<T: Ord>(heap: &mut BinaryHeap<T>, floor: usize) {
    if let Some(target) = shrink_target(heap.len(), heap.capacity(), floor) {
        heap.shrink_to(target);
    }
}

/// [`shrink_map`] for a queue.
pub(crate) fn shrink_queue<T>(queue: &mut VecDeque<T>, floor: usize) {
    if let Some(target) = shrink_target(queue.len(), queue.capacity(), floor) {
        queue.shrink_to(target);
    }
}

/// One of the four transaction machines.
#[derive(Debug)]
pub enum Transaction {
    /// INVITE client transaction.
    ClientInvite(ClientInvite),
    /// Non-INVITE client transaction.
    ClientNonInvite(ClientNonInvite),
    /// INVITE server transaction.
    ServerInvite(ServerInvite),
    /// Non-INVITE server transaction.
    ServerNonInvite(ServerNonInvite),
}

impl Transaction {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Self::ClientInvite(tx) => tx.deadline(),
            Self::ClientNonInvite(tx) => tx.deadline(),
            Self::ServerInvite(tx) => tx.deadline(),
            Self::ServerNonInvite(tx) => tx.deadline(),
        }
    }

    fn poll_action(&mut self) -> Option<Action> {
        match self {
            Self::ClientInvite(tx) => tx.poll_action(),
            Self::ClientNonInvite(tx) => tx.poll_action(),
            Self::ServerInvite(tx) => tx.poll_action(),
            Self::ServerNonInvite(tx) => tx.poll_action(),
        }
    }

    fn release_buffers(&mut self) {
        match self {
            Self::ClientInvite(tx) => tx.release_buffers(),
            Self::ClientNonInvite(tx) => tx.release_buffers(),
            Self::ServerInvite(tx) => tx.release_buffers(),
            Self::ServerNonInvite(tx) => tx.release_buffers(),
        }
    }

    fn is_server(&self) -> bool {
        matches!(self, Self::ServerInvite(_) | Self::ServerNonInvite(_))
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::ClientInvite(tx) => tx.handle_timeout(now),
            Self::ClientNonInvite(tx) => tx.handle_timeout(now),
            Self::ServerInvite(tx) => tx.handle_timeout(now),
            Self::ServerNonInvite(tx) => tx.handle_timeout(now),
        }
    }
}

struct Slot<K, C> {
    key: K,
    transaction: Transaction,
    /// The deadline currently in the heap for this transaction.
    armed: Option<Instant>,
    /// What the owner keeps with the transaction (peer address, the request, the dialog …).
    context: C,
    /// Terminated: out of the index, kept only until its queued actions are polled so the
    /// owner can still read the context (e.g. where to send a last response).
    dead: bool,
}

/// A slot in its box. `None` only while the box waits in [`TransactionTable::spare`].
type SlotBox<K, C> = Box<Option<Slot<K, C>>>;

/// Collects the actions of transaction `id` (in `slot`) into `actions`, re-arms its timer in
/// `timers`, and takes it out of `index` once it terminated. Given the slot rather than its id,
/// so that a caller holding it does not look it up again (for speed: every input to a
/// transaction ends here).
fn settle<K: Hash + Eq, C>(
    id: TransactionId,
    slot: &mut Slot<K, C>,
    actions: &mut VecDeque<(TransactionId, Action)>,
    timers: &mut Deadlines<TransactionId>,
    index: &mut HashMap<K, TransactionId, SeededState>,
) {
    if slot.dead {
        return;
    }
    let mut terminated = false;
    while let Some(action) = slot.transaction.poll_action() {
        terminated |= action == Action::Terminated;
        actions.push_back((id, action));
    }
    if terminated {
        slot.dead = true;
        if let Some(old) = slot.armed.take() {
            timers.forget(old, &id);
        }
        index.remove(&slot.key);
        return;
    }
    slot.transaction.release_buffers();
    let deadline = slot.transaction.deadline();
    if deadline != slot.armed {
        if let Some(old) = slot.armed {
            timers.forget(old, &id);
        }
        slot.armed = deadline;
        if let Some(at) = deadline {
            timers.push(at, id);
        }
    }
}

/// Slot `id` of `slots`.
fn slot<K, C>(slots: &IdMap<SlotBox<K, C>>, id: TransactionId) -> Option<&Slot<K, C>> {
    Option::as_ref(slots.get(&id)?)
}

/// Slot `id` of `slots`, mutably.
fn slot_mut<K, C>(slots: &mut IdMap<SlotBox<K, C>>, id: TransactionId) -> Option<&mut Slot<K, C>> {
    Option::as_mut(slots.get_mut(&id)?)
}

/// Live transactions keyed by `K`, each carrying owner context `C`.
///
/// After every change through [`TransactionTable::with`] the table collects the transaction's
/// actions into one queue (drained by [`TransactionTable::poll_action`]), re-arms its timer,
/// and removes it once it reports [`Action::Terminated`].
pub struct TransactionTable<K, C> {
    /// Boxed: the map keeps room for the peak number of transactions, and a small slot keeps
    /// that room small once they are gone.
    slots: IdMap<SlotBox<K, C>>,
    /// Boxes of removed slots (emptied), for the next transactions: for speed, a call makes
    /// two transactions, and reusing their boxes spares an allocation and a free each.
    spare: Spare<Option<Slot<K, C>>>,
    /// Keys come from the network: hashed with secret keys ([`SeededState`]).
    index: HashMap<K, TransactionId, SeededState>,
    /// Each live transaction's `armed` deadline (and stale ones, skipped).
    timers: Deadlines<TransactionId>,
    actions: VecDeque<(TransactionId, Action)>,
    next_id: u64,
}

impl<K: Hash + Eq + Clone, C> Default for TransactionTable<K, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, C> TransactionTable<K, C> {
    /// An empty table, its keys hashed with secret keys drawn from entropy.
    pub fn new() -> Self {
        Self::with_hasher(SeededState::random())
    }

    /// An empty table whose keys are hashed with `hasher`.
    pub(crate) fn with_hasher(hasher: SeededState) -> Self {
        Self {
            slots: IdMap::default(),
            spare: Spare::default(),
            index: HashMap::with_hasher(hasher),
            timers: Deadlines::default(),
            actions: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Makes room for `additional` more transactions, so a burst of calls does not pause to
    /// grow (and rehash) the maps.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.index.reserve(additional);
        self.timers.reserve(additional);
    }

    /// Gives back room a past peak left: a map holding less than a quarter of its capacity
    /// shrinks to twice its length, never below `floor` entries.
    pub fn shrink_sparse(&mut self, floor: usize) {
        shrink_map(&mut self.slots, floor);
        shrink_map(&mut self.index, floor);
        self.timers.shrink(floor);
        shrink_queue(&mut self.actions, KEEP);
    }

    /// Room for entries in the maps and heaps (for tests and metrics).
    pub fn capacity(&self) -> usize {
        self.slots.capacity() + self.index.capacity() + self.timers.capacity()
    }

    /// Adds a transaction under `key`; `None` if a transaction with that key is already live
    /// (the caller then has a retransmission or a key collision, not a new transaction).
    pub fn insert(
        &mut self,
        key: K,
        transaction: Transaction,
        context: C,
    ) -> Option<TransactionId> {
        let id = TransactionId(self.next_id);
        let inserted = self.insert_reserved(id, key, transaction, context);
        if inserted.is_some() {
            self.next_id += 1;
        }
        inserted
    }

    /// Hands out the id the next transaction will have without creating it, for a transaction
    /// that starts later (a CANCEL deferred until the INVITE's first provisional response,
    /// RFC 3261 §9.1); create it with [`TransactionTable::insert_reserved`].
    pub fn reserve_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Like [`TransactionTable::insert`], under an id from [`TransactionTable::reserve_id`]
    /// (or the next id, from `insert`). `None` if the key or the id is already live.
    pub fn insert_reserved(
        &mut self,
        id: TransactionId,
        key: K,
        transaction: Transaction,
        context: C,
    ) -> Option<TransactionId> {
        if self.slots.contains_key(&id) {
            return None;
        }
        match self.index.entry(key.clone()) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(vacant) => {
                vacant.insert(id);
            }
        }
        let mut slot = Slot {
            key,
            transaction,
            armed: None,
            context,
            dead: false,
        };
        settle(
            id,
            &mut slot,
            &mut self.actions,
            &mut self.timers,
            &mut self.index,
        );
        self.slots.insert(id, self.spare.boxed(Some(slot)));
        Some(id)
    }

    /// The transaction matching `key`, if live.
    pub fn find<Q>(&self, key: &Q) -> Option<TransactionId>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).copied()
    }

    /// The owner context of a transaction, live or with actions still queued.
    pub fn context(&self, id: TransactionId) -> Option<&C> {
        slot(&self.slots, id).map(|slot| &slot.context)
    }

    /// Whether `id` is a server transaction (live, or with actions still queued).
    pub fn is_server(&self, id: TransactionId) -> bool {
        slot(&self.slots, id).is_some_and(|slot| slot.transaction.is_server())
    }

    /// The owner context of a live transaction, mutably.
    pub fn context_mut(&mut self, id: TransactionId) -> Option<&mut C> {
        slot_mut(&mut self.slots, id)
            .filter(|slot| !slot.dead)
            .map(|slot| &mut slot.context)
    }

    /// Runs `f` on a live transaction, then collects its actions and re-arms its timer.
    pub fn with<R>(
        &mut self,
        id: TransactionId,
        f: impl FnOnce(&mut Transaction, &mut C) -> R,
    ) -> Option<R> {
        let slot = slot_mut(&mut self.slots, id).filter(|slot| !slot.dead)?;
        let result = f(&mut slot.transaction, &mut slot.context);
        settle(
            id,
            slot,
            &mut self.actions,
            &mut self.timers,
            &mut self.index,
        );
        Some(result)
    }

    /// When [`TransactionTable::handle_timeout`] must next be called.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        // Stale heap entries are dropped, so the answer is exact.
        let slots = &self.slots;
        self.timers
            .earliest(|at, id| slot(slots, *id).is_some_and(|slot| slot.armed == Some(at)))
    }

    /// [`TransactionTable::next_deadline`] as if nothing were remembered (for tests: the
    /// earliest deadline looked up again).
    #[cfg(test)]
    pub(crate) fn next_deadline_unchecked(&mut self) -> Option<Instant> {
        self.timers.forget_checks();
        self.next_deadline()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(slot) = slot_mut(&mut self.slots, id) else {
                continue;
            };
            if slot.armed != Some(at) {
                continue; // re-armed since; a newer entry is in the heap
            }
            slot.armed = None;
            slot.transaction.handle_timeout(now);
            settle(
                id,
                slot,
                &mut self.actions,
                &mut self.timers,
                &mut self.index,
            );
        }
    }

    /// The next action of any transaction, with the transaction it came from. Polling a
    /// transaction's [`Action::Terminated`] removes it from the table for good.
    #[inline]
    pub fn poll_action(&mut self) -> Option<(TransactionId, Action)> {
        let (id, action) = self.actions.pop_front()?;
        if action == Action::Terminated
            && let Some(mut boxed) = self.slots.remove(&id)
        {
            // The transaction goes now; its box waits for the next one.
            *boxed = None;
            self.spare.keep(boxed);
        }
        Some((id, action))
    }

    /// Live transactions and their contexts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TransactionId, &C)> {
        self.slots
            .iter()
            .filter_map(|(id, slot)| Some((*id, Option::as_ref(slot)?)))
            .filter(|(_, slot)| !slot.dead)
            .map(|(id, slot)| (id, &slot.context))
    }

    /// Transactions held: live ones, and terminated ones whose actions are not yet polled.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Timer entries held (live and stale); bounded by the number of re-arms still pending.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{TimerConfig, Transport, Verdict};
    use bytes::Bytes;
    use std::time::Duration;

    fn client(now: Instant, transport: Transport) -> Transaction {
        Transaction::ClientNonInvite(ClientNonInvite::new(
            now,
            Bytes::from_static(b"OPTIONS"),
            transport,
            TimerConfig::default(),
        ))
    }

    #[test]
    fn keys_are_unique_while_live() {
        let t0 = Instant::now();
        let mut table: TransactionTable<&str, ()> = TransactionTable::new();
        let a = table
            .insert("z9hG4bK1", client(t0, Transport::Unreliable), ())
            .unwrap();
        assert!(
            table
                .insert("z9hG4bK1", client(t0, Transport::Unreliable), ())
                .is_none()
        );
        assert_eq!(table.find(&"z9hG4bK1"), Some(a));
        assert_eq!(
            table.poll_action(),
            Some((a, Action::Transmit(Bytes::from_static(b"OPTIONS"))))
        );
    }

    #[test]
    fn timers_fire_in_order_and_terminated_transactions_leave_the_table() {
        let t0 = Instant::now();
        let mut table: TransactionTable<u32, &str> = TransactionTable::new();
        for key in 0..100 {
            table.insert(
                key,
                client(
                    t0 + Duration::from_millis(u64::from(key)),
                    Transport::Unreliable,
                ),
                "ctx",
            );
        }
        while table.poll_action().is_some() {}
        // Answer half of them at once; the rest time out by Timer F.
        for key in (0..100).step_by(2) {
            let id = table.find(&key).unwrap();
            let verdict = table.with(id, |tx, _| match tx {
                Transaction::ClientNonInvite(tx) => tx.handle_response(t0, 200),
                _ => unreachable!(),
            });
            assert_eq!(verdict, Some(Verdict::PassUp));
        }
        let mut now = t0;
        let mut timed_out = 0;
        let mut terminated = 0;
        while let Some(at) = table.next_deadline() {
            assert!(at >= now, "deadlines never go backwards");
            now = at;
            table.handle_timeout(now);
            while let Some((_, action)) = table.poll_action() {
                timed_out += usize::from(action == Action::TimedOut);
                terminated += usize::from(action == Action::Terminated);
            }
        }
        assert_eq!((timed_out, terminated), (50, 100));
        assert!(table.is_empty());
        assert_eq!(table.timer_entries(), 0);
        assert!(now <= t0 + Duration::from_millis(99) + Duration::from_secs(32));
    }

    /// The earliest armed deadline of the live transactions, from the slots themselves.
    fn earliest_armed<K, C>(table: &TransactionTable<K, C>) -> Option<Instant> {
        table
            .slots
            .values()
            .filter_map(|slot| Option::as_ref(slot))
            .filter(|slot| !slot.dead)
            .filter_map(|slot| slot.armed)
            .min()
    }

    /// The deadline the table remembers is the one its transactions have, after each kind of
    /// change: a transaction added, re-armed (a retransmission, a final response), ended at
    /// once (a reliable final response), timed out and removed.
    #[test]
    fn the_next_deadline_follows_every_change() {
        let t0 = Instant::now();
        let mut table: TransactionTable<u32, ()> = TransactionTable::new();
        fn check(table: &mut TransactionTable<u32, ()>) {
            let remembered = table.next_deadline();
            assert_eq!(remembered, earliest_armed(table));
            assert_eq!(remembered, table.next_deadline_unchecked());
            while table.poll_action().is_some() {}
        }
        check(&mut table);
        for key in 0..20 {
            let transport = if key % 3 == 0 {
                Transport::Reliable
            } else {
                Transport::Unreliable
            };
            let at = t0 + Duration::from_millis(u64::from(20 - key));
            table.insert(key, client(at, transport), ());
            check(&mut table);
        }
        // Answered, the latest first: the earliest is re-armed (or ended) last.
        for key in 0..20 {
            let id = table.find(&key).unwrap();
            table.with(id, |tx, _| {
                if let Transaction::ClientNonInvite(tx) = tx {
                    tx.handle_response(t0, if key % 2 == 0 { 200 } else { 100 });
                }
            });
            check(&mut table);
        }
        while let Some(at) = table.next_deadline() {
            table.handle_timeout(at);
            check(&mut table);
        }
        assert!(table.is_empty());
    }

    #[test]
    fn reliable_final_removes_the_transaction_at_once() {
        let t0 = Instant::now();
        let mut table: TransactionTable<u8, ()> = TransactionTable::new();
        let id = table
            .insert(1, client(t0, Transport::Reliable), ())
            .unwrap();
        table.with(id, |tx, _| {
            if let Transaction::ClientNonInvite(tx) = tx {
                tx.handle_response(t0, 200);
            }
        });
        assert_eq!(table.find(&1), None, "out of the index at once");
        assert!(table.with(id, |_, _| ()).is_none());
        assert!(
            table.context(id).is_some(),
            "context readable until actions are polled"
        );
        let actions: Vec<_> = std::iter::from_fn(|| table.poll_action())
            .map(|(_, a)| a)
            .collect();
        assert_eq!(actions.last(), Some(&Action::Terminated));
        assert!(table.is_empty());
        assert!(table.context(id).is_none());
    }
}
