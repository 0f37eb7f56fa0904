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
//!   all on [`SessionManager::shutdown`] — or, behind a balancer, leaves service gracefully
//!   with [`SessionManager::drain`] (new calls and OPTIONS probes get 503, calls in progress
//!   may finish; OPTIONS get 200 with an `X-Load` header while it serves).
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
//!
//! ## Register, and call through a proxy with credentials
//!
//! Real PBXs and carriers ask for digest credentials (RFC 3261 §22). Give the manager a
//! [`CredentialProvider`] — the application's credentials per realm — and every request its
//! sessions send (INVITE, re-INVITE, UPDATE, BYE, REFER, INFO, MESSAGE, NOTIFY; never ACK or
//! CANCEL) answers a 401 or 407 by itself: the request goes again with `Authorization` or
//! `Proxy-Authorization`, the same Call-ID and From tag and the next CSeq, and the ACK of a 2xx
//! repeats the INVITE's credentials. Wrong credentials end the request after one retry with
//! the 401/407 as its status: a call fails with `FailureReason::Rejected(407)`, an operation
//! with [`SessionError::Rejected`]. [`CallOptions::credentials`] gives one call its own.
//!
//! [`SessionManager::register`] binds our contact to an address of record (RFC 3261 §10) and
//! keeps it fresh until the [`Registration`] is unregistered, dropped, or the manager shuts
//! down: refreshed before the granted expiry, 423 answered with `Min-Expires`, failures retried
//! with back-off (or after `Retry-After`), the state readable as a [`RegistrationState`] watch.
//!
//! ```no_run
//! use session_core::{Credentials, RegisterOptions, SessionManager, Uri};
//!
//! # async fn demo() -> session_core::Result<()> {
//! let phone = SessionManager::builder()
//!     .credentials(|realm: &str| {
//!         (realm == "pbx.example.com").then(|| Credentials::password("alice", "wonderland"))
//!     })
//!     // Every call goes through the PBX (pre-loaded Route), which answers INVITEs with 407.
//!     .outbound_proxy(Uri::parse("sip:pbx.example.com").expect("a SIP URI"))
//!     .start()
//!     .await?;
//! let registration = phone
//!     .register(RegisterOptions::new("sip:pbx.example.com", "sip:alice@pbx.example.com"))
//!     .await?;
//! let granted = registration.registered().await?; // 401 answered, then 200
//! assert!(granted.as_secs() > 0);
//!
//! let call = phone.call("sip:bob@pbx.example.com").await?; // 407 answered on the way
//! call.answered().await?;
//! call.hangup().await?;
//! registration.unregister().await?; // Expires: 0
//! phone.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Serve a registrar
//!
//! A manager can be the registrar and location service its phones register with (RFC 3261
//! §10.3; for tests, examples and small deployments). [`ServerAuth`] challenges requests with
//! digest — INVITEs by default, REGISTERs when the registrar authenticates — against the
//! application's user store, an [`Ha1Lookup`] that returns HA1s (no passwords needed);
//! [`RegistrarConfig`] sets the domains, the expiry bounds (423 below the minimum) and the
//! memory bounds. [`SessionManager::lookup`] returns an address of record's current
//! [`Binding`]s, highest q first, to call at their contact; every change is published as
//! [`SessionEvent::Registrar`].
//!
//! ```no_run
//! use session_core::{
//!     Algorithm, Ha1, HashFunction, RegistrarConfig, ServerAuth, SessionManager,
//! };
//!
//! # async fn demo() -> session_core::Result<()> {
//! // The user store: HA1 = MD5(user:realm:password), kept instead of the password.
//! let alice = Ha1::from_password(HashFunction::Md5, "alice", "example.com", "wonderland");
//! let users = move |user: &str, _realm: &str, hash: HashFunction| {
//!     (user == "alice" && hash == HashFunction::Md5).then(|| alice.clone())
//! };
//! let pbx = SessionManager::builder()
//!     // MD5 only: what most deployed phones answer (SHA-256 is offered by default too).
//!     .authenticate(ServerAuth::new("example.com", users).algorithms([Algorithm::Md5]))
//!     .registrar(RegistrarConfig::default().domain("example.com"))
//!     .start()
//!     .await?;
//! // alice's phone REGISTERs (401, then 200 with its binding); a call for her goes to it.
//! if let Some(phone) = pbx.lookup("sip:alice@example.com").first() {
//!     let call = pbx.call(phone.contact.as_str()).await?;
//!     call.answered().await?;
//! }
//! # Ok(())
//! # }
//! ```

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
mod registrar;
mod registration;
mod server_auth;
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
pub use manager::{CallOptions, DrainReport, SessionManager, SessionManagerBuilder};
pub use media::{BoxedSink, BoxedSource};
pub use registrar::{Binding, RegistrarConfig};
pub use registration::{RegisterOptions, Registration, RegistrationState};
pub use server_auth::{AuthScope, ServerAuth};
/// Server-side digest: what [`ServerAuth`] takes (the application's user store returns HA1s,
/// never passwords) and offers.
pub use session_auth::{Algorithm, Ha1, Ha1Lookup, HashFunction};
/// Client-side digest: the application's credentials per realm, and the account (credentials
/// plus digest state) that answers 401/407 with them.
pub use session_dialog::auth::{Account, CredentialProvider, Credentials};
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
    BindingChange, BridgeChange, CallSummary, EventBus, EventKind, Filter, PlaybackEnd, RecvError,
    SessionEvent, Subscription, TerminationReason, TryRecvError,
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
    pub use session_auth as auth;
    pub use session_bridge as bridge;
    pub use session_dialog as dialog;
    pub use session_events as events;
    pub use session_media as media;
    pub use session_resources as resources;
    pub use session_sip as sip;
    pub use session_tracer as tracer;
    pub use session_types as types;
}

/// Not part of the API: the manager's per-call bookkeeping structures, reachable only through
/// the manager's handles otherwise, exposed for `benches/` (issue 13's per-call costs). No
/// stability promise; do not use.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::dependencies::Dependencies;
    pub use crate::groups::Groups;
    pub use crate::metrics::CallMetrics;
}
