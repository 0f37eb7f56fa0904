//! The engine's inputs from the network: RTP (relayed in place or absorbed into a mixer)
//! and RTCP (consumed per leg).

use std::time::Instant;

use session_media::rtcp as media_rtcp;
use session_types::SessionId;

use super::{BridgeEngine, Technology};
use crate::error::{Error, Result};
use crate::event::{BridgeEvent, DropReason, RtpAction};
use crate::leg::duration_of;
use crate::relay::{self, Content, RtpView};
use crate::rtcp;
use crate::timer::Timer;

impl BridgeEngine {
    /// One datagram that arrived on `session`'s RTP socket: the first `len` bytes of `buffer`.
    ///
    /// In a relay the packet is rewritten in place for the other member's stream and the
    /// answer is [`RtpAction::Forward`]; nothing is allocated. In a mixer the audio goes into
    /// the member's jitter buffer ([`RtpAction::Absorbed`]). An RFC 4733 event is reported as
    /// [`BridgeEvent::DtmfReceived`] in both, relayed with the listener's payload type, never
    /// mixed. RTCP (rtcp-mux) is handed to [`BridgeEngine::handle_rtcp`] and absorbed.
    /// Anything else is [`RtpAction::Dropped`]; no input panics.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        session: SessionId,
        buffer: &mut [u8],
        len: usize,
    ) -> RtpAction {
        let Some(datagram) = buffer.get(..len) else {
            return RtpAction::Dropped(DropReason::Malformed);
        };
        if media_rtcp::is_rtcp(datagram) {
            return match self.handle_rtcp(now, session, datagram) {
                Ok(()) => RtpAction::Absorbed,
                Err(Error::NotBridged(_)) => RtpAction::Dropped(DropReason::UnknownSession),
                Err(_) => RtpAction::Dropped(DropReason::Malformed),
            };
        }
        let Some(view) = RtpView::parse(datagram) else {
            if let Some(m) = self.members.get_mut(&session) {
                m.counters.dropped += 1;
            }
            return RtpAction::Dropped(DropReason::Malformed);
        };
        let payload = datagram.get(view.payload.clone()).unwrap_or_default();
        let Self {
            config,
            bridges,
            members,
            timers,
            events,
            transcoder,
            ..
        } = self;

        // The talker's side: reception statistics, stall bookkeeping, what the packet carries.
        let Some(talker) = members.get_mut(&session) else {
            return RtpAction::Dropped(DropReason::UnknownSession);
        };
        talker.counters.packets_in += 1;
        talker
            .leg
            .reception
            .on_rtp(now, view.ssrc, view.sequence, view.timestamp);
        talker.last_rx = Some(now);
        talker.stall_reported = false;
        if talker.stall_check.is_none() {
            let at = now + config.stall_timeout;
            talker.stall_check = Some(at);
            timers.push(at, Timer::Stall(session, talker.generation));
        }
        let Some(bridge) = bridges.get_mut(&talker.bridge) else {
            return RtpAction::Dropped(DropReason::UnknownSession);
        };
        let content = if talker.leg.is_telephone_event(view.payload_type) {
            Content::Event
        } else if let Some(law) = talker.leg.law_of(view.payload_type) {
            Content::Audio(law)
        } else {
            talker.counters.dropped += 1;
            bridge.dropped += 1;
            return RtpAction::Dropped(DropReason::UnknownPayloadType(view.payload_type));
        };
        if content == Content::Event
            && let Some(digit) = talker.dtmf.on_packet(view.timestamp, payload)
        {
            talker.counters.dtmf += 1;
            if events.len() >= config.max_queued_events {
                tracing::debug!(session_id = %session, "event queue full: DTMF digit not queued");
            } else {
                events.push_back(BridgeEvent::DtmfReceived {
                    bridge: talker.bridge,
                    session,
                    digit: digit.digit,
                    duration: duration_of(u32::from(digit.duration)),
                });
            }
        }

        if bridge.technology == Technology::Mixer {
            if let Content::Audio(law) = content {
                talker.push_audio(
                    now,
                    law,
                    view.sequence,
                    view.timestamp,
                    view.marker,
                    payload,
                );
            }
            return RtpAction::Absorbed;
        }

        // A relay: the other member's stream takes the packet.
        let talker_muted = talker.muted;
        let other = match bridge.members.as_slice() {
            [a, b] if *a == session => Some(*b),
            [a, b] if *b == session => Some(*a),
            _ => None,
        };
        let verdict = match other.and_then(|id| members.get_mut(&id).map(|l| (id, l))) {
            None => Err(DropReason::NoListener),
            Some((_, listener)) if talker_muted || listener.gain_from(session).is_zero() => {
                listener.relay_map = None;
                Err(DropReason::Muted)
            }
            Some((_, listener)) if listener.deaf => {
                listener.relay_map = None;
                Err(DropReason::Deaf)
            }
            Some((_, listener)) if !listener.sending => Err(DropReason::NotSending),
            Some((id, listener)) => {
                let packet = buffer.get_mut(..len).unwrap_or_default();
                let target = relay::Listener {
                    codec: listener.leg.codec,
                    telephone_event: listener.leg.telephone_event,
                    stream: &mut listener.leg.stream,
                    map: &mut listener.relay_map,
                };
                relay::rewrite(now, packet, &view, content, target, transcoder).map(|()| {
                    listener.counters.packets_out += 1;
                    id
                })
            }
        };
        match verdict {
            Ok(listener) => {
                bridge.forwarded += 1;
                if let Some(talker) = members.get_mut(&session) {
                    talker.counters.forwarded += 1;
                }
                RtpAction::Forward {
                    from: listener,
                    len,
                }
            }
            Err(reason) => {
                bridge.dropped += 1;
                if let Some(talker) = members.get_mut(&session) {
                    talker.counters.dropped += 1;
                }
                RtpAction::Dropped(reason)
            }
        }
    }

    /// An RTCP datagram that arrived for `session` (on its RTCP socket, or on its RTP socket
    /// with rtcp-mux): its SRs and report blocks update the leg's figures. Reports are never
    /// forwarded; each leg sends its own.
    pub fn handle_rtcp(&mut self, now: Instant, session: SessionId, datagram: &[u8]) -> Result<()> {
        let member = self
            .members
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        let packets = media_rtcp::parse_compound(datagram)?;
        rtcp::absorb(
            &mut member.leg,
            &mut member.rtcp,
            &self.config.ntp,
            &packets,
            now,
        );
        Ok(())
    }
}
