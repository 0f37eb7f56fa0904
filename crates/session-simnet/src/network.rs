//! The simulated network: datagrams in, impaired datagrams out at their delivery time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Addresses one simulated node (an index given out by [`crate::Simulation::add`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NodeId(pub usize);

/// What the network does to datagrams. Probabilities are in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Impairments {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra latency drawn uniformly from `0..=jitter` per datagram; large jitter reorders.
    pub jitter: Duration,
    /// Probability that a datagram is lost while the link is in its good state.
    pub loss: f64,
    /// Probability of entering the bad (bursty) state after each datagram (Gilbert–Elliott).
    pub burst_start: f64,
    /// Probability of leaving the bad state after each datagram.
    pub burst_end: f64,
    /// Probability that a datagram is lost in the bad state.
    pub burst_loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by an extra `reorder_delay`, arriving after
    /// datagrams sent later.
    pub reorder: f64,
    /// The hold-back for reordered datagrams.
    pub reorder_delay: Duration,
}

impl Impairments {
    /// A perfect link with 1 ms latency.
    pub fn perfect() -> Self {
        Self {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_start: 0.0,
            burst_end: 1.0,
            burst_loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
        }
    }

    /// Independent loss with probability `loss`, 20 ms latency and 10 ms jitter.
    pub fn lossy(loss: f64) -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            loss,
            ..Self::perfect()
        }
    }

    /// Everything at once: `loss` plus bursts, duplication and reordering.
    pub fn hostile(loss: f64) -> Self {
        Self {
            burst_start: 0.02,
            burst_end: 0.3,
            burst_loss: 0.8,
            duplicate: 0.05,
            reorder: 0.1,
            ..Self::lossy(loss)
        }
    }
}

/// A datagram arriving at a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<P> {
    /// When it arrives.
    pub at: Instant,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The datagram.
    pub payload: P,
}

/// What the network did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Datagrams lost.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back to reorder them.
    pub reordered: u64,
    /// Datagrams delivered (copies included).
    pub delivered: u64,
}

/// A seeded, deterministic lossy network. Time is given by the caller.
pub struct SimNetwork<P> {
    impairments: Impairments,
    rng: fastrand::Rng,
    in_burst: bool,
    /// In flight, ordered by delivery time then by sending order (so equal times keep order).
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Vec<Option<Delivery<P>>>,
    free_slots: Vec<usize>,
    sequence: u64,
    stats: NetworkStats,
}

impl<P: Clone> SimNetwork<P> {
    /// A network whose every random choice comes from `seed`.
    pub fn new(seed: u64, impairments: Impairments) -> Self {
        Self {
            impairments,
            rng: fastrand::Rng::with_seed(seed),
            in_burst: false,
            in_flight: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            sequence: 0,
            stats: NetworkStats::default(),
        }
    }

    /// Changes the impairments from now on (e.g. heal the link after a while).
    pub fn set_impairments(&mut self, impairments: Impairments) {
        self.impairments = impairments;
    }

    /// Sends a datagram at `now`; it may be lost, delayed, reordered or duplicated.
    pub fn send(&mut self, now: Instant, from: NodeId, to: NodeId, payload: P) {
        self.stats.sent += 1;
        let imp = &self.impairments;
        // Gilbert–Elliott: the state changes between datagrams.
        self.in_burst = if self.in_burst {
            self.rng.f64() >= imp.burst_end
        } else {
            self.rng.f64() < imp.burst_start
        };
        let loss = if self.in_burst {
            imp.burst_loss
        } else {
            imp.loss
        };
        if self.rng.f64() < loss {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.f64() < imp.duplicate { 2 } else { 1 };
        self.stats.duplicated += copies - 1;
        for _ in 0..copies {
            let mut delay = self.impairments.latency + self.random_jitter();
            if self.rng.f64() < self.impairments.reorder {
                delay += self.impairments.reorder_delay;
                self.stats.reordered += 1;
            }
            self.schedule(Delivery {
                at: now + delay,
                from,
                to,
                payload: payload.clone(),
            });
        }
    }

    fn random_jitter(&mut self) -> Duration {
        let max = u64::try_from(self.impairments.jitter.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.u64(0..=max))
    }

    fn schedule(&mut self, delivery: Delivery<P>) {
        let at = delivery.at;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(delivery);
                slot
            }
            None => {
                self.slots.push(Some(delivery));
                self.slots.len() - 1
            }
        };
        self.sequence += 1;
        self.in_flight.push(Reverse((at, self.sequence, slot)));
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_delivery_at(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next datagram due at or before `now`.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Delivery<P>> {
        let Reverse((at, _, slot)) = *self.in_flight.peek()?;
        if at > now {
            return None;
        }
        self.in_flight.pop();
        let delivery = self.slots.get_mut(slot).and_then(Option::take)?;
        self.free_slots.push(slot);
        self.stats.delivered += 1;
        Some(delivery)
    }

    /// Datagrams still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(net: &mut SimNetwork<u32>, until: Instant) -> Vec<Delivery<u32>> {
        std::iter::from_fn(|| net.poll_delivery(until)).collect()
    }

    #[test]
    fn perfect_link_delivers_everything_in_order_after_the_latency() {
        let t0 = Instant::now();
        let mut net = SimNetwork::new(1, Impairments::perfect());
        for i in 0..100 {
            net.send(t0, NodeId(0), NodeId(1), i);
        }
        assert!(
            net.poll_delivery(t0).is_none(),
            "nothing arrives before the latency"
        );
        let got = drain(&mut net, t0 + Duration::from_millis(1));
        assert_eq!(
            got.iter().map(|d| d.payload).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        assert!(
            got.iter()
                .all(|d| d.at == t0 + Duration::from_millis(1) && d.to == NodeId(1))
        );
        assert_eq!(net.in_flight(), 0);
    }

    #[test]
    fn loss_rate_is_close_to_the_setting_and_the_run_is_repeatable() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut net = SimNetwork::new(seed, Impairments::lossy(0.3));
            for i in 0..10_000 {
                net.send(t0, NodeId(0), NodeId(1), i);
            }
            let got: Vec<u32> = drain(&mut net, t0 + Duration::from_secs(1))
                .iter()
                .map(|d| d.payload)
                .collect();
            (net.stats(), got)
        };
        let (stats, got) = run(42);
        assert!((2_800..3_200).contains(&stats.lost), "lost {}", stats.lost);
        assert_eq!(stats.delivered + stats.lost, 10_000);
        assert_eq!(run(42).1, got, "same seed, same run");
        assert_ne!(run(43).1, got, "another seed, another run");
    }

    #[test]
    fn hostile_link_duplicates_and_reorders() {
        let t0 = Instant::now();
        let mut net = SimNetwork::new(9, Impairments::hostile(0.05));
        for i in 0..5_000 {
            net.send(
                t0 + Duration::from_millis(u64::from(i)),
                NodeId(0),
                NodeId(1),
                i,
            );
        }
        let got: Vec<u32> = drain(&mut net, t0 + Duration::from_secs(60))
            .iter()
            .map(|d| d.payload)
            .collect();
        let stats = net.stats();
        assert!(stats.duplicated > 100 && stats.reordered > 100, "{stats:?}");
        assert!(
            got.windows(2).any(|w| w[0] > w[1]),
            "some datagrams overtake others"
        );
        assert_eq!(got.len() as u64, stats.sent - stats.lost + stats.duplicated);
        // Bursts make the loss larger than the base 5%.
        assert!(stats.lost > 250, "{stats:?}");
    }
}
