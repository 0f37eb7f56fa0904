//! # 02 — session lifecycle
//!
//! One call from creation to the end, and every way a call can fail:
//!
//! 1. create — `call` returns a handle at once; the session has an id, a Call-ID, a direction
//!    and both URIs before anyone answers;
//! 2. states — ringing (180), an operation refused because of the state, the answer, hold and
//!    resume, the hang-up: every change is a `StateChanged` event, in order, and each one is a
//!    legal move of `CallState`;
//! 3. terminate and clean up — the session's own subscription closes after its last event, the
//!    handle stays usable (it reports `NoSuchSession`), and every resource is back;
//! 4. error handling — busy, cancelled, unanswered, invalid input: each failure is a
//!    `SessionError` with the SIP status it carries or maps to, and an `ErrorKind` that says
//!    whose problem it is.
//!
//! Run: `cargo run -p examples2 --example 02_session_lifecycle`. Exits non-zero if a check
//! fails.

use examples2::{check, loopback, released, section, within};
use session_core::crates::dialog::transaction::TimerConfig;
use session_core::crates::events::{EventKind, RecvError};
use session_core::crates::types::Classify;
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, Direction, FailureReason, Filter,
    IncomingCall, SessionError, SessionEvent, SessionId, StatusCode, Subscription,
};
use std::time::Duration;
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// Bob's phone: rings for `bob` (the example answers later), is busy for `busy`, and hands
/// every incoming call to the example.
struct Phone {
    incoming: mpsc::UnboundedSender<CallSession>,
}

impl CallHandler for Phone {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self.incoming.send(call.session.clone());
        match call.request_uri().user() {
            Some("busy") => CallDecision::Reject(StatusCode::BUSY_HERE),
            _ => CallDecision::Defer,
        }
    }
}

/// The state changes of `session` among the events queued on `changes`.
fn states_of(changes: &mut Subscription, session: SessionId) -> Vec<(CallState, CallState)> {
    std::iter::from_fn(|| changes.try_recv().ok())
        .filter_map(|event| match *event {
            SessionEvent::StateChanged {
                session_id,
                old,
                new,
                ..
            } if session_id == session => Some((old, new)),
            _ => None,
        })
        .collect()
}

/// `initiating → ringing → …` from a list of changes.
fn path(changes: &[(CallState, CallState)]) -> String {
    let mut text = changes
        .first()
        .map(|(old, _)| old.to_string())
        .unwrap_or_default();
    for (_, new) in changes {
        text.push_str(&format!(" → {new}"));
    }
    text
}

/// One line about an error: its status on the wire and its kind.
fn describe(error: &SessionError) -> String {
    let status = error
        .status()
        .map_or("no status".to_owned(), |s| s.to_string());
    format!("{error} — {status}, {:?}", error.kind())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (incoming, mut at_bob) = mpsc::unbounded_channel();
    let alice = loopback(43_200..=43_299).start().await?;
    let bob = loopback(43_300..=43_399)
        .handler(Phone { incoming })
        .start()
        .await?;
    let bob_uri = format!("sip:bob@{}", bob.local_addr());
    // Subscribed before the call, so no change can slip past.
    let mut alice_changes = alice
        .events()
        .subscribe(Filter::kind(EventKind::StateChanged));
    let mut bob_changes = bob
        .events()
        .subscribe(Filter::kind(EventKind::StateChanged));

    section("1. create: a handle before anyone answers");
    let call = alice.call(&bob_uri).await?;
    println!(
        "       session {} (Call-ID {}), {} from {} to {}",
        call.id(),
        call.call_id(),
        call.direction(),
        call.local_uri(),
        call.remote_uri()
    );
    check(
        call.direction() == Direction::Outbound && call.remote_uri() == bob_uri,
        "an outbound session to bob exists as soon as the INVITE is sent",
    );
    let incoming = within("bob's incoming call", at_bob.recv())
        .await
        .ok_or("bob's handler is gone")?;
    check(
        incoming.call_id() == call.call_id() && incoming.direction() == Direction::Inbound,
        "bob's side is an inbound session with the same Call-ID",
    );
    // Only the session's own events; this subscription closes when the session ends.
    let mut own_events = alice.events().subscribe(Filter::session(call.id()));

    section("2. states: ringing, answer, hold, resume, hang-up");
    within("ringing", call.wait_for(|s| s == CallState::Ringing)).await;
    check(
        call.last_response().map(|(status, _)| status) == Some(StatusCode::RINGING),
        "bob deferred: 180 Ringing came back and the call is ringing",
    );
    let early = call.hold().await;
    check(
        matches!(
            early,
            Err(SessionError::InvalidState {
                operation: "hold",
                state: CallState::Ringing
            })
        ),
        format!(
            "hold before the answer is refused: {}",
            early
                .as_ref()
                .map_or_else(describe, |()| "accepted?!".into())
        ),
    );
    let wrong_side = call.accept().await;
    check(
        matches!(wrong_side, Err(SessionError::InvalidState { .. })),
        "accept on the caller's side is refused too (only the callee answers)",
    );
    within("bob's accept", incoming.accept()).await?;
    within("the answer", call.answered()).await?;
    check(call.state() == CallState::Active, "answered: active");
    within("hold", call.hold()).await?;
    check(call.state() == CallState::OnHold, "alice holds: on hold");
    within("resume", call.resume()).await?;
    check(call.state() == CallState::Active, "alice resumes: active");
    within("bob's hang-up", incoming.hangup()).await?;
    let last = within("the end", call.ended()).await;
    check(
        last == CallState::Terminated,
        "bob hangs up: alice's side is terminated",
    );
    // `ended` returns once the state is final; the ports come back just after.
    check(
        released(&alice).await && released(&bob).await,
        "and both managers hold nothing",
    );
    let alice_path = states_of(&mut alice_changes, call.id());
    let bob_path = states_of(&mut bob_changes, incoming.id());
    println!("       alice: {}", path(&alice_path));
    println!("       bob:   {}", path(&bob_path));
    use CallState::*;
    check(
        alice_path
            == [
                (Initiating, Ringing),
                (Ringing, Active),
                (Active, OnHold),
                (OnHold, Active),
                (Active, Terminating),
                (Terminating, Terminated),
            ],
        "alice's events tell the whole story, in order",
    );
    check(
        bob_path.first() == Some(&(Initiating, Ringing))
            && bob_path.last() == Some(&(Terminating, Terminated))
            && bob_path.contains(&(Active, OnHold)),
        "bob's side went the same way: ringing, active, held by alice, terminated",
    );
    check(
        alice_path
            .iter()
            .chain(&bob_path)
            .all(|(old, new)| old.can_transition(*new)),
        "every change is a legal CallState transition",
    );

    section("3. terminate and clean up");
    let mut kinds = Vec::new();
    let end = loop {
        match within("the session's subscription", own_events.recv()).await {
            Ok(event) => kinds.push(event.kind()),
            Err(end) => break end,
        }
    };
    println!("       the session's own events: {kinds:?}");
    check(
        kinds.last() == Some(&EventKind::SessionTerminated) && end == RecvError::Closed,
        "its subscription ends with SessionTerminated, then Closed",
    );
    check(
        call.ended().await == Terminated,
        "`ended` on an ended call returns its final state at once",
    );
    let late = call.hangup().await;
    check(
        matches!(late, Err(SessionError::NoSuchSession)),
        format!(
            "hangup again: {}",
            late.as_ref().map_or_else(describe, |()| "ok?!".into())
        ),
    );

    section("4. error handling: every failure with its status");
    let busy = alice
        .call(&format!("sip:busy@{}", bob.local_addr()))
        .await?;
    let _busy_at_bob = within("bob's side of the busy call", at_bob.recv()).await;
    let Err(error) = within("the busy call", busy.answered()).await else {
        return Err("answered?!".into());
    };
    println!("       busy:        {}", describe(&error));
    check(
        error.status() == Some(StatusCode::BUSY_HERE)
            && busy.state() == Failed(FailureReason::Rejected(StatusCode::BUSY_HERE)),
        "486 Busy Here on the wire, and the session failed with it",
    );

    let ringing = alice.call(&bob_uri).await?;
    let ringing_at_bob = within("bob's incoming call", at_bob.recv())
        .await
        .ok_or("bob's handler is gone")?;
    within("ringing", ringing.wait_for(|s| s == Ringing)).await;
    within("cancel", ringing.cancel()).await?;
    let Err(error) = within("the cancelled call", ringing.answered()).await else {
        return Err("answered?!".into());
    };
    println!("       cancelled:   {}", describe(&error));
    check(
        matches!(error, SessionError::Cancelled)
            && error.status() == Some(StatusCode::REQUEST_TERMINATED),
        "cancelled while ringing: 487 Request Terminated",
    );
    check(
        within("bob's side", ringing_at_bob.ended()).await == Cancelled,
        "bob's side ends as cancelled too",
    );

    // A peer that never answers: a socket nobody reads. With T1 = 10 ms, Timer B (64·T1)
    // gives up after 640 ms instead of 32 s.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let impatient = loopback(43_400..=43_499)
        .timers(TimerConfig {
            t1: Duration::from_millis(10),
            ..TimerConfig::default()
        })
        .start()
        .await?;
    let lost = impatient
        .call(&format!("sip:nobody@{}", silent.local_addr()?))
        .await?;
    let Err(error) = within("Timer B", lost.answered()).await else {
        return Err("answered?!".into());
    };
    println!("       unanswered:  {}", describe(&error));
    check(
        matches!(error, SessionError::Timeout)
            && error.status() == Some(StatusCode::REQUEST_TIMEOUT)
            && lost.state() == Failed(FailureReason::Timeout),
        "no response at all: Timer B fires, 408 Request Timeout",
    );

    let Err(invalid) = alice.call("this is not a SIP URI").await else {
        return Err("called?!".into());
    };
    println!("       bad target:  {}", describe(&invalid));
    check(
        matches!(invalid, SessionError::InvalidInput { .. }) && invalid.status().is_none(),
        "a malformed target is the caller's mistake: no session, no status",
    );
    check(
        released(&alice).await && released(&bob).await && released(&impatient).await,
        "after every failure, nothing is held anywhere",
    );
    for manager in [&alice, &bob, &impatient] {
        manager.shutdown().await;
    }
    Ok(())
}
