//! # 19 — integration testing: failures and recovery
//!
//! What a call engine must survive, each case on real sockets over loopback and each ending
//! with every count at zero on every manager involved:
//!
//! 1. the peer vanishes mid-call — it stops sending RTP; after the media timeout our side ends
//!    the call with BYE and `FailureReason::MediaTimeout`;
//! 2. the peer answers garbage — every datagram we send is answered with junk; the junk is
//!    dropped, and the call fails by its own timer (Timer B, shortened here with T1 = 50 ms);
//! 3. a partition heals within the retransmission window — the path to the callee drops
//!    everything for 1.2 s; the INVITE's retransmissions (RFC 3261 §17.1.1.2) get through once
//!    it heals, and the call is answered;
//! 4. admission exhausted, then recovered — a callee limited to one call refuses the second with
//!    503, and takes the third once the first has ended;
//! 5. shutdown under load — 100 calls up; the caller shuts down: every call gets its BYE, and
//!    both sides hold nothing.
//!
//! Run: `cargo run -p examples2 --example 19_integration_testing`. Exits non-zero if a check
//! fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    CallState, FailureReason, IdleAudio, Limits, MediaMode, SessionError, StatusCode, TimerConfig,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers every datagram on `socket` with junk, until the task is dropped.
async fn answer_garbage(socket: UdpSocket, answered: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 65_535];
    while let Ok((_, from)) = socket.recv_from(&mut buf).await {
        let _ = socket
            .send_to(b"\x00\xffSIP/2.0 200 OK but not really\r\n\r\n", from)
            .await;
        answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// A path between the caller and `to` through `socket`, both ways (the caller asks for
/// `rport`, RFC 3581, so the callee answers where the request came from — this path), as a
/// NAT or a router would carry it; everything is dropped until `heals`.
async fn partitioned_path(
    socket: UdpSocket,
    to: SocketAddr,
    heals: Instant,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 65_535];
    let mut caller = None;
    while let Ok((len, from)) = socket.recv_from(&mut buf).await {
        if Instant::now() < heals {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let destination = if from == to {
            match caller {
                Some(caller) => caller,
                None => continue,
            }
        } else {
            caller = Some(from);
            to
        };
        let _ = socket.send_to(&buf[..len], destination).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    section("1. the peer vanishes mid-call: the media timeout ends the call");
    let timeout = Duration::from_millis(400);
    let watcher = loopback(46_000..=46_049)
        .media_timeout(timeout)
        .start()
        .await?;
    // A phone that sends no RTP at all, as one that crashed after answering.
    let silent = loopback(46_050..=46_099)
        .idle_audio(IdleAudio::Nothing)
        .start()
        .await?;
    let call = watcher
        .call(&format!("sip:gone@{}", silent.local_addr()))
        .await?;
    within("the answer", call.answered()).await?;
    let began = Instant::now();
    let ended = within("the media timeout", call.ended()).await;
    println!(
        "       ended {:?} after {:.1} s without RTP",
        ended,
        began.elapsed().as_secs_f64()
    );
    check(
        ended == CallState::Failed(FailureReason::MediaTimeout),
        "our side ended the call as MediaTimeout, with BYE",
    );
    check(
        released(&watcher).await && released(&silent).await,
        "both sides hold nothing",
    );

    section("2. the peer answers garbage: dropped, and the call times out by itself");
    let short = loopback(46_100..=46_149)
        .media_mode(MediaMode::SignalingOnly)
        .timers(TimerConfig {
            t1: Duration::from_millis(50),
            ..TimerConfig::default()
        })
        .start()
        .await?;
    let junk = UdpSocket::bind("127.0.0.1:0").await?;
    let junk_at = junk.local_addr()?;
    let junked = Arc::new(AtomicU64::new(0));
    let garbage = tokio::spawn(answer_garbage(junk, junked.clone()));
    let call = short.call(&format!("sip:junk@{junk_at}")).await?;
    let outcome = within("Timer B", call.answered()).await;
    garbage.abort();
    println!(
        "       {} datagrams answered with junk; the call: {outcome:?}",
        junked.load(Ordering::Relaxed)
    );
    check(
        matches!(outcome, Err(SessionError::Timeout))
            && call.state() == CallState::Failed(FailureReason::Timeout),
        "the junk was dropped and the call failed by Timer B (64·T1)",
    );
    check(released(&short).await, "nothing held");

    section("3. a partition heals within the retransmission window: the call survives");
    let caller = loopback(46_150..=46_199).start().await?;
    let callee = loopback(46_200..=46_249).start().await?;
    let path = UdpSocket::bind("127.0.0.1:0").await?;
    let path_at = path.local_addr()?;
    let dropped = Arc::new(AtomicU64::new(0));
    let heals = Instant::now() + Duration::from_millis(1_200);
    let forwarding = tokio::spawn(partitioned_path(
        path,
        callee.local_addr(),
        heals,
        dropped.clone(),
    ));
    let began = Instant::now();
    let call = caller.call(&format!("sip:bob@{path_at}")).await?;
    within("the answer after the partition", call.answered()).await?;
    println!(
        "       {} datagrams lost in the partition; answered after {:.1} s",
        dropped.load(Ordering::Relaxed),
        began.elapsed().as_secs_f64()
    );
    check(
        dropped.load(Ordering::Relaxed) >= 2 && call.state() == CallState::Active,
        "the INVITE's retransmissions got through once the path healed: the call is up",
    );
    within("the hang-up", call.hangup()).await?;
    within("the end", call.released()).await;
    forwarding.abort();
    check(
        released(&caller).await && released(&callee).await,
        "both sides hold nothing",
    );

    section("4. admission exhausted, then recovered");
    let limited = loopback(46_250..=46_299)
        .limits(Limits::default().max_sessions(1))
        .start()
        .await?;
    let to_limited = format!("sip:desk@{}", limited.local_addr());
    let first = caller.call(&to_limited).await?;
    within("the first answer", first.answered()).await?;
    let second = caller.call(&to_limited).await?;
    let refused = within("the refusal", second.answered()).await;
    check(
        matches!(&refused, Err(e) if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE)),
        "the second call is refused with 503 while the first holds the only slot",
    );
    within("the first hangs up", first.hangup()).await?;
    within("its end", first.released()).await;
    // The callee frees its slot as it handles the BYE, a moment after answering it.
    check(released(&limited).await, "the callee has freed its slot");
    let third = caller.call(&to_limited).await?;
    within("the third answer", third.answered()).await?;
    check(
        third.state() == CallState::Active,
        "once the slot is free, the third call is taken",
    );
    within("the third hangs up", third.hangup()).await?;
    within("its end", third.released()).await;
    check(
        released(&caller).await && released(&limited).await,
        "both sides hold nothing",
    );

    section("5. shutdown under load: every call gets its BYE");
    let busy = loopback(46_300..=46_349)
        .media_mode(MediaMode::SignalingOnly)
        .start()
        .await?;
    let far = loopback(46_350..=46_399)
        .media_mode(MediaMode::SignalingOnly)
        .start()
        .await?;
    let to_far = format!("sip:load@{}", far.local_addr());
    let mut calls = Vec::new();
    for _ in 0..100 {
        let call = busy.call(&to_far).await?;
        calls.push(call);
    }
    for call in &calls {
        within("an answer", call.answered()).await?;
    }
    check(
        far.active_calls() == 100,
        "100 calls are up on the far side",
    );
    within("the shutdown", busy.shutdown()).await;
    check(
        calls
            .iter()
            .all(|call| call.state() == CallState::Terminated),
        "every call ended as Terminated (BYE sent)",
    );
    check(
        released(&far).await && released(&busy).await,
        "the far side got every BYE and holds nothing; neither does the caller",
    );

    for manager in [&watcher, &silent, &short, &caller, &callee, &limited, &far] {
        manager.shutdown().await;
    }
    Ok(())
}
