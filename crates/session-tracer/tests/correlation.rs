//! Correlation: the legs of a bridged or transferred call are listed and rendered together.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_tracer::{Error, SessionTracer, TraceEntry};
use session_types::SessionId;
use std::time::{Duration, Instant};

fn traced(tracer: &SessionTracer, n: u128, t0: Instant) -> SessionId {
    let session = SessionId::from_u128(n);
    tracer.record(
        session,
        t0 + Duration::from_secs(n as u64),
        TraceEntry::note(format!("leg {n}")),
    );
    session
}

#[test]
fn bridged_legs_are_listed_together_oldest_first() {
    let tracer = SessionTracer::default();
    let t0 = Instant::now();
    let (a, b, other) = (
        traced(&tracer, 1, t0),
        traced(&tracer, 2, t0),
        traced(&tracer, 3, t0),
    );
    assert_eq!(tracer.related(a), [a]);
    assert_eq!(tracer.correlation(a), None);

    let correlation = tracer.correlate(b, a).unwrap();
    assert_eq!(tracer.related(a), [a, b]);
    assert_eq!(tracer.related(b), [a, b]);
    assert_eq!(tracer.related(other), [other]);
    assert_eq!(tracer.related(SessionId::from_u128(99)), []);
    assert_eq!(tracer.correlation(a), Some(correlation));
    assert_eq!(tracer.timeline(b).unwrap().correlation(), Some(correlation));
    // Correlating again changes nothing.
    assert_eq!(tracer.correlate(a, b).unwrap(), correlation);

    let text = tracer.render_related(b);
    let header_a = format!("session {a}  correlation {correlation}  live");
    let header_b = format!("session {b}  correlation {correlation}  live");
    assert!(
        text.find(&header_a).unwrap() < text.find(&header_b).unwrap(),
        "{text}"
    );
    assert!(text.contains("note: leg 1") && text.contains("note: leg 2"));
    assert!(!text.contains(&other.to_string()), "{text}");
}

#[test]
fn a_transfer_joins_two_correlated_calls_into_one() {
    let tracer = SessionTracer::default();
    let t0 = Instant::now();
    let [a, b, c, d] = [1, 2, 3, 4].map(|n| traced(&tracer, n, t0));
    let first = tracer.correlate(a, b).unwrap();
    let second = tracer.correlate(c, d).unwrap();
    assert_ne!(first, second);
    assert_eq!(tracer.related(d), [c, d]);

    assert_eq!(tracer.correlate(b, c).unwrap(), first);
    for session in [a, b, c, d] {
        assert_eq!(tracer.related(session), [a, b, c, d]);
        assert_eq!(tracer.correlation(session), Some(first));
    }
}

#[test]
fn correlating_an_untraced_session_fails() {
    let tracer = SessionTracer::default();
    let known = traced(&tracer, 1, Instant::now());
    let unknown = SessionId::from_u128(2);
    assert_eq!(
        tracer.correlate(known, unknown),
        Err(Error::UnknownSession(unknown))
    );
    assert_eq!(
        tracer.correlate(unknown, known),
        Err(Error::UnknownSession(unknown))
    );
    // A failed call leaves the known session as it was.
    assert_eq!(tracer.correlation(known), None);
}
