//! An adaptive jitter buffer, sans-IO: packets go in with the time they arrived, and a 20 ms
//! pull (`pop(now)`) takes one frame out — played, concealed, or silence.
//!
//! How it works:
//! - Frames are placed by RTP timestamp (unwrapped to 64 bits, so timestamp wrap is invisible),
//!   which also orders reordered packets and spots duplicates. Sequence numbers are unwrapped
//!   the same way for loss statistics; their u16 wrap does not matter to playout.
//! - The depth adapts to the measured interarrival jitter (RFC 3550 §6.4.1 estimator): the
//!   target is about three times the jitter, between the configured minimum and maximum.
//!   Playout starts (and restarts after an underrun) once the target depth is buffered.
//! - A missing frame is concealed by repeating the last frame, attenuated each time, then
//!   silence after [`JitterConfig::max_concealment`] frames.
//! - Clock skew: a sender that runs fast fills the buffer, and frames beyond the target plus
//!   a margin are dropped (one per pull); one that runs slow drains it, and an underrun inserts
//!   concealment and re-buffers. Depth stays bounded either way.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use session_media::{AudioFrame, jitter::{JitterBuffer, JitterConfig, Playout}};
//!
//! let start = Instant::now(); // the caller's clock; the buffer never reads one
//! let mut jb = JitterBuffer::new(JitterConfig::default());
//! for i in 0..5u16 {
//!     let at = start + Duration::from_millis(20 * u64::from(i));
//!     jb.push(at, i, 160 * u32::from(i), AudioFrame::silence());
//! }
//! let (_frame, kind) = jb.pop(start + Duration::from_millis(100));
//! assert_eq!(kind, Playout::Played);
//! ```

use std::time::Instant;

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

/// Ring capacity in frames (1.28 s at 20 ms).
const CAPACITY: usize = 64;
const FRAME_TS: i64 = FRAME_SAMPLES as i64;
/// Pulls in a row with too deep a buffer before one frame is dropped (0.5 s).
const OVER_TARGET_PULLS: u32 = 25;

/// Jitter buffer settings, in frames of 20 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterConfig {
    /// Smallest playout depth.
    pub min_depth: usize,
    /// Largest playout depth (at most 48).
    pub max_depth: usize,
    /// Frames concealed by repetition before falling back to silence.
    pub max_concealment: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_depth: 2,
            max_depth: 15,
            max_concealment: 3,
        }
    }
}

/// What a pulled frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Playout {
    /// A received frame.
    Played,
    /// A lost or late frame, replaced by an attenuated repetition of the previous one.
    Concealed,
    /// Silence: nothing received yet, buffering, or concealment ran out.
    Silence,
}

/// Counters of a jitter buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Frames played from received packets.
    pub played: u64,
    /// Frames concealed by repetition.
    pub concealed: u64,
    /// Silence frames handed out while playing (after concealment ran out).
    pub silence: u64,
    /// Packets that came after their playout time.
    pub late: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Frames dropped to shrink the buffer (sender clock faster than ours, or jitter fell).
    pub dropped: u64,
    /// Times playout had to re-buffer after an underrun.
    pub rebuffers: u64,
    /// Packets never received: gaps in the (wrap-extended) sequence numbers.
    pub lost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    index: i64,
    frame: AudioFrame,
}

/// The jitter buffer of one incoming stream.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Box<[Option<Slot>; CAPACITY]>,
    /// Unwrapping state: last raw timestamp and its extended value.
    last_ts: Option<(u32, i64)>,
    /// Extended timestamp of frame index 0.
    base_ts: i64,
    /// Next frame index to play; `None` while buffering.
    next: Option<i64>,
    /// Highest frame index held.
    highest: Option<i64>,
    last_frame: AudioFrame,
    concealed_run: u32,
    /// Consecutive pulls with the buffer deeper than target + 2.
    over_target_run: u32,
    /// Frames below this index were already played or given up (after a re-buffer).
    floor: Option<i64>,
    started: bool,
    /// Sequence unwrapping: last raw and extended highest, and the first extended one.
    seq_state: Option<(u16, i64, i64)>,
    /// Add one frame of delay at the next pull (a packet came late).
    stretch: bool,
    /// RFC 3550 jitter estimate in timestamp units, scaled by 16 (A.8).
    jitter_x16: i64,
    /// Transit of the previous packet (arrival − timestamp), in timestamp units.
    last_transit: Option<i64>,
    /// Reference instant for arrival times (the first packet).
    epoch: Option<Instant>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> Self {
        let max_depth = config.max_depth.clamp(1, CAPACITY - 16);
        let min_depth = config.min_depth.clamp(1, max_depth);
        Self {
            config: JitterConfig {
                min_depth,
                max_depth,
                ..config
            },
            slots: Box::new([None; CAPACITY]),
            last_ts: None,
            base_ts: 0,
            next: None,
            highest: None,
            last_frame: AudioFrame::silence(),
            concealed_run: 0,
            over_target_run: 0,
            floor: None,
            started: false,
            seq_state: None,
            stretch: false,
            jitter_x16: 0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The interarrival jitter estimate in timestamp units (RFC 3550 §6.4.1).
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_x16 >> 4).unwrap_or(u32::MAX)
    }

    /// The depth playout aims for, in frames.
    pub fn target_depth(&self) -> usize {
        let jitter_frames = (3 * (self.jitter_x16 >> 4) + FRAME_TS - 1) / FRAME_TS;
        (usize::try_from(jitter_frames)
            .unwrap_or(usize::MAX)
            .saturating_add(1))
        .clamp(self.config.min_depth, self.config.max_depth)
    }

    /// Frames held from the playout point on.
    pub fn depth(&self) -> usize {
        match (self.next, self.highest) {
            (Some(n), Some(h)) if h >= n => usize::try_from(h - n + 1).unwrap_or(0),
            (None, Some(h)) => self
                .lowest_held()
                .map_or(0, |low| usize::try_from(h - low + 1).unwrap_or(0)),
            _ => 0,
        }
    }

    fn unwrap_ts(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ts {
            None => i64::from(ts),
            // The signed 32-bit difference handles wrap-around both ways.
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
        };
        if self.last_ts.is_none_or(|(_, e)| ext > e) {
            self.last_ts = Some((ts, ext));
        }
        ext
    }

    fn update_jitter(&mut self, now: Instant, ext_ts: i64) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.saturating_duration_since(epoch).as_micros() as i64
            * i64::from(SAMPLE_RATE)
            / 1_000_000;
        let transit = arrival - ext_ts;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // J += (|D| − J) / 16, kept scaled by 16 as in RFC 3550 A.8.
            self.jitter_x16 += d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Adds a received frame: its RTP sequence number and timestamp, and when it arrived.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, frame: AudioFrame) {
        self.stats.received += 1;
        self.count_sequence(seq);
        let ext = self.unwrap_ts(timestamp);
        if !self.started {
            self.started = true;
            self.base_ts = ext;
        }
        let index = (ext - self.base_ts).div_euclid(FRAME_TS);
        let reference = self.next.or(self.highest);
        if let Some(r) = reference
            && (index >= r + CAPACITY as i64 || index <= r - 4 * CAPACITY as i64)
        {
            // A jump far away (the peer restarted its stream): start over from here, and
            // do not let the jump count as jitter.
            self.reset_to(ext);
            self.last_transit = None;
            self.update_jitter(now, ext);
            self.insert(0, frame);
            return;
        }
        self.update_jitter(now, ext);
        let too_old = match (self.next, self.highest) {
            (Some(next), _) => index < next,
            // Buffering: keep a window of CAPACITY frames ending at the newest one.
            (None, Some(h)) => index <= h - CAPACITY as i64,
            (None, None) => false,
        };
        if too_old || self.floor.is_some_and(|f| index < f) {
            self.stats.late += 1;
            // Playout runs too close to arrivals: add one frame of delay at the next pull.
            if self.next.is_some() && self.depth() < self.config.max_depth {
                self.stretch = true;
            }
            return;
        }
        self.insert(index, frame);
    }

    /// Tracks the extended sequence number (u16 wrap) to count packets that never came.
    fn count_sequence(&mut self, seq: u16) {
        let (highest_raw, highest, first) = match self.seq_state {
            None => (seq, i64::from(seq), i64::from(seq)),
            Some((raw, ext, first)) => {
                let candidate = ext + i64::from(seq.wrapping_sub(raw) as i16);
                if candidate > ext {
                    (seq, candidate, first)
                } else {
                    (raw, ext, first)
                }
            }
        };
        self.seq_state = Some((highest_raw, highest, first));
        let expected = u64::try_from(highest - first + 1).unwrap_or(0);
        let unique = self.stats.received.saturating_sub(self.stats.duplicates);
        self.stats.lost = expected.saturating_sub(unique);
    }

    fn reset_to(&mut self, ext: i64) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.base_ts = ext;
        self.next = None;
        self.highest = None;
        self.floor = None;
        self.stats.rebuffers += 1;
    }

    fn insert(&mut self, index: i64, frame: AudioFrame) {
        let pos = index.rem_euclid(CAPACITY as i64) as usize;
        if let Some(slot) = self.slots.get_mut(pos) {
            match slot {
                Some(s) if s.index == index => {
                    self.stats.duplicates += 1;
                    return;
                }
                _ => *slot = Some(Slot { index, frame }),
            }
        }
        self.highest = Some(self.highest.map_or(index, |h| h.max(index)));
    }

    fn take(&mut self, index: i64) -> Option<AudioFrame> {
        let pos = index.rem_euclid(CAPACITY as i64) as usize;
        let slot = self.slots.get_mut(pos)?;
        match slot {
            Some(s) if s.index == index => slot.take().map(|s| s.frame),
            _ => None,
        }
    }

    /// The oldest frame still inside the window of `CAPACITY` frames ending at the newest.
    fn lowest_held(&self) -> Option<i64> {
        let floor = self.highest? - CAPACITY as i64;
        self.slots
            .iter()
            .flatten()
            .map(|s| s.index)
            .filter(|&i| i > floor)
            .min()
    }

    /// Takes the next 20 ms frame. Call once per 20 ms tick. Playout decisions are made on
    /// arrival times given to [`JitterBuffer::push`] and on the pull cadence; `now` is taken for
    /// symmetry with `push` and for future time-based policies.
    pub fn pop(&mut self, _now: Instant) -> (AudioFrame, Playout) {
        let next = match self.next {
            Some(n) => n,
            None => {
                // Buffering: start when the target depth is reached.
                let (Some(low), Some(high)) = (self.lowest_held(), self.highest) else {
                    return (AudioFrame::silence(), Playout::Silence);
                };
                let depth = usize::try_from(high - low + 1).unwrap_or(0);
                if depth < self.target_depth() {
                    return (AudioFrame::silence(), Playout::Silence);
                }
                low
            }
        };
        // Shrink when the buffer holds much more than it needs (fast sender clock, jitter fell).
        let mut next = next;
        if let Some(high) = self.highest {
            let depth = usize::try_from(high - next + 1).unwrap_or(0);
            if depth > self.target_depth() + 2 {
                self.over_target_run += 1;
            } else {
                self.over_target_run = 0;
            }
            // Only a lasting excess is trimmed, so a burst of late packets is not thrown away.
            if self.over_target_run >= OVER_TARGET_PULLS && self.take(next).is_some() {
                self.over_target_run = 0;
                self.stats.dropped += 1;
                next += 1;
            }
        }
        if std::mem::take(&mut self.stretch) {
            // Grow the delay by one frame: conceal without moving the playout point.
            self.next = Some(next);
            return self.conceal();
        }
        if let Some(frame) = self.take(next) {
            self.next = Some(next + 1);
            self.last_frame = frame;
            self.concealed_run = 0;
            self.stats.played += 1;
            return (frame, Playout::Played);
        }
        // Missing frame. If later frames are here it is lost (or hopelessly late): skip it.
        // If nothing later is here the stream is late (a slow sender clock, a delay spike) or
        // paused: wait for it, which grows the delay by one frame.
        let anything_ahead = self.highest.is_some_and(|h| h > next);
        if !anything_ahead && self.concealed_run >= self.config.max_concealment {
            // An underrun that lasts: re-buffer, so the next talk-spurt gets the full depth.
            self.floor = Some(next);
            self.next = None;
            self.highest = None;
            self.stats.rebuffers += 1;
            self.stats.silence += 1;
            return (AudioFrame::silence(), Playout::Silence);
        }
        self.next = Some(if anything_ahead { next + 1 } else { next });
        self.conceal()
    }

    fn conceal(&mut self) -> (AudioFrame, Playout) {
        self.concealed_run += 1;
        if self.concealed_run <= self.config.max_concealment {
            // Repeat the last frame, each time at 3/4 of the previous level.
            self.last_frame.scale(3, 4);
            self.stats.concealed += 1;
            (self.last_frame, Playout::Concealed)
        } else {
            self.stats.silence += 1;
            (AudioFrame::silence(), Playout::Silence)
        }
    }
}

#[cfg(test)]
mod tests;
