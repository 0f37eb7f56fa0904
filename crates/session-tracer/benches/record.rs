//! The cost of `SessionTracer::record` on a call's hot path.
//!
//! - `record/state_entry`: one small entry (a state change) for a session that exists, whose
//!   timeline is full, so each record also drops the oldest tail entry: the steady state.
//! - `record/sip_entry`: the same with a SIP summary (cloned from a prebuilt one per iteration,
//!   as the caller would build one per message; the clone is inside the measurement).
//! - `record/whole_call`: a complete call per iteration — 12 entries (INVITE, 100, 180, state,
//!   200, ACK, state, media, RTP counters, BYE, 200, final state) for a fresh session, in a
//!   tracer already holding its limit of 10,000 sessions, so every call also evicts the oldest
//!   finished one. Throughput is per entry.
//! - `sip_summary_of/invite`: building a `SipSummary` from a parsed INVITE with SDP.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_sip::Message;
use session_tracer::{SessionTracer, SipSummary, TraceEntry, TracerConfig};
use session_types::{CallState, SessionId};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn message(start_line: &str, cseq: &str, sdp: bool) -> Message {
    let body = if sdp {
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    } else {
        ""
    };
    let content_type = if sdp {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let text = format!(
        "{start_line}\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@192.0.2.2>;tag=b1\r\n\
         From: <sip:alice@192.0.2.1>;tag=a1\r\nCall-ID: 3848276298220188511@192.0.2.1\r\n\
         CSeq: {cseq}\r\nContact: <sip:alice@192.0.2.1:5060>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(text.into_bytes()).unwrap()
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let t0 = Instant::now();

    {
        let tracer = SessionTracer::default();
        let call = SessionId::new();
        for n in 0..1_000u64 {
            tracer.record(call, t0 + Duration::from_micros(n), TraceEntry::Hold);
        }
        let entry = TraceEntry::State {
            from: CallState::Active,
            to: CallState::OnHold,
        };
        group.throughput(Throughput::Elements(1));
        group.bench_function("state_entry", |b| {
            b.iter(|| tracer.record(black_box(call), t0, entry.clone()));
        });
    }

    {
        let tracer = SessionTracer::default();
        let call = SessionId::new();
        let ringing = SipSummary::of(&message("SIP/2.0 180 Ringing", "1 INVITE", false));
        for n in 0..1_000u64 {
            let entry = TraceEntry::SipIn(ringing.clone());
            tracer.record(call, t0 + Duration::from_micros(n), entry);
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function("sip_entry", |b| {
            b.iter(|| tracer.record(black_box(call), t0, TraceEntry::SipIn(ringing.clone())));
        });
    }

    {
        let uri = "sip:bob@192.0.2.2 SIP/2.0";
        let invite = SipSummary::of(&message(&format!("INVITE {uri}"), "1 INVITE", true));
        let trying = SipSummary::of(&message("SIP/2.0 100 Trying", "1 INVITE", false));
        let ringing = SipSummary::of(&message("SIP/2.0 180 Ringing", "1 INVITE", false));
        let ok = SipSummary::of(&message("SIP/2.0 200 OK", "1 INVITE", true));
        let ack = SipSummary::of(&message(&format!("ACK {uri}"), "1 ACK", false));
        let bye = SipSummary::of(&message(&format!("BYE {uri}"), "2 BYE", false));
        let bye_ok = SipSummary::of(&message("SIP/2.0 200 OK", "2 BYE", false));
        let local = "192.0.2.1:4000".parse().unwrap();
        let remote = "192.0.2.2:5000".parse().unwrap();
        let codec: std::sync::Arc<str> = "PCMU".into();
        let state = |from, to| TraceEntry::State { from, to };

        let tracer = SessionTracer::new(TracerConfig::default().max_sessions(10_000)).unwrap();
        let mut now = t0;
        let call = |tracer: &SessionTracer, now: Instant| {
            let id = SessionId::new();
            let ms = Duration::from_millis;
            tracer.record(id, now, TraceEntry::SipOut(invite.clone()));
            tracer.record(id, now + ms(10), TraceEntry::SipIn(trying.clone()));
            tracer.record(id, now + ms(20), TraceEntry::SipIn(ringing.clone()));
            tracer.record(
                id,
                now + ms(20),
                state(CallState::Initiating, CallState::Ringing),
            );
            tracer.record(id, now + ms(900), TraceEntry::SipIn(ok.clone()));
            tracer.record(id, now + ms(901), TraceEntry::SipOut(ack.clone()));
            tracer.record(
                id,
                now + ms(901),
                state(CallState::Ringing, CallState::Active),
            );
            let media = TraceEntry::MediaStarted {
                codec: codec.clone(),
                local,
                remote,
            };
            tracer.record(id, now + ms(902), media);
            let counters = TraceEntry::RtpCounters {
                sent: 250,
                received: 249,
            };
            tracer.record(id, now + ms(5_902), counters);
            tracer.record(id, now + ms(9_000), TraceEntry::SipOut(bye.clone()));
            tracer.record(id, now + ms(9_040), TraceEntry::SipIn(bye_ok.clone()));
            tracer.record(
                id,
                now + ms(9_040),
                state(CallState::Terminating, CallState::Terminated),
            );
        };
        for _ in 0..10_000 {
            now += Duration::from_micros(300);
            call(&tracer, now);
        }
        group.throughput(Throughput::Elements(12));
        group.bench_function("whole_call", |b| {
            b.iter(|| {
                now += Duration::from_micros(300);
                call(&tracer, now);
            });
        });
        assert_eq!(tracer.stats().sessions, 10_000);
    }
    group.finish();

    let invite = message("INVITE sip:bob@192.0.2.2 SIP/2.0", "1 INVITE", true);
    c.bench_function("sip_summary_of/invite", |b| {
        b.iter(|| SipSummary::of(black_box(&invite)));
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
