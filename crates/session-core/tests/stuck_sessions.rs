//! The stuck-session limits (`SessionManagerBuilder::stuck_limits`) on real calls: an incoming
//! call the application never answers is refused 480, an outgoing call that rings too long is
//! cancelled, and a 2xx never ACKed ends with BYE well before the SIP layer's 32 s — each with
//! `FailureReason::Stuck` recorded, and every resource given back. In virtual time, so each
//! ending is asserted at the limit's exact instant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::{
    CallDecision, CallState, FailureReason, StatusCode, StuckLimits, StuckOn, TerminationReason,
};
use std::time::Duration;
use support::{Seen, builder, peer, within};

const LIMIT: Duration = Duration::from_millis(300);

/// Asserts that `what` came when the limit passed. The tests run in virtual time (the
/// runtime's clock is paused and jumps to the next timer when every task waits, and the
/// manager reads that clock), so the instant is exact but for the timer wheel's rounding up
/// to the millisecond.
fn assert_at_the_limit(after: Duration, what: &str) {
    assert!(
        after >= LIMIT && after <= LIMIT + Duration::from_millis(2),
        "{what} after {after:?}, the limit being {LIMIT:?}"
    );
}

/// The reason the next call `peer` sees end ended with.
async fn ended_reason(peer: &mut support::Peer) -> TerminationReason {
    peer.expect(|seen| match seen {
        Seen::Ended(_, reason, _) => Some(reason),
        _ => None,
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn unanswered_calls_are_ended_in_both_directions() {
    // The forgetful application defers every call and never answers.
    let mut forgetful = peer(
        builder(38_300..=38_349).stuck_limits(StuckLimits::default().final_response(LIMIT)),
        |_| CallDecision::Defer,
    )
    .await;
    let mut caller = peer(builder(38_350..=38_399), |_| CallDecision::accept()).await;

    // Incoming: refused 480 once the limit passes; the reason says why.
    let call = caller.manager.call(&forgetful.uri("desk")).await.unwrap();
    within(call.wait_for(|s| s == CallState::Ringing)).await;
    let ringing_since = tokio::time::Instant::now();
    let ended = within(call.ended()).await;
    assert_at_the_limit(ringing_since.elapsed(), "the 480");
    assert_eq!(
        ended,
        CallState::Failed(FailureReason::Rejected(StatusCode::TEMPORARILY_UNAVAILABLE))
    );
    assert_eq!(
        ended_reason(&mut forgetful).await,
        TerminationReason::Failed(FailureReason::Stuck(StuckOn::FinalResponse))
    );
    let _ = ended_reason(&mut caller).await;

    // Outgoing: the forgetful side calls out, the callee rings for ever: cancelled.
    let mut ringing = peer(builder(38_400..=38_449), |_| CallDecision::Defer).await;
    let out = forgetful.manager.call(&ringing.uri("far")).await.unwrap();
    within(out.wait_for(|s| s == CallState::Ringing)).await;
    let ringing_since = tokio::time::Instant::now();
    let ended = within(out.ended()).await;
    assert_at_the_limit(ringing_since.elapsed(), "the CANCEL");
    assert_eq!(
        ended,
        CallState::Failed(FailureReason::Stuck(StuckOn::FinalResponse))
    );
    assert_eq!(
        ended_reason(&mut ringing).await,
        TerminationReason::Cancelled,
        "the callee saw the CANCEL"
    );
    for peer in [&forgetful, &caller, &ringing] {
        support::assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_2xx_never_acked_ends_with_bye_at_the_limit() {
    let mut pbx = peer(
        builder(38_450..=38_499).stuck_limits(StuckLimits::default().ack(LIMIT)),
        |_| CallDecision::accept(),
    )
    .await;
    let pbx_at = pbx.manager.local_addr();
    // A caller that never ACKs: a plain socket.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:desk@{pbx_at} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-noack\r\n\
         Max-Forwards: 70\r\nFrom: <sip:mute@{me}>;tag=noack\r\nTo: <sip:desk@{pbx_at}>\r\n\
         Call-ID: no-ack-1\r\nCSeq: 1 INVITE\r\nContact: <sip:mute@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket.send_to(invite.as_bytes(), pbx_at).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buffer = vec![0; 4096];
    let bye_after = within(async {
        loop {
            let (n, _) = socket.recv_from(&mut buffer).await.unwrap();
            if buffer[..n].starts_with(b"BYE ") {
                return started.elapsed();
            }
        }
    })
    .await;
    assert_at_the_limit(bye_after, "the BYE");
    assert_eq!(
        ended_reason(&mut pbx).await,
        TerminationReason::Failed(FailureReason::Stuck(StuckOn::Ack))
    );
    support::assert_released(&pbx).await;
    pbx.manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_tracers_health_findings_are_metrics() {
    use session_core::{HealthThresholds, SessionTracer, TracerConfig};
    let tracer = SessionTracer::new(
        TracerConfig::default()
            .thresholds(HealthThresholds::default().answer_timeout(Duration::from_millis(50))),
    )
    .unwrap();
    let mut desk = peer(builder(38_500..=38_549).tracer(tracer), |_| {
        CallDecision::Defer
    })
    .await;
    let caller = peer(builder(38_550..=38_599), |_| CallDecision::accept()).await;
    let desk_manager = desk.manager.clone();
    let gauge = |name| desk_manager.metrics_snapshot().gauge(name);
    assert_eq!(gauge("health_no_final_response"), Some(0));
    let call = caller.manager.call(&desk.uri("desk")).await.unwrap();
    let ringing = desk.incoming().await;
    within(ringing.wait_for(|s| s == CallState::Ringing)).await;
    // Unanswered past the threshold: one finding, until it is answered.
    within(async {
        while gauge("health_no_final_response") != Some(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    ringing.accept().await.unwrap();
    within(call.answered()).await.unwrap();
    within(async {
        while gauge("health_no_final_response") != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(gauge("health_no_ack"), Some(0));
    call.hangup().await.unwrap();
    for peer in [&desk, &caller] {
        support::assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}

/// Threads sending datagrams to `to` as fast as they can, until dropped: more than a manager
/// can read, so its SIP input is always ready.
struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Flood {
    fn start(to: std::net::SocketAddr, threads: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // A request the manager parses and answers 400 (no Call-ID), keeping no state; its
        // Via names the discard port, closed here, so each 400 draws an ICMP port unreachable
        // (as a flood with forged or dead `Via` addresses does), reported by the manager's
        // socket on its next send or receive, whatever their destination.
        let junk = b"OPTIONS sip:desk@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-flood\r\n\
Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.1>;tag=f\r\nTo: <sip:desk@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                std::thread::spawn(move || {
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if socket.send_to(junk, to).is_ok() {
                            sent += 1;
                        }
                    }
                    sent
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops the threads; the datagrams they sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(|thread| thread.join().unwrap())
            .sum()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Under a flood of datagrams the manager's SIP input never runs dry; the application's
/// commands and the timers must still get their turns while it lasts (a deferred call is
/// accepted, an unanswered one is refused at its stuck limit), the manager's task must leave
/// its thread to the others now and then (timers fire only then), and the ICMP errors the
/// flood draws must not be blamed on the callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_timers_keep_their_turns_under_a_datagram_flood() {
    let limit = Duration::from_secs(1);
    let mut pbx = peer(
        support::signaling_only()
            .stuck_limits(StuckLimits::default().final_response(limit))
            // Room for more datagrams than the driver reads at a time (4,096), so that a read
            // never empties the socket (capped by net.core.rmem_max: 4 MiB here).
            .socket_buffer(16 << 20),
        |_| CallDecision::Defer,
    )
    .await;
    let caller = peer(support::signaling_only(), |_| CallDecision::accept()).await;
    let first = caller.manager.call(&pbx.uri("desk")).await.unwrap();
    let second = caller.manager.call(&pbx.uri("desk")).await.unwrap();
    let to_accept = pbx.incoming().await;
    let _left_ringing = pbx.incoming().await;
    within(first.wait_for(|s| s == CallState::Ringing)).await;
    within(second.wait_for(|s| s == CallState::Ringing)).await;

    let flood = Flood::start(pbx.manager.local_addr(), 2);
    let started = tokio::time::Instant::now();
    // A command (the accept's), then the stuck timer of the other call, while it floods.
    within(to_accept.accept()).await.unwrap();
    let (first_result, second_result) =
        tokio::join!(within(first.answered()), within(second.answered()));
    let took = started.elapsed();
    let sent = flood.stop();
    let (answered, refused) = match (first_result, second_result) {
        (Ok(()), Err(_)) => (&first, &second),
        (Err(_), Ok(())) => (&second, &first),
        other => panic!("one call answered and one refused expected: {other:?}"),
    };
    assert_eq!(
        refused.state(),
        CallState::Failed(FailureReason::Rejected(StatusCode::TEMPORARILY_UNAVAILABLE))
    );
    // Both within a few seconds of flood (the limit being 1 s), not once it stopped.
    assert!(
        took < Duration::from_secs(5),
        "{took:?} under a flood of {sent} datagrams"
    );
    answered.hangup().await.unwrap();
    for peer in [&pbx, &caller] {
        support::assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}
