//! The tokio driver on real loopback sockets: two user agents call each other over UDP, TCP
//! and IPv6, a TCP peer that breaks the framing is disconnected, and a refused TCP connection
//! or a UDP datagram to a closed port (ICMP) fails its transaction at once.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_dialog::driver::{DriverConfig, DriverError, SipDriver, SipHandle};
use session_dialog::endpoint::Protocol;
use session_dialog::ua::{DialogEnd, UaEvent};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

async fn next_event(events: &mut Receiver<UaEvent>) -> UaEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("driver running")
}

async fn start(bind: SocketAddr) -> (SipHandle, Receiver<UaEvent>) {
    SipDriver::start(DriverConfig {
        bind,
        ..DriverConfig::default()
    })
    .await
    .unwrap()
}

/// Alice calls Bob over `protocol`; Bob answers; Alice hangs up. Both end with no state.
async fn call(bind: SocketAddr, protocol: Protocol) {
    let (alice, mut alice_events) = start(bind).await;
    let (bob, mut bob_events) = start(bind).await;
    let bob_addr = bob.local_addr();
    let from = alice.contact().clone();
    let to = bob.contact().clone();
    let tx = alice
        .with(move |ua, now| ua.invite(now, &from, &to, bob_addr, protocol, None))
        .await
        .unwrap()
        .unwrap();

    let UaEvent::IncomingInvite { tx: incoming, .. } = next_event(&mut bob_events).await else {
        panic!("no INVITE")
    };
    bob.with(move |ua, now| ua.answer(now, incoming, StatusCode::OK, Vec::new(), None))
        .await
        .unwrap()
        .unwrap();

    let dialog = loop {
        match next_event(&mut alice_events).await {
            UaEvent::Response {
                tx: t,
                response,
                dialog: Some(dialog),
            } if t == tx && response.status == StatusCode::OK => break dialog,
            UaEvent::Response { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(matches!(
        next_event(&mut bob_events).await,
        UaEvent::Ack { .. }
    ));
    alice
        .with(move |ua, now| ua.hangup(now, &dialog))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        next_event(&mut bob_events).await,
        UaEvent::DialogTerminated {
            reason: DialogEnd::PeerBye,
            ..
        }
    ));
    // Alice's BYE gets its 200.
    loop {
        match next_event(&mut alice_events).await {
            UaEvent::Response { response, .. } if response.status == StatusCode::OK => break,
            _ => {}
        }
    }
    let dialogs = alice.with(|ua, _| ua.dialog_count()).await.unwrap()
        + bob.with(|ua, _| ua.dialog_count()).await.unwrap();
    assert_eq!(dialogs, 0);
}

#[tokio::test]
async fn a_call_over_udp() {
    call("127.0.0.1:0".parse().unwrap(), Protocol::Udp).await;
}

#[tokio::test]
async fn a_call_over_tcp() {
    call("127.0.0.1:0".parse().unwrap(), Protocol::Tcp).await;
}

#[tokio::test]
async fn a_call_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        // No IPv6 loopback on this host: nothing to test against.
        return;
    }
    call("[::1]:0".parse().unwrap(), Protocol::Udp).await;
}

#[tokio::test]
async fn a_tcp_framing_error_closes_the_connection() {
    let (handle, _events) = start("127.0.0.1:0".parse().unwrap()).await;
    let mut stream = tokio::net::TcpStream::connect(handle.local_addr())
        .await
        .unwrap();
    // A negative Content-Length cannot be framed (RFC 3261 §18.3): the stream is unusable.
    stream
        .write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nContent-Length: -5\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "the connection is closed");
}

#[tokio::test]
async fn keepalives_and_options_over_tcp_get_answers() {
    let (handle, _events) = start("127.0.0.1:0".parse().unwrap()).await;
    let mut stream = tokio::net::TcpStream::connect(handle.local_addr())
        .await
        .unwrap();
    // A CRLF keep-alive (RFC 5626 §4.4.1) first, then an OPTIONS split across two writes.
    let options = b"\r\n\r\nOPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKtcp\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (first, second) = options.split_at(60);
    stream.write_all(first).await.unwrap();
    stream.write_all(second).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 2048];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
    }
    // The keep-alive gets its CRLF pong (RFC 5626 §4.4.1) before the answer.
    assert!(
        received.starts_with(b"\r\nSIP/2.0 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

// In virtual time (the runtime's clock paused, jumping to the next timer when every task
// waits), so "at once" is exact: no time passes before the failure, where Timer B would take
// 32 s and a failure found only by a retransmission 500 ms.
#[tokio::test(start_paused = true)]
async fn an_invite_over_tcp_to_a_closed_port_fails_at_once_with_a_transport_error() {
    // A port that was just free: nobody listens on it any more, so the connect is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (alice, mut events) = start("127.0.0.1:0".parse().unwrap()).await;
    let from = alice.contact().clone();
    let to = session_sip::Uri::parse(&format!("sip:nobody@{closed}")).unwrap();
    let started = tokio::time::Instant::now();
    let tx = alice
        .with(move |ua, now| ua.invite(now, &from, &to, closed, Protocol::Tcp, None))
        .await
        .unwrap()
        .unwrap();
    match next_event(&mut events).await {
        UaEvent::TransportError { tx: failed } => assert_eq!(failed, tx),
        other => panic!("expected a transport error, got {other:?}"),
    }
    // Timer B would have taken 32 s; the refused connect is reported at once.
    assert_eq!(started.elapsed(), Duration::ZERO);
    let left = alice.with(|ua, _| ua.state_count()).await.unwrap();
    assert_eq!(left, 0);
}

// In virtual time, as the test above.
#[tokio::test(start_paused = true)]
async fn a_request_to_a_closed_udp_port_fails_at_once_and_no_other_destination_is_blamed() {
    // A port that was just free: a datagram to it draws an ICMP port unreachable.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (alice, mut alice_events) = start("127.0.0.1:0".parse().unwrap()).await;
    let (bob, mut bob_events) = start("127.0.0.1:0".parse().unwrap()).await;
    let bob_addr = bob.local_addr();
    let from = alice.contact().clone();
    let nobody = session_sip::Uri::parse(&format!("sip:nobody@{closed}")).unwrap();
    let to_bob = bob.contact().clone();
    let started = tokio::time::Instant::now();
    // Both go in one flush: on loopback the ICMP error of the first is pending on the socket
    // when the second is sent, which must neither fail the second nor lose it.
    let (to_closed, to_live) = alice
        .with(move |ua, now| {
            let first = ua.invite(now, &from, &nobody, closed, Protocol::Udp, None);
            let second = ua.invite(now, &from, &to_bob, bob_addr, Protocol::Udp, None);
            (first.unwrap(), second.unwrap())
        })
        .await
        .unwrap();
    let UaEvent::IncomingInvite { tx: incoming, .. } = next_event(&mut bob_events).await else {
        panic!("no INVITE at Bob")
    };
    bob.with(move |ua, now| ua.answer(now, incoming, StatusCode::OK, Vec::new(), None))
        .await
        .unwrap()
        .unwrap();
    let (mut failed, mut answered) = (false, false);
    while !(failed && answered) {
        match next_event(&mut alice_events).await {
            UaEvent::TransportError { tx } if tx == to_closed => failed = true,
            UaEvent::TransportError { tx } => panic!("{tx:?} blamed for another's ICMP error"),
            UaEvent::Response { tx, response, .. }
                if tx == to_live && response.status == StatusCode::OK =>
            {
                answered = true;
            }
            _ => {}
        }
    }
    // Timer B would have taken 32 s; the ICMP error is reported at once (RFC 3261 §18.4).
    assert_eq!(started.elapsed(), Duration::ZERO);
}

// A lone datagram: no later send finds its error pending, so only the socket's error
// readiness tells the driver (a read waits for readability alone); in virtual time.
#[tokio::test(start_paused = true)]
async fn a_lone_request_to_a_closed_udp_port_fails_before_any_retransmission() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (alice, mut events) = start("127.0.0.1:0".parse().unwrap()).await;
    let from = alice.contact().clone();
    let nobody = session_sip::Uri::parse(&format!("sip:nobody@{closed}")).unwrap();
    let started = tokio::time::Instant::now();
    let tx = alice
        .with(move |ua, now| ua.invite(now, &from, &nobody, closed, Protocol::Udp, None))
        .await
        .unwrap()
        .unwrap();
    match next_event(&mut events).await {
        UaEvent::TransportError { tx: failed } => assert_eq!(failed, tx),
        other => panic!("expected a transport error, got {other:?}"),
    }
    // Timer A's first retransmission would come at 500 ms, Timer B at 32 s.
    assert_eq!(started.elapsed(), Duration::ZERO);
    let left = alice.with(|ua, _| ua.state_count()).await.unwrap();
    assert_eq!(left, 0);
}

/// An ICMP error is reported by the socket's next send whatever that send's destination, and
/// while the receive buffer is full the kernel drops its entry in the error queue (the error
/// still reported): the send that meets it must be tried again, not failed as its own
/// destination's (a flood with dead `Via` addresses made live peers' transactions fail so).
#[tokio::test]
async fn an_icmp_error_with_no_queue_entry_is_not_blamed_on_the_next_destination() {
    let (_inputs, mut state, handle) = SipDriver::embed(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    // Once the runtime has looked at the new socket, tokio knows it is writable.
    tokio::task::yield_now().await;
    // Fill its receive buffer (the system's default size); nobody reads (the inputs are never
    // polled).
    let filler = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..2_000 {
        filler.send_to(&[0u8; 1200], handle.local_addr()).unwrap();
    }
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bob = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_addr = bob.local_addr().unwrap();
    let from = handle.contact().clone();
    let now = tokio::time::Instant::now().into_std();
    let nobody = session_sip::Uri::parse(&format!("sip:nobody@{closed}")).unwrap();
    state
        .user_agent()
        .invite(now, &from, &nobody, closed, Protocol::Udp, None)
        .unwrap();
    state.flush();
    // The port unreachable for that INVITE is pending on the socket now (loopback answers
    // within the send), its queue entry dropped for want of room.
    let to_bob = session_sip::Uri::parse(&format!("sip:bob@{bob_addr}")).unwrap();
    let to_live = state
        .user_agent()
        .invite(now, &from, &to_bob, bob_addr, Protocol::Udp, None)
        .unwrap();
    state.flush();
    let mut buffer = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(WAIT, bob.recv_from(&mut buffer))
        .await
        .expect("the INVITE reached Bob")
        .unwrap();
    assert!(buffer[..n].starts_with(b"INVITE sip:bob@"));
    while let Some(event) = state.poll_event() {
        if let UaEvent::TransportError { tx } = event {
            assert_ne!(tx, to_live, "Bob blamed for another datagram's ICMP error");
        }
    }
}

/// A datagram handed out from the read-ahead spends the task's budget (tokio's cooperative
/// scheduling) as a read from the socket does: an owner working through a backlog longer than
/// its budget still lets the other tasks of its thread run (and its runtime fire timers), as
/// under a flood, where the read-ahead never runs dry.
#[tokio::test]
async fn a_backlog_of_datagrams_does_not_keep_the_thread() {
    let (mut inputs, _state, handle) = SipDriver::embed(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        // Room for the whole backlog below.
        socket_buffer: Some(4 << 20),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    const BACKLOG: usize = 400;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..BACKLOG {
        sender.send_to(b"not SIP", handle.local_addr()).unwrap();
    }
    // The first input reads the socket's whole backlog ahead.
    let _ = inputs.next_input().await;
    let other_ran = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let other_ran = other_ran.clone();
        async move { other_ran.store(true, Ordering::Relaxed) }
    });
    // The rest of the backlog, one input at a time, until the other task has run; before
    // the last one (whose read would find the socket empty and wait).
    let mut handed = 0;
    while !other_ran.load(Ordering::Relaxed) {
        assert!(
            handed < BACKLOG - 2,
            "the other task waited for the whole backlog"
        );
        let _ = tokio::time::timeout(WAIT, inputs.next_input())
            .await
            .expect("the backlog is there");
        handed += 1;
    }
    // Tokio's budget is 128 polls of its resources per turn.
    assert!(handed <= 200, "the other task ran after {handed} datagrams");
}

/// An embedded driver's owner that stops while handles still exist closes the job queue: a
/// `with` sent before or after the close ends with `Stopped` instead of waiting for ever.
#[tokio::test]
async fn closing_an_embedded_drivers_inputs_answers_every_waiting_job() {
    let (mut inputs, _state, handle) = SipDriver::embed(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let queued = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.with(|ua, _| ua.dialog_count()).await })
    };
    // Let the job reach the queue; nobody runs it.
    tokio::task::yield_now().await;
    tokio::time::timeout(WAIT, inputs.close())
        .await
        .expect("close does not wait for the handles");
    let queued = tokio::time::timeout(WAIT, queued).await.unwrap().unwrap();
    assert!(matches!(queued, Err(DriverError::Stopped)), "{queued:?}");
    let late = tokio::time::timeout(WAIT, handle.with(|ua, _| ua.dialog_count()))
        .await
        .expect("a job after the close is refused at once");
    assert!(matches!(late, Err(DriverError::Stopped)), "{late:?}");
}

/// The sources take turns: under a backlog of datagrams (the read-ahead never empty) a job
/// and a TCP connection waiting to be accepted are each handed out within six inputs (one
/// turn of every source) of their arrival, whatever the datagrams.
#[tokio::test]
async fn a_job_and_a_connection_are_served_within_six_inputs_of_a_datagram_backlog() {
    let (mut inputs, _state, handle) = SipDriver::embed(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        socket_buffer: Some(4 << 20),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..200 {
        sender.send_to(b"not SIP", handle.local_addr()).unwrap();
    }
    // The first input reads the socket's backlog ahead.
    let first = tokio::time::timeout(WAIT, inputs.next_input())
        .await
        .unwrap();
    assert_eq!(format!("{first:?}"), r#"DriverInput("datagram")"#);
    for round in 0..3 {
        let job = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.with(|ua, _| ua.dialog_count()).await })
        };
        let _connection = tokio::net::TcpStream::connect(handle.local_addr())
            .await
            .unwrap();
        // Let the job reach the queue (its sender task runs on this thread).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let mut waiting = ["job", "accepted"].to_vec();
        let mut handed = 0;
        while !waiting.is_empty() {
            let input = tokio::time::timeout(WAIT, inputs.next_input())
                .await
                .unwrap();
            handed += 1;
            let kind = format!("{input:?}");
            waiting.retain(|kind_waited| kind != format!("DriverInput({kind_waited:?})"));
            assert!(
                handed <= 6,
                "round {round}: still waiting for {waiting:?} after {handed} inputs"
            );
        }
        // The job's caller waits for the state to run it; nobody does here.
        job.abort();
    }
}
