//! The relay path: one talker's RTP packet rewritten in place so it belongs to the listener's
//! outgoing stream, with no allocation (everything here works on the caller's buffer and on
//! values on the stack).
//!
//! What changes in the packet:
//!
//! - the payload, byte for byte, when the talker's G.711 law is not the listener's (µ-law ↔
//!   A-law through the linear value: decode then encode, within G.711's quantisation error);
//! - the payload type: the listener's audio type, or its telephone-event type for an RFC 4733
//!   event (a listener without one cannot receive the event);
//! - SSRC, sequence number and timestamp: the listener's stream's.
//!
//! # Mapping a talker's numbers onto the listener's stream
//!
//! A [`RelayMap`] is made on the first packet of a relay course — after a switch from the
//! mixer, a member joining, a move, a dropped packet, or when the talker's SSRC changes or its
//! sequence jumps (RFC 3550 §A.1's `MAX_DROPOUT`/`MAX_MISORDER` bounds). It maps the talker's
//! sequence number to the listener's next one and the talker's timestamp to the listener's
//! sampling clock ([`crate::StreamState`]: continuous if the listener's stream was busy, moved
//! on with the marker bit if it paused). After that both are offsets, so the talker's gaps,
//! reordering and RFC 4733 event timestamps (§2.5.1.2: every packet of an event carries its
//! start) arrive as the talker sent them. A late packet from before the map would reuse a
//! sequence number already sent, and is dropped as stale.

use std::ops::Range;
use std::time::Instant;

use rtp_rs::RtpReader;
use session_media::g711::{self, G711Law};

use crate::event::DropReason;
use crate::leg::{Codec, StreamState, duration_of};

/// RFC 3550 §A.1: a forward jump of more than this many sequence numbers is a restart.
const MAX_DROPOUT: i32 = 3000;
/// RFC 3550 §A.1: a packet more than this many sequence numbers behind is not reordering.
const MAX_MISORDER: i32 = 100;

/// The fixed header of a received RTP packet and where its payload is.
#[derive(Debug, Clone)]
pub(crate) struct RtpView {
    pub(crate) payload_type: u8,
    pub(crate) marker: bool,
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
    pub(crate) ssrc: u32,
    /// The payload's bytes in the datagram (header, CSRCs, extension and padding excluded).
    pub(crate) payload: Range<usize>,
}

impl RtpView {
    /// Parses the header; `None` when the datagram is not RTP.
    pub(crate) fn parse(datagram: &[u8]) -> Option<Self> {
        let reader = RtpReader::new(datagram).ok()?;
        let start = reader.payload_offset();
        let len = reader.payload().len();
        Some(Self {
            payload_type: reader.payload_type(),
            marker: reader.mark(),
            sequence: u16::from(reader.sequence_number()),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            payload: start..start + len,
        })
    }
}

/// What a received packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// G.711 audio in this law.
    Audio(G711Law),
    /// An RFC 4733 telephone event.
    Event,
}

/// µ-law ↔ A-law byte tables, built once per engine.
#[derive(Debug, Clone)]
pub(crate) struct Transcoder {
    ulaw_to_alaw: [u8; 256],
    alaw_to_ulaw: [u8; 256],
}

impl Transcoder {
    pub(crate) fn new() -> Self {
        let mut ulaw_to_alaw = [0u8; 256];
        let mut alaw_to_ulaw = [0u8; 256];
        for (code, (u2a, a2u)) in (0u8..=255).zip(ulaw_to_alaw.iter_mut().zip(&mut alaw_to_ulaw)) {
            *u2a = g711::alaw_encode(g711::ulaw_decode(code));
            *a2u = g711::ulaw_encode(g711::alaw_decode(code));
        }
        Self {
            ulaw_to_alaw,
            alaw_to_ulaw,
        }
    }

    /// Rewrites `payload` from one law to the other, in place.
    pub(crate) fn apply(&self, from: G711Law, to: G711Law, payload: &mut [u8]) {
        let table = match (from, to) {
            (G711Law::Ulaw, G711Law::Alaw) => &self.ulaw_to_alaw,
            (G711Law::Alaw, G711Law::Ulaw) => &self.alaw_to_ulaw,
            _ => return,
        };
        for b in payload {
            *b = table[usize::from(*b)];
        }
    }
}

/// How one talker's packets map onto one listener's stream (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayMap {
    talker_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The first sequence number sent under this map: anything mapped before it is stale.
    first_sequence: u16,
}

/// The listener's side of a relay: what the rewrite needs from it and changes in it.
pub(crate) struct Listener<'a> {
    pub(crate) codec: Codec,
    pub(crate) telephone_event: Option<u8>,
    pub(crate) stream: &'a mut StreamState,
    pub(crate) map: &'a mut Option<RelayMap>,
}

/// Rewrites `packet` (the datagram, `view` its parsed header) in place for the listener's
/// stream and advances that stream. On `Err` the packet is left as it was and the map is
/// dropped, so the next forwarded packet starts a new course without a sequence gap.
pub(crate) fn rewrite(
    now: Instant,
    packet: &mut [u8],
    view: &RtpView,
    content: Content,
    listener: Listener<'_>,
    transcoder: &Transcoder,
) -> Result<(), DropReason> {
    let Listener {
        codec,
        telephone_event,
        stream,
        map,
    } = listener;
    let payload_type = match content {
        Content::Audio(_) => codec.payload_type,
        Content::Event => match telephone_event {
            Some(pt) => pt,
            None => {
                *map = None;
                return Err(DropReason::NoTelephoneEvent);
            }
        },
    };

    // Where this packet lands on the listener's stream.
    let mapped = map.filter(|m| m.talker_ssrc == view.ssrc).and_then(|m| {
        let sequence = view.sequence.wrapping_add(m.seq_offset);
        let ahead = i32::from(sequence.wrapping_sub(stream.next_sequence) as i16);
        (-MAX_MISORDER..=MAX_DROPOUT)
            .contains(&ahead)
            .then_some((m, sequence))
    });
    let (sequence, timestamp, marker) = match mapped {
        Some((m, sequence)) => {
            if (sequence.wrapping_sub(m.first_sequence) as i16) < 0 {
                return Err(DropReason::Stale);
            }
            let timestamp = view.timestamp.wrapping_add(m.ts_offset);
            let pending = content != Content::Event && std::mem::take(&mut stream.marker_pending);
            (sequence, timestamp, view.marker || pending)
        }
        None => {
            // A new course: continue the listener's stream where it stands.
            let sequence = stream.next_sequence;
            let (timestamp, jumped) = stream.clock_timestamp(now);
            *map = Some(RelayMap {
                talker_ssrc: view.ssrc,
                seq_offset: sequence.wrapping_sub(view.sequence),
                ts_offset: timestamp.wrapping_sub(view.timestamp),
                first_sequence: sequence,
            });
            let marker = match content {
                // RFC 4733 §2.5.1.3: the marker of an event packet means "start of event";
                // the jump is marked on the next audio packet instead.
                Content::Event => {
                    stream.marker_pending |= jumped;
                    view.marker
                }
                Content::Audio(_) => {
                    let pending = std::mem::take(&mut stream.marker_pending);
                    view.marker || jumped || pending
                }
            };
            (sequence, timestamp, marker)
        }
    };

    // The header: marker and payload type, sequence number, timestamp, SSRC (RFC 3550 §5.1).
    let Some(header) = packet.get_mut(1..12) else {
        return Err(DropReason::Malformed);
    };
    header[0] = (u8::from(marker) << 7) | (payload_type & 0x7F);
    header[1..3].copy_from_slice(&sequence.to_be_bytes());
    header[3..7].copy_from_slice(&timestamp.to_be_bytes());
    header[7..11].copy_from_slice(&stream.ssrc.to_be_bytes());
    let payload = packet.get_mut(view.payload.clone()).unwrap_or_default();
    if let Content::Audio(law) = content {
        transcoder.apply(law, codec.law, payload);
    }

    // Advance the stream past this packet; an older (reordered) packet moves nothing back.
    if sequence.wrapping_sub(stream.next_sequence) as i16 >= 0 {
        stream.next_sequence = sequence.wrapping_add(1);
    }
    let covered = match content {
        Content::Audio(_) => u32::try_from(payload.len()).unwrap_or(u32::MAX),
        // The event has lasted `duration` units since its start (RFC 4733 §2.5.1.2).
        Content::Event => payload
            .get(2..4)
            .map_or(0, |d| u32::from(u16::from_be_bytes([d[0], d[1]]))),
    };
    let end = timestamp.wrapping_add(covered);
    if end.wrapping_sub(stream.next_timestamp) as i32 > 0 || stream.next_due.is_none() {
        stream.next_timestamp = end;
        stream.next_due = Some(match content {
            Content::Audio(_) => now + duration_of(covered),
            Content::Event => now,
        });
    }
    stream.packets += 1;
    stream.octets += payload.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_media::rtp::{RtpSender, parse};
    use std::time::Duration;

    fn listener<'a>(
        stream: &'a mut StreamState,
        map: &'a mut Option<RelayMap>,
        codec: Codec,
    ) -> Listener<'a> {
        Listener {
            codec,
            telephone_event: Some(96),
            stream,
            map,
        }
    }

    #[test]
    fn transcoding_tables_follow_decode_then_encode() {
        let t = Transcoder::new();
        let mut p = [0x00, 0x7F, 0xFF, 0x80];
        t.apply(G711Law::Ulaw, G711Law::Alaw, &mut p);
        for (&a, u) in p.iter().zip([0x00u8, 0x7F, 0xFF, 0x80]) {
            assert_eq!(a, g711::alaw_encode(g711::ulaw_decode(u)));
        }
        let before = p;
        t.apply(G711Law::Alaw, G711Law::Alaw, &mut p);
        assert_eq!(p, before, "same law: untouched");
    }

    #[test]
    fn gaps_and_reordering_are_kept_and_stale_packets_dropped() {
        let t0 = Instant::now();
        let mut talker = RtpSender::new(0x1111, 500, 9000);
        let packets: Vec<Vec<u8>> = (0..5)
            .map(|_| talker.audio(0, &[0xFF; 160], 160).unwrap().to_vec())
            .collect();
        let mut stream = StreamState::new(0x2222, 65_534, 100);
        let mut map = None;
        let t = Transcoder::new();
        let mut sent = Vec::new();
        // Order of arrival: 1, 0 (before the map: stale), 2, 4 (3 lost), 3 (reordered).
        for (k, i) in [1usize, 0, 2, 4, 3].into_iter().enumerate() {
            let mut p = packets[i].clone();
            let view = RtpView::parse(&p).unwrap();
            let at = t0 + Duration::from_millis(20 * k as u64);
            let r = rewrite(
                at,
                &mut p,
                &view,
                Content::Audio(G711Law::Ulaw),
                listener(&mut stream, &mut map, Codec::pcmu()),
                &t,
            );
            if i == 0 {
                assert_eq!(r, Err(DropReason::Stale));
                continue;
            }
            r.unwrap();
            sent.push(parse(&p).unwrap().0);
        }
        let seqs: Vec<u16> = sent.iter().map(|h| h.sequence).collect();
        assert_eq!(seqs, [65_534, 65_535, 1, 0]);
        let ts: Vec<u32> = sent.iter().map(|h| h.timestamp).collect();
        assert_eq!(ts, [100, 260, 580, 420]);
        assert!(sent.iter().all(|h| h.ssrc == 0x2222));
        assert_eq!((stream.next_sequence, stream.next_timestamp), (2, 740));
        assert_eq!(stream.packets, 4);
    }
}
