//! session-core's attended transfer (RFC 5589 §7) with a real transferee on loopback: SIPp
//! runs the transferee's side (`tests/scenarios/attended_transferee.xml`); two managers of ours
//! are the transferor X and the transfer target T.
//!
//! - `sipp_as_transferee_completes_our_attended_transfer`: X calls SIPp (call 1) and T
//!   (call 2, the consultation); both answer. `call1.transfer_attended(&call2)` sends SIPp a
//!   REFER whose `Refer-To` is T's contact with the percent-encoded `Replaces` of call 2 as T
//!   sees it (RFC 3891). SIPp answers 202, reports `100 Trying` by NOTIFY, takes the target and
//!   the Call-ID and tags out of the `Refer-To` and calls T with `Replaces` and `Referred-By`
//!   under a Call-ID of its own; T rings, the test accepts, SIPp ACKs and reports `200 OK` by
//!   NOTIFY (subscription terminated). Proves: SIPp understood our REFER and our NOTIFY answers;
//!   T matched SIPp's `Replaces` to its half of call 2 by Call-ID and tags (`IncomingCall`'s
//!   `replaces` is that call); `transfer_attended` returns `Ok` on the final NOTIFY; X then
//!   hangs up call 1 (its BYE, SIPp's 200), T hangs up the replaced call 2 itself (RFC 3891 §3:
//!   X's call 2 ends by T's BYE), the new call on T is established and ends by SIPp's BYE. Each
//!   ending is checked from the handlers' `on_call_ended` (who sent the BYE), SIPp counts one
//!   successful call and exits 0, and both managers hold no call, admission slot or RTP port.
//!
//! SIPp is Debian `sip-tester` (3.6). It sends everything of a call to one address, so the
//! scenario switches it between X and T with `setdest`; it sends no RTP (it binds the media
//! port of its SDP, so our RTP has a socket to go to), and our managers' media timeout is off
//! (the default). A missing `sipp` fails the test (see `support::tool_available`). SIPp's
//! message trace (`-trace_msg`) is shown when a step fails and summarised on success. Every
//! wait is bounded, and SIPp is killed when its handle is dropped. Run time on loopback: about
//! 30 ms from SIPp's start to its exit.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_core::{
    CallDecision, CallHandler, CallSession, CallState, CallStats, IncomingCall, IncomingCalls,
    QueueingHandler, SessionId, SessionManager, TerminationReason, Transports,
};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{
    TempDir, assert_released, free_media_ports, free_port, sipp_counter, sipp_text, tool_available,
};
use tokio::sync::mpsc;

/// A generous limit for one step of a call on loopback.
const STEP: Duration = Duration::from_secs(10);
/// The transferee's side, for SIPp's `-sf`.
const SCENARIO: &str = include_str!("../scenarios/attended_transferee.xml");

// ---------------------------------------------------------------------------------------------
// Our two managers, and what their handlers saw.

/// A call's milestone, as a manager's handler reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    Established(SessionId),
    Ended(SessionId, TerminationReason),
}

/// Queues incoming calls for the test (ringing meanwhile) and reports every call's
/// establishment and end.
struct Recording {
    queue: QueueingHandler,
    seen: mpsc::UnboundedSender<Seen>,
}

impl CallHandler for Recording {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        self.queue.on_incoming_call(call)
    }

    fn on_call_established(&self, call: &CallSession) {
        let _ = self.seen.send(Seen::Established(call.id()));
    }

    fn on_call_ended(&self, call: &CallSession, reason: TerminationReason, _stats: &CallStats) {
        let _ = self.seen.send(Seen::Ended(call.id(), reason));
    }
}

/// A manager on 127.0.0.1 (UDP only, RTP from `ports`), its queue of incoming calls and what
/// its handler saw.
async fn start_manager(
    ports: std::ops::RangeInclusive<u16>,
) -> (SessionManager, IncomingCalls, mpsc::UnboundedReceiver<Seen>) {
    let (queue, incoming) = IncomingCalls::channel(4);
    // Test-only: a few milestones per call, for the calls of one test.
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let manager = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .transports(Transports::Udp)
        .media_ports(ports)
        .shutdown_grace(Duration::from_millis(500))
        .handler(Recording {
            queue,
            seen: seen_tx,
        })
        .start()
        .await
        .expect("the manager starts");
    (manager, incoming, seen)
}

/// The milestones `seen` reports until `ended` calls have ended (at most [`STEP`]).
async fn milestones(seen: &mut mpsc::UnboundedReceiver<Seen>, ended: usize) -> Vec<Seen> {
    let mut all = Vec::new();
    let collect = async {
        while all.iter().filter(|s| matches!(s, Seen::Ended(..))).count() < ended {
            all.push(seen.recv().await.expect("the manager runs"));
        }
    };
    if tokio::time::timeout(STEP, collect).await.is_err() {
        panic!("not {ended} calls ended within {STEP:?}; seen: {all:?}");
    }
    all
}

// ---------------------------------------------------------------------------------------------
// SIPp.

type SippRun = tokio::task::JoinHandle<std::io::Result<std::process::Output>>;

/// SIPp running the scenario, with its message trace; killed when dropped.
struct Sipp {
    run: SippRun,
    sip: SocketAddr,
    trace: PathBuf,
    errors: PathBuf,
    _dir: TempDir,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        // Dropping the task drops the child, which kills it (`kill_on_drop`).
        self.run.abort();
    }
}

impl Sipp {
    /// Starts SIPp as the transferee on a free port and returns once it listens (or fails the
    /// test with what it printed).
    async fn start() -> Self {
        let dir = TempDir::new("sipp-transferee");
        let scenario = dir.path().join("attended_transferee.xml");
        std::fs::write(&scenario, SCENARIO).unwrap();
        let (trace, errors) = (
            dir.path().join("messages.log"),
            dir.path().join("errors.log"),
        );
        let sip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let mut command = tokio::process::Command::new("sipp");
        command
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &sip.port().to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &free_media_ports().to_string()])
            .args(["-m", "1", "-nostdin"])
            .args(["-timeout", "30", "-timeout_error", "-recv_timeout", "10000"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&trace)
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // Polled from the start so SIPp never blocks on a full pipe.
        let run = tokio::spawn(command.output());
        let mut sipp = Self {
            run,
            sip,
            trace,
            errors,
            _dir: dir,
        };
        let listening = async {
            while !udp_port_bound(sip.port()) && !sipp.run.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let bound = tokio::time::timeout(STEP, listening).await.is_ok();
        if !bound || sipp.run.is_finished() {
            sipp.fail("SIPp listening").await;
        }
        sipp
    }

    /// SIPp's message trace so far and its error log.
    fn logs(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "--- SIPp's messages ---\n{}\n--- SIPp's errors ---\n{}",
            read(&self.trace),
            read(&self.errors)
        )
    }

    /// Fails the test at `what`, with SIPp's logs and, if it has exited, its output.
    async fn fail(&mut self, what: &str) -> ! {
        let output = if self.run.is_finished() {
            match (&mut self.run).await {
                Ok(Ok(output)) => sipp_text(&output),
                other => format!("{other:?}"),
            }
        } else {
            "(SIPp was still running)".to_owned()
        };
        panic!("{what}\n{}\n--- SIPp's output ---\n{output}", self.logs())
    }

    /// `future`, or a failed test after [`STEP`] with SIPp's logs.
    async fn within<T>(&self, what: &str, future: impl std::future::Future<Output = T>) -> T {
        match tokio::time::timeout(STEP, future).await {
            Ok(value) => value,
            Err(_) => panic!("{what}: not within {STEP:?}\n{}", self.logs()),
        }
    }

    /// Waits for SIPp to exit; its output and its message trace.
    async fn finish(&mut self) -> (std::process::Output, String) {
        match tokio::time::timeout(STEP, &mut self.run).await {
            Ok(done) => (
                done.unwrap().expect("sipp ran"),
                std::fs::read_to_string(&self.trace).unwrap_or_default(),
            ),
            Err(_) => self.fail("SIPp exiting after the calls").await,
        }
    }
}

/// Whether something is bound to UDP `port` (read from `/proc/net/udp`, so that probing does
/// not disturb the socket).
fn udp_port_bound(port: u16) -> bool {
    let local = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1))
            .any(|address| address.ends_with(&local))
    })
}

/// One line per message of SIPp's `-trace_msg` log: sent or received, and its first line.
fn trace_summary(trace: &str) -> String {
    let mut summary = String::new();
    let mut lines = trace.lines();
    while let Some(line) = lines.next() {
        let direction = if line.contains("message sent") {
            "SIPp →"
        } else if line.contains("message received") {
            "SIPp ←"
        } else {
            continue;
        };
        let first = lines
            .by_ref()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        summary.push_str(&format!("  {direction} {first}\n"));
    }
    summary
}

// ---------------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_as_transferee_completes_our_attended_transfer() {
    if !tool_available("sipp", "-v", "sip-tester") {
        return;
    }
    let started = Instant::now();
    let mut sipp = Sipp::start().await;
    let (x, _x_incoming, mut x_seen) = start_manager(46_600..=46_699).await;
    let (t, mut t_incoming, mut t_seen) = start_manager(46_700..=46_799).await;

    // Call 1: X calls SIPp.
    let call1 = x
        .call(&format!("sip:transferee@{}", sipp.sip))
        .await
        .unwrap();
    sipp.within("SIPp answering call 1", call1.answered())
        .await
        .unwrap();
    assert_eq!(call1.codec().as_deref(), Some("PCMU"));

    // Call 2: X consults T.
    let call2 = x
        .call(&format!("sip:target@{}", t.local_addr()))
        .await
        .unwrap();
    let consultation = sipp
        .within("call 2 at T", t_incoming.next())
        .await
        .expect("T runs");
    assert!(consultation.replaces.is_none());
    assert_eq!(consultation.header("Replaces"), None);
    let t_call2 = consultation.session;
    t_call2.accept().await.unwrap();
    sipp.within("T answering call 2", call2.answered())
        .await
        .unwrap();
    sipp.within(
        "call 2 up at T",
        t_call2.wait_for(CallState::is_established),
    )
    .await;

    // X transfers SIPp to T, replacing call 2. `transfer_attended` returns once SIPp reports
    // T's 200, so T answers SIPp's INVITE meanwhile.
    let transfer = tokio::spawn({
        let (call1, call2) = (call1.clone(), call2.clone());
        async move { call1.transfer_attended(&call2).await }
    });
    let replacing = sipp
        .within("SIPp's INVITE with Replaces at T", t_incoming.next())
        .await
        .expect("T runs");
    let replaces = replacing
        .header("Replaces")
        .expect("SIPp's INVITE carries Replaces")
        .to_owned();
    // The Call-ID, percent-decoded by SIPp's scenario (`@`), then the tags.
    let call_id = format!("{};", call2.call_id());
    assert!(
        replaces.starts_with(&call_id)
            && replaces.contains(";to-tag=")
            && replaces.contains(";from-tag="),
        "Replaces: {replaces} (call 2's Call-ID {})",
        call2.call_id()
    );
    assert_eq!(
        replacing.replaces.as_ref().map(CallSession::id),
        Some(t_call2.id()),
        "T matched Replaces: {replaces} to its half of call 2"
    );
    assert!(
        replacing.header("Referred-By").is_some(),
        "SIPp's INVITE carries the REFER's Referred-By"
    );
    assert_ne!(replacing.session.call_id(), call2.call_id());
    let new_call = replacing.session.clone();
    new_call.accept().await.unwrap();
    sipp.within("transfer_attended", transfer)
        .await
        .unwrap()
        .expect("the transfer succeeds");

    // Everything ends: call 1 by X's BYE, call 2 by T's, the new call by SIPp's.
    for (what, call) in [
        ("X's call 1", &call1),
        ("X's call 2", &call2),
        ("T's call 2", &t_call2),
        ("T's call from SIPp", &new_call),
    ] {
        assert_eq!(
            sipp.within(what, call.ended()).await,
            CallState::Terminated,
            "{what}"
        );
    }
    assert_eq!(new_call.codec().as_deref(), Some("PCMU"));
    let x_saw = milestones(&mut x_seen, 2).await;
    let t_saw = milestones(&mut t_seen, 2).await;
    assert_eq!(
        x_saw.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([
            Seen::Established(call1.id()),
            Seen::Established(call2.id()),
            Seen::Ended(call1.id(), TerminationReason::LocalHangup),
            Seen::Ended(call2.id(), TerminationReason::RemoteHangup),
        ]),
        "X: {x_saw:?}"
    );
    assert_eq!(
        t_saw.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([
            Seen::Established(t_call2.id()),
            Seen::Established(new_call.id()),
            Seen::Ended(t_call2.id(), TerminationReason::LocalHangup),
            Seen::Ended(new_call.id(), TerminationReason::RemoteHangup),
        ]),
        "T: {t_saw:?}"
    );
    let position = |seen: Seen| t_saw.iter().position(|s| *s == seen);
    assert!(
        position(Seen::Established(new_call.id()))
            < position(Seen::Ended(new_call.id(), TerminationReason::RemoteHangup)),
        "T: {t_saw:?}"
    );
    assert_eq!(x_saw.len() + t_saw.len(), 8, "X: {x_saw:?}\nT: {t_saw:?}");
    assert_released(&x);
    assert_released(&t);
    let calls_done = started.elapsed();

    let (output, trace) = sipp.finish().await;
    let text = sipp_text(&output);
    let (ok, failed) = (
        sipp_counter(&text, "Successful call"),
        sipp_counter(&text, "Failed call"),
    );
    assert_eq!((ok, failed), (1, 0), "SIPp:\n{text}\n{trace}");
    assert!(
        output.status.success(),
        "SIPp exit status {}\n{text}\n{trace}",
        output.status
    );
    x.shutdown().await;
    t.shutdown().await;
    eprintln!(
        "SIPp as transferee:\n{}calls done after {calls_done:?}, SIPp exited after {:?}",
        trace_summary(&trace),
        started.elapsed()
    );
}
