//! Bounded memory: the per-session entry limit, the session limit with finished sessions
//! evicted first, expiry of finished sessions, and the counters of what was dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_tracer::{Error, Gap, SessionTracer, TraceEntry, TracerConfig};
use session_types::{CallState, SessionId};
use std::time::{Duration, Instant};
use support::tracer;

fn id(n: u128) -> SessionId {
    SessionId::from_u128(n)
}

fn notes(tracer: &SessionTracer, session: SessionId) -> Vec<String> {
    tracer
        .timeline(session)
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.entry.to_string())
        .collect()
}

#[test]
fn a_full_session_keeps_its_first_and_newest_entries_and_counts_the_rest() {
    for max in 1..=6 {
        let tracer = tracer(TracerConfig::default().max_entries_per_session(max));
        let call = id(1);
        let t0 = Instant::now();
        for n in 0..10u64 {
            let at = t0 + Duration::from_secs(n);
            tracer.record(call, at, TraceEntry::note(format!("n{n}")));
        }
        let head = max.div_ceil(2);
        let tail = max / 2;
        let expected: Vec<String> = (0..head)
            .chain(10 - tail..10)
            .map(|n| format!("note: n{n}"))
            .collect();
        assert_eq!(notes(&tracer, call), expected, "max {max}");
        let timeline = tracer.timeline(call).unwrap();
        let dropped = 10 - max as u64;
        let gap = timeline.gap().unwrap();
        assert_eq!((gap.after, gap.dropped), (head, dropped), "max {max}");
        assert_eq!(tracer.stats().entries_dropped, dropped, "max {max}");
        // Offsets still count from the very first entry.
        let last = timeline.entries().last().unwrap();
        assert_eq!(
            last.offset,
            Duration::from_secs(if tail > 0 { 9 } else { 0 })
        );
    }
}

#[test]
fn the_gap_is_rendered_where_entries_were_dropped() {
    let tracer = tracer(TracerConfig::default().max_entries_per_session(4));
    let call = id(1);
    let t0 = Instant::now();
    for n in 0..7u64 {
        tracer.record(
            call,
            t0 + Duration::from_secs(n),
            TraceEntry::note(format!("n{n}")),
        );
    }
    let text = tracer.timeline(call).unwrap().render();
    let body: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        body,
        [
            "+0.000s    note: n0",
            "+1.000s    note: n1",
            "           … 3 entries dropped …",
            "+5.000s    note: n5",
            "+6.000s    note: n6",
        ]
    );
}

#[test]
fn a_new_session_evicts_the_earliest_finished_then_the_oldest_live() {
    let tracer = tracer(TracerConfig::default().max_sessions(3));
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    for n in 1..=3 {
        tracer.record(id(n), at(n as u64), TraceEntry::note("start"));
    }
    // Session 2 finishes first (by a final state), then session 1 (explicitly).
    let ended = TraceEntry::State {
        from: CallState::Active,
        to: CallState::Failed(session_types::FailureReason::Timeout),
    };
    tracer.record(id(2), at(4), ended);
    assert!(tracer.finish(id(1), at(5)));
    assert!(!tracer.finish(id(1), at(6)), "already finished");
    assert!(!tracer.finish(id(99), at(6)), "unknown");
    assert_eq!(
        (tracer.stats().sessions, tracer.stats().finished_sessions),
        (3, 2)
    );

    tracer.record(id(4), at(7), TraceEntry::note("start"));
    assert!(
        tracer.timeline(id(2)).is_none(),
        "earliest finished goes first"
    );
    assert!(tracer.timeline(id(1)).is_some());
    tracer.record(id(5), at(8), TraceEntry::note("start"));
    assert!(tracer.timeline(id(1)).is_none());
    assert!(tracer.timeline(id(3)).is_some(), "live sessions wait");
    tracer.record(id(6), at(9), TraceEntry::note("start"));
    assert!(tracer.timeline(id(3)).is_none(), "then the oldest live one");
    for n in 4..=6 {
        assert!(tracer.timeline(id(n)).is_some(), "session {n}");
    }
    let stats = tracer.stats();
    assert_eq!(
        (
            stats.sessions,
            stats.finished_sessions,
            stats.finished_evicted,
            stats.live_evicted
        ),
        (3, 0, 2, 1)
    );
}

#[test]
fn thousands_of_sessions_stay_within_the_limit() {
    let tracer = tracer(
        TracerConfig::default()
            .max_sessions(100)
            .max_entries_per_session(8),
    );
    let t0 = Instant::now();
    for n in 1..=5_000u128 {
        let at = t0 + Duration::from_millis(n as u64);
        for _ in 0..10 {
            tracer.record(id(n), at, TraceEntry::note("x"));
        }
        if n % 2 == 0 {
            tracer.finish(id(n), at);
        }
    }
    let stats = tracer.stats();
    assert_eq!(stats.sessions, 100);
    assert_eq!(stats.entries_dropped, 5_000 * 2);
    assert_eq!(stats.finished_evicted + stats.live_evicted, 4_900);
    assert_eq!(stats.finished_expired, 0);
    let all = tracer.render_all();
    assert_eq!(all.matches("session ").count(), 100);
    assert_eq!(all.lines().filter(|l| l.ends_with("note: x")).count(), 800);
    // The newest session is always there.
    assert!(tracer.timeline(id(5_000)).is_some());
}

#[test]
fn finished_sessions_expire_after_keep_finished_and_not_before() {
    let keep = Duration::from_secs(10);
    let tracer = tracer(TracerConfig::default().keep_finished(keep));
    let t0 = Instant::now();
    tracer.record(id(1), t0, TraceEntry::note("start"));
    tracer.record(id(2), t0, TraceEntry::note("start"));
    assert!(tracer.finish(id(1), t0 + Duration::from_secs(5)));
    let finished = t0 + Duration::from_secs(5);

    tracer.health(finished + keep - Duration::from_nanos(1));
    assert!(tracer.timeline(id(1)).is_some());
    tracer.health(finished + keep);
    assert!(tracer.timeline(id(1)).is_none());
    assert!(
        tracer.timeline(id(2)).is_some(),
        "live sessions never expire"
    );
    let stats = tracer.stats();
    assert_eq!(
        (
            stats.sessions,
            stats.finished_sessions,
            stats.finished_expired,
            stats.finished_evicted + stats.live_evicted
        ),
        (1, 0, 1, 0)
    );

    // Creating a session also expires old finished ones.
    tracer.finish(id(2), t0 + Duration::from_secs(20));
    tracer.record(id(3), t0 + Duration::from_secs(30), TraceEntry::note("x"));
    assert!(tracer.timeline(id(2)).is_none());
    assert_eq!(tracer.stats().finished_expired, 2);
}

#[test]
fn a_session_recorded_again_after_eviction_starts_afresh() {
    let tracer = tracer(TracerConfig::default().max_sessions(1));
    let t0 = Instant::now();
    tracer.record(id(1), t0, TraceEntry::note("old"));
    tracer.record(id(2), t0, TraceEntry::note("other"));
    tracer.record(id(1), t0 + Duration::from_secs(1), TraceEntry::note("new"));
    assert_eq!(notes(&tracer, id(1)), ["note: new"]);
    let timeline = tracer.timeline(id(1)).unwrap();
    assert_eq!(timeline.started(), t0 + Duration::from_secs(1));
    assert_eq!(timeline.gap(), None::<Gap>);
    assert_eq!(tracer.stats().live_evicted, 2);
}

#[test]
fn zero_limits_are_refused() {
    assert_eq!(
        SessionTracer::new(TracerConfig::default().max_sessions(0)).unwrap_err(),
        Error::ZeroLimit("max_sessions")
    );
    assert_eq!(
        SessionTracer::new(TracerConfig::default().max_entries_per_session(0)).unwrap_err(),
        Error::ZeroLimit("max_entries_per_session")
    );
    let config = TracerConfig::default().max_sessions(1);
    assert_eq!(SessionTracer::new(config).unwrap().config(), &config);
}

#[test]
fn clones_share_one_tracer_across_threads() {
    let tracer = SessionTracer::default();
    let t0 = Instant::now();
    let threads: Vec<_> = (0..4u128)
        .map(|thread| {
            let tracer = tracer.clone();
            std::thread::spawn(move || {
                for n in 0..250u128 {
                    let session = id(thread * 1_000 + n + 1);
                    tracer.record(session, t0, TraceEntry::note("a"));
                    tracer.record(session, t0, TraceEntry::note("b"));
                    tracer.finish(session, t0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = tracer.stats();
    assert_eq!((stats.sessions, stats.finished_sessions), (1_000, 1_000));
    assert_eq!(notes(&tracer, id(3_250)), ["note: a", "note: b"]);
}
