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
//!    both sides hold nothing;
//! 6. a TCP connection drops mid-call — a call over TCP through a relay (a NAT or border
//!    controller in the path, which also stands in for the callee's Contact); the relay cuts the
//!    connection while the call is up. The call goes on (a dialog is not its connection), and
//!    the caller's BYE opens a new connection to the same address (RFC 3261 §18.1.1: a request
//!    with no open connection to its destination opens one) and ends the call normally.
//!
//! Run: `cargo run -p examples2 --example 19_integration_testing`. Exits non-zero if a check
//! fails.

use examples2::{check, loopback, released, section, within};
use session_core::{CallOptions, EventKind, Filter, SessionEvent, TerminationReason};
use session_core::{
    CallState, FailureReason, IdleAudio, Limits, MediaMode, SessionError, StatusCode, TimerConfig,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;

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

/// A TCP relay in front of one SIP server, as a NAT or a border controller in the path would be:
/// each connection accepted is carried to `to` over a connection of its own, both ways. It
/// stands in for the server: the server's address in what comes back (its Contact) is
/// rewritten to the relay's, so the caller's in-dialog requests come through the relay too.
/// [`TcpRelay::cut`] closes every connection it carries, both sides, at once.
struct TcpRelay {
    at: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
    /// Contacts rewritten so far.
    rewritten: Arc<AtomicU64>,
    /// The pumps of the connections being carried (two per connection).
    pumps: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: AbortHandle,
}

impl TcpRelay {
    async fn start(to: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let at = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let rewritten = Arc::new(AtomicU64::new(0));
        let pumps = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn(relay_connections(
            listener,
            to,
            (to.to_string(), at.to_string()),
            accepted.clone(),
            rewritten.clone(),
            pumps.clone(),
        ))
        .abort_handle();
        Ok(Self {
            at,
            accepted,
            rewritten,
            pumps,
            acceptor,
        })
    }

    /// Closes every connection the relay carries (both sides); it goes on accepting new ones.
    fn cut(&self) -> usize {
        let pumps: Vec<AbortHandle> = self
            .pumps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        pumps.iter().for_each(AbortHandle::abort);
        pumps.len() / 2
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// Accepts connections and carries each to `to` (see [`TcpRelay`]).
async fn relay_connections(
    listener: TcpListener,
    to: SocketAddr,
    rewrite: (String, String),
    accepted: Arc<AtomicU64>,
    rewritten: Arc<AtomicU64>,
    pumps: Arc<Mutex<Vec<AbortHandle>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(server) = TcpStream::connect(to).await else {
            continue;
        };
        let (from_client, to_client) = client.into_split();
        let (from_server, to_server) = server.into_split();
        let up = tokio::spawn(async move {
            let (mut from_client, mut to_server) = (from_client, to_server);
            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        });
        let down = tokio::spawn(carry_back(
            from_server,
            to_client,
            rewrite.clone(),
            rewritten.clone(),
        ));
        pumps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend([up.abort_handle(), down.abort_handle()]);
    }
}

/// Carries the server's messages back to the client, message by message, with the server's
/// address in each header section (its Contact) replaced by the relay's.
async fn carry_back(
    mut from_server: OwnedReadHalf,
    mut to_client: OwnedWriteHalf,
    (server, relay): (String, String),
    rewritten: Arc<AtomicU64>,
) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(read) = from_server.read(&mut buf).await {
        if read == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..read]);
        while let Some((head, body)) = next_message(&mut pending) {
            let head = String::from_utf8_lossy(&head);
            if head.contains(&server) {
                rewritten.fetch_add(1, Ordering::Relaxed);
            }
            let head = head.replace(&server, &relay);
            if to_client.write_all(head.as_bytes()).await.is_err()
                || to_client.write_all(&body).await.is_err()
            {
                return;
            }
        }
    }
}

/// Takes the next whole message off the front of a SIP stream: its header section (up to the
/// blank line) and its body (Content-Length bytes, RFC 3261 §18.3). Keep-alive line ends between
/// messages come out as a header section of their own. `None` until a message is complete.
fn next_message(pending: &mut Vec<u8>) -> Option<(Vec<u8>, Vec<u8>)> {
    let line_ends = pending
        .iter()
        .take_while(|byte| matches!(byte, b'\r' | b'\n'))
        .count();
    if line_ends > 0 {
        return Some((pending.drain(..line_ends).collect(), Vec::new()));
    }
    let head_len = pending.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&pending[..head_len]);
    let body_len = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    if pending.len() < head_len + body_len {
        return None;
    }
    let head: Vec<u8> = pending.drain(..head_len).collect();
    let body: Vec<u8> = pending.drain(..body_len).collect();
    Some((head, body))
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

    section("6. a TCP connection drops mid-call: the call goes on, the next request reconnects");
    let near = loopback(46_400..=46_449)
        .media_mode(MediaMode::SignalingOnly)
        .start()
        .await?;
    let remote = loopback(46_450..=46_499)
        .media_mode(MediaMode::SignalingOnly)
        .start()
        .await?;
    // The manager's TCP listener shares its UDP port.
    let relay = TcpRelay::start(remote.local_addr()).await?;
    let call = near
        .call_with(
            &format!("sip:bob@{};transport=tcp", relay.at),
            CallOptions::default().tcp(),
        )
        .await?;
    within("the answer over TCP", call.answered()).await?;
    check(
        call.state() == CallState::Active
            && remote.active_calls() == 1
            && relay.accepted.load(Ordering::Relaxed) == 1
            && relay.rewritten.load(Ordering::Relaxed) >= 1,
        "the call is up over one TCP connection through the relay (the callee's Contact is the relay)",
    );
    let mut ended_remotely = remote
        .events()
        .subscribe(Filter::kind(EventKind::SessionTerminated));
    let cut = relay.cut();
    // Give both sides time to see the connection close (EOF) and react, if they were to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("       cut {cut} connection(s) mid-call");
    check(
        cut == 1 && call.state() == CallState::Active && remote.active_calls() == 1,
        "a dropped connection ends no call: both sides still hold it as active",
    );
    within("the hang-up over a new connection", call.hangup()).await?;
    within("the end", call.released()).await;
    let remote_end = within("the callee's end", ended_remotely.recv()).await?;
    let remote_reason = match &*remote_end {
        SessionEvent::SessionTerminated { reason, .. } => Some(*reason),
        _ => None,
    };
    println!(
        "       connections accepted by the relay: {}; the callee's end: {remote_reason:?}",
        relay.accepted.load(Ordering::Relaxed)
    );
    check(
        call.state() == CallState::Terminated
            && remote_reason == Some(TerminationReason::RemoteHangup)
            && relay.accepted.load(Ordering::Relaxed) == 2,
        "the BYE opened a new connection to the same address (RFC 3261 §18.1.1), reached the \
         callee, and was answered: a normal hang-up on both sides",
    );
    drop(relay);
    check(
        released(&near).await && released(&remote).await,
        "both sides hold nothing",
    );

    for manager in [
        &watcher, &silent, &short, &caller, &callee, &limited, &far, &near, &remote,
    ] {
        manager.shutdown().await;
    }
    Ok(())
}
