//! [`CallSession`]: the application's handle on one call, in either direction.
//!
//! A handle is cheap to clone and never blocks: reads (`state`, `call_id`) come from state the
//! manager shares with it, and operations (`hangup`, `hold`, `transfer` …) are messages to the
//! manager's task, awaited for their outcome. Handles outlive their call safely: an operation on
//! an ended call fails with [`SessionError::NoSuchSession`] or
//! [`SessionError::InvalidState`].

use crate::core::{Command, CommandSender, Operation};
use crate::error::{Result, SessionError};
use crate::handler::{AcceptOptions, DtmfMethod};
use crate::media::{BoxedSink, BoxedSource};
use bytes::Bytes;
use parking_lot::Mutex;
use session_bridge::JoinSettings;
use session_events::{CallSummary, EventBus, Filter, Subscription};
use session_media::jitter::JitterStats;
use session_media::rtcp::StreamStats;
use session_sip::Uri;
use session_types::{CallId, CallState, Direction, Priority, SessionId, StatusCode};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};

/// What a call's handles and the manager share.
pub(crate) struct CallShared {
    pub(crate) id: SessionId,
    pub(crate) call_id: CallId,
    pub(crate) direction: Direction,
    pub(crate) local_uri: Arc<str>,
    pub(crate) remote_uri: Arc<str>,
    /// The call's state (the manager changes it; handles read and watch it).
    pub(crate) state: Watched<CallState>,
    pub(crate) status: Mutex<CallStatus>,
    /// Digits received and not yet taken by [`CallSession::next_dtmf`] (the oldest dropped
    /// beyond [`DIGITS_KEPT`]).
    pub(crate) digits: Mutex<VecDeque<char>>,
    pub(crate) digit_arrived: Notify,
    /// The number of the playback under way (a source attached and not yet finished).
    pub(crate) playback: Watched<Option<u64>>,
    /// Playbacks numbered so far.
    pub(crate) playbacks: AtomicU64,
    /// Set as the call starts to end (before its state turns final): it joins no group
    /// from then on.
    pub(crate) ending: std::sync::atomic::AtomicBool,
    /// The manager's bus, for [`CallSession::events`].
    pub(crate) bus: EventBus,
    /// Turns `true` once the call has ended and released everything.
    pub(crate) released: Watched<bool>,
    /// The call's [`Priority`] level.
    pub(crate) priority: std::sync::atomic::AtomicU8,
    /// How the manager marks packets (for the call's RTP, by its priority).
    pub(crate) dscp: Arc<crate::config::DscpPolicy>,
}

impl CallShared {
    /// The call's priority.
    pub(crate) fn priority(&self) -> Priority {
        Priority::new(self.priority.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Records the call's priority.
    pub(crate) fn set_priority(&self, priority: Priority) {
        self.priority.store(priority.level(), Ordering::Relaxed);
    }

    /// Marks the call's RTP and RTCP for its priority, if it has sockets of ours.
    pub(crate) fn mark_media(&self) -> session_media::Result<()> {
        let marking = self.status.lock().marking.clone();
        match marking {
            Some(marking) => marking.set_dscp(self.dscp.rtp_for(self.priority())),
            None => Ok(()),
        }
    }
}

/// How many unread digits a call keeps for [`CallSession::next_dtmf`].
pub(crate) const DIGITS_KEPT: usize = 64;

impl CallShared {
    /// Playback number `playback` stopped: if it is the one under way, nothing plays now.
    pub(crate) fn playback_finished(&self, playback: u64) {
        self.playback.update(|current| {
            let was = *current == Some(playback);
            if was {
                *current = None;
            }
            was
        });
    }

    /// A digit arrived (RFC 4733 or INFO): queue it for [`CallSession::next_dtmf`].
    pub(crate) fn push_digit(&self, digit: char) {
        let mut digits = self.digits.lock();
        if digits.len() == DIGITS_KEPT {
            digits.pop_front();
        }
        digits.push_back(digit);
        drop(digits);
        self.digit_arrived.notify_one();
    }
}

/// A value of a call that handles read and may watch (its state, the playback under way, its
/// release), the `watch` channel made only once someone subscribes.
///
/// Most calls are never watched, and a channel costs: an allocation as it is made and, as it
/// drops, the waking of every notifier its receivers could wait on, whether or not anyone
/// does. Without a watcher a change is a store under an uncontended lock.
///
/// The value here is the truth; the channel's follows it. A change is made under the lock, and
/// then — outside it — the channel is brought to the value *now*, so that concurrent changes
/// (a handle's `attach_source` and the manager's end of that playback) leave the channel on
/// the last value whatever order their sends take. Locks are taken in one order only, the
/// channel's before this one (a watcher holding a [`watch::Ref`] may read the value here),
/// never this one's before the channel's.
pub(crate) struct Watched<T> {
    inner: Mutex<WatchedInner<T>>,
}

struct WatchedInner<T> {
    value: T,
    /// The channel of the watchers, once there has been one.
    sender: Option<watch::Sender<T>>,
}

impl<T: Clone + PartialEq> Watched<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: Mutex::new(WatchedInner {
                value,
                sender: None,
            }),
        }
    }

    /// The value now.
    pub(crate) fn get(&self) -> T {
        self.inner.lock().value.clone()
    }

    /// A receiver of the value and its changes (the value now counts as seen).
    pub(crate) fn subscribe(&self) -> watch::Receiver<T> {
        let mut inner = self.inner.lock();
        let WatchedInner { value, sender } = &mut *inner;
        sender
            .get_or_insert_with(|| watch::channel(value.clone()).0)
            .subscribe()
    }

    /// Sets the value, waking the watchers if it changed.
    pub(crate) fn set(&self, value: T) {
        self.update(|current| {
            let changed = *current != value;
            *current = value;
            changed
        });
    }

    /// Changes the value with `change`, which says whether it changed it; the watchers are
    /// woken if it did (and if there are any). Returns what `change` said.
    pub(crate) fn update(&self, change: impl FnOnce(&mut T) -> bool) -> bool {
        let sender = {
            let mut inner = self.inner.lock();
            if !change(&mut inner.value) {
                return false;
            }
            match &inner.sender {
                Some(sender) => sender.clone(),
                None => return true,
            }
        };
        sender.send_if_modified(|seen| {
            let now = self.get();
            if *seen == now {
                return false;
            }
            *seen = now;
            // A send wakes through several locks even when nobody listens: only when someone
            // does (a receiver made later reads the value anyway).
            sender.receiver_count() > 0
        });
        true
    }
}

/// The parts of a call's progress the handle can read.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallStatus {
    /// The last response to our INVITE (status, reason phrase).
    pub(crate) last_response: Option<(StatusCode, String)>,
    /// The peer holds the call.
    pub(crate) remote_hold: bool,
    /// We hold the call.
    pub(crate) local_hold: bool,
    /// The negotiated codec, once known.
    pub(crate) codec: Option<Arc<str>>,
    /// When the session was created and when it was answered.
    pub(crate) created: Option<Instant>,
    pub(crate) answered: Option<Instant>,
    /// When the call ended.
    pub(crate) ended: Option<Instant>,
    /// The figures it ended with, once every resource is released.
    pub(crate) final_stats: Option<CallStats>,
    /// When the transfer (if any) created a new call: its session.
    pub(crate) transferred_to: Option<SessionId>,
    /// Marks the call's RTP (DSCP), whoever holds its sockets (its media task, a bridge).
    pub(crate) marking: Option<session_media::endpoint::PacketMarking>,
    /// The call reached `Ringing` at some point (a watcher of the state may have seen only
    /// what followed).
    pub(crate) rang: bool,
}

/// A handle on one call.
#[derive(Clone)]
pub struct CallSession {
    pub(crate) shared: Arc<CallShared>,
    pub(crate) commands: CommandSender,
}

impl fmt::Debug for CallSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSession")
            .field("id", &self.shared.id)
            .field("call_id", &self.shared.call_id)
            .field("direction", &self.shared.direction)
            .field("state", &self.shared.state.get())
            .finish()
    }
}

/// Media statistics and timings of a call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallStats {
    /// From session creation to the answer.
    pub setup_time: Option<Duration>,
    /// From the answer until now (or the end).
    pub talk_time: Option<Duration>,
    /// The negotiated codec.
    pub codec: Option<Arc<str>>,
    /// RTP/RTCP statistics of the audio stream (none for a call without our media).
    pub rtp: Option<StreamStats>,
    /// What the receive jitter buffer made of the incoming audio: frames played, concealed
    /// (lost or late, replaced by a fading repetition), late, lost, duplicates, re-buffers
    /// (none for a call without our media).
    pub playout: Option<JitterStats>,
}

impl CallStats {
    /// The plain figures a call detail record needs, as [`SessionEvent::SessionTerminated`]
    /// carries them.
    ///
    /// [`SessionEvent::SessionTerminated`]: crate::SessionEvent::SessionTerminated
    pub fn summary(&self) -> CallSummary {
        let mut summary = CallSummary::default();
        summary.setup_time = self.setup_time;
        summary.talk_time = self.talk_time;
        summary.codec = self.codec.clone();
        if let Some(rtp) = &self.rtp {
            summary.packets_sent = rtp.packets_sent;
            summary.packets_received = rtp.packets_received;
            summary.packets_lost = rtp.packets_lost;
            summary.jitter_ms = rtp.jitter_ms;
            summary.rtt = rtp.rtt;
            summary.mos = rtp.mos;
        }
        summary
    }

    /// The timings of a call from its status at `now` (talk time runs to the end, or to `now`
    /// while the call lasts); the media figures are left for the media task to fill.
    pub(crate) fn timings(status: &CallStatus, now: Instant) -> Self {
        Self {
            setup_time: status
                .created
                .zip(status.answered)
                .map(|(created, answered)| answered.saturating_duration_since(created)),
            talk_time: status.answered.map(|answered| {
                status
                    .ended
                    .unwrap_or(now)
                    .saturating_duration_since(answered)
            }),
            codec: status.codec.clone(),
            rtp: None,
            playout: None,
        }
    }
}

impl CallSession {
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The SIP Call-ID.
    pub fn call_id(&self) -> &CallId {
        &self.shared.call_id
    }

    /// Who started the call.
    pub fn direction(&self) -> Direction {
        self.shared.direction
    }

    /// Our URI (From for outbound calls, To for inbound).
    pub fn local_uri(&self) -> &str {
        &self.shared.local_uri
    }

    /// The peer's URI.
    pub fn remote_uri(&self) -> &str {
        &self.shared.remote_uri
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.shared.state.get()
    }

    /// The last response to our INVITE: 100/180/183 while it rings, the final one after.
    pub fn last_response(&self) -> Option<(StatusCode, String)> {
        self.shared.status.lock().last_response.clone()
    }

    /// The codec negotiated for our media (`PCMU`, `PCMA`), once an offer/answer completed —
    /// also before the answer, when a 183 brought early media.
    pub fn codec(&self) -> Option<Arc<str>> {
        self.shared.status.lock().codec.clone()
    }

    /// Whether the peer has put the call on hold.
    pub fn is_remote_hold(&self) -> bool {
        self.shared.status.lock().remote_hold
    }

    /// The session a transfer of this call created, once the transfer started.
    pub fn transferred_to(&self) -> Option<SessionId> {
        self.shared.status.lock().transferred_to
    }

    /// A receiver of this call's states, for `select!` loops.
    pub fn watch_state(&self) -> watch::Receiver<CallState> {
        self.shared.state.subscribe()
    }

    /// Waits until `done` holds for the state (checked at once, then at every change) and
    /// returns that state; a final state also ends the wait.
    pub async fn wait_for(&self, done: impl Fn(CallState) -> bool) -> CallState {
        let mut states = self.shared.state.subscribe();
        let result = states
            .wait_for(|state| done(*state) || state.is_final())
            .await
            .map(|state| *state);
        // The sender lives in `shared`, which `self` keeps alive: the wait cannot fail.
        result.unwrap_or(CallState::Terminated)
    }

    /// Waits for the answer: `Ok` once the call is established, or the reason it never was
    /// (with the SIP status of a rejection).
    pub async fn answered(&self) -> Result<()> {
        let state = self.wait_for(CallState::is_established).await;
        if state.is_established() {
            return Ok(());
        }
        let last = self.last_response();
        Err(SessionError::from_final_state(
            state,
            last.as_ref().map(|(s, r)| (*s, r.as_str())),
        ))
    }

    /// Waits until the call is over and returns its final state.
    pub async fn ended(&self) -> CallState {
        self.wait_for(CallState::is_final).await
    }

    async fn run(&self, operation: Operation) -> Result<()> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Operate {
                session: self.shared.id,
                operation,
                reply,
            })
            .await
            .map_err(|_| SessionError::Shutdown)?;
        outcome.await.map_err(|_| SessionError::Shutdown)?
    }

    /// Answers a deferred incoming call with the manager's media.
    pub async fn accept(&self) -> Result<()> {
        self.accept_with(AcceptOptions::default()).await
    }

    /// Answers a deferred incoming call.
    pub async fn accept_with(&self, options: AcceptOptions) -> Result<()> {
        self.run(Operation::Accept(options)).await
    }

    /// Joins `bridge` (see [`SessionManager::create_bridge`](crate::SessionManager::create_bridge)):
    /// from now on this call's audio goes to the bridge's other members and theirs comes here.
    /// Its own source and sink are detached (attach them again after
    /// [`CallSession::leave_bridge`] if the call should play or record on its own again). A
    /// call already in a bridge moves without a gap. The call needs media of ours that has been
    /// negotiated (answered, or early media).
    pub async fn join_bridge(&self, bridge: session_bridge::BridgeId) -> Result<()> {
        self.join_bridge_with(bridge, JoinSettings::default()).await
    }

    /// [`CallSession::join_bridge`] with settings in force from the call's first packet in
    /// the bridge: a supervisor joins as a monitor ([`JoinSettings::monitor`]) or whispering
    /// to one agent ([`JoinSettings::whisper_to`]) without being heard by anyone for an
    /// instant. For a call already in a bridge, the move keeps its settings and `settings`'
    /// mute and deaf are applied after it.
    pub async fn join_bridge_with(
        &self,
        bridge: session_bridge::BridgeId,
        settings: JoinSettings,
    ) -> Result<()> {
        self.run(Operation::Bridge(Some((bridge, Box::new(settings)))))
            .await
    }

    /// Leaves its bridge: the call's own media goes on, on the same RTP stream.
    pub async fn leave_bridge(&self) -> Result<()> {
        self.run(Operation::Bridge(None)).await
    }

    /// Sends 180 Ringing for a deferred incoming call (again, if need be).
    pub async fn ring(&self) -> Result<()> {
        self.run(Operation::Ring).await
    }

    /// Sends 183 Session Progress with our SDP answer for a deferred incoming call and starts
    /// its media before the answer: audio attached now reaches the caller (early media). The
    /// 200 of [`CallSession::accept`] repeats the same answer. An INVITE without an offer gets
    /// a 180 instead.
    pub async fn early_media(&self) -> Result<()> {
        self.run(Operation::EarlyMedia).await
    }

    /// Refuses a deferred incoming call with `status` (4xx–6xx).
    pub async fn reject(&self, status: StatusCode) -> Result<()> {
        self.run(Operation::Reject(status)).await
    }

    /// Cancels our unanswered call (CANCEL, §9.1). If the answer wins the race the call is
    /// ended with BYE; either way it ends.
    pub async fn cancel(&self) -> Result<()> {
        self.run(Operation::Cancel).await
    }

    /// Ends the call: BYE once answered, CANCEL for our unanswered call, 480 for a deferred
    /// incoming call.
    pub async fn hangup(&self) -> Result<()> {
        self.run(Operation::Hangup).await
    }

    /// Puts the call on hold by re-INVITE with `a=sendonly` (RFC 3264 §8.4).
    pub async fn hold(&self) -> Result<()> {
        self.run(Operation::Hold(true)).await
    }

    /// Takes the call off hold by re-INVITE with `a=sendrecv`.
    pub async fn resume(&self) -> Result<()> {
        self.run(Operation::Hold(false)).await
    }

    /// Sends a new offer by re-INVITE (e.g. to refresh media after a change).
    pub async fn reinvite(&self) -> Result<()> {
        self.run(Operation::Reoffer { update: false }).await
    }

    /// Sends a new offer by UPDATE (RFC 3311).
    pub async fn update(&self) -> Result<()> {
        self.run(Operation::Reoffer { update: true }).await
    }

    /// Sends DTMF digits, one after the other.
    pub async fn send_dtmf(&self, digits: &str, method: DtmfMethod) -> Result<()> {
        for digit in digits.chars() {
            if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d') {
                return Err(SessionError::InvalidInput {
                    what: "DTMF digit",
                    value: digit.to_string(),
                });
            }
            self.run(Operation::Dtmf {
                digit: digit.to_ascii_uppercase(),
                method,
            })
            .await?;
        }
        Ok(())
    }

    /// Sends INFO with this body inside the call; `Ok` on a 2xx.
    pub async fn send_info(&self, content_type: &str, body: impl Into<Bytes>) -> Result<()> {
        self.run(Operation::Request {
            method: session_sip::Method::Info,
            content_type: content_type.to_owned(),
            body: body.into(),
        })
        .await
    }

    /// Sends a MESSAGE (`text/plain`) inside the call; `Ok` on a 2xx.
    pub async fn send_message(&self, text: &str) -> Result<()> {
        self.run(Operation::Request {
            method: session_sip::Method::Message,
            content_type: "text/plain".to_owned(),
            body: Bytes::copy_from_slice(text.as_bytes()),
        })
        .await
    }

    /// Blind transfer (RFC 3515): REFER to `target`, then follow the peer's NOTIFY reports.
    /// `Ok` once the peer reached the target; the call is then ended with BYE. On failure the
    /// call stays up and the error carries the target's status.
    pub async fn transfer(&self, target: &str) -> Result<()> {
        let target = Uri::parse(target).map_err(|_| SessionError::InvalidInput {
            what: "transfer target",
            value: target.to_owned(),
        })?;
        self.run(Operation::Transfer(target)).await
    }

    /// Attended transfer (RFC 5589 §7): REFER this call's peer to the peer of `consultation`,
    /// our other established call, with `Refer-To: <target?Replaces=…>` (RFC 3891) so that the
    /// target drops its call with us for the new one. `Ok` once the peer reports that the target
    /// answered; this call then ends with BYE, and the target ends `consultation` itself. On
    /// failure both calls stay up and the error carries the target's status.
    pub async fn transfer_attended(&self, consultation: &CallSession) -> Result<()> {
        self.run(Operation::TransferReplacing(consultation.id()))
            .await
    }

    /// How urgent the call is: from its `Resource-Priority` (incoming), [`CallOptions::priority`]
    /// (outgoing), or [`CallSession::set_priority`].
    ///
    /// [`CallOptions::priority`]: crate::CallOptions::priority
    pub fn priority(&self) -> Priority {
        self.shared.priority()
    }

    /// Changes how urgent the call is — a handler that knows better than the caller's
    /// `Resource-Priority` (a known emergency line; it may call this from
    /// `on_incoming_call`), or an escalation: its RTP is marked for the new priority from the
    /// next packet, and its SIP from the next message ([`crate::DscpPolicy`]). Admission is
    /// not revisited (the call is already admitted).
    pub fn set_priority(&self, priority: Priority) -> Result<()> {
        self.shared.set_priority(priority);
        if self.shared.dscp.marks_sip_by_priority() {
            // Without waiting (this may run inside a handler): the manager re-marks the
            // dialog when it takes the command. Should its queue be full, every message the
            // manager sends for the call sets the mark anew anyway, and only what the dialog
            // layer sends on its own (a 200 to the peer's BYE) may keep the old one.
            let (reply, _) = oneshot::channel();
            let _ = self.commands.try_send(Command::Operate {
                session: self.shared.id,
                operation: Operation::RemarkSip,
                reply,
            });
        }
        Ok(self.shared.mark_media()?)
    }

    /// Whether the call has been ringing (a provisional response sent or received) at some
    /// point, even if a watcher of its state only saw what came after.
    pub fn has_rung(&self) -> bool {
        self.shared.status.lock().rang
    }

    /// The DiffServ code point the call's RTP sockets mark packets with now, as the system
    /// reports it (`None` without RTP sockets of ours: signaling only, or ended).
    pub fn rtp_dscp(&self) -> Option<u8> {
        let marking = self.shared.status.lock().marking.clone()?;
        marking.dscp()
    }

    /// As transferee of a REFER the handler deferred ([`crate::TransferDecision::Defer`]):
    /// tells the transferor how it ended in the final NOTIFY (RFC 3515 §2.4.5) — a 2xx
    /// when the transfer succeeded (the transferor then ends this call), the failure's status
    /// otherwise (the call goes back to active or held). An error when no deferred transfer
    /// is pending on this call.
    pub async fn finish_transfer(&self, status: StatusCode) -> Result<()> {
        self.run(Operation::FinishTransfer(status)).await
    }

    /// Plays audio from `source` into the call (20 ms frames, paced by the media task),
    /// replacing the source playing, if any. When it ends the stream goes on with silence (a
    /// peer that times out on missing RTP keeps the call), [`SessionEvent::PlaybackFinished`]
    /// is published and [`CallSession::playback_finished`] returns. A source belongs to this
    /// call: a transfer that replaces the call does not carry it over (attach again to the
    /// new session).
    ///
    /// [`SessionEvent::PlaybackFinished`]: crate::SessionEvent::PlaybackFinished
    pub async fn attach_source(&self, source: BoxedSource) -> Result<()> {
        let playback = self.shared.playbacks.fetch_add(1, Ordering::Relaxed) + 1;
        // Marked before the media task can finish it, however short the source.
        self.shared.playback.set(Some(playback));
        let result = self.run(Operation::AttachSource(playback, source)).await;
        if result.is_err() {
            self.shared.playback_finished(playback);
        }
        result
    }

    /// Stops the source playing, if any (silence follows; `PlaybackFinished` with
    /// [`PlaybackEnd::Stopped`]).
    ///
    /// [`PlaybackEnd::Stopped`]: crate::PlaybackEnd::Stopped
    pub async fn detach_source(&self) -> Result<()> {
        self.run(Operation::DetachSource).await
    }

    /// Waits until no source plays into the call: the last one attached ended, was detached,
    /// or the call ended. Returns at once when nothing plays. For "play the prompt, then …".
    pub async fn playback_finished(&self) {
        let mut playback = self.shared.playback.subscribe();
        let mut states = self.shared.state.subscribe();
        loop {
            if playback.borrow_and_update().is_none() || states.borrow_and_update().is_final() {
                return;
            }
            tokio::select! {
                changed = playback.changed() => if changed.is_err() { return },
                changed = states.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Hands every received audio frame to `sink`.
    pub async fn attach_sink(&self, sink: BoxedSink) -> Result<()> {
        self.run(Operation::AttachSink(sink)).await
    }

    /// The next digit the peer sent (RFC 4733 or SIP INFO), in order, waiting for one if none
    /// is unread; `None` once the call has ended and every digit was read. Digits arrive here
    /// whether or not the handler's `on_dtmf` looked at them (up to 64 unread are kept).
    pub async fn next_dtmf(&self) -> Option<char> {
        let mut states = self.shared.state.subscribe();
        loop {
            // Registered before the queue is read, so a digit pushed in between still wakes us.
            let arrived = self.shared.digit_arrived.notified();
            if let Some(digit) = self.shared.digits.lock().pop_front() {
                return Some(digit);
            }
            if states.borrow_and_update().is_final() {
                return None;
            }
            tokio::select! {
                () = arrived => {}
                changed = states.changed() => {
                    // The sender lives in `shared`, which `self` keeps alive.
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// A subscription to this call's events on the manager's bus (state changes, media, digits,
    /// the end with its summary): what an async engine awaits instead of keeping a map.
    pub fn events(&self) -> Subscription {
        self.shared.bus.subscribe(Filter::session(self.shared.id))
    }

    /// Setup time, talk time, codec and RTP statistics: live while the call runs, the final
    /// figures once it ended (they stay readable as long as a handle does).
    pub async fn stats(&self) -> Result<CallStats> {
        if let Some(stats) = self.final_stats() {
            return Ok(stats);
        }
        let (reply, stats) = oneshot::channel();
        let asked = self.run(Operation::Stats(reply)).await;
        // The call may have ended meanwhile: its final figures are then the answer.
        match (asked, self.final_stats()) {
            (_, Some(stats)) => Ok(stats),
            (Err(error), None) => Err(error),
            (Ok(()), None) => stats.await.map_err(|_| SessionError::NoSuchSession),
        }
    }

    /// Waits until the call has ended *and* released everything it held — its RTP ports back
    /// in the pool, its leg out of any bridge, its admission slot free — which comes just after
    /// [`CallSession::ended`]; [`CallSession::final_stats`] is `Some` from then on.
    pub async fn released(&self) {
        let mut released = self.shared.released.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: the wait cannot fail.
        let _ = released.wait_for(|done| *done).await.map(|done| *done);
    }

    /// The figures the call ended with: `None` until it has ended and released everything
    /// (always `Some` in [`CallHandler::on_call_ended`](crate::CallHandler::on_call_ended) and
    /// after [`SessionEvent::SessionTerminated`](crate::SessionEvent::SessionTerminated)).
    pub fn final_stats(&self) -> Option<CallStats> {
        self.shared.status.lock().final_stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::Watched;
    use std::sync::Arc;

    #[test]
    fn a_watched_value_changes_without_a_channel_until_someone_subscribes() {
        let value = Watched::new(1u32);
        value.set(2);
        assert!(!value.update(|_| false), "a change that changes nothing");
        assert_eq!(value.get(), 2);
        assert!(value.inner.lock().sender.is_none(), "no channel made yet");
        // A subscriber starts from the value now, seen.
        let mut receiver = value.subscribe();
        assert_eq!(*receiver.borrow_and_update(), 2);
        assert!(!receiver.has_changed().unwrap());
        value.set(3);
        assert!(receiver.has_changed().unwrap());
        assert_eq!(*receiver.borrow_and_update(), 3);
        // Setting the same value again wakes nobody.
        value.set(3);
        assert!(!receiver.has_changed().unwrap());
        // A later subscriber shares the channel and reads the value now.
        assert_eq!(*value.subscribe().borrow(), 3);
    }

    #[test]
    fn a_watcher_holding_the_value_may_read_it_from_the_cell() {
        let value = Watched::new(Some(1u64));
        let receiver = value.subscribe();
        let seen = receiver.borrow();
        // The cell's lock is never held while the channel's is awaited: no deadlock here.
        assert_eq!(value.get(), Some(1));
        drop(seen);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_leave_the_channel_on_the_last_value() {
        let value = Arc::new(Watched::new(0u64));
        let mut receiver = value.subscribe();
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                let value = Arc::clone(&value);
                std::thread::spawn(move || {
                    for n in 0..500 {
                        value.set(writer * 1000 + n);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        value.set(u64::MAX);
        receiver.wait_for(|seen| *seen == u64::MAX).await.unwrap();
        assert_eq!(*receiver.borrow(), value.get());
    }
}
