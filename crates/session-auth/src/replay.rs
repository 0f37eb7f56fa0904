//! Replay protection through nonce counts (RFC 7616 §3.4, §5.10): per nonce, the highest `nc`
//! accepted so far; a request must bring a higher one.
//!
//! Memory is bounded by a capacity in nonces. When it is full the nonce first seen longest
//! ago is evicted; if that nonce had not yet expired, the cache remembers the newest
//! timestamp it ever evicted that way, and from then on refuses (as stale) any unknown nonce
//! issued at or before it — so an eviction can never let an old `nc` be replayed, it can only
//! make a client fetch a fresh nonce. Expired nonces are dropped first, oldest first.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use session_auth::{Attempt, Credentials, DigestClient, DigestRequest, DigestServer, Ha1, Verdict};
//! use session_sip::HeaderName;
//!
//! let mut rng = fastrand::Rng::with_seed(1);
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut server = DigestServer::builder("example.com", b"a secret of 16+ bytes").build()?;
//! let lookup = |user: &str, realm: &str, hash| {
//!     (user == "alice").then(|| Ha1::from_password(hash, user, realm, "pw"))
//! };
//! let req = DigestRequest::new("OPTIONS", "sip:example.com", b"");
//!
//! let challenge = server.challenge(now, &mut rng);
//! let mut client = DigestClient::new();
//! let headers = client.handle_challenge(
//!     &mut Attempt::new(),
//!     challenge.status,
//!     challenge.headers(),
//!     &req,
//!     &|_: &str| Some(Credentials::password("alice", "pw")),
//!     &mut rng,
//! )?;
//! let auth = headers[0].value.as_str();
//! assert!(matches!(server.verify(&req, [auth], &lookup, now, &mut rng), Verdict::Authorized { .. }));
//! // The very same credentials again: a replay, refused (with a fresh, stale nonce).
//! assert!(matches!(
//!     server.verify(&req, [auth], &lookup, now, &mut rng),
//!     Verdict::Challenge(c) if c.stale
//! ));
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::collections::{HashMap, VecDeque};

/// Key of a nonce in the cache: its MAC, unique per nonce and not chosen by the client.
pub(crate) type NonceKey = [u8; 16];

/// What the cache says about a nonce count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Seen {
    /// Higher than any before for this nonce: accepted and recorded.
    Fresh,
    /// Not higher than one already accepted: a replay.
    Replayed,
    /// The nonce may have been evicted: the count cannot be checked.
    Forgotten,
}

#[derive(Debug)]
pub(crate) struct ReplayCache {
    /// Highest `nc` accepted per nonce.
    highest: HashMap<NonceKey, u32>,
    /// Nonces in the order first seen, with their issue times.
    order: VecDeque<(NonceKey, u64)>,
    capacity: usize,
    /// The newest issue time of a nonce evicted before it expired.
    evicted_live: Option<u64>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            highest: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            evicted_live: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.highest.len()
    }

    /// Checks and records `nc` for the nonce `key` issued at `issued` (seconds), at `now`,
    /// nonces living `lifetime` seconds.
    pub(crate) fn check(
        &mut self,
        key: NonceKey,
        issued: u64,
        nc: u32,
        now: u64,
        lifetime: u64,
    ) -> Seen {
        while let Some(&(old, at)) = self.order.front() {
            if now.saturating_sub(at) <= lifetime {
                break;
            }
            self.order.pop_front();
            self.highest.remove(&old);
        }
        if let Some(highest) = self.highest.get_mut(&key) {
            if nc <= *highest {
                return Seen::Replayed;
            }
            *highest = nc;
            return Seen::Fresh;
        }
        if nc == 0 {
            return Seen::Replayed;
        }
        if self.evicted_live.is_some_and(|t| issued <= t) {
            return Seen::Forgotten;
        }
        if self.highest.len() >= self.capacity
            && let Some((old, at)) = self.order.pop_front()
        {
            self.highest.remove(&old);
            if now.saturating_sub(at) <= lifetime {
                self.evicted_live = Some(self.evicted_live.map_or(at, |t| t.max(at)));
            }
        }
        self.highest.insert(key, nc);
        self.order.push_back((key, issued));
        Seen::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> NonceKey {
        [n; 16]
    }

    #[test]
    fn counts_must_increase() {
        let mut c = ReplayCache::new(4);
        assert_eq!(c.check(key(1), 100, 1, 100, 60), Seen::Fresh);
        assert_eq!(c.check(key(1), 100, 1, 100, 60), Seen::Replayed);
        assert_eq!(c.check(key(1), 100, 3, 100, 60), Seen::Fresh);
        assert_eq!(c.check(key(1), 100, 2, 100, 60), Seen::Replayed);
        assert_eq!(c.check(key(2), 100, 0, 100, 60), Seen::Replayed);
    }

    #[test]
    fn bounded_and_evictions_never_allow_a_replay() {
        let mut c = ReplayCache::new(2);
        assert_eq!(c.check(key(1), 100, 1, 100, 60), Seen::Fresh);
        assert_eq!(c.check(key(2), 101, 1, 101, 60), Seen::Fresh);
        // Full: key 1 goes, although it has not expired.
        assert_eq!(c.check(key(3), 102, 1, 102, 60), Seen::Fresh);
        assert_eq!(c.len(), 2);
        // Key 1 again with its old count: not known, but issued before an eviction.
        assert_eq!(c.check(key(1), 100, 1, 103, 60), Seen::Forgotten);
        // A nonce issued after the evicted one is fine.
        assert_eq!(c.check(key(4), 103, 1, 103, 60), Seen::Fresh);
        assert!(c.len() <= 2);
    }

    #[test]
    fn expired_nonces_are_dropped_first() {
        let mut c = ReplayCache::new(2);
        c.check(key(1), 100, 1, 100, 60);
        c.check(key(2), 101, 1, 101, 60);
        // At 200 both have expired: they are dropped, no eviction is counted.
        assert_eq!(c.check(key(3), 200, 1, 200, 60), Seen::Fresh);
        assert_eq!(c.len(), 1);
        assert_eq!(c.evicted_live, None);
    }
}
