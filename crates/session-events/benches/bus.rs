//! The bus against `tokio::sync::broadcast`, the usual alternative.
//!
//! - `one_subscriber`: publish one event and receive it, one subscriber (also through a
//!   `ChannelSubscription`, the crossbeam-channel receiver).
//! - `per_session_1000`: 1,000 subscribers each on its own session; publish one event (for one
//!   session, rotating) and receive it at its one matching subscriber. With broadcast every
//!   receiver receives every event and filters on its session, as a broadcast-based bus has to.
//!
//! Events are built once and shared (`Arc`), as publishers do, so both sides pay only for
//! delivery. Receives use `try_recv` so no runtime or task switch is measured.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_events::{EventBus, Filter, SessionEvent};
use session_types::SessionId;
use std::hint::black_box;
use std::sync::Arc;
use tokio::sync::broadcast;

fn event(session: SessionId) -> Arc<SessionEvent> {
    Arc::new(SessionEvent::MediaStopped {
        session_id: session,
    })
}

fn one_subscriber(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_subscriber");
    group.throughput(Throughput::Elements(1));
    let session = SessionId::new();
    let ev = event(session);

    {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(Filter::session(session));
        group.bench_function("session-events", |b| {
            b.iter(|| {
                bus.publish(Arc::clone(&ev));
                black_box(sub.try_recv().unwrap());
            });
        });
    }
    {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(Filter::all());
        group.bench_function("session-events (unscoped)", |b| {
            b.iter(|| {
                bus.publish(Arc::clone(&ev));
                black_box(sub.try_recv().unwrap());
            });
        });
    }
    {
        let bus = EventBus::new();
        let sub = bus
            .subscribe_channel(Filter::session(session), 256)
            .unwrap();
        group.bench_function("session-events (channel)", |b| {
            b.iter(|| {
                bus.publish(Arc::clone(&ev));
                black_box(sub.receiver().try_recv().unwrap());
            });
        });
    }
    {
        let (tx, mut rx) = broadcast::channel::<Arc<SessionEvent>>(256);
        group.bench_function("tokio-broadcast", |b| {
            b.iter(|| {
                tx.send(Arc::clone(&ev)).unwrap();
                black_box(rx.try_recv().unwrap());
            });
        });
    }
    group.finish();
}

fn per_session_1000(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1_000;
    let mut group = c.benchmark_group("per_session_1000");
    group.throughput(Throughput::Elements(1));
    let sessions: Vec<SessionId> = (0..SUBSCRIBERS).map(|_| SessionId::new()).collect();
    let events: Vec<Arc<SessionEvent>> = sessions.iter().map(|s| event(*s)).collect();

    {
        let bus = EventBus::new();
        let mut subs: Vec<_> = sessions
            .iter()
            .map(|s| bus.subscribe(Filter::session(*s)))
            .collect();
        let mut next = 0;
        group.bench_function("session-events", |b| {
            b.iter(|| {
                next = (next + 1) % SUBSCRIBERS;
                bus.publish(Arc::clone(&events[next]));
                black_box(subs[next].try_recv().unwrap());
            });
        });
    }
    {
        let (tx, _) = broadcast::channel::<Arc<SessionEvent>>(256);
        let mut receivers: Vec<(SessionId, broadcast::Receiver<_>)> =
            sessions.iter().map(|s| (*s, tx.subscribe())).collect();
        let mut next = 0;
        group.bench_function("tokio-broadcast (filter on receive)", |b| {
            b.iter(|| {
                next = (next + 1) % SUBSCRIBERS;
                tx.send(Arc::clone(&events[next])).unwrap();
                let mut matched = 0;
                for (session, rx) in &mut receivers {
                    let event = rx.try_recv().unwrap();
                    if event.session_id() == Some(*session) {
                        matched += 1;
                    }
                }
                assert_eq!(black_box(matched), 1);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, one_subscriber, per_session_1000);
criterion_main!(benches);
