//! The typed event bus every session-core layer publishes to.
//!
//! The SIP, media and call-control layers report what happens to a session — created, state
//! changed, media started, DTMF received, terminated — as a [`SessionEvent`] on one
//! [`EventBus`]. Applications, the tracer and tests subscribe with a [`Filter`] and receive the
//! events it selects on a [`Subscription`], in async code or on a plain thread.
//!
//! # Guarantees
//!
//! - **One allocation per event.** An event is published as `Arc<SessionEvent>`; every
//!   subscriber receives the same allocation.
//! - **Publishing never waits for a subscriber.** Each subscription has a bounded queue of its
//!   own. When it is full the oldest queued event is dropped for that subscriber only, and the
//!   next receive reports the gap with the exact count ([`RecvError::Lagged`]), then goes on.
//! - **Events of other sessions cost nothing.** Subscriptions are indexed by session and by
//!   group, so a publish costs one hash lookup plus the subscriptions that can match; a call
//!   engine holding one subscription per call (thousands) is the normal case. Subscriptions
//!   that are not scoped to sessions or groups sit in a separate list checked on every publish.
//! - **Per-session order.** Every subscriber sees a session's events in the one order in which
//!   they were published.
//! - **Groups are the bus's business.** [`EventBus::join_group`] records that a session is in a
//!   group; an event of that session then reaches the group's subscribers, without the
//!   publisher knowing about groups.
//! - **Nothing leaks.** Dropping a [`Subscription`] (also by aborting the task that holds it)
//!   removes it from the index at once; [`EventBus::subscriber_count`] and [`EventBus::stats`]
//!   let tests prove everything counts back to zero. [`EventBus::forget_session`] drops a
//!   session's memberships and closes the subscriptions scoped to it alone.
//! - **No tasks, no locks across `.await`.** The bus spawns nothing and depends on no runtime;
//!   `recv().await` works on any executor.
//!
//! # Example
//!
//! ```no_run
//! use session_events::{EventBus, EventKind, Filter, RecvError, SessionEvent};
//! use session_types::{CallId, CallState, GroupId, SessionId};
//!
//! # async fn run() -> session_events::Result<()> {
//! let bus = EventBus::new();
//! let call = SessionId::new();
//! let conference = GroupId::next();
//! bus.join_group(call, conference);
//!
//! // One call's state changes; every member of a conference; every DTMF digit.
//! let mut mine = bus.subscribe(Filter::session(call).with_kind(EventKind::StateChanged));
//! let mut room = bus.subscribe(Filter::group(conference));
//! let mut digits = bus.subscribe(Filter::kind(EventKind::DtmfReceived));
//!
//! bus.publish(SessionEvent::StateChanged {
//!     session_id: call,
//!     call_id: CallId::from("a84b4c76e66710@pc33.example.com"),
//!     old: CallState::Ringing,
//!     new: CallState::Active,
//! });
//!
//! loop {
//!     match mine.recv().await {
//!         Ok(event) => {
//!             if let SessionEvent::StateChanged { new, .. } = &*event {
//!                 if new.is_final() {
//!                     break;
//!                 }
//!             }
//!         }
//!         // We fell behind: `n` events were dropped for us; the next recv goes on.
//!         Err(RecvError::Lagged(n)) => eprintln!("missed {n} events"),
//!         Err(RecvError::Closed) => break,
//!     }
//! }
//! // Or let `?` turn a lag or a close into this crate's `Error`.
//! let _next = room.recv().await?;
//! # drop(digits);
//! # Ok(())
//! # }
//! ```
//!
//! On a thread without a runtime use [`Subscription::blocking_recv`] or
//! [`Subscription::recv_timeout`]; to poll, [`Subscription::try_recv`].
//!
//! # Modules
//!
//! The paved path is re-exported here; the modules hold the details: `event` (the events),
//! `filter` (what a subscription selects), `bus` (publishing, the index, groups), `subscription`
//! (the receiving end and its queue), `error`.

mod bus;
mod error;
mod event;
mod filter;
mod subscription;

pub use bus::{BusStats, EventBus, EventBusBuilder};
pub use error::{Error, RecvError, RecvTimeoutError, Result, TryRecvError};
pub use event::{EventKind, Payload, SessionEvent, TerminationReason};
pub use filter::Filter;
pub use subscription::Subscription;
