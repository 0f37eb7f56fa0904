//! Hearing a call: an [`Ear`] records what a call receives (decoded, after its jitter
//! buffer), and [`Audio`] says which tones a stretch of it holds (Goertzel) and how loud it is.
//!
//! A tone is *heard* when it carries at least a tenth of the stretch's power
//! ([`Audio::tone_share`] ≥ [`HEARD_SHARE`]) and the stretch is not silence: one party's tone
//! has a share near 1, each of two equally loud parties' near 0.5, a party that is not heard
//! near 0. Tones to tell apart should be at least 50 Hz apart (a 200 ms stretch resolves 5 Hz;
//! the margin absorbs G.711's noise).

use crate::error::{Error, Result};
use session_core::crates::media::audio::goertzel_power;
use session_core::crates::media::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
use std::time::Duration;
use tokio::sync::mpsc;

/// The share of a stretch's power a tone must carry to be heard.
pub const HEARD_SHARE: f64 = 0.1;

/// Below this level (dBFS) a stretch is silence: G.711's quietest steps and comfort noise
/// stay under it, any tone a test plays is far above it.
pub const SILENCE_DBFS: f64 = -50.0;

/// How long [`Ear::hears`] and [`Ear::listen`] let pass before they record, after a change:
/// the jitter buffers on the way still hold the audio from before it.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How long [`Ear::hears`] and [`Ear::listen`] record.
pub const WINDOW: Duration = Duration::from_millis(200);

/// A recorder attached to a call: what the call receives, frame by frame.
#[derive(Debug)]
pub struct Ear {
    frames: mpsc::Receiver<AudioFrame>,
}

/// Samples [`Ear::record`] reserves room for up front (a minute); longer recordings grow.
const MAX_PREALLOCATED: usize = 60 * SAMPLE_RATE as usize;

/// Frames an ear keeps while the test does something else (about 1.3 s of audio); beyond
/// that the newest are dropped by the call's sink, never waiting.
pub(crate) const EAR_FRAMES: usize = 64;

impl Ear {
    pub(crate) fn new(frames: mpsc::Receiver<AudioFrame>) -> Self {
        Self { frames }
    }

    /// Forgets what arrived so far, lets [`SETTLE`] pass, and records [`WINDOW`]: what the
    /// call hears *now*, after whatever the test just changed.
    pub async fn listen(&mut self) -> Result<Audio> {
        self.skip(SETTLE).await?;
        self.record(WINDOW).await
    }

    /// Whether the call hears a tone of `hz` now (see [`Ear::listen`] and the module docs).
    pub async fn hears(&mut self, hz: f64) -> Result<bool> {
        Ok(self.listen().await?.contains_tone(hz))
    }

    /// Forgets what arrived so far and what arrives during `duration`.
    pub async fn skip(&mut self, duration: Duration) -> Result<()> {
        while self.frames.try_recv().is_ok() {}
        let deadline = crate::time::deadline(duration);
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Stopped("the call's audio".to_owned())),
                Err(_) => return Ok(()),
            }
        }
    }

    /// The next `duration` of audio (rounded up to 20 ms frames). The playout stops sending
    /// frames while nothing comes from the peer; a frame that has not come one frame time
    /// after the stretch should have ended is counted as silence, so a silent call gives a
    /// silent recording instead of a wait.
    pub async fn record(&mut self, duration: Duration) -> Result<Audio> {
        let frame_us = FRAME_DURATION.as_micros().max(1);
        let frames = usize::try_from(duration.as_micros().div_ceil(frame_us)).unwrap_or(usize::MAX);
        let wanted = frames.saturating_mul(FRAME_SAMPLES);
        let mut samples = Vec::with_capacity(wanted.min(MAX_PREALLOCATED));
        let mut missing = 0;
        let deadline = crate::time::deadline(duration.saturating_add(FRAME_DURATION));
        while samples.len() < wanted {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(frame)) => samples.extend_from_slice(frame.samples()),
                Ok(None) => return Err(Error::Stopped("the call's audio".to_owned())),
                Err(_) => {
                    missing = (wanted - samples.len()).div_ceil(FRAME_SAMPLES);
                    samples.resize(wanted, 0);
                }
            }
        }
        Ok(Audio {
            samples,
            missing_frames: missing,
        })
    }
}

/// A stretch of received audio (8 kHz, 16-bit, mono).
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    samples: Vec<i16>,
    missing_frames: usize,
}

impl Audio {
    /// Audio made of `samples` (8 kHz): to check a recording made elsewhere.
    pub fn from_samples(samples: Vec<i16>) -> Self {
        Self {
            samples,
            missing_frames: 0,
        }
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// How long it lasts.
    pub fn duration(&self) -> Duration {
        let samples = u64::try_from(self.samples.len()).unwrap_or(u64::MAX);
        Duration::from_micros(samples.saturating_mul(1_000_000) / u64::from(SAMPLE_RATE))
    }

    /// Frames that never came while it was recorded (counted as silence).
    pub fn missing_frames(&self) -> usize {
        self.missing_frames
    }

    /// Mean power (mean square of the samples).
    pub fn power(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        sum / self.samples.len() as f64
    }

    /// Level in dBFS (0 for a full-scale square wave; −∞ for digital silence).
    pub fn level_dbfs(&self) -> f64 {
        10.0 * (self.power() / f64::from(i16::MAX).powi(2)).log10()
    }

    /// Whether it is silence (below [`SILENCE_DBFS`]).
    pub fn is_silent(&self) -> bool {
        self.level_dbfs() < SILENCE_DBFS
    }

    /// The share of its power at `hz`: about 1 for a pure tone of `hz`, 1/n for each of n
    /// equally loud tones, about 0 for a tone that is absent (and 0 for silence).
    pub fn tone_share(&self, hz: f64) -> f64 {
        let power = self.power();
        if power <= 0.0 {
            return 0.0;
        }
        // Goertzel's normalised power of a sine of amplitude A is A²/4, its mean square A²/2.
        (2.0 * goertzel_power(&self.samples, hz) / power).min(1.0)
    }

    /// Whether a tone of `hz` is heard in it (see the module docs).
    pub fn contains_tone(&self, hz: f64) -> bool {
        !self.is_silent() && self.tone_share(hz) >= HEARD_SHARE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::crates::media::audio::{AudioSource, ToneSource};

    fn tone(hz: f64, amplitude: i16) -> Vec<i16> {
        let mut source = ToneSource::new(hz, amplitude);
        let mut samples = Vec::new();
        for _ in 0..10 {
            if let Some(frame) = source.next_frame() {
                samples.extend_from_slice(frame.samples());
            }
        }
        samples
    }

    #[test]
    fn a_pure_tone_is_heard_and_others_are_not() {
        let audio = Audio::from_samples(tone(1000.0, 4000));
        assert!(
            audio.tone_share(1000.0) > 0.9,
            "{}",
            audio.tone_share(1000.0)
        );
        assert!(audio.contains_tone(1000.0));
        for other in [440.0, 950.0, 1100.0, 2000.0] {
            assert!(
                !audio.contains_tone(other),
                "{other}: {}",
                audio.tone_share(other)
            );
        }
        assert_eq!(audio.duration(), Duration::from_millis(200));
        assert!(!audio.is_silent());
    }

    #[test]
    fn two_tones_mixed_are_both_heard_and_a_third_is_not() {
        let mixed: Vec<i16> = tone(440.0, 4000)
            .iter()
            .zip(tone(1000.0, 4000))
            .map(|(a, b)| a + b)
            .collect();
        let audio = Audio::from_samples(mixed);
        for present in [440.0, 1000.0] {
            let share = audio.tone_share(present);
            assert!((0.4..=0.6).contains(&share), "{present}: {share}");
        }
        assert!(!audio.contains_tone(2000.0));
    }

    #[test]
    fn silence_and_near_silence_hold_no_tone() {
        let silence = Audio::from_samples(vec![0; 1600]);
        assert!(silence.is_silent());
        assert_eq!(silence.tone_share(1000.0), 0.0);
        let whisper = Audio::from_samples(tone(1000.0, 5));
        assert!(whisper.is_silent(), "{} dBFS", whisper.level_dbfs());
        assert!(!whisper.contains_tone(1000.0));
    }
}
