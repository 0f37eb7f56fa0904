//! [`CallHandler`]: the call engine's hook into the manager — what to do with an incoming
//! call, a transfer request, a digit — and the values it decides with.
//!
//! The handler's methods run on the manager's task, one event at a time, so they must return
//! quickly: a decision that needs I/O (a database, a queue) returns [`CallDecision::Defer`]
//! and answers later through the [`CallSession`] handle, while 180 Ringing goes out.

use crate::call::{CallSession, CallStats};
use bytes::Bytes;
use session_events::TerminationReason;
use session_sip::{Request, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;

/// An INVITE that arrived for a new call, with everything a router needs to look at.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// The session the manager created for it.
    pub session: CallSession,
    /// The INVITE as received: Request-URI, From/To and every header.
    pub request: Request,
    /// Where it came from.
    pub source: SocketAddr,
    /// The call this INVITE asks to replace (its `Replaces` header matched one of our
    /// established calls, RFC 3891): an attended transfer's target, or a call pickup.
    /// Accepting takes the old call's place — in its bridge, if it was in one — and ends the
    /// old call with BYE once the new one is up; rejecting (603 Decline, say) leaves both.
    pub replaces: Option<CallSession>,
    /// The user the INVITE's digest credentials were verified for, when the manager
    /// challenges INVITEs ([`crate::SessionManagerBuilder::authenticate`]); `None` otherwise.
    /// Whether that user may call this Request-URI (or use this From) is the handler's call.
    pub authenticated_user: Option<String>,
}

impl IncomingCall {
    /// The Request-URI (whom the caller wants).
    pub fn request_uri(&self) -> &Uri {
        &self.request.uri
    }

    /// The first value of header `name` (any header, by name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.headers.get_by_name(name).map(|h| h.value())
    }

    /// The SDP offer, when the INVITE carried one.
    pub fn offer(&self) -> Option<&Bytes> {
        (!self.request.body.is_empty()).then_some(&self.request.body)
    }
}

/// How to answer an incoming call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CallDecision {
    /// Answer 200 now.
    Accept(AcceptOptions),
    /// Refuse with this final status (486 Busy Here, 603 Decline, 480 …), sent exactly.
    Reject(StatusCode),
    /// Send 180 Ringing now and decide later with [`CallSession::accept`] or
    /// [`CallSession::reject`].
    Defer,
    /// Decide later, sending nothing but the transaction's 100 Trying for now (a B2BUA that
    /// waits for its B leg to ring); [`CallSession::ring`] or [`CallSession::early_media`]
    /// may follow.
    DeferSilently,
    /// Send 183 Session Progress with our SDP answer and start the media now (a prompt or a
    /// ring-back tone before the answer), and decide later. The 200 repeats the same answer.
    DeferWithEarlyMedia,
    /// Answer 302 Moved Temporarily with these Contacts.
    Redirect(Vec<Uri>),
}

impl CallDecision {
    /// Accept with the manager's media.
    pub fn accept() -> Self {
        Self::Accept(AcceptOptions::default())
    }
}

/// Options of an accepted call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AcceptOptions {
    /// Answer with this SDP instead of negotiating media ourselves (the application then owns
    /// the media, e.g. a media server elsewhere).
    pub sdp: Option<Bytes>,
}

impl AcceptOptions {
    /// Answer with the application's own SDP.
    pub fn with_sdp(sdp: impl Into<Bytes>) -> Self {
        Self {
            sdp: Some(sdp.into()),
        }
    }
}

/// A REFER asking us (the transferee) to call someone else (RFC 3515).
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// The `Refer-To` URI.
    pub target: Uri,
    /// The `Referred-By` value, when present.
    pub referred_by: Option<String>,
    /// The `Replaces` the transferor asked us to send (`Refer-To: <uri?Replaces=…>`): an
    /// attended transfer, in which the target drops its call with the transferor for ours.
    pub replaces: Option<String>,
    /// When `replaces` names a call of our own (the transferor's consultation call also runs
    /// through us, as in a B2BUA): that call. The engine can then join the two calls itself
    /// instead of calling the target ([`crate::b2bua::transfer_locally`]).
    pub replaced_call: Option<CallSession>,
}

/// Whether to follow a transfer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferDecision {
    /// 202 Accepted: call the target and report progress with NOTIFY.
    Accept,
    /// Refuse with this status (603 Decline by default).
    Refuse(StatusCode),
    /// 202 Accepted and a NOTIFY "100 Trying", then nothing: the engine carries the transfer
    /// out itself (a B2BUA joining the calls locally, [`crate::b2bua::transfer_locally`]) and
    /// reports its outcome with [`CallSession::finish_transfer`].
    Defer,
}

/// How a DTMF digit travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DtmfMethod {
    /// RFC 4733 telephone-event packets in the RTP stream.
    Rfc4733,
    /// SIP INFO with an `application/dtmf-relay` body.
    Info,
}

/// The call engine's hook. Every method has a default, so a handler implements only what it
/// cares about; the default answers every call.
pub trait CallHandler: Send + Sync + 'static {
    /// A new call arrived. Runs on the manager's task: decide quickly or [`CallDecision::Defer`].
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = call;
        CallDecision::accept()
    }

    /// A call (either direction) was answered and confirmed.
    fn on_call_established(&self, call: &CallSession) {
        let _ = call;
    }

    /// A call ended; every resource it held is already released. `stats` are its final
    /// figures (also [`CallSession::final_stats`]): timings, codec, RTP and playout counts.
    fn on_call_ended(&self, call: &CallSession, reason: TerminationReason, stats: &CallStats) {
        let _ = (call, reason, stats);
    }

    /// The peer sent a digit.
    fn on_dtmf(&self, call: &CallSession, digit: char, method: DtmfMethod) {
        let _ = (call, digit, method);
    }

    /// The peer asks us to transfer the call (REFER).
    fn on_transfer_request(
        &self,
        call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        let _ = (call, request);
        TransferDecision::Accept
    }

    /// The peer put the call on hold (`true`) or took it off hold (`false`).
    fn on_remote_hold(&self, call: &CallSession, held: bool) {
        let _ = (call, held);
    }

    /// An INFO (other than DTMF) or MESSAGE arrived inside the call; it was answered 200.
    fn on_message(&self, call: &CallSession, request: &Request) {
        let _ = (call, request);
    }
}

/// A handler that accepts every call and every transfer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl CallHandler for AcceptAll {}

/// Incoming calls as a stream an async engine awaits (as quinn's `Endpoint::accept`), instead
/// of a synchronous [`CallHandler`]: [`IncomingCalls::channel`] gives the handler to install and
/// the receiving end. Each call is deferred when it is queued — quietly, or ringing, or with
/// early media, as chosen — and the engine answers it with [`CallSession::accept`],
/// [`CallSession::reject`] and the rest. The queue is bounded: a call that finds it full is
/// refused with 503 (and a closed one with 480), never held without an owner.
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use session_core::{IncomingCalls, SessionManager};
///
/// let (handler, mut incoming) = IncomingCalls::channel(64);
/// let manager = SessionManager::builder().handler(handler).start().await?;
/// while let Some(call) = incoming.next().await {
///     tokio::spawn(async move {
///         let _ = call.session.accept().await;
///     });
/// }
/// # drop(manager); Ok(()) }
/// ```
#[derive(Debug)]
pub struct IncomingCalls {
    calls: tokio::sync::mpsc::Receiver<IncomingCall>,
}

/// The [`CallHandler`] half of [`IncomingCalls::channel`].
#[derive(Debug, Clone)]
pub struct QueueingHandler {
    calls: tokio::sync::mpsc::Sender<IncomingCall>,
    deferral: CallDecision,
    transfers: Option<tokio::sync::mpsc::Sender<IncomingTransfer>>,
}

/// A REFER the engine carries out itself (see [`QueueingHandler::queueing_transfers`]): it
/// was answered 202 with a NOTIFY "100 Trying", and waits for
/// [`CallSession::finish_transfer`].
#[derive(Debug, Clone)]
pub struct IncomingTransfer {
    /// The call the REFER arrived in (the transferor's call with us).
    pub session: CallSession,
    /// What it asks.
    pub request: TransferRequest,
}

/// Transfer requests as a stream, from [`QueueingHandler::queueing_transfers`].
#[derive(Debug)]
pub struct IncomingTransfers {
    transfers: tokio::sync::mpsc::Receiver<IncomingTransfer>,
}

impl IncomingTransfers {
    /// The next transfer request; `None` once the manager has stopped.
    pub async fn next(&mut self) -> Option<IncomingTransfer> {
        self.transfers.recv().await
    }
}

impl IncomingCalls {
    /// A queue of at most `capacity` calls waiting for the engine; calls are deferred with
    /// 180 Ringing ([`CallDecision::Defer`]) while they wait (see
    /// [`QueueingHandler::deferring_with`]).
    pub fn channel(capacity: usize) -> (QueueingHandler, IncomingCalls) {
        let (calls, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        (
            QueueingHandler {
                calls,
                deferral: CallDecision::Defer,
                transfers: None,
            },
            IncomingCalls { calls: receiver },
        )
    }

    /// The next incoming call; `None` once the manager has stopped.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        self.calls.recv().await
    }
}

impl QueueingHandler {
    /// Defers queued calls with `decision` instead of 180 Ringing:
    /// [`CallDecision::DeferSilently`] or [`CallDecision::DeferWithEarlyMedia`] (anything
    /// else is taken as [`CallDecision::Defer`]).
    #[must_use]
    pub fn deferring_with(mut self, decision: CallDecision) -> Self {
        self.deferral = match decision {
            CallDecision::DeferSilently | CallDecision::DeferWithEarlyMedia => decision,
            _ => CallDecision::Defer,
        };
        self
    }
}

impl QueueingHandler {
    /// Queues transfer requests (REFER) too, at most `capacity` of them, for the engine to
    /// carry out itself ([`TransferDecision::Defer`]); a request that finds the queue full is
    /// refused with 503. Without this, transfers are followed as by any [`CallHandler`].
    #[must_use]
    pub fn queueing_transfers(mut self, capacity: usize) -> (Self, IncomingTransfers) {
        let (transfers, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        self.transfers = Some(transfers);
        (
            self,
            IncomingTransfers {
                transfers: receiver,
            },
        )
    }
}

impl CallHandler for QueueingHandler {
    fn on_transfer_request(
        &self,
        call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        use tokio::sync::mpsc::error::TrySendError;
        let Some(transfers) = &self.transfers else {
            return TransferDecision::Accept;
        };
        let transfer = IncomingTransfer {
            session: call.clone(),
            request: request.clone(),
        };
        match transfers.try_send(transfer) {
            Ok(()) => TransferDecision::Defer,
            Err(TrySendError::Full(_)) => TransferDecision::Refuse(StatusCode::SERVICE_UNAVAILABLE),
            Err(TrySendError::Closed(_)) => TransferDecision::Refuse(StatusCode::DECLINE),
        }
    }

    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        use tokio::sync::mpsc::error::TrySendError;
        match self.calls.try_send(call.clone()) {
            Ok(()) => self.deferral.clone(),
            // The engine is behind: the caller may try again (RFC 3261 §21.5.4).
            Err(TrySendError::Full(_)) => CallDecision::Reject(StatusCode::SERVICE_UNAVAILABLE),
            // Nobody takes calls any more.
            Err(TrySendError::Closed(_)) => {
                CallDecision::Reject(StatusCode::TEMPORARILY_UNAVAILABLE)
            }
        }
    }
}
