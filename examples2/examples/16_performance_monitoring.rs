//! # 16 — performance monitoring
//!
//! A dialer exports its metrics for Prometheus: the manager records every call into its
//! `Metrics` registry as it is created and when it ends (once, with its final figures), and
//! serves them at `GET /metrics` in the Prometheus text format when built with
//! `SessionManagerBuilder::metrics_address`:
//!
//! 1. the dialer starts with a metrics address (port 0: the system picks one, read back with
//!    `SessionManager::metrics_addr`); a second manager plays the customers, answering most
//!    calls, refusing some with 486 Busy Here and leaving some ringing;
//! 2. three rounds of 20 calls: 14 answered then hung up by the dialer, 3 refused, 3 given up
//!    while ringing (CANCEL), every call awaited until it has released everything;
//! 3. after each round, a monitoring system's view: `/metrics` is fetched over a plain TCP
//!    connection, a small table is printed from it (calls, active, endings by reason, the setup
//!    time's median and 99th percentile read from the histogram's cumulative buckets), and the
//!    figures are checked against what was done; a wrong path gets 404.
//!
//! Signaling only (no RTP), so the media histograms (`rtp_jitter_us` …) stay empty here.
//!
//! Run: `cargo run -p examples2 --example 16_performance_monitoring`. Exits non-zero if a check
//! fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    CallDecision, CallHandler, CallState, IncomingCall, MediaMode, SessionError, SessionManager,
    StatusCode,
};
use std::net::{Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error>;

const ROUNDS: u64 = 3;
const ANSWERED: u64 = 14;
const REFUSED: u64 = 3;
const CANCELLED: u64 = 3;

/// The customers: `busy` refuses with 486, `ring` rings until given up, anyone else answers.
struct Customers;

impl CallHandler for Customers {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        match call.request_uri().user() {
            Some("busy") => CallDecision::Reject(StatusCode::BUSY_HERE),
            Some("ring") => CallDecision::Defer,
            _ => CallDecision::accept(),
        }
    }
}

/// Fetches `path` from the HTTP server at `address`: (status line, body).
async fn get(address: SocketAddr, path: &str) -> Result<(String, String), BoxError> {
    let mut stream = within("connect to /metrics", TcpStream::connect(address)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: monitoring\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    within("the metrics answer", stream.read_to_end(&mut answer)).await?;
    let answer = String::from_utf8(answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no end of head")?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// The value of the sample `name` in the exposition `text` (0 when absent).
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The `q` quantile of histogram `name` from its cumulative buckets, as Prometheus reads them:
/// the upper bound (`le`) of the first bucket holding the nearest-rank value.
fn quantile(text: &str, name: &str, q: f64) -> u64 {
    let count = sample(text, &format!("{name}_count"));
    let rank = ((q * count as f64).ceil() as u64).max(1);
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_once("\"} "))
        .find(|(_, cumulative)| cumulative.parse::<u64>().is_ok_and(|c| c >= rank))
        .and_then(|(le, _)| le.parse().ok())
        .unwrap_or(0)
}

/// One round: `ANSWERED` calls answered and hung up, `REFUSED` refused, `CANCELLED` given up
/// while ringing; returns once each has released everything, with how many got 486.
async fn round(dialer: &SessionManager, customers: &SessionManager) -> Result<u64, BoxError> {
    let target = |user: &str| format!("sip:{user}@{}", customers.local_addr());
    let mut calls = Vec::new();
    let mut busy = 0;
    for _ in 0..ANSWERED {
        calls.push((dialer.call(&target("answer")).await?, "answer"));
    }
    for _ in 0..REFUSED {
        calls.push((dialer.call(&target("busy")).await?, "busy"));
    }
    for _ in 0..CANCELLED {
        calls.push((dialer.call(&target("ring")).await?, "ring"));
    }
    for (call, kind) in &calls {
        match *kind {
            "answer" => {
                within("an answer", call.answered()).await?;
                call.hangup().await?;
            }
            "busy" => {
                let refused = within("a refusal", call.answered()).await;
                if matches!(&refused, Err(SessionError::Rejected { status, .. })
                    if *status == StatusCode::BUSY_HERE)
                {
                    busy += 1;
                }
            }
            _ => {
                within("ringing", call.wait_for(|s| s == CallState::Ringing)).await;
                call.hangup().await?;
            }
        }
    }
    for (call, _) in &calls {
        within("the call's release", call.released()).await;
    }
    Ok(busy)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    section("1. a dialer with a metrics address, and its customers");
    let dialer = loopback(46_000..=46_099)
        .media_mode(MediaMode::SignalingOnly)
        .metrics_address(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .start()
        .await?;
    let customers = loopback(46_100..=46_199)
        .media_mode(MediaMode::SignalingOnly)
        .handler(Customers)
        .start()
        .await?;
    let address = dialer.metrics_addr().ok_or("no metrics address")?;
    println!("       metrics at http://{address}/metrics");
    check(address.port() != 0, "the metrics listener has a port");

    section("2. and 3. rounds of calls, each followed by a scrape");
    println!(
        "       {:>5} {:>6} {:>6} {:>6} {:>9} {:>6} {:>8} {:>8}",
        "round", "calls", "active", "hangup", "cancelled", "failed", "setup50", "setup99"
    );
    let per_round = ANSWERED + REFUSED + CANCELLED;
    for r in 1..=ROUNDS {
        let busy = round(&dialer, &customers).await?;
        let (status, text) = get(address, "/metrics").await?;
        println!(
            "       {:>5} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6}ms {:>6}ms",
            r,
            sample(&text, "calls_outbound_total"),
            sample(&text, "calls_active"),
            sample(&text, "calls_ended_local_hangup_total"),
            sample(&text, "calls_ended_cancelled_total"),
            sample(&text, "calls_ended_failed_total"),
            quantile(&text, "setup_time_ms", 0.5),
            quantile(&text, "setup_time_ms", 0.99),
        );
        check(
            busy == REFUSED,
            format!("round {r}: {REFUSED} calls refused with 486"),
        );
        check(
            status == "HTTP/1.1 200 OK",
            format!("round {r}: /metrics answers 200"),
        );
        check(
            sample(&text, "calls_outbound_total") == per_round * r
                && sample(&text, "calls_inbound_total") == 0,
            format!("round {r}: {} calls placed, none received", per_round * r),
        );
        check(
            sample(&text, "calls_active") == 0 && sample(&text, "admission_active") == 0,
            format!("round {r}: nothing active after the round"),
        );
        check(
            sample(&text, "calls_ended_local_hangup_total") == ANSWERED * r
                && sample(&text, "calls_ended_failed_total") == REFUSED * r
                && sample(&text, "calls_ended_cancelled_total") == CANCELLED * r
                && sample(&text, "calls_ended_remote_hangup_total") == 0,
            format!("round {r}: endings by reason match what was done"),
        );
        check(
            sample(&text, "setup_time_ms_count") == ANSWERED * r
                && sample(&text, "setup_time_ms_bucket{le=\"+Inf\"}") == ANSWERED * r
                && sample(&text, "talk_time_ms_count") == ANSWERED * r,
            format!("round {r}: a setup and a talk time per answered call"),
        );
        check(
            quantile(&text, "setup_time_ms", 0.5) <= quantile(&text, "setup_time_ms", 0.99)
                && quantile(&text, "setup_time_ms", 0.99) < 5_000,
            format!("round {r}: setup p50 <= p99, both within the wait bound"),
        );
    }

    let (status, _) = get(address, "/favicon.ico").await?;
    check(
        status == "HTTP/1.1 404 Not Found",
        "any other path answers 404",
    );

    dialer.shutdown().await;
    customers.shutdown().await;
    check(released(&dialer).await, "the dialer holds nothing");
    check(released(&customers).await, "the customers hold nothing");
    check(
        TcpStream::connect(address).await.is_err(),
        "the metrics listener closes with the manager",
    );
    Ok(())
}
