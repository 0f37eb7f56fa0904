//! # 08 — basic events
//!
//! The event bus every layer of session-core publishes to, on its own:
//!
//! 1. publish and subscribe — events are shared (`Arc`), not copied per subscriber;
//! 2. filters — by session, by group, by kind, by predicate;
//! 3. lag — a slow subscriber is told exactly how many events it missed, and the publisher was
//!    never held up;
//! 4. cross-session coordination — a task waits for session A to become active, then acts for
//!    session B;
//! 5. a channel receiver — a media thread waits on session events and packets with one
//!    `crossbeam_channel::select!`; a full channel drops new events and counts them exactly;
//! 6. cleanup — every subscription is released and counted back to zero.
//!
//! Run: `cargo run -p examples2 --example 08_basic_events`. Exits non-zero if a check fails.

use examples2::{check, section};
use session_events::crossbeam_channel::{self, select};
use session_events::{
    EventBus, EventKind, Filter, Payload, RecvError, RecvTimeoutError, SessionEvent, Subscription,
    TerminationReason, TryRecvError,
};
use session_types::{CallId, CallState, Direction, GroupId, SessionId};
use std::sync::Arc;
use std::time::Duration;

/// Upper bound for any wait: nothing here should take more than a few milliseconds.
const WAIT: Duration = Duration::from_secs(5);

fn created(session: SessionId, from: &str, to: &str) -> SessionEvent {
    SessionEvent::SessionCreated {
        session_id: session,
        direction: Direction::Outbound,
        call_id: CallId::random(Some("example.com")),
        from: from.into(),
        to: to.into(),
    }
}

fn changed(session: SessionId, old: CallState, new: CallState) -> SessionEvent {
    SessionEvent::StateChanged {
        session_id: session,
        call_id: CallId::from("demo@example.com"),
        old,
        new,
    }
}

fn dtmf(session: SessionId, digit: char) -> SessionEvent {
    SessionEvent::DtmfReceived {
        session_id: session,
        digit,
        duration: Duration::from_millis(120),
    }
}

/// Receives the next event, or `None` on lag, close or timeout.
async fn next(sub: &mut Subscription) -> Option<Arc<SessionEvent>> {
    tokio::time::timeout(WAIT, sub.recv()).await.ok()?.ok()
}

/// Everything queued right now (lags and close end the list).
fn drain(sub: &mut Subscription) -> Vec<Arc<SessionEvent>> {
    std::iter::from_fn(|| sub.try_recv().ok()).collect()
}

#[tokio::main]
async fn main() {
    let bus = EventBus::new();
    let alice = SessionId::new();
    let bob = SessionId::new();
    let carol = SessionId::new();

    section("1. publish and subscribe");
    let mut alice_events = bus.subscribe(Filter::session(alice));
    let mut everything = bus.subscribe(Filter::all());
    let delivered = bus.publish(created(
        alice,
        "sip:alice@example.com",
        "sip:bob@example.com",
    ));
    check(
        delivered == 2,
        format!("SessionCreated delivered to {delivered} subscribers (2 expected)"),
    );
    bus.publish(changed(alice, CallState::Initiating, CallState::Ringing));
    let first = next(&mut alice_events).await;
    let second = next(&mut alice_events).await;
    check(
        first.as_ref().map(|e| e.kind()) == Some(EventKind::SessionCreated)
            && second.as_ref().map(|e| e.kind()) == Some(EventKind::StateChanged),
        "alice's subscriber gets SessionCreated then StateChanged, in order",
    );
    let seen_by_all = next(&mut everything).await;
    check(
        matches!((&first, &seen_by_all), (Some(a), Some(b)) if Arc::ptr_eq(a, b)),
        "both subscribers hold the same allocation (one Arc per event, no copies)",
    );
    drain(&mut everything);

    section("2. filters: session, group, kind, predicate");
    let conference = GroupId::next();
    bus.join_group(alice, conference);
    bus.join_group(bob, conference);
    let mut bob_only = bus.subscribe(Filter::session(bob));
    let mut room = bus.subscribe(Filter::group(conference));
    let mut digits = bus.subscribe(Filter::kind(EventKind::DtmfReceived));
    let mut pound_key = bus.subscribe(Filter::predicate(|e| {
        matches!(e, SessionEvent::DtmfReceived { digit: '#', .. })
    }));
    let mut bob_states = bus.subscribe(Filter::session(bob).with_kind(EventKind::StateChanged));

    bus.publish(created(bob, "sip:bob@example.com", "sip:carol@example.com"));
    bus.publish(changed(bob, CallState::Initiating, CallState::Ringing));
    bus.publish(created(
        carol,
        "sip:carol@example.com",
        "sip:alice@example.com",
    ));
    bus.publish(dtmf(alice, '1'));
    bus.publish(dtmf(carol, '#'));
    bus.publish(dtmf(bob, '#'));

    let bob_got = drain(&mut bob_only);
    check(
        bob_got.len() == 3 && bob_got.iter().all(|e| e.session_id() == Some(bob)),
        format!(
            "session filter: bob's subscriber got bob's 3 events only ({})",
            bob_got.len()
        ),
    );
    let room_got = drain(&mut room);
    check(
        room_got.len() == 4 && room_got.iter().all(|e| e.session_id() != Some(carol)),
        format!(
            "group filter: the conference got its members' (alice, bob) 4 events, none of carol's ({})",
            room_got.len()
        ),
    );
    let digits_got = drain(&mut digits);
    check(
        digits_got.len() == 3
            && digits_got
                .iter()
                .all(|e| e.kind() == EventKind::DtmfReceived),
        format!(
            "kind filter: 3 DTMF events from all sessions ({})",
            digits_got.len()
        ),
    );
    let pound_got = drain(&mut pound_key);
    check(
        pound_got.len() == 2,
        format!("predicate filter: the 2 '#' keys ({})", pound_got.len()),
    );
    let bob_states_got = drain(&mut bob_states);
    check(
        bob_states_got.len() == 1,
        format!(
            "session + kind filter: bob's one state change ({})",
            bob_states_got.len()
        ),
    );
    let stats = bus.stats();
    println!(
        "       bus: {} published, {} delivered, {} subscriptions examined",
        stats.published, stats.delivered, stats.examined
    );
    drop((bob_only, room, digits, pound_key, bob_states));
    drain(&mut alice_events);
    drain(&mut everything);

    section("3. lag: a slow subscriber is told exactly what it missed");
    let slow =
        bus.subscribe_with_capacity(Filter::session(carol).with_kind(EventKind::DtmfReceived), 8);
    check(slow.is_ok(), "a subscription with a queue of 8");
    let Ok(mut slow) = slow else { return };
    for digit in "0123456789*#0123456789".chars() {
        // Never blocks, however far behind `slow` is.
        bus.publish(dtmf(carol, digit));
    }
    let gap = tokio::time::timeout(WAIT, slow.recv()).await;
    check(
        matches!(gap, Ok(Err(RecvError::Lagged(14)))),
        format!("22 published, queue of 8: told it missed 14 ({gap:?})"),
    );
    let rest: String = drain(&mut slow)
        .iter()
        .filter_map(|e| match **e {
            SessionEvent::DtmfReceived { digit, .. } => Some(digit),
            _ => None,
        })
        .collect();
    check(
        rest == "23456789",
        format!("then the 8 newest, in order: {rest}"),
    );
    check(
        slow.try_recv() == Err(TryRecvError::Empty),
        "and nothing more",
    );
    drop(slow);
    drain(&mut everything);

    section("4. cross-session coordination: when A is active, act for B");
    // A call engine bridges bob's leg as soon as alice's leg is answered. Subscribing before the
    // task starts means no event can slip past it.
    let mut alice_answered = bus.subscribe(Filter::session(alice).with_predicate(|e| {
        matches!(
            e,
            SessionEvent::StateChanged {
                new: CallState::Active,
                ..
            }
        )
    }));
    let mut bob_custom = bus.subscribe(Filter::session(bob).with_kind(EventKind::Custom));
    let engine = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let event = alice_answered.recv().await.ok()?;
            let answered = event.session_id()?;
            bus.publish(SessionEvent::custom(
                Some(bob),
                "bridge-to",
                Payload::new(answered),
            ));
            Some(answered)
        })
    };
    bus.publish(changed(alice, CallState::Ringing, CallState::Active));
    let bridge = next(&mut bob_custom).await;
    let target = bridge.as_deref().and_then(|e| match e {
        SessionEvent::Custom { name, payload, .. } if &**name == "bridge-to" => {
            payload.downcast_ref::<SessionId>().copied()
        }
        _ => None,
    });
    check(
        target == Some(alice),
        "bob's subscriber got 'bridge-to' carrying alice's session id",
    );
    let engine_result = tokio::time::timeout(WAIT, engine).await;
    check(
        matches!(engine_result, Ok(Ok(Some(id))) if id == alice),
        "the engine task saw alice become active and finished",
    );
    drop(bob_custom);

    section("5. a crossbeam channel receiver for a media thread");
    // The thread sleeps in one `select!` on its packets and on bob's DTMF, until bob's packets
    // stop.
    let bob_digits =
        bus.subscribe_channel(Filter::session(bob).with_kind(EventKind::DtmfReceived), 16);
    check(bob_digits.is_ok(), "a channel subscription of 16 events");
    let Ok(bob_digits) = bob_digits else { return };
    let (packet_tx, packets) = crossbeam_channel::bounded::<u16>(16);
    let media = std::thread::spawn(move || {
        let (mut received, mut digits) = (0, String::new());
        loop {
            select! {
                recv(packets) -> packet => match packet {
                    Ok(_) => received += 1,
                    Err(_) => break,
                },
                recv(bob_digits.receiver()) -> item => match item {
                    Ok(item) => {
                        if let SessionEvent::DtmfReceived { digit, .. } = *item.event {
                            digits.push(digit);
                        }
                    }
                    Err(_) => break,
                },
                default(WAIT) => break,
            }
        }
        // `select!` picks among ready channels at random, so the hang-up may have come before
        // the last digits: take what is still in the channel.
        digits.extend(
            bob_digits
                .receiver()
                .try_iter()
                .filter_map(|item| match *item.event {
                    SessionEvent::DtmfReceived { digit, .. } => Some(digit),
                    _ => None,
                }),
        );
        (received, digits, bob_digits)
    });
    for (seq, digit) in (0u16..).zip("42#".chars()) {
        let _ = packet_tx.send(seq);
        bus.publish(dtmf(bob, digit));
        bus.publish(dtmf(carol, '9'));
    }
    drop(packet_tx);
    let media_result = media.join();
    check(
        matches!(&media_result, Ok((3, digits, _)) if digits == "42#"),
        "the media thread got its 3 packets and bob's digits \"42#\" (none of carol's) in one select!",
    );
    let Ok((_, _, bob_digits)) = media_result else {
        return;
    };

    // Lag on a channel: the newest events are dropped, and counted where they were dropped.
    let small = bus.subscribe_channel(Filter::session(carol).with_kind(EventKind::DtmfReceived), 4);
    let Ok(mut small) = small else { return };
    for digit in "123456".chars() {
        bus.publish(dtmf(carol, digit));
    }
    check(
        small.len() == 4,
        "6 published into a channel of 4: 4 kept, the 2 newest dropped",
    );
    // Make room, and the next event that gets in carries the count of the drops before it.
    let one = small.recv_timeout(WAIT).ok();
    bus.publish(dtmf(carol, '7'));
    let mut got = String::new();
    let mut gaps = Vec::new();
    for _ in 0..5 {
        match small.recv_timeout(WAIT) {
            Ok(event) => {
                if let SessionEvent::DtmfReceived { digit, .. } = *event {
                    got.push(digit);
                }
            }
            Err(err) => gaps.push(err),
        }
    }
    check(
        one.is_some() && got == "2347" && gaps == [RecvTimeoutError::Lagged(2)],
        format!(
            "then \"234\", Lagged(2) exactly where 5 and 6 were dropped, then \"7\" ({got}, {gaps:?})"
        ),
    );
    check(
        small.take_missed() == 0,
        "nothing was dropped after the last event",
    );
    drop((small, bob_digits));
    drain(&mut everything);

    section("6. cleanup: everything counts back to zero");
    for session in [alice, bob, carol] {
        bus.publish(SessionEvent::SessionTerminated {
            session_id: session,
            reason: TerminationReason::LocalHangup,
            summary: Default::default(),
        });
    }
    // Forgetting alice ends her subscription: it drains what is queued, then sees Closed.
    let closed = bus.forget_session(alice);
    check(
        closed == 1,
        format!("forgetting alice closed her 1 subscription ({closed})"),
    );
    let mut tail = Vec::new();
    let end = loop {
        match tokio::time::timeout(WAIT, alice_events.recv()).await {
            Ok(Ok(event)) => tail.push(event.kind()),
            other => break other,
        }
    };
    check(
        tail.last() == Some(&EventKind::SessionTerminated)
            && matches!(end, Ok(Err(RecvError::Closed))),
        format!("alice's subscriber ends with SessionTerminated, then Closed ({tail:?})"),
    );
    bus.forget_session(bob);
    bus.forget_session(carol);
    drop(alice_events);
    drop(everything);
    let stats = bus.stats();
    check(bus.subscriber_count() == 0, "subscriber count is back to 0");
    check(
        stats.indexed_sessions == 0 && stats.indexed_groups == 0 && stats.unscoped_subscribers == 0,
        "no index entry is left",
    );
    println!(
        "       bus: {} published, {} delivered, {} dropped for lagging subscribers",
        stats.published, stats.delivered, stats.lagged
    );
}
