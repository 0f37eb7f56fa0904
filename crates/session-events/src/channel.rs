//! [`ChannelSubscription`]: a subscription that delivers into a bounded
//! [`crossbeam_channel`], for threads that wait on several channels with
//! [`crossbeam_channel::select!`].
//!
//! The bus files it in the same index as a [`crate::Subscription`] (same filters, same
//! per-session order, same unsubscribe-on-drop and closing), but its sink is the sending half of
//! a `crossbeam_channel::bounded(capacity)` channel instead of a queue of its own. The bus sends
//! with `try_send` and never blocks: when the channel is full the **newest** event is dropped
//! for this subscriber (a channel's items cannot be taken back out by the sender, so the oldest
//! cannot be evicted as a [`crate::Subscription`] does) and counted.
//!
//! # Exact lag counts
//!
//! Each item is a [`Delivery`]: the event and `missed_before`, the number of events dropped for
//! this subscriber just before it. The count lives in an atomic counter: a refused send adds to
//! it, a successful one takes it (and resets it) into the item it sends — both under the slot's
//! short sender lock, so the sends to one subscription are serialised and every drop is counted
//! at its position. Drops after the last item sent are taken with
//! [`ChannelSubscription::take_missed`] (or reported by [`ChannelSubscription::recv`] once the
//! channel is empty). The sum of all `missed_before` and `take_missed` values is exactly the
//! number of events dropped for the subscriber.
//!
//! Closing (the last bus handle dropped, or [`crate::EventBus::forget_session`] of the only
//! session it was scoped to) drops the sender: the receiver gets what is in the channel, then
//! `Disconnected`.

use crate::bus::Inner;
use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::event::SessionEvent;
use crate::filter::Filter;
use crate::subscription::{Pushed, Sink, Slot};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One item of a [`ChannelSubscription`]'s channel.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// How many events matching the subscription were dropped, because the channel was full,
    /// just before this one (0 almost always).
    pub missed_before: u64,
    /// The event (the publisher's allocation, shared with every other subscriber).
    pub event: Arc<SessionEvent>,
}

/// The sink of a [`ChannelSubscription`], as the bus's index holds it.
pub(crate) struct ChannelSink {
    /// The only sender of the channel; `None` once closed, which disconnects the receiver.
    sender: Mutex<Option<Sender<Delivery>>>,
    /// Events dropped since the last item sent (see the module docs).
    missed: AtomicU64,
    capacity: usize,
}

impl ChannelSink {
    pub(crate) fn new(capacity: usize) -> (Self, Receiver<Delivery>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let sink = Self {
            sender: Mutex::new(Some(sender)),
            missed: AtomicU64::new(0),
            capacity,
        };
        (sink, receiver)
    }

    /// Sends `event` if the channel has room, else counts it as missed. Never blocks beyond the
    /// sink's own short lock (which serialises the sends to this subscriber, so that the counts
    /// are exact). A receiver blocked on the channel is woken by crossbeam inside this call.
    pub(crate) fn push(&self, event: &Arc<SessionEvent>) -> Pushed {
        let sender = self.sender.lock();
        let Some(tx) = sender.as_ref() else {
            return Pushed::Closed;
        };
        // Only the receiver's `take_missed` also changes the counter (it can only reset it).
        let missed_before = if self.missed.load(Ordering::Acquire) == 0 {
            0
        } else {
            self.missed.swap(0, Ordering::AcqRel)
        };
        let item = Delivery {
            missed_before,
            event: Arc::clone(event),
        };
        match tx.try_send(item) {
            Ok(()) => Pushed::Queued {
                dropped: false,
                wake: None,
            },
            Err(TrySendError::Full(item)) => {
                // Put back what was taken, plus this event.
                self.missed
                    .fetch_add(item.missed_before + 1, Ordering::AcqRel);
                Pushed::Refused
            }
            // The receiver was dropped; the subscription is being unregistered.
            Err(TrySendError::Disconnected(_)) => Pushed::Closed,
        }
    }
}

impl Sink for ChannelSink {
    fn close(&self) {
        let sender = self.sender.lock().take();
        // Dropping the only sender disconnects the channel (outside the lock).
        drop(sender);
    }
}

/// A subscription that delivers into a bounded [`crossbeam_channel`], made with
/// [`crate::EventBus::subscribe_channel`].
///
/// Put [`receiver`](Self::receiver) in a [`crossbeam_channel::select!`] next to a thread's other
/// channels and handle the [`Delivery`] items yourself, or use [`recv`](Self::recv),
/// [`recv_timeout`](Self::recv_timeout) and [`try_recv`](Self::try_recv), which report a gap as
/// [`RecvError::Lagged`] before the event that follows it, like a [`crate::Subscription`].
///
/// When the channel is full the bus drops the **newest** event for this subscriber (it never
/// waits) and counts it: the next item carries the count in
/// [`Delivery::missed_before`]; drops after the last item are returned by
/// [`take_missed`](Self::take_missed). Events of one session arrive in the order they were
/// published.
///
/// Dropping the subscription unsubscribes it at once. When the bus closes it (every bus handle
/// dropped, or [`crate::EventBus::forget_session`] of the only session it was scoped to), the
/// channel disconnects after its last item.
///
/// ```
/// use session_events::crossbeam_channel::{self, select};
/// use session_events::{EventBus, Filter, SessionEvent};
/// use session_types::SessionId;
///
/// let bus = EventBus::new();
/// let call = SessionId::new();
/// let events = bus.subscribe_channel(Filter::session(call), 64).unwrap();
/// let (_rtp_tx, rtp) = crossbeam_channel::bounded::<Vec<u8>>(16);
///
/// bus.publish(SessionEvent::MediaStopped { session_id: call });
/// select! {
///     recv(events.receiver()) -> item => {
///         let item = item.unwrap();
///         assert_eq!(item.missed_before, 0);
///         assert_eq!(item.event.session_id(), Some(call));
///     }
///     recv(rtp) -> _packet => unreachable!("no packet was sent"),
/// }
/// assert_eq!(events.take_missed(), 0);
/// ```
pub struct ChannelSubscription {
    slot: Arc<Slot<ChannelSink>>,
    bus: Arc<Inner>,
    receiver: Receiver<Delivery>,
    /// The event of an item whose gap was just reported as `Lagged` by a convenience receive;
    /// the next one returns it.
    pending: Option<Arc<SessionEvent>>,
}

impl ChannelSubscription {
    pub(crate) fn new(
        slot: Arc<Slot<ChannelSink>>,
        bus: Arc<Inner>,
        receiver: Receiver<Delivery>,
    ) -> Self {
        Self {
            slot,
            bus,
            receiver,
            pending: None,
        }
    }

    /// The receiving end of the channel, for [`crossbeam_channel::select!`] (or any other use of
    /// a crossbeam receiver). Each item's [`Delivery::missed_before`] says how many events were
    /// dropped just before it.
    ///
    /// If you mix it with this subscription's own receive calls, note that those may hold back
    /// one event after reporting its gap (the next of them returns it).
    pub fn receiver(&self) -> &Receiver<Delivery> {
        &self.receiver
    }

    /// Takes (and resets) the number of events dropped after the last item the bus sent into
    /// the channel — the gap at the end, when the channel is empty. Items already in the channel
    /// were sent before these drops. A drop being recorded by a concurrent publish shows up in
    /// the next item or the next call instead, never in both.
    pub fn take_missed(&self) -> u64 {
        if self.slot.sink.missed.load(Ordering::Acquire) == 0 {
            0
        } else {
            self.slot.sink.missed.swap(0, Ordering::AcqRel)
        }
    }

    /// Blocks the current thread until the next event.
    ///
    /// Returns `Err(RecvError::Lagged(n))` at the position where `n` events were dropped for
    /// this subscriber (then the event after the gap, if any), and `Err(RecvError::Closed)` once
    /// the channel is empty and disconnected.
    pub fn recv(&mut self) -> Result<Arc<SessionEvent>, RecvError> {
        match self.next(|rx| rx.recv().map_err(|_| Disconnected)) {
            Next::Event(event) => Ok(event),
            Next::Lagged(n) => Err(RecvError::Lagged(n)),
            // Without a deadline nothing else can happen.
            Next::Closed | Next::Empty => Err(RecvError::Closed),
        }
    }

    /// Blocks the current thread until the next event or until `timeout` has passed (same
    /// results as [`recv`](Self::recv), plus [`RecvTimeoutError::Timeout`]).
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Arc<SessionEvent>, RecvTimeoutError> {
        let next = self.next(|rx| {
            rx.recv_timeout(timeout).map_err(|err| {
                if err.is_timeout() {
                    TimedOut
                } else {
                    Disconnected
                }
            })
        });
        match next {
            Next::Event(event) => Ok(event),
            Next::Lagged(n) => Err(RecvTimeoutError::Lagged(n)),
            Next::Closed => Err(RecvTimeoutError::Closed),
            Next::Empty => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Returns the next event if one is in the channel, without waiting (a gap is reported as
    /// [`TryRecvError::Lagged`] first).
    pub fn try_recv(&mut self) -> Result<Arc<SessionEvent>, TryRecvError> {
        match self.next(|_| Err(TimedOut)) {
            Next::Event(event) => Ok(event),
            Next::Lagged(n) => Err(TryRecvError::Lagged(n)),
            Next::Closed => Err(TryRecvError::Closed),
            Next::Empty => Err(TryRecvError::Empty),
        }
    }

    /// How many items are in the channel.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether the channel is empty.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// How many items the channel holds before the bus drops new events for this subscriber.
    pub fn capacity(&self) -> usize {
        self.slot.sink.capacity
    }

    /// Whether the bus has closed this subscription (items still in the channel can be
    /// received).
    pub fn is_closed(&self) -> bool {
        self.slot.sink.sender.lock().is_none()
    }

    /// The filter this subscription was made with.
    pub fn filter(&self) -> &Filter {
        &self.slot.filter
    }

    /// The next thing to report: a held-back event, an item (its gap first), the gap at the end
    /// of an empty channel, or else what `wait` says.
    fn next(&mut self, wait: impl FnOnce(&Receiver<Delivery>) -> Result<Delivery, Stop>) -> Next {
        if let Some(event) = self.pending.take() {
            return Next::Event(event);
        }
        let item = match self.receiver.try_recv() {
            Ok(item) => item,
            Err(empty_or_closed) => {
                // The channel is empty: drops after its last item come before anything else.
                let missed = self.take_missed();
                if missed > 0 {
                    return Next::Lagged(missed);
                }
                if empty_or_closed.is_disconnected() {
                    return Next::Closed;
                }
                // Nothing is counted while the channel is empty (drops need a full channel), so
                // waiting cannot skip over a gap: the items that fill it come first.
                match wait(&self.receiver) {
                    Ok(item) => item,
                    Err(Stop::Disconnected) => {
                        let missed = self.take_missed();
                        return if missed > 0 {
                            Next::Lagged(missed)
                        } else {
                            Next::Closed
                        };
                    }
                    Err(Stop::TimedOut) => return Next::Empty,
                }
            }
        };
        if item.missed_before > 0 {
            self.pending = Some(item.event);
            Next::Lagged(item.missed_before)
        } else {
            Next::Event(item.event)
        }
    }
}

/// Why waiting for an item ended without one.
enum Stop {
    Disconnected,
    TimedOut,
}
use Stop::{Disconnected, TimedOut};

/// What a convenience receive reports.
enum Next {
    Event(Arc<SessionEvent>),
    Lagged(u64),
    Closed,
    /// Nothing now (`try_recv`) or in time (`recv_timeout`).
    Empty,
}

impl Drop for ChannelSubscription {
    fn drop(&mut self) {
        self.bus.unregister(&self.slot);
    }
}

impl fmt::Debug for ChannelSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSubscription")
            .field("filter", &self.slot.filter)
            .field("capacity", &self.slot.sink.capacity)
            .field("queued", &self.len())
            .finish()
    }
}
