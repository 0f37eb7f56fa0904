//! Digest interop with Kamailio (Debian's `kamailio` package): two `SessionManager`s register
//! with digest at a Kamailio registrar (`registrar` + `usrloc` in memory, `auth` with a fixed
//! password per user checked by `pv_auth_check`, no database), then one calls the other
//! through it. Kamailio challenges the INVITE with 407; the call reaches the callee at its
//! registered contact, is answered, carries audio both ways (tones checked by Goertzel power),
//! and is hung up through Kamailio's route set; both then unregister. A third test puts a
//! real peer on the other side: baresip registers at Kamailio with MD5 digest (its own REGISTER,
//! challenged and authorized), and our UA, registered too, calls it through Kamailio with the
//! 407 answered; baresip answers, audio flows both ways (its decoded dump holds our tone, we
//! hear its tone), and our BYE ends the call through the route set.
//!
//! Kamailio 5.6's `auth` module offers one algorithm per instance (`modparam("auth",
//! "algorithm", …)`: MD5 or SHA-256), so each algorithm gets an instance and a test of its
//! own; a raw REGISTER first reads the challenge to prove which algorithm is on the wire.
//!
//! Kamailio is started by the shared harness `support::kamailio` (the one the TLS interop test
//! uses): `$KAMAILIO` or Debian's binary, a missing one or a missing module failing the test
//! under CI, in the foreground on a loopback port of its own, its process group stopped on
//! every path.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::kamailio::{self as harness, Kamailio, READY_ROUTE};

/// The modules the test's configuration loads beyond the core ones.
const MODULES: &[&str] = &["auth", "registrar", "usrloc"];

/// Kamailio's SIP URI.
fn uri_of(kamailio: &Kamailio) -> String {
    format!("sip:{}", kamailio.addr())
}

use session_core::crates::sip::{HeaderName, Message, Response};
use session_core::{
    CallSession, ChannelSink, Credentials, Identity, IncomingCalls, MediaMode, RegisterOptions,
    RegistrationState, SessionManager, ToneSource, goertzel_power,
};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The realm of the test's Kamailio.
const REALM: &str = "kamailio.test";

/// Every wait of the test is bounded by this.
const STEP: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The configuration: a registrar and record-routing proxy that authenticates REGISTER and
/// initial requests with digest (`algorithm`), alice's and bob's passwords fixed in the script.
fn config(port: u16, modules: &Path, algorithm: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
mpath="{modules}/"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "{algorithm}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "ROUTED $rm $ci\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        xlog("L_NOTICE", "NOROUTE $rm $ci\n");
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    route(AUTH);
    if (is_method("REGISTER")) {{
        # Logged before save() answers, so the line is there once the answer is.
        xlog("L_NOTICE", "SAVING $tU $hdr(Expires)\n");
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (!lookup("location")) {{
        xlog("L_NOTICE", "UNKNOWN $rU\n");
        sl_send_reply("404", "Not Found");
        exit;
    }}
    record_route();
    xlog("L_NOTICE", "INITIAL $rm $ci -> $ru\n");
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

route[AUTH] {{
    if ($au == "alice") {{
        $avp(pw) = "alice-secret";
    }} else if ($au == "bob") {{
        $avp(pw) = "bob-secret";
    }} else {{
        $avp(pw) = "nobody has this password";
    }}
    if (!pv_auth_check("{REALM}", "$avp(pw)", "0", "0")) {{
        xlog("L_NOTICE", "CHALLENGE $rm $ci\n");
        auth_challenge("{REALM}", "1");
        exit;
    }}
    xlog("L_NOTICE", "AUTHORIZED $rm $au $ci\n");
    consume_credentials();
}}
"#,
        modules = modules.display()
    ) + READY_ROUTE
}

/// A REGISTER without credentials from a raw socket, sent until Kamailio answers (it is ready
/// then) — the 401's `WWW-Authenticate` says which algorithm Kamailio offers.
/// Kamailio's log once `done` says it has what we wait for, or after 5 s: its lines reach us
/// through the harness's reader thread, possibly after the responses they precede.
async fn log_when(kamailio: &Kamailio, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = kamailio.log();
        if done(&log) || tokio::time::Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn offered_challenge(kamailio: &Kamailio) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let register = format!(
        "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe1;rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:probe@{REALM}>\r\nFrom: <sip:probe@{REALM}>;tag=p1\r\n\
         Call-ID: probe-{port}\r\nCSeq: 1 REGISTER\r\nContact: <sip:probe@{me}>\r\n\
         Expires: 0\r\nContent-Length: 0\r\n\r\n",
        uri = uri_of(kamailio),
        port = kamailio.addr().port(),
    );
    let mut buf = vec![0u8; 65_535];
    // Kamailio takes a moment to bind: the probe is resent like a SIP request over UDP
    // (Timer E) until the answer comes, within the step's limit.
    let answer = tokio::time::timeout(STEP, async {
        loop {
            socket
                .send_to(register.as_bytes(), kamailio.addr())
                .await
                .unwrap();
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
                && let Ok(Message::Response(response)) = Message::parse(buf[..len].to_vec())
            {
                return response;
            }
        }
    })
    .await;
    let response: Response = answer.unwrap_or_else(|_| {
        panic!(
            "Kamailio did not answer on {}:\n{}",
            kamailio.addr(),
            kamailio.log()
        )
    });
    assert_eq!(response.status.as_u16(), 401, "{response:?}");
    response
        .headers
        .get_str(HeaderName::WwwAuthenticate)
        .expect("WWW-Authenticate")
        .to_owned()
}

/// A manager for `user` (`user-secret` is its password in Kamailio's realm) whose incoming
/// calls wait in a queue.
async fn user(user: &str, ports: std::ops::RangeInclusive<u16>) -> (SessionManager, IncomingCalls) {
    let password = format!("{user}-secret");
    let username = user.to_owned();
    let (handler, incoming) = IncomingCalls::channel(4);
    let manager = SessionManager::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .media_ports(ports)
        .media_mode(MediaMode::Rtp { echo: false })
        .identity(Identity {
            user: user.to_owned(),
            ..Identity::default()
        })
        .credentials(move |realm: &str| {
            (realm == REALM).then(|| Credentials::password(username.clone(), password.clone()))
        })
        .handler(handler)
        .shutdown_grace(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    (manager, incoming)
}

/// Both sides hear the other's tone.
async fn audio_both_ways(caller: &CallSession, callee: &CallSession) {
    let (caller_sink, mut caller_heard) = ChannelSink::new(64);
    let (callee_sink, mut callee_heard) = ChannelSink::new(64);
    caller.attach_sink(Box::new(caller_sink)).await.unwrap();
    callee.attach_sink(Box::new(callee_sink)).await.unwrap();
    caller
        .attach_source(Box::new(ToneSource::new(440.0, 8000)))
        .await
        .unwrap();
    callee
        .attach_source(Box::new(ToneSource::new(1000.0, 8000)))
        .await
        .unwrap();
    // Skip the first frames (the talk spurt's start), then judge one frame each way.
    for _ in 0..5 {
        within("audio at the callee", callee_heard.recv())
            .await
            .unwrap();
        within("audio at the caller", caller_heard.recv())
            .await
            .unwrap();
    }
    let at_callee = within("audio at the callee", callee_heard.recv())
        .await
        .unwrap();
    let at_caller = within("audio at the caller", caller_heard.recv())
        .await
        .unwrap();
    assert!(
        goertzel_power(at_callee.samples(), 440.0)
            > 10.0 * goertzel_power(at_callee.samples(), 1000.0),
        "the callee hears the caller's 440 Hz"
    );
    assert!(
        goertzel_power(at_caller.samples(), 1000.0)
            > 10.0 * goertzel_power(at_caller.samples(), 440.0),
        "the caller hears the callee's 1 kHz"
    );
}

async fn register_and_call_through_kamailio(
    algorithm: &str,
    alice_ports: std::ops::RangeInclusive<u16>,
    bob_ports: std::ops::RangeInclusive<u16>,
) {
    let Some(installed) = harness::installed(MODULES, "kamailio") else {
        return;
    };
    let mut kamailio = Kamailio::start("auth", &installed, &[], |_, modules, port| {
        config(port, modules, algorithm)
    })
    .await;
    let offered = offered_challenge(&kamailio).await;
    assert!(
        offered.contains(&format!("algorithm={algorithm}")),
        "Kamailio offers {algorithm}: {offered}"
    );

    let (alice, _alice_incoming) = user("alice", alice_ports).await;
    let (bob, mut bob_incoming) = user("bob", bob_ports).await;
    let aor = |user: &str| format!("sip:{user}@{REALM}");
    let alice_reg = alice
        .register(RegisterOptions::new(&uri_of(&kamailio), &aor("alice")))
        .await
        .unwrap();
    let bob_reg = bob
        .register(RegisterOptions::new(&uri_of(&kamailio), &aor("bob")))
        .await
        .unwrap();
    for (who, registration) in [("alice", &alice_reg), ("bob", &bob_reg)] {
        let expires = within("registered", registration.registered())
            .await
            .unwrap_or_else(|e| panic!("{who} not registered: {e}\n{}", kamailio.log()));
        assert!(expires > Duration::ZERO);
        let RegistrationState::Registered { contacts, .. } = registration.state() else {
            panic!("{:?}", registration.state())
        };
        assert_eq!(contacts.len(), 1, "{who}'s binding: {contacts:?}");
    }

    // Alice calls bob at Kamailio: 407, answered; Kamailio finds bob's binding.
    let call = alice
        .call(&format!("sip:bob@127.0.0.1:{}", kamailio.addr().port()))
        .await
        .unwrap();
    let incoming = within("the call at bob", bob_incoming.next())
        .await
        .expect("bob's queue open");
    assert_eq!(
        incoming.request.uri.user(),
        Some("bob"),
        "bob is reached at his registered contact"
    );
    let answered = incoming.session.clone();
    answered.accept().await.unwrap();
    within("the answer", call.answered())
        .await
        .unwrap_or_else(|e| panic!("not answered: {e}\n{}", kamailio.log()));
    within(
        "bob's side up",
        answered.wait_for(session_core::CallState::is_established),
    )
    .await;
    audio_both_ways(&call, &answered).await;

    call.hangup().await.unwrap();
    within("bob's side ended", answered.ended()).await;
    within("alice's side ended", call.ended()).await;

    // The BYE's line is written before Kamailio relays it, but reaches us through the
    // harness's reader thread, which may not have it yet when the 200 for the BYE is back.
    let log = log_when(&kamailio, |log| log.contains("ROUTED BYE")).await;
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert!(count("CHALLENGE REGISTER") >= 2, "{log}");
    assert!(count("AUTHORIZED REGISTER alice") >= 1, "{log}");
    assert!(count("AUTHORIZED REGISTER bob") >= 1, "{log}");
    assert!(
        count("CHALLENGE INVITE") >= 1,
        "the proxy challenged the INVITE:\n{log}"
    );
    assert!(count("AUTHORIZED INVITE alice") >= 1, "{log}");
    assert!(
        count("ROUTED ACK") >= 1,
        "the ACK followed the route set:\n{log}"
    );
    assert!(
        count("ROUTED BYE") >= 1,
        "the BYE followed the route set:\n{log}"
    );
    assert_eq!(count("NOROUTE"), 0, "{log}");

    within("alice unregistered", alice_reg.unregister())
        .await
        .unwrap();
    within("bob unregistered", bob_reg.unregister())
        .await
        .unwrap();
    let unregistered = |log: &str| {
        log.lines()
            .filter(|l| l.contains("SAVING") && l.ends_with(" 0"))
            .count()
    };
    let log = log_when(&kamailio, |log| unregistered(log) >= 2).await;
    assert!(
        unregistered(&log) >= 2,
        "both bindings removed with Expires: 0:\n{log}"
    );
    alice.shutdown().await;
    bob.shutdown().await;
    kamailio.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_call_through_kamailio_with_md5_digest() {
    register_and_call_through_kamailio("MD5", 48_000..=48_099, 48_100..=48_199).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_call_through_kamailio_with_sha256_digest() {
    register_and_call_through_kamailio("SHA-256", 48_200..=48_299, 48_300..=48_399).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_ua_calls_baresip_registered_at_kamailio_with_md5_digest() {
    use support::baresip::Baresip;
    use support::{BARESIP_TONE_HZ, OUR_TONE_HZ, tone_ratio, tool_available};
    let Some(installed) = harness::installed(MODULES, "kamailio") else {
        return;
    };
    if !tool_available("baresip", "-v", "baresip-core") {
        return;
    }
    let mut kamailio = Kamailio::start("auth-baresip", &installed, &[], |_, modules, port| {
        config(port, modules, "MD5")
    })
    .await;
    // Kamailio answers once it is up (the raw REGISTER gets its 401).
    let _ = offered_challenge(&kamailio).await;
    let baresip = Baresip::builder("bob")
        .user("bob")
        .auto_answer()
        .register_at(kamailio.addr(), "bob-secret", Duration::from_secs(60))
        .start()
        .await;
    // Kamailio's log is the only witness of baresip's registration: read it until it says so.
    within("baresip registered at Kamailio", async {
        while !kamailio.log().contains("AUTHORIZED REGISTER bob") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let (alice, _alice_incoming) = user("alice", 48_400..=48_499).await;
    let alice_reg = alice
        .register(RegisterOptions::new(
            &uri_of(&kamailio),
            &format!("sip:alice@{REALM}"),
        ))
        .await
        .unwrap();
    within("alice registered", alice_reg.registered())
        .await
        .unwrap_or_else(|e| panic!("alice not registered: {e}\n{}", kamailio.log()));
    let call = alice
        .call(&format!("sip:bob@127.0.0.1:{}", kamailio.addr().port()))
        .await
        .unwrap();
    within("baresip's answer", call.answered())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "not answered: {e}\n{}\n{}",
                kamailio.log(),
                baresip.output()
            )
        });
    let (sink, mut heard) = ChannelSink::new(64);
    call.attach_sink(Box::new(sink)).await.unwrap();
    call.attach_source(Box::new(ToneSource::new(OUR_TONE_HZ, 8000)))
        .await
        .unwrap();
    let mut samples = Vec::new();
    while samples.len() < 8_000 {
        let frame = within("audio from baresip", heard.recv()).await.unwrap();
        samples.extend_from_slice(frame.samples());
    }
    let from_baresip = tone_ratio(&samples[4_000..], BARESIP_TONE_HZ, OUR_TONE_HZ);
    assert!(
        from_baresip > 10.0,
        "we hear baresip's tone: ratio {from_baresip}"
    );
    call.hangup().await.unwrap();
    within("our side ended", call.ended()).await;
    let quit = baresip.quit().await;
    let to_baresip = tone_ratio(&quit.decoded, OUR_TONE_HZ, BARESIP_TONE_HZ);
    assert!(
        quit.decoded.len() > 4_000 && to_baresip > 10.0,
        "baresip heard our tone: {} samples, ratio {to_baresip}",
        quit.decoded.len()
    );
    // The BYE's line is written before Kamailio relays it, but reaches us through the
    // harness's reader thread, which may not have it yet when the 200 for the BYE is back.
    let log = log_when(&kamailio, |log| log.contains("ROUTED BYE")).await;
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert!(
        count("CHALLENGE INVITE") >= 1,
        "the proxy challenged our INVITE:\n{log}"
    );
    assert!(count("AUTHORIZED INVITE alice") >= 1, "{log}");
    assert!(
        count("ROUTED BYE") >= 1,
        "our BYE followed the route set:\n{log}"
    );
    within("alice unregistered", alice_reg.unregister())
        .await
        .unwrap();
    alice.shutdown().await;
    kamailio.stop().await;
}
