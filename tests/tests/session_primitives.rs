//! The foundation crates used together the way session-core will: each call leg is admitted
//! (session-resources), takes an RTP port pair, walks legal state changes (session-types) and
//! publishes each one (session-events) to a subscriber that follows only that call. Some legs
//! are cancelled mid-call; afterwards every permit, port and subscription is back to zero.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use session_events::{EventBus, Filter, SessionEvent};
use session_resources::{AdmissionController, AdmissionRequest, Limits, PortPool};
use session_types::{CallId, CallState, Classify, ErrorKind, SessionId, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

const PATH: [CallState; 5] = [
    CallState::Ringing,
    CallState::Active,
    CallState::OnHold,
    CallState::Active,
    CallState::Terminating,
];

/// One call leg: takes its resources, then publishes every state change on its path.
async fn call_leg(
    id: SessionId,
    bus: EventBus,
    admission: AdmissionController,
    ports: PortPool,
    barriers: Arc<(Barrier, Barrier)>,
    park: bool,
) {
    let user = if id.as_u128().is_multiple_of(2) {
        "alice"
    } else {
        "bob"
    };
    let _permit = admission
        .try_admit(&AdmissionRequest::for_user(user))
        .unwrap();
    let _media = ports.acquire().unwrap();
    let call_id = CallId::new(format!("{id}@test"));
    let mut state = CallState::Initiating;
    for (step, next) in PATH.into_iter().enumerate() {
        state = state.transition(next).unwrap();
        let old = if step == 0 {
            CallState::Initiating
        } else {
            PATH[step - 1]
        };
        bus.publish(SessionEvent::StateChanged {
            session_id: id,
            call_id: call_id.clone(),
            old,
            new: state,
        });
        if step == 1 {
            // Everyone is up at once, and stays up until the test has checked the limits.
            barriers.0.wait().await;
            barriers.1.wait().await;
            if park {
                // Parked legs wait forever; the test aborts them (a cancelled task).
                std::future::pending::<()>().await;
            }
        }
    }
    let done = state.transition(CallState::Terminated).unwrap();
    bus.publish(SessionEvent::StateChanged {
        session_id: id,
        call_id,
        old: state,
        new: done,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_subscriptions_return_to_zero_on_every_ending() {
    const LEGS: usize = 40;
    let bus = EventBus::new();
    let admission =
        AdmissionController::new(Limits::default().max_sessions(LEGS).max_per_user(LEGS));
    let ports = PortPool::new(30_000..30_000 + 2 * LEGS as u16).unwrap();
    // (all legs up, limits checked): each leg and the test itself wait on both.
    let barriers = Arc::new((Barrier::new(LEGS + 1), Barrier::new(LEGS + 1)));
    let ids: Vec<SessionId> = (0..LEGS).map(|_| SessionId::new()).collect();
    let mut followers = Vec::new();
    let mut legs = Vec::new();
    for (n, &id) in ids.iter().enumerate() {
        let mut subscription = bus.subscribe(Filter::session(id));
        let park = n % 4 == 0;
        followers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let event = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
                    .await
                    .unwrap()
                    .unwrap();
                let SessionEvent::StateChanged {
                    session_id, new, ..
                } = *event
                else {
                    panic!("unexpected {event:?}")
                };
                assert_eq!(session_id, id, "an event of another session arrived");
                seen.push(new);
                if new == CallState::Terminated || (park && new == CallState::Active) {
                    return seen;
                }
            }
        }));
        legs.push(tokio::spawn(call_leg(
            id,
            bus.clone(),
            admission.clone(),
            ports.clone(),
            barriers.clone(),
            park,
        )));
    }
    barriers.0.wait().await;
    // All legs are up: the next admission is refused with a 503-class error.
    let refused = admission.try_admit(&AdmissionRequest::new()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ResourceExhausted);
    assert_eq!(
        refused.kind().suggested_status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(ports.in_use(), LEGS);
    barriers.1.wait().await;

    for (n, leg) in legs.into_iter().enumerate() {
        if n % 4 == 0 {
            leg.abort();
            assert!(leg.await.unwrap_err().is_cancelled());
        } else {
            leg.await.unwrap();
        }
    }
    for (n, follower) in followers.into_iter().enumerate() {
        let seen = follower.await.unwrap();
        if n % 4 == 0 {
            assert_eq!(seen, [CallState::Ringing, CallState::Active]);
        } else {
            let mut expected = PATH.to_vec();
            expected.push(CallState::Terminated);
            assert_eq!(seen, expected, "events of one session arrive in order");
        }
    }
    assert_eq!(
        admission.active(),
        0,
        "every permit released, cancelled legs included"
    );
    assert_eq!(admission.active_users(), 0);
    assert_eq!(ports.in_use(), 0, "every port pair back in the pool");
    assert_eq!(
        bus.subscriber_count(),
        0,
        "every subscription gone with its task"
    );
}
