//! # 13 — client core integration
//!
//! A softphone's view of session-core: the user agent client side of calls, as a phone's
//! screen would show them. The office is a PBX built on session-core too: an embedded
//! registrar and digest authentication of REGISTERs and INVITEs.
//!
//! 1. sign in — REGISTER with digest (the 401 answered with alice's credentials); the office's
//!    location service has the phone's contact;
//! 2. dial — `call_with` an extra header; the INVITE's challenge is answered too, and the far
//!    end sees the header and who is calling;
//! 3. progress — 180 Ringing arrives: the phone shows "ringing";
//! 4. answer — the far end picks up: connected, with the codec and the setup time;
//! 5. DTMF — keys pressed in the call reach the far end, as RFC 4733 events and as SIP INFO;
//! 6. hold and resume — re-INVITEs; the far end is told each time;
//! 7. hang-up — the far end sees the BYE;
//! 8. failed calls — do-not-disturb (480), an unknown number (404) and a call the user gave up
//!    on while it rang (CANCEL, 487), each with its status, as the phone's call history;
//! 9. sign out — REGISTER with `Expires: 0`; the office forgets the phone.
//!
//! Run: `cargo run -p examples2 --example 13_client_core_integration`. Exits non-zero if a
//! check fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    Algorithm, CallDecision, CallHandler, CallOptions, CallSession, CallState, CallStats,
    Credentials, DtmfMethod, Ha1, HashFunction, Identity, IncomingCall, RegisterOptions,
    RegistrarConfig, ServerAuth, SessionError, StatusCode, TerminationReason,
};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// What the far end noticed.
#[derive(Debug)]
enum FarEnd {
    /// A call rang: the call, its Subject, and whom the office authenticated.
    Ringing(CallSession, Option<String>, Option<String>),
    Digit(char, DtmfMethod),
    Held(bool),
    Ended(TerminationReason),
}

/// The office the softphone calls: bob's phone rings until the example answers it, carol is
/// on do-not-disturb, and there is nobody else.
struct Office {
    seen: mpsc::UnboundedSender<FarEnd>,
}

impl CallHandler for Office {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        match call.request_uri().user() {
            Some("bob") => {
                let subject = call.header("Subject").map(str::to_owned);
                let _ = self.seen.send(FarEnd::Ringing(
                    call.session.clone(),
                    subject,
                    call.authenticated_user.clone(),
                ));
                CallDecision::Defer
            }
            Some("carol") => CallDecision::Reject(StatusCode::TEMPORARILY_UNAVAILABLE),
            _ => CallDecision::Reject(StatusCode::NOT_FOUND),
        }
    }

    fn on_dtmf(&self, _call: &CallSession, digit: char, method: DtmfMethod) {
        let _ = self.seen.send(FarEnd::Digit(digit, method));
    }

    fn on_remote_hold(&self, _call: &CallSession, held: bool) {
        let _ = self.seen.send(FarEnd::Held(held));
    }

    fn on_call_ended(&self, _call: &CallSession, reason: TerminationReason, _stats: &CallStats) {
        // Only the end of a conversation is news; refused and cancelled calls are not.
        if matches!(
            reason,
            TerminationReason::LocalHangup | TerminationReason::RemoteHangup
        ) {
            let _ = self.seen.send(FarEnd::Ended(reason));
        }
    }
}

/// The next thing the far end noticed.
async fn far_end(seen: &mut mpsc::UnboundedReceiver<FarEnd>) -> Result<FarEnd, BoxError> {
    Ok(within("the far end", seen.recv())
        .await
        .ok_or("the office is gone")?)
}

/// What the phone's screen says.
fn screen(text: impl std::fmt::Display) {
    println!("       [alice's phone] {text}");
}

/// One line of the phone's call history for a call that was never answered.
fn history(to: &str, outcome: &Result<(), SessionError>) -> String {
    match outcome {
        Ok(()) => format!("{to}: answered"),
        Err(error) => match error.status() {
            Some(status) => format!("{to}: {status}"),
            None => format!("{to}: {error}"),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (seen, mut office_saw) = mpsc::unbounded_channel();
    // The office's user store keeps HA1s, never passwords. MD5 is what most desk phones
    // answer; the office offers SHA-256 first, and our phone takes the strongest.
    let alice = Ha1::from_password(
        HashFunction::Sha256,
        "alice",
        "office.example",
        "wonderland",
    );
    let users = move |user: &str, _realm: &str, hash: HashFunction| {
        (user == "alice" && hash == HashFunction::Sha256).then(|| alice.clone())
    };
    let office = loopback(44_300..=44_399)
        .handler(Office { seen })
        .authenticate(
            ServerAuth::new("office.example", users)
                .algorithms([Algorithm::Sha256, Algorithm::Md5]),
        )
        .registrar(RegistrarConfig::default().domain("office.example"))
        .start()
        .await?;
    let phone = loopback(44_200..=44_299)
        .identity(Identity {
            user: "alice".to_owned(),
            display_name: Some("Alice".to_owned()),
            domain: None,
        })
        .credentials(|_realm: &str| Some(Credentials::password("alice", "wonderland")))
        .start()
        .await?;
    let number = |user: &str| format!("sip:{user}@{}", office.local_addr());

    section("1. sign in");
    // office.example is the office's domain, not a host name: the REGISTERs go to the office's
    // address, configured as the phone's outbound proxy.
    let registration = phone
        .register(
            RegisterOptions::new("sip:office.example", "sip:alice@office.example")
                .outbound_proxy(&format!("sip:{}", office.local_addr())),
        )
        .await?;
    let granted = within("the registration", registration.registered()).await?;
    screen(format!(
        "signed in as alice@office.example for {} s",
        granted.as_secs()
    ));
    let bindings = office.lookup("sip:alice@office.example");
    check(
        bindings.len() == 1
            && bindings[0].authenticated_user.as_deref() == Some("alice")
            && bindings[0].contact.port() == Some(phone.local_addr().port()),
        "the office's registrar binds alice to the phone, authenticated by digest",
    );

    section("2. dial");
    screen(format!("calling {} ...", number("bob")));
    let call = phone
        .call_with(
            &number("bob"),
            CallOptions::default().header("Subject", "lunch?"),
        )
        .await?;
    let FarEnd::Ringing(at_bob, subject, caller) = far_end(&mut office_saw).await? else {
        return Err("the office did not ring".into());
    };
    check(
        subject.as_deref() == Some("lunch?"),
        "bob's phone shows the Subject the softphone added",
    );
    check(
        caller.as_deref() == Some("alice"),
        "the office challenged the INVITE and knows the caller is alice",
    );

    section("3. progress: 180 Ringing");
    within("ringing", call.wait_for(|s| s == CallState::Ringing)).await;
    let progress = call.last_response();
    screen(format!(
        "ringing ({})",
        progress
            .as_ref()
            .map_or("?".into(), |(s, r)| format!("{} {r}", s.as_u16()))
    ));
    check(
        progress.map(|(s, _)| s) == Some(StatusCode::RINGING),
        "the provisional response is 180 Ringing",
    );

    section("4. answer");
    within("bob picks up", at_bob.accept()).await?;
    within("the answer", call.answered()).await?;
    let stats = within("the call's statistics", call.stats()).await?;
    screen(format!(
        "connected to {} ({}, set up in {} ms)",
        call.remote_uri(),
        stats.codec.as_deref().unwrap_or("?"),
        stats.setup_time.unwrap_or_default().as_millis()
    ));
    check(
        call.state() == CallState::Active && stats.codec.as_deref() == Some("PCMU"),
        "the call is active with PCMU",
    );
    check(
        stats.setup_time.is_some(),
        "the setup time (dial to answer) is measured",
    );

    section("5. DTMF");
    screen("keys 1 2 3 4 # (in the audio stream, RFC 4733)");
    within("DTMF", call.send_dtmf("1234#", DtmfMethod::Rfc4733)).await?;
    let mut in_band = String::new();
    while in_band.len() < 5 {
        if let FarEnd::Digit(digit, DtmfMethod::Rfc4733) = far_end(&mut office_saw).await? {
            in_band.push(digit);
        }
    }
    check(
        in_band == "1234#",
        format!("the far end got \"{in_band}\" as RFC 4733 events"),
    );
    screen("keys * 9 (as SIP INFO)");
    within("DTMF", call.send_dtmf("*9", DtmfMethod::Info)).await?;
    let mut by_info = String::new();
    while by_info.len() < 2 {
        if let FarEnd::Digit(digit, DtmfMethod::Info) = far_end(&mut office_saw).await? {
            by_info.push(digit);
        }
    }
    check(
        by_info == "*9",
        format!("the far end got \"{by_info}\" by INFO"),
    );

    section("6. hold and resume");
    within("hold", call.hold()).await?;
    screen("on hold");
    check(
        call.state() == CallState::OnHold
            && matches!(far_end(&mut office_saw).await?, FarEnd::Held(true)),
        "the call is on hold and bob's phone was told",
    );
    within("resume", call.resume()).await?;
    screen("resumed");
    check(
        call.state() == CallState::Active
            && matches!(far_end(&mut office_saw).await?, FarEnd::Held(false)),
        "the call is active again and bob's phone was told",
    );

    section("7. hang up");
    let talk = within("the call's statistics", call.stats())
        .await?
        .talk_time
        .unwrap_or_default();
    within("hang-up", call.hangup()).await?;
    screen(format!("call ended after {} ms", talk.as_millis()));
    check(
        within("the BYE's answer", call.ended()).await == CallState::Terminated,
        "the softphone's call is terminated once the BYE is answered",
    );
    check(
        matches!(
            far_end(&mut office_saw).await?,
            FarEnd::Ended(TerminationReason::RemoteHangup)
        ),
        "bob's phone saw the BYE: remote hang-up",
    );

    section("8. failed calls, with their status");
    let mut calls = vec![format!("bob: answered, {} ms", talk.as_millis())];

    let dnd = phone.call(&number("carol")).await?;
    let outcome = within("carol's answer", dnd.answered()).await;
    calls.push(history("carol", &outcome));
    check(
        matches!(&outcome, Err(e) if e.status() == Some(StatusCode::TEMPORARILY_UNAVAILABLE)),
        "carol is on do-not-disturb: 480 Temporarily Unavailable",
    );
    check(
        matches!(dnd.state(), CallState::Failed(_)),
        "and the call's state is failed",
    );

    let unknown = phone.call(&number("dave")).await?;
    let outcome = within("dave's answer", unknown.answered()).await;
    calls.push(history("dave", &outcome));
    check(
        matches!(&outcome, Err(e) if e.status() == Some(StatusCode::NOT_FOUND)),
        "nobody called dave works here: 404 Not Found",
    );

    let again = phone.call(&number("bob")).await?;
    let FarEnd::Ringing(rings_at_bob, _, _) = far_end(&mut office_saw).await? else {
        return Err("the office did not ring".into());
    };
    within("ringing", again.wait_for(|s| s == CallState::Ringing)).await;
    screen("ringing ... the user presses the red button");
    within("cancel", again.cancel()).await?;
    let outcome = within("the cancelled call", again.answered()).await;
    calls.push(history("bob", &outcome));
    check(
        matches!(&outcome, Err(SessionError::Cancelled))
            && outcome.as_ref().err().and_then(SessionError::status)
                == Some(StatusCode::REQUEST_TERMINATED),
        "cancelled while ringing: 487 Request Terminated",
    );
    check(
        within("bob's phone", rings_at_bob.ended()).await == CallState::Cancelled,
        "bob's phone stopped ringing",
    );

    println!("       call history:");
    for line in &calls {
        println!("         {line}");
    }
    check(
        calls.len() == 4,
        "four calls in the history, each with its outcome",
    );

    section("9. sign out");
    within("unregistering", registration.unregister()).await?;
    screen("signed out");
    check(
        office.lookup("sip:alice@office.example").is_empty(),
        "the office's registrar no longer has the phone",
    );
    check(
        released(&phone).await && released(&office).await,
        "the softphone and the office hold nothing",
    );
    phone.shutdown().await;
    office.shutdown().await;
    Ok(())
}
