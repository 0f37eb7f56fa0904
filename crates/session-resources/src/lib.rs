//! Admission limits with RAII permits, an RTP port pool, and counters, gauges and histograms
//! for session-core.
//!
//! Every session a server accepts takes something that runs out: a slot under the global
//! limit, a share of its user's and group's quota, an RTP/RTCP port pair. This crate hands
//! each of them out as a value that gives it back when dropped, so a session releases
//! everything it took on every way it can end — BYE, CANCEL, a timeout, an error path, a task
//! that is aborted — without a line of cleanup code (architecture invariant 5). When something
//! has run out, the refusal is a [`ResourceError::Exhausted`] that names the resource and the
//! limit and suggests a `Retry-After`, which the SIP layer turns into `503 Service Unavailable`.
//!
//! | part | what it gives out | usage as plain data |
//! | --- | --- | --- |
//! | [`AdmissionController`] | an [`AdmissionPermit`] per session under [`Limits`] (global, per user, per group) | [`UsageSnapshot`] |
//! | [`PortPool`] | a [`PortPair`] (even RTP port, RTCP on the next), reused first in, first out | [`PortUsage`] |
//! | [`Metrics`] | named [`Counter`]s, [`Gauge`]s and [`Histogram`]s (log-scale buckets, p50/p90/p99) | [`MetricsSnapshot`] |
//!
//! Each type is exported once, here at the root.
//!
//! # A session's resources
//!
//! ```
//! use session_resources::{
//!     AdmissionController, AdmissionRequest, Limits, Metrics, PortPool, Resource,
//! };
//! use session_types::{Classify, ErrorKind, GroupId};
//! use std::time::{Duration, Instant};
//!
//! // Once, at start-up.
//! let admission = AdmissionController::new(
//!     Limits::default()
//!         .max_sessions(1_000)
//!         .max_per_user(2)
//!         .retry_after(Duration::from_secs(10)),
//! );
//! let ports = PortPool::new(20000..30000)?;
//! let metrics = Metrics::new();
//! let setup_latency = metrics.histogram("setup_latency_ns");
//! let refused = metrics.counter("calls_refused");
//!
//! // For each incoming INVITE.
//! struct Session {
//!     _permit: session_resources::AdmissionPermit,
//!     media: session_resources::PortPair,
//! }
//! let mut sessions = Vec::new();
//! for _ in 0..3 {
//!     let started = Instant::now();
//!     let request = AdmissionRequest::for_user("alice").in_group(GroupId::from_raw(1));
//!     let session = admission.try_admit(&request).and_then(|permit| {
//!         // If the pool is empty, `permit` is dropped here and the admission undone.
//!         Ok(Session { _permit: permit, media: ports.acquire()? })
//!     });
//!     match session {
//!         Ok(session) => {
//!             assert_eq!(session.media.rtp() % 2, 0);
//!             setup_latency.record_duration(started.elapsed());
//!             sessions.push(session);
//!         }
//!         Err(err) => {
//!             // The SIP layer answers 503 Service Unavailable with `Retry-After: 10`.
//!             assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
//!             assert!(matches!(err.resource(), Some(Resource::UserSessions { .. })));
//!             assert_eq!(err.retry_after_secs(), Some(10));
//!             refused.inc();
//!         }
//!     }
//! }
//!
//! // Usage monitoring.
//! let usage = admission.snapshot();
//! assert_eq!((usage.active, usage.refused_user), (2, 1));
//! assert_eq!(usage.user("alice"), 2);
//! assert_eq!(ports.in_use(), 2);
//! assert_eq!(metrics.snapshot().counter("calls_refused"), Some(1));
//!
//! // Sessions end however they end; dropping them releases everything.
//! drop(sessions);
//! assert_eq!(admission.active(), 0);
//! assert_eq!(ports.in_use(), 0);
//! assert!(admission.snapshot().users.is_empty());
//! # Ok::<(), session_resources::ResourceError>(())
//! ```
//!
//! # Concurrency and cancellation
//!
//! Every type here is `Send + Sync`; controllers, pools and registries are cheap handles to
//! shared state (clone them into tasks). The global session count is one atomic updated with
//! compare-and-swap, so it never goes over its limit even for an instant. Per-user and
//! per-group counts sit in sharded `parking_lot` maps, the free port pairs in one
//! `parking_lot` mutex; each lock is held for one map or queue operation, never across an
//! `.await`, and never two at once. Nothing here is async, so there is nothing to cancel:
//! a future or task that holds a permit or a port pair and is dropped (aborted, timed out,
//! the losing branch of a `select!`) releases it in the drop.
//!
//! Counters, gauges and histograms record with relaxed atomics and no lock. Snapshots read
//! each figure atomically but not all at one instant, so while sessions come and go their
//! figures may disagree by the few changes made during the snapshot.
//!
//! # Errors
//!
//! [`ResourceError`] implements [`session_types::Classify`]: refusals are
//! [`ErrorKind::ResourceExhausted`](session_types::ErrorKind::ResourceExhausted) (503),
//! configurations that cannot work (a port range without a pair) are
//! [`ErrorKind::ApiMisuse`](session_types::ErrorKind::ApiMisuse). Nothing in this crate
//! panics on any input.

mod admission;
mod error;
mod keyed;
mod metrics;
mod ports;

pub use admission::{
    AdmissionController, AdmissionPermit, AdmissionRequest, DEFAULT_RETRY_AFTER, Limits,
    UsageSnapshot,
};
pub use error::{Resource, ResourceError, Result};
pub use metrics::{Bucket, Counter, Gauge, Histogram, HistogramSnapshot, Metrics, MetricsSnapshot};
pub use ports::{PortPair, PortPool, PortPoolBuilder, PortUsage};
