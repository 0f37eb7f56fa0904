//! DTMF as RFC 4733 telephone events: an encoder that yields the packet payloads of one digit
//! and a detector for received ones. Both are sans-IO: the RTP layer stamps sequence numbers
//! and sends; timing comes from the caller's 20 ms pacing.
//!
//! One event is a series of packets that all carry the RTP timestamp of the event's start
//! (§2.5.1.2): the first with the marker bit, then updates whose duration grows by one packet
//! time, then the end packet sent three times with the same duration (§2.5.1.4).
//!
//! ```
//! use session_media::dtmf::{DtmfDetector, DtmfEncoder};
//!
//! let packets: Vec<_> = DtmfEncoder::new('5', 800, 160).unwrap().collect();
//! assert!(packets[0].marker);
//! assert_eq!(packets.iter().filter(|p| p.end).count(), 3);
//!
//! let mut detector = DtmfDetector::new();
//! let found: Vec<_> = packets.iter().filter_map(|p| detector.on_packet(1234, &p.payload)).collect();
//! assert_eq!(found.len(), 1); // three end packets, one digit
//! assert_eq!((found[0].digit, found[0].duration), ('5', 800));
//! ```

/// Event code of a DTMF digit (RFC 4733 §3.2): `0`–`9`, `*` = 10, `#` = 11, `A`–`D` = 12–15.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The digit of a DTMF event code (0–15).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code.
    pub event: u8,
    /// End of event bit.
    pub end: bool,
    /// Volume in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Serialises the payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d0,
            d1,
        ]
    }

    /// Parses a payload; `None` when it is shorter than 4 bytes. Extra bytes (several events
    /// in one packet are not used for DTMF) are ignored.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// One packet of an event to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The payload.
    pub payload: [u8; 4],
    /// Set on the first packet of the event.
    pub marker: bool,
    /// True for the (three) end packets.
    pub end: bool,
}

/// Yields the packets of one digit, one per packet time. All of them go out with the same RTP
/// timestamp: the one the event started at.
#[derive(Debug, Clone)]
pub struct DtmfEncoder {
    event: u8,
    volume: u8,
    total: u16,
    step: u16,
    sent: u16,
    ends_left: u8,
    first: bool,
}

impl DtmfEncoder {
    /// Default volume, -10 dBm0.
    pub const DEFAULT_VOLUME: u8 = 10;

    /// An encoder for `digit` lasting `duration` timestamp units (e.g. 800 = 100 ms at 8 kHz),
    /// one packet every `packet_samples` units (160 for 20 ms). `None` for a non-DTMF character
    /// or a zero packet size. Durations beyond 65535 units are cut to that.
    pub fn new(digit: char, duration: u32, packet_samples: u16) -> Option<Self> {
        let event = digit_to_event(digit)?;
        if packet_samples == 0 {
            return None;
        }
        let total = u16::try_from(duration)
            .unwrap_or(u16::MAX)
            .max(packet_samples);
        Some(Self {
            event,
            volume: Self::DEFAULT_VOLUME,
            total,
            step: packet_samples,
            sent: 0,
            ends_left: 3,
            first: true,
        })
    }

    /// Sets the volume (-dBm0, 0–63).
    pub fn volume(mut self, volume: u8) -> Self {
        self.volume = volume.min(63);
        self
    }
}

impl Iterator for DtmfEncoder {
    type Item = DtmfPacket;

    fn next(&mut self) -> Option<DtmfPacket> {
        if self.ends_left == 0 {
            return None;
        }
        let marker = std::mem::take(&mut self.first);
        if self.sent < self.total {
            self.sent = self.sent.saturating_add(self.step).min(self.total);
        }
        let end = self.sent >= self.total;
        if end {
            self.ends_left -= 1;
        }
        let payload = TelephoneEvent {
            event: self.event,
            end,
            volume: self.volume,
            duration: self.sent,
        }
        .to_bytes();
        Some(DtmfPacket {
            payload,
            marker,
            end,
        })
    }
}

/// A digit the detector recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedDigit {
    /// The digit.
    pub digit: char,
    /// Duration in RTP timestamp units.
    pub duration: u16,
    /// RTP timestamp of the event (its start).
    pub timestamp: u32,
    /// False when the end packets were lost and the digit was reported because a new event
    /// started or the caller flushed.
    pub ended: bool,
}

/// Recognises digits in received telephone-event packets. Events are told apart by RTP
/// timestamp, so the three end packets (and any duplicates) report one digit.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    /// Event in progress: (timestamp, event, duration so far).
    current: Option<(u32, u8, u16)>,
    /// Timestamps of the last reported events (a small ring: late retransmissions of an
    /// older event's end packets are still recognised).
    reported: [Option<u32>; 4],
    next_report_slot: usize,
}

impl DtmfDetector {
    /// A detector with nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet (its RTP timestamp and payload). Returns a digit when
    /// one ended, or when a new event starts while the previous one never got its end packet.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<DetectedDigit> {
        let ev = TelephoneEvent::parse(payload)?;
        if self.reported.contains(&Some(timestamp)) {
            return None; // retransmitted end packet, or a late update of a finished event
        }
        let mut unfinished = None;
        match self.current {
            Some((ts, _, _)) if ts == timestamp => {}
            Some(_) => unfinished = self.take_unfinished(),
            None => {}
        }
        let duration = match self.current {
            Some((_, _, d)) => d.max(ev.duration),
            None => ev.duration,
        };
        self.current = Some((timestamp, ev.event, duration));
        if ev.end {
            self.current = None;
            self.remember(timestamp);
            if let Some(digit) = event_to_digit(ev.event) {
                return Some(DetectedDigit {
                    digit,
                    duration,
                    timestamp,
                    ended: true,
                });
            }
        }
        unfinished
    }

    fn remember(&mut self, timestamp: u32) {
        if let Some(slot) = self.reported.get_mut(self.next_report_slot) {
            *slot = Some(timestamp);
        }
        self.next_report_slot = (self.next_report_slot + 1) % self.reported.len();
    }

    /// Reports the event in progress as finished (its end packets were lost); call it when
    /// telephone-event packets stop arriving for a while.
    pub fn take_unfinished(&mut self) -> Option<DetectedDigit> {
        let (timestamp, event, duration) = self.current.take()?;
        self.remember(timestamp);
        Some(DetectedDigit {
            digit: event_to_digit(event)?,
            duration,
            timestamp,
            ended: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_codes_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(event_to_digit(digit_to_event(d).unwrap()), Some(d));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(digit_to_event('x'), None);
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn payload_layout_matches_rfc_4733() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 0x0320,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&[11, 0x8A, 0x03, 0x20, 9]), Some(ev));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn encoder_sends_start_updates_and_three_ends() {
        let packets: Vec<_> = DtmfEncoder::new('#', 800, 160).unwrap().collect();
        let parsed: Vec<_> = packets
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        let durations: Vec<u16> = parsed.iter().map(|e| e.duration).collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        assert_eq!(packets.iter().filter(|p| p.marker).count(), 1);
        assert!(packets[0].marker);
        assert_eq!(packets.iter().filter(|p| p.end).count(), 3);
        assert!(packets[4..].iter().all(|p| p.end));
        assert!(parsed.iter().all(|e| e.event == 11 && e.volume == 10));
    }

    #[test]
    fn short_and_long_events() {
        let short: Vec<_> = DtmfEncoder::new('1', 10, 160).unwrap().collect();
        assert_eq!(short.len(), 3, "shorter than a packet: end packets only");
        assert!(short[0].marker && short[0].end);
        let long = DtmfEncoder::new('1', 1_000_000, 160)
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(
            TelephoneEvent::parse(&long.payload).unwrap().duration,
            u16::MAX
        );
        assert!(DtmfEncoder::new('1', 800, 0).is_none());
    }

    #[test]
    fn detector_deduplicates_by_timestamp() {
        let mut det = DtmfDetector::new();
        let mut found = Vec::new();
        for (ts, digit) in [(1000u32, '1'), (5000, '2'), (9000, '2')] {
            for p in DtmfEncoder::new(digit, 480, 160).unwrap() {
                found.extend(det.on_packet(ts, &p.payload));
                // A network duplicate of each packet.
                found.extend(det.on_packet(ts, &p.payload));
            }
        }
        // A late retransmission of the first digit's end packet, after two newer digits.
        let end = DtmfEncoder::new('1', 480, 160).unwrap().last().unwrap();
        assert_eq!(det.on_packet(1000, &end.payload), None);
        let digits: String = found.iter().map(|d| d.digit).collect();
        assert_eq!(digits, "122");
        assert!(found.iter().all(|d| d.ended && d.duration == 480));
    }

    #[test]
    fn lost_end_packets_still_report_the_digit() {
        let mut det = DtmfDetector::new();
        let packets: Vec<_> = DtmfEncoder::new('7', 800, 160).unwrap().collect();
        for p in &packets[..3] {
            assert_eq!(det.on_packet(100, &p.payload), None);
        }
        // The next event starts: the previous is reported unfinished with its last duration.
        let first_of_next = DtmfEncoder::new('8', 800, 160).unwrap().next().unwrap();
        let d = det.on_packet(2000, &first_of_next.payload).unwrap();
        assert_eq!((d.digit, d.duration, d.ended), ('7', 480, false));
        let flushed = det.take_unfinished().unwrap();
        assert_eq!((flushed.digit, flushed.ended), ('8', false));
        assert_eq!(det.take_unfinished(), None);
        // A late end packet of the flushed event is not reported twice.
        let end = DtmfEncoder::new('8', 800, 160).unwrap().last().unwrap();
        assert_eq!(det.on_packet(2000, &end.payload), None);
    }
}
