//! Issue 13: what the manager's metrics cost with 10,000 live sessions.
//! Targets: recording ≤ 100 ns per event (what `CallMetrics` records as a call is created and
//! as it ends); one scrape of the aggregate metrics ≤ 5 ms.
//!
//! The fixture is a started `SessionManager` (loopback, no calls) given the resources of
//! 10,000 live sessions through its builder: an `AdmissionController` holding 10,000 permits
//! (a user each, in 100 groups), a `PortPool` with 10,000 RTP/RTCP pairs leased, an
//! `EventBus` indexing 10,000 sessions in 100 groups (through the manager's own `Groups`), a
//! `SessionTracer` with 10,000 live timelines (answered, media flowing), and a registry whose
//! histograms hold 100,000 past calls. A scrape is `metrics_snapshot().to_prometheus("")`,
//! exactly what `GET /metrics` renders (`Exporter::render`: refresh, snapshot, text).
//! `CallMetrics` (internal) is reached through `session_core::bench_support` and records into
//! that manager's registry.
//!
//! ```text
//! cargo bench -p session-core --bench metrics -- --warm-up-time 1 --measurement-time 3
//! ```

// The scrape sizes go to stderr, beside criterion's own output.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use session_core::bench_support::{CallMetrics, Groups};
use session_core::{
    CallState, CallStats, Direction, EventBus, Filter, GroupId, HealthThresholds, SessionId,
    SessionManager, SessionTracer, StreamStats, Subscription, TerminationReason, TracerConfig,
};
use session_resources::{
    AdmissionController, AdmissionPermit, AdmissionRequest, Limits, Metrics, PortPair, PortPool,
};
use session_tracer::TraceEntry;

/// Live sessions.
const LIVE: u64 = 10_000;
/// Calls that ended before (what the histograms hold).
const PAST: u64 = 100_000;

fn session(n: u64) -> SessionId {
    SessionId::from_u128((0x5e55_u128 << 64) | u128::from(n))
}

/// A deterministic spread of values in `low..high`.
fn spread(n: u64, low: u64, high: u64) -> u64 {
    low + n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (high - low)
}

/// The final figures of answered call number `n`: setup 50 ms–3 s, talk 1 s–1 h, media with
/// 0–50 packets lost, 0–60 ms jitter, MOS 1.0–4.4.
fn answered(n: u64) -> CallStats {
    let mut stats = CallStats::default();
    stats.setup_time = Some(Duration::from_millis(spread(n, 50, 3_000)));
    stats.talk_time = Some(Duration::from_millis(spread(n, 1_000, 3_600_000)));
    stats.rtp = Some(StreamStats {
        packets_lost: spread(n, 0, 50) as i64,
        jitter_ms: spread(n, 0, 60_000) as f64 / 1000.0,
        mos: Some(spread(n, 100, 440) as f64 / 100.0),
        ..StreamStats::default()
    });
    stats
}

/// The resources of `LIVE` sessions, shared by the managers of the fixture.
struct Live {
    admission: AdmissionController,
    ports: PortPool,
    bus: EventBus,
    _groups: Groups,
    _subscriptions: Vec<Subscription>,
    _permits: Vec<AdmissionPermit>,
    _pairs: Vec<PortPair>,
}

fn live() -> Live {
    let admission = AdmissionController::new(Limits::default().max_sessions(2 * LIVE as usize));
    let ports = PortPool::new(20_000..=40_999).unwrap();
    let bus = EventBus::new();
    let groups = Groups::default();
    let group_ids: Vec<GroupId> = (0..100).map(|_| GroupId::next()).collect();
    let mut permits = Vec::new();
    let mut pairs = Vec::new();
    for n in 0..LIVE {
        let group = group_ids[(n % 100) as usize];
        let user = format!("user{n}@example.com");
        let request = AdmissionRequest::for_user(&user).in_group(group);
        permits.push(admission.try_admit(&request).unwrap());
        pairs.push(ports.acquire().unwrap());
        assert!(groups.add(&bus, session(n), group, || true));
    }
    // An application watching everything, and a dashboard on one group.
    let subscriptions = vec![
        bus.subscribe(Filter::all()),
        bus.subscribe(Filter::group(group_ids[0])),
    ];
    Live {
        admission,
        ports,
        bus,
        _groups: groups,
        _subscriptions: subscriptions,
        _permits: permits,
        _pairs: pairs,
    }
}

/// A tracer with `LIVE` answered calls whose media is flowing. With `thresholds` that never
/// fire the health check finds nothing; with `no_audio_after(ZERO)` every call is flagged.
fn tracer(thresholds: HealthThresholds) -> SessionTracer {
    let tracer = SessionTracer::new(
        TracerConfig::default()
            .max_sessions(2 * LIVE as usize)
            .thresholds(thresholds),
    )
    .unwrap();
    let at = Instant::now();
    let codec: Arc<str> = Arc::from("PCMU");
    for n in 0..LIVE {
        let id = session(n);
        let port = 20_000 + 2 * n as u16;
        tracer.record(
            id,
            at,
            TraceEntry::State {
                from: CallState::Initiating,
                to: CallState::Ringing,
            },
        );
        tracer.record(
            id,
            at,
            TraceEntry::State {
                from: CallState::Ringing,
                to: CallState::Active,
            },
        );
        tracer.record(
            id,
            at,
            TraceEntry::MediaStarted {
                codec: codec.clone(),
                local: SocketAddr::from(([127, 0, 0, 1], port)),
                remote: SocketAddr::from(([192, 0, 2, 1], port)),
            },
        );
        tracer.record(
            id,
            at,
            TraceEntry::RtpCounters {
                sent: 500,
                received: 500,
            },
        );
    }
    tracer
}

/// A registry holding `PAST` calls: created, ended (one in five unanswered), and `LIVE` active.
fn registry() -> Metrics {
    let metrics = Metrics::new();
    let calls = CallMetrics::new(&metrics);
    for n in 0..PAST {
        let direction = if n % 2 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        calls.created(direction, LIVE as usize);
        if n % 5 == 0 {
            calls.ended(TerminationReason::Cancelled, &CallStats::default());
        } else {
            calls.ended(TerminationReason::RemoteHangup, &answered(n));
        }
    }
    metrics
}

fn start(
    rt: &tokio::runtime::Runtime,
    live: &Live,
    tracer: Option<SessionTracer>,
) -> SessionManager {
    let mut builder = SessionManager::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .metrics(registry())
        .admission(live.admission.clone())
        .port_pool(live.ports.clone())
        .event_bus(live.bus.clone());
    if let Some(tracer) = tracer {
        builder = builder.tracer(tracer);
    }
    rt.block_on(builder.start()).unwrap()
}

fn metrics(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = rt.enter();
    let live = live();
    let healthy = tracer(HealthThresholds::default().no_audio_after(Duration::from_secs(86_400)));
    let flagged = tracer(HealthThresholds::default().no_audio_after(Duration::ZERO));
    let plain = start(&rt, &live, None);
    let traced = start(&rt, &live, Some(healthy.clone()));
    let traced_flagged = start(&rt, &live, Some(flagged.clone()));

    // Recording: into the live manager's registry, as its task does.
    let calls = CallMetrics::new(traced.metrics());
    let ends: Vec<CallStats> = (0..64).map(answered).collect();
    let mut g = c.benchmark_group("metrics/record");
    g.bench_function("created", |b| {
        b.iter(|| calls.created(black_box(Direction::Inbound), black_box(LIVE as usize)));
    });
    let mut n = 0;
    g.bench_function("ended_answered", |b| {
        b.iter(|| {
            n = (n + 1) % ends.len();
            calls.ended(black_box(TerminationReason::RemoteHangup), &ends[n]);
        });
    });
    let unanswered = CallStats::default();
    g.bench_function("ended_unanswered", |b| {
        b.iter(|| calls.ended(black_box(TerminationReason::Cancelled), &unanswered));
    });
    g.finish();

    // Scrapes. `GET /metrics` answers `Exporter::render`, which is this.
    let render = |manager: &SessionManager| manager.metrics_snapshot().to_prometheus("");
    eprintln!(
        "scrape sizes: no tracer {} B, tracer {} B",
        render(&plain).len(),
        render(&traced).len()
    );
    let mut g = c.benchmark_group("metrics/scrape");
    g.sample_size(30);
    g.bench_function("no_tracer", |b| b.iter(|| black_box(render(&plain))));
    g.bench_function("tracer_healthy", |b| b.iter(|| black_box(render(&traced))));
    g.bench_function("tracer_all_flagged", |b| {
        b.iter(|| black_box(render(&traced_flagged)));
    });
    // Its parts: what `Exporter::refresh` reads, then the registry's snapshot and text.
    g.bench_function("part_admission_snapshot", |b| {
        b.iter(|| black_box(live.admission.snapshot().refused_total));
    });
    g.bench_function("part_bus_stats", |b| b.iter(|| black_box(live.bus.stats())));
    g.bench_function("part_tracer_health_healthy", |b| {
        b.iter(|| black_box(healthy.health(Instant::now())));
    });
    g.bench_function("part_tracer_health_all_flagged", |b| {
        b.iter(|| black_box(flagged.health(Instant::now())));
    });
    g.bench_function("part_registry_snapshot", |b| {
        b.iter(|| black_box(plain.metrics().snapshot()));
    });
    let snapshot = plain.metrics().snapshot();
    g.bench_function("part_to_prometheus", |b| {
        b.iter(|| black_box(snapshot.to_prometheus("")));
    });
    g.finish();
    drop((plain, traced, traced_flagged));
}

criterion_group!(benches, metrics);
criterion_main!(benches);
