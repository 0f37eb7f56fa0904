//! The RTP port pool: pairs of UDP ports, an even one for RTP and the next odd one for RTCP
//! (RFC 3550 §11; RFC 3605 lets SDP name another RTCP port, but the pair is what peers
//! expect by default).
//!
//! A [`PortPool`] is made from a range such as `20000..30000`; it holds every even port `p` of
//! the range whose `p + 1` is also in the range (port 0 is never used), so odd or unaligned
//! bounds simply lose the port that has no partner. [`PortPool::acquire`] leases a pair as a
//! [`PortPair`], which goes back to the pool when dropped. Free pairs are kept first in, first
//! out: a pair just given back is handed out again only after every other free pair, so stray
//! RTP packets still addressed to an ended call are unlikely to reach the next one on the
//! same port.
//!
//! The pool only does the bookkeeping; it does not bind sockets. If binding a leased pair fails
//! (another program holds the port), keep that lease while acquiring the next pair, then drop
//! it: the refused pair goes to the back of the queue instead of being handed out again at once.
//!
//! ```
//! use session_resources::PortPool;
//!
//! let pool = PortPool::new(20001..20006)?; // pairs 20002/20003 and 20004/20005
//! assert_eq!(pool.capacity(), 2);
//! let a = pool.acquire()?;
//! assert_eq!((a.rtp(), a.rtcp()), (20002, 20003));
//! let b = pool.acquire()?;
//! assert!(pool.acquire().is_err()); // exhausted: 503 with Retry-After
//! drop(a);
//! // FIFO: 20002 went to the back, but it is the only free pair, so it comes next.
//! assert_eq!(pool.acquire()?.rtp(), 20002);
//! drop(b);
//! assert_eq!(pool.in_use(), 0);
//! # Ok::<(), session_resources::ResourceError>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{DEFAULT_RETRY_AFTER, Resource, ResourceError, Result};

struct PoolInner {
    state: Mutex<PoolState>,
    /// The lowest RTP port and the highest RTCP port of the pool.
    ports: RangeInclusive<u16>,
    capacity: usize,
    retry_after: Duration,
}

/// Everything that changes, under one lock: the statistics are updated under the lock that is
/// taken anyway, which is cheaper than atomics of their own.
struct PoolState {
    /// RTP ports of the free pairs, oldest release first.
    free: VecDeque<u16>,
    peak: usize,
    acquired: u64,
    refused: u64,
}

/// A pool of RTP/RTCP port pairs. Cheap to clone: clones share the same pool.
///
/// The pool holds every even port `p` of its range whose `p + 1` is also in the range (port 0
/// is never used). [`acquire`](Self::acquire) leases the pair that has been free longest, so a
/// pair just given back is reused last. The pool does not bind sockets: if binding a leased
/// pair fails, keep that lease while acquiring the next, then drop it.
#[derive(Clone)]
pub struct PortPool {
    inner: Arc<PoolInner>,
}

/// Builds a [`PortPool`] with settings other than the defaults; from [`PortPool::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct PortPoolBuilder {
    /// Lowest and highest port as asked for; wider than `u16` so `u16::MAX + 1` (from
    /// `..=65535` excluded starts) and `-1` (from `..0`) need no special case.
    start: i32,
    end: i32,
    retry_after: Duration,
}

impl PortPoolBuilder {
    /// The wait suggested to a caller refused because the pool is empty.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The pool, or [`ResourceError::EmptyPortRange`] if the range holds no pair.
    pub fn build(self) -> Result<PortPool> {
        let clamp = |port: i32| u16::try_from(port.clamp(0, i32::from(u16::MAX))).unwrap_or(0);
        // The first even port at or after the start, never port 0.
        let first = self.start.max(2);
        let first = first + (first & 1);
        if first + 1 > self.end {
            return Err(ResourceError::EmptyPortRange {
                start: clamp(self.start),
                end: clamp(self.end),
            });
        }
        // Even ports `first, first + 2, ...` whose partner `p + 1` is at most `end`.
        let rtp_ports: VecDeque<u16> = (first..self.end)
            .step_by(2)
            .filter_map(|port| u16::try_from(port).ok())
            .collect();
        let last_rtcp = rtp_ports.back().map_or(0, |rtp| rtp + 1);
        let capacity = rtp_ports.len();
        tracing::debug!(
            first = clamp(first),
            last = last_rtcp,
            pairs = capacity,
            "RTP port pool"
        );
        Ok(PortPool {
            inner: Arc::new(PoolInner {
                ports: clamp(first)..=last_rtcp,
                state: Mutex::new(PoolState {
                    free: rtp_ports,
                    peak: 0,
                    acquired: 0,
                    refused: 0,
                }),
                capacity,
                retry_after: self.retry_after,
            }),
        })
    }
}

impl PortPool {
    /// A pool of the pairs in `range` (`20000..30000`, `20000..=29999`, `20000..`), with the
    /// default [`DEFAULT_RETRY_AFTER`] suggested when it is empty. Fails with
    /// [`ResourceError::EmptyPortRange`] if the range holds no pair.
    pub fn new(range: impl RangeBounds<u16>) -> Result<Self> {
        Self::builder(range).build()
    }

    /// A builder for a pool of the pairs in `range`, for settings other than the defaults.
    pub fn builder(range: impl RangeBounds<u16>) -> PortPoolBuilder {
        let start = match range.start_bound() {
            Bound::Included(&port) => i32::from(port),
            Bound::Excluded(&port) => i32::from(port) + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&port) => i32::from(port),
            Bound::Excluded(&port) => i32::from(port) - 1,
            Bound::Unbounded => i32::from(u16::MAX),
        };
        PortPoolBuilder {
            start,
            end,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }

    /// Leases the free pair that has been free longest, or returns
    /// [`ResourceError::Exhausted`] (resource [`Resource::RtpPorts`], limit the capacity) when
    /// every pair is leased.
    pub fn acquire(&self) -> Result<PortPair> {
        let inner = &*self.inner;
        let rtp = {
            let mut state = inner.state.lock();
            let rtp = state.free.pop_front();
            if rtp.is_some() {
                state.acquired += 1;
                state.peak = state.peak.max(inner.capacity - state.free.len());
            } else {
                state.refused += 1;
            }
            rtp
        };
        let Some(rtp) = rtp else {
            tracing::debug!(pairs = inner.capacity, "RTP port pool exhausted");
            return Err(ResourceError::exhausted(
                Resource::RtpPorts,
                inner.capacity,
                inner.retry_after,
            ));
        };
        Ok(PortPair {
            pool: Arc::clone(&self.inner),
            rtp,
        })
    }

    /// The number of pairs in the pool.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Pairs free to lease now.
    pub fn available(&self) -> usize {
        self.inner.state.lock().free.len()
    }

    /// Pairs leased now.
    pub fn in_use(&self) -> usize {
        self.inner.capacity - self.available()
    }

    /// The ports the pool uses: its lowest RTP port to its highest RTCP port.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.inner.ports.clone()
    }

    /// Current usage as plain data.
    pub fn snapshot(&self) -> PortUsage {
        let state = self.inner.state.lock();
        PortUsage {
            capacity: self.inner.capacity,
            in_use: self.inner.capacity - state.free.len(),
            peak: state.peak,
            acquired_total: state.acquired,
            refused_total: state.refused,
        }
    }
}

impl fmt::Debug for PortPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortPool")
            .field("ports", &self.inner.ports)
            .field("capacity", &self.inner.capacity)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// A leased RTP/RTCP port pair; dropping it gives the pair back to its [`PortPool`] (to the
/// back of the queue). `Send + Sync + 'static`, so it can live in a media task.
#[must_use = "dropping the lease gives the ports back at once"]
pub struct PortPair {
    pool: Arc<PoolInner>,
    rtp: u16,
}

impl PortPair {
    /// The RTP port (even).
    pub fn rtp(&self) -> u16 {
        self.rtp
    }

    /// The RTCP port, `rtp() + 1`.
    pub fn rtcp(&self) -> u16 {
        // The pool only holds even ports whose successor is in range, so this cannot overflow.
        self.rtp + 1
    }
}

impl fmt::Debug for PortPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortPair")
            .field("rtp", &self.rtp)
            .field("rtcp", &self.rtcp())
            .finish()
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        self.pool.state.lock().free.push_back(self.rtp);
    }
}

/// A plain-data picture of a [`PortPool`]'s usage, from [`PortPool::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortUsage {
    /// Pairs in the pool.
    pub capacity: usize,
    /// Pairs leased now.
    pub in_use: usize,
    /// The most pairs leased at once since the pool was made.
    pub peak: usize,
    /// Leases handed out since the pool was made.
    pub acquired_total: u64,
    /// Requests refused because the pool was empty.
    pub refused_total: u64,
}

impl PortUsage {
    /// Pairs free to lease.
    pub fn available(&self) -> usize {
        self.capacity - self.in_use
    }
}

impl fmt::Display for PortUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RTP port pairs: {} in use of {}, peak {}; {} acquired, {} refused",
            self.in_use, self.capacity, self.peak, self.acquired_total, self.refused_total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::{Classify, ErrorKind};

    fn pairs(pool: &PortPool) -> Vec<PortPair> {
        std::iter::from_fn(|| pool.acquire().ok()).collect()
    }

    #[test]
    fn aligned_range_holds_every_pair() {
        let pool = PortPool::new(20000..30000).unwrap();
        assert_eq!(pool.capacity(), 5000);
        assert_eq!(pool.ports(), 20000..=29999);
        let all = pairs(&pool);
        assert_eq!(all.len(), 5000);
        assert_eq!(all.first().unwrap().rtp(), 20000);
        assert_eq!(all.last().unwrap().rtcp(), 29999);
        assert!(
            all.iter()
                .all(|p| p.rtp() % 2 == 0 && p.rtcp() == p.rtp() + 1)
        );
    }

    #[test]
    fn odd_and_unaligned_bounds_drop_the_partnerless_port() {
        // 20001 is odd: the first pair is 20002/20003. End 20008 excluded: 20006/20007 fits.
        let pool = PortPool::new(20001..20008).unwrap();
        assert_eq!(pool.ports(), 20002..=20007);
        let rtp: Vec<u16> = pairs(&pool).iter().map(PortPair::rtp).collect();
        assert_eq!(rtp, vec![20002, 20004, 20006]);
        // Inclusive end on an even port: 20008 has no partner.
        let pool = PortPool::new(20000..=20008).unwrap();
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.ports(), 20000..=20007);
        // Excluded start bound.
        let pool = PortPool::new((Bound::Excluded(20000), Bound::Included(20003))).unwrap();
        assert_eq!(pool.ports(), 20002..=20003);
    }

    #[test]
    fn edges_of_the_port_space() {
        let pool = PortPool::new(..).unwrap();
        assert_eq!(pool.ports(), 2..=65535, "port 0 is never used");
        assert_eq!(pool.capacity(), 32767);
        let top = PortPool::new(65534..=65535).unwrap();
        assert_eq!(top.acquire().unwrap().rtcp(), 65535);
        let low = PortPool::new(0..4).unwrap();
        assert_eq!(low.ports(), 2..=3);
    }

    #[test]
    fn ranges_without_a_pair_are_refused() {
        for (start, end) in [
            (20001, 20002),
            (20000, 20000),
            (30000, 20000),
            (0, 1),
            (65535, 65535),
        ] {
            let err = PortPool::new(start..=end).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ApiMisuse);
            assert_eq!(
                err,
                ResourceError::EmptyPortRange { start, end },
                "{start}..={end}"
            );
        }
        assert!(PortPool::new(20000..20001).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = PortPool::new(20010..20000);
        assert!(reversed.is_err());
        assert!(PortPool::new(..0).is_err());
    }

    #[test]
    fn exhaustion_is_typed_and_counted() {
        let pool = PortPool::builder(40000..40004)
            .retry_after(Duration::from_secs(2))
            .build()
            .unwrap();
        let held = vec![pool.acquire().unwrap(), pool.acquire().unwrap()];
        assert_eq!(pool.available(), 0);
        let err = pool.acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert_eq!(err.resource(), Some(&Resource::RtpPorts));
        assert_eq!(err.limit(), Some(2));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        drop(held);
        assert_eq!(
            pool.snapshot(),
            PortUsage {
                capacity: 2,
                in_use: 0,
                peak: 2,
                acquired_total: 2,
                refused_total: 1,
            }
        );
        assert_eq!(
            pool.snapshot().to_string(),
            "RTP port pairs: 0 in use of 2, peak 2; 2 acquired, 1 refused"
        );
    }

    #[test]
    fn released_pairs_are_reused_last() {
        let pool = PortPool::new(10000..10008).unwrap(); // 10000, 10002, 10004, 10006
        let a = pool.acquire().unwrap();
        assert_eq!(a.rtp(), 10000);
        drop(a);
        // 10000 went to the back: the three never-used pairs come first.
        let order: Vec<u16> = pairs(&pool).iter().map(PortPair::rtp).collect();
        assert_eq!(order, vec![10002, 10004, 10006, 10000]);
        // Releases are reused in release order.
        let mut all = pairs(&pool);
        assert_eq!(pool.available(), 0);
        let b = all.pop().unwrap();
        let c = all.pop().unwrap();
        let (b_port, c_port) = (b.rtp(), c.rtp());
        drop(b);
        drop(c);
        assert_eq!(pool.acquire().unwrap().rtp(), b_port);
        // That lease was a temporary, dropped again behind c.
        assert_eq!(pool.acquire().unwrap().rtp(), c_port);
        assert_eq!(pool.acquire().unwrap().rtp(), b_port);
    }
}
