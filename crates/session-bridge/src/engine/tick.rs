//! The engine's timers: mixer ticks (see the module docs of `engine`), RTCP reports and
//! stall checks, all from one heap.

use std::time::Instant;

use session_media::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES};
use session_types::SessionId;

use super::{Bridge, BridgeEngine, BridgeId, Technology};
use crate::event::{BridgeEvent, TransmitKind};
use crate::leg::FRAME_TS;
use crate::rtcp;
use crate::timer::Timer;

impl BridgeEngine {
    /// Runs what is due at `now`: mixer ticks, RTCP reports, stall checks.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Tick(bridge) => self.tick(now, bridge, at),
                Timer::Rtcp(session, generation) => self.report(now, session, generation, at),
                Timer::Stall(session, generation) => {
                    self.check_stall(now, session, generation, at);
                }
            }
        }
    }

    /// Runs a bridge's mixer tick due at `at`.
    fn tick(&mut self, now: Instant, id: BridgeId, at: Instant) {
        let Self {
            config,
            bridges,
            members,
            timers,
            outbox,
            ..
        } = self;
        let Some(bridge) = bridges.get_mut(&id) else {
            return;
        };
        if bridge.next_tick != Some(at) || bridge.technology != Technology::Mixer {
            return;
        }
        // Far behind (the driver stalled): skip the missed ticks instead of sending a burst.
        let at = if now.saturating_duration_since(at) > config.max_tick_lag {
            now
        } else {
            at
        };
        let Bridge {
            members: ids,
            bus,
            mixed_ticks,
            next_tick,
            ..
        } = bridge;

        bus.begin();
        for session in ids.iter() {
            match members.get_mut(session) {
                Some(m) => {
                    let frame = m.pull(at);
                    bus.push(frame, !m.muted);
                }
                None => bus.push(AudioFrame::silence(), false),
            }
        }
        for (slot, session) in ids.iter().enumerate() {
            let Some(m) = members.get(session) else {
                continue;
            };
            if !m.sending {
                continue;
            }
            let frame = if m.deaf {
                AudioFrame::silence()
            } else {
                let gains = m.gains.iter().filter_map(|(talker, gain)| {
                    members
                        .get(talker)
                        .filter(|t| t.bridge == id)
                        .map(|t| (t.slot, *gain))
                });
                bus.output(slot, gains)
            };
            if !outbox.has_room() {
                continue;
            }
            let Some(m) = members.get_mut(session) else {
                continue;
            };
            let codec = m.leg.codec;
            let (sequence, timestamp, marker) = m.leg.stream.stamp_audio(at, FRAME_TS);
            let ssrc = m.leg.stream.ssrc;
            m.counters.mixed += 1;
            m.counters.packets_out += 1;
            outbox.push(*session, TransmitKind::Rtp, |buf| {
                write_rtp_header(buf, marker, codec.payload_type, sequence, timestamp, ssrc);
                let mut payload = [0u8; FRAME_SAMPLES];
                buf.extend_from_slice(codec.law.encode_frame(&frame, &mut payload));
            });
        }
        *mixed_ticks += 1;
        let next = at + FRAME_DURATION;
        *next_tick = Some(next);
        timers.push(next, Timer::Tick(id));
    }

    /// Sends a member's RTCP report due at `at`.
    fn report(&mut self, now: Instant, session: SessionId, generation: u64, at: Instant) {
        let Some(m) = self.members.get_mut(&session) else {
            return;
        };
        if m.generation != generation || m.rtcp.next_report != Some(at) {
            return;
        }
        if self.outbox.has_room() {
            let (leg, clock, cname) = (&mut m.leg, &self.config.ntp, &self.config.cname);
            self.outbox.push(session, TransmitKind::Rtcp, |buf| {
                rtcp::write_report(buf, leg, clock, cname, now);
            });
            m.rtcp.sent += 1;
        }
        let mut next = at + self.config.rtcp_interval;
        if next <= now {
            next = now + self.config.rtcp_interval;
        }
        m.rtcp.next_report = Some(next);
        self.timers.push(next, Timer::Rtcp(session, generation));
    }

    /// A member's stall check due at `at`: reports a silence once, or checks again later.
    fn check_stall(&mut self, now: Instant, session: SessionId, generation: u64, at: Instant) {
        let Some(m) = self.members.get_mut(&session) else {
            return;
        };
        if m.generation != generation || m.stall_check != Some(at) {
            return;
        }
        m.stall_check = None;
        let Some(last) = m.last_rx else {
            return;
        };
        if m.stall_reported {
            return;
        }
        let deadline = last + self.config.stall_timeout;
        if now >= deadline {
            m.stall_reported = true;
            self.events.push_back(BridgeEvent::MediaStalled {
                bridge: m.bridge,
                session,
                silent_for: now.saturating_duration_since(last),
            });
            tracing::debug!(bridge = %m.bridge, session_id = %session, "media stalled");
        } else {
            m.stall_check = Some(deadline);
            self.timers
                .push(deadline, Timer::Stall(session, generation));
        }
    }
}

/// Appends a 12-byte RTP header (RFC 3550 §5.1: version 2, no padding, extension or CSRC).
fn write_rtp_header(
    buf: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    buf.push(0x80);
    buf.push((u8::from(marker) << 7) | (payload_type & 0x7F));
    buf.extend_from_slice(&sequence.to_be_bytes());
    buf.extend_from_slice(&timestamp.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
}
