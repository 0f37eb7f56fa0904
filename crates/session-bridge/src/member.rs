//! A member of a bridge: the [`Leg`] it brought, its settings (mute, deaf, pair gains as a
//! listener), and what the engine keeps for it while it is bridged — the relay map onto its
//! stream, its mixer input (jitter buffer and re-framer, only while its bridge mixes), the DTMF
//! detector, RTCP and stall bookkeeping, and counters.

use std::time::Instant;

use session_media::AudioFrame;
use session_media::dtmf::DtmfDetector;
use session_media::jitter::{JitterBuffer, JitterConfig, JitterStats};
use session_media::reframe::Reframer;
use session_types::SessionId;

use crate::engine::BridgeId;
use crate::leg::Leg;
use crate::mix::Gain;
use crate::relay::RelayMap;
use crate::rtcp::LegRtcp;

/// Counters of one member while bridged.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) packets_in: u64,
    pub(crate) packets_out: u64,
    pub(crate) forwarded: u64,
    pub(crate) dropped: u64,
    pub(crate) mixed: u64,
    pub(crate) dtmf: u64,
}

/// What a member needs while its bridge mixes: received audio in 20 ms frames (any packet
/// time) and a jitter buffer to pull one frame per tick from.
#[derive(Debug)]
pub(crate) struct MixerInput {
    jitter: JitterBuffer,
    reframer: Reframer,
}

/// Settings a member joins with, in force from its first packet: a supervisor joining as a
/// monitor is never heard, not even for the instant before a `set_muted` would arrive.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JoinSettings {
    /// Nobody hears the new member.
    pub muted: bool,
    /// The new member hears nothing.
    pub deaf: bool,
    /// Only these members hear it (whisper); every other member already in the bridge hears
    /// it at [`Gain::ZERO`]. `None`: everyone does.
    pub heard_only_by: Option<Vec<SessionId>>,
    /// The gains the new member hears members already in the bridge with.
    pub hears: Vec<(SessionId, Gain)>,
}

impl JoinSettings {
    /// Joins muted: a monitor (hears everyone, nobody hears it).
    pub fn monitor() -> Self {
        Self {
            muted: true,
            ..Self::default()
        }
    }

    /// Joins heard by `listener` only: whisper coaching.
    pub fn whisper_to(listener: SessionId) -> Self {
        Self::heard_only_by([listener])
    }

    /// Joins heard only by `listeners` (none: heard by nobody already in the bridge, through
    /// pair gains the application may later raise one by one — unlike [`JoinSettings::monitor`],
    /// which mutes).
    pub fn heard_only_by(listeners: impl IntoIterator<Item = SessionId>) -> Self {
        Self {
            heard_only_by: Some(listeners.into_iter().collect()),
            ..Self::default()
        }
    }

    /// Joins deaf as well.
    pub fn deaf(mut self) -> Self {
        self.deaf = true;
        self
    }

    /// Hears `talker` (a member already in the bridge) with `gain`.
    pub fn hearing(mut self, talker: SessionId, gain: Gain) -> Self {
        self.hears.push((talker, gain));
        self
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) bridge: BridgeId,
    /// Index in the bridge's member list (and in the mix of a tick).
    pub(crate) slot: usize,
    /// Unique per join, so a timer of an earlier membership never fires for this one.
    pub(crate) generation: u64,
    pub(crate) leg: Leg,
    pub(crate) muted: bool,
    pub(crate) deaf: bool,
    /// Whether anything is sent to this member's peer; `false` while the peer holds the call
    /// (it offered `sendonly` or `inactive`, so we answered `recvonly`/`inactive`: RFC 3264
    /// §6.1 forbids sending then, not even silence).
    pub(crate) sending: bool,
    /// Pair gains with this member as the listener; only gains other than unity are kept.
    pub(crate) gains: Vec<(SessionId, Gain)>,
    /// How the other member's packets land on this member's stream in a relay.
    pub(crate) relay_map: Option<RelayMap>,
    pub(crate) mixer: Option<MixerInput>,
    /// Jitter buffer counters of earlier mixer periods (a buffer is dropped with its period).
    pub(crate) jitter_totals: JitterStats,
    pub(crate) dtmf: DtmfDetector,
    pub(crate) rtcp: LegRtcp,
    /// When the last RTP packet came; `None` until the member's media starts.
    pub(crate) last_rx: Option<Instant>,
    /// A stall check is scheduled at this instant.
    pub(crate) stall_check: Option<Instant>,
    /// The current silence was already reported.
    pub(crate) stall_reported: bool,
    pub(crate) counters: Counters,
}

impl Member {
    pub(crate) fn new(bridge: BridgeId, slot: usize, generation: u64, leg: Leg) -> Self {
        Self {
            bridge,
            slot,
            generation,
            leg,
            muted: false,
            deaf: false,
            sending: true,
            gains: Vec::new(),
            relay_map: None,
            mixer: None,
            jitter_totals: JitterStats::default(),
            dtmf: DtmfDetector::new(),
            rtcp: LegRtcp::default(),
            last_rx: None,
            stall_check: None,
            stall_reported: false,
            counters: Counters::default(),
        }
    }

    /// True when a setting makes an automatic bridge mix (mute, deaf, a pair gain).
    pub(crate) fn has_settings(&self) -> bool {
        self.muted || self.deaf || !self.gains.is_empty()
    }

    /// The member's bridge starts mixing: a fresh jitter buffer, unless it already has one
    /// (it moved from one mixing bridge to another and its input goes on).
    pub(crate) fn enter_mixer(&mut self, config: JitterConfig) {
        if self.mixer.is_none() {
            self.mixer = Some(MixerInput {
                jitter: JitterBuffer::new(config),
                reframer: Reframer::new(),
            });
        }
    }

    /// The member's bridge stops mixing (or the member leaves): the jitter buffer goes, its
    /// counters are kept.
    pub(crate) fn leave_mixer(&mut self) {
        if let Some(input) = self.mixer.take() {
            add_jitter_stats(&mut self.jitter_totals, input.jitter.stats());
        }
    }

    /// Decodes received audio into the jitter buffer (mixer only).
    pub(crate) fn push_audio(
        &mut self,
        now: Instant,
        law: session_media::g711::G711Law,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let Some(input) = self.mixer.as_mut() else {
            return;
        };
        input
            .reframer
            .push(law, sequence, timestamp, marker, payload);
        while let Some(frame) = input.reframer.pop() {
            input
                .jitter
                .push(now, frame.sequence, frame.timestamp, frame.frame);
        }
    }

    /// The member's input for a tick.
    pub(crate) fn pull(&mut self, at: Instant) -> AudioFrame {
        match self.mixer.as_mut() {
            Some(input) => input.jitter.pop(at).0,
            None => AudioFrame::silence(),
        }
    }

    /// Jitter buffer counters over the whole membership.
    pub(crate) fn jitter_stats(&self) -> JitterStats {
        let mut total = self.jitter_totals;
        if let Some(input) = &self.mixer {
            add_jitter_stats(&mut total, input.jitter.stats());
        }
        total
    }

    /// The gain this member hears `talker` with.
    pub(crate) fn gain_from(&self, talker: SessionId) -> Gain {
        self.gains
            .iter()
            .find(|(t, _)| *t == talker)
            .map_or(Gain::UNITY, |(_, g)| *g)
    }

    /// Sets a pair gain; unity removes it.
    pub(crate) fn set_gain(&mut self, talker: SessionId, gain: Gain) {
        self.gains.retain(|(t, _)| *t != talker);
        if !gain.is_unity() {
            self.gains.push((talker, gain));
        }
    }
}

fn add_jitter_stats(total: &mut JitterStats, more: JitterStats) {
    total.received += more.received;
    total.played += more.played;
    total.concealed += more.concealed;
    total.silence += more.silence;
    total.late += more.late;
    total.duplicates += more.duplicates;
    total.dropped += more.dropped;
    total.rebuffers += more.rebuffers;
    total.lost += more.lost;
}
