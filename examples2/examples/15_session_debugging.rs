//! # 15 — session debugging
//!
//! What happened to a call, and which live calls look wrong, with a `SessionTracer` the
//! managers feed (`SessionManagerBuilder::tracer`):
//!
//! 1. a timeline — one call, ringing, answered, a digit, hold and resume, hang-up: every SIP
//!    message in and out, every state change, media start and stop, as readable text with
//!    times relative to the session's start;
//! 2. both legs together — the caller's and the callee's sessions are correlated and rendered
//!    one after the other;
//! 3. health: audio — the application samples each call's RTP counters into the tracer; a
//!    call where one side sends nothing is reported as one-way audio, and the report clears
//!    once audio flows both ways;
//! 4. health: signaling and hold — a call left ringing is reported as `NoFinalResponse` on
//!    both sides, and a held call as `LongHold`, when judged at a `now` past the threshold
//!    (time is an argument: nothing sleeps for a minute);
//! 5. once every call has ended nothing is reported, and the tracer's counters say what it
//!    holds.
//!
//! Both managers share one tracer here because they share one process; each process would
//! usually have its own.
//!
//! Run: `cargo run -p examples2 --example 15_session_debugging`. Exits non-zero if a check
//! fails.

use examples2::{WAIT, check, loopback, released, section, within};
use session_core::crates::media::audio::ToneSource;
use session_core::crates::tracer::{Flow, HealthThresholds, TraceEntry};
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, DtmfMethod, HealthIssue, HealthKind,
    IdleAudio, IncomingCall, SessionId, SessionTracer, TracerConfig,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// How long RTP may stand still before the health report says so. Ten seconds by default;
/// short here so the example can show it happening in real time.
const NO_AUDIO_AFTER: Duration = Duration::from_millis(300);

/// How long a finished session's timeline is kept (5 minutes by default): longer than the
/// long-hold threshold, so that judging 10 minutes ahead does not drop the earlier calls.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// Bob lets every call ring and hands it to the example, which answers (or not).
struct Bob {
    incoming: mpsc::UnboundedSender<CallSession>,
}

impl CallHandler for Bob {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self.incoming.send(call.session.clone());
        CallDecision::Defer
    }
}

/// Records both legs' RTP counters in the tracer, six times over 500 ms: what a monitoring
/// task of the application would do every few seconds.
async fn sample_rtp(tracer: &SessionTracer, legs: [&CallSession; 2]) -> Result<(), BoxError> {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..6 {
        every.tick().await;
        for leg in legs {
            let stats = within("statistics", leg.stats()).await?;
            let rtp = stats.rtp.ok_or("no RTP statistics")?;
            tracer.record(
                leg.id(),
                Instant::now(),
                TraceEntry::RtpCounters {
                    sent: rtp.packets_sent,
                    received: rtp.packets_received,
                },
            );
        }
    }
    Ok(())
}

/// Waits (at most [`WAIT`]) until the tracer has recorded the end of every one of `sessions`:
/// their last entries arrive just after the calls' states turn final.
async fn all_finished(tracer: &SessionTracer, sessions: &[SessionId]) -> bool {
    let finished = || {
        sessions
            .iter()
            .all(|id| tracer.timeline(*id).is_some_and(|t| t.finished().is_some()))
    };
    let wait = async {
        while !finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.is_ok()
}

/// The issues of `session` among `issues`.
fn issues_of(issues: &[HealthIssue], session: SessionId) -> Vec<&HealthKind> {
    issues
        .iter()
        .filter(|issue| issue.session == session)
        .map(|issue| &issue.kind)
        .collect()
}

/// Prints a health report, naming the sessions.
fn report(issues: &[HealthIssue], names: &[(SessionId, &str)]) {
    if issues.is_empty() {
        println!("       health: nothing to report");
    }
    for issue in issues {
        let name = names
            .iter()
            .find(|(id, _)| *id == issue.session)
            .map_or("?", |(_, name)| *name);
        println!("       health: {name}: {}", issue.kind);
    }
}

/// Every line of `text`, indented.
fn indented(text: &str) -> String {
    text.lines()
        .map(|line| format!("         {line}\n"))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tracer = SessionTracer::new(
        TracerConfig::default()
            .keep_finished(KEEP_FINISHED)
            .thresholds(HealthThresholds::default().no_audio_after(NO_AUDIO_AFTER)),
    )?;
    let thresholds = tracer.config().thresholds;
    let (incoming, mut at_bob) = mpsc::unbounded_channel();
    let alice = loopback(44_700..=44_799)
        .tracer(tracer.clone())
        .start()
        .await?;
    // Bob's phone sends nothing while it has nothing to play (by default a call sends
    // silence), so a broken microphone shows as one-way audio below.
    let bob = loopback(44_800..=44_899)
        .idle_audio(IdleAudio::Nothing)
        .tracer(tracer.clone())
        .handler(Bob { incoming })
        .start()
        .await?;
    let bob_uri = |user: &str| format!("sip:{user}@{}", bob.local_addr());
    let mut next_at_bob = async || -> Result<CallSession, BoxError> {
        Ok(within("bob's incoming call", at_bob.recv())
            .await
            .ok_or("bob's handler is gone")?)
    };

    section("1. the timeline of one call");
    let call = alice.call(&bob_uri("bob")).await?;
    let bobs_leg = next_at_bob().await?;
    within("ringing", call.wait_for(|s| s == CallState::Ringing)).await;
    within("bob answers", bobs_leg.accept()).await?;
    within("the answer", call.answered()).await?;
    within("a digit", call.send_dtmf("7", DtmfMethod::Info)).await?;
    within("hold", call.hold()).await?;
    within("resume", call.resume()).await?;
    within("hang-up", call.hangup()).await?;
    within("bob's side", bobs_leg.ended()).await;
    check(
        released(&alice).await
            && released(&bob).await
            && all_finished(&tracer, &[call.id(), bobs_leg.id()]).await,
        "the call is over on both sides, and the tracer has seen it end",
    );
    let timeline = tracer
        .timeline(call.id())
        .ok_or("alice's call was not traced")?;
    let text = timeline.render();
    print!("{}", indented(&text));
    let has = |needle: &str| text.contains(needle);
    check(
        has("→ INVITE") && has("← 180") && has("← 200") && has("→ ACK"),
        "it shows the INVITE going out, 180 and 200 coming back, and the ACK",
    );
    check(
        has("state initiating → ringing") && has("state ringing → active"),
        "the state changes between the messages",
    );
    check(
        has("media started PCMU") && has("media stopped"),
        "media starting with the answer and stopping at the end",
    );
    check(
        has("→ INFO") && has("state active → on-hold") && has("state on-hold → active"),
        "the digit (INFO) and the hold and resume",
    );
    check(
        has("→ BYE") && timeline.finished().is_some(),
        "the BYE, and the session is marked finished",
    );

    section("2. both legs, correlated");
    let correlation = tracer.correlate(call.id(), bobs_leg.id())?;
    check(
        tracer.related(call.id()) == [call.id(), bobs_leg.id()],
        format!("alice's and bob's sessions share correlation {correlation}, caller first"),
    );
    let both = tracer.render_related(call.id());
    let render = |id| tracer.timeline(id).map(|timeline| timeline.render());
    let (alice_side, bob_side) = (render(call.id()), render(bobs_leg.id()));
    let (Some(alice_side), Some(bob_side)) = (alice_side, bob_side) else {
        return Err("a leg was not traced".into());
    };
    print!("{}", indented(&bob_side));
    check(
        both == format!("{alice_side}\n{bob_side}"),
        "render_related gives both timelines, one after the other",
    );
    check(
        bob_side.contains("← INVITE") && bob_side.contains("→ 180") && bob_side.contains("← BYE"),
        "bob's side is the mirror image: INVITE in, 180 out, BYE in",
    );

    section("3. health: one-way audio, found from RTP counters");
    let call = alice.call(&bob_uri("bob")).await?;
    let bobs_leg = next_at_bob().await?;
    within("bob answers", bobs_leg.accept()).await?;
    within("the answer", call.answered()).await?;
    within("bob's side", bobs_leg.wait_for(CallState::is_established)).await;
    let names = [(call.id(), "alice"), (bobs_leg.id(), "bob")];
    // Alice plays a tone; Bob's phone has nothing to send (a broken microphone, say).
    within(
        "alice's tone",
        call.attach_source(Box::new(ToneSource::new(440.0, 8000))),
    )
    .await?;
    sample_rtp(&tracer, [&call, &bobs_leg]).await?;
    let issues = tracer.health(Instant::now());
    report(&issues, &names);
    check(
        matches!(
            issues_of(&issues, bobs_leg.id()).as_slice(),
            [HealthKind::OneWayAudio {
                silent: Flow::Sent,
                ..
            }]
        ),
        "bob's leg: one-way audio, nothing sent",
    );
    check(
        matches!(
            issues_of(&issues, call.id()).as_slice(),
            [HealthKind::OneWayAudio {
                silent: Flow::Received,
                ..
            }]
        ),
        "alice's leg: one-way audio, nothing received",
    );
    println!("       bob's microphone is fixed");
    within(
        "bob's tone",
        bobs_leg.attach_source(Box::new(ToneSource::new(1000.0, 8000))),
    )
    .await?;
    sample_rtp(&tracer, [&call, &bobs_leg]).await?;
    let issues = tracer.health(Instant::now());
    report(&issues, &names);
    check(
        issues.is_empty(),
        "audio flows both ways: nothing to report",
    );

    section("4. health: a call left ringing, a call left on hold");
    within("hold", call.hold()).await?;
    let ringing = alice.call(&bob_uri("carol")).await?;
    let ringing_at_bob = next_at_bob().await?;
    within("ringing", ringing.wait_for(|s| s == CallState::Ringing)).await;
    let names = [
        (call.id(), "alice (held)"),
        (bobs_leg.id(), "bob (held)"),
        (ringing.id(), "alice → carol"),
        (ringing_at_bob.id(), "carol"),
    ];
    let now = Instant::now();
    let issues = tracer.health(now);
    check(
        issues.is_empty(),
        "judged now, nothing is wrong yet: the hold is fresh, the INVITE just sent",
    );
    println!(
        "       judged {} s from now (the answer timeout):",
        thresholds.answer_timeout.as_secs()
    );
    let issues = tracer.health(now + thresholds.answer_timeout);
    report(&issues, &names);
    check(
        matches!(
            issues_of(&issues, ringing.id()).as_slice(),
            [HealthKind::NoFinalResponse {
                request: Flow::Sent,
                ..
            }]
        ),
        "alice's unanswered INVITE: NoFinalResponse (sent)",
    );
    check(
        matches!(
            issues_of(&issues, ringing_at_bob.id()).as_slice(),
            [HealthKind::NoFinalResponse {
                request: Flow::Received,
                ..
            }]
        ),
        "bob never answered the INVITE he received: NoFinalResponse (received)",
    );
    check(
        issues_of(&issues, call.id()).is_empty(),
        "the held call is fine after a minute (and its audio checks pause while held)",
    );
    println!(
        "       judged {} s from now (the long-hold threshold):",
        thresholds.long_hold.as_secs()
    );
    let issues = tracer.health(now + thresholds.long_hold);
    let long_holds = issues
        .iter()
        .filter(|issue| matches!(issue.kind, HealthKind::LongHold { .. }))
        .count();
    report(&issues, &names);
    check(
        long_holds == 2
            && matches!(
                issues_of(&issues, call.id()).as_slice(),
                [HealthKind::LongHold { .. }]
            ),
        "both legs of the held call: LongHold",
    );

    section("5. after the calls end");
    within("cancel", ringing.cancel()).await?;
    within("hang-up", call.hangup()).await?;
    within("bob's side", bobs_leg.ended()).await;
    within("carol's side", ringing_at_bob.ended()).await;
    let legs = [call.id(), bobs_leg.id(), ringing.id(), ringing_at_bob.id()];
    check(
        released(&alice).await && released(&bob).await && all_finished(&tracer, &legs).await,
        "both calls are over, and the tracer has seen them end",
    );
    let stats = tracer.stats();
    println!(
        "       tracer: {} sessions held, {} finished, {} entries dropped",
        stats.sessions, stats.finished_sessions, stats.entries_dropped
    );
    check(
        stats.sessions == 6 && stats.finished_sessions == 6 && stats.entries_dropped == 0,
        "the tracer holds all six sessions (three calls, two sides), all finished, complete",
    );
    let issues = tracer.health(Instant::now() + thresholds.long_hold);
    check(
        issues.is_empty(),
        "finished sessions are never reported, however late the check",
    );
    let later = tracer.health(Instant::now() + KEEP_FINISHED);
    let stats = tracer.stats();
    check(
        later.is_empty() && stats.sessions == 0 && stats.finished_expired == 6,
        "judged past keep_finished, the finished timelines are dropped: the tracer is empty",
    );
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(())
}
