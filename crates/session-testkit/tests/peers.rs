//! The test peer: each answer policy on the wire, what it records (calls, digits, holds,
//! messages, transfers, ends), and its audio (tones played, heard and not heard) — all in
//! virtual time on loopback, each test with its own media ports (38_000–38_999).

use session_core::{CallState, DtmfMethod, StatusCode, TerminationReason, TransferDecision};
use session_testkit::time::Stopwatch;
use session_testkit::{Answer, Error, Harness, PeerEvent, seen};
use std::time::Duration;

fn harness(base: u16) -> Harness {
    Harness::new(base..=base + 119).ports_per_manager(40)
}

#[tokio::test(start_paused = true)]
async fn each_answer_policy_reaches_the_caller() {
    let h = harness(38_000);
    let alice = h.peer("alice").start().await.unwrap();
    let bob = h.peer("bob").start().await.unwrap();

    // Accept.
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    assert_eq!(call.state(), CallState::Active);
    let at_bob = bob.next_call().await.unwrap();
    assert_eq!(at_bob.called_user(), Some("bob"));
    assert!(
        at_bob.header("From").unwrap().contains("alice"),
        "{:?}",
        at_bob.header("From")
    );
    call.hangup().await.unwrap();
    assert_eq!(at_bob.ended().await.unwrap(), CallState::Terminated);

    // Reject, with the exact status.
    bob.set_answer(Answer::Reject(StatusCode::BUSY_HERE));
    let call = alice.call(&bob.uri()).await.unwrap();
    assert_eq!(call.rejected().await.unwrap(), StatusCode::BUSY_HERE);
    let refused = call.answered().await.unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::BUSY_HERE), "{refused}");

    // Ring, then accept after 2 s of virtual time.
    bob.set_answer(Answer::RingThenAccept(Duration::from_secs(2)));
    let watch = Stopwatch::start();
    let call = alice.call(&bob.uri()).await.unwrap();
    call.wait_for(|s| s == CallState::Ringing).await.unwrap();
    assert!(
        watch.elapsed() < Duration::from_secs(1),
        "{:?}",
        watch.elapsed()
    );
    call.answered().await.unwrap();
    let rang = watch.elapsed();
    assert!(
        rang >= Duration::from_secs(2) && rang < Duration::from_millis(2500),
        "answered after {rang:?}"
    );
    call.hangup().await.unwrap();

    // Ring, then reject.
    bob.set_answer(Answer::RingThenReject(
        Duration::from_secs(5),
        StatusCode::DECLINE,
    ));
    let watch = Stopwatch::start();
    let call = alice.call(&bob.uri()).await.unwrap();
    assert_eq!(call.rejected().await.unwrap(), StatusCode::DECLINE);
    assert!(watch.elapsed() >= Duration::from_secs(5));

    // Ring, and the test decides.
    bob.set_answer(Answer::Ring);
    let call = alice.call(&bob.uri()).await.unwrap();
    call.wait_for(|s| s == CallState::Ringing).await.unwrap();
    // The calls before were all taken in order: this is the fifth.
    for _ in 0..3 {
        bob.next_call().await.unwrap();
    }
    let at_bob = bob.next_call().await.unwrap();
    assert_eq!(
        at_bob.id(),
        bob.seen()
            .iter()
            .rev()
            .find_map(|e| match e {
                PeerEvent::Call { call, .. } => Some(call.id()),
                _ => None,
            })
            .unwrap()
    );
    at_bob.accept().await.unwrap();
    call.answered().await.unwrap();
    at_bob.hangup().await.unwrap();
    assert_eq!(call.ended().await.unwrap(), CallState::Terminated);

    // Nobody else called: the next wait for a call fails, in virtual time.
    let watch = Stopwatch::start();
    let none = bob.next_call().await.unwrap_err();
    assert!(matches!(none, Error::TimedOut { .. }), "{none}");
    assert!(watch.elapsed() >= bob.timeout());
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_peer_records_digits_holds_messages_and_ends_in_order() {
    let h = harness(38_125);
    let alice = h.peer("alice").start().await.unwrap();
    let bob = h.peer("bob").start().await.unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    at_bob.established().await.unwrap();

    call.send_dtmf("12", DtmfMethod::Rfc4733).await.unwrap();
    call.send_dtmf("#", DtmfMethod::Info).await.unwrap();
    call.hold().await.unwrap();
    call.resume().await.unwrap();
    call.send_message("hello bob").await.unwrap();
    call.send_info("application/x-note", "a note")
        .await
        .unwrap();
    call.hangup().await.unwrap();

    let id = at_bob.id();
    bob.expect_in_order([
        seen::call_to("bob"),
        seen::established(),
        seen::digit_by('1', DtmfMethod::Rfc4733).session(id),
        seen::digit('2'),
        seen::digit_by('#', DtmfMethod::Info),
        seen::hold(true),
        seen::hold(false),
        seen::message("hello bob"),
        seen::message("a note"),
        seen::ended_with(TerminationReason::RemoteHangup),
    ])
    .await
    .unwrap();
    assert_eq!(
        at_bob.digits(3).await.unwrap(),
        "12#",
        "the call's own digit queue"
    );
    let info = bob
        .seen()
        .into_iter()
        .find_map(|event| match event {
            PeerEvent::Message {
                method,
                content_type,
                ..
            } if method == "INFO" => Some(content_type),
            _ => None,
        })
        .unwrap();
    assert_eq!(info.as_deref(), Some("application/x-note"));
    alice
        .expect(seen::ended_with(TerminationReason::LocalHangup))
        .await
        .unwrap();
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_expectation_reports_what_came_instead() {
    let h = harness(38_250);
    let alice = h.peer("alice").signaling_only().start().await.unwrap();
    let bob = h.peer("bob").signaling_only().start().await.unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    call.send_dtmf("4", DtmfMethod::Info).await.unwrap();

    let watch = Stopwatch::start();
    let error = bob
        .expect_in_order([seen::call_to("bob"), seen::digit('5')])
        .await
        .unwrap_err();
    assert!(
        watch.elapsed() >= bob.timeout(),
        "the wait was bounded by the timeout"
    );
    let report = error.to_string();
    assert!(matches!(error, Error::Expectation(_)), "{report}");
    assert!(report.contains("✓ a call to bob"), "{report}");
    assert!(report.contains("✗ digit 5"), "{report}");
    assert!(
        report.contains("digit 4 (Info)"),
        "what came is listed:\n{report}"
    );
    assert_eq!(
        format!("{error:?}"),
        report,
        "Debug prints the report as it is"
    );

    // What was met before stays met: the next wait goes on from the call.
    bob.expect(seen::digit('4')).await.unwrap();
    bob.expect_none(seen::digit('4'), Duration::from_secs(5))
        .await
        .unwrap();
    call.send_dtmf("4", DtmfMethod::Info).await.unwrap();
    let error = bob
        .expect_none(seen::digit('4'), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected nothing like \"digit 4\""),
        "{error}"
    );
    call.hangup().await.unwrap();
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn blind_and_attended_transfers_move_the_call() {
    let h = harness(38_375);
    let alice = h.peer("alice").signaling_only().start().await.unwrap();
    let bob = h.peer("bob").signaling_only().start().await.unwrap();
    let carol = h.peer("carol").signaling_only().start().await.unwrap();

    // Blind: bob sends alice to carol.
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    at_bob.established().await.unwrap();
    at_bob.transfer(&carol.uri()).await.unwrap();
    alice.expect(seen::transfer_to(&carol.uri())).await.unwrap();
    let at_carol = carol.next_call().await.unwrap();
    at_carol.established().await.unwrap();
    assert!(
        at_carol
            .header("Referred-By")
            .is_some_and(|by| by.contains("bob")),
        "{:?}",
        at_carol.header("Referred-By")
    );
    assert_eq!(at_bob.ended().await.unwrap(), CallState::Terminated);
    at_carol.hangup().await.unwrap();
    at_carol.released().await.unwrap();

    // Attended: alice calls bob again, bob consults carol and connects them.
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    at_bob.established().await.unwrap();
    let consultation = bob.call(&carol.uri()).await.unwrap();
    consultation.answered().await.unwrap();
    let consulted = carol.next_call().await.unwrap();
    at_bob.transfer_attended(&consultation).await.unwrap();
    let replacing = carol.next_call().await.unwrap();
    replacing.established().await.unwrap();
    let replaced = carol.seen().into_iter().find_map(|event| match event {
        PeerEvent::Call { call, replaces, .. } if call.id() == replacing.id() => replaces,
        _ => None,
    });
    assert_eq!(
        replaced,
        Some(consulted.id()),
        "the INVITE replaced bob's call"
    );
    assert_eq!(consulted.ended().await.unwrap(), CallState::Terminated);
    assert_eq!(at_bob.ended().await.unwrap(), CallState::Terminated);
    replacing.hangup().await.unwrap();

    // A peer that refuses transfers keeps the call.
    alice.set_transfers(TransferDecision::Refuse(StatusCode::DECLINE));
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    at_bob.established().await.unwrap();
    let refused = at_bob.transfer(&carol.uri()).await.unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::DECLINE), "{refused}");
    assert_eq!(call.state(), CallState::Active);
    call.hangup().await.unwrap();
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn peers_hear_each_others_tones_and_not_their_own() {
    let h = harness(38_500);
    let alice = h.peer("alice").start().await.unwrap();
    let bob = h.peer("bob").tone(1000.0).start().await.unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    let mut alice_ear = call.listen().await.unwrap();
    let mut bob_ear = at_bob.listen().await.unwrap();

    assert!(
        alice_ear.hears(1000.0).await.unwrap(),
        "bob's tone, played on answer"
    );
    assert!(!alice_ear.hears(440.0).await.unwrap());
    let heard = bob_ear.listen().await.unwrap();
    assert!(
        heard.is_silent(),
        "alice plays nothing yet: {} dBFS",
        heard.level_dbfs()
    );

    call.play_tone(440.0).await.unwrap();
    let heard = bob_ear.listen().await.unwrap();
    assert!(
        heard.contains_tone(440.0),
        "share {}",
        heard.tone_share(440.0)
    );
    assert!(!heard.contains_tone(1000.0), "bob does not hear himself");

    // A tone of a set length, then silence.
    call.play_tone_for(2000.0, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(bob_ear.hears(2000.0).await.unwrap());
    call.playback_finished().await.unwrap();
    assert!(bob_ear.listen().await.unwrap().is_silent());
    call.hangup().await.unwrap();
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn early_media_is_heard_before_the_answer() {
    let h = harness(38_625);
    let alice = h.peer("alice").start().await.unwrap();
    let bob = h
        .peer("bob")
        .answer(Answer::EarlyMedia)
        .start()
        .await
        .unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    let at_bob = bob.next_call().await.unwrap();
    call.wait_for(|s| s == CallState::Ringing).await.unwrap();
    at_bob.play_tone(425.0).await.unwrap();
    let mut ear = call.listen().await.unwrap();
    assert!(
        ear.hears(425.0).await.unwrap(),
        "the ring-back tone, before any answer"
    );
    assert_eq!(call.state(), CallState::Ringing);
    at_bob
        .reject(StatusCode::TEMPORARILY_UNAVAILABLE)
        .await
        .unwrap();
    assert_eq!(
        call.rejected().await.unwrap(),
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    h.finish().await.unwrap();
}
