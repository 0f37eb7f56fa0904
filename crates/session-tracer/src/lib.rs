//! Per-session timelines and health analysis for session-core: what happened to each call —
//! SIP messages in and out, state changes, media start and stop, RTP progress, DTMF, hold — as
//! readable text, and which live calls look wrong.
//!
//! The umbrella crate `session-core` feeds a [`SessionTracer`] from each call's manager task
//! and re-exports it; it works the same on its own.
//!
//! # Recording and reading
//!
//! ```
//! use session_sip::Message;
//! use session_tracer::{SessionTracer, TraceEntry};
//! use session_types::{CallState, SessionId};
//! use std::time::{Duration, Instant};
//!
//! let tracer = SessionTracer::default();
//! let call = SessionId::new();
//! let t0 = Instant::now();
//!
//! let invite = Message::parse(&b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//! Max-Forwards: 70\r\nTo: <sip:bob@biloxi.example.com>\r\n\
//! From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"[..])?;
//! tracer.record(call, t0, TraceEntry::sip_out(&invite));
//! tracer.record(
//!     call,
//!     t0 + Duration::from_millis(20),
//!     TraceEntry::State { from: CallState::Initiating, to: CallState::Ringing },
//! );
//!
//! let text = tracer.timeline(call).expect("recorded").render();
//! assert!(text.contains("+0.000s    → INVITE sip:bob@biloxi.example.com (CSeq 1)"));
//! assert!(text.contains("+0.020s    state initiating → ringing"));
//!
//! // Nobody answered: a minute later the health check says so.
//! let issues = tracer.health(t0 + Duration::from_secs(60));
//! assert_eq!(
//!     issues[0].kind.to_string(),
//!     "no final response to the INVITE we sent (CSeq 1) after 60.000s"
//! );
//! # Ok::<(), session_sip::Error>(())
//! ```
//!
//! # Design
//!
//! - **Time is an argument.** [`SessionTracer::record`] takes the `Instant` of the entry and
//!   [`SessionTracer::health`] the `Instant` to judge at; the tracer never reads the clock, so
//!   tests drive it with `Instant` arithmetic and get the same answer every run.
//! - **Cheap on the hot path.** Sessions are spread over 32 mutex-guarded maps by id;
//!   recording an entry for a known session is one lock, one hash lookup, a few field updates
//!   for the health rules, and a push. The lock that orders sessions for eviction is taken only
//!   when a session starts or finishes. `benches/record.rs` measures it
//!   (`BENCHMARKS.md`: about 50–80 ns an entry, 2 µs for a whole 12-entry call).
//! - **Bounded memory.** At most [`TracerConfig::max_sessions`] sessions, each with at most
//!   [`TracerConfig::max_entries_per_session`] entries (the first half and the newest half are
//!   kept; a [`Gap`] counts the rest), and text taken from SIP messages is capped at
//!   [`MAX_SUMMARY_TEXT`] bytes. Finished sessions are evicted first, oldest first, and expire
//!   after [`TracerConfig::keep_finished`]; [`TracerStats`] counts everything dropped.
//! - **Health from state, not from history.** Each session keeps a small watch updated as
//!   entries arrive (pending requests, the 2xx awaiting its ACK, RTP progress, hold start),
//!   so the rules still hold when entries were dropped, and [`SessionTracer::health`] costs one
//!   pass over the live sessions. See [`HealthKind`] for the rules.
//! - **Legs belong together.** [`SessionTracer::correlate`] gives the legs of a bridged or
//!   transferred call one [`CorrelationId`]; [`SessionTracer::related`] and
//!   [`SessionTracer::render_related`] list them together.

mod entry;
mod error;
mod events;
mod health;
mod timeline;
mod tracer;

pub use entry::{DtmfMethod, Flow, MAX_SUMMARY_TEXT, SipSummary, StartLine, TraceEntry};
pub use error::{Error, Result};
pub use health::{HealthIssue, HealthKind, HealthThresholds};
pub use timeline::{Gap, TimedEntry, Timeline};
pub use tracer::{CorrelationId, SessionTracer, TracerConfig, TracerStats};
