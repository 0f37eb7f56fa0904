//! Inside an established call: re-INVITE and UPDATE (hold, resume, new offers, RFC 4028
//! refreshes) both ways, DTMF by INFO, INFO and MESSAGE, and blind transfer by REFER with
//! NOTIFY `message/sipfrag` progress (RFC 3515) as transferor and transferee.

use super::inbound::{ALLOW, SDP};
use super::{Core, OutgoingCall, Reply, TimerKind, TxPurpose};
use crate::body;
use crate::error::{Result, SessionError};
use crate::handler::{DtmfMethod, TransferDecision, TransferRequest};
use crate::media::MediaCommand;
use crate::session_timer::{self, UasDecision};
use bytes::Bytes;
use session_dialog::transaction::TransactionId;
use session_events::{SessionEvent, TerminationReason};
use session_media::sdp::{MediaDirection, SessionDescription};
use session_sip::{Header, HeaderName, Method, Request, Response};
use session_tracer::{DtmfMethod as TracedDtmf, Flow, SipSummary, TraceEntry};
use session_types::{CallState, FailureReason, SessionId, StatusCode};
use std::time::Duration;

/// How long a digit sent by RFC 4733 or INFO lasts.
const DTMF_DURATION: Duration = Duration::from_millis(160);

impl Core {
    pub(super) async fn on_in_dialog_request(
        &mut self,
        session: SessionId,
        tx: TransactionId,
        request: Request,
    ) {
        self.trace_with(session, || {
            TraceEntry::SipIn(SipSummary::of_request(&request))
        });
        match request.method {
            Method::Invite | Method::Update => self.on_reoffer(session, tx, request).await,
            Method::Info => {
                let is_dtmf = request
                    .content_type()
                    .and_then(Result::ok)
                    .is_some_and(|t| t.is("application", "dtmf-relay"));
                self.respond(Some(session), tx, StatusCode::OK, Vec::new(), None)
                    .await;
                let Some(call) = self.calls.get(&session) else {
                    return;
                };
                let handle = self.handle(call);
                match is_dtmf
                    .then(|| body::parse_dtmf_relay(&request.body))
                    .flatten()
                {
                    Some((digit, duration_ms)) => {
                        handle.shared.push_digit(digit);
                        self.trace_dtmf(session, digit, TracedDtmf::SipInfo, Flow::Received);
                        self.bus.publish(SessionEvent::DtmfReceived {
                            session_id: session,
                            digit,
                            duration: Duration::from_millis(u64::from(duration_ms)),
                        });
                        self.guarded("on_dtmf", |h| h.on_dtmf(&handle, digit, DtmfMethod::Info));
                    }
                    None => {
                        self.guarded("on_message", |h| h.on_message(&handle, &request));
                    }
                }
            }
            Method::Message => {
                self.respond(Some(session), tx, StatusCode::OK, Vec::new(), None)
                    .await;
                if let Some(call) = self.calls.get(&session) {
                    let handle = self.handle(call);
                    self.guarded("on_message", |h| h.on_message(&handle, &request));
                }
            }
            Method::Refer => self.on_refer(session, tx, request).await,
            Method::Notify => self.on_notify(session, tx, request).await,
            Method::Options => {
                let allow = vec![Header::new(HeaderName::Allow, ALLOW)];
                self.respond(Some(session), tx, StatusCode::OK, allow, None)
                    .await;
            }
            _ => {
                let allow = vec![Header::new(HeaderName::Allow, ALLOW)];
                self.respond(
                    Some(session),
                    tx,
                    StatusCode::METHOD_NOT_ALLOWED,
                    allow,
                    None,
                )
                .await;
            }
        }
    }

    /// A re-INVITE or UPDATE from the peer: a new offer (hold, resume, changed media), a
    /// session refresh, or both.
    async fn on_reoffer(&mut self, session: SessionId, tx: TransactionId, request: Request) {
        let mut headers = Vec::new();
        match session_timer::uas_decide(&request, self.config.session_timer.as_ref()) {
            UasDecision::TooSmall(min_se) => {
                let min_se = Header::new(HeaderName::MinSe, min_se.to_string());
                self.respond(
                    Some(session),
                    tx,
                    StatusCode::SESSION_INTERVAL_TOO_SMALL,
                    vec![min_se],
                    None,
                )
                .await;
                return;
            }
            UasDecision::Timer { timer, require } => {
                // A refresh: answer with the interval and restart our side (§9, §10).
                let we_are_uac = self
                    .calls
                    .get(&session)
                    .is_some_and(|c| c.shared.direction == session_types::Direction::Outbound);
                let refreshed = session_timer::SessionTimer {
                    we_are_uac,
                    ..timer
                };
                headers.push(refreshed.header());
                if require {
                    headers.push(Header::new(HeaderName::Require, "timer"));
                }
                self.start_session_timer(session, refreshed);
            }
            UasDecision::None => {}
        }
        if request.body.is_empty() {
            if request.method == Method::Update {
                self.respond(Some(session), tx, StatusCode::OK, headers, None)
                    .await;
                return;
            }
            // A re-INVITE without an offer: we offer in the 200, the answer comes in the ACK.
            let offer = self.calls.get_mut(&session).and_then(|call| {
                let port = call.media_port;
                call.offer_answer.as_mut().map(|oa| oa.create_offer(port))
            });
            let body = offer.map(|sdp| (SDP, Bytes::from(sdp.to_text())));
            self.respond(Some(session), tx, StatusCode::OK, headers, body)
                .await;
            return;
        }
        let answered = self.calls.get_mut(&session).and_then(|call| {
            let port = call.media_port;
            let offer_answer = call.offer_answer.as_mut()?;
            Some(
                SessionDescription::parse_bytes(&request.body)
                    .and_then(|offer| offer_answer.answer_offer(&offer, port)),
            )
        });
        let answered = match answered {
            Some(Ok(answered)) => answered,
            refused => {
                // RFC 3261 §14.2: the old session stays; the offer is refused (also when the
                // application owns this call's SDP: we cannot answer a new offer for it).
                if let Some(Err(error)) = refused {
                    tracing::debug!(session_id = %session, %error, "re-offer refused");
                }
                let status = StatusCode::NOT_ACCEPTABLE_HERE;
                self.respond(Some(session), tx, status, Vec::new(), None)
                    .await;
                return;
            }
        };
        let held = answered.media.is_held_by_remote();
        let body = Bytes::from(answered.answer.to_text());
        self.respond(
            Some(session),
            tx,
            StatusCode::OK,
            headers,
            Some((SDP, body)),
        )
        .await;
        self.apply_media(session);
        self.remote_hold_changed(session, held);
    }

    fn remote_hold_changed(&mut self, session: SessionId, held: bool) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let was = {
            let mut status = call.shared.status.lock();
            std::mem::replace(&mut status.remote_hold, held)
        };
        if let Some(media) = &call.media {
            media.send(MediaCommand::SetSending(!held));
        } else if call.bridged.is_some() {
            // Answered recvonly/inactive: the bridge sends the peer nothing (RFC 3264 §6.1).
            let _ = self.bridges.set_sending(session, !held);
        }
        if was == held {
            return;
        }
        let local_hold = call.shared.status.lock().local_hold;
        let handle = self.handle(call);
        let target = if held || local_hold {
            CallState::OnHold
        } else {
            CallState::Active
        };
        self.set_state(session, target);
        self.guarded("on_remote_hold", |h| h.on_remote_hold(&handle, held));
    }

    /// Our re-INVITE (or UPDATE) with a new offer: hold, resume, or a plain re-offer.
    pub(super) async fn reoffer(
        &mut self,
        session: SessionId,
        hold: Option<bool>,
        update: bool,
        reply: Option<Reply>,
    ) {
        let Some(call) = self.calls.get_mut(&session) else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(SessionError::NoSuchSession));
            }
            return;
        };
        let operation = match hold {
            Some(true) => "hold",
            Some(false) => "resume",
            None => "re-offer",
        };
        let (Some(dialog), true) = (call.dialog.clone(), call.state.is_established()) else {
            let state = call.state;
            if let Some(reply) = reply {
                let _ = reply.send(Err(SessionError::InvalidState { operation, state }));
            }
            return;
        };
        let port = call.media_port;
        let Some(offer_answer) = call.offer_answer.as_mut() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(SessionError::InvalidState {
                    operation: "re-offer (the application owns the SDP)",
                    state: call.state,
                }));
            }
            return;
        };
        if let Some(hold) = hold {
            offer_answer.set_local_direction(if hold {
                MediaDirection::SendOnly
            } else {
                MediaDirection::SendRecv
            });
        }
        let offer = Bytes::from(offer_answer.create_offer(port).to_text());
        let mut headers = Vec::new();
        if let Some(timer) = call.session_timer {
            headers.push(timer.header());
        }
        let method = if update {
            Method::Update
        } else {
            Method::Invite
        };
        let sent = self
            .send_in_dialog(
                session,
                dialog,
                method,
                headers,
                Some((SDP.to_owned(), offer)),
            )
            .await;
        self.track(session, sent, TxPurpose::Reoffer { hold, reply });
    }

    pub(super) async fn on_in_dialog_response(
        &mut self,
        session: SessionId,
        purpose: TxPurpose,
        response: Response,
    ) {
        let status = response.status;
        match purpose {
            TxPurpose::Reoffer { hold, reply } => {
                if status.is_success() {
                    if response.cseq().is_ok_and(|c| c.method == Method::Invite) {
                        self.trace_acked(session, &response);
                    }
                    if !response.body.is_empty() {
                        self.take_answer(session, &response.body);
                    }
                    if let Some(hold) = hold {
                        self.local_hold_changed(session, hold);
                    }
                    self.session_refreshed(session, &response);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                } else if status == StatusCode::REQUEST_PENDING {
                    // Glare (§14.1): the user agent reported the retry delay; try again then.
                    if let Some(call) = self.calls.get_mut(&session) {
                        call.glare_retry = Some((hold, reply));
                    }
                } else if status == StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    // §12.2.1.2: the dialog is gone on the peer's side.
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(rejected(&response)));
                    }
                    let _ = self.hangup(session).await;
                } else if let Some(reply) = reply {
                    let _ = reply.send(Err(rejected(&response)));
                }
            }
            TxPurpose::Refresh => {
                if status.is_success() {
                    self.session_refreshed(session, &response);
                } else if status == StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    let _ = self.hangup(session).await;
                }
            }
            TxPurpose::Request(reply) => {
                if let Some(reply) = reply {
                    let result = if status.is_success() {
                        Ok(())
                    } else {
                        Err(rejected(&response))
                    };
                    let _ = reply.send(result);
                }
            }
            TxPurpose::Refer(reply) => {
                if status.is_success() {
                    // 202: the peer will report progress by NOTIFY.
                    if let Some(call) = self.calls.get_mut(&session) {
                        call.transfer_reply = Some(reply);
                    }
                    self.set_state(session, CallState::Transferring);
                    let at = super::now() + self.config.transfer_timeout;
                    self.schedule(session, at, TimerKind::TransferTimeout);
                } else {
                    let _ = reply.send(Err(rejected(&response)));
                }
            }
            TxPurpose::Notify | TxPurpose::Invite => {}
        }
    }

    /// A 2xx to our re-INVITE or UPDATE refreshed the session (RFC 4028 §7.4): restart the
    /// session timer with what the 2xx says, or as it was when the 2xx says nothing.
    fn session_refreshed(&mut self, session: SessionId, response: &Response) {
        let timer = session_timer::uac_from_response(response)
            .map(|t| self.our_view(session, t))
            .or_else(|| self.calls.get(&session).and_then(|c| c.session_timer));
        if let Some(timer) = timer {
            self.start_session_timer(session, timer);
        }
    }

    /// A timer read from a response, seen from our side of the dialog.
    fn our_view(
        &self,
        session: SessionId,
        timer: session_timer::SessionTimer,
    ) -> session_timer::SessionTimer {
        let we_are_uac = self
            .calls
            .get(&session)
            .is_some_and(|c| c.shared.direction == session_types::Direction::Outbound);
        session_timer::SessionTimer {
            we_are_uac,
            ..timer
        }
    }

    fn local_hold_changed(&mut self, session: SessionId, hold: bool) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let remote_hold = {
            let mut status = call.shared.status.lock();
            status.local_hold = hold;
            status.remote_hold
        };
        let target = if hold || remote_hold {
            CallState::OnHold
        } else {
            CallState::Active
        };
        self.set_state(session, target);
    }

    pub(super) async fn retry_after_glare(&mut self, session: SessionId) {
        let retry = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.glare_retry.take());
        if let Some((hold, reply)) = retry {
            self.reoffer(session, hold, false, reply).await;
        }
    }

    /// RFC 4028: we are the refresher and half the interval has passed.
    pub(super) async fn refresh_session(&mut self, session: SessionId) {
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        if !call.state.is_established() {
            return;
        }
        if call.peer_allows_update
            && let (Some(dialog), Some(timer)) = (call.dialog.clone(), call.session_timer)
        {
            // UPDATE without a body refreshes without touching media (§7.4 prefers it).
            let headers = vec![timer.header()];
            let sent = self
                .send_in_dialog(session, dialog, Method::Update, headers, None)
                .await;
            self.track(session, sent, TxPurpose::Refresh);
            return;
        }
        self.reoffer(session, None, false, None).await;
    }

    /// RFC 4028 §10: no refresh arrived; BYE and end the session as timed out.
    pub(super) async fn session_expired(&mut self, session: SessionId) {
        tracing::debug!(session_id = %session, "session timer expired");
        let dialog = self.calls.get(&session).and_then(|c| c.dialog.clone());
        if let Some(dialog) = dialog
            && let Some(Ok(bye)) = self
                .send_in_dialog(session, dialog, Method::Bye, Vec::new(), None)
                .await
        {
            self.note_ending_request(bye);
        }
        self.end_call(session, TerminationReason::Failed(FailureReason::Timeout));
    }

    // ---- DTMF, INFO, MESSAGE ----

    pub(super) async fn send_dtmf(
        &mut self,
        session: SessionId,
        digit: char,
        method: DtmfMethod,
        reply: Reply,
    ) {
        let traced = match method {
            DtmfMethod::Rfc4733 => TracedDtmf::Rfc4733,
            DtmfMethod::Info => TracedDtmf::SipInfo,
        };
        self.trace_dtmf(session, digit, traced, Flow::Sent);
        match method {
            DtmfMethod::Rfc4733 => {
                let Some(call) = self.calls.get(&session) else {
                    let _ = reply.send(Err(SessionError::NoSuchSession));
                    return;
                };
                let Some(media) = &call.media else {
                    let _ = reply.send(Err(SessionError::InvalidState {
                        operation: "send RFC 4733 DTMF (no media of ours)",
                        state: call.state,
                    }));
                    return;
                };
                // The digit takes its duration to send; the media task answers the caller when
                // it is out, and the manager does not wait for it.
                media.send(MediaCommand::SendDtmf {
                    digit,
                    duration: DTMF_DURATION,
                    reply,
                });
            }
            DtmfMethod::Info => {
                let body = body::dtmf_relay(digit, DTMF_DURATION.as_millis() as u32);
                self.send_request(
                    session,
                    Method::Info,
                    body::DTMF_RELAY.to_owned(),
                    Bytes::from(body),
                    reply,
                )
                .await;
            }
        }
    }

    /// INFO, MESSAGE (and NOTIFY) inside the call; `reply` gets the outcome of the final
    /// response.
    pub(super) async fn send_request(
        &mut self,
        session: SessionId,
        method: Method,
        content_type: String,
        body: Bytes,
        reply: Reply,
    ) {
        let dialog = match self.established_dialog(session, "send a request in the call") {
            Ok(dialog) => dialog,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let sent = self
            .send_in_dialog(
                session,
                dialog,
                method,
                Vec::new(),
                Some((content_type, body)),
            )
            .await;
        self.track(session, sent, TxPurpose::Request(Some(reply)));
    }

    // ---- transfer: transferor ----

    pub(super) async fn transfer(
        &mut self,
        session: SessionId,
        target: session_sip::Uri,
        reply: Reply,
    ) {
        let dialog = match self.established_dialog(session, "transfer") {
            Ok(dialog) => dialog,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        if self
            .calls
            .get(&session)
            .is_some_and(|call| call.transfer_reply.is_some())
        {
            let _ = reply.send(Err(SessionError::Pending("transfer")));
            return;
        }
        let headers = vec![
            Header::new(HeaderName::ReferTo, format!("<{target}>")),
            Header::new(HeaderName::ReferredBy, format!("<{}>", self.our_uri)),
        ];
        let sent = self
            .send_in_dialog(session, dialog, Method::Refer, headers, None)
            .await;
        self.track(session, sent, TxPurpose::Refer(reply));
    }

    /// The Refer-To of an attended transfer to the peer of `consultation` (RFC 5589 §7): its
    /// remote target with a `Replaces` header naming that dialog as the target sees it — its
    /// local tag (our remote tag) as `to-tag`, its remote tag (ours) as `from-tag`.
    pub(super) async fn replacing_target(
        &mut self,
        consultation: SessionId,
    ) -> Result<session_sip::Uri> {
        let dialog = self.established_dialog(consultation, "transfer to this call's peer")?;
        let lookup = dialog.clone();
        let target = self
            .ua_now(move |ua, _| ua.dialog(&lookup).map(|d| d.remote_target.clone()))
            .ok_or(SessionError::NoSuchSession)?;
        let replaces = format!(
            "{};to-tag={};from-tag={}",
            dialog.call_id.as_str(),
            dialog.remote_tag,
            dialog.local_tag
        );
        let text = format!(
            "{target}?Replaces={}",
            crate::body::percent_encode(&replaces)
        );
        session_sip::Uri::parse(&text).map_err(|_| SessionError::InvalidInput {
            what: "transfer target",
            value: text,
        })
    }

    /// A NOTIFY of the implicit `refer` subscription (RFC 3515 §2.4.4).
    async fn on_notify(&mut self, session: SessionId, tx: TransactionId, request: Request) {
        let is_refer = request
            .event()
            .and_then(Result::ok)
            .is_some_and(|event| event.value.eq_ignore_ascii_case("refer"));
        if !is_refer {
            // RFC 6665 §4.1.3: an event package we did not subscribe to.
            self.respond(Some(session), tx, StatusCode::BAD_EVENT, Vec::new(), None)
                .await;
            return;
        }
        self.respond(Some(session), tx, StatusCode::OK, Vec::new(), None)
            .await;
        let status = body::parse_sipfrag(&request.body);
        let terminated = request
            .headers
            .get_str(HeaderName::SubscriptionState)
            .is_some_and(|state| {
                state
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("terminated")
            });
        let outcome = match status {
            Some((status, _)) if status.is_success() => Some(Ok(())),
            Some((status, reason)) if status.is_final() => Some(Err((status, reason))),
            _ if terminated => {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                Some(Err((status, status.reason_phrase().to_owned())))
            }
            _ => None,
        };
        let Some(outcome) = outcome else {
            return;
        };
        let Some(reply) = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.transfer_reply.take())
        else {
            return;
        };
        match outcome {
            Ok(()) => {
                // The transferee reached the target: our part of the call is over (RFC 5589).
                let _ = reply.send(Ok(()));
                let _ = self.hangup(session).await;
            }
            Err((status, reason)) => {
                // Back to active first, so whoever sees the error sees the call as it is.
                self.back_from_transfer(session);
                let _ = reply.send(Err(SessionError::TransferFailed { status, reason }));
            }
        }
    }

    pub(super) fn back_from_transfer(&mut self, session: SessionId) {
        let hold = self.calls.get(&session).is_some_and(|call| {
            let status = call.shared.status.lock();
            status.local_hold || status.remote_hold
        });
        let state = if hold {
            CallState::OnHold
        } else {
            CallState::Active
        };
        self.set_state(session, state);
    }

    pub(super) fn transfer_timed_out(&mut self, session: SessionId) {
        let reply = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.transfer_reply.take());
        if let Some(reply) = reply {
            self.back_from_transfer(session);
            let status = StatusCode::REQUEST_TIMEOUT;
            let _ = reply.send(Err(SessionError::TransferFailed {
                status,
                reason: status.reason_phrase().to_owned(),
            }));
        }
    }

    // ---- transfer: transferee ----

    async fn on_refer(&mut self, session: SessionId, tx: TransactionId, request: Request) {
        let target = request
            .refer_to()
            .and_then(Result::ok)
            .map(|refer_to| refer_to.uri());
        let Some(target) = target else {
            // RFC 3515 §2.4.1: exactly one Refer-To, or 400.
            self.respond(Some(session), tx, StatusCode::BAD_REQUEST, Vec::new(), None)
                .await;
            return;
        };
        // RFC 3261 §19.1.5: headers in the Refer-To URI go into the request it triggers, not
        // into its Request-URI. Replaces (RFC 3891) is the one we carry (an attended transfer).
        let (target, uri_headers) = crate::body::split_uri_headers(&target);
        let replaces = uri_headers
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Replaces"))
            .map(|(_, value)| value);
        let Some(call) = self.calls.get(&session) else {
            return;
        };
        let priority = call.shared.priority();
        let referred_by = request
            .headers
            .get_str(HeaderName::ReferredBy)
            .map(str::to_owned);
        // RFC 3892 §3: the triggered INVITE carries the REFER's Referred-By; a REFER without one
        // was sent by its From, which is who referred us (the tag is the dialog's, not theirs).
        let referrer = referred_by.clone().or_else(|| {
            let from = request.from().ok()?;
            Some(format!("<{}>", from.uri()))
        });
        // A Replaces naming one of our own calls (the transferor's consultation call ran
        // through us, as in a B2BUA): the engine may join the two calls itself.
        let replaced_call = replaces
            .as_deref()
            .and_then(|value| session_sip::headers::Parameterized::parse_replaces(value).ok())
            .and_then(|replaces| self.replaced_call(&replaces).ok())
            .and_then(|replaced| self.calls.get(&replaced))
            .map(|replaced| self.handle(replaced));
        let transfer = TransferRequest {
            target: target.clone(),
            referred_by,
            replaces: replaces.clone(),
            replaced_call,
        };
        let handle = self.handle(call);
        // A handler that panics refuses the transfer.
        let decision = self
            .guarded("on_transfer_request", |h| {
                h.on_transfer_request(&handle, &transfer)
            })
            .unwrap_or(TransferDecision::Refuse(StatusCode::SERVER_INTERNAL_ERROR));
        let refuse = match decision {
            TransferDecision::Accept | TransferDecision::Defer => None,
            TransferDecision::Refuse(status) if status.is_failure() => Some(status),
            _ => Some(StatusCode::DECLINE),
        };
        if let Some(status) = refuse {
            self.respond(Some(session), tx, status, Vec::new(), None)
                .await;
            return;
        }
        self.respond(Some(session), tx, StatusCode::ACCEPTED, Vec::new(), None)
            .await;
        self.set_state(session, CallState::Transferring);
        self.notify_progress(session, StatusCode::TRYING).await;
        if decision == TransferDecision::Defer {
            // The engine carries the transfer out and reports with `finish_transfer`.
            if let Some(call) = self.calls.get_mut(&session) {
                call.deferred_transfer = true;
            }
            return;
        }
        // The new call goes where any outbound call goes: through the outbound proxy if
        // there is one.
        let proxy = self.config.outbound_proxy.as_ref();
        let next_hop = match proxy {
            Some(proxy) => crate::manager::resolve(proxy).await,
            None => crate::manager::destination_of(&target),
        };
        let Some(destination) = next_hop else {
            self.notify_progress(session, StatusCode::NOT_FOUND).await;
            self.back_from_transfer(session);
            return;
        };
        let outgoing = OutgoingCall {
            from: self.our_uri.clone(),
            from_display: self.config.identity.display_name.clone(),
            to: target.clone(),
            destination: destination.0,
            protocol: destination.1,
            headers: proxy
                .map(crate::manager::preloaded_route)
                .into_iter()
                .chain(referrer.map(|value| Header::new(HeaderName::ReferredBy, value)))
                .chain(replaces.map(|value| Header::new(HeaderName::Replaces, value)))
                .collect(),
            sdp: None,
            transfer_of: Some(session),
            group: None,
            // The new call continues the old one: as urgent.
            priority,
            account: None,
            from_tag: None,
            interval_retried: false,
        };
        match self.start_outbound(Box::new(outgoing)).await {
            Ok(new_call) => {
                if let Some(call) = self.calls.get(&session) {
                    call.shared.status.lock().transferred_to = Some(new_call.id());
                }
            }
            Err(error) => {
                let status = error.status().unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                self.notify_progress(session, status).await;
                self.back_from_transfer(session);
            }
        }
    }

    /// As transferee of a REFER the handler deferred: the final NOTIFY carries `status` (2xx:
    /// the transfer succeeded and the transferor will end this call; anything else: it
    /// failed and the call goes back to what it was).
    pub(super) async fn finish_transfer(
        &mut self,
        session: SessionId,
        status: StatusCode,
    ) -> Result<()> {
        let call = self
            .calls
            .get_mut(&session)
            .ok_or(SessionError::NoSuchSession)?;
        if !std::mem::take(&mut call.deferred_transfer) {
            return Err(SessionError::InvalidState {
                operation: "finish a transfer",
                state: call.state,
            });
        }
        let status = if status.is_final() {
            status
        } else {
            StatusCode::SERVER_INTERNAL_ERROR
        };
        self.notify_progress(session, status).await;
        if !status.is_success() {
            self.back_from_transfer(session);
        }
        Ok(())
    }

    /// As transferee: report the new call's progress to the transferor in a NOTIFY.
    pub(super) async fn notify_progress(&mut self, session: SessionId, status: StatusCode) {
        let Some(dialog) = self.calls.get(&session).and_then(|c| c.dialog.clone()) else {
            return;
        };
        let subscription = if status.is_final() {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let headers = vec![
            Header::new(HeaderName::Event, "refer"),
            Header::new(HeaderName::SubscriptionState, subscription),
        ];
        let body = Bytes::from(body::sipfrag(status));
        let sent = self
            .send_in_dialog(
                session,
                dialog,
                Method::Notify,
                headers,
                Some((body::SIPFRAG.to_owned(), body)),
            )
            .await;
        self.track(session, sent, TxPurpose::Notify);
    }
}

fn rejected(response: &Response) -> SessionError {
    SessionError::Rejected {
        status: response.status,
        reason: response.reason.clone(),
    }
}
