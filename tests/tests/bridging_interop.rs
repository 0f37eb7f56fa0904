//! session-core's bridging against real peers on loopback: baresip instances in our
//! conference, and baresip calling SIPp through our B2BUA.
//!
//! - `three_baresips_in_our_conference_each_hear_the_two_others_and_not_themselves`: a
//!   manager accepts every call and joins it to one mix-minus room
//!   (`TechnologyChoice::ForceMixer`). Three baresip instances, playing 450, 1150 and 2450 Hz
//!   from their `aufile` microphones (no product of two of them up to the 6th order lands on
//!   the third), dial it. Once all three are in the room and a few seconds have played, each
//!   hangs up; in what each baresip decoded during the last seconds with all three in the
//!   room, both other tones stand ≥ 20 dB above its own (the mix-minus takes one's own voice
//!   out), within 10 dB of each other, and together make up at least half of its energy. The
//!   room says it mixed, each leg's final figures count RTP both ways, and the manager holds
//!   no call, admission slot or RTP port at the end.
//! - `baresip_calls_sipp_through_our_b2bua_and_hears_its_own_tone_echoed`: a manager carries
//!   every incoming call with `session_core::b2bua::connect` to SIPp's built-in `uas` scenario
//!   run with `-rtp_echo` (it answers with PCMU SDP and sends every RTP packet back to where it
//!   came from). baresip's 1 kHz tone crosses our bridge to SIPp, comes back and crosses the
//!   bridge again: baresip's decoded audio holds its own tone (≥ 20 dB over another frequency,
//!   at least half of its energy), and the bridge relayed packets both ways (its counters, and
//!   each leg's final RTP figures).
//!   baresip hangs up: both legs end, the B2BUA's outcome is `Completed`, SIPp counts one
//!   successful call and the manager holds nothing.
//!
//! baresip (Debian `baresip-core`) runs headless through the harness in `support::baresip`, as
//! in `session_core_baresip.rs`, each instance with its own tone; SIPp is Debian `sip-tester`
//! (3.6). A missing peer fails the test (see `support::tool_available`).
//! Every wait is bounded, every process is asked to quit and killed when its handle is dropped.
//! Run time on loopback: about 4.5 s (conference) and 8 s (B2BUA, 4 s of it SIPp's closing
//! `timewait`, while baresip quits), most of it the `TALK` seconds of audio.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_core::b2bua::{B2buaOptions, B2buaOutcome};
use session_core::{
    CallDecision, CallSession, CallState, IncomingCalls, SessionManager, Technology,
    TechnologyChoice,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::baresip::Baresip;
use support::{
    TempDir, assert_released, free_media_ports, free_port, sipp_counter, sipp_text, tone_ratio,
    tool_available,
};
use tokio::sync::mpsc;

/// A generous limit for one step of a call on loopback.
const STEP: Duration = Duration::from_secs(10);
/// How long the audio runs once every party is connected.
const TALK: Duration = Duration::from_secs(4);
/// baresip's decoded audio is sampled at 8 kHz.
const RATE: usize = 8000;
/// The window of decoded audio judged: it ends this long before the end of the dump (the
/// last moments may already be the hangup) …
const TAIL_SKIP: usize = RATE * 3 / 10;
/// … and is this long (within `TALK`, so all the parties were connected throughout it).
const WINDOW: usize = RATE * 2;

/// `power` over `reference`, in dB.
fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// The samples of the judged window: the `WINDOW` before the last `TAIL_SKIP` of `samples`.
fn judged_window(samples: &[i16]) -> &[i16] {
    assert!(
        samples.len() >= WINDOW + TAIL_SKIP + RATE,
        "only {} samples decoded (want at least {})",
        samples.len(),
        WINDOW + TAIL_SKIP + RATE
    );
    let end = samples.len() - TAIL_SKIP;
    &samples[end - WINDOW..end]
}

/// Polls `done` every 10 ms until it holds, for at most `STEP`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"));
}

/// `future`, or a failed test after `STEP`.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"))
}

/// A manager on 127.0.0.1 (UDP only, RTP from `ports`) whose calls are queued for the test.
async fn start_manager(
    ports: std::ops::RangeInclusive<u16>,
    deferral: CallDecision,
) -> (SessionManager, IncomingCalls) {
    let (handler, incoming) = IncomingCalls::channel(8);
    let manager = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .transports(session_core::Transports::Udp)
        .media_ports(ports)
        .shutdown_grace(Duration::from_millis(500))
        .handler(handler.deferring_with(deferral))
        .start()
        .await
        .expect("the manager starts");
    (manager, incoming)
}

// ---------------------------------------------------------------------------------------------
// The peers: baresip (the harness: `support::baresip`) and SIPp's media ports; a leg's figures.

/// A baresip named `name`, also its account's user, whose microphone plays `tone` Hz.
async fn start_baresip(name: &str, tone: f64) -> Baresip {
    Baresip::builder(name).user(name).tone(tone).start().await
}

/// The RTP packets a call's leg sent and received, from its final figures.
fn final_rtp(call: &CallSession) -> (u64, u64) {
    let stats = call.final_stats().expect("the call has ended and released");
    let rtp = stats
        .rtp
        .unwrap_or_else(|| panic!("no RTP figures for {}: {stats:?}", call.id()));
    (rtp.packets_sent, rtp.packets_received)
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// The three tones: no sum or difference of up to six multiples of two of them comes within
/// 30 Hz of the third (after aliasing at 8 kHz), so G.711's distortion of a mix of two cannot
/// pass for the third.
const CONFERENCE_TONES: [f64; 3] = [450.0, 1150.0, 2450.0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_baresips_in_our_conference_each_hear_the_two_others_and_not_themselves() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    let (manager, mut incoming) = start_manager(43_200..=43_299, CallDecision::Defer).await;
    let room = manager.create_bridge(TechnologyChoice::ForceMixer).unwrap();

    // Every call: answered, then joined to the room once established.
    // Test-only: one entry per baresip that calls in (three).
    let (joined_tx, mut joined) = mpsc::unbounded_channel::<Result<CallSession, String>>();
    let host = manager.clone();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            let (host, joined) = (host.clone(), joined_tx.clone());
            tokio::spawn(async move {
                let call = call.session;
                let result = async {
                    call.accept().await.map_err(|e| format!("accept: {e}"))?;
                    call.wait_for(CallState::is_established).await;
                    call.join_bridge(room)
                        .await
                        .map_err(|e| format!("join_bridge: {e}"))?;
                    match host.bridge_of(&call) {
                        Some(bridge) if bridge == room => Ok(call.clone()),
                        other => Err(format!("joined, but bridge_of says {other:?}")),
                    }
                }
                .await;
                let _ = joined.send(result);
            });
        }
    });

    let [low, mid, high] = CONFERENCE_TONES;
    let (a, b, c) = tokio::join!(
        start_baresip("low", low),
        start_baresip("mid", mid),
        start_baresip("high", high)
    );
    let mut baresips = [a, b, c];
    let ours = manager.local_addr();
    for baresip in &mut baresips {
        let target = format!("sip:room@{ours}");
        baresip.command("dial", &target).await;
    }
    let mut calls = Vec::new();
    for _ in 0..3 {
        let call = within("a call joining the room", joined.recv())
            .await
            .expect("the accepting task runs")
            .unwrap_or_else(|e| panic!("a call did not join the room: {e}"));
        calls.push(call);
    }
    for baresip in &mut baresips {
        baresip.event("CALL_ESTABLISHED").await;
    }
    let stats = manager.bridge_stats(room).unwrap();
    assert_eq!(
        (stats.members, stats.technology),
        (3, Technology::Mixer),
        "{stats:?}"
    );
    let mut members = manager.bridge_members(room).unwrap();
    members.sort();
    let mut ids: Vec<_> = calls.iter().map(CallSession::id).collect();
    ids.sort();
    assert_eq!(members, ids);
    let all_in = Instant::now();
    eprintln!("all three in the room after {:?}", started.elapsed());

    tokio::time::sleep(TALK).await;
    let stats = manager.bridge_stats(room).unwrap();
    eprintln!("after {:?} together: {stats:?}", all_in.elapsed());
    // One tick every 20 ms: at least half of them, however busy the machine.
    let ticks_expected = (TALK.as_millis() / 20 / 2) as u64;
    assert!(stats.mixed_ticks >= ticks_expected, "{stats:?}");

    for baresip in &mut baresips {
        baresip.command("hangup", "").await;
    }
    for baresip in &mut baresips {
        baresip.event("CALL_CLOSED").await;
    }
    for call in &calls {
        assert_eq!(
            within("our end of the call", call.ended()).await,
            CallState::Terminated
        );
    }
    eventually("the room empty", || {
        manager.bridge_members(room) == Some(Vec::new())
    })
    .await;
    manager.destroy_bridge(room).await.unwrap();
    assert_released(&manager);
    for call in &calls {
        let (sent, received) = final_rtp(call);
        eprintln!(
            "our leg {}: sent {sent}, received {received} RTP",
            call.id()
        );
        assert!(sent >= 100 && received >= 100, "{:?}", call.final_stats());
    }

    let [a, b, c] = baresips;
    let (a, b, c) = tokio::join!(a.quit(), b.quit(), c.quit());
    let mut failures = Vec::new();
    for quit in [&a, &b, &c] {
        let (sent, received) = quit.stat("packets:");
        let window = judged_window(&quit.decoded);
        let own = goertzel(window, quit.tone);
        let others: Vec<(f64, f64)> = CONFERENCE_TONES
            .iter()
            .filter(|&&tone| tone != quit.tone)
            .map(|&tone| (tone, goertzel(window, tone)))
            .collect();
        let (loudest, quietest) = (
            others.iter().map(|o| o.1).fold(f64::MIN, f64::max),
            others.iter().map(|o| o.1).fold(f64::MAX, f64::min),
        );
        let over_own = db(quietest / own.max(f64::MIN_POSITIVE));
        // Both others make up most of what it hears (each about half of it).
        let others_share: f64 = others.iter().map(|o| tone_share(window, o.0)).sum();
        let spread = db(loudest / quietest.max(f64::MIN_POSITIVE));
        eprintln!(
            "baresip {} ({} Hz) sent {sent} / received {received} RTP, decoded {} samples; \
             over the judged window: the others {} are {over_own:.1} dB or more over its own \
             tone, {spread:.1} dB apart, {:.0} % of the energy",
            quit.name,
            quit.tone,
            quit.decoded.len(),
            others
                .iter()
                .map(|(tone, power)| format!("{tone} Hz {:.1} dB", db(power / own)))
                .collect::<Vec<_>>()
                .join(", "),
            others_share * 100.0,
        );
        if received < 100 {
            failures.push(format!("baresip {} received {received} RTP", quit.name));
        }
        if over_own < 20.0 {
            failures.push(format!(
                "baresip {} hears its own {} Hz: the others only {over_own:.1} dB above it",
                quit.name, quit.tone
            ));
        }
        if others_share < 0.5 {
            failures.push(format!(
                "baresip {} hears the two others as only {:.0} % of its audio",
                quit.name,
                others_share * 100.0
            ));
        }
        if spread > 10.0 {
            failures.push(format!(
                "baresip {} hears the two others {spread:.1} dB apart",
                quit.name
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    manager.shutdown().await;
    eprintln!("conference of three baresips: {:?}", started.elapsed());
}

/// Goertzel power of `tone` in `samples`.
fn goertzel(samples: &[i16], tone: f64) -> f64 {
    session_core::crates::media::audio::goertzel_power(samples, tone)
}

/// The share of the energy of `samples` that is `tone`: 1.0 for a pure sine of that frequency
/// (`goertzel_power` is normalised by N²: A²/4 for a sine of amplitude A, whose mean square is
/// A²/2), 0.5 for each of two equal tones, near 0 for a tone that is not there.
fn tone_share(samples: &[i16], tone: f64) -> f64 {
    let energy: f64 = samples.iter().map(|&x| f64::from(x).powi(2)).sum();
    let mean_square = energy / samples.len().max(1) as f64;
    2.0 * goertzel(samples, tone) / mean_square.max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_sipp_through_our_b2bua_and_hears_its_own_tone_echoed() {
    if !tool_available("baresip", "-h", "baresip-core")
        || !tool_available("sipp", "-v", "sip-tester")
    {
        return;
    }
    /// The tone baresip plays, and a frequency nobody plays, to compare it with.
    const TONE: f64 = 1000.0;
    const ELSEWHERE: f64 = 1700.0;
    let started = Instant::now();

    // SIPp: the built-in UAS (180, 200 with PCMU SDP, waits for BYE), echoing RTP.
    let sipp_dir = TempDir::new("sipp-echo");
    let sipp_sip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let sipp_media = free_media_ports();
    let mut command = tokio::process::Command::new("sipp");
    command
        .args(["-sn", "uas", "-i", "127.0.0.1"])
        .args(["-p", &sipp_sip.port().to_string()])
        .args([
            "-mi",
            "127.0.0.1",
            "-mp",
            &sipp_media.to_string(),
            "-rtp_echo",
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(sipp_dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Polled from the start so SIPp never blocks on a full pipe; dropping it kills SIPp.
    let mut sipp = tokio::spawn(command.output());

    // The B2BUA: every call carried to SIPp; the A legs and the outcomes come back here.
    let (manager, mut incoming) = start_manager(43_300..=43_399, CallDecision::DeferSilently).await;
    // Test-only: one A leg and one outcome per call of the test (one).
    let (a_legs, mut a_leg) = mpsc::unbounded_channel();
    let (outcomes, mut outcome) = mpsc::unbounded_channel();
    let b2bua = manager.clone();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            let _ = a_legs.send(call.session.clone());
            let (manager, outcomes) = (b2bua.clone(), outcomes.clone());
            tokio::spawn(async move {
                let target = format!("sip:echo@{sipp_sip}");
                let result =
                    session_core::b2bua::connect(&manager, &call, &target, B2buaOptions::default())
                        .await;
                let _ = outcomes.send(result);
            });
        }
    });

    let mut baresip = start_baresip("caller", TONE).await;
    baresip
        .command("dial", &format!("sip:echo@{}", manager.local_addr()))
        .await;
    let a = within("the call at the B2BUA", a_leg.recv()).await.unwrap();
    baresip.event("CALL_ESTABLISHED").await;
    within("the A leg answered", a.wait_for(CallState::is_established)).await;
    // The bridge: ours, with the A leg and the B leg to SIPp.
    let mut bridge = None;
    eventually("both legs in a bridge", || {
        bridge = manager.bridge_of(&a);
        bridge.is_some_and(|b| manager.bridge_members(b).is_some_and(|m| m.len() == 2))
    })
    .await;
    let bridge = bridge.unwrap();
    let b_id = manager
        .bridge_members(bridge)
        .unwrap()
        .into_iter()
        .find(|id| *id != a.id())
        .unwrap();
    let b = within("the B leg's handle", manager.session(b_id))
        .await
        .expect("the B leg is alive");
    assert_eq!(b.remote_uri(), format!("sip:echo@{sipp_sip}"));
    assert_eq!(b.codec().as_deref(), Some("PCMU"));
    let together = Instant::now();

    tokio::time::sleep(TALK).await;
    let stats = manager.bridge_stats(bridge).unwrap();
    eprintln!("bridge after {:?}: {stats:?}", together.elapsed());
    assert_eq!(stats.technology, Technology::Relay, "{stats:?}");
    // 50 packets a second each way, 2 × 200 in `TALK`: three quarters of them, which one way
    // alone (a lost echo) cannot reach. The legs' final figures below say which way.
    let relayed_expected = (TALK.as_millis() / 20 * 2 * 3 / 4) as u64;
    assert!(stats.forwarded >= relayed_expected, "{stats:?}");

    baresip.command("hangup", "").await;
    baresip.event("CALL_CLOSED").await;
    let outcome = within("the B2BUA's outcome", outcome.recv())
        .await
        .expect("the B2BUA task ran");
    assert_eq!(outcome.unwrap(), B2buaOutcome::Completed);
    assert_eq!(
        within("the A leg's end", a.ended()).await,
        CallState::Terminated
    );
    assert_eq!(
        within("the B leg's end", b.ended()).await,
        CallState::Terminated
    );
    assert_eq!(
        manager.bridge_stats(bridge),
        None,
        "the B2BUA destroyed its bridge"
    );
    assert_released(&manager);
    let (a_sent, a_received) = final_rtp(&a);
    let (b_sent, b_received) = final_rtp(&b);
    eprintln!(
        "A leg (baresip): sent {a_sent}, received {a_received}; \
         B leg (SIPp): sent {b_sent}, received {b_received}"
    );
    // baresip → A → bridge → B → SIPp, echoed: SIPp → B → bridge → A → baresip.
    for (what, count) in [
        ("A leg received from baresip", a_received),
        ("B leg sent to SIPp", b_sent),
        ("B leg received SIPp's echo", b_received),
        ("A leg sent the echo to baresip", a_sent),
    ] {
        assert!(count >= 100, "{what}: {count} RTP packets");
    }

    // baresip quits while SIPp finishes (it waits 4 s after the BYE before it exits).
    let (quit, sipp_done) = tokio::join!(baresip.quit(), async {
        tokio::time::timeout(STEP, &mut sipp).await
    });
    let sipp_output = match sipp_done {
        Ok(done) => sipp_text(&done.unwrap().expect("sipp ran")),
        Err(_) => {
            sipp.abort();
            panic!("SIPp did not finish within {STEP:?} after the call")
        }
    };
    let (ok, failed) = (
        sipp_counter(&sipp_output, "Successful call"),
        sipp_counter(&sipp_output, "Failed call"),
    );
    assert_eq!((ok, failed), (1, 0), "SIPp:\n{sipp_output}");

    let (sent, received) = quit.stat("packets:");
    let window = judged_window(&quit.decoded);
    let echoed = db(tone_ratio(window, TONE, ELSEWHERE));
    let share = tone_share(window, TONE);
    eprintln!(
        "baresip sent {sent} / received {received} RTP, decoded {} samples; its tone echoed \
         {echoed:.1} dB over {ELSEWHERE} Hz, {:.0} % of the energy",
        quit.decoded.len(),
        share * 100.0
    );
    assert!(received >= 100, "{}", quit.output);
    assert!(
        echoed >= 20.0,
        "baresip's tone did not come back: {echoed:.1} dB over {ELSEWHERE} Hz"
    );
    assert!(
        share >= 0.5,
        "the echo is only {:.0} % of what baresip heard",
        share * 100.0
    );
    manager.shutdown().await;
    eprintln!("baresip → B2BUA → SIPp echo: {:?}", started.elapsed());
}
