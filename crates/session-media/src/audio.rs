//! Audio sources and sinks of 20 ms frames: a tone generator (endless or for a duration),
//! silence, WAV file playback (any sample rate, channel count and PCM or float format: mixed
//! down to mono and resampled to 8 kHz with `rubato`'s sinc resampler) and recording (through
//! `hound`), a null sink and a channel sink; plus [`goertzel_power`] to check which tone a
//! recording holds.
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

/// A sine tone, endless or for a duration ([`ToneSource::for_duration`]).
#[derive(Debug, Clone)]
pub struct ToneSource {
    phase: f64,
    step: f64,
    amplitude: f64,
    /// Frames left to play; `None`: endless.
    frames_left: Option<u64>,
}

impl ToneSource {
    /// An endless tone of `frequency` Hz at `amplitude` (peak, 0–32767).
    pub fn new(frequency: f64, amplitude: i16) -> Self {
        Self {
            phase: 0.0,
            step: std::f64::consts::TAU * frequency / f64::from(SAMPLE_RATE),
            amplitude: f64::from(amplitude.max(0)),
            frames_left: None,
        }
    }

    /// The same tone, ending after `duration` (rounded up to whole 20 ms frames; a zero
    /// duration plays nothing).
    pub fn for_duration(mut self, duration: std::time::Duration) -> Self {
        let frame_us = crate::frame::FRAME_DURATION.as_micros();
        let frames = duration.as_micros().div_ceil(frame_us);
        self.frames_left = Some(u64::try_from(frames).unwrap_or(u64::MAX));
        self
    }
}

impl AudioSource for ToneSource {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        if let Some(left) = &mut self.frames_left {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
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

/// Plays a WAV file. 8 kHz mono 16-bit PCM (what G.711 carries) is streamed from the file as
/// it plays; any other format — another sample rate, several channels, 8/24/32-bit integer or
/// 32-bit float samples — is decoded at open, mixed down to mono (the channels' mean),
/// resampled to 8 kHz (`rubato`'s band-limited sinc interpolation, so no aliasing from a
/// 44.1 or 48 kHz file) and kept in memory: 16 KB per second of audio.
pub struct WavSource<R: Read> {
    spec: hound::WavSpec,
    samples: Samples<R>,
    done: bool,
}

/// Where a [`WavSource`]'s 8 kHz samples come from.
enum Samples<R: Read> {
    Streamed(hound::WavReader<R>),
    Decoded(std::vec::IntoIter<i16>),
}

impl<R: Read> std::fmt::Debug for WavSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("spec", &self.spec)
            .field("decoded", &matches!(self.samples, Samples::Decoded(_)))
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
        let samples = if spec.sample_rate == SAMPLE_RATE
            && spec.channels == 1
            && spec.bits_per_sample == 16
            && spec.sample_format == hound::SampleFormat::Int
        {
            Samples::Streamed(reader)
        } else {
            Samples::Decoded(decode_to_8k_mono(reader)?.into_iter())
        };
        Ok(Self {
            spec,
            samples,
            done: false,
        })
    }

    /// The file's own format (before any mixing down or resampling).
    pub fn spec(&self) -> hound::WavSpec {
        self.spec
    }
}

/// Reads every sample of `reader`, mixes the channels down to mono and resamples to 8 kHz.
fn decode_to_8k_mono<R: Read>(mut reader: hound::WavReader<R>) -> Result<Vec<i16>> {
    let spec = reader.spec();
    let unsupported = |why: &str| {
        Error::UnsupportedWav(format!(
            "{} Hz, {} channel(s), {}-bit {:?}: {why}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        ))
    };
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(unsupported("no channels or no sample rate"));
    }
    // Every sample as f32 in [-1, 1).
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<std::result::Result<_, _>>()?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<std::result::Result<_, _>>()?
        }
        _ => return Err(unsupported("not PCM of 1–32 bits or 32-bit float")),
    };
    let channels = usize::from(spec.channels);
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    let resampled = if spec.sample_rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate, SAMPLE_RATE).map_err(|e| unsupported(&e))?
    };
    Ok(resampled
        .iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Resamples mono `input` from `from` Hz to `to` Hz, the filter's delay trimmed off.
fn resample(input: &[f32], from: u32, to: u32) -> std::result::Result<Vec<f32>, String> {
    use rubato::audioadapter_buffers::direct::SequentialSlice;
    use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let ratio = f64::from(to) / f64::from(from);
    let parameters = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &parameters, 1024, 1, FixedAsync::Input)
        .map_err(|e| e.to_string())?;
    let mut output = vec![0.0f32; resampler.process_all_needed_output_len(input.len())];
    let input_adapter = SequentialSlice::new(input, 1, input.len()).map_err(|e| e.to_string())?;
    let capacity = output.len();
    let mut output_adapter =
        SequentialSlice::new_mut(&mut output, 1, capacity).map_err(|e| e.to_string())?;
    let (_, written) = resampler
        .process_all_into_buffer(&input_adapter, &mut output_adapter, input.len(), None)
        .map_err(|e| e.to_string())?;
    output.truncate(written);
    Ok(output)
}

impl<R: Read> AudioSource for WavSource<R> {
    /// The last frame is padded with silence; a read error ends the source.
    fn next_frame(&mut self) -> Option<AudioFrame> {
        if self.done {
            return None;
        }
        let mut frame = AudioFrame::silence();
        let mut n = 0;
        match &mut self.samples {
            Samples::Streamed(reader) => {
                for (slot, sample) in frame.samples_mut().iter_mut().zip(reader.samples::<i16>()) {
                    match sample {
                        Ok(s) => {
                            *slot = s;
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            Samples::Decoded(samples) => {
                for (slot, sample) in frame.samples_mut().iter_mut().zip(samples) {
                    *slot = sample;
                    n += 1;
                }
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

        let odd = dir.join("odd.wav");
        let spec = hound::WavSpec {
            bits_per_sample: 64,
            sample_format: hound::SampleFormat::Float,
            ..wav_spec()
        };
        // hound refuses to write 64-bit float; a header it cannot read is refused as well.
        if let Ok(writer) = hound::WavWriter::create(&odd, spec) {
            let _ = writer.finalize();
            assert!(WavSource::open(&odd).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A WAV of `seconds` of a `hz` tone at `rate` with `channels` (the same tone in each),
    /// in `format` with `bits`.
    fn wav_of(
        rate: u32,
        channels: u16,
        format: hound::SampleFormat,
        bits: u16,
        hz: f64,
        seconds: f64,
    ) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        let frames = (f64::from(rate) * seconds) as u32;
        for i in 0..frames {
            let value = 0.5 * (std::f64::consts::TAU * hz * f64::from(i) / f64::from(rate)).sin();
            for _ in 0..channels {
                match (format, bits) {
                    (hound::SampleFormat::Float, _) => writer.write_sample(value as f32).unwrap(),
                    (_, 16) => writer.write_sample((value * 32767.0) as i16).unwrap(),
                    (_, 24) => writer.write_sample((value * 8_388_607.0) as i32).unwrap(),
                    (_, 8) => writer.write_sample((value * 127.0) as i8).unwrap(),
                    _ => unreachable!(),
                }
            }
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    #[test]
    fn wav_of_any_rate_and_channel_count_plays_at_8k_mono_with_its_tone_and_length() {
        use hound::SampleFormat::{Float, Int};
        for (rate, channels, format, bits) in [
            (44_100, 2, Int, 16),
            (48_000, 1, Float, 32),
            (16_000, 1, Int, 24),
            (8_000, 2, Int, 8),
            (11_025, 1, Int, 16),
        ] {
            let bytes = wav_of(rate, channels, format, bits, 1000.0, 1.0);
            let mut source = WavSource::from_reader(Cursor::new(bytes)).unwrap();
            let mut samples = Vec::new();
            while let Some(frame) = source.next_frame() {
                samples.extend_from_slice(frame.samples());
            }
            let case = format!("{rate} Hz, {channels} ch, {bits}-bit {format:?}");
            // One second at 8 kHz, to within one 20 ms frame.
            assert!(
                (7_840..=8_160).contains(&samples.len()),
                "{case}: {} samples",
                samples.len()
            );
            // The tone kept its pitch (no speed change) and nothing aliased in.
            let middle = &samples[2_000..6_000];
            let tone = goertzel_power(middle, 1000.0);
            for other in [500.0, 1500.0, 2000.0, 3000.0] {
                assert!(
                    tone > 100.0 * goertzel_power(middle, other),
                    "{case}: {other} Hz"
                );
            }
            // Half of full scale, the level written (mixing identical channels keeps it).
            let peak = middle.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((15_000..=17_500).contains(&peak), "{case}: peak {peak}");
        }
    }

    #[test]
    fn a_tone_for_a_duration_ends_after_whole_frames() {
        let mut tone =
            ToneSource::new(400.0, 1000).for_duration(std::time::Duration::from_millis(50));
        let frames = std::iter::from_fn(|| tone.next_frame()).count();
        assert_eq!(frames, 3, "50 ms rounds up to three 20 ms frames");
        let mut none = ToneSource::new(400.0, 1000).for_duration(std::time::Duration::ZERO);
        assert!(none.next_frame().is_none());
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
