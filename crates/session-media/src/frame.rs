//! [`AudioFrame`]: 20 ms of 8 kHz, 16-bit, mono audio — the unit every part of this crate
//! exchanges (codecs, jitter buffer, mixer, sources and sinks).
//!
//! A frame is a fixed array on the stack, so passing frames around never allocates.

use std::time::Duration;

/// Samples per second of the audio this crate handles (narrow-band telephony).
pub const SAMPLE_RATE: u32 = 8_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 160;
/// Duration of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// 20 ms of 8 kHz signed 16-bit mono audio.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AudioFrame {
    samples: [i16; FRAME_SAMPLES],
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("energy", &self.energy())
            .field("peak", &self.peak())
            .finish()
    }
}

impl Default for AudioFrame {
    fn default() -> Self {
        Self::silence()
    }
}

impl AudioFrame {
    /// A frame of digital silence.
    pub const fn silence() -> Self {
        Self {
            samples: [0; FRAME_SAMPLES],
        }
    }

    /// A frame from up to [`FRAME_SAMPLES`] samples; a shorter slice is padded with silence,
    /// a longer one is cut.
    pub fn from_samples(samples: &[i16]) -> Self {
        let mut frame = Self::silence();
        let n = samples.len().min(FRAME_SAMPLES);
        frame.samples[..n].copy_from_slice(&samples[..n]);
        frame
    }

    /// The samples.
    pub fn samples(&self) -> &[i16; FRAME_SAMPLES] {
        &self.samples
    }

    /// The samples, mutable.
    pub fn samples_mut(&mut self) -> &mut [i16; FRAME_SAMPLES] {
        &mut self.samples
    }

    /// Mean square of the samples (0 for silence, about 5.4e8 for a full-scale sine).
    pub fn energy(&self) -> u64 {
        let sum: u64 = self
            .samples
            .iter()
            .map(|&s| (i64::from(s) * i64::from(s)).unsigned_abs())
            .sum();
        sum / FRAME_SAMPLES as u64
    }

    /// Largest absolute sample value.
    pub fn peak(&self) -> u16 {
        self.samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0)
    }

    /// True when every sample is zero.
    pub fn is_silent(&self) -> bool {
        self.samples.iter().all(|&s| s == 0)
    }

    /// Scales every sample by `num / den` (used to attenuate concealed frames).
    pub fn scale(&mut self, num: i32, den: i32) {
        if den == 0 {
            return;
        }
        for s in &mut self.samples {
            let v = i32::from(*s) * num / den;
            *s = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_samples_pads_and_cuts() {
        let short = AudioFrame::from_samples(&[1, 2, 3]);
        assert_eq!(&short.samples()[..4], &[1, 2, 3, 0]);
        let long = AudioFrame::from_samples(&[7; 400]);
        assert!(long.samples().iter().all(|&s| s == 7));
    }

    #[test]
    fn energy_and_scale() {
        let mut f = AudioFrame::from_samples(&[1000; FRAME_SAMPLES]);
        assert_eq!(f.energy(), 1_000_000);
        f.scale(1, 2);
        assert_eq!(f.peak(), 500);
        assert!(AudioFrame::silence().is_silent());
    }
}
