//! Hash maps keyed by what the network sends (dialog ids, transaction keys): a keyed hasher
//! cheaper than SipHash, and a dialog map looked up by borrowed parts of a message, so that
//! matching a request to its dialog (RFC 3261 §12.2.2) allocates nothing.

use session_types::DialogId;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// Builds [`FoldHasher`]s with two secret keys. The keys come from the user agent's seeded
/// generator (so a replay hashes alike) without drawing from it: the keys are not among the
/// values the generator puts on the wire (tags, branches).
#[derive(Clone, Copy, Debug)]
pub struct SeededState {
    k0: u64,
    k1: u64,
}

impl SeededState {
    /// Keys derived from `rng`'s state, leaving `rng` as it was.
    pub fn derived_from(rng: &fastrand::Rng) -> Self {
        let mut keys = fastrand::Rng::with_seed(rng.get_seed() ^ 0x243f_6a88_85a3_08d3);
        Self {
            k0: keys.u64(..),
            // Odd, so multiplying by it loses no bits.
            k1: keys.u64(..) | 1,
        }
    }

    /// Keys from `fastrand`'s thread-local generator (seeded from entropy).
    pub fn random() -> Self {
        Self::derived_from(&fastrand::Rng::with_seed(fastrand::u64(..)))
    }
}

impl BuildHasher for SeededState {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            acc: self.k0,
            key: self.k1,
        }
    }
}

/// The 128-bit product of `a` and `b`, its halves xored.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // The two halves of the product: truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (p as u64, (p >> 64) as u64);
    lo ^ hi
}

/// The first 8 bytes of `bytes` (little-endian), zero-padded.
#[inline]
fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(head) = bytes.get(..8) {
        buf.copy_from_slice(head);
    }
    u64::from_le_bytes(buf)
}

/// The first 4 bytes of `bytes` (little-endian), zero-padded.
#[inline]
fn read_u32(bytes: &[u8]) -> u32 {
    let mut buf = [0u8; 4];
    if let Some(head) = bytes.get(..4) {
        buf.copy_from_slice(head);
    }
    u32::from_le_bytes(buf)
}

/// A keyed multiply-and-fold hash, one multiplication per 8 bytes. Not cryptographic: the
/// secret keys make collisions hard to choose from outside (HashDoS), which is all a map of
/// network keys needs.
#[derive(Clone, Copy, Debug)]
pub struct FoldHasher {
    acc: u64,
    key: u64,
}

impl FoldHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.acc = fold(self.acc ^ word, self.key);
    }
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(read_u64(word));
        }
        let rest = words.remainder().len();
        if rest == 0 {
            return;
        }
        // The last bytes, read without a copy: the last 8 (overlapping the words before) when
        // there are that many, else two overlapping halves or single bytes. The length goes in
        // the top bits: "a" and "a\0" differ.
        let tail = if n >= 8 {
            read_u64(bytes.get(n - 8..).unwrap_or_default())
        } else if n >= 4 {
            let lo = read_u32(bytes.get(..4).unwrap_or_default());
            let hi = read_u32(bytes.get(n - 4..).unwrap_or_default());
            u64::from(lo) | (u64::from(hi) << 32)
        } else {
            let at = |i: usize| u64::from(bytes.get(i).copied().unwrap_or_default());
            at(0) | (at(n / 2) << 8) | (at(n - 1) << 16)
        };
        self.mix(tail ^ ((rest as u64) << 61));
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.acc, self.key.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15)
    }
}

/// The three parts of a dialog id (RFC 3261 §12): Call-ID, local tag, remote tag, owned or
/// borrowed from a message. Maps keyed by [`DialogKey`] are looked up with any of them.
pub(crate) trait DialogParts {
    /// Call-ID, local tag, remote tag.
    fn parts(&self) -> (&str, &str, &str);
}

impl DialogParts for DialogId {
    fn parts(&self) -> (&str, &str, &str) {
        (self.call_id.as_str(), &self.local_tag, &self.remote_tag)
    }
}

/// A dialog id borrowed from a message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DialogRef<'a> {
    pub(crate) call_id: &'a str,
    pub(crate) local_tag: &'a str,
    pub(crate) remote_tag: &'a str,
}

impl DialogParts for DialogRef<'_> {
    fn parts(&self) -> (&str, &str, &str) {
        (self.call_id, self.local_tag, self.remote_tag)
    }
}

impl DialogRef<'_> {
    /// The owned id.
    pub(crate) fn to_id(self) -> DialogId {
        DialogId::new(
            session_types::CallId::new(self.call_id),
            self.local_tag,
            self.remote_tag,
        )
    }
}

/// Hashes the two tags only, for speed: the Call-ID is the longest part, and the tags alone
/// tell dialogs apart (ours is random; the dialogs of one forked INVITE differ in the peer's).
/// Equality still compares all three parts, so this is only faster, not looser.
fn hash_parts<H: Hasher>(parts: (&str, &str, &str), state: &mut H) {
    parts.1.hash(state);
    parts.2.hash(state);
}

impl Hash for dyn DialogParts + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.parts(), state);
    }
}

impl PartialEq for dyn DialogParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.parts(), other.parts());
        same(a.1, b.1) && same(a.2, b.2) && same(a.0, b.0)
    }
}

/// Whether `a` and `b` are equal: at once when they are the same text (an id looked up with
/// a clone of the key it is stored under, as when a dialog ends), for speed.
#[inline]
fn same(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl Eq for dyn DialogParts + '_ {}

/// A [`DialogId`] as a map key, hashed and compared as its [`DialogParts`] so that borrowed
/// parts find it.
#[derive(Clone, Debug)]
struct DialogKey(DialogId);

impl Hash for DialogKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.0.parts(), state);
    }
}

impl PartialEq for DialogKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.parts(), other.0.parts());
        same(a.1, b.1) && same(a.2, b.2) && same(a.0, b.0)
    }
}

impl Eq for DialogKey {}

impl<'a> Borrow<dyn DialogParts + 'a> for DialogKey {
    fn borrow(&self) -> &(dyn DialogParts + 'a) {
        &self.0
    }
}

/// Values by dialog id, looked up by owned or borrowed ids.
pub(crate) struct DialogMap<V> {
    map: HashMap<DialogKey, V, SeededState>,
}

impl<V> DialogMap<V> {
    pub(crate) fn new(hasher: SeededState) -> Self {
        Self {
            map: HashMap::with_hasher(hasher),
        }
    }

    pub(crate) fn get(&self, id: &dyn DialogParts) -> Option<&V> {
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &dyn DialogParts) -> Option<&mut V> {
        self.map.get_mut(id)
    }

    pub(crate) fn contains_key(&self, id: &dyn DialogParts) -> bool {
        self.map.contains_key(id)
    }

    pub(crate) fn remove(&mut self, id: &dyn DialogParts) -> Option<V> {
        self.map.remove(id)
    }

    pub(crate) fn insert(&mut self, id: DialogId, value: V) -> Option<V> {
        self.map.insert(DialogKey(id), value)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.capacity()
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.map.reserve(additional);
    }

    /// See [`crate::transaction::table::shrink_map`].
    pub(crate) fn shrink(&mut self, floor: usize) {
        crate::transaction::table::shrink_map(&mut self.map, floor);
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&DialogId, &V)> {
        self.map.iter().map(|(key, value)| (&key.0, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::CallId;

    #[test]
    fn borrowed_parts_find_owned_ids() {
        let mut map = DialogMap::new(SeededState::random());
        let id = DialogId::new(CallId::from("c@x"), "local", "remote");
        map.insert(id.clone(), 7);
        let borrowed = DialogRef {
            call_id: "c@x",
            local_tag: "local",
            remote_tag: "remote",
        };
        assert_eq!(map.get(&borrowed), Some(&7));
        assert_eq!(map.get(&id), Some(&7));
        let swapped = DialogRef {
            local_tag: "remote",
            remote_tag: "local",
            ..borrowed
        };
        assert_eq!(map.get(&swapped), None);
        // The parts are kept apart: moving a character from one to the next is another id.
        let shifted = DialogRef {
            call_id: "c@xl",
            local_tag: "ocal",
            ..borrowed
        };
        assert_eq!(map.get(&shifted), None);
        assert_eq!(map.remove(&borrowed), Some(7));
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn the_hash_depends_on_the_keys_and_every_byte() {
        let a = SeededState::derived_from(&fastrand::Rng::with_seed(1));
        let b = SeededState::derived_from(&fastrand::Rng::with_seed(2));
        assert_eq!(a.hash_one("abc"), a.hash_one("abc"), "deterministic");
        assert_ne!(a.hash_one("abc"), b.hash_one("abc"));
        let long = "0123456789abcdefghij";
        assert_ne!(a.hash_one(long), a.hash_one("0123456789abcdefghiJ"));
        assert_ne!(a.hash_one(b"a".as_slice()), a.hash_one(b"a\0".as_slice()));
        // Every length's last byte counts, whatever path its tail takes.
        for n in 1..=24 {
            let s = "x".repeat(n);
            let mut t = s.clone();
            t.replace_range(n - 1.., "y");
            assert_ne!(a.hash_one(&s), a.hash_one(&t), "length {n}");
            let zeros = vec![0u8; n];
            let mut h0 = a.build_hasher();
            h0.write(&zeros);
            let mut h1 = a.build_hasher();
            h1.write(&zeros[..n - 1]);
            assert_ne!(h0.finish(), h1.finish(), "zeros, length {n}");
        }
    }
}
