//! Virtual time: what the harness relies on (a loopback round trip costs no virtual time
//! even with a far timer pending) and what it gives (timers of tens of seconds at once, waits
//! that fail at once), and the harness's end-of-test check (media ports 36_500–36_999).

use session_core::{CallState, FailureReason, IdleAudio, StatusCode, TimerConfig};
use session_testkit::time::{Stopwatch, run_paused};
use session_testkit::{Answer, Error, Harness};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The property everything here stands on: while messages cross loopback, the paused clock
/// does not jump to the next timer. (tokio before 1.53.3 jumped on every message woken by
/// I/O on a current-thread runtime: this test fails there.)
#[tokio::test(start_paused = true)]
async fn a_loopback_round_trip_takes_no_virtual_time_with_a_timer_pending() {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let far_timer = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(far_timer);
    let watch = Stopwatch::start();
    let echo = async {
        let mut buf = [0u8; 16];
        loop {
            let (len, from) = b.recv_from(&mut buf).await.unwrap();
            b.send_to(&buf[..len], from).await.unwrap();
        }
    };
    let pings = async {
        let mut buf = [0u8; 16];
        for _ in 0..100 {
            a.send_to(b"ping", b.local_addr().unwrap()).await.unwrap();
            a.recv_from(&mut buf).await.unwrap();
        }
    };
    tokio::select! {
        () = pings => {}
        () = echo => unreachable!(),
        () = &mut far_timer => panic!("the clock jumped to the pending timer"),
    }
    assert_eq!(
        watch.elapsed(),
        Duration::ZERO,
        "100 round trips took virtual time"
    );
}

#[tokio::test(start_paused = true)]
async fn a_30_second_media_timeout_ends_the_call_at_30_seconds() {
    let h = Harness::new(36_500..=36_699);
    let watcher = h
        .peer("watcher")
        .configure(|b| b.media_timeout(Duration::from_secs(30)))
        .start()
        .await
        .unwrap();
    // A phone that sends no RTP at all: as if it had vanished.
    let vanished = h
        .peer("vanished")
        .configure(|b| b.idle_audio(IdleAudio::Nothing))
        .start()
        .await
        .unwrap();
    let call = watcher.call(&vanished.uri()).await.unwrap();
    call.answered().await.unwrap();
    let watch = Stopwatch::start();
    let ended = call
        .with_timeout(Duration::from_secs(60))
        .ended()
        .await
        .unwrap();
    assert_eq!(ended, CallState::Failed(FailureReason::MediaTimeout));
    let after = watch.elapsed();
    assert!(
        after >= Duration::from_secs(30) && after < Duration::from_secs(31),
        "ended after {after:?}"
    );
    h.finish().await.unwrap();
}

#[test]
fn timer_b_fails_a_call_to_a_silent_address_after_64_t1() {
    let (state, after) = run_paused(async {
        // Nobody answers here: the INVITE is retransmitted, then Timer B (64·T1) fires.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let h = Harness::new(36_700..=36_799);
        let alice = h
            .peer("alice")
            .signaling_only()
            .configure(|b| {
                b.transports(session_core::Transports::Udp)
                    .timers(TimerConfig::default())
            })
            .start()
            .await
            .unwrap();
        let watch = Stopwatch::start();
        let call = alice
            .call(&format!("sip:nobody@{}", silent.local_addr().unwrap()))
            .await
            .unwrap();
        let state = call
            .with_timeout(Duration::from_secs(60))
            .ended()
            .await
            .unwrap();
        let after = watch.elapsed();
        h.finish().await.unwrap();
        (state, after)
    })
    .unwrap();
    assert_eq!(state, CallState::Failed(FailureReason::Timeout));
    assert!(
        after >= Duration::from_secs(32) && after < Duration::from_secs(33),
        "Timer B after {after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_harness_names_a_manager_that_still_holds_a_call() {
    let h = Harness::new(36_800..=36_999).with_timeout(Duration::from_secs(5));
    let alice = h.peer("alice").start().await.unwrap();
    let bob = h.peer("bob").answer(Answer::Accept).start().await.unwrap();
    let call = alice.call(&bob.uri()).await.unwrap();
    call.answered().await.unwrap();

    let watch = Stopwatch::start();
    let error = h.assert_released().await.unwrap_err();
    assert!(watch.elapsed() >= Duration::from_secs(5));
    match &error {
        Error::NotReleased {
            name, calls, ports, ..
        } => {
            assert_eq!(name, "alice");
            assert_eq!((*calls, *ports), (1, 1));
        }
        other => panic!("{other}"),
    }
    call.hangup().await.unwrap();
    h.finish().await.unwrap();

    // Its range holds two slices of 100 ports: a third manager gets none.
    let third = h.peer("carol").start().await.unwrap_err();
    assert!(matches!(third, Error::PortsExhausted { .. }), "{third}");
    assert_eq!(third.status(), None);
    let refused = Error::from(session_core::SessionError::Rejected {
        status: StatusCode::BUSY_HERE,
        reason: "Busy Here".to_owned(),
    });
    assert_eq!(refused.status(), Some(StatusCode::BUSY_HERE));
}
