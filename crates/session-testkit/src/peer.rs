//! [`TestPeer`]: a scriptable SIP user agent on loopback — a `SessionManager` with a handler
//! that answers by an [`Answer`] policy and records everything it receives as
//! [`PeerEvent`]s — and [`TestCall`], one of its calls, whose every wait is bounded.
//!
//! The peer is the other side of the engine under test: the caller that dials in, the agent
//! the engine forwards to, the transfer target. It plays tones and listens for them
//! ([`TestCall::play_tone`], [`TestCall::listen`]), sends DTMF, holds, transfers and hangs up
//! through the same public API an application would use.

use crate::audio::{EAR_FRAMES, Ear};
use crate::error::{Error, Result};
use crate::expect::Expect;
use crate::harness::{Tracked, released};
use crate::recording::Recording;
use crate::seen::PeerEvent;
use bytes::Bytes;
use parking_lot::Mutex;
use session_core::crates::media::audio::{ChannelSink, ToneSource};
use session_core::crates::sip::Request;
use session_core::{
    CallDecision, CallHandler, CallOptions, CallSession, CallState, CallStats, DtmfMethod,
    FailureReason, Identity, IncomingCall, MediaMode, SessionId, SessionManager,
    SessionManagerBuilder, StatusCode, TerminationReason, TransferDecision, TransferRequest,
};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

/// Peak amplitude of the tones a peer plays (about −18 dBFS): loud enough to be heard through
/// any mix, four of them summed stay clear of clipping.
pub const TONE_AMPLITUDE: i16 = 4000;

/// How a test peer answers the calls that reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// 200 OK at once (the default).
    Accept,
    /// Refuse with this final status, sent exactly (486, 603, 480 …).
    Reject(StatusCode),
    /// 180 Ringing, then 200 OK after this long.
    RingThenAccept(Duration),
    /// 180 Ringing, then refuse with the status after this long.
    RingThenReject(Duration, StatusCode),
    /// 180 Ringing and nothing more: the test answers, with [`TestCall::accept`] or
    /// [`TestCall::reject`], or lets it ring.
    Ring,
    /// 183 Session Progress with media, then nothing more: the test answers.
    EarlyMedia,
    /// Nothing but the transaction's 100 Trying: the test decides.
    Silent,
}

/// What a peer's handler shares with the peer.
struct PeerState {
    answer: Mutex<Answer>,
    transfers: Mutex<TransferDecision>,
    tone: Mutex<Option<f64>>,
    log: Recording<PeerEvent>,
}

/// The peer's [`CallHandler`]: records, decides by the policy, never waits.
struct PeerHandler(Arc<PeerState>);

/// Runs `future` on its own task: the handler's callbacks run on the manager's task and must
/// not wait, so what comes later (the delayed answer, the tone of an established call) runs
/// beside it.
fn later(future: impl Future<Output = ()> + Send + 'static) {
    drop(tokio::spawn(future));
}

impl CallHandler for PeerHandler {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        self.0.log.push(PeerEvent::Call {
            call: call.session.clone(),
            invite: call.request.clone(),
            source: call.source,
            replaces: call.replaces.as_ref().map(CallSession::id),
        });
        let answer = self.0.answer.lock().clone();
        match answer {
            Answer::Accept => CallDecision::accept(),
            Answer::Reject(status) => CallDecision::Reject(status),
            Answer::Ring => CallDecision::Defer,
            Answer::EarlyMedia => CallDecision::DeferWithEarlyMedia,
            Answer::Silent => CallDecision::DeferSilently,
            Answer::RingThenAccept(delay) => {
                let session = call.session.clone();
                later(async move {
                    tokio::time::sleep(delay).await;
                    // The caller may have given up meanwhile: then there is nothing to answer.
                    let _ = session.accept().await;
                });
                CallDecision::Defer
            }
            Answer::RingThenReject(delay, status) => {
                let session = call.session.clone();
                later(async move {
                    tokio::time::sleep(delay).await;
                    let _ = session.reject(status).await;
                });
                CallDecision::Defer
            }
        }
    }

    fn on_call_established(&self, call: &CallSession) {
        self.0
            .log
            .push(PeerEvent::Established { call: call.clone() });
        let tone = *self.0.tone.lock();
        if let Some(hz) = tone {
            let session = call.clone();
            later(async move {
                // A call that ended at once has nothing to play into.
                let _ = session
                    .attach_source(Box::new(ToneSource::new(hz, TONE_AMPLITUDE)))
                    .await;
            });
        }
    }

    fn on_call_ended(&self, call: &CallSession, reason: TerminationReason, stats: &CallStats) {
        self.0.log.push(PeerEvent::Ended {
            session: call.id(),
            reason,
            stats: stats.clone(),
        });
    }

    fn on_dtmf(&self, call: &CallSession, digit: char, method: DtmfMethod) {
        self.0.log.push(PeerEvent::Digit {
            session: call.id(),
            digit,
            method,
        });
    }

    fn on_transfer_request(
        &self,
        call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        self.0.log.push(PeerEvent::TransferRequested {
            session: call.id(),
            target: request.target.to_string(),
            referred_by: request.referred_by.clone(),
            attended: request.replaces.is_some(),
        });
        *self.0.transfers.lock()
    }

    fn on_remote_hold(&self, call: &CallSession, held: bool) {
        self.0.log.push(PeerEvent::Hold {
            session: call.id(),
            held,
        });
    }

    fn on_message(&self, call: &CallSession, request: &Request) {
        self.0.log.push(PeerEvent::Message {
            session: call.id(),
            method: request.method.to_string(),
            content_type: request
                .headers
                .get_by_name("Content-Type")
                .map(|h| h.value().to_owned()),
            body: request.body.clone(),
        });
    }
}

/// Builds a [`TestPeer`] ([`TestPeer::builder`], or [`crate::Harness::peer`] with the
/// harness's ports).
pub struct TestPeerBuilder {
    user: String,
    manager: SessionManagerBuilder,
    ports: Result<RangeInclusive<u16>>,
    signaling_only: bool,
    answer: Answer,
    transfers: TransferDecision,
    tone: Option<f64>,
    timeout: Duration,
    tracked: Option<Tracked>,
}

impl std::fmt::Debug for TestPeerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPeerBuilder")
            .field("user", &self.user)
            .field("ports", &self.ports)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl TestPeerBuilder {
    pub(crate) fn new(user: &str, ports: Result<RangeInclusive<u16>>) -> Self {
        let manager = SessionManager::builder()
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .shutdown_grace(Duration::from_millis(500))
            .identity(Identity {
                user: user.to_owned(),
                ..Identity::default()
            });
        Self {
            user: user.to_owned(),
            manager,
            ports,
            signaling_only: false,
            answer: Answer::Accept,
            transfers: TransferDecision::Accept,
            tone: None,
            timeout: crate::DEFAULT_TIMEOUT,
            tracked: None,
        }
    }

    pub(crate) fn tracked(mut self, tracked: Tracked, timeout: Duration) -> Self {
        self.tracked = Some(tracked);
        self.timeout = timeout;
        self
    }

    /// How it answers calls ([`Answer::Accept`] by default; [`TestPeer::set_answer`]
    /// changes it later).
    #[must_use]
    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    /// Whether it follows transfer requests (REFER): accepted by default.
    #[must_use]
    pub fn transfers(mut self, decision: TransferDecision) -> Self {
        self.transfers = decision;
        self
    }

    /// Every call of the peer plays an endless tone of `hz` once established (whoever the
    /// engine connects to the peer can then tell that they hear it).
    #[must_use]
    pub fn tone(mut self, hz: f64) -> Self {
        self.tone = Some(hz);
        self
    }

    /// No RTP: SDP is answered, no sockets are opened (signaling tests).
    #[must_use]
    pub fn signaling_only(mut self) -> Self {
        self.signaling_only = true;
        self
    }

    /// Bounds every wait of the peer and its calls ([`crate::DEFAULT_TIMEOUT`] by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Anything else about the peer's manager: `configure(|b| b.media_timeout(..))`, timers,
    /// idle audio, session timers, limits … (the kit installs its own handler and media ports
    /// after this; the identity is `user` unless this sets another).
    #[must_use]
    pub fn configure(
        mut self,
        configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
    ) -> Self {
        self.manager = configure(self.manager);
        self
    }

    /// Starts the peer's manager on 127.0.0.1 (a port the system picks).
    pub async fn start(self) -> Result<TestPeer> {
        let ports = self.ports?;
        let state = Arc::new(PeerState {
            answer: Mutex::new(self.answer),
            transfers: Mutex::new(self.transfers),
            tone: Mutex::new(self.tone),
            log: Recording::new(),
        });
        let mut manager = self
            .manager
            .media_ports(ports)
            .shared_handler(Arc::new(PeerHandler(Arc::clone(&state))));
        if self.signaling_only {
            manager = manager.media_mode(MediaMode::SignalingOnly);
        }
        let manager = manager.start().await?;
        if let Some(tracked) = &self.tracked {
            tracked.lock().push((self.user.clone(), manager.clone()));
        }
        Ok(TestPeer {
            user: self.user,
            manager,
            state,
            calls_taken: Mutex::new(0),
            timeout: self.timeout,
        })
    }
}

/// A scriptable SIP user agent on loopback, for the engine under test to call and be called
/// by. See the crate docs for a complete test.
pub struct TestPeer {
    user: String,
    manager: SessionManager,
    state: Arc<PeerState>,
    /// The index in the log after the last call [`TestPeer::next_call`] returned.
    calls_taken: Mutex<usize>,
    timeout: Duration,
}

impl std::fmt::Debug for TestPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPeer")
            .field("user", &self.user)
            .field("address", &self.manager.local_addr())
            .finish_non_exhaustive()
    }
}

impl TestPeer {
    /// A peer whose user part is `user` (its URI is `sip:USER@127.0.0.1:PORT`), with RTP
    /// from `media_ports` (give every manager of a test its own range).
    pub fn builder(user: &str, media_ports: RangeInclusive<u16>) -> TestPeerBuilder {
        TestPeerBuilder::new(user, Ok(media_ports))
    }

    /// Its user part.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its URI: `sip:USER@127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        self.uri_of(&self.user)
    }

    /// The URI of another user at the peer's address (a peer answers every user).
    pub fn uri_of(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.manager.local_addr())
    }

    /// Its session manager (its bus, its counts, its bridges …).
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The bound of its waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Answers the calls that come from now on by `answer`.
    pub fn set_answer(&self, answer: Answer) {
        *self.state.answer.lock() = answer;
    }

    /// Decides the transfer requests that come from now on by `decision`.
    pub fn set_transfers(&self, decision: TransferDecision) {
        *self.state.transfers.lock() = decision;
    }

    /// Plays a tone of `hz` into every call established from now on (`None`: none).
    pub fn set_tone(&self, hz: Option<f64>) {
        *self.state.tone.lock() = hz;
    }

    /// Calls `target` (`sip:user@host:port`). Returns once the INVITE is on its way; await
    /// [`TestCall::answered`] or [`TestCall::rejected`] for the outcome.
    pub async fn call(&self, target: &str) -> Result<TestCall> {
        self.call_with(target, CallOptions::default()).await
    }

    /// [`TestPeer::call`] with options (headers, transport, proxy …).
    pub async fn call_with(&self, target: &str, options: CallOptions) -> Result<TestCall> {
        let session = bounded(
            self.timeout,
            "placing the call",
            self.manager.call_with(target, options),
        )
        .await??;
        Ok(TestCall::new(session, None, self.timeout))
    }

    /// The next call that reached the peer (each is returned once, in order of arrival,
    /// whatever the answer policy did with it).
    pub async fn next_call(&self) -> Result<TestCall> {
        let what = format!("a call at {}", self.user);
        loop {
            let from = *self.calls_taken.lock();
            let (index, event) = self
                .state
                .log
                .next_where(
                    from,
                    |event| matches!(event, PeerEvent::Call { .. }),
                    self.timeout,
                    &what,
                )
                .await?;
            let mut taken = self.calls_taken.lock();
            // Another task took calls meanwhile: look again from where it got to.
            if *taken != from {
                continue;
            }
            *taken = index + 1;
            if let PeerEvent::Call { call, invite, .. } = event {
                return Ok(TestCall::new(call, Some(invite), self.timeout));
            }
        }
    }

    /// Everything the peer received so far, in order.
    pub fn seen(&self) -> Vec<PeerEvent> {
        self.state.log.all()
    }

    /// Waits for something the peer receives that meets `expect` (after what earlier waits
    /// matched); returns it.
    pub async fn expect(&self, expect: Expect<PeerEvent>) -> Result<PeerEvent> {
        let mut met = self.expect_in_order([expect]).await?;
        met.pop()
            .ok_or_else(|| Error::Expectation("nothing was returned".to_owned()))
    }

    /// Waits until what the peer receives meets `expects` in order (see
    /// [`crate::EventLog::expect_in_order`]); fails with a report of what it did receive.
    pub async fn expect_in_order(
        &self,
        expects: impl IntoIterator<Item = Expect<PeerEvent>>,
    ) -> Result<Vec<PeerEvent>> {
        let expects: Vec<_> = expects.into_iter().collect();
        self.state
            .log
            .expect_in_order(&expects, self.timeout, PeerEvent::describe)
            .await
    }

    /// Checks that the peer receives nothing that meets `expect` for `window`.
    pub async fn expect_none(&self, expect: Expect<PeerEvent>, window: Duration) -> Result<()> {
        self.state
            .log
            .expect_none(&expect, window, PeerEvent::describe)
            .await
    }

    /// The next waits look at what the peer receives from now on only.
    pub fn skip_seen(&self) {
        self.state.log.skip_seen();
    }

    /// Waits until the peer holds nothing: no call, no admission slot, no RTP port.
    pub async fn released(&self) -> Result<()> {
        released(&self.user, &self.manager, self.timeout).await
    }

    /// Ends its calls and stops its manager.
    pub async fn shutdown(&self) {
        self.manager.shutdown().await;
    }
}

/// Awaits `future` for at most `timeout`.
async fn bounded<T>(timeout: Duration, what: &str, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| Error::timed_out(what, timeout))
}

/// One call of a [`TestPeer`] (or any [`CallSession`], through [`TestCall::from_session`]):
/// the session's operations with every wait bounded, and audio in and out.
#[derive(Debug, Clone)]
pub struct TestCall {
    session: CallSession,
    invite: Option<Request>,
    timeout: Duration,
}

impl TestCall {
    fn new(session: CallSession, invite: Option<Request>, timeout: Duration) -> Self {
        Self {
            session,
            invite,
            timeout,
        }
    }

    /// Wraps a session of the engine's own (a leg it placed, say) to use the kit's bounded
    /// waits and audio checks on it.
    pub fn from_session(session: CallSession, timeout: Duration) -> Self {
        Self::new(session, None, timeout)
    }

    /// The same call with its waits bounded by `timeout` instead: for what is expected only
    /// after a long timer (`call.with_timeout(Duration::from_secs(90)).ended()`).
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// The bound of its waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The session.
    pub fn session(&self) -> &CallSession {
        &self.session
    }

    /// Its id.
    pub fn id(&self) -> SessionId {
        self.session.id()
    }

    /// Its state now.
    pub fn state(&self) -> CallState {
        self.session.state()
    }

    /// The INVITE that brought it, for a call the peer received.
    pub fn invite(&self) -> Option<&Request> {
        self.invite.as_ref()
    }

    /// A header of the INVITE that brought it (`From`, `P-Asserted-Identity`, `X-…`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.invite
            .as_ref()
            .and_then(|invite| invite.headers.get_by_name(name))
            .map(|h| h.value())
    }

    /// The user the INVITE was for (its Request-URI's user part).
    pub fn called_user(&self) -> Option<&str> {
        self.invite.as_ref().and_then(|invite| invite.uri.user())
    }

    async fn run(
        &self,
        what: &str,
        operation: impl Future<Output = session_core::Result<()>>,
    ) -> Result<()> {
        Ok(bounded(self.timeout, what, operation).await??)
    }

    /// Waits for the answer: `Ok` once established, the session error (with the SIP status of
    /// a rejection) when it never is.
    pub async fn answered(&self) -> Result<()> {
        self.run("the answer", self.session.answered()).await
    }

    /// Waits for the call to be refused and returns the status it was refused with; an
    /// error when it was answered, or ended otherwise.
    pub async fn rejected(&self) -> Result<StatusCode> {
        let state = bounded(
            self.timeout,
            "the final response",
            self.session.wait_for(CallState::is_established),
        )
        .await?;
        match state {
            CallState::Failed(FailureReason::Rejected(status)) => Ok(status),
            other => Err(Error::Expectation(format!(
                "expected the call to be refused, but it is {other}"
            ))),
        }
    }

    /// Waits until the call is established (on either side).
    pub async fn established(&self) -> Result<()> {
        let state = bounded(
            self.timeout,
            "the call to be established",
            self.session.wait_for(CallState::is_established),
        )
        .await?;
        if state.is_established() {
            Ok(())
        } else {
            Err(Error::Expectation(format!(
                "expected the call to be established, but it is {state}"
            )))
        }
    }

    /// Waits until the call is in a state `done` accepts (or a final one); returns it.
    pub async fn wait_for(&self, done: impl Fn(CallState) -> bool) -> Result<CallState> {
        bounded(self.timeout, "a call state", self.session.wait_for(done)).await
    }

    /// Waits for the end of the call; returns its final state.
    pub async fn ended(&self) -> Result<CallState> {
        bounded(self.timeout, "the end of the call", self.session.ended()).await
    }

    /// Waits until the call has ended and released everything it held.
    pub async fn released(&self) -> Result<()> {
        bounded(self.timeout, "the call's release", self.session.released()).await
    }

    /// Answers a call the peer let ring.
    pub async fn accept(&self) -> Result<()> {
        self.run("accept", self.session.accept()).await
    }

    /// Refuses a call the peer let ring, with `status`.
    pub async fn reject(&self, status: StatusCode) -> Result<()> {
        self.run("reject", self.session.reject(status)).await
    }

    /// Sends 180 Ringing (again) for a call the peer has not answered.
    pub async fn ring(&self) -> Result<()> {
        self.run("ring", self.session.ring()).await
    }

    /// Sends 183 with media for a call the peer has not answered.
    pub async fn early_media(&self) -> Result<()> {
        self.run("early media", self.session.early_media()).await
    }

    /// Hangs up (BYE; CANCEL before the answer; 480 for an unanswered incoming call).
    pub async fn hangup(&self) -> Result<()> {
        self.run("hangup", self.session.hangup()).await
    }

    /// Cancels an outgoing call not answered yet.
    pub async fn cancel(&self) -> Result<()> {
        self.run("cancel", self.session.cancel()).await
    }

    /// Puts the call on hold (re-INVITE `sendonly`).
    pub async fn hold(&self) -> Result<()> {
        self.run("hold", self.session.hold()).await
    }

    /// Takes the call off hold.
    pub async fn resume(&self) -> Result<()> {
        self.run("resume", self.session.resume()).await
    }

    /// Sends `digits`, one after the other, by `method`.
    pub async fn send_dtmf(&self, digits: &str, method: DtmfMethod) -> Result<()> {
        self.run("DTMF", self.session.send_dtmf(digits, method))
            .await
    }

    /// Sends an INFO with this body.
    pub async fn send_info(&self, content_type: &str, body: impl Into<Bytes>) -> Result<()> {
        self.run("INFO", self.session.send_info(content_type, body))
            .await
    }

    /// Sends a MESSAGE (`text/plain`).
    pub async fn send_message(&self, text: &str) -> Result<()> {
        self.run("MESSAGE", self.session.send_message(text)).await
    }

    /// Blind transfer: REFER the other side to `target`; `Ok` once it reached the target.
    pub async fn transfer(&self, target: &str) -> Result<()> {
        self.run("the transfer", self.session.transfer(target))
            .await
    }

    /// Attended transfer: REFER the other side to the peer of `consultation` (another call
    /// of this peer), replacing it.
    pub async fn transfer_attended(&self, consultation: &TestCall) -> Result<()> {
        self.run(
            "the attended transfer",
            self.session.transfer_attended(&consultation.session),
        )
        .await
    }

    /// The next `count` digits received in the call (RFC 4733 or INFO), as a string.
    pub async fn digits(&self, count: usize) -> Result<String> {
        bounded(self.timeout, "digits", async {
            let mut digits = String::with_capacity(count);
            while digits.len() < count {
                match self.session.next_dtmf().await {
                    Some(digit) => digits.push(digit),
                    None => break,
                }
            }
            digits
        })
        .await
    }

    /// Plays an endless tone of `hz` into the call (replacing what plays).
    pub async fn play_tone(&self, hz: f64) -> Result<()> {
        self.run(
            "attaching a tone",
            self.session
                .attach_source(Box::new(ToneSource::new(hz, TONE_AMPLITUDE))),
        )
        .await
    }

    /// Plays a tone of `hz` for `duration` into the call; silence follows.
    pub async fn play_tone_for(&self, hz: f64, duration: Duration) -> Result<()> {
        let tone = ToneSource::new(hz, TONE_AMPLITUDE).for_duration(duration);
        self.run(
            "attaching a tone",
            self.session.attach_source(Box::new(tone)),
        )
        .await
    }

    /// Stops what plays into the call.
    pub async fn stop_playing(&self) -> Result<()> {
        self.run("detaching the source", self.session.detach_source())
            .await
    }

    /// Waits until nothing plays into the call any more.
    pub async fn playback_finished(&self) -> Result<()> {
        bounded(
            self.timeout,
            "the end of the playback",
            self.session.playback_finished(),
        )
        .await
    }

    /// Starts recording what the call receives; the [`Ear`] tells which tones it hears.
    /// Replaces a recorder attached before.
    pub async fn listen(&self) -> Result<Ear> {
        let (sink, frames) = ChannelSink::new(EAR_FRAMES);
        self.run(
            "attaching a recorder",
            self.session.attach_sink(Box::new(sink)),
        )
        .await?;
        Ok(Ear::new(frames))
    }
}
