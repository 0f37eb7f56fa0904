//! Internal test utilities of the session-core workspace (unpublished; the user-facing kit is
//! `session-testkit`).
//!
//! Four parts: the simulated network below; [`sip::ScriptedPeer`], which writes a SIP
//! peer's messages from short templates and checks what the system under test sent;
//! [`proxy::RecordRoutingProxy`], a record-routing proxy to put between them; and
//! [`peers::require_program`], the one policy for interop tests whose real peer is missing.
//!
//! The centrepiece is a deterministic simulation of a lossy network: [`SimNetwork`] carries
//! datagrams between nodes with latency, jitter, reordering, duplication and burst loss, all drawn
//! from one seeded random generator, and [`Simulation`] drives any number of sans-IO
//! [`Endpoint`]s over it in virtual time. A test of a retransmission timer that takes 32 s of
//! protocol time runs in microseconds, and the same seed always gives the same run.
//!
//! ```
//! use session_simnet::{Endpoint, Impairments, NodeId, Simulation, Transmit};
//! use std::time::{Duration, Instant};
//!
//! /// Sends "ping" until it hears "pong", retrying every 500 ms.
//! #[derive(Default)]
//! struct Pinger { next_try: Option<Instant>, done: bool, out: Vec<Transmit<&'static str>> }
//! impl Endpoint<&'static str> for Pinger {
//!     fn handle_datagram(&mut self, _now: Instant, _from: NodeId, _payload: &'static str) { self.done = true; }
//!     fn handle_timeout(&mut self, now: Instant) {
//!         if self.done { self.next_try = None; return; }
//!         if self.next_try.is_none_or(|t| t <= now) {
//!             self.out.push(Transmit { to: NodeId(1), payload: "ping" });
//!             self.next_try = Some(now + Duration::from_millis(500));
//!         }
//!     }
//!     fn poll_transmit(&mut self) -> Option<Transmit<&'static str>> { self.out.pop() }
//!     fn poll_timeout(&mut self) -> Option<Instant> { if self.done { None } else { self.next_try } }
//! }
//! #[derive(Default)]
//! struct Ponger { out: Vec<Transmit<&'static str>> }
//! impl Endpoint<&'static str> for Ponger {
//!     fn handle_datagram(&mut self, _now: Instant, from: NodeId, _payload: &'static str) {
//!         self.out.push(Transmit { to: from, payload: "pong" });
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//!     fn poll_transmit(&mut self) -> Option<Transmit<&'static str>> { self.out.pop() }
//!     fn poll_timeout(&mut self) -> Option<Instant> { None }
//! }
//!
//! let mut sim = Simulation::new(7, Impairments::lossy(0.3));
//! let pinger = sim.add(Pinger::default());
//! sim.add(Ponger::default());
//! sim.wake(pinger);
//! sim.run_for(Duration::from_secs(60));
//! assert!(sim.endpoint::<Pinger>(pinger).is_some_and(|p| p.done));
//! ```

mod network;
pub mod peers;
pub mod proxy;
mod simulation;
pub mod sip;

pub use network::{Delivery, Impairments, NetworkStats, NodeId, SimNetwork};
pub use simulation::{Endpoint, Simulation, Transmit};
