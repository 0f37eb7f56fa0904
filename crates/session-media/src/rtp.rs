//! RTP packets (RFC 3550 §5) through the `rtp-rs` crate: zero-copy parsing with `RtpReader`
//! and building into one reused buffer with `RtpPacketBuilder::build_into`, plus the sender
//! state of a stream — SSRC, sequence number and timestamp (both wrap around), and the
//! marker bit on the first packet of a talk-spurt. [`RtpSender::audio_at`] keeps the timestamp on
//! the sampling clock across pauses in sending (RFC 3550 §5.1), with time as an argument.
//!
//! ```
//! use session_media::rtp::{parse, RtpSender};
//!
//! let mut sender = RtpSender::new(0x1234, 65_535, u32::MAX - 100);
//! let first = sender.audio(0, &[0xFF; 160], 160).unwrap().to_vec();
//! let (header, payload) = parse(&first).unwrap();
//! assert!(header.marker); // talk-spurt start
//! assert_eq!((header.sequence, payload.len()), (65_535, 160));
//! let (second, _) = parse(sender.audio(0, &[0xFF; 160], 160).unwrap()).unwrap();
//! assert_eq!((second.sequence, second.timestamp, second.marker), (0, 59, false));
//! ```

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::rtcp::{NtpTime, SenderInfo};

/// Largest RTP packet we build or receive (fits an Ethernet MTU).
pub const MAX_PACKET: usize = 1500;

/// The fixed header fields of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Parses a datagram as RTP: the header and the payload (borrowed, padding removed).
pub fn parse(datagram: &[u8]) -> Result<(RtpHeader, &[u8])> {
    let reader = RtpReader::new(datagram).map_err(|e| {
        Error::MalformedRtp(match e {
            rtp_rs::RtpReaderError::BufferTooShort(_) => "shorter than the 12-byte header",
            rtp_rs::RtpReaderError::UnsupportedVersion(_) => "version is not 2",
            rtp_rs::RtpReaderError::HeadersTruncated { .. } => "headers truncated",
            rtp_rs::RtpReaderError::PaddingLengthInvalid(_) => "invalid padding",
        })
    })?;
    let header = RtpHeader {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: u16::from(reader.sequence_number()),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
    };
    Ok((header, reader.payload()))
}

/// Everything an [`RtpSender`] knows about its stream, as plain data: what a new sender needs
/// to continue the stream exactly where another left it ([`RtpSender::from_state`],
/// [`RtpSender::state`]). A call's stream is handed over this way when it is bridged and
/// handed back when it leaves the bridge, so the far end sees one SSRC with contiguous
/// sequence numbers and timestamps on one sampling clock (RFC 3550 §5.1), and the SR's packet
/// and octet counts cover the SSRC's whole life (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderState {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub next_sequence: u16,
    /// Timestamp of the next audio packet if it goes out at `next_due`.
    pub next_timestamp: u32,
    /// The instant `next_timestamp` stands for on the sampling clock; `None` before the first
    /// [`RtpSender::audio_at`] (the next packet then takes `next_timestamp` as it is).
    pub next_due: Option<Instant>,
    /// RTP packets sent on the SSRC so far (the SR packet count).
    pub packets: u64,
    /// Payload octets sent on the SSRC so far (the SR octet count).
    pub octets: u64,
    /// The next audio packet starts a talk-spurt and carries the marker bit.
    pub talkspurt: bool,
    /// Timestamp units per second (8000 for G.711).
    pub clock_rate: u32,
}

impl SenderState {
    /// The state of a stream that has sent nothing yet: the given SSRC, first sequence number
    /// and first timestamp, a talk-spurt pending, 8 kHz.
    pub fn new(ssrc: u32, next_sequence: u16, next_timestamp: u32) -> Self {
        Self {
            ssrc,
            next_sequence,
            next_timestamp,
            next_due: None,
            packets: 0,
            octets: 0,
            talkspurt: true,
            clock_rate: 8000,
        }
    }
}

/// Sender state of one RTP stream; builds packets into a buffer it reuses.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    talkspurt: bool,
    packets: u64,
    octets: u64,
    /// Timestamp units per second (8000 for G.711).
    clock_rate: u32,
    /// When the next audio packet is due if audio goes on without a pause: the instant the
    /// current `timestamp` stands for. Set by [`RtpSender::audio_at`].
    next_due: Option<Instant>,
    buf: Box<[u8; MAX_PACKET]>,
}

impl RtpSender {
    /// A sender with the given SSRC, first sequence number and first timestamp.
    pub fn new(ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            sequence,
            timestamp,
            talkspurt: true,
            packets: 0,
            octets: 0,
            clock_rate: 8000,
            next_due: None,
            buf: Box::new([0; MAX_PACKET]),
        }
    }

    /// A sender with random SSRC, sequence number and timestamp (RFC 3550 §5.1 asks for
    /// random initial values).
    pub fn random() -> Self {
        Self::new(fastrand::u32(..), fastrand::u16(..), fastrand::u32(..))
    }

    /// A sender that continues the stream `state` describes: the same SSRC, the next sequence
    /// number, the timestamp on the same sampling clock, the pending marker bit and the SR
    /// counts. `RtpSender::from_state(s.state())` behaves exactly as `s` does.
    pub fn from_state(state: SenderState) -> Self {
        Self {
            ssrc: state.ssrc,
            sequence: state.next_sequence,
            timestamp: state.next_timestamp,
            talkspurt: state.talkspurt,
            packets: state.packets,
            octets: state.octets,
            clock_rate: state.clock_rate.max(1),
            next_due: state.next_due,
            buf: Box::new([0; MAX_PACKET]),
        }
    }

    /// The stream's state, to continue it elsewhere ([`RtpSender::from_state`]).
    pub fn state(&self) -> SenderState {
        SenderState {
            ssrc: self.ssrc,
            next_sequence: self.sequence,
            next_timestamp: self.timestamp,
            next_due: self.next_due,
            packets: self.packets,
            octets: self.octets,
            talkspurt: self.talkspurt,
            clock_rate: self.clock_rate,
        }
    }

    /// The instant the next audio packet's timestamp stands for on the sampling clock (set by
    /// [`RtpSender::audio_at`]); `None` before the first.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// Whether the next audio packet starts a talk-spurt (carries the marker bit).
    pub fn talkspurt_pending(&self) -> bool {
        self.talkspurt
    }

    /// Timestamp units per second.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number of the next packet.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// Timestamp of the next audio packet.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets sent.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload octets sent.
    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// Marks the next audio packet as the start of a talk-spurt (after silence or DTMF).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt = true;
    }

    /// Sets the timestamp clock rate (8000 Hz, G.711's, by default).
    #[must_use]
    pub fn with_clock_rate(mut self, hz: u32) -> Self {
        self.clock_rate = hz.max(1);
        self
    }

    /// Moves the timestamp on by `samples` without sending (silence suppression, or time
    /// covered by an RFC 4733 event); the next audio packet starts a talk-spurt. The sampling
    /// clock of [`RtpSender::audio_at`] moves on by as long.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.talkspurt = true;
        let skipped = self.duration_of(samples);
        if let Some(due) = self.next_due.as_mut() {
            *due += skipped;
        }
    }

    fn duration_of(&self, samples: u32) -> Duration {
        Duration::from_nanos(u64::from(samples) * 1_000_000_000 / u64::from(self.clock_rate))
    }

    fn build(&mut self, pt: u8, payload: &[u8], marker: bool, timestamp: u32) -> Result<usize> {
        let len = RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.sequence))
            .timestamp(timestamp)
            .marked(marker)
            .payload(payload)
            .build_into(&mut self.buf[..])
            .map_err(|_| Error::InvalidConfig("RTP packet too large or payload type above 127"))?;
        self.sequence = self.sequence.wrapping_add(1);
        self.packets += 1;
        self.octets += payload.len() as u64;
        Ok(len)
    }

    /// Builds the next audio packet covering `samples` timestamp units; returns its bytes.
    pub fn audio(&mut self, pt: u8, payload: &[u8], samples: u32) -> Result<&[u8]> {
        let marker = self.talkspurt;
        let len = self.build(pt, payload, marker, self.timestamp)?;
        self.talkspurt = false;
        self.timestamp = self.timestamp.wrapping_add(samples);
        Ok(self.buf.get(..len).unwrap_or_default())
    }

    /// [`RtpSender::audio`] for a packet sent at `now`, with the timestamp on the sampling
    /// clock (RFC 3550 §5.1): after a pause in sending (held, answered `recvonly`, a source
    /// that ended before the next was attached) of two packets' time or more, the timestamp
    /// jumps by the whole frames that went unsent and the packet carries the marker bit, so
    /// the receiver sees the gap as time, not as jitter. Packets closer together than that
    /// (a late timer tick) keep consecutive timestamps.
    pub fn audio_at(
        &mut self,
        now: Instant,
        pt: u8,
        payload: &[u8],
        samples: u32,
    ) -> Result<&[u8]> {
        if let Some(due) = self.next_due
            && samples > 0
        {
            let late = now.saturating_duration_since(due);
            let late_samples = late.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
            let frame = u128::from(samples);
            if late_samples >= 2 * frame {
                // Whole frames, rounded to the nearest: what a sender that never paused would
                // have stamped on this packet.
                let frames = (late_samples + frame / 2) / frame;
                let jump = u32::try_from(frames * frame).unwrap_or(u32::MAX);
                self.timestamp = self.timestamp.wrapping_add(jump);
                self.talkspurt = true;
            }
        }
        self.next_due = Some(now + self.duration_of(samples));
        self.audio(pt, payload, samples)
    }

    /// Builds an RFC 4733 event packet stamped with the event's start `timestamp`.
    pub fn event(&mut self, pt: u8, payload: &[u8], marker: bool, timestamp: u32) -> Result<&[u8]> {
        let len = self.build(pt, payload, marker, timestamp)?;
        Ok(self.buf.get(..len).unwrap_or_default())
    }

    /// Sender info for an SR sent at `now`, wall-clock `ntp`. RFC 3550 §6.4.1: its RTP
    /// timestamp stands for the same instant as `ntp`, so it is read off the sampling clock
    /// (the last packet's timestamp moved on by the time since), not the last packet's.
    pub fn sender_info(&self, ntp: NtpTime, now: Instant) -> SenderInfo {
        let rtp_timestamp = match self.next_due {
            Some(due) if now >= due => self
                .timestamp
                .wrapping_add(self.samples_in(now.duration_since(due))),
            Some(due) => self
                .timestamp
                .wrapping_sub(self.samples_in(due.duration_since(now))),
            None => self.timestamp,
        };
        SenderInfo {
            ntp,
            rtp_timestamp,
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
        }
    }

    fn samples_in(&self, elapsed: Duration) -> u32 {
        let samples = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        // The timestamp wraps; so may the distance.
        (samples % (1 << 32)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_timestamp_and_marker() {
        let mut s = RtpSender::new(7, 65_534, u32::MAX - 159);
        let mut headers = Vec::new();
        for _ in 0..3 {
            headers.push(parse(s.audio(8, &[0xD5; 160], 160).unwrap()).unwrap().0);
        }
        s.skip(320);
        headers.push(parse(s.audio(8, &[0xD5; 160], 160).unwrap()).unwrap().0);
        let seqs: Vec<_> = headers.iter().map(|h| h.sequence).collect();
        assert_eq!(seqs, vec![65_534, 65_535, 0, 1]);
        let ts: Vec<_> = headers.iter().map(|h| h.timestamp).collect();
        assert_eq!(ts, vec![u32::MAX - 159, 0, 160, 640]);
        let markers: Vec<_> = headers.iter().map(|h| h.marker).collect();
        assert_eq!(markers, vec![true, false, false, true]);
        assert!(headers.iter().all(|h| h.ssrc == 7 && h.payload_type == 8));
        assert_eq!((s.packets(), s.octets()), (4, 640));
    }

    #[test]
    fn the_timestamp_follows_the_sampling_clock_across_a_pause() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = RtpSender::new(7, 100, 1000);
        let sent = |s: &mut RtpSender, at| {
            parse(s.audio_at(at, 0, &[0xFF; 160], 160).unwrap())
                .unwrap()
                .0
        };
        let first = sent(&mut s, ms(0));
        // A late tick (35 ms instead of 20) is jitter, not a pause.
        let second = sent(&mut s, ms(35));
        let third = sent(&mut s, ms(55));
        assert_eq!(
            [first.timestamp, second.timestamp, third.timestamp],
            [1000, 1160, 1320]
        );
        assert_eq!(
            [first.marker, second.marker, third.marker],
            [true, false, false]
        );
        // 2.1 s without sending (held): the next packet is stamped where the clock is.
        let after = sent(&mut s, ms(55 + 2100));
        assert_eq!(
            after.timestamp,
            1320 + 2100 * 8,
            "2.1 s move the timestamp by 16,800 units, not one frame"
        );
        assert!(after.marker, "a new talk-spurt");
        assert_eq!(
            after.sequence,
            third.sequence + 1,
            "no gap in sequence numbers"
        );
        let next = sent(&mut s, ms(55 + 2120));
        assert_eq!(
            (next.timestamp, next.marker),
            (after.timestamp + 160, false)
        );
    }

    #[test]
    fn a_sender_report_reads_the_timestamp_off_the_sampling_clock() {
        let t0 = Instant::now();
        let mut s = RtpSender::new(7, 100, 1000);
        s.audio_at(t0, 0, &[0xFF; 160], 160).unwrap();
        let ntp = NtpTime(1 << 32);
        assert_eq!(
            s.sender_info(ntp, t0).rtp_timestamp,
            1000,
            "the packet's own instant"
        );
        // Three seconds into a pause.
        let info = s.sender_info(ntp, t0 + Duration::from_secs(3));
        assert_eq!(info.rtp_timestamp, 1000 + 3 * 8000);
        assert_eq!((info.packet_count, info.octet_count), (1, 160));
    }

    #[test]
    fn an_event_skip_moves_the_sampling_clock_too() {
        let t0 = Instant::now();
        let mut s = RtpSender::new(7, 100, 0);
        s.audio_at(t0, 0, &[0xFF; 160], 160).unwrap();
        // A 100 ms digit sent from 20 ms on; the audio resumes where the event ended.
        s.skip(6 * 160);
        let (resumed, _) = parse(
            s.audio_at(t0 + Duration::from_millis(140), 0, &[0xFF; 160], 160)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            resumed.timestamp,
            7 * 160,
            "no second jump for the event's time"
        );
    }

    #[test]
    fn a_stream_continues_exactly_from_its_state() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut original = RtpSender::new(0xFEED, 65_535, u32::MAX - 100);
        original.audio_at(ms(0), 8, &[0xD5; 160], 160).unwrap();
        original.audio_at(ms(20), 8, &[0xD5; 160], 160).unwrap();
        let state = original.state();
        assert_eq!(
            (state.ssrc, state.next_sequence, state.next_timestamp),
            (0xFEED, 1, 219)
        );
        assert_eq!(state.next_due, Some(ms(40)));
        assert_eq!(
            (state.packets, state.octets, state.talkspurt),
            (2, 320, false)
        );
        let mut resumed = RtpSender::from_state(state);
        assert_eq!(resumed.state(), state, "a round trip keeps every field");
        assert_eq!(
            (resumed.next_due(), resumed.talkspurt_pending()),
            (Some(ms(40)), false)
        );
        // Both go on identically: on time, then after a pause (a jump with the marker).
        for at in [ms(40), ms(60), ms(1060)] {
            let a = parse(original.audio_at(at, 8, &[0xD5; 160], 160).unwrap())
                .unwrap()
                .0;
            let b = parse(resumed.audio_at(at, 8, &[0xD5; 160], 160).unwrap())
                .unwrap()
                .0;
            assert_eq!(a, b);
        }
        let ntp = NtpTime(1 << 32);
        assert_eq!(
            original.sender_info(ntp, ms(1100)),
            resumed.sender_info(ntp, ms(1100)),
            "the SR counts and timestamp continue too (RFC 3550 §6.4.1)"
        );
        assert_eq!(resumed.packets(), 5);
        let fresh = SenderState::new(1, 2, 3);
        assert!(RtpSender::from_state(fresh).talkspurt_pending());
        assert_eq!(
            RtpSender::from_state(fresh).state(),
            RtpSender::new(1, 2, 3).state()
        );
    }

    #[test]
    fn event_packets_keep_the_event_timestamp() {
        let mut s = RtpSender::new(1, 0, 1000);
        let a = parse(s.event(101, &[1, 0, 0, 160], true, 1000).unwrap())
            .unwrap()
            .0;
        let b = parse(s.event(101, &[1, 0, 1, 64], false, 1000).unwrap())
            .unwrap()
            .0;
        assert_eq!((a.timestamp, b.timestamp), (1000, 1000));
        assert_eq!((a.sequence, b.sequence), (0, 1));
        assert!(s.event(128, &[], false, 0).is_err());
        assert!(s.audio(0, &[0; 2000], 160).is_err());
    }

    #[test]
    fn parse_rejects_garbage_without_panicking() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x80; 11]).is_err());
        assert!(parse(&[0x40; 12]).is_err(), "version 1");
        // Extension header announced but missing.
        assert!(parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Padding longer than the packet.
        assert!(parse(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]).is_err());
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..50_000 {
            let n = rng.usize(0..64);
            let mut data: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if let Some(b) = data.first_mut() {
                *b = 0x80 | (*b & 0x3F);
            }
            if let Ok((_, payload)) = parse(&data) {
                assert!(payload.len() <= data.len());
            }
        }
    }
}
