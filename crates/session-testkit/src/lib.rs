//! # session-testkit
//!
//! Test a call engine built on session-core the way it runs: real SIP and RTP on loopback,
//! scripted peers on the other side, and virtual time, so that a test of a 60-second timer
//! takes milliseconds.
//!
//! - [`TestPeer`]: a SIP user agent on 127.0.0.1 — a `SessionManager` with its own media
//!   ports and a scripted [`Answer`] policy (answer, reject with a status, ring then answer,
//!   let the test decide). It places calls and takes them ([`TestPeer::call`],
//!   [`TestPeer::next_call`]); its [`TestCall`]s answer, reject, send DTMF (RFC 4733 or
//!   INFO), hold and resume, transfer (blind and attended), hang up, play tones and listen for
//!   them ([`TestCall::listen`] gives an [`Ear`]; Goertzel tone detection in [`Audio`]). It
//!   records what it receives — calls with their INVITE, digits, transfer requests, holds,
//!   MESSAGE/INFO, established calls and ends with their reasons — as [`PeerEvent`]s.
//! - [`EventLog`]: a manager's bus events in order, with [`EventLog::expect_in_order`] and
//!   friends; the expectations come from [`event`] (bus events) and [`seen`] (a peer's
//!   events). A failed expectation reports what was expected, what met it, and every event
//!   that came.
//! - [`time`]: virtual time. [`time::run_paused`] (or `#[tokio::test(start_paused = true)]`)
//!   runs everything on a paused clock that jumps to the next timer whenever all tasks wait;
//!   [`time::Stopwatch`] measures virtual durations. The module docs say what works in virtual
//!   time and what does not (peers outside the process).
//! - [`Harness`]: the managers of one test, each with a slice of one media port range, and
//!   the final check that every one released every call, slot and port.
//!
//! Every wait is bounded ([`DEFAULT_TIMEOUT`], 10 s — of virtual time in a paused runtime, so
//! a test that hangs fails at once); none sleeps to wait for something.
//!
//! ## A complete test
//!
//! The engine under test: calls to `support` are answered, hear a 425 Hz greeting, and are
//! ended after a minute; calls to anyone else are refused with 404. The test checks all of
//! it — the refusal, the greeting, the order of the engine's events, the minute — in virtual
//! time, and that both managers hold nothing at the end.
//!
//! ```
//! use session_core::{CallDecision, CallHandler, CallSession, CallState, IncomingCall};
//! use session_core::{StatusCode, TerminationReason};
//! use session_testkit::{event, seen, time, EventLog, Harness};
//! use std::time::Duration;
//!
//! /// The engine's policy.
//! struct Support;
//! impl CallHandler for Support {
//!     fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
//!         match call.request_uri().user() {
//!             Some("support") => CallDecision::accept(),
//!             _ => CallDecision::Reject(StatusCode::NOT_FOUND),
//!         }
//!     }
//!     fn on_call_established(&self, call: &CallSession) {
//!         let call = call.clone();
//!         tokio::spawn(async move {
//!             let greeting = session_core::crates::media::audio::ToneSource::new(425.0, 4000);
//!             let _ = call.attach_source(Box::new(greeting)).await;
//!             tokio::time::sleep(Duration::from_secs(60)).await;
//!             let _ = call.hangup().await;
//!         });
//!     }
//! }
//!
//! time::run_paused(async {
//!     let harness = Harness::new(37_000..=37_199);
//!     let engine = harness.start("engine", harness.manager()?.handler(Support)).await?;
//!     let mut log = EventLog::all(&engine);
//!     let alice = harness.peer("alice").start().await?;
//!
//!     // Anyone but support: 404, exactly.
//!     let wrong = alice.call(&format!("sip:sales@{}", engine.local_addr())).await?;
//!     assert_eq!(wrong.rejected().await?, StatusCode::NOT_FOUND);
//!
//!     // Support answers, greets, and hangs up after a minute (of virtual time).
//!     let watch = time::Stopwatch::start();
//!     let call = alice.call(&format!("sip:support@{}", engine.local_addr())).await?;
//!     call.answered().await?;
//!     let mut ear = call.listen().await?;
//!     assert!(ear.hears(425.0).await?, "the greeting plays");
//!     assert!(!ear.hears(1000.0).await?);
//!     // A wait is bounded by 10 s unless told otherwise: this one needs more.
//!     let ended = call.with_timeout(Duration::from_secs(90)).ended().await?;
//!     assert_eq!(ended, CallState::Terminated);
//!     assert!(watch.elapsed() >= Duration::from_secs(60));
//!
//!     // The engine's side, in order; then alice's.
//!     log.expect_in_order([
//!         event::created_for("support"),
//!         event::state(CallState::Active),
//!         event::media_started(),
//!         event::terminated_with(TerminationReason::LocalHangup),
//!     ])
//!     .await?;
//!     alice.expect(seen::ended_with(TerminationReason::RemoteHangup)).await?;
//!
//!     harness.finish().await // everything released, then shut down
//! })
//! .unwrap() // the runtime started
//! .unwrap(); // the test passed (a failure prints its report)
//! ```
//!
//! In a test file, the same body goes in a `#[tokio::test(start_paused = true)]` function
//! (tokio's `test-util` feature among your dev-dependencies).
//!
//! ## Ports
//!
//! Every manager with RTP takes its ports from a range of its own; tests of one binary run
//! side by side, so give each test its own range (a [`Harness`] slices one range for all the
//! managers of a test). SIP itself binds a port the system picks.

pub mod audio;
mod error;
pub mod event;
mod events;
mod expect;
mod harness;
mod peer;
mod recording;
pub mod seen;
pub mod time;

pub use audio::{Audio, Ear};
pub use error::{Error, Result};
pub use events::{DEFAULT_TIMEOUT, EVENT_LOG_CAPACITY, EventLog, describe_event};
pub use expect::Expect;
pub use harness::{Harness, PORTS_PER_MANAGER};
pub use peer::{Answer, TONE_AMPLITUDE, TestCall, TestPeer, TestPeerBuilder};
pub use seen::PeerEvent;
