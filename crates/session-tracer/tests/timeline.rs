//! Timelines: order, offsets, rendering, and the SIP summaries taken from parsed messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_events::{Payload, SessionEvent, TerminationReason};
use session_sip::{Message, Method};
use session_tracer::{
    DtmfMethod, Flow, MAX_SUMMARY_TEXT, SessionTracer, SipSummary, StartLine, TraceEntry,
    TracerConfig,
};
use session_types::{CallId, CallState, Direction, SessionId, StatusCode};
use std::time::{Duration, Instant};
use support::{CALL_ID, request, response, tracer};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn timeline_renders_a_call_in_order_with_offsets_from_the_first_entry() {
    let tracer = SessionTracer::default();
    let call = SessionId::from_u128(0x2a);
    let t0 = Instant::now();
    let state = |from, to| TraceEntry::State { from, to };
    let script: Vec<(u64, TraceEntry)> = vec![
        (0, TraceEntry::sip_out(&request("INVITE", 1, true))),
        (
            12,
            TraceEntry::sip_in(&response(100, "Trying", 1, "INVITE", false)),
        ),
        (
            180,
            TraceEntry::sip_in(&response(180, "Ringing", 1, "INVITE", false)),
        ),
        (180, state(CallState::Initiating, CallState::Ringing)),
        (
            2_500,
            TraceEntry::sip_in(&response(200, "OK", 1, "INVITE", true)),
        ),
        (2_501, TraceEntry::sip_out(&request("ACK", 1, false))),
        (2_501, state(CallState::Ringing, CallState::Active)),
        (
            2_502,
            TraceEntry::MediaStarted {
                codec: "PCMU".into(),
                local: "192.0.2.101:49172".parse().unwrap(),
                remote: "192.0.2.201:3456".parse().unwrap(),
            },
        ),
        (
            7_000,
            TraceEntry::Dtmf {
                digit: '5',
                method: DtmfMethod::Rfc4733,
                flow: Flow::Sent,
            },
        ),
        (12_000, TraceEntry::Hold),
        (20_000, TraceEntry::Resume),
        (30_000, TraceEntry::sip_out(&request("BYE", 2, false))),
        (30_000, state(CallState::Active, CallState::Terminating)),
        (
            30_040,
            TraceEntry::sip_in(&response(200, "OK", 2, "BYE", false)),
        ),
        (30_040, state(CallState::Terminating, CallState::Terminated)),
    ];
    for (offset, entry) in script {
        tracer.record(call, t0 + ms(offset), entry);
    }

    let timeline = tracer.timeline(call).unwrap();
    assert_eq!(timeline.session(), call);
    assert_eq!(timeline.started(), t0);
    assert_eq!(timeline.finished(), Some(ms(30_040)));
    assert_eq!(timeline.call_id(), Some(CALL_ID));
    assert_eq!(timeline.gap(), None);
    let expected = "\
session 00000000-0000-0000-0000-00000000002a  Call-ID a84b4c76e66710@pc33.atlanta.example.com  finished at +30.040s
+0.000s    → INVITE sip:bob@biloxi.example.com (CSeq 1, SDP)
+0.012s    ← 100 Trying (CSeq 1 INVITE)
+0.180s    ← 180 Ringing (CSeq 1 INVITE)
+0.180s    state initiating → ringing
+2.500s    ← 200 OK (CSeq 1 INVITE, SDP)
+2.501s    → ACK sip:bob@biloxi.example.com (CSeq 1)
+2.501s    state ringing → active
+2.502s    media started PCMU 192.0.2.101:49172 ⇄ 192.0.2.201:3456
+7.000s    dtmf sent '5' (rfc4733)
+12.000s   hold
+20.000s   resume
+30.000s   → BYE sip:bob@biloxi.example.com (CSeq 2)
+30.000s   state active → terminating
+30.040s   ← 200 OK (CSeq 2 BYE)
+30.040s   state terminating → terminated
";
    assert_eq!(timeline.render(), expected);
    let offsets: Vec<Duration> = timeline.entries().iter().map(|e| e.offset).collect();
    assert!(offsets.is_sorted(), "{offsets:?}");
    assert_eq!(tracer.stats().finished_sessions, 1);
}

#[test]
fn sip_summary_keeps_start_line_cseq_call_id_and_sdp_of_parsed_messages() {
    let invite = SipSummary::of(&request("INVITE", 1, true));
    assert_eq!(
        invite.start,
        StartLine::Request {
            method: Method::Invite,
            uri: "sip:bob@biloxi.example.com".into()
        }
    );
    assert_eq!(invite.method(), Some(&Method::Invite));
    assert_eq!(invite.status(), None);
    let cseq = invite.cseq.as_ref().unwrap();
    assert_eq!((cseq.seq, &cseq.method), (1, &Method::Invite));
    assert_eq!(invite.call_id.as_deref(), Some(CALL_ID));
    assert!(invite.has_sdp);

    let busy = SipSummary::of(&response(486, "Busy Here", 1, "INVITE", false));
    assert_eq!(busy.status(), Some(StatusCode::BUSY_HERE));
    assert!(!busy.has_sdp);
    assert_eq!(busy.to_string(), "486 Busy Here (CSeq 1 INVITE)");
    assert_eq!(
        busy.with_note("retransmission").to_string(),
        "486 Busy Here (CSeq 1 INVITE) — retransmission"
    );

    // The request and response shortcuts give the same summaries.
    let Message::Request(bye) = request("BYE", 2, false) else {
        panic!("a request")
    };
    assert_eq!(
        SipSummary::of_request(&bye),
        SipSummary::of(&Message::Request(bye.clone()))
    );
    assert_eq!(
        SipSummary::of_request(&bye).to_string(),
        "BYE sip:bob@biloxi.example.com (CSeq 2)"
    );
}

#[test]
fn sip_summary_caps_long_text_from_the_peer() {
    let user = "x".repeat(3 * MAX_SUMMARY_TEXT);
    let reason = "Very ".repeat(100);
    let text = format!(
        "SIP/2.0 404 {reason}Long\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
         To: <sip:{user}@biloxi.example.com>;tag=1\r\n\
         From: <sip:alice@atlanta.example.com>;tag=2\r\n\
         Call-ID: {user}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let summary = SipSummary::of(&Message::parse(text.into_bytes()).unwrap());
    let StartLine::Response { reason, .. } = &summary.start else {
        panic!("a response")
    };
    assert!(reason.len() <= MAX_SUMMARY_TEXT && reason.ends_with('…'));
    assert!(reason.starts_with("Very Very"));
    let call_id = summary.call_id.as_deref().unwrap();
    assert!(call_id.len() <= MAX_SUMMARY_TEXT && call_id.ends_with('…'));
}

#[test]
fn consecutive_rtp_counters_share_the_latest_line() {
    let tracer = SessionTracer::default();
    let call = SessionId::new();
    let t0 = Instant::now();
    let counters = |sent, received| TraceEntry::RtpCounters { sent, received };
    tracer.record(call, t0, TraceEntry::note("media up"));
    tracer.record(call, t0 + ms(1_000), counters(50, 49));
    tracer.record(call, t0 + ms(2_000), counters(100, 98));
    tracer.record(call, t0 + ms(2_500), TraceEntry::Hold);
    tracer.record(call, t0 + ms(3_000), counters(110, 98));
    tracer.record(call, t0 + ms(4_000), counters(110, 98));

    let timeline = tracer.timeline(call).unwrap();
    let lines: Vec<(Duration, String)> = timeline
        .entries()
        .iter()
        .map(|e| (e.offset, e.entry.to_string()))
        .collect();
    assert_eq!(
        lines,
        [
            (ms(0), "note: media up".to_owned()),
            (ms(2_000), "rtp packets sent 100, received 98".to_owned()),
            (ms(2_500), "hold".to_owned()),
            (ms(4_000), "rtp packets sent 110, received 98".to_owned()),
        ]
    );
    assert_eq!(tracer.stats().entries_dropped, 0);
}

#[test]
fn entries_with_an_earlier_instant_than_the_first_show_at_zero() {
    let tracer = SessionTracer::default();
    let call = SessionId::new();
    let t0 = Instant::now() + Duration::from_secs(10);
    tracer.record(call, t0, TraceEntry::note("first"));
    tracer.record(call, t0 - ms(5), TraceEntry::note("late report"));
    let timeline = tracer.timeline(call).unwrap();
    assert_eq!(timeline.entries()[1].offset, Duration::ZERO);
    assert!(timeline.render().contains("+0.000s    note: late report"));
}

#[test]
fn events_from_the_bus_become_entries() {
    let tracer = tracer(TracerConfig::default());
    let call = SessionId::from_u128(7);
    let t0 = Instant::now();
    let call_id = CallId::from(CALL_ID);
    let events = [
        SessionEvent::SessionCreated {
            session_id: call,
            direction: Direction::Outbound,
            call_id: call_id.clone(),
            from: "sip:alice@atlanta.example.com".into(),
            to: "sip:bob@biloxi.example.com".into(),
        },
        SessionEvent::StateChanged {
            session_id: call,
            call_id,
            old: CallState::Initiating,
            new: CallState::Active,
        },
        SessionEvent::MediaStarted {
            session_id: call,
            codec: "PCMA".into(),
            local: "192.0.2.1:4000".parse().unwrap(),
            remote: "192.0.2.2:5000".parse().unwrap(),
        },
        SessionEvent::DtmfReceived {
            session_id: call,
            digit: '#',
            duration: ms(100),
        },
        SessionEvent::MediaStopped { session_id: call },
        SessionEvent::SessionTerminated {
            session_id: call,
            reason: TerminationReason::RemoteHangup,
            summary: Default::default(),
        },
    ];
    for (i, event) in events.iter().enumerate() {
        assert!(
            tracer.record_event(t0 + ms(10 * i as u64), event),
            "{event:?}"
        );
    }
    let custom = SessionEvent::custom(Some(call), "app", Payload::empty());
    assert!(!tracer.record_event(t0 + ms(100), &custom));

    let timeline = tracer.timeline(call).unwrap();
    let lines: Vec<String> = timeline
        .entries()
        .iter()
        .map(|e| e.entry.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "note: created: outbound call from sip:alice@atlanta.example.com to sip:bob@biloxi.example.com",
            "state initiating → active",
            "media started PCMA 192.0.2.1:4000 ⇄ 192.0.2.2:5000",
            "dtmf received '#' (unknown method)",
            "media stopped",
            "note: terminated: remote hangup",
        ]
    );
    assert_eq!(timeline.finished(), Some(ms(50)));
}

#[test]
fn render_all_lists_every_session_oldest_first() {
    let tracer = SessionTracer::default();
    let t0 = Instant::now();
    let (old, new) = (SessionId::from_u128(2), SessionId::from_u128(1));
    tracer.record(new, t0 + ms(5), TraceEntry::note("second"));
    tracer.record(old, t0, TraceEntry::note("first"));
    let all = tracer.render_all();
    let first = all.find(&old.to_string()).unwrap();
    let second = all.find(&new.to_string()).unwrap();
    assert!(first < second, "{all}");
    assert_eq!(all.matches("session ").count(), 2);
    assert!(tracer.timeline(SessionId::from_u128(3)).is_none());
}
