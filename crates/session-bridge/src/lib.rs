//! Two-party bridges and N-party conferences, as a sans-IO engine: no sockets, no tasks, no
//! clock reads. A thin tokio driver ([`BridgeDriver`]) owns the bridged legs' sockets, feeds
//! datagrams and the time in, and sends what comes out. Bridges are primitives: who is bridged with whom, who may hear
//! whom, and what to do about a silent member is the caller's policy.
//!
//! # The model
//!
//! - A [`BridgeEngine`] holds every bridge of one manager. Members are keyed by
//!   [`session_types::SessionId`]; a session is in at most one bridge, found by a map lookup
//!   ([`BridgeEngine::bridge_of`]).
//! - A member joins with its [`Leg`]: the G.711 [`Codec`] and payload types it negotiated, and
//!   its outgoing [`StreamState`] (SSRC, next sequence number, timestamp on the sampling clock).
//!   While bridged the engine owns the leg; leaving hands it back with the stream advanced, so
//!   the far end sees one SSRC with continuous sequence numbers and timestamps through every
//!   relay ↔ mixer switch and every move between bridges.
//! - Two members are relayed: each packet is rewritten in place — payload transcoded µ-law ↔
//!   A-law when the laws differ, payload types mapped (RFC 4733 events included), SSRC,
//!   sequence number and timestamp replaced by the listener's stream's — with no allocation.
//!   Three or more members, or any mute, deaf or pair-gain setting, are mixed: jitter buffer,
//!   one mix-minus per 20 ms tick with per-pair gains, one encoded packet per member.
//! - RTCP is terminated per leg: each leg sends its own SR/RR and SDES CNAME every 5 s from
//!   its own counters; reports that arrive update that leg's figures and go no further.
//!
//! # The run loop
//!
//! After every input (`handle_rtp`, `handle_rtcp`, `handle_timeout`, or an operation), drain
//! `poll_transmit` and `poll_event`, then sleep until `poll_timeout` or the next datagram.
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use session_bridge::{
//!     BridgeEngine, Codec, EngineConfig, Leg, RtpAction, StreamState, TechnologyChoice,
//! };
//! use session_media::rtcp::NtpClock;
//! use session_media::rtp::RtpSender;
//! use session_types::SessionId;
//!
//! let start = Instant::now(); // a driver passes its clock in; the engine never reads one
//! let mut engine = BridgeEngine::new(EngineConfig::new(NtpClock::new(SystemTime::now(), start)));
//! let (alice, bob) = (SessionId::new(), SessionId::new());
//! let bridge = engine.create_bridge(TechnologyChoice::Auto);
//! engine.add_member(start, bridge, alice, Leg::new(Codec::pcmu(), StreamState::new(0xA1, 100, 8000)))?;
//! engine.add_member(start, bridge, bob, Leg::new(Codec::pcma(), StreamState::new(0xB0, 7, 0)))?;
//!
//! // A packet from Alice's peer, as it arrived on Alice's socket.
//! let mut alice_peer = RtpSender::new(0x1234, 1, 1);
//! let mut buf = [0u8; 1500];
//! let packet = alice_peer.audio(0, &[0xFF; 160], 160)?;
//! buf[..packet.len()].copy_from_slice(packet);
//! match engine.handle_rtp(start, alice, &mut buf, packet.len()) {
//!     // Rewritten in place: A-law, Bob's SSRC, Bob's next sequence number.
//!     RtpAction::Forward { from, len } => {
//!         assert_eq!(from, bob);
//!         let (header, _) = session_media::rtp::parse(&buf[..len])?;
//!         assert_eq!((header.ssrc, header.sequence, header.payload_type), (0xB0, 7, 8));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! while let Some(t) = engine.poll_transmit() { /* send t.data from t.from's socket */ }
//! while let Some(event) = engine.poll_event() { /* MemberJoined, TechnologyChanged … */ }
//! let _wake_at = engine.poll_timeout(); // the next mixer tick or RTCP report
//!
//! // Bob leaves: his stream continues where the bridge left it.
//! let leg = engine.remove_member(start + Duration::from_millis(20), bob)?;
//! assert_eq!((leg.stream.ssrc, leg.stream.next_sequence), (0xB0, 8));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The tokio driver
//!
//! [`BridgeDriver`] runs one engine on real sockets: a call's leg moves in as
//! `session_media::endpoint::EndpointParts` (from `RtpEndpoint::into_leg`) and comes back
//! out with its stream advanced, for `RtpEndpoint::from_parts` to continue it. One reader task
//! per leg, one ticker task, the engine behind one lock never held across an `.await`, sends
//! with the non-blocking `try_send_to`, events on a bounded channel (see the `driver` module's
//! docs for the whole shape).
//!
//! ```no_run
//! use session_bridge::{BridgeDriver, DriverConfig, TechnologyChoice};
//! use session_media::endpoint::RtpEndpoint;
//! use session_types::SessionId;
//!
//! # async fn demo(alice_ep: RtpEndpoint, bob_ep: RtpEndpoint) -> Result<(), Box<dyn std::error::Error>> {
//! let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
//! let (alice, bob) = (SessionId::new(), SessionId::new());
//! let bridge = driver.create_bridge(TechnologyChoice::Auto)?;
//! // Each call's media task stops reading its endpoint and hands the leg over.
//! driver.add_member(bridge, alice, alice_ep.into_leg()).map_err(|(e, _parts)| e)?;
//! driver.add_member(bridge, bob, bob_ep.into_leg()).map_err(|(e, _parts)| e)?;
//! while let Some(event) = events.recv().await {
//!     // MemberJoined, TechnologyChanged, DtmfReceived, MediaStalled …
//! #   let _ = event; break;
//! }
//! // Bob leaves: his endpoint continues the same RTP stream.
//! let bob_ep = RtpEndpoint::from_parts(driver.remove_member(bob).await?);
//! # let _ = bob_ep;
//! // Everything that is still bridged comes back on shutdown.
//! for (_session, parts) in driver.shutdown().await {
//!     let _endpoint = RtpEndpoint::from_parts(parts);
//! }
//! # Ok(()) }
//! ```
//!
//! # Map
//!
//! | module | what |
//! | --- | --- |
//! | `engine` | [`BridgeEngine`], bridges, technology decisions, mixer ticks |
//! | `leg` | [`Leg`], [`Codec`], [`StreamState`]: the stream continuity rules |
//! | `relay` | the in-place rewrite and µ-law ↔ A-law tables |
//! | `mix` | [`Gain`] and the one-sum-per-tick mix with pair-gain corrections |
//! | `member` | what the engine keeps per member (jitter buffer, DTMF, counters) |
//! | `rtcp` | per-leg reports and report intake |
//! | `event`, `stats` | [`RtpAction`], [`Transmit`], [`BridgeEvent`]; the snapshots |
//! | `timer`, `outbox` | one timer heap for every bridge and member; the output queue |
//! | `driver` | [`BridgeDriver`]: the engine on tokio sockets, reader and ticker tasks |
//!
//! Errors are one enum, [`Error`], classified through [`session_types::Classify`]; nothing
//! panics on input from the network or the caller.

mod driver;
mod engine;
mod error;
mod event;
mod leg;
mod member;
mod mix;
mod outbox;
mod relay;
mod rtcp;
mod stats;
mod timer;

pub use driver::{BridgeDriver, DriverConfig, DriverProbe, DriverStats};
pub use engine::{BridgeEngine, BridgeId, EngineConfig, Technology, TechnologyChoice};
pub use error::{Error, Refused, Result};
pub use event::{BridgeEvent, DropReason, RtpAction, Transmit, TransmitKind};
pub use leg::{Codec, Leg, StreamState};
pub use member::JoinSettings;
pub use mix::Gain;
pub use stats::{BridgeStats, MemberStats, Resources};
