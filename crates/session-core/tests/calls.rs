//! Real calls between two (or three) session managers on loopback: every call flow of the
//! public API, each checked on both sides, with every resource counted back to zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::crates::media::audio::{ChannelSink, ToneSource, goertzel_power};
use session_core::{
    AcceptOptions, CallDecision, CallState, DtmfMethod, FailureReason, Limits, PlaybackEnd,
    SessionError, SessionEvent, SessionTimerConfig, StatusCode, TerminationReason,
    TransferDecision,
};
use std::sync::Arc;
use std::time::Duration;
use support::{Seen, assert_released, builder, peer, peer_with, signaling_only, within};

fn accept(_: &session_core::IncomingCall) -> CallDecision {
    CallDecision::accept()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_is_active_on_both_sides_and_hangup_releases_everything() {
    let mut alice = peer(builder(41_000..=41_099), accept).await;
    let mut bob = peer(builder(41_100..=41_199), accept).await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    within(call.answered()).await.unwrap();
    let (incoming, request) = bob
        .expect(|seen| match seen {
            Seen::Incoming(call, request) => Some((call, request)),
            _ => None,
        })
        .await;
    assert_eq!(
        request.uri.user(),
        Some("bob"),
        "the Request-URI reaches the handler"
    );
    assert_eq!(incoming.call_id(), call.call_id());
    within(incoming.wait_for(|s| s == CallState::Active)).await;
    assert_eq!(call.state(), CallState::Active);
    assert_eq!(alice.manager.ports().in_use(), 1);
    assert_eq!(bob.manager.ports().in_use(), 1);

    call.hangup().await.unwrap();
    assert_eq!(within(call.ended()).await, CallState::Terminated);
    assert_eq!(within(incoming.ended()).await, CallState::Terminated);
    let reason = bob
        .expect(|seen| match seen {
            Seen::Ended(_, reason, _) => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::RemoteHangup);
    let reason = alice
        .expect(|seen| match seen {
            Seen::Ended(_, reason, _) => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::LocalHangup);
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_reach_the_caller_with_their_exact_status() {
    for status in [
        StatusCode::BUSY_HERE,
        StatusCode::DECLINE,
        StatusCode::TEMPORARILY_UNAVAILABLE,
    ] {
        let alice = peer(signaling_only(), accept).await;
        let bob = peer(signaling_only(), move |_| CallDecision::Reject(status)).await;
        let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
        let error = within(call.answered()).await.unwrap_err();
        assert_eq!(error.status(), Some(status), "{error}");
        assert!(matches!(error, SessionError::Rejected { .. }), "{error:?}");
        assert_eq!(
            call.state(),
            CallState::Failed(FailureReason::Rejected(status))
        );
        assert_released(&alice).await;
        assert_released(&bob).await;
        alice.manager.shutdown().await;
        bob.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_call_rings_then_is_accepted_later() {
    let alice = peer(builder(41_200..=41_299), accept).await;
    let mut bob = peer(builder(41_300..=41_399), |_| CallDecision::Defer).await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    let incoming = bob.incoming().await;
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    assert_eq!(call.last_response().unwrap().0, StatusCode::RINGING);
    assert_eq!(incoming.state(), CallState::Ringing);
    incoming.accept().await.unwrap();
    within(call.answered()).await.unwrap();
    within(incoming.wait_for(CallState::is_established)).await;
    incoming.hangup().await.unwrap();
    assert_eq!(within(call.ended()).await, CallState::Terminated);
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_reaches_the_caller_before_the_answer() {
    let alice = peer(builder(42_200..=42_299), accept).await;
    let mut bob = peer(builder(42_300..=42_399), |_| {
        CallDecision::DeferWithEarlyMedia
    })
    .await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    let incoming = bob.incoming().await;
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    assert_eq!(
        call.last_response().unwrap().0,
        StatusCode::SESSION_PROGRESS
    );
    // A prompt played before the answer reaches the caller.
    let (sink, mut heard) = ChannelSink::new(64);
    call.attach_sink(Box::new(sink)).await.unwrap();
    incoming
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    let mut tone_frames = 0;
    for _ in 0..25 {
        let frame = within(heard.recv()).await.unwrap();
        if goertzel_power(frame.samples(), 1000.0) > 10.0 * goertzel_power(frame.samples(), 440.0) {
            tone_frames += 1;
        }
    }
    assert!(tone_frames >= 10, "early media heard: {tone_frames} frames");
    assert_eq!(call.state(), CallState::Ringing, "still not answered");
    // The answer repeats the 183's SDP: the media goes on unchanged.
    incoming.accept().await.unwrap();
    within(call.answered()).await.unwrap();
    within(incoming.wait_for(CallState::is_established)).await;
    incoming.hangup().await.unwrap();
    assert_eq!(within(call.ended()).await, CallState::Terminated);
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_defer_sends_nothing_until_told_to_ring() {
    let alice = peer(signaling_only(), accept).await;
    let mut bob = peer(signaling_only(), |_| CallDecision::DeferSilently).await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    let incoming = bob.incoming().await;
    assert_eq!(incoming.state(), CallState::Initiating, "no 180 yet");
    incoming.ring().await.unwrap();
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    assert_eq!(call.last_response().unwrap().0, StatusCode::RINGING);
    incoming.reject(StatusCode::BUSY_HERE).await.unwrap();
    assert!(matches!(
        within(call.ended()).await,
        CallState::Failed(FailureReason::Rejected(StatusCode::BUSY_HERE))
    ));
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing_ends_both_sides_as_cancelled() {
    let alice = peer(builder(41_400..=41_499), accept).await;
    let mut bob = peer(builder(41_500..=41_599), |_| CallDecision::Defer).await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    let incoming = bob.incoming().await;
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    call.cancel().await.unwrap();
    assert_eq!(within(call.ended()).await, CallState::Cancelled);
    assert_eq!(within(incoming.ended()).await, CallState::Cancelled);
    assert!(matches!(
        call.answered().await,
        Err(SessionError::Cancelled)
    ));
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_admission_refusal_are_on_the_wire() {
    let alice = peer(signaling_only(), accept).await;
    let target = "sip:carol@127.0.0.1:5999".to_owned();
    let redirecting = peer(signaling_only(), move |_| {
        CallDecision::Redirect(vec![
            session_core::crates::sip::Uri::parse(&target).unwrap(),
        ])
    })
    .await;
    let call = alice.manager.call(&redirecting.uri("bob")).await.unwrap();
    let error = within(call.answered()).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::MOVED_TEMPORARILY));

    let full = peer(
        signaling_only().limits(Limits::default().max_sessions(1)),
        |_| CallDecision::Defer,
    )
    .await;
    let first = alice.manager.call(&full.uri("bob")).await.unwrap();
    within(first.wait_for(|s| s == CallState::Ringing)).await;
    let second = alice.manager.call(&full.uri("bob")).await.unwrap();
    let error = within(second.answered()).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    first.cancel().await.unwrap();
    within(first.ended()).await;
    assert_released(&full).await;
    assert_released(&alice).await;
    for manager in [&alice.manager, &redirecting.manager, &full.manager] {
        manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_by_reinvite_are_seen_by_the_peer() {
    let alice = peer(builder(41_600..=41_699), accept).await;
    let mut bob = peer(builder(41_700..=41_799), accept).await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;

    within(call.hold()).await.unwrap();
    assert_eq!(call.state(), CallState::OnHold);
    let held = bob
        .expect(|seen| match seen {
            Seen::RemoteHold(held) => Some(held),
            _ => None,
        })
        .await;
    assert!(held);
    assert!(incoming.is_remote_hold());
    assert_eq!(incoming.state(), CallState::OnHold);

    within(call.resume()).await.unwrap();
    assert_eq!(call.state(), CallState::Active);
    let held = bob
        .expect(|seen| match seen {
            Seen::RemoteHold(held) => Some(held),
            _ => None,
        })
        .await;
    assert!(!held);
    assert_eq!(incoming.state(), CallState::Active);
    within(call.update()).await.unwrap();
    assert_eq!(call.state(), CallState::Active);
    call.hangup().await.unwrap();
    within(incoming.ended()).await;
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_by_rfc4733_and_by_info_and_messages_arrive() {
    let alice = peer(builder(41_800..=41_899), accept).await;
    let mut bob = peer(builder(41_900..=41_999), accept).await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;

    within(call.send_dtmf("7#", DtmfMethod::Info))
        .await
        .unwrap();
    for expected in ['7', '#'] {
        let digit = bob
            .expect(|seen| match seen {
                Seen::Dtmf(digit, DtmfMethod::Info) => Some(digit),
                _ => None,
            })
            .await;
        assert_eq!(digit, expected);
    }
    within(call.send_dtmf("5", DtmfMethod::Rfc4733))
        .await
        .unwrap();
    let digit = bob
        .expect(|seen| match seen {
            Seen::Dtmf(digit, DtmfMethod::Rfc4733) => Some(digit),
            _ => None,
        })
        .await;
    assert_eq!(digit, '5');
    // The same digits wait on the call itself, in order, for an engine that awaits them.
    for expected in ['7', '#', '5'] {
        assert_eq!(within(incoming.next_dtmf()).await, Some(expected));
    }
    let mut events = incoming.events();
    assert!(matches!(
        call.send_dtmf("x", DtmfMethod::Info).await,
        Err(SessionError::InvalidInput { .. })
    ));
    within(call.send_message("hello bob")).await.unwrap();
    let text = bob
        .expect(|seen| match seen {
            Seen::Message(text) => Some(text),
            _ => None,
        })
        .await;
    assert_eq!(text, "hello bob");
    within(call.send_dtmf("9", DtmfMethod::Info)).await.unwrap();
    let digit = within(async {
        loop {
            let event = events.recv().await.expect("bus open");
            if let SessionEvent::DtmfReceived { digit, .. } = *event {
                break digit;
            }
        }
    })
    .await;
    assert_eq!(digit, '9', "the call's own event stream");
    call.hangup().await.unwrap();
    within(incoming.ended()).await;
    assert_eq!(
        within(incoming.next_dtmf()).await,
        Some('9'),
        "unread digits stay"
    );
    assert_eq!(within(incoming.next_dtmf()).await, None, "then the end");
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways() {
    let mut alice = peer(builder(42_000..=42_099), accept).await;
    let mut bob = peer(builder(42_100..=42_199), accept).await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;

    let (alice_sink, mut alice_heard) = ChannelSink::new(64);
    let (bob_sink, mut bob_heard) = ChannelSink::new(64);
    call.attach_sink(Box::new(alice_sink)).await.unwrap();
    incoming.attach_sink(Box::new(bob_sink)).await.unwrap();
    call.attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    incoming
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    // Skip the first frames (talk-spurt start), then check each side hears the other's tone.
    for _ in 0..5 {
        within(bob_heard.recv()).await.unwrap();
        within(alice_heard.recv()).await.unwrap();
    }
    let at_bob = within(bob_heard.recv()).await.unwrap();
    let at_alice = within(alice_heard.recv()).await.unwrap();
    assert!(
        goertzel_power(at_bob.samples(), 440.0) > 10.0 * goertzel_power(at_bob.samples(), 1000.0)
    );
    assert!(
        goertzel_power(at_alice.samples(), 1000.0)
            > 10.0 * goertzel_power(at_alice.samples(), 440.0)
    );
    let stats = call.stats().await.unwrap();
    let rtp = stats.rtp.expect("our media has RTP statistics");
    assert!(rtp.packets_sent > 5 && rtp.packets_received > 5, "{rtp:?}");
    assert!(stats.setup_time.is_some());
    assert!(
        call.final_stats().is_none(),
        "no final figures while the call runs"
    );
    let mut bus = alice
        .manager
        .events()
        .subscribe(session_core::Filter::session(call.id()));
    call.hangup().await.unwrap();
    within(incoming.ended()).await;
    within(call.ended()).await;

    // The figures survive the call: the handle answers with the final ones, every time the
    // same, and the handler and the bus got them too (what a CDR is built from).
    let ended_with = alice
        .expect(|seen| match seen {
            Seen::Ended(ended, _, stats) if ended.id() == call.id() => Some(stats),
            _ => None,
        })
        .await;
    let last = within(call.stats())
        .await
        .expect("stats answer after the end");
    let final_rtp = last.rtp.expect("the final RTP figures");
    assert!(
        final_rtp.packets_received >= rtp.packets_received,
        "{final_rtp:?}"
    );
    assert!(final_rtp.mos.is_some(), "audio was received: a MOS");
    assert_eq!(
        ended_with.talk_time, last.talk_time,
        "on_call_ended had them"
    );
    let again = call.stats().await.unwrap();
    assert_eq!(
        again.talk_time, last.talk_time,
        "talk time stopped at the end"
    );
    assert!(
        last.playout.is_some_and(|p| p.played > 0),
        "{:?}",
        last.playout
    );
    let summary = within(async {
        loop {
            let event = bus.recv().await.expect("bus open");
            if let SessionEvent::SessionTerminated { summary, .. } = &*event {
                break summary.clone();
            }
        }
    })
    .await;
    assert_eq!(summary.talk_time, last.talk_time);
    assert_eq!(summary.packets_received, final_rtp.packets_received);
    assert_eq!(summary.mos, final_rtp.mos);
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_moves_the_caller_to_the_target() {
    let mut alice = peer(signaling_only(), accept).await;
    let mut bob = peer(signaling_only(), accept).await;
    let referred_by = Arc::new(parking_lot::Mutex::new(None::<String>));
    let seen_at_carol = referred_by.clone();
    let mut carol = peer(signaling_only(), move |call| {
        *seen_at_carol.lock() = call.header("Referred-By").map(str::to_owned);
        CallDecision::accept()
    })
    .await;
    let (call, at_bob) = support::connect(&alice, &mut bob).await;

    // Bob (transferor) sends Alice (transferee) to Carol.
    within(at_bob.transfer(&carol.uri("carol"))).await.unwrap();
    let target = alice
        .expect(|seen| match seen {
            Seen::Transfer(target) => Some(target),
            _ => None,
        })
        .await;
    assert_eq!(target, carol.uri("carol"));
    let at_carol = carol.incoming().await;
    within(at_carol.wait_for(CallState::is_established)).await;
    // RFC 3892: the INVITE the REFER triggered names who referred it (Bob).
    let referrer = referred_by
        .lock()
        .clone()
        .expect("the INVITE carries Referred-By");
    assert!(
        referrer.contains(&bob.manager.local_addr().to_string()),
        "{referrer}"
    );
    assert_eq!(within(at_bob.ended()).await, CallState::Terminated);
    assert_eq!(within(call.ended()).await, CallState::Terminated);
    let new_leg = call.transferred_to().expect("the transfer's call is known");
    // Any session id turns back into a handle while the session lives.
    let by_id = within(alice.manager.session(new_leg))
        .await
        .expect("the new leg is alive");
    assert_eq!(by_id.id(), new_leg);
    assert!(
        within(alice.manager.session(call.id())).await.is_none(),
        "ended: no handle"
    );
    let new_call = alice
        .expect(|seen| match seen {
            Seen::Established(call) if call.id() == new_leg => Some(call),
            _ => None,
        })
        .await;
    assert_eq!(new_call.state(), CallState::Active);
    new_call.hangup().await.unwrap();
    within(at_carol.ended()).await;
    for peer in [&alice, &bob, &carol] {
        assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfer_keeps_the_call_up() {
    let alice = peer_with(
        signaling_only(),
        accept,
        TransferDecision::Refuse(StatusCode::DECLINE),
    )
    .await;
    let mut bob = peer(signaling_only(), accept).await;
    let (call, at_bob) = support::connect(&alice, &mut bob).await;
    let error = within(at_bob.transfer("sip:carol@127.0.0.1:5999"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::DECLINE));
    assert_eq!(at_bob.state(), CallState::Active);
    assert_eq!(call.state(), CallState::Active);
    call.hangup().await.unwrap();
    within(at_bob.ended()).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_interval_too_small_is_retried_with_the_peers_min_se() {
    let short = SessionTimerConfig {
        expires: Duration::from_secs(90),
        min_se: Duration::from_secs(90),
    };
    let strict = SessionTimerConfig {
        expires: Duration::from_secs(1800),
        min_se: Duration::from_secs(600),
    };
    let alice = peer(signaling_only().session_timer(short), accept).await;
    let mut bob = peer(signaling_only().session_timer(strict), accept).await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    within(call.answered()).await.unwrap();
    let request = bob
        .expect(|seen| match seen {
            Seen::Incoming(_, request) => Some(request),
            _ => None,
        })
        .await;
    let (interval, _) = request.session_expires().unwrap().unwrap();
    assert_eq!(interval, 600, "the retry asks for the peer's Min-SE");
    assert_eq!(request.cseq().unwrap().seq, 2);
    call.hangup().await.unwrap();
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_call_and_the_peer_sees_bye() {
    let alice = peer(signaling_only(), accept).await;
    let mut bob = peer(signaling_only(), accept).await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
        within(call.answered()).await.unwrap();
        calls.push(call);
    }
    let mut at_bob = Vec::new();
    for _ in 0..3 {
        at_bob.push(bob.incoming().await);
    }
    within(alice.manager.shutdown()).await;
    assert_eq!(alice.manager.active_calls(), 0);
    for call in &calls {
        assert_eq!(call.state(), CallState::Terminated);
    }
    for call in &at_bob {
        assert_eq!(within(call.ended()).await, CallState::Terminated);
    }
    assert!(matches!(
        alice.manager.call(&bob.uri("bob")).await,
        Err(SessionError::Shutdown)
    ));
    assert_released(&bob).await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_sdp_is_answered_verbatim() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let alice = peer(signaling_only(), accept).await;
    let bob = peer(signaling_only(), move |_| {
        CallDecision::Accept(AcceptOptions::with_sdp(sdp))
    })
    .await;
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    within(call.answered()).await.unwrap();
    assert_eq!(call.stats().await.unwrap().codec.as_deref(), Some("PCMU"));
    call.hangup().await.unwrap();
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracer_keeps_each_sides_timeline_and_flags_an_unanswered_call() {
    use session_core::{HealthKind, SessionTracer};
    let alice_trace = SessionTracer::default();
    let bob_trace = SessionTracer::default();
    let mut alice = peer(signaling_only().tracer(alice_trace.clone()), accept).await;
    let mut bob = peer(signaling_only().tracer(bob_trace.clone()), accept).await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;
    call.hangup().await.unwrap();
    // The handler hears of the end after the last event was published (and traced).
    for side in [&mut alice, &mut bob] {
        side.expect(|seen| matches!(seen, Seen::Ended(..)).then_some(()))
            .await;
    }

    let ours = alice_trace
        .timeline(call.id())
        .expect("alice traced her call")
        .render();
    let theirs = bob_trace
        .timeline(incoming.id())
        .expect("bob traced his")
        .render();
    for (text, lines) in [
        (
            &ours,
            ["→ INVITE", "← 200 OK", "→ ACK", "→ BYE", "terminated"],
        ),
        (
            &theirs,
            ["← INVITE", "→ 200 OK", "← ACK", "← BYE", "terminated"],
        ),
    ] {
        let mut from = 0;
        for line in lines {
            let at = text[from..]
                .find(line)
                .unwrap_or_else(|| panic!("{line:?} missing, in order, from:\n{text}"));
            from += at + line.len();
        }
    }
    assert!(
        alice_trace
            .health(std::time::Instant::now() + Duration::from_secs(3600))
            .is_empty()
    );

    // A call nobody answers is flagged once the answer timeout has passed.
    let ringing = peer(signaling_only(), |_| CallDecision::Defer).await;
    let stuck = alice.manager.call(&ringing.uri("carol")).await.unwrap();
    within(stuck.wait_for(|s| s == CallState::Ringing)).await;
    let later = std::time::Instant::now() + Duration::from_secs(120);
    let issues = alice_trace.health(later);
    assert!(
        issues.iter().any(
            |i| i.session == stuck.id() && matches!(i.kind, HealthKind::NoFinalResponse { .. })
        ),
        "{issues:?}"
    );
    stuck.cancel().await.unwrap();
    within(stuck.ended()).await;
    for manager in [&alice.manager, &bob.manager, &ringing.manager] {
        manager.shutdown().await;
    }
}

// In virtual time, so "at once" is exact: no time passes before the refused connect fails the
// call, where Timer B would take 32 s.
#[tokio::test(start_paused = true)]
async fn a_call_to_a_closed_tcp_port_fails_with_a_transport_error_at_once() {
    let alice = peer(signaling_only(), accept).await;
    // Bind then drop a listener: nothing listens on that port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let target = format!("sip:nobody@127.0.0.1:{port};transport=tcp");
    let started = tokio::time::Instant::now();
    let call = alice.manager.call(&target).await.unwrap();
    let error = within(call.answered()).await.unwrap_err();
    assert!(matches!(error, SessionError::Transport), "{error:?}");
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(call.state(), CallState::Failed(FailureReason::Transport));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_released(&alice).await;
    alice.manager.shutdown().await;
}

// In virtual time (see the RFC 4028 test below), so "at once" is exact: Timer B would end the
// call at 32 s, and an error seen only by the next send would end it with Timer A's first
// retransmission at 500 ms (as it did before the driver watched the socket's error
// readiness); the ICMP error ends it before any timer.
#[tokio::test(start_paused = true)]
async fn a_call_to_a_closed_udp_port_fails_with_a_transport_error_at_once() {
    let alice = peer(signaling_only(), accept).await;
    // Bind then drop a socket: the INVITE to its port draws an ICMP port unreachable, a
    // transport error (RFC 3261 §18.4), not 32 s of Timer B.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let started = tokio::time::Instant::now();
    let call = alice
        .manager
        .call(&format!("sip:nobody@127.0.0.1:{port}"))
        .await
        .unwrap();
    let error = within(call.answered()).await.unwrap_err();
    assert!(matches!(error, SessionError::Transport), "{error:?}");
    assert_eq!(call.state(), CallState::Failed(FailureReason::Transport));
    let after = started.elapsed();
    // No time passes at all: the ICMP error wakes the manager, no timer does.
    assert_eq!(after, Duration::ZERO, "failed after {after:?}");
    assert_released(&alice).await;
    alice.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_never_acked_ends_the_call_as_timed_out_and_releases_it() {
    use session_core::crates::dialog::transaction::TimerConfig;
    use session_core::crates::sip::{Message, Method, Uri};
    use session_simnet::sip::ScriptedPeer;
    let timers = TimerConfig {
        t1: Duration::from_millis(20),
        ..TimerConfig::default()
    };
    let mut bob = peer(builder(42_200..=42_299).timers(timers), accept).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&bob.uri("bob")).unwrap();
    let mut caller = ScriptedPeer::new("alice", socket.local_addr().unwrap(), target);
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = caller.invite_with_body(Some(("application/sdp", offer.into())));
    let server = bob.manager.local_addr();
    socket.send_to(&invite.to_bytes(), server).await.unwrap();
    // The caller never ACKs: the 2xx is retransmitted, then the call is ended with BYE.
    let mut buf = vec![0u8; 65_535];
    let mut oks = 0;
    let bye = within(async {
        loop {
            let (len, _) = socket.recv_from(&mut buf).await.unwrap();
            match Message::parse(buf[..len].to_vec()).unwrap() {
                Message::Response(r) if r.status == StatusCode::OK => oks += 1,
                Message::Request(r) if r.method == Method::Bye => return r,
                _ => {}
            }
        }
    })
    .await;
    assert!(oks >= 2, "the 2xx was retransmitted ({oks} seen)");
    let ok = caller.respond(&bye, StatusCode::OK);
    socket.send_to(&ok.to_bytes(), server).await.unwrap();
    let reason = bob
        .expect(|seen| match seen {
            Seen::Ended(_, reason, _) => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::Failed(FailureReason::Timeout));
    assert_released(&bob).await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_costs_one_call_a_500_not_the_manager() {
    let alice = peer(signaling_only(), accept).await;
    let bob = peer(signaling_only(), |call| {
        if call.request_uri().user() == Some("boom") {
            panic!("the application's bug");
        }
        CallDecision::accept()
    })
    .await;
    let doomed = alice.manager.call(&bob.uri("boom")).await.unwrap();
    let error = within(doomed.answered()).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVER_INTERNAL_ERROR));
    let fine = alice.manager.call(&bob.uri("bob")).await.unwrap();
    within(fine.answered()).await.unwrap();
    fine.hangup().await.unwrap();
    within(fine.ended()).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uas_grants_the_session_interval_asked_for_and_names_the_refresher() {
    use session_core::crates::sip::{Header, HeaderName, Message, Uri};
    use session_simnet::sip::ScriptedPeer;
    let timer = SessionTimerConfig {
        expires: Duration::from_secs(1800),
        min_se: Duration::from_secs(120),
    };
    let bob = peer(signaling_only().session_timer(timer), accept).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&bob.uri("bob")).unwrap();
    let mut caller = ScriptedPeer::new("alice", socket.local_addr().unwrap(), target);
    let server = bob.manager.local_addr();
    let mut buf = vec![0u8; 65_535];
    let mut send_and_get_final = async |extra: Vec<Header>| {
        caller.new_call();
        let mut invite = caller.invite();
        for header in extra {
            invite.headers.push(header);
        }
        socket.send_to(&invite.to_bytes(), server).await.unwrap();
        within(async {
            loop {
                let (len, _) = socket.recv_from(&mut buf).await.unwrap();
                if let Message::Response(r) = Message::parse(buf[..len].to_vec()).unwrap()
                    && r.status.is_final()
                {
                    return r;
                }
            }
        })
        .await
    };
    // A UAC that supports timers and asks for 600 s gets them, refreshing itself (§9).
    let ok = send_and_get_final(vec![
        Header::new(HeaderName::Supported, "timer"),
        Header::new(HeaderName::SessionExpires, "600"),
    ])
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.headers.get_str(HeaderName::SessionExpires),
        Some("600;refresher=uac")
    );
    assert_eq!(ok.headers.get_str(HeaderName::Require), Some("timer"));
    // Below our Min-SE: 422 with it.
    let small = send_and_get_final(vec![
        Header::new(HeaderName::Supported, "timer"),
        Header::new(HeaderName::SessionExpires, "100"),
    ])
    .await;
    assert_eq!(small.status, StatusCode::SESSION_INTERVAL_TOO_SMALL);
    assert_eq!(small.headers.get_str(HeaderName::MinSe), Some("120"));
    // A UAC without timer support: we refresh, and require nothing of it.
    let plain = send_and_get_final(Vec::new()).await;
    assert_eq!(
        plain.headers.get_str(HeaderName::SessionExpires),
        Some("1800;refresher=uas")
    );
    assert_eq!(plain.headers.get_str(HeaderName::Require), None);
    bob.manager.shutdown().await;
}

/// A raw-socket caller for the session-timer test: sends an INVITE with `extra` headers and
/// ACKs the 200; returns the peer, its socket and bob's address.
async fn timed_caller(
    bob: &support::Peer,
    user: &str,
    extra: &[(session_core::crates::sip::HeaderName, &str)],
) -> (session_simnet::sip::ScriptedPeer, tokio::net::UdpSocket) {
    use session_core::crates::sip::{Header, Uri};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&bob.uri("bob")).unwrap();
    let mut caller =
        session_simnet::sip::ScriptedPeer::new(user, socket.local_addr().unwrap(), target);
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut invite = caller.invite_with_body(Some(("application/sdp", offer.into())));
    for (name, value) in extra {
        invite.headers.push(Header::new(*name, *value));
    }
    let server = bob.manager.local_addr();
    socket.send_to(&invite.to_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, _) = within(socket.recv_from(&mut buf)).await.unwrap();
        if caller
            .expect_response(Some(buf[..len].to_vec()), StatusCode::OK)
            .is_ok()
        {
            break;
        }
    }
    socket
        .send_to(&caller.ack().to_bytes(), server)
        .await
        .unwrap();
    (caller, socket)
}

/// The next request bob sends to `socket` (retransmitted responses skipped), within `limit`.
async fn next_request(
    socket: &tokio::net::UdpSocket,
    limit: Duration,
) -> session_core::crates::sip::Request {
    use session_core::crates::sip::Message;
    let mut buf = vec![0u8; 65_535];
    tokio::time::timeout(limit, async {
        loop {
            let (len, _) = socket.recv_from(&mut buf).await.unwrap();
            if let Message::Request(request) = Message::parse(buf[..len].to_vec()).unwrap() {
                return request;
            }
        }
    })
    .await
    .expect("a request from bob in time")
}

// RFC 4028 on the wire, in virtual time: the runtime's clock is paused and jumps to the next
// timer whenever every task waits, and the manager reads that clock, so the 60 s of protocol
// time take milliseconds and the refresh and the expiry land at exact instants.
#[tokio::test(start_paused = true)]
async fn session_timers_refresh_at_half_the_interval_and_expire_without_refresh() {
    use session_core::crates::sip::{HeaderName, Method};
    let timer = SessionTimerConfig {
        expires: Duration::from_secs(90),
        min_se: Duration::from_secs(90),
    };
    let mut bob = peer(signaling_only().session_timer(timer), accept).await;
    let server = bob.manager.local_addr();
    let started = tokio::time::Instant::now();
    // Carol's UA has no timer support: bob is the refresher and refreshes by UPDATE at 45 s.
    let (mut carol, carol_socket) = timed_caller(
        &bob,
        "carol",
        &[(HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, UPDATE")],
    )
    .await;
    // Dave asks for 90 s and to refresh himself, then never does: bob ends it at 90 − 30 s.
    let (mut dave, dave_socket) = timed_caller(
        &bob,
        "dave",
        &[
            (HeaderName::Supported, "timer"),
            (HeaderName::SessionExpires, "90;refresher=uac"),
        ],
    )
    .await;
    let refreshed = async {
        let update = next_request(&carol_socket, Duration::from_secs(55)).await;
        let at = started.elapsed();
        carol_socket
            .send_to(&carol.respond(&update, StatusCode::OK).to_bytes(), server)
            .await
            .unwrap();
        (update, at)
    };
    let expired = async {
        let bye = next_request(&dave_socket, Duration::from_secs(70)).await;
        let at = started.elapsed();
        dave_socket
            .send_to(&dave.respond(&bye, StatusCode::OK).to_bytes(), server)
            .await
            .unwrap();
        (bye, at)
    };
    let ((update, refreshed_at), (bye, expired_at)) = tokio::join!(refreshed, expired);
    assert_eq!(update.method, Method::Update);
    assert!(update.body.is_empty(), "a refresh UPDATE carries no offer");
    assert_eq!(
        update.headers.get_str(HeaderName::SessionExpires),
        Some("90;refresher=uas")
    );
    // §10: the refresher refreshes at half the interval; the other side gives up at the
    // interval minus min(32 s, a third of it) — 90 − 30 s — when no refresh came.
    let close_to = |at: Duration, secs: u64| {
        let at = at.as_millis();
        let expected = u128::from(secs) * 1000;
        (expected..expected + 50).contains(&at)
    };
    assert!(
        close_to(refreshed_at, 45),
        "refreshed after {refreshed_at:?}"
    );
    assert_eq!(bye.method, Method::Bye);
    assert!(close_to(expired_at, 60), "expired after {expired_at:?}");
    let reason = bob
        .expect(|seen| match seen {
            Seen::Ended(_, reason, _) => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::Failed(FailureReason::Timeout));
    // Carol's call is still up; she ends it.
    carol_socket
        .send_to(&carol.bye().to_bytes(), server)
        .await
        .unwrap();
    let reason = bob
        .expect(|seen| match seen {
            Seen::Ended(_, reason, _) => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::RemoteHangup);
    assert_released(&bob).await;
    bob.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_engine_takes_calls_from_a_bounded_queue() {
    let alice = peer(signaling_only(), accept).await;
    let (handler, mut incoming) = session_core::IncomingCalls::channel(1);
    let bob = signaling_only().handler(handler).start().await.unwrap();
    let target = format!("sip:bob@{}", bob.local_addr());

    // The first call waits in the queue, ringing, until the engine takes it.
    let first = alice.manager.call(&target).await.unwrap();
    within(first.wait_for(|s| s == CallState::Ringing)).await;
    // The queue holds one: the second caller is told to come back later.
    let second = alice.manager.call(&target).await.unwrap();
    assert!(matches!(
        within(second.ended()).await,
        CallState::Failed(FailureReason::Rejected(StatusCode::SERVICE_UNAVAILABLE))
    ));
    let queued = within(incoming.next()).await.expect("the first call");
    assert_eq!(queued.session.call_id(), first.call_id());
    queued.session.accept().await.unwrap();
    within(first.answered()).await.unwrap();
    first.hangup().await.unwrap();
    within(queued.session.ended()).await;
    alice.manager.shutdown().await;
    bob.shutdown().await;
    assert!(
        within(incoming.next()).await.is_none(),
        "the manager is gone"
    );
}

/// Whether `heard` carries `tone` well above `other` (by 20 dB), once what was buffered before
/// the change being checked has played out.
async fn hears_tone(
    heard: &mut tokio::sync::mpsc::Receiver<session_core::crates::media::AudioFrame>,
    tone: f64,
    other: f64,
) -> bool {
    while heard.try_recv().is_ok() {}
    // The jitter buffer still holds up to a few hundred ms of the audio before the change.
    for _ in 0..15 {
        within(heard.recv()).await.expect("audio");
    }
    let mut samples = Vec::new();
    for _ in 0..10 {
        let frame = within(heard.recv()).await.expect("audio");
        samples.extend_from_slice(frame.samples());
    }
    goertzel_power(&samples, tone) > 100.0 * goertzel_power(&samples, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_bridged_hear_each_other_and_get_their_media_back() {
    let alice = peer(builder(42_400..=42_499), accept).await;
    let carol = peer(builder(42_500..=42_599), accept).await;
    let mut bob = peer(builder(42_600..=42_699), accept).await;
    let (from_alice, at_bob_a) = support::connect(&alice, &mut bob).await;
    let (from_carol, at_bob_c) = support::connect(&carol, &mut bob).await;
    let (sink, mut alice_hears) = ChannelSink::new(64);
    from_alice.attach_sink(Box::new(sink)).await.unwrap();
    let (sink, mut carol_hears) = ChannelSink::new(64);
    from_carol.attach_sink(Box::new(sink)).await.unwrap();
    from_alice
        .attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    from_carol
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    at_bob_a
        .attach_source(Box::new(ToneSource::new(2000.0, 8000)))
        .await
        .unwrap();
    assert!(
        hears_tone(&mut alice_hears, 2000.0, 1000.0).await,
        "bob's own prompt first"
    );

    // Bob's engine bridges its two legs: alice and carol talk through bob's relay.
    let bridge = bob
        .manager
        .bridge_calls(&at_bob_a, &at_bob_c)
        .await
        .unwrap();
    assert_eq!(bob.manager.bridge_of(&at_bob_a), Some(bridge));
    assert_eq!(
        bob.manager.bridge_stats(bridge).unwrap().technology,
        session_core::Technology::Relay
    );
    assert!(
        hears_tone(&mut alice_hears, 1000.0, 2000.0).await,
        "alice hears carol"
    );
    assert!(
        hears_tone(&mut carol_hears, 440.0, 2000.0).await,
        "carol hears alice"
    );
    assert!(
        matches!(
            at_bob_a
                .attach_source(Box::new(ToneSource::new(2000.0, 8000)))
                .await,
            Err(SessionError::InvalidState { .. })
        ),
        "a bridged leg's audio belongs to the bridge"
    );

    // Alice's leg leaves: bob's own media runs again on the same stream.
    at_bob_a.leave_bridge().await.unwrap();
    assert_eq!(bob.manager.bridge_of(&at_bob_a), None);
    at_bob_a
        .attach_source(Box::new(ToneSource::new(2000.0, 8000)))
        .await
        .unwrap();
    assert!(
        hears_tone(&mut alice_hears, 2000.0, 1000.0).await,
        "bob's prompt again"
    );

    // Carol hangs up while bridged: her leg leaves the bridge and its ports come back.
    from_carol.hangup().await.unwrap();
    // The state turns final first; the leg comes back from the bridge right after.
    within(at_bob_c.released()).await;
    assert!(at_bob_c.final_stats().is_some());
    assert_eq!(bob.manager.bridge_members(bridge), Some(Vec::new()));
    bob.manager.destroy_bridge(bridge).await.unwrap();
    from_alice.hangup().await.unwrap();
    within(at_bob_a.ended()).await;
    for peer in [&alice, &bob, &carol] {
        assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_manager_draws_the_same_call_ids_tags_and_branches_again() {
    use session_core::crates::sip::{Message, Request};
    /// The INVITE a manager seeded with `seed` sends for its first call.
    async fn first_invite(seed: u64) -> Request {
        let manager = signaling_only().rng_seed(seed).start().await.unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = format!("sip:x@{}", socket.local_addr().unwrap());
        let caller = manager.clone();
        let call = tokio::spawn(async move { caller.call(&target).await });
        let mut buf = vec![0u8; 65_535];
        let (len, _) = within(socket.recv_from(&mut buf)).await.unwrap();
        let Ok(Message::Request(invite)) = Message::parse(buf[..len].to_vec()) else {
            panic!("not a request")
        };
        let call = call.await.unwrap().unwrap();
        let _ = call.cancel().await;
        manager.shutdown().await;
        invite
    }
    let draws = |invite: &Request| {
        (
            invite.call_id().unwrap().to_owned(),
            invite.from().unwrap().tag().unwrap().to_owned(),
            invite.top_via().unwrap().branch().unwrap().to_owned(),
        )
    };
    let (a, b, c) = (
        first_invite(7).await,
        first_invite(7).await,
        first_invite(8).await,
    );
    assert_eq!(draws(&a), draws(&b), "the same seed, the same draws");
    let (other_id, other_tag, other_branch) = draws(&c);
    let (id, tag, branch) = draws(&a);
    assert!(id != other_id && tag != other_tag && branch != other_branch);
}

/// A B2BUA on its own manager: every incoming call is carried by
/// `session_core::b2bua::connect` to the same user at `host`, and each call's outcome is sent
/// on the returned channel.
async fn b2bua_to(
    ports: std::ops::RangeInclusive<u16>,
    host: std::net::SocketAddr,
) -> (
    session_core::SessionManager,
    tokio::sync::mpsc::UnboundedReceiver<session_core::b2bua::B2buaOutcome>,
) {
    let (handler, mut incoming) = session_core::IncomingCalls::channel(8);
    let handler = handler.deferring_with(CallDecision::DeferSilently);
    let manager = builder(ports).handler(handler).start().await.unwrap();
    // Test-only: one outcome per call the test places (a handful), read by the test.
    let (outcomes, outcome_rx) = tokio::sync::mpsc::unbounded_channel();
    let b2bua = manager.clone();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            let user = call.request_uri().user().unwrap_or("x").to_owned();
            let target = format!("sip:{user}@{host}");
            let (manager, outcomes) = (b2bua.clone(), outcomes.clone());
            tokio::spawn(async move {
                let options = session_core::b2bua::B2buaOptions::default().copy_header("Subject");
                let outcome = session_core::b2bua::connect(&manager, &call, &target, options)
                    .await
                    .unwrap();
                let _ = outcomes.send(outcome);
            });
        }
    });
    (manager, outcome_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b2bua_connects_two_calls_and_carries_status_cancel_and_bye() {
    use session_core::b2bua::B2buaOutcome;
    let alice = peer(builder(42_800..=42_849), accept).await;
    let subject = Arc::new(parking_lot::Mutex::new(None::<String>));
    let seen_subject = subject.clone();
    let mut carol = peer(builder(42_850..=42_899), move |call| {
        *seen_subject.lock() = call.header("Subject").map(str::to_owned);
        match call.request_uri().user() {
            Some("busy") => CallDecision::Reject(StatusCode::BUSY_HERE),
            Some("ringing") => CallDecision::Defer,
            _ => CallDecision::accept(),
        }
    })
    .await;
    let carol_at = carol.manager.local_addr();
    let (bob, mut outcomes) = b2bua_to(42_900..=42_999, carol_at).await;
    let via_bob = |user: &str| format!("sip:{user}@{}", bob.local_addr());

    // 1. Answered: media both ways through bob's bridge, the Subject crossed, BYE ends both.
    let call = alice
        .manager
        .call_with(
            &via_bob("carol"),
            session_core::CallOptions::default().header("Subject", "quarterly numbers"),
        )
        .await
        .unwrap();
    within(call.answered()).await.unwrap();
    let at_carol = carol.incoming().await;
    within(at_carol.wait_for(CallState::is_established)).await;
    assert_eq!(subject.lock().as_deref(), Some("quarterly numbers"));
    assert_eq!(
        at_carol.remote_uri(),
        call.local_uri(),
        "the B leg presents the caller's address (caller-ID passthrough)"
    );
    let (sink, mut alice_hears) = ChannelSink::new(64);
    call.attach_sink(Box::new(sink)).await.unwrap();
    let (sink, mut carol_hears) = ChannelSink::new(64);
    at_carol.attach_sink(Box::new(sink)).await.unwrap();
    call.attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    at_carol
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    assert!(
        hears_tone(&mut alice_hears, 1000.0, 440.0).await,
        "alice hears carol"
    );
    assert!(
        hears_tone(&mut carol_hears, 440.0, 1000.0).await,
        "carol hears alice"
    );
    at_carol.hangup().await.unwrap();
    assert_eq!(
        within(call.ended()).await,
        CallState::Terminated,
        "BYE from B ends A"
    );
    assert_eq!(within(outcomes.recv()).await, Some(B2buaOutcome::Completed));

    // 2. The B leg's refusal reaches the caller with its status.
    let call = alice
        .manager
        .call(&format!("sip:busy@{}", bob.local_addr()))
        .await;
    let call = call.unwrap();
    assert!(matches!(
        within(call.ended()).await,
        CallState::Failed(FailureReason::Rejected(StatusCode::BUSY_HERE))
    ));
    assert_eq!(
        within(outcomes.recv()).await,
        Some(B2buaOutcome::Refused(StatusCode::BUSY_HERE))
    );

    // 3. The caller gives up while B rings: the CANCEL reaches B.
    let call = alice
        .manager
        .call(&format!("sip:ringing@{}", bob.local_addr()))
        .await
        .unwrap();
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    // Carol saw the refused call first, then this one.
    let mut ringing = carol.incoming().await;
    if ringing.state() != CallState::Ringing {
        ringing = carol.incoming().await;
    }
    call.cancel().await.unwrap();
    assert_eq!(within(ringing.ended()).await, CallState::Cancelled);
    assert_eq!(within(outcomes.recv()).await, Some(B2buaOutcome::Abandoned));

    for manager in [&alice.manager, &bob, &carol.manager] {
        support::assert_manager_released(manager).await;
    }
    alice.manager.shutdown().await;
    bob.shutdown().await;
    carol.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_replaces_the_consultation_call() {
    let mut alice = peer(signaling_only(), accept).await;
    let mut bob = peer(signaling_only(), accept).await;
    // Carol accepts everything; she notes which call an INVITE replaces.
    let replaced = Arc::new(parking_lot::Mutex::new(None::<session_core::SessionId>));
    let seen = replaced.clone();
    let mut carol = peer(signaling_only(), move |call| {
        *seen.lock() = call.replaces.as_ref().map(|old| old.id());
        CallDecision::accept()
    })
    .await;
    // Alice ⇄ Bob, then Bob consults Carol.
    let (alice_to_bob, bob_from_alice) = support::connect(&alice, &mut bob).await;
    let bob_to_carol = bob.manager.call(&carol.uri("carol")).await.unwrap();
    within(bob_to_carol.answered()).await.unwrap();
    let carol_from_bob = carol.incoming().await;
    within(carol_from_bob.wait_for(CallState::is_established)).await;
    assert!(replaced.lock().is_none());

    // Bob connects Alice to Carol: REFER with Replaces; Alice's INVITE replaces Bob's call.
    within(bob_from_alice.transfer_attended(&bob_to_carol))
        .await
        .unwrap();
    let carol_from_alice = carol.incoming().await;
    within(carol_from_alice.wait_for(CallState::is_established)).await;
    assert_eq!(
        *replaced.lock(),
        Some(carol_from_bob.id()),
        "Carol matched the Replaces to her call with Bob"
    );
    // The replaced call and the transferred one end; Alice and Carol talk.
    assert_eq!(within(carol_from_bob.ended()).await, CallState::Terminated);
    assert_eq!(within(bob_to_carol.ended()).await, CallState::Terminated);
    assert_eq!(within(bob_from_alice.ended()).await, CallState::Terminated);
    assert_eq!(within(alice_to_bob.ended()).await, CallState::Terminated);
    let new_leg = alice_to_bob.transferred_to().expect("the transfer's call");
    let alice_to_carol = within(alice.manager.session(new_leg)).await.expect("alive");
    assert_eq!(alice_to_carol.state(), CallState::Active);
    alice_to_carol.hangup().await.unwrap();
    within(carol_from_alice.ended()).await;
    let _ = alice.seen.try_recv();
    for peer in [&alice, &bob, &carol] {
        assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaces_is_matched_on_our_tags_and_refused_by_the_rfc_3891_rules() {
    use session_core::crates::sip::{Header, HeaderName, Message, Request};
    let mut bob = peer(signaling_only(), accept).await;
    let server = bob.manager.local_addr();
    // Mallory has a call with Bob (INVITE, 200, ACK from a raw socket).
    let (mut mallory, socket) = timed_caller(&bob, "mallory", &[]).await;
    let old_call = bob.incoming().await;
    within(old_call.wait_for(CallState::is_established)).await;
    let (call_id, her_tag, his_tag) = (
        mallory.call_id().to_owned(),
        mallory.local_tag().unwrap(),
        mallory.remote_tag().unwrap(),
    );
    let mut buf = vec![0u8; 65_535];
    let mut final_response = async |invite: Request| {
        socket.send_to(&invite.to_bytes(), server).await.unwrap();
        within(async {
            loop {
                let (len, _) = socket.recv_from(&mut buf).await.unwrap();
                if let Ok(Message::Response(r)) = Message::parse(buf[..len].to_vec())
                    && r.status.as_u16() >= 200
                {
                    break r;
                }
            }
        })
        .await
    };
    // From Bob's side: `to-tag` is his tag, `from-tag` hers.
    let cases = [
        (
            format!("{call_id};to-tag={her_tag};from-tag={his_tag}"),
            StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
        ),
        (
            format!("{call_id};to-tag={his_tag}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{call_id};to-tag={his_tag};from-tag={her_tag};early-only"),
            StatusCode::BUSY_HERE,
        ),
        (
            format!("{call_id};to-tag={his_tag};from-tag={her_tag}"),
            StatusCode::OK,
        ),
    ];
    for (replaces, expected) in cases {
        // A new call each time (new Call-ID, tag and branches), the old one's ids saved above.
        let fresh = &mut mallory;
        fresh.new_call();
        let mut invite = fresh.invite();
        invite
            .headers
            .push(Header::new(HeaderName::Replaces, replaces));
        let response = final_response(invite.clone()).await;
        assert_eq!(response.status, expected);
        let _ = fresh.expect_response(Some(response.to_bytes()), expected);
        let ack = if expected == StatusCode::OK {
            fresh.ack()
        } else {
            fresh.ack_failure(&response)
        };
        socket.send_to(&ack.to_bytes(), server).await.unwrap();
    }
    // The replacing call is up: Bob ends the replaced one with BYE.
    let bye = next_request(&socket, Duration::from_secs(5)).await;
    assert_eq!(bye.method, session_core::crates::sip::Method::Bye);
    assert_eq!(
        bye.call_id().unwrap(),
        call_id,
        "the old call is the one ended"
    );
    socket
        .send_to(&mallory.respond(&bye, StatusCode::OK).to_bytes(), server)
        .await
        .unwrap();
    assert_eq!(within(old_call.ended()).await, CallState::Terminated);
    bob.manager.shutdown().await;
}

/// A prompt plays to its end, the caller learns it (the future and the bus), and the stream
/// goes on with silence — a peer that times out on missing RTP keeps the call. Replacing and
/// detaching a source end it with their own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_plays_to_its_end_then_silence_keeps_the_stream_alive() {
    let alice = peer(builder(42_900..=42_949), accept).await;
    let mut bob = peer(builder(42_950..=42_999), accept).await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;
    let mut events = call.events();
    let (bob_sink, mut bob_heard) = ChannelSink::new(256);
    incoming.attach_sink(Box::new(bob_sink)).await.unwrap();

    call.attach_source(Box::new(
        ToneSource::new(1000.0, 8000).for_duration(Duration::from_millis(200)),
    ))
    .await
    .unwrap();
    within(call.playback_finished()).await;
    let end = within(async {
        loop {
            if let Ok(event) = events.recv().await
                && let SessionEvent::PlaybackFinished { end, .. } = *event
            {
                return end;
            }
        }
    })
    .await;
    assert_eq!(end, PlaybackEnd::Completed);
    // The tone reached bob; after it, frames keep coming, and they are silence.
    let mut heard_tone = false;
    let mut silent_after = 0;
    while silent_after < 25 {
        let frame = within(bob_heard.recv()).await.unwrap();
        let tone = goertzel_power(frame.samples(), 1000.0);
        if tone > 1e6 {
            heard_tone = true;
            silent_after = 0;
        } else if heard_tone && frame.samples().iter().all(|s| s.unsigned_abs() < 100) {
            silent_after += 1;
        }
    }
    assert!(heard_tone, "the prompt was heard");
    let before = call.stats().await.unwrap().rtp.unwrap().packets_sent;
    let received_before = incoming
        .stats()
        .await
        .unwrap()
        .rtp
        .unwrap()
        .packets_received;
    // 25 more frames of silence arrive as RTP (0.5 s), not as jitter-buffer concealment.
    for _ in 0..25 {
        within(bob_heard.recv()).await.unwrap();
    }
    let after = call.stats().await.unwrap().rtp.unwrap().packets_sent;
    let received_after = incoming
        .stats()
        .await
        .unwrap()
        .rtp
        .unwrap()
        .packets_received;
    assert!(
        after >= before + 20,
        "RTP kept flowing: {before} → {after} sent"
    );
    assert!(
        received_after >= received_before + 20,
        "and arriving: {received_before} → {received_after}"
    );

    // Replaced, then stopped.
    call.attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    call.attach_source(Box::new(ToneSource::new(880.0, 8000)))
        .await
        .unwrap();
    call.detach_source().await.unwrap();
    within(call.playback_finished()).await;
    let ends = within(async {
        let mut ends = Vec::new();
        while ends.len() < 2 {
            if let Ok(event) = events.recv().await
                && let SessionEvent::PlaybackFinished { end, .. } = *event
            {
                ends.push(end);
            }
        }
        ends
    })
    .await;
    assert_eq!(ends, [PlaybackEnd::Replaced, PlaybackEnd::Stopped]);

    call.hangup().await.unwrap();
    within(incoming.ended()).await;
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

/// A bridged caller puts the call on hold (re-INVITE `sendonly`): the bridge answers
/// `recvonly` and sends it nothing — not even silence — while the other side still hears
/// it; on resume the audio comes back, on the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_call_put_on_hold_by_its_peer_is_sent_nothing_until_resumed() {
    let alice = peer(builder(43_000..=43_049), accept).await;
    let carol = peer(builder(43_050..=43_099), accept).await;
    let mut bob = peer(builder(43_100..=43_199), accept).await;
    let (from_alice, at_bob_a) = support::connect(&alice, &mut bob).await;
    let (from_carol, at_bob_c) = support::connect(&carol, &mut bob).await;
    let (sink, mut alice_hears) = ChannelSink::new(64);
    from_alice.attach_sink(Box::new(sink)).await.unwrap();
    let (sink, mut carol_hears) = ChannelSink::new(64);
    from_carol.attach_sink(Box::new(sink)).await.unwrap();
    from_alice
        .attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    from_carol
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    bob.manager
        .bridge_calls(&at_bob_a, &at_bob_c)
        .await
        .unwrap();
    assert!(
        hears_tone(&mut alice_hears, 1000.0, 440.0).await,
        "alice hears carol"
    );

    within(from_alice.hold()).await.unwrap();
    // Bob's side takes note a moment after answering the re-INVITE.
    within(at_bob_a.wait_for(|s| s == CallState::OnHold)).await;
    assert!(at_bob_a.is_remote_hold());
    let member = bob.manager.member_stats(&at_bob_a).expect("bridged");
    assert!(
        !member.sending && !member.deaf && !member.muted,
        "{member:?}"
    );
    let received = || async {
        from_alice
            .stats()
            .await
            .unwrap()
            .rtp
            .unwrap()
            .packets_received
    };
    // Let what was in flight land, then nothing more may come.
    let mut quiet = tokio::time::interval(std::time::Duration::from_millis(100));
    quiet.tick().await;
    quiet.tick().await;
    let before = received().await;
    for _ in 0..5 {
        quiet.tick().await;
    }
    assert_eq!(received().await, before, "nothing sent to the holding peer");
    assert!(
        hears_tone(&mut carol_hears, 440.0, 1000.0).await,
        "carol still hears alice (sendonly)"
    );

    within(from_alice.resume()).await.unwrap();
    within(at_bob_a.wait_for(|s| s == CallState::Active)).await;
    assert!(!at_bob_a.is_remote_hold());
    assert!(
        hears_tone(&mut alice_hears, 1000.0, 440.0).await,
        "alice hears carol again"
    );
    let rtp = from_alice.stats().await.unwrap().rtp.unwrap();
    assert_eq!(
        rtp.packets_lost, 0,
        "one stream, no gap counted as loss: {rtp:?}"
    );

    from_alice.hangup().await.unwrap();
    from_carol.hangup().await.unwrap();
    within(at_bob_a.released()).await;
    within(at_bob_c.released()).await;
    for peer in [&alice, &bob, &carol] {
        assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

/// §21.4.6: a MESSAGE outside any call gets 405, and that 405's Allow does not list MESSAGE
/// (nor REFER); a 200 to OPTIONS lists everything a call supports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_outside_a_call_does_not_allow_the_method_it_refuses() {
    use session_core::crates::sip::{HeaderName, Message};
    let manager = signaling_only().start().await.unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let ask = |method: &str| {
        format!(
            "{method} sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-1\r\n\
             From: <sip:alice@{me}>;tag=a1\r\nTo: <sip:bob@{server}>\r\nCall-ID: {method}-1@x\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n\
             Content-Length: 2\r\n\r\nhi",
            server = manager.local_addr()
        )
    };
    let mut buf = vec![0u8; 4096];
    let mut answer = async |method: &str| {
        socket
            .send_to(ask(method).as_bytes(), manager.local_addr())
            .await
            .unwrap();
        let (len, _) = within(socket.recv_from(&mut buf)).await.unwrap();
        match Message::parse(bytes::Bytes::copy_from_slice(&buf[..len])).unwrap() {
            Message::Response(response) => response,
            Message::Request(_) => panic!("a request came back"),
        }
    };
    for method in ["MESSAGE", "REFER"] {
        let refused = answer(method).await;
        assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow: String = refused.headers.values(HeaderName::Allow).collect();
        assert!(allow.contains("INVITE"), "{allow}");
        assert!(
            !allow.contains(method),
            "{method} refused yet allowed: {allow}"
        );
    }
    let options = answer("OPTIONS").await;
    assert_eq!(options.status, StatusCode::OK);
    let allow: String = options.headers.values(HeaderName::Allow).collect();
    assert!(
        allow.contains("MESSAGE") && allow.contains("REFER"),
        "{allow}"
    );
    manager.shutdown().await;
}

/// Groups: calls placed into a group are admitted under its limit and are members from the
/// start; a group subscription sees its members' events; a call can be in several groups;
/// hanging up a group ends every member, and an ended call leaves every group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_admits_under_its_limit_follows_its_members_and_hangs_them_up() {
    use session_core::GroupId;
    let sales = GroupId::from_raw(9_001);
    let alice = peer(
        builder(43_200..=43_299).limits(Limits::default().max_for_group(sales, 2)),
        accept,
    )
    .await;
    let mut bob = peer(builder(43_300..=43_399), |_| CallDecision::Defer).await;
    let mut group_events = alice.manager.subscribe_group(sales);
    let mut all_events = alice
        .manager
        .events()
        .subscribe(session_core::Filter::all());
    let to_bob = bob.uri("bob");
    let place = || {
        alice
            .manager
            .call_with(&to_bob, session_core::CallOptions::default().group(sales))
    };
    let first = place().await.unwrap();
    let second = place().await.unwrap();
    assert!(
        matches!(place().await, Err(SessionError::Resources(_))),
        "the group's limit of 2 refuses a third call"
    );
    assert_eq!(
        alice.manager.group_members(sales),
        Some(vec![first.id(), second.id()])
    );
    // A second group, made by the manager, holding one of them.
    let vip = alice.manager.create_group();
    assert!(alice.manager.add_to_group(&first, vip).unwrap(), "joined");
    assert!(
        !alice.manager.add_to_group(&first, vip).unwrap(),
        "already a member"
    );
    assert_eq!(alice.manager.groups_of(&first), vec![sales, vip]);

    // The group subscription sees both members join, and their calls ringing.
    let mut joined = Vec::new();
    let mut ringing = Vec::new();
    while joined.len() < 2 || ringing.len() < 2 {
        let event = within(group_events.recv()).await.unwrap();
        match *event {
            SessionEvent::GroupMemberJoined { session_id, group } if group == sales => {
                joined.push(session_id);
            }
            SessionEvent::StateChanged {
                session_id,
                new: CallState::Ringing,
                ..
            } => ringing.push(session_id),
            _ => {}
        }
    }
    assert_eq!(joined, [first.id(), second.id()]);
    ringing.sort();
    let mut ids = vec![first.id(), second.id()];
    ids.sort();
    assert_eq!(ringing, ids);

    // Hang up the whole group: both calls are cancelled, both leave both groups.
    assert_eq!(alice.manager.hangup_group(sales).await, 2);
    assert_eq!(within(first.ended()).await, CallState::Cancelled);
    assert_eq!(within(second.ended()).await, CallState::Cancelled);
    let mut left = Vec::new();
    let mut empty = Vec::new();
    while left.len() < 3 || empty.len() < 2 {
        match *within(all_events.recv()).await.unwrap() {
            SessionEvent::GroupMemberLeft { session_id, group } => left.push((session_id, group)),
            SessionEvent::GroupEmpty { group } => empty.push(group),
            _ => {}
        }
    }
    assert!(left.contains(&(first.id(), vip)) && left.contains(&(second.id(), sales)));
    empty.sort();
    let mut groups = vec![sales, vip];
    groups.sort();
    assert_eq!(empty, groups, "both groups became empty");
    assert_eq!(alice.manager.group_members(sales), Some(Vec::new()));
    assert!(matches!(
        alice.manager.add_to_group(&first, sales),
        Err(SessionError::Ended(_))
    ));
    assert_eq!(alice.manager.dissolve_group(vip), Vec::new());
    assert_eq!(alice.manager.group_members(vip), None);
    // Bob saw two calls come and go.
    for _ in 0..2 {
        let call = bob.incoming().await;
        within(call.ended()).await;
    }
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

/// Dependencies: a consultation call depends on the call it consults for (ending with it), a
/// third call depends on the consultation (told only); cycles are refused; each dependent is
/// told when what it relied on ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_are_told_and_cascading_ones_end_with_what_they_depend_on() {
    use session_core::Cascade;
    let alice = peer(builder(43_400..=43_499), accept).await;
    let mut bob = peer(builder(43_500..=43_599), accept).await;
    let (original, _) = support::connect(&alice, &mut bob).await;
    let (consultation, consulted) = support::connect(&alice, &mut bob).await;
    let (note_taker, _) = support::connect(&alice, &mut bob).await;
    let m = &alice.manager;
    assert!(
        m.add_dependency(&consultation, &original, Cascade::EndDependent)
            .unwrap()
    );
    assert!(
        m.add_dependency(&note_taker, &consultation, Cascade::Notify)
            .unwrap()
    );
    assert!(matches!(
        m.add_dependency(&original, &note_taker, Cascade::Notify),
        Err(SessionError::DependencyCycle(_))
    ));
    assert!(matches!(
        m.add_dependency(&original, &original, Cascade::Notify),
        Err(SessionError::DependencyCycle(_))
    ));
    assert_eq!(m.dependents_of(&original), vec![consultation.id()]);
    assert_eq!(m.depends_on(&note_taker), vec![consultation.id()]);

    let mut events = m.events().subscribe(session_core::Filter::all());
    original.hangup().await.unwrap();
    // The consultation ends with it (cascade); bob's side of it gets a BYE.
    assert_eq!(within(consultation.ended()).await, CallState::Terminated);
    within(consulted.ended()).await;
    let mut told = Vec::new();
    while told.len() < 2 {
        if let SessionEvent::DependencyEnded { session_id, ended } =
            *within(events.recv()).await.unwrap()
        {
            told.push((session_id, ended));
        }
    }
    assert_eq!(
        told,
        [
            (consultation.id(), original.id()),
            (note_taker.id(), consultation.id())
        ]
    );
    // The note taker was only told: it is still up, and no longer depends on anything.
    assert_eq!(note_taker.state(), CallState::Active);
    assert!(m.depends_on(&note_taker).is_empty());
    assert!(matches!(
        m.add_dependency(&note_taker, &original, Cascade::Notify),
        Err(SessionError::Ended(_))
    ));
    note_taker.hangup().await.unwrap();
    within(note_taker.ended()).await;
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

/// Many tasks operating on one call at once — hang-up racing hold racing a transfer racing
/// DTMF racing the peer's BYE — end without a panic or a deadlock, and every count goes back
/// to zero. Twenty rounds, each on a fresh call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_racing_on_one_call_never_wedge_the_manager() {
    let alice = peer(builder(43_600..=43_699), accept).await;
    let mut bob = peer(builder(43_700..=43_799), accept).await;
    // Nobody listens here: over TCP the transfer's new call fails at once (refused).
    let nowhere = "sip:nobody@127.0.0.1:9;transport=tcp";
    for round in 0..20 {
        let (call, incoming) = support::connect(&alice, &mut bob).await;
        let mut racers = tokio::task::JoinSet::new();
        let c = call.clone();
        racers.spawn(async move { c.hold().await.err() });
        let c = call.clone();
        racers.spawn(async move { c.send_dtmf("12", DtmfMethod::Rfc4733).await.err() });
        let c = call.clone();
        racers.spawn(async move { c.transfer(nowhere).await.err() });
        let c = call.clone();
        racers.spawn(async move { c.hangup().await.err() });
        let i = incoming.clone();
        racers.spawn(async move { i.hangup().await.err() });
        let c = call.clone();
        racers.spawn(async move { c.reinvite().await.err() });
        let results = within(async {
            let mut done = Vec::new();
            while let Some(result) = racers.join_next().await {
                done.push(result.expect("no racer panicked"));
            }
            done
        })
        .await;
        assert_eq!(results.len(), 6, "round {round}");
        within(call.released()).await;
        within(incoming.released()).await;
        assert!(call.state().is_final() && incoming.state().is_final());
    }
    assert_released(&alice).await;
    assert_released(&bob).await;
    // The manager still works after all that.
    let (call, _) = support::connect(&alice, &mut bob).await;
    call.hangup().await.unwrap();
    within(call.released()).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

/// A peer that stops sending RTP (vanished) has its call ended with BYE and
/// `FailureReason::MediaTimeout` once the media timeout passes — but not while the call is
/// on hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_no_rtp_is_hung_up_after_the_media_timeout_unless_held() {
    let timeout = Duration::from_millis(300);
    let alice = peer(builder(43_800..=43_849).media_timeout(timeout), accept).await;
    // Bob's phone sends nothing (no source, no idle silence): as if it had vanished.
    let mut bob = peer(
        builder(43_850..=43_899).idle_audio(session_core::IdleAudio::Nothing),
        accept,
    )
    .await;
    let (call, incoming) = support::connect(&alice, &mut bob).await;
    within(call.hold()).await.unwrap();
    let mut wait = tokio::time::interval(3 * timeout);
    wait.tick().await;
    wait.tick().await;
    assert_eq!(call.state(), CallState::OnHold, "a held call is exempt");
    within(call.resume()).await.unwrap();
    assert_eq!(
        within(call.ended()).await,
        CallState::Failed(FailureReason::MediaTimeout)
    );
    assert_eq!(
        within(incoming.ended()).await,
        CallState::Terminated,
        "the peer got our BYE"
    );
    assert_released(&alice).await;
    assert_released(&bob).await;
    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
}

/// A PBX-style B2BUA: every incoming call is carried by `b2bua::connect` to the user's own
/// manager (`routes`: user → address), and every transfer its legs ask for is carried out
/// locally (`b2bua::transfer_locally`): no REFER leaves it.
async fn pbx_with_local_transfers(
    ports: std::ops::RangeInclusive<u16>,
    routes: Vec<(&'static str, std::net::SocketAddr)>,
) -> (
    session_core::SessionManager,
    tokio::sync::mpsc::UnboundedReceiver<session_core::b2bua::B2buaOutcome>,
) {
    use session_core::b2bua::{self, B2buaOptions};
    let (handler, mut incoming) = session_core::IncomingCalls::channel(8);
    let (handler, mut transfers) = handler
        .deferring_with(CallDecision::DeferSilently)
        .queueing_transfers(8);
    let manager = builder(ports).handler(handler).start().await.unwrap();
    // Test-only: one outcome per call the test places (a handful), read by the test.
    let (outcomes, outcome_rx) = tokio::sync::mpsc::unbounded_channel();
    let pbx = manager.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(call) = incoming.next() => {
                    let user = call.request_uri().user().unwrap_or("x").to_owned();
                    let host = routes.iter().find(|(name, _)| *name == user).unwrap().1;
                    let (manager, outcomes) = (pbx.clone(), outcomes.clone());
                    tokio::spawn(async move {
                        let target = format!("sip:{user}@{host}");
                        let outcome = b2bua::connect(&manager, &call, &target, B2buaOptions::default())
                            .await
                            .unwrap();
                        let _ = outcomes.send(outcome);
                    });
                }
                Some(transfer) = transfers.next() => {
                    let manager = pbx.clone();
                    tokio::spawn(async move {
                        b2bua::transfer_locally(&manager, &transfer, B2buaOptions::default())
                            .await
                            .unwrap();
                    });
                }
                else => break,
            }
        }
    });
    (manager, outcome_rx)
}

/// Alice and carol each play a tone and hear the other's: checked on both sides.
async fn talk(alice: &session_core::CallSession, carol: &session_core::CallSession) {
    let (sink, mut alice_hears) = ChannelSink::new(64);
    alice.attach_sink(Box::new(sink)).await.unwrap();
    let (sink, mut carol_hears) = ChannelSink::new(64);
    carol.attach_sink(Box::new(sink)).await.unwrap();
    alice
        .attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    carol
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    assert!(
        hears_tone(&mut alice_hears, 1000.0, 440.0).await,
        "alice hears carol"
    );
    assert!(
        hears_tone(&mut carol_hears, 440.0, 1000.0).await,
        "carol hears alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b2bua_carries_out_attended_and_blind_transfers_locally() {
    use session_core::b2bua::B2buaOutcome;
    let alice = peer(builder(39_000..=39_099), accept).await;
    let mut bob = peer(builder(39_100..=39_199), accept).await;
    let mut carol = peer(builder(39_200..=39_299), accept).await;
    let routes = vec![
        ("bob", bob.manager.local_addr()),
        ("carol", carol.manager.local_addr()),
    ];
    let (pbx, mut outcomes) = pbx_with_local_transfers(39_300..=39_399, routes).await;
    let via_pbx = |user: &str| format!("sip:{user}@{}", pbx.local_addr());

    // 1. Attended: alice → pbx → bob; bob consults carol through the pbx, then transfers.
    let alice_call = alice.manager.call(&via_pbx("bob")).await.unwrap();
    within(alice_call.answered()).await.unwrap();
    let bob_from_alice = bob.incoming().await;
    within(bob_from_alice.wait_for(CallState::is_established)).await;
    let bob_to_carol = bob.manager.call(&via_pbx("carol")).await.unwrap();
    within(bob_to_carol.answered()).await.unwrap();
    let carol_from_bob = carol.incoming().await;
    within(carol_from_bob.wait_for(CallState::is_established)).await;
    // The pbx pairs a call's legs just after answering its caller.
    within(async {
        while pbx.b2bua_calls() != 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;

    // Bob's REFER names the pbx's leg of his consultation call: the pbx joins alice and carol.
    within(bob_from_alice.transfer_attended(&bob_to_carol))
        .await
        .unwrap();
    assert_eq!(within(bob_from_alice.ended()).await, CallState::Terminated);
    assert_eq!(
        within(bob_to_carol.ended()).await,
        CallState::Terminated,
        "the pbx ended the replaced consultation call"
    );
    assert_eq!(
        within(outcomes.recv()).await,
        Some(B2buaOutcome::Transferred)
    );
    assert_eq!(
        pbx.b2bua_calls(),
        1,
        "alice's and carol's legs are one call now"
    );
    // Alice's and carol's own calls went on untouched (no new INVITE reached either).
    assert_eq!(alice_call.state(), CallState::Active);
    assert_eq!(carol_from_bob.state(), CallState::Active);
    talk(&alice_call, &carol_from_bob).await;
    while let Ok(seen) = carol.seen.try_recv() {
        assert!(
            !matches!(seen, Seen::Incoming(..)),
            "no REFER, no new INVITE"
        );
    }
    alice_call.hangup().await.unwrap();
    assert_eq!(within(carol_from_bob.ended()).await, CallState::Terminated);
    assert_eq!(within(outcomes.recv()).await, Some(B2buaOutcome::Completed));

    // 2. Blind: alice → pbx → bob; bob transfers her to carol; the pbx calls carol itself.
    let alice_call = alice.manager.call(&via_pbx("bob")).await.unwrap();
    within(alice_call.answered()).await.unwrap();
    let bob_from_alice = bob.incoming().await;
    within(bob_from_alice.wait_for(CallState::is_established)).await;
    within(bob_from_alice.transfer(&format!("sip:carol@{}", carol.manager.local_addr())))
        .await
        .unwrap();
    assert_eq!(within(bob_from_alice.ended()).await, CallState::Terminated);
    let carol_from_pbx = carol.incoming().await;
    within(carol_from_pbx.wait_for(CallState::is_established)).await;
    assert_eq!(
        carol_from_pbx.remote_uri(),
        alice_call.local_uri(),
        "the new leg presents the transferred party"
    );
    assert_eq!(pbx.b2bua_calls(), 1);
    talk(&alice_call, &carol_from_pbx).await;
    carol_from_pbx.hangup().await.unwrap();
    assert_eq!(within(alice_call.ended()).await, CallState::Terminated);
    assert_eq!(within(outcomes.recv()).await, Some(B2buaOutcome::Completed));

    assert_eq!(pbx.b2bua_calls(), 0);
    for manager in [&alice.manager, &bob.manager, &carol.manager, &pbx] {
        support::assert_manager_released(manager).await;
        manager.shutdown().await;
    }
}
