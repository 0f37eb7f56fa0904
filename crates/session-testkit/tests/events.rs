//! The event log: sequences met in order across the sessions of a manager, the cursor that
//! makes consecutive waits check consecutive stretches, absences, and the report of a
//! sequence that did not happen (media ports 36_000–36_499).

use session_core::{CallState, Direction, SessionEvent, StatusCode, TerminationReason};
use session_testkit::{Answer, Error, EventLog, Expect, Harness, event};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_rejected_and_an_answered_call_leave_their_sequences_on_the_bus() {
    let h = Harness::new(36_000..=36_199);
    let bob = h
        .peer("bob")
        .answer(Answer::Reject(StatusCode::BUSY_HERE))
        .start()
        .await
        .unwrap();
    let alice = h.peer("alice").start().await.unwrap();
    let mut log = EventLog::all(bob.manager());

    let refused = alice.call(&bob.uri()).await.unwrap();
    assert_eq!(refused.rejected().await.unwrap(), StatusCode::BUSY_HERE);
    let busy = CallState::Failed(session_core::FailureReason::Rejected(StatusCode::BUSY_HERE));
    let met = log
        .expect_in_order([
            event::created_in(Direction::Inbound),
            event::state(busy),
            event::terminated(),
        ])
        .await
        .unwrap();
    let first = met[0].session_id().unwrap();
    assert!(met.iter().all(|e| e.session_id() == Some(first)));

    bob.set_answer(Answer::Accept);
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    call.hangup().await.unwrap();
    // The cursor moved past the first call: its events cannot meet these.
    let met = log
        .expect_in_order([
            event::created_for("bob"),
            event::state(CallState::Active),
            event::media_started(),
            event::terminated_with(TerminationReason::RemoteHangup),
        ])
        .await
        .unwrap();
    let second = met[0].session_id().unwrap();
    assert_ne!(first, second);
    assert!(met.iter().all(|e| e.session_id() == Some(second)));
    // Narrowed to the first session, nothing after the cursor matches any more.
    log.expect_none(event::any().session(first), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(log.seen().len() >= 7, "{}", log.render());
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_sequence_that_does_not_happen_fails_with_a_readable_report() {
    let h = Harness::new(36_200..=36_399);
    let bob = h.peer("bob").signaling_only().start().await.unwrap();
    let alice = h.peer("alice").signaling_only().start().await.unwrap();
    let mut log = EventLog::all(bob.manager()).timeout(Duration::from_secs(3));
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();

    let error = log
        .expect_in_order([
            event::created(),
            event::state(CallState::OnHold),
            event::terminated(),
        ])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Expectation(_)));
    let report = error.to_string();
    assert!(
        report.starts_with("expected in order, within 3s:"),
        "{report}"
    );
    assert!(report.contains("✓ created"), "{report}");
    assert!(report.contains("✗ state → on-hold"), "{report}");
    assert!(report.contains("    terminated"), "{report}");
    assert!(
        report.contains("state ringing → active") || report.contains("→ active"),
        "{report}"
    );

    // An absence that does not hold fails, naming the event.
    call.hangup().await.unwrap();
    let error = log
        .expect_none(event::terminated(), Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("terminated: remote hangup"),
        "{error}"
    );

    // Custom expectations compose with the built-in ones.
    let remote_end = Expect::new("an end by the caller", |e: &SessionEvent| {
        matches!(
            e,
            SessionEvent::SessionTerminated {
                reason: TerminationReason::RemoteHangup,
                ..
            }
        )
    });
    log.expect(remote_end).await.unwrap();
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_call_log_follows_one_call() {
    let h = Harness::new(36_400..=36_499).ports_per_manager(50);
    let bob = h.peer("bob").start().await.unwrap();
    let alice = h.peer("alice").start().await.unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    let mut log = EventLog::call(call.session());
    call.answered().await.unwrap();
    call.play_tone_for(1000.0, Duration::from_millis(100))
        .await
        .unwrap();
    call.playback_finished().await.unwrap();
    call.hangup().await.unwrap();
    log.expect_in_order([
        event::state(CallState::Active),
        event::playback_finished(session_core::PlaybackEnd::Completed),
        event::terminated_with(TerminationReason::LocalHangup),
    ])
    .await
    .unwrap();
    assert!(
        log.seen().iter().all(|e| e.session_id() == Some(call.id())),
        "{}",
        log.render()
    );
    h.finish().await.unwrap();
}
