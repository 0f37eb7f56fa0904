//! The typed event bus every session-core layer publishes to.
//!
//! The SIP, media and call-control layers report what happens to a session — created, state
//! changed, media started, DTMF received, terminated — as a [`SessionEvent`] on one
//! [`EventBus`]. Applications, the tracer and tests subscribe with a [`Filter`] and receive the
//! events it selects on a [`Subscription`], in async code or on a plain thread — or on a
//! [`ChannelSubscription`], a bounded `crossbeam-channel` a real-time thread can wait on in
//! [`crossbeam_channel::select!`] next to its other channels.
//!
//! # Guarantees
//!
//! - **One allocation per event, none when nobody listens.** An event is published as
//!   `Arc<SessionEvent>`; every subscriber receives the same allocation. While the bus has no
//!   subscription at all a publish takes no lock and makes no `Arc` (it is only counted), and
//!   [`EventBus::publish_with`] does not even build the event.
//! - **Publishing never waits for a subscriber.** Each subscription has a bounded queue of its
//!   own. When it is full the oldest queued event is dropped for that subscriber only, and the
//!   next receive reports the gap with the exact count ([`RecvError::Lagged`]), then goes on.
//!   A [`ChannelSubscription`]'s channel is filled with `try_send`: when it is full the *newest*
//!   event is dropped for that subscriber and counted, and the next item that gets through
//!   carries the exact count ([`Delivery::missed_before`]; drops after the last item:
//!   [`ChannelSubscription::take_missed`]).
//! - **Events of other sessions cost nothing.** Subscriptions are indexed by session and by
//!   group, so a publish costs one hash lookup plus the subscriptions that can match; a call
//!   engine holding one subscription per call (thousands) is the normal case. Subscriptions
//!   that are not scoped to sessions or groups sit in a separate list checked on every publish.
//! - **Per-session order.** Every subscriber sees a session's events in the one order in which
//!   they were published.
//! - **Groups are the bus's business.** [`EventBus::join_group`] records that a session is in a
//!   group; an event of that session then reaches the group's subscribers, without the
//!   publisher knowing about groups. Membership kept elsewhere (session-core's groups) is
//!   shared with the bus instead of mirrored: a [`GroupMembership`] source registered with
//!   [`EventBus::add_group_membership`] is asked at publish time, only while some subscription
//!   is on a group.
//! - **Nothing leaks.** Dropping a [`Subscription`] or a [`ChannelSubscription`] (also by
//!   aborting the task that holds it) removes it from the index at once; [`EventBus::subscriber_count`] and [`EventBus::stats`]
//!   let tests prove everything counts back to zero. [`EventBus::forget_session`] drops a
//!   session's memberships and closes the subscriptions scoped to it alone (a channel
//!   subscription's channel disconnects after its last item).
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
//! # A receiver for `select!`
//!
//! A thread that must wait on several channels at once — a media thread with its packets, its
//! timers and its session's events — subscribes with [`EventBus::subscribe_channel`] and puts
//! [`ChannelSubscription::receiver`] in a [`crossbeam_channel::select!`] (this crate re-exports
//! the [`crossbeam_channel`] it uses). Each item is a [`Delivery`]: the event and the number of
//! events dropped for this subscriber just before it.
//!
//! ```
//! use session_events::crossbeam_channel::{self, select};
//! use session_events::{EventBus, Filter, SessionEvent};
//! use session_types::SessionId;
//! use std::time::Duration;
//!
//! let bus = EventBus::new();
//! let call = SessionId::new();
//! let events = bus.subscribe_channel(Filter::session(call), 64).unwrap();
//! let (tick_tx, ticks) = crossbeam_channel::bounded::<()>(1);
//! tick_tx.send(()).unwrap();
//! bus.publish(SessionEvent::MediaStopped { session_id: call });
//!
//! let (mut got_tick, mut got_event) = (false, false);
//! while !(got_tick && got_event) {
//!     select! {
//!         recv(ticks) -> _ => got_tick = true,
//!         recv(events.receiver()) -> item => {
//!             let item = item.unwrap();
//!             if item.missed_before > 0 {
//!                 eprintln!("dropped {} events", item.missed_before);
//!             }
//!             got_event = matches!(*item.event, SessionEvent::MediaStopped { .. });
//!         }
//!         default(Duration::from_secs(5)) => panic!("nothing arrived"),
//!     }
//! }
//! ```
//!
//! Its [`ChannelSubscription::recv`], [`ChannelSubscription::recv_timeout`] and
//! [`ChannelSubscription::try_recv`] report gaps as [`RecvError::Lagged`] like a
//! [`Subscription`].
//!
//! # Modules
//!
//! The paved path is re-exported here; the modules hold the details: `event` (the events),
//! `filter` (what a subscription selects), `bus` (publishing, the index, groups), `subscription`
//! (the receiving end and its queue), `channel` (the crossbeam-channel receiving end), `error`.

mod bus;
mod channel;
mod error;
mod event;
mod filter;
mod subscription;

pub use bus::{BusStats, EventBus, EventBusBuilder, GroupMembership};
pub use channel::{ChannelSubscription, Delivery};
/// The `crossbeam-channel` this crate delivers into ([`ChannelSubscription::receiver`]), for
/// [`crossbeam_channel::select!`] without a version to keep in step.
pub use crossbeam_channel;
pub use error::{Error, RecvError, RecvTimeoutError, Result, TryRecvError};
pub use event::{
    BindingChange, BridgeChange, CallSummary, EventKind, Payload, PlaybackEnd, SessionEvent,
    TerminationReason,
};
pub use filter::Filter;
pub use subscription::Subscription;
