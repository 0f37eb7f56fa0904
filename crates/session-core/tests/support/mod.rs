//! Shared by session-core's integration tests: a scriptable handler that hands every incoming
//! call and callback to the test over channels, and helpers to start managers on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use session_core::{
    CallDecision, CallHandler, CallSession, CallStats, DtmfMethod, IncomingCall, MediaMode,
    SessionManager, SessionManagerBuilder, TerminationReason, TransferDecision, TransferRequest,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the handler saw.
#[derive(Debug)]
pub enum Seen {
    Incoming(CallSession, session_core::crates::sip::Request),
    Established(CallSession),
    Ended(CallSession, TerminationReason, CallStats),
    Dtmf(char, DtmfMethod),
    Transfer(String),
    RemoteHold(bool),
    Message(String),
}

/// A handler deciding by a closure and reporting everything on a channel.
pub struct Scripted {
    decide: Box<dyn Fn(&IncomingCall) -> CallDecision + Send + Sync>,
    transfer: TransferDecision,
    seen: mpsc::UnboundedSender<Seen>,
}

impl CallHandler for Scripted {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self
            .seen
            .send(Seen::Incoming(call.session.clone(), call.request.clone()));
        (self.decide)(call)
    }
    fn on_call_established(&self, call: &CallSession) {
        let _ = self.seen.send(Seen::Established(call.clone()));
    }
    fn on_call_ended(&self, call: &CallSession, reason: TerminationReason, stats: &CallStats) {
        let _ = self
            .seen
            .send(Seen::Ended(call.clone(), reason, stats.clone()));
    }
    fn on_dtmf(&self, _call: &CallSession, digit: char, method: DtmfMethod) {
        let _ = self.seen.send(Seen::Dtmf(digit, method));
    }
    fn on_transfer_request(
        &self,
        _call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        let _ = self.seen.send(Seen::Transfer(request.target.to_string()));
        self.transfer
    }
    fn on_remote_hold(&self, _call: &CallSession, held: bool) {
        let _ = self.seen.send(Seen::RemoteHold(held));
    }
    fn on_message(&self, _call: &CallSession, request: &session_core::crates::sip::Request) {
        let _ = self.seen.send(Seen::Message(
            String::from_utf8_lossy(&request.body).into_owned(),
        ));
    }
}

/// A manager with a scripted handler, and the channel of what it sees.
pub struct Peer {
    pub manager: SessionManager,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Peer {
    /// The manager's SIP URI for `user`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.manager.local_addr())
    }

    /// Waits for the next thing seen that `pick` accepts, skipping others.
    pub async fn expect<T>(&mut self, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        within(async {
            loop {
                let seen = self.seen.recv().await.expect("handler channel open");
                if let Some(found) = pick(seen) {
                    return found;
                }
            }
        })
        .await
    }

    /// The next incoming call.
    pub async fn incoming(&mut self) -> CallSession {
        self.expect(|seen| match seen {
            Seen::Incoming(call, _) => Some(call),
            _ => None,
        })
        .await
    }
}

/// Builder for a loopback peer with RTP media from its own port range.
pub fn builder(ports: std::ops::RangeInclusive<u16>) -> SessionManagerBuilder {
    SessionManager::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .media_ports(ports)
        .shutdown_grace(Duration::from_millis(500))
}

/// Starts a peer deciding with `decide`.
pub async fn peer(
    builder: SessionManagerBuilder,
    decide: impl Fn(&IncomingCall) -> CallDecision + Send + Sync + 'static,
) -> Peer {
    peer_with(builder, decide, TransferDecision::Accept).await
}

/// Starts a peer deciding calls with `decide` and transfers with `transfer`.
pub async fn peer_with(
    builder: SessionManagerBuilder,
    decide: impl Fn(&IncomingCall) -> CallDecision + Send + Sync + 'static,
    transfer: TransferDecision,
) -> Peer {
    let (seen, rx) = mpsc::unbounded_channel();
    let handler = Scripted {
        decide: Box::new(decide),
        transfer,
        seen,
    };
    let manager = builder
        .shared_handler(Arc::new(handler))
        .start()
        .await
        .expect("manager starts");
    Peer { manager, seen: rx }
}

/// A signaling-only builder (no RTP sockets).
pub fn signaling_only() -> SessionManagerBuilder {
    builder(40_000..=40_099).media_mode(MediaMode::SignalingOnly)
}

/// Runs `f` with a 10 s limit.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

/// Asserts that `peer` holds nothing any more: no call, no admission slot, no RTP port.
pub async fn assert_released(peer: &Peer) {
    assert_manager_released(&peer.manager).await;
}

/// [`assert_released`] for a manager built without the scripted handler.
pub async fn assert_manager_released(manager: &SessionManager) {
    within(manager.idle()).await;
}

/// Alice calls bob's user "bob" and both sides see the call established: (alice's, bob's).
pub async fn connect(alice: &Peer, bob: &mut Peer) -> (CallSession, CallSession) {
    let call = alice
        .manager
        .call(&bob.uri("bob"))
        .await
        .expect("call placed");
    within(call.answered()).await.expect("call answered");
    let incoming = bob.incoming().await;
    within(incoming.wait_for(session_core::CallState::is_established)).await;
    (call, incoming)
}
