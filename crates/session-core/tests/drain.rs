//! Leaving service gracefully, and the health a balancer reads: `SessionManager::drain` with
//! calls in progress (one finishing by itself, or the calls left ended when the grace runs
//! out), and the answers to out-of-dialog OPTIONS — 200 with the load (`X-Load`) while
//! healthy, 503 with Retry-After while draining or at the admission limit. New INVITEs
//! during a drain get 503 from the SIP layer before any per-call state. Real sockets on
//! loopback; every wait is bounded, nothing sleeps to wait for something.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::crates::sip::{HeaderName, Message, Response};
use session_core::{CallDecision, CallState, Limits, StatusCode, TerminationReason};
use std::net::SocketAddr;
use std::time::Duration;
use support::{Seen, assert_released, builder, connect, peer, signaling_only, within};
use tokio::net::UdpSocket;

/// The header the answers to OPTIONS carry the load in.
const LOAD: &str = session_core::crates::dialog::endpoint::LOAD_HEADER;

fn accept(_: &session_core::IncomingCall) -> CallDecision {
    CallDecision::accept()
}

/// A balancer's probe (or a caller) speaking raw SIP over UDP: requests outside any dialog.
struct Probe {
    socket: UdpSocket,
    server: SocketAddr,
    sent: u32,
}

impl Probe {
    async fn new(server: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            sent: 0,
        }
    }

    /// Sends `method` (OPTIONS or INVITE, no To tag: a new request) and returns its final
    /// response; an INVITE's is acknowledged.
    async fn ask(&mut self, method: &str) -> Response {
        self.sent += 1;
        let (n, server) = (self.sent, self.server);
        let local = self.socket.local_addr().unwrap();
        let head = |method: &str, to_tag: &str| {
            format!(
                "{method} sip:bob@{server} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n};rport\r\n\
                 Max-Forwards: 70\r\n\
                 To: <sip:bob@{server}>{to_tag}\r\n\
                 From: <sip:probe@{local}>;tag=probe-{n}\r\n\
                 Call-ID: probe-{n}-{}\r\n\
                 CSeq: 1 {method}\r\n\
                 Contact: <sip:probe@{local}>\r\n\
                 Content-Length: 0\r\n\r\n",
                local.port()
            )
        };
        self.socket
            .send_to(head(method, "").as_bytes(), server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        let response = within(async {
            loop {
                let (len, _) = self.socket.recv_from(&mut buf).await.unwrap();
                if let Ok(Message::Response(r)) = Message::parse(buf[..len].to_vec())
                    && r.status.is_final()
                {
                    return r;
                }
            }
        })
        .await;
        if method == "INVITE" {
            // §17.1.1.3: the ACK of a non-2xx carries the response's To tag.
            let tag = response
                .to()
                .ok()
                .and_then(|to| to.tag().map(|tag| format!(";tag={tag}")))
                .unwrap_or_default();
            let ack = head("ACK", &tag);
            self.socket.send_to(ack.as_bytes(), server).await.unwrap();
        }
        response
    }
}

fn load_of(response: &Response) -> Option<&str> {
    response.headers.get_by_name(LOAD).map(|h| h.value())
}

fn retry_after(response: &Response) -> Option<u64> {
    response
        .headers
        .get_str(HeaderName::RetryAfter)
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_refuses_new_calls_and_probes_and_lets_the_call_in_progress_finish() {
    let mut server = peer(builder(49_000..=49_029), accept).await;
    let caller = peer(signaling_only(), accept).await;
    let (call, at_server) = connect(&caller, &mut server).await;
    let mut probe = Probe::new(server.manager.local_addr()).await;
    let healthy = probe.ask("OPTIONS").await;
    assert_eq!(healthy.status, StatusCode::OK);
    assert_eq!(load_of(&healthy), Some("1"), "one call, no limit");
    assert!(!server.manager.is_draining());
    let shed_before = server.manager.shed_calls();

    let drain = server.manager.drain(Duration::from_secs(10));
    tokio::pin!(drain);
    // Polled first, so the drain has begun when the requests go out; it must not end while
    // the call is up.
    let (options, invite, refused) = tokio::select! {
        biased;
        report = &mut drain => panic!("the drain ended with a call up: {report:?}"),
        refused = async {
            let options = probe.ask("OPTIONS").await;
            let invite = probe.ask("INVITE").await;
            let call = caller.manager.call(&server.uri("bob")).await.unwrap();
            (options, invite, within(call.answered()).await.unwrap_err())
        } => refused,
    };
    assert!(server.manager.is_draining());
    assert_eq!(
        options.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a balancer stops sending"
    );
    assert!(retry_after(&options).is_some_and(|s| s >= 1));
    assert_eq!(load_of(&options), Some("1"));
    assert_eq!(invite.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&invite).is_some_and(|s| s >= 1));
    assert_eq!(refused.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    // The call in progress is untouched; its peer hangs up within the grace.
    assert_eq!(at_server.state(), CallState::Active);
    call.hangup().await.unwrap();

    let report = within(drain).await;
    assert_eq!((report.finished, report.ended), (1, 0), "{report:?}");
    assert_eq!(within(at_server.ended()).await, CallState::Terminated);
    // Both refusals were the SIP layer's, before any per-call state: the handler saw neither.
    assert_eq!(server.manager.shed_calls() - shed_before, 2);
    while let Ok(seen) = server.seen.try_recv() {
        assert!(
            !matches!(seen, Seen::Incoming(..)),
            "a refused call reached the handler"
        );
    }
    // The drain ends in a shutdown.
    assert!(matches!(
        server.manager.call(&caller.uri("alice")).await,
        Err(session_core::SessionError::Shutdown)
    ));
    assert_released(&server).await;
    assert_released(&caller).await;
    caller.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_the_calls_left_when_its_grace_runs_out() {
    let mut server = peer(builder(49_030..=49_059), |call| {
        if call.request_uri().user() == Some("ring") {
            CallDecision::Defer
        } else {
            CallDecision::accept()
        }
    })
    .await;
    let mut caller = peer(signaling_only(), accept).await;
    let (call, _) = connect(&caller, &mut server).await;
    let ringing = caller.manager.call(&server.uri("ring")).await.unwrap();
    within(ringing.wait_for(|state| state == CallState::Ringing)).await;

    let report = within(server.manager.drain(Duration::from_millis(300))).await;
    assert_eq!((report.finished, report.ended), (0, 2), "{report:?}");
    // The answered call got our BYE, the ringing one a 503.
    let id = call.id();
    let reason = caller
        .expect(|seen| match seen {
            Seen::Ended(ended, reason, _) if ended.id() == id => Some(reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, TerminationReason::RemoteHangup);
    let error = within(ringing.answered()).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_released(&server).await;
    assert_released(&caller).await;
    caller.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_answer_200_with_the_load_and_503_at_the_admission_limit() {
    let mut server = peer(
        builder(49_060..=49_089).limits(Limits::default().max_sessions(1)),
        accept,
    )
    .await;
    let caller = peer(signaling_only(), accept).await;
    let mut probe = Probe::new(server.manager.local_addr()).await;
    let idle = probe.ask("OPTIONS").await;
    assert_eq!(idle.status, StatusCode::OK);
    assert_eq!(load_of(&idle), Some("0/1"));
    assert_eq!(retry_after(&idle), None);

    // Established at the server (its ACK handled): the admission is counted by then.
    let (call, _) = connect(&caller, &mut server).await;
    let full = probe.ask("OPTIONS").await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&full).is_some_and(|s| s >= 1));
    assert_eq!(load_of(&full), Some("1/1"));

    call.hangup().await.unwrap();
    // Released (its ports back): the SIP layer was told before.
    assert_released(&server).await;
    let again = probe.ask("OPTIONS").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(load_of(&again), Some("0/1"));
    caller.manager.shutdown().await;
    server.manager.shutdown().await;
}

/// A drain with nothing to drain ends the manager's task at once, while `drain` sends the
/// task its `shutdown`: that command must not be lost in the task's closing queue (it was,
/// now and then on a loaded machine, and `drain` never returned). Many managers, to meet the
/// race at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_stops_the_manager_at_once_returns() {
    for _ in 0..1000 {
        let idle = peer(signaling_only(), accept).await;
        let report = within(idle.manager.drain(Duration::ZERO)).await;
        assert_eq!((report.finished, report.ended), (0, 0), "{report:?}");
    }
}
