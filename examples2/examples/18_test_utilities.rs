//! # 18 — testing a call engine with session-testkit
//!
//! A tiny call-engine policy, and its tests written with `session-testkit`: scripted SIP peers
//! on loopback, assertions on the engine's event sequence, tone checks on what each phone
//! hears — all in virtual time, so the 20-second no-answer timer and the 3-second prompt cost
//! nothing but the CPU they use.
//!
//! The engine, `SalesLine` (the policy is the engine's, the primitives session-core's):
//!
//! - a call to `sales` while the line is open rings for 1 s, then is carried to the agent
//!   through a B2BUA (`b2bua::connect`: the agent sees the caller's number, the two hear each
//!   other through the engine's bridge); an agent who refuses passes the refusal on, and one
//!   who does not answer within 20 s is given up: the caller gets 480;
//! - a call to `sales` while it is closed hears a 3-second prompt (early media, a 425 Hz tone
//!   here) and is then refused with 480 Temporarily Unavailable;
//! - a call to any other number gets 404.
//!
//! The opening hours are *injected* (the `OpeningHours` trait): the tests open and close the
//! line at will, and the engine never reads the wall clock, which virtual time does not stop.
//!
//! The tests, each printing what it checked:
//!
//! 1. open — the caller rings at once; the agent's phone rings 1 s later, showing the caller's
//!    URI; once the agent answers, each hears the other's tone; the engine's events come in
//!    order; the caller hangs up and the agent sees the remote hang-up;
//! 2. a busy agent — 486 reaches the caller;
//! 3. no answer — after 1 + 20 s the caller gets 480 and the agent's phone stops ringing
//!    (CANCEL);
//! 4. closed — the caller hears the prompt before any answer, then gets 480; the agent is
//!    never called;
//! 5. a wrong number — 404;
//! 6. the end — nothing is held anywhere (the harness checks every manager).
//!
//! Run: `cargo run -p examples2 --example 18_test_utilities`. Exits non-zero if a check
//! fails.

use examples2::{check, section};
use session_core::crates::media::audio::ToneSource;
use session_core::{
    CallDecision, CallState, Direction, IncomingCall, IncomingCalls, SessionManager,
    SessionManagerBuilder, StatusCode, TerminationReason, b2bua,
};
use session_testkit::time::{Stopwatch, run_paused};
use session_testkit::{Answer, EventLog, Harness, TONE_AMPLITUDE, event, seen};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---- the engine under test ----

/// How long a call to sales rings before it goes to the agent.
const RING_FIRST: Duration = Duration::from_secs(1);
/// How long the agent's phone may ring.
const NO_ANSWER: Duration = Duration::from_secs(20);
/// The closed-line prompt: its tone and its length.
const PROMPT_HZ: f64 = 425.0;
const PROMPT: Duration = Duration::from_secs(3);

/// Whether the sales line is open now. Injected, so that tests decide it.
trait OpeningHours: Send + Sync + 'static {
    fn is_open(&self) -> bool;
}

/// The engine: its manager, fed by a queue of incoming calls, one task per call.
struct SalesLine;

impl SalesLine {
    /// Starts the engine on `builder`, forwarding open-hours calls to `agent`.
    async fn start(
        builder: SessionManagerBuilder,
        agent: String,
        hours: Arc<dyn OpeningHours>,
    ) -> session_core::Result<SessionManager> {
        let (handler, mut incoming) = IncomingCalls::channel(64);
        // Calls wait quietly (100 Trying only) until the engine decides how they sound.
        let handler = handler.deferring_with(CallDecision::DeferSilently);
        let manager = builder.handler(handler).start().await?;
        let engine = manager.clone();
        tokio::spawn(async move {
            while let Some(call) = incoming.next().await {
                let (manager, agent, hours) = (engine.clone(), agent.clone(), hours.clone());
                tokio::spawn(async move {
                    let _ = Self::route(&manager, &call, &agent, &*hours).await;
                });
            }
        });
        Ok(manager)
    }

    /// The policy for one call.
    async fn route(
        manager: &SessionManager,
        call: &IncomingCall,
        agent: &str,
        hours: &dyn OpeningHours,
    ) -> session_core::Result<()> {
        let session = &call.session;
        if call.request_uri().user() != Some("sales") {
            return session.reject(StatusCode::NOT_FOUND).await;
        }
        if !hours.is_open() {
            session.early_media().await?;
            let prompt = ToneSource::new(PROMPT_HZ, TONE_AMPLITUDE).for_duration(PROMPT);
            session.attach_source(Box::new(prompt)).await?;
            session.playback_finished().await;
            return session.reject(StatusCode::TEMPORARILY_UNAVAILABLE).await;
        }
        session.ring().await?;
        tokio::time::sleep(RING_FIRST).await;
        if session.state().is_final() {
            return Ok(()); // the caller gave up
        }
        let connect = b2bua::connect(manager, call, agent, b2bua::B2buaOptions::default());
        tokio::pin!(connect);
        tokio::select! {
            outcome = &mut connect => outcome.map(drop),
            () = tokio::time::sleep(NO_ANSWER) => {
                // Nobody took it: refuse the caller; `connect` then cancels the agent's leg.
                if !session.state().is_established() {
                    let _ = session.reject(StatusCode::TEMPORARILY_UNAVAILABLE).await;
                }
                connect.await.map(drop)
            }
        }
    }
}

// ---- the tests ----

/// Opening hours the test sets.
#[derive(Default)]
struct TestHours(AtomicBool);

impl OpeningHours for TestHours {
    fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

async fn tests() -> Result<(), BoxError> {
    let harness = Harness::new(46_800..=46_999).ports_per_manager(60);
    let agent = harness.peer("agent").tone(1000.0).start().await?;
    let hours = Arc::new(TestHours::default());
    let line = SalesLine::start(harness.manager()?, agent.uri(), hours.clone()).await?;
    harness.track("the sales line", &line);
    let alice = harness.peer("alice").start().await?;
    let sales = format!("sip:sales@{}", line.local_addr());
    let mut log = EventLog::all(&line);

    section("1. open: ring 1 s, then the agent; both hear each other");
    hours.0.store(true, Ordering::Relaxed);
    let watch = Stopwatch::start();
    let call = alice.call(&sales).await?;
    call.wait_for(|s| s == CallState::Ringing).await?;
    check(
        watch.elapsed() < RING_FIRST,
        "the caller hears ringing at once",
    );
    let at_agent = agent.next_call().await?;
    let rang_after = watch.elapsed();
    check(
        rang_after >= RING_FIRST && rang_after < RING_FIRST + Duration::from_millis(100),
        format!("the agent's phone rings {rang_after:?} after the call came (1 s asked)"),
    );
    check(
        at_agent
            .header("From")
            .is_some_and(|from| from.contains(&alice.uri())),
        format!(
            "the agent sees the caller: From {:?}",
            at_agent.header("From")
        ),
    );
    call.answered().await?;
    let mut caller_ear = call.listen().await?;
    let mut agent_ear = at_agent.listen().await?;
    call.play_tone(440.0).await?;
    let heard = caller_ear.listen().await?;
    check(
        heard.contains_tone(1000.0) && !heard.contains_tone(440.0),
        format!(
            "the caller hears the agent (1 kHz share {:.2}), not herself",
            heard.tone_share(1000.0)
        ),
    );
    let heard = agent_ear.listen().await?;
    check(
        heard.contains_tone(440.0) && !heard.contains_tone(1000.0),
        format!(
            "the agent hears the caller (440 Hz share {:.2}), not himself",
            heard.tone_share(440.0)
        ),
    );
    call.hangup().await?;
    agent
        .expect_in_order([
            seen::call_from("alice"),
            seen::established(),
            seen::ended_with(TerminationReason::RemoteHangup),
        ])
        .await?;
    check(
        true,
        "the agent's call: arrived from alice, answered, ended by the far side",
    );
    let events = log
        .expect_in_order([
            event::created_in(Direction::Inbound),
            event::state(CallState::Ringing),
            event::created_in(Direction::Outbound),
            event::state(CallState::Active),
            event::bridge(session_core::BridgeChange::Joined),
            event::terminated_with(TerminationReason::RemoteHangup),
            event::terminated_with(TerminationReason::LocalHangup),
        ])
        .await?;
    check(
        events[0].session_id() != events[2].session_id(),
        "the engine's events, in order: A leg in, ringing, B leg out, answered, bridged, \
         the caller's hang-up, the agent's leg ended",
    );
    harness.assert_released().await?;
    check(true, "every manager holds nothing after the call");

    section("2. a busy agent: the refusal reaches the caller");
    agent.set_answer(Answer::Reject(StatusCode::BUSY_HERE));
    let call = alice.call(&sales).await?;
    let status = call.rejected().await?;
    check(
        status == StatusCode::BUSY_HERE,
        format!("the caller gets {status}"),
    );

    section("3. no answer: 480 after 1 + 20 s, the agent's phone stops ringing");
    agent.set_answer(Answer::Ring);
    let real = std::time::Instant::now();
    let watch = Stopwatch::start();
    let call = alice
        .call(&sales)
        .await?
        .with_timeout(Duration::from_secs(60));
    let status = call.rejected().await?;
    let after = watch.elapsed();
    check(
        status == StatusCode::TEMPORARILY_UNAVAILABLE,
        format!("the caller gets {status}"),
    );
    check(
        after >= RING_FIRST + NO_ANSWER && after < RING_FIRST + NO_ANSWER + Duration::from_secs(1),
        format!(
            "after {after:?} of virtual time ({:?} of real time)",
            real.elapsed()
        ),
    );
    agent
        .expect(seen::ended_with(TerminationReason::Cancelled))
        .await?;
    check(true, "the agent's ringing call was cancelled");

    section("4. closed: a prompt, then 480; the agent is not called");
    hours.0.store(false, Ordering::Relaxed);
    agent.set_answer(Answer::Accept);
    agent.skip_seen();
    let watch = Stopwatch::start();
    let call = alice.call(&sales).await?;
    call.wait_for(|s| s == CallState::Ringing).await?;
    let mut ear = call.listen().await?;
    check(
        ear.hears(PROMPT_HZ).await?,
        "the caller hears the prompt before any answer (early media)",
    );
    let status = call.rejected().await?;
    let after = watch.elapsed();
    check(
        status == StatusCode::TEMPORARILY_UNAVAILABLE && after >= PROMPT,
        format!("then gets {status}, {after:?} after calling (the prompt lasts {PROMPT:?})"),
    );
    agent
        .expect_none(seen::call(), Duration::from_secs(5))
        .await?;
    check(true, "the agent's phone never rang");

    section("5. a wrong number: 404");
    let call = alice
        .call(&format!("sip:nobody@{}", line.local_addr()))
        .await?;
    let status = call.rejected().await?;
    check(
        status == StatusCode::NOT_FOUND,
        format!("the caller gets {status}"),
    );

    section("6. the end: nothing held anywhere");
    harness.finish().await?;
    check(
        true,
        "the sales line, the agent and the caller released everything",
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let real = std::time::Instant::now();
    let virtual_time = run_paused(async {
        let watch = Stopwatch::start();
        tests().await.map(|()| watch.elapsed())
    })??;
    println!(
        "\n{virtual_time:.1?} of virtual time in {:.1?} of real time",
        real.elapsed()
    );
    Ok(())
}
