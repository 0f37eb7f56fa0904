//! # 01 — basic infrastructure
//!
//! How a session-core application is put together, before any call logic:
//!
//! 1. the factory — `SessionManager::builder()` then `.start()`: every setting has a default
//!    fit for loopback; the manager binds SIP (UDP and TCP on one port) and says where;
//! 2. dependency injection — the application builds the event bus, the admission controller,
//!    the RTP port pool and the call handler itself and hands them in, so it keeps its own
//!    handles on them and sees exactly what the manager does with them;
//! 3. shared infrastructure — two managers share one bus and one admission limit: a call
//!    between them takes a slot on each side, and the next call is refused locally with 503;
//! 4. lifecycle — `shutdown` ends the live calls (the peer sees BYE), releases everything, can
//!    be called again, and later calls fail with `SessionError::Shutdown`.
//!
//! Run: `cargo run -p examples2 --example 01_basic_infrastructure`. Exits non-zero if a check
//! fails.

use examples2::{check, loopback, released, section, within};
use session_core::crates::events::EventKind;
use session_core::{
    AdmissionController, CallDecision, CallHandler, CallState, EventBus, FailureReason, Filter,
    Identity, IncomingCall, Limits, PortPool, SessionError, SessionEvent, SessionManager,
    StatusCode, TerminationReason,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

type BoxError = Box<dyn std::error::Error>;

/// The call handler is an ordinary value the application builds, with whatever it needs: here
/// a directory of the users this phone answers for, and a counter the application reads back.
struct Reception {
    directory: Vec<&'static str>,
    answered: Arc<AtomicUsize>,
}

impl CallHandler for Reception {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let user = call.request_uri().user().unwrap_or_default();
        if self.directory.contains(&user) {
            self.answered.fetch_add(1, Ordering::Relaxed);
            CallDecision::accept()
        } else {
            CallDecision::Reject(StatusCode::NOT_FOUND)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    section("1. the factory: a manager with defaults");
    let plain = SessionManager::builder().start().await?;
    println!(
        "       listening on {} as {}",
        plain.local_addr(),
        plain.uri()
    );
    check(
        plain.local_addr().ip().is_loopback() && plain.local_addr().port() != 0,
        "binds 127.0.0.1 and a port the system picked",
    );
    check(
        plain.uri().user() == Some("user"),
        "the default identity is sip:user@<address> (not the library's name)",
    );
    check(
        plain.active_calls() == 0 && plain.ports().in_use() == 0,
        "starts with no call and no RTP port in use",
    );
    plain.shutdown().await;

    section("2. dependency injection: bus, limits, ports and handler built by the application");
    // One bus and one admission controller for both managers; the application keeps handles.
    let bus = EventBus::new();
    let mut created = bus.subscribe(Filter::kind(EventKind::SessionCreated));
    let mut terminated = bus.subscribe(Filter::kind(EventKind::SessionTerminated));
    let admission = AdmissionController::new(Limits::default().max_sessions(2));
    let alice_ports = PortPool::new(43_000..=43_099)?;
    let answered = Arc::new(AtomicUsize::new(0));

    // `port_pool` replaces the pool `loopback` would have made from the same range.
    let alice = loopback(43_000..=43_099)
        .identity(Identity {
            user: "alice".to_owned(),
            display_name: Some("Alice".to_owned()),
            domain: None,
        })
        .event_bus(bus.clone())
        .admission(admission.clone())
        .port_pool(alice_ports.clone())
        .start()
        .await?;
    let bob = loopback(43_100..=43_199)
        .identity(Identity {
            user: "bob".to_owned(),
            display_name: None,
            domain: None,
        })
        .event_bus(bus.clone())
        .admission(admission.clone())
        .handler(Reception {
            directory: vec!["bob"],
            answered: answered.clone(),
        })
        .start()
        .await?;
    println!("       alice {}  bob {}", alice.uri(), bob.uri());
    check(
        alice.uri().user() == Some("alice") && bob.uri().user() == Some("bob"),
        "each manager calls itself by its injected identity",
    );

    // The injected handler decides: a user not in its directory gets 404 on the wire.
    let stranger = alice
        .call(&format!("sip:mallory@{}", bob.local_addr()))
        .await?;
    let refused = within("the call to mallory", stranger.answered()).await;
    check(
        matches!(&refused, Err(e) if e.status() == Some(StatusCode::NOT_FOUND)),
        format!("bob's handler refuses sip:mallory with 404 ({refused:?})"),
    );
    check(
        released(&alice).await && released(&bob).await,
        "the refused call left nothing behind",
    );

    let call = alice.call(&format!("sip:bob@{}", bob.local_addr())).await?;
    within("bob's answer", call.answered()).await?;
    check(call.state() == CallState::Active, "alice → bob is active");
    check(
        answered.load(Ordering::Relaxed) == 1,
        "the handler's counter, read through the application's handle, says 1 call answered",
    );
    check(
        alice_ports.in_use() == 1,
        "alice's injected port pool lends the call one RTP port pair",
    );
    check(
        admission.active() == 2,
        "the shared admission controller counts both legs (alice's and bob's)",
    );

    section("3. shared infrastructure: one limit for both managers, one bus for all events");
    let over = alice.call(&format!("sip:bob@{}", bob.local_addr())).await;
    check(
        matches!(&over, Err(SessionError::Resources(_))),
        "a second call is refused before any INVITE leaves: the shared limit of 2 is reached",
    );
    if let Err(error) = &over {
        check(
            error.status() == Some(StatusCode::SERVICE_UNAVAILABLE),
            format!("the refusal maps to 503 Service Unavailable ({error})"),
        );
    }
    let mut directions = Vec::new();
    while let Ok(event) = created.try_recv() {
        if let SessionEvent::SessionCreated { direction, to, .. } = &*event {
            directions.push(format!("{direction} to {to}"));
        }
    }
    println!("       sessions created on the shared bus: {directions:?}");
    check(
        directions.len() == 4,
        "the bus saw both managers' sessions: mallory's two legs and bob's two",
    );

    section("4. lifecycle: shutdown with a call up");
    alice.shutdown().await;
    check(
        call.state() == CallState::Terminated,
        "alice's call is terminated by the shutdown",
    );
    // Four sessions ended on the shared bus: mallory's two legs, then this call's two.
    let mut reasons = HashMap::new();
    while reasons.len() < 4 {
        let event = within("the end of every session", terminated.recv()).await?;
        if let SessionEvent::SessionTerminated {
            session_id, reason, ..
        } = &*event
        {
            reasons.insert(*session_id, *reason);
        }
    }
    let rejected = TerminationReason::Failed(FailureReason::Rejected(StatusCode::NOT_FOUND));
    check(
        reasons.values().filter(|r| **r == rejected).count() == 2,
        "mallory's two legs ended as rejected with 404",
    );
    check(
        reasons.get(&call.id()) == Some(&TerminationReason::Shutdown),
        "alice's leg of the call ended by the shutdown",
    );
    check(
        reasons
            .values()
            .filter(|r| **r == TerminationReason::RemoteHangup)
            .count()
            == 1,
        "bob's leg ended by the BYE the shutdown sent",
    );
    check(
        released(&alice).await && alice_ports.in_use() == 0,
        "alice holds nothing: no call, no slot, no port",
    );
    check(released(&bob).await, "bob holds nothing either");
    check(admission.active() == 0, "the shared limit is free again");
    within("a second shutdown", alice.shutdown()).await;
    check(
        true,
        "a second shutdown returns at once and changes nothing",
    );
    let late = alice.call(&format!("sip:bob@{}", bob.local_addr())).await;
    check(
        matches!(late, Err(SessionError::Shutdown)),
        "a call after shutdown fails with SessionError::Shutdown",
    );
    bob.shutdown().await;
    Ok(())
}
