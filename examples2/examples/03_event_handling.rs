//! # 03 — event handling
//!
//! What real calls publish on the event bus, and how an application listens:
//!
//! 1. subscribe — two managers share one bus; one subscription sees both legs of a call, from
//!    `SessionCreated` to `MediaStarted`, in order per session;
//! 2. filter — by session (one leg), by group (both legs of one call, nothing of another call),
//!    by kind (DTMF digits), by predicate (calls put on hold);
//! 3. route — one task reads every event and routes it to three desks: billing (a call record
//!    per outbound call), an IVR (digits per session), and a monitor (live calls); a custom
//!    event tells it to close the books;
//! 4. cleanup — session subscriptions close when their session ends; dropping the others
//!    brings the bus back to zero subscribers.
//!
//! The `CallHandler` decides (it runs on the manager's task and must answer at once); the bus
//! is for everyone else, who only watches.
//!
//! Run: `cargo run -p examples2 --example 03_event_handling`. Exits non-zero if a check fails.

use examples2::{check, loopback, released, section, within};
use session_core::crates::events::{EventKind, Payload, RecvError};
use session_core::crates::types::GroupId;
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, Direction, DtmfMethod, EventBus,
    FailureReason, Filter, IncomingCall, SessionEvent, SessionId, StatusCode, Subscription,
    TerminationReason,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// Bob answers `bob` and is busy for anyone else; the example gets each incoming leg.
struct Bob {
    legs: mpsc::UnboundedSender<CallSession>,
}

impl CallHandler for Bob {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self.legs.send(call.session.clone());
        match call.request_uri().user() {
            Some("bob") => CallDecision::accept(),
            _ => CallDecision::Reject(StatusCode::BUSY_HERE),
        }
    }
}

/// One line for an event, naming sessions by the names the example gave them.
fn narrate(event: &SessionEvent, names: &HashMap<SessionId, &str>) -> String {
    let who = event
        .session_id()
        .and_then(|id| names.get(&id).copied())
        .unwrap_or("?");
    match event {
        SessionEvent::SessionCreated { direction, to, .. } => {
            format!("{who}: created, {direction} to {to}")
        }
        SessionEvent::StateChanged { old, new, .. } => format!("{who}: {old} → {new}"),
        SessionEvent::MediaStarted { codec, remote, .. } => {
            format!("{who}: media started, {codec} to {remote}")
        }
        SessionEvent::MediaStopped { .. } => format!("{who}: media stopped"),
        SessionEvent::DtmfReceived { digit, .. } => format!("{who}: digit {digit}"),
        SessionEvent::SessionTerminated { reason, .. } => format!("{who}: terminated ({reason})"),
        other => format!("{who}: {:?}", other.kind()),
    }
}

/// Everything queued on `subscription` right now.
fn drain(subscription: &mut Subscription) -> Vec<Arc<SessionEvent>> {
    std::iter::from_fn(|| subscription.try_recv().ok()).collect()
}

/// A call record, as billing keeps it.
#[derive(Debug)]
struct CallRecord {
    to: String,
    answered: bool,
    talk: Duration,
    ended: TerminationReason,
}

impl std::fmt::Display for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answered = if self.answered {
            "answered"
        } else {
            "unanswered"
        };
        write!(
            f,
            "{}, {answered}, {} ms of talk, {}",
            self.to,
            self.talk.as_millis(),
            self.ended
        )
    }
}

/// Billing: one record per outbound call, written when it ends.
#[derive(Default)]
struct Billing {
    open: HashMap<SessionId, (String, Option<Instant>)>,
    records: Vec<CallRecord>,
}

impl Billing {
    fn on_event(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::SessionCreated {
                session_id,
                direction: Direction::Outbound,
                to,
                ..
            } => {
                self.open.insert(*session_id, (to.to_string(), None));
            }
            SessionEvent::StateChanged {
                session_id,
                new: CallState::Active,
                ..
            } => {
                if let Some((_, answered @ None)) = self.open.get_mut(session_id) {
                    *answered = Some(Instant::now());
                }
            }
            SessionEvent::SessionTerminated {
                session_id, reason, ..
            } => {
                if let Some((to, answered)) = self.open.remove(session_id) {
                    self.records.push(CallRecord {
                        to,
                        answered: answered.is_some(),
                        talk: answered.map(|at| at.elapsed()).unwrap_or_default(),
                        ended: *reason,
                    });
                }
            }
            _ => {}
        }
    }
}

/// The IVR: the digits each session received.
#[derive(Default)]
struct Ivr {
    digits: HashMap<SessionId, String>,
}

/// The monitor: calls alive now, and the most at once.
#[derive(Default)]
struct Monitor {
    live: usize,
    peak: usize,
}

/// Reads every event and hands each to the desks that care, until "close-books".
async fn route(mut events: Subscription) -> (Billing, Ivr, Monitor) {
    let (mut billing, mut ivr, mut monitor) =
        (Billing::default(), Ivr::default(), Monitor::default());
    while let Ok(event) = events.recv().await {
        match &*event {
            SessionEvent::Custom { name, .. } if &**name == "close-books" => break,
            SessionEvent::DtmfReceived {
                session_id, digit, ..
            } => ivr.digits.entry(*session_id).or_default().push(*digit),
            SessionEvent::SessionCreated { .. } => {
                monitor.live += 1;
                monitor.peak = monitor.peak.max(monitor.live);
            }
            SessionEvent::SessionTerminated { .. } => monitor.live -= 1,
            _ => {}
        }
        billing.on_event(&event);
    }
    (billing, ivr, monitor)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let bus = EventBus::new();
    let (legs, mut bob_legs) = mpsc::unbounded_channel();
    let alice = loopback(43_500..=43_599)
        .event_bus(bus.clone())
        .start()
        .await?;
    let bob = loopback(43_600..=43_699)
        .event_bus(bus.clone())
        .handler(Bob { legs })
        .start()
        .await?;
    // Subscribed before any call: nothing can slip past.
    let mut everything = bus.subscribe(Filter::all());
    let router = tokio::spawn(route(bus.subscribe(Filter::all())));

    section("1. subscribe: both legs of a call on one bus");
    let call = alice.call(&format!("sip:bob@{}", bob.local_addr())).await?;
    within("the answer", call.answered()).await?;
    let at_bob = within("bob's leg", bob_legs.recv())
        .await
        .ok_or("bob's handler is gone")?;
    within("bob's side", at_bob.wait_for(CallState::is_established)).await;
    let mut names = HashMap::from([(call.id(), "alice"), (at_bob.id(), "bob")]);
    // The handles' states change a moment before the events go out: wait for the events.
    let mut seen = Vec::new();
    let mut media_up = 0;
    while media_up < 2 {
        let event = within("media on both legs", everything.recv()).await?;
        media_up += usize::from(event.kind() == EventKind::MediaStarted);
        seen.push(event);
    }
    for event in &seen {
        println!("       {}", narrate(event, &names));
    }
    let kinds_of = |leg: SessionId| -> Vec<EventKind> {
        seen.iter()
            .filter(|e| e.session_id() == Some(leg))
            .map(|e| e.kind())
            .collect()
    };
    use EventKind::*;
    check(
        kinds_of(call.id()) == [SessionCreated, StateChanged, MediaStarted],
        "alice's leg: created, answered (initiating → active), media started",
    );
    check(
        kinds_of(at_bob.id()).first() == Some(&SessionCreated)
            && kinds_of(at_bob.id()).last() == Some(&MediaStarted),
        "bob's leg: created first, media started last",
    );

    section("2. filters: by session, by group, by kind, by predicate");
    let mut alice_only = bus.subscribe(Filter::session(call.id()));
    // Both legs of this call form a group; the bus routes by group as cheaply as by session.
    let this_call = GroupId::next();
    bus.join_group(call.id(), this_call);
    bus.join_group(at_bob.id(), this_call);
    let mut both_legs = bus.subscribe(Filter::group(this_call));
    let mut digits = bus.subscribe(Filter::kind(DtmfReceived));
    let mut holds = bus.subscribe(Filter::predicate(|e| {
        matches!(
            e,
            SessionEvent::StateChanged {
                new: CallState::OnHold,
                ..
            }
        )
    }));

    within("DTMF", call.send_dtmf("42#", DtmfMethod::Rfc4733)).await?;
    let mut heard = String::new();
    while heard.len() < 3 {
        let event = within("the digits at bob", digits.recv()).await?;
        if let SessionEvent::DtmfReceived { digit, .. } = *event {
            heard.push(digit);
        }
    }
    within("hold", call.hold()).await?;
    within("resume", call.resume()).await?;
    // Another call meanwhile, refused: not in the group, not alice's leg.
    let busy = alice
        .call(&format!("sip:carol@{}", bob.local_addr()))
        .await?;
    let _ = within("the busy call", busy.answered()).await;
    let busy_at_bob = within("bob's side of it", bob_legs.recv())
        .await
        .ok_or("bob's handler is gone")?;
    names.insert(busy.id(), "alice (to carol)");
    names.insert(busy_at_bob.id(), "bob (as carol)");

    check(
        heard == "42#",
        "kind filter: bob's leg received 4, 2, # in order",
    );
    let alice_events = drain(&mut alice_only);
    check(
        !alice_events.is_empty()
            && alice_events
                .iter()
                .all(|e| e.session_id() == Some(call.id())),
        format!(
            "session filter: {} events, all of alice's leg",
            alice_events.len()
        ),
    );
    let group_events = drain(&mut both_legs);
    let in_group = |leg: SessionId| group_events.iter().any(|e| e.session_id() == Some(leg));
    check(
        in_group(call.id())
            && in_group(at_bob.id())
            && !in_group(busy.id())
            && !in_group(busy_at_bob.id()),
        format!(
            "group filter: {} events of both legs of the call, none of the other call",
            group_events.len()
        ),
    );
    let held: Vec<String> = drain(&mut holds)
        .iter()
        .map(|e| narrate(e, &names))
        .collect();
    println!("       put on hold: {held:?}");
    check(
        held.len() == 2,
        "predicate filter: both legs went on hold, once each",
    );
    check(
        matches!(drain(&mut digits).as_slice(), []),
        "and no more digits than were sent",
    );

    section("3. route: billing, IVR and monitor fed by one subscription");
    within("hang-up", call.hangup()).await?;
    within("bob's side", at_bob.ended()).await;
    // The last event of a session is SessionTerminated: once both legs' are out, the books
    // can close (the router reads the events in the order they were published).
    let mut ended = 0;
    while ended < 2 {
        let event = within("the end of both legs", everything.recv()).await?;
        if let SessionEvent::SessionTerminated { session_id, .. } = *event {
            ended += usize::from(session_id == call.id() || session_id == at_bob.id());
        }
    }
    check(
        released(&alice).await && released(&bob).await,
        "both calls are over and released",
    );
    bus.publish(SessionEvent::custom(None, "close-books", Payload::new(())));
    let (billing, ivr, monitor) = within("the router", router).await?;
    for record in &billing.records {
        println!("       billed: {record}");
    }
    let [first, second] = billing.records.as_slice() else {
        return Err(format!("{} call records, 2 expected", billing.records.len()).into());
    };
    check(
        first.to.contains("carol")
            && !first.answered
            && first.ended
                == TerminationReason::Failed(FailureReason::Rejected(StatusCode::BUSY_HERE)),
        "billing: the call to carol, unanswered, busy (it ended first)",
    );
    check(
        second.to.contains("bob")
            && second.answered
            && second.talk > Duration::ZERO
            && second.ended == TerminationReason::LocalHangup,
        "billing: the call to bob, answered, some talk time, hung up by alice",
    );
    check(
        ivr.digits.get(&at_bob.id()).map(String::as_str) == Some("42#") && ivr.digits.len() == 1,
        "IVR: bob's leg collected \"42#\", nobody else any digit",
    );
    check(
        monitor.peak == 4 && monitor.live == 0,
        format!(
            "monitor: at most {} legs alive at once (both calls, both sides), {} now",
            monitor.peak, monitor.live
        ),
    );

    section("4. cleanup: every subscription ends or is dropped");
    let end = within("alice's leg subscription", async {
        loop {
            if let Err(end) = alice_only.recv().await {
                return end;
            }
        }
    })
    .await;
    check(
        end == RecvError::Closed,
        "the session subscription closed itself after SessionTerminated",
    );
    drop((alice_only, both_legs, digits, holds, everything));
    check(bus.subscriber_count() == 0, "no subscriber left on the bus");
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(())
}
