//! [`Subscription`]: the receiving end, with its bounded queue.
//!
//! Each subscription owns one small queue (a `VecDeque` of `Arc<SessionEvent>` behind a
//! `parking_lot` mutex). The bus pushes into it without ever waiting: when the queue is full the
//! *oldest* queued event is dropped and a per-queue counter goes up, so a slow subscriber never
//! holds up a publisher. The next receive reports the gap as [`RecvError::Lagged`] with the exact
//! number dropped, then goes on with the oldest event still queued — the same contract as
//! `tokio::sync::broadcast`, but per subscriber.
//!
//! The one queue serves both ways of receiving: `recv().await` registers the task's waker, and
//! the blocking calls register a waker that unparks the calling thread. Wakers are woken after the
//! bus has released its locks.
//!
//! The bus's index holds each subscriber as a [`Slot`] (its filter, its index bookkeeping and
//! its sink) behind a [`SlotRef`], which says which kind of sink it has: this module's queue, or
//! the crossbeam channel of a [`crate::ChannelSubscription`] (see the `channel` module). A publish
//! dispatches on that with one branch and then works on the concrete sink, so the queue's path
//! is what it was before channels existed.

use crate::bus::Inner;
use crate::channel::ChannelSink;
use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::event::SessionEvent;
use crate::filter::Filter;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};

/// One subscriber as the bus's index holds it: its filter and its sink — the queue of a
/// [`Subscription`] ([`QueueSink`]) or the channel of a [`crate::ChannelSubscription`]
/// ([`crate::channel::ChannelSink`]).
pub(crate) struct Slot<S> {
    /// Unique per bus; used to recognise a subscription reached twice in one publish, and to find
    /// it in the index.
    pub(crate) id: u64,
    pub(crate) filter: Filter,
    /// Whether one event can reach this slot through more than one index entry (it is scoped to
    /// groups and to more than one place), so a publish must deliver it once only.
    pub(crate) multi_path: bool,
    /// How many index entries still hold this slot (see [`Inner::forget_session`]).
    pub(crate) entries: AtomicUsize,
    /// Whether this slot still counts in [`crate::EventBus::subscriber_count`]; cleared exactly
    /// once, by whoever unregisters it first.
    pub(crate) registered: AtomicBool,
    pub(crate) sink: S,
}

/// A slot as the index holds it: one pointer per kind of sink, so that a publish dispatches with
/// one branch and then works on the concrete sink (no dynamic call), and each receiver type
/// holds its own kind of slot.
pub(crate) enum SlotRef {
    /// A [`Subscription`]'s queue.
    Queue(Arc<Slot<QueueSink>>),
    /// A [`crate::ChannelSubscription`]'s channel.
    Channel(Arc<Slot<ChannelSink>>),
}

impl SlotRef {
    pub(crate) fn id(&self) -> u64 {
        match self {
            Self::Queue(slot) => slot.id,
            Self::Channel(slot) => slot.id,
        }
    }

    /// Closes the sink: the subscriber receives what is queued, then learns it is closed.
    pub(crate) fn close(&self) {
        match self {
            Self::Queue(slot) => slot.sink.close(),
            Self::Channel(slot) => slot.sink.close(),
        }
    }

    /// Removes one index entry from the slot's count; when that was the last, closes the slot,
    /// counts it out of `subscribers` and returns `true`.
    pub(crate) fn release_entry(&self, subscribers: &AtomicUsize) -> bool {
        match self {
            Self::Queue(slot) => slot.release_entry(subscribers),
            Self::Channel(slot) => slot.release_entry(subscribers),
        }
    }
}

impl From<Arc<Slot<QueueSink>>> for SlotRef {
    fn from(slot: Arc<Slot<QueueSink>>) -> Self {
        Self::Queue(slot)
    }
}

impl From<Arc<Slot<ChannelSink>>> for SlotRef {
    fn from(slot: Arc<Slot<ChannelSink>>) -> Self {
        Self::Channel(slot)
    }
}

/// A sink the bus can close (see [`SlotRef::close`]).
pub(crate) trait Sink {
    fn close(&self);
}

/// The sink of a [`Subscription`]: a bounded queue that drops its oldest event when full.
pub(crate) struct QueueSink {
    capacity: usize,
    queue: Mutex<Queue>,
}

struct Queue {
    items: VecDeque<Arc<SessionEvent>>,
    /// Events dropped since the subscriber last received; the gap is always just before
    /// `items[0]`, since only the oldest events are ever dropped.
    missed: u64,
    closed: bool,
    waker: Option<Waker>,
}

/// What a push did.
pub(crate) enum Pushed {
    /// Queued; `true` when the oldest queued event was dropped to make room.
    Queued { dropped: bool, wake: Option<Waker> },
    /// The sink was full and refused this (newest) event; it is counted as missed.
    Refused,
    /// The subscription is closed; nothing was queued.
    Closed,
}

impl<S: Sink> Slot<S> {
    pub(crate) fn new(id: u64, filter: Filter, entries: usize, sink: S) -> Self {
        let multi_path = match &filter.scope {
            crate::filter::Scope::All => false,
            crate::filter::Scope::Scoped { sessions, groups } => {
                !groups.is_empty() && sessions.len() + groups.len() > 1
            }
        };
        Self {
            id,
            filter,
            multi_path,
            entries: AtomicUsize::new(entries),
            registered: AtomicBool::new(true),
            sink,
        }
    }

    fn release_entry(&self, subscribers: &AtomicUsize) -> bool {
        if self.entries.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.sink.close();
            count_out(self, subscribers);
            true
        } else {
            false
        }
    }
}

impl QueueSink {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                missed: 0,
                closed: false,
                waker: None,
            }),
        }
    }

    /// Queues `event`, dropping the oldest queued one if the queue is full. Never waits beyond
    /// the queue's own short lock. The waker it returns must be woken by the caller once it has
    /// released its own locks.
    #[inline]
    pub(crate) fn push(&self, event: &Arc<SessionEvent>) -> Pushed {
        let mut queue = self.queue.lock();
        if queue.closed {
            return Pushed::Closed;
        }
        let evicted = if queue.items.len() >= self.capacity {
            queue.missed += 1;
            queue.items.pop_front()
        } else {
            None
        };
        queue.items.push_back(Arc::clone(event));
        let wake = queue.waker.take();
        drop(queue);
        // The evicted event is released outside the queue lock (it may be its last reference).
        let dropped = evicted.is_some();
        drop(evicted);
        Pushed::Queued { dropped, wake }
    }
}

impl Sink for QueueSink {
    /// Closes the queue: the subscriber receives what is queued, then [`RecvError::Closed`].
    fn close(&self) {
        let mut queue = self.queue.lock();
        queue.closed = true;
        let wake = queue.waker.take();
        drop(queue);
        if let Some(waker) = wake {
            waker.wake();
        }
    }
}

impl Queue {
    fn take(&mut self) -> Option<Result<Arc<SessionEvent>, RecvError>> {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            return Some(Err(RecvError::Lagged(missed)));
        }
        self.items.pop_front().map(Ok)
    }
}

/// Wakes a thread parked in a blocking receive.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The receiving end of one subscription: a bounded queue of the events its [`Filter`] selects.
///
/// Receive with [`recv`](Self::recv) in async code, [`blocking_recv`](Self::blocking_recv) or
/// [`recv_timeout`](Self::recv_timeout) on a plain thread, or poll with
/// [`try_recv`](Self::try_recv). Events of one session arrive in the order they were published;
/// when the subscriber falls behind it is told exactly how many events it missed (see
/// [`RecvError::Lagged`]).
///
/// Dropping the subscription unsubscribes it: the bus forgets it at once (also when the task
/// holding it is aborted), and [`crate::EventBus::subscriber_count`] goes down by one.
pub struct Subscription {
    pub(crate) slot: Arc<Slot<QueueSink>>,
    pub(crate) bus: Arc<Inner>,
    /// The waker of the last thread that blocked on this subscription, reused while the same
    /// thread keeps blocking.
    thread_waker: Option<(ThreadId, Waker)>,
}

impl Subscription {
    pub(crate) fn new(slot: Arc<Slot<QueueSink>>, bus: Arc<Inner>) -> Self {
        Self {
            slot,
            bus,
            thread_waker: None,
        }
    }

    /// Waits for the next event.
    ///
    /// Returns `Err(RecvError::Lagged(n))` once at the position where `n` events were dropped
    /// for this subscriber, and `Err(RecvError::Closed)` once everything queued has been
    /// received and no more events can come.
    ///
    /// Cancel safe: if the future is dropped before it completes, no event is lost.
    pub async fn recv(&mut self) -> Result<Arc<SessionEvent>, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event, registering `cx`'s waker when there is none (the building block
    /// of [`recv`](Self::recv), e.g. for a `Stream` adapter).
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<SessionEvent>, RecvError>> {
        let mut queue = self.slot.sink.queue.lock();
        if let Some(result) = queue.take() {
            return Poll::Ready(result);
        }
        if queue.closed {
            return Poll::Ready(Err(RecvError::Closed));
        }
        match &queue.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => queue.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Returns the next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<SessionEvent>, TryRecvError> {
        let mut queue = self.slot.sink.queue.lock();
        match queue.take() {
            Some(result) => result.map_err(TryRecvError::from),
            None if queue.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Blocks the current thread until the next event (same results as [`recv`](Self::recv)).
    ///
    /// For plain threads, such as a media thread. Calling it on an async runtime's worker thread
    /// stalls that worker; use [`recv`](Self::recv) there.
    pub fn blocking_recv(&mut self) -> Result<Arc<SessionEvent>, RecvError> {
        self.blocking_until(None).map_err(|err| match err {
            RecvTimeoutError::Lagged(n) => RecvError::Lagged(n),
            // Without a deadline the only other outcome is `Closed`.
            RecvTimeoutError::Closed | RecvTimeoutError::Timeout => RecvError::Closed,
        })
    }

    /// Blocks the current thread until the next event or until `timeout` has passed.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Arc<SessionEvent>, RecvTimeoutError> {
        // A timeout too large to add to now is as good as none.
        self.blocking_until(Instant::now().checked_add(timeout))
    }

    /// How many events are queued.
    pub fn len(&self) -> usize {
        self.slot.sink.queue.lock().items.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many events the queue holds before the oldest are dropped.
    pub fn capacity(&self) -> usize {
        self.slot.sink.capacity
    }

    /// Whether the subscription is closed (events still queued can be received).
    pub fn is_closed(&self) -> bool {
        self.slot.sink.queue.lock().closed
    }

    /// The filter this subscription was made with.
    pub fn filter(&self) -> &Filter {
        &self.slot.filter
    }

    fn blocking_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Arc<SessionEvent>, RecvTimeoutError> {
        let me = thread::current();
        let waker = match &self.thread_waker {
            Some((id, waker)) if *id == me.id() => waker.clone(),
            _ => {
                let waker = Waker::from(Arc::new(ThreadWaker(me.clone())));
                self.thread_waker = Some((me.id(), waker.clone()));
                waker
            }
        };
        loop {
            {
                let mut queue = self.slot.sink.queue.lock();
                if let Some(result) = queue.take() {
                    return result.map_err(RecvTimeoutError::from);
                }
                if queue.closed {
                    return Err(RecvTimeoutError::Closed);
                }
                queue.waker = Some(waker.clone());
            }
            // `park` may return spuriously; the loop checks the queue again either way.
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let mut queue = self.slot.sink.queue.lock();
                        if queue.waker.as_ref().is_some_and(|w| w.will_wake(&waker)) {
                            queue.waker = None;
                        }
                        return Err(RecvTimeoutError::Timeout);
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.unregister(&self.slot);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.slot.filter)
            .field("capacity", &self.slot.sink.capacity)
            .field("queued", &self.len())
            .finish()
    }
}

/// Counts a slot out of the bus's subscriber count, once; whether this call did.
pub(crate) fn count_out<S>(slot: &Slot<S>, subscribers: &AtomicUsize) -> bool {
    if slot.registered.swap(false, Ordering::AcqRel) {
        subscribers.fetch_sub(1, Ordering::AcqRel);
        true
    } else {
        false
    }
}
