//! # session-core
//!
//! Real SIP calls — ring, answer, audio, hold, transfer, DTMF, session timers — as one handle
//! per call, for Rust call engines, softphones and PBX builders.
//!
//! ```no_run
//! use session_core::{CallDecision, CallHandler, IncomingCall, SessionManager};
//!
//! struct Busy;
//! impl CallHandler for Busy {
//!     fn on_incoming_call(&self, _call: &IncomingCall) -> CallDecision {
//!         CallDecision::Reject(session_core::StatusCode::BUSY_HERE)
//!     }
//! }
//!
//! # async fn demo() -> session_core::Result<()> {
//! let server = SessionManager::builder().handler(Busy).start().await?;
//! let client = SessionManager::builder().start().await?;
//! let call = client.call(&format!("sip:bob@{}", server.local_addr())).await?;
//! let refused = call.answered().await.unwrap_err();
//! assert_eq!(refused.status(), Some(session_core::StatusCode::BUSY_HERE));
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## The pieces
//! - [`SessionManager`] (built by [`SessionManagerBuilder`], every dependency injectable):
//!   binds SIP over UDP and TCP, makes calls, owns every session's resources, and ends them
//!   all on [`SessionManager::shutdown`].
//! - [`CallHandler`]: the call engine's hook — accept, reject (the status goes on the wire
//!   exactly), defer with 180 Ringing, redirect; told when calls are established and end,
//!   of digits, transfer requests and holds.
//! - [`CallSession`]: one call. `answered`, `cancel`, `hangup`, `hold`/`resume` (re-INVITE),
//!   `reinvite`/`update`, `send_dtmf` (RFC 4733 or INFO), `send_info`, `send_message`,
//!   `transfer` (REFER + NOTIFY, RFC 3515), audio sources and sinks, `stats`. Failures are
//!   [`SessionError`]s carrying the SIP status.
//! - Every state change is checked by `session_types::CallState` and published on the
//!   `session_events::EventBus` with the session id and Call-ID, in order per session.
//!
//! Below it, and usable alone: `session-dialog` (transactions, dialogs, transport),
//! `session-sip` (messages), `session-media` (SDP, RTP, G.711, DTMF), `session-resources`
//! (limits, ports), `session-events` (the bus), `session-types` (ids, states).
//!
//! Business policy — queues, routing, billing — is the call engine's; the examples in
//! `examples2/` show how to compose it on these primitives.

pub mod b2bua;
mod body;
mod call;
mod config;
mod core;
mod dependencies;
mod error;
mod groups;
mod handler;
mod manager;
mod media;
mod metrics;
mod session_timer;

pub use call::{CallSession, CallStats};
pub use config::{
    DscpPolicy, Identity, IdleAudio, MediaMode, SessionTimerConfig, StuckLimits, Transports,
};
pub use dependencies::{Cascade, DependencyCycle};
pub use error::{Result, SessionError};
pub use handler::{
    AcceptAll, AcceptOptions, CallDecision, CallHandler, DtmfMethod, IncomingCall, IncomingCalls,
    IncomingTransfer, IncomingTransfers, QueueingHandler, TransferDecision, TransferRequest,
};
pub use manager::{CallOptions, SessionManager, SessionManagerBuilder};
pub use media::{BoxedSink, BoxedSource};
/// SIP timers (T1, T2, T4), as [`SessionManagerBuilder::timers`] takes them.
pub use session_dialog::tls::{TlsConfig, TlsConfigBuilder, TlsError};
pub use session_dialog::transaction::TimerConfig;
/// Codecs, telephone-event and ptime, as [`SessionManagerBuilder::media`] takes them.
pub use session_media::sdp::negotiate::MediaConfig;

/// Bridges: what [`SessionManager::create_bridge`] and its neighbours take and give.
pub use session_bridge::{
    BridgeId, BridgeStats, Gain, JoinSettings, MemberStats, Technology, TechnologyChoice,
};
pub use session_events::{
    BridgeChange, CallSummary, EventBus, EventKind, Filter, PlaybackEnd, RecvError, SessionEvent,
    Subscription, TerminationReason, TryRecvError,
};
pub use session_media::AudioFrame;
/// Audio for [`CallSession::attach_source`] and [`CallSession::attach_sink`]: a tone, a sink
/// that hands frames to a channel, the frames, and a tone detector for checks.
pub use session_media::audio::{ChannelSink, ToneSource, goertzel_power};
/// The figures in [`CallStats`]: the RTP/RTCP stream's and the receive jitter buffer's.
pub use session_media::{jitter::JitterStats, rtcp::StreamStats};
pub use session_resources::{AdmissionController, Limits, PortPool};
/// SIP URIs, as [`SessionManager::uri`] and [`SessionManagerBuilder::outbound_proxy`] use them.
pub use session_sip::Uri;
pub use session_sip::resource_priority::PriorityNamespace;
pub use session_tracer::{
    HealthIssue, HealthKind, HealthThresholds, SessionTracer, Timeline, TracerConfig,
};
pub use session_types::{
    CallId, CallState, Direction, FailureReason, GroupId, Priority, SessionId, StatusCode, StuckOn,
};

/// The crates session-core is built from, for what the umbrella does not re-export.
pub mod crates {
    pub use session_bridge as bridge;
    pub use session_dialog as dialog;
    pub use session_events as events;
    pub use session_media as media;
    pub use session_resources as resources;
    pub use session_sip as sip;
    pub use session_tracer as tracer;
    pub use session_types as types;
}
