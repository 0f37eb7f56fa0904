//! Audio sources and sinks of 20 ms frames: a tone generator, silence, WAV file playback and
//! recording (through `hound`), a null sink and a channel sink; plus [`goertzel_power`] to check
//! which tone a recording holds.
//!
//! ```
//! use session_media::audio::{goertzel_power, AudioSource, ToneSource};
//!
//! let mut tone = ToneSource::new(1000.0, 8000);
//! let frame = tone.next_frame().unwrap();
//! assert!(goertzel_power(frame.samples(), 1000.0) > 100.0 * goertzel_power(frame.samples(), 1500.0));
//! ```

use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

/// Something that produces frames.
pub trait AudioSource {
    /// The next 20 ms frame, or `None` at the end.
    fn next_frame(&mut self) -> Option<AudioFrame>;
}

/// Something that consumes frames.
pub trait AudioSink {
    /// Takes one frame.
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<()>;
}

/// An endless sine tone.
#[derive(Debug, Clone)]
pub struct ToneSource {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl ToneSource {
    /// A tone of `frequency` Hz at `amplitude` (peak, 0–32767).
    pub fn new(frequency: f64, amplitude: i16) -> Self {
        Self {
            phase: 0.0,
            step: std::f64::consts::TAU * frequency / f64::from(SAMPLE_RATE),
            amplitude: f64::from(amplitude.max(0)),
        }
    }
}

impl AudioSource for ToneSource {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        let mut frame = AudioFrame::silence();
        for s in frame.samples_mut() {
            *s = (self.amplitude * self.phase.sin()) as i16;
            self.phase = (self.phase + self.step) % std::f64::consts::TAU;
        }
        Some(frame)
    }
}

/// Endless silence.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceSource;

impl AudioSource for SilenceSource {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        Some(AudioFrame::silence())
    }
}

/// Plays a WAV file: 8 kHz, mono, 16-bit integer PCM (what G.711 carries).
pub struct WavSource<R: Read> {
    reader: hound::WavReader<R>,
    done: bool,
}

impl<R: Read> std::fmt::Debug for WavSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("spec", &self.reader.spec())
            .finish()
    }
}

impl WavSource<BufReader<std::fs::File>> {
    /// Opens a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(hound::WavReader::open(path)?)
    }
}

impl<R: Read> WavSource<R> {
    /// Reads WAV data from any reader.
    pub fn from_reader(reader: R) -> Result<Self> {
        Self::new(hound::WavReader::new(reader)?)
    }

    fn new(reader: hound::WavReader<R>) -> Result<Self> {
        let spec = reader.spec();
        if spec.sample_rate != SAMPLE_RATE
            || spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(Error::UnsupportedWav(format!(
                "{} Hz, {} channel(s), {}-bit {:?}; need 8000 Hz mono 16-bit PCM",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            )));
        }
        Ok(Self {
            reader,
            done: false,
        })
    }
}

impl<R: Read> AudioSource for WavSource<R> {
    /// The last frame is padded with silence; a read error ends the source.
    fn next_frame(&mut self) -> Option<AudioFrame> {
        if self.done {
            return None;
        }
        let mut frame = AudioFrame::silence();
        let mut n = 0;
        for (slot, sample) in frame
            .samples_mut()
            .iter_mut()
            .zip(self.reader.samples::<i16>())
        {
            match sample {
                Ok(s) => {
                    *slot = s;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if n < FRAME_SAMPLES {
            self.done = true;
        }
        (n > 0).then_some(frame)
    }
}

/// Records frames into a WAV file (8 kHz mono 16-bit). Call [`WavRecorder::finalize`] to
/// write the header sizes; dropping it also tries to, but cannot report errors.
pub struct WavRecorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
    frames: u64,
}

impl<W: Write + Seek> std::fmt::Debug for WavRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("frames", &self.frames)
            .finish()
    }
}

fn wav_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

impl WavRecorder<BufWriter<std::fs::File>> {
    /// Creates (or truncates) a file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            writer: hound::WavWriter::create(path, wav_spec())?,
            frames: 0,
        })
    }
}

impl<W: Write + Seek> WavRecorder<W> {
    /// Records into any seekable writer.
    pub fn new(writer: W) -> Result<Self> {
        Ok(Self {
            writer: hound::WavWriter::new(writer, wav_spec())?,
            frames: 0,
        })
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the header and flushes.
    pub fn finalize(self) -> Result<()> {
        Ok(self.writer.finalize()?)
    }
}

impl<W: Write + Seek> AudioSink for WavRecorder<W> {
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<()> {
        let mut w = self.writer.get_i16_writer(FRAME_SAMPLES as u32);
        for &s in frame.samples() {
            w.write_sample(s);
        }
        w.flush()?;
        self.frames += 1;
        Ok(())
    }
}

/// Discards frames, counting them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink {
    /// Frames received.
    pub frames: u64,
}

impl AudioSink for NullSink {
    fn write_frame(&mut self, _frame: &AudioFrame) -> Result<()> {
        self.frames += 1;
        Ok(())
    }
}

/// Sends frames into a bounded tokio channel without waiting: when the consumer is behind,
/// the frame is dropped and counted (real-time audio must not block the 20 ms tick).
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<AudioFrame>,
    dropped: u64,
}

impl ChannelSink {
    /// A sink and the receiver of its frames, holding up to `capacity` frames.
    pub fn new(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<AudioFrame>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (Self { tx, dropped: 0 }, rx)
    }

    /// Frames dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl AudioSink for ChannelSink {
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<()> {
        match self.tx.try_send(*frame) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                Ok(())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(Error::Io(
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "frame receiver dropped"),
            )),
        }
    }
}

/// Power of `samples` at `frequency` Hz (Goertzel algorithm, 8 kHz), normalised by the
/// number of samples: comparing two frequencies tells which tone is present.
pub fn goertzel_power(samples: &[i16], frequency: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * frequency / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = samples.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn tone_has_its_frequency_and_amplitude() {
        let mut tone = ToneSource::new(440.0, 10_000);
        let mut samples = Vec::new();
        for _ in 0..10 {
            samples.extend_from_slice(tone.next_frame().unwrap().samples());
        }
        let at_440 = goertzel_power(&samples, 440.0);
        for other in [300.0, 600.0, 1000.0] {
            assert!(at_440 > 50.0 * goertzel_power(&samples, other), "{other}");
        }
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((9_900..=10_000).contains(&peak), "{peak}");
        // Continuous phase across frames: no jump at the frame boundary.
        let jumps = samples
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        assert!(jumps < 3_500, "{jumps}");
    }

    #[test]
    fn wav_round_trip_in_memory() {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut rec = WavRecorder::new(&mut cursor).unwrap();
            let mut tone = ToneSource::new(1000.0, 8000);
            for _ in 0..3 {
                rec.write_frame(&tone.next_frame().unwrap()).unwrap();
            }
            rec.write_frame(&AudioFrame::from_samples(&[5; 10]))
                .unwrap();
            assert_eq!(rec.frames(), 4);
            rec.finalize().unwrap();
        }
        cursor.set_position(0);
        let mut src = WavSource::from_reader(cursor).unwrap();
        let mut tone = ToneSource::new(1000.0, 8000);
        for _ in 0..3 {
            assert_eq!(src.next_frame().unwrap(), tone.next_frame().unwrap());
        }
        assert_eq!(src.next_frame().unwrap().samples()[9], 5);
        assert_eq!(src.next_frame(), None);
    }

    #[test]
    fn wav_file_round_trip_and_bad_format() {
        let dir = std::env::temp_dir().join(format!("session-media-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.wav");
        let mut rec = WavRecorder::create(&path).unwrap();
        rec.write_frame(&ToneSource::new(500.0, 1000).next_frame().unwrap())
            .unwrap();
        rec.finalize().unwrap();
        let mut src = WavSource::open(&path).unwrap();
        assert!(src.next_frame().is_some());

        let stereo = dir.join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            ..wav_spec()
        };
        hound::WavWriter::create(&stereo, spec)
            .unwrap()
            .finalize()
            .unwrap();
        assert!(matches!(
            WavSource::open(&stereo),
            Err(Error::UnsupportedWav(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sinks() {
        let mut null = NullSink::default();
        null.write_frame(&AudioFrame::silence()).unwrap();
        assert_eq!(null.frames, 1);
        let (mut sink, mut rx) = ChannelSink::new(1);
        sink.write_frame(&AudioFrame::from_samples(&[1])).unwrap();
        sink.write_frame(&AudioFrame::silence()).unwrap();
        assert_eq!(sink.dropped(), 1);
        assert_eq!(rx.try_recv().unwrap().samples()[0], 1);
        drop(rx);
        assert!(sink.write_frame(&AudioFrame::silence()).is_err());
        assert!(SilenceSource.next_frame().unwrap().is_silent());
    }
}
