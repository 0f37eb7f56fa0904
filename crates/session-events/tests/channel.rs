//! [`ChannelSubscription`]: the crossbeam-channel receiver of the bus. Exact lag counts,
//! `select!` next to other channels, filtering, order under concurrent publishers, closing, and
//! every subscription counted back to zero.
//!
//! No test sleeps to wait for something: waits are bounded (`recv_timeout`, `select!` with a
//! `default(WAIT)` arm), so a broken bus fails the test instead of hanging it.

// The helpers below are test code too: a failed expectation should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use session_events::crossbeam_channel::{self, RecvTimeoutError as ChannelTimeout, select};
use session_events::{
    ChannelSubscription, Delivery, Error, EventBus, EventKind, Filter, Payload, RecvError,
    RecvTimeoutError, SessionEvent, TerminationReason, TryRecvError,
};
use session_types::{GroupId, SessionId};
use std::collections::HashMap;
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

/// Every item in the channel right now, as (missed_before, seq).
fn drain_items(sub: &ChannelSubscription) -> Vec<(u64, u64)> {
    sub.receiver()
        .try_iter()
        .map(|item| (item.missed_before, seq_of(&item.event)))
        .collect()
}

#[test]
fn a_full_channel_drops_the_newest_events_and_counts_them_exactly() {
    const CAPACITY: u64 = 4;
    let bus = EventBus::new();
    let session = SessionId::new();
    let sub = bus
        .subscribe_channel(Filter::session(session), CAPACITY as usize)
        .unwrap();
    assert_eq!(sub.capacity(), 4);
    let mut reference = bus
        .subscribe_with_capacity(Filter::session(session), 1024)
        .unwrap();

    // Fill the channel, then publish k = 5 more: all five are dropped for `sub` only, and the
    // publisher is never held up.
    for seq in 0..CAPACITY {
        assert_eq!(bus.publish(numbered(session, seq)), 2);
    }
    for seq in CAPACITY..CAPACITY + 5 {
        assert_eq!(bus.publish(numbered(session, seq)), 1);
    }
    assert_eq!(sub.len(), 4);
    assert_eq!(bus.stats().lagged, 5);
    // The items in the channel were sent before the drops: none carries them.
    assert_eq!(drain_items(&sub), vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
    // The gap at the end, taken once.
    assert_eq!(sub.take_missed(), 5);
    assert_eq!(sub.take_missed(), 0);

    // A gap in the middle travels with the first item after it: fill (9..13), drop 3 (13..16),
    // make room for two, then 16 and 17 get through, the first carrying the 3.
    for seq in 9..16 {
        bus.publish(numbered(session, seq));
    }
    assert_eq!(
        sub.receiver().try_recv().map(|d| seq_of(&d.event)).unwrap(),
        9
    );
    assert_eq!(
        sub.receiver().try_recv().map(|d| seq_of(&d.event)).unwrap(),
        10
    );
    bus.publish(numbered(session, 16));
    bus.publish(numbered(session, 17));
    // 18 is dropped again, after the last item: that one is for take_missed.
    bus.publish(numbered(session, 18));
    assert_eq!(drain_items(&sub), vec![(0, 11), (0, 12), (3, 16), (0, 17)]);
    assert_eq!(sub.take_missed(), 1);

    // Every event is accounted for: received + missed = published.
    let stats = bus.stats();
    assert_eq!(stats.published, 19);
    assert_eq!(stats.lagged, 5 + 3 + 1);
    // Delivered: 19 to `reference`, and 10 into the channel.
    assert_eq!(stats.delivered, 19 + 10);
    assert_eq!(reference.len(), 19);
    assert!(reference.try_recv().is_ok());
}

#[test]
fn convenience_receives_report_each_gap_before_the_event_after_it() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let mut sub = bus.subscribe_channel(Filter::session(session), 2).unwrap();
    for seq in 0..6 {
        bus.publish(numbered(session, seq));
    }
    // 0 and 1 in the channel, 2..=5 dropped at the end.
    assert_eq!(seq_of(&sub.recv().unwrap()), 0);
    assert_eq!(seq_of(&sub.try_recv().unwrap()), 1);
    assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Lagged(4));
    assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)).unwrap_err(),
        RecvTimeoutError::Timeout
    );

    // A gap in the middle: 6, 7 in; 8 dropped; make room; 9 carries it.
    for seq in 6..9 {
        bus.publish(numbered(session, seq));
    }
    assert_eq!(seq_of(&sub.recv().unwrap()), 6);
    bus.publish(numbered(session, 9));
    assert_eq!(seq_of(&sub.recv_timeout(WAIT).unwrap()), 7);
    assert_eq!(
        sub.recv_timeout(WAIT).unwrap_err(),
        RecvTimeoutError::Lagged(1)
    );
    assert_eq!(seq_of(&sub.recv_timeout(WAIT).unwrap()), 9);

    // The blocking recv reports a gap at the end of an empty channel instead of waiting.
    for seq in 10..13 {
        bus.publish(numbered(session, seq));
    }
    assert_eq!(seq_of(&sub.recv().unwrap()), 10);
    assert_eq!(seq_of(&sub.recv().unwrap()), 11);
    assert_eq!(sub.recv().unwrap_err(), RecvError::Lagged(1));

    // Lag errors convert into the crate's error for `?`; a blocking recv does not wait past a
    // gap at the end.
    bus.publish(numbered(session, 13));
    bus.publish(numbered(session, 14));
    bus.publish(numbered(session, 15));
    let mut received = Vec::new();
    let result = (|| -> session_events::Result<()> {
        loop {
            let event = sub.recv()?;
            received.push(seq_of(&event));
        }
    })();
    assert_eq!(received, vec![13, 14]);
    assert_eq!(result.unwrap_err(), Error::Recv(RecvError::Lagged(1)));
}

#[test]
fn concurrent_publishers_and_a_concurrent_consumer_lose_no_count() {
    const THREADS: u64 = 4;
    const EVENTS_PER_THREAD: u64 = 5_000;
    let bus = EventBus::new();
    let sessions: Vec<SessionId> = (0..THREADS).map(|_| SessionId::new()).collect();
    // Unscoped and small: publishers of different sessions race into the same channel.
    let all = bus.subscribe_channel(Filter::all(), 8).unwrap();
    // Scoped to two of the sessions: only their events may arrive.
    let pair = bus
        .subscribe_channel(Filter::sessions([sessions[0], sessions[1]]), 3)
        .unwrap();

    let consume = |sub: ChannelSubscription| {
        thread::spawn(move || {
            let mut received = 0u64;
            let mut missed = 0u64;
            let mut last: HashMap<SessionId, u64> = HashMap::new();
            // Raw items until the bus is dropped and the channel disconnects.
            loop {
                match sub.receiver().recv_timeout(WAIT) {
                    Ok(Delivery {
                        missed_before,
                        event,
                    }) => {
                        received += 1;
                        missed += missed_before;
                        let session = event.session_id().unwrap();
                        let seq = seq_of(&event);
                        // Per-session order: what gets through keeps its publish order.
                        if let Some(prev) = last.insert(session, seq) {
                            assert!(seq > prev, "{session}: {seq} after {prev}");
                        }
                    }
                    Err(ChannelTimeout::Disconnected) => break,
                    Err(ChannelTimeout::Timeout) => panic!("no close within {WAIT:?}"),
                }
            }
            missed += sub.take_missed();
            (received, missed, last.into_keys().collect::<Vec<_>>())
        })
    };
    let all_consumer = consume(all);
    let pair_consumer = consume(pair);

    let start = Arc::new(Barrier::new(THREADS as usize));
    let publishers: Vec<_> = sessions
        .iter()
        .map(|&session| {
            let bus = bus.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for seq in 0..EVENTS_PER_THREAD {
                    bus.publish(numbered(session, seq));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let stats = bus.stats();
    drop(bus);

    let (all_received, all_missed, all_sessions) = all_consumer.join().unwrap();
    let (pair_received, pair_missed, pair_sessions) = pair_consumer.join().unwrap();
    assert_eq!(all_received + all_missed, THREADS * EVENTS_PER_THREAD);
    assert_eq!(pair_received + pair_missed, 2 * EVENTS_PER_THREAD);
    assert!(
        pair_sessions
            .iter()
            .all(|s| *s == sessions[0] || *s == sessions[1])
    );
    assert!(all_sessions.len() <= THREADS as usize);
    // The bus's counters agree with what the receivers saw.
    assert_eq!(stats.delivered, all_received + pair_received);
    assert_eq!(stats.lagged, all_missed + pair_missed);
}

#[test]
fn select_waits_on_the_event_channel_next_to_another_channel() {
    let bus = EventBus::new();
    let call = SessionId::new();
    let events = bus
        .subscribe_channel(
            Filter::session(call).with_kinds([EventKind::Custom, EventKind::SessionTerminated]),
            64,
        )
        .unwrap();
    let (rtp_tx, rtp_rx) = crossbeam_channel::bounded::<u32>(64);

    // A media thread: packets on one channel, session events on the other, until the session
    // ends and the packet source hangs up.
    let media = thread::spawn(move || {
        let mut packets = Vec::new();
        let mut seqs = Vec::new();
        let mut terminated = false;
        let mut rtp = Some(rtp_rx);
        while !terminated || rtp.is_some() {
            let never = crossbeam_channel::never();
            select! {
                recv(events.receiver()) -> item => {
                    let item = item.expect("the bus outlives the media thread");
                    assert_eq!(item.missed_before, 0);
                    match &*item.event {
                        SessionEvent::SessionTerminated { .. } => terminated = true,
                        event => seqs.push(seq_of(event)),
                    }
                }
                recv(rtp.as_ref().unwrap_or(&never)) -> packet => match packet {
                    Ok(packet) => packets.push(packet),
                    Err(_) => rtp = None,
                },
                default(WAIT) => panic!("nothing arrived within {WAIT:?}"),
            }
        }
        (packets, seqs, events)
    });

    let other = SessionId::new();
    for n in 0..20u32 {
        rtp_tx.send(n).unwrap();
        bus.publish(numbered(call, u64::from(n)));
        // Neither another session's events nor other kinds reach the thread.
        bus.publish(numbered(other, 1000));
        bus.publish(SessionEvent::MediaStopped { session_id: call });
    }
    bus.publish(SessionEvent::SessionTerminated {
        session_id: call,
        reason: TerminationReason::RemoteHangup,
        summary: Default::default(),
    });
    drop(rtp_tx);

    let (packets, seqs, events) = media.join().unwrap();
    assert_eq!(packets, (0..20).collect::<Vec<_>>());
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    assert_eq!(events.take_missed(), 0);
    assert_eq!(bus.subscriber_count(), 1);
    drop(events);
    assert_eq!(bus.subscriber_count(), 0);
}

#[test]
fn channel_subscriptions_see_only_their_sessions_and_groups() {
    let bus = EventBus::new();
    let [a, b, c] = [(); 3].map(|_| SessionId::new());
    let room = GroupId::next();
    bus.join_group(b, room);
    bus.join_group(c, room);
    let only_a = bus.subscribe_channel(Filter::session(a), 64).unwrap();
    let members = bus.subscribe_channel(Filter::group(room), 64).unwrap();
    // Reachable through its session and its group: still delivered once.
    let b_twice = bus
        .subscribe_channel(Filter::session(b).or_group(room), 64)
        .unwrap();
    let digits = bus
        .subscribe_channel(Filter::kind(EventKind::DtmfReceived), 64)
        .unwrap();

    for seq in 0..5 {
        for session in [a, b, c] {
            bus.publish(numbered(session, seq));
        }
    }
    bus.publish(SessionEvent::DtmfReceived {
        session_id: c,
        digit: '#',
        duration: Duration::from_millis(80),
    });

    let sessions_of = |sub: &ChannelSubscription| -> Vec<SessionId> {
        sub.receiver()
            .try_iter()
            .map(|item| item.event.session_id().unwrap())
            .collect()
    };
    assert_eq!(sessions_of(&only_a), vec![a; 5]);
    let got = sessions_of(&members);
    assert_eq!(got.len(), 11);
    assert!(got.iter().all(|s| *s != a));
    let got = sessions_of(&b_twice);
    assert_eq!(got.len(), 11);
    assert_eq!(got.iter().filter(|s| **s == b).count(), 5);
    assert_eq!(sessions_of(&digits), vec![c]);

    // Events of a session nobody watches look at no subscription but the unscoped one.
    let before = bus.stats().examined;
    bus.publish(numbered(SessionId::new(), 0));
    assert_eq!(bus.stats().examined - before, 1);
}

#[test]
fn concurrent_publishers_of_one_session_are_seen_in_one_order_by_both_kinds() {
    let bus = EventBus::new();
    let session = SessionId::new();
    let channel = bus
        .subscribe_channel(Filter::session(session), 4096)
        .unwrap();
    let unscoped = bus.subscribe_channel(Filter::all(), 4096).unwrap();
    let mut queue = bus
        .subscribe_with_capacity(Filter::session(session), 4096)
        .unwrap();
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
    let order: Vec<u64> = drain_items(&channel)
        .into_iter()
        .map(|(m, s)| {
            assert_eq!(m, 0);
            s
        })
        .collect();
    assert_eq!(order.len(), 2000);
    let unscoped_order: Vec<u64> = drain_items(&unscoped).into_iter().map(|(_, s)| s).collect();
    assert_eq!(unscoped_order, order);
    let queued: Vec<u64> = std::iter::from_fn(|| queue.try_recv().ok())
        .map(|e| seq_of(&e))
        .collect();
    assert_eq!(queued, order);
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
fn dropped_channel_subscriptions_count_back_to_zero_and_disconnect() {
    let bus = EventBus::new();
    let [a, b] = [(); 2].map(|_| SessionId::new());
    let group = GroupId::next();
    bus.join_group(a, group);
    let subs = vec![
        bus.subscribe_channel(Filter::session(a), 8).unwrap(),
        bus.subscribe_channel(Filter::sessions([a, b]), 8).unwrap(),
        bus.subscribe_channel(Filter::group(group).or_session(b), 8)
            .unwrap(),
        bus.subscribe_channel(Filter::all(), 8).unwrap(),
    ];
    let queue = bus.subscribe(Filter::session(a));
    assert_eq!(bus.subscriber_count(), 5);
    assert_eq!(bus.publish(numbered(a, 0)), 5);

    // A receiver cloned out of a subscription disconnects once the subscription is dropped,
    // after the items already in the channel.
    let kept = subs[0].receiver().clone();
    drop(subs);
    assert_eq!(bus.subscriber_count(), 1);
    assert_eq!(seq_of(&kept.recv_timeout(WAIT).unwrap().event), 0);
    assert_eq!(
        kept.recv_timeout(WAIT).unwrap_err(),
        ChannelTimeout::Disconnected
    );
    assert_eq!(bus.publish(numbered(a, 1)), 1);
    assert_eq!(bus.publish(numbered(b, 1)), 0);

    drop(queue);
    bus.leave_group(a, group);
    assert_eq!(bus.subscriber_count(), 0);
    let stats = bus.stats();
    assert_eq!(
        (
            stats.indexed_sessions,
            stats.indexed_groups,
            stats.unscoped_subscribers
        ),
        (0, 0, 0)
    );
    assert!(matches!(
        bus.subscribe_channel(Filter::all(), 0),
        Err(Error::ZeroCapacity)
    ));
    assert_eq!(bus.subscriber_count(), 0);
}

#[test]
fn forgetting_the_session_or_dropping_the_bus_disconnects_the_channel() {
    let bus = EventBus::new();
    let [a, b] = [(); 2].map(|_| SessionId::new());
    let mut only_a = bus.subscribe_channel(Filter::session(a), 2).unwrap();
    let mut only_b = bus.subscribe_channel(Filter::session(b), 8).unwrap();
    let all = bus.subscribe_channel(Filter::all(), 8).unwrap();
    for seq in 0..3 {
        bus.publish(numbered(a, seq));
    }
    bus.publish(numbered(b, 0));

    // Forgetting `a` closes its subscription: the items, then the gap at the end, then Closed.
    assert_eq!(bus.forget_session(a), 1);
    assert!(only_a.is_closed());
    assert_eq!(bus.subscriber_count(), 2);
    assert_eq!(seq_of(&only_a.recv().unwrap()), 0);
    assert_eq!(seq_of(&only_a.recv().unwrap()), 1);
    assert_eq!(only_a.recv().unwrap_err(), RecvError::Lagged(1));
    assert_eq!(only_a.recv().unwrap_err(), RecvError::Closed);
    assert_eq!(only_a.try_recv().unwrap_err(), TryRecvError::Closed);
    assert_eq!(
        only_a.recv_timeout(WAIT).unwrap_err(),
        RecvTimeoutError::Closed
    );
    assert!(only_a.receiver().recv_timeout(WAIT).is_err());

    // Dropping the last bus handle closes the others after their items.
    let clone = bus.clone();
    drop(bus);
    assert!(!only_b.is_closed());
    drop(clone);
    assert!(only_b.is_closed());
    assert_eq!(seq_of(&only_b.recv().unwrap()), 0);
    assert_eq!(only_b.recv().unwrap_err(), RecvError::Closed);
    assert_eq!(drain_items(&all).len(), 4);
    assert_eq!(
        all.receiver().recv_timeout(WAIT).unwrap_err(),
        ChannelTimeout::Disconnected
    );
}
