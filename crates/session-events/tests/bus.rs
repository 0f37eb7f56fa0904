//! Behaviour of the bus as a user sees it: filters under concurrent publishers, lag reporting,
//! groups, blocking and async receivers, and every subscription counted back to zero.
//!
//! No test sleeps to wait for something: waits are bounded by `tokio::time::timeout` or
//! `recv_timeout`, so a broken bus fails the test instead of hanging it.

// The helpers below are test code too: a failed expectation should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use session_events::{
    EventBus, EventKind, Filter, Payload, RecvError, RecvTimeoutError, SessionEvent, Subscription,
    TerminationReason, TryRecvError,
};
use session_types::{CallId, CallState, Direction, GroupId, SessionId};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A custom event of `session` carrying a sequence number.
fn numbered(session: SessionId, seq: u64) -> SessionEvent {
    SessionEvent::custom(Some(session), "seq", Payload::new(seq))
}

fn seq_of(event: &SessionEvent) -> u64 {
    match event {
        SessionEvent::Custom { payload, .. } => *payload.downcast_ref::<u64>().unwrap(),
        other => panic!("not a numbered event: {other:?}"),
    }
}

fn state(session: SessionId, old: CallState, new: CallState) -> SessionEvent {
    SessionEvent::StateChanged {
        session_id: session,
        call_id: CallId::from("call@test"),
        old,
        new,
    }
}

fn dtmf(session: SessionId, digit: char) -> SessionEvent {
    SessionEvent::DtmfReceived {
        session_id: session,
        digit,
        duration: Duration::from_millis(100),
    }
}

/// Everything queued right now, as sequence numbers; panics on a lag or close.
fn drain_seqs(sub: &mut Subscription) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(event) => seqs.push(seq_of(&event)),
            Err(TryRecvError::Empty) => return seqs,
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
}

#[test]
fn concurrent_publishers_each_session_subscriber_gets_exactly_its_own_events_in_order() {
    const THREADS: usize = 4;
    const SESSIONS_PER_THREAD: usize = 100;
    const EVENTS_PER_SESSION: u64 = 40;
    let bus = EventBus::builder().capacity(1024).build().unwrap();
    let sessions: Vec<Vec<SessionId>> = (0..THREADS)
        .map(|_| (0..SESSIONS_PER_THREAD).map(|_| SessionId::new()).collect())
        .collect();
    let mut subs: Vec<(SessionId, Subscription)> = sessions
        .iter()
        .flatten()
        .map(|id| (*id, bus.subscribe(Filter::session(*id))))
        .collect();
    // An unscoped subscriber, consumed concurrently on its own thread.
    let total = (THREADS * SESSIONS_PER_THREAD) as u64 * EVENTS_PER_SESSION;
    let mut all = bus
        .subscribe_with_capacity(Filter::all(), total as usize)
        .unwrap();
    let consumer = thread::spawn(move || {
        let mut last: std::collections::HashMap<SessionId, u64> = Default::default();
        for _ in 0..total {
            let event = all.recv_timeout(WAIT).unwrap();
            let session = event.session_id().unwrap();
            let seq = seq_of(&event);
            let expected = last.get(&session).map_or(0, |s| s + 1);
            assert_eq!(seq, expected, "out of order for {session}");
            last.insert(session, seq);
        }
        assert_eq!(all.try_recv().unwrap_err(), TryRecvError::Empty);
        last.len()
    });

    let start = Arc::new(Barrier::new(THREADS));
    let publishers: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|mine| {
            let bus = bus.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                // Round-robin over this thread's sessions, so their events interleave.
                for seq in 0..EVENTS_PER_SESSION {
                    for session in &mine {
                        assert_eq!(bus.publish(numbered(*session, seq)), 2);
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), THREADS * SESSIONS_PER_THREAD);

    for (session, sub) in &mut subs {
        let mut seqs = Vec::new();
        while let Ok(event) = sub.try_recv() {
            assert_eq!(event.session_id(), Some(*session));
            seqs.push(seq_of(&event));
        }
        assert_eq!(seqs, (0..EVENTS_PER_SESSION).collect::<Vec<_>>());
    }
    let stats = bus.stats();
    assert_eq!(stats.published, total);
    assert_eq!(stats.delivered, 2 * total);
    assert_eq!(stats.lagged, 0);
    drop(subs);
    assert_eq!(bus.subscriber_count(), 0);
}

#[test]
fn concurrent_publishers_of_one_session_are_seen_in_one_order_by_everyone() {
    let bus = EventBus::builder().capacity(4096).build().unwrap();
    let session = SessionId::new();
    let mut scoped = bus.subscribe(Filter::session(session));
    let mut unscoped = bus.subscribe(Filter::all());
    let group = GroupId::next();
    bus.join_group(session, group);
    let mut grouped = bus.subscribe(Filter::group(group));
    let publishers: Vec<_> = (0..2u64)
        .map(|t| {
            let bus = bus.clone();
            thread::spawn(move || {
                for i in 0..1000 {
                    bus.publish(numbered(session, t * 1_000_000 + i));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let order = drain_seqs(&mut scoped);
    assert_eq!(order.len(), 2000);
    assert_eq!(drain_seqs(&mut unscoped), order);
    assert_eq!(drain_seqs(&mut grouped), order);
    // Each publisher's own events stay in its order.
    for t in 0..2u64 {
        let mine: Vec<u64> = order
            .iter()
            .copied()
            .filter(|s| s / 1_000_000 == t)
            .collect();
        assert_eq!(
            mine,
            (0..1000).map(|i| t * 1_000_000 + i).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_lagging_subscriber_is_told_exactly_how_many_it_missed() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut slow = bus
        .subscribe_with_capacity(Filter::session(session), 4)
        .unwrap();
    let mut fast = bus
        .subscribe_with_capacity(Filter::session(session), 64)
        .unwrap();
    for seq in 0..10 {
        // The publisher is never held up by the full queue.
        assert_eq!(bus.publish(numbered(session, seq)), 2);
    }
    assert_eq!(slow.len(), 4);
    assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Lagged(6));
    assert_eq!(drain_seqs(&mut slow), vec![6, 7, 8, 9]);
    assert_eq!(drain_seqs(&mut fast), (0..10).collect::<Vec<_>>());

    // A second gap, reported at its position: 10 received, 11..=13 dropped, then 14..=17.
    bus.publish(numbered(session, 10));
    assert_eq!(seq_of(&slow.try_recv().unwrap()), 10);
    for seq in 11..18 {
        bus.publish(numbered(session, seq));
    }
    assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Lagged(3));
    assert_eq!(drain_seqs(&mut slow), vec![14, 15, 16, 17]);
    assert_eq!(bus.stats().lagged, 9);

    // The same through the blocking receiver.
    for seq in 18..24 {
        bus.publish(numbered(session, seq));
    }
    assert_eq!(slow.blocking_recv().unwrap_err(), RecvError::Lagged(2));
    assert_eq!(seq_of(&slow.blocking_recv().unwrap()), 20);
}

#[tokio::test]
async fn a_lagging_async_subscriber_is_told_then_continues() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut slow = bus
        .subscribe_with_capacity(Filter::session(session), 2)
        .unwrap();
    for seq in 0..5 {
        bus.publish(numbered(session, seq));
    }
    async fn recv(sub: &mut Subscription) -> Result<Arc<SessionEvent>, RecvError> {
        tokio::time::timeout(WAIT, sub.recv()).await.unwrap()
    }
    assert_eq!(recv(&mut slow).await.unwrap_err(), RecvError::Lagged(3));
    assert_eq!(seq_of(&recv(&mut slow).await.unwrap()), 3);
    assert_eq!(seq_of(&recv(&mut slow).await.unwrap()), 4);
    assert!(slow.is_empty());
}

#[test]
fn group_fan_out_follows_membership() {
    let bus = EventBus::new();
    let conference = GroupId::next();
    let queue = GroupId::next();
    let [a, b, c, outsider] = [(); 4].map(|_| SessionId::new());
    let mut room = bus.subscribe(Filter::group(conference));
    let mut either = bus.subscribe(Filter::groups([conference, queue]));
    for member in [a, b, c] {
        assert!(bus.join_group(member, conference));
    }
    bus.join_group(c, queue);

    for (seq, session) in [a, b, c, outsider].into_iter().enumerate() {
        bus.publish(numbered(session, seq as u64));
    }
    assert_eq!(drain_seqs(&mut room), vec![0, 1, 2]);
    // `c` is in both groups, and is delivered once.
    assert_eq!(drain_seqs(&mut either), vec![0, 1, 2]);

    // Membership is looked up at publish time.
    bus.leave_group(b, conference);
    bus.join_group(outsider, conference);
    for (seq, session) in [a, b, c, outsider].into_iter().enumerate() {
        bus.publish(numbered(session, 10 + seq as u64));
    }
    assert_eq!(drain_seqs(&mut room), vec![10, 12, 13]);
    assert_eq!(drain_seqs(&mut either), vec![10, 12, 13]);
    let mut groups = bus.groups_of(c);
    groups.sort();
    assert_eq!(groups, vec![conference, queue]);

    // Forgetting a session clears its memberships.
    bus.forget_session(c);
    assert!(bus.groups_of(c).is_empty());
    assert_eq!(bus.publish(numbered(c, 99)), 0);
}

#[test]
fn kind_and_predicate_filters_combine_with_scopes() {
    let bus = EventBus::new();
    let a = SessionId::new();
    let b = SessionId::new();
    let mut a_states = bus.subscribe(
        Filter::session(a).with_kinds([EventKind::StateChanged, EventKind::SessionTerminated]),
    );
    let mut all_dtmf = bus.subscribe(Filter::kind(EventKind::DtmfReceived));
    let mut hash_keys = bus.subscribe(Filter::predicate(|e| {
        matches!(e, SessionEvent::DtmfReceived { digit: '#', .. })
    }));
    let mut b_active = bus.subscribe(
        Filter::session(b)
            .with_kind(EventKind::StateChanged)
            .with_predicate(|e| {
                matches!(
                    e,
                    SessionEvent::StateChanged {
                        new: CallState::Active,
                        ..
                    }
                )
            }),
    );

    bus.publish(SessionEvent::SessionCreated {
        session_id: a,
        direction: Direction::Outbound,
        call_id: CallId::from("call@test"),
        from: "sip:alice@example.com".into(),
        to: "sip:bob@example.com".into(),
    });
    bus.publish(state(a, CallState::Initiating, CallState::Ringing));
    bus.publish(state(b, CallState::Initiating, CallState::Ringing));
    bus.publish(dtmf(a, '1'));
    bus.publish(dtmf(b, '#'));
    bus.publish(state(b, CallState::Ringing, CallState::Active));
    bus.publish(SessionEvent::SessionTerminated {
        session_id: a,
        reason: TerminationReason::RemoteHangup,
        summary: Default::default(),
    });

    let kinds = |sub: &mut Subscription| {
        let mut out = Vec::new();
        while let Ok(event) = sub.try_recv() {
            out.push((event.session_id(), event.kind()));
        }
        out
    };
    assert_eq!(
        kinds(&mut a_states),
        vec![
            (Some(a), EventKind::StateChanged),
            (Some(a), EventKind::SessionTerminated)
        ]
    );
    assert_eq!(
        kinds(&mut all_dtmf),
        vec![
            (Some(a), EventKind::DtmfReceived),
            (Some(b), EventKind::DtmfReceived)
        ]
    );
    assert_eq!(
        kinds(&mut hash_keys),
        vec![(Some(b), EventKind::DtmfReceived)]
    );
    assert_eq!(
        kinds(&mut b_active),
        vec![(Some(b), EventKind::StateChanged)]
    );
}

#[test]
fn a_blocking_receiver_wakes_for_an_event_from_another_thread() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut sub = bus.subscribe(Filter::session(session));
    let ready = Arc::new(Barrier::new(2));
    let receiver = {
        let ready = Arc::clone(&ready);
        thread::spawn(move || {
            ready.wait();
            let first = sub.blocking_recv().unwrap();
            let second = sub.recv_timeout(WAIT).unwrap();
            (seq_of(&first), seq_of(&second), sub)
        })
    };
    ready.wait();
    bus.publish(numbered(session, 1));
    bus.publish(numbered(session, 2));
    let (first, second, mut sub) = receiver.join().unwrap();
    assert_eq!((first, second), (1, 2));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(20)).unwrap_err(),
        RecvTimeoutError::Timeout
    );

    // Closing the bus wakes a blocked receiver with `Closed`.
    let receiver = thread::spawn(move || sub.blocking_recv());
    drop(bus);
    assert_eq!(receiver.join().unwrap().unwrap_err(), RecvError::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_receivers_wake_for_events_published_from_threads() {
    let bus = EventBus::new();
    let sessions: Vec<SessionId> = (0..50).map(|_| SessionId::new()).collect();
    let tasks: Vec<_> = sessions
        .iter()
        .map(|session| {
            let mut sub = bus.subscribe(Filter::session(*session));
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..10 {
                    seqs.push(seq_of(&sub.recv().await.unwrap()));
                }
                seqs
            })
        })
        .collect();
    let publisher = {
        let bus = bus.clone();
        let sessions = sessions.clone();
        thread::spawn(move || {
            for seq in 0..10 {
                for session in &sessions {
                    assert_eq!(bus.publish(numbered(*session, seq)), 1);
                }
            }
        })
    };
    for task in tasks {
        let seqs = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    }
    publisher.join().unwrap();
    // Every task has finished and dropped its subscription.
    assert_eq!(bus.subscriber_count(), 0);
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut sub = bus.subscribe(Filter::session(session));
    // A recv abandoned while pending loses nothing.
    let abandoned = tokio::time::timeout(Duration::from_millis(10), sub.recv()).await;
    assert!(abandoned.is_err());
    bus.publish(numbered(session, 5));
    let event = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seq_of(&event), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_aborted_subscriptions_count_back_to_zero() {
    let bus = EventBus::new();
    let group = GroupId::next();
    let sessions: Vec<SessionId> = (0..1000).map(|_| SessionId::new()).collect();
    for session in &sessions[..10] {
        bus.join_group(*session, group);
    }
    let mut subs: Vec<Subscription> = sessions
        .iter()
        .map(|s| bus.subscribe(Filter::session(*s)))
        .collect();
    subs.push(bus.subscribe(Filter::group(group)));
    subs.push(bus.subscribe(Filter::group(group).or_session(sessions[500])));
    subs.push(bus.subscribe(Filter::all()));
    subs.push(bus.subscribe(Filter::kind(EventKind::Custom)));
    assert_eq!(bus.subscriber_count(), 1004);

    // Subscriptions held by tasks that are parked in `recv` and then aborted.
    let mut tasks = Vec::new();
    for session in &sessions[..20] {
        let mut sub = bus.subscribe(Filter::session(*session).or_group(group));
        tasks.push(tokio::spawn(async move { sub.recv().await.map(|_| ()) }));
    }
    assert_eq!(bus.subscriber_count(), 1024);
    tokio::task::yield_now().await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let joined = tokio::time::timeout(WAIT, task).await.unwrap();
        assert!(joined.unwrap_err().is_cancelled());
    }
    assert_eq!(bus.subscriber_count(), 1004);

    drop(subs);
    assert_eq!(bus.subscriber_count(), 0);
    // The memberships remain until the sessions are forgotten; then nothing is indexed.
    assert_eq!(bus.stats().indexed_sessions, 10);
    for session in &sessions[..10] {
        bus.forget_session(*session);
    }
    let stats = bus.stats();
    assert_eq!(
        (
            stats.subscribers,
            stats.unscoped_subscribers,
            stats.indexed_sessions,
            stats.indexed_groups
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn forgetting_a_session_ends_its_subscriptions() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut sub = bus.subscribe(Filter::session(session));
    bus.publish(SessionEvent::SessionTerminated {
        session_id: session,
        reason: TerminationReason::LocalHangup,
        summary: Default::default(),
    });
    assert_eq!(bus.forget_session(session), 1);
    assert_eq!(bus.subscriber_count(), 0);
    assert_eq!(
        sub.blocking_recv().unwrap().kind(),
        EventKind::SessionTerminated
    );
    assert_eq!(sub.blocking_recv().unwrap_err(), RecvError::Closed);
}

#[test]
fn publishing_for_a_session_without_subscribers_touches_nobody() {
    let bus = EventBus::new();
    let sessions: Vec<SessionId> = (0..1000).map(|_| SessionId::new()).collect();
    let mut subs: Vec<Subscription> = sessions
        .iter()
        .map(|s| bus.subscribe(Filter::session(*s)))
        .collect();
    let before = bus.stats();
    assert_eq!(bus.publish(numbered(SessionId::new(), 0)), 0);
    let after = bus.stats();
    assert_eq!(after.published, before.published + 1);
    assert_eq!(
        after.examined, before.examined,
        "a subscription was examined"
    );
    assert!(subs.iter().all(Subscription::is_empty));

    // One session's event looks at that session's subscription only.
    assert_eq!(bus.publish(numbered(sessions[123], 1)), 1);
    assert_eq!(bus.stats().examined, after.examined + 1);
    for (i, sub) in subs.iter_mut().enumerate() {
        assert_eq!(sub.len(), usize::from(i == 123));
    }

    // An unscoped subscriber is looked at on every publish, and only it.
    let _all = bus.subscribe(Filter::kind(EventKind::MediaStopped));
    let before = bus.stats();
    assert_eq!(bus.publish(numbered(SessionId::new(), 2)), 0);
    assert_eq!(bus.stats().examined, before.examined + 1);
}

#[test]
fn churn_of_subscriptions_memberships_and_publishes_leaves_nothing_behind() {
    let bus = EventBus::builder().shards(4).capacity(8).build().unwrap();
    let sessions: Arc<Vec<SessionId>> = Arc::new((0..64).map(|_| SessionId::new()).collect());
    let groups = [GroupId::next(), GroupId::next()];
    let workers: Vec<_> = (0..4usize)
        .map(|worker| {
            let bus = bus.clone();
            let sessions = Arc::clone(&sessions);
            thread::spawn(move || {
                let mut rng = xorshift(worker as u64 + 1);
                for round in 0..3000usize {
                    let session = sessions[rng() as usize % sessions.len()];
                    let group = groups[rng() as usize % 2];
                    match (worker + round) % 4 {
                        0 => {
                            let filter = match rng() % 4 {
                                0 => Filter::session(session),
                                1 => Filter::group(group).or_session(session),
                                2 => Filter::groups(groups),
                                _ => Filter::kind(EventKind::Custom),
                            };
                            let mut sub = bus.subscribe(filter);
                            bus.publish(numbered(session, round as u64));
                            while sub.try_recv().is_ok() {}
                        }
                        1 => {
                            bus.join_group(session, group);
                        }
                        2 => {
                            bus.leave_group(session, group);
                        }
                        _ => {
                            bus.publish(numbered(session, round as u64));
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(bus.subscriber_count(), 0);
    for session in sessions.iter() {
        bus.forget_session(*session);
    }
    let stats = bus.stats();
    assert_eq!(
        (
            stats.indexed_sessions,
            stats.indexed_groups,
            stats.unscoped_subscribers
        ),
        (0, 0, 0)
    );
}

/// A tiny xorshift generator, so the churn test needs no extra dependency.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
