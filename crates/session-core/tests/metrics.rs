//! The manager's metrics: two real calls on loopback (one answered then hung up, one rejected
//! with 486), counted in the registry and scraped over TCP from `GET /metrics` in the
//! Prometheus text format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::{CallDecision, SessionError, StatusCode};
use std::net::SocketAddr;
use support::{builder, peer, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is to `address` and reads the answer to EOF (the server closes).
async fn http(address: SocketAddr, request: &[u8]) -> String {
    within(async {
        let mut stream = TcpStream::connect(address).await.expect("connects");
        stream.write_all(request).await.expect("request written");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("answer read");
        String::from_utf8(answer).expect("UTF-8 answer")
    })
    .await
}

/// The value of the sample line `name value` in `text`.
fn sample(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_and_scraped_over_http() {
    let alice = peer(
        builder(44_000..=44_099).metrics_address(SocketAddr::from(([127, 0, 0, 1], 0))),
        |_| CallDecision::accept(),
    )
    .await;
    let mut bob = peer(builder(44_100..=44_199), |call| {
        match call.request_uri().user() {
            Some("busy") => CallDecision::Reject(StatusCode::BUSY_HERE),
            _ => CallDecision::accept(),
        }
    })
    .await;
    let address = alice.manager.metrics_addr().expect("metrics served");
    assert_ne!(address.port(), 0);
    assert_eq!(bob.manager.metrics_addr(), None);

    // One call answered, then hung up by alice.
    let call = alice.manager.call(&bob.uri("bob")).await.unwrap();
    within(call.answered()).await.unwrap();
    let answered = bob.incoming().await;
    call.hangup().await.unwrap();
    within(call.released()).await;
    within(answered.released()).await;

    // One call rejected with 486.
    let call = alice.manager.call(&bob.uri("busy")).await.unwrap();
    let error = within(call.answered()).await.unwrap_err();
    assert!(matches!(error, SessionError::Rejected { .. }), "{error:?}");
    within(call.released()).await;
    let rejected = bob.incoming().await;
    within(rejected.released()).await;

    let answer = http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head}"
    );
    let expect = |name: &str, value: &str| {
        assert_eq!(
            sample(body, name).as_deref(),
            Some(value),
            "{name} in\n{body}"
        );
    };
    expect("calls_outbound_total", "2");
    expect("calls_inbound_total", "0");
    expect("calls_active", "0");
    expect("calls_ended_local_hangup_total", "1");
    expect("calls_ended_failed_total", "1");
    expect("calls_ended_remote_hangup_total", "0");
    expect("calls_ended_cancelled_total", "0");
    expect("calls_ended_shutdown_total", "0");
    // Only the answered call has a setup and a talk time, and only it had media.
    expect("setup_time_ms_count", "1");
    expect("talk_time_ms_count", "1");
    expect("rtp_jitter_us_count", "1");
    expect("rtp_lost_packets_count", "1");
    expect("setup_time_ms_bucket{le=\"+Inf\"}", "1");
    expect("admission_active", "0");
    expect("ports_in_use", "0");
    expect("calls_shed_total", "0");
    expect("admission_refused_total", "0");
    expect("event_bus_dropped_total", "0");
    assert!(
        body.contains("# TYPE calls_outbound_total counter\n"),
        "{body}"
    );
    assert!(body.contains("# TYPE calls_active gauge\n"), "{body}");
    assert!(body.contains("# TYPE setup_time_ms histogram\n"), "{body}");

    // The callee counts the same calls from its side (read without HTTP).
    let snapshot = bob.manager.metrics_snapshot();
    assert_eq!(snapshot.counter("calls_inbound_total"), Some(2));
    assert_eq!(snapshot.counter("calls_ended_remote_hangup_total"), Some(1));
    assert_eq!(snapshot.counter("calls_ended_failed_total"), Some(1));
    assert_eq!(snapshot.gauge("calls_active"), Some(0));

    // Other paths, other methods, oversized requests.
    let answer = http(address, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let answer = http(address, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(answer.contains("\r\nAllow: GET\r\n"), "{answer}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(9000, b'a');
    let answer = http(address, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let answer = http(address, b"nonsense\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    // A client that sends nothing does not keep the next one waiting for long: it is answered
    // once the idle connection times out (5 s), well within the 10 s bound.
    let idle = TcpStream::connect(address).await.unwrap();
    let answer = http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(idle);

    alice.manager.shutdown().await;
    bob.manager.shutdown().await;
    // The listener is closed with the manager; the registry keeps the final figures.
    assert!(TcpStream::connect(address).await.is_err());
    assert_eq!(
        alice
            .manager
            .metrics()
            .snapshot()
            .counter("calls_outbound_total"),
        Some(2)
    );
}
