//! SIPp's built-in `uac` scenario against our driver on loopback: every call succeeds over UDP
//! and TCP, at least 99.5% succeed when SIPp drops 10% of the packets, and the user agent drains
//! to zero state afterwards.
//!
//! Needs `sipp` (Debian package `sip-tester`; `.ci/run` installs it). Without it the tests fail,
//! unless `SESSION_CORE_ALLOW_MISSING_PEERS=1` (never under CI) lets them pass without running.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_dialog::driver::{DriverConfig, SipDriver, SipHandle};
use session_dialog::endpoint::EndpointConfig;
use session_dialog::transaction::TimerConfig;
use std::time::Duration;
use support::responder;

/// SIPp is here, or the test fails (or, opted out outside CI, returns early):
/// [`session_simnet::peers`].
fn sipp_available() -> bool {
    session_simnet::peers::require_program("sipp", "-v", "sip-tester")
}

/// The cumulative value of a counter line of SIPp's final statistics screen.
fn counter(output: &str, name: &str) -> u64 {
    output
        .lines()
        .filter(|line| line.trim_start().starts_with(name))
        .filter_map(|line| line.rsplit('|').next()?.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no {name:?} in SIPp output:\n{output}"))
}

/// Short timers so the state drains within seconds after a run without loss.
fn short_timers() -> TimerConfig {
    TimerConfig {
        t1: Duration::from_millis(100),
        t4: Duration::from_millis(500),
        ..TimerConfig::default()
    }
}

async fn start() -> (SipHandle, tokio::task::JoinHandle<usize>) {
    start_with(short_timers()).await
}

async fn start_with(timers: TimerConfig) -> (SipHandle, tokio::task::JoinHandle<usize>) {
    let config = DriverConfig {
        endpoint: EndpointConfig {
            timers,
            ..EndpointConfig::default()
        },
        ..DriverConfig::default()
    };
    let (handle, mut events) = SipDriver::start(config).await.unwrap();
    let serving = handle.clone();
    let responder = tokio::spawn(async move { responder::serve(&serving, &mut events).await });
    (handle, responder)
}

/// Runs SIPp's uac scenario against `handle`; returns (successful, failed, SIPp's output).
async fn run_sipp(handle: &SipHandle, calls: u32, extra: &[&str]) -> (u64, u64, String) {
    let target = handle.local_addr().to_string();
    let calls = calls.to_string();
    let mut command = tokio::process::Command::new("sipp");
    command
        .args([
            "-sn",
            "uac",
            &target,
            "-i",
            "127.0.0.1",
            "-m",
            &calls,
            "-r",
            "100",
            "-l",
            "50",
        ])
        .args(["-nostdin", "-timeout", "60", "-timeout_error"])
        .args(extra)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("SIPp finished in time")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (
        counter(&text, "Successful call"),
        counter(&text, "Failed call"),
        text,
    )
}

/// Waits, timer by timer, until the user agent holds no state, or fails after `limit`.
async fn assert_drains(handle: &SipHandle, limit: Duration) {
    let give_up = tokio::time::Instant::now() + limit;
    loop {
        let (state, deadline) = handle
            .with(|ua, _| (ua.state_count(), ua.poll_timeout()))
            .await
            .unwrap();
        if state == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        assert!(
            now < give_up,
            "{state} pieces of state left after {limit:?}"
        );
        // Wake at the user agent's own next deadline: that is when state can go away.
        let wake = deadline.map_or(give_up, |d| tokio::time::Instant::from_std(d).min(give_up));
        tokio::time::sleep_until(wake.max(now + Duration::from_millis(1))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_uac_call_succeeds_over_udp() {
    if !sipp_available() {
        return;
    }
    let (handle, responder) = start().await;
    let (ok, failed, output) = run_sipp(&handle, 200, &[]).await;
    assert_eq!((ok, failed), (200, 0), "{output}");
    assert_drains(&handle, Duration::from_secs(20)).await;
    // The responder holds a handle too, so the driver lives until it is stopped.
    responder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_uac_call_succeeds_over_tcp() {
    if !sipp_available() {
        return;
    }
    let (handle, _responder) = start().await;
    let (ok, failed, output) = run_sipp(&handle, 200, &["-t", "t1"]).await;
    assert_eq!((ok, failed), (200, 0), "{output}");
    assert_drains(&handle, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_ten_percent_loss() {
    if !sipp_available() {
        return;
    }
    // RFC 3261's own T1 (SIPp's, which it cannot change): with a shorter one our BYE
    // transaction (Timer J = 64·T1) would end before SIPp's last BYE retransmission, and a
    // call whose 200s were all lost would get 481 instead.
    let (handle, _responder) = start_with(TimerConfig::default()).await;
    let (ok, failed, output) = run_sipp(&handle, 400, &["-lost", "10"]).await;
    assert_eq!(ok + failed, 400, "{output}");
    // Issue target: at least 99.5% complete.
    assert!(
        ok * 1000 >= 400 * 995,
        "{ok} of 400 succeeded with 10% loss\n{output}"
    );
    // Timers J and L end 64·T1 = 32 s after a call's last message; a call whose ACK and
    // BYE were all lost ends by our BYE after the ACK wait (Timer H), whose own transaction
    // then lives up to 64·T1 more: 64 s at most.
    assert_drains(&handle, Duration::from_secs(75)).await;
}
