//! session-core against baresip on loopback: the public API (`SessionManager`, `CallHandler`,
//! `CallSession`) with a real softphone on the other end, in both directions.
//!
//! - `baresip_calls_our_uas_audio_both_ways_then_baresip_hangs_up`: baresip dials our manager,
//!   our handler accepts, we attach a 600 Hz `ToneSource` and a `ChannelSink`. We hear
//!   baresip's 1 kHz WAV tone, our RTP statistics count its packets (and, when its RTCP gives
//!   one, a round-trip time); baresip decodes our tone and its statistics show what our RTCP
//!   sender report said. baresip hangs up: our call ends as `RemoteHangup` with every
//!   resource back, and baresip's SIP trace shows its BYE to us.
//! - `our_uac_calls_baresip_audio_both_ways_then_we_hang_up`: we call baresip (auto-answer),
//!   with the same audio checks both ways; we hang up, baresip reports the call closed and its
//!   SIP trace shows our BYE and its 200; our manager holds no call, no admission slot and no
//!   RTP port.
//!
//! baresip (Debian `baresip-core`, 1.0) runs headless through the harness in `support::baresip`: a
//! generated configuration in a temporary directory, SIP and RTP on 127.0.0.1, a WAV file as
//! microphone (`aufile`), a player nobody drains (`aubridge`), decoded audio dumped to WAV
//! (`sndfile`), and its `ctrl_tcp` module, through which the test dials, hangs up, quits and reads
//! baresip's call events (netstring-framed JSON). A missing baresip fails the tests with the
//! `apt-get` command, unless `SESSION_CORE_ALLOW_MISSING_PEERS=1` (never under CI) lets them pass
//! without running. baresip is asked to quit at the end and killed when its handle is dropped;
//! every wait has a time limit. Run time: 6–12 s each, most of it waiting for a round-trip time
//! from baresip's RTCP (see `RTT_WAIT`).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_core::crates::media::audio::{ChannelSink, ToneSource};
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, CallStats, IncomingCall, SessionManager,
    TerminationReason,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::baresip::{Baresip, Quit};
use support::{BARESIP_TONE_HZ, OUR_TONE_HZ, assert_released, tone_ratio, tool_available};
use tokio::sync::mpsc;

/// A generous limit for one step of a call on loopback.
const STEP: Duration = Duration::from_secs(10);
/// How long to wait for a round-trip time from baresip's RTCP. baresip (libre) reports every
/// 5 s from the start of its stream, our media task too from its configuration, a few ms apart;
/// our first report is an RR (nothing sent yet), so the first SR baresip can answer leaves at
/// 5 s and its answer comes at 5 or 10 s. baresip's DLSR has millisecond resolution: on
/// loopback, where the round trip is well under 1 ms, arrival − LSR − DLSR is often "negative"
/// and `session-media` drops it (`ReportBlock::round_trip`), so a given report yields a round
/// trip only about half the time. Hence a round trip is reported when it came, not required.
const RTT_WAIT: Duration = Duration::from_secs(11);

// ---------------------------------------------------------------------------------------------
// Our side: a manager whose handler accepts and reports on a channel.

/// What our handler saw.
#[derive(Debug)]
enum Seen {
    Incoming(CallSession),
    Established(CallSession),
    Ended(CallSession, TerminationReason),
}

/// Accepts every call with the manager's media and reports each callback.
struct Reporting(mpsc::UnboundedSender<Seen>);

impl CallHandler for Reporting {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self.0.send(Seen::Incoming(call.session.clone()));
        CallDecision::accept()
    }
    fn on_call_established(&self, call: &CallSession) {
        let _ = self.0.send(Seen::Established(call.clone()));
    }
    fn on_call_ended(&self, call: &CallSession, reason: TerminationReason, _stats: &CallStats) {
        let _ = self.0.send(Seen::Ended(call.clone(), reason));
    }
}

/// Our manager on 127.0.0.1 (UDP only, RTP from `ports`) and what its handler sees.
async fn start_manager(
    ports: std::ops::RangeInclusive<u16>,
) -> (SessionManager, mpsc::UnboundedReceiver<Seen>) {
    let (seen, rx) = mpsc::unbounded_channel();
    let manager = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .transports(session_core::Transports::Udp)
        .media_ports(ports)
        .shutdown_grace(Duration::from_millis(500))
        .handler(Reporting(seen))
        .start()
        .await
        .expect("the manager starts");
    (manager, rx)
}

/// The next thing our handler saw that `pick` accepts, within `limit`.
async fn expect_seen<T>(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    what: &str,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let event = seen.recv().await.expect("the handler channel is open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    };
    tokio::time::timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {STEP:?}"))
}

/// What we heard on a call and what our statistics say.
#[derive(Debug)]
struct Heard {
    frames: usize,
    samples: Vec<i16>,
    rtp: session_core::crates::media::rtcp::StreamStats,
}

/// Plays our tone into `call`, takes what it receives, and returns once at least
/// `min_frames` frames arrived and either baresip's RTCP gave us a round-trip time (its report
/// answered our sender report) or [`RTT_WAIT`] has passed. Statistics are read every 25
/// frames received (0.5 s): the frames pace the wait, no timer.
async fn exchange_audio(call: &CallSession, min_frames: usize) -> Heard {
    let (sink, mut frames) = ChannelSink::new(1024);
    call.attach_sink(Box::new(sink)).await.unwrap();
    call.attach_source(Box::new(ToneSource::new(OUR_TONE_HZ, 8000)))
        .await
        .unwrap();
    let started = Instant::now();
    let mut heard = Vec::new();
    let mut count = 0;
    let wait = async {
        loop {
            let frame = frames.recv().await.expect("the media task is running");
            count += 1;
            // The first frames may be the start of baresip's stream: skip them for the tone.
            if count > 5 {
                heard.extend_from_slice(frame.samples());
            }
            if count >= min_frames && count % 25 == 0 {
                let stats = call.stats().await.unwrap();
                let rtp = stats.rtp.expect("our media has RTP statistics");
                if rtp.rtt.is_some() || started.elapsed() >= RTT_WAIT {
                    return rtp;
                }
            }
        }
    };
    let limit = RTT_WAIT + STEP;
    let rtp = match tokio::time::timeout(limit, wait).await {
        Ok(rtp) => rtp,
        Err(_) => {
            let stats = call.stats().await.unwrap();
            panic!("within {limit:?}: {count} frames (want {min_frames}); {stats:?}")
        }
    };
    match rtp.rtt {
        Some(rtt) => {
            eprintln!(
                "round trip from baresip's RTCP after {:?}: {rtt:?}",
                started.elapsed()
            );
            assert!(rtt < Duration::from_millis(100), "{rtp:?}");
        }
        None => eprintln!(
            "no round trip from baresip's RTCP within {RTT_WAIT:?} (see RTT_WAIT): not checked"
        ),
    }
    Heard {
        frames: count,
        samples: heard,
        rtp,
    }
}

// ---------------------------------------------------------------------------------------------
// baresip's side (the harness: `support::baresip`).

/// The SIP messages of baresip's trace (`-s`): (the `UDP a -> b` line, the first line of the
/// message that follows).
fn sip_trace(output: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[0].starts_with("UDP ") && pair[0].contains(" -> "))
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect()
}

/// The checks on baresip's side once it has quit: it received our RTP, decoded our tone and
/// took our RTCP sender report.
fn check_baresip_heard_us(quit: &Quit, rtp: &Heard) {
    let (output, decoded) = (&quit.output, &quit.decoded);
    let (baresip_sent, baresip_received) = quit.stat("packets:");
    let (_, we_reported_sent) = quit.stat("pkt.report:");
    let heard_by_baresip = tone_ratio(decoded, OUR_TONE_HZ, BARESIP_TONE_HZ);
    eprintln!(
        "baresip sent {baresip_sent} / received {baresip_received} RTP, our RTCP said we sent \
         {we_reported_sent}; decoded {} samples, tone ratio {heard_by_baresip:.0}",
        decoded.len()
    );
    assert!(baresip_received > 0, "{output}");
    assert!(baresip_sent >= rtp.rtp.packets_received, "{output}");
    assert!(
        we_reported_sent > 0 && we_reported_sent <= baresip_received + 1,
        "our RTCP sender report did not reach baresip:\n{output}"
    );
    assert!(
        !output.contains("No RTCP stats collected"),
        "baresip got no RTCP from us:\n{output}"
    );
    assert!(
        decoded.len() > 8000 && heard_by_baresip > 10.0,
        "our tone not found in what baresip decoded ({} samples, ratio {heard_by_baresip})",
        decoded.len()
    );
}

/// The checks on our side of the audio.
fn check_we_heard_baresip(heard: &Heard) {
    let heard_by_us = tone_ratio(&heard.samples, BARESIP_TONE_HZ, OUR_TONE_HZ);
    eprintln!(
        "we received {} frames, tone ratio {heard_by_us:.0}; {:?}",
        heard.frames, heard.rtp
    );
    assert!(heard.rtp.packets_received >= 50, "{:?}", heard.rtp);
    assert!(heard.rtp.packets_sent >= 50, "{:?}", heard.rtp);
    assert_eq!(heard.rtp.packets_lost, 0, "{:?}", heard.rtp);
    assert!(
        heard_by_us > 10.0,
        "baresip's tone not found in what we received (ratio {heard_by_us})"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_our_uas_audio_both_ways_then_baresip_hangs_up() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    let (manager, mut seen) = start_manager(43_000..=43_099).await;
    let mut baresip = Baresip::builder("uas")
        .auto_answer()
        .module_app("rtcpsummary.so")
        .start()
        .await;
    let target = format!("sip:uas@{}", manager.local_addr());
    baresip.command("dial", &target).await;

    let call = expect_seen(&mut seen, "incoming call", |s| match s {
        Seen::Incoming(call) => Some(call),
        _ => None,
    })
    .await;
    expect_seen(&mut seen, "established call", |s| match s {
        Seen::Established(c) if c.id() == call.id() => Some(()),
        _ => None,
    })
    .await;
    baresip.event("CALL_ESTABLISHED").await;
    assert_eq!(call.state(), CallState::Active);
    assert_eq!(manager.ports().in_use(), 1);

    let heard = exchange_audio(&call, 50).await;
    check_we_heard_baresip(&heard);

    baresip.command("hangup", "").await;
    let reason = expect_seen(&mut seen, "end of the call", |s| match s {
        Seen::Ended(c, reason) if c.id() == call.id() => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, TerminationReason::RemoteHangup);
    assert_eq!(call.state(), CallState::Terminated);
    assert_released(&manager);
    baresip.event("CALL_CLOSED").await;

    let quit = baresip.quit().await;
    check_baresip_heard_us(&quit, &heard);
    // baresip sent the BYE and we answered it.
    let output = &quit.output;
    let trace = sip_trace(output);
    let ours = manager.local_addr().to_string();
    assert!(
        trace
            .iter()
            .any(|(route, first)| route.ends_with(&ours) && first.starts_with("BYE ")),
        "no BYE from baresip in its trace:\n{output}"
    );
    manager.shutdown().await;
    eprintln!("baresip → our UAS: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_uac_calls_baresip_audio_both_ways_then_we_hang_up() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    let (manager, mut seen) = start_manager(43_100..=43_199).await;
    let mut baresip = Baresip::builder("uac")
        .auto_answer()
        .module_app("rtcpsummary.so")
        .start()
        .await;
    let call = manager
        .call(&format!("sip:baresip@{}", baresip.sip()))
        .await
        .unwrap();
    tokio::time::timeout(STEP, call.answered())
        .await
        .expect("baresip answers within the time limit")
        .unwrap_or_else(|e| panic!("baresip refused: {e}\n{}", baresip.output()));
    baresip.event("CALL_ESTABLISHED").await;
    assert_eq!(manager.active_calls(), 1);
    assert_eq!(manager.ports().in_use(), 1);

    let heard = exchange_audio(&call, 50).await;
    check_we_heard_baresip(&heard);

    call.hangup().await.unwrap();
    let closed = baresip.event("CALL_CLOSED").await;
    let reason = expect_seen(&mut seen, "end of the call", |s| match s {
        Seen::Ended(c, reason) if c.id() == call.id() => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, TerminationReason::LocalHangup);
    assert_eq!(call.state(), CallState::Terminated);
    assert_released(&manager);

    let theirs = format!(" -> {}", baresip.sip());
    let quit = baresip.quit().await;
    check_baresip_heard_us(&quit, &heard);
    // baresip received our BYE and answered it 200.
    let output = &quit.output;
    let trace = sip_trace(output);
    let bye_at = trace
        .iter()
        .position(|(route, first)| route.ends_with(&theirs) && first.starts_with("BYE "))
        .unwrap_or_else(|| panic!("baresip's trace shows no BYE from us:\n{output}"));
    assert!(
        trace[bye_at..]
            .iter()
            .any(|(route, first)| !route.ends_with(&theirs) && first.starts_with("SIP/2.0 200")),
        "baresip did not answer our BYE with 200:\n{output}"
    );
    eprintln!("baresip closed the call: {closed}");
    manager.shutdown().await;
    eprintln!("our UAC → baresip: {:?}", started.elapsed());
}
