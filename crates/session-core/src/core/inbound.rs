//! INVITEs we answer: admission, the handler's decision, the SDP answer, 180/200/3xx-6xx,
//! the ACK that makes the call Active, and CANCEL before the answer.

use super::Core;
use crate::error::{Result, SessionError};
use crate::handler::{AcceptOptions, CallDecision, IncomingCall};
use crate::session_timer::{self, UasDecision};
use bytes::Bytes;
use session_dialog::transaction::TransactionId;
use session_events::TerminationReason;
use session_media::sdp::{SessionDescription, SessionDescriptionRef, body_text};
use session_resources::AdmissionRequest;
use session_sip::{Header, HeaderName, Request};
use session_tracer::{SipSummary, TraceEntry};
use session_types::{
    CallId, CallState, Classify, DialogId, Direction, ErrorKind, FailureReason, Priority,
    SessionId, StatusCode,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The SDP content type.
pub(crate) const SDP: &str = "application/sdp";

impl Core {
    pub(super) async fn on_incoming_invite(
        &mut self,
        tx: TransactionId,
        request: Request,
        source: SocketAddr,
    ) {
        // Draining: the SIP layer refuses new INVITEs itself; this one was on its way to us
        // before it began. 503 with Retry-After (RFC 3261 §21.5.4), nothing made for it.
        if self
            .gauges
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let retry = self.admission.limits().suggested_retry_after();
            self.refuse_unavailable(tx, retry).await;
            return;
        }
        // Digest first (RFC 3261 §22): a challenge is stateless and costs no admission slot.
        let std::ops::ControlFlow::Continue(authenticated_user) =
            self.authenticate(tx, &request).await
        else {
            return;
        };
        let present = Present::of(&request);
        let callee = request.uri.user().unwrap_or_default();
        let priority = match requested_priority(&request, present) {
            Ok(priority) => priority,
            Err((status, headers)) => {
                self.respond(None, tx, status, headers, None).await;
                return;
            }
        };
        let admission = AdmissionRequest::for_user(callee).at_priority(priority);
        let permit = match self.admission.try_admit(&admission) {
            Ok(permit) => permit,
            Err(error) => {
                tracing::debug!(%error, "INVITE refused by admission");
                let retry = error.retry_after().unwrap_or(Duration::from_secs(5));
                self.refuse_unavailable(tx, retry).await;
                return;
            }
        };
        // Decided once: neither the INVITE nor our configuration changes until the answer.
        let uas_timer = session_timer::uas_decide(&request, self.config.session_timer.as_ref());
        if let UasDecision::TooSmall(min_se) = uas_timer {
            // RFC 4028 §9: the interval asked for is below our minimum.
            self.respond(
                None,
                tx,
                StatusCode::SESSION_INTERVAL_TOO_SMALL,
                vec![Header::new(HeaderName::MinSe, min_se.to_string())],
                None,
            )
            .await;
            return;
        }
        // RFC 3891 §3: an INVITE that asks to replace a dialog must match one we can replace.
        let replaces = match self.match_replaces(&request, present) {
            Ok(replaces) => replaces,
            Err(status) => {
                self.respond(None, tx, status, Vec::new(), None).await;
                return;
            }
        };
        let call_id = CallId::new(request.call_id().unwrap_or_default());
        let caller = request
            .from()
            .map(|from| from.uri_str())
            .unwrap_or_default();
        let session = self.new_session(
            call_id,
            Direction::Inbound,
            request.uri.as_str(),
            caller,
            Some(permit),
        );
        self.trace_with(session, || {
            TraceEntry::SipIn(SipSummary::of_request(&request))
        });
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        call.invite_tx = Some(tx);
        call.peer_allows_update = present.allow && allows_update(&request);
        call.shared.set_priority(priority);
        call.replaces = replaces;
        call.uas_timer = uas_timer;
        if let Some(Some(dscp)) = self.sip_mark_of(session) {
            // An urgent call's answers are marked from the first (a 100 Trying included).
            self.ua(move |ua, _| ua.set_transaction_dscp(tx, Some(dscp)))
                .await;
        }
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let replaces = replaces
            .and_then(|old| self.calls.get(&old))
            .map(|old| self.handle(old));
        let incoming = IncomingCall {
            session: self.handle(call),
            request,
            source,
            replaces,
            authenticated_user,
        };
        // A handler that panics answers 500; the manager and the other calls go on.
        let decision = self
            .guarded("on_incoming_call", |h| h.on_incoming_call(&incoming))
            .unwrap_or(CallDecision::Reject(StatusCode::SERVER_INTERNAL_ERROR));
        if let Some(call) = self.calls.get_mut(&session) {
            call.offer = Some(incoming.request.body).filter(|body| !body.is_empty());
        }
        let result = match decision {
            CallDecision::Accept(options) => self.accept(session, options).await,
            CallDecision::Reject(status) => self.reject_incoming(session, status).await,
            CallDecision::Defer => self.ring(session).await,
            // The transaction already sent 100 Trying (§17.2.1): nothing more for now.
            CallDecision::DeferSilently => Ok(()),
            CallDecision::DeferWithEarlyMedia => self.early_media(session).await,
            CallDecision::Redirect(targets) => self.redirect(session, targets).await,
        };
        if let Err(error) = result {
            tracing::debug!(session_id = %session, %error, "incoming call not answered as decided");
        }
    }

    /// The established call an INVITE's `Replaces` names (RFC 3891 §3), or the status to refuse
    /// it with (see [`Core::replaced_call`]).
    fn match_replaces(
        &self,
        request: &Request,
        present: Present,
    ) -> std::result::Result<Option<SessionId>, StatusCode> {
        if !present.replaces {
            return Ok(None);
        }
        match request.replaces() {
            None => Ok(None),
            Some(Err(_)) => Err(StatusCode::BAD_REQUEST),
            Some(Ok(replaces)) => self.replaced_call(&replaces).map(Some),
        }
    }

    /// The established call a `Replaces` value names, or the status to refuse it with: 400
    /// for missing tags, 481 when no dialog of ours matches (an early dialog included:
    /// replacing one is not supported), 486 when `early-only` names a confirmed one, 603 for
    /// a call already ending. The tags are read from our side: `to-tag` is our local tag,
    /// `from-tag` the peer's (RFC 3891 §3).
    pub(super) fn replaced_call(
        &self,
        replaces: &session_sip::headers::Parameterized<'_>,
    ) -> std::result::Result<SessionId, StatusCode> {
        let tag = |name: &str| replaces.params.get(name).flatten();
        let (Some(to_tag), Some(from_tag)) = (tag("to-tag"), tag("from-tag")) else {
            return Err(StatusCode::BAD_REQUEST);
        };
        let dialog = DialogId::new(CallId::new(replaces.value), to_tag, from_tag);
        let Some(&session) = self.by_dialog.get(&dialog) else {
            return Err(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST);
        };
        if replaces.params.get("early-only").is_some() {
            // The dialog is confirmed, and the caller wanted an early one only.
            return Err(StatusCode::BUSY_HERE);
        }
        match self.calls.get(&session) {
            Some(call) if call.state.is_established() => Ok(session),
            // Ending already (RFC 3891 §3: a terminated dialog is declined).
            Some(_) => Err(StatusCode::DECLINE),
            None => Err(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
        }
    }

    /// Sends 183 Session Progress with our SDP answer and starts the media before the answer
    /// (early media: a prompt, a ring-back tone, a B leg's early media). The 200 that follows
    /// repeats the same answer. Without an offer in the INVITE there is nothing to answer yet,
    /// so it only rings.
    pub(super) async fn early_media(&mut self, session: SessionId) -> Result<()> {
        let tx = self.pending_invite(session, "send early media")?;
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        if call.early_answer.is_some() {
            // Already flowing; a second 183 would say nothing new.
            return Ok(());
        }
        let Some(offer) = call.offer.clone() else {
            return self.ring(session).await;
        };
        let answer = match self.answer_sdp(session, Some(&offer)).await {
            Ok(answer) => answer,
            // No answer we can give: the call is refused as accept() would refuse it.
            Err(error) => return Err(self.refuse_unanswerable(session, tx, error).await),
        };
        self.set_state(session, CallState::Ringing);
        if let Some(call) = self.calls.get_mut(&session) {
            call.early_answer = Some(answer.clone());
        }
        self.respond(
            Some(session),
            tx,
            StatusCode::SESSION_PROGRESS,
            Vec::new(),
            Some((SDP, answer)),
        )
        .await;
        self.apply_media(session);
        Ok(())
    }

    /// Refuses an incoming call we cannot give an SDP answer: 400 for a malformed offer, 488
    /// for one we cannot meet, 503 when no media resources are left; ends it and returns the
    /// error.
    async fn refuse_unanswerable(
        &mut self,
        session: SessionId,
        tx: TransactionId,
        error: SessionError,
    ) -> SessionError {
        let (status, reason) = match &error {
            SessionError::Media(e) if e.kind() == ErrorKind::MalformedInput => {
                (StatusCode::BAD_REQUEST, FailureReason::MediaNegotiation)
            }
            SessionError::Media(_) => (
                StatusCode::NOT_ACCEPTABLE_HERE,
                FailureReason::MediaNegotiation,
            ),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                FailureReason::ResourceExhausted,
            ),
        };
        self.respond(Some(session), tx, status, Vec::new(), None)
            .await;
        self.end_call(session, TerminationReason::Failed(reason));
        error
    }

    /// Refuses INVITE `tx` with 503 and `Retry-After` (RFC 3261 §21.5.4: the caller may try
    /// again after `retry`, at least a second), before anything is made for it.
    async fn refuse_unavailable(&self, tx: TransactionId, retry: Duration) {
        let seconds = retry.as_secs().max(1).to_string();
        self.respond(
            None,
            tx,
            StatusCode::SERVICE_UNAVAILABLE,
            vec![Header::new(HeaderName::RetryAfter, seconds)],
            None,
        )
        .await;
    }

    /// Sends 180 Ringing.
    pub(super) async fn ring(&mut self, session: SessionId) -> Result<()> {
        let tx = self.pending_invite(session, "ring")?;
        // The state changes first, so that whoever sees the 180 finds this side ringing.
        self.set_state(session, CallState::Ringing);
        self.respond(Some(session), tx, StatusCode::RINGING, Vec::new(), None)
            .await;
        Ok(())
    }

    /// The server transaction of an inbound call not answered yet.
    pub(super) fn pending_invite(
        &self,
        session: SessionId,
        operation: &'static str,
    ) -> Result<TransactionId> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        match (call.shared.direction, call.invite_tx, call.dialog.is_some()) {
            (Direction::Inbound, Some(tx), false) => Ok(tx),
            _ => Err(SessionError::InvalidState {
                operation,
                state: call.state,
            }),
        }
    }

    /// Answers 200 with our SDP (or the application's).
    pub(super) async fn accept(
        &mut self,
        session: SessionId,
        options: AcceptOptions,
    ) -> Result<()> {
        let tx = self.pending_invite(session, "accept")?;
        let offer = self.calls.get(&session).and_then(|call| call.offer.clone());
        let early = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.early_answer.take());
        let body = match (early, options.sdp) {
            // The answer already given in the 183 stands (§13.2.1).
            (Some(early), _) => early,
            (None, Some(sdp)) => sdp,
            (None, None) => match self.answer_sdp(session, offer.as_ref()).await {
                Ok(body) => body,
                Err(error) => return Err(self.refuse_unanswerable(session, tx, error).await),
            },
        };
        let mut headers = Vec::with_capacity(4);
        let timer = match self.calls.get(&session).map(|call| call.uas_timer) {
            Some(UasDecision::Timer { timer, require }) => {
                headers.push(timer.header());
                if require {
                    headers.push(Header::new(HeaderName::Require, "timer"));
                }
                Some(timer)
            }
            _ => None,
        };
        headers.extend(self.answer_headers.iter().cloned());
        let dialog = self
            .respond(
                Some(session),
                tx,
                StatusCode::OK,
                headers,
                Some((SDP, body)),
            )
            .await;
        let Some(dialog) = dialog else {
            return Err(SessionError::Ended(self.state_of(session)));
        };
        self.by_dialog.insert(dialog.clone(), session);
        if let Some(call) = self.calls.get_mut(&session) {
            call.dialog = Some(dialog);
            call.offer = None;
        }
        if let Some(limit) = self.config.stuck.ack {
            self.schedule(session, super::now() + limit, super::TimerKind::AckDeadline);
        }
        self.apply_media(session);
        if let Some(timer) = timer {
            self.start_session_timer(session, timer);
        }
        Ok(())
    }

    /// Our SDP for the 200: the answer to the INVITE's offer, or our offer when it had none
    /// (the answer then comes in the ACK).
    async fn answer_sdp(&mut self, session: SessionId, offer: Option<&Bytes>) -> Result<Bytes> {
        // The offer is read in place (a borrowed view) and answered straight to text.
        let text = offer.map(|body| body_text(body));
        let offer = text
            .as_deref()
            .map(SessionDescriptionRef::parse)
            .transpose()?;
        self.open_media(session).await?;
        let call = self
            .calls
            .get_mut(&session)
            .ok_or(SessionError::NoSuchSession)?;
        let port = call.media_port;
        let offer_answer = call
            .offer_answer
            .as_mut()
            .ok_or(SessionError::NoSuchSession)?;
        let sdp = match offer {
            Some(offer) => offer_answer.answer_offer_text(&offer, port)?.text,
            None => offer_answer.create_offer(port).to_text(),
        };
        Ok(Bytes::from(sdp))
    }

    /// Refuses an inbound call not answered yet.
    pub(super) async fn reject_incoming(
        &mut self,
        session: SessionId,
        status: StatusCode,
    ) -> Result<()> {
        if !status.is_failure() {
            return Err(SessionError::InvalidInput {
                what: "rejection status",
                value: status.to_string(),
            });
        }
        let tx = self.pending_invite(session, "reject")?;
        self.respond(Some(session), tx, status, Vec::new(), None)
            .await;
        self.end_call(
            session,
            TerminationReason::Failed(FailureReason::Rejected(status)),
        );
        Ok(())
    }

    async fn redirect(&mut self, session: SessionId, targets: Vec<session_sip::Uri>) -> Result<()> {
        let tx = self.pending_invite(session, "redirect")?;
        let headers = targets
            .iter()
            .map(|uri| Header::new(HeaderName::Contact, format!("<{uri}>")))
            .collect();
        self.respond(
            Some(session),
            tx,
            StatusCode::MOVED_TEMPORARILY,
            headers,
            None,
        )
        .await;
        self.end_call(
            session,
            TerminationReason::Failed(FailureReason::Rejected(StatusCode::MOVED_TEMPORARILY)),
        );
        Ok(())
    }

    pub(super) fn on_ack(&mut self, dialog: DialogId, ack: Request) {
        let Some(&session) = self.by_dialog.get(&dialog) else {
            return;
        };
        self.trace_with(session, || TraceEntry::SipIn(SipSummary::of_request(&ack)));
        // A late offer (INVITE without SDP) is answered in the ACK (RFC 3264 §4).
        if !ack.body.is_empty() {
            let answer = SessionDescription::parse_bytes(&ack.body);
            if let Some(offer_answer) = self
                .calls
                .get_mut(&session)
                .and_then(|call| call.offer_answer.as_mut())
                && offer_answer.pending_offer().is_some()
            {
                match answer.map(|answer| offer_answer.process_answer(&answer)) {
                    Ok(Ok(_)) => self.apply_media(session),
                    Ok(Err(error)) | Err(error) => {
                        tracing::debug!(session_id = %session, %error, "unusable SDP in ACK");
                    }
                }
            }
        }
        if matches!(
            self.state_of(session),
            CallState::Initiating | CallState::Ringing
        ) {
            self.established(session);
        }
    }

    pub(super) fn on_cancelled(&mut self, tx: TransactionId) {
        let session = self
            .calls
            .iter()
            .find(|(_, call)| call.invite_tx == Some(tx) && call.dialog.is_none())
            .map(|(id, _)| *id);
        if let Some(session) = session {
            self.trace(
                session,
                TraceEntry::note("← CANCEL (200, and 487 for the INVITE)"),
            );
            self.end_call(session, TerminationReason::Cancelled);
        }
    }

    /// Requests outside any dialog of ours other than INVITE (OPTIONS is answered by the
    /// endpoint itself).
    pub(super) async fn on_out_of_dialog_request(&mut self, tx: TransactionId, request: Request) {
        use session_sip::Method;
        let status = match request.method {
            // Requests that only make sense inside a dialog (§12.2.2).
            Method::Bye | Method::Info | Method::Update | Method::Notify | Method::Prack => {
                StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
            }
            Method::Options => StatusCode::OK,
            _ => StatusCode::METHOD_NOT_ALLOWED,
        };
        // §21.4.6: a 405 lists what we do allow — here, outside a dialog, which is not MESSAGE
        // or REFER (they are answered inside a call only); a 200 to OPTIONS lists everything
        // a call of ours supports.
        let headers = match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                vec![Header::new(HeaderName::Allow, ALLOW_OUTSIDE_DIALOG)]
            }
            StatusCode::OK => vec![Header::new(HeaderName::Allow, ALLOW)],
            _ => Vec::new(),
        };
        self.respond(None, tx, status, headers, None).await;
    }

    pub(super) fn state_of(&self, session: SessionId) -> CallState {
        self.calls
            .get(&session)
            .map_or(CallState::Terminated, |call| call.state)
    }
}

/// The option tags we support (RFC 3262 reliable provisional responses, done by the user
/// agent; RFC 4028 session timers, RFC 3891 Replaces, RFC 4412 Resource-Priority), as the
/// `Supported` value …
pub(crate) const SUPPORTED: &str = "100rel, timer, replaces, resource-priority";
/// … without `timer`, for INVITEs we send without a session timer of our own …
pub(crate) const SUPPORTED_WITHOUT_TIMER: &str = "100rel, replaces, resource-priority";
/// … and one by one (for the SIP layer's `Require` check).
pub(crate) const SUPPORTED_TAGS: [&str; 4] = ["100rel", "timer", "replaces", "resource-priority"];

/// The methods we answer inside a call.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE, PRACK";

/// The methods we answer outside a call (BYE, INFO, UPDATE, NOTIFY, PRACK get 481 there,
/// §12.2.2, which is an answer to a method we support).
pub(crate) const ALLOW_OUTSIDE_DIALOG: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, PRACK";

/// Which of the headers that shape an incoming call an INVITE has, from one pass over its
/// headers: the checks of those it lacks — most INVITEs lack them all — are skipped rather
/// than each looking through every header for its own.
#[derive(Debug, Clone, Copy, Default)]
struct Present {
    resource_priority: bool,
    require: bool,
    replaces: bool,
    allow: bool,
}

impl Present {
    fn of(request: &Request) -> Self {
        let mut present = Self::default();
        for header in request.headers.iter() {
            match header.name() {
                HeaderName::ResourcePriority => present.resource_priority = true,
                HeaderName::Require => present.require = true,
                HeaderName::Replaces => present.replaces = true,
                HeaderName::Allow => present.allow = true,
                _ => {}
            }
        }
        present
    }
}

/// Whether the peer's Allow lists UPDATE.
pub(crate) fn allows_update(message_headers: &Request) -> bool {
    message_headers
        .headers
        .values(HeaderName::Allow)
        .flat_map(|value| value.split(','))
        .any(|method| method.trim().eq_ignore_ascii_case("UPDATE"))
}

/// The priority an INVITE asks for with `Resource-Priority` (RFC 4412): the highest of its
/// values in a namespace we know, routine without one. A malformed value gets 400; with
/// `Require: resource-priority` and no value we know, 417 listing the ones we accept
/// (§4.6.2); without `Require` values we do not know are ignored (§4.6.1).
fn requested_priority(
    request: &Request,
    present: Present,
) -> std::result::Result<Priority, (StatusCode, Vec<Header>)> {
    if !(present.resource_priority || present.require) {
        return Ok(Priority::ROUTINE);
    }
    let mut priority = None;
    for value in request.resource_priorities() {
        let value = value.map_err(|_| (StatusCode::BAD_REQUEST, Vec::new()))?;
        priority = priority.max(value.priority());
    }
    let required = request
        .option_tags(HeaderName::Require)
        .flatten()
        .any(|tag| tag.eq_ignore_ascii_case("resource-priority"));
    match priority {
        Some(priority) => Ok(priority),
        None if required => Err((
            StatusCode::UNKNOWN_RESOURCE_PRIORITY,
            vec![Header::new(
                HeaderName::AcceptResourcePriority,
                session_sip::resource_priority::accepted_values(),
            )],
        )),
        None => Ok(Priority::ROUTINE),
    }
}
