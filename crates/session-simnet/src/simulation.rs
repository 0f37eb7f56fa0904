//! Drives sans-IO endpoints over a [`SimNetwork`] in virtual time, in the style of a run loop:
//! deliver what is due, fire what has timed out, collect what the endpoints want to send, and
//! jump straight to the next instant anything happens.

use crate::network::{Impairments, NetworkStats, NodeId, SimNetwork};
use std::any::Any;
use std::time::{Duration, Instant};

/// A datagram an endpoint wants sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit<P> {
    /// The receiving node.
    pub to: NodeId,
    /// The datagram.
    pub payload: P,
}

/// A sans-IO protocol endpoint: it is told what arrived and what time it is, and asked what to
/// send and when it next wants to be woken. It never reads a clock.
pub trait Endpoint<P>: Any {
    /// A datagram from `from` arrived at `now`.
    fn handle_datagram(&mut self, now: Instant, from: NodeId, payload: P);
    /// Time has reached `now` (at or past the deadline given by [`Endpoint::poll_timeout`], or
    /// the endpoint was woken with [`Simulation::wake`]).
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit<P>>;
    /// When the endpoint next wants [`Endpoint::handle_timeout`] called (`&mut` so an
    /// endpoint may prune stale timers while answering).
    fn poll_timeout(&mut self) -> Option<Instant>;
}

trait AnyEndpoint<P>: Endpoint<P> {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<P, E: Endpoint<P>> AnyEndpoint<P> for E {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The longest run of steps that do not advance time before the simulation declares a stall
/// (an endpoint asking to be woken in the past again and again).
const MAX_STEPS_WITHOUT_PROGRESS: u32 = 100_000;

/// Endpoints on a simulated network, in virtual time.
pub struct Simulation<P> {
    start: Instant,
    now: Instant,
    network: SimNetwork<P>,
    endpoints: Vec<Box<dyn AnyEndpoint<P>>>,
    woken: Vec<bool>,
    stalled: bool,
}

impl<P: Clone + 'static> Simulation<P> {
    /// An empty simulation; every random choice comes from `seed`.
    pub fn new(seed: u64, impairments: Impairments) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            network: SimNetwork::new(seed, impairments),
            endpoints: Vec::new(),
            woken: Vec::new(),
            stalled: false,
        }
    }

    /// Adds an endpoint and returns its address.
    pub fn add<E: Endpoint<P>>(&mut self, endpoint: E) -> NodeId {
        self.endpoints.push(Box::new(endpoint));
        self.woken.push(false);
        NodeId(self.endpoints.len() - 1)
    }

    /// The endpoint at `node`, if it is a `E`.
    pub fn endpoint<E: Endpoint<P>>(&self, node: NodeId) -> Option<&E> {
        self.endpoints.get(node.0)?.as_any().downcast_ref()
    }

    /// The endpoint at `node`, mutably, if it is a `E` (e.g. to start a request). Call
    /// [`Simulation::wake`] afterwards if the change produced something to send.
    pub fn endpoint_mut<E: Endpoint<P>>(&mut self, node: NodeId) -> Option<&mut E> {
        self.endpoints.get_mut(node.0)?.as_any_mut().downcast_mut()
    }

    /// Calls `handle_timeout(now)` on `node` at the next step, and sends what it queued.
    pub fn wake(&mut self, node: NodeId) {
        if let Some(flag) = self.woken.get_mut(node.0) {
            *flag = true;
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the simulation was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The network, e.g. to change its impairments mid-run.
    pub fn network_mut(&mut self) -> &mut SimNetwork<P> {
        &mut self.network
    }

    /// What the network did so far.
    pub fn network_stats(&self) -> NetworkStats {
        self.network.stats()
    }

    /// Whether a run stopped because an endpoint kept asking for a wake-up in the past.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Whether nothing more can happen: no datagram in flight, no timer, no wake-up pending.
    pub fn is_idle(&mut self) -> bool {
        self.next_event().is_none()
    }

    fn next_event(&mut self) -> Option<Instant> {
        if self.woken.iter().any(|&w| w) {
            return Some(self.now);
        }
        let timers = self.endpoints.iter_mut().filter_map(|e| e.poll_timeout());
        timers.chain(self.network.next_delivery_at()).min()
    }

    fn flush(&mut self, node: usize) {
        let now = self.now;
        let Some(endpoint) = self.endpoints.get_mut(node) else {
            return;
        };
        while let Some(Transmit { to, payload }) = endpoint.poll_transmit() {
            self.network.send(now, NodeId(node), to, payload);
        }
    }

    /// Runs until virtual time reaches `deadline` or nothing more can happen, whichever is first.
    pub fn run_until(&mut self, deadline: Instant) {
        let mut steps_at_this_instant = 0;
        loop {
            for node in 0..self.endpoints.len() {
                self.flush(node);
            }
            let Some(next) = self.next_event() else { break };
            if next > deadline {
                self.now = deadline;
                break;
            }
            if next > self.now {
                self.now = next;
                steps_at_this_instant = 0;
            } else {
                steps_at_this_instant += 1;
                if steps_at_this_instant > MAX_STEPS_WITHOUT_PROGRESS {
                    self.stalled = true;
                    break;
                }
            }
            let now = self.now;
            while let Some(delivery) = self.network.poll_delivery(now) {
                if let Some(endpoint) = self.endpoints.get_mut(delivery.to.0) {
                    endpoint.handle_datagram(now, delivery.from, delivery.payload);
                }
                self.flush(delivery.to.0);
            }
            for node in 0..self.endpoints.len() {
                let due = self.endpoints[node]
                    .poll_timeout()
                    .is_some_and(|t| t <= now);
                if due || std::mem::take(&mut self.woken[node]) {
                    self.endpoints[node].handle_timeout(now);
                    self.flush(node);
                }
            }
        }
    }

    /// Runs for `duration` of virtual time (or until idle).
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `count` numbered datagrams to node 1 on a fixed period; records echoes.
    struct Sender {
        next_at: Option<Instant>,
        remaining: u32,
        sent: u32,
        echoed: Vec<u32>,
        out: Vec<Transmit<u32>>,
    }

    impl Endpoint<u32> for Sender {
        fn handle_datagram(&mut self, _now: Instant, _from: NodeId, payload: u32) {
            self.echoed.push(payload);
        }
        fn handle_timeout(&mut self, now: Instant) {
            if self.remaining == 0 {
                self.next_at = None;
                return;
            }
            self.remaining -= 1;
            self.out.push(Transmit {
                to: NodeId(1),
                payload: self.sent,
            });
            self.sent += 1;
            self.next_at = Some(now + Duration::from_millis(20));
        }
        fn poll_transmit(&mut self) -> Option<Transmit<u32>> {
            self.out.pop()
        }
        fn poll_timeout(&mut self) -> Option<Instant> {
            self.next_at
        }
    }

    struct Echo {
        out: Vec<Transmit<u32>>,
    }

    impl Endpoint<u32> for Echo {
        fn handle_datagram(&mut self, _now: Instant, from: NodeId, payload: u32) {
            self.out.push(Transmit { to: from, payload });
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit<u32>> {
            self.out.pop()
        }
        fn poll_timeout(&mut self) -> Option<Instant> {
            None
        }
    }

    fn echo_run(seed: u64, impairments: Impairments) -> (Vec<u32>, Duration, NetworkStats) {
        let mut sim = Simulation::new(seed, impairments);
        let sender = sim.add(Sender {
            next_at: None,
            remaining: 500,
            sent: 0,
            echoed: Vec::new(),
            out: Vec::new(),
        });
        sim.add(Echo { out: Vec::new() });
        sim.wake(sender);
        sim.run_for(Duration::from_secs(3600));
        assert!(sim.is_idle() && !sim.stalled());
        let echoed = sim
            .endpoint::<Sender>(sender)
            .map(|s| s.echoed.clone())
            .unwrap_or_default();
        (echoed, sim.elapsed(), sim.network_stats())
    }

    #[test]
    fn perfect_network_echoes_everything_in_virtual_time() {
        let (echoed, elapsed, _) = echo_run(1, Impairments::perfect());
        assert_eq!(echoed, (0..500).collect::<Vec<_>>());
        // 500 periods of 20 ms (the last timer finds nothing left to send): virtual, not real, time.
        assert_eq!(elapsed, Duration::from_millis(500 * 20));
    }

    #[test]
    fn lossy_network_loses_about_half_the_round_trips_deterministically() {
        let (echoed, _, stats) = echo_run(5, Impairments::lossy(0.3));
        // Each round trip survives with 0.7² ≈ 0.49.
        assert!(
            (200..300).contains(&echoed.len()),
            "{} echoed",
            echoed.len()
        );
        // Every datagram that reached the echo was sent back once: sent = 500 + arrivals at echo.
        let arrived_at_echo = stats.delivered - echoed.len() as u64;
        assert_eq!(stats.sent, 500 + arrived_at_echo);
        assert_eq!(echo_run(5, Impairments::lossy(0.3)).0, echoed);
    }

    #[test]
    fn a_run_stops_at_its_deadline() {
        let mut sim = Simulation::new(1, Impairments::perfect());
        let sender = sim.add(Sender {
            next_at: None,
            remaining: 1_000,
            sent: 0,
            echoed: Vec::new(),
            out: Vec::new(),
        });
        sim.add(Echo { out: Vec::new() });
        sim.wake(sender);
        sim.run_for(Duration::from_millis(1_000));
        assert_eq!(sim.elapsed(), Duration::from_millis(1_000));
        let sent = sim.endpoint::<Sender>(sender).map(|s| s.sent);
        assert_eq!(
            sent,
            Some(51),
            "one at 0 ms, then every 20 ms up to 1000 ms"
        );
        assert!(!sim.is_idle());
    }
}
