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
