//! INVITEs we send: admission, the offer, provisional and final responses, 422 retry, CANCEL
//! before the answer.

use super::inbound::SDP;
use super::{Core, OutgoingCall, TxOwner, TxPurpose};
use crate::call::CallSession;
use crate::error::{Result, SessionError};
use crate::session_timer;
use bytes::Bytes;
use session_dialog::transaction::TransactionId;
use session_dialog::ua::OutgoingInvite;
use session_events::TerminationReason;
use session_media::sdp::SessionDescription;
use session_resources::AdmissionRequest;
use session_sip::{Header, HeaderName, Method, Response};
use session_tracer::{SipSummary, TraceEntry};
use session_types::{CallState, DialogId, Direction, FailureReason, SessionId, StatusCode};

impl Core {
    /// Admits, opens media, sends the INVITE; returns the new call's handle.
    pub(super) async fn start_outbound(&mut self, call: Box<OutgoingCall>) -> Result<CallSession> {
        let user = call.from.user().unwrap_or_default().to_owned();
        let mut request = AdmissionRequest::for_user(&user).at_priority(call.priority);
        if let Some(group) = call.group {
            request = request.in_group(group);
        }
        let permit = self.admission.try_admit(&request)?;
        let call_id =
            session_types::CallId::random_with(&mut self.rng, Some(&self.local_ip.to_string()));
        let session = self.new_session(
            call_id,
            Direction::Outbound,
            call.from.as_str(),
            call.to.as_str(),
            Some(permit),
        );
        if let Some(group) = call.group {
            self.groups.add(&self.bus, session, group, || true);
        }
        if let Some(new) = self.calls.get(&session) {
            new.shared.set_priority(call.priority);
        }
        if let (Some(original), Some(new)) = (call.transfer_of, self.calls.get_mut(&session)) {
            // A transfer's new call reports its progress to the original's transferor.
            new.notify_to = Some(original);
            if let Some(tracer) = &self.tracer
                && let Err(error) = tracer.correlate(original, session)
            {
                tracing::debug!(%error, "transfer legs not correlated in the tracer");
            }
        }
        match self.send_invite(session, call).await {
            Ok(()) => {
                let call = self
                    .calls
                    .get(&session)
                    .ok_or(SessionError::NoSuchSession)?;
                Ok(self.handle(call))
            }
            Err(error) => {
                let reason = match &error {
                    SessionError::Resources(_) => FailureReason::ResourceExhausted,
                    SessionError::Media(_) => FailureReason::MediaNegotiation,
                    _ => FailureReason::Transport,
                };
                self.end_call(session, TerminationReason::Failed(reason));
                Err(error)
            }
        }
    }

    /// Sends (or, after 422, re-sends) the call's INVITE.
    async fn send_invite(&mut self, session: SessionId, call: Box<OutgoingCall>) -> Result<()> {
        let body = match &call.sdp {
            Some(sdp) => sdp.clone(),
            None => {
                let needs_media = self
                    .calls
                    .get(&session)
                    .is_some_and(|c| c.offer_answer.is_none());
                if needs_media {
                    self.open_media(session).await?;
                }
                let c = self
                    .calls
                    .get_mut(&session)
                    .ok_or(SessionError::NoSuchSession)?;
                let port = c.media_port;
                let offer = c
                    .offer_answer
                    .as_mut()
                    .ok_or(SessionError::NoSuchSession)?
                    .create_offer(port);
                Bytes::from(offer.to_text())
            }
        };
        let mut headers = call.headers.clone();
        // RFC 3261 §13.2.1: the option tags we support. `timer` only with a session timer of
        // ours: a UAS may otherwise make us the refresher (RFC 4028 §7.2).
        let supported = match &self.config.session_timer {
            Some(timer) => {
                headers.extend(session_timer::uac_headers(timer));
                super::inbound::SUPPORTED
            }
            None => super::inbound::SUPPORTED_WITHOUT_TIMER,
        };
        headers.push(Header::new(HeaderName::Supported, supported));
        headers.push(Header::new(HeaderName::Allow, super::inbound::ALLOW));
        let (call_id, cseq) = {
            let c = self
                .calls
                .get(&session)
                .ok_or(SessionError::NoSuchSession)?;
            (c.shared.call_id.clone(), c.cseq)
        };
        let call_id_text = call_id.to_string();
        let (from, to, display) = (
            call.from.clone(),
            call.to.clone(),
            call.from_display.clone(),
        );
        let (destination, protocol) = (call.destination, call.protocol);
        // A re-sent INVITE (after 422) keeps the From tag, as the user agent's re-sends after
        // a challenge do (§8.1.3.5).
        let mut call = call;
        let from_tag = call
            .from_tag
            .get_or_insert_with(|| session_sip::new_tag_with(&mut self.rng))
            .clone();
        let account = call.account.clone().or_else(|| self.config.account.clone());
        let dscp = self.dscp.sip_mark(call.priority);
        let sent = self
            .ua(move |ua, now| {
                ua.invite_with(
                    now,
                    OutgoingInvite {
                        from: &from,
                        from_display: display.as_deref(),
                        to: &to,
                        destination,
                        protocol,
                        headers,
                        body: Some((SDP, body)),
                        call_id: Some(call_id),
                        cseq: Some(cseq),
                        from_tag: Some(&from_tag),
                        account,
                        dscp,
                    },
                )
            })
            .await
            .ok_or(SessionError::Shutdown)?;
        let (tx, _) = sent.map_err(|error| {
            tracing::debug!(%error, "INVITE not sent");
            SessionError::Transport
        })?;
        self.by_tx.insert(
            tx,
            TxOwner {
                session,
                purpose: TxPurpose::Invite,
            },
        );
        self.trace_with(session, || {
            TraceEntry::SipOut(
                SipSummary::request(
                    Method::Invite,
                    call.to.as_str(),
                    cseq,
                    call_id_text.as_str(),
                )
                .with_sdp(true),
            )
        });
        let c = self
            .calls
            .get_mut(&session)
            .ok_or(SessionError::NoSuchSession)?;
        c.invite_tx = Some(tx);
        c.outgoing = Some(call);
        Ok(())
    }

    pub(super) async fn on_invite_response(
        &mut self,
        session: SessionId,
        response: Response,
        dialog: Option<DialogId>,
    ) {
        let status = response.status;
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        call.shared.status.lock().last_response = Some((status, response.reason.clone()));
        if status.is_provisional() {
            if status != StatusCode::TRYING {
                self.set_state(session, CallState::Ringing);
            }
            // Early media (183 with SDP): start it now.
            if !response.body.is_empty() {
                self.take_answer(session, &response.body);
            }
            return;
        }
        if let Some(call) = self.calls.get_mut(&session) {
            call.invite_tx = None;
        }
        if status.is_success() {
            self.on_answered(session, response, dialog).await;
            return;
        }
        let cancelling = self.calls.get(&session).is_some_and(|c| c.cancelling);
        if status == StatusCode::REQUEST_TERMINATED && cancelling {
            // A cancel of ours: plainly, or by a stuck-session limit (its reason kept).
            let reason = self
                .calls
                .get(&session)
                .and_then(|call| call.end_reason)
                .unwrap_or(TerminationReason::Cancelled);
            self.end_call(session, reason);
            return;
        }
        if status == StatusCode::SESSION_INTERVAL_TOO_SMALL
            && let Some(min_se) = session_timer::min_se_of_422(&response)
            && self.retry_with_interval(session, min_se).await
        {
            return;
        }
        self.end_call(
            session,
            TerminationReason::Failed(FailureReason::Rejected(status)),
        );
    }

    /// The user agent answered a 401/407 to our request `tx` and re-sent it as CSeq `cseq`
    /// (RFC 3261 §22.2, `session_dialog::auth`): a call's INVITE numbers on from there, and
    /// the timeline shows the challenge. A REGISTER's goes to its registration.
    pub(super) fn on_challenged(&mut self, tx: TransactionId, status: StatusCode, cseq: u32) {
        if self.on_register_challenged(tx, cseq) {
            return;
        }
        let Some(owner) = self.by_tx.get(&tx) else {
            return;
        };
        let (session, invite) = (owner.session, matches!(owner.purpose, TxPurpose::Invite));
        if invite && let Some(call) = self.calls.get_mut(&session) {
            call.cseq = call.cseq.max(cseq);
        }
        self.trace_with(session, || {
            TraceEntry::note(format!(
                "← {} answered with credentials: request re-sent as CSeq {cseq}",
                status.as_u16()
            ))
        });
    }

    /// RFC 4028 §7.4: retry once with the peer's Min-SE (same Call-ID, next CSeq).
    async fn retry_with_interval(&mut self, session: SessionId, min_se: u32) -> bool {
        let Some(mut timer) = self.config.session_timer else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&session) else {
            return false;
        };
        let asked = timer.expires.as_secs() as u32;
        if min_se <= asked || call.outgoing.as_ref().is_none_or(|o| o.interval_retried) {
            return false;
        }
        let Some(mut outgoing) = call.outgoing.take() else {
            return false;
        };
        outgoing.interval_retried = true;
        call.cseq += 1;
        timer.expires = std::time::Duration::from_secs(u64::from(min_se));
        timer.min_se = timer.expires;
        let saved = self.config.session_timer.replace(timer);
        let sent = self.send_invite(session, outgoing).await;
        self.config.session_timer = saved;
        sent.is_ok()
    }

    async fn on_answered(
        &mut self,
        session: SessionId,
        response: Response,
        dialog: Option<DialogId>,
    ) {
        let Some(dialog) = dialog else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session) else {
            return;
        };
        if call.dialog.is_some() {
            return;
        }
        call.dialog = Some(dialog.clone());
        call.peer_allows_update = response
            .headers
            .values(HeaderName::Allow)
            .flat_map(|v| v.split(','))
            .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"));
        call.outgoing = None;
        let cancelling = call.cancelling;
        self.trace_acked(session, &response);
        self.by_dialog.insert(dialog, session);
        if !response.body.is_empty() {
            self.take_answer(session, &response.body);
        }
        if cancelling {
            // CANCEL lost the race with the answer (§9.1): the user agent ACKs and ends the
            // dialog with BYE itself, then reports `DialogEnd::CancelledAfterAnswer`.
            return;
        }
        self.established(session);
        if let Some(timer) = session_timer::uac_from_response(&response) {
            self.start_session_timer(session, timer);
        }
    }

    /// The user agent ACKed this 2xx (§13.2.2.4); the timeline shows it.
    pub(super) fn trace_acked(&self, session: SessionId, response: &Response) {
        self.trace_with(session, || {
            let seq = response.cseq().map_or(0, |c| c.seq);
            let call_id = response.call_id().unwrap_or_default();
            // The ACK goes to the remote target, which the 2xx's Contact sets (§12.1.2,
            // §13.2.2.4); the peer's address of record only when there is none.
            let contact = response.contacts().find_map(|contact| match contact {
                Ok(session_sip::Contact::Addr(address)) => Some(address.uri_str().to_owned()),
                _ => None,
            });
            let target = contact.unwrap_or_else(|| {
                self.calls
                    .get(&session)
                    .map_or_else(String::new, |c| c.shared.remote_uri.to_string())
            });
            TraceEntry::SipOut(SipSummary::request(Method::Ack, &target, seq, call_id))
        });
    }

    /// Processes an SDP answer (in a 18x or 2xx) to our pending offer.
    pub(super) fn take_answer(&mut self, session: SessionId, body: &Bytes) {
        let Some(offer_answer) = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.offer_answer.as_mut())
        else {
            return;
        };
        if offer_answer.pending_offer().is_none() {
            return; // Already answered (the 2xx repeats the 183's answer).
        }
        match SessionDescription::parse_bytes(body)
            .and_then(|sdp| offer_answer.process_answer(&sdp))
        {
            Ok(_) => self.apply_media(session),
            Err(error) => tracing::debug!(session_id = %session, %error, "unusable SDP answer"),
        }
    }

    /// CANCEL our unanswered INVITE.
    pub(super) async fn cancel(&mut self, session: SessionId) -> Result<()> {
        let call = self
            .calls
            .get_mut(&session)
            .ok_or(SessionError::NoSuchSession)?;
        let tx = match (call.shared.direction, call.invite_tx, call.dialog.is_some()) {
            (Direction::Outbound, Some(tx), false) => tx,
            _ => {
                return Err(SessionError::InvalidState {
                    operation: "cancel",
                    state: call.state,
                });
            }
        };
        if call.cancelling {
            return Ok(());
        }
        call.cancelling = true;
        let (cseq, call_id) = (call.cseq, call.shared.call_id.to_string());
        let target = call.shared.remote_uri.clone();
        self.trace_with(session, || {
            TraceEntry::SipOut(SipSummary::request(Method::Cancel, &target, cseq, &call_id))
        });
        let sent = self
            .ua(move |ua, now| ua.cancel(now, tx))
            .await
            .ok_or(SessionError::Shutdown)?;
        match sent {
            Ok(cancel) => self.note_ending_request(cancel),
            Err(error) => tracing::debug!(session_id = %session, %error, "CANCEL not sent"),
        }
        Ok(())
    }

    /// BYE, CANCEL or 480, whichever ends this call now.
    pub(super) async fn hangup(&mut self, session: SessionId) -> Result<()> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        let state = call.state;
        if matches!(state, CallState::Terminating) || state.is_final() {
            return Ok(());
        }
        match (call.shared.direction, call.dialog.clone()) {
            (_, Some(dialog)) => {
                self.set_state(session, CallState::Terminating);
                let sent = self
                    .send_in_dialog(session, dialog, Method::Bye, Vec::new(), None)
                    .await;
                match sent {
                    Some(Ok(bye)) => self.note_ending_request(bye),
                    // The dialog is already gone on the user agent's side.
                    _ => {
                        let reason = self
                            .calls
                            .get(&session)
                            .and_then(|call| call.end_reason)
                            .unwrap_or(TerminationReason::LocalHangup);
                        self.end_call(session, reason);
                    }
                }
                Ok(())
            }
            (Direction::Outbound, None) => self.cancel(session).await,
            (Direction::Inbound, None) => {
                self.reject_incoming(session, StatusCode::TEMPORARILY_UNAVAILABLE)
                    .await
            }
        }
    }
}
