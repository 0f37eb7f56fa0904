//! A call's media leg as the engine holds it while the call is bridged: its codec and payload
//! types, its RTCP identity, what it has received, and — most important — its *outgoing stream
//! state*, which the engine advances and hands back when the leg leaves.
//!
//! # One stream per leg, whatever happens behind it
//!
//! The far end of a leg sees one RTP stream (RFC 3550 §5.1): one SSRC, sequence numbers that
//! go up by one per packet, and timestamps on the 8 kHz sampling clock. Behind it the engine
//! may relay another member's packets, send mixer output, switch between the two, or move the
//! leg to another bridge. [`StreamState`] is the single place every one of those paths takes
//! its numbers from:
//!
//! - the sequence number is the next one in line, so it never skips or repeats;
//! - the timestamp follows the sampling clock: `next_due` is the instant `next_timestamp`
//!   stands for, and a packet sent two frames or more after that instant jumps the timestamp
//!   by the whole frames that went unsent and carries the marker bit (the rule of
//!   `session_media::rtp::RtpSender::audio_at`, so a leg behaves the same bridged or not);
//! - the packet and octet counts go on across hand-overs, because an SR's counts cover the
//!   SSRC's whole life (RFC 3550 §6.4.1).

use std::time::{Duration, Instant};

use session_media::g711::G711Law;
use session_media::rtcp::ReceptionStats;
use session_media::rtp::{RtpSender, SenderState};
use session_media::{FRAME_SAMPLES, SAMPLE_RATE};

/// Samples in one 20 ms frame, as RTP timestamp units.
pub(crate) const FRAME_TS: u32 = FRAME_SAMPLES as u32;

/// The audio codec of a leg: a G.711 law and the payload type negotiated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Codec {
    /// µ-law or A-law.
    pub law: G711Law,
    /// The RTP payload type (the static 0 or 8 in practice, but any negotiated number works).
    pub payload_type: u8,
}

impl Codec {
    /// A codec with an explicit payload type.
    pub fn new(law: G711Law, payload_type: u8) -> Self {
        Self { law, payload_type }
    }

    /// PCMU with its static payload type 0.
    pub fn pcmu() -> Self {
        Self::new(G711Law::Ulaw, G711Law::Ulaw.payload_type())
    }

    /// PCMA with its static payload type 8.
    pub fn pcma() -> Self {
        Self::new(G711Law::Alaw, G711Law::Alaw.payload_type())
    }
}

/// The state of a leg's outgoing RTP stream: what the next packet must carry so the far end
/// sees one continuous stream (RFC 3550 §5.1) whatever the bridge does behind it.
///
/// - The sequence number is the next one in line, so it never skips or repeats.
/// - The timestamp follows the sampling clock: `next_due` is the instant `next_timestamp`
///   stands for, and a packet sent two frames or more after that instant jumps the timestamp
///   by the whole frames that went unsent and carries the marker bit (the rule of
///   `session_media::rtp::RtpSender::audio_at`, so a leg behaves the same bridged or not).
/// - The packet and octet counts go on across hand-overs: an SR's counts cover the SSRC's
///   whole life (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamState {
    /// The stream's SSRC; it never changes while the call lasts.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub next_sequence: u16,
    /// Timestamp of the next audio packet if it goes out at `next_due`.
    pub next_timestamp: u32,
    /// The instant `next_timestamp` stands for on the sampling clock; `None` before the first
    /// packet (the first packet then takes `next_timestamp` as it is).
    pub next_due: Option<Instant>,
    /// RTP packets sent on this SSRC so far (the SR packet count).
    pub packets: u64,
    /// Payload octets sent on this SSRC so far (the SR octet count).
    pub octets: u64,
    /// The next audio packet starts a talk-spurt and carries the marker bit.
    pub marker_pending: bool,
}

impl StreamState {
    /// A stream that has sent nothing yet, starting at the given SSRC, sequence number and
    /// timestamp (RFC 3550 §5.1 wants the first two random; the caller chooses them).
    pub fn new(ssrc: u32, next_sequence: u16, next_timestamp: u32) -> Self {
        Self {
            ssrc,
            next_sequence,
            next_timestamp,
            next_due: None,
            packets: 0,
            octets: 0,
            marker_pending: true,
        }
    }

    /// The state of a call's `RtpSender`, to bridge the call: every field, so the bridged
    /// stream continues exactly (the sampling instant, the pending marker and the SR counts
    /// included).
    pub fn from_sender(sender: &RtpSender) -> Self {
        Self::from_sender_state(&sender.state())
    }

    /// The same from the sender's state as plain data (what
    /// `session_media::endpoint::EndpointParts` carries). The stream is on the 8 kHz G.711
    /// clock; the state's clock rate is not looked at.
    pub fn from_sender_state(state: &SenderState) -> Self {
        Self {
            ssrc: state.ssrc,
            next_sequence: state.next_sequence,
            next_timestamp: state.next_timestamp,
            next_due: state.next_due,
            packets: state.packets,
            octets: state.octets,
            marker_pending: state.talkspurt,
        }
    }

    /// An `RtpSender` that continues this stream exactly: same SSRC, next sequence number,
    /// timestamp on the same sampling clock, pending marker and SR counts (RFC 3550 §6.4.1).
    pub fn to_sender(&self) -> RtpSender {
        RtpSender::from_state(self.to_sender_state())
    }

    /// This stream as an `RtpSender`'s state (8 kHz).
    pub fn to_sender_state(&self) -> SenderState {
        let mut state = SenderState::new(self.ssrc, self.next_sequence, self.next_timestamp);
        state.next_due = self.next_due;
        state.packets = self.packets;
        state.octets = self.octets;
        state.talkspurt = self.marker_pending;
        state.clock_rate = SAMPLE_RATE;
        state
    }

    /// The timestamp that stands for `now` on this stream's sampling clock (for an SR, RFC 3550
    /// §6.4.1): `next_timestamp` moved by the time between `next_due` and `now`.
    pub fn timestamp_at(&self, now: Instant) -> u32 {
        match self.next_due {
            Some(due) if now >= due => self
                .next_timestamp
                .wrapping_add(samples_in(now.duration_since(due))),
            Some(due) => self
                .next_timestamp
                .wrapping_sub(samples_in(due.duration_since(now))),
            None => self.next_timestamp,
        }
    }

    /// The timestamp for an audio packet sent at `at` and whether it jumped: two frames or more
    /// after `next_due` the timestamp moves by the whole frames that went unsent (rounded to
    /// the nearest), so the receiver sees a pause as time, not as jitter (RFC 3550 §5.1).
    /// Packets closer together than that (a late tick) keep consecutive timestamps.
    pub(crate) fn clock_timestamp(&self, at: Instant) -> (u32, bool) {
        let Some(due) = self.next_due else {
            return (self.next_timestamp, false);
        };
        let late = u128::from(samples_in_wide(at.saturating_duration_since(due)));
        let frame = u128::from(FRAME_TS);
        if late < 2 * frame {
            return (self.next_timestamp, false);
        }
        let frames = (late + frame / 2) / frame;
        let jump = u32::try_from((frames * frame) % (1 << 32)).unwrap_or(0);
        (self.next_timestamp.wrapping_add(jump), true)
    }

    /// Stamps the next audio packet of `samples` sent at `at`: returns (sequence, timestamp,
    /// marker) and advances the stream past it.
    pub(crate) fn stamp_audio(&mut self, at: Instant, samples: u32) -> (u16, u32, bool) {
        let (timestamp, jumped) = self.clock_timestamp(at);
        let pending = std::mem::take(&mut self.marker_pending);
        let marker = jumped || pending;
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        self.next_timestamp = timestamp.wrapping_add(samples);
        self.next_due = Some(at + duration_of(samples));
        self.packets += 1;
        self.octets += u64::from(samples);
        (sequence, timestamp, marker)
    }

    /// Brings the state to `now` before it is handed back: if the stream has been quiet for
    /// two frames or more, the timestamp moves on to where the clock is and the next packet
    /// will carry the marker bit. A consumer that cannot take `next_due` (an `RtpSender`) then
    /// continues correctly from `now`.
    pub(crate) fn settle(&mut self, now: Instant) {
        let (timestamp, jumped) = self.clock_timestamp(now);
        if jumped {
            self.next_timestamp = timestamp;
            self.next_due = Some(now);
            self.marker_pending = true;
        }
    }
}

impl From<&RtpSender> for StreamState {
    fn from(sender: &RtpSender) -> Self {
        Self::from_sender(sender)
    }
}

/// Timestamp units in `d` at 8 kHz, modulo 2^32 (timestamps wrap; so may a distance).
pub(crate) fn samples_in(d: Duration) -> u32 {
    (samples_in_wide(d) % (1 << 32)) as u32
}

fn samples_in_wide(d: Duration) -> u64 {
    let samples = d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// The duration of `samples` at 8 kHz.
pub(crate) fn duration_of(samples: u32) -> Duration {
    Duration::from_nanos(u64::from(samples) * 1_000_000_000 / u64::from(SAMPLE_RATE))
}

/// A call's media leg while it is bridged. See the module docs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Leg {
    /// The negotiated audio codec.
    pub codec: Codec,
    /// The negotiated RFC 4733 telephone-event payload type, if any. Without one, DTMF events
    /// from other members cannot be relayed to this leg (they are still reported as events).
    pub telephone_event: Option<u8>,
    /// The telephone-event payload type the peer sends events with, when it differs from
    /// `telephone_event`: RFC 3264 §6.1 lets an answerer number a dynamic type differently
    /// from the offer, and each side sends with the number the other wrote. `None`: the peer
    /// sends with `telephone_event` too.
    pub receive_telephone_event: Option<u8>,
    /// The outgoing stream; advanced while bridged and handed back with the leg.
    pub stream: StreamState,
    /// Statistics of what this leg receives (the source of its RTCP report blocks); handed
    /// over in both directions so reports stay continuous.
    pub reception: ReceptionStats,
    /// The CNAME in this leg's RTCP SDES (RFC 3550 §6.5.1 wants it to stay the same for the
    /// endpoint); `None` uses the engine's.
    pub cname: Option<String>,
}

impl Leg {
    /// A leg with the given codec and outgoing stream, no telephone-event payload type,
    /// nothing received yet and the engine's CNAME.
    pub fn new(codec: Codec, stream: StreamState) -> Self {
        Self {
            codec,
            telephone_event: None,
            receive_telephone_event: None,
            stream,
            reception: ReceptionStats::new(SAMPLE_RATE),
            cname: None,
        }
    }

    /// Sets the telephone-event payload type (RFC 4733).
    #[must_use]
    pub fn with_telephone_event(mut self, payload_type: u8) -> Self {
        self.telephone_event = Some(payload_type);
        self
    }

    /// Sets the telephone-event payload type the peer sends events with, when it differs from
    /// the one events are sent to it with (see [`Leg::receive_telephone_event`]).
    #[must_use]
    pub fn with_receive_telephone_event(mut self, payload_type: u8) -> Self {
        self.receive_telephone_event = Some(payload_type);
        self
    }

    /// Sets the RTCP CNAME.
    #[must_use]
    pub fn with_cname(mut self, cname: impl Into<String>) -> Self {
        self.cname = Some(cname.into());
        self
    }

    /// Takes over the reception statistics the call kept while it stood alone.
    #[must_use]
    pub fn with_reception(mut self, reception: ReceptionStats) -> Self {
        self.reception = reception;
        self
    }

    /// Checks what the engine relies on: payload types are 7-bit and tell audio from events.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.codec.payload_type > 127 {
            return Err("the audio payload type is above 127");
        }
        for pt in [self.telephone_event, self.receive_telephone_event]
            .into_iter()
            .flatten()
        {
            if pt > 127 {
                return Err("the telephone-event payload type is above 127");
            }
            if pt == self.codec.payload_type {
                return Err("the telephone-event payload type equals the audio one");
            }
        }
        Ok(())
    }

    /// Whether a received payload type is an RFC 4733 event from the peer.
    pub(crate) fn is_telephone_event(&self, payload_type: u8) -> bool {
        let pt = Some(payload_type);
        pt == self.telephone_event || pt == self.receive_telephone_event
    }

    /// The G.711 law of a received payload type: the leg's own, or a static G.711 number
    /// (a peer may switch between the codecs both sides listed; those have fixed numbers).
    pub(crate) fn law_of(&self, payload_type: u8) -> Option<G711Law> {
        if payload_type == self.codec.payload_type {
            Some(self.codec.law)
        } else if payload_type == G711Law::Ulaw.payload_type() {
            Some(G711Law::Ulaw)
        } else if payload_type == G711Law::Alaw.payload_type() {
            Some(G711Law::Alaw)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn stamping_follows_the_sampling_clock() {
        let t0 = Instant::now();
        let mut s = StreamState::new(7, 65_535, 1000);
        assert_eq!(s.stamp_audio(ms(t0, 0), 160), (65_535, 1000, true));
        // A late tick (35 ms instead of 20) is jitter, not a pause.
        assert_eq!(s.stamp_audio(ms(t0, 35), 160), (0, 1160, false));
        assert_eq!(s.stamp_audio(ms(t0, 55), 160), (1, 1320, false));
        // 2.1 s of nothing: the timestamp follows the clock and the marker is set.
        let (seq, ts, marker) = s.stamp_audio(ms(t0, 55 + 2100), 160);
        assert_eq!((seq, ts, marker), (2, 1480 + 2080 * 8, true));
        assert_eq!((s.packets, s.octets), (4, 640));
    }

    #[test]
    fn settle_moves_a_quiet_stream_to_now() {
        let t0 = Instant::now();
        let mut s = StreamState::new(1, 10, 0);
        s.marker_pending = false;
        s.stamp_audio(t0, 160);
        let mut same = s;
        same.settle(ms(t0, 30));
        assert_eq!(same, s, "within two frames nothing changes");
        s.settle(ms(t0, 1020));
        assert_eq!(s.next_timestamp, 160 + 8000, "50 frames went unsent");
        assert_eq!(s.next_due, Some(ms(t0, 1020)));
        assert!(s.marker_pending);
        assert_eq!(s.timestamp_at(ms(t0, 1030)), 8240);
        assert_eq!(s.timestamp_at(ms(t0, 1010)), 8080);
    }

    #[test]
    fn converts_to_and_from_a_sender() {
        let t0 = Instant::now();
        let mut sender = RtpSender::new(0xABCD, 100, 5000);
        sender.audio_at(t0, 0, &[0xFF; 160], 160).ok();
        let state = StreamState::from(&sender);
        assert_eq!(
            (state.ssrc, state.next_sequence, state.next_timestamp),
            (0xABCD, 101, 5160)
        );
        assert_eq!((state.packets, state.octets), (1, 160));
        assert_eq!(state.next_due, Some(ms(t0, 20)));
        assert!(!state.marker_pending);
        let back = state.to_sender();
        assert_eq!(back.state(), sender.state(), "an exact round trip");
        assert_eq!(StreamState::from(&back), state);

        // The bridge's stamping and the sender's agree after the hand-over, pause included.
        let mut bridged = state;
        let mut alone = sender;
        for at in [ms(t0, 20), ms(t0, 40), ms(t0, 900)] {
            let (seq, ts, marker) = bridged.stamp_audio(at, 160);
            let packet = alone.audio_at(at, 0, &[0xFF; 160], 160).ok();
            let header = packet
                .and_then(|p| session_media::rtp::parse(p).ok())
                .map(|h| h.0);
            let header = header.map(|h| (h.sequence, h.timestamp, h.marker));
            assert_eq!(header, Some((seq, ts, marker)));
        }
        assert_eq!(bridged.to_sender().state(), alone.state());
    }

    #[test]
    fn legs_are_validated() {
        let leg = Leg::new(Codec::pcmu(), StreamState::new(1, 0, 0));
        assert!(leg.validate().is_ok());
        assert!(leg.clone().with_telephone_event(0).validate().is_err());
        assert!(leg.clone().with_telephone_event(200).validate().is_err());
        assert!(
            leg.clone()
                .with_receive_telephone_event(0)
                .validate()
                .is_err()
        );
        let both = leg
            .clone()
            .with_telephone_event(101)
            .with_receive_telephone_event(96);
        assert!(both.validate().is_ok());
        assert!(both.is_telephone_event(101) && both.is_telephone_event(96));
        assert!(!both.is_telephone_event(0) && !leg.is_telephone_event(101));
        let odd = Leg::new(Codec::new(G711Law::Alaw, 130), StreamState::new(1, 0, 0));
        assert!(odd.validate().is_err());
        assert_eq!(leg.law_of(8), Some(G711Law::Alaw));
        assert_eq!(leg.law_of(101), None);
    }
}
