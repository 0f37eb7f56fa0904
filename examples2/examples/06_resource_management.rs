//! # 06 — resource management
//!
//! What a session takes and how it gives it back, with `session-resources` on its own:
//!
//! 1. global limits — an [`AdmissionController`] admits up to `max_sessions`; the next request
//!    is refused with a typed error that the SIP layer answers with 503 and `Retry-After`;
//! 2. per-user and per-group quotas — one user's calls do not starve the others; a refusal by
//!    any limit takes nothing;
//! 3. the RTP port pool — even RTP ports with RTCP on the next, exhaustion as a typed error,
//!    and first-in-first-out reuse so a just-freed port is handed out last;
//! 4. calls as tokio tasks — permits and port pairs held by tasks come back when the calls hang
//!    up, and when their tasks are aborted mid-call;
//! 5. usage monitoring — usage snapshots, counters, gauges and a setup-latency histogram.
//!
//! Run: `cargo run -p examples2 --example 06_resource_management`. Exits non-zero if a check
//! fails.

use examples2::{check, section};
use session_resources::{
    AdmissionController, AdmissionPermit, AdmissionRequest, Gauge, Limits, Metrics, PortPair,
    PortPool, Resource, ResourceError,
};
use session_types::{Classify, ErrorKind, GroupId, StatusCode};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Upper bound for any wait: nothing here should take more than a few milliseconds.
const WAIT: Duration = Duration::from_secs(5);

/// What a SIP server would answer a refused INVITE with.
fn sip_answer(err: &ResourceError) -> String {
    let status = err.kind().suggested_status();
    match (status, err.retry_after_secs()) {
        (Some(status), Some(secs)) => format!(
            "{} {} (Retry-After: {secs})",
            status.as_u16(),
            status.reason_phrase()
        ),
        (Some(status), None) => format!("{} {}", status.as_u16(), status.reason_phrase()),
        (None, _) => "no response".to_owned(),
    }
}

fn global_limits() {
    section("1. global limits");
    let admission = AdmissionController::new(
        Limits::default()
            .max_sessions(5)
            .retry_after(Duration::from_secs(30)),
    );
    let permits: Vec<AdmissionPermit> = (0..5)
        .filter_map(|_| admission.try_admit(&AdmissionRequest::new()).ok())
        .collect();
    check(
        permits.len() == 5,
        "five sessions admitted under max_sessions(5)",
    );
    match admission.try_admit(&AdmissionRequest::new()) {
        Ok(_) => check(false, "the sixth session is refused"),
        Err(err) => {
            println!("       refused: {err} -> {}", sip_answer(&err));
            check(
                err.kind() == ErrorKind::ResourceExhausted,
                "the refusal is ResourceExhausted",
            );
            check(
                err.kind().suggested_status() == Some(StatusCode::SERVICE_UNAVAILABLE),
                "... which a SIP server answers with 503",
            );
            check(
                err.resource() == Some(&Resource::Sessions) && err.limit() == Some(5),
                "the error names the resource and the limit",
            );
            check(
                err.retry_after_secs() == Some(30),
                "... and suggests Retry-After: 30",
            );
        }
    }
    check(admission.active() == 5, "the refusal took nothing");
    drop(permits);
    check(
        admission.active() == 0,
        "dropping the permits released every slot",
    );

    // Draining for maintenance: lower the limit while running; active calls are not touched.
    let call = admission.try_admit(&AdmissionRequest::new());
    admission.set_max_sessions(Some(0));
    check(
        admission.try_admit(&AdmissionRequest::new()).is_err() && admission.active() == 1,
        "set_max_sessions(Some(0)) drains: new calls refused, the active one kept",
    );
    drop(call);
    check(admission.active() == 0, "the drained server reaches zero");
}

fn quotas() {
    section("2. per-user and per-group quotas");
    let sales = GroupId::from_raw(1);
    let support = GroupId::from_raw(2);
    let admission = AdmissionController::new(
        Limits::default()
            .max_sessions(100)
            .max_per_user(2)
            .max_per_group(3)
            .max_for_group(support, 10),
    );
    let alice = AdmissionRequest::for_user("alice").in_group(sales);
    let a1 = admission.try_admit(&alice);
    let a2 = admission.try_admit(&alice);
    check(a1.is_ok() && a2.is_ok(), "alice has two calls");
    let refused = admission.try_admit(&alice);
    check(
        matches!(
            refused.as_ref().map_err(ResourceError::resource),
            Err(Some(Resource::UserSessions { .. }))
        ),
        "alice's third call is refused by her quota of 2",
    );
    let bob = admission.try_admit(&AdmissionRequest::for_user("bob").in_group(sales));
    check(bob.is_ok(), "bob is not held back by alice's quota");
    let carol = admission.try_admit(&AdmissionRequest::for_user("carol").in_group(sales));
    check(
        matches!(
            carol.as_ref().map_err(ResourceError::resource),
            Err(Some(Resource::GroupSessions { group })) if *group == sales
        ),
        "carol's call is refused: the sales group is full (3)",
    );
    check(
        admission.user_active("carol") == 0 && admission.active() == 3,
        "the group refusal gave back carol's user count and the global slot",
    );
    let carol_support = admission.try_admit(&AdmissionRequest::for_user("carol").in_group(support));
    check(
        carol_support.is_ok(),
        "support has its own limit of 10: carol's call there is admitted",
    );
    let usage = admission.snapshot();
    println!("{}", indent(&format!("{usage:#}")));
    check(
        usage.user("alice") == 2 && usage.user("bob") == 1 && usage.user("carol") == 1,
        "the snapshot counts per user",
    );
    check(
        usage.group(sales) == 3 && usage.group(support) == 1,
        "the snapshot counts per group",
    );
    check(
        usage.refused_user == 1 && usage.refused_group == 1 && usage.admitted_total == 4,
        "the snapshot counts refusals by cause",
    );
    drop((a1, a2, bob, carol_support));
    let usage = admission.snapshot();
    check(
        usage.active == 0 && usage.users.is_empty() && usage.groups.is_empty(),
        "all calls ended: no user or group entry is left behind",
    );
}

fn port_pool() -> Result<(), ResourceError> {
    section("3. RTP port pool");
    // An odd start and an end that cuts a pair: 20001 and 20010 have no partner.
    let pool = PortPool::builder(20001..=20010)
        .retry_after(Duration::from_secs(2))
        .build()?;
    println!("       pool {:?}: {} pairs", pool.ports(), pool.capacity());
    check(
        pool.ports() == (20002..=20009) && pool.capacity() == 4,
        "pairs 20002/3 .. 20008/9: odd and partnerless ports left out",
    );
    let pairs: Vec<PortPair> = (0..4).filter_map(|_| pool.acquire().ok()).collect();
    check(
        pairs
            .iter()
            .all(|p| p.rtp() % 2 == 0 && p.rtcp() == p.rtp() + 1),
        "every lease is an even RTP port with RTCP on the next",
    );
    match pool.acquire() {
        Ok(_) => check(false, "the fifth lease is refused"),
        Err(err) => {
            println!("       refused: {err} -> {}", sip_answer(&err));
            check(
                err.resource() == Some(&Resource::RtpPorts) && err.retry_after_secs() == Some(2),
                "exhaustion is a typed error with Retry-After",
            );
        }
    }
    // Free them newest first: 20008, 20006, 20004, 20002.
    for pair in pairs.into_iter().rev() {
        drop(pair);
    }
    let leases: Vec<PortPair> = (0..4).filter_map(|_| pool.acquire().ok()).collect();
    let reuse: Vec<u16> = leases.iter().map(PortPair::rtp).collect();
    check(
        reuse == [20008, 20006, 20004, 20002],
        "pairs are handed out again in the order they were freed",
    );
    drop(leases);
    let recent = pool.acquire()?;
    let recent_port = recent.rtp();
    drop(recent);
    let next = pool.acquire()?;
    check(
        next.rtp() != recent_port,
        "a just-freed pair is reused last (stale RTP cannot reach the next call)",
    );
    drop(next);
    println!("       {}", pool.snapshot());
    check(pool.in_use() == 0, "every pair is back in the pool");
    Ok(())
}

/// One call's resources: dropping the call releases them all, however the call ends.
struct Call {
    _permit: AdmissionPermit,
    _media: PortPair,
}

/// Keeps the `calls_up` gauge raised while a call is up, also when its task is aborted.
struct UpGuard(Gauge);

impl UpGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Who calls, in order. The server takes 10 calls and 2 per user: alice's and bob's third
/// calls are refused by their quota, frank's calls by the global limit.
const CALLERS: [&str; 14] = [
    "alice", "alice", "alice", "bob", "bob", "bob", "carol", "carol", "dave", "dave", "erin",
    "erin", "frank", "frank",
];

async fn calls_as_tasks(admission: &AdmissionController, pool: &PortPool, metrics: &Metrics) {
    section("4. calls as tokio tasks");
    let started = metrics.counter("calls_started");
    let refused = metrics.counter("calls_refused");
    let up = metrics.gauge("calls_up");
    let setup_latency = metrics.histogram("setup_latency_ns");

    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), ResourceError>>(CALLERS.len());
    let mut hangups = Vec::new();
    let mut tasks = Vec::new();
    let mut outcomes = Vec::new();
    for (i, user) in CALLERS.into_iter().enumerate() {
        let (admission, pool, ready_tx) = (admission.clone(), pool.clone(), ready_tx.clone());
        let (started, refused, up, setup_latency) = (
            started.clone(),
            refused.clone(),
            up.clone(),
            setup_latency.clone(),
        );
        let (hangup_tx, hangup_rx) = oneshot::channel::<()>();
        hangups.push(hangup_tx);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let call = admission
                .try_admit(&AdmissionRequest::for_user(user))
                .and_then(|permit| {
                    // If no port pair is free, `permit` is dropped here: all or nothing.
                    Ok(Call {
                        _permit: permit,
                        _media: pool.acquire()?,
                    })
                });
            let call = match call {
                Ok(call) => call,
                Err(err) => {
                    refused.inc();
                    let _ = ready_tx.send(Err(err)).await;
                    return;
                }
            };
            started.inc();
            // Offer/answer and the 200 OK/ACK exchange, simulated: 1-4 ms.
            tokio::time::sleep(Duration::from_millis(1 + i as u64 % 4)).await;
            setup_latency.record_duration(t0.elapsed());
            let _up = UpGuard::new(up);
            let _ = ready_tx.send(Ok(())).await;
            // Hold the call until hangup, or until the task is aborted.
            let _ = hangup_rx.await;
            drop(call);
        }));
        // One caller at a time, so who is refused (and why) is the same on every run.
        match tokio::time::timeout(WAIT, ready_rx.recv()).await {
            Ok(Some(outcome)) => outcomes.push(outcome),
            _ => check(false, "every caller reports its setup"),
        }
    }
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused_by = |resource: fn(&Resource) -> bool| {
        outcomes
            .iter()
            .filter(|o| matches!(o, Err(e) if e.resource().is_some_and(resource)))
            .count()
    };
    let by_user = refused_by(|r| matches!(r, Resource::UserSessions { .. }));
    let by_limit = refused_by(|r| *r == Resource::Sessions);
    println!(
        "       {admitted} admitted, {by_user} refused by user quota, {by_limit} by the global limit"
    );
    check(admitted == 10, "exactly max_sessions (10) calls are up");
    check(
        by_user == 2 && by_limit == 2,
        "alice's and bob's third calls hit their quota, frank's the global limit",
    );
    check(
        admission.active() == 10 && pool.in_use() == 10 && up.get() == 10,
        "10 admission slots and 10 port pairs are held; gauge calls_up is 10",
    );

    // Abort the first calls of alice, bob and carol mid-call: the permits and ports come back
    // when the aborted tasks drop their state.
    let mut aborted = 0;
    for index in [0, 3, 6] {
        tasks[index].abort();
    }
    for index in [6, 3, 0] {
        let task = tasks.remove(index);
        if let Ok(Err(err)) = tokio::time::timeout(WAIT, task).await {
            aborted += usize::from(err.is_cancelled());
        }
    }
    println!(
        "       after aborting 3 tasks: {} calls, {} port pairs held",
        admission.active(),
        pool.in_use()
    );
    check(aborted == 3, "three call tasks were cancelled");
    check(
        admission.active() == 7 && pool.in_use() == 7 && up.get() == 7,
        "the aborted calls released their slots and ports (and lowered the gauge)",
    );
    check(
        admission.user_active("carol") == 1,
        "carol still has her second call",
    );

    // Everyone else hangs up.
    for hangup in hangups {
        let _ = hangup.send(());
    }
    let mut ended = 0;
    let remaining = tasks.len();
    for task in tasks {
        ended += usize::from(matches!(tokio::time::timeout(WAIT, task).await, Ok(Ok(()))));
    }
    check(
        ended == remaining,
        format!("all {remaining} other call tasks end (the refused ones had already)"),
    );
    check(
        admission.active() == 0 && pool.in_use() == 0 && up.get() == 0,
        "every call ended: admission, ports and gauge are back to zero",
    );
}

fn monitoring(admission: &AdmissionController, pool: &PortPool, metrics: &Metrics) {
    section("5. usage monitoring");
    let usage = admission.snapshot();
    let ports = pool.snapshot();
    let snapshot = metrics.snapshot();
    println!("{}", indent(&usage.to_string()));
    println!("       {ports}");
    println!("{}", indent(&snapshot.to_string()));
    check(
        usage.active == 0 && usage.peak == 10 && usage.admitted_total == 10,
        "admission: peak 10, 10 admitted, none active",
    );
    check(
        usage.refused_total == 4 && ports.peak == 10 && ports.in_use == 0,
        "4 refusals recorded; the port pool peaked at 10",
    );
    check(
        snapshot.counter("calls_started") == Some(10)
            && snapshot.counter("calls_refused") == Some(4),
        "counters: 10 started, 4 refused",
    );
    check(
        snapshot.gauge("calls_up") == Some(0),
        "gauge calls_up is back to 0",
    );
    match snapshot.histogram("setup_latency_ns") {
        Some(setup) => {
            check(
                setup.count == 10,
                "the setup-latency histogram has one value per call",
            );
            check(
                setup.min >= 1_000_000
                    && setup.min <= setup.p50
                    && setup.p50 <= setup.p90
                    && setup.p90 <= setup.p99
                    && setup.p99 <= setup.max,
                "min >= 1 ms and min <= p50 <= p90 <= p99 <= max",
            );
            println!(
                "       setup latency: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
                Duration::from_nanos(setup.p50),
                Duration::from_nanos(setup.p90),
                Duration::from_nanos(setup.p99),
                Duration::from_nanos(setup.max)
            );
        }
        None => check(false, "the setup-latency histogram exists"),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("       {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), ResourceError> {
    global_limits();
    quotas();
    port_pool()?;

    let admission = AdmissionController::new(Limits::default().max_sessions(10).max_per_user(2));
    let pool = PortPool::new(30000..30040)?; // 20 pairs
    let metrics = Metrics::new();
    calls_as_tasks(&admission, &pool, &metrics).await;
    monitoring(&admission, &pool, &metrics);
    println!("\nall checks passed");
    Ok(())
}
