//! # 17 — stress testing
//!
//! Two session managers on loopback, pushed through the public API only, signaling only (no
//! RTP), each phase checked and each ending with every count at zero:
//!
//! 1. concurrency — `CONCURRENT` calls up at the same time, then all hung up;
//! 2. volume — `SEQUENTIAL` calls one after another with `IN_FLIGHT` in flight: the rate and
//!    the setup time (INVITE sent → answered) p50/p99;
//! 3. limits on purpose — the callee admits `LIMIT` calls; twice as many are offered at once:
//!    exactly `LIMIT` are answered, the rest get a clean 503, nothing leaks;
//! 4. races — on each of `RACES` calls, six operations at once (hold, DTMF, re-INVITE, a
//!    transfer to a closed port, a hang-up from each side): no panic, no deadlock;
//! 5. the figures — calls, rate, p99 setup and the process's peak RSS.
//!
//! Run: `cargo run --release -p examples2 --example 17_stress_testing` for meaningful
//! figures (`cargo xtask examples` runs it in a debug build, where the rates are lower).
//! Exits non-zero if a check fails.

use examples2::{check, released, section, within};
use session_core::{
    CallDecision, CallHandler, CallSession, DtmfMethod, IncomingCall, Limits, MediaMode,
    SessionError, SessionManager, StatusCode, Transports,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONCURRENT: usize = 1_000;
const SEQUENTIAL: usize = 10_000;
const IN_FLIGHT: usize = 50;
const LIMIT: usize = 100;
const RACES: usize = 50;

/// The callee keeps every incoming call's handle (for the races) and answers it.
#[derive(Clone, Default)]
struct Callee {
    calls: Arc<Mutex<Vec<CallSession>>>,
    keep: bool,
}

impl CallHandler for Callee {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        if self.keep
            && let Ok(mut calls) = self.calls.lock()
        {
            calls.push(call.session.clone());
        }
        CallDecision::accept()
    }
}

async fn manager(limit: Option<usize>, callee: Callee) -> Result<SessionManager, BoxError> {
    let mut builder = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .transports(Transports::Udp)
        .media_mode(MediaMode::SignalingOnly)
        .reserve_calls(CONCURRENT * 2)
        .shutdown_grace(Duration::from_millis(500))
        .handler(callee);
    if let Some(limit) = limit {
        builder = builder.limits(Limits::default().max_sessions(limit));
    }
    Ok(builder.start().await?)
}

/// Places one call and waits for its answer; returns the setup time.
async fn answered_call(
    caller: &SessionManager,
    target: &str,
) -> Result<(CallSession, Duration), BoxError> {
    let began = Instant::now();
    let call = caller.call(target).await?;
    within("the answer", call.answered()).await?;
    Ok((call, began.elapsed()))
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let caller = manager(None, Callee::default()).await?;
    let callee = manager(None, Callee::default()).await?;
    let target = format!("sip:load@{}", callee.local_addr());
    let started = Instant::now();

    section(format!("1. {CONCURRENT} calls up at once"));
    let mut placing = JoinSet::new();
    for _ in 0..CONCURRENT {
        let (caller, target) = (caller.clone(), target.clone());
        placing.spawn(async move { answered_call(&caller, &target).await.map(|(call, _)| call) });
    }
    let mut up = Vec::with_capacity(CONCURRENT);
    while let Some(placed) = placing.join_next().await {
        up.push(placed??);
    }
    check(
        up.len() == CONCURRENT && caller.active_calls() == CONCURRENT,
        format!("{CONCURRENT} calls are up on the caller's side"),
    );
    for call in &up {
        call.hangup().await?;
    }
    for call in &up {
        within("the hang-up", call.released()).await;
    }
    check(
        released(&caller).await && released(&callee).await,
        "all hung up: nothing held on either side",
    );

    section(format!(
        "2. {SEQUENTIAL} calls in sequence, {IN_FLIGHT} in flight"
    ));
    let began = Instant::now();
    let mut setups = Vec::with_capacity(SEQUENTIAL);
    let mut in_flight = JoinSet::new();
    let mut placed = 0;
    while setups.len() < SEQUENTIAL {
        while placed < SEQUENTIAL && in_flight.len() < IN_FLIGHT {
            let (caller, target) = (caller.clone(), target.clone());
            in_flight.spawn(async move {
                let (call, setup) = answered_call(&caller, &target).await?;
                call.hangup().await?;
                call.released().await;
                Ok::<_, BoxError>(setup)
            });
            placed += 1;
        }
        if let Some(done) = in_flight.join_next().await {
            setups.push(
                done.map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    setups.sort();
    let rate = SEQUENTIAL as f64 / seconds;
    println!(
        "       {SEQUENTIAL} calls in {seconds:.1} s: {rate:.0} calls/s; setup p50 {:?}, p99 {:?}",
        percentile(&setups, 0.5),
        percentile(&setups, 0.99)
    );
    check(
        setups.len() == SEQUENTIAL && released(&caller).await && released(&callee).await,
        "every call completed; nothing held on either side",
    );

    section(format!(
        "3. a callee limited to {LIMIT} calls, offered {}",
        2 * LIMIT
    ));
    let limited = manager(Some(LIMIT), Callee::default()).await?;
    let limited_target = format!("sip:load@{}", limited.local_addr());
    let mut offered = JoinSet::new();
    for _ in 0..2 * LIMIT {
        let (caller, target) = (caller.clone(), limited_target.clone());
        offered.spawn(async move {
            let call = caller.call(&target).await?;
            let answer = within("an answer or a refusal", call.answered()).await;
            Ok::<_, SessionError>((call, answer))
        });
    }
    let (mut answered, mut refused, mut other) = (Vec::new(), 0, 0);
    while let Some(result) = offered.join_next().await {
        match result? {
            Ok((call, Ok(()))) => answered.push(call),
            Ok((_, Err(error))) if error.status() == Some(StatusCode::SERVICE_UNAVAILABLE) => {
                refused += 1;
            }
            _ => other += 1,
        }
    }
    println!(
        "       answered {}, refused with 503 {refused}, other {other}",
        answered.len()
    );
    check(
        answered.len() == LIMIT && refused == LIMIT && other == 0,
        format!("exactly {LIMIT} answered, the other {LIMIT} refused cleanly with 503"),
    );
    for call in &answered {
        call.hangup().await?;
        within("the hang-up", call.released()).await;
    }
    check(
        released(&caller).await && released(&limited).await,
        "after the hang-ups nothing is held, and no admission slot leaked",
    );

    section(format!("4. six operations racing on each of {RACES} calls"));
    let racing_callee = Callee {
        keep: true,
        ..Callee::default()
    };
    let far_ends = racing_callee.calls.clone();
    let racing = manager(None, racing_callee).await?;
    let racing_target = format!("sip:race@{}", racing.local_addr());
    let nowhere = "sip:nobody@127.0.0.1:9;transport=tcp";
    let mut panics = 0;
    for _ in 0..RACES {
        let (call, _) = answered_call(&caller, &racing_target).await?;
        let far = far_ends
            .lock()
            .map_err(|_| "poisoned")?
            .pop()
            .ok_or("the callee kept no call")?;
        let mut racers = JoinSet::new();
        let c = call.clone();
        racers.spawn(async move { c.hold().await.is_ok() });
        let c = call.clone();
        racers.spawn(async move { c.send_dtmf("5", DtmfMethod::Rfc4733).await.is_ok() });
        let c = call.clone();
        racers.spawn(async move { c.reinvite().await.is_ok() });
        let c = call.clone();
        racers.spawn(async move { c.transfer(nowhere).await.is_ok() });
        let c = call.clone();
        racers.spawn(async move { c.hangup().await.is_ok() });
        let f = far.clone();
        racers.spawn(async move { f.hangup().await.is_ok() });
        within("the racers", async {
            while let Some(result) = racers.join_next().await {
                if result.is_err() {
                    panics += 1;
                }
            }
        })
        .await;
        within("the call's end", call.released()).await;
        within("the far end's", far.released()).await;
    }
    check(panics == 0, "no operation panicked, none wedged");
    check(
        released(&caller).await && released(&racing).await,
        "every raced call ended and released everything",
    );

    section("5. the figures");
    println!(
        "       {} calls in {:.1} s overall; sequential rate {rate:.0} calls/s, setup p99 {:?}; \
         peak RSS {} KiB",
        CONCURRENT + SEQUENTIAL + 2 * LIMIT + RACES,
        started.elapsed().as_secs_f64(),
        percentile(&setups, 0.99),
        peak_rss_kib()
    );
    for manager in [&caller, &callee, &limited, &racing] {
        manager.shutdown().await;
    }
    Ok(())
}
