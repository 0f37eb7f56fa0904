//! Health rules: each fires exactly when its threshold is reached, not a nanosecond before,
//! and stops firing when what it waits for arrives. Time is driven by `Instant` arithmetic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_sip::Method;
use session_tracer::{Flow, HealthKind, HealthThresholds, SessionTracer, TraceEntry, TracerConfig};
use session_types::{CallState, FailureReason, SessionId, StatusCode};
use std::time::{Duration, Instant};
use support::{request, response, tracer};

const ANSWER: Duration = Duration::from_secs(30);
const REQUEST: Duration = Duration::from_secs(8);
const ACK: Duration = Duration::from_secs(4);
const NO_AUDIO: Duration = Duration::from_secs(6);
const LONG_HOLD: Duration = Duration::from_secs(60);
const NANO: Duration = Duration::from_nanos(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tracer_with_thresholds() -> SessionTracer {
    tracer(
        TracerConfig::default().thresholds(
            HealthThresholds::default()
                .answer_timeout(ANSWER)
                .request_timeout(REQUEST)
                .ack_timeout(ACK)
                .no_audio_after(NO_AUDIO)
                .long_hold(LONG_HOLD),
        ),
    )
}

/// The kinds of the issues found at `now`.
fn kinds(tracer: &SessionTracer, now: Instant) -> Vec<HealthKind> {
    tracer
        .health(now)
        .into_iter()
        .map(|issue| issue.kind)
        .collect()
}

/// An answered, confirmed call with media started at the returned instant.
fn call_with_media(tracer: &SessionTracer, call: SessionId, t0: Instant) -> Instant {
    tracer.record(call, t0, TraceEntry::sip_in(&request("INVITE", 1, true)));
    tracer.record(
        call,
        t0,
        TraceEntry::sip_out(&response(200, "OK", 1, "INVITE", true)),
    );
    tracer.record(call, t0, TraceEntry::sip_in(&request("ACK", 1, false)));
    tracer.record(
        call,
        t0,
        TraceEntry::State {
            from: CallState::Initiating,
            to: CallState::Active,
        },
    );
    tracer.record(
        call,
        t0,
        TraceEntry::MediaStarted {
            codec: "PCMU".into(),
            local: "192.0.2.1:4000".parse().unwrap(),
            remote: "192.0.2.2:5000".parse().unwrap(),
        },
    );
    t0
}

fn counters(sent: u64, received: u64) -> TraceEntry {
    TraceEntry::RtpCounters { sent, received }
}

#[test]
fn an_unanswered_invite_we_sent_is_reported_at_the_answer_timeout() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    tracer.record(call, t0, TraceEntry::sip_out(&request("INVITE", 1, true)));
    // Provisional responses and a retransmission change nothing.
    tracer.record(
        call,
        t0 + secs(1),
        TraceEntry::sip_in(&response(180, "Ringing", 1, "INVITE", false)),
    );
    tracer.record(
        call,
        t0 + secs(2),
        TraceEntry::sip_out(&request("INVITE", 1, true)),
    );

    assert_eq!(kinds(&tracer, t0 + ANSWER - NANO), []);
    assert_eq!(
        kinds(&tracer, t0 + ANSWER),
        [HealthKind::NoFinalResponse {
            method: Method::Invite,
            cseq: 1,
            request: Flow::Sent,
            waited: ANSWER,
        }]
    );
    let issues = tracer.health(t0 + ANSWER);
    assert_eq!(issues[0].session, call);
    assert_eq!(
        issues[0].to_string(),
        format!("session {call}: no final response to the INVITE we sent (CSeq 1) after 30.000s")
    );

    // A final response to a different CSeq, or going the wrong way, does not count.
    tracer.record(
        call,
        t0 + secs(31),
        TraceEntry::sip_in(&response(486, "Busy Here", 2, "INVITE", false)),
    );
    tracer.record(
        call,
        t0 + secs(31),
        TraceEntry::sip_out(&response(486, "Busy Here", 1, "INVITE", false)),
    );
    assert_eq!(kinds(&tracer, t0 + secs(32)).len(), 1);
    tracer.record(
        call,
        t0 + secs(33),
        TraceEntry::sip_in(&response(486, "Busy Here", 1, "INVITE", false)),
    );
    assert_eq!(kinds(&tracer, t0 + secs(34)), []);
}

#[test]
fn an_invite_we_received_and_never_answered_is_reported() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    tracer.record(call, t0, TraceEntry::sip_in(&request("INVITE", 1, true)));
    tracer.record(
        call,
        t0,
        TraceEntry::sip_out(&response(100, "Trying", 1, "INVITE", false)),
    );
    assert_eq!(kinds(&tracer, t0 + ANSWER - NANO), []);
    let found = kinds(&tracer, t0 + ANSWER + secs(5));
    assert_eq!(
        found,
        [HealthKind::NoFinalResponse {
            method: Method::Invite,
            cseq: 1,
            request: Flow::Received,
            waited: ANSWER + secs(5),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "the INVITE we received (CSeq 1) has had no final response for 35.000s"
    );
}

#[test]
fn other_requests_are_reported_at_the_request_timeout() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    tracer.record(call, t0, TraceEntry::sip_out(&request("BYE", 2, false)));
    tracer.record(
        call,
        t0,
        TraceEntry::State {
            from: CallState::Active,
            to: CallState::Terminating,
        },
    );
    assert_eq!(kinds(&tracer, t0 + REQUEST - NANO), []);
    assert_eq!(
        kinds(&tracer, t0 + REQUEST),
        [HealthKind::NoFinalResponse {
            method: Method::Bye,
            cseq: 2,
            request: Flow::Sent,
            waited: REQUEST,
        }]
    );
    tracer.record(
        call,
        t0 + REQUEST,
        TraceEntry::sip_in(&response(200, "OK", 2, "BYE", false)),
    );
    assert_eq!(kinds(&tracer, t0 + REQUEST), []);
}

#[test]
fn a_2xx_without_ack_is_reported_at_the_ack_timeout() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    let answered = t0 + secs(3);
    tracer.record(call, t0, TraceEntry::sip_in(&request("INVITE", 1, true)));
    let ok = response(200, "OK", 1, "INVITE", true);
    tracer.record(call, answered, TraceEntry::sip_out(&ok));
    // A retransmitted 2xx keeps the first one's time.
    tracer.record(call, answered + secs(1), TraceEntry::sip_out(&ok));

    assert_eq!(kinds(&tracer, answered + ACK - NANO), []);
    let expected = HealthKind::NoAck {
        cseq: 1,
        response: Flow::Sent,
        waited: ACK,
    };
    let found = kinds(&tracer, answered + ACK);
    assert_eq!(found, [expected]);
    assert_eq!(
        found[0].to_string(),
        "no ACK for the 2xx we sent to INVITE (CSeq 1) after 4.000s"
    );
    // An ACK going our way (we did not send the 2xx's ACK) or for another CSeq does not count.
    tracer.record(
        call,
        answered + ACK,
        TraceEntry::sip_out(&request("ACK", 1, false)),
    );
    tracer.record(
        call,
        answered + ACK,
        TraceEntry::sip_in(&request("ACK", 2, false)),
    );
    assert_eq!(kinds(&tracer, answered + ACK).len(), 1);
    tracer.record(
        call,
        answered + ACK,
        TraceEntry::sip_in(&request("ACK", 1, false)),
    );
    assert_eq!(kinds(&tracer, answered + ACK + secs(100)), []);
}

#[test]
fn a_2xx_we_received_and_never_acknowledged_is_reported() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    tracer.record(call, t0, TraceEntry::sip_out(&request("INVITE", 1, true)));
    tracer.record(
        call,
        t0,
        TraceEntry::sip_in(&response(200, "OK", 1, "INVITE", true)),
    );
    assert_eq!(kinds(&tracer, t0 + ACK - NANO), []);
    assert_eq!(
        kinds(&tracer, t0 + ACK),
        [HealthKind::NoAck {
            cseq: 1,
            response: Flow::Received,
            waited: ACK,
        }]
    );
}

#[test]
fn audio_rules_wait_for_the_first_rtp_counters() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let media = call_with_media(&tracer, call, Instant::now());
    assert_eq!(kinds(&tracer, media + NO_AUDIO * 10), []);
}

#[test]
fn no_audio_is_reported_when_neither_counter_moves() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let media = call_with_media(&tracer, call, Instant::now());
    tracer.record(call, media + secs(1), counters(0, 0));
    tracer.record(call, media + secs(2), counters(0, 0));
    assert_eq!(kinds(&tracer, media + NO_AUDIO - NANO), []);
    let found = kinds(&tracer, media + NO_AUDIO);
    assert_eq!(
        found,
        [HealthKind::NoAudio {
            silent_for: NO_AUDIO
        }]
    );
    assert_eq!(found[0].to_string(), "no audio either way for 6.000s");
}

#[test]
fn one_way_audio_names_the_still_direction() {
    for silent in [Flow::Received, Flow::Sent] {
        let tracer = tracer_with_thresholds();
        let call = SessionId::new();
        let media = call_with_media(&tracer, call, Instant::now());
        // The moving direction moves every second; the other never does.
        for s in 1..=10 {
            let moving = 50 * s;
            let entry = match silent {
                Flow::Received => counters(moving, 0),
                Flow::Sent => counters(0, moving),
            };
            tracer.record(call, media + secs(s), entry);
        }
        assert_eq!(kinds(&tracer, media + NO_AUDIO - NANO), [], "{silent}");
        assert_eq!(
            kinds(&tracer, media + NO_AUDIO),
            [HealthKind::OneWayAudio {
                silent,
                silent_for: NO_AUDIO
            }],
            "{silent}"
        );
    }
}

#[test]
fn audio_that_stops_midway_is_timed_from_its_last_movement() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let media = call_with_media(&tracer, call, Instant::now());
    tracer.record(call, media + secs(1), counters(50, 50));
    tracer.record(call, media + secs(2), counters(100, 100));
    for s in 3..=20 {
        tracer.record(call, media + secs(s), counters(50 * s, 100));
    }
    let stopped = media + secs(2);
    assert_eq!(kinds(&tracer, stopped + NO_AUDIO - NANO), []);
    let found = kinds(&tracer, stopped + NO_AUDIO);
    assert_eq!(
        found,
        [HealthKind::OneWayAudio {
            silent: Flow::Received,
            silent_for: NO_AUDIO
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "one-way audio: nothing received for 6.000s"
    );
    // Media stopping ends the audio checks.
    tracer.record(call, media + secs(21), TraceEntry::MediaStopped);
    assert_eq!(kinds(&tracer, media + secs(60)), []);
}

#[test]
fn hold_pauses_audio_checks_and_a_long_hold_is_reported_at_its_threshold() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let media = call_with_media(&tracer, call, Instant::now());
    tracer.record(call, media + secs(1), counters(50, 50));
    let held = media + secs(2);
    tracer.record(
        call,
        held,
        TraceEntry::State {
            from: CallState::Active,
            to: CallState::OnHold,
        },
    );
    // A Hold entry while already held keeps the first time.
    tracer.record(call, held + secs(5), TraceEntry::Hold);
    tracer.record(call, held + secs(10), counters(50, 50));

    assert_eq!(kinds(&tracer, held + LONG_HOLD - NANO), []);
    let found = kinds(&tracer, held + LONG_HOLD);
    assert_eq!(
        found,
        [HealthKind::LongHold {
            held_for: LONG_HOLD
        }]
    );
    assert_eq!(found[0].to_string(), "on hold for 60.000s");

    // After the resume the audio is judged afresh from the resume on.
    let resumed = held + secs(70);
    tracer.record(call, resumed, TraceEntry::Resume);
    assert_eq!(kinds(&tracer, resumed + NO_AUDIO - NANO), []);
    assert_eq!(
        kinds(&tracer, resumed + NO_AUDIO),
        [HealthKind::NoAudio {
            silent_for: NO_AUDIO
        }]
    );
}

#[test]
fn finished_sessions_are_never_reported() {
    let tracer = tracer_with_thresholds();
    let call = SessionId::new();
    let t0 = Instant::now();
    tracer.record(call, t0, TraceEntry::sip_out(&request("INVITE", 1, true)));
    assert_eq!(kinds(&tracer, t0 + ANSWER).len(), 1);
    tracer.record(
        call,
        t0 + ANSWER,
        TraceEntry::State {
            from: CallState::Initiating,
            to: CallState::Failed(FailureReason::Rejected(StatusCode::REQUEST_TIMEOUT)),
        },
    );
    assert_eq!(kinds(&tracer, t0 + ANSWER * 2), []);
}

#[test]
fn issues_come_oldest_session_first_with_their_correlation() {
    let tracer = tracer_with_thresholds();
    let t0 = Instant::now();
    let (older, newer) = (SessionId::from_u128(9), SessionId::from_u128(1));
    tracer.record(
        newer,
        t0 + secs(1),
        TraceEntry::sip_out(&request("INVITE", 1, false)),
    );
    tracer.record(older, t0, TraceEntry::sip_out(&request("INVITE", 1, false)));
    tracer.record(older, t0, TraceEntry::Hold);
    let correlation = tracer.correlate(older, newer).unwrap();

    let issues = tracer.health(t0 + LONG_HOLD);
    let order: Vec<(SessionId, &str)> = issues
        .iter()
        .map(|issue| {
            let kind = match issue.kind {
                HealthKind::NoFinalResponse { .. } => "no final response",
                HealthKind::LongHold { .. } => "long hold",
                _ => "other",
            };
            (issue.session, kind)
        })
        .collect();
    assert_eq!(
        order,
        [
            (older, "no final response"),
            (older, "long hold"),
            (newer, "no final response"),
        ]
    );
    assert!(issues.iter().all(|i| i.correlation == Some(correlation)));
}
