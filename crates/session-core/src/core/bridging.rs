//! Calls joined to each other: the manager's side of session-bridge.
//!
//! A call's media leg has one owner at a time (docs/ARCHITECTURE.md, "The media path"): its
//! media task while it stands alone, the [`BridgeDriver`] while it is bridged. Joining a bridge
//! stops the media task and hands its endpoint's parts — sockets, port lease, outgoing stream
//! state — to the driver; leaving (or the bridge being destroyed) takes them back and starts a
//! media task again on the same stream, so the far end hears one SSRC with continuous sequence
//! numbers throughout. A call that ends while bridged leaves its bridge first; its ports come
//! back with its leg.

use super::{Core, Reply};
use crate::error::{Result, SessionError};
use crate::handler::DtmfMethod;
use crate::media::MediaHandle;
use session_bridge::{BridgeEvent, BridgeId, JoinSettings};
use session_events::{BridgeChange, SessionEvent};
use session_media::endpoint::{EndpointParts, RtpEndpoint};
use session_media::rtcp::StreamStats;
use session_types::SessionId;

impl Core {
    /// Puts `session` into `bridge`; a call already in another bridge moves (make-before-break
    /// inside the engine).
    pub(super) async fn join_bridge(
        &mut self,
        session: SessionId,
        bridge: BridgeId,
        settings: &JoinSettings,
    ) -> Result<()> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        if call.bridged.is_some() {
            self.bridges.move_member(session, bridge)?;
            if let Some(call) = self.calls.get_mut(&session) {
                call.bridged = Some(bridge);
            }
            if *settings != JoinSettings::default() {
                self.bridges.set_muted(session, settings.muted)?;
                self.bridges.set_deaf(session, settings.deaf)?;
            }
            return Ok(());
        }
        let state = call.state;
        let negotiated = call
            .offer_answer
            .as_deref()
            .and_then(session_media::sdp::negotiate::OfferAnswer::current)
            .is_some();
        if call.media.is_none() || !negotiated || state.is_final() {
            // Nothing to bridge: signaling only, the application's own SDP, or no answer yet.
            return Err(SessionError::InvalidState {
                operation: "join a bridge (no negotiated media of ours)",
                state,
            });
        }
        let media = self
            .calls
            .get_mut(&session)
            .and_then(|call| call.media.take())
            .ok_or(SessionError::NoSuchSession)?;
        let Some(parts) = media.hand_over().await else {
            return Err(SessionError::InvalidState {
                operation: "join a bridge (the media task had stopped)",
                state,
            });
        };
        match self
            .bridges
            .add_member_with(bridge, session, parts, settings)
        {
            Ok(()) => {
                if let Some(call) = self.calls.get_mut(&session) {
                    call.bridged = Some(bridge);
                    // A peer that holds the call is sent nothing in the bridge either.
                    if call.shared.status.lock().remote_hold {
                        let _ = self.bridges.set_sending(session, false);
                    }
                }
                Ok(())
            }
            Err((error, parts)) => {
                // Refused (no such bridge, a full relay …): the call keeps its own media.
                self.restore_media(session, parts);
                Err(error.into())
            }
        }
    }

    /// Takes `session` out of its bridge; its media task runs again on the same stream.
    pub(super) async fn leave_bridge(&mut self, session: SessionId) -> Result<()> {
        let call = self
            .calls
            .get(&session)
            .ok_or(SessionError::NoSuchSession)?;
        if call.bridged.is_none() {
            return Err(SessionError::InvalidState {
                operation: "leave a bridge (not in one)",
                state: call.state,
            });
        }
        let parts = self.bridges.remove_member(session).await?;
        self.restore_media(session, parts);
        Ok(())
    }

    /// Destroys `bridge`; every member's media task runs again on its own stream.
    pub(super) async fn destroy_bridge(&mut self, bridge: BridgeId) -> Result<()> {
        let members = self.bridges.destroy_bridge(bridge).await?;
        for (session, parts) in members {
            self.restore_media(session, parts);
        }
        Ok(())
    }

    /// A leg back from the driver: a media task on it again, configured as negotiated.
    fn restore_media(&mut self, session: SessionId, parts: EndpointParts) {
        let endpoint = RtpEndpoint::from_parts(parts);
        let Some(call) = self.calls.get_mut(&session) else {
            // The call is gone: dropping the endpoint gives its ports back.
            return;
        };
        call.bridged = None;
        let echo = matches!(
            self.config.media_mode,
            crate::config::MediaMode::Rtp { echo: true }
        );
        let idle = self.config.idle_audio;
        match MediaHandle::spawn(session, endpoint, echo, idle, self.media_events.clone()) {
            Ok(media) => {
                if call.shared.status.lock().remote_hold {
                    media.send(crate::media::MediaCommand::SetSending(false));
                }
                call.media = Some(media);
            }
            Err(error) => {
                tracing::warn!(session_id = %session, %error, "media could not restart after a bridge");
            }
        }
        self.apply_media(session);
    }

    /// A call that ends while bridged: its leg comes back from the driver and is dropped (its
    /// ports return to the pool); returns the stream's final figures.
    pub(super) async fn release_bridged(&mut self, session: SessionId) -> Option<StreamStats> {
        let parts = self.bridges.remove_member(session).await.ok()?;
        Some(RtpEndpoint::from_parts(parts).stats())
    }

    /// Answers a bridge operation of `session`.
    pub(super) async fn operate_bridge(
        &mut self,
        session: SessionId,
        bridge: Option<(BridgeId, Box<JoinSettings>)>,
        reply: Reply,
    ) {
        let result = match bridge {
            Some((bridge, settings)) => self.join_bridge(session, bridge, &settings).await,
            None => self.leave_bridge(session).await,
        };
        let _ = reply.send(result);
    }

    /// The driver's events, on the bus (and a bridged member's digits to the call and its
    /// handler, as any digit).
    pub(super) fn on_bridge_event(&mut self, event: BridgeEvent) {
        let publish = |core: &Self, session: SessionId, bridge: BridgeId, change: BridgeChange| {
            core.bus.publish(SessionEvent::Bridge {
                session_id: session,
                bridge,
                change,
            });
        };
        match event {
            BridgeEvent::MemberJoined { bridge, session } => {
                publish(self, session, bridge, BridgeChange::Joined);
            }
            BridgeEvent::MemberLeft { bridge, session } => {
                publish(self, session, bridge, BridgeChange::Left);
            }
            BridgeEvent::MemberMoved { session, from, to } => {
                if let Some(call) = self.calls.get_mut(&session) {
                    call.bridged = Some(to);
                }
                publish(self, session, to, BridgeChange::MovedFrom { from });
            }
            BridgeEvent::TechnologyChanged { bridge, to, .. } => {
                for session in self.bridges.members(bridge).unwrap_or_default() {
                    publish(
                        self,
                        session,
                        bridge,
                        BridgeChange::TechnologyChanged { to },
                    );
                }
            }
            BridgeEvent::MediaStalled {
                bridge,
                session,
                silent_for,
            } => publish(
                self,
                session,
                bridge,
                BridgeChange::MediaStalled { silent_for },
            ),
            BridgeEvent::DtmfReceived {
                session,
                digit,
                duration,
                ..
            } => {
                let Some(call) = self.calls.get(&session) else {
                    return;
                };
                call.shared.push_digit(digit);
                let handle = self.handle(call);
                self.bus.publish(SessionEvent::DtmfReceived {
                    session_id: session,
                    digit,
                    duration,
                });
                self.guarded("on_dtmf", |h| {
                    h.on_dtmf(&handle, digit, DtmfMethod::Rfc4733)
                });
            }
            _ => {}
        }
    }

    /// A call that replaced another (RFC 3891) is up: it takes the old call's place in its
    /// bridge, if it was in one (joining first, so no one hears a gap), and the old call ends
    /// with BYE.
    pub(super) async fn flush_replacements(&mut self) {
        for (new, old) in std::mem::take(&mut self.pending_replacements) {
            let bridge = self.calls.get(&old).and_then(|call| call.bridged);
            if let Some(bridge) = bridge
                && let Err(error) = self
                    .join_bridge(new, bridge, &JoinSettings::default())
                    .await
            {
                tracing::debug!(session_id = %new, %error, "the replacing call could not join the bridge");
            }
            if let Err(error) = self.hangup(old).await {
                tracing::debug!(session_id = %old, %error, "the replaced call could not be ended");
            }
        }
    }
}
