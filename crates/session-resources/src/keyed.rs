//! Counts per key (user, group) with a limit per key, in a sharded map whose entries are removed
//! when their count returns to zero, so keys seen once do not accumulate.
//!
//! Each key is hashed once per acquire, with a keyed hash (`RandomState`: user names come from
//! the network, so the table must not be floodable with chosen collisions). The hash picks the
//! shard and is itself the key of the shard's map, which therefore does not hash again; the
//! [`Claim`] handed out keeps the hash, so a release does not hash at all. Two keys with the
//! same 64-bit hash are kept apart in the entry's overflow list.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use parking_lot::Mutex;

/// Number of independently locked shards: well above the core counts this runs on, so two
/// threads rarely wait for each other.
const SHARDS: usize = 16;

/// A `Hasher` for keys that already are a well-mixed 64-bit hash: it passes the value through.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this (through `write_u64`); fold anything else so the
        // hasher stays correct if that ever changes.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

/// One key's count, at least 1 (an entry at zero is removed).
struct Count<K> {
    key: K,
    count: usize,
}

/// The keys of one hash: almost always just `first`.
struct Entry<K> {
    first: Count<K>,
    /// Other keys with the same 64-bit hash (expected never to be used).
    collided: Vec<Count<K>>,
}

type Shard<K> = Mutex<HashMap<u64, Entry<K>, BuildHasherDefault<PreHashed>>>;

/// What [`KeyedCounts::try_acquire`] hands out and [`KeyedCounts::release`] takes back.
#[derive(Debug)]
pub(crate) struct Claim<K> {
    hash: u64,
    key: K,
}

impl<K> Claim<K> {
    pub(crate) fn key(&self) -> &K {
        &self.key
    }
}

/// Counts per key; see the module docs.
pub(crate) struct KeyedCounts<K, S = RandomState> {
    hasher: S,
    shards: Box<[Shard<K>]>,
}

impl<K: Hash + Eq + Clone> KeyedCounts<K> {
    pub(crate) fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> KeyedCounts<K, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Self {
            hasher,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, hash: u64) -> &Shard<K> {
        // Bits the shard's table uses neither for its bucket index (low bits) nor for its
        // control tags (top 7 bits). The remainder is below SHARDS, so the index is in bounds.
        &self.shards[((hash >> 32) % SHARDS as u64) as usize]
    }

    /// Adds one to `key`'s count if it is below `limit` and returns a claim to release it by;
    /// returns `None` (and changes nothing) when the count is at the limit.
    pub(crate) fn try_acquire<Q>(
        &self,
        key: &Q,
        limit: usize,
        to_owned: impl FnOnce(&Q) -> K,
    ) -> Option<Claim<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let mut map = self.shard(hash).lock();
        let Some(entry) = map.get_mut(&hash) else {
            if limit == 0 {
                return None;
            }
            let owned = to_owned(key);
            let first = Count {
                key: owned.clone(),
                count: 1,
            };
            map.insert(
                hash,
                Entry {
                    first,
                    collided: Vec::new(),
                },
            );
            return Some(Claim { hash, key: owned });
        };
        let existing = std::iter::once(&mut entry.first)
            .chain(entry.collided.iter_mut())
            .find(|count| count.key.borrow() == key);
        match existing {
            Some(count) if count.count >= limit => None,
            Some(count) => {
                count.count += 1;
                Some(Claim {
                    hash,
                    key: count.key.clone(),
                })
            }
            None if limit == 0 => None,
            None => {
                let owned = to_owned(key);
                entry.collided.push(Count {
                    key: owned.clone(),
                    count: 1,
                });
                Some(Claim { hash, key: owned })
            }
        }
    }

    /// Takes one from the claimed key's count, removing it when it reaches zero.
    pub(crate) fn release(&self, claim: &Claim<K>) {
        let mut map = self.shard(claim.hash).lock();
        let Some(entry) = map.get_mut(&claim.hash) else {
            // Only `try_acquire` makes claims, and each is released once, so the entry exists;
            // if that ever broke, doing nothing is better than a panic in `drop`.
            debug_assert!(false, "release of a key that holds no count");
            return;
        };
        if entry.first.key == claim.key {
            if entry.first.count > 1 {
                entry.first.count -= 1;
            } else if let Some(next) = entry.collided.pop() {
                entry.first = next;
            } else {
                map.remove(&claim.hash);
            }
        } else if let Some(index) = entry.collided.iter().position(|c| c.key == claim.key) {
            let count = &mut entry.collided[index];
            if count.count > 1 {
                count.count -= 1;
            } else {
                entry.collided.swap_remove(index);
            }
        } else {
            debug_assert!(false, "release of a key that holds no count");
        }
    }

    /// The current count of `key` (0 when absent).
    pub(crate) fn get<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let map = self.shard(hash).lock();
        map.get(&hash).map_or(0, |entry| {
            std::iter::once(&entry.first)
                .chain(&entry.collided)
                .find(|count| count.key.borrow() == key)
                .map_or(0, |count| count.count)
        })
    }

    /// Every key with a count above zero, in no particular order. Each shard is read under its
    /// own lock, so the whole is not one instant when others are changing it.
    pub(crate) fn entries(&self) -> Vec<(K, usize)> {
        let mut out = Vec::new();
        for shard in &*self.shards {
            let map = shard.lock();
            for entry in map.values() {
                for count in std::iter::once(&entry.first).chain(&entry.collided) {
                    out.push((count.key.clone(), count.count));
                }
            }
        }
        out
    }

    /// The number of keys with a count above zero.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let map = shard.lock();
                map.values()
                    .map(|entry| 1 + entry.collided.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_up_to_the_limit_and_removes_empty_entries() {
        let counts: KeyedCounts<Arc<str>> = KeyedCounts::new();
        let a = counts.try_acquire("alice", 2, |u| Arc::from(u)).unwrap();
        let b = counts.try_acquire("alice", 2, |u| Arc::from(u)).unwrap();
        assert!(
            Arc::ptr_eq(a.key(), b.key()),
            "the stored key is shared, not reallocated"
        );
        assert!(counts.try_acquire("alice", 2, |u| Arc::from(u)).is_none());
        assert_eq!(counts.get("alice"), 2);
        assert_eq!(counts.len(), 1);
        counts.release(&a);
        assert_eq!(counts.get("alice"), 1);
        counts.release(&b);
        assert_eq!(counts.get("alice"), 0);
        assert_eq!(counts.len(), 0);
        assert!(counts.entries().is_empty());
    }

    #[test]
    fn limit_zero_refuses_without_an_entry() {
        let counts: KeyedCounts<u64> = KeyedCounts::new();
        assert!(counts.try_acquire(&7, 0, |k| *k).is_none());
        assert_eq!(counts.len(), 0);
    }

    /// Every key hashes alike, so every key after the first is a collision.
    #[derive(Default)]
    struct Constant;

    impl Hasher for Constant {
        fn finish(&self) -> u64 {
            42
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn keys_with_the_same_hash_are_counted_apart() {
        let counts: KeyedCounts<Arc<str>, BuildHasherDefault<Constant>> =
            KeyedCounts::with_hasher(BuildHasherDefault::default());
        let new = |u: &str| Arc::from(u);
        let a1 = counts.try_acquire("a", 2, new).unwrap();
        let b1 = counts.try_acquire("b", 2, new).unwrap();
        let c1 = counts.try_acquire("c", 2, new).unwrap();
        let b2 = counts.try_acquire("b", 2, new).unwrap();
        assert!(counts.try_acquire("b", 2, new).is_none());
        assert!(counts.try_acquire("d", 0, new).is_none());
        assert_eq!(
            (counts.get("a"), counts.get("b"), counts.get("c")),
            (1, 2, 1)
        );
        assert_eq!(counts.len(), 3);
        // Releasing the first key moves a collided one to the front.
        counts.release(&a1);
        assert_eq!(
            (counts.get("a"), counts.get("b"), counts.get("c")),
            (0, 2, 1)
        );
        counts.release(&b1);
        counts.release(&c1);
        assert_eq!(
            (counts.get("a"), counts.get("b"), counts.get("c")),
            (0, 1, 0)
        );
        let mut entries = counts.entries();
        entries.sort();
        assert_eq!(entries, vec![(Arc::from("b"), 1)]);
        counts.release(&b2);
        assert_eq!(counts.len(), 0);
        assert!(counts.shards.iter().all(|shard| shard.lock().is_empty()));
    }
}
