//! The manager's task: the one place that owns every call's state.
//!
//! It owns the SIP user agent too: session-dialog's driver is embedded here
//! ([`SipDriver::embed`](session_dialog::driver::SipDriver::embed)), so a datagram is read,
//! handed to the user agent, and its events handled by this task, and what the task answers
//! is sent from it, with no hand-off to another task in between. Its inputs are the driver's
//! ([`DriverInputs::next_input`]: the SIP sockets, the TCP/TLS connection tasks, jobs of
//! [`SipHandle`]s held elsewhere), commands from [`crate::SessionManager`] and
//! [`crate::CallSession`] handles, and events of the media tasks and bridges — plus one
//! deadline: the earliest of the user agent's timers and the manager's timer heap.
//! Everything a call holds (admission permit, RTP ports, dialog, timers) is released in one
//! function, [`Core::end_call`], which every ending path goes through.
//!
//! The submodules split the work by direction: `inbound` (INVITEs we answer), `outbound`
//! (INVITEs we send), `in_dialog` (requests and operations inside an established call).

mod bridging;
mod in_dialog;
mod inbound;
mod outbound;

pub(crate) use inbound::SUPPORTED_TAGS;

use crate::call::{CallSession, CallShared, CallStats, CallStatus, Watched};
use crate::config::{ManagerConfig, MediaMode};
use crate::error::{Result, SessionError};
use crate::groups::{IdMap, IdSet};
use crate::handler::{AcceptOptions, CallHandler, DtmfMethod};
use crate::media::{BoxedSink, BoxedSource, MediaEvent, MediaHandle};
use crate::session_timer::SessionTimer;
use bytes::Bytes;
use session_dialog::driver::{DriverInputs, DriverState, SipHandle, WakeGate};
use session_dialog::endpoint::{EndpointError, Protocol};
use session_dialog::map::SeededState;
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{DialogEnd, UaEvent, UserAgent};
use session_events::{EventBus, SessionEvent, TerminationReason};
use session_media::endpoint::{EndpointConfig, RtcpPort, RtpEndpoint};
use session_media::sdp::negotiate::OfferAnswer;
use session_resources::{AdmissionController, AdmissionPermit, PortPool};
use session_sip::{Method, Uri};
use session_tracer::{DtmfMethod as TracedDtmf, Flow, SessionTracer, SipSummary, TraceEntry};
use session_types::{CallId, CallState, DialogId, Direction, SessionId, StatusCode, StuckOn};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Where commands to the manager's task go (bounded: a handle waits for room).
pub(crate) type CommandSender = mpsc::Sender<Command>;

/// Room in the queue of commands from handles to the manager's task.
pub(crate) const COMMAND_QUEUE: usize = 1024;

/// Room in the queue of events from the calls' media tasks to the manager's task. A media
/// task that finds it full holds its events (see `media.rs`).
pub(crate) const MEDIA_EVENT_QUEUE: usize = 1024;

/// How many SIP inputs in a row the manager's task handles before its other sources (commands,
/// media and bridge events, timers) are polled first once: a flood of datagrams, always
/// ready, would otherwise hold them off for as long as it lasts.
const SIP_STREAK: u32 = 64;

/// How many codec names the manager keeps to share between calls (`Core::codec_name`): more
/// than the codecs it can negotiate.
const CODEC_NAMES_KEPT: usize = 16;

/// What the manager's task handles next (what its `select!` picked).
enum Next {
    Sip(session_dialog::driver::DriverInput),
    Command(Option<Command>),
    Stop,
    Media(SessionId, MediaEvent),
    Bridge(session_bridge::BridgeEvent),
    Timer,
}

/// A reply to an operation.
pub(crate) type Reply = oneshot::Sender<Result<()>>;

/// What handles ask of the manager's task.
pub(crate) enum Command {
    /// Start an outbound call.
    Call {
        call: Box<OutgoingCall>,
        reply: oneshot::Sender<Result<CallSession>>,
    },
    /// Act on one call.
    Operate {
        session: SessionId,
        operation: Operation,
        reply: Reply,
    },
    /// Destroy a bridge; its members get their own media back.
    DestroyBridge {
        bridge: session_bridge::BridgeId,
        reply: Reply,
    },
    /// A handle on a live session.
    Session {
        session: SessionId,
        reply: oneshot::Sender<Option<CallSession>>,
    },
    /// End every call, release everything and stop.
    Shutdown { reply: oneshot::Sender<()> },
    /// Take no new call, let those in progress finish (ending them after `grace`), then stop
    /// as `Shutdown` does. New INVITEs are already refused by the SIP layer when this comes.
    Drain {
        grace: std::time::Duration,
        reply: oneshot::Sender<crate::DrainReport>,
    },
    /// Start or end a registration (`registration.rs`).
    Registration(crate::registration::RegistrationCommand),
}

/// An outbound call, resolved and ready to send.
pub(crate) struct OutgoingCall {
    pub(crate) from: Uri,
    pub(crate) from_display: Option<String>,
    pub(crate) to: Uri,
    pub(crate) destination: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) headers: Vec<session_sip::Header>,
    pub(crate) sdp: Option<Bytes>,
    /// The call this one continues (a transfer), for correlation.
    pub(crate) transfer_of: Option<SessionId>,
    /// The group the call is placed into: admitted under its limit, a member from the start.
    pub(crate) group: Option<session_types::GroupId>,
    /// How urgent it is (admission, RTP marking).
    pub(crate) priority: session_types::Priority,
    /// Whose credentials answer challenges to the call's requests; the manager's when `None`.
    pub(crate) account: Option<session_dialog::auth::Account>,
    /// The From tag, kept by a re-sent INVITE (§8.1.3.5); drawn when the INVITE first goes.
    pub(crate) from_tag: Option<String>,
    /// The INVITE was re-sent once after 422 already (RFC 4028 §7.4).
    pub(crate) interval_retried: bool,
}

/// Operations on one call.
pub(crate) enum Operation {
    Accept(AcceptOptions),
    /// The priority changed: mark the session's SIP for it.
    RemarkSip,
    Reject(StatusCode),
    Ring,
    EarlyMedia,
    /// Join this bridge (move, if in another), or leave the one it is in (`None`).
    /// Join a bridge with settings, or leave (`None`).
    Bridge(Option<(session_bridge::BridgeId, Box<session_bridge::JoinSettings>)>),
    Cancel,
    Hangup,
    Hold(bool),
    Reoffer {
        update: bool,
    },
    Dtmf {
        digit: char,
        method: DtmfMethod,
    },
    Request {
        method: Method,
        content_type: String,
        body: Bytes,
    },
    Transfer(Uri),
    /// Attended transfer: REFER to the peer of this other call, replacing it.
    TransferReplacing(SessionId),
    /// As transferee of a deferred REFER: the final NOTIFY with this status.
    FinishTransfer(StatusCode),
    AttachSource(u64, BoxedSource),
    DetachSource,
    AttachSink(BoxedSink),
    Stats(oneshot::Sender<CallStats>),
}

/// Why we sent a request, so that its response finds its way back.
pub(crate) enum TxPurpose {
    /// The call's initial INVITE.
    Invite,
    /// A re-INVITE or UPDATE carrying a new offer (hold, resume, re-offer, session refresh).
    Reoffer {
        hold: Option<bool>,
        reply: Option<Reply>,
    },
    /// A session refresh without a new offer (UPDATE).
    Refresh,
    /// INFO, MESSAGE: the reply waits for the final response.
    Request(Option<Reply>),
    /// Our REFER.
    Refer(Reply),
    /// A NOTIFY we sent as transferee.
    Notify,
}

impl TxPurpose {
    /// The request failed before a final response: whoever waits for it gets `error`.
    pub(crate) fn fail(self, error: SessionError) {
        let reply = match self {
            TxPurpose::Reoffer { reply, .. } | TxPurpose::Request(reply) => reply,
            TxPurpose::Refer(reply) => Some(reply),
            TxPurpose::Invite | TxPurpose::Refresh | TxPurpose::Notify => None,
        };
        if let Some(reply) = reply {
            let _ = reply.send(Err(error));
        }
    }
}

/// A request of ours in flight.
pub(crate) struct TxOwner {
    pub(crate) session: SessionId,
    pub(crate) purpose: TxPurpose,
}

/// Timers of the manager's heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// RFC 4028: we are the refresher; refresh now.
    SessionRefresh,
    /// RFC 4028: no refresh came; end the session.
    SessionExpiry,
    /// Our REFER got no final NOTIFY in time.
    TransferTimeout,
    /// §14.1: retry our re-INVITE after a 491.
    GlareRetry,
    /// The stuck-session limit for the INVITE's final response.
    AnswerDeadline,
    /// The stuck-session limit for the ACK of our 2xx.
    AckDeadline,
}

/// The manager's view of one call.
pub(crate) struct Call {
    pub(crate) shared: Arc<CallShared>,
    pub(crate) state: CallState,
    pub(crate) dialog: Option<DialogId>,
    /// Inbound: the INVITE's server transaction until answered. Outbound: the INVITE's client
    /// transaction until its final response.
    pub(crate) invite_tx: Option<TransactionId>,
    /// Inbound: the INVITE's offer (its body, when it has one), kept until it is answered.
    /// (Nothing else of the INVITE is needed after the handler saw it: what it asks of the
    /// session timer is in `uas_timer`.)
    pub(crate) offer: Option<Bytes>,
    /// Outbound: what the INVITE was, for a retry after 422.
    pub(crate) outgoing: Option<Box<OutgoingCall>>,
    pub(crate) cseq: u32,
    pub(crate) permit: Option<AdmissionPermit>,
    pub(crate) media: Option<MediaHandle>,
    /// SDP state; `None` when the application brought its own SDP.
    pub(crate) offer_answer: Option<Box<OfferAnswer>>,
    /// Our RTP port as written in SDP (9, the discard port, for signaling-only calls).
    pub(crate) media_port: u16,
    /// We asked to cancel (or hang up) before the answer.
    pub(crate) cancelling: bool,
    /// The manager is shutting down: the ending reason is `Shutdown`.
    pub(crate) shutting_down: bool,
    pub(crate) session_timer: Option<SessionTimer>,
    /// Bumped whenever the session timer is rescheduled; older heap entries are stale.
    pub(crate) timer_generation: u32,
    /// Our REFER's outcome waits here for the final NOTIFY.
    pub(crate) transfer_reply: Option<Reply>,
    /// As transferee: the subscription's NOTIFYs go into this call for the new one's progress.
    pub(crate) notify_to: Option<SessionId>,
    /// A re-INVITE to retry after 491.
    pub(crate) glare_retry: Option<(Option<bool>, Option<Reply>)>,
    /// The peer allows UPDATE (for session refreshes).
    pub(crate) peer_allows_update: bool,
    /// Inbound: the SDP answer already sent in a 183 (early media); the 200 repeats it
    /// (RFC 3261 §13.2.1: without 100rel the answer of a 1xx is not final, and the 2xx must
    /// carry the same one).
    pub(crate) early_answer: Option<Bytes>,
    /// The bridge that owns this call's media leg (its media task is stopped meanwhile).
    pub(crate) bridged: Option<session_bridge::BridgeId>,
    /// Why we are ending the call, when it is not a plain hang-up (e.g. the media timeout):
    /// the reason its end is reported with once the BYE completes.
    pub(crate) end_reason: Option<TerminationReason>,
    /// Inbound: the call this one replaces (RFC 3891), ended once this one is up.
    pub(crate) replaces: Option<SessionId>,
    /// As transferee: the handler took a REFER over ([`TransferDecision::Defer`]); its final
    /// NOTIFY waits for [`CallSession::finish_transfer`].
    ///
    /// [`TransferDecision::Defer`]: crate::TransferDecision::Defer
    /// [`CallSession::finish_transfer`]: crate::CallSession::finish_transfer
    pub(crate) deferred_transfer: bool,
    /// Inbound: the session timer the INVITE's answer is to carry (RFC 4028 §9), decided as
    /// the INVITE arrived.
    pub(crate) uas_timer: crate::session_timer::UasDecision,
}

impl Call {
    fn new(shared: Arc<CallShared>, permit: Option<AdmissionPermit>) -> Self {
        Self {
            state: CallState::Initiating,
            shared,
            dialog: None,
            invite_tx: None,
            offer: None,
            outgoing: None,
            cseq: 1,
            permit,
            media: None,
            offer_answer: None,
            media_port: 9,
            cancelling: false,
            shutting_down: false,
            session_timer: None,
            timer_generation: 0,
            transfer_reply: None,
            notify_to: None,
            glare_retry: None,
            peer_allows_update: false,
            early_answer: None,
            bridged: None,
            replaces: None,
            deferred_transfer: false,
            end_reason: None,
            uas_timer: crate::session_timer::UasDecision::None,
        }
    }
}

/// Counters the manager reads without asking the task.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) calls: AtomicUsize,
    /// Set (once, for good) by `SessionManager::drain`: new calls are refused.
    pub(crate) draining: std::sync::atomic::AtomicBool,
}

/// A drain in progress (`SessionManager::drain`).
pub(crate) struct Drain {
    /// When the calls still up are ended; `None` for a grace beyond the clock's range.
    deadline: Option<Instant>,
    /// Who waits for the report (a second `drain` joins the first).
    replies: Vec<oneshot::Sender<crate::DrainReport>>,
}

/// What the core task is built from.
pub(crate) struct CoreParts {
    pub(crate) config: ManagerConfig,
    pub(crate) sip: SipHandle,
    /// The driver's inputs and state, run by the manager's task.
    pub(crate) inputs: DriverInputs,
    pub(crate) driver: DriverState,
    pub(crate) handler: Arc<dyn CallHandler>,
    pub(crate) bus: EventBus,
    pub(crate) admission: AdmissionController,
    pub(crate) ports: PortPool,
    pub(crate) commands: CommandSender,
    pub(crate) inbox: mpsc::Receiver<Command>,
    /// Cancelled when the last manager handle is dropped without `shutdown`.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) metrics: crate::metrics::CallMetrics,
    pub(crate) local_ip: IpAddr,
    pub(crate) our_uri: Uri,
    pub(crate) tracer: Option<SessionTracer>,
    pub(crate) bridges: session_bridge::BridgeDriver,
    pub(crate) bridge_events: mpsc::Receiver<session_bridge::BridgeEvent>,
    pub(crate) groups: Arc<crate::groups::Groups>,
    pub(crate) dependencies: Arc<crate::dependencies::Dependencies>,
    /// Digest authentication of requests and the registrar (each opt-in).
    pub(crate) server_side: crate::registrar::ServerSide,
}

/// The manager's task state.
pub(crate) struct Core {
    pub(crate) config: ManagerConfig,
    /// `config.media`, shared by every call's offer/answer state rather than copied per call.
    pub(crate) media_config: Arc<session_media::sdp::negotiate::MediaConfig>,
    /// For [`SipHandle::refuse_new_calls`]. Never `with` from this task: its jobs are this
    /// task's inputs, so it would wait for itself (use [`Core::ua`]).
    pub(crate) sip: SipHandle,
    /// The user agent and what sends for it. Only this task locks it, never across an
    /// `.await`: the lock is uncontended, and it keeps `Core` `Sync` for `&self` methods.
    pub(crate) driver: parking_lot::Mutex<DriverState>,
    pub(crate) handler: Arc<dyn CallHandler>,
    pub(crate) bus: EventBus,
    pub(crate) admission: AdmissionController,
    pub(crate) ports: PortPool,
    pub(crate) commands: CommandSender,
    pub(crate) gauges: Arc<Gauges>,
    /// Per-call metrics, recorded as sessions are created and end.
    pub(crate) metrics: crate::metrics::CallMetrics,
    pub(crate) local_ip: IpAddr,
    pub(crate) our_uri: Uri,
    /// Boxed: a call is a few hundred bytes, and a map's spare capacity should not be.
    // Keyed by our own ids (session ids we draw, transaction ids the user agent counts out),
    // never by network text, so the cheap id hasher serves (see `IdHasher`).
    pub(crate) calls: IdMap<SessionId, Box<Call>>,
    pub(crate) by_tx: IdMap<TransactionId, TxOwner>,
    /// Keyed by what the network sent (Call-ID and tags): a keyed hasher, cheaper than SipHash,
    /// its keys derived from the manager's seeded generator (`rng`).
    pub(crate) by_dialog: HashMap<DialogId, SessionId, SeededState>,
    pub(crate) timers: BinaryHeap<Reverse<(Instant, SessionId, TimerKind, u32)>>,
    pub(crate) media_events: mpsc::Sender<(SessionId, MediaEvent)>,
    /// Transfer progress to report by NOTIFY (transferee), sent after the current event.
    pub(crate) pending_notifies: Vec<(SessionId, StatusCode)>,
    /// Calls up that replace another (new, old), done after the current event.
    pub(crate) pending_replacements: Vec<(SessionId, SessionId)>,
    /// Calls ended while handling the last event, their last events still to publish.
    pub(crate) endings: Vec<(Box<Call>, TerminationReason)>,
    pub(crate) tracer: Option<SessionTracer>,
    /// BYE and CANCEL requests sent, until their final response (or timeout).
    pub(crate) ending_requests: IdSet<TransactionId>,
    /// Every bridge of this manager, and the legs of the calls in them.
    pub(crate) bridges: session_bridge::BridgeDriver,
    /// The manager's own random draws (Call-IDs, session ids), seeded next to the SIP layer's.
    pub(crate) rng: fastrand::Rng,
    /// The manager's session groups (shared with its handles).
    pub(crate) groups: Arc<crate::groups::Groups>,
    /// Which session depends on which (shared with its handles).
    pub(crate) dependencies: Arc<crate::dependencies::Dependencies>,
    /// Calls to end after the current input: dependents whose link cascades from a session
    /// that ended, and calls whose peer vanished (with the reason to end them for).
    pub(crate) pending_ends: Vec<(SessionId, Option<TerminationReason>)>,
    /// The wall clock (Unix ms) at an instant of the manager's clock: session ids are stamped
    /// with the wall time that clock has reached (UUID v7), read once.
    pub(crate) wall_epoch: (u64, Instant),
    /// How packets are marked (shared with every call, for its RTP).
    pub(crate) dscp: Arc<crate::config::DscpPolicy>,
    /// Digest authentication of requests and the registrar (each opt-in; `registrar.rs`).
    pub(crate) server_side: crate::registrar::ServerSide,
    /// Our registrations at registrars (the REGISTER client, `registration.rs`).
    pub(crate) registrations: crate::registration::Registrations,
    /// The drain in progress, if any.
    pub(crate) drain: Option<Drain>,
    /// The `Allow` and `Supported` headers of our 2xx to an INVITE, made once: each answer
    /// shares their text.
    pub(crate) answer_headers: [session_sip::Header; 2],
    /// What the SIP layer was last told of the admission state (`report_health`).
    pub(crate) reported_health: Option<Health>,
    /// The codec names calls have negotiated, each made once (`codec_name`).
    pub(crate) codec_names: parking_lot::Mutex<Vec<Arc<str>>>,
    /// Calls that ended by themselves since `SessionManager::drain` was called (its flag).
    pub(crate) finished_while_draining: usize,
}

impl Core {
    /// Runs the task until shutdown.
    pub(crate) async fn run(parts: CoreParts) {
        let CoreParts {
            config,
            sip,
            mut inputs,
            driver,
            handler,
            bus,
            admission,
            ports,
            commands,
            mut inbox,
            gauges,
            metrics,
            local_ip,
            our_uri,
            tracer,
            bridges,
            mut bridge_events,
            groups,
            dependencies,
            stop,
            server_side,
        } = parts;
        let (media_events, mut media_inbox) = mpsc::channel(MEDIA_EVENT_QUEUE);
        let reserve = config.reserve_calls;
        // Not the SIP layer's own sequence (that one is seeded with the seed itself).
        let rng = fastrand::Rng::with_seed(config.rng_seed.unwrap_or_default().wrapping_add(1));
        let dscp = Arc::new(config.dscp.clone());
        let media_config = Arc::new(config.media.clone());
        let mut core = Core {
            dscp,
            media_config,
            config,
            sip,
            driver: parking_lot::Mutex::new(driver),
            handler,
            bus,
            admission,
            ports,
            commands,
            gauges,
            metrics,
            local_ip,
            our_uri,
            calls: IdMap::with_capacity_and_hasher(reserve, Default::default()),
            by_tx: IdMap::with_capacity_and_hasher(reserve, Default::default()),
            by_dialog: HashMap::with_capacity_and_hasher(reserve, SeededState::derived_from(&rng)),
            timers: BinaryHeap::new(),
            media_events,
            pending_notifies: Vec::new(),
            pending_replacements: Vec::new(),
            endings: Vec::new(),
            tracer,
            ending_requests: IdSet::default(),
            rng,
            bridges,
            groups,
            dependencies,
            pending_ends: Vec::new(),
            server_side,
            registrations: crate::registration::Registrations::default(),
            drain: None,
            answer_headers: [
                session_sip::Header::new(session_sip::HeaderName::Allow, inbound::ALLOW),
                session_sip::Header::new(session_sip::HeaderName::Supported, inbound::SUPPORTED),
            ],
            finished_while_draining: 0,
            reported_health: None,
            codec_names: parking_lot::Mutex::new(Vec::new()),
            wall_epoch: (
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                now(),
            ),
        };
        // Armed (`reset`) before it is first polled.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        // The queues next to the SIP inputs are polled only once they woke the task (most
        // wake-ups are for the SIP inputs, polled first).
        let mut inbox_gate = WakeGate::new();
        let mut media_gate = WakeGate::new();
        let mut bridge_gate = WakeGate::new();
        // The stop signal too, and its future made once: made anew each round, it would be
        // registered with the token and taken off it again every time.
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        let mut stop_gate = WakeGate::new();
        // SIP inputs handled in a row since another source had its turn.
        let mut sip_streak = 0;
        loop {
            // What the user agent produced (for an input, a timer, or our own requests and
            // answers) is handled first, one event per round like any other input.
            let event = core.driver.lock().poll_event();
            if let Some(event) = event {
                core.on_ua_event(event).await;
                core.after_input().await;
                if core.drained() {
                    core.stop(&mut inputs).await;
                    break;
                }
                continue;
            }
            let ua_deadline = core.driver.lock().poll_timeout();
            let deadline = core.timers.peek().map(|Reverse((at, ..))| *at);
            // The registrar's next sweep of expired bindings, if sooner.
            let deadline = deadline.into_iter().chain(core.next_sweep()).min();
            // Registrations' refreshes, retries and keep-alives (`registration.rs`).
            let deadline = deadline
                .into_iter()
                .chain(core.registrations.next_deadline())
                .min();
            // The end of a drain's grace.
            let deadline = deadline
                .into_iter()
                .chain(core.drain.as_ref().and_then(|drain| drain.deadline))
                .min();
            let wake = deadline.into_iter().chain(ua_deadline).min();
            // One sleep for the task's life, moved only when the deadline does (a new one per
            // round would be a timer-wheel insert and removal each time).
            if wake != armed {
                if let Some(at) = wake {
                    sleep.as_mut().reset(at.into());
                }
                armed = wake;
            }
            // The SIP inputs first: most wake-ups are theirs, and under overload reading them
            // is what sheds new calls early. But a flood keeps them ready without end, so
            // after a streak of them the others go first once (commands, media, timers: the
            // retransmissions and expiries of the calls already admitted).
            let next = if sip_streak >= SIP_STREAK {
                sip_streak = 0;
                tokio::select! {
                    biased;
                    command = std::future::poll_fn(|cx| inbox_gate.poll(cx, |cx| inbox.poll_recv(cx))) => Next::Command(command),
                    () = std::future::poll_fn(|cx| stop_gate.poll(cx, |cx| stopped.as_mut().poll(cx))) => Next::Stop,
                    Some((session, event)) = std::future::poll_fn(|cx| media_gate.poll(cx, |cx| media_inbox.poll_recv(cx))) => Next::Media(session, event),
                    Some(event) = std::future::poll_fn(|cx| bridge_gate.poll(cx, |cx| bridge_events.poll_recv(cx))) => Next::Bridge(event),
                    () = &mut sleep, if wake.is_some() => Next::Timer,
                    input = inputs.next_input() => Next::Sip(input),
                }
            } else {
                tokio::select! {
                    biased;
                    input = inputs.next_input() => Next::Sip(input),
                    command = std::future::poll_fn(|cx| inbox_gate.poll(cx, |cx| inbox.poll_recv(cx))) => Next::Command(command),
                    () = std::future::poll_fn(|cx| stop_gate.poll(cx, |cx| stopped.as_mut().poll(cx))) => Next::Stop,
                    Some((session, event)) = std::future::poll_fn(|cx| media_gate.poll(cx, |cx| media_inbox.poll_recv(cx))) => Next::Media(session, event),
                    Some(event) = std::future::poll_fn(|cx| bridge_gate.poll(cx, |cx| bridge_events.poll_recv(cx))) => Next::Bridge(event),
                    () = &mut sleep, if wake.is_some() => Next::Timer,
                }
            };
            match next {
                Next::Sip(input) => {
                    sip_streak += 1;
                    core.on_sip_input(input);
                }
                Next::Command(command) => {
                    sip_streak = 0;
                    match command {
                        Some(Command::Shutdown { reply }) => {
                            // A shutdown cuts a drain short: it reports what was left.
                            core.stop(&mut inputs).await;
                            let _ = reply.send(());
                            break;
                        }
                        Some(Command::Drain { grace, reply }) => core.start_drain(grace, reply),
                        Some(command) => core.on_command(command).await,
                        None => break,
                    }
                }
                Next::Stop => {
                    core.stop(&mut inputs).await;
                    break;
                }
                Next::Media(session, event) => {
                    sip_streak = 0;
                    core.on_media_event(session, event);
                }
                Next::Bridge(event) => {
                    sip_streak = 0;
                    core.on_bridge_event(event);
                }
                Next::Timer => {
                    sip_streak = 0;
                    let now = now();
                    if ua_deadline.is_some_and(|at| at <= now) {
                        core.on_sip_timeout(now);
                    }
                    if deadline.is_some_and(|at| at <= now) {
                        core.on_timers().await;
                    }
                }
            }
            core.after_input().await;
            if core.drained() {
                core.stop(&mut inputs).await;
                break;
            }
        }
        // Closed and emptied, not just dropped: a command whose sender took its place in the
        // queue before the queue closed but had not put it there yet (a thread preempted
        // between the two, as on a loaded machine) would be put there after a drop had
        // emptied it, and stay until the last `SessionManager` handle goes (tokio#7714) —
        // with its reply inside, so the caller waited forever: `SessionManager::drain`'s
        // `shutdown`, sent as the drain's end stopped this task, did (tests/drain.rs). `recv`
        // after `close` waits for such a command; dropping it answers its caller (an error,
        // or for a `Shutdown` or `Drain` the end it waits for).
        inbox.close();
        while inbox.recv().await.is_some() {}
        // The same for the SIP layer's job queue (`SipHandle::with`).
        inputs.close().await;
    }

    /// What follows every input: the transfer progress, replacements and cascades it queued,
    /// the endings it made, and the admission state for the SIP layer.
    async fn after_input(&mut self) {
        // Most inputs queue none of these: then there is nothing to flush.
        if !(self.pending_notifies.is_empty()
            && self.pending_replacements.is_empty()
            && self.pending_ends.is_empty()
            && self.endings.is_empty())
        {
            self.flush_notifies().await;
            self.flush_replacements().await;
            self.flush_cascades().await;
            self.finish_endings().await;
        }
        self.report_health();
    }

    /// Hands an input of the SIP driver to the user agent and sends what it answered; its
    /// events are taken by the loop.
    fn on_sip_input(&self, input: session_dialog::driver::DriverInput) {
        let mut driver = self.driver.lock();
        driver.handle(input, now());
        driver.flush();
    }

    /// Fires the user agent's timers due at `now` and sends what they produced.
    fn on_sip_timeout(&self, now: Instant) {
        let mut driver = self.driver.lock();
        driver.handle_timeout(now);
        driver.flush();
    }

    /// Tells the SIP layer what it needs to answer for us without asking: whether we are at
    /// the admission limit — then new INVITEs are refused before any state is made for them
    /// (a stateless 503), not after a round trip through here, and out-of-dialog OPTIONS get
    /// 503 — and the load its answers to OPTIONS report. (A drain refuses through its own
    /// flag, set by `SessionManager::drain`.) Two atomic stores, made only when what they
    /// say changed since the last report (most inputs change neither the count nor the limit).
    fn report_health(&mut self) {
        let health = Health::of(&self.admission);
        if self.reported_health != Some(health) {
            self.reported_health = Some(health);
            health.report(&self.sip);
        }
    }

    // ---- drain ----

    /// A drain begins (or a second `drain` joins the one in progress, the earlier deadline
    /// winning). The SIP layer refuses new INVITEs already; INVITEs that were on their way to
    /// us are refused in `on_incoming_invite`.
    fn start_drain(
        &mut self,
        grace: std::time::Duration,
        reply: oneshot::Sender<crate::DrainReport>,
    ) {
        let deadline = now().checked_add(grace);
        match &mut self.drain {
            Some(drain) => {
                drain.deadline = match (drain.deadline, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                drain.replies.push(reply);
            }
            None => {
                tracing::info!(
                    calls = self.calls.len(),
                    grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                    "draining: new calls refused, calls in progress may finish"
                );
                self.drain = Some(Drain {
                    deadline,
                    replies: vec![reply],
                });
            }
        }
    }

    /// Whether the drain in progress is over — every call has finished, or its grace ran
    /// out — and the manager is to stop (`stop` ends the calls left and reports).
    fn drained(&self) -> bool {
        let Some(drain) = &self.drain else {
            return false;
        };
        let idle = self.calls.is_empty() && self.endings.is_empty();
        idle || drain.deadline.is_some_and(|deadline| now() >= deadline)
    }

    /// Ends the dependents whose link cascades from a session that ended (which may cascade
    /// further: the graph has no cycles, so this ends).
    async fn flush_cascades(&mut self) {
        while let Some((session, reason)) = self.pending_ends.pop() {
            if let Some(call) = self.calls.get_mut(&session) {
                call.end_reason = reason;
            }
            if let Err(error) = self.hangup(session).await {
                tracing::debug!(session_id = %session, %error, "dependent not ended");
            }
            // Endings of this round may have queued more.
            self.finish_endings().await;
        }
    }

    /// Ends every call, releases everything and stops the bridges: the manager's last act.
    async fn stop(&mut self, inputs: &mut DriverInputs) {
        // A drain ending here (done, out of grace, or cut short by a shutdown): the calls
        // still up are the ones it ends. Taken first, so that their endings below do not
        // count as finished.
        let drain = self.drain.take().map(|drain| {
            let report = crate::DrainReport {
                finished: self.finished_while_draining,
                ended: self.calls.len(),
            };
            (report, drain.replies)
        });
        self.shutdown(inputs).await;
        self.finish_endings().await;
        // Every call has left its bridge by now; the driver's tasks stop.
        drop(self.bridges.shutdown().await);
        if let Some((report, replies)) = drain {
            tracing::info!(
                finished = report.finished,
                ended = report.ended,
                "drained: every call has ended"
            );
            for reply in replies {
                let _ = reply.send(report);
            }
        }
    }

    /// Sends the transfer progress queued while handling the last event.
    async fn flush_notifies(&mut self) {
        while let Some((original, status)) = self.pending_notifies.pop() {
            // A failed transfer leaves the call as it was before the NOTIFY tells the
            // transferor, so the transferor never sees this side still transferring.
            if !status.is_success() {
                self.back_from_transfer(original);
            }
            self.notify_progress(original, status).await;
        }
    }

    /// Runs a handler callback; a panic in it is caught and logged, so that one faulty
    /// callback cannot stop the manager (and every other call) with it. `None` when it
    /// panicked.
    pub(crate) fn guarded<R>(
        &self,
        callback: &'static str,
        f: impl FnOnce(&dyn CallHandler) -> R,
    ) -> Option<R> {
        let handler = &*self.handler;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(handler))) {
            Ok(result) => Some(result),
            Err(_) => {
                tracing::error!(callback, "the call handler panicked; the manager goes on");
                None
            }
        }
    }

    // ---- the user agent ----

    /// Runs `f` on the user agent, here in this task, and sends what it queued at once. Its
    /// events wait for the loop. (`Option` and `async` from when the user agent ran in
    /// another task; it is always there now.)
    pub(crate) async fn ua<R>(&self, f: impl FnOnce(&mut UserAgent, Instant) -> R) -> Option<R> {
        Some(self.ua_now(f))
    }

    /// [`Core::ua`] without the `async`.
    pub(crate) fn ua_now<R>(&self, f: impl FnOnce(&mut UserAgent, Instant) -> R) -> R {
        let mut driver = self.driver.lock();
        let result = f(driver.user_agent(), now());
        driver.flush();
        result
    }

    /// Answers server transaction `tx`; the response is traced under `session`. Errors are
    /// logged: a response the transaction refuses leaves nothing to do.
    pub(crate) async fn respond(
        &self,
        session: Option<SessionId>,
        tx: TransactionId,
        status: StatusCode,
        headers: Vec<session_sip::Header>,
        body: Option<(&'static str, Bytes)>,
    ) -> Option<DialogId> {
        let has_sdp = body.as_ref().is_some_and(|(t, _)| *t == inbound::SDP);
        let traced = session.is_some() && self.tracer.is_some();
        // Our requests in a dialog we answer are challenged like our own calls' (BYE …).
        let account = self.config.account.clone();
        // Marked for the session's priority as it is now (the dialog a 2xx makes keeps it).
        let mark = session.and_then(|session| self.sip_mark_of(session));
        let result = self
            .ua(move |ua, now| {
                if let Some(dscp) = mark {
                    ua.set_transaction_dscp(tx, dscp);
                }
                // Looked up only to be traced.
                let answered = traced
                    .then(|| ua.request_of(tx))
                    .flatten()
                    .and_then(|request| {
                        Some((request.cseq().ok()?, request.call_id().ok()?.to_owned()))
                    });
                let result = ua.answer(now, tx, status, headers, body);
                if let (Ok(Some(dialog)), Some(account)) = (&result, account) {
                    ua.set_dialog_account(dialog, Some(account));
                }
                (result, answered)
            })
            .await;
        let (result, answered) = result?;
        if let (Some(session), Some((cseq, call_id))) = (session, answered) {
            let summary = SipSummary::response(status, cseq, &call_id).with_sdp(has_sdp);
            self.trace(session, TraceEntry::SipOut(summary));
        }
        match result {
            Ok(dialog) => dialog,
            Err(error) => {
                tracing::debug!(%error, status = status.as_u16(), "response not sent");
                None
            }
        }
    }

    /// Sends a request inside `dialog` for `session` and traces it.
    pub(crate) async fn send_in_dialog(
        &self,
        session: SessionId,
        dialog: DialogId,
        method: Method,
        headers: Vec<session_sip::Header>,
        body: Option<(String, Bytes)>,
    ) -> Option<Result<TransactionId, EndpointError>> {
        let has_sdp = body.as_ref().is_some_and(|(t, _)| t == inbound::SDP);
        let traced_method = method.clone();
        let mark = self.sip_mark_of(session);
        let (sent, seq, target) = self
            .ua(move |ua, now| {
                if let Some(dscp) = mark {
                    ua.set_dialog_dscp(&dialog, dscp);
                }
                // The dialog numbers the request one past its local CSeq (§12.2.1.1).
                let known = ua
                    .dialog(&dialog)
                    .map(|d| (d.local_seq + 1, d.remote_target.to_string()));
                let body = body.as_ref().map(|(t, b)| (t.as_str(), b.clone()));
                let sent = ua.request_in_dialog(now, &dialog, method, headers, body);
                let (seq, target) = known.unzip();
                (sent, seq, target)
            })
            .await?;
        if let (Ok(_), Some(seq), Some(target), Some(call)) =
            (&sent, seq, target, self.calls.get(&session))
        {
            let summary =
                SipSummary::request(traced_method, &target, seq, call.shared.call_id.as_str())
                    .with_sdp(has_sdp);
            self.trace(session, TraceEntry::SipOut(summary));
        }
        Some(sent)
    }

    /// The SIP mark of `session`'s messages for its priority now, when the policy marks SIP
    /// by priority at all (`Some(None)`: the socket's own); `None` when it does not, or the
    /// session is gone — then nothing is set per session.
    pub(crate) fn sip_mark_of(&self, session: SessionId) -> Option<Option<u8>> {
        if !self.dscp.marks_sip_by_priority() {
            return None;
        }
        let call = self.calls.get(&session)?;
        Some(self.dscp.sip_mark(call.shared.priority()))
    }

    /// Marks what `session` sends from now on for its priority (after
    /// [`crate::CallSession::set_priority`]): its dialog, or the INVITE it is answering.
    async fn remark_sip(&mut self, session: SessionId) {
        let Some(mark) = self.sip_mark_of(session) else {
            return;
        };
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let (dialog, invite_tx) = (call.dialog.clone(), call.invite_tx);
        self.ua(move |ua, _| {
            if let Some(dialog) = &dialog {
                ua.set_dialog_dscp(dialog, mark);
            }
            if let Some(tx) = invite_tx {
                ua.set_transaction_dscp(tx, mark);
            }
        })
        .await;
    }

    /// Publishes `event` on the bus and records it in the tracer.
    pub(crate) fn publish(&self, event: SessionEvent) {
        self.publish_with(|| event);
    }

    /// Publishes the event `build` makes on the bus and records it in the tracer, building it
    /// only when one of them takes it: a bus without subscribers and no tracer (a plain
    /// server's usual case) only count it, and the clones an event is made of are saved.
    pub(crate) fn publish_with(&self, build: impl FnOnce() -> SessionEvent) {
        match &self.tracer {
            Some(tracer) => {
                let event = build();
                tracer.record_event(now(), &event);
                self.bus.publish(event);
            }
            None => {
                self.bus.publish_with(build);
            }
        }
    }

    /// Records `entry` for `session` when a tracer is configured.
    pub(crate) fn trace(&self, session: SessionId, entry: TraceEntry) {
        self.trace_with(session, || entry);
    }

    /// Records a digit; the bus event (which does not say how it travelled) is not traced.
    pub(crate) fn trace_dtmf(
        &self,
        session: SessionId,
        digit: char,
        method: TracedDtmf,
        flow: Flow,
    ) {
        self.trace(
            session,
            TraceEntry::Dtmf {
                digit,
                method,
                flow,
            },
        );
    }

    /// Records the entry `make` builds, building it only when a tracer is configured.
    pub(crate) fn trace_with(&self, session: SessionId, make: impl FnOnce() -> TraceEntry) {
        if let Some(tracer) = &self.tracer {
            tracer.record(session, now(), make());
        }
    }

    async fn on_ua_event(&mut self, event: UaEvent) {
        match event {
            UaEvent::IncomingInvite {
                tx,
                request,
                source,
            } => self.on_incoming_invite(tx, request, source).await,
            UaEvent::IncomingRequest {
                tx,
                request,
                dialog,
                source,
            } => match dialog.and_then(|d| self.by_dialog.get(&d).copied()) {
                Some(session) => self.on_in_dialog_request(session, tx, request).await,
                // REGISTER (the registrar) and digest challenges first (`registrar.rs`).
                None => {
                    if let Some(request) = self.serve_out_of_dialog(tx, request, source).await {
                        self.on_out_of_dialog_request(tx, request).await;
                    }
                }
            },
            UaEvent::Response {
                tx,
                response,
                dialog,
            } => self.on_response(tx, response, dialog).await,
            UaEvent::Ack { dialog, request } => self.on_ack(dialog, request),
            UaEvent::Cancelled { tx } => self.on_cancelled(tx),
            UaEvent::Challenged { tx, status, cseq } => self.on_challenged(tx, status, cseq),
            UaEvent::TransactionTimeout { tx } => self.on_transaction_failed(tx, false).await,
            UaEvent::TransportError { tx } => self.on_transaction_failed(tx, true).await,
            UaEvent::DialogTerminated { dialog, reason } => self.on_dialog_end(dialog, reason),
            UaEvent::ReInviteGlare {
                dialog,
                retry_after,
            } => {
                if let Some(&session) = self.by_dialog.get(&dialog) {
                    self.schedule(session, now() + retry_after, TimerKind::GlareRetry);
                }
            }
            UaEvent::PrackTimeout { tx } => {
                // RFC 3262 §3: our reliable 1xx was never PRACKed; the INVITE got 500.
                let session = self
                    .calls
                    .iter()
                    .find(|(_, call)| call.invite_tx == Some(tx))
                    .map(|(id, _)| *id);
                if let Some(session) = session {
                    self.trace(
                        session,
                        TraceEntry::note("no PRACK for our reliable 1xx: 500"),
                    );
                    let reason = TerminationReason::Failed(session_types::FailureReason::Timeout);
                    self.end_call(session, reason);
                }
            }
            other => tracing::debug!(?other, "user agent event not handled"),
        }
    }

    async fn on_response(
        &mut self,
        tx: TransactionId,
        response: session_sip::Response,
        dialog: Option<DialogId>,
    ) {
        let is_final = response.status.is_final();
        if is_final {
            self.ending_requests.remove(&tx);
        }
        let Some(owner) = self.by_tx.get(&tx) else {
            if is_final {
                // A REGISTER of ours (`registration.rs`), or nothing we still wait for.
                let status = response.status;
                self.on_register_outcome(tx, Some(&response), status).await;
            }
            return;
        };
        let session = owner.session;
        self.trace_with(session, || {
            TraceEntry::SipIn(SipSummary::of_response(&response))
        });
        if matches!(owner.purpose, TxPurpose::Invite) {
            if is_final {
                self.by_tx.remove(&tx);
            }
            self.on_invite_response(session, response, dialog).await;
            return;
        }
        if !is_final {
            return;
        }
        if let Some(owner) = self.by_tx.remove(&tx) {
            self.on_in_dialog_response(session, owner.purpose, response)
                .await;
        }
    }

    /// Timer B/F fired (`transport == false`) or the transport failed for request `tx`.
    async fn on_transaction_failed(&mut self, tx: TransactionId, transport: bool) {
        self.ending_requests.remove(&tx);
        let Some(owner) = self.by_tx.remove(&tx) else {
            // A REGISTER of ours: 408 or 503 (§8.1.3.1).
            let status = if transport {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::REQUEST_TIMEOUT
            };
            self.on_register_outcome(tx, None, status).await;
            return;
        };
        let (error, reason) = if transport {
            (
                SessionError::Transport,
                session_types::FailureReason::Transport,
            )
        } else {
            (SessionError::Timeout, session_types::FailureReason::Timeout)
        };
        match owner.purpose {
            TxPurpose::Invite => {
                self.end_call(owner.session, TerminationReason::Failed(reason));
            }
            other => other.fail(error),
        }
    }

    /// Remembers request `sent` of `session` under `purpose` until its final response; a
    /// request that could not be sent fails its purpose at once.
    pub(crate) fn track(
        &mut self,
        session: SessionId,
        sent: Option<std::result::Result<TransactionId, EndpointError>>,
        purpose: TxPurpose,
    ) {
        match sent {
            Some(Ok(tx)) => {
                self.by_tx.insert(tx, TxOwner { session, purpose });
            }
            Some(Err(EndpointError::RequestPending)) => {
                purpose.fail(SessionError::Pending("re-INVITE"));
            }
            Some(Err(_)) => purpose.fail(SessionError::Transport),
            None => purpose.fail(SessionError::Shutdown),
        }
    }

    /// The dialog of `session` when the call is established, for `operation` inside it.
    pub(crate) fn established_dialog(
        &self,
        session: SessionId,
        operation: &'static str,
    ) -> Result<DialogId> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        call.dialog
            .clone()
            .filter(|_| call.state.is_established())
            .ok_or(SessionError::InvalidState {
                operation,
                state: call.state,
            })
    }

    fn on_dialog_end(&mut self, dialog: DialogId, reason: DialogEnd) {
        // A second dialog of a forked call: the call itself goes on in the first one.
        if matches!(reason, DialogEnd::ForkRejected) {
            return;
        }
        // The dialog is over whatever its call does: out of the map at once (one lookup), and
        // when it is the call's own, `end_call` need not look for it again.
        let Some(session) = self.by_dialog.remove(&dialog) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&session)
            && call.dialog.as_ref() == Some(&dialog)
        {
            call.dialog = None;
        }
        let note = match reason {
            DialogEnd::PeerBye => "← BYE (answered 200 by the dialog layer)",
            DialogEnd::AckTimeout => "no ACK for our 2xx: BYE sent (§13.3.1.4)",
            _ => "",
        };
        if !note.is_empty() {
            self.trace(session, TraceEntry::note(note));
        }
        let reason = match reason {
            DialogEnd::PeerBye => TerminationReason::RemoteHangup,
            DialogEnd::LocalBye => TerminationReason::LocalHangup,
            DialogEnd::AckTimeout => {
                TerminationReason::Failed(session_types::FailureReason::Timeout)
            }
            DialogEnd::ForkRejected => return,
            // Our CANCEL lost the race with the answer; the user agent ACKed and sent BYE.
            DialogEnd::CancelledAfterAnswer => TerminationReason::Cancelled,
            DialogEnd::TransportError => {
                TerminationReason::Failed(session_types::FailureReason::Transport)
            }
            // Our 2xx waited for a PRACK that never came (RFC 3262 §3), or the caller
            // cancelled meanwhile.
            DialogEnd::PrackTimeout => {
                TerminationReason::Failed(session_types::FailureReason::Timeout)
            }
            DialogEnd::CancelledBeforeAnswer => TerminationReason::Cancelled,
            _ => TerminationReason::LocalHangup,
        };
        let reason = match reason {
            TerminationReason::LocalHangup => self
                .calls
                .get(&session)
                .and_then(|call| call.end_reason)
                .unwrap_or(reason),
            other => other,
        };
        self.end_call(session, reason);
    }

    fn on_media_event(&mut self, session: SessionId, event: MediaEvent) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        match event {
            MediaEvent::Dtmf { digit, duration } => {
                let handle = self.handle(call);
                call.shared.push_digit(digit);
                self.trace_dtmf(session, digit, TracedDtmf::Rfc4733, Flow::Received);
                self.bus.publish(SessionEvent::DtmfReceived {
                    session_id: session,
                    digit,
                    duration,
                });
                self.guarded("on_dtmf", |h| {
                    h.on_dtmf(&handle, digit, DtmfMethod::Rfc4733)
                });
            }
            MediaEvent::PlaybackFinished { playback, end } => {
                call.shared.playback_finished(playback);
                self.bus.publish(SessionEvent::PlaybackFinished {
                    session_id: session,
                    end,
                });
            }
            MediaEvent::Counters { sent, received } => {
                self.trace(session, TraceEntry::RtpCounters { sent, received });
            }
            MediaEvent::Inactive(silent) => {
                tracing::debug!(session_id = %session, ?silent, "no RTP");
                let held = {
                    let status = call.shared.status.lock();
                    status.remote_hold || status.local_hold
                };
                if self
                    .config
                    .media_timeout
                    .is_some_and(|limit| silent >= limit)
                    && call.state == CallState::Active
                    && !held
                {
                    self.trace(
                        session,
                        TraceEntry::note("no RTP for the media timeout: BYE"),
                    );
                    self.pending_ends.push((
                        session,
                        Some(TerminationReason::Failed(
                            session_types::FailureReason::MediaTimeout,
                        )),
                    ));
                }
            }
        }
    }

    // ---- commands ----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Call { call, reply } => {
                let result = self.start_outbound(call).await;
                let _ = reply.send(result);
            }
            Command::Operate {
                session,
                operation,
                reply,
            } => {
                if !self.calls.contains_key(&session) {
                    let _ = reply.send(Err(SessionError::NoSuchSession));
                    return;
                }
                self.operate(session, operation, reply).await;
            }
            Command::DestroyBridge { bridge, reply } => {
                let result = self.destroy_bridge(bridge).await;
                let _ = reply.send(result);
            }
            Command::Session { session, reply } => {
                let handle = self.calls.get(&session).map(|call| self.handle(call));
                let _ = reply.send(handle);
            }
            // Handled by the loop.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Command::Drain { grace, reply } => self.start_drain(grace, reply),
            Command::Registration(command) => self.on_registration_command(command).await,
        }
    }

    async fn operate(&mut self, session: SessionId, operation: Operation, reply: Reply) {
        match operation {
            Operation::Accept(options) => {
                let result = self.accept(session, options).await;
                let _ = reply.send(result);
            }
            Operation::Reject(status) => {
                let result = self.reject_incoming(session, status).await;
                let _ = reply.send(result);
            }
            Operation::Bridge(bridge) => self.operate_bridge(session, bridge, reply).await,
            Operation::Ring => {
                let result = self.ring(session).await;
                let _ = reply.send(result);
            }
            Operation::EarlyMedia => {
                let result = self.early_media(session).await;
                let _ = reply.send(result);
            }
            Operation::Cancel => {
                let result = self.cancel(session).await;
                let _ = reply.send(result);
            }
            Operation::Hangup => {
                let result = self.hangup(session).await;
                let _ = reply.send(result);
            }
            Operation::Hold(hold) => self.reoffer(session, Some(hold), false, Some(reply)).await,
            Operation::Reoffer { update } => {
                self.reoffer(session, None, update, Some(reply)).await;
            }
            Operation::Dtmf { digit, method } => {
                self.send_dtmf(session, digit, method, reply).await
            }
            Operation::Request {
                method,
                content_type,
                body,
            } => {
                self.send_request(session, method, content_type, body, reply)
                    .await;
            }
            Operation::Transfer(target) => self.transfer(session, target, reply).await,
            Operation::TransferReplacing(consultation) => {
                match self.replacing_target(consultation).await {
                    Ok(target) => self.transfer(session, target, reply).await,
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Operation::FinishTransfer(status) => {
                let result = self.finish_transfer(session, status).await;
                let _ = reply.send(result);
            }
            Operation::AttachSource(playback, source) => {
                let result = self.with_media(session, |media| {
                    media.send(crate::media::MediaCommand::AttachSource(playback, source));
                });
                let _ = reply.send(result);
            }
            Operation::DetachSource => {
                let result = self.with_media(session, |media| {
                    media.send(crate::media::MediaCommand::DetachSource);
                });
                let _ = reply.send(result);
            }
            Operation::AttachSink(sink) => {
                let result = self.with_media(session, |media| {
                    media.send(crate::media::MediaCommand::AttachSink(sink));
                });
                let _ = reply.send(result);
            }
            Operation::Stats(stats_reply) => {
                self.stats(session, stats_reply);
                let _ = reply.send(Ok(()));
            }
            Operation::RemarkSip => {
                self.remark_sip(session).await;
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn with_media(&self, session: SessionId, f: impl FnOnce(&MediaHandle)) -> Result<()> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        match &call.media {
            Some(media) => {
                f(media);
                Ok(())
            }
            None => Err(SessionError::InvalidState {
                operation: "attach audio (no media of ours)",
                state: call.state,
            }),
        }
    }

    fn stats(&self, session: SessionId, reply: oneshot::Sender<CallStats>) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let stats = CallStats::timings(&call.shared.status.lock(), now());
        let Some(media) = &call.media else {
            let _ = reply.send(stats);
            return;
        };
        // The media task adds its figures and answers the caller itself: the manager does not
        // wait for it.
        media.send(crate::media::MediaCommand::Stats {
            call: Box::new(stats),
            reply,
        });
    }

    // ---- sessions ----

    /// A new session's shared part and handle.
    pub(crate) fn new_session(
        &mut self,
        call_id: CallId,
        direction: Direction,
        local_uri: &str,
        remote_uri: &str,
        permit: Option<AdmissionPermit>,
    ) -> SessionId {
        // A UUID v7 from the manager's clock and seeded generator (time and randomness are
        // inputs here too).
        let (epoch_ms, epoch) = self.wall_epoch;
        let created_at = now();
        let elapsed = u64::try_from(created_at.saturating_duration_since(epoch).as_millis())
            .unwrap_or(u64::MAX);
        let id = SessionId::v7(epoch_ms.saturating_add(elapsed), self.rng.u128(..));
        let shared = Arc::new(CallShared {
            id,
            call_id,
            direction,
            local_uri: Arc::from(local_uri),
            remote_uri: Arc::from(remote_uri),
            state: Watched::new(CallState::Initiating),
            status: parking_lot::Mutex::new(CallStatus {
                created: Some(created_at),
                ..CallStatus::default()
            }),
            digits: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            digit_arrived: tokio::sync::Notify::new(),
            playback: Watched::new(None),
            ending: std::sync::atomic::AtomicBool::new(false),
            playbacks: std::sync::atomic::AtomicU64::new(0),
            bus: self.bus.clone(),
            released: Watched::new(false),
            priority: std::sync::atomic::AtomicU8::new(0),
            dscp: Arc::clone(&self.dscp),
        });
        let created = Arc::clone(&shared);
        self.calls.insert(id, Box::new(Call::new(shared, permit)));
        if let Some(limit) = self.config.stuck.final_response {
            self.schedule(id, now() + limit, TimerKind::AnswerDeadline);
        }
        self.gauges.calls.store(self.calls.len(), Ordering::Relaxed);
        self.metrics.created(direction, self.calls.len());
        tracing::debug!(session_id = %id, call_id = %created.call_id, ?direction, "session created");
        self.publish_with(|| {
            let (from, to) = match direction {
                Direction::Outbound => (created.local_uri.clone(), created.remote_uri.clone()),
                Direction::Inbound => (created.remote_uri.clone(), created.local_uri.clone()),
            };
            SessionEvent::SessionCreated {
                session_id: id,
                direction,
                call_id: created.call_id.clone(),
                from,
                to,
            }
        });
        id
    }

    /// A handle on `call`.
    pub(crate) fn handle(&self, call: &Call) -> CallSession {
        CallSession {
            shared: call.shared.clone(),
            commands: self.commands.clone(),
        }
    }

    /// Moves `session` to `new` if legal; publishes the change. Returns whether it moved.
    pub(crate) fn set_state(&mut self, session: SessionId, new: CallState) -> bool {
        let Some(call) = self.calls.get_mut(&session) else {
            return false;
        };
        let old = call.state;
        if old == new {
            return false;
        }
        if let Err(error) = old.transition(new) {
            tracing::debug!(session_id = %session, %error, "state change refused");
            return false;
        }
        call.state = new;
        if new == CallState::Ringing {
            call.shared.status.lock().rang = true;
        }
        call.shared.state.set(new);
        if new == CallState::OnHold {
            self.trace(session, TraceEntry::Hold);
        } else if old == CallState::OnHold && new.is_established() {
            self.trace(session, TraceEntry::Resume);
        }
        let Some(call) = self.calls.get(&session) else {
            return false;
        };
        tracing::debug!(session_id = %session, call_id = %call.shared.call_id, %old, %new, "state");
        self.publish_with(|| SessionEvent::StateChanged {
            session_id: session,
            call_id: call.shared.call_id.clone(),
            old,
            new,
        });
        true
    }

    /// The call is answered and confirmed: Active, media started, handler told.
    pub(crate) fn established(&mut self, session: SessionId) {
        if !self.set_state(session, CallState::Active) {
            return;
        }
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        call.shared.status.lock().answered = Some(now());
        if let (Some(media), Some(negotiated)) = (
            &call.media,
            call.offer_answer.as_deref().and_then(OfferAnswer::current),
        ) && let Some(remote) = negotiated.remote_rtp()
        {
            self.publish_with(|| SessionEvent::MediaStarted {
                session_id: session,
                codec: self.codec_name(&negotiated.codec.name),
                local: media.local_addr(),
                remote,
            });
        }
        let handle = self.handle(call);
        if let Some(original) = call.notify_to {
            self.pending_notifies.push((original, StatusCode::OK));
        }
        if let Some(old) = call.replaces {
            self.pending_replacements.push((session, old));
        }
        self.guarded("on_call_established", |h| h.on_call_established(&handle));
    }

    /// Ends `session` for `reason`: final state, resources released, maps cleaned, events
    /// published, handler told. Every ending path comes here.
    pub(crate) fn end_call(&mut self, session: SessionId, reason: TerminationReason) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let reason = if call.shutting_down {
            TerminationReason::Shutdown
        } else {
            reason
        };
        // It leaves its groups before its state turns final, so whoever sees the end sees it
        // gone from them too; `ending` keeps it from joining one again meanwhile.
        call.shared.ending.store(true, Ordering::Relaxed);
        self.groups.forget(&self.bus, session);
        let cascade = self.dependencies.ended(&self.bus, session);
        self.pending_ends
            .extend(cascade.into_iter().map(|dependent| (dependent, None)));
        let target = reason.final_state();
        if target == CallState::Terminated && call.state != CallState::Terminating {
            self.set_state(session, CallState::Terminating);
        }
        if !self.set_state(session, target) {
            // E.g. Cancelled asked for an answered call: it still ends, as Terminated.
            self.set_state(session, CallState::Terminating);
            self.set_state(session, CallState::Terminated);
        }
        let Some(mut call) = self.calls.remove(&session) else {
            return;
        };
        call.shared.status.lock().ended = Some(now());
        self.gauges.calls.store(self.calls.len(), Ordering::Relaxed);
        self.metrics.set_active(self.calls.len());
        if let Some(dialog) = call.dialog.take() {
            self.by_dialog.remove(&dialog);
        }
        self.by_tx.retain(|_, owner| owner.session != session);
        drop(call.permit.take());
        if let Some(reply) = call.transfer_reply.take() {
            let _ = reply.send(Err(SessionError::Ended(call.state)));
        }
        if let Some((_, Some(reply))) = call.glare_retry.take() {
            let _ = reply.send(Err(SessionError::Ended(call.state)));
        }
        if let Some(original) = call.notify_to
            && call.shared.status.lock().answered.is_none()
        {
            let status = match reason {
                TerminationReason::Failed(failure) => {
                    failure.status().unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                }
                TerminationReason::Cancelled => StatusCode::REQUEST_TERMINATED,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            self.pending_notifies.push((original, status));
        }
        tracing::debug!(session_id = %session, call_id = %call.shared.call_id, %reason, "session ended");
        // The media task still has to stop; the last events wait for it (`finish_endings`).
        self.endings.push((call, reason));
    }

    /// Completes the endings of the last event: waits for each media task to give its ports
    /// back, then publishes `MediaStopped` and `SessionTerminated` (the session's last event,
    /// promising that everything is released) and tells the handler.
    async fn finish_endings(&mut self) {
        if !self.endings.is_empty() {
            self.give_back_room();
            // "Terminated" on the bus means the SIP layer's health already counts the slot
            // as free.
            self.report_health();
            // Counted from the moment `SessionManager::drain` set the flag, not from when its
            // command reaches this task: SIP input is served first, so calls may end before.
            if self.gauges.draining.load(Ordering::Relaxed) {
                self.finished_while_draining += self.endings.len();
            }
        }
        // Taken out to be worked through, then put back empty with its room: a queue left
        // without any would allocate again for the next call's end.
        let mut endings = std::mem::take(&mut self.endings);
        for (mut call, reason) in endings.drain(..) {
            let session = call.shared.id;
            let mut stats = CallStats::timings(&call.shared.status.lock(), now());
            if call.bridged.take().is_some() {
                // Its leg is in a bridge: it leaves, and its ports come back with it.
                stats.rtp = self.release_bridged(session).await;
            }
            if let Some(media) = call.media.take() {
                if let Some(media) = media.stop().await {
                    stats.rtp = Some(media.stream);
                    stats.playout = Some(media.playout);
                }
                self.publish_with(|| SessionEvent::MediaStopped {
                    session_id: session,
                });
            }
            self.metrics.ended(reason, &stats);
            // The final figures, readable from every handle from now on.
            call.shared.status.lock().final_stats = Some(stats.clone());
            self.publish_with(|| SessionEvent::SessionTerminated {
                session_id: session,
                reason,
                summary: stats.summary(),
            });
            call.shared.released.set(true);
            let handle = self.handle(&call);
            self.guarded("on_call_ended", |h| {
                h.on_call_ended(&handle, reason, &stats)
            });
            self.bus.forget_session(session);
        }
        // (Unless endings were queued meanwhile: they wait for the next round.)
        if self.endings.is_empty() {
            self.endings = endings;
        }
    }

    /// Maps hold the capacity of their peak: once one holds under a quarter of it, it
    /// shrinks to twice its length (never below the room reserved for
    /// `SessionManagerBuilder::reserve_calls`), so memory comes back after a burst. Each shrink
    /// halves the capacity at least, so the cost is amortised over the calls that ended.
    fn give_back_room(&mut self) {
        let floor = self.config.reserve_calls;
        fn shrink<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
            map: &mut HashMap<K, V, S>,
            floor: usize,
        ) {
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                let target = (map.len() * 2).max(floor);
                // Tables have a power of two of buckets: one whose capacity is under twice the
                // target is as small as the target allows already (a map at its floor, most
                // often), and `shrink_to` would only work that out.
                if target <= map.capacity() / 2 {
                    map.shrink_to(target);
                }
            }
        }
        shrink(&mut self.calls, floor);
        shrink(&mut self.by_tx, floor);
        shrink(&mut self.by_dialog, floor);
    }

    // ---- media ----

    /// Opens the call's media: an RTP endpoint from the pool (or none when signaling only)
    /// and a fresh offer/answer state.
    pub(crate) async fn open_media(&mut self, session: SessionId) -> Result<()> {
        // The o= session id comes from the manager's seeded generator (RFC 8866 §5.2: any
        // number unique enough; NTP-style values are conventional).
        let sdp_session_id = self.rng.u64(1..u64::from(u32::MAX));
        let offer_answer = OfferAnswer::with_shared_config(
            Arc::clone(&self.media_config),
            self.local_ip,
            sdp_session_id,
        );
        let mut marking = None;
        let (media, port) = match self.config.media_mode {
            MediaMode::Rtp { echo } => {
                let mut endpoint_config = EndpointConfig::default();
                if let Some(timeout) = self.config.media_timeout {
                    // The endpoint reports inactivity at this period.
                    endpoint_config = endpoint_config.inactivity_timeout(timeout);
                }
                let endpoint = RtpEndpoint::bind_from_pool(
                    &self.ports,
                    self.local_ip,
                    RtcpPort::muxed_if(self.config.media.rtcp_mux),
                    endpoint_config,
                )
                .await?;
                marking = Some(endpoint.marking());
                let idle = self.config.idle_audio;
                let media =
                    MediaHandle::spawn(session, endpoint, echo, idle, self.media_events.clone())?;
                let port = media.local_addr().port();
                (Some(media), port)
            }
            MediaMode::SignalingOnly => (None, 9),
        };
        let Some(call) = self.calls.get_mut(&session) else {
            if let Some(media) = media {
                media.stop().await;
            }
            return Err(SessionError::NoSuchSession);
        };
        call.media = media;
        call.media_port = port;
        call.offer_answer = Some(Box::new(offer_answer));
        call.shared.status.lock().marking = marking;
        Ok(call.shared.mark_media()?)
    }

    /// Tells the media task about the current agreement.
    pub(crate) fn apply_media(&self, session: SessionId) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let Some(current) = call.offer_answer.as_deref().and_then(OfferAnswer::current) else {
            return;
        };
        call.shared.status.lock().codec = Some(self.codec_name(&current.codec.name));
        if let Some(media) = &call.media {
            media.send(crate::media::MediaCommand::Configure(Box::new(
                current.clone(),
            )));
        } else if call.bridged.is_some()
            && let Err(error) = self.bridges.reconfigure(session, current)
        {
            // The bridge keeps the old terms; the peer may hear nothing until they match.
            tracing::warn!(session_id = %session, %error, "bridged leg not reconfigured");
        }
    }

    /// A codec's name as calls keep it: the few names there are are made once and shared
    /// (the first [`CODEC_NAMES_KEPT`]; any beyond are made for each call).
    pub(crate) fn codec_name(&self, name: &str) -> Arc<str> {
        let mut names = self.codec_names.lock();
        if let Some(known) = names.iter().find(|known| ***known == *name) {
            return Arc::clone(known);
        }
        let made: Arc<str> = Arc::from(name);
        if names.len() < CODEC_NAMES_KEPT {
            names.push(Arc::clone(&made));
        }
        made
    }

    // ---- timers ----

    pub(crate) fn schedule(&mut self, session: SessionId, at: Instant, kind: TimerKind) {
        let generation = self
            .calls
            .get(&session)
            .map_or(0, |call| call.timer_generation);
        self.timers.push(Reverse((at, session, kind, generation)));
    }

    async fn on_timers(&mut self) {
        let now = now();
        self.sweep_bindings(now);
        while let Some(Reverse((at, session, kind, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get(&session) else {
                continue;
            };
            // The session timer's entries go stale when it restarts; the deadlines check the
            // call's state instead.
            let deadline = matches!(kind, TimerKind::AnswerDeadline | TimerKind::AckDeadline);
            if !deadline && call.timer_generation != generation {
                continue;
            }
            match kind {
                TimerKind::AnswerDeadline => self.answer_deadline(session).await,
                TimerKind::AckDeadline => self.ack_deadline(session).await,
                TimerKind::SessionRefresh => self.refresh_session(session).await,
                TimerKind::SessionExpiry => self.session_expired(session).await,
                TimerKind::TransferTimeout => self.transfer_timed_out(session),
                TimerKind::GlareRetry => self.retry_after_glare(session).await,
            }
        }
        self.registration_timers().await;
    }

    /// The stuck-session limit for a final response passed: an incoming call still
    /// unanswered is refused 480, an outgoing one still unanswered is cancelled.
    async fn answer_deadline(&mut self, session: SessionId) {
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        if call.dialog.is_some() || call.state.is_established() || call.state.is_final() {
            return;
        }
        let reason =
            TerminationReason::Failed(session_types::FailureReason::Stuck(StuckOn::FinalResponse));
        call.end_reason = Some(reason);
        tracing::info!(session_id = %session, "no final response within the limit: ended");
        let result = match call.shared.direction {
            Direction::Inbound => {
                let tx = self.pending_invite(session, "refuse a stuck call");
                match tx {
                    Ok(tx) => {
                        let status = StatusCode::TEMPORARILY_UNAVAILABLE;
                        self.respond(Some(session), tx, status, Vec::new(), None)
                            .await;
                        self.end_call(session, reason);
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
            Direction::Outbound => self.cancel(session).await,
        };
        if let Err(error) = result {
            tracing::debug!(session_id = %session, %error, "stuck call not ended");
        }
    }

    /// The stuck-session limit for the ACK passed: a call whose 2xx is still unacknowledged
    /// is ended with BYE.
    async fn ack_deadline(&mut self, session: SessionId) {
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        if call.dialog.is_none() || call.state.is_established() || call.state.is_final() {
            return;
        }
        call.end_reason = Some(TerminationReason::Failed(
            session_types::FailureReason::Stuck(StuckOn::Ack),
        ));
        tracing::info!(session_id = %session, "no ACK within the limit: ended");
        if let Err(error) = self.hangup(session).await {
            tracing::debug!(session_id = %session, %error, "stuck call not ended");
        }
    }

    /// (Re)starts the session timer of `session` from now.
    pub(crate) fn start_session_timer(&mut self, session: SessionId, timer: SessionTimer) {
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        call.session_timer = Some(timer);
        call.timer_generation = call.timer_generation.wrapping_add(1);
        let now = now();
        if timer.we_refresh() {
            self.schedule(
                session,
                now + timer.refresh_after(),
                TimerKind::SessionRefresh,
            );
        } else {
            self.schedule(
                session,
                now + timer.expire_after(),
                TimerKind::SessionExpiry,
            );
        }
    }

    // ---- shutdown ----

    /// Remembers a BYE or CANCEL until its final response, so that a shutdown soon after a
    /// hangup still waits for the answer (closing a TCP connection with the 200 for our BYE
    /// unread would reset it under the peer).
    pub(crate) fn note_ending_request(&mut self, tx: TransactionId) {
        self.ending_requests.insert(tx);
    }

    async fn shutdown(&mut self, inputs: &mut DriverInputs) {
        // Bindings go first (Expires: 0), their answers waited for with the BYEs below.
        self.unregister_all().await;
        let sessions: Vec<SessionId> = self.calls.keys().copied().collect();
        for session in sessions {
            if let Some(call) = self.calls.get_mut(&session) {
                call.shutting_down = true;
            }
            let Some(call) = self.calls.get(&session) else {
                continue;
            };
            let unanswered_inbound =
                call.shared.direction == Direction::Inbound && call.dialog.is_none();
            if unanswered_inbound {
                let _ = self
                    .reject_incoming(session, StatusCode::SERVICE_UNAVAILABLE)
                    .await;
            } else {
                let _ = self.hangup(session).await;
            }
        }
        // Wait (bounded) until every call has ended and every BYE/CANCEL has its final
        // response, answering what still arrives. Finished transactions lingering for
        // retransmissions (Timer J/K) are not waited for.
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !(self.calls.is_empty() && self.ending_requests.is_empty()) {
            let event = self.driver.lock().poll_event();
            if let Some(event) = event {
                self.on_ua_event(event).await;
                self.finish_endings().await;
                continue;
            }
            let ua_deadline = self.driver.lock().poll_timeout();
            tokio::select! {
                input = inputs.next_input() => self.on_sip_input(input),
                () = sleep_until_or_forever(ua_deadline) => self.on_sip_timeout(now()),
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left: Vec<SessionId> = self.calls.keys().copied().collect();
        for session in left {
            self.end_call(session, TerminationReason::Shutdown);
        }
    }
}

/// Tells the SIP layer whether new calls are to be refused at the admission limit, and the
/// load its answers to OPTIONS report (see `Core::report_health`).
pub(crate) fn report_health(sip: &SipHandle, admission: &AdmissionController) {
    Health::of(admission).report(sip);
}

/// What the SIP layer is told of the admission state: the sessions admitted, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    active: usize,
    limit: Option<usize>,
}

impl Health {
    fn of(admission: &AdmissionController) -> Self {
        Self {
            active: admission.active(),
            limit: admission.max_sessions(),
        }
    }

    fn report(self, sip: &SipHandle) {
        sip.refuse_new_calls(self.limit.is_some_and(|max| self.active >= max));
        sip.report_load(self.active, self.limit);
    }
}

/// The manager's clock: tokio's, read as a `std::time::Instant`. Every time the manager acts on
/// — timers, timings, trace entries — comes from here, the same clock its sleeps run on, so a
/// test on a paused tokio runtime (`start_paused`) runs the manager in virtual time.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
