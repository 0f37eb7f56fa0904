//! # 07 — session priorities
//!
//! An emergency line (a PSAP's front end) on a busy system. The library gives each session a
//! priority and lets it drive two mechanisms; which calls are urgent stays the engine's call:
//!
//! 1. priorities on the wire — a caller marks its call urgent (`CallOptions::priority`): the
//!    INVITE carries `Resource-Priority: esnet.4` (RFC 4412), read back on the other side as
//!    the session's priority;
//! 2. admission keeps room — the front end takes three calls at once and keeps the last slot
//!    for urgent ones (`Limits::reserve_for`): routine calls fill their two slots, the next
//!    routine call gets 503, an urgent one still gets in;
//! 3. packets marked by priority — RTP of routine calls is marked AF41 (34), of urgent calls
//!    EF (46); SIP of routine calls CS3 (24), of urgent calls CS5 (40), datagram by datagram
//!    (`DscpPolicy`); the RTP marks are read back from the sockets;
//! 4. the engine decides too — a call to `112` arrives without `Resource-Priority`; the handler
//!    knows the number and raises its priority (`CallSession::set_priority`), and a routine
//!    call raised mid-call is re-marked at once;
//! 5. a namespace we do not know — an INVITE that requires `Resource-Priority` in a namespace
//!    we do not read (`dsn.flash`) gets 417 naming the values we accept.
//!
//! `crates/session-core/tests/priorities.rs` checks the same marks on the packets as they
//! arrive (the IP header's TOS byte). Run: `cargo run -p examples2 --example
//! 07_session_priorities`. Exits non-zero if a check fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    CallDecision, CallHandler, CallOptions, CallSession, CallState, DscpPolicy, FailureReason,
    IncomingCall, Limits, Priority, StatusCode,
};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

type BoxError = Box<dyn std::error::Error>;

/// Priority level 3: "urgent" in this engine's policy.
fn urgent() -> Priority {
    Priority::new(3).unwrap_or(Priority::HIGHEST)
}

/// The front end's handler: answers everything; a call to an emergency number is urgent
/// whatever its caller said.
#[derive(Default)]
struct FrontEnd {
    calls: Arc<Mutex<Vec<CallSession>>>,
}

impl CallHandler for FrontEnd {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        if call.request_uri().user() == Some("112") && call.session.priority() < urgent() {
            // The engine's rule, not the library's: a call to 112 is urgent.
            let _ = call.session.set_priority(Priority::HIGHEST);
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call.session.clone());
        }
        CallDecision::accept()
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let front_end = FrontEnd::default();
    let arrived = front_end.calls.clone();
    let psap = loopback(47_600..=47_699)
        .limits(Limits::default().max_sessions(3).reserve_for(urgent(), 1))
        .dscp(
            DscpPolicy::default()
                .sip(24)
                .sip_at_or_above(urgent(), 40)
                .rtp(34)
                .rtp_at_or_above(urgent(), 46),
        )
        .handler(front_end)
        .start()
        .await?;
    let callers = loopback(47_700..=47_799).start().await?;
    let line = |user: &str| format!("sip:{user}@{}", psap.local_addr());
    let last_arrived = || arrived.lock().ok().and_then(|calls| calls.last().cloned());

    section("1. an urgent call says so on the wire");
    let first = callers.call(&line("desk")).await?;
    within("the first routine call", first.answered()).await?;
    let first_at_psap = last_arrived().ok_or("no call arrived")?;
    check(
        first_at_psap.priority() == Priority::ROUTINE,
        "a call without Resource-Priority is routine",
    );
    let second = callers.call(&line("desk")).await?;
    within("the second routine call", second.answered()).await?;
    let second_at_psap = last_arrived().ok_or("no call arrived")?;

    section("2. admission keeps the last slot for urgent calls");
    let third = callers.call(&line("desk")).await?;
    let ended = within("the third routine call", third.ended()).await;
    check(
        ended == CallState::Failed(FailureReason::Rejected(StatusCode::SERVICE_UNAVAILABLE)),
        format!("a third routine call gets 503 with one slot still free ({ended:?})"),
    );
    let emergency = callers
        .call_with(
            &line("dispatch"),
            CallOptions::default().priority(Priority::HIGHEST),
        )
        .await?;
    within("the urgent call", emergency.answered()).await?;
    let emergency_at_psap = last_arrived().ok_or("no call arrived")?;
    check(
        emergency_at_psap.priority() == Priority::HIGHEST,
        "the urgent call takes the kept slot; `esnet.4` read back as the highest priority",
    );
    check(
        psap.admission().active() == 3,
        "three calls up: two routine, one urgent",
    );

    section("3. RTP is marked by priority");
    let marks = |call: &CallSession| call.rtp_dscp();
    check(
        marks(&second_at_psap) == Some(34),
        "a routine call's RTP: AF41 (34)",
    );
    check(
        marks(&emergency_at_psap) == Some(46),
        "the urgent call's RTP: EF (46)",
    );

    section("4. the engine raises a call's priority itself");
    // Admission reads the INVITE (a call to 112 arrives routine), so make routine room first.
    for (ours, theirs) in [(&first, &first_at_psap), (&emergency, &emergency_at_psap)] {
        ours.hangup().await?;
        within("a call's release", theirs.released()).await;
    }
    let to_112 = callers.call(&line("112")).await?;
    within("the call to 112", to_112.answered()).await?;
    let at_112 = last_arrived().ok_or("no call arrived")?;
    check(
        at_112.priority() == Priority::HIGHEST,
        "a call to 112 without Resource-Priority is raised by the handler",
    );
    check(
        marks(&at_112) == Some(46),
        "its RTP is EF (46) from the first packet",
    );
    second_at_psap.set_priority(urgent())?;
    check(
        marks(&second_at_psap) == Some(46),
        "a routine call raised to urgent mid-call is re-marked EF at once",
    );

    section("5. a required namespace we do not read gets 417");
    let response = send_raw_invite(&psap.local_addr().to_string()).await?;
    check(
        response.starts_with("SIP/2.0 417"),
        format!(
            "417 Unknown Resource-Priority ({})",
            response.lines().next().unwrap_or("")
        ),
    );
    let accepted = response
        .lines()
        .find_map(|line| line.strip_prefix("Accept-Resource-Priority:"))
        .map(str::trim)
        .unwrap_or("");
    check(
        accepted.contains("esnet.4") && accepted.contains("wps.0"),
        format!("it names what we accept: {accepted}"),
    );

    section("the end: every call hung up, nothing held on either side");
    for call in [&second, &to_112] {
        call.hangup().await?;
    }
    check(released(&psap).await, "the front end holds nothing");
    check(released(&callers).await, "the callers hold nothing");
    psap.shutdown().await;
    callers.shutdown().await;
    Ok(())
}

/// Sends an INVITE that requires Resource-Priority in the `dsn` namespace (which we do not
/// read) from a plain UDP socket, and returns the final response.
async fn send_raw_invite(to: &str) -> Result<String, BoxError> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let me = socket.local_addr()?;
    let invite = format!(
        "INVITE sip:desk@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-07-rp\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=07\r\nTo: <sip:desk@{to}>\r\n\
         Call-ID: 07-resource-priority\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@{me}>\r\n\
         Resource-Priority: dsn.flash\r\nRequire: resource-priority\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(invite.as_bytes(), to).await?;
    let mut buffer = vec![0; 4096];
    loop {
        let (n, _) = within(
            "the answer to the raw INVITE",
            socket.recv_from(&mut buffer),
        )
        .await?;
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        // Skip a provisional response, if any.
        if !text.starts_with("SIP/2.0 1") {
            return Ok(text);
        }
    }
}
