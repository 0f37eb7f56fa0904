//! Re-framing of G.711 payloads of any packet time (10, 20, 30 ms …) into the 20 ms
//! [`AudioFrame`]s the rest of the crate works with. Sans-IO.
//!
//! A peer may send 30 ms packets (240 samples, as SIPp's `g711a.pcap` does) or 10 ms ones; the
//! samples are decoded into a running frame, and a frame is ready each time 160 samples are in.
//! A gap in the RTP timestamps (loss, or a new talk spurt) ends the partial frame early,
//! padded with silence, so no sample is ever moved across a gap.

use crate::frame::{AudioFrame, FRAME_SAMPLES};
use crate::g711::{G711Law, alaw_decode, ulaw_decode};
use std::collections::VecDeque;

/// One 20 ms frame out of the re-framer, with the RTP facts of its first sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReframedAudio {
    /// The audio.
    pub frame: AudioFrame,
    /// Sequence number of the packet that carried the first sample.
    pub sequence: u16,
    /// RTP timestamp of the first sample.
    pub timestamp: u32,
    /// Whether the first sample started a talk spurt (marker bit of its packet).
    pub marker: bool,
}

/// Collects decoded samples into 20 ms frames. See the module docs.
#[derive(Debug, Default)]
pub struct Reframer {
    partial: Option<ReframedAudio>,
    filled: usize,
    /// The RTP timestamp the next packet should carry to continue the partial frame.
    next_timestamp: Option<u32>,
    ready: VecDeque<ReframedAudio>,
}

impl Reframer {
    /// An empty re-framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one packet's payload into frames.
    pub fn push(
        &mut self,
        law: G711Law,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        if self.filled > 0 && self.next_timestamp != Some(timestamp) {
            self.flush();
        }
        let decode = match law {
            G711Law::Ulaw => ulaw_decode,
            G711Law::Alaw => alaw_decode,
        };
        for (offset, &byte) in (0u32..).zip(payload) {
            let current = self.partial.get_or_insert_with(|| ReframedAudio {
                frame: AudioFrame::silence(),
                sequence,
                timestamp: timestamp.wrapping_add(offset),
                marker: marker && offset == 0,
            });
            if let Some(sample) = current.frame.samples_mut().get_mut(self.filled) {
                *sample = decode(byte);
            }
            self.filled += 1;
            if self.filled == FRAME_SAMPLES {
                self.filled = 0;
                if let Some(done) = self.partial.take() {
                    self.ready.push_back(done);
                }
            }
        }
        let advance = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.next_timestamp = Some(timestamp.wrapping_add(advance));
    }

    /// Ends the partial frame now (padded with silence), e.g. when the stream goes quiet.
    pub fn flush(&mut self) {
        self.filled = 0;
        if let Some(partial) = self.partial.take() {
            self.ready.push_back(partial);
        }
    }

    /// The next complete frame.
    pub fn pop(&mut self) -> Option<ReframedAudio> {
        self.ready.pop_front()
    }

    /// Samples waiting in the partial frame.
    pub fn partial_samples(&self) -> usize {
        self.filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::ulaw_encode;

    fn ramp(from: i16, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ulaw_encode(from.saturating_add(i16::try_from(i).unwrap() * 8)))
            .collect()
    }

    fn drain(r: &mut Reframer) -> Vec<ReframedAudio> {
        std::iter::from_fn(|| r.pop()).collect()
    }

    #[test]
    fn twenty_ms_packets_map_one_to_one() {
        let mut r = Reframer::new();
        r.push(G711Law::Ulaw, 7, 1000, true, &ramp(0, 160));
        let frames = drain(&mut r);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].sequence, frames[0].timestamp, frames[0].marker),
            (7, 1000, true)
        );
        assert_eq!(r.partial_samples(), 0);
    }

    #[test]
    fn thirty_ms_packets_lose_no_sample() {
        let mut r = Reframer::new();
        // Two 30 ms packets = 480 samples = three 20 ms frames.
        let first = ramp(0, 240);
        let second = ramp(240 * 8, 240);
        r.push(G711Law::Ulaw, 1, 0, false, &first);
        r.push(G711Law::Ulaw, 2, 240, false, &second);
        let frames = drain(&mut r);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            [0, 160, 320]
        );
        assert_eq!(
            frames.iter().map(|f| f.sequence).collect::<Vec<_>>(),
            [1, 1, 2]
        );
        let all: Vec<i16> = frames
            .iter()
            .flat_map(|f| f.frame.samples().to_vec())
            .collect();
        let expected: Vec<i16> = first
            .iter()
            .chain(&second)
            .map(|&b| ulaw_decode(b))
            .collect();
        assert_eq!(all, expected, "every sample, in order");
    }

    #[test]
    fn ten_ms_packets_pair_up() {
        let mut r = Reframer::new();
        r.push(G711Law::Ulaw, 1, 0, false, &ramp(0, 80));
        assert!(r.pop().is_none());
        assert_eq!(r.partial_samples(), 80);
        r.push(G711Law::Ulaw, 2, 80, false, &ramp(0, 80));
        assert_eq!(drain(&mut r).len(), 1);
    }

    #[test]
    fn a_timestamp_gap_ends_the_partial_frame() {
        let mut r = Reframer::new();
        r.push(G711Law::Alaw, 1, 0, false, &[0xD5; 80]);
        // Packet 2 (timestamp 80) was lost: packet 3 starts a new frame.
        r.push(G711Law::Alaw, 3, 160, false, &[0xD5; 160]);
        let frames = drain(&mut r);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].timestamp, frames[1].timestamp), (0, 160));
        assert!(
            frames[0].frame.samples()[80..].iter().all(|&s| s == 0),
            "padded with silence"
        );
    }
}
